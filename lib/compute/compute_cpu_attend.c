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
 *     with a polynomial exp (bg__expv_* in compute_cpu_attend_simd.h, shared
 *     with the backward: range reduction by ln 2, Cephes' minimax
 *     polynomial, max relative error 2 ulp, tested by
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
#include "compute/compute_cpu_attend_simd.h"

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
void bg__cpu_attend_pack(float *kt, float *vt, const float *kc, const float *vc, long stride, int n,
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

BG_TAVX2 static inline float hmax256(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
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
        __m256 p = bg__expv_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + b * 8), mb));
        lv = _mm256_add_ps(lv, p);
        for (int i = 0; i < hs; i++)
            acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vb + i * 8), acc[i]);
    }
    float l = bg__hsum256(lv);
    bg__store_sums_avx2(out, acc, hs, 1.0f / l);
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
        __m512 p = bg__expv_avx512(_mm512_sub_ps(_mm512_loadu_ps(sc + b * 16), mb));
        lv = _mm512_add_ps(lv, p);
        for (int i = 0; i < hs; i++)
            acc[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vb + i * 16), acc[i]);
    }
    float l = _mm512_reduce_add_ps(lv);
    bg__store_sums_avx512(out, acc, hs, 1.0f / l);
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
        _mm256_storeu_ps(y + i, bg__expv_avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = expf(x[i]);
}

BG_T512 static void expv_run_avx512(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, bg__expv_avx512(_mm512_loadu_ps(x + i)));
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
        bg__cpu_attend_pack(kt, vt, a->kc, a->vc, a->kvstride, nmax, hs, w);
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
