/*
 * test_compute_grad.c — the training ops (compute.h "training ops") checked
 * three ways on small shapes:
 *   1. the scalar reference backward (compute_ref.c) against central finite
 *      differences of a double-precision forward written here, for the loss
 *      L = sum(r * forward(inputs)) with a fixed random r;
 *   2. the CPU backend against the reference (and, for the ops that reduce,
 *      bit-identical with 1 and 3 threads);
 *   3. the error paths: a bad id, a view past its buffer, bad shapes and
 *      hyper-parameters.
 * BG_TEST_BACKEND=vulkan runs 1-3 with the Vulkan backend in place of the
 * CPU (the backend-vs-reference tolerance is the same).
 *
 * Tolerances (printed):
 *   GTOL = 1e-5, relative to the largest finite-difference gradient of the
 *   tensor: the FD error in double is ~1e-10 (h = 1e-5), the reference rounds
 *   its double sums to float (~1e-7). A missing term is O(1) relative: the
 *   test also runs known-wrong gradients and requires them to FAIL by > 100x:
 *   attention without the softmax backward's row-sum term D (out zeroed),
 *   RoPE backward rotating the wrong way (the forward rotation), RMSNorm
 *   without its normalisation term (x's own gradient through r), the
 *   SwiGLU backward without silu's second term (s instead of
 *   s*(1+h(1-s))). Each of these errs by > 1e-2 relative here.
 *   CPU vs reference: |cpu - ref| <= 1e-4 * (1 + |ref|) per element (float
 *   sums in another order).
 * Seeded, deterministic; runs in well under a second.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "compute/compute.h"
#include "compute/compute_ref.h"

#define GTOL 1e-5
#define FD_H 1e-5
#define CTOL 1e-4

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static double drand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

static float *rvec(size_t n, double amp)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(amp * drand());
    return v;
}

static float *zvec(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

/* ---- finite differences ------------------------------------------------ */

/* A double forward: returns L for the inputs in d (which it may not keep). */
typedef double (*loss_fn)(void *ctx, double *const *in);

typedef struct fd_case {
    loss_fn f;
    void *ctx;
    int nin;
    double *in[5];
    size_t len[5];
} fd_case;

/* max_i |an_i - fd_i| / max_i |fd_i| for input `which` */
static double fd_err(fd_case *fc, int which, const float *an)
{
    double worst = 0.0, scale = 1e-30;
    double *x = fc->in[which];
    for (size_t i = 0; i < fc->len[which]; i++) {
        double keep = x[i];
        x[i] = keep + FD_H;
        double lp = fc->f(fc->ctx, fc->in);
        x[i] = keep - FD_H;
        double lm = fc->f(fc->ctx, fc->in);
        x[i] = keep;
        double g = (lp - lm) / (2 * FD_H);
        scale = fabs(g) > scale ? fabs(g) : scale;
        double d = fabs(g - an[i]);
        worst = d > worst ? d : worst;
    }
    return worst / scale;
}

static double *todbl(const float *v, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static void grad_ok(const char *what, fd_case *fc, int which, const float *an)
{
    double e = fd_err(fc, which, an);
    printf("  %-34s FD rel err %.2e (tol %.0e)\n", what, e, GTOL);
    CHECK(e <= GTOL, "%s: analytic gradient differs from central differences by %.3g", what, e);
}

/* A known-wrong gradient must fail the same check by a wide margin. */
static void grad_wrong(const char *what, fd_case *fc, int which, const float *an)
{
    double e = fd_err(fc, which, an);
    printf("  %-34s FD rel err %.2e (must exceed %.0e)\n", what, e, 100 * GTOL);
    CHECK(e > 100 * GTOL, "%s: the check failed to catch a wrong gradient (err %.3g)", what, e);
}

/* ---- device helpers --------------------------------------------------- */

static bg_compute *g_c;

static bg_cbuf *up(const void *src, size_t n)
{
    bg_cbuf *b = NULL;
    bg_err err;
    CHECK(bg_cbuf_create(g_c, 4 * (n ? n : 1), &b, &err) == BG_OK, "%s", err.msg);
    if (src)
        CHECK(bg_cbuf_write(g_c, b, 0, src, 4 * n, &err) == BG_OK, "%s", err.msg);
    return b;
}

static void down(bg_cbuf *b, void *dst, size_t n)
{
    bg_err err;
    CHECK(bg_cbuf_read(g_c, b, 0, dst, 4 * n, &err) == BG_OK, "%s", err.msg);
}

static bg_tview TV(bg_cbuf *b)
{
    bg_tview v = {b, 0};
    return v;
}

static void begin(void)
{
    bg_err err;
    CHECK(bg_compute_begin(g_c, &err) == BG_OK, "%s", err.msg);
}

static void submit(void)
{
    bg_err err;
    CHECK(bg_compute_submit(g_c, &err) == BG_OK, "%s", err.msg);
}

static void close_to(const char *what, const float *got, const float *want, size_t n)
{
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1.0 + fabs(want[i]));
        if (e > worst || isnan(got[i])) {
            worst = isnan(got[i]) ? INFINITY : e;
            at = i;
        }
    }
    if (worst > CTOL)
        bg_test_tally(__FILE__, __LINE__, what, "element %zu: cpu %.8g, reference %.8g", at,
                      got[at], want[at]);
}

/* ---- double forwards -------------------------------------------------- */

