/* metrics.c — the Prometheus endpoint through libmicrohttpd; see
 * metrics.h. No HTTP is parsed here: libmicrohttpd's internal thread
 * accepts, parses and answers; this file renders the text. */
#include "cmd/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/keycache.h"
#include "dkim/sign.h"
#include "engine/stats.h"
#include "transport/jetstream.h"

/* JetStream: the consumer's pending count is a server round trip; a
 * scrape every second asks the server at most this often */
#define PENDING_MAX_AGE_S 5.0

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct dkp_metrics {
	int fd;				/* the listening socket */
	struct MHD_Daemon *d;
	struct dkp_metrics_src src;
	char addr[300];			/* as configured, for log lines */
};

/* Split "HOST:PORT" / "[V6]:PORT" into host and port; -1 if malformed. */
static int split_listen(const char *s, char *host, size_t hcap, char *port,
			size_t pcap)
{
	const char *colon, *h = s, *he;

	if (*s == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)))
			return -1;	/* a bare IPv6 address wants [] */
		he = colon;
	}
	if (he == h || (size_t)(he - h) >= hcap || strlen(colon + 1) >= pcap ||
	    colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -1;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	snprintf(port, pcap, "%s", colon + 1);
	return 0;
}

int dkp_metrics_bind(struct dkp_metrics **out, const char *listen_on, char *why,
		     size_t whylen)
{
	char host[256], port[16];
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, e = 0, one = 1, rc;
	struct dkp_metrics *m;

	*out = NULL;
	if (split_listen(listen_on, host, sizeof(host), port, sizeof(port)) < 0 ||
	    atoi(port) < 1 || atoi(port) > 65535) {
		snprintf(why, whylen, "metrics_listen = %s: want HOST:PORT, e.g. 127.0.0.1:9469",
			 listen_on);
		return -EINVAL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(why, whylen, "metrics_listen = %s: %s", listen_on, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, whylen, "metrics_listen = %s: cannot listen there: %s%s",
			 listen_on, strerror(e),
			 e == EADDRINUSE ? " (another program, or another dkimpress, has the port)" : "");
		return -(e ? e : EADDRNOTAVAIL);
	}
	m = dkp_calloc(1, sizeof(*m));
	m->fd = fd;
	snprintf(m->addr, sizeof(m->addr), "%s", listen_on);
	*out = m;
	return 0;
}

/* ---- rendering ------------------------------------------------------- */

static void head(struct dkp_buf *b, const char *name, const char *type,
		 const char *help)
{
	dkp_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void add_label(struct dkp_buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			dkp_buf_addc(b, '\\');
		if (*v == '\n') {
			dkp_buf_adds(b, "\\n");
			continue;
		}
		dkp_buf_addc(b, *v);
	}
}

