/* job.c — sign a batch (no I/O); see job.h. */
#include "engine/job.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "conf/align.h"
#include "dkim/sign.h"
#include "dkim/envelope.h"
#include "dkim/sigfmt.h"

struct dkp_job {
	size_t cap;
	struct dkp_signer *signer;
	struct dkp_msg *msg;
	struct dkp_buf *sigs;
	struct dkp_buf *strip;		/* esp_stream = header: the copy
					 * without the stream field */
	dkp_job_esp_only_fn *esp_only;
	void *esp_only_ctx;
	int nosign;
};

struct dkp_job *dkp_job_new(size_t cap)
{
	struct dkp_job *j = dkp_calloc(1, sizeof(*j));
	size_t i;

	j->cap = cap;
	j->signer = dkp_signer_new();
	j->msg = dkp_calloc(cap, sizeof(*j->msg));
	j->sigs = dkp_calloc(cap, sizeof(*j->sigs));
	j->strip = dkp_calloc(cap, sizeof(*j->strip));
	for (i = 0; i < cap; i++) {
		dkp_msg_init(&j->msg[i]);
		dkp_buf_init(&j->sigs[i]);
		dkp_buf_init(&j->strip[i]);
	}
	return j;
}

void dkp_job_free(struct dkp_job *j)
{
	size_t i;

	if (j == NULL)
		return;
	for (i = 0; i < j->cap; i++) {
		dkp_msg_fini(&j->msg[i]);
		dkp_buf_free(&j->sigs[i]);
		dkp_buf_free(&j->strip[i]);
	}
	dkp_free(j->msg);
	dkp_free(j->sigs);
	dkp_free(j->strip);
	dkp_signer_free(j->signer);
	dkp_free(j);
}

void dkp_job_set_hook(struct dkp_job *j, dkp_job_esp_only_fn *fn, void *ctx)
{
	j->esp_only = fn;
	j->esp_only_ctx = ctx;
}

void dkp_job_set_nosign(struct dkp_job *j, int nosign)
{
	j->nosign = nosign;
}

/* Most signatures on one message: the customer's, then the ESP's. */
#define JOB_MAX_SIGS (DKP_ROUTE_MAX_KEYS + DKP_MAX_ESP_KEYS)

/* The signatures one message gets, and the references they hold. */
struct plan {
	struct dkp_sig_spec sp[JOB_MAX_SIGS];
	const struct dkp_keypol *pol[JOB_MAX_SIGS];
	char ids[JOB_MAX_SIGS][320];	/* i= values */
	char orgs[DKP_ROUTE_MAX_KEYS][256];	/* "%org" d= values */
	struct dkp_key *ckey[DKP_ROUTE_MAX_KEYS];	/* references */
	size_t n, ncust;
};

static void plan_release(struct plan *p)
{
	size_t i;

	for (i = 0; i < p->ncust; i++)
		dkp_key_unref(p->ckey[i]);
	p->ncust = 0;
}

/* The settings of signature i: the engine-wide ones, then its key's
 * key_policy line. */
static void plan_settings(struct plan *p, size_t i, const struct dkp_config *c,
			  int64_t now)
{
	struct dkp_sig_spec *sp = &p->sp[i];
	const struct dkp_keypol *kp = p->pol[i];
	int64_t expire = kp && kp->set_expire ? kp->expire : c->expire;

	sp->hcanon = kp && kp->set_canon ? kp->hcanon : c->hcanon;
	sp->bcanon = kp && kp->set_canon ? kp->bcanon : c->bcanon;
	if (kp && kp->set_headers) {
		sp->headers = kp->nheaders ? kp->headers : NULL;
		sp->nheaders = kp->nheaders;
	} else {
		sp->headers = c->nheaders ? c->headers : NULL;
		sp->nheaders = c->nheaders;
	}
	sp->t = now;
	sp->x = expire ? now + expire : 0;
	sp->identity = dkp_policy_identity(kp, sp->domain, p->ids[i],
					   sizeof(p->ids[i]));
}

