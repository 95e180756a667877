/*
 * compute_cpu_attend_bwd.c — the CPU backend's attention backward kernel:
 * for one (sequence, KV head), the gradients dq of the group's query heads
 * and dk, dv of the KV head (compute.h, bg_op_attention_backward), with P
 * recomputed from the forward's lse.
 *
 * Why this shape (the forward's, compute_cpu_attend.c, mirrored): the
 * models' heads are small (stories260K: 8, the 15M shape: 48), so a loop
 * one key at a time (three dots and three axpys of hs per key, a scalar
 * expf) spends its time in horizontal sums, libm and loop overhead. Here:
 *   - K and V are packed once per call, transposed in blocks of W keys
 *     (W = 16 AVX-512, 8 AVX2; bg__cpu_attend_pack), and shared by every
 *     query of every head of the group;
 *   - per query and block, the scores s = q.K and dP = dout.V of W keys are
 *     hs fused multiply-adds each of a broadcast element times the packed
 *     vector (no transpose, no horizontal sum); P = exp(s - lse) with the
 *     forward's polynomial exp (bg__expv_*); dS = P (dP - D) scale, masked
 *     keys past the query giving P = 0 and so dS = 0;
 *   - dk and dv are accumulated in the packed layout, dKT[b][i] += dS *
 *     q[i] and dVT[b][i] += P * dout[i] (a broadcast times a vector: no
 *     scatter), and unpacked into the rows once at the end;
 *   - dq's sum over keys is vectorised over keys (acc[i] += dS * KT[b][i])
 *     and its lanes summed once per query, as the forward's V sum;
 *   - heads over 8 take queries in pairs (t, t + 1) through one pass over
 *     the blocks, so each block of K, V, dK, dV is loaded once for two
 *     queries (at the 15M shape's T = 256, hs = 48 the four arrays are
 *     192 KiB, past L1: 13.2 -> 10.5 ns per (query, key) on AVX-512);
 *     t's term is added before t + 1's, the order one at a time has.
 *     Head size 8 stays one query at a time, its accumulators in registers.
 * The query is scaled once (qs = q * scale) exactly as the forward scales
 * it, so s has the forward's bits and s - lse is the forward's exponent.
 * The scalar kernel (BG_CPU_KERNEL=scalar, heads over HS_MAX) is the loop
 * this kernel replaced, one key at a time (bg__cpu_attend_bwd_keys: a dot
 * for the score and for dP per key, expf, axpys; bench_attend's baseline).
 *
 * Invariants: every element of dq, dk and dv that the call owns is written
 * (=) once from sums in a fixed order (heads, then queries, then keys), so
 * the result does not depend on the thread that runs it or on other calls;
 * the kernels never read K/V rows past T (the packing zero-pads).
 * Threads: a pure function of its arguments and caller scratch; any thread.
 * Ownership: every pointer is borrowed for the call.
 */
#include <math.h>
#include <string.h>

#include "compute/compute_cpu.h"
#include "compute/compute_cpu_attend_simd.h"

#define WMAX 16    /* the widest key block (AVX-512) */
#define HS_MAX 256 /* SIMD kernels' largest head (accumulators on the stack) */

long bg__cpu_attend_bwd_scratch(int T, int hs)
{
    long blocks = ((long)T + WMAX - 1) / WMAX;
    /* packed K, V, dK, dV; a row of dS (the scalar kernel); two scaled
     * queries */
    return 4 * blocks * WMAX * hs + blocks * WMAX + 2 * hs;
}

/* ---- one key at a time ----------------------------------------------------- */

