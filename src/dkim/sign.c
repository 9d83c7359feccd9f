/*
 * sign.c — one or more DKIM signatures for one message (RFC 6376 5,
 * RFC 8463).
 *
 * Per message the work is: hash the body once per body canonicalization
 * in use; for each signature, canonicalize the chosen header fields and
 * the signature's own field (b= empty), hash that with SHA-256, and sign
 * the 32-byte digest. RSA signs the digest with PKCS#1 v1.5 (rsa-sha256);
 * Ed25519 is PureEdDSA over the digest (RFC 8463 3). Per-thread state
 * (digest contexts, a small cache of per-key signing contexts, scratch
 * buffers) lives in struct dkp_signer, so nothing is fetched per message.
 */
#include "dkim/sign.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "crypto/rsa8.h"
#include "dkim/canon.h"
#include "base/err.h"
#include "dkim/hdr_tmpl.h"
#include "dkim/keystore.h"
#include "base/log.h"
#include "base/mem.h"
#include "dkim/msg_parse.h"
#include "dkim/sigfmt.h"

/* RFC 6376 5.4.1's list, then the fields ESP mail depends on. */
const char *const dkp_sign_default_headers[] = {
	"From", "Reply-To", "Subject", "Date", "To", "Cc",
	"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc",
	"In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe",
	"List-Post", "List-Owner", "List-Archive",
	"Message-ID", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe-Post", "Feedback-ID",
};
const size_t dkp_sign_n_default_headers =
	sizeof(dkp_sign_default_headers) / sizeof(dkp_sign_default_headers[0]);

/* Per-thread signing contexts, direct-mapped by key serial: preparing one
 * (EVP_PKEY_sign_init fetches the algorithm under OpenSSL's store lock)
 * costs more than hashing a message, so an ESP's few hundred active keys
 * each keep theirs. */
#define KEYCTX_SLOTS 512

struct keyctx {
	uint64_t serial;	/* 0: empty */
	struct dkp_key *key;	/* a reference, dropped when it is retired */
	EVP_PKEY_CTX *rsa;	/* RSA: initialised for PKCS#1 + SHA-256 */
	EVP_MD_CTX *ed;		/* Ed25519: initialised template */
	EVP_PKEY_CTX *rsa_v;	/* the check: RSA verification, on first use */
	EVP_MD_CTX *ed_v;	/* the check: Ed25519 verification template */
};

/* A signature waiting for dkp_sign_flush (batch mode): an RSA-2048 one
 * for the 8-lane path, or an Ed25519 one, made there with the others. */
struct pend {
	struct dkp_key *key;	/* a reference, dropped after the flush */
	unsigned char dig[32];
	unsigned char sig[256];
	size_t siglen;		/* 256 (RSA-2048) or 64 (Ed25519) */
	struct dkp_buf *buf;	/* where its b= placeholder is */
	size_t off;		/* the placeholder's first byte in buf */
	size_t tag;
};

/* The signatures batch mode defers, by their length in bytes: RSA-2048
 * (256; base64 344 characters, the last two "=="), Ed25519 (64; 88). */
#define RSA2048_LEN 256
#define ED25519_LEN 64
#define B64_LEN(n) (4 * (((n) + 2) / 3))

static atomic_uint_fast64_t n_checked, n_bad, n_lanes, n_groups, n_recomputed;

struct dkp_signer {
	EVP_MD *sha256;
	EVP_MD_CTX *md, *work;
	EVP_MD_CTX *pre;	/* SHA-256 after the hdr_pre shared bytes */
	struct dkp_hsink sink;
	struct dkp_buf hdr, sig, b64;
	unsigned char *used;
	size_t used_cap;
	const char **names;
	size_t *lens;
	size_t names_cap;
	/* within one dkp_sign call: the h= list in names/lens, the
	 * canonical fields it selects and the signature field's shared
	 * part (sigfmt.h; raw in shared), the first hdr_pre bytes of hdr,
	 * are the same for every signature with the same c=, t=, x= and h=
	 * (signatures never cover each other, dkp_sigfmt_spec_ok) */
	size_t nn_pre, hdr_pre;
	struct dkp_buf shared;
	struct keyctx kc[KEYCTX_SLOTS];
	uint64_t retire_epoch;	/* dkp_key_retire_epoch() at the last sweep */
	struct dkp_tmpl_cache *tmpl;
	/* the check before release (dkp_signer_set_verify) */
	unsigned verify_every, verify_n;
	int verify_rsa_only;
#ifdef DKP_TEST_HOOKS
	/* the test hook DKP_TEST_CORRUPT_SIG=N (test builds only, see the
	 * Makefile): every Nth signature made by OpenSSL gets one bit
	 * flipped before its check */
	unsigned long corrupt_every;
#endif
	/* the RSA backend and batch mode (dkp_signer_set_batch): rsa8,
	 * the 8-lane path takes the batch's RSA-2048 signatures */
	enum dkp_rsa_backend backend;
	int batch, rsa8;
	size_t tag;
	struct pend *pend;
	size_t npend, pend_cap;
	struct dkp_rsa8_req *req;
	size_t req_cap;
};

