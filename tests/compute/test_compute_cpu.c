/*
 * test_compute_cpu.c — every op of the CPU backend against the scalar
 * reference (compute_ref.h) over random shapes, including sizes that are
 * not multiples of 4/8/16 and M == 1, with 1 and 3 threads; then the error
 * paths (out-of-range views, ids, bad shapes) poison the recording and
 * submit reports a message naming the op.
 *
 * Tolerance: |cpu - ref| <= ATOL + RTOL * |ref| per element, printed below;
 * the kernels sum in a different order (blocked, SIMD lanes), so bitwise
 * equality is not expected. Seeded, deterministic. Run with
 * BG_CPU_NO_SIMD=1 (a second ctest) to cover the portable kernels, and
 * with BG_CPU_KERNEL=scalar|avx2|avx512 (one ctest each) for every matmul
 * kernel: the backend must then name that kernel, and a kernel this machine
 * lacks is a skip (exit 77, printing why). Each kernel's matmul and its two
 * backward GEMMs are bit-identical with 1, 2 and 3 threads. An unknown
 * BG_CPU_KERNEL value must refuse to create the backend, naming the value.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute.h"
#include "compute/compute_ref.h"
#include "bg_test.h"

#define RTOL 1e-4f
#define ATOL 1e-4f

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float frand(void)
{
    return (float)(next_u32() % 2000001) / 1000000.0f - 1.0f;
}

static int irand(int lo, int hi)
{
    return lo + (int)(next_u32() % (uint32_t)(hi - lo + 1));
}

static float *rand_vec(size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

static void check_close(const char *what, const float *got, const float *want, size_t n)
{
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double lim = ATOL + RTOL * fabs(want[i]);
        if (d / lim > worst || isnan(got[i])) {
            worst = isnan(got[i]) ? INFINITY : d / lim;
            at = i;
        }
    }
    if (worst > 1.0) {
        printf("FAIL %s: element %zu got %.7g want %.7g (error %.2fx tolerance)\n", what, at,
               got[at], want[at], worst);
        bg_test_failures++;
    }
}

/* Device helpers: upload a host array into a fresh buffer (+ pad elements). */
static bg_cbuf *up(bg_compute *c, const void *src, size_t n_elems)
{
    bg_cbuf *b = NULL;
    bg_err err;
    if (bg_cbuf_create(c, 4 * (n_elems ? n_elems : 1), &b, &err) != BG_OK) {
        printf("FAIL cbuf_create: %s\n", err.msg);
        exit(1);
    }
    if (src && bg_cbuf_write(c, b, 0, src, 4 * n_elems, &err) != BG_OK) {
        printf("FAIL cbuf_write: %s\n", err.msg);
        exit(1);
    }
    return b;
}

static void down(bg_compute *c, bg_cbuf *b, float *dst, size_t n)
{
    bg_err err;
    if (bg_cbuf_read(c, b, 0, dst, 4 * n, &err) != BG_OK) {
        printf("FAIL cbuf_read: %s\n", err.msg);
        exit(1);
    }
}

static bg_tview V(bg_cbuf *b)
{
    bg_tview v = {b, 0};
    return v;
}

static void run(bg_compute *c, const char *what)
{
    bg_err err;
    if (bg_compute_submit(c, &err) != BG_OK) {
        printf("FAIL %s: submit: %s\n", what, err.msg);
        bg_test_failures++;
    }
}

static void start(bg_compute *c)
{
    bg_err err;
    if (bg_compute_begin(c, &err) != BG_OK) {
        printf("FAIL begin: %s\n", err.msg);
        exit(1);
    }
}

static void test_matmul(bg_compute *c, int M, int N, int K)
{
    float *x = rand_vec((size_t)M * K), *w = rand_vec((size_t)N * K);
    float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
    bg_ref_matmul(want, x, w, M, N, K);
    bg_cbuf *bx = up(c, x, (size_t)M * K), *bw = up(c, w, (size_t)N * K);
    bg_cbuf *bo = up(c, NULL, (size_t)M * N);
    start(c);
    bg_op_matmul(c, V(bo), V(bx), V(bw), M, N, K);
    run(c, "matmul");
    down(c, bo, got, (size_t)M * N);
    char what[64];
    snprintf(what, sizeof what, "matmul %dx%dx%d", M, N, K);
    check_close(what, got, want, (size_t)M * N);
    bg_cbuf_destroy(c, bx);
    bg_cbuf_destroy(c, bw);
    bg_cbuf_destroy(c, bo);
    free(x);
    free(w);
    free(want);
    free(got);
}

