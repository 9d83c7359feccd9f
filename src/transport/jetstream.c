/*
 * jetstream.c — the NATS JetStream transport; see jetstream.h and
 * docs/scale-out.md.
 *
 * States of one input message, as the streams hold them:
 *
 *   J1  in DKIM_IN, not delivered          (published by a producer)
 *   J2  delivered to a worker, not acked   (fetch; AckWait running)
 *   J3  its output stored in DKIM_OUT or DKIM_FAILED, input not acked
 *   J4  input acked: gone from DKIM_IN (work-queue retention)
 *
 * A crash in J2 or J3 ends in a redelivery after AckWait (J2 again, maybe
 * to another engine); from J3 the re-publish carries the same Nats-Msg-Id
 * and the output stream's duplicate window drops it, so DKIM_OUT holds
 * the message once. That is why the window must exceed the longest time
 * a message can sit in J3 (an outage; docs/scale-out.md).
 */
#include "transport/jetstream.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/budget.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define FETCH_WAIT_MS 500	/* a worker's long poll; bounds a stop's wait */
#define PUB_WAIT_MS 10000	/* every publish acknowledged within this */
#define API_WAIT_MS 5000	/* stream and consumer requests */
#define CONNECT_WAIT_MS 2000
#define BUDGET_SLACK 4096
#define MAX_SERVERS 32
#define NAK_MAX_SHIFT 6		/* nak_delay doubles up to 64x */

#define H_SENDER "X-Sender"
#define H_RECEIVER "X-Receiver"
#define H_ID "Nats-Msg-Id"
#define H_ERROR "X-Dkimpress-Error"

struct dkp_js {
	struct dkp_transport t;
	/* a copy: the configuration snapshot it came from is released on a
	 * reload (SIGHUP), while the transport lives on */
	struct dkp_js_config jc;
	const struct dkp_config *c;	/* only during open */
	natsConnection *nc;
	natsOptions *opts;
	jsCtx *js;		/* set-up requests (streams, consumer, info) */
	int64_t max_payload;
	int replicas;
	atomic_ulong dups;	/* outputs the stream already had */
	/* dkp_js_num_pending's cache (the metrics thread) */
	pthread_mutex_t pend_mu;
	double pend_at;		/* monotonic seconds of the answer, 0: none */
	long pend;
};

struct dkp_tworker {
	struct dkp_js *j;
	unsigned id;
	jsCtx *js;		/* this worker's async publishes */
	natsSubscription *sub;
	natsMsg **in;		/* the fetched messages, by index of m[] */
	uint64_t *delivered;	/* their delivery count */
	size_t cap;
	struct dkp_budget *budget;
	uint64_t taken;		/* from the budget by this batch */
	struct dkp_buf scratch;	/* an output's payload, contiguous */
	atomic_int pub_errors;	/* publish errors reported since reset */
};

/* ---- status mapping ------------------------------------------------- */

static int status_errno(natsStatus s)
{
	switch (s) {
	case NATS_OK: return 0;
	case NATS_TIMEOUT: return -ETIMEDOUT;
	case NATS_NO_SERVER:
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NOT_YET_CONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_IO_ERROR: return -ECONNREFUSED;
	case NATS_NO_RESPONDERS: return -EAGAIN;	/* no JetStream leader yet */
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED: return -EACCES;
	case NATS_MAX_PAYLOAD: return -EMSGSIZE;
	case NATS_NOT_FOUND: return -ENOENT;
	case NATS_NO_MEMORY: return -ENOMEM;
	case NATS_INVALID_ARG:
	case NATS_ADDRESS_MISSING:
	case NATS_INVALID_SUBJECT: return -EINVAL;
	default: return -EIO;
	}
}

int dkp_js_exit_code(int rc)
{
	switch (-rc) {
	case ETIMEDOUT: case ECONNREFUSED: case EAGAIN: return 75;
	case ENOENT: case EINVAL: return 78;
	case EACCES: return 77;
	case EMSGSIZE: return 65;
	/* anything else (an API error, a stream full with discard new, no
	 * memory) may pass: EX_TEMPFAIL, so that an MTA retries rather
	 * than bounces */
	default: return 75;
	}
}

