/*
 * compute_cpu_train.c — the CPU backend's training ops (compute.h, "training
 * ops"): fill, axpy, the backward of embed / rmsnorm / matmul / attention /
 * swiglu, the whole-sequence attention forward, the fused cross-entropy,
 * sumsq and AdamW. (RoPE's backward is the forward's rotation transposed and
 * lives beside it in compute_cpu.c.)
 *
 * Why shaped so: each op is split into pool tasks so that every output
 * element is written by exactly one task in a fixed order, which makes the
 * results independent of the thread count and free of atomics:
 *   - rmsnorm_backward: rows in parallel for dx (and each row's r and its
 *     correction term into scratch), then columns in parallel for dw;
 *   - embed_backward: columns in parallel, tokens in order within a column;
 *   - attention_backward: one task per (sequence, KV head), which owns the
 *     dk/dv rows of that KV head and the dq rows of the query heads of its
 *     group; P is recomputed from the saved lse, no [T, T] matrix is kept;
 *     the task runs the SIMD kernel of compute_cpu_attend_bwd.c;
 *   - the matmul gradients run on the packed GEMM (compute_cpu_gemm.c) with
 *     strided packing, so no transpose is materialised;
 *   - sumsq sums fixed chunks of 16K elements in double, then the chunks in
 *     order;
 *   - xent: rows in parallel; a row is a max pass, then one pass that
 *     stores e^(l - max) into dlogits (which may be the logits: in place)
 *     and sums it, then a pass scaling it by w / sum. With the AVX2 or
 *     AVX-512 kernel both passes run 8 or 16 lanes through the polynomial
 *     exp of compute_cpu_attend_simd.h (2 ulp), the lanes' partial sums
 *     added into a double every XENT_FLUSH elements, so a 32,000-token
 *     row's sum keeps ~double accuracy.
 * attention_train calls the inference kernel (bg__cpu_attend_causal) per
 * query head on the sequence's own rows, so its output is bit-identical to
 * bg_op_attention over a cache holding the same rows.
 *
 * Invariants: every view is checked against its buffer (bg__cpu_span) and
 * every id against its range before any element is read; a failure poisons
 * the recording. Scratch is allocated per call and freed before return; an
 * allocation failure poisons the recording with BG_ENOMEM.
 * Threads: called by the thread that owns the bg_compute; workers only run
 * tasks. Ownership: nothing is kept between calls.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_cpu.h"
#include "compute/compute_cpu_attend_simd.h"

#define CHUNK 16384 /* elements per task of an elementwise op */

static int oom(bg_compute *c, const char *op, size_t bytes)
{
    if (!c->poisoned) {
        c->poisoned = 1;
        bg_err_set(&c->poison_err, BG_ENOMEM,
                   "compute op %s: out of memory for %zu bytes of scratch", op, bytes);
    }
    return BG_ENOMEM;
}

/* ---- elementwise: fill, axpy, swiglu_backward, adamw ------------------- */

enum { EW_FILL, EW_AXPY, EW_SWIGLU_BWD, EW_ADAMW };

typedef struct ew_ctx {
    int kind, ntasks;
    long n;
    float *a, *b;           /* fill/axpy: a = x|y; swiglu: a = dh, b = dg; adamw: a = p */
    const float *x, *y, *z; /* axpy: x; swiglu: dout, h, g; adamw: g, -, - */
    float *m, *v;           /* adamw moments */
    float alpha;            /* fill value, axpy alpha */
    float scale, lr, b1, b2, eps, wd, bc1, bc2; /* adamw */
} ew_ctx;

static void swiglu_bwd_range(const ew_ctx *e, long i0, long i1)
{
    for (long i = i0; i < i1; i++) {
        float d = e->x[i], h = e->y[i], g = e->z[i];
        float s = 1.0f / (1.0f + expf(-h));
        e->a[i] = d * g * s * (1.0f + h * (1.0f - s)); /* dh may alias h: h read above */
        e->b[i] = d * h * s;                           /* dg may alias g: g read above */
    }
}

