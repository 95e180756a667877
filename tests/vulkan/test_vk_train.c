/*
 * test_vk_train.c — every training op of compute.h (backward passes, the
 * fused loss, the gradient norm, AdamW) on the Vulkan backend against the
 * double-precision scalar reference (compute_ref.h) and against the CPU
 * backend, on small and odd shapes: sizes that are not multiples of the
 * workgroup (128) or of the GEMM tile (64x64; 128x16 in the gpu_variants
 * run), sequences longer than one key chunk (T > 128), head sizes over the
 * workgroup (several dims per invocation), views at unaligned offsets with
 * NaN around them (a kernel that reads or writes outside its view fails).
 *
 * Tolerances (|got - want| <= atol + rtol |want|, printed per case): the
 * reference sums in double, the kernels in float in another order, and
 * Vulkan's exp is not correctly rounded (3 + 2|x| ulp), so backward ops get
 * 1e-5..1e-4 relative; fill, axpy (no fused multiply-add: `precise`) and
 * embed_backward (the reference's order of t) must match bit for bit. AdamW
 * runs five steps and must stay within 16 ulp of the reference per element
 * (float vs double: m and v round 2-3 times per step, the update ~3 ulp
 * relative per step, five steps; a parameter's ulp is taken at
 * max(|p|, lr), the size of a step). The CPU backend is compared
 * with the same bounds; an op it does not implement yet is reported and
 * skipped (that comparison only). Bad token and target ids fail the
 * recording before it runs (checked at record time). Lavapipe here, a GPU
 * with BG_VK_TEST_NATIVE=1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_ref.h"
#include "vk_test_util.h"

static bg_compute *VK, *CPU;

/* The views of one op run, freed together. */
typedef struct run {
    bg_compute *c;
    bg_tview v[12];
    int n;
} run;

static size_t roff(void)
{
    return (size_t)vt_irand(0, 5);
}

static bg_tview up(run *r, const void *host, size_t n)
{
    bg_tview v = vt_upload(r->c, host, roff(), n, 3);
    r->v[r->n++] = v;
    return v;
}

static void start(run *r, bg_compute *c)
{
    r->c = c;
    r->n = 0;
}

/* Begin the recording, after the uploads (host access is only valid
 * outside one). */
static void rec(run *r)
{
    bg_err err;
    if (bg_compute_begin(r->c, &err) != BG_OK) {
        fprintf(stderr, "begin: %s\n", err.msg);
        exit(1);
    }
}

/* Submit; BG_EUNAVAIL (the backend lacks the op) is returned for the
 * caller to report, any other failure fails the test. */
static int finish(run *r, const char *what)
{
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(r->c, &err);
    if (rc == BG_EUNAVAIL) {
        printf("  %-44s %s backend: %s (comparison skipped)\n", what,
               bg_compute_kind(r->c) == BG_BACKEND_CPU ? "cpu" : "vulkan", err.msg);
    } else if (rc != BG_OK) {
        fprintf(stderr, "%s: submit failed: %s\n", what, err.msg);
        bg_test_failures++;
    }
    return rc;
}

static void get(run *r, int i, void *host, size_t n)
{
    vt_download(r->c, r->v[i], host, n);
}

static void done(run *r)
{
    for (int i = 0; i < r->n; i++)
        bg_cbuf_destroy(r->c, r->v[i].buf);
}

static bg_tview at(bg_tview v, size_t elems)
{
    v.off += elems;
    return v;
}

static float *copy_of(const float *x, size_t n)
{
    float *y = malloc(n * 4);
    memcpy(y, x, n * 4);
    return y;
}

/* Compare one output of both backends: Vulkan and CPU against the reference
 * (cpu NULL when the CPU backend lacks the op). */
static void both(const char *what, const float *vk, const float *cpu, const float *want, size_t n,
                 double atol, double rtol)
{
    char w[128];
    snprintf(w, sizeof(w), "vk  %s", what);
    vt_check_close(w, vk, want, n, atol, rtol);
    if (cpu) {
        snprintf(w, sizeof(w), "cpu %s", what);
        vt_check_close(w, cpu, want, n, atol, rtol);
        snprintf(w, sizeof(w), "vk~cpu %s", what);
        vt_check_close(w, vk, cpu, n, atol, 2 * rtol);
    }
}

