/*
 * uring.c — batched file operations through io_uring (liburing), with a
 * plain-syscall implementation of the same contract; see uring.h.
 *
 * A batch is submitted in chunks of at most the ring's depth; links never
 * cross a chunk boundary (a chunk ends early rather than split a chain).
 *
 * What goes through the ring: opens for reading, reads, writes, fsyncs and
 * closes, which io_uring completes inline when the data is cached and runs
 * concurrently when it must wait. Namespace operations (rename, unlink,
 * create, statx) are made as plain syscalls even on a ring: io_uring can
 * only hand them to its worker threads, and on the reference machine that
 * hand-off (a wake-up and a context switch per file) cost more CPU than
 * the operation itself — measured in docs/performance.md.
 * Regular-file reads and writes are not expected to come back short; if
 * one does, the rest is finished synchronously, so callers always see the
 * whole length or an error.
 */
#include "transport/uring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "base/mem.h"

struct dkp_ring {
	int uring;
	struct io_uring ring;
	unsigned depth;
	struct statx *stx;	/* one per slot, for DKP_ROP_SIZE */
};

/* Test hook (tests/fault/run.sh), in test builds only (-DDKP_TEST_HOOKS,
 * build/dkimpress-test): DKP_FAULT_URING="N:E" makes the Nth io_uring
 * completion of the process (1-based, all rings) report -E, as if the
 * kernel had failed that operation. Read once, when the first ring is
 * made (before the workers start); unset, it costs one branch per CQE.
 * Without DKP_TEST_HOOKS fault_at stays 0: never. */
#ifdef DKP_TEST_HOOKS
static long fault_at = -1;
static int fault_errno;
static atomic_long fault_seen;

static int fault_cqe(const struct dkp_rop *op, int res)
{
	if (fault_at <= 0 || atomic_fetch_add(&fault_seen, 1) + 1 != fault_at)
		return res;
	fprintf(stderr, "dkimpress: DKP_FAULT_URING: completion %ld (op %d, res %d) fails with %d\n",
		fault_at, (int)op->kind, res, -fault_errno);
	if (op->kind == DKP_ROP_OPEN_RD && res >= 0)
		close(res);	/* as if the open had not been made */
	return -fault_errno;
}
#else
static inline int fault_cqe(const struct dkp_rop *op, int res)
{
	(void)op;
	return res;
}
#endif

int dkp_ring_new(struct dkp_ring **out, unsigned depth, int want_uring)
{
	struct dkp_ring *r = dkp_calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	r->depth = depth;
	if (want_uring) {
#ifdef DKP_TEST_HOOKS
		if (fault_at < 0) {
			const char *f = getenv("DKP_FAULT_URING");

			if (f == NULL || sscanf(f, "%ld:%d", &fault_at, &fault_errno) != 2)
				fault_at = 0;
		}
#endif
		rc = io_uring_queue_init(depth, &r->ring, 0);
		if (rc < 0) {
			dkp_free(r);
			return rc;
		}
		r->uring = 1;
		r->stx = dkp_calloc(depth, sizeof(*r->stx));
	}
	*out = r;
	return 0;
}

void dkp_ring_free(struct dkp_ring *r)
{
	if (r == NULL)
		return;
	if (r->uring)
		io_uring_queue_exit(&r->ring);
	dkp_free(r->stx);
	dkp_free(r);
}

int dkp_ring_is_uring(const struct dkp_ring *r)
{
	return r->uring;
}

