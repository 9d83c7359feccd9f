/* test_rsa8.c — the 8-lane AVX-512 IFMA RSA-2048 (src/crypto/rsa8.c,
 * rsa8_sign.c) against OpenSSL: signatures byte for byte over many keys
 * and digests, edge cases of the raw operation, rejected keys, the fault
 * hook, the check on its own (right, corrupted and wrong-key signatures),
 * requests whose EVP_PKEY is not their key's, partial groups and two
 * threads at once.
 *
 * Exits 77 (skip) when the CPU lacks AVX-512F/IFMA. RSA8_PAIRS sets the
 * number of (key, digest) pairs (default 10,000; 2,000 in sanitizer
 * builds, which are several times slower). */
#include "unit.h"

#include <pthread.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto/rsa8.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define NGEN 12			/* generated keys; each also with p and q swapped */
#define NKEYS (2 * NGEN)

static EVP_PKEY *pks[NKEYS];
static struct dkp_rsa8_key *rks[NKEYS];
static EVP_PKEY_CTX *sctx[NKEYS];	/* OpenSSL reference signers */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_rand(unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (unsigned char)(next_rand() >> 24);
}

static BIGNUM *bn_param(const EVP_PKEY *pk, const char *name)
{
	BIGNUM *b = NULL;

	if (EVP_PKEY_get_bn_param(pk, name, &b) != 1)
		return NULL;
	return b;
}

/* The same key with p and q exchanged (dp, dq exchanged, qinv = p^-1 mod q). */
static EVP_PKEY *swap_pq(const EVP_PKEY *pk)
{
	BIGNUM *n = bn_param(pk, OSSL_PKEY_PARAM_RSA_N), *e = bn_param(pk, OSSL_PKEY_PARAM_RSA_E),
	       *d = bn_param(pk, OSSL_PKEY_PARAM_RSA_D),
	       *p = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1),
	       *q = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2),
	       *dp = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1),
	       *dq = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2), *qi = BN_new();
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
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1)
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

/* n and e of key a with the private part (d, p, q, dp, dq, qinv) of key b:
 * p*q is not n. */
static EVP_PKEY *mixed_key(const EVP_PKEY *a, const EVP_PKEY *b)
{
	static const char *const priv[] = {
		OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
		OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
		OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[8] = { NULL };
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *out = NULL;
	int i, ok = bld != NULL && ctx != NULL;

	bn[0] = bn_param(a, OSSL_PKEY_PARAM_RSA_N);
	bn[1] = bn_param(a, OSSL_PKEY_PARAM_RSA_E);
	ok = ok && bn[0] != NULL && bn[1] != NULL &&
	     OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn[0]) &&
	     OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn[1]);
	for (i = 0; i < 6 && ok; i++) {
		bn[i + 2] = bn_param(b, priv[i]);
		ok = bn[i + 2] != NULL && OSSL_PARAM_BLD_push_BN(bld, priv[i], bn[i + 2]);
	}
	if (ok && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	for (i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	return out;
}

static EVP_PKEY *gen_rsa(int bits, unsigned e)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	BIGNUM *be = BN_new();
	EVP_PKEY *pk = NULL;

	if (ctx && be && BN_set_word(be, e) && EVP_PKEY_keygen_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) == 1 &&
	    EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, be) == 1)
		EVP_PKEY_keygen(ctx, &pk);
	BN_free(be);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

/* An RSA "key pair" with a random odd modulus of the given size, e = 65537
 * and a random d: enough for the size checks, useless for signing. */
static EVP_PKEY *fake_rsa(int bits)
{
	BIGNUM *n = BN_new(), *e = BN_new(), *d = BN_new();
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *out = NULL;

	if (n && e && d && bld && ctx && BN_rand(n, bits, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD) &&
	    BN_rand(d, bits - 8, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
	    BN_set_word(e, 65537) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(e);
	BN_clear_free(d);
	return out;
}

static int p_greater(const EVP_PKEY *pk)
{
	BIGNUM *p = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1);
	BIGNUM *q = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2);
	int r = BN_cmp(p, q) > 0;

	BN_clear_free(p);
	BN_clear_free(q);
	return r;
}

