/*
 * sign.h — producing DKIM-Signature fields (dkp_sign in dkimpress.h) and
 * the hashing steps it shares with verify.c.
 */
#ifndef DKP_SIGN_H
#define DKP_SIGN_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

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
