/*
 * snap.h — the immutable set of things a worker signs with: the parsed
 * configuration, the routing tables, the ESP key and the customer key
 * cache. Built once at start and again on SIGHUP; workers take a reference
 * for each batch, so a reload swaps one pointer and the old snapshot is
 * freed when the last batch using it ends. Everything reachable from a
 * snapshot is read-only except the key cache, which is thread-safe.
 */
#ifndef DKP_SNAP_H
#define DKP_SNAP_H

#include <pthread.h>
#include <stdatomic.h>

#include "conf/align.h"
#include "conf/config.h"
#include "conf/keycache.h"
#include "conf/route.h"

struct dkp_snap {
	atomic_int refs;
	struct dkp_config *cfg;
	struct dkp_route *route;	/* NULL: no customer keys */
	struct dkp_key *esp_key;
	struct dkp_keycache *keys;
	struct dkp_psl *psl;		/* the Public Suffix List (align.h) */
	/* refile tables: address -> key (or none), so a scan of the
	 * patterns happens once per address, not once per message */
	pthread_mutex_t rmu;
	struct dkp_htab *rcache;
};

/* The customer key for a From address, or NULL (none: the negative
 * answer is cached too). Thread-safe. */
const struct dkp_keyent *dkp_snap_route(struct dkp_snap *s, const char *local,
					const char *domain);

/*
 * Load the configuration at path and everything it names. Every problem
 * found (unreadable or insecure key file, bad table line, ...) is logged
 * as one line; the return is DKP_OK or the first error. Customer key
 * files are all checked (exists, regular file, permissions); when there
 * are no more than key_cache of them they are also parsed here, else on
 * first use.
 */
int dkp_snap_load(struct dkp_snap **out, const char *path,
		  const char *const *sets, size_t nsets, struct dkp_err *err);
void dkp_snap_ref(struct dkp_snap *s);
void dkp_snap_unref(struct dkp_snap *s);

#endif
