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
 * A model too large to enumerate (count() == 0) goes down the sampled path
 * (sampled.h, same folder): the engine validates, stores and keeps the
 * history as for any model; the candidates are samples of the session's
 * sampler, trained inline or on the trainer thread as the guard says.
 *
 * Threads: every function may be called from any thread concurrently; the
 * engine locks per session, never across sessions, and never holds a lock
 * while calling a plugin on another session's behalf. A bg_guard is borrowed
 * for the duration of each call (the policy snapshot reference held by the
 * caller keeps it alive).
 *
 * Errors: BG_OK, or BG_EINVAL (bad action/observation: message says what to
 * fix), BG_ELIMIT (a memory bound with nothing idle left to evict, or a
 * per-identity quota), BG_EINTERNAL (plugin
 * failure). A verdict is filled only on BG_OK — an internal error is never a
 * decision; the caller applies on_error.
 */
#ifndef BG_ENGINE_H
#define BG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

/* X(name, value, text) */
#define BG_DECISIONS(X)                                                                            \
    X(BG_DECISION_ALLOW, 1, "ALLOW")                                                               \
    X(BG_DECISION_DENY, 2, "DENY")                                                                 \
    X(BG_DECISION_ESCALATE, 3, "ESCALATE")

typedef enum bg_decision {
#define BG_DECISION_ENUM(name, value, text) name = value,
    BG_DECISIONS(BG_DECISION_ENUM)
#undef BG_DECISION_ENUM
} bg_decision;

const char *bg_decision_name(bg_decision d);

/* The sampled path's objects (engine/sampled.h): the process-wide trainer
 * (settings + the one trainer thread) and a guard instance's sampled state
 * (the samplers of its sessions). */
typedef struct bg_sampled_trainer bg_sampled_trainer;
typedef struct bg_sampled bg_sampled;

/* How a sampled guard's samplers train on a session's observations. There
 * is no default: a guard with a sampler names one (bg_guard_check). */
typedef enum bg_train_mode {
    BG_TRAIN_UNSET = 0,      /* a guard without a sampler */
    BG_TRAIN_INLINE = 1,     /* inside Observe, under the session's write lock:
                                deterministic (tests, benches) */
    BG_TRAIN_BACKGROUND = 2, /* on the trainer thread; Observe returns at once
                                (policies). Needs bg_guard.owner. */
} bg_train_mode;

/* What keeps a guard alive past a call (the policy snapshot): background
 * training holds a reference while a job of the guard is queued or runs.
 * ref and unref are both set for BG_TRAIN_BACKGROUND, both NULL else. */
typedef struct bg_guard_owner {
    void *ctx;
    void (*ref)(void *ctx);
    void (*unref)(void *ctx);
} bg_guard_owner;

/* Makes the sampler of one session: a new instance of the guard's sampler
 * (same plugin, config and space). create(ctx, &inst, &keep) returns a
 * BG_E* code; ctx is valid only while the guard is; *keep is what the
 * instance needs alive (its plugin, its services). destroy(inst, keep)
 * destroys it and releases keep: code valid for the process, so session
 * samplers handed across a reload may be destroyed after the set that made
 * them is gone. */
typedef struct bg_sampler_factory {
    void *ctx;
    int (*create)(void *ctx, void **inst, void **keep);
    void (*destroy)(void *inst, void *keep);
} bg_sampler_factory;

/* What a sampled guard does with a sampler it cannot trust (the policy's
 * spec.sampler.on_unhealthy): fail the Evaluate with BG_EUNAVAIL (retry,
 * never a decision), or decide DENY / ESCALATE (the stricter of that and
 * the threshold's decision), the verdict saying why. */
typedef enum bg_on_unhealthy {
    BG_UNHEALTHY_UNAVAILABLE = 0,
    BG_UNHEALTHY_DENY = 1,
    BG_UNHEALTHY_ESCALATE = 2,
} bg_on_unhealthy;

/* The limits a sampled verdict's sampler health must meet (policy keys
 * spec.sampler.max_tb_residual, min_ess, max_version_lag, on_unhealthy;
 * docs/POLICIES.md). enabled 0 (a zeroed guard: tests, benches): health
 * is reported, never judged. */
