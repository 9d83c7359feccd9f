/*
 * test_relay.c — the pure parts of dkimpress relay: the SMTP reply
 * parser and EHLO keywords (smtp_reply.c), dot-stuffing and envelope
 * removal (smtp_data.c), the retry schedule and the retry-state names
 * (relay_conf.c, relay_deliver.c, relay_queue.c).
 *
 * Inputs are copied into buffers of exactly their length (no NUL after
 * them), so a read past the end shows under ASan.
 */
#include "unit.h"

#include "conf/relay_conf.h"
#include "relay/relay_deliver.h"
#include "relay/relay_queue.h"
#include "relay/smtp_data.h"
#include "relay/smtp_reply.h"

/* dkp_smtp_reply_parse on an exact-size copy of s. */
static long parse(const char *s, struct dkp_smtp_reply *r)
{
	size_t n = strlen(s);
	char *c = malloc(n ? n : 1);
	long used;

	assert_non_null(c);
	memcpy(c, s, n);
	used = dkp_smtp_reply_parse(c, n, r);
	free(c);
	return used;
}

static const struct {
	const char *name, *in;
	long used;		/* 0: incomplete, -1: error */
	int code;
	const char *text;
} replies[] = {
	{ "one line", "250 2.0.0 ok\r\n", 14, 250, "2.0.0 ok" },
	{ "bare code", "354\r\n", 5, 354, "" },
	{ "bare LF", "221 bye\n", 8, 221, "bye" },
	{ "multi-line", "250-a.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n", 41, 250,
	  "a.test\nPIPELINING\nSIZE 10" },
	{ "two replies: the first only", "451 no\r\n250 ok\r\n", 8, 451, "no" },
	{ "incomplete line", "250 ok", 0, 0, "" },
	{ "incomplete multi-line", "250-a\r\n250-b\r\n", 0, 250, "" },
	{ "mixed codes", "250-a\r\n251 b\r\n", -1, 0, "" },
	{ "bad first digit", "650 x\r\n", -1, 0, "" },
	{ "bad second digit", "260 x\r\n", -1, 0, "" },
	{ "letters", "abc x\r\n", -1, 0, "" },
	{ "bad separator", "250x\r\n", -1, 0, "" },
	{ "too short", "25\r\n", -1, 0, "" },
};

static void test_reply_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		struct dkp_smtp_reply r;
		long used = parse(replies[i].in, &r);

		if (used != replies[i].used)
			fail_msg("%s: used %ld, want %ld", replies[i].name, used, replies[i].used);
		if (used > 0 && (r.code != replies[i].code || strcmp(r.text, replies[i].text)))
			fail_msg("%s: got %d '%s', want %d '%s'", replies[i].name, r.code, r.text,
				 replies[i].code, replies[i].text);
	}
}

static void test_reply_long_line(void **state)
{
	struct dkp_smtp_reply r;
	char *s = malloc(DKP_SMTP_MAX_LINE + 16);

	(void)state;
	memset(s, 'x', DKP_SMTP_MAX_LINE + 8);
	memcpy(s, "250 ", 4);
	s[DKP_SMTP_MAX_LINE + 8] = '\0';
	assert_int_equal(parse(s, &r), -1);	/* no LF yet, but too long */
	free(s);
}

/* Nothing read yet: the connection's buffer may still be NULL. */
static void test_reply_empty(void **state)
{
	struct dkp_smtp_reply r;

	(void)state;
	assert_int_equal(dkp_smtp_reply_parse(NULL, 0, &r), 0);
}

static void test_reply_str(void **state)
{
	struct dkp_smtp_reply r;
	char out[64];

	(void)state;
	assert_true(parse("550-5.1.1 no\r\n550 5.1.1 such\tuser\r\n", &r) > 0);
	dkp_smtp_reply_str(&r, out, sizeof(out));
	assert_string_equal(out, "550 5.1.1 no 5.1.1 such?user");
	dkp_smtp_reply_str(&r, out, 6);
	assert_string_equal(out, "550 5");
}

