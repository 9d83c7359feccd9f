/*
 * config.c — parse and validate the `dkimpress run` configuration file.
 *
 * Format: one "key = value" per line; '#' starts a comment; blank lines
 * are ignored; values run to the end of the line (surrounding space
 * trimmed). Unknown keys, repeated keys and bad values are errors that
 * name the file and line, so a typo never silently falls back to a
 * default.
 */
#include "conf/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/err.h"
#include "base/file.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

enum ckey {
	K_QUEUE_DIR, K_IN_DIR, K_OUT_DIR, K_FAILED_DIR, K_ESP_KEY,
	K_KEY_TABLE, K_SIGNING_TABLE, K_MISSING_KEY, K_CANON, K_HEADERS,
	K_EXPIRE, K_THREADS, K_BATCH, K_URING_DEPTH, K_IO, K_INFLIGHT,
	K_MAX_MESSAGE, K_MAX_HEADER_BYTES, K_MAX_HEADER_FIELDS, K_KEY_CACHE,
	K_INSECURE, K_FLUSH, K_GROUP_COMMIT, K_SELF_VERIFY, K_RSA_BACKEND,
	K_METRICS_LISTEN, K_METRICS_DOMAINS, K_LOG, K_COUNT
};

static const char *const key_names[K_COUNT] = {
	"queue_dir", "in_dir", "out_dir", "failed_dir", "esp_key",
	"key_table", "signing_table", "missing_key", "canonicalization",
	"headers", "expire", "threads", "batch", "uring_depth", "io",
	"inflight_bytes", "max_message_size", "max_header_bytes",
	"max_header_fields", "key_cache", "insecure_key_perms", "flush",
	"group_commit", "self_verify", "rsa_backend",
	"metrics_listen", "metrics_domains", "log",
};

static void js_free(struct dkp_js_config *j);

void dkp_config_free(struct dkp_config *c)
{
	if (c == NULL)
		return;
	js_free(&c->js);
	dkp_relay_conf_free(&c->relay);
	dkp_free(c->path);
	dkp_free(c->in_dir);
	dkp_free(c->out_dir);
	dkp_free(c->failed_dir);
	dkp_free(c->esp_domain);
	dkp_free(c->esp_selector);
	dkp_free(c->esp_keyfile);
	dkp_free(c->key_table);
	dkp_free(c->signing_table);
	dkp_free(c->headers_buf);
	dkp_free(c->metrics_listen);
	dkp_free(c);
}

int dkp_config_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	default: return -1;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max,
		      unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = dkp_malloc(n);

	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* Apply one setting. Returns NULL or a reason (static string). */
