/*
 * bench_vulkan_train.c — the training ops of compute.h on the Vulkan backend
 * against the CPU backend in the same run (bench_vulkan --train): each
 * backward op, the fused loss, AdamW, and one training step's GEMMs
 * (forward, backward for the input and for the weight of every matmul of
 * every layer plus the classifier) with their GFLOP/s and, given the card's
 * FP32 peak (--peak-tflops), the share of it.
 *
 * Shapes: stories260K's (dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads,
 * vocab 512) with batch 4 x 64 tokens by default, small enough for lavapipe;
 * --big: the 15M llama2.c model (dim 288, hidden 768, 6 layers, 6 heads,
 * vocab 32000, seq 256) with batch 32 — the GPU check of issue 13
 * (bench/vulkan/gpu-check.sh). The classifier's logits of a big batch are
 * produced in row chunks of at most 16M floats, as a trainer does, so no
 * view exceeds maxStorageBufferRange.
 *
 * Timing as bench_vulkan.c: wall clock around begin..submit (fence wait
 * included), best of at least 3 runs after a warm-up. Buffers hold values in
 * [-1, 1); token and target ids are valid. Not a test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_vulkan.h"
#include "common/bg_time.h"

typedef struct tshape {
    const char *name;
    int dim, hidden, layers, nh, nkv, vocab, T, B;
} tshape;

/* Buffers of one backend for one shape. */
typedef struct tbufs {
    bg_compute *c;
    const tshape *s;
    int M; /* B * T rows */
    bg_cbuf *x, *dy, *dx, *w, *dw, *h, *g, *logits, *tok, *weights, *q, *k, *v, *o, *lse;
    bg_cbuf *dq, *dk, *dv, *lp, *p, *m, *mv, *gsq;
} tbufs;

static bg_cbuf *fbuf(bg_compute *c, size_t elems)
{
    return bench_buf(c, elems);
}

static bg_cbuf *ibuf(bg_compute *c, size_t n, int hi)
{
    bg_cbuf *b = NULL;
    bg_err err;
    if (bg_cbuf_create(c, n * 4, &b, &err) != BG_OK)
        bench_die("buffer", &err);
    int32_t *t = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)((i * 2654435761u) % (unsigned)hi);
    if (bg_cbuf_write(c, b, 0, t, n * 4, &err) != BG_OK)
        bench_die("write", &err);
    free(t);
    return b;
}

static size_t chunk_rows(const tshape *s, int M)
{
    size_t r = ((size_t)16 << 20) / (size_t)s->vocab;
    r = r < 1 ? 1 : r;
    return r < (size_t)M ? r : (size_t)M;
}

static void tb_init(tbufs *b, bg_compute *c, const tshape *s)
{
    memset(b, 0, sizeof(*b));
    b->c = c;
    b->s = s;
    b->M = s->B * s->T;
    size_t M = (size_t)b->M, wide = (size_t)(s->hidden > s->dim ? s->hidden : s->dim);
    size_t hs = (size_t)s->dim / s->nh, kvd = (size_t)s->nkv * hs;
    size_t wmax =
        (size_t)s->vocab * s->dim > wide * s->dim ? (size_t)s->vocab * s->dim : wide * s->dim;
    b->x = fbuf(c, M * wide);
    b->dy = fbuf(c, M * wide);
    b->dx = fbuf(c, M * wide);
    b->w = fbuf(c, wmax);
    b->dw = fbuf(c, wmax);
    b->h = fbuf(c, M * s->hidden);
    b->g = fbuf(c, M * s->hidden);
    b->logits = fbuf(c, chunk_rows(s, b->M) * s->vocab);
    b->tok = ibuf(c, M, s->vocab);
    b->weights = fbuf(c, M);
    b->q = fbuf(c, M * s->dim);
    b->k = fbuf(c, M * kvd);
    b->v = fbuf(c, M * kvd);
    b->o = fbuf(c, M * s->dim);
    b->lse = fbuf(c, M * s->nh);
    b->dq = fbuf(c, M * s->dim);
    b->dk = fbuf(c, M * kvd);
    b->dv = fbuf(c, M * kvd);
    b->lp = fbuf(c, M);
    b->p = fbuf(c, wmax);
    b->m = fbuf(c, wmax);
    b->mv = fbuf(c, wmax);
    b->gsq = fbuf(c, 1);
}

static void tb_close(tbufs *b)
{
    bg_cbuf **all[] = {&b->x,   &b->dy,      &b->dx, &b->w, &b->dw, &b->h,  &b->g,   &b->logits,
                       &b->tok, &b->weights, &b->q,  &b->k, &b->v,  &b->o,  &b->lse, &b->dq,
                       &b->dk,  &b->dv,      &b->lp, &b->p, &b->m,  &b->mv, &b->gsq};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        bg_cbuf_destroy(b->c, *all[i]);
}

static bg_tview V(bg_cbuf *b)
{
    return (bg_tview){b, 0};
}

