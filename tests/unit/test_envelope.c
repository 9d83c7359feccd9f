/*
 * test_envelope.c — pickup-directory envelope lines (x-sender,
 * x-receiver): what is split off, what is left to the message, refusals.
 *
 * Every input is copied into a malloc'd buffer of exactly its length, with
 * no NUL after it, so a read past the end shows up under ASan.
 */
#include "unit.h"

#include "dkim/envelope.h"
#include "dkim/msg_parse.h"

/* Run dkp_envelope_split on an exact-size copy of s[0..n). */
static int split(const char *s, size_t n, struct dkp_envelope *env,
		 struct dkp_err *err, char **copy)
{
	*copy = malloc(n ? n : 1);
	assert_non_null(*copy);
	memcpy(*copy, s, n);
	memset(err, 0, sizeof(*err));
	return dkp_envelope_split(*copy, n, env, err);
}

/*
 * Accepted inputs: the envelope part, the message after it, what must be
 * found. The input is env followed by msg; env.len must be strlen(env).
 */
static const struct {
	const char *name, *env, *msg;
	const char *sender;		/* "" for the null sender */
	size_t nrcpt;
	const char *rcpt[3];		/* the first ones */
	int crlf;
	const char *from;		/* From domain dkp_msg_parse must see */
} accepted[] = {
	{ "LF, one receiver",
	  "x-sender: a@s.example\nx-receiver: b@r.example\n",
	  "From: Alice <alice@customer.example>\nSubject: hi\n\nbody\n",
	  "a@s.example", 1, { "b@r.example" }, 0, "customer.example" },
	{ "CRLF, one receiver",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example\r\n",
	  "From: alice@customer.example\r\n\r\nbody\r\n",
	  "a@s.example", 1, { "b@r.example" }, 1, "customer.example" },
	{ "CRLF, angle brackets",
	  "x-sender: <bounce+123@s.example>\r\nx-receiver: <b@r.example>\r\n",
	  "From: alice@customer.example\r\n\r\nbody\r\n",
	  "bounce+123@s.example", 1, { "b@r.example" }, 1, "customer.example" },
	{ "upper-case names",
	  "X-SENDER: a@s.example\r\nX-RECEIVER: b@r.example\r\n",
	  "From: alice@customer.example\r\n\r\n",
	  "a@s.example", 1, { "b@r.example" }, 1, "customer.example" },
	{ "mixed-case names, no space after the colon",
	  "X-Sender:a@s.example\nx-Receiver:<b@r.example>\n",
	  "From: alice@customer.example\n\n",
	  "a@s.example", 1, { "b@r.example" }, 0, "customer.example" },
	{ "three receivers, LF",
	  "x-sender: a@s.example\nx-receiver: one@r.example\n"
	  "X-Receiver: <two@r.example>\nx-receiver: three@q.example\n",
	  "From: alice@customer.example\nTo: x@y.example\n\nbody\n",
	  "a@s.example", 3,
	  { "one@r.example", "two@r.example", "three@q.example" }, 0,
	  "customer.example" },
	{ "three receivers, CRLF",
	  "x-sender: a@s.example\r\nx-receiver: one@r.example\r\n"
	  "x-receiver: two@r.example\r\nx-receiver: three@q.example\r\n",
	  "From: alice@customer.example\r\n\r\nbody\r\n",
	  "a@s.example", 3,
	  { "one@r.example", "two@r.example", "three@q.example" }, 1,
	  "customer.example" },
	{ "null sender <>",
	  "x-sender: <>\r\nx-receiver: b@r.example\r\n",
	  "From: alice@customer.example\r\n\r\n",
	  "", 1, { "b@r.example" }, 1, "customer.example" },
	{ "empty sender",
	  "x-sender:\r\nx-receiver: b@r.example\r\n",
	  "From: alice@customer.example\r\n\r\n",
	  "", 1, { "b@r.example" }, 1, "customer.example" },
	{ "empty sender with white space",
	  "x-sender: \t\nx-receiver: b@r.example\n",
	  "From: alice@customer.example\n\n",
	  "", 1, { "b@r.example" }, 0, "customer.example" },
	{ "white space around the address is not part of it",
	  "x-sender:\t a@s.example \t\r\nx-receiver:  <b@r.example>  \r\n",
	  "From: alice@customer.example\r\n\r\n",
	  "a@s.example", 1, { "b@r.example" }, 1, "customer.example" },
	{ "mixed CRLF and LF lines",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example\n",
	  "From: alice@customer.example\r\n\r\n",
	  "a@s.example", 1, { "b@r.example" }, 0, "customer.example" },
	{ "8-bit address (SMTPUTF8)",
	  "x-sender: j\xc3\xb6rg@s.example\nx-receiver: b@b\xc3\xbc" "cher.example\n",
	  "From: alice@customer.example\n\n",
	  "j\xc3\xb6rg@s.example", 1, { "b@b\xc3\xbc" "cher.example" }, 0,
	  "customer.example" },
	{ "envelope lines and nothing after them",
	  "x-sender: a@s.example\nx-receiver: b@r.example\n", "",
	  "a@s.example", 1, { "b@r.example" }, 0, NULL },
	{ "x-receiver among the header fields is a header field",
	  "x-sender: a@s.example\nx-receiver: b@r.example\n",
	  "From: alice@customer.example\nx-receiver: c@r.example\n\n",
	  "a@s.example", 1, { "b@r.example" }, 0, "customer.example" },
	{ "x-sender among the header fields is a header field",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example\r\n",
	  "From: alice@customer.example\r\nX-Sender: Alice <x@y.example>\r\n\r\n",
	  "a@s.example", 1, { "b@r.example" }, 1, "customer.example" },
	/* no envelope */
	{ "no envelope, CRLF", "",
	  "From: alice@customer.example\r\nSubject: x\r\n\r\nbody\r\n",
	  NULL, 0, { NULL }, 0, "customer.example" },
	{ "no envelope, LF", "",
	  "Subject: x\nFrom: alice@customer.example\n\nbody\n",
	  NULL, 0, { NULL }, 0, "customer.example" },
	{ "no envelope: malformed x- lines after the first field", "",
	  "From: alice@customer.example\r\nx-sender: A B <a b>\r\n"
	  "x-receiver: <>\r\nx-sender: second\r\n\r\n",
	  NULL, 0, { NULL }, 0, "customer.example" },
	{ "no envelope: X-Sender-Id is another name", "",
	  "X-Sender-Id: 42\r\nFrom: alice@customer.example\r\n\r\n",
	  NULL, 0, { NULL }, 0, "customer.example" },
	{ "no envelope: X-Receivers is another name", "",
	  "X-Receivers: b@r.example\r\nFrom: alice@customer.example\r\n\r\n",
	  NULL, 0, { NULL }, 0, "customer.example" },
	{ "no envelope: empty input", "", "", NULL, 0, { NULL }, 0, NULL },
};

