/* snap.c — building and releasing signing snapshots; see snap.h. */
#include "conf/snap.h"

#include "crypto/keymem.h"
#include "dkim/keystore.h"
#include "dkim/sign.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"

#define MAX_REPORTED 20
#define ROUTE_CACHE_MAX 100000	/* addresses remembered per snapshot */

static const struct dkp_keyent no_key;	/* the cached "no key" answer */

void dkp_snap_ref(struct dkp_snap *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void dkp_snap_unref(struct dkp_snap *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	dkp_keycache_free(s->keys);
	dkp_htab_free(s->rcache, NULL);
	pthread_mutex_destroy(&s->rmu);
	dkp_key_retire(s->esp_key);	/* per-thread contexts let go too */
	dkp_route_free(s->route);
	dkp_config_free(s->cfg);
	dkp_free(s);
}

/* Check one key file without reading it; 0 or a logged problem. */
static int check_keyfile(const char *path, int insecure, const char *who)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		dkp_error("%s: key file %s: %s", who, path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		dkp_error("%s: key file %s is not a regular file", who, path);
		return -1;
	}
	if ((st.st_mode & 077) && !insecure) {
		dkp_error("%s: key file %s has mode %04o: group or others can access it; chmod 600 it",
			  who, path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

int dkp_snap_load(struct dkp_snap **out, const char *path,
		  const char *const *sets, size_t nsets, struct dkp_err *err)
{
	struct dkp_snap *s = dkp_calloc(1, sizeof(*s));
	size_t i, bad = 0;
	int rc;

	*out = NULL;
	atomic_init(&s->refs, 1);
	pthread_mutex_init(&s->rmu, NULL);
	if ((rc = dkp_config_load(&s->cfg, path, sets, nsets, err)) != DKP_OK)
		goto fail;
	if (s->cfg->rsa_backend == DKP_RSA_IFMA && !dkp_sign_ifma_available()) {
		rc = dkp_err_set(err, DKP_E_KEY, 0, "config",
				 "%s: rsa_backend = ifma, but this CPU lacks AVX-512F and AVX-512 IFMA (use auto or openssl)",
				 path);
		goto fail;
	}
	/* before the first key: key memory out of core dumps, the process
	 * not dumpable unless core_dumps = yes (again on each reload) */
	dkp_keymem_init(s->cfg->key_cache, s->cfg->core_dumps);
	if ((rc = dkp_key_load(&s->esp_key, s->cfg->esp_keyfile,
			       s->cfg->insecure_key_perms ? DKP_KEY_INSECURE_PERMS : 0,
			       err)) != DKP_OK) {
		snprintf(err->msg + strlen(err->msg),
			 sizeof(err->msg) - strlen(err->msg), " (esp_key)");
		goto fail;
	}
	if (s->cfg->key_table) {
		struct dkp_htab *seen;

		if ((rc = dkp_route_load(&s->route, s->cfg->key_table,
					 s->cfg->signing_table, err)) != DKP_OK)
			goto fail;
		/* each distinct file once: many domains may share one key */
		seen = dkp_htab_new(dkp_route_nkeys(s->route));
		for (i = 0; i < dkp_route_nkeys(s->route); i++) {
			const struct dkp_keyent *k = dkp_route_key(s->route, i);

			if (dkp_htab_put(seen, k->path, strlen(k->path), (void *)k))
				continue;
			if (check_keyfile(k->path, s->cfg->insecure_key_perms,
					  s->cfg->key_table) < 0 &&
			    ++bad >= MAX_REPORTED)
				break;
		}
		dkp_htab_free(seen, NULL);
		if (bad) {
			rc = dkp_err_set(err, DKP_E_KEY, 0, "config",
					 "%s%zu key file problem%s in %s",
					 bad >= MAX_REPORTED ? "at least " : "",
					 bad, bad == 1 ? "" : "s",
					 s->cfg->key_table);
			goto fail;
		}
		s->keys = dkp_keycache_new(dkp_route_nkeys(s->route),
					   s->cfg->key_cache,
					   s->cfg->insecure_key_perms ? DKP_KEY_INSECURE_PERMS : 0);
		/* a table that fits the cache is parsed now, so a broken key
		 * stops start-up instead of deferring its mail later; larger
		 * ones (100,000 domains) are parsed on first use */
		if (dkp_route_nkeys(s->route) <= s->cfg->key_cache) {
			for (i = 0; i < dkp_route_nkeys(s->route); i++) {
				const struct dkp_keyent *k = dkp_route_key(s->route, i);
				struct dkp_key *key;
				struct dkp_err e;

				dkp_err_clear(&e);
				if (dkp_keycache_get(s->keys, k->index, k->path, &key, &e) != DKP_OK) {
					dkp_error("%s: key %s: %s", s->cfg->key_table, k->name, e.msg);
					if (++bad >= MAX_REPORTED)
						break;
					continue;
				}
				dkp_key_unref(key);
			}
			if (bad) {
				rc = dkp_err_set(err, DKP_E_KEY, 0, "config",
						 "%zu key%s in %s failed to load",
						 bad, bad == 1 ? "" : "s", s->cfg->key_table);
				goto fail;
			}
		}
	}
	if (s->route && dkp_route_is_patterns(s->route))
		s->rcache = dkp_htab_new(1024);
	*out = s;
	return DKP_OK;
fail:
	dkp_snap_unref(s);
	return rc;
}

const struct dkp_keyent *dkp_snap_route(struct dkp_snap *s, const char *local,
					const char *domain)
{
	const struct dkp_keyent *k;
	char addr[512];
	int n;

	if (s->rcache == NULL)	/* plain table: already one hash lookup */
		return dkp_route_lookup(s->route, local, domain);
	n = snprintf(addr, sizeof(addr), "%s@%s", local, domain);
	if (n < 0 || (size_t)n >= sizeof(addr))
		return dkp_route_lookup(s->route, local, domain);
	pthread_mutex_lock(&s->rmu);
	k = dkp_htab_get(s->rcache, addr, (size_t)n);
	pthread_mutex_unlock(&s->rmu);
	if (k)
		return k == &no_key ? NULL : k;
	k = dkp_route_lookup(s->route, local, domain);
	pthread_mutex_lock(&s->rmu);
	if (dkp_htab_count(s->rcache) >= ROUTE_CACHE_MAX) {
		dkp_htab_free(s->rcache, NULL);	/* start over, bounded */
		s->rcache = dkp_htab_new(1024);
	}
	dkp_htab_put(s->rcache, addr, (size_t)n, (void *)(k ? k : &no_key));
	pthread_mutex_unlock(&s->rmu);
	return k;
}