/* ---- elementwise and small ops --------------------------------------------- */

static void test_fill_axpy(int n)
{
    float *y = vt_rand_vec((size_t)n), *x = vt_rand_vec((size_t)n);
    float *want = copy_of(y, (size_t)n), *got = malloc((size_t)n * 4);
    bg_ref_axpy(want, x, -0.37f, n);
    bg_compute *cs[2] = {VK, CPU};
    for (int k = 0; k < 2; k++) {
        run r;
        start(&r, cs[k]);
        bg_tview vy = up(&r, y, (size_t)n), vx = up(&r, x, (size_t)n);
        bg_tview vf = up(&r, x, (size_t)n);
        rec(&r);
        bg_op_axpy(r.c, vy, vx, -0.37f, n);
        bg_op_fill(r.c, vf, 2.5f, n);
        if (finish(&r, "axpy/fill") == BG_OK) {
            /* Vulkan: one multiply, one add, as the reference (bit for bit);
             * the CPU backend's SIMD axpy may fuse them (half an ulp of the
             * product) */
            char what[64];
            snprintf(what, sizeof(what), "%s axpy n=%d%s", k ? "cpu" : "vk ", n,
                     k ? "" : " (exact)");
            get(&r, 0, got, (size_t)n);
            vt_check_close(what, got, want, (size_t)n, k ? 1e-7 : 0.0, k ? 1e-6 : 0.0);
            if (!k)
                CHECK(memcmp(got, want, (size_t)n * 4) == 0, "%s: not bit-identical", what);
            get(&r, 2, got, (size_t)n);
            int ok = 1;
            for (int i = 0; i < n; i++)
                ok &= got[i] == 2.5f;
            CHECK(ok, "%s fill n=%d: not every element is 2.5", k ? "cpu" : "vk", n);
        }
        done(&r);
    }
    free(y), free(x), free(want), free(got);
}

static void test_embed_backward(int vocab, int T, int dim)
{
    size_t tn = (size_t)vocab * dim;
    float *table = vt_rand_vec(tn), *dout = vt_rand_vec((size_t)T * dim);
    float *want = copy_of(table, tn), *got[2] = {malloc(tn * 4), malloc(tn * 4)};
    int32_t *tok = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++)
        tok[t] = vt_irand(0, vocab / 3); /* many repeats */
    tok[0] = vocab - 1;
    bg_ref_embed_backward(want, dout, tok, T, dim);
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        run r;
        start(&r, cs[k]);
        /* the table's rows are those of its buffer: no padding after it */
        bg_tview vt = vt_upload(r.c, table, roff(), tn, 0);
        r.v[r.n++] = vt;
        bg_tview vd = up(&r, dout, (size_t)T * dim), vk = up(&r, tok, (size_t)T);
        rec(&r);
        bg_op_embed_backward(r.c, vt, vd, vk, T, dim);
        if (finish(&r, "embed_backward") == BG_OK) {
            get(&r, 0, got[k], tn);
            have[k] = 1;
        }
        done(&r);
    }
    char what[80];
    snprintf(what, sizeof(what), "embed_backward vocab=%d T=%d dim=%d (exact)", vocab, T, dim);
    both(what, got[0], have[1] ? got[1] : NULL, want, tn, 0.0, 0.0);
    CHECK(memcmp(got[0], want, tn * 4) == 0, "%s: vulkan not bit-identical", what);
    free(table), free(dout), free(want), free(got[0]), free(got[1]), free(tok);
}