typedef struct shp {
    int T, n, M, N, K, B, nh, nkv, hs, V, pos0;
    const double *r, *r2; /* projection of the outputs */
    const int32_t *ids;
    const double *wts;
    float eps;
} shp;

static double f_rmsnorm(void *vs, double *const *in)
{
    const shp *s = vs;
    const double *x = in[0], *w = in[1];
    double L = 0.0;
    for (int t = 0; t < s->T; t++) {
        double ss = 0.0;
        for (int i = 0; i < s->n; i++)
            ss += x[t * s->n + i] * x[t * s->n + i];
        double r = 1.0 / sqrt(ss / s->n + s->eps);
        for (int i = 0; i < s->n; i++)
            L += s->r[t * s->n + i] * x[t * s->n + i] * r * w[i];
    }
    return L;
}

static double f_matmul(void *vs, double *const *in)
{
    const shp *s = vs;
    double L = 0.0;
    for (int m = 0; m < s->M; m++)
        for (int n = 0; n < s->N; n++) {
            double a = 0.0;
            for (int k = 0; k < s->K; k++)
                a += in[0][m * s->K + k] * in[1][n * s->K + k];
            L += s->r[m * s->N + n] * a;
        }
    return L;
}

static double rope_proj(const double *v, const double *r, int T, int pos0, int heads, int hs)
{
    double L = 0.0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hs; i += 2) {
                /* the angle exactly as the float forward computes it */
                float freq = 1.0f / powf(10000.0f, (float)i / (float)hs);
                float ang = (float)(pos0 + t) * freq;
                double c = cosf(ang), sn = sinf(ang);
                long o = ((long)t * heads + h) * hs + i;
                L += r[o] * (v[o] * c - v[o + 1] * sn) + r[o + 1] * (v[o] * sn + v[o + 1] * c);
            }
    return L;
}

static double f_rope(void *vs, double *const *in)
{
    const shp *s = vs;
    return rope_proj(in[0], s->r, s->T, s->pos0, s->nh, s->hs) +
           rope_proj(in[1], s->r2, s->T, s->pos0, s->nkv, s->hs);
}

static double f_attention(void *vs, double *const *in)
{
    const shp *s = vs;
    const double *q = in[0], *k = in[1], *v = in[2];
    int qd = s->nh * s->hs, kvd = s->nkv * s->hs, grp = s->nh / s->nkv;
    double scale = 1.0 / sqrt((double)s->hs), L = 0.0;
    double sc[64];
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            for (int h = 0; h < s->nh; h++) {
                const double *qh = q + ((long)b * s->T + t) * qd + h * s->hs;
                double mx = -INFINITY, sum = 0.0;
                for (int p = 0; p <= t; p++) {
                    const double *kp = k + ((long)b * s->T + p) * kvd + (h / grp) * s->hs;
                    double d = 0.0;
                    for (int i = 0; i < s->hs; i++)
                        d += qh[i] * kp[i];
                    sc[p] = d * scale;
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = 0; p <= t; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < s->hs; i++) {
                    double o = 0.0;
                    for (int p = 0; p <= t; p++)
                        o += sc[p] / sum * v[((long)b * s->T + p) * kvd + (h / grp) * s->hs + i];
                    L += s->r[((long)b * s->T + t) * qd + h * s->hs + i] * o;
                }
            }
    return L;
}

static double f_swiglu(void *vs, double *const *in)
{
    const shp *s = vs;
    double L = 0.0;
    for (int i = 0; i < s->n; i++)
        L += s->r[i] * in[0][i] / (1.0 + exp(-in[0][i])) * in[1][i];
    return L;
}

static double f_xent(void *vs, double *const *in)
{
    const shp *s = vs;
    double L = 0.0;
    for (int t = 0; t < s->T; t++) {
        const double *l = in[0] + (long)t * s->V;
        double mx = l[0], sum = 0.0;
        for (int i = 1; i < s->V; i++)
            mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < s->V; i++)
            sum += exp(l[i] - mx);
        L -= s->wts[t] * (l[s->ids[t]] - mx - log(sum));
    }
    return L;
}

static double f_embed(void *vs, double *const *in)
{
    const shp *s = vs;
    double L = 0.0;
    for (int t = 0; t < s->T; t++)
        for (int i = 0; i < s->n; i++)
            L += s->r[t * s->n + i] * in[0][(long)s->ids[t] * s->n + i];
    return L;
}

/* ---- the ops ---------------------------------------------------------- */

