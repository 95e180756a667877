/*
 * gfn.h — the GFlowNet training engine: a sampler over sets of up to 64
 * binary features, trained so that it draws a hypothesis h with
 * probability ∝ R(h) (spec/gflownet.md).
 *
 * State space (a tree, so every hypothesis has exactly one path):
 *   a state is a set of feature indices built in strictly increasing order;
 *   the start state is the empty set; at a state whose largest index is j
 *   the actions are "add k" for k > j, and ⊤ (stop). Every state may stop
 *   (subject to the length masks), so R(s⊤) = R(the set so far) and both
 *   trajectory balance and the modified sub-trajectory balance apply. The
 *   exact terminal probability log q^⊤(h) is the sum of log q along h's
 *   unique path (bg_gfn_log_q), and for d ≤ BG_GFN_ENUM_MAX_BITS every
 *   q^⊤ can be computed (bg_gfn_log_q_all).
 *   Ids follow bg_space: id bit k = feature k.
 *
 * Policy: an MLP (GELU hidden layers) over the state encoding
 *   [d bits | one-hot of the last index + 1 (d+1) | size/d], output logits
 *   over d+1 actions ("add 0".."add d-1", ⊤) masked to the valid ones.
 *   Forward and backward are hand written (gfn_mlp.c), optimised with Adam.
 *
 * This module is self-contained C (libc + libm + bayesguard/plugin.h for
 * the reward callback type and bg_rng), built as the static library
 * bg_gfn that the sampler plugin links into its .so. Errors are returned as BG_PLUGIN_E* codes
 * (the same numbers as the daemon's BG_E*) with a message written into a
 * caller buffer (errbuf may be NULL).
 *
 * Rewards that move: a session's reward R(h) = P(h)·P(D|h) changes with
 * every observation, so every stored log-reward (the replay buffer's) is
 * tagged with the version of the reward it was computed at, and
 * bg_gfn_train_at re-scores, in one batched reward call, every stored
 * entry of another version before its first step; the buffer's top-k
 * ranking then compares current rewards only, and TB's log Z (an estimate
 * of log Σ R) moves by the buffer's mean change. (Before this, stored rewards
 * were replayed unchanged: after a few observations they were 37–82 nats
 * above the current ones, never evicted, and the sampled bound fell below
 * the exact one — issue 16, docs/GFLOWNET.md.)
 *
 * Determinism: training draws only from the instance's own generator,
 * seeded by config.seed; the same config, seed, reward and call sequence
 * give bit-identical parameters and samples.
 *
 * Threads: an instance is not locked. bg_gfn_train, bg_gfn_offer and
 * bg_gfn_load_into mutate it;
 * bg_gfn_sample, bg_gfn_log_q, bg_gfn_log_q_all, bg_gfn_save read it and
 * may run concurrently with each other, never with a mutation (the caller
 * serialises, as the plugin ABI says the host does).
 *
 * Ownership: bg_gfn_create returns a new instance, freed by
 * bg_gfn_destroy; every pointer argument is borrowed for the call.
 */
#ifndef BG_GFN_H
#define BG_GFN_H

#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"

#define BG_GFN_MAX_BITS 64
#define BG_GFN_MAX_HIDDEN_LAYERS 4
#define BG_GFN_ENUM_MAX_BITS 24

/* X(name, value, text) — the training objectives. */
#define BG_GFN_LOSSES(X)                                                                           \
    X(BG_GFN_LOSS_TB, 0, "tb")                                                                     \
    X(BG_GFN_LOSS_SUBTB, 1, "subtb")                                                               \
    X(BG_GFN_LOSS_DB, 2, "db")

typedef enum bg_gfn_loss {
#define BG_GFN_LOSS_ENUM(name, value, text) name = value,
    BG_GFN_LOSSES(BG_GFN_LOSS_ENUM)
#undef BG_GFN_LOSS_ENUM
} bg_gfn_loss;

/* "tb" / "subtb" / "db", "?" for an unknown value. */
const char *bg_gfn_loss_name(bg_gfn_loss loss);

