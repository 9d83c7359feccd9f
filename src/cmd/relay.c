/*
 * relay.c — `dkimpress relay`; see relay.h and docs/integration.md.
 *
 * Threads: the main thread scans out/new (then the due part of
 * out/defer) and hands names to a bounded list; relay_connections
 * workers each take a name, claim the file by rename (another relay may
 * win: then it is skipped) and deliver it over their own persistent
 * session (relay_deliver.c). The main thread scans again once the list
 * is empty, so a name is never handed out twice by one scan; between
 * scans it sleeps in poll() on inotify (out/new), the signalfd and the
 * time of the next deferred message. Stop (SIGTERM, SIGINT, or --once
 * with nothing left): no new names; the workers finish the message in
 * hand; whatever is still in the area goes to out/defer; the area goes.
 */
#include "cmd/relay.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/config.h"
#include "relay/relay_deliver.h"
#include "relay/relay_js.h"
#include "relay/relay_queue.h"

#define EX_TEMPFAIL_ 75
#define EX_CONFIG_ 78
#define EX_IOERR_ 74
/* longest sleep without an event (other relays' deferrals show up) */
#define IDLE_RESCAN 30

struct item {
	char name[DKP_RQ_NAME_MAX];
	int from_defer;
};

struct relay {
	const struct dkp_config *conf;
	struct dkp_rq q;
	pthread_mutex_t mu;
	pthread_cond_t work, idle;
	struct item *items;
	size_t cap, head, n;
	unsigned busy;
	int stop;
	struct dkp_relay_worker *w;
	pthread_t *th;
	unsigned nth;
	int64_t next_due;	/* earliest deferred message not yet due */
	int64_t once_start;	/* --once: the run's start; 0: long-running */
};

struct wctx {
	struct relay *r;
	unsigned i;
};

/* A worker: take a name, deliver it, until stop. */
static void *worker_main(void *arg)
{
	struct wctx *x = arg;
	struct relay *r = x->r;
	struct dkp_relay_worker *w = &r->w[x->i];

	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct item it;

		while (r->n == 0 && !r->stop)
			pthread_cond_wait(&r->work, &r->mu);
		if (r->stop)
			break;
		it = r->items[r->head];
		r->head = (r->head + 1) % r->cap;
		r->n--;
		r->busy++;
		pthread_mutex_unlock(&r->mu);
		dkp_relay_one(w, it.from_defer, it.name);
		pthread_mutex_lock(&r->mu);
		r->busy--;
		if (r->n == 0 && r->busy == 0)
			pthread_cond_broadcast(&r->idle);
	}
	pthread_mutex_unlock(&r->mu);
	dkp_smtp_session_quit(&w->s);
	return NULL;
}

/* Add a name to the list (the caller holds no lock). 1: full now. */
static int push(struct relay *r, const char *name, int from_defer)
{
	int full;

	pthread_mutex_lock(&r->mu);
	if (r->n == r->cap) {
		pthread_mutex_unlock(&r->mu);
		return 1;
	}
	snprintf(r->items[(r->head + r->n) % r->cap].name, DKP_RQ_NAME_MAX, "%s", name);
	r->items[(r->head + r->n) % r->cap].from_defer = from_defer;
	r->n++;
	full = r->n == r->cap;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->mu);
	return full;
}

struct scan {
	struct relay *r;
	int from_defer;
	int64_t now;
	size_t pushed, limit;
};

static int scan_one(void *ctx, const char *name)
{
	struct scan *s = ctx;
	char id[DKP_RQ_NAME_MAX];
	struct dkp_rq_state st;

	if (dkp_rq_name_parse(name, id, &st) < 0)
		return 0;
	if (s->from_defer && st.next > s->now) {
		if (s->r->next_due == 0 || st.next < s->r->next_due)
			s->r->next_due = st.next;
		return 0;
	}
	s->pushed++;
	return push(s->r, name, s->from_defer) || s->pushed >= s->limit;
}

/* Hand out up to a list's worth: due messages of out/defer first (at
 * most half, so a steady flow into out/new cannot starve the retries),
 * then out/new. */
static size_t scan(struct relay *r)
{
	/* --once: only what was due when the run began, so a message
	 * deferred by this run waits for the next run */
	struct scan s = { r, 1, r->once_start ? r->once_start : (int64_t)time(NULL), 0,
			  r->cap / 2 };
	size_t from_defer;

	r->next_due = 0;
	dkp_rq_each(r->q.defer, scan_one, &s);
	from_defer = s.pushed;
	s.from_defer = 0;
	s.pushed = 0;
	s.limit = r->cap - from_defer;
	dkp_rq_each(r->q.out_new, scan_one, &s);
	return from_defer + s.pushed;
}

