/*
 * fuzz_sigfmt.c — DKIM-Signature tag parsing, key record parsing, base64,
 * and the signature renderer (src/dkim/sigfmt.h, keyrec.h, verify.c).
 *
 * Input: one mode byte, then the text. Every mode first runs the generic
 * tag-list parser and the base64 decoder on the text and checks what they
 * return (offsets inside the text, no ';' in a value, no FWS around it,
 * no duplicate names; decoded base64 re-encodes to the same bytes).
 *
 *   mode % 3 == 0  the text is a DKIM-Signature value: it is put on top of
 *                  the RFC 8463 message and verified with the RFC 8463
 *                  records served offline (seeds: the published values,
 *                  which pass);
 *   mode % 3 == 1  the text is a key record: the RFC 8463 signed message
 *                  is verified with it served for both selectors (the
 *                  body hashes match, so every key record check runs);
 *   mode % 3 == 2  the text is "domain\nselector\nidentity\nh1:h2:..." and
 *                  is rendered with dkp_sigfmt_render/finish when each
 *                  value is within the RFC 6376 grammar (dkp_sign refuses
 *                  the others); the rendered field must parse back to
 *                  the same d=, s=, i=, h=, bh= and b=, fold with CRLF TAB
 *                  only, and keep to 78 columns where a fold could.
 */
#include <openssl/evp.h>

#include "fuzz.h"

#include "dkim/keyrec.h"
#include "dkim/sigfmt.h"

static int is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void check_taglist(const char *s, size_t n)
{
	struct dkp_taglist tl;
	struct dkp_err err;
	size_t i, j;

	if (dkp_taglist_parse(s, n, &tl, &err) != DKP_OK) {
		FUZZ_CHECK(err.code == DKP_E_SYNTAX, "taglist: status %d", err.code);
		return;
	}
	FUZZ_CHECK(tl.n <= DKP_MAX_TAGS, "%zu tags", tl.n);
	for (i = 0; i < tl.n; i++) {
		const struct dkp_tag *t = &tl.tags[i];

		FUZZ_CHECK(t->name[0] != '\0' && strlen(t->name) < sizeof(t->name),
			   "tag %zu name", i);
		FUZZ_CHECK(t->roff <= n && t->rlen <= n - t->roff &&
			   t->voff >= t->roff && t->voff + t->vlen <= t->roff + t->rlen,
			   "tag %zu: raw [%zu,+%zu) value [%zu,+%zu) in %zu", i,
			   t->roff, t->rlen, t->voff, t->vlen, n);
		FUZZ_CHECK(t->roff > 0 && s[t->roff - 1] == '=', "tag %zu '='", i);
		FUZZ_CHECK(memchr(s + t->roff, ';', t->rlen) == NULL,
			   "tag %zu: ';' in the value", i);
		FUZZ_CHECK(t->roff + t->rlen == n || s[t->roff + t->rlen] == ';',
			   "tag %zu: raw value does not end at ';'", i);
		if (t->vlen > 0)
			FUZZ_CHECK(!is_fws(s[t->voff]) &&
				   !is_fws(s[t->voff + t->vlen - 1]),
				   "tag %zu: FWS around the value", i);
		for (j = t->roff; j < t->voff; j++)
			FUZZ_CHECK(is_fws(s[j]), "tag %zu: text before value", i);
		for (j = t->voff + t->vlen; j < t->roff + t->rlen; j++)
			FUZZ_CHECK(is_fws(s[j]), "tag %zu: text after value", i);
		if (t->name[strlen(t->name) - 1] != '~')
			for (j = 0; j < i; j++)
				FUZZ_CHECK(strcmp(tl.tags[j].name, t->name) != 0,
					   "duplicate tag '%s' accepted", t->name);
		FUZZ_CHECK(dkp_taglist_get(&tl, t->name) != NULL, "get %s", t->name);
	}
}

static void check_b64(const char *s, size_t n)
{
	struct dkp_buf out, again;
	unsigned char *enc;
	size_t i, sig = 0;

	dkp_buf_init(&out);
	dkp_buf_init(&again);
	for (i = 0; i < n; i++)
		sig += !is_fws(s[i]);
	if (dkp_b64_decode(s, n, &out) == 0) {
		FUZZ_CHECK(out.len <= sig / 4 * 3 + 2, "%zu bytes from %zu base64",
			   out.len, sig);
		enc = malloc(4 * (out.len / 3 + 1) + 1);
		EVP_EncodeBlock(enc, (const unsigned char *)(out.p ? out.p : ""),
				(int)out.len);
		FUZZ_CHECK(dkp_b64_decode((const char *)enc, strlen((char *)enc),
					  &again) == 0 &&
			   again.len == out.len &&
			   memcmp(again.p, out.p ? out.p : "", out.len) == 0,
			   "base64 round trip");
		free(enc);
	}
	dkp_buf_free(&out);
	dkp_buf_free(&again);
}

/* Verify msg (NUL-terminated) with the RFC 8463 records, or with rec
 * (rec_n bytes) for both selectors when rec is not NULL. */
