/*
 * pool.c — the batch engine.
 *
 * Producers: one dispatcher (the main thread) lists in/new and pushes
 * queue IDs into a bounded job queue (threads x batch x 2 entries); it
 * never claims anything itself. An ID stays in an "in flight" set from
 * the push until a worker reports its outcome, so a rescan never queues
 * it twice.
 *
 * Consumers: N worker threads. Each takes up to `batch` IDs at once and
 * runs them through job.c (claim, read, sign, write, publish, retire) with
 * its own io_uring, OpenSSL contexts and buffers. Order between messages
 * is not kept: each is independent. Memory is bounded by the queue size
 * and by the in-flight byte budget (inflight_bytes), whatever the backlog.
 *
 * Snapshot: workers take a reference to the current signing snapshot per
 * batch. SIGHUP builds a new one; if it loads, the pointer is swapped
 * under the queue lock and the old one is freed when its last batch ends;
 * if not, the error is logged and the old one keeps signing.
 *
 * Deferred messages go back to in/new. They are retried after a delay
 * that doubles per attempt; a transient error (disk full, I/O error) also
 * makes the whole pool pause before its next batch (doubling up to 5 s;
 * 1 s with --once). With --once, a message is retried up to DEFER_TRIES
 * times for transient errors, once otherwise, then left in in/new and
 * counted as deferred.
 *
 * Shutdown: SIGTERM or SIGINT stops the dispatcher; workers drop IDs not
 * yet claimed (they stay in in/new), finish the batch in hand and exit.
 * --once ends when a scan finds nothing left to do.
 */
#include "engine/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/htab.h"
#include "engine/job.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/snap.h"

#define DEFER_TRIES 3
#define MAX_PAUSE_MS 5000		/* watch mode: back off up to 5 s */
#define ONCE_MAX_PAUSE_MS 1000	/* --once: report a full disk soon */
#define RESCAN_MS 1000

struct deferral {
	double next;		/* monotonic seconds */
	unsigned tries;
	int retry;		/* transient cause */
};

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t nonempty, space, idle;
	char (*q)[DKP_QID_MAX + 1];
	size_t cap, head, count;
	unsigned busy, nthreads, batch;
	int stop;
	struct dkp_htab *inflight;	/* id -> (void *)1 */
	struct dkp_htab *deferred;	/* id -> struct deferral */
	struct dkp_snap *snap;
	int once;
	double pause_until;		/* back-off after transient errors */
	double retry_due;		/* --once: latest pending retry */
	unsigned backoff_ms;
	struct dkp_qdir qd;
	struct dkp_stats stats;
	struct dkp_budget budget;
	pthread_mutex_t esp_mu;
	struct dkp_htab *esp_domains;	/* domain -> count */
	size_t found;			/* IDs seen by scans (progress) */
};

static volatile sig_atomic_t sig_stop, sig_reload;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		sig_reload = 1;
	else
		sig_stop = 1;
}

