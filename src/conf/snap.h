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
#include "conf/policy.h"
#include "conf/route.h"

/* One ESP key ready to sign with. */
struct dkp_espsig {
	const struct dkp_espkey *spec;	/* d=, s=, the file */
	struct dkp_key *key;
	const struct dkp_keypol *pol;	/* NULL: the engine-wide settings */
};

/* The ESP signatures of a message, in order (the first on top). */
struct dkp_espset {
	size_t n;
	struct dkp_espsig k[DKP_MAX_ESP_KEYS];
};

struct dkp_snap {
	atomic_int refs;
	struct dkp_config *cfg;
	struct dkp_route *route;	/* NULL: no customer keys */
	struct dkp_key *esp_key;	/* esp.k[0].key (a reference) */
	struct dkp_espset esp;		/* every esp_key line: the default */
	struct dkp_streams *streams;	/* esp_stream_table, NULL: none */
	struct dkp_espset *stream_esp;	/* per streams entry */
	struct dkp_policy *policy;	/* key_policy, NULL: none */
	const struct dkp_keypol **kpol;	/* per KeyTable index, NULL: none */
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
/* Every customer key for a From address as multiple_signatures says (at
 * most max, into out); the count. Thread-safe. */
size_t dkp_snap_route_all(struct dkp_snap *s, const char *local,
			  const char *domain, const struct dkp_keyent **out,
			  size_t max);
/* The ESP keys for a stream value (esp_stream): its esp_stream_table
 * entry's, or the default esp_key lines. */
const struct dkp_espset *dkp_snap_esp_for(const struct dkp_snap *s,
					  const char *value, size_t n);

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