static void envelopes_are_split_off(void **st)
{
	size_t i, j;

	(void)st;
	for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		char in[1024], *copy, dom[256];
		size_t el = strlen(accepted[i].env), ml = strlen(accepted[i].msg);
		struct dkp_envelope env;
		struct dkp_err err;
		struct dkp_msg m;
		int rc;

		memcpy(in, accepted[i].env, el);
		memcpy(in + el, accepted[i].msg, ml);
		rc = split(in, el + ml, &env, &err, &copy);
		if (rc != DKP_OK)
			fail_msg("%s: status %d (%s)", accepted[i].name, rc,
				 err.msg);
		if (env.len != el)
			fail_msg("%s: env.len %zu, want %zu", accepted[i].name,
				 env.len, el);
		if (env.nrcpt != accepted[i].nrcpt)
			fail_msg("%s: nrcpt %zu, want %zu", accepted[i].name,
				 env.nrcpt, accepted[i].nrcpt);
		if (el == 0) {
			if (env.nlines != 0 || env.sender.len != 0 || env.crlf)
				fail_msg("%s: no envelope, but fields set",
					 accepted[i].name);
		} else {
			if (env.nlines != 1 + env.nrcpt)
				fail_msg("%s: nlines %zu, want %zu",
					 accepted[i].name, env.nlines,
					 1 + env.nrcpt);
			if (env.crlf != accepted[i].crlf)
				fail_msg("%s: crlf %d, want %d", accepted[i].name,
					 env.crlf, accepted[i].crlf);
			if (accepted[i].sender[0] == '\0') {	/* null sender */
				assert_int_equal(env.sender.len, 0);
				assert_null(env.sender.p);
			} else {	/* points into the caller's buffer */
				assert_bytes_equal(env.sender.p, env.sender.len,
						   accepted[i].sender,
						   strlen(accepted[i].sender));
				assert_true(env.sender.p >= copy &&
					    env.sender.p < copy + el);
			}
			for (j = 0; j < env.nrcpt && j < 3; j++)
				assert_bytes_equal(env.rcpt[j].p, env.rcpt[j].len,
						   accepted[i].rcpt[j],
						   strlen(accepted[i].rcpt[j]));
		}
		if (accepted[i].from != NULL) {
			/* the message after the envelope: the real From */
			dkp_msg_init(&m);
			rc = dkp_msg_parse(&m, copy + env.len,
					   el + ml - env.len, NULL, &err);
			if (rc != DKP_OK ||
			    dkp_msg_from_domain(&m, dom, sizeof(dom), &err) != DKP_OK ||
			    strcmp(dom, accepted[i].from) != 0)
				fail_msg("%s: message after the envelope: status %d, From domain '%s' (%s)",
					 accepted[i].name, rc, rc ? "" : dom,
					 err.msg);
			for (j = 0; el > 0 && j < m.nfields; j++)
				if (dkp_msg_field_is(&m, j, "x-sender", 8) &&
				    strstr(accepted[i].msg, "X-Sender") == NULL)
					fail_msg("%s: an envelope line was parsed as a header field",
						 accepted[i].name);
			dkp_msg_fini(&m);
		}
		free(copy);
	}
}