static void test_rmsnorm(void)
{
    shp s = {.T = 5, .n = 19, .eps = 1e-5f};
    size_t tn = (size_t)s.T * s.n;
    float *x = rvec(tn, 1.5), *w = rvec(s.n, 1.0), *dout = rvec(tn, 1.0);
    float *dx = rvec(tn, 0.5), *dw = rvec(s.n, 0.5); /* accumulate onto nonzero */
    float *dx0 = malloc(4 * tn), *dw0 = malloc(4 * (size_t)s.n);
    memcpy(dx0, dx, 4 * tn);
    memcpy(dw0, dw, 4 * (size_t)s.n);
    bg_ref_rmsnorm_backward(dx, dw, dout, x, w, s.T, s.n, s.eps);
    float *gx = zvec(tn), *gw = zvec(s.n);
    for (size_t i = 0; i < tn; i++)
        gx[i] = dx[i] - dx0[i];
    for (int i = 0; i < s.n; i++)
        gw[i] = dw[i] - dw0[i];
    double *r = todbl(dout, tn);
    s.r = r;
    fd_case fc = {f_rmsnorm, &s, 2, {todbl(x, tn), todbl(w, s.n)}, {tn, (size_t)s.n}};
    grad_ok("rmsnorm_backward dx (+=)", &fc, 0, gx);
    grad_ok("rmsnorm_backward dw (+=)", &fc, 1, gw);
    /* wrong: no gradient through r (dx = r * w * dout only) */
    float *bad = zvec(tn);
    for (int t = 0; t < s.T; t++) {
        double ss = 0;
        for (int i = 0; i < s.n; i++)
            ss += (double)x[t * s.n + i] * x[t * s.n + i];
        for (int i = 0; i < s.n; i++)
            bad[t * s.n + i] = (float)(w[i] * dout[t * s.n + i] / sqrt(ss / s.n + s.eps));
    }
    grad_wrong("rmsnorm dx without the r term", &fc, 0, bad);
    /* cpu */
    bg_cbuf *bdx = up(dx0, tn), *bdw = up(dw0, s.n), *bdo = up(dout, tn), *bx = up(x, tn),
            *bw = up(w, s.n);
    begin();
    bg_op_rmsnorm_backward(g_c, TV(bdx), TV(bdw), TV(bdo), TV(bx), TV(bw), s.T, s.n, s.eps);
    submit();
    float *cdx = zvec(tn), *cdw = zvec(s.n);
    down(bdx, cdx, tn);
    down(bdw, cdw, s.n);
    close_to("cpu rmsnorm_backward dx", cdx, dx, tn);
    close_to("cpu rmsnorm_backward dw", cdw, dw, s.n);
    free(x), free(w), free(dout), free(dx), free(dw), free(dx0), free(dw0), free(gx), free(gw);
    free(r), free(fc.in[0]), free(fc.in[1]), free(bad), free(cdx), free(cdw);
}

static void test_matmul(int M, int N, int K, int fd)
{
    shp s = {.M = M, .N = N, .K = K};
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    float *x = rvec(mk, 1.0), *w = rvec(nk, 1.0), *dy = rvec(mn, 1.0);
    float *dx = zvec(mk), *dw = rvec(nk, 0.3), *dw0 = malloc(4 * nk), *gw = zvec(nk);
    memcpy(dw0, dw, 4 * nk);
    bg_ref_matmul_backward_x(dx, dy, w, M, N, K, 0);
    bg_ref_matmul_backward_w(dw, dy, x, M, N, K);
    for (size_t i = 0; i < nk; i++)
        gw[i] = dw[i] - dw0[i];
    double *r = todbl(dy, mn);
    s.r = r;
    fd_case fc = {f_matmul, &s, 2, {todbl(x, mk), todbl(w, nk)}, {mk, nk}};
    if (fd) {
        grad_ok("matmul_backward_x", &fc, 0, dx);
        grad_ok("matmul_backward_w (+=)", &fc, 1, gw);
    }
    /* cpu: dx overwrite, then dx accumulate (a second time: 2 * dx), dw += */
    bg_cbuf *bx = up(x, mk), *bw = up(w, nk), *bdy = up(dy, mn), *bdx = up(NULL, mk),
            *bdx2 = up(dx, mk), *bdw = up(dw0, nk);
    begin();
    bg_op_matmul_backward_x(g_c, TV(bdx), TV(bdy), TV(bw), M, N, K, 0);
    bg_op_matmul_backward_x(g_c, TV(bdx2), TV(bdy), TV(bw), M, N, K, 1);
    bg_op_matmul_backward_w(g_c, TV(bdw), TV(bdy), TV(bx), M, N, K);
    submit();
    float *c1 = zvec(mk), *c2 = zvec(mk), *cw = zvec(nk), *dx2 = zvec(mk);
    down(bdx, c1, mk);
    down(bdx2, c2, mk);
    down(bdw, cw, nk);
    for (size_t i = 0; i < mk; i++)
        dx2[i] = 2 * dx[i];
    char what[96];
    snprintf(what, sizeof what, "cpu matmul_backward_x %dx%dx%d", M, N, K);
    close_to(what, c1, dx, mk);
    snprintf(what, sizeof what, "cpu matmul_backward_x += %dx%dx%d", M, N, K);
    close_to(what, c2, dx2, mk);
    snprintf(what, sizeof what, "cpu matmul_backward_w %dx%dx%d", M, N, K);
    close_to(what, cw, dw, nk);
    free(x), free(w), free(dy), free(dx), free(dw), free(dw0), free(gw), free(r);
    free(fc.in[0]), free(fc.in[1]), free(c1), free(c2), free(cw), free(dx2);
    bg_cbuf_destroy(g_c, bx), bg_cbuf_destroy(g_c, bw), bg_cbuf_destroy(g_c, bdy);
    bg_cbuf_destroy(g_c, bdx), bg_cbuf_destroy(g_c, bdx2), bg_cbuf_destroy(g_c, bdw);
}

