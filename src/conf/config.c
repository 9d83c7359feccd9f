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
	K_INSECURE, K_FLUSH, K_COUNT
};

static const char *const key_names[K_COUNT] = {
	"queue_dir", "in_dir", "out_dir", "failed_dir", "esp_key",
	"key_table", "signing_table", "missing_key", "canonicalization",
	"headers", "expire", "threads", "batch", "uring_depth", "io",
	"inflight_bytes", "max_message_size", "max_header_bytes",
	"max_header_fields", "key_cache", "insecure_key_perms", "flush",
};

void dkp_config_free(struct dkp_config *c)
{
	if (c == NULL)
		return;
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
	case K_COUNT:
		break;
	}
	return NULL;
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
	if (i == K_COUNT)
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
	if ((why = apply(c, (enum ckey)i, v, queue_dir)) != NULL)
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
	int seen[K_COUNT] = { 0 }, rc = DKP_OK;
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
		if (!c->in_dir || !c->out_dir || !c->failed_dir)
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
