/*
 * compute_cpu.c — the CPU backend: host buffers, the vtable, and every op
 * except matmul (compute_cpu_gemm.c; packed weights:
 * compute_cpu_gemm_packed.c).
 *
 * Why shaped so: the CPU runs each op at once when it is recorded, so
 * begin/barrier/submit are bookkeeping only. Ops split their rows (or
 * heads, or element chunks) into tasks for the persistent pool
 * (compute_cpu_pool.c); tiny ops run inline because waking workers costs
 * more than the work. Inner loops use bg__cpu_dot/softmax
 * (compute_cpu_gemm.c; AVX2+FMA when the CPU has it) and the attention
 * kernel (compute_cpu_attend.c; AVX-512 or AVX2 when the CPU has them).
 * Lanes (bg_compute_run_lanes) are single-threaded sibling backends over
 * the same buffers, one per pool thread, so a caller with many small
 * independent parts (nn_batch.c's branches) wakes the pool once for all of
 * them instead of around each op. swiglu uses the attention kernel's vector
 * exp (2 ulp; inputs clamped to exp's range), RoPE computes its
 * frequencies once per op.
 *
 * Invariants
 *   - every buffer is a 64-byte-aligned host allocation of `bytes` bytes,
 *     linked into its backend's list; destroy frees what is left;
 *   - every op checks that each view it touches lies inside its buffer and
 *     that token/target ids are in range before reading them; a failure
 *     poisons the recording with a message naming the op and the view.
 * Threads: one caller thread at a time (compute.h); workers only run tasks.
 * Ownership: the backend owns its buffers and its pool.
 */
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_cpu.h"
#include "compute/compute_backend.h"
#include "compute/compute_cpu.h"

/* ---- lifecycle and buffers --------------------------------------------- */

static void cpu_destroy(bg_compute *c)
{
    bg__cpu_backend *b = bg__cpu(c);
    while (b->bufs) {
        bg_cbuf *n = b->bufs->next;
        free(b->bufs->data);
        free(b->bufs);
        b->bufs = n;
    }
    for (int i = 0; b->lane && i < BG_COMPUTE_MAX_LANES; i++)
        if (b->lane[i])
            cpu_destroy(&b->lane[i]->base);
    free(b->lane);
    bg__pool_destroy(b->pool);
    free(b);
}

static int cpu_buf_create(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err)
{
    bg__cpu_backend *b = bg__cpu(c);
    bg_cbuf *buf = calloc(1, sizeof *buf);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (buf && rounded >= bytes)
        buf->data = aligned_alloc(64, rounded);
    if (!buf || !buf->data) {
        free(buf);
        return bg_err_set(err, BG_ENOMEM, "cpu backend: cannot allocate a buffer of %zu bytes",
                          bytes);
    }
    memset(buf->data, 0, rounded);
    buf->bytes = bytes;
    buf->next = b->bufs;
    if (b->bufs)
        b->bufs->prev = buf;
    b->bufs = buf;
    *out = buf;
    return BG_OK;
}

static void cpu_buf_destroy(bg_compute *c, bg_cbuf *buf)
{
    bg__cpu_backend *b = bg__cpu(c);
    if (buf->prev)
        buf->prev->next = buf->next;
    else
        b->bufs = buf->next;
    if (buf->next)
        buf->next->prev = buf->prev;
    free(buf->data);
    free(buf);
}

static int range_ok(bg_cbuf *buf, size_t off, size_t n, const char *what, bg_err *err)
{
    if (off > buf->bytes || n > buf->bytes - off)
        return bg_err_set(err, BG_EINVAL, "%s: bytes [%zu, %zu) outside a buffer of %zu bytes",
                          what, off, off + n, buf->bytes);
    return BG_OK;
}

static int cpu_buf_write(bg_compute *c, bg_cbuf *buf, size_t off, const void *src, size_t n,
                         bg_err *err)
{
    (void)c;
    int rc = range_ok(buf, off, n, "bg_cbuf_write", err);
    if (rc == BG_OK)
        memcpy((char *)buf->data + off, src, n);
    return rc;
}

