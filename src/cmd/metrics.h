/*
 * metrics.h — the Prometheus endpoint of `dkimpress run` (metrics_listen):
 * GET /metrics answers the engine's counters in the Prometheus text
 * exposition format 0.0.4 (Content-Type "text/plain; version=0.0.4"),
 * served by libmicrohttpd on its own thread, beside the workers.
 *
 * Every figure is read from the same atomics the end-of-run summary and
 * the --stats JSON read (engine/stats.h, the pool's deferral table, the
 * key cache counters, run.c's reload counters), so after the last batch
 * the endpoint and the summary agree exactly. docs/operations.md lists
 * the series.
 *
 * Two steps, so a port that cannot be bound stops the start-up before any
 * message is touched: dkp_metrics_bind (socket, bind, listen; returns
 * -errno and a reason), then dkp_metrics_start once the pool runs.
 * dkp_metrics_free stops the thread (waiting for a scrape in progress)
 * and closes the socket; call it before the pool is freed.
 *
 * Thread-safety: the source's pointers must stay valid until
 * dkp_metrics_free; the HTTP thread only reads them (atomics, or
 * functions that lock).
 */
#ifndef DKP_METRICS_H
#define DKP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>

#include "engine/pool.h"

struct dkp_buf;
struct dkp_js;
struct dkp_metrics;

/* What the endpoint reads. */
struct dkp_metrics_src {
	struct dkp_pool *pool;
	const char *in_new;		/* in/new, for the queue depth gauge */
	struct dkp_js *js;		/* transport = jetstream: the depth is
					 * the consumer's NumPending */
	const atomic_ulong *reloads;	/* SIGHUPs that loaded a configuration */
	const atomic_ulong *reload_failures;	/* ... that kept the old one */
	double start_unix;		/* wall clock at start, seconds */
	double start_mono;		/* monotonic clock at start */
};

/* Bind and listen on "HOST:PORT" ("127.0.0.1:9469", "[::1]:9469", a
 * name). 0, or -errno with why filled (EINVAL: not HOST:PORT). */
int dkp_metrics_bind(struct dkp_metrics **out, const char *listen, char *why,
		     size_t whylen);
/* Start serving src (copied) on the bound socket; 0 or -1 with why. */
int dkp_metrics_start(struct dkp_metrics *m, const struct dkp_metrics_src *src,
		      char *why, size_t whylen);
/* Stop and close (NULL: nothing). */
void dkp_metrics_free(struct dkp_metrics *m);

/* The exposition text for src, appended to out (what GET /metrics
 * answers; for tests too). */
void dkp_metrics_render(const struct dkp_metrics_src *src, struct dkp_buf *out);

#endif