static void verify(const char *msg, size_t len, const char *rec, size_t rec_n)
{
	struct dkp_msg m;
	struct dkp_err err;
	struct dkp_vresult res[4];
	struct fuzz_dns dns;
	size_t nres = 0, i;

	dkp_msg_init(&m);
	if (dkp_msg_parse(&m, msg, len, NULL, &err) != DKP_OK) {
		dkp_msg_fini(&m);
		return;
	}
	memset(&dns, 0, sizeof(dns));
	dns.qname[0] = FUZZ_QNAME_RSA;
	dns.qname[1] = FUZZ_QNAME_ED;
	dns.rec[0] = rec ? rec : fuzz_rec_rsa;
	dns.rec[1] = rec ? rec : fuzz_rec_ed;
	dns.recn[0] = dns.recn[1] = rec ? rec_n : 0;
	dns.n = 2;
	if (rec && rec_n == 0)
		dns.rec[0] = dns.rec[1] = "";
	FUZZ_CHECK(dkp_verify(&m, fuzz_dns_fetch, &dns, FUZZ_RFC8463_T + 1, res,
			      4, &nres, &err) == DKP_OK, "verify: %s", err.msg);
	for (i = 0; i < nres && i < 4; i++) {
		FUZZ_CHECK(res[i].res <= DKP_V_PERMERROR, "result %d", res[i].res);
		FUZZ_CHECK(memchr(res[i].reason, '\0', sizeof(res[i].reason)) &&
			   memchr(res[i].domain, '\0', sizeof(res[i].domain)) &&
			   memchr(res[i].selector, '\0', sizeof(res[i].selector)) &&
			   memchr(res[i].alg, '\0', sizeof(res[i].alg)),
			   "unterminated result strings");
	}
	dkp_msg_fini(&m);
}

/* A signature value on top of the RFC 8463 message. */
static void mode_signature(const char *s, size_t n)
{
	static const char rest[] = FUZZ_RFC8463_HEADERS "\r\n" FUZZ_RFC8463_BODY;
	struct dkp_buf b;

	dkp_buf_init(&b);
	dkp_buf_adds(&b, "DKIM-Signature:");
	dkp_buf_add(&b, s, n);
	dkp_buf_adds(&b, "\r\n");
	dkp_buf_adds(&b, rest);
	verify(b.p, b.len, NULL, 0);
	dkp_buf_free(&b);
}

/* A key record for the RFC 8463 signed message. */
static void mode_record(const char *s, size_t n)
{
	char *rec = malloc(n + 1);

	memcpy(rec, s, n);
	rec[n] = '\0';
	verify(fuzz_rfc8463_signed, strlen(fuzz_rfc8463_signed), rec, n);
	free(rec);
}

/* The value of tag name in v[0..n) with FWS removed, into out. */
static int tag_text(const char *v, size_t n, const char *name,
		    struct dkp_buf *out)
{
	struct dkp_taglist tl;
	struct dkp_err err;
	const struct dkp_tag *t;
	size_t i;

	FUZZ_CHECK(dkp_taglist_parse(v, n, &tl, &err) == DKP_OK,
		   "rendered field does not parse: %s\n%.*s", err.msg, (int)n, v);
	dkp_buf_reset(out);
	if ((t = dkp_taglist_get(&tl, name)) == NULL)
		return -1;
	for (i = 0; i < t->vlen; i++)
		if (!is_fws(v[t->voff + i]))
			dkp_buf_addc(out, v[t->voff + i]);
	dkp_buf_addc(out, '\0');
	out->len--;
	return 0;
}

/* Split s into up to max lines (NUL-terminated copies in storage). */
static size_t lines(const char *s, size_t n, char **out, size_t max,
		    char *storage)
{
	size_t k = 0, i;

	memcpy(storage, s, n);
	storage[n] = '\0';
	out[k++] = storage;
	for (i = 0; i < n && k < max; i++)
		if (storage[i] == '\n') {
			storage[i] = '\0';
			out[k++] = storage + i + 1;
		}
	return k;
}

/* Within the RFC 6376 grammar: an h= name is printable US-ASCII but ':'
 * and ';' (3.5 hdr-name, and no ';' in a tag-value); an i= value here is
 * printable US-ASCII but ';' (the tag-value; dkp_sign checks more). It
 * is dkp_sign's job (sign_verify covers it) to refuse the rest. */
static int name_ok(const char *s, const char *also_not)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 32 || *s == 127 || *s == ';' ||
		    strchr(also_not, *s))
			return 0;
	return 1;
}