void bg__cpu_attend_bwd_keys(const bg__attend_bwd_args *a, float *ds)
{
    int hs = a->hs;
    for (int p = 0; p < a->T; p++) {
        memset(a->dk + p * a->kvstride, 0, sizeof(float) * (size_t)hs);
        memset(a->dv + p * a->kvstride, 0, sizeof(float) * (size_t)hs);
    }
    for (int j = 0; j < a->group; j++)
        for (int t = 0; t < a->T; t++) {
            long qo = t * a->qstride + (long)j * hs;
            const float *qh = a->q + qo, *doh = a->dout + qo;
            float D = bg__cpu_dot(doh, a->out + qo, hs), l = a->lse[t * a->lstride + j];
            float *dqh = a->dq + qo;
            memset(dqh, 0, sizeof(float) * (size_t)hs);
            for (int p = 0; p <= t; p++) {
                long kr = p * a->kvstride;
                float P = expf(bg__cpu_dot(qh, a->k + kr, hs) * a->scale - l);
                float dP = bg__cpu_dot(doh, a->v + kr, hs);
                ds[p] = P * (dP - D) * a->scale;
                bg__cpu_axpy(a->dv + kr, P, doh, hs);
            }
            for (int p = 0; p <= t; p++) {
                long kr = p * a->kvstride;
                bg__cpu_axpy(dqh, ds[p], a->k + kr, hs);
                bg__cpu_axpy(a->dk + kr, ds[p], qh, hs);
            }
        }
}

/* dk/dv rows from the packed accumulators: row p = b*w + k, element i at
 * dkt[b][i][k]. */
static void unpack_dkv(const bg__attend_bwd_args *a, const float *dkt, const float *dvt, int w)
{
    for (int p = 0; p < a->T; p++) {
        const float *kb = dkt + (long)(p / w) * a->hs * w + p % w;
        const float *vb = dvt + (long)(p / w) * a->hs * w + p % w;
        float *dk = a->dk + p * a->kvstride, *dv = a->dv + p * a->kvstride;
        for (int i = 0; i < a->hs; i++) {
            dk[i] = kb[(long)i * w];
            dv[i] = vb[(long)i * w];
        }
    }
}

/* One query of one head, as the SIMD kernels take it. */
typedef struct query {
    float *dq;
    const float *q, *qs, *dout; /* qs = q * scale: the forward's scores */
    const float *kt, *vt;       /* packed K, V */
    float *dkt, *dvt;           /* packed dK, dV accumulators */
    float D, lse, scale;
    int n, hs; /* n = t + 1 keys */
} query;

/* one: a query; two: queries t and t + 1 of one head (x[0], x[1]) in one
 * pass over the blocks, or NULL */
typedef void (*query_fn)(const query *x);

static void set_query(const bg__attend_bwd_args *a, query *x, int j, int t)
{
    long qo = t * a->qstride + (long)j * a->hs;
    float *qs = (float *)x->qs;
    x->q = a->q + qo;
    x->dout = a->dout + qo;
    x->dq = a->dq + qo;
    for (int i = 0; i < a->hs; i++)
        qs[i] = x->q[i] * a->scale;
    x->D = bg__cpu_dot(x->dout, a->out + qo, a->hs);
    x->lse = a->lse[t * a->lstride + j];
    x->n = t + 1;
}

/* Every query of every head of the group, heads outer, tokens inner (the
 * fixed order dK and dV are summed in; a pair adds t's term before t + 1's,
 * as one at a time would). x[0] carries the packed pointers. */
static void queries(const bg__attend_bwd_args *a, query x[2], float *qs, query_fn one, query_fn two)
{
    x[0].hs = a->hs;
    x[0].scale = a->scale;
    x[1] = x[0];
    x[0].qs = qs;
    x[1].qs = qs + a->hs;
    for (int j = 0; j < a->group; j++)
        for (int t = 0; t < a->T;) {
            set_query(a, &x[0], j, t);
            if (two && t + 1 < a->T) {
                set_query(a, &x[1], j, t + 1);
                two(x);
                t += 2;
            } else {
                one(&x[0]);
                t++;
            }
        }
}

#ifdef BG_X86
/* ---- AVX2: blocks of 8 keys ------------------------------------------------ */

/* Scores and dP per block of 8 keys, P and dS, then dq's lanes and the
 * packed dK, dV. acc: hs vectors (registers when hs is the constant 8). */