#ifdef DKP_TEST_HOOKS
static atomic_ulong corrupt_count;
#endif

#define TMPL_MAX 4096

struct dkp_signer *dkp_signer_new(void)
{
	struct dkp_signer *s = dkp_calloc(1, sizeof(*s));

	s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	s->md = EVP_MD_CTX_new();
	s->work = EVP_MD_CTX_new();
	s->pre = EVP_MD_CTX_new();
	if (s->sha256 == NULL || s->md == NULL || s->work == NULL || s->pre == NULL)
		dkp_fatal("OpenSSL cannot provide SHA-256");
	dkp_buf_init(&s->hdr);
	dkp_buf_init(&s->sig);
	dkp_buf_init(&s->b64);
	dkp_buf_init(&s->shared);
	s->tmpl = dkp_tmpl_cache_new(TMPL_MAX);
	s->verify_every = 1;
	s->backend = DKP_RSA_OPENSSL;
#ifdef DKP_TEST_HOOKS
	{
		const char *h = getenv("DKP_TEST_CORRUPT_SIG");

		s->corrupt_every = h && *h ? strtoul(h, NULL, 10) : 0;
	}
#endif
	return s;
}

void dkp_signer_set_verify(struct dkp_signer *s, unsigned every, int rsa_only)
{
	s->verify_rsa_only = rsa_only;
	if (s->verify_every != every) {
		s->verify_every = every;
		s->verify_n = 0;
	}
}

int dkp_sign_ifma_available(void)
{
	return dkp_rsa8_cpu_ok();
}

int dkp_signer_set_backend(struct dkp_signer *s, enum dkp_rsa_backend b,
			   struct dkp_err *err)
{
	if (b == DKP_RSA_IFMA && !dkp_rsa8_cpu_ok())
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "rsa_backend = ifma: this CPU lacks AVX-512F and AVX-512 IFMA (use auto or openssl)");
	s->backend = b;
	return DKP_OK;
}

void dkp_signer_set_batch(struct dkp_signer *s, int on, size_t tag)
{
	s->batch = on;
	s->rsa8 = on && s->backend != DKP_RSA_OPENSSL && dkp_rsa8_cpu_ok();
	s->tag = tag;
}

/* The length of k's signature when batch mode defers it, else 0: the
 * RSA-2048 ones for the 8-lane path, and every Ed25519 one, so that the
 * batch's signatures are made together, each kind in a run with its
 * tables and contexts warm, not one at a time between the parsing and
 * hashing of messages. */
static size_t deferred_len(const struct dkp_signer *s, struct dkp_key *k)
{
	if (!s->batch)
		return 0;
	if (dkp_key_alg(k) == DKP_ALG_ED25519_SHA256)
		return ED25519_LEN;
	return s->rsa8 && dkp_key_rsa8(k) ? RSA2048_LEN : 0;
}

size_t dkp_sign_pending(const struct dkp_signer *s)
{
	return s->npend;
}

void dkp_sign_counts(struct dkp_sign_counts *out)
{
	out->checked = atomic_load(&n_checked);
	out->bad = atomic_load(&n_bad);
	out->lanes = atomic_load(&n_lanes);
	out->groups = atomic_load(&n_groups);
	out->recomputed = atomic_load(&n_recomputed);
}

static void keyctx_clear(struct keyctx *c)
{
	EVP_PKEY_CTX_free(c->rsa);
	EVP_MD_CTX_free(c->ed);
	EVP_PKEY_CTX_free(c->rsa_v);
	EVP_MD_CTX_free(c->ed_v);
	dkp_key_unref(c->key);	/* the last one frees and wipes it */
	memset(c, 0, sizeof(*c));
}

/* Let go of the contexts of keys retired since the last look (a reload,
 * a rotation, the cache's bound): otherwise a retired key would live on
 * in this thread's slots until another key took its slot. */
static void sweep_retired(struct dkp_signer *s)
{
	uint64_t ep = dkp_key_retire_epoch();
	unsigned i;

	if (ep == s->retire_epoch)
		return;
	s->retire_epoch = ep;
	for (i = 0; i < KEYCTX_SLOTS; i++)
		if (s->kc[i].key != NULL && dkp_key_retired(s->kc[i].key))
			keyctx_clear(&s->kc[i]);
}

