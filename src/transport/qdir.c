/*
 * qdir.c — the queue-directory transport; see qdir.h and docs/queue.md.
 *
 * The protocol's steps are the named functions below, in the order a
 * batch meets them: claim, read_inputs (fetch, here); write_copies
 * (stage), check_inputs, retire, flush_round, publish, fail_one, defer
 * (commit_round) in qdir_commit.c; recover in qdir_recover.c. Namespace
 * operations (rename, unlink, link) are plain syscalls; opens, reads, writes and fsyncs of files go through the
 * worker's ring (uring.h).
 */
#include "transport/qdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "base/budget.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"
#include "transport/qdir_int.h"
#include "transport/uring.h"

void dkp_tmsg_reject(struct dkp_tmsg *m, const struct dkp_err *err)
{
	if (err != &m->err)
		m->err = *err;
	m->outcome = err->temp ? DKP_OUT_DEFERRED : DKP_OUT_FAILED;
}

int dkp_qdir_id_ok(const char *s)
{
	size_t n;

	if (s[0] == '\0' || s[0] == '.')
		return 0;
	for (n = 0; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= DKP_QID_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("._-+=,:@", c)))
			return 0;
	}
	/* ".reason" files live beside failed messages: keep IDs distinct */
	return !(n > 7 && strcmp(s + n - 7, ".reason") == 0);
}

