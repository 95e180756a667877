/*
 * compute_cpu_attend.c — the CPU backend's attention kernel: causal queries
 * of one head over K/V rows, out = softmax(scale * q.K^T) V.
 *
 * Why this shape: the models the daemon runs have tiny heads (stories260K:
 * head size 8), so the old one-key-at-a-time kernel (a dot of 8, a scalar
 * expf, an axpy of 8 per key) spent its time in horizontal sums, libm and
 * loop overhead. Here:
 *   - the K and V rows of the head are packed once per call, transposed in
 *     blocks of W keys (W = 16 for AVX-512, 8 for AVX2): KT[b][i][0..W) =
 *     K[b*W + k][i]; every query of the call then reuses them (a prefill's T
 *     queries share one packing: the flash-attention reuse);
 *   - the scores of W keys are hs fused multiply-adds of a broadcast q[i]
 *     times the packed vector KT[b][i] (no transpose, no horizontal sum);
 *   - softmax in two passes over the blocks: the scores into a row with a
 *     lane-wise running max (one horizontal max per query, where an online
 *     softmax takes one per block and rescales: measured slower at the
 *     daemon's 80-130 keys, 159 vs 133 ns per query), then p = exp(s - max)
 *     with a polynomial exp (expv_*: range reduction by ln 2, Cephes'
 *     minimax polynomial, max relative error 2 ulp, tested by
 *     tests/compute/test_compute_attend.c);
 *   - the V sum is vectorised over keys: acc[i] (a vector of W lanes per
 *     element i of the head) += p * VT[b][i]; lanes are summed once per
 *     query, eight elements at a time in one hadd tree.
 * The scalar kernel (BG_CPU_KERNEL=scalar) is the two-pass reference: dots,
 * max-shifted expf softmax, one axpy per key.
 *
 * Invariants: a query's result depends only on its own q, its keys 0..n-1
 * and the kernel, never on which other queries share the call or the
 * thread: the inference op and the training forward (compute_cpu.c,
 * compute_cpu_train.c) batch queries differently and still agree bit for
 * bit, as compute.h promises. lse is m + log(l) of the scaled scores, the
 * normaliser the training backward recomputes P from.
 * Threads: pure functions of their arguments and caller scratch; any thread.
 * Ownership: every pointer is borrowed for the call.
 */
#include <math.h>
#include <string.h>

#include "compute/compute_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define BG_X86 1
#endif

#define WMAX 16    /* the widest key block (AVX-512) */
#define HS_MAX 256 /* SIMD kernels' largest head (accumulators on the stack) */

long bg__cpu_attend_scratch(int npos, int hs)
{
    long blocks = ((long)npos + WMAX - 1) / WMAX;
    /* packed K and V, a score row, the scaled query (the scalar kernel:
     * npos scores) */
    return 2 * blocks * WMAX * hs + blocks * WMAX + hs;
}

/* KT[b][i][0..w) = K[b*w + k][i] for keys < n, zero past n (and the same for
 * V), so the kernels never branch on a partial block's loads. */
static void pack_kv(float *kt, float *vt, const float *kc, const float *vc, long stride, int n,
                    int hs, int w)
{
    int nb = (n + w - 1) / w;
    for (int b = 0; b < nb; b++) {
        float *kb = kt + (long)b * hs * w, *vb = vt + (long)b * hs * w;
        for (int k = 0; k < w; k++) {
            int p = b * w + k;
            if (p < n) {
                const float *kr = kc + (long)p * stride, *vr = vc + (long)p * stride;
                for (int i = 0; i < hs; i++) {
                    kb[i * w + k] = kr[i];
                    vb[i * w + k] = vr[i];
                }
            } else {
                for (int i = 0; i < hs; i++)
                    kb[i * w + k] = vb[i * w + k] = 0.0f;
            }
        }
    }
}

/* ---- the scalar reference kernel ------------------------------------------ */

static void attend_one_c(float *out, const float *q, const float *kc, const float *vc, long stride,
                         int n, int hs, float scale, float *sc, float *lse)
{
    for (int p = 0; p < n; p++) {
        const float *k = kc + (long)p * stride;
        float s = 0.0f;
        for (int i = 0; i < hs; i++)
            s += q[i] * k[i];
        sc[p] = s * scale;
    }
    float l = bg__cpu_softmax_lse(sc, n);
    if (lse)
        *lse = l;
    memset(out, 0, sizeof(float) * (size_t)hs);
    for (int p = 0; p < n; p++) {
        const float *v = vc + (long)p * stride;
        for (int i = 0; i < hs; i++)
            out[i] += sc[p] * v[i];
    }
}

#ifdef BG_X86
/* ---- AVX2: blocks of 8 keys ------------------------------------------------ */

