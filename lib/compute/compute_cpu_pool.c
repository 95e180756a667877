/*
 * compute_cpu_pool.c — the CPU backend's small persistent thread pool.
 *
 * Why persistent and spinning: a transformer forward pass is dozens of short
 * parallel loops (a decode step of a small model is microseconds per op), so
 * starting threads per op or sleeping on a condition variable between ops
 * would cost more than the work. Workers spin briefly on the run word after
 * each run and only then sleep on a condition variable.
 *
 * Why the caller never waits for a worker to wake up: on a busy host (more
 * runnable threads than cores) a sleeping worker may not run for a whole
 * scheduler slice. Tasks are claimed one at a time from a shared counter,
 * the caller claims too, and a run ends when every task is *done* — not when
 * every worker has checked in. A worker that wakes late finds nothing to
 * claim and goes back to waiting.
 *
 * The run word (64-bit atomic) packs gen:24 | ntasks:20 | next:20. A worker
 * claims task i by CAS from (gen, n, i) to (gen, n, i+1) with i < n. While a
 * claimed task is unfinished the run is incomplete, and the caller rewrites
 * fn/ctx only after completion, so fn/ctx read after a successful claim are
 * that run's. `done` counts finished tasks of the current run.
 *
 * Invariants
 *   - one run at a time, started by the owning thread (not reentrant);
 *   - bg__pool_run returns only when all its tasks finished, so ctx (often
 *     on the caller's stack) outlives every task;
 *   - ntasks per run < 2^20 (larger loops are folded by the caller).
 * Tracing (BG_POOL_TRACE=1 in the environment when the pool is created,
 * for tuning): each thread sums the time it spends in tasks, the caller the
 * wall time of its runs and how long it waited at their ends for others'
 * tasks (the part of it spent spinning, the rest asleep); each worker how
 * long it waited between runs, spinning (CPU time: counted against a
 * benchmark's CPU-seconds) and asleep, and how often it slept; destroy
 * prints the totals to stderr (per-thread busy share: where the threads of
 * a GEMM wait). Off, it costs one branch per task and per wait.
 * Ownership: the pool owns its threads; destroy joins them. It also owns
 * the GEMM's packing scratch (bg__pool_scratch): kept between calls, so a
 * GEMM does not pay for fresh pages (first-touch faults) every time, and
 * freed by bg__pool_scratch_trim beyond a size or by destroy. Only the
 * driving thread calls those two (the tasks it runs write into the buffers).
 */
#include "compute/compute_cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPIN_ITERS 2000 /* about 20-40 us of pause before sleeping */
#define IDX_BITS 20
#define IDX_MASK ((1ull << IDX_BITS) - 1)
#define MAX_TASKS ((int)IDX_MASK)

/* One thread's BG_POOL_TRACE counters, a cache line of its own (every
 * thread adds to its own while the others run). */
struct pool_trace {
    _Alignas(64) _Atomic long long busy, tasks; /* wall time in tasks, tasks run */
    /* a worker's wait between runs, spinning and asleep, and its sleeps
     * (the caller's entry leaves them 0) */
    _Atomic long long spin_ns, sleep_ns, sleeps;
    /* thread CPU time: in tasks (every thread), spinning (workers between
     * runs, the caller at runs' ends) */
    _Atomic long long busy_cpu, spin_cpu;
};

struct bg__pool {
    int nthreads; /* including the caller */
    pthread_t *tids;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t start_cv;
    pthread_cond_t done_cv;
    _Atomic uint64_t run; /* gen | ntasks | next */
    atomic_int done;
    atomic_int stop;
    atomic_int sleeping_caller;
    bg__pool_fn fn;
    void *ctx;
    void *scratch[BG__POOL_SCRATCH_SLOTS]; /* 64-byte aligned, scratch_bytes[i] long */
    /* BG_POOL_TRACE: tr[i], thread i's counters (0: the caller); runs,
     * their wall time and the caller's wait at their ends */
    int trace;
    atomic_int next_id;
    struct pool_trace *tr;
    long long runs, run_ns, wait_ns, wait_spin_ns;
    size_t scratch_bytes[BG__POOL_SCRATCH_SLOTS];
};

/* One step of a spin wait. Every 64th step yields the CPU: on a host with
 * more runnable threads than cores, the thread being waited for may be
 * queued behind the spinner on the same core. */
