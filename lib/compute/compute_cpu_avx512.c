/*
 * compute_cpu_avx512.c — the CPU backend's AVX-512F kernels: the packed-GEMM
 * register tile and the matvec rows. compute_cpu_gemm.c packs, blocks,
 * threads and chooses the kernel; this file only computes.
 *
 * Why a file of its own: every function here carries
 * __attribute__((target("avx512f,..."))), so the build never assumes the
 * build machine's ISA (no -march flags) and nothing in here runs unless
 * compute_cpu_gemm.c found AVX-512F in cpuid AND the zmm state enabled by
 * the OS in XCR0.
 *
 * Tile: 12 rows x 32 columns = 24 zmm accumulators, two zmm loads of the B
 * panel and 12 broadcasts of the A panel per k (BG__AVX512_MR/NR in
 * compute_cpu.h; the packed layouts are [kc][MR] and [kc][NR], 64-byte
 * aligned B panels).
 * Invariants: the sum over k runs in k order per output element, so a tile
 * depends only on its panels, never on the thread that ran it.
 * Threads: pure functions of their arguments; any thread.
 */
#include "compute/compute_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define MR BG__AVX512_MR
#define NR BG__AVX512_NR

#define BG_T512 __attribute__((target("avx512f,avx2,fma")))

BG_T512 void bg__cpu_kern_avx512(const float *a, const float *b, int kc, float *out, long ldc,
                                 int first)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldc;
        if (!first) {
            c0[r] = _mm512_add_ps(_mm512_loadu_ps(o), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_loadu_ps(o + 16), c1[r]);
        }
        _mm512_storeu_ps(o, c0[r]);
        _mm512_storeu_ps(o + 16, c1[r]);
    }
}

/* Dot product, four zmm accumulators (the FMA latency hidden), the tail
 * through a masked load so no scalar loop runs. */
BG_T512 static inline float dot512(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* One weight row after the other: a single sequential stream (see
 * compute_cpu_gemm.c's matvec). */
BG_T512 void bg__cpu_matvec_rows_avx512(float *out, const float *x, const float *w, int n0, int n1,
                                        int K)
{
    for (int n = n0; n < n1; n++)
        out[n] = dot512(w + (long)n * K, x, K);
}
#endif
