/*
 * canon.c — RFC 6376 section 3.4 canonicalization of header fields and
 * bodies. Input always has CRLF line endings (msg_parse.c normalises);
 * a bare CR is an ordinary byte, and WSP means SP or HTAB only (RFC 5234).
 */
#include "dkim/canon.h"

#include <string.h>
#include <strings.h>

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * 3.4.2 on a value: unfold (drop each CRLF, keep the WSP), WSP runs
 * become one SP, none at the end; none at the start either unless
 * started. Writes to o (room for len bytes) and returns its new end;
 * local pointers, not the buffer's fields, so that the compiler keeps
 * them in registers (this runs for every signature of every message).
 */
static char *relaxed_value(const char *f, size_t len, int started, char *o)
{
	const char *end = f + len;
	int pending_sp = 0;

	while (f < end) {
		char ch = *f++;

		if (ch == '\r' && f < end && *f == '\n') {
			f++;	/* unfold: drop the CRLF, keep the WSP */
			continue;
		}
		if (is_wsp(ch)) {
			pending_sp = 1;
			continue;
		}
		if (pending_sp && started)
			*o++ = ' ';
		pending_sp = 0;
		started = 1;
		*o++ = ch;
	}
	return o;
}

void dkp_canon_header(enum dkp_canon c, const char *f, size_t len,
		      size_t name_len, int crlf, struct dkp_buf *out)
{
	size_t i, vstart;
	char *o;

	if (c == DKP_CANON_SIMPLE) {
		/* 3.4.1: no change at all. */
		if (!crlf && len >= 2 && f[len - 2] == '\r' && f[len - 1] == '\n')
			len -= 2;
		dkp_buf_add(out, f, len);
		return;
	}
	/* 3.4.2: lower-case the name; unfold; WSP runs become one SP; no WSP
	 * at the end of the value nor around the colon. */
	dkp_buf_reserve(out, len + 2);
	o = out->p + out->len;
	for (i = 0; i < name_len; i++) {
		unsigned char ch = (unsigned char)f[i];

		*o++ = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
	}
	*o++ = ':';
	for (vstart = name_len; vstart < len && f[vstart] != ':'; vstart++)
		;
	if (len >= 2 && f[len - 2] == '\r' && f[len - 1] == '\n')
		len -= 2;
	if (vstart + 1 < len)
		o = relaxed_value(f + vstart + 1, len - vstart - 1, 0, o);
	if (crlf) {
		*o++ = '\r';
		*o++ = '\n';
	}
	out->len = (size_t)(o - out->p);
	out->p[out->len] = '\0';
}

void dkp_canon_header_tail(enum dkp_canon c, const char *p, size_t len,
			   struct dkp_buf *out)
{
	if (c == DKP_CANON_SIMPLE) {
		dkp_buf_add(out, p, len);
		return;
	}
	dkp_buf_reserve(out, len);
	out->len = (size_t)(relaxed_value(p, len, 1, out->p + out->len) - out->p);
	out->p[out->len] = '\0';
}

void dkp_hsink_init(struct dkp_hsink *s, EVP_MD_CTX *md, uint64_t limit)
{
	s->md = md;
	s->limit = limit;
	s->total = 0;
	s->n = 0;
}

int dkp_hsink_flush(struct dkp_hsink *s)
{
	int ok = 1;

	if (s->n)
		ok = EVP_DigestUpdate(s->md, s->stage, s->n);
	s->n = 0;
	return ok ? 0 : -1;
}

/* Feed canonical bytes, honouring the cap. Large runs bypass the stage. */
static int sink_put(struct dkp_hsink *s, const char *p, size_t n)
{
	uint64_t room;

	if (s->total >= s->limit) {
		s->total += n;
		return 0;
	}
	room = s->limit - s->total;
	s->total += n;
	if (n > room)
		n = (size_t)room;
	if (n >= sizeof(s->stage) / 2) {
		if (dkp_hsink_flush(s) < 0 || !EVP_DigestUpdate(s->md, p, n))
			return -1;
		return 0;
	}
	if (s->n + n > sizeof(s->stage) && dkp_hsink_flush(s) < 0)
		return -1;
	memcpy(s->stage + s->n, p, n);
	s->n += n;
	return 0;
}

