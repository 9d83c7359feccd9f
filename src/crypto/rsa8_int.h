/*
 * rsa8_int.h — internal to src/crypto: the raw 8-lane operation with the
 * fault-injection test hook (rsa8_sign.c passes dkp_rsa8_fault_lane), and
 * what rsa8_sign.c needs of a key for the check.
 */
#ifndef DKP_RSA8_INT_H
#define DKP_RSA8_INT_H

#include "crypto/rsa8.h"

/* dkp_rsa8_private, and when fault_lane is 1..8 one bit of that lane's
 * CRT half (m1) is flipped before recombination. */
void dkp_rsa8_private_fault(const struct dkp_rsa8_key *const k[8],
			    const unsigned char *const in[8], unsigned char *const out[8],
			    int fault_lane);

struct dkp_rsa8_check;

/* The key's check material (rsa8_check.h), made with the key. */
const struct dkp_rsa8_check *dkp_rsa8_key_check(const struct dkp_rsa8_key *k);
/* The EVP_PKEY the key was made from (its address; it may have been freed
 * since, so only compare it). */
const EVP_PKEY *dkp_rsa8_key_pkey(const struct dkp_rsa8_key *k);

#endif
