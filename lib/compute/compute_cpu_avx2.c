/*
 * compute_cpu_avx2.c — the CPU backend's AVX2+FMA GEMM kernels: the packed-
 * GEMM register tile (A packed, or read in place) and the SIMD packer.
 * compute_cpu_gemm.c blocks, threads and chooses the kernel; this file only
 * computes and packs. It is the fallback for any x86-64 CPU without
 * AVX-512F (Haswell and later, Zen 1-3), and runs on AVX-512 machines when
 * BG_CPU_KERNEL=avx2 forces it.
 *
 * Why a file of its own: every function here carries
 * __attribute__((target("avx2,fma"))), so the build never assumes the build
 * machine's ISA, and nothing here runs unless compute_cpu_gemm.c found AVX2,
 * FMA and the OS's ymm state (XCR0).
 *
 * Tile: 6 rows x 16 columns = 12 ymm accumulators, two ymm loads of the B
 * panel and 6 broadcasts of A per k: 15 of the 16 ymm registers, no spills
 * (BG__AVX2_MR/NR in compute_cpu.h; packed layouts [kc][MR] and [kc][NR],
 * B panels 64-byte aligned). 4x24 (12 accumulators, 3 B loads and 4
 * broadcasts) does the same 12 FMAs per k with one load fewer but reads 28
 * floats per k against 22; both fit the two loads per cycle that the 6
 * cycles of FMAs leave room for. OpenBLAS's Haswell sgemm kernel runs the
 * same 12-FMA, 2-load, 6-broadcast step.
 * The A-in-place variant broadcasts straight from 6 rows of a row-major
 * operand (two base registers plus 0, 1 or 2 row strides), so the forward's
 * x and dx's dy are never packed.
 * The packers: an 8x8 register transpose for operands contiguous in k (the
 * forward's w), copies k by k with a software prefetch for the backward's
 * transposed operands (rows adjacent at each k, each k a new row of the
 * source, often a new page); bg__cpu_pack_avx2 packs only full panels (the
 * caller packs a partial last one with the portable code);
 * bg__cpu_copyk_avx2, the copies of the GEMM's one-pass packer for the
 * transposed operands, full and partial panels (a 6-wide panel row is
 * copied as 8 floats where 8 lie in the span, the 2 extra overwritten by
 * the next k; 1% on the AVX2 dW GEMMs, docs/PERFORMANCE.md).
 * Invariants: the sum over k runs in k order per output element (one FMA
 * chain per accumulator lane), so a tile depends only on its panels, never
 * on the thread that ran it or on whether A was packed.
 * Threads: pure functions of their arguments; any thread.
 */
#include "compute/compute_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define MR BG__AVX2_MR
#define NR BG__AVX2_NR

#define BG_T256 __attribute__((target("avx2,fma")))

#define PF_AHEAD 16 /* rows ahead that the k-by-k packer prefetches */
#define PF_C 48     /* k steps before the end of the tile that C is prefetched */

/* The accumulators into out (row stride ldc): stored, or added to what is
 * there unless `first`. No streaming stores: measured on a Zen 3, the
 * classifier's 131 MB output was 2.8 % faster with plain stores (the GEMM's
 * kern_desc.nt_stores is 0 for this kernel; PERFORMANCE.md, "On an
 * AVX2-only machine"). */
BG_T256 static inline void store_tile(__m256 *c0, __m256 *c1, float *out, long ldc, int first)
{
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldc;
        if (!first) {
            c0[r] = _mm256_add_ps(_mm256_loadu_ps(o), c0[r]);
            c1[r] = _mm256_add_ps(_mm256_loadu_ps(o + 8), c1[r]);
        }
        _mm256_storeu_ps(o, c0[r]);
        _mm256_storeu_ps(o + 8, c1[r]);
    }
}

/* The tile's rows of out into L1 for the sum at the end of the k loop
 * (with several K blocks they come back from L2 or L3; profiled, their
 * loads were 8% of dW's tile time). Issued PF_C steps (about 6 cycles each)
 * before the end: at the start they would be evicted again by the B panel
 * (up to 32 KiB) streaming through L1. */
BG_T256 static inline void prefetch_tile(const float *out, long ldc, int first)
{
    if (first)
        return;
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(out + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(out + r * ldc + NR - 1), _MM_HINT_T0);
    }
}

BG_T256 void bg__cpu_kern_avx2(const float *a, const float *b, int kc, float *out, long ldc,
                               int first)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm256_setzero_ps();
    /* two loops: the C tile is prefetched PF_C steps before the end */
    int k = 0;
    for (int part = 0; part < 2; part++) {
        int kend = part == 0 ? (kc > PF_C ? kc - PF_C : 0) : kc;
        if (part == 1)
            prefetch_tile(out, ldc, first);
        for (; k < kend; k++) {
            __m256 b0 = _mm256_load_ps(b);
            __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss(a + r);
                c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
            }
            a += MR;
            b += NR;
        }
    }
    store_tile(c0, c1, out, ldc, first);
}

/* The same tile with A read in place: a(r, k) = a[r*lda + k]. Rows 0-2 from
 * one base, 3-5 from another, each plus 0, 1 or 2 row strides, so every
 * broadcast is one load with a base + index*scale address. */