static const char *apply(struct dkp_config *c, enum ckey k, const char *v,
			 char **queue_dir)
{
	unsigned long u;
	uint64_t sz;
	int b;

	switch (k) {
	case K_QUEUE_DIR: *queue_dir = dkp_strdup(v); break;
	case K_IN_DIR: c->in_dir = dkp_strdup(v); break;
	case K_OUT_DIR: c->out_dir = dkp_strdup(v); break;
	case K_FAILED_DIR: c->failed_dir = dkp_strdup(v); break;
	case K_ESP_KEY: {
		const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (c2 == NULL || c2[1] == '\0')
			return "want DOMAIN:SELECTOR:KEYFILE";
		/* rendered as d= and s=: RFC 6376 grammar (sigfmt.h) */
		if (!dkp_sigfmt_domain_ok(v, (size_t)(c1 - v)) ||
		    !dkp_sigfmt_selector_ok(c1 + 1, (size_t)(c2 - c1 - 1)))
			return "invalid domain or selector (RFC 6376: a domain of two or more labels and a selector, of letters, digits and inner '-')";
		c->esp_domain = dkp_strndup(v, (size_t)(c1 - v));
		for (char *p = c->esp_domain; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		c->esp_selector = dkp_strndup(c1 + 1, (size_t)(c2 - c1 - 1));
		c->esp_keyfile = dkp_strdup(c2 + 1);
		break;
	}
	case K_KEY_TABLE: c->key_table = dkp_strdup(v); break;
	case K_SIGNING_TABLE: c->signing_table = dkp_strdup(v); break;
	case K_MISSING_KEY:
		if (!strcasecmp(v, "esp-only"))
			c->missing_key = DKP_MISSING_ESP_ONLY;
		else if (!strcasecmp(v, "defer"))
			c->missing_key = DKP_MISSING_DEFER;
		else if (!strcasecmp(v, "fail"))
			c->missing_key = DKP_MISSING_FAIL;
		else
			return "want esp-only, defer or fail";
		break;
	case K_CANON:
		if (dkp_canon_parse(v, &c->hcanon, &c->bcanon) != DKP_OK)
			return "want simple or relaxed, as H/B";
		break;
	case K_HEADERS: {
		char *p, *tok, *save = NULL;
		int from = 0;

		if (!strcasecmp(v, "default"))
			break;
		c->headers_buf = dkp_strdup(v);
		for (p = c->headers_buf; (tok = strtok_r(p, ": \t", &save)); p = NULL) {
			if (c->nheaders == DKP_MAX_CONF_HEADERS)
				return "too many header names";
			if (!strcasecmp(tok, "DKIM-Signature"))
				return "DKIM-Signature cannot be signed";
			if (!dkp_sigfmt_hname_ok(tok, strlen(tok)))
				return "invalid header name (h= takes printable US-ASCII except ':' and ';', RFC 6376 3.5)";
			from |= !strcasecmp(tok, "From");
			c->headers[c->nheaders++] = tok;
		}
		if (!from)
			return "the list must include From";
		break;
	}
	case K_EXPIRE:
		if (parse_uint(v, 0, 10UL * 366 * 86400, &u))
			return "want seconds (0: no x= tag)";
		c->expire = (int64_t)u;
		break;
	case K_THREADS:
		if (parse_uint(v, 0, DKP_MAX_THREADS, &u))
			return "want 0 (two per core) to 256";
		c->threads = (unsigned)u;
		break;
	case K_BATCH:
		if (parse_uint(v, 1, 4096, &u))
			return "want 1 to 4096";
		c->batch = (unsigned)u;
		break;
	case K_URING_DEPTH:
		if (parse_uint(v, 8, 4096, &u))
			return "want 8 to 4096";
		c->uring_depth = (unsigned)u;
		break;
	case K_IO:
		if (!strcasecmp(v, "auto"))
			c->io = DKP_IO_AUTO;
		else if (!strcasecmp(v, "uring") || !strcasecmp(v, "io_uring"))
			c->io = DKP_IO_URING;
		else if (!strcasecmp(v, "syscalls"))
			c->io = DKP_IO_SYSCALLS;
		else
			return "want auto, uring or syscalls";
		break;
	case K_INFLIGHT:
		if (dkp_config_size(v, &sz) || sz < (1u << 20))
			return "want a size of at least 1M (e.g. 256M)";
		c->inflight_bytes = sz;
		break;
	case K_MAX_MESSAGE:
		if (dkp_config_size(v, &sz) || sz < 1024 || sz > (1ull << 31))
			return "want a size from 1K to 2G";
		c->limits.max_message_bytes = (size_t)sz;
		break;
	case K_MAX_HEADER_BYTES:
		if (dkp_config_size(v, &sz) || sz < 1024 || sz > (64u << 20))
			return "want a size from 1K to 64M";
		c->limits.max_header_bytes = (size_t)sz;
		break;
	case K_MAX_HEADER_FIELDS:
		if (parse_uint(v, 1, 100000, &u))
			return "want 1 to 100000";
		c->limits.max_fields = u;
		break;
	case K_KEY_CACHE:
		if (parse_uint(v, 1, 10000000, &u))
			return "want 1 to 10000000";
		c->key_cache = u;
		break;
	case K_INSECURE:
		if (parse_bool(v, &b))
			return "want yes or no";
		c->insecure_key_perms = b;
		break;
	case K_FLUSH:
		if (!strcasecmp(v, "filesystem"))
			c->flush = DKP_FLUSH_FILESYSTEM;
		else if (!strcasecmp(v, "files"))
			c->flush = DKP_FLUSH_FILES;
		else
			return "want filesystem or files";
		break;
	case K_GROUP_COMMIT:
		if (parse_bool(v, &b))
			return "want yes or no";
		c->group_commit = b;
		break;
	case K_SELF_VERIFY:
		c->self_verify_rsa_only = 0;
		if (!strcasecmp(v, "all"))
			c->self_verify = 1;
		else if (!strcasecmp(v, "rsa"))
			c->self_verify = 1, c->self_verify_rsa_only = 1;
		else if (!strcasecmp(v, "off"))
			c->self_verify = 0;
		else if (!strncasecmp(v, "sample:", 7) &&
			 parse_uint(v + 7, 1, 1000000, &u) == 0)
			c->self_verify = (unsigned)u;
		else
			return "want all, rsa, off or sample:N (N from 1 to 1000000)";
		break;
	case K_RSA_BACKEND:
		if (!strcasecmp(v, "auto"))
			c->rsa_backend = DKP_RSA_AUTO;
		else if (!strcasecmp(v, "openssl"))
			c->rsa_backend = DKP_RSA_OPENSSL;
		else if (!strcasecmp(v, "ifma"))
			c->rsa_backend = DKP_RSA_IFMA;
		else
			return "want auto, openssl or ifma";
		break;
	case K_METRICS_LISTEN:
		/* the address is resolved and bound by `run` (cmd/metrics.c) */
		dkp_free(c->metrics_listen);
		c->metrics_listen = NULL;
		if (strcasecmp(v, "off") && strcasecmp(v, "no") && strcasecmp(v, "none")) {
			const char *colon = strrchr(v, ':');

			if (colon == NULL || colon == v || colon[1] == '\0' ||
			    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
			    parse_uint(colon + 1, 1, 65535, &u))
				return "want HOST:PORT (e.g. 127.0.0.1:9469, [::1]:9469) or off";
			c->metrics_listen = dkp_strdup(v);
		}
		break;
	case K_METRICS_DOMAINS:
		if (parse_uint(v, 1, DKP_MAX_METRICS_DOMAINS, &u))
			return "want 1 to 100000";
		c->metrics_domains = u;
		break;
	case K_LOG:
		if (!strcasecmp(v, "stderr"))
			c->log_syslog = 0;
		else if (!strcasecmp(v, "syslog"))
			c->log_syslog = 1;
		else
			return "want stderr or syslog";
		break;
	case K_COUNT:
		break;
	}
	return NULL;
}

/* The transport settings (transport = jetstream, docs/scale-out.md): a
 * table of their own after key_names; seen[] indexes both tables. */
enum jkey {
	J_TRANSPORT, J_SERVERS, J_IN_STREAM, J_IN_SUBJECT, J_OUT_STREAM,
	J_OUT_SUBJECT, J_FAILED_STREAM, J_FAILED_SUBJECT, J_CONSUMER, J_CREDS,
	J_USER, J_PASSWORD, J_TOKEN, J_TLS_CA, J_TLS_CERT, J_TLS_KEY,
	J_REPLICAS, J_CREATE, J_DUP_WINDOW, J_NAK_DELAY, J_ACK_WAIT,
	J_MAX_ACK_PENDING, J_COUNT
};

static const char *const jkey_names[J_COUNT] = {
	"transport", "nats_servers", "in_stream", "in_subject", "out_stream",
	"out_subject", "failed_stream", "failed_subject", "nats_consumer",
	"nats_creds", "nats_user", "nats_password", "nats_token", "nats_tls_ca",
	"nats_tls_cert", "nats_tls_key", "stream_replicas", "create_streams",
	"dup_window", "nak_delay", "ack_wait", "max_ack_pending",
};

/* NATS stream and consumer names: no space, '.', '*', '>', '/', '\'. */
static int js_name_ok(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v <= ' ' || strchr(".*>/\\", *v) || *v == 127)
			return 0;
	return 1;
}

