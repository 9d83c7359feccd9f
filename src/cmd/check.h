/*
 * check.h — `dkimpress check`: every signing key of a configuration
 * against its published DNS key record (RFC 6376 3.6.1), before the
 * engine signs with it (publish before use, docs/operations.md).
 *
 * The keys: the ESP key, and each KeyTable entry. An entry whose domain
 * is "%" (the From domain) is checked once for every concrete domain the
 * SigningTable routes to it (an exact address's domain, a plain domain, a
 * refile pattern whose domain part has no '*'); one that the SigningTable
 * routes only through parents (".example.com") or wildcards is listed as
 * "skipped". Private keys are loaded as `run` loads them (the same
 * permission checks), each file once, in parallel; the public key is
 * derived from it and compared with the record's p=.
 *
 * Lookups: a --dns-file table, or the system resolver (res_nquery), each
 * lookup thread with its own resolver state, at most --concurrency at
 * once. One verdict per key, the first that applies in this order:
 * keyerror, skipped, temperror, missing, syntax, revoked, mismatch, weak,
 * testing, ok (see dkimpress(1)). Nothing printed carries key material,
 * private or public.
 *
 * Exit: 0 every checked key is ok (skipped ones do not count), 1 a key
 * has a problem, 75 the only problems are temporary DNS errors, 64 usage,
 * 66 dns-file missing, 78 configuration error, 74 output error.
 */
#ifndef DKP_CHECK_H
#define DKP_CHECK_H

#include "cmd/cli.h"

#define DKP_CHECK_DEF_TIMEOUT 5		/* seconds per DNS attempt */
#define DKP_CHECK_DEF_CONCURRENCY 64	/* lookups in flight */
#define DKP_CHECK_MAX_CONCURRENCY 1024

/* Run `dkimpress check` with c->conf, c->dns_file, c->check_json,
 * c->dns_timeout and c->concurrency. Returns the exit code. */
int dkp_check_run(const struct dkp_cli *c);

#endif
