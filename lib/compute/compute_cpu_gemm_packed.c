/*
 * compute_cpu_gemm_packed.c — the CPU backend's weights packed once
 * (bg_compute_pack) and the products that read them (bg_op_matmul_packed).
 *
 * Why: an inference model's weights never change, yet the GEMM
 * (compute_cpu_gemm.c) packs its B operand into panels on every call: for
 * stories260K's batched scoring (~760 rows through five layers of 64-wide
 * projections) that repacking was ~5% of a pass. Here a weight is packed
 * once, when the model is opened, in exactly the GEMM's layout (its hooks
 * bg__cpu_gemm_tile / bg__cpu_gemm_pack give the tile and the packer of
 * the kernel in use), and a product runs the GEMM's tiles over it. Several
 * weights that read the same x (wq, wk, wv; w1, w3) are stacked into one
 * packed operand: one product instead of three, and the stack is padded to
 * the tile's width once (w1|w3 of 172 rows each: 11 panels of 32 instead
 * of 12). Each output column goes to its own weight's output.
 *
 * Bits: an output element is the kernel's sum over k of one x row and one
 * weight row, in k order, whichever panel or column of the tile holds it,
 * and full row panels are read in place (the tile's rows variant) exactly
 * where the GEMM reads them so, the last partial panel packed as the GEMM
 * packs it. So a packed product equals bg__cpu_matmul of each weight bit
 * for bit (tested, both kernels, odd shapes); M <= 2 runs the same
 * matvecs bg__cpu_matmul runs, over the weights in place.
 *
 * Limits: one K block only (K up to the kernel's kc: 1024 with AVX-512,
 * 512 with AVX2, 256 portable), and at most BG_COMPUTE_PACK_MAX_FLOATS
 * floats per packed operand; beyond either, BG_EUNAVAIL and the caller
 * keeps bg_op_matmul. FP32 only: with bf16 matmuls set the products go
 * through bg__cpu_matmul (packs nothing here; bf16 is a training option).
 * Memory: the panels, sum(n) rounded up to the tile width, times K floats
 * (stories260K: 1.05 MB for every projection and the classifier).
 *
 * With `add` (bg_op_matmul_packed_add) a tile adds its sums to the output
 * (out + sum, as the GEMM adds a later K block): the residual add of the
 * forward folded into the product, the same bits as bg_op_add after it.
 *
 * With a position per row (bg_op_matmul_packed_rope) the Q/K/V product
 * rotates q's and k's columns in its write-back, while the tile is in L1:
 * no pass of its own, and cos/sin come from a table made once per call
 * for the rows' positions (a group's ~380 rows share ~50), not one sincosf
 * per row and pair (the op and its sincosf were ~5% of a pass; now ~2%).
 * The rotation is bg_op_rope's with the same bits (rot_c); the table is
 * per position (at most the rows) or per row, 2 x q's width floats each.
 *
 * Threads: packing on the backend's thread; a packed operand is immutable,
 * so lanes read it at the same time. Products run their tiles as pool
 * tasks (one task per block of rows x panel; inline in a lane). The scratch
 * for a packed A panel is the driving pool's slot 0.
 * Ownership: bg_cpacked is the caller's (bg_compute_pack's contract); it
 * borrows the weights' buffers for M <= 2.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_cpu.h"

/* RoPE's products and sums stay separate (the bits of rope_row, which is
 * built without FMA): GCC contracts nothing in ISO C mode, clang would
 * fuse x0 * C[j] + x1 * S[j] where rot_c is inlined into a target that
 * has FMA. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define PK_MC 96 /* rows per task (a multiple of every tile's mr), as the GEMM's MC */

struct bg_cpacked {
    int nw, K, N, kernel, npanels;
    int n[BG_COMPUTE_PACK_MAX], col0[BG_COMPUTE_PACK_MAX]; /* each weight's rows in the stack */
    bg_tview w[BG_COMPUTE_PACK_MAX];                       /* borrowed: the M <= 2 matvecs */
    bg__gemm_tile t;
    float *panels; /* [npanels][K][nr], 64-byte aligned, zero past row N */
};

/* The weight (segment) holding stacked row r. */
static int seg_of(const bg_cpacked *p, int r)
{
    int s = 0;
    while (s + 1 < p->nw && r >= p->col0[s + 1])
        s++;
    return s;
}

