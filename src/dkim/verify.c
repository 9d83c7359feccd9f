/*
 * verify.c — verify every DKIM-Signature of a message (RFC 6376 6,
 * RFC 8301, RFC 8463).
 *
 * Results follow RFC 8601 words: pass; fail (the cryptography or the body
 * hash says no); permerror (the signature or key record is unusable:
 * syntax, unknown algorithm, rsa-sha1, revoked or short key, expired);
 * temperror (the key lookup failed temporarily).
 */
#include "dkim/verify.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "dkim/canon.h"
#include "base/err.h"
#include "dkim/keyrec.h"
#include "base/mem.h"
#include "dkim/msg_parse.h"
#include "dkim/sigfmt.h"
#include "dkim/sign.h"

const char *dkp_vres_name(enum dkp_vres r)
{
	switch (r) {
	case DKP_V_PASS: return "pass";
	case DKP_V_FAIL: return "fail";
	case DKP_V_TEMPERROR: return "temperror";
	case DKP_V_PERMERROR: return "permerror";
	}
	return "permerror";
}

/* One body hash already computed: both algorithms we accept hash with
 * SHA-256, so (canonicalization, l=) is the whole key. */
struct bodyhash {
	enum dkp_canon bc;
	uint64_t l;		/* UINT64_MAX: no l= */
	uint64_t total;		/* canonical body length, before l= */
	unsigned char dig[32];
};

/* Per-call scratch, freed at the end of dkp_verify. */
struct vctx {
	const struct dkp_msg *m;
	dkp_keyfetch_fn fetch;
	void *fctx;
	int64_t now;
	EVP_MD_CTX *md;
	const EVP_MD *sha256;
	struct dkp_buf tmp, hdr, rec, dec;
	unsigned char *used;
	struct dkp_hsink sink;
	/* at most one per signature checked, so never full */
	struct bodyhash bh[DKP_VERIFY_MAX_SIGS];
	size_t nbh;
};