#define BG_TAVX2 __attribute__((target("avx2,fma")))
#define BG_T512 __attribute__((target("avx512f,avx512dq,avx2,fma")))

/* exp(x) for x <= 88.37 (softmax feeds x <= 0): n = round(x / ln 2),
 * r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in two for exactness),
 * e^r = 1 + r + r^2 P(r) with Cephes' degree-5 minimax P (expf.c), times
 * 2^n through the exponent bits. x < -87.3 (and -inf: masked keys) gives 0. */
BG_TAVX2 static inline __m256 expv_avx2(__m256 x)
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

BG_TAVX2 static inline float hmax256(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

BG_TAVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* out[0..8) = the lane sums of y[0..8), in one hadd tree (17 shuffles and
 * adds where eight separate horizontal sums take about 70). */
BG_TAVX2 static inline __m256 hsum8x(const __m256 *y)
{
    __m256 ab = _mm256_hadd_ps(_mm256_hadd_ps(y[0], y[1]), _mm256_hadd_ps(y[2], y[3]));
    __m256 cd = _mm256_hadd_ps(_mm256_hadd_ps(y[4], y[5]), _mm256_hadd_ps(y[6], y[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(ab, cd, 0x20),
                         _mm256_permute2f128_ps(ab, cd, 0x31));
}

/* out[i] = inv * (lane sum of acc[i]) for i < hs */
BG_TAVX2 static inline void store_sums_avx2(float *out, const __m256 *acc, int hs, float inv)
{
    int i = 0;
    for (; i + 8 <= hs; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(hsum8x(acc + i), _mm256_set1_ps(inv)));
    for (; i < hs; i++)
        out[i] = hsum256(acc[i]) * inv;
}

/* One query over n packed keys (blocks of 8), two passes: the scores of
 * every block into sc with their running lane max (no horizontal max per
 * block), then p = exp(s - max), its sum and the V lanes. acc: hs vectors
 * (the caller's stack; registers when hs is the constant 8). */
BG_TAVX2 static inline __attribute__((always_inline)) void
query_avx2(float *out, const float *qs, const float *kt, const float *vt, int n, int hs,
           __m256 *acc, float *sc, float *lse)
{
    int nb = (n + 7) / 8;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int b = 0; b < nb; b++) {
        const float *kb = kt + (long)b * hs * 8;
        __m256 s = _mm256_setzero_ps();
        for (int i = 0; i < hs; i++)
            s = _mm256_fmadd_ps(_mm256_set1_ps(qs[i]), _mm256_loadu_ps(kb + i * 8), s);
        if (n - b * 8 < 8) {
            const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
            __m256 in = _mm256_cmp_ps(lane, _mm256_set1_ps((float)(n - b * 8)), _CMP_LT_OQ);
            s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, in);
        }
        _mm256_storeu_ps(sc + b * 8, s);
        mv = _mm256_max_ps(mv, s);
    }
    float m = hmax256(mv);
    __m256 mb = _mm256_set1_ps(m), lv = _mm256_setzero_ps();
    for (int i = 0; i < hs; i++)
        acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const float *vb = vt + (long)b * hs * 8;
        __m256 p = expv_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + b * 8), mb));
        lv = _mm256_add_ps(lv, p);
        for (int i = 0; i < hs; i++)
            acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vb + i * 8), acc[i]);
    }
    float l = hsum256(lv);
    store_sums_avx2(out, acc, hs, 1.0f / l);
    if (lse)
        *lse = m + logf(l);
}

BG_TAVX2 static void queries_avx2(const bg__attend_args *a, const float *kt, const float *vt,
                                  float *qs, float *sc)
{
    __m256 acc[HS_MAX];
    for (int j = 0; j < a->nq; j++) {
        const float *q = a->q + (long)j * a->qstride;
        for (int i = 0; i < a->hs; i++)
            qs[i] = q[i] * a->scale;
        float *o = a->out + (long)j * a->ostride, *l = a->lse ? a->lse + (long)j * a->lstride : 0;
        int n = a->n0 + j;
        if (a->hs == 8) {
            __m256 acc8[8]; /* its own array, so it stays in registers */
            query_avx2(o, qs, kt, vt, n, 8, acc8, sc, l);
        } else
            query_avx2(o, qs, kt, vt, n, a->hs, acc, sc, l);
    }
}

/* ---- AVX-512: blocks of 16 keys -------------------------------------------- */

BG_T512 static inline __m512 expv_avx512(__m512 x)
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

