/*
 * test_compute_attend.c — the CPU attention kernel (compute_cpu_attend.c)
 * against the attention formula evaluated in double, and its vector exp
 * against exp in double.
 *
 * Run once per kernel (BG_CPU_KERNEL=scalar|avx2|avx512, one ctest each; a
 * kernel the machine lacks skips with exit 77 and says why; the plain run
 * takes the machine's best).
 *
 * Checks, with the bounds they use:
 *   - expv over [-87.3, 0] (every input softmax feeds it: scores minus their
 *     max) in 2^22 evenly spread points plus the ends: max relative error
 *     <= 3 ulp (3 * 2^-24 = 1.8e-7); expv(-inf) = expv(-100) = 0, expv(0) = 1.
 *   - bg__cpu_attend_causal for hs in {8, 16, 32, 64, 128}, n0 in {1, 2,
 *     15, 16, 17, 100, 1000} and 3 queries per call (so n0, n0+1, n0+2 keys,
 *     across every block edge), K/V rows at a stride wider than hs (the
 *     GQA layout: the head's rows inside [npos, nkv*hs]): max |out - ref|
 *     <= 1e-5 * max |V| for the SIMD kernels (the output scale: out is a
 *     convex combination of V rows; they sum V in W lanes), 5e-5 for the
 *     scalar two-pass kernel (one sequential float sum over up to 1002
 *     keys: measured 2e-5 at hs 128), |lse - ref| <= 1e-5 * max(1, |ref|). Scores are drawn large
 *     (|q.k| * scale up to ~20) so the softmax is peaked and the running max
 *     changes many times across blocks.
 *   - query j of a multi-query call has the same bits as bg__cpu_attend of
 *     that query alone (what lets the inference op and the training forward
 *     batch queries differently and agree bit for bit).
 *   - bg__cpu_attend_prefix (a shared prefix of np keys, then a causal tail;
 *     compute_cpu_attend_prefix.c) for hs in {8, 12, 64}, np in {0, 1, 17,
 *     83}, n0 in {1, 5, 40}, nq in {1, 7, 16, 37} (partial vectors of
 *     queries, a prefix of one key or none): max |out - ref| <= twice that
 *     bound against the formula in double over the concatenated keys (a
 *     query's keys are summed in its own lane, in blocks of 16, where the
 *     per-query kernel sums 16 lanes and a tree: measured 1.0e-5 at hs 64),
 *     and
 *     every query has the same bits as that query alone in a call (a score
 *     must not depend on its batch), and a call with the KV head's two
 *     query heads in one vector (g = 2) gives each head the bits of that
 *     head alone.
 *   - the op bg_op_attention_prefix on the CPU backend (1 and 3 threads; 6
 *     query heads on 3 KV heads, hs 8 and 12, T 37, P 83, pos0 5) against
 *     bg_ref_attention_prefix (compute_ref.c): max |out - ref| <= 1e-5 *
 *     max |V| (5e-5 scalar), and the same bits at 1 and 3 threads; a tail
 *     past seq_len is refused with BG_EINVAL naming the op.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute_cpu.h"
#include "compute/compute_ref.h"
#include "bg_test.h"

static double out_bound = 1e-5; /* 5e-5 for the scalar kernel */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float urand(void) /* [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void check_exp(void)
{
    enum { N = 1 << 22 };
    float *x = malloc(sizeof(float) * (N + 8)), *y = malloc(sizeof(float) * (N + 8));
    CHECK(x && y, "out of memory");
    const float lo = -87.3f;
    double bound = 3.0 / 16777216.0;
    for (int i = 0; i < N; i++)
        x[i] = lo - lo * (float)i / (float)(N - 1);
    x[N - 1] = 0.0f;
    bg__cpu_expv(y, x, N);
    double worst = 0, at = 0;
    for (int i = 0; i < N; i++) {
        double want = exp((double)x[i]), rel = fabs((double)y[i] - want) / want;
        if (rel > worst)
            worst = rel, at = x[i];
    }
    printf("expv: max relative error %.3g (%.2f ulp) at x = %.6g over [%g, 0], bound 3 ulp\n",
           worst, worst * 16777216.0, at, (double)lo);
    CHECK(worst <= bound, "expv relative error %.3g exceeds 3 ulp", worst);
    float sp[16] = {-INFINITY, -100.0f,   0.0f,      -INFINITY, -INFINITY, -INFINITY,
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                    -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    float sy[16];
    bg__cpu_expv(sy, sp, 16);
    CHECK(sy[0] == 0.0f, "expv(-inf) = %g, want 0", (double)sy[0]);
    CHECK(sy[1] < 1e-37f, "expv(-100) = %g, want 0 (or a denormal)", (double)sy[1]);
    CHECK(sy[2] == 1.0f, "expv(0) = %.9g, want 1", (double)sy[2]);
    free(x), free(y);
}

/* out[hs], *lse of one query over n rows, in double. */
static void ref_query(double *out, double *lse, const float *q, const float *kc, const float *vc,
                      long stride, int n, int hs, double scale)
{
    double *s = malloc(sizeof(double) * (size_t)n), mx = -INFINITY, sum = 0;
    CHECK(s, "out of memory");
    for (int p = 0; p < n; p++) {
        double d = 0;
        for (int i = 0; i < hs; i++)
            d += (double)q[i] * kc[(long)p * stride + i];
        s[p] = d * scale;
        mx = s[p] > mx ? s[p] : mx;
    }
    for (int p = 0; p < n; p++)
        sum += (s[p] = exp(s[p] - mx));
    for (int i = 0; i < hs; i++)
        out[i] = 0;
    for (int p = 0; p < n; p++)
        for (int i = 0; i < hs; i++)
            out[i] += s[p] / sum * vc[(long)p * stride + i];
    *lse = mx + log(sum);
    free(s);
}