/* dx (overwrite) and dW (+= onto nonzero) of one shape against the scalar
 * reference: the backward's transposed operands go through the one-pass
 * packer (k ranges split over the threads, groups of panels, rows KS at a
 * time), dW's x block kept across chunks of dy's columns. */
static void test_matmul_backward(bg_compute *c, int M, int N, int K)
{
    size_t mk = (size_t)M * K, mn = (size_t)M * N, nk = (size_t)N * K;
    float *x = rand_vec(mk), *w = rand_vec(nk), *dy = rand_vec(mn), *dw = rand_vec(nk);
    float *want_dx = malloc(sizeof(float) * mk), *got_dx = malloc(sizeof(float) * mk);
    float *got_dw = malloc(sizeof(float) * nk);
    bg_cbuf *bx = up(c, x, mk), *bw = up(c, w, nk), *bdy = up(c, dy, mn), *bdw = up(c, dw, nk);
    bg_cbuf *bdx = up(c, NULL, mk);
    start(c);
    bg_op_matmul_backward_x(c, V(bdx), V(bdy), V(bw), M, N, K, 0);
    bg_op_matmul_backward_w(c, V(bdw), V(bdy), V(bx), M, N, K);
    run(c, "matmul backward");
    down(c, bdx, got_dx, mk);
    down(c, bdw, got_dw, nk);
    bg_ref_matmul_backward_x(want_dx, dy, w, M, N, K, 0);
    bg_ref_matmul_backward_w(dw, dy, x, M, N, K);
    char what[64];
    snprintf(what, sizeof what, "matmul_backward_x %dx%dx%d", M, N, K);
    check_close(what, got_dx, want_dx, mk);
    snprintf(what, sizeof what, "matmul_backward_w %dx%dx%d", M, N, K);
    check_close(what, got_dw, dw, nk);
    bg_cbuf *all[] = {bx, bw, bdy, bdw, bdx};
    for (int i = 0; i < 5; i++)
        bg_cbuf_destroy(c, all[i]);
    free(x), free(w), free(dy), free(dw), free(want_dx), free(got_dx), free(got_dw);
}

static void test_rows_ops(bg_compute *c, int T, int n)
{
    size_t sz = (size_t)T * n;
    float *x = rand_vec(sz), *y = rand_vec(sz), *w = rand_vec((size_t)n);
    float *want = malloc(sizeof(float) * sz), *got = malloc(sizeof(float) * sz);
    bg_cbuf *bx = up(c, x, sz), *by = up(c, y, sz), *bw = up(c, w, (size_t)n), *bo = up(c, 0, sz);
    char what[64];

    bg_ref_rmsnorm(want, x, w, T, n, 1e-5f);
    start(c);
    bg_op_rmsnorm(c, V(bo), V(bx), V(bw), T, n, 1e-5f);
    run(c, "rmsnorm");
    down(c, bo, got, sz);
    snprintf(what, sizeof what, "rmsnorm T=%d n=%d", T, n);
    check_close(what, got, want, sz);

    memcpy(want, x, sizeof(float) * sz);
    bg_ref_softmax(want, T, n);
    start(c);
    bg_op_copy(c, V(bo), V(bx), (int)sz);
    bg_compute_barrier(c);
    bg_op_softmax(c, V(bo), T, n);
    run(c, "softmax");
    down(c, bo, got, sz);
    snprintf(what, sizeof what, "copy+softmax T=%d n=%d", T, n);
    check_close(what, got, want, sz);

    memcpy(want, x, sizeof(float) * sz);
    bg_ref_swiglu(want, y, (int)sz);
    start(c);
    bg_op_copy(c, V(bo), V(bx), (int)sz);
    bg_compute_barrier(c);
    bg_op_swiglu(c, V(bo), V(by), (int)sz);
    run(c, "swiglu");
    down(c, bo, got, sz);
    snprintf(what, sizeof what, "swiglu n=%zu", sz);
    check_close(what, got, want, sz);

    memcpy(want, x, sizeof(float) * sz);
    bg_ref_add(want, y, (int)sz);
    start(c);
    bg_op_copy(c, V(bo), V(bx), (int)sz);
    bg_compute_barrier(c);
    bg_op_add(c, V(bo), V(by), (int)sz);
    run(c, "add");
    down(c, bo, got, sz);
    snprintf(what, sizeof what, "add n=%zu", sz);
    check_close(what, got, want, sz);

    /* logsoftmax_gather and embed: rows of x as logits / table */
    int32_t *ids = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++)
        ids[t] = irand(0, n - 1);
    bg_cbuf *bids = up(c, ids, (size_t)T);
    bg_ref_logsoftmax_gather(want, x, ids, T, n);
    start(c);
    bg_op_logsoftmax_gather(c, V(bo), V(bx), V(bids), T, n);
    run(c, "logsoftmax_gather");
    down(c, bo, got, (size_t)T);
    snprintf(what, sizeof what, "logsoftmax_gather T=%d V=%d", T, n);
    check_close(what, got, want, (size_t)T);

    for (int t = 0; t < T; t++)
        ids[t] = irand(0, T - 1);
    bg_cbuf_write(c, bids, 0, ids, sizeof(int32_t) * T, NULL);
    bg_ref_embed(want, x, ids, T, n);
    start(c);
    bg_op_embed(c, V(bo), V(bx), V(bids), T, n);
    run(c, "embed");
    down(c, bo, got, sz);
    snprintf(what, sizeof what, "embed T=%d dim=%d", T, n);
    check_close(what, got, want, sz);

    bg_cbuf *bufs[] = {bx, by, bw, bo, bids};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        bg_cbuf_destroy(c, bufs[i]);
    free(ids);
    free(x);
    free(y);
    free(w);
    free(want);
    free(got);
}

