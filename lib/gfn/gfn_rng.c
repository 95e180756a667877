/*
 * gfn_rng.c — the GFlowNet engine's random generator: xoshiro256** seeded
 * through splitmix64, on the ABI's bg_rng state (so the plugin can hand a
 * caller's generator straight through).
 *
 * The generator is plugin.h's inline one (the engine is compiled into the
 * sampler plugin, which may not call daemon code); training is
 * reproducible from a seed alone. Threads: a bg_rng belongs to one caller at a time.
 */
#include "gfn.h"

void bg_gfn_rng_seed(bg_rng *r, uint64_t seed)
{
    bg_rng_init(r, seed);
}

uint64_t bg_gfn_rng_u64(bg_rng *r)
{
    return bg_rng_next(r);
}

double bg_gfn_rng_uniform(bg_rng *r)
{
    return bg_rng_next_uniform(r);
}
