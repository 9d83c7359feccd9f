/* route.c — KeyTable and SigningTable (OpenDKIM formats); see route.h. */
#include "conf/route.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/file.h"
#include "base/htab.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

/* What one SigningTable entry names: one key or a comma-separated list. */
struct sentry {
	const struct dkp_keyent **k;
	size_t n;
};

struct pattern {
	char *pat;
	struct sentry *e;
};

struct dkp_route {
	struct dkp_keyent *keys;
	size_t nkeys;
	struct dkp_htab *byname;	/* key name -> keyent */
	struct dkp_htab *exact;		/* plain table: key -> sentry */
	struct pattern *pats;		/* refile table, in file order */
	size_t npats;
};

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

int dkp_route_two_fields(char *line, char **a, char **b)
{
	char *p = line, *e;

	if ((e = strchr(p, '#')) != NULL)
		*e = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	e = p + strlen(p);
	while (e > p && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	if (*p == '\0')
		return 0;
	*a = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	if (*p == '\0')
		return -1;
	*p++ = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	*b = p;
	return strpbrk(p, " \t") ? -1 : 1;
}

static void sentry_free(void *p)
{
	struct sentry *e = p;

	if (e) {
		dkp_free(e->k);
		dkp_free(e);
	}
}

/* Parse "name[,name...]" into an entry; NULL with the reason in why
 * when a name is not in the KeyTable or the list is empty or too long. */
static struct sentry *sentry_parse(struct dkp_route *r, char *names,
				   char *why, size_t whysz)
{
	struct sentry *e = dkp_calloc(1, sizeof(*e));
	char *tok, *save = NULL;

	for (tok = strtok_r(names, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const struct dkp_keyent *k = dkp_htab_get(r->byname, tok, strlen(tok));

		if (k == NULL || e->n == DKP_ROUTE_MAX_KEYS) {
			if (k)
				snprintf(why, whysz, "too many keys (at most %d per line)",
					 DKP_ROUTE_MAX_KEYS);
			else
				snprintf(why, whysz, "'%.100s' is not in the KeyTable", tok);
			sentry_free(e);
			return NULL;
		}
		e->k = dkp_realloc(e->k, (e->n + 1) * sizeof(*e->k));
		e->k[e->n++] = k;
	}
	if (e->n == 0) {
		snprintf(why, whysz, "empty key list");
		sentry_free(e);
		return NULL;
	}
	return e;
}

void dkp_route_free(struct dkp_route *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nkeys; i++) {
		dkp_free(r->keys[i].name);
		dkp_free(r->keys[i].domain);
		dkp_free(r->keys[i].selector);
		dkp_free(r->keys[i].path);
	}
	for (i = 0; i < r->npats; i++) {
		dkp_free(r->pats[i].pat);
		sentry_free(r->pats[i].e);
	}
	dkp_free(r->keys);
	dkp_free(r->pats);
	dkp_htab_free(r->byname, NULL);
	dkp_htab_free(r->exact, sentry_free);
	dkp_free(r);
}

static int load_keytable(struct dkp_route *r, const char *path,
			 struct dkp_err *err)
{
	FILE *f = dkp_fopen_regular(path);
	char *line = NULL, *name, *spec;
	size_t cap = 0, lineno = 0, kcap = 0;
	int rc = DKP_OK;

	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "config", errno,
				   "cannot open KeyTable %s%s", path, dkp_open_note(errno));
	r->byname = dkp_htab_new(1024);
	while (getline(&line, &cap, f) >= 0) {
		char *c1, *c2;
		struct dkp_keyent *k;
		int n;

		lineno++;
		n = dkp_route_two_fields(line, &name, &spec);
		if (n == 0)
			continue;
		c1 = n > 0 ? strchr(spec, ':') : NULL;
		c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2 == NULL || c2[1] == '\0') {
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s:%zu: want KEYNAME DOMAIN:SELECTOR:KEYFILE",
					 path, lineno);
			break;
		}
		*c1 = *c2 = '\0';
		/* rendered as d= and s= (RFC 6376 grammar, sigfmt.h); '%'
		 * is the From domain, "%org" its organizational domain,
		 * both checked per message (conf/align.h) */
		if (!(strcmp(spec, "%") == 0 || strcasecmp(spec, "%org") == 0 ||
		      dkp_sigfmt_domain_ok(spec, strlen(spec))) ||
		    !dkp_sigfmt_selector_ok(c1 + 1, strlen(c1 + 1))) {
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s:%zu: invalid domain or selector", path,
					 lineno);
			break;
		}
		if (r->nkeys == kcap) {
			kcap = kcap ? kcap * 2 : 64;
			r->keys = dkp_realloc(r->keys, kcap * sizeof(*r->keys));
		}
		k = &r->keys[r->nkeys];
		k->name = dkp_strdup(name);
		lower(k->name);
		k->domain = dkp_strdup(spec);
		lower(k->domain);
		k->selector = dkp_strdup(c1 + 1);
		k->path = dkp_strdup(c2 + 1);
		k->index = r->nkeys++;
	}
	dkp_free(line);
	fclose(f);
	if (rc == DKP_OK) {
		size_t i;

		/* pointers are stable only now that the array is final */
		for (i = 0; i < r->nkeys; i++)
			if (dkp_htab_put(r->byname, r->keys[i].name,
					 strlen(r->keys[i].name), &r->keys[i]))
				return dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
						   "%s: key name '%s' defined twice",
						   path, r->keys[i].name);
	}
	return rc;
}