typedef struct bg_sampler_limits {
    int enabled;
    double max_tb_residual;   /* nats: tb_residual above it is unhealthy */
    double min_ess;           /* ess below it is unhealthy */
    uint64_t max_version_lag; /* version_lag above it is unhealthy */
    bg_on_unhealthy on_unhealthy;
} bg_sampler_limits;

/* A sampled verdict's account of its sampler (sampled.h, "Health"), at
 * the training state the candidates were drawn in, against the session's
 * current reward: no trajectory beyond the K candidates. */
typedef struct bg_sampler_health {
    int healthy;              /* within the guard's limits (always 1 when not enabled) */
    double tb_residual;       /* RMS of log w - mean log w over the K draws, nats */
    double log_weight_spread; /* max - min log w over the distinct candidates, nats */
    double ess;               /* (sum w)^2 / sum w^2 over the K draws, in [1, K] */
    uint64_t train_steps;     /* steps trained at the reward version of the draw */
    uint64_t version_lag;     /* observations the sampler had not trained on */
    /* The session sampler's posterior search archive (sampled_archive.c)
     * that the verdict's candidates included: its members, the
     * observations made since its search (the session's history length
     * when there is none: no search has seen any of them), and the reward
     * evaluations and thread CPU time (µs) of the search that made it.
     * Reported, never judged. */
    uint64_t archive_size;
    uint64_t archive_version_lag;
    uint64_t search_evaluations;
    uint64_t search_cpu_us;
    /* This action's remembered context (sampled_context.c): its kept
     * candidates among the verdict's, the per-context search rounds it has
     * had, and the observations made since its newest one (the session's
     * history length when it has had none). All 0 when the context is not
     * remembered (contexts off, no data, an action over the size limit).
     * Reported, never judged. */
    uint64_t context_kept;
    uint64_t context_rounds;
    uint64_t context_version_lag;
    char reason[224]; /* why unhealthy (which limit, by how much); "" if healthy */
} bg_sampler_health;

/* What a policy resolves to. All pointers borrowed (owned by the policy
 * snapshot) and immutable while any call uses them. Which fields must be
 * set is checked by bg_guard_check, which whoever builds a guard calls. */
typedef struct bg_guard {
    const char *name;     /* policy name */
    const char *revision; /* policy-set revision (content hash) */
    uint64_t model_key;   /* hash of model plugin + its config: posterior identity */

    const char *model_name;
    const bg_hypothesis_vtbl *model;
    void *model_inst;

    const char *estimator_name;
    const bg_estimator_vtbl *estimator;
    void *estimator_inst;

    /* The sampled path, for models with count() == 0 (or sampler_always):
     * sampler, sampler_inst, sampled and train are all set, or none is. */
    const char *sampler_name;
    const bg_sampler_vtbl *sampler;
    void *sampler_inst;
    uint32_t sampler_samples; /* K candidates per evaluation; 0: the trainer's default */
    /* 1: the sampled path even for a model that enumerates (count() > 0),
     * so a policy's sampled bound can be held against the exact one of the
     * same policy without it (spec.sampler.always); needs a sampler. */
    int sampler_always;
    /* Optimiser steps per observation of this guard's samplers; 0: the
     * trainer's train_steps (spec.sampler.train_steps). */
    uint32_t sampler_train_steps;
    /* Hypotheses the harm-directed refinement may score per sampled
     * Evaluate (engine/sampled_refine.c): 0 the trainer's budget
     * (bg_sampled_opts.refine), -1 none, > 0 this many
     * (spec.sampler.refine; the policy loader gives a token-sequence space
     * none unless the policy says otherwise). */
    int32_t sampler_refine;
    /* Reward evaluations of the posterior search after each training round
     * of this guard's samplers (engine/sampled_archive.c): 0 the
     * trainer's budget (bg_sampled_opts.search), -1 none, > 0 this many
     * (spec.sampler.search; none on a token-sequence space unless the
     * policy says otherwise). */
    int32_t sampler_search;
    /* Contexts remembered per session sampler, each searched for on the
     * trainer thread after every training round
     * (engine/sampled_context.c), and the hypotheses looked at per
     * context and round: 0 the trainer's (bg_sampled_opts.contexts,
     * .context_search; a budget nobody set grows with the space's bits:
     * bg_sampled_context_search_default, engine/sampled.h), -1 none, > 0
     * this many (spec.sampler.contexts,
     * spec.sampler.context_search; none on a token-sequence space unless
     * the policy says otherwise). */
    int32_t sampler_contexts;
    int32_t sampler_context_search;
    bg_sampled *sampled; /* this instance's sampled state (engine/sampled.h), made
                            for sampler_inst and destroyed with it */
    bg_train_mode train;
    /* 1: each session with data gets its own sampler from session_sampler
     * (both functions set); 0: sampler_inst serves every session
     * (session_sampler all NULL). */
    int per_session;
    bg_sampler_factory session_sampler;
    bg_guard_owner owner; /* set for BG_TRAIN_BACKGROUND only */

    bg_sampler_limits sampler_limits; /* when a sampled verdict's sampler is trusted */

    double threshold;           /* bound > threshold -> over_threshold */
    bg_decision over_threshold; /* DENY or ESCALATE */
    int shadow;                 /* 1: log as usual, return ALLOW, flag shadow */
} bg_guard;

