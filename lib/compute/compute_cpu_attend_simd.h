/*
 * compute_cpu_attend_simd.h — the vector pieces the CPU attention kernels
 * share (compute_cpu_attend.c: the forward; compute_cpu_attend_bwd.c: the
 * backward; compute_cpu_train.c's cross-entropy rows): the polynomial exp,
 * the lane sums and the lane max, for AVX2 (8 lanes) and AVX-512 (16 lanes).
 *
 * Why a header of static inline functions: the kernels need these inlined
 * into their target("avx2"/"avx512f") loops; a call across files would cost
 * more than the few instructions inside. Nothing here assumes the build
 * machine's ISA: each function carries its target attribute and runs only
 * when bg__cpu_kernel() picked that ISA.
 *
 * Invariants: bg__expv_* is exp(x) within 2 ulp for x <= 88.37 and exactly 0
 * for x < -87.34 (and -inf: masked keys), the property both kernels' masks
 * rely on; tests/compute/test_compute_attend.c measures the error.
 * Threads: pure functions; any thread.
 */
#ifndef BG_COMPUTE_CPU_ATTEND_SIMD_H
#define BG_COMPUTE_CPU_ATTEND_SIMD_H

#if defined(__x86_64__)
#include <immintrin.h>
#define BG_X86 1

#define BG_TAVX2 __attribute__((target("avx2,fma")))
#define BG_T512 __attribute__((target("avx512f,avx512dq,avx2,fma")))

/* exp(x) for x <= 88.37 (softmax feeds x <= 0): n = round(x / ln 2),
 * r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in two for exactness),
 * e^r = 1 + r + r^2 P(r) with Cephes' degree-5 minimax P (expf.c), times
 * 2^n through the exponent bits. x < -87.3 (and -inf: masked keys) gives 0. */
BG_TAVX2 static inline __m256 bg__expv_avx2(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
}

BG_TAVX2 static inline float bg__hmax256(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

BG_TAVX2 static inline float bg__hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* out[0..8) = the lane sums of y[0..8), in one hadd tree (17 shuffles and
 * adds where eight separate horizontal sums take about 70). */
BG_TAVX2 static inline __m256 bg__hsum8x(const __m256 *y)
{
    __m256 ab = _mm256_hadd_ps(_mm256_hadd_ps(y[0], y[1]), _mm256_hadd_ps(y[2], y[3]));
    __m256 cd = _mm256_hadd_ps(_mm256_hadd_ps(y[4], y[5]), _mm256_hadd_ps(y[6], y[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(ab, cd, 0x20),
                         _mm256_permute2f128_ps(ab, cd, 0x31));
}

/* out[i] = inv * (lane sum of acc[i]) for i < hs */
BG_TAVX2 static inline void bg__store_sums_avx2(float *out, const __m256 *acc, int hs, float inv)
{
    int i = 0;
    for (; i + 8 <= hs; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(bg__hsum8x(acc + i), _mm256_set1_ps(inv)));
    for (; i < hs; i++)
        out[i] = bg__hsum256(acc[i]) * inv;
}

BG_T512 static inline __m512 bg__expv_avx512(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    __mmask16 ok = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_max_ps(x, lo);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    p = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps(ok, p);
}

/* out[i] = inv * (lane sum of acc[i]) for i < hs: halves added, then eight
 * elements at a time through hsum8x. */
BG_T512 static inline void bg__store_sums_avx512(float *out, const __m512 *acc, int hs, float inv)
{
    int i = 0;
    for (; i + 8 <= hs; i += 8) {
        __m256 y[8];
        for (int k = 0; k < 8; k++)
            y[k] = _mm256_add_ps(
                _mm512_castps512_ps256(acc[i + k]),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i + k]), 1)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(bg__hsum8x(y), _mm256_set1_ps(inv)));
    }
    for (; i < hs; i++)
        out[i] = _mm512_reduce_add_ps(acc[i]) * inv;
}
#endif

#endif
