/* test_canon.c — RFC 6376 3.4 canonicalization of fields and bodies. */
#include "unit.h"

#include <openssl/evp.h>

#include "dkim/canon.h"

/* Canonical body digest through the sink vs. SHA-256 of want. */
static void check_body(enum dkp_canon c, const char *body, size_t blen,
		       const char *want, size_t wlen, uint64_t limit)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static struct dkp_hsink sink;
	unsigned char got[32], exp[32];
	unsigned int n;

	assert_true(EVP_DigestInit_ex2(md, EVP_sha256(), NULL));
	dkp_hsink_init(&sink, md, limit);
	assert_int_equal(dkp_canon_body(c, body, blen, &sink), 0);
	assert_true(EVP_DigestFinal_ex(md, got, &n));
	assert_true(EVP_Digest(want, wlen, exp, &n, EVP_sha256(), NULL));
	if (memcmp(got, exp, 32) != 0) {
		unit_print_esc("body", body, blen);
		unit_print_esc("want", want, wlen);
		fail_msg("%s body canonicalization differs",
			 dkp_canon_name(c));
	}
	EVP_MD_CTX_free(md);
}

#define BODY(c, in, want) check_body(c, in, sizeof(in) - 1, want, sizeof(want) - 1, UINT64_MAX)

static void check_header(enum dkp_canon c, const char *f, size_t name_len,
			 int crlf, const char *want)
{
	struct dkp_buf b;

	dkp_buf_init(&b);
	dkp_canon_header(c, f, strlen(f), name_len, crlf, &b);
	assert_bytes_equal(b.p, b.len, want, strlen(want));
	dkp_buf_free(&b);
}