BG_T256 void bg__cpu_kern_avx2_rows(const float *a, long lda, const float *b, int kc, float *out,
                                    long ldc, int first)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm256_setzero_ps();
    const char *p0 = (const char *)a, *p3 = (const char *)(a + 3 * lda);
    long L = lda * (long)sizeof(float);
    int k = 0;
    for (int part = 0; part < 2; part++) {
        int kend = part == 0 ? (kc > PF_C ? kc - PF_C : 0) : kc;
        if (part == 1)
            prefetch_tile(out, ldc, first);
        for (; k < kend; k++) {
            __m256 b0 = _mm256_load_ps(b);
            __m256 b1 = _mm256_load_ps(b + 8);
            const char *base[2] = {p0, p3};
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                __m256 av = _mm256_broadcast_ss((const float *)(base[r / 3] + (r % 3) * L));
                c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
            }
            p0 += 4, p3 += 4;
            b += NR;
        }
    }
    store_tile(c0, c1, out, ldc, first);
}

/* 8x8 transpose in registers: r[i][c] -> r[c][i] (unpack within 128-bit
 * lanes, a shuffle, then a swap of 128-bit halves). */
BG_T256 static inline void tr8(__m256 r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* s[4q + j], 128-bit lane L: column 4L + j of rows 4q .. 4q+3 */
    for (int q = 0; q < 2; q++) {
        s[4 * q] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        s[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        s[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        s[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
    }
}

/* One full panel, rows contiguous in k (cs == 1), width a multiple of 8:
 * 8 rows x 8 k at a time through the transpose; a k tail of under 8 is
 * copied element by element. */
BG_T256 static void pack_rows_tr(float *pd, const float *src, long rs, int f, int k0, int kcb,
                                 int width)
{
    int k8 = kcb & ~7;
    for (int g = 0; g < width; g += 8) {
        const float *s = src + (long)(f + g) * rs + k0;
        for (int kk = 0; kk < k8; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(s + i * rs + kk);
            tr8(r);
            for (int c = 0; c < 8; c++)
                _mm256_storeu_ps(pd + (long)(kk + c) * width + g, r[c]);
        }
        for (int k = k8; k < kcb; k++)
            for (int i = 0; i < 8; i++)
                pd[(long)k * width + g + i] = s[i * rs + k];
    }
}

/* `width` (6 or a multiple of 8) adjacent floats from s to d */
BG_T256 static inline void copy_row(float *d, const float *s, int width)
{
    if (width == 6) {
        /* 4 + 2 floats; the 64-bit moves take unaligned addresses */
        _mm_storeu_ps(d, _mm_loadu_ps(s));
        _mm_storel_epi64((__m128i_u *)(void *)(d + 4),
                         _mm_loadl_epi64((const __m128i_u *)(const void *)(s + 4)));
        return;
    }
    for (int g = 0; g < width; g += 8)
        _mm256_storeu_ps(d + g, _mm256_loadu_ps(s + g));
}

BG_T256 void bg__cpu_copyk_avx2(float *dst, long pstride, const float *src, long cs, int kn,
                                int width, int npanels, int span)
{
    for (int p = 0; p < npanels; p++) {
        int valid = span - p * width;
        const float *s = src + p * width;
        float *d = dst + p * pstride;
        if (width == 6 && valid >= 8) {
            /* 8 floats per row: the 2 past the row land in the next row's
             * place, which the next k overwrites; the last k of the call
             * stores 6 (4 + 2). The 2 read past are inside the span. */
            int k = 0;
            for (; k + 1 < kn; k++)
                _mm256_storeu_ps(d + k * 6, _mm256_loadu_ps(s + k * cs));
            copy_row(d + k * 6, s + k * cs, 6);
            continue;
        }
        if (valid >= width) {
            for (int k = 0; k < kn; k++)
                copy_row(d + k * width, s + k * cs, width);
            continue;
        }
        for (int k = 0; k < kn; k++)
            for (int r = 0; r < width; r++)
                d[k * width + r] = r < valid ? s[k * cs + r] : 0.0f;
    }
}

BG_T256 int bg__cpu_pack_avx2(float *dst, const float *src, long rs, long cs, int first, int end,
                              int k0, int kcb, int width, int npanels)
{
    int full = (end - first) / width;
    if (full > npanels)
        full = npanels;
    if (full <= 0 || (width != 6 && width % 8 != 0))
        return 0;
    long pstride = (long)width * kcb;
    if (rs == 1) {
        /* the rows are adjacent at every k: k by k, every full panel of the
         * group per k (one pass over the source's lines and pages) */
        int span = full * width;
        for (int k = 0; k < kcb; k++) {
            const float *s = src + (long)(k0 + k) * cs + first;
            /* each k is a new row of src, often a new page, which the
             * hardware prefetchers do not follow: fetch PF_AHEAD rows ahead */
            if (k + PF_AHEAD < kcb)
                for (int b = 0; b < span; b += 16)
                    _mm_prefetch((const char *)(s + PF_AHEAD * cs + b), _MM_HINT_T0);
            for (int p = 0; p < full; p++)
                copy_row(dst + p * pstride + (long)k * width, s + p * width, width);
        }
        return full;
    }
    if (cs != 1 || width % 8 != 0)
        return 0;
    for (int p = 0; p < full; p++)
        pack_rows_tr(dst + p * pstride, src, rs, first + p * width, k0, kcb, width);
    return full;
}
#endif
