/*
 * rsa8_sign.c — PKCS#1 v1.5 SHA-256 signatures in groups of 8 on the
 * 8-lane kernel (rsa8.c), each one checked before it is returned; a lane
 * that fails the check is recomputed with EVP_PKEY_sign and counted (the
 * caller logs).
 *
 * The check (rsa8_check.c) runs OpenSSL's BN Montgomery code on the
 * key's material made once by dkp_rsa8_key_new from OpenSSL's n, p and q:
 * s < n and s^65537 = EM modulo p and modulo q, i.e. the public-key
 * verification in two halves, half the cost of EVP_PKEY_verify and shared
 * by all threads (immutable). A request whose EVP_PKEY is not the one its
 * key was made from is checked with EVP_PKEY_verify against that EVP_PKEY
 * instead, so the check always answers for req->pk. Each group gets a
 * BN_CTX of its own, freed (and so wiped) at the end of the group.
 */
#include "crypto/rsa8.h"
#include "crypto/rsa8_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

#include "crypto/rsa8_check.h"

#ifdef DKP_TEST_HOOKS
int dkp_rsa8_fault_lane;

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void env_init(void)
{
	const char *v = getenv("DKP_RSA8_FAULT_LANE");

	if (v != NULL && atoi(v) >= 1 && atoi(v) <= 8)
		dkp_rsa8_fault_lane = atoi(v);
}
#endif

/* A context for EVP_PKEY_sign or _verify with pk, PKCS#1 v1.5, SHA-256. */
static EVP_PKEY_CTX *sig_ctx(EVP_PKEY *pk, int sign)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);

	if (ctx == NULL || (sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* EVP_PKEY_verify: for the fallback's result and for a request whose
 * EVP_PKEY is not its key's (both rare: a fresh context each time). */
static int evp_check(EVP_PKEY *pk, const unsigned char *sig, const unsigned char *digest)
{
	EVP_PKEY_CTX *ctx = sig_ctx(pk, 0);
	int ok = ctx != NULL && EVP_PKEY_verify(ctx, sig, 256, digest, 32) == 1;

	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* The check of one computed lane. */
static int check(const struct dkp_rsa8_req *q, BN_CTX *bc)
{
	if (q->pk != dkp_rsa8_key_pkey(q->key))
		return evp_check(q->pk, q->sig, q->digest);
	return bc != NULL && dkp_rsa8_check_sig(dkp_rsa8_key_check(q->key), q->sig, q->digest, bc);
}

int dkp_rsa8_verify(const struct dkp_rsa8_key *k, const unsigned char *digest,
		    const unsigned char *sig)
{
	BN_CTX *bc = BN_CTX_new();
	int ok = bc != NULL && dkp_rsa8_check_sig(dkp_rsa8_key_check(k), sig, digest, bc);

	BN_CTX_free(bc);
	return ok;
}

/* The OpenSSL fallback for one request: 1 when signed and verified. */
static int fallback(struct dkp_rsa8_req *q)
{
	EVP_PKEY_CTX *ctx = sig_ctx(q->pk, 1);
	size_t len = 256;
	int ok;

	ok = ctx != NULL && EVP_PKEY_sign(ctx, q->sig, &len, q->digest, 32) == 1 &&
	     len == 256 && evp_check(q->pk, q->sig, q->digest);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static size_t sign_group(struct dkp_rsa8_req *r, size_t n, struct dkp_rsa8_counts *c,
			 int fault)
{
	const struct dkp_rsa8_key *k[8] = { NULL };
	const unsigned char *in[8] = { NULL };
	unsigned char *out[8] = { NULL };
	unsigned char em[8][256];
	BN_CTX *bc = NULL;
	size_t i, ok = 0, used = 0;

	for (i = 0; i < n; i++) {
		r[i].status = -1;
		if (r[i].key == NULL || r[i].pk == NULL || r[i].digest == NULL ||
		    r[i].sig == NULL || !dkp_rsa8_cpu_ok())
			continue;
		dkp_rsa8_emsa_encode(em[i], r[i].digest);
		k[i] = r[i].key;
		in[i] = em[i];
		out[i] = r[i].sig;
		used++;
	}
	if (used != 0) {
		dkp_rsa8_private_fault(k, in, out, fault);
		bc = BN_CTX_new();	/* NULL: every lane fails its check */
	}
	for (i = 0; i < n; i++) {
		if (k[i] == NULL) {
			c->errors++;
			continue;
		}
		if (check(&r[i], bc)) {
			r[i].status = 0;
		} else {
			c->mismatches++;
			if (fallback(&r[i])) {
				r[i].status = 1;
			} else {
				c->errors++;
				OPENSSL_cleanse(r[i].sig, 256);
			}
		}
		ok += r[i].status >= 0;
	}
	BN_CTX_free(bc);	/* wipes the residues mod p and q */
	c->lanes += used;
	c->groups += used != 0;
	return ok;
}

size_t dkp_rsa8_sign(struct dkp_rsa8_req *r, size_t n, struct dkp_rsa8_counts *c)
{
	struct dkp_rsa8_counts dummy = { 0, 0, 0, 0 };
	size_t i, ok = 0;
	int fault = 0;	/* no fault hook outside a test build */

#ifdef DKP_TEST_HOOKS
	pthread_once(&env_once, env_init);
	fault = dkp_rsa8_fault_lane;
#endif
	if (c == NULL)
		c = &dummy;
	for (i = 0; i < n; i += 8)
		ok += sign_group(r + i, n - i < 8 ? n - i : 8, c, fault);
	return ok;
}
