/*
 * compute_cpu_gemm.c — the CPU backend's matmul: out[M,N] = x[M,K] · w[N,K]^T.
 *
 * Two kernels, because the two uses differ in what bounds them:
 *   - M == 1 (decode: one token times a weight matrix) is memory-bound: each
 *     weight is used once. matvec streams the weight rows exactly once, one
 *     row after the other (a single sequential stream per thread), split
 *     over the pool in contiguous row ranges.
 *   - M > 2 (prefill, benchmarks) is compute-bound: a BLIS-style packed GEMM.
 *     Loops: K blocks (outermost), chunks of M rows, N blocks. The left
 *     operand is packed into MR-row panels ([kc][MR]) per (chunk, K block),
 *     the right one into NR-column panels ([kc][NR]) per (N block, K block);
 *     a register tile runs over kc: 6x16 (12 ymm accumulators,
 *     compute_cpu_avx2.c) for AVX2 and the portable C, 12x32 (24 zmm
 *     accumulators, compute_cpu_avx512.c) for AVX-512. With either SIMD
 *     kernel a row-major left operand (the forward's x, dx's dy) is not
 *     packed at all: the tile broadcasts straight from its rows (only a
 *     last, partial panel is packed), and the packing is SIMD (a 16x16 or
 *     8x8 register transpose for operands contiguous in k). The backward's
 *     transposed operands (rows adjacent at each k: dW's dy^T and x^T,
 *     dx's w) go through the one-pass packer (packk): every panel
 *     of the block from one pass over the source rows, the K block's rows
 *     split into equal ranges, one task per thread, so two threads pack
 *     equal shares.
 *     Packing and compute are pool runs of independent tasks: one packing
 *     run per (chunk, N block) packs A's chunk (first N block only) and the
 *     B block together; compute tasks are (M block, N panel) pairs. With
 *     one N block (N <= nc: every dW of the training shapes) B is packed
 *     once per K block and kept across all chunks of A's rows; then, where
 *     A is a transposed operand too (dW's dy^T), A is not packed in chunks
 *     at all: each compute task packs its own block of A's rows into a slot
 *     of the A scratch (one slot per thread) and multiplies it with every
 *     B panel while it is in L2 (fused_task), as OpenBLAS packs its B
 *     panels just before use; blocks of MC rows, smaller with several
 *     threads where M is small: with the AVX2 kernel guided (each block
 *     1/(2 nt) of the rows left, 12..96 rows, so a run ends in small blocks
 *     and its last task is short), with the others at least four blocks per
 *     thread. An output of at least NT_OUT_FLOATS written once (one K
 *     block, no accumulation: the classifier's logits) is stored with
 *     streaming stores by the AVX-512 kernel, which skip the read for
 *     ownership of lines that will not stay in cache anyway (not by the
 *     AVX2 one: slower on a Zen 3).
 *     The first K block stores, later ones accumulate, so no zeroing
 *     pass is needed; each output tile is one task's per K block, summed
 *     over K blocks in order, so the result is bit-identical for any thread
 *     count (per kernel). Packed panels live in the pool's scratch
 *     (bg__pool_scratch), kept between calls up to SCRATCH_KEEP, and A is
 *     packed in chunks of at most A_CHUNK_FLOATS, so the scratch is bounded
 *     for any M.
 * Edge tiles (M or N not multiples of the tile) go through a small tile on
 * the stack; packed panels are zero-padded so the kernel never branches.
 * M == 2 runs as two matvecs (packing would cost more than it saves).
 *
 * The vector helpers the other ops share (dot, softmax, axpy) live here
 * too, beside the dot kernel matvec is built from (attention is
 * compute_cpu_attend.c's).
 *
 * The kernel is chosen once at run time (bg__cpu_kernel: cpuid for the
 * instructions, xgetbv for the OS's register state; BG_CPU_KERNEL forces
 * one); nothing assumes the build machine's ISA. The portable kernels are
 * plain C with the AVX2 blocking.
 * Threads: called by the thread that drives the pool (which owns the
 * scratch); tasks write disjoint parts of the scratch and of the output.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "compute/compute_cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define BG_X86 1
#endif

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define MR 6 /* AVX2 / portable tile */
#define NR 16
#define KC 256
#define MR_MAX 12 /* the largest tile of any kernel (AVX-512) */
#define NR_MAX 32
#define MC 96   /* multiple of every kernel's MR */
#define NC 2048 /* multiple of every kernel's NR */

/* ---- CPU feature choice -------------------------------------------------- */

static atomic_int g_kernel = -1;
static atomic_int g_kernel_bad = 0; /* 1: BG_CPU_KERNEL unknown, 2: unsupported here */

#ifdef BG_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* The best kernel this CPU and its OS support. */
static int detect_kernel(void)
{
#ifdef BG_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return BG__KERN_SCALAR;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma)
        return BG__KERN_SCALAR;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX (ymm) state */
        return BG__KERN_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((b >> 5) & 1)) /* AVX2 */
        return BG__KERN_SCALAR;
    /* AVX-512F, and the OS saves opmask + both halves of the zmm state */
    if (((b >> 16) & 1) && (xcr0 & 0xE6) == 0xE6)
        return BG__KERN_AVX512;
    return BG__KERN_AVX2;
#else
    return BG__KERN_SCALAR;
#endif
}

