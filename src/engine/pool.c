/*
 * pool.c — the worker threads and their dispatcher.
 *
 * Producer: one dispatcher (the caller's thread, in dkp_pool_dispatch)
 * lists the transport's waiting messages (scan) and pushes their IDs into
 * a bounded job queue (threads x batch x 2 entries); it never claims
 * anything itself. An ID stays in an "in flight" set from the push until
 * a worker reports its outcome, so a rescan never queues it twice. Every
 * couple of seconds it also runs the transport's recovery, which takes
 * back what crashed engines on the same queue left.
 *
 * Consumers: N worker threads. Each takes up to `batch` IDs at once and
 * runs them as transport fetch (claim, read) → dkp_job_sign → transport
 * commit (write, flush, retire, publish; fail; defer), with its own ring,
 * OpenSSL contexts and buffers. Order between messages is not kept.
 * Memory is bounded by the queue size and by the in-flight byte budget,
 * whatever the backlog.
 *
 * Commit thread (cfg.group_commit, the default, where the transport has
 * stage and commit_round): a worker only stages its signed batch (the
 * copies written, no flush) and goes on with its next slot (three per
 * worker: one being signed, two in the pipeline). One commit thread runs
 * rounds: each takes every batch staged since the last round and the
 * batches the last round flushed, and makes the new copies and the old
 * batches' retires durable with one flush, then publishes and ends the
 * old ones (transport.h). When only flushed batches wait and no worker is
 * signing, it runs a round at once; when one is signing, it waits for
 * that batch up to LINGER_MS so that they share a flush.
 *
 * Snapshot: workers take a reference to the current snapshot per batch;
 * dkp_pool_set_snap swaps the pointer under the queue lock.
 *
 * Deferred messages are retried after a delay that doubles per attempt;
 * a transient error (disk full, I/O error) also pauses the whole pool
 * before its next batch (doubling up to 5 s; 1 s with once). With once, a
 * message is retried up to DEFER_TRIES times for transient errors, once
 * otherwise, then left in the queue and counted as deferred.
 *
 * Failing transport: a claim that fails for any reason but "another
 * engine was first" is logged once per cause; if claims keep failing with
 * none succeeding for CLAIM_STOP_S seconds (or until a once run has
 * nothing else to do), the dispatcher stops with a sysexits code. A
 * commit that cannot be made durable stops it at once: recovery at the
 * next start finishes what was in hand.
 *
 * Shutdown: the hooks' stop ends dispatching; dkp_pool_stop drops IDs not
 * yet claimed (they stay queued), lets each worker finish the batch in
 * hand, and joins them.
 *
 * Pulling transports (ops->pulls, JetStream): there is no scan and no job
 * queue. Each worker calls fetch with room for `batch` messages; fetch
 * claims them from the broker itself, waiting a short while (under a
 * second) when there is nothing, and returns how many it filled (or
 * -errno). The rest of the batch — budget, sign, commit, stats, back-off,
 * the batch in hand finished on stop — is the same code as above. The
 * dispatcher only serves the hooks; recovery is the broker's (it hands
 * back what a dead engine held). With once, the run ends when every
 * worker's last fetch found nothing and no batch runs; fetches failing
 * for CLAIM_STOP_S end it with 75. In watch mode failing fetches are
 * logged once per outage and retried until the broker is back. No
 * deferral table either: the broker redelivers a NAK'd message, maybe to
 * another engine, so a deferral is counted as an event only (a table
 * here would keep every message another engine signed later). With
 * cfg.hold the workers wait for dkp_pool_release before the first fetch.
 */
#include "engine/pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "base/budget.h"
#include "base/clock.h"
#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/job.h"

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

static void esp_only_hook(void *ctx, const char *domain, const char *id)
{
	struct dkp_pool *p = ctx;
	size_t *cnt;

	pthread_mutex_lock(&p->esp_mu);
	cnt = dkp_htab_get(p->esp_domains, domain, strlen(domain));
	if (cnt == NULL) {
		cnt = dkp_calloc(1, sizeof(*cnt));
		dkp_htab_put(p->esp_domains, domain, strlen(domain), cnt);
		dkp_info("no customer key for %s: signing with the ESP key only (first: %s)",
			 domain, id);
	}
	(*cnt)++;
	pthread_mutex_unlock(&p->esp_mu);
}

