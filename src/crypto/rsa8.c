/*
 * rsa8.c — the 8-lane RSA-2048 CRT private-key operation (AVX-512 IFMA)
 * and the conversion of an EVP_PKEY into lane-ready material.
 *
 * Arithmetic. A 1024-bit half lives in 20 limbs of 52 bits, limb-major:
 * v8 a[20], a[j] = limb j of all 8 lanes, each lane one key and message.
 * R = 2^1040. amm() is the almost-Montgomery product a*b/R mod m, result in
 * [0, 2m) for inputs below 2^k*m (small k; R/m >= 2^16), word by word with
 * vpmadd52luq/vpmadd52huq: per row the 21 accumulators take a_i*b and
 * u*m, u = acc0 * (-m^-1) mod 2^52. The 12 spare bits of every 64-bit
 * accumulator absorb the sums (< 2^59), so carries are propagated once per
 * row (acc0 -> acc1) and once at the end. ams() squares: the off-diagonal
 * column sums once, doubled, plus the diagonal (~210 instead of 400
 * products), then the same row-wise reduction.
 *
 * Exponentiation. Input c (2048 bits, 40 limbs) = cH*R + cL is brought to
 * Montgomery form without a division: cL*R^2/R + cH*R^3/R = c*R (mod m),
 * R^2 mod m per key, R^3 = amm(R^2, R^2). A 16-entry table (x^0..x^15, per
 * lane) and 4-bit fixed windows over the 1024 exponent bits: 1020
 * squarings and 255 products per half. Every table look-up reads all 16
 * entries with plain loads and keeps one with a per-lane and-mask
 * (vpternlogq). amm(y, 1) leaves the Montgomery domain with y <= m; one
 * masked subtraction gives [0, m).
 *
 * The two halves run together, one operation of p, then the same one of q
 * (modexp_both): each operation ends in a serial carry chain, and the
 * other half's next operation, which does not depend on it, fills that
 * time. Both tables are read every window, so they must share the L1:
 * 2 x 20 KB with 4-bit windows fit in 48 KB, 2 x 40 KB with 5-bit ones do
 * not. Measured on Zen 5 (2026-12): 3-5% faster than p then q with 5-bit
 * windows (which cost the same as 4-bit ones one half at a time), 10%
 * slower interleaved with 5-bit windows; docs/performance.md.
 *
 * Recombination (Garner), in the same vector code: h = (m1 - m2)*qinv mod p
 * as amm(m1 + 2p - m2, qinv*R mod p) and a masked subtraction; then
 * m = m2 + h*q as a 20x20-limb product. No branch or index depends on a
 * secret anywhere below; loop counts and shifts depend on positions only.
 * tests/ct checks this with valgrind on the emulated build; scalar masks
 * go through ct_barrier() so that no compiler turns them into branches.
 *
 * Code generation. The loops are fully unrolled (RSA8_UNROLL) so that the
 * accumulators live in zmm registers; OPAQUE() stops the compiler from
 * keeping all of b and m in registers across rows. amm() has no spills;
 * ams() has one schedule per compiler (see there). Per 8 operations the
 * kernel issues ~3.4M vpmadd52 (1020 squarings of 1240, 274 products of
 * 1620, per half); on the quiet reference VM (Zen 5, 3.5 GHz, 2026-12) it
 * runs ~14,000 operations/s, 6.0G vpmadd52/s, ~87% of the 6.9G/s (two per
 * cycle) a register-only loop reaches there: bound by IFMA throughput, not
 * latency (cutting the row-to-row dependency u(i) -> u(i+1) from ~17 to
 * ~11 cycles with extra adds was measured 5% slower, interleaving squaring
 * columns with reduction rows 30% slower; Karatsuba squares, 1150 instead
 * of 1240, were slower under gcc; docs/performance.md).
 *
 * Secrets at rest (keymem.h). Keys live on pages of their own
 * (dkp_keymem_alloc: out of core dumps, locked where allowed), and so does
 * each thread's scratch (the tables, the halves, 2p, the gathered key
 * limbs), wiped after every call. The kernel's own stack (values the
 * compiler spills) is wiped after every call too: wipe_stack() clears
 * KERNEL_STACK bytes below the caller's frame, more than the kernel's
 * deepest use (measured; test_rsa8 checks that nothing but the wipe's
 * zeros is left below the call).
 */
#include "crypto/rsa8.h"
#include "crypto/rsa8_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>

#include "base/mem.h"
#include "crypto/keymem.h"
#ifndef DKP_RSA8_EMULATE
#include "crypto/rsa8_check.h"
#endif
#include "crypto/rsa8_vec.h"

