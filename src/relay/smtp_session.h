/*
 * smtp_session.h — one persistent SMTP or LMTP session with the next hop
 * and the transactions on it: greeting, EHLO/LHLO, STARTTLS, then per
 * message MAIL, RCPT..., DATA or BDAT (RFC 5321, 2033, 2920 PIPELINING,
 * 3030 CHUNKING, 6152 8BITMIME, 6531 SMTPUTF8, 1870 SIZE, 3207 STARTTLS).
 *
 * The result of a transaction is one code per recipient: 2xx delivered,
 * 4xx try again later, 5xx permanent, each non-2xx with its reason (the
 * server's reply, or what went wrong on our side, e.g. a timeout as 451).
 * A connection error, timeout or 421 closes the session; the next
 * transaction opens a new one.
 *
 * Threads: a session belongs to one thread. Ownership: the session keeps
 * cf and ctx (the caller's, outliving it); results are allocated here
 * (dkp_smtp_result_free).
 */
#ifndef DKP_SMTP_SESSION_H
#define DKP_SMTP_SESSION_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "conf/relay_conf.h"
#include "relay/smtp_conn.h"
#include "relay/smtp_data.h"
#include "relay/smtp_reply.h"

struct dkp_smtp_session {
	const struct dkp_relay_config *cf;
	SSL_CTX *ctx;			/* NULL when cf->tls is none */
	const char *helo;
	struct dkp_smtp_conn conn;
	struct dkp_smtp_ext ext;
	double last_used;		/* monotonic seconds */
	unsigned transactions;		/* on this connection */
	struct dkp_buf cmd, data;	/* scratch */
	/* test hook: called (if set) right after the final reply of a
	 * transaction was read, before anything is recorded */
	void (*after_final)(void *arg);
	void *after_final_arg;
};

struct dkp_smtp_rcpt_result {
	int code;			/* 250, 4xx, 5xx */
	char *why;			/* non-2xx: the reply or our reason */
};

struct dkp_smtp_result {
	size_t n;
	struct dkp_smtp_rcpt_result *r;
};

void dkp_smtp_session_init(struct dkp_smtp_session *s,
			   const struct dkp_relay_config *cf, SSL_CTX *ctx,
			   const char *helo);
/* QUIT (best effort) and close. */
void dkp_smtp_session_quit(struct dkp_smtp_session *s);
void dkp_smtp_session_free(struct dkp_smtp_session *s);

/* Deliver e over s (opening it when needed); res gets one result per
 * recipient of e, always (never an error return). */
void dkp_smtp_deliver(struct dkp_smtp_session *s, const struct dkp_relay_env *e,
		      struct dkp_smtp_result *res);
void dkp_smtp_result_free(struct dkp_smtp_result *res);

#endif