static unsigned long ld(const atomic_ulong *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

/* Queue IDs waiting in in/new (dot names left out); -1 if unreadable. */
static long count_new(const char *dir)
{
	struct dirent *de;
	long n = 0;
	DIR *d;

	if (dir == NULL || (d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void render_domains(const struct dkp_stats *st, struct dkp_buf *b)
{
	size_t cap = DKP_DOM_MAX + 1, n, i;
	struct dkp_stats_dom *d;

	if (atomic_load(&((struct dkp_stats *)st)->dom) == NULL)
		return;
	d = dkp_malloc(cap * sizeof(*d));
	n = dkp_stats_domains(st, d, cap);
	head(b, "dkimpress_domain_messages_total", "counter",
	     "Messages published, by the d= of their topmost signature; the busiest domains (metrics_domains of them) have their own series, counted from when they got it, the rest count under domain=\"_other\".");
	for (i = 0; i < n; i++) {
		dkp_buf_adds(b, "dkimpress_domain_messages_total{domain=\"");
		add_label(b, d[i].domain);
		dkp_buf_printf(b, "\"} %llu\n", (unsigned long long)d[i].msgs);
	}
	head(b, "dkimpress_domain_input_bytes_total", "counter",
	     "Input bytes of the messages published, by domain as dkimpress_domain_messages_total.");
	for (i = 0; i < n; i++) {
		dkp_buf_adds(b, "dkimpress_domain_input_bytes_total{domain=\"");
		add_label(b, d[i].domain);
		dkp_buf_printf(b, "\"} %llu\n", (unsigned long long)d[i].bytes);
	}
	dkp_free(d);
}

/* DMARC alignment (conf/align.h): totals, then per From domain. */
static void render_align(const struct dkp_stats *st, struct dkp_buf *b)
{
	static const char *const res[2] = { "aligned", "unaligned" };
	size_t cap = DKP_DOM_MAX + 1, n, i;
	struct dkp_stats_adom *d;
	int k;

	head(b, "dkimpress_dmarc_messages_total", "counter",
	     "Messages checked for DMARC alignment (with key_table), each time signed, deferred or failed: aligned when a signature they carry (or would carry) aligns with the From domain (dmarc_alignment), else unaligned.");
	dkp_buf_printf(b, "dkimpress_dmarc_messages_total{alignment=\"aligned\"} %lu\n",
		       ld(&st->align[0]));
	dkp_buf_printf(b, "dkimpress_dmarc_messages_total{alignment=\"unaligned\"} %lu\n",
		       ld(&st->align[1]));
	if (atomic_load(&((struct dkp_stats *)st)->adom) == NULL)
		return;
	d = dkp_malloc(cap * sizeof(*d));
	n = dkp_stats_align_domains(st, d, cap);
	head(b, "dkimpress_domain_dmarc_messages_total", "counter",
	     "dkimpress_dmarc_messages_total by From domain; the busiest domains (metrics_domains of them) have their own series, counted from when they got it, the rest count under domain=\"_other\".");
	for (i = 0; i < n; i++)
		for (k = 0; k < 2; k++) {
			dkp_buf_adds(b, "dkimpress_domain_dmarc_messages_total{domain=\"");
			add_label(b, d[i].domain);
			dkp_buf_printf(b, "\",alignment=\"%s\"} %llu\n", res[k],
				       (unsigned long long)(k ? d[i].unaligned : d[i].aligned));
		}
	dkp_free(d);
}

/* One series without labels: its HELP/TYPE lines and its value. */
static void scalar(struct dkp_buf *b, const char *name, const char *type,
		   const char *help, unsigned long long v)
{
	head(b, name, type, help);
	dkp_buf_printf(b, "%s %llu\n", name, v);
}

static void render_process(const struct dkp_metrics_src *src, struct dkp_buf *b)
{
	head(b, "dkimpress_build_info", "gauge",
	     "The version of dkimpress and of the OpenSSL it runs with; always 1.");
	dkp_buf_adds(b, "dkimpress_build_info{version=\"");
	add_label(b, DKIMPRESS_VERSION);
	dkp_buf_adds(b, "\",openssl=\"");
	add_label(b, OpenSSL_version(OPENSSL_VERSION));
	dkp_buf_adds(b, "\"} 1\n");
	head(b, "dkimpress_start_time_seconds", "gauge",
	     "When this engine started, in seconds since the Unix epoch.");
	dkp_buf_printf(b, "dkimpress_start_time_seconds %.3f\n", src->start_unix);
	head(b, "dkimpress_uptime_seconds", "gauge", "Seconds since this engine started.");
	dkp_buf_printf(b, "dkimpress_uptime_seconds %.3f\n", dkp_mono_now() - src->start_mono);
	scalar(b, "dkimpress_reloads_total", "counter",
	       "Reloads (SIGHUP) that put a new configuration in place.",
	       src->reloads ? ld(src->reloads) : 0);
	scalar(b, "dkimpress_reload_failures_total", "counter",
	       "Reloads (SIGHUP) that failed; the running configuration stayed.",
	       src->reload_failures ? ld(src->reload_failures) : 0);
}

static void render_messages(const struct dkp_metrics_src *src,
			    const struct dkp_stats *st, struct dkp_buf *b)
{
	static const char *const outcome[DKP_OUT_N] = {
		"signed", "esp_only", "deferred", "failed", "gone",
	};
	int k;

	head(b, "dkimpress_messages_total", "counter",
	     "Messages per outcome: signed (customer and ESP signatures) and esp_only published, failed moved to failed/ (or the failed subject), deferred every time one was handed back for a later retry, gone claimed by another engine first (JetStream: handed straight back, the in-flight byte budget being full).");
	for (k = 0; k < DKP_OUT_N; k++)
		dkp_buf_printf(b, "dkimpress_messages_total{outcome=\"%s\"} %lu\n",
			       outcome[k], ld(&st->n[k]));
	/* JetStream keeps no deferral table (the stream holds the NAK'd
	 * messages, and another engine may sign them): no such gauge */
	if (src->js == NULL)
		scalar(b, "dkimpress_deferred_messages", "gauge",
		       "Messages waiting out a deferral now (the summary's deferred count).",
		       dkp_pool_deferred(src->pool));
	scalar(b, "dkimpress_renamed_messages_total", "counter",
	       "Messages published or failed under a new name (queue ID collision).",
	       ld(&st->renamed));
	head(b, "dkimpress_signatures_total", "counter",
	     "DKIM signatures in published messages, by algorithm.");
	for (k = 0; k < DKP_SALG_N; k++)
		dkp_buf_printf(b, "dkimpress_signatures_total{alg=\"%s\"} %lu\n",
			       dkp_stats_alg_names[k], ld(&st->sigs[k]));
	scalar(b, "dkimpress_input_bytes_total", "counter",
	       "Bytes of the published messages as they came in.", ld(&st->bytes));
	scalar(b, "dkimpress_output_bytes_total", "counter",
	       "Bytes published (envelope lines, signatures and message).", ld(&st->bytes_out));
}

static void render_latency(const struct dkp_stats *st, struct dkp_buf *b)
{
	unsigned long cum = 0;
	int k;

	head(b, "dkimpress_publish_latency_seconds", "histogram",
	     "Time from claiming a message to its durable publication, for published messages.");
	for (k = 0; k < DKP_HIST_BUCKETS; k++) {
		cum += ld(&st->hist[k]);
		if (k < DKP_HIST_BUCKETS - 1)
			dkp_buf_printf(b, "dkimpress_publish_latency_seconds_bucket{le=\"%g\"} %lu\n",
				       dkp_stats_le[k], cum);
		else
			dkp_buf_printf(b, "dkimpress_publish_latency_seconds_bucket{le=\"+Inf\"} %lu\n",
				       cum);
	}
	dkp_buf_printf(b, "dkimpress_publish_latency_seconds_sum %.6f\n",
		       (double)ld(&st->lat_sum_us) / 1e6);
	dkp_buf_printf(b, "dkimpress_publish_latency_seconds_count %lu\n", cum);
}

static void render_keys(struct dkp_buf *b)
{
	struct dkp_keycache_counts kc;
	struct dkp_sign_counts sc;

	dkp_keycache_counts(&kc);
	scalar(b, "dkimpress_keycache_hits_total", "counter",
	       "Customer key lookups answered by a loaded key.", kc.hits);
	scalar(b, "dkimpress_keycache_misses_total", "counter",
	       "Customer key lookups that found the key not loaded (a load followed, or a failed load was remembered).",
	       kc.misses);
	scalar(b, "dkimpress_keycache_loads_total", "counter",
	       "Customer key files parsed (at start, on a reload, or on first use).", kc.loads);
	scalar(b, "dkimpress_keycache_load_failures_total", "counter",
	       "Customer key files that could not be loaded.", kc.load_failures);
	dkp_sign_counts(&sc);
	scalar(b, "dkimpress_signatures_checked_total", "counter",
	       "Signatures checked with their public key before release (self_verify; every 8-lane one).",
	       sc.checked);
	scalar(b, "dkimpress_signatures_bad_total", "counter",
	       "Signatures that failed their check: never released, their messages in failed/.",
	       sc.bad);
	scalar(b, "dkimpress_rsa8_lanes_total", "counter",
	       "RSA-2048 signatures made by the 8-lane AVX-512 IFMA path.", sc.lanes);
	scalar(b, "dkimpress_rsa8_recomputed_total", "counter",
	       "8-lane signatures that failed their check and were made again by OpenSSL.",
	       sc.recomputed);
}

void dkp_metrics_render(const struct dkp_metrics_src *src, struct dkp_buf *b)
{
	const struct dkp_stats *st = dkp_pool_stats(src->pool);
	long waiting;

	render_process(src, b);
	render_messages(src, st, b);
	render_latency(st, b);
	waiting = src->js ? dkp_js_num_pending(src->js, PENDING_MAX_AGE_S)
			  : count_new(src->in_new);
	if (waiting >= 0) {
		head(b, "dkimpress_queue_waiting_messages", "gauge",
		     "Messages waiting, not yet claimed by any engine: in in/new, or (transport = jetstream) in the consumer, its NumPending as of up to 5 s ago.");
		dkp_buf_printf(b, "dkimpress_queue_waiting_messages %ld\n", waiting);
	}
	render_keys(b);
	render_domains(st, b);
	render_align(st, b);
}

/* ---- serving (libmicrohttpd) ----------------------------------------- */

static void free_body(void *p)
{
	dkp_free(p);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *type, char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	r = MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
	if (r == NULL) {
		dkp_free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_size, void **req_cls)
{
	struct dkp_metrics *m = cls;
	struct dkp_buf b;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)req_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
			     dkp_strdup("GET or HEAD only\n"), 17);
	dkp_buf_init(&b);
	if (strcmp(url, "/metrics") == 0) {
		dkp_metrics_render(&m->src, &b);
		return reply(conn, MHD_HTTP_OK, CONTENT_TYPE, b.p, b.len);
	}
	if (strcmp(url, "/") == 0) {
		dkp_buf_adds(&b, "dkimpress: the metrics are at /metrics\n");
		return reply(conn, MHD_HTTP_OK, "text/plain", b.p, b.len);
	}
	dkp_buf_adds(&b, "not found; the metrics are at /metrics\n");
	return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", b.p, b.len);
}

__attribute__((format(printf, 2, 0)))
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	dkp_warn("metrics: %s", line);
}

int dkp_metrics_start(struct dkp_metrics *m, const struct dkp_metrics_src *src,
		      char *why, size_t whylen)
{
	sigset_t all, old;

	m->src = *src;
	/* the HTTP thread never takes the engine's signals */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	m->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0,
				NULL, NULL, on_request, m,
				MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)NULL,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)m->fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)32,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
				MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (m->d == NULL) {
		snprintf(why, whylen, "metrics_listen = %s: libmicrohttpd cannot serve there",
			 m->addr);
		return -1;
	}
	dkp_info("metrics: serving http://%s/metrics", m->addr);
	return 0;
}

void dkp_metrics_free(struct dkp_metrics *m)
{
	if (m == NULL)
		return;
	if (m->d) {
		/* MHD_stop_daemon closes the listening socket it was given */
		MHD_stop_daemon(m->d);
	} else if (m->fd >= 0) {
		close(m->fd);
	}
	dkp_free(m);
}
