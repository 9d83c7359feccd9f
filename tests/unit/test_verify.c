/* test_verify.c — the verifier's results: pass, fail, permerror and
 * temperror for each way a signature or key record can go wrong. */
#include "unit.h"

#include <unistd.h>

#include "base/err.h"

static struct dkp_key *rsa, *ed;
static char rsa_p[600], ed_p[64];

static int setup(void **st)
{
	struct dkp_buf pem, rec, p;
	struct dkp_err err;

	(void)st;
	dkp_buf_init(&pem);
	dkp_buf_init(&rec);
	dkp_buf_init(&p);
	if (dkp_keygen(DKP_ALG_RSA_SHA256, 2048, &pem, &rec, &err) ||
	    dkp_key_from_pem(&rsa, pem.p, pem.len, "rsa", &err) ||
	    dkp_key_public_b64(rsa, &p, &err))
		return -1;
	snprintf(rsa_p, sizeof(rsa_p), "%s", p.p);
	dkp_buf_reset(&pem);
	dkp_buf_reset(&p);
	if (dkp_keygen(DKP_ALG_ED25519_SHA256, 0, &pem, &rec, &err) ||
	    dkp_key_from_pem(&ed, pem.p, pem.len, "ed", &err) ||
	    dkp_key_public_b64(ed, &p, &err))
		return -1;
	snprintf(ed_p, sizeof(ed_p), "%s", p.p);
	dkp_buf_wipe(&pem);
	dkp_buf_free(&pem);
	dkp_buf_free(&rec);
	dkp_buf_free(&p);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	dkp_key_unref(rsa);
	dkp_key_unref(ed);
	return 0;
}

static const char msg[] =
	"From: Shop <news@shop.example>\r\nTo: a@x.example\r\nSubject: Hello\r\n"
	"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nBody text\r\n";

/* Key records served to the verifier; the test edits them per case. */
static char rec_rsa[800], rec_ed[200];
static int dns_temp;

static int fetch(void *ctx, const char *q, struct dkp_buf *txt, struct dkp_err *err)
{
	(void)ctx;
	if (dns_temp)
		return dkp_err_set(err, DKP_E_DNS, 1, "dns", "SERVFAIL");
	dkp_buf_reset(txt);
	if (!strcmp(q, "r._domainkey.shop.example") && rec_rsa[0])
		dkp_buf_adds(txt, rec_rsa);
	else if (!strcmp(q, "e._domainkey.shop.example") && rec_ed[0])
		dkp_buf_adds(txt, rec_ed);
	else
		return dkp_err_set(err, DKP_E_NOKEY, 0, "dns", "NXDOMAIN");
	return DKP_OK;
}

static void reset_records(void)
{
	snprintf(rec_rsa, sizeof(rec_rsa), "v=DKIM1; k=rsa; p=%s", rsa_p);
	snprintf(rec_ed, sizeof(rec_ed), "v=DKIM1; k=ed25519; p=%s", ed_p);
	dns_temp = 0;
}

static enum dkp_canon hcanon = DKP_CANON_RELAXED;

/* Sign msg with RSA (s=r) on top of Ed25519 (s=e); t/x/identity as given. */
static void sign_msg(struct dkp_buf *out, int64_t t, int64_t x, const char *identity)
{
	struct dkp_sig_spec sp[2];
	struct dkp_signer *s = dkp_signer_new();
	struct dkp_msg m;
	struct dkp_err err;

	memset(sp, 0, sizeof(sp));
	sp[0].domain = sp[1].domain = "shop.example";
	sp[0].selector = "r";
	sp[1].selector = "e";
	sp[0].key = rsa;
	sp[1].key = ed;
	sp[0].hcanon = sp[1].hcanon = hcanon;
	sp[0].bcanon = sp[1].bcanon = DKP_CANON_RELAXED;
	sp[0].t = sp[1].t = t;
	sp[0].x = sp[1].x = x;
	sp[0].identity = sp[1].identity = identity;
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, msg, strlen(msg), NULL, &err), DKP_OK);
	if (dkp_sign(s, &m, sp, 2, out, &err) != DKP_OK)
		fail_msg("%s", err.msg);
	dkp_buf_adds(out, msg);
	dkp_msg_fini(&m);
	dkp_signer_free(s);
}

/* Replace the first occurrence of from by to in b (in place copy). */
static void edit(struct dkp_buf *b, const char *from, const char *to)
{
	struct dkp_buf n;
	char *at = strstr(b->p, from);

	assert_non_null(at);
	dkp_buf_init(&n);
	dkp_buf_add(&n, b->p, (size_t)(at - b->p));
	dkp_buf_adds(&n, to);
	dkp_buf_adds(&n, at + strlen(from));
	dkp_buf_free(b);
	*b = n;
}

