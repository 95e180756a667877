/*
 * test_vk_ops.c — every op of the Vulkan backend against the scalar reference
 * (compute_ref.h) over seeded random shapes, including sizes that are not
 * multiples of the matmul tiles (64x64; 128x16 in the gpu_variants run) or of
 * the workgroup (128), M == 1
 * (the matvec kernel), and views at unaligned element offsets (the runtime
 * aligns descriptor offsets down and passes the remainder). Buffers are
 * padded with NaN around each view, so a kernel that reads or writes outside
 * its view fails the comparison.
 *
 * Tolerances (|vk - ref| <= atol + rtol*|ref|, printed per case): summation
 * order differs (tiles, tree reductions) and Vulkan's exp/pow/sin/cos are
 * not correctly rounded (spec: exp 3+2|x| ulp, sin/cos 2^-11 absolute on
 * [-pi, pi]); exact ops (copy, add, embed) must match bit for bit.
 * Runs on lavapipe here (shapes kept small: ~5 GFLOP/s), on a GPU with
 * BG_VK_TEST_NATIVE=1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_ref.h"
#include "vk_test_util.h"

static bg_compute *C;

static void run(const char *what)
{
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(C, &err);
    if (rc != BG_OK) {
        fprintf(stderr, "%s: submit failed: %s\n", what, err.msg);
        bg_test_failures++;
    }
}

static void start(void)
{
    bg_err err;
    if (bg_compute_begin(C, &err) != BG_OK) {
        fprintf(stderr, "begin: %s\n", err.msg);
        exit(1);
    }
}

static size_t roff(void)
{
    return (size_t)vt_irand(0, 5);
}

static void done(bg_tview *v, int n)
{
    for (int i = 0; i < n; i++)
        bg_cbuf_destroy(C, v[i].buf);
}

static void test_matmul_at(int M, int N, int K, size_t xoff, size_t woff);

static void test_matmul(int M, int N, int K)
{
    test_matmul_at(M, N, K, roff(), roff());
}

/* x and w views at element offsets xoff, woff (multiples of 4 with K % 4 == 0
 * select the vec4 matvec). */
static void test_matmul_at(int M, int N, int K, size_t xoff, size_t woff)
{
    float *x = vt_rand_vec((size_t)M * K), *w = vt_rand_vec((size_t)N * K);
    float *want = malloc((size_t)M * N * 4), *got = malloc((size_t)M * N * 4);
    bg_ref_matmul(want, x, w, M, N, K);
    bg_tview v[3] = {vt_upload(C, NULL, roff(), (size_t)M * N, 3),
                     vt_upload(C, x, xoff, (size_t)M * K, 3),
                     vt_upload(C, w, woff, (size_t)N * K, 3)};
    start();
    bg_op_matmul(C, v[0], v[1], v[2], M, N, K);
    run("matmul");
    vt_download(C, v[0], got, (size_t)M * N);
    char what[64];
    snprintf(what, sizeof(what), "matmul M=%d N=%d K=%d%s", M, N, K,
             M == 1 && K % 4 == 0 && xoff % 4 == 0 && woff % 4 == 0 ? " (vec4)" : "");
    vt_check_close(what, got, want, (size_t)M * N, 1e-5, 1e-4);
    done(v, 3);
    free(x), free(w), free(want), free(got);
}

static void test_rmsnorm(int T, int n)
{
    float *x = vt_rand_vec((size_t)T * n), *w = vt_rand_vec((size_t)n);
    float *want = malloc((size_t)T * n * 4), *got = malloc((size_t)T * n * 4);
    bg_ref_rmsnorm(want, x, w, T, n, 1e-5f);
    bg_tview v[3] = {vt_upload(C, NULL, roff(), (size_t)T * n, 2),
                     vt_upload(C, x, roff(), (size_t)T * n, 2), vt_upload(C, w, roff(), n, 2)};
    start();
    bg_op_rmsnorm(C, v[0], v[1], v[2], T, n, 1e-5f);
    run("rmsnorm");
    vt_download(C, v[0], got, (size_t)T * n);
    char what[64];
    snprintf(what, sizeof(what), "rmsnorm T=%d n=%d", T, n);
    vt_check_close(what, got, want, (size_t)T * n, 1e-6, 1e-5);
    done(v, 3);
    free(x), free(w), free(want), free(got);
}

