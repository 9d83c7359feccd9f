/*
 * qdir_commit.c — the commit half of the queue-directory transport
 * (docs/queue.md, steps 4 to 8, fail and defer), as a pipeline:
 *
 *   stage         (the worker)  step 4, write: each signed copy created
 *                               and written whole, closed
 *   commit_round  (the commit   for the batches staged since the last
 *                  thread)      round ("fresh") and those flushed by it
 *                               ("done"): 6, check and 7, retire the done
 *                               ones; ONE flush that makes the fresh
 *                               copies (5) and the done retires durable
 *                               together; 8, publish the done ones (their
 *                               out/new entries made durable by the next
 *                               round's flush); fail and defer them
 *
 * So each batch takes two rounds, and each round costs one flush (a
 * syncfs, which on a journalled file system is one journal commit)
 * however many batches it covers. The order of the steps for each
 * message is the one of docs/queue.md: its copy is flushed before its
 * input is unlinked, the unlink is flushed before the copy is renamed
 * into out/new. A staged batch waiting for its round is in state W; a
 * fresh batch after the flush is still W (input claimed, copy flushed);
 * a done batch after its unlinks is R. The crash table holds as it is.
 * Namespace operations and flushes are plain syscalls; the stage's
 * creates and writes go through the worker's ring. commit_round touches
 * only what the stage left (the messages, the worker's read-only
 * directory fds), never the worker's ring or scratch, so it may run
 * beside the worker's next fetch.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/budget.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "transport/qdir_int.h"
#include "transport/uring.h"

/* Step 4, write: out/tmp/E/wN/ID created exclusively, written whole (and
 * fsync'ed, linked, with flush = files), then closed. */
static int write_copies(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	int *ofd;
	size_t i, k;
	int rc, j;

	if (w->nofd < n) {
		w->ofd = dkp_realloc(w->ofd, n * sizeof(*w->ofd));
		w->nofd = n;
	}
	ofd = w->ofd;
	for (i = k = 0; i < n; i++) {
		ofd[i] = -1;
		if (dkp_qdir_publishable(&m[i])) {
			struct dkp_rop *o = dkp_qdir_op(w, k++, DKP_ROP_OPEN_EXCL);

			o->dirfd = w->tmpdir;
			o->name = m[i].id;
			o->mode = w->q->out_mode;
		}
	}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		return rc;
	for (i = k = 0; i < n; i++) {
		int64_t res;

		if (!dkp_qdir_publishable(&m[i]))
			continue;
		res = w->ops[k++].res;
		if (res < 0) {
			dkp_qdir_defer_sys(&m[i], "write", (int)-res, "cannot create the signed copy");
		} else {
			ofd[i] = (int)res;
			m[i].copy = 1;
		}
	}
	for (i = k = 0; i < n; i++)
		if (ofd[i] >= 0) {
			struct dkp_rop *o = dkp_qdir_op(w, k++, DKP_ROP_WRITEV);

			o->fd = ofd[i];
			for (j = 0; j < m[i].nout; j++)
				o->iov[j] = m[i].out[j];
			o->niov = m[i].nout;
			if (w->q->flush_files) {
				o = dkp_qdir_op(w, k++, DKP_ROP_FSYNC);
				o->flags = DKP_ROP_LINK;
				o->fd = ofd[i];
			}
		}
	rc = dkp_ring_run(w->ring, w->ops, k);
	for (i = k = 0; i < n; i++) {
		int64_t r1 = 0, r2 = 0;

		if (ofd[i] < 0)
			continue;
		if (rc == 0) {
			r1 = w->ops[k++].res;
			if (w->q->flush_files)
				r2 = w->ops[k++].res;
		}
		if (r1 < 0 || r2 < 0)
			dkp_qdir_defer_sys(&m[i], "write", (int)-(r1 < 0 ? r1 : r2),
					   "cannot write the signed copy");
		if (close(ofd[i]) < 0 && dkp_qdir_publishable(&m[i]) && errno != EINTR)
			dkp_qdir_defer_sys(&m[i], "write", errno, "cannot close the signed copy");
		ofd[i] = -1;
	}
	return rc;
}

/* The stage (the worker's part): step 4 for the batch. */
int dkp_qdir_stage(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	size_t i;
	int r;

	if ((r = write_copies(w, m, n)) < 0)
		for (i = 0; i < n; i++)
			if (dkp_qdir_publishable(&m[i]))
				dkp_qdir_defer_sys(&m[i], "write", -r, "I/O ring failed");
	return 0;
}