static void mode_render(const char *s, size_t n)
{
	char *storage = malloc(n + 1), *ln[4], *hb, *tok, *save = NULL;
	const char *h[64];
	struct dkp_sigfmt f;
	struct dkp_buf out, got, want;
	size_t k, nh = 0, col, i, lc, longest = 0;
	char bh[45], b64[345];

	k = lines(s, n, ln, 4, storage);
	if (k < 4)
		goto out;
	/* d= and s= as --key, the configuration and a KeyTable take them */
	if (!dkp_domain_ok(ln[0], strlen(ln[0])) || strlen(ln[0]) > 253 ||
	    !dkp_domain_ok(ln[1], strlen(ln[1])) || strlen(ln[1]) > 63)
		goto out;
	hb = ln[3];
	for (tok = strtok_r(hb, ":", &save); tok && nh < 64;
	     tok = strtok_r(NULL, ":", &save)) {
		if (!name_ok(tok, ":"))
			goto out;
		h[nh++] = tok;
		if (strlen(tok) > longest)
			longest = strlen(tok);
	}
	if (nh == 0)
		goto out;
	/* an AUID of at most 320 bytes (RFC 5321 4.5.3.1) */
	if (strlen(ln[2]) > 320 || !name_ok(ln[2], ""))
		goto out;
	memset(&f, 0, sizeof(f));
	f.alg = n & 1 ? DKP_ALG_ED25519_SHA256 : DKP_ALG_RSA_SHA256;
	f.hcanon = (n >> 1) & 1;
	f.bcanon = (n >> 2) & 1;
	f.domain = ln[0];
	f.selector = ln[1];
	f.identity = ln[2][0] ? ln[2] : NULL;
	f.t = (int64_t)n * 1000003;
	f.x = n & 8 ? f.t + 86400 : 0;
	f.headers = h;
	f.nheaders = nh;
	memset(bh, 'B', 44);
	bh[43] = '=';
	bh[44] = '\0';
	f.bh = bh;
	memset(b64, 'b', sizeof(b64) - 1);
	b64[sizeof(b64) - 1] = '\0';

	dkp_buf_init(&out);
	dkp_buf_init(&got);
	dkp_buf_init(&want);
	dkp_sigfmt_render(&f, &out, &col);
	dkp_sigfmt_finish(&out, col, b64, (n % 344) + 1);
	FUZZ_CHECK(out.len > 17 && memcmp(out.p, "DKIM-Signature:", 15) == 0 &&
		   memcmp(out.p + out.len - 2, "\r\n", 2) == 0, "rendered field");
	/* folds are CRLF TAB; lines fit in 78 columns when every unit could */
	for (i = 0, lc = 0; i + 2 < out.len; i++) {
		if (out.p[i] == '\n')
			FUZZ_FAIL("bare LF at %zu", i);
		if (out.p[i] == '\r') {
			FUZZ_CHECK(out.p[i + 1] == '\n' && out.p[i + 2] == '\t',
				   "fold at %zu is not CRLF TAB", i);
			lc = 0;
			i++;
			continue;
		}
		lc += out.p[i] == '\t' ? 8 : 1;
		if (strlen(f.domain) < 50 && longest < 50 &&
		    (!f.identity || strlen(f.identity) < 50))
			FUZZ_CHECK(lc <= DKP_SIGFMT_COLS,
				   "line longer than %d columns:\n%.*s",
				   DKP_SIGFMT_COLS, (int)out.len, out.p);
	}
	/* it parses back to what was rendered */
	{
		const char *v = out.p + 15;
		size_t vn = out.len - 15 - 2;
		struct dkp_buf hw;

		FUZZ_CHECK(tag_text(v, vn, "d", &got) == 0 &&
			   strcmp(got.p, f.domain) == 0, "d= '%s'", got.p);
		FUZZ_CHECK(tag_text(v, vn, "s", &got) == 0 &&
			   strcmp(got.p, f.selector) == 0, "s= '%s'", got.p);
		if (f.identity) {
			dkp_buf_reset(&want);
			for (i = 0; f.identity[i]; i++)
				if (!is_fws(f.identity[i]))
					dkp_buf_addc(&want, f.identity[i]);
			dkp_buf_addc(&want, '\0');
			FUZZ_CHECK(tag_text(v, vn, "i", &got) == 0 &&
				   strcmp(got.p, want.p) == 0,
				   "i= '%s' rendered as '%s'", want.p, got.p);
		}
		dkp_buf_init(&hw);
		for (i = 0; i < nh; i++) {
			if (i)
				dkp_buf_addc(&hw, ':');
			dkp_buf_adds(&hw, h[i]);
		}
		FUZZ_CHECK(tag_text(v, vn, "h", &got) == 0 &&
			   strcmp(got.p, hw.p) == 0,
			   "h= '%s' rendered as '%s'", hw.p, got.p);
		dkp_buf_free(&hw);
		FUZZ_CHECK(tag_text(v, vn, "bh", &got) == 0 &&
			   strcmp(got.p, bh) == 0, "bh= '%s'", got.p);
		FUZZ_CHECK(tag_text(v, vn, "b", &got) == 0 &&
			   got.len == (n % 344) + 1, "b= '%s'", got.p);
	}
	dkp_buf_free(&out);
	dkp_buf_free(&got);
	dkp_buf_free(&want);
out:
	free(storage);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s;
	size_t n;

	if (size < 1)
		return 0;
	s = (const char *)data + 1;
	n = size - 1;
	check_taglist(s, n);
	check_b64(s, n);
	switch (data[0] % 3) {
	case 0: mode_signature(s, n); break;
	case 1: mode_record(s, n); break;
	default: mode_render(s, n); break;
	}
	return 0;
}
