/*
 * sampled.h — the engine's sampled path, for hypothesis models too large to
 * enumerate (count() == 0): the guard's sampler plugin is trained on the
 * session's reward R(h) = P(h)·P(D|h) after each observation, and an
 * evaluation takes K samples, deduplicates them, scores them by their exact
 * log-posterior (normalised over the candidates), asks the model for the
 * harm, adds the session's search archive (sampled_archive.c: the best
 * hypotheses Metropolis chains on the exact reward found after each
 * training round, on the trainer thread) and, for a context the session
 * asked about before, what the trainer's per-context search kept for it
 * (sampled_context.c), refines the candidates towards
 * the estimator's cautious hypothesis
 * (sampled_refine.c: bit-flip climbs, exactly scored, at most
 * bg_sampled_opts.refine looked at) and asks the estimator for the bound;
 * the verdict says it is sampled and from how many samples. engine.c
 * calls it directly (sampled_priv.h).
 *
 * Health (sampled_health.c): each sampled verdict reports its sampler's
 * health (engine.h bg_sampler_health) from the draw alone — the
 * importance weights log R − log q of its candidates (residual, spread,
 * ESS) and the training state it was drawn in (steps at the current
 * reward version, observations not yet trained on) — and the guard's
 * bg_sampler_limits judge it: outside them, BG_EUNAVAIL (retry; a
 * background sampler short of training gets another round) or a DENY /
 * ESCALATE decided by the engine. Beside them, reported and never judged:
 * the search archive the candidates included and this action's remembered
 * context (how many of its kept candidates joined, its search rounds, the
 * observations since its newest search).
 *
 * Two objects:
 *
 *   bg_sampled_trainer  process-wide: the settings of the sampled path and
 *       the one trainer thread. Created before the engine (main.c, a test),
 *       handed to it in bg_engine_opts.trainer, destroyed after it and
 *       before the policy store and plugin host go (queued jobs hold
 *       references on policy sets).
 *   bg_sampled          per guard instance (bg_guard.sampled): the sampler
 *       instance's lock and state, and the samplers of its sessions. Made
 *       with the policy's sampler instance and destroyed with it; a reload
 *       that keeps the policy's model, sampler plugin and sampler config
 *       hands the session samplers to the new instance (bg_sampled_inherit),
 *       so trained samplers survive it.
 *
 * Sessions: a sampler amortises the posterior of the data it was trained
 * on, and sessions' data differ, so with bg_guard.per_session each session
 * with data gets its own sampler (bg_guard.session_sampler), trained on its
 * own history. A session without data samples the instance's own, never
 * trained sampler (the prior): it makes and drops no session sampler. At
 * most max_sessions session samplers are kept per guard: an idle one is
 * dropped, untrained before trained, then least recently used, and retrained
 * from the stored history when its session comes back. Without per_session
 * (tests, benches) the instance's sampler serves, and trains on, every
 * session.
 *
 * Training (bg_guard.train):
 *   BG_TRAIN_INLINE      inside Observe, under the session's write lock:
 *                        deterministic (tests, benches).
 *   BG_TRAIN_BACKGROUND  Observe copies the history into a job, takes a
 *                        reference on the guard's owner and returns; the
 *                        trainer runs the job's owed optimiser steps
 *                        (train_steps per observation: the guard's
 *                        sampler_train_steps, else the trainer's; the
 *                        whole history's for a sampler that never trained
 *                        on the session) in chunks of at most
 *                        max(50, train_steps) (train_steps for an
 *                        untrained sampler: what makes it usable), one step
 *                        per write lock, so an Evaluate waits for at most one
 *                        step. Jobs of one sampler coalesce to the newest
 *                        history; untrained samplers go first, else the
 *                        oldest job; a job with steps left goes to the back;
 *                        at most max_sessions jobs wait (more: BG_EUNAVAIL).
 *
 * The reward a sampler trains on is log P(h) + Σ log P(obs_i | obs_<i, h)
 * over the history as it stands, and it carries a version (plugin ABI 1.2:
 * a digest of the model and that history, bg__history_version): the
 * reward moves with every observation, and a sampler that stored rewards
 * (gfn's replay buffer) re-scores those of another version before it
 * replays or ranks them.
 *
 * The state of one session's sampler (of the instance's own sampler too:
 * it is made with the bg_sampled); its state word holds a trained bit
 * (atomic) and a job bit (changed under the trainer's mutex):
 *
 *     (none) ──get──▶ UNTRAINED ─────── schedule ───────▶ PENDING
 *                      │   ▲                                 │
 *        train_inline  │   └──── job done, not trained ──────┤ train_steps
 *                      ▼                                     ▼ steps run
 *                   TRAINED ◀────────── job done ─────── RETRAINING
 *                      └──────────────── schedule ───────────▲
 *     UNTRAINED, TRAINED ──evict (idle, over max_sessions)──▶ (none)
 *
 *   get            sampled_sessions.c bg__sampler_get: made by the factory
 *   schedule       sampled.c schedule: a job queued (Observe; Evaluate of an
 *                  untrained sampler of a session with data)
 *   train_inline   sampled.c train_run from observe (BG_TRAIN_INLINE)
 *   steps run      sampled.c train_run on the trainer thread
 *   job done       sampled.c trainer_main: the job finished, failed or the
 *                  trainer stopped, and no newer job of the sampler waits
 *   evict          sampled_sessions.c evict
 *
 * Invariants (1 and 2 checked with BG_ASSERT by bg__assert_sampler_state
 * at each transition and before a sampler is destroyed):
 *   1. the job bit is set exactly while a job of the sampler is queued or
 *      running (never for BG_TRAIN_INLINE guards);
 *   2. a sampler with a job has a reference from it, so it is never evicted
 *      (evict takes only samplers without references);
 *   3. the trained bit, once set, stays set;
 *   4. a BG_TRAIN_BACKGROUND verdict for a session with data comes only
 *      from TRAINED or RETRAINING: else Evaluate schedules and answers
 *      BG_EUNAVAIL (retry), never a verdict about nothing.
 *
 * Threads: the engine calls from any thread. Per sampler a rwlock
 * serialises train (write) against sample (read), writer-preferring, as
 * the plugin ABI requires. A bg_sampled's session table is shared by
 * reference between the instances a reload handed it to.
 *
 * Ownership: bg_sampled_trainer_create and bg_sampled_create return new
 * objects; the sampler instance given to bg_sampled_create is borrowed and
 * must outlive the object.
 */
