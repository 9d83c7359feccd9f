/* test_hdr_tmpl.c — cached DKIM-Signature templates and the split
 * canonicalization they rely on. */
#include "unit.h"

#include "dkim/canon.h"
#include "dkim/hdr_tmpl.h"

static void templates_are_built_once_and_bounded(void **st)
{
	struct dkp_tmpl_cache *c = dkp_tmpl_cache_new(2);
	const struct dkp_tmpl *a, *b;

	(void)st;
	a = dkp_tmpl_get(c, DKP_ALG_RSA_SHA256, DKP_CANON_RELAXED,
			 DKP_CANON_SIMPLE, "shop.example", "s1");
	/* the key's part: on a line of its own after the shared part */
	assert_bytes_equal(a->raw.p, a->raw.len,
			   "\r\n\ta=rsa-sha256; d=shop.example; s=s1;",
			   strlen("\r\n\ta=rsa-sha256; d=shop.example; s=s1;"));
	assert_int_equal(a->col, 8 + strlen("a=rsa-sha256; d=shop.example; s=s1;"));
	assert_string_equal(a->canon.p, " a=rsa-sha256; d=shop.example; s=s1;");
	b = dkp_tmpl_get(c, DKP_ALG_RSA_SHA256, DKP_CANON_RELAXED,
			 DKP_CANON_SIMPLE, "shop.example", "s1");
	assert_ptr_equal(a, b);
	assert_int_equal(dkp_tmpl_builds(c), 1);
	/* any differing part is a different template */
	dkp_tmpl_get(c, DKP_ALG_ED25519_SHA256, DKP_CANON_RELAXED,
		     DKP_CANON_SIMPLE, "shop.example", "s1");
	dkp_tmpl_get(c, DKP_ALG_RSA_SHA256, DKP_CANON_SIMPLE,
		     DKP_CANON_SIMPLE, "shop.example", "s1");
	assert_int_equal(dkp_tmpl_builds(c), 3);
	dkp_tmpl_cache_free(c);
}

/* canon(prefix + rest) == canon(prefix) + tail(rest), for rests with
 * folds and WSP runs in every position, both canonicalizations. */
static void split_canonicalization_matches_whole(void **st)
{
	static const char *rests[] = {
		" t=1; h=From:To; bh=abc=; b=",
		"\r\n\tt=1;\r\n\th=From:\r\n\tTo; b=",
		"  \t t=1;   x=2;\t\th=a:b;\r\n \t b=",
		" h=From:From:Subject:Subject:Date:Date:To:To:\r\n\tMessage-ID; b=",
	};
	static const char prefix[] = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=x.example;\r\n\ts=sel;";
	int c;
	size_t i;

	(void)st;
	for (c = 0; c < 2; c++)
		for (i = 0; i < sizeof(rests) / sizeof(rests[0]); i++) {
			struct dkp_buf whole, field, split;

			dkp_buf_init(&whole);
			dkp_buf_init(&field);
			dkp_buf_init(&split);
			dkp_buf_adds(&field, prefix);
			dkp_buf_adds(&field, rests[i]);
			dkp_canon_header(c, field.p, field.len, 14, 0, &whole);
			dkp_canon_header(c, prefix, strlen(prefix), 14, 0, &split);
			dkp_canon_header_tail(c, rests[i], strlen(rests[i]), &split);
			assert_bytes_equal(split.p, split.len, whole.p, whole.len);
			dkp_buf_free(&whole);
			dkp_buf_free(&field);
			dkp_buf_free(&split);
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(templates_are_built_once_and_bounded),
		cmocka_unit_test(split_canonicalization_matches_whole),
	};

	UNIT_RUN("test_hdr_tmpl", tests);
}