/* Refused inputs: status DKP_E_SYNTAX, and a word the reason contains. */
static const struct {
	const char *name, *input;
	size_t len;			/* 0: strlen(input) */
	const char *reason;
} refused[] = {
	{ "x-receiver before x-sender",
	  "x-receiver: b@r.example\r\nx-sender: a@s.example\r\nFrom: a@c.example\r\n\r\n",
	  0, "x-receiver before x-sender" },
	{ "x-receiver alone",
	  "X-Receiver: b@r.example\nFrom: a@c.example\n\n", 0,
	  "x-receiver before x-sender" },
	{ "two x-sender lines",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example\r\nx-sender: c@s.example\r\n"
	  "From: a@c.example\r\n\r\n", 0, "line 3: a second x-sender" },
	{ "two x-sender lines in a row",
	  "x-sender: a@s.example\nX-SENDER: a@s.example\nx-receiver: b@r.example\n\n",
	  0, "a second x-sender" },
	{ "x-sender without x-receiver",
	  "x-sender: a@s.example\r\nFrom: a@c.example\r\n\r\n", 0,
	  "without any x-receiver" },
	{ "x-sender without x-receiver, end of data",
	  "x-sender: a@s.example\r\n", 0, "without any x-receiver" },
	{ "space inside the address",
	  "x-sender: a@s.example\r\nx-receiver: b @r.example\r\n\r\n", 0,
	  "line 2: white space inside" },
	{ "display name on x-sender",
	  "X-Sender: Alice <a@s.example>\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "line 1: white space inside" },
	{ "space inside angle brackets",
	  "x-sender: < a@s.example>\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "white space inside" },
	{ "tab inside the address",
	  "x-sender: a@s.example\nx-receiver: b\t@r.example\n\n", 0,
	  "white space inside" },
	{ "control byte inside the address",
	  "x-sender: a\001b@s.example\nx-receiver: b@r.example\n\n", 0,
	  "control byte" },
	{ "DEL inside the address",
	  "x-sender: a@s.example\nx-receiver: b@r.exa\177mple\n\n", 0,
	  "control byte" },
	{ "NUL inside the address",
	  "x-sender: a@s.example\nx-receiver: b\0@r.example\nFrom: a@c.example\n\n",
	  sizeof("x-sender: a@s.example\nx-receiver: b\0@r.example\nFrom: a@c.example\n\n") - 1,
	  "NUL" },
	{ "bare CR inside the line",
	  "x-sender: a@s.example\rx@y.example\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "CR" },
	{ "CR before the CRLF",
	  "x-sender: a@s.example\r\r\nx-receiver: b@r.example\r\n\r\n", 0, "CR" },
	{ "bare CR as the line ending",
	  "x-sender: a@s.example\rx-receiver: b@r.example\rFrom: a@c.example\r\n\r\n",
	  0, "CR" },
	{ "unterminated x-sender line",
	  "x-sender: a@s.example", 0, "line 1: no line ending" },
	{ "unterminated x-receiver line",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example", 0,
	  "line 2: no line ending" },
	{ "unterminated: CR without LF at the end",
	  "x-sender: a@s.example\r\nx-receiver: b@r.example\r", 0,
	  "no line ending" },
	{ "folded x-sender line",
	  "x-sender:\r\n a@s.example\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "line 1: continuation" },
	{ "folded x-receiver line",
	  "x-sender: a@s.example\nx-receiver: b@r.example,\n\tc@r.example\nFrom: a@c.example\n\n",
	  0, "line 2: continuation" },
	{ "null x-receiver <>",
	  "x-sender: <>\r\nx-receiver: <>\r\n\r\n", 0, "null address" },
	{ "empty x-receiver",
	  "x-sender: a@s.example\r\nx-receiver:\r\n\r\n", 0, "null address" },
	{ "address without @",
	  "x-sender: postmaster\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "local@domain" },
	{ "address with an empty local part",
	  "x-sender: a@s.example\r\nx-receiver: @r.example\r\n\r\n", 0,
	  "local@domain" },
	{ "address with an empty domain",
	  "x-sender: a@s.example\r\nx-receiver: <b@>\r\n\r\n", 0,
	  "local@domain" },
	{ "unclosed angle bracket",
	  "x-sender: <a@s.example\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "'<' without" },
	{ "stray closing bracket",
	  "x-sender: a@s.example>\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "stray" },
	{ "two addresses on one line",
	  "x-sender: a@s.example\r\nx-receiver: <b@r.example>,<c@r.example>\r\n\r\n",
	  0, "stray" },
	{ "white space before the colon",
	  "x-sender: a@s.example\r\nx-receiver : b@r.example\r\n\r\n", 0,
	  "line 2: white space before ':'" },
	{ "white space before the colon on the first line",
	  "X-Sender\t: a@s.example\r\nx-receiver: b@r.example\r\n\r\n", 0,
	  "line 1: white space before ':'" },
};

static void malformed_envelopes_are_refused(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		size_t n = refused[i].len ? refused[i].len : strlen(refused[i].input);
		struct dkp_envelope env;
		struct dkp_err err;
		char *copy;
		int rc = split(refused[i].input, n, &env, &err, &copy);

		if (rc != DKP_E_SYNTAX || err.code != DKP_E_SYNTAX ||
		    strstr(err.msg, refused[i].reason) == NULL)
			fail_msg("%s: got status %d (%s), want %d with '%s'",
				 refused[i].name, rc, err.msg, DKP_E_SYNTAX,
				 refused[i].reason);
		if (env.len != 0 || env.nrcpt != 0)
			fail_msg("%s: refused, but env.len %zu nrcpt %zu",
				 refused[i].name, env.len, env.nrcpt);
		if (strchr(err.msg, '\n') != NULL)
			fail_msg("%s: the reason is not one line", refused[i].name);
		assert_int_equal(dkp_err_exit_code(&err), 65);
		free(copy);
	}
}

/* Fill buf with "x-sender: ..." and nrcpt x-receiver lines; returns len. */
static size_t many_receivers(char *buf, size_t cap, size_t nrcpt)
{
	size_t i, o;

	o = (size_t)snprintf(buf, cap, "x-sender: <>\r\n");
	for (i = 0; i < nrcpt; i++)
		o += (size_t)snprintf(buf + o, cap - o,
				      "x-receiver: r%zu@r.example\r\n", i);
	o += (size_t)snprintf(buf + o, cap - o,
			      "From: a@c.example\r\n\r\nbody\r\n");
	assert_true(o < cap);
	return o;
}

static void receiver_count_is_exact_up_to_the_limit(void **st)
{
	size_t cap = (DKP_ENVELOPE_MAX_RCPT + 2) * 40 + 100, n;
	char *buf = malloc(cap), *copy;
	struct dkp_envelope env;
	struct dkp_err err;

	(void)st;
	assert_non_null(buf);
	n = many_receivers(buf, cap, DKP_ENVELOPE_MAX_RCPT);
	assert_int_equal(split(buf, n, &env, &err, &copy), DKP_OK);
	assert_int_equal(env.nrcpt, DKP_ENVELOPE_MAX_RCPT);
	assert_int_equal(env.nlines, DKP_ENVELOPE_MAX_RCPT + 1);
	assert_int_equal(env.len, n - strlen("From: a@c.example\r\n\r\nbody\r\n"));
	/* the first DKP_ENVELOPE_KEEP_RCPT are kept, in order */
	assert_bytes_equal(env.rcpt[0].p, env.rcpt[0].len, "r0@r.example", 12);
	assert_bytes_equal(env.rcpt[DKP_ENVELOPE_KEEP_RCPT - 1].p,
			   env.rcpt[DKP_ENVELOPE_KEEP_RCPT - 1].len,
			   "r15@r.example", 13);
	free(copy);

	n = many_receivers(buf, cap, DKP_ENVELOPE_MAX_RCPT + 1);
	assert_int_equal(split(buf, n, &env, &err, &copy), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "more than 10000"));
	assert_non_null(strstr(err.msg, "line 10002"));
	free(copy);
	free(buf);
}

static void address_length_limit_is_320_bytes(void **st)
{
	char buf[1200], *copy;
	struct dkp_envelope env;
	struct dkp_err err;
	size_t n, o;

	(void)st;
	/* 64 + "@" + 255 = 320 bytes: accepted, with or without <> */
	o = (size_t)snprintf(buf, sizeof(buf), "x-sender: <");
	memset(buf + o, 'l', 64);
	o += 64;
	buf[o++] = '@';
	memset(buf + o, 'd', 255);
	o += 255;
	n = o + (size_t)snprintf(buf + o, sizeof(buf) - o,
				 ">\nx-receiver: b@r.example\n\n");
	assert_int_equal(split(buf, n, &env, &err, &copy), DKP_OK);
	assert_int_equal(env.sender.len, DKP_ENVELOPE_MAX_ADDR);
	free(copy);

	/* one more byte: refused */
	memmove(buf + 12, buf + 11, n - 11);
	buf[11] = 'l';
	n++;
	assert_int_equal(split(buf, n, &env, &err, &copy), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "longer than 320"));
	free(copy);
}

static void overlong_line_is_refused(void **st)
{
	char buf[1200], *copy;
	struct dkp_envelope env;
	struct dkp_err err;
	size_t o;

	(void)st;
	/* a short address followed by 1000 bytes of white space */
	o = (size_t)snprintf(buf, sizeof(buf), "x-sender: a@s.example");
	memset(buf + o, ' ', 1000);
	o += 1000;
	o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			      "\nx-receiver: b@r.example\n\n");
	assert_int_equal(split(buf, o, &env, &err, &copy), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "longer than 1000"));
	free(copy);
}

static void split_stops_at_n(void **st)
{
	static const char s[] = "x-sender: a@s.example\nx-receiver: b@r.example\nFrom: a@c.example\n\n";
	size_t cut = strlen("x-sender: a@s.example\nx-receiver: b@r.example");
	struct dkp_envelope env;
	struct dkp_err err;
	char *copy;

	(void)st;
	/* the LF right after n does not count */
	assert_int_equal(split(s, cut, &env, &err, &copy), DKP_E_SYNTAX);
	assert_non_null(strstr(err.msg, "no line ending"));
	free(copy);
	/* a name cut short is no envelope name */
	assert_int_equal(split(s, 5, &env, &err, &copy), DKP_OK);
	assert_int_equal(env.len, 0);
	free(copy);
	assert_int_equal(split(s, 9, &env, &err, &copy), DKP_E_SYNTAX);
	free(copy);
}

static void envelope_lines_are_rewritten_with_crlf(void **st)
{
	static const char s[] = "x-sender: <>\nX-Receiver: b@r.example\r\nx-receiver: c@r.example\nFrom: a@c.example\n\n";
	static const char want[] = "x-sender: <>\r\nX-Receiver: b@r.example\r\nx-receiver: c@r.example\r\n";
	struct dkp_envelope env;
	struct dkp_err err;
	struct dkp_buf out;
	char *copy;

	(void)st;
	assert_int_equal(split(s, strlen(s), &env, &err, &copy), DKP_OK);
	dkp_buf_init(&out);
	dkp_buf_adds(&out, "keep;");
	dkp_envelope_add_crlf(&out, copy, &env);
	assert_bytes_equal(out.p + 5, out.len - 5, want, strlen(want));
	assert_bytes_equal(out.p, 5, "keep;", 5);
	free(copy);

	/* no envelope: nothing appended */
	assert_int_equal(split("From: a@c.example\n\n", 19, &env, &err, &copy), DKP_OK);
	dkp_envelope_add_crlf(&out, copy, &env);
	assert_int_equal(out.len, 5 + strlen(want));
	free(copy);
	dkp_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(envelopes_are_split_off),
		cmocka_unit_test(malformed_envelopes_are_refused),
		cmocka_unit_test(receiver_count_is_exact_up_to_the_limit),
		cmocka_unit_test(address_length_limit_is_320_bytes),
		cmocka_unit_test(overlong_line_is_refused),
		cmocka_unit_test(split_stops_at_n),
		cmocka_unit_test(envelope_lines_are_rewritten_with_crlf),
	};

	UNIT_RUN("test_envelope", tests);
}
