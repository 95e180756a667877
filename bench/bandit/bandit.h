/*
 * bandit.h — bench/bandit: the paper's exploding-bandit experiment
 * (Bengio et al., Section 5; spec oracle.md) run through the daemon's own
 * engine (bg_engine_*) and the built-in .so plugins (bandit, cheating,
 * posterior, iid, noniid) — not a second implementation of the math.
 *
 * Files: bandit_env.c (environment, agent randomness), bandit_fig.c (one
 * episode of Figure 1 / Figure 2 through the engine), bandit_bench.c
 * (flags, threads, progress, tables, JSON lines, gnuplot), bandit_micro.c
 * (per-Evaluate timings of the non-iid bound).
 *
 * Randomness: episode e's environment comes from (seed, e) alone, so every
 * cell sees the same 10,000 environments (common random numbers); the
 * agent's and the rewards' randomness from (seed, cell, e).
 * Threads: each worker thread owns an engine; the plugin host is shared
 * (its lookups are locked).
 */
#ifndef BG_BENCH_BANDIT_H
#define BG_BENCH_BANDIT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "guard_build.h"
#include "plugin/plugin_host.h"

#define BB_D 10
#define BB_ARMS 10
#define BB_NH (1u << BB_D)
#define BB_SIGMA 1.0

/* ------------------------------------------------------------ randomness */

typedef struct bb_rng {
    uint64_t s;
} bb_rng;

void bb_rng_seed(bb_rng *r, uint64_t a, uint64_t b, uint64_t c);
double bb_uniform(bb_rng *r);
double bb_normal(bb_rng *r);

/* ----------------------------------------------------------- environment */

typedef enum bb_theta_mode { BB_THETA_MAX_ARM = 0, BB_THETA_FIXED = 1 } bb_theta_mode;

typedef struct bb_env {
    double x[BB_ARMS][BB_D]; /* arm features, {0,1} */
    double mean[BB_ARMS];    /* x_a · w* */
    unsigned truth;          /* id of w* (first coordinate = most significant bit) */
    double theta;
    char model_cfg[96]; /* the bandit plugin's config for this episode */
} bb_env;

/* θ of the `fixed` variant: round(mean over 100 draws of the max arm mean). */
double bb_fixed_theta(uint64_t seed);
void bb_env_make(bb_env *env, uint64_t seed, uint64_t episode, bb_theta_mode mode,
                 double fixed_theta);
/* P(harm | arm a, w*) = 1 − Φ((θ − mean)/σ). */
double bb_true_harm(const bb_env *env, int a);

/* ---------------------------------------------------------------- cells */

typedef enum bb_guardrail {
    BB_NONE = 0,
    BB_CHEATING,
    BB_POSTERIOR,
    BB_IID,
    BB_NONIID,
    BB_GUARDRAILS
} bb_guardrail;
const char *bb_guardrail_name(bb_guardrail g);

typedef struct bb_episode1 {
    double reward;
    int death;
    int all_rejected;
    int steps;
    int rejections;
} bb_episode1;

typedef struct bb_ctx {
    bg_plugin_host *host;
    bg_engine *engine; /* the calling thread's */
    int steps;
    double beta;
} bb_ctx;

/* Figure 1: one episode of the Boltzmann agent under a guardrail. */
int bb_run_fig1(const bb_ctx *c, const bb_env *env, bb_guardrail gr, double C, double alpha,
                uint64_t seed, uint64_t cell, uint64_t episode, bb_episode1 *out, bg_err *err);

/* Figure 2: one episode of the uniform agent; for each α, the fraction of
 * steps whose non-iid estimate for the pulled arm is >= its true harm
 * (over[i]), and the estimates for arms of true harm exactly 0.5 appended
 * to half[i] (growable arrays). */
typedef struct bb_dvec {
    double *v;
    size_t n, cap;
} bb_dvec;
int bb_dvec_push(bb_dvec *d, double x);

int bb_run_fig2(const bb_ctx *c, const bb_env *env, const double *alphas, size_t n_alpha,
                uint64_t seed, uint64_t episode, double *over, bb_dvec *half, bg_err *err);

/* bandit_micro.c */
int bb_micro(bg_plugin_host *host, uint64_t seed, int reps);

#endif
