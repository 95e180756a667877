/*
 * bandit_bits.h — the bandit's two bit kernels (bandit.c), portable and,
 * on x86-64, an AVX2 + POPCNT version of each that gives the same values
 * bit for bit; bandit.c picks one set per instance at create() by what
 * the CPU supports (__builtin_cpu_supports), and test_gfn_bandit_bits
 * holds the x86 ones to the portable ones on edge and random values.
 *
 * Why they matter: the per-context search's reward calls the model's
 * log_lik once per observation of the history for every few ids it
 * scores, and each call builds the context's feature mask (d doubles
 * compared) and counts bits per id; the baseline x86-64 target has no
 * POPCNT, so the portable count is a dozen instructions per id
 * (docs/GFLOWNET.md, "A search per remembered context", "Cost").
 *
 * Header-only, static functions: no state, any thread.
 */
#ifndef BG_BANDIT_BITS_H
#define BG_BANDIT_BITS_H

#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BANDIT_X86 1
#include <immintrin.h>
#define BANDIT_TX86 __attribute__((target("avx2,popcnt")))
#else
#define BANDIT_X86 0
#endif

/* Bit count without the POPCNT instruction (the libgcc fallback is a call
 * per id). */
static inline unsigned bandit_popcount_sw(uint64_t v)
{
    v = v - ((v >> 1) & 0x5555555555555555ull);
    v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((v * 0x0101010101010101ull) >> 56);
}

/* f[0..d) (d <= 64) as an id-layout bit mask — feature k at bit d-1-k —
 * of the features equal to 1.0; *binary: whether every feature is 0 or 1
 * (-0.0 is 0; a NaN is neither). Without a branch on the features: the
 * branch on x == 1.0 mispredicted about one feature in two. */
static inline uint64_t bandit_fbits_sw(const double *f, unsigned d, int *binary)
{
    uint64_t m = 0;
    unsigned other = 0;
    for (unsigned k = 0; k < d; k++) {
        double x = f[k];
        unsigned one = x == 1.0;
        m = m << 1 | one;
        other |= (unsigned)(x != 0.0) & (one ^ 1u);
    }
    *binary = !other;
    return m;
}

#if BANDIT_X86
BANDIT_TX86 static inline unsigned bandit_popcount_hw(uint64_t v)
{
    return (unsigned)__builtin_popcountll(v);
}

/* bandit_fbits_sw four features a compare: the same comparisons (== 1.0
 * ordered, != 0.0 unordered, as C's operators), the four lanes' bits
 * reversed into the id layout. */
BANDIT_TX86 static inline uint64_t bandit_fbits_avx2(const double *f, unsigned d, int *binary)
{
    static const unsigned char rev4[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
    uint64_t m = 0;
    unsigned other = 0, k = 0;
    for (; k + 4 <= d; k += 4) {
        __m256d x = _mm256_loadu_pd(f + k);
        __m256d is1 = _mm256_cmp_pd(x, one, _CMP_EQ_OQ);
        __m256d nz = _mm256_cmp_pd(x, zero, _CMP_NEQ_UQ);
        other |= (unsigned)_mm256_movemask_pd(_mm256_andnot_pd(is1, nz));
        /* lane j (feature k + j) goes to bit d - 1 - k - j */
        m |= (uint64_t)rev4[_mm256_movemask_pd(is1)] << (d - 4 - k);
    }
    for (; k < d; k++) {
        double x = f[k];
        unsigned o = x == 1.0;
        m |= (uint64_t)o << (d - 1 - k);
        other |= (unsigned)(x != 0.0) & (o ^ 1u);
    }
    *binary = !other;
    return m;
}
#endif

#endif