BG_TAVX2 static inline __attribute__((always_inline)) void query_avx2(const query *x, int hs,
                                                                      __m256 *acc)
{
    int n = x->n, nb = (n + 7) / 8;
    __m256 lb = _mm256_set1_ps(x->lse), db = _mm256_set1_ps(x->D), sb = _mm256_set1_ps(x->scale);
    for (int i = 0; i < hs; i++)
        acc[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        long off = (long)b * hs * 8;
        const float *kb = x->kt + off, *vb = x->vt + off;
        float *dkb = x->dkt + off, *dvb = x->dvt + off;
        __m256 s = _mm256_setzero_ps(), dp = _mm256_setzero_ps();
        for (int i = 0; i < hs; i++) {
            s = _mm256_fmadd_ps(_mm256_set1_ps(x->qs[i]), _mm256_loadu_ps(kb + i * 8), s);
            dp = _mm256_fmadd_ps(_mm256_set1_ps(x->dout[i]), _mm256_loadu_ps(vb + i * 8), dp);
        }
        if (n - b * 8 < 8) {
            const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
            __m256 in = _mm256_cmp_ps(lane, _mm256_set1_ps((float)(n - b * 8)), _CMP_LT_OQ);
            s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, in);
        }
        __m256 P = bg__expv_avx2(_mm256_sub_ps(s, lb));
        __m256 ds = _mm256_mul_ps(_mm256_mul_ps(P, _mm256_sub_ps(dp, db)), sb);
        for (int i = 0; i < hs; i++) {
            acc[i] = _mm256_fmadd_ps(ds, _mm256_loadu_ps(kb + i * 8), acc[i]);
            _mm256_storeu_ps(dkb + i * 8, _mm256_fmadd_ps(ds, _mm256_set1_ps(x->q[i]),
                                                          _mm256_loadu_ps(dkb + i * 8)));
            _mm256_storeu_ps(dvb + i * 8, _mm256_fmadd_ps(P, _mm256_set1_ps(x->dout[i]),
                                                          _mm256_loadu_ps(dvb + i * 8)));
        }
    }
    bg__store_sums_avx2(x->dq, acc, hs, 1.0f);
}

BG_TAVX2 static void one_avx2(const query *x)
{
    if (x->hs == 8) {
        __m256 acc8[8]; /* its own array, so it stays in registers */
        query_avx2(x, 8, acc8);
    } else {
        __m256 acc[HS_MAX];
        query_avx2(x, x->hs, acc);
    }
}

/* Queries t and t + 1 (x[0], x[1]) of a head over t + 2 keys in one pass:
 * each block of K, V, dK, dV is loaded once for both (the arrays outgrow L1
 * at the 15M shape's T = 256, hs = 48). Query t's last block may be all
 * masked (P = 0: it adds zeros). Heads over 8: the accumulators live in
 * memory either way. */
BG_TAVX2 static void two_avx2(const query *x)
{
    const query *x1 = x + 1;
    int hs = x->hs, n1 = x1->n, nb = (n1 + 7) / 8;
    __m256 acc0[HS_MAX], acc1[HS_MAX];
    __m256 sb = _mm256_set1_ps(x->scale);
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (int i = 0; i < hs; i++)
        acc0[i] = acc1[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        long off = (long)b * hs * 8;
        const float *kb = x->kt + off, *vb = x->vt + off;
        float *dkb = x->dkt + off, *dvb = x->dvt + off;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, dp0 = s0, dp1 = s0;
        for (int i = 0; i < hs; i++) {
            __m256 k = _mm256_loadu_ps(kb + i * 8), v = _mm256_loadu_ps(vb + i * 8);
            s0 = _mm256_fmadd_ps(_mm256_set1_ps(x->qs[i]), k, s0);
            s1 = _mm256_fmadd_ps(_mm256_set1_ps(x1->qs[i]), k, s1);
            dp0 = _mm256_fmadd_ps(_mm256_set1_ps(x->dout[i]), v, dp0);
            dp1 = _mm256_fmadd_ps(_mm256_set1_ps(x1->dout[i]), v, dp1);
        }
        if (n1 - b * 8 < 9) { /* query t's keys end here: n0 = n1 - 1 */
            __m256 in0 = _mm256_cmp_ps(lane, _mm256_set1_ps((float)(n1 - 1 - b * 8)), _CMP_LT_OQ);
            __m256 in1 = _mm256_cmp_ps(lane, _mm256_set1_ps((float)(n1 - b * 8)), _CMP_LT_OQ);
            s0 = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s0, in0);
            s1 = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s1, in1);
        }
        __m256 P0 = bg__expv_avx2(_mm256_sub_ps(s0, _mm256_set1_ps(x->lse)));
        __m256 P1 = bg__expv_avx2(_mm256_sub_ps(s1, _mm256_set1_ps(x1->lse)));
        __m256 ds0 = _mm256_mul_ps(_mm256_mul_ps(P0, _mm256_sub_ps(dp0, _mm256_set1_ps(x->D))), sb);
        __m256 ds1 =
            _mm256_mul_ps(_mm256_mul_ps(P1, _mm256_sub_ps(dp1, _mm256_set1_ps(x1->D))), sb);
        for (int i = 0; i < hs; i++) {
            __m256 k = _mm256_loadu_ps(kb + i * 8);
            acc0[i] = _mm256_fmadd_ps(ds0, k, acc0[i]);
            acc1[i] = _mm256_fmadd_ps(ds1, k, acc1[i]);
            __m256 dk = _mm256_fmadd_ps(ds0, _mm256_set1_ps(x->q[i]), _mm256_loadu_ps(dkb + i * 8));
            __m256 dv =
                _mm256_fmadd_ps(P0, _mm256_set1_ps(x->dout[i]), _mm256_loadu_ps(dvb + i * 8));
            _mm256_storeu_ps(dkb + i * 8, _mm256_fmadd_ps(ds1, _mm256_set1_ps(x1->q[i]), dk));
            _mm256_storeu_ps(dvb + i * 8, _mm256_fmadd_ps(P1, _mm256_set1_ps(x1->dout[i]), dv));
        }
    }
    bg__store_sums_avx2(x->dq, acc0, hs, 1.0f);
    bg__store_sums_avx2(x1->dq, acc1, hs, 1.0f);
}

