/*
 * route.h — which customer key signs a message: OpenDKIM's KeyTable and
 * SigningTable formats, so an operator moving from OpenDKIM keeps their
 * files.
 *
 * KeyTable: one entry per line, "KEYNAME DOMAIN:SELECTOR:KEYFILE"; DOMAIN
 * "%" means the From domain, "%org" its organizational domain (align.h). SigningTable, plain file: "KEY KEYNAME",
 * looked up with the From address: the exact address (local@domain), then
 * the domain, then each parent domain written with a leading dot
 * (".example.com" covers every subdomain of example.com); the first found
 * wins. SigningTable with "refile:" before its path: "PATTERN KEYNAME"
 * with '*' wildcards, tried in file order against local@domain; the first
 * match wins (as OpenDKIM's refile). A plain table also tries, after the
 * parents, "local@*" and then "*" (as OpenDKIM 2.11 does). '#' starts a
 * comment; blank lines are ignored; names and domains compare
 * case-insensitively.
 *
 * Several signatures (issue 17): a SigningTable value may be a
 * comma-separated list of KeyTable names ("example.com rsa1,ed1"; an
 * extension: OpenDKIM reads it as one unknown name), every one of which
 * signs; and with multiple_signatures more than one entry may match
 * (DKP_MULTI_*, below). dkp_route_lookup_all returns the keys in that
 * order, each key once.
 *
 * A loaded struct dkp_route is immutable: any number of threads may look
 * up in it at once.
 */
#ifndef DKP_ROUTE_H
#define DKP_ROUTE_H

#include <stddef.h>

#include "dkimpress/dkimpress.h"

struct dkp_keyent {
	char *name;		/* KeyTable key name */
	char *domain;		/* d=; "%", "%org": from the From domain */
	char *selector;		/* s= */
	char *path;		/* the private key file */
	size_t index;		/* 0..n-1, stable for this table */
};

struct dkp_route;

/* Which matching SigningTable entries sign (multiple_signatures). */
enum dkp_multi {
	DKP_MULTI_NO = 0,	/* the first match only (OpenDKIM's default) */
	DKP_MULTI_OPENDKIM,	/* "yes": what OpenDKIM 2.11 does with
				 * MultipleSignatures yes, measured
				 * (tests/policy): the first and the last
				 * match in lookup order, not every one */
	DKP_MULTI_ALL,		/* "all": every matching entry */
};

/* Most keys one lookup returns (customer signatures per message). */
#define DKP_ROUTE_MAX_KEYS 8

/* Load both tables; signing may be "refile:PATH" or a plain PATH. Every
 * SigningTable entry must name a KeyTable entry. */
int dkp_route_load(struct dkp_route **out, const char *keytable,
		   const char *signing, struct dkp_err *err);
void dkp_route_free(struct dkp_route *r);
/* The first key of the first entry for a From address (local part may
 * be empty), or NULL. */
const struct dkp_keyent *dkp_route_lookup(const struct dkp_route *r,
					  const char *local,
					  const char *domain);
/* Every key for a From address under mode m, in order, each once: up to
 * max into out; returns the count (0: no key). */
size_t dkp_route_lookup_all(const struct dkp_route *r, const char *local,
			    const char *domain, enum dkp_multi m,
			    const struct dkp_keyent **out, size_t max);
size_t dkp_route_nkeys(const struct dkp_route *r);
/* Is the SigningTable a refile (pattern) table, scanned in order? */
int dkp_route_is_patterns(const struct dkp_route *r);
const struct dkp_keyent *dkp_route_key(const struct dkp_route *r, size_t i);
/* Case-insensitive glob with '*' (any run, including empty). */
int dkp_route_glob(const char *pat, const char *s);
/* Split a KeyTable or SigningTable line into its two whitespace-separated
 * fields (a '#' starts a comment): 1 two fields, 0 blank or comment, -1
 * otherwise. Modifies line. */
int dkp_route_two_fields(char *line, char **a, char **b);

#endif
