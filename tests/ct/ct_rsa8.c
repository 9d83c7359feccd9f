/*
 * ct_rsa8.c — the constant-time check of the 8-lane RSA kernel, the
 * "ctgrind" way: the key's secret material (p, q, dp, dq, qinv and the
 * constants derived from them) and the input representatives are marked
 * undefined for valgrind's memcheck, dkp_rsa8_private runs, and memcheck
 * reports every branch ("Conditional jump or move depends on uninitialised
 * value(s)") and every memory index ("Use of uninitialised value of size")
 * that depends on them. The output is marked defined again before it is
 * compared with BN_mod_exp, so the comparison itself reports nothing.
 *
 * The derivations of the key set-up (-p^-1 mod 2^52, R^2 mod p by masked
 * doublings) are redone on the undefined secrets too (dkp_rsa8_ct_derive).
 *
 * Built from src/crypto/rsa8.c with -DDKP_RSA8_EMULATE: valgrind 3.19
 * cannot execute AVX-512 ("unhandled instruction"), so memcheck runs the
 * same kernel source with the vector wrappers of rsa8_vec.h compiled to
 * plain C over 8-element arrays — the control flow and the memory indexing
 * are the kernel's own. With -DDKP_RSA8_CT_CANARY the kernel has one
 * deliberate branch on a secret window value, which memcheck must flag
 * (tests/ct/run.sh checks both).
 *
 * Usage: ct_rsa8 KEY.pem [KEY.pem...]; exit 0 when all 8 lanes are right.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <valgrind/memcheck.h>

#include "base/mem.h"
#include "crypto/rsa8.h"

void dkp_rsa8_ct_derive(struct dkp_rsa8_key *k);	/* rsa8.c, emulated build */

/* rsa8.c's allocations (base/mem.c without its logging dependencies) */
void *dkp_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

void *dkp_calloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

void dkp_free_wipe(void *p, size_t n)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, n);
		free(p);
	}
}

static BIGNUM *param(const EVP_PKEY *pk, const char *name)
{
	BIGNUM *b = NULL;

	if (EVP_PKEY_get_bn_param(pk, name, &b) != 1) {
		fprintf(stderr, "ct_rsa8: no %s\n", name);
		exit(2);
	}
	return b;
}

int main(int argc, char **argv)
{
	EVP_PKEY *pk[8];
	struct dkp_rsa8_key *rk[8];
	const struct dkp_rsa8_key *k[8];
	static unsigned char in[8][256], out[8][256], ref[8][256];
	const unsigned char *ip[8];
	unsigned char *op[8];
	BN_CTX *bc = BN_CTX_new();
	int nk, i, bad = 0;

	if (argc < 2 || argc > 9) {
		fprintf(stderr, "usage: ct_rsa8 KEY.pem [KEY.pem...] (up to 8)\n");
		return 2;
	}
	nk = argc - 1;
	for (i = 0; i < nk; i++) {
		FILE *f = fopen(argv[i + 1], "r");
		const char *why = NULL;

		pk[i] = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f != NULL)
			fclose(f);
		rk[i] = pk[i] != NULL ? dkp_rsa8_key_new(pk[i], &why) : NULL;
		if (rk[i] == NULL) {
			fprintf(stderr, "ct_rsa8: %s: %s\n", argv[i + 1], why ? why : "unreadable");
			return 2;
		}
	}
	/* lane inputs: random below n, 0, 1, n-1, p, random, q+1, random */
	for (i = 0; i < 8; i++) {
		const EVP_PKEY *key = pk[i % nk];
		BIGNUM *n = param(key, OSSL_PKEY_PARAM_RSA_N), *d = param(key, OSSL_PKEY_PARAM_RSA_D);
		BIGNUM *x = BN_new(), *y = BN_new();

		switch (i) {
		case 1: BN_zero(x); break;
		case 2: BN_one(x); break;
		case 3: BN_copy(x, n); BN_sub_word(x, 1); break;
		case 4: BN_free(x); x = param(key, OSSL_PKEY_PARAM_RSA_FACTOR1); break;
		case 6: BN_free(x); x = param(key, OSSL_PKEY_PARAM_RSA_FACTOR2); BN_add_word(x, 1); break;
		default: BN_rand_range(x, n); break;
		}
		if (BN_bn2binpad(x, in[i], 256) != 256 || !BN_mod_exp(y, x, d, n, bc) ||
		    BN_bn2binpad(y, ref[i], 256) != 256)
			return 2;
		BN_free(n);
		BN_clear_free(d);
		BN_clear_free(x);
		BN_clear_free(y);
		k[i] = rk[i % nk];
		ip[i] = in[i];
		op[i] = out[i];
	}

	/* the secrets become "undefined": any use that decides a branch or
	 * an address is reported */
	for (i = 0; i < nk; i++) {
		size_t len;
		void *s = dkp_rsa8_key_secret(rk[i], &len);

		VALGRIND_MAKE_MEM_UNDEFINED(s, len);
	}
	VALGRIND_MAKE_MEM_UNDEFINED(in, sizeof(in));
	/* the key set-up arithmetic on p and q (Montgomery constants, R^2
	 * mod p by masked doublings) runs on the undefined secrets too */
	for (i = 0; i < nk; i++)
		dkp_rsa8_ct_derive(rk[i]);

	dkp_rsa8_private(k, ip, op);

	VALGRIND_MAKE_MEM_DEFINED(out, sizeof(out));
	for (i = 0; i < nk; i++) {
		size_t len;
		void *s = dkp_rsa8_key_secret(rk[i], &len);

		VALGRIND_MAKE_MEM_DEFINED(s, len);
	}
	for (i = 0; i < 8; i++) {
		if (memcmp(out[i], ref[i], 256) != 0) {
			fprintf(stderr, "ct_rsa8: lane %d differs from BN_mod_exp\n", i);
			bad++;
		}
	}
	for (i = 0; i < nk; i++) {
		dkp_rsa8_key_free(rk[i]);
		EVP_PKEY_free(pk[i]);
	}
	BN_CTX_free(bc);
	printf("ct_rsa8: %d of 8 lanes equal to BN_mod_exp (%s build)\n", 8 - bad,
#ifdef DKP_RSA8_EMULATE
	       "emulated"
#else
	       "AVX-512"
#endif
	);
	return bad != 0;
}
