/*
 * dedup.c — the queue directory's de-duplication window; see dedup.h and
 * docs/queue.md ("The de-duplication window").
 *
 * Why the pieces are what they are:
 *
 * - One decision per key at a time: a byte-range OFD lock on in/dedup/lock
 *   (65536 stripes by the key's first 16 bits). It belongs to the open
 *   file, so it dies with the process, whatever kills it; a process that
 *   gets it knows that no one else is half-way through that key.
 * - "Published?" is read off the file system, never written after the
 *   fact: the message waits as in/tmp/dd.KEY (flushed, name flushed)
 *   before KEY is marked, and leaves that name only by the rename into
 *   in/new. So a mark without a pending file is a published message, and
 *   a mark with one is a hand-over that died before publishing (nobody
 *   else can hold the lock): it is forgotten, its mark first.
 * - Expiry without a scan of every key: marks go into time buckets, each a
 *   directory that lives for its width plus the window; the keys of a
 *   dead bucket are ignored at once and removed a few at a time.
 * - The bound without a scan: every mark is a hard link of its bucket's
 *   count file (.n0, then .n1 when a file system's link limit is reached),
 *   so the link counts give the number of keys in a handful of stat calls,
 *   and a mark costs a directory entry, no inode.
 */
#include "transport/dedup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "base/mem.h"
#include "transport/qdir.h"

#define NAME_MAX_ 64
#define COUNT_FILES 64	/* .n0 .. .n63: 64 x 65000 marks per bucket on ext4 */

struct dkp_dedup {
	int dirfd;		/* in/dedup */
	int tmpfd;		/* in/tmp, the caller's */
	int lockfd;		/* in/dedup/lock */
	long locked;		/* the stripe held, -1: none */
	int64_t window, width;
	uint64_t max;
	const char *why;
	char whybuf[256];
};

struct bucket {
	char name[NAME_MAX_];
	int64_t start, width;
	int evicted;		/* an x bucket */
};

int dkp_dedup_id_ok(const char *id, const char **why)
{
	size_t n;

	for (n = 0; id[n]; n++) {
		unsigned char c = (unsigned char)id[n];

		if (c < 32 || c == 127) {
			*why = "contains a control character";
			return 0;
		}
		if (c == ' ') {
			*why = "contains a space";
			return 0;
		}
		if (n >= DKP_DEDUP_ID_MAX) {
			*why = "longer than 512 bytes";
			return 0;
		}
	}
	if (n == 0) {
		*why = "is empty";
		return 0;
	}
	return 1;
}

void dkp_dedup_key(const char *id, char *key)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (EVP_Digest(id, strlen(id), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < DKP_DEDUP_KEY_LEN / 2)
		dkp_fatal("SHA-256 is not available");
	for (i = 0; i < DKP_DEDUP_KEY_LEN / 2; i++) {
		key[2 * i] = hex[md[i] >> 4];
		key[2 * i + 1] = hex[md[i] & 15];
	}
	key[DKP_DEDUP_KEY_LEN] = '\0';
}

void dkp_dedup_safe_id(const char *id, char *out, size_t outsz)
{
	char key[DKP_DEDUP_KEY_LEN + 1];

	if (strlen(id) < outsz && dkp_qdir_id_ok(id)) {
		snprintf(out, outsz, "%s", id);
		return;
	}
	dkp_dedup_key(id, key);
	snprintf(out, outsz, "id-%s", key);
}

const char *dkp_dedup_pending(const char *key, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "dd.%s", key);
	return buf;
}

static int fail(struct dkp_dedup *d, int err, const char *what)
{
	snprintf(d->whybuf, sizeof(d->whybuf), "%s: %s", what, strerror(err));
	d->why = d->whybuf;
	return -err;
}

const char *dkp_dedup_why(const struct dkp_dedup *d)
{
	return d->why ? d->why : "no error";
}