/* The customer keys for msg's From address into p (none is fine here;
 * missing_key decides); -1 when m was rejected. */
static int plan_customer(struct dkp_snap *s, struct dkp_tmsg *m,
			 const struct dkp_msg *msg, struct plan *p, char *dom,
			 char *edom, char *nokey)
{
	const struct dkp_keyent *ke[DKP_ROUTE_MAX_KEYS];
	struct dkp_err *err = &m->err;
	char local[256];
	size_t n, i;

	if (dkp_msg_from_address(msg, local, sizeof(local), dom, 256, err) != DKP_OK) {
		snprintf(dom, 256, "(unusable From)");
		snprintf(edom, 256, "%s", dom);
		return 0;
	}
	n = dkp_snap_route_all(s, local, dom, ke, DKP_ROUTE_MAX_KEYS);
	dkp_sigfmt_escape(dom, strlen(dom), edom, 256);
	for (i = 0; i < n; i++) {
		const char *cdomain = dkp_align_key_domain(s->psl, ke[i]->domain, dom,
							   p->orgs[p->ncust],
							   sizeof(p->orgs[p->ncust]));

		if (cdomain == NULL) {
			/* '%' signs as the From domain, "%org" as its
			 * organizational domain: none that is a domain name
			 * (RFC 6376 3.5 d=) means no customer key */
			snprintf(nokey, 80, "%s", strcmp(ke[i]->domain, "%") == 0 ?
				 "; the From domain is not a valid d= (RFC 6376 3.5)" :
				 "; the From domain has no organizational domain (%org)");
			continue;
		}
		if (dkp_keycache_get(s->keys, ke[i]->index, ke[i]->path,
				     &p->ckey[p->ncust], err) != DKP_OK) {
			/* the operator must fix the key: keep the mail */
			char kwhy[sizeof(err->msg)];

			memcpy(kwhy, err->msg, sizeof(kwhy));
			dkp_err_set(err, DKP_E_KEY, 1, "key",
				    "customer key %.60s for d=%.100s: %.140s",
				    ke[i]->name, cdomain, kwhy);
			dkp_tmsg_reject(m, err);
			return -1;
		}
		p->sp[p->n].domain = cdomain;
		p->sp[p->n].selector = ke[i]->selector;
		p->sp[p->n].key = p->ckey[p->ncust++];
		p->pol[p->n++] = s->kpol ? s->kpol[ke[i]->index] : NULL;
	}
	return 0;
}

/* The field named name in msg (the top one), or -1. */
static long find_field(const struct dkp_msg *msg, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < msg->nfields; i++)
		if (msg->fields[i].name_len == n &&
		    strncasecmp(dkp_msg_field_name(msg, i), name, n) == 0)
			return (long)i;
	return -1;
}

/*
 * esp_stream = header:NAME: the value of msg's NAME field chooses the ESP
 * keys, and every NAME field is removed (copied into strip without them
 * and parsed again) before signing, so it never leaves. -1: m rejected.
 */
static int stream_header(struct dkp_snap *s, struct dkp_tmsg *m,
			 struct dkp_msg *msg, struct dkp_buf *strip,
			 const struct dkp_espset **esp)
{
	const char *name = s->cfg->esp_stream_header;
	const struct dkp_field *f;
	char value[256];
	size_t i, vlen, from = 0;
	long idx = find_field(msg, name);

	if (idx < 0)
		return 0;
	f = &msg->fields[idx];
	vlen = f->len - f->colon - 1;
	if (vlen < sizeof(value)) {	/* a longer one matches no line */
		memcpy(value, msg->data + f->off + f->colon + 1, vlen);
		*esp = dkp_snap_esp_for(s, value, vlen);
	}
	dkp_buf_reset(strip);
	for (i = 0; i < msg->nfields; i++) {
		f = &msg->fields[i];
		if (f->name_len == strlen(name) &&
		    strncasecmp(dkp_msg_field_name(msg, i), name, f->name_len) == 0) {
			dkp_buf_add(strip, msg->data + from, f->off - from);
			from = f->off + f->len;
		}
	}
	dkp_buf_add(strip, msg->data + from, msg->len - from);
	if (dkp_msg_parse(msg, strip->p, strip->len, &s->cfg->limits, &m->err) != DKP_OK) {
		/* only the From-less or field-less is left: permanent */
		m->err.temp = 0;
		dkp_tmsg_reject(m, &m->err);
		return -1;
	}
	return 0;
}