/* Finish a short read or write synchronously; returns total or -errno. */
static int64_t finish_rw(struct dkp_rop *op, int64_t done)
{
	size_t total = op->kind == DKP_ROP_READ ? op->len : 0;
	int i;

	if (op->kind == DKP_ROP_READ) {
		while ((size_t)done < total) {
			ssize_t n = pread(op->fd, (char *)op->buf + done,
					  total - (size_t)done, done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n == 0)
				break;	/* file shorter than expected */
			done += n;
		}
		return done;
	}
	for (i = 0; i < op->niov; i++)
		total += op->iov[i].iov_len;
	while ((size_t)done < total) {
		/* locate the iovec position of `done` */
		size_t off = (size_t)done;
		ssize_t n;

		for (i = 0; i < op->niov && off >= op->iov[i].iov_len; i++)
			off -= op->iov[i].iov_len;
		n = pwrite(op->fd, (char *)op->iov[i].iov_base + off,
			   op->iov[i].iov_len - off, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += n;
	}
	return done;
}

static int64_t sys_one(struct dkp_rop *op)
{
	struct stat st;
	ssize_t n;

	switch (op->kind) {
	case DKP_ROP_OPEN_RD:
		n = openat(op->dirfd, op->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		return n < 0 ? -errno : n;
	case DKP_ROP_OPEN_EXCL:
		n = openat(op->dirfd, op->name,
			   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			   op->mode ? op->mode : 0600);
		return n < 0 ? -errno : n;
	case DKP_ROP_SIZE:
		if (fstatat(op->dirfd, op->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (!S_ISREG(st.st_mode))
			return -EINVAL;
		op->size = (uint64_t)st.st_size;
		return 0;
	case DKP_ROP_READ:
	case DKP_ROP_WRITEV:
		return finish_rw(op, 0);
	case DKP_ROP_FSYNC:
		return fsync(op->fd) < 0 ? -errno : 0;
	case DKP_ROP_CLOSE:
		return close(op->fd) < 0 ? -errno : 0;
	case DKP_ROP_RENAME:
		return renameat(op->dirfd, op->name, op->dirfd2, op->name2) < 0
			       ? -errno : 0;
	case DKP_ROP_RENAME_NOREPLACE:
		return renameat2(op->dirfd, op->name, op->dirfd2, op->name2,
				 RENAME_NOREPLACE) < 0 ? -errno : 0;
	case DKP_ROP_UNLINK:
		return unlinkat(op->dirfd, op->name, 0) < 0 ? -errno : 0;
	}
	return -EINVAL;
}

/* Ops io_uring would punt to an io-wq thread whatever the cache holds. */
static int always_punted(const struct dkp_rop *op)
{
	switch (op->kind) {
	case DKP_ROP_OPEN_EXCL:
	case DKP_ROP_SIZE:
	case DKP_ROP_RENAME:
	case DKP_ROP_RENAME_NOREPLACE:
	case DKP_ROP_UNLINK:
		return 1;
	default:
		return 0;
	}
}

static void prep(struct dkp_ring *r, struct io_uring_sqe *sqe,
		 struct dkp_rop *op, unsigned slot)
{
	switch (op->kind) {
	case DKP_ROP_OPEN_RD:
		io_uring_prep_openat(sqe, op->dirfd, op->name,
				     O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
		break;
	case DKP_ROP_OPEN_EXCL:
		io_uring_prep_openat(sqe, op->dirfd, op->name,
				     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
				     op->mode ? op->mode : 0600);
		break;
	case DKP_ROP_SIZE:
		io_uring_prep_statx(sqe, op->dirfd, op->name,
				    AT_SYMLINK_NOFOLLOW, STATX_SIZE | STATX_TYPE,
				    &r->stx[slot]);
		break;
	case DKP_ROP_READ:
		io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, 0);
		break;
	case DKP_ROP_WRITEV:
		io_uring_prep_writev(sqe, op->fd, op->iov, (unsigned)op->niov, 0);
		break;
	case DKP_ROP_FSYNC:
		io_uring_prep_fsync(sqe, op->fd, 0);
		break;
	case DKP_ROP_CLOSE:
		io_uring_prep_close(sqe, op->fd);
		break;
	case DKP_ROP_RENAME:
		io_uring_prep_renameat(sqe, op->dirfd, op->name, op->dirfd2,
				       op->name2, 0);
		break;
	case DKP_ROP_RENAME_NOREPLACE:
		io_uring_prep_renameat(sqe, op->dirfd, op->name, op->dirfd2,
				       op->name2, RENAME_NOREPLACE);
		break;
	case DKP_ROP_UNLINK:
		io_uring_prep_unlinkat(sqe, op->dirfd, op->name, 0);
		break;
	}
}

/* Complete op from a CQE result. */
static void complete(struct dkp_ring *r, struct dkp_rop *op, unsigned slot,
		     int res)
{
	op->res = res;
	if (res < 0)
		return;
	if (op->kind == DKP_ROP_SIZE) {
		if (!S_ISREG(r->stx[slot].stx_mode))
			op->res = -EINVAL;
		else
			op->size = r->stx[slot].stx_size;
	} else if (op->kind == DKP_ROP_READ && (size_t)res < op->len) {
		op->res = finish_rw(op, res);
	} else if (op->kind == DKP_ROP_WRITEV) {
		size_t total = 0;
		int i;

		for (i = 0; i < op->niov; i++)
			total += op->iov[i].iov_len;
		if ((size_t)res < total)
			op->res = finish_rw(op, res);
	}
}

int dkp_ring_run(struct dkp_ring *r, struct dkp_rop *ops, size_t n)
{
	size_t i = 0;

	if (!r->uring) {
		for (i = 0; i < n; i++) {
			if ((ops[i].flags & DKP_ROP_LINK) && i > 0 && ops[i - 1].res < 0 &&
			    (ops[i - 1].kind == DKP_ROP_READ ||
			     ops[i - 1].kind == DKP_ROP_WRITEV))
				ops[i].res = -ECANCELED;
			else
				ops[i].res = sys_one(&ops[i]);
		}
		return 0;
	}
	while (i < n) {
		size_t start = i, end = i, k;
		unsigned inflight = 0;

		/* a chunk of at most depth ops that does not split a chain */
		while (end < n && end - start < r->depth) {
			size_t chain = end + 1;

			while (chain < n && (ops[chain].flags & DKP_ROP_LINK))
				chain++;
			if (chain - start > r->depth && end > start)
				break;
			end = chain;
		}
		for (k = start; k < end; k++) {
			struct io_uring_sqe *sqe;

			if (always_punted(&ops[k]) && !(ops[k].flags & DKP_ROP_LINK) &&
			    !(k + 1 < end && (ops[k + 1].flags & DKP_ROP_LINK))) {
				ops[k].res = sys_one(&ops[k]);
				continue;
			}
			sqe = io_uring_get_sqe(&r->ring);
			if (sqe == NULL)
				return -EBUSY;	/* cannot happen: depth bound */
			prep(r, sqe, &ops[k], (unsigned)(k - start));
			if (k + 1 < end && (ops[k + 1].flags & DKP_ROP_LINK))
				sqe->flags |= IOSQE_IO_LINK;
			io_uring_sqe_set_data64(sqe, k);
			inflight++;
		}
		while (inflight > 0) {
			struct io_uring_cqe *cqe;
			int rc = io_uring_submit_and_wait(&r->ring, 1);

			if (rc < 0 && rc != -EINTR)
				return rc;
			while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
				size_t idx = (size_t)io_uring_cqe_get_data64(cqe);

				complete(r, &ops[idx], (unsigned)(idx - start),
					 fault_cqe(&ops[idx], cqe->res));
				io_uring_cqe_seen(&r->ring, cqe);
				inflight--;
			}
		}
		i = end;
	}
	return 0;
}
