/*
 * msg_parse.c — split a message into an indexed header block and a body.
 *
 * The parser takes (ptr, len), never relies on a trailing NUL, and treats
 * every byte of the input as data: bad input gives a status and a one-line
 * reason, never a crash. Line endings: CRLF is canonical (RFC 5322); bare
 * LF, common in files written by local programs, becomes CRLF in a private
 * copy so everything downstream sees one form. A bare CR is not a line
 * ending and is kept as it is.
 */
#include "dkim/msg_parse.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"

void dkp_limits_default(struct dkp_limits *lim)
{
	lim->max_header_bytes = DKP_DEFAULT_MAX_HEADER_BYTES;
	lim->max_fields = DKP_DEFAULT_MAX_FIELDS;
	lim->max_message_bytes = DKP_DEFAULT_MAX_MESSAGE_BYTES;
}

void dkp_msg_init(struct dkp_msg *m)
{
	memset(m, 0, sizeof(*m));
}

void dkp_msg_fini(struct dkp_msg *m)
{
	dkp_free(m->fields);
	dkp_free(m->own);
	dkp_msg_init(m);
}

/* Count LF bytes not preceded by CR. */
static size_t count_bare_lf(const char *p, size_t len)
{
	const char *q = p, *end = p + len;
	size_t n = 0;

	while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		if (q == p || q[-1] != '\r')
			n++;
		q++;
	}
	return n;
}

/* Copy buf into m->own, turning each bare LF into CRLF. */
static void normalise(struct dkp_msg *m, const char *buf, size_t len,
		      size_t extra)
{
	size_t i, o = 0;

	if (m->own_cap < len + extra) {
		dkp_free(m->own);
		m->own_cap = len + extra;
		m->own = dkp_malloc(m->own_cap);
	}
	for (i = 0; i < len; i++) {
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			m->own[o++] = '\r';
		m->own[o++] = buf[i];
	}
	m->data = m->own;
	m->len = o;
}

static int is_ftext(unsigned char c)
{
	/* RFC 5322 2.2: printable US-ASCII except colon. */
	return c >= 33 && c <= 126 && c != ':';
}

static struct dkp_field *new_field(struct dkp_msg *m)
{
	if (m->nfields == m->fields_cap) {
		m->fields_cap = m->fields_cap ? m->fields_cap * 2 : 32;
		m->fields = dkp_realloc(m->fields,
					m->fields_cap * sizeof(*m->fields));
	}
	return &m->fields[m->nfields++];
}

/* End of the line starting at p: offset just past its CRLF, or len. */
static size_t line_end(const char *d, size_t p, size_t len)
{
	const char *q = d + p;

	for (;;) {
		q = memchr(q, '\n', len - (size_t)(q - d));
		if (q == NULL)
			return len;
		if (q > d + p && q[-1] == '\r')
			return (size_t)(q - d) + 1;
		q++;	/* cannot happen after normalise(); be safe */
	}
}

/*
 * A message of header fields only, without the empty line after them, and
 * perhaps without the CRLF that ends its last line: close the header
 * block in the private copy (CRLF if missing, then the empty line), so
 * that it is signed, verified and written out as it travels. SMTP adds
 * the missing CRLF (RFC 5321 4.1.1.4), and a receiver that hashes the
 * last field with it (simple header canonicalization, RFC 6376 3.4.1)
 * must find it in what we hashed. The empty line changes no hash: no body
 * and an empty body canonicalize alike (3.4.3, 3.4.4); but libopendkim
 * 2.11 (simple header) and mailauth do not verify a message without it.
 */
static int close_header_block(struct dkp_msg *m, const struct dkp_limits *lim,
			      struct dkp_err *err)
{
	int has_crlf = m->len >= 2 && m->data[m->len - 2] == '\r' &&
		       m->data[m->len - 1] == '\n';
	size_t need = has_crlf ? 2 : 4;

	if (m->len + need > lim->max_header_bytes)
		return dkp_err_set(err, DKP_E_LIMIT, 0, "parse",
				   "header block exceeds the limit of %zu bytes",
				   lim->max_header_bytes);
	if (m->data != m->own) {
		normalise(m, m->data, m->len, need);	/* a plain copy */
	} else if (m->own_cap < m->len + need) {
		m->own_cap = m->len + need;
		m->own = dkp_realloc(m->own, m->own_cap);
		m->data = m->own;
	}
	if (!has_crlf) {
		memcpy(m->own + m->len, "\r\n", 2);
		m->len += 2;
		m->fields[m->nfields - 1].len += 2;
	}
	memcpy(m->own + m->len, "\r\n", 2);
	m->len += 2;
	m->body_off = m->len;
	return DKP_OK;
}

