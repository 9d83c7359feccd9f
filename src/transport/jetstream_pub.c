/*
 * jetstream_pub.c — the producer: one message into the input stream for
 * `dkimpress enqueue` (transport = jetstream), with its queue ID as
 * Nats-Msg-Id so that the stream's duplicate window keeps one copy of a
 * retried hand-over.
 */
#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "transport/jetstream_int.h"

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
	dkp_js_copy_config(&j->jc, &c->js);
	if ((rc = dkp_js_connect(j, 0, &nservers, why, whylen)) < 0) {
		dkp_js_free(j);
		return rc;
	}
	if ((int64_t)len > j->max_payload) {
		snprintf(why, whylen, "message of %zu bytes exceeds the server's max_payload (%lld)",
			 len, (long long)j->max_payload);
		dkp_js_free(j);
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
			 dkp_js_status_text(s),
			 s == NATS_NO_RESPONDERS ? " (no stream takes the subject, or no JetStream leader)" : "");
		rc = dkp_js_status_errno(s);
		/* the stream refuses the size (its max_msg_size): permanent;
		 * anything else the stream or the library answered (full with
		 * discard new, a store failure, an API error): temporary */
		if (jerr == JSStreamMessageExceedsMaximumErr)
			rc = -EMSGSIZE;
		else if (rc != -EMSGSIZE && rc != -EACCES && rc != -EINVAL)
			rc = -EAGAIN;
	} else if (pa && pa->Duplicate) {
		rc = 1;
	}
	jsPubAck_Destroy(pa);
	natsMsg_Destroy(m);
	dkp_js_free(j);
	return rc;
}