static void test_rmsnorm_backward(int T, int n)
{
    size_t tn = (size_t)T * n;
    float *x = vt_rand_vec(tn), *w = vt_rand_vec((size_t)n), *dout = vt_rand_vec(tn);
    float *dx0 = vt_rand_vec(tn), *dw0 = vt_rand_vec((size_t)n); /* both accumulate */
    float *wdx = copy_of(dx0, tn), *wdw = copy_of(dw0, (size_t)n);
    bg_ref_rmsnorm_backward(wdx, wdw, dout, x, w, T, n, 1e-5f);
    float *gdx[2] = {malloc(tn * 4), malloc(tn * 4)};
    float *gdw[2] = {malloc((size_t)n * 4), malloc((size_t)n * 4)};
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        run r;
        start(&r, cs[k]);
        bg_tview v0 = up(&r, dx0, tn), v1 = up(&r, dw0, (size_t)n), v2 = up(&r, dout, tn);
        bg_tview v3 = up(&r, x, tn), v4 = up(&r, w, (size_t)n);
        rec(&r);
        bg_op_rmsnorm_backward(r.c, v0, v1, v2, v3, v4, T, n, 1e-5f);
        if (finish(&r, "rmsnorm_backward") == BG_OK) {
            get(&r, 0, gdx[k], tn);
            get(&r, 1, gdw[k], (size_t)n);
            have[k] = 1;
        }
        done(&r);
    }
    char what[80];
    snprintf(what, sizeof(what), "rmsnorm_backward dx T=%d n=%d", T, n);
    both(what, gdx[0], have[1] ? gdx[1] : NULL, wdx, tn, 1e-5, 1e-5);
    snprintf(what, sizeof(what), "rmsnorm_backward dw T=%d n=%d", T, n);
    both(what, gdw[0], have[1] ? gdw[1] : NULL, wdw, (size_t)n, 1e-5, 1e-5);
    free(x), free(w), free(dout), free(dx0), free(dw0), free(wdx), free(wdw);
    free(gdx[0]), free(gdx[1]), free(gdw[0]), free(gdw[1]);
}

/* backward_x (accumulate or not) and backward_w of out[M,N] = x[M,K] w[N,K]^T */
static void test_matmul_backward(int M, int N, int K, int accumulate)
{
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    float *x = vt_rand_vec(mk), *w = vt_rand_vec(nk), *dy = vt_rand_vec(mn);
    float *dx0 = vt_rand_vec(mk), *dw0 = vt_rand_vec(nk);
    float *wdx = copy_of(dx0, mk), *wdw = copy_of(dw0, nk);
    bg_ref_matmul_backward_x(wdx, dy, w, M, N, K, accumulate);
    bg_ref_matmul_backward_w(wdw, dy, x, M, N, K);
    float *gdx[2] = {malloc(mk * 4), malloc(mk * 4)}, *gdw[2] = {malloc(nk * 4), malloc(nk * 4)};
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        run r;
        start(&r, cs[k]);
        bg_tview vdx = up(&r, dx0, mk), vdw = up(&r, dw0, nk), vdy = up(&r, dy, mn);
        bg_tview vw = up(&r, w, nk), vx = up(&r, x, mk);
        rec(&r);
        bg_op_matmul_backward_x(r.c, vdx, vdy, vw, M, N, K, accumulate);
        bg_op_matmul_backward_w(r.c, vdw, vdy, vx, M, N, K); /* independent: no barrier */
        if (finish(&r, "matmul_backward") == BG_OK) {
            get(&r, 0, gdx[k], mk);
            get(&r, 1, gdw[k], nk);
            have[k] = 1;
        }
        done(&r);
    }
    char what[80];
    snprintf(what, sizeof(what), "matmul_backward_x M=%d N=%d K=%d%s", M, N, K,
             accumulate ? " +=" : "");
    both(what, gdx[0], have[1] ? gdx[1] : NULL, wdx, mk, 1e-5, 1e-4);
    snprintf(what, sizeof(what), "matmul_backward_w M=%d N=%d K=%d", M, N, K);
    both(what, gdw[0], have[1] ? gdw[1] : NULL, wdw, nk, 1e-5, 1e-4);
    free(x), free(w), free(dy), free(dx0), free(dw0), free(wdx), free(wdw);
    free(gdx[0]), free(gdx[1]), free(gdw[0]), free(gdw[1]);
}

