/*
 * smtp_session.c — SMTP/LMTP sessions and transactions; see
 * smtp_session.h.
 *
 * A transaction is a list of commands: MAIL, one RCPT per recipient, and
 * DATA (unless the server offers CHUNKING: then BDAT comes after the
 * replies). With PIPELINING they go out in groups of GROUP commands and
 * the replies are read after each group (RFC 2920 3.1: never so many
 * unread that both sides block on full buffers); without it, one at a
 * time, stopping after a refused MAIL or when no RCPT was accepted.
 */
#include "relay/smtp_session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define GROUP 100
/* a connection idle longer than this is closed before the next use */
#define IDLE_MAX 60.0

void dkp_smtp_session_init(struct dkp_smtp_session *s,
			   const struct dkp_relay_config *cf, SSL_CTX *ctx,
			   const char *helo)
{
	memset(s, 0, sizeof(*s));
	s->cf = cf;
	s->ctx = ctx;
	s->helo = helo;
	dkp_smtp_conn_init(&s->conn, (int)(cf->timeout * 1000));
	dkp_buf_init(&s->cmd);
	dkp_buf_init(&s->data);
}

/* Send one command line (CRLF added) and read its reply. */
static int command(struct dkp_smtp_session *s, const char *line,
		   struct dkp_smtp_reply *r, struct dkp_err *err)
{
	int rc;

	s->cmd.len = 0;
	dkp_buf_adds(&s->cmd, line);
	dkp_buf_add(&s->cmd, "\r\n", 2);
	if ((rc = dkp_smtp_conn_write(&s->conn, s->cmd.p, s->cmd.len, err)) < 0)
		return rc;
	return dkp_smtp_conn_reply(&s->conn, r, err);
}

/* A reply that is not what we wanted, as a temporary session error. */
static int refused(const char *what, const struct dkp_smtp_reply *r,
		   struct dkp_err *err)
{
	char buf[256];

	dkp_smtp_reply_str(r, buf, sizeof(buf));
	dkp_err_set(err, DKP_E_IO, 1, "session", "%s: %s", what, buf);
	return -EPROTO;
}

/* EHLO (LHLO for LMTP; HELO when EHLO is refused) and its keywords. */
static int hello(struct dkp_smtp_session *s, struct dkp_err *err)
{
	struct dkp_smtp_reply r;
	char line[300];
	int rc;

	snprintf(line, sizeof(line), "%s %s", s->cf->lmtp ? "LHLO" : "EHLO", s->helo);
	if ((rc = command(s, line, &r, err)) < 0)
		return rc;
	if (r.code / 100 == 2) {
		dkp_smtp_ext_parse(&r, &s->ext);
		return 0;
	}
	memset(&s->ext, 0, sizeof(s->ext));
	if (s->cf->lmtp || r.code / 100 != 5)
		return refused(line, &r, err);
	snprintf(line, sizeof(line), "HELO %s", s->helo);
	if ((rc = command(s, line, &r, err)) < 0)
		return rc;
	return r.code / 100 == 2 ? 0 : refused(line, &r, err);
}

/* STARTTLS as configured, then EHLO again (RFC 3207 4.2). */
static int starttls(struct dkp_smtp_session *s, struct dkp_err *err)
{
	struct dkp_smtp_reply r;
	int rc;

	if (s->cf->tls == DKP_RELAY_TLS_NONE || s->ctx == NULL)
		return 0;
	if (!s->ext.starttls) {
		if (s->cf->tls == DKP_RELAY_TLS_STARTTLS)
			return 0;
		return dkp_err_set(err, DKP_E_IO, 1, "starttls",
				   "relay_tls = require, but the next hop offers no STARTTLS"),
		       -EPROTO;
	}
	if ((rc = command(s, "STARTTLS", &r, err)) < 0)
		return rc;
	if (r.code != 220)
		return refused("STARTTLS", &r, err);
	if ((rc = dkp_smtp_conn_tls(&s->conn, s->ctx, s->cf->host, s->cf->tls_verify, err)) < 0)
		return rc;
	return hello(s, err);
}

/* Connect, greeting, hello, STARTTLS. */
static int session_open(struct dkp_smtp_session *s, struct dkp_err *err)
{
	struct dkp_smtp_reply r;
	unsigned port = s->cf->port ? s->cf->port : s->cf->lmtp ? 24 : 25;
	int rc;

	if ((rc = dkp_smtp_conn_open(&s->conn, s->cf->host, port, err)) < 0)
		return rc;
	if ((rc = dkp_smtp_conn_reply(&s->conn, &r, err)) == 0 && r.code != 220)
		rc = refused("greeting", &r, err);
	if (rc == 0)
		rc = hello(s, err);
	if (rc == 0)
		rc = starttls(s, err);
	if (rc < 0) {
		dkp_smtp_conn_close(&s->conn);
		return rc;
	}
	s->transactions = 0;
	return 0;
}