/* A subject to publish on: tokens separated by '.', no wildcard. */
static int js_subject_ok(const char *v)
{
	const char *p;

	if (*v == '.' || v[strlen(v) - 1] == '.' || strstr(v, ".."))
		return 0;
	for (p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '*' || *p == '>' || *p == 127)
			return 0;
	return 1;
}

static void js_set(char **slot, const char *v)
{
	dkp_free(*slot);
	*slot = dkp_strdup(v);
}

/* Apply one transport setting (a --set replaces: the old value is freed
 * here). Returns NULL or a reason. */
static const char *apply_js(struct dkp_config *c, enum jkey k, const char *v)
{
	struct dkp_js_config *j = &c->js;
	char **names[] = {
		[J_IN_STREAM] = &j->in_stream, [J_OUT_STREAM] = &j->out_stream,
		[J_FAILED_STREAM] = &j->failed_stream, [J_CONSUMER] = &j->consumer,
	};
	char **subjects[] = {
		[J_IN_SUBJECT] = &j->in_subject, [J_OUT_SUBJECT] = &j->out_subject,
		[J_FAILED_SUBJECT] = &j->failed_subject,
	};
	unsigned long u;
	int b;

	switch (k) {
	case J_TRANSPORT:
		if (!strcasecmp(v, "queue"))
			c->transport = DKP_TRANSPORT_QUEUE;
		else if (!strcasecmp(v, "jetstream"))
			c->transport = DKP_TRANSPORT_JETSTREAM;
		else
			return "want queue or jetstream";
		break;
	case J_SERVERS:
		if (strspn(v, ", \t") == strlen(v))
			return "want nats://HOST:PORT[,nats://HOST:PORT...]";
		js_set(&j->servers, v);
		break;
	case J_IN_STREAM: case J_OUT_STREAM: case J_FAILED_STREAM: case J_CONSUMER:
		if (!js_name_ok(v))
			return "a NATS name has no space, '.', '*', '>', '/' or '\\'";
		js_set(names[k], v);
		break;
	case J_IN_SUBJECT: case J_OUT_SUBJECT: case J_FAILED_SUBJECT:
		if (!js_subject_ok(v))
			return "want a subject like dkim.in (tokens, no wildcard)";
		js_set(subjects[k], v);
		break;
	case J_CREDS: js_set(&j->creds, v); break;
	case J_USER: js_set(&j->user, v); break;
	case J_PASSWORD: js_set(&j->password, v); break;
	case J_TOKEN: js_set(&j->token, v); break;
	case J_TLS_CA: js_set(&j->tls_ca, v); break;
	case J_TLS_CERT: js_set(&j->tls_cert, v); break;
	case J_TLS_KEY: js_set(&j->tls_key, v); break;
	case J_REPLICAS:
		if (!strcasecmp(v, "auto"))
			j->replicas = 0;
		else if (parse_uint(v, 1, 5, &u))
			return "want auto or 1 to 5";
		else
			j->replicas = (unsigned)u;
		break;
	case J_CREATE:
		if (parse_bool(v, &b))
			return "want yes or no";
		j->create_streams = b;
		break;
	case J_DUP_WINDOW:
		if (parse_uint(v, 60, 30UL * 86400, &u))
			return "want seconds, 60 to 2592000";
		j->dup_window = (int64_t)u;
		break;
	case J_NAK_DELAY:
		if (parse_uint(v, 1, 86400, &u))
			return "want seconds, 1 to 86400";
		j->nak_delay = (int64_t)u;
		break;
	case J_ACK_WAIT:
		if (parse_uint(v, 2, 3600, &u))
			return "want seconds, 2 to 3600";
		j->ack_wait = (int64_t)u;
		break;
	case J_MAX_ACK_PENDING:
		if (parse_uint(v, 1, 10000000, &u))
			return "want 1 to 10000000";
		j->max_ack_pending = (int64_t)u;
		break;
	case J_COUNT:
		break;
	}
	return NULL;
}

