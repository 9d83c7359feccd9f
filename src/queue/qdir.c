/* qdir.c — queue-directory protocol helpers; see qdir.h. */
#include "queue/qdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"

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

static int open_dir(const char *base, const char *sub, int *fd)
{
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s%s%s", base, sub ? "/" : "", sub ? sub : "");
	if ((rc = mkdir_p(path)) < 0)
		return rc;
	*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

int dkp_qdir_open(struct dkp_qdir *q, const char *in, const char *out,
		  const char *failed)
{
	int rc;

	memset(q, 0, sizeof(*q));
	q->in_tmp = q->in_new = q->in_cur = q->out_tmp = q->out_new = q->failed = -1;
	q->in_path = dkp_strdup(in);
	q->out_path = dkp_strdup(out);
	q->failed_path = dkp_strdup(failed);
	if ((rc = open_dir(in, "tmp", &q->in_tmp)) < 0 ||
	    (rc = open_dir(in, "new", &q->in_new)) < 0 ||
	    (rc = open_dir(in, "cur", &q->in_cur)) < 0 ||
	    (rc = open_dir(out, "tmp", &q->out_tmp)) < 0 ||
	    (rc = open_dir(out, "new", &q->out_new)) < 0 ||
	    (rc = open_dir(failed, NULL, &q->failed)) < 0) {
		dkp_qdir_close(q);
		return rc;
	}
	return 0;
}

void dkp_qdir_close(struct dkp_qdir *q)
{
	int *fds[] = { &q->in_tmp, &q->in_new, &q->in_cur, &q->out_tmp,
		       &q->out_new, &q->failed };
	size_t i;

	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	dkp_free(q->in_path);
	dkp_free(q->out_path);
	dkp_free(q->failed_path);
	q->in_path = q->out_path = q->failed_path = NULL;
}

int dkp_qdir_scan(int dirfd, int (*fn)(void *ctx, const char *id),
		  void (*bad)(void *ctx, const char *name), void *ctx)
{
	int fd = dup(dirfd);
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rewinddir(d);
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!dkp_qdir_id_ok(e->d_name)) {
			if (bad)
				bad(ctx, e->d_name);
			continue;
		}
		if (fn(ctx, e->d_name) != 0)
			break;
		errno = 0;
	}
	if (e == NULL && errno)
		rc = -errno;
	closedir(d);
	return rc;
}

int dkp_qdir_sync(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

struct recover_ctx {
	struct dkp_qdir *q;
	size_t retired, requeued;
	int rc;
};

/* Empty one worker's out/tmp/wN/ (the directory itself stays). */
static int clean_subdir(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *e;
	DIR *d;
	int rc = 0, removed = 0;

	if (fd < 0)
		return -errno;
	if ((d = fdopendir(fd)) == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed = 1;
		else if (errno != ENOENT)
			rc = -errno;
	}
	if (rc == 0 && removed && fsync(dirfd(d)) < 0)
		rc = -errno;
	closedir(d);
	return rc;
}

static int clean_tmp(void *ctx, const char *name)
{
	struct recover_ctx *rc = ctx;
	struct stat st;
	int r;

	if (fstatat(rc->q->out_tmp, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(st.st_mode)) {
		if ((r = clean_subdir(rc->q->out_tmp, name)) < 0)
			rc->rc = r;	/* a worker's out/tmp/wN */
		return 0;
	}
	if (unlinkat(rc->q->out_tmp, name, 0) < 0 && errno != ENOENT)
		rc->rc = -errno;
	return 0;
}

static void clean_tmp_any(void *ctx, const char *name)
{
	clean_tmp(ctx, name);	/* our own temporary names are always ours */
}

static int recover_one(void *ctx, const char *id)
{
	struct recover_ctx *rc = ctx;
	struct dkp_qdir *q = rc->q;

	if (faccessat(q->out_new, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		/* S4: published before the crash; retire the input */
		if (unlinkat(q->in_cur, id, 0) < 0 && errno != ENOENT)
			rc->rc = -errno;
		else
			rc->retired++;
	} else if (renameat2(q->in_cur, id, q->in_new, id, RENAME_NOREPLACE) < 0) {
		/* a producer reused the ID meanwhile: keep ours claimed, it
		 * is signed from in/cur on the next start */
		if (errno != EEXIST)
			rc->rc = -errno;
	} else {
		rc->requeued++;	/* S2/S3: sign again */
	}
	return 0;
}

int dkp_qdir_worker_tmp(const struct dkp_qdir *q, unsigned id)
{
	char name[32];
	int fd;

	snprintf(name, sizeof(name), "w%u", id);
	if (mkdirat(q->out_tmp, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(q->out_tmp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int dkp_qdir_recover(struct dkp_qdir *q, size_t *retired, size_t *requeued)
{
	struct recover_ctx rc = { q, 0, 0, 0 };
	int r;

	if ((r = dkp_qdir_scan(q->out_tmp, clean_tmp, clean_tmp_any, &rc)) < 0)
		return r;
	if ((r = dkp_qdir_scan(q->in_cur, recover_one, NULL, &rc)) < 0)
		return r;
	if (rc.rc < 0)
		return rc.rc;
	if ((r = dkp_qdir_sync(q->out_tmp)) < 0 ||
	    (r = dkp_qdir_sync(q->in_cur)) < 0 ||
	    (r = dkp_qdir_sync(q->in_new)) < 0)
		return r;
	*retired = rc.retired;
	*requeued = rc.requeued;
	return 0;
}

int dkp_qdir_fail(struct dkp_qdir *q, const char *id, const char *reason)
{
	char rname[DKP_QID_MAX + 16], tname[DKP_QID_MAX + 32];
	size_t len = strlen(reason);
	int fd, rc = 0;

	snprintf(rname, sizeof(rname), "%s.reason", id);
	snprintf(tname, sizeof(tname), ".%s.reason.tmp", id);
	fd = openat(q->failed, tname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, reason, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(q->failed, tname, q->failed, rname) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(q->failed, tname, 0);
		return rc;
	}
	/* the message itself: same file system, so a rename */
	if (renameat(q->in_cur, id, q->failed, id) < 0)
		return -errno;
	if ((rc = dkp_qdir_sync(q->failed)) < 0)
		return rc;
	return dkp_qdir_sync(q->in_cur);
}

int dkp_qdir_defer(struct dkp_qdir *q, const char *id)
{
	if (renameat2(q->in_cur, id, q->in_new, id, RENAME_NOREPLACE) < 0)
		return errno == EEXIST ? 0 : -errno;	/* stays claimed */
	return 0;
}
