/*
 * rsa_long.c — the long correctness run of the 8-lane RSA (make
 * test-rsa-long): RSA_LONG_PAIRS (key, digest) pairs (default 10,000,000)
 * on RSA_LONG_THREADS threads (default 2), keys mixed across lanes at
 * random among RSA_LONG_KEYS keys (default 32: 16 generated, each also
 * with p and q exchanged).
 *
 * Every signature is checked by dkp_rsa8_sign itself (rsa8_check.c:
 * OpenSSL's BN code, modulo p and q) and then once more here with the
 * public key through EVP_PKEY_verify, so the run does not rest on the
 * check it also exercises; a PKCS#1 v1.5 signature that verifies is the
 * unique one, so it equals OpenSSL's byte for byte. Any lane that failed
 * either (status != 0, counts.mismatches, a verify failure) fails this
 * run. Besides, one pair in RSA_LONG_COMPARE_EVERY (default 256) is signed
 * again with EVP_PKEY_sign and compared byte for byte.
 *
 * Progress every 10 s; last line "rsa-long: ... PASS|FAIL".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "rsa8_common.h"

#define BATCH 64

static EVP_PKEY **pks;
static struct dkp_rsa8_key **rks;
static int nkeys;
static uint64_t total, compare_every;
static _Atomic uint64_t next_batch, done, compared, cmp_bad, status_bad, lanes, mism, errs,
	verify_bad;

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v != NULL && strtoull(v, NULL, 10) > 0 ? strtoull(v, NULL, 10) : def;
}

static void *worker(void *arg)
{
	uint64_t seed = 0x243f6a8885a308d3u ^ ((uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15u);
	static _Thread_local unsigned char dg[BATCH][32], sig[BATCH][256];
	unsigned char ref[256];
	struct dkp_rsa8_req r[BATCH];
	int kidx[BATCH];
	EVP_PKEY_CTX **signer = calloc((size_t)nkeys, sizeof(*signer));
	EVP_PKEY_CTX **verifier = calloc((size_t)nkeys, sizeof(*verifier));
	int i;

	for (i = 0; i < nkeys; i++) {
		signer[i] = rc_signer(pks[i]);
		verifier[i] = rc_verifier(pks[i]);
	}
	for (;;) {
		uint64_t b = atomic_fetch_add(&next_batch, 1), start = b * BATCH, n;
		struct dkp_rsa8_counts c = { 0, 0, 0, 0 };

		if (start >= total)
			break;
		n = total - start < BATCH ? total - start : BATCH;
		for (i = 0; i < (int)n; i++) {
			kidx[i] = (int)(xs_next(&seed) % (uint64_t)nkeys);
			xs_fill(&seed, dg[i], 32);
			r[i].key = rks[kidx[i]];
			r[i].pk = pks[kidx[i]];
			r[i].digest = dg[i];
			r[i].sig = sig[i];
		}
		dkp_rsa8_sign(r, (size_t)n, &c);
		for (i = 0; i < (int)n; i++) {
			if (r[i].status != 0)
				atomic_fetch_add(&status_bad, 1);
			if (EVP_PKEY_verify(verifier[kidx[i]], sig[i], 256, dg[i], 32) != 1)
				atomic_fetch_add(&verify_bad, 1);
			if ((start + (uint64_t)i) % compare_every == 0) {
				size_t len = 256;

				if (EVP_PKEY_sign(signer[kidx[i]], ref, &len, dg[i], 32) != 1 ||
				    len != 256 || memcmp(ref, sig[i], 256) != 0)
					atomic_fetch_add(&cmp_bad, 1);
				atomic_fetch_add(&compared, 1);
			}
		}
		atomic_fetch_add(&lanes, c.lanes);
		atomic_fetch_add(&mism, c.mismatches);
		atomic_fetch_add(&errs, c.errors);
		atomic_fetch_add(&done, n);
	}
	for (i = 0; i < nkeys; i++) {
		EVP_PKEY_CTX_free(signer[i]);
		EVP_PKEY_CTX_free(verifier[i]);
	}
	free(signer);
	free(verifier);
	return NULL;
}

int main(void)
{
	int nthr = (int)env_u64("RSA_LONG_THREADS", 2), i, ok;
	pthread_t *th;
	double t0, last;

	total = env_u64("RSA_LONG_PAIRS", 10000000);
	compare_every = env_u64("RSA_LONG_COMPARE_EVERY", 256);
	nkeys = (int)env_u64("RSA_LONG_KEYS", 32) & ~1;
	if (nkeys < 2)
		nkeys = 2;
	if (!dkp_rsa8_cpu_ok()) {
		printf("rsa-long: skipped: this CPU lacks AVX-512 IFMA\n");
		return 77;
	}
	pks = calloc((size_t)nkeys, sizeof(*pks));
	rks = calloc((size_t)nkeys, sizeof(*rks));
	t0 = now_s();
	if (rc_keys(nkeys, pks, rks) != 0)
		return 2;
	printf("rsa-long: %d keys (%d generated, each also with p and q swapped) in %.1f s; "
	       "%llu pairs on %d threads, every one checked by dkp_rsa8_sign and verified "
	       "again by EVP_PKEY_verify, 1 in %llu compared with EVP_PKEY_sign\n", nkeys,
	       nkeys / 2, now_s() - t0, (unsigned long long)total, nthr,
	       (unsigned long long)compare_every);
	fflush(stdout);
	th = calloc((size_t)nthr, sizeof(*th));
	t0 = last = now_s();
	for (i = 0; i < nthr; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	while (atomic_load(&done) < total) {
		struct timespec ts = { 0, 200000000 };

		nanosleep(&ts, NULL);
		if (now_s() - last >= 10) {
			uint64_t d = atomic_load(&done);
			double el = now_s() - t0;

			last = now_s();
			printf("rsa-long: %llu/%llu (%.1f%%) %.0f sig/s, %.0f s elapsed, ~%.0f s left; "
			       "mismatches %llu, compare failures %llu\n", (unsigned long long)d,
			       (unsigned long long)total, 100.0 * (double)d / (double)total,
			       (double)d / el, el, d ? el * (double)(total - d) / (double)d : 0,
			       (unsigned long long)atomic_load(&mism),
			       (unsigned long long)atomic_load(&cmp_bad));
			fflush(stdout);
		}
	}
	for (i = 0; i < nthr; i++)
		pthread_join(th[i], NULL);
	ok = atomic_load(&status_bad) == 0 && atomic_load(&cmp_bad) == 0 &&
	     atomic_load(&verify_bad) == 0 &&
	     atomic_load(&mism) == 0 && atomic_load(&errs) == 0 && atomic_load(&done) == total;
	printf("rsa-long: %llu pairs over %d keys in %.0f s (%.0f sig/s on %d threads): "
	       "%llu lanes checked, %llu mismatches, %llu errors, %llu failed "
	       "EVP_PKEY_verify, %llu compared byte for byte with EVP_PKEY_sign, %llu "
	       "differed: %s\n",
	       (unsigned long long)atomic_load(&done), nkeys, now_s() - t0,
	       (double)atomic_load(&done) / (now_s() - t0), nthr,
	       (unsigned long long)atomic_load(&lanes), (unsigned long long)atomic_load(&mism),
	       (unsigned long long)atomic_load(&errs), (unsigned long long)atomic_load(&verify_bad),
	       (unsigned long long)atomic_load(&compared),
	       (unsigned long long)atomic_load(&cmp_bad), ok ? "PASS" : "FAIL");
	for (i = 0; i < nkeys; i++) {
		dkp_rsa8_key_free(rks[i]);
		EVP_PKEY_free(pks[i]);
	}
	free(pks);
	free(rks);
	free(th);
	return ok ? 0 : 1;
}