/* rope + attention over a cache with some history (pos0 > 0), grouped heads;
 * views at non-zero offsets inside larger buffers. */
static void test_attention(bg_compute *c, int T, int pos0, int nh, int nkv, int hs, int seq_len)
{
    int kv_dim = nkv * hs, qd = nh * hs;
    size_t qn = (size_t)T * qd, cn = (size_t)seq_len * kv_dim;
    float *q = rand_vec(qn), *kc = rand_vec(cn), *vc = rand_vec(cn);
    float *q2 = malloc(4 * qn), *kc2 = malloc(4 * cn), *want = malloc(4 * qn),
          *got = malloc(4 * qn);
    memcpy(q2, q, 4 * qn);
    memcpy(kc2, kc, 4 * cn);
    bg_ref_rope(q2, kc2 + (size_t)pos0 * kv_dim, T, pos0, nh, nkv, hs);
    bg_ref_attention(want, q2, kc2, vc, T, pos0, nh, nkv, hs, seq_len);

    const size_t pad = 7;
    bg_cbuf *bq = up(c, NULL, qn + pad), *bk = up(c, NULL, cn + pad), *bv = up(c, vc, cn);
    bg_cbuf *bo = up(c, NULL, qn + pad);
    bg_cbuf_write(c, bq, 4 * pad, q, 4 * qn, NULL);
    bg_cbuf_write(c, bk, 4 * pad, kc, 4 * cn, NULL);
    bg_tview vq = {bq, pad}, vk = {bk, pad}, vkpos = {bk, pad + (size_t)pos0 * kv_dim};
    bg_tview vo = {bo, pad};
    start(c);
    bg_op_rope(c, vq, vkpos, T, pos0, nh, nkv, hs);
    bg_compute_barrier(c);
    bg_op_attention(c, vo, vq, vk, V(bv), T, pos0, nh, nkv, hs, seq_len);
    run(c, "attention");
    bg_cbuf_read(c, bq, 4 * pad, got, 4 * qn, NULL);
    char what[96];
    snprintf(what, sizeof what, "rope q T=%d pos0=%d heads=%d/%d hs=%d", T, pos0, nh, nkv, hs);
    check_close(what, got, q2, qn);
    bg_cbuf_read(c, bo, 4 * pad, got, 4 * qn, NULL);
    snprintf(what, sizeof what, "attention T=%d pos0=%d heads=%d/%d hs=%d", T, pos0, nh, nkv, hs);
    check_close(what, got, want, qn);
    bg_cbuf_destroy(c, bq);
    bg_cbuf_destroy(c, bk);
    bg_cbuf_destroy(c, bv);
    bg_cbuf_destroy(c, bo);
    free(q);
    free(kc);
    free(vc);
    free(q2);
    free(kc2);
    free(want);
    free(got);
}

