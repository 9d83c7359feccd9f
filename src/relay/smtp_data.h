/*
 * smtp_data.h — a queue file as the relay sends it: the envelope taken
 * from its x-sender / x-receiver lines (dkim/envelope.h) and removed; the
 * rest, the signed message, sent byte for byte (never re-encoded or
 * re-folded): dot-stuffed for DATA (RFC 5321 4.5.2), as it is for BDAT.
 *
 * No I/O. Ownership: every address in struct dkp_relay_env points into
 * the caller's buffer (valid while it is unchanged); rcpt is allocated
 * here (dkp_relay_env_free). Threads: reentrant.
 */
#ifndef DKP_SMTP_DATA_H
#define DKP_SMTP_DATA_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"
#include "dkim/envelope.h"

struct dkp_relay_env {
	struct dkp_envelope_addr sender;	/* len 0: null sender */
	struct dkp_envelope_addr *rcpt;		/* nrcpt, in file order */
	size_t nrcpt;
	const char *msg;			/* the message, envelope removed */
	size_t msg_len;
};

/*
 * Split p[0..n) into envelope and message. A file without envelope lines,
 * or with malformed ones, is DKP_E_SYNTAX (permanent: the relay cannot
 * know where to send it).
 */
int dkp_relay_env_parse(const char *p, size_t n, struct dkp_relay_env *e,
			struct dkp_err *err);
void dkp_relay_env_free(struct dkp_relay_env *e);

/* Append p[0..n) dot-stuffed: a '.' doubled at the start of every line
 * (after LF, and at the very start); then CRLF if p does not end with
 * one, then ".\r\n". */
void dkp_smtp_dot_stuff(struct dkp_buf *out, const char *p, size_t n);

/* Any byte >= 0x80 in p[0..n)? (BODY=8BITMIME, SMTPUTF8) */
int dkp_smtp_has_8bit(const char *p, size_t n);

/*
 * Append the envelope lines for sender and the recipients rcpt[i] for
 * which keep[i] is nonzero (keep NULL: all), CRLF-terminated, as
 * dkp_envelope_split reads them back: how the relay rewrites a file
 * after some recipients are done or failed.
 */
void dkp_relay_env_lines(struct dkp_buf *out, const struct dkp_relay_env *e,
			 const unsigned char *keep);

#endif
