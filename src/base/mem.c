/* mem.c — allocation that never returns NULL; see mem.h. */
#include "base/mem.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base/log.h"

static void *check(void *p, size_t n)
{
	if (p == NULL && n != 0)
		dkp_fatal("out of memory allocating %zu bytes", n);
	return p;
}

void *dkp_malloc(size_t n)
{
	return check(malloc(n ? n : 1), n ? n : 1);
}

void *dkp_calloc(size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > (size_t)-1 / size)
		dkp_fatal("allocation overflow: %zu x %zu", nmemb, size);
	return check(calloc(nmemb ? nmemb : 1, size ? size : 1), 1);
}

void *dkp_realloc(void *p, size_t n)
{
	return check(realloc(p, n ? n : 1), n ? n : 1);
}

char *dkp_strdup(const char *s)
{
	return dkp_strndup(s, strlen(s));
}

char *dkp_strndup(const char *s, size_t n)
{
	char *d = dkp_malloc(n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

void dkp_free(void *p)
{
	free(p);
}

void dkp_free_wipe(void *p, size_t n)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}
