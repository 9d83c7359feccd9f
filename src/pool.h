/*
 * pool.h — `dkimpress run`: the batch engine (worker threads, the job
 * queue, queue scanning, reload, shutdown). See the design notes at the
 * top of pool.c.
 */
#ifndef DKP_POOL_H
#define DKP_POOL_H

struct dkp_run_opts {
	const char *conf;	/* configuration file */
	int once;		/* drain the queue and exit */
	int progress;		/* print a progress line (a terminal) */
};

/* Run the engine; returns the process exit code (sysexits.h). */
int dkp_pool_run(const struct dkp_run_opts *o);

#endif