/* RFC 6376 3.4.5, the worked example. */
static void rfc6376_example_relaxed(void **st)
{
	(void)st;
	check_header(DKP_CANON_RELAXED, "A: X\r\n", 1, 1, "a:X\r\n");
	check_header(DKP_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", 1, 1, "b:Y Z\r\n");
	BODY(DKP_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
}

static void rfc6376_example_simple(void **st)
{
	(void)st;
	check_header(DKP_CANON_SIMPLE, "A: X\r\n", 1, 1, "A: X\r\n");
	check_header(DKP_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", 1, 1,
		     "B : Y\t\r\n\tZ  \r\n");
	BODY(DKP_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n");
}

/* The same example from the fixture files, when present. */
static void rfc6376_example_fixture_files(void **st)
{
	size_t n, rn, sn;
	char *in, *rb, *sb, *body;

	(void)st;
	in = unit_slurp(DATA_DIR "/rfc6376-3.4.5/input.eml", &n);
	rb = unit_slurp(DATA_DIR "/rfc6376-3.4.5/relaxed-body.txt", &rn);
	sb = unit_slurp(DATA_DIR "/rfc6376-3.4.5/simple-body.txt", &sn);
	body = strstr(in, "\r\n\r\n");
	assert_non_null(body);
	body += 4;
	check_body(DKP_CANON_RELAXED, body, n - (size_t)(body - in), rb, rn, UINT64_MAX);
	check_body(DKP_CANON_SIMPLE, body, n - (size_t)(body - in), sb, sn, UINT64_MAX);
	free(in);
	free(rb);
	free(sb);
}

static void relaxed_header_rules(void **st)
{
	(void)st;
	/* name lower-cased, WSP around the colon dropped */
	check_header(DKP_CANON_RELAXED, "SUBJECT \t:  Hello\r\n", 7, 1, "subject:Hello\r\n");
	/* unfolding keeps the WSP as one space; runs collapse */
	check_header(DKP_CANON_RELAXED, "To: a@x.example,\r\n    b@y.example\r\n", 2, 1,
		     "to:a@x.example, b@y.example\r\n");
	/* trailing WSP, including before the final CRLF of a fold */
	check_header(DKP_CANON_RELAXED, "X-A: v \t \r\n \r\n", 3, 1, "x-a:v\r\n");
	/* empty value */
	check_header(DKP_CANON_RELAXED, "X-Empty:\r\n", 7, 1, "x-empty:\r\n");
	check_header(DKP_CANON_RELAXED, "X-Empty:   \r\n", 7, 1, "x-empty:\r\n");
	/* 8-bit bytes and a bare CR are kept */
	check_header(DKP_CANON_RELAXED, "Subject: caf\xc3\xa9\rx\r\n", 7, 1,
		     "subject:caf\xc3\xa9\rx\r\n");
	/* the signature's own field is hashed without its CRLF */
	check_header(DKP_CANON_RELAXED, "DKIM-Signature: v=1; b=\r\n", 14, 0,
		     "dkim-signature:v=1; b=");
	check_header(DKP_CANON_SIMPLE, "DKIM-Signature: v=1;\r\n\tb=\r\n", 14, 0,
		     "DKIM-Signature: v=1;\r\n\tb=");
}

static void empty_bodies(void **st)
{
	(void)st;
	/* 3.4.3: simple turns an empty body into one CRLF */
	BODY(DKP_CANON_SIMPLE, "", "\r\n");
	BODY(DKP_CANON_SIMPLE, "\r\n", "\r\n");
	BODY(DKP_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n");
	/* 3.4.4 (erratum 1384 applied): relaxed leaves it empty */
	BODY(DKP_CANON_RELAXED, "", "");
	BODY(DKP_CANON_RELAXED, "\r\n", "");
	BODY(DKP_CANON_RELAXED, "\r\n\r\n \t\r\n", "");
}

static void bodies_without_final_crlf(void **st)
{
	(void)st;
	BODY(DKP_CANON_SIMPLE, "abc", "abc\r\n");
	BODY(DKP_CANON_SIMPLE, "abc\r\n\r\nlast", "abc\r\n\r\nlast\r\n");
	BODY(DKP_CANON_RELAXED, "abc  ", "abc\r\n");
	BODY(DKP_CANON_RELAXED, "abc\r\n\r\nlast \t", "abc\r\n\r\nlast\r\n");
}

static void trailing_empty_lines_are_dropped(void **st)
{
	(void)st;
	BODY(DKP_CANON_SIMPLE, "a\r\n\r\n\r\n\r\n", "a\r\n");
	BODY(DKP_CANON_SIMPLE, "a\r\n \r\n", "a\r\n \r\n");	/* " " is not empty */
	BODY(DKP_CANON_RELAXED, "a\r\n\r\n\r\n\r\n", "a\r\n");
	/* relaxed: a line of only WSP is empty once its WSP is gone. dkimpy
	 * 1.1.4 hashes this differently; RFC 6376 3.4.4 decides. */
	BODY(DKP_CANON_RELAXED, "a\r\n \t \r\n", "a\r\n");
	BODY(DKP_CANON_RELAXED, "a\r\n \r\n\r\n\t\r\n", "a\r\n");
}

static void interior_empty_lines_are_kept(void **st)
{
	(void)st;
	BODY(DKP_CANON_SIMPLE, "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n");
	BODY(DKP_CANON_RELAXED, "a\r\n  \r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nb\r\n",
	     "a\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nb\r\n");
}

static void relaxed_whitespace_runs(void **st)
{
	(void)st;
	BODY(DKP_CANON_RELAXED, "  lead\t\ttab  mid   end \t\r\n", " lead tab mid end\r\n");
	BODY(DKP_CANON_RELAXED, "x\r\rcr \r\n", "x\r\rcr\r\n");	/* bare CR is not WSP */
	BODY(DKP_CANON_SIMPLE, "  lead\t\ttab  \r\n", "  lead\t\ttab  \r\n");
}

static void long_bodies_stream_through_the_stage(void **st)
{
	/* larger than the 16 KiB stage, with lines of many sizes */
	size_t n = 200000, i, o = 0, w = 0;
	char *in = malloc(n), *want = malloc(n);

	(void)st;
	for (i = 0; o + 40 < n; i++) {
		size_t len = (i * 7919) % 33, j;

		for (j = 0; j < len; j++)
			in[o++] = want[w++] = (char)('a' + (i + j) % 26);
		in[o++] = ' ';
		in[o++] = ' ';
		want[w++] = ' ';	/* a leading run too becomes one SP */
		in[o++] = 'z';
		want[w++] = 'z';
		in[o++] = '\t';
		in[o++] = '\r';
		in[o++] = '\n';
		want[w++] = '\r';
		want[w++] = '\n';
	}
	check_body(DKP_CANON_RELAXED, in, o, want, w, UINT64_MAX);
	check_body(DKP_CANON_SIMPLE, in, o, in, o, UINT64_MAX);
	free(in);
	free(want);
}

static void length_limit_caps_the_hash(void **st)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static struct dkp_hsink sink;
	unsigned char dig[32];
	unsigned int n;

	(void)st;
	/* l=5 of "hello world\r\n" hashes "hello" and records the length */
	check_body(DKP_CANON_SIMPLE, "hello world\r\n", 13, "hello", 5, 5);
	assert_true(EVP_DigestInit_ex2(md, EVP_sha256(), NULL));
	dkp_hsink_init(&sink, md, 5);
	assert_int_equal(dkp_canon_body(DKP_CANON_SIMPLE, "hello world\r\n", 13, &sink), 0);
	assert_int_equal(sink.total, 13);
	assert_true(EVP_DigestFinal_ex(md, dig, &n));
	EVP_MD_CTX_free(md);
}

/* RFC 6376 3.4.4 written the obvious way, for CRLF-only bodies. */
static size_t ref_relaxed(const char *b, size_t len, char *out)
{
	size_t n = 0, keep = 0, i = 0;

	while (i < len) {
		size_t start = n;
		int sp = 0;

		for (; i < len && !(b[i] == '\r' && i + 1 < len && b[i + 1] == '\n'); i++) {
			if (b[i] == ' ' || b[i] == '\t') {
				sp = 1;
				continue;
			}
			if (sp)
				out[n++] = ' ';
			sp = 0;
			out[n++] = b[i];
		}
		i += 2;	/* past the CRLF (or the end) */
		out[n++] = '\r';
		out[n++] = '\n';
		if (n - start > 2)
			keep = n;	/* ends after the last non-empty line */
	}
	return keep;
}

/* Random bodies of words, single and repeated WSP, empty and blank lines,
 * with and without a final CRLF, against the reference above. */
static void relaxed_matches_a_reference(void **st)
{
	static const char *const tok[] = {
		"word", "x", " ", "  ", "\t", " \t ", "\r\n", "\r\n", "\r\n\r\n",
		" \r\n", "\t\r\n", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	static char body[70000], want[70000];
	unsigned seed = 12345;
	int round;

	(void)st;
	for (round = 0; round < 3000; round++) {
		size_t len = 0, ntok, k;

		seed = seed * 1103515245u + 12345u;
		ntok = (seed >> 16) % (round < 2000 ? 40 : 2000);
		for (k = 0; k < ntok; k++) {
			const char *t;

			seed = seed * 1103515245u + 12345u;
			t = tok[(seed >> 16) % (sizeof(tok) / sizeof(tok[0]))];
			memcpy(body + len, t, strlen(t));
			len += strlen(t);
		}
		check_body(DKP_CANON_RELAXED, body, len, want,
			   ref_relaxed(body, len, want), UINT64_MAX);
	}
}

static void canon_names_parse(void **st)
{
	enum dkp_canon h, b;

	(void)st;
	assert_int_equal(dkp_canon_parse("relaxed/simple", &h, &b), DKP_OK);
	assert_int_equal(h, DKP_CANON_RELAXED);
	assert_int_equal(b, DKP_CANON_SIMPLE);
	assert_int_equal(dkp_canon_parse("Simple/Relaxed", &h, &b), DKP_OK);
	assert_int_equal(h, DKP_CANON_SIMPLE);
	assert_int_equal(b, DKP_CANON_RELAXED);
	/* a single word: the body is simple (RFC 6376 3.5 c=) */
	assert_int_equal(dkp_canon_parse("relaxed", &h, &b), DKP_OK);
	assert_int_equal(b, DKP_CANON_SIMPLE);
	assert_int_equal(dkp_canon_parse("nowsp/relaxed", &h, &b), DKP_E_USAGE);
	assert_int_equal(dkp_canon_parse("relaxed/", &h, &b), DKP_E_USAGE);
	assert_int_equal(dkp_canon_parse("", &h, &b), DKP_E_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc6376_example_relaxed),
		cmocka_unit_test(rfc6376_example_simple),
		cmocka_unit_test(rfc6376_example_fixture_files),
		cmocka_unit_test(relaxed_header_rules),
		cmocka_unit_test(empty_bodies),
		cmocka_unit_test(bodies_without_final_crlf),
		cmocka_unit_test(trailing_empty_lines_are_dropped),
		cmocka_unit_test(interior_empty_lines_are_kept),
		cmocka_unit_test(relaxed_whitespace_runs),
		cmocka_unit_test(long_bodies_stream_through_the_stage),
		cmocka_unit_test(length_limit_caps_the_hash),
		cmocka_unit_test(relaxed_matches_a_reference),
		cmocka_unit_test(canon_names_parse),
	};

	UNIT_RUN("test_canon", tests);
}
