/*
 * pool_dispatch.c — the dispatcher (the caller's thread): it lists the
 * transport's waiting messages into the job queue, runs recovery every
 * couple of seconds, keeps the deferral table, and decides when a once
 * run is over; pool.c has the design.
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

		p->fatal = dkp_pool_claim_exit_code(e);
		pthread_mutex_unlock(&p->mu);
		dkp_error("the queue could not be listed for %.1f s (%s): stopping",
			  dkp_mono_now() - since, strerror(e));
		return;
	}
	if (!p->fatal && p->claim_fail_since > 0 &&
	    (final || dkp_mono_now() - p->claim_fail_since >= CLAIM_STOP_S)) {
		double since = p->claim_fail_since;	/* workers write both */
		int e = p->claim_errno;

		p->fatal = dkp_pool_claim_exit_code(e);
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

