/*
 * fuzz_msg_parse.c — message parsing and canonicalization.
 *
 * Input: any bytes, taken as a queued file. The path is the engine's
 * (src/engine/job.c): dkp_envelope_split, then dkp_msg_parse on the rest,
 * then dkp_msg_from_address; every field is canonicalized (simple and
 * relaxed) and the body is hashed both ways. Besides crashes, ASan and
 * UBSan, it checks:
 *
 *  - the envelope split: addresses inside the input and well-formed,
 *    dkp_envelope_add_crlf gives the envelope with CRLF line ends;
 *  - the field index: fields in order, back to back, inside the header
 *    block, a ':' where it says, CRLF line endings only;
 *  - header and body canonicalization against a plain reference
 *    implementation of RFC 6376 3.4.1-3.4.4 written here, byte for byte
 *    for header fields and by SHA-256 (and length) for bodies, also with
 *    a length cap (l=);
 *  - dkp_canon_header_tail's contract: canon(prefix) + tail(rest) ==
 *    canon(prefix + rest) when the prefix's value ends in a non-WSP byte.
 */
#include <ctype.h>

#include <openssl/evp.h>

#include "fuzz.h"

#include "dkim/canon.h"
#include "dkim/envelope.h"
#include "dkim/msg_parse.h"

static EVP_MD_CTX *md;

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- reference canonicalization (RFC 6376 3.4), slow and plain -------- */

/* 3.4.2 for one parsed field f[0..len) with name f[0..name_len). */
static void ref_header_relaxed(const char *f, size_t len, size_t name_len,
			       int crlf, struct dkp_buf *out)
{
	struct dkp_buf v;
	size_t i, colon, b, e;

	dkp_buf_init(&v);
	for (i = 0; i < name_len; i++)
		dkp_buf_addc(out, (char)tolower((unsigned char)f[i]));
	dkp_buf_addc(out, ':');
	for (colon = name_len; colon < len && f[colon] != ':'; colon++)
		;
	if (len >= 2 && f[len - 2] == '\r' && f[len - 1] == '\n')
		len -= 2;
	/* unfold, then every WSP run is one SP */
	for (i = colon + 1; i < len; i++) {
		if (f[i] == '\r' && i + 1 < len && f[i + 1] == '\n') {
			i++;
			continue;
		}
		if (is_wsp(f[i])) {
			if (v.len == 0 || v.p[v.len - 1] != ' ')
				dkp_buf_addc(&v, ' ');
			continue;
		}
		dkp_buf_addc(&v, f[i]);
	}
	/* no WSP at either end of the value */
	b = 0;
	e = v.len;
	while (b < e && v.p[b] == ' ')
		b++;
	while (e > b && v.p[e - 1] == ' ')
		e--;
	if (e > b)
		dkp_buf_add(out, v.p + b, e - b);
	if (crlf)
		dkp_buf_add(out, "\r\n", 2);
	dkp_buf_free(&v);
}

/* 3.4.3 on a CRLF body. */
static void ref_body_simple(const char *b, size_t len, struct dkp_buf *out)
{
	while (len >= 4 && memcmp(b + len - 4, "\r\n\r\n", 4) == 0)
		len -= 2;
	if (len == 2 && memcmp(b, "\r\n", 2) == 0)
		len = 0;
	dkp_buf_add(out, b, len);
	if (len < 2 || memcmp(b + len - 2, "\r\n", 2) != 0)
		dkp_buf_add(out, "\r\n", 2);
}

/* 3.4.4 on a CRLF body: lines are what CRLF separates (a lone CR is an
 * ordinary byte); in each, WSP runs become one SP and trailing WSP goes;
 * empty lines at the end go; a non-empty body ends in CRLF. */
static void ref_body_relaxed(const char *b, size_t len, struct dkp_buf *out)
{
	struct dkp_buf lines, line;
	size_t i, keep = 0;

	dkp_buf_init(&lines);
	dkp_buf_init(&line);
	for (i = 0; i <= len; i++) {
		int eol = i == len || (b[i] == '\r' && i + 1 < len && b[i + 1] == '\n');

		if (!eol) {
			if (is_wsp(b[i])) {
				if (i == 0 || !is_wsp(b[i - 1]))
					dkp_buf_addc(&line, ' ');	/* a run starts */
			} else {
				dkp_buf_addc(&line, b[i]);
			}
			continue;
		}
		if (i == len && line.len == 0)
			break;	/* nothing after the last CRLF */
		while (line.len > 0 && line.p[line.len - 1] == ' ')
			line.len--;
		dkp_buf_add(&lines, line.p ? line.p : "", line.len);
		dkp_buf_add(&lines, "\r\n", 2);
		if (line.len > 0)
			keep = lines.len;	/* up to the last non-empty line */
		dkp_buf_reset(&line);
		i++;	/* the LF */
	}
	dkp_buf_add(out, lines.p ? lines.p : "", keep);
	dkp_buf_free(&lines);
	dkp_buf_free(&line);
}