/* Queue dig for the 8-lane path under the current tag. */
static struct pend *pend_push(struct dkp_signer *s, struct dkp_key *key,
			      const unsigned char *dig, size_t siglen)
{
	struct pend *p;

	if (s->npend == s->pend_cap) {
		s->pend_cap = s->pend_cap ? 2 * s->pend_cap : 64;
		s->pend = dkp_realloc(s->pend, s->pend_cap * sizeof(*p));
	}
	p = &s->pend[s->npend++];
	memset(p, 0, sizeof(*p));
	dkp_key_ref(key);
	p->key = key;
	memcpy(p->dig, dig, 32);
	p->siglen = siglen;
	p->tag = s->tag;
	return p;
}

static void pend_drop(struct dkp_signer *s, size_t from)
{
	while (s->npend > from)
		dkp_key_unref(s->pend[--s->npend].key);
}

void dkp_signer_free(struct dkp_signer *s)
{
	unsigned i;

	if (s == NULL)
		return;
	for (i = 0; i < KEYCTX_SLOTS; i++)
		keyctx_clear(&s->kc[i]);
	pend_drop(s, 0);
	dkp_free(s->pend);
	dkp_free(s->req);
	EVP_MD_free(s->sha256);
	EVP_MD_CTX_free(s->md);
	EVP_MD_CTX_free(s->work);
	EVP_MD_CTX_free(s->pre);
	dkp_buf_free(&s->hdr);
	dkp_buf_free(&s->sig);
	dkp_buf_free(&s->b64);
	dkp_buf_free(&s->shared);
	dkp_tmpl_cache_free(s->tmpl);
	dkp_free(s->used);
	dkp_free(s->names);
	dkp_free(s->lens);
	dkp_free(s);
}

/* The signing context for key k, prepared once per thread and key. */
static struct keyctx *get_keyctx(struct dkp_signer *s, struct dkp_key *k,
				 struct dkp_err *err)
{
	uint64_t serial = dkp_key_serial(k);
	struct keyctx *c;