const char *dkp_js_redact(const char *servers, char *out, size_t outsz)
{
	struct dkp_buf b;
	const char *p = servers ? servers : "", *tok, *auth, *end, *at;

	dkp_buf_init(&b);
	while (*p) {
		size_t sep = strspn(p, ", \t");

		dkp_buf_add(&b, p, sep);
		p += sep;
		tok = p;
		p += strcspn(p, ", \t");
		/* the authority: after "scheme://" (or from the start), up
		 * to the first '/', '?' or '#'; its userinfo ends at the last
		 * '@' in it */
		auth = tok;
		for (end = tok; end + 2 < p; end++)
			if (end[0] == ':' && end[1] == '/' && end[2] == '/') {
				auth = end + 3;
				break;
			}
		for (end = auth; end < p && *end != '/' && *end != '?' && *end != '#'; end++)
			;
		for (at = end; at > auth && at[-1] != '@'; at--)
			;
		if (at > auth) {
			dkp_buf_add(&b, tok, (size_t)(auth - tok));
			dkp_buf_adds(&b, "***@");
			dkp_buf_add(&b, at, (size_t)(p - at));
		} else {
			dkp_buf_add(&b, tok, (size_t)(p - tok));
		}
	}
	snprintf(out, outsz, "%.*s", (int)b.len, b.p ? b.p : "");
	dkp_buf_free(&b);
	return out;
}

/* ---- envelope lines and headers -------------------------------------- */

/* One envelope line's value: WSP and angle brackets off; the null
 * sender "<>". */
static char *line_value(const char *v, const char *e)
{
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - v >= 2 && *v == '<' && e[-1] == '>') {
		v++;
		e--;
	}
	return v == e ? dkp_strdup("<>") : dkp_strndup(v, (size_t)(e - v));
}

int dkp_js_envelope_parse(const char *env, size_t len, char **sender,
			  char ***rcpts, size_t *nrcpts)
{
	const char *p = env, *end = env + len, *eol, *colon, *ve;
	size_t cap = 0;

	*sender = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		eol = eol ? eol : end;
		ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		colon = memchr(p, ':', (size_t)(ve - p));
		if (colon == NULL)
			goto bad;
		if (colon - p == 8 && !strncasecmp(p, "x-sender", 8) && *sender == NULL &&
		    *nrcpts == 0) {
			*sender = line_value(colon + 1, ve);
		} else if (colon - p == 10 && !strncasecmp(p, "x-receiver", 10) && *sender) {
			if (*nrcpts == cap) {
				cap = cap ? 2 * cap : 8;
				*rcpts = dkp_realloc(*rcpts, cap * sizeof(**rcpts));
			}
			(*rcpts)[(*nrcpts)++] = line_value(colon + 1, ve);
		} else {
			goto bad;
		}
		p = eol < end ? eol + 1 : end;
	}
	if (*sender && *nrcpts)
		return 0;
bad:
	dkp_js_envelope_free(*sender, *rcpts, *nrcpts);
	*sender = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	return -EINVAL;
}

void dkp_js_envelope_free(char *sender, char **rcpts, size_t nrcpts)
{
	size_t i;

	for (i = 0; i < nrcpts; i++)
		dkp_free(rcpts[i]);
	dkp_free(rcpts);
	dkp_free(sender);
}

/* The library's last error text, or the status's. */
static const char *status_text(natsStatus s)
{
	natsStatus ls;
	const char *t = nats_GetLastError(&ls);

	return t && *t ? t : natsStatus_GetText(s);
}

/* ---- connection ----------------------------------------------------- */