/* One header line d[p..e) (line lineno) that starts a field: checked and
 * added to m's fields. */
static int add_field(struct dkp_msg *m, size_t p, size_t e, size_t lineno,
		     const struct dkp_limits *lim, struct dkp_err *err)
{
	const char *d = m->data;
	struct dkp_field *f;
	size_t i, name_end;

	for (i = p; i < e && is_ftext((unsigned char)d[i]); i++)
		;
	name_end = i;
	while (i < e && (d[i] == ' ' || d[i] == '\t'))
		i++;
	if (name_end == p || i >= e || d[i] != ':')
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse",
				   "header line %zu is not a header field", lineno);
	if (i != name_end)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse",
				   "header field '%.*s' (line %zu) has white space before its colon: obsolete syntax (RFC 5322 4.5) that verifiers read differently (dkimpy refuses the message, libopendkim does not see \"From<TAB>:\" as From)",
				   (int)(name_end - p > 64 ? 64 : name_end - p), d + p, lineno);
	if (m->nfields >= lim->max_fields)
		return dkp_err_set(err, DKP_E_LIMIT, 0, "parse",
				   "more than %zu header fields", lim->max_fields);
	f = new_field(m);
	f->off = p;
	f->len = e - p;
	f->name_len = name_end - p;
	f->colon = i - p;
	return DKP_OK;
}

/* The header block of m->data: its fields, and m->body_off; *closed when
 * an empty line ended it. */
static int parse_header_block(struct dkp_msg *m, const struct dkp_limits *lim,
			      int *closed, struct dkp_err *err)
{
	const char *d = m->data;
	size_t len = m->len, p, e, lineno = 0;

	*closed = 0;
	for (p = 0;; p = e) {
		if (p >= len) {		/* header block without a body */
			m->body_off = len;
			return DKP_OK;
		}
		lineno++;
		e = line_end(d, p, len);
		if (e > lim->max_header_bytes)
			return dkp_err_set(err, DKP_E_LIMIT, 0, "parse",
					   "header block exceeds the limit of %zu bytes",
					   lim->max_header_bytes);
		if (memchr(d + p, '\0', e - p) != NULL)
			return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse",
					   "NUL byte in header line %zu", lineno);
		if (e - p == 2 && d[p] == '\r' && d[p + 1] == '\n') {	/* the empty line */
			if (m->nfields == 0)
				return DKP_OK;	/* reported by the caller */
			m->body_off = e;
			*closed = 1;
			return DKP_OK;
		}
		if (d[p] == ' ' || d[p] == '\t') {	/* folded line */
			if (m->nfields == 0)
				return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse",
						   "the header block starts with a continuation line");
			m->fields[m->nfields - 1].len = e - m->fields[m->nfields - 1].off;
			continue;
		}
		if (add_field(m, p, e, lineno, lim, err) != DKP_OK)
			return err->code;
	}
}

/* Exactly one From field (RFC 6376 8.15); m->from_idx. */
static int find_from(struct dkp_msg *m, struct dkp_err *err)
{
	size_t p, nfrom = 0;

	for (p = 0; p < m->nfields; p++)
		if (dkp_msg_field_is(m, p, "From", 4)) {
			nfrom++;
			m->from_idx = p;
		}
	if (nfrom == 0)
		return dkp_err_set(err, DKP_E_FROM, 0, "parse", "no From field");
	if (nfrom > 1)
		return dkp_err_set(err, DKP_E_FROM, 0, "parse",
				   "%zu From fields (RFC 6376 8.15 requires exactly one)", nfrom);
	return DKP_OK;
}

int dkp_msg_parse(struct dkp_msg *m, const char *buf, size_t len,
		  const struct dkp_limits *lim, struct dkp_err *err)
{
	struct dkp_limits deflim;
	size_t bare;
	int closed = 0;

	if (lim == NULL) {
		dkp_limits_default(&deflim);
		lim = &deflim;
	}
	m->nfields = 0;
	m->data = NULL;
	m->len = 0;
	if (len > lim->max_message_bytes)
		return dkp_err_set(err, DKP_E_LIMIT, 0, "parse",
				   "message of %zu bytes exceeds the limit of %zu",
				   len, lim->max_message_bytes);
	if (len == 0)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse", "empty message");
	bare = count_bare_lf(buf, len);
	if (bare) {
		normalise(m, buf, len, bare);
	} else {
		m->data = buf;
		m->len = len;
	}
	if (parse_header_block(m, lim, &closed, err) != DKP_OK)
		return err->code;
	if (m->nfields == 0)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse", "no header block");
	if (m->body_off == m->len && !closed &&
	    close_header_block(m, lim, err) != DKP_OK)
		return err->code;
	m->lim = *lim;
	return find_from(m, err);
}

