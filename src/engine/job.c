/*
 * job.c — one batch of messages through the queue protocol; see job.h and
 * the states S1–S5 in qdir.h.
 *
 * Durability order per batch: every signed copy is written in out/tmp
 * and flushed — one syncfs() for the batch (flush = filesystem), or a
 * linked writev → fsync per file, all in flight at once (flush = files) —
 * before any is renamed into out/new; out/new is flushed once for the
 * batch; only then are the inputs unlinked from in/cur. The unlinks are
 * not flushed: if a crash loses one, recovery finds out/new/ID and
 * retires the input again. A crash anywhere leaves each message in in/cur
 * or out/new (or both, which recovery resolves), never in neither.
 */
#include "engine/job.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define KEEP_BUF (256u << 10)

struct dkp_job_item {
	char id[DKP_QID_MAX + 1];
	char tmp[DKP_QID_MAX + 48];
	uint64_t size;
	char *buf;
	size_t bufcap;
	int fd;
	int outcome;		/* -1 while still in progress */
	int sys_err;		/* errno behind a deferral, 0 if none */
	char reason[400];
	struct dkp_msg msg;
	struct dkp_buf sigs;
};

void dkp_budget_init(struct dkp_budget *b, uint64_t cap)
{
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->cap = cap;
	b->used = 0;
}

void dkp_budget_fini(struct dkp_budget *b)
{
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
}

static void budget_acquire(struct dkp_budget *b, uint64_t n)
{
	pthread_mutex_lock(&b->mu);
	/* a request larger than the cap runs alone rather than never */
	while (b->used > 0 && b->used + n > b->cap)
		pthread_cond_wait(&b->cv, &b->mu);
	b->used += n;
	pthread_mutex_unlock(&b->mu);
}

