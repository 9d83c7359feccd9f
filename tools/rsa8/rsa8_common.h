/*
 * rsa8_common.h — shared by tools/rsa8/rsa_long.c and rsa8_speed.c: keys
 * (generated, and the same keys with p and q exchanged), a fast PRNG, an
 * OpenSSL reference signer, a clock.
 */
#ifndef DKP_RSA8_COMMON_H
#define DKP_RSA8_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "crypto/rsa8.h"

static inline double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline uint64_t xs_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static inline void xs_fill(uint64_t *s, unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(xs_next(s) >> 29);
}

static inline BIGNUM *rc_param(const EVP_PKEY *pk, const char *name)
{
	BIGNUM *b = NULL;

	return EVP_PKEY_get_bn_param(pk, name, &b) == 1 ? b : NULL;
}

/* The same key with p and q exchanged. */
static inline EVP_PKEY *rc_swap_pq(const EVP_PKEY *pk)
{
	BIGNUM *n = rc_param(pk, OSSL_PKEY_PARAM_RSA_N), *e = rc_param(pk, OSSL_PKEY_PARAM_RSA_E),
	       *d = rc_param(pk, OSSL_PKEY_PARAM_RSA_D),
	       *p = rc_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1),
	       *q = rc_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2),
	       *dp = rc_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1),
	       *dq = rc_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2), *qi = BN_new();
	BN_CTX *bc = BN_CTX_new();
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *out = NULL;

	if (n && e && d && p && q && dp && dq && qi && bc && bld && ctx &&
	    BN_mod_inverse(qi, p, q, bc) != NULL &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, q) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, p) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dq) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dp) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_CTX_free(bc);
	BN_free(n);
	BN_free(e);
	BN_clear_free(d);
	BN_clear_free(p);
	BN_clear_free(q);
	BN_clear_free(dp);
	BN_clear_free(dq);
	BN_clear_free(qi);
	return out;
}

/* nkeys (even) keys: nkeys/2 generated, each also with p and q swapped. */
static inline int rc_keys(int nkeys, EVP_PKEY **pk, struct dkp_rsa8_key **rk)
{
	int i;

	for (i = 0; i < nkeys; i++) {
		const char *why = NULL;

		pk[i] = i % 2 == 0 ? EVP_RSA_gen(2048) : rc_swap_pq(pk[i - 1]);
		rk[i] = pk[i] != NULL ? dkp_rsa8_key_new(pk[i], &why) : NULL;
		if (rk[i] == NULL) {
			fprintf(stderr, "key %d: %s\n", i, why ? why : "cannot generate");
			return -1;
		}
	}
	return 0;
}

static inline EVP_PKEY_CTX *rc_signer(EVP_PKEY *pk)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);

	if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
		fprintf(stderr, "cannot set up EVP_PKEY_sign\n");
		exit(2);
	}
	return ctx;
}

static inline EVP_PKEY_CTX *rc_verifier(EVP_PKEY *pk)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);

	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
		fprintf(stderr, "cannot set up EVP_PKEY_verify\n");
		exit(2);
	}
	return ctx;
}

#endif
