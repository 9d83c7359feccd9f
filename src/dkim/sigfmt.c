/*
 * sigfmt.c — DKIM-Signature rendering with grammar-aware folding and
 * tag-list parsing; see sigfmt.h.
 */
#include "dkim/sigfmt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"

#define FOLD "\r\n\t"
#define FOLD_COL 8		/* column after a folding TAB */

struct out {
	struct dkp_buf *b;
	size_t col;
};

static void fold(struct out *o)
{
	dkp_buf_adds(o->b, FOLD);
	o->col = FOLD_COL;
}

/* Emit one whole "tag=value;" unit, preceded by a space or a fold. */
static void unit(struct out *o, const char *s, size_t n)
{
	if (o->col + 1 + n > DKP_SIGFMT_COLS)
		fold(o);
	else {
		dkp_buf_addc(o->b, ' ');
		o->col++;
	}
	dkp_buf_add(o->b, s, n);
	o->col += n;
}

static void unitf(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void unitf(struct out *o, const char *fmt, ...)
{
	char tmp[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	unit(o, tmp, (size_t)n);
}

/* One "tag=value;" unit (tag includes its '='), as unit() places it,
 * without printf: the units after the template are rendered for every
 * signature. */
static void unit_kv(struct out *o, const char *tag, const char *v, size_t vlen)
{
	size_t tl = strlen(tag);

	if (o->col + 1 + tl + vlen + 1 > DKP_SIGFMT_COLS)
		fold(o);
	else {
		dkp_buf_addc(o->b, ' ');
		o->col++;
	}
	dkp_buf_add(o->b, tag, tl);
	dkp_buf_add(o->b, v, vlen);
	dkp_buf_addc(o->b, ';');
	o->col += tl + vlen + 1;
}

/* A "tag=decimal;" unit (t=, x=). */
static void unit_num(struct out *o, const char *tag, int64_t v)
{
	char d[24], *p = d + sizeof(d);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	unit_kv(o, tag, p, (size_t)(d + sizeof(d) - p));
}

/* h=name:name:...; breaking after a ':' when the next name won't fit. */
static void render_h(struct out *o, const char *const *h, size_t n)
{
	size_t i, first = n ? strlen(h[0]) : 0;

	/* "h=" + first name + ':' or ';' must fit, else start on a new line */
	if (o->col + 1 + 2 + first + 1 > DKP_SIGFMT_COLS)
		fold(o);
	else {
		dkp_buf_addc(o->b, ' ');
		o->col++;
	}
	dkp_buf_adds(o->b, "h=");
	o->col += 2;
	for (i = 0; i < n; i++) {
		size_t len = strlen(h[i]);

		if (i > 0 && o->col + len + 1 > DKP_SIGFMT_COLS)
			fold(o);	/* FWS after ':' is allowed in h= */
		dkp_buf_add(o->b, h[i], len);
		dkp_buf_addc(o->b, i + 1 < n ? ':' : ';');
		o->col += len + 1;
	}
}

size_t dkp_sigfmt_shared(const struct dkp_sigfmt *f, struct dkp_buf *out)
{
	struct out o = { out, 0 };

	dkp_buf_adds(out, "DKIM-Signature:");
	o.col = strlen("DKIM-Signature:");
	unit(&o, "v=1;", 4);
	unitf(&o, "c=%s/%s;", dkp_canon_name(f->hcanon),
	      dkp_canon_name(f->bcanon));
	if (f->t >= 0)
		unit_num(&o, "t=", f->t);
	if (f->x > 0)
		unit_num(&o, "x=", f->x);
	render_h(&o, f->headers, f->nheaders);
	unit_kv(&o, "bh=", f->bh, strlen(f->bh));
	return o.col;
}

size_t dkp_sigfmt_keypart(const struct dkp_sigfmt *f, struct dkp_buf *out)
{
	struct out o = { out, FOLD_COL };
	const char *a = dkp_alg_name(f->alg);

	dkp_buf_adds(out, FOLD "a=");
	dkp_buf_adds(out, a);
	dkp_buf_addc(out, ';');
	o.col += 2 + strlen(a) + 1;
	unit_kv(&o, "d=", f->domain, strlen(f->domain));
	unit_kv(&o, "s=", f->selector, strlen(f->selector));
	return o.col;
}

void dkp_sigfmt_rest(const struct dkp_sigfmt *f, size_t col,
		     struct dkp_buf *out, size_t *bcol)
{
	struct out o = { out, col };

	if (f->identity)
		unit_kv(&o, "i=", f->identity, strlen(f->identity));
	/* "b=" plus at least a few base64 characters on the same line */
	if (o.col + 1 + 2 + 4 > DKP_SIGFMT_COLS)
		fold(&o);
	else {
		dkp_buf_addc(out, ' ');
		o.col++;
	}
	dkp_buf_adds(out, "b=");
	*bcol = o.col + 2;
}

void dkp_sigfmt_render(const struct dkp_sigfmt *f, struct dkp_buf *out,
		       size_t *col)
{
	dkp_sigfmt_shared(f, out);
	dkp_sigfmt_rest(f, dkp_sigfmt_keypart(f, out), out, col);
}

void dkp_sigfmt_finish(struct dkp_buf *out, size_t col, const char *b64,
		       size_t n)
{
	while (n > 0) {
		size_t room = col < DKP_SIGFMT_COLS ? DKP_SIGFMT_COLS - col : 0;

		if (room == 0) {
			dkp_buf_adds(out, FOLD);
			col = FOLD_COL;
			continue;
		}
		if (room > n)
			room = n;
		dkp_buf_add(out, b64, room);
		b64 += room;
		n -= room;
		col += room;
	}
	dkp_buf_adds(out, "\r\n");
}

int dkp_sigfmt_selector_ok(const char *s, size_t n)
{
	/* dkp_domain_ok() is this grammar: sub-domain *("." sub-domain) */
	return dkp_domain_ok(s, n);
}

int dkp_sigfmt_domain_ok(const char *s, size_t n)
{
	/* 3.5: domain-name = sub-domain 1*("." sub-domain) */
	return dkp_domain_ok(s, n) && memchr(s, '.', n) != NULL;
}

int dkp_sigfmt_hname_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		/* RFC 5322 ftext (33..126 except ':'), and no ';' (3.2
		 * tag-value: VALCHAR excludes it) */
		if (c < 33 || c > 126 || c == ':' || c == ';')
			return 0;
	}
	return 1;
}

