/*
 * run.c — `dkimpress run`, the process around the engine; see run.h.
 *
 * Exit codes with --once: 0 everything found was published (or nothing
 * was there); 65 at least one message went to failed/; 75 messages are
 * left in the queue (deferred, or the run was stopped by a signal before
 * the queue was drained); 74/77 the queue could not be worked (see
 * pool.h); 78 configuration; 66 no configuration file. In watch mode a
 * stop by signal exits 0 unless the queue could not be worked.
 */
#include "cmd/run.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "cmd/alignrep.h"
#include "cmd/metrics.h"
#include "dkim/sign.h"
#include "engine/pool.h"
#include "transport/jetstream.h"
#include "transport/qdir.h"

static volatile sig_atomic_t sig_stop, sig_reload;
/* reloads done and failed (the metrics endpoint and --stats read them) */
static atomic_ulong n_reloads, n_reload_failures;

/* Tell systemd (Type=notify) where the engine is, through libsystemd's
 * sd_notify(3): only when started with NOTIFY_SOCKET (by systemd, or a
 * test); a failed notification is not an error. */
__attribute__((format(printf, 1, 2)))
static void notify(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sd_notify(0, msg);
}

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		sig_reload = 1;
	else
		sig_stop = 1;
}

struct run {
	const struct dkp_run_opts *o;
	double t0, last_progress;
	double cpu0;		/* dkp_cpu_now() at t0: the keys loaded */
	struct dkp_pool *pool;
	struct dkp_metrics *metrics;	/* NULL: no metrics_listen */
};

static int hook_stop(void *ctx)
{
	(void)ctx;
	return sig_stop != 0;
}

static void progress(struct run *r, int final)
{
	const struct dkp_stats *st = dkp_pool_stats(r->pool);
	unsigned long done = 0;
	double el = dkp_mono_now() - r->t0, rate;
	size_t total = dkp_pool_found(r->pool);
	int k;

	for (k = DKP_OUT_SIGNED; k <= DKP_OUT_FAILED; k++)
		if (k != DKP_OUT_DEFERRED)
			done += atomic_load(&st->n[k]);
	rate = el > 0 ? (double)done / el : 0;
	fprintf(stderr, "\rdkimpress: %lu/%zu done, %.0f msg/s, ETA %.0f s   %s",
		done, total, rate,
		rate > 0 && total > done ? (double)(total - done) / rate : 0.0,
		final ? "\n" : "");
}

/* Append name to out (", "-separated) when strings a and b differ. */
static void differ_s(struct dkp_buf *out, const char *name, const char *a,
		     const char *b)
{
	if ((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0))
		return;
	dkp_buf_printf(out, "%s%s", out->len ? ", " : "", name);
}

static void differ_i(struct dkp_buf *out, const char *name, long long a, long long b)
{
	if (a != b)
		dkp_buf_printf(out, "%s%s", out->len ? ", " : "", name);
}

/* The JetStream settings that differ between a and b, by their names in
 * the configuration file: the transport (its connection, streams,
 * consumer and workers) is made once, so every one waits for a restart. */
static void js_changes(const struct dkp_js_config *a, const struct dkp_js_config *b,
		       struct dkp_buf *out)
{
	differ_s(out, "nats_servers", a->servers, b->servers);
	differ_s(out, "in_stream", a->in_stream, b->in_stream);
	differ_s(out, "in_subject", a->in_subject, b->in_subject);
	differ_s(out, "out_stream", a->out_stream, b->out_stream);
	differ_s(out, "out_subject", a->out_subject, b->out_subject);
	differ_s(out, "failed_stream", a->failed_stream, b->failed_stream);
	differ_s(out, "failed_subject", a->failed_subject, b->failed_subject);
	differ_s(out, "nats_consumer", a->consumer, b->consumer);
	differ_s(out, "nats_creds", a->creds, b->creds);
	differ_s(out, "nats_user", a->user, b->user);
	differ_s(out, "nats_password", a->password, b->password);
	differ_s(out, "nats_token", a->token, b->token);
	differ_s(out, "nats_tls_ca", a->tls_ca, b->tls_ca);
	differ_s(out, "nats_tls_cert", a->tls_cert, b->tls_cert);
	differ_s(out, "nats_tls_key", a->tls_key, b->tls_key);
	differ_i(out, "stream_replicas", a->replicas, b->replicas);
	differ_i(out, "create_streams", a->create_streams, b->create_streams);
	differ_i(out, "dup_window", a->dup_window, b->dup_window);
	differ_i(out, "nak_delay", a->nak_delay, b->nak_delay);
	differ_i(out, "ack_wait", a->ack_wait, b->ack_wait);
	differ_i(out, "max_ack_pending", a->max_ack_pending, b->max_ack_pending);
}