static void adamw_range(const ew_ctx *e, long i0, long i1)
{
    for (long i = i0; i < i1; i++) {
        float g = e->scale * e->x[i];
        float m = e->b1 * e->m[i] + (1.0f - e->b1) * g;
        float v = e->b2 * e->v[i] + (1.0f - e->b2) * g * g;
        e->m[i] = m;
        e->v[i] = v;
        float p = e->a[i];
        e->a[i] = p - e->lr * ((m / e->bc1) / (sqrtf(v / e->bc2) + e->eps) + e->wd * p);
    }
}

static void ew_task(void *vctx, int t)
{
    const ew_ctx *e = vctx;
    long i0, i1;
    bg__cpu_task_range(t, e->ntasks, e->n, &i0, &i1);
    switch (e->kind) {
    case EW_FILL:
        for (long i = i0; i < i1; i++)
            e->a[i] = e->alpha;
        break;
    case EW_AXPY:
        bg__cpu_axpy(e->a + i0, e->alpha, e->x + i0, (int)(i1 - i0));
        break;
    case EW_SWIGLU_BWD:
        swiglu_bwd_range(e, i0, i1);
        break;
    default:
        adamw_range(e, i0, i1);
        break;
    }
}

static void ew_run(bg_compute *c, ew_ctx *e)
{
    e->ntasks = bg__cpu_ntasks(c, (e->n + CHUNK - 1) / CHUNK, 2L * CHUNK);
    bg__pool_run(bg__cpu(c)->pool, ew_task, e, e->ntasks);
}

int bg__cpu_fill(bg_compute *c, bg_tview x, float value, int n)
{
    ew_ctx e = {.kind = EW_FILL, .n = n, .alpha = value};
    e.a = bg__cpu_span(c, "fill", "x", x, (size_t)n);
    if (!e.a)
        return BG_EINVAL;
    ew_run(c, &e);
    return BG_OK;
}

int bg__cpu_axpy_op(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n)
{
    ew_ctx e = {.kind = EW_AXPY, .n = n, .alpha = alpha};
    e.a = bg__cpu_span(c, "axpy", "y", y, (size_t)n);
    e.x = bg__cpu_span(c, "axpy", "x", x, (size_t)n);
    if (!e.a || !e.x)
        return BG_EINVAL;
    ew_run(c, &e);
    return BG_OK;
}

int bg__cpu_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                            bg_tview g, int n)
{
    ew_ctx e = {.kind = EW_SWIGLU_BWD, .n = n};
    e.a = bg__cpu_span(c, "swiglu_backward", "dh", dh, (size_t)n);
    e.b = bg__cpu_span(c, "swiglu_backward", "dg", dg, (size_t)n);
    e.x = bg__cpu_span(c, "swiglu_backward", "dout", dout, (size_t)n);
    e.y = bg__cpu_span(c, "swiglu_backward", "h", h, (size_t)n);
    e.z = bg__cpu_span(c, "swiglu_backward", "g", g, (size_t)n);
    if (!e.a || !e.b || !e.x || !e.y || !e.z)
        return BG_EINVAL;
    ew_run(c, &e);
    return BG_OK;
}

int bg__cpu_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                  int n_gsq, int n, const bg_adamw_params *hp)
{
    ew_ctx e = {.kind = EW_ADAMW, .n = n, .scale = 1.0f};
    e.a = bg__cpu_span(c, "adamw", "p", p, (size_t)n);
    e.x = bg__cpu_span(c, "adamw", "g", g, (size_t)n);
    e.m = bg__cpu_span(c, "adamw", "m", m, (size_t)n);
    e.v = bg__cpu_span(c, "adamw", "v", v, (size_t)n);
    if (!e.a || !e.x || !e.m || !e.v)
        return BG_EINVAL;
    if (n_gsq > 0) { /* clipping: the global norm from every tensor's sumsq slot */
        const float *sq = bg__cpu_span(c, "adamw", "gsq", gsq, (size_t)n_gsq);
        if (!sq)
            return BG_EINVAL;
        double ss = 0.0;
        for (int j = 0; j < n_gsq; j++)
            ss += sq[j];
        double s = hp->max_norm / (sqrt(ss) + 1e-6);
        e.scale = s < 1.0 ? (float)s : 1.0f;
    }
    e.lr = hp->lr;
    e.b1 = hp->beta1;
    e.b2 = hp->beta2;
    e.eps = hp->eps;
    e.wd = hp->weight_decay;
    e.bc1 = (float)(1.0 - pow(hp->beta1, hp->step));
    e.bc2 = (float)(1.0 - pow(hp->beta2, hp->step));
    ew_run(c, &e);
    return BG_OK;
}

