/*
 * tests/fault/inject.c — an LD_PRELOAD fault injector for the queue
 * protocol's I/O (tests/fault/run.sh). It wraps the libc entry points the
 * engine calls and fails the Nth call of one kind of operation.
 *
 *   FAULT_OP=KIND     open read write fsync dirsync syncfs rename unlink
 *                     link mkdir close (see kind_of below for what each
 *                     covers); unset: never fail
 *   FAULT_N=N         fail the Nth call of that kind (1-based, counted over
 *                     the whole process, all threads)
 *   FAULT_ERRNO=E     EIO, ENOSPC, EINTR (or any name in the table below,
 *                     or a number); default EIO
 *   FAULT_COUNT=FILE  at exit, append "KIND COUNT" lines (every kind) to
 *                     FILE; with FAULT_OP unset this only counts
 *   FAULT_LOG=FILE    append one line describing the injected call (kind,
 *                     function, the path or the fd's target, errno, thread,
 *                     backtrace offsets for addr2line)
 *   FAULT_TRACE=FILE  append one line per counted call (slow; to map N to
 *                     an operation)
 *   FAULT_PATH=S      count only calls whose path (or the fd's target)
 *                     contains S (tests/crash: a kill at one protocol step)
 *   FAULT_SLOW=MS     sleep MS milliseconds before each counted call of
 *                     the FAULT_OP kind before the Nth (so that, say, a
 *                     commit round's flush lasts long enough for other
 *                     batches to be staged behind it: tests/crash)
 *   FAULT_KILL=1      at the Nth call, SIGKILL the process instead of
 *                     failing the call (the call is not made)
 *
 * What a failure does: the call is not made (rename, unlink, link, mkdir,
 * open, read, fsync, syncfs: nothing happens, as when the kernel refuses
 * it), except that a failing write with EIO or ENOSPC first writes half of
 * its bytes for real (a torn write: the file on disk is partial), and a
 * failing close closes the descriptor for real (Linux always frees it,
 * even with EINTR). Otherwise EINTR never has a side effect.
 *
 * Kinds: open = open, openat (and their 64/fortify variants); read =
 * read, pread; write = write, writev, pwrite, pwritev; fsync = fsync or
 * fdatasync of a non-directory; dirsync = fsync of a directory; syncfs;
 * rename = rename, renameat, renameat2; unlink = unlink, unlinkat (also
 * with AT_REMOVEDIR), rmdir; link = link, linkat; mkdir = mkdir, mkdirat;
 * close = close. io_uring operations are not libc calls and are not seen
 * here: src/transport/uring.c has its own hook (DKP_FAULT_URING).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum kind { K_OPEN, K_READ, K_WRITE, K_FSYNC, K_DIRSYNC, K_SYNCFS, K_RENAME,
	    K_UNLINK, K_LINK, K_MKDIR, K_CLOSE, K_N };

static const char *const kind_name[K_N] = {
	"open", "read", "write", "fsync", "dirsync", "syncfs", "rename",
	"unlink", "link", "mkdir", "close"
};

static const struct { const char *name; int e; } errnos[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EINTR", EINTR },
	{ "EDQUOT", EDQUOT }, { "EACCES", EACCES }, { "EPERM", EPERM },
	{ "EROFS", EROFS }, { "ENOMEM", ENOMEM }, { "EMFILE", EMFILE },
	{ "EAGAIN", EAGAIN }, { "ENOENT", ENOENT }, { "EEXIST", EEXIST },
	{ "EBUSY", EBUSY }, { "ENOTDIR", ENOTDIR },
};

static atomic_long counts[K_N];
static int target = -1;		/* kind to fail, -1 none */
static long target_n;
static int target_errno = EIO;
static const char *count_file, *log_file, *trace_file, *path_filter;
static int kill_instead;
static int slow_ms;		/* FAULT_SLOW */
static atomic_int ready;
static __thread int inside;	/* no counting inside the shim itself */

static void report_counts(void)
{
	FILE *f;
	int k;

	if (count_file == NULL || (f = fopen(count_file, "ae")) == NULL)
		return;
	for (k = 0; k < K_N; k++)
		fprintf(f, "%s %ld\n", kind_name[k], atomic_load(&counts[k]));
	fclose(f);
}

