/*
 * gfn_tilt.h — the harm-tilted reward of a context, and a warm start.
 *
 * For a context x (the proposed action, with the session's history) the
 * harm-tilted reward is
 *     R_x(h) = P(h)·P(D|h)·P(H|x,h),   log R_x = log R(h) + log P(H|x,h).
 * Its mode is the iid cautious hypothesis argmax_h P(h|D)·P(H|x,h)
 * (spec/oracle.md, Prop 3.4: P(h|D) ∝ R(h)), so a sampler trained on R_x
 * samples exactly the hypotheses the iid bound maximises over
 * (spec/gflownet.md, "Why bayesguard needs them"). bg_gfn_tilt_reward is
 * a bg_log_reward_fn over a base log-reward and a harm callback;
 * bg_gfn_model_harm binds the harm callback to a hypothesis plugin's
 * `harm`; bg_gfn_copy_params starts a tilted sampler from a trained
 * posterior sampler (its network and log Z), with fresh Adam moments,
 * counters and replay buffer — the posterior's replay holds log R, not
 * log R_x, and must not be carried over.
 *
 * Zero harm: log 0 = −inf would make R_x(h) = 0. It is clamped to
 * BG_GFN_TILT_LOG_HARM_FLOOR = −700 (≈ log 1e-304, the same floor the
 * trainer gives a −inf reward): such a hypothesis is e^700 times less
 * likely than one of harm 1 with the same posterior — never sampled in
 * practice — while every log-reward stays finite. A harm below e^−700
 * (subnormal) gets the same floor.
 *
 * Self-contained C (libc, libm, bayesguard/plugin.h and the engine), like
 * the rest of lib/gfn, which the sampler plugin links.
 *
 * Threads: bg_gfn_tilt_reward and bg_gfn_model_harm only read their
 * context (plus the harm_evals counter of the tilt, which they bump), so
 * one context is used by one trainer at a time; bg_gfn_copy_params mutates
 * dst (the caller serialises, as for bg_gfn_train).
 *
 * Ownership: the contexts borrow every pointer they hold; the caller keeps
 * the base reward, the plugin instance, the action and the history alive
 * while the reward is in use.
 */
#ifndef BG_GFN_TILT_H
#define BG_GFN_TILT_H

#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "gfn.h"

#define BG_GFN_TILT_LOG_HARM_FLOOR (-700.0)

/* out[i] = P(H | x, h_i) in [0, 1] for a batch (the shape of
 * bg_log_reward_fn, probabilities instead of logs). */
typedef int (*bg_gfn_harm_fn)(void *ctx, const uint64_t *h, size_t n, double *out);

typedef struct bg_gfn_tilt {
    bg_log_reward_fn base; /* log R(h) = log P(h) + log P(D|h) */
    void *base_ctx;
    bg_gfn_harm_fn harm; /* P(H | x, h) */
    void *harm_ctx;
    uint64_t harm_evals; /* ids passed to harm (cumulative) */
} bg_gfn_tilt;

/* bg_log_reward_fn: out[i] = log R(h_i) + max(log P(H|x,h_i), floor).
 * ctx is a bg_gfn_tilt. The base reward's status is returned as is; a harm
 * that is NaN or outside [0, 1] is BG_PLUGIN_EINVAL. */
int bg_gfn_tilt_reward(void *ctx, const uint64_t *h, size_t n, double *out);

/* A hypothesis plugin's harm for one action and history. */
typedef struct bg_gfn_model_harm_ctx {
    const bg_hypothesis_vtbl *vt;
    const void *inst;
    const bg_action *action;
    const bg_observation *history;
    size_t n_hist;
} bg_gfn_model_harm_ctx;

/* bg_gfn_harm_fn over a bg_gfn_model_harm_ctx: vt->harm(inst, action,
 * history, n_hist, h, n, out). */
int bg_gfn_model_harm(void *ctx, const uint64_t *h, size_t n, double *out);

/* Copy src's network and log Z into dst (same d, hidden width and layer
 * count, else BG_PLUGIN_EINVAL with a message) and zero dst's Adam
 * moments; dst keeps its own config (learning rates, schedule, seed),
 * generator, counters and replay buffer. With logz_from_batch set and dst
 * not yet trained, TB re-estimates log Z for the new reward at its first
 * step. */
int bg_gfn_copy_params(bg_gfn *dst, const bg_gfn *src, char *errbuf, size_t errlen);

#endif