/* ---- sumsq --------------------------------------------------------------- */

typedef struct sq_ctx {
    const float *x;
    double *part;
    long n;
} sq_ctx;

static void sq_task(void *vctx, int t)
{
    const sq_ctx *s = vctx;
    long i0 = (long)t * CHUNK, i1 = i0 + CHUNK < s->n ? i0 + CHUNK : s->n;
    double acc = 0.0;
    for (long i = i0; i < i1; i++)
        acc += (double)s->x[i] * s->x[i];
    s->part[t] = acc;
}

int bg__cpu_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n)
{
    sq_ctx s = {.n = n};
    float *o = bg__cpu_span(c, "sumsq", "out", out, 1);
    s.x = bg__cpu_span(c, "sumsq", "x", x, (size_t)n);
    if (!o || !s.x)
        return BG_EINVAL;
    int chunks = (int)((n + CHUNK - 1) / CHUNK);
    s.part = malloc(sizeof(double) * (size_t)chunks);
    if (!s.part)
        return oom(c, "sumsq", sizeof(double) * (size_t)chunks);
    bg__pool_run(bg__cpu(c)->pool, sq_task, &s, chunks);
    double acc = 0.0;
    for (int i = 0; i < chunks; i++)
        acc += s.part[i];
    free(s.part);
    o[0] = (float)acc;
    return BG_OK;
}

/* ---- embed_backward -------------------------------------------------------- */

typedef struct emb_ctx {
    float *dtab;
    const float *dout;
    const int32_t *ids;
    int T, dim, ntasks;
} emb_ctx;

static void emb_task(void *vctx, int t)
{
    const emb_ctx *e = vctx;
    long c0, c1;
    bg__cpu_task_range(t, e->ntasks, e->dim, &c0, &c1);
    for (int tok = 0; tok < e->T; tok++) {
        float *dst = e->dtab + (long)e->ids[tok] * e->dim;
        const float *src = e->dout + (long)tok * e->dim;
        for (long i = c0; i < c1; i++)
            dst[i] += src[i];
    }
}

int bg__cpu_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                           int dim)
{
    emb_ctx e = {.T = T, .dim = dim};
    e.dout = bg__cpu_span(c, "embed_backward", "dout", dout, (size_t)T * dim);
    e.ids = (const int32_t *)bg__cpu_span(c, "embed_backward", "tokens", tokens, (size_t)T);
    e.dtab = bg__cpu_span(c, "embed_backward", "dtable", dtable, (size_t)dim);
    if (!e.dout || !e.ids || !e.dtab)
        return BG_EINVAL;
    long rows = (long)((dtable.buf->bytes / 4 - dtable.off) / (size_t)dim);
    if (!bg__cpu_ids_ok(c, "embed_backward", e.ids, T, rows))
        return BG_EINVAL;
    e.ntasks = bg__cpu_ntasks(c, dim / 16 > 0 ? dim / 16 : 1, 16L * T);
    bg__pool_run(bg__cpu(c)->pool, emb_task, &e, e.ntasks);
    return BG_OK;
}

/* ---- rmsnorm_backward -------------------------------------------------------- */

typedef struct rmsb_ctx {
    float *dx, *dw, *rc; /* rc: [T][2] = r_t, r_t^3 * mean(dout*w*x) */
    const float *dout, *x, *w;
    int T, n, ntasks, failed;
    float eps;
} rmsb_ctx;

static void rmsb_rows(void *vctx, int t)
{
    const rmsb_ctx *r = vctx;
    long r0, r1;
    bg__cpu_task_range(t, r->ntasks, r->T, &r0, &r1);
    for (long row = r0; row < r1; row++) {
        const float *x = r->x + row * r->n, *d = r->dout + row * r->n;
        float *dx = r->dx + row * r->n;
        double ss = 0.0, dwx = 0.0;
        for (int i = 0; i < r->n; i++) {
            ss += (double)x[i] * x[i];
            dwx += (double)d[i] * r->w[i] * x[i];
        }
        float rr = (float)(1.0 / sqrt(ss / r->n + r->eps));
        float corr = (float)((double)rr * rr * rr * dwx / r->n);
        r->rc[2 * row] = rr;
        r->rc[2 * row + 1] = corr;
        for (int i = 0; i < r->n; i++)
            dx[i] += rr * r->w[i] * d[i] - corr * x[i];
    }
}