int bg__cpu_kernel(void)
{
    int v = atomic_load(&g_kernel);
    if (v >= 0)
        return v;
    int best = detect_kernel(), bad = 0;
    v = best;
    const char *env = getenv("BG_CPU_KERNEL");
    if (env && *env && strcmp(env, "auto") != 0) {
        int want = strcmp(env, "scalar") == 0   ? BG__KERN_SCALAR
                   : strcmp(env, "avx2") == 0   ? BG__KERN_AVX2
                   : strcmp(env, "avx512") == 0 ? BG__KERN_AVX512
                                                : -1;
        if (want < 0)
            bad = 1;
        else if (want > best)
            bad = 2;
        else
            v = want;
    }
    if (getenv("BG_CPU_NO_SIMD"))
        v = BG__KERN_SCALAR;
    atomic_store(&g_kernel_bad, bad);
    atomic_store(&g_kernel, v);
    return v;
}

const char *bg__cpu_kernel_name(int kernel)
{
    return kernel == BG__KERN_AVX512 ? "avx512f" : kernel == BG__KERN_AVX2 ? "avx2+fma" : "scalar";
}

int bg__cpu_kernel_check(bg_err *err)
{
    int best = bg__cpu_kernel();
    int bad = atomic_load(&g_kernel_bad);
    const char *env = getenv("BG_CPU_KERNEL");
    if (bad == 1)
        return bg_err_set(err, BG_EINVAL,
                          "BG_CPU_KERNEL=%s: unknown CPU kernel; set scalar, avx2, avx512 or auto",
                          env ? env : "");
    if (bad == 2)
        return bg_err_set(err, BG_EINVAL,
                          "BG_CPU_KERNEL=%s: not supported on this machine (the CPU lacks it or "
                          "the OS has not enabled its register state); the best here is %s: "
                          "set that, auto, or unset BG_CPU_KERNEL",
                          env ? env : "", bg__cpu_kernel_name(detect_kernel()));
    (void)best;
    return BG_OK;
}

int bg__cpu_has_avx2(void)
{
    return bg__cpu_kernel() >= BG__KERN_AVX2;
}

int bg__cpu_has_bf16(void)
{
    if (bg__cpu_kernel() != BG__KERN_AVX512)
        return 0;
#ifdef BG_X86
    unsigned a, b, c, d;
    /* leaf 7 sub-leaf 1, EAX bit 5: AVX512_BF16 (the zmm state was checked
     * with AVX-512F) */
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1);
#else
    return 0;
#endif
}

/* ---- matvec -------------------------------------------------------------- */