/* SIGHUP: a new snapshot, or the old one keeps signing. */
static void reload(struct run *r, struct dkp_pool *p)
{
	struct dkp_snap *s;
	struct dkp_err err;
	const struct dkp_config *a, *b;

	dkp_err_clear(&err);
	if (dkp_snap_load(&s, r->o->conf, r->o->sets, r->o->nsets, &err) != DKP_OK) {
		dkp_error("reload failed, the running configuration stays: %s", err.msg);
		atomic_fetch_add(&n_reload_failures, 1);
		return;
	}
	a = dkp_pool_snap(p)->cfg;
	b = s->cfg;
	if (a->transport != b->transport) {
		dkp_warn("reload: transport changes only on restart");
	} else if (a->transport == DKP_TRANSPORT_JETSTREAM) {
		struct dkp_buf names;

		dkp_buf_init(&names);
		js_changes(&a->js, &b->js, &names);
		differ_i(&names, "threads", a->threads, b->threads);
		differ_i(&names, "batch", a->batch, b->batch);
		differ_i(&names, "inflight_bytes", (long long)a->inflight_bytes,
			 (long long)b->inflight_bytes);
		if (names.len)
			dkp_warn("reload: %.*s changed; the running engine keeps the old value%s until a restart",
				 (int)names.len, names.p,
				 memchr(names.p, ',', names.len) ? "s" : "");
		dkp_buf_free(&names);
	} else if (strcmp(a->in_dir, b->in_dir) || strcmp(a->out_dir, b->out_dir) ||
	    strcmp(a->failed_dir, b->failed_dir) || a->threads != b->threads ||
	    a->batch != b->batch || a->io != b->io || a->flush != b->flush ||
	    a->group_commit != b->group_commit ||
	    a->inflight_bytes != b->inflight_bytes || a->uring_depth != b->uring_depth ||
	    a->out_mode != b->out_mode || a->out_gid != b->out_gid)
		dkp_warn("reload: queue directories, out_mode, out_group, threads, batch, io, flush, group_commit, uring_depth and inflight_bytes change only on restart");
	if (!a->metrics_listen != !b->metrics_listen ||
	    (a->metrics_listen && strcmp(a->metrics_listen, b->metrics_listen)) ||
	    a->metrics_domains != b->metrics_domains || a->log_syslog != b->log_syslog)
		dkp_warn("reload: metrics_listen, metrics_domains and log change only on restart");
	dkp_pool_set_snap(p, s);
	dkp_snap_unref(s);
	atomic_fetch_add(&n_reloads, 1);
	dkp_info("reloaded %s", r->o->conf);
}

static void hook_tick(void *ctx, struct dkp_pool *p)
{
	struct run *r = ctx;

	if (sig_reload) {
		struct timespec ts;

		sig_reload = 0;
		/* systemd.service(5) Type=notify: RELOADING=1 with the
		 * monotonic time, then READY=1 once the reload is over */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
		       (unsigned long long)ts.tv_sec * 1000000ull +
			       (unsigned long long)ts.tv_nsec / 1000, r->o->conf);
		reload(r, p);
		notify("READY=1\nSTATUS=signing; reloads %lu, failed reloads %lu",
		       (unsigned long)atomic_load(&n_reloads),
		       (unsigned long)atomic_load(&n_reload_failures));
	}
	if (r->o->progress && r->o->once && dkp_mono_now() - r->last_progress >= 0.25) {
		r->last_progress = dkp_mono_now();
		progress(r, 0);
	}
}