#ifndef BG_ENGINE_SAMPLED_H
#define BG_ENGINE_SAMPLED_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"
#include "engine/engine.h"

typedef struct bg_sampled_opts {
    uint32_t train_steps; /* optimiser steps per observation; 0 = 20 */
    uint32_t default_k;   /* samples when the guard says 0; 0 = 1024 */
    uint64_t seed;        /* evaluation sampling seed (mixed with session, #obs) */
    size_t max_sessions;  /* session samplers kept per guard, jobs queued; 0 = 64 */
    /* Hypotheses the harm-directed refinement may score per Evaluate
     * (sampled_refine.c); 0 = BG_SAMPLED_REFINE_DEFAULT, < 0 = none. */
    int32_t refine;
    /* Reward evaluations of the posterior search after each training round
     * of a session sampler (sampled_archive.c); 0 = BG_SAMPLED_SEARCH_DEFAULT,
     * < 0 = none. */
    int32_t search;
    /* Contexts (actions) remembered per session sampler and searched for on
     * the trainer thread after each training round (sampled_context.c);
     * 0 = BG_SAMPLED_CONTEXTS_DEFAULT, < 0 = none. */
    int32_t contexts;
    /* Hypotheses looked at per remembered context per round; 0 = the
     * default for each guard's space (bg_sampled_context_search_default),
     * < 0 = none. */
    int32_t context_search;
} bg_sampled_opts;

