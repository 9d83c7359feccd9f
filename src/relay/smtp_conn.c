/* smtp_conn.c — a connection with timeouts, plain or TLS; see smtp_conn.h. */
#include "relay/smtp_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

/* Cap on bytes buffered while waiting for one reply. */
#define IN_MAX (256 * 1024)

void dkp_smtp_conn_init(struct dkp_smtp_conn *c, int timeout_ms)
{
	c->fd = -1;
	c->ssl = NULL;
	c->timeout_ms = timeout_ms;
	dkp_buf_init(&c->in);
}

/* Wait until fd is ready for ev, or the deadline. 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short ev, double deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = ev };
		double left = deadline - dkp_mono_now();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* One non-blocking connect to ai within the deadline. fd or -errno. */
static int connect_one(const struct addrinfo *ai, double deadline)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol), rc = 0, e = 0;
	socklen_t el = sizeof(e);

	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			rc = -errno;
		else if ((rc = wait_fd(fd, POLLOUT, deadline)) == 0 &&
			 getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e)
			rc = -e;
	}
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int dkp_smtp_conn_open(struct dkp_smtp_conn *c, const char *host, unsigned port,
		       struct dkp_err *err)
{
	struct addrinfo hints, *res, *ai;
	char ps[8];
	double deadline = dkp_mono_now() + c->timeout_ms / 1000.0;
	int rc = -EHOSTUNREACH, g;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	snprintf(ps, sizeof(ps), "%u", port);
	if ((g = getaddrinfo(host, ps, &hints, &res)) != 0) {
		dkp_err_set(err, DKP_E_IO, 1, "connect", "%s: %s", host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next)
		if ((rc = connect_one(ai, deadline)) >= 0)
			break;
	freeaddrinfo(res);
	if (rc < 0)
		return dkp_err_sys(err, DKP_E_IO, 1, "connect", -rc, "cannot connect to %s:%u",
				   host, port), rc;
	c->fd = rc;
	c->in.len = 0;
	/* commands and data go out in few writes and wait for replies:
	 * Nagle plus delayed ACKs would add ~40 ms per round trip */
	g = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &g, sizeof(g));
	return 0;
}

/* Map an SSL_ERROR_WANT_* to the poll event to wait for, 0 for a failure. */
static short ssl_want(SSL *ssl, int ret)
{
	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ: return POLLIN;
	case SSL_ERROR_WANT_WRITE: return POLLOUT;
	default: return 0;
	}
}

/* One write of up to n bytes: > 0 written, or -errno. */
static long write_some(struct dkp_smtp_conn *c, const char *p, size_t n, double deadline)
{
	for (;;) {
		long w;
		short ev = POLLOUT;
		int rc;

		if (c->ssl) {
			int chunk = n > (1 << 30) ? 1 << 30 : (int)n;

			ERR_clear_error();
			if ((w = SSL_write(c->ssl, p, chunk)) > 0)
				return w;
			if ((ev = ssl_want(c->ssl, (int)w)) == 0)
				return -ECONNRESET;
		} else {
			if ((w = send(c->fd, p, n, MSG_NOSIGNAL)) >= 0)
				return w;
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
		}
		if ((rc = wait_fd(c->fd, ev, deadline)) < 0)
			return rc;
	}
}

int dkp_smtp_conn_write(struct dkp_smtp_conn *c, const void *p, size_t n,
			struct dkp_err *err)
{
	double deadline = dkp_mono_now() + c->timeout_ms / 1000.0;
	const char *s = p;

	if (c->fd < 0)
		return dkp_err_set(err, DKP_E_IO, 1, "send", "not connected"), -ENOTCONN;
	while (n > 0) {
		long w = write_some(c, s, n, deadline);

		if (w < 0)
			return dkp_err_sys(err, DKP_E_IO, 1, "send", (int)-w,
					   "%s while sending", w == -ETIMEDOUT ? "timeout" : "error"),
			       (int)w;
		s += w;
		n -= (size_t)w;
		/* progress resets the clock: the timeout bounds a stall */
		deadline = dkp_mono_now() + c->timeout_ms / 1000.0;
	}
	return 0;
}