static int setup(void **st)
{
	int i;

	(void)st;
	for (i = 0; i < NGEN; i++) {
		const char *why = NULL;

		pks[2 * i] = gen_rsa(2048, 65537);
		if (pks[2 * i] == NULL)
			return -1;
		pks[2 * i + 1] = swap_pq(pks[2 * i]);
		if (pks[2 * i + 1] == NULL)
			return -1;
		rks[2 * i] = dkp_rsa8_key_new(pks[2 * i], &why);
		rks[2 * i + 1] = dkp_rsa8_key_new(pks[2 * i + 1], &why);
		if (rks[2 * i] == NULL || rks[2 * i + 1] == NULL) {
			fprintf(stderr, "dkp_rsa8_key_new: %s\n", why);
			return -1;
		}
	}
	for (i = 0; i < NKEYS; i++) {
		sctx[i] = EVP_PKEY_CTX_new(pks[i], NULL);
		if (sctx[i] == NULL || EVP_PKEY_sign_init(sctx[i]) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(sctx[i], RSA_PKCS1_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(sctx[i], EVP_sha256()) != 1)
			return -1;
	}
	return 0;
}

static int teardown(void **st)
{
	int i;

	(void)st;
	for (i = 0; i < NKEYS; i++) {
		EVP_PKEY_CTX_free(sctx[i]);
		dkp_rsa8_key_free(rks[i]);
		EVP_PKEY_free(pks[i]);
	}
	return 0;
}

static void openssl_sign(int key, const unsigned char *dg, unsigned char *sig)
{
	size_t len = 256;

	assert_int_equal(EVP_PKEY_sign(sctx[key], sig, &len, dg, 32), 1);
	assert_int_equal(len, 256);
}

static size_t pairs(void)
{
	const char *v = getenv("RSA8_PAIRS");

	if (v != NULL && atol(v) > 0)
		return (size_t)atol(v);
	return SANITIZED ? 2000 : 10000;
}

/* Both orders of p and q are among the keys (the swap guarantees it). */
static void keys_have_both_orders(void **st)
{
	int i, gt = 0, lt = 0;

	(void)st;
	for (i = 0; i < NKEYS; i++) {
		if (p_greater(pks[i]))
			gt++;
		else
			lt++;
	}
	assert_int_equal(gt, NGEN);
	assert_int_equal(lt, NGEN);
}

/* >= 10,000 (key, digest) pairs, keys mixed across lanes, byte for byte
 * equal to EVP_PKEY_sign; every one passed the built-in check. */
static void signatures_match_openssl(void **st)
{
	enum { BATCH = 64 };
	size_t total = pairs(), done = 0, i, bad = 0;
	struct dkp_rsa8_counts c = { 0, 0, 0, 0 };
	static unsigned char dg[BATCH][32], sig[BATCH][256], ref[BATCH][256];
	struct dkp_rsa8_req r[BATCH];
	int kidx[BATCH];

	(void)st;
	while (done < total) {
		size_t n = total - done < BATCH ? total - done : BATCH;

		/* odd batch sizes exercise partial groups too */
		if (n == BATCH && (done / BATCH) % 7 == 3)
			n = BATCH - 3;
		for (i = 0; i < n; i++) {
			kidx[i] = (int)(next_rand() % NKEYS);
			fill_rand(dg[i], 32);
			r[i].key = rks[kidx[i]];
			r[i].pk = pks[kidx[i]];
			r[i].digest = dg[i];
			r[i].sig = sig[i];
			r[i].status = -7;
		}
		assert_int_equal(dkp_rsa8_sign(r, n, &c), n);
		for (i = 0; i < n; i++) {
			assert_int_equal(r[i].status, 0);
			openssl_sign(kidx[i], dg[i], ref[i]);
			if (memcmp(ref[i], sig[i], 256) != 0 && bad++ < 3)
				assert_bytes_equal(sig[i], 256, ref[i], 256);
		}
		done += n;
	}
	printf("rsa8: %zu signatures equal to OpenSSL's over %d keys (%llu groups, "
	       "%llu mismatches)\n", done, NKEYS, (unsigned long long)c.groups,
	       (unsigned long long)c.mismatches);
	assert_int_equal(bad, 0);
	assert_int_equal(c.lanes, total);
	assert_int_equal(c.mismatches, 0);
	assert_int_equal(c.errors, 0);
}

/* c^d mod n with BN (the reference; branching on d is fine in a test). */
static void raw_ref(const EVP_PKEY *pk, const unsigned char *in, unsigned char *out)
{
	BIGNUM *n = bn_param(pk, OSSL_PKEY_PARAM_RSA_N), *d = bn_param(pk, OSSL_PKEY_PARAM_RSA_D);
	BIGNUM *c = BN_bin2bn(in, 256, NULL), *m = BN_new();
	BN_CTX *bc = BN_CTX_new();

	assert_non_null(n);
	assert_non_null(d);
	assert_int_equal(BN_mod_exp(m, c, d, n, bc), 1);
	assert_int_equal(BN_bn2binpad(m, out, 256), 256);
	BN_CTX_free(bc);
	BN_free(m);
	BN_free(c);
	BN_free(n);
	BN_clear_free(d);
}

/* x = a*k + add (add may be negative), as 256 big-endian bytes; 0 if the
 * result is negative or not below n. */
static int edge_value(const EVP_PKEY *pk, const char *which, long k, long add,
		      unsigned char *out)
{
	BIGNUM *a = NULL, *n = bn_param(pk, OSSL_PKEY_PARAM_RSA_N), *x = BN_new();
	BN_CTX *bc = BN_CTX_new();
	int ok;

	if (which != NULL)
		a = bn_param(pk, which);
	else
		a = BN_new();	/* 0 */
	BN_mul_word(a, (BN_ULONG)k);
	BN_copy(x, a);
	if (add >= 0)
		BN_add_word(x, (BN_ULONG)add);
	else
		BN_sub_word(x, (BN_ULONG)-add);
	ok = !BN_is_negative(x) && BN_cmp(x, n) < 0 && BN_bn2binpad(x, out, 256) == 256;
	BN_CTX_free(bc);
	BN_clear_free(a);
	BN_free(n);
	BN_clear_free(x);
	return ok;
}

/* Representatives 0, 1, 2, n-1, n-2, near p and q, multiples of them,
 * all-ones, random — for keys with p > q and with p < q, in every lane,
 * with empty lanes left untouched. */
static void raw_edge_cases(void **st)
{
	static const struct {
		const char *which;
		long k, add;
	} cases[] = {
		{ NULL, 0, 0 }, { NULL, 0, 1 }, { NULL, 0, 2 }, { NULL, 0, 3 },
		{ OSSL_PKEY_PARAM_RSA_N, 1, -1 }, { OSSL_PKEY_PARAM_RSA_N, 1, -2 },
		{ OSSL_PKEY_PARAM_RSA_N, 1, -3 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, 1, -1 }, { OSSL_PKEY_PARAM_RSA_FACTOR1, 1, 0 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, 1, 1 }, { OSSL_PKEY_PARAM_RSA_FACTOR2, 1, -1 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR2, 1, 0 }, { OSSL_PKEY_PARAM_RSA_FACTOR2, 1, 1 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, 2, 0 }, { OSSL_PKEY_PARAM_RSA_FACTOR1, 12345, 0 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR2, 3, 0 }, { OSSL_PKEY_PARAM_RSA_FACTOR2, 65537, 0 },
		{ OSSL_PKEY_PARAM_RSA_FACTOR1, 2, -1 }, { OSSL_PKEY_PARAM_RSA_FACTOR2, 2, 1 },
	};
	enum { NC = sizeof(cases) / sizeof(cases[0]) + 3 };	/* + all-ones, 2^2047, random */
	static unsigned char in[NC][256], ref[NC][256];
	unsigned char out[8][256];
	int key, ci, lane, checked = 0;

	(void)st;
	for (key = 0; key < NKEYS; key += 5) {	/* both orders: 0, 5, 10, ... */
		int nc = 0;

		for (ci = 0; ci < (int)(NC - 3); ci++)
			if (edge_value(pks[key], cases[ci].which, cases[ci].k, cases[ci].add,
				       in[nc]))
				nc++;
		memset(in[nc], 0xff, 256);	/* all-ones below 2^2047 < n */
		in[nc++][0] = 0x7f;
		memset(in[nc], 0, 256);		/* 2^2047 < n (top bit of n set) */
		in[nc++][0] = 0x80;
		assert_true(edge_value(pks[key], OSSL_PKEY_PARAM_RSA_N, 1, -1, in[nc]));
		fill_rand(in[nc] + 1, 255);	/* random, top byte below n's */
		in[nc][0] = (unsigned char)(in[nc][0] - 1);
		nc++;
		for (ci = 0; ci < nc; ci++)
			raw_ref(pks[key], in[ci], ref[ci]);
		/* each case in each lane; the other lanes hold other keys or are empty */
		for (ci = 0; ci < nc; ci++) {
			const struct dkp_rsa8_key *k[8];
			const unsigned char *ip[8];
			unsigned char *op[8];
			int hit = ci % 8;

			for (lane = 0; lane < 8; lane++) {
				int other = (key + 1 + lane) % NKEYS;

				memset(out[lane], 0xa5, 256);
				op[lane] = out[lane];
				if (lane == hit) {
					k[lane] = rks[key];
					ip[lane] = in[ci];
				} else if ((lane + ci) % 3 == 0) {
					k[lane] = NULL;	/* empty lane */
					ip[lane] = NULL;
				} else {
					k[lane] = rks[other];
					ip[lane] = in[0];	/* 0 for any key */
				}
			}
			dkp_rsa8_private(k, ip, op);
			for (lane = 0; lane < 8; lane++) {
				if (lane == hit) {
					if (memcmp(out[lane], ref[ci], 256) != 0) {
						fprintf(stderr, "key %d (p %s q) case %d lane %d\n", key,
							p_greater(pks[key]) ? ">" : "<", ci, lane);
						assert_bytes_equal(out[lane], 256, ref[ci], 256);
					}
					checked++;
				} else if (k[lane] == NULL) {
					unsigned char untouched[256];

					memset(untouched, 0xa5, 256);
					assert_memory_equal(out[lane], untouched, 256);
				} else {
					unsigned char zero[256] = { 0 };

					assert_memory_equal(out[lane], zero, 256);
				}
			}
		}
	}
	printf("rsa8: %d edge-case representatives equal to BN_mod_exp\n", checked);
	assert_true(checked > 100);
}

/* Only RSA-2048 with e = 65537 and two 1024-bit primes is accepted. */
static void rejects_other_keys(void **st)
{
	static const struct {
		int bits;
		unsigned e;
	} bad[] = { { 1024, 65537 }, { 2048, 3 }, { 2048, 17 } };
	static const int big[] = { 3072, 4096, 2040 };
	EVP_PKEY *pk, *pub;
	unsigned char *der = NULL;
	const unsigned char *pp;
	const char *why;
	size_t i;
	int len;

	(void)st;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pk = gen_rsa(bad[i].bits, bad[i].e);
		assert_non_null(pk);
		why = NULL;
		assert_null(dkp_rsa8_key_new(pk, &why));
		assert_non_null(why);
		printf("rsa8: %d bits, e=%u rejected: %s\n", bad[i].bits, bad[i].e, why);
		EVP_PKEY_free(pk);
	}
	/* 3072 and 4096 bits (and a 2040-bit modulus) from their parameters:
	 * generating real ones costs seconds, and the size check comes
	 * before anything else looks at the primes */
	for (i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		pk = fake_rsa(big[i]);
		assert_non_null(pk);
		assert_int_equal(EVP_PKEY_get_bits(pk), big[i]);
		why = NULL;
		assert_null(dkp_rsa8_key_new(pk, &why));
		assert_non_null(why);
		printf("rsa8: %d bits rejected: %s\n", big[i], why);
		EVP_PKEY_free(pk);
	}
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(pk);
	why = NULL;
	assert_null(dkp_rsa8_key_new(pk, &why));
	assert_non_null(why);
	EVP_PKEY_free(pk);
	/* a public key only: no CRT parameters */
	len = i2d_PUBKEY(pks[0], &der);
	assert_true(len > 0);
	pp = der;
	pub = d2i_PUBKEY(NULL, &pp, len);
	assert_non_null(pub);
	why = NULL;
	assert_null(dkp_rsa8_key_new(pub, &why));
	assert_non_null(why);
	printf("rsa8: public-only key rejected: %s\n", why);
	EVP_PKEY_free(pub);
	OPENSSL_free(der);
	/* n of one key, p and q of another: the check would prove nothing */
	pk = mixed_key(pks[0], pks[2]);
	assert_non_null(pk);
	why = NULL;
	assert_null(dkp_rsa8_key_new(pk, &why));
	assert_non_null(why);
	printf("rsa8: key with p*q != n rejected: %s\n", why);
	EVP_PKEY_free(pk);
	assert_null(dkp_rsa8_key_new(NULL, &why));
	dkp_rsa8_key_free(NULL);
}