/* Verify b at time now; results for the two signatures into r. */
static void verify(const struct dkp_buf *b, int64_t now, struct dkp_vresult *r)
{
	struct dkp_msg m;
	struct dkp_err err;
	size_t n = 0;

	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, b->p, b->len, NULL, &err), DKP_OK);
	assert_int_equal(dkp_verify(&m, fetch, NULL, now, r, 2, &n, &err), DKP_OK);
	assert_int_equal(n, 2);
	dkp_msg_fini(&m);
}

#define EXPECT(r, want, why)                                                  \
	do {                                                                  \
		if ((r).res != (want) || strstr((r).reason, why) == NULL)     \
			fail_msg("got %s '%s', want %s '%s'",                 \
				 dkp_vres_name((r).res), (r).reason,           \
				 dkp_vres_name(want), why);                    \
	} while (0)

static void clean_signatures_pass_with_their_names(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];

	(void)st;
	reset_records();
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PASS, "");
	EXPECT(r[1], DKP_V_PASS, "");
	assert_string_equal(r[0].domain, "shop.example");
	assert_string_equal(r[0].selector, "r");
	assert_string_equal(r[0].alg, "rsa-sha256");
	assert_string_equal(r[1].alg, "ed25519-sha256");
	dkp_buf_free(&b);
}

static void key_record_problems(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];

	(void)st;
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	reset_records();
	rec_rsa[0] = '\0';
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "no key record");
	reset_records();
	dns_temp = 1;
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_TEMPERROR, "SERVFAIL");
	EXPECT(r[1], DKP_V_TEMPERROR, "SERVFAIL");
	reset_records();
	snprintf(rec_rsa, sizeof(rec_rsa), "v=DKIM1; k=rsa; p=");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "revoked");
	reset_records();
	snprintf(rec_rsa, sizeof(rec_rsa), "v=DKIM1; k=ed25519; p=%s", ed_p);
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "k=");
	reset_records();
	snprintf(rec_rsa, sizeof(rec_rsa), "v=DKIM1; h=sha1; k=rsa; p=%s", rsa_p);
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "sha256");
	reset_records();
	snprintf(rec_ed, sizeof(rec_ed), "v=DKIM1; k=ed25519; p=AAAA");
	verify(&b, 0, r);
	EXPECT(r[1], DKP_V_PERMERROR, "32 bytes");
	reset_records();
	snprintf(rec_ed, sizeof(rec_ed), "v=DKIM1; k=ed25519; s=other; p=%s", ed_p);
	verify(&b, 0, r);
	EXPECT(r[1], DKP_V_PERMERROR, "not for email");
	/* the record restored: passes again (the cases above were the records) */
	reset_records();
	snprintf(rec_rsa, sizeof(rec_rsa), "v=DKIM1; k=rsa; p=%s", rsa_p);
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PASS, "");
	dkp_buf_free(&b);
}

static void signature_problems(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];

	(void)st;
	reset_records();
	/* withdrawn algorithm */
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "a=rsa-sha256", "a=rsa-sha1");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "RFC 8301");
	EXPECT(r[1], DKP_V_PASS, "");	/* the other one is untouched */
	dkp_buf_free(&b);
	/* a required tag missing; a duplicate tag */
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "bh=", "xh=");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "required tag");
	dkp_buf_free(&b);
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "v=1;", "v=1; v=1;");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "duplicate");
	dkp_buf_free(&b);
	/* body and header edits */
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "Body text", "Body Text");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_FAIL, "body hash");
	EXPECT(r[1], DKP_V_FAIL, "body hash");
	dkp_buf_free(&b);
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "Subject: Hello", "Subject: Hellp");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_FAIL, "did not verify");
	EXPECT(r[1], DKP_V_FAIL, "did not verify");
	dkp_buf_free(&b);
}

static void expiry_and_identity(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];

	(void)st;
	reset_records();
	dkp_buf_init(&b);
	sign_msg(&b, 1000, 2000, NULL);
	verify(&b, 1500, r);
	EXPECT(r[0], DKP_V_PASS, "");
	verify(&b, 3000, r);
	EXPECT(r[0], DKP_V_PERMERROR, "expired");
	EXPECT(r[1], DKP_V_PERMERROR, "expired");
	dkp_buf_free(&b);
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, "@mail.shop.example");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PASS, "");
	dkp_buf_free(&b);
	dkp_buf_init(&b);
	/* dkp_sign refuses an i= outside d=: edit one in afterwards */
	sign_msg(&b, 1700000000, 0, "user@shop.example");
	edit(&b, "i=user@shop.example", "i=user@other.example");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "i= is not within d=");
	dkp_buf_free(&b);
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, "user@shop.example");
	edit(&b, "i=user@shop.example", "i=user@evilshop.example");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "i= is not within d=");
	dkp_buf_free(&b);
}

