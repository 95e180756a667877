/*
 * plugin_rng.c — the RNG service: xoshiro256** (Blackman & Vigna) seeded
 * through splitmix64 so any 64-bit seed (even 0) gives a good state.
 * uniform() uses the top 53 bits -> [0, 1); normal() is Box-Muller, one
 * value per call (the cosine branch) so the generator stays the whole state.
 * Threads: any; a bg_rng is owned by one caller at a time.
 */
#include <math.h>

#include "plugin/plugin_host.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void bg_rng_seed(bg_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t bg_rng_u64(bg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double bg_rng_uniform(bg_rng *r)
{
    return (double)(bg_rng_u64(r) >> 11) * 0x1.0p-53;
}

double bg_rng_normal(bg_rng *r)
{
    double u1 = 1.0 - bg_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = bg_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