static void check_shape(int hs, int n0, double *worst_out, double *worst_lse)
{
    enum { NQ = 3 };
    int npos = n0 + NQ - 1;
    long stride = 4L * hs; /* kv head 1 of 4 in a cache row */
    float *kc = malloc(sizeof(float) * (size_t)(npos * stride));
    float *vc = malloc(sizeof(float) * (size_t)(npos * stride));
    float *q = malloc(sizeof(float) * (size_t)(NQ * 2 * hs));
    float *out = malloc(sizeof(float) * (size_t)(NQ * 2 * hs)), lse[NQ * 3];
    float *one = malloc(sizeof(float) * (size_t)hs);
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_scratch(npos, hs));
    double *ro = malloc(sizeof(double) * (size_t)hs);
    CHECK(kc && vc && q && out && one && sc && ro, "out of memory");
    float qmag = 3.0f * sqrtf(sqrtf((float)hs)); /* |scores| up to ~20 */
    float vmax = 0;
    for (long i = 0; i < npos * stride; i++) {
        kc[i] = urand() * qmag;
        vc[i] = urand() * 2.5f;
        vmax = fabsf(vc[i]) > vmax ? fabsf(vc[i]) : vmax;
    }
    for (int i = 0; i < NQ * 2 * hs; i++)
        q[i] = urand() * qmag;
    float scale = 1.0f / sqrtf((float)hs);
    const float *kh = kc + hs, *vh = vc + hs; /* kv head 1 */
    bg__attend_args a = {.out = out,
                         .lse = lse,
                         .q = q,
                         .kc = kh,
                         .vc = vh,
                         .qstride = 2L * hs,
                         .ostride = 2L * hs,
                         .lstride = 3,
                         .kvstride = stride,
                         .n0 = n0,
                         .nq = NQ,
                         .hs = hs,
                         .scale = scale};
    bg__cpu_attend_causal(&a, sc);
    for (int j = 0; j < NQ; j++) {
        const float *qj = q + (long)j * 2 * hs, *oj = out + (long)j * 2 * hs;
        double rl;
        ref_query(ro, &rl, qj, kh, vh, stride, n0 + j, hs, scale);
        double eo = 0;
        for (int i = 0; i < hs; i++)
            eo = fmax(eo, fabs(oj[i] - ro[i]));
        eo /= vmax;
        double el = fabs(lse[j * 3] - rl) / fmax(1.0, fabs(rl));
        *worst_out = fmax(*worst_out, eo);
        *worst_lse = fmax(*worst_lse, el);
        CHECK(eo <= out_bound, "hs %d, %d keys: max |out - ref| / max|V| = %.3g > %g", hs, n0 + j,
              eo, out_bound);
        CHECK(el <= 1e-5, "hs %d, %d keys: lse %.9g vs ref %.9g", hs, n0 + j, (double)lse[j * 3],
              rl);
        float l1;
        bg__cpu_attend(one, qj, kh, vh, stride, n0 + j, hs, scale, sc, &l1);
        CHECK(memcmp(one, oj, sizeof(float) * (size_t)hs) == 0 && l1 == lse[j * 3],
              "hs %d, %d keys: query %d of a 3-query call differs from the query alone", hs, n0 + j,
              j);
    }
    free(kc), free(vc), free(q), free(out), free(one), free(sc), free(ro);
}

