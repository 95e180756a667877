/*
 * test_compute_packed.c — weights packed once (bg_compute_pack,
 * compute_cpu_gemm_packed.c) and the products that read them
 * (bg_op_matmul_packed) on the CPU backend.
 *
 * Run once per kernel (BG_CPU_KERNEL=scalar|avx2|avx512, one ctest each; a
 * kernel the machine lacks skips with exit 77 and says why; the plain run
 * takes the machine's best).
 *
 * Checks, with the bounds they use:
 *   - odd shapes (M in {1, 2, 3, 5, 13, 97, 200}: matvec, a partial row
 *     panel, several row blocks; stacks of 1-3 weights with rows {1, 7,
 *     17, 33, 172}: panels straddling two weights, edge panels; K in {1, 9,
 *     64, 172}), 1 and 3 threads: every output equals bg_op_matmul of its
 *     own weight bit for bit (the packed copy is the GEMM's own layout and
 *     tile), and is within 1e-5 * (sum_k |x w| + 1e-30) of the scalar
 *     reference bg_ref_matmul in double-free float (the GEMM's bound in
 *     test_compute_cpu);
 *   - bg_op_matmul_packed_add: out + product bit for bit (the float sum
 *     bg_op_add makes), for the same shapes;
 *   - bg_op_matmul_packed_rope (q|k|v with RoPE in the write-back) bit for
 *     bit bg_op_matmul then bg_op_rope of each row at its position, for
 *     8/4 heads of 8 (stories260K), 6/2 of 12, 4/4 of 2, M 1..100, rows
 *     at few repeated positions (the table by position) and at more
 *     positions than rows (by row); a negative position is refused;
 *   - a later write to a packed weight is not seen by products of M >= 3
 *     (the contract: pack only what never changes) — checked so that a
 *     change to "read in place" is a visible decision;
 *   - refusals: K past the kernel's K block, and bad arguments (nw 0 or
 *     past BG_COMPUTE_PACK_MAX, a zero row count, a NULL buffer, called
 *     while recording) return BG_EUNAVAIL / BG_EINVAL with a message naming
 *     bg_compute_pack; an output view that does not fit its buffer poisons
 *     the recording with BG_EINVAL naming matmul_packed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "compute/compute.h"
#include "compute/compute_cpu.h"
#include "compute/compute_ref.h"

static uint32_t rng = 2024;

static float frnd(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffffff) / (float)0x800000 - 1.0f;
}

static bg_cbuf *buf(bg_compute *c, const float *src, size_t n)
{
    bg_cbuf *b = NULL;
    bg_err err;
    CHECK(bg_cbuf_create(c, n * 4, &b, &err) == BG_OK, "%s", err.msg);
    if (src)
        CHECK(bg_cbuf_write(c, b, 0, src, n * 4, &err) == BG_OK, "%s", err.msg);
    return b;
}

/* One stack of nw weights [n[i], K] against x [M, K] at `threads`. */
static void check_stack(int threads, int M, int K, const int *n, int nw, double *worst)
{
    bg_err err;
    bg_compute *c = NULL;
    bg_compute_opts o = {.kind = BG_BACKEND_CPU, .threads = threads};
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%s", err.msg);
    float *x = malloc(sizeof(float) * (size_t)M * K);
    for (long i = 0; i < (long)M * K; i++)
        x[i] = frnd();
    bg_cbuf *bx = buf(c, x, (size_t)M * K);
    float *w[BG_COMPUTE_PACK_MAX];
    bg_cbuf *bw[BG_COMPUTE_PACK_MAX], *bo[BG_COMPUTE_PACK_MAX], *bu[BG_COMPUTE_PACK_MAX];
    bg_tview vw[BG_COMPUTE_PACK_MAX], vo[BG_COMPUTE_PACK_MAX];
    for (int i = 0; i < nw; i++) {
        w[i] = malloc(sizeof(float) * (size_t)n[i] * K);
        for (long j = 0; j < (long)n[i] * K; j++)
            w[i][j] = frnd();
        bw[i] = buf(c, w[i], (size_t)n[i] * K);
        bo[i] = buf(c, NULL, (size_t)M * n[i]);
        bu[i] = buf(c, NULL, (size_t)M * n[i]);
        vw[i] = (bg_tview){bw[i], 0};
        vo[i] = (bg_tview){bo[i], 0};
    }
    bg_cpacked *p = NULL;
    CHECK(bg_compute_pack(c, vw, n, nw, K, &p, &err) == BG_OK, "pack: %s", err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed(c, vo, (bg_tview){bx, 0}, p, M);
    for (int i = 0; i < nw; i++)
        bg_op_matmul(c, (bg_tview){bu[i], 0}, (bg_tview){bx, 0}, vw[i], M, n[i], K);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < nw; i++) {
        size_t on = (size_t)M * n[i];
        float *got = malloc(on * 4), *unp = malloc(on * 4), *ref = malloc(on * 4);
        CHECK(bg_cbuf_read(c, bo[i], 0, got, on * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_cbuf_read(c, bu[i], 0, unp, on * 4, &err) == BG_OK, "%s", err.msg);
        bg_ref_matmul(ref, x, w[i], M, n[i], K);
        CHECK(memcmp(got, unp, on * 4) == 0,
              "M %d K %d weight %d of %d (%d rows), %d threads: packed differs from bg_op_matmul",
              M, K, i, nw, n[i], threads);
        for (int m = 0; m < M; m++)
            for (int j = 0; j < n[i]; j++) {
                double mag = 1e-30;
                for (int k = 0; k < K; k++)
                    mag += fabs((double)x[(long)m * K + k] * w[i][(long)j * K + k]);
                double e = fabs(got[(long)m * n[i] + j] - ref[(long)m * n[i] + j]) / mag;
                *worst = fmax(*worst, e);
                CHECK(e <= 1e-5, "M %d K %d weight %d (%d rows): out[%d][%d] %.9g, ref %.9g", M, K,
                      i, n[i], m, j, got[(long)m * n[i] + j], ref[(long)m * n[i] + j]);
            }
        free(got), free(unp), free(ref);
    }
    /* _add: out + product, bit for bit bg_op_add after bg_op_matmul */
    float *y0[BG_COMPUTE_PACK_MAX];
    for (int i = 0; i < nw; i++) {
        size_t on = (size_t)M * n[i];
        y0[i] = malloc(on * 4);
        for (size_t j = 0; j < on; j++)
            y0[i][j] = frnd();
        CHECK(bg_cbuf_write(c, bo[i], 0, y0[i], on * 4, &err) == BG_OK, "%s", err.msg);
    }
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed_add(c, vo, (bg_tview){bx, 0}, p, M);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < nw; i++) {
        size_t on = (size_t)M * n[i];
        float *got = malloc(on * 4), *unp = malloc(on * 4);
        CHECK(bg_cbuf_read(c, bo[i], 0, got, on * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_cbuf_read(c, bu[i], 0, unp, on * 4, &err) == BG_OK, "%s", err.msg);
        for (size_t j = 0; j < on; j++) {
            float want = y0[i][j] + unp[j];
            CHECK(memcmp(&got[j], &want, 4) == 0,
                  "M %d K %d weight %d (%d rows), %d threads: _add element %zu %.9g, want %.9g", M,
                  K, i, n[i], threads, j, got[j], want);
        }
        free(got), free(unp), free(y0[i]);
    }
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed(c, vo, (bg_tview){bx, 0}, p, M);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    /* the packed copy is a snapshot: a write after packing is not seen */
    if (M >= 3) {
        float *zero = calloc((size_t)n[0] * K, 4), *a = malloc((size_t)M * n[0] * 4);
        float *b = malloc((size_t)M * n[0] * 4);
        CHECK(bg_cbuf_read(c, bo[0], 0, a, (size_t)M * n[0] * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_cbuf_write(c, bw[0], 0, zero, (size_t)n[0] * K * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
        bg_op_matmul_packed(c, vo, (bg_tview){bx, 0}, p, M);
        CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_cbuf_read(c, bo[0], 0, b, (size_t)M * n[0] * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(memcmp(a, b, (size_t)M * n[0] * 4) == 0, "M %d: a write after packing was seen", M);
        free(zero), free(a), free(b);
    }
    bg_cpacked_destroy(c, p);
    bg_compute_destroy(c);
    for (int i = 0; i < nw; i++)
        free(w[i]);
    free(x);
}

/* bg_op_matmul_packed_rope against bg_op_matmul then bg_op_rope per row,
 * bit for bit: nh heads and nkv KV heads of hs, M rows at positions from
 * pos_of (few distinct positions, or more positions than rows). */
static void check_rope(int threads, int M, int nh, int nkv, int hs, int spread)
{
    bg_err err;
    bg_compute *c = NULL;
    bg_compute_opts o = {.kind = BG_BACKEND_CPU, .threads = threads};
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%s", err.msg);
    int K = 36, n[3] = {nh * hs, nkv * hs, nkv * hs};
    float *x = malloc(sizeof(float) * (size_t)M * K);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)M);
    for (long i = 0; i < (long)M * K; i++)
        x[i] = frnd();
    for (int r = 0; r < M; r++) /* runs of positions, as a pass's branches */
        pos[r] = spread ? 3 * r + 500 : 7 + r % 11;
    bg_cbuf *bx = buf(c, x, (size_t)M * K), *bp = buf(c, NULL, (size_t)M);
    CHECK(bg_cbuf_write(c, bp, 0, pos, sizeof(int32_t) * (size_t)M, &err) == BG_OK, "%s", err.msg);
    bg_cbuf *bw[3], *bo[3], *bu[3];
    bg_tview vw[3], vo[3];
    for (int i = 0; i < 3; i++) {
        float *w = malloc(sizeof(float) * (size_t)n[i] * K);
        for (long j = 0; j < (long)n[i] * K; j++)
            w[j] = frnd();
        bw[i] = buf(c, w, (size_t)n[i] * K);
        bo[i] = buf(c, NULL, (size_t)M * n[i]);
        bu[i] = buf(c, NULL, (size_t)M * n[i]);
        vw[i] = (bg_tview){bw[i], 0};
        vo[i] = (bg_tview){bo[i], 0};
        free(w);
    }
    bg_cpacked *p = NULL;
    CHECK(bg_compute_pack(c, vw, n, 3, K, &p, &err) == BG_OK, "pack: %s", err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed_rope(c, vo, (bg_tview){bx, 0}, p, M, (bg_tview){bp, 0}, nh, nkv, hs);
    for (int i = 0; i < 3; i++)
        bg_op_matmul(c, (bg_tview){bu[i], 0}, (bg_tview){bx, 0}, vw[i], M, n[i], K);
    bg_compute_barrier(c);
    for (int r = 0; r < M; r++)
        bg_op_rope(c, (bg_tview){bu[0], (size_t)r * n[0]}, (bg_tview){bu[1], (size_t)r * n[1]}, 1,
                   pos[r], nh, nkv, hs);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        size_t on = (size_t)M * n[i];
        float *got = malloc(on * 4), *want = malloc(on * 4);
        CHECK(bg_cbuf_read(c, bo[i], 0, got, on * 4, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_cbuf_read(c, bu[i], 0, want, on * 4, &err) == BG_OK, "%s", err.msg);
        for (size_t j = 0; j < on; j++)
            CHECK(memcmp(&got[j], &want[j], 4) == 0,
                  "rope M %d, %d/%d heads of %d, %d threads, output %d element %zu: %.9g, "
                  "matmul + rope %.9g",
                  M, nh, nkv, hs, threads, i, j, got[j], want[j]);
        free(got), free(want);
    }
    /* a negative position is refused, naming the row */
    pos[M - 1] = -1;
    CHECK(bg_cbuf_write(c, bp, 0, pos, sizeof(int32_t) * (size_t)M, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed_rope(c, vo, (bg_tview){bx, 0}, p, M, (bg_tview){bp, 0}, nh, nkv, hs);
    CHECK(bg_compute_submit(c, &err) == BG_EINVAL && strstr(err.msg, "position -1"),
          "negative position: want BG_EINVAL naming it, got \"%s\"", err.msg);
    bg_cpacked_destroy(c, p);
    bg_compute_destroy(c);
    free(x), free(pos);
}

static void check_refusals(void)
{
    bg_err err;
    bg_compute *c = NULL;
    bg_compute_opts o = {.kind = BG_BACKEND_CPU, .threads = 1};
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%s", err.msg);
    bg__gemm_tile t;
    bg__cpu_gemm_tile(bg__cpu_kernel(), &t);
    int K = t.kc + 1, n = 3, zero = 0;
    bg_cbuf *bw = buf(c, NULL, (size_t)n * K), *bo = buf(c, NULL, 8);
    bg_tview vw = {bw, 0}, vo = {bo, 0}, none = {NULL, 0};
    bg_cpacked *p = NULL;
    CHECK(bg_compute_pack(c, &vw, &n, 1, K, &p, &err) == BG_EUNAVAIL && !p &&
              strstr(err.msg, "bg_compute_pack"),
          "K %d past the K block %d: want BG_EUNAVAIL, got \"%s\"", K, t.kc, err.msg);
    CHECK(bg_compute_pack(c, &vw, &n, 0, 4, &p, &err) == BG_EINVAL && !p, "nw 0: %s", err.msg);
    CHECK(bg_compute_pack(c, &vw, &n, BG_COMPUTE_PACK_MAX + 1, 4, &p, &err) == BG_EINVAL && !p,
          "nw past the max: %s", err.msg);
    CHECK(bg_compute_pack(c, &vw, &zero, 1, 4, &p, &err) == BG_EINVAL && !p, "0 rows: %s", err.msg);
    CHECK(bg_compute_pack(c, &none, &n, 1, 4, &p, &err) == BG_EINVAL && !p, "NULL buffer: %s",
          err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_compute_pack(c, &vw, &n, 1, 4, &p, &err) == BG_EINVAL && !p, "while recording: %s",
          err.msg);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    /* a weight view past its buffer */
    bg_tview far = {bw, (size_t)n * K - 2};
    CHECK(bg_compute_pack(c, &far, &n, 1, 4, &p, &err) == BG_EINVAL && !p &&
              strstr(err.msg, "exceeds"),
          "w past its buffer: %s", err.msg);
    /* an output that does not fit: 3 x 3 floats into a buffer of 8 */
    CHECK(bg_compute_pack(c, &vw, &n, 1, 4, &p, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul_packed(c, &vo, (bg_tview){bw, 0}, p, 3);
    CHECK(bg_compute_submit(c, &err) == BG_EINVAL && strstr(err.msg, "matmul_packed"),
          "out past its buffer: want BG_EINVAL naming the op, got \"%s\"", err.msg);
    bg_cpacked_destroy(c, p);
    bg_compute_destroy(c);
}

int main(void)
{
    bg_err err;
    if (bg__cpu_kernel_check(&err) != BG_OK) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    printf("kernel: %s\n", bg__cpu_kernel_name(bg__cpu_kernel()));
    static const int Ms[] = {1, 2, 3, 5, 13, 97, 200}, Ks[] = {1, 9, 64, 172};
    static const int stacks[][4] = {{1, 1},          {1, 33},       {2, 17, 7},
                                    {3, 64, 32, 32}, {2, 172, 172}, {3, 1, 7, 33}};
    double worst = 0;
    int shapes = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t si = 0; si < sizeof stacks / sizeof stacks[0]; si++)
                for (int th = 1; th <= 3; th += 2, shapes++)
                    check_stack(th, Ms[mi], Ks[ki], &stacks[si][1], stacks[si][0], &worst);
    printf("packed: %d shapes, bit for bit bg_op_matmul; max |out - ref| / sum|x w| = %.3g (bound "
           "1e-5)\n",
           shapes, worst);
    static const int rope_shapes[][4] = {{8, 4, 8, 0}, {8, 4, 8, 1}, {6, 2, 12, 0}, {4, 4, 2, 1}};
    for (int i = 0; i < 4; i++)
        for (int M = 1; M <= 100; M += 33)
            for (int th = 1; th <= 3; th += 2)
                check_rope(th, M, rope_shapes[i][0], rope_shapes[i][1], rope_shapes[i][2],
                           rope_shapes[i][3]);
    printf("packed rope: 4 head shapes x 4 row counts x 1, 3 threads: bit for bit matmul + "
           "rope\n");
    check_refusals();
    CHECK_DONE("test_compute_packed");
}