int dkp_dedup_open(struct dkp_dedup **out, const char *in_dir, int tmpfd,
		   int64_t window, uint64_t max, char *why, size_t whylen)
{
	struct dkp_dedup *d;
	char path[4096];
	int err;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/dedup", in_dir);
	if (mkdir(path, 0700) == 0) {
		/* its name on disk before any mark in it counts */
		int fd = open(in_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		err = fd < 0 || fsync(fd) < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
		if (err) {
			snprintf(why, whylen, "cannot flush %s: %s", in_dir, strerror(err));
			return -err;
		}
	} else if (errno != EEXIST) {
		err = errno;
		snprintf(why, whylen, "cannot make %s: %s", path, strerror(err));
		return -err;
	}
	d = dkp_calloc(1, sizeof(*d));
	d->tmpfd = tmpfd;
	d->locked = -1;
	d->window = window > 0 ? window : 1;
	d->width = d->window >= 8 ? d->window / 8 : 1;
	d->max = max;
	d->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d->lockfd = d->dirfd < 0 ? -1
				  : openat(d->dirfd, "lock",
					   O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (d->lockfd < 0) {
		err = errno;
		snprintf(why, whylen, "cannot open %s%s: %s", path,
			 d->dirfd < 0 ? "" : "/lock", strerror(err));
		dkp_dedup_close(d);
		return -err;
	}
	*out = d;
	return 0;
}

void dkp_dedup_close(struct dkp_dedup *d)
{
	if (d == NULL)
		return;
	if (d->lockfd >= 0)
		close(d->lockfd);	/* releases every lock it holds */
	if (d->dirfd >= 0)
		close(d->dirfd);
	dkp_free(d);
}

/* ---- the lock ------------------------------------------------------- */

static long stripe(const char *key)
{
	char h[5];

	memcpy(h, key, 4);
	h[4] = '\0';
	return strtol(h, NULL, 16);
}

/* Take (type F_WRLCK) or drop (F_UNLCK) stripe s without waiting: 0,
 * -EAGAIN when another process holds it, -errno. */
static int set_lock(int fd, long s, short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = s;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EACCES ? -EAGAIN : -errno;
}

int dkp_dedup_lock(struct dkp_dedup *d, const char *key, int wait_ms)
{
	long s = stripe(key), slept = 0, step = 1;
	int rc;

	while ((rc = set_lock(d->lockfd, s, F_WRLCK)) == -EAGAIN) {
		struct timespec ts;

		if (slept >= wait_ms)
			return fail(d, ETIMEDOUT, "the ID is being handed over by another process");
		ts.tv_sec = 0;
		ts.tv_nsec = step * 1000000L;
		nanosleep(&ts, NULL);
		slept += step;
		step = step < 16 ? step * 2 : 16;
	}
	if (rc < 0)
		return fail(d, -rc, "lock in/dedup/lock");
	d->locked = s;
	return 0;
}

void dkp_dedup_unlock(struct dkp_dedup *d)
{
	if (d->locked >= 0)
		set_lock(d->lockfd, d->locked, F_UNLCK);
	d->locked = -1;
}

/* ---- buckets -------------------------------------------------------- */

/* "bSTART.WIDTH" or "xSTART.WIDTH" into b; 0 when name is neither. */
static int parse_bucket(const char *name, struct bucket *b)
{
	char *end;
	long long s, w;

	if ((name[0] != 'b' && name[0] != 'x') || strlen(name) >= NAME_MAX_ ||
	    name[1] < '0' || name[1] > '9')
		return 0;
	s = strtoll(name + 1, &end, 10);
	if (*end != '.' || end[1] < '0' || end[1] > '9')
		return 0;
	w = strtoll(end + 1, &end, 10);
	if (*end != '\0' || w <= 0)
		return 0;
	if (strlen(name) >= sizeof(b->name))
		return 0;
	memcpy(b->name, name, strlen(name) + 1);
	b->start = s;
	b->width = w;
	b->evicted = name[0] == 'x';
	return 1;
}

/* Can a bucket hold a mark younger than the window at time now? */
static int bucket_live(const struct dkp_dedup *d, const struct bucket *b,
		       int64_t now)
{
	return !b->evicted && b->start + b->width + d->window > now;
}

static int by_start(const void *a, const void *b)
{
	const struct bucket *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* The buckets of in/dedup, oldest first, into *out (caller frees). live:
 * only those that can hold a live mark; else only the others. */
static int list_buckets(struct dkp_dedup *d, int64_t now, int live,
			struct bucket **out, size_t *n)
{
	struct dirent *de;
	struct bucket b;
	size_t cap = 0;
	DIR *dp;
	int fd = openat(d->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*out = NULL;
	*n = 0;
	if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		return fail(d, err, "list in/dedup");
	}
	errno = 0;
	while ((de = readdir(dp)) != NULL) {
		if (!parse_bucket(de->d_name, &b) || bucket_live(d, &b, now) != live)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = dkp_realloc(*out, cap * sizeof(**out));
		}
		(*out)[(*n)++] = b;
		errno = 0;
	}
	if (errno != 0) {
		int err = errno;

		closedir(dp);
		dkp_free(*out);
		*out = NULL;
		*n = 0;
		return fail(d, err, "list in/dedup");
	}
	closedir(dp);
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), by_start);
	return 0;
}