static void test_rope(int T, int pos0, int nh, int nkv, int hs)
{
    size_t nq = (size_t)T * nh * hs, nk = (size_t)T * nkv * hs;
    float *q = vt_rand_vec(nq), *k = vt_rand_vec(nk);
    bg_tview v[2] = {vt_upload(C, q, roff(), nq, 2), vt_upload(C, k, roff(), nk, 2)};
    bg_ref_rope(q, k, T, pos0, nh, nkv, hs);
    float *gq = malloc(nq * 4), *gk = malloc(nk * 4);
    start();
    bg_op_rope(C, v[0], v[1], T, pos0, nh, nkv, hs);
    run("rope");
    vt_download(C, v[0], gq, nq);
    vt_download(C, v[1], gk, nk);
    char what[80];
    snprintf(what, sizeof(what), "rope q T=%d pos0=%d nh=%d hs=%d", T, pos0, nh, hs);
    vt_check_close(what, gq, q, nq, 5e-5, 1e-5);
    snprintf(what, sizeof(what), "rope k T=%d pos0=%d nkv=%d hs=%d", T, pos0, nkv, hs);
    vt_check_close(what, gk, k, nk, 5e-5, 1e-5);
    done(v, 2);
    free(q), free(k), free(gq), free(gk);
}

static void test_softmax(int rows, int n)
{
    size_t tn = (size_t)rows * n;
    float *x = vt_rand_vec(tn), *got = malloc(tn * 4);
    for (size_t i = 0; i < tn; i++)
        x[i] *= 8.0f;
    bg_tview v = vt_upload(C, x, roff(), tn, 2);
    bg_ref_softmax(x, rows, n);
    start();
    bg_op_softmax(C, v, rows, n);
    run("softmax");
    vt_download(C, v, got, tn);
    char what[64];
    snprintf(what, sizeof(what), "softmax rows=%d n=%d", rows, n);
    vt_check_close(what, got, x, tn, 1e-7, 1e-4);
    done(&v, 1);
    free(x), free(got);
}

static void test_attention(int T, int pos0, int nh, int nkv, int hs, int seq_len)
{
    size_t qn = (size_t)T * nh * hs, kvn = (size_t)seq_len * nkv * hs;
    float *q = vt_rand_vec(qn), *kc = vt_rand_vec(kvn), *vc = vt_rand_vec(kvn);
    float *want = malloc(qn * 4), *got = malloc(qn * 4);
    bg_ref_attention(want, q, kc, vc, T, pos0, nh, nkv, hs, seq_len);
    bg_tview v[4] = {vt_upload(C, NULL, roff(), qn, 2), vt_upload(C, q, roff(), qn, 2),
                     vt_upload(C, kc, roff(), kvn, 0), vt_upload(C, vc, roff(), kvn, 0)};
    start();
    bg_op_attention(C, v[0], v[1], v[2], v[3], T, pos0, nh, nkv, hs, seq_len);
    run("attention");
    vt_download(C, v[0], got, qn);
    char what[96];
    snprintf(what, sizeof(what), "attention T=%d pos0=%d nh=%d nkv=%d hs=%d", T, pos0, nh, nkv, hs);
    vt_check_close(what, got, want, qn, 1e-5, 1e-4);
    done(v, 4);
    free(q), free(kc), free(vc), free(want), free(got);
}