/* A flipped bit in one lane's CRT half: caught by the check, recomputed
 * by OpenSSL (status 1, counted), the result still equal to OpenSSL's. */
static void fault_hook_falls_back(void **st)
{
	enum { N = 19 };
	static unsigned char dg[N][32], sig[N][256], ref[N][256];
	struct dkp_rsa8_req r[N];
	struct dkp_rsa8_counts c = { 0, 0, 0, 0 };
	int i, lane;

	(void)st;
	for (lane = 1; lane <= 8; lane += 7) {	/* first and last lane */
		memset(&c, 0, sizeof(c));
		for (i = 0; i < N; i++) {
			fill_rand(dg[i], 32);
			r[i].key = rks[i % NKEYS];
			r[i].pk = pks[i % NKEYS];
			r[i].digest = dg[i];
			r[i].sig = sig[i];
			openssl_sign(i % NKEYS, dg[i], ref[i]);
		}
		dkp_rsa8_fault_lane = lane;
		assert_int_equal(dkp_rsa8_sign(r, N, &c), N);
		dkp_rsa8_fault_lane = 0;
		for (i = 0; i < N; i++) {
			/* groups of 8: lane-1, 8+lane-1, 16+lane-1 (if < N) */
			int faulty = i % 8 == lane - 1;

			assert_int_equal(r[i].status, faulty ? 1 : 0);
			assert_bytes_equal(sig[i], 256, ref[i], 256);
		}
		assert_int_equal(c.mismatches, lane - 1 + 16 < N ? 3 : 2);
		assert_int_equal(c.errors, 0);
		assert_int_equal(c.groups, 3);
		assert_int_equal(c.lanes, N);
	}
}

