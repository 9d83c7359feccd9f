/*
 * envelope.h — the envelope lines of a pickup-directory message
 * (PowerMTA, IIS/Exchange): "x-sender: ADDR" then one "x-receiver: ADDR"
 * per recipient, as the very first lines of the file, before the first
 * header field. They are not part of the message: dkimpress keeps them on
 * top of its output, above the DKIM-Signature fields, and never signs,
 * canonicalizes or counts them as header fields.
 *
 * Grammar (what dkp_envelope_split accepts; names case-insensitive):
 *
 *   envelope = sender-line 1*receiver-line
 *   sender-line   = "x-sender:" *WSP [sender] *WSP EOL
 *   receiver-line = "x-receiver:" *WSP addr *WSP EOL
 *   sender = addr / "<>"                  ; empty or "<>": null sender
 *   addr   = mailbox / "<" mailbox ">"
 *   mailbox = 1*c "@" 1*c                 ; at most DKP_ENVELOPE_MAX_ADDR
 *                                         ; bytes; c = any byte but SP,
 *                                         ; control (0-31, 127), '<', '>'
 *   EOL    = CRLF / LF                    ; CR nowhere else
 *   WSP    = SP / TAB
 *
 * A line "is named" x-sender or x-receiver when it starts with that name
 * followed by optional WSP and ":" (the way dkp_msg_parse reads a field
 * name); WSP before the colon is then an error, not a header field.
 *
 * The first line decides. If it is not named x-sender there is no
 * envelope (if it is named x-receiver, that is an error). Otherwise the
 * envelope is every line up to the first line that is not named
 * x-sender or x-receiver; that line and everything after it is the
 * message, untouched: an x-sender or x-receiver field further down, among
 * the header fields, is an ordinary header field.
 *
 * Contract: no I/O, no allocation. Input is (p, n); p need not be
 * NUL-terminated and may hold any bytes.
 *
 * Ownership: every address in struct dkp_envelope points into p (no copy,
 * not NUL-terminated, without the angle brackets). They are valid as long
 * as the caller's buffer is unchanged.
 *
 * Threads: no shared state; reentrant.
 *
 * Errors: DKP_E_SYNTAX with a one-line reason in err ("parse" step).
 */
#ifndef DKP_ENVELOPE_H
#define DKP_ENVELOPE_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

/* RFC 5321 4.5.3.1: local part 64 + "@" + domain 255. */
#define DKP_ENVELOPE_MAX_ADDR 320
/* More x-receiver lines than this: refused. */
#define DKP_ENVELOPE_MAX_RCPT 10000
/* Recipients whose address is kept in struct dkp_envelope (the first
 * ones); nrcpt counts them all. */
#define DKP_ENVELOPE_KEEP_RCPT 16
/* Longest envelope line, EOL included (RFC 5322 2.1.1: 998 + CRLF). */
#define DKP_ENVELOPE_MAX_LINE 1000

/* An address: p[0..len), inside the caller's buffer; len 0 is the null
 * sender (p is then NULL). */
struct dkp_envelope_addr {
	const char *p;
	size_t len;
};

struct dkp_envelope {
	size_t len;		/* leading bytes that are envelope lines, all
				 * EOLs included; 0: no envelope */
	size_t nlines;		/* envelope lines (1 + nrcpt, or 0) */
	int crlf;		/* every envelope line ends in CRLF */
	struct dkp_envelope_addr sender;
	size_t nrcpt;		/* x-receiver lines, exact */
	/* the first min(nrcpt, DKP_ENVELOPE_KEEP_RCPT) recipients, in order */
	struct dkp_envelope_addr rcpt[DKP_ENVELOPE_KEEP_RCPT];
};

/*
 * Split the envelope lines off the front of p[0..n).
 *
 * Returns DKP_OK and fills *env: env->len is the number of leading bytes
 * of p that are envelope lines (0 when p has none, in which case every
 * other field is 0 too); the message proper is p + env->len, n - env->len
 * bytes (it may be empty: the caller's message parser refuses that).
 *
 * Returns DKP_E_SYNTAX (permanent; err->msg names the line) and sets
 * env->len = 0 when p starts like an envelope but is malformed:
 * x-receiver before x-sender, a second x-sender, x-sender without any
 * x-receiver, a null address on x-receiver, an address that is not
 * "mailbox" or "<mailbox>" as above (space, control byte, NUL or CR in it,
 * no "@", over DKP_ENVELOPE_MAX_ADDR bytes), white space before the
 * colon, an envelope line without its line ending (end of data) or over
 * DKP_ENVELOPE_MAX_LINE bytes, a continuation line (leading SP/TAB) after
 * an envelope line, more than DKP_ENVELOPE_MAX_RCPT recipients.
 */
int dkp_envelope_split(const char *p, size_t n, struct dkp_envelope *env,
		       struct dkp_err *err);

/*
 * Append the envelope lines of p (as split into env) to out with every
 * line ending CRLF, as dkp_msg_parse does for the message. Appends
 * nothing when env->len is 0.
 */
void dkp_envelope_add_crlf(struct dkp_buf *out, const char *p,
			   const struct dkp_envelope *env);

#endif
