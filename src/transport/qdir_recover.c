/*
 * qdir_recover.c — recovery of the queue-directory transport: take back
 * what crashed engines left (docs/queue.md "Recovery" and the crash
 * table). For each in/cur/E whose lock can be taken (E is dead): publish
 * the copies whose input was retired, drop those whose input is still
 * claimed, put the claims back into in/new, remove E's areas. Never looks
 * at out/new to decide anything, except for queues written by the old
 * protocol (claims directly in in/cur).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"
#include "transport/qdir_int.h"

struct rec {
	struct dkp_qdir *q;
	int claim;		/* the dead engine's in/cur/E */
	int sub;		/* one of its out/tmp/E/wN */
	struct dkp_recovery *r;
	int rc;
};

/* A copy of a dead engine: input still claimed → drop; input retired →
 * publish. */
static int rec_copy(void *ctx, const char *name, int type)
{
	struct rec *x = ctx;
	char used[DKP_QID_MAX + 1];
	int r;

	(void)type;
	if (x->claim >= 0 && faccessat(x->claim, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		/* the claim goes back to in/new only once this copy is gone:
		 * both would be signed and published */
		if (unlinkat(x->sub, name, 0) == 0)
			x->r->discarded++;
		else if (errno != ENOENT)
			x->rc = -errno;
		return 0;
	}
	if (!dkp_qdir_id_ok(name)) {
		if (unlinkat(x->sub, name, 0) < 0 && errno != ENOENT)
			x->rc = -errno;	/* not ours to publish, but in the way */
		return 0;
	}
	if ((r = dkp_qdir_move_unique(x->sub, name, x->q->out_new, name, used)) < 0) {
		x->rc = r;
		return 0;
	}
	if (strcmp(used, name) != 0)
		dkp_warn("recovery: out/new/%s exists already: published as out/new/%s",
			 name, used);
	x->r->published++;
	return 0;
}

/* Put a dead engine's claim back into in/new. */
static int rec_claim(void *ctx, const char *name, int type)
{
	struct rec *x = ctx;
	char used[DKP_QID_MAX + 1];
	int r;

	(void)type;
	if (!dkp_qdir_id_ok(name))
		return 0;
	if ((r = dkp_qdir_move_unique(x->claim, name, x->q->in_new, name, used)) < 0) {
		x->rc = r;
		return 0;
	}
	if (strcmp(used, name) != 0)
		dkp_warn("recovery: in/new/%s was queued again meanwhile: put back as in/new/%s",
			 name, used);
	x->r->requeued++;
	return 0;
}

struct subs {
	char (*names)[64];
	size_t n, cap;
	int strict;	/* 1: a longer name is an error; 0: skipped */
};

static int list_sub(void *ctx, const char *name, int type)
{
	struct subs *s = ctx;

	(void)type;
	if (strlen(name) >= 64)	/* not an engine's or a worker's area */
		return s->strict ? -ENAMETOOLONG : 0;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->names = dkp_realloc(s->names, s->cap * sizeof(*s->names));
	}
	snprintf(s->names[s->n++], 64, "%s", name);
	return 0;
}

/*
 * Recover one dead engine's areas; claimfd holds its lock. Every copy is
 * dealt with (published, or dropped because its claim is still there)
 * and that made durable before any claim goes back to in/new; on any
 * error nothing more is done and the areas stay for the next attempt, so
 * no copy is ever left behind while its message is signed again.
 */
static int recover_engine(struct dkp_qdir *q, const char *name, int claimfd,
			  struct dkp_recovery *r)
{
	struct rec x = { q, claimfd, -1, r, 0 };
	struct subs s = { NULL, 0, 0, 1 };
	size_t i, published = r->published;
	int tmp, rc;