static float *frand(long n, float mag, float *amax)
{
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    CHECK(x, "out of memory");
    for (long i = 0; i < n; i++) {
        x[i] = urand() * mag;
        if (amax && fabsf(x[i]) > *amax)
            *amax = fabsf(x[i]);
    }
    return x;
}

static void check_prefix(int hs, int np, int n0, int nq, double *worst)
{
    int nt = n0 + nq - 1;
    long stride = 3L * hs, qstride = 2L * hs; /* kv head 1 of 3; query head 1 of 2 */
    float qmag = 3.0f * sqrtf(sqrtf((float)hs)), vmax = 0;
    float *kp = frand(np * stride, qmag, NULL), *vp = frand(np * stride, 2.5f, &vmax);
    float *kt = frand(nt * stride, qmag, NULL), *vt = frand(nt * stride, 2.5f, &vmax);
    float *q = frand(nq * qstride, qmag, NULL), *out = frand(nq * qstride, 0, NULL);
    float *one = malloc(sizeof(float) * (size_t)hs);
    float *kc = malloc(sizeof(float) * (size_t)((np + nt) * stride));
    float *vc = malloc(sizeof(float) * (size_t)((np + nt) * stride));
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_prefix_scratch(np, nt, hs));
    double *ro = malloc(sizeof(double) * (size_t)hs), rl;
    CHECK(one && kc && vc && sc && ro, "out of memory");
    memcpy(kc, kp, sizeof(float) * (size_t)(np * stride));
    memcpy(vc, vp, sizeof(float) * (size_t)(np * stride));
    memcpy(kc + np * stride, kt, sizeof(float) * (size_t)(nt * stride));
    memcpy(vc + np * stride, vt, sizeof(float) * (size_t)(nt * stride));
    float scale = 1.0f / sqrtf((float)hs);
    bg__attend_prefix_args a = {.out = out + hs,
                                .q = q + hs,
                                .kp = kp + hs,
                                .vp = vp + hs,
                                .kt = kt + hs,
                                .vt = vt + hs,
                                .qstride = qstride,
                                .ostride = qstride,
                                .kvstride = stride,
                                .np = np,
                                .n0 = n0,
                                .nq = nq,
                                .hs = hs,
                                .scale = scale};
    bg__cpu_attend_prefix(&a, sc);
    for (int j = 0; j < nq; j++) {
        const float *qj = q + hs + j * qstride, *oj = out + hs + j * qstride;
        ref_query(ro, &rl, qj, kc + hs, vc + hs, stride, np + n0 + j, hs, scale);
        double eo = 0;
        for (int i = 0; i < hs; i++)
            eo = fmax(eo, fabs(oj[i] - ro[i]));
        eo /= vmax;
        *worst = fmax(*worst, eo);
        CHECK(eo <= 2 * out_bound,
              "prefix: hs %d, %d prefix + %d tail keys: max |out - ref| / max|V| "
              "= %.3g > %g",
              hs, np, n0 + j, eo, 2 * out_bound);
        bg__attend_prefix_args b = a;
        b.q = qj;
        b.out = one;
        b.n0 = n0 + j;
        b.nq = 1;
        bg__cpu_attend_prefix(&b, sc);
        CHECK(memcmp(one, oj, sizeof(float) * (size_t)hs) == 0,
              "prefix: hs %d, %d prefix + %d tail keys: query %d of a %d-query call differs from "
              "the query alone",
              hs, np, n0 + j, j, nq);
    }
    /* both query heads of the KV head in one vector (g = 2, adjacent
     * lanes): each head's bits as that head alone */
    float *o2 = frand(nq * qstride, 0, NULL), *o0 = frand(nq * qstride, 0, NULL);
    bg__attend_prefix_args s2 = a, h0 = a;
    s2.q = h0.q = q;
    s2.out = o2;
    h0.out = o0;
    s2.g = 2;
    s2.hstride = hs;
    bg__cpu_attend_prefix(&s2, sc);
    bg__cpu_attend_prefix(&h0, sc);
    for (int j = 0; j < nq; j++)
        CHECK(memcmp(o2 + j * qstride, o0 + j * qstride, sizeof(float) * (size_t)hs) == 0 &&
                  memcmp(o2 + j * qstride + hs, out + hs + j * qstride,
                         sizeof(float) * (size_t)hs) == 0,
              "prefix: hs %d, %d prefix + %d tail keys: query %d with 2 heads in one vector "
              "differs from each head alone",
              hs, np, n0 + j, j);
    free(o2), free(o0);
    free(kp), free(vp), free(kt), free(vt), free(q), free(out), free(one), free(kc), free(vc);
    free(sc), free(ro);
}

