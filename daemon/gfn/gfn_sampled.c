/*
 * gfn_sampled.c — the engine's sampled path over the guard's sampler
 * plugin (contract in gfn_sampled.h).
 *
 * Evaluate, top to bottom:
 *   1. K ids from the sampler (read lock), with a generator seeded from
 *      (seed, session, #observations): the same data give the same verdict;
 *   2. sort + deduplicate;
 *   3. exact log-posterior of each candidate: log_prior + Σ log_lik over
 *      the session's history, normalised over the candidates (max-shifted
 *      log-sum-exp);
 *   4. harm of each candidate for the action (one batched model call);
 *   5. the posterior order (stable, descending) and the estimator;
 *   6. the verdict: bound, cautious hypothesis and its label, plausible
 *      set size, sampled = 1, samples = K. The engine decides.
 *
 * Training. When the guard has an owner (a policy snapshot: owner_ref set),
 * observe_after copies the session history into a job, takes a reference
 * on the owner and hands the job to the trainer thread; it returns at once.
 * Jobs for the same sampler instance coalesce: a newer history replaces a
 * pending one and inherits the steps it owed (train_steps per observation,
 * capped), so a burst of observations gets as much training as the same
 * observations one by one, on the newest data. The trainer runs a job's
 * owed optimiser steps, one step per write
 * lock, then drops the owner reference (which may free an old snapshot and
 * its instances — on the trainer thread, after its last use). Evaluate
 * never waits for a job, only, at most, for one optimiser step. A sampler
 * that has never been trained while its session has data gets a job from
 * Evaluate too (after a reload created a fresh instance), owing the steps
 * of all the session's observations.
 * Without an owner (tests, benches) training runs inside observe_after, as
 * before, so results stay deterministic.
 *
 * Each session has its own sampler (gfn_sessions.h): a sampler amortises
 * the posterior of the data it is trained on. Jobs coalesce per session
 * sampler. The table lives in the guard's sampler_slot, created and freed
 * with the instance by its owner, so a reload leaves nothing behind here;
 * a guard without a slot (tests, benches) gets a slot in this context's own
 * table, kept until bg_gfn_sampled_destroy.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "gfn.h"
#include "gfn_sampled.h"
#include "gfn_score.h"
#include "gfn_sessions.h"

/* The state of a guard without a sampler_slot, in this context's table. */
typedef struct slot_entry {
    uint64_t key; /* inst_key() */
    bg_sampler_slot *slot;
    struct slot_entry *next;
} slot_entry;

/* A training job: a guard (kept alive by an owner reference) and a private
 * copy of a session's history in one allocation. */
typedef struct train_job {
    const bg_guard *g;
    bg__gfn_ss *e; /* the session's sampler (a reference) */
    bg_observation *hist;
    size_t n_hist;
    uint32_t steps; /* optimiser steps owed: train_steps per observation */
    struct train_job *next;
} train_job;

/* A burst of observations coalesces into one job that owes the steps of
 * all of them, up to this many. */
#define BG_GFN_MAX_OWED_STEPS 4000u
/* The trainer runs at most this many steps of a job (at least train_steps)
 * before it turns to the next: long first jobs after a reload must not
 * hold up the other sessions. */
#define BG_GFN_CHUNK_STEPS 50u

struct bg_gfn_sampled {
    bg_gfn_sampled_opts opts;
    bg_engine_sampled_ops ops;
    pthread_mutex_t mu;        /* guards slots, jobs, stop */
    slot_entry *slots;         /* of guards without a sampler_slot */
    pthread_cond_t cv;         /* a job was queued, or stop */
    pthread_cond_t idle_cv;    /* the queue drained and the trainer is idle */
    train_job *jobs;           /* pending, at most one per session sampler */
    size_t n_jobs;             /* pending; at most opts.max_sessions new ones */
    const bg__gfn_ss *running; /* what the trainer trains now; NULL: idle */
    int finishing;             /* a finished job's references are being dropped */
    atomic_int stop;           /* also read between steps without mu */
    int have_thread;
    int hold; /* tests: the trainer starts no job while set */
    pthread_t trainer;
    uint64_t jobs_done;
    atomic_uint_fast64_t steps_done; /* optimiser steps run, all samplers */
};

/* What identifies a guard's sampler instance across reloads: its
 * never-reused instance id when the guard has one (an address can be
 * reused by the next snapshot's instance), else its address. */