	tmp = openat(q->out_tmp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tmp < 0 && errno != ENOENT)
		x.rc = -errno;		/* copies may be there: do not go on */
	if (tmp >= 0 && (rc = dkp_qdir_each_entry(tmp, list_sub, &s)) < 0)
		x.rc = rc;
	for (i = 0; tmp >= 0 && x.rc == 0 && i < s.n; i++) {
		x.sub = openat(tmp, s.names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (x.sub < 0) {
			if (errno == ENOTDIR || errno == ELOOP) {
				if (unlinkat(tmp, s.names[i], 0) < 0 && errno != ENOENT)
					x.rc = -errno;	/* a stray file */
			} else if (errno != ENOENT) {
				x.rc = -errno;
			}
			continue;
		}
		if ((rc = dkp_qdir_each_entry(x.sub, rec_copy, &x)) < 0 && x.rc == 0)
			x.rc = rc;
		if ((rc = dkp_qdir_sync_dir(x.sub)) < 0 && x.rc == 0)
			x.rc = rc;	/* the drops must be durable first */
		close(x.sub);
	}
	if (x.rc == 0 && r->published > published &&
	    (rc = dkp_qdir_sync_dir(q->out_new)) < 0)
		x.rc = rc;
	/* only now may the claims go back to be signed again */
	if (x.rc == 0 && (rc = dkp_qdir_each_entry(claimfd, rec_claim, &x)) < 0)
		x.rc = rc;
	if (x.rc == 0 && (rc = dkp_qdir_sync_dir(q->in_new)) < 0)
		x.rc = rc;
	if (x.rc == 0) {
		for (i = 0; tmp >= 0 && i < s.n; i++)
			unlinkat(tmp, s.names[i], AT_REMOVEDIR);
		if (tmp >= 0)
			unlinkat(q->out_tmp, name, AT_REMOVEDIR);
		if (unlinkat(q->in_cur, name, AT_REMOVEDIR) == 0)
			dkp_qdir_sync_dir(q->in_cur);
		r->engines++;
	}
	if (tmp >= 0)
		close(tmp);
	dkp_free(s.names);
	return x.rc;
}

static int unlink_any(void *ctx, const char *name, int type)
{
	struct rec *x = ctx;

	(void)type;
	unlinkat(x->sub, name, 0);
	return 0;
}

/* Claims of a dkimpress from before per-engine areas: in/cur/ID files. */
static int rec_legacy(void *ctx, const char *name, int type)
{
	struct rec *x = ctx;
	struct stat st;

	if (type != DT_REG && type != DT_UNKNOWN)
		return 0;
	if (fstatat(x->q->in_cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    !dkp_qdir_id_ok(name))
		return 0;
	if (faccessat(x->q->out_new, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		/* the old protocol's "published, not yet retired" */
		if (unlinkat(x->q->in_cur, name, 0) == 0) {
			x->r->discarded++;
			dkp_warn("recovery: in/cur/%s (an older dkimpress's claim) removed: out/new/%s exists, so the old protocol had published it",
				 name, name);
		}
		return 0;
	}
	x->claim = x->q->in_cur;
	return rec_claim(x, name, type);
}

/* Temporary files of a dkimpress from before per-engine areas (out/tmp/wN
 * and files in out/tmp): the old protocol never retired an input before
 * its copy was published, so they are never the only copy. */
static int rec_legacy_tmp(void *ctx, const char *name, int type)
{
	struct rec *x = ctx;
	int fd;

	(void)type;
	if (dkp_qdir_engine_name_ok(name))
		return 0;
	if (unlinkat(x->q->out_tmp, name, 0) == 0 || errno != EISDIR)
		return 0;
	fd = openat(x->q->out_tmp, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		x->sub = fd;
		dkp_qdir_each_entry(fd, unlink_any, x);
		close(fd);
		unlinkat(x->q->out_tmp, name, AT_REMOVEDIR);
	}
	return 0;
}

/* in/cur holds engine areas (E, .E) and the old layout's claims (files):
 * a directory of any other name is not ours, so it is left alone, and
 * said once per run however many scans see it (q->mu held). */
static void stray_dir(struct dkp_qdir *q, const char *name, int type)
{
	char key[4 + 256], shown[4 * 256 + 1];
	struct stat st;
	size_t len;

	if (type != DT_DIR && (type != DT_UNKNOWN ||
			       fstatat(q->in_cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			       !S_ISDIR(st.st_mode)))
		return;
	len = (size_t)snprintf(key, sizeof(key), "cur/%s", name);
	if (dkp_htab_get(q->bad, key, len) || dkp_htab_count(q->bad) >= 10000)
		return;
	dkp_htab_put(q->bad, key, len, (void *)1);
	dkp_qdir_escape_name(shown, sizeof(shown), name);
	dkp_warn("%s/cur/%s: a directory that is not an engine area (docs/queue.md); left alone (warned once)",
		 q->in_path, shown);
}

struct cur_list {
	struct dkp_qdir *q;
	struct subs s;
};

/* The engine areas of in/cur into the list; other directories: stray. */
static int list_cur(void *ctx, const char *name, int type)
{
	struct cur_list *c = ctx;

	if (!dkp_qdir_engine_name_ok(name[0] == '.' ? name + 1 : name)) {
		stray_dir(c->q, name, type);
		return 0;
	}
	return list_sub(&c->s, name, type);
}

int dkp_qdir_recover(struct dkp_transport *t, struct dkp_recovery *r)
{
	struct dkp_qdir *q = (struct dkp_qdir *)t;
	struct cur_list cur = { q, { NULL, 0, 0, 0 } };
	struct subs *names = &cur.s;
	struct rec x = { q, -1, -1, r, 0 };
	size_t i;
	int rc = 0, e;

	memset(r, 0, sizeof(*r));
	pthread_mutex_lock(&q->mu);
	dkp_qdir_each_entry(q->in_cur, list_cur, &cur);
	for (i = 0; i < names->n; i++) {
		const char *name = names->names[i];
		const char *base = name[0] == '.' ? name + 1 : name;
		struct stat st;
		int fd;

		if (strcmp(base, q->engine) == 0)
			continue;
		fd = openat(q->in_cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;	/* gone meanwhile, or not a directory */
		if (name[0] == '.' && (fstat(fd, &st) < 0 ||
				       time(NULL) - st.st_ctime < STALE_HIDDEN_S)) {
			close(fd);	/* an engine starting right now */
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);	/* alive */
			continue;
		}
		e = recover_engine(q, name, fd, r);
		if (e < 0 && rc == 0)
			rc = e;
		close(fd);
	}
	/* claims in the old layout, then its temporary files */
	x.claim = q->in_cur;
	dkp_qdir_each_entry(q->in_cur, rec_legacy, &x);
	dkp_qdir_each_entry(q->out_tmp, rec_legacy_tmp, &x);
	if (x.rc < 0 && rc == 0)
		rc = x.rc;
	pthread_mutex_unlock(&q->mu);
	dkp_free(names->names);
	return rc;
}