static int is_temp_errno(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EIO || e == EAGAIN ||
	       e == ENOMEM || e == EMFILE || e == ENFILE || e == EROFS ||
	       e == EACCES || e == EPERM || e == EINTR || e == ETIMEDOUT;
}

static int claim_exit_code(int e)
{
	return e == EACCES || e == EPERM ? 77 : 74;	/* EX_NOPERM, EX_IOERR */
}

/* Log each message's deferral or failure (one line each), and claim
 * failures once per cause; track claims failing with none succeeding. */
static void report_batch(struct dkp_pool *p, struct dkp_tmsg *m, size_t n)
{
	size_t i, ok = 0, bad = 0, which = 0;
	int e = 0;

	for (i = 0; i < n; i++) {
		if (m[i].claimed || m[i].outcome == DKP_OUT_SIGNED ||
		    m[i].outcome == DKP_OUT_ESP_ONLY || m[i].outcome == DKP_OUT_FAILED)
			ok++;
		if (m[i].outcome == DKP_OUT_DEFERRED && !strcmp(m[i].err.step, "claim")) {
			bad++;
			e = m[i].err.sys_errno;
			which = i;
			continue;
		}
		if (m[i].outcome == DKP_OUT_FAILED)
			dkp_warn("%s: failed: %s", m[i].id, m[i].err.msg);
		else if (m[i].outcome == DKP_OUT_DEFERRED)
			dkp_warn("%s: deferred: %s", m[i].id, m[i].err.msg);
	}
	pthread_mutex_lock(&p->mu);
	if (ok) {
		p->claim_fail_since = 0;
	} else if (bad) {
		int first = e <= 0 || e >= 64 || !(p->claim_logged & (1ul << e));

		if (p->claim_fail_since == 0)
			p->claim_fail_since = dkp_mono_now();
		p->claim_errno = e;
		if (e > 0 && e < 64)
			p->claim_logged |= 1ul << e;
		pthread_mutex_unlock(&p->mu);
		if (first)
			dkp_error("%s; retrying, stopping if claims keep failing (%.0f s, or sooner with --once when nothing else is left)",
				  m[which].err.msg, CLAIM_STOP_S);
		return;
	}
	pthread_mutex_unlock(&p->mu);
}

/* Under p->mu: remember deferrals, forget the others. */
static void account(struct dkp_pool *p, struct dkp_tmsg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		size_t len = strlen(m[i].id);

		dkp_htab_del(p->inflight, m[i].id, len);
		if (p->t->ops->pulls)
			continue;	/* the broker owns the retries */
		if (m[i].outcome == DKP_OUT_DEFERRED) {
			struct deferral *d = dkp_htab_get(p->deferred, m[i].id, len);
			double delay;

			if (d == NULL) {
				d = dkp_calloc(1, sizeof(*d));
				dkp_htab_put(p->deferred, m[i].id, len, d);
			}
			d->tries++;
			d->retry = m[i].err.sys_errno && is_temp_errno(m[i].err.sys_errno);
			delay = p->cfg.once ? 0.2 * (double)(1u << (d->tries < 6 ? d->tries : 6))
					    : (double)(1u << (d->tries < 8 ? d->tries : 8));
			d->next = dkp_mono_now() + delay;
			if (d->retry && d->tries < DEFER_TRIES && d->next > p->retry_due)
				p->retry_due = d->next;
		} else {
			dkp_free(dkp_htab_del(p->deferred, m[i].id, len));
		}
	}
}

/* Did the batch hit a transient system error worth backing off for? */
static int batch_backoff(const struct dkp_tmsg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (m[i].outcome == DKP_OUT_DEFERRED && m[i].err.sys_errno &&
		    is_temp_errno(m[i].err.sys_errno))
			return m[i].err.sys_errno;
	return 0;
}

static void run_batch(struct worker *w, struct slot *sl, struct dkp_snap *s,
		      size_t n, double started);

/* Under p->mu: the worker's next slot, once its last commit has ended. */
static struct slot *next_slot(struct dkp_pool *p, struct worker *w)
{
	struct slot *sl = &w->slot[w->cur];

	while (sl->pending)
		pthread_cond_wait(&p->slot_done, &p->mu);
	return sl;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct dkp_pool *p = w->p;
	const struct dkp_transport_ops *ops = p->t->ops;