/* Length of body once trailing empty lines are dropped (simple). */
static size_t simple_end(const char *b, size_t len)
{
	while (len >= 4 && memcmp(b + len - 4, "\r\n\r\n", 4) == 0)
		len -= 2;
	if (len == 2 && b[0] == '\r' && b[1] == '\n')
		len = 0;
	return len;
}

static int body_simple(const char *b, size_t len, struct dkp_hsink *s)
{
	len = simple_end(b, len);
	if (len == 0)
		return sink_put(s, "\r\n", 2);	/* 3.4.3: empty body */
	if (sink_put(s, b, len) < 0)
		return -1;
	if (len < 2 || b[len - 2] != '\r' || b[len - 1] != '\n')
		return sink_put(s, "\r\n", 2);	/* complete the last line */
	return 0;
}

/*
 * Relaxed output is mostly the input itself: a span of source bytes that
 * is already canonical is kept as [vs, ve) and handed to the sink in one
 * piece when something else must be emitted, so ordinary text is hashed
 * in place, not copied a word at a time.
 */
struct vspan {
	const char *b;
	size_t vs, ve;
	struct dkp_hsink *s;
};

/* Emit source bytes [i, i + n). */
static int vs_src(struct vspan *v, size_t i, size_t n)
{
	if (n == 0)
		return 0;
	if (i == v->ve) {
		v->ve += n;
		return 0;
	}
	if (v->ve > v->vs && sink_put(v->s, v->b + v->vs, v->ve - v->vs) < 0)
		return -1;
	v->vs = i;
	v->ve = i + n;
	return 0;
}

/* Emit bytes that are not in the source as they stand. */
static int vs_lit(struct vspan *v, const char *p, size_t n)
{
	if (v->ve > v->vs && sink_put(v->s, v->b + v->vs, v->ve - v->vs) < 0)
		return -1;
	v->vs = v->ve = 0;
	return sink_put(v->s, p, n);
}

/* 0x80 in every byte of x that is zero, nothing elsewhere (exact). */
static inline uint64_t zero_bytes(uint64_t x)
{
	const uint64_t lo7 = 0x7f7f7f7f7f7f7f7fULL;

	return ~(((x & lo7) + lo7) | x | lo7);
}

/*
 * The length of the line at s (up to its LF, or n); *plain says whether
 * it holds no TAB and no two SPs in a row, so that relaxed leaves it as it
 * is (trailing WSP aside). One pass, eight bytes at a time.
 */
static size_t scan_line(const char *s, size_t n, int *plain)
{
	size_t i = 0;
	int last_sp = 0, ok = 1;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; i + 8 <= n; i += 8) {
		uint64_t x, nl, sp, bad;

		memcpy(&x, s + i, 8);
		nl = zero_bytes(x ^ 0x0a0a0a0a0a0a0a0aULL);
		sp = zero_bytes(x ^ 0x2020202020202020ULL);
		/* byte k is bits 8k..8k+7; flag a TAB, or a SP at k and k + 1 */
		bad = zero_bytes(x ^ 0x0909090909090909ULL) | (sp & (sp >> 8)) |
		      (last_sp ? sp & 0x80 : 0);
		if (nl) {
			uint64_t before = ((nl & (0 - nl)) >> 7) - 1;

			*plain = ok && !(bad & before);
			return i + ((size_t)__builtin_ctzll(nl) >> 3);
		}
		ok &= !bad;
		last_sp = (int)(sp >> 63);
	}
#endif
	for (; i < n && s[i] != '\n'; i++) {
		if (s[i] == '\t' || (s[i] == ' ' && last_sp))
			ok = 0;
		last_sp = s[i] == ' ';
	}
	*plain = ok;
	return i;
}

/* empties empty lines before the line at p, followed by a non-empty one
 * so not trailing: from the source when they are bare CRLFs from estart,
 * else as literal CRLFs. */
static int emit_empties(struct vspan *v, size_t p, size_t empties, size_t estart)
{
	static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
	size_t run;

	if (estart != SIZE_MAX && p - estart == 2 * empties)
		return vs_src(v, estart, p - estart);
	for (; empties > 0; empties -= run) {
		run = empties < 8 ? empties : 8;
		if (vs_lit(v, crlfs, run * 2) < 0)
			return -1;
	}
	return 0;
}

