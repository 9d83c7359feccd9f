/*
 * keystore.h — private keys: PEM → EVP_PKEY once, reference counted
 * (dkp_key_* in dkimpress.h). Internal accessors for sign.c.
 *
 * A loaded key is immutable and may be used from any thread; each key has
 * a process-unique serial so per-thread caches of OpenSSL contexts can be
 * keyed without trusting pointer identity after a free.
 */
#ifndef DKP_KEYSTORE_H
#define DKP_KEYSTORE_H

#include <stdint.h>

#include <openssl/evp.h>

#include "dkimpress/dkimpress.h"

EVP_PKEY *dkp_key_pkey(const struct dkp_key *k);
uint64_t dkp_key_serial(const struct dkp_key *k);
/* The key in the 8-lane path's form (crypto/rsa8.h), or NULL: not
 * RSA-2048 with e = 65537, or a CPU without AVX-512 IFMA. */
struct dkp_rsa8_key;
const struct dkp_rsa8_key *dkp_key_rsa8(const struct dkp_key *k);

/* Retiring: the owner (the key cache, a snapshot) drops its reference
 * and marks the key retired, and the process-wide retire epoch moves on.
 * Holders that cache keys per thread (sign.c's prepared contexts) watch
 * the epoch and release what is retired, so the key is freed and wiped
 * once no batch holds it. NULL is a no-op. */
void dkp_key_retire(struct dkp_key *k);
int dkp_key_retired(const struct dkp_key *k);
uint64_t dkp_key_retire_epoch(void);
/* Keys loaded and not yet freed, in this process (for tests). */
long dkp_key_live(void);

#endif