#ifndef DKP_RSA8_EMULATE
#include <cpuid.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#endif

#define NL 20		/* 52-bit limbs of a 1024-bit half */
#define NX 40		/* 52-bit limbs of a 2048-bit value */
#define NEW 16		/* 64-bit words of a CRT exponent */
#ifndef RSA8_WBITS
#define RSA8_WBITS 4	/* fixed window width (bits); see the top */
#endif
#define TABN (1 << RSA8_WBITS)	/* table entries per lane */
#define NWIN ((1024 + RSA8_WBITS - 1) / RSA8_WBITS)	/* windows over the exponent */
#define M52 RSA8_M52

struct dkp_rsa8_key {
	struct {	/* secret: p, q, CRT exponents and what derives from them */
		uint64_t p[NL], q[NL];		/* 52-bit limbs, least significant first */
		uint64_t qinv[NL];		/* q^-1 mod p */
		uint64_t r2p[NL], r2q[NL];	/* R^2 mod p, R^2 mod q */
		uint64_t dp[NEW], dq[NEW];	/* 64-bit words */
		uint64_t k0p, k0q;		/* -p^-1, -q^-1 mod 2^52 */
	} s;
	unsigned char n[256];	/* public */
	/* The check of every signature (rsa8_check.c; not in the emulated
	 * build of tests/ct, which has no signatures), and the EVP_PKEY the
	 * key was made from: its address only, to recognize it in requests
	 * (no reference is held). */
	struct dkp_rsa8_check *chk;
	const EVP_PKEY *pk;
};

#ifdef DKP_RSA8_CT_CANARY
/* tests/ct: one deliberate secret-dependent branch, to prove the check
 * sees one. Never built into the library. */
volatile int dkp_rsa8_ct_canary_sink;
#endif

/* ---- CPU check --------------------------------------------------------- */

#ifdef DKP_RSA8_EMULATE
int dkp_rsa8_cpu_ok(void)
{
	return 1;
}
#else
static int cpu_ok_cached;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static void cpu_probe(void)
{
	unsigned a, b, c, d, lo, hi;

#ifdef RUNNING_ON_VALGRIND
	/* valgrind (3.19) reports AVX-512 in CPUID but cannot execute it:
	 * SIGILL. Under valgrind the callers take their OpenSSL path. */
	if (RUNNING_ON_VALGRIND)
		return;
#endif
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))	/* OSXSAVE */
		return;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	(void)hi;
	/* XMM, YMM, opmask, ZMM0-15 upper halves, ZMM16-31 enabled by the OS */
	if ((lo & 0xe6) != 0xe6)
		return;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return;
	/* AVX512F 16, DQ 17, IFMA 21, BW 30, VL 31 */
	if ((b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 21)) &&
	    (b & (1u << 30)) && (b & (1u << 31)))
		cpu_ok_cached = 1;
}

int dkp_rsa8_cpu_ok(void)
{
	pthread_once(&cpu_once, cpu_probe);
	return cpu_ok_cached;
}
#endif

/* ---- scalar helpers (key set-up, byte conversion; constant time) -------- */

/* Big-endian bytes -> little-endian 52-bit limbs (positions only). */
static void be_to_limbs(uint64_t *l, size_t nl, const unsigned char *be, size_t len)
{
	size_t k;

	memset(l, 0, nl * sizeof(*l));
	for (k = 0; k < len; k++) {
		uint64_t b = be[len - 1 - k];
		size_t bit = 8 * k, li = bit / 52, off = bit % 52;

		l[li] |= (b << off) & M52;
		if (off > 44)
			l[li + 1] |= b >> (52 - off);
	}
}

/* Little-endian 52-bit limbs -> big-endian bytes. */
static void limbs_to_be(unsigned char *be, size_t len, const uint64_t *l, size_t nl)
{
	size_t k;

	for (k = 0; k < len; k++) {
		size_t bit = 8 * k, li = bit / 52, off = bit % 52;
		uint64_t v = l[li] >> off;

		if (off > 44 && li + 1 < nl)
			v |= l[li + 1] << (52 - off);
		be[len - 1 - k] = (unsigned char)v;
	}
}

/* -m^-1 mod 2^52 for odd m0 (Newton: each step doubles the good bits). */
static uint64_t mont_k0(uint64_t m0)
{
	uint64_t x = m0;	/* m0*m0 = 1 mod 8: 3 good bits */
	int i;

	for (i = 0; i < 5; i++)
		x *= 2 - m0 * x;
	return (UINT64_C(0) - x) & M52;
}