static void budget_release(struct dkp_budget *b, uint64_t n)
{
	pthread_mutex_lock(&b->mu);
	b->used -= n;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

void dkp_worker_init(struct dkp_worker *w, unsigned id, struct dkp_ring *ring,
		     const struct dkp_qdir *q, struct dkp_stats *stats,
		     struct dkp_budget *budget, size_t cap)
{
	size_t i;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->ring = ring;
	w->signer = dkp_signer_new();
	w->q = q;
	w->stats = stats;
	w->budget = budget;
	w->cap = cap;
	w->items = dkp_calloc(cap, sizeof(*w->items));
	/* its own out/tmp/wN; out/tmp itself if that cannot be made */
	w->tmpdir = dkp_qdir_worker_tmp(q, id);
	if (w->tmpdir < 0)
		w->tmpdir = dup(q->out_tmp);
	w->ops = dkp_calloc(2 * cap, sizeof(*w->ops));
	for (i = 0; i < cap; i++) {
		dkp_msg_init(&w->items[i].msg);
		dkp_buf_init(&w->items[i].sigs);
	}
}

void dkp_worker_fini(struct dkp_worker *w)
{
	size_t i;

	for (i = 0; i < w->cap; i++) {
		dkp_msg_fini(&w->items[i].msg);
		dkp_buf_free(&w->items[i].sigs);
		dkp_free(w->items[i].buf);
	}
	dkp_free(w->items);
	dkp_free(w->ops);
	if (w->tmpdir >= 0)
		close(w->tmpdir);
	dkp_signer_free(w->signer);
	dkp_ring_free(w->ring);
	memset(w, 0, sizeof(*w));
}

/* Latency histogram: 8 buckets per power of two of microseconds. */
static unsigned lat_bucket(uint64_t us)
{
	unsigned msb, frac;

	if (us == 0)
		us = 1;
	msb = 63u - (unsigned)__builtin_clzll(us);
	frac = msb >= 3 ? (unsigned)(us >> (msb - 3)) & 7u
			: (unsigned)(us << (3 - msb)) & 7u;
	msb = msb * 8 + frac;
	return msb < DKP_LAT_BUCKETS ? msb : DKP_LAT_BUCKETS - 1;
}

double dkp_stats_latency_ms(const struct dkp_stats *st, double q)
{
	uint64_t total = 0, run = 0, want;
	unsigned i;

	for (i = 0; i < DKP_LAT_BUCKETS; i++)
		total += atomic_load(&st->lat[i]);
	if (total == 0)
		return 0.0;
	want = (uint64_t)(q * (double)total + 0.5);
	if (want < 1)
		want = 1;
	for (i = 0; i < DKP_LAT_BUCKETS; i++) {
		run += atomic_load(&st->lat[i]);
		if (run >= want)
			break;
	}
	if (i == DKP_LAT_BUCKETS)
		i--;
	/* the middle of bucket i: (8 + frac + 0.5) * 2^msb / 8 microseconds */
	return (8.0 + (double)(i % 8) + 0.5) * (double)(1ull << (i / 8)) / 8.0 / 1000.0;
}

double dkp_mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int is_temp_errno(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EIO || e == EAGAIN ||
	       e == ENOMEM || e == EMFILE || e == ENFILE || e == EROFS ||
	       e == EACCES || e == EPERM || e == EINTR || e == ETIMEDOUT;
}

static void set_fail(struct dkp_job_item *it, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_fail(struct dkp_job_item *it, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->reason, sizeof(it->reason), fmt, ap);
	va_end(ap);
	it->outcome = DKP_OUT_FAILED;
}

static void set_defer(struct dkp_job_item *it, int sys_err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_defer(struct dkp_job_item *it, int sys_err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->reason, sizeof(it->reason), fmt, ap);
	va_end(ap);
	it->outcome = DKP_OUT_DEFERRED;
	it->sys_err = sys_err;
}

static struct dkp_rop *op(struct dkp_worker *w, size_t k, enum dkp_rop_kind kind)
{
	struct dkp_rop *o = &w->ops[k];

	memset(o, 0, sizeof(*o));
	o->kind = kind;
	return o;
}

/* Route, then sign: the customer signature first (on top), then ESP. */
static void sign_item(struct dkp_worker *w, struct dkp_snap *s,
		      struct dkp_job_item *it, int64_t now)
{
	const struct dkp_config *c = s->cfg;
	struct dkp_sig_spec sp[2];
	struct dkp_key *ckey = NULL;
	const struct dkp_keyent *ke = NULL;
	struct dkp_err err;
	char local[256], dom[256];
	const char *cdomain = NULL;
	size_t n = 0, k;

	dkp_err_clear(&err);
	if (dkp_msg_parse(&it->msg, it->buf, it->size, &c->limits, &err) != DKP_OK) {
		set_fail(it, "malformed message: %s", err.msg);
		return;
	}
	if (s->route &&
	    dkp_msg_from_address(&it->msg, local, sizeof(local), dom,
				 sizeof(dom), &err) == DKP_OK) {
		ke = dkp_snap_route(s, local, dom);
		if (ke) {
			cdomain = strcmp(ke->domain, "%") == 0 ? dom : ke->domain;
			if (dkp_keycache_get(s->keys, ke->index, ke->path, &ckey,
					     &err) != DKP_OK) {
				/* the operator must fix the key: keep the mail */
				set_defer(it, 0, "customer key %s for d=%s: %s",
					  ke->name, cdomain, err.msg);
				return;
			}
		}
	} else if (s->route) {
		snprintf(dom, sizeof(dom), "(unusable From)");
	}
	if (ckey == NULL && s->route) {
		if (c->missing_key == DKP_MISSING_DEFER) {
			set_defer(it, 0, "no customer key for %s (missing_key = defer)", dom);
			return;
		}
		if (c->missing_key == DKP_MISSING_FAIL) {
			set_fail(it, "no customer key for %s (missing_key = fail)", dom);
			return;
		}
	}
	memset(sp, 0, sizeof(sp));
	for (k = 0; k < 2; k++) {
		sp[k].hcanon = c->hcanon;
		sp[k].bcanon = c->bcanon;
		sp[k].headers = c->nheaders ? c->headers : NULL;
		sp[k].nheaders = c->nheaders;
		sp[k].t = now;
		sp[k].x = c->expire ? now + c->expire : 0;
	}
	if (ckey) {
		sp[n].domain = cdomain;
		sp[n].selector = ke->selector;
		sp[n].key = ckey;
		n++;
	}
	sp[n].domain = c->esp_domain;
	sp[n].selector = c->esp_selector;
	sp[n].key = s->esp_key;
	n++;
	dkp_buf_reset(&it->sigs);
	if (dkp_sign(w->signer, &it->msg, sp, n, &it->sigs, &err) != DKP_OK)
		set_defer(it, 0, "signing failed: %s", err.msg);
	else
		it->outcome = ckey ? DKP_OUT_SIGNED : DKP_OUT_ESP_ONLY;
	if (it->outcome == DKP_OUT_ESP_ONLY && s->route && w->esp_only)
		w->esp_only(w->esp_only_ctx, dom, it->id);
	dkp_key_unref(ckey);
}

/* Move a failed item to failed/, a deferred one back to in/new. */
static void settle(struct dkp_worker *w, struct dkp_job_item *it)
{
	int rc;

	if (it->outcome == DKP_OUT_FAILED) {
		rc = dkp_qdir_fail((struct dkp_qdir *)w->q, it->id, it->reason);
		if (rc < 0) {
			/* cannot record the failure: keep it queued instead */
			dkp_error("%s: cannot move to failed/ (%s); leaving it queued: %s",
				  it->id, strerror(-rc), it->reason);
			dkp_qdir_defer((struct dkp_qdir *)w->q, it->id);
			it->outcome = DKP_OUT_DEFERRED;
			it->sys_err = -rc;
			return;
		}
		dkp_warn("%s: failed: %s", it->id, it->reason);
	} else if (it->outcome == DKP_OUT_DEFERRED) {
		rc = dkp_qdir_defer((struct dkp_qdir *)w->q, it->id);
		if (rc == -ENOENT) {
			/* never claimed (the claim itself failed): still queued,
			 * or another signer's */
			it->outcome = DKP_OUT_GONE;
			return;
		}
		if (rc < 0)
			dkp_error("%s: cannot return to in/new (%s); it stays in in/cur until restart",
				  it->id, strerror(-rc));
		dkp_warn("%s: deferred: %s", it->id, it->reason);
	}
}

int dkp_job_batch(struct dkp_worker *w, struct dkp_snap *s,
		  char (*ids)[DKP_QID_MAX + 1], size_t n, int *outcome)
{
	const struct dkp_qdir *q = w->q;
	const struct dkp_config *c = s->cfg;
	struct dkp_job_item *it = w->items;
	uint64_t budget = 0, acquired = 0;
	int64_t now = (int64_t)time(NULL);
	size_t i, k, live, stride;
	int backoff = 0, rc, moved = 0;
	double t_claim = dkp_mono_now();

	/* 1. claim: in/new/ID -> in/cur/ID */
	for (i = 0; i < n; i++) {
		struct dkp_rop *o = op(w, i, DKP_ROP_RENAME_NOREPLACE);

		snprintf(it[i].id, sizeof(it[i].id), "%s", ids[i]);
		it[i].outcome = -1;
		it[i].sys_err = 0;
		it[i].reason[0] = '\0';
		it[i].tmp[0] = '\0';
		it[i].fd = -1;
		o->dirfd = q->in_new;
		o->name = it[i].id;
		o->dirfd2 = q->in_cur;
		o->name2 = it[i].id;
	}
	if ((rc = dkp_ring_run(w->ring, w->ops, n)) < 0)
		goto out;	/* claims unknown: out returns what it can */
	for (i = 0; i < n; i++)
		if (w->ops[i].res < 0)
			it[i].outcome = DKP_OUT_GONE;	/* ENOENT/EEXIST: not ours */

	/* 2. sizes */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome < 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_SIZE);

			o->dirfd = q->in_cur;
			o->name = it[i].id;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	for (i = k = 0; i < n; i++) {
		if (it[i].outcome >= 0)
			continue;
		if (w->ops[k].res < 0) {
			set_defer(&it[i], (int)-w->ops[k].res, "cannot stat: %s",
				  strerror((int)-w->ops[k].res));
		} else if (w->ops[k].size > c->limits.max_message_bytes) {
			set_fail(&it[i], "message of %llu bytes exceeds max_message_size (%zu)",
				 (unsigned long long)w->ops[k].size,
				 c->limits.max_message_bytes);
		} else {
			it[i].size = w->ops[k].size;
			budget += it[i].size;
		}
		k++;
	}
	budget_acquire(w->budget, budget);
	acquired = budget;

	/* 3. open, read, close */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome < 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_OPEN_RD);

			o->dirfd = q->in_cur;
			o->name = it[i].id;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	for (i = k = 0; i < n; i++) {
		if (it[i].outcome >= 0)
			continue;
		if (w->ops[k].res < 0)
			set_defer(&it[i], (int)-w->ops[k].res, "cannot open: %s",
				  strerror((int)-w->ops[k].res));
		else
			it[i].fd = (int)w->ops[k].res;
		k++;
	}
	for (i = k = 0; i < n; i++)
		if (it[i].fd >= 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_READ);

			if (it[i].bufcap < it[i].size + 1) {
				dkp_free(it[i].buf);
				it[i].bufcap = it[i].size + 1;
				it[i].buf = dkp_malloc(it[i].bufcap);
			}
			o->fd = it[i].fd;
			o->buf = it[i].buf;
			o->len = it[i].size;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	for (i = k = 0; i < n; i++) {
		if (it[i].fd < 0)
			continue;
		if (w->ops[k].res < 0 || (uint64_t)w->ops[k].res != it[i].size)
			set_defer(&it[i], w->ops[k].res < 0 ? (int)-w->ops[k].res : EIO,
				  "cannot read: %s", w->ops[k].res < 0
					  ? strerror((int)-w->ops[k].res) : "short read");
		k++;
	}
	for (i = k = 0; i < n; i++)
		if (it[i].fd >= 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_CLOSE);

			o->fd = it[i].fd;
			it[i].fd = -1;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;

	/* 4. sign (or, to measure the queue path alone, pass it through) */
	for (i = 0; i < n; i++) {
		if (it[i].outcome >= 0)
			continue;
		if (w->nosign) {
			it[i].msg.data = it[i].buf;
			it[i].msg.len = it[i].size;
			dkp_buf_reset(&it[i].sigs);
			it[i].outcome = DKP_OUT_SIGNED;
		} else {
			sign_item(w, s, &it[i], now);
		}
	}

	/* 5. write out/tmp/ID.W.S exclusively, then writev (+ fsync linked) */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_OPEN_EXCL);

			snprintf(it[i].tmp, sizeof(it[i].tmp), "%s.%u.%llu", it[i].id,
				 w->id, (unsigned long long)w->seq++);
			o->dirfd = w->tmpdir;
			o->name = it[i].tmp;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	live = 0;
	for (i = k = 0; i < n; i++) {
		if (!(it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY))
			continue;
		if (w->ops[k].res < 0) {
			int e = (int)-w->ops[k].res;

			set_defer(&it[i], e, "cannot create the signed copy: %s", strerror(e));
			it[i].tmp[0] = '\0';
		} else {
			it[i].fd = (int)w->ops[k].res;
			live++;
		}
		k++;
	}
	for (i = k = 0; i < n; i++)
		if (it[i].fd >= 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_WRITEV);

			o->fd = it[i].fd;
			o->iov[0].iov_base = it[i].sigs.p;
			o->iov[0].iov_len = it[i].sigs.len;
			o->iov[1].iov_base = (void *)it[i].msg.data;
			o->iov[1].iov_len = it[i].msg.len;
			o->niov = 2;
			if (c->flush == DKP_FLUSH_FILES) {
				o = op(w, k++, DKP_ROP_FSYNC);
				o->flags = DKP_ROP_LINK;
				o->fd = it[i].fd;
			}
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	stride = c->flush == DKP_FLUSH_FILES ? 2 : 1;
	for (i = k = 0; i < n; i++) {
		if (it[i].fd < 0)
			continue;
		if (w->ops[k].res < 0 || (stride == 2 && w->ops[k + 1].res < 0)) {
			int e = (int)-(w->ops[k].res < 0 ? w->ops[k].res : w->ops[k + 1].res);

			set_defer(&it[i], e, "cannot write the signed copy: %s", strerror(e));
		}
		k += stride;
	}
	/* group commit: one flush of the filesystem for every file written;
	 * syncfs() reports write-back errors since the queue was opened */
	if (live && c->flush == DKP_FLUSH_FILESYSTEM && syncfs(w->tmpdir) < 0) {
		int e = errno;

		for (i = 0; i < n; i++)
			if (it[i].fd >= 0 && it[i].outcome != DKP_OUT_DEFERRED)
				set_defer(&it[i], e, "cannot flush the signed copy: %s",
					  strerror(e));
	}
	for (i = k = 0; i < n; i++)
		if (it[i].fd >= 0) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_CLOSE);

			o->fd = it[i].fd;
			it[i].fd = -1;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	/* a deferred item may have a temporary file: remove it (the op
	 * points at it[i].tmp, so forget the name only after the run) */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome == DKP_OUT_DEFERRED && it[i].tmp[0]) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_UNLINK);

			o->dirfd = w->tmpdir;
			o->name = it[i].tmp;
		}
	if (k && (rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	for (i = 0; i < n; i++)
		if (it[i].outcome == DKP_OUT_DEFERRED)
			it[i].tmp[0] = '\0';

	/* 6. publish: out/tmp -> out/new/ID, never over an existing one */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_RENAME_NOREPLACE);

			o->dirfd = w->tmpdir;
			o->name = it[i].tmp;
			o->dirfd2 = q->out_new;
			o->name2 = it[i].id;
		}
	if ((rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	live = 0;
	for (i = k = 0; i < n; i++) {
		if (!(it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY))
			continue;
		if (w->ops[k].res == -EEXIST) {
			/* published before (a replay after a crash): done */
			atomic_fetch_add(&w->stats->replays, 1);
			unlinkat(w->tmpdir, it[i].tmp, 0);
		} else if (w->ops[k].res < 0) {
			int e = (int)-w->ops[k].res;

			unlinkat(w->tmpdir, it[i].tmp, 0);
			set_defer(&it[i], e, "cannot publish: %s", strerror(e));
		}
		if (it[i].outcome != DKP_OUT_DEFERRED)
			live++;
		k++;
	}
	/* 7. one flush of out/new for the whole batch (group commit) */
	if (live && (rc = dkp_qdir_sync(q->out_new)) < 0) {
		/* not known durable: keep the inputs; a retry finds out/new/ID
		 * (EEXIST) and retires them then */
		for (i = 0; i < n; i++)
			if (it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY)
				set_defer(&it[i], -rc, "cannot flush out/new: %s", strerror(-rc));
		live = 0;
	}
	/* durable: claim-to-durable latency, the same for the whole batch */
	if (live) {
		unsigned b = lat_bucket((uint64_t)((dkp_mono_now() - t_claim) * 1e6));

		for (i = 0; i < n; i++)
			if (it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY)
				atomic_fetch_add(&w->stats->lat[b], 1);
	}
	/* 8. retire the inputs; no flush: a lost unlink is retired again by
	 * recovery, which finds out/new/ID */
	for (i = k = 0; i < n; i++)
		if (it[i].outcome == DKP_OUT_SIGNED || it[i].outcome == DKP_OUT_ESP_ONLY) {
			struct dkp_rop *o = op(w, k++, DKP_ROP_UNLINK);

			o->dirfd = q->in_cur;
			o->name = it[i].id;
			atomic_fetch_add(&w->stats->bytes, it[i].size);
		}
	if (k && (rc = dkp_ring_run(w->ring, w->ops, k)) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		/* the ring itself failed: nothing more is known to be done */
		for (i = 0; i < n; i++) {
			if (it[i].fd >= 0) {
				close(it[i].fd);
				it[i].fd = -1;
			}
			if (it[i].outcome != DKP_OUT_GONE &&
			    it[i].outcome != DKP_OUT_FAILED)
				set_defer(&it[i], -rc, "I/O ring failed: %s", strerror(-rc));
		}
	}
	/* 9. failures to failed/, deferrals back to in/new */
	for (i = 0; i < n; i++) {
		settle(w, &it[i]);
		moved |= it[i].outcome == DKP_OUT_DEFERRED;
		outcome[i] = it[i].outcome;
		if (it[i].outcome == DKP_OUT_DEFERRED && it[i].sys_err &&
		    is_temp_errno(it[i].sys_err)) {
			backoff = -it[i].sys_err;
			outcome[i] |= DKP_OUT_RETRY;
		}
		atomic_fetch_add(&w->stats->n[it[i].outcome], 1);
	}
	if (moved)
		dkp_qdir_sync(q->in_new);
	/* keep small buffers for the next batch, not a rare big one: memory
	 * stays within threads x batch x KEEP_BUF plus what is in flight */
	for (i = 0; i < n; i++)
		if (it[i].bufcap > KEEP_BUF) {
			dkp_free(it[i].buf);
			it[i].buf = NULL;
			it[i].bufcap = 0;
		}
	budget_release(w->budget, acquired);
	return rc < 0 ? rc : backoff;
}