/* Is name an engine area ("e<pid>-<8 hex>")? */
int dkp_qdir_engine_name_ok(const char *s)
{
	size_t i = 1, d;

	if (s[0] != 'e')
		return 0;
	while (s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == 1 || s[i] != '-')
		return 0;
	for (d = 0, i++; s[i]; i++, d++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return d == 8;
}

/* The n-th name for id: id itself, then id.dup1, id.dup2, ... (the base
 * shortened so the name stays a valid queue ID). */
void dkp_qdir_dup_name(char *out, const char *id, unsigned n)
{
	char suf[16];
	size_t keep;

	if (n == 0) {
		snprintf(out, DKP_QID_MAX + 1, "%s", id);
		return;
	}
	snprintf(suf, sizeof(suf), ".dup%u", n);
	keep = strlen(id);
	if (keep + strlen(suf) > DKP_QID_MAX)
		keep = DKP_QID_MAX - strlen(suf);
	snprintf(out, DKP_QID_MAX + 1, "%.*s%s", (int)keep, id, suf);
}

/* Rename src into dst under id, or id.dupN when that is taken; never
 * replaces anything. The name used goes to used (DKP_QID_MAX + 1). */
int dkp_qdir_move_unique(int sdir, const char *sname, int ddir, const char *id,
		       char *used)
{
	char name[DKP_QID_MAX + 1];
	unsigned n;

	for (n = 0; n < DUP_MAX; n++) {
		dkp_qdir_dup_name(name, id, n);
		if (renameat2(sdir, sname, ddir, name, RENAME_NOREPLACE) == 0) {
			if (used)
				memcpy(used, name, sizeof(name));
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int dkp_qdir_sync_dir(int fd)
{
	return fsync(fd) < 0 ? -errno : 0;
}

/* ---- open and close ------------------------------------------------- */

static int mkdir_p(const char *path)
{
	char *p = dkp_strdup(path), *s;
	int rc = 0;

	for (s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;

			*s = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	dkp_free(p);
	return rc;
}

static int open_dir(const char *base, const char *sub, int *fd, char *why,
		    size_t whylen)
{
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s%s%s", base, sub ? "/" : "", sub ? sub : "");
	snprintf(why, whylen, "%s", path);
	if ((rc = mkdir_p(path)) < 0)
		return rc;
	*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

/* This engine's areas: in/cur/.E made, locked, then renamed to in/cur/E
 * (so a peer never sees an unlocked E), then out/tmp/E. */
static int make_areas(struct dkp_qdir *q)
{
	char hidden[64];
	unsigned char rnd[4];
	int tries, fd, rc;

	for (tries = 0; tries < 10; tries++) {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			memcpy(rnd, &ts.tv_nsec, sizeof(rnd));
		}
		snprintf(q->engine, sizeof(q->engine), "e%ld-%02x%02x%02x%02x",
			 (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
		snprintf(hidden, sizeof(hidden), ".%s", q->engine);
		if (mkdirat(q->in_cur, hidden, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		fd = openat(q->in_cur, hidden, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 ||
		    renameat2(q->in_cur, hidden, q->in_cur, q->engine, RENAME_NOREPLACE) < 0) {
			rc = -errno;
			close(fd);
			unlinkat(q->in_cur, hidden, AT_REMOVEDIR);
			if (rc == -EEXIST || rc == -ENOENT || rc == -EWOULDBLOCK)
				continue;
			return rc;
		}
		q->claim = fd;
		if (mkdirat(q->out_tmp, q->engine, 0700) < 0 && errno != EEXIST)
			return -errno;
		q->tmp = openat(q->out_tmp, q->engine,
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (q->tmp < 0)
			return -errno;
		if ((rc = dkp_qdir_sync_dir(q->in_cur)) < 0 || (rc = dkp_qdir_sync_dir(q->out_tmp)) < 0)
			return rc;
		return 0;
	}
	return -EEXIST;
}

/* Give fd the group gid and the mode bits add (docs/integration.md:
 * a consumer running as another user). */
static int share_dir(int fd, long gid, mode_t add)
{
	struct stat st;

	if (fchown(fd, (uid_t)-1, (gid_t)gid) < 0 || fstat(fd, &st) < 0)
		return -errno;
	if ((st.st_mode & add) != add && fchmod(fd, (st.st_mode & 07777) | add) < 0)
		return -errno;
	return 0;
}

/* out_group: out (g+x), out/new (g+rwx), out/tmp (setgid, so that
 * every copy made below it is born with the group). */
static int share_out(struct dkp_qdir *q, const struct dkp_qdir_opts *o,
		     char *why, size_t whylen)
{
	int fd, rc;

	snprintf(why, whylen, "%s", o->out);
	if ((fd = open(o->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	rc = share_dir(fd, o->out_gid, S_IXGRP);
	close(fd);
	if (rc == 0) {
		snprintf(why, whylen, "%s/new", o->out);
		rc = share_dir(q->out_new, o->out_gid, S_IRWXG);
	}
	if (rc == 0) {
		snprintf(why, whylen, "%s/tmp", o->out);
		rc = share_dir(q->out_tmp, o->out_gid, S_ISGID);
	}
	return rc;
}

static const struct dkp_transport_ops qdir_ops;

int dkp_qdir_open(struct dkp_qdir **out, const struct dkp_qdir_opts *o,
		  char *why, size_t whylen)
{
	struct dkp_qdir *q = dkp_calloc(1, sizeof(*q));
	char path[4200];
	int rc;

	*out = NULL;
	q->t.ops = &qdir_ops;
	q->in_tmp = q->in_new = q->in_cur = q->out_tmp = q->out_new = q->failed = -1;
	q->claim = q->tmp = -1;
	q->in_path = dkp_strdup(o->in);
	q->out_path = dkp_strdup(o->out);
	q->failed_path = dkp_strdup(o->failed);
	snprintf(path, sizeof(path), "%s/new", o->in);
	q->new_path = dkp_strdup(path);
	q->flush_files = o->flush_files;
	q->out_mode = o->out_mode ? o->out_mode : 0600;
	pthread_mutex_init(&q->mu, NULL);
	q->bad = dkp_htab_new(16);
	if ((rc = open_dir(o->in, "tmp", &q->in_tmp, why, whylen)) < 0 ||
	    (rc = open_dir(o->in, "new", &q->in_new, why, whylen)) < 0 ||
	    (rc = open_dir(o->in, "cur", &q->in_cur, why, whylen)) < 0 ||
	    (rc = open_dir(o->out, "tmp", &q->out_tmp, why, whylen)) < 0 ||
	    (rc = open_dir(o->out, "new", &q->out_new, why, whylen)) < 0 ||
	    (rc = open_dir(o->failed, NULL, &q->failed, why, whylen)) < 0 ||
	    (o->out_gid >= 0 && (rc = share_out(q, o, why, whylen)) < 0))
		goto fail;
	snprintf(why, whylen, "%s/cur", o->in);
	if ((rc = make_areas(q)) < 0)
		goto fail;
	*out = q;
	return 0;
fail:
	dkp_qdir_close(q, 1);
	return rc;
}

/* Remove this engine's areas if they are empty (a clean stop, or a
 * start that failed half-way). */
static void remove_areas(struct dkp_qdir *q)
{
	DIR *d;
	struct dirent *e;
	int fd = q->tmp >= 0 ? dup(q->tmp) : -1, empty = 1;

	if (fd >= 0 && (d = fdopendir(fd)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (unlinkat(q->tmp, e->d_name, AT_REMOVEDIR) < 0)
				empty = 0;	/* a worker area still holds copies */
		}
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	if (!empty || (q->tmp >= 0 && unlinkat(q->out_tmp, q->engine, AT_REMOVEDIR) < 0))
		return;	/* peers recover what is left once the lock is gone */
	if (unlinkat(q->in_cur, q->engine, AT_REMOVEDIR) == 0)
		dkp_qdir_sync_dir(q->in_cur);
}

void dkp_qdir_close(struct dkp_qdir *q, int clean)
{
	int *fds[] = { &q->in_tmp, &q->in_new, &q->out_new, &q->failed,
		       &q->tmp, &q->claim, &q->out_tmp, &q->in_cur };
	size_t i;

	if (q == NULL)
		return;
	if (clean && q->claim >= 0)
		remove_areas(q);
	/* the claim area's fd last but one: its lock is what peers test */
	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	dkp_free(q->in_path);
	dkp_free(q->out_path);
	dkp_free(q->failed_path);
	dkp_free(q->new_path);
	dkp_htab_free(q->bad, NULL);
	pthread_mutex_destroy(&q->mu);
	dkp_free(q);
}

struct dkp_transport *dkp_qdir_transport(struct dkp_qdir *q)
{
	return &q->t;
}

const char *dkp_qdir_engine(const struct dkp_qdir *q)
{
	return q->engine;
}

const char *dkp_qdir_new_path(const struct dkp_qdir *q)
{
	return q->new_path;
}

/* ---- listing -------------------------------------------------------- */

/* Call fn(ctx, name, d_type) for every entry of dirfd but . and ..;
 * stops when fn returns non-zero. */
int dkp_qdir_each_entry(int dirfd, int (*fn)(void *ctx, const char *name, int type),
		      void *ctx)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (fd < 0)
		return -errno;
	if ((d = fdopendir(fd)) == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		int r = fn(ctx, e->d_name, e->d_type);

		if (r != 0) {
			if (r < 0)
				rc = r;	/* fn's own error */
			break;
		}
		errno = 0;
	}
	if (e == NULL && errno)
		rc = -errno;
	closedir(d);
	return rc;
}

/* A file name fit for one log line: bytes outside printable ASCII, and
 * the backslash, as \xHH (a newline in a name must not forge a line). */
void dkp_qdir_escape_name(char *out, size_t outsz, const char *in)
{
	size_t o = 0;

	for (; *in && o + 5 < outsz; in++) {
		unsigned char c = (unsigned char)*in;

		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
	}
	out[o] = '\0';
}

struct scan_ctx {
	struct dkp_qdir *q;
	int (*fn)(void *ctx, const char *id);
	void *ctx;
	long count;
};

static int scan_one(void *ctx, const char *name, int type)
{
	struct scan_ctx *sc = ctx;

	(void)type;
	if (!dkp_qdir_id_ok(name)) {
		size_t len = strlen(name);

		pthread_mutex_lock(&sc->q->mu);
		if (dkp_htab_get(sc->q->bad, name, len) == NULL &&
		    dkp_htab_count(sc->q->bad) < 10000) {
			char shown[4 * 256 + 1];

			dkp_htab_put(sc->q->bad, name, len, (void *)1);
			dkp_qdir_escape_name(shown, sizeof(shown), name);
			dkp_warn("%s/%s: not a valid queue ID; left alone (warned once)",
				 sc->q->new_path, shown);
		}
		pthread_mutex_unlock(&sc->q->mu);
		return 0;
	}
	sc->count++;
	return sc->fn ? sc->fn(sc->ctx, name) : 0;
}

static int qdir_scan(struct dkp_transport *t, int (*fn)(void *ctx, const char *id),
		     void *ctx)
{
	struct scan_ctx sc = { (struct dkp_qdir *)t, fn, ctx, 0 };

	return dkp_qdir_each_entry(sc.q->in_new, scan_one, &sc);
}

long dkp_qdir_count_new(struct dkp_qdir *q)
{
	struct scan_ctx sc = { q, NULL, NULL, 0 };
	int rc = dkp_qdir_each_entry(q->in_new, scan_one, &sc);

	return rc < 0 ? rc : sc.count;
}

/* ---- workers -------------------------------------------------------- */

static int qdir_worker_new(struct dkp_transport *t, unsigned id, int want_uring,
			   unsigned depth, struct dkp_tworker **out)
{
	struct dkp_qdir *q = (struct dkp_qdir *)t;
	struct dkp_tworker *w;
	char name[32];
	int rc;

	*out = NULL;
	snprintf(name, sizeof(name), "w%u", id);
	if (mkdirat(q->tmp, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	w = dkp_calloc(1, sizeof(*w));
	w->q = q;
	w->id = id;
	w->tmpdir = openat(q->tmp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (w->tmpdir < 0) {
		rc = -errno;
		dkp_free(w);
		return rc;
	}
	if ((rc = dkp_ring_new(&w->ring, depth, want_uring)) < 0) {
		close(w->tmpdir);
		dkp_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

static void qdir_worker_free(struct dkp_tworker *w)
{
	if (w == NULL)
		return;
	dkp_ring_free(w->ring);
	if (w->tmpdir >= 0)
		close(w->tmpdir);
	dkp_free(w->ops);
	dkp_free(w->ofd);
	dkp_free(w);
}

static int qdir_worker_uring(const struct dkp_tworker *w)
{
	return dkp_ring_is_uring(w->ring);
}

struct dkp_rop *dkp_qdir_op(struct dkp_tworker *w, size_t k, enum dkp_rop_kind kind)
{
	struct dkp_rop *o;

	if (k >= w->nops) {
		size_t n = w->nops ? w->nops * 2 : 64;

		while (n <= k)
			n *= 2;
		w->ops = dkp_realloc(w->ops, n * sizeof(*w->ops));
		w->nops = n;
	}
	o = &w->ops[k];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	return o;
}

int dkp_qdir_publishable(const struct dkp_tmsg *m)
{
	return m->outcome == DKP_OUT_SIGNED || m->outcome == DKP_OUT_ESP_ONLY;
}

void dkp_qdir_defer_sys(struct dkp_tmsg *m, const char *step, int e, const char *what)
{
	dkp_err_sys(&m->err, DKP_E_IO, 1, step, e, "%s", what);
	m->outcome = DKP_OUT_DEFERRED;
}

/* ---- fetch: claim, read --------------------------------------------- */

/* Step 1, claim: in/new/ID → in/cur/E/ID, never over anything. */
static void claim(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	struct dkp_qdir *q = w->q;
	size_t i;

	for (i = 0; i < n; i++) {
		m[i].outcome = -1;
		m[i].claimed = 0;
		m[i].copy = 0;
		m[i].fd = -1;
		m[i].nout = 0;
		m[i].pub[0] = '\0';
		m[i].len = 0;
		dkp_err_clear(&m[i].err);
		if (renameat2(q->in_new, m[i].id, q->claim, m[i].id, RENAME_NOREPLACE) == 0) {
			m[i].claimed = 1;
			m[i].t_claim = dkp_mono_now();
		} else if (errno == ENOENT) {
			m[i].outcome = DKP_OUT_GONE;	/* another engine was first */
		} else {
			int e = errno;

			dkp_err_sys(&m[i].err, DKP_E_IO, 1, "claim", e,
				    "cannot claim %s/%s", q->new_path, m[i].id);
			m[i].outcome = DKP_OUT_DEFERRED;
		}
	}
}

int64_t dkp_qdir_ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Bytes for the signature fields and the engine's bookkeeping of one
 * message, on top of the message itself. */
#define BUDGET_SLACK 4096

/* A claimed message this batch cannot hold now: back to in/new at once,
 * unread, to be claimed again (by this engine or another); not a
 * deferral, so no delay and no log line. */
static void put_back(struct dkp_qdir *q, struct dkp_tmsg *m)
{
	int rc;

	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if ((rc = dkp_qdir_move_unique(q->claim, m->id, q->in_new, m->id, m->pub)) < 0) {
		dkp_qdir_defer_sys(m, "read", -rc, "cannot put back a message the budget cannot hold now");
		return;
	}
	m->claimed = 0;
	m->pub[0] = '\0';
	m->outcome = DKP_OUT_GONE;
}

/* One opened input (res: the open's result): a whole regular file within
 * max_bytes that nobody is still writing, or its outcome set. */
static void check_opened(struct dkp_tmsg *m, int64_t res, uint64_t max_bytes)
{
	struct stat st;

	if (res == -ELOOP) {
		dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "read", "not a regular file (a symbolic link)");
		m->outcome = DKP_OUT_FAILED;
		return;
	}
	if (res < 0) {
		dkp_qdir_defer_sys(m, "open", (int)-res, "cannot open the claimed message");
		return;
	}
	m->fd = (int)res;
	if (fstat(m->fd, &st) < 0) {
		dkp_qdir_defer_sys(m, "stat", errno, "cannot stat the claimed message");
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "read", "not a regular file");
		m->outcome = DKP_OUT_FAILED;
		return;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		dkp_err_set(&m->err, DKP_E_LIMIT, 0, "read",
			    "message of %llu bytes exceeds max_message_size (%llu)",
			    (unsigned long long)st.st_size, (unsigned long long)max_bytes);
		m->outcome = DKP_OUT_FAILED;
		return;
	}
	/* a read lease cannot be had while anyone has the file open for
	 * writing: a producer writing straight into in/new */
	if (fcntl(m->fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(m->fd, F_SETLEASE, F_UNLCK);
	} else if (errno == EAGAIN) {
		dkp_err_set(&m->err, DKP_E_IO, 1, "read",
			    "still open for writing by another process (producers must write in in/tmp and rename into in/new)");
		m->err.sys_errno = EAGAIN;	/* worth a retry soon */
		m->outcome = DKP_OUT_DEFERRED;
		return;
	}
	m->st_size = st.st_size;
	m->st_mtime_ns = dkp_qdir_ts_ns(&st.st_mtim);
	m->st_ctime_ns = dkp_qdir_ts_ns(&st.st_ctim);
	m->len = (size_t)st.st_size;
}

/* Open every claimed input on the ring and check each. */
static int open_claimed(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
			uint64_t max_bytes)
{
	size_t i, k;
	int rc;

	for (i = k = 0; i < n; i++)
		if (m[i].claimed) {
			struct dkp_rop *o = dkp_qdir_op(w, k++, DKP_ROP_OPEN_RD);

			o->dirfd = w->q->claim;
			o->name = m[i].id;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		return rc;
	for (i = k = 0; i < n; i++)
		if (m[i].claimed)
			check_opened(&m[i], w->ops[k++].res, max_bytes);
	return 0;
}

static int readable(const struct dkp_tmsg *m)
{
	return m->fd >= 0 && m->outcome < 0;
}

/* The budget: a worker that holds nothing waits for its first message
 * (which runs alone if it is bigger than the cap); later ones are taken
 * only if they fit now, else put back for later, so no worker waits while
 * holding bytes (no deadlock) and the cap holds. */
static void take_budget(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
			struct dkp_budget *budget)
{
	size_t i;

	if (w->budget == NULL)
		w->budget = budget;	/* set once: commit_round reads it */
	w->taken = 0;
	for (i = 0; i < n; i++) {
		uint64_t need;

		m[i].held = 0;
		if (!readable(&m[i]))
			continue;
		need = m[i].len + BUDGET_SLACK;
		if (w->taken == 0) {
			dkp_budget_take(budget, need);
		} else if (!dkp_budget_try(budget, need)) {
			put_back(w->q, &m[i]);
			continue;
		}
		m[i].held = need;
		w->taken += need;
	}
}

/* Read every input that is still in the batch, on the ring. */
static int read_claimed(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n)
{
	size_t i, k;
	int rc;

	for (i = k = 0; i < n; i++)
		if (readable(&m[i])) {
			struct dkp_rop *o = dkp_qdir_op(w, k++, DKP_ROP_READ);

			if (m[i].cap < m[i].len + 1) {
				dkp_free(m[i].buf);
				m[i].cap = m[i].len + 1;
				m[i].buf = dkp_malloc(m[i].cap);
			}
			o->fd = m[i].fd;
			o->buf = m[i].buf;
			o->len = m[i].len;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		return rc;
	for (i = k = 0; i < n; i++) {
		int64_t res;

		if (!readable(&m[i]))
			continue;
		res = w->ops[k++].res;
		if (res < 0)
			dkp_qdir_defer_sys(&m[i], "read", (int)-res, "cannot read the claimed message");
		else if ((uint64_t)res != m[i].len)
			dkp_qdir_defer_sys(&m[i], "read", EAGAIN,
					   "short read: the message changed while being read");
		else
			m[i].buf[m[i].len] = '\0';
	}
	return 0;
}

/* A message with bare LFs is parsed from a CRLF copy: count it too. */
static void budget_crlf(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
			struct dkp_budget *budget)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t extra;

		if (!(m[i].held && m[i].outcome < 0))
			continue;
		extra = dkp_budget_crlf_bytes(m[i].buf, m[i].len);
		if (extra == 0)
			continue;
		if (w->taken == m[i].held) {
			/* alone: wait holding nothing, then take both */
			dkp_budget_give(budget, m[i].held);
			dkp_budget_take(budget, m[i].held + extra);
		} else if (!dkp_budget_try(budget, extra)) {
			dkp_budget_give(budget, m[i].held);
			w->taken -= m[i].held;
			m[i].held = 0;
			put_back(w->q, &m[i]);
			continue;
		}
		m[i].held += extra;
		w->taken += extra;
	}
}

/* Step 2, read: open each claimed input, check it is a whole regular file
 * nobody is still writing, take its bytes from the budget, read it into
 * its buffer. */
static int read_inputs(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
		       uint64_t max_bytes, struct dkp_budget *budget)
{
	int rc;

	if ((rc = open_claimed(w, m, n, max_bytes)) < 0)
		return rc;
	take_budget(w, m, n, budget);
	if ((rc = read_claimed(w, m, n)) < 0)
		return rc;
	budget_crlf(w, m, n, budget);
	return 0;
}

static int qdir_fetch(struct dkp_tworker *w, struct dkp_tmsg *m, size_t n,
		      uint64_t max_bytes, struct dkp_budget *budget)
{
	size_t i;
	int rc;

	claim(w, m, n);
	rc = read_inputs(w, m, n, max_bytes, budget);
	if (rc < 0) {
		/* the ring failed: nothing read is trusted; all go back */
		for (i = 0; i < n; i++)
			if (m[i].claimed && m[i].outcome < 0)
				dkp_qdir_defer_sys(&m[i], "read", -rc, "I/O ring failed");
		if (w->budget == NULL)
			w->budget = budget;
	}
	return 0;
}

static const struct dkp_transport_ops qdir_ops = {
	.name = "queue directory",
	.pulls = 0,
	.worker_new = qdir_worker_new,
	.worker_free = qdir_worker_free,
	.worker_uring = qdir_worker_uring,
	.fetch = qdir_fetch,
	.commit = dkp_qdir_commit,
	.stage = dkp_qdir_stage,
	.commit_round = dkp_qdir_commit_round,
	.scan = qdir_scan,
	.recover = dkp_qdir_recover,
};