static void test_ehlo(void **state)
{
	struct dkp_smtp_reply r;
	struct dkp_smtp_ext x;

	(void)state;
	assert_true(parse("250-mx.test hello\r\n250-pipelining\r\n250-SIZE 1000\r\n"
			  "250-8BITMIME\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n"
			  "250-STARTTLS\r\n250 PIPELININGX\r\n", &r) > 0);
	dkp_smtp_ext_parse(&r, &x);
	assert_true(x.pipelining && x.chunking && x.eightbitmime && x.smtputf8 && x.starttls);
	assert_int_equal(x.size, 1000);
	assert_true(parse("250-mx.test PIPELINING\r\n250 SIZE\r\n", &r) > 0);
	dkp_smtp_ext_parse(&r, &x);
	/* the greeting line is not a keyword; SIZE without a number: 0 */
	assert_false(x.pipelining);
	assert_int_equal(x.size, 0);
}

/* dot-stuff s, compare with want */
static void stuffed(const char *s, size_t n, const char *want)
{
	struct dkp_buf b;
	char *c = malloc(n ? n : 1);

	assert_non_null(c);
	memcpy(c, s, n);
	dkp_buf_init(&b);
	dkp_smtp_dot_stuff(&b, c, n);
	if (b.len != strlen(want) || memcmp(b.p, want, b.len))
		fail_msg("dot-stuffing '%s': got '%.*s', want '%s'", s, (int)b.len, b.p, want);
	dkp_buf_free(&b);
	free(c);
}

static void test_dot_stuff(void **state)
{
	(void)state;
	stuffed("a\r\nb\r\n", 6, "a\r\nb\r\n.\r\n");
	stuffed(".a\r\n", 4, "..a\r\n.\r\n");
	stuffed("a\r\n.\r\nb\r\n", 9, "a\r\n..\r\nb\r\n.\r\n");
	stuffed("a\r\n..b\r\n", 8, "a\r\n...b\r\n.\r\n");
	stuffed("a.b\r\n x.\r\n", 10, "a.b\r\n x.\r\n.\r\n");
	stuffed("no end", 6, "no end\r\n.\r\n");
	stuffed("a\r\n.", 4, "a\r\n..\r\n.\r\n");
	stuffed("", 0, "\r\n.\r\n");
	stuffed("x\r\n\r\n.\r\n", 8, "x\r\n\r\n..\r\n.\r\n");
}

static void test_envelope(void **state)
{
	static const char f[] = "x-sender: <b@s.test>\r\nx-receiver: r1@a.test\r\n"
				"X-Receiver: <r2@b.test>\r\nFrom: a@c.test\r\n\r\n.body\r\n";
	struct dkp_relay_env e;
	struct dkp_err err;
	struct dkp_buf b;
	unsigned char keep[2] = { 0, 1 };

	(void)state;
	memset(&err, 0, sizeof(err));
	assert_int_equal(dkp_relay_env_parse(f, sizeof(f) - 1, &e, &err), DKP_OK);
	assert_int_equal(e.sender.len, 8);
	assert_memory_equal(e.sender.p, "b@s.test", 8);
	assert_int_equal(e.nrcpt, 2);
	assert_memory_equal(e.rcpt[0].p, "r1@a.test", 9);
	assert_memory_equal(e.rcpt[1].p, "r2@b.test", 9);
	/* the message: every byte after the envelope lines, untouched */
	assert_int_equal(e.msg_len, 25);
	assert_memory_equal(e.msg, "From: a@c.test\r\n\r\n.body\r\n", 25);
	dkp_buf_init(&b);
	dkp_relay_env_lines(&b, &e, keep);
	assert_int_equal(b.len, strlen("x-sender: b@s.test\r\nx-receiver: r2@b.test\r\n"));
	assert_memory_equal(b.p, "x-sender: b@s.test\r\nx-receiver: r2@b.test\r\n", b.len);
	dkp_buf_free(&b);
	dkp_relay_env_free(&e);
}

