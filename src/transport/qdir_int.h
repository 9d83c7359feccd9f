/*
 * qdir_int.h — what qdir.c and qdir_recover.c share: the queue's state and
 * the small helpers both use. Not for other modules (they use qdir.h).
 */
#ifndef DKP_QDIR_INT_H
#define DKP_QDIR_INT_H

#include <pthread.h>
#include <stdint.h>

#include "transport/qdir.h"
#include "transport/uring.h"

#define DUP_MAX 100000		/* ID.dup1 .. ID.dup99999 */
#define STALE_HIDDEN_S 60	/* a half-made engine area older than this is dead */

struct dkp_qdir {
	struct dkp_transport t;	/* first: the seam */
	int in_tmp, in_new, in_cur, out_tmp, out_new, failed;
	int claim;		/* in/cur/E, flock'ed for the life of the process */
	int tmp;		/* out/tmp/E */
	char engine[48];
	char *in_path, *out_path, *failed_path, *new_path;
	int flush_files;
	unsigned out_mode;	/* of the copies (and so of out/new files) */
	pthread_mutex_t mu;	/* recover() and the bad-name set */
	struct dkp_htab *bad;	/* names in in/new already reported, and
				 * "cur/NAME" for in/cur (not engine areas) */
};

struct dkp_tworker {
	struct dkp_qdir *q;
	unsigned id;
	struct dkp_ring *ring;
	int tmpdir;		/* out/tmp/E/wN */
	struct dkp_rop *ops;
	size_t nops;
	struct dkp_budget *budget;	/* set by the first fetch, then fixed */
	uint64_t taken;		/* bytes the fetch in hand took */
	int *ofd;		/* the stage's copy fds (scratch) */
	size_t nofd;
	int flush_err;		/* commit_round: this directory's flush */
};

struct timespec;
/* The k-th ring operation of w's scratch, cleared, of kind kind. */
struct dkp_rop *dkp_qdir_op(struct dkp_tworker *w, size_t k, enum dkp_rop_kind kind);
/* Is m signed and to be published? */
int dkp_qdir_publishable(const struct dkp_tmsg *m);
/* Defer m for a system error e at step (errno-classed, temporary). */
void dkp_qdir_defer_sys(struct dkp_tmsg *m, const char *step, int e, const char *what);
/* A timespec in nanoseconds. */
int64_t dkp_qdir_ts_ns(const struct timespec *ts);
/* The n-th name for id: id, id.dup1, ... (DKP_QID_MAX + 1 bytes). */
void dkp_qdir_dup_name(char *out, const char *id, unsigned n);
/* The commit half (qdir_commit.c): stage, commit_round, and commit (the
 * stage and two rounds in a row for one batch). */
int dkp_qdir_stage(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n);
int dkp_qdir_commit_round(struct dkp_tbatch *fresh, size_t nf, struct dkp_tbatch *done,
			  size_t nd, int *unsynced);
int dkp_qdir_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n);

/* Is name an engine area ("e<pid>-<8 hex>")? */
int dkp_qdir_engine_name_ok(const char *s);
/* Rename src into dst under id, or id.dupN when that is taken; never
 * replaces anything. The name used goes to used (DKP_QID_MAX + 1). */
int dkp_qdir_move_unique(int sdir, const char *sname, int ddir, const char *id,
			 char *used);
/* A file name fit for one log line: bytes outside printable ASCII, and
 * the backslash, as \xHH; out of outsz bytes (4 * 255 + 1 is enough). */
void dkp_qdir_escape_name(char *out, size_t outsz, const char *in);
/* fsync a directory: 0 or -errno. */
int dkp_qdir_sync_dir(int fd);
/* Call fn(ctx, name, d_type) for every entry of dirfd but . and ..;
 * stops when fn returns non-zero (a negative value is then returned). */
int dkp_qdir_each_entry(int dirfd, int (*fn)(void *ctx, const char *name, int type),
			void *ctx);
/* The transport's recover operation (qdir_recover.c). */
int dkp_qdir_recover(struct dkp_transport *t, struct dkp_recovery *r);

#endif
