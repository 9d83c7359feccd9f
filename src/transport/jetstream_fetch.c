/*
 * jetstream_fetch.c — a JetStream worker's side of the engine loop: bind
 * to the durable pull consumer, fetch a batch, load each message (its ID,
 * the envelope headers rendered as lines, the payload) under the memory
 * budget.
 */
#include <errno.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "transport/jetstream_int.h"

/* Every publish acknowledgement (library thread): errors fail the batch;
 * a duplicate is a re-publish after a redelivery, dropped by the stream. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
		       void *closure)
{
	struct dkp_tworker *w = closure;

	(void)js;
	if (pae != NULL || pa == NULL)
		atomic_fetch_add(&w->pub_errors, 1);
	else if (pa->Duplicate)
		atomic_fetch_add(&w->j->dups, 1);
	natsMsg_Destroy(msg);
}

int dkp_js_worker_new(struct dkp_transport *t, unsigned id, int want_uring,
			 unsigned depth, struct dkp_tworker **out)
{
	struct dkp_js *j = (struct dkp_js *)t;
	struct dkp_tworker *w = dkp_calloc(1, sizeof(*w));
	jsOptions jo;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	(void)want_uring;
	(void)depth;
	w->j = j;
	w->id = id;
	dkp_buf_init(&w->scratch);
	atomic_init(&w->pub_errors, 0);
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	jo.PublishAsync.AckHandler = on_pub_ack;
	jo.PublishAsync.AckHandlerClosure = w;
	jo.PublishAsync.MaxPending = 4096;
	s = natsConnection_JetStream(&w->js, j->nc, &jo);
	if (s == NATS_OK) {
		jsSubOptions_Init(&so);
		so.Stream = j->jc.in_stream;
		so.Consumer = j->jc.consumer;
		s = js_PullSubscribe(&w->sub, w->js, j->jc.in_subject,
				     j->jc.consumer, &jo, &so, &jerr);
	}
	if (s != NATS_OK) {
		dkp_error("jetstream: worker %u cannot bind to consumer %s: %s", id,
			  j->jc.consumer, dkp_js_status_text(s));
		jsCtx_Destroy(w->js);
		dkp_buf_free(&w->scratch);
		dkp_free(w);
		return dkp_js_status_errno(s);
	}
	*out = w;
	return 0;
}

static void drop_inputs(struct dkp_tworker *w)
{
	size_t i;

	for (i = 0; i < w->cap; i++) {
		natsMsg_Destroy(w->in[i]);
		w->in[i] = NULL;
	}
}

void dkp_js_worker_free(struct dkp_tworker *w)
{
	if (w == NULL)
		return;
	drop_inputs(w);
	natsSubscription_Unsubscribe(w->sub);
	natsSubscription_Destroy(w->sub);
	jsCtx_Destroy(w->js);
	dkp_free(w->in);
	dkp_free(w->delivered);
	dkp_buf_free(&w->scratch);
	dkp_free(w);
}

int dkp_js_worker_uring(const struct dkp_tworker *w)
{
	(void)w;
	return 0;
}

/* A queue ID usable as a file name elsewhere: printable, no space or '/'. */
static int id_ok(const char *s)
{
	size_t n;

	for (n = 0; s[n]; n++)
		if ((unsigned char)s[n] <= ' ' || (unsigned char)s[n] >= 127 || s[n] == '/')
			return 0;
	return n > 0 && n <= DKP_QID_MAX;
}

/* Bytes of the envelope lines fetch renders for msg. */
static size_t envelope_bytes(natsMsg *msg, const char **snd, const char ***rcpt,
			     int *nrcpt)
{
	size_t n = 0;
	int i;

	*snd = NULL;
	*rcpt = NULL;
	*nrcpt = 0;
	if (natsMsgHeader_Get(msg, H_SENDER, snd) == NATS_OK && *snd)
		n += strlen("x-sender: \r\n") + strlen(*snd);
	if (natsMsgHeader_Values(msg, H_RECEIVER, rcpt, nrcpt) == NATS_OK)
		for (i = 0; i < *nrcpt; i++)
			n += strlen("x-receiver: \r\n") + strlen((*rcpt)[i]);
	else
		*nrcpt = 0;
	return n;
}

static void put(char **p, const char *s, size_t n)
{
	memcpy(*p, s, n);
	*p += n;
}

/* One fetched message into m: its ID, the envelope lines and the payload
 * in m->buf. Returns 0, or 1 when the budget cannot hold it now. */
