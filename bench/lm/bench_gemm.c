/*
 * bench_gemm.c — bg_bench_lm's GEMM table: the CPU backend's matmul and its
 * two backward GEMMs against OpenBLAS at 512^3 and at the 15M model's
 * training shapes (dim 288, hidden 768, vocab 32000; rows = batch x seq).
 *
 * Why child processes: both choices are made once per process at load time
 * (OpenBLAS reads OPENBLAS_CORETYPE when the library loads; the CPU backend
 * reads BG_CPU_KERNEL on first use), so each configuration runs as
 * `bg_bench_lm --gemm-child` with its environment and prints one line per
 * measurement, which the parent puts side by side. Two children: our best
 * kernel against OpenBLAS forced to the best core for the CPU chosen from
 * cpuid (SkylakeX with AVX-512F; Haswell with AVX2), so a ratio never comes
 * from a crippled baseline; and, on x86, our AVX2 kernel against OpenBLAS's
 * Haswell core (the AVX2-only comparison on this CPU). Inside a child,
 * ours and OpenBLAS's calls are interleaved round by round (the order
 * alternating) and the medians compared, so machine load hits both alike;
 * with two threads each round starts once the previous contender's idle
 * workers have stopped spinning (settle), so no round shares the cores
 * with them or is charged their CPU time.
 * Where the CPU has AVX512_BF16, ours with bf16 matmuls
 * (bg_compute_set_precision) is a third contender of the same rounds: a
 * different precision, so it is compared with ours, not with OpenBLAS.
 * For tuning runs, the child reads two optional filters from its
 * environment: BG_BENCH_GEMM_SHAPES (comma-separated substrings of the shape
 * names, e.g. "dw,classifier fwd": only shapes naming one run) and
 * BG_BENCH_GEMM_THREADS ("1" or "2": only that thread count); rows not run
 * print as 0 in the table. Unset: everything. With BG_POOL_TRACE=1 each
 * child's pools print, per thread count, where their threads spent the
 * runs (compute_cpu_pool.c): e.g. `BG_POOL_TRACE=1 BG_BENCH_GEMM_SHAPES="wq
 * dw" BG_BENCH_GEMM_THREADS=2 bg_bench_lm --gemm-child`.
 * The per-round figures and the counters (for A/Bs that a loaded machine
 * would drown): after the table's nine fields each ROW line carries the
 * median, min and max over the rounds of the paired ratio ours / OpenBLAS
 * per CPU-second (the two contenders of one round run back to back, so a
 * round's load hits both); then, where perf_event_open gives this thread
 * user-mode cycles and instructions (a PMU the kernel exposes; a VM often
 * has none: the child prints `COUNTERS none: <why>` and these are 0), each
 * contender's median FLOP per user cycle and instructions per call (cycles
 * do not count the time a thread is descheduled, but still see the cache
 * traffic of whatever shares the core or the L3; they cover the calling
 * thread only, so they are printed for one thread only); then the best
 * round's GFLOP per CPU-second of each (the least disturbed window).
 * More environment for such A/Bs: BG_BENCH_GEMM_ROUNDS (rounds, up to 101;
 * default 11, --quick 5), BG_BENCH_GEMM_MIN_S (seconds of calls per
 * contender per round; default 0.12, --quick 0.04), BG_BENCH_GEMM_NULL=1
 * (the OpenBLAS slot runs ours too: a null A/B, whose ratios show the
 * method's own spread).
 * Where the two threads run: after each two-thread round the child
 * measures how long a cache line takes from one of the first two CPUs it
 * may use to the other (core_latency_ns), and after each two-thread ROW
 * prints `LAT idx threads median max` of those, in ns (0 where it may use
 * fewer than two CPUs). On a VM the host moves the vCPUs: on the Zen 3
 * this read ~55 ns at some moments and ~220 ns seconds later
 * (docs/PERFORMANCE.md, "Two-thread dW: spans of rows, and where the two
 * vCPUs are"); bench/lm/gemm_rand.py splits its children by it.
 * Threads: single-threaded apart from the pools of the two libraries and,
 * between two-thread rounds, core_latency_ns's peer (joined before it
 * returns; it pins the calling thread for the probe and restores it).
 */
#include <cblas.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <errno.h>
#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#endif
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_gemm.h"
#include "compute/compute.h"

char *openblas_get_corename(void);

