/*
 * jetstream_commit.c — a JetStream worker's commit: publish every output
 * (signed ones to out_subject, failed ones with their reason to
 * failed_subject), wait for every acknowledgement, and only then
 * acknowledge the inputs (or hand deferred ones back with a delay).
 */
#include <errno.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "transport/jetstream_int.h"

/* Publish one output (async), its envelope from e (NULL or no sender:
 * the input's headers). Returns 0 or -errno (EMSGSIZE: too big). */
static int publish(struct dkp_tworker *w, const char *subj, const char *id,
		   natsMsg *in, const void *data, size_t len, const char *reason,
		   const struct envh *e)
{
	natsMsg *om = NULL;
	natsStatus s;
	size_t i;

	s = natsMsg_Create(&om, subj, NULL, data, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(om, H_ID, id);
	if (s == NATS_OK && e && e->sender) {
		s = natsMsgHeader_Set(om, H_SENDER, e->sender);
		for (i = 0; s == NATS_OK && i < e->nrcpt; i++)
			s = natsMsgHeader_Add(om, H_RECEIVER, e->rcpt[i]);
	} else if (s == NATS_OK) {
		dkp_js_copy_envelope(in, om);
	}
	if (s == NATS_OK && reason)
		s = natsMsgHeader_Set(om, H_ERROR, reason);
	if (s == NATS_OK)
		s = js_PublishMsgAsync(w->js, &om, NULL);
	natsMsg_Destroy(om);	/* NULL when the library took it */
	return dkp_js_status_errno(s);
}

/* The reason for a header value: printable ASCII, one line. */
static void reason_of(const struct dkp_tmsg *m, char *out, size_t outsz)
{
	size_t i;

	snprintf(out, outsz, "%s: %s", m->err.step[0] ? m->err.step : "error", m->err.msg);
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < ' ' || (unsigned char)out[i] >= 127)
			out[i] = '?';
}

static void defer_msg(struct dkp_tmsg *m, int e, const char *what)
{
	dkp_err_set(&m->err, DKP_E_IO, 1, "publish", "%s: %s", what, strerror(e));
	m->err.sys_errno = e;
	m->outcome = DKP_OUT_DEFERRED;
}

static int is_output(const struct dkp_tmsg *m)
{
	return m->outcome == DKP_OUT_SIGNED || m->outcome == DKP_OUT_ESP_ONLY;
}

/* 1. The signed outputs, each with its envelope; returns how many went. */
static int publish_signed(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	const struct dkp_js_config *jc = &w->j->jc;
	size_t i;
	int sent = 0, k, rc;

	for (i = 0; i < n; i++) {
		struct envh e;

		if (!w->in[i] || !is_output(&m[i]))
			continue;
		if (dkp_js_out_envelope(w->in[i], &m[i], &e) < 0) {
			m[i].outcome = DKP_OUT_FAILED;	/* published in 2. */
			continue;
		}
		dkp_buf_reset(&w->scratch);
		for (k = 1; k < m[i].nout; k++)
			dkp_buf_add(&w->scratch, m[i].out[k].iov_base, m[i].out[k].iov_len);
		rc = publish(w, jc->out_subject, m[i].id, w->in[i], w->scratch.p,
			     w->scratch.len, NULL, &e);
		dkp_js_envelope_free(e.sender, e.rcpt, e.nrcpt);
		if (rc == -EMSGSIZE) {
			dkp_err_set(&m[i].err, DKP_E_LIMIT, 0, "publish",
				    "the signed message (%zu bytes) exceeds the server's max_payload (%lld)",
				    w->scratch.len, (long long)w->j->max_payload);
			m[i].outcome = DKP_OUT_FAILED;
		} else if (rc < 0) {
			defer_msg(&m[i], -rc, "cannot publish the signed message");
		} else {
			sent++;
		}
	}
	return sent;
}

/* 2. The failed ones, with the reason; the payload as it came (or none,
 * if with the headers it no longer fits). Returns how many went. */
