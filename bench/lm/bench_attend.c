/*
 * bench_attend.c — the CPU attention kernel (lib/compute/compute_cpu_attend.c)
 * against the one-key-at-a-time kernel it replaced, in the same run. Not a
 * test (docs/PERFORMANCE.md, "lm_theory").
 *
 *   bench_attend [REPS]      (BG_CPU_KERNEL=avx2|avx512|scalar forces one)
 *
 * One head of a cache laid out as the models' (row stride 4 kv heads x hs),
 * 40 causal queries per call over n0..n0+39 keys; rows for stories260K's
 * head size 8 at the daemon's 80-130 keys, and bigger heads. The baseline is
 * the previous kernel's algorithm rebuilt from the vector helpers that
 * remain (per key: bg__cpu_dot, then bg__cpu_softmax_lse, then per key
 * bg__cpu_axpy). Time: thread CPU time per query, best of REPS (default
 * 30) batches of 200 calls, the two kernels alternated batch by batch, so a
 * loaded machine disturbs both alike. Prints a markdown table.
 *
 * The second table is the training backward (compute_cpu_attend_bwd.c): one
 * (sequence, KV head) of T causal queries per head of the group, against
 * the loop it replaced, one key at a time (bg__cpu_attend_bwd_keys: per key
 * bg__cpu_dot for the score and for dP, expf, bg__cpu_axpy into dv, dq and
 * dk), alternated the same
 * way (batches of calls adding up to about 4M key visits); time per call
 * and per (query, key) pair, and the largest |difference| of dq, dk, dv.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/compute_cpu.h"

enum { NQ = 40, CALLS = 200 };

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* The replaced kernel: a dot per key, a softmax of the row, an axpy per key. */
static void old_attend(float *out, const float *q, const float *kc, const float *vc, long stride,
                       int n, int hs, float scale, float *sc)
{
    for (int p = 0; p < n; p++)
        sc[p] = bg__cpu_dot(q, kc + p * stride, hs) * scale;
    (void)bg__cpu_softmax_lse(sc, n);
    memset(out, 0, sizeof(float) * (size_t)hs);
    for (int p = 0; p < n; p++)
        bg__cpu_axpy(out, sc[p], vc + p * stride, hs);
}

static void row(int hs, int n0, int reps)
{
    long stride = 4L * hs, npos = n0 + NQ;
    float *k = malloc(sizeof(float) * (size_t)(npos * stride));
    float *v = malloc(sizeof(float) * (size_t)(npos * stride));
    float *q = malloc(sizeof(float) * NQ * (size_t)hs),
          *o = malloc(sizeof(float) * NQ * (size_t)hs);
    float *o2 = malloc(sizeof(float) * NQ * (size_t)hs);
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_scratch((int)npos, hs));
    if (!k || !v || !q || !o || !o2 || !sc) {
        fprintf(stderr, "bench_attend: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < npos * stride; i++) {
        k[i] = (float)((i * 7919) % 1000) / 500.0f - 1;
        v[i] = (float)((i * 104729) % 1000) / 500.0f - 1;
    }
    for (int i = 0; i < NQ * hs; i++)
        q[i] = (float)((i * 31) % 100) / 50.0f - 1;
    float scale = 1.0f / sqrtf((float)hs);
    bg__attend_args a = {.out = o,
                         .q = q,
                         .kc = k,
                         .vc = v,
                         .qstride = hs,
                         .ostride = hs,
                         .kvstride = stride,
                         .n0 = n0,
                         .nq = NQ,
                         .hs = hs,
                         .scale = scale};
    double best_new = 1e30, best_old = 1e30, err = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_ns();
        for (int c = 0; c < CALLS; c++)
            bg__cpu_attend_causal(&a, sc);
        double t1 = cpu_ns();
        for (int c = 0; c < CALLS; c++)
            for (int j = 0; j < NQ; j++)
                old_attend(o2 + j * hs, q + j * hs, k, v, stride, n0 + j, hs, scale, sc);
        double t2 = cpu_ns();
        best_new = fmin(best_new, (t1 - t0) / CALLS / NQ);
        best_old = fmin(best_old, (t2 - t1) / CALLS / NQ);
    }
    for (int i = 0; i < NQ * hs; i++)
        err = fmax(err, fabs(o[i] - o2[i]));
    printf("| %d | %d-%d | %.0f ns | %.0f ns | %.2fx | %.1e |\n", hs, n0, n0 + NQ - 1, best_old,
           best_new, best_old / best_new, err);
    free(k), free(v), free(q), free(o), free(o2), free(sc);
}

/* ---- the backward --------------------------------------------------------- */

