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
 * panel and 12 broadcasts of A per k (BG__AVX512_MR/NR in compute_cpu.h;
 * the packed layouts are [kc][MR] and [kc][NR], 64-byte aligned B panels).
 * Two variants: A from a packed panel, or A read in place from 12 rows of a
 * row-major operand (no packing; Zen 4 runs the tile at its FMA peak
 * either way, so what the GEMM gains is the packing it no longer does).
 * The packers fill both kinds of panel with SIMD loads and stores:
 * bg__cpu_pack_avx512 (a 16x16 transpose, or k by k), and
 * bg__cpu_copyk_avx512, the copies of the GEMM's one-pass packer for
 * operands whose rows are adjacent at each k.
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

#define PF_AHEAD 16 /* rows ahead that the packer prefetches */

static inline __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* The tile's accumulators into out (row stride ldc): stored, or added to
 * what is there unless `first`; first == 2: stored with non-temporal
 * (streaming) stores, out and ldc 64-byte aligned (the caller fences). */
BG_T512 static inline void store_tile(__m512 *c0, __m512 *c1, float *out, long ldc, int first)
{
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldc;
        if (first == 2) {
            _mm512_stream_ps(o, c0[r]);
            _mm512_stream_ps(o + 16, c1[r]);
            continue;
        }
        if (!first) {
            c0[r] = _mm512_add_ps(_mm512_loadu_ps(o), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_loadu_ps(o + 16), c1[r]);
        }
        _mm512_storeu_ps(o, c0[r]);
        _mm512_storeu_ps(o + 16, c1[r]);
    }
}

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
    store_tile(c0, c1, out, ldc, first);
}

/* The same tile with A read in place: a(r, k) = a[r*lda + k] (a row-major
 * operand, so no A panel is packed). The 12 rows are addressed from four
 * bases (rows 0, 3, 6, 9) plus 0, 1 or 2 times the row stride, so every
 * broadcast is one load with a base + index*scale address. */
BG_T512 void bg__cpu_kern_avx512_rows(const float *a, long lda, const float *b, int kc, float *out,
                                      long ldc, int first)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm512_setzero_ps();
    const char *p0 = (const char *)a, *p3 = (const char *)(a + 3 * lda);
    const char *p6 = (const char *)(a + 6 * lda), *p9 = (const char *)(a + 9 * lda);
    long L = lda * (long)sizeof(float);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = _mm512_load_ps(b + 16);
        const char *base[4] = {p0, p3, p6, p9};
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(*(const float *)(base[r / 3] + (r % 3) * L));
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
        p0 += 4, p3 += 4, p6 += 4, p9 += 4;
        b += NR;
    }
    store_tile(c0, c1, out, ldc, first);
}

#define BG_TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))

BG_TBF16 void bg__cpu_kern_avx512_bf16(const float *a, const float *b, int kc, float *out, long ldc,
                                       int first)
{
    const uint32_t *ap = (const uint32_t *)(const void *)a;
    const uint32_t *bp = (const uint32_t *)(const void *)b;
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        c0[r] = c1[r] = _mm512_setzero_ps();
    for (int kp = 0; kp < (kc + 1) / 2; kp++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp);
        __m512bh b1 = (__m512bh)_mm512_load_si512(bp + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[r]);
            c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
            c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
        }
        ap += MR;
        bp += NR;
    }
    store_tile(c0, c1, out, ldc, first);
}

/* 16 floats to 16 bf16 (round to nearest even), zero-extended to 32 bits */
BG_TBF16 static inline __m512i bf16_lo(__m512 v)
{
    return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v));
}

BG_TBF16 void bg__cpu_panel_bf16(float *panel, int width, int kcb)
{
    uint32_t *out = (uint32_t *)(void *)panel;
    for (int k = 0; k < kcb; k += 2) {
        /* rows k and k+1 are read before word row k/2 (at or below row k)
         * is written */
        const float *r0 = panel + (long)k * width, *r1 = r0 + width;
        for (int g = 0; g < width; g += 16) {
            __mmask16 m = lanes(width - g);
            __m512 v0 = _mm512_maskz_loadu_ps(m, r0 + g);
            __m512 v1 = k + 1 < kcb ? _mm512_maskz_loadu_ps(m, r1 + g) : _mm512_setzero_ps();
            __m512i w = _mm512_or_si512(bf16_lo(v0), _mm512_slli_epi32(bf16_lo(v1), 16));
            _mm512_mask_storeu_epi32(out + (long)(k / 2) * width + g, m, w);
        }
    }
}