static int cpu_buf_read(bg_compute *c, bg_cbuf *buf, size_t off, void *dst, size_t n, bg_err *err)
{
    (void)c;
    int rc = range_ok(buf, off, n, "bg_cbuf_read", err);
    if (rc == BG_OK)
        memcpy(dst, (char *)buf->data + off, n);
    return rc;
}

static int cpu_begin(bg_compute *c, bg_err *err)
{
    (void)c;
    (void)err;
    return BG_OK;
}

static void cpu_barrier(bg_compute *c)
{
    (void)c; /* each op completed before its function returned */
}

static int cpu_submit(bg_compute *c, bg_err *err)
{
    (void)c;
    (void)err;
    return BG_OK;
}

/* ---- ops ------------------------------------------------------------------ */

static int cpu_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K)
{
    float *o = bg__cpu_span(c, "matmul", "out", out, (size_t)M * N);
    const float *xp = bg__cpu_span(c, "matmul", "x", x, (size_t)M * K);
    const float *wp = bg__cpu_span(c, "matmul", "w", w, (size_t)N * K);
    if (!o || !xp || !wp)
        return BG_EINVAL;
    bg__cpu_matmul(bg__cpu(c)->pool, o, xp, wp, M, N, K, bg__cpu(c)->bf16);
    return BG_OK;
}

/* Row-parallel ops: one rows_ctx, one per-row function, one task driver. */
typedef struct rows_ctx rows_ctx;
struct rows_ctx {
    void (*row)(const rows_ctx *r, long row);
    float *a;
    const float *b, *w;
    const int32_t *ids;
    int rows, n, ntasks;
    int pos0, nh, nkv, hs; /* rope */
    const float *freq;     /* rope: [hs/2] 1 / 10000^(i/hs), computed once per op */
    float eps, sign;       /* sign: rope +1 forward, -1 backward (transposed rotation) */
};

static void rows_task(void *v, int t)
{
    const rows_ctx *r = v;
    long r0, r1;
    bg__cpu_task_range(t, r->ntasks, r->rows, &r0, &r1);
    for (long row = r0; row < r1; row++)
        r->row(r, row);
}

/* Runs r->row over r->rows rows of about `cost` flops each. */
static void rows_run(bg_compute *c, rows_ctx *r, long cost)
{
    r->ntasks = bg__cpu_ntasks(c, r->rows, cost);
    bg__pool_run(bg__cpu(c)->pool, rows_task, r, r->ntasks);
}

static float row_max(const float *v, int n)
{
    float mx = v[0];
    for (int i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    return mx;
}

static void rmsnorm_row(const rows_ctx *r, long row)
{
    const float *x = r->b + row * r->n;
    float *o = r->a + row * r->n;
    float s = 1.0f / sqrtf(bg__cpu_dot(x, x, r->n) / (float)r->n + r->eps);
    for (int i = 0; i < r->n; i++)
        o[i] = r->w[i] * (s * x[i]);
}

static int cpu_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps)
{
    rows_ctx r = {.row = rmsnorm_row, .rows = T, .n = n, .eps = eps};
    r.a = bg__cpu_span(c, "rmsnorm", "out", out, (size_t)T * n);
    r.b = bg__cpu_span(c, "rmsnorm", "x", x, (size_t)T * n);
    r.w = bg__cpu_span(c, "rmsnorm", "w", w, (size_t)n);
    if (!r.a || !r.b || !r.w)
        return BG_EINVAL;
    rows_run(c, &r, 3L * n);
    return BG_OK;
}

void bg__cpu_rope_freq(float *freq, int hs)
{
    for (int i = 0; i + 1 < hs; i += 2)
        freq[i / 2] = 1.0f / powf(10000.0f, (float)i / (float)hs);
}

