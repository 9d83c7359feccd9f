/*
 * dedup.h — the de-duplication window of the queue directory: which
 * caller-chosen IDs (`dkimpress enqueue --id`) were handed over lately,
 * so that an MTA that lost enqueue's answer and hands the same message
 * over again gets "done" instead of a second copy. The design, its
 * states and its crash table are in docs/queue.md ("The de-duplication
 * window"); in short:
 *
 *   in/dedup/lock              one lock file; the key's byte (of 65536)
 *                              is locked (OFD lock) by the process that
 *                              decides about that key, and dies with it
 *   in/dedup/bSTART.WIDTH/KEY  a remembered key: a hard link of the
 *                              bucket's count file .nN (so .nN's link
 *                              count is the bucket's size); the bucket
 *                              holds the keys marked in [START,
 *                              START+WIDTH) and lives until
 *                              START+WIDTH+window
 *   in/dedup/xSTART.WIDTH      a bucket evicted early (dedup_max)
 *   in/tmp/dd.KEY              the pending message of KEY: it exists
 *                              from before the mark until the rename
 *                              into in/new, so "marked and not pending"
 *                              means "published"
 *
 * KEY is the first 128 bits of SHA-256(ID) in hex: any ID maps to one
 * file-system-safe name of fixed length.
 *
 * Contract: the caller holds the key's lock (dkp_dedup_lock) around
 * check, stage, mark, its own rename into in/new, and forget. Several
 * processes (enqueue calls, and nothing else) share a queue's window
 * through the file system alone. Not thread-safe: one struct per thread.
 *
 * Errors: 0 or -errno (syscall-facing, STYLE.md 3), a short reason in
 * the struct for the caller's log line (dkp_dedup_why).
 */
#ifndef DKP_DEDUP_H
#define DKP_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#define DKP_DEDUP_KEY_LEN 32	/* hex characters */
#define DKP_DEDUP_ID_MAX 512	/* bytes of an ID */
#define DKP_DEDUP_PENDING_MAX (3 + DKP_DEDUP_KEY_LEN + 1)

enum { DKP_DEDUP_NEW = 0, DKP_DEDUP_SEEN = 1 };

struct dkp_dedup;

/* Is id usable: 1 to DKP_DEDUP_ID_MAX bytes, none a control byte or a
 * space (8-bit bytes are fine: SMTPUTF8 addresses)? *why on refusal. */
int dkp_dedup_id_ok(const char *id, const char **why);

/* key (DKP_DEDUP_KEY_LEN + 1 bytes) of id. */
void dkp_dedup_key(const char *id, char *key);

/* id itself when it is a valid queue ID (dkp_qdir_id_ok), else "id-"
 * and its key: what goes into Nats-Msg-Id and log lines (outsz >= 256). */
void dkp_dedup_safe_id(const char *id, char *out, size_t outsz);

/* The pending name of key in in/tmp, "dd.KEY", into buf. */
const char *dkp_dedup_pending(const char *key, char *buf, size_t bufsz);

/* Open (making in_dir/dedup, mode 0700, when missing) the window of the
 * queue whose in/tmp is tmpfd (opened for reading: it is flushed). window
 * in seconds (>= 1), max the number of keys kept before the oldest
 * bucket is evicted early. -errno with why filled on failure. */
int dkp_dedup_open(struct dkp_dedup **out, const char *in_dir, int tmpfd,
		   int64_t window, uint64_t max, char *why, size_t whylen);
void dkp_dedup_close(struct dkp_dedup *d);

/* The last failure's reason (a static string or the struct's buffer). */
const char *dkp_dedup_why(const struct dkp_dedup *d);

/* Lock key, waiting at most wait_ms: 0, -ETIMEDOUT or -errno. */
int dkp_dedup_lock(struct dkp_dedup *d, const char *key, int wait_ms);
void dkp_dedup_unlock(struct dkp_dedup *d);

/* Locked: is key remembered within the window at time now, and was its
 * message published? DKP_DEDUP_SEEN, or DKP_DEDUP_NEW after clearing a
 * hand-over that died before publishing (its mark first, then its
 * pending file); -errno. */
int dkp_dedup_check(struct dkp_dedup *d, const char *key, int64_t now);

/* Locked, after NEW: rename in/tmp/tmpname to the pending name and
 * flush in/tmp. */
int dkp_dedup_stage(struct dkp_dedup *d, const char *key, const char *tmpname);

/* Locked, after stage: remember key in the bucket of now (flushed);
 * then, over max, evict the oldest other live bucket (a warning). */
int dkp_dedup_mark(struct dkp_dedup *d, const char *key, int64_t now);

/* Locked, when the message was not published after all: forget key's
 * marks, then remove its pending file (in this order). */
int dkp_dedup_forget(struct dkp_dedup *d, const char *key, int64_t now);

/* Remove up to max_work keys of expired or evicted buckets and the
 * buckets left empty; pending files of dead hand-overs go with them.
 * Takes locks without waiting: call it unlocked. Returns the number of
 * keys removed, or -errno. */
int dkp_dedup_sweep(struct dkp_dedup *d, int64_t now, unsigned max_work);

/* Keys in live buckets at time now (the count dedup_max bounds). */
int64_t dkp_dedup_count(struct dkp_dedup *d, int64_t now);

#endif