/* dw over a block of columns: rows outer (contiguous reads), one double
 * accumulator per column, rows summed in order (thread-count invariant). */
static void rmsb_cols(void *vctx, int t)
{
    rmsb_ctx *r = vctx;
    long c0, c1;
    bg__cpu_task_range(t, r->ntasks, r->n, &c0, &c1);
    double *acc = calloc((size_t)(c1 - c0 > 0 ? c1 - c0 : 1), sizeof(double));
    if (!acc) {
        r->failed = 1;
        return;
    }
    for (int row = 0; row < r->T; row++) {
        const float *d = r->dout + (long)row * r->n, *x = r->x + (long)row * r->n;
        double rr = r->rc[2 * row];
        for (long i = c0; i < c1; i++)
            acc[i - c0] += (double)d[i] * x[i] * rr;
    }
    for (long i = c0; i < c1; i++)
        r->dw[i] += (float)acc[i - c0];
    free(acc);
}

int bg__cpu_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                             bg_tview w, int T, int n, float eps)
{
    const char *op = "rmsnorm_backward";
    rmsb_ctx r = {.T = T, .n = n, .eps = eps};
    size_t tn = (size_t)T * n;
    r.dx = bg__cpu_span(c, op, "dx", dx, tn);
    r.dw = bg__cpu_span(c, op, "dw", dw, (size_t)n);
    r.dout = bg__cpu_span(c, op, "dout", dout, tn);
    r.x = bg__cpu_span(c, op, "x", x, tn);
    r.w = bg__cpu_span(c, op, "w", w, (size_t)n);
    if (!r.dx || !r.dw || !r.dout || !r.x || !r.w)
        return BG_EINVAL;
    r.rc = malloc(sizeof(float) * 2 * (size_t)T);
    if (!r.rc)
        return oom(c, op, sizeof(float) * 2 * (size_t)T);
    r.ntasks = bg__cpu_ntasks(c, T, 6L * n);
    bg__pool_run(bg__cpu(c)->pool, rmsb_rows, &r, r.ntasks);
    r.ntasks = bg__cpu_ntasks(c, n, 3L * T);
    bg__pool_run(bg__cpu(c)->pool, rmsb_cols, &r, r.ntasks);
    free(r.rc);
    return r.failed ? oom(c, op, sizeof(double) * (size_t)n) : BG_OK;
}

/* ---- matmul gradients ---------------------------------------------------------- */

int bg__cpu_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                              int K, int accumulate)
{
    float *o = bg__cpu_span(c, "matmul_backward_x", "dx", dx, (size_t)M * K);
    const float *d = bg__cpu_span(c, "matmul_backward_x", "dy", dy, (size_t)M * N);
    const float *wp = bg__cpu_span(c, "matmul_backward_x", "w", w, (size_t)N * K);
    if (!o || !d || !wp)
        return BG_EINVAL;
    bg__cpu_matmul_dx(bg__cpu(c)->pool, o, d, wp, M, N, K, accumulate, bg__cpu(c)->bf16);
    return BG_OK;
}

int bg__cpu_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                              int K)
{
    float *o = bg__cpu_span(c, "matmul_backward_w", "dw", dw, (size_t)N * K);
    const float *d = bg__cpu_span(c, "matmul_backward_w", "dy", dy, (size_t)M * N);
    const float *xp = bg__cpu_span(c, "matmul_backward_w", "x", x, (size_t)M * K);
    if (!o || !d || !xp)
        return BG_EINVAL;
    bg__cpu_matmul_dw(bg__cpu(c)->pool, o, d, xp, M, N, K, bg__cpu(c)->bf16);
    return BG_OK;
}

/* ---- attention over whole sequences -------------------------------------------- */