/* Fill what the file left unset. */
static void js_defaults(struct dkp_js_config *j)
{
	static const struct { size_t off; const char *v; } def[] = {
		{ offsetof(struct dkp_js_config, servers), DKP_DEF_JS_SERVERS },
		{ offsetof(struct dkp_js_config, in_stream), "DKIM_IN" },
		{ offsetof(struct dkp_js_config, in_subject), "dkim.in" },
		{ offsetof(struct dkp_js_config, out_stream), "DKIM_OUT" },
		{ offsetof(struct dkp_js_config, out_subject), "dkim.out" },
		{ offsetof(struct dkp_js_config, failed_stream), "DKIM_FAILED" },
		{ offsetof(struct dkp_js_config, failed_subject), "dkim.failed" },
		{ offsetof(struct dkp_js_config, consumer), "dkimpress" },
	};
	size_t i;

	for (i = 0; i < sizeof(def) / sizeof(def[0]); i++) {
		char **slot = (char **)((char *)j + def[i].off);

		if (*slot == NULL)
			*slot = dkp_strdup(def[i].v);
	}
}

static void js_free(struct dkp_js_config *j)
{
	char **s[] = { &j->servers, &j->in_stream, &j->in_subject, &j->out_stream,
		       &j->out_subject, &j->failed_stream, &j->failed_subject,
		       &j->consumer, &j->creds, &j->user, &j->password, &j->token,
		       &j->tls_ca, &j->tls_cert, &j->tls_key };
	size_t i;

	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		if (*s[i] && (s[i] == &j->password || s[i] == &j->token))
			dkp_free_wipe(*s[i], strlen(*s[i]));	/* secrets */
		else
			dkp_free(*s[i]);
		*s[i] = NULL;
	}
}