/* Read more bytes into c->in: > 0, or -errno (-ECONNRESET at EOF). */
static long read_some(struct dkp_smtp_conn *c, double deadline)
{
	dkp_buf_reserve(&c->in, 4096);
	for (;;) {
		size_t room = c->in.cap - c->in.len - 1;
		long r;
		short ev = POLLIN;
		int rc;

		if (c->ssl) {
			ERR_clear_error();
			if ((r = SSL_read(c->ssl, c->in.p + c->in.len,
					  room > (1 << 30) ? 1 << 30 : (int)room)) > 0)
				return r;
			if ((ev = ssl_want(c->ssl, (int)r)) == 0)
				return -ECONNRESET;
		} else {
			if ((r = recv(c->fd, c->in.p + c->in.len, room, 0)) > 0)
				return r;
			if (r == 0)
				return -ECONNRESET;
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
		}
		if ((rc = wait_fd(c->fd, ev, deadline)) < 0)
			return rc;
	}
}

int dkp_smtp_conn_reply(struct dkp_smtp_conn *c, struct dkp_smtp_reply *r,
			struct dkp_err *err)
{
	double deadline = dkp_mono_now() + c->timeout_ms / 1000.0;

	if (c->fd < 0)
		return dkp_err_set(err, DKP_E_IO, 1, "reply", "not connected"), -ENOTCONN;
	for (;;) {
		long used = dkp_smtp_reply_parse(c->in.p, c->in.len, r), got;

		if (used > 0) {
			memmove(c->in.p, c->in.p + used, c->in.len - (size_t)used);
			c->in.len -= (size_t)used;
			return 0;
		}
		if (used < 0 || c->in.len > IN_MAX)
			return dkp_err_set(err, DKP_E_IO, 1, "reply",
					   "the next hop sent something that is not an SMTP reply"),
			       -EPROTO;
		if ((got = read_some(c, deadline)) < 0)
			return dkp_err_sys(err, DKP_E_IO, 1, "reply", (int)-got, "%s",
					   got == -ETIMEDOUT ? "timeout waiting for a reply"
					   : got == -ECONNRESET ? "connection closed by the next hop"
								: "read error"),
			       (int)got;
		c->in.len += (size_t)got;
	}
}

int dkp_smtp_conn_tls(struct dkp_smtp_conn *c, SSL_CTX *ctx, const char *host,
		      int verify, struct dkp_err *err)
{
	double deadline = dkp_mono_now() + c->timeout_ms / 1000.0;
	int ret;

	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return dkp_err_ssl(err, DKP_E_CRYPTO, "starttls", "SSL_new"), -ENOMEM;
	if (verify) {
		unsigned char ip[16];
		int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

		SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
		/* an address is checked against the certificate's IP names */
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1
			  : SSL_set1_host(c->ssl, host) != 1)
			return dkp_err_ssl(err, DKP_E_CRYPTO, "starttls", "host name"), -EINVAL;
		if (!is_ip)
			SSL_set_tlsext_host_name(c->ssl, host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, host);
	}
	for (;;) {
		short ev;

		ERR_clear_error();
		if ((ret = SSL_connect(c->ssl)) == 1)
			break;
		if ((ev = ssl_want(c->ssl, ret)) == 0 || wait_fd(c->fd, ev, deadline) < 0) {
			long vr = SSL_get_verify_result(c->ssl);

			dkp_err_ssl(err, DKP_E_CRYPTO, "starttls", "TLS handshake with %s failed%s%s",
				    host, vr != X509_V_OK ? ": " : "",
				    vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
			err->temp = 1;
			return -ECONNRESET;
		}
	}
	c->in.len = 0;	/* RFC 3207 4.2: nothing from before the handshake */
	return 0;
}

int dkp_smtp_conn_pending(struct dkp_smtp_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	if (c->fd < 0)
		return 1;
	if (c->in.len || (c->ssl && SSL_pending(c->ssl)))
		return 1;
	return poll(&p, 1, 0) != 0;
}

void dkp_smtp_conn_close(struct dkp_smtp_conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in.len = 0;
}

void dkp_smtp_conn_free(struct dkp_smtp_conn *c)
{
	dkp_smtp_conn_close(c);
	dkp_buf_free(&c->in);
}