const char *dkp_msg_field_name(const struct dkp_msg *m, size_t i)
{
	return m->data + m->fields[i].off;
}

int dkp_msg_field_is(const struct dkp_msg *m, size_t i, const char *name,
		     size_t n)
{
	const struct dkp_field *f = &m->fields[i];

	return f->name_len == n &&
	       strncasecmp(m->data + f->off, name, n) == 0;
}

size_t dkp_msg_count(const struct dkp_msg *m, const char *name, size_t n)
{
	size_t i, c = 0;

	for (i = 0; i < m->nfields; i++)
		c += dkp_msg_field_is(m, i, name, n);
	return c;
}

/* Skip an RFC 5322 comment starting at s[i] == '('; returns index after. */
static size_t skip_comment(const char *s, size_t i, size_t n)
{
	int depth = 0;

	for (; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i + 1;
	}
	return n;
}

static size_t skip_quoted(const char *s, size_t i, size_t n)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

int dkp_msg_from_domain(const struct dkp_msg *m, char *out, size_t outsz,
			struct dkp_err *err)
{
	char local[2];

	return dkp_msg_from_address(m, local, 0, out, outsz, err);
}

/* The first mailbox of From value v[0..n): inside <...> if there is one,
 * else up to a ',', skipping comments and quoted strings, whose '@' and
 * '<' do not count; [*start, *end) the address, *at its last '@' (n:
 * none). */
static void first_mailbox(const char *v, size_t n, size_t *start, size_t *end,
			  size_t *at)
{
	size_t i;
	int angle = 0;

	*start = 0;
	*end = *at = n;
	for (i = 0; i < n;) {
		char c = v[i];

		if (c == '(') {
			i = skip_comment(v, i, n);
			continue;
		}
		if (c == '"') {
			i = skip_quoted(v, i, n);
			continue;
		}
		if (c == '<' && !angle) {
			angle = 1;
			*start = i + 1;
			*at = n;
		} else if ((c == '>' && angle) || (c == ',' && !angle)) {
			*end = i;
			return;
		} else if (c == ':' && !angle) {
			*start = i + 1;	/* group "name: addr;" */
		} else if (c == '@' && i >= *start) {
			*at = i;
		}
		i++;
	}
}

/* The domain v[from..end), lower-cased, into out. */
static int mailbox_domain(const char *v, size_t from, size_t end, char *out,
			  size_t outsz, struct dkp_err *err)
{
	size_t i, o = 0;

	for (i = from; i < end; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';')
			continue;
		if (c == '(') {
			i = skip_comment(v, i, end) - 1;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '.' || c >= 0x80) || o + 1 >= outsz)
			return dkp_err_set(err, DKP_E_FROM, 0, "route",
					   "the From address has an invalid domain");
		out[o++] = (char)tolower(c);
	}
	while (o > 0 && out[o - 1] == '.')
		o--;
	if (o == 0)
		return dkp_err_set(err, DKP_E_FROM, 0, "route",
				   "the From address has an empty domain");
	out[o] = '\0';
	return DKP_OK;
}

int dkp_msg_from_address(const struct dkp_msg *m, char *local,
			 size_t localsz, char *out, size_t outsz,
			 struct dkp_err *err)
{
	const struct dkp_field *f = &m->fields[m->from_idx];
	const char *v = m->data + f->off + f->colon + 1;
	size_t n = f->len - f->colon - 1, start, end, at, b, e, l = 0;

	first_mailbox(v, n, &start, &end, &at);
	if (at >= end)
		return dkp_err_set(err, DKP_E_FROM, 0, "route",
				   "no address with a domain in the From field");
	if (mailbox_domain(v, at + 1, end, out, outsz, err) != DKP_OK)
		return err->code;
	if (localsz == 0)
		return DKP_OK;
	/* the local part as written, minus surrounding space */
	for (b = start, e = at; b < e && strchr(" \t\r\n", v[b]); b++)
		;
	while (e > b && strchr(" \t\r\n", v[e - 1]))
		e--;
	if (e - b >= localsz)
		return dkp_err_set(err, DKP_E_FROM, 0, "route",
				   "the From local part is too long");
	for (; b < e; b++)
		local[l++] = v[b];
	local[l] = '\0';
	return DKP_OK;
}

int dkp_domain_ok(const char *s, size_t n)
{
	size_t i, label = 0;

	/* sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
	 * (RFC 6376 3.1 and 3.5, after RFC 5321 4.1.2): no '_', no label
	 * that starts or ends with '-', no empty label, no final dot */
	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-') || c >= 0x80 || ++label > 63 ||
		    (c == '-' && label == 1))
			return 0;
	}
	return label > 0 && s[n - 1] != '-';
}
