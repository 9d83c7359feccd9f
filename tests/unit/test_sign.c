/* test_sign.c — DKIM signatures: RFC 8463 vectors, h= choice, order,
 * shared body hash, folding, round trips through our verifier. */
#include "unit.h"

#include <openssl/evp.h>

#include "dkim/canon.h"
#include "base/err.h"
#include "dkim/msg_parse.h"
#include "dkim/sigfmt.h"
#include "dkim/keystore.h"
#include "dkim/sign.h"

static struct dkp_key *rsa_key, *ed_key;

static int make_keys(void **st)
{
	struct dkp_buf pem, rec;
	struct dkp_err err;

	(void)st;
	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	if (dkp_keygen(DKP_ALG_RSA_SHA256, 2048, &pem, &rec, &err) ||
	    dkp_key_from_pem(&rsa_key, pem.p, pem.len, "rsa", &err))
		return -1;
	dkp_buf_reset(&pem);
	if (dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err) ||
	    dkp_key_from_pem(&ed_key, pem.p, pem.len, "ed", &err))
		return -1;
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
	return 0;
}

static int free_keys(void **st)
{
	(void)st;
	dkp_key_unref(rsa_key);
	dkp_key_unref(ed_key);
	return 0;
}

/* The value of tag name in the DKIM-Signature field starting at p, with
 * all FWS removed, into out. */
static void tag_value(const char *field, size_t len, const char *name,
		      char *out, size_t outsz)
{
	struct dkp_taglist tl;
	struct dkp_err err;
	const struct dkp_tag *t;
	const char *v = strchr(field, ':') + 1;
	size_t i, o = 0;

	assert_int_equal(dkp_taglist_parse(v, len - (size_t)(v - field), &tl, &err), DKP_OK);
	t = dkp_taglist_get(&tl, name);
	if (t == NULL) {
		out[0] = '\0';
		return;
	}
	for (i = 0; i < t->vlen && o + 1 < outsz; i++)
		if (!strchr(" \t\r\n", v[t->voff + i]))
			out[o++] = v[t->voff + i];
	out[o] = '\0';
}

static void sign_into(const char *msg, const struct dkp_sig_spec *specs,
		      size_t n, struct dkp_buf *out)
{
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_msg m;
	struct dkp_err err;

	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, msg, strlen(msg), NULL, &err), DKP_OK);
	if (dkp_sign(s, &m, specs, n, out, &err) != DKP_OK)
		fail_msg("dkp_sign: %s", err.msg);
	dkp_msg_fini(&m);
	dkp_signer_free(s);
}

static struct dkp_sig_spec spec(const char *d, struct dkp_key *k,
				enum dkp_canon hc, enum dkp_canon bc)
{
	struct dkp_sig_spec sp;

	memset(&sp, 0, sizeof(sp));
	sp.domain = d;
	sp.selector = "sel";
	sp.key = k;
	sp.hcanon = hc;
	sp.bcanon = bc;
	sp.t = 1700000000;
	return sp;
}

/*
 * RFC 8463 Appendix A: the published message, keys and signatures. For
 * each signature, sign the published field (b= emptied) over the unsigned
 * message with the published key: both algorithms are deterministic, so
 * b= must come out identical; bh= must match our body hash too.
 */
