/*
 * engine.h — the decision path: session posterior -> plugins -> verdict.
 *
 * The engine keeps, per (guard, session), the log-posterior over the
 * guard's hypotheses, derived from the session's stored observations. A
 * guard is what a policy resolves to: a hypothesis-model instance, an
 * estimator instance (optionally a sampler) and the decision rule. The
 * engine does not parse policies: daemon/policy builds bg_guard values and
 * owns the plugin instances in them; bench/bandit builds them directly.
 *
 *   bg_engine_observe   append the observation to the session's store (the
 *                       data that must not be lost), then update every
 *                       hypothesis's log-likelihood (batched through the
 *                       model), renormalise (max-shifted log-sum-exp) and
 *                       recompute the posterior order the estimator needs.
 *   bg_engine_evaluate  batched harm for the action + the estimator ->
 *                       bound, cautious hypothesis, plausible-set size ->
 *                       decision by threshold / mode / on_error.
 *
 * Sessions are keyed by (guard->name, guard->model_key, session). Only
 * observe creates a session: evaluate/summary of a session without
 * observations read one shared prior-only posterior per policy, so
 * evaluations with fresh session ids cost no memory (its id starts with
 * the byte 0x01: observe refuses such ids, BG_EINVAL). A reload
 * that keeps a policy's model (same model_key) keeps its posteriors; a new
 * model_key starts from the prior and replays the session's stored
 * observations (kept per (guard->name, session)).
 *
 * Threads: every function may be called from any thread concurrently; the
 * engine locks per session, never across sessions, and never holds a lock
 * while calling a plugin on another session's behalf. A bg_guard is borrowed
 * for the duration of each call (the policy snapshot reference held by the
 * caller keeps it alive).
 *
 * Errors: BG_OK, or BG_EINVAL (bad action/observation: message says what to
 * fix), BG_ELIMIT (session count or memory bound hit), BG_EINTERNAL (plugin
 * failure). A verdict is filled only on BG_OK — an internal error is never a
 * decision; the caller applies on_error.
 */
#ifndef BG_ENGINE_H
#define BG_ENGINE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

/* X(name, value, text) */
#define BG_DECISIONS(X)                                                                          \
    X(BG_DECISION_ALLOW, 1, "ALLOW")                                                             \
    X(BG_DECISION_DENY, 2, "DENY")                                                               \
    X(BG_DECISION_ESCALATE, 3, "ESCALATE")

typedef enum bg_decision {
#define BG_DECISION_ENUM(name, value, text) name = value,
    BG_DECISIONS(BG_DECISION_ENUM)
#undef BG_DECISION_ENUM
} bg_decision;

const char *bg_decision_name(bg_decision d);

/* Where the sampled path keeps its state for one sampler instance of a
 * guard (the samplers of its sessions, their locks, whether each was
 * trained): owned by the guard's owner and released with the instance, so
 * nothing is left behind. The sampled path fills state on first use and
 * sets state_free, which bg_sampler_slot_free calls first (while the
 * sampler plugin is still loaded), and state_ref. A reload that keeps a
 * policy's model, sampler plugin and sampler config shares the state with
 * the new instance (bg_sampler_slot_share), so trained samplers survive it;
 * the state then lives until the last slot sharing it is freed. */
typedef struct bg_sampler_slot {
    pthread_mutex_t mu; /* guards the fields */
    void *state;
    void (*state_free)(void *state); /* drops this slot's reference */
    void (*state_ref)(void *state);
} bg_sampler_slot;

/* Allocates and initialises an empty slot; NULL when out of memory. */
static inline bg_sampler_slot *bg_sampler_slot_new(void)
{
    bg_sampler_slot *sl = (bg_sampler_slot *)calloc(1, sizeof *sl);
    if (sl)
        pthread_mutex_init(&sl->mu, NULL);
    return sl;
}

