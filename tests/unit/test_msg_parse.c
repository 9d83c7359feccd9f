/* test_msg_parse.c — header/body split, field index, refusals, limits. */
#include "unit.h"

#include "dkim/msg_parse.h"

struct parsed {
	struct dkp_msg m;
	struct dkp_err err;
	int rc;
};

static void parse(struct parsed *p, const char *s, const struct dkp_limits *lim)
{
	dkp_msg_init(&p->m);
	memset(&p->err, 0, sizeof(p->err));
	p->rc = dkp_msg_parse(&p->m, s, strlen(s), lim, &p->err);
}

static void crlf_message_is_not_copied(void **st)
{
	static const char s[] = "From: a@example.com\r\nTo: b@example.net\r\n\r\nbody\r\n";
	struct parsed p;

	(void)st;
	parse(&p, s, NULL);
	assert_int_equal(p.rc, DKP_OK);
	assert_ptr_equal(p.m.data, s);
	assert_int_equal(p.m.nfields, 2);
	assert_int_equal(p.m.body_off, strlen(s) - 6);
	assert_int_equal(p.m.from_idx, 0);
	dkp_msg_fini(&p.m);
}

static void bare_and_mixed_lf_become_crlf(void **st)
{
	static const char s[] = "From: a@example.com\nTo: b@example.net\r\n\nline1\nline2\r\nbare\rcr\n";
	static const char want[] = "From: a@example.com\r\nTo: b@example.net\r\n\r\nline1\r\nline2\r\nbare\rcr\r\n";
	struct parsed p;

	(void)st;
	parse(&p, s, NULL);
	assert_int_equal(p.rc, DKP_OK);
	assert_bytes_equal(p.m.data, p.m.len, want, strlen(want));
	assert_int_equal(p.m.nfields, 2);
	assert_bytes_equal(p.m.data + p.m.body_off, p.m.len - p.m.body_off,
			   "line1\r\nline2\r\nbare\rcr\r\n", 23);
	dkp_msg_fini(&p.m);
}

static void folded_lines_belong_to_their_field(void **st)
{
	static const char s[] = "Subject: one\r\n two\r\n\tthree\r\nFrom: a@example.com\r\n\r\n";
	struct parsed p;
	const struct dkp_field *f;

	(void)st;
	parse(&p, s, NULL);
	assert_int_equal(p.rc, DKP_OK);
	assert_int_equal(p.m.nfields, 2);
	f = &p.m.fields[0];
	assert_bytes_equal(p.m.data + f->off, f->len,
			   "Subject: one\r\n two\r\n\tthree\r\n", 28);
	assert_int_equal(f->name_len, 7);
	assert_int_equal(p.m.from_idx, 1);
	dkp_msg_fini(&p.m);
}

/* Obsolete "Name WSP :" (RFC 5322 4.5): dkimpy cannot parse it and
 * libopendkim does not see "From<TAB>:" as From, so it is refused, with
 * the field named. */
static void whitespace_before_colon_is_refused(void **st)
{
	static const struct {
		const char *input, *name;
	} cases[] = {
		{ "From: a@example.com\r\nSubject : x\r\n\r\nbody\r\n", "'Subject'" },
		{ "From\t: a@example.com\r\nSubject: x\r\n\r\n", "'From'" },
		{ "From : a@example.com\r\n\r\n", "'From'" },
		{ "From: a@example.com\nX-Tab \t: y\n\n", "'X-Tab'" },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parsed p;

		parse(&p, cases[i].input, NULL);
		if (p.rc != DKP_E_SYNTAX || strstr(p.err.msg, cases[i].name) == NULL ||
		    strstr(p.err.msg, "white space before its colon") == NULL)
			fail_msg("case %zu: got %d '%s', want a refusal naming %s",
				 i, p.rc, p.err.msg, cases[i].name);
		assert_int_equal(dkp_err_exit_code(&p.err), 65);
		dkp_msg_fini(&p.m);
	}
}

