/*
 * pool.h — the worker threads and the dispatcher that feeds them; the
 * design is written at the top of pool.c. The pool knows the transport
 * only through transport.h and the signing only through job.h; process
 * concerns (signals, exit codes, the report) are the command's
 * (src/cmd/run.c).
 */
#ifndef DKP_POOL_H
#define DKP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "conf/snap.h"
#include "engine/stats.h"
#include "transport/transport.h"

struct dkp_pool;

struct dkp_pool_cfg {
	unsigned threads, batch;
	unsigned uring_depth;
	int want_uring;		/* 1 auto/uring, 0 syscalls */
	int require_uring;	/* io = uring: refuse to start without it */
	uint64_t inflight_bytes;
	int once;		/* drain and return */
	int nosign;		/* benchmark: copy messages through unsigned */
	int group_commit;	/* 1: a commit thread, where the transport
				 * has stage/commit_round */
	const char *watch_path;	/* directory to watch with inotify, or NULL */
	int hold;		/* pulling transports: no fetch before
				 * dkp_pool_release */
};

/* What the dispatcher asks of its caller between rounds. */
struct dkp_pool_hooks {
	int (*stop)(void *ctx);			/* non-zero: stop now */
	void (*tick)(void *ctx, struct dkp_pool *p);	/* e.g. reload */
	void *ctx;
};

/*
 * Start the workers on transport t with snapshot s (the pool takes a
 * reference). Returns 0, or -errno with why filled (io_uring refused with
 * io = uring, a worker area that cannot be made, threads that cannot
 * start).
 */
int dkp_pool_start(struct dkp_pool **out, struct dkp_transport *t,
		   struct dkp_snap *s, const struct dkp_pool_cfg *c, char *why,
		   size_t whylen);
/* Let workers held by cfg.hold fetch (e.g. once the metrics endpoint
 * serves); nothing to do otherwise. */
void dkp_pool_release(struct dkp_pool *p);
/* Did every worker get an io_uring? */
int dkp_pool_uring(const struct dkp_pool *p);

/*
 * Feed the workers until stopped or, with once, until nothing is left
 * to do. Returns 0, or a sysexits code when the transport cannot be
 * worked (a claim failing for seconds: 77 permission, 74 I/O; a commit
 * that cannot be made durable: 74).
 */
int dkp_pool_dispatch(struct dkp_pool *p, const struct dkp_pool_hooks *h);

/* Swap in a new snapshot (takes a reference; the old one is released
 * when its last batch ends). */
void dkp_pool_set_snap(struct dkp_pool *p, struct dkp_snap *s);
struct dkp_snap *dkp_pool_snap(struct dkp_pool *p);	/* not referenced */

/* Stop the workers (each finishes the batch in hand) and join them. */
void dkp_pool_stop(struct dkp_pool *p);
void dkp_pool_free(struct dkp_pool *p);

const struct dkp_stats *dkp_pool_stats(const struct dkp_pool *p);
/* Messages deferred and not signed since (the end-of-run count). A
 * pulling transport keeps no such table (the broker owns the retries and
 * another engine may sign what this one deferred): there it is the
 * deferrals (NAKs) this engine made, events, as the deferred counter. */
size_t dkp_pool_deferred(struct dkp_pool *p);
/* Domains signed with the ESP key alone. */
size_t dkp_pool_esp_only_domains(struct dkp_pool *p);
/* Messages found by scans (for a progress line). */
size_t dkp_pool_found(struct dkp_pool *p);

#endif
