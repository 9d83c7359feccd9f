/*
 * pool.h — `dkimpress run`: the batch engine (worker threads, the job
 * queue, queue scanning, reload, shutdown). See the design notes at the
 * top of pool.c.
 */
#ifndef DKP_POOL_H
#define DKP_POOL_H

#include <stddef.h>

struct dkp_run_opts {
	const char *conf;	/* configuration file */
	const char *const *sets;	/* "key=value" over the file (--set) */
	size_t nsets;
	int once;		/* drain the queue and exit */
	int progress;		/* print a progress line (a terminal) */
	int nosign;		/* benchmark: copy messages through unsigned */
	const char *stats_path;	/* write the run's figures here as JSON */
};

/* Run the engine; returns the process exit code (sysexits.h). */
int dkp_pool_run(const struct dkp_run_opts *o);

#endif