typedef struct shape {
    const char *what;
    char op; /* 'f' out = x w^T, 'x' dx = dy w, 'w' dw += dy^T x */
    int M, N, K;
} shape;

/* 512^3, then the 15M model's training shapes: rows = 4 x 256 (batch x
 * seq); every weight shape (out x in) forward, dx and dw. The w1 shape
 * stands for w3 too, wq for wk, wv and wo (all dim x dim). */
static const shape g_shapes[] = {
    {"512^3", 'f', 512, 512, 512},
    {"wq fwd", 'f', 1024, 288, 288},
    {"wq dx", 'x', 1024, 288, 288},
    {"wq dw", 'w', 1024, 288, 288},
    {"w1 fwd", 'f', 1024, 768, 288},
    {"w1 dx", 'x', 1024, 768, 288},
    {"w1 dw", 'w', 1024, 768, 288},
    {"w2 fwd", 'f', 1024, 288, 768},
    {"w2 dx", 'x', 1024, 288, 768},
    {"w2 dw", 'w', 1024, 288, 768},
    {"classifier fwd", 'f', 1024, 32000, 288},
    {"classifier dx", 'x', 1024, 32000, 288},
    {"classifier dw", 'w', 1024, 32000, 288},
};
#define NSHAPES (int)(sizeof g_shapes / sizeof g_shapes[0])

double bg_bench_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bg_bench_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *rnd(size_t n, unsigned seed)
{
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; v && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return v;
}