/* ---- checks --------------------------------------------------------- */

static void digest(const void *p, size_t n, unsigned char out[32])
{
	unsigned int dl;

	FUZZ_CHECK(EVP_DigestInit_ex2(md, EVP_sha256(), NULL) &&
		   EVP_DigestUpdate(md, p, n) && EVP_DigestFinal_ex(md, out, &dl),
		   "sha256");
}

/* dkp_canon_body against the reference, uncapped and capped at limit. */
static void check_body(enum dkp_canon c, const char *b, size_t len,
		       uint64_t limit)
{
	struct dkp_buf ref;
	struct dkp_hsink *s = malloc(sizeof(*s));
	unsigned char got[32], want[32];
	unsigned int dl;
	int pass;

	dkp_buf_init(&ref);
	if (c == DKP_CANON_SIMPLE)
		ref_body_simple(b, len, &ref);
	else
		ref_body_relaxed(b, len, &ref);
	for (pass = 0; pass < 2; pass++) {
		uint64_t cap = pass ? limit : UINT64_MAX;
		size_t n = ref.len < cap ? ref.len : (size_t)cap;

		FUZZ_CHECK(EVP_DigestInit_ex2(md, EVP_sha256(), NULL), "init");
		dkp_hsink_init(s, md, cap);
		FUZZ_CHECK(dkp_canon_body(c, b, len, s) == 0, "canon_body failed");
		FUZZ_CHECK(EVP_DigestFinal_ex(md, got, &dl), "final");
		FUZZ_CHECK(s->total == ref.len,
			   "%s body: %llu canonical bytes, reference %zu",
			   dkp_canon_name(c), (unsigned long long)s->total,
			   ref.len);
		digest(ref.p ? ref.p : "", n, want);
		FUZZ_CHECK(memcmp(got, want, 32) == 0,
			   "%s body (cap %llu): hash differs from the reference",
			   dkp_canon_name(c), (unsigned long long)cap);
	}
	dkp_buf_free(&ref);
	free(s);
}

