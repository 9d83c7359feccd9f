/*
 * jetstream_env.c — the envelope between its two forms: the
 * x-sender/x-receiver lines the engine reads (dkim/envelope.h) and the
 * X-Sender/X-Receiver headers of a NATS message (jetstream.h).
 */
#include <errno.h>
#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"
#include "transport/jetstream_int.h"

/* One envelope line's value: WSP and angle brackets off; the null
 * sender "<>". */
static char *line_value(const char *v, const char *e)
{
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - v >= 2 && *v == '<' && e[-1] == '>') {
		v++;
		e--;
	}
	return v == e ? dkp_strdup("<>") : dkp_strndup(v, (size_t)(e - v));
}

int dkp_js_envelope_parse(const char *env, size_t len, char **sender,
			  char ***rcpts, size_t *nrcpts)
{
	const char *p = env, *end = env + len, *eol, *colon, *ve;
	size_t cap = 0;

	*sender = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		eol = eol ? eol : end;
		ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		colon = memchr(p, ':', (size_t)(ve - p));
		if (colon == NULL)
			goto bad;
		if (colon - p == 8 && !strncasecmp(p, "x-sender", 8) && *sender == NULL &&
		    *nrcpts == 0) {
			*sender = line_value(colon + 1, ve);
		} else if (colon - p == 10 && !strncasecmp(p, "x-receiver", 10) && *sender) {
			if (*nrcpts == cap) {
				cap = cap ? 2 * cap : 8;
				*rcpts = dkp_realloc(*rcpts, cap * sizeof(**rcpts));
			}
			(*rcpts)[(*nrcpts)++] = line_value(colon + 1, ve);
		} else {
			goto bad;
		}
		p = eol < end ? eol + 1 : end;
	}
	if (*sender && *nrcpts)
		return 0;
bad:
	dkp_js_envelope_free(*sender, *rcpts, *nrcpts);
	*sender = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	return -EINVAL;
}

void dkp_js_envelope_free(char *sender, char **rcpts, size_t nrcpts)
{
	size_t i;

	for (i = 0; i < nrcpts; i++)
		dkp_free(rcpts[i]);
	dkp_free(rcpts);
	dkp_free(sender);
}

/* Copy the envelope headers of in onto out. */
void dkp_js_copy_envelope(natsMsg *in, natsMsg *out)
{
	const char *v, **vals = NULL;
	int n = 0, i;

	if (natsMsgHeader_Get(in, H_SENDER, &v) == NATS_OK && v)
		natsMsgHeader_Set(out, H_SENDER, v);
	if (natsMsgHeader_Values(in, H_RECEIVER, &vals, &n) == NATS_OK) {
		for (i = 0; i < n; i++)
			natsMsgHeader_Add(out, H_RECEIVER, vals[i]);
		free((void *)vals);	/* the library's, with libc */
	}
}

/* Is header value h the address a (a from dkp_js_envelope_parse)? */
static int same_addr(const char *h, const char *a)
{
	char *v = line_value(h, h + strlen(h));
	int same = strcmp(v, a) == 0;

	dkp_free(v);
	return same;
}

/* Is every address of a[0..na) one of b[0..nb)? (header values in a when
 * hdr_a, parsed ones in b) */
static int all_in(const char *const *a, size_t na, int hdr_a,
		  const char *const *b, size_t nb)
{
	size_t i, k;

	for (i = 0; i < na; i++) {
		for (k = 0; k < nb; k++)
			if (hdr_a ? same_addr(a[i], b[k]) : same_addr(b[k], a[i]))
				break;
		if (k == nb)
			return 0;
	}
	return 1;
}

/*
 * The envelope of a signed output. The engine split the envelope lines
 * off into m->out[0]: those fetch rendered from the input's X-Sender /
 * X-Receiver headers, and any the payload itself started with (a file
 * enqueued in pickup format). No headers: the lines become the headers
 * (e->sender set). Headers: the lines must name the same sender and the
 * same recipients, or the message fails (-1, m->err set) rather than go
 * out to a guessed envelope. Returns 0 or -1.
 */
int dkp_js_out_envelope(natsMsg *in, struct dkp_tmsg *m, struct envh *e)
{
	const char *hs = NULL, **hr = NULL;
	int nh = 0, ok;

	memset(e, 0, sizeof(*e));
	if (m->nout < 1 || m->out[0].iov_len == 0)
		return 0;
	if (dkp_js_envelope_parse(m->out[0].iov_base, m->out[0].iov_len, &e->sender,
				  &e->rcpt, &e->nrcpt) < 0) {
		dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "envelope",
			    "the envelope lines cannot be read back into headers");
		return -1;
	}
	if (natsMsgHeader_Get(in, H_SENDER, &hs) != NATS_OK)
		hs = NULL;
	if (natsMsgHeader_Values(in, H_RECEIVER, &hr, &nh) != NATS_OK) {
		hr = NULL;
		nh = 0;
	}
	if (hs == NULL && nh == 0)
		return 0;	/* the lines are the envelope */
	ok = hs && same_addr(hs, e->sender) &&
	     all_in((const char *const *)hr, (size_t)nh, 1,
		    (const char *const *)e->rcpt, e->nrcpt) &&
	     all_in((const char *const *)e->rcpt, e->nrcpt, 0,
		    (const char *const *)hr, (size_t)nh);
	free((void *)hr);	/* the library's, with libc */
	dkp_js_envelope_free(e->sender, e->rcpt, e->nrcpt);
	memset(e, 0, sizeof(*e));
	if (ok)
		return 0;	/* the same envelope twice: the headers */
	dkp_err_set(&m->err, DKP_E_SYNTAX, 0, "envelope",
		    "the X-Sender/X-Receiver headers and the x-sender/x-receiver lines at the top of the payload name different envelopes");
	return -1;
}