/* The BLAS call with the same meaning as the op: see shape.op. */
static void blas_op(const shape *s, float *out, const float *a, const float *b)
{
    int M = s->M, N = s->N, K = s->K;
    if (s->op == 'f') /* out[M,N] = a[M,K] b[N,K]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, out,
                    N);
    else if (s->op == 'x') /* dx[M,K] = dy[M,N] w[N,K] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, a, N, b, K, 0.0f, out,
                    K);
    else /* dw[N,K] += dy[M,N]^T x[M,K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, a, N, b, K, 1.0f, out,
                    K);
}

static void ours_op(bg_compute *c, const shape *s, bg_cbuf *o, bg_cbuf *a, bg_cbuf *b)
{
    bg_tview vo = {o, 0}, va = {a, 0}, vb = {b, 0};
    bg_compute_begin(c, NULL);
    if (s->op == 'f')
        bg_op_matmul(c, vo, va, vb, s->M, s->N, s->K);
    else if (s->op == 'x')
        bg_op_matmul_backward_x(c, vo, va, vb, s->M, s->N, s->K, 0);
    else
        bg_op_matmul_backward_w(c, vo, va, vb, s->M, s->N, s->K);
    bg_compute_submit(c, NULL);
}

/* Operand sizes (elements) of a shape: a, b, out. */
static void sizes(const shape *s, size_t *na, size_t *nb, size_t *no)
{
    size_t M = (size_t)s->M, N = (size_t)s->N, K = (size_t)s->K;
    if (s->op == 'f') {
        *na = M * K, *nb = N * K, *no = M * N;
    } else if (s->op == 'x') {
        *na = M * N, *nb = N * K, *no = M * K;
    } else {
        *na = M * N, *nb = M * K, *no = N * K;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define MAX_REPS 101

/* User-mode cycles and instructions of the calling thread
 * (perf_event_open), where the kernel gives them; fd < 0: none. */
typedef struct counters {
    int fd[2];
} counters;

static void counters_open(counters *k)
{
    k->fd[0] = k->fd[1] = -1;
#if defined(__linux__)
    static const unsigned long long cfg[2] = {PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_HW_INSTRUCTIONS};
    for (int i = 0; i < 2; i++) {
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.type = PERF_TYPE_HARDWARE;
        a.size = sizeof a;
        a.config = cfg[i];
        a.exclude_kernel = 1;
        a.exclude_hv = 1;
        k->fd[i] = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
        if (k->fd[i] < 0) {
            printf("COUNTERS none: perf_event_open(%s): %s\n", i ? "instructions" : "cycles",
                   strerror(errno));
            if (i)
                close(k->fd[0]);
            k->fd[0] = k->fd[1] = -1;
            return;
        }
    }
    printf("COUNTERS user-mode cycles, instructions (this thread)\n");
#else
    printf("COUNTERS none: not Linux\n");
#endif
}

/* The counters' values now (0 without counters). */
static void counters_read(const counters *k, double v[2])
{
    for (int i = 0; i < 2; i++) {
        unsigned long long x = 0;
        if (k->fd[i] < 0 || read(k->fd[i], &x, sizeof x) != (ssize_t)sizeof x)
            x = 0;
        v[i] = (double)x;
    }
}

static void counters_close(counters *k)
{
    for (int i = 0; i < 2; i++)
        if (k->fd[i] >= 0)
            close(k->fd[i]);
}

/* A positive integer or a positive number from the environment, else def. */
static double env_num(const char *name, double def)
{
    const char *v = getenv(name);
    double x = v && *v ? atof(v) : 0.0;
    return x > 0 ? x : def;
}

static double minmax(const double *v, int n, int want_max)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = want_max ? fmax(m, v[i]) : fmin(m, v[i]);
    return m;
}

/* With two threads, OpenBLAS's idle workers spin after its last call
 * (about 0.1 s on the Zen 3 measured: its thread timeout, 2^28 TSC cycles)
 * before they sleep, while ours sleep after about 40 us. A round started
 * right after OpenBLAS's would share the two cores with its spinning worker
 * and have that worker's CPU time counted as its own (the process's).
 * So each round with two threads waits until the process is idle: 10 ms
 * sleeps until one of them costs under 1 ms of CPU (at most 0.5 s). */
static void settle(void)
{
    for (int i = 0; i < 50; i++) {
        double c0 = bg_bench_cpu();
        usleep(10000);
        if (bg_bench_cpu() - c0 < 1e-3)
            return;
    }
}

/* core_latency_ns: LAT_TRIPS round trips of one cache line between two
 * threads pinned to two CPUs; the caller's affinity is restored after.
 * Either side gives up (g_lat_stop) when the other cannot be pinned or
 * the probe runs past LAT_LIMIT_S (a peer that never got a core). */
#define LAT_TRIPS 20000
#define LAT_LIMIT_S 2.0
static _Alignas(64) _Atomic long g_lat_word;
static _Atomic int g_lat_stop;
static double g_lat_deadline;

static int lat_pin(pthread_t t, int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(t, sizeof one, &one);
}

/* Waits until the word reads `want`: 0, or -1 once either side gave up
 * (this one past the deadline: the clock is read every 4,096 spins). */
static int lat_wait(long want)
{
    for (long n = 1; atomic_load_explicit(&g_lat_word, memory_order_acquire) != want; n++) {
        if (atomic_load_explicit(&g_lat_stop, memory_order_relaxed))
            return -1;
        if ((n & 4095) == 0 && bg_bench_wall() > g_lat_deadline) {
            atomic_store(&g_lat_stop, 1);
            return -1;
        }
    }
    return 0;
}

static void *lat_peer(void *arg)
{
    if (lat_pin(pthread_self(), *(int *)arg) != 0) {
        atomic_store(&g_lat_stop, 1);
        return NULL;
    }
    for (long i = 0; i < LAT_TRIPS && lat_wait(2 * i + 1) == 0; i++)
        atomic_store_explicit(&g_lat_word, 2 * i + 2, memory_order_release);
    return NULL;
}

/* One way, ns: half a round trip's median over blocks of 1,000 (a block
 * that a descheduled thread stretched does not move it). 0 where this
 * process may run on fewer than two CPUs or this thread cannot be
 * pinned; -1 when either side gave up (g_lat_stop). */
static double core_latency_ns(void)
{
    cpu_set_t allowed, mine;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 ||
        pthread_getaffinity_np(pthread_self(), sizeof mine, &mine) != 0)
        return 0;
    int cpu[2], n = 0;
    for (int i = 0; i < CPU_SETSIZE && n < 2; i++)
        if (CPU_ISSET(i, &allowed))
            cpu[n++] = i;
    if (n < 2 || lat_pin(pthread_self(), cpu[0]) != 0)
        return 0;
    atomic_store(&g_lat_word, 0);
    atomic_store(&g_lat_stop, 0);
    g_lat_deadline = bg_bench_wall() + LAT_LIMIT_S; /* before the peer starts */
    pthread_t peer;
    double res = 0;
    if (pthread_create(&peer, NULL, lat_peer, &cpu[1]) == 0) {
        enum { BLOCK = 1000 };
        double blocks[LAT_TRIPS / BLOCK], tb = bg_bench_wall();
        for (long i = 0; i < LAT_TRIPS; i++) {
            atomic_store_explicit(&g_lat_word, 2 * i + 1, memory_order_release);
            if (lat_wait(2 * i + 2) != 0)
                break;
            if ((i + 1) % BLOCK == 0) {
                double t = bg_bench_wall();
                blocks[i / BLOCK] = (t - tb) / BLOCK / 2 * 1e9;
                tb = t;
            }
        }
        pthread_join(peer, NULL);
        res = atomic_load(&g_lat_stop) ? -1 : median(blocks, LAT_TRIPS / BLOCK);
    }
    pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
    return res;
}

/* BG_BENCH_GEMM_SHAPES: does shape name `what` match one of its substrings? */
static int shape_wanted(const char *what)
{
    const char *f = getenv("BG_BENCH_GEMM_SHAPES");
    if (!f || !*f)
        return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (*tok && strstr(what, tok))
            return 1;
    return 0;
}

int bg_bench_gemm_child(int quick)
{
    int reps = (int)env_num("BG_BENCH_GEMM_ROUNDS", quick ? 5 : 11);
    reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps; /* "0.5" rounds is 1, not 0 */
    double min_s = env_num("BG_BENCH_GEMM_MIN_S", quick ? 0.04 : 0.12);
    const char *nv = getenv("BG_BENCH_GEMM_NULL");
    int null_ab = nv && strcmp(nv, "1") == 0;
    printf("CORE %s\n", openblas_get_corename());
    if (null_ab)
        printf("NULL the OpenBLAS slot runs ours: a null A/B\n");
    counters ctr;
    counters_open(&ctr);
    const char *tf = getenv("BG_BENCH_GEMM_THREADS");
    int only_threads = tf && *tf ? atoi(tf) : 0;
    for (int threads = 1; threads <= 2; threads++) {
        if (only_threads && threads != only_threads)
            continue;
        bg_compute_opts co = {BG_BACKEND_CPU, threads, 0, -1};
        bg_compute *c = NULL;
        bg_err err;
        if (bg_compute_create(&co, &c, &err) != BG_OK) {
            fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
            return 1;
        }
        /* a third contender, ours with bf16 matmuls, where the CPU has them */
        int ncont = bg_compute_set_precision(c, BG_PRECISION_BF16, &err) == BG_OK ? 3 : 2;
        bg_compute_set_precision(c, BG_PRECISION_FP32, NULL);
        if (threads == 1 || only_threads)
            printf("DESC %s\n", bg_compute_describe(c));
        openblas_set_num_threads(threads);
        for (int i = 0; i < NSHAPES; i++) {
            const shape *s = &g_shapes[i];
            if (!shape_wanted(s->what))
                continue;
            size_t na, nb, no;
            sizes(s, &na, &nb, &no);
            float *a = rnd(na, 1u + (unsigned)i), *b = rnd(nb, 77u + (unsigned)i);
            float *ob = calloc(no, sizeof(float)), *oo = malloc(no * sizeof(float));
            bg_cbuf *ca, *cb, *cx;
            bg_cbuf_create(c, na * 4, &ca, NULL);
            bg_cbuf_create(c, nb * 4, &cb, NULL);
            bg_cbuf_create(c, no * 4, &cx, NULL);
            bg_cbuf_write(c, ca, 0, a, na * 4, NULL);
            bg_cbuf_write(c, cb, 0, b, nb * 4, NULL);
            bg_cbuf_write(c, cx, 0, ob, no * 4, NULL);
            /* one call each for the difference (dw accumulates into zeros) */
            ours_op(c, s, cx, ca, cb);
            blas_op(s, ob, a, b);
            bg_cbuf_read(c, cx, 0, oo, no * 4, NULL);
            double diff = 0;
            for (size_t j = 0; j < no; j++)
                diff = fmax(diff, fabs((double)oo[j] - ob[j]));
            /* reps rounds; in each, ours and OpenBLAS back to back (the
             * order alternating by round), each timed over >= min_s of
             * calls; the median per call of each, by wall and CPU time */
            double wall[3][MAX_REPS], cpu[3][MAX_REPS], cyc[2][MAX_REPS], ins[2][MAX_REPS];
            double pair[MAX_REPS], lat[MAX_REPS];
            for (int r = 0; r < reps; r++) {
                for (int j = 0; j < ncont; j++) {
                    int which = (r + j) % ncont, n = 0;
                    if (threads > 1)
                        settle();
                    if (which == 2)
                        bg_compute_set_precision(c, BG_PRECISION_BF16, NULL);
                    double k0[2], k1[2];
                    counters_read(&ctr, k0);
                    double t0 = bg_bench_wall(), c0 = bg_bench_cpu(), t1;
                    do {
                        if (which == 1 && !null_ab)
                            blas_op(s, ob, a, b);
                        else
                            ours_op(c, s, cx, ca, cb);
                        n++;
                    } while ((t1 = bg_bench_wall()) - t0 < min_s);
                    if (which == 2)
                        bg_compute_set_precision(c, BG_PRECISION_FP32, NULL);
                    wall[which][r] = (t1 - t0) / n;
                    cpu[which][r] = (bg_bench_cpu() - c0) / n;
                    counters_read(&ctr, k1);
                    if (which < 2) {
                        cyc[which][r] = (k1[0] - k0[0]) / n;
                        ins[which][r] = (k1[1] - k0[1]) / n;
                    }
                }
                pair[r] = cpu[1][r] / cpu[0][r];
                lat[r] = threads > 1 ? core_latency_ns() : 0;
            }
            double flop = 2.0 * s->M * s->N * s->K * 1e-9;
            /* the fields after the 9th: the parent does not read them */
            double pmin = minmax(pair, reps, 0), pmax = minmax(pair, reps, 1);
            double best0 = minmax(cpu[0], reps, 0), best1 = minmax(cpu[1], reps, 0);
            int have = ctr.fd[0] >= 0 && threads == 1;
            double cy0 = have ? median(cyc[0], reps) : 0, cy1 = have ? median(cyc[1], reps) : 0;
            printf("ROW %d %d %.2f %.2f %.2f %.2f %.1e %.2f %.2f %.4f %.4f %.4f %.3f %.3f %.4g "
                   "%.4g %.2f %.2f\n",
                   i, threads, flop / median(wall[0], reps), flop / median(wall[1], reps),
                   flop / median(cpu[0], reps), flop / median(cpu[1], reps), diff,
                   ncont == 3 ? flop / median(wall[2], reps) : 0.0,
                   ncont == 3 ? flop / median(cpu[2], reps) : 0.0, median(pair, reps), pmin, pmax,
                   cy0 > 0 ? flop * 1e9 / cy0 : 0.0, cy1 > 0 ? flop * 1e9 / cy1 : 0.0,
                   have ? median(ins[0], reps) : 0.0, have ? median(ins[1], reps) : 0.0,
                   flop / best0, flop / best1);
            if (threads > 1)
                printf("LAT %d %d %.1f %.1f\n", i, threads, median(lat, reps),
                       minmax(lat, reps, 1));
            fflush(stdout);
            bg_cbuf_destroy(c, ca);
            bg_cbuf_destroy(c, cb);
            bg_cbuf_destroy(c, cx);
            free(a), free(b), free(ob), free(oo);
        }
        bg_compute_destroy(c);
    }
    counters_close(&ctr);
    return 0;
}

/* OpenBLAS's best core for this CPU, from cpuid (its sgemm kernels:
 * SkylakeX for AVX-512F, Haswell for AVX2). */
static const char *best_core(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) /* OSXSAVE */
        return "Prescott";
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0x6) != 0x6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return "Prescott";
    /* a core whose registers the OS does not save would fault: check XCR0 */
    if (((b >> 16) & 1) && (lo & 0xE6) == 0xE6)
        return "SkylakeX";
    if ((b >> 5) & 1)
        return "Haswell";
    return "Prescott";