static void test_rope(void)
{
    shp s = {.T = 4, .pos0 = 3, .nh = 4, .nkv = 2, .hs = 6};
    size_t nq = (size_t)s.T * s.nh * s.hs, nk = (size_t)s.T * s.nkv * s.hs;
    float *rq = rvec(nq, 1.0), *rk = rvec(nk, 1.0);
    float *gq = malloc(4 * nq), *gk = malloc(4 * nk);
    memcpy(gq, rq, 4 * nq);
    memcpy(gk, rk, 4 * nk);
    bg_ref_rope_backward(gq, gk, s.T, s.pos0, s.nh, s.nkv, s.hs);
    double *r = todbl(rq, nq), *r2 = todbl(rk, nk);
    s.r = r;
    s.r2 = r2;
    float *q = rvec(nq, 1.0), *k = rvec(nk, 1.0);
    fd_case fc = {f_rope, &s, 2, {todbl(q, nq), todbl(k, nk)}, {nq, nk}};
    grad_ok("rope_backward dq", &fc, 0, gq);
    grad_ok("rope_backward dk", &fc, 1, gk);
    float *bq = malloc(4 * nq), *bk = malloc(4 * nk);
    memcpy(bq, rq, 4 * nq);
    memcpy(bk, rk, 4 * nk);
    bg_ref_rope(bq, bk, s.T, s.pos0, s.nh, s.nkv, s.hs); /* wrong: the forward rotation */
    grad_wrong("rope backward rotating forward", &fc, 0, bq);
    bg_cbuf *cq = up(rq, nq), *ck = up(rk, nk);
    begin();
    bg_op_rope_backward(g_c, TV(cq), TV(ck), s.T, s.pos0, s.nh, s.nkv, s.hs);
    submit();
    down(cq, bq, nq);
    down(ck, bk, nk);
    close_to("cpu rope_backward dq", bq, gq, nq);
    close_to("cpu rope_backward dk", bk, gk, nk);
    free(rq), free(rk), free(gq), free(gk), free(r), free(r2), free(q), free(k);
    free(fc.in[0]), free(fc.in[1]), free(bq), free(bk);
}

/* fd: also check the reference's and this backend's gradients against
 * central differences (small shapes; the double forward's cost is T^2) */
static void test_attention(int B, int T, int nh, int nkv, int hs, int fd)
{
    shp s = {.B = B, .T = T, .nh = nh, .nkv = nkv, .hs = hs};
    size_t nq = (size_t)B * T * nh * hs, nk = (size_t)B * T * nkv * hs, nl = (size_t)B * T * nh;
    float *q = rvec(nq, 1.5), *k = rvec(nk, 1.5), *v = rvec(nk, 1.0), *dout = rvec(nq, 1.0);
    float *out = zvec(nq), *lse = zvec(nl), *dq = zvec(nq), *dk = zvec(nk), *dv = zvec(nk);
    printf("  attention B=%d T=%d heads %d/%d hs=%d\n", B, T, nh, nkv, hs);
    bg_ref_attention_train(out, lse, q, k, v, B, T, nh, nkv, hs);
    bg_ref_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, nh, nkv, hs);
    double *r = todbl(dout, nq);
    s.r = r;
    fd_case fc = {f_attention, &s, 3, {todbl(q, nq), todbl(k, nk), todbl(v, nk)}, {nq, nk, nk}};
    if (fd) {
        /* the forward's out, too: the double forward at r = e_i */
        grad_ok("attention_backward dq", &fc, 0, dq);
        grad_ok("attention_backward dk (grouped)", &fc, 1, dk);
        grad_ok("attention_backward dv (grouped)", &fc, 2, dv);
        float *zo = zvec(nq), *bq = zvec(nq), *bk = zvec(nk), *bv = zvec(nk);
        bg_ref_attention_backward(bq, bk, bv, dout, q, k, v, zo, lse, B, T, nh, nkv, hs);
        grad_wrong("attention dq without row-sum D", &fc, 0, bq);
        free(zo), free(bq), free(bk), free(bv);
    }
    /* the inference op on the same rows (as a cache) gives the same out */
    float *o2 = zvec(nq);
    for (int b = 0; b < B; b++)
        bg_ref_attention(o2 + (size_t)b * T * nh * hs, q + (size_t)b * T * nh * hs,
                         k + (size_t)b * T * nkv * hs, v + (size_t)b * T * nkv * hs, T, 0, nh, nkv,
                         hs, T);
    close_to("ref attention_train out vs attention", out, o2, nq);
    bg_cbuf *bq = up(q, nq), *bk = up(k, nk), *bv = up(v, nk), *bo = up(NULL, nq),
            *bl = up(NULL, nl), *bdo = up(dout, nq), *bdq = up(NULL, nq), *bdk = up(NULL, nk),
            *bdv = up(NULL, nk);
    begin();
    bg_op_attention_train(g_c, TV(bo), TV(bl), TV(bq), TV(bk), TV(bv), B, T, nh, nkv, hs);
    bg_compute_barrier(g_c);
    bg_op_attention_backward(g_c, TV(bdq), TV(bdk), TV(bdv), TV(bdo), TV(bq), TV(bk), TV(bv),
                             TV(bo), TV(bl), B, T, nh, nkv, hs);
    submit();
    float *c = zvec(nq), *cq = zvec(nq), *ck = zvec(nk), *cv = zvec(nk);
    down(bo, c, nq);
    close_to("cpu attention_train out", c, out, nq);
    down(bl, c, nl);
    close_to("cpu attention_train lse", c, lse, nl);
    down(bdq, cq, nq);
    close_to("cpu attention_backward dq", cq, dq, nq);
    down(bdk, ck, nk);
    close_to("cpu attention_backward dk", ck, dk, nk);
    down(bdv, cv, nk);
    close_to("cpu attention_backward dv", cv, dv, nk);
    if (fd && bg_compute_kind(g_c) == BG_BACKEND_CPU) {
        /* the backend's own kernel (SIMD blocks, polynomial exp) against FD */
        grad_ok("cpu attention_backward dq", &fc, 0, cq);
        grad_ok("cpu attention_backward dk", &fc, 1, ck);
        grad_ok("cpu attention_backward dv", &fc, 2, cv);
    }
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(dq), free(dk), free(dv);
    free(r), free(fc.in[0]), free(fc.in[1]), free(fc.in[2]), free(o2), free(c);
    free(cq), free(ck), free(cv);
}

