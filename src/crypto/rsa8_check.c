/*
 * rsa8_check.c — the independent check of an 8-lane signature (see
 * rsa8_check.h for the contract), on OpenSSL's BN Montgomery code.
 *
 * The arithmetic, per prime h (p, then q), R = 2^1024, e = 65537:
 *
 *   a  = sig * R^-1 mod h        BN_from_montgomery: reduces the 2048-bit
 *                                sig without a division (sig < n < h*R)
 *   x  = a, squared 16 times in the Montgomery domain, times a:
 *        x = sig^e * R^(1-2e)    (a is the Montgomery form of sig*R^-2)
 *   x  = x * D * R^-1 = sig^e mod h, with D = R^(2e) mod h per key
 *   y  = (K + H) mod h = sig^e's expected value, where EM = K + H:
 *        K is EM with a zero digest (K mod h per key), H the digest
 *        (256 bits, below h)
 *
 * and the halves agree when both encodings are equal. That is 19
 * Montgomery operations on 1024 bits per prime, about half the work of one
 * 2048-bit s^e mod n (17 operations on 2048 bits, each four times the
 * work), and none of EVP_PKEY_verify's dispatch, allocation and padding
 * parsing. Measured in docs/performance.md ("RSA-2048 eight at a time").
 */
#include "crypto/rsa8_check.h"

#include <string.h>

#include <openssl/crypto.h>

#include "base/mem.h"
#include "crypto/keymem.h"

#define RSA8_E 65537

struct half {
	BIGNUM *h;		/* the prime (BN_FLG_CONSTTIME) */
	BN_MONT_CTX *mont;	/* Montgomery context for h, R = 2^1024 */
	BIGNUM *d;		/* R^(2e) mod h */
	BIGNUM *k;		/* K mod h: EM of a zero digest */
};

struct dkp_rsa8_check {
	unsigned char n[256];	/* public: a signature must be below n */
	struct half hp, hq;
};

void dkp_rsa8_emsa_encode(unsigned char em[256], const unsigned char *digest)
{
	static const unsigned char di[19] = {	/* DigestInfo prefix, SHA-256 */
		0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
	};

	em[0] = 0x00;
	em[1] = 0x01;
	memset(em + 2, 0xff, 256 - 3 - sizeof(di) - 32);
	em[256 - 1 - sizeof(di) - 32] = 0x00;
	memcpy(em + 256 - sizeof(di) - 32, di, sizeof(di));
	memcpy(em + 256 - 32, digest, 32);
}

static void half_free(struct half *hh)
{
	BN_clear_free(hh->h);
	BN_MONT_CTX_free(hh->mont);	/* clears N, RR, Ni */
	BN_clear_free(hh->d);
	BN_clear_free(hh->k);
}

/* The per-key constants of one prime; 0 on an OpenSSL error. */
static int half_init(struct half *hh, const BIGNUM *prime, const BIGNUM *kem, BN_CTX *bc)
{
	BIGNUM *t = BN_CTX_get(bc), *e2 = BN_CTX_get(bc);

	/* the prime and what reveals it (h divides R^(2e) - d and K - k) in
	 * OpenSSL's secure heap when there is one (keymem.h); the copy in
	 * the Montgomery context is OpenSSL's ordinary heap */
	hh->h = BN_secure_new();
	hh->mont = BN_MONT_CTX_new();
	hh->d = BN_secure_new();
	hh->k = BN_secure_new();
	if (t == NULL || e2 == NULL || hh->h == NULL || hh->mont == NULL || hh->d == NULL ||
	    hh->k == NULL || BN_copy(hh->h, prime) == NULL)
		return 0;
	BN_set_flags(hh->h, BN_FLG_CONSTTIME);
	BN_set_flags(hh->d, BN_FLG_CONSTTIME);
	BN_set_flags(hh->k, BN_FLG_CONSTTIME);
	/* D = (R mod h)^(2e): R mod h is the Montgomery form of 1 */
	return BN_MONT_CTX_set(hh->mont, hh->h, bc) == 1 && BN_one(t) == 1 &&
	       BN_to_montgomery(t, t, hh->mont, bc) == 1 && BN_set_word(e2, 2 * RSA8_E) == 1 &&
	       BN_mod_exp_mont_consttime(hh->d, t, e2, hh->h, bc, hh->mont) == 1 &&
	       /* K mod h without a division: (K R^-1) R */
	       BN_from_montgomery(t, kem, hh->mont, bc) == 1 &&
	       BN_to_montgomery(hh->k, t, hh->mont, bc) == 1;
}