/* RFC 6376 3.7: the b= value is removed "including all surrounding
 * whitespace", so a fold between "b=" and the value (as Mail::DKIM writes
 * at times) must not matter, even with simple header canonicalization. */
static void fold_after_b_equals_is_not_hashed(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];
	char from[8], to[12];
	const char *at;

	(void)st;
	reset_records();
	hcanon = DKP_CANON_SIMPLE;
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	hcanon = DKP_CANON_RELAXED;
	/* the first signature's " b=VALUE" becomes " b=\r\n\tVALUE" */
	at = strstr(b.p, " b=");
	assert_non_null(at);
	snprintf(from, sizeof(from), " b=%.4s", at + 3);
	snprintf(to, sizeof(to), " b=\r\n\t%.4s", at + 3);
	edit(&b, from, to);
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PASS, "");
	EXPECT(r[1], DKP_V_PASS, "");
	dkp_buf_free(&b);
}

static void rfc8463_published_signatures_pass(void **st)
{
	struct dkp_dnsfile *df;
	struct dkp_err err;
	struct dkp_msg m;
	struct dkp_vresult r[2];
	size_t len, n = 0;
	char *txt = unit_slurp(DATA_DIR "/rfc8463/signed.eml", &len);

	(void)st;
	assert_int_equal(dkp_dnsfile_load(&df, DATA_DIR "/rfc8463/dns.txt", &err), DKP_OK);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, txt, len, NULL, &err), DKP_OK);
	assert_int_equal(dkp_verify(&m, dkp_dnsfile_fetch, df, 0, r, 2, &n, &err), DKP_OK);
	assert_int_equal(n, 2);
	EXPECT(r[0], DKP_V_PASS, "");
	EXPECT(r[1], DKP_V_PASS, "");
	assert_string_equal(r[0].selector, "brisbane");
	assert_string_equal(r[1].selector, "test");
	dkp_msg_fini(&m);
	dkp_dnsfile_free(df);
	free(txt);
}

static void dns_file_forms(void **st)
{
	char path[] = "/tmp/dkp_dns_XXXXXX";
	struct dkp_dnsfile *df = NULL;
	struct dkp_err err;
	struct dkp_buf txt;
	FILE *f;
	int fd = mkstemp(path);

	(void)st;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "# comment\n\nr._domainkey.shop.example.\t\"v=DKIM1; k=rsa; \" \"p=AB\"\n"
		   "E._DOMAINKEY.shop.example  v=DKIM1; k=ed25519; p=CD\n");
	fclose(f);
	assert_int_equal(dkp_dnsfile_load(&df, path, &err), DKP_OK);
	dkp_buf_init(&txt);
	assert_int_equal(dkp_dnsfile_fetch(df, "r._domainkey.shop.example", &txt, &err), DKP_OK);
	assert_string_equal(txt.p, "v=DKIM1; k=rsa; p=AB");	/* quoted strings joined */
	assert_int_equal(dkp_dnsfile_fetch(df, "e._domainkey.shop.example", &txt, &err), DKP_OK);
	assert_string_equal(txt.p, "v=DKIM1; k=ed25519; p=CD");
	assert_int_equal(dkp_dnsfile_fetch(df, "x._domainkey.shop.example", &txt, &err), DKP_E_NOKEY);
	dkp_dnsfile_free(df);
	f = fopen(path, "w");
	fprintf(f, "just-a-name-without-record\n");
	fclose(f);
	assert_int_equal(dkp_dnsfile_load(&df, path, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, ":1:"));
	unlink(path);
	dkp_buf_free(&txt);
}

/* RFC 6376 6.1 lets a verifier limit what it checks: the first
 * DKP_VERIFY_MAX_SIGS signatures are verified, each later one is a
 * permerror "not checked", still named by its d=, s= and a=. */
