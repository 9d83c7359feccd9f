/*
 * job.h — the per-message pipeline, run a batch at a time by one worker:
 * claim → size → read → parse → route → sign (customer, then ESP) →
 * write → flush → publish → retire, with one flush of the written files
 * (flush = filesystem: one syncfs) and one of out/new per batch (group
 * commit). Every message of the
 * batch ends in exactly one outcome; lower layers fill errors and stay
 * quiet, and this layer logs one line per failed or deferred message.
 */
#ifndef DKP_JOB_H
#define DKP_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/qdir.h"
#include "conf/snap.h"
#include "queue/uring.h"

enum dkp_outcome {
	DKP_OUT_SIGNED = 0,	/* customer + ESP signatures */
	DKP_OUT_ESP_ONLY,	/* no customer key: ESP signature only */
	DKP_OUT_DEFERRED,	/* temporary failure: back in in/new */
	DKP_OUT_FAILED,		/* moved to failed/ with a reason */
	DKP_OUT_GONE,		/* claimed by someone else first */
};

/* Or'ed into a deferred outcome when the cause was transient (disk full,
 * I/O error): worth retrying soon. */
#define DKP_OUT_RETRY 0x100
#define DKP_OUT_MASK 0xff

#define DKP_LAT_BUCKETS 256

struct dkp_stats {
	atomic_ulong n[5];	/* per outcome */
	atomic_ulong bytes;	/* input bytes of published messages */
	atomic_ulong replays;	/* publish found out/new/ID already there */
	/* claim-to-durable latency of published messages, 8 buckets per
	 * power of two of microseconds */
	atomic_ulong lat[DKP_LAT_BUCKETS];
};

/* Seconds on the monotonic clock. */
double dkp_mono_now(void);

/* The q-quantile (0..1) of the published messages' latency, in ms (the
 * middle of its histogram bucket: within 6%); 0 if none. */
double dkp_stats_latency_ms(const struct dkp_stats *st, double q);

/* In-flight byte budget shared by the workers (back-pressure). */
struct dkp_budget {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t cap, used;
};

void dkp_budget_init(struct dkp_budget *b, uint64_t cap);
void dkp_budget_fini(struct dkp_budget *b);

struct dkp_job_item;

struct dkp_worker {
	unsigned id;
	struct dkp_ring *ring;
	struct dkp_signer *signer;
	const struct dkp_qdir *q;
	struct dkp_stats *stats;
	struct dkp_budget *budget;
	uint64_t seq;
	struct dkp_job_item *items;
	struct dkp_rop *ops;
	size_t cap;
	/* hook for per-domain esp-only accounting (may be NULL) */
	void (*esp_only)(void *ctx, const char *domain, const char *id);
	void *esp_only_ctx;
	int nosign;	/* benchmark: copy messages through unsigned */
	int tmpdir;	/* out/tmp/wN: this worker's files being written */
};

/* Prepare a worker for batches of up to cap messages. */
void dkp_worker_init(struct dkp_worker *w, unsigned id, struct dkp_ring *ring,
		     const struct dkp_qdir *q, struct dkp_stats *stats,
		     struct dkp_budget *budget, size_t cap);
void dkp_worker_fini(struct dkp_worker *w);

/*
 * Process ids[0..n) (n <= cap) from in/new with snapshot s; outcome[i]
 * receives each message's outcome (possibly | DKP_OUT_RETRY). Returns 0, or -errno if the batch hit
 * an error that suggests backing off (disk full, I/O error): the affected
 * messages are deferred, never lost.
 */
int dkp_job_batch(struct dkp_worker *w, struct dkp_snap *s,
		  char (*ids)[DKP_QID_MAX + 1], size_t n, int *outcome);

#endif
