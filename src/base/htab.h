/*
 * htab.h — a generic open-addressing hash table keyed by byte strings and
 * hashed with XXH3 (xxHash). Linear probing, power-of-two capacity, load
 * factor at most 1/2, tombstone-free deletion (backward shift).
 *
 * Keys are copied into the table; values are opaque pointers the caller
 * owns. Not thread-safe for writers; any number of readers may share a
 * table that no one modifies (the engine's snapshots are built once, then
 * only read).
 */
#ifndef DKP_HTAB_H
#define DKP_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct dkp_htab;

struct dkp_htab *dkp_htab_new(size_t expected);
/* Frees the table and its key copies; calls free_val on each value if
 * given. */
void dkp_htab_free(struct dkp_htab *t, void (*free_val)(void *));
/* Insert or replace; returns the previous value or NULL. */
void *dkp_htab_put(struct dkp_htab *t, const void *key, size_t klen,
		   void *val);
/* Value for key, or NULL. */
void *dkp_htab_get(const struct dkp_htab *t, const void *key, size_t klen);
/* Remove key; returns its value or NULL. */
void *dkp_htab_del(struct dkp_htab *t, const void *key, size_t klen);
size_t dkp_htab_count(const struct dkp_htab *t);
/* The XXH3 hash the table uses (exposed for cache keys). */
uint64_t dkp_htab_hash(const void *key, size_t klen);

#endif