static void test_swiglu(void)
{
    shp s = {.n = 37};
    float *h = rvec(s.n, 3.0), *g = rvec(s.n, 1.0), *dout = rvec(s.n, 1.0);
    float *dh = zvec(s.n), *dg = zvec(s.n);
    bg_ref_swiglu_backward(dh, dg, dout, h, g, s.n);
    double *r = todbl(dout, s.n);
    s.r = r;
    fd_case fc = {f_swiglu, &s, 2, {todbl(h, s.n), todbl(g, s.n)}, {(size_t)s.n, (size_t)s.n}};
    grad_ok("swiglu_backward dh", &fc, 0, dh);
    grad_ok("swiglu_backward dg", &fc, 1, dg);
    float *bad = zvec(s.n);
    for (int i = 0; i < s.n; i++)
        bad[i] = dout[i] * g[i] / (1.0f + expf(-h[i])); /* wrong: s only, no h*s*(1-s) */
    grad_wrong("swiglu dh without silu's 2nd term", &fc, 0, bad);
    /* cpu, in place: dh aliases h, dg aliases g */
    bg_cbuf *bh = up(h, s.n), *bg = up(g, s.n), *bd = up(dout, s.n);
    begin();
    bg_op_swiglu_backward(g_c, TV(bh), TV(bg), TV(bd), TV(bh), TV(bg), s.n);
    submit();
    float *c = zvec(s.n);
    down(bh, c, s.n);
    close_to("cpu swiglu_backward dh (in place)", c, dh, s.n);
    down(bg, c, s.n);
    close_to("cpu swiglu_backward dg (in place)", c, dg, s.n);
    free(h), free(g), free(dout), free(dh), free(dg), free(r), free(fc.in[0]), free(fc.in[1]);
    free(bad), free(c);
}

static void test_xent(void)
{
    shp s = {.T = 4, .V = 23};
    size_t tv = (size_t)s.T * s.V;
    int32_t ids[4] = {0, 22, 7, 7};
    float wts[4] = {0.25f, -0.5f, 0.0f, 1.0f}; /* mean, ascend, masked, plain */
    double dw[4] = {0.25, -0.5, 0.0, 1.0};
    s.ids = ids;
    s.wts = dw;
    float *l = rvec(tv, 4.0), *lp = zvec(s.T), *dl = zvec(tv);
    bg_ref_xent(lp, dl, l, ids, wts, s.T, s.V);
    fd_case fc = {f_xent, &s, 1, {todbl(l, tv)}, {tv}};
    grad_ok("xent dlogits (weighted, masked)", &fc, 0, dl);
    float *lp2 = zvec(s.T);
    bg_ref_logsoftmax_gather(lp2, l, ids, s.T, s.V);
    close_to("ref xent lp vs logsoftmax_gather", lp, lp2, s.T);
    /* cpu, in place: dlogits aliases logits */
    bg_cbuf *bl = up(l, tv), *bi = up(ids, s.T), *bw = up(wts, s.T), *blp = up(NULL, s.T);
    begin();
    bg_op_xent(g_c, TV(blp), TV(bl), TV(bl), TV(bi), TV(bw), s.T, s.V);
    submit();
    float *c = zvec(tv);
    down(bl, c, tv);
    close_to("cpu xent dlogits (in place)", c, dl, tv);
    down(blp, c, s.T);
    close_to("cpu xent lp", c, lp, s.T);
    free(l), free(lp), free(dl), free(fc.in[0]), free(lp2), free(c);

    /* rows as wide as the SIMD kernels' (8 / 16 lanes, partial sums flushed
     * every 256 elements): 1,007 tokens (a tail for both widths, and a
     * last flush block shorter than the others), a masked entry (-1e4) and
     * a large one; out of place, then in place. Each row of dlogits sums to
     * w - w = 0: a missed tail or a dropped partial sum breaks it. */
    int T2 = 3, V2 = 1007;
    size_t tv2 = (size_t)T2 * V2;
    int32_t ids2[3] = {5, 1006, 640};
    float wts2[3] = {1.0f / 3.0f, 1.0f, 0.5f};
    float *l2 = rvec(tv2, 6.0), *rlp = zvec(T2), *rdl = zvec(tv2);
    l2[17] = -1e4f;
    l2[V2 + 900] = 50.0f;
    bg_ref_xent(rlp, rdl, l2, ids2, wts2, T2, V2);
    for (int inplace = 0; inplace < 2; inplace++) {
        bg_cbuf *xl = up(l2, tv2), *xi = up(ids2, T2), *xw = up(wts2, T2), *xlp = up(NULL, T2);
        bg_cbuf *xd = inplace ? xl : up(NULL, tv2);
        begin();
        bg_op_xent(g_c, TV(xlp), TV(xd), TV(xl), TV(xi), TV(xw), T2, V2);
        submit();
        float *got = zvec(tv2), lpg[3];
        down(xd, got, tv2);
        down(xlp, lpg, T2);
        close_to(inplace ? "cpu xent V 1007 dlogits (in place)" : "cpu xent V 1007 dlogits", got,
                 rdl, tv2);
        for (int t = 0; t < T2; t++) {
            CHECK(fabs((double)lpg[t] - rlp[t]) <= 1e-5 * (1.0 + fabs(rlp[t])),
                  "xent V 1007 row %d: lp %.9g, reference %.9g", t, lpg[t], rlp[t]);
            double rs = 0.0;
            for (int i = 0; i < V2; i++)
                rs += got[(size_t)t * V2 + i];
            CHECK(fabs(rs) <= 1e-6, "xent V 1007 row %d: dlogits sum to %.3g, not 0", t, rs);
        }
        CHECK(got[17] == 0.0f, "a -1e4 logit's probability is %g, not 0", got[17]);
        bg_cbuf_destroy(g_c, xi), bg_cbuf_destroy(g_c, xw), bg_cbuf_destroy(g_c, xlp);
        if (!inplace)
            bg_cbuf_destroy(g_c, xd);
        bg_cbuf_destroy(g_c, xl);
        free(got);
    }
    free(l2), free(rlp), free(rdl);
}

