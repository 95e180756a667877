/*
 * gfn_rng.c — the GFlowNet engine's random generator: xoshiro256** seeded
 * through splitmix64, on the ABI's bg_rng state (so the plugin can hand a
 * caller's generator straight through).
 *
 * Why its own copy: the engine is compiled into the sampler plugin, which
 * may not call daemon code, and training must be reproducible from a seed
 * alone. Threads: a bg_rng belongs to one caller at a time.
 */
#include "gfn.h"

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void bg_gfn_rng_seed(bg_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t bg_gfn_rng_u64(bg_rng *r)
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

double bg_gfn_rng_uniform(bg_rng *r)
{
    return (double)(bg_gfn_rng_u64(r) >> 11) * 0x1.0p-53;
}