void dkp_smtp_session_quit(struct dkp_smtp_session *s)
{
	if (s->conn.fd >= 0) {
		struct dkp_smtp_reply r;
		struct dkp_err err;
		int saved = s->conn.timeout_ms;

		/* best effort, and quick: the mail is done either way */
		s->conn.timeout_ms = saved < 2000 ? saved : 2000;
		command(s, "QUIT", &r, &err);
		s->conn.timeout_ms = saved;
	}
	dkp_smtp_conn_close(&s->conn);
}

void dkp_smtp_session_free(struct dkp_smtp_session *s)
{
	dkp_smtp_session_quit(s);
	dkp_smtp_conn_free(&s->conn);
	dkp_buf_free(&s->cmd);
	dkp_buf_free(&s->data);
}

void dkp_smtp_result_free(struct dkp_smtp_result *res)
{
	size_t i;

	for (i = 0; i < res->n; i++)
		dkp_free(res->r[i].why);
	dkp_free(res->r);
	res->r = NULL;
	res->n = 0;
}

/* Give recipient i its outcome (once: the first one stands). */
static void set_rcpt(struct dkp_smtp_result *res, size_t i, int code, const char *why)
{
	if (res->r[i].code != 0)
		return;
	res->r[i].code = code;
	if (code / 100 != 2)
		res->r[i].why = dkp_strdup(why);
}

/* Every recipient without an outcome gets this one. */
static void set_rest(struct dkp_smtp_result *res, int code, const char *why)
{
	size_t i;

	for (i = 0; i < res->n; i++)
		set_rcpt(res, i, code, why);
}

/* The outcome text of reply r to command what. */
static void reason(char *out, size_t outsz, const struct dkp_smtp_session *s,
		   const char *what, const struct dkp_smtp_reply *r)
{
	char rs[DKP_SMTP_REPLY_TEXT];

	dkp_smtp_reply_str(r, rs, sizeof(rs));
	if (snprintf(out, outsz, "%s said to %s: %s", s->cf->host, what, rs) >= (int)outsz)
		out[outsz - 1] = '\0';	/* cut: the code and start are what matter */
}

/* One transaction's state. Commands are numbered: 0 MAIL, 1..n RCPT,
 * n + 1 DATA (when not CHUNKING). */
struct txn {
	struct dkp_smtp_session *s;
	const struct dkp_relay_env *e;
	struct dkp_smtp_result *res;
	unsigned char *accepted;	/* RCPT got 2xx, final reply pending */
	size_t naccepted;
	int mail_code, data_code;	/* 0: not answered (or not sent) */
	char mail_why[600], why[600];
	int eightbit, utf8;
	int closing;			/* a 421: close after this */
	unsigned replies;		/* read in this transaction */
};

/* Append command k of t to s->cmd. */
static void add_command(struct txn *t, size_t k)
{
	struct dkp_buf *b = &t->s->cmd;
	const struct dkp_smtp_ext *x = &t->s->ext;

	if (k == 0) {
		dkp_buf_adds(b, "MAIL FROM:<");
		dkp_buf_add(b, t->e->sender.p ? t->e->sender.p : "", t->e->sender.len);
		dkp_buf_addc(b, '>');
		if (x->size)
			dkp_buf_printf(b, " SIZE=%zu", t->e->msg_len);
		if (t->eightbit && x->eightbitmime)
			dkp_buf_adds(b, " BODY=8BITMIME");
		if (t->utf8)
			dkp_buf_adds(b, " SMTPUTF8");
	} else if (k <= t->e->nrcpt) {
		dkp_buf_adds(b, "RCPT TO:<");
		dkp_buf_add(b, t->e->rcpt[k - 1].p, t->e->rcpt[k - 1].len);
		dkp_buf_addc(b, '>');
	} else {
		dkp_buf_adds(b, "DATA");
	}
	dkp_buf_add(b, "\r\n", 2);
}

