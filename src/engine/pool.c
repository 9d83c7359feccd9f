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

/* The pool's state before any worker: locks, queues, tables, budget. */
static struct dkp_pool *pool_new(struct dkp_transport *t, struct dkp_snap *s,
				 const struct dkp_pool_cfg *c)
{
	struct dkp_pool *p = dkp_calloc(1, sizeof(*p));

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
	return p;
}

/* Worker i's transport area (and ring: without one, plain syscalls
 * unless io = uring) and its batch slots. */
static int worker_setup(struct dkp_pool *p, unsigned i, char *why, size_t whylen)
{
	const struct dkp_pool_cfg *c = &p->cfg;
	struct dkp_transport *t = p->t;
	struct worker *w = &p->w[i];
	unsigned j, k;
	int rc;

	w->p = p;
	w->id = i;
	rc = t->ops->worker_new(t, i, p->uring, c->uring_depth, &w->tw);
	if (rc < 0 && p->uring && !c->require_uring) {
		if (i == 0)
			dkp_info("io_uring unavailable (%s): using plain syscalls", strerror(-rc));
		p->uring = 0;
		rc = t->ops->worker_new(t, i, 0, c->uring_depth, &w->tw);
	}
	if (rc < 0) {
		snprintf(why, whylen, "%s", c->require_uring && p->uring
			 ? "io_uring unavailable and io = uring"
			 : "cannot set up a worker's area or ring");
		return rc;
	}
	for (k = 0; k < NSLOTS; k++) {
		struct slot *sl = &w->slot[k];

		sl->w = w;
		sl->job = dkp_job_new(c->batch);
		dkp_job_set_hook(sl->job, dkp_pool_esp_only_hook, p);
		dkp_job_set_nosign(sl->job, c->nosign);
		sl->m = dkp_calloc(c->batch, sizeof(*sl->m));
		for (j = 0; j < c->batch; j++)
			sl->m[j].fd = -1;
	}
	return 0;
}

/* The commit thread (group commit) and the workers, with every signal
 * blocked: the caller's thread takes them. */
static int start_threads(struct dkp_pool *p)
{
	sigset_t all, old;
	unsigned i;
	int rc = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (p->gc) {
		if (pthread_create(&p->committer, NULL, dkp_pool_committer_main, p) != 0)
			rc = -EAGAIN;
		else
			p->committer_started = 1;
	}
	for (i = 0; rc == 0 && i < p->nthreads; i++) {
		if (pthread_create(&p->w[i].th, NULL,
				   p->t->ops->pulls ? dkp_pool_worker_pull : dkp_pool_worker_main,
				   &p->w[i]) != 0) {
			rc = -EAGAIN;
			break;
		}
		p->w[i].started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int dkp_pool_start(struct dkp_pool **out, struct dkp_transport *t,
		   struct dkp_snap *s, const struct dkp_pool_cfg *c, char *why,
		   size_t whylen)
{
	struct dkp_pool *p = pool_new(t, s, c);
	unsigned i, k;
	int rc;

	*out = NULL;
	/* rings and areas first, so a refusal is known before any thread */
	p->w = dkp_calloc(p->nthreads, sizeof(*p->w));
	for (i = 0; i < p->nthreads; i++)
		if ((rc = worker_setup(p, i, why, whylen)) < 0) {
			dkp_pool_free(p);
			return rc;
		}
	if (p->gc)
		for (k = 0; k < 2; k++) {
			p->tb[k] = dkp_calloc((size_t)p->nthreads * NSLOTS, sizeof(*p->tb[k]));
			p->tl[k] = dkp_calloc((size_t)p->nthreads * NSLOTS, sizeof(*p->tl[k]));
		}
	if ((rc = start_threads(p)) < 0) {
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
