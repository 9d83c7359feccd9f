/*
 * envelope.c — split the pickup-directory envelope lines (x-sender,
 * x-receiver) off the front of a message; see envelope.h for the grammar.
 *
 * Like msg_parse.c, this takes (ptr, len), never relies on a trailing NUL
 * and treats every byte as data. It is stricter than the header parser on
 * purpose: an envelope line that is not exactly what a pickup-directory
 * consumer expects would otherwise end up below our DKIM-Signature fields
 * or be delivered to a wrong address, so it is refused, not guessed at.
 */
#include "dkim/envelope.h"

#include <string.h>
#include <strings.h>

#include "base/err.h"

#define STR_(x) #x
#define STR(x) STR_(x)

enum line_kind {
	LINE_OTHER = 0,		/* not an envelope line: the message starts */
	LINE_SENDER,
	LINE_RECEIVER,
};

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Which envelope name does the line at p[0..n) carry? Sets *colon to the
 * offset of the ':' and *wsp when white space precedes it.
 */
static enum line_kind line_kind(const char *p, size_t n, size_t *colon,
				int *wsp)
{
	static const struct {
		const char *name;
		size_t len;
		enum line_kind kind;
	} names[] = {
		{ "x-sender", 8, LINE_SENDER },
		{ "x-receiver", 10, LINE_RECEIVER },
	};
	size_t i, j;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t l = names[i].len;

		if (n <= l || strncasecmp(p, names[i].name, l) != 0)
			continue;
		for (j = l; j < n && is_wsp(p[j]); j++)
			;
		if (j < n && p[j] == ':') {
			*colon = j;
			*wsp = j > l;
			return names[i].kind;
		}
	}
	return LINE_OTHER;
}

/*
 * Check the value v[0..n) of an envelope line (WSP already trimmed) and
 * store the address in *a. Returns NULL or the reason it is refused.
 */
static const char *check_addr(const char *v, size_t n, int sender,
			      struct dkp_envelope_addr *a)
{
	size_t i, at;

	a->p = NULL;
	a->len = 0;
	if (n > 0 && v[0] == '<') {
		if (n < 2 || v[n - 1] != '>')
			return "'<' without a closing '>' at the end";
		v++;
		n -= 2;
	}
	at = n;	/* "no @ seen", after the brackets are off (found by fuzzing) */
	if (n == 0)
		return sender ? NULL : "a recipient cannot be the null address";
	if (n > DKP_ENVELOPE_MAX_ADDR)
		return "the address is longer than " STR(DKP_ENVELOPE_MAX_ADDR) " bytes";
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\0')
			return "NUL byte in the address";
		if (c == '\r')
			return "CR inside the line";
		if (c == ' ' || c == '\t')
			return "white space inside the address";
		if (c < 32 || c == 127)
			return "control byte in the address";
		if (c == '<' || c == '>')
			return "stray '<' or '>' in the address";
		if (c == '@')
			at = i;
	}
	if (at == n || at == 0 || at == n - 1)
		return "the address is not of the form local@domain";
	a->p = v;
	a->len = n;
	return NULL;
}

static int refuse(struct dkp_envelope *env, struct dkp_err *err,
		  size_t lineno, const char *why)
{
	memset(env, 0, sizeof(*env));
	return dkp_err_set(err, DKP_E_SYNTAX, 0, "parse",
			   "envelope line %zu: %s", lineno, why);
}

int dkp_envelope_split(const char *p, size_t n, struct dkp_envelope *env,
		       struct dkp_err *err)
{
	size_t pos = 0, lineno = 0;

	memset(env, 0, sizeof(*env));
	env->crlf = 1;
	for (;;) {
		const char *lf, *why;
		size_t colon, vb, ve, room, eol, next;
		struct dkp_envelope_addr a;
		enum line_kind k;
		int wsp;

		if (pos >= n)
			break;	/* nothing after the envelope: caller's problem */
		if (lineno > 0 && is_wsp(p[pos]))
			return refuse(env, err, lineno,
				      "continuation lines are not allowed on envelope lines");
		k = line_kind(p + pos, n - pos, &colon, &wsp);
		if (k == LINE_OTHER)
			break;
		lineno++;
		if (wsp)
			return refuse(env, err, lineno,
				      "white space before ':'");
		if (k == LINE_RECEIVER && lineno == 1)
			return refuse(env, err, lineno,
				      "x-receiver before x-sender");
		if (k == LINE_SENDER && lineno > 1)
			return refuse(env, err, lineno, "a second x-sender");

		/* the line ending, within DKP_ENVELOPE_MAX_LINE bytes */
		room = n - pos < DKP_ENVELOPE_MAX_LINE ? n - pos
						       : DKP_ENVELOPE_MAX_LINE;
		lf = memchr(p + pos, '\n', room);
		if (lf == NULL)
			return refuse(env, err, lineno,
				      room < n - pos
					      ? "longer than " STR(DKP_ENVELOPE_MAX_LINE) " bytes"
					      : "no line ending (CRLF or LF) before the end of the data");
		next = (size_t)(lf - p) + 1;
		eol = next - 1;
		if (eol > pos && p[eol - 1] == '\r')
			eol--;
		else
			env->crlf = 0;

		/* the value, without the WSP around it */
		for (vb = pos + colon + 1; vb < eol && is_wsp(p[vb]); vb++)
			;
		for (ve = eol; ve > vb && is_wsp(p[ve - 1]); ve--)
			;
		why = check_addr(p + vb, ve - vb, k == LINE_SENDER, &a);
		if (why != NULL)
			return refuse(env, err, lineno, why);
		if (k == LINE_SENDER) {
			env->sender = a;
		} else {
			if (env->nrcpt == DKP_ENVELOPE_MAX_RCPT)
				return refuse(env, err, lineno,
					      "more than " STR(DKP_ENVELOPE_MAX_RCPT) " x-receiver lines");
			if (env->nrcpt < DKP_ENVELOPE_KEEP_RCPT)
				env->rcpt[env->nrcpt] = a;
			env->nrcpt++;
		}
		pos = next;
	}
	if (lineno == 0) {
		env->crlf = 0;
		return DKP_OK;	/* no envelope */
	}
	if (env->nrcpt == 0)
		return refuse(env, err, lineno, "x-sender without any x-receiver");
	env->len = pos;
	env->nlines = lineno;
	return DKP_OK;
}

void dkp_envelope_add_crlf(struct dkp_buf *out, const char *p,
			   const struct dkp_envelope *env)
{
	size_t pos = 0;

	dkp_buf_reserve(out, env->len + env->nlines);
	while (pos < env->len) {
		const char *lf = memchr(p + pos, '\n', env->len - pos);
		size_t e = (size_t)(lf - p);	/* split() saw one per line */

		if (e > pos && p[e - 1] == '\r')
			e--;
		dkp_buf_add(out, p + pos, e - pos);
		dkp_buf_add(out, "\r\n", 2);
		pos = (size_t)(lf - p) + 1;
	}
}