static void rfc8463_signatures_reproduced(void **st)
{
	size_t slen, mlen, i;
	char *signed_txt = unit_slurp(DATA_DIR "/rfc8463/signed.eml", &slen);
	char *msg_txt = unit_slurp(DATA_DIR "/rfc8463/message.eml", &mlen);
	static const char *keyfile[2] = { DATA_DIR "/rfc8463/ed25519.pem",
					  DATA_DIR "/rfc8463/rsa.pem" };
	struct dkp_msg sm, m;
	struct dkp_err err;
	struct dkp_signer *s = dkp_signer_new();
	int seen = 0;

	(void)st;
	dkp_msg_init(&sm);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&sm, signed_txt, slen, NULL, &err), DKP_OK);
	assert_int_equal(dkp_msg_parse(&m, msg_txt, mlen, NULL, &err), DKP_OK);
	for (i = 0; i < sm.nfields; i++) {
		const struct dkp_field *f = &sm.fields[i];
		const char *fp = sm.data + f->off;
		char a[32], b[1024], bh[64], h[512], c[40], *tok, *save = NULL;
		const char *names[32];
		size_t lens[32], nn = 0, k, flen = f->len;
		struct dkp_key *key;
		struct dkp_buf field, got;
		enum dkp_canon hc, bc;
		unsigned char dig[32];
		char bh_got[48];
		unsigned int dl;
		EVP_MD_CTX *md;
		static struct dkp_hsink sink;

		if (!dkp_msg_field_is(&sm, i, "DKIM-Signature", 14))
			continue;
		tag_value(fp, flen, "a", a, sizeof(a));
		tag_value(fp, flen, "b", b, sizeof(b));
		tag_value(fp, flen, "bh", bh, sizeof(bh));
		tag_value(fp, flen, "h", h, sizeof(h));
		tag_value(fp, flen, "c", c, sizeof(c));
		assert_int_equal(dkp_canon_parse(c, &hc, &bc), DKP_OK);
		k = strcmp(a, "ed25519-sha256") == 0 ? 0 : 1;
		/* read, not dkp_key_load: a git checkout does not keep the
		 * fixture's 0600 (the permission check is test_keystore's) */
		{
			size_t plen;
			char *pem = unit_slurp(keyfile[k], &plen);

			if (dkp_key_from_pem(&key, pem, plen, keyfile[k], &err) != DKP_OK)
				fail_msg("%s", err.msg);
			free(pem);
		}
		for (tok = strtok_r(h, ":", &save); tok && nn < 32;
		     tok = strtok_r(NULL, ":", &save)) {
			names[nn] = tok;
			lens[nn++] = strlen(tok);
		}
		/* the published field with the b= value removed */
		dkp_buf_init(&field);
		{
			const char *bpos = strstr(fp, " b=") ? strstr(fp, " b=") + 3
							     : strstr(fp, "\tb=") + 3;
			dkp_buf_add(&field, fp, (size_t)(bpos - fp));
		}
		dkp_buf_init(&got);
		if (dkp_sign_rendered(s, &m, key, hc, names, lens, nn, field.p,
				      field.len, &got, &err) != DKP_OK)
			fail_msg("%s", err.msg);
		if (strcmp(got.p, b) != 0)
			fail_msg("%s: b= differs\n  got  %s\n  want %s", a, got.p, b);
		/* and the body hash */
		md = EVP_MD_CTX_new();
		EVP_DigestInit_ex2(md, EVP_sha256(), NULL);
		dkp_hsink_init(&sink, md, UINT64_MAX);
		dkp_canon_body(bc, m.data + m.body_off, m.len - m.body_off, &sink);
		EVP_DigestFinal_ex(md, dig, &dl);
		EVP_EncodeBlock((unsigned char *)bh_got, dig, 32);
		assert_string_equal(bh_got, bh);
		EVP_MD_CTX_free(md);
		dkp_buf_free(&field);
		dkp_buf_free(&got);
		dkp_key_unref(key);
		seen++;
	}
	assert_int_equal(seen, 2);
	dkp_signer_free(s);
	dkp_msg_fini(&sm);
	dkp_msg_fini(&m);
	free(signed_txt);
	free(msg_txt);
}

static const char esp_msg[] =
	"Return-Path: <bounce@esp.example>\r\n"
	"Received: from a by b; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; d=older.example; s=x; h=from; bh=; b=\r\n"
	"From: Shop <news@shop.example>\r\n"
	"To: a@x.example\r\n"
	"To: b@y.example\r\n"
	"Subject: Sale\r\n"
	"X-Mailer: test\r\n"
	"List-Unsubscribe: <mailto:u@shop.example>\r\n"
	"Feedback-ID: 1:2:3:esp\r\n"
	"\r\n"
	"Body  text \r\n\r\n";