typedef enum {
    W_MM_BX,  /* matmul_backward_x of one projection */
    W_MM_BW,  /* matmul_backward_w of one projection */
    W_RMS,    /* rmsnorm_backward over the batch */
    W_ATT,    /* attention_train + attention_backward of one layer */
    W_SWIGLU, /* swiglu_backward over the batch */
    W_XENT,   /* xent over one chunk of logits */
    W_EMBED,  /* embed_backward of the batch */
    W_ADAMW,  /* one AdamW step over the classifier-sized tensor */
    W_GEMMS,  /* every GEMM of a training step */
} work;

typedef struct job {
    work w;
    int N, K; /* the projection's w[N, K] (W_MM_*) */
} job;

/* Every matmul of one training step at M rows: forward, backward_x,
 * backward_w of the 7 projections of each layer and the classifier (in
 * row chunks); barriers between dependent steps. Returns its FLOPs. */
static double gemms(const tbufs *b, int record)
{
    const tshape *s = b->s;
    int D = s->dim, H = s->hidden, M = b->M;
    int hs = D / s->nh, kvd = s->nkv * hs;
    int proj[7][2] = {{D, D}, {kvd, D}, {kvd, D}, {D, D}, {H, D}, {H, D}, {D, H}};
    double flop = 0.0;
    bg_compute *c = b->c;
    for (int l = 0; l < s->layers; l++)
        for (int i = 0; i < 7; i++) {
            int N = proj[i][0], K = proj[i][1];
            flop += 3.0 * 2.0 * M * N * K;
            if (!record)
                continue;
            bg_op_matmul(c, V(b->dy), V(b->x), V(b->w), M, N, K);
            bg_compute_barrier(c);
            bg_op_matmul_backward_x(c, V(b->dx), V(b->dy), V(b->w), M, N, K, 0);
            bg_op_matmul_backward_w(c, V(b->dw), V(b->dy), V(b->x), M, N, K);
            bg_compute_barrier(c);
        }
    size_t cr = chunk_rows(s, M);
    for (size_t r0 = 0; r0 < (size_t)M; r0 += cr) {
        int mc = (int)((size_t)M - r0 < cr ? (size_t)M - r0 : cr);
        flop += 3.0 * 2.0 * mc * (double)s->vocab * D;
        if (!record)
            continue;
        bg_tview xr = {b->x, r0 * (size_t)D}, dxr = {b->dx, r0 * (size_t)D};
        bg_op_matmul(c, V(b->logits), xr, V(b->w), mc, s->vocab, D);
        bg_compute_barrier(c);
        bg_op_matmul_backward_x(c, dxr, V(b->logits), V(b->w), mc, s->vocab, D, 0);
        bg_op_matmul_backward_w(c, V(b->dw), V(b->logits), xr, mc, s->vocab, D);
        bg_compute_barrier(c);
    }
    return flop;
}

static void record(const tbufs *b, job j)
{
    const tshape *s = b->s;
    bg_compute *c = b->c;
    int M = b->M, D = s->dim, hs = s->dim / s->nh;
    switch (j.w) {
    case W_MM_BX:
        bg_op_matmul_backward_x(c, V(b->dx), V(b->dy), V(b->w), M, j.N, j.K, 0);
        break;
    case W_MM_BW:
        bg_op_matmul_backward_w(c, V(b->dw), V(b->dy), V(b->x), M, j.N, j.K);
        break;
    case W_RMS:
        bg_op_rmsnorm_backward(c, V(b->dx), V(b->dw), V(b->dy), V(b->x), V(b->w), M, D, 1e-5f);
        break;
    case W_ATT:
        bg_op_attention_train(c, V(b->o), V(b->lse), V(b->q), V(b->k), V(b->v), s->B, s->T, s->nh,
                              s->nkv, hs);
        bg_compute_barrier(c);
        bg_op_attention_backward(c, V(b->dq), V(b->dk), V(b->dv), V(b->o), V(b->q), V(b->k),
                                 V(b->v), V(b->o), V(b->lse), s->B, s->T, s->nh, s->nkv, hs);
        break;
    case W_SWIGLU:
        bg_op_swiglu_backward(c, V(b->dx), V(b->dy), V(b->dy), V(b->h), V(b->g), M * s->hidden);
        break;
    case W_XENT:
        bg_op_xent(c, V(b->lp), V(b->logits), V(b->logits), V(b->tok), V(b->weights),
                   (int)chunk_rows(s, M), s->vocab);
        break;
    case W_EMBED:
        bg_op_embed_backward(c, V(b->dw), V(b->dy), V(b->tok), M, D);
        break;
    case W_ADAMW: {
        bg_adamw_params hp = {.lr = 1e-4f,
                              .beta1 = 0.9f,
                              .beta2 = 0.95f,
                              .eps = 1e-8f,
                              .weight_decay = 0.1f,
                              .max_norm = 1.0f,
                              .step = 1};
        bg_op_sumsq(c, V(b->gsq), V(b->dw), s->vocab * D);
        bg_compute_barrier(c);
        bg_op_adamw(c, V(b->p), V(b->dw), V(b->m), V(b->mv), V(b->gsq), 1, s->vocab * D, &hp);
        break;
    }
    case W_GEMMS:
        gemms(b, 1);
        break;
    }
}