static float dot_c(const float *a, const float *b, int n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void matvec_rows_c(float *out, const float *x, const float *w, int n0, int n1, int K)
{
    for (int n = n0; n < n1; n++)
        out[n] = dot_c(x, w + (long)n * K, K);
}

#ifdef BG_X86
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Dot product with four accumulators (latency of the FMA chains hidden). */
__attribute__((target("avx2,fma"))) static inline float dot_avx2(const float *a, const float *b,
                                                                 int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* One row at a time: a single sequential stream through w, which the
 * hardware prefetcher follows best (measured on the 15M classifier:
 * interleaving four rows reached about 60% of the single-stream rate). */
__attribute__((target("avx2,fma"))) static void
matvec_rows_avx2(float *out, const float *x, const float *w, int n0, int n1, int K)
{
    for (int n = n0; n < n1; n++)
        out[n] = dot_avx2(w + (long)n * K, x, K);
}

__attribute__((target("avx2,fma"))) static inline void axpy_avx2(float *y, float a, const float *x,
                                                                 int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}
#endif

static void axpy_c(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

float bg__cpu_softmax_lse(float *v, int n)
{
    float mx = v[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    for (int i = 0; i < n; i++)
        sum += (v[i] = expf(v[i] - mx));
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++)
        v[i] *= inv;
    return mx + logf(sum);
}

void bg__cpu_softmax(float *v, int n)
{
    (void)bg__cpu_softmax_lse(v, n);
}

void bg__cpu_axpy(float *y, float a, const float *x, int n)
{
#ifdef BG_X86
    if (bg__cpu_has_avx2()) {
        axpy_avx2(y, a, x, n);
        return;
    }
#endif
    axpy_c(y, a, x, n);
}

float bg__cpu_dot(const float *a, const float *b, int n)
{
#ifdef BG_X86
    if (bg__cpu_has_avx2())
        return dot_avx2(a, b, n);
#endif
    return dot_c(a, b, n);
}

typedef struct mv_ctx {
    float *out;
    const float *x, *w;
    int N, K, rows_per_task, kernel;
} mv_ctx;

static void mv_task(void *vctx, int t)
{
    mv_ctx *c = vctx;
    int n0 = t * c->rows_per_task;
    int n1 = n0 + c->rows_per_task < c->N ? n0 + c->rows_per_task : c->N;
#ifdef BG_X86
    if (c->kernel == BG__KERN_AVX512) {
        bg__cpu_matvec_rows_avx512(c->out, c->x, c->w, n0, n1, c->K);
        return;
    }
    if (c->kernel == BG__KERN_AVX2) {
        matvec_rows_avx2(c->out, c->x, c->w, n0, n1, c->K);
        return;
    }
#endif
    matvec_rows_c(c->out, c->x, c->w, n0, n1, c->K);
}

static void matvec(bg__pool *p, float *out, const float *x, const float *w, int N, int K)
{
    mv_ctx c = {out, x, w, N, K, N, bg__cpu_kernel()};
    int nt = bg__pool_threads(p);
    long work = (long)N * K;
    int tasks = 1;
    if (nt > 1 && work >= 65536) {
        tasks = nt * 4;
        if (tasks > (N + 3) / 4)
            tasks = (N + 3) / 4;
    }
    c.rows_per_task = ((N + tasks - 1) / tasks + 3) & ~3;
    tasks = (N + c.rows_per_task - 1) / c.rows_per_task;
    bg__pool_run(p, mv_task, &c, tasks);
}

/* ---- packed GEMM --------------------------------------------------------- */

/* One panel of `width` operand rows, [kcb][width]: element (row, k) of the
 * operand is src[row*rs + k*cs] (cs == 1: row-major; rs == 1: the
 * transposed operands of the backward), rows first .. first+width-1, zero
 * from row `end` on. The portable packer; the AVX-512 one is
 * bg__cpu_pack_avx512. */
static void pack_panel_c(float *dst, const float *src, long rs, long cs, int first, int end, int k0,
                         int kcb, int width)
{
    int rows = end - first < width ? end - first : width;
    if (rs == 1 && cs != 1) {
        /* rows adjacent in memory: copy k by k (contiguous reads) instead of
         * striding through memory row by row */
        for (int k = 0; k < kcb; k++) {
            const float *s = src + first + (long)(k0 + k) * cs;
            for (int r = 0; r < width; r++)
                dst[k * width + r] = r < rows ? s[r] : 0.0f;
        }
        return;
    }
    for (int r = 0; r < width; r++) {
        if (r < rows) {
            const float *s = src + (long)(first + r) * rs + (long)k0 * cs;
            for (int k = 0; k < kcb; k++)
                dst[k * width + r] = s[k * cs];
        } else {
            for (int k = 0; k < kcb; k++)
                dst[k * width + r] = 0.0f;
        }
    }
}

/* The portable copies of the one-pass packer (bg__cpu_copyk_avx512's
 * contract). */
static void copyk_c(float *dst, long pstride, const float *src, long cs, int kn, int width,
                    int npanels, int span)
{
    for (int p = 0; p < npanels; p++)
        for (int k = 0; k < kn; k++)
            for (int r = 0; r < width; r++)
                dst[p * pstride + (long)k * width + r] =
                    p * width + r < span ? src[k * cs + p * width + r] : 0.0f;
}

/* The portable MR x NR tile, same contract as the SIMD ones: out (row stride
 * ldc) = (first ? 0 : out) + a-panel . b-panel over kc. */
static void kern_c(const float *a, const float *b, int kc, float *out, long ldc, int first)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++) {
        const float *bk = b + k * NR;
        for (int r = 0; r < MR; r++) {
            float av = a[k * MR + r];
            for (int j = 0; j < NR; j++)
                acc[r][j] += av * bk[j];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++)
            out[r * ldc + j] = first ? acc[r][j] : out[r * ldc + j] + acc[r][j];
}

typedef void (*kern_fn)(const float *a, const float *b, int kc, float *out, long ldc, int first);

/* The tile reading A in place from a row-major operand (a(r, k) = a[r*lda + k]). */
typedef void (*kern_rows_fn)(const float *a, long lda, const float *b, int kc, float *out, long ldc,
                             int first);

/* The SIMD packer of a kernel (bg__cpu_pack_avx512 / _avx2's contract):
 * returns how many of the leading panels it packed; the portable code packs
 * the rest. */
typedef int (*pack_fn)(float *dst, const float *src, long rs, long cs, int first, int end, int k0,
                       int kcb, int width, int npanels);

/* The copies of a kernel's one-pass packer (bg__cpu_copyk_avx512's
 * contract). */
typedef void (*copyk_fn)(float *dst, long pstride, const float *src, long cs, int kn, int width,
                         int npanels, int span);

/* One kernel's tile, K block and N block (nc: a multiple of nr). */
typedef struct kern_desc {
    kern_fn fn;
    kern_rows_fn rows_fn; /* NULL: A is always packed */
    pack_fn simd_pack;    /* NULL: the portable packer only */
    copyk_fn copyk;       /* NULL: operands with rs == 1 packed panel group by group */
    int bf16;             /* panels rewritten as bf16 pairs (bg__cpu_panel_bf16) */
    int mr, nr, kc, nc;
    int nt_stores; /* a large output written once uses streaming stores (rows_fn) */
    int f_guided;  /* fused dW blocks shrink toward the run's end (guided_rows) */
} kern_desc;

/* Floats of packed A kept at once: M is packed in chunks of rows that fit
 * (a multiple of MC), so the scratch stays bounded for any M. 8 MiB: the
 * training shapes' rows (batch x seq up to 2048 at K blocks of 1024) are
 * one chunk. */
#define A_CHUNK_FLOATS (2L << 20)
/* Scratch kept in the pool between calls; larger buffers are freed after
 * the call (the packed A chunk and one B block fit). */
#define SCRATCH_KEEP ((size_t)12 << 20)
/* Outputs of at least this many floats (64 MiB, twice the 32 MiB L3 of the
 * Zen 4 measured) are written with streaming stores when written once. */
#define NT_OUT_FLOATS (16L << 20)

static kern_desc kern_for(int kernel, int bf16)
{
#ifdef BG_X86
    /* bf16 pairs: the fp32 packers, then each panel rewritten as pairs */
    if (bf16 && kernel == BG__KERN_AVX512)
        return (kern_desc){bg__cpu_kern_avx512_bf16,
                           NULL,
                           bg__cpu_pack_avx512,
                           NULL,
                           1,
                           BG__AVX512_MR,
                           BG__AVX512_NR,
                           1024,
                           NC / 4,
                           0,
                           0};
    /* AVX-512: K blocks up to 1024. On a Zen 4 EPYC one K block beat two or
     * three by 7-20% (K = 512, 768, 1024; each extra block reloads the C
     * tiles); 128..384 were within noise of each other (docs/PERFORMANCE.md).
     * N block 512, so the packed B block (nc x kc floats) stays within the
     * 2048 x 256 that the trainer's memory bound (lib/nn) counts. */
    if (kernel == BG__KERN_AVX512)
        return (kern_desc){bg__cpu_kern_avx512,
                           bg__cpu_kern_avx512_rows,
                           bg__cpu_pack_avx512,
                           bg__cpu_copyk_avx512,
                           0,
                           BG__AVX512_MR,
                           BG__AVX512_NR,
                           1024,
                           NC / 4,
                           1,
                           0};
    /* AVX2: K blocks up to 512 (K = 768 as two of 384). Measured on the Zen
     * 4 with the AVX2 kernel forced (docs/PERFORMANCE.md): 512 against 256
     * gained 6-15% on the K = 512, 768 and 32000 shapes (fewer reloads of
     * the C tiles) and was within noise on the rest; the B panel (16 x 512
     * floats, 32 KiB) is reused by the 16 A panels of an M block. N block
     * 1024, so the packed B block stays within 2048 x 256 floats. No
     * streaming stores: on the one AVX2-only CPU measured (an EPYC Zen 3)
     * the classifier forward's logits ran 2.8% slower with them than with
     * plain stores (they gained 3-4% on the Zen 4, where the AVX-512
     * kernel keeps them; docs/PERFORMANCE.md). */
    if (kernel == BG__KERN_AVX2)
        return (kern_desc){bg__cpu_kern_avx2,
                           bg__cpu_kern_avx2_rows,
                           bg__cpu_pack_avx2,
                           bg__cpu_copyk_avx2,
                           0,
                           MR,
                           NR,
                           512,
                           NC / 2,
                           0,
                           1};
#endif
    (void)kernel;
    (void)bf16;
    return (kern_desc){kern_c, NULL, NULL, copyk_c, 0, MR, NR, KC, NC, 0, 0};
}

/* The blocking of one gemm(M, N, K) with kernel kd: the K block (equal
 * blocks: K = 1100 with a limit of 1024 is two of 550, not 1024 + 76), the
 * rows of A packed at once (a multiple of MC, at most A_CHUNK_FLOATS) and the
 * two scratch slots' floats. One function, so that bg__cpu_gemm_scratch
 * reports what gemm() asks the pool for: exactly, or (dW's fused packing,
 * one A block per thread, used only where it fits in a_floats) more. */
typedef struct gemm_dims {
    long kc, m_chunk, a_floats, b_floats;
} gemm_dims;

static gemm_dims gemm_dims_for(const kern_desc *kd, long M, long N, long K)
{
    gemm_dims d;
    long kc = kd->kc;
    if (K > kc) {
        long nb = (K + kc - 1) / kc;
        kc = (K + nb - 1) / nb;
    }
    long chunk = A_CHUNK_FLOATS / kc / MC * MC;
    if (chunk < MC)
        chunk = MC;
    d.kc = kc;
    d.m_chunk = M < chunk ? ((M + kd->mr - 1) / kd->mr) * kd->mr : chunk;
    long nc_max = N < kd->nc ? ((N + kd->nr - 1) / kd->nr) * kd->nr : kd->nc;
    long kc_max = K < kc ? K : kc;
    d.a_floats = d.m_chunk * kc_max;
    d.b_floats = nc_max * kc_max;
    return d;
}

void bg__cpu_gemm_scratch(long M, long N, long K, int bf16, size_t floats[2])
{
    /* (bg__cpu_matmul with M <= 2 runs matvecs and packs nothing; the
     * triple alone cannot tell it from a gradient's gemm, so it counts) */
    kern_desc kd = kern_for(bg__cpu_kernel(), bf16);
    gemm_dims d = gemm_dims_for(&kd, M, N, K);
    if ((size_t)d.a_floats > floats[0])
        floats[0] = (size_t)d.a_floats;
    if ((size_t)d.b_floats > floats[1])
        floats[1] = (size_t)d.b_floats;
}

/* The fused path runs pools of up to F_MAX_THREADS (slot_busy: a bit per
 * slot, one slot per thread); guided blocks only there. The most guided
 * tail blocks (guided_rows) of any M at up to 32 threads: 179 (counted for
 * MR 6 and 12 over every M where a tail exists; 64 threads would need 360). */
#define F_MAX_THREADS 32
#define F_TAIL_MAX 192

typedef struct gemm_ctx {
    float *out;
    const float *x, *w;
    int M, N, K;
    long xrs, xcs, wrs, wcs; /* operand strides (pack_panel_c) */
    kern_desc kd;
    int a_direct; /* full A panels read in place (kd.rows_fn, x row-major) */
    /* operands with rs == 1 and a one-pass packer: packed by ranges of k,
     * in a_kt / b_kt tasks of equal k ranges (0: by panel groups) */
    int a_kt, b_kt;
    int run_a, run_b; /* the current packing run: its A tasks, then its B tasks */
    /* fused A packing (fused_task): A blocks of at most fb rows, each packed
     * by the task that computes it into one of the slots (fb x kcb floats
     * each) of ap; slot_busy: a bit per slot in use. Tasks t < f_bulk: rows
     * [t*fb, t*fb + fb); then (guided_rows) task f_bulk + i: rows
     * [f_tail[i], f_tail[i + 1]), f_tail[f_ntail] == M */
    int fb, f_slots, f_bulk, f_ntail;
    int f_tail[F_TAIL_MAX + 1];
    atomic_uint slot_busy;
    /* current block: K block [k0, k0+kcb), rows [m0, m0+mrows) of the
     * output (A packed in ap), columns [n0, n0+ncb) (B packed in bp) */
    float *ap, *bp;
    int k0, kcb, m0, mrows, n0, ncb, first;
    int m_panels, n_panels, m_blocks;
} gemm_ctx;

/* npanels consecutive panels of `width` rows from row `first` */
static void pack(const kern_desc *kd, float *dst, const float *src, long rs, long cs, int first,
                 int end, int k0, int kcb, int width, int npanels)
{
    int done =
        kd->simd_pack ? kd->simd_pack(dst, src, rs, cs, first, end, k0, kcb, width, npanels) : 0;
#ifdef BG_X86
    for (int p = 0; kd->bf16 && p < done; p++)
        bg__cpu_panel_bf16(dst + (long)p * width * kcb, width, kcb);
#endif
    for (int p = done; p < npanels; p++) {
        float *d = dst + (long)p * width * kcb;
        pack_panel_c(d, src, rs, cs, first + p * width, end, k0, kcb, width);
#ifdef BG_X86
        if (kd->bf16)
            bg__cpu_panel_bf16(d, width, kcb);
#endif
    }
}

/* B panels per packing task: a group reads whole cache lines of an operand
 * whose rows are adjacent (the backward's), one pass per k. */
#define B_GROUP 4

/* Task t: the A panels of MC-row block t of the current M chunk and K block. */
static void pack_a_task(void *vctx, int t)
{
    gemm_ctx *g = vctx;
    int mr = g->kd.mr, per = MC / mr;
    int p0 = t * per, np = g->m_panels - p0 < per ? g->m_panels - p0 : per;
    if (g->a_direct) {
        /* only a last, partial panel is packed (zero rows past M) */
        int last = g->m_panels - 1;
        if (g->mrows % mr == 0 || last < p0 || last >= p0 + np)
            return;
        p0 = last, np = 1;
    }
    pack(&g->kd, g->ap + (long)p0 * mr * g->kcb, g->x, g->xrs, g->xcs, g->m0 + p0 * mr,
         g->m0 + g->mrows, g->k0, g->kcb, mr, np);
}

/* Task t: B panels t*B_GROUP .. of the current N block and K block. */
static void pack_b_task(void *vctx, int t)
{
    gemm_ctx *g = vctx;
    int nr = g->kd.nr, p0 = t * B_GROUP;
    int np = g->n_panels - p0 < B_GROUP ? g->n_panels - p0 : B_GROUP;
    pack(&g->kd, g->bp + (long)p0 * nr * g->kcb, g->w, g->wrs, g->wcs, g->n0 + p0 * nr,
         g->n0 + g->ncb, g->k0, g->kcb, nr, np);
}

/* Piece t of n of [0, kcb): equal ranges, inner boundaries multiples of 16
 * rows (whole cache lines of every panel width, so where a panel starts on
 * a line no line is written by two tasks; each float is one task's either
 * way). */
static int k_cut(int kcb, int t, int n)
{
    return t >= n ? kcb : (int)((long)kcb * t / n) & ~15;
}

/* The one-pass packer's blocking. Panel strides are multiples of 4 KiB
 * (width x kcb floats), so the panels' lines at one k share an L1 set:
 * writing one k of every panel before the next k would evict each line
 * before it is full. So the source rows are taken KS at a time and each
 * panel gets its KS rows (whole lines) before the next; a group of panels
 * spans at most GROUP_SPAN floats, so the KS rows being read (16 KiB) stay
 * in L1. No software prefetch: the pass reads each row's span in order
 * (the whole row for every training shape but the classifier's dy), which
 * the hardware prefetchers follow; prefetching the next KS rows' spans
 * measured 0-4% slower on dW (interleaved, Zen 4, both kernels). */
#define KS 8
#define GROUP_SPAN 512

/* Piece t of nt of the current K block's rows, every panel of an operand
 * whose rows are adjacent at each k: panels of `width` columns from column
 * `first` (zero from `end` on) of src (the K block's first row; row stride
 * cs) into dst (panel stride width x kcb). */
static void packk(const gemm_ctx *g, int t, int nt, float *dst, const float *src, long cs,
                  int first, int end, int width, int npanels)
{
    int ka = k_cut(g->kcb, t, nt), kb = k_cut(g->kcb, t + 1, nt);
    long pstride = (long)width * g->kcb;
    int gp = GROUP_SPAN / width;
    for (int p0 = 0; p0 < npanels; p0 += gp) {
        int np = npanels - p0 < gp ? npanels - p0 : gp;
        int f = first + p0 * width;
        int span = np * width < end - f ? np * width : end - f;
        for (int kk = ka; kk < kb; kk += KS)
            g->kd.copyk(dst + p0 * pstride + (long)kk * width, pstride, src + (long)kk * cs + f, cs,
                        kb - kk < KS ? kb - kk : KS, width, np, span);
    }
}

/* Task t of a packing run: A's tasks (by k range or by MC block), then B's
 * (by k range or by panel group). A k-range task packs every panel of the
 * block for its rows k of the source (packk), so each source row's span is
 * read in one pass instead of once per panel group. */
static void pack_task(void *vctx, int t)
{
    gemm_ctx *g = vctx;
    if (t < g->run_a) {
        if (g->a_kt)
            packk(g, t, g->a_kt, g->ap, g->x + (long)g->k0 * g->xcs, g->xcs, g->m0,
                  g->m0 + g->mrows, g->kd.mr, g->m_panels);
        else
            pack_a_task(g, t);
    } else if (g->b_kt) {
        packk(g, t - g->run_a, g->b_kt, g->bp, g->w + (long)g->k0 * g->wcs, g->wcs, g->n0,
              g->n0 + g->ncb, g->kd.nr, g->n_panels);
    } else {
        pack_b_task(g, t - g->run_a);
    }
}

/* An edge tile's existing part from the full tile computed into ct. */
static void edge_store(const gemm_ctx *g, float *o, const float *ct, int mr, int nr)
{
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            if (g->first)
                o[(long)r * g->N + j] = ct[r * g->kd.nr + j];
            else
                o[(long)r * g->N + j] += ct[r * g->kd.nr + j];
        }
}

static void tile(gemm_ctx *g, const float *a, const float *b, int m, int n)
{
    float *o = g->out + (long)m * g->N + n;
    int mr = g->M - m < g->kd.mr ? g->M - m : g->kd.mr;
    int nr = g->N - n < g->kd.nr ? g->N - n : g->kd.nr;
    float ct[MR_MAX * NR_MAX] __attribute__((aligned(64)));
    if (mr == g->kd.mr && g->a_direct) {
        /* a full panel of a row-major A: read in place */
        const float *ar = g->x + (long)m * g->xrs + g->k0;
        if (nr == g->kd.nr) {
            g->kd.rows_fn(ar, g->xrs, b, g->kcb, o, g->N, g->first);
            return;
        }
        g->kd.rows_fn(ar, g->xrs, b, g->kcb, ct, g->kd.nr, 1);
        edge_store(g, o, ct, mr, nr);
        return;
    }
    if (mr == g->kd.mr && nr == g->kd.nr) {
        g->kd.fn(a, b, g->kcb, o, g->N, g->first);
        return;
    }
    /* edge tile: the full tile into scratch, then the part that exists */
    g->kd.fn(a, b, g->kcb, ct, g->kd.nr, 1);
    edge_store(g, o, ct, mr, nr);
}

/* Task t: one MC-row block of the chunk times one B panel. */
static void compute_task(void *vctx, int t)
{
    gemm_ctx *g = vctx;
    int mb = t / g->n_panels, np = t % g->n_panels;
    int mr = g->kd.mr;
    const float *b = g->bp + (long)np * g->kd.nr * g->kcb;
    int mp0 = mb * (MC / mr);
    int mp1 = mp0 + MC / mr < g->m_panels ? mp0 + MC / mr : g->m_panels;
    for (int mp = mp0; mp < mp1; mp++)
        tile(g, g->ap + (long)mp * mr * g->kcb, b, g->m0 + mp * mr, g->n0 + np * g->kd.nr);
#ifdef BG_X86
    if (g->first == 2)
        _mm_sfence(); /* the streaming stores visible before the task counts as done */
#endif
}

/* Task t of a fused run: A's rows [t*fb, t*fb + fb) of the current K
 * block packed into a free slot (one pass over the source rows, KS at a
 * time as packk does), then multiplied with every panel of the kept B
 * block while they are in L2, instead of a packed chunk of A written to
 * and read back from L3. At most one task per thread runs at once, so a
 * free slot always exists. */
static void fused_task(void *vctx, int t)
{
    gemm_ctx *g = vctx;
    int mr = g->kd.mr, nr = g->kd.nr;
    int m, rows;
    if (t < g->f_bulk) {
        m = t * g->fb;
        rows = g->M - m < g->fb ? g->M - m : g->fb;
    } else {
        m = g->f_tail[t - g->f_bulk];
        rows = g->f_tail[t - g->f_bulk + 1] - m;
    }
    BG_ASSERT(rows > 0 && rows <= g->fb, "gemm: fused block %d has %d rows (slots of %d)", t, rows,
              g->fb);
    int panels = (rows + mr - 1) / mr;
    unsigned busy = atomic_load(&g->slot_busy);
    int slot;
    for (;;) {
        slot = __builtin_ctz(~busy);
        if (atomic_compare_exchange_weak(&g->slot_busy, &busy, busy | (1u << slot)))
            break;
    }
    BG_ASSERT(slot < g->f_slots,
              "gemm: fused task took slot %d of %d (more tasks at once than threads)", slot,
              g->f_slots);
    float *a = g->ap + (long)slot * g->fb * g->kcb;
    long pstride = (long)mr * g->kcb;
    const float *src = g->x + (long)g->k0 * g->xcs + m;
    for (int kk = 0; kk < g->kcb; kk += KS)
        g->kd.copyk(a + (long)kk * mr, pstride, src + (long)kk * g->xcs, g->xcs,
                    g->kcb - kk < KS ? g->kcb - kk : KS, mr, panels, rows);
    for (int np = 0; np < g->n_panels; np++) {
        const float *b = g->bp + (long)np * nr * g->kcb;
        for (int mp = 0; mp < panels; mp++)
            tile(g, a + mp * pstride, b, m + mp * mr, np * nr);
    }
    atomic_fetch_and(&g->slot_busy, ~(1u << slot));
}

/* Guided self-scheduling of the fused dW blocks (kern_desc.f_guided, several
 * threads): with R rows left, a block of R / (2 nt) rows (a multiple of mr,
 * at least two panels, at most MC). The bulk keeps large blocks (B's panels
 * reused by more rows) and a run ends in small ones, so the thread that
 * finishes first waits for at most about one small block of the others'
 * (with equal blocks: up to one whole block). Non-increasing as R falls,
 * so the first block is the largest (the slots' size). Rows are a free
 * partition: every output tile is still one task's per K block. */
static int guided_rows(int R, int nt, int mr)
{
    long c = (R + 2L * nt - 1) / (2L * nt);
    c = (c + mr - 1) / mr * mr;
    return c < 2 * mr ? 2 * mr : c > MC ? MC : (int)c;
}

/* out[m*N + n] (= or +=) sum_k x(m, k) * w(n, k), operands addressed by
 * strides (see pack_panel_c). Loops: K blocks (outermost, so every output
 * tile sums its K blocks in order), M chunks, N blocks; each packing and
 * each compute step is a pool run of independent tasks. */
static void gemm(bg__pool *p, float *out, const float *x, long xrs, long xcs, const float *w,
                 long wrs, long wcs, int M, int N, int K, int accumulate, int bf16)
{
    gemm_ctx g;
    memset(&g, 0, sizeof g);
    g.out = out;
    g.x = x;
    g.w = w;
    g.xrs = xrs;
    g.xcs = xcs;
    g.wrs = wrs;
    g.wcs = wcs;
    g.M = M;
    g.N = N;
    g.K = K;
    g.kd = kern_for(bg__cpu_kernel(), bf16);
    int mr = g.kd.mr, nr = g.kd.nr, nc = g.kd.nc;
    g.a_direct = g.kd.rows_fn != NULL && xcs == 1;
    gemm_dims dims = gemm_dims_for(&g.kd, M, N, K);
    int kc = (int)dims.kc, m_chunk = (int)dims.m_chunk;
    g.kd.kc = kc;
    g.ap = bg__pool_scratch(p, 0, sizeof(float) * (size_t)dims.a_floats);
    g.bp = bg__pool_scratch(p, 1, sizeof(float) * (size_t)dims.b_floats);
    if (!g.ap || !g.bp) {
        /* Out of scratch memory: a plain loop, which needs none. */
        bg__pool_scratch_trim(p, 0);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++)
                    s += x[m * xrs + k * xcs] * w[n * wrs + k * wcs];
                out[(long)m * N + n] = accumulate ? out[(long)m * N + n] + s : s;
            }
        return;
    }
    int nt = bg__pool_threads(p);
    /* One N block: B is packed once per K block and kept across every chunk
     * of A's rows (dW of the classifier: x's block across all of dy's). */
    int b_kept = N <= nc;
    /* An output larger than the last-level cache, written once (one K
     * block, not accumulated): streaming stores, so its lines are not read
     * for ownership first (the classifier's logits: 131 MB at batch 4 x
     * 256). Needs 64-byte aligned rows; the AVX-512 kernel only. */
    int nt_out = g.kd.nt_stores && g.kd.rows_fn && (long)M * N >= NT_OUT_FLOATS && K <= kc &&
                 N % 16 == 0 && ((uintptr_t)out & 63) == 0;
    /* dW (A transposed with a one-pass packer, one N block): A packed
     * block by block inside the compute tasks (fused_task). Blocks of MC
     * rows; with several threads smaller where M is small, so the threads
     * get equal shares: shrinking toward the run's end (guided_rows) where
     * the kernel says so, else at least 4 per thread. Only where the slots
     * fit in the A scratch that gemm_dims_for reports. */
    int fb = MC, guided = nt > 1 && nt <= F_MAX_THREADS && g.kd.f_guided;
    if (guided) {
        fb = guided_rows(M, nt, mr);
    } else if (nt > 1) {
        long want = ((M + 4L * nt - 1) / (4L * nt) + mr - 1) / mr * mr;
        fb = want < MC ? (int)want : MC;
    }
    if (fb > (M + mr - 1) / mr * mr)
        fb = (M + mr - 1) / mr * mr;
    int f_bulk = (M + fb - 1) / fb, f_ntail = 0;
    if (guided) {
        int m = 0;
        for (f_bulk = 0; m < M && guided_rows(M - m, nt, mr) == fb; f_bulk++)
            m += fb;
        for (; m < M; m += guided_rows(M - m, nt, mr)) {
            BG_ASSERT(f_ntail < F_TAIL_MAX,
                      "gemm: more than %d guided tail blocks (M %d, %d threads)", F_TAIL_MAX, M,
                      nt);
            g.f_tail[f_ntail++] = m;
        }
        g.f_tail[f_ntail] = M; /* the last block ends at M (its step may overshoot) */
    }
    int f_tasks = f_bulk + f_ntail, f_slots = f_tasks < nt ? f_tasks : nt;
    int fused = b_kept && g.kd.copyk && xrs == 1 && !g.a_direct && nt <= F_MAX_THREADS &&
                (long)f_slots * fb * (K < kc ? K : kc) <= dims.a_floats;
    if (fused) {
        g.fb = fb;
        g.f_slots = f_slots;
        g.f_bulk = f_bulk;
        g.f_ntail = f_ntail;
        atomic_init(&g.slot_busy, 0u);
        g.n0 = 0;
        g.ncb = N;
        g.n_panels = (N + nr - 1) / nr;
        for (int k0 = 0; k0 < K; k0 += kc) {
            g.k0 = k0;
            g.kcb = K - k0 < kc ? K - k0 : kc;
            g.first = k0 == 0 && !accumulate;
            g.b_kt = g.kd.copyk && wrs == 1 ? (g.kcb >= 64 ? nt : 1) : 0;
            g.run_a = 0;
            g.run_b = g.b_kt ? g.b_kt : (g.n_panels + B_GROUP - 1) / B_GROUP;
            bg__pool_run(p, pack_task, &g, g.run_b);
            bg__pool_run(p, fused_task, &g, f_tasks);
        }
        bg__pool_scratch_trim(p, SCRATCH_KEEP);
        return;
    }
    for (int k0 = 0; k0 < K; k0 += kc) {
        g.k0 = k0;
        g.kcb = K - k0 < kc ? K - k0 : kc;
        g.first = k0 == 0 && !accumulate;
        if (g.first && nt_out)
            g.first = 2;
        int kt = g.kcb >= 64 ? nt : 1;
        g.a_kt = g.kd.copyk && xrs == 1 && !g.a_direct ? kt : 0;
        g.b_kt = g.kd.copyk && wrs == 1 ? kt : 0;
        for (int m0 = 0; m0 < M; m0 += m_chunk) {
            g.m0 = m0;
            g.mrows = M - m0 < m_chunk ? M - m0 : m_chunk;
            g.m_panels = (g.mrows + mr - 1) / mr;
            g.m_blocks = (g.mrows + MC - 1) / MC;
            for (int n0 = 0; n0 < N; n0 += nc) {
                g.n0 = n0;
                g.ncb = N - n0 < nc ? N - n0 : nc;
                g.n_panels = (g.ncb + nr - 1) / nr;
                /* one packing run: A's chunk with the first N block, and
                 * the B block unless it is kept from the first chunk */
                g.run_a = n0 > 0 ? 0 : g.a_kt ? g.a_kt : g.m_blocks;
                g.run_b = b_kept && m0 > 0 ? 0
                          : g.b_kt         ? g.b_kt
                                           : (g.n_panels + B_GROUP - 1) / B_GROUP;
                bg__pool_run(p, pack_task, &g, g.run_a + g.run_b);
                bg__pool_run(p, compute_task, &g, g.m_blocks * g.n_panels);
            }
        }
    }
    bg__pool_scratch_trim(p, SCRATCH_KEEP);
}

