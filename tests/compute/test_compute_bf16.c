/*
 * test_compute_bf16.c — the CPU backend's opt-in bf16 matmuls
 * (bg_compute_set_precision): the forward matmul and both backward GEMMs
 * against a double-precision reference on shapes that hit every edge of the
 * bf16 tile (odd K: a zero-padded last pair; K = 1; M, N not multiples of
 * 12 x 32; several K blocks), bit-identical with 1 and 3 threads, and
 * refused with a message that says what to do where the CPU (or a forced
 * BG_CPU_KERNEL) has no AVX512_BF16.
 *
 * Tolerance, per element: rounding an operand to bf16 (8 significant bits,
 * round to nearest even) changes it by at most 2^-8 of its size, so a
 * product by at most 2^-7 + 2^-16, and the fp32 sum adds at most K * 2^-24
 * of sum |products|:
 * |got - exact| <= (2^-7 + 2^-16 + K*2^-24) * sum_k |x_k w_k| + 1e-6. An
 * fp32 result passes it too, so the test also requires the bf16 result to
 * differ from the fp32 one (it must really round).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute.h"
#include "bg_test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) % 2000001) / 1000000.0f - 1.0f;
}

static float *rvec(size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

static bg_compute *make(int threads, int bf16)
{
    bg_compute_opts o = {BG_BACKEND_CPU, threads, 0, -1};
    bg_compute *c = NULL;
    bg_err err;
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "create: %s", err.msg);
    if (bf16)
        CHECK(bg_compute_set_precision(c, BG_PRECISION_BF16, &err) == BG_OK, "bf16: %s", err.msg);
    return c;
}

static bg_cbuf *up(bg_compute *c, const float *src, size_t n)
{
    bg_cbuf *b = NULL;
    CHECK(bg_cbuf_create(c, 4 * (n ? n : 1), &b, NULL) == BG_OK);
    if (src)
        CHECK(bg_cbuf_write(c, b, 0, src, 4 * n, NULL) == BG_OK);
    return b;
}

typedef struct res {
    float *out, *dx, *dw; /* matmul, dx (=), dw (+= into dw0) */
} res;

/* The three GEMMs on one backend. */
static res run3(bg_compute *c, const float *x, const float *w, const float *dy, const float *dw0,
                int M, int N, int K)
{
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    bg_cbuf *bx = up(c, x, mk), *bw = up(c, w, nk), *bdy = up(c, dy, mn), *bdw = up(c, dw0, nk);
    bg_cbuf *bo = up(c, NULL, mn), *bdx = up(c, NULL, mk);
    bg_err err;
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_matmul(c, (bg_tview){bo, 0}, (bg_tview){bx, 0}, (bg_tview){bw, 0}, M, N, K);
    bg_op_matmul_backward_x(c, (bg_tview){bdx, 0}, (bg_tview){bdy, 0}, (bg_tview){bw, 0}, M, N, K,
                            0);
    bg_op_matmul_backward_w(c, (bg_tview){bdw, 0}, (bg_tview){bdy, 0}, (bg_tview){bx, 0}, M, N, K);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "submit: %s", err.msg);
    res r = {malloc(4 * mn), malloc(4 * mk), malloc(4 * nk)};
    CHECK(bg_cbuf_read(c, bo, 0, r.out, 4 * mn, NULL) == BG_OK);
    CHECK(bg_cbuf_read(c, bdx, 0, r.dx, 4 * mk, NULL) == BG_OK);
    CHECK(bg_cbuf_read(c, bdw, 0, r.dw, 4 * nk, NULL) == BG_OK);
    bg_cbuf *all[] = {bx, bw, bdy, bdw, bo, bdx};
    for (int i = 0; i < 6; i++)
        bg_cbuf_destroy(c, all[i]);
    return r;
}

static void res_free(res *r)
{
    free(r->out), free(r->dx), free(r->dw);
}

/* Worst |got - exact| over the bound of the header, for got[r, j] =
 * base[r, j] + sum_l a(r, l) b(j, l), a(r, l) = a[r*lda_rows + l*lda_l]. */
static double worst_ratio(const float *got, const float *base, const float *a, const float *b,
                          int rows, int n, int L, int lda_rows, int lda_l, int ldb_rows, int ldb_l)
{
    double worst = 0;
    double rel = ldexp(1, -7) + ldexp(1, -16) + L * ldexp(1, -24);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            double s = base ? base[(long)r * n + j] : 0, mag = 0;
            for (int l = 0; l < L; l++) {
                double p = (double)a[(long)r * lda_rows + (long)l * lda_l] *
                           b[(long)j * ldb_rows + (long)l * ldb_l];
                s += p;
                mag += fabs(p);
            }
            double e = fabs((double)got[(long)r * n + j] - s) / (rel * mag + 1e-6);
            worst = e > worst ? e : worst;
        }
    return worst;
}

