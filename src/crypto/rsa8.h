/*
 * rsa8.h — eight RSA-2048 private-key operations side by side with
 * AVX-512 IFMA (vpmadd52luq/vpmadd52huq), and PKCS#1 v1.5 SHA-256
 * signatures built on them.
 *
 * Contract. Each of the 8 vector lanes is one independent key and message:
 * CRT with two 1024-bit modular exponentiations per lane in 52-bit limbs
 * (20 limbs), almost-Montgomery multiplication, 4-bit fixed windows, a
 * constant-time Garner recombination. Constant time in every secret
 * (p, q, dp, dq, qinv, the message representative): no branch and no memory
 * index depends on one; table look-ups read every entry and select with
 * masks. n and e are public.
 *
 * Ownership. dkp_rsa8_key_new copies what it needs out of the EVP_PKEY (the
 * caller keeps its key); dkp_rsa8_key_free wipes the struct. Key material is
 * never logged.
 *
 * Threads. Keys (with their check material) are immutable after
 * dkp_rsa8_key_new and may be shared; dkp_rsa8_sign keeps no state
 * between calls.
 *
 * CPU. Every AVX-512 instruction sits in functions built with per-function
 * target attributes; none runs unless dkp_rsa8_cpu_ok() returned 1, so the
 * binary runs on any x86-64. Built with -DDKP_RSA8_EMULATE (tests/ct only),
 * the same kernel source uses plain C over 8-element arrays instead of
 * intrinsics and dkp_rsa8_cpu_ok() is 1 everywhere.
 */
#ifndef DKP_RSA8_H
#define DKP_RSA8_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* 1 when CPUID (+ OS XSAVE state) allows AVX-512F/VL/BW/DQ + AVX-512IFMA;
 * computed once. 0 under valgrind, which cannot execute AVX-512. */
int dkp_rsa8_cpu_ok(void);

/* Lane-ready material of one RSA-2048 key (opaque). */
struct dkp_rsa8_key;

/* NULL (and *why set to a static reason) unless pk is RSA with a 2048-bit
 * modulus, e = 65537, two 1024-bit primes with p*q = n and CRT parameters
 * present. Also makes the material of the check (rsa8_check.h) from
 * OpenSSL's n, p and q. The key remembers pk's address (no reference) to
 * recognize it in requests. */
struct dkp_rsa8_key *dkp_rsa8_key_new(const EVP_PKEY *pk, const char **why);
/* Wipe and free; NULL is a no-op. */
void dkp_rsa8_key_free(struct dkp_rsa8_key *k);

/* Raw RSA private operation on up to 8 lanes: out[i] = in[i]^d mod n_i
 * (CRT), 256-byte big-endian buffers, in[i] < n_i. Lanes with k[i] == NULL
 * are ignored (out untouched). Constant time in every secret. Requires
 * dkp_rsa8_cpu_ok(). */
void dkp_rsa8_private(const struct dkp_rsa8_key *const k[8],
		      const unsigned char *const in[8], unsigned char *const out[8]);

/* PKCS#1 v1.5 SHA-256 signature requests (RFC 8017 EMSA-PKCS1-v1_5). */
struct dkp_rsa8_req {
	const struct dkp_rsa8_key *key;	/* from dkp_rsa8_key_new */
	EVP_PKEY *pk;			/* the same key: check and fallback */
	const unsigned char *digest;	/* 32 bytes */
	unsigned char *sig;		/* 256 bytes out */
	int status;			/* out: 0 = 8-lane result verified,
					 * 1 = failed the check, recomputed by
					 * OpenSSL and verified, -1 = error */
};
struct dkp_rsa8_counts {
	uint64_t lanes, groups, mismatches, errors;
};
/* Sign r[0..n) in groups of 8 (a partial last group runs with empty
 * lanes); every signature is checked by OpenSSL's code before it is
 * returned: with the key's check material (dkp_rsa8_verify) when req->pk
 * is the EVP_PKEY the key was made from, else with EVP_PKEY_verify and
 * req->pk. Returns the number of requests with status >= 0. c (may be
 * NULL) is added to: lanes computed, groups run, mismatches (lanes that
 * failed the check), errors (status -1). A request with a NULL field, or
 * any request when !dkp_rsa8_cpu_ok(), gets status -1. Thread-safe. */
size_t dkp_rsa8_sign(struct dkp_rsa8_req *r, size_t n, struct dkp_rsa8_counts *c);

/* The check dkp_rsa8_sign runs on every lane: 1 when sig (256 bytes) is
 * the PKCS#1 v1.5 SHA-256 signature of digest (32 bytes) under k, i.e.
 * sig < n and sig^65537 = EM (mod p) and (mod q), computed by OpenSSL's BN
 * Montgomery code (never by the vector kernel); constant time in p and q.
 * 0 otherwise. Thread-safe. */
int dkp_rsa8_verify(const struct dkp_rsa8_key *k, const unsigned char *digest,
		    const unsigned char *sig);

#ifdef DKP_TEST_HOOKS
/* Test hook, in test builds only (-DDKP_TEST_HOOKS: build/dkimpress-test,
 * libdkimpress-test.a): when 1..8, lane (value-1) of the next groups gets
 * one bit of its CRT half flipped before recombination. 0 = off. Also set
 * from the environment variable DKP_RSA8_FAULT_LANE, read once at first
 * use. */
extern int dkp_rsa8_fault_lane;
#endif

/* For tests/ct only: the secret part of the key struct (p, q, dp, dq, qinv
 * and the constants derived from p and q), so that a test can mark it
 * undefined for valgrind. */
void *dkp_rsa8_key_secret(struct dkp_rsa8_key *k, size_t *len);

#endif