static void esp_only_hook(void *ctx, const char *domain, const char *id)
{
	struct pool *p = ctx;
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

struct wctx {
	struct pool *p;
	struct dkp_worker w;
	pthread_t th;
};

static void *worker_main(void *arg)
{
	struct wctx *wc = arg;
	struct pool *p = wc->p;
	char (*ids)[DKP_QID_MAX + 1] = dkp_calloc(p->batch, sizeof(*ids));
	int *out = dkp_calloc(p->batch, sizeof(*out));

	for (;;) {
		struct dkp_snap *s;
		size_t n = 0, i;
		double wait, started;
		int rc;

		pthread_mutex_lock(&p->mu);
		while (p->count == 0 && !p->stop)
			pthread_cond_wait(&p->nonempty, &p->mu);
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		while (n < p->batch && p->count > 0) {
			memcpy(ids[n++], p->q[p->head], DKP_QID_MAX + 1);
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
		rc = dkp_job_batch(&wc->w, s, ids, n, out);
		dkp_snap_unref(s);

		pthread_mutex_lock(&p->mu);
		for (i = 0; i < n; i++) {
			size_t len = strlen(ids[i]);
			int o = out[i] & DKP_OUT_MASK;

			dkp_htab_del(p->inflight, ids[i], len);
			if (o == DKP_OUT_DEFERRED) {
				struct deferral *d = dkp_htab_get(p->deferred, ids[i], len);
				double delay;

				if (d == NULL) {
					d = dkp_calloc(1, sizeof(*d));
					dkp_htab_put(p->deferred, ids[i], len, d);
				}
				d->tries++;
				d->retry = (out[i] & DKP_OUT_RETRY) != 0;
				delay = p->once ? 0.2 * (double)(1u << (d->tries < 6 ? d->tries : 6))
						: (double)(1u << (d->tries < 8 ? d->tries : 8));
				d->next = dkp_mono_now() + delay;
				if (d->retry && d->tries < DEFER_TRIES &&
				    d->next > p->retry_due)
					p->retry_due = d->next;
			} else {
				dkp_free(dkp_htab_del(p->deferred, ids[i], len));
			}
		}
		if (rc < 0 && started >= p->pause_until) {
			/* one back-off window at a time: batches already running
			 * when it opened do not stretch it; the next failure after
			 * it doubles it */
			p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 100;
			if (p->backoff_ms > (p->once ? ONCE_MAX_PAUSE_MS : MAX_PAUSE_MS))
				p->backoff_ms = p->once ? ONCE_MAX_PAUSE_MS : MAX_PAUSE_MS;
			p->pause_until = dkp_mono_now() + p->backoff_ms / 1000.0;
			dkp_warn("transient I/O error (%s): pausing %u ms before the next batch",
				 strerror(-rc), p->backoff_ms);
		} else if (rc == 0) {
			p->backoff_ms = 0;
		}
		p->busy--;
		pthread_cond_broadcast(&p->idle);
		pthread_mutex_unlock(&p->mu);
	}
	dkp_free(ids);
	dkp_free(out);
	return NULL;
}

struct scan_ctx {
	struct pool *p;
	size_t pushed;
	double now;
};

/* Push one ID unless it is in flight or waiting out a deferral. */
static int push_id(void *ctx, const char *id)
{
	struct scan_ctx *sc = ctx;
	struct pool *p = sc->p;
	size_t len = strlen(id);
	struct deferral *d;

	pthread_mutex_lock(&p->mu);
	if (dkp_htab_get(p->inflight, id, len)) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	d = dkp_htab_get(p->deferred, id, len);
	if (d && (d->next > sc->now ||
		  (p->once && d->tries >= (d->retry ? DEFER_TRIES : 1)))) {
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	if (d == NULL && !dkp_htab_get(p->inflight, id, len))
		p->found++;
	while (p->count == p->cap && !p->stop && !sig_stop)
		pthread_cond_wait(&p->space, &p->mu);
	if (p->stop || sig_stop) {
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

static void bad_name(void *ctx, const char *name)
{
	(void)ctx;
	dkp_warn("in/new/%s: not a valid queue ID; left alone", name);
}

static size_t scan(struct pool *p)
{
	struct scan_ctx sc = { p, 0, dkp_mono_now() };
	int rc = dkp_qdir_scan(p->qd.in_new, push_id, bad_name, &sc);

	if (rc < 0)
		dkp_error("cannot list %s/new: %s", p->qd.in_path, strerror(-rc));
	return sc.pushed;
}

static void progress(struct pool *p, double t0, int final)
{
	unsigned long done = 0;
	double el = dkp_mono_now() - t0, rate;
	size_t total;
	int k;

	for (k = 0; k < 4; k++)
		done += atomic_load(&p->stats.n[k]);
	pthread_mutex_lock(&p->mu);
	total = p->found;
	pthread_mutex_unlock(&p->mu);
	rate = el > 0 ? (double)done / el : 0;
	fprintf(stderr, "\rdkimpress: %lu/%zu done, %.0f msg/s, ETA %.0f s   %s",
		done, total, rate,
		rate > 0 && total > done ? (double)(total - done) / rate : 0.0,
		final ? "\n" : "");
}

/* Wait until the queue is empty and no batch runs; prints progress. */
static void wait_idle(struct pool *p, int show, double t0)
{
	pthread_mutex_lock(&p->mu);
	while ((p->count > 0 || p->busy > 0) && !sig_stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->idle, &p->mu, &ts);
		if (show) {
			pthread_mutex_unlock(&p->mu);
			progress(p, t0, 0);
			pthread_mutex_lock(&p->mu);
		}
	}
	pthread_mutex_unlock(&p->mu);
}

static void reload(struct pool *p, const struct dkp_run_opts *o)
{
	const char *conf = o->conf;
	struct dkp_snap *s, *old;
	struct dkp_err err;
	const struct dkp_config *a, *b;

	dkp_err_clear(&err);
	if (dkp_snap_load(&s, conf, o->sets, o->nsets, &err) != DKP_OK) {
		dkp_error("reload failed, the running configuration stays: %s", err.msg);
		return;
	}
	a = p->snap->cfg;
	b = s->cfg;
	if (strcmp(a->in_dir, b->in_dir) || strcmp(a->out_dir, b->out_dir) ||
	    strcmp(a->failed_dir, b->failed_dir) || a->threads != b->threads ||
	    a->batch != b->batch || a->io != b->io ||
	    a->inflight_bytes != b->inflight_bytes || a->uring_depth != b->uring_depth)
		dkp_warn("reload: queue directories, threads, batch, io, uring_depth and inflight_bytes change only on restart");
	pthread_mutex_lock(&p->mu);
	old = p->snap;
	p->snap = s;
	pthread_mutex_unlock(&p->mu);
	dkp_snap_unref(old);
	dkp_info("reloaded %s", conf);
}

/* The run's figures as one JSON object, for `dkimpress bench`. */
static int write_stats(const char *path, struct pool *p, const unsigned long *n,
		       unsigned long bytes, double el)
{
	FILE *f = fopen(path, "we");
	int rc;

	if (f == NULL)
		return -1;
	fprintf(f, "{\"signed\":%lu,\"esp_only\":%lu,\"deferred\":%lu,\"failed\":%lu,"
		"\"bytes\":%lu,\"seconds\":%.6f,\"threads\":%u,\"batch\":%u,"
		"\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
		n[DKP_OUT_SIGNED], n[DKP_OUT_ESP_ONLY], n[DKP_OUT_DEFERRED],
		n[DKP_OUT_FAILED], bytes, el, p->nthreads, p->batch,
		dkp_stats_latency_ms(&p->stats, 0.50),
		dkp_stats_latency_ms(&p->stats, 0.99));
	rc = ferror(f) ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

static void free_val(void *v)
{
	dkp_free(v);
}

static int watch_setup(struct pool *p)
{
	char path[4200];
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0) {
		dkp_warn("inotify unavailable (%s): scanning every %d ms",
			 strerror(errno), RESCAN_MS);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/new", p->qd.in_path);
	if (inotify_add_watch(fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		dkp_warn("cannot watch %s (%s): scanning every %d ms", path,
			 strerror(errno), RESCAN_MS);
		close(fd);
		return -1;
	}
	return fd;
}

int dkp_pool_run(const struct dkp_run_opts *o)
{
	struct pool p;
	struct dkp_err err;
	struct wctx *wc = NULL;
	struct sigaction sa;
	sigset_t all, old;
	const struct dkp_config *c;
	size_t retired = 0, requeued = 0;
	unsigned i, started = 0;
	int rc, lockfd = -1, ino = -1, exitcode = 0, uring_ok = 1;
	double t0, el;
	unsigned long n[5], bytes;

	memset(&p, 0, sizeof(p));
	dkp_err_clear(&err);
	if (dkp_snap_load(&p.snap, o->conf, o->sets, o->nsets, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		return err.code == DKP_E_IO && err.sys_errno == ENOENT &&
			       strstr(err.msg, o->conf) ? 66 : 78;
	}
	c = p.snap->cfg;
	if ((rc = dkp_qdir_open(&p.qd, c->in_dir, c->out_dir, c->failed_dir)) < 0) {
		dkp_error("cannot open the queue directories (%s, %s, %s): %s",
			  c->in_dir, c->out_dir, c->failed_dir, strerror(-rc));
		dkp_snap_unref(p.snap);
		return 78;
	}
	/* one engine per queue: recovery assumes no other signer is live */
	lockfd = open(c->in_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		dkp_error("%s is in use by another dkimpress run", c->in_dir);
		exitcode = 75;
		goto out_early;
	}
	if ((rc = dkp_qdir_recover(&p.qd, &retired, &requeued)) < 0) {
		dkp_error("recovery of %s failed: %s", c->in_dir, strerror(-rc));
		exitcode = 74;
		goto out_early;
	}
	if (retired || requeued)
		dkp_info("recovery: %zu published before a crash retired, %zu requeued to sign again",
			 retired, requeued);

	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.nonempty, NULL);
	pthread_cond_init(&p.space, NULL);
	pthread_cond_init(&p.idle, NULL);
	pthread_mutex_init(&p.esp_mu, NULL);
	p.nthreads = c->threads;
	p.batch = c->batch;
	p.cap = (size_t)c->threads * c->batch * 2;
	p.q = dkp_calloc(p.cap, sizeof(*p.q));
	p.inflight = dkp_htab_new(p.cap);
	p.deferred = dkp_htab_new(64);
	p.esp_domains = dkp_htab_new(64);
	p.once = o->once;
	dkp_budget_init(&p.budget, c->inflight_bytes);

	/* rings first, so a refusal is known before any thread starts */
	wc = dkp_calloc(p.nthreads, sizeof(*wc));
	for (i = 0; i < p.nthreads; i++) {
		struct dkp_ring *r = NULL;

		rc = c->io == DKP_IO_SYSCALLS ? 1 : dkp_ring_new(&r, c->uring_depth, 1);
		if (rc < 0 && c->io == DKP_IO_URING) {
			dkp_error("io_uring unavailable (%s) and io = uring", strerror(-rc));
			exitcode = 78;
			goto out;
		}
		if (rc != 0) {
			if (rc < 0 && uring_ok)
				dkp_info("io_uring unavailable (%s): using plain syscalls",
					 strerror(-rc));
			uring_ok = 0;
			dkp_ring_new(&r, c->uring_depth, 0);
		}
		wc[i].p = &p;
		dkp_worker_init(&wc[i].w, i, r, &p.qd, &p.stats, &p.budget, c->batch);
		wc[i].w.esp_only = esp_only_hook;
		wc[i].w.nosign = o->nosign;
		wc[i].w.esp_only_ctx = &p;
	}

	/* workers never take signals; the main thread does */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < p.nthreads; i++) {
		if (pthread_create(&wc[i].th, NULL, worker_main, &wc[i]) != 0) {
			dkp_error("cannot start worker threads");
			exitcode = 71;
			break;
		}
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	dkp_info("run: %u threads, batch %u, %s, flush %s, queue %s", p.nthreads,
		 p.batch, uring_ok && c->io != DKP_IO_SYSCALLS ? "io_uring" : "syscalls",
		 c->flush == DKP_FLUSH_FILES ? "files" : "filesystem", c->in_dir);
	if (o->nosign)
		dkp_warn("--no-sign: messages are copied to %s UNSIGNED (benchmark only)",
			 c->out_dir);
	t0 = dkp_mono_now();
	if (exitcode == 0 && o->once) {
		for (;;) {
			size_t pushed = scan(&p);

			wait_idle(&p, o->progress, t0);
			if (sig_stop)
				break;
			if (sig_reload) {
				sig_reload = 0;
				reload(&p, o);
			}
			if (pushed == 0) {
				/* done, unless a transient deferral awaits a retry */
				double due;

				pthread_mutex_lock(&p.mu);
				due = p.retry_due;
				pthread_mutex_unlock(&p.mu);
				if (dkp_mono_now() >= due)
					break;
				usleep(100000);
			}
		}
	} else if (exitcode == 0) {
		ino = watch_setup(&p);
		while (!sig_stop) {
			struct pollfd pfd = { ino, POLLIN, 0 };
			char evbuf[4096];

			scan(&p);
			if (sig_reload) {
				sig_reload = 0;
				reload(&p, o);
			}
			if (ino >= 0) {
				if (poll(&pfd, 1, RESCAN_MS) > 0)
					while (read(ino, evbuf, sizeof(evbuf)) > 0)
						;
			} else {
				usleep(RESCAN_MS * 1000);
			}
		}
	}
	if (o->progress && o->once)
		progress(&p, t0, 1);
out:
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	/* IDs not yet claimed stay in in/new */
	p.count = 0;
	pthread_cond_broadcast(&p.nonempty);
	pthread_cond_broadcast(&p.space);
	pthread_mutex_unlock(&p.mu);
	for (i = 0; i < started; i++)
		pthread_join(wc[i].th, NULL);
	el = dkp_mono_now() - t0;
	for (i = 0; i < 5; i++)
		n[i] = atomic_load(&p.stats.n[i]);
	/* a message deferred and later signed counts once, as signed */
	n[DKP_OUT_DEFERRED] = dkp_htab_count(p.deferred);
	bytes = atomic_load(&p.stats.bytes);
	if (exitcode == 0) {
		printf("dkimpress: signed %lu, esp-only %lu, deferred %lu, failed %lu "
		       "in %.2f s: %.0f msg/s, %.1f MB/s",
		       n[DKP_OUT_SIGNED], n[DKP_OUT_ESP_ONLY], n[DKP_OUT_DEFERRED],
		       n[DKP_OUT_FAILED], el,
		       el > 0 ? (double)(n[DKP_OUT_SIGNED] + n[DKP_OUT_ESP_ONLY]) / el : 0.0,
		       el > 0 ? (double)bytes / el / 1e6 : 0.0);
		if (dkp_htab_count(p.esp_domains))
			printf("; %zu domains without a customer key",
			       dkp_htab_count(p.esp_domains));
		if (n[DKP_OUT_SIGNED] + n[DKP_OUT_ESP_ONLY])
			printf("; latency p50 %.1f ms, p99 %.1f ms",
			       dkp_stats_latency_ms(&p.stats, 0.50),
			       dkp_stats_latency_ms(&p.stats, 0.99));
		if (sig_stop)
			printf(" (stopped by signal)");
		printf("\n");
		fflush(stdout);
		if (o->stats_path && write_stats(o->stats_path, &p, n, bytes, el) < 0)
			dkp_error("cannot write %s: %s", o->stats_path, strerror(errno));
		if (o->once)
			exitcode = n[DKP_OUT_FAILED] ? 65 : n[DKP_OUT_DEFERRED] ? 75 : 0;
	}
	for (i = 0; i < p.nthreads && wc; i++)
		if (wc[i].p)
			dkp_worker_fini(&wc[i].w);
	dkp_free(wc);
	if (ino >= 0)
		close(ino);
	dkp_htab_free(p.inflight, NULL);
	dkp_htab_free(p.deferred, free_val);
	dkp_htab_free(p.esp_domains, free_val);
	dkp_free(p.q);
	dkp_budget_fini(&p.budget);
	pthread_mutex_destroy(&p.mu);
	pthread_mutex_destroy(&p.esp_mu);
	pthread_cond_destroy(&p.nonempty);
	pthread_cond_destroy(&p.space);
	pthread_cond_destroy(&p.idle);
out_early:
	if (lockfd >= 0)
		close(lockfd);
	dkp_qdir_close(&p.qd);
	dkp_snap_unref(p.snap);
	return exitcode;
}