/* A failing op poisons the recording; submit returns its message. */
static void expect_poison(bg_compute *c, const char *what, const char *needle)
{
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(c, &err);
    if (rc == BG_OK || !strstr(err.msg, needle)) {
        printf("FAIL %s: submit rc=%d msg='%s', expected an error containing '%s'\n", what, rc,
               err.msg, needle);
        bg_test_failures++;
    } else {
        printf("ok   %s -> %s\n", what, err.msg);
    }
}

static void test_errors(bg_compute *c)
{
    bg_cbuf *a = up(c, NULL, 64), *b = up(c, NULL, 64), *o = up(c, NULL, 64);
    int32_t ids[2] = {0, 99};
    bg_cbuf *bi = up(c, ids, 2);
    bg_tview far = {a, 60};

    start(c);
    bg_op_matmul(c, V(o), V(a), V(b), 8, 8, 9); /* x needs 72 > 64 elements */
    bg_op_add(c, V(o), V(a), 4);                /* skipped: already poisoned */
    expect_poison(c, "matmul view too small", "matmul: view x");

    start(c);
    bg_op_add(c, far, V(b), 5);
    expect_poison(c, "add past the end", "view x [60, 65)");

    start(c);
    bg_op_embed(c, V(o), V(a), V(bi), 2, 8); /* table has 8 rows of 8 */
    expect_poison(c, "embed id out of range", "id 99 at row 1");

    start(c);
    bg_op_logsoftmax_gather(c, V(o), V(a), V(bi), 2, 16);
    expect_poison(c, "gather target out of range", "id 99 at row 1");

    start(c);
    bg_op_attention(c, V(o), V(a), V(b), V(b), 2, 3, 4, 3, 2, 4);
    expect_poison(c, "attention bad heads", "attention");

    start(c);
    bg_op_attention(c, V(o), V(a), V(b), V(b), 2, 3, 2, 1, 2, 4); /* pos0 + T > seq_len */
    expect_poison(c, "attention past seq_len", "pos0 + T <= seq_len");

    start(c);
    bg_op_rope(c, V(a), V(b), 1, 0, 2, 2, 3);
    expect_poison(c, "rope odd head size", "even head_size");

    start(c);
    bg_tview nullv = {NULL, 0};
    bg_op_copy(c, V(o), nullv, 4);
    expect_poison(c, "NULL view", "NULL buffer");

    /* host access during a recording is refused; the recording stays valid */
    bg_err err;
    start(c);
    float tmp[4];
    if (bg_cbuf_read(c, a, 0, tmp, sizeof tmp, &err) == BG_OK) {
        printf("FAIL cbuf_read inside a recording succeeded\n");
        bg_test_failures++;
    }
    run(c, "empty recording");
    if (bg_cbuf_read(c, a, 252, tmp, 8, &err) == BG_OK) {
        printf("FAIL cbuf_read past the end succeeded\n");
        bg_test_failures++;
    }
    bg_cbuf *bad = NULL;
    if (bg_cbuf_create(c, 6, &bad, &err) != BG_EINVAL || bad) {
        printf("FAIL cbuf_create(6 bytes) accepted\n");
        bg_test_failures++;
    }
    /* a buffer left alive is freed by destroy (ASan checks for the leak) */
    (void)o;
    bg_cbuf_destroy(c, a);
    bg_cbuf_destroy(c, b);
    bg_cbuf_destroy(c, bi);
}

/* Many short parallel runs back to back: the pool must hand every run's
 * tasks out exactly once (a lost or repeated task changes the sum). */
