/* budget.c — a shared byte budget; see budget.h. */
#include "base/budget.h"

#include <string.h>

void dkp_budget_init(struct dkp_budget *b, uint64_t cap)
{
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->cap = cap;
	b->used = 0;
}

void dkp_budget_fini(struct dkp_budget *b)
{
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
}

void dkp_budget_take(struct dkp_budget *b, uint64_t n)
{
	pthread_mutex_lock(&b->mu);
	while (b->used > 0 && b->used + n > b->cap)
		pthread_cond_wait(&b->cv, &b->mu);
	b->used += n;
	pthread_mutex_unlock(&b->mu);
}

int dkp_budget_try(struct dkp_budget *b, uint64_t n)
{
	int ok;

	pthread_mutex_lock(&b->mu);
	ok = b->used + n <= b->cap;
	if (ok)
		b->used += n;
	pthread_mutex_unlock(&b->mu);
	return ok;
}

void dkp_budget_give(struct dkp_budget *b, uint64_t n)
{
	pthread_mutex_lock(&b->mu);
	b->used -= n;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

uint64_t dkp_budget_crlf_bytes(const char *p, size_t n)
{
	const char *e = p + n, *q = p;
	uint64_t bare = 0;

	while (q < e && (q = memchr(q, '\n', (size_t)(e - q))) != NULL) {
		if (q == p || q[-1] != '\r')
			bare++;
		q++;
	}
	return bare ? (uint64_t)n + bare : 0;
}