/* to (fresh, not yet used) shares from's state, when it has one. */
static inline void bg_sampler_slot_share(bg_sampler_slot *to, bg_sampler_slot *from)
{
    pthread_mutex_lock(&from->mu);
    if (from->state && from->state_ref) {
        from->state_ref(from->state);
        pthread_mutex_lock(&to->mu);
        to->state = from->state;
        to->state_free = from->state_free;
        to->state_ref = from->state_ref;
        pthread_mutex_unlock(&to->mu);
    }
    pthread_mutex_unlock(&from->mu);
}

static inline void bg_sampler_slot_free(bg_sampler_slot *sl)
{
    if (sl) {
        if (sl->state_free)
            sl->state_free(sl->state);
        pthread_mutex_destroy(&sl->mu);
        free(sl);
    }
}

/* What a policy resolves to. All pointers borrowed (owned by the policy
 * snapshot) and immutable while any call uses them. */
typedef struct bg_guard {
    const char *name;      /* policy name */
    const char *revision;  /* policy-set revision (content hash) */
    uint64_t model_key;    /* hash of model plugin + its config: posterior identity */

    const char *model_name;
    const bg_hypothesis_vtbl *model;
    void *model_inst;

    const char *estimator_name;
    const bg_estimator_vtbl *estimator;
    void *estimator_inst;

    /* Optional: for models with count() == 0. */
    const char *sampler_name;
    const bg_sampler_vtbl *sampler;
    void *sampler_inst;
    uint32_t sampler_samples; /* K candidates per evaluation */
    /* The sampler instance's slot (owned with it); NULL without an owner
     * (tests, benches): the sampled path then keeps the state itself, keyed
     * by instance, for its own lifetime. */
    bg_sampler_slot *sampler_slot;
    /* Optional: a new instance of the guard's sampler (same plugin, config
     * and space) for one session (ctx: sampler_ctx; only while the guard
     * lives), with *keep = what the instance needs alive (its plugin, its
     * host services); returns a BG_E* code. sampler_drop destroys such an
     * instance and then releases keep: code of the host, valid for the
     * process, so a sampler table shared across reloads may call it after
     * the set that made the instance is gone. NULL: sampler_inst serves
     * every session. */
    int (*sampler_new)(void *ctx, void **inst, void **keep);
    void (*sampler_drop)(void *inst, void *keep);
    void *sampler_ctx;

    double threshold;             /* bound > threshold -> over_threshold */
    bg_decision over_threshold;   /* DENY or ESCALATE */
    int shadow;                   /* 1: log as usual, return ALLOW, flag shadow */

    /* Optional: keeps the guard's owner (the policy snapshot) alive past a
     * call, for work that outlives it — background sampler training holds
     * a reference while it trains. NULL when the guard outlives every use
     * (tests, benches): such work then runs inside the call instead. */
    void *owner;
    void (*owner_ref)(void *owner);
    void (*owner_unref)(void *owner);
    /* Unique in the process for this guard's plugin instances, never
     * reused (an instance's address may be, after a reload); 0 = none, then
     * state kept per instance is keyed by the instance address. */
    uint64_t instance_id;
} bg_guard;

typedef struct bg_verdict {
    bg_decision decision;
    double harm_bound;
    double posterior_predictive;
    uint64_t cautious_id;
    char cautious_label[128];
    double cautious_posterior;
    double cautious_harm;
    uint64_t plausible_set_size;
    int sampled;              /* 1 when the candidate set came from a sampler */
    uint64_t samples;         /* how many samples when sampled */
    int shadow;
    uint64_t observations;    /* observations in the session's posterior */
    uint64_t eval_us;         /* time spent in the engine */
} bg_verdict;

typedef struct bg_posterior_summary {
    uint64_t hypotheses;      /* candidates (N, or the sampled set) */
    uint64_t observations;
    uint64_t map_id;          /* the most probable hypothesis */
    char map_label[128];
    double map_posterior;
    double entropy_nats;
} bg_posterior_summary;

