/*
 * lmgfn_priv.h — what the files of lib/lmgfn share and nothing outside it
 * includes.
 */
#ifndef BG_LMGFN_PRIV_H
#define BG_LMGFN_PRIV_H

#include <stdint.h>

/* A uniform double in [0, 1) from a SplitMix64 state (advanced). */
double bg__lmgfn_unif(uint64_t *s);

#endif