/* ---- AVX-512: blocks of 16 keys -------------------------------------------- */

/* query_avx2 in blocks of 16 keys. */
BG_T512 static inline __attribute__((always_inline)) void query_avx512(const query *x, int hs,
                                                                       __m512 *acc)
{
    int n = x->n, nb = (n + 15) / 16;
    __m512 lb = _mm512_set1_ps(x->lse), db = _mm512_set1_ps(x->D), sb = _mm512_set1_ps(x->scale);
    for (int i = 0; i < hs; i++)
        acc[i] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        long off = (long)b * hs * 16;
        const float *kb = x->kt + off, *vb = x->vt + off;
        float *dkb = x->dkt + off, *dvb = x->dvt + off;
        __m512 s = _mm512_setzero_ps(), dp = _mm512_setzero_ps();
        for (int i = 0; i < hs; i++) {
            s = _mm512_fmadd_ps(_mm512_set1_ps(x->qs[i]), _mm512_loadu_ps(kb + i * 16), s);
            dp = _mm512_fmadd_ps(_mm512_set1_ps(x->dout[i]), _mm512_loadu_ps(vb + i * 16), dp);
        }
        int left = n - b * 16;
        if (left < 16)
            s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << left) - 1), s);
        __m512 P = bg__expv_avx512(_mm512_sub_ps(s, lb));
        __m512 ds = _mm512_mul_ps(_mm512_mul_ps(P, _mm512_sub_ps(dp, db)), sb);
        for (int i = 0; i < hs; i++) {
            acc[i] = _mm512_fmadd_ps(ds, _mm512_loadu_ps(kb + i * 16), acc[i]);
            _mm512_storeu_ps(dkb + i * 16, _mm512_fmadd_ps(ds, _mm512_set1_ps(x->q[i]),
                                                           _mm512_loadu_ps(dkb + i * 16)));
            _mm512_storeu_ps(dvb + i * 16, _mm512_fmadd_ps(P, _mm512_set1_ps(x->dout[i]),
                                                           _mm512_loadu_ps(dvb + i * 16)));
        }
    }
    bg__store_sums_avx512(x->dq, acc, hs, 1.0f);
}

BG_T512 static void one_avx512(const query *x)
{
    if (x->hs == 8) {
        __m512 acc8[8]; /* its own array, so it stays in registers */
        query_avx512(x, 8, acc8);
    } else {
        __m512 acc[HS_MAX];
        query_avx512(x, x->hs, acc);
    }
}