	for (;;) {
		struct dkp_snap *s;
		struct slot *sl;
		size_t n = 0;
		double wait, started;

		pthread_mutex_lock(&p->mu);
		sl = next_slot(p, w);
		while (p->count == 0 && !p->stop)
			pthread_cond_wait(&p->nonempty, &p->mu);
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		while (n < p->batch && p->count > 0) {
			memcpy(sl->m[n++].id, p->q[p->head], DKP_QID_MAX + 1);
			p->head = (p->head + 1) % p->cap;
			p->count--;
		}
		p->busy++;
		s = p->snap;
		dkp_snap_ref(s);
		wait = p->pause_until - dkp_mono_now();
		pthread_cond_broadcast(&p->space);
		pthread_mutex_unlock(&p->mu);

		if (wait > 0)
			usleep((useconds_t)(wait * 1e6));
		started = dkp_mono_now();
		ops->fetch(w->tw, sl->m, n, s->cfg->limits.max_message_bytes, &p->budget);
		run_batch(w, sl, s, n, started);
	}
	return NULL;
}

/* The end of a committed batch (commit returned rc): count and log its
 * outcomes, back off after transient errors, free the slot. Runs on the
 * commit thread, or on the worker without one. */
static void end_batch(struct dkp_pool *p, struct slot *sl, int rc)
{
	struct dkp_tmsg *m = sl->m;
	size_t i, n = sl->n;
	int e;

	dkp_stats_add(&p->stats, m, n, dkp_mono_now());
	report_batch(p, m, n);
	e = batch_backoff(m, n);
	/* keep small buffers for the next batch, not a rare big one */
	dkp_job_trim(sl->job, KEEP_BUF);
	for (i = 0; i < n; i++)
		if (m[i].cap > KEEP_BUF) {
			dkp_free(m[i].buf);
			m[i].buf = NULL;
			m[i].cap = 0;
		}

	pthread_mutex_lock(&p->mu);
	account(p, m, n);
	for (i = 0; i < n; i++)
		if (m[i].outcome == DKP_OUT_SIGNED || m[i].outcome == DKP_OUT_ESP_ONLY) {
			p->last_progress = dkp_mono_now();
			break;
		}
	if (rc < 0 && !p->fatal) {
		p->fatal = 74;
		pthread_mutex_unlock(&p->mu);
		dkp_error("cannot make the batch durable (%s): stopping; the next start recovers what was in hand",
			  strerror(-rc));
		pthread_mutex_lock(&p->mu);
	}
	if (e && sl->started >= p->pause_until) {
		/* one back-off window at a time: batches already running
		 * when it opened do not stretch it */
		unsigned max = p->cfg.once ? ONCE_MAX_PAUSE_MS : MAX_PAUSE_MS, ms;

		p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 100;
		if (p->backoff_ms > max)
			p->backoff_ms = max;
		p->pause_until = dkp_mono_now() + p->backoff_ms / 1000.0;
		ms = p->backoff_ms;	/* other workers change it once unlocked */
		pthread_mutex_unlock(&p->mu);
		dkp_warn("transient error (%s): pausing %u ms before the next batch",
			 strerror(e), ms);
		pthread_mutex_lock(&p->mu);
	} else if (e == 0) {
		p->backoff_ms = 0;
	}
	p->busy--;
	sl->pending = 0;
	pthread_cond_broadcast(&p->idle);
	pthread_cond_broadcast(&p->slot_done);
	pthread_mutex_unlock(&p->mu);
}

/* Sign a fetched batch, then either stage it and hand it to the commit
 * thread (the worker goes on with its other slot at once) or commit and
 * end it here; drops the batch's snapshot reference. */
static void run_batch(struct worker *w, struct slot *sl, struct dkp_snap *s,
		      size_t n, double started)
{
	struct dkp_pool *p = w->p;
	const struct dkp_transport_ops *ops = p->t->ops;
	int rc;

	sl->n = n;
	sl->started = started;
	dkp_job_sign(sl->job, s, sl->m, n);
	if (p->gc) {
		ops->stage(w->tw, sl->m, n);
		dkp_snap_unref(s);
		pthread_mutex_lock(&p->mu);
		sl->pending = 1;
		sl->next = NULL;
		if (p->cq_tail)
			p->cq_tail->next = sl;
		else
			p->cq_head = sl;
		p->cq_tail = sl;
		pthread_cond_signal(&p->cq_nonempty);
		pthread_mutex_unlock(&p->mu);
		w->cur = (w->cur + 1) % NSLOTS;
	} else {
		rc = ops->commit(w->tw, sl->m, n);
		dkp_snap_unref(s);
		end_batch(p, sl, rc);
	}
}

