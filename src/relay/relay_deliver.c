/* relay_deliver.c — one message's delivery and outcome; see
 * relay_deliver.h. */
#include "relay/relay_deliver.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* reasons longer than this are cut (one line per failed recipient) */
#define REASON_MAX 16384

static void after_final(void *arg)
{
	((struct dkp_relay_worker *)arg)->t_final = dkp_mono_now();
}

void dkp_relay_worker_init(struct dkp_relay_worker *w, struct dkp_rq *q,
			   const struct dkp_relay_config *cf, SSL_CTX *ctx,
			   const char *helo)
{
	memset(w, 0, sizeof(*w));
	w->q = q;
	w->cf = cf;
	dkp_smtp_session_init(&w->s, cf, ctx, helo);
	w->s.after_final = after_final;
	w->s.after_final_arg = w;
	dkp_buf_init(&w->file);
	dkp_buf_init(&w->tmp);
}

void dkp_relay_worker_free(struct dkp_relay_worker *w)
{
	dkp_smtp_session_free(&w->s);
	dkp_buf_free(&w->file);
	dkp_buf_free(&w->tmp);
}

int64_t dkp_relay_retry_delay(const struct dkp_relay_sched *s, unsigned attempts)
{
	if (s->n == 0)
		return 60;
	if (attempts == 0)
		attempts = 1;
	return s->step[attempts - 1 < s->n ? attempts - 1 : s->n - 1];
}

/* The window ends: the outcome of the last 2xx is on disk. */
void dkp_relay_window_end(struct dkp_relay_worker *w)
{
	double d;

	if (w->t_final <= 0)
		return;
	d = dkp_mono_now() - w->t_final;
	w->win_n++;
	w->win_sum += d;
	if (d > w->win_max)
		w->win_max = d;
	w->t_final = 0;
}

/* "ADDR: why" for each recipient whose code class is cls, into out. */
void dkp_relay_reasons(struct dkp_buf *out, const struct dkp_relay_env *e,
		    const struct dkp_smtp_result *res, int cls, const char *prefix)
{
	size_t i;

	out->len = 0;
	for (i = 0; i < e->nrcpt && out->len < REASON_MAX; i++) {
		if (res->r[i].code / 100 != cls)
			continue;
		if (out->len)
			dkp_buf_addc(out, '\n');
		dkp_buf_printf(out, "%s<%.*s>: %s", prefix, (int)e->rcpt[i].len, e->rcpt[i].p,
			       res->r[i].why ? res->r[i].why : "");
	}
	dkp_buf_addc(out, '\0');
	out->len--;
}

/* Recipients of class cls as envelope lines + the message, into w->tmp. */
static void subset(struct dkp_relay_worker *w, const struct dkp_relay_env *e,
		   const struct dkp_smtp_result *res, int cls, unsigned char *keep)
{
	size_t i;

	for (i = 0; i < e->nrcpt; i++)
		keep[i] = res->r[i].code / 100 == cls;
	w->tmp.len = 0;
	dkp_relay_env_lines(&w->tmp, e, keep);
	dkp_buf_add(&w->tmp, e->msg, e->msg_len);
}

/* Counts of 2xx, 4xx, 5xx recipients. */
void dkp_relay_classify(const struct dkp_smtp_result *res, size_t cnt[6])
{
	size_t i;

	memset(cnt, 0, 6 * sizeof(cnt[0]));
	for (i = 0; i < res->n; i++)
		cnt[res->r[i].code / 100 >= 2 && res->r[i].code / 100 <= 5
			    ? res->r[i].code / 100 : 4]++;
}

/* The 5xx recipients to FAILED/ (all of the file, or a copy with just
 * them). */
static int fail_perm(struct dkp_relay_worker *w, const char *name, const char *id,
		     const struct dkp_relay_env *e, const struct dkp_smtp_result *res,
		     size_t nperm, unsigned char *keep, struct dkp_buf *why)
{
	int rc;

	dkp_relay_reasons(why, e, res, 5, "");
	if (nperm == e->nrcpt)
		rc = dkp_rq_fail(w->q, name, id, NULL, 0, why->p);
	else {
		subset(w, e, res, 5, keep);
		rc = dkp_rq_fail(w->q, name, id, w->tmp.p, w->tmp.len, why->p);
	}
	if (rc < 0)
		dkp_error("relay: %s: cannot move to failed/: %s", id, strerror(-rc));
	else
		dkp_warn("relay: %s: failed: %s", id, why->p);
	return rc;
}

/* The 4xx recipients: back to OUT/defer with the next attempt's time,
 * or to FAILED/ when the schedule is spent. The file holds exactly them
 * afterwards (rewritten when others are done). */