#define BG_SAMPLED_REFINE_DEFAULT 4096
/* 65,536 since 2026-12-06 (16,384 before): at d = 64 the archive holds 3-4x
 * as many hypotheses at the posterior's top level, which is what the
 * cautious hypotheses of most contexts need (docs/GFLOWNET.md, "Posterior
 * search archive"); 4-10 % of the training's CPU per observation. */
#define BG_SAMPLED_SEARCH_DEFAULT 65536

/* Remembered contexts: 64 per session sampler by default (since
 * 2026-12-06; the measurement and the lead's decision: docs/GFLOWNET.md,
 * "A search per remembered context"). The kept candidates join after the
 * refinement, so a verdict's candidates are a superset of those without
 * it: the iid objective (posterior x harm of the cautious pick) can only
 * rise and the non-iid floor is never lowered (sampled_refine.c). At
 * d = 64 the iid bound below a long MH run's fell from 227 to 94
 * context-checkpoints (held out 165 to 90), for 6-12 % more training CPU
 * (d = 32: 7-18 %). */
#define BG_SAMPLED_CONTEXTS_DEFAULT 64
/* The per-context search's budget at n_bits <= 32, and the most any
 * default reaches (the accepted maximum of spec.sampler.context_search). */
#define BG_SAMPLED_CONTEXT_SEARCH_DEFAULT 1024
#define BG_SAMPLED_CONTEXT_SEARCH_MAX 65536

/* The hypotheses looked at per remembered context and round when neither
 * the policy (spec.sampler.context_search) nor the trainer
 * (bg_sampled_opts.context_search) sets them, for a model whose space is
 * n_bits bits with flags space_flags (bg_space): on a bit set (flags 0)
 * BG_SAMPLED_CONTEXT_SEARCH_DEFAULT up to 32 bits, doubled every 8 bits
 * above, 1024 * 2^floor((n_bits - 32) / 8) (d = 40: 2048, 48: 4096, 56:
 * 8192, 64: 16384), never above BG_SAMPLED_CONTEXT_SEARCH_MAX; on any
 * other space (a token sequence) BG_SAMPLED_CONTEXT_SEARCH_DEFAULT, as
 * before. Why: at d = 64 1024 misses MH's cautious pick by > 2 nats in a
 * few contexts that 16384 finds (docs/GFLOWNET.md, "The context search's
 * budget: a ladder" and the d-scaled default's subsection after it). */
uint32_t bg_sampled_context_search_default(uint32_t n_bits, uint32_t space_flags);

/* A session sampler's state (the diagram above). */
typedef enum bg_sampler_state {
    BG_SAMPLER_NONE = -1, /* no sampler for the session (never made, or evicted) */
    BG_SAMPLER_UNTRAINED = 0,
    BG_SAMPLER_TRAINED = 1,
    BG_SAMPLER_PENDING = 2,    /* untrained, a job queued or running */
    BG_SAMPLER_RETRAINING = 3, /* trained, a newer job queued or running */
} bg_sampler_state;

/* ---- the process-wide trainer */

int bg_sampled_trainer_create(const bg_sampled_opts *opts, bg_sampled_trainer **out, bg_err *err);
/* Stops the thread and drops queued jobs (and their owner references). */
void bg_sampled_trainer_destroy(bg_sampled_trainer *t);

/* Block until no job is queued or running and the last one has dropped its
 * references (tests, shutdown). */
void bg_sampled_trainer_wait_idle(bg_sampled_trainer *t);
/* Tests and diagnostics: hold (1) or release (0) the trainer — it starts no
 * job while held; the session of the job it would run next (0 when none)
 * and how many are queued; optimiser steps run so far (all samplers, inline
 * ones included); background jobs completed. */
