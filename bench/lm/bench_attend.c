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
    return 0;
}