static void default_list_oversigns_present_fields_only(void **st)
{
	struct dkp_sig_spec sp = spec("shop.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	struct dkp_buf out;
	char h[512];

	(void)st;
	dkp_buf_init(&out);
	sign_into(esp_msg, &sp, 1, &out);
	tag_value(out.p, out.len, "h", h, sizeof(h));
	assert_string_equal(h, "From:From:Subject:Subject:To:To:To:"
			       "List-Unsubscribe:List-Unsubscribe:"
			       "Feedback-ID:Feedback-ID");
	dkp_buf_free(&out);
}

static void custom_header_list_is_used_verbatim(void **st)
{
	static const char *const h3[] = { "from", "subject", "x-mailer", "date" };
	static const char *const nofrom[] = { "subject" };
	static const char *const withsig[] = { "from", "dkim-signature" };
	struct dkp_sig_spec sp = spec("shop.example", ed_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_buf out;
	struct dkp_msg m;
	struct dkp_err err;
	char h[256];

	(void)st;
	dkp_buf_init(&out);
	sp.headers = h3;
	sp.nheaders = 4;
	sign_into(esp_msg, &sp, 1, &out);
	tag_value(out.p, out.len, "h", h, sizeof(h));
	assert_string_equal(h, "from:subject:x-mailer:date");

	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
	sp.headers = nofrom;
	sp.nheaders = 1;
	assert_int_equal(dkp_sign(s, &m, &sp, 1, &out, &err), DKP_E_USAGE);
	assert_non_null(strstr(err.msg, "From"));
	sp.headers = withsig;
	sp.nheaders = 2;
	assert_int_equal(dkp_sign(s, &m, &sp, 1, &out, &err), DKP_E_USAGE);
	dkp_msg_fini(&m);
	dkp_signer_free(s);
	dkp_buf_free(&out);
}

static void signatures_keep_order_and_share_the_body_hash(void **st)
{
	struct dkp_sig_spec sp[3] = {
		spec("customer.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED),
		spec("esp.example", ed_key, DKP_CANON_SIMPLE, DKP_CANON_RELAXED),
		spec("third.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_SIMPLE),
	};
	struct dkp_buf out;
	struct dkp_msg m;
	struct dkp_err err;
	char d[3][64], bh[3][64], a[3][32];
	size_t i;

	(void)st;
	dkp_buf_init(&out);
	sign_into(esp_msg, sp, 3, &out);
	dkp_buf_adds(&out, esp_msg);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, out.p, out.len, NULL, &err), DKP_OK);
	for (i = 0; i < 3; i++) {
		const struct dkp_field *f = &m.fields[i];
		char tmp[2048];

		assert_true(dkp_msg_field_is(&m, i, "DKIM-Signature", 14));
		assert_true(f->len < sizeof(tmp));
		memcpy(tmp, m.data + f->off, f->len);
		tmp[f->len] = '\0';
		tag_value(tmp, f->len, "d", d[i], sizeof(d[i]));
		tag_value(tmp, f->len, "bh", bh[i], sizeof(bh[i]));
		tag_value(tmp, f->len, "a", a[i], sizeof(a[i]));
	}
	assert_string_equal(d[0], "customer.example");
	assert_string_equal(d[1], "esp.example");
	assert_string_equal(d[2], "third.example");
	assert_string_equal(a[0], "rsa-sha256");
	assert_string_equal(a[1], "ed25519-sha256");
	assert_string_equal(bh[0], bh[1]);	/* both relaxed bodies */
	assert_string_not_equal(bh[0], bh[2]);	/* "Body  text " differs */
	dkp_msg_fini(&m);
	dkp_buf_free(&out);
}

static void count_fail(void *ctx, size_t tag, const struct dkp_err *e)
{
	(void)e;
	assert_int_equal(tag, 7);
	(*(size_t *)ctx)++;
}

/* Sign esp_msg with specs through a signer (backend b), in batch mode
 * when batch is set, flushing at the end; returns the number of failures
 * reported. *pending: how many signatures waited for the flush. */
static size_t sign_batch(const struct dkp_sig_spec *specs, size_t n,
			 enum dkp_rsa_backend b, int batch, struct dkp_buf *out,
			 size_t *pending)
{
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_msg m;
	struct dkp_err err;
	size_t fails = 0;

	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
	assert_int_equal(dkp_signer_set_backend(s, b, &err), DKP_OK);
	dkp_signer_set_batch(s, batch, 7);
	if (dkp_sign(s, &m, specs, n, out, &err) != DKP_OK)
		fail_msg("dkp_sign: %s", err.msg);
	*pending = dkp_sign_pending(s);
	dkp_sign_flush(s, count_fail, &fails);
	assert_int_equal(dkp_sign_pending(s), 0);
	dkp_msg_fini(&m);
	dkp_signer_free(s);
	return fails;
}

/*
 * Batch mode: the RSA-2048 signatures wait (their b= a placeholder) for
 * the 8-lane path, and the Ed25519 ones wait too, to be made in a run
 * after them; both are written in past the folding. PKCS#1 v1.5 and
 * Ed25519 are deterministic, so the result must be byte-identical to
 * signing one by one outside batch mode, for 13 signatures (10 RSA: a full
 * group and a partial one; 3 Ed25519 between them). With the OpenSSL
 * backend only the Ed25519 ones wait. On a CPU without AVX-512 IFMA the
 * 8-lane rows are skipped.
 */
static void batch_mode_is_byte_identical(void **st)
{
	struct dkp_sig_spec sp[13];
	struct dkp_buf one, batch, ossl, aut;
	struct dkp_sign_counts c0, c1;
	size_t i, pend;

	(void)st;
	for (i = 0; i < 13; i++)
		sp[i] = spec(i % 2 ? "b.example" : "a.example",
			     i == 0 || i == 5 || i == 12 ? ed_key : rsa_key,
			     i % 3 ? DKP_CANON_RELAXED : DKP_CANON_SIMPLE,
			     i % 4 ? DKP_CANON_RELAXED : DKP_CANON_SIMPLE);
	dkp_buf_init(&one);
	dkp_buf_init(&batch);
	dkp_buf_init(&ossl);
	dkp_buf_init(&aut);
	assert_int_equal(sign_batch(sp, 13, DKP_RSA_OPENSSL, 0, &one, &pend), 0);
	assert_int_equal(pend, 0);
	assert_int_equal(sign_batch(sp, 13, DKP_RSA_OPENSSL, 1, &ossl, &pend), 0);
	assert_int_equal(pend, 3);	/* the Ed25519 ones */
	assert_bytes_equal(ossl.p, ossl.len, one.p, one.len);
	if (dkp_sign_ifma_available()) {
		dkp_sign_counts(&c0);
		assert_int_equal(sign_batch(sp, 13, DKP_RSA_IFMA, 1, &batch, &pend), 0);
		dkp_sign_counts(&c1);
		assert_int_equal(pend, 13);
		assert_bytes_equal(batch.p, batch.len, one.p, one.len);
		assert_int_equal(c1.lanes - c0.lanes, 10);	/* 10 RSA */
		assert_int_equal(c1.groups - c0.groups, 2);
		/* auto: 10 = 8 + 2, and a last group of 2 goes to OpenSSL */
		assert_int_equal(sign_batch(sp, 13, DKP_RSA_AUTO, 1, &aut, &pend), 0);
		dkp_sign_counts(&c0);
		assert_int_equal(c0.lanes - c1.lanes, 8);
		assert_bytes_equal(aut.p, aut.len, one.p, one.len);
	}
	dkp_buf_free(&one);
	dkp_buf_free(&batch);
	dkp_buf_free(&ossl);
	dkp_buf_free(&aut);
}

/* A retired key (the cache's bound, a reload, a rotation) is freed once
 * no one holds it, although this thread's prepared contexts had it: the
 * next signature lets go of them. */
static void retired_key_is_freed(void **st)
{
	struct dkp_buf pem, rec, out;
	struct dkp_key *a, *b;
	struct dkp_err err;
	struct dkp_signer *s = dkp_signer_new();
	unsigned char dig[32] = { 1 };
	size_t len;
	long live0 = dkp_key_live();

	(void)st;
	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	dkp_buf_init(&out);
	assert_int_equal(dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err), DKP_OK);
	assert_int_equal(dkp_key_from_pem(&a, pem.p, pem.len, "a", &err), DKP_OK);
	assert_int_equal(dkp_key_from_pem(&b, pem.p, pem.len, "b", &err), DKP_OK);
	assert_int_equal(dkp_key_live(), live0 + 2);
	assert_int_equal(dkp_sign_digest(s, a, dig, &len, &err), DKP_OK);
	dkp_key_retire(a);	/* the owner lets go; this thread's context holds it */
	assert_int_equal(dkp_key_live(), live0 + 2);
	assert_int_equal(dkp_sign_digest(s, b, dig, &len, &err), DKP_OK);
	assert_int_equal(dkp_key_live(), live0 + 1);	/* a: freed */
	dkp_key_unref(b);	/* not retired: the context keeps it */
	assert_int_equal(dkp_key_live(), live0 + 1);
	dkp_signer_free(s);
	assert_int_equal(dkp_key_live(), live0);
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
	dkp_buf_free(&out);
}

/* A dkp_sign that fails after queueing leaves nothing queued. */
static void failed_sign_leaves_nothing_queued(void **st)
{
	struct dkp_sig_spec sp[2] = {
		spec("a.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED),
		spec("not a domain", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED),
	};
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_buf out;
	struct dkp_msg m;
	struct dkp_err err;

	(void)st;
	dkp_buf_init(&out);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
	dkp_signer_set_backend(s, DKP_RSA_AUTO, &err);
	dkp_signer_set_batch(s, 1, 0);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_E_USAGE);
	assert_int_equal(dkp_sign_pending(s), 0);
	assert_int_equal(out.len, 0);
	dkp_msg_fini(&m);
	dkp_buf_free(&out);
	dkp_signer_free(s);
}

static int fetch_none(void *ctx, const char *q, struct dkp_buf *txt,
		      struct dkp_err *err)
{
	const char *const *recs = ctx;

	for (; recs[0]; recs += 2)
		if (strcmp(recs[0], q) == 0) {
			dkp_buf_reset(txt);
			dkp_buf_adds(txt, recs[1]);
			return DKP_OK;
		}
	return dkp_err_set(err, DKP_E_NOKEY, 0, "dns", "none");
}

/* Sign with every canonicalization pair and both key types; our own
 * verifier (the fourth opinion) passes them, and fails after edits. */
static void round_trip_and_tamper_detection(void **st)
{
	struct dkp_buf prsa, ped, out, edited;
	struct dkp_err err;
	const char *recs[5];
	int hc, bc;

	(void)st;
	dkp_buf_init(&prsa);
	dkp_buf_init(&ped);
	dkp_buf_adds(&prsa, "v=DKIM1; k=rsa; p=");
	dkp_buf_adds(&ped, "v=DKIM1; k=ed25519; p=");
	assert_int_equal(dkp_key_public_b64(rsa_key, &prsa, &err), DKP_OK);
	assert_int_equal(dkp_key_public_b64(ed_key, &ped, &err), DKP_OK);
	recs[0] = "sel._domainkey.customer.example";
	recs[1] = prsa.p;
	recs[2] = "sel._domainkey.esp.example";
	recs[3] = ped.p;
	recs[4] = NULL;
	for (hc = 0; hc < 2; hc++)
		for (bc = 0; bc < 2; bc++) {
			struct dkp_sig_spec sp[2] = {
				spec("customer.example", rsa_key, hc, bc),
				spec("esp.example", ed_key, hc, bc),
			};
			static const struct {
				const char *from, *to;
				int pass;
			} edits[] = {
				{ NULL, NULL, 1 },
				{ "Body  text", "Body  texT", 0 },
				{ "Subject: Sale", "Subject: Sole", 0 },
				{ "From: Shop", "Subject: added\r\nFrom: Shop", 0 },
				{ "Return-Path:", "Received: by relay\r\nReturn-Path:", 1 },
				{ "X-Mailer: test", "X-Mailer: changed", 1 },
			};
			size_t e;

			dkp_buf_init(&out);
			sign_into(esp_msg, sp, 2, &out);
			dkp_buf_adds(&out, esp_msg);
			for (e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
				struct dkp_vresult res[4];
				struct dkp_msg m;
				size_t n = 0, r;
				char *at;

				dkp_buf_init(&edited);
				if (edits[e].from) {
					at = strstr(out.p, edits[e].from);
					assert_non_null(at);
					dkp_buf_add(&edited, out.p, (size_t)(at - out.p));
					dkp_buf_adds(&edited, edits[e].to);
					dkp_buf_adds(&edited, at + strlen(edits[e].from));
				} else {
					dkp_buf_add(&edited, out.p, out.len);
				}
				dkp_msg_init(&m);
				assert_int_equal(dkp_msg_parse(&m, edited.p, edited.len, NULL, &err), DKP_OK);
				assert_int_equal(dkp_verify(&m, fetch_none, recs, 0, res, 4, &n, &err), DKP_OK);
				assert_int_equal(n, 3);	/* ours + the old one */
				for (r = 0; r < 2; r++)
					if ((res[r].res == DKP_V_PASS) != edits[e].pass)
						fail_msg("c=%s/%s edit %zu sig %zu: %s %s",
							 dkp_canon_name(hc), dkp_canon_name(bc),
							 e, r, dkp_vres_name(res[r].res), res[r].reason);
				dkp_msg_fini(&m);
				dkp_buf_free(&edited);
			}
			dkp_buf_free(&out);
		}
	dkp_buf_free(&prsa);
	dkp_buf_free(&ped);
}

/* Per-key settings (issue 17): four signatures with one d=/s= but each
 * its own c=, h=, x= and i=, twice through one signer (the second time
 * from its template cache): each carries its own tags and passes. */
/*
 * Consecutive signatures with the same c=, t=, x= and h= share the
 * canonical fields and the first part of their own field (sign.c,
 * same_shared): each must still come out byte for byte as it does signed
 * alone, whatever sits before it - the same list in another array,
 * another list, another canonicalization (header or body), another key,
 * another x= or t=, an i= of its own.
 */
static void shared_fields_sign_as_alone(void **st)
{
	static const char *const h1[] = { "From", "Subject" };
	static const char *const h1b[] = { "From", "Subject" };
	static const char *const h2[] = { "From", "To" };
	struct dkp_sig_spec sp[10];
	struct dkp_signer *sg = dkp_signer_new();
	struct dkp_buf all, one;
	struct dkp_msg m;
	struct dkp_err err;
	size_t k;

	(void)st;
	sp[0] = spec("customer.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	sp[1] = spec("customer.example", ed_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	sp[2] = spec("esp.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_SIMPLE);
	sp[3] = spec("esp.example", ed_key, DKP_CANON_SIMPLE, DKP_CANON_SIMPLE);
	sp[4] = spec("customer.example", rsa_key, DKP_CANON_SIMPLE, DKP_CANON_SIMPLE);
	sp[5] = spec("customer.example", ed_key, DKP_CANON_SIMPLE, DKP_CANON_SIMPLE);
	sp[6] = spec("customer.example", rsa_key, DKP_CANON_SIMPLE, DKP_CANON_SIMPLE);
	sp[3].headers = h1, sp[3].nheaders = 2;
	sp[4].headers = h1b, sp[4].nheaders = 2;	/* same names, elsewhere */
	sp[5].headers = h2, sp[5].nheaders = 2;		/* same length, not same */
	sp[6].headers = h2, sp[6].nheaders = 1;		/* a prefix of it */
	sp[7] = sp[6], sp[7].key = ed_key;
	sp[7].x = sp[7].t + 3600;			/* another x= */
	sp[8] = sp[7], sp[8].t += 60;			/* another t= */
	sp[9] = sp[8], sp[9].key = rsa_key;		/* shares all but a=, i= */
	sp[9].identity = "news@customer.example";
	dkp_buf_init(&all);
	dkp_buf_init(&one);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
	assert_int_equal(dkp_sign(sg, &m, sp, 10, &all, &err), DKP_OK);
	for (k = 0; k < 10; k++) {
		struct dkp_signer *alone = dkp_signer_new();

		assert_int_equal(dkp_sign(alone, &m, &sp[k], 1, &one, &err), DKP_OK);
		dkp_signer_free(alone);
	}
	assert_int_equal(all.len, one.len);
	assert_memory_equal(all.p, one.p, all.len);
	dkp_msg_fini(&m);
	dkp_buf_free(&all);
	dkp_buf_free(&one);
	dkp_signer_free(sg);
}

static void per_signature_settings_share_nothing_wrong(void **st)
{
	static const char *const h1[] = { "From", "Subject" };
	struct dkp_sig_spec sp[4];
	struct dkp_signer *sg = dkp_signer_new();
	struct dkp_buf prsa, out;
	struct dkp_err err;
	const char *recs[3];
	int round;
	size_t k;

	(void)st;
	dkp_buf_init(&prsa);
	dkp_buf_adds(&prsa, "v=DKIM1; k=rsa; p=");
	assert_int_equal(dkp_key_public_b64(rsa_key, &prsa, &err), DKP_OK);
	recs[0] = "sel._domainkey.customer.example";
	recs[1] = prsa.p;
	recs[2] = NULL;
	sp[0] = spec("customer.example", rsa_key, DKP_CANON_SIMPLE, DKP_CANON_SIMPLE);
	sp[1] = spec("customer.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_SIMPLE);
	sp[2] = spec("customer.example", rsa_key, DKP_CANON_SIMPLE, DKP_CANON_RELAXED);
	sp[3] = spec("customer.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	sp[1].headers = h1;
	sp[1].nheaders = 2;
	sp[2].identity = "@customer.example";
	sp[3].x = sp[3].t + 3600;
	for (round = 0; round < 2; round++) {
		struct dkp_vresult res[4];
		struct dkp_msg m, signed_m;
		const char *f;
		char v[64];
		size_t n = 0;

		dkp_buf_init(&out);
		dkp_msg_init(&m);
		assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
		assert_int_equal(dkp_sign(sg, &m, sp, 4, &out, &err), DKP_OK);
		dkp_msg_fini(&m);
		f = out.p;
		for (k = 0; k < 4; k++) {	/* each field: its own tags */
			const char *next = strstr(f + 1, "DKIM-Signature:");
			size_t len = next ? (size_t)(next - f) : strlen(f);

			tag_value(f, len, "c", v, sizeof(v));
			assert_string_equal(v, k == 0 ? "simple/simple" : k == 1 ? "relaxed/simple"
					    : k == 2 ? "simple/relaxed" : "relaxed/relaxed");
			tag_value(f, len, "h", v, sizeof(v));
			if (k == 1)
				assert_string_equal(v, "From:Subject");
			else
				assert_true(strlen(v) > strlen("From:Subject"));
			tag_value(f, len, "i", v, sizeof(v));
			assert_string_equal(v, k == 2 ? "@customer.example" : "");
			tag_value(f, len, "x", v, sizeof(v));
			assert_true((k == 3) == (v[0] != '\0'));
			f = next;
		}
		dkp_buf_adds(&out, esp_msg);
		dkp_msg_init(&signed_m);
		assert_int_equal(dkp_msg_parse(&signed_m, out.p, out.len, NULL, &err), DKP_OK);
		assert_int_equal(dkp_verify(&signed_m, fetch_none, recs, 1700000100, res, 4,
					    &n, &err), DKP_OK);
		assert_int_equal(n, 5);	/* ours + the message's old one */
		for (k = 0; k < 4; k++)
			if (res[k].res != DKP_V_PASS)
				fail_msg("round %d sig %zu: %s", round, k, res[k].reason);
		dkp_msg_fini(&signed_m);
		dkp_buf_free(&out);
	}
	dkp_signer_free(sg);
	dkp_buf_free(&prsa);
}

static void expiry_and_identity_tags(void **st)
{
	struct dkp_sig_spec sp = spec("shop.example", ed_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED);
	struct dkp_buf out;
	char x[32], t[32], i[64];

	(void)st;
	sp.x = sp.t + 86400;
	sp.identity = "news@mail.shop.example";
	dkp_buf_init(&out);
	sign_into(esp_msg, &sp, 1, &out);
	tag_value(out.p, out.len, "t", t, sizeof(t));
	tag_value(out.p, out.len, "x", x, sizeof(x));
	tag_value(out.p, out.len, "i", i, sizeof(i));
	assert_string_equal(t, "1700000000");
	assert_string_equal(x, "1700086400");
	assert_string_equal(i, "news@mail.shop.example");
	dkp_buf_free(&out);
}

/* Values from outside are rendered into tags only when they fit the RFC
 * 6376 grammar: a CR, LF or ';' would add a header line or a tag. */
static void values_outside_the_grammar_are_refused(void **st)
{
	static const char *const inj_h[] = { "From", "Subject;l=0" };
	static const char *const sp_h[] = { "From", "Sub ject" };
	static const char *const ok_h[] = { "From", "X-Odd=Name" };
	static const struct {
		const char *name, *d, *s, *i;
		const char *const *h;
		size_t nh;
		const char *reason;	/* NULL: accepted */
	} cases[] = {
		{ "plain", "shop.example", "sel", NULL, NULL, 0, NULL },
		{ "i= within d=", "shop.example", "sel", "news@mail.shop.example", NULL, 0, NULL },
		{ "i= empty local part", "shop.example", "sel", "@shop.example", NULL, 0, NULL },
		{ "h= name with '='", "shop.example", "sel", NULL, ok_h, 2, NULL },
		{ "i= with CRLF", "shop.example", "sel", "a\r\nX-Injected: yes@shop.example", NULL, 0, "i=" },
		{ "i= with ';'", "shop.example", "sel", "a;l=0@shop.example", NULL, 0, "i=" },
		{ "i= with '='", "shop.example", "sel", "a=b@shop.example", NULL, 0, "i=" },
		{ "i= outside d=", "shop.example", "sel", "a@evilshop.example", NULL, 0, "within d=" },
		{ "i= local part of 65", "shop.example", "sel",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@shop.example",
		  NULL, 0, "i=" },
		{ "h= with ';l=0'", "shop.example", "sel", NULL, inj_h, 2, "h= name" },
		{ "h= with a space", "shop.example", "sel", NULL, sp_h, 2, "h= name" },
		{ "d= with ';'", "shop.example;l=0", "sel", NULL, NULL, 0, "d=" },
		{ "d= one label", "localhost", "sel", NULL, NULL, 0, "d=" },
		{ "d= empty label", "b..c", "sel", NULL, NULL, 0, "d=" },
		{ "d= hyphens", "-bad-.example", "sel", NULL, NULL, 0, "d=" },
		{ "d= final dot", "shop.example.", "sel", NULL, NULL, 0, "d=" },
		{ "d= 8-bit", "ex\xc3\xa4mple.com", "sel", NULL, NULL, 0, "d=ex\\xc3\\xa4mple.com" },
		{ "s= with CRLF", "shop.example", "s\r\nX: y", NULL, NULL, 0, "s=" },
		{ "s= with '_'", "shop.example", "s_1", NULL, NULL, 0, "s=" },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dkp_sig_spec sp = spec(cases[i].d, rsa_key, DKP_CANON_RELAXED,
					      DKP_CANON_RELAXED);
		struct dkp_signer *s = dkp_signer_new();
		struct dkp_msg m;
		struct dkp_buf out;
		struct dkp_err err;
		int rc;

		sp.selector = cases[i].s;
		sp.identity = cases[i].i;
		sp.headers = cases[i].h;
		sp.nheaders = cases[i].nh;
		dkp_msg_init(&m);
		dkp_buf_init(&out);
		memset(&err, 0, sizeof(err));
		assert_int_equal(dkp_msg_parse(&m, esp_msg, strlen(esp_msg), NULL, &err), DKP_OK);
		rc = dkp_sign(s, &m, &sp, 1, &out, &err);
		if (cases[i].reason == NULL ? rc != DKP_OK
					    : rc != DKP_E_USAGE ||
						  strstr(err.msg, cases[i].reason) == NULL ||
						  strpbrk(err.msg, "\r\n\033") != NULL)
			fail_msg("%s: got %d '%s', want %s", cases[i].name, rc, err.msg,
				 cases[i].reason ? cases[i].reason : "success");
		dkp_buf_free(&out);
		dkp_msg_fini(&m);
		dkp_signer_free(s);
	}
}

/* The signed message must stay within the limits the message was parsed
 * with (our own verify parses with the same defaults). */
static void signed_result_stays_within_the_limits(void **st)
{
	struct dkp_sig_spec sp[2] = {
		spec("customer.example", rsa_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED),
		spec("esp.example", ed_key, DKP_CANON_RELAXED, DKP_CANON_RELAXED),
	};
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_limits lim;
	struct dkp_msg m;
	struct dkp_buf msg, out;
	struct dkp_err err;
	size_t hdr;

	(void)st;
	dkp_msg_init(&m);
	dkp_buf_init(&msg);
	dkp_buf_init(&out);
	dkp_limits_default(&lim);
	lim.max_fields = 10;
	dkp_buf_adds(&msg, "From: a@customer.example\r\n");
	while (m.nfields < 8) {		/* 8 fields: 2 signatures fit, 3 do not */
		dkp_buf_adds(&msg, "X-F: v\r\n");
		dkp_msg_parse(&m, msg.p, msg.len, &lim, &err);
	}
	dkp_buf_adds(&msg, "\r\nbody\r\n");
	assert_int_equal(dkp_msg_parse(&m, msg.p, msg.len, &lim, &err), DKP_OK);
	assert_int_equal(m.nfields, 8);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_OK);
	dkp_buf_reset(&out);
	lim.max_fields = 9;
	assert_int_equal(dkp_msg_parse(&m, msg.p, msg.len, &lim, &err), DKP_OK);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_E_LIMIT);
	assert_non_null(strstr(err.msg, "limit of 9 fields"));
	assert_int_equal(out.len, 0);
	assert_int_equal(dkp_err_exit_code(&err), 65);

	/* bytes: a header block that fits alone but not with the signatures */
	dkp_limits_default(&lim);
	assert_int_equal(dkp_msg_parse(&m, msg.p, msg.len, &lim, &err), DKP_OK);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_OK);
	hdr = m.body_off + out.len;	/* the signed header block, exactly */
	dkp_buf_reset(&out);
	lim.max_header_bytes = hdr;
	assert_int_equal(dkp_msg_parse(&m, msg.p, msg.len, &lim, &err), DKP_OK);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_OK);
	dkp_buf_reset(&out);
	dkp_buf_adds(&out, "x-sender: kept\r\n");	/* not counted */
	lim.max_header_bytes = hdr - 1;
	assert_int_equal(dkp_msg_parse(&m, msg.p, msg.len, &lim, &err), DKP_OK);
	assert_int_equal(dkp_sign(s, &m, sp, 2, &out, &err), DKP_E_LIMIT);
	assert_non_null(strstr(err.msg, "header block"));
	assert_int_equal(out.len, strlen("x-sender: kept\r\n"));
	dkp_buf_free(&msg);
	dkp_buf_free(&out);
	dkp_msg_fini(&m);
	dkp_signer_free(s);
}