/* Under p->mu, on the commit thread with nd batches done (flushed, not
 * yet retired) and no staged batch: wait for one (a worker is signing
 * it), or give up when none is coming, at a stop, or after LINGER_MS.
 * Returns 0 to run a round, -1 when nothing is left and the thread ends. */
static int commit_wait(struct dkp_pool *p, size_t nd)
{
	struct timespec until;

	if (nd == 0) {
		while (p->cq_head == NULL && !p->cq_stop)
			pthread_cond_wait(&p->cq_nonempty, &p->mu);
		return p->cq_head == NULL ? -1 : 0;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += LINGER_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	/* busy counts every batch from its fetch to its end: more than the
	 * done ones means a worker is signing one, whose round this can
	 * share */
	while (p->cq_head == NULL && !p->cq_stop && p->busy > nd)
		if (pthread_cond_timedwait(&p->cq_nonempty, &p->mu, &until) != 0)
			break;
	return 0;
}

/* The commit thread: a pipeline of rounds (transport.h). Each takes every
 * batch staged since the last one (of any worker) and the batches the
 * last round flushed; one flush serves them all, the done ones end.
 * While it flushes, the workers sign the next ones. It ends when told to
 * stop and nothing is left. */
static void *committer_main(void *arg)
{
	struct dkp_pool *p = arg;
	const struct dkp_transport_ops *ops = p->t->ops;
	struct slot **fresh = p->tl[0], **done = p->tl[1], **tmp, *sl;
	struct dkp_tbatch *tf = p->tb[0], *td = p->tb[1], *tt;
	size_t nf, nd = 0, k;
	int rc, unsynced = 0;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (commit_wait(p, nd) < 0) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		for (nf = 0, sl = p->cq_head; sl; sl = sl->next)
			fresh[nf++] = sl;
		p->cq_head = p->cq_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		for (k = 0; k < nf; k++) {
			tf[k].w = fresh[k]->w->tw;
			tf[k].m = fresh[k]->m;
			tf[k].n = fresh[k]->n;
		}
		rc = ops->commit_round(tf, nf, td, nd, &unsynced);
		for (k = 0; k < nd; k++)
			end_batch(p, done[k], rc);
		tmp = done, done = fresh, fresh = tmp;
		tt = td, td = tf, tf = tt;
		nd = nf;
	}
	return NULL;
}

/* A fetch that found nothing (rc 0) or failed (rc < 0): counted for
 * once's end and for the outage log; a failure waits a little. */
static void fetch_idle(struct dkp_pool *p, int rc)
{
	int first = 0;

	pthread_mutex_lock(&p->mu);
	if (rc == 0) {
		p->empty_fetches++;
		if (p->fetch_fail_since > 0) {
			p->fetch_fail_since = 0;
			pthread_mutex_unlock(&p->mu);
			dkp_info("fetching again");
			return;
		}
	} else if (p->fetch_fail_since == 0) {
		p->fetch_fail_since = dkp_mono_now();
		p->fetch_errno = -rc;
		first = 1;
	}
	pthread_mutex_unlock(&p->mu);
	if (first)
		dkp_error("cannot fetch from the transport (%s); retrying%s", strerror(-rc),
			  p->cfg.once ? "" : " until it comes back");
	if (rc < 0)
		usleep(FETCH_RETRY_MS * 1000);
}

/* A worker of a pulling transport: fetch fills the batch itself (waiting
 * a short while when there is nothing), then the same batch as above. */
static void *worker_pull(void *arg)
{
	struct worker *w = arg;
	struct dkp_pool *p = w->p;
	const struct dkp_transport_ops *ops = p->t->ops;

	for (;;) {
		struct dkp_snap *s;
		struct slot *sl;
		double wait, started;
		int rc;

		pthread_mutex_lock(&p->mu);
		sl = next_slot(p, w);
		while (p->held && !p->stop && !p->fatal)
			pthread_cond_wait(&p->nonempty, &p->mu);
		if (p->stop || p->fatal) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		s = p->snap;
		dkp_snap_ref(s);
		wait = p->pause_until - dkp_mono_now();
		pthread_mutex_unlock(&p->mu);

		if (wait > 0)
			usleep((useconds_t)(wait * 1e6));
		started = dkp_mono_now();
		rc = ops->fetch(w->tw, sl->m, p->batch, s->cfg->limits.max_message_bytes,
				&p->budget);
		if (rc <= 0) {
			dkp_snap_unref(s);
			fetch_idle(p, rc);
			continue;
		}
		pthread_mutex_lock(&p->mu);
		/* a batch in hand runs to its end, even after a stop */
		p->busy++;
		p->found += (size_t)rc;
		p->empty_fetches = 0;
		if (p->fetch_fail_since > 0) {
			p->fetch_fail_since = 0;
			pthread_mutex_unlock(&p->mu);
			dkp_info("fetching again");
		} else {
			pthread_mutex_unlock(&p->mu);
		}
		run_batch(w, sl, s, (size_t)rc, started);
	}
	return NULL;
}