__attribute__((constructor)) static void fault_init(void)
{
	const char *op = getenv("FAULT_OP"), *n = getenv("FAULT_N"),
		   *e = getenv("FAULT_ERRNO");
	size_t i;
	int k;

	count_file = getenv("FAULT_COUNT");
	log_file = getenv("FAULT_LOG");
	trace_file = getenv("FAULT_TRACE");
	path_filter = getenv("FAULT_PATH");
	if (path_filter && !*path_filter)
		path_filter = NULL;
	kill_instead = getenv("FAULT_KILL") && atoi(getenv("FAULT_KILL")) == 1;
	slow_ms = getenv("FAULT_SLOW") ? atoi(getenv("FAULT_SLOW")) : 0;
	if (op && *op) {
		for (k = 0; k < K_N; k++)
			if (strcmp(op, kind_name[k]) == 0)
				target = k;
		if (target < 0) {
			fprintf(stderr, "inject.so: unknown FAULT_OP=%s\n", op);
			_exit(2);
		}
		target_n = n ? strtol(n, NULL, 10) : 1;
	}
	if (e && *e) {
		target_errno = 0;
		for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
			if (strcmp(e, errnos[i].name) == 0)
				target_errno = errnos[i].e;
		if (target_errno == 0)
			target_errno = atoi(e);
		if (target_errno <= 0) {
			fprintf(stderr, "inject.so: unknown FAULT_ERRNO=%s\n", e);
			_exit(2);
		}
	}
	if (count_file)
		atexit(report_counts);
	atomic_store(&ready, 1);
}

static void *real(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL) {
		static const char msg[] = "inject.so: a libc symbol is missing\n";

		(void)!syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		abort();
	}
	return p;
}

