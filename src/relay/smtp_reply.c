/* smtp_reply.c — parse SMTP replies and EHLO keywords; see smtp_reply.h. */
#include "relay/smtp_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Is p[0..3) a reply code 200..599 (RFC 5321 4.2: 2-5, 0-5, 0-9)? */
static int code_of(const char *p)
{
	if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '5' ||
	    p[2] < '0' || p[2] > '9')
		return -1;
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* Append one line's text to r (cut at the buffer's end). */
static void add_text(struct dkp_smtp_reply *r, const char *t, size_t tn)
{
	size_t room = sizeof(r->text) - 1 - r->len;

	if (r->len && room) {
		r->text[r->len++] = '\n';
		room--;
	}
	if (tn > room)
		tn = room;
	memcpy(r->text + r->len, t, tn);
	r->len += tn;
	r->text[r->len] = '\0';
}

long dkp_smtp_reply_parse(const char *p, size_t n, struct dkp_smtp_reply *r)
{
	size_t pos = 0, lines = 0;

	r->code = 0;
	r->len = 0;
	r->text[0] = '\0';
	for (;;) {
		/* p may be NULL with n 0 (nothing read yet): no memchr then */
		const char *lf = n > pos ? memchr(p + pos, '\n', n - pos) : NULL;
		size_t end, llen;
		int code, last;

		if (lf == NULL)
			return n - pos > DKP_SMTP_MAX_LINE ? -1 : 0;
		end = (size_t)(lf - p);
		llen = end - pos;
		if (llen && p[end - 1] == '\r')
			llen--;
		if (llen < 3 || llen > DKP_SMTP_MAX_LINE || ++lines > DKP_SMTP_MAX_LINES)
			return -1;
		if ((code = code_of(p + pos)) < 0 || (r->code && code != r->code))
			return -1;
		if (llen > 3 && p[pos + 3] != ' ' && p[pos + 3] != '-')
			return -1;
		r->code = code;
		last = llen == 3 || p[pos + 3] == ' ';
		add_text(r, p + pos + (llen > 3 ? 4 : 3), llen > 3 ? llen - 4 : 0);
		pos = end + 1;
		if (last)
			return (long)pos;
	}
}

/* Does line l (len n) start with keyword kw followed by end or a space? */
static int keyword(const char *l, size_t n, const char *kw, const char **arg)
{
	size_t k = strlen(kw);

	if (n < k || strncasecmp(l, kw, k) != 0 || (n > k && l[k] != ' '))
		return 0;
	*arg = n > k ? l + k + 1 : l + n;
	return 1;
}

void dkp_smtp_ext_parse(const struct dkp_smtp_reply *r, struct dkp_smtp_ext *ext)
{
	const char *l = r->text, *e, *arg;

	memset(ext, 0, sizeof(*ext));
	/* the first line is the server's name and greeting */
	for (l = strchr(l, '\n'); l != NULL; l = e) {
		size_t n;

		l++;
		e = strchr(l, '\n');
		n = e ? (size_t)(e - l) : strlen(l);
		if (keyword(l, n, "PIPELINING", &arg))
			ext->pipelining = 1;
		else if (keyword(l, n, "CHUNKING", &arg))
			ext->chunking = 1;
		else if (keyword(l, n, "8BITMIME", &arg))
			ext->eightbitmime = 1;
		else if (keyword(l, n, "SMTPUTF8", &arg))
			ext->smtputf8 = 1;
		else if (keyword(l, n, "STARTTLS", &arg))
			ext->starttls = 1;
		else if (keyword(l, n, "SIZE", &arg))
			ext->size = strtoull(arg, NULL, 10);	/* "SIZE" alone: 0 */
	}
}

void dkp_smtp_reply_str(const struct dkp_smtp_reply *r, char *out, size_t outsz)
{
	size_t i, o;

	if (outsz == 0)
		return;
	o = (size_t)snprintf(out, outsz, "%03d%s", r->code, r->len ? " " : "");
	if (o >= outsz)
		o = outsz - 1;
	for (i = 0; i < r->len && o + 1 < outsz; i++) {
		unsigned char c = (unsigned char)r->text[i];

		out[o++] = c == '\n' ? ' ' : (c < 32 || c == 127) ? '?' : (char)c;
	}
	out[o < outsz ? o : outsz - 1] = '\0';
}
