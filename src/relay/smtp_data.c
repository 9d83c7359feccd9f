/* smtp_data.c — envelope removal and dot-stuffing; see smtp_data.h. */
#include "relay/smtp_data.h"

#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"

/* The address of an envelope line l[0..n) (EOL excluded) that
 * dkp_envelope_split accepted: after the colon, white space and angle
 * brackets removed. */
static struct dkp_envelope_addr line_addr(const char *l, size_t n)
{
	struct dkp_envelope_addr a;
	const char *c = memchr(l, ':', n), *e = l + n;

	c = c ? c + 1 : e;
	while (c < e && (*c == ' ' || *c == '\t'))
		c++;
	while (e > c && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - c >= 2 && *c == '<' && e[-1] == '>') {
		c++;
		e--;
	}
	a.p = e > c ? c : NULL;
	a.len = (size_t)(e - c);
	return a;
}

int dkp_relay_env_parse(const char *p, size_t n, struct dkp_relay_env *e,
			struct dkp_err *err)
{
	struct dkp_envelope env;
	size_t pos = 0, i;
	int rc;

	memset(e, 0, sizeof(*e));
	if ((rc = dkp_envelope_split(p, n, &env, err)) != DKP_OK)
		return rc;
	if (env.len == 0)
		return dkp_err_set(err, DKP_E_SYNTAX, 0, "envelope",
				   "no x-sender / x-receiver lines: no envelope to relay with");
	e->rcpt = dkp_calloc(env.nrcpt, sizeof(*e->rcpt));
	for (i = 0; i < env.nlines; i++) {
		const char *lf = memchr(p + pos, '\n', env.len - pos);
		size_t end = (size_t)(lf - p), ln = end - pos;

		if (ln && p[end - 1] == '\r')
			ln--;
		if (i == 0)
			e->sender = line_addr(p + pos, ln);
		else
			e->rcpt[e->nrcpt++] = line_addr(p + pos, ln);
		pos = end + 1;
	}
	e->msg = p + env.len;
	e->msg_len = n - env.len;
	return DKP_OK;
}

void dkp_relay_env_free(struct dkp_relay_env *e)
{
	dkp_free(e->rcpt);
	e->rcpt = NULL;
	e->nrcpt = 0;
}

void dkp_smtp_dot_stuff(struct dkp_buf *out, const char *p, size_t n)
{
	size_t pos = 0;

	dkp_buf_reserve(out, n + n / 64 + 8);
	while (pos < n) {
		const char *lf = memchr(p + pos, '\n', n - pos);
		size_t end = lf ? (size_t)(lf - p) + 1 : n;

		if (p[pos] == '.')
			dkp_buf_addc(out, '.');
		dkp_buf_add(out, p + pos, end - pos);
		pos = end;
	}
	if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
		dkp_buf_add(out, "\r\n", 2);
	dkp_buf_add(out, ".\r\n", 3);
}

int dkp_smtp_has_8bit(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return 1;
	return 0;
}

void dkp_relay_env_lines(struct dkp_buf *out, const struct dkp_relay_env *e,
			 const unsigned char *keep)
{
	size_t i;

	dkp_buf_adds(out, "x-sender: ");
	if (e->sender.len)
		dkp_buf_add(out, e->sender.p, e->sender.len);
	else
		dkp_buf_adds(out, "<>");
	dkp_buf_add(out, "\r\n", 2);
	for (i = 0; i < e->nrcpt; i++) {
		if (keep && !keep[i])
			continue;
		dkp_buf_adds(out, "x-receiver: ");
		dkp_buf_add(out, e->rcpt[i].p, e->rcpt[i].len);
		dkp_buf_add(out, "\r\n", 2);
	}
}