/* The op through the backend at `threads`, into out[T * nh * hs]. */
static void run_prefix_op(int threads, float *out, const float *q, const float *kp, const float *vp,
                          const float *kt, const float *vt, int P, int T, int pos0, int nh, int nkv,
                          int hs, int seq)
{
    bg_err err;
    bg_compute *c;
    bg_compute_opts o = {.kind = BG_BACKEND_CPU, .threads = threads};
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%s", err.msg);
    size_t qn = (size_t)T * nh * hs, kv = (size_t)nkv * hs;
    bg_cbuf *b[6];
    size_t n[6] = {qn, qn, P * kv + 1, P * kv + 1, seq * kv, seq * kv};
    const float *src[6] = {NULL, q, kp, vp, kt, vt};
    for (int i = 0; i < 6; i++) {
        CHECK(bg_cbuf_create(c, n[i] * 4, &b[i], &err) == BG_OK, "%s", err.msg);
        if (src[i] && n[i] > 1)
            CHECK(bg_cbuf_write(c, b[i], 0, src[i], (i == 2 || i == 3 ? P * kv : n[i]) * 4, &err) ==
                      BG_OK,
                  "%s", err.msg);
    }
    bg_tview v[6];
    for (int i = 0; i < 6; i++)
        v[i] = (bg_tview){b[i], 0};
    CHECK(bg_compute_has_attention_prefix(c), "the CPU backend has attention_prefix");
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_attention_prefix(c, v[0], v[1], v[2], v[3], P, v[4], v[5], T, pos0, nh, nkv, hs, seq);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(c, b[0], 0, out, qn * 4, &err) == BG_OK, "%s", err.msg);
    /* a shape it must refuse: the tail past seq_len */
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_attention_prefix(c, v[0], v[1], v[2], v[3], P, v[4], v[5], T, seq - T + 1, nh, nkv, hs,
                           seq);
    CHECK(bg_compute_submit(c, &err) == BG_EINVAL && strstr(err.msg, "attention_prefix"),
          "pos0 + T > seq_len: want BG_EINVAL naming the op, got \"%s\"", err.msg);
    bg_compute_destroy(c);
}

