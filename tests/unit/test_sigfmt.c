/* test_sigfmt.c — DKIM-Signature rendering, folding, tag-list parsing. */
#include "unit.h"

#include "dkim/sigfmt.h"

/* Every physical line at most 78 columns (TAB = 8), folds are CRLF TAB. */
static void assert_folded_ok(const char *p, size_t n)
{
	size_t col = 0, i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			assert_true(i + 1 < n && p[i + 1] == '\n');
			if (col > DKP_SIGFMT_COLS)
				fail_msg("line of %zu columns before offset %zu", col, i);
			col = 0;
			i++;
			if (i + 1 < n)
				assert_int_equal(p[i + 1], '\t');
			continue;
		}
		col = p[i] == '\t' ? (col / 8 + 1) * 8 : col + 1;
	}
	if (col > DKP_SIGFMT_COLS)
		fail_msg("last line of %zu columns", col);
}

static const char *const few[] = { "From", "To", "Subject" };

static void render(struct dkp_buf *b, const char *domain, const char *const *h,
		   size_t nh, const char *b64)
{
	struct dkp_sigfmt f;
	size_t col;

	memset(&f, 0, sizeof(f));
	f.alg = DKP_ALG_RSA_SHA256;
	f.hcanon = DKP_CANON_RELAXED;
	f.bcanon = DKP_CANON_SIMPLE;
	f.domain = domain;
	f.selector = "sel";
	f.t = 1700000000;
	f.x = 1700086400;
	f.identity = "@mail.example.com";
	f.headers = h;
	f.nheaders = nh;
	f.bh = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
	dkp_sigfmt_render(&f, b, &col);
	dkp_sigfmt_finish(b, col, b64, strlen(b64));
}

static const char b64[] =
	"dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgbG9uZyBlbm91Z2gg"
	"dG8gbmVlZCBzZXZlcmFsIGxpbmVzIHdoZW4gaXQgaXMgZm9sZGVkIGF0IDc4IGNvbHVt"
	"bnMsIGp1c3QgbGlrZSBhIDIwNDgtYml0IFJTQSBzaWduYXR1cmUgd291bGQgYmUuIEFi"
	"Y2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6MDEyMzQ1Njc4OUFCQ0RFRkdISUpLTE1OT1BR";

static void rendered_tags_in_order(void **st)
{
	struct dkp_buf b;
	struct dkp_taglist tl;
	struct dkp_err err;
	static const char *want[] = { "v", "c", "t", "x", "h", "bh", "a", "d", "s", "i", "b" };
	const char *v;
	size_t i;

	(void)st;
	dkp_buf_init(&b);
	render(&b, "example.com", few, 3, b64);
	{
		/* what a message's signatures share first, then the key's
		 * own tags on a line of their own (sigfmt.h) */
		static const char head[] = "DKIM-Signature: v=1; c=relaxed/simple; t=1700000000; x=1700086400;";
		static const char key[] = "\r\n\ta=rsa-sha256; d=example.com; s=sel; i=@mail.example.com; b=";

		assert_bytes_equal(b.p, sizeof(head) - 1, head, sizeof(head) - 1);
		assert_non_null(strstr(b.p, key));
	}
	assert_true(b.len > 2 && memcmp(b.p + b.len - 2, "\r\n", 2) == 0);
	v = b.p + strlen("DKIM-Signature:");
	assert_int_equal(dkp_taglist_parse(v, b.len - strlen("DKIM-Signature:"), &tl, &err), DKP_OK);
	assert_int_equal(tl.n, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < tl.n; i++)
		assert_string_equal(tl.tags[i].name, want[i]);
	assert_bytes_equal(v + dkp_taglist_get(&tl, "t")->voff, 10, "1700000000", 10);
	{	/* h= may be folded after a ':' */
		const struct dkp_tag *h = dkp_taglist_get(&tl, "h");
		char hv[64];
		size_t n = 0, j;

		for (j = 0; j < h->vlen && n < sizeof(hv); j++)
			if (!strchr("\r\n\t ", v[h->voff + j]))
				hv[n++] = v[h->voff + j];
		assert_bytes_equal(hv, n, "From:To:Subject", 15);
	}
	dkp_buf_free(&b);
}

