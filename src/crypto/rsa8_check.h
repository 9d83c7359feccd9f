/*
 * rsa8_check.h — the check of every 8-lane RSA-2048 signature before it
 * is released, computed by OpenSSL's BN code (never by the vector kernel
 * it checks) and cheaper than EVP_PKEY_verify.
 *
 * Contract. dkp_rsa8_check_sig(c, sig, digest) is 1 exactly when sig is
 * the RSASSA-PKCS1-v1_5 SHA-256 signature of digest (RFC 8017 8.2) under
 * the key c was made from: sig < n and sig^65537 = EM (mod p) and
 * (mod q), where EM is the encoded digest. Since n = p*q (checked when c
 * is made), that is sig^65537 = EM (mod n), the public-key verification,
 * done as two 1024-bit halves: half the cost of the 2048-bit one. The
 * halves run on OpenSSL's Montgomery code (BN_from_montgomery,
 * BN_mod_mul_montgomery) with one BN_MONT_CTX per prime made once per key.
 *
 * Secrets. The halves are reduced modulo the secret primes, so the
 * residues are as secret as p and q: the code path and the memory access
 * pattern do not depend on them (OpenSSL's Montgomery code,
 * BN_mod_add_quick and BN_mod_sub_quick are constant time, the properties
 * OpenSSL's own RSA CRT relies on, with the same exception: BN trims
 * leading zero words, which a residue has with probability 2^-64), the
 * one value tested is the difference of the two sides, only for zero, and
 * every temporary is wiped (BN_CTX_free clears). Whether the signature
 * passes is public.
 *
 * Ownership and threads. dkp_rsa8_check_new copies what it needs; the
 * object is immutable afterwards and may be used by any number of threads
 * at once, each with its own BN_CTX. dkp_rsa8_check_free wipes it.
 *
 * Internal to src/crypto (and its tests).
 */
#ifndef DKP_RSA8_CHECK_H
#define DKP_RSA8_CHECK_H

#include <openssl/bn.h>

struct dkp_rsa8_check;

/* The check's material for the key (n, p, q): NULL (and *why set to a
 * static reason) unless n = p*q with p and q odd 1024-bit numbers. */
struct dkp_rsa8_check *dkp_rsa8_check_new(const BIGNUM *n, const BIGNUM *p, const BIGNUM *q,
					  const char **why);
/* Wipe and free; NULL is a no-op. */
void dkp_rsa8_check_free(struct dkp_rsa8_check *c);

/* 1 when sig (256 bytes, big-endian) is the PKCS#1 v1.5 SHA-256 signature
 * of digest (32 bytes) under c's key, else 0 (also on an OpenSSL error).
 * bc: the calling thread's BN_CTX; free it with BN_CTX_free, which wipes
 * the residues this leaves in it. */
int dkp_rsa8_check_sig(const struct dkp_rsa8_check *c, const unsigned char *sig,
		       const unsigned char *digest, BN_CTX *bc);

/* RFC 8017 9.2 EMSA-PKCS1-v1_5 encoding of a SHA-256 digest, 256 bytes. */
void dkp_rsa8_emsa_encode(unsigned char em[256], const unsigned char *digest);

#endif
