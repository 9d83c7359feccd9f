/*
 * policy.h — per-key signing settings (key_policy) and the ESP keys of
 * each sending stream (esp_stream_table); docs/dkimpress.conf.5.
 *
 * key_policy file: one line per key, "NAME SETTING=VALUE ...", where NAME
 * is a KeyTable key name or DOMAIN:SELECTOR of an ESP key (an esp_key
 * line or an esp_stream_table key) and the settings are
 *   canonicalization=H/B   headers=NAME:NAME:...|default
 *   expire=SECONDS (0: no x=)   identity=[LOCAL]@DOMAIN (i=; a DOMAIN of
 *   "%" or ending in ".%" stands for the signature's d=)
 * Each one unset keeps the engine-wide setting. '#' starts a comment.
 *
 * esp_stream_table file: "VALUE DOMAIN:SELECTOR:KEYFILE[,...]": the ESP
 * keys for the messages whose stream value (the envelope sender's domain,
 * or a header field's value: esp_stream) is VALUE. Values compare
 * case-insensitively; for the sender's domain ".parent" covers every
 * subdomain (nearest first), as in a SigningTable.
 *
 * Both are immutable once loaded: any number of threads may read them.
 */
#ifndef DKP_POLICY_H
#define DKP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

struct dkp_keypol {
	char *name;		/* lower-cased */
	int set_canon, set_headers, set_expire;
	enum dkp_canon hcanon, bcanon;
	char *headers_buf;
	const char *headers[DKP_MAX_CONF_HEADERS];
	size_t nheaders;	/* 0 with set_headers: the default list */
	int64_t expire;
	char *identity;		/* NULL: no i= */
};

struct dkp_policy;

int dkp_policy_load(struct dkp_policy **out, const char *path,
		    struct dkp_err *err);
void dkp_policy_free(struct dkp_policy *p);
/* The settings for a key name (case-insensitive), or NULL. */
const struct dkp_keypol *dkp_policy_get(const struct dkp_policy *p,
					const char *name);
size_t dkp_policy_count(const struct dkp_policy *p);
const struct dkp_keypol *dkp_policy_at(const struct dkp_policy *p, size_t i);
/* i= of kp for a signature with d= domain into buf ("%" replaced);
 * NULL when kp sets none, or it does not fit. */
const char *dkp_policy_identity(const struct dkp_keypol *kp,
				const char *domain, char *buf, size_t bufsz);

struct dkp_stream_ent {
	char *value;		/* lower-cased */
	size_t index;		/* 0..n-1 in file order */
	size_t nkeys;
	struct dkp_espkey keys[DKP_MAX_ESP_KEYS];
};

struct dkp_streams;

int dkp_streams_load(struct dkp_streams **out, const char *path,
		     struct dkp_err *err);
void dkp_streams_free(struct dkp_streams *s);
size_t dkp_streams_count(const struct dkp_streams *s);
const struct dkp_stream_ent *dkp_streams_at(const struct dkp_streams *s,
					    size_t i);
/* The entry for value (n bytes; surrounding white space ignored), or
 * NULL; domain_walk: also ".parent" entries, nearest first. */
const struct dkp_stream_ent *dkp_streams_lookup(const struct dkp_streams *s,
						const char *value, size_t n,
						int domain_walk);

#endif