/* swiglu, add, copy: in place or dst/src over n elements. */
static void test_elementwise(const char *op, int n)
{
    float *h = vt_rand_vec((size_t)n), *g = vt_rand_vec((size_t)n), *got = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++)
        h[i] *= 6.0f;
    bg_tview v[2] = {vt_upload(C, h, roff(), (size_t)n, 2), vt_upload(C, g, roff(), (size_t)n, 2)};
    start();
    double tol = 0.0;
    if (strcmp(op, "swiglu") == 0) {
        bg_op_swiglu(C, v[0], v[1], n);
        bg_ref_swiglu(h, g, n);
        tol = 1e-5;
    } else if (strcmp(op, "add") == 0) {
        bg_op_add(C, v[0], v[1], n);
        bg_ref_add(h, g, n);
    } else {
        bg_op_copy(C, v[0], v[1], n);
        bg_ref_copy(h, g, n);
    }
    run(op);
    vt_download(C, v[0], got, (size_t)n);
    char what[64];
    snprintf(what, sizeof(what), "%s n=%d%s", op, n, tol == 0.0 ? " (exact)" : "");
    vt_check_close(what, got, h, (size_t)n, tol == 0.0 ? 0.0 : 1e-6, tol);
    if (tol == 0.0)
        CHECK(memcmp(got, h, (size_t)n * 4) == 0);
    done(v, 2);
    free(h), free(g), free(got);
}

static void test_embed(int vocab, int T, int dim)
{
    float *table = vt_rand_vec((size_t)vocab * dim), *want = malloc((size_t)T * dim * 4);
    float *got = malloc((size_t)T * dim * 4);
    int32_t *tok = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++)
        tok[t] = vt_irand(0, vocab - 1);
    tok[0] = vocab - 1; /* the last row: the view must reach the table's end */
    bg_ref_embed(want, table, tok, T, dim);
    bg_tview v[3] = {vt_upload(C, NULL, roff(), (size_t)T * dim, 2),
                     vt_upload(C, table, roff(), (size_t)vocab * dim, 0),
                     vt_upload(C, tok, roff(), (size_t)T, 2)};
    start();
    bg_op_embed(C, v[0], v[1], v[2], T, dim);
    run("embed");
    vt_download(C, v[0], got, (size_t)T * dim);
    char what[64];
    snprintf(what, sizeof(what), "embed vocab=%d T=%d dim=%d (exact)", vocab, T, dim);
    vt_check_close(what, got, want, (size_t)T * dim, 0.0, 0.0);
    done(v, 3);
    free(table), free(want), free(got), free(tok);
}

/* Runs one id-taking op on backend c over (out: n_out floats poisoned
 * with -7, in: n_in floats, ids: 2 ids): submit's code, its message in
 * msg, the output as the backend left it. */
typedef void (*ids_op_fn)(bg_compute *c, const bg_tview *v);
static int ids_op_on(bg_compute *c, ids_op_fn op, const float *in, int n_in, int n_out,
                     const int32_t *tok, float *got, char *msg, size_t len)
{
    float out[8];
    for (int i = 0; i < n_out; i++)
        out[i] = -7.0f;
    bg_tview v[3] = {vt_upload(c, out, 0, n_out, 0), vt_upload(c, in, 0, n_in, 0),
                     vt_upload(c, tok, 0, 2, 0)};
    bg_err err;
    bg_err_clear(&err);
    CHECK_INT(bg_compute_begin(c, &err), BG_OK);
    op(c, v);
    int rc = bg_compute_submit(c, &err);
    snprintf(msg, len, "%s", err.msg);
    vt_download(c, v[0], got, n_out);
    for (int i = 0; i < 3; i++)
        bg_cbuf_destroy(c, v[i].buf);
    return rc;
}

static void embed_op(bg_compute *c, const bg_tview *v)
{
    bg_op_embed(c, v[0], v[1], v[2], 2, 3);
}

/* One embed of ids tok[0..2) from a table of 4 rows of 3 on backend c. */
static int embed_on(bg_compute *c, const int32_t *tok, float *got, char *msg, size_t len)
{
    float table[12];
    for (int i = 0; i < 12; i++)
        table[i] = (float)(i + 1);
    return ids_op_on(c, embed_op, table, 12, 6, tok, got, msg, len);
}

/* An id outside the table is the caller's error, reported as the CPU
 * backend reports it (BG_EINVAL naming op, id, row and range), never a row
 * of zeros; nothing is written; the next recording starts clean. */
