/*
 * lmgfn_priv.h — what the files of lib/lmgfn share and nothing outside it
 * includes.
 */
#ifndef BG_LMGFN_PRIV_H
#define BG_LMGFN_PRIV_H

#include <stdint.h>

#include "lmgfn/lmgfn.h"

/* A uniform double in [0, 1) from a SplitMix64 state (advanced). */
double bg__lmgfn_unif(uint64_t *s);

/* The behaviour and schedule the tasks train with (the paper's code):
 * SubTB λ = 1, replay a quarter of the steps (256 items, no exact
 * duplicates), half the on-policy steps tempered in U(0.5, 2), reward
 * temperature 2 -> 1 over the first half of `steps`, log Z's Adam 0.05.
 * Only those fields of *o are written. */
void bg__lmgfn_task_schedule(bg_lmgfn_opts *o, int steps, uint64_t seed);

#endif