int bg__cpu_pack(bg_compute *c, const bg_tview *w, const int *n, int nw, int K, bg_cpacked **out,
                 bg_err *err)
{
    int kernel = bg__cpu_kernel();
    bg__gemm_tile t;
    bg__cpu_gemm_tile(kernel, &t);
    long N = 0;
    for (int i = 0; i < nw; i++)
        N += n[i];
    long npanels = (N + t.nr - 1) / t.nr, floats = npanels * t.nr * (long)K;
    if (K > t.kc || floats > BG_COMPUTE_PACK_MAX_FLOATS || bg__cpu(c)->bf16)
        return bg_err_set(err, BG_EUNAVAIL,
                          "bg_compute_pack: %ld x %d weights not packed (the %s kernel packs K "
                          "up to %d, at most %ld floats, fp32 only); use bg_op_matmul",
                          N, K, bg__cpu_kernel_name(kernel), t.kc, BG_COMPUTE_PACK_MAX_FLOATS);
    const float *src[BG_COMPUTE_PACK_MAX];
    for (int i = 0; i < nw; i++) {
        size_t elems = w[i].buf->bytes / 4, need = (size_t)n[i] * K;
        if (w[i].off > elems || need > elems - w[i].off)
            return bg_err_set(err, BG_EINVAL,
                              "bg_compute_pack: weight %d [%zu, %zu) exceeds its buffer of %zu "
                              "elements",
                              i, w[i].off, w[i].off + need, elems);
        src[i] = w[i].buf->data + w[i].off;
    }
    bg_cpacked *p = calloc(1, sizeof *p);
    float *tmp = malloc(sizeof(float) * (size_t)t.nr * (size_t)K);
    if (p)
        p->panels = aligned_alloc(64, ((size_t)floats * sizeof(float) + 63) & ~(size_t)63);
    if (!p || !tmp || !p->panels) {
        if (p)
            free(p->panels);
        free(p);
        free(tmp);
        return bg_err_set(err, BG_ENOMEM, "bg_compute_pack: out of memory for %ld floats", floats);
    }
    *p = (bg_cpacked){nw, K, (int)N, kernel, (int)npanels, {0}, {0}, {{0}}, t, p->panels};
    for (int i = 0, c0 = 0; i < nw; c0 += n[i], i++) {
        p->n[i] = n[i];
        p->col0[i] = c0;
        p->w[i] = w[i];
    }
    for (int q = 0; q < p->npanels; q++) {
        float *dst = p->panels + (size_t)q * t.nr * K;
        int r0 = q * t.nr, r1 = r0 + t.nr < p->N ? r0 + t.nr : p->N, s = seg_of(p, r0);
        if (r1 <= p->col0[s] + n[s]) { /* the panel lies in one weight: pack from it */
            bg__cpu_gemm_pack(kernel, dst, src[s], K, r0 - p->col0[s], n[s], K, t.nr, 1);
            continue;
        }
        for (int r = r0; r < r1; r++) { /* it straddles two: its rows gathered first */
            int sr = seg_of(p, r);
            memcpy(tmp + (size_t)(r - r0) * K, src[sr] + (size_t)(r - p->col0[sr]) * K,
                   sizeof(float) * (size_t)K);
        }
        bg__cpu_gemm_pack(kernel, dst, tmp, K, 0, r1 - r0, K, t.nr, 1);
    }
    free(tmp);
    *out = p;
    return BG_OK;
}

void bg__cpu_packed_destroy(bg_compute *c, bg_cpacked *p)
{
    (void)c;
    free(p->panels);
    free(p);
}

typedef struct pk_ctx {
    const bg_cpacked *w;
    float *out[BG_COMPUTE_PACK_MAX];
    const float *x;
    const float *ap; /* packed A panels of the chunk: from row pa0 on */
    int M, m0, m1, pa0;
    int add; /* out += (the tile adds its sums to what is there: out + sum) */
    /* RoPE of out[0], out[1] (NULL cs: none): entry t (t = pos[r] - pmin
     * when by_pos, else r) is two rows of width cw = q's width: C[j] =
     * cos and S[j] = -sin (j even) or +sin (j odd) of pair (j % hs) / 2 */
    const float *cs;
    const int32_t *pos;
    int pmin, by_pos, hs, cw;
} pk_ctx;