/* Wait until the workers have taken every name (or stop). */
static void wait_taken(struct relay *r, int all_idle)
{
	pthread_mutex_lock(&r->mu);
	while (!r->stop && (r->n > 0 || (all_idle && r->busy > 0))) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->idle, &r->mu, &ts);
		if (r->n > 0 || (all_idle && r->busy > 0))
			break;	/* back to the caller: it checks the signals */
	}
	pthread_mutex_unlock(&r->mu);
}

static void set_stop(struct relay *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	r->n = 0;
	pthread_cond_broadcast(&r->work);
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->mu);
}

/* A pending SIGTERM/SIGINT on sfd? (drained) */
static int got_signal(int sfd)
{
	struct signalfd_siginfo si;
	int got = 0;

	while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			got = 1;
	return got;
}

/* Are the workers idle with nothing listed? */
static int all_idle(struct relay *r)
{
	int idle;

	pthread_mutex_lock(&r->mu);
	idle = r->n == 0 && r->busy == 0;
	pthread_mutex_unlock(&r->mu);
	return idle;
}

/* Sleep until out/new changes, a signal, or the next deferral is due. */
static void sleep_events(struct relay *r, int ifd, int sfd)
{
	struct pollfd p[2] = { { .fd = ifd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
	int64_t now = (int64_t)time(NULL), wait = IDLE_RESCAN;
	char buf[4096];

	if (r->next_due && r->next_due - now < wait)
		wait = r->next_due > now ? r->next_due - now : 0;
	if (poll(p, ifd >= 0 ? 2 : 1, (int)wait * 1000 + 10) > 0 && (p[0].revents & POLLIN))
		while (read(ifd, buf, sizeof(buf)) > 0)
			;
}

/* The main loop; returns when stopped or (once) when nothing is due. */
static void main_loop(struct relay *r, int once, int ifd, int sfd)
{
	for (;;) {
		if (got_signal(sfd))
			break;
		if (scan(r) > 0) {
			while (!all_idle(r) && !r->stop) {
				wait_taken(r, 0);
				if (got_signal(sfd))
					return;
				pthread_mutex_lock(&r->mu);
				if (r->n == 0) {
					pthread_mutex_unlock(&r->mu);
					break;
				}
				pthread_mutex_unlock(&r->mu);
			}
			continue;
		}
		if (!all_idle(r)) {
			/* the last messages are in hand: their outcome may be
			 * a deferral due now (a retry schedule of 0s) */
			wait_taken(r, 1);
			continue;
		}
		if (once)
			break;
		sleep_events(r, ifd, sfd);
	}
}

/* The TLS context: system CAs or relay_tls_ca, TLS 1.2 at least. */
static SSL_CTX *tls_context(const struct dkp_relay_config *cf)
{
	SSL_CTX *ctx;

	if (cf->tls == DKP_RELAY_TLS_NONE)
		return NULL;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (cf->tls_ca ? SSL_CTX_load_verify_locations(ctx, cf->tls_ca, NULL) != 1
		       : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Start the workers. */
static void start(struct relay *r, SSL_CTX *ctx, const char *helo, struct wctx *x)
{
	unsigned i;

	r->nth = r->conf->relay.connections;
	r->cap = r->nth * 4 < 64 ? 64 : r->nth * 4;
	r->items = dkp_calloc(r->cap, sizeof(*r->items));
	r->w = dkp_calloc(r->nth, sizeof(*r->w));
	r->th = dkp_calloc(r->nth, sizeof(*r->th));
	for (i = 0; i < r->nth; i++) {
		dkp_relay_worker_init(&r->w[i], &r->q, &r->conf->relay, ctx, helo);
		x[i].r = r;
		x[i].i = i;
		if (pthread_create(&r->th[i], NULL, worker_main, &x[i]) != 0)
			dkp_fatal("relay: cannot start a worker thread");
	}
}

/* Join the workers, add up and print their counts; exit status. */
static int finish(struct relay *r, int once)
{
	uint64_t d = 0, df = 0, f = 0, p = 0, wn = 0;
	double ws = 0, wm = 0;
	unsigned i;

	for (i = 0; i < r->nth; i++)
		pthread_join(r->th[i], NULL);
	for (i = 0; i < r->nth; i++) {
		struct dkp_relay_worker *w = &r->w[i];

		d += w->delivered;
		df += w->deferred;
		f += w->failed;
		p += w->partial;
		wn += w->win_n;
		ws += w->win_sum;
		if (w->win_max > wm)
			wm = w->win_max;
		dkp_relay_worker_free(w);
	}
	fprintf(stderr,
		"relay: %llu delivered, %llu deferred, %llu failed, %llu partly delivered; "
		"2xx-to-delete window: %llu messages, mean %.1f us, max %.1f us\n",
		(unsigned long long)d, (unsigned long long)df, (unsigned long long)f,
		(unsigned long long)p, (unsigned long long)wn, wn ? ws / wn * 1e6 : 0.0,
		wm * 1e6);
	dkp_free(r->w);
	dkp_free(r->th);
	dkp_free(r->items);
	return once && df ? EX_TEMPFAIL_ : 0;
}

/* Block the stop signals (for every thread) and read them from an fd. */
static int signals_fd(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);	/* no reload yet: ignored, not fatal */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* Load and check the configuration; NULL on error (reported). */
static struct dkp_config *load(const struct dkp_cli *c)
{
	struct dkp_config *conf;
	struct dkp_err err;

	dkp_err_clear(&err);
	if (dkp_config_load(&conf, c->conf, c->sets, c->nsets, &err) != DKP_OK) {
		dkp_error("%s", err.msg);
		return NULL;
	}
	if (conf->relay.host == NULL) {
		dkp_error("%s: relay needs relay_host = HOST[:PORT]", c->conf);
		dkp_config_free(conf);
		return NULL;
	}
	if (conf->log_syslog)
		dkp_log_syslog(1);
	return conf;
}

static void helo_name(const struct dkp_config *conf, char *helo, size_t sz)
{
	if (conf->relay.helo)
		snprintf(helo, sz, "%s", conf->relay.helo);
	else if (gethostname(helo, sz - 1) < 0 || !helo[0])
		snprintf(helo, sz, "localhost");
}

/* transport = jetstream: the output stream instead of out/new. */
static int relay_js(struct relay *r, const struct dkp_cli *c, SSL_CTX *ctx)
{
	char helo[256];
	int sfd, rc;

	helo_name(r->conf, helo, sizeof(helo));
	sfd = signals_fd();
	rc = dkp_relay_js_run(r->conf, ctx, helo, c->once, sfd);
	if (sfd >= 0)
		close(sfd);
	SSL_CTX_free(ctx);
	dkp_config_free((struct dkp_config *)r->conf);
	return rc;
}

int dkp_relay_run(const struct dkp_cli *c)
{
	struct relay r;
	struct wctx *x;
	SSL_CTX *ctx = NULL;
	char why[4096], helo[256];
	int sfd, ifd, rc;

	memset(&r, 0, sizeof(r));
	if ((r.conf = load(c)) == NULL)
		return EX_CONFIG_;
	if (r.conf->relay.tls != DKP_RELAY_TLS_NONE && (ctx = tls_context(&r.conf->relay)) == NULL) {
		dkp_error("relay: cannot set up TLS (relay_tls_ca?)");
		dkp_config_free((struct dkp_config *)r.conf);
		return EX_CONFIG_;
	}
	if (r.conf->transport == DKP_TRANSPORT_JETSTREAM)	/* relay_js.h */
		return relay_js(&r, c, ctx);
	if ((rc = dkp_rq_open(&r.q, r.conf->out_dir, r.conf->failed_dir, why, sizeof(why))) < 0) {
		dkp_error("relay: %s: %s", why, strerror(-rc));
		dkp_rq_close(&r.q, 0);
		SSL_CTX_free(ctx);
		dkp_config_free((struct dkp_config *)r.conf);
		return EX_IOERR_;
	}
	if (r.conf->relay.helo)
		snprintf(helo, sizeof(helo), "%s", r.conf->relay.helo);
	else if (gethostname(helo, sizeof(helo) - 1) < 0 || !helo[0])
		snprintf(helo, sizeof(helo), "localhost");
	sfd = signals_fd();
	ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	snprintf(why, sizeof(why), "%s/new", r.conf->out_dir);
	if (ifd >= 0 && inotify_add_watch(ifd, why, IN_MOVED_TO | IN_CREATE) < 0) {
		close(ifd);
		ifd = -1;	/* then a rescan every few seconds */
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.work, NULL);
	pthread_cond_init(&r.idle, NULL);
	if (c->once)
		r.once_start = (int64_t)time(NULL);
	x = dkp_calloc(r.conf->relay.connections, sizeof(*x));
	start(&r, ctx, helo, x);
	main_loop(&r, c->once, ifd, sfd);
	set_stop(&r);
	rc = finish(&r, c->once);
	if (dkp_rq_release(&r.q) < 0)
		dkp_error("relay: could not move every message of the area to out/defer");
	dkp_rq_close(&r.q, 1);
	dkp_free(x);
	if (ifd >= 0)
		close(ifd);
	if (sfd >= 0)
		close(sfd);
	SSL_CTX_free(ctx);
	dkp_config_free((struct dkp_config *)r.conf);
	return rc;
}
