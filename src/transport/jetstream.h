/*
 * jetstream.h — the NATS JetStream transport (transport = jetstream;
 * docs/scale-out.md). A second implementation of transport.h, beside the
 * queue directory, for several signer machines fed from one replicated
 * store.
 *
 * Wire format: the NATS payload is the RFC 5322 message; the envelope is
 * in the headers X-Sender (one) and X-Receiver (one value per
 * recipient); the queue ID in Nats-Msg-Id. The signed output carries the
 * same three headers, so the output stream's duplicate window drops the
 * re-publish of a message signed again after a crash. Inside the engine
 * the envelope travels as the pickup-directory lines (dkim/envelope.h):
 * fetch renders the headers as "x-sender:"/"x-receiver:" lines in front
 * of the payload, commit takes them back into headers.
 *
 * The engine loop (src/engine/pool_worker.c, ops->pulls = 1): each worker
 * fetches up to `batch` messages from one durable pull consumer shared by
 * every engine (fetch returns how many it filled, 0 after a short wait
 * with nothing to do, or -errno); commit publishes every output
 * asynchronously (signed ones to out_subject; failed ones, with
 * X-Dkimpress-Error, to failed_subject), waits for every publish
 * acknowledgement, and only then acknowledges the inputs; deferred ones
 * are negatively acknowledged with a delay (nak_delay, doubling per
 * delivery up to 64x). A publish that is not acknowledged leaves its
 * input unacknowledged-then-NAK'd: it comes back, is signed again, and
 * the duplicate window drops whatever copy already made it.
 *
 * Threads: one NATS connection per process, one JetStream context and
 * one pull subscription per worker. dkp_js_open/close belong to the
 * caller's thread.
 *
 * Errors: functions return 0 or -errno: -ETIMEDOUT / -ECONNREFUSED the
 * cluster cannot be reached (EX_TEMPFAIL), -ENOENT a stream is missing
 * and create_streams = no (EX_CONFIG), -EACCES authorization refused,
 * -EMSGSIZE over the server's max_payload, -EIO anything else; why gets
 * one line for the log (never a password or token).
 */
#ifndef DKP_JETSTREAM_H
#define DKP_JETSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "conf/config.h"
#include "transport/transport.h"

struct dkp_js;

/* Connect to c->js.servers, make (or check) the three streams and the
 * durable consumer. c is read during the call only (the transport keeps
 * copies: a reload may free it). */
int dkp_js_open(struct dkp_js **out, const struct dkp_config *c, char *why,
		size_t whylen);
/* The same for another reader of the streams (engine 0: `dkimpress
 * relay`, src/relay/relay_js.c): connect, make or check the streams, not
 * the engine's consumer; its connection and copied settings. */
int dkp_js_open_as(struct dkp_js **out, const struct dkp_config *c,
		   int engine, char *why, size_t whylen);
natsConnection *dkp_js_conn(struct dkp_js *j);
const struct dkp_js_config *dkp_js_conf(const struct dkp_js *j);
struct dkp_transport *dkp_js_transport(struct dkp_js *j);
/* The server's max_payload (bytes). */
int64_t dkp_js_max_payload(const struct dkp_js *j);
/* Replicas of the input stream as found or made. */
int dkp_js_replicas(const struct dkp_js *j);
/* Messages waiting in the consumer (pending + delivered unacknowledged),
 * or -1 when the server cannot tell now. */
long dkp_js_waiting(struct dkp_js *j);
/* Messages waiting in the consumer, not yet delivered to any engine
 * (the consumer's NumPending; delivered-unacknowledged ones are not
 * counted), or -1 when the server cannot tell now. A server round trip
 * at most every max_age seconds: within it the last answer is returned.
 * Thread-safe (the metrics thread calls it). */
long dkp_js_num_pending(struct dkp_js *j, double max_age);
/* Flush what is buffered (acknowledgements), close, free. */
void dkp_js_close(struct dkp_js *j);

/* Sysexits code for a negative return of dkp_js_open or dkp_js_publish. */
int dkp_js_exit_code(int rc);

/* servers (a comma-separated URL list) with the userinfo of every URL
 * ("nats://user:pass@host") replaced by "***@", into out (always
 * terminated): the only form that may be logged. */
const char *dkp_js_redact(const char *servers, char *out, size_t outsz);

/*
 * The envelope lines env[0..len) (as dkp_envelope_split accepted them)
 * as header values: *sender (the null sender "<>") and rcpts[0..*nrcpts),
 * without angle brackets or surrounding white space; every string and
 * the array are the caller's to free (dkp_js_envelope_free). Returns 0,
 * or -EINVAL when the lines are not one x-sender and x-receiver lines.
 */
int dkp_js_envelope_parse(const char *env, size_t len, char **sender,
			  char ***rcpts, size_t *nrcpts);
void dkp_js_envelope_free(char *sender, char **rcpts, size_t nrcpts);

/*
 * Producer side (`dkimpress enqueue` with transport = jetstream): publish
 * data[0..len) to c->js.in_subject with X-Sender = sender (NULL: no
 * envelope headers), one X-Receiver per rcpts[i], Nats-Msg-Id = id, and
 * wait for the stream's acknowledgement (up to wait_ms). Returns 0, 1
 * when the stream acknowledged it as a duplicate (the same ID within its
 * duplicate window: published before, not stored again), or -errno.
 */
int dkp_js_publish(const struct dkp_config *c, const char *sender,
		   const char *const *rcpts, size_t nrcpts, const char *data,
		   size_t len, const char *id, int64_t wait_ms, char *why,
		   size_t whylen);

#endif