static void header_names_match_case_insensitively(void **st)
{
	struct parsed p;

	(void)st;
	parse(&p, "fRoM: a@example.com\r\nTO: x\r\nto: y\r\n\r\n", NULL);
	assert_int_equal(p.rc, DKP_OK);
	assert_int_equal(dkp_msg_count(&p.m, "To", 2), 2);
	assert_int_equal(dkp_msg_count(&p.m, "Cc", 2), 0);
	dkp_msg_fini(&p.m);
}

/* A message of header fields only is closed as it travels: the CRLF SMTP
 * adds to an unterminated last line, and the empty line (which changes no
 * RFC 6376 hash, but libopendkim and mailauth need). */
static void headers_without_body_are_closed(void **st)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "From: a@example.com\r\nSubject: x",
		  "From: a@example.com\r\nSubject: x\r\n\r\n" },
		{ "From: a@example.com\r\nSubject: x\r\n",
		  "From: a@example.com\r\nSubject: x\r\n\r\n" },
		{ "From: a@example.com\nSubject: x",
		  "From: a@example.com\r\nSubject: x\r\n\r\n" },
		{ "From: a@example.com\nSubject: x\n folded",
		  "From: a@example.com\r\nSubject: x\r\n folded\r\n\r\n" },
		{ "Subject: x\r\nFrom: a@example.com",
		  "Subject: x\r\nFrom: a@example.com\r\n\r\n" },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parsed p;
		const struct dkp_field *f;

		parse(&p, cases[i].in, NULL);
		assert_int_equal(p.rc, DKP_OK);
		assert_bytes_equal(p.m.data, p.m.len, cases[i].want,
				   strlen(cases[i].want));
		assert_int_equal(p.m.body_off, p.m.len);
		assert_int_equal(p.m.nfields, 2);
		/* the last field ends in its CRLF, as every other does */
		f = &p.m.fields[1];
		assert_int_equal(f->off + f->len, p.m.len - 2);
		assert_bytes_equal(p.m.data + f->off + f->len - 2, 2, "\r\n", 2);
		dkp_msg_fini(&p.m);
	}
}

/* The added bytes count against max_header_bytes. */
static void closing_the_header_block_respects_the_limit(void **st)
{
	static const char s[] = "From: a@example.com\r\nSubject: x";
	struct dkp_limits lim;
	struct parsed p;

	(void)st;
	dkp_limits_default(&lim);
	lim.max_header_bytes = strlen(s) + 3;	/* 4 would be needed */
	parse(&p, s, &lim);
	assert_int_equal(p.rc, DKP_E_LIMIT);
	dkp_msg_fini(&p.m);
	lim.max_header_bytes = strlen(s) + 4;
	parse(&p, s, &lim);
	assert_int_equal(p.rc, DKP_OK);
	dkp_msg_fini(&p.m);
}

/* Each refusal: input, expected status, a word the reason must contain. */
static const struct {
	const char *name, *input;
	enum dkp_status st;
	const char *reason;
} refusals[] = {
	{ "no From field", "To: b@example.net\r\n\r\nx\r\n", DKP_E_FROM, "no From" },
	{ "two From fields", "From: a@x.example\r\nFrom: b@y.example\r\n\r\n", DKP_E_FROM, "8.15" },
	{ "two From, different case", "From: a@x.example\r\nFROM: b@y.example\r\n\r\n", DKP_E_FROM, "From" },
	{ "empty message", "", DKP_E_SYNTAX, "empty" },
	{ "no header block", "\r\nbody only\r\n", DKP_E_SYNTAX, "no header" },
	{ "starts with continuation", " folded\r\nFrom: a@x.example\r\n\r\n", DKP_E_SYNTAX, "continuation" },
	{ "mbox From_ line", "From alice@x.example Tue Nov 24 2026\r\nFrom: a@x.example\r\n\r\n", DKP_E_SYNTAX, "line 1" },
	{ "line without colon", "From: a@x.example\r\nnot a field\r\n\r\n", DKP_E_SYNTAX, "line 2" },
	{ "empty field name", "From: a@x.example\r\n: value\r\n\r\n", DKP_E_SYNTAX, "not a header field" },
	{ "control char in name", "From: a@x.example\r\nX\001Y: v\r\n\r\n", DKP_E_SYNTAX, "not a header field" },
};

