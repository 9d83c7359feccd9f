/*
 * rsa8_int.h — internal to src/crypto: the raw 8-lane operation with the
 * fault-injection test hook (rsa8_sign.c passes dkp_rsa8_fault_lane).
 */
#ifndef DKP_RSA8_INT_H
#define DKP_RSA8_INT_H

#include "crypto/rsa8.h"

/* dkp_rsa8_private, and when fault_lane is 1..8 one bit of that lane's
 * CRT half (m1) is flipped before recombination. */
void dkp_rsa8_private_fault(const struct dkp_rsa8_key *const k[8],
			    const unsigned char *const in[8], unsigned char *const out[8],
			    int fault_lane);

#endif