int dkp_pool_start(struct dkp_pool **out, struct dkp_transport *t,
		   struct dkp_snap *s, const struct dkp_pool_cfg *c, char *why,
		   size_t whylen)
{
	struct dkp_pool *p = dkp_calloc(1, sizeof(*p));
	sigset_t all, old;
	unsigned i, j, k;
	int rc = 0;

	*out = NULL;
	p->t = t;
	p->cfg = *c;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->nonempty, NULL);
	pthread_cond_init(&p->space, NULL);
	pthread_cond_init(&p->idle, NULL);
	pthread_cond_init(&p->slot_done, NULL);
	pthread_cond_init(&p->cq_nonempty, NULL);
	pthread_mutex_init(&p->esp_mu, NULL);
	p->gc = c->group_commit && t->ops->stage && t->ops->commit_round;
	p->nthreads = c->threads;
	p->batch = c->batch;
	p->cap = (size_t)c->threads * c->batch * 2;
	p->q = dkp_calloc(p->cap, sizeof(*p->q));
	p->inflight = dkp_htab_new(p->cap);
	p->deferred = dkp_htab_new(64);
	p->esp_domains = dkp_htab_new(64);
	p->snap = s;
	dkp_snap_ref(s);
	p->uring = c->want_uring;
	p->last_progress = dkp_mono_now();
	p->held = c->hold;
	dkp_budget_init(&p->budget, c->inflight_bytes);

	/* rings and areas first, so a refusal is known before any thread */
	p->w = dkp_calloc(p->nthreads, sizeof(*p->w));
	for (i = 0; i < p->nthreads; i++) {
		struct worker *w = &p->w[i];

		w->p = p;
		w->id = i;
		rc = t->ops->worker_new(t, i, p->uring, c->uring_depth, &w->tw);
		if (rc < 0 && p->uring && !c->require_uring) {
			if (i == 0)
				dkp_info("io_uring unavailable (%s): using plain syscalls",
					 strerror(-rc));
			p->uring = 0;
			rc = t->ops->worker_new(t, i, 0, c->uring_depth, &w->tw);
		}
		if (rc < 0) {
			snprintf(why, whylen, "%s", c->require_uring && p->uring
				 ? "io_uring unavailable and io = uring"
				 : "cannot set up a worker's area or ring");
			dkp_pool_free(p);
			return rc;
		}
		for (k = 0; k < NSLOTS; k++) {
			struct slot *sl = &w->slot[k];

			sl->w = w;
			sl->job = dkp_job_new(c->batch);
			dkp_job_set_hook(sl->job, esp_only_hook, p);
			dkp_job_set_nosign(sl->job, c->nosign);
			sl->m = dkp_calloc(c->batch, sizeof(*sl->m));
			for (j = 0; j < c->batch; j++)
				sl->m[j].fd = -1;
		}
	}
	if (p->gc)
		for (k = 0; k < 2; k++) {
			p->tb[k] = dkp_calloc((size_t)p->nthreads * NSLOTS, sizeof(*p->tb[k]));
			p->tl[k] = dkp_calloc((size_t)p->nthreads * NSLOTS, sizeof(*p->tl[k]));
		}
	/* workers never take signals; the caller's thread does */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (p->gc) {
		if (pthread_create(&p->committer, NULL, committer_main, p) != 0)
			rc = -EAGAIN;
		else
			p->committer_started = 1;
	}
	for (i = 0; rc == 0 && i < p->nthreads; i++) {
		if (pthread_create(&p->w[i].th, NULL,
				   t->ops->pulls ? worker_pull : worker_main,
				   &p->w[i]) != 0) {
			rc = -EAGAIN;
			break;
		}
		p->w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		snprintf(why, whylen, "cannot start worker threads");
		dkp_pool_stop(p);
		dkp_pool_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void dkp_pool_release(struct dkp_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->held = 0;
	pthread_cond_broadcast(&p->nonempty);
	pthread_mutex_unlock(&p->mu);
}

int dkp_pool_uring(const struct dkp_pool *p)
{
	return p->uring;
}

struct scan_ctx {
	struct dkp_pool *p;
	const struct dkp_pool_hooks *h;
	size_t pushed;
	double now;
};

/* Push one ID unless it is in flight or waiting out a deferral. */
static int push_id(void *ctx, const char *id)
{
	struct scan_ctx *sc = ctx;
	struct dkp_pool *p = sc->p;
	size_t len = strlen(id);
	struct deferral *d;

	pthread_mutex_lock(&p->mu);
	if (dkp_htab_get(p->inflight, id, len)) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	d = dkp_htab_get(p->deferred, id, len);
	if (d && (d->next > sc->now ||
		  (p->cfg.once && d->tries >= (d->retry ? DEFER_TRIES : 1)))) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	if (d == NULL)
		p->found++;
	while (p->count == p->cap && !p->stop && !p->fatal && !sc->h->stop(sc->h->ctx))
		pthread_cond_wait(&p->space, &p->mu);
	if (p->stop || p->fatal || sc->h->stop(sc->h->ctx)) {
		pthread_mutex_unlock(&p->mu);
		return 1;
	}
	snprintf(p->q[(p->head + p->count) % p->cap], DKP_QID_MAX + 1, "%s", id);
	p->count++;
	dkp_htab_put(p->inflight, id, len, (void *)1);
	pthread_cond_signal(&p->nonempty);
	pthread_mutex_unlock(&p->mu);
	sc->pushed++;
	return 0;
}

static size_t scan(struct dkp_pool *p, const struct dkp_pool_hooks *h)
{
	struct scan_ctx sc = { p, h, 0, dkp_mono_now() };
	int rc = p->t->ops->scan(p->t, push_id, &sc);

	pthread_mutex_lock(&p->mu);
	if (rc < 0 && p->scan_fail_since == 0) {
		p->scan_fail_since = dkp_mono_now();
		p->scan_errno = -rc;
		pthread_mutex_unlock(&p->mu);
		dkp_error("cannot list the queue (%s); retrying, stopping if it lasts %.0f s",
			  strerror(-rc), CLAIM_STOP_S);
		return sc.pushed;
	}
	if (rc == 0)
		p->scan_fail_since = 0;
	pthread_mutex_unlock(&p->mu);
	return sc.pushed;
}

/* Take back what crashed engines left; returns how many messages. */
static size_t recover(struct dkp_pool *p)
{
	struct dkp_recovery r;
	int rc = p->t->ops->recover(p->t, &r);

	if (rc < 0)
		dkp_error("recovery of a crashed engine's messages failed: %s",
			  strerror(-rc));
	if (r.engines)
		dkp_info("recovered %zu crashed engine(s): %zu published, %zu put back to sign again, %zu copies dropped",
			 r.engines, r.published, r.requeued, r.discarded);
	return r.published + r.requeued;
}

/* Check for claims (or listings) failing too long; sets p->fatal. */
static void check_claims(struct dkp_pool *p, int final)
{
	pthread_mutex_lock(&p->mu);
	if (!p->fatal && p->scan_fail_since > 0 &&
	    (final || dkp_mono_now() - p->scan_fail_since >= CLAIM_STOP_S)) {
		double since = p->scan_fail_since;
		int e = p->scan_errno;

		p->fatal = claim_exit_code(e);
		pthread_mutex_unlock(&p->mu);
		dkp_error("the queue could not be listed for %.1f s (%s): stopping",
			  dkp_mono_now() - since, strerror(e));
		return;
	}
	if (!p->fatal && p->claim_fail_since > 0 &&
	    (final || dkp_mono_now() - p->claim_fail_since >= CLAIM_STOP_S)) {
		double since = p->claim_fail_since;	/* workers write both */
		int e = p->claim_errno;

		p->fatal = claim_exit_code(e);
		pthread_mutex_unlock(&p->mu);
		dkp_error("no message could be claimed for %.1f s (%s): stopping",
			  dkp_mono_now() - since, strerror(e));
		return;
	}
	pthread_mutex_unlock(&p->mu);
}

/* Wait until the queue is empty and no batch runs, or stop/fatal. */
static void wait_idle(struct dkp_pool *p, const struct dkp_pool_hooks *h)
{
	pthread_mutex_lock(&p->mu);
	while ((p->count > 0 || p->busy > 0) && !p->fatal && !h->stop(h->ctx)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->idle, &p->mu, &ts);
		if (h->tick) {
			pthread_mutex_unlock(&p->mu);
			h->tick(h->ctx, p);
			pthread_mutex_lock(&p->mu);
		}
	}
	pthread_mutex_unlock(&p->mu);
}

