/*
 * canon.h — RFC 6376 section 3.4 canonicalization.
 *
 * Header fields are canonicalized into a caller's buffer (they are small
 * and hashed once). Bodies are streamed into a struct dkp_hsink that feeds
 * a digest through a staging buffer, so a body is never copied whole.
 * Pure functions of their input; thread-safe.
 */
#ifndef DKP_CANON_H
#define DKP_CANON_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "dkimpress/dkimpress.h"

/*
 * Append the canonical form of one header field to out. f/len is the raw
 * field (name, colon, value, continuation lines, final CRLF if any);
 * name_len is the length of the name. With crlf == 0 the canonical form
 * ends without CRLF (the DKIM-Signature field itself, RFC 6376 3.7).
 */
void dkp_canon_header(enum dkp_canon c, const char *f, size_t len,
		      size_t name_len, int crlf, struct dkp_buf *out);

/*
 * Canonicalize the continuation of a field value whose earlier part ended
 * in a non-WSP byte (a template prefix ending in ';'): for relaxed, folds
 * removed, WSP runs made one SP (a leading run too), trailing WSP dropped.
 * canon(prefix) + tail(rest) == canon(prefix + rest).
 */
void dkp_canon_header_tail(enum dkp_canon c, const char *p, size_t len,
			   struct dkp_buf *out);

/* Digest sink with an optional length cap (the l= tag when verifying). */
struct dkp_hsink {
	EVP_MD_CTX *md;
	uint64_t limit;		/* UINT64_MAX: no cap */
	uint64_t total;		/* canonical bytes seen, before the cap */
	size_t n;		/* bytes staged */
	unsigned char stage[16384];
};

void dkp_hsink_init(struct dkp_hsink *s, EVP_MD_CTX *md, uint64_t limit);
/* Flush the staging buffer into the digest. Returns 0 or -1 (OpenSSL). */
int dkp_hsink_flush(struct dkp_hsink *s);

/*
 * Canonicalize body (CRLF line endings) into s, per RFC 6376 3.4.3 (simple:
 * trailing empty lines dropped, an empty body becomes one CRLF) or 3.4.4
 * (relaxed: trailing WSP removed, WSP runs become one SP, trailing empty
 * lines dropped, an empty body stays empty). Flushes at the end. Returns 0,
 * or -1 if OpenSSL failed.
 */
int dkp_canon_body(enum dkp_canon c, const char *body, size_t len,
		   struct dkp_hsink *s);

#endif
