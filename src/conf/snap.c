/* snap.c — building and releasing signing snapshots; see snap.h. */
#include "conf/snap.h"

#include "crypto/keymem.h"
#include "dkim/keystore.h"
#include "dkim/sign.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/htab.h"
#include "base/log.h"
#include "base/mem.h"

#define MAX_REPORTED 20
#define ROUTE_CACHE_MAX 100000	/* addresses remembered per snapshot */

/* A cached lookup: the keys of one From address (n may be 0). */
struct rres {
	size_t n;
	const struct dkp_keyent *k[DKP_ROUTE_MAX_KEYS];
};

static void espset_clear(struct dkp_espset *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		dkp_key_retire(e->k[i].key);	/* per-thread contexts let go too */
	e->n = 0;
}

void dkp_snap_ref(struct dkp_snap *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void dkp_snap_unref(struct dkp_snap *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	dkp_keycache_free(s->keys);
	dkp_psl_free(s->psl);
	dkp_htab_free(s->rcache, dkp_free);
	espset_clear(&s->esp);
	for (size_t i = 0; s->stream_esp && i < dkp_streams_count(s->streams); i++)
		espset_clear(&s->stream_esp[i]);
	dkp_free(s->stream_esp);
	dkp_streams_free(s->streams);
	dkp_free(s->kpol);
	dkp_policy_free(s->policy);
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

/* Load the keys of n ESP key lines into set. */
static int load_espset(struct dkp_snap *s, const struct dkp_espkey *keys,
		       size_t n, struct dkp_espset *set, const char *who,
		       struct dkp_err *err)
{
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		if ((rc = dkp_key_load(&set->k[i].key, keys[i].keyfile,
				       s->cfg->insecure_key_perms ? DKP_KEY_INSECURE_PERMS : 0,
				       err)) != DKP_OK) {
			snprintf(err->msg + strlen(err->msg),
				 sizeof(err->msg) - strlen(err->msg), " (%s)", who);
			return rc;
		}
		set->k[i].spec = &keys[i];
		set->n = i + 1;
	}
	return DKP_OK;
}

/* Every esp_key line, then every esp_stream_table entry's keys. */
static int load_esp(struct dkp_snap *s, struct dkp_err *err)
{
	size_t i, n;
	int rc;

	if ((rc = load_espset(s, s->cfg->esp, s->cfg->nesp, &s->esp, "esp_key",
			      err)) != DKP_OK)
		return rc;
	s->esp_key = s->esp.k[0].key;
	dkp_key_ref(s->esp_key);
	if (s->cfg->esp_stream_table == NULL)
		return DKP_OK;
	if ((rc = dkp_streams_load(&s->streams, s->cfg->esp_stream_table, err)) != DKP_OK)
		return rc;
	n = dkp_streams_count(s->streams);
	s->stream_esp = dkp_calloc(n ? n : 1, sizeof(*s->stream_esp));
	for (i = 0; i < n; i++) {
		const struct dkp_stream_ent *e = dkp_streams_at(s->streams, i);

		if ((rc = load_espset(s, e->keys, e->nkeys, &s->stream_esp[i],
				      s->cfg->esp_stream_table, err)) != DKP_OK)
			return rc;
	}
	return DKP_OK;
}

/* Does identity's domain lie within d (3.5 i=)? */
static int within(const char *identity, const char *d)
{
	const char *at = strrchr(identity, '@') + 1;
	size_t al = strlen(at), dl = strlen(d);

	return (al == dl && strcasecmp(at, d) == 0) ||
	       (al > dl && at[al - dl - 1] == '.' && strcasecmp(at + al - dl, d) == 0);
}

/* Give each key its key_policy line; a line that names no key, or an
 * i= outside its key's d=, refuses the configuration. */
static int policy_for(struct dkp_snap *s, const struct dkp_espset *set,
		      unsigned char *used)
{
	char name[600];
	size_t i;

	for (i = 0; i < set->n; i++) {
		struct dkp_espsig *k = (struct dkp_espsig *)&set->k[i];

		snprintf(name, sizeof(name), "%s:%s", k->spec->domain, k->spec->selector);
		k->pol = dkp_policy_get(s->policy, name);
		if (k->pol) {
			used[k->pol - dkp_policy_at(s->policy, 0)] = 1;
			if (k->pol->identity && !strchr(k->pol->identity, '%') &&
			    !within(k->pol->identity, k->spec->domain)) {
				dkp_error("%s: identity=%s is not within d=%s",
					  s->cfg->key_policy, k->pol->identity, k->spec->domain);
				return -1;
			}
		}
	}
	return 0;
}

static int attach_policy(struct dkp_snap *s, struct dkp_err *err)
{
	unsigned char *used;
	size_t i, n, bad = 0;
	int rc = DKP_OK;

	if (s->cfg->key_policy == NULL)
		return DKP_OK;
	if ((rc = dkp_policy_load(&s->policy, s->cfg->key_policy, err)) != DKP_OK)
		return rc;
	n = dkp_policy_count(s->policy);
	used = dkp_calloc(n ? n : 1, 1);
	bad += policy_for(s, &s->esp, used) < 0;
	for (i = 0; i < dkp_streams_count(s->streams); i++)
		bad += policy_for(s, &s->stream_esp[i], used) < 0;
	if (s->route) {
		s->kpol = dkp_calloc(dkp_route_nkeys(s->route), sizeof(*s->kpol));
		for (i = 0; i < dkp_route_nkeys(s->route); i++) {
			const struct dkp_keyent *k = dkp_route_key(s->route, i);
			const struct dkp_keypol *kp = dkp_policy_get(s->policy, k->name);

			if ((s->kpol[i] = kp) == NULL)
				continue;
			used[kp - dkp_policy_at(s->policy, 0)] = 1;
			if (kp->identity && !strchr(kp->identity, '%') &&
			    (strcmp(k->domain, "%") == 0 || !within(kp->identity, k->domain))) {
				dkp_error("%s: identity=%s is not within d=%s of key %s (for d=%% use @%%)",
					  s->cfg->key_policy, kp->identity, k->domain, k->name);
				bad++;
			}
		}
	}
	for (i = 0; i < n; i++)
		if (!used[i]) {
			dkp_error("%s: '%s' names no KeyTable key and no ESP key (DOMAIN:SELECTOR)",
				  s->cfg->key_policy, dkp_policy_at(s->policy, i)->name);
			bad++;
		}
	dkp_free(used);
	if (bad)
		rc = dkp_err_set(err, DKP_E_KEY, 0, "config", "%zu problem%s in key_policy %s",
				 bad, bad == 1 ? "" : "s", s->cfg->key_policy);
	return rc;
}

/* Every distinct key file of the KeyTable checked (mode, owner) before
 * anything is parsed: many domains may share one key. */
static int check_keyfiles(struct dkp_snap *s, struct dkp_err *err)
{
	struct dkp_htab *seen = dkp_htab_new(dkp_route_nkeys(s->route));
	size_t i, bad = 0;

	for (i = 0; i < dkp_route_nkeys(s->route); i++) {
		const struct dkp_keyent *k = dkp_route_key(s->route, i);

		if (dkp_htab_put(seen, k->path, strlen(k->path), (void *)k))
			continue;
		if (check_keyfile(k->path, s->cfg->insecure_key_perms, s->cfg->key_table) < 0 &&
		    ++bad >= MAX_REPORTED)
			break;
	}
	dkp_htab_free(seen, NULL);
	if (bad)
		return dkp_err_set(err, DKP_E_KEY, 0, "config", "%s%zu key file problem%s in %s",
				   bad >= MAX_REPORTED ? "at least " : "", bad,
				   bad == 1 ? "" : "s", s->cfg->key_table);
	return DKP_OK;
}

/* A table that fits the key cache is parsed now, so a broken key stops
 * start-up instead of deferring its mail later; larger ones (100,000
 * domains) are parsed on first use. */
static int preload_keys(struct dkp_snap *s, struct dkp_err *err)
{
	size_t i, bad = 0;

	if (dkp_route_nkeys(s->route) > s->cfg->key_cache)
		return DKP_OK;
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
	if (bad)
		return dkp_err_set(err, DKP_E_KEY, 0, "config", "%zu key%s in %s failed to load",
				   bad, bad == 1 ? "" : "s", s->cfg->key_table);
	return DKP_OK;
}

/* The KeyTable and SigningTable, their key files and the key cache. */
static int load_tables(struct dkp_snap *s, struct dkp_err *err)
{
	int rc;

	if ((rc = dkp_route_load(&s->route, s->cfg->key_table, s->cfg->signing_table,
				 err)) != DKP_OK ||
	    (rc = check_keyfiles(s, err)) != DKP_OK)
		return rc;
	s->keys = dkp_keycache_new(dkp_route_nkeys(s->route), s->cfg->key_cache,
				   s->cfg->insecure_key_perms ? DKP_KEY_INSECURE_PERMS : 0);
	return preload_keys(s, err);
}

int dkp_snap_load(struct dkp_snap **out, const char *path,
		  const char *const *sets, size_t nsets, struct dkp_err *err)
{
	struct dkp_snap *s = dkp_calloc(1, sizeof(*s));
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
	if ((rc = dkp_psl_load(&s->psl, s->cfg->align.psl_file, err)) != DKP_OK)
		goto fail;
	/* before the first key: key memory out of core dumps, the process
	 * not dumpable unless core_dumps = yes (again on each reload) */
	dkp_keymem_init(s->cfg->key_cache, s->cfg->core_dumps);
	if ((rc = load_esp(s, err)) != DKP_OK ||
	    (s->cfg->key_table && (rc = load_tables(s, err)) != DKP_OK) ||
	    (rc = attach_policy(s, err)) != DKP_OK)
		goto fail;
	if (s->route && (dkp_route_is_patterns(s->route) ||
			 s->cfg->multiple_signatures != DKP_MULTI_NO))
		s->rcache = dkp_htab_new(1024);
	*out = s;
	return DKP_OK;
fail:
	dkp_snap_unref(s);
	return rc;
}

/* Look up (and remember) the keys of one From address. */
static const struct rres *route_cached(struct dkp_snap *s, const char *local,
				       const char *domain, struct rres *tmp)
{
	const struct rres *r;
	struct rres *copy;
	char addr[512];
	int n;

	n = snprintf(addr, sizeof(addr), "%s@%s", local, domain);
	if (s->rcache == NULL || n < 0 || (size_t)n >= sizeof(addr)) {
		/* a plain table, one key: already one hash lookup each */
		tmp->n = dkp_route_lookup_all(s->route, local, domain,
					      s->cfg->multiple_signatures, tmp->k,
					      DKP_ROUTE_MAX_KEYS);
		return tmp;
	}
	pthread_mutex_lock(&s->rmu);
	r = dkp_htab_get(s->rcache, addr, (size_t)n);
	if (r) {
		*tmp = *r;	/* the cache may start over once unlocked */
		pthread_mutex_unlock(&s->rmu);
		return tmp;
	}
	pthread_mutex_unlock(&s->rmu);
	tmp->n = dkp_route_lookup_all(s->route, local, domain,
				      s->cfg->multiple_signatures, tmp->k,
				      DKP_ROUTE_MAX_KEYS);
	copy = dkp_malloc(sizeof(*copy));
	*copy = *tmp;
	pthread_mutex_lock(&s->rmu);
	if (dkp_htab_count(s->rcache) >= ROUTE_CACHE_MAX) {
		dkp_htab_free(s->rcache, dkp_free);	/* start over, bounded */
		s->rcache = dkp_htab_new(1024);
	}
	/* put replaces: another worker's equal answer may go */
	dkp_free(dkp_htab_put(s->rcache, addr, (size_t)n, copy));
	pthread_mutex_unlock(&s->rmu);
	return tmp;
}

size_t dkp_snap_route_all(struct dkp_snap *s, const char *local,
			  const char *domain, const struct dkp_keyent **out,
			  size_t max)
{
	struct rres tmp;
	const struct rres *r = route_cached(s, local, domain, &tmp);
	size_t i;

	for (i = 0; i < r->n && i < max; i++)
		out[i] = r->k[i];
	return i;
}

const struct dkp_keyent *dkp_snap_route(struct dkp_snap *s, const char *local,
					const char *domain)
{
	const struct dkp_keyent *k;

	return dkp_snap_route_all(s, local, domain, &k, 1) ? k : NULL;
}

const struct dkp_espset *dkp_snap_esp_for(const struct dkp_snap *s,
					  const char *value, size_t n)
{
	const struct dkp_stream_ent *e;

	if (s->streams == NULL || value == NULL)
		return &s->esp;
	e = dkp_streams_lookup(s->streams, value, n,
			       s->cfg->esp_stream == DKP_STREAM_SENDER);
	return e ? &s->stream_esp[e->index] : &s->esp;
}
