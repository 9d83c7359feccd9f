/*
 * relay_js.h — `dkimpress relay` with transport = jetstream: deliver the
 * signed messages of the output stream (out_stream / out_subject) over
 * the same SMTP/LMTP session code as the directory relay
 * (smtp_session.h, relay_deliver.h), read through a durable pull
 * consumer of the relay's own (relay_consumer, default
 * "dkimpress-relay"; made when missing: AckExplicit, DeliverAll,
 * filtered on out_subject, AckWait = relay_timeout x RELAY_JS_ACK_CMDS).
 *
 * Per message (docs/scale-out.md, "Delivering from DKIM_OUT"):
 *
 *   every recipient 2xx   ACK (synchronous)
 *   every recipient 4xx   NAK with the retry delay of relay_retry for
 *                         attempt N; N is the stream's delivery count
 *                         (plus X-Dkimpress-Attempts, below), so the
 *                         state is in the stream, never only in memory
 *   some 5xx              published to failed_subject with only those
 *                         recipients and X-Dkimpress-Error (the replies),
 *                         Nats-Msg-Id ID~f; then as below for the rest
 *   some 2xx or 5xx, some 4xx
 *                         the 4xx ones republished to out_subject as a
 *                         new message (X-Receiver: just them,
 *                         Nats-Msg-Id ROOT~rN+1, X-Dkimpress-Attempts,
 *                         -First, -Next), then the original ACKed: a
 *                         crash between the two brings the original
 *                         back, it is answered from its record, and the
 *                         duplicate window drops its republish
 *   past relay_max_attempts or relay_max_age
 *                         published to failed_subject (ID~g), ACKed
 *
 * What replaces a message (the failed part, the remainder) is first
 * stored as its outcome record (relay_js_rec.h), then published, then
 * the message ACKed; a redelivery (delivery count > 1) with a record is
 * answered from it: the same publications again (the duplicate window
 * drops them), an ACK, nothing sent. First deliveries do no lookup.
 * A republished remainder is held once (its first delivery is NAKed
 * until X-Dkimpress-Next). Nothing is acknowledged before what replaces
 * it is stored; duplicates come only from the window between the next
 * hop's final reply and the ACK or the record (measured, like the
 * directory relay's).
 *
 * Test hooks (only in the test build, build/dkimpress-test: Makefile,
 * HOOK_SRC): with DKIMPRESS_RELAY_TRACE=FILE every worker appends "try
 * ID" before a transaction and "ack ID" after the message's ACK (or NAK)
 * to FILE ("rec ID" when its outcome record is stored, "replay ID" when
 * a redelivery is answered from one), so a test that kills the relay can
 * tell which duplicates the window explains; with DKIMPRESS_RELAY_CRASH_REPUBLISHED set the relay
 * kills itself (SIGKILL) right after storing a republished remainder,
 * before the original's ACK.
 *
 * Threads: relay_connections workers, each with its own session, JetStream
 * context and pull subscription on one connection.
 */
#ifndef DKP_RELAY_JS_H
#define DKP_RELAY_JS_H

#include <openssl/ssl.h>

#include "conf/config.h"

/* AckWait = relay_timeout x this: greeting, EHLO, STARTTLS, EHLO, MAIL,
 * a pipelined RCPT group, DATA, the data, and room */
#define RELAY_JS_ACK_CMDS 12

/*
 * Run until a stop signal on sfd (SIGTERM/SIGINT, a signalfd) or, with
 * once, until every worker's fetch comes back empty. ctx: NULL without
 * TLS. Returns the exit status (0; 75 the stream cannot be reached or
 * once left messages waiting for a retry; 78 configuration).
 */
int dkp_relay_js_run(const struct dkp_config *conf, SSL_CTX *ctx,
		     const char *helo, int once, int sfd);

#endif