static void test_envelope_null_and_many(void **state)
{
	struct dkp_buf in, again;
	struct dkp_relay_env e, e2;
	struct dkp_err err;
	int i;

	(void)state;
	dkp_buf_init(&in);
	dkp_buf_adds(&in, "x-sender: <>\r\n");
	for (i = 0; i < 40; i++)	/* more than DKP_ENVELOPE_KEEP_RCPT */
		dkp_buf_printf(&in, "x-receiver: r%d@a.test\r\n", i);
	dkp_buf_adds(&in, "From: a@c.test\r\n\r\nx\r\n");
	memset(&err, 0, sizeof(err));
	assert_int_equal(dkp_relay_env_parse(in.p, in.len, &e, &err), DKP_OK);
	assert_int_equal(e.sender.len, 0);
	assert_int_equal(e.nrcpt, 40);
	assert_memory_equal(e.rcpt[39].p, "r39@a.test", 10);
	/* the rewritten lines read back the same */
	dkp_buf_init(&again);
	dkp_relay_env_lines(&again, &e, NULL);
	dkp_buf_add(&again, e.msg, e.msg_len);
	assert_int_equal(again.len, in.len);
	assert_memory_equal(again.p, in.p, in.len);
	assert_int_equal(dkp_relay_env_parse(again.p, again.len, &e2, &err), DKP_OK);
	assert_int_equal(e2.nrcpt, 40);
	dkp_relay_env_free(&e2);
	dkp_relay_env_free(&e);
	dkp_buf_free(&again);
	dkp_buf_free(&in);
}

static void test_envelope_refused(void **state)
{
	static const char none[] = "From: a@c.test\r\n\r\nx\r\n";
	static const char bad[] = "x-receiver: r@a.test\r\nFrom: a@c.test\r\n\r\n";
	struct dkp_relay_env e;
	struct dkp_err err;

	(void)state;
	memset(&err, 0, sizeof(err));
	assert_int_equal(dkp_relay_env_parse(none, sizeof(none) - 1, &e, &err), DKP_E_SYNTAX);
	assert_false(err.temp);
	assert_non_null(strstr(err.msg, "no x-sender"));
	assert_int_equal(dkp_relay_env_parse(bad, sizeof(bad) - 1, &e, &err), DKP_E_SYNTAX);
}

static void test_8bit(void **state)
{
	(void)state;
	assert_false(dkp_smtp_has_8bit("plain\r\n", 7));
	assert_true(dkp_smtp_has_8bit("caf\xc3\xa9", 5));
	assert_false(dkp_smtp_has_8bit("", 0));
}

static void test_schedule(void **state)
{
	struct dkp_relay_sched s;

	(void)state;
	assert_int_equal(dkp_relay_sched_parse("30s, 5m,1h ,2d", &s), 0);
	assert_int_equal(s.n, 4);
	assert_int_equal(dkp_relay_retry_delay(&s, 1), 30);
	assert_int_equal(dkp_relay_retry_delay(&s, 2), 300);
	assert_int_equal(dkp_relay_retry_delay(&s, 3), 3600);
	assert_int_equal(dkp_relay_retry_delay(&s, 4), 2 * 86400);
	assert_int_equal(dkp_relay_retry_delay(&s, 99), 2 * 86400);	/* last repeats */
	assert_int_equal(dkp_relay_sched_parse("7", &s), 0);
	assert_int_equal(dkp_relay_retry_delay(&s, 1), 7);
	assert_int_equal(dkp_relay_sched_parse("", &s), -1);
	assert_int_equal(dkp_relay_sched_parse("5x", &s), -1);
	assert_int_equal(dkp_relay_sched_parse("0s", &s), -1);
	assert_int_equal(dkp_relay_sched_parse("m", &s), -1);
	assert_int_equal(dkp_relay_duration("90"), 90);
	assert_int_equal(dkp_relay_duration("2h"), 7200);
	assert_int_equal(dkp_relay_duration("-1"), -1);
	assert_int_equal(dkp_relay_duration("1hh"), -1);
}

