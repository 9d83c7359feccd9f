/*
 * rsa8_vec.h — the eight-lane 64-bit vector operations the RSA kernel
 * (rsa8.c) is written in. Two implementations of one small interface:
 *
 *   default            AVX-512F/VL/BW/DQ + IFMA intrinsics; every function
 *                      carries RSA8_TARGET (a per-function target
 *                      attribute), so only code reached after
 *                      dkp_rsa8_cpu_ok() executes AVX-512.
 *   DKP_RSA8_EMULATE   plain C over uint64_t[8] (the masks are vectors of
 *                      all-ones/all-zeros lanes). Used by tests/ct to run
 *                      the same kernel source under valgrind, which (3.19)
 *                      cannot execute AVX-512. Same control flow and memory
 *                      indexing as the intrinsic build; no branch on data.
 *
 * Internal to src/crypto/rsa8.c.
 */
#ifndef DKP_RSA8_VEC_H
#define DKP_RSA8_VEC_H

#include <stdint.h>

#define RSA8_M52 ((UINT64_C(1) << 52) - 1)

/* The optimizer must not know that a mask is 0 or all-ones: clang 14
 * turns "x | (y & mask)" into a branch or cmov on the mask when it does
 * (tests/ct caught it in the emulated build). An empty asm makes the
 * value opaque. For every scalar mask, in both builds. */
static inline uint64_t ct_barrier(uint64_t x)
{
	__asm__("" : "+r"(x));
	return x;
}

#ifdef DKP_RSA8_EMULATE

typedef struct {
	uint64_t l[8];
} v8;
typedef v8 m8;	/* lanes all-ones (true) or zero (false) */

#define RSA8_TARGET
#define RSA8_INLINE static inline
#define RSA8_UNROLL(n)

#define V8_MAP1(expr)                                        \
	v8 r;                                                \
	for (int i_ = 0; i_ < 8; i_++)                       \
		r.l[i_] = (expr);                            \
	return r

RSA8_INLINE v8 v_zero(void) { V8_MAP1(0); }
RSA8_INLINE v8 v_set1(uint64_t x) { V8_MAP1(x); }
RSA8_INLINE v8 v_loadu(const uint64_t *p) { V8_MAP1(p[i_]); }
RSA8_INLINE void v_storeu(uint64_t *p, v8 a)
{
	for (int i = 0; i < 8; i++)
		p[i] = a.l[i];
}
RSA8_INLINE v8 v_add(v8 a, v8 b) { V8_MAP1(a.l[i_] + b.l[i_]); }
RSA8_INLINE v8 v_sub(v8 a, v8 b) { V8_MAP1(a.l[i_] - b.l[i_]); }
RSA8_INLINE v8 v_and(v8 a, v8 b) { V8_MAP1(a.l[i_] & b.l[i_]); }
RSA8_INLINE v8 v_or(v8 a, v8 b) { V8_MAP1(a.l[i_] | b.l[i_]); }
RSA8_INLINE v8 v_xor(v8 a, v8 b) { V8_MAP1(a.l[i_] ^ b.l[i_]); }
RSA8_INLINE v8 v_srli52(v8 a) { V8_MAP1(a.l[i_] >> 52); }
/* arithmetic shift right by 52 (signed borrows) */
RSA8_INLINE v8 v_srai52(v8 a)
{
	V8_MAP1((a.l[i_] >> 52) | ((UINT64_C(0) - (a.l[i_] >> 63)) << 12));
}
RSA8_INLINE v8 v_srl(v8 a, unsigned n) { V8_MAP1(a.l[i_] >> n); }
RSA8_INLINE v8 v_sll(v8 a, unsigned n) { V8_MAP1(a.l[i_] << n); }
/* acc + low 52 bits of (a mod 2^52) * (b mod 2^52) */
RSA8_INLINE v8 v_madd52lo(v8 acc, v8 a, v8 b)
{
	V8_MAP1(acc.l[i_] + ((uint64_t)((unsigned __int128)(a.l[i_] & RSA8_M52) *
					 (b.l[i_] & RSA8_M52)) & RSA8_M52));
}
/* acc + bits 52..103 of (a mod 2^52) * (b mod 2^52) */
RSA8_INLINE v8 v_madd52hi(v8 acc, v8 a, v8 b)
{
	V8_MAP1(acc.l[i_] + (uint64_t)(((unsigned __int128)(a.l[i_] & RSA8_M52) *
					 (b.l[i_] & RSA8_M52)) >> 52));
}
/* lanes where a == b (branch-free: (d | -d) has its top bit set iff d != 0) */
RSA8_INLINE m8 v_eq(v8 a, v8 b)
{
	V8_MAP1(ct_barrier(((((a.l[i_] ^ b.l[i_]) |
			      (UINT64_C(0) - (a.l[i_] ^ b.l[i_]))) >> 63)) - 1));
}
RSA8_INLINE v8 v_eqv(v8 a, v8 b) { return v_eq(a, b); }
/* a | (b & c) */
RSA8_INLINE v8 v_or_and(v8 a, v8 b, v8 c) { V8_MAP1(a.l[i_] | (b.l[i_] & c.l[i_])); }
/* lanes where a, as a signed number, is negative */
RSA8_INLINE m8 v_isneg(v8 a) { V8_MAP1(ct_barrier(UINT64_C(0) - (a.l[i_] >> 63))); }
/* m ? b : a, lane by lane */
RSA8_INLINE v8 v_blend(m8 m, v8 a, v8 b)
{
	V8_MAP1((a.l[i_] & ~m.l[i_]) | (b.l[i_] & m.l[i_]));
}
RSA8_INLINE uint64_t v_lane0(v8 a) { return a.l[0]; }