static float *filled(size_t n, long mul)
{
    float *v = malloc(sizeof(float) * n);
    if (!v) {
        fprintf(stderr, "bench_attend: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(((long)i * mul) % 1000) / 500.0f - 1;
    return v;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++)
        e = fmax(e, fabs(a[i] - b[i]));
    return e;
}

static void bwd_row(int hs, int T, int group, int reps)
{
    long qd = (long)group * hs, kvd = hs;
    size_t nq = (size_t)T * qd, nk = (size_t)T * kvd;
    float *q = filled(nq, 31), *k = filled(nk, 7919), *v = filled(nk, 104729);
    float *dout = filled(nq, 613), *out = filled(nq, 389), *lse = malloc(sizeof(float) * T * group);
    float *g[2][3]; /* new, old: dq, dk, dv */
    for (int r = 0; r < 2; r++) {
        g[r][0] = malloc(sizeof(float) * nq);
        g[r][1] = malloc(sizeof(float) * nk);
        g[r][2] = malloc(sizeof(float) * nk);
    }
    float *sc = malloc(sizeof(float) * (size_t)bg__cpu_attend_bwd_scratch(T, hs));
    if (!lse || !sc) {
        fprintf(stderr, "bench_attend: out of memory\n");
        exit(1);
    }
    float scale = 1.0f / sqrtf((float)hs);
    /* the forward's out and lse, so P is a distribution as in training */
    float *fs = malloc(sizeof(float) * (size_t)bg__cpu_attend_scratch(T, hs));
    for (int j = 0; j < group && fs; j++) {
        bg__attend_args f = {.out = out + (long)j * hs,
                             .lse = lse + j,
                             .q = q + (long)j * hs,
                             .kc = k,
                             .vc = v,
                             .qstride = qd,
                             .ostride = qd,
                             .lstride = group,
                             .kvstride = kvd,
                             .n0 = 1,
                             .nq = T,
                             .hs = hs,
                             .scale = scale};
        bg__cpu_attend_causal(&f, fs);
    }
    bg__attend_bwd_args a[2];
    for (int r = 0; r < 2; r++)
        a[r] = (bg__attend_bwd_args){.dq = g[r][0],
                                     .dk = g[r][1],
                                     .dv = g[r][2],
                                     .q = q,
                                     .k = k,
                                     .v = v,
                                     .out = out,
                                     .dout = dout,
                                     .lse = lse,
                                     .qstride = qd,
                                     .kvstride = kvd,
                                     .lstride = group,
                                     .T = T,
                                     .group = group,
                                     .hs = hs,
                                     .scale = scale};
    double pairs = (double)group * T * (T + 1) / 2;
    int calls = (int)fmax(1, 4e6 / pairs);
    double best_new = 1e30, best_old = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_ns();
        for (int c = 0; c < calls; c++)
            bg__cpu_attend_bwd(&a[0], sc);
        double t1 = cpu_ns();
        for (int c = 0; c < calls; c++)
            bg__cpu_attend_bwd_keys(&a[1], sc);
        double t2 = cpu_ns();
        best_new = fmin(best_new, (t1 - t0) / calls);
        best_old = fmin(best_old, (t2 - t1) / calls);
    }
    double e = fmax(maxdiff(g[0][0], g[1][0], nq),
                    fmax(maxdiff(g[0][1], g[1][1], nk), maxdiff(g[0][2], g[1][2], nk)));
    printf("| %d | %d | %d | %.1f us (%.2f ns) | %.1f us (%.2f ns) | %.2fx | %.1e |\n", hs, T,
           group, best_old / 1e3, best_old / pairs, best_new / 1e3, best_new / pairs,
           best_old / best_new, e);
    for (int r = 0; r < 2; r++)
        free(g[r][0]), free(g[r][1]), free(g[r][2]);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(sc), free(fs);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) {
        fprintf(stderr, "usage: bench_attend [REPS >= 1]\n");
        return 2;
    }
    bg_err err;
    if (bg__cpu_kernel_check(&err) != BG_OK) {
        fprintf(stderr, "bench_attend: %s\n", err.msg);
        return 1;
    }
    printf("kernel: %s; per query, thread CPU time, best of %d x %d calls of %d queries\n\n",
           bg__cpu_kernel_name(bg__cpu_kernel()), reps, CALLS, NQ);
    printf("| head size | keys | one key at a time | this kernel | speed-up | max |diff| |\n");
    printf("|---|---|---|---|---|---|\n");
    static const int rows[][2] = {{8, 1},  {8, 80},   {8, 1000}, {16, 80},
                                  {48, 1}, {48, 200}, {64, 200}, {128, 200}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        row(rows[i][0], rows[i][1], reps);
    printf("\ntraining backward, one (sequence, KV head): per call and per (query, key) pair, "
           "thread CPU time, best of %d\n\n",
           reps);
    printf("| head size | T | heads per KV head | one key at a time | this kernel | speed-up | "
           "max |diff| |\n");
    printf("|---|---|---|---|---|---|---|\n");
    /* stories260K (hs 8, 8/4 heads), the 15M shape (hs 48, 6/6), bigger heads */
    static const int brows[][3] = {{8, 32, 2},   {8, 256, 2},  {48, 64, 1},
                                   {48, 256, 1}, {64, 256, 1}, {64, 256, 4}};
    for (size_t i = 0; i < sizeof brows / sizeof brows[0]; i++)
        bwd_row(brows[i][0], brows[i][1], brows[i][2], reps);
    return 0;
}