/* query_avx2's two passes in blocks of 16 keys. */
BG_T512 static inline __attribute__((always_inline)) void
query_avx512(float *out, const float *qs, const float *kt, const float *vt, int n, int hs,
             __m512 *acc, float *sc, float *lse)
{
    int nb = (n + 15) / 16;
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int b = 0; b < nb; b++) {
        const float *kb = kt + (long)b * hs * 16;
        __m512 s = _mm512_setzero_ps();
        for (int i = 0; i < hs; i++)
            s = _mm512_fmadd_ps(_mm512_set1_ps(qs[i]), _mm512_loadu_ps(kb + i * 16), s);
        int left = n - b * 16;
        if (left < 16)
            s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << left) - 1), s);
        _mm512_storeu_ps(sc + b * 16, s);
        mv = _mm512_max_ps(mv, s);
    }
    float m = _mm512_reduce_max_ps(mv);
    __m512 mb = _mm512_set1_ps(m), lv = _mm512_setzero_ps();
    for (int i = 0; i < hs; i++)
        acc[i] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const float *vb = vt + (long)b * hs * 16;
        __m512 p = expv_avx512(_mm512_sub_ps(_mm512_loadu_ps(sc + b * 16), mb));
        lv = _mm512_add_ps(lv, p);
        for (int i = 0; i < hs; i++)
            acc[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vb + i * 16), acc[i]);
    }
    float l = _mm512_reduce_add_ps(lv), inv = 1.0f / l;
    int i = 0;
    for (; i + 8 <= hs; i += 8) {
        __m256 y[8];
        for (int k = 0; k < 8; k++)
            y[k] = _mm256_add_ps(
                _mm512_castps512_ps256(acc[i + k]),
                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i + k]), 1)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(hsum8x(y), _mm256_set1_ps(inv)));
    }
    for (; i < hs; i++)
        out[i] = _mm512_reduce_add_ps(acc[i]) * inv;
    if (lse)
        *lse = m + logf(l);
}

BG_T512 static void queries_avx512(const bg__attend_args *a, const float *kt, const float *vt,
                                   float *qs, float *sc)
{
    __m512 acc[HS_MAX];
    for (int j = 0; j < a->nq; j++) {
        const float *q = a->q + (long)j * a->qstride;
        for (int i = 0; i < a->hs; i++)
            qs[i] = q[i] * a->scale;
        float *o = a->out + (long)j * a->ostride, *l = a->lse ? a->lse + (long)j * a->lstride : 0;
        int n = a->n0 + j;
        if (a->hs == 8) {
            __m512 acc8[8]; /* its own array, so it stays in registers */
            query_avx512(o, qs, kt, vt, n, 8, acc8, sc, l);
        } else
            query_avx512(o, qs, kt, vt, n, a->hs, acc, sc, l);
    }
}

BG_TAVX2 static void expv_run_avx2(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, expv_avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = expf(x[i]);
}

BG_T512 static void expv_run_avx512(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, expv_avx512(_mm512_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = expf(x[i]);
}
#endif

void bg__cpu_expv(float *y, const float *x, int n)
{
#ifdef BG_X86
    int k = bg__cpu_kernel();
    if (k == BG__KERN_AVX512) {
        expv_run_avx512(y, x, n);
        return;
    }
    if (k == BG__KERN_AVX2) {
        expv_run_avx2(y, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        y[i] = expf(x[i]);
}

void bg__cpu_attend_causal(const bg__attend_args *a, float *scratch)
{
    int nmax = a->n0 + a->nq - 1, hs = a->hs;
#ifdef BG_X86
    int k = bg__cpu_kernel();
    if ((k == BG__KERN_AVX512 || k == BG__KERN_AVX2) && hs <= HS_MAX) {
        int w = k == BG__KERN_AVX512 ? 16 : 8;
        long packed = ((long)nmax + w - 1) / w * w * hs;
        float *kt = scratch, *vt = kt + packed, *sc = vt + packed, *qs = sc + packed / hs;
        pack_kv(kt, vt, a->kc, a->vc, a->kvstride, nmax, hs, w);
        if (w == 16)
            queries_avx512(a, kt, vt, qs, sc);
        else
            queries_avx2(a, kt, vt, qs, sc);
        return;
    }
#endif
    for (int j = 0; j < a->nq; j++)
        attend_one_c(a->out + (long)j * a->ostride, a->q + (long)j * a->qstride, a->kc, a->vc,
                     a->kvstride, a->n0 + j, hs, a->scale, scratch,
                     a->lse ? a->lse + (long)j * a->lstride : NULL);
}

void bg__cpu_attend(float *out, const float *q, const float *kc, const float *vc, long stride,
                    int npos, int hs, float scale, float *sc, float *lse)
{
    bg__attend_args a = {.out = out,
                         .q = q,
                         .kc = kc,
                         .vc = vc,
                         .lse = lse,
                         .kvstride = stride,
                         .n0 = npos,
                         .nq = 1,
                         .hs = hs,
                         .scale = scale};
    bg__cpu_attend_causal(&a, sc);
}