/* v[j] = v[j] C[j] + v[j ^ 1] S[j] for j in [0, n), n even: bg_op_rope's
 * rotation (compute_cpu.c, rotate_heads: a c - b s and a s + b c) with
 * the same bits, since b (-s) = -(b s) and a sum does not depend on the
 * order of its two terms; products and sums are separate (no fused
 * multiply-add), as there. */
static void rot_c(float *v, const float *C, const float *S, int n)
{
    for (int j = 0; j < n; j += 2) {
        float x0 = v[j], x1 = v[j + 1];
        v[j] = x0 * C[j] + x1 * S[j];
        v[j + 1] = x1 * C[j + 1] + x0 * S[j + 1];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static void rot_avx512(float *v, const float *C, const float *S,
                                                          int n)
{
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 x = _mm512_loadu_ps(v + j), sw = _mm512_permute_ps(x, 0xB1); /* pairs swapped */
        _mm512_storeu_ps(v + j, _mm512_add_ps(_mm512_mul_ps(x, _mm512_loadu_ps(C + j)),
                                              _mm512_mul_ps(sw, _mm512_loadu_ps(S + j))));
    }
    rot_c(v + j, C + j, S + j, n - j);
}

__attribute__((target("avx2"))) static void rot_avx2(float *v, const float *C, const float *S,
                                                     int n)
{
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_loadu_ps(v + j), sw = _mm256_permute_ps(x, 0xB1);
        _mm256_storeu_ps(v + j, _mm256_add_ps(_mm256_mul_ps(x, _mm256_loadu_ps(C + j)),
                                              _mm256_mul_ps(sw, _mm256_loadu_ps(S + j))));
    }
    rot_c(v + j, C + j, S + j, n - j);
}
#endif

static void rot(int kernel, float *v, const float *C, const float *S, int n)
{
#if defined(__x86_64__)
    if (kernel == BG__KERN_AVX512) {
        rot_avx512(v, C, S, n);
        return;
    }
    if (kernel == BG__KERN_AVX2) {
        rot_avx2(v, C, S, n);
        return;
    }
#endif
    rot_c(v, C, S, n);
}

/* bg_op_rope's rotation (compute_cpu.c, rotate_heads: the same float
 * expressions, so the same bits) of stack columns [c0, c0 + cols) of rows
 * [m, m + rows), where they are q's or k's. Pairs never straddle: tiles,
 * q's and k's columns start at even columns, hs is even. */
static void rope_span(const pk_ctx *g, int m, int rows, int c0, int cols)
{
    const bg_cpacked *p = g->w;
    for (int s = 0; s < 2; s++) {
        int a = c0 > p->col0[s] ? c0 : p->col0[s];
        int b = c0 + cols < p->col0[s] + p->n[s] ? c0 + cols : p->col0[s] + p->n[s];
        int la = a - p->col0[s];
        for (int r = m; a < b && r < m + rows; r++) {
            float *v = g->out[s] + (size_t)r * p->n[s] + la;
            const float *C = g->cs + (size_t)(g->by_pos ? g->pos[r] - g->pmin : r) * 2 * g->cw;
            rot(p->kernel, v, C + la, C + g->cw + la, b - a);
        }
    }
}