	sweep_retired(s);
	c = &s->kc[serial % KEYCTX_SLOTS];
	if (c->serial == serial)
		return c;
	keyctx_clear(c);
	if (dkp_key_alg(k) == DKP_ALG_RSA_SHA256) {
		c->rsa = EVP_PKEY_CTX_new_from_pkey(NULL, dkp_key_pkey(k), NULL);
		if (c->rsa == NULL || EVP_PKEY_sign_init(c->rsa) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_padding(c->rsa, RSA_PKCS1_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_signature_md(c->rsa, s->sha256) <= 0) {
			keyctx_clear(c);
			dkp_err_ssl(err, DKP_E_CRYPTO, "sign",
				    "cannot prepare RSA signing");
			return NULL;
		}
	} else {
		c->ed = EVP_MD_CTX_new();
		if (c->ed == NULL ||
		    EVP_DigestSignInit_ex(c->ed, NULL, NULL, NULL, NULL,
					  dkp_key_pkey(k), NULL) <= 0) {
			keyctx_clear(c);
			dkp_err_ssl(err, DKP_E_CRYPTO, "sign",
				    "cannot prepare Ed25519 signing");
			return NULL;
		}
	}
	c->serial = serial;
	dkp_key_ref(k);
	c->key = k;
	return c;
}

/* Sign a SHA-256 digest; signature into s->sig (raw bytes). */
static int sign_digest(struct dkp_signer *s, struct dkp_key *k,
		       const unsigned char *dig, struct dkp_err *err)
{
	struct keyctx *c = get_keyctx(s, k, err);
	size_t siglen;

	if (c == NULL)
		return err->code;
	dkp_buf_reset(&s->sig);
	if (c->rsa) {
		if (EVP_PKEY_sign(c->rsa, NULL, &siglen, dig, 32) <= 0)
			goto fail;
		dkp_buf_reserve(&s->sig, siglen);
		if (EVP_PKEY_sign(c->rsa, (unsigned char *)s->sig.p, &siglen,
				  dig, 32) <= 0)
			goto fail;
	} else {
		/* A one-shot EdDSA context is spent after use: sign with a
		 * copy of the prepared template, not the template itself. */
		siglen = 64;
		dkp_buf_reserve(&s->sig, siglen);
		if (!EVP_MD_CTX_copy_ex(s->work, c->ed) ||
		    EVP_DigestSign(s->work, (unsigned char *)s->sig.p, &siglen,
				   dig, 32) <= 0)
			goto fail;
	}
	s->sig.len = siglen;
	return DKP_OK;
fail:
	return dkp_err_ssl(err, DKP_E_CRYPTO, "sign", "signing failed");
}

/*
 * Check sig (len bytes) over dig with the public half of k, through
 * OpenSSL: 1 good, 0 bad, -1 the check itself could not run.
 */
static int check_sig(struct dkp_signer *s, struct dkp_key *k,
		     const unsigned char *dig, const unsigned char *sig,
		     size_t len)
{
	struct keyctx *c = &s->kc[dkp_key_serial(k) % KEYCTX_SLOTS];
	int rc;

	if (c->serial != dkp_key_serial(k))
		return -1;	/* signed through it just now: cannot be */
	if (dkp_key_alg(k) == DKP_ALG_RSA_SHA256) {
		if (c->rsa_v == NULL) {
			c->rsa_v = EVP_PKEY_CTX_new_from_pkey(NULL, dkp_key_pkey(k), NULL);
			if (c->rsa_v == NULL || EVP_PKEY_verify_init(c->rsa_v) <= 0 ||
			    EVP_PKEY_CTX_set_rsa_padding(c->rsa_v, RSA_PKCS1_PADDING) <= 0 ||
			    EVP_PKEY_CTX_set_signature_md(c->rsa_v, s->sha256) <= 0) {
				EVP_PKEY_CTX_free(c->rsa_v);
				c->rsa_v = NULL;
				return -1;
			}
		}
		rc = EVP_PKEY_verify(c->rsa_v, sig, len, dig, 32);
	} else {
		if (c->ed_v == NULL) {
			c->ed_v = EVP_MD_CTX_new();
			if (c->ed_v == NULL ||
			    EVP_DigestVerifyInit_ex(c->ed_v, NULL, NULL, NULL, NULL,
						    dkp_key_pkey(k), NULL) <= 0) {
				EVP_MD_CTX_free(c->ed_v);
				c->ed_v = NULL;
				return -1;
			}
		}
		rc = EVP_MD_CTX_copy_ex(s->work, c->ed_v)
			     ? EVP_DigestVerify(s->work, sig, len, dig, 32)
			     : -1;
	}
	if (rc < 0) {
		ERR_clear_error();
		return -1;
	}
	ERR_clear_error();	/* a bad signature leaves a reason queued */
	return rc == 1;
}

/* The check before release, when due: DKP_OK or DKP_E_BADSIG. */
static int check_due(struct dkp_signer *s, struct dkp_key *k,
		     const unsigned char *dig, struct dkp_err *err)
{
	int ok;

	if (s->verify_every == 0 ||
	    (s->verify_rsa_only && dkp_key_alg(k) != DKP_ALG_RSA_SHA256) ||
	    ++s->verify_n < s->verify_every)
		return DKP_OK;
	s->verify_n = 0;
	ok = check_sig(s, k, dig, (const unsigned char *)s->sig.p, s->sig.len);
	atomic_fetch_add(&n_checked, 1);
	if (ok == 1)
		return DKP_OK;
	atomic_fetch_add(&n_bad, 1);
	return dkp_err_set(err, DKP_E_BADSIG, 0, "self-verify",
			   ok < 0 ? "the %s signature could not be checked with its public key: not released"
				  : "the %s signature failed its check with its public key (a faulty computation or a bug): not released",
			   dkp_alg_name(dkp_key_alg(k)));
}

/* DKP_TEST_CORRUPT_SIG: a faulty computation, for the tests; in a test
 * build only (-DDKP_TEST_HOOKS), never in build/dkimpress. */
static void corrupt_hook(struct dkp_signer *s)
{
#ifdef DKP_TEST_HOOKS
	if (s->corrupt_every &&
	    (atomic_fetch_add(&corrupt_count, 1) + 1) % s->corrupt_every == 0 &&
	    s->sig.len > 0)
		s->sig.p[s->sig.len / 2] ^= 0x10;
#else
	(void)s;
#endif
}

/* Write sig's base64 over the placeholder at p->off, past the folding. */
static void pend_patch(const struct pend *p)
{
	unsigned char b64[B64_LEN(RSA2048_LEN) + 1];
	size_t i = 0, n = B64_LEN(p->siglen);
	char *o, *end;

	if (p->buf == NULL)
		return;		/* dkp_sign_digests: the caller wants none */
	o = p->buf->p + p->off;
	end = p->buf->p + p->buf->len;
	EVP_EncodeBlock(b64, p->sig, (int)p->siglen);
	/* the placeholder's runs between its folds (dkp_sigfmt_finish's
	 * CRLF TAB), a memcpy each */
	while (o < end && i < n) {
		size_t run = n - i < (size_t)(end - o) ? n - i : (size_t)(end - o);
		char *cr = memchr(o, '\r', run);

		if (cr)
			run = (size_t)(cr - o);
		memcpy(o, b64 + i, run);
		i += run;
		o += run;
		while (o < end && (*o == '\r' || *o == '\n' || *o == ' ' || *o == '\t'))
			o++;
	}
}

/*
 * A last group this small goes to OpenSSL one by one: eight lanes cost
 * about as much as three OpenSSL signatures (docs/performance.md).
 */
#define IFMA_MIN_LANES 3

/* The batch's RSA-2048 signatures through the 8-lane path, in pend
 * order into s->req; returns how many it took (a small remainder is
 * left to OpenSSL). */
static size_t flush_rsa8(struct dkp_signer *s)
{
	struct dkp_rsa8_counts cnt = { 0 };
	size_t i, n = 0;

	if (s->req_cap < s->npend) {
		s->req_cap = s->npend;
		s->req = dkp_realloc(s->req, s->req_cap * sizeof(*s->req));
	}
	for (i = 0; i < s->npend; i++) {
		struct dkp_rsa8_req *r = &s->req[n];

		if (s->pend[i].siglen != RSA2048_LEN)
			continue;
		r->key = dkp_key_rsa8(s->pend[i].key);
		r->pk = dkp_key_pkey(s->pend[i].key);
		r->digest = s->pend[i].dig;
		r->sig = s->pend[i].sig;
		r->status = -1;
		n++;
	}
	if (n % 8 && n % 8 < IFMA_MIN_LANES && s->backend == DKP_RSA_AUTO)
		n -= n % 8;
	if (n)
		dkp_rsa8_sign(s->req, n, &cnt);
	atomic_fetch_add(&n_lanes, cnt.lanes);
	atomic_fetch_add(&n_groups, cnt.groups);
	atomic_fetch_add(&n_checked, n);
	return n;
}

/* What the 8-lane path said of one signature (its check, and OpenSSL's
 * remake when the check failed): 0 good, -1 not released (err set). */
static int lane_result(int status, struct dkp_err *err)
{
	if (status == 1) {
		atomic_fetch_add(&n_recomputed, 1);
		dkp_error("an 8-lane RSA signature failed its check and was made again by OpenSSL (a faulty computation; the wrong one was not released)");
	}
	if (status >= 0)
		return 0;
	atomic_fetch_add(&n_bad, 1);
	dkp_err_set(err, DKP_E_BADSIG, 0, "self-verify",
		    "no RSA signature passed its check, neither the 8-lane nor OpenSSL's: not released");
	return -1;
}

/* A deferred signature the 8-lane path did not take (Ed25519, or an RSA
 * remainder) made by OpenSSL and checked as dkp_sign would. */
static int flush_one(struct dkp_signer *s, struct pend *p, struct dkp_err *err)
{
	if (sign_digest(s, p->key, p->dig, err) != DKP_OK)
		return -1;
	corrupt_hook(s);
	if (check_due(s, p->key, p->dig, err) != DKP_OK)
		return -1;
	if (s->sig.len != p->siglen) {
		dkp_err_set(err, DKP_E_CRYPTO, 0, "sign",
			    "a %s signature of %zu bytes, not %zu", dkp_alg_name(dkp_key_alg(p->key)),
			    s->sig.len, p->siglen);
		return -1;
	}
	memcpy(p->sig, s->sig.p, p->siglen);
	return 0;
}

void dkp_sign_flush(struct dkp_signer *s,
		    void (*fail)(void *ctx, size_t tag, const struct dkp_err *e),
		    void *ctx)
{
	struct dkp_err err;
	size_t i, r = 0, nifma;

	if (s->npend == 0)
		return;
	/* every RSA-2048 one first, eight at a time; then the rest in
	 * order, one kind after another in a warm run */
	nifma = flush_rsa8(s);
	for (i = 0; i < s->npend; i++) {
		struct pend *p = &s->pend[i];
		int st;

		dkp_err_clear(&err);
		if (p->siglen == RSA2048_LEN && r < nifma)
			st = lane_result(s->req[r++].status, &err);
		else
			st = flush_one(s, p, &err);
		if (st < 0) {
			if (fail)
				fail(ctx, p->tag, &err);
			continue;
		}
		pend_patch(p);
	}
	pend_drop(s, 0);
}

static void digests_failed(void *ctx, size_t tag, const struct dkp_err *e)
{
	struct dkp_err *err = ctx;

	(void)tag;
	if (err->code == DKP_OK)
		*err = *e;
}

int dkp_sign_digests(struct dkp_signer *s, struct dkp_key *const *k,
		     const unsigned char (*dig)[32], size_t n,
		     struct dkp_err *err)
{
	size_t i;
	int rc;