/* Record reply r to command k. */
static void on_reply(struct txn *t, size_t k, const struct dkp_smtp_reply *r)
{
	char what[400];

	t->replies++;
	if (r->code == 421)
		t->closing = 1;
	if (k == 0) {
		t->mail_code = r->code;
		reason(t->mail_why, sizeof(t->mail_why), t->s, "MAIL FROM", r);
	} else if (k <= t->e->nrcpt) {
		size_t i = k - 1;

		if (t->mail_code / 100 != 2) {
			set_rcpt(t->res, i, t->mail_code, t->mail_why);
		} else if (r->code / 100 == 2) {
			t->accepted[i] = 1;
			t->naccepted++;
		} else {
			snprintf(what, sizeof(what), "RCPT TO:<%.*s>",
				 (int)(t->e->rcpt[i].len > 320 ? 320 : t->e->rcpt[i].len),
				 t->e->rcpt[i].p);
			reason(t->why, sizeof(t->why), t->s, what, r);
			set_rcpt(t->res, i, r->code, t->why);
		}
	} else {
		t->data_code = r->code;
		reason(t->why, sizeof(t->why), t->s, "DATA", r);
	}
}

/* Send commands [0, ncmd) in groups, reading each group's replies. */
static int send_commands(struct txn *t, size_t ncmd, struct dkp_err *err)
{
	size_t group = t->s->ext.pipelining || t->s->cf->lmtp ? GROUP : 1;
	size_t start, k;
	struct dkp_smtp_reply r;
	int rc;

	for (start = 0; start < ncmd; start += group) {
		size_t end = start + group < ncmd ? start + group : ncmd;

		/* without PIPELINING: no RCPT after a refused MAIL, no
		 * DATA without an accepted RCPT */
		if (group == 1 && start > 0 && t->mail_code / 100 != 2)
			break;
		if (group == 1 && start == t->e->nrcpt + 1 && t->naccepted == 0)
			break;
		t->s->cmd.len = 0;
		for (k = start; k < end; k++)
			add_command(t, k);
		if ((rc = dkp_smtp_conn_write(&t->s->conn, t->s->cmd.p, t->s->cmd.len, err)) < 0)
			return rc;
		for (k = start; k < end; k++) {
			if ((rc = dkp_smtp_conn_reply(&t->s->conn, &r, err)) < 0)
				return rc;
			on_reply(t, k, &r);
		}
	}
	return 0;
}

/* The reply (SMTP) or replies (LMTP: one per accepted recipient, RFC
 * 2033 4.2) to the end of the data. */
static int read_finals(struct txn *t, struct dkp_err *err)
{
	struct dkp_smtp_reply r;
	size_t i, j;
	int rc;

	for (i = 0; i < t->e->nrcpt; i++) {
		if (!t->accepted[i])
			continue;
		if ((rc = dkp_smtp_conn_reply(&t->s->conn, &r, err)) < 0)
			return rc;
		t->replies++;
		if (r.code == 421)
			t->closing = 1;
		reason(t->why, sizeof(t->why), t->s, "the end of the data", &r);
		if (t->s->cf->lmtp) {
			set_rcpt(t->res, i, r.code, t->why);
			continue;
		}
		for (j = i; j < t->e->nrcpt; j++)	/* SMTP: one reply for all */
			if (t->accepted[j])
				set_rcpt(t->res, j, r.code, t->why);
		break;
	}
	if (t->s->after_final)
		t->s->after_final(t->s->after_final_arg);
	return 0;
}

/* RSET after an aborted transaction, so the connection can be reused. */
static int reset(struct txn *t, struct dkp_err *err)
{
	struct dkp_smtp_reply r;
	int rc;

	if ((rc = command(t->s, "RSET", &r, err)) < 0)
		return rc;
	if (r.code == 421 || r.code / 100 != 2)
		t->closing = 1;
	return 0;
}

/* After the envelope: BDAT (CHUNKING) or the data after DATA's 354. */
static int send_body(struct txn *t, struct dkp_err *err)
{
	struct dkp_smtp_session *s = t->s;
	const struct dkp_relay_env *e = t->e;
	int rc, crlf = e->msg_len >= 2 && e->msg[e->msg_len - 2] == '\r' &&
		       e->msg[e->msg_len - 1] == '\n';
	size_t i;

	if (t->naccepted == 0 && t->data_code != 354)
		return t->mail_code ? reset(t, err) : 0;
	if (s->ext.chunking && !s->cf->lmtp) {
		s->cmd.len = 0;
		dkp_buf_printf(&s->cmd, "BDAT %zu LAST\r\n", e->msg_len + (crlf ? 0 : 2));
		if ((rc = dkp_smtp_conn_write(&s->conn, s->cmd.p, s->cmd.len, err)) < 0 ||
		    (rc = dkp_smtp_conn_write(&s->conn, e->msg, e->msg_len, err)) < 0 ||
		    (!crlf && (rc = dkp_smtp_conn_write(&s->conn, "\r\n", 2, err)) < 0))
			return rc;
		return read_finals(t, err);
	}
	if (t->data_code != 354) {
		/* DATA refused: its reply is every accepted recipient's */
		for (i = 0; i < e->nrcpt; i++)
			if (t->accepted[i])
				set_rcpt(t->res, i, t->data_code ? t->data_code : 451, t->why);
		return reset(t, err);
	}
	s->data.len = 0;
	if (t->naccepted == 0) {
		/* RFC 2920 3.1: 354 with no recipient: end an empty data */
		struct dkp_smtp_reply r;

		if ((rc = dkp_smtp_conn_write(&s->conn, ".\r\n", 3, err)) < 0)
			return rc;
		return dkp_smtp_conn_reply(&s->conn, &r, err);
	}
	dkp_smtp_dot_stuff(&s->data, e->msg, e->msg_len);
	if ((rc = dkp_smtp_conn_write(&s->conn, s->data.p, s->data.len, err)) < 0)
		return rc;
	return read_finals(t, err);
}