static void test_embed_bad_ids(void)
{
    bg_compute *cpu;
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 1};
    bg_err err;
    CHECK_INT(bg_compute_create(&co, &cpu, &err), BG_OK);
    static const int32_t bad[3][2] = {{1, 4}, {-1, 0}, {2, 1 << 30}};
    for (int k = 0; k < 3; k++) {
        float got[6], cgot[6];
        char msg[256], cmsg[256];
        int rc = embed_on(C, bad[k], got, msg, sizeof msg);
        int crc = embed_on(cpu, bad[k], cgot, cmsg, sizeof cmsg);
        printf("  embed ids {%d, %d}: vulkan %s: %s | cpu %s: %s\n", bad[k][0], bad[k][1],
               bg_err_name(rc), msg, bg_err_name(crc), cmsg);
        CHECK(rc == BG_EINVAL && crc == BG_EINVAL, "vulkan %s, cpu %s", bg_err_name(rc),
              bg_err_name(crc));
        CHECK_STR(msg, cmsg);
        CHECK(strstr(msg, "compute op embed: id ") && strstr(msg, "expected 0..3"), "%s", msg);
        for (int i = 0; i < 6; i++)
            CHECK(got[i] == -7.0f, "vulkan embed wrote out[%d] = %g despite the bad id", i,
                  (double)got[i]);
    }
    float got[6];
    char msg[256];
    const int32_t good[2] = {3, 0};
    CHECK_INT(embed_on(C, good, got, msg, sizeof msg), BG_OK);
    CHECK(got[0] == 10.0f && got[2] == 12.0f && got[3] == 1.0f && got[5] == 3.0f,
          "after a poisoned recording: %g %g %g %g", (double)got[0], (double)got[2], (double)got[3],
          (double)got[5]);
    bg_compute_destroy(cpu);
}

static void gather_op(bg_compute *c, const bg_tview *v)
{
    bg_op_logsoftmax_gather(c, v[0], v[1], v[2], 2, 4);
}

/* logsoftmax_gather of targets tok[0..2) over 2 rows of 4 logits on c. */
static int gather_on(bg_compute *c, const int32_t *tok, float *got, char *msg, size_t len)
{
    float logits[8];
    for (int i = 0; i < 8; i++)
        logits[i] = 0.25f * (float)i;
    return ids_op_on(c, gather_op, logits, 8, 2, tok, got, msg, len);
}

/* A target outside the vocabulary is refused as the CPU backend refuses it,
 * never a log-probability read from outside the row. */
static void test_gather_bad_ids(void)
{
    bg_compute *cpu;
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 1};
    bg_err err;
    CHECK_INT(bg_compute_create(&co, &cpu, &err), BG_OK);
    static const int32_t bad[3][2] = {{1, 4}, {-1, 0}, {2, 1 << 30}};
    for (int k = 0; k < 3; k++) {
        float got[2], cgot[2];
        char msg[256], cmsg[256];
        int rc = gather_on(C, bad[k], got, msg, sizeof msg);
        int crc = gather_on(cpu, bad[k], cgot, cmsg, sizeof cmsg);
        printf("  logsoftmax_gather targets {%d, %d}: vulkan %s: %s | cpu %s: %s\n", bad[k][0],
               bad[k][1], bg_err_name(rc), msg, bg_err_name(crc), cmsg);
        CHECK(rc == BG_EINVAL && crc == BG_EINVAL, "vulkan %s, cpu %s", bg_err_name(rc),
              bg_err_name(crc));
        CHECK_STR(msg, cmsg);
        CHECK(got[0] == -7.0f && got[1] == -7.0f, "vulkan wrote %g %g despite the bad target",
              (double)got[0], (double)got[1]);
    }
    float got[2];
    char msg[256];
    const int32_t good[2] = {3, 0};
    CHECK_INT(gather_on(C, good, got, msg, sizeof msg), BG_OK);
    /* row 0: logits 0, .25, .5, .75; row 1: 1, 1.25, 1.5, 1.75 (same shape) */
    double lse = 0.75 + log(exp(-0.75) + exp(-0.5) + exp(-0.25) + 1.0);
    CHECK_NEAR(got[0], 0.75 - lse, 1e-5);
    CHECK_NEAR(got[1], 0.0 - (lse - 0.0), 1e-5);
    bg_compute_destroy(cpu);
}