/* The run's figures as one JSON object, for `dkimpress bench`. */
static int write_stats(const char *path, struct dkp_pool *p, const unsigned long *n,
		       unsigned long bytes, double el, double cpu,
		       const struct dkp_config *c)
{
	const struct dkp_stats *st = dkp_pool_stats(p);
	struct dkp_sign_counts sc;
	FILE *f = fopen(path, "we");
	int rc;

	if (f == NULL)
		return -1;
	dkp_sign_counts(&sc);
	/* the same atomics the metrics endpoint reads (cmd/metrics.c) */
	fprintf(f, "{\"deferrals\":%lu,\"bytes_out\":%lu,\"sig_rsa_sha256\":%lu,"
		"\"sig_ed25519_sha256\":%lu,\"reloads\":%lu,\"reload_failures\":%lu,",
		(unsigned long)atomic_load(&st->n[DKP_OUT_DEFERRED]),
		(unsigned long)atomic_load(&st->bytes_out),
		(unsigned long)atomic_load(&st->sigs[DKP_SALG_RSA_SHA256]),
		(unsigned long)atomic_load(&st->sigs[DKP_SALG_ED25519_SHA256]),
		(unsigned long)atomic_load(&n_reloads),
		(unsigned long)atomic_load(&n_reload_failures));
	dkp_alignrep_json(f, st);
	fprintf(f, "\"signed\":%lu,\"esp_only\":%lu,\"deferred\":%lu,\"failed\":%lu,"
		"\"gone\":%lu,\"bytes\":%lu,\"seconds\":%.6f,\"cpu_s\":%.6f,"
		"\"threads\":%u,\"batch\":%u,"
		"\"renamed\":%lu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
		"\"checked\":%llu,\"bad_signatures\":%llu,\"ifma_lanes\":%llu,"
		"\"ifma_groups\":%llu,\"recomputed\":%llu}\n",
		n[DKP_OUT_SIGNED], n[DKP_OUT_ESP_ONLY], n[DKP_OUT_DEFERRED],
		n[DKP_OUT_FAILED], n[DKP_OUT_GONE], bytes, el, cpu, c->threads, c->batch,
		(unsigned long)atomic_load(&st->renamed),
		dkp_stats_latency_ms(st, 0.50), dkp_stats_latency_ms(st, 0.99),
		(unsigned long long)sc.checked, (unsigned long long)sc.bad,
		(unsigned long long)sc.lanes, (unsigned long long)sc.groups,
		(unsigned long long)sc.recomputed);
	rc = ferror(f) ? -1 : 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* pulls (JetStream): "deferred" is not messages left but deferrals made
 * (NAKs, events): the summary says so */
static void summary(struct dkp_pool *p, const unsigned long *n, unsigned long bytes,
		    double el, const char *why_stopped, int pulls)
{
	const struct dkp_stats *st = dkp_pool_stats(p);
	unsigned long pub = n[DKP_OUT_SIGNED] + n[DKP_OUT_ESP_ONLY];

	printf("dkimpress: signed %lu, esp-only %lu, %s %lu, failed %lu "
	       "in %.2f s: %.0f msg/s, %.1f MB/s",
	       n[DKP_OUT_SIGNED], n[DKP_OUT_ESP_ONLY],
	       pulls ? "deferrals (NAK)" : "deferred", n[DKP_OUT_DEFERRED],
	       n[DKP_OUT_FAILED], el, el > 0 ? (double)pub / el : 0.0,
	       el > 0 ? (double)bytes / el / 1e6 : 0.0);
	if (dkp_pool_esp_only_domains(p))
		printf("; %zu domains without a customer key", dkp_pool_esp_only_domains(p));
	dkp_alignrep_summary(stdout, st);
	if (atomic_load(&st->renamed))
		printf("; %lu under a new name (ID collision)",
		       (unsigned long)atomic_load(&st->renamed));
	if (pub)
		printf("; latency p50 %.1f ms, p99 %.1f ms",
		       dkp_stats_latency_ms(st, 0.50), dkp_stats_latency_ms(st, 0.99));
	if (why_stopped)
		printf(" (%s)", why_stopped);
	printf("\n");
	fflush(stdout);
}

/* metrics_listen, step 1, before the pool starts: bind (cmd/metrics.h).
 * 0, or the exit code: 71 (EX_OSERR) when the address cannot be listened
 * on (in use, not local), 78 when it is not HOST:PORT. */
static int bind_metrics(struct run *r, const struct dkp_config *c)
{
	char why[600];
	int rc;

	if ((rc = dkp_metrics_bind(&r->metrics, c->metrics_listen, why, sizeof(why))) < 0) {
		dkp_error("%s", why);
		return rc == -EINVAL ? 78 : 71;
	}
	return 0;
}

/* Step 2, with the pool started but holding its workers (nothing claimed
 * or fetched yet): count per domain, serve. 0, or 71 (the caller stops
 * the pool, then untracks the domains). */
static int start_metrics(struct run *r, const struct dkp_config *c, const char *in_new,
			 struct dkp_js *js)
{
	struct dkp_metrics_src src;
	struct timespec now;
	char why[600];

	/* XXX: pool.h hands out a const view of the counters; the domain
	 * table is attached once, before the first batch is dispatched */
	dkp_stats_track_domains((struct dkp_stats *)dkp_pool_stats(r->pool),
				c->metrics_domains);
	clock_gettime(CLOCK_REALTIME, &now);
	memset(&src, 0, sizeof(src));
	src.pool = r->pool;
	src.in_new = in_new;
	src.js = js;
	src.reloads = &n_reloads;
	src.reload_failures = &n_reload_failures;
	src.start_unix = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	src.start_mono = dkp_mono_now();
	if (dkp_metrics_start(r->metrics, &src, why, sizeof(why)) < 0) {
		dkp_error("%s", why);
		dkp_metrics_free(r->metrics);
		r->metrics = NULL;
		return 71;
	}
	return 0;
}

void dkp_run_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGIO, SIG_IGN);	/* lease breaks (qdir.c probes read leases) */
}

