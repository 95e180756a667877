/*
 * compute_cpu_attend_prefix.c — the CPU backend's attention over a shared
 * prefix and a causal tail (bg_op_attention_prefix, compute.h): the kernel
 * (bg__cpu_attend_prefix) and the op around it.
 *
 * Why: batched scoring (lib/nn/nn_batch.c) runs many branches that share
 * one head (the action's ~80 tokens) and differ past it (a theory's ~50).
 * Attended as one causal cache per branch, the head's keys were copied into
 * every branch's cache and re-packed by every call of the per-query kernel
 * (compute_cpu_attend.c), which also pays, per query, a horizontal max, a
 * horizontal sum, a partial last block of keys and its mask. Here W queries
 * (16 for AVX-512, 8 for AVX2 and for a last block of at most 8) sit in the
 * lanes of a vector, and each key is broadcast from its row-major row (no
 * copy, no packing): the scores of W queries by one key are hs fused
 * multiply-adds, and the softmax's max, exp and sum are lane-wise, with no
 * reduction across lanes. Every query of a block sees every prefix key and
 * the tail keys 0..n0+j0-1 (j0: the block's first query); only the last
 * W-1 tail keys form the causal triangle, where the lanes that must not see
 * a key get -inf (exp gives exactly 0). Two passes, as the per-query
 * kernel: scores and their lane-wise max, then exp, sum and the V sums.
 * The query heads of one KV head (grouped-query attention: stories260K's 8
 * heads on 4 KV heads) share a vector, each query's g heads in adjacent
 * lanes (so the causal mask is still a run of leading lanes): a key
 * broadcast serves both heads, and a run of few queries (the last layer's
 * two per theory) fills one vector instead of two quarter-full ones.
 * (A merge of a prefix-only and a tail-only softmax by log-sum-exp was
 * tried first: the tail's per-query kernel and its packing per block cost
 * as much as the prefix part saved.) The scalar kernel
 * (BG_CPU_KERNEL=scalar) takes one query at a time over the same keys in
 * the same order and steps as the per-query scalar kernel (the same bits as
 * bg_op_attention over the concatenated cache).
 *
 * Invariants: a query's result depends only on its own q, the prefix rows
 * and its tail rows, never on which other queries share its vector or the
 * call (lanes never mix, a lane's arithmetic is the same in every position
 * and in either vector width), so a score does not depend on the batch. It
 * equals bg_op_attention over the prefix rows followed by the tail rows up
 * to float summation order (tests/compute/test_compute_attend.c: against
 * the formula in double, and each query alone against the same query in a
 * call).
 * Threads: the kernel is a pure function of its arguments and caller
 * scratch (any thread); the op splits (head, query) pairs over the pool.
 * Ownership: every pointer is borrowed for the call.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_cpu.h"
#include "compute/compute_cpu_attend_simd.h"

#define WMAX 16    /* queries per vector (AVX-512) */
#define HS_MAX 256 /* SIMD kernels' largest head (accumulators on the stack) */

long bg__cpu_attend_prefix_scratch(int np, int ntail, int hs)
{
    /* the transposed queries and results (hs vectors each), then a score
     * vector per key */
    return 2L * WMAX * hs + ((long)np + ntail) * WMAX;
}

/* ---- the scalar kernel: one query at a time -------------------------------- */

/* Row p of the keys (or values) query j sees: the prefix, then the tail. */
static const float *row(const float *pre, const float *tail, int np, int p, long stride)
{
    return p < np ? pre + (long)p * stride : tail + (long)(p - np) * stride;
}

static void query_c(const bg__attend_prefix_args *a, int j, float *sc)
{
    int hs = a->hs, n = a->np + a->n0 + j;
    const float *q = a->q + (long)j * a->qstride;
    for (int p = 0; p < n; p++) {
        const float *k = row(a->kp, a->kt, a->np, p, a->kvstride);
        float s = 0.0f;
        for (int i = 0; i < hs; i++)
            s += q[i] * k[i];
        sc[p] = s * a->scale;
    }
    bg__cpu_softmax_lse(sc, n);
    float *o = a->out + (long)j * a->ostride;
    memset(o, 0, sizeof(float) * (size_t)hs);
    for (int p = 0; p < n; p++) {
        const float *v = row(a->vp, a->vt, a->np, p, a->kvstride);
        for (int i = 0; i < hs; i++)
            o[i] += sc[p] * v[i];
    }
}

#ifdef BG_X86
/* ---- SIMD: W queries in the lanes of a vector ----------------------------- */