static void rotate_heads(float *v, int heads, int hs, int i, float fcr, float fci)
{
    for (int h = 0; h < heads; h++) {
        float *p = v + h * hs + i;
        float a = p[0], b = p[1];
        p[0] = a * fcr - b * fci;
        p[1] = a * fci + b * fcr;
    }
}

/* one token: a = q, b = k; each (cos, sin) pair is computed once for all heads */
static void rope_row(const rows_ctx *r, long row)
{
    float pos = (float)(r->pos0 + row);
    float *qr = r->a + row * (long)r->nh * r->hs;
    float *kr = (float *)r->b + row * (long)r->nkv * r->hs;
    for (int i = 0; i + 1 < r->hs; i += 2) {
        float ang = pos * r->freq[i / 2];
        float fcr = cosf(ang), fci = r->sign * sinf(ang);
        rotate_heads(qr, r->nh, r->hs, i, fcr, fci);
        rotate_heads(kr, r->nkv, r->hs, i, fcr, fci);
    }
}

static int rope_op(bg_compute *c, const char *op, float sign, bg_tview q, bg_tview k, int T,
                   int pos0, int nh, int nkv, int hs)
{
    rows_ctx r = {
        .row = rope_row, .rows = T, .pos0 = pos0, .nh = nh, .nkv = nkv, .hs = hs, .sign = sign};
    r.a = bg__cpu_span(c, op, sign > 0 ? "q" : "dq", q, (size_t)T * nh * hs);
    r.b = bg__cpu_span(c, op, sign > 0 ? "k" : "dk", k, (size_t)T * nkv * hs);
    if (!r.a || !r.b)
        return BG_EINVAL;
    float fixed[64], *freq = hs / 2 <= 64 ? fixed : malloc(sizeof(float) * (size_t)(hs / 2 + 1));
    if (!freq) {
        c->poisoned = 1;
        return bg_err_set(&c->poison_err, BG_ENOMEM, "compute op %s: out of memory", op);
    }
    bg__cpu_rope_freq(freq, hs);
    r.freq = freq;
    rows_run(c, &r, 8L * (nh + nkv) * hs);
    if (freq != fixed)
        free(freq);
    return BG_OK;
}

static int cpu_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int nh, int nkv, int hs)
{
    return rope_op(c, "rope", 1.0f, q, k, T, pos0, nh, nkv, hs);
}

/* The gradient through a rotation is the transposed rotation: angle negated. */
static int cpu_rope_backward(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int nh,
                             int nkv, int hs)
{
    return rope_op(c, "rope_backward", -1.0f, dq, dk, T, pos0, nh, nkv, hs);
}

static void softmax_row(const rows_ctx *r, long row)
{
    bg__cpu_softmax(r->a + row * r->n, r->n);
}

static int cpu_softmax(bg_compute *c, bg_tview x, int rows, int n)
{
    rows_ctx r = {.row = softmax_row, .rows = rows, .n = n};
    r.a = bg__cpu_span(c, "softmax", "x", x, (size_t)rows * n);
    if (!r.a)
        return BG_EINVAL;
    rows_run(c, &r, 16L * n);
    return BG_OK;
}

typedef struct att_ctx {
    float *out;
    const float *q, *kc, *vc;
    int T, pos0, nh, nkv, hs, ntasks;
    int failed;
} att_ctx;

/* Task t covers (head, token) pairs, head-major, so a task's tokens of one
 * head are one multi-query kernel call (the K/V rows packed once for them);
 * the kernel's scratch is per task. */
