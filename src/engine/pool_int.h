/*
 * pool_int.h — what the files of the worker pool share (pool.c has the
 * design): its limits, the pool, worker and batch-slot structures, and
 * the thread entry points one file gives another. Not for use outside
 * src/engine/pool*.c.
 *
 *   pool.c           start, snapshot swap, stop, free, counters
 *   pool_worker.c    the worker threads and the commit thread
 *   pool_dispatch.c  the dispatcher: scans, recovery, deferrals, the
 *                    end of a once run
 */
#ifndef DKP_POOL_INT_H
#define DKP_POOL_INT_H

#include <pthread.h>

#include "base/budget.h"
#include "base/htab.h"
#include "engine/pool.h"

#define DEFER_TRIES 3
#define MAX_PAUSE_MS 5000		/* watch mode: back off up to 5 s */
#define ONCE_MAX_PAUSE_MS 1000	/* once: report a full disk soon */
#define RESCAN_MS 1000
#define RECOVER_EVERY_S 2.0
#define CLAIM_STOP_S 5.0
#define ONCE_GIVE_UP_S 10	/* once: no progress, only transient errors */
#define KEEP_BUF (256u << 10)
#define FETCH_RETRY_MS 200	/* pulls: after a failed fetch */
#define PULL_TICK_MS 100	/* pulls: the dispatcher's round */
#define NSLOTS 3		/* batches per worker: one signing, two in the
				 * commit pipeline (fresh, done) */
#define LINGER_MS 250		/* the commit thread waits this long at most
				 * for a batch being signed before a round
				 * of done batches only (a round of its own
				 * costs them a journal commit; the wait
				 * only happens while a worker is signing) */

struct deferral {
	double next;		/* monotonic seconds */
	unsigned tries;
	int retry;		/* transient cause */
};

/* A worker's batch: filled, signed and staged by the worker; committed
 * and ended by the commit thread (or by the worker itself without one). */
struct slot {
	struct worker *w;
	struct dkp_tmsg *m;	/* batch entries */
	struct dkp_job *job;	/* its own: the out vectors and the
				 * signature fields stay valid until the
				 * slot's commit has ended (the stats read
				 * them there) */
	size_t n;
	double started;
	int pending;		/* staged, its commit not ended (p->mu) */
	struct slot *next;	/* the commit queue */
};

struct worker {
	struct dkp_pool *p;
	unsigned id;
	struct dkp_tworker *tw;
	struct slot slot[NSLOTS];
	unsigned cur;		/* the slot the next batch fills */
	pthread_t th;
	int started;
};

struct dkp_pool {
	pthread_mutex_t mu;
	pthread_cond_t nonempty, space, idle;
	char (*q)[DKP_QID_MAX + 1];
	size_t cap, head, count;
	unsigned busy, nthreads, batch;
	int stop;
	struct dkp_transport *t;
	struct dkp_htab *inflight;	/* id -> (void *)1 */
	struct dkp_htab *deferred;	/* id -> struct deferral */
	struct dkp_snap *snap;
	struct dkp_pool_cfg cfg;
	double pause_until;		/* back-off after transient errors */
	double retry_due;		/* once: latest pending retry */
	unsigned backoff_ms;
	double claim_fail_since;	/* claims failing, none succeeding */
	double scan_fail_since;		/* the queue cannot be listed */
	int scan_errno;
	int claim_errno;
	unsigned long claim_logged;	/* bit per errno < 64 already logged */
	int fatal;			/* sysexits code, 0 while healthy */
	double last_progress;		/* a batch last published something */
	struct dkp_stats stats;
	struct dkp_budget budget;
	pthread_mutex_t esp_mu;
	struct dkp_htab *esp_domains;	/* domain -> count */
	size_t found;			/* IDs seen by scans (progress) */
	struct worker *w;
	int uring;
	/* group commit (cfg.group_commit and the transport's commit_round) */
	int gc;
	pthread_cond_t slot_done, cq_nonempty;
	struct slot *cq_head, *cq_tail;	/* staged batches, oldest first */
	int cq_stop;
	pthread_t committer;
	int committer_started;
	struct dkp_tbatch *tb[2];	/* the commit thread's scratch: fresh, done */
	struct slot **tl[2];
	/* pulling transports (ops->pulls) */
	unsigned empty_fetches;		/* fetches in a row that found nothing */
	double fetch_fail_since;	/* fetches failing, none succeeding */
	int fetch_errno;
	int held;			/* cfg.hold until dkp_pool_release */
};

void dkp_pool_esp_only_hook(void *ctx, const char *domain, const char *id);
/* sysexits code for a claim failing with errno e */
int dkp_pool_claim_exit_code(int e);
/* thread entry points (arg: struct worker *, or the pool for the
 * commit thread) */
void *dkp_pool_worker_main(void *arg);
void *dkp_pool_worker_pull(void *arg);
void *dkp_pool_committer_main(void *arg);

#endif