static enum dkp_vres set(struct dkp_vresult *r, enum dkp_vres v,
			 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum dkp_vres set(struct dkp_vresult *r, enum dkp_vres v,
			 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
	r->res = v;
	return v;
}

static int tag_is(const char *base, const struct dkp_tag *t, const char *s)
{
	return t && t->vlen == strlen(s) &&
	       strncasecmp(base + t->voff, s, t->vlen) == 0;
}

/* Copy a tag value without FWS into out (NUL-terminated, truncated). */
static void tag_copy(const char *base, const struct dkp_tag *t, char *out,
		     size_t outsz)
{
	size_t i, o = 0;

	for (i = 0; t && i < t->vlen && o + 1 < outsz; i++) {
		char c = base[t->voff + i];

		if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
			out[o++] = c;
	}
	out[o] = '\0';
}

static int parse_u64(const char *base, const struct dkp_tag *t, uint64_t *v)
{
	char tmp[24], *end;

	if (t->vlen == 0 || t->vlen >= sizeof(tmp))
		return -1;
	memcpy(tmp, base + t->voff, t->vlen);
	tmp[t->vlen] = '\0';
	if (!isdigit((unsigned char)tmp[0]))
		return -1;
	*v = strtoull(tmp, &end, 10);
	return *end ? -1 : 0;
}

/*
 * Next item of a colon-separated list with FWS around items: from *pos,
 * sets [*b, *e) and moves *pos past the colon. Returns 0 at the end.
 */
static int next_item(const char *s, size_t n, size_t *pos, size_t *b,
		     size_t *e)
{
	size_t i = *pos;

	if (i > n)
		return 0;
	*b = i;
	while (i < n && s[i] != ':')
		i++;
	*e = i;
	*pos = i + 1;
	while (*b < *e && strchr(" \t\r\n", s[*b]))
		(*b)++;
	while (*e > *b && strchr(" \t\r\n", s[*e - 1]))
		(*e)--;
	return 1;
}

/* Does list (colon-separated, FWS allowed) contain word? */
static int list_has(const char *s, size_t n, const char *word)
{
	size_t pos = 0, b, e, wl = strlen(word);

	while (next_item(s, n, &pos, &b, &e))
		if (e - b == wl && strncasecmp(s + b, word, wl) == 0)
			return 1;
	return 0;
}

/* Look up and decode the key for d=/s=. */
static enum dkp_vres get_key(struct vctx *v, struct dkp_vresult *r,
			     enum dkp_alg alg, EVP_PKEY **pk)
{
	char qname[512];
	struct dkp_err e;
	struct dkp_taglist tl;
	const struct dkp_tag *tv, *tk, *tp, *th, *ts;
	const char *rec;
	const unsigned char *der;
	int bits;

	*pk = NULL;
	if ((size_t)snprintf(qname, sizeof(qname), "%s._domainkey.%s", r->selector,
			     r->domain) >= sizeof(qname))
		return set(r, DKP_V_PERMERROR, "key name too long");
	dkp_err_clear(&e);
	switch (v->fetch(v->fctx, qname, &v->rec, &e)) {
	case DKP_OK:
		break;
	case DKP_E_NOKEY:
		return set(r, DKP_V_PERMERROR, "no key record at %s", qname);
	default:
		return set(r, DKP_V_TEMPERROR, "key lookup: %s", e.msg);
	}
	rec = v->rec.p ? v->rec.p : "";
	if (dkp_taglist_parse(rec, v->rec.len, &tl, &e) != DKP_OK)
		return set(r, DKP_V_PERMERROR, "key record: %s", e.msg);
	tv = dkp_taglist_get(&tl, "v");
	tk = dkp_taglist_get(&tl, "k");
	tp = dkp_taglist_get(&tl, "p");
	th = dkp_taglist_get(&tl, "h");
	ts = dkp_taglist_get(&tl, "s");
	if (tv && (!tag_is(rec, tv, "DKIM1") || tv != &tl.tags[0]))
		return set(r, DKP_V_PERMERROR, "key record: bad v=");
	if (tp == NULL)
		return set(r, DKP_V_PERMERROR, "key record: no p=");
	if (tp->vlen == 0)
		return set(r, DKP_V_PERMERROR, "key revoked (empty p=)");
	if (th && !list_has(rec + th->voff, th->vlen, "sha256"))
		return set(r, DKP_V_PERMERROR, "key record does not allow sha256");
	if (ts && !list_has(rec + ts->voff, ts->vlen, "*") &&
	    !list_has(rec + ts->voff, ts->vlen, "email"))
		return set(r, DKP_V_PERMERROR, "key record is not for email");
	if (alg == DKP_ALG_RSA_SHA256 ? !(tk == NULL || tag_is(rec, tk, "rsa"))
				      : !tag_is(rec, tk, "ed25519"))
		return set(r, DKP_V_PERMERROR, "key type k= does not match a=");
	if (dkp_b64_decode(rec + tp->voff, tp->vlen, &v->dec) < 0)
		return set(r, DKP_V_PERMERROR, "key record: bad base64 in p=");
	der = (const unsigned char *)v->dec.p;
	if (alg == DKP_ALG_ED25519_SHA256) {
		if (v->dec.len != 32)
			return set(r, DKP_V_PERMERROR,
				   "Ed25519 key must be 32 bytes, not %zu",
				   v->dec.len);
		*pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der,
						  32);
	} else {
		*pk = d2i_PUBKEY(NULL, &der, (long)v->dec.len);
		if (*pk == NULL) {	/* some publish a bare RSAPublicKey */
			der = (const unsigned char *)v->dec.p;
			*pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &der,
					    (long)v->dec.len);
		}
		if (*pk != NULL && !EVP_PKEY_is_a(*pk, "RSA")) {
			EVP_PKEY_free(*pk);
			*pk = NULL;
		}
	}
	ERR_clear_error();
	if (*pk == NULL)
		return set(r, DKP_V_PERMERROR, "key record: unusable p=");
	bits = EVP_PKEY_get_bits(*pk);
	if (alg == DKP_ALG_RSA_SHA256 && bits < DKP_RSA_MIN_BITS) {
		EVP_PKEY_free(*pk);
		*pk = NULL;
		return set(r, DKP_V_PERMERROR,
			   "RSA key of %d bits (RFC 8301: at least 1024)", bits);
	}
	return DKP_V_PASS;
}