/* BG_OK when g's options are consistent: a name, a model and an estimator;
 * for a sampler, sampler_inst, sampled (made for that instance) and a train
 * mode; owner.ref/unref exactly for BG_TRAIN_BACKGROUND; session_sampler
 * fully set exactly when per_session. Else BG_EINVAL naming the field. The
 * sampled path asserts the same (BG_ASSERT) on every call. */
int bg_guard_check(const bg_guard *g, bg_err *err);

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
    bg_sampler_health health; /* when sampled */
    int shadow;
    uint64_t observations; /* observations in the session's posterior */
    uint64_t eval_us;      /* time spent in the engine */
} bg_verdict;

typedef struct bg_posterior_summary {
    uint64_t hypotheses; /* candidates (N, or the sampled set) */
    uint64_t observations;
    uint64_t map_id; /* the most probable hypothesis */
    char map_label[128];
    double map_posterior;
    double entropy_nats;
} bg_posterior_summary;

/* The outcome receipt an observation was accepted with (daemon/receipt:
 * the caller has checked it). Its id (the decision id) is accepted once per
 * engine: the engine keeps the ids used, rebuilt at start from the
 * observation log (each such observation is stored with its receipt), and
 * forgets an id once its expiry has passed (a receipt past its expiry is
 * refused before it gets here). */
typedef struct bg_obs_receipt {
    char id[256];           /* the decision id */
    int64_t expiry_unix_ms; /* wall clock */
    unsigned flags;         /* BG_RECEIPT_* (daemon/receipt/receipt.h) */
} bg_obs_receipt;

/* ------------------------------------------------------------ fleet hooks
 * Fleet mode (daemon/fleet, docs/FLEET.md) ships the observations of this
 * engine and applies those of its peers. The engine gives it two points:
 *
 *  - stored: called for every record of the local log, in log order, with
 *    its record number lsn (0, 1, ... since the log began): at start for
 *    each record replayed (replayed = 1), then for each observation once it
 *    is durable (replayed = 0), before the Observe is acknowledged. rec is
 *    the record's encoding (observation.h, the log's own), rc its receipt
 *    (NULL: none); a record applied from the fleet has rc->flags &
 *    BG_OBS_RECEIPT_FLEET and rc->id its fleet id. Called with the engine's
 *    append lock held: copy what is needed, never call into the engine.
 *    Needs data_dir (the local log is the fleet's outbox).
 *  - bg_engine_fleet_apply / bg_engine_fleet_settle (below).
 *
 * Order: the stream is the one total order. hist[0..settled) of a session
 * is in stream order; local observations are applied at once (appended
 * after it) and settled when the stream hands them back; a remote one is
 * inserted at the settled position. A session whose order changed drops
 * its posteriors, which the next call rebuilds from the history through the
 * same per-observation arithmetic (session.h) — so once every observation
 * is settled, every sidecar holds the same history in the same order and
 * bit-identical posteriors. */
