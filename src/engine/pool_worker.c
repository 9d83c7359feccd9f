/*
 * pool_worker.c — the worker threads (a batch: fetch, sign, stage or
 * commit, account) and the commit thread's rounds; pool.c has the design.
 */
#include "engine/pool.h"
#include "engine/pool_int.h"

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

void dkp_pool_esp_only_hook(void *ctx, const char *domain, const char *id)
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

int dkp_pool_claim_exit_code(int e)
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

void *dkp_pool_worker_main(void *arg)
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
void *dkp_pool_committer_main(void *arg)
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
void *dkp_pool_worker_pull(void *arg)
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