/* Has batch b a copy still to publish? */
static int live_copies(const struct dkp_tbatch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (b->m[i].copy && dkp_qdir_publishable(&b->m[i]))
			return 1;
	return 0;
}

/* Step 6, check: an input whose size, mtime or ctime moved since it was
 * read has been written to after the claim; never publish it truncated. */
static void check_inputs(struct dkp_tmsg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct stat st;

		if (!dkp_qdir_publishable(&m[i]) || m[i].fd < 0)
			continue;
		if (fstat(m[i].fd, &st) < 0) {
			dkp_qdir_defer_sys(&m[i], "check", errno, "cannot stat the claimed message");
		} else if (st.st_size != m[i].st_size ||
			   dkp_qdir_ts_ns(&st.st_mtim) != m[i].st_mtime_ns ||
			   dkp_qdir_ts_ns(&st.st_ctim) != m[i].st_ctime_ns) {
			dkp_err_set(&m[i].err, DKP_E_IO, 1, "check",
				    "changed after it was claimed (%lld bytes read, %lld now): a producer is writing into in/new directly",
				    (long long)m[i].st_size, (long long)st.st_size);
			m[i].err.sys_errno = EAGAIN;	/* worth a retry soon */
			m[i].outcome = DKP_OUT_DEFERRED;
		}
	}
}

/* Step 7, retire, for one batch whose copies are flushed: unlink each
 * input to publish (one that cannot be unlinked is deferred); then
 * unlink the copies of messages that will not be published (deferred,
 * failed, or not retired), so no copy can outlive a requeue. The flush
 * comes after, in the round. Returns what it touched: 1 for in/cur/E,
 * 2 for the worker's temporary area. */
static int retire(struct dkp_tbatch *b)
{
	struct dkp_tmsg *m = b->m;
	size_t i;
	int touched = 0;

	for (i = 0; i < b->n; i++) {
		if (!dkp_qdir_publishable(&m[i]))
			continue;
		if (unlinkat(b->w->q->claim, m[i].id, 0) < 0 && errno != ENOENT) {
			dkp_qdir_defer_sys(&m[i], "retire", errno, "cannot retire the input");
			continue;
		}
		m[i].claimed = 0;
		touched |= 1;
	}
	for (i = 0; i < b->n; i++)
		if (m[i].copy && !dkp_qdir_publishable(&m[i])) {
			if (unlinkat(b->w->tmpdir, m[i].id, 0) == 0 || errno == ENOENT)
				m[i].copy = 0;
			touched |= 2;
		}
	return touched;
}

/* Step 8, publish: out/tmp/E/wN/ID → out/new/ID (or ID.dupN), no flush
 * (the next flush of the queue covers it). Returns how many. */
static size_t publish(struct dkp_tbatch *b)
{
	struct dkp_qdir *q = b->w->q;
	size_t i, done = 0;
	int rc;

	for (i = 0; i < b->n; i++) {
		struct dkp_tmsg *m = &b->m[i];

		if (!dkp_qdir_publishable(m))
			continue;
		rc = dkp_qdir_move_unique(b->w->tmpdir, m->id, q->out_new, m->id, m->pub);
		if (rc < 0) {
			dkp_err_sys(&m->err, DKP_E_IO, 1, "publish", -rc,
				    "cannot publish; recovery publishes it at the next start");
			m->outcome = DKP_OUT_DEFERRED;
			continue;
		}
		m->copy = 0;
		if (strcmp(m->pub, m->id) == 0)
			m->pub[0] = '\0';
		else
			dkp_warn("%s: out/new/%s exists already (a reused queue ID?): published as out/new/%s",
				 m->id, m->id, m->pub);
		done++;
	}
	return done;
}

/* Fail: failed/ID.reason, then the message to failed/ID (or ID.dupN with
 * ID.dupN.reason), never over anything; then flush failed/. */
