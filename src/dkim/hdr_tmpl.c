/* hdr_tmpl.c — per-signer cache of DKIM-Signature templates; see
 * hdr_tmpl.h. */
#include "dkim/hdr_tmpl.h"

#include <string.h>

#include "dkim/canon.h"
#include "base/htab.h"
#include "base/mem.h"
#include "dkim/sigfmt.h"

struct dkp_tmpl_cache {
	struct dkp_htab *t;
	size_t max, builds;
};

static void tmpl_free(void *p)
{
	struct dkp_tmpl *t = p;

	dkp_buf_free(&t->raw);
	dkp_buf_free(&t->canon);
	dkp_free(t);
}

struct dkp_tmpl_cache *dkp_tmpl_cache_new(size_t max)
{
	struct dkp_tmpl_cache *c = dkp_calloc(1, sizeof(*c));

	c->max = max ? max : 1;
	c->t = dkp_htab_new(16);
	return c;
}

void dkp_tmpl_cache_free(struct dkp_tmpl_cache *c)
{
	if (c == NULL)
		return;
	dkp_htab_free(c->t, tmpl_free);
	dkp_free(c);
}

/* The cache key: alg, c= (one byte each), then "domain:selector", cut
 * at cap (a domain and a selector that long are refused before this).
 * Built with memcpy: this runs for every signature. */
static size_t tmpl_key(char *key, size_t cap, enum dkp_alg alg,
		       enum dkp_canon hc, enum dkp_canon bc, const char *domain,
		       const char *selector)
{
	size_t dl = strlen(domain), sl = strlen(selector), n = 3;

	key[0] = (char)('0' + (int)alg);
	key[1] = (char)('0' + (int)hc);
	key[2] = (char)('0' + (int)bc);
	if (dl > cap - n)
		dl = cap - n;
	memcpy(key + n, domain, dl);
	n += dl;
	if (n < cap)
		key[n++] = ':';
	if (sl > cap - n)
		sl = cap - n;
	memcpy(key + n, selector, sl);
	return n + sl;
}

const struct dkp_tmpl *dkp_tmpl_get(struct dkp_tmpl_cache *c, enum dkp_alg alg,
				    enum dkp_canon hc, enum dkp_canon bc,
				    const char *domain, const char *selector)
{
	char key[512];
	size_t n = tmpl_key(key, sizeof(key), alg, hc, bc, domain, selector);
	struct dkp_tmpl *t;
	struct dkp_sigfmt f;

	t = dkp_htab_get(c->t, key, n);
	if (t)
		return t;
	if (dkp_htab_count(c->t) >= c->max) {
		dkp_htab_free(c->t, tmpl_free);
		c->t = dkp_htab_new(16);
	}
	t = dkp_calloc(1, sizeof(*t));
	memset(&f, 0, sizeof(f));
	f.alg = alg;
	f.hcanon = hc;
	f.bcanon = bc;
	f.domain = domain;
	f.selector = selector;
	t->col = dkp_sigfmt_keypart(&f, &t->raw);
	dkp_canon_header_tail(hc, t->raw.p, t->raw.len, &t->canon);
	dkp_htab_put(c->t, key, n, t);
	c->builds++;
	return t;
}

size_t dkp_tmpl_builds(const struct dkp_tmpl_cache *c)
{
	return c->builds;
}
