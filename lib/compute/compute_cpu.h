/*
 * compute_cpu.h — internals shared by the CPU backend's files
 * (compute_cpu.c: buffers, vtable, elementwise/row ops; compute_cpu_pool.c:
 * the thread pool; compute_cpu_gemm.c: matmul kernels).
 *
 * Threads: a bg__pool is driven by one caller thread at a time (the thread
 * that owns the bg_compute); bg__pool_run returns after every task ran, so
 * the caller's stack data passed as ctx stays valid for the whole run.
 */
#ifndef BG_COMPUTE_CPU_H
#define BG_COMPUTE_CPU_H

#include "common/bg_err.h"

typedef struct bg__pool bg__pool;
/* One task of a parallel loop: task in [0, ntasks). */
typedef void (*bg__pool_fn)(void *ctx, int task);

/* nthreads >= 1 counts the caller: nthreads - 1 workers are started.
 * new: destroy with bg__pool_destroy. */
int bg__pool_create(int nthreads, bg__pool **out, bg_err *err);
void bg__pool_destroy(bg__pool *p);
int bg__pool_threads(const bg__pool *p);
/* Runs fn(ctx, 0..ntasks-1) spread over the workers and the caller; waits. */
void bg__pool_run(bg__pool *p, bg__pool_fn fn, void *ctx, int ntasks);

/* out[M,N] = x[M,K] · w[N,K]^T on host arrays, using the pool. Chooses the
 * matvec kernel for M == 1 and a packed, blocked kernel otherwise;
 * AVX2+FMA when the CPU has it (checked once), portable C otherwise. */
void bg__cpu_matmul(bg__pool *p, float *out, const float *x, const float *w, int M, int N, int K);
/* Vector helpers with the same run-time SIMD choice. Any thread.
 *   dot: sum a[i]*b[i];  softmax: in place over v[0..n)
 *   attend: one query head over npos cache rows (row p of K at kc + p*stride,
 *   of V at vc + p*stride): out[hs] = sum_p softmax(scale * q.k_p)_p v_p;
 *   sc is caller scratch of npos floats. */
float bg__cpu_dot(const float *a, const float *b, int n);
void bg__cpu_softmax(float *v, int n);
void bg__cpu_attend(float *out, const float *q, const float *kc, const float *vc, long stride,
                    int npos, int hs, float scale, float *sc);
/* 1 when the AVX2+FMA kernels are in use (set BG_CPU_NO_SIMD=1 to force the
 * portable kernels, e.g. to test them). */
int bg__cpu_has_avx2(void);

#endif
