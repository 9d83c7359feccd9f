/*
 * test_relay_js_rec.c — the JetStream relay's outcome records without a
 * server (relay_js_rec.c): the bucket name of a consumer, a record built
 * and walked back item by item, line breaks in values neutralized, the
 * null sender, and malformed records refused.
 */
#include "unit.h"

#include "relay/relay_js_rec.h"

static void test_bucket_name(void **state)
{
	static const struct {
		const char *consumer, *want;
	} cases[] = {
		{ "dkimpress-relay", "dkimpress-relay-records" },
		{ "relay_B2", "relay_B2-records" },
		{ "odd:name/with~chars", "odd_name_with_chars-records" },
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		dkp_rjrec_bucket_name(out, sizeof(out), cases[i].consumer);
		assert_string_equal(out, cases[i].want);
	}
}

/* Walk b; the items as "T a|v" lines into out. -1 on a malformed one. */
static int walk(struct dkp_buf *b, char *out, size_t outsz)
{
	const char *a, *v;
	size_t pos = 0, o = 0;
	int t;

	out[0] = '\0';
	while ((t = dkp_rjrec_next(b, &pos, &a, &v)) > 0)
		o += (size_t)snprintf(out + o, outsz - o, "%c %s|%s\n", t, a, v ? v : "-");
	return t;
}

static void test_round_trip(void **state)
{
	struct dkp_buf b;
	char got[1024];

	(void)state;
	dkp_buf_init(&b);
	dkp_rjrec_begin(&b, 42, "b@c.example", 11);
	dkp_rjrec_item(&b, 'P', "dkim.failed", 11, "ID~f");
	dkp_rjrec_item(&b, 'R', "p550x@x.test", 12, NULL);
	dkp_rjrec_item(&b, 'H', "X-Dkimpress-Error", 17, "<p550x@x.test>: 550 no such user");
	dkp_rjrec_item(&b, 'P', "dkim.out", 8, "ID~r1");
	dkp_rjrec_item(&b, 'R', "\"a b\"@x.test", 12, NULL);
	dkp_rjrec_item(&b, 'H', "X-Dkimpress-Next", 16, "1796615000");
	assert_int_equal(strncmp(b.p, "dkimpress-relay-record 1 42\n", 28), 0);
	assert_int_equal(walk(&b, got, sizeof(got)), 0);
	assert_string_equal(got,
			    "S b@c.example|-\n"
			    "P dkim.failed|ID~f\n"
			    "R p550x@x.test|-\n"
			    "H X-Dkimpress-Error|<p550x@x.test>: 550 no such user\n"
			    "P dkim.out|ID~r1\n"
			    "R \"a b\"@x.test|-\n"
			    "H X-Dkimpress-Next|1796615000\n");
	dkp_buf_free(&b);
}

static void test_null_sender_and_breaks(void **state)
{
	struct dkp_buf b;
	char got[512];

	(void)state;
	dkp_buf_init(&b);
	dkp_rjrec_begin(&b, 7, "", 0);
	dkp_rjrec_item(&b, 'P', "s", 1, "id");
	dkp_rjrec_item(&b, 'H', "X-E", 3, "one\r\nH Injected value\n");
	assert_int_equal(walk(&b, got, sizeof(got)), 0);
	assert_string_equal(got, "S <>|-\nP s|id\nH X-E|one??H Injected value?\n");
	dkp_buf_free(&b);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"dkimpress-relay-record 1 1\nX what\n",		/* unknown type */
		"dkimpress-relay-record 1 1\nP subject-only\n",	/* no ID */
		"dkimpress-relay-record 1 1\nR x@y",		/* no line end */
		"dkimpress-relay-record 1 1",			/* no first line end */
		"dkimpress-relay-record 1 1\nRx@y\n",		/* no space */
	};
	struct dkp_buf b;
	char got[256];
	size_t i;

	(void)state;
	dkp_buf_init(&b);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		dkp_buf_reset(&b);
		dkp_buf_adds(&b, bad[i]);
		assert_int_equal(walk(&b, got, sizeof(got)), -1);
	}
	dkp_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_name),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_null_sender_and_breaks),
		cmocka_unit_test(test_malformed),
	};

	UNIT_RUN("test_relay_js_rec", tests);
}
