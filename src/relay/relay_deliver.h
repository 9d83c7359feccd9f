/*
 * relay_deliver.h — one message through the relay: claim it, send it
 * over the worker's session, and record each recipient's outcome on disk
 * (relay_queue.h) before anything else happens to the file:
 *
 *   every recipient 2xx         unlink (the only "delete")
 *   some 5xx                    FAILED/ID with those recipients and the
 *                               server's replies as the reason
 *   some 4xx                    the file rewritten with only those
 *                               recipients (when others are done), then
 *                               OUT/defer/ID~ATTEMPTS~NEXT~FIRST; past
 *                               relay_max_attempts or relay_max_age,
 *                               FAILED/ instead
 *
 * Nothing is sent twice on the relay's own account except in the window
 * between reading a 2xx and that unlink/rewrite (measured: window_*).
 *
 * Threads: a worker belongs to one thread; they share the struct dkp_rq.
 */
#ifndef DKP_RELAY_DELIVER_H
#define DKP_RELAY_DELIVER_H

#include <stdint.h>

#include "conf/relay_conf.h"
#include "relay/relay_queue.h"
#include "relay/smtp_session.h"

struct dkp_relay_worker {
	struct dkp_rq *q;
	const struct dkp_relay_config *cf;
	struct dkp_smtp_session s;
	struct dkp_buf file, tmp;
	double t_final;			/* when the last final reply came */
	/* counts, per message */
	uint64_t delivered, deferred, failed, partial;
	/* the 2xx-to-unlink window (seconds) */
	uint64_t win_n;
	double win_sum, win_max;
};

void dkp_relay_worker_init(struct dkp_relay_worker *w, struct dkp_rq *q,
			   const struct dkp_relay_config *cf, SSL_CTX *ctx,
			   const char *helo);
void dkp_relay_worker_free(struct dkp_relay_worker *w);
/* Deliver name (in OUT/new, or in OUT/defer with from_defer). 1 when it
 * was taken (whatever came of it), 0 when another relay had it. */
int dkp_relay_one(struct dkp_relay_worker *w, int from_defer, const char *name);
/* Delay after the attempts-th failed attempt (1 = the first). */
int64_t dkp_relay_retry_delay(const struct dkp_relay_sched *s, unsigned attempts);

/* Shared with the JetStream relay (relay_js.c): counts of 2xx, 4xx, 5xx
 * recipients in cnt[2], cnt[4], cnt[5] (anything else as 4xx); "ADDR:
 * why" lines (each after prefix) for the recipients of class cls, into
 * out (NUL-terminated); the end of the 2xx-to-recorded window. */
void dkp_relay_classify(const struct dkp_smtp_result *res, size_t cnt[6]);
void dkp_relay_reasons(struct dkp_buf *out, const struct dkp_relay_env *e,
		       const struct dkp_smtp_result *res, int cls, const char *prefix);
void dkp_relay_window_end(struct dkp_relay_worker *w);

#endif