/* Seconds per run of the job on b's backend: best of at least 3 runs after
 * a warm-up, for at least 0.3 s (a GPU raises its clocks under load). */
static double time_job(const tbufs *b, job j)
{
    bg_err err;
    double best = 1e30;
    uint64_t start = bg_now_ns();
    for (int trial = 0; trial < 4 || (trial < 200 && bg_now_ns() - start < 300000000ull); trial++) {
        uint64_t t0 = bg_now_ns();
        if (bg_compute_begin(b->c, &err) != BG_OK)
            bench_die("begin", &err);
        record(b, j);
        if (bg_compute_submit(b->c, &err) != BG_OK)
            bench_die("submit", &err);
        double dt = (double)(bg_now_ns() - t0) * 1e-9;
        if (trial > 0 && dt < best)
            best = dt;
    }
    return best;
}

static void row(const tbufs *cpu, const tbufs *vk, const char *name, job j, double flop,
                double peak_tflops)
{
    double tc = cpu ? time_job(cpu, j) : NAN, tv = time_job(vk, j);
    if (flop > 0) {
        printf("| %-44s | %10.2f | %10.2f | %8.2f |", name, flop / tc / 1e9, flop / tv / 1e9,
               tc / tv);
        if (peak_tflops > 0)
            printf(" %.1f%% of %.1f TFLOP/s FP32", 100.0 * flop / tv / 1e12 / peak_tflops,
                   peak_tflops);
        printf("\n");
    } else {
        printf("| %-44s | %10.1f | %10.1f | %8.2f |\n", name, tc * 1e6, tv * 1e6, tc / tv);
    }
    fflush(stdout);
}

void bench_train(bg_compute *cpu, bg_compute *vk, int big, int no_cpu, double peak_tflops)
{
    static const tshape small = {"stories260K, batch 4 x 64", 64, 172, 5, 8, 4, 512, 64, 4};
    static const tshape s15m = {"15M, batch 32 x 256", 288, 768, 6, 6, 6, 32000, 256, 32};
    const tshape *s = big ? &s15m : &small;
    tbufs bc, bv;
    if (!no_cpu)
        tb_init(&bc, cpu, s);
    tb_init(&bv, vk, s);
    const tbufs *pc = no_cpu ? NULL : &bc;
    int M = bv.M, D = s->dim, H = s->hidden;
    printf("| %-44s | %10s | %10s | %8s |\n", "training ops, us per op (ratio cpu/vk)", "", "", "");
    printf("| shape: %-37s | %10s | %10s | %8s |\n", s->name, "", "", "");
    char name[96];
    int proj[3][2] = {{D, D}, {H, D}, {D, H}};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "matmul_backward_x %dx%dx%d", M, proj[i][0], proj[i][1]);
        row(pc, &bv, name, (job){W_MM_BX, proj[i][0], proj[i][1]}, 0, 0);
        snprintf(name, sizeof(name), "matmul_backward_w %dx%dx%d", M, proj[i][0], proj[i][1]);
        row(pc, &bv, name, (job){W_MM_BW, proj[i][0], proj[i][1]}, 0, 0);
    }
    snprintf(name, sizeof(name), "rmsnorm_backward %dx%d", M, D);
    row(pc, &bv, name, (job){W_RMS, 0, 0}, 0, 0);
    snprintf(name, sizeof(name), "attention_train+backward B=%d T=%d", s->B, s->T);
    row(pc, &bv, name, (job){W_ATT, 0, 0}, 0, 0);
    snprintf(name, sizeof(name), "swiglu_backward n=%d", M * H);
    row(pc, &bv, name, (job){W_SWIGLU, 0, 0}, 0, 0);
    snprintf(name, sizeof(name), "xent %zux%d", chunk_rows(s, M), s->vocab);
    row(pc, &bv, name, (job){W_XENT, 0, 0}, 0, 0);
    snprintf(name, sizeof(name), "embed_backward T=%d vocab=%d", M, s->vocab);
    row(pc, &bv, name, (job){W_EMBED, 0, 0}, 0, 0);
    snprintf(name, sizeof(name), "sumsq+adamw n=%d", s->vocab * D);
    row(pc, &bv, name, (job){W_ADAMW, 0, 0}, 0, 0);
    double flop = gemms(&bv, 0);
    snprintf(name, sizeof(name), "train-step GEMMs (%.1f GFLOP), GFLOP/s", flop / 1e9);
    row(pc, &bv, name, (job){W_GEMMS, 0, 0}, flop, peak_tflops);
    if (!no_cpu)
        tb_close(&bc);
    tb_close(&bv);
}