typedef struct bg_gfn_config {
    uint32_t n_bits;   /* d, 1..64 */
    uint32_t min_len;  /* fewest features in a hypothesis (⊤ masked below) */
    uint32_t max_len;  /* most features (⊤ forced at it); ≤ n_bits */
    uint32_t hidden;   /* width of each hidden layer, 1..4096 */
    uint32_t n_hidden; /* number of hidden layers, 1..BG_GFN_MAX_HIDDEN_LAYERS */
    bg_gfn_loss loss;  /* objective */
    double lambda;     /* SubTB window weight λ^(j-i-1), > 0 */
    double lr;         /* Adam learning rate of the network (at step 0) */
    double lr_logz;    /* Adam learning rate of log Z (TB only) */
    /* Learning-rate schedule: both rates scale linearly from 1 to
     * lr_end / lr over lr_horizon steps, then stay (0 = constant). A
     * decaying rate damps the sampling noise of the gradient at the end.
     * lr_restart = 1: warm restarts — the schedule starts again (from lr)
     * at a training call whose reward version differs from the last
     * call's (even one of 0 steps), i.e. each time the posterior moved; 0: one
     * schedule over the instance's lifetime (a sampler whose reward moves
     * then trains at lr_end for good once lr_horizon steps have run). */
    double lr_end;
    uint32_t lr_horizon;
    uint32_t lr_restart;
    double beta1, beta2, adam_eps;
    double grad_clip; /* global gradient-norm clip, 0 = none */
    uint32_t batch;   /* trajectories per optimiser step */
    /* Behaviour policy, drawn once per batch: replay with p_replay (once
     * the buffer holds `batch` entries), the policy at temperature
     * T ~ U(temp_lo, temp_hi) with p_tempered, else the policy itself.
     * ε-uniform: each non-replay action is uniform over the valid ones
     * with probability epsilon. log q is always re-evaluated untempered. */
    double p_replay, p_tempered;
    double temp_lo, temp_hi;
    double epsilon;
    uint32_t replay_capacity; /* top-k by log-reward, 0 = no replay */
    /* Reward temperature: the loss sees log R / T_R with T_R linear from
     * start to end over `horizon` steps, then constant. */
    double reward_temp_start, reward_temp_end;
    uint32_t reward_temp_horizon;
    double init_logz;
    /* TB: 1 = replace init_logz at the first step by the first batch's
     * mean of log R/T_R − log q^⊤ (so log Z starts on the reward's scale;
     * without it a reward far from e^0 collapses the early policy). */
    uint32_t logz_from_batch;
    uint64_t seed;
} bg_gfn_config;

/* The defaults for d bits (conservative; see gfn_config.c). */
void bg_gfn_config_default(bg_gfn_config *c, uint32_t n_bits);

/* Check a config; message names the field and the allowed range. */
int bg_gfn_config_check(const bg_gfn_config *c, char *errbuf, size_t errlen);

/* What training has done so far (cumulative unless noted). */
typedef struct bg_gfn_stats {
    uint64_t steps;        /* optimiser steps */
    uint64_t trajectories; /* trajectories trained on (replayed included) */
    uint64_t reward_evals; /* ids passed to the reward callback */
    double last_loss;      /* loss of the last step */
    double log_z;          /* TB: learned log Z; SubTB/DB: log R(∅) - log q(⊤|∅) */
    double last_var;       /* Var over the last fresh batch of log R/T_R - log q^⊤ */
    double reward_temp;    /* T_R of the last step */
    uint32_t replay_size;
    /* Not saved (diagnostics of this process): replay entries re-scored
     * because their reward version was not the current one, and the
     * largest drop of a final log R seen by the last re-scoring (stored −
     * current; how stale the buffer had become). */
    uint64_t rescored;
    double last_stale_gap;
    /* Saved: the step at which the learning-rate schedule last started
     * (0, or the step of the last warm restart) and how many restarts. */
    uint64_t sched_start;
    uint64_t restarts;
} bg_gfn_stats;

typedef struct bg_gfn bg_gfn;