static int defer_temp(struct dkp_relay_worker *w, const char *name, const char *id,
		      struct dkp_rq_state *st, const struct dkp_relay_env *e,
		      const struct dkp_smtp_result *res, size_t ntemp,
		      unsigned char *keep, struct dkp_buf *why)
{
	int64_t now = (int64_t)time(NULL);
	int rc = 0;

	st->attempts++;
	if (st->first == 0)
		st->first = now;
	if (ntemp != e->nrcpt) {
		subset(w, e, res, 4, keep);
		rc = dkp_rq_rewrite(w->q, name, w->tmp.p, w->tmp.len);
	}
	dkp_relay_window_end(w);
	if (rc < 0)
		return dkp_error("relay: %s: cannot rewrite: %s", id, strerror(-rc)), rc;
	if (st->attempts >= w->cf->max_attempts || now - st->first >= w->cf->max_age) {
		char pre[96];

		snprintf(pre, sizeof(pre), "gave up after %u attempts in %llds: ", st->attempts,
			 (long long)(now - st->first));
		dkp_relay_reasons(why, e, res, 4, pre);
		if ((rc = dkp_rq_fail(w->q, name, id, NULL, 0, why->p)) == 0)
			w->failed++;
		return rc;
	}
	st->next = now + dkp_relay_retry_delay(&w->cf->sched, st->attempts);
	if ((rc = dkp_rq_defer(w->q, name, id, st)) < 0)
		dkp_error("relay: %s: cannot defer: %s", id, strerror(-rc));
	else
		w->deferred++;
	dkp_relay_reasons(why, e, res, 4, "");
	dkp_info("relay: %s: deferred (attempt %u): %s", id, st->attempts, why->p);
	return rc;
}

/* Record the outcome of res for the file area/name. */
static void outcome(struct dkp_relay_worker *w, const char *name, const char *id,
		    struct dkp_rq_state *st, const struct dkp_relay_env *e,
		    const struct dkp_smtp_result *res)
{
	unsigned char *keep = dkp_calloc(e->nrcpt ? e->nrcpt : 1, 1);
	struct dkp_buf why;
	size_t cnt[6];
	int rc = 0;

	dkp_buf_init(&why);
	dkp_relay_classify(res, cnt);
	if (cnt[2] == 0)
		w->t_final = 0;	/* no 2xx: no window to measure */
	if (cnt[5] && (rc = fail_perm(w, name, id, e, res, cnt[5], keep, &why)) == 0 &&
	    cnt[5] == e->nrcpt)
		w->failed++;
	if (rc == 0 && cnt[4])
		rc = defer_temp(w, name, id, st, e, res, cnt[4], keep, &why);
	else if (rc == 0 && cnt[5] != e->nrcpt) {
		if ((rc = dkp_rq_done(w->q, name)) < 0)
			dkp_error("relay: %s: delivered, but cannot delete it: %s", id,
				  strerror(-rc));
		dkp_relay_window_end(w);
		if (cnt[5] == 0)
			w->delivered++;
	}
	if (cnt[2] && cnt[2] != e->nrcpt)
		w->partial++;
	dkp_buf_free(&why);
	dkp_free(keep);
}

int dkp_relay_one(struct dkp_relay_worker *w, int from_defer, const char *name)
{
	char id[DKP_RQ_NAME_MAX];
	struct dkp_rq_state st;
	struct dkp_relay_env e;
	struct dkp_smtp_result res = { 0, NULL };
	struct dkp_err err;
	int rc;

	if (dkp_rq_name_parse(name, id, &st) < 0)
		return 0;	/* not ours to touch */
	if ((rc = dkp_rq_claim(w->q, from_defer, name)) < 0) {
		if (rc != -ENOENT && rc != -EEXIST)
			dkp_error("relay: %s: cannot take it: %s", name, strerror(-rc));
		return 0;
	}
	w->file.len = 0;
	if ((rc = dkp_rq_read(w->q, name, &w->file)) < 0) {
		dkp_error("relay: %s: cannot read: %s; it stays for the next start", id,
			  strerror(-rc));
		return 1;
	}
	dkp_err_clear(&err);
	if (dkp_relay_env_parse(w->file.p, w->file.len, &e, &err) != DKP_OK) {
		if ((rc = dkp_rq_fail(w->q, name, id, NULL, 0, err.msg)) == 0)
			w->failed++;
		dkp_warn("relay: %s: failed: %s", id, err.msg);
		return 1;
	}
	w->t_final = 0;
	dkp_smtp_deliver(&w->s, &e, &res);
	outcome(w, name, id, &st, &e, &res);
	dkp_smtp_result_free(&res);
	dkp_relay_env_free(&e);
	return 1;
}