	dkp_err_clear(err);
	for (i = 0; i < n; i++) {
		size_t dl = deferred_len(s, k[i]);

		if (dl == 0) {
			if ((rc = sign_digest(s, k[i], dig[i], err)) != DKP_OK ||
			    (rc = check_due(s, k[i], dig[i], err)) != DKP_OK) {
				pend_drop(s, 0);
				return rc;
			}
			continue;
		}
		pend_push(s, k[i], dig[i], dl);
	}
	dkp_sign_flush(s, digests_failed, err);
	return err->code;
}

int dkp_sign_digest(struct dkp_signer *s, struct dkp_key *k,
		    const unsigned char dig[32], size_t *siglen,
		    struct dkp_err *err)
{
	int rc = sign_digest(s, k, dig, err);

	*siglen = rc == DKP_OK ? s->sig.len : 0;
	return rc;
}

size_t dkp_sign_default_list(const struct dkp_msg *m, const char **names,
			     size_t max)
{
	size_t i, j, n = 0;

	for (i = 0; i < dkp_sign_n_default_headers; i++) {
		const char *h = dkp_sign_default_headers[i];
		size_t c = dkp_msg_count(m, h, strlen(h));

		/* present: name it count + 1 times, so nobody can add one */
		for (j = 0; c > 0 && j <= c && n < max; j++)
			names[n++] = h;
	}
	return n;
}

void dkp_sign_hash_fields(const struct dkp_msg *m, enum dkp_canon c,
			  const char *const *names, const size_t *lens,
			  size_t n, unsigned char *used, struct dkp_buf *out)
{
	size_t i, k;

	memset(used, 0, m->nfields);
	for (i = 0; i < n; i++) {
		/* RFC 6376 5.4.2: the last unused instance, bottom-up; a
		 * missing one contributes the null string. */
		for (k = m->nfields; k-- > 0;) {
			const struct dkp_field *f = &m->fields[k];

			if (used[k] || !dkp_msg_field_is(m, k, names[i], lens[i]))
				continue;
			used[k] = 1;
			dkp_canon_header(c, m->data + f->off, f->len,
					 f->name_len, 1, out);
			break;
		}
	}
}

static void grow_scratch(struct dkp_signer *s, const struct dkp_msg *m,
			 size_t nnames)
{
	if (s->used_cap < m->nfields) {
		s->used_cap = m->nfields * 2;
		s->used = dkp_realloc(s->used, s->used_cap);
	}
	if (s->names_cap < nnames) {
		s->names_cap = nnames * 2;
		s->names = dkp_realloc(s->names, s->names_cap * sizeof(*s->names));
		s->lens = dkp_realloc(s->lens, s->names_cap * sizeof(*s->lens));
	}
}

static int body_hash(struct dkp_signer *s, const struct dkp_msg *m,
		     enum dkp_canon c, char *b64, struct dkp_err *err)
{
	unsigned char dig[32];
	unsigned int dlen = 0;