/* sig + the key's parameter `which` (n, p or q) when that still fits in
 * 256 bytes, else 0. sig + n has sig's residues mod p and q (only the
 * range check rejects it); sig + p is right mod p, wrong mod q (only the q
 * half rejects it), and the other way round for sig + q. */
static int plus(const EVP_PKEY *pk, const char *which, const unsigned char *sig,
		unsigned char *out)
{
	BIGNUM *a = bn_param(pk, which), *s = BN_bin2bn(sig, 256, NULL);
	int ok = a != NULL && s != NULL && BN_add(s, s, a) && BN_num_bytes(s) <= 256 &&
		 BN_bn2binpad(s, out, 256) == 256;

	BN_clear_free(a);
	BN_free(s);
	return ok;
}

/* The check on its own (dkp_rsa8_verify, what dkp_rsa8_sign runs on every
 * lane): OpenSSL's signatures pass; one flipped bit anywhere, another
 * key's signature of the same digest, the signature of another digest,
 * sig + n (same residues mod p and q), sig + p and sig + q (right modulo
 * one prime) fail. */
static void check_rejects_wrong(void **st)
{
	unsigned char dg[32], dg2[32], sig[256], other[256], bad[256];
	int key, bit, bits_tried = 0, plus_tried = 0;

	(void)st;
	for (key = 0; key < NKEYS; key++) {
		int wrong = (key + 2) % NKEYS;	/* keys 2i and 2i+1 are one key */

		fill_rand(dg, 32);
		openssl_sign(key, dg, sig);
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, sig), 1);
		/* the same key with p and q exchanged accepts it too */
		assert_int_equal(dkp_rsa8_verify(rks[key ^ 1], dg, sig), 1);
		openssl_sign(wrong, dg, other);
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, other), 0);
		assert_int_equal(dkp_rsa8_verify(rks[wrong], dg, sig), 0);
		memcpy(dg2, dg, 32);
		dg2[next_rand() % 32] ^= (unsigned char)(1u << (next_rand() % 8));
		assert_int_equal(dkp_rsa8_verify(rks[key], dg2, sig), 0);
		/* the lowest bit, the highest and six at random */
		for (bit = 0; bit < 8; bit++) {
			unsigned pos = bit == 0 ? 0 : bit == 1 ? 2047 : (unsigned)(next_rand() % 2048);

			memcpy(bad, sig, 256);
			bad[255 - pos / 8] ^= (unsigned char)(1u << (pos % 8));
			assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
			bits_tried++;
		}
		if (plus(pks[key], OSSL_PKEY_PARAM_RSA_N, sig, bad)) {
			assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
			plus_tried++;
		}
		assert_true(plus(pks[key], OSSL_PKEY_PARAM_RSA_FACTOR1, sig, bad));
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
		assert_true(plus(pks[key], OSSL_PKEY_PARAM_RSA_FACTOR2, sig, bad));
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
		memset(bad, 0, 256);
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
		memset(bad, 0xff, 256);
		assert_int_equal(dkp_rsa8_verify(rks[key], dg, bad), 0);
	}
	printf("rsa8: the check accepted %d right signatures and rejected %d with one bit "
	       "flipped, %d of another key, %d of another digest, %d signatures + n, %d + p, "
	       "%d + q\n", NKEYS, bits_tried, NKEYS, NKEYS, plus_tried, NKEYS, NKEYS);
	assert_true(plus_tried > 0);
}

