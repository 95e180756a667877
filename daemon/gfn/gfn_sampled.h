/*
 * gfn_sampled.h — the engine's sampled path (engine.h:
 * bg_engine_sampled_ops) for hypothesis models too large to enumerate
 * (count() == 0): the guard's sampler plugin is trained on the session's
 * reward R(h) = P(h)·P(D|h) after each observation, and an evaluation
 * takes K samples, deduplicates them, scores them by their exact
 * log-posterior (normalised over the candidates), asks the model for the
 * harm and the estimator for the bound; the verdict says it is sampled and
 * from how many samples.
 *
 * This file is daemon code (bg_err, engine.h); it is not part of the
 * sources compiled into the sampler plugin.
 *
 * Training: for a guard with an owner (bg_guard.owner_ref, set by policy
 * snapshots) observe_after copies the history into a job and returns; a
 * trainer thread owned by this context runs the job's owed optimiser steps
 * (`train_steps` per observation; the whole history's for a sampler that
 * never trained on the session) in chunks of at most 50 (train_steps for
 * a sampler that has not trained yet: what makes it usable), taking the
 * sampler's write lock one step at a time, so an Evaluate waits for at most
 * one step and the verdict uses the last trained state. Jobs of one sampler
 * coalesce to the newest history; the trainer takes untrained samplers
 * first (their sessions get no decision meanwhile), else the oldest job,
 * and sends a job with steps left to the back of the queue; at most
 * max_sessions jobs wait (more are refused: BG_EUNAVAIL, memory bounded).
 * For a guard without an owner (tests, benches) training runs inside
 * observe_after, under the session's write lock, deterministically.
 *
 * Sessions: each session of a guard has its own sampler instance
 * (bg_guard.sampler_new), trained on its own history only — a sampler
 * amortises the posterior of the data it saw, and sessions' data differ.
 * A session without data samples the guard's shared, untrained instance
 * (the prior), so it makes and drops no session sampler.
 * At most max_sessions per guard keep one (least recently used idle ones
 * are dropped and retrained from the stored history when used again). A
 * guard without sampler_new shares its one instance among its sessions.
 *
 * Threads: the ops may be called from any thread. Per session sampler a
 * rwlock serialises train (write) against sample (read), as the plugin
 * ABI requires; the table lives in the guard's sampler_slot (engine.h),
 * owned with the instance, or for a guard without one in a table here kept
 * until bg_gfn_sampled_destroy (gfn_sessions.h).
 *
 * Ownership: bg_gfn_sampled_create returns a new context; the ops table
 * points into it and is valid until bg_gfn_sampled_destroy, which must
 * come after the engine that uses it is destroyed and before the policy
 * store and plugin host (pending jobs hold snapshot references).
 */
#ifndef BG_GFN_SAMPLED_H
#define BG_GFN_SAMPLED_H

#include <stdint.h>

#include "common/bg_err.h"
#include "engine/engine.h"

typedef struct bg_gfn_sampled_opts {
    uint32_t train_steps; /* optimiser steps per observation; 0 = 20 */
    uint32_t default_k;   /* samples when the guard says 0; 0 = 1024 */
    uint64_t seed;        /* evaluation sampling seed (mixed with session, #obs) */
    size_t max_sessions;  /* session samplers kept per guard; 0 = 64 */
} bg_gfn_sampled_opts;

typedef struct bg_gfn_sampled bg_gfn_sampled;

int bg_gfn_sampled_create(const bg_gfn_sampled_opts *opts, bg_gfn_sampled **out, bg_err *err);
void bg_gfn_sampled_destroy(bg_gfn_sampled *s);
const bg_engine_sampled_ops *bg_gfn_sampled_ops(bg_gfn_sampled *s);

/* Block until no training job is queued or running and the last one has
 * dropped its references (tests, shutdown). */
void bg_gfn_sampled_wait_idle(bg_gfn_sampled *s);
/* Session samplers g holds now; whether the one of `session` was trained
 * (1), not yet (0), or does not exist (-1). Tests and diagnostics. */
size_t bg_gfn_sampled_samplers(bg_gfn_sampled *s, const bg_guard *g);
int bg_gfn_sampled_trained(bg_gfn_sampled *s, const bg_guard *g, const char *session);
/* Instances whose state this context keeps itself (guards without a
 * sampler_slot); policy snapshots' guards never add one (tests). */
size_t bg_gfn_sampled_own_slots(bg_gfn_sampled *s);
/* Tests and diagnostics: hold (1) or release (0) the trainer — it starts
 * no job while held; the session of the job it would run next (0 when
 * none) and how many are queued; optimiser steps run so far. */
void bg_gfn_sampled_hold(bg_gfn_sampled *s, int hold);
int bg_gfn_sampled_next(bg_gfn_sampled *s, char *session, size_t len, size_t *queued);
uint64_t bg_gfn_sampled_steps_done(bg_gfn_sampled *s);
/* Background jobs completed so far. */
uint64_t bg_gfn_sampled_jobs_done(bg_gfn_sampled *s);

#endif