/* The tile at rows m.. (mr of them, fewer at the end) and panel q. */
static void pk_tile(const pk_ctx *g, int m, int q)
{
    const bg_cpacked *p = g->w;
    const bg__gemm_tile *t = &p->t;
    int K = p->K, rows = g->M - m < t->mr ? g->M - m : t->mr;
    int c0 = q * t->nr, cols = p->N - c0 < t->nr ? p->N - c0 : t->nr, s = seg_of(p, c0);
    const float *b = p->panels + (size_t)q * t->nr * K;
    float ct[BG__AVX512_MR * BG__AVX512_NR] __attribute__((aligned(64)));
    int direct = rows == t->mr && cols == t->nr && c0 + cols <= p->col0[s] + p->n[s];
    float *o = direct ? g->out[s] + (size_t)m * p->n[s] + (c0 - p->col0[s]) : ct;
    long ldc = direct ? p->n[s] : t->nr;
    int first = direct ? !g->add : 1;
    if (rows == t->mr && t->rows_fn)
        t->rows_fn(g->x + (size_t)m * K, K, b, K, o, ldc, first);
    else
        t->fn(g->ap + (size_t)(m - g->pa0) * K, b, K, o, ldc, first);
    if (direct) {
        if (g->cs)
            rope_span(g, m, rows, c0, cols);
        return;
    }
    /* an edge tile: the part that exists, each weight's run of columns to
     * its output (added as the tile adds: out + sum) */
    for (int j0 = 0; j0 < cols;) {
        int sj = seg_of(p, c0 + j0), ld = p->n[sj];
        int j1 = p->col0[sj] + ld - c0 < cols ? p->col0[sj] + ld - c0 : cols;
        float *dst = g->out[sj] + (size_t)m * ld + (c0 + j0 - p->col0[sj]);
        for (int r = 0; r < rows; r++) {
            const float *src = ct + r * t->nr + j0;
            float *d = dst + (size_t)r * ld;
            if (g->add)
                for (int j = 0; j < j1 - j0; j++)
                    d[j] = d[j] + src[j];
            else
                memcpy(d, src, sizeof(float) * (size_t)(j1 - j0));
        }
        j0 = j1;
    }
    if (g->cs)
        rope_span(g, m, rows, c0, cols);
}

/* Task: PK_MC rows of the chunk times one panel. */
static void pk_task(void *vctx, int task)
{
    const pk_ctx *g = vctx;
    int np = g->w->npanels, mr = g->w->t.mr;
    int m = g->m0 + task / np * PK_MC, q = task % np;
    int m1 = m + PK_MC < g->m1 ? m + PK_MC : g->m1;
    for (; m < m1; m += mr)
        pk_tile(g, m, q);
}

/* The (cos, sin) table of the rows' positions (pk_ctx.cs), as rope_op and
 * rope_row compute them: one entry per position of [pmin, pmax] when they
 * are no more than the rows (a pass's rows share ~50 positions), else one
 * per row. NULL when out of memory; BG_EINVAL leaves *bad set for a
 * negative position. */
static float *rope_table(pk_ctx *g, int M, int *bad)
{
    int pmin = g->pos[0], pmax = g->pos[0], hs = g->hs;
    for (int r = 0; r < M; r++) {
        if (g->pos[r] < 0) {
            *bad = r;
            return NULL;
        }
        pmin = g->pos[r] < pmin ? g->pos[r] : pmin;
        pmax = g->pos[r] > pmax ? g->pos[r] : pmax;
    }
    g->pmin = pmin;
    g->by_pos = (long)pmax - pmin + 1 <= M;
    int n = g->by_pos ? pmax - pmin + 1 : M, cw = g->cw;
    float *cs = malloc(sizeof(float) * (size_t)n * 2 * cw), freq[128];
    bg__cpu_rope_freq(freq, hs); /* hs <= 256: checked by the caller */
    for (int t = 0; cs && t < n; t++) {
        float pos = (float)(g->by_pos ? pmin + t : g->pos[t]);
        float *C = cs + (size_t)t * 2 * cw, *S = C + cw;
        for (int i = 0; i + 1 < hs; i += 2) {
            float ang = pos * freq[i / 2];
            float fcr = cosf(ang), fci = 1.0f * sinf(ang); /* rope_row's, sign +1 */
            for (int j = i; j < cw; j += hs) {
                C[j] = C[j + 1] = fcr;
                S[j] = -fci;
                S[j + 1] = fci;
            }
        }
    }
    return cs;
}

static int product(bg_compute *c, pk_ctx *gp, const bg_tview *out, bg_tview x, const float *table);

