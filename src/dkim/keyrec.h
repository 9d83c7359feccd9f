/*
 * keyrec.h — DKIM key records (RFC 6376 3.6.1): where they come from (a
 * --dns-file table or the system resolver; declared in dkimpress.h) and
 * base64 decoding shared with verify.c.
 */
#ifndef DKP_KEYREC_H
#define DKP_KEYREC_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

/*
 * Decode base64 in s/n, skipping FWS, into out (replacing its content).
 * Returns 0, or -1 on a character outside the alphabet or bad padding.
 */
int dkp_b64_decode(const char *s, size_t n, struct dkp_buf *out);
/* A TXT record's RDATA rd[0..len) (one or more <length><bytes> strings)
 * concatenated into txt (reset first). */
void dkp_txt_rdata(const unsigned char *rd, size_t len, struct dkp_buf *txt);

#endif