/* RFC 5322 3.2.3 atext, less '=' (see sigfmt.h). */
static int is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-/?^_`{|}~", c) != NULL);
}

int dkp_sigfmt_auid_within(const char *auid, const char *d)
{
	const char *at = strrchr(auid, '@');
	size_t al, dl = strlen(d);

	if (at == NULL)
		return 0;
	at++;
	al = strlen(at);
	return (al == dl && strcasecmp(at, d) == 0) ||
	       (al > dl && at[al - dl - 1] == '.' && strcasecmp(at + al - dl, d) == 0);
}

int dkp_sigfmt_auid_ok(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);
	size_t local, i;

	if (at == NULL)
		return 0;
	local = (size_t)(at - s);
	if (local > 64)
		return 0;
	for (i = 0; i < local; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			/* dot-atom: no dot first, last or twice in a row */
			if (i == 0 || i + 1 == local || s[i + 1] == '.')
				return 0;
		} else if (!is_atext(c)) {
			return 0;
		}
	}
	return dkp_sigfmt_domain_ok(at + 1, n - local - 1);
}

char *dkp_sigfmt_escape(const char *s, size_t n, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (outsz == 0)
		return out;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 32 && c < 127 && c != '\\') {
			if (o + 1 >= outsz)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= outsz)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

/*
 * Every value rendered into a tag must fit its RFC 6376 grammar (see
 * sigfmt.h): one from outside with a CR, LF or ';' would add a header
 * line or a tag to the signature. The callers check first, to report
 * the option or setting at fault; this is the last line.
 */
int dkp_sigfmt_spec_ok(const struct dkp_sig_spec *sp, struct dkp_err *err)
{
	char esc[200];
	size_t i;
	int has_from = 0;

	if (sp->key == NULL || sp->domain == NULL || sp->selector == NULL ||
	    !*sp->domain || !*sp->selector)
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "a signature needs a domain, a selector and a key");
	if (!dkp_sigfmt_domain_ok(sp->domain, strlen(sp->domain)))
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "d=%s is not a domain name (RFC 6376 3.5)",
				   dkp_sigfmt_escape(sp->domain, strlen(sp->domain),
						     esc, sizeof(esc)));
	if (!dkp_sigfmt_selector_ok(sp->selector, strlen(sp->selector)))
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "s=%s is not a selector (RFC 6376 3.1)",
				   dkp_sigfmt_escape(sp->selector, strlen(sp->selector),
						     esc, sizeof(esc)));
	/* the key's DNS name, s._domainkey.d, must be one (253 bytes) */
	if (strlen(sp->selector) + sizeof("._domainkey.") - 1 + strlen(sp->domain) > 253)
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "%s._domainkey.%s is longer than a DNS name (253 bytes)",
				   dkp_sigfmt_escape(sp->selector, strlen(sp->selector),
						     esc, sizeof(esc)), sp->domain);
	if (sp->identity &&
	    (!dkp_sigfmt_auid_ok(sp->identity, strlen(sp->identity)) ||
	     !dkp_sigfmt_auid_within(sp->identity, sp->domain)))
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "i=%s is not an identity within d=%s (RFC 6376 3.5)",
				   dkp_sigfmt_escape(sp->identity, strlen(sp->identity),
						     esc, sizeof(esc)),
				   sp->domain);
	if (sp->x > 0 && sp->t >= 0 && sp->x <= sp->t)
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "x= must be later than t=");
	for (i = 0; sp->headers && i < sp->nheaders; i++) {
		const char *h = sp->headers[i];

		if (h == NULL || !dkp_sigfmt_hname_ok(h, strlen(h)))
			return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
					   "h= name '%s' is not a field name (RFC 6376 3.5)",
					   h ? dkp_sigfmt_escape(h, strlen(h), esc,
								 sizeof(esc))
					     : "(null)");
		if (strcasecmp(h, "From") == 0)
			has_from = 1;
		if (strcasecmp(h, "DKIM-Signature") == 0)
			return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
					   "DKIM-Signature cannot be in h=: signatures must stay independent");
	}
	if (sp->headers && !has_from)
		return dkp_err_set(err, DKP_E_USAGE, 0, "sign",
				   "h= must include From (RFC 6376 5.4)");
	return DKP_OK;
}

static int is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_alnumpunc(char c)
{
	return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

int dkp_taglist_parse(const char *s, size_t len, struct dkp_taglist *tl,
		      struct dkp_err *err)
{
	size_t p = 0, i;

	tl->n = 0;
	while (p < len) {
		size_t ns, ne, vs, ve, semi;
		struct dkp_tag *t;

		while (p < len && is_fws(s[p]))
			p++;
		if (p == len)
			break;	/* trailing ';' then FWS */
		ns = p;
		if (!is_alpha(s[p]))
			return dkp_err_set(err, DKP_E_SYNTAX, 0, "tags",
					   "tag name expected at offset %zu", p);
		while (p < len && is_alnumpunc(s[p]))
			p++;
		ne = p;
		while (p < len && is_fws(s[p]))
			p++;
		if (p == len || s[p] != '=')
			return dkp_err_set(err, DKP_E_SYNTAX, 0, "tags",
					   "'=' expected after tag '%.*s'",
					   (int)(ne - ns > 16 ? 16 : ne - ns), s + ns);
		p++;
		for (semi = p; semi < len && s[semi] != ';'; semi++)
			;
		vs = p;
		ve = semi;
		while (vs < ve && is_fws(s[vs]))
			vs++;
		while (ve > vs && is_fws(s[ve - 1]))
			ve--;
		if (tl->n == DKP_MAX_TAGS)
			return dkp_err_set(err, DKP_E_SYNTAX, 0, "tags",
					   "more than %d tags", DKP_MAX_TAGS);
		t = &tl->tags[tl->n];
		if (ne - ns < sizeof(t->name)) {
			memcpy(t->name, s + ns, ne - ns);
			t->name[ne - ns] = '\0';
		} else {
			/* long unknown tag: keep a prefix marked with '~' */
			memcpy(t->name, s + ns, sizeof(t->name) - 2);
			t->name[sizeof(t->name) - 2] = '~';
			t->name[sizeof(t->name) - 1] = '\0';
		}
		for (i = 0; i < tl->n; i++)
			if (t->name[strlen(t->name) - 1] != '~' &&
			    strcmp(tl->tags[i].name, t->name) == 0)
				return dkp_err_set(err, DKP_E_SYNTAX, 0, "tags",
						   "duplicate tag '%s'", t->name);
		t->voff = vs;
		t->vlen = ve - vs;
		t->roff = p;
		t->rlen = semi - p;
		tl->n++;
		p = semi < len ? semi + 1 : len;
	}
	return DKP_OK;
}

const struct dkp_tag *dkp_taglist_get(const struct dkp_taglist *tl,
				      const char *name)
{
	size_t i;

	for (i = 0; i < tl->n; i++)
		if (strcmp(tl->tags[i].name, name) == 0)
			return &tl->tags[i];
	return NULL;
}
