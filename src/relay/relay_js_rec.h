/*
 * relay_js_rec.h — the JetStream relay's outcome records: what replaces a
 * message of the output stream after a partial outcome, stored in a
 * JetStream key-value bucket before any of it is published, so that a
 * redelivery of that message (after a crash between the publications and
 * the ACK) re-publishes the same messages under the same IDs instead of
 * sending the message again (docs/scale-out.md, "Delivering from
 * DKIM_OUT").
 *
 * The bucket: one per relay consumer, named dkp_rjrec_bucket_name()
 * ("<consumer>-records", characters a bucket name cannot have as '_'),
 * history 1, TTL = dup_window (a record must outlive any redelivery the
 * duplicate window still covers, and nothing longer needs it), the
 * replicas of the streams. The key is the message's Nats-Msg-Id with
 * every byte other than [A-Za-z0-9_-] as "=XX"; the record also names the
 * stream sequence of the message it belongs to, and a lookup for another
 * sequence (the same ID stored again after the duplicate window) finds
 * nothing.
 *
 * A record is text, one item a line (values never hold a line break):
 *
 *   dkimpress-relay-record 1 SEQ
 *   S SENDER                    X-Sender of every publication ("<>" null)
 *   P SUBJECT ID                a publication: subject, Nats-Msg-Id
 *   R RECIPIENT                 an X-Receiver of the last publication
 *   H NAME VALUE                a header of the last publication
 *
 * The payload of every publication is the original message's.
 *
 * Errors: 0 or -errno as the transport (jetstream.h): -ENOENT the bucket
 * is missing and create_streams = no, -ETIMEDOUT the cluster did not
 * answer, -EIO anything else. Threads: a kvStore per worker.
 */
#ifndef DKP_RELAY_JS_REC_H
#define DKP_RELAY_JS_REC_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "dkimpress/dkimpress.h"

/* The bucket of consumer into out (always terminated). */
void dkp_rjrec_bucket_name(char *out, size_t outsz, const char *consumer);
/* Make the bucket unless it is there (create 0: a missing one is
 * -ENOENT); warn when its TTL is shorter than ttl_s. */
int dkp_rjrec_ensure(jsCtx *js, const char *consumer, int replicas, int64_t ttl_s,
		     int create, char *why, size_t whylen);
/* A worker's handle on the bucket (kvStore_Destroy). */
int dkp_rjrec_bind(kvStore **kv, jsCtx *js, const char *consumer);

/* Start a record of the message at stream sequence seq into b. */
void dkp_rjrec_begin(struct dkp_buf *b, uint64_t seq, const char *sender, size_t len);
/* Append an item (type 'P', 'R', 'H'); b takes a and then, after a space,
 * v (NULL: none), each with line breaks as '?'. */
void dkp_rjrec_item(struct dkp_buf *b, char type, const char *a, size_t alen,
		    const char *v);

/* Store b under id (waits for the stream's acknowledgement). */
int dkp_rjrec_put(kvStore *kv, const char *id, const struct dkp_buf *b);
/* The record of id for the message at stream sequence seq into out: 1
 * found, 0 none (or another message's), -errno the bucket did not
 * answer. */
int dkp_rjrec_get(kvStore *kv, const char *id, uint64_t seq, struct dkp_buf *out);

/*
 * Walk a record: each call returns the next item's type ('S', 'P', 'R',
 * 'H'), 0 at the end, or -1 for a malformed line; *a and *v (NULL when
 * the item has one field) point into b, which is cut into C strings
 * (the record cannot be stored after its first walk). *pos starts at 0.
 */
int dkp_rjrec_next(struct dkp_buf *b, size_t *pos, const char **a, const char **v);

#endif
