/* job.c — sign a batch (no I/O); see job.h. */
#include "engine/job.h"

#include <stdio.h>
#include <string.h>
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
	for (i = 0; i < cap; i++) {
		dkp_msg_init(&j->msg[i]);
		dkp_buf_init(&j->sigs[i]);
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
	}
	dkp_free(j->msg);
	dkp_free(j->sigs);
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

/* DMARC alignment of the signatures m will carry (conf/align.h): recorded
 * in m for the counters; a customer signature that does not align (and
 * no other that does) defers or fails m as `unaligned` says. 0, or -1
 * when m was rejected. */
static int align_gate(const struct dkp_snap *s, struct dkp_tmsg *m,
		      const char *from, const char *cdomain)
{
	const struct dkp_align_conf *ac = &s->cfg->align;
	const char *d[2] = { cdomain, s->cfg->esp_domain };
	char ef[256];

	if (dkp_align_norm(from, m->align_dom, sizeof(m->align_dom)) < 0)
		m->align_dom[0] = '\0';	/* counted under "_other" */
	m->align = dkp_align_message(s->psl, ac->mode, from, d, 2);
	if (m->align == DKP_ALIGN_YES || cdomain == NULL ||
	    ac->action == DKP_UNALIGNED_SIGN)
		return 0;
	dkp_sigfmt_escape(from, strlen(from), ef, sizeof(ef));
	dkp_err_set(&m->err, DKP_E_NOKEY, ac->action == DKP_UNALIGNED_DEFER, "align",
		    "no DMARC-aligned signature: From domain %.100s, customer d=%.100s (dmarc_alignment = %s, unaligned = %s)",
		    ef, cdomain, dkp_align_mode_name(ac->mode),
		    dkp_unaligned_name(ac->action));
	dkp_tmsg_reject(m, &m->err);
	return -1;
}

/* Route, then sign one message: the customer signature first (on top),
 * then the ESP's. */
static void sign_one(struct dkp_job *j, struct dkp_snap *s, struct dkp_tmsg *m,
		     struct dkp_msg *msg, struct dkp_buf *sigs, int64_t now)
{
	const struct dkp_config *c = s->cfg;
	struct dkp_sig_spec sp[2];
	struct dkp_key *ckey = NULL;
	const struct dkp_keyent *ke = NULL;
	struct dkp_envelope env;
	struct dkp_err *err = &m->err;
	char local[256], dom[256], edom[256], nokey[80], org[256];
	const char *cdomain = NULL;
	size_t n = 0, k;