/* A header-only message whose last line has no CRLF, simple header
 * canonicalization: what we sign is what travels (the CRLF SMTP adds, and
 * the empty line), so the signature verifies on what a receiver gets. */
static void unterminated_header_block_signs_as_delivered(void **st)
{
	static const char raw[] = "From: a@customer.example\r\nSubject: x";
	struct dkp_sig_spec sp = spec("customer.example", rsa_key, DKP_CANON_SIMPLE,
				      DKP_CANON_SIMPLE);
	struct dkp_buf prsa, out;
	struct dkp_vresult res[2];
	struct dkp_err err;
	struct dkp_msg m;
	const char *recs[3];
	size_t n = 0;

	(void)st;
	dkp_buf_init(&prsa);
	dkp_buf_init(&out);
	dkp_buf_adds(&prsa, "v=DKIM1; k=rsa; p=");
	assert_int_equal(dkp_key_public_b64(rsa_key, &prsa, &err), DKP_OK);
	recs[0] = "sel._domainkey.customer.example";
	recs[1] = prsa.p;
	recs[2] = NULL;
	sign_into(raw, &sp, 1, &out);
	dkp_buf_adds(&out, "From: a@customer.example\r\nSubject: x\r\n\r\n");
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, out.p, out.len, NULL, &err), DKP_OK);
	assert_int_equal(dkp_verify(&m, fetch_none, recs, 0, res, 2, &n, &err), DKP_OK);
	assert_int_equal(n, 1);
	if (res[0].res != DKP_V_PASS)
		fail_msg("%s %s", dkp_vres_name(res[0].res), res[0].reason);
	dkp_msg_fini(&m);
	dkp_buf_free(&out);
	dkp_buf_free(&prsa);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(values_outside_the_grammar_are_refused),
		cmocka_unit_test(signed_result_stays_within_the_limits),
		cmocka_unit_test(unterminated_header_block_signs_as_delivered),
		cmocka_unit_test(rfc8463_signatures_reproduced),
		cmocka_unit_test(default_list_oversigns_present_fields_only),
		cmocka_unit_test(custom_header_list_is_used_verbatim),
		cmocka_unit_test(signatures_keep_order_and_share_the_body_hash),
		cmocka_unit_test(round_trip_and_tamper_detection),
		cmocka_unit_test(expiry_and_identity_tags),
		cmocka_unit_test(per_signature_settings_share_nothing_wrong),
		cmocka_unit_test(shared_fields_sign_as_alone),
		cmocka_unit_test(batch_mode_is_byte_identical),
		cmocka_unit_test(failed_sign_leaves_nothing_queued),
		cmocka_unit_test(retired_key_is_freed),
	};
	UNIT_RUN_WITH("test_sign", tests, make_keys, free_keys);
}