static void on_disconnected(natsConnection *nc, void *closure)
{
	(void)closure;
	if (natsConnection_IsClosed(nc))
		return;	/* our own close */
	dkp_warn("jetstream: disconnected from the NATS server; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	char url[256], shown[300];

	(void)closure;
	if (natsConnection_GetConnectedUrl(nc, url, sizeof(url)) != NATS_OK)
		snprintf(url, sizeof(url), "?");
	dkp_info("jetstream: reconnected to %s", dkp_js_redact(url, shown, sizeof(shown)));
}

static void on_async_error(natsConnection *nc, natsSubscription *sub,
			   natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	dkp_warn("jetstream: %s", natsStatus_GetText(err));
}

/* Options from c->js: servers, credentials, TLS, reconnection. forever:
 * reconnect without end (an engine), else give up soon (enqueue). */
static int make_options(natsOptions **out, const struct dkp_config *c,
			int forever, int *nservers, char *why, size_t whylen)
{
	const struct dkp_js_config *jc = &c->js;
	natsOptions *o = NULL;
	const char *urls[MAX_SERVERS];
	char *list = dkp_strdup(jc->servers), *tok, *save = NULL, *p;
	natsStatus s;
	int n = 0;

	for (p = list; (tok = strtok_r(p, ", \t", &save)) && n < MAX_SERVERS; p = NULL)
		urls[n++] = tok;
	*nservers = n;
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, urls, n);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, forever ? "dkimpress run" : "dkimpress enqueue");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, CONNECT_WAIT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, forever ? -1 : 2);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK && forever) {
		natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
		natsOptions_SetReconnectedCB(o, on_reconnected, NULL);
		s = natsOptions_SetErrorHandler(o, on_async_error, NULL);
	}
	if (s == NATS_OK && jc->creds)
		s = natsOptions_SetUserCredentialsFromFiles(o, jc->creds, NULL);
	if (s == NATS_OK && (jc->user || jc->password))
		s = natsOptions_SetUserInfo(o, jc->user ? jc->user : "",
					    jc->password ? jc->password : "");
	if (s == NATS_OK && jc->token)
		s = natsOptions_SetToken(o, jc->token);
	if (s == NATS_OK && jc->tls_ca) {
		s = natsOptions_LoadCATrustedCertificates(o, jc->tls_ca);
		if (s == NATS_OK)
			s = natsOptions_SetSecure(o, true);
	}
	if (s == NATS_OK && (jc->tls_cert || jc->tls_key))
		s = jc->tls_cert && jc->tls_key
			    ? natsOptions_LoadCertificatesChain(o, jc->tls_cert, jc->tls_key)
			    : NATS_INVALID_ARG;
	dkp_free(list);
	if (s != NATS_OK) {
		snprintf(why, whylen, "NATS client options (nats_servers, nats_creds, nats_tls_*): %s",
			 status_text(s));
		natsOptions_Destroy(o);
		return s == NATS_NO_MEMORY ? -ENOMEM : -EINVAL;
	}
	*out = o;
	return 0;
}

/* ---- streams and the consumer --------------------------------------- */

/* Make stream name (subject subj) unless it is there. */
static int ensure_stream(struct dkp_js *j, const char *name, const char *subj,
			 jsRetentionPolicy retention, char *why, size_t whylen)
{
	const struct dkp_js_config *jc = &j->jc;
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	jsErrCode jerr = 0;
	natsStatus s;
	int i, match = 0;

	s = js_GetStreamInfo(&si, j->js, name, NULL, &jerr);
	if (s == NATS_OK) {
		for (i = 0; i < si->Config->SubjectsLen; i++)
			match |= !strcmp(si->Config->Subjects[i], subj) ||
				 strpbrk(si->Config->Subjects[i], "*>") != NULL;
		if (!match)
			dkp_warn("jetstream: stream %s does not list subject %s", name, subj);
		if (si->Config->Duplicates < jc->dup_window * 1000000000LL)
			dkp_warn("jetstream: stream %s has a duplicate window of %lld s, less than dup_window (%lld s)",
				 name, (long long)(si->Config->Duplicates / 1000000000LL),
				 (long long)jc->dup_window);
		if (retention == js_WorkQueuePolicy && si->Config->Retention != retention)
			dkp_warn("jetstream: stream %s is not a work queue: acknowledged messages stay in it",
				 name);
		if (!strcmp(name, jc->in_stream))
			j->replicas = (int)si->Config->Replicas;
		jsStreamInfo_Destroy(si);
		return 0;
	}
	if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
		snprintf(why, whylen, "stream %s: %s", name, status_text(s));
		return status_errno(s);
	}
	if (!jc->create_streams) {
		snprintf(why, whylen, "stream %s is missing and create_streams = no", name);
		return -ENOENT;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = name;
	sc.Subjects = &subj;
	sc.SubjectsLen = 1;
	sc.Retention = retention;
	sc.Storage = js_FileStorage;
	sc.Replicas = j->replicas;
	sc.Duplicates = jc->dup_window * 1000000000LL;
	s = js_AddStream(&si, j->js, &sc, NULL, &jerr);
	if (s == NATS_OK) {
		dkp_info("jetstream: made stream %s (subject %s, %s, %d replicas, duplicate window %lld s)",
			 name, subj, retention == js_WorkQueuePolicy ? "work queue" : "limits",
			 j->replicas, (long long)jc->dup_window);
		jsStreamInfo_Destroy(si);
		return 0;
	}
	/* another engine made it first? */
	if (js_GetStreamInfo(&si, j->js, name, NULL, NULL) == NATS_OK) {
		jsStreamInfo_Destroy(si);
		return 0;
	}
	snprintf(why, whylen, "cannot make stream %s (%d replicas): %s", name,
		 j->replicas, status_text(s));
	return status_errno(s);
}