/* A request whose EVP_PKEY is not the one its key was made from is
 * checked with EVP_PKEY_verify against that EVP_PKEY: a copy of the same
 * key passes (status 0); another key fails, and the fallback signs with
 * the request's EVP_PKEY (status 1, OpenSSL's signature for it). */
static void check_follows_request_pkey(void **st)
{
	unsigned char dg[2][32], sig[2][256], ref[256];
	struct dkp_rsa8_req r[2];
	struct dkp_rsa8_counts c = { 0, 0, 0, 0 };
	EVP_PKEY *copy = EVP_PKEY_dup(pks[0]);
	int i;

	(void)st;
	assert_non_null(copy);
	for (i = 0; i < 2; i++) {
		fill_rand(dg[i], 32);
		r[i].key = rks[0];
		r[i].digest = dg[i];
		r[i].sig = sig[i];
	}
	r[0].pk = copy;
	r[1].pk = pks[2];
	assert_int_equal(dkp_rsa8_sign(r, 2, &c), 2);
	assert_int_equal(r[0].status, 0);
	assert_int_equal(r[1].status, 1);
	assert_int_equal(c.mismatches, 1);
	openssl_sign(0, dg[0], ref);
	assert_bytes_equal(sig[0], 256, ref, 256);
	openssl_sign(2, dg[1], ref);
	assert_bytes_equal(sig[1], 256, ref, 256);
	EVP_PKEY_free(copy);
}

