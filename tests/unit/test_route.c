/* test_route.c — KeyTable / SigningTable (OpenDKIM formats) lookups. */
#include "unit.h"

#include <unistd.h>

#include "conf/route.h"

static char dir[] = "/tmp/dkp_route_XXXXXX";
static char kt[64], st_plain[64], st_re[64];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **st)
{
	(void)st;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(kt, sizeof(kt), "%s/KeyTable", dir);
	snprintf(st_plain, sizeof(st_plain), "%s/SigningTable", dir);
	snprintf(st_re, sizeof(st_re), "%s/SigningTable.re", dir);
	write_file(kt,
		   "# comment\n"
		   "shop      shop.example:s1:/keys/shop.private\n"
		   "\n"
		   "ceo       shop.example:ceo:/keys/ceo.private   # trailing comment\n"
		   "corp      corp.example:s2026:/keys/corp.private\n"
		   "any       %:default:/keys/any.private\n"
		   "org       %ORG:s1:/keys/org.private\n");
	write_file(st_plain,
		   "ceo@shop.example   ceo\n"
		   "shop.example       shop\n"
		   ".corp.example      corp\n"
		   "SHOP.example       ceo\n");	/* duplicate: first wins */
	write_file(st_re,
		   "ceo@shop.example   ceo\n"
		   "*@shop.example     shop\n"
		   "*@*.corp.example   corp\n"
		   "*@corp.example     corp\n");
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	unlink(kt);
	unlink(st_plain);
	unlink(st_re);
	rmdir(dir);
	return 0;
}

static const char *lookup(const struct dkp_route *r, const char *local,
			  const char *domain)
{
	const struct dkp_keyent *k = dkp_route_lookup(r, local, domain);

	return k ? k->name : "(none)";
}

static void plain_table_exact_then_domain_then_parents(void **st)
{
	struct dkp_route *r;
	struct dkp_err err;

	(void)st;
	if (dkp_route_load(&r, kt, st_plain, &err) != DKP_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(dkp_route_nkeys(r), 5);
	/* "%" and "%org" (any case) are the From-derived domains */
	assert_string_equal(dkp_route_key(r, 3)->domain, "%");
	assert_string_equal(dkp_route_key(r, 4)->domain, "%org");
	assert_string_equal(lookup(r, "ceo", "shop.example"), "ceo");
	assert_string_equal(lookup(r, "CEO", "shop.example"), "ceo");
	assert_string_equal(lookup(r, "news", "shop.example"), "shop");
	/* "shop.example" covers only itself; ".corp.example" subdomains */
	assert_string_equal(lookup(r, "news", "mail.shop.example"), "(none)");
	assert_string_equal(lookup(r, "a", "mail.corp.example"), "corp");
	assert_string_equal(lookup(r, "a", "x.y.corp.example"), "corp");
	assert_string_equal(lookup(r, "a", "corp.example"), "(none)");
	assert_string_equal(lookup(r, "a", "other.example"), "(none)");
	assert_string_equal(dkp_route_lookup(r, "ceo", "shop.example")->selector, "ceo");
	assert_string_equal(dkp_route_lookup(r, "ceo", "shop.example")->path, "/keys/ceo.private");
	dkp_route_free(r);
}

static void refile_patterns_first_match_wins(void **st)
{
	struct dkp_route *r;
	struct dkp_err err;
	char spec[80];

	(void)st;
	snprintf(spec, sizeof(spec), "refile:%s", st_re);
	if (dkp_route_load(&r, kt, spec, &err) != DKP_OK)
		fail_msg("%s", err.msg);
	assert_string_equal(lookup(r, "ceo", "shop.example"), "ceo");
	assert_string_equal(lookup(r, "news", "SHOP.example"), "shop");
	assert_string_equal(lookup(r, "a", "mail.corp.example"), "corp");
	assert_string_equal(lookup(r, "a", "corp.example"), "corp");
	assert_string_equal(lookup(r, "a", "xcorp.example"), "(none)");
	assert_string_equal(lookup(r, "a", "shop.example.evil"), "(none)");
	dkp_route_free(r);
}

static void glob_semantics(void **st)
{
	(void)st;
	assert_true(dkp_route_glob("*", ""));
	assert_true(dkp_route_glob("*@a.example", "x@a.example"));
	assert_true(dkp_route_glob("*@*.a.example", "x@b.c.a.example"));
	assert_false(dkp_route_glob("*@*.a.example", "x@a.example"));
	assert_true(dkp_route_glob("a*b*c", "aXXbYYc"));
	assert_false(dkp_route_glob("a*b*c", "aXXbYY"));
	assert_true(dkp_route_glob("A@B", "a@b"));
}

static const struct {
	const char *name, *keytable, *signing, *why;
} bad[] = {
	{ "keytable line without spec", "k\n", "x k\n", "KEYNAME" },
	{ "keytable spec without path", "k d.example:s\n", "x k\n", "KEYNAME" },
	{ "bad domain", "k bad..example:s:/p\n", "x k\n", "invalid" },
	{ "duplicate key name", "k a.example:s:/p\nk b.example:s:/q\n", "x k\n", "twice" },
	{ "signing names unknown key", "k a.example:s:/p\n", "a.example nope\n", "not in the KeyTable" },
	{ "signing line with three fields", "k a.example:s:/p\n", "a.example k extra\n", "PATTERN" },
};

static void broken_tables_give_one_clear_error(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dkp_route *r = NULL;
		struct dkp_err err;

		write_file(kt, bad[i].keytable);
		write_file(st_plain, bad[i].signing);
		if (dkp_route_load(&r, kt, st_plain, &err) == DKP_OK ||
		    strstr(err.msg, bad[i].why) == NULL)
			fail_msg("%s: got '%s', want '%s'", bad[i].name,
				 r ? "success" : err.msg, bad[i].why);
		assert_null(r);
	}
	{
		struct dkp_route *r = NULL;
		struct dkp_err err;

		assert_int_equal(dkp_route_load(&r, "/nonexistent/KeyTable", st_plain, &err), DKP_E_IO);
		assert_non_null(strstr(err.msg, "/nonexistent/KeyTable"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_table_exact_then_domain_then_parents),
		cmocka_unit_test(refile_patterns_first_match_wins),
		cmocka_unit_test(glob_semantics),
		cmocka_unit_test(broken_tables_give_one_clear_error),
	};
	UNIT_RUN_WITH("test_route", tests, setup, teardown);
}