static void test_rope_backward(int T, int pos0, int nh, int nkv, int hs)
{
    size_t nq = (size_t)T * nh * hs, nk = (size_t)T * nkv * hs;
    float *q = vt_rand_vec(nq), *k = vt_rand_vec(nk);
    float *wq = copy_of(q, nq), *wk = copy_of(k, nk);
    bg_ref_rope_backward(wq, wk, T, pos0, nh, nkv, hs);
    float *gq[2] = {malloc(nq * 4), malloc(nq * 4)}, *gk[2] = {malloc(nk * 4), malloc(nk * 4)};
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        run r;
        start(&r, cs[c]);
        bg_tview vq = up(&r, q, nq), vk = up(&r, k, nk);
        rec(&r);
        bg_op_rope_backward(r.c, vq, vk, T, pos0, nh, nkv, hs);
        if (finish(&r, "rope_backward") == BG_OK) {
            get(&r, 0, gq[c], nq);
            get(&r, 1, gk[c], nk);
            have[c] = 1;
        }
        done(&r);
    }
    char what[80];
    /* angles up to ~500 rad: the reference's sinf/cosf vs the device's
     * range-reduced sin/cos (rope.comp) */
    snprintf(what, sizeof(what), "rope_backward dq T=%d pos0=%d nh=%d hs=%d", T, pos0, nh, hs);
    both(what, gq[0], have[1] ? gq[1] : NULL, wq, nq, 5e-5, 1e-5);
    snprintf(what, sizeof(what), "rope_backward dk T=%d pos0=%d nkv=%d hs=%d", T, pos0, nkv, hs);
    both(what, gk[0], have[1] ? gk[1] : NULL, wk, nk, 5e-5, 1e-5);
    free(q), free(k), free(wq), free(wk), free(gq[0]), free(gq[1]), free(gk[0]), free(gk[1]);
}

/* ---- attention ------------------------------------------------------------- */

static void test_attention(int B, int T, int nh, int nkv, int hs)
{
    size_t rows = (size_t)B * T, qn = rows * nh * hs, kvn = rows * nkv * hs, ln = rows * nh;
    float *q = vt_rand_vec(qn), *k = vt_rand_vec(kvn), *v = vt_rand_vec(kvn);
    float *dout = vt_rand_vec(qn);
    for (size_t i = 0; i < qn; i++)
        q[i] *= 2.0f; /* peaked enough that the softmax is not flat */
    float *wout = malloc(qn * 4), *wlse = malloc(ln * 4);
    float *wdq = malloc(qn * 4), *wdk = malloc(kvn * 4), *wdv = malloc(kvn * 4);
    bg_ref_attention_train(wout, wlse, q, k, v, B, T, nh, nkv, hs);
    bg_ref_attention_backward(wdq, wdk, wdv, dout, q, k, v, wout, wlse, B, T, nh, nkv, hs);
    float *g[2][5];
    size_t sz[5] = {qn, ln, qn, kvn, kvn};
    int have[2] = {0, 0};
    bg_compute *cs[2] = {VK, CPU};
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < 5; i++)
            g[c][i] = malloc(sz[i] * 4);
        run r;
        start(&r, cs[c]);
        bg_tview vo = up(&r, NULL, qn), vl = up(&r, NULL, ln), vq = up(&r, q, qn);
        bg_tview vk = up(&r, k, kvn), vv = up(&r, v, kvn), vd = up(&r, dout, qn);
        bg_tview vdq = up(&r, NULL, qn), vdk = up(&r, NULL, kvn), vdv = up(&r, NULL, kvn);
        /* forward and backward in one recording, as a training step runs them */
        rec(&r);
        bg_op_attention_train(r.c, vo, vl, vq, vk, vv, B, T, nh, nkv, hs);
        bg_compute_barrier(r.c);
        bg_op_attention_backward(r.c, vdq, vdk, vdv, vd, vq, vk, vv, vo, vl, B, T, nh, nkv, hs);
        if (finish(&r, "attention_train/backward") == BG_OK) {
            get(&r, 0, g[c][0], qn);
            get(&r, 1, g[c][1], ln);
            get(&r, 6, g[c][2], qn);
            get(&r, 7, g[c][3], kvn);
            get(&r, 8, g[c][4], kvn);
            have[c] = 1;
        }
        done(&r);
    }
    static const char *names[5] = {"attention_train out", "attention_train lse",
                                   "attention_backward dq", "attention_backward dk",
                                   "attention_backward dv"};
    const float *want[5] = {wout, wlse, wdq, wdk, wdv};
    for (int i = 0; i < 5; i++) {
        char what[96];
        snprintf(what, sizeof(what), "%s B=%d T=%d nh=%d nkv=%d hs=%d", names[i], B, T, nh, nkv,
                 hs);
        both(what, g[0][i], have[1] ? g[1][i] : NULL, want[i], sz[i], 1e-5, 1e-4);
    }
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 5; i++)
            free(g[c][i]);
    free(q), free(k), free(v), free(dout), free(wout), free(wlse), free(wdq), free(wdk), free(wdv);
}

