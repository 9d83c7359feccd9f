/*
 * smtp_reply.h — SMTP/LMTP replies (RFC 5321 4.2) and the EHLO keywords
 * the relay uses. No I/O: the caller feeds bytes it has read.
 *
 * A reply is one or more lines "ddd-text" ending with one "ddd text" (or
 * a bare "ddd"), every line ending in CRLF (a bare LF is accepted), all
 * lines with the same code. The text of each line is kept (the code and
 * separator removed), lines joined by '\n', cut at DKP_SMTP_REPLY_TEXT
 * bytes (the rest is read and dropped).
 *
 * Threads: no shared state. Errors: -1 from the parser is a protocol
 * error (not an SMTP reply); the caller drops the connection.
 */
#ifndef DKP_SMTP_REPLY_H
#define DKP_SMTP_REPLY_H

#include <stddef.h>
#include <stdint.h>

#define DKP_SMTP_REPLY_TEXT 2048
/* a reply line longer than this (RFC 5321 4.5.3.1.5: 512) is an error */
#define DKP_SMTP_MAX_LINE 4096
/* at most this many lines in one reply */
#define DKP_SMTP_MAX_LINES 200

struct dkp_smtp_reply {
	int code;			/* 200..599 */
	size_t len;			/* bytes of text */
	char text[DKP_SMTP_REPLY_TEXT];	/* NUL-terminated */
};

/* Extensions a server announced in its EHLO/LHLO reply. */
struct dkp_smtp_ext {
	unsigned pipelining : 1, chunking : 1, eightbitmime : 1, smtputf8 : 1,
		starttls : 1;
	uint64_t size;			/* SIZE limit; 0: none announced */
};

/*
 * Parse the first complete reply in p[0..n). Returns the number of bytes
 * it took (> 0) and fills *r; 0 when p holds no complete reply yet; -1
 * when the bytes are not an SMTP reply (a bad code, mixed codes, a line
 * over DKP_SMTP_MAX_LINE, too many lines).
 */
long dkp_smtp_reply_parse(const char *p, size_t n, struct dkp_smtp_reply *r);

/* The EHLO keywords of r (a 250 reply to EHLO or LHLO) into *ext. */
void dkp_smtp_ext_parse(const struct dkp_smtp_reply *r, struct dkp_smtp_ext *ext);

/* "CODE text" on one line (lines joined by a space, control bytes as
 * '?'), for logs and failed/ reasons. */
void dkp_smtp_reply_str(const struct dkp_smtp_reply *r, char *out, size_t outsz);

#endif
