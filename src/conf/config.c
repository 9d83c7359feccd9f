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
#include <limits.h>
#include <grp.h>
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
	K_METRICS_LISTEN, K_METRICS_DOMAINS, K_LOG, K_DEDUP_WINDOW,
	K_DEDUP_MAX, K_MULTI, K_KEY_POLICY, K_ESP_STREAM, K_ESP_STREAM_TABLE,
	K_CORE_DUMPS, K_OUT_MODE, K_OUT_GROUP, K_COUNT
};

static const char *const key_names[K_COUNT] = {
	"queue_dir", "in_dir", "out_dir", "failed_dir", "esp_key",
	"key_table", "signing_table", "missing_key", "canonicalization",
	"headers", "expire", "threads", "batch", "uring_depth", "io",
	"inflight_bytes", "max_message_size", "max_header_bytes",
	"max_header_fields", "key_cache", "insecure_key_perms", "flush",
	"group_commit", "self_verify", "rsa_backend",
	"metrics_listen", "metrics_domains", "log", "dedup_window",
	"dedup_max", "multiple_signatures", "key_policy", "esp_stream",
	"esp_stream_table", "core_dumps",
	"out_mode", "out_group",
};

static void js_free(struct dkp_js_config *j);

static void esp_free(struct dkp_config *c)
{
	size_t i;

	for (i = 0; i < c->nesp; i++) {
		dkp_free(c->esp[i].domain);
		dkp_free(c->esp[i].selector);
		dkp_free(c->esp[i].keyfile);
	}
	c->nesp = 0;
	c->esp_domain = c->esp_selector = c->esp_keyfile = NULL;
}