/* The durable pull consumer every engine shares. */
static int ensure_consumer(struct dkp_js *j, char *why, size_t whylen)
{
	const struct dkp_js_config *jc = &j->jc;
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig cc;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetConsumerInfo(&ci, j->js, jc->in_stream, jc->consumer, NULL, &jerr);
	if (s == NATS_OK) {
		if (ci->Config->AckWait != jc->ack_wait * 1000000000LL ||
		    ci->Config->MaxAckPending != jc->max_ack_pending)
			dkp_warn("jetstream: consumer %s exists with other ack_wait/max_ack_pending (%lld s, %lld); keeping them",
				 jc->consumer, (long long)(ci->Config->AckWait / 1000000000LL),
				 (long long)ci->Config->MaxAckPending);
		jsConsumerInfo_Destroy(ci);
		return 0;
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = jc->consumer;
	cc.AckPolicy = js_AckExplicit;
	cc.DeliverPolicy = js_DeliverAll;
	cc.AckWait = jc->ack_wait * 1000000000LL;
	cc.MaxDeliver = -1;
	cc.MaxAckPending = jc->max_ack_pending;
	cc.FilterSubject = jc->in_subject;
	s = js_AddConsumer(&ci, j->js, jc->in_stream, &cc, NULL, &jerr);
	if (s == NATS_OK ||
	    js_GetConsumerInfo(&ci, j->js, jc->in_stream, jc->consumer, NULL, NULL) == NATS_OK) {
		jsConsumerInfo_Destroy(ci);
		return 0;
	}
	snprintf(why, whylen, "cannot make consumer %s on %s: %s", jc->consumer,
		 jc->in_stream, status_text(s));
	return status_errno(s);
}

/* Connect; js context for the set-up requests. */
static int js_connect(struct dkp_js *j, int forever, int *nservers, char *why,
		      size_t whylen)
{
	jsOptions jo;
	natsStatus s;
	int rc;
	char shown[1024];

	if ((rc = make_options(&j->opts, j->c, forever, nservers, why, whylen)) < 0)
		return rc;
	s = natsConnection_Connect(&j->nc, j->opts);
	if (s != NATS_OK) {
		snprintf(why, whylen, "cannot connect to %s: %s",
			 dkp_js_redact(j->jc.servers, shown, sizeof(shown)),
			 status_text(s));
		return s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED
			       ? -EACCES : s == NATS_SSL_ERROR ? -EINVAL : -ECONNREFUSED;
	}
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	s = natsConnection_JetStream(&j->js, j->nc, &jo);
	if (s != NATS_OK) {
		snprintf(why, whylen, "JetStream context: %s", status_text(s));
		return status_errno(s);
	}
	j->max_payload = natsConnection_GetMaxPayload(j->nc);
	return 0;
}

/* Duplicate the transport settings the workers use after open. */
static void copy_config(struct dkp_js_config *d, const struct dkp_js_config *s)
{
	*d = *s;
	d->servers = dkp_strdup(s->servers);
	d->in_stream = dkp_strdup(s->in_stream);
	d->in_subject = dkp_strdup(s->in_subject);
	d->out_stream = dkp_strdup(s->out_stream);
	d->out_subject = dkp_strdup(s->out_subject);
	d->failed_stream = dkp_strdup(s->failed_stream);
	d->failed_subject = dkp_strdup(s->failed_subject);
	d->consumer = dkp_strdup(s->consumer);
	/* credentials stay with the options they were loaded into */
	d->creds = d->user = d->password = d->token = NULL;
	d->tls_ca = d->tls_cert = d->tls_key = NULL;
}

static void free_config(struct dkp_js_config *d)
{
	dkp_free(d->servers);
	dkp_free(d->in_stream);
	dkp_free(d->in_subject);
	dkp_free(d->out_stream);
	dkp_free(d->out_subject);
	dkp_free(d->failed_stream);
	dkp_free(d->failed_subject);
	dkp_free(d->consumer);
}

static void js_free(struct dkp_js *j)
{
	if (j == NULL)
		return;
	free_config(&j->jc);
	jsCtx_Destroy(j->js);
	if (j->nc) {
		natsConnection_FlushTimeout(j->nc, 2000);
		natsConnection_Close(j->nc);
		natsConnection_Destroy(j->nc);
	}
	natsOptions_Destroy(j->opts);
	pthread_mutex_destroy(&j->pend_mu);
	dkp_free(j);
}

/* ---- worker --------------------------------------------------------- */

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

static int js_worker_new(struct dkp_transport *t, unsigned id, int want_uring,
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
			  j->jc.consumer, status_text(s));
		jsCtx_Destroy(w->js);
		dkp_buf_free(&w->scratch);
		dkp_free(w);
		return status_errno(s);
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

static void js_worker_free(struct dkp_tworker *w)
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

static int js_worker_uring(const struct dkp_tworker *w)
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
	 * ones only if they fit now; the rest go back at once. XXX: a bare-LF
	 * message's CRLF copy is not counted. */
	need = (uint64_t)dlen + elen + BUDGET_SLACK;
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

static int js_fetch(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
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
		return status_errno(s);
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

/* ---- commit --------------------------------------------------------- */

/* Copy the envelope headers of in onto out. */
static void copy_envelope(natsMsg *in, natsMsg *out)
{
	const char *v, **vals = NULL;
	int n = 0, i;

	if (natsMsgHeader_Get(in, H_SENDER, &v) == NATS_OK && v)
		natsMsgHeader_Set(out, H_SENDER, v);
	if (natsMsgHeader_Values(in, H_RECEIVER, &vals, &n) == NATS_OK) {
		for (i = 0; i < n; i++)
			natsMsgHeader_Add(out, H_RECEIVER, vals[i]);
		free((void *)vals);	/* the library's, with libc */
	}
}

/* An output's envelope when it is not the input's headers: the
 * x-sender/x-receiver lines that came at the top of the payload. */
struct envh {
	char *sender;		/* NULL: copy the input's headers */
	char **rcpt;
	size_t nrcpt;
};

/* Is header value h the address a (a from dkp_js_envelope_parse)? */
static int same_addr(const char *h, const char *a)
{
	char *v = line_value(h, h + strlen(h));
	int same = strcmp(v, a) == 0;

	dkp_free(v);
	return same;
}

/* Is every address of a[0..na) one of b[0..nb)? (header values in a when
 * hdr_a, parsed ones in b) */
static int all_in(const char *const *a, size_t na, int hdr_a,
		  const char *const *b, size_t nb)
{
	size_t i, k;

	for (i = 0; i < na; i++) {
		for (k = 0; k < nb; k++)
			if (hdr_a ? same_addr(a[i], b[k]) : same_addr(b[k], a[i]))
				break;
		if (k == nb)
			return 0;
	}
	return 1;
}

/*
 * The envelope of a signed output. The engine split the envelope lines
 * off into m->out[0]: those fetch rendered from the input's X-Sender /
 * X-Receiver headers, and any the payload itself started with (a file
 * enqueued in pickup format). No headers: the lines become the headers
 * (e->sender set). Headers: the lines must name the same sender and the
 * same recipients, or the message fails (-1, m->err set) rather than go
 * out to a guessed envelope. Returns 0 or -1.
 */
static int out_envelope(natsMsg *in, struct dkp_tmsg *m, struct envh *e)
{
	const char *hs = NULL, **hr = NULL;
	int nh = 0, ok;

	memset(e, 0, sizeof(*e));
	if (m->nout < 1 || m->out[0].iov_len == 0)
		return 0;
	if (dkp_js_envelope_parse(m->out[0].iov_base, m->out[0].iov_len, &e->sender,
				  &e->rcpt, &e->nrcpt) < 0) {
		dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "envelope",
			    "the envelope lines cannot be read back into headers");
		return -1;
	}
	if (natsMsgHeader_Get(in, H_SENDER, &hs) != NATS_OK)
		hs = NULL;
	if (natsMsgHeader_Values(in, H_RECEIVER, &hr, &nh) != NATS_OK) {
		hr = NULL;
		nh = 0;
	}
	if (hs == NULL && nh == 0)
		return 0;	/* the lines are the envelope */
	ok = hs && same_addr(hs, e->sender) &&
	     all_in((const char *const *)hr, (size_t)nh, 1,
		    (const char *const *)e->rcpt, e->nrcpt) &&
	     all_in((const char *const *)e->rcpt, e->nrcpt, 0,
		    (const char *const *)hr, (size_t)nh);
	free((void *)hr);	/* the library's, with libc */
	dkp_js_envelope_free(e->sender, e->rcpt, e->nrcpt);
	memset(e, 0, sizeof(*e));
	if (ok)
		return 0;	/* the same envelope twice: the headers */
	dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "envelope",
		    "the X-Sender/X-Receiver headers and the x-sender/x-receiver lines at the top of the payload name different envelopes");
	return -1;
}

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
		copy_envelope(in, om);
	}
	if (s == NATS_OK && reason)
		s = natsMsgHeader_Set(om, H_ERROR, reason);
	if (s == NATS_OK)
		s = js_PublishMsgAsync(w->js, &om, NULL);
	natsMsg_Destroy(om);	/* NULL when the library took it */
	return status_errno(s);
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