/* The training forward equals the inference kernel row for row. */
static void test_attention_train_vs_inference(int T, int nh, int nkv, int hs)
{
    size_t qn = (size_t)T * nh * hs, kvn = (size_t)T * nkv * hs;
    float *q = vt_rand_vec(qn), *k = vt_rand_vec(kvn), *v = vt_rand_vec(kvn);
    float *a = malloc(qn * 4), *b = malloc(qn * 4);
    run r;
    start(&r, VK);
    bg_tview vo = up(&r, NULL, qn), vl = up(&r, NULL, (size_t)T * nh), vq = up(&r, q, qn);
    bg_tview vk = up(&r, k, kvn), vv = up(&r, v, kvn), vi = up(&r, NULL, qn);
    rec(&r);
    bg_op_attention_train(r.c, vo, vl, vq, vk, vv, 1, T, nh, nkv, hs);
    bg_op_attention(r.c, vi, vq, vk, vv, T, 0, nh, nkv, hs, T);
    if (finish(&r, "attention train vs inference") == BG_OK) {
        get(&r, 0, a, qn);
        get(&r, 5, b, qn);
        char what[96];
        snprintf(what, sizeof(what), "attention_train == attention T=%d (exact)", T);
        vt_check_close(what, a, b, qn, 0.0, 0.0);
    }
    done(&r);
    free(q), free(k), free(v), free(a), free(b);
}

/* ---- swiglu, xent, sumsq ---------------------------------------------------- */

static void test_swiglu_backward(int n, int in_place)
{
    size_t nn = (size_t)n;
    float *h = vt_rand_vec(nn), *g = vt_rand_vec(nn), *d = vt_rand_vec(nn);
    for (size_t i = 0; i < nn; i++)
        h[i] *= 6.0f;
    float *wdh = malloc(nn * 4), *wdg = malloc(nn * 4);
    bg_ref_swiglu_backward(wdh, wdg, d, h, g, n);
    float *gdh[2] = {malloc(nn * 4), malloc(nn * 4)}, *gdg[2] = {malloc(nn * 4), malloc(nn * 4)};
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        run r;
        start(&r, cs[c]);
        bg_tview vh = up(&r, h, nn), vg = up(&r, g, nn), vd = up(&r, d, nn);
        bg_tview vdh = in_place ? vh : up(&r, NULL, nn), vdg = in_place ? vg : up(&r, NULL, nn);
        rec(&r);
        bg_op_swiglu_backward(r.c, vdh, vdg, vd, vh, vg, n);
        if (finish(&r, "swiglu_backward") == BG_OK) {
            get(&r, in_place ? 0 : 3, gdh[c], nn);
            get(&r, in_place ? 1 : 4, gdg[c], nn);
            have[c] = 1;
        }
        done(&r);
    }
    char what[80];
    snprintf(what, sizeof(what), "swiglu_backward dh n=%d%s", n, in_place ? " in place" : "");
    both(what, gdh[0], have[1] ? gdh[1] : NULL, wdh, nn, 1e-6, 1e-5);
    snprintf(what, sizeof(what), "swiglu_backward dg n=%d%s", n, in_place ? " in place" : "");
    both(what, gdg[0], have[1] ? gdg[1] : NULL, wdg, nn, 1e-6, 1e-5);
    free(h), free(g), free(d), free(wdh), free(wdg);
    free(gdh[0]), free(gdh[1]), free(gdg[0]), free(gdg[1]);
}

