/* keycache.c — lazily loaded, bounded, shared customer keys; see
 * keycache.h. One mutex guards the slot states; parsing happens outside
 * it. */
#include "conf/keycache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "dkim/keystore.h"

enum { EMPTY, LOADING, READY, FAILED };

/* process-wide, across reloads (keycache.h) */
static atomic_ulong n_hits, n_misses, n_loads, n_load_failures;

struct slot {
	struct dkp_key *key;
	struct dkp_err why;	/* FAILED: the remembered error */
	unsigned char state;
	unsigned char used;	/* clock bit */
};

struct dkp_keycache {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct slot *s;
	size_t n, cap, loaded, hand, loads;
	unsigned flags;
};

struct dkp_keycache *dkp_keycache_new(size_t nslots, size_t cap,
				      unsigned key_flags)
{
	struct dkp_keycache *c = dkp_calloc(1, sizeof(*c));

	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->s = dkp_calloc(nslots ? nslots : 1, sizeof(*c->s));
	c->n = nslots;
	c->cap = cap ? cap : 1;
	c->flags = key_flags;
	return c;
}

void dkp_keycache_free(struct dkp_keycache *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		dkp_key_retire(c->s[i].key);	/* holders keep their refs */
	dkp_free(c->s);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	dkp_free(c);
}

/* Drop loaded keys until under the cap; mutex held. */
static void evict(struct dkp_keycache *c, size_t keep)
{
	size_t scanned = 0;

	while (c->loaded >= c->cap && scanned < 2 * c->n) {
		size_t idx = c->hand;
		struct slot *s = &c->s[idx];

		c->hand = (c->hand + 1) % c->n;
		scanned++;
		if (s->state != READY || idx == keep)
			continue;
		if (s->used) {
			s->used = 0;
			continue;
		}
		dkp_key_retire(s->key);	/* holders keep their own refs */
		s->key = NULL;
		s->state = EMPTY;
		c->loaded--;
	}
}

int dkp_keycache_get(struct dkp_keycache *c, size_t i, const char *path,
		     struct dkp_key **out, struct dkp_err *err)
{
	struct slot *s;
	struct dkp_key *k = NULL;
	int rc;

	*out = NULL;
	if (i >= c->n)
		return dkp_err_set(err, DKP_E_NOKEY, 0, "key", "no key slot %zu", i);
	pthread_mutex_lock(&c->mu);
	s = &c->s[i];
	while (s->state == LOADING)
		pthread_cond_wait(&c->cv, &c->mu);
	if (s->state == READY) {
		atomic_fetch_add_explicit(&n_hits, 1, memory_order_relaxed);
		s->used = 1;
		dkp_key_ref(s->key);
		*out = s->key;
		pthread_mutex_unlock(&c->mu);
		return DKP_OK;
	}
	atomic_fetch_add_explicit(&n_misses, 1, memory_order_relaxed);
	if (s->state == FAILED) {
		*err = s->why;
		pthread_mutex_unlock(&c->mu);
		return err->code;
	}
	s->state = LOADING;
	c->loads++;
	pthread_mutex_unlock(&c->mu);

	atomic_fetch_add_explicit(&n_loads, 1, memory_order_relaxed);
	rc = dkp_key_load(&k, path, c->flags, err);
	if (rc != DKP_OK)
		atomic_fetch_add_explicit(&n_load_failures, 1, memory_order_relaxed);

	pthread_mutex_lock(&c->mu);
	if (rc == DKP_OK) {
		if (c->loaded >= c->cap)
			evict(c, i);
		s->key = k;
		s->state = READY;
		s->used = 1;
		c->loaded++;
		dkp_key_ref(k);
		*out = k;
	} else {
		s->why = *err;
		s->state = FAILED;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

size_t dkp_keycache_loaded(struct dkp_keycache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->loaded;
	pthread_mutex_unlock(&c->mu);
	return n;
}

size_t dkp_keycache_loads(struct dkp_keycache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->loads;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void dkp_keycache_counts(struct dkp_keycache_counts *out)
{
	out->hits = atomic_load_explicit(&n_hits, memory_order_relaxed);
	out->misses = atomic_load_explicit(&n_misses, memory_order_relaxed);
	out->loads = atomic_load_explicit(&n_loads, memory_order_relaxed);
	out->load_failures = atomic_load_explicit(&n_load_failures, memory_order_relaxed);
}