static int load_signing(struct dkp_route *r, const char *spec,
			struct dkp_err *err)
{
	int refile = strncmp(spec, "refile:", 7) == 0;
	const char *path = refile ? spec + 7 : spec;
	FILE *f = dkp_fopen_regular(path);
	char *line = NULL, *key, *kname;
	size_t cap = 0, lineno = 0, pcap = 0;
	int rc = DKP_OK;

	if (f == NULL)
		return dkp_err_sys(err, DKP_E_IO, 0, "config", errno,
				   "cannot open SigningTable %s%s", path, dkp_open_note(errno));
	if (!refile)
		r->exact = dkp_htab_new(r->nkeys);
	while (getline(&line, &cap, f) >= 0) {
		struct sentry *e;
		char why[160];
		int n;

		lineno++;
		n = dkp_route_two_fields(line, &key, &kname);
		if (n == 0)
			continue;
		if (n < 0) {
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s:%zu: want PATTERN KEYNAME[,KEYNAME...]",
					 path, lineno);
			break;
		}
		lower(key);
		lower(kname);
		if ((e = sentry_parse(r, kname, why, sizeof(why))) == NULL) {
			rc = dkp_err_set(err, DKP_E_SYNTAX, 0, "config",
					 "%s:%zu: %s", path, lineno, why);
			break;
		}
		if (refile) {
			if (r->npats == pcap) {
				pcap = pcap ? pcap * 2 : 64;
				r->pats = dkp_realloc(r->pats, pcap * sizeof(*r->pats));
			}
			r->pats[r->npats].pat = dkp_strdup(key);
			r->pats[r->npats++].e = e;
		} else if (dkp_htab_get(r->exact, key, strlen(key)) == NULL) {
			/* first entry wins, as in the file (and OpenDKIM) */
			dkp_htab_put(r->exact, key, strlen(key), e);
		} else {
			sentry_free(e);
		}
	}
	dkp_free(line);
	fclose(f);
	return rc;
}

int dkp_route_load(struct dkp_route **out, const char *keytable,
		   const char *signing, struct dkp_err *err)
{
	struct dkp_route *r = dkp_calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if ((rc = load_keytable(r, keytable, err)) != DKP_OK ||
	    (rc = load_signing(r, signing, err)) != DKP_OK) {
		dkp_route_free(r);
		return rc;
	}
	*out = r;
	return DKP_OK;
}