static void test_xent(int T, int V, int in_place)
{
    size_t tv = (size_t)T * V;
    float *l = vt_rand_vec(tv), *w = vt_rand_vec((size_t)T);
    for (size_t i = 0; i < tv; i++)
        l[i] *= 10.0f;
    w[0] = 0.0f; /* a masked position: zero gradient, lp still reported */
    int32_t *y = malloc((size_t)T * 4);
    for (int t = 0; t < T; t++)
        y[t] = vt_irand(0, V - 1);
    float *wlp = malloc((size_t)T * 4), *wd = malloc(tv * 4);
    bg_ref_xent(wlp, wd, l, y, w, T, V);
    float *glp[2] = {malloc((size_t)T * 4), malloc((size_t)T * 4)};
    float *gd[2] = {malloc(tv * 4), malloc(tv * 4)};
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        run r;
        start(&r, cs[c]);
        bg_tview vl = up(&r, l, tv), vy = up(&r, y, (size_t)T), vw = up(&r, w, (size_t)T);
        bg_tview vlp = up(&r, NULL, (size_t)T), vd = in_place ? vl : up(&r, NULL, tv);
        rec(&r);
        bg_op_xent(r.c, vlp, vd, vl, vy, vw, T, V);
        if (finish(&r, "xent") == BG_OK) {
            get(&r, 3, glp[c], (size_t)T);
            get(&r, in_place ? 0 : 4, gd[c], tv);
            have[c] = 1;
        }
        done(&r);
    }
    char what[80];
    snprintf(what, sizeof(what), "xent lp T=%d V=%d%s", T, V, in_place ? " in place" : "");
    both(what, glp[0], have[1] ? glp[1] : NULL, wlp, (size_t)T, 1e-4, 1e-5);
    snprintf(what, sizeof(what), "xent dlogits T=%d V=%d%s", T, V, in_place ? " in place" : "");
    both(what, gd[0], have[1] ? gd[1] : NULL, wd, tv, 1e-6, 1e-4);
    free(l), free(w), free(y), free(wlp), free(wd);
    free(glp[0]), free(glp[1]), free(gd[0]), free(gd[1]);
}

static void test_sumsq(int n)
{
    float *x = vt_rand_vec((size_t)n), want, got[2] = {0, 0};
    bg_ref_sumsq(&want, x, n);
    bg_compute *cs[2] = {VK, CPU};
    int have[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        run r;
        start(&r, cs[c]);
        bg_tview vo = up(&r, NULL, 1), vx = up(&r, x, (size_t)n);
        rec(&r);
        bg_op_sumsq(r.c, vo, vx, n);
        if (finish(&r, "sumsq") == BG_OK) {
            get(&r, 0, &got[c], 1);
            have[c] = 1;
        }
        done(&r);
    }
    char what[64];
    snprintf(what, sizeof(what), "sumsq n=%d", n);
    both(what, &got[0], have[1] ? &got[1] : NULL, &want, 1, 0.0, 1e-5);
    free(x);
}

/* ---- AdamW ------------------------------------------------------------------ */

/* |a - b| in units in the last place of max(|b|, floor): a parameter near
 * zero moves by lr-sized steps, so its error is measured against the step
 * (floor = lr), not against its own tiny ulp. */
static double max_ulps(const float *a, const float *b, size_t n, float floor)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float mag = fabsf(b[i]) > floor ? fabsf(b[i]) : floor;
        double ulp = (double)nextafterf(mag, INFINITY) - (double)mag;
        double u = fabs((double)a[i] - (double)b[i]) / ulp;
        if (isnan(a[i]) != isnan(b[i]))
            u = INFINITY;
        worst = u > worst ? u : worst;
    }
    return worst;
}

#define ADAMW_ULP_BOUND 16

/* Five steps of AdamW on n parameters (the gradient of step s is g * s/5,
 * the norm from two sumsq slots), clipping on or off; p, m, v against the
 * reference and the CPU backend, in ulp. */