/* Missing fields give status -1 and count as errors; the rest are signed. */
static void bad_requests(void **st)
{
	unsigned char dg[3][32], sig[3][256], ref[256];
	struct dkp_rsa8_req r[3];
	struct dkp_rsa8_counts c = { 0, 0, 0, 0 };
	int i;

	(void)st;
	for (i = 0; i < 3; i++) {
		fill_rand(dg[i], 32);
		r[i].key = rks[i];
		r[i].pk = pks[i];
		r[i].digest = dg[i];
		r[i].sig = sig[i];
	}
	r[1].key = NULL;
	assert_int_equal(dkp_rsa8_sign(r, 3, &c), 2);
	assert_int_equal(r[0].status, 0);
	assert_int_equal(r[1].status, -1);
	assert_int_equal(r[2].status, 0);
	assert_int_equal(c.errors, 1);
	assert_int_equal(c.lanes, 2);
	openssl_sign(2, dg[2], ref);
	assert_bytes_equal(sig[2], 256, ref, 256);
	assert_int_equal(dkp_rsa8_sign(r, 1, NULL), 1);
}

struct thr {
	int id, bad;
};

/* The stack the kernel used is wiped after the call (rsa8.c,
 * wipe_stack): paint 64 KiB of stack below this frame, run a group, and
 * look at what is left there. Return addresses, saved registers and the
 * pointers of a few frames remain; the kernel's spills (kilobytes of
 * accumulators and limbs) must not. Measured at -O2: ~11 KiB neither
 * paint nor zero without the wipe, a few hundred bytes with it. */
