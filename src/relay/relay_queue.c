/* relay_queue.c — the relay's directories; see relay_queue.h. */
#include "relay/relay_queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "base/log.h"
#include "base/mem.h"
#include "transport/qdir.h"

#define DUP_TRIES 1000

int dkp_rq_name_parse(const char *name, char *id, struct dkp_rq_state *st)
{
	const char *t = strchr(name, '~');
	size_t idlen = t ? (size_t)(t - name) : strlen(name);
	unsigned long long a, nx, f;
	int used = 0;

	memset(st, 0, sizeof(*st));
	if (idlen == 0 || idlen >= DKP_RQ_NAME_MAX)
		return -1;
	memcpy(id, name, idlen);
	id[idlen] = '\0';
	if (!dkp_qdir_id_ok(id))
		return -1;
	if (t == NULL)
		return 0;
	if (sscanf(t, "~%llu~%llu~%llu%n", &a, &nx, &f, &used) != 3 || t[used] != '\0' ||
	    a > 1000000)
		return -1;
	st->attempts = (unsigned)a;
	st->next = (int64_t)nx;
	st->first = (int64_t)f;
	return 0;
}

void dkp_rq_name_make(char *out, const char *id, const struct dkp_rq_state *st)
{
	/* id is at most DKP_QID_MAX: no cut */
	if (snprintf(out, DKP_RQ_NAME_MAX, "%s~%u~%" PRId64 "~%" PRId64, id, st->attempts,
		     st->next, st->first) >= DKP_RQ_NAME_MAX)
		out[DKP_RQ_NAME_MAX - 1] = '\0';
}

int dkp_rq_each(int fd, int (*fn)(void *ctx, const char *name), void *ctx)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	DIR *d;
	struct dirent *e;

	if (dfd < 0)
		return -errno;
	if ((d = fdopendir(dfd)) == NULL) {
		close(dfd);
		return -errno;
	}
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if ((rc = fn(ctx, e->d_name)) != 0)
			break;
		errno = 0;
	}
	if (e == NULL && errno)
		rc = -errno;
	closedir(d);
	return rc < 0 ? rc : 0;
}

/* Open (mkdir when missing) base/sub as a directory fd. */
static int open_dir(const char *base, const char *sub, int *fd, char *why,
		    size_t whylen)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s%s%s", base, sub ? "/" : "", sub ? sub : "");
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(why, whylen, "%s", path);
		return -errno;
	}
	*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0) {
		snprintf(why, whylen, "%s", path);
		return -errno;
	}
	return 0;
}

/* Make OUT/relay/R, locked: created hidden, locked, then renamed, so no
 * other relay ever sees it unlocked. */
