/*
 * rsa8_sign.c — PKCS#1 v1.5 SHA-256 signatures in groups of 8 on the
 * 8-lane kernel (rsa8.c), each one checked with the public key through
 * OpenSSL before it is returned; a lane that fails the check is recomputed
 * with EVP_PKEY_sign and counted (the caller logs).
 *
 * The check uses per-thread cached EVP_PKEY_CTXs (EVP_PKEY_verify, PKCS#1
 * padding, SHA-256), keyed by the EVP_PKEY pointer. A cached context holds
 * a reference to its key, so the pointer cannot be reused by another key
 * while it is cached; the price is that up to VC_SLOTS retired keys per
 * thread stay alive until evicted or the thread exits.
 */
#include "crypto/rsa8.h"
#include "crypto/rsa8_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

#include "base/mem.h"

int dkp_rsa8_fault_lane;

#define VC_SLOTS 32

struct vcache {
	EVP_PKEY *pk[VC_SLOTS];
	EVP_PKEY_CTX *ctx[VC_SLOTS];
	unsigned next;
};

static pthread_key_t vc_key;
static pthread_once_t vc_once = PTHREAD_ONCE_INIT;

static void vcache_free(void *p)
{
	struct vcache *vc = p;
	unsigned i;

	for (i = 0; i < VC_SLOTS; i++)
		EVP_PKEY_CTX_free(vc->ctx[i]);
	dkp_free(vc);
}

static void vc_init(void)
{
	const char *v = getenv("DKP_RSA8_FAULT_LANE");

	if (pthread_key_create(&vc_key, vcache_free) != 0)
		abort();	/* cannot happen short of PTHREAD_KEYS_MAX */
	if (v != NULL && atoi(v) >= 1 && atoi(v) <= 8)
		dkp_rsa8_fault_lane = atoi(v);
}

/* A context for EVP_PKEY_verify with pk, PKCS#1 v1.5 and SHA-256. */
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

/* This thread's cached verify context for pk (NULL on error). */
static EVP_PKEY_CTX *verify_ctx(EVP_PKEY *pk)
{
	struct vcache *vc = pthread_getspecific(vc_key);
	EVP_PKEY_CTX *ctx;
	unsigned i;

	if (vc == NULL) {
		vc = dkp_calloc(1, sizeof(*vc));
		if (pthread_setspecific(vc_key, vc) != 0) {
			dkp_free(vc);
			return NULL;
		}
	}
	for (i = 0; i < VC_SLOTS; i++)
		if (vc->pk[i] == pk && vc->ctx[i] != NULL)
			return vc->ctx[i];
	ctx = sig_ctx(pk, 0);
	if (ctx == NULL)
		return NULL;
	i = vc->next++ % VC_SLOTS;
	EVP_PKEY_CTX_free(vc->ctx[i]);
	vc->ctx[i] = ctx;
	vc->pk[i] = pk;
	return ctx;
}

static int check(EVP_PKEY *pk, const unsigned char *sig, const unsigned char *digest)
{
	EVP_PKEY_CTX *ctx = verify_ctx(pk);

	return ctx != NULL && EVP_PKEY_verify(ctx, sig, 256, digest, 32) == 1;
}

/* RFC 8017 9.2 EMSA-PKCS1-v1_5 with SHA-256, 256 bytes. */
static void emsa_encode(unsigned char em[256], const unsigned char *digest)
{
	static const unsigned char di[19] = {
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

/* The OpenSSL fallback for one request: 1 when signed and verified. */
static int fallback(struct dkp_rsa8_req *q)
{
	EVP_PKEY_CTX *ctx = sig_ctx(q->pk, 1);
	size_t len = 256;
	int ok;

	ok = ctx != NULL && EVP_PKEY_sign(ctx, q->sig, &len, q->digest, 32) == 1 &&
	     len == 256 && check(q->pk, q->sig, q->digest);
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
	size_t i, ok = 0, used = 0;

	for (i = 0; i < n; i++) {
		r[i].status = -1;
		if (r[i].key == NULL || r[i].pk == NULL || r[i].digest == NULL ||
		    r[i].sig == NULL || !dkp_rsa8_cpu_ok())
			continue;
		emsa_encode(em[i], r[i].digest);
		k[i] = r[i].key;
		in[i] = em[i];
		out[i] = r[i].sig;
		used++;
	}
	if (used != 0)
		dkp_rsa8_private_fault(k, in, out, fault);
	for (i = 0; i < n; i++) {
		if (k[i] == NULL) {
			c->errors++;
			continue;
		}
		if (check(r[i].pk, r[i].sig, r[i].digest)) {
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
	c->lanes += used;
	c->groups += used != 0;
	return ok;
}

size_t dkp_rsa8_sign(struct dkp_rsa8_req *r, size_t n, struct dkp_rsa8_counts *c)
{
	struct dkp_rsa8_counts dummy = { 0, 0, 0, 0 };
	size_t i, ok = 0;
	int fault;

	pthread_once(&vc_once, vc_init);
	fault = dkp_rsa8_fault_lane;
	if (c == NULL)
		c = &dummy;
	for (i = 0; i < n; i += 8)
		ok += sign_group(r + i, n - i < 8 ? n - i : 8, c, fault);
	return ok;
}
