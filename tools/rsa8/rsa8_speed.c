/*
 * rsa8_speed.c — RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on
 * this machine, in one run: OpenSSL (EVP_PKEY_sign) against the 8-lane
 * AVX-512 IFMA code (dkp_rsa8_sign, which includes the check of every
 * signature by OpenSSL's BN code), one thread and RSA8_SPEED_THREADS
 * (default 2) threads; plus the raw 8-lane operation alone, the check
 * alone (dkp_rsa8_verify) and, for comparison, EVP_PKEY_verify with a
 * reused context (the check until 2026-12), so the cost of each part
 * shows.
 *
 * Each measurement runs RSA8_SPEED_SECONDS (default 3) and is repeated
 * RSA8_SPEED_ROUNDS times (default 2), interleaved; the best round counts
 * (the machine is shared: the best is the least disturbed).
 */
#include <pthread.h>
#include <string.h>

#include "rsa8_common.h"

#define NK 8

static EVP_PKEY *pks[NK];
static struct dkp_rsa8_key *rks[NK];
static double secs = 3;

enum mode { M_OPENSSL, M_RSA8, M_RAW, M_CHECK, M_VERIFY };

struct job {
	enum mode m;
	double rate;
};

static void *bench(void *arg)
{
	struct job *j = arg;
	uint64_t seed = 88172645463325252u + (uint64_t)(uintptr_t)arg;
	unsigned char dg[64][32], sig[64][256];
	struct dkp_rsa8_req r[64];
	EVP_PKEY_CTX *ctx[NK];
	double t0, t;
	uint64_t n = 0;
	int i;

	for (i = 0; i < 64; i++) {
		xs_fill(&seed, dg[i], 32);
		r[i].key = rks[i % NK];
		r[i].pk = pks[i % NK];
		r[i].digest = dg[i];
		r[i].sig = sig[i];
	}
	for (i = 0; i < NK; i++) {
		size_t len = 256;

		ctx[i] = rc_signer(pks[i]);
		EVP_PKEY_sign(ctx[i], sig[i], &len, dg[i], 32);
		if (j->m == M_VERIFY) {
			EVP_PKEY_CTX_free(ctx[i]);
			ctx[i] = rc_verifier(pks[i]);
		}
	}
	t0 = now_s();
	do {
		switch (j->m) {
		case M_OPENSSL:
			for (i = 0; i < NK; i++) {
				size_t len = 256;

				if (EVP_PKEY_sign(ctx[i], sig[i], &len, dg[i], 32) != 1)
					abort();
			}
			n += NK;
			break;
		case M_RSA8:
			if (dkp_rsa8_sign(r, 64, NULL) != 64)
				abort();
			n += 64;
			break;
		case M_RAW: {
			const struct dkp_rsa8_key *k[8];
			const unsigned char *in[8];
			unsigned char *out[8];

			for (i = 0; i < 8; i++) {
				k[i] = rks[i];
				in[i] = sig[i + 8];	/* any value: < n for these */
				out[i] = sig[i + 16];
				sig[i + 8][0] = 0;
			}
			dkp_rsa8_private(k, in, out);
			n += 8;
			break;
		}
		case M_CHECK:
			for (i = 0; i < NK; i++)
				if (dkp_rsa8_verify(rks[i], dg[i], sig[i]) != 1)
					abort();
			n += NK;
			break;
		case M_VERIFY:
			for (i = 0; i < NK; i++)
				if (EVP_PKEY_verify(ctx[i], sig[i], 256, dg[i], 32) != 1)
					abort();
			n += NK;
			break;
		}
		t = now_s() - t0;
	} while (t < secs);
	for (i = 0; i < NK; i++)
		EVP_PKEY_CTX_free(ctx[i]);
	j->rate = (double)n / t;
	return NULL;
}

static double run(enum mode m, int threads)
{
	pthread_t th[16];
	struct job j[16];
	double sum = 0;
	int i;

	for (i = 0; i < threads; i++) {
		j[i].m = m;
		pthread_create(&th[i], NULL, bench, &j[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		sum += j[i].rate;
	}
	return sum;
}

static double best(double a, double b)
{
	return a > b ? a : b;
}

int main(void)
{
	const char *v;
	int rounds = 2, thr = 2, i;
	double os1 = 0, r81 = 0, raw = 0, chk = 0, ver = 0, os2 = 0, r82 = 0;

	if ((v = getenv("RSA8_SPEED_SECONDS")) != NULL && atof(v) > 0)
		secs = atof(v);
	if ((v = getenv("RSA8_SPEED_ROUNDS")) != NULL && atoi(v) > 0)
		rounds = atoi(v);
	if ((v = getenv("RSA8_SPEED_THREADS")) != NULL && atoi(v) > 0 && atoi(v) <= 16)
		thr = atoi(v);
	if (!dkp_rsa8_cpu_ok()) {
		printf("rsa8_speed: skipped: this CPU lacks AVX-512 IFMA\n");
		return 77;
	}
	if (rc_keys(NK, pks, rks) != 0)
		return 2;
	for (i = 0; i < rounds; i++) {
		os1 = best(os1, run(M_OPENSSL, 1));
		r81 = best(r81, run(M_RSA8, 1));
		raw = best(raw, run(M_RAW, 1));
		chk = best(chk, run(M_CHECK, 1));
		ver = best(ver, run(M_VERIFY, 1));
		os2 = best(os2, run(M_OPENSSL, thr));
		r82 = best(r82, run(M_RSA8, thr));
	}
	printf("rsa8_speed: RSA-2048 sign, %s, best of %d x %.0f s\n", OpenSSL_version(OPENSSL_VERSION),
	       rounds, secs);
	printf("  1 thread : OpenSSL EVP_PKEY_sign %8.0f sig/s\n", os1);
	printf("  1 thread : dkp_rsa8_sign         %8.0f sig/s  = %.2fx OpenSSL (checked)\n", r81,
	       r81 / os1);
	printf("  1 thread : dkp_rsa8_private raw  %8.0f op/s   = %.2fx (%.1f us/op)\n", raw,
	       raw / os1, 1e6 / raw);
	printf("  1 thread : the check alone       %8.0f check/s  (%.1f us per signature, %.0f%% "
	       "of a checked signature)\n", chk, 1e6 / chk, 100.0 * r81 / chk);
	printf("  1 thread : EVP_PKEY_verify       %8.0f verify/s (%.1f us; the check until "
	       "2026-12)\n", ver, 1e6 / ver);
	printf("  %d threads: OpenSSL EVP_PKEY_sign %8.0f sig/s\n", thr, os2);
	printf("  %d threads: dkp_rsa8_sign         %8.0f sig/s  = %.2fx OpenSSL\n", thr, r82,
	       r82 / os2);
	for (i = 0; i < NK; i++) {
		dkp_rsa8_key_free(rks[i]);
		EVP_PKEY_free(pks[i]);
	}
	return 0;
}