static int js_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	const struct dkp_js_config *jc = &w->j->jc;
	jsPubOptions po;
	natsStatus s;
	size_t i;
	int sent = 0, k, rc;
	char reason[sizeof(m->err.msg) + 32];

	atomic_store(&w->pub_errors, 0);
	/* 1. signed outputs */
	for (i = 0; i < n; i++) {
		struct envh e;

		if (!w->in[i] || (m[i].outcome != DKP_OUT_SIGNED &&
				  m[i].outcome != DKP_OUT_ESP_ONLY))
			continue;
		if (out_envelope(w->in[i], &m[i], &e) < 0) {
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
	/* 2. failed ones, with the reason; the payload as it came (or none,
	 * if with the headers it no longer fits) */
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
	/* 3. every publish acknowledged, or none of the inputs is */
	if (sent) {
		jsPubOptions_Init(&po);
		po.MaxWait = PUB_WAIT_MS;
		s = js_PublishAsyncComplete(w->js, &po);
		if (s != NATS_OK || atomic_load(&w->pub_errors) > 0) {
			natsMsgList pending;
			int e = s == NATS_OK ? EAGAIN : -status_errno(s);

			if (js_PublishAsyncGetPendingList(&pending, w->js) == NATS_OK)
				natsMsgList_Destroy(&pending);
			if (e == 0 || e == EIO)
				e = EAGAIN;
			for (i = 0; i < n; i++)
				if (w->in[i] && (m[i].outcome == DKP_OUT_SIGNED ||
						 m[i].outcome == DKP_OUT_ESP_ONLY ||
						 m[i].outcome == DKP_OUT_FAILED))
					defer_msg(&m[i], e, "publish not acknowledged by the stream");
		}
	}
	/* 4. acknowledge or hand back the inputs */
	for (i = 0; i < n; i++) {
		if (!w->in[i])
			continue;
		if (m[i].outcome == DKP_OUT_DEFERRED) {
			uint64_t d = w->delivered[i] ? w->delivered[i] - 1 : 0;
			int64_t delay = jc->nak_delay * 1000 *
					(1LL << (d < NAK_MAX_SHIFT ? d : NAK_MAX_SHIFT));

			/* a publish that failed: the cluster is in trouble;
			 * come back soon, the pool pauses meanwhile */
			if (!strcmp(m[i].err.step, "publish"))
				delay = 1000;
			natsMsg_NakWithDelay(w->in[i], delay, NULL);
		} else if (m[i].outcome == DKP_OUT_SIGNED ||
			   m[i].outcome == DKP_OUT_ESP_ONLY ||
			   m[i].outcome == DKP_OUT_FAILED) {
			/* its output is stored (3. above) */
			natsMsg_Ack(w->in[i], NULL);
		} else if (m[i].outcome != DKP_OUT_GONE) {
			/* no outcome (a bug): never acknowledged, handed back */
			dkp_error("jetstream: %s: no outcome after signing (%d); handed back to the stream",
				  m[i].id, m[i].outcome);
			natsMsg_Nak(w->in[i], NULL);
			dkp_err_set(&m[i].err, DKP_E_IO, 1, "commit", "no outcome after signing");
			m[i].outcome = DKP_OUT_DEFERRED;
		}
		m[i].claimed = 0;
		if (w->budget && m[i].held)
			dkp_budget_give(w->budget, m[i].held);
		m[i].held = 0;
		natsMsg_Destroy(w->in[i]);
		w->in[i] = NULL;
	}
	return 0;
}

static int js_scan(struct dkp_transport *t, int (*fn)(void *ctx, const char *id),
		   void *ctx)
{
	(void)t;
	(void)fn;
	(void)ctx;
	return 0;	/* pulls: the workers fetch */
}

/* The server redelivers what a crashed engine held (AckWait). */
static int js_recover(struct dkp_transport *t, struct dkp_recovery *r)
{
	(void)t;
	memset(r, 0, sizeof(*r));
	return 0;
}

static const struct dkp_transport_ops js_ops = {
	.name = "jetstream",
	.pulls = 1,
	.worker_new = js_worker_new,
	.worker_free = js_worker_free,
	.worker_uring = js_worker_uring,
	.fetch = js_fetch,
	.commit = js_commit,
	.scan = js_scan,
	.recover = js_recover,
};

/* ---- open / close --------------------------------------------------- */

int dkp_js_open(struct dkp_js **out, const struct dkp_config *c, char *why,
		size_t whylen)
{
	return dkp_js_open_as(out, c, 1, why, whylen);
}

natsConnection *dkp_js_conn(struct dkp_js *j)
{
	return j->nc;
}

const struct dkp_js_config *dkp_js_conf(const struct dkp_js *j)
{
	return &j->jc;
}

int dkp_js_open_as(struct dkp_js **out, const struct dkp_config *c,
		   int engine, char *why, size_t whylen)
{
	struct dkp_js *j = dkp_calloc(1, sizeof(*j));
	const struct dkp_js_config *jc = &c->js;
	char **urls = NULL;
	int rc, nservers = 0, known = 0, i;

	*out = NULL;
	j->t.ops = &js_ops;
	atomic_init(&j->dups, 0);
	pthread_mutex_init(&j->pend_mu, NULL);
	j->c = c;
	copy_config(&j->jc, &c->js);
	if ((rc = js_connect(j, 1, &nservers, why, whylen)) < 0) {
		js_free(j);
		return rc;
	}
	if (natsConnection_GetServers(j->nc, &urls, &known) == NATS_OK) {
		for (i = 0; i < known; i++)
			free(urls[i]);
		free(urls);
	}
	if (known < nservers)
		known = nservers;
	j->replicas = jc->replicas ? (int)jc->replicas : known >= 3 ? 3 : 1;
	if ((rc = ensure_stream(j, jc->in_stream, jc->in_subject, js_WorkQueuePolicy,
				why, whylen)) < 0 ||
	    (rc = ensure_stream(j, jc->out_stream, jc->out_subject, js_LimitsPolicy,
				why, whylen)) < 0 ||
	    (rc = ensure_stream(j, jc->failed_stream, jc->failed_subject,
				js_LimitsPolicy, why, whylen)) < 0 ||
	    (engine && (rc = ensure_consumer(j, why, whylen)) < 0)) {
		js_free(j);
		return rc;
	}
	j->c = NULL;	/* the caller's snapshot may go away on a reload */
	*out = j;
	return 0;
}

struct dkp_transport *dkp_js_transport(struct dkp_js *j)
{
	return &j->t;
}

int64_t dkp_js_max_payload(const struct dkp_js *j)
{
	return j->max_payload;
}

int dkp_js_replicas(const struct dkp_js *j)
{
	return j->replicas;
}

long dkp_js_waiting(struct dkp_js *j)
{
	jsConsumerInfo *ci = NULL;
	long n;

	if (js_GetConsumerInfo(&ci, j->js, j->jc.in_stream, j->jc.consumer,
			       NULL, NULL) != NATS_OK)
		return -1;
	n = (long)(ci->NumPending + (uint64_t)ci->NumAckPending);
	jsConsumerInfo_Destroy(ci);
	return n;
}

long dkp_js_num_pending(struct dkp_js *j, double max_age)
{
	jsConsumerInfo *ci = NULL;
	jsOptions jo;
	double now = dkp_mono_now();
	long n;

	pthread_mutex_lock(&j->pend_mu);
	if (j->pend_at > 0 && now - j->pend_at < max_age) {
		n = j->pend;
		pthread_mutex_unlock(&j->pend_mu);
		return n;
	}
	/* a scrape waits for this: a short timeout, not API_WAIT_MS */
	jsOptions_Init(&jo);
	jo.Wait = 1000;
	if (js_GetConsumerInfo(&ci, j->js, j->jc.in_stream, j->jc.consumer,
			       &jo, NULL) == NATS_OK) {
		n = (long)ci->NumPending;
		jsConsumerInfo_Destroy(ci);
	} else {
		n = -1;
	}
	j->pend = n;
	j->pend_at = now;
	pthread_mutex_unlock(&j->pend_mu);
	return n;
}

void dkp_js_close(struct dkp_js *j)
{
	unsigned long d;

	if (j == NULL)
		return;
	d = atomic_load(&j->dups);
	if (d)
		dkp_info("jetstream: %lu signed copies were in %s already (signed again after a redelivery; dropped by its duplicate window)",
			 d, j->jc.out_stream);
	js_free(j);
}

/* ---- producer ------------------------------------------------------- */

int dkp_js_publish(const struct dkp_config *c, const char *sender,
		   const char *const *rcpts, size_t nrcpts, const char *data,
		   size_t len, const char *id, int64_t wait_ms, char *why,
		   size_t whylen)
{
	struct dkp_js *j = dkp_calloc(1, sizeof(*j));
	jsPubOptions po;
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsMsg *m = NULL;
	natsStatus s;
	size_t i;
	int rc, nservers;
	double deadline;

	pthread_mutex_init(&j->pend_mu, NULL);
	j->c = c;
	copy_config(&j->jc, &c->js);
	if ((rc = js_connect(j, 0, &nservers, why, whylen)) < 0) {
		js_free(j);
		return rc;
	}
	if ((int64_t)len > j->max_payload) {
		snprintf(why, whylen, "message of %zu bytes exceeds the server's max_payload (%lld)",
			 len, (long long)j->max_payload);
		js_free(j);
		return -EMSGSIZE;
	}
	s = natsMsg_Create(&m, c->js.in_subject, NULL, data, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, H_ID, id);
	if (s == NATS_OK && sender)
		s = natsMsgHeader_Set(m, H_SENDER, sender);
	for (i = 0; s == NATS_OK && sender && i < nrcpts; i++)
		s = natsMsgHeader_Add(m, H_RECEIVER, rcpts[i]);
	/* no answer (a node down, a leader being elected): again, with the
	 * same ID, until wait_ms is over; the duplicate window keeps one */
	deadline = dkp_mono_now() + (double)wait_ms / 1000.0;
	while (s == NATS_OK) {
		double left = deadline - dkp_mono_now();

		jsPubOptions_Init(&po);
		po.MaxWait = left > 2.0 ? 2000 : left > 0.1 ? (int64_t)(left * 1000) : 100;
		jsPubAck_Destroy(pa);
		pa = NULL;
		s = js_PublishMsg(&pa, j->js, m, &po, &jerr);
		if (!(s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
		      s == NATS_CONNECTION_DISCONNECTED || s == NATS_NOT_YET_CONNECTED) ||
		    dkp_mono_now() + 0.25 >= deadline)
			break;
		usleep(250000);
		s = NATS_OK;
	}
	if (s != NATS_OK) {
		snprintf(why, whylen, "publish to %s: %s%s", c->js.in_subject,
			 status_text(s),
			 s == NATS_NO_RESPONDERS ? " (no stream takes the subject, or no JetStream leader)" : "");
		rc = status_errno(s);
		/* the stream refuses the size (its max_msg_size): permanent;
		 * anything else the stream or the library answered (full with
		 * discard new, a store failure, an API error): temporary */
		if (jerr == JSStreamMessageExceedsMaximumErr)
			rc = -EMSGSIZE;
		else if (rc != -EMSGSIZE && rc != -EACCES && rc != -EINVAL)
			rc = -EAGAIN;
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	js_free(j);
	return rc;
}