#else
    return "ARMV8"; /* --blas-core overrides */
#endif
}

typedef struct child_rows {
    char core[64], desc[128];
    /* GFLOP/s by wall clock, and GFLOP per CPU-second */
    double ours[NSHAPES][3], blas[NSHAPES][3], ours_c[NSHAPES][3], blas_c[NSHAPES][3];
    double diff[NSHAPES][3];
    double bf16[NSHAPES][3], bf16_c[NSHAPES][3]; /* 0: not run */
} child_rows;

static int run_child(const char *self, const char *env, int quick, child_rows *r)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env %s '%s' --gemm-child%s", env, self, quick ? " --quick" : "");
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[512];
    memset(r, 0, sizeof *r);
    while (fgets(line, sizeof line, f)) {
        int i, t;
        double o, b, oc, bc, d, h = 0, hc = 0;
        if (sscanf(line, "CORE %63s", r->core) == 1)
            continue;
        if (strncmp(line, "DESC ", 5) == 0) {
            snprintf(r->desc, sizeof r->desc, "%s", line + 5);
            r->desc[strcspn(r->desc, "\n")] = 0;
        } else if (sscanf(line, "ROW %d %d %lf %lf %lf %lf %lf %lf %lf", &i, &t, &o, &b, &oc, &bc,
                          &d, &h, &hc) >= 7 &&
                   i >= 0 && i < NSHAPES && t >= 1 && t <= 2) {
            r->ours[i][t] = o, r->blas[i][t] = b, r->diff[i][t] = d;
            r->ours_c[i][t] = oc, r->blas_c[i][t] = bc;
            r->bf16[i][t] = h, r->bf16_c[i][t] = hc;
        }
    }
    return pclose(f) == 0 ? 0 : -1;
}