/* 3.4.4 b: the line [p, le) with each WSP run inside it as one SP. */
static int collapse_wsp(struct vspan *v, size_t p, size_t le)
{
	const char *b = v->b;
	size_t i, j;

	for (i = p; i < le; i = j) {
		for (j = i; j < le && !is_wsp(b[j]); j++)
			;
		if (vs_src(v, i, j - i) < 0)
			return -1;
		if (j == le)
			break;
		if (b[j] == ' ' && !is_wsp(b[j + 1])) {
			if (vs_src(v, j, 1) < 0)	/* one SP: as is */
				return -1;
			j++;
		} else {
			if (vs_lit(v, " ", 1) < 0)
				return -1;
			while (j < le && is_wsp(b[j]))
				j++;
		}
	}
	return 0;
}

static int body_relaxed(const char *b, size_t len, struct dkp_hsink *s)
{
	struct vspan v = { b, 0, 0, s };
	size_t p = 0, empties = 0, estart = 0;

	while (p < len) {
		int plain;
		size_t k = scan_line(b + p, len - p, &plain);
		const char *nl = p + k < len ? b + p + k : NULL;
		size_t e, le, crlf;

		/* the line is [p, le); e is past its CRLF (or len) */
		if (nl != NULL && nl > b + p && nl[-1] == '\r') {
			e = (size_t)(nl - b) + 1;
			le = e - 2;
		} else if (nl != NULL) {
			e = (size_t)(nl - b) + 1;	/* not after normalise */
			le = e - 1;
		} else {
			e = le = len;
		}
		crlf = le + 2 == e ? le : SIZE_MAX;	/* a CRLF right at le */
		while (le > p && is_wsp(b[le - 1])) {
			le--;	/* 3.4.4 a: no WSP at the end of a line */
			crlf = SIZE_MAX;
		}
		if (le == p) {
			if (empties++ == 0)
				estart = p;	/* maybe trailing empty lines: defer */
			if (crlf == SIZE_MAX)
				estart = SIZE_MAX;	/* not bare CRLFs */
			p = e;
			continue;
		}
		if (empties > 0 && emit_empties(&v, p, empties, estart) < 0)
			return -1;
		empties = 0;
		if (crlf != SIZE_MAX && plain) {
			if (vs_src(&v, p, e - p) < 0)	/* the common case */
				return -1;
			p = e;
			continue;
		}
		if (collapse_wsp(&v, p, le) < 0)
			return -1;
		/* every non-empty line ends in CRLF, even the last (3.4.4) */
		if (crlf != SIZE_MAX ? vs_src(&v, crlf, 2) < 0
				     : vs_lit(&v, "\r\n", 2) < 0)
			return -1;
		p = e;
	}
	/* trailing empty lines (3.4.4 c) are never emitted */
	if (v.ve > v.vs && sink_put(s, b + v.vs, v.ve - v.vs) < 0)
		return -1;
	return 0;
}

int dkp_canon_body(enum dkp_canon c, const char *body, size_t len,
		   struct dkp_hsink *s)
{
	int rc = c == DKP_CANON_SIMPLE ? body_simple(body, len, s)
				       : body_relaxed(body, len, s);

	if (rc < 0)
		return -1;
	return dkp_hsink_flush(s);
}

const char *dkp_canon_name(enum dkp_canon c)
{
	return c == DKP_CANON_RELAXED ? "relaxed" : "simple";
}

static int canon_word(const char *s, size_t n, enum dkp_canon *c)
{
	if (n == 6 && strncasecmp(s, "simple", 6) == 0)
		*c = DKP_CANON_SIMPLE;
	else if (n == 7 && strncasecmp(s, "relaxed", 7) == 0)
		*c = DKP_CANON_RELAXED;
	else
		return DKP_E_USAGE;
	return DKP_OK;
}

int dkp_canon_parse(const char *s, enum dkp_canon *h, enum dkp_canon *b)
{
	const char *slash = strchr(s, '/');

	if (slash == NULL) {
		*b = DKP_CANON_SIMPLE;	/* RFC 6376 3.5: c=relaxed means relaxed/simple */
		return canon_word(s, strlen(s), h);
	}
	if (canon_word(s, (size_t)(slash - s), h) != DKP_OK)
		return DKP_E_USAGE;
	return canon_word(slash + 1, strlen(slash + 1), b);
}
