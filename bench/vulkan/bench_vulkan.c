/*
 * bench_vulkan.c — the Vulkan backend on one device, side by side with the
 * CPU backend in the same run: dispatch overhead, matmul GFLOP/s, matvec
 * GB/s (the decode kernel: each weight read once). Not a test; results go to
 * docs/PERFORMANCE.md (## Vulkan) with the command that produced them.
 *
 *   bench_vulkan [--big] [--peak-gbs G] [--threads N] [--reps R] [--no-cpu]
 *                [--matmul-only] [--train | --train-only] [--peak-tflops T]
 *
 * Device: the best one (a GPU when present); lavapipe is allowed so the
 * program also runs on a GPU-less host (BG_VK_DEVICE=<i> picks another).
 * --big adds GPU-sized shapes; --peak-gbs prints matvec as % of the card's
 * memory bandwidth; --no-cpu and --matmul-only make tuning sweeps
 * (BG_VK_MM_TILE, BG_VK_MV_WG) quick. --train adds the training ops
 * (bench_vulkan_train.c: each backward op, the loss, AdamW, and a training
 * step's GEMMs, at the 15M model's shape with batch 32 under --big, with %
 * of the card's FP32 peak given --peak-tflops); --train-only runs just
 * those. Timing: wall clock around begin..submit (fence wait
 * included) of R repetitions separated by barriers, divided by R; the best
 * of at least 3 runs, repeated for at least 0.4 s: a GPU that idled while
 * the CPU row ran (or while a 1 GB operand was filled) lowers its clocks and
 * takes a few hundred milliseconds of work to raise them again (the H200
 * read 4.7 instead of 25.7 TFLOP/s at 4096^3 without this). The CPU backend
 * runs the same calls (it computes while recording).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_vulkan.h"
#include "common/bg_time.h"

static int g_reps = 0; /* 0: automatic */

void bench_die(const char *what, const bg_err *err)
{
    fprintf(stderr, "bench_vulkan: %s: %s\n", what, err->msg);
    exit(1);
}