typedef struct bg_engine_opts {
    size_t max_sessions;         /* 0 = default 10000 */
    size_t max_bytes;            /* posterior memory bound, 0 = default 1 GiB */
    size_t max_obs_per_session;  /* 0 = default 1,000,000 */
    const char *data_dir;        /* observation store; NULL = memory only */
} bg_engine_opts;

typedef struct bg_engine bg_engine;

/* new: caller destroys. Replays the observation store found in data_dir. */
int bg_engine_create(const bg_engine_opts *opts, bg_engine **out, bg_err *err);
void bg_engine_destroy(bg_engine *e);

int bg_engine_evaluate(bg_engine *e, const bg_guard *g, const char *session,
                       const bg_action *action, bg_verdict *out, bg_err *err);

/* Stored (durably when data_dir is set) before it returns BG_OK. */
int bg_engine_observe(bg_engine *e, const bg_guard *g, const char *session,
                      const bg_observation *obs, bg_posterior_summary *out, bg_err *err);

int bg_engine_summary(bg_engine *e, const bg_guard *g, const char *session,
                      bg_posterior_summary *out, bg_err *err);

typedef struct bg_engine_stats {
    uint64_t sessions;
    uint64_t observations;
    uint64_t bytes;
    uint64_t evaluations;
    uint64_t store_refused; /* observations the data directory refused (not stored) */
    int store_broken;       /* Observe refused until a restart (see obs_store.h) */
} bg_engine_stats;

void bg_engine_stats_get(bg_engine *e, bg_engine_stats *out);

/* ------------------------------------------------------------ additions */

/* Copy the session's posterior P(h|D) for an enumerable model into
 * post[0..n) (n must equal the model's count()), caught up with every
 * stored observation. Used by bench/bandit's agent (its Boltzmann policy
 * needs E[w|D]) and by tests; the prior for a session never observed. */
int bg_engine_posterior(bg_engine *e, const bg_guard *g, const char *session, double *post,
                        size_t n, bg_err *err);

/* Drop a session's in-memory state (observations and posteriors) for
 * policy `guard_name`; stored observations stay in the log and come back
 * at the next bg_engine_create. BG_ENOTFOUND when there is none. */
int bg_engine_forget(bg_engine *e, const char *guard_name, const char *session);

/* The path for models with count() == 0 (hypotheses named by sampled ids),
 * provided by the gfn module. The engine validates the action/observation,
 * stores observations and keeps the history; these hooks compute the rest.
 * evaluate runs with the session's history read-locked, observe_after with
 * it write-locked right after the observation was stored and appended
 * (hist[n_hist-1] is the new one). Without hooks such a guard gets
 * BG_EUNSUPPORTED ("... needs the sampled path"); without a sampler in the
 * guard, BG_EINVAL ("policy X: model Y needs a sampler"). */
typedef struct bg_engine_sampled_ops {
    void *ctx;
    int (*evaluate)(void *ctx, const bg_guard *g, const char *session,
                    const bg_observation *hist, size_t n_hist, const bg_action *action,
                    bg_verdict *out, bg_err *err);
    int (*observe_after)(void *ctx, const bg_guard *g, const char *session,
                         const bg_observation *hist, size_t n_hist, bg_err *err);
} bg_engine_sampled_ops;

/* Borrowed: ops must outlive the engine. Set before any call that uses it. */
void bg_engine_set_sampled(bg_engine *e, const bg_engine_sampled_ops *ops);

/* An estimator's output before it becomes a verdict (both paths). _init
 * fills eo with values that fail every check, so an estimator that returns
 * OK without filling its output fails too; _check wants a bound and a
 * posterior predictive in [0, 1], a cautious index below n and a
 * plausible-set size in 1..n — else BG_EINTERNAL, never a decision. */
void bg_estimate_out_init(bg_estimate_out *eo);
int bg_estimate_out_check(const bg_guard *g, const bg_estimate_out *eo, size_t n, bg_err *err);

#endif