	if (!EVP_DigestInit_ex2(s->md, s->sha256, NULL))
		return dkp_err_ssl(err, DKP_E_CRYPTO, "hash", "digest init");
	dkp_hsink_init(&s->sink, s->md, UINT64_MAX);
	if (dkp_canon_body(c, m->data + m->body_off, m->len - m->body_off,
			   &s->sink) < 0 ||
	    !EVP_DigestFinal_ex(s->md, dig, &dlen))
		return dkp_err_ssl(err, DKP_E_CRYPTO, "hash", "body hash");
	EVP_EncodeBlock((unsigned char *)b64, dig, (int)dlen);
	return DKP_OK;
}


/* The limits m was parsed with (zero: never parsed; the defaults). */
static void msg_limits(const struct dkp_msg *m, struct dkp_limits *lim)
{
	dkp_limits_default(lim);
	if (m->lim.max_fields)
		lim->max_fields = m->lim.max_fields;
	if (m->lim.max_header_bytes)
		lim->max_header_bytes = m->lim.max_header_bytes;
}

/* The signature field's parts as sign_parts hashes them: shared, raw
 * (its canonical form joins the fields' hash state); cpre, already
 * canonical; tail, raw. */
struct parts {
	const char *shared, *cpre, *tail;
	size_t shared_len, cprelen, tlen;
};

/*
 * Hash the chosen fields and the field's shared part (or, with reuse,
 * take the state the previous call left for the same c=, t=, x= and h=),
 * then the rest of the signature field (cpre, then tail canonicalized),
 * and sign.
 */
static int sign_parts(struct dkp_signer *s, const struct dkp_msg *m,
		      struct dkp_key *key, enum dkp_canon hc,
		      const char *const *names, const size_t *lens, size_t n,
		      int reuse, const struct parts *pt, struct dkp_buf *b64,
		      int *deferred, struct dkp_err *err)
{
	unsigned char dig[32];
	unsigned int dlen = 0;
	size_t len;
	int rc;

	if (reuse) {
		s->hdr.len = s->hdr_pre;
	} else {
		/* hashed once for every signature that shares them (the
		 * hash state copied, not the bytes hashed again) */
		grow_scratch(s, m, 0);
		dkp_buf_reset(&s->hdr);
		dkp_sign_hash_fields(m, hc, names, lens, n, s->used, &s->hdr);
		if (pt->shared_len)
			dkp_canon_header(hc, pt->shared, pt->shared_len,
					 strlen("DKIM-Signature"), 0, &s->hdr);
		s->hdr_pre = s->hdr.len;
		if (!EVP_DigestInit_ex2(s->pre, s->sha256, NULL) ||
		    !EVP_DigestUpdate(s->pre, s->hdr.p, s->hdr.len))
			return dkp_err_ssl(err, DKP_E_CRYPTO, "hash", "header hash");
	}
	dkp_buf_add(&s->hdr, pt->cpre, pt->cprelen);
	dkp_canon_header_tail(hc, pt->tail, pt->tlen, &s->hdr);
	if (!EVP_MD_CTX_copy_ex(s->md, s->pre) ||
	    !EVP_DigestUpdate(s->md, s->hdr.p + s->hdr_pre, s->hdr.len - s->hdr_pre) ||
	    !EVP_DigestFinal_ex(s->md, dig, &dlen))
		return dkp_err_ssl(err, DKP_E_CRYPTO, "hash", "header hash");
	if (deferred && (len = deferred_len(s, key)) != 0) {
		/* made in dkp_sign_flush: a placeholder of its length, with
		 * its padding, so that folding places it as it will be */
		size_t chars = B64_LEN(len), pad = (3 - len % 3) % 3;

		pend_push(s, key, dig, len);
		dkp_buf_reserve(b64, chars);
		memset(b64->p + b64->len, 'A', chars - pad);
		memset(b64->p + b64->len + chars - pad, '=', pad);
		b64->len += chars;
		b64->p[b64->len] = '\0';
		*deferred = 1;
		return DKP_OK;
	}
	if ((rc = sign_digest(s, key, dig, err)) != DKP_OK)
		return rc;
	corrupt_hook(s);
	if ((rc = check_due(s, key, dig, err)) != DKP_OK)
		return rc;
	len = 4 * ((s->sig.len + 2) / 3);
	dkp_buf_reserve(b64, len);
	EVP_EncodeBlock((unsigned char *)b64->p + b64->len,
			(unsigned char *)s->sig.p, (int)s->sig.len);
	b64->len += len;
	b64->p[b64->len] = '\0';
	return DKP_OK;
}

int dkp_sign_rendered(struct dkp_signer *s, const struct dkp_msg *m,
		      struct dkp_key *key, enum dkp_canon hc,
		      const char *const *names, const size_t *lens, size_t n,
		      const char *field, size_t flen, struct dkp_buf *b64,
		      struct dkp_err *err)
{
	struct dkp_buf c;
	struct parts pt;
	int rc;