static void check_field(const struct dkp_msg *m, size_t i, size_t split)
{
	const struct dkp_field *f = &m->fields[i];
	const char *p = m->data + f->off;
	struct dkp_buf got, want, t;
	size_t n = f->len, k;
	int crlf;

	dkp_buf_init(&got);
	dkp_buf_init(&want);
	dkp_buf_init(&t);
	for (crlf = 0; crlf < 2; crlf++) {
		/* simple: the field as it is (3.4.1) */
		dkp_buf_reset(&got);
		dkp_canon_header(DKP_CANON_SIMPLE, p, n, f->name_len, crlf, &got);
		k = !crlf && n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n' ? n - 2 : n;
		FUZZ_CHECK(got.len == k && memcmp(got.p, p, k) == 0,
			   "simple header canonicalization changed field %zu", i);
		/* relaxed against the reference */
		dkp_buf_reset(&got);
		dkp_buf_reset(&want);
		dkp_canon_header(DKP_CANON_RELAXED, p, n, f->name_len, crlf, &got);
		ref_header_relaxed(p, n, f->name_len, crlf, &want);
		FUZZ_CHECK(got.len == want.len && memcmp(got.p, want.p, got.len) == 0,
			   "relaxed field %zu: got '%.*s' want '%.*s'", i,
			   (int)got.len, got.p, (int)want.len, want.p);
	}
	/* the template contract: split after a non-WSP byte of the value */
	if (n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n')
		n -= 2;
	k = f->colon + 2 + split % (n - f->colon > 1 ? n - f->colon - 1 : 1);
	if (k <= n && k > f->colon + 1 && !is_wsp(p[k - 1]) &&
	    p[k - 1] != '\r' && p[k - 1] != '\n') {
		enum dkp_canon c;

		for (c = DKP_CANON_SIMPLE; c <= DKP_CANON_RELAXED; c++) {
			dkp_buf_reset(&want);
			dkp_canon_header(c, p, n, f->name_len, 0, &want);
			dkp_buf_reset(&t);
			dkp_canon_header(c, p, k, f->name_len, 0, &t);
			dkp_canon_header_tail(c, p + k, n - k, &t);
			FUZZ_CHECK(t.len == want.len && memcmp(t.p, want.p, t.len) == 0,
				   "%s field %zu split at %zu: canon(prefix)+tail "
				   "'%.*s' != canon '%.*s'", dkp_canon_name(c), i,
				   k, (int)t.len, t.p, (int)want.len, want.p);
		}
	}
	dkp_buf_free(&got);
	dkp_buf_free(&want);
	dkp_buf_free(&t);
}

static void check_index(const struct dkp_msg *m)
{
	size_t i, at = 0, hdr_end;
	const char *lf;

	FUZZ_CHECK(m->nfields > 0 && m->from_idx < m->nfields, "no fields");
	FUZZ_CHECK(dkp_msg_field_is(m, m->from_idx, "from", 4), "from_idx");
	FUZZ_CHECK(dkp_msg_count(m, "FROM", 4) == 1, "From count");
	FUZZ_CHECK(m->body_off <= m->len, "body_off %zu > len %zu",
		   m->body_off, m->len);
	/* every LF has its CR */
	for (lf = m->data; (lf = memchr(lf, '\n', m->len - (size_t)(lf - m->data)));
	     lf++)
		FUZZ_CHECK(lf > m->data && lf[-1] == '\r', "bare LF at %zu",
			   (size_t)(lf - m->data));
	for (i = 0; i < m->nfields; i++) {
		const struct dkp_field *f = &m->fields[i];
		size_t j;

		FUZZ_CHECK(f->off == at, "field %zu starts at %zu, not %zu", i,
			   f->off, at);
		FUZZ_CHECK(f->len > 0 && f->off + f->len <= m->len, "field %zu", i);
		FUZZ_CHECK(f->name_len > 0 && f->name_len <= f->colon &&
			   f->colon < f->len && m->data[f->off + f->colon] == ':',
			   "field %zu: name %zu colon %zu", i, f->name_len, f->colon);
		for (j = f->name_len; j < f->colon; j++)
			FUZZ_CHECK(is_wsp(m->data[f->off + j]), "field %zu", i);
		FUZZ_CHECK(memchr(m->data + f->off, '\0', f->len) == NULL,
			   "NUL in field %zu", i);
		at = f->off + f->len;
	}
	hdr_end = at;
	FUZZ_CHECK(m->body_off == hdr_end ||
		   (m->body_off == hdr_end + 2 &&
		    memcmp(m->data + hdr_end, "\r\n", 2) == 0),
		   "body_off %zu after header end %zu", m->body_off, hdr_end);
}

static void check_from(const struct dkp_msg *m)
{
	char local[256], dom[256], tiny[4];
	struct dkp_err err;
	size_t i;

	if (dkp_msg_from_address(m, local, sizeof(local), dom, sizeof(dom),
				 &err) == DKP_OK) {
		FUZZ_CHECK(dom[0] != '\0' && dom[strlen(dom) - 1] != '.',
			   "From domain '%s'", dom);
		for (i = 0; dom[i]; i++) {
			unsigned char c = (unsigned char)dom[i];

			FUZZ_CHECK(c >= 0x80 || c == '-' || c == '.' ||
				   isdigit(c) || islower(c),
				   "From domain '%s' has byte 0x%02x", dom, c);
		}
	}
	/* tight buffers must fail cleanly, not overflow */
	(void)dkp_msg_from_address(m, tiny, sizeof(tiny), tiny, sizeof(tiny),
				   &err);
	(void)dkp_msg_from_domain(m, tiny, sizeof(tiny), &err);
}

static void check_envelope(const char *p, size_t n,
			   const struct dkp_envelope *env)
{
	struct dkp_buf b;
	size_t i, o = 0;

	FUZZ_CHECK(env->len <= n, "envelope length");
	if (env->len == 0) {
		FUZZ_CHECK(env->nlines == 0 && env->nrcpt == 0, "empty envelope");
		return;
	}
	FUZZ_CHECK(env->nrcpt >= 1 && env->nlines == env->nrcpt + 1,
		   "envelope: %zu lines, %zu recipients", env->nlines,
		   env->nrcpt);
	FUZZ_CHECK(p[env->len - 1] == '\n', "envelope ends mid-line");
	for (i = 0; i <= env->nrcpt && i <= DKP_ENVELOPE_KEEP_RCPT; i++) {
		const struct dkp_envelope_addr *a =
			i == 0 ? &env->sender : &env->rcpt[i - 1];
		size_t j;

		if (i > 0 && i > env->nrcpt)
			break;
		if (a->len == 0) {
			FUZZ_CHECK(i == 0 && a->p == NULL, "null recipient");
			continue;
		}
		FUZZ_CHECK(a->p >= p && a->p + a->len <= p + env->len &&
			   a->len <= DKP_ENVELOPE_MAX_ADDR, "address %zu", i);
		FUZZ_CHECK(memchr(a->p, '@', a->len) != NULL, "address %zu", i);
		for (j = 0; j < a->len; j++) {
			unsigned char c = (unsigned char)a->p[j];

			FUZZ_CHECK(c > 32 && c != 127 && c != '<' && c != '>',
				   "address %zu has byte 0x%02x", i, c);
		}
	}
	/* the CRLF copy: the same bytes with every LF as CRLF */
	dkp_buf_init(&b);
	dkp_envelope_add_crlf(&b, p, env);
	for (i = 0; i < env->len; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
			FUZZ_CHECK(o < b.len && b.p[o] == '\r', "add_crlf at %zu", i);
			o++;
		}
		FUZZ_CHECK(o < b.len && b.p[o] == p[i], "add_crlf at %zu", i);
		o++;
	}
	FUZZ_CHECK(o == b.len, "add_crlf length %zu, want %zu", b.len, o);
	dkp_buf_free(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	md = EVP_MD_CTX_new();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct dkp_envelope env;
	struct dkp_limits tight;
	struct dkp_err err;
	struct dkp_msg m, m2;
	size_t off = 0, i;
	int rc, rc2;

	rc = dkp_envelope_split(p, size, &env, &err);
	if (rc == DKP_OK) {
		check_envelope(p, size, &env);
		off = env.len;
	} else {
		FUZZ_CHECK(rc == DKP_E_SYNTAX && env.len == 0,
			   "envelope: status %d", rc);
	}

	dkp_msg_init(&m);
	rc = dkp_msg_parse(&m, p + off, size - off, NULL, &err);
	FUZZ_CHECK(rc == DKP_OK || rc == DKP_E_SYNTAX || rc == DKP_E_FROM ||
		   rc == DKP_E_LIMIT, "parse: status %d", rc);
	if (rc == DKP_OK) {
		const char *body = m.data + m.body_off;
		size_t blen = m.len - m.body_off;
		uint64_t cap = size ? data[size - 1] % 64 : 0;

		check_index(&m);
		for (i = 0; i < m.nfields; i++)
			check_field(&m, i, size + i);
		check_from(&m);
		check_body(DKP_CANON_SIMPLE, body, blen, cap);
		check_body(DKP_CANON_RELAXED, body, blen, cap);
		/* reparse into the same storage: the same index */
		rc2 = dkp_msg_parse(&m, p + off, size - off, NULL, &err);
		FUZZ_CHECK(rc2 == DKP_OK, "reparse: %s", err.msg);
	}

	/* tight limits: never more than the default parse accepts */
	tight.max_fields = 4;
	tight.max_header_bytes = 256;
	tight.max_message_bytes = 2048;
	dkp_msg_init(&m2);
	rc2 = dkp_msg_parse(&m2, p + off, size - off, &tight, &err);
	if (rc2 == DKP_OK) {
		FUZZ_CHECK(rc == DKP_OK && m2.nfields == m.nfields &&
			   m2.body_off == m.body_off,
			   "tight limits accepted what the defaults refused");
		FUZZ_CHECK(m2.nfields <= 4, "max_fields");
	}
	dkp_msg_fini(&m2);
	dkp_msg_fini(&m);

	/* the body canonicalizers on raw bytes too (bare LF, bare CR) */
	{
		struct dkp_hsink *s = malloc(sizeof(*s));
		enum dkp_canon c;

		for (c = DKP_CANON_SIMPLE; c <= DKP_CANON_RELAXED; c++) {
			FUZZ_CHECK(EVP_DigestInit_ex2(md, EVP_sha256(), NULL), "init");
			dkp_hsink_init(s, md, UINT64_MAX);
			FUZZ_CHECK(dkp_canon_body(c, p, size, s) == 0, "canon_body");
		}
		free(s);
	}
	return 0;
}