static void test_embed(void)
{
    shp s = {.T = 6, .n = 9};
    int rows = 5;
    int32_t ids[6] = {3, 0, 3, 4, 3, 1}; /* repeats add up */
    s.ids = ids;
    size_t tn = (size_t)s.T * s.n, rn = (size_t)rows * s.n;
    float *dout = rvec(tn, 1.0), *dt = zvec(rn);
    bg_ref_embed_backward(dt, dout, ids, s.T, s.n);
    double *r = todbl(dout, tn);
    s.r = r;
    float *tab = rvec(rn, 1.0);
    fd_case fc = {f_embed, &s, 1, {todbl(tab, rn)}, {rn}};
    grad_ok("embed_backward (+=, repeats)", &fc, 0, dt);
    bg_cbuf *bt = up(NULL, rn), *bd = up(dout, tn), *bi = up(ids, s.T);
    begin();
    bg_op_fill(g_c, TV(bt), 0.5f, (int)rn);
    bg_compute_barrier(g_c);
    bg_op_embed_backward(g_c, TV(bt), TV(bd), TV(bi), s.T, s.n);
    submit();
    float *c = zvec(rn);
    down(bt, c, rn);
    for (size_t i = 0; i < rn; i++)
        dt[i] += 0.5f;
    close_to("cpu fill + embed_backward", c, dt, rn);
    free(dout), free(dt), free(r), free(tab), free(fc.in[0]), free(c);
}