static inline void cpu_relax(int i)
{
    if ((i & 63) == 63) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline uint64_t gen_of(uint64_t w)
{
    return w >> (2 * IDX_BITS);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The calling thread's CPU time (the trace's CPU columns: a descheduled
 * thread's wall time is not work or spin). */
static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Claims and runs tasks of run generation g until none is left; me: the
 * thread's index (0: the caller), for the trace. */
static void work(bg__pool *p, uint64_t g, int me)
{
    uint64_t w = atomic_load(&p->run);
    for (;;) {
        if (gen_of(w) != g)
            return;
        uint64_t n = (w >> IDX_BITS) & IDX_MASK, i = w & IDX_MASK;
        if (i >= n)
            return;
        if (!atomic_compare_exchange_weak(&p->run, &w, w + 1))
            continue; /* w reloaded */
        if (p->trace) {
            long long t0 = now_ns(), c0 = cpu_ns();
            p->fn(p->ctx, (int)i);
            atomic_fetch_add(&p->tr[me].busy, now_ns() - t0);
            atomic_fetch_add(&p->tr[me].busy_cpu, cpu_ns() - c0);
            atomic_fetch_add(&p->tr[me].tasks, 1);
        } else {
            p->fn(p->ctx, (int)i);
        }
        if (atomic_fetch_add(&p->done, 1) + 1 == (int)n && atomic_load(&p->sleeping_caller)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
        w = atomic_load(&p->run);
    }
}

static void *worker(void *arg)
{
    bg__pool *p = arg;
    int me = atomic_fetch_add(&p->next_id, 1) + 1;
    uint64_t seen = 0; /* gen at creation: a run may start before this thread does */
    for (;;) {
        uint64_t g = seen;
        long long t0 = p->trace ? now_ns() : 0, t1 = 0, c0 = p->trace ? cpu_ns() : 0;
        for (int i = 0; i < SPIN_ITERS && g == seen && !atomic_load(&p->stop); i++) {
            cpu_relax(i);
            g = gen_of(atomic_load(&p->run));
        }
        if (p->trace) {
            t1 = now_ns();
            atomic_store(&p->tr[me].spin_ns, atomic_load(&p->tr[me].spin_ns) + t1 - t0);
            atomic_store(&p->tr[me].spin_cpu, atomic_load(&p->tr[me].spin_cpu) + cpu_ns() - c0);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = gen_of(atomic_load(&p->run))) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            if (p->trace) {
                atomic_store(&p->tr[me].sleep_ns, atomic_load(&p->tr[me].sleep_ns) + now_ns() - t1);
                atomic_store(&p->tr[me].sleeps, atomic_load(&p->tr[me].sleeps) + 1);
            }
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        work(p, g, me);
    }
}

int bg__pool_create(int nthreads, bg__pool **out, bg_err *err)
{
    *out = NULL;
    if (nthreads < 1)
        nthreads = 1;
    bg__pool *p = calloc(1, sizeof *p);
    if (!p)
        return bg_err_set(err, BG_ENOMEM, "cpu backend: out of memory for the thread pool");
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->run, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleeping_caller, 0);
    atomic_init(&p->next_id, 0);
    const char *tr = getenv("BG_POOL_TRACE");
    if (tr && *tr && *tr != '0') {
        p->tr = aligned_alloc(64, (size_t)nthreads * sizeof *p->tr);
        if (p->tr)
            memset(p->tr, 0, (size_t)nthreads * sizeof *p->tr);
        p->trace = p->tr != NULL;
    }
    if (nthreads > 1) {
        p->tids = calloc((size_t)nthreads - 1, sizeof *p->tids);
        if (!p->tids) {
            bg__pool_destroy(p);
            return bg_err_set(err, BG_ENOMEM, "cpu backend: out of memory for the thread pool");
        }
        for (int i = 0; i < nthreads - 1; i++) {
            if (pthread_create(&p->tids[i], NULL, worker, p) != 0) {
                bg__pool_destroy(p);
                return bg_err_set(err, BG_ELIMIT,
                                  "cpu backend: could not start worker thread %d of %d", i + 1,
                                  nthreads - 1);
            }
            p->started++;
        }
    }
    *out = p;
    return BG_OK;
}

void bg__pool_destroy(bg__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->tids[i], NULL);
    if (p->trace) {
        fprintf(stderr,
                "pool trace: %d threads, %lld runs, %.3f ms in runs, caller waited %.3f ms "
                "(%.3f spinning)",
                p->nthreads, p->runs, (double)p->run_ns * 1e-6, (double)p->wait_ns * 1e-6,
                (double)p->wait_spin_ns * 1e-6);
        for (int i = 0; i < p->nthreads; i++) {
            fprintf(stderr,
                    "; thread %d: %lld tasks, busy %.3f ms (%.1f%%), CPU in tasks %.3f ms, "
                    "spinning %.3f ms",
                    i, (long long)atomic_load(&p->tr[i].tasks),
                    (double)atomic_load(&p->tr[i].busy) * 1e-6,
                    p->run_ns ? 100.0 * (double)atomic_load(&p->tr[i].busy) / (double)p->run_ns
                              : 0.0,
                    (double)atomic_load(&p->tr[i].busy_cpu) * 1e-6,
                    (double)atomic_load(&p->tr[i].spin_cpu) * 1e-6);
            if (i > 0)
                fprintf(stderr, ", between runs spun %.3f ms, slept %lld times %.3f ms",
                        (double)atomic_load(&p->tr[i].spin_ns) * 1e-6,
                        (long long)atomic_load(&p->tr[i].sleeps),
                        (double)atomic_load(&p->tr[i].sleep_ns) * 1e-6);
        }
        fprintf(stderr, "\n");
    }
    free(p->tr);
    free(p->tids);
    for (int i = 0; i < BG__POOL_SCRATCH_SLOTS; i++)
        free(p->scratch[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

void *bg__pool_scratch(bg__pool *p, int slot, size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    if (p->scratch_bytes[slot] >= bytes)
        return p->scratch[slot];
    free(p->scratch[slot]);
    p->scratch[slot] = aligned_alloc(64, bytes);
    p->scratch_bytes[slot] = p->scratch[slot] ? bytes : 0;
    return p->scratch[slot];
}

void bg__pool_scratch_trim(bg__pool *p, size_t keep)
{
    for (int i = 0; i < BG__POOL_SCRATCH_SLOTS; i++)
        if (p->scratch_bytes[i] > keep) {
            free(p->scratch[i]);
            p->scratch[i] = NULL;
            p->scratch_bytes[i] = 0;
        }
}

int bg__pool_threads(const bg__pool *p)
{
    return p->nthreads;
}

void bg__pool_run(bg__pool *p, bg__pool_fn fn, void *ctx, int ntasks)
{
    if (ntasks <= 0)
        return;
    long long t0 = p->trace ? now_ns() : 0, c0 = p->trace ? cpu_ns() : 0;
    if (ntasks == 1 || p->started == 0 || ntasks > MAX_TASKS) {
        for (int t = 0; t < ntasks; t++)
            fn(ctx, t);
        if (p->trace) {
            long long d = now_ns() - t0;
            p->runs++, p->run_ns += d;
            atomic_fetch_add(&p->tr[0].busy, d);
            atomic_fetch_add(&p->tr[0].busy_cpu, cpu_ns() - c0);
            atomic_fetch_add(&p->tr[0].tasks, ntasks);
        }
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    uint64_t g = (gen_of(atomic_load(&p->run)) + 1) & ((1ull << 24) - 1);
    if (g == 0)
        g = 1; /* 0 is the workers' initial `seen` */
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->run, (g << (2 * IDX_BITS)) | ((uint64_t)ntasks << IDX_BITS));
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    work(p, g, 0);
    long long t1 = p->trace ? now_ns() : 0, c1 = p->trace ? cpu_ns() : 0;
    for (int i = 0; i < SPIN_ITERS && atomic_load(&p->done) != ntasks; i++)
        cpu_relax(i);
    if (p->trace) {
        p->wait_spin_ns += now_ns() - t1;
        atomic_fetch_add(&p->tr[0].spin_cpu, cpu_ns() - c1);
    }
    if (atomic_load(&p->done) != ntasks) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->sleeping_caller, 1);
        while (atomic_load(&p->done) != ntasks)
            pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->sleeping_caller, 0);
        pthread_mutex_unlock(&p->mu);
    }
    if (p->trace) {
        long long t2 = now_ns();
        p->runs++, p->run_ns += t2 - t0, p->wait_ns += t2 - t1;
    }
}