/* W queries j0 + k (lane k) over the prefix and the tail: qt[i] holds
 * element i of the W queries, scaled; key p of the tail is seen by the
 * lanes k >= p - full + 1 where full = n0 + j0 (the keys every lane sees);
 * the last ntk - full keys are the causal triangle, masked to -inf. Two
 * passes: the scores of every key with their lane-wise max into sc, then
 * e = exp(s - max), its sum and the V sums; res[i] = sum / l. The sums
 * run in blocks of SUM_BLOCK keys, each block's added to a total: one
 * sequential float sum per lane over the ~500 keys of a long sequence drifted
 * from bg_nn_score (the per-query kernel sums 16 lanes, then a tree) by more
 * than test_nn_batch's 1e-4 nats with the AVX2 kernel. The loops over the
 * head's elements are unrolled by pragma: at -O2 GCC left them loops, the
 * accumulators on the stack (2x slower at hs 8). */
#define SUM_BLOCK 16
#define PREFIX_KERNEL(NAME, TGT, V, W, SET1, LOAD, STORE, MUL, FMA, MAX, SUB, ADD, DIV, EXP, MASK) \
    TGT static inline __attribute__((always_inline)) void NAME(                                    \
        const bg__attend_prefix_args *a, int hs, const V *qt, int full, int ntk, int g, float *sc, \
        V *acc, V *tot, float *res)                                                                \
    {                                                                                              \
        int np = a->np, n = np + ntk;                                                              \
        V mv = SET1(-INFINITY);                                                                    \
        for (int p = 0; p < n; p++) {                                                              \
            const float *k = row(a->kp, a->kt, np, p, a->kvstride);                                \
            V s = MUL(qt[0], SET1(k[0]));                                                          \
            _Pragma("GCC unroll 8") for (int i = 1; i < hs; i++) s = FMA(qt[i], SET1(k[i]), s);    \
            if (p - np >= full)                                                                    \
                s = MASK(s, (p - np - full + 1) * g);                                              \
            STORE(sc + (long)p * W, s);                                                            \
            mv = MAX(mv, s);                                                                       \
        }                                                                                          \
        V lv = SET1(0.0f);                                                                         \
        _Pragma("GCC unroll 8") for (int i = 0; i < hs; i++) tot[i] = SET1(0.0f);                  \
        for (int p0 = 0; p0 < n; p0 += SUM_BLOCK) {                                                \
            int p1 = p0 + SUM_BLOCK < n ? p0 + SUM_BLOCK : n;                                      \
            V lb = SET1(0.0f);                                                                     \
            _Pragma("GCC unroll 8") for (int i = 0; i < hs; i++) acc[i] = SET1(0.0f);              \
            for (int p = p0; p < p1; p++) {                                                        \
                const float *v = row(a->vp, a->vt, np, p, a->kvstride);                            \
                V e = EXP(SUB(LOAD(sc + (long)p * W), mv));                                        \
                lb = ADD(lb, e);                                                                   \
                _Pragma("GCC unroll 8") for (int i = 0; i < hs; i++) acc[i] =                      \
                    FMA(e, SET1(v[i]), acc[i]);                                                    \
            }                                                                                      \
            lv = ADD(lv, lb);                                                                      \
            _Pragma("GCC unroll 8") for (int i = 0; i < hs; i++) tot[i] = ADD(tot[i], acc[i]);     \
        }                                                                                          \
        V inv = DIV(SET1(1.0f), lv);                                                               \
        _Pragma("GCC unroll 8") for (int i = 0; i < hs; i++) STORE(res + i * W, MUL(tot[i], inv)); \
    }

/* s with lanes [0, c) set to -inf */
BG_T512 static inline __m512 mask512(__m512 s, int c)
{
    return _mm512_mask_mov_ps(s, (__mmask16)((1u << c) - 1), _mm512_set1_ps(-INFINITY));
}

BG_TAVX2 static inline __m256 mask256(__m256 s, int c)
{
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 hid = _mm256_cmp_ps(lane, _mm256_set1_ps((float)c), _CMP_LT_OQ);
    return _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), hid);
}

PREFIX_KERNEL(keys_avx512, BG_T512, __m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
              _mm512_mul_ps, _mm512_fmadd_ps, _mm512_max_ps, _mm512_sub_ps, _mm512_add_ps,
              _mm512_div_ps, bg__expv_avx512, mask512)
PREFIX_KERNEL(keys_avx2, BG_TAVX2, __m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
              _mm256_mul_ps, _mm256_fmadd_ps, _mm256_max_ps, _mm256_sub_ps, _mm256_add_ps,
              _mm256_div_ps, bg__expv_avx2, mask256)