static int publish_failed(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	const struct dkp_js_config *jc = &w->j->jc;
	char reason[sizeof(m->err.msg) + 32];
	size_t i;
	int sent = 0, rc;

	for (i = 0; i < n; i++) {
		if (!w->in[i] || m[i].outcome != DKP_OUT_FAILED)
			continue;
		reason_of(&m[i], reason, sizeof(reason));
		rc = publish(w, jc->failed_subject, m[i].id, w->in[i],
			     natsMsg_GetData(w->in[i]),
			     (size_t)natsMsg_GetDataLength(w->in[i]), reason, NULL);
		if (rc == -EMSGSIZE)
			rc = publish(w, jc->failed_subject, m[i].id, w->in[i], "", 0,
				     reason, NULL);
		if (rc < 0)
			defer_msg(&m[i], -rc, "cannot publish to the failed subject");
		else
			sent++;
	}
	return sent;
}

/* 3. Every publish acknowledged, or every output deferred (none of the
 * inputs is then acknowledged). */
static void wait_acks(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	jsPubOptions po;
	natsStatus s;
	natsMsgList pending;
	size_t i;
	int e;

	jsPubOptions_Init(&po);
	po.MaxWait = PUB_WAIT_MS;
	s = js_PublishAsyncComplete(w->js, &po);
	if (s == NATS_OK && atomic_load(&w->pub_errors) == 0)
		return;
	e = s == NATS_OK ? EAGAIN : -dkp_js_status_errno(s);
	if (js_PublishAsyncGetPendingList(&pending, w->js) == NATS_OK)
		natsMsgList_Destroy(&pending);
	if (e == 0 || e == EIO)
		e = EAGAIN;
	for (i = 0; i < n; i++)
		if (w->in[i] && (is_output(&m[i]) || m[i].outcome == DKP_OUT_FAILED))
			defer_msg(&m[i], e, "publish not acknowledged by the stream");
}

/* 4. One input acknowledged (its output is stored) or handed back. */
static void settle_input(struct dkp_tworker *w, size_t i, struct dkp_tmsg *m)
{
	const struct dkp_js_config *jc = &w->j->jc;

	if (m->outcome == DKP_OUT_DEFERRED) {
		uint64_t d = w->delivered[i] ? w->delivered[i] - 1 : 0;
		int64_t delay = jc->nak_delay * 1000 *
				(1LL << (d < NAK_MAX_SHIFT ? d : NAK_MAX_SHIFT));

		/* a publish that failed: the cluster is in trouble; come
		 * back soon, the pool pauses meanwhile */
		if (!strcmp(m->err.step, "publish"))
			delay = 1000;
		natsMsg_NakWithDelay(w->in[i], delay, NULL);
	} else if (is_output(m) || m->outcome == DKP_OUT_FAILED) {
		natsMsg_Ack(w->in[i], NULL);
	} else if (m->outcome != DKP_OUT_GONE) {
		/* no outcome (a bug): never acknowledged, handed back */
		dkp_error("jetstream: %s: no outcome after signing (%d); handed back to the stream",
			  m->id, m->outcome);
		natsMsg_Nak(w->in[i], NULL);
		dkp_err_set(&m->err, DKP_E_IO, 1, "commit", "no outcome after signing");
		m->outcome = DKP_OUT_DEFERRED;
	}
	m->claimed = 0;
	if (w->budget && m->held)
		dkp_budget_give(w->budget, m->held);
	m->held = 0;
	natsMsg_Destroy(w->in[i]);
	w->in[i] = NULL;
}

int dkp_js_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	size_t i;
	int sent;

	atomic_store(&w->pub_errors, 0);
	sent = publish_signed(w, m, n);
	sent += publish_failed(w, m, n);
	if (sent)
		wait_acks(w, m, n);
	for (i = 0; i < n; i++)
		if (w->in[i])
			settle_input(w, i, &m[i]);
	return 0;
}
