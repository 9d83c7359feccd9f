/*
 * fuzz_route.c — KeyTable and SigningTable parsing and lookups
 * (dkp_route_load, dkp_route_lookup, dkp_route_glob in src/conf/route.c).
 *
 * Input: one mode byte (bit 0: the SigningTable is a "refile:" pattern
 * table), then the KeyTable's bytes, a NUL byte, the SigningTable's
 * bytes. Both are read from memfds. When they load, every key entry must
 * be well-formed (a lower-case name, "%", "%org" or a valid lower-case
 * domain, a valid selector, a path, index == position) and every lookup
 * must give NULL or one of those entries. The first SigningTable keys are looked up
 * as addresses ('*' made into a letter); a refile table must then find an
 * entry for each. dkp_route_glob is checked against fnmatch(3) (with
 * FNM_CASEFOLD) on the first two lines of the input.
 */
#include <fnmatch.h>

#include "fuzz.h"

#include "conf/route.h"

static void check_keys(const struct dkp_route *r)
{
	size_t i, n = dkp_route_nkeys(r), j;

	for (i = 0; i < n; i++) {
		const struct dkp_keyent *k = dkp_route_key(r, i);

		FUZZ_CHECK(k && k->index == i, "key %zu", i);
		FUZZ_CHECK(k->name && *k->name && k->domain && k->selector &&
			   k->path && *k->path, "key %zu fields", i);
		FUZZ_CHECK(strcmp(k->domain, "%") == 0 ||
			   strcmp(k->domain, "%org") == 0 ||
			   dkp_domain_ok(k->domain, strlen(k->domain)),
			   "key %zu domain '%s'", i, k->domain);
		FUZZ_CHECK(dkp_domain_ok(k->selector, strlen(k->selector)),
			   "key %zu selector '%s'", i, k->selector);
		for (j = 0; k->name[j]; j++)
			FUZZ_CHECK(!(k->name[j] >= 'A' && k->name[j] <= 'Z'),
				   "key name '%s' not lower-cased", k->name);
		for (j = 0; k->domain[j]; j++)
			FUZZ_CHECK(!(k->domain[j] >= 'A' && k->domain[j] <= 'Z'),
				   "key domain '%s' not lower-cased", k->domain);
	}
	FUZZ_CHECK(dkp_route_key(r, n) == NULL, "key past the end");
}

static void check_lookup(const struct dkp_route *r, const char *local,
			 const char *domain)
{
	const struct dkp_keyent *k = dkp_route_lookup(r, local, domain);
	const struct dkp_keyent *all[DKP_ROUTE_MAX_KEYS];
	size_t n, i, j;
	int m;

	if (k)
		FUZZ_CHECK(k->index < dkp_route_nkeys(r) &&
			   dkp_route_key(r, k->index) == k,
			   "lookup returned a foreign entry");
	/* every multiple_signatures mode: own entries, each once, the
	 * first one the single lookup's */
	for (m = DKP_MULTI_NO; m <= DKP_MULTI_ALL; m++) {
		n = dkp_route_lookup_all(r, local, domain, (enum dkp_multi)m, all,
					 DKP_ROUTE_MAX_KEYS);
		FUZZ_CHECK((n == 0) == (k == NULL) && (n == 0 || all[0] == k),
			   "lookup_all mode %d disagrees with lookup", m);
		for (i = 0; i < n; i++) {
			FUZZ_CHECK(dkp_route_key(r, all[i]->index) == all[i],
				   "lookup_all returned a foreign entry");
			for (j = 0; j < i; j++)
				FUZZ_CHECK(all[j] != all[i], "a key returned twice");
		}
	}
}

/* Look up the first field of each SigningTable line as an address. */
static void lookups(const struct dkp_route *r, const char *st, size_t n,
		    int refile)
{
	char *copy = malloc(n + 1), *line, *next, *p, *at;
	size_t done = 0;

	memcpy(copy, st, n);
	copy[n] = '\0';
	for (line = copy; line && done < 16; line = next) {
		char key[512];
		size_t i, kl;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		kl = strcspn(p, " \t\r#");
		if (kl == 0 || kl >= sizeof(key) || p[kl] == '\0' || p[kl] == '#' ||
		    p[kl] == '\r')
			continue;
		memcpy(key, p, kl);
		key[kl] = '\0';
		for (i = 0; i < kl; i++)
			if (key[i] == '*')
				key[i] = 'x';
		done++;
		at = strrchr(key, '@');
		if (at) {
			*at = '\0';
			check_lookup(r, key, at + 1);
			if (refile && strchr(key, '@') == NULL &&
			    strchr(at + 1, '@') == NULL)
				FUZZ_CHECK(dkp_route_lookup(r, key, at + 1) != NULL,
					   "refile: '%s@%s' matches no pattern",
					   key, at + 1);
		} else {
			check_lookup(r, "", key[0] == '.' ? key + 1 : key);
			check_lookup(r, "someone", key);
		}
	}
	check_lookup(r, "", "");
	check_lookup(r, "a", "b.c.d.example");
	free(copy);
}

/* dkp_route_glob against fnmatch on the first two lines of s. */
static void check_glob(const char *s, size_t n)
{
	char *copy = malloc(n + 1), *nl, *str;
	int ours, libc, stars;

	memcpy(copy, s, n);
	copy[n] = '\0';
	nl = strchr(copy, '\n');
	if (nl == NULL || strpbrk(copy, "?[\\") || nl - copy > 64) {
		free(copy);
		return;
	}
	*nl = '\0';
	str = nl + 1;
	if ((nl = strchr(str, '\n')) != NULL)
		*nl = '\0';
	/* glibc's fnmatch backtracks exponentially on many stars */
	for (nl = copy, stars = 0; (nl = strchr(nl, '*')) != NULL; nl++)
		stars++;
	if (stars > 4 || strlen(str) > 128) {
		free(copy);
		return;
	}
	ours = dkp_route_glob(copy, str);
	libc = fnmatch(copy, str, FNM_CASEFOLD) == 0;
	FUZZ_CHECK(ours == libc, "glob('%s', '%s') = %d, fnmatch says %d", copy,
		   str, ours, libc);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *kt, *st, *nul;
	size_t ktn, stn;
	char kpath[64], spath[64], spec[80];
	struct dkp_route *r = NULL;
	struct dkp_err err;
	int kfd, sfd, rc, refile;

	if (size < 1)
		return 0;
	refile = data[0] & 1;
	kt = data + 1;
	nul = memchr(kt, '\0', size - 1);
	if (nul == NULL)
		return 0;
	ktn = (size_t)(nul - kt);
	st = nul + 1;
	stn = size - 1 - ktn - 1;

	kfd = fuzz_file(kt, ktn, kpath);
	sfd = fuzz_file(st, stn, spath);
	snprintf(spec, sizeof(spec), "%s%s", refile ? "refile:" : "", spath);
	rc = dkp_route_load(&r, kpath, spec, &err);
	fuzz_file_close(kfd, kpath);
	fuzz_file_close(sfd, spath);
	if (rc == DKP_OK) {
		FUZZ_CHECK(r != NULL, "no route");
		FUZZ_CHECK(refile || !dkp_route_is_patterns(r),
			   "a plain table taken for a pattern table");
		check_keys(r);
		lookups(r, (const char *)st, stn, refile && dkp_route_is_patterns(r));
		dkp_route_free(r);
	} else {
		FUZZ_CHECK(r == NULL && rc == DKP_E_SYNTAX,
			   "load: status %d: %s", rc, err.msg);
	}
	check_glob((const char *)kt, ktn);
	return 0;
}