int bg_gfn_create(const bg_gfn_config *c, bg_gfn **out, char *errbuf, size_t errlen);
void bg_gfn_destroy(bg_gfn *g);
const bg_gfn_config *bg_gfn_get_config(const bg_gfn *g);
void bg_gfn_get_stats(const bg_gfn *g, bg_gfn_stats *out);

/* Run `steps` optimiser steps. reward(ctx, ids, n, out) fills log R(h) for
 * a batch; it must be deterministic; NaN or +inf is an error, -inf is
 * clamped to BG_GFN_LOG_R_FLOOR. A failed reward aborts the step with its
 * status (parameters untouched for that step).
 *
 * version names the reward: equal versions mean the same log R for every
 * id (the engine: a digest of the session's history; a caller whose reward
 * cannot be named passes a new version each call). Before the first step,
 * every replay entry stored at another version is re-scored (one reward
 * call, counted in reward_evals and rescored); a failure there returns the
 * reward's status with nothing changed. bg_gfn_train is version 0: a
 * fixed reward (benches, tests). */
#define BG_GFN_LOG_R_FLOOR (-700.0)
int bg_gfn_train_at(bg_gfn *g, bg_log_reward_fn reward, void *reward_ctx, uint64_t version,
                    uint32_t steps, char *errbuf, size_t errlen);
int bg_gfn_train(bg_gfn *g, bg_log_reward_fn reward, void *reward_ctx, uint32_t steps, char *errbuf,
                 size_t errlen);

/* Offer hypotheses found elsewhere (a Markov chain, a local search, the
 * previous posterior's samples) to the replay buffer: their log-rewards
 * (every prefix for SubTB/DB, the final one for TB) come from one reward
 * call and count as reward evaluations; ids outside the space or the
 * length masks are skipped; the buffer keeps its top-k rule. Training is
 * off-policy, so replaying them leaves the objective's optimum unchanged.
 * The rewards are taken to be of the version of the last training call
 * (0 before any).
 * *stored (may be NULL) = how many entered the buffer. */
int bg_gfn_offer(bg_gfn *g, const uint64_t *ids, size_t n, bg_log_reward_fn reward,
                 void *reward_ctx, size_t *stored, char *errbuf, size_t errlen);

/* Draw n hypotheses from the untempered policy with the caller's
 * generator (xoshiro256** state, seed it with bg_gfn_rng_seed). log_q may
 * be NULL; else log_q[i] = log q^⊤(ids[i]). */
int bg_gfn_sample(const bg_gfn *g, bg_rng *rng, size_t n, uint64_t *ids, double *log_q);

/* Exact log q^⊤ of given ids (-inf for an id outside the space or the
 * length masks). */
int bg_gfn_log_q(const bg_gfn *g, const uint64_t *ids, size_t n, double *out);

/* Exact log q^⊤ of every id 0..2^d-1 into out[2^d]; d ≤ BG_GFN_ENUM_MAX_BITS. */
int bg_gfn_log_q_all(const bg_gfn *g, double *out);

/* Full trained state (config, parameters, Adam moments, generator,
 * counters, replay buffer) in one file: magic "BGGFN\r\n\x1a", version,
 * sizes. Load checks magic, version, sizes and length and says which is
 * wrong; bg_gfn_load_into also requires the file's d to equal g's. The
 * file keeps no reward version: loaded replay entries count as stale and
 * are re-scored by the next training call. */
int bg_gfn_save(const bg_gfn *g, const char *path, char *errbuf, size_t errlen);
int bg_gfn_load(const char *path, bg_gfn **out, char *errbuf, size_t errlen);
int bg_gfn_load_into(bg_gfn *g, const char *path, char *errbuf, size_t errlen);

/* xoshiro256** seeded through splitmix64 (the same generator the host's
 * rng service implements). */
void bg_gfn_rng_seed(bg_rng *r, uint64_t seed);
uint64_t bg_gfn_rng_u64(bg_rng *r);
double bg_gfn_rng_uniform(bg_rng *r); /* [0, 1) */

#endif
