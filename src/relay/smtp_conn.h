/*
 * smtp_conn.h — one TCP connection to the next hop, plain or TLS
 * (STARTTLS, OpenSSL), every read and write bounded by a timeout (poll;
 * a stalled server costs no CPU). Replies are read whole
 * (smtp_reply.h).
 *
 * Syscall-facing: 0 or -errno (-ETIMEDOUT for a timeout, -ECONNRESET for
 * an EOF or a TLS error, -EPROTO for bytes that are not a reply), with a
 * one-line reason in err (temporary). Threads: one connection belongs to
 * one thread; the SSL_CTX may be shared (OpenSSL allows that).
 */
#ifndef DKP_SMTP_CONN_H
#define DKP_SMTP_CONN_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "dkimpress/dkimpress.h"
#include "relay/smtp_reply.h"

struct dkp_smtp_conn {
	int fd;			/* -1: closed */
	SSL *ssl;		/* NULL: plain */
	int timeout_ms;
	struct dkp_buf in;	/* bytes read, not yet parsed */
};

void dkp_smtp_conn_init(struct dkp_smtp_conn *c, int timeout_ms);
/* Connect to host:port (each address in turn) within the timeout. */
int dkp_smtp_conn_open(struct dkp_smtp_conn *c, const char *host, unsigned port,
		       struct dkp_err *err);
/* Write all of p[0..n). */
int dkp_smtp_conn_write(struct dkp_smtp_conn *c, const void *p, size_t n,
			struct dkp_err *err);
/* Read the next reply. */
int dkp_smtp_conn_reply(struct dkp_smtp_conn *c, struct dkp_smtp_reply *r,
			struct dkp_err *err);
/* TLS handshake over the open connection (after "220" to STARTTLS);
 * verify: check the certificate chain and that it names host. */
int dkp_smtp_conn_tls(struct dkp_smtp_conn *c, SSL_CTX *ctx, const char *host,
		      int verify, struct dkp_err *err);
/* Has the peer sent something (or closed) while we were not asking? */
int dkp_smtp_conn_pending(struct dkp_smtp_conn *c);
/* Close (no QUIT: the session sends it); the buffer is kept. */
void dkp_smtp_conn_close(struct dkp_smtp_conn *c);
void dkp_smtp_conn_free(struct dkp_smtp_conn *c);

#endif