static int load_one(struct dkp_tworker *w, size_t i, struct dkp_tmsg *m,
		    uint64_t max_bytes)
{
	natsMsg *msg = w->in[i];
	jsMsgMetaData *meta = NULL;
	const char *id = NULL, *snd, **rcpt;
	const char *data = natsMsg_GetData(msg);
	size_t dlen = (size_t)natsMsg_GetDataLength(msg), elen;
	uint64_t need;
	int nrcpt, k;
	char *p;

	memset(m->pub, 0, sizeof(m->pub));
	m->outcome = -1;
	m->claimed = 1;
	m->nout = 0;
	m->held = 0;
	m->fd = -1;
	m->copy = 0;
	m->len = 0;
	m->t_claim = dkp_mono_now();
	dkp_err_clear(&m->err);
	w->delivered[i] = 1;
	if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
		w->delivered[i] = meta->NumDelivered;
		if (natsMsgHeader_Get(msg, H_ID, &id) != NATS_OK || id == NULL || !id_ok(id))
			snprintf(m->id, sizeof(m->id), "%s-seq-%llu", meta->Stream,
				 (unsigned long long)meta->Sequence.Stream);
		else
			snprintf(m->id, sizeof(m->id), "%s", id);
		jsMsgMetaData_Destroy(meta);
	} else if (natsMsgHeader_Get(msg, H_ID, &id) == NATS_OK && id && id_ok(id)) {
		snprintf(m->id, sizeof(m->id), "%s", id);
	} else {
		/* cannot happen for a JetStream delivery */
		snprintf(m->id, sizeof(m->id), "unknown");
	}
	elen = envelope_bytes(msg, &snd, &rcpt, &nrcpt);
	if ((uint64_t)dlen + elen > max_bytes) {
		dkp_err_set(&m->err, DKP_E_LIMIT, 0, "read",
			    "message of %zu bytes exceeds max_message_size (%llu)",
			    dlen + elen, (unsigned long long)max_bytes);
		m->outcome = DKP_OUT_FAILED;
		free((void *)rcpt);
		return 0;
	}
	/* the budget as qdir.c takes it: the first message waits, later
	 * ones only if they fit now; the rest go back at once. A payload
	 * with bare LFs is parsed from a CRLF copy: that counts too. */
	need = (uint64_t)dlen + elen + BUDGET_SLACK + dkp_budget_crlf_bytes(data, dlen);
	if (w->budget && w->taken && !dkp_budget_try(w->budget, need)) {
		free((void *)rcpt);
		return 1;
	}
	if (w->budget && !w->taken)
		dkp_budget_take(w->budget, need);
	m->held = w->budget ? need : 0;
	w->taken += m->held;
	if (m->cap < dlen + elen + 1) {
		dkp_free(m->buf);
		m->cap = dlen + elen + 1;
		m->buf = dkp_malloc(m->cap);
	}
	p = m->buf;
	if (snd) {
		put(&p, "x-sender: ", 10);
		put(&p, snd, strlen(snd));
		put(&p, "\r\n", 2);
	}
	for (k = 0; k < nrcpt; k++) {
		put(&p, "x-receiver: ", 12);
		put(&p, rcpt[k], strlen(rcpt[k]));
		put(&p, "\r\n", 2);
	}
	put(&p, data, dlen);
	*p = '\0';
	m->len = (size_t)(p - m->buf);
	free((void *)rcpt);
	return 0;
}

int dkp_js_fetch(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
		    uint64_t max_bytes, struct dkp_budget *budget)
{
	natsMsgList list = { NULL, 0 };
	jsFetchRequest req;
	natsStatus s;
	size_t i, got;

	if (w->cap < n) {
		drop_inputs(w);
		dkp_free(w->in);
		dkp_free(w->delivered);
		w->in = dkp_calloc(n, sizeof(*w->in));
		w->delivered = dkp_calloc(n, sizeof(*w->delivered));
		w->cap = n;
	}
	w->budget = budget;
	w->taken = 0;
	if (max_bytes > (uint64_t)w->j->max_payload)
		max_bytes = (uint64_t)w->j->max_payload;
	jsFetchRequest_Init(&req);
	req.Batch = (int)n;
	req.Expires = (int64_t)FETCH_WAIT_MS * 1000000;
	s = natsSubscription_FetchRequest(&list, w->sub, &req);
	if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
		natsMsgList_Destroy(&list);
		return 0;
	}
	if (s != NATS_OK) {
		natsMsgList_Destroy(&list);
		return dkp_js_status_errno(s);
	}
	got = (size_t)list.Count < n ? (size_t)list.Count : n;
	for (i = 0; i < got; i++) {
		w->in[i] = list.Msgs[i];
		list.Msgs[i] = NULL;
	}
	natsMsgList_Destroy(&list);	/* frees any extra (never: Batch = n) */
	for (i = 0; i < got; i++)
		if (load_one(w, i, &m[i], max_bytes)) {
			/* over the budget now: straight back, no delay */
			natsMsg_Nak(w->in[i], NULL);
			m[i].claimed = 0;
			m[i].outcome = DKP_OUT_GONE;
		}
	return (int)got;
}