static void att_task(void *v, int t)
{
    att_ctx *a = v;
    long r0, r1;
    bg__cpu_task_range(t, a->ntasks, (long)a->T * a->nh, &r0, &r1);
    if (r0 == r1)
        return;
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_scratch(a->pos0 + a->T, a->hs));
    if (!sc) {
        a->failed = 1;
        return;
    }
    int kv_dim = a->nkv * a->hs, group = a->nh / a->nkv;
    for (long i = r0; i < r1;) {
        int h = (int)(i / a->T), tok = (int)(i % a->T);
        long run = a->T - tok < r1 - i ? a->T - tok : r1 - i; /* tokens of head h here */
        long koff = (long)(h / group) * a->hs;
        bg__attend_args q = {.out = a->out + ((long)tok * a->nh + h) * a->hs,
                             .q = a->q + ((long)tok * a->nh + h) * a->hs,
                             .kc = a->kc + koff,
                             .vc = a->vc + koff,
                             .qstride = (long)a->nh * a->hs,
                             .ostride = (long)a->nh * a->hs,
                             .kvstride = kv_dim,
                             .n0 = a->pos0 + tok + 1,
                             .nq = (int)run,
                             .hs = a->hs,
                             .scale = 1.0f / sqrtf((float)a->hs)};
        bg__cpu_attend_causal(&q, sc);
        i += run;
    }
    free(sc);
}

static int cpu_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kc, bg_tview vc, int T,
                         int pos0, int nh, int nkv, int hs, int seq_len)
{
    att_ctx a = {0};
    a.out = bg__cpu_span(c, "attention", "out", out, (size_t)T * nh * hs);
    a.q = bg__cpu_span(c, "attention", "q", q, (size_t)T * nh * hs);
    a.kc = bg__cpu_span(c, "attention", "kcache", kc, (size_t)seq_len * nkv * hs);
    a.vc = bg__cpu_span(c, "attention", "vcache", vc, (size_t)seq_len * nkv * hs);
    if (!a.out || !a.q || !a.kc || !a.vc)
        return BG_EINVAL;
    a.T = T;
    a.pos0 = pos0;
    a.nh = nh;
    a.nkv = nkv;
    a.hs = hs;
    a.ntasks = bg__cpu_ntasks(c, (long)T * nh, 4L * (pos0 + T) * hs);
    bg__pool_run(bg__cpu(c)->pool, att_task, &a, a.ntasks);
    if (a.failed) {
        c->poisoned = 1;
        return bg_err_set(&c->poison_err, BG_ENOMEM,
                          "compute op attention: out of memory for a score row of %d", pos0 + T);
    }
    return BG_OK;
}

/* Elementwise ops over n elements, split in chunks. */
enum { EW_SWIGLU, EW_ADD, EW_COPY };
#define SWIGLU_BLOCK 256 /* a multiple of 16 */

typedef struct ew_ctx {
    float *a;
    const float *b;
    long n;
    int kind, ntasks;
} ew_ctx;

/* The elementwise loops, with restrict-qualified copies for arrays that do
 * not overlap, so the compiler vectorises them. */
typedef float ew_v4 __attribute__((vector_size(16))); /* SSE at the baseline ISA */
typedef int32_t ew_i4 __attribute__((vector_size(16)));

static inline ew_v4 ld4(const float *p)
{
    ew_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void add_apart(float *restrict a, const float *restrict b, long n)
{
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        ew_v4 v = ld4(a + i) + ld4(b + i);
        memcpy(a + i, &v, sizeof v);
    }
    for (; i < n; i++)
        a[i] += b[i];
}

static void add_to(float *a, const float *b, long n, int apart)
{
    if (apart) {
        add_apart(a, b, n);
        return;
    }
    for (long i = 0; i < n; i++)
        a[i] += b[i];
}

static void silu_mul_apart(float *restrict a, const float *restrict ex, const float *restrict b,
                           int n)
{
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        ew_v4 v = ld4(a + j) / (1.0f + ld4(ex + j)) * ld4(b + j);
        memcpy(a + j, &v, sizeof v);
    }
    for (; j < n; j++)
        a[j] = a[j] / (1.0f + ex[j]) * b[j];
}

/* ex[j] = min(-a[j], 80): exp(80) is finite, and x / (1 + e^80) rounds to
 * ~0 as silu does (a NaN stays NaN through a in silu_mul) */
