/*
 * compute_cpu_pool.c — the CPU backend's small persistent thread pool.
 *
 * Why persistent and spinning: a transformer forward pass is dozens of short
 * parallel loops (a decode step of a small model is microseconds per op), so
 * starting threads per op or sleeping on a condition variable between ops
 * would cost more than the work. Workers spin for a short while on a
 * generation counter after each run and only then sleep on a condition
 * variable; the caller takes tasks too and never sleeps while a worker
 * still runs a task (it spins, then waits on `done`).
 *
 * Invariants
 *   - One run at a time, started by the owning thread (bg__pool_run is not
 *     reentrant and not called concurrently).
 *   - fn/ctx/ntasks are written before gen is bumped (seq_cst atomics), and a
 *     worker reads them only after it saw the new gen.
 *   - `active` counts workers still inside the current run; the run returns
 *     only when it is 0, so ctx outlives every task.
 * Ownership: the pool owns its threads; destroy joins them.
 */
#include "compute/compute_cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERS 20000

struct bg__pool {
    int nthreads; /* including the caller */
    pthread_t *tids;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t start_cv;
    pthread_cond_t done_cv;
    atomic_uint gen;
    atomic_int stop;
    atomic_int next;
    atomic_int active;
    bg__pool_fn fn;
    void *ctx;
    int ntasks;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(bg__pool *p)
{
    bg__pool_fn fn = p->fn;
    void *ctx = p->ctx;
    int n = p->ntasks;
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= n)
            break;
        fn(ctx, t);
    }
}

static void *worker(void *arg)
{
    bg__pool *p = arg;
    unsigned seen = 0; /* gen at creation: a run may bump gen before this thread starts */
    for (;;) {
        unsigned g = seen;
        for (int i = 0; i < SPIN_ITERS && g == seen && !atomic_load(&p->stop); i++) {
            cpu_relax();
            g = atomic_load(&p->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        run_tasks(p);
        if (atomic_fetch_sub(&p->active, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
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
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->active, 0);
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
    free(p->tids);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int bg__pool_threads(const bg__pool *p)
{
    return p->nthreads;
}

void bg__pool_run(bg__pool *p, bg__pool_fn fn, void *ctx, int ntasks)
{
    if (ntasks <= 0)
        return;
    int workers = p->started;
    if (ntasks == 1 || workers == 0) {
        for (int t = 0; t < ntasks; t++)
            fn(ctx, t);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->active, workers);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p);
    for (int i = 0; i < SPIN_ITERS && atomic_load(&p->active) != 0; i++)
        cpu_relax();
    if (atomic_load(&p->active) != 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) != 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
