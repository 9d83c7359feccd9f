/* test_align.c — DMARC alignment (conf/align.c) against libpsl and the
 * Public Suffix List, the KeyTable's "%" and "%org" domains, and the
 * settings. */
#include "unit.h"

#include <unistd.h>

#include "base/err.h"
#include "conf/align.h"

static struct dkp_psl *psl;

static int setup(void **st)
{
	struct dkp_err err;

	(void)st;
	dkp_err_clear(&err);
	if (dkp_psl_load(&psl, NULL, &err) != DKP_OK) {
		fprintf(stderr, "cannot load the PSL: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	dkp_psl_free(psl);
	return 0;
}

/* From domain, d=, aligned relaxed?, aligned strict? */
static const struct {
	const char *name, *from, *d;
	int relaxed, strict;
} cases[] = {
	{ "subdomain of a two-label suffix", "news.shop.co.uk", "shop.co.uk", 1, 0 },
	{ "sibling under a two-label suffix", "news.shop.co.uk", "mail.shop.co.uk", 1, 0 },
	{ "another registrant under co.uk", "news.shop.co.uk", "other.co.uk", 0, 0 },
	{ "the suffix itself as d=", "news.shop.co.uk", "co.uk", 0, 0 },
	{ "same name", "shop.co.uk", "shop.co.uk", 1, 1 },
	{ "other TLD never", "a.example.com", "example.net", 0, 0 },
	{ "other TLD, reversed", "example.net", "a.example.com", 0, 0 },
	{ "parent of .com name", "a.example.com", "example.com", 1, 0 },
	{ "deeper d= than From", "example.com", "x.y.example.com", 1, 0 },
	{ "public suffix From vs registrant d=", "co.uk", "shop.co.uk", 0, 0 },
	{ "public suffix From vs itself", "co.uk", "co.uk", 1, 1 },
	{ "public suffix From vs TLD", "co.uk", "uk", 0, 0 },
	{ "IDN A-label suffix (xn--55qx5d.cn)", "news.example.xn--55qx5d.cn",
	  "example.xn--55qx5d.cn", 1, 0 },
	{ "IDN A-label suffix is no org domain", "news.example.xn--55qx5d.cn",
	  "xn--55qx5d.cn", 0, 0 },
	{ "IDN A-label registrant", "mail.xn--mller-kva.de", "xn--mller-kva.de", 1, 0 },
	{ "IDN A-label, other registrant", "mail.xn--mller-kva.de", "mueller.de", 0, 0 },
	{ "case differences", "NEWS.Shop.CO.uk", "shop.co.UK", 1, 0 },
	{ "case only", "Shop.Example", "shop.example", 1, 1 },
	{ "trailing dot on From", "news.shop.co.uk.", "shop.co.uk", 1, 0 },
	{ "trailing dot, same name", "shop.co.uk.", "SHOP.co.uk", 1, 1 },
	{ "trailing dot on d=", "shop.example.com", "example.com.", 1, 0 },
	{ "two trailing dots", "shop.co.uk..", "shop.co.uk", 0, 0 },
	{ "wildcard rule (*.ck)", "a.www.ck", "www.ck", 1, 0 },
	{ "wildcard rule, registrant", "a.b.foo.ck", "b.foo.ck", 1, 0 },
	{ "private-section suffix (github.io)", "alice.github.io", "bob.github.io", 0, 0 },
	{ "empty From", "", "example.com", 0, 0 },
	{ "8-bit From never", "b\xc3\xbc" "cher.example", "xn--bcher-kva.example", 0, 0 },
};

static void alignment_table(void **st)
{
	size_t i, bad = 0;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = dkp_align_check(psl, DKP_ALIGN_RELAXED, cases[i].from, cases[i].d);
		int s = dkp_align_check(psl, DKP_ALIGN_STRICT, cases[i].from, cases[i].d);

		if (r != cases[i].relaxed || s != cases[i].strict) {
			fprintf(stderr, "  %s: From %s d=%s: relaxed %d (want %d), strict %d (want %d)\n",
				cases[i].name, cases[i].from, cases[i].d, r,
				cases[i].relaxed, s, cases[i].strict);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

static void orgdomain(void **st)
{
	static const struct { const char *dom, *org; } t[] = {
		{ "news.shop.co.uk", "shop.co.uk" },
		{ "shop.co.uk", "shop.co.uk" },
		{ "co.uk", NULL },
		{ "uk", NULL },
		{ "A.B.Example.COM.", "example.com" },
		{ "news.example.xn--55qx5d.cn", "example.xn--55qx5d.cn" },
		{ "xn--55qx5d.cn", NULL },
		{ "x..example.com", NULL },
		{ ".example.com", NULL },
	};
	char out[256];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = dkp_align_orgdomain(psl, t[i].dom, out, sizeof(out));

		if (t[i].org == NULL) {
			if (rc != -1)
				fprintf(stderr, "  %s: got %s, want none\n", t[i].dom, out);
			assert_int_equal(rc, -1);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(out, t[i].org);
		}
	}
}

static void message_result(void **st)
{
	const char *both[2] = { "shop.co.uk", "esp.example" };
	const char *esp_only[2] = { NULL, "esp.example" };

	(void)st;
	assert_int_equal(dkp_align_message(psl, DKP_ALIGN_RELAXED, "news.shop.co.uk", both, 2),
			 DKP_ALIGN_YES);
	assert_int_equal(dkp_align_message(psl, DKP_ALIGN_STRICT, "news.shop.co.uk", both, 2),
			 DKP_ALIGN_NO);
	assert_int_equal(dkp_align_message(psl, DKP_ALIGN_RELAXED, "news.shop.co.uk", esp_only, 2),
			 DKP_ALIGN_NO);
	/* the ESP's own mail aligns through the ESP signature */
	assert_int_equal(dkp_align_message(psl, DKP_ALIGN_RELAXED, "bounce.esp.example",
					   esp_only, 2), DKP_ALIGN_YES);
}

static void key_domain(void **st)
{
	char buf[256];
	const char *d;

	(void)st;
	assert_string_equal(dkp_align_key_domain(psl, "shop.example", "x.other.example",
						 buf, sizeof(buf)), "shop.example");
	assert_string_equal(dkp_align_key_domain(psl, "%", "news.shop.co.uk", buf,
						 sizeof(buf)), "news.shop.co.uk");
	assert_string_equal(dkp_align_key_domain(psl, "%org", "news.shop.co.uk", buf,
						 sizeof(buf)), "shop.co.uk");
	assert_string_equal(dkp_align_key_domain(psl, "%org", "A.News.Shop.Example.", buf,
						 sizeof(buf)), "shop.example");
	/* a public suffix, or no domain at all: no d= */
	d = dkp_align_key_domain(psl, "%org", "co.uk", buf, sizeof(buf));
	assert_null(d);
	d = dkp_align_key_domain(psl, "%org", "localhost", buf, sizeof(buf));
	assert_null(d);
	d = dkp_align_key_domain(psl, "%", "a..b", buf, sizeof(buf));
	assert_null(d);
}

static void settings(void **st)
{
	struct dkp_align_conf ac;

	(void)st;
	memset(&ac, 0, sizeof(ac));
	assert_int_equal(ac.mode, DKP_ALIGN_RELAXED);
	assert_int_equal(ac.action, DKP_UNALIGNED_SIGN);
	assert_int_equal(dkp_align_conf_key("dmarc_alignment"), 0);
	assert_int_equal(dkp_align_conf_key("unaligned"), 1);
	assert_int_equal(dkp_align_conf_key("public_suffix_list"), 2);
	assert_int_equal(dkp_align_conf_key("dmarc"), -1);
	assert_null(dkp_align_conf_apply(&ac, 0, "STRICT"));
	assert_int_equal(ac.mode, DKP_ALIGN_STRICT);
	assert_non_null(dkp_align_conf_apply(&ac, 0, "loose"));
	assert_null(dkp_align_conf_apply(&ac, 1, "defer"));
	assert_int_equal(ac.action, DKP_UNALIGNED_DEFER);
	assert_null(dkp_align_conf_apply(&ac, 1, "fail"));
	assert_int_equal(ac.action, DKP_UNALIGNED_FAIL);
	assert_non_null(dkp_align_conf_apply(&ac, 1, "reject"));
	assert_null(dkp_align_conf_apply(&ac, 2, "/usr/share/publicsuffix/public_suffix_list.dat"));
	assert_string_equal(ac.psl_file, "/usr/share/publicsuffix/public_suffix_list.dat");
	assert_null(dkp_align_conf_apply(&ac, 2, "auto"));
	assert_null(ac.psl_file);
	dkp_align_conf_free(&ac);
}

/* The .dat file of Debian's publicsuffix package gives the same answers
 * as psl_latest(); a missing file is an error, not an empty list. */
static void load_file(void **st)
{
	struct dkp_psl *f = NULL;
	struct dkp_err err;
	char out[256];

	(void)st;
	dkp_err_clear(&err);
	if (access("/usr/share/publicsuffix/public_suffix_list.dat", R_OK) != 0)
		skip();
	assert_int_equal(dkp_psl_load(&f, "/usr/share/publicsuffix/public_suffix_list.dat",
				      &err), DKP_OK);
	assert_int_equal(dkp_align_orgdomain(f, "news.shop.co.uk", out, sizeof(out)), 0);
	assert_string_equal(out, "shop.co.uk");
	assert_int_equal(dkp_align_check(f, DKP_ALIGN_RELAXED, "news.example.xn--55qx5d.cn",
					 "example.xn--55qx5d.cn"), 1);
	dkp_psl_free(f);
	assert_int_not_equal(dkp_psl_load(&f, "/nonexistent/psl.dat", &err), DKP_OK);
	assert_null(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(alignment_table),
		cmocka_unit_test(orgdomain),
		cmocka_unit_test(message_result),
		cmocka_unit_test(key_domain),
		cmocka_unit_test(settings),
		cmocka_unit_test(load_file),
	};

	UNIT_RUN_WITH("test_align", tests, setup, teardown);
}