	dkp_buf_init(&c);
	dkp_canon_header(hc, field, flen, strlen("DKIM-Signature"), 0, &c);
	memset(&pt, 0, sizeof(pt));
	pt.cpre = c.p;
	pt.cprelen = c.len;
	pt.tail = "";
	rc = sign_parts(s, m, key, hc, names, lens, n, 0, &pt, b64, NULL, err);
	dkp_buf_free(&c);
	return rc;
}

/* The h= list of sp into s->names/s->lens; returns how many. */
static size_t h_list(struct dkp_signer *s, const struct dkp_msg *m,
		     const struct dkp_sig_spec *sp)
{
	size_t nn, j;

	grow_scratch(s, m, 2 * m->nfields + 1 + sp->nheaders);
	if (sp->headers) {
		nn = sp->nheaders;
		memcpy(s->names, sp->headers, nn * sizeof(*s->names));
	} else {
		nn = dkp_sign_default_list(m, s->names, s->names_cap);
	}
	for (j = 0; j < nn; j++)
		s->lens[j] = strlen(s->names[j]);
	return nn;
}

/* Do a and b sign the same fields the same way and share the first
 * part of their field (c=, t=, x=, h=; sigfmt.h)? */
static int same_shared(const struct dkp_sig_spec *a,
		       const struct dkp_sig_spec *b)
{
	size_t i;

	if (a->hcanon != b->hcanon || a->bcanon != b->bcanon ||
	    a->t != b->t || a->x != b->x ||
	    (a->headers == NULL) != (b->headers == NULL))
		return 0;
	if (a->headers == NULL || a->headers == b->headers)
		return a->headers == NULL || a->nheaders == b->nheaders;
	if (a->nheaders != b->nheaders)
		return 0;
	for (i = 0; i < a->nheaders; i++)
		if (strcmp(a->headers[i], b->headers[i]) != 0)
			return 0;
	return 1;
}

/* One DKIM-Signature field for sp, appended to out (its b= now, or
 * filled in by dkp_sign_flush); bh: the body hash of its c=; prev: the
 * spec signed just before in this message (NULL for the first). */
static int sign_spec(struct dkp_signer *s, const struct dkp_msg *m,
		     const struct dkp_sig_spec *sp,
		     const struct dkp_sig_spec *prev, const char *bh,
		     struct dkp_buf *out, struct dkp_err *err)
{
	struct dkp_sigfmt f;
	const struct dkp_tmpl *t;
	struct parts pt;
	int reuse = prev != NULL && same_shared(prev, sp);
	size_t nn = reuse ? s->nn_pre : (s->nn_pre = h_list(s, m, sp));
	size_t col, start, rest;
	int rc, deferred = 0;

