/*
 * qdir.h — the queue-directory transport: Maildir-style directories on one
 * machine, shared by several engine processes. docs/queue.md is the full
 * protocol: the directories, the states of one message, every transition
 * and the crash table. In short:
 *
 *   in/tmp, in/new/ID        producers write, then rename into in/new
 *   in/cur/E/ID              claimed by engine E (its area, flock'ed)
 *   out/tmp/E/wN/ID          signed copy being written by worker N
 *   out/new/ID               published
 *   failed/ID, ID.reason     failed, with why
 *
 * One batch: claim → read → (engine signs) → write → flush copies →
 * check inputs unchanged → retire inputs (unlink + flush in/cur/E) →
 * publish (rename without replacing + flush out/new); failures to
 * failed/, deferrals back to in/new. Recovery never looks at out/new.
 *
 * Syscall-facing: functions return 0 or -errno (STYLE.md section 3); each
 * message's own problem is in its struct dkp_err. Thread-safety: one
 * struct dkp_qdir per process, shared by its workers (its fds are
 * read-only after open); each worker has its own struct dkp_tworker.
 */
#ifndef DKP_QDIR_H
#define DKP_QDIR_H

#include <stddef.h>

#include "transport/transport.h"

struct dkp_qdir;

struct dkp_qdir_opts {
	const char *in, *out, *failed;	/* the three roots */
	int flush_files;	/* 1: fsync per file; 0: one syncfs per batch */
	unsigned out_mode;	/* of published messages; 0: 0600 */
	long out_gid;		/* out_group: out, out/new, out/tmp and the
				 * published messages get it; < 0: none */
};

/* Is name an acceptable queue ID (allow-list: letters, digits, and
 * . _ - + = , : @ ; not starting with '.'; not ending in ".reason"; at
 * most DKP_QID_MAX)? */
int dkp_qdir_id_ok(const char *name);

/*
 * Open (creating missing directories, mode 0700) and set up this
 * engine's own claim and temporary areas under a lock that dies with the
 * process. With out_gid: out gets that group and g+x, out/new the group
 * and g+rwx (a consumer in the group takes files by rename), out/tmp the
 * group and setgid (the copies made in it inherit the group); the
 * caller's umask must let out_mode through. Several engines may open one queue. Returns 0 or -errno, with
 * the failing path in why (size whylen).
 */
int dkp_qdir_open(struct dkp_qdir **out, const struct dkp_qdir_opts *o,
		  char *why, size_t whylen);
/* Close; clean = 1 removes this engine's areas when they are empty. */
void dkp_qdir_close(struct dkp_qdir *q, int clean);
/* The transport interface of q (the seam in transport.h). */
struct dkp_transport *dkp_qdir_transport(struct dkp_qdir *q);
/* This engine's name (E above). */
const char *dkp_qdir_engine(const struct dkp_qdir *q);
/* The in/new path, for logs and inotify. */
const char *dkp_qdir_new_path(const struct dkp_qdir *q);
/* Number of acceptable names in in/new now (0 when none), or -errno. */
long dkp_qdir_count_new(struct dkp_qdir *q);

#endif
