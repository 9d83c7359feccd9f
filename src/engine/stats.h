/*
 * stats.h — what the engine counts: messages per outcome, bytes, name
 * collisions, and the claim-to-publish latency histogram. Lock-free
 * (atomics): every worker adds, the command layer reads.
 */
#ifndef DKP_STATS_H
#define DKP_STATS_H

#include <stdatomic.h>
#include <stddef.h>

#include "transport/transport.h"

#define DKP_LAT_BUCKETS 256

struct dkp_stats {
	atomic_ulong n[DKP_OUT_N];	/* per outcome, every attempt */
	atomic_ulong bytes;		/* input bytes of published messages */
	atomic_ulong renamed;		/* published or failed under ID.dupN */
	/* claim-to-publish latency of published messages, 8 buckets per
	 * power of two of microseconds */
	atomic_ulong lat[DKP_LAT_BUCKETS];
};

/* Count the outcomes of a committed batch m[0..n); now is the monotonic
 * time the batch became durable. */
void dkp_stats_add(struct dkp_stats *st, const struct dkp_tmsg *m, size_t n,
		   double now);

/* The q-quantile (0..1) of the published messages' latency, in ms (the
 * middle of its histogram bucket: within 6%); 0 if none. */
double dkp_stats_latency_ms(const struct dkp_stats *st, double q);

#endif