typedef struct attn_ctx {
    float *out, *lse, *dq, *dk, *dv;
    const float *q, *k, *v, *o, *l, *dout;
    int B, T, nh, nkv, hs, ntasks, failed;
} attn_ctx;

/* forward: task over (sequence, head, token) triples, token fastest, so a
 * task's tokens of one (sequence, head) are one multi-query kernel call */
static void attn_fwd_task(void *vctx, int t)
{
    attn_ctx *a = vctx;
    long r0, r1;
    bg__cpu_task_range(t, a->ntasks, (long)a->B * a->T * a->nh, &r0, &r1);
    if (r0 == r1)
        return;
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_scratch(a->T, a->hs));
    if (!sc) {
        a->failed = 1;
        return;
    }
    int qd = a->nh * a->hs, kvd = a->nkv * a->hs, group = a->nh / a->nkv;
    for (long i = r0; i < r1;) {
        long bh = i / a->T; /* b*nh + h */
        int b = (int)(bh / a->nh), h = (int)(bh % a->nh), tok = (int)(i % a->T);
        long run = a->T - tok < r1 - i ? a->T - tok : r1 - i;
        long row = (long)b * a->T + tok;
        long base = (long)b * a->T * kvd + (long)(h / group) * a->hs; /* row 0 of the sequence */
        bg__attend_args q = {.out = a->out + row * qd + (long)h * a->hs,
                             .q = a->q + row * qd + (long)h * a->hs,
                             .lse = a->lse + row * a->nh + h,
                             .kc = a->k + base,
                             .vc = a->v + base,
                             .qstride = qd,
                             .ostride = qd,
                             .lstride = a->nh,
                             .kvstride = kvd,
                             .n0 = tok + 1,
                             .nq = (int)run,
                             .hs = a->hs,
                             .scale = 1.0f / sqrtf((float)a->hs)};
        bg__cpu_attend_causal(&q, sc);
        i += run;
    }
    free(sc);
}

/* backward: task = one (sequence, kv head); it owns those dk/dv rows and the
 * dq rows of its query heads, so no two tasks write one element. The kernel
 * (compute_cpu_attend_bwd.c) packs the KV head's rows once for the group. */
static void attn_bwd_task(void *vctx, int task)
{
    attn_ctx *a = vctx;
    int b = task / a->nkv, g = task % a->nkv;
    int qd = a->nh * a->hs, kvd = a->nkv * a->hs, group = a->nh / a->nkv, hs = a->hs;
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_bwd_scratch(a->T, hs));
    if (!sc) {
        a->failed = 1;
        return;
    }
    long seq = (long)b * a->T, qo = seq * qd + (long)g * group * hs, ko = seq * kvd + (long)g * hs;
    bg__attend_bwd_args k = {.dq = a->dq + qo,
                             .dk = a->dk + ko,
                             .dv = a->dv + ko,
                             .q = a->q + qo,
                             .k = a->k + ko,
                             .v = a->v + ko,
                             .out = a->o + qo,
                             .dout = a->dout + qo,
                             .lse = a->l + seq * a->nh + (long)g * group,
                             .qstride = qd,
                             .kvstride = kvd,
                             .lstride = a->nh,
                             .T = a->T,
                             .group = group,
                             .hs = hs,
                             .scale = 1.0f / sqrtf((float)hs)};
    bg__cpu_attend_bwd(&k, sc);
    free(sc);
}

static int attn_views(bg_compute *c, const char *op, attn_ctx *a, bg_tview q, bg_tview k,
                      bg_tview v, bg_tview lse)
{
    size_t rows = (size_t)a->B * a->T;
    a->q = bg__cpu_span(c, op, "q", q, rows * a->nh * a->hs);
    a->k = bg__cpu_span(c, op, "k", k, rows * a->nkv * a->hs);
    a->v = bg__cpu_span(c, op, "v", v, rows * a->nkv * a->hs);
    a->l = bg__cpu_span(c, op, "lse", lse, rows * a->nh);
    return a->q && a->k && a->v && a->l ? BG_OK : BG_EINVAL;
}