#define PAINT (64 * 1024)
static __attribute__((noinline)) void paint_stack(void)
{
	volatile unsigned char b[PAINT];
	size_t i;

	for (i = 0; i < PAINT; i++)
		b[i] = 0x5a;
	__asm__ __volatile__("" : : "r"(b) : "memory");
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
static __attribute__((noinline)) size_t stack_leftovers(size_t *depth)
{
	volatile unsigned char b[PAINT];	/* where paint_stack's was:
						 * read as left, on purpose */
	size_t i, n = 0;

	*depth = 0;
	for (i = 0; i < PAINT; i++) {
		if (b[i] != 0x5a && *depth == 0)
			*depth = PAINT - i;
		n += b[i] != 0x5a && b[i] != 0;
	}
	return n;
}
#pragma GCC diagnostic pop

static __attribute__((noinline)) void run_group(void)
{
	/* static: this frame is inside the painted stack */
	static const struct dkp_rsa8_key *k[8];
	static const unsigned char *ip[8];
	static unsigned char in[8][256], out[8][256], *op[8];
	int lane;

	for (lane = 0; lane < 8; lane++) {
		fill_rand(in[lane], 256);
		in[lane][0] = 0;	/* < n */
		k[lane] = rks[lane];
		ip[lane] = in[lane];
		op[lane] = out[lane];
	}
	dkp_rsa8_private(k, ip, op);
}

static void stack_wiped(void **st)
{
	size_t left, depth;

	(void)st;
	if (SANITIZED)
		skip();	/* ASan keeps locals on a fake stack */
	paint_stack();
	run_group();
	left = stack_leftovers(&depth);
	fprintf(stderr, "stack below the call: %zu bytes written, %zu left neither paint nor zero\n",
		depth, left);
	assert_true(depth > 1024);	/* the paint reached the kernel's frames */
	assert_true(left < 1024);
}

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	unsigned char dg[32], sig[16][256], ref[256];
	struct dkp_rsa8_req r[16];
	EVP_PKEY_CTX *ctx[16];
	int round, i;

	for (i = 0; i < 16; i++) {
		ctx[i] = EVP_PKEY_CTX_new(pks[(t->id + i) % NKEYS], NULL);
		EVP_PKEY_sign_init(ctx[i]);
		EVP_PKEY_CTX_set_rsa_padding(ctx[i], RSA_PKCS1_PADDING);
		EVP_PKEY_CTX_set_signature_md(ctx[i], EVP_sha256());
	}
	for (round = 0; round < 4; round++) {
		memset(dg, t->id * 16 + round, sizeof(dg));
		for (i = 0; i < 16; i++) {
			r[i].key = rks[(t->id + i) % NKEYS];
			r[i].pk = pks[(t->id + i) % NKEYS];
			r[i].digest = dg;
			r[i].sig = sig[i];
		}
		if (dkp_rsa8_sign(r, 16, NULL) != 16)
			t->bad++;
		for (i = 0; i < 16; i++) {
			size_t len = 256;

			if (r[i].status != 0 || EVP_PKEY_sign(ctx[i], ref, &len, dg, 32) != 1 ||
			    memcmp(ref, sig[i], 256) != 0)
				t->bad++;
		}
	}
	for (i = 0; i < 16; i++)
		EVP_PKEY_CTX_free(ctx[i]);
	return NULL;
}

/* Two threads at once (per-thread check caches, shared keys). */
static void two_threads(void **st)
{
	pthread_t th[2];
	struct thr t[2] = { { 0, 0 }, { 1, 0 } };
	int i;

	(void)st;
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(keys_have_both_orders),
		cmocka_unit_test(rejects_other_keys),
		cmocka_unit_test(raw_edge_cases),
		cmocka_unit_test(fault_hook_falls_back),
		cmocka_unit_test(check_rejects_wrong),
		cmocka_unit_test(check_follows_request_pkey),
		cmocka_unit_test(bad_requests),
		cmocka_unit_test(two_threads),
		cmocka_unit_test(stack_wiped),
		cmocka_unit_test(signatures_match_openssl),
	};

	if (!dkp_rsa8_cpu_ok()) {
		printf("test_rsa8: skipped: this CPU (or OS) lacks AVX-512F/VL/BW/DQ + "
		       "AVX-512 IFMA, or this is valgrind (which cannot execute AVX-512)\n");
		return 77;
	}
	UNIT_RUN_WITH("test_rsa8", tests, setup, teardown);
}