struct dkp_rsa8_check *dkp_rsa8_check_new(const BIGNUM *n, const BIGNUM *p, const BIGNUM *q,
					  const char **why)
{
	static const unsigned char zero[32];
	unsigned char kem[256];
	struct dkp_rsa8_check *c = NULL;
	BN_CTX *bc = BN_CTX_new();
	BIGNUM *t, *k;
	int ok;

	*why = "cannot set up the check (OpenSSL)";
	if (bc == NULL)
		return NULL;
	BN_CTX_start(bc);
	t = BN_CTX_get(bc);
	dkp_rsa8_emsa_encode(kem, zero);
	k = BN_CTX_get(bc);
	if (t == NULL || k == NULL || BN_bin2bn(kem, 256, k) == NULL || BN_mul(t, p, q, bc) != 1)
		goto out;
	/* the halves prove s^e = EM (mod n) only when n = p*q */
	if (BN_cmp(t, n) != 0 || BN_num_bits(p) != 1024 || BN_num_bits(q) != 1024 ||
	    !BN_is_odd(p) || !BN_is_odd(q)) {
		*why = "p*q is not n, or p and q are not odd 1024-bit numbers";
		goto out;
	}
	c = dkp_calloc(1, sizeof(*c));
	/* the Montgomery contexts hold copies of p and q: secure heap */
	dkp_keymem_secret_begin();
	ok = BN_bn2binpad(n, c->n, 256) == 256 && half_init(&c->hp, p, k, bc) &&
	     half_init(&c->hq, q, k, bc);
	dkp_keymem_secret_end();
	if (!ok) {
		dkp_rsa8_check_free(c);
		c = NULL;
		goto out;
	}
	*why = NULL;
out:
	BN_CTX_end(bc);
	BN_CTX_free(bc);
	return c;
}

void dkp_rsa8_check_free(struct dkp_rsa8_check *c)
{
	if (c == NULL)
		return;
	half_free(&c->hp);
	half_free(&c->hq);
	dkp_free_wipe(c, sizeof(*c));
}

/* 0 when sig^e = K + H (mod hh->h), s and hd being sig and H as BIGNUMs;
 * nonzero otherwise (or on an error). Constant time in the residues: the
 * only value tested is their difference, and only whether it is zero,
 * which is whether the signature passes (public). */
static int half_differs(const struct half *hh, const BIGNUM *s, const BIGNUM *hd, BN_CTX *bc)
{
	BIGNUM *a = BN_CTX_get(bc), *x = BN_CTX_get(bc), *y = BN_CTX_get(bc);
	int i, ok;

	if (y == NULL)
		return 1;
	ok = BN_from_montgomery(a, s, hh->mont, bc) == 1 && BN_copy(x, a) != NULL;
	for (i = 0; i < 16 && ok; i++)	/* e = 2^16 + 1 */
		ok = BN_mod_mul_montgomery(x, x, x, hh->mont, bc) == 1;
	ok = ok && BN_mod_mul_montgomery(x, x, a, hh->mont, bc) == 1 &&
	     BN_mod_mul_montgomery(x, x, hh->d, hh->mont, bc) == 1 &&
	     BN_mod_add_quick(y, hh->k, hd, hh->h) == 1 &&
	     BN_mod_sub_quick(x, x, y, hh->h) == 1;	/* both below h */
	return !ok || !BN_is_zero(x);
}

int dkp_rsa8_check_sig(const struct dkp_rsa8_check *c, const unsigned char *sig,
		       const unsigned char *digest, BN_CTX *bc)
{
	BIGNUM *s, *hd;
	int diff;

	/* big-endian, equal length: byte order is numeric order (public) */
	if (memcmp(sig, c->n, 256) >= 0)
		return 0;
	BN_CTX_start(bc);
	s = BN_CTX_get(bc);
	hd = BN_CTX_get(bc);
	diff = hd == NULL || BN_bin2bn(sig, 256, s) == NULL || BN_bin2bn(digest, 32, hd) == NULL;
	if (!diff) {
		diff = half_differs(&c->hp, s, hd, bc);
		diff |= half_differs(&c->hq, s, hd, bc);
	}
	BN_CTX_end(bc);
	return !diff;
}
