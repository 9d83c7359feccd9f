/*
 * jetstream.c — the NATS JetStream transport; see jetstream.h and
 * docs/scale-out.md. This file: status mapping, the connection, the
 * streams and the consumer, open and close (the other files are listed
 * in jetstream_int.h).
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

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "transport/jetstream_int.h"

/* ---- status mapping ------------------------------------------------- */

int dkp_js_status_errno(natsStatus s)
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

/* The library's last error text, or the status's. */
const char *dkp_js_status_text(natsStatus s)
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
			 dkp_js_status_text(s));
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
		snprintf(why, whylen, "stream %s: %s", name, dkp_js_status_text(s));
		return dkp_js_status_errno(s);
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
		 j->replicas, dkp_js_status_text(s));
	return dkp_js_status_errno(s);
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
		 jc->in_stream, dkp_js_status_text(s));
	return dkp_js_status_errno(s);
}

/* Connect; js context for the set-up requests. */
int dkp_js_connect(struct dkp_js *j, int forever, int *nservers, char *why,
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
			 dkp_js_status_text(s));
		return s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED
			       ? -EACCES : s == NATS_SSL_ERROR ? -EINVAL : -ECONNREFUSED;
	}
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	s = natsConnection_JetStream(&j->js, j->nc, &jo);
	if (s != NATS_OK) {
		snprintf(why, whylen, "JetStream context: %s", dkp_js_status_text(s));
		return dkp_js_status_errno(s);
	}
	j->max_payload = natsConnection_GetMaxPayload(j->nc);
	return 0;
}

/* Duplicate the transport settings the workers use after open. */
void dkp_js_copy_config(struct dkp_js_config *d, const struct dkp_js_config *s)
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

void dkp_js_free(struct dkp_js *j)
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
	.worker_new = dkp_js_worker_new,
	.worker_free = dkp_js_worker_free,
	.worker_uring = dkp_js_worker_uring,
	.fetch = dkp_js_fetch,
	.commit = dkp_js_commit,
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
	dkp_js_copy_config(&j->jc, &c->js);
	if ((rc = dkp_js_connect(j, 1, &nservers, why, whylen)) < 0) {
		dkp_js_free(j);
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
		dkp_js_free(j);
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
	dkp_js_free(j);
}