static int crypto_verify(EVP_PKEY *pk, enum dkp_alg alg,
			 const unsigned char *dig, const unsigned char *sig,
			 size_t siglen)
{
	int ok = 0;

	if (alg == DKP_ALG_RSA_SHA256) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);

		ok = c && EVP_PKEY_verify_init(c) > 0 &&
		     EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
		     EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0 &&
		     EVP_PKEY_verify(c, sig, siglen, dig, 32) == 1;
		EVP_PKEY_CTX_free(c);
	} else {
		EVP_MD_CTX *c = EVP_MD_CTX_new();

		ok = c && EVP_DigestVerifyInit_ex(c, NULL, NULL, NULL, NULL,
						  pk, NULL) > 0 &&
		     EVP_DigestVerify(c, sig, siglen, dig, 32) == 1;
		EVP_MD_CTX_free(c);
	}
	ERR_clear_error();
	return ok;
}

/*
 * Can s/n be looked up at all: dot-separated labels of letters, digits,
 * '-' and '_', 1..63 each, 253 in all? (What we sign follows the stricter
 * RFC 6376 grammar, sigfmt.h; a verifier accepts the names DNS serves.)
 */
static int dns_name_ok(const char *s, size_t n)
{
	size_t i, label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (!(isalnum(c) || c == '-' || c == '_') || c >= 0x80 ||
			   ++label > 63) {
			return 0;
		}
	}
	return label > 0;
}

/* The body hash for (bc, l), computed on first use. */
static const struct bodyhash *body_hash(struct vctx *v, enum dkp_canon bc,
					uint64_t l)
{
	const struct dkp_msg *m = v->m;
	struct bodyhash *b;
	unsigned int dlen;
	size_t i;

	for (i = 0; i < v->nbh; i++)
		if (v->bh[i].bc == bc && v->bh[i].l == l)
			return &v->bh[i];
	if (v->nbh == DKP_VERIFY_MAX_SIGS)
		return NULL;	/* cannot happen: one per signature checked */
	b = &v->bh[v->nbh];
	if (!EVP_DigestInit_ex2(v->md, v->sha256, NULL))
		return NULL;
	dkp_hsink_init(&v->sink, v->md, l);
	if (dkp_canon_body(bc, m->data + m->body_off, m->len - m->body_off,
			   &v->sink) < 0 ||
	    !EVP_DigestFinal_ex(v->md, b->dig, &dlen))
		return NULL;
	b->bc = bc;
	b->l = l;
	b->total = v->sink.total;
	v->nbh++;
	return b;
}

/* Split the h= value into names; returns count or -1 if too many. */
static int split_h(const char *s, size_t n, const char **names, size_t *lens,
		   size_t max)
{
	size_t pos = 0, b, e, c = 0;

	while (next_item(s, n, &pos, &b, &e)) {
		if (c == max)
			return -1;
		names[c] = s + b;
		lens[c++] = e - b;
	}
	return (int)c;
}

#define MAX_H 256

/* One DKIM-Signature's tags, as verify_one reads them. */
struct sig {
	const char *val;	/* the field's value */
	struct dkp_taglist tl;
	const struct dkp_tag *b, *bh, *d, *h, *i, *l, *s, *x, *t;
	enum dkp_alg alg;
	enum dkp_canon hc, bc;
	const char *names[MAX_H];	/* h= */
	size_t lens[MAX_H];
	int nh;
	uint64_t lval;		/* l=, UINT64_MAX: none */
};

/* The algorithm and c= of g; returns DKP_V_PASS or the error set in r. */
static enum dkp_vres read_alg_canon(struct sig *g, const struct dkp_tag *t_a,
				    const struct dkp_tag *t_c, struct dkp_vresult *r)
{
	char canon[32];

	if (tag_is(g->val, t_a, "rsa-sha256"))
		g->alg = DKP_ALG_RSA_SHA256;
	else if (tag_is(g->val, t_a, "ed25519-sha256"))
		g->alg = DKP_ALG_ED25519_SHA256;
	else if (tag_is(g->val, t_a, "rsa-sha1"))
		return set(r, DKP_V_PERMERROR, "rsa-sha1 is not accepted (RFC 8301)");
	else
		return set(r, DKP_V_PERMERROR, "unknown algorithm");
	g->hc = g->bc = DKP_CANON_SIMPLE;
	if (t_c) {
		tag_copy(g->val, t_c, canon, sizeof(canon));
		if (dkp_canon_parse(canon, &g->hc, &g->bc) != DKP_OK)
			return set(r, DKP_V_PERMERROR, "unknown c=");
	}
	return DKP_V_PASS;
}