static void neg_clamp(float *restrict ex, const float *restrict a, int n)
{
    int j = 0;
    const ew_v4 lim = {80, 80, 80, 80};
    for (; j + 4 <= n; j += 4) {
        ew_v4 v = -ld4(a + j);
        ew_i4 lt = v < lim, r = ((ew_i4)v & lt) | ((ew_i4)lim & ~lt);
        memcpy(ex + j, &r, sizeof r);
    }
    for (; j < n; j++)
        ex[j] = -a[j] < 80.0f ? -a[j] : 80.0f;
}

/* a = a / (1 + ex) * b, ex = exp(-a) */
static void silu_mul(float *a, const float *ex, const float *b, int n, int apart)
{
    if (apart) {
        silu_mul_apart(a, ex, b, n);
        return;
    }
    for (int j = 0; j < n; j++)
        a[j] = a[j] / (1.0f + ex[j]) * b[j];
}

static void ew_task(void *v, int t)
{
    const ew_ctx *e = v;
    long i0, i1;
    bg__cpu_task_range(t, e->ntasks, e->n, &i0, &i1);
    float *a = e->a;
    const float *b = e->b;
    switch (e->kind) {
    case EW_SWIGLU: /* silu through the vector exp (2 ulp), a block at a time */
        for (long i = i0; i < i1; i += SWIGLU_BLOCK) {
            int n = i1 - i < SWIGLU_BLOCK ? (int)(i1 - i) : SWIGLU_BLOCK;
            float ex[SWIGLU_BLOCK];
            int n16 = (n + 15) & ~15; /* whole vectors: an element's exp must not depend
                                       * on where it falls (expv's tail is libm's expf) */
            neg_clamp(ex, a + i, n);
            memset(ex + n, 0, sizeof(float) * (size_t)(n16 - n));
            bg__cpu_expv(ex, ex, n16);
            silu_mul(a + i, ex, b + i, n, a + i + n <= b + i || b + i + n <= a + i);
        }
        break;
    case EW_ADD:
        add_to(a + i0, b + i0, i1 - i0, a + i1 <= b + i0 || b + i1 <= a + i0);
        break;
    default:
        memmove(a + i0, b + i0, sizeof(float) * (size_t)(i1 - i0));
        break;
    }
}

static int elementwise(bg_compute *c, const char *op, int kind, bg_tview a, bg_tview b, int n)
{
    ew_ctx e = {.n = n, .kind = kind};
    e.a = bg__cpu_span(c, op, kind == EW_COPY ? "dst" : "x", a, (size_t)n);
    e.b = bg__cpu_span(c, op, kind == EW_COPY ? "src" : "y", b, (size_t)n);
    if (!e.a || !e.b)
        return BG_EINVAL;
    /* chunks of at least 16K elements: below that a wake-up costs more */
    e.ntasks = bg__cpu_ntasks(c, (n + 16383) / 16384, 32768L);
    bg__pool_run(bg__cpu(c)->pool, ew_task, &e, e.ntasks);
    return BG_OK;
}

static int cpu_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n)
{
    return elementwise(c, "swiglu", EW_SWIGLU, h, g, n);
}

static int cpu_add(bg_compute *c, bg_tview x, bg_tview y, int n)
{
    return elementwise(c, "add", EW_ADD, x, y, n);
}

static int cpu_copy(bg_compute *c, bg_tview dst, bg_tview src, int n)
{
    return elementwise(c, "copy", EW_COPY, dst, src, n);
}