int bg_bench_gemm(int quick, const char *core_override, FILE *out)
{
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    const char *core = core_override ? core_override : best_core();
    static child_rows best, avx2;
    char env[256];
    snprintf(env, sizeof env, "OPENBLAS_CORETYPE=%s BG_CPU_KERNEL=auto", core);
    if (run_child(self, env, quick, &best) != 0)
        return -1;
    /* the AVX2 comparison: our AVX2 kernel against OpenBLAS's Haswell
     * (AVX2+FMA) kernel, both forced, on the same CPU */
    int x86 = strcmp(core, "SkylakeX") == 0 || strcmp(core, "Haswell") == 0;
    if (x86 && run_child(self, "OPENBLAS_CORETYPE=Haswell BG_CPU_KERNEL=avx2", quick, &avx2) != 0)
        return -1;
    fprintf(out, "\n### GEMM vs OpenBLAS's best kernel, GFLOP/s (rows = batch 4 x seq 256)\n\n");
    fprintf(out, "OpenBLAS forced to OPENBLAS_CORETYPE=%s: core %s; bayesguard: %s.\n", core,
            best.core, best.desc);
    if (x86)
        fprintf(out, "AVX2 columns: OPENBLAS_CORETYPE=Haswell (core %s) against %s.\n", avx2.core,
                avx2.desc);
    fprintf(out,
            "Medians of %d interleaved rounds. Wall: GFLOP/s by the clock; CPU: GFLOP per "
            "CPU-second of the process (all threads), which a loaded machine disturbs "
            "less.\n\n",
            quick ? 5 : 11);
    fprintf(out,
            "| shape | M x N x K | thr | ours | OpenBLAS %s | ratio wall | ratio CPU | ours avx2 "
            "| OpenBLAS Haswell | avx2 ratio wall | avx2 ratio CPU | max abs diff | ours bf16 | "
            "bf16 / ours CPU |\n",
            best.core);
    fprintf(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int t = 1; t <= 2; t++)
        for (int i = 0; i < NSHAPES; i++) {
            const shape *s = &g_shapes[i];
            fprintf(out, "| %s | %d x %d x %d | %d | %.1f | %.1f | %.2f | %.2f | ", s->what, s->M,
                    s->N, s->K, t, best.ours[i][t], best.blas[i][t],
                    best.ours[i][t] / best.blas[i][t], best.ours_c[i][t] / best.blas_c[i][t]);
            if (x86)
                fprintf(out, "%.1f | %.1f | %.2f | %.2f | ", avx2.ours[i][t], avx2.blas[i][t],
                        avx2.ours[i][t] / avx2.blas[i][t], avx2.ours_c[i][t] / avx2.blas_c[i][t]);
            else
                fprintf(out, "- | - | - | - | ");
            fprintf(out, "%.0e | ", fmax(best.diff[i][t], x86 ? avx2.diff[i][t] : 0.0));
            if (best.bf16[i][t] > 0)
                fprintf(out, "%.1f | %.2f |\n", best.bf16[i][t],
                        best.bf16_c[i][t] / best.ours_c[i][t]);
            else
                fprintf(out, "- | - |\n");
        }
    return 0;
}