static void folds_at_78_columns_only_where_allowed(void **st)
{
	const char *names[60];
	static const char *pool[] = { "From", "To", "Subject", "Date", "Message-ID",
				      "List-Unsubscribe-Post", "Content-Transfer-Encoding",
				      "Feedback-ID" };
	struct dkp_buf b, un;
	struct dkp_taglist tl;
	struct dkp_err err;
	const struct dkp_tag *h, *bt;
	size_t i, k, start;
	const char *v;
	char dom[80];

	(void)st;
	for (i = 0; i < 60; i++)
		names[i] = pool[(i * 5) % 8];
	/* domains of many lengths move every tag boundary across column 78 */
	for (k = 1; k < 60; k++) {
		memset(dom, 'd', k);
		strcpy(dom + k, ".example");
		dkp_buf_init(&b);
		render(&b, dom, names, 10 + k % 50, b64);
		assert_folded_ok(b.p, b.len);
		/* unfold (drop CRLF, keep the WSP): names and tags intact */
		dkp_buf_init(&un);
		for (i = 0; i < b.len; i++)
			if (!(b.p[i] == '\r' || b.p[i] == '\n'))
				dkp_buf_addc(&un, b.p[i]);
		v = un.p + strlen("DKIM-Signature:");
		assert_int_equal(dkp_taglist_parse(v, un.len - 15, &tl, &err), DKP_OK);
		h = dkp_taglist_get(&tl, "h");
		assert_non_null(h);
		/* each h= name, once its FWS is trimmed, is one of ours */
		for (i = h->voff, start = h->voff; i <= h->voff + h->vlen; i++) {
			if (i == h->voff + h->vlen || v[i] == ':') {
				size_t a = start, e = i, j, ok = 0;

				while (a < e && (v[a] == ' ' || v[a] == '\t'))
					a++;
				for (j = 0; j < 8; j++)
					ok |= strlen(pool[j]) == e - a &&
					      memcmp(pool[j], v + a, e - a) == 0;
				if (!ok)
					fail_msg("h= name split by folding: '%.*s'", (int)(e - a), v + a);
				start = i + 1;
			}
		}
		/* b= survives folding byte for byte once FWS is removed */
		bt = dkp_taglist_get(&tl, "b");
		assert_non_null(bt);
		{
			struct dkp_buf c;

			dkp_buf_init(&c);
			for (i = 0; i < bt->vlen; i++)
				if (v[bt->voff + i] != '\t' && v[bt->voff + i] != ' ')
					dkp_buf_addc(&c, v[bt->voff + i]);
			assert_bytes_equal(c.p, c.len, b64, strlen(b64));
			dkp_buf_free(&c);
		}
		dkp_buf_free(&un);
		dkp_buf_free(&b);
	}
}

static void signed_form_is_a_prefix_of_the_field(void **st)
{
	struct dkp_sigfmt f;
	struct dkp_buf b;
	size_t col, prefix;

	(void)st;
	memset(&f, 0, sizeof(f));
	f.domain = "example.com";
	f.selector = "s";
	f.t = -1;
	f.headers = few;
	f.nheaders = 3;
	f.bh = "bh";
	dkp_buf_init(&b);
	dkp_sigfmt_render(&f, &b, &col);
	prefix = b.len;
	assert_true(prefix >= 2 && memcmp(b.p + prefix - 2, "b=", 2) == 0);
	assert_null(strstr(b.p, "t="));	/* t < 0: omitted */
	assert_null(strstr(b.p, "x="));
	assert_null(strstr(b.p, "i="));
	assert_null(strstr(b.p, "l="));	/* never l= */
	dkp_sigfmt_finish(&b, col, "QUJD", 4);
	assert_bytes_equal(b.p + prefix, b.len - prefix, "QUJD\r\n", 6);
	dkp_buf_free(&b);
}

static const struct {
	const char *name, *in;
	int ok;
	size_t ntags;
} lists[] = {
	{ "plain", "v=1; a=rsa-sha256", 1, 2 },
	{ "trailing semicolon", "v=1; a=b;", 1, 2 },
	{ "trailing semicolon and FWS", "v=1; a=b; \r\n\t", 1, 2 },
	{ "FWS around names and values", " v = 1 ;\r\n\ta\t=\tb c ", 1, 2 },
	{ "empty value", "p=; v=DKIM1", 1, 2 },
	{ "empty list", "", 1, 0 },
	{ "duplicate tag", "v=1; v=2", 0, 0 },
	{ "missing =", "v=1; a", 0, 0 },
	{ "name starts with digit", "1v=1", 0, 0 },
	{ "unknown tags allowed", "v=1; zz=9; x_y=2", 1, 3 },
	{ "empty element", "v=1;; a=b", 0, 0 },
};

static void taglist_parsing(void **st)
{
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		struct dkp_taglist tl;
		struct dkp_err err;
		int rc = dkp_taglist_parse(lists[i].in, strlen(lists[i].in), &tl, &err);

		if ((rc == DKP_OK) != lists[i].ok || (lists[i].ok && tl.n != lists[i].ntags))
			fail_msg("%s: rc %d, %zu tags", lists[i].name, rc, tl.n);
	}
}