bg_cbuf *bench_buf(bg_compute *c, size_t elems)
{
    bg_cbuf *b = NULL;
    bg_err err;
    if (bg_cbuf_create(c, elems * 4, &b, &err) != BG_OK)
        bench_die("buffer", &err);
    float *tmp = malloc(elems * 4);
    for (size_t i = 0; i < elems; i++)
        tmp[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    if (bg_cbuf_write(c, b, 0, tmp, elems * 4, &err) != BG_OK)
        bench_die("write", &err);
    free(tmp);
    return b;
}

typedef enum { K_EMPTY, K_TINY, K_TINY_NOBARRIER, K_MATMUL } kind;

typedef struct shape {
    int M, N, K;
} shape;

/* Seconds per repetition of the workload on c (best of 3). */
static double run(bg_compute *c, kind k, shape s, int reps)
{
    bg_cbuf *x = NULL, *w = NULL, *o = NULL;
    if (k == K_MATMUL) {
        x = bench_buf(c, (size_t)s.M * s.K);
        w = bench_buf(c, (size_t)s.N * s.K);
        o = bench_buf(c, (size_t)s.M * s.N);
    } else {
        x = bench_buf(c, 64);
    }
    double best = 1e30;
    bg_err err;
    uint64_t start = bg_now_ns();
    /* trial 0 warms up (pipelines); then at least 3 timed trials and 0.4 s */
    for (int trial = 0; trial < 4 || (trial < 400 && bg_now_ns() - start < 400000000ull); trial++) {
        uint64_t t0 = bg_now_ns();
        if (bg_compute_begin(c, &err) != BG_OK)
            bench_die("begin", &err);
        for (int r = 0; r < reps; r++) {
            bg_tview a = {x, 0}, b = {x, 32};
            if (k == K_MATMUL)
                bg_op_matmul(c, (bg_tview){o, 0}, (bg_tview){x, 0}, (bg_tview){w, 0}, s.M, s.N,
                             s.K);
            else if (k == K_TINY || k == K_TINY_NOBARRIER)
                bg_op_add(c, a, b, 1);
            if (k != K_TINY_NOBARRIER && k != K_EMPTY)
                bg_compute_barrier(c);
        }
        if (bg_compute_submit(c, &err) != BG_OK)
            bench_die("submit", &err);
        double dt = (double)(bg_now_ns() - t0) * 1e-9;
        if (trial > 0 && dt < best)
            best = dt;
    }
    bg_cbuf_destroy(c, x);
    if (w)
        bg_cbuf_destroy(c, w);
    if (o)
        bg_cbuf_destroy(c, o);
    return best / reps;
}

/* Repetitions that make one run last roughly target seconds on c. */
static int calibrate(bg_compute *c, kind k, shape s, double target)
{
    if (g_reps)
        return g_reps;
    double one = run(c, k, s, 1);
    int r = (int)(target / (one > 1e-7 ? one : 1e-7));
    return r < 1 ? 1 : r > 200 ? 200 : r;
}

static void row_overhead(bg_compute *cpu, bg_compute *vk, const char *name, kind k, int reps)
{
    double tc = run(cpu, k, (shape){0, 0, 0}, reps) * 1e6;
    double tv = run(vk, k, (shape){0, 0, 0}, reps) * 1e6;
    printf("| %-38s | %10.2f | %10.2f | %8.2f |\n", name, tc, tv, tv / tc);
}

static void row_matmul(bg_compute *cpu, bg_compute *vk, shape s, double peak_gbs)
{
    double flop = 2.0 * s.M * s.N * s.K;
    /* without a CPU backend (--no-cpu, tile sweeps) its columns read "nan" */
    double tc = cpu ? run(cpu, K_MATMUL, s, calibrate(cpu, K_MATMUL, s, 0.05)) : NAN;
    double tv = run(vk, K_MATMUL, s, calibrate(vk, K_MATMUL, s, 0.05));
    char name[64];
    if (s.M == 1) {
        double bytes = 4.0 * s.N * s.K;
        snprintf(name, sizeof(name), "matvec N=%d K=%d (%.1f MB), GB/s", s.N, s.K, bytes / 1e6);
        printf("| %-38s | %10.2f | %10.2f | %8.2f |", name, bytes / tc / 1e9, bytes / tv / 1e9,
               tc / tv);
        if (peak_gbs > 0)
            printf(" %.0f%% of %.0f GB/s", 100.0 * bytes / tv / 1e9 / peak_gbs, peak_gbs);
        printf("\n");
    } else {
        snprintf(name, sizeof(name), "matmul %dx%dx%d, GFLOP/s", s.M, s.N, s.K);
        printf("| %-38s | %10.2f | %10.2f | %8.2f |\n", name, flop / tc / 1e9, flop / tv / 1e9,
               tc / tv);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int big = 0, threads = 0, no_cpu = 0, only_mm = 0, train = 0;
    double peak = 0.0, peak_tflops = 0.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--big") == 0)
            big = 1;
        else if (strcmp(argv[i], "--peak-gbs") == 0 && i + 1 < argc)
            peak = atof(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            g_reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-cpu") == 0)
            no_cpu = 1;
        else if (strcmp(argv[i], "--matmul-only") == 0)
            only_mm = 1;
        else if (strcmp(argv[i], "--train") == 0)
            train = 1;
        else if (strcmp(argv[i], "--train-only") == 0)
            train = 2;
        else if (strcmp(argv[i], "--peak-tflops") == 0 && i + 1 < argc)
            peak_tflops = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_vulkan [--big] [--peak-gbs G] [--threads N] "
                            "[--reps R] [--no-cpu] [--matmul-only] [--train | --train-only] "
                            "[--peak-tflops T]\n");
            return 2;
        }
    }
    bg_err err;
    bg_compute *cpu = NULL, *vk = NULL;
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = threads, .device_index = -1};
    if (bg_compute_create(&co, &cpu, &err) != BG_OK)
        bench_die("cpu backend", &err);
    bg_compute_opts vo = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};
    if (bg_compute_create(&vo, &vk, &err) != BG_OK) {
        printf("bench_vulkan: no Vulkan device: %s\n", err.msg);
        bg_compute_destroy(cpu);
        return 0;
    }
    printf("CPU backend: %s\nVulkan backend: %s\n\n", bg_compute_describe(cpu),
           bg_compute_describe(vk));
    printf("| %-38s | %10s | %10s | %8s |\n", "workload", "cpu", "vulkan", "ratio");
    printf("|%s|%s|%s|%s|\n", "----------------------------------------", "------------",
           "------------", "----------");
    if (train == 2) {
        bench_train(cpu, vk, big, no_cpu, peak_tflops);
        bg_compute_destroy(vk);
        bg_compute_destroy(cpu);
        return 0;
    }
    if (!only_mm) {
        printf("| %-38s | %10s | %10s | %8s |\n", "dispatch overhead, us (ratio vk/cpu)", "", "",
               "");
        row_overhead(cpu, vk, "empty begin+submit", K_EMPTY, 1);
        row_overhead(cpu, vk, "1 tiny op per submit", K_TINY, 1);
        row_overhead(cpu, vk, "per op, 200 tiny ops + barriers", K_TINY, 200);
        row_overhead(cpu, vk, "per op, 200 tiny ops, no barriers", K_TINY_NOBARRIER, 200);
    }
    printf("| %-38s | %10s | %10s | %8s |\n", "throughput (ratio vk/cpu speed)", "", "", "");
    bg_compute *mcpu = no_cpu ? NULL : cpu;
    static const shape mm[] = {{64, 64, 64},    {128, 128, 128}, {256, 256, 256},
                               {512, 512, 512}, {64, 768, 288},  {17, 173, 97}};
    for (size_t i = 0; i < sizeof(mm) / sizeof(mm[0]); i++)
        row_matmul(mcpu, vk, mm[i], peak);
    static const shape mmbig[] = {{1024, 1024, 1024}, {2048, 2048, 2048}, {4096, 4096, 4096}};
    for (size_t i = 0; big && i < sizeof(mmbig) / sizeof(mmbig[0]); i++)
        row_matmul(mcpu, vk, mmbig[i], peak);
    static const shape mv[] = {{1, 768, 288}, {1, 32000, 288}, {1, 4096, 4096}};
    for (size_t i = 0; !only_mm && i < sizeof(mv) / sizeof(mv[0]); i++)
        row_matmul(mcpu, vk, mv[i], peak);
    static const shape mvbig[] = {{1, 16384, 4096}, {1, 32768, 8192}};
    for (size_t i = 0; !only_mm && big && i < sizeof(mvbig) / sizeof(mvbig[0]); i++)
        row_matmul(mcpu, vk, mvbig[i], peak);
    if (train)
        bench_train(cpu, vk, big, no_cpu, peak_tflops);
    bg_compute_destroy(vk);
    bg_compute_destroy(cpu);
    return 0;
}