static void check_prefix_op(int hs, double *worst)
{
    enum { NH = 6, NKV = 3, T = 37, P = 83, POS0 = 5, SEQ = POS0 + T + 3 };
    long kv = (long)NKV * hs, qn = (long)T * NH * hs;
    float qmag = 3.0f * sqrtf(sqrtf((float)hs)), vmax = 0;
    float *q = frand(qn, qmag, NULL), *kp = frand(P * kv, qmag, NULL);
    float *vp = frand(P * kv, 2.5f, &vmax), *kt = frand(SEQ * kv, qmag, NULL);
    float *vt = frand(SEQ * kv, 2.5f, &vmax);
    float *ref = frand(qn, 0, NULL), *o1 = frand(qn, 0, NULL), *o3 = frand(qn, 0, NULL);
    bg_ref_attention_prefix(ref, q, kp, vp, P, kt, vt, T, POS0, NH, NKV, hs);
    run_prefix_op(1, o1, q, kp, vp, kt, vt, P, T, POS0, NH, NKV, hs, SEQ);
    run_prefix_op(3, o3, q, kp, vp, kt, vt, P, T, POS0, NH, NKV, hs, SEQ);
    double e = 0;
    for (long i = 0; i < qn; i++)
        e = fmax(e, fabs(o1[i] - ref[i]));
    e /= vmax;
    *worst = fmax(*worst, e);
    CHECK(e <= out_bound, "prefix op, hs %d: max |out - ref| / max|V| = %.3g > %g", hs, e,
          out_bound);
    CHECK(memcmp(o1, o3, sizeof(float) * (size_t)qn) == 0,
          "prefix op, hs %d: 1 and 3 threads differ", hs);
    free(q), free(kp), free(vp), free(kt), free(vt), free(ref), free(o1), free(o3);
}

int main(void)
{
    bg_err err;
    if (bg__cpu_kernel_check(&err) != BG_OK) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    printf("kernel: %s\n", bg__cpu_kernel_name(bg__cpu_kernel()));
    if (bg__cpu_kernel() == BG__KERN_SCALAR)
        out_bound = 5e-5;
    check_exp();
    static const int hss[] = {8, 16, 32, 64, 128};
    static const int ns[] = {1, 2, 15, 16, 17, 100, 1000};
    double wo = 0, wl = 0;
    for (size_t h = 0; h < sizeof hss / sizeof hss[0]; h++)
        for (size_t n = 0; n < sizeof ns / sizeof ns[0]; n++)
            check_shape(hss[h], ns[n], &wo, &wl);
    printf("attend: %zu shapes x 3 queries, max |out - ref| / max|V| = %.3g (bound %g), max lse "
           "rel error %.3g (bound 1e-5)\n",
           sizeof hss / sizeof hss[0] * (sizeof ns / sizeof ns[0]), wo, out_bound, wl);
    static const int phs[] = {8, 12, 64}, pnp[] = {0, 1, 17, 83}, pn0[] = {1, 5, 40},
                     pnq[] = {1, 7, 16, 37};
    double wp = 0;
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++)
                    check_prefix(phs[h], pnp[i], pn0[j], pnq[k], &wp);
    printf("attend_prefix: 144 shapes, max |out - ref| / max|V| = %.3g (bound %g), each query "
           "the same bits alone\n",
           wp, 2 * out_bound);
    double wop = 0;
    check_prefix_op(8, &wop);
    check_prefix_op(12, &wop);
    printf("attention_prefix op vs bg_ref_attention_prefix: max |out - ref| / max|V| = %.3g "
           "(bound %g), 1 and 3 threads the same bits\n",
           wop, out_bound);
    CHECK_DONE("test_compute_attend");
}
