/*
 * gfn_score.h — the scoring half of the sampled path (gfn_sampled.c): the
 * session reward a sampler trains on, and the verdict over sampled
 * candidates. Internal to bg_gfn_sampled; no state.
 */
#ifndef BG_GFN_SCORE_H
#define BG_GFN_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"
#include "engine/engine.h"

/* log R(h) = log P(h) + Σ_i log P(obs_i | obs_<i, h) for a session. */
typedef struct bg__gfn_reward_ctx {
    const bg_guard *g;
    const bg_observation *hist;
    size_t n_hist;
    double *tmp;
    size_t cap;
} bg__gfn_reward_ctx;

/* The sampler's reward callback (bg_sampler_vtbl.train): log R(h) of n
 * hypotheses for the context's session; tmp grows as needed (free it). */
int bg__gfn_session_log_r(void *vctx, const uint64_t *h, size_t n, double *out);

/* Sorts ids and removes duplicates; returns how many remain. */
size_t bg__gfn_sort_unique(uint64_t *ids, size_t k);

/* The evaluation seed of (seed, session, number of observations): the same
 * data give the same verdict. */
uint64_t bg__gfn_mix_seed(uint64_t seed, const char *session, size_t n_hist);

/* Steps 3-6 of an evaluation over n unique candidates: exact log-posterior
 * normalised over them, harm from the model, the stable posterior order and
 * the estimator; fills out (not sampled/samples). BG_EINTERNAL when a plugin
 * misbehaves (NaN harm, no finite score, a bound outside [0, 1]). */
int bg__gfn_score_and_estimate(const bg_guard *g, const bg_observation *hist, size_t n_hist,
                               const bg_action *action, const uint64_t *ids, size_t n,
                               bg_verdict *out, bg_err *err);

#endif
