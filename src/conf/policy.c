/* policy.c — per-key settings and stream tables; see policy.h. */
#include "conf/policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/file.h"
#include "base/htab.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

struct dkp_policy {
	struct dkp_keypol *e;
	size_t n;
	struct dkp_htab *byname;
};

struct dkp_streams {
	struct dkp_stream_ent *e;
	size_t n;
	struct dkp_htab *byvalue;
};

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Split off the next white-space-separated word of *p; NULL at the end. */
static char *word(char **p)
{
	char *s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return NULL;
	w = s;
	while (*s && *s != ' ' && *s != '\t')
		s++;
	if (*s)
		*s++ = '\0';
	*p = s;
	return w;
}

/* Strip a comment and the line end; 0 when nothing is left. */
static int clean(char *line)
{
	char *e = strchr(line, '#');

	if (e)
		*e = '\0';
	e = line + strlen(line);
	while (e > line && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	return line[strspn(line, " \t")] != '\0';
}

void dkp_policy_free(struct dkp_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		dkp_free(p->e[i].name);
		dkp_free(p->e[i].headers_buf);
		dkp_free(p->e[i].identity);
	}
	dkp_free(p->e);
	dkp_htab_free(p->byname, NULL);
	dkp_free(p);
}

static const char *set_headers(struct dkp_keypol *kp, const char *v)
{
	char *q, *tok, *save = NULL;
	int from = 0;

	kp->set_headers = 1;
	if (!strcasecmp(v, "default"))
		return NULL;
	kp->headers_buf = dkp_strdup(v);
	for (q = kp->headers_buf; (tok = strtok_r(q, ":", &save)); q = NULL) {
		if (kp->nheaders == DKP_MAX_CONF_HEADERS)
			return "too many header names";
		if (!strcasecmp(tok, "DKIM-Signature") ||
		    !dkp_sigfmt_hname_ok(tok, strlen(tok)))
			return "invalid header name (not DKIM-Signature; printable US-ASCII except ':' and ';')";
		from |= !strcasecmp(tok, "From");
		kp->headers[kp->nheaders++] = tok;
	}
	return from ? NULL : "the list must include From";
}

/* "[local]@domain", the domain "%" (the signature's d=) or a d= name. */
static int identity_ok(const char *v)
{
	const char *at = strrchr(v, '@');
	char probe[320];

	if (at == NULL || strlen(v) >= sizeof(probe) - 20)
		return 0;
	if (strcmp(at + 1, "%") == 0) {
		snprintf(probe, sizeof(probe), "%.*sexample.com", (int)(at + 1 - v), v);
		return dkp_sigfmt_auid_ok(probe, strlen(probe));
	}
	return dkp_sigfmt_auid_ok(v, strlen(v));
}

static const char *set_one(struct dkp_keypol *kp, char *kv)
{
	char *v = strchr(kv, '=');
	unsigned long u;
	char *end;

	if (v == NULL || v[1] == '\0')
		return "want SETTING=VALUE";
	*v++ = '\0';
	if (!strcasecmp(kv, "canonicalization")) {
		if (kp->set_canon++ ||
		    dkp_canon_parse(v, &kp->hcanon, &kp->bcanon) != DKP_OK)
			return "canonicalization: want simple or relaxed, as H/B, once";
	} else if (!strcasecmp(kv, "headers")) {
		if (kp->set_headers)
			return "headers set twice";
		return set_headers(kp, v);
	} else if (!strcasecmp(kv, "expire")) {
		errno = 0;
		u = strtoul(v, &end, 10);
		if (kp->set_expire++ || !isdigit((unsigned char)*v) || *end ||
		    errno || u > 10UL * 366 * 86400)
			return "expire: want seconds (0: no x=), once";
		kp->expire = (int64_t)u;
	} else if (!strcasecmp(kv, "identity")) {
		if (kp->identity || !identity_ok(v))
			return "identity: want [LOCAL]@DOMAIN (DOMAIN a d= or %), once";
		kp->identity = dkp_strdup(v);
		lower(strrchr(kp->identity, '@'));
	} else {
		return "unknown setting (canonicalization, headers, expire, identity)";
	}
	return NULL;
}