/* Open the configured transport: the queue directory (with its recovery
 * of what crashed engines left) or JetStream. Returns 0 or the exit code. */
static int open_transport(const struct dkp_config *c, int once,
			  struct dkp_qdir **q, struct dkp_js **js,
			  struct dkp_transport **tp)
{
	struct dkp_qdir_opts qo;
	struct dkp_recovery rec;
	char why[4200];
	int rc;

	if (c->transport == DKP_TRANSPORT_JETSTREAM) {
		int tries = 0;

		/* a cluster that cannot answer now (no server, a leader being
		 * elected): watch mode waits for it, as after a disconnect */
		while ((rc = dkp_js_open(js, c, why, sizeof(why))) < 0 &&
		       dkp_js_exit_code(rc) == 75 && !once && !sig_stop) {
			if (tries++ == 0)
				dkp_error("jetstream: %s; retrying every second", why);
			sleep(1);
		}
		if (rc < 0) {
			dkp_error("jetstream: %s", why);
			return sig_stop && dkp_js_exit_code(rc) == 75 ? 0 : dkp_js_exit_code(rc);
		}
		if (tries)
			dkp_info("jetstream: connected after %d tries", tries + 1);
		if ((int64_t)c->limits.max_message_bytes > dkp_js_max_payload(*js))
			dkp_warn("jetstream: max_message_size (%zu) is above the server's max_payload (%lld): messages are limited by the server",
				 c->limits.max_message_bytes,
				 (long long)dkp_js_max_payload(*js));
		*tp = dkp_js_transport(*js);
		return 0;
	}
	memset(&qo, 0, sizeof(qo));
	qo.in = c->in_dir;
	qo.out = c->out_dir;
	qo.failed = c->failed_dir;
	qo.flush_files = c->flush == DKP_FLUSH_FILES;
	qo.out_mode = c->out_mode;
	qo.out_gid = c->out_gid;
	if (c->out_mode & 077) {
		/* out_mode's group and other bits must reach the copies */
		mode_t old = umask(0);

		umask(old & ~(mode_t)c->out_mode);
	}
	if ((rc = dkp_qdir_open(q, &qo, why, sizeof(why))) < 0) {
		dkp_error("cannot open the queue (%s): %s", why, strerror(-rc));
		/* permissions 77, a full disk 75 (retry later), a path that is
		 * not there or not a directory 78, any other I/O error 74 */
		return rc == -EACCES || rc == -EPERM ? 77
		     : rc == -ENOSPC || rc == -EDQUOT || rc == -EINTR || rc == -EAGAIN ? 75
		     : rc == -ENOENT || rc == -ENOTDIR || rc == -ELOOP ||
		       rc == -ENAMETOOLONG ? 78 : 74;
	}
	*tp = dkp_qdir_transport(*q);
	/* what crashed engines left, before taking anything new */
	if ((rc = (*tp)->ops->recover(*tp, &rec)) < 0)
		dkp_error("recovery of %s failed: %s", c->in_dir, strerror(-rc));
	if (rec.engines || rec.requeued)
		dkp_info("recovery: %zu crashed engine(s); %zu retired copies published, %zu put back to sign again, %zu copies dropped",
			 rec.engines, rec.published, rec.requeued, rec.discarded);
	return 0;
}