/* Which ESP keys sign (esp_stream); -1: m rejected. */
static int plan_esp(struct dkp_snap *s, struct dkp_tmsg *m, struct dkp_msg *msg,
		    const struct dkp_envelope *env, struct dkp_buf *strip,
		    const struct dkp_espset **esp)
{
	*esp = &s->esp;
	if (s->cfg->esp_stream == DKP_STREAM_SENDER && env->sender.len) {
		const char *at = memchr(env->sender.p, '@', env->sender.len);

		if (at)
			*esp = dkp_snap_esp_for(s, at + 1, (size_t)(env->sender.p +
						env->sender.len - at - 1));
	} else if (s->cfg->esp_stream == DKP_STREAM_HEADER) {
		return stream_header(s, m, msg, strip, esp);
	}
	return 0;
}

/* Reject m because its signing failed (err): what the message itself
 * causes fails the same way again (a signed result over the limits), and
 * a signature that failed its check is never retried; the rest (a crypto
 * library error) may pass later. */
static void sign_failed(struct dkp_tmsg *m, struct dkp_err *err)
{
	char swhy[sizeof(err->msg)];
	int temp = !(err->code == DKP_E_LIMIT || err->code == DKP_E_SYNTAX ||
		     err->code == DKP_E_FROM || err->code == DKP_E_BADSIG);

	if (err->code == DKP_E_BADSIG)
		dkp_error("SELF-VERIFICATION FAILED for message %s: %s; moved to failed/, not published",
			  m->id, err->msg);
	memcpy(swhy, err->msg, sizeof(swhy));
	dkp_err_set(err, err->code, temp, "sign", "signing failed: %.280s", swhy);
	dkp_tmsg_reject(m, err);
}

/* missing_key: what a message without a customer key becomes; -1:
 * rejected. */
static int no_customer_key(const struct dkp_config *c, struct dkp_tmsg *m,
			   const char *edom, const char *nokey)
{
	if (c->missing_key == DKP_MISSING_DEFER) {
		dkp_err_set(&m->err, DKP_E_NOKEY, 1, "route",
			    "no customer key for %.200s (missing_key = defer)%s",
			    edom, nokey);
		dkp_tmsg_reject(m, &m->err);
		return -1;
	}
	if (c->missing_key == DKP_MISSING_FAIL) {
		dkp_err_set(&m->err, DKP_E_NOKEY, 0, "route",
			    "no customer key for %.200s (missing_key = fail)%s",
			    edom, nokey);
		dkp_tmsg_reject(m, &m->err);
		return -1;
	}
	return 0;
}

/* What m will carry, for the counters (engine/stats.h): its signatures
 * per algorithm and the topmost d=, lowercased. */
static void count_sigs(struct dkp_tmsg *m, const struct plan *p)
{
	const char *d = p->n ? p->sp[0].domain : "";
	size_t k;

	m->nsig[0] = m->nsig[1] = 0;
	for (k = 0; k < p->n; k++)
		m->nsig[dkp_key_alg(p->sp[k].key) == DKP_ALG_ED25519_SHA256]++;
	for (k = 0; d[k] && k + 1 < sizeof(m->sig_dom); k++)
		m->sig_dom[k] = d[k] >= 'A' && d[k] <= 'Z' ? (char)(d[k] - 'A' + 'a') : d[k];
	m->sig_dom[k] = '\0';
}