static void signatures_past_the_limit_are_not_checked(void **st)
{
	struct dkp_buf b, many;
	struct dkp_vresult r[80];
	struct dkp_msg m;
	struct dkp_err err;
	const char *from;
	size_t n = 0, i, copies = 35;	/* 70 signatures */

	(void)st;
	reset_records();
	dkp_buf_init(&b);
	dkp_buf_init(&many);
	sign_msg(&b, 1700000000, 0, NULL);
	from = strstr(b.p, "\r\nFrom:") + 2;
	for (i = 0; i < copies; i++)
		dkp_buf_add(&many, b.p, (size_t)(from - b.p));
	dkp_buf_adds(&many, from);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, many.p, many.len, NULL, &err), DKP_OK);
	assert_int_equal(dkp_verify(&m, fetch, NULL, 0, r, 80, &n, &err), DKP_OK);
	assert_int_equal(n, 2 * copies);
	for (i = 0; i < n; i++) {
		if (i < DKP_VERIFY_MAX_SIGS)
			EXPECT(r[i], DKP_V_PASS, "");
		else
			EXPECT(r[i], DKP_V_PERMERROR, "not checked");
		assert_string_equal(r[i].domain, "shop.example");
		assert_string_equal(r[i].alg, i % 2 ? "ed25519-sha256" : "rsa-sha256");
	}
	/* fewer result slots than signatures: all are still counted */
	assert_int_equal(dkp_verify(&m, fetch, NULL, 0, r, 3, &n, &err), DKP_OK);
	assert_int_equal(n, 2 * copies);
	dkp_msg_fini(&m);
	dkp_buf_free(&many);
	dkp_buf_free(&b);
}

/* One body hash per (canonicalization, l=): signatures of both body
 * canonicalizations over one body each get their own. */
static void body_hashes_are_kept_per_canonicalization(void **st)
{
	struct dkp_sig_spec sp[3];
	struct dkp_signer *s = dkp_signer_new();
	static const char body_msg[] =
		"From: Shop <news@shop.example>\r\nSubject: Hi\r\n\r\n"
		"Body  text \r\n\r\n\r\n";
	struct dkp_vresult r[3];
	struct dkp_msg m;
	struct dkp_buf out;
	struct dkp_err err;
	size_t n = 0, i;

	(void)st;
	reset_records();
	memset(sp, 0, sizeof(sp));
	for (i = 0; i < 3; i++) {
		sp[i].domain = "shop.example";
		sp[i].selector = i == 1 ? "e" : "r";
		sp[i].key = i == 1 ? ed : rsa;
		sp[i].hcanon = DKP_CANON_RELAXED;
		sp[i].bcanon = i == 2 ? DKP_CANON_SIMPLE : DKP_CANON_RELAXED;
		sp[i].t = 1700000000;
	}
	dkp_buf_init(&out);
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, body_msg, strlen(body_msg), NULL, &err), DKP_OK);
	assert_int_equal(dkp_sign(s, &m, sp, 3, &out, &err), DKP_OK);
	dkp_buf_adds(&out, body_msg);
	assert_int_equal(dkp_msg_parse(&m, out.p, out.len, NULL, &err), DKP_OK);
	assert_int_equal(dkp_verify(&m, fetch, NULL, 0, r, 3, &n, &err), DKP_OK);
	assert_int_equal(n, 3);
	for (i = 0; i < 3; i++)
		EXPECT(r[i], DKP_V_PASS, "");
	dkp_msg_fini(&m);
	dkp_buf_free(&out);
	dkp_signer_free(s);
}

/* What comes from the message is printed escaped: an ESC in d= or s=
 * (a terminal escape sequence) becomes \x1b, and such a d= is a
 * permerror before anything is looked up. */
static void control_bytes_in_results_are_escaped(void **st)
{
	struct dkp_buf b;
	struct dkp_vresult r[2];
	size_t i;

	(void)st;
	reset_records();
	dkp_buf_init(&b);
	sign_msg(&b, 1700000000, 0, NULL);
	edit(&b, "d=shop.example", "d=sh\033[31mop.example");
	edit(&b, "s=e", "s=e\033[0m");
	verify(&b, 0, r);
	EXPECT(r[0], DKP_V_PERMERROR, "d= is not a domain name");
	assert_string_equal(r[0].domain, "sh\\x1b[31mop.example");
	EXPECT(r[1], DKP_V_PERMERROR, "s= is not a selector");
	assert_string_equal(r[1].selector, "e\\x1b[0m");
	for (i = 0; i < 2; i++)
		assert_null(strpbrk(r[i].reason, "\033\r\n"));
	dkp_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clean_signatures_pass_with_their_names),
		cmocka_unit_test(key_record_problems),
		cmocka_unit_test(signature_problems),
		cmocka_unit_test(expiry_and_identity),
		cmocka_unit_test(fold_after_b_equals_is_not_hashed),
		cmocka_unit_test(rfc8463_published_signatures_pass),
		cmocka_unit_test(dns_file_forms),
		cmocka_unit_test(signatures_past_the_limit_are_not_checked),
		cmocka_unit_test(body_hashes_are_kept_per_canonicalization),
		cmocka_unit_test(control_bytes_in_results_are_escaped),
	};

	UNIT_RUN_WITH("test_verify", tests, setup, teardown);
}