static void test_shape(bg_compute *c32, bg_compute *c16, bg_compute *c16t, int M, int N, int K,
                       int *differs)
{
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    float *x = rvec(mk), *w = rvec(nk), *dy = rvec(mn), *dw0 = rvec(nk);
    res f = run3(c32, x, w, dy, dw0, M, N, K);
    res h = run3(c16, x, w, dy, dw0, M, N, K);
    res t = run3(c16t, x, w, dy, dw0, M, N, K);
    /* out[m,n] = sum_k x[m,k] w[n,k]; dx[m,k] = sum_n dy[m,n] w[n,k];
     * dw[n,k] = dw0 + sum_m dy[m,n] x[m,k] */
    double e1 = worst_ratio(h.out, NULL, x, w, M, N, K, K, 1, K, 1);
    double e2 = worst_ratio(h.dx, NULL, dy, w, M, K, N, N, 1, 1, K);
    double e3 = worst_ratio(h.dw, dw0, dy, x, N, K, M, 1, N, 1, K);
    CHECK(e1 <= 1 && e2 <= 1 && e3 <= 1,
          "bf16 %dx%dx%d: error / bound %.3f (matmul), %.3f (dx), %.3f (dw); want <= 1", M, N, K,
          e1, e2, e3);
    CHECK(memcmp(h.out, t.out, 4 * mn) == 0 && memcmp(h.dx, t.dx, 4 * mk) == 0 &&
              memcmp(h.dw, t.dw, 4 * nk) == 0,
          "bf16 %dx%dx%d: results differ between 1 and 3 threads", M, N, K);
    if (M > 2 && memcmp(h.out, f.out, 4 * mn) != 0)
        (*differs)++;
    printf("bf16 %dx%dx%d: error / bound %.3f %.3f %.3f\n", M, N, K, e1, e2, e3);
    res_free(&f), res_free(&h), res_free(&t);
    free(x), free(w), free(dy), free(dw0);
}

int main(void)
{
    CHECK(bg_precision_parse("fp32") == BG_PRECISION_FP32 &&
          bg_precision_parse("bf16") == BG_PRECISION_BF16 && bg_precision_parse("fp16") == -1 &&
          bg_precision_parse(NULL) == -1);
    bg_compute *c16 = make(1, 0);
    bg_err err;
    int rc = bg_compute_set_precision(c16, BG_PRECISION_BF16, &err);
    if (rc != BG_OK) {
        /* refused: a clear message, the backend unchanged at fp32 */
        CHECK(rc == BG_EINVAL && strstr(err.msg, "AVX512_BF16") && strstr(err.msg, "fp32"),
              "refusal message: %s", err.msg);
        CHECK(strstr(bg_compute_describe(c16), "bf16") == NULL, "%s", bg_compute_describe(c16));
        printf("bf16 refused here: %s\n", err.msg);
        bg_compute_destroy(c16);
        const char *k = getenv("BG_CPU_KERNEL");
        if (k && strcmp(k, "avx2") == 0)
            CHECK_DONE("test_compute_bf16");
        printf("SKIP: this CPU has no AVX512_BF16\n");
        return 77;
    }
    const char *k = getenv("BG_CPU_KERNEL");
    CHECK(!(k && strcmp(k, "avx2") == 0), "BG_CPU_KERNEL=avx2 but bf16 was accepted");
    CHECK(strstr(bg_compute_describe(c16), "bf16 matmuls") != NULL, "%s", bg_compute_describe(c16));
    printf("backend: %s\n", bg_compute_describe(c16));
    bg_compute *c32 = make(1, 0), *c16t = make(3, 1);
    static const int shapes[][3] = {{3, 5, 1},    {3, 5, 2},      {12, 32, 1},    {13, 33, 3},
                                    {11, 31, 17}, {24, 64, 96},   {25, 65, 97},   {37, 45, 300},
                                    {97, 12, 31}, {40, 20, 1100}, {130, 530, 40}, {1, 9, 7},
                                    {2, 40, 33}};
    int differs = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        test_shape(c32, c16, c16t, shapes[i][0], shapes[i][1], shapes[i][2], &differs);
    CHECK(differs >= 8, "bf16 matmul equal to fp32 bit for bit on %d of the shapes: not rounding",
          (int)(sizeof shapes / sizeof shapes[0]) - differs);
    /* back to fp32: the same bits as a backend that never left it */
    CHECK(bg_compute_set_precision(c16, BG_PRECISION_FP32, &err) == BG_OK, "%s", err.msg);
    CHECK(strstr(bg_compute_describe(c16), "bf16") == NULL);
    {
        float *x = rvec(37 * 300), *w = rvec(45 * 300), *dy = rvec(37 * 45), *dw0 = rvec(45 * 300);
        res a = run3(c16, x, w, dy, dw0, 37, 45, 300), b = run3(c32, x, w, dy, dw0, 37, 45, 300);
        CHECK(memcmp(a.out, b.out, 4 * 37 * 45) == 0 && memcmp(a.dw, b.dw, 4 * 45 * 300) == 0,
              "precision fp32 after bf16 differs from a fresh fp32 backend");
        res_free(&a), res_free(&b);
        free(x), free(w), free(dy), free(dw0);
    }
    CHECK(bg_compute_set_precision(c16, (bg_precision)7, &err) == BG_EINVAL &&
          strstr(err.msg, "fp32 or bf16"));
    bg_compute_destroy(c32);
    bg_compute_destroy(c16);
    bg_compute_destroy(c16t);
    CHECK_DONE("test_compute_bf16");
}
