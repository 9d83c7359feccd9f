/*
 * sign.h — producing DKIM-Signature fields (dkp_sign in dkimpress.h) and
 * the hashing steps it shares with verify.c.
 */
#ifndef DKP_SIGN_H
#define DKP_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "dkimpress/dkimpress.h"

/* Who makes RSA-2048 signatures (rsa_backend in dkimpress.conf(5)). */
enum dkp_rsa_backend {
	DKP_RSA_AUTO = 0,	/* eight at a time with AVX-512 IFMA where the
				 * CPU has it, OpenSSL otherwise */
	DKP_RSA_OPENSSL,	/* OpenSSL, one at a time */
	DKP_RSA_IFMA,		/* the 8-lane path; refused where the CPU lacks it */
};

/*
 * Check each signature made through s with the public half of its key
 * before it is used: every = 0 off, 1 every signature, N one in N (per
 * thread); rsa_only: RSA signatures only. A signature that fails the check
 * is an error DKP_E_BADSIG (permanent): it is never released. Default: 1,
 * every algorithm.
 */
void dkp_signer_set_verify(struct dkp_signer *s, unsigned every, int rsa_only);

/*
 * Choose the RSA backend for s (default DKP_RSA_OPENSSL for a new signer;
 * the engine and `dkimpress sign` pass their setting). DKP_RSA_IFMA where
 * the CPU cannot is refused (DKP_E_USAGE).
 */
int dkp_signer_set_backend(struct dkp_signer *s, enum dkp_rsa_backend b,
			   struct dkp_err *err);
/* 1 when the 8-lane path can run on this CPU. */
int dkp_sign_ifma_available(void);

/*
 * Batch mode: dkp_sign leaves the b= of each Ed25519 signature, and with
 * the 8-lane backend of each RSA-2048 one, as a placeholder of the right
 * length and queues its digest under tag; dkp_sign_flush computes the
 * queued RSA-2048 signatures in groups of eight, then the others one
 * after another, each checked as dkp_sign would, and writes them into the
 * buffers dkp_sign wrote (which must be neither moved nor freed in
 * between). A signature that cannot be made calls fail(ctx, tag, err) and
 * its buffer keeps the placeholder: the caller must not release that
 * message.
 */
void dkp_signer_set_batch(struct dkp_signer *s, int on, size_t tag);
size_t dkp_sign_pending(const struct dkp_signer *s);
void dkp_sign_flush(struct dkp_signer *s,
		    void (*fail)(void *ctx, size_t tag, const struct dkp_err *e),
		    void *ctx);

/*
 * Sign n digests with keys k as dkp_sign would (the benchmark's crypto
 * phase): in batch mode RSA-2048 ones eight at a time, each checked, and
 * the Ed25519 ones after them; the others one by one; those not made by
 * the 8-lane path checked as dkp_signer_set_verify says. The signatures
 * themselves are dropped.
 */
int dkp_sign_digests(struct dkp_signer *s, struct dkp_key *const *k,
		     const unsigned char (*dig)[32], size_t n,
		     struct dkp_err *err);

/* Process-wide counts of the checks (for the summary and the metrics). */
struct dkp_sign_counts {
	uint64_t checked;	/* signatures checked before release */
	uint64_t bad;		/* of those, failed: not released */
	uint64_t lanes;		/* RSA signatures made by the 8-lane path */
	uint64_t groups;	/* 8-lane calls */
	uint64_t recomputed;	/* 8-lane results that failed their check
				 * and were made again by OpenSSL */
};
void dkp_sign_counts(struct dkp_sign_counts *out);

/* The default h= candidates, in the order they are named. */
extern const char *const dkp_sign_default_headers[];
extern const size_t dkp_sign_n_default_headers;

/*
 * Build the default h= list for m into names (array of at least
 * 2 * m->nfields + 1 entries): each default candidate present in m,
 * named once more than it occurs. Returns the count.
 */
size_t dkp_sign_default_list(const struct dkp_msg *m, const char **names,
			     size_t max);

/*
 * Append to out the canonical form of the fields named by h, choosing
 * instances bottom-up as RFC 6376 5.4.2 says. used must hold m->nfields
 * entries; it is cleared here. Names are (ptr, len) pairs.
 */
void dkp_sign_hash_fields(const struct dkp_msg *m, enum dkp_canon c,
			  const char *const *names, const size_t *lens,
			  size_t n, unsigned char *used, struct dkp_buf *out);

/*
 * Sign one pre-rendered DKIM-Signature field (field/flen: the whole field
 * up to and including "b=", no value, no CRLF; as it will appear). Hashes
 * the fields named by names/lens, then the field itself, both with header
 * canonicalization hc; appends the base64 signature to b64.
 */
int dkp_sign_rendered(struct dkp_signer *s, const struct dkp_msg *m,
		      struct dkp_key *key, enum dkp_canon hc,
		      const char *const *names, const size_t *lens, size_t n,
		      const char *field, size_t flen, struct dkp_buf *b64,
		      struct dkp_err *err);

/*
 * Sign a SHA-256 digest with k through s's per-thread context for k — the
 * very calls dkp_sign makes per signature (the benchmark's crypto bound).
 * *siglen receives the signature's length.
 */
int dkp_sign_digest(struct dkp_signer *s, struct dkp_key *k,
		    const unsigned char dig[32], size_t *siglen,
		    struct dkp_err *err);

#endif