int bg__cpu_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                            bg_tview v, int B, int T, int nh, int nkv, int hs)
{
    attn_ctx a = {.B = B, .T = T, .nh = nh, .nkv = nkv, .hs = hs};
    if (attn_views(c, "attention_train", &a, q, k, v, lse) != BG_OK)
        return BG_EINVAL;
    a.out = bg__cpu_span(c, "attention_train", "out", out, (size_t)B * T * nh * hs);
    if (!a.out)
        return BG_EINVAL;
    a.lse = (float *)a.l;
    a.ntasks = bg__cpu_ntasks(c, (long)B * T * nh, 2L * T * hs);
    bg__pool_run(bg__cpu(c)->pool, attn_fwd_task, &a, a.ntasks);
    return a.failed ? oom(c, "attention_train", sizeof(float) * (size_t)T) : BG_OK;
}

int bg__cpu_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv, bg_tview dout,
                               bg_tview q, bg_tview k, bg_tview v, bg_tview out, bg_tview lse,
                               int B, int T, int nh, int nkv, int hs)
{
    const char *op = "attention_backward";
    attn_ctx a = {.B = B, .T = T, .nh = nh, .nkv = nkv, .hs = hs};
    if (attn_views(c, op, &a, q, k, v, lse) != BG_OK)
        return BG_EINVAL;
    size_t rows = (size_t)B * T;
    a.o = bg__cpu_span(c, op, "out", out, rows * nh * hs);
    a.dout = bg__cpu_span(c, op, "dout", dout, rows * nh * hs);
    a.dq = bg__cpu_span(c, op, "dq", dq, rows * nh * hs);
    a.dk = bg__cpu_span(c, op, "dk", dk, rows * nkv * hs);
    a.dv = bg__cpu_span(c, op, "dv", dv, rows * nkv * hs);
    if (!a.o || !a.dout || !a.dq || !a.dk || !a.dv)
        return BG_EINVAL;
    bg__pool_run(bg__cpu(c)->pool, attn_bwd_task, &a, B * nkv);
    return a.failed ? oom(c, op, sizeof(float) * (size_t)bg__cpu_attend_bwd_scratch(T, hs)) : BG_OK;
}

/* ---- xent ------------------------------------------------------------------------ */

typedef struct xent_ctx {
    float *lp, *dl;
    const float *logits, *wt;
    const int32_t *ids;
    int T, V, ntasks;
} xent_ctx;

/* Elements per float partial sum before it is added into the double. */
#define XENT_FLUSH 256

/* The three passes of a row over its first n entries (n a multiple of
 * lanes; the row function does the rest in C): the max from m, the sum of
 * e = exp(l - mx) with e stored in d, and d *= s. */
typedef struct xent_isa {
    int lanes;
    float (*max)(const float *l, int n, float m);
    double (*exp_sum)(const float *l, float *d, int n, float mx);
    void (*scale)(float *d, int n, float s);
} xent_isa;

static float max_c(const float *l, int n, float m)
{
    for (int i = 0; i < n; i++)
        m = l[i] > m ? l[i] : m;
    return m;
}

static double exp_sum_c(const float *l, float *d, int n, float mx)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float e = expf(l[i] - mx);
        d[i] = e;
        sum += e;
    }
    return sum;
}

static void scale_c(float *d, int n, float s)
{
    for (int i = 0; i < n; i++)
        d[i] *= s;
}

static const xent_isa XENT_C = {1, max_c, exp_sum_c, scale_c};

#ifdef BG_X86
BG_TAVX2 static float max_avx2(const float *l, int n, float m0)
{
    __m256 m = _mm256_set1_ps(m0);
    for (int i = 0; i < n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(l + i));
    return bg__hmax256(m);
}

BG_TAVX2 static double exp_sum_avx2(const float *l, float *d, int n, float mx)
{
    __m256 vmx = _mm256_set1_ps(mx);
    double sum = 0.0;
    for (int i = 0; i < n;) {
        int end = i + XENT_FLUSH < n ? i + XENT_FLUSH : n;
        __m256 acc = _mm256_setzero_ps();
        for (; i < end; i += 8) {
            __m256 e = bg__expv_avx2(_mm256_sub_ps(_mm256_loadu_ps(l + i), vmx));
            _mm256_storeu_ps(d + i, e);
            acc = _mm256_add_ps(acc, e);
        }
        sum += bg__hsum256(acc);
    }
    return sum;
}