static void test_adamw(int n, float max_norm)
{
    size_t nn = (size_t)n;
    float *p0 = vt_rand_vec(nn), *g = vt_rand_vec(nn);
    float *wp = copy_of(p0, nn), *wm = calloc(nn, 4), *wv = calloc(nn, 4);
    float *gp[2], *gm[2], *gv[2];
    int have[2] = {0, 0};
    bg_adamw_params hp = {.lr = 1e-2f,
                          .beta1 = 0.9f,
                          .beta2 = 0.95f,
                          .eps = 1e-8f,
                          .weight_decay = 0.1f,
                          .max_norm = max_norm};
    bg_compute *cs[2] = {VK, CPU};
    for (int c = 0; c < 2; c++) {
        gp[c] = malloc(nn * 4), gm[c] = malloc(nn * 4), gv[c] = malloc(nn * 4);
        run r;
        start(&r, cs[c]);
        bg_tview vp = up(&r, p0, nn), vg = up(&r, g, nn), vm = up(&r, NULL, nn);
        bg_tview vv = up(&r, NULL, nn), vs = up(&r, NULL, 2);
        rec(&r);
        bg_op_fill(r.c, vm, 0.0f, n);
        bg_op_fill(r.c, vv, 0.0f, n);
        if (finish(&r, "adamw setup") != BG_OK) {
            done(&r);
            continue;
        }
        int ok = 1;
        for (int s = 1; s <= 5 && ok; s++) {
            /* this step's gradient, g * s/5, written outside the recording */
            float *gs = malloc(nn * 4);
            for (size_t i = 0; i < nn; i++)
                gs[i] = g[i] * (float)s / 5.0f;
            bg_err err;
            CHECK(bg_cbuf_write(r.c, vg.buf, vg.off * 4, gs, nn * 4, &err) == BG_OK);
            CHECK(bg_compute_begin(r.c, &err) == BG_OK);
            /* the global norm from two slots: the first half and the rest */
            int h = n / 2 ? n / 2 : 1;
            bg_op_sumsq(r.c, vs, vg, h);
            if (n - h > 0)
                bg_op_sumsq(r.c, at(vs, 1), at(vg, (size_t)h), n - h);
            bg_compute_barrier(r.c);
            hp.step = s;
            bg_op_adamw(r.c, vp, vg, vm, vv, vs, n - h > 0 ? 2 : 1, n, &hp);
            ok = finish(&r, "adamw step") == BG_OK;
            if (c == 0) { /* the reference, once */
                float ss[2];
                bg_ref_sumsq(&ss[0], gs, h);
                if (n - h > 0)
                    bg_ref_sumsq(&ss[1], gs + h, n - h);
                bg_ref_adamw(wp, gs, wm, wv, ss, n - h > 0 ? 2 : 1, n, hp.lr, hp.beta1, hp.beta2,
                             hp.eps, hp.weight_decay, hp.max_norm, s);
            }
            free(gs);
        }
        if (ok) {
            get(&r, 0, gp[c], nn);
            get(&r, 2, gm[c], nn);
            get(&r, 3, gv[c], nn);
            have[c] = 1;
        }
        done(&r);
    }
    if (have[0]) {
        double up_ = max_ulps(gp[0], wp, nn, hp.lr), um = max_ulps(gm[0], wm, nn, 0.0f);
        double uv = max_ulps(gv[0], wv, nn, 0.0f);
        printf("  vk  adamw n=%d clip=%g: 5 steps, max ulp vs reference p %.1f m %.1f v %.1f "
               "(bound %d)\n",
               n, (double)max_norm, up_, um, uv, ADAMW_ULP_BOUND);
        CHECK(up_ <= ADAMW_ULP_BOUND && um <= ADAMW_ULP_BOUND && uv <= ADAMW_ULP_BOUND,
              "adamw: vulkan beyond %d ulp of the reference", ADAMW_ULP_BOUND);
    }
    if (have[0] && have[1]) {
        double up_ = max_ulps(gp[0], gp[1], nn, hp.lr), um = max_ulps(gm[0], gm[1], nn, 0.0f);
        double uv = max_ulps(gv[0], gv[1], nn, 0.0f);
        printf("  vk~cpu adamw n=%d clip=%g: max ulp p %.1f m %.1f v %.1f (bound %d)\n", n,
               (double)max_norm, up_, um, uv, ADAMW_ULP_BOUND);
        CHECK(up_ <= ADAMW_ULP_BOUND && um <= ADAMW_ULP_BOUND && uv <= ADAMW_ULP_BOUND,
              "adamw: vulkan beyond %d ulp of the cpu backend", ADAMW_ULP_BOUND);
    }
    for (int c = 0; c < 2; c++)
        free(gp[c]), free(gm[c]), free(gv[c]);
    free(p0), free(g), free(wp), free(wm), free(wv);
}

/* A bad id fails the recording before anything runs, naming op and id, and
 * leaves the output untouched; the next recording starts clean. */