static void test_pool_stress(bg_compute *c)
{
    enum { N = 40000, RUNS = 500 };
    float *one = malloc(sizeof(float) * N), *got = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        one[i] = 1.0f;
    bg_cbuf *bx = up(c, NULL, N), *by = up(c, one, N);
    start(c);
    for (int r = 0; r < RUNS; r++) {
        bg_op_add(c, V(bx), V(by), N);
        bg_compute_barrier(c);
    }
    run(c, "pool stress");
    down(c, bx, got, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += got[i] != (float)RUNS;
    if (bad) {
        printf("FAIL pool stress: %d of %d elements differ from %d\n", bad, N, RUNS);
        bg_test_failures++;
    }
    bg_cbuf_destroy(c, bx);
    bg_cbuf_destroy(c, by);
    free(one);
    free(got);
}

/* Whether the three results (1, 2 and 3 threads) of n floats are the same
 * bits; frees them. */
static int same_and_free(float *r[3], size_t n)
{
    int same =
        memcmp(r[0], r[1], sizeof(float) * n) == 0 && memcmp(r[0], r[2], sizeof(float) * n) == 0;
    for (int i = 0; i < 3; i++)
        free(r[i]);
    return same;
}

/* A CPU backend with this many threads (the thread-count comparisons). */
static bg_compute *cpu_threads(int threads)
{
    bg_compute_opts o = {BG_BACKEND_CPU, threads, 0, -1};
    bg_compute *c = NULL;
    bg_err err;
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%d threads: %s", threads, err.msg);
    return c;
}

/* The matmul and its backward GEMMs give the same bits with 1, 2 and 3
 * threads (each output tile is one task's, summed over K in order). */
static void test_gemm_threads_bitwise(void)
{
    static const int shapes[][3] = {{1, 300, 97},    {2, 65, 33},     {37, 45, 300},
                                    {25, 65, 385},   {97, 131, 800},  {12, 32, 384},
                                    {130, 2100, 40}, {200, 33, 1030}, {30, 600, 2100}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *x = rand_vec((size_t)M * K), *w = rand_vec((size_t)N * K);
        float *dy = rand_vec((size_t)M * N), *dw0 = rand_vec((size_t)N * K);
        size_t total = (size_t)M * N + (size_t)M * K + (size_t)N * K;
        float *res[3];
        for (int ti = 0; ti < 3; ti++) {
            bg_compute *c = cpu_threads(ti + 1);
            bg_cbuf *bx = up(c, x, (size_t)M * K), *bw = up(c, w, (size_t)N * K);
            bg_cbuf *bdy = up(c, dy, (size_t)M * N), *bdw = up(c, dw0, (size_t)N * K);
            bg_cbuf *bo = up(c, NULL, (size_t)M * N), *bdx = up(c, NULL, (size_t)M * K);
            start(c);
            bg_op_matmul(c, V(bo), V(bx), V(bw), M, N, K);
            bg_op_matmul_backward_x(c, V(bdx), V(bdy), V(bw), M, N, K, 0);
            bg_op_matmul_backward_w(c, V(bdw), V(bdy), V(bx), M, N, K);
            run(c, "gemm threads");
            float *r = res[ti] = malloc(sizeof(float) * total);
            down(c, bo, r, (size_t)M * N);
            down(c, bdx, r + (size_t)M * N, (size_t)M * K);
            down(c, bdw, r + (size_t)M * N + (size_t)M * K, (size_t)N * K);
            bg_cbuf *all[] = {bx, bw, bdy, bdw, bo, bdx};
            for (int i = 0; i < 6; i++)
                bg_cbuf_destroy(c, all[i]);
            bg_compute_destroy(c);
        }
        CHECK(same_and_free(res, total),
              "matmul/dx/dw %dx%dx%d: results differ between 1, 2 and 3 threads", M, N, K);
        free(x), free(w), free(dy), free(dw0);
    }
    printf("gemm: matmul, dx, dw bit-identical with 1, 2 and 3 threads\n");
}

/* dW of T x N x K at each of nts[0..3) threads: against the scalar
 * reference, and the same bits at every count. */
static void dw_case(int T, int N, int K, const int nts[3])
{
    size_t nk = (size_t)N * K;
    float *x = rand_vec((size_t)T * K), *dy = rand_vec((size_t)T * N), *dw0 = rand_vec(nk);
    float *want = malloc(sizeof(float) * nk), *got[3];
    memcpy(want, dw0, sizeof(float) * nk);
    bg_ref_matmul_backward_w(want, dy, x, T, N, K);
    for (int ti = 0; ti < 3; ti++) {
        bg_compute *c = cpu_threads(nts[ti]);
        bg_cbuf *bx = up(c, x, (size_t)T * K), *bdy = up(c, dy, (size_t)T * N);
        bg_cbuf *bdw = up(c, dw0, nk);
        start(c);
        bg_op_matmul_backward_w(c, V(bdw), V(bdy), V(bx), T, N, K);
        run(c, "dw partition");
        got[ti] = malloc(sizeof(float) * nk);
        down(c, bdw, got[ti], nk);
        char what[80];
        snprintf(what, sizeof what, "dw partition %dx%dx%d, %d threads", T, N, K, nts[ti]);
        check_close(what, got[ti], want, nk);
        bg_cbuf_destroy(c, bx);
        bg_cbuf_destroy(c, bdy);
        bg_cbuf_destroy(c, bdw);
        bg_compute_destroy(c);
    }
    CHECK(same_and_free(got, nk),
          "dw partition %dx%dx%d: results differ between %d, "
          "%d and %d threads",
          T, N, K, nts[0], nts[1], nts[2]);
    free(x), free(dy), free(dw0), free(want);
}

/* dW's fused partition (compute_cpu_gemm.c fused_task: blocks of dW rows,
 * each packed and multiplied by one task) on its edges, with 1, 2 and 3
 * threads: against the scalar reference and bit-identical across the
 * thread counts. One thread: blocks of MC = 96 rows. Several threads, the
 * AVX2 kernel (6x16 tile, K blocks <= 512): guided blocks (guided_rows: of
 * R rows left, R / 2nt rounded up to 6, 12..96), a bulk of equal blocks
 * then a shrinking tail; the other kernels: at least four blocks per
 * thread. Shapes (T tokens, dW rows, in), the AVX2 blocks at 2 / 3
 * threads: 288 rows (the 15M model's w2 and wq dW) 72 then 54 .. 18 and
 * four of 12 / 48 then 42 .. 18 and six of 12; 290 end in a block of one
 * panel and 2 rows (78, .., 12, 8 / 54, .., 12, 8); 31 rows are a bulk of
 * 12-row blocks whose last has 7 rows; 770 and 2000 a bulk of 96-row
 * blocks (5 and 18 / 3 and 16) then a tail ending in 8 rows; 13 rows 12 +
 * 1; 5 rows one block smaller than the 12-row minimum; in = 100 gives 7 B
 * panels, the last of 4 columns; T = 600 and 1030 are two and three K
 * blocks, summed in order whatever the thread count, T = 64, 40 and 24
 * one. More K blocks (kept from branch dwpack, whose one-run dW they
 * tested, reverted): T = 1001 is two K blocks of unequal length (501, 500)
 * over the 15M model's 288 rows; T = 1537 four (385, 384, 384, 384);
 * T = 1100 three K blocks of three fused tasks (31 rows: 12, 12, 7) or two
 * (24 rows), each long enough (in = 600, 1000) that tasks of two K blocks
 * on the same rows would overlap if the K blocks were not ordered.
 * Kept from branch dwsplit (whose one span of rows per thread they tested,
 * reverted), the guided blocks at 2 / 3 threads: 768 rows (the w1 dW) five
 * / three 96-row blocks, then a tail of 10 / 15 down to 12 rows; 701 four
 * / two, then a tail ending in 11 rows (a partial panel); 2000 rows at 7
 * threads eight 96-row blocks and a tail of 39 ending in 2 rows, at 32
 * threads three 36-row blocks and a tail of 112 (the table's F_TAIL_MAX
 * is 192) ending in 8. */
static void test_dw_partition(void)
{
    static const int shapes[][3] = {
        {600, 288, 100}, {600, 290, 100},  {513, 31, 17},   {1030, 770, 40}, {64, 290, 33},
        {40, 2000, 24},  {24, 13, 300},    {24, 5, 70},     {1001, 288, 30}, {1537, 290, 20},
        {1100, 31, 600}, {1100, 24, 1000}, {1030, 768, 40}, {600, 701, 70}};
    static const int few[3] = {1, 2, 3}, many[3] = {1, 33, 64}, more[3] = {1, 7, 32};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        dw_case(shapes[si][0], shapes[si][1], shapes[si][2], few);
    printf("dw partition: edge shapes match the reference, bit-identical with 1, 2 and 3 "
           "threads\n");
    dw_case(600, 2000, 24, more);
    printf("dw partition: 2000 rows at 7 and 32 threads as at 1\n");
    /* a pool larger than the fused path takes (F_MAX_THREADS, 32): 5000
     * rows at 64 threads would be 249 guided tail blocks, more than the
     * table holds; the call must still compute, bit-identical to 1 thread */
    dw_case(24, 5000, 24, many);
    printf("dw partition: 5000 rows at 33 and 64 threads as at 1\n");
}

static void suite(int threads)
{
    bg_compute_opts o = {BG_BACKEND_CPU, threads, 0, -1};
    bg_compute *c = NULL;
    bg_err err;
    if (bg_compute_create(&o, &c, &err) != BG_OK) {
        const char *k = getenv("BG_CPU_KERNEL");
        if (k && strstr(err.msg, "not supported on this machine")) {
            printf("SKIP: BG_CPU_KERNEL=%s: %s\n", k, err.msg);
            exit(77);
        }
        printf("FAIL create: %s\n", err.msg);
        exit(1);
    }
    printf("backend: %s\n", bg_compute_describe(c));
    const char *forced = getenv("BG_CPU_KERNEL");
    if (forced && *forced && strcmp(forced, "auto") != 0) {
        /* avx2 -> "avx2+fma", avx512 -> "avx512f", scalar -> "scalar" */
        CHECK(strstr(bg_compute_describe(c), forced) != NULL,
              "BG_CPU_KERNEL=%s but the backend runs %s", forced, bg_compute_describe(c));
    }
    if (bg_compute_kind(c) != BG_BACKEND_CPU) {
        printf("FAIL kind\n");
        bg_test_failures++;
    }
    static const int fixed[][3] = {{1, 1, 1},
                                   {1, 17, 33},
                                   {1, 64, 64},
                                   {1, 300, 288},
                                   {2, 37, 19},
                                   {3, 5, 7},
                                   {6, 16, 256},
                                   {7, 17, 257},
                                   {13, 100, 36},
                                   {64, 64, 64},
                                   {97, 131, 300},
                                   {200, 33, 520},
                                   /* the AVX-512 tile (12x32, K blocks <= 1024, N blocks 512) */
                                   {12, 32, 384},
                                   {11, 31, 383},
                                   {13, 33, 385},
                                   {25, 65, 769},
                                   {24, 64, 768},
                                   {36, 97, 1},
                                   {13, 33, 1025},
                                   {7, 40, 2100},
                                   {14, 530, 20},
                                   /* A read in place: a partial last panel, K = 1, two
                                    * chunks of A rows (1920 at K blocks of 1024) */
                                   {12, 32, 1},
                                   {23, 1, 5},
                                   {3, 40, 1},
                                   {1950, 13, 1024},
                                   /* AVX2: 6x16 tile, K blocks <= 512 (513: two of
                                    * 257), N blocks of 1024, 8-wide transposes with a
                                    * k tail */
                                   {6, 16, 512},
                                   {7, 17, 513},
                                   {18, 1040, 9}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        test_matmul(c, fixed[i][0], fixed[i][1], fixed[i][2]);
    for (int i = 0; i < 12; i++)
        test_matmul(c, irand(1, 40), irand(1, 90), irand(1, 300));
    /* The backward GEMMs (M tokens, N out, K in; dW runs as (N, K, M)):
     * T = M = 1 (one k task); T = 67 (k split 16 / 16 / 35 over 3 threads,
     * not a multiple of the 8-row steps); T = 1100 (two AVX-512 K blocks of
     * 550, three AVX2 of 367) with 530 dW rows (two panel groups of the
     * one-pass packer) and a partial B panel; 2100 dW rows at T = 1024 (two
     * chunks of A rows at K blocks of 1024, x's block kept); 8200 at T =
     * 520 (three AVX-512 chunks, two AVX2). dW with one N block (in <=
     * 512 AVX-512, 1024 AVX2) packs A block by block inside its compute
     * tasks (blocks of 96 rows, fewer with several threads: 2100 and 8200
     * rows end in a partial block and panel, 45 and 97 rows are a few small
     * blocks, 5 rows one partial panel); in = 1100 has several N blocks:
     * A packed by chunks. The AVX2 copies of 6-row panels move 8 floats
     * per k where 8 are inside the span (all but a call's last k): 13
     * and 14 dW rows give panels with 13, 7, 1 and 14, 8, 2 rows left
     * (8 wide, 6 wide, partial; 8 exactly to the span's end), T = 49 and
     * 50 calls of 1 and 2 k at the end. */
    static const int bwd[][3] = {{1, 33, 70},      {67, 45, 13},   {1100, 530, 37}, {64, 7, 1},
                                 {1024, 2100, 20}, {520, 8200, 9}, {130, 97, 200},  {70, 50, 1100},
                                 {300, 5, 40},     {49, 13, 30},   {50, 14, 30}};
    for (size_t i = 0; i < sizeof bwd / sizeof bwd[0]; i++)
        test_matmul_backward(c, bwd[i][0], bwd[i][1], bwd[i][2]);
    /* an output of >= 16M floats written once (one K block): streaming
     * stores with the AVX-512 kernel (N a multiple of 16, rows 64-byte
     * aligned); plain stores with the others */
    test_matmul(c, 520, 32272, 9);
    test_matmul(c, 1, 2100, 96);  /* matvec large enough to run on the pool */
    test_matmul(c, 13, 2100, 70); /* N past one 2048-column block of the packed GEMM */

    static const int rows[][2] = {{1, 1}, {1, 7}, {3, 36}, {5, 33}, {2, 513}, {64, 1000}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        test_rows_ops(c, rows[i][0], rows[i][1]);
    test_rows_ops(c, 1, 70000); /* elementwise ops large enough to split (> 4 chunks) */

    test_attention(c, 1, 0, 1, 1, 2, 1);
    test_attention(c, 1, 5, 6, 2, 6, 8);
    test_attention(c, 4, 3, 6, 3, 6, 9);
    test_attention(c, 7, 0, 8, 4, 8, 16);
    test_attention(c, 3, 40, 6, 6, 48, 64);
    test_attention(c, 16, 17, 4, 1, 18, 40);

    test_pool_stress(c);
    test_errors(c);
    bg_compute_destroy(c);
}

int main(void)
{
    const char *kern = getenv("BG_CPU_KERNEL");
    if (kern && *kern && strcmp(kern, "auto") && strcmp(kern, "scalar") && strcmp(kern, "avx2") &&
        strcmp(kern, "avx512")) {
        /* an unknown kernel name refuses the backend, naming the value */
        bg_compute_opts o = {BG_BACKEND_CPU, 1, 0, -1};
        bg_compute *c = NULL;
        bg_err err;
        CHECK(bg_compute_create(&o, &c, &err) == BG_EINVAL && !c, "BG_CPU_KERNEL=%s accepted",
              kern);
        CHECK(strstr(err.msg, kern) && strstr(err.msg, "avx512"), "message: %s", err.msg);
        printf("BG_CPU_KERNEL=%s refused: %s\n", kern, err.msg);
        CHECK_DONE("test_compute_cpu");
    }
    printf("tolerance: |cpu - ref| <= %g + %g*|ref|\n", (double)ATOL, (double)RTOL);
    suite(1);
    suite(3);
    test_gemm_threads_bitwise();
    test_dw_partition();
    bg_compute_opts bad = {BG_BACKEND_CPU, -2, 0, -1};
    bg_compute *c = NULL;
    bg_err err;
    if (bg_compute_create(&bad, &c, &err) != BG_EINVAL || c) {
        printf("FAIL threads -2 accepted\n");
        bg_test_failures++;
    }
    if (bg_backend_kind_parse("cpu") != BG_BACKEND_CPU ||
        bg_backend_kind_parse("vulkan") != BG_BACKEND_VULKAN ||
        bg_backend_kind_parse("auto") != BG_BACKEND_AUTO || bg_backend_kind_parse("gpu") != -1) {
        printf("FAIL bg_backend_kind_parse\n");
        bg_test_failures++;
    }
    /* auto always yields a working backend (Vulkan with a GPU, else CPU).
     * The probe may load Mesa's lavapipe; keep it mapped so LeakSanitizer
     * still sees its global caches (see tests/vulkan/vk_test_util.c). */
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    bg_compute_opts ao = {BG_BACKEND_AUTO, 1, 0, -1};
    if (bg_compute_create(&ao, &c, &err) != BG_OK) {
        printf("FAIL auto: %s\n", err.msg);
        bg_test_failures++;
    } else {
        printf("auto chose: %s\n", bg_compute_describe(c));
        bg_compute_destroy(c);
    }
    CHECK_DONE("test_compute_cpu");
}