static int cpu_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim)
{
    float *o = bg__cpu_span(c, "embed", "out", out, (size_t)T * dim);
    const int32_t *ids = (const int32_t *)bg__cpu_span(c, "embed", "tokens", tokens, (size_t)T);
    const float *tab = bg__cpu_span(c, "embed", "table", table, (size_t)dim); /* at least one row */
    if (!o || !ids || !tab)
        return BG_EINVAL;
    long rows = (long)((table.buf->bytes / 4 - table.off) / (size_t)dim);
    if (!bg__cpu_ids_ok(c, "embed", ids, T, rows))
        return BG_EINVAL;
    for (int t = 0; t < T; t++)
        memcpy(o + (long)t * dim, tab + (long)ids[t] * dim, sizeof(float) * (size_t)dim);
    return BG_OK;
}

static void lsg_row(const rows_ctx *r, long row)
{
    const float *l = r->b + row * r->n;
    float mx = row_max(l, r->n), sum = 0.0f;
    for (int i = 0; i < r->n; i++)
        sum += expf(l[i] - mx);
    r->a[row] = l[r->ids[row]] - mx - logf(sum);
}

static int cpu_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets,
                                 int T, int V)
{
    rows_ctx r = {.row = lsg_row, .rows = T, .n = V};
    r.a = bg__cpu_span(c, "logsoftmax_gather", "out", out, (size_t)T);
    r.b = bg__cpu_span(c, "logsoftmax_gather", "logits", logits, (size_t)T * V);
    r.ids = (const int32_t *)bg__cpu_span(c, "logsoftmax_gather", "targets", targets, (size_t)T);
    if (!r.a || !r.b || !r.ids || !bg__cpu_ids_ok(c, "logsoftmax_gather", r.ids, T, V))
        return BG_EINVAL;
    rows_run(c, &r, 16L * V);
    return BG_OK;
}

static void describe(bg__cpu_backend *b)
{
    snprintf(b->base.desc, sizeof b->base.desc, "cpu (%d thread%s, %s%s)", b->nthreads,
             b->nthreads == 1 ? "" : "s", bg__cpu_kernel_name(bg__cpu_kernel()),
             b->bf16 ? ", bf16 matmuls" : "");
}

static void cpu_gemm_scratch(const bg_compute *c, long M, long N, long K, size_t floats[2])
{
    bg__cpu_gemm_scratch(M, N, K, ((const bg__cpu_backend *)c)->bf16, floats);
}

static int cpu_set_precision(bg_compute *c, bg_precision p, bg_err *err)
{
    bg__cpu_backend *b = bg__cpu(c);
    if (p == BG_PRECISION_BF16 && !bg__cpu_has_bf16())
        return bg_err_set(err, BG_EINVAL,
                          "cpu backend: precision bf16 needs the avx512f kernel and a CPU with "
                          "AVX512_BF16 (vdpbf16ps); this one runs %s%s: use precision fp32",
                          bg__cpu_kernel_name(bg__cpu_kernel()),
                          bg__cpu_kernel() == BG__KERN_AVX512 ? " without AVX512_BF16" : "");
    b->bf16 = p == BG_PRECISION_BF16;
    describe(b);
    return BG_OK;
}

/* ---- lanes (compute.h, bg_compute_run_lanes) ------------------------------
 * A lane is a bg__cpu_backend with a pool of one thread (no workers: every
 * op runs inline on the thread that records it) and no buffers of its own;
 * the views it is given point into the parent's buffers, which outlive it.
 * Its GEMM scratch is its own pool's, so lanes never share scratch. Lane i
 * is used by the one pool task i of a run: one thread at a time. Lanes are
 * made when a run first asks for that many, and kept (up to
 * BG_COMPUTE_MAX_LANES) until the backend is destroyed. */

static int cpu_lanes(const bg_compute *c)
{
    const bg__cpu_backend *b = (const bg__cpu_backend *)c;
    return b->is_lane ? 0 : b->nthreads;
}

typedef struct lanes_ctx {
    bg__cpu_backend **lane;
    bg_compute_lane_fn fn;
    void *ctx;
} lanes_ctx;

static void lane_task(void *v, int t)
{
    const lanes_ctx *l = v;
    l->fn(&l->lane[t]->base, l->ctx, t);
}