static int policy_line(struct dkp_policy *p, char *line, const char *path,
		       size_t lineno, size_t *cap, struct dkp_err *err)
{
	char *rest = line, *name = word(&rest), *kv;
	struct dkp_keypol *kp;
	const char *why = NULL;

	if (p->n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		p->e = dkp_realloc(p->e, *cap * sizeof(*p->e));
	}
	kp = &p->e[p->n++];
	memset(kp, 0, sizeof(*kp));
	kp->name = dkp_strdup(name);
	lower(kp->name);
	while (why == NULL && (kv = word(&rest)) != NULL)
		why = set_one(kp, kv);
	if (why == NULL && !kp->set_canon && !kp->set_headers &&
	    !kp->set_expire && !kp->identity)
		why = "want NAME SETTING=VALUE ...";
	if (why)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "config", "%s:%zu: %s",
				   path, lineno, why);
	return DKP_OK;
}

int dkp_policy_load(struct dkp_policy **out, const char *path,
		    struct dkp_err *err)
{
	FILE *f = dkp_fopen_regular(path);
	struct dkp_policy *p;
	char *line = NULL;
	size_t cap = 0, ecap = 0, lineno = 0, i;
	int rc = DKP_OK;

	*out = NULL;
	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "config", errno,
				   "cannot open key_policy %s%s", path, dkp_open_note(errno));
	p = dkp_calloc(1, sizeof(*p));
	while (rc == DKP_OK && getline(&line, &cap, f) >= 0) {
		lineno++;
		if (clean(line))
			rc = policy_line(p, line, path, lineno, &ecap, err);
	}
	dkp_free(line);
	fclose(f);
	p->byname = dkp_htab_new(p->n ? p->n : 1);
	for (i = 0; rc == DKP_OK && i < p->n; i++)
		if (dkp_htab_put(p->byname, p->e[i].name, strlen(p->e[i].name), &p->e[i]))
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s: '%.100s' has two lines", path, p->e[i].name);
	if (rc != DKP_OK) {
		dkp_policy_free(p);
		return rc;
	}
	*out = p;
	return DKP_OK;
}

const struct dkp_keypol *dkp_policy_get(const struct dkp_policy *p,
					const char *name)
{
	char low[300];
	int n;

	if (p == NULL)
		return NULL;
	n = snprintf(low, sizeof(low), "%s", name);
	if (n < 0 || (size_t)n >= sizeof(low))
		return NULL;
	lower(low);
	return dkp_htab_get(p->byname, low, (size_t)n);
}

size_t dkp_policy_count(const struct dkp_policy *p)
{
	return p ? p->n : 0;
}

const struct dkp_keypol *dkp_policy_at(const struct dkp_policy *p, size_t i)
{
	return p && i < p->n ? &p->e[i] : NULL;
}

const char *dkp_policy_identity(const struct dkp_keypol *kp,
				const char *domain, char *buf, size_t bufsz)
{
	const char *at;
	int n;

	if (kp == NULL || kp->identity == NULL)
		return NULL;
	at = strrchr(kp->identity, '@');
	if (strcmp(at + 1, "%") == 0)
		n = snprintf(buf, bufsz, "%.*s%s", (int)(at + 1 - kp->identity),
			     kp->identity, domain);
	else
		n = snprintf(buf, bufsz, "%s", kp->identity);
	return n < 0 || (size_t)n >= bufsz ? NULL : buf;
}

/* ---- esp_stream_table ---- */

void dkp_streams_free(struct dkp_streams *s)
{
	size_t i, k;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++) {
		dkp_free(s->e[i].value);
		for (k = 0; k < s->e[i].nkeys; k++) {
			dkp_free(s->e[i].keys[k].domain);
			dkp_free(s->e[i].keys[k].selector);
			dkp_free(s->e[i].keys[k].keyfile);
		}
	}
	dkp_free(s->e);
	dkp_htab_free(s->byvalue, NULL);
	dkp_free(s);
}