static int make_area(struct dkp_rq *q)
{
	char hidden[80];
	unsigned char rnd[4] = { 0 };
	int tries, fd, rc;

	for (tries = 0; tries < 10; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			rnd[0] = (unsigned char)tries;
		snprintf(q->name, sizeof(q->name), "r%ld-%02x%02x%02x%02x", (long)getpid(),
			 rnd[0], rnd[1], rnd[2], rnd[3]);
		snprintf(hidden, sizeof(hidden), ".%s", q->name);
		if (mkdirat(q->relay, hidden, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		fd = openat(q->relay, hidden, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 ||
		    renameat2(q->relay, hidden, q->relay, q->name, RENAME_NOREPLACE) < 0) {
			rc = -errno;
			close(fd);
			unlinkat(q->relay, hidden, AT_REMOVEDIR);
			if (rc == -EEXIST || rc == -EWOULDBLOCK)
				continue;
			return rc;
		}
		q->area = fd;
		return fsync(q->relay) < 0 ? -errno : 0;
	}
	return -EEXIST;
}

struct move_ctx {
	struct dkp_rq *q;
	int from;
	int rc;
};

/* Move one file of a released area to OUT/defer (its state kept). */
static int move_to_defer(void *ctx, const char *name)
{
	struct move_ctx *m = ctx;
	char id[DKP_RQ_NAME_MAX], out[DKP_RQ_NAME_MAX];
	struct dkp_rq_state st;
	unsigned k;

	if (dkp_rq_name_parse(name, id, &st) < 0) {
		dkp_warn("relay: %s: not a queue file name; left where it is", name);
		return 0;
	}
	for (k = 0; k < DUP_TRIES; k++, st.next++) {
		dkp_rq_name_make(out, id, &st);
		if (renameat2(m->from, name, m->q->defer, out, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST) {
			m->rc = -errno;
			return 0;
		}
	}
	m->rc = -EEXIST;
	return 0;
}

/* Remove the temporaries ('.' names) of an area. */
static void drop_temps(int fd)
{
	DIR *d;
	struct dirent *e;
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0 || (d = fdopendir(dfd)) == NULL) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(fd, e->d_name, 0);
	closedir(d);
}

/* A dead relay's area (its lock free): its files to OUT/defer, then it
 * goes. A hidden ".R" is a relay that died while making its area. */
static int recover_one(void *ctx, const char *name)
{
	struct dkp_rq *q = ctx;
	struct move_ctx m = { q, -1, 0 };

	if (!strcmp(name, q->name))
		return 0;
	m.from = openat(q->relay, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (m.from < 0)
		return 0;
	if (flock(m.from, LOCK_EX | LOCK_NB) == 0) {
		drop_temps(m.from);
		dkp_rq_each(m.from, move_to_defer, &m);
		fsync(q->defer);
		if (m.rc == 0 && unlinkat(q->relay, name, AT_REMOVEDIR) == 0)
			dkp_info("relay: took back the messages of the stopped relay %s", name);
		else
			dkp_warn("relay: cannot empty the area %s of a stopped relay: %s", name,
				 strerror(m.rc ? -m.rc : errno));
	}
	close(m.from);
	return 0;
}

int dkp_rq_open(struct dkp_rq *q, const char *out_dir, const char *failed_dir,
		char *why, size_t whylen)
{
	int rc;

	memset(q, 0, sizeof(*q));
	q->out_new = q->defer = q->relay = q->area = q->failed = -1;
	if ((rc = open_dir(out_dir, NULL, &q->relay, why, whylen)) < 0)
		return rc;
	close(q->relay);
	if ((rc = open_dir(out_dir, "new", &q->out_new, why, whylen)) < 0 ||
	    (rc = open_dir(out_dir, "defer", &q->defer, why, whylen)) < 0 ||
	    (rc = open_dir(out_dir, "relay", &q->relay, why, whylen)) < 0 ||
	    (rc = open_dir(failed_dir, NULL, &q->failed, why, whylen)) < 0)
		return rc;
	q->out_path = dkp_strdup(out_dir);
	q->failed_path = dkp_strdup(failed_dir);
	if ((rc = make_area(q)) < 0) {
		snprintf(why, whylen, "%s/relay", out_dir);
		return rc;
	}
	dkp_rq_each(q->relay, recover_one, q);
	return 0;
}

void dkp_rq_close(struct dkp_rq *q, int clean)
{
	if (q->area >= 0 && clean) {
		drop_temps(q->area);
		if (unlinkat(q->relay, q->name, AT_REMOVEDIR) < 0)
			dkp_warn("relay: %s/relay/%s not removed: %s", q->out_path, q->name,
				 strerror(errno));
		else
			fsync(q->relay);
	}
	if (q->area >= 0) close(q->area);
	if (q->out_new >= 0) close(q->out_new);
	if (q->defer >= 0) close(q->defer);
	if (q->relay >= 0) close(q->relay);
	if (q->failed >= 0) close(q->failed);
	dkp_free(q->out_path);
	dkp_free(q->failed_path);
	q->out_path = q->failed_path = NULL;
	q->area = q->out_new = q->defer = q->relay = q->failed = -1;
}

int dkp_rq_release(struct dkp_rq *q)
{
	struct move_ctx m = { q, q->area, 0 };
	int rc = dkp_rq_each(q->area, move_to_defer, &m);

	fsync(q->defer);
	return rc < 0 ? rc : m.rc;
}

int dkp_rq_claim(struct dkp_rq *q, int from_defer, const char *name)
{
	if (renameat2(from_defer ? q->defer : q->out_new, name, q->area, name,
		      RENAME_NOREPLACE) < 0)
		return -errno;
	return 0;
}

int dkp_rq_read(struct dkp_rq *q, const char *name, struct dkp_buf *b)
{
	int fd = openat(q->area, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = S_ISREG(st.st_mode) ? -errno : -EINVAL;
		close(fd);
		return rc;
	}
	dkp_buf_reserve(b, (size_t)st.st_size + 1);
	for (;;) {
		ssize_t n;

		dkp_buf_reserve(b, 65536);
		n = read(fd, b->p + b->len, b->cap - b->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
	close(fd);
	return rc;
}

int dkp_rq_done(struct dkp_rq *q, const char *name)
{
	return unlinkat(q->area, name, 0) < 0 ? -errno : 0;
}

/* Write p[0..n) to dir/tmp (created, mode 0600), flushed. */
static int write_file(int dir, const char *tmp, const void *p, size_t n)
{
	int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	const char *s = p;
	int rc = 0;

	if (fd < 0)
		return -errno;
	while (n > 0) {
		ssize_t w = write(fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		s += w;
		n -= (size_t)w;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(dir, tmp, 0);
	return rc;
}

int dkp_rq_rewrite(struct dkp_rq *q, const char *name, const void *p, size_t n)
{
	char tmp[DKP_RQ_NAME_MAX + 8];
	int rc;

	snprintf(tmp, sizeof(tmp), ".w.%s", name);
	if ((rc = write_file(q->area, tmp, p, n)) < 0)
		return rc;
	if (renameat(q->area, tmp, q->area, name) < 0) {
		rc = -errno;
		unlinkat(q->area, tmp, 0);
	}
	return rc;
}

int dkp_rq_defer(struct dkp_rq *q, const char *name, const char *id,
		 const struct dkp_rq_state *st)
{
	char out[DKP_RQ_NAME_MAX];
	struct dkp_rq_state s = *st;
	unsigned k;

	for (k = 0; k < DUP_TRIES; k++, s.next++) {
		dkp_rq_name_make(out, id, &s);
		if (renameat2(q->area, name, q->defer, out, RENAME_NOREPLACE) == 0)
			return fsync(q->defer) < 0 ? -errno : 0;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* failed/ID (ID.dupN) for the message src (in the area), reason beside it
 * first, as the engine does (qdir_commit.c): never over anything. */
static int fail_move(struct dkp_rq *q, const char *src, const char *id,
		     const char *rtmp)
{
	char name[DKP_RQ_NAME_MAX], rname[DKP_RQ_NAME_MAX + 8];
	unsigned k;

	for (k = 0; k < DUP_TRIES; k++) {
		if (k == 0)
			snprintf(name, sizeof(name), "%s", id);
		else
			snprintf(name, sizeof(name), "%s.dup%u", id, k);
		snprintf(rname, sizeof(rname), "%s.reason", name);
		if (linkat(q->area, rtmp, q->failed, rname, 0) < 0) {
			if (errno != EEXIST)
				return -errno;
			continue;
		}
		if (renameat2(q->area, src, q->failed, name, RENAME_NOREPLACE) == 0)
			return fsync(q->failed) < 0 ? -errno : 0;
		unlinkat(q->failed, rname, 0);
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int dkp_rq_fail(struct dkp_rq *q, const char *name, const char *id,
		const void *p, size_t n, const char *reason)
{
	char rtmp[DKP_RQ_NAME_MAX + 8], mtmp[DKP_RQ_NAME_MAX + 8];
	struct dkp_buf r;
	int rc;

	snprintf(rtmp, sizeof(rtmp), ".r.%s", name);
	snprintf(mtmp, sizeof(mtmp), ".f.%s", name);
	dkp_buf_init(&r);
	dkp_buf_adds(&r, reason);
	dkp_buf_addc(&r, '\n');
	rc = write_file(q->area, rtmp, r.p, r.len);
	dkp_buf_free(&r);
	if (rc == 0 && p != NULL && (rc = write_file(q->area, mtmp, p, n)) == 0) {
		rc = fail_move(q, mtmp, id, rtmp);
		unlinkat(q->area, mtmp, 0);
	} else if (rc == 0) {
		rc = fail_move(q, name, id, rtmp);
	}
	unlinkat(q->area, rtmp, 0);
	return rc;
}