BG_T512 static void block_avx512(const bg__attend_prefix_args *a, const float *qt, int full,
                                 int ntk, int g, float *sc, float *res)
{
    if (a->hs == 8) { /* its own arrays, so they stay in registers */
        __m512 q8[8], acc8[8], tot8[8];
        for (int i = 0; i < 8; i++)
            q8[i] = _mm512_loadu_ps(qt + i * 16);
        keys_avx512(a, 8, q8, full, ntk, g, sc, acc8, tot8, res);
        return;
    }
    __m512 q[HS_MAX], acc[HS_MAX], tot[HS_MAX];
    for (int i = 0; i < a->hs; i++)
        q[i] = _mm512_loadu_ps(qt + i * 16);
    keys_avx512(a, a->hs, q, full, ntk, g, sc, acc, tot, res);
}

BG_TAVX2 static void block_avx2(const bg__attend_prefix_args *a, const float *qt, int full, int ntk,
                                int g, float *sc, float *res)
{
    if (a->hs == 8) {
        __m256 q8[8], acc8[8], tot8[8];
        for (int i = 0; i < 8; i++)
            q8[i] = _mm256_loadu_ps(qt + i * 8);
        keys_avx2(a, 8, q8, full, ntk, g, sc, acc8, tot8, res);
        return;
    }
    __m256 q[HS_MAX], acc[HS_MAX], tot[HS_MAX];
    for (int i = 0; i < a->hs; i++)
        q[i] = _mm256_loadu_ps(qt + i * 8);
    keys_avx2(a, a->hs, q, full, ntk, g, sc, acc, tot, res);
}

/* qt[i * w + k*g + h] = scale * q_(j+k), head h [i]; lanes past nb * g
 * are zeros (finite scores, never written out). The arguments are copied
 * into locals (restrict): stores to qt would otherwise make every read of
 * a->scale and the strides a reload. */
static void transpose_in(float *restrict qt, const bg__attend_prefix_args *a, int j, int nb, int w,
                         int g)
{
    const float *restrict q0 = a->q + (long)j * a->qstride;
    long qs = a->qstride, hst = a->hstride;
    int hs = a->hs;
    float scale = a->scale;
    memset(qt, 0, sizeof(float) * (size_t)(hs * w));
    for (int k = 0; k < nb; k++)
        for (int h = 0; h < g; h++) {
            const float *q = q0 + k * qs + h * hst;
            float *d = qt + k * g + h;
            for (int i = 0; i < hs; i++)
                d[i * w] = q[i] * scale;
        }
}

static void transpose_out(const bg__attend_prefix_args *a, int j, int nb, const float *restrict res,
                          int w, int g)
{
    float *restrict o0 = a->out + (long)j * a->ostride;
    long os = a->ostride, hst = a->hstride;
    int hs = a->hs;
    for (int k = 0; k < nb; k++)
        for (int h = 0; h < g; h++) {
            float *o = o0 + k * os + h * hst;
            const float *r = res + k * g + h;
            for (int i = 0; i < hs; i++)
                o[i] = r[i * w];
        }
}
#endif

void bg__cpu_attend_prefix(const bg__attend_prefix_args *a, float *scratch)
{
    int wmax = 1;
#ifdef BG_X86
    int kern = bg__cpu_kernel();
    if (a->hs <= HS_MAX && kern == BG__KERN_AVX512)
        wmax = 16;
    else if (a->hs <= HS_MAX && kern == BG__KERN_AVX2)
        wmax = 8;
#endif
    int g = a->g > 1 ? a->g : 1;
    if (g > 1 && (wmax == 1 || g > 4)) { /* one head at a time */
        bg__attend_prefix_args b = *a;
        b.g = 1;
        for (int h = 0; h < g; h++, b.q += a->hstride, b.out += a->hstride)
            bg__cpu_attend_prefix(&b, scratch);
        return;
    }
    for (int j = 0; j < a->nq;) {
#ifdef BG_X86
        if (wmax > 1) {
            /* 16 lanes, or 8 (AVX2's vector; on AVX-512 too) for a last
             * block of at most 8 lanes; each query's g heads in adjacent
             * lanes: a lane's arithmetic is the same in either width and
             * at any position, so its result too */
            int left = a->nq - j, w = wmax == 16 && left * g > 8 ? 16 : 8;
            int nb = left < w / g ? left : w / g;
            float *qt = scratch, *res = qt + WMAX * a->hs, *sc = res + WMAX * a->hs;
            int full = a->n0 + j, ntk = full + nb - 1;
            transpose_in(qt, a, j, nb, w, g);
            if (w == 16)
                block_avx512(a, qt, full, ntk, g, sc, res);
            else
                block_avx2(a, qt, full, ntk, g, sc, res);
            transpose_out(a, j, nb, res, w, g);
            j += nb;
            continue;
        }
#endif
        query_c(a, j, scratch);
        j++;
    }
}