/* "DOMAIN:SELECTOR:KEYFILE" into k; a reason or NULL. */
static const char *espkey_parse(char *v, struct dkp_espkey *k)
{
	char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

	if (c2 == NULL || c2[1] == '\0')
		return "want VALUE DOMAIN:SELECTOR:KEYFILE[,DOMAIN:SELECTOR:KEYFILE...]";
	*c1 = *c2 = '\0';
	if (!dkp_sigfmt_domain_ok(v, strlen(v)) ||
	    !dkp_sigfmt_selector_ok(c1 + 1, strlen(c1 + 1)))
		return "invalid domain or selector";
	k->domain = dkp_strdup(v);
	lower(k->domain);
	k->selector = dkp_strdup(c1 + 1);
	k->keyfile = dkp_strdup(c2 + 1);
	return NULL;
}

static const char *stream_line(struct dkp_streams *s, char *line, size_t *cap)
{
	char *rest = line, *value = word(&rest), *keys = word(&rest), *tok;
	char *save = NULL;
	struct dkp_stream_ent *e;
	const char *why = NULL;

	if (keys == NULL || word(&rest) != NULL)
		return "want VALUE DOMAIN:SELECTOR:KEYFILE[,DOMAIN:SELECTOR:KEYFILE...]";
	if (s->n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		s->e = dkp_realloc(s->e, *cap * sizeof(*s->e));
	}
	e = &s->e[s->n];
	memset(e, 0, sizeof(*e));
	e->value = dkp_strdup(value);
	lower(e->value);
	e->index = s->n++;
	for (tok = strtok_r(keys, ",", &save); tok && !why;
	     tok = strtok_r(NULL, ",", &save)) {
		if (e->nkeys == DKP_MAX_ESP_KEYS)
			return "at most 8 keys per stream";
		why = espkey_parse(tok, &e->keys[e->nkeys]);
		if (!why)
			e->nkeys++;
	}
	return why;
}

int dkp_streams_load(struct dkp_streams **out, const char *path,
		     struct dkp_err *err)
{
	FILE *f = dkp_fopen_regular(path);
	struct dkp_streams *s;
	char *line = NULL;
	size_t cap = 0, ecap = 0, lineno = 0, i;
	const char *why = NULL;
	int rc = DKP_OK;

	*out = NULL;
	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "config", errno,
				   "cannot open esp_stream_table %s%s", path,
				   dkp_open_note(errno));
	s = dkp_calloc(1, sizeof(*s));
	while (why == NULL && getline(&line, &cap, f) >= 0) {
		lineno++;
		if (clean(line))
			why = stream_line(s, line, &ecap);
	}
	dkp_free(line);
	fclose(f);
	if (why)
		rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config", "%s:%zu: %s",
				 path, lineno, why);
	s->byvalue = dkp_htab_new(s->n ? s->n : 1);
	for (i = 0; rc == DKP_OK && i < s->n; i++)	/* the first line wins */
		if (!dkp_htab_get(s->byvalue, s->e[i].value, strlen(s->e[i].value)))
			dkp_htab_put(s->byvalue, s->e[i].value, strlen(s->e[i].value),
				     &s->e[i]);
	if (rc != DKP_OK) {
		dkp_streams_free(s);
		return rc;
	}
	*out = s;
	return DKP_OK;
}

size_t dkp_streams_count(const struct dkp_streams *s)
{
	return s ? s->n : 0;
}

const struct dkp_stream_ent *dkp_streams_at(const struct dkp_streams *s,
					    size_t i)
{
	return s && i < s->n ? &s->e[i] : NULL;
}

const struct dkp_stream_ent *dkp_streams_lookup(const struct dkp_streams *s,
						const char *value, size_t n,
						int domain_walk)
{
	const struct dkp_stream_ent *e;
	char low[256];
	const char *d;
	size_t i;

	while (n && (*value == ' ' || *value == '\t'))
		value++, n--;
	while (n && strchr(" \t\r\n", value[n - 1]))
		n--;
	if (s == NULL || n == 0 || n >= sizeof(low))
		return NULL;
	for (i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)value[i]);
	low[n] = '\0';
	if ((e = dkp_htab_get(s->byvalue, low, n)) || !domain_walk)
		return e;
	for (d = strchr(low, '.'); d; d = strchr(d + 1, '.'))
		if ((e = dkp_htab_get(s->byvalue, d, strlen(d))))
			return e;
	return NULL;
}
