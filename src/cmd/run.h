/*
 * run.h — `dkimpress run`: the engine as a process. Loads the
 * configuration, opens the transport, starts the pool, handles signals
 * (SIGHUP reload, SIGTERM/SIGINT stop), prints the summary, writes the
 * --stats JSON and picks the exit code (sysexits.h).
 */
#ifndef DKP_RUN_H
#define DKP_RUN_H

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

/* Install the engine's signal handlers (SIGHUP reload, SIGTERM/SIGINT
 * stop; SIGPIPE, SIGIO ignored). main() calls it first thing for `run`,
 * so that a SIGHUP from a supervisor in the first milliseconds cannot
 * kill the process; dkp_run calls it again (harmless). */
void dkp_run_signals(void);

/* Run the engine; returns the process exit code. */
int dkp_run(const struct dkp_run_opts *o);

#endif
