/* relay_js.c — the relay reading the output stream; see relay_js.h. */
#include "relay/relay_js.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "relay/relay_deliver.h"
#include "relay/relay_js_rec.h"
#include "transport/jetstream.h"

#define FETCH_MS 500
#define PUB_MS 10000
#define API_MS 5000
#define REASON_HDR 4000		/* X-Dkimpress-Error at most this long */

#define H_SENDER "X-Sender"
#define H_RECEIVER "X-Receiver"
#define H_ID "Nats-Msg-Id"
#define H_ERROR "X-Dkimpress-Error"
#define H_ATTEMPTS "X-Dkimpress-Attempts"
#define H_FIRST "X-Dkimpress-First"
#define H_NEXT "X-Dkimpress-Next"

struct rjs {
	const struct dkp_config *conf;
	const struct dkp_js_config *jc;
	struct dkp_js *j;
	const char *consumer;
	atomic_int stop;
	atomic_uint running;
	int once;
	int crash_republished;	/* DKIMPRESS_RELAY_CRASH_REPUBLISHED */
	int trace;		/* DKIMPRESS_RELAY_TRACE fd, or -1 */
};

struct rjw {
	struct rjs *r;
	struct dkp_relay_worker w;	/* session, counts, window */
	jsCtx *js;
	natsSubscription *sub;
	kvStore *kv;			/* the outcome records (relay_js_rec.h) */
	pthread_t th;
	struct dkp_buf file, why, why4, rec;
	uint64_t held, republished, replayed, errors;
};

/* What the stream and the headers say about one message. */
struct rjmsg {
	natsMsg *m;
	const char *id;
	char idbuf[40];
	uint64_t nd;		/* this delivery's number (1: the first) */
	uint64_t seq;		/* the stream's sequence number */
	unsigned attempts;	/* failed attempts before this one */
	int64_t first;		/* the first failed attempt; 0: none yet */
	int64_t stored;		/* when the stream stored it */
	int has_next;
	int64_t next;
};

static void trace(struct rjs *r, const char *what, const char *id)
{
	char line[768];
	int n;

	if (r->trace < 0)
		return;
	n = snprintf(line, sizeof(line), "%s %s\n", what, id);
	if (n > 0 && write(r->trace, line, (size_t)n) < 0)
		dkp_warn("relay: cannot write the trace file");
}

static int64_t hdr_num(natsMsg *m, const char *name, int *found)
{
	const char *v = NULL;

	if (natsMsgHeader_Get(m, name, &v) != NATS_OK || v == NULL) {
		if (found)
			*found = 0;
		return 0;
	}
	if (found)
		*found = 1;
	return strtoll(v, NULL, 10);
}

/* Fill x from m's metadata and headers. */
static void describe(struct rjmsg *x, natsMsg *m)
{
	jsMsgMetaData *md = NULL;

	memset(x, 0, sizeof(*x));
	x->m = m;
	x->nd = 1;
	if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
		x->nd = md->NumDelivered ? md->NumDelivered : 1;
		x->stored = md->Timestamp / 1000000000LL;
		x->seq = md->Sequence.Stream;
		snprintf(x->idbuf, sizeof(x->idbuf), "seq%" PRIu64, md->Sequence.Stream);
		jsMsgMetaData_Destroy(md);
	}
	if (natsMsgHeader_Get(m, H_ID, &x->id) != NATS_OK || x->id == NULL || !*x->id)
		x->id = x->idbuf;
	x->attempts = (unsigned)hdr_num(m, H_ATTEMPTS, NULL);
	x->first = hdr_num(m, H_FIRST, NULL);
	x->next = hdr_num(m, H_NEXT, &x->has_next);
	/* earlier deliveries were failed attempts, except a republished
	 * remainder's first one (the hold) */
	if (x->nd > (uint64_t)(x->has_next ? 2 : 1))
		x->attempts += (unsigned)(x->nd - (x->has_next ? 2 : 1));
}