void dkp_config_free(struct dkp_config *c)
{
	if (c == NULL)
		return;
	js_free(&c->js);
	dkp_align_conf_free(&c->align);
	dkp_relay_conf_free(&c->relay);
	dkp_free(c->path);
	dkp_free(c->in_dir);
	dkp_free(c->out_dir);
	dkp_free(c->failed_dir);
	esp_free(c);
	dkp_free(c->key_policy);
	dkp_free(c->esp_stream_header);
	dkp_free(c->esp_stream_table);
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

/* ---- the engine's settings, one description each ------------------ */

#define CF(field) offsetof(struct dkp_config, field), sizeof(((struct dkp_config *)0)->field)

enum vkind {
	V_STR,		/* char *, a copy */
	V_UINT,		/* a decimal in min..max, into an integer field */
	V_SIZE,		/* a size (dkp_config_size: 256M, 4K) in min..max */
	V_BOOL,		/* yes/no, into an int */
	V_CHOICE,	/* one of words[], its vals[] into an int-sized enum */
	V_FN,		/* fn does it */
};

struct setting {
	enum vkind kind;
	size_t off, size;	/* the field of struct dkp_config */
	uint64_t min, max;
	const char *const *words;	/* V_CHOICE: NULL-terminated */
	const int *vals;
	const char *(*fn)(struct dkp_config *c, const char *v, char **queue_dir);
	const char *why;	/* why a value is refused */
};

static const char *set_queue_dir(struct dkp_config *c, const char *v, char **queue_dir)
{
	(void)c;
	dkp_free(*queue_dir);
	*queue_dir = dkp_strdup(v);
	return NULL;
}

static const char *set_esp_key(struct dkp_config *c, const char *v, char **queue_dir)
{
	const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	struct dkp_espkey *e;

	(void)queue_dir;
	if (c2 == NULL || c2[1] == '\0')
		return "want DOMAIN:SELECTOR:KEYFILE";
	/* rendered as d= and s=: RFC 6376 grammar (sigfmt.h) */
	if (!dkp_sigfmt_domain_ok(v, (size_t)(c1 - v)) ||
	    !dkp_sigfmt_selector_ok(c1 + 1, (size_t)(c2 - c1 - 1)))
		return "invalid domain or selector (RFC 6376: a domain of two or more labels and a selector, of letters, digits and inner '-')";
	if (c->nesp == DKP_MAX_ESP_KEYS)
		return "at most 8 esp_key lines";
	e = &c->esp[c->nesp++];
	e->domain = dkp_strndup(v, (size_t)(c1 - v));
	for (char *p = e->domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	e->selector = dkp_strndup(c1 + 1, (size_t)(c2 - c1 - 1));
	e->keyfile = dkp_strdup(c2 + 1);
	c->esp_domain = c->esp[0].domain;
	c->esp_selector = c->esp[0].selector;
	c->esp_keyfile = c->esp[0].keyfile;
	return NULL;
}

static const char *set_multi(struct dkp_config *c, const char *v, char **queue_dir)
{
	int b;

	(void)queue_dir;
	if (!strcasecmp(v, "all"))
		c->multiple_signatures = DKP_MULTI_ALL;
	else if (parse_bool(v, &b))
		return "want no, yes (as OpenDKIM 2.11) or all";
	else
		c->multiple_signatures = b ? DKP_MULTI_OPENDKIM : DKP_MULTI_NO;
	return NULL;
}

static const char *set_esp_stream(struct dkp_config *c, const char *v, char **queue_dir)
{
	(void)queue_dir;
	dkp_free(c->esp_stream_header);
	c->esp_stream_header = NULL;
	if (!strcasecmp(v, "none")) {
		c->esp_stream = DKP_STREAM_NONE;
	} else if (!strcasecmp(v, "sender")) {
		c->esp_stream = DKP_STREAM_SENDER;
	} else if (!strncasecmp(v, "header:", 7) && v[7] &&
		   dkp_sigfmt_hname_ok(v + 7, strlen(v + 7)) &&
		   strcasecmp(v + 7, "From") && strcasecmp(v + 7, "DKIM-Signature")) {
		c->esp_stream = DKP_STREAM_HEADER;
		c->esp_stream_header = dkp_strdup(v + 7);
	} else {
		return "want none, sender or header:NAME (a field name other than From and DKIM-Signature)";
	}
	return NULL;
}

static const char *set_canon(struct dkp_config *c, const char *v, char **queue_dir)
{
	(void)queue_dir;
	return dkp_canon_parse(v, &c->hcanon, &c->bcanon) != DKP_OK
		       ? "want simple or relaxed, as H/B" : NULL;
}

static const char *set_headers(struct dkp_config *c, const char *v, char **queue_dir)
{
	char *p, *tok, *save = NULL;
	int from = 0;

	(void)queue_dir;
	dkp_free(c->headers_buf);
	c->headers_buf = NULL;
	c->nheaders = 0;
	if (!strcasecmp(v, "default"))
		return NULL;
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
	return from ? NULL : "the list must include From";
}

static const char *set_self_verify(struct dkp_config *c, const char *v, char **queue_dir)
{
	unsigned long u;

	(void)queue_dir;
	c->self_verify_rsa_only = 0;
	if (!strcasecmp(v, "all"))
		c->self_verify = 1;
	else if (!strcasecmp(v, "rsa"))
		c->self_verify = 1, c->self_verify_rsa_only = 1;
	else if (!strcasecmp(v, "off"))
		c->self_verify = 0;
	else if (!strncasecmp(v, "sample:", 7) && parse_uint(v + 7, 1, 1000000, &u) == 0)
		c->self_verify = (unsigned)u;
	else
		return "want all, rsa, off or sample:N (N from 1 to 1000000)";
	return NULL;
}

/* the address is resolved and bound by `run` (cmd/metrics.c) */
static const char *set_metrics_listen(struct dkp_config *c, const char *v, char **queue_dir)
{
	const char *colon = strrchr(v, ':');
	unsigned long u;

	(void)queue_dir;
	dkp_free(c->metrics_listen);
	c->metrics_listen = NULL;
	if (!strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcasecmp(v, "none"))
		return NULL;
	if (colon == NULL || colon == v || colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    parse_uint(colon + 1, 1, 65535, &u))
		return "want HOST:PORT (e.g. 127.0.0.1:9469, [::1]:9469) or off";
	c->metrics_listen = dkp_strdup(v);
	return NULL;
}

/* enqueue --id: seconds, or a number with s, m, h or d after it */
static const char *set_dedup_window(struct dkp_config *c, const char *v, char **queue_dir)
{
	static const char units[] = "smhd";
	static const unsigned long mul[] = { 1, 60, 3600, 86400 };
	const unsigned long max = 30UL * 86400;
	const char *u;
	char *end;
	unsigned long n;

	(void)queue_dir;
	errno = 0;
	n = isdigit((unsigned char)*v) ? strtoul(v, &end, 10) : ULONG_MAX;
	if (n != ULONG_MAX && errno == 0 && *end != '\0') {
		u = end[1] == '\0' ? strchr(units, *end) : NULL;
		n = u && n <= max / mul[u - units] ? n * mul[u - units] : ULONG_MAX;
	}
	if (n == ULONG_MAX || errno || n > max)
		return "want a duration from 0 (off) to 30d, e.g. 600, 10m, 2h";
	c->dedup_window = (int64_t)n;
	return NULL;
}

/* out_mode: octal, 0600 plus group/other read-write bits, no execute */
static const char *set_out_mode(struct dkp_config *c, const char *v, char **queue_dir)
{
	unsigned long u;
	char *end;

	(void)queue_dir;
	errno = 0;
	u = strtoul(v, &end, 8);
	if (*v != '0' || errno || *end || (u & ~0666UL) || (u & 0600) != 0600)
		return "want an octal mode with 0600 and no execute bits, e.g. 0640";
	c->out_mode = (unsigned)u;
	return NULL;
}

/* out_group: a group name, or a number, that exists */
static const char *set_out_group(struct dkp_config *c, const char *v, char **queue_dir)
{
	struct group g, *gr = NULL;
	char buf[4096];
	unsigned long u;

	(void)queue_dir;
	if (parse_uint(v, 0, 0x7fffffffUL, &u) == 0)
		c->out_gid = (long)u;
	else if (getgrnam_r(v, &g, buf, sizeof(buf), &gr) == 0 && gr)
		c->out_gid = (long)gr->gr_gid;
	else
		return "want the name or number of a group";
	return NULL;
}

static const char *const w_missing[] = { "esp-only", "defer", "fail", NULL };
static const int v_missing[] = { DKP_MISSING_ESP_ONLY, DKP_MISSING_DEFER, DKP_MISSING_FAIL };
static const char *const w_io[] = { "auto", "uring", "io_uring", "syscalls", NULL };
static const int v_io[] = { DKP_IO_AUTO, DKP_IO_URING, DKP_IO_URING, DKP_IO_SYSCALLS };
static const char *const w_flush[] = { "filesystem", "files", NULL };
static const int v_flush[] = { DKP_FLUSH_FILESYSTEM, DKP_FLUSH_FILES };
static const char *const w_rsa[] = { "auto", "openssl", "ifma", NULL };
static const int v_rsa[] = { DKP_RSA_AUTO, DKP_RSA_OPENSSL, DKP_RSA_IFMA };
static const char *const w_log[] = { "stderr", "syslog", NULL };
static const int v_log[] = { 0, 1 };

#define FN(f) V_FN, 0, 0, 0, 0, NULL, NULL, f, NULL
#define STR(field) V_STR, CF(field), 0, 0, NULL, NULL, NULL, NULL
#define UINT(field, lo, hi, why) V_UINT, CF(field), lo, hi, NULL, NULL, NULL, why
#define SIZE(field, lo, hi, why) V_SIZE, CF(field), lo, hi, NULL, NULL, NULL, why
#define BOOL(field) V_BOOL, CF(field), 0, 0, NULL, NULL, NULL, "want yes or no"
#define CHOICE(field, w, v, why) V_CHOICE, CF(field), 0, 0, w, v, NULL, why

static const struct setting settings[K_COUNT] = {
	[K_QUEUE_DIR] = { FN(set_queue_dir) },
	[K_IN_DIR] = { STR(in_dir) },
	[K_OUT_DIR] = { STR(out_dir) },
	[K_FAILED_DIR] = { STR(failed_dir) },
	[K_ESP_KEY] = { FN(set_esp_key) },
	[K_KEY_TABLE] = { STR(key_table) },
	[K_SIGNING_TABLE] = { STR(signing_table) },
	[K_MISSING_KEY] = { CHOICE(missing_key, w_missing, v_missing, "want esp-only, defer or fail") },
	[K_CANON] = { FN(set_canon) },
	[K_HEADERS] = { FN(set_headers) },
	[K_EXPIRE] = { UINT(expire, 0, 10ULL * 366 * 86400, "want seconds (0: no x= tag)") },
	[K_THREADS] = { UINT(threads, 0, DKP_MAX_THREADS, "want 0 (two per core) to 256") },
	[K_BATCH] = { UINT(batch, 1, 4096, "want 1 to 4096") },
	[K_URING_DEPTH] = { UINT(uring_depth, 8, 4096, "want 8 to 4096") },
	[K_IO] = { CHOICE(io, w_io, v_io, "want auto, uring or syscalls") },
	[K_INFLIGHT] = { SIZE(inflight_bytes, 1u << 20, UINT64_MAX, "want a size of at least 1M (e.g. 256M)") },
	[K_MAX_MESSAGE] = { SIZE(limits.max_message_bytes, 1024, 1ull << 31, "want a size from 1K to 2G") },
	[K_MAX_HEADER_BYTES] = { SIZE(limits.max_header_bytes, 1024, 64u << 20, "want a size from 1K to 64M") },
	[K_MAX_HEADER_FIELDS] = { UINT(limits.max_fields, 1, 100000, "want 1 to 100000") },
	[K_KEY_CACHE] = { UINT(key_cache, 1, 10000000, "want 1 to 10000000") },
	[K_INSECURE] = { BOOL(insecure_key_perms) },
	[K_FLUSH] = { CHOICE(flush, w_flush, v_flush, "want filesystem or files") },
	[K_GROUP_COMMIT] = { BOOL(group_commit) },
	[K_SELF_VERIFY] = { FN(set_self_verify) },
	[K_RSA_BACKEND] = { CHOICE(rsa_backend, w_rsa, v_rsa, "want auto, openssl or ifma") },
	[K_METRICS_LISTEN] = { FN(set_metrics_listen) },
	[K_METRICS_DOMAINS] = { UINT(metrics_domains, 1, DKP_MAX_METRICS_DOMAINS, "want 1 to 100000") },
	[K_LOG] = { CHOICE(log_syslog, w_log, v_log, "want stderr or syslog") },
	[K_DEDUP_WINDOW] = { FN(set_dedup_window) },
	[K_DEDUP_MAX] = { UINT(dedup_max, 1, 1000000000, "want 1 to 1000000000") },
	[K_MULTI] = { FN(set_multi) },
	[K_KEY_POLICY] = { STR(key_policy) },
	[K_ESP_STREAM] = { FN(set_esp_stream) },
	[K_ESP_STREAM_TABLE] = { STR(esp_stream_table) },
	[K_CORE_DUMPS] = { BOOL(core_dumps) },	/* crypto/keymem.h */
	[K_OUT_MODE] = { FN(set_out_mode) },
	[K_OUT_GROUP] = { FN(set_out_group) },
};

/* An integer of the field's own width (4 or 8 bytes). */
static void store_int(void *field, size_t size, uint64_t v)
{
	if (size == sizeof(uint32_t)) {
		uint32_t x = (uint32_t)v;

		memcpy(field, &x, sizeof(x));
	} else {
		memcpy(field, &v, sizeof(v));
	}
}

/* Apply one setting described by st. Returns NULL or a reason (static
 * string). */
static const char *apply(struct dkp_config *c, const struct setting *st,
			 const char *v, char **queue_dir)
{
	char *field = (char *)c + st->off;
	unsigned long u;
	uint64_t sz;
	int b, i;

	switch (st->kind) {
	case V_FN:
		return st->fn(c, v, queue_dir);
	case V_STR:
		dkp_free(*(char **)(void *)field);
		*(char **)(void *)field = dkp_strdup(v);
		return NULL;
	case V_UINT:
		if (parse_uint(v, (unsigned long)st->min, (unsigned long)st->max, &u))
			return st->why;
		store_int(field, st->size, u);
		return NULL;
	case V_SIZE:
		if (dkp_config_size(v, &sz) || sz < st->min || sz > st->max)
			return st->why;
		store_int(field, st->size, sz);
		return NULL;
	case V_BOOL:
		if (parse_bool(v, &b))
			return st->why;
		store_int(field, st->size, (uint64_t)b);
		return NULL;
	case V_CHOICE:
		for (i = 0; st->words[i] && strcasecmp(v, st->words[i]); i++)
			;
		if (st->words[i] == NULL)
			return st->why;
		store_int(field, st->size, (uint64_t)st->vals[i]);
		return NULL;
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

static const char *set_js_name(char **slot, const char *v)
{
	if (!js_name_ok(v))
		return "a NATS name has no space, '.', '*', '>', '/' or '\\'";
	dkp_free(*slot);
	*slot = dkp_strdup(v);
	return NULL;
}

static const char *set_js_subject(char **slot, const char *v)
{
	if (!js_subject_ok(v))
		return "want a subject like dkim.in (tokens, no wildcard)";
	dkp_free(*slot);
	*slot = dkp_strdup(v);
	return NULL;
}

#define JS_NAME_FN(name, field) \
	static const char *name(struct dkp_config *c, const char *v, char **q) \
	{ (void)q; return set_js_name(&c->js.field, v); }
#define JS_SUBJECT_FN(name, field) \
	static const char *name(struct dkp_config *c, const char *v, char **q) \
	{ (void)q; return set_js_subject(&c->js.field, v); }
JS_NAME_FN(set_in_stream, in_stream)
JS_NAME_FN(set_out_stream, out_stream)
JS_NAME_FN(set_failed_stream, failed_stream)
JS_NAME_FN(set_consumer, consumer)
JS_SUBJECT_FN(set_in_subject, in_subject)
JS_SUBJECT_FN(set_out_subject, out_subject)
JS_SUBJECT_FN(set_failed_subject, failed_subject)

static const char *set_servers(struct dkp_config *c, const char *v, char **q)
{
	(void)q;
	if (strspn(v, ", \t") == strlen(v))
		return "want nats://HOST:PORT[,nats://HOST:PORT...]";
	dkp_free(c->js.servers);
	c->js.servers = dkp_strdup(v);
	return NULL;
}

static const char *set_replicas(struct dkp_config *c, const char *v, char **q)
{
	unsigned long u;

	(void)q;
	if (!strcasecmp(v, "auto"))
		c->js.replicas = 0;
	else if (parse_uint(v, 1, 5, &u))
		return "want auto or 1 to 5";
	else
		c->js.replicas = (unsigned)u;
	return NULL;
}

static const char *const w_transport[] = { "queue", "jetstream", NULL };
static const int v_transport[] = { DKP_TRANSPORT_QUEUE, DKP_TRANSPORT_JETSTREAM };

/* The transport settings (transport = jetstream, docs/scale-out.md); a
 * --set replaces, the old value freed. */
static const struct setting jsettings[J_COUNT] = {
	[J_TRANSPORT] = { CHOICE(transport, w_transport, v_transport, "want queue or jetstream") },
	[J_SERVERS] = { FN(set_servers) },
	[J_IN_STREAM] = { FN(set_in_stream) },
	[J_IN_SUBJECT] = { FN(set_in_subject) },
	[J_OUT_STREAM] = { FN(set_out_stream) },
	[J_OUT_SUBJECT] = { FN(set_out_subject) },
	[J_FAILED_STREAM] = { FN(set_failed_stream) },
	[J_FAILED_SUBJECT] = { FN(set_failed_subject) },
	[J_CONSUMER] = { FN(set_consumer) },
	[J_CREDS] = { STR(js.creds) },
	[J_USER] = { STR(js.user) },
	[J_PASSWORD] = { STR(js.password) },
	[J_TOKEN] = { STR(js.token) },
	[J_TLS_CA] = { STR(js.tls_ca) },
	[J_TLS_CERT] = { STR(js.tls_cert) },
	[J_TLS_KEY] = { STR(js.tls_key) },
	[J_REPLICAS] = { FN(set_replicas) },
	[J_CREATE] = { BOOL(js.create_streams) },
	[J_DUP_WINDOW] = { UINT(js.dup_window, 60, 30UL * 86400, "want seconds, 60 to 2592000") },
	[J_NAK_DELAY] = { UINT(js.nak_delay, 1, 86400, "want seconds, 1 to 86400") },
	[J_ACK_WAIT] = { UINT(js.ack_wait, 2, 3600, "want seconds, 2 to 3600") },
	[J_MAX_ACK_PENDING] = { UINT(js.max_ack_pending, 1, 10000000, "want 1 to 10000000") },
};

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
	if (i == K_COUNT + J_COUNT && dkp_align_conf_key(k) >= 0)
		i += dkp_align_conf_key(k);	/* then DMARC alignment's (align.h) */
	else if (i == K_COUNT + J_COUNT && dkp_relay_conf_key(k) >= 0)
		i += DKP_ALIGN_NKEYS + dkp_relay_conf_key(k);	/* the relay's (relay_conf.h) */
	else if (i == K_COUNT + J_COUNT)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: unknown setting '%s'", where, k);
	if (seen[i] > override && i != K_ESP_KEY)	/* esp_key: one per key */
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: '%s' is set twice", where, k);
	if (*v == '\0')
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: '%s' has no value", where, k);
	/* a --set replaces what the file said: each setter frees the old
	 * value; esp_key lines add up, so the first --set one drops the
	 * file's */
	if (override && seen[i] == 1 && i == K_ESP_KEY)
		esp_free(c);
	seen[i] = override ? 2 : 1;
	why = i < K_COUNT ? apply(c, &settings[i], v, queue_dir)
	    : i < K_COUNT + J_COUNT ? apply(c, &jsettings[i - K_COUNT], v, queue_dir)
	    : i < K_COUNT + J_COUNT + DKP_ALIGN_NKEYS
		? dkp_align_conf_apply(&c->align, i - K_COUNT - J_COUNT, v)
		: dkp_relay_conf_apply(&c->relay, i - K_COUNT - J_COUNT - DKP_ALIGN_NKEYS, v);
	if (why != NULL)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config", "%s: %s: %s",
				   where, k, why);
	return DKP_OK;
}

/* The defaults, before the file and the --set options. */
static struct dkp_config *config_new(const char *path)
{
	struct dkp_config *c = dkp_calloc(1, sizeof(*c));

	c->path = dkp_strdup(path);
	c->hcanon = c->bcanon = DKP_CANON_RELAXED;
	c->expire = DKP_DEF_EXPIRE;
	c->threads = DKP_DEF_THREADS;
	c->batch = DKP_DEF_BATCH;
	c->uring_depth = DKP_DEF_URING_DEPTH;
	c->inflight_bytes = DKP_DEF_INFLIGHT_BYTES;
	c->out_mode = 0600;
	c->out_gid = -1;
	c->key_cache = DKP_DEF_KEY_CACHE;
	c->flush = DKP_FLUSH_FILESYSTEM;
	c->group_commit = 1;	/* the pipelined commit thread (docs/performance.md) */
	c->self_verify = DKP_DEF_SELF_VERIFY;
	c->self_verify_rsa_only = 1;		/* the default: rsa */
	c->metrics_domains = DKP_DEF_METRICS_DOMAINS;
	c->dedup_window = DKP_DEF_DEDUP_WINDOW;
	c->dedup_max = DKP_DEF_DEDUP_MAX;
	dkp_relay_conf_init(&c->relay);
	c->js.create_streams = 1;
	c->js.dup_window = DKP_DEF_JS_DUP_WINDOW;
	c->js.nak_delay = DKP_DEF_JS_NAK_DELAY;
	c->js.ack_wait = DKP_DEF_JS_ACK_WAIT;
	c->js.max_ack_pending = DKP_DEF_JS_MAX_ACK_PENDING;
	dkp_limits_default(&c->limits);
	return c;
}

/* After the file and the --set options: what follows from queue_dir, the
 * transport's defaults, and what must be there. */
static int config_finish(struct dkp_config *c, const char *path,
			 const char *queue_dir, struct dkp_err *err)
{
	long ncpu;

	if (queue_dir) {
		if (!c->in_dir)
			c->in_dir = join(queue_dir, "in");
		if (!c->out_dir)
			c->out_dir = join(queue_dir, "out");
		if (!c->failed_dir)
			c->failed_dir = join(queue_dir, "failed");
	}
	js_defaults(&c->js);
	if (c->transport == DKP_TRANSPORT_QUEUE && (!c->in_dir || !c->out_dir || !c->failed_dir))
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: set queue_dir (or in_dir, out_dir and failed_dir)", path);
	if (!c->esp_domain)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: esp_key = DOMAIN:SELECTOR:KEYFILE is required", path);
	if (!c->key_table != !c->signing_table)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: key_table and signing_table go together", path);
	if ((c->esp_stream != DKP_STREAM_NONE) != !!c->esp_stream_table)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
				   "%s: esp_stream and esp_stream_table go together", path);
	if (c->threads == 0) {
		/* two per core: while one waits for its batch's flush, the
		 * other signs (docs/tuning.md) */
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		ncpu = ncpu > 0 ? 2 * ncpu : 2;
		c->threads = (unsigned)(ncpu > DKP_MAX_THREADS ? DKP_MAX_THREADS : ncpu);
	}
	return DKP_OK;
}

int dkp_config_load(struct dkp_config **out, const char *path,
		    const char *const *sets, size_t nsets, struct dkp_err *err)
{
	FILE *f = dkp_fopen_regular(path);
	struct dkp_config *c;
	char *line = NULL, *queue_dir = NULL, where[512];
	size_t cap = 0, lineno = 0, j;
	int seen[K_COUNT + J_COUNT + DKP_ALIGN_NKEYS + DKP_RK_COUNT] = { 0 }, rc = DKP_OK;

	*out = NULL;
	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "conffile", errno,
				   "cannot open configuration %s%s", path,
				   dkp_open_note(errno));
	c = config_new(path);
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
	if (rc == DKP_OK)
		rc = config_finish(c, path, queue_dir, err);
	dkp_free(queue_dir);
	if (rc != DKP_OK) {
		dkp_config_free(c);
		return rc;
	}
	*out = c;
	return DKP_OK;
}