static void taglist_values_are_trimmed(void **st)
{
	static const char s[] = " v = 1 ;\r\n\ta\t=\tb c ";
	struct dkp_taglist tl;
	struct dkp_err err;
	const struct dkp_tag *a;

	(void)st;
	assert_int_equal(dkp_taglist_parse(s, strlen(s), &tl, &err), DKP_OK);
	a = dkp_taglist_get(&tl, "a");
	assert_non_null(a);
	assert_bytes_equal(s + a->voff, a->vlen, "b c", 3);
	assert_null(dkp_taglist_get(&tl, "bh"));
}

/* The RFC 6376 grammar of what is rendered into d=, s=, h= and i=. */
static void tag_value_grammar(void **st)
{
	static const struct {
		int (*fn)(const char *, size_t);
		const char *what, *s;
		int ok;
	} cases[] = {
		{ dkp_sigfmt_domain_ok, "d", "customer.example", 1 },
		{ dkp_sigfmt_domain_ok, "d", "xn--exmple-cua.com", 1 },
		{ dkp_sigfmt_domain_ok, "d", "localhost", 0 },
		{ dkp_sigfmt_domain_ok, "d", "b..c", 0 },
		{ dkp_sigfmt_domain_ok, "d", "-bad-.example", 0 },
		{ dkp_sigfmt_domain_ok, "d", "example.com.", 0 },
		{ dkp_sigfmt_domain_ok, "d", "ex\xc3\xa4mple.com", 0 },
		{ dkp_sigfmt_domain_ok, "d", "a.example;l=0", 0 },
		{ dkp_sigfmt_selector_ok, "s", "s2026", 1 },
		{ dkp_sigfmt_selector_ok, "s", "2026.q1", 1 },
		{ dkp_sigfmt_selector_ok, "s", "s_1", 0 },
		{ dkp_sigfmt_selector_ok, "s", "s\r\nX: y", 0 },
		{ dkp_sigfmt_hname_ok, "h", "List-Unsubscribe-Post", 1 },
		{ dkp_sigfmt_hname_ok, "h", "X-Odd=Name!", 1 },
		{ dkp_sigfmt_hname_ok, "h", "Subject;l=0", 0 },
		{ dkp_sigfmt_hname_ok, "h", "Sub ject", 0 },
		{ dkp_sigfmt_hname_ok, "h", "Sub:ject", 0 },
		{ dkp_sigfmt_hname_ok, "h", "Subj\xc3\xa9" "ct", 0 },
		{ dkp_sigfmt_hname_ok, "h", "", 0 },
		{ dkp_sigfmt_auid_ok, "i", "news@mail.shop.example", 1 },
		{ dkp_sigfmt_auid_ok, "i", "@shop.example", 1 },
		{ dkp_sigfmt_auid_ok, "i", "first.last+tag@shop.example", 1 },
		{ dkp_sigfmt_auid_ok, "i", "a\r\nX-Injected: yes@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "a;l=0@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "a=b@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "\"q s\"@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", ".a@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "a..b@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "a@b@shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "shop.example", 0 },
		{ dkp_sigfmt_auid_ok, "i", "a@localhost", 0 },
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].fn(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
			fail_msg("%s= '%s': want %s", cases[i].what, cases[i].s,
				 cases[i].ok ? "accepted" : "refused");
}

static void escape_makes_values_printable(void **st)
{
	char out[64];

	(void)st;
	assert_string_equal(dkp_sigfmt_escape("esc\033[31mred", 11, out, sizeof(out)),
			    "esc\\x1b[31mred");
	assert_string_equal(dkp_sigfmt_escape("a\r\nb\\c\xc3", 7, out, sizeof(out)),
			    "a\\x0d\\x0ab\\x5cc\\xc3");
	assert_string_equal(dkp_sigfmt_escape("a\0b", 3, out, sizeof(out)), "a\\x00b");
	/* truncated on whole escapes only */
	assert_string_equal(dkp_sigfmt_escape("ab\033", 3, out, 6), "ab");
	assert_string_equal(dkp_sigfmt_escape("plain", 5, out, 3), "pl");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tag_value_grammar),
		cmocka_unit_test(escape_makes_values_printable),
		cmocka_unit_test(rendered_tags_in_order),
		cmocka_unit_test(folds_at_78_columns_only_where_allowed),
		cmocka_unit_test(signed_form_is_a_prefix_of_the_field),
		cmocka_unit_test(taglist_parsing),
		cmocka_unit_test(taglist_values_are_trimmed),
	};

	UNIT_RUN("test_sigfmt", tests);
}