/* Refuse e without sending it when the next hop cannot take it. */
static int precheck(struct txn *t)
{
	char why[300];

	if (t->s->ext.size && t->e->msg_len > t->s->ext.size) {
		snprintf(why, sizeof(why),
			 "5.3.4 message size %zu exceeds the SIZE limit %llu of %s (not sent)",
			 t->e->msg_len, (unsigned long long)t->s->ext.size, t->s->cf->host);
		set_rest(t->res, 552, why);
		return -1;
	}
	if (t->utf8 && !t->s->ext.smtputf8) {
		snprintf(why, sizeof(why),
			 "5.6.7 non-ASCII address, and %s offers no SMTPUTF8 (not sent)",
			 t->s->cf->host);
		set_rest(t->res, 553, why);
		return -1;
	}
	return 0;
}

/* Is the envelope of e non-ASCII (RFC 6531)? */
static int env_utf8(const struct dkp_relay_env *e)
{
	size_t i;

	if (e->sender.len && dkp_smtp_has_8bit(e->sender.p, e->sender.len))
		return 1;
	for (i = 0; i < e->nrcpt; i++)
		if (dkp_smtp_has_8bit(e->rcpt[i].p, e->rcpt[i].len))
			return 1;
	return 0;
}

/* Open the session if needed (a stale or long-idle one is replaced). */
static int ready(struct dkp_smtp_session *s, int *reused, struct dkp_err *err)
{
	*reused = 0;
	if (s->conn.fd >= 0 &&
	    (dkp_smtp_conn_pending(&s->conn) || dkp_mono_now() - s->last_used > IDLE_MAX))
		dkp_smtp_session_quit(s);
	if (s->conn.fd >= 0) {
		*reused = 1;
		return 0;
	}
	return session_open(s, err);
}

/* One attempt of the transaction; < 0: the connection failed. */
static int attempt(struct txn *t, struct dkp_err *err)
{
	size_t ncmd = 1 + t->e->nrcpt + (t->s->ext.chunking && !t->s->cf->lmtp ? 0 : 1);
	int rc;

	if (precheck(t) < 0)
		return 0;
	if ((rc = send_commands(t, ncmd, err)) < 0)
		return rc;
	return send_body(t, err);
}

void dkp_smtp_deliver(struct dkp_smtp_session *s, const struct dkp_relay_env *e,
		      struct dkp_smtp_result *res)
{
	struct txn t;
	struct dkp_err err;
	int reused, rc, tries;

	res->n = e->nrcpt;
	res->r = dkp_calloc(e->nrcpt ? e->nrcpt : 1, sizeof(*res->r));
	memset(&t, 0, sizeof(t));
	t.s = s;
	t.e = e;
	t.res = res;
	t.eightbit = dkp_smtp_has_8bit(e->msg, e->msg_len);
	t.utf8 = env_utf8(e);
	t.accepted = dkp_calloc(e->nrcpt ? e->nrcpt : 1, 1);
	dkp_err_clear(&err);
	for (tries = 0; tries < 2; tries++) {
		if ((rc = ready(s, &reused, &err)) == 0 && (rc = attempt(&t, &err)) == 0)
			break;
		dkp_smtp_conn_close(&s->conn);
		/* a reused connection the server had dropped meanwhile:
		 * once more on a fresh one, if nothing was answered yet */
		if (rc < 0 && (!reused || t.replies > 0))
			break;
	}
	if (rc < 0) {
		snprintf(t.why, sizeof(t.why), "4.4.2 %s:%u: %s", s->cf->host,
			 s->cf->port ? s->cf->port : s->cf->lmtp ? 24 : 25, err.msg);
		set_rest(res, 451, t.why);
	}
	if (t.closing)
		dkp_smtp_session_quit(s);
	s->last_used = dkp_mono_now();
	s->transactions++;
	dkp_free(t.accepted);
}