BG_TAVX2 static void scale_avx2(float *d, int n, float s)
{
    __m256 vs = _mm256_set1_ps(s);
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(d + i), vs));
}

BG_T512 static float max_avx512(const float *l, int n, float m0)
{
    __m512 m = _mm512_set1_ps(m0);
    for (int i = 0; i < n; i += 16)
        m = _mm512_max_ps(m, _mm512_loadu_ps(l + i));
    return _mm512_reduce_max_ps(m);
}

BG_T512 static double exp_sum_avx512(const float *l, float *d, int n, float mx)
{
    __m512 vmx = _mm512_set1_ps(mx);
    double sum = 0.0;
    for (int i = 0; i < n;) {
        int end = i + XENT_FLUSH < n ? i + XENT_FLUSH : n;
        __m512 acc = _mm512_setzero_ps();
        for (; i < end; i += 16) {
            __m512 e = bg__expv_avx512(_mm512_sub_ps(_mm512_loadu_ps(l + i), vmx));
            _mm512_storeu_ps(d + i, e);
            acc = _mm512_add_ps(acc, e);
        }
        sum += _mm512_reduce_add_ps(acc);
    }
    return sum;
}

BG_T512 static void scale_avx512(float *d, int n, float s)
{
    __m512 vs = _mm512_set1_ps(s);
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(d + i, _mm512_mul_ps(_mm512_loadu_ps(d + i), vs));
}

static const xent_isa XENT_AVX2 = {8, max_avx2, exp_sum_avx2, scale_avx2};
static const xent_isa XENT_AVX512 = {16, max_avx512, exp_sum_avx512, scale_avx512};
#endif

/* One row: lp = l[tgt] - lse; d = w softmax(l) - w onehot(tgt); d may be l
 * (l[tgt] is read before anything is written). */
static void xent_row(const xent_isa *v, const float *l, float *d, int V, int tgt, float w,
                     float *lp)
{
    float lt = l[tgt];
    int nv = V / v->lanes * v->lanes;
    float mx = max_c(l + nv, V - nv, v->max(l, nv, l[0]));
    double sum = v->exp_sum(l, d, nv, mx) + exp_sum_c(l + nv, d + nv, V - nv, mx);
    *lp = lt - (mx + (float)log(sum));
    float scale = (float)(w / sum);
    v->scale(d, nv, scale);
    scale_c(d + nv, V - nv, scale);
    d[tgt] -= w;
}

static void xent_task(void *vctx, int t)
{
    const xent_ctx *x = vctx;
    long r0, r1;
    bg__cpu_task_range(t, x->ntasks, x->T, &r0, &r1);
    const xent_isa *v = &XENT_C;
#ifdef BG_X86
    int k = bg__cpu_kernel();
    v = k == BG__KERN_AVX512 ? &XENT_AVX512 : k == BG__KERN_AVX2 ? &XENT_AVX2 : v;
#endif
    for (long row = r0; row < r1; row++)
        xent_row(v, x->logits + row * x->V, x->dl + row * x->V, x->V, x->ids[row], x->wt[row],
                 &x->lp[row]);
}

int bg__cpu_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                 bg_tview weights, int T, int V)
{
    xent_ctx x = {.T = T, .V = V};
    x.lp = bg__cpu_span(c, "xent", "lp", lp, (size_t)T);
    x.dl = bg__cpu_span(c, "xent", "dlogits", dlogits, (size_t)T * V);
    x.logits = bg__cpu_span(c, "xent", "logits", logits, (size_t)T * V);
    x.ids = (const int32_t *)bg__cpu_span(c, "xent", "targets", targets, (size_t)T);
    x.wt = bg__cpu_span(c, "xent", "weights", weights, (size_t)T);
    if (!x.lp || !x.dl || !x.logits || !x.ids || !x.wt || !bg__cpu_ids_ok(c, "xent", x.ids, T, V))
        return BG_EINVAL;
    x.ntasks = bg__cpu_ntasks(c, T, 24L * V);
    bg__pool_run(bg__cpu(c)->pool, xent_task, &x, x.ntasks);
    return BG_OK;
}
