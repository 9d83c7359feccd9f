/*
 * relay_queue.h — the relay's side of the queue directory (docs/queue.md,
 * "The relay"): it takes published messages out of OUT/new by rename,
 * like any consumer (docs/integration.md), into its own area
 * OUT/relay/R/ (R: this process; the directory is flock'ed while it
 * lives), and from there each message is deleted (every recipient
 * answered 2xx), renamed into OUT/defer/ (some recipient 4xx: the retry
 * state is in the name, ID~ATTEMPTS~NEXT~FIRST, so one rename records
 * both), or moved to FAILED/ID with FAILED/ID.reason (the engine's
 * layout). Several relays share a queue: the rename decides who takes a
 * message. A relay that died leaves its area: the next relay to start
 * moves its files to OUT/defer/ (due at once) and removes it.
 *
 * Names: '~' is outside the queue-ID alphabet (dkp_qdir_id_ok), so ID
 * and state never mix. Syscall-facing: 0 or -errno. Threads: one struct
 * per process; its fds are read-only after open, so workers share it.
 */
#ifndef DKP_RELAY_QUEUE_H
#define DKP_RELAY_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "dkimpress/dkimpress.h"

/* ID (DKP_QID_MAX) + "~" + three numbers */
#define DKP_RQ_NAME_MAX 320

struct dkp_rq_state {
	unsigned attempts;	/* failed attempts so far */
	int64_t next;		/* earliest next attempt, Unix seconds */
	int64_t first;		/* first failed attempt, Unix seconds; 0: none */
};

struct dkp_rq {
	int out_new, defer, relay, area, failed;	/* directory fds */
	char name[64];					/* R */
	char *out_path, *failed_path;
};

/* "ID~A~N~F" or "ID" → id (DKP_RQ_NAME_MAX) and *st (zero for "ID");
 * -1 when name is neither (ID not acceptable, bad numbers). */
int dkp_rq_name_parse(const char *name, char *id, struct dkp_rq_state *st);
void dkp_rq_name_make(char *out, const char *id, const struct dkp_rq_state *st);

/* Open (creating OUT/relay and OUT/defer, mode 0700), make this
 * process's locked area, recover dead relays' areas. why: the path. */
int dkp_rq_open(struct dkp_rq *q, const char *out_dir, const char *failed_dir,
		char *why, size_t whylen);
/* Close; clean = 1 removes the area (when empty). */
void dkp_rq_close(struct dkp_rq *q, int clean);

/* Take name from OUT/new (from_defer 0) or OUT/defer into the area.
 * -ENOENT: someone else took it. */
int dkp_rq_claim(struct dkp_rq *q, int from_defer, const char *name);
/* Read area/name into b (appended). */
int dkp_rq_read(struct dkp_rq *q, const char *name, struct dkp_buf *b);
/* Delivered: unlink area/name. */
int dkp_rq_done(struct dkp_rq *q, const char *name);
/* Replace area/name with p[0..n) (a flushed temporary file renamed over
 * it): the envelope rewritten after some recipients are done. */
int dkp_rq_rewrite(struct dkp_rq *q, const char *name, const void *p, size_t n);
/* area/name → OUT/defer/ID~state, flushed. */
int dkp_rq_defer(struct dkp_rq *q, const char *name, const char *id,
		 const struct dkp_rq_state *st);
/* area/name → FAILED/ID (ID.dupN when taken) with ID.reason; with p
 * non-NULL, p[0..n) is written as the failed message instead and
 * area/name stays. */
int dkp_rq_fail(struct dkp_rq *q, const char *name, const char *id,
		const void *p, size_t n, const char *reason);
/* Every file left in the area (a stop) → OUT/defer, state kept. */
int dkp_rq_release(struct dkp_rq *q);



/* Call fn(ctx, name) for each entry of directory fd but ".", ".." and
 * names starting with '.'; stops when fn returns non-zero. 0 or -errno. */
int dkp_rq_each(int fd, int (*fn)(void *ctx, const char *name), void *ctx);
#endif
