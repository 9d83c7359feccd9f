/* htab.c — open-addressing hash table with XXH3; see htab.h. */
#include "base/htab.h"

#include <string.h>

#include <xxhash.h>

#include "base/mem.h"

struct slot {
	uint64_t hash;	/* 0: empty (real hashes of 0 are remapped) */
	char *key;
	size_t klen;
	void *val;
};

struct dkp_htab {
	struct slot *s;
	size_t cap;	/* power of two */
	size_t n;
};

uint64_t dkp_htab_hash(const void *key, size_t klen)
{
	uint64_t h = XXH3_64bits(key, klen);

	return h ? h : 1;
}

static size_t cap_for(size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	return cap;
}

struct dkp_htab *dkp_htab_new(size_t expected)
{
	struct dkp_htab *t = dkp_calloc(1, sizeof(*t));

	t->cap = cap_for(expected);
	t->s = dkp_calloc(t->cap, sizeof(*t->s));
	return t;
}

void dkp_htab_free(struct dkp_htab *t, void (*free_val)(void *))
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->cap; i++)
		if (t->s[i].hash) {
			dkp_free(t->s[i].key);
			if (free_val)
				free_val(t->s[i].val);
		}
	dkp_free(t->s);
	dkp_free(t);
}

static size_t find(const struct dkp_htab *t, uint64_t h, const void *key,
		   size_t klen)
{
	size_t mask = t->cap - 1, i = (size_t)h & mask;

	while (t->s[i].hash) {
		if (t->s[i].hash == h && t->s[i].klen == klen &&
		    memcmp(t->s[i].key, key, klen) == 0)
			return i;
		i = (i + 1) & mask;
	}
	return i;	/* the empty slot where key would go */
}

static void grow(struct dkp_htab *t)
{
	struct slot *old = t->s;
	size_t oldcap = t->cap, i;

	t->cap *= 2;
	t->s = dkp_calloc(t->cap, sizeof(*t->s));
	for (i = 0; i < oldcap; i++)
		if (old[i].hash) {
			size_t j = (size_t)old[i].hash & (t->cap - 1);

			while (t->s[j].hash)
				j = (j + 1) & (t->cap - 1);
			t->s[j] = old[i];
		}
	dkp_free(old);
}

void *dkp_htab_put(struct dkp_htab *t, const void *key, size_t klen,
		   void *val)
{
	uint64_t h = dkp_htab_hash(key, klen);
	size_t i = find(t, h, key, klen);
	void *prev;

	if (t->s[i].hash) {
		prev = t->s[i].val;
		t->s[i].val = val;
		return prev;
	}
	if ((t->n + 1) * 2 > t->cap) {
		grow(t);
		i = find(t, h, key, klen);
	}
	t->s[i].hash = h;
	t->s[i].key = dkp_malloc(klen ? klen : 1);
	memcpy(t->s[i].key, key, klen);
	t->s[i].klen = klen;
	t->s[i].val = val;
	t->n++;
	return NULL;
}

void *dkp_htab_get(const struct dkp_htab *t, const void *key, size_t klen)
{
	size_t i = find(t, dkp_htab_hash(key, klen), key, klen);

	return t->s[i].hash ? t->s[i].val : NULL;
}

void *dkp_htab_del(struct dkp_htab *t, const void *key, size_t klen)
{
	size_t mask = t->cap - 1, i = find(t, dkp_htab_hash(key, klen), key, klen), j;
	void *val;

	if (!t->s[i].hash)
		return NULL;
	val = t->s[i].val;
	dkp_free(t->s[i].key);
	t->s[i].hash = 0;
	t->n--;
	/* backward-shift: move later members of the run into the hole when
	 * their home slot does not lie cyclically in (i, j] */
	for (j = (i + 1) & mask; t->s[j].hash; j = (j + 1) & mask) {
		size_t home = (size_t)t->s[j].hash & mask;

		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			t->s[i] = t->s[j];
			t->s[j].hash = 0;
			i = j;
		}
	}
	return val;
}

size_t dkp_htab_count(const struct dkp_htab *t)
{
	return t->n;
}