/* R^2 = 2^2080 mod m by 2080 doublings, each with a masked subtraction. */
static void mont_r2(uint64_t *r, const uint64_t *m)
{
	uint64_t t[NL];
	int i, j;

	memset(r, 0, NL * sizeof(*r));
	r[0] = 1;
	for (i = 0; i < 2 * 52 * NL; i++) {
		uint64_t c = 0, keep;
		int64_t br = 0;

		for (j = 0; j < NL; j++) {	/* r = 2r */
			uint64_t v = (r[j] << 1) + c;

			c = v >> 52;
			r[j] = v & M52;
		}
		for (j = 0; j < NL; j++) {	/* t = r - m */
			int64_t v = (int64_t)r[j] - (int64_t)m[j] + br;

			t[j] = (uint64_t)v & M52;
			br = v >> 52;	/* 0 or -1 (gcc, clang: arithmetic) */
		}
		/* 2r < 2^1025 leaves no carry: keep r when r < m (borrow out) */
		keep = ct_barrier((uint64_t)br);
		for (j = 0; j < NL; j++)
			r[j] = (r[j] & keep) | (t[j] & ~keep);
	}
	OPENSSL_cleanse(t, sizeof(t));
}

/* ---- key conversion ----------------------------------------------------- */

static int get_bn(const EVP_PKEY *pk, const char *name, BIGNUM **bn)
{
	return EVP_PKEY_get_bn_param(pk, name, bn) == 1 && *bn != NULL;
}

/* An RSA key's parameters as OpenSSL holds them (the secret ones
 * constant-time flagged, freed with BN_clear_free). */
struct crt {
	BIGNUM *n, *e, *p, *q, *dp, *dq, *qi;
};

static void crt_free(struct crt *c)
{
	BN_free(c->n);
	BN_free(c->e);
	BN_clear_free(c->p);
	BN_clear_free(c->q);
	BN_clear_free(c->dp);
	BN_clear_free(c->dq);
	BN_clear_free(c->qi);
}

/* pk's parameters into c, or why the 8-lane path cannot take the key. */
static const char *crt_get(const EVP_PKEY *pk, struct crt *c)
{
	BIGNUM *f3 = NULL;

	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
		return "not an RSA key";
	if (!get_bn(pk, OSSL_PKEY_PARAM_RSA_N, &c->n) || !get_bn(pk, OSSL_PKEY_PARAM_RSA_E, &c->e))
		return "no modulus or public exponent";
	if (BN_num_bits(c->n) != 2048)
		return "modulus is not 2048 bits";
	if (!BN_is_word(c->e, 65537))
		return "public exponent is not 65537";
	if (!get_bn(pk, OSSL_PKEY_PARAM_RSA_FACTOR1, &c->p) ||
	    !get_bn(pk, OSSL_PKEY_PARAM_RSA_FACTOR2, &c->q) ||
	    !get_bn(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1, &c->dp) ||
	    !get_bn(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2, &c->dq) ||
	    !get_bn(pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &c->qi))
		return "no CRT parameters (p, q, dp, dq, qinv)";
	if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR3, &f3) == 1) {
		BN_clear_free(f3);
		return "multi-prime key";
	}
	BN_set_flags(c->p, BN_FLG_CONSTTIME);
	BN_set_flags(c->q, BN_FLG_CONSTTIME);
	BN_set_flags(c->dp, BN_FLG_CONSTTIME);
	BN_set_flags(c->dq, BN_FLG_CONSTTIME);
	BN_set_flags(c->qi, BN_FLG_CONSTTIME);
	/* The sizes of the primes are not secret: every 2048-bit key made by a
	 * sane generator has two 1024-bit ones. */
	if (BN_num_bits(c->p) != 1024 || BN_num_bits(c->q) != 1024 || !BN_is_odd(c->p) ||
	    !BN_is_odd(c->q) || BN_num_bytes(c->dp) > 128 || BN_num_bytes(c->dq) > 128 ||
	    BN_num_bytes(c->qi) > 128)
		return "primes are not 1024 bits each";
	return NULL;
}

/* The kernel's form of c into k: 52-bit limbs, Montgomery constants.
 * 0, or -1 when OpenSSL cannot export a value. */