	if (dkp_envelope_split(m->buf, m->len, &env, err) != DKP_OK) {
		err->temp = 0;
		dkp_tmsg_reject(m, err);
		return;
	}
	m->out[0].iov_base = m->buf;
	m->out[0].iov_len = env.len;
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
	dom[0] = edom[0] = nokey[0] = '\0';
	if (s->route && dkp_msg_from_address(msg, local, sizeof(local), dom,
					     sizeof(dom), err) == DKP_OK) {
		ke = dkp_snap_route(s, local, dom);
		dkp_sigfmt_escape(dom, strlen(dom), edom, sizeof(edom));
		if (ke && (cdomain = dkp_align_key_domain(s->psl, ke->domain, dom, org,
							  sizeof(org))) == NULL) {
			/* '%' signs as the From domain, "%org" as its
			 * organizational domain: none that is a domain name
			 * (RFC 6376 3.5 d=) means no customer key */
			snprintf(nokey, sizeof(nokey), "%s", strcmp(ke->domain, "%") == 0 ?
				 "; the From domain is not a valid d= (RFC 6376 3.5)" :
				 "; the From domain has no organizational domain (%org)");
			ke = NULL;
		}
		if (ke) {
			if (dkp_keycache_get(s->keys, ke->index, ke->path, &ckey,
					     err) != DKP_OK) {
				/* the operator must fix the key: keep the mail */
				char kwhy[sizeof(err->msg)];

				memcpy(kwhy, err->msg, sizeof(kwhy));
				dkp_err_set(err, DKP_E_KEY, 1, "key",
					    "customer key %.60s for d=%.100s: %.140s",
					    ke->name, cdomain, kwhy);
				dkp_tmsg_reject(m, err);
				return;
			}
		}
	} else if (s->route) {
		snprintf(dom, sizeof(dom), "(unusable From)");
		snprintf(edom, sizeof(edom), "%s", dom);
	}
	if (ckey == NULL && s->route) {
		if (c->missing_key == DKP_MISSING_DEFER) {
			dkp_err_set(err, DKP_E_NOKEY, 1, "route",
				    "no customer key for %.200s (missing_key = defer)%s",
				    edom, nokey);
			dkp_tmsg_reject(m, err);
			return;
		}
		if (c->missing_key == DKP_MISSING_FAIL) {
			dkp_err_set(err, DKP_E_NOKEY, 0, "route",
				    "no customer key for %.200s (missing_key = fail)%s",
				    edom, nokey);
			dkp_tmsg_reject(m, err);
			return;
		}
	}
	if (s->route && align_gate(s, m, dom, ckey ? cdomain : NULL) < 0) {
		dkp_key_unref(ckey);
		return;
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
	dkp_buf_reset(sigs);
	if (dkp_sign(j->signer, msg, sp, n, sigs, err) != DKP_OK) {
		char swhy[sizeof(err->msg)];
		/* what the message itself causes fails the same way again
		 * (a signed result over the limits); the rest may pass */
		int temp = !(err->code == DKP_E_LIMIT || err->code == DKP_E_SYNTAX ||
			     err->code == DKP_E_FROM || err->code == DKP_E_BADSIG);

		if (err->code == DKP_E_BADSIG)
			dkp_error("SELF-VERIFICATION FAILED for message %s: %s; moved to failed/, not published",
				  m->id, err->msg);
		memcpy(swhy, err->msg, sizeof(swhy));
		dkp_err_set(err, err->code, temp, "sign", "signing failed: %.280s", swhy);
		dkp_tmsg_reject(m, err);
	} else {
		m->out[1].iov_base = sigs->p;
		m->out[1].iov_len = sigs->len;
		m->out[2].iov_base = (void *)msg->data;
		m->out[2].iov_len = msg->len;
		m->nout = 3;
		m->outcome = ckey ? DKP_OUT_SIGNED : DKP_OUT_ESP_ONLY;
		if (m->outcome == DKP_OUT_ESP_ONLY && s->route && j->esp_only)
			j->esp_only(j->esp_only_ctx, edom, m->id);	/* logged */
	}
	dkp_key_unref(ckey);
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
	}
}

/* dkp_sign_flush could not make a queued signature of message tag. */
static void batch_fail(void *ctx, size_t tag, const struct dkp_err *e)
{
	struct dkp_tmsg *m = (struct dkp_tmsg *)ctx + tag;
	struct dkp_err err = *e;

	dkp_error("SELF-VERIFICATION FAILED for message %s: %s; moved to failed/, not published",
		  m->id, e->msg);
	err.temp = 0;
	m->nout = 0;
	dkp_tmsg_reject(m, &err);
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
	/* RSA-2048 signatures of the whole batch (both of every message)
	 * wait here and are made eight at a time (dkp_sign_flush) */
	for (i = 0; i < n && i < j->cap; i++)
		m[i].align = DKP_ALIGN_UNCHECKED;
	for (i = 0; i < n && i < j->cap; i++)
		if (m[i].outcome < 0) {
			dkp_signer_set_batch(j->signer, 1, i);
			sign_one(j, s, &m[i], &j->msg[i], &j->sigs[i], now);
		}
	dkp_sign_flush(j->signer, batch_fail, m);
	dkp_signer_set_batch(j->signer, 0, 0);
}
