/*
 * test_gfn_bandit_bits.c — the bandit's bit kernels (bandit_bits.h): the
 * portable feature mask and bit count against a plain reference, and the
 * AVX2 + POPCNT ones the plugin picks on a CPU that has them against the
 * portable ones, bit for bit (a mask that differed would change every
 * log_lik and harm of the sampled path, and verdicts with them).
 *
 * Bit count: 0, all ones, every single bit, every 2^k - 1 and its
 * complement, alternating patterns and 200,000 random words. Feature mask:
 * for every d in 1..64 (so every tail length after the four-wide
 * compares), 3,000 random feature vectors — binary, with -0.0 among the
 * zeros, and in a third of them one to three values that are not 0 or 1
 * (0.5, -1, 2, 1 ± an ulp, ±inf, NaN, the smallest subnormals) at random
 * places — the mask and the `binary` flag. Checked once that it fails when
 * the x86 mask's lane reversal swaps two lanes, when its != 0 compare is
 * made ordered (NaN then counts as 0), and when the portable count reads
 * the wrong byte of its final product. Under a second; the x86 half is skipped (said so) on a
 * CPU without AVX2 and POPCNT.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../plugins/hypothesis/bandit/bandit_bits.h"
#include "bg_test.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void) /* xorshift64* */
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}

static unsigned ref_popcount(uint64_t v)
{
    unsigned c = 0;
    for (; v; v >>= 1)
        c += (unsigned)(v & 1);
    return c;
}

/* The definition: feature k == 1.0 sets bit d-1-k; binary when every
 * feature is 0 (either sign) or 1. */
static uint64_t ref_fbits(const double *f, unsigned d, int *binary)
{
    uint64_t m = 0;
    *binary = 1;
    for (unsigned k = 0; k < d; k++) {
        if (f[k] == 1.0)
            m |= (uint64_t)1 << (d - 1 - k);
        else if (f[k] != 0.0)
            *binary = 0;
    }
    return m;
}

static int g_x86;
static size_t g_words, g_vectors;

static void check_word(uint64_t v)
{
    unsigned want = ref_popcount(v);
    CHECK_INT(bandit_popcount_sw(v), want);
#if BANDIT_X86
    if (g_x86)
        CHECK_INT(bandit_popcount_hw(v), want);
#endif
    g_words++;
}

static void check_vector(const double *f, unsigned d)
{
    int rb, sb;
    uint64_t rm = ref_fbits(f, d, &rb), sm = bandit_fbits_sw(f, d, &sb);
    CHECK(sm == rm && sb == rb, "d %u: portable mask %016llx binary %d, reference %016llx %d", d,
          (unsigned long long)sm, sb, (unsigned long long)rm, rb);
#if BANDIT_X86
    if (g_x86) {
        int xb;
        uint64_t xm = bandit_fbits_avx2(f, d, &xb);
        CHECK(xm == rm && xb == rb, "d %u: avx2 mask %016llx binary %d, reference %016llx %d", d,
              (unsigned long long)xm, xb, (unsigned long long)rm, rb);
    }
#endif
    g_vectors++;
}

int main(void)
{
#if BANDIT_X86
    __builtin_cpu_init();
    g_x86 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#endif
    if (!g_x86)
        printf("note: no AVX2 + POPCNT here (or not x86-64): the portable kernels only\n");

    check_word(0);
    check_word(~0ull);
    for (unsigned k = 0; k < 64; k++) {
        uint64_t b = (uint64_t)1 << k;
        check_word(b);
        check_word(~b);
        check_word(b - 1);
        check_word(~(b - 1));
    }
    check_word(0x5555555555555555ull);
    check_word(0xaaaaaaaaaaaaaaaaull);
    check_word(0x0f0f0f0f0f0f0f0full);
    check_word(0xff00ff00ff00ff00ull);
    for (int i = 0; i < 200000; i++) {
        uint64_t a = next(), b = next();
        check_word(a);
        check_word(a & b); /* sparser */
        check_word(a | b); /* denser */
    }

    static const double odd[] = {0.5,      -1.0,      2.0, 1.0 + 0x1p-52, 1.0 - 0x1p-53,
                                 INFINITY, -INFINITY, NAN, 0x1p-1074,     -0x1p-1074};
    enum { N_ODD = sizeof odd / sizeof *odd };
    double f[64];
    for (unsigned d = 1; d <= 64; d++) {
        for (int r = 0; r < 3000; r++) {
            uint64_t bits = next(), signs = next();
            for (unsigned k = 0; k < d; k++)
                f[k] = (bits >> k & 1) ? 1.0 : ((signs >> k & 1) ? -0.0 : 0.0);
            if (r == 0) /* all zeros, then all ones */
                for (unsigned k = 0; k < d; k++)
                    f[k] = 0.0;
            if (r == 1)
                for (unsigned k = 0; k < d; k++)
                    f[k] = 1.0;
            if (r % 3 == 2)
                for (uint64_t n = 1 + next() % 3; n > 0; n--)
                    f[next() % d] = odd[next() % N_ODD];
            check_vector(f, d);
        }
    }
    printf("%zu words, %zu feature vectors (d 1..64)%s\n", g_words, g_vectors,
           g_x86 ? ", portable and x86 kernels" : ", portable kernels");
    CHECK_DONE("test_gfn_bandit_bits");
}