#define REAL(ret, name, ...) \
	static ret (*real_##name)(__VA_ARGS__); \
	if (real_##name == NULL) \
		real_##name = (ret (*)(__VA_ARGS__))real(#name)

static void describe(char *out, size_t len, int dirfd, const char *path, int fd)
{
	char lnk[64], tgt[512];
	ssize_t n;

	tgt[0] = '\0';
	if (fd >= 0) {
		snprintf(lnk, sizeof(lnk), "/proc/self/fd/%d", fd);
		n = readlink(lnk, tgt, sizeof(tgt) - 1);
		tgt[n > 0 ? n : 0] = '\0';
		snprintf(out, len, "fd %d -> %s", fd, tgt);
		return;
	}
	if (dirfd >= 0 && path && path[0] != '/') {
		snprintf(lnk, sizeof(lnk), "/proc/self/fd/%d", dirfd);
		n = readlink(lnk, tgt, sizeof(tgt) - 1);
		tgt[n > 0 ? n : 0] = '\0';
	}
	snprintf(out, len, "%s%s%s", tgt, tgt[0] ? "/" : "", path ? path : "?");
}

/* Count one call of kind k; returns the errno to fail it with, or 0. The
 * what/dirfd/path/fd arguments only feed the log and the trace. */
static int hit(int k, const char *fn, int dirfd, const char *path, int fd,
	       const char *path2)
{
	long n;
	int fail;

	if (!atomic_load(&ready) || inside)
		return 0;
	if (path_filter) {
		char d[1200];

		inside = 1;
		describe(d, sizeof(d), dirfd, path, fd);
		inside = 0;
		if (strstr(d, path_filter) == NULL &&
		    (path2 == NULL || strstr(path2, path_filter) == NULL))
			return 0;
	}
	n = atomic_fetch_add(&counts[k], 1) + 1;
	fail = k == target && n == target_n;
	if (k == target && n < target_n && slow_ms > 0) {
		struct timespec ts = { slow_ms / 1000, (slow_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	if (fail && kill_instead)
		(void)!syscall(SYS_kill, (long)getpid(), 9L);	/* SIGKILL, at once */
	if (trace_file || (fail && log_file)) {
		char d[1200], d2[600] = "";
		FILE *f;

		inside = 1;
		describe(d, sizeof(d), dirfd, path, fd);
		if (path2)
			snprintf(d2, sizeof(d2), " -> %s", path2);
		if (trace_file && (f = fopen(trace_file, "ae")) != NULL) {
			fprintf(f, "%s %ld %s(%s%s) tid %ld\n", kind_name[k], n, fn, d, d2,
				(long)syscall(SYS_gettid));
			fclose(f);
		}
		if (fail && log_file && (f = fopen(log_file, "ae")) != NULL) {
			void *bt[24];
			int nb = backtrace(bt, 24), i;
			char **sym = backtrace_symbols(bt, nb);

			fprintf(f, "injected %s #%ld: %s(%s%s) = -1 %s (tid %ld)\n", kind_name[k],
				n, fn, d, d2, strerror(target_errno), (long)syscall(SYS_gettid));
			for (i = 1; sym && i < nb; i++)
				fprintf(f, "  bt %s\n", sym[i]);
			free(sym);
			fclose(f);
		}
		inside = 0;
	}
	return fail ? target_errno : 0;
}

/* ---- open ---------------------------------------------------------- */

static int open_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	int e;
	REAL(int, openat, int, const char *, int, ...);

	if (open_mode(flags)) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if ((e = hit(K_OPEN, "openat", dirfd, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
	__attribute__((alias("openat")));

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int e;
	REAL(int, open, const char *, int, ...);

	if (open_mode(flags)) {
		va_list ap;

		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if ((e = hit(K_OPEN, "open", AT_FDCWD, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int __open_2(const char *path, int flags)
{
	return open(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

/* ---- read ---------------------------------------------------------- */

ssize_t read(int fd, void *buf, size_t len)
{
	int e;
	REAL(ssize_t, read, int, void *, size_t);

	if ((e = hit(K_READ, "read", -1, NULL, fd, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_read(fd, buf, len);
}

ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	(void)buflen;
	return read(fd, buf, len);
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	int e;
	REAL(ssize_t, pread, int, void *, size_t, off_t);

	if ((e = hit(K_READ, "pread", -1, NULL, fd, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_pread(fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off) __attribute__((alias("pread")));

/* ---- write: EIO/ENOSPC tear the write (half of it reaches the file) -- */

static int torn(int e)
{
	return e != EINTR;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	int e;
	REAL(ssize_t, write, int, const void *, size_t);

	if ((e = hit(K_WRITE, "write", -1, NULL, fd, NULL)) != 0) {
		if (torn(e) && len > 1)
			(void)real_write(fd, buf, len / 2);
		errno = e;
		return -1;
	}
	return real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	int e;
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);

	if ((e = hit(K_WRITE, "pwrite", -1, NULL, fd, NULL)) != 0) {
		if (torn(e) && len > 1)
			(void)real_pwrite(fd, buf, len / 2, off);
		errno = e;
		return -1;
	}
	return real_pwrite(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));

/* the first half of an iovec array's bytes, for a torn writev */
static int half_iov(const struct iovec *iov, int n, struct iovec *out)
{
	size_t total = 0, want, k = 0;
	int i;

	for (i = 0; i < n; i++)
		total += iov[i].iov_len;
	want = total / 2;
	for (i = 0; i < n && want > 0 && k < 16; i++) {
		out[k] = iov[i];
		if (out[k].iov_len > want)
			out[k].iov_len = want;
		want -= out[k].iov_len;
		k++;
	}
	return (int)k;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	struct iovec h[16];
	int e, k;
	REAL(ssize_t, writev, int, const struct iovec *, int);

	if ((e = hit(K_WRITE, "writev", -1, NULL, fd, NULL)) != 0) {
		if (torn(e) && (k = half_iov(iov, n, h)) > 0)
			(void)real_writev(fd, h, k);
		errno = e;
		return -1;
	}
	return real_writev(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	struct iovec h[16];
	int e, k;
	REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);

	if ((e = hit(K_WRITE, "pwritev", -1, NULL, fd, NULL)) != 0) {
		if (torn(e) && (k = half_iov(iov, n, h)) > 0)
			(void)real_pwritev(fd, h, k, off);
		errno = e;
		return -1;
	}
	return real_pwritev(fd, iov, n, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
	__attribute__((alias("pwritev")));

/* ---- flushes ------------------------------------------------------- */

static int is_dir(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

int fsync(int fd)
{
	int e;
	REAL(int, fsync, int);

	if ((e = hit(is_dir(fd) ? K_DIRSYNC : K_FSYNC, "fsync", -1, NULL, fd, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	int e;
	REAL(int, fdatasync, int);

	if ((e = hit(is_dir(fd) ? K_DIRSYNC : K_FSYNC, "fdatasync", -1, NULL, fd, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_fdatasync(fd);
}

int syncfs(int fd)
{
	int e;
	REAL(int, syncfs, int);

	if ((e = hit(K_SYNCFS, "syncfs", -1, NULL, fd, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_syncfs(fd);
}

/* ---- namespace ----------------------------------------------------- */

static char *at(char *buf, size_t len, int dirfd, const char *path)
{
	describe(buf, len, dirfd, path, -1);
	return buf;
}

int renameat2(int od, const char *op, int nd, const char *np, unsigned flags)
{
	char b[600];
	int e;
	REAL(int, renameat2, int, const char *, int, const char *, unsigned);

	if (atomic_load(&ready) && !inside && (target == K_RENAME || trace_file)) {
		inside = 1;
		at(b, sizeof(b), nd, np);
		inside = 0;
	} else {
		b[0] = '\0';
	}
	if ((e = hit(K_RENAME, "renameat2", od, op, -1, b)) != 0) {
		errno = e;
		return -1;
	}
	return real_renameat2(od, op, nd, np, flags);
}

int renameat(int od, const char *op, int nd, const char *np)
{
	char b[600];
	int e;
	REAL(int, renameat, int, const char *, int, const char *);

	if (atomic_load(&ready) && !inside && (target == K_RENAME || trace_file)) {
		inside = 1;
		at(b, sizeof(b), nd, np);
		inside = 0;
	} else {
		b[0] = '\0';
	}
	if ((e = hit(K_RENAME, "renameat", od, op, -1, b)) != 0) {
		errno = e;
		return -1;
	}
	return real_renameat(od, op, nd, np);
}

int rename(const char *op, const char *np)
{
	int e;
	REAL(int, rename, const char *, const char *);

	if ((e = hit(K_RENAME, "rename", AT_FDCWD, op, -1, np)) != 0) {
		errno = e;
		return -1;
	}
	return real_rename(op, np);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	int e;
	REAL(int, unlinkat, int, const char *, int);

	if ((e = hit(K_UNLINK, flags & AT_REMOVEDIR ? "unlinkat(AT_REMOVEDIR)" : "unlinkat",
		     dirfd, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_unlinkat(dirfd, path, flags);
}

int unlink(const char *path)
{
	int e;
	REAL(int, unlink, const char *);

	if ((e = hit(K_UNLINK, "unlink", AT_FDCWD, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_unlink(path);
}

int rmdir(const char *path)
{
	int e;
	REAL(int, rmdir, const char *);

	if ((e = hit(K_UNLINK, "rmdir", AT_FDCWD, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_rmdir(path);
}

int linkat(int od, const char *op, int nd, const char *np, int flags)
{
	char b[600];
	int e;
	REAL(int, linkat, int, const char *, int, const char *, int);

	if (atomic_load(&ready) && !inside && (target == K_LINK || trace_file)) {
		inside = 1;
		at(b, sizeof(b), nd, np);
		inside = 0;
	} else {
		b[0] = '\0';
	}
	if ((e = hit(K_LINK, "linkat", od, op, -1, b)) != 0) {
		errno = e;
		return -1;
	}
	return real_linkat(od, op, nd, np, flags);
}

int link(const char *op, const char *np)
{
	int e;
	REAL(int, link, const char *, const char *);

	if ((e = hit(K_LINK, "link", AT_FDCWD, op, -1, np)) != 0) {
		errno = e;
		return -1;
	}
	return real_link(op, np);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	int e;
	REAL(int, mkdirat, int, const char *, mode_t);

	if ((e = hit(K_MKDIR, "mkdirat", dirfd, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_mkdirat(dirfd, path, mode);
}

int mkdir(const char *path, mode_t mode)
{
	int e;
	REAL(int, mkdir, const char *, mode_t);

	if ((e = hit(K_MKDIR, "mkdir", AT_FDCWD, path, -1, NULL)) != 0) {
		errno = e;
		return -1;
	}
	return real_mkdir(path, mode);
}

/* ---- close: the descriptor is always freed, as on Linux ------------- */

int close(int fd)
{
	int e;
	REAL(int, close, int);

	if ((e = hit(K_CLOSE, "close", -1, NULL, fd, NULL)) != 0) {
		real_close(fd);
		errno = e;
		return -1;
	}
	return real_close(fd);
}