static const bg_compute_vtbl cpu_vtbl;

static int cpu_run_lanes(bg_compute *c, int n, bg_compute_lane_fn fn, void *ctx, bg_err *err)
{
    bg__cpu_backend *b = bg__cpu(c);
    if (!b->lane && !(b->lane = calloc(BG_COMPUTE_MAX_LANES, sizeof *b->lane)))
        return bg_err_set(err, BG_ENOMEM, "cpu backend: out of memory for the lanes");
    for (int i = 0; i < n; i++) {
        if (b->lane[i])
            continue;
        bg__cpu_backend *l = calloc(1, sizeof *l);
        if (!l)
            return bg_err_set(err, BG_ENOMEM, "cpu backend: out of memory for lane %d", i);
        if (bg__pool_create(1, &l->pool, err) != BG_OK) {
            free(l);
            return BG_ENOMEM;
        }
        l->base.vt = &cpu_vtbl;
        l->base.kind = BG_BACKEND_CPU;
        l->nthreads = 1;
        l->is_lane = 1;
        b->lane[i] = l;
    }
    for (int i = 0; i < n; i++) {
        b->lane[i]->bf16 = b->bf16;
        snprintf(b->lane[i]->base.desc, sizeof b->lane[i]->base.desc, "cpu lane %d", i);
    }
    lanes_ctx l = {b->lane, fn, ctx};
    bg__pool_run(b->pool, lane_task, &l, n);
    return BG_OK;
}

static const bg_compute_vtbl cpu_vtbl = {
    .destroy = cpu_destroy,
    .buf_create = cpu_buf_create,
    .buf_destroy = cpu_buf_destroy,
    .buf_write = cpu_buf_write,
    .buf_read = cpu_buf_read,
    .begin = cpu_begin,
    .barrier = cpu_barrier,
    .submit = cpu_submit,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .softmax = cpu_softmax,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .copy = cpu_copy,
    .embed = cpu_embed,
    .logsoftmax_gather = cpu_logsoftmax_gather,
    .fill = bg__cpu_fill,
    .axpy = bg__cpu_axpy_op,
    .embed_backward = bg__cpu_embed_backward,
    .rmsnorm_backward = bg__cpu_rmsnorm_backward,
    .matmul_backward_x = bg__cpu_matmul_backward_x,
    .matmul_backward_w = bg__cpu_matmul_backward_w,
    .rope_backward = cpu_rope_backward,
    .attention_train = bg__cpu_attention_train,
    .attention_backward = bg__cpu_attention_backward,
    .attention_prefix = bg__cpu_attention_prefix,
    .swiglu_backward = bg__cpu_swiglu_backward,
    .xent = bg__cpu_xent,
    .sumsq = bg__cpu_sumsq,
    .adamw = bg__cpu_adamw,
    .set_precision = cpu_set_precision,
    .lanes = cpu_lanes,
    .run_lanes = cpu_run_lanes,
    .gemm_scratch = cpu_gemm_scratch,
    .pack = bg__cpu_pack,
    .packed_destroy = bg__cpu_packed_destroy,
    .matmul_packed = bg__cpu_matmul_packed,
};

int bg__compute_cpu_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err)
{
    *out = NULL;
    if (bg__cpu_kernel_check(err) != BG_OK)
        return BG_EINVAL;

    int nt = opts->threads > 0 ? opts->threads : bg_cpu_available();
    bg__cpu_backend *b = calloc(1, sizeof *b);
    if (!b)
        return bg_err_set(err, BG_ENOMEM, "cpu backend: out of memory");
    int rc = bg__pool_create(nt, &b->pool, err);
    if (rc != BG_OK) {
        free(b);
        return rc;
    }
    b->base.vt = &cpu_vtbl;
    b->base.kind = BG_BACKEND_CPU;
    b->nthreads = nt;
    describe(b);
    *out = &b->base;
    return BG_OK;
}