static int watch_setup(const char *path)
{
	int fd;

	if (path == NULL)
		return -1;
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0) {
		dkp_warn("inotify unavailable (%s): scanning every %d ms",
			 strerror(errno), RESCAN_MS);
		return -1;
	}
	if (inotify_add_watch(fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		dkp_warn("cannot watch %s (%s): scanning every %d ms", path,
			 strerror(errno), RESCAN_MS);
		close(fd);
		return -1;
	}
	return fd;
}

/* p->fatal, which workers set under p->mu. */
static int pool_fatal(struct dkp_pool *p)
{
	int f;

	pthread_mutex_lock(&p->mu);
	f = p->fatal;
	pthread_mutex_unlock(&p->mu);
	return f;
}

/* once: transient errors and nothing published for ONCE_GIVE_UP_S? Then
 * the rest stays queued for a later run (a full disk does not clear by
 * itself; trying every message DEFER_TRIES times only delays the report). */
static int once_stalled(struct dkp_pool *p)
{
	int stalled;

	pthread_mutex_lock(&p->mu);
	stalled = p->backoff_ms > 0 && dkp_mono_now() - p->last_progress >= ONCE_GIVE_UP_S;
	pthread_mutex_unlock(&p->mu);
	return stalled;
}

/* The dispatcher of a pulling transport: nothing to scan or recover
 * (the workers fetch; the server hands back what a crashed engine held);
 * it serves the hooks and, with once, ends when every worker's last
 * fetch found nothing and no batch runs, or when fetches keep failing. */