static void test_logsoftmax_gather(int T, int V)
{
    float *l = vt_rand_vec((size_t)T * V), want[64], got[64];
    for (size_t i = 0; i < (size_t)T * V; i++)
        l[i] *= 10.0f;
    int32_t tg[64];
    for (int t = 0; t < T; t++)
        tg[t] = vt_irand(0, V - 1);
    bg_ref_logsoftmax_gather(want, l, tg, T, V);
    bg_tview v[3] = {vt_upload(C, NULL, roff(), (size_t)T, 2),
                     vt_upload(C, l, roff(), (size_t)T * V, 2), vt_upload(C, tg, roff(), T, 2)};
    start();
    bg_op_logsoftmax_gather(C, v[0], v[1], v[2], T, V);
    run("logsoftmax_gather");
    vt_download(C, v[0], got, (size_t)T);
    char what[64];
    snprintf(what, sizeof(what), "logsoftmax_gather T=%d V=%d", T, V);
    vt_check_close(what, got, want, (size_t)T, 1e-4, 1e-5);
    done(v, 3);
    free(l);
}

int main(void)
{
    C = vt_create_or_skip("test_vk_ops");
    vt_seed(20261126);

    /* fixed edge shapes, then random ones */
    static const int mm[][3] = {{1, 1, 1},    {1, 173, 64}, {1, 512, 300}, {2, 3, 5},
                                {32, 32, 16}, {64, 64, 64}, {33, 65, 17},  {65, 31, 129},
                                {7, 200, 64}, {100, 1, 9}};
    for (size_t i = 0; i < sizeof(mm) / sizeof(mm[0]); i++)
        test_matmul(mm[i][0], mm[i][1], mm[i][2]);
    for (int i = 0; i < 6; i++)
        test_matmul(vt_irand(1, 80), vt_irand(1, 150), vt_irand(1, 150));
    /* matvec variants: vec4 or scalar loads, 1..many rows per workgroup */
    static const int mv[][4] = {{5, 4, 0, 0},     {37, 64, 4, 8},   {37, 64, 1, 8},
                                {300, 300, 0, 4}, {33, 1024, 8, 0}, {33, 1024, 8, 3},
                                {9, 333, 0, 0},   {300000, 4, 0, 0}};
    for (size_t i = 0; i < sizeof(mv) / sizeof(mv[0]); i++)
        test_matmul_at(1, mv[i][0], mv[i][1], (size_t)mv[i][2], (size_t)mv[i][3]);

    test_rmsnorm(1, 1);
    test_rmsnorm(3, 64);
    test_rmsnorm(5, 300);
    test_rmsnorm(2, 129);
    for (int i = 0; i < 3; i++)
        test_rmsnorm(vt_irand(1, 9), vt_irand(1, 500));

    test_rope(1, 0, 8, 4, 8);
    test_rope(3, 17, 6, 6, 48);
    test_rope(5, 250, 8, 2, 10);
    test_rope(2, 511, 4, 1, 64);

    test_softmax(1, 1);
    test_softmax(3, 7);
    test_softmax(2, 513);
    test_softmax(4, 1000);

    test_attention(1, 0, 8, 4, 8, 16);
    test_attention(1, 200, 8, 4, 8, 512);
    test_attention(5, 3, 6, 3, 10, 16);
    test_attention(7, 0, 4, 4, 36, 7);
    test_attention(3, 130, 2, 1, 128, 133);
    test_attention(2, 60, 4, 2, 260, 70);
    test_attention(2, 5, 2, 1, 600, 9); /* 5 output dims per invocation */

    test_elementwise("swiglu", 1);
    test_elementwise("swiglu", 173);
    test_elementwise("swiglu", 4097);
    test_elementwise("add", 1);
    test_elementwise("add", 1000);
    test_elementwise("copy", 3);
    test_elementwise("copy", 300001);

    test_embed(1, 1, 1);
    test_embed(512, 5, 64);
    test_embed(37, 9, 17);
    test_embed_bad_ids();
    test_gather_bad_ids();

    test_logsoftmax_gather(1, 1);
    test_logsoftmax_gather(3, 512);
    test_logsoftmax_gather(7, 1001);

    bg_compute_destroy(C);
    bg_test_failures += vt_failures;
    CHECK_DONE("test_vk_ops");
}