int dkp_route_glob(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p && tolower((unsigned char)*p) ==
					 tolower((unsigned char)*s)) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return 0;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* Collects the matching entries of one lookup in order. */
struct matches {
	const struct sentry *e[2 + 2 * 128];	/* first and last, or all */
	size_t n, cap;
	enum dkp_multi m;
};

/* Record a match; 1 when the lookup can stop. */
static int match(struct matches *mt, const struct sentry *e)
{
	if (mt->m == DKP_MULTI_NO) {
		mt->e[mt->n++] = e;
		return 1;
	}
	if (mt->m == DKP_MULTI_OPENDKIM && mt->n == 2)
		mt->e[1] = e;	/* OpenDKIM 2.11 keeps the first and the last */
	else if (mt->n < mt->cap)
		mt->e[mt->n++] = e;
	return 0;
}

static void find_entries(const struct dkp_route *r, const char *local,
			 const char *domain, struct matches *mt)
{
	char addr[512];
	const struct sentry *e;
	const char *d;
	size_t i;

	if (snprintf(addr, sizeof(addr), "%s@%s", local, domain) >=
	    (int)sizeof(addr))
		return;
	lower(addr);
	if (r->pats) {
		for (i = 0; i < r->npats; i++)
			if (dkp_route_glob(r->pats[i].pat, addr) &&
			    match(mt, r->pats[i].e))
				return;
		return;
	}
	if (r->exact == NULL)	/* an empty table (found by fuzzing) */
		return;
	/* OpenDKIM 2.11's order: address, domain, parents nearest first
	 * (".parent"), "local@*", "*" */
	if (*local && (e = dkp_htab_get(r->exact, addr, strlen(addr))) &&
	    match(mt, e))
		return;
	if ((e = dkp_htab_get(r->exact, domain, strlen(domain))) && match(mt, e))
		return;
	for (d = strchr(domain, '.'); d; d = strchr(d + 1, '.'))
		if ((e = dkp_htab_get(r->exact, d, strlen(d))) && match(mt, e))
			return;
	if (*local) {
		size_t n = strlen(local);

		snprintf(addr + n, sizeof(addr) - n, "@*");
		if ((e = dkp_htab_get(r->exact, addr, n + 2)) && match(mt, e))
			return;
	}
	if ((e = dkp_htab_get(r->exact, "*", 1)))
		match(mt, e);
}

size_t dkp_route_lookup_all(const struct dkp_route *r, const char *local,
			    const char *domain, enum dkp_multi m,
			    const struct dkp_keyent **out, size_t max)
{
	struct matches mt;
	size_t i, j, l, n = 0;

	mt.n = 0;
	mt.m = m;
	mt.cap = sizeof(mt.e) / sizeof(mt.e[0]);
	find_entries(r, local, domain, &mt);
	for (i = 0; i < mt.n; i++)
		for (j = 0; j < mt.e[i]->n && n < max; j++) {
			/* each key once (OpenDKIM would sign twice alike) */
			for (l = 0; l < n && out[l] != mt.e[i]->k[j]; l++)
				;
			if (l == n)
				out[n++] = mt.e[i]->k[j];
		}
	return n;
}

const struct dkp_keyent *dkp_route_lookup(const struct dkp_route *r,
					  const char *local,
					  const char *domain)
{
	const struct dkp_keyent *k;

	return dkp_route_lookup_all(r, local, domain, DKP_MULTI_NO, &k, 1) ? k : NULL;
}

int dkp_route_is_patterns(const struct dkp_route *r)
{
	return r->pats != NULL;
}

size_t dkp_route_nkeys(const struct dkp_route *r)
{
	return r->nkeys;
}

const struct dkp_keyent *dkp_route_key(const struct dkp_route *r, size_t i)
{
	return i < r->nkeys ? &r->keys[i] : NULL;
}