/* The headers as envelope lines, then the payload, into b. */
static void render(struct dkp_buf *b, natsMsg *m)
{
	const char *snd = NULL, **rc = NULL;
	int n = 0, i;

	b->len = 0;
	if (natsMsgHeader_Get(m, H_SENDER, &snd) == NATS_OK && snd) {
		dkp_buf_printf(b, "x-sender: %s\r\n", *snd ? snd : "<>");
		if (natsMsgHeader_Values(m, H_RECEIVER, &rc, &n) == NATS_OK) {
			for (i = 0; i < n; i++)
				dkp_buf_printf(b, "x-receiver: %s\r\n", rc[i]);
			free((void *)rc);
		}
	}
	dkp_buf_add(b, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
}

/* One header line's worth of text: control bytes out. */
static void header_text(char *s)
{
	size_t i;

	if (strlen(s) > REASON_HDR)
		s[REASON_HDR] = '\0';
	for (i = 0; s[i]; i++)
		if (s[i] == '\n')
			s[i] = ';';
		else if ((unsigned char)s[i] < ' ' || (unsigned char)s[i] >= 127)
			s[i] = '?';
}

/* A reply code's class as dkp_relay_classify counts it (anything but
 * 2xx and 5xx is a 4xx). */
static int cls_of(int code)
{
	return code / 100 == 2 || code / 100 == 5 ? code / 100 : 4;
}

/*
 * Add to w->rec a publication to subj as id: the recipients of e of
 * class cls (all when cls is 0) and the headers hdr (name, value pairs,
 * NULL-terminated; NULL: none).
 */
static void plan(struct rjw *w, const char *subj, const char *id,
		 const struct dkp_relay_env *e, const struct dkp_smtp_result *res,
		 int cls, const char *const *hdr)
{
	size_t i;

	dkp_rjrec_item(&w->rec, 'P', subj, strlen(subj), id);
	for (i = 0; i < e->nrcpt; i++)
		if (!cls || cls_of(res->r[i].code) == cls)
			dkp_rjrec_item(&w->rec, 'R', e->rcpt[i].p, e->rcpt[i].len, NULL);
	for (i = 0; hdr && hdr[i]; i += 2)
		dkp_rjrec_item(&w->rec, 'H', hdr[i], strlen(hdr[i]), hdr[i + 1]);
}

/* Send om (consumed) to subj, wait for the stream's acknowledgement. */
static natsStatus send_one(struct rjw *w, natsMsg *om, const char *subj, const char *id)
{
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MaxWait = PUB_MS;
	s = js_PublishMsg(&pa, w->js, om, &po, &jerr);
	if (s == NATS_OK && pa && pa->Duplicate)
		dkp_info("relay: %s: %s had it already (a redelivery after a crash)", id, subj);
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(om);
	if (s == NATS_OK && w->r->crash_republished && !strcmp(subj, w->r->jc->out_subject))
		raise(SIGKILL);	/* test hook: between the republish and the ACK */
	return s;
}

/*
 * Publish what the record rec lists (relay_js_rec.h), each message with
 * m's payload, one after the other, each acknowledged by its stream; a
 * stream that has one already (the same Nats-Msg-Id within its duplicate
 * window: a redelivery after a crash) drops it. 0, or -1 (logged). rec
 * is cut up on the way.
 */
static int replay(struct rjw *w, natsMsg *m, const char *id, struct dkp_buf *rec)
{
	natsMsg *om = NULL;
	const char *a, *v, *sender = "<>", *subj = "", *pid = "";
	natsStatus s = NATS_OK;
	size_t pos = 0;
	int t;

	while (s == NATS_OK && (t = dkp_rjrec_next(rec, &pos, &a, &v)) > 0) {
		if (t == 'S') {
			sender = a;
		} else if (t == 'P') {
			if (om && (s = send_one(w, om, subj, pid)) != NATS_OK)
				om = NULL;
			else
				s = natsMsg_Create(&om, a, NULL, natsMsg_GetData(m),
						   natsMsg_GetDataLength(m));
			subj = a;
			pid = v;
			if (s == NATS_OK && (s = natsMsgHeader_Set(om, H_ID, v)) == NATS_OK)
				s = natsMsgHeader_Set(om, H_SENDER, sender);
		} else if (om == NULL) {
			t = -1;
			break;
		} else {
			s = t == 'R' ? natsMsgHeader_Add(om, H_RECEIVER, a)
				     : natsMsgHeader_Set(om, a, v);
		}
	}
	if (s == NATS_OK && t == 0 && om)
		s = send_one(w, om, subj, pid);
	else
		natsMsg_Destroy(om);
	if (s == NATS_OK && t == 0)
		return 0;
	if (s == NATS_OK)
		dkp_error("relay: %s: its outcome record is malformed", id);
	else
		dkp_error("relay: %s: cannot publish to %s: %s", id, subj, natsStatus_GetText(s));
	w->errors++;
	return -1;
}

/* The ID of the next remainder: ROOT~r(N+1) from ROOT or ROOT~rN. */
static void next_id(char *out, size_t outsz, const char *id)
{
	const char *t = strstr(id, "~r");
	const char *last = NULL;
	unsigned long n = 0;

	while (t) {
		last = t;
		t = strstr(t + 2, "~r");
	}
	if (last && last[2] && strspn(last + 2, "0123456789") == strlen(last + 2))
		n = strtoul(last + 2, NULL, 10);
	else
		last = id + strlen(id);
	snprintf(out, outsz, "%.*s~r%lu", (int)(last - id), id, n + 1);
}

/* ACK (synchronously: the window ends when the server has it). */
static void ack(struct rjw *w, const struct rjmsg *x)
{
	natsStatus s = natsMsg_AckSync(x->m, NULL, NULL);

	dkp_relay_window_end(&w->w);
	if (s != NATS_OK) {
		dkp_error("relay: %s: ACK not confirmed (%s): it may be delivered again",
			  x->id, natsStatus_GetText(s));
		w->errors++;
	}
	trace(w->r, "ack", x->id);
}

static void nak(struct rjw *w, const struct rjmsg *x, int64_t delay_s)
{
	natsMsg_NakWithDelay(x->m, delay_s * 1000, NULL);
	trace(w->r, "ack", x->id);
}

/* The 4xx recipients into the plan: a remainder, or failed/ when the
 * schedule is spent (gave_up set). 1 when every recipient had a 4xx and
 * it goes on: the caller NAKs, nothing planned. */
static int temp_part(struct rjw *w, const struct rjmsg *x, const struct dkp_relay_env *e,
		     const struct dkp_smtp_result *res, const size_t cnt[6], int *gave_up)
{
	const struct dkp_relay_config *cf = &w->r->conf->relay;
	int64_t now = (int64_t)time(NULL), first, delay;
	unsigned att = x->attempts + 1;
	char id[512], sa[24], sf[24], sn[24], pre[96];

	first = x->first ? x->first : x->stored ? x->stored : now;
	if (att >= cf->max_attempts || now - first >= cf->max_age) {
		const char *h[] = { H_ERROR, NULL, NULL };

		snprintf(pre, sizeof(pre), "gave up after %u attempts in %llds: ", att,
			 (long long)(now - first));
		dkp_relay_reasons(&w->why4, e, res, 4, pre);
		header_text(w->why4.p);
		h[1] = w->why4.p;
		snprintf(id, sizeof(id), "%s~g", x->id);
		plan(w, w->r->jc->failed_subject, id, e, res, 4, h);
		*gave_up = 1;
		return 0;
	}
	delay = dkp_relay_retry_delay(&cf->sched, att);
	dkp_relay_reasons(&w->why4, e, res, 4, "");
	if (cnt[4] == e->nrcpt) {
		w->w.deferred++;
		dkp_info("relay: %s: deferred (attempt %u): %s", x->id, att, w->why4.p);
		return 1;
	}
	snprintf(sa, sizeof(sa), "%u", att);
	snprintf(sf, sizeof(sf), "%lld", (long long)first);
	snprintf(sn, sizeof(sn), "%lld", (long long)(now + delay));
	{
		const char *h[] = { H_ATTEMPTS, sa, H_FIRST, sf, H_NEXT, sn, NULL };

		next_id(id, sizeof(id), x->id);
		plan(w, w->r->jc->out_subject, id, e, res, 4, h);
	}
	return 0;
}

/* Store the record in w->rec (the 2xx recipients are done from now on),
 * then publish what it lists. 0 or -1 (logged). */
static int record_and_publish(struct rjw *w, const struct rjmsg *x)
{
	int rc = dkp_rjrec_put(w->kv, x->id, &w->rec);

	dkp_relay_window_end(&w->w);
	if (rc < 0) {
		dkp_error("relay: %s: cannot store its outcome record: %s", x->id, strerror(-rc));
		w->errors++;
		return -1;
	}
	trace(w->r, "rec", x->id);
	return replay(w, x->m, x->id, &w->rec);
}

/* The log lines and counts of a published outcome. */
static void tell(struct rjw *w, const struct rjmsg *x, const struct dkp_relay_env *e,
		 const size_t cnt[6], int gave_up)
{
	if (cnt[5]) {
		dkp_warn("relay: %s: failed: %s", x->id, w->why.p);
		w->w.failed += cnt[5] == e->nrcpt;
	}
	if (gave_up) {
		dkp_warn("relay: %s: failed: %s", x->id, w->why4.p);
		w->w.failed++;
	} else if (cnt[4]) {
		w->republished++;
		w->w.deferred++;
		dkp_info("relay: %s: the rest deferred as a remainder (attempt %u): %s", x->id,
			 x->attempts + 1, w->why4.p);
	}
}

/*
 * Record the outcome of res: ACK when every recipient took it; NAK when
 * every one had a 4xx; otherwise the outcome record (what replaces x: the
 * 5xx recipients for failed_subject, the 4xx ones as a remainder or, when
 * the schedule is spent, for failed_subject) stored, then published,
 * then x ACKed.
 */
static void outcome(struct rjw *w, const struct rjmsg *x, const struct dkp_relay_env *e,
		    const struct dkp_smtp_result *res)
{
	size_t cnt[6];
	char id[512];
	int rc = 0, gave_up = 0;

	dkp_relay_classify(res, cnt);
	if (cnt[2] == e->nrcpt) {	/* the common case: nothing to record */
		w->w.delivered++;
		ack(w, x);
		return;
	}
	if (cnt[2] == 0)
		w->w.t_final = 0;	/* no 2xx: no window */
	dkp_rjrec_begin(&w->rec, x->seq, e->sender.p, e->sender.len);
	if (cnt[5]) {
		const char *h[] = { H_ERROR, NULL, NULL };

		dkp_relay_reasons(&w->why, e, res, 5, "");
		header_text(w->why.p);
		h[1] = w->why.p;
		snprintf(id, sizeof(id), "%s~f", x->id);
		plan(w, w->r->jc->failed_subject, id, e, res, 5, h);
	}
	if (cnt[4])
		rc = temp_part(w, x, e, res, cnt, &gave_up);
	if (cnt[2] && cnt[2] != e->nrcpt)
		w->w.partial++;
	if (rc == 1) {
		nak(w, x, dkp_relay_retry_delay(&w->r->conf->relay.sched, x->attempts + 1));
		return;
	}
	if (record_and_publish(w, x) < 0) {
		dkp_error("relay: %s: handed back to the stream (it will be answered from its record, if stored)",
			  x->id);
		nak(w, x, 1);
		return;
	}
	tell(w, x, e, cnt, gave_up);
	ack(w, x);
}

/*
 * A redelivery (the stream's delivery count > 1): when an earlier
 * delivery stored an outcome record, publish what it lists again (the
 * duplicate window drops what made it) and ACK, without sending anything.
 * 1 when answered so, 0 when there is no record (deliver), -1 when the
 * bucket did not answer (NAK'd: a delivery now might repeat one).
 */
static int answer_from_record(struct rjw *w, const struct rjmsg *x)
{
	int rc = dkp_rjrec_get(w->kv, x->id, x->seq, &w->rec);

	if (rc == 0)
		return 0;
	if (rc < 0) {
		dkp_error("relay: %s: cannot look up its outcome record (%s): handed back",
			  x->id, strerror(-rc));
		w->errors++;
		nak(w, x, 1);
		return -1;
	}
	trace(w->r, "replay", x->id);
	if (replay(w, x->m, x->id, &w->rec) < 0) {
		nak(w, x, 1);
		return -1;
	}
	w->replayed++;
	dkp_info("relay: %s: delivered before (delivery %llu): what replaces it published again from its record",
		 x->id, (unsigned long long)x->nd);
	ack(w, x);
	return 1;
}

/* One message from the stream. */
static void one(struct rjw *w, natsMsg *m)
{
	struct rjmsg x;
	struct dkp_relay_env e;
	struct dkp_smtp_result res = { 0, NULL };
	struct dkp_err err;
	int64_t now = (int64_t)time(NULL);

	describe(&x, m);
	if (x.has_next && x.nd == 1) {
		w->held++;
		natsMsg_NakWithDelay(m, (x.next > now ? x.next - now : 0) * 1000, NULL);
		return;
	}
	/* only a redelivery can have a record: a first delivery skips the
	 * lookup (and its round trip) */
	if (x.nd > 1 && answer_from_record(w, &x) != 0)
		return;
	render(&w->file, m);
	dkp_err_clear(&err);
	if (dkp_relay_env_parse(w->file.p, w->file.len, &e, &err) != DKP_OK) {
		const char *h[] = { H_ERROR, err.msg, NULL };
		struct dkp_relay_env none = { { "", 0 }, NULL, 0, NULL, 0 };
		char fid[512];

		/* nothing was sent: no record, a redelivery does the same */
		header_text(err.msg);
		snprintf(fid, sizeof(fid), "%s~f", x.id);
		dkp_rjrec_begin(&w->rec, x.seq, "", 0);
		plan(w, w->r->jc->failed_subject, fid, &none, NULL, 0, h);
		if (replay(w, m, x.id, &w->rec) == 0) {
			w->w.failed++;
			dkp_warn("relay: %s: failed: %s", x.id, err.msg);
			ack(w, &x);
		} else {
			nak(w, &x, 1);
		}
		return;
	}
	if (w->r->trace >= 0) {	/* the delivery: tells a server's re-send */
		char t[600];

		snprintf(t, sizeof(t), "%s nd=%" PRIu64 " seq=%" PRIu64, x.id, x.nd, x.seq);
		trace(w->r, "try", t);
	}
	w->w.t_final = 0;
	dkp_smtp_deliver(&w->w.s, &e, &res);
	outcome(w, &x, &e, &res);
	dkp_smtp_result_free(&res);
	dkp_relay_env_free(&e);
}

static void *worker_main(void *arg)
{
	struct rjw *w = arg;
	struct rjs *r = w->r;

	while (!atomic_load(&r->stop)) {
		natsMsgList list = { NULL, 0 };
		jsFetchRequest req;
		natsStatus s;
		int i;

		jsFetchRequest_Init(&req);
		req.Batch = 1;
		req.Expires = (int64_t)FETCH_MS * 1000000;
		s = natsSubscription_FetchRequest(&list, w->sub, &req);
		if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
			natsMsgList_Destroy(&list);
			if (r->once)
				break;	/* --once: nothing waiting */
			continue;
		}
		if (s != NATS_OK) {
			natsMsgList_Destroy(&list);
			usleep(250000);
			continue;
		}
		for (i = 0; i < list.Count; i++)
			one(w, list.Msgs[i]);
		natsMsgList_Destroy(&list);
	}
	dkp_smtp_session_quit(&w->w.s);
	atomic_fetch_sub(&r->running, 1);
	return NULL;
}

