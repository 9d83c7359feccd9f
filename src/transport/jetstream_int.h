/*
 * jetstream_int.h — what the files of the JetStream transport share: the
 * transport and worker structures and the functions one file gives the
 * others. Not for use outside src/transport/jetstream*.c.
 *
 *   jetstream.c         status mapping, connection, streams and the
 *                       consumer, open/close, the transport's ops table
 *   jetstream_env.c     envelope lines <-> X-Sender/X-Receiver headers
 *   jetstream_fetch.c   a worker: bind, fetch, load into the batch
 *   jetstream_commit.c  a worker: publish outputs, acknowledge inputs
 *   jetstream_pub.c     the producer `dkimpress enqueue` uses
 */
#ifndef DKP_JETSTREAM_INT_H
#define DKP_JETSTREAM_INT_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/budget.h"
#include "dkimpress/dkimpress.h"
#include "transport/jetstream.h"

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

/* An output's envelope when it is not the input's headers: the
 * x-sender/x-receiver lines that came at the top of the payload. */
struct envh {
	char *sender;		/* NULL: copy the input's headers */
	char **rcpt;
	size_t nrcpt;
};

/* natsStatus as -errno (jetstream.h's error list). */
int dkp_js_status_errno(natsStatus s);
/* The library's last error text, or the status's. */
const char *dkp_js_status_text(natsStatus s);
/* Connect with c's options (j->c set); js context for set-up requests.
 * forever: reconnect without end (an engine), else give up soon. */
int dkp_js_connect(struct dkp_js *j, int forever, int *nservers, char *why,
		   size_t whylen);
/* Duplicate the transport settings the workers use after open. */
void dkp_js_copy_config(struct dkp_js_config *d, const struct dkp_js_config *s);
/* Close the connection, free everything (NULL: nothing). */
void dkp_js_free(struct dkp_js *j);

/* jetstream_env.c */
void dkp_js_copy_envelope(natsMsg *in, natsMsg *out);
int dkp_js_out_envelope(natsMsg *in, struct dkp_tmsg *m, struct envh *e);

/* jetstream_fetch.c: the ops of a worker */
int dkp_js_worker_new(struct dkp_transport *t, unsigned id, int want_uring,
		      unsigned depth, struct dkp_tworker **out);
void dkp_js_worker_free(struct dkp_tworker *w);
int dkp_js_worker_uring(const struct dkp_tworker *w);
int dkp_js_fetch(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
		 uint64_t max_bytes, struct dkp_budget *budget);

/* jetstream_commit.c */
int dkp_js_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n);

#endif
