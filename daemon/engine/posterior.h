/*
 * posterior.h — the log-space posterior over a finite candidate set, and the
 * posterior order the non-iid estimator walks (engine-internal).
 *
 * Shape: one array of normalised log-posteriors, updated in place by each
 * observation (log_post += log_lik, then renormalised). Renormalising every
 * step keeps the numbers near 0 whatever the number of observations, so
 * 10^5 observations cannot drift into -1e300 territory; the normaliser is a
 * max-shifted log-sum-exp, so a posterior of 1e-300 is a log of -690, not 0.
 *
 * Invariants (checked by bg__posterior_check in tests):
 *  1. max_i log_post[i] == max_log_post, finite, and log Σ exp(log_post) == 0
 *     up to rounding (|err| < 1e-12).
 *  2. Every hypothesis goes through identical arithmetic: two hypotheses with
 *     equal log-prior and equal log-likelihoods have bitwise-equal log_post.
 *  4. prob[i] == exp(log_post[i]) bitwise, or 0 when that is below
 *     DBL_MIN (no subnormals: they cost a microcode assist per multiply in
 *     an estimator's stream over prob × harm).
 *  3. order[0..n_order) lists, in descending log_post and ascending index for
 *     ties (a strict total order, so the result is what a stable sort gives),
 *     exactly the hypotheses with log_post >= max_log_post + log(order_need)
 *     − BG_ORDER_MARGIN (all of them when order_need == 0, none when
 *     order_need > 1). The margin (1e-9 in log space) keeps a hypothesis
 *     sitting on the boundary even when the estimator's linear-space test
 *     and this log-space filter round differently.
 *     Since the plausible-set rule keeps i_k only when P(i_k) >= α·S_k and
 *     S_k >= max P, ordering everything with P >= α·max P is enough for α.
 *
 * Threads: none of its own; the session's lock guards a posterior.
 * Ownership: the arrays are owned by the posterior (init/close).
 */
#ifndef BG_ENGINE_POSTERIOR_H
#define BG_ENGINE_POSTERIOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

/* Ids per batched plugin call: small enough to stay in cache. */
#define BG_ORDER_MARGIN 1e-9

#define BG_POSTERIOR_CHUNK 4096

typedef struct bg__posterior {
    size_t n;         /* candidates */
    uint64_t *ids;    /* [n] hypothesis ids */
    double *log_post; /* [n] normalised log P(h|D) */
    double *prob;     /* [n] exp(log_post), values below DBL_MIN flushed to 0 */
    double *scratch;  /* [n] next log_post while an update is checked */
    uint32_t *order;  /* [n] capacity; first n_order valid */
    size_t n_order;
    double order_need; /* what the order covers; > 1 when none computed */
    double max_log_post;
    uint64_t n_obs; /* observations folded in */
} bg__posterior;

/* Bytes a posterior over n candidates holds. */
size_t bg__posterior_bytes(size_t n);

/* Allocates the arrays; ids and log_post are left for the caller to fill
 * (then call bg__posterior_normalise). */
int bg__posterior_init(bg__posterior *p, size_t n, bg_err *err);
void bg__posterior_close(bg__posterior *p);

/* scratch[i] = log_post[i] + log_lik[i] for the whole set; the caller fills
 * log_lik chunk by chunk with bg__posterior_stage. */
void bg__posterior_stage(bg__posterior *p, size_t off, const double *log_lik, size_t len);

/* Normalise scratch in place, leaving the posterior as it was: BG_EINVAL
 * when every candidate has zero likelihood, BG_EINTERNAL on NaN or +inf.
 * *max_out: scratch's maximum, for bg__posterior_swap. */
int bg__posterior_prepare(bg__posterior *p, double *max_out, bg_err *err);

/* Make the prepared scratch the posterior (n_obs + 1); invalidates the
 * order. Split from prepare so the caller can store the observation
 * durably between the check and the change. */
void bg__posterior_swap(bg__posterior *p, double max_log_post);

/* Normalise log_post in place (after init filled it with log-priors). */
int bg__posterior_normalise(bg__posterior *p, bg_err *err);

/* Recompute the order for `need` (see invariant 3). */
int bg__posterior_order(bg__posterior *p, double need, bg_err *err);

/* 1 when the current order covers `need`. */
int bg__posterior_order_covers(const bg__posterior *p, double need);

/* Index of the most probable candidate (first index on ties). */
size_t bg__posterior_map(const bg__posterior *p);

/* Shannon entropy in nats. */
double bg__posterior_entropy(const bg__posterior *p);

/* Check invariants 1 and 3; BG_EINTERNAL naming the broken one. */
int bg__posterior_check(const bg__posterior *p, bg_err *err);

#endif
