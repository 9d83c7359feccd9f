/*
 * uring.h — batched file operations for one worker: one io_uring per
 * worker (never shared), or plain syscalls when io_uring is unavailable
 * (EPERM/ENOSYS under seccomp, old kernels) or not wanted.
 *
 * A caller fills an array of struct dkp_rop and runs it; every op's res is
 * set to its result (>= 0) or -errno, as the kernel reports it. Ops in one
 * run are independent and may complete in any order, except that an op
 * with DKP_ROP_LINK runs only after the op before it, and gets -ECANCELED
 * if that op was a READ or WRITEV that failed or came back short (io_uring's
 * IOSQE_IO_LINK: writev then fsync). Only link after READ/WRITEV: the
 * kernel does not cancel a chain after a failed rename or unlink. This
 * layer knows nothing about DKIM or the queue protocol.
 */
#ifndef DKP_URING_H
#define DKP_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum dkp_rop_kind {
	DKP_ROP_OPEN_RD,	/* dirfd/name → res = fd (O_NOFOLLOW, and
				 * O_NONBLOCK: a FIFO never blocks the open) */
	DKP_ROP_OPEN_EXCL,	/* dirfd/name, O_CREAT|O_EXCL|O_WRONLY, mode */
	DKP_ROP_SIZE,		/* dirfd/name → size (statx) */
	DKP_ROP_READ,		/* fd, buf, len at offset 0 → bytes */
	DKP_ROP_WRITEV,		/* fd, iov[niov] at offset 0 → bytes */
	DKP_ROP_FSYNC,		/* fd */
	DKP_ROP_CLOSE,		/* fd */
	DKP_ROP_RENAME,		/* dirfd/name → dirfd2/name2 */
	DKP_ROP_RENAME_NOREPLACE,
	DKP_ROP_UNLINK,		/* dirfd/name */
};

#define DKP_ROP_LINK 0x1

struct dkp_rop {
	enum dkp_rop_kind kind;
	unsigned flags;
	unsigned mode;		/* DKP_ROP_OPEN_EXCL; 0: 0600 */
	int dirfd, dirfd2, fd;
	const char *name, *name2;
	void *buf;
	size_t len;
	struct iovec iov[3];
	int niov;
	int64_t res;		/* out: result or -errno */
	uint64_t size;		/* out: DKP_ROP_SIZE */
};

struct dkp_ring;

/*
 * want_uring: 1 = try io_uring; 0 = syscalls. Returns 0 with *out set, or
 * -errno when io_uring was wanted but cannot be set up (the caller decides
 * whether to fall back by calling again with 0).
 */
int dkp_ring_new(struct dkp_ring **out, unsigned depth, int want_uring);
void dkp_ring_free(struct dkp_ring *r);
int dkp_ring_is_uring(const struct dkp_ring *r);
/* Run n ops; returns 0, or -errno if the ring itself failed (the ops'
 * results are then undefined). */
int dkp_ring_run(struct dkp_ring *r, struct dkp_rop *ops, size_t n);

#endif
