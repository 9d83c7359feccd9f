/*
 * qdir_commit.c — the commit half of the queue-directory transport
 * (docs/queue.md, steps 4 to 8, fail and defer), as group commit:
 *
 *   stage        (the worker)         step 4, write: each signed copy
 *                                     created and written whole, closed
 *   commit_many  (the commit thread)  for every staged batch waiting:
 *                                     step 5, one flush of all copies;
 *                                     6, check the inputs; 7, retire all
 *                                     inputs, one flush of in/cur/E;
 *                                     8, publish all, one flush of
 *                                     out/new; then fail and defer
 *
 * The order of the steps for each message is the one of docs/queue.md; a
 * group only shares the flushes between batches, so the crash table holds
 * as it is (a staged batch waiting for its commit is in state W).
 * Namespace operations and flushes are plain syscalls; the stage's
 * creates and writes go through the worker's ring. commit_many touches
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

/* Step 5, flush the copies of every batch: one syncfs for all of them,
 * or (flush = files, the files fsync'ed by the stage) one fsync of each
 * worker directory that holds any. */
static void flush_copies(struct dkp_tbatch *b, size_t nb)
{
	size_t k, j, i;
	int e = 0, any = 0;

	for (k = 0; k < nb; k++)
		any |= live_copies(&b[k]);
	if (any && !b[0].w->q->flush_files && syncfs(b[0].w->tmpdir) < 0)
		e = errno;	/* reports write-back errors too */
	for (k = 0; k < nb; k++) {
		int ek = e;

		if (!live_copies(&b[k]))
			continue;
		if (b[0].w->q->flush_files) {
			/* a worker's directory once, however many of its
			 * batches wait */
			for (j = 0; j < k && b[j].w->tmpdir != b[k].w->tmpdir; j++)
				;
			if (j == k)
				b[k].w->flush_err = dkp_qdir_sync_dir(b[k].w->tmpdir) < 0 ? errno : 0;
			ek = b[k].w->flush_err;
		}
		if (ek == 0)
			continue;
		for (i = 0; i < b[k].n; i++)
			if (b[k].m[i].copy && dkp_qdir_publishable(&b[k].m[i]))
				dkp_qdir_defer_sys(&b[k].m[i], "flush", ek,
						   "cannot flush the signed copy");
	}
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

/* Remove the copies of messages that will not be published, durably, so
 * no copy can outlive a requeue (that would publish it twice). */
static void drop_copies(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	size_t i;
	int any = 0;

	for (i = 0; i < n; i++)
		if (m[i].copy && !dkp_qdir_publishable(&m[i])) {
			if (unlinkat(w->tmpdir, m[i].id, 0) == 0 || errno == ENOENT)
				m[i].copy = 0;
			any = 1;
		}
	if (any)
		dkp_qdir_sync_dir(w->tmpdir);
}

/* Step 7, retire: unlink the inputs of every batch, then one flush of
 * in/cur/E. From here the flushed copies are the messages. */
static int retire(struct dkp_tbatch *b, size_t nb)
{
	struct dkp_qdir *q = b[0].w->q;
	size_t i, k;
	int any = 0, rc;

	for (k = 0; k < nb; k++) {
		struct dkp_tmsg *m = b[k].m;

		for (i = 0; i < b[k].n; i++) {
			if (!dkp_qdir_publishable(&m[i]))
				continue;
			if (unlinkat(q->claim, m[i].id, 0) < 0 && errno != ENOENT) {
				dkp_qdir_defer_sys(&m[i], "retire", errno, "cannot retire the input");
				continue;
			}
			m[i].claimed = 0;
			any = 1;
		}
		drop_copies(b[k].w, m, b[k].n);	/* those whose retire failed */
	}
	if (!any || (rc = dkp_qdir_sync_dir(q->claim)) == 0)
		return 0;
	/* not known retired: neither publishing nor requeuing is safe; the
	 * copies stay for recovery at the next start */
	for (k = 0; k < nb; k++)
		for (i = 0; i < b[k].n; i++)
			if (dkp_qdir_publishable(&b[k].m[i])) {
				dkp_err_sys(&b[k].m[i].err, DKP_E_IO, 1, "retire", -rc,
					    "cannot flush %s/cur/%s; recovery publishes it at the next start",
					    q->in_path, q->engine);
				b[k].m[i].outcome = DKP_OUT_DEFERRED;
			}
	return rc;
}

/* Step 8, publish: out/tmp/E/wN/ID → out/new/ID (or ID.dupN) for every
 * batch, then one flush of out/new. */
static int publish(struct dkp_tbatch *b, size_t nb)
{
	struct dkp_qdir *q = b[0].w->q;
	size_t i, k;
	int any = 0, rc, bad = 0;

	for (k = 0; k < nb; k++)
		for (i = 0; i < b[k].n; i++) {
			struct dkp_tmsg *m = &b[k].m[i];

			if (!dkp_qdir_publishable(m))
				continue;
			rc = dkp_qdir_move_unique(b[k].w->tmpdir, m->id, q->out_new, m->id, m->pub);
			if (rc < 0) {
				dkp_err_sys(&m->err, DKP_E_IO, 1, "publish", -rc,
					    "cannot publish; recovery publishes it at the next start");
				m->outcome = DKP_OUT_DEFERRED;
				bad = rc;
				continue;
			}
			m->copy = 0;
			if (strcmp(m->pub, m->id) == 0)
				m->pub[0] = '\0';
			else
				dkp_warn("%s: out/new/%s exists already (a reused queue ID?): published as out/new/%s",
					 m->id, m->id, m->pub);
			any = 1;
		}
	if (any && (rc = dkp_qdir_sync_dir(q->out_new)) < 0)
		return rc;
	return bad;
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
 * already (drop_copies). */
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
 * back to in/new, the batch's bytes given back to the budget. */
static int finish(struct dkp_tbatch *b)
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
		if (!m->claimed)
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

/* Steps 5 to 8 and the ends of nb staged batches, their flushes shared. */
int dkp_qdir_commit_many(struct dkp_tbatch *b, size_t nb)
{
	size_t k;
	int rc = 0, r;

	if (nb == 0)
		return 0;
	flush_copies(b, nb);
	for (k = 0; k < nb; k++) {
		check_inputs(b[k].m, b[k].n);
		drop_copies(b[k].w, b[k].m, b[k].n);
	}
	if ((r = retire(b, nb)) < 0)
		rc = r;
	else if ((r = publish(b, nb)) < 0)
		rc = r;
	for (k = 0; k < nb; k++)
		if ((r = finish(&b[k])) < 0 && rc == 0)
			rc = r;
	return rc;
}

/* One batch, start to end, on the worker (no commit thread). */
int dkp_qdir_commit(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	struct dkp_tbatch b = { w, m, n };

	dkp_qdir_stage(w, m, n);
	return dkp_qdir_commit_many(&b, 1);
}