static void malformed_messages_are_refused(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		struct parsed p;

		parse(&p, refusals[i].input, NULL);
		if (p.rc != (int)refusals[i].st ||
		    strstr(p.err.msg, refusals[i].reason) == NULL)
			fail_msg("%s: got status %d (%s), want %d with '%s'",
				 refusals[i].name, p.rc, p.err.msg,
				 refusals[i].st, refusals[i].reason);
		assert_int_equal(dkp_err_exit_code(&p.err), 65);
		dkp_msg_fini(&p.m);
	}
}

static void nul_in_header_block_is_refused(void **st)
{
	static const char s[] = "From: a@x.example\r\nSubject: a\0b\r\n\r\nbody\0ok\r\n";
	struct dkp_msg m;
	struct dkp_err err;

	(void)st;
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, s, sizeof(s) - 1, NULL, &err), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "NUL"));
	dkp_msg_fini(&m);
}

static void nul_in_body_is_accepted(void **st)
{
	static const char s[] = "From: a@x.example\r\n\r\nbody\0ok\r\n";
	struct dkp_msg m;
	struct dkp_err err;

	(void)st;
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, s, sizeof(s) - 1, NULL, &err), DKP_OK);
	assert_int_equal(m.len - m.body_off, 9);
	dkp_msg_fini(&m);
}

static void limits_give_errors_not_crashes(void **st)
{
	struct dkp_limits lim;
	struct parsed p;
	char big[4096];
	size_t i, o = 0;

	(void)st;
	dkp_limits_default(&lim);
	lim.max_fields = 3;
	parse(&p, "From: a@x.example\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &lim);
	assert_int_equal(p.rc, DKP_E_LIMIT);
	assert_int_equal(dkp_err_exit_code(&p.err), 65);
	dkp_msg_fini(&p.m);

	dkp_limits_default(&lim);
	lim.max_header_bytes = 100;
	o += (size_t)snprintf(big, sizeof(big), "From: a@x.example\r\nSubject: ");
	for (i = 0; i < 200; i++)
		big[o++] = 'x';
	memcpy(big + o, "\r\n\r\nbody\r\n", 11);
	parse(&p, big, &lim);
	assert_int_equal(p.rc, DKP_E_LIMIT);
	assert_non_null(strstr(p.err.msg, "100"));
	dkp_msg_fini(&p.m);

	dkp_limits_default(&lim);
	lim.max_message_bytes = 10;
	parse(&p, "From: a@x.example\r\n\r\n", &lim);
	assert_int_equal(p.rc, DKP_E_LIMIT);
	dkp_msg_fini(&p.m);
}

static void parse_reuses_storage(void **st)
{
	struct dkp_msg m;
	struct dkp_err err;
	static const char a[] = "From: a@x.example\nSubject: 1\n\nx\n";
	static const char b[] = "From: b@y.example\r\n\r\n";

	(void)st;
	dkp_msg_init(&m);
	assert_int_equal(dkp_msg_parse(&m, a, strlen(a), NULL, &err), DKP_OK);
	assert_int_equal(m.nfields, 2);
	assert_int_equal(dkp_msg_parse(&m, b, strlen(b), NULL, &err), DKP_OK);
	assert_int_equal(m.nfields, 1);
	assert_ptr_equal(m.data, b);
	dkp_msg_fini(&m);
}

static const struct {
	const char *from, *domain;
} froms[] = {
	{ "From: a@Example.COM\r\n", "example.com" },
	{ "From: Alice <alice@mail.customer.example>\r\n", "mail.customer.example" },
	{ "From: \"Bob @ Home\" <bob@home.example>\r\n", "home.example" },
	{ "From: bob@comment.example (Bob <x@y.example>)\r\n", "comment.example" },
	{ "From: \"quoted@local\"@quoted.example\r\n", "quoted.example" },
	{ "From: Folded\r\n <f@folded.example>\r\n", "folded.example" },
	{ "From: first@one.example, second@two.example\r\n", "one.example" },
	{ "From: group: g@group.example;\r\n", "group.example" },
	{ "From: trailing@dot.example.\r\n", "dot.example" },
};

static void from_domain_is_extracted(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		char buf[512], dom[256];
		struct parsed p;
		struct dkp_err err;

		snprintf(buf, sizeof(buf), "%s\r\n", froms[i].from);
		parse(&p, buf, NULL);
		assert_int_equal(p.rc, DKP_OK);
		if (dkp_msg_from_domain(&p.m, dom, sizeof(dom), &err) != DKP_OK ||
		    strcmp(dom, froms[i].domain) != 0)
			fail_msg("%s: got '%s' (%s), want '%s'", froms[i].from,
				 dom, err.msg, froms[i].domain);
		dkp_msg_fini(&p.m);
	}
}