static int dispatch_pull(struct dkp_pool *p, const struct dkp_pool_hooks *h)
{
	while (!h->stop(h->ctx) && !pool_fatal(p)) {
		if (h->tick)
			h->tick(h->ctx, p);
		if (p->cfg.once) {
			int done, failing;
			double since;

			if (once_stalled(p)) {
				dkp_warn("nothing published for %d s, only transient errors: stopping; the rest stays queued",
					 ONCE_GIVE_UP_S);
				break;
			}
			pthread_mutex_lock(&p->mu);
			done = p->busy == 0 && p->empty_fetches >= p->nthreads;
			since = p->fetch_fail_since;
			failing = since > 0 && dkp_mono_now() - since >= CLAIM_STOP_S;
			if (failing && !p->fatal)
				p->fatal = 75;	/* EX_TEMPFAIL: try again later */
			pthread_mutex_unlock(&p->mu);
			if (failing) {
				dkp_error("nothing could be fetched for %.1f s: stopping",
					  dkp_mono_now() - since);
				break;
			}
			if (done)
				break;
		}
		usleep(PULL_TICK_MS * 1000);
	}
	return pool_fatal(p);
}

int dkp_pool_dispatch(struct dkp_pool *p, const struct dkp_pool_hooks *h)
{
	double last_recover = dkp_mono_now();
	int ino = -1;

	if (p->t->ops->pulls)
		return dispatch_pull(p, h);

	if (!p->cfg.once)
		ino = watch_setup(p->cfg.watch_path);
	while (!h->stop(h->ctx) && !pool_fatal(p)) {
		size_t pushed;

		if (p->cfg.once && once_stalled(p)) {
			dkp_warn("nothing published for %d s, only transient errors: stopping; the rest stays queued",
				 ONCE_GIVE_UP_S);
			break;
		}
		pushed = scan(p, h);

		if (h->tick)
			h->tick(h->ctx, p);
		check_claims(p, 0);
		if (dkp_mono_now() - last_recover >= RECOVER_EVERY_S) {
			last_recover = dkp_mono_now();
			pushed += recover(p);
		}
		if (p->cfg.once) {
			int listing_fails;

			wait_idle(p, h);
			pthread_mutex_lock(&p->mu);
			listing_fails = p->scan_fail_since > 0;
			pthread_mutex_unlock(&p->mu);
			if (listing_fails) {
				usleep(200000);	/* retried; check_claims ends it */
				continue;
			}
			if (pushed == 0) {
				/* done, unless a transient deferral awaits a retry
				 * or a crashed peer left something */
				double due;

				pthread_mutex_lock(&p->mu);
				due = p->retry_due;
				pthread_mutex_unlock(&p->mu);
				if (dkp_mono_now() >= due && recover(p) == 0)
					break;
				usleep(100000);
			}
		} else if (ino >= 0) {
			struct pollfd pfd = { ino, POLLIN, 0 };
			char evbuf[4096];

			if (poll(&pfd, 1, RESCAN_MS) > 0)
				while (read(ino, evbuf, sizeof(evbuf)) > 0)
					;
		} else {
			usleep(RESCAN_MS * 1000);
		}
	}
	if (p->cfg.once && !h->stop(h->ctx))
		check_claims(p, 1);
	if (ino >= 0)
		close(ino);
	return pool_fatal(p);
}