/* "BUCKET/NAME" into path. */
static const char *in_bucket(char *path, size_t n, const struct bucket *b,
			     const char *name)
{
	snprintf(path, n, "%s/%s", b->name, name);
	return path;
}

/* Is key marked in a live bucket? 1, 0 or -errno. */
static int marked(struct dkp_dedup *d, const char *key, int64_t now)
{
	struct bucket *bs;
	struct stat st;
	char path[NAME_MAX_ * 2];
	size_t n, i;
	int rc, found = 0;

	if ((rc = list_buckets(d, now, 1, &bs, &n)) < 0)
		return rc;
	for (i = 0; i < n && !found && rc == 0; i++) {
		if (fstatat(d->dirfd, in_bucket(path, sizeof(path), &bs[i], key),
			    &st, AT_SYMLINK_NOFOLLOW) == 0)
			found = 1;
		else if (errno != ENOENT)
			rc = fail(d, errno, "look up a mark");
	}
	dkp_free(bs);
	return rc < 0 ? rc : found;
}

/* Remove key's marks from the live buckets, each removal flushed. */
static int unmark(struct dkp_dedup *d, const char *key, int64_t now)
{
	struct bucket *bs;
	size_t n, i;
	int rc, bfd;

	if ((rc = list_buckets(d, now, 1, &bs, &n)) < 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		bfd = openat(d->dirfd, bs[i].name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (bfd < 0) {
			if (errno != ENOENT)	/* swept or evicted meanwhile */
				rc = fail(d, errno, "open a bucket");
			continue;
		}
		if (unlinkat(bfd, key, 0) == 0) {
			if (fsync(bfd) < 0)
				rc = fail(d, errno, "flush a bucket");
		} else if (errno != ENOENT) {
			rc = fail(d, errno, "remove a mark");
		}
		close(bfd);
	}
	dkp_free(bs);
	return rc;
}

static int pending_exists(struct dkp_dedup *d, const char *key)
{
	char p[DKP_DEDUP_PENDING_MAX];
	struct stat st;

	if (fstatat(d->tmpfd, dkp_dedup_pending(key, p, sizeof(p)), &st,
		    AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT ? 0 : fail(d, errno, "look up in/tmp");
}

static int drop_pending(struct dkp_dedup *d, const char *key)
{
	char p[DKP_DEDUP_PENDING_MAX];

	if (unlinkat(d->tmpfd, dkp_dedup_pending(key, p, sizeof(p)), 0) < 0 &&
	    errno != ENOENT)
		return fail(d, errno, "remove a pending file");
	return 0;
}

int dkp_dedup_check(struct dkp_dedup *d, const char *key, int64_t now)
{
	int m = marked(d, key, now), p, rc;

	if (m < 0)
		return m;
	if ((p = pending_exists(d, key)) < 0)
		return p;
	if (m && !p)
		return DKP_DEDUP_SEEN;
	/* a hand-over that died before its rename into in/new (we hold the
	 * lock, so it is not running): forget it, the mark first, so that
	 * no crash in between leaves a mark without its pending file */
	if (m && (rc = unmark(d, key, now)) < 0)
		return rc;
	if (p && (rc = drop_pending(d, key)) < 0)
		return rc;
	return DKP_DEDUP_NEW;
}

int dkp_dedup_stage(struct dkp_dedup *d, const char *key, const char *tmpname)
{
	char p[DKP_DEDUP_PENDING_MAX];

	if (renameat(d->tmpfd, tmpname, d->tmpfd,
		     dkp_dedup_pending(key, p, sizeof(p))) < 0)
		return fail(d, errno, "rename into the pending name");
	/* the pending name must be on disk before the mark can be */
	if (fsync(d->tmpfd) < 0) {
		int err = errno;

		unlinkat(d->tmpfd, p, 0);	/* not marked: nothing else to undo */
		return fail(d, err, "flush in/tmp");
	}
	return 0;
}

/* Open the bucket for time now, making it (flushed) when missing. */
static int open_bucket(struct dkp_dedup *d, int64_t now, struct bucket *b)
{
	int fd;

	b->width = d->width;
	b->start = now - now % d->width;
	b->evicted = 0;
	snprintf(b->name, sizeof(b->name), "b%lld.%lld", (long long)b->start,
		 (long long)b->width);
	fd = openat(d->dirfd, b->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : fail(d, errno, "open a bucket");
	if (mkdirat(d->dirfd, b->name, 0700) < 0 && errno != EEXIST)
		return fail(d, errno, "make a bucket");
	if (fsync(d->dirfd) < 0)
		return fail(d, errno, "flush in/dedup");
	fd = openat(d->dirfd, b->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd >= 0 ? fd : fail(d, errno, "open a bucket");
}

/* Link key to the first count file with room. */
static int link_mark(struct dkp_dedup *d, int bfd, const char *key)
{
	char cnt[16];
	int k, fd;

	for (k = 0; k < COUNT_FILES; k++) {
		snprintf(cnt, sizeof(cnt), ".n%d", k);
		if (linkat(bfd, cnt, bfd, key, 0) == 0 || errno == EEXIST)
			return 0;
		if (errno == EMLINK)
			continue;
		if (errno != ENOENT)
			return fail(d, errno, "link a mark");
		fd = openat(bfd, cnt, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return fail(d, errno, "make a count file");
		close(fd);
		k--;	/* again, with the file there */
	}
	return fail(d, EMLINK, "link a mark");
}

/* Over max: evict the oldest live bucket but keep. */
static void bound(struct dkp_dedup *d, int64_t now, const char *keep)
{
	struct bucket *bs;
	char x[NAME_MAX_];
	size_t n, i;
	int64_t count;

	if (d->max == 0 || (count = dkp_dedup_count(d, now)) < 0 ||
	    (uint64_t)count <= d->max)
		return;
	if (list_buckets(d, now, 1, &bs, &n) < 0)
		return;
	for (i = 0; i < n; i++) {
		if (strcmp(bs[i].name, keep) == 0)
			continue;
		snprintf(x, sizeof(x), "x%s", bs[i].name + 1);
		if (renameat(d->dirfd, bs[i].name, d->dirfd, x) == 0)
			dkp_warn("dedup: %lld IDs remembered, more than dedup_max (%llu): the IDs handed over in [%lld, %lld) are forgotten %lld s early",
				 (long long)count, (unsigned long long)d->max,
				 (long long)bs[i].start,
				 (long long)(bs[i].start + bs[i].width),
				 (long long)(bs[i].start + bs[i].width + d->window - now));
		break;
	}
	dkp_free(bs);
}

int dkp_dedup_mark(struct dkp_dedup *d, const char *key, int64_t now)
{
	struct bucket b;
	int bfd = open_bucket(d, now, &b), rc;

	if (bfd < 0)
		return bfd;
	rc = link_mark(d, bfd, key);
	if (rc == 0 && fsync(bfd) < 0)
		rc = fail(d, errno, "flush a bucket");
	close(bfd);
	if (rc == 0)
		bound(d, now, b.name);
	return rc;
}

int dkp_dedup_forget(struct dkp_dedup *d, const char *key, int64_t now)
{
	int rc = unmark(d, key, now);

	return rc < 0 ? rc : drop_pending(d, key);
}

int64_t dkp_dedup_count(struct dkp_dedup *d, int64_t now)
{
	struct bucket *bs;
	struct stat st;
	char path[NAME_MAX_ * 2], cnt[16];
	int64_t count = 0;
	size_t n, i;
	int k;

	if (list_buckets(d, now, 1, &bs, &n) < 0)
		return -1;
	for (i = 0; i < n; i++)
		for (k = 0; k < COUNT_FILES; k++) {
			snprintf(cnt, sizeof(cnt), ".n%d", k);
			if (fstatat(d->dirfd, in_bucket(path, sizeof(path), &bs[i], cnt),
				    &st, AT_SYMLINK_NOFOLLOW) < 0)
				break;
			count += (int64_t)st.st_nlink - 1;
		}
	dkp_free(bs);
	return count;
}

/* ---- sweeping ------------------------------------------------------- */

static int is_key(const char *s)
{
	size_t i;

	for (i = 0; i < DKP_DEDUP_KEY_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == '\0';
}

/* A dead mark of key goes: first the pending file of a hand-over that
 * died with nothing live left to decide about it (under its lock, taken
 * without waiting: a busy key keeps its file for now). */
static void sweep_pending(struct dkp_dedup *d, const char *key, int64_t now)
{
	long s = stripe(key);

	if (pending_exists(d, key) != 1 || set_lock(d->lockfd, s, F_WRLCK) < 0)
		return;
	if (marked(d, key, now) == 0)
		drop_pending(d, key);
	set_lock(d->lockfd, s, F_UNLCK);
}

/* Remove up to *work keys of bucket b; 1 when it is empty now. */
static int sweep_bucket(struct dkp_dedup *d, const struct bucket *b, int64_t now,
			unsigned *work)
{
	struct dirent *de;
	DIR *dp;
	int fd = openat(d->dirfd, b->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int left = 0, k;
	char cnt[16];

	if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*work == 0) {
			left = 1;
			break;
		}
		if (is_key(de->d_name))
			sweep_pending(d, de->d_name, now);
		if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
			left = 1;
		else
			(*work)--;
	}
	if (!left) {
		for (k = 0; k < COUNT_FILES; k++) {
			snprintf(cnt, sizeof(cnt), ".n%d", k);
			if (unlinkat(fd, cnt, 0) < 0 && errno == ENOENT)
				break;
		}
	}
	closedir(dp);
	return !left && unlinkat(d->dirfd, b->name, AT_REMOVEDIR) == 0;
}

int dkp_dedup_sweep(struct dkp_dedup *d, int64_t now, unsigned max_work)
{
	struct bucket *bs;
	unsigned work = max_work;
	size_t n, i;
	int rc;

	if ((rc = list_buckets(d, now, 0, &bs, &n)) < 0)
		return rc;
	for (i = 0; i < n && work > 0; i++)
		sweep_bucket(d, &bs[i], now, &work);
	dkp_free(bs);
	return (int)(max_work - work);
}