/* l=, t=, x= (against now) and q=. */
static enum dkp_vres read_limits(struct sig *g, const struct dkp_tag *t_q,
				 int64_t now, struct dkp_vresult *r)
{
	uint64_t x = 0, t = 0;

	g->lval = UINT64_MAX;
	if (t_q && !list_has(g->val + t_q->voff, t_q->vlen, "dns/txt"))
		return set(r, DKP_V_PERMERROR, "unsupported q=");
	if (g->l && parse_u64(g->val, g->l, &g->lval) < 0)
		return set(r, DKP_V_PERMERROR, "bad l=");
	if (g->t && parse_u64(g->val, g->t, &t) < 0)
		return set(r, DKP_V_PERMERROR, "bad t=");
	if (g->x) {
		if (parse_u64(g->val, g->x, &x) < 0 || (g->t && x < t))
			return set(r, DKP_V_PERMERROR, "bad x=");
		if ((int64_t)x < now)
			return set(r, DKP_V_PERMERROR, "signature expired");
	}
	return DKP_V_PASS;
}

/* RFC 6376 3.5: the i= domain is d= or a subdomain of it. */
static enum dkp_vres check_identity(const struct sig *g, struct dkp_vresult *r)
{
	const char *iv = g->val + g->i->voff, *at;
	size_t dl = strlen(r->domain), il;

	/* the last @: a quoted local part may hold one too */
	at = memrchr(iv, '@', g->i->vlen);
	if (at == NULL)
		return set(r, DKP_V_PERMERROR, "bad i=");
	il = g->i->vlen - (size_t)(at + 1 - iv);
	if (!(il == dl && strncasecmp(at + 1, r->domain, dl) == 0) &&
	    !(il > dl && at[il - dl] == '.' &&
	      strncasecmp(at + 1 + il - dl, r->domain, dl) == 0))
		return set(r, DKP_V_PERMERROR, "i= is not within d=");
	return DKP_V_PASS;
}

/* h=: no empty name, From among them. */
static enum dkp_vres read_h(struct sig *g, struct dkp_vresult *r)
{
	int i, has_from = 0;

	g->nh = split_h(g->val + g->h->voff, g->h->vlen, g->names, g->lens, MAX_H);
	if (g->nh < 0)
		return set(r, DKP_V_PERMERROR, "too many names in h=");
	for (i = 0; i < g->nh; i++) {
		if (g->lens[i] == 0)
			return set(r, DKP_V_PERMERROR, "empty name in h=");
		if (g->lens[i] == 4 && strncasecmp(g->names[i], "from", 4) == 0)
			has_from = 1;
	}
	return has_from ? DKP_V_PASS : set(r, DKP_V_PERMERROR, "h= does not include From");
}

/* The tags of field value val[0..vlen) into g, checked (RFC 6376 6.1.1);
 * r gets d=, s= and a= for the report. */
static enum dkp_vres read_sig(struct vctx *v, const char *val, size_t vlen,
			      struct sig *g, struct dkp_vresult *r)
{
	const struct dkp_tag *t_v, *t_a, *t_c, *t_q;
	struct dkp_err e;
	enum dkp_vres res;