	/* the field to hash: chosen headers, then our own (b= empty) */
	memset(&f, 0, sizeof(f));
	f.alg = dkp_key_alg(sp->key);
	f.hcanon = sp->hcanon;
	f.bcanon = sp->bcanon;
	f.domain = sp->domain;
	f.selector = sp->selector;
	f.identity = sp->identity;
	f.t = sp->t;
	f.x = sp->x;
	f.headers = s->names;
	f.nheaders = nn;
	f.bh = bh;
	if (!reuse) {
		dkp_buf_reset(&s->shared);
		dkp_sigfmt_shared(&f, &s->shared);
	}
	/* the shared part, the key's cached part, then i= and b= */
	t = dkp_tmpl_get(s->tmpl, f.alg, sp->hcanon, sp->bcanon, sp->domain, sp->selector);
	start = out->len;
	dkp_buf_add(out, s->shared.p, s->shared.len);
	dkp_buf_add(out, t->raw.p, t->raw.len);
	rest = out->len;
	dkp_sigfmt_rest(&f, t->col, out, &col);
	pt.shared = s->shared.p;
	pt.shared_len = s->shared.len;
	pt.cpre = t->canon.p;
	pt.cprelen = t->canon.len;
	pt.tail = out->p + rest;
	pt.tlen = out->len - rest;
	dkp_buf_reset(&s->b64);
	rc = sign_parts(s, m, sp->key, sp->hcanon, s->names, s->lens, nn, reuse,
			&pt, &s->b64, &deferred, err);
	if (rc != DKP_OK) {
		out->len = start;
		return rc;
	}
	if (deferred) {
		s->pend[s->npend - 1].buf = out;
		s->pend[s->npend - 1].off = out->len;
	}
	dkp_sigfmt_finish(out, col, s->b64.p, s->b64.len);
	return DKP_OK;
}

int dkp_sign(struct dkp_signer *s, const struct dkp_msg *m,
	     const struct dkp_sig_spec *specs, size_t n, struct dkp_buf *out,
	     struct dkp_err *err)
{
	char bh[2][48];
	int have_bh[2] = { 0, 0 }, rc = DKP_OK;
	struct dkp_limits lim;
	size_t i, out0 = out->len, pend0 = s->npend, total;

	sweep_retired(s);	/* cheap unless a key was retired */
	/* The signed message must stay within the limits the message was
	 * parsed with, or our own `verify` (and the next engine) would
	 * refuse what we wrote: count the fields we add first, the bytes
	 * once they are rendered. */
	msg_limits(m, &lim);
	if (m->nfields + n > lim.max_fields)
		return dkp_err_set(err, DKP_E_LIMIT, 0, "sign",
				   "%zu header fields and %zu signatures exceed the limit of %zu fields",
				   m->nfields, n, lim.max_fields);
	for (i = 0; rc == DKP_OK && i < n; i++) {
		const struct dkp_sig_spec *sp = &specs[i];

		if ((rc = dkp_sigfmt_spec_ok(sp, err)) != DKP_OK)
			break;
		if (!have_bh[sp->bcanon]) {
			if ((rc = body_hash(s, m, sp->bcanon, bh[sp->bcanon], err)) != DKP_OK)
				break;
			have_bh[sp->bcanon] = 1;
		}
		rc = sign_spec(s, m, sp, i ? &specs[i - 1] : NULL,
			       bh[sp->bcanon], out, err);
	}
	/* body_off counts the empty line, as the parser's limit does */
	total = out->len - out0 + m->body_off;
	if (rc == DKP_OK && total > lim.max_header_bytes)
		rc = dkp_err_set(err, DKP_E_LIMIT, 0, "sign",
				 "the signed header block would be %zu bytes, over the limit of %zu",
				 total, lim.max_header_bytes);
	if (rc != DKP_OK) {
		/* nothing of this call stays queued: its fields are gone */
		out->len = out0;
		pend_drop(s, pend0);
	}
	return rc;
}