/* Parse one "key = value" line (comments and blank lines allowed) into c.
 * where names the line in errors ("FILE:LINE"); an override (--set) may
 * replace a setting of the file, but not repeat itself. */
static int parse_line(struct dkp_config *c, char *p, const char *where,
		      int *seen, int override, char **queue_dir,
		      struct dkp_err *err)
{
	char *eq, *k, *v, *e;
	const char *why;
	int i;

	if ((e = strchr(p, '#')) != NULL)
		*e = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0')
		return DKP_OK;
	eq = strchr(p, '=');
	if (eq == NULL)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: want 'key = value'", where);
	k = p;
	e = eq;
	while (e > k && isspace((unsigned char)e[-1]))
		e--;
	*e = '\0';
	v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	e = v + strlen(v);
	while (e > v && isspace((unsigned char)e[-1]))
		e--;
	*e = '\0';
	for (i = 0; i < K_COUNT && strcmp(key_names[i], k); i++)
		;
	if (i == K_COUNT)	/* then the transport's table */
		for (; i < K_COUNT + J_COUNT && strcmp(jkey_names[i - K_COUNT], k); i++)
			;
	if (i == K_COUNT + J_COUNT && dkp_relay_conf_key(k) >= 0)
		i += dkp_relay_conf_key(k);	/* then the relay's (relay_conf.h) */
	else if (i == K_COUNT + J_COUNT)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: unknown setting '%s'", where, k);
	if (seen[i] > override)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: '%s' is set twice", where, k);
	if (*v == '\0')
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: '%s' has no value", where, k);
	if (override && seen[i]) {
		/* replace what the file said */
		switch ((enum ckey)i) {
		case K_QUEUE_DIR:
			dkp_free(*queue_dir);
			*queue_dir = NULL;
			break;
		case K_IN_DIR: dkp_free(c->in_dir); c->in_dir = NULL; break;
		case K_OUT_DIR: dkp_free(c->out_dir); c->out_dir = NULL; break;
		case K_FAILED_DIR: dkp_free(c->failed_dir); c->failed_dir = NULL; break;
		case K_ESP_KEY:
			dkp_free(c->esp_domain);
			dkp_free(c->esp_selector);
			dkp_free(c->esp_keyfile);
			c->esp_domain = c->esp_selector = c->esp_keyfile = NULL;
			break;
		case K_KEY_TABLE: dkp_free(c->key_table); c->key_table = NULL; break;
		case K_SIGNING_TABLE: dkp_free(c->signing_table); c->signing_table = NULL; break;
		case K_HEADERS:
			dkp_free(c->headers_buf);
			c->headers_buf = NULL;
			c->nheaders = 0;
			break;
		default:
			break;
		}
	}
	seen[i] = override ? 2 : 1;
	why = i < K_COUNT ? apply(c, (enum ckey)i, v, queue_dir)
	      : i < K_COUNT + J_COUNT ? apply_js(c, (enum jkey)(i - K_COUNT), v)
				      : dkp_relay_conf_apply(&c->relay, i - K_COUNT - J_COUNT, v);
	if (why != NULL)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config", "%s: %s: %s",
				   where, k, why);
	return DKP_OK;
}

