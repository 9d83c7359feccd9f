/* buf.c — growable NUL-safe byte buffer; declared in dkimpress.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "dkimpress/dkimpress.h"
#include "base/log.h"
#include "base/mem.h"

void dkp_buf_init(struct dkp_buf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void dkp_buf_free(struct dkp_buf *b)
{
	dkp_free(b->p);
	dkp_buf_init(b);
}

void dkp_buf_reset(struct dkp_buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

void dkp_buf_reserve(struct dkp_buf *b, size_t extra)
{
	size_t need, cap;

	if (extra > (size_t)-1 - b->len - 1)
		dkp_fatal("buffer size overflow");
	need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > (size_t)-1 / 2 ? need : cap * 2;
	b->p = dkp_realloc(b->p, cap);
	b->cap = cap;
}

void dkp_buf_add(struct dkp_buf *b, const void *p, size_t n)
{
	dkp_buf_reserve(b, n);
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void dkp_buf_adds(struct dkp_buf *b, const char *s)
{
	dkp_buf_add(b, s, strlen(s));
}

void dkp_buf_addc(struct dkp_buf *b, char c)
{
	dkp_buf_reserve(b, 1);
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

void dkp_buf_printf(struct dkp_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	dkp_buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void dkp_buf_wipe(struct dkp_buf *b)
{
	if (b->p)
		OPENSSL_cleanse(b->p, b->cap);
	b->len = 0;
}