int bg__cpu_matmul_packed(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                          int M, int add, bg_tview rope, int nh, int nkv, int hs)
{
    pk_ctx g = {.w = w, .M = M, .add = add, .hs = hs, .cw = nh * hs};
    float *table = NULL;
    if (rope.buf) {
        if (w->nw < 2 || w->n[0] != nh * hs || w->n[1] != nkv * hs || hs > 256 || add) {
            c->poisoned = 1;
            return bg_err_set(&c->poison_err, BG_EINVAL,
                              "compute op matmul_packed: RoPE of %d + %d heads of %d needs "
                              "q and k as the first two weights (%d and %d rows here), hs <= 256",
                              nh, nkv, hs, w->n[0], w->nw > 1 ? w->n[1] : 0);
        }
        g.pos = (const int32_t *)bg__cpu_span(c, "matmul_packed", "pos", rope, (size_t)M);
        if (!g.pos)
            return BG_EINVAL;
        int bad = -1;
        table = rope_table(&g, M, &bad);
        if (!table) {
            c->poisoned = 1;
            return bad >= 0 ? bg_err_set(&c->poison_err, BG_EINVAL,
                                         "compute op matmul_packed: position %d at row %d; "
                                         "expected >= 0",
                                         (int)g.pos[bad], bad)
                            : bg_err_set(&c->poison_err, BG_ENOMEM,
                                         "compute op matmul_packed: out of memory for RoPE");
        }
    }
    int rc = product(c, &g, out, x, table);
    free(table);
    return rc;
}

/* The product of bg__cpu_matmul_packed (g's add and rope set). */
static int product(bg_compute *c, pk_ctx *gp, const bg_tview *out, bg_tview x, const float *table)
{
    bg__cpu_backend *be = bg__cpu(c);
    pk_ctx g = *gp;
    const bg_cpacked *w = g.w;
    int M = g.M, add = g.add;
    for (int i = 0; i < w->nw; i++)
        if (!(g.out[i] = bg__cpu_span(c, "matmul_packed", "out", out[i], (size_t)M * w->n[i])))
            return BG_EINVAL;
    g.x = bg__cpu_span(c, "matmul_packed", "x", x, (size_t)M * w->K);
    if (!g.x)
        return BG_EINVAL;
    if (M <= 2 || be->bf16 || w->kernel != bg__cpu_kernel()) {
        /* the matvecs bg_op_matmul runs (and any product the panels do not
         * fit: bf16 set since, or a kernel forced since), then the add as
         * bg_op_add does it (out + product) */
        for (int i = 0; i < w->nw; i++) {
            const float *wi =
                bg__cpu_span(c, "matmul_packed", "w", w->w[i], (size_t)w->n[i] * w->K);
            size_t on = (size_t)M * w->n[i];
            if (!wi)
                return BG_EINVAL;
            float *tmp = add ? malloc(sizeof(float) * on) : NULL;
            if (add && !tmp) {
                c->poisoned = 1;
                return bg_err_set(&c->poison_err, BG_ENOMEM,
                                  "compute op matmul_packed: out of memory for %zu floats", on);
            }
            bg__cpu_matmul(be->pool, add ? tmp : g.out[i], g.x, wi, M, w->n[i], w->K, be->bf16);
            for (size_t j = 0; add && j < on; j++)
                g.out[i][j] = g.out[i][j] + tmp[j];
            free(tmp);
        }
        g.cs = table;
        if (table)
            rope_span(&g, 0, M, 0, w->N);
        return BG_OK;
    }
    g.cs = table;
    const bg__gemm_tile *t = &w->t;
    /* With the rows variant every full panel is read in place and one
     * chunk holds every row; only a last partial panel is packed. Without
     * it (portable) A is packed PK_MC rows at a time. */
    int chunk = t->rows_fn ? M : PK_MC;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        g.m0 = m0;
        g.m1 = M - m0 < chunk ? M : m0 + chunk;
        g.pa0 = t->rows_fn ? (g.m1 - m0) / t->mr * t->mr + m0 : m0;
        int npack = (g.m1 - g.pa0 + t->mr - 1) / t->mr;
        if (npack > 0) {
            float *ap = bg__pool_scratch(be->pool, 0, sizeof(float) * (size_t)npack * t->mr * w->K);
            if (!ap) {
                c->poisoned = 1;
                return bg_err_set(&c->poison_err, BG_ENOMEM,
                                  "compute op matmul_packed: out of memory for %d packed rows",
                                  npack * t->mr);
            }
            bg__cpu_gemm_pack(w->kernel, ap, g.x, w->K, g.pa0, g.m1, w->K, t->mr, npack);
            g.ap = ap;
        }
        int blocks = (g.m1 - m0 + PK_MC - 1) / PK_MC;
        bg__pool_run(be->pool, pk_task, &g, blocks * w->npanels);
    }
    return BG_OK;
}