/* 16x16 transpose in registers: r[i][c] -> r[c][i] (unpack within 128-bit
 * lanes, then two rounds of 128-bit lane shuffles). */
BG_T512 static inline void tr16(__m512 r[16])
{
    __m512 t[16], s[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* s[4q + j], 128-bit lane L: column 4L + j of rows 4q .. 4q+3 */
    for (int q = 0; q < 4; q++) {
        s[4 * q] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        s[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        s[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        s[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        __m512 u0 = _mm512_shuffle_f32x4(s[j], s[4 + j], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(s[j], s[4 + j], 0xDD);
        __m512 u2 = _mm512_shuffle_f32x4(s[8 + j], s[12 + j], 0x88);
        __m512 u3 = _mm512_shuffle_f32x4(s[8 + j], s[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}

BG_T512 int bg__cpu_pack_avx512(float *dst, const float *src, long rs, long cs, int first, int end,
                                int k0, int kcb, int width, int npanels)
{
    if (rs == 1) {
        /* the rows are adjacent at every k: masked copies, k by k, every
         * panel of the group per k (one pass over src's lines and pages) */
        long pstride = (long)width * kcb;
        int span = npanels * width < end - first ? npanels * width : end - first;
        for (int k = 0; k < kcb; k++) {
            const float *s = src + (long)(k0 + k) * cs;
            /* each k is a new row of src, often a new page, which the
             * hardware prefetchers do not follow: fetch PF_AHEAD rows ahead */
            if (k + PF_AHEAD < kcb)
                for (int b = 0; b < span; b += 16)
                    _mm_prefetch((const char *)(s + PF_AHEAD * cs + first + b), _MM_HINT_T0);
            for (int p = 0; p < npanels; p++) {
                int f = first + p * width;
                int valid = end - f < width ? end - f : width;
                float *d = dst + p * pstride + (long)k * width;
                for (int g = 0; g < width; g += 16)
                    _mm512_mask_storeu_ps(d + g, lanes(width - g),
                                          _mm512_maskz_loadu_ps(lanes(valid - g), s + f + g));
            }
        }
        return npanels;
    }
    if (cs != 1)
        return 0;
    /* rows contiguous in k: 16 rows x 16 k at a time through a transpose */
    for (int p = 0; p < npanels; p++) {
        float *pd = dst + (long)p * width * kcb;
        int f = first + p * width;
        int valid = end - f < width ? end - f : width;
        for (int g = 0; g < width; g += 16) {
            int rows = valid - g, wl = width - g < 16 ? width - g : 16;
            __mmask16 store = lanes(wl);
            for (int kk = 0; kk < kcb; kk += 16) {
                int kn = kcb - kk < 16 ? kcb - kk : 16;
                __mmask16 load = lanes(kn);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows
                               ? _mm512_maskz_loadu_ps(load, src + (long)(f + g + i) * rs + k0 + kk)
                               : _mm512_setzero_ps();
                tr16(r);
                for (int c = 0; c < kn; c++)
                    _mm512_mask_storeu_ps(pd + (long)(kk + c) * width + g, store, r[c]);
            }
        }
    }
    return npanels;
}

BG_T512 void bg__cpu_copyk_avx512(float *dst, long pstride, const float *src, long cs, int kn,
                                  int width, int npanels, int span)
{
    for (int p = 0; p < npanels; p++) {
        int valid = span - p * width;
        const float *s = src + p * width;
        float *d = dst + p * pstride;
        if (width == MR && valid >= MR) {
            /* an A panel with every row present: 12 floats a row */
            for (int k = 0; k < kn; k++)
                _mm512_mask_storeu_ps(d + k * MR, 0x0FFF,
                                      _mm512_maskz_loadu_ps(0x0FFF, s + k * cs));
            continue;
        }
        for (int k = 0; k < kn; k++)
            for (int g = 0; g < width; g += 16)
                _mm512_mask_storeu_ps(d + k * width + g, lanes(width - g),
                                      _mm512_maskz_loadu_ps(lanes(valid - g), s + k * cs + g));
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