/* The pool's settings from the configuration and the command line. */
static void pool_config(struct dkp_pool_cfg *pc, const struct dkp_config *c,
			const struct dkp_run_opts *o, struct dkp_qdir *q, int js)
{
	memset(pc, 0, sizeof(*pc));
	pc->threads = c->threads;
	pc->batch = c->batch;
	pc->uring_depth = c->uring_depth;
	pc->want_uring = c->io != DKP_IO_SYSCALLS && !js;
	pc->require_uring = c->io == DKP_IO_URING && !js;
	pc->inflight_bytes = c->inflight_bytes;
	pc->once = o->once;
	pc->nosign = o->nosign;
	pc->group_commit = c->group_commit;
	pc->watch_path = q ? dkp_qdir_new_path(q) : NULL;
	pc->hold = 1;	/* JetStream: no fetch before the endpoint serves */
}

static void log_start(const struct run *r, const struct dkp_config *c,
		      struct dkp_qdir *q, struct dkp_js *js)
{
	char shown[1024];

	if (js)
		dkp_info("run: jetstream %s, consumer %s on %s (%d replicas), %u threads, batch %u",
			 dkp_js_redact(c->js.servers, shown, sizeof(shown)),
			 c->js.consumer, c->js.in_stream,
			 dkp_js_replicas(js), c->threads, c->batch);
	else
		dkp_info("run: engine %s, %u threads, batch %u, %s, flush %s, %s, queue %s",
			 dkp_qdir_engine(q), c->threads, c->batch,
			 dkp_pool_uring(r->pool) ? "io_uring" : "syscalls",
			 c->flush == DKP_FLUSH_FILES ? "files" : "filesystem",
			 c->group_commit ? "commit thread" : "each worker commits", c->in_dir);
	if (r->o->nosign)
		dkp_warn("--no-sign: messages are copied to %s UNSIGNED (benchmark only)",
			 js ? c->js.out_stream : c->out_dir);
}

/* After the dispatcher: the summary, the --stats file, the exit code. */
static int finish(struct run *r, struct dkp_qdir *q, struct dkp_js *js, int fatal)
{
	const struct dkp_run_opts *o = r->o;
	unsigned long n[DKP_OUT_N], bytes;
	long left = 0;
	double el = dkp_mono_now() - r->t0;
	int k;

	for (k = 0; k < DKP_OUT_N; k++)
		n[k] = atomic_load(&dkp_pool_stats(r->pool)->n[k]);
	/* queue directory: a message deferred and later signed counts once,
	 * as signed; JetStream: the deferrals (NAKs) made, events (the
	 * stream holds what is left: `left` below) */
	n[DKP_OUT_DEFERRED] = dkp_pool_deferred(r->pool);
	bytes = atomic_load(&dkp_pool_stats(r->pool)->bytes);
	if (o->once)
		left = q ? dkp_qdir_count_new(q) : dkp_js_waiting(js);
	summary(r->pool, n, bytes, el,
		fatal ? "stopped: the queue cannot be worked" :
		sig_stop ? (left > 0 ? "stopped by signal before the queue was drained"
				     : "stopped by signal") : NULL, js != NULL);
	if (o->stats_path &&
	    write_stats(o->stats_path, r->pool, n, bytes, el, dkp_cpu_now() - r->cpu0,
			dkp_pool_snap(r->pool)->cfg) < 0)
		dkp_error("cannot write %s: %s", o->stats_path, strerror(errno));
	if (fatal)
		return fatal;
	if (o->once)
		return n[DKP_OUT_FAILED] ? 65 : (q && n[DKP_OUT_DEFERRED]) || left != 0 ? 75 : 0;
	return 0;
}

