/* test_policy.c — key_policy (per-key settings) and esp_stream_table
 * parsing and look-ups (issue 17). */
#include "unit.h"

#include <unistd.h>

#include "conf/policy.h"

static char path[] = "/tmp/dkp_policy_XXXXXX";

static void put(const char *text)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void done(void)
{
	unlink(path);
	strcpy(path, "/tmp/dkp_policy_XXXXXX");
}

static void policy_lines_set_what_they_name(void **st)
{
	struct dkp_policy *p;
	const struct dkp_keypol *kp;
	struct dkp_err err;
	char buf[320];

	(void)st;
	put("# per-key settings\n"
	    "Shop-RSA  canonicalization=simple/relaxed headers=From:To:Subject expire=86400\n"
	    "\n"
	    "shop-ed   identity=bounce@%   # the d= of each signature\n"
	    "esp.example:e1  headers=default identity=@esp.example\n");
	assert_int_equal(dkp_policy_load(&p, path, &err), DKP_OK);
	done();
	assert_int_equal(dkp_policy_count(p), 3);
	kp = dkp_policy_get(p, "shop-rsa");	/* names compare without case */
	assert_non_null(kp);
	assert_true(kp->set_canon && kp->set_headers && kp->set_expire);
	assert_int_equal(kp->hcanon, DKP_CANON_SIMPLE);
	assert_int_equal(kp->bcanon, DKP_CANON_RELAXED);
	assert_int_equal(kp->nheaders, 3);
	assert_string_equal(kp->headers[2], "Subject");
	assert_int_equal(kp->expire, 86400);
	assert_null(kp->identity);
	assert_null(dkp_policy_identity(kp, "shop.example", buf, sizeof(buf)));

	kp = dkp_policy_get(p, "SHOP-ED");
	assert_non_null(kp);
	assert_false(kp->set_canon || kp->set_headers || kp->set_expire);
	assert_string_equal(dkp_policy_identity(kp, "shop.example", buf, sizeof(buf)),
			    "bounce@shop.example");
	assert_null(dkp_policy_identity(kp, "shop.example", buf, 10));	/* too long */

	kp = dkp_policy_get(p, "esp.example:e1");
	assert_non_null(kp);
	assert_true(kp->set_headers);
	assert_int_equal(kp->nheaders, 0);	/* default list */
	assert_string_equal(dkp_policy_identity(kp, "esp.example", buf, sizeof(buf)),
			    "@esp.example");
	assert_null(dkp_policy_get(p, "nosuch"));
	assert_null(dkp_policy_get(NULL, "shop-ed"));
	dkp_policy_free(p);
}

static void bad_policy_lines_name_file_and_line(void **st)
{
	static const struct { const char *text, *why; } bad[] = {
		{ "k\n", "want NAME SETTING=VALUE" },
		{ "k colour=blue\n", "unknown setting" },
		{ "k canonicalization=loose\n", "canonicalization" },
		{ "k canonicalization=simple canonicalization=relaxed\n", "once" },
		{ "k headers=To:Subject\n", "include From" },
		{ "k headers=From:DKIM-Signature\n", "invalid header name" },
		{ "k headers=From headers=To\n", "twice" },
		{ "k expire=soon\n", "expire" },
		{ "k expire=99999999999\n", "expire" },
		{ "k identity=nobody\n", "identity" },
		{ "k identity=a;b@x.example\n", "identity" },
		{ "k identity=a@x..example\n", "identity" },
		{ "k identity=a=b@%\n", "identity" },
		{ "k expire=1\nK expire=2\n", "two lines" },
		{ "k expire=\n", "SETTING=VALUE" },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dkp_policy *p = NULL;
		struct dkp_err err;
		int rc;

		put(bad[i].text);
		rc = dkp_policy_load(&p, path, &err);
		done();
		if (rc == DKP_OK || strstr(err.msg, bad[i].why) == NULL ||
		    strstr(err.msg, "/tmp/dkp_policy_") == NULL)
			fail_msg("'%s': got '%s', want '%s'", bad[i].text,
				 rc == DKP_OK ? "accepted" : err.msg, bad[i].why);
		assert_null(p);
	}
	{
		struct dkp_policy *p;
		struct dkp_err err;

		assert_int_equal(dkp_policy_load(&p, "/nonexistent/kp", &err), DKP_E_IO);
	}
}

static void stream_table_lookups(void **st)
{
	struct dkp_streams *s;
	const struct dkp_stream_ent *e;
	struct dkp_err err;

	(void)st;
	put("Transactional  esp.example:tx:/k/tx,ESP.example:txe:/k/txe\n"
	    ".news.example  esp.example:news:/k/news   # every subdomain\n"
	    "transactional  esp.example:other:/k/other  # the first line counts\n");
	assert_int_equal(dkp_streams_load(&s, path, &err), DKP_OK);
	done();
	assert_int_equal(dkp_streams_count(s), 3);
	e = dkp_streams_lookup(s, " TRANSACTIONAL\r\n", 16, 0);	/* a field value */
	assert_non_null(e);
	assert_int_equal(e->index, 0);
	assert_int_equal(e->nkeys, 2);
	assert_string_equal(e->keys[1].domain, "esp.example");
	assert_string_equal(e->keys[1].selector, "txe");
	assert_string_equal(e->keys[1].keyfile, "/k/txe");
	/* a sender's domain: its parents as .parent, only with domain_walk */
	e = dkp_streams_lookup(s, "a.b.news.example", 16, 1);
	assert_non_null(e);
	assert_string_equal(e->keys[0].selector, "news");
	assert_null(dkp_streams_lookup(s, "a.b.news.example", 16, 0));
	assert_null(dkp_streams_lookup(s, "news.example", 12, 1));
	assert_null(dkp_streams_lookup(s, "", 0, 1));
	assert_null(dkp_streams_lookup(NULL, "transactional", 13, 0));
	dkp_streams_free(s);
}

static void bad_stream_lines(void **st)
{
	static const struct { const char *text, *why; } bad[] = {
		{ "v\n", "want VALUE" },
		{ "v esp.example:s\n", "want VALUE" },
		{ "v esp.example:s:/k extra\n", "want VALUE" },
		{ "v esp..example:s:/k\n", "invalid domain or selector" },
		{ "v esp.example:s;x:/k\n", "invalid domain or selector" },
		{ "v a.example:s:/k,a.example:s:/k,a.example:s:/k,a.example:s:/k,"
		  "a.example:s:/k,a.example:s:/k,a.example:s:/k,a.example:s:/k,a.example:s:/k\n",
		  "at most 8" },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dkp_streams *s = NULL;
		struct dkp_err err;
		int rc;

		put(bad[i].text);
		rc = dkp_streams_load(&s, path, &err);
		done();
		if (rc == DKP_OK || strstr(err.msg, bad[i].why) == NULL)
			fail_msg("'%s': got '%s', want '%s'", bad[i].text,
				 rc == DKP_OK ? "accepted" : err.msg, bad[i].why);
		assert_null(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policy_lines_set_what_they_name),
		cmocka_unit_test(bad_policy_lines_name_file_and_line),
		cmocka_unit_test(stream_table_lookups),
		cmocka_unit_test(bad_stream_lines),
	};
	UNIT_RUN("test_policy", tests);
}
