/*
 * plugin_rng.c — the RNG service over plugin.h's inline xoshiro256**
 * (seeded through splitmix64, so any 64-bit seed, even 0, is good).
 * uniform() uses the top 53 bits -> [0, 1); normal() is Box-Muller, one
 * value per call (the cosine branch) so the generator stays the whole state.
 * Threads: any; a bg_rng is owned by one caller at a time.
 */
#include <math.h>

#include "plugin/plugin_host.h"

void bg_rng_seed(bg_rng *r, uint64_t seed)
{
    bg_rng_init(r, seed);
}

uint64_t bg_rng_u64(bg_rng *r)
{
    return bg_rng_next(r);
}

double bg_rng_uniform(bg_rng *r)
{
    return bg_rng_next_uniform(r);
}

double bg_rng_normal(bg_rng *r)
{
    double u1 = 1.0 - bg_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = bg_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