/* ---- the op ------------------------------------------------------------------ */

typedef struct pre_ctx {
    float *out;
    const float *q, *kp, *vp, *kt, *vt;
    int T, np, pos0, nh, nkv, hs, ntasks;
    int failed;
} pre_ctx;

/* The query heads of a KV head up to this many share one vector (each
 * query's heads in adjacent lanes); a wider group goes head by head. */
#define G_MAX 4

static int heads_per_unit(int nh, int nkv)
{
    return nh / nkv <= G_MAX ? nh / nkv : 1;
}

/* Task t covers (head unit, token) pairs, head-major (as the attention
 * op); a unit is the g query heads of one KV head (heads_per_unit). */
static void pre_task(void *v, int t)
{
    pre_ctx *c = v;
    int g = heads_per_unit(c->nh, c->nkv);
    long r0, r1;
    bg__cpu_task_range(t, c->ntasks, (long)c->T * (c->nh / g), &r0, &r1);
    if (r0 == r1)
        return;
    long n = bg__cpu_attend_prefix_scratch(c->np, c->pos0 + c->T, c->hs);
    float *sc = malloc(sizeof(float) * (size_t)n);
    if (!sc) {
        c->failed = 1;
        return;
    }
    int kv_dim = c->nkv * c->hs, group = c->nh / c->nkv;
    for (long i = r0; i < r1;) {
        int h = (int)(i / c->T) * g, tok = (int)(i % c->T);
        long run = c->T - tok < r1 - i ? c->T - tok : r1 - i;
        long koff = (long)(h / group) * c->hs, qoff = ((long)tok * c->nh + h) * c->hs;
        bg__attend_prefix_args a = {.out = c->out + qoff,
                                    .q = c->q + qoff,
                                    .kp = c->kp + koff,
                                    .vp = c->vp + koff,
                                    .kt = c->kt + koff,
                                    .vt = c->vt + koff,
                                    .qstride = (long)c->nh * c->hs,
                                    .ostride = (long)c->nh * c->hs,
                                    .kvstride = kv_dim,
                                    .np = c->np,
                                    .n0 = c->pos0 + tok + 1,
                                    .nq = (int)run,
                                    .hs = c->hs,
                                    .scale = 1.0f / sqrtf((float)c->hs),
                                    .g = g,
                                    .hstride = c->hs};
        bg__cpu_attend_prefix(&a, sc);
        i += run;
    }
    free(sc);
}

int bg__cpu_attention_prefix(bg_compute *c, bg_tview out, bg_tview q, bg_tview kprefix,
                             bg_tview vprefix, int P, bg_tview ktail, bg_tview vtail, int T,
                             int pos0, int nh, int nkv, int hs, int seq_len)
{
    const char *op = "attention_prefix";
    pre_ctx x = {0};
    size_t kv = (size_t)nkv * hs;
    x.out = bg__cpu_span(c, op, "out", out, (size_t)T * nh * hs);
    x.q = bg__cpu_span(c, op, "q", q, (size_t)T * nh * hs);
    x.kp = bg__cpu_span(c, op, "kprefix", kprefix, (size_t)P * kv);
    x.vp = bg__cpu_span(c, op, "vprefix", vprefix, (size_t)P * kv);
    x.kt = bg__cpu_span(c, op, "ktail", ktail, (size_t)seq_len * kv);
    x.vt = bg__cpu_span(c, op, "vtail", vtail, (size_t)seq_len * kv);
    if (!x.out || !x.q || !x.kp || !x.vp || !x.kt || !x.vt)
        return BG_EINVAL;
    x.T = T;
    x.np = P;
    x.pos0 = pos0;
    x.nh = nh;
    x.nkv = nkv;
    x.hs = hs;
    int g = heads_per_unit(nh, nkv);
    x.ntasks = bg__cpu_ntasks(c, (long)T * (nh / g), 4L * g * (P + pos0 + T) * hs);
    bg__pool_run(bg__cpu(c)->pool, pre_task, &x, x.ntasks);
    if (x.failed) {
        c->poisoned = 1;
        return bg_err_set(&c->poison_err, BG_ENOMEM,
                          "compute op %s: out of memory for the scratch of %d prefix and %d tail "
                          "keys",
                          op, P, pos0 + T);
    }
    return BG_OK;
}
