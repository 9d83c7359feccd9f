/*
 * qdir.h — the queue-directory protocol (DESIGN.md, STYLE.md section 7).
 *
 *   in/tmp   producers write here, then rename into in/new
 *   in/new   complete messages waiting; the file name is the queue ID
 *   in/cur   claimed by a signer (rename new -> cur is the claim)
 *   out/tmp  signed copies being written (unique names, O_EXCL, 0600),
 *            in one subdirectory per worker thread, out/tmp/wN/
 *   out/new  published signed messages, named by queue ID
 *   failed   messages that cannot be signed, ID plus ID.reason
 *
 * States of one message, by which files exist (qmail INTERNALS style):
 *   S1 in/new/ID                       queued
 *   S2 in/cur/ID                       claimed
 *   S3 in/cur/ID + out/tmp/T           signed copy being written
 *   S4 in/cur/ID + out/new/ID          published, input not yet retired
 *   S5 out/new/ID                      done
 *   F  failed/ID + failed/ID.reason    permanently failed
 * A crash in S2 or S3 re-signs at start (out/tmp is emptied first); a crash
 * in S4 retires the input at start. Nothing is ever in no state, and
 * out/new/ID is created with RENAME_NOREPLACE, so never twice.
 *
 * Syscall-facing: functions return 0 or -errno (STYLE.md section 3).
 */
#ifndef DKP_QDIR_H
#define DKP_QDIR_H

#include <stddef.h>

#define DKP_QID_MAX 200

struct dkp_qdir {
	int in_tmp, in_new, in_cur, out_tmp, out_new, failed;
	char *in_path, *out_path, *failed_path;
};

/* Is name an acceptable queue ID (allow-list: letters, digits, and
 * . _ - + = , : @ ; not starting with '.'; at most DKP_QID_MAX)? */
int dkp_qdir_id_ok(const char *name);

/* Create missing directories (mode 0700) and open them all. */
int dkp_qdir_open(struct dkp_qdir *q, const char *in, const char *out,
		  const char *failed);
void dkp_qdir_close(struct dkp_qdir *q);

/* Call fn for each acceptable name in dirfd (in/new or in/cur); a name
 * that is not a queue ID is reported through bad (may be NULL) and left
 * alone. Stops early if fn returns non-zero. */
int dkp_qdir_scan(int dirfd, int (*fn)(void *ctx, const char *id),
		  void (*bad)(void *ctx, const char *name), void *ctx);

/* Startup recovery: empty out/tmp; for each in/cur/ID, retire it if
 * out/new/ID exists (S4), else move it back to in/new (S2/S3) so it is
 * signed again. Counts what it did. */
/* Worker id's own temporary directory, out/tmp/wID (made if missing):
 * files are created there so that workers never queue on one directory's
 * lock while ext4 allocates an inode. Returns an fd or -errno. Recovery
 * empties these too. */
int dkp_qdir_worker_tmp(const struct dkp_qdir *q, unsigned id);

int dkp_qdir_recover(struct dkp_qdir *q, size_t *retired, size_t *requeued);

/* fsync a directory. */
int dkp_qdir_sync(int dirfd);

/* Move in/cur/ID to failed/ID with failed/ID.reason (one line), durably. */
int dkp_qdir_fail(struct dkp_qdir *q, const char *id, const char *reason);

/* Return in/cur/ID to in/new/ID (a temporary failure: retry later). */
int dkp_qdir_defer(struct dkp_qdir *q, const char *id);

#endif