static void signed_or_rejected(struct dkp_job *j, struct dkp_snap *s,
			       struct dkp_tmsg *m, const struct dkp_msg *msg,
			       struct dkp_buf *sigs, const struct plan *p,
			       const char *edom)
{
	struct dkp_err *err = &m->err;

	if (dkp_sign(j->signer, msg, p->sp, p->n, sigs, err) != DKP_OK) {
		sign_failed(m, err);
		return;
	}
	count_sigs(m, p);
	m->out[1].iov_base = sigs->p;
	m->out[1].iov_len = sigs->len;
	m->out[2].iov_base = (void *)msg->data;
	m->out[2].iov_len = msg->len;
	m->nout = 3;
	m->outcome = p->ncust ? DKP_OUT_SIGNED : DKP_OUT_ESP_ONLY;
	if (m->outcome == DKP_OUT_ESP_ONLY && s->route && j->esp_only)
		j->esp_only(j->esp_only_ctx, edom, m->id);	/* logged */
}

/* DMARC alignment of the signatures m will carry (conf/align.h): recorded
 * in m for the counters; when customer signatures are planned and none of
 * the message's signatures aligns, `unaligned` may defer or fail m. 0, or
 * -1 when m was rejected. */
static int align_gate(const struct dkp_snap *s, struct dkp_tmsg *m,
		      const char *from, const struct plan *p)
{
	const struct dkp_align_conf *ac = &s->cfg->align;
	const char *d[JOB_MAX_SIGS];
	char ef[256];
	size_t k;

	for (k = 0; k < p->n; k++)
		d[k] = p->sp[k].domain;
	if (dkp_align_norm(from, m->align_dom, sizeof(m->align_dom)) < 0)
		m->align_dom[0] = '\0';	/* counted under "_other" */
	m->align = dkp_align_message(s->psl, ac->mode, from, d, p->n);
	if (m->align == DKP_ALIGN_YES || p->ncust == 0 || ac->action == DKP_UNALIGNED_SIGN)
		return 0;
	dkp_sigfmt_escape(from, strlen(from), ef, sizeof(ef));
	dkp_err_set(&m->err, DKP_E_NOKEY, ac->action == DKP_UNALIGNED_DEFER, "align",
		    "no DMARC-aligned signature: From domain %.100s, customer d=%.100s (dmarc_alignment = %s, unaligned = %s)",
		    ef, p->sp[0].domain, dkp_align_mode_name(ac->mode),
		    dkp_unaligned_name(ac->action));
	dkp_tmsg_reject(m, &m->err);
	return -1;
}

/* Route, then sign one message: the customer signatures first (on top),
 * then the ESP's. */
static void sign_one(struct dkp_job *j, struct dkp_snap *s, struct dkp_tmsg *m,
		     struct dkp_msg *msg, struct dkp_buf *sigs,
		     struct dkp_buf *strip, int64_t now)
{
	const struct dkp_config *c = s->cfg;
	const struct dkp_espset *esp;
	struct dkp_envelope env;
	struct dkp_err *err = &m->err;
	struct plan p;
	char dom[256], edom[256], nokey[80];
	size_t k;