static uint64_t inst_key(const bg_guard *g)
{
    return g->instance_id ? g->instance_id | (1ULL << 63) : (uint64_t)(uintptr_t)g->sampler_inst;
}

/* The state of a sampler instance: the guard's slot, else this context's
 * entry for it (created on first use when create). NULL when there is none
 * or out of memory. */
static bg_sampler_slot *slot_of(bg_gfn_sampled *s, const bg_guard *g, int create)
{
    if (g->sampler_slot)
        return g->sampler_slot;
    uint64_t key = inst_key(g);
    pthread_mutex_lock(&s->mu);
    slot_entry *e = s->slots;
    while (e && e->key != key)
        e = e->next;
    if (!e && create && (e = calloc(1, sizeof *e)) != NULL) {
        if ((e->slot = bg_sampler_slot_new()) != NULL) {
            e->key = key;
            e->next = s->slots;
            s->slots = e;
        } else {
            free(e);
            e = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return e ? e->slot : NULL;
}

/* The session sampler of (g, session), with a reference (bg__gfn_ss_put). */
static int session_sampler(bg_gfn_sampled *s, const bg_guard *g, const char *session,
                           bg__gfn_ss **out, bg_err *err)
{
    bg_sampler_slot *sl = slot_of(s, g, 1);
    if (!sl)
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory", g->name);
    return bg__gfn_ss_get(sl, g, session, s->opts.max_sessions, out, err);
}

/* Run `steps` optimiser steps on a history, one step per write lock. */
static int train_steps(bg_gfn_sampled *s, const bg_guard *g, bg__gfn_ss *e,
                       const bg_observation *hist, size_t n_hist, uint32_t steps)
{
    bg__gfn_reward_ctx r = {g, hist, n_hist, NULL, 0};
    int rc = BG_PLUGIN_OK;
    uint32_t k = 0;
    for (; k < steps && rc == BG_PLUGIN_OK && !atomic_load(&s->stop); k++) {
        pthread_rwlock_wrlock(&e->lock);
        rc = g->sampler->train(e->inst, bg__gfn_session_log_r, &r, 1);
        pthread_rwlock_unlock(&e->lock);
        if (rc == BG_PLUGIN_OK)
            atomic_fetch_add(&s->steps_done, 1);
        /* as trained as after one observation: verdicts may use it (a long
         * first job after a reload need not finish before they do) */
        if (rc == BG_PLUGIN_OK && k + 1 == s->opts.train_steps)
            atomic_store(&e->trained, 1);
    }
    free(r.tmp);
    if (rc == BG_PLUGIN_OK && k == steps)
        atomic_store(&e->trained, 1);
    return rc;
}

/* 1 when e was trained, or a job for it is queued or running. */
static int trained_or_training(bg_gfn_sampled *s, const bg__gfn_ss *e)
{
    if (atomic_load(&e->trained))
        return 1;
    pthread_mutex_lock(&s->mu);
    int found = s->running == e;
    for (const train_job *j = s->jobs; j && !found; j = j->next)
        found = j->e == e;
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* Deep copy of a history (strings, features, attributes) in one block. */
static train_job *job_create(const bg_guard *g, const bg_observation *hist, size_t n_hist)
{
    size_t bytes = sizeof(train_job) + n_hist * sizeof(bg_observation);
    for (size_t i = 0; i < n_hist; i++) {
        const bg_action *a = &hist[i].action;
        bytes += strlen(a->id ? a->id : "") + strlen(a->tool ? a->tool : "") +
                 strlen(a->arguments_json ? a->arguments_json : "") + 3;
        bytes +=
            a->n_features * sizeof(double) + a->n_attributes * sizeof(bg_attr) + 2 * sizeof(double);
        for (size_t k = 0; k < a->n_attributes; k++)
            bytes += strlen(a->attributes[k].key) + strlen(a->attributes[k].value) + 2;
    }
    train_job *j = malloc(bytes);
    if (!j)
        return NULL;
    j->g = g;
    j->n_hist = n_hist;
    j->next = NULL;
    j->hist = (bg_observation *)(j + 1);
    char *p = (char *)(j->hist + n_hist);
    for (size_t i = 0; i < n_hist; i++) {
        const bg_action *a = &hist[i].action;
        bg_observation *o = &j->hist[i];
        *o = hist[i];
        /* arrays first (double-aligned: p stays a multiple of 8 until the
         * strings, which come last for this observation) */
        p += (8 - ((uintptr_t)p & 7)) & 7;
        double *f = (double *)p;
        if (a->n_features)
            memcpy(f, a->features, a->n_features * sizeof *f);
        o->action.features = f;
        p += a->n_features * sizeof *f;
        bg_attr *at = (bg_attr *)p;
        p += a->n_attributes * sizeof *at;
        o->action.attributes = at;
#define BG_COPY_STR(dst, src)                                                                      \
    do {                                                                                           \
        size_t l_ = strlen((src) ? (src) : "") + 1;                                                \
        memcpy(p, (src) ? (src) : "", l_);                                                         \
        (dst) = p;                                                                                 \
        p += l_;                                                                                   \
    } while (0)
        BG_COPY_STR(o->action.id, a->id);
        BG_COPY_STR(o->action.tool, a->tool);
        BG_COPY_STR(o->action.arguments_json, a->arguments_json);
        for (size_t k = 0; k < a->n_attributes; k++) {
            BG_COPY_STR(at[k].key, a->attributes[k].key);
            BG_COPY_STR(at[k].value, a->attributes[k].value);
        }
#undef BG_COPY_STR
    }
    return j;
}

static void job_destroy(train_job *j)
{
    if (j) {
        bg__gfn_ss_put(j->e); /* before the owner: it may free the table */
        j->g->owner_unref(j->g->owner);
        free(j);
    }
}

/* The pending job of e, as the link that points to it (NULL when none). */
static train_job **pending_of(bg_gfn_sampled *s, const bg__gfn_ss *e)
{
    train_job **pp = &s->jobs;
    while (*pp && (*pp)->e != e)
        pp = &(*pp)->next;
    return *pp ? pp : NULL;
}

/* Next job to run (under mu), as the link to it: the first whose sampler
 * has not yet trained (its session gets no decision meanwhile), else the
 * oldest. */
static train_job **next_job(bg_gfn_sampled *s)
{
    train_job **pp = &s->jobs;
    while (*pp && atomic_load(&(*pp)->e->trained))
        pp = &(*pp)->next;
    return *pp ? pp : &s->jobs;
}

static train_job *take_job(bg_gfn_sampled *s)
{
    train_job **pp = next_job(s);
    train_job *j = *pp;
    *pp = j->next;
    j->next = NULL;
    s->n_jobs--;
    return j;
}

static void *trainer_main(void *arg)
{
    bg_gfn_sampled *s = arg;
    uint32_t chunk =
        s->opts.train_steps > BG_GFN_CHUNK_STEPS ? s->opts.train_steps : BG_GFN_CHUNK_STEPS;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while ((!s->jobs || s->hold) && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        train_job *j = take_job(s);
        s->running = j->e;
        pthread_mutex_unlock(&s->mu);
        /* an untrained sampler gets just what makes it usable first */
        uint32_t c = atomic_load(&j->e->trained) ? chunk : s->opts.train_steps;
        uint32_t n = j->steps < c ? j->steps : c;
        if (train_steps(s, j->g, j->e, j->hist, j->n_hist, n) != BG_PLUGIN_OK) {
            BG_WARN("gfn",
                    "policy %s: sampler %s (session '%s'): background training failed; "
                    "the sampler keeps its previous state",
                    j->g->name, j->g->sampler_name ? j->g->sampler_name : "?", j->e->session);
            n = j->steps; /* nothing more of this job */
        }
        pthread_mutex_lock(&s->mu);
        s->running = NULL; /* before the reference goes: e may be freed after */
        train_job *done = j;
        if (n < j->steps && !s->stop) {
            /* the rest goes to the back of the queue, or into a newer job
             * of the same sampler (newer history) */
            train_job **pp = pending_of(s, j->e);
            uint64_t owed = (uint64_t)(j->steps - n) + (pp ? (*pp)->steps : 0);
            uint32_t capped = owed < BG_GFN_MAX_OWED_STEPS ? (uint32_t)owed : BG_GFN_MAX_OWED_STEPS;
            if (pp) {
                (*pp)->steps = capped;
            } else {
                j->steps = capped;
                train_job **tail = &s->jobs;
                while (*tail)
                    tail = &(*tail)->next;
                *tail = j;
                s->n_jobs++;
                done = NULL;
            }
        }
        if (done) {
            /* Idle only once its references are gone: wait_idle's callers
             * (tests, teardown) count on them. */
            s->jobs_done++;
            s->finishing = 1;
            pthread_mutex_unlock(&s->mu);
            job_destroy(done);
            pthread_mutex_lock(&s->mu);
            s->finishing = 0;
        }
        if (!s->jobs && !s->running)
            pthread_cond_broadcast(&s->idle_cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queue (or replace) the job of session sampler e, owing `steps` more.
 * idle_only: only when e has no job queued or running (a fresh sampler's
 * first Evaluate). A queue of max_sessions jobs of other samplers refuses a
 * new one: BG_EUNAVAIL (memory stays bounded; the observation is stored and
 * the session's next call asks again). */
static int schedule(bg_gfn_sampled *s, const bg_guard *g, bg__gfn_ss *e, const bg_observation *hist,
                    size_t n_hist, uint64_t steps, int idle_only, bg_err *err)
{
    train_job *j = job_create(g, hist, n_hist);
    if (!j)
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for a training job", g->name);
    j->e = e;
    train_job *old = NULL, *unused = NULL; /* replaced (queued) / never queued */
    int rc = BG_OK;
    pthread_mutex_lock(&s->mu);
    train_job **pp = pending_of(s, e);
    if (idle_only && (pp || s->running == e)) {
        unused = j; /* nothing to do: it is being trained */
    } else if (!pp && s->n_jobs >= s->opts.max_sessions) {
        rc = bg_err_set(err, BG_EUNAVAIL,
                        "policy %s: the sampler trainer is busy (%zu sessions queued); "
                        "session '%s' was not queued",
                        g->name, s->n_jobs, e->session);
        unused = j;
    } else {
        uint64_t owed = steps;
        g->owner_ref(g->owner);
        bg__gfn_ss_ref(e);
        if (pp) { /* the newer history replaces the pending one, in its place */
            old = *pp;
            j->next = old->next;
            owed += old->steps;
            *pp = j;
        } else {
            train_job **tail = &s->jobs;
            while (*tail)
                tail = &(*tail)->next;
            *tail = j;
            s->n_jobs++;
        }
        j->steps = owed < BG_GFN_MAX_OWED_STEPS ? (uint32_t)owed : BG_GFN_MAX_OWED_STEPS;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    free(unused);
    job_destroy(old);
    return rc;
}

static int observe_after(void *ctx, const bg_guard *g, const char *session,
                         const bg_observation *hist, size_t n_hist, bg_err *err)
{
    bg_gfn_sampled *s = ctx;
    bg__gfn_ss *e;
    int rc = session_sampler(s, g, session, &e, err);
    if (rc != BG_OK)
        return rc;
    /* a sampler that never trained on this session (after a reload, a drop
     * or a restart) owes the whole history, not just this observation */
    uint64_t steps = s->opts.train_steps;
    if (!trained_or_training(s, e))
        steps *= n_hist;
    if (g->owner_ref && s->have_thread)
        rc = schedule(s, g, e, hist, n_hist, steps, 0, err);
    else if (train_steps(s, g, e, hist, n_hist, (uint32_t)steps) != BG_PLUGIN_OK)
        rc = bg_err_set(err, BG_EINTERNAL,
                        "policy %s: sampler %s: training failed; the observation is "
                        "stored, the sampler keeps its previous state",
                        g->name, g->sampler_name ? g->sampler_name : "?");
    bg__gfn_ss_put(e);
    return rc;
}

void bg_gfn_sampled_wait_idle(bg_gfn_sampled *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->jobs || s->running || s->finishing)
        pthread_cond_wait(&s->idle_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

size_t bg_gfn_sampled_samplers(bg_gfn_sampled *s, const bg_guard *g)
{
    bg_sampler_slot *sl = slot_of(s, g, 0);
    return sl ? bg__gfn_ss_count(sl) : 0;
}

int bg_gfn_sampled_trained(bg_gfn_sampled *s, const bg_guard *g, const char *session)
{
    bg_sampler_slot *sl = slot_of(s, g, 0);
    return sl ? bg__gfn_ss_trained(sl, g->sampler_new && g->sampler_drop ? session : "") : -1;
}

size_t bg_gfn_sampled_own_slots(bg_gfn_sampled *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (const slot_entry *e = s->slots; e; e = e->next)
        n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void bg_gfn_sampled_hold(bg_gfn_sampled *s, int hold)
{
    pthread_mutex_lock(&s->mu);
    s->hold = hold;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int bg_gfn_sampled_next(bg_gfn_sampled *s, char *session, size_t len, size_t *queued)
{
    pthread_mutex_lock(&s->mu);
    const train_job *j = *next_job(s);
    if (j)
        snprintf(session, len, "%s", j->e->session);
    *queued = s->n_jobs;
    pthread_mutex_unlock(&s->mu);
    return j != NULL;
}

uint64_t bg_gfn_sampled_steps_done(bg_gfn_sampled *s)
{
    return atomic_load(&s->steps_done);
}

uint64_t bg_gfn_sampled_jobs_done(bg_gfn_sampled *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->jobs_done;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int evaluate(void *ctx, const bg_guard *g, const char *session, const bg_observation *hist,
                    size_t n_hist, const bg_action *action, bg_verdict *out, bg_err *err)
{
    bg_gfn_sampled *s = ctx;
    uint32_t k = g->sampler_samples ? g->sampler_samples : s->opts.default_k;
    bg__gfn_ss *e;
    /* a session without data samples the policy's shared (prior) instance:
     * it makes no session sampler and so drops none */
    int rc = session_sampler(s, g, n_hist ? session : NULL, &e, err);
    if (rc != BG_OK)
        return rc;
    uint64_t *ids = malloc(k * sizeof *ids);
    if (!ids) {
        bg__gfn_ss_put(e);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %u samples", g->name, k);
    }
    /* A sampler that has not yet trained on the session's data (first use,
     * after a reload or a drop) would give a verdict about nothing: start
     * its training and fail closed until it has had train_steps steps. */
    if (n_hist && g->owner_ref && s->have_thread && !atomic_load(&e->trained)) {
        rc = schedule(s, g, e, hist, n_hist, (uint64_t)s->opts.train_steps * n_hist, 1, err);
        if (rc == BG_OK)
            rc = bg_err_set(err, BG_EUNAVAIL,
                            "policy %s: the sampler of session '%s' has not yet trained on "
                            "the session's %zu observations (a new sampler: first use, a reload, "
                            "or it was dropped for newer sessions); "
                            "it is training now and no decision was made: retry in a moment",
                            g->name, session ? session : "", n_hist);
        bg__gfn_ss_put(e);
        free(ids);
        return rc;
    }
    bg_rng rng;
    bg_gfn_rng_seed(&rng, bg__gfn_mix_seed(s->opts.seed, session, n_hist));
    pthread_rwlock_rdlock(&e->lock);
    int prc = g->sampler->sample(e->inst, &rng, k, ids, NULL);
    pthread_rwlock_unlock(&e->lock);
    bg__gfn_ss_put(e);
    if (prc != BG_PLUGIN_OK) {
        rc = bg_err_set(err, BG_EINTERNAL, "policy %s: sampler %s: sample failed (%d)", g->name,
                        g->sampler_name ? g->sampler_name : "?", prc);
    } else {
        size_t n = bg__gfn_sort_unique(ids, k);
        rc = bg__gfn_score_and_estimate(g, hist, n_hist, action, ids, n, out, err);
        out->sampled = 1;
        out->samples = k;
    }
    free(ids);
    return rc;
}

int bg_gfn_sampled_create(const bg_gfn_sampled_opts *opts, bg_gfn_sampled **out, bg_err *err)
{
    bg_gfn_sampled *s = calloc(1, sizeof *s);
    if (!s)
        return bg_err_set(err, BG_ENOMEM, "gfn: out of memory");
    if (opts)
        s->opts = *opts;
    if (!s->opts.train_steps)
        s->opts.train_steps = 20;
    if (!s->opts.default_k)
        s->opts.default_k = 1024;
    if (!s->opts.max_sessions)
        s->opts.max_sessions = 64;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->ops =
        (bg_engine_sampled_ops){.ctx = s, .evaluate = evaluate, .observe_after = observe_after};
    int prc = pthread_create(&s->trainer, NULL, trainer_main, s);
    if (prc != 0) {
        bg_gfn_sampled_destroy(s);
        return bg_err_set(err, BG_EINTERNAL, "gfn: cannot start the trainer thread: %s",
                          strerror(prc));
    }
    s->have_thread = 1;
    *out = s;
    return BG_OK;
}

void bg_gfn_sampled_destroy(bg_gfn_sampled *s)
{
    if (!s)
        return;
    if (s->have_thread) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->trainer, NULL);
    }
    while (s->jobs) {
        train_job *j = s->jobs;
        s->jobs = j->next;
        job_destroy(j);
    }
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle_cv);
    for (slot_entry *e = s->slots, *next; e; e = next) {
        next = e->next;
        bg_sampler_slot_free(e->slot);
        free(e);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const bg_engine_sampled_ops *bg_gfn_sampled_ops(bg_gfn_sampled *s)
{
    return &s->ops;
}