	g->val = val;
	dkp_err_clear(&e);
	if (dkp_taglist_parse(val, vlen, &g->tl, &e) != DKP_OK)
		return set(r, DKP_V_PERMERROR, "%s", e.msg);
	t_v = dkp_taglist_get(&g->tl, "v");
	t_a = dkp_taglist_get(&g->tl, "a");
	t_c = dkp_taglist_get(&g->tl, "c");
	t_q = dkp_taglist_get(&g->tl, "q");
	g->b = dkp_taglist_get(&g->tl, "b");
	g->bh = dkp_taglist_get(&g->tl, "bh");
	g->d = dkp_taglist_get(&g->tl, "d");
	g->h = dkp_taglist_get(&g->tl, "h");
	g->i = dkp_taglist_get(&g->tl, "i");
	g->l = dkp_taglist_get(&g->tl, "l");
	g->s = dkp_taglist_get(&g->tl, "s");
	g->x = dkp_taglist_get(&g->tl, "x");
	g->t = dkp_taglist_get(&g->tl, "t");
	tag_copy(val, g->d, r->domain, sizeof(r->domain));
	tag_copy(val, g->s, r->selector, sizeof(r->selector));
	tag_copy(val, t_a, r->alg, sizeof(r->alg));
	if (!t_v || !t_a || !g->b || !g->bh || !g->d || !g->h || !g->s)
		return set(r, DKP_V_PERMERROR, "a required tag is missing");
	/* before anything is looked up (or printed) by those names */
	if (!dns_name_ok(val + g->d->voff, g->d->vlen))
		return set(r, DKP_V_PERMERROR, "d= is not a domain name");
	if (!dns_name_ok(val + g->s->voff, g->s->vlen))
		return set(r, DKP_V_PERMERROR, "s= is not a selector");
	/* the name looked up must be a DNS name too (found by fuzzing: a
	 * long s= was looked up under a truncated name) */
	if (g->s->vlen + sizeof("._domainkey.") - 1 + g->d->vlen > 253)
		return set(r, DKP_V_PERMERROR, "s=._domainkey.d= is longer than 253 bytes");
	if (!tag_is(val, t_v, "1"))
		return set(r, DKP_V_PERMERROR, "unsupported version v=");
	if ((res = read_alg_canon(g, t_a, t_c, r)) != DKP_V_PASS ||
	    (res = read_limits(g, t_q, v->now, r)) != DKP_V_PASS ||
	    (g->i && (res = check_identity(g, r)) != DKP_V_PASS))
		return res;
	return read_h(g, r);
}

/* bh= against the body hash of g's c= and l=. */
static enum dkp_vres check_body(struct vctx *v, const struct sig *g,
				struct dkp_vresult *r)
{
	const struct bodyhash *bhash;

	if (dkp_b64_decode(g->val + g->bh->voff, g->bh->vlen, &v->dec) < 0 ||
	    v->dec.len != 32)
		return set(r, DKP_V_PERMERROR, "bad bh=");
	if ((bhash = body_hash(v, g->bc, g->lval)) == NULL)
		return set(r, DKP_V_TEMPERROR, "digest failed");
	if (g->l && g->lval > bhash->total)
		return set(r, DKP_V_FAIL, "l= is longer than the body");
	if (memcmp(bhash->dig, v->dec.p, 32) != 0)
		return set(r, DKP_V_FAIL, "body hash mismatch");
	return DKP_V_PASS;
}

/* The header hash of field fi (signed by g) into dig. */
static int header_digest(struct vctx *v, size_t fi, const struct sig *g,
			 unsigned char *dig)
{
	const struct dkp_msg *m = v->m;
	const struct dkp_field *f = &m->fields[fi];
	unsigned int dlen;
	size_t bstart;

	dkp_buf_reset(&v->hdr);
	dkp_sign_hash_fields(m, g->hc, (const char *const *)g->names, g->lens,
			     (size_t)g->nh, v->used, &v->hdr);
	/* this field with the b= value removed, "including all surrounding
	 * whitespace" (RFC 6376 3.7): everything between '=' and ';' */
	bstart = f->colon + 1 + g->b->roff;
	dkp_buf_reset(&v->tmp);
	dkp_buf_add(&v->tmp, m->data + f->off, bstart);
	dkp_buf_add(&v->tmp, m->data + f->off + bstart + g->b->rlen,
		    f->len - bstart - g->b->rlen);
	dkp_canon_header(g->hc, v->tmp.p, v->tmp.len, f->name_len, 0, &v->hdr);
	return EVP_DigestInit_ex2(v->md, v->sha256, NULL) &&
	       EVP_DigestUpdate(v->md, v->hdr.p, v->hdr.len) &&
	       EVP_DigestFinal_ex(v->md, dig, &dlen) ? 0 : -1;
}

static enum dkp_vres verify_one(struct vctx *v, size_t fi,
				struct dkp_vresult *r)
{
	const struct dkp_msg *m = v->m;
	const struct dkp_field *f = &m->fields[fi];
	struct sig g;
	unsigned char dig[32];
	EVP_PKEY *pk;
	enum dkp_vres res;