/* The relay's durable consumer on the output stream, made if missing. */
static int ensure_consumer(struct rjs *r, jsCtx *js)
{
	const struct dkp_js_config *jc = r->jc;
	int64_t wait = r->conf->relay.timeout * RELAY_JS_ACK_CMDS * 1000000000LL;
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetConsumerInfo(&ci, js, jc->out_stream, r->consumer, NULL, &jerr);
	if (s == NATS_OK) {
		if (ci->Config->AckWait < wait)
			dkp_warn("relay: consumer %s has AckWait %lld s, less than relay_timeout x %d (%lld s): a slow transaction may be delivered twice",
				 r->consumer, (long long)(ci->Config->AckWait / 1000000000LL),
				 RELAY_JS_ACK_CMDS, (long long)(wait / 1000000000LL));
		jsConsumerInfo_Destroy(ci);
		return 0;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = r->consumer;
	cc.AckPolicy = js_AckExplicit;
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckWait = wait;
	cc.MaxDeliver = -1;
	cc.MaxAckPending = 1000;
	cc.FilterSubject = jc->out_subject;
	s = js_AddConsumer(&ci, js, jc->out_stream, &cc, NULL, &jerr);
	if (s == NATS_OK ||
	    js_GetConsumerInfo(&ci, js, jc->out_stream, r->consumer, NULL, NULL) == NATS_OK) {
		if (s == NATS_OK)
			dkp_info("relay: made consumer %s on %s (AckWait %lld s)", r->consumer,
				 jc->out_stream, (long long)(wait / 1000000000LL));
		jsConsumerInfo_Destroy(ci);
		return 0;
	}
	dkp_error("relay: cannot make consumer %s on %s: %s", r->consumer, jc->out_stream,
		  natsStatus_GetText(s));
	return -1;
}

/* A worker's JetStream context and pull subscription. */
static int worker_bind(struct rjs *r, struct rjw *w)
{
	jsOptions jo;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	jsOptions_Init(&jo);
	jo.Wait = API_MS;
	s = natsConnection_JetStream(&w->js, dkp_js_conn(r->j), &jo);
	if (s == NATS_OK) {
		jsSubOptions_Init(&so);
		so.Stream = r->jc->out_stream;
		so.Consumer = r->consumer;
		s = js_PullSubscribe(&w->sub, w->js, r->jc->out_subject, r->consumer, &jo,
				     &so, &jerr);
	}
	if (s != NATS_OK) {
		dkp_error("relay: cannot bind to consumer %s: %s", r->consumer,
			  natsStatus_GetText(s));
		return -1;
	}
	if (dkp_rjrec_bind(&w->kv, w->js, r->consumer) < 0) {
		dkp_error("relay: cannot bind to the outcome records of consumer %s", r->consumer);
		return -1;
	}
	return 0;
}

/* Wait for a stop signal or (once) every worker's end. */
static void wait_stop(struct rjs *r, int sfd)
{
	struct signalfd_siginfo si;
	struct pollfd p = { .fd = sfd, .events = POLLIN };

	while (atomic_load(&r->running) > 0) {
		if (poll(&p, sfd >= 0 ? 1 : 0, 200) > 0)
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
					atomic_store(&r->stop, 1);
		if (atomic_load(&r->stop))
			break;
	}
	atomic_store(&r->stop, 1);
}

/* Join, add up, print the counts like the directory relay; status. */
static int finish(struct rjw *ws, unsigned n, unsigned started, int once)
{
	uint64_t d = 0, df = 0, f = 0, p = 0, wn = 0, h = 0, rp = 0, ry = 0, er = 0;
	double sum = 0, mx = 0;
	unsigned i;

	for (i = 0; i < started; i++)
		pthread_join(ws[i].th, NULL);
	for (i = 0; i < n; i++) {
		struct rjw *w = &ws[i];

		d += w->w.delivered;
		df += w->w.deferred;
		f += w->w.failed;
		p += w->w.partial;
		wn += w->w.win_n;
		sum += w->w.win_sum;
		if (w->w.win_max > mx)
			mx = w->w.win_max;
		h += w->held;
		rp += w->republished;
		ry += w->replayed;
		er += w->errors;
		if (w->sub)
			natsSubscription_Destroy(w->sub);
		kvStore_Destroy(w->kv);
		jsCtx_Destroy(w->js);
		dkp_relay_worker_free(&w->w);
		dkp_buf_free(&w->file);
		dkp_buf_free(&w->why);
		dkp_buf_free(&w->why4);
		dkp_buf_free(&w->rec);
	}
	fprintf(stderr,
		"relay: %llu delivered, %llu deferred, %llu failed, %llu partly delivered "
		"(%llu remainders republished, %llu held, %llu answered from their outcome record); "
		"2xx-to-ACK window: %llu messages, mean %.1f us, max %.1f us\n",
		(unsigned long long)d, (unsigned long long)df, (unsigned long long)f,
		(unsigned long long)p, (unsigned long long)rp, (unsigned long long)h,
		(unsigned long long)ry,
		(unsigned long long)wn, wn ? sum / (double)wn * 1e6 : 0.0, mx * 1e6);
	return er ? 75 : once && df ? 75 : 0;
}

int dkp_relay_js_run(const struct dkp_config *conf, SSL_CTX *ctx,
		     const char *helo, int once, int sfd)
{
	struct rjs r;
	struct rjw *ws;
	const char *tr = NULL;
	char why[1024];
	unsigned i, n = conf->relay.connections, started = 0;
	jsCtx *js = NULL;
	int rc, xrc = 75;	/* the status when setting up failed */

	memset(&r, 0, sizeof(r));
	r.conf = conf;
	r.once = once;
#ifdef DKP_TEST_HOOKS
	/* test build only (Makefile, HOOK_SRC): tests/relay/jetstream.sh's
	 * trace of what each relay sent, and a crash after a republish */
	tr = getenv("DKIMPRESS_RELAY_TRACE");
	r.crash_republished = getenv("DKIMPRESS_RELAY_CRASH_REPUBLISHED") != NULL;
#endif
	r.consumer = conf->relay.consumer ? conf->relay.consumer : DKP_DEF_RELAY_CONSUMER;
	r.trace = tr && *tr ? open(tr, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
	if ((rc = dkp_js_open_as(&r.j, conf, 0, why, sizeof(why))) < 0) {
		dkp_error("relay: %s", why);
		if (r.trace >= 0)
			close(r.trace);
		return dkp_js_exit_code(rc);
	}
	r.jc = dkp_js_conf(r.j);
	if (conf->relay.timeout * RELAY_JS_ACK_CMDS >= r.jc->dup_window)
		dkp_warn("relay: dup_window (%lld s) is not longer than the relay's AckWait (relay_timeout x %d = %lld s): a remainder republished just before a crash may be kept twice",
			 (long long)r.jc->dup_window, RELAY_JS_ACK_CMDS,
			 (long long)(conf->relay.timeout * RELAY_JS_ACK_CMDS));
	rc = natsConnection_JetStream(&js, dkp_js_conn(r.j), NULL) == NATS_OK
		     ? ensure_consumer(&r, js) : -1;
	if (rc == 0 && (rc = dkp_rjrec_ensure(js, r.consumer, dkp_js_replicas(r.j),
					      r.jc->dup_window, r.jc->create_streams, why,
					      sizeof(why))) < 0) {
		dkp_error("relay: %s", why);
		xrc = dkp_js_exit_code(rc);
	}
	jsCtx_Destroy(js);
	ws = dkp_calloc(n, sizeof(*ws));
	for (i = 0; i < n; i++) {
		ws[i].r = &r;
		dkp_relay_worker_init(&ws[i].w, NULL, &conf->relay, ctx, helo);
		dkp_buf_init(&ws[i].file);
		dkp_buf_init(&ws[i].why);
		dkp_buf_init(&ws[i].why4);
		dkp_buf_init(&ws[i].rec);
		if (rc == 0)
			rc = worker_bind(&r, &ws[i]);
	}
	atomic_store(&r.running, 0);
	for (i = 0; rc == 0 && i < n; i++) {
		atomic_fetch_add(&r.running, 1);
		if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
			atomic_fetch_sub(&r.running, 1);
			break;
		}
		started++;
	}
	if (rc == 0)
		wait_stop(&r, sfd);
	atomic_store(&r.stop, 1);
	xrc = finish(ws, n, started, once) | (rc < 0 ? xrc : 0);
	dkp_free(ws);
	dkp_js_close(r.j);
	if (r.trace >= 0)
		close(r.trace);
	return xrc;
}