static int fail_one(struct dkp_qdir *q, struct dkp_tmsg *m)
{
	char tname[DKP_QID_MAX + 32], name[DKP_QID_MAX + 1], rname[DKP_QID_MAX + 16];
	const char *reason = m->err.msg[0] ? m->err.msg : "failed";
	size_t len = strlen(reason);
	unsigned k;
	int fd, rc = 0;

	snprintf(tname, sizeof(tname), ".%s.reason.tmp", m->id);
	/* never follow or reuse what is there: a leftover of a crash, or a
	 * symlink planted to make us overwrite its target, is removed (the
	 * name itself, not what it points to) */
	fd = openat(q->failed, tname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST && unlinkat(q->failed, tname, 0) == 0)
		fd = openat(q->failed, tname,
			    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, reason, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	for (k = 0; rc == 0 && k < DUP_MAX; k++) {
		dkp_qdir_dup_name(name, m->id, k);
		snprintf(rname, sizeof(rname), "%s.reason", name);
		if (linkat(q->failed, tname, q->failed, rname, 0) < 0) {
			if (errno != EEXIST)
				rc = -errno;
			continue;
		}
		if (renameat2(q->claim, m->id, q->failed, name, RENAME_NOREPLACE) == 0)
			break;
		rc = errno == EEXIST ? 0 : -errno;
		unlinkat(q->failed, rname, 0);
	}
	if (rc == 0 && k == DUP_MAX)
		rc = -EEXIST;
	unlinkat(q->failed, tname, 0);
	if (rc < 0)
		return rc;
	m->claimed = 0;
	if (k > 0) {
		snprintf(m->pub, sizeof(m->pub), "%s", name);
		dkp_warn("%s: failed/%s exists already: failed as failed/%s", m->id,
			 m->id, name);
	}
	/* moved: the message is failed whatever the flush says; a crash
	 * before the flush lands may bring it back to in/cur/E, and
	 * recovery then fails it again */
	if ((rc = dkp_qdir_sync_dir(q->failed)) < 0)
		dkp_error("%s: moved to %s/%s, but flushing that directory failed (%s)",
			  m->id, q->failed_path, name, strerror(-rc));
	return 0;
}

/* Defer: back to in/new/ID (or ID.dupN). Its copy, if any, is gone
 * already (retire). */
static int defer(struct dkp_qdir *q, struct dkp_tmsg *m)
{
	int rc = dkp_qdir_move_unique(q->claim, m->id, q->in_new, m->id, m->pub);

	if (rc < 0)
		return rc;
	m->claimed = 0;
	if (strcmp(m->pub, m->id) == 0)
		m->pub[0] = '\0';
	else
		dkp_warn("%s: in/new/%s was queued again meanwhile: put back as in/new/%s",
			 m->id, m->id, m->pub);
	return 0;
}

/* The end of one batch: inputs closed, failures to failed/, deferrals
 * back to in/new (unless moves is 0: after a flush that failed, they
 * stay claimed for recovery at the next start), the batch's bytes given
 * back to the budget. */
static int finish(struct dkp_tbatch *b, int moves)
{
	struct dkp_qdir *q = b->w->q;
	uint64_t give = 0;
	size_t i;
	int rc = 0, r;

	for (i = 0; i < b->n; i++) {
		struct dkp_tmsg *m = &b->m[i];

		give += m->held;
		m->held = 0;
		if (m->fd >= 0) {
			close(m->fd);
			m->fd = -1;
		}
		if (!m->claimed || !moves)
			continue;
		if (m->outcome == DKP_OUT_FAILED && (r = fail_one(q, m)) < 0) {
			dkp_error("%s: cannot move to %s (%s); leaving it queued: %s",
				  m->id, q->failed_path, strerror(-r), m->err.msg);
			dkp_err_sys(&m->err, DKP_E_IO, 1, "fail", -r, "cannot move to failed/");
			m->outcome = DKP_OUT_DEFERRED;
		}
		if (m->outcome == DKP_OUT_DEFERRED && (r = defer(q, m)) < 0) {
			dkp_error("%s: cannot put back into %s (%s); recovery does it at the next start",
				  m->id, q->new_path, strerror(-r));
			if (rc == 0)
				rc = r;
		}
	}
	if (b->w->budget && give)
		dkp_budget_give(b->w->budget, give);
	return rc;
}

/* Step 5 for the fresh batches, and the flush that makes the last
 * round's retires (and drops, and publishes) durable: one syncfs when
 * there are copies to flush (flush = filesystem), else one fsync of each
 * directory that changed. A copy whose flush failed is deferred (its
 * batch drops it in the next round); returns -errno when what the done
 * batches need (retires, drops) or the publishes may not be durable. */
static int flush_round(struct dkp_qdir *q, struct dkp_tbatch *fresh, size_t nf,
		       struct dkp_tbatch *done, size_t nd, int touched, int *unsynced)
{
	size_t k, j, i;
	int data = 0, e, rc = 0;

	for (k = 0; k < nf; k++)
		data |= live_copies(&fresh[k]);
	if (data && !q->flush_files) {
		if (syncfs(q->claim) == 0) {	/* reports write-back errors too */
			*unsynced = 0;
			return 0;
		}
		e = -errno;
		for (k = 0; k < nf; k++)
			for (i = 0; i < fresh[k].n; i++)
				if (fresh[k].m[i].copy && dkp_qdir_publishable(&fresh[k].m[i]))
					dkp_qdir_defer_sys(&fresh[k].m[i], "flush", -e,
							   "cannot flush the signed copy");
		return touched ? e : 0;
	} else {
		/* flush = files: the stage fsync'ed each copy; its name */
		for (k = 0; k < nf; k++) {
			if (!live_copies(&fresh[k]))
				continue;
			/* a worker's directory once, however many of its
			 * batches wait (the first with copies flushes it) */
			for (j = 0; j < k && (fresh[j].w->tmpdir != fresh[k].w->tmpdir ||
					      !live_copies(&fresh[j])); j++)
				;
			if (j == k)
				fresh[k].w->flush_err = dkp_qdir_sync_dir(fresh[k].w->tmpdir);
			if (fresh[k].w->flush_err < 0)
				for (i = 0; i < fresh[k].n; i++)
					if (fresh[k].m[i].copy && dkp_qdir_publishable(&fresh[k].m[i]))
						dkp_qdir_defer_sys(&fresh[k].m[i], "flush",
								   -fresh[k].w->flush_err,
								   "cannot flush the signed copy");
		}
		if ((touched & 1) && (e = dkp_qdir_sync_dir(q->claim)) < 0)
			rc = e;
		if (touched & 2)
			for (k = 0; k < nd; k++)	/* dropped copies' areas */
				if (dkp_qdir_sync_dir(done[k].w->tmpdir) < 0 && rc == 0)
					rc = -errno;
		if (*unsynced && rc == 0) {
			if ((rc = dkp_qdir_sync_dir(q->out_new)) == 0)
				*unsynced = 0;
		}
		return rc;
	}
}

/* One round of the pipelined commit (docs/queue.md, "Group commit"):
 * the done batches (flushed in the last round) are checked and retired,
 * one flush makes their retires and the fresh batches' copies durable
 * together, then the done batches are published and ended. The fresh
 * batches come back as done in the next round. A round with no fresh
 * batch also flushes out/new, so nothing published waits for a round
 * that may not come. */
int dkp_qdir_commit_round(struct dkp_tbatch *fresh, size_t nf, struct dkp_tbatch *done,
			  size_t nd, int *unsynced)
{
	struct dkp_qdir *q = nf ? fresh[0].w->q : nd ? done[0].w->q : NULL;
	size_t k, pub = 0;
	int touched = 0, rc, r;

	if (q == NULL)
		return 0;
	for (k = 0; k < nd; k++) {
		check_inputs(done[k].m, done[k].n);
		touched |= retire(&done[k]);
	}
	rc = flush_round(q, fresh, nf, done, nd, touched, unsynced);
	if (rc < 0) {
		/* not known retired: neither publishing nor requeuing is
		 * safe; the copies stay for recovery at the next start */
		for (k = 0; k < nd; k++) {
			size_t i;

			for (i = 0; i < done[k].n; i++)
				if (dkp_qdir_publishable(&done[k].m[i])) {
					dkp_err_sys(&done[k].m[i].err, DKP_E_IO, 1, "retire", -rc,
						    "cannot flush the queue; recovery publishes it at the next start");
					done[k].m[i].outcome = DKP_OUT_DEFERRED;
				}
			finish(&done[k], 0);
		}
		return rc;
	}
	for (k = 0; k < nd; k++)
		pub += publish(&done[k]);
	if (pub)
		*unsynced = 1;
	for (k = 0; k < nd; k++)
		if ((r = finish(&done[k], 1)) < 0 && rc == 0)
			rc = r;
	if (nf == 0 && *unsynced) {
		if ((r = dkp_qdir_sync_dir(q->out_new)) < 0)
			return r;
		*unsynced = 0;
	}
	return rc;
}

/* One batch, start to end, on the worker (no commit thread): the stage,
 * a round that flushes its copies, a round that retires and publishes
 * it. Three flushes: the copies, in/cur/E, out/new. */
int dkp_qdir_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	struct dkp_tbatch b = { w, m, n };
	int unsynced = 0, rc;

	dkp_qdir_stage(w, m, n);
	if ((rc = dkp_qdir_commit_round(&b, 1, NULL, 0, &unsynced)) < 0)
		return rc;
	return dkp_qdir_commit_round(NULL, 0, &b, 1, &unsynced);
}