static void close_transport(struct dkp_qdir *q, struct dkp_js *js)
{
	if (q)
		dkp_qdir_close(q, 1);
	dkp_js_close(js);
}

/* The pool stopped and freed, its per-domain counters let go first. */
static void pool_end(struct run *r)
{
	struct dkp_stats *st = (struct dkp_stats *)dkp_pool_stats(r->pool);

	dkp_stats_untrack_domains(st);
	dkp_stats_untrack_align(st);
	dkp_pool_free(r->pool);
	r->pool = NULL;
}

/* The configuration; 0, or the exit code (66: no file; 78: anything else
 * it names or holds). */
static int load_conf(const struct dkp_run_opts *o, struct dkp_snap **snap)
{
	struct dkp_err err;

	dkp_err_clear(&err);
	if (dkp_snap_load(snap, o->conf, o->sets, o->nsets, &err) == DKP_OK)
		return 0;
	dkp_error("%s", err.msg);
	return err.code == DKP_E_IO && !strcmp(err.step, "conffile") &&
		       err.sys_errno == ENOENT ? 66 : 78;
}

int dkp_run(const struct dkp_run_opts *o)
{
	struct run r = { o, 0, 0, 0, NULL, NULL };
	struct dkp_pool_hooks hooks = { hook_stop, hook_tick, &r };
	struct dkp_pool_cfg pc;
	struct dkp_snap *snap = NULL;
	struct dkp_qdir *q = NULL;
	struct dkp_js *js = NULL;
	struct dkp_transport *tp = NULL;
	const struct dkp_config *c;
	char why[4200];
	int rc, exitcode, fatal;

	/* handlers before anything is loaded: a SIGHUP from a supervisor in
	 * the first milliseconds must not kill the engine; one that came
	 * during start-up is served by the first reload check (harmless) */
	dkp_run_signals();

	if ((rc = load_conf(o, &snap)) != 0)
		return rc;
	c = snap->cfg;
	if (c->log_syslog)	/* log = syslog: from here on, not stderr */
		dkp_log_syslog(1);
	if ((rc = open_transport(c, o->once, &q, &js, &tp)) != 0) {
		dkp_snap_unref(snap);
		return rc;
	}
	/* the endpoint's port before any worker: one that cannot be bound
	 * stops the start-up with nothing touched but recovery */
	if (c->metrics_listen && (rc = bind_metrics(&r, c)) != 0) {
		close_transport(q, js);
		dkp_snap_unref(snap);
		return rc;
	}
	pool_config(&pc, c, o, q, js != NULL);
	if ((rc = dkp_pool_start(&r.pool, tp, snap, &pc, why, sizeof(why))) < 0) {
		dkp_error("%s: %s", why, strerror(-rc));
		dkp_metrics_free(r.metrics);
		close_transport(q, js);
		dkp_snap_unref(snap);
		return pc.require_uring ? 78 : 71;
	}
	dkp_snap_unref(snap);	/* the pool holds it now */
	/* DMARC alignment per From domain, before the first batch (the
	 * pool holds its workers) */
	dkp_stats_track_align((struct dkp_stats *)dkp_pool_stats(r.pool),
			      c->metrics_domains);
	/* the endpoint before the first claim or fetch (the pool holds its
	 * workers; the dispatcher has not run) */
	if (r.metrics &&
	    (rc = start_metrics(&r, c, q ? dkp_qdir_new_path(q) : NULL, js)) != 0) {
		dkp_pool_stop(r.pool);
		pool_end(&r);
		close_transport(q, js);
		return rc;
	}
	log_start(&r, c, q, js);
	dkp_pool_release(r.pool);
	r.t0 = dkp_mono_now();
	r.cpu0 = dkp_cpu_now();
	/* recovery done, workers running (and the endpoint serving) */
	notify("READY=1\nSTATUS=signing %s", q ? c->in_dir : c->js.in_stream);
	fatal = dkp_pool_dispatch(r.pool, &hooks);
	notify("STOPPING=1\nSTATUS=stopping: finishing the batches in hand");
	if (o->progress && o->once)
		progress(&r, 1);
	dkp_pool_stop(r.pool);
	exitcode = finish(&r, q, js, fatal);
	dkp_metrics_free(r.metrics);	/* before the counters it reads go */
	pool_end(&r);
	close_transport(q, js);
	return exitcode;
}