/* dkp_domain_ok: RFC 6376 3.1 selector grammar (sub-domains, no '_'). */
static void domain_grammar(void **st)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
		{ "example.com", 1 }, { "s2026", 1 }, { "a-b.c-d.example", 1 },
		{ "xn--exmple-cua.com", 1 }, { "0.example", 1 },
		{ "", 0 }, { "a..b", 0 }, { ".example", 0 }, { "example.", 0 },
		{ "-bad-.example", 0 }, { "bad-.example", 0 }, { "a.-b", 0 },
		{ "under_score.example", 0 }, { "ex\xc3\xa4mple.com", 0 },
		{ "a b.example", 0 }, { "a;b", 0 }, { "a\r\nb", 0 },
	};
	char label[300];
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (dkp_domain_ok(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
			fail_msg("dkp_domain_ok('%s') != %d", cases[i].s, cases[i].ok);
	memset(label, 'a', 63);
	strcpy(label + 63, ".example");
	assert_true(dkp_domain_ok(label, strlen(label)));
	memset(label, 'a', 248);	/* a 248-character label */
	strcpy(label + 248, ".c");
	assert_false(dkp_domain_ok(label, strlen(label)));
}

static void from_without_domain_is_refused(void **st)
{
	static const char *bad[] = {
		"From: undisclosed\r\n\r\n",
		"From: <>\r\n\r\n",
		"From: a@[192.0.2.1]\r\n\r\n",
		"From: a@bad_domain!.example\r\n\r\n",
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parsed p;
		char dom[256];
		struct dkp_err err;

		parse(&p, bad[i], NULL);
		assert_int_equal(p.rc, DKP_OK);
		if (dkp_msg_from_domain(&p.m, dom, sizeof(dom), &err) != DKP_E_FROM)
			fail_msg("'%s' gave a domain '%s'", bad[i], dom);
		dkp_msg_fini(&p.m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crlf_message_is_not_copied),
		cmocka_unit_test(bare_and_mixed_lf_become_crlf),
		cmocka_unit_test(folded_lines_belong_to_their_field),
		cmocka_unit_test(whitespace_before_colon_is_refused),
		cmocka_unit_test(header_names_match_case_insensitively),
		cmocka_unit_test(headers_without_body_are_closed),
		cmocka_unit_test(closing_the_header_block_respects_the_limit),
		cmocka_unit_test(malformed_messages_are_refused),
		cmocka_unit_test(nul_in_header_block_is_refused),
		cmocka_unit_test(nul_in_body_is_accepted),
		cmocka_unit_test(limits_give_errors_not_crashes),
		cmocka_unit_test(parse_reuses_storage),
		cmocka_unit_test(from_domain_is_extracted),
		cmocka_unit_test(from_without_domain_is_refused),
		cmocka_unit_test(domain_grammar),
	};

	UNIT_RUN("test_msg_parse", tests);
}