static int crt_to_limbs(const struct crt *c, struct dkp_rsa8_key *k)
{
	unsigned char buf[256];
	int rc = -1;

	if (BN_bn2binpad(c->n, k->n, 256) != 256 || BN_bn2binpad(c->p, buf, 128) != 128)
		goto out;
	be_to_limbs(k->s.p, NL, buf, 128);
	if (BN_bn2binpad(c->q, buf, 128) != 128)
		goto out;
	be_to_limbs(k->s.q, NL, buf, 128);
	if (BN_bn2binpad(c->qi, buf, 128) != 128)
		goto out;
	be_to_limbs(k->s.qinv, NL, buf, 128);
	if (BN_bn2lebinpad(c->dp, (unsigned char *)k->s.dp, 128) != 128 ||
	    BN_bn2lebinpad(c->dq, (unsigned char *)k->s.dq, 128) != 128)
		goto out;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rsa8: little-endian hosts only (x86-64)"
#endif
	k->s.k0p = mont_k0(k->s.p[0]);
	k->s.k0q = mont_k0(k->s.q[0]);
	mont_r2(k->s.r2p, k->s.p);
	mont_r2(k->s.r2q, k->s.q);
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

struct dkp_rsa8_key *dkp_rsa8_key_new(const EVP_PKEY *pk, const char **why)
{
	struct crt c = { NULL, NULL, NULL, NULL, NULL, NULL, NULL };
	struct dkp_rsa8_key *k = NULL;
	const char *w = crt_get(pk, &c);

	if (w != NULL)
		goto out;
	k = dkp_keymem_alloc(sizeof(*k));	/* zeroed */
	if (crt_to_limbs(&c, k) < 0) {
		w = "cannot export key parameters";
		goto fail;
	}
#ifndef DKP_RSA8_EMULATE
	/* from OpenSSL's own n, p, q: independent of the limbs above */
	k->chk = dkp_rsa8_check_new(c.n, c.p, c.q, &w);
	if (k->chk == NULL)
		goto fail;
#endif
	k->pk = pk;
	goto out;
fail:
	dkp_rsa8_key_free(k);
	k = NULL;
out:
	crt_free(&c);
	if (why != NULL)
		*why = w;
	return k;
}

void dkp_rsa8_key_free(struct dkp_rsa8_key *k)
{
	if (k == NULL)
		return;
#ifndef DKP_RSA8_EMULATE
	dkp_rsa8_check_free(k->chk);
#endif
	dkp_keymem_free(k, sizeof(*k));	/* wipes */
}

const struct dkp_rsa8_check *dkp_rsa8_key_check(const struct dkp_rsa8_key *k)
{
	return k->chk;
}

const EVP_PKEY *dkp_rsa8_key_pkey(const struct dkp_rsa8_key *k)
{
	return k->pk;
}

void *dkp_rsa8_key_secret(struct dkp_rsa8_key *k, size_t *len)
{
	*len = sizeof(k->s);
	return &k->s;
}

#ifdef DKP_RSA8_EMULATE
/* tests/ct: redo the derivations of dkp_rsa8_key_new from p and q (k0,
 * R^2) so that they run on secrets marked undefined. */
void dkp_rsa8_ct_derive(struct dkp_rsa8_key *k);
void dkp_rsa8_ct_derive(struct dkp_rsa8_key *k)
{
	k->s.k0p = mont_k0(k->s.p[0]);
	k->s.k0q = mont_k0(k->s.q[0]);
	mont_r2(k->s.r2p, k->s.p);
	mont_r2(k->s.r2q, k->s.q);
}
#endif

/* ---- the vector kernel ------------------------------------------------- */

/* The pointer's value becomes unknown to the optimizer (no code). */
#define OPAQUE(p) __asm__("" : "+r"(p))

/* r = a + b with limbs possibly above 2^52 (or, signed, below 0) carried
 * into normalized 52-bit limbs; the value must fit in nl limbs. */
RSA8_INLINE void norm(v8 *r, const v8 *a, int nl)
{
	v8 c = v_zero(), m = v_set1(M52);
	int j;

	RSA8_UNROLL(40)
	for (j = 0; j < nl; j++) {
		v8 v = v_add(a[j], c);

		c = v_srai52(v);
		r[j] = v_and(v, m);
	}
}

/* r = a*b/R mod m in [0, 2m) (almost Montgomery); r may alias a or b.
 * Row i adds a_i*b and u_i*m into t[i..i+20] (lo to t[i+j], hi to
 * t[i+j+1]); u_i = t[i]*k0 mod 2^52 clears t[i]'s low 52 bits, whose
 * carry moves on to t[i+1]. After unrolling only t[i..i+20] is live. */
static RSA8_TARGET void amm(v8 *r, const v8 *a, const v8 *b, const v8 *m, v8 k0)
{
	v8 t[NX], z = v_zero();
	int i, j;

	RSA8_UNROLL(40)
	for (j = 0; j < NX; j++)
		t[j] = z;
	RSA8_UNROLL(20)
	for (i = 0; i < NL; i++) {
		v8 ai = a[i], u;

		/* Hide b and m from load CSE across rows: reloading them (as
		 * memory operands) is cheaper than the 40 registers the
		 * compiler would otherwise keep them in, spilling t. */
		OPAQUE(b);
		OPAQUE(m);
		t[i] = v_madd52lo(t[i], ai, b[0]);
		u = v_madd52lo(z, t[i], k0);
		t[i + 1] = v_madd52hi(t[i + 1], ai, b[0]);
		RSA8_UNROLL(19)
		for (j = 1; j < NL; j++) {
			t[i + j] = v_madd52lo(t[i + j], ai, b[j]);
			t[i + j + 1] = v_madd52hi(t[i + j + 1], ai, b[j]);
		}
		RSA8_UNROLL(20)
		for (j = 0; j < NL; j++) {
			t[i + j] = v_madd52lo(t[i + j], u, m[j]);
			t[i + j + 1] = v_madd52hi(t[i + j + 1], u, m[j]);
		}
		t[i + 1] = v_add(t[i + 1], v_srli52(t[i]));
	}
	norm(r, t + NL, NL);
}

/* Column c of a*a: 2 * (off-diagonal lo of column c + hi of column c-1)
 * plus the diagonal terms; two chains for latency. */
RSA8_INLINE v8 sqr_col(const v8 *a, int c)
{
	v8 z = v_zero(), s0 = z, s1 = z, s;
	int i, lo0 = c - (NL - 1) > 0 ? c - (NL - 1) : 0, hi0 = c - NL > 0 ? c - NL : 0;

	/* constant trip counts (public conditions inside) so that both
	 * compilers unroll everything once c is a constant */
	RSA8_UNROLL(20)
	for (i = 0; i < NL; i++) {
		if (i >= lo0 && i < c - i)	/* pairs i < j, i + j = c */
			s0 = v_madd52lo(s0, a[i], a[c - i]);
		if (i >= hi0 && i < c - 1 - i)	/* pairs i < j, i + j = c - 1 */
			s1 = v_madd52hi(s1, a[i], a[c - 1 - i]);
	}
	s = v_add(s0, s1);
	s = v_add(s, s);
	if (c % 2 == 0 && c / 2 < NL)
		s = v_madd52lo(s, a[c / 2], a[c / 2]);
	if (c % 2 == 1 && (c - 1) / 2 < NL)
		s = v_madd52hi(s, a[(c - 1) / 2], a[(c - 1) / 2]);
	return s;
}

/* Reduction row i: t[i..i+21) += u*m (lo to t[i+j], hi to t[i+j+1]), then
 * t[i]'s carry (its low 52 bits are now 0) into t[i+1]. */
RSA8_INLINE void red_row(v8 *t, int i, v8 u, const v8 *m)
{
	int j;

	RSA8_UNROLL(20)
	for (j = 0; j < NL; j++) {
		t[i + j] = v_madd52lo(t[i + j], u, m[j]);
		t[i + j + 1] = v_madd52hi(t[i + j + 1], u, m[j]);
	}
	t[i + 1] = v_add(t[i + 1], v_srli52(t[i]));
}

/* r = a*a/R mod m in [0, 2m); r may alias a. Two schedules of the same
 * sums, one per compiler (each measured ~12% and ~2x slower respectively
 * with the other's; the register allocators differ):
 *   GCC    all 40 product columns, then the 20 reduction rows;
 *   clang  columns 0..19 (row i needs column i complete), the rows, then
 *          columns 20..39 straight into the final carry chain. */
#ifndef __clang__
/* t[0..40) (a full product, limbs < 2^60) -> r = t/R mod m in [0, 2m),
 * row by row: u = t[i] * k0 mod 2^52 makes t[i] + u*m divisible by 2^52. */
RSA8_INLINE void mont_reduce(v8 *r, v8 *t, const v8 *m, v8 k0)
{
	v8 z = v_zero();
	int i;

	RSA8_UNROLL(20)
	for (i = 0; i < NL; i++) {
		v8 u = v_madd52lo(z, t[i], k0);

		OPAQUE(m);
		red_row(t, i, u, m);
	}
	norm(r, t + NL, NL);
}

static RSA8_TARGET void ams(v8 *r, const v8 *a, const v8 *m, v8 k0)
{
	v8 t[NX];
	int c;

	RSA8_UNROLL(40)
	for (c = 0; c < NX; c++)
		t[c] = sqr_col(a, c);
	mont_reduce(r, t, m, k0);
}
#else
static RSA8_TARGET void ams(v8 *r, const v8 *a, const v8 *m, v8 k0)
{
	v8 t[NX], z = v_zero(), mk = v_set1(M52), c = z;
	int i;

	RSA8_UNROLL(20)
	for (i = 0; i < NL; i++)
		t[i] = sqr_col(a, i);
	RSA8_UNROLL(20)
	for (i = NL; i < NX; i++)
		t[i] = z;
	RSA8_UNROLL(20)
	for (i = 0; i < NL; i++) {
		v8 u = v_madd52lo(z, t[i], k0);

		OPAQUE(m);
		red_row(t, i, u, m);
	}
	/* r may alias a: column i reads a[i-20..19], r[0..i-21] is written */
	RSA8_UNROLL(20)
	for (i = NL; i < NX; i++) {
		v8 v = v_add(v_add(t[i], sqr_col(a, i)), c);

		c = v_srli52(v);
		r[i - NL] = v_and(v, mk);
	}
}
#endif

/* r[0..40) = a*b + add, a, b, add of 20 limbs (the Garner step). */
static RSA8_TARGET void mul_add(v8 *r, const v8 *a, const v8 *b, const v8 *add)
{
	v8 t[NX];
	int i, j;

	for (j = 0; j < NX; j++)
		t[j] = j < NL ? add[j] : v_zero();
	for (i = 0; i < NL; i++) {
		for (j = 0; j < NL; j++) {
			t[i + j] = v_madd52lo(t[i + j], a[i], b[j]);
			t[i + j + 1] = v_madd52hi(t[i + j + 1], a[i], b[j]);
		}
	}
	norm(r, t, NX);
}

/* r = a - m if a >= m, else a (a, m normalized); masked, no branch. */
static RSA8_TARGET void cond_sub(v8 *r, const v8 *a, const v8 *m)
{
	v8 d[NL], mk = v_set1(M52), br = v_zero();
	m8 neg;
	int j;

	for (j = 0; j < NL; j++) {
		v8 v = v_add(v_sub(a[j], m[j]), br);

		br = v_srai52(v);
		d[j] = v_and(v, mk);
	}
	neg = v_isneg(br);	/* a < m */
	for (j = 0; j < NL; j++)
		r[j] = v_blend(neg, d[j], a[j]);
}

/* r = tab[idx] per lane: every entry read (plain loads), one kept by an
 * and-mask of all-ones lanes; r is written once, at the end. */
static RSA8_TARGET void tab_select(v8 *r, v8 (*tab)[NL], v8 idx)
{
	v8 acc[NL];
	int k, j;

#ifdef DKP_RSA8_CT_CANARY
	if (v_lane0(idx) & 1)
		dkp_rsa8_ct_canary_sink++;
#endif
	RSA8_UNROLL(20)
	for (j = 0; j < NL; j++)
		acc[j] = v_zero();
	for (k = 0; k < TABN; k++) {
		v8 hit = v_eqv(idx, v_set1((uint64_t)k));

		RSA8_UNROLL(20)
		for (j = 0; j < NL; j++)
			acc[j] = v_or_and(acc[j], tab[k][j], hit);
	}
	RSA8_UNROLL(20)
	for (j = 0; j < NL; j++)
		r[j] = acc[j];
}

/* Window w of the per-lane exponents ex[16] (bit position public). */
static RSA8_TARGET v8 window(const v8 *ex, int w)
{
	unsigned pos = RSA8_WBITS * (unsigned)w, wi = pos / 64, off = pos % 64;
	v8 v = v_srl(ex[wi], off);

	if (off > 64 - RSA8_WBITS && wi + 1 < NEW)
		v = v_or(v, v_sll(ex[wi + 1], 64 - off));
	return v_and(v, v_set1(TABN - 1));
}

struct half {
	v8 m[NL], r2[NL], ex[NEW];
	v8 k0;
};

struct scratch {
	v8 tab[2][TABN][NL];		/* per half: p, q */
	v8 acc[2][NL], ent[2][NL];	/* per half: the power, the entry */
	v8 x[NX];			/* the input, 40 limbs */
	v8 y[NL], t[NL], u[NL];
	v8 m1[NL], m2[NL], qinv[NL];
	v8 out[NX];
	v8 twop[NL];			/* 2p, for the recombination */
	struct half hp, hq;
	uint64_t lanes[NX][8];		/* transposition buffer */
	uint64_t limbs[NX];
};

/* Half q's (0: p, 1: q) table, x^0..x^(TABN-1) in Montgomery form, x =
 * s->x (40 limbs), and its first window's entry in s->acc[q]. */
static RSA8_TARGET void modexp_init(struct scratch *s, const struct half *h, int q)
{
	v8 one[NL], (*tab)[NL] = s->tab[q];
	int j, k;

	for (j = 0; j < NL; j++)
		one[j] = v_zero();
	one[0] = v_set1(1);
	/* Montgomery form of x: xL*R^2/R + xH*R^3/R = x*R, < 4m */
	amm(s->t, h->r2, h->r2, h->m, h->k0);		/* R^3 mod m */
	amm(s->u, s->x + NL, s->t, h->m, h->k0);	/* xH*R^2 */
	amm(s->y, s->x, h->r2, h->m, h->k0);		/* xL*R */
	for (j = 0; j < NL; j++)
		s->t[j] = v_add(s->y[j], s->u[j]);
	norm(tab[1], s->t, NL);
	amm(tab[0], h->r2, one, h->m, h->k0);	/* 1*R */
	for (k = 2; k < TABN; k++)
		amm(tab[k], tab[k - 1], tab[1], h->m, h->k0);
	tab_select(s->acc[q], tab, window(h->ex, NWIN - 1));
}

/* s->m1 = x^dp mod p and s->m2 = x^dq mod q, in [0, p) and [0, q); the
 * halves alternate operation by operation (see the top). */
static RSA8_TARGET void modexp_both(struct scratch *s)
{
	const struct half *h[2] = { &s->hp, &s->hq };
	v8 one[NL], *res[2] = { s->m1, s->m2 };
	int j, k, w, q;

	for (j = 0; j < NL; j++)
		one[j] = v_zero();
	one[0] = v_set1(1);
	modexp_init(s, h[0], 0);
	modexp_init(s, h[1], 1);
	for (w = NWIN - 2; w >= 0; w--) {
		for (k = 0; k < RSA8_WBITS; k++) {
			ams(s->acc[0], s->acc[0], h[0]->m, h[0]->k0);
			ams(s->acc[1], s->acc[1], h[1]->m, h[1]->k0);
		}
		tab_select(s->ent[0], s->tab[0], window(h[0]->ex, w));
		tab_select(s->ent[1], s->tab[1], window(h[1]->ex, w));
		amm(s->acc[0], s->acc[0], s->ent[0], h[0]->m, h[0]->k0);
		amm(s->acc[1], s->acc[1], s->ent[1], h[1]->m, h[1]->k0);
	}
	for (q = 0; q < 2; q++) {
		amm(s->acc[q], s->acc[q], one, h[q]->m, h[q]->k0);	/* leave Montgomery: <= m */
		cond_sub(res[q], s->acc[q], h[q]->m);
	}
}

/* Gather one 20-limb field of the 8 keys into limb-major vectors. */
static RSA8_TARGET void gather(struct scratch *s, v8 *dst, const struct dkp_rsa8_key *const *k,
			       size_t off, int n)
{
	int lane, j;

	for (lane = 0; lane < 8; lane++) {
		const uint64_t *src = (const uint64_t *)((const char *)k[lane] + off);

		for (j = 0; j < n; j++)
			s->lanes[j][lane] = src[j];
	}
	for (j = 0; j < n; j++)
		dst[j] = v_loadu(s->lanes[j]);
}

static RSA8_TARGET void half_load(struct scratch *s, struct half *h,
				  const struct dkp_rsa8_key *const *k, int which_q)
{
	uint64_t k0[8];
	int lane;

	gather(s, h->m, k, which_q ? offsetof(struct dkp_rsa8_key, s.q)
				   : offsetof(struct dkp_rsa8_key, s.p), NL);
	gather(s, h->r2, k, which_q ? offsetof(struct dkp_rsa8_key, s.r2q)
				    : offsetof(struct dkp_rsa8_key, s.r2p), NL);
	gather(s, h->ex, k, which_q ? offsetof(struct dkp_rsa8_key, s.dq)
				    : offsetof(struct dkp_rsa8_key, s.dp), NEW);
	for (lane = 0; lane < 8; lane++)
		k0[lane] = which_q ? k[lane]->s.k0q : k[lane]->s.k0p;
	h->k0 = v_loadu(k0);
	OPENSSL_cleanse(k0, sizeof(k0));
}

static RSA8_TARGET void private8(struct scratch *s, const struct dkp_rsa8_key *const kk[8],
				 const unsigned char *const in[8], unsigned char *const out[8],
				 int fault)
{
	int lane, j;

	for (lane = 0; lane < 8; lane++) {
		static const unsigned char zero[256];

		be_to_limbs(s->limbs, NX, in[lane] != NULL ? in[lane] : zero, 256);
		for (j = 0; j < NX; j++)
			s->lanes[j][lane] = s->limbs[j];
	}
	for (j = 0; j < NX; j++)
		s->x[j] = v_loadu(s->lanes[j]);

	half_load(s, &s->hp, kk, 0);
	half_load(s, &s->hq, kk, 1);
	modexp_both(s);
	if (fault >= 1 && fault <= 8) {	/* the test hook (public) */
		uint64_t bit[8] = { 0 };

		bit[fault - 1] = 1;
		s->m1[0] = v_xor(s->m1[0], v_loadu(bit));
	}

	/* h = (m1 - m2) * qinv mod p: m1 + 2p - m2 > 0 since m2 < q < 2p */
	gather(s, s->qinv, kk, offsetof(struct dkp_rsa8_key, s.qinv), NL);
	amm(s->qinv, s->qinv, s->hp.r2, s->hp.m, s->hp.k0);	/* qinv*R mod p */
	for (j = 0; j < NL; j++) {
		s->twop[j] = v_add(s->hp.m[j], s->hp.m[j]);
		s->t[j] = v_sub(v_add(s->m1[j], s->twop[j]), s->m2[j]);
	}
	norm(s->t, s->t, NL);
	amm(s->y, s->t, s->qinv, s->hp.m, s->hp.k0);	/* < 2p */
	cond_sub(s->y, s->y, s->hp.m);
	mul_add(s->out, s->y, s->hq.m, s->m2);		/* m2 + h*q < n */

	for (j = 0; j < NX; j++)
		v_storeu(s->lanes[j], s->out[j]);
	for (lane = 0; lane < 8; lane++) {
		if (out[lane] == NULL)
			continue;
		for (j = 0; j < NX; j++)
			s->limbs[j] = s->lanes[j][lane];
		limbs_to_be(out[lane], 256, s->limbs, NX);
	}
}

/* Each thread's scratch: on key pages (keymem.h), made on first use,
 * wiped after every call, unmapped when the thread ends. Page-aligned,
 * so the vectors in it are aligned. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_drop(void *p)
{
	dkp_keymem_free(p, sizeof(struct scratch));
}

static void scratch_key_init(void)
{
	if (pthread_key_create(&scratch_key, scratch_drop) != 0)
		abort();
}

static struct scratch *scratch_get(void)
{
	struct scratch *s;

	pthread_once(&scratch_once, scratch_key_init);
	s = pthread_getspecific(scratch_key);
	if (s == NULL) {
		s = dkp_keymem_alloc(sizeof(*s));
		if (pthread_setspecific(scratch_key, s) != 0)
			abort();
	}
	return s;
}

/* What the kernel spilled on the stack (accumulators, limbs of p and q,
 * products): called right after private8 from the same frame, so its
 * array covers the stack the kernel used, up to KERNEL_STACK bytes. The
 * kernel's deepest use is 3.5 KiB with gcc 12 at -O2 (measured with
 * -DRSA8_NO_STACK_WIPE: 3,504 bytes written, 2,810 of them left behind);
 * test_rsa8 paints the stack and checks that nothing the kernel wrote
 * survives. Clearing 16 KiB costs well under a microsecond against
 * about a millisecond for a group. */
#define KERNEL_STACK 16384
static __attribute__((noinline, unused)) void wipe_stack(void)
{
	unsigned char buf[KERNEL_STACK];

	explicit_bzero(buf, sizeof(buf));
	__asm__ __volatile__("" : : "r"(buf) : "memory");
}

void dkp_rsa8_private_fault(const struct dkp_rsa8_key *const k[8],
			    const unsigned char *const in[8], unsigned char *const out[8],
			    int fault_lane)
{
	const struct dkp_rsa8_key *kk[8];
	const unsigned char *ii[8];
	unsigned char *oo[8];
	const struct dkp_rsa8_key *first = NULL;
	struct scratch *s;
	int lane;

	for (lane = 0; lane < 8; lane++)
		if (k[lane] != NULL && first == NULL)
			first = k[lane];
	if (first == NULL)
		return;
	/* empty lanes compute on the first key with input 0; output dropped */
	for (lane = 0; lane < 8; lane++) {
		kk[lane] = k[lane] != NULL ? k[lane] : first;
		ii[lane] = k[lane] != NULL ? in[lane] : NULL;
		oo[lane] = k[lane] != NULL ? out[lane] : NULL;
	}
	s = scratch_get();
	private8(s, kk, ii, oo, fault_lane);
	OPENSSL_cleanse(s, sizeof(*s));
#ifndef RSA8_NO_STACK_WIPE	/* only to measure what the wipe costs */
	wipe_stack();
#endif
}

void dkp_rsa8_private(const struct dkp_rsa8_key *const k[8],
		      const unsigned char *const in[8], unsigned char *const out[8])
{
	dkp_rsa8_private_fault(k, in, out, 0);
}