void bg__cpu_matmul(bg__pool *p, float *out, const float *x, const float *w, int M, int N, int K,
                    int bf16)
{
    if (M <= 2) {
        for (int m = 0; m < M; m++)
            matvec(p, out + (long)m * N, x + (long)m * K, w, N, K);
        return;
    }
    gemm(p, out, x, K, 1, w, K, 1, M, N, K, 0, bf16);
}

void bg__cpu_matmul_dx(bg__pool *p, float *dx, const float *dy, const float *w, int M, int N, int K,
                       int accumulate, int bf16)
{
    /* dx[M,K] = dy[M,N] . w[N,K]: left (m, n) = dy[m*N + n], right (k, n) = w[n*K + k] */
    gemm(p, dx, dy, N, 1, w, 1, K, M, K, N, accumulate, bf16);
}

void bg__cpu_matmul_dw(bg__pool *p, float *dw, const float *dy, const float *x, int M, int N, int K,
                       int bf16)
{
    /* dw[N,K] += dy^T . x: left (n, m) = dy[m*N + n], right (k, m) = x[m*K + k] */
    gemm(p, dw, dy, 1, N, x, 1, K, N, K, M, 1, bf16);
}

/* ---- the hook of the pre-packed GEMM (compute_cpu_gemm_packed.c) ---------- */

void bg__cpu_gemm_tile(int kernel, bg__gemm_tile *t)
{
    kern_desc kd = kern_for(kernel, 0);
    *t = (bg__gemm_tile){kd.fn, kd.rows_fn, kd.mr, kd.nr, kd.kc};
}

void bg__cpu_gemm_pack(int kernel, float *dst, const float *src, long rs, int first, int end,
                       int kcb, int width, int npanels)
{
    kern_desc kd = kern_for(kernel, 0);
    pack(&kd, dst, src, rs, 1, first, end, 0, kcb, width, npanels);
}
