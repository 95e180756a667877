/*
 * bench_gfn.h — what the files of the GFlowNet quality benchmark share:
 * the bandit data set and its exact posterior reward, the Metropolis–
 * Hastings baseline, and the oracle's sets (cautious hypothesis, plausible
 * set I^α, bound) computed exactly or from samples.
 *
 * Hypothesis ids follow the bandit plugin (plugins/hypothesis/bandit):
 * w_k = id bit (d−1−k), so x·w = popcount(xmask & id) with xmask holding
 * bit (d−1−k) for every x_k = 1.
 *
 * Single-threaded benchmark code.
 */
#ifndef BENCH_GFN_H
#define BENCH_GFN_H

#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "gfn/gfn.h"

#define BENCH_MAX_ARMS 128
#define BENCH_MAX_OBS 1024

typedef struct bench_env {
    uint32_t d, n_arms, n_obs;
    double sigma, theta;
    uint64_t w_star;
    uint64_t arm[BENCH_MAX_ARMS]; /* x_a as an id-space mask */
    uint32_t obs_arm[BENCH_MAX_OBS];
    double obs_r[BENCH_MAX_OBS];
    /* per-arm sufficient statistics: pulls, Σr, Σr² */
    double n_a[BENCH_MAX_ARMS], s_a[BENCH_MAX_ARMS], q_a[BENCH_MAX_ARMS];
    uint64_t reward_evals; /* ids scored through bench_log_reward */
    /* when set, log R comes from the real bandit plugin (bench_plugin.c) */
    int (*plugin_log_r)(void *ctx, const uint64_t *h, size_t n, double *out);
    /* and P(harm | x, h) from the plugin's harm, x given as an id-space mask */
    int (*plugin_harm)(void *ctx, uint64_t xmask, const uint64_t *h, size_t n, double *out);
    void *plugin_ctx;
} bench_env;

/* A fixed data set: n_arms random arms, w* uniform, n_obs pulls of
 * uniformly chosen arms with r ~ N(x·w*, σ); θ = the largest true arm
 * mean (the paper's max-arm variant). */
void bench_env_init(bench_env *e, uint32_t d, uint32_t n_arms, uint32_t n_obs, uint64_t seed);
/* log R(h) = log P(h) + log P(D|h) (uniform prior, Gaussian likelihood,
 * constants dropped); bg_log_reward_fn-compatible; counts evaluations. */
int bench_log_reward(void *env, const uint64_t *h, size_t n, double *out);
/* The same, computed locally, never counted (for exact references). */
double bench_log_r_local(const bench_env *e, uint64_t h);
/* The exact posterior over all 2^d ids (new: free), from the local
 * formula; log_r (may be NULL) gets log R of every id. */
double *bench_exact_posterior(const bench_env *e, double *log_r);
/* P(harm | x, h) = 1 − Φ((θ − x·w)/σ), x given as an id-space mask. */
double bench_harm(const bench_env *e, uint64_t xmask, uint64_t h);

/* A context's harm for the tilted reward (gfn_tilt.h's bg_gfn_harm_fn):
 * the plugin's harm when attached, else bench_harm. */
typedef struct bench_harm_ctx {
    const bench_env *env;
    uint64_t xmask;
} bench_harm_ctx;
int bench_harm_fn(void *ctx, const uint64_t *h, size_t n, double *out);

/* Metropolis–Hastings over single-bit flips, one reward evaluation per
 * proposal, started at a uniform random id. */
typedef struct bench_mh {
    bench_env *env;
    bg_rng rng;
    uint64_t cur;
    double cur_logr;
    uint64_t steps, accepted;
} bench_mh;
void bench_mh_init(bench_mh *m, bench_env *env, uint64_t seed);
uint64_t bench_mh_step(bench_mh *m); /* returns the chain's state after the step */

/* Oracle sets over candidates (ids with log-scores log R, not normalised). */
typedef struct bench_oracle {
    double iid_bound;    /* harm of the cautious hypothesis */
    uint64_t cautious;   /* argmax P(h|D)·harm, first index wins a tie */
    double noniid_bound; /* max harm over I^α */
    size_t plausible;    /* |I^α| */
} bench_oracle;
/* order: scratch [2n] (the posterior order, then the set). */
void bench_oracle_eval(const bench_env *e, const uint64_t *ids, const double *log_r, size_t n,
                       uint64_t xmask, double alpha, uint32_t *order, bench_oracle *out);
/* I^α over candidates into set (ids), returns its size; order as above. */
size_t bench_plausible_set(const double *log_r, size_t n, double alpha, uint32_t *order,
                           uint32_t *set);

/* Sort-and-unique ids in place; returns the new count. */
size_t bench_unique(uint64_t *ids, size_t n);

/* The bandit plugin as the reward (bench_plugin.c): 0 when loaded, else
 * a reason in why (the bench then uses the local formula and says so). */
int bench_plugin_attach(bench_env *e, char *why, size_t len);
void bench_plugin_detach(bench_env *e);

/* Section 4 (bench_tilted.c): the harm-tilted sampler R_x at each of
 * n_ctx contexts x, started from the trained posterior sampler `post`
 * (bg_gfn_copy_params) and trained `fine_steps` steps with each config of
 * `fine` (fine[0]: T_R = 1, the sampler of R_x itself; fine[1]: reward
 * temperature annealed below 1, a sampler of R_x^(1/T_R), sharper around
 * its mode); recall of the exact iid cautious hypothesis among K tilted
 * samples vs K posterior samples, and the bound gap. Prints a table. */
#define BENCH_TILT_VARIANTS 2
void bench_tilted(bench_env *e, const bg_gfn_config fine[BENCH_TILT_VARIANTS], uint32_t fine_steps,
                  const bg_gfn *post, const uint64_t *x, int n_ctx, uint64_t seed);

/* Section 5 (bench_fair.c): GFlowNet vs MH on the same footing — K
 * samples each at equal reward evaluations against the exact bounds
 * (n_seeds evaluation data sets), and exact q^⊤ vs the exact MH-chain
 * distribution. Prints tables. */
void bench_fair(int n_seeds, int quick);

#endif