void bg_sampled_trainer_hold(bg_sampled_trainer *t, int hold);
int bg_sampled_trainer_next(bg_sampled_trainer *t, char *session, size_t len, size_t *queued);
uint64_t bg_sampled_trainer_steps(bg_sampled_trainer *t);
uint64_t bg_sampled_trainer_jobs(bg_sampled_trainer *t);
/* Tests and benches: the refinement budget of every Evaluate from now on
 * (bg_sampled_opts.refine; <= 0: no refinement), to compare the verdicts of
 * one draw with and without it. */
void bg_sampled_trainer_refine(bg_sampled_trainer *t, int32_t refine);
/* Tests and benches: whether Evaluates use the search archive (1, the
 * default) or not (0), to compare the verdicts of one draw with and
 * without it; and the search budget of training rounds from now on
 * (bg_sampled_opts.search; <= 0: no search). */
void bg_sampled_trainer_use_archive(bg_sampled_trainer *t, int on);
void bg_sampled_trainer_search(bg_sampled_trainer *t, int32_t search);
/* Posterior searches run so far (all samplers), their reward evaluations
 * and their thread CPU time in ns (diagnostics, benches, /metrics). Any
 * thread. */
void bg_sampled_trainer_search_stats(bg_sampled_trainer *t, uint64_t *searches, uint64_t *evals,
                                     uint64_t *cpu_ns);
/* Tests and benches: contexts remembered per session sampler (<= 0: off)
 * and the hypotheses looked at per context and round from now on (> 0
 * this many, 0 the default for each guard's space, < 0 none), for guards
 * that leave them to the trainer. */
void bg_sampled_trainer_contexts(bg_sampled_trainer *t, int32_t contexts, int32_t budget);
/* The hypotheses g's per-context searches look at per context and round
 * (0: none): the guard's sampler_context_search, else the trainer's, else
 * bg_sampled_context_search_default of g's model's space. Any thread. */
uint32_t bg_sampled_trainer_context_budget(bg_sampled_trainer *t, const bg_guard *g);
/* Per-context search rounds run so far (all samplers; one per training
 * round with remembered contexts), the contexts searched, the hypotheses
 * looked at, the reward evaluations and the thread CPU time in ns. */
void bg_sampled_trainer_context_stats(bg_sampled_trainer *t, uint64_t *rounds, uint64_t *contexts,
                                      uint64_t *looked, uint64_t *evals, uint64_t *cpu_ns);
/* The members of the archive the newest search made (any sampler; 0
 * before the first): /metrics' bayesguard_sampler_search_archive_size. */
uint64_t bg_sampled_trainer_search_size(bg_sampled_trainer *t);

/* ---- one guard instance's sampled state */

/* new: bg_sampled_destroy. sampler_inst: the guard's sampler instance
 * (bg_guard.sampler_inst), borrowed. BG_ENOMEM. */
int bg_sampled_create(void *sampler_inst, bg_sampled **out, bg_err *err);
/* Drops this instance's reference on its session samplers (the last one
 * destroys them, through the factory that made them). Call it before the
 * sampler instance is destroyed. NULL is a no-op. */
void bg_sampled_destroy(bg_sampled *sd);
/* Before `to` is used (fresh from bg_sampled_create, not yet published):
 * `to` takes over from's session samplers, shared by reference (a reload
 * that keeps model, sampler plugin and sampler config). */
void bg_sampled_inherit(bg_sampled *to, bg_sampled *from);

/* Session samplers held now; the state of `session`'s (NULL: the instance's
 * own sampler). Tests and diagnostics. */
size_t bg_sampled_samplers(bg_sampled *sd);
/* Contexts remembered now by the instance's samplers, its own and its
 * sessions' (sampled_context.c; each sampler at most its cap): /metrics'
 * bayesguard_sampler_contexts_remembered. Takes the session table's mutex and each
 * context table's, never a lock the trainer holds for a round. Any
 * thread. */
size_t bg_sampled_contexts(bg_sampled *sd);
bg_sampler_state bg_sampled_state(bg_sampled *sd, const char *session);

#endif
