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

/* Write st, load it with kt; NULL on error (err says why). */
static struct dkp_route *load_st(const char *text, int refile, struct dkp_err *err)
{
	struct dkp_route *r = NULL;
	char path[80], spec[96], ktm[80];

	snprintf(ktm, sizeof(ktm), "%s/KT.multi", dir);
	write_file(ktm, "shop shop.example:s1:/k/shop\nceo shop.example:ceo:/k/ceo\n"
		   "corp corp.example:s2026:/k/corp\nany %:default:/k/any\n");
	snprintf(path, sizeof(path), "%s/ST.multi", dir);
	write_file(path, text);
	snprintf(spec, sizeof(spec), "%s%s", refile ? "refile:" : "", path);
	dkp_route_load(&r, ktm, spec, err);
	unlink(path);
	unlink(ktm);
	return r;
}

/* "s1,ceo,..." of what a lookup returns, in order. */
static const char *all(const struct dkp_route *r, const char *local,
		       const char *domain, enum dkp_multi m)
{
	static char out[256];
	const struct dkp_keyent *k[DKP_ROUTE_MAX_KEYS];
	size_t i, n = dkp_route_lookup_all(r, local, domain, m, k, DKP_ROUTE_MAX_KEYS);

	out[0] = '\0';
	for (i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s",
			 i ? "," : "", k[i]->name);
	return out;
}

/* OpenDKIM 2.11's lookup order in a plain table, and its
 * MultipleSignatures (first and last match, measured against the milter
 * in tests/policy/odkim_compat.sh); "all" and comma lists extend it. */
static void plain_table_multiple_signatures(void **st)
{
	struct dkp_err err;
	struct dkp_route *r;

	(void)st;
	r = load_st("ceo@shop.example ceo\n"
		    "shop.example     shop,any\n"
		    ".example         corp\n"
		    "ceo@*            ceo\n"
		    "*                any\n", 0, &err);
	assert_non_null(r);
	/* no: the first match in the order address, domain, parents,
	 * local@*, * */
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_NO), "ceo");
	assert_string_equal(all(r, "bob", "shop.example", DKP_MULTI_NO), "shop,any");
	assert_string_equal(all(r, "bob", "x.example", DKP_MULTI_NO), "corp");
	assert_string_equal(all(r, "ceo", "other.test", DKP_MULTI_NO), "ceo");
	assert_string_equal(all(r, "bob", "other.test", DKP_MULTI_NO), "any");
	assert_string_equal(lookup(r, "bob", "other.test"), "any");
	/* yes: the first and the last match, each key once */
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_OPENDKIM), "ceo,any");
	assert_string_equal(all(r, "bob", "shop.example", DKP_MULTI_OPENDKIM), "shop,any");
	assert_string_equal(all(r, "bob", "x.example", DKP_MULTI_OPENDKIM), "corp,any");
	/* all: every match in order, each key once */
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_ALL), "ceo,shop,any,corp");
	assert_string_equal(all(r, "bob", "none", DKP_MULTI_ALL), "any");
	dkp_route_free(r);

	r = load_st("shop.example shop\n", 0, &err);	/* no catch-all */
	assert_non_null(r);
	assert_string_equal(all(r, "bob", "other.test", DKP_MULTI_ALL), "");
	dkp_route_free(r);
}

static void refile_multiple_signatures(void **st)
{
	struct dkp_err err;
	struct dkp_route *r = load_st("ceo@shop.example  ceo\n"
				      "*@shop.example    shop\n"
				      "*@*.example       corp\n"
				      "*@shop.example    any,ceo\n"
				      "*                 any\n", 1, &err);

	(void)st;
	assert_non_null(r);
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_NO), "ceo");
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_OPENDKIM), "ceo,any");
	assert_string_equal(all(r, "bob", "shop.example", DKP_MULTI_OPENDKIM), "shop,any");
	assert_string_equal(all(r, "bob", "a.example", DKP_MULTI_OPENDKIM), "corp,any");
	assert_string_equal(all(r, "ceo", "shop.example", DKP_MULTI_ALL), "ceo,shop,corp,any");
	/* at most max keys */
	{
		const struct dkp_keyent *k[2];

		assert_int_equal(dkp_route_lookup_all(r, "ceo", "shop.example",
						      DKP_MULTI_ALL, k, 2), 2);
	}
	dkp_route_free(r);
}

static void key_lists_are_checked(void **st)
{
	static const struct { const char *text, *why; } lists[] = {
		{ "shop.example shop,nosuch\n", "'nosuch' is not in the KeyTable" },
		{ "shop.example shop,\n", "" },
		{ "shop.example ,\n", "empty key list" },
		{ "shop.example shop,shop,shop,shop,shop,shop,shop,shop,shop\n", "too many keys" },
		{ "shop.example shop, ceo\n", "want PATTERN KEYNAME[,KEYNAME...]" },
	};
	struct dkp_err err;
	struct dkp_route *r;
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		r = load_st(lists[i].text, 0, &err);
		if (i == 1) {	/* a trailing comma is harmless */
			assert_non_null(r);
			assert_string_equal(all(r, "x", "shop.example", DKP_MULTI_NO), "shop");
			dkp_route_free(r);
			continue;
		}
		if (r != NULL || strstr(err.msg, lists[i].why) == NULL)
			fail_msg("%s: got '%s', want '%s'", lists[i].text,
				 r ? "success" : err.msg, lists[i].why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_table_exact_then_domain_then_parents),
		cmocka_unit_test(refile_patterns_first_match_wins),
		cmocka_unit_test(glob_semantics),
		cmocka_unit_test(broken_tables_give_one_clear_error),
		cmocka_unit_test(plain_table_multiple_signatures),
		cmocka_unit_test(refile_multiple_signatures),
		cmocka_unit_test(key_lists_are_checked),
	};
	UNIT_RUN_WITH("test_route", tests, setup, teardown);
}
