/*
 * hdr_tmpl.h — pre-rendered DKIM-Signature templates: for each (algorithm,
 * canonicalization, domain, selector) the key's own part of the field
 * (a fold, then "a=...; d=...; s=...;", see sigfmt.h) as written and in
 * canonical form, so a signature renders and canonicalizes only what
 * follows it (i=, b=); the part before it (v c t x h bh) is rendered
 * once per message. One cache per signer (per worker thread): no locks.
 * Bounded: past `max` entries the cache starts over.
 *
 * Per-key settings (key_policy): a template is keyed on everything its
 * form depends on (a=, both halves of c=, d=, s=), so two keys of one
 * d=/s= with different canonicalizations get two templates; h=, x= and
 * i= are rendered per message or signature, never cached.
 */
#ifndef DKP_HDR_TMPL_H
#define DKP_HDR_TMPL_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

struct dkp_tmpl {
	struct dkp_buf raw;	/* the key's part as it appears in the field */
	size_t col;		/* column after it (for folding the rest) */
	struct dkp_buf canon;	/* its canonical form (header canon), as it
				 * follows the shared part */
};

struct dkp_tmpl_cache;

struct dkp_tmpl_cache *dkp_tmpl_cache_new(size_t max);
void dkp_tmpl_cache_free(struct dkp_tmpl_cache *c);
/* The template; valid until the next call on this cache. */
const struct dkp_tmpl *dkp_tmpl_get(struct dkp_tmpl_cache *c, enum dkp_alg alg,
				    enum dkp_canon hc, enum dkp_canon bc,
				    const char *domain, const char *selector);
/* Templates built so far (for tests). */
size_t dkp_tmpl_builds(const struct dkp_tmpl_cache *c);

#endif