static void test_bad_ids(void)
{
    float table[12], d[6], l[8] = {0}, w[2] = {1, 1};
    for (int i = 0; i < 12; i++)
        table[i] = (float)i;
    for (int i = 0; i < 6; i++)
        d[i] = 1.0f;
    int32_t tok[2] = {1, 4}, tgt[2] = {0, -1};
    run r;
    start(&r, VK);
    bg_tview vt = vt_upload(VK, table, 0, 12, 0); /* 4 rows of 3 */
    r.v[r.n++] = vt;
    bg_tview vd = up(&r, d, 6), vk = up(&r, tok, 2), vl = up(&r, l, 8);
    bg_tview vy = up(&r, tgt, 2), vw = up(&r, w, 2), vlp = up(&r, NULL, 2);
    static const char *ops[2] = {"embed_backward", "xent"};
    static const char *ids[2] = {"id 4 at row 1", "id -1 at row 1"};
    for (int k = 0; k < 2; k++) {
        rec(&r);
        if (k == 0)
            bg_op_embed_backward(VK, vt, vd, vk, 2, 3);
        else
            bg_op_xent(VK, vlp, vl, vl, vy, vw, 2, 4);
        bg_err err;
        bg_err_clear(&err);
        int rc = bg_compute_submit(VK, &err);
        printf("  bad id: %s: %s\n", bg_err_name(rc), err.msg);
        CHECK(rc == BG_EINVAL && strstr(err.msg, ops[k]) && strstr(err.msg, ids[k]),
              "%s with a bad id: %s", ops[k], err.msg);
    }
    float got[12];
    get(&r, 0, got, 12);
    CHECK(memcmp(got, table, sizeof got) == 0, "embed_backward ran despite the bad id");
    done(&r);
}

int main(void)
{
    VK = vt_create_or_skip("test_vk_train");
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 2};
    bg_err err;
    if (bg_compute_create(&co, &CPU, &err) != BG_OK) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    vt_seed(20261206);

    test_fill_axpy(1);
    test_fill_axpy(777);

    test_embed_backward(1, 1, 1);
    test_embed_backward(37, 50, 17);
    test_embed_backward(512, 33, 130); /* two dims per invocation */

    test_rmsnorm_backward(1, 1);
    test_rmsnorm_backward(5, 300);
    test_rmsnorm_backward(7, 129);

    static const int mm[][3] = {
        {1, 1, 1}, {33, 65, 17}, {7, 200, 64}, {65, 31, 129}, {130, 64, 72}};
    for (size_t i = 0; i < sizeof(mm) / sizeof(mm[0]); i++)
        test_matmul_backward(mm[i][0], mm[i][1], mm[i][2], (int)(i % 2));
    test_matmul_backward(vt_irand(1, 70), vt_irand(1, 90), vt_irand(1, 90), 1);
    /* long reductions: split-K slices (with a short last one) where the GPU
     * variant is forced (test_vk_train_gemm_split) */
    test_matmul_backward(600, 24, 20, 0);
    test_matmul_backward(40, 1030, 30, 1);

    test_rope_backward(1, 0, 8, 4, 8);
    test_rope_backward(3, 17, 6, 6, 48);
    test_rope_backward(5, 250, 8, 2, 10);

    test_attention(1, 1, 1, 1, 2);
    test_attention(2, 7, 4, 2, 8);
    test_attention(3, 5, 6, 3, 10);
    test_attention(1, 131, 2, 1, 16); /* more than one chunk of keys and queries */
    test_attention(1, 9, 2, 1, 260);  /* three dims per invocation */
    test_attention_train_vs_inference(19, 4, 2, 12);

    test_swiglu_backward(1, 0);
    test_swiglu_backward(173, 0);
    test_swiglu_backward(4097, 1);

    test_xent(1, 1, 0);
    test_xent(3, 512, 0);
    test_xent(7, 1001, 1);

    test_sumsq(1);
    test_sumsq(1000);
    test_sumsq(100003); /* more elements than stage-1 workgroups x WG */

    test_adamw(1, 0.0f);
    test_adamw(1000, 0.0f);
    test_adamw(1000, 1.0f); /* the norm is ~10: clipping scales every gradient */

    test_bad_ids();

    bg_compute_destroy(CPU);
    bg_compute_destroy(VK);
    bg_test_failures += vt_failures;
    CHECK_DONE("test_vk_train");
}