	if (dkp_envelope_split(m->buf, m->len, &env, err) != DKP_OK) {
		err->temp = 0;
		dkp_tmsg_reject(m, err);
		return;
	}
	m->out[0].iov_base = m->buf;
	m->out[0].iov_len = env.len;
	m->nsig[0] = m->nsig[1] = 0;
	m->sig_dom[0] = '\0';
	if (j->nosign) {
		m->out[1].iov_base = NULL;
		m->out[1].iov_len = 0;
		m->out[2].iov_base = m->buf + env.len;
		m->out[2].iov_len = m->len - env.len;
		m->nout = 3;
		m->outcome = DKP_OUT_SIGNED;
		return;
	}
	if (dkp_msg_parse(msg, m->buf + env.len, m->len - env.len, &c->limits,
			  err) != DKP_OK) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		/* permanent: the same bytes fail the same way again */
		dkp_err_set(err, err->code, 0, "parse", "malformed message: %.280s", why);
		dkp_tmsg_reject(m, err);
		return;
	}
	if (plan_esp(s, m, msg, &env, strip, &esp) < 0)
		return;
	dom[0] = edom[0] = nokey[0] = '\0';
	p.n = p.ncust = 0;
	if (s->route && plan_customer(s, m, msg, &p, dom, edom, nokey) < 0)
		goto out;
	if (p.ncust == 0 && s->route && no_customer_key(c, m, edom, nokey) < 0)
		goto out;
	for (k = 0; k < esp->n; k++) {
		p.sp[p.n].domain = esp->k[k].spec->domain;
		p.sp[p.n].selector = esp->k[k].spec->selector;
		p.sp[p.n].key = esp->k[k].key;
		p.pol[p.n++] = esp->k[k].pol;
	}
	if (s->route && align_gate(s, m, dom, &p) < 0)
		goto out;
	for (k = 0; k < p.n; k++)
		plan_settings(&p, k, c, now);
	dkp_buf_reset(sigs);
	signed_or_rejected(j, s, m, msg, sigs, &p, edom);
out:
	plan_release(&p);
}

void dkp_job_trim(struct dkp_job *j, size_t keep)
{
	size_t i;

	for (i = 0; i < j->cap; i++) {
		if (j->msg[i].own_cap > keep || j->msg[i].fields_cap > keep / 16) {
			dkp_msg_fini(&j->msg[i]);
			dkp_msg_init(&j->msg[i]);
		}
		if (j->sigs[i].cap > keep) {
			dkp_buf_free(&j->sigs[i]);
			dkp_buf_init(&j->sigs[i]);
		}
		if (j->strip[i].cap > keep) {
			dkp_buf_free(&j->strip[i]);
			dkp_buf_init(&j->strip[i]);
		}
	}
}

/* dkp_sign_flush could not make a queued signature of message tag: the
 * message is not released, as when dkp_sign itself fails. */
static void batch_fail(void *ctx, size_t tag, const struct dkp_err *e)
{
	struct dkp_tmsg *m = (struct dkp_tmsg *)ctx + tag;
	struct dkp_err err = *e;

	m->nout = 0;
	sign_failed(m, &err);
}

void dkp_job_sign(struct dkp_job *j, struct dkp_snap *s, struct dkp_tmsg *m,
		  size_t n)
{
	int64_t now = (int64_t)time(NULL);
	struct dkp_err err;
	size_t i;

	dkp_signer_set_verify(j->signer, s->cfg->self_verify,
			      s->cfg->self_verify_rsa_only);
	if (dkp_signer_set_backend(j->signer, s->cfg->rsa_backend, &err) != DKP_OK)
		dkp_signer_set_backend(j->signer, DKP_RSA_OPENSSL, &err);
	/* the batch's RSA-2048 signatures (all of every message) wait here
	 * and are made eight at a time, its Ed25519 ones in a run after
	 * them (dkp_sign_flush) */
	for (i = 0; i < n && i < j->cap; i++)
		m[i].align = DKP_ALIGN_UNCHECKED;
	for (i = 0; i < n && i < j->cap; i++)
		if (m[i].outcome < 0) {
			dkp_signer_set_batch(j->signer, 1, i);
			sign_one(j, s, &m[i], &j->msg[i], &j->sigs[i],
				 &j->strip[i], now);
		}
	dkp_sign_flush(j->signer, batch_fail, m);
	dkp_signer_set_batch(j->signer, 0, 0);
}