#else /* AVX-512 */

#include <immintrin.h>

typedef __m512i v8;
typedef __mmask8 m8;

#define RSA8_TARGET __attribute__((target("avx512f,avx512ifma,avx512vl,avx512bw,avx512dq")))
#define RSA8_INLINE static inline __attribute__((always_inline)) RSA8_TARGET
#define RSA8_PRAGMA(x) _Pragma(#x)
#ifdef __clang__
/* full unrolling early enough for SROA to keep the accumulators in
 * registers (an unroll count is applied too late in clang's pipeline) */
#define RSA8_UNROLL(n) RSA8_PRAGMA(clang loop unroll(full))
#else
#define RSA8_UNROLL(n) RSA8_PRAGMA(GCC unroll n)
#endif

RSA8_INLINE v8 v_zero(void) { return _mm512_setzero_si512(); }
RSA8_INLINE v8 v_set1(uint64_t x) { return _mm512_set1_epi64((long long)x); }
RSA8_INLINE v8 v_loadu(const uint64_t *p) { return _mm512_loadu_si512((const void *)p); }
RSA8_INLINE void v_storeu(uint64_t *p, v8 a) { _mm512_storeu_si512((void *)p, a); }
RSA8_INLINE v8 v_add(v8 a, v8 b) { return _mm512_add_epi64(a, b); }
RSA8_INLINE v8 v_sub(v8 a, v8 b) { return _mm512_sub_epi64(a, b); }
RSA8_INLINE v8 v_and(v8 a, v8 b) { return _mm512_and_si512(a, b); }
RSA8_INLINE v8 v_or(v8 a, v8 b) { return _mm512_or_si512(a, b); }
RSA8_INLINE v8 v_xor(v8 a, v8 b) { return _mm512_xor_si512(a, b); }
RSA8_INLINE v8 v_srli52(v8 a) { return _mm512_srli_epi64(a, 52); }
RSA8_INLINE v8 v_srai52(v8 a) { return _mm512_srai_epi64(a, 52); }
RSA8_INLINE v8 v_srl(v8 a, unsigned n) { return _mm512_srl_epi64(a, _mm_cvtsi32_si128((int)n)); }
RSA8_INLINE v8 v_sll(v8 a, unsigned n) { return _mm512_sll_epi64(a, _mm_cvtsi32_si128((int)n)); }
RSA8_INLINE v8 v_madd52lo(v8 acc, v8 a, v8 b) { return _mm512_madd52lo_epu64(acc, a, b); }
RSA8_INLINE v8 v_madd52hi(v8 acc, v8 a, v8 b) { return _mm512_madd52hi_epu64(acc, a, b); }
RSA8_INLINE m8 v_eq(v8 a, v8 b) { return _mm512_cmpeq_epi64_mask(a, b); }
/* lanes where a == b, as a vector of all-ones/zero lanes */
RSA8_INLINE v8 v_eqv(v8 a, v8 b) { return _mm512_movm_epi64(_mm512_cmpeq_epi64_mask(a, b)); }
RSA8_INLINE m8 v_isneg(v8 a) { return _mm512_movepi64_mask(a); }
/* a | (b & c): one vpternlogq (truth table 0xf8) */
RSA8_INLINE v8 v_or_and(v8 a, v8 b, v8 c) { return _mm512_ternarylogic_epi64(a, b, c, 0xf8); }
RSA8_INLINE v8 v_blend(m8 m, v8 a, v8 b) { return _mm512_mask_blend_epi64(m, a, b); }
RSA8_INLINE uint64_t v_lane0(v8 a)
{
	return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(a));
}

#endif

#endif