/* rc->flags bit of a peer's observation (the log keeps a receipt's flags
 * in one byte: the top bit is the fleet's; receipt.h's BG_RECEIPT_* flags
 * stay below it). */
#define BG_OBS_RECEIPT_FLEET 0x80u

typedef struct bg_engine_fleet_hooks {
    void *ctx;
    void (*stored)(void *ctx, uint64_t lsn, const char *guard, const char *session,
                   const uint8_t *rec, size_t len, const bg_obs_receipt *rc, int replayed);
} bg_engine_fleet_hooks;

/* Called once an observation is durable in the log (engine.h's outbox
 * hook, for fleet shipping): guard, session and the observation as stored
 * (arguments hashed), and the record's place: segment seq and byte offset
 * in it (obs_store.h; `bayesguard store verify --json` and bg_store_scan
 * in store_tool.h read from such a place). Runs on the Observe's thread
 * while it holds that session's lock, before the Observe is acknowledged:
 * keep it short (copy and hand off), never call the engine from it. */
typedef void (*bg_engine_durable_cb)(void *ctx, const char *guard, const char *session,
                                     const bg_observation *obs, uint64_t segment, uint64_t offset);

typedef struct bg_engine_opts {
    /* Sessions whose posterior stays in memory, 0 = default 10000: past it
     * (or past max_bytes) the least recently used idle session's posterior
     * is evicted, and rebuilt from its history when used again (session.h).
     * Sessions themselves are bounded by max_bytes and the quota below. */
    size_t max_sessions;
    size_t max_bytes;           /* every byte of sessions, 0 = default 1 GiB */
    size_t max_obs_per_session; /* 0 = default 1,000,000 */
    const char *data_dir;       /* observation store; NULL = memory only */
    /* The log in data_dir (obs_store.h, docs/STORE.md): segment size (0:
     * 64 MiB), compaction once sealed segments hold snapshot_bytes (0:
     * never), one fdatasync per record instead of group commit (the
     * benchmark's baseline), and the durable-append hook (may be NULL). */
    uint64_t segment_bytes;
    uint64_t snapshot_bytes;
    int per_record_sync;
    bg_engine_durable_cb on_durable;
    void *durable_ctx;
    /* Borrowed, must outlive the engine: the sampled path's trainer
     * (engine/sampled.h). NULL: guards whose model has count() == 0 get
     * BG_EUNSUPPORTED ("... needs the sampled path"). */
    bg_sampled_trainer *trainer;
    /* Per-identity quotas (engine/quota.h), applied to the owner given to
     * bg_engine_observe_owned / bg_engine_admit: sessions an identity may
     * start (0: no limit) and its observations per second with a burst
     * (rate 0: no limit). */
    size_t max_sessions_per_identity;
    double max_observe_rate;
    double observe_burst;
    /* Borrowed, must outlive the engine; NULL: no fleet (see above). */
    const bg_engine_fleet_hooks *fleet;
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

/* bg_engine_observe, accepting rc's id once: an id already used (since
 * its receipt was minted, across restarts with the same data_dir) is
 * BG_EEXIST and nothing is stored. rc NULL: bg_engine_observe. The id is
 * claimed before the observation is stored and released if storing
 * fails, so two concurrent Observes with one receipt store one outcome. */
int bg_engine_observe_receipt(bg_engine *e, const bg_guard *g, const char *session,
                              const bg_observation *obs, const bg_obs_receipt *rc,
                              bg_posterior_summary *out, bg_err *err);

/* bg_engine_observe_receipt on behalf of `owner` (the caller's identity,
 * "" counts as one): a session it starts counts against its
 * max_sessions_per_identity (BG_ELIMIT naming the identity, the limit and
 * --max-sessions-per-identity; nothing stored). owner NULL: no quota. */
int bg_engine_observe_owned(bg_engine *e, const bg_guard *g, const char *session,
                            const bg_observation *obs, const bg_obs_receipt *rc, const char *owner,
                            bg_posterior_summary *out, bg_err *err);

/* One observation of `owner`'s rate (token bucket of max_observe_rate per
 * second, observe_burst deep): BG_OK, or BG_ELIMIT naming the identity, the
 * rate and --max-observe-rate. Called once per Observe request, before it
 * is stored (a two-level key stores it twice: one token). */
int bg_engine_admit(bg_engine *e, const char *owner, bg_err *err);

int bg_engine_summary(bg_engine *e, const bg_guard *g, const char *session,
                      bg_posterior_summary *out, bg_err *err);

typedef struct bg_engine_stats {
    uint64_t sessions;
    uint64_t observations;
    uint64_t bytes;
    uint64_t resident_sessions; /* sessions holding a posterior in memory */
    uint64_t evictions;         /* idle sessions whose posteriors were evicted */
    uint64_t evaluations;
    uint64_t store_refused;     /* observations the data directory refused (not stored) */
    int store_broken;           /* Observe refused until a restart (see obs_store.h) */
    uint64_t receipts_used;     /* receipt ids remembered as used (not yet expired) */
    uint64_t store_quarantined; /* records replay set aside (over the memory limits) */
    uint64_t store_syncs;       /* fdatasync calls of appends (group commit: <= appends) */
    uint64_t store_appends;     /* observations appended since start */
    uint64_t store_snapshots;   /* compactions done since start */
} bg_engine_stats;

void bg_engine_stats_get(bg_engine *e, bg_engine_stats *out);

/* Seal the log's current segment and compact every sealed one into a
 * snapshot now (obs_store.h); BG_OK without a data_dir. Any thread. */
int bg_engine_compact(bg_engine *e, bg_err *err);

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

/* An estimator's output before it becomes a verdict (both paths). _init
 * fills eo with values that fail every check, so an estimator that returns
 * OK without filling its output fails too; _check wants a bound and a
 * posterior predictive in [0, 1], a cautious index below n and a
 * plausible-set size in 1..n — else BG_EINTERNAL, never a decision. */
void bg_estimate_out_init(bg_estimate_out *eo);
int bg_estimate_out_check(const bg_guard *g, const bg_estimate_out *eo, size_t n, bg_err *err);

/* The model's label of hypothesis id in buf[0..len), len >= 1: always
 * NUL-terminated (cut at len - 1 even when the plugin wrote past its end
 * of the string), "#<id>" when the model has no label entry or it fails. */
void bg_hypothesis_label(const bg_guard *g, uint64_t id, char *buf, size_t len);

/* Apply a peer's observation: rec is a record's encoding as the stored
 * hook gave it on the peer (untrusted: decoded and checked like an
 * Observe), whose policy must be g->name (else BG_EINVAL). Stored in the
 * local log with fid (the fleet id, < 256 bytes) as a BG_OBS_RECEIPT_FLEET
 * receipt, so a restart knows it was applied; inserted at the session's
 * settled position. The caller applies each fid once (its set of applied
 * ids is rebuilt from the stored hook's replay). Errors as
 * bg_engine_observe; the limits are a local Observe's, with no identity. */
int bg_engine_fleet_apply(bg_engine *e, const bg_guard *g, const char *fid, const uint8_t *rec,
                          size_t len, bg_err *err);

/* The stream handed back record lsn of policy guard_name's session: move it
 * to the settled position. BG_OK when it was settled now, BG_EEXIST when it
 * was settled already (nothing changed), BG_ENOTFOUND when the session
 * holds no such record (forgotten, or never stored). */
int bg_engine_fleet_settle(bg_engine *e, const char *guard_name, const char *session, uint64_t lsn);

/* The fleet's snapshot (docs/FLEET.md, bootstrap): cb for every settled
 * observation of every session, in each session's stream order, with its
 * record number and encoding (as the stored hook gives them; no receipt).
 * Each session is read under its lock; the caller keeps the settled
 * prefixes still (the fleet's reader thread is the one that settles). A
 * cb error stops the export and is returned. */
typedef int (*bg_engine_export_cb)(void *ctx, uint64_t lsn, const char *guard, const char *session,
                                   const uint8_t *rec, size_t len);
int bg_engine_fleet_export(bg_engine *e, bg_engine_export_cb cb, void *ctx);

#endif
