/*
 * stats.h — what the engine counts: messages per outcome, bytes in and
 * out, signatures per algorithm, name collisions, the claim-to-publish
 * latency (a fine histogram for the summary's quantiles and a fixed-bucket
 * one for Prometheus), and, when asked for, messages and bytes per signing
 * domain for the busiest domains, bounded.
 *
 * Thread-safety: every counter is an atomic; workers add (dkp_stats_add,
 * a batch's sums at once), the command layer and the metrics endpoint
 * read at the same time. The per-domain table has its own mutex (one lock
 * per batch).
 *
 * Per-domain counting (dkp_stats_track_domains): a message is counted
 * under the d= of its topmost DKIM-Signature (the customer's; the ESP's
 * for an esp-only message); failed and deferred messages have no
 * signature and are not counted per domain. At most `bound` domains get
 * their own series, for the process lifetime; every other message counts
 * under "_other", so the series count stays bound + 1 whatever the number
 * of domains. Which domains: a space-saving sketch of 4 x bound
 * candidates (Metwally et al. 2005) estimates each domain's volume; one
 * whose guaranteed count reaches DKP_DOM_PROMOTE_MIN messages gets a
 * series if it sent 1/(2 x bound) of all messages seen so far, or, once
 * DKP_DOM_WARMUP x bound messages were seen, as long as series are left
 * (the sketch keeps only domains that send often enough, so the long
 * tail never gets there). A series counts from its promotion on (what
 * the domain sent before stays in "_other"). So every series is a true
 * counter (it never goes down), the domains plus "_other" add up to the
 * published total exactly, and a domain sending a large share gets its
 * series first. XXX: a promoted domain keeps its series until restart,
 * even if its traffic stops; restart to re-pick the top domains.
 */
#ifndef DKP_STATS_H
#define DKP_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"

#define DKP_LAT_BUCKETS 256
/* Prometheus histogram: upper bounds in seconds (dkp_stats_le) and +Inf */
#define DKP_HIST_BUCKETS 16
#define DKP_DOM_PROMOTE_MIN 10
#define DKP_DOM_WARMUP 64	/* messages per series slot */
#define DKP_DOM_MAX 100000	/* the largest bound accepted */

extern const double dkp_stats_le[DKP_HIST_BUCKETS - 1];

enum dkp_stats_alg { DKP_SALG_RSA_SHA256, DKP_SALG_ED25519_SHA256, DKP_SALG_N };
extern const char *const dkp_stats_alg_names[DKP_SALG_N];

struct dkp_domstats;

struct dkp_stats {
	atomic_ulong n[DKP_OUT_N];	/* per outcome, every attempt */
	atomic_ulong bytes;		/* input bytes of published messages */
	atomic_ulong bytes_out;		/* bytes published (with signatures) */
	atomic_ulong sigs[DKP_SALG_N];	/* signatures published, per a= */
	atomic_ulong renamed;		/* published or failed under ID.dupN */
	/* claim-to-publish latency of published messages, 8 buckets per
	 * power of two of microseconds */
	atomic_ulong lat[DKP_LAT_BUCKETS];
	/* the same latencies in the fixed buckets (not cumulative: hist[i]
	 * counts le[i-1] < x <= le[i]; the last is +Inf), and their sum */
	atomic_ulong hist[DKP_HIST_BUCKETS];
	atomic_ulong lat_sum_us;
	_Atomic(struct dkp_domstats *) dom;	/* NULL: not per domain */
	/* DMARC alignment (conf/align.h) of every message checked, each
	 * time it was signed, deferred or failed: [0] aligned, [1] not;
	 * and per From domain, bounded as dom (NULL: not tracked) */
	atomic_ulong align[2];
	_Atomic(struct dkp_domstats *) adom;
};

/* Count the outcomes of a committed batch m[0..n); now is the monotonic
 * time the batch became durable. The signatures of a published message
 * are counted from what the engine recorded when it signed (m->nsig,
 * m->sig_dom), not read back from the rendered fields. */
void dkp_stats_add(struct dkp_stats *st, const struct dkp_tmsg *m, size_t n,
		   double now);

/* The q-quantile (0..1) of the published messages' latency, in ms (the
 * middle of its histogram bucket: within 6%); 0 if none. */
double dkp_stats_latency_ms(const struct dkp_stats *st, double q);

/* Start counting per domain with at most bound (1..DKP_DOM_MAX) series.
 * Call before the first batch (the pool's dispatch); the table is the
 * caller's: dkp_stats_untrack_domains frees it once no worker runs. */
void dkp_stats_track_domains(struct dkp_stats *st, size_t bound);
void dkp_stats_untrack_domains(struct dkp_stats *st);

/* One per-domain series as read. */
struct dkp_stats_dom {
	char domain[256];
	uint64_t msgs, bytes;
};

/* Copy the per-domain series into out[0..max) (max >= bound + 1): the
 * promoted domains, then "_other" last. Returns how many; 0 when not
 * tracking. */
size_t dkp_stats_domains(const struct dkp_stats *st, struct dkp_stats_dom *out,
			 size_t max);

/* DMARC alignment per From domain, bounded as the per-domain series
 * (the same sketch, its own table): track before the first batch,
 * untrack once no worker runs. */
void dkp_stats_track_align(struct dkp_stats *st, size_t bound);
void dkp_stats_untrack_align(struct dkp_stats *st);

struct dkp_stats_adom {
	char domain[256];
	uint64_t aligned, unaligned;
};

/* As dkp_stats_domains, for the alignment table; "_other" last (with
 * the messages whose From had no usable domain). */
size_t dkp_stats_align_domains(const struct dkp_stats *st,
			       struct dkp_stats_adom *out, size_t max);

#endif