int dkp_config_load(struct dkp_config **out, const char *path,
		    const char *const *sets, size_t nsets, struct dkp_err *err)
{
	FILE *f = dkp_fopen_regular(path);
	struct dkp_config *c;
	char *line = NULL, *queue_dir = NULL, where[512];
	size_t cap = 0, lineno = 0, j;
	int seen[K_COUNT + J_COUNT + DKP_RK_COUNT] = { 0 }, rc = DKP_OK;
	long ncpu;

	*out = NULL;
	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "conffile", errno,
				   "cannot open configuration %s%s", path,
				   dkp_open_note(errno));
	c = dkp_calloc(1, sizeof(*c));
	c->path = dkp_strdup(path);
	c->hcanon = c->bcanon = DKP_CANON_RELAXED;
	c->expire = DKP_DEF_EXPIRE;
	c->threads = DKP_DEF_THREADS;
	c->batch = DKP_DEF_BATCH;
	c->uring_depth = DKP_DEF_URING_DEPTH;
	c->inflight_bytes = DKP_DEF_INFLIGHT_BYTES;
	c->key_cache = DKP_DEF_KEY_CACHE;
	c->flush = DKP_FLUSH_FILESYSTEM;
	c->group_commit = 1;	/* the pipelined commit thread (docs/performance.md) */
	c->self_verify = DKP_DEF_SELF_VERIFY;
	c->self_verify_rsa_only = 1;		/* the default: rsa */
	c->metrics_domains = DKP_DEF_METRICS_DOMAINS;
	dkp_relay_conf_init(&c->relay);
	c->js.create_streams = 1;
	c->js.dup_window = DKP_DEF_JS_DUP_WINDOW;
	c->js.nak_delay = DKP_DEF_JS_NAK_DELAY;
	c->js.ack_wait = DKP_DEF_JS_ACK_WAIT;
	c->js.max_ack_pending = DKP_DEF_JS_MAX_ACK_PENDING;
	dkp_limits_default(&c->limits);

	while (rc == DKP_OK && getline(&line, &cap, f) >= 0) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%zu", path, lineno);
		rc = parse_line(c, line, where, seen, 0, &queue_dir, err);
	}
	fclose(f);
	for (j = 0; rc == DKP_OK && j < nsets; j++) {
		dkp_free(line);
		line = dkp_strdup(sets[j]);
		snprintf(where, sizeof(where), "--set %s", sets[j]);
		rc = parse_line(c, line, where, seen, 1, &queue_dir, err);
	}
	dkp_free(line);
	if (rc == DKP_OK) {
		if (queue_dir) {
			if (!c->in_dir)
				c->in_dir = join(queue_dir, "in");
			if (!c->out_dir)
				c->out_dir = join(queue_dir, "out");
			if (!c->failed_dir)
				c->failed_dir = join(queue_dir, "failed");
		}
		js_defaults(&c->js);
		if (c->transport == DKP_TRANSPORT_QUEUE &&
		    (!c->in_dir || !c->out_dir || !c->failed_dir))
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s: set queue_dir (or in_dir, out_dir and failed_dir)",
					 path);
		else if (!c->esp_domain)
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s: esp_key = DOMAIN:SELECTOR:KEYFILE is required",
					 path);
		else if (!c->key_table != !c->signing_table)
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s: key_table and signing_table go together",
					 path);
	}
	dkp_free(queue_dir);
	if (rc != DKP_OK) {
		dkp_config_free(c);
		return rc;
	}
	if (c->threads == 0) {
		/* two per core: while one waits for its batch's flush, the
		 * other signs (docs/tuning.md) */
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		ncpu = ncpu > 0 ? 2 * ncpu : 2;
		c->threads = (unsigned)(ncpu > DKP_MAX_THREADS ? DKP_MAX_THREADS : ncpu);
	}
	*out = c;
	return DKP_OK;
}