	if ((res = read_sig(v, m->data + f->off + f->colon + 1, f->len - f->colon - 1,
			    &g, r)) != DKP_V_PASS ||
	    (res = check_body(v, &g, r)) != DKP_V_PASS)
		return res;
	/* the key, then the header hash */
	if ((res = get_key(v, r, g.alg, &pk)) != DKP_V_PASS)
		return res;
	if (header_digest(v, fi, &g, dig) < 0) {
		EVP_PKEY_free(pk);
		return set(r, DKP_V_TEMPERROR, "digest failed");
	}
	if (dkp_b64_decode(g.val + g.b->voff, g.b->vlen, &v->dec) < 0 || v->dec.len == 0) {
		EVP_PKEY_free(pk);
		return set(r, DKP_V_PERMERROR, "bad b=");
	}
	res = crypto_verify(pk, g.alg, dig, (unsigned char *)v->dec.p, v->dec.len)
		      ? set(r, DKP_V_PASS, "%s", "")
		      : set(r, DKP_V_FAIL, "signature did not verify");
	EVP_PKEY_free(pk);
	return res;
}

/*
 * A signature past DKP_VERIFY_MAX_SIGS: named, never hashed. (RFC 6376
 * 6.1 lets a verifier limit the signatures it checks; a message can carry
 * a thousand copies of one over a large body.)
 */
static void not_checked(struct vctx *v, size_t fi, struct dkp_vresult *r)
{
	const struct dkp_field *f = &v->m->fields[fi];
	const char *val = v->m->data + f->off + f->colon + 1;
	struct dkp_taglist tl;
	struct dkp_err e;

	if (dkp_taglist_parse(val, f->len - f->colon - 1, &tl, &e) == DKP_OK) {
		tag_copy(val, dkp_taglist_get(&tl, "d"), r->domain,
			 sizeof(r->domain));
		tag_copy(val, dkp_taglist_get(&tl, "s"), r->selector,
			 sizeof(r->selector));
		tag_copy(val, dkp_taglist_get(&tl, "a"), r->alg, sizeof(r->alg));
	}
	set(r, DKP_V_PERMERROR, "not checked: only the first %d signatures are",
	    DKP_VERIFY_MAX_SIGS);
}

/* Escape, in place, what came from the message or a key record. */
static void printable1(char *s, size_t sz)
{
	char tmp[sizeof(((struct dkp_vresult *)0)->domain) * 4];

	dkp_sigfmt_escape(s, strlen(s), tmp, sz < sizeof(tmp) ? sz : sizeof(tmp));
	memcpy(s, tmp, strlen(tmp) + 1);
}

static void printable(struct dkp_vresult *r)
{
	printable1(r->domain, sizeof(r->domain));
	printable1(r->selector, sizeof(r->selector));
	printable1(r->alg, sizeof(r->alg));
	printable1(r->reason, sizeof(r->reason));
}

int dkp_verify(const struct dkp_msg *m, dkp_keyfetch_fn fetch, void *fctx,
	       int64_t now, struct dkp_vresult *res, size_t maxres,
	       size_t *nres, struct dkp_err *err)
{
	struct vctx v;
	size_t i, n = 0;

	memset(&v, 0, sizeof(v));
	v.m = m;
	v.fetch = fetch;
	v.fctx = fctx;
	v.now = now ? now : (int64_t)time(NULL);
	v.md = EVP_MD_CTX_new();
	v.sha256 = EVP_sha256();
	if (v.md == NULL)
		return dkp_err_ssl(err, DKP_E_CRYPTO, "verify", "no digest");
	v.used = dkp_malloc(m->nfields);
	for (i = 0; i < m->nfields; i++) {
		struct dkp_vresult *r;

		if (!dkp_msg_field_is(m, i, "DKIM-Signature", 14))
			continue;
		n++;
		if (n > maxres)
			continue;	/* nothing to report it in */
		r = &res[n - 1];
		memset(r, 0, sizeof(*r));
		if (n <= DKP_VERIFY_MAX_SIGS)
			verify_one(&v, i, r);
		else
			not_checked(&v, i, r);
		printable(r);
	}
	*nres = n;
	dkp_buf_free(&v.tmp);
	dkp_buf_free(&v.hdr);
	dkp_buf_free(&v.rec);
	dkp_buf_free(&v.dec);
	dkp_free(v.used);
	EVP_MD_CTX_free(v.md);
	return DKP_OK;
}