/* two_avx2 in blocks of 16 keys. */
BG_T512 static void two_avx512(const query *x)
{
    const query *x1 = x + 1;
    int hs = x->hs, n1 = x1->n, nb = (n1 + 15) / 16;
    __m512 acc0[HS_MAX], acc1[HS_MAX];
    __m512 sb = _mm512_set1_ps(x->scale);
    for (int i = 0; i < hs; i++)
        acc0[i] = acc1[i] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        long off = (long)b * hs * 16;
        const float *kb = x->kt + off, *vb = x->vt + off;
        float *dkb = x->dkt + off, *dvb = x->dvt + off;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, dp0 = s0, dp1 = s0;
        for (int i = 0; i < hs; i++) {
            __m512 k = _mm512_loadu_ps(kb + i * 16), v = _mm512_loadu_ps(vb + i * 16);
            s0 = _mm512_fmadd_ps(_mm512_set1_ps(x->qs[i]), k, s0);
            s1 = _mm512_fmadd_ps(_mm512_set1_ps(x1->qs[i]), k, s1);
            dp0 = _mm512_fmadd_ps(_mm512_set1_ps(x->dout[i]), v, dp0);
            dp1 = _mm512_fmadd_ps(_mm512_set1_ps(x1->dout[i]), v, dp1);
        }
        int left = n1 - b * 16; /* query t + 1's keys in this block; t's: one fewer */
        if (left < 17) {
            s0 = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << (left - 1)) - 1),
                                    s0);
            if (left < 16)
                s1 = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << left) - 1),
                                        s1);
        }
        __m512 P0 = bg__expv_avx512(_mm512_sub_ps(s0, _mm512_set1_ps(x->lse)));
        __m512 P1 = bg__expv_avx512(_mm512_sub_ps(s1, _mm512_set1_ps(x1->lse)));
        __m512 ds0 = _mm512_mul_ps(_mm512_mul_ps(P0, _mm512_sub_ps(dp0, _mm512_set1_ps(x->D))), sb);
        __m512 ds1 =
            _mm512_mul_ps(_mm512_mul_ps(P1, _mm512_sub_ps(dp1, _mm512_set1_ps(x1->D))), sb);
        for (int i = 0; i < hs; i++) {
            __m512 k = _mm512_loadu_ps(kb + i * 16);
            acc0[i] = _mm512_fmadd_ps(ds0, k, acc0[i]);
            acc1[i] = _mm512_fmadd_ps(ds1, k, acc1[i]);
            __m512 dk =
                _mm512_fmadd_ps(ds0, _mm512_set1_ps(x->q[i]), _mm512_loadu_ps(dkb + i * 16));
            __m512 dv =
                _mm512_fmadd_ps(P0, _mm512_set1_ps(x->dout[i]), _mm512_loadu_ps(dvb + i * 16));
            _mm512_storeu_ps(dkb + i * 16, _mm512_fmadd_ps(ds1, _mm512_set1_ps(x1->q[i]), dk));
            _mm512_storeu_ps(dvb + i * 16, _mm512_fmadd_ps(P1, _mm512_set1_ps(x1->dout[i]), dv));
        }
    }
    bg__store_sums_avx512(x->dq, acc0, hs, 1.0f);
    bg__store_sums_avx512(x1->dq, acc1, hs, 1.0f);
}
#endif

void bg__cpu_attend_bwd(const bg__attend_bwd_args *a, float *scratch)
{
#ifdef BG_X86
    int k = bg__cpu_kernel();
    if ((k == BG__KERN_AVX512 || k == BG__KERN_AVX2) && a->hs <= HS_MAX) {
        int w = k == BG__KERN_AVX512 ? 16 : 8;
        long packed = ((long)a->T + w - 1) / w * w * a->hs;
        query x[2] = {{.kt = scratch}};
        x[0].vt = x[0].kt + packed;
        x[0].dkt = (float *)x[0].vt + packed;
        x[0].dvt = x[0].dkt + packed;
        bg__cpu_attend_pack((float *)x[0].kt, (float *)x[0].vt, a->k, a->v, a->kvstride, a->T,
                            a->hs, w);
        memset(x[0].dkt, 0, sizeof(float) * 2 * (size_t)packed);
        /* head size 8: one query at a time keeps everything in registers */
        query_fn two = a->hs == 8 ? NULL : w == 16 ? two_avx512 : two_avx2;
        queries(a, x, x[0].dvt + packed, w == 16 ? one_avx512 : one_avx2, two);
        unpack_dkv(a, x[0].dkt, x[0].dvt, w);
        return;
    }
#endif
    bg__cpu_attend_bwd_keys(a, scratch);
}