static void test_state_names(void **state)
{
	char id[DKP_RQ_NAME_MAX], name[DKP_RQ_NAME_MAX];
	struct dkp_rq_state st = { 3, 1800000000, 1799990000 }, got;

	(void)state;
	dkp_rq_name_make(name, "1796.M1P2Q3.host", &st);
	assert_string_equal(name, "1796.M1P2Q3.host~3~1800000000~1799990000");
	assert_int_equal(dkp_rq_name_parse(name, id, &got), 0);
	assert_string_equal(id, "1796.M1P2Q3.host");
	assert_int_equal(got.attempts, 3);
	assert_int_equal(got.next, 1800000000);
	assert_int_equal(got.first, 1799990000);
	assert_int_equal(dkp_rq_name_parse("plain.id", id, &got), 0);
	assert_int_equal(got.attempts, 0);
	assert_int_equal(got.next, 0);
	assert_int_equal(dkp_rq_name_parse("id~1~2", id, &got), -1);
	assert_int_equal(dkp_rq_name_parse("id~1~2~3x", id, &got), -1);
	assert_int_equal(dkp_rq_name_parse(".hidden", id, &got), -1);
	assert_int_equal(dkp_rq_name_parse("~1~2~3", id, &got), -1);
	assert_int_equal(dkp_rq_name_parse("a/b", id, &got), -1);
}

static void test_conf(void **state)
{
	struct dkp_relay_config r;

	(void)state;
	dkp_relay_conf_init(&r);
	assert_int_equal(r.connections, DKP_DEF_RELAY_CONNECTIONS);
	assert_int_equal(r.tls_verify, 1);
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_HOST, "mx.test:2525"));
	assert_string_equal(r.host, "mx.test");
	assert_int_equal(r.port, 2525);
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_HOST, "[::1]:24"));
	assert_string_equal(r.host, "::1");
	assert_int_equal(r.port, 24);
	assert_non_null(dkp_relay_conf_apply(&r, DKP_RK_HOST, "::1:24"));
	assert_non_null(dkp_relay_conf_apply(&r, DKP_RK_HOST, "mx:0"));
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_PROTOCOL, "LMTP"));
	assert_true(r.lmtp);
	assert_non_null(dkp_relay_conf_apply(&r, DKP_RK_TLS, "maybe"));
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_TLS, "require"));
	assert_int_equal(r.tls, DKP_RELAY_TLS_REQUIRE);
	assert_non_null(dkp_relay_conf_apply(&r, DKP_RK_CONNECTIONS, "0"));
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_TIMEOUT, "2s"));
	assert_int_equal(r.timeout, 2);
	assert_int_equal(dkp_relay_conf_key("relay_max_age"), DKP_RK_MAX_AGE);
	assert_int_equal(dkp_relay_conf_key("relay_nope"), -1);
	assert_int_equal(dkp_relay_conf_key("relay_consumer"), DKP_RK_CONSUMER);
	assert_non_null(dkp_relay_conf_apply(&r, DKP_RK_CONSUMER, "a.b"));
	assert_null(dkp_relay_conf_apply(&r, DKP_RK_CONSUMER, "relay-2"));
	assert_string_equal(r.consumer, "relay-2");
	dkp_relay_conf_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_reply_long_line),
		cmocka_unit_test(test_reply_empty),
		cmocka_unit_test(test_reply_str),
		cmocka_unit_test(test_ehlo),
		cmocka_unit_test(test_dot_stuff),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_envelope_null_and_many),
		cmocka_unit_test(test_envelope_refused),
		cmocka_unit_test(test_8bit),
		cmocka_unit_test(test_schedule),
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_conf),
	};

	UNIT_RUN("test_relay", tests);
}
