/*
 * keycache.h — customer keys, parsed on first use and then shared.
 *
 * One slot per KeyTable entry. A key is parsed once even when many
 * workers ask for it at the same moment (the first loads it, the others
 * wait for that load). At most `cap` keys stay loaded; past that, a clock
 * sweep drops keys not used since the last sweep (a dropped key lives on
 * while a worker still holds a reference). A load that fails is
 * remembered for this cache's lifetime (a negative entry), so a broken key
 * costs one attempt and one log line, not one per message; a reload
 * (SIGHUP) builds a new cache and so tries again.
 *
 * Thread-safe. Returned keys carry a reference: dkp_key_unref() them.
 *
 * Process-wide counters (dkp_keycache_counts) add up every cache this
 * process made, so they keep counting across reloads (for the metrics
 * endpoint); they are atomics, read beside the workers.
 */
#ifndef DKP_KEYCACHE_H
#define DKP_KEYCACHE_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

struct dkp_keycache;

struct dkp_keycache *dkp_keycache_new(size_t nslots, size_t cap,
				      unsigned key_flags);
void dkp_keycache_free(struct dkp_keycache *c);
/* The key for slot i (KeyTable index) from path; DKP_OK with *out
 * referenced, or the (possibly remembered) load error. */
int dkp_keycache_get(struct dkp_keycache *c, size_t i, const char *path,
		     struct dkp_key **out, struct dkp_err *err);
/* Loaded keys right now (for tests and stats). */
size_t dkp_keycache_loaded(struct dkp_keycache *c);
/* Parses performed so far. */
size_t dkp_keycache_loads(struct dkp_keycache *c);

/* What every cache of this process did so far: a hit returned a loaded
 * key; a miss found the slot not loaded (a parse followed, or a load that
 * failed before was remembered); loads counts the parses, load_failures
 * those that failed. */
struct dkp_keycache_counts {
	unsigned long hits, misses, loads, load_failures;
};
void dkp_keycache_counts(struct dkp_keycache_counts *out);

#endif