void dkp_pool_set_snap(struct dkp_pool *p, struct dkp_snap *s)
{
	struct dkp_snap *old;

	dkp_snap_ref(s);
	pthread_mutex_lock(&p->mu);
	old = p->snap;
	p->snap = s;
	pthread_mutex_unlock(&p->mu);
	dkp_snap_unref(old);
}

struct dkp_snap *dkp_pool_snap(struct dkp_pool *p)
{
	struct dkp_snap *s;

	pthread_mutex_lock(&p->mu);
	s = p->snap;
	pthread_mutex_unlock(&p->mu);
	return s;
}

void dkp_pool_stop(struct dkp_pool *p)
{
	unsigned i;

	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	p->count = 0;	/* IDs not yet claimed stay queued */
	pthread_cond_broadcast(&p->nonempty);
	pthread_cond_broadcast(&p->space);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nthreads; i++)
		if (p->w[i].started) {
			pthread_join(p->w[i].th, NULL);
			p->w[i].started = 0;
		}
	/* the workers are gone: the commit thread ends what they staged */
	if (p->committer_started) {
		pthread_mutex_lock(&p->mu);
		p->cq_stop = 1;
		pthread_cond_broadcast(&p->cq_nonempty);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->committer, NULL);
		p->committer_started = 0;
	}
}

static void free_val(void *v)
{
	dkp_free(v);
}

void dkp_pool_free(struct dkp_pool *p)
{
	unsigned i, j;
	size_t k;

	if (p == NULL)
		return;
	for (i = 0; p->w && i < p->nthreads; i++) {
		struct worker *w = &p->w[i];

		if (w->tw)
			p->t->ops->worker_free(w->tw);
		for (j = 0; j < NSLOTS; j++) {
			for (k = 0; w->slot[j].m && k < p->batch; k++)
				dkp_free(w->slot[j].m[k].buf);
			dkp_free(w->slot[j].m);
			dkp_job_free(w->slot[j].job);
		}
	}
	for (k = 0; k < 2; k++) {
		dkp_free(p->tb[k]);
		dkp_free(p->tl[k]);
	}
	dkp_free(p->w);
	dkp_htab_free(p->inflight, NULL);
	dkp_htab_free(p->deferred, free_val);
	dkp_htab_free(p->esp_domains, free_val);
	dkp_free(p->q);
	dkp_snap_unref(p->snap);
	dkp_budget_fini(&p->budget);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->esp_mu);
	pthread_cond_destroy(&p->nonempty);
	pthread_cond_destroy(&p->space);
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->slot_done);
	pthread_cond_destroy(&p->cq_nonempty);
	dkp_free(p);
}

const struct dkp_stats *dkp_pool_stats(const struct dkp_pool *p)
{
	return &p->stats;
}

size_t dkp_pool_deferred(struct dkp_pool *p)
{
	size_t n;

	if (p->t->ops->pulls)
		return atomic_load(&p->stats.n[DKP_OUT_DEFERRED]);
	pthread_mutex_lock(&p->mu);
	n = dkp_htab_count(p->deferred);
	pthread_mutex_unlock(&p->mu);
	return n;
}

size_t dkp_pool_esp_only_domains(struct dkp_pool *p)
{
	size_t n;

	pthread_mutex_lock(&p->esp_mu);
	n = dkp_htab_count(p->esp_domains);
	pthread_mutex_unlock(&p->esp_mu);
	return n;
}

size_t dkp_pool_found(struct dkp_pool *p)
{
	size_t n;

	pthread_mutex_lock(&p->mu);
	n = p->found;
	pthread_mutex_unlock(&p->mu);
	return n;
}