static void test_optimizer(void)
{
    int n = 40000; /* more than one sumsq chunk */
    float *p = rvec(n, 1.0), *g = rvec(n, 2.0), *m = rvec(n, 0.1), *v = rvec(n, 0.1);
    for (int i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float sq[2];
    bg_ref_sumsq(&sq[0], g, n);
    bg_ref_sumsq(&sq[1], g, 1000);
    bg_adamw_params hp = {.lr = 1e-2f,
                          .beta1 = 0.9f,
                          .beta2 = 0.95f,
                          .eps = 1e-8f,
                          .weight_decay = 0.1f,
                          .max_norm = 1.0f,
                          .step = 3};
    bg_cbuf *bp = up(p, n), *bg = up(g, n), *bm = up(m, n), *bv = up(v, n), *bs = up(NULL, 2);
    float *rp = malloc(4 * (size_t)n), *rm = malloc(4 * (size_t)n), *rv = malloc(4 * (size_t)n);
    memcpy(rp, p, 4 * (size_t)n);
    memcpy(rm, m, 4 * (size_t)n);
    memcpy(rv, v, 4 * (size_t)n);
    bg_ref_adamw(rp, g, rm, rv, sq, 2, n, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                 hp.max_norm, hp.step);
    begin();
    bg_op_sumsq(g_c, TV(bs), TV(bg), n);
    bg_tview s1 = {bs, 1};
    bg_op_sumsq(g_c, s1, TV(bg), 1000);
    bg_compute_barrier(g_c);
    bg_op_adamw(g_c, TV(bp), TV(bg), TV(bm), TV(bv), TV(bs), 2, n, &hp);
    submit();
    float csq[2];
    down(bs, csq, 2);
    close_to("cpu sumsq", csq, sq, 2);
    float *c = malloc(4 * (size_t)n);
    down(bp, c, n);
    close_to("cpu adamw p", c, rp, n);
    down(bm, c, n);
    close_to("cpu adamw m", c, rm, n);
    down(bv, c, n);
    close_to("cpu adamw v", c, rv, n);
    /* clipping is a scale on g: clipped step == unclipped step on scale*g */
    double norm = sqrt((double)sq[0] + sq[1]);
    CHECK(norm > 1.0, "the test gradient must be large enough to clip (norm %.3g)", norm);
    float *gs = malloc(4 * (size_t)n), *p2 = malloc(4 * (size_t)n), *m2 = malloc(4 * (size_t)n),
          *v2 = malloc(4 * (size_t)n);
    for (int i = 0; i < n; i++)
        gs[i] = (float)(g[i] * (1.0 / (norm + 1e-6)));
    memcpy(p2, p, 4 * (size_t)n);
    memcpy(m2, m, 4 * (size_t)n);
    memcpy(v2, v, 4 * (size_t)n);
    bg_ref_adamw(p2, gs, m2, v2, NULL, 0, n, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                 0.0f, hp.step);
    close_to("ref adamw clip == scaled gradient", rp, p2, n);
    /* one step from zero moments moves each weight by about lr (Adam's sign step) */
    float p0 = 0.5f, g0 = 3.0f, m0 = 0.0f, v0 = 0.0f;
    bg_ref_adamw(&p0, &g0, &m0, &v0, NULL, 0, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f, 1);
    CHECK_NEAR(p0, 0.49, 1e-6);
    /* decoupled weight decay, by hand: with no gradient the step is
     * lr * wd * p (2 - 0.1 * 0.05 * 2 = 1.99); an L2 term folded into the
     * gradient would go through Adam's normalisation instead (2 - 0.1 = 1.9) */
    float pd = 2.0f, gd = 0.0f, md = 0.0f, vd = 0.0f;
    bg_ref_adamw(&pd, &gd, &md, &vd, NULL, 0, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.05f, 0.0f, 1);
    CHECK_NEAR(pd, 1.99, 1e-6);
    /* two steps with decay and bias correction (values from the formula in
     * double): 0.5 -> 0.48995 (g = 3) -> 0.481190366 (g = 1) */
    float p1 = 0.5f, m1 = 0.0f, v1 = 0.0f, g1 = 3.0f;
    bg_ref_adamw(&p1, &g1, &m1, &v1, NULL, 0, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.0f, 1);
    CHECK_NEAR(p1, 0.48995, 1e-6);
    g1 = 1.0f;
    bg_ref_adamw(&p1, &g1, &m1, &v1, NULL, 0, 1, 0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.0f, 2);
    CHECK_NEAR(p1, 0.481190366, 1e-6);
    free(p), free(g), free(m), free(v), free(rp), free(rm), free(rv), free(c), free(gs);
    free(p2), free(m2), free(v2);
}

/* The reducing ops give the same bits with 1 and 3 threads. */
static void test_thread_invariance(void)
{
    int B = 2, T = 33, nh = 4, nkv = 2, hs = 16, V = 70, M = 66, N = 40, K = 300;
    size_t nq = (size_t)B * T * nh * hs, nk = (size_t)B * T * nkv * hs;
    float *q = rvec(nq, 1), *k = rvec(nk, 1), *v = rvec(nk, 1), *d = rvec(nq, 1);
    float *x = rvec((size_t)M * K, 1), *dy = rvec((size_t)M * N, 1), *w = rvec(K, 1);
    int32_t ids[66];
    for (int i = 0; i < M; i++)
        ids[i] = (int32_t)((unsigned)(i * 7) % V);
    float *res[2];
    size_t total =
        2 * nq + 2 * nk + (size_t)B * T * nh + (size_t)N * K + (size_t)M * K + K + (size_t)V * K;
    for (int run = 0; run < 2; run++) {
        bg_compute_opts o = {.kind = BG_BACKEND_CPU, .threads = run ? 3 : 1, .device_index = -1};
        bg_compute *keep = g_c;
        bg_err err;
        CHECK(bg_compute_create(&o, &g_c, &err) == BG_OK, "%s", err.msg);
        bg_cbuf *bq = up(q, nq), *bk = up(k, nk), *bv = up(v, nk), *bd = up(d, nq);
        bg_cbuf *bo = up(NULL, nq), *bl = up(NULL, (size_t)B * T * nh), *bdq = up(NULL, nq),
                *bdk = up(NULL, nk), *bdv = up(NULL, nk), *bx = up(x, (size_t)M * K),
                *bdy = up(dy, (size_t)M * N), *bdw = up(NULL, (size_t)N * K),
                *bdx = up(NULL, (size_t)M * K), *bw = up(w, K), *bg = up(NULL, K), *bi = up(ids, M),
                *bt = up(NULL, (size_t)V * K);
        begin();
        bg_op_attention_train(g_c, TV(bo), TV(bl), TV(bq), TV(bk), TV(bv), B, T, nh, nkv, hs);
        bg_compute_barrier(g_c);
        bg_op_attention_backward(g_c, TV(bdq), TV(bdk), TV(bdv), TV(bd), TV(bq), TV(bk), TV(bv),
                                 TV(bo), TV(bl), B, T, nh, nkv, hs);
        bg_op_matmul_backward_w(g_c, TV(bdw), TV(bdy), TV(bx), M, N, K);
        bg_op_rmsnorm_backward(g_c, TV(bdx), TV(bg), TV(bx), TV(bx), TV(bw), M, K, 1e-5f);
        bg_op_embed_backward(g_c, TV(bt), TV(bx), TV(bi), M, K);
        submit();
        float *r = res[run] = malloc(4 * total);
        bg_cbuf *outs[] = {bo, bl, bdq, bdk, bdv, bdw, bdx, bg, bt};
        size_t lens[] = {nq,        (size_t)B * T * nh, nq, nk, nk, (size_t)N * K, (size_t)M * K,
                         (size_t)K, (size_t)V * K};
        for (int i = 0; i < 9; i++) {
            down(outs[i], r, lens[i]);
            r += lens[i];
        }
        bg_compute_destroy(g_c);
        g_c = keep;
    }
    CHECK(memcmp(res[0], res[1], 4 * total) == 0, "training ops differ between 1 and 3 threads");
    printf("  thread invariance: %zu floats bit-identical with 1 and 3 threads\n", total);
    free(res[0]), free(res[1]), free(q), free(k), free(v), free(d), free(x), free(dy), free(w);
}

static void test_errors(void)
{
    bg_err err;
    bg_cbuf *a = up(NULL, 16), *ids = up(NULL, 4);
    int32_t bad[4] = {0, 1, 99, 2};
    CHECK(bg_cbuf_write(g_c, ids, 0, bad, sizeof bad, &err) == BG_OK);
    begin();
    bg_op_xent(g_c, TV(a), TV(a), TV(a), TV(ids), TV(a), 4, 4);
    CHECK(bg_compute_submit(g_c, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "xent") && strstr(err.msg, "99"), "message: %s", err.msg);
    begin();
    bg_op_matmul_backward_w(g_c, TV(a), TV(a), TV(a), 4, 4, 5); /* x needs 20 > 16 */
    CHECK(bg_compute_submit(g_c, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "matmul_backward_w") && strstr(err.msg, "exceeds its buffer"),
          "message: %s", err.msg);
    begin();
    bg_adamw_params hp = {.lr = 1e-3f, .beta1 = 1.0f, .beta2 = 0.9f, .eps = 1e-8f, .step = 1};
    bg_tview none = {NULL, 0};
    bg_op_adamw(g_c, TV(a), TV(a), TV(a), TV(a), none, 0, 16, &hp);
    CHECK(bg_compute_submit(g_c, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "adamw") && strstr(err.msg, "betas"), "message: %s", err.msg);
    begin();
    bg_op_attention_backward(g_c, TV(a), TV(a), TV(a), TV(a), TV(a), TV(a), TV(a), TV(a), TV(a), 1,
                             2, 3, 2, 2);
    CHECK(bg_compute_submit(g_c, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "n_kv_heads dividing"), "message: %s", err.msg);
    printf("  error paths: bad id, view past its buffer, bad hyper-parameters, bad heads\n");
}

int main(void)
{
    /* BG_TEST_BACKEND=vulkan runs the backend-vs-reference checks on Vulkan
     * (lavapipe admitted); the thread-invariance part is the CPU's. */
    const char *be = getenv("BG_TEST_BACKEND");
    int kind = be ? bg_backend_kind_parse(be) : BG_BACKEND_CPU;
    CHECK(kind >= 0, "BG_TEST_BACKEND=%s: expected cpu|vulkan", be);
    bg_compute_opts o = {
        .kind = (bg_backend_kind)kind, .threads = 2, .allow_cpu_device = 1, .device_index = -1};
    bg_err err;
    if (bg_compute_create(&o, &g_c, &err) != BG_OK) {
        printf("SKIP: backend %s unavailable: %s\n", be ? be : "cpu", err.msg);
        return BG_TEST_SKIP;
    }
    printf("backend %s; GTOL %.0e (FD, h = %.0e), CPU vs reference %.0e\n",
           bg_compute_describe(g_c), GTOL, FD_H, CTOL);
    test_rmsnorm();
    test_matmul(3, 5, 7, 1);
    test_matmul(1, 9, 4, 1);
    test_matmul(37, 45, 300, 0); /* crosses the K block (256), edge tiles */
    test_matmul(130, 20, 17, 0);
    /* every edge path of the packed GEMM (AVX-512: 12x32 tile, A read in
     * place for row-major left operands, K blocks <= 1024, N blocks of 512,
     * A packed in chunks of rows): dx runs as (M, K, N) and dw as (N, K, M) */
    static const int edges[][3] = {{1, 1, 1},
                                   {2, 3, 1},
                                   {3, 1, 2},
                                   {12, 32, 1},
                                   {13, 33, 1},
                                   {11, 31, 17},
                                   {24, 64, 96},
                                   {25, 65, 97},
                                   {12, 33, 385},
                                   {97, 12, 31},
                                   {1030, 45, 13},
                                   {40, 20, 600},
                                   {45, 1030, 29},
                                   {7, 530, 540},
                                   {300, 2, 77},
                                   {1950, 1024, 13} /* dx: two chunks of A rows */,
                                   {1024, 1950, 5} /* dw: two chunks of A rows */,
                                   /* AVX2 (6x16 tile, K blocks <= 512, N blocks of 1024):
                                    * N blocks of dx and dw past 1024, full and partial
                                    * 6-row panels of dw's transposed dy */
                                   {20, 30, 1100},
                                   {515, 37, 6}};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        test_matmul(edges[i][0], edges[i][1], edges[i][2], 0);
    test_rope();
    test_attention(2, 5, 4, 2, 6, 1);
    test_attention(3, 17, 6, 3, 8, 0);
    /* the SIMD backward's edges (blocks of 16 keys AVX-512, 8 AVX2): T = 1,
     * partial last blocks (17, 18, 19, 33, 50 keys), head sizes 8/48/64
     * (48: not a multiple of the 16-lane sums), grouped KV heads */
    test_attention(1, 1, 2, 1, 8, 0); /* dq is 0 (one key): no FD */
    test_attention(1, 19, 4, 2, 8, 1);
    test_attention(1, 18, 2, 1, 48, 1);
    test_attention(1, 17, 2, 2, 64, 1);
    test_attention(2, 33, 8, 2, 8, 0);
    test_attention(2, 40, 6, 3, 48, 0);
    test_attention(1, 50, 4, 1, 64, 0);
    test_swiglu();
    test_xent();
    test_embed();
    test_optimizer();
    test_thread_invariance();
    test_errors();
    bg_compute_destroy(g_c);
    CHECK_DONE("test_compute_grad");
}
