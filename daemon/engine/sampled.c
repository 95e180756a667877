/*
 * sampled.c — the engine's sampled path over the guard's sampler plugin
 * (contract and the state diagram of a session sampler in sampled.h): the
 * process-wide trainer and its queue, evaluate and observe.
 *
 * Evaluate, top to bottom:
 *   1. K ids from the session's sampler (read lock), with a generator
 *      seeded from (seed, session, #observations): the same data give the
 *      same verdict;
 *   2. sort + deduplicate. Steps 1-2 run once per (seed, training round)
 *      and every Evaluate until the next Observe or training round reuses
 *      the draw (bg__cands; the sampler's `gen` counts its rounds, one
 *      train_run each, bumped when a round ends): K trajectories through
 *      the policy MLP were most of an Evaluate. A cached draw is taken
 *      without the sampler's lock, so an Evaluate during a round neither
 *      waits for a training step nor draws again: it uses the draw made
 *      before or during the round, scored against the current data (its
 *      health says how far behind it is). A background session sampler
 *      is drawn by the trainer at the end of each round, for the history
 *      it trained on (draw_ahead), and until that draw is there an
 *      Evaluate uses the sampler's newest one: it draws itself only when
 *      the sampler has none (BG_TRAIN_INLINE guards and a guard's own
 *      sampler draw on a miss, as the evaluation seed says: deterministic);
 *   3. exact log R of each candidate: log_prior + Σ log_lik over the
 *      session's history;
 *   4. harm of each candidate for the action (one batched model call);
 *   4a. the session sampler's search archive (sampled_archive.c: the best
 *       hypotheses Metropolis chains on the exact reward found after the
 *       last training round, search_after, on the trainer thread): its
 *       members the draw lacks join the candidates, with their stored
 *       log R and their harm for the action;
 *   4a'. the action's context is remembered in the sampler's table
 *       (sampled_context.c, when the guard's contexts > 0);
 *   4b. refinement (sampled_refine.c): bit-flip climbs from the best
 *      candidates towards the estimator's cautious hypothesis add exactly
 *      scored candidates, at most opts.refine looked at (half that for
 *      iid single-flip climbs when the archive added members; their log R
 *      cached per draw and reward version, bg__lpcache: it does not
 *      depend on the action);
 *   4c. what the trainer's per-context search kept for the context
 *       (contexts_after, after each round's archive search) joins the
 *       refined candidates the same way as the archive's members — after
 *       the refinement, so the verdict's candidates are a superset of those
 *       it would have without the feature;
 *   5. normalised over the candidates (max-shifted log-sum-exp), the
 *      posterior order (stable, descending) and the estimator;
 *   6. the verdict: bound, cautious hypothesis and its label, plausible
 *      set size, sampled = 1, samples = K. The engine decides.
 *
 * Background training (BG_TRAIN_BACKGROUND): observe copies the session
 * history into a job, takes a reference on the guard's owner and hands
 * the job to the trainer thread; it returns at once. Jobs of the same
 * sampler coalesce: a newer history replaces a pending one and inherits
 * the steps it owed (train_steps per observation, capped), so a burst of
 * observations gets as much training as the same observations one by one,
 * on the newest data. The trainer runs a job's owed optimiser steps, one
 * step per write lock, then drops the owner reference (which may free an
 * old snapshot and its instances — on the trainer thread, after its last
 * use). Evaluate never waits for a job, only, at most, for one optimiser
 * step. A sampler that has never been trained while its session has data
 * gets a job from Evaluate too (after a reload made a fresh instance),
 * owing the steps of all the session's observations.
 * BG_TRAIN_INLINE guards train inside observe, deterministically.
 * Either way a run of steps gives the sampler a reward whose version is
 * the digest of the history it trains on (bg__reward_ctx_make), computed
 * once per run.
 *
 * Threads: the trainer's mutex guards the queue, `running`, and the job bit
 * of every sampler's state; it is taken before a table's mutex, never
 * after.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "common/bg_time.h"
#include "engine/plugin_code.h"
#include "engine/sampled_priv.h"

/* A training job: a guard (kept alive by an owner reference) and a private
 * copy of a session's history in one allocation. */
typedef struct train_job {
    const bg_guard *g;
    bg__sampler *e; /* the session's sampler (a reference) */
    bg_observation *hist;
    size_t n_hist;
    uint32_t steps; /* optimiser steps owed: train_steps per observation */
    struct train_job *next;
} train_job;

/* A burst of observations coalesces into one job that owes the steps of
 * all of them, up to this many. */
#define BG_SAMPLED_MAX_OWED_STEPS 4000u
/* The trainer runs at most this many steps of a job (at least train_steps)
 * before it turns to the next: long first jobs after a reload must not
 * hold up the other sessions. */
#define BG_SAMPLED_CHUNK_STEPS 50u
/* The trainer's context_search when nobody set it: each guard's budget is
 * bg_sampled_context_search_default of its model's space. */
#define CTX_SEARCH_BY_SPACE (-1)

struct bg_sampled_trainer {
    bg_sampled_opts opts;
    pthread_mutex_t mu;         /* guards jobs, running, finishing, hold, job bits */
    pthread_cond_t cv;          /* a job was queued, or stop */
    pthread_cond_t idle_cv;     /* the queue drained and the trainer is idle */
    train_job *jobs;            /* pending, at most one per sampler */
    size_t n_jobs;              /* pending; at most opts.max_sessions new ones */
    const bg__sampler *running; /* what the trainer trains now; NULL: idle */
    int finishing;              /* a finished job's references are being dropped */
    atomic_int stop;            /* also read between steps without mu */
    int have_thread;
    int hold; /* tests: the trainer starts no job while set */
    pthread_t thread;
    uint64_t jobs_done;
    atomic_uint_fast64_t steps_done; /* optimiser steps run, all samplers */
    atomic_uint_fast64_t step_ns;    /* the last step's duration: when to retry */
    atomic_int refine;               /* refinement budget per Evaluate (opts.refine; 0: none) */
    atomic_int search;               /* search budget per round (opts.search; 0: none) */
    atomic_int use_archive;          /* Evaluates add the search archive (benches: 0) */
    atomic_uint_fast64_t searches, search_evals, search_ns; /* what the searches cost */
    atomic_uint_fast64_t search_size; /* members of the newest search's archive */
    atomic_int contexts;              /* contexts remembered per sampler (opts; 0: none) */
    atomic_int context_search;        /* hypotheses per context and round (0: none,
                                         CTX_SEARCH_BY_SPACE: each guard's default) */
    atomic_uint_fast64_t ctx_rounds, ctx_contexts, ctx_looked, ctx_evals, ctx_ns;
};

/* What is wrong with g's sampled-path options, NULL when nothing: the one
 * predicate of bg_guard_check (at guard creation) and assert_guard (each
 * call). */
static const char *guard_problem(const bg_guard *g)
{
    if (!g->sampler)
        return g->sampler_inst || g->sampled || g->train || g->per_session || g->owner.ref ||
                       g->sampler_always || g->sampler_train_steps || g->owner.unref ||
                       g->session_sampler.create || g->session_sampler.destroy
                   ? "sampled-path options are set, but no sampler"
                   : NULL;
    if (!g->sampler_inst || !g->sampled)
        return "a sampler needs sampler_inst and its sampled state (bg_sampled_create)";
    if (g->sampled->self.inst != g->sampler_inst)
        return "the sampled state was made for another sampler instance";
    if (g->train != BG_TRAIN_INLINE && g->train != BG_TRAIN_BACKGROUND)
        return "a sampler needs a train mode (BG_TRAIN_INLINE or BG_TRAIN_BACKGROUND)";
    if ((g->owner.ref == NULL) != (g->owner.unref == NULL))
        return "owner.ref and owner.unref go together";
    if ((g->train == BG_TRAIN_BACKGROUND) != (g->owner.ref != NULL))
        return g->train == BG_TRAIN_BACKGROUND
                   ? "BG_TRAIN_BACKGROUND needs an owner with ref and unref"
                   : "an owner is set, but training is inline";
    int f = (g->session_sampler.create != NULL) + (g->session_sampler.destroy != NULL);
    if (g->per_session ? f != 2 : f != 0)
        return g->per_session ? "per_session needs session_sampler.create and .destroy"
                              : "session_sampler is set, but per_session is 0";
    return NULL;
}

int bg_guard_check(const bg_guard *g, bg_err *err)
{
    if (!g->name || !g->model || !g->model_inst || !g->estimator || !g->estimator_inst)
        return bg_err_set(err, BG_EINVAL,
                          "guard %s: a guard needs a name, a model and an estimator (vtable "
                          "and instance each)",
                          g->name ? g->name : "?");
    const char *why = guard_problem(g);
    if (why)
        return bg_err_set(err, BG_EINVAL, "policy %s: sampler %s: %s", g->name,
                          g->sampler_name ? g->sampler_name : "-", why);
    return BG_OK;
}

static void assert_guard(const bg_guard *g)
{
    const char *why = guard_problem(g);
    BG_ASSERT(why == NULL, "policy %s: %s", g->name, why);
}

/* Optimiser steps g's sampler owes per observation: the policy's own
 * budget (spec.sampler.train_steps), else the trainer's. */
static uint32_t steps_per_obs(const bg_sampled_trainer *s, const bg_guard *g)
{
    return g->sampler_train_steps ? g->sampler_train_steps : s->opts.train_steps;
}

/* The sampler of (g, session), with a reference (bg__sampler_put). */
static int session_sampler(bg_sampled_trainer *t, const bg_guard *g, const char *session,
                           bg__sampler **out, bg_err *err)
{
    return bg__sampler_get(g->sampled, g, session, t->opts.max_sessions, out, err);
}

static int draw(const bg_guard *g, bg__sampler *e, uint64_t seed, uint32_t k, bg__cands **out);

/* After a training round of e on the reward r (a history prefix): the
 * posterior search (sampled_archive.c) from e's archive and newest draw,
 * its result e's archive. On the trainer thread (inline guards: inside
 * Observe), never on an Evaluate's path; without e's lock (it does not
 * touch the sampler). A failed search keeps the previous archive: it is
 * re-scored where it is used. */
static void search_after(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e,
                         bg__reward_ctx *r)
{
    int32_t budget = g->sampler_search ? g->sampler_search : atomic_load(&s->search);
    if (budget <= 0)
        return;
    pthread_mutex_lock(&e->cands_mu);
    bg__archive *old = e->arch;
    bg__cands *c = e->cands;
    if (old)
        atomic_fetch_add(&old->refs, 1);
    if (c)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&e->cands_mu);
    bg__archive *a = NULL;
    uint64_t seed = bg__sampled_seed(s->opts.seed ^ 0x5ea4c4a4c41e5eedULL, e->session, r->n_hist);
    int rc = bg__archive_search(g, r, old, c ? c->ids : NULL, c ? c->n : 0, (uint32_t)budget,
                                BG__ARCHIVE_CAP, seed, &a);
    if (rc == BG_OK && a) {
        atomic_fetch_add(&s->searches, 1);
        atomic_fetch_add(&s->search_evals, a->evals);
        atomic_fetch_add(&s->search_ns, a->cpu_ns);
        atomic_store(&s->search_size, a->n);
        pthread_mutex_lock(&e->cands_mu);
        bg__archive *prev = e->arch;
        e->arch = a;
        pthread_mutex_unlock(&e->cands_mu);
        bg__archive_unref(prev);
    } else if (rc != BG_OK) {
        BG_WARN("sampled",
                "policy %s: sampler %s: the posterior search failed (%d); verdicts keep "
                "the previous archive",
                g->name, g->sampler_name ? g->sampler_name : "?", rc);
    }
    bg__archive_unref(old);
    bg__cands_unref(c);
}

/* The contexts g's session samplers remember (0: none), and the
 * hypotheses looked at per context and round (0: none). */
static size_t contexts_of(bg_sampled_trainer *s, const bg_guard *g)
{
    int32_t n = g->sampler_contexts ? g->sampler_contexts : atomic_load(&s->contexts);
    return n > 0 ? (size_t)n : 0;
}

uint32_t bg_sampled_context_search_default(uint32_t n_bits, uint32_t space_flags)
{
    if (space_flags || n_bits <= 32)
        return BG_SAMPLED_CONTEXT_SEARCH_DEFAULT;
    uint32_t k = (n_bits - 32) / 8; /* doublings; 6 reach the cap (1024 << 6) */
    uint32_t b = k < 6 ? BG_SAMPLED_CONTEXT_SEARCH_DEFAULT << k : BG_SAMPLED_CONTEXT_SEARCH_MAX;
    BG_ASSERT(b >= BG_SAMPLED_CONTEXT_SEARCH_DEFAULT && b <= BG_SAMPLED_CONTEXT_SEARCH_MAX,
              "context search default %u at %u bits", b, n_bits);
    return b;
}

uint32_t bg_sampled_trainer_context_budget(bg_sampled_trainer *s, const bg_guard *g)
{
    if (g->sampler_context_search) /* the policy's: > 0 this many, -1 none */
        return g->sampler_context_search > 0 ? (uint32_t)g->sampler_context_search : 0;
    int32_t n = atomic_load(&s->context_search);
    if (n != CTX_SEARCH_BY_SPACE)
        return n > 0 ? (uint32_t)n : 0;
    bg_space sp = {0};
    if (g->model->space && g->model->space(g->model_inst, &sp) == BG_PLUGIN_OK && sp.n_bits >= 1 &&
        sp.n_bits <= 64)
        return bg_sampled_context_search_default(sp.n_bits, sp.flags);
    uint64_t limit; /* an enumerable model on the sampled path: the bits of its ids */
    return bg_sampled_context_search_default(bg__space_bits(g, &limit), 0);
}

/* After a round's archive search (same reward r, same thread): the search
 * per remembered context (sampled_context.c). A failure keeps the kept
 * sets not yet replaced; Evaluates re-score what they use. */
static void contexts_after(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e,
                           bg__reward_ctx *r)
{
    uint32_t budget = bg_sampled_trainer_context_budget(s, g);
    if (!budget || !contexts_of(s, g) || !bg__ctx_table_size(&e->ctx))
        return;
    pthread_mutex_lock(&e->cands_mu);
    bg__archive *arch = e->arch;
    if (arch)
        atomic_fetch_add(&arch->refs, 1);
    pthread_mutex_unlock(&e->cands_mu);
    uint64_t seed = bg__sampled_seed(s->opts.seed ^ 0xc0e7e47c0e7e47c5ULL, e->session, r->n_hist);
    bg__ctx_stats st;
    int rc = bg__ctx_search_all(g, r, &e->ctx, arch, budget, seed, &st);
    bg__archive_unref(arch);
    if (st.contexts) {
        atomic_fetch_add(&s->ctx_rounds, 1);
        atomic_fetch_add(&s->ctx_contexts, st.contexts);
        atomic_fetch_add(&s->ctx_looked, st.looked);
        atomic_fetch_add(&s->ctx_evals, st.reward_evals);
        atomic_fetch_add(&s->ctx_ns, st.cpu_ns);
    }
    if (rc != BG_OK)
        BG_WARN("sampled",
                "policy %s: sampler %s: the per-context search failed (%d); verdicts keep "
                "the contexts' previous candidates",
                g->name, g->sampler_name ? g->sampler_name : "?", rc);
}

/* After a background round of a session's sampler: the draw its next
 * Evaluate wants (seed of the session and n_hist), made here on the
 * trainer thread, so that no Evaluate draws K trajectories itself. */
static void draw_ahead(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e, size_t n_hist)
{
    if (g->train != BG_TRAIN_BACKGROUND || !e->session)
        return;
    uint32_t k = g->sampler_samples ? g->sampler_samples : s->opts.default_k;
    bg__cands *c = NULL;
    pthread_rwlock_rdlock(&e->lock);
    draw(g, e, bg__sampled_seed(s->opts.seed, e->session, n_hist), k, &c);
    pthread_rwlock_unlock(&e->lock);
    bg__cands_unref(c); /* cached (or out of memory: the Evaluate draws) */
}

/* Transitions "train_inline" and "steps run": `steps` of the `owed`
 * optimiser steps of a job on a history, one step per write lock.
 *
 * The steps walk the history's prefixes the sampler has not trained on
 * (e->trained_n + 1 .. n_hist), spread evenly over the owed steps: a burst
 * of observations is trained as if they had come one at a time, each
 * prefix a reward version of its own. A sampler trained straight on the
 * newest of 40 observations trailed the posterior far more than one led
 * there one observation at a time (tests/gfn/test_gfn_keepup.py, d = 14:
 * 27 of 64 sampled iid bounds below exact against 15; docs/GFLOWNET.md
 * "Training schedule"). The sampler counts as trained (verdicts may use
 * it) once a step has run on the whole history. Cached draws stay valid for
 * the round (gen moves at its end); the trainer then draws the next ones
 * (draw_ahead), and a verdict's health says how many observations its
 * draw had not trained on. */
static int train_run(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e,
                     const bg_observation *hist, size_t n_hist, uint32_t steps, uint32_t owed)
{
    BG_ASSERT(steps <= owed, "train_run: %u steps of %u owed", steps, owed);
    pthread_rwlock_rdlock(&e->lock); /* written under the write lock */
    size_t done = e->trained_n;
    pthread_rwlock_unlock(&e->lock);
    size_t n0 = done < n_hist ? done + 1 : n_hist;
    size_t span = n_hist - n0 + 1, n = SIZE_MAX; /* no reward context yet */
    bg__reward_ctx r = {0};
    int rc = BG_PLUGIN_OK;
    uint32_t k = 0;
    for (; k < steps && rc == BG_PLUGIN_OK && !atomic_load(&s->stop); k++) {
        /* step k trains on prefix n0 - 1 + ceil((k + 1) span / owed): the
         * last owed step is on the whole history */
        size_t want = n0 - 1 + (size_t)(((uint64_t)(k + 1) * span + owed - 1) / owed);
        if (want != n) {
            free(r.tmp);
            n = want;
            r = bg__reward_ctx_make(g, hist, n); /* one version per prefix */
        }
        uint64_t t0 = bg_now_ns();
        pthread_rwlock_wrlock(&e->lock);
        rc = g->sampler->train(e->inst, bg__session_log_r, &r, 1);
        if (rc == BG_PLUGIN_OK) {
            e->trained_n = n;
            bg__fit_trained(&e->fit, r.version, n, 1);
        }
        pthread_rwlock_unlock(&e->lock);
        atomic_store(&s->step_ns, bg_now_ns() - t0);
        if (rc == BG_PLUGIN_OK)
            atomic_fetch_add(&s->steps_done, 1);
        /* on the whole history: verdicts may use it (a long first job after
         * a reload need not finish before they do) */
        if (rc == BG_PLUGIN_OK && n == n_hist)
            atomic_fetch_or(&e->state, BG__SAMPLER_TRAINED);
    }
    if (k > 0 && rc == BG_PLUGIN_OK && !atomic_load(&s->stop)) {
        search_after(s, g, e, &r);
        contexts_after(s, g, e, &r);
    }
    free(r.tmp);
    if (k > 0) { /* the round is over: cached draws are of an older state
                  * (under the lock: a draw in progress is cached first) */
        pthread_rwlock_wrlock(&e->lock);
        atomic_fetch_add(&e->gen, 1);
        pthread_rwlock_unlock(&e->lock);
        draw_ahead(s, g, e, n_hist);
    }
    return rc;
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
        bg__sampler_put(j->e); /* before the owner: it may free the table */
        j->g->owner.unref(j->g->owner.ctx);
        free(j);
    }
}

/* The pending job of e, as the link that points to it (NULL when none). */
static train_job **pending_of(bg_sampled_trainer *s, const bg__sampler *e)
{
    train_job **pp = &s->jobs;
    while (*pp && (*pp)->e != e)
        pp = &(*pp)->next;
    return *pp ? pp : NULL;
}

/* Next job to run (under mu), as the link to it: the first whose sampler
 * has not yet trained (its session gets no decision meanwhile), else the
 * oldest. */
static train_job **next_job(bg_sampled_trainer *s)
{
    train_job **pp = &s->jobs;
    while (*pp && (atomic_load(&(*pp)->e->state) & BG__SAMPLER_TRAINED))
        pp = &(*pp)->next;
    return *pp ? pp : &s->jobs;
}

static train_job *take_job(bg_sampled_trainer *s)
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
    bg_sampled_trainer *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while ((!s->jobs || s->hold) && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        train_job *j = take_job(s);
        s->running = j->e;
        bg__assert_sampler_state(j->e, 1);
        pthread_mutex_unlock(&s->mu);
        /* an untrained sampler gets just what makes it usable first */
        int trained = atomic_load(&j->e->state) & BG__SAMPLER_TRAINED;
        uint32_t per = steps_per_obs(s, j->g);
        uint32_t chunk = per > BG_SAMPLED_CHUNK_STEPS ? per : BG_SAMPLED_CHUNK_STEPS;
        uint32_t c = trained ? chunk : per;
        uint32_t n = j->steps < c ? j->steps : c;
        if (train_run(s, j->g, j->e, j->hist, j->n_hist, n, j->steps) != BG_PLUGIN_OK) {
            BG_WARN("gfn",
                    "policy %s: sampler %s (session '%s'): background training failed; "
                    "the sampler keeps its previous state",
                    j->g->name, j->g->sampler_name ? j->g->sampler_name : "?",
                    j->e->session ? j->e->session : "");
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
            uint32_t capped =
                owed < BG_SAMPLED_MAX_OWED_STEPS ? (uint32_t)owed : BG_SAMPLED_MAX_OWED_STEPS;
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
            /* Transition "job done": the job bit goes unless a newer job
             * of the sampler waits. */
            int has_job = pending_of(s, done->e) != NULL;
            if (!has_job)
                atomic_fetch_and(&done->e->state, ~BG__SAMPLER_JOB);
            bg__assert_sampler_state(done->e, has_job);
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
static int schedule(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e,
                    const bg_observation *hist, size_t n_hist, uint64_t steps, int idle_only,
                    bg_err *err)
{
    /* The cases that queue nothing, first: they need no copy of the
     * history (O(n_hist), on the request's thread, under the session's
     * lock). The decision below is taken again under the same lock, so a
     * change in between only costs the copy. */
    pthread_mutex_lock(&s->mu);
    int queued = pending_of(s, e) != NULL, running = s->running == e;
    int nothing = idle_only && (queued || running);
    size_t n_jobs = s->n_jobs;
    int busy = !queued && n_jobs >= s->opts.max_sessions;
    pthread_mutex_unlock(&s->mu);
    if (nothing)
        return BG_OK;
    if (busy)
        return bg_err_set(err, BG_EUNAVAIL,
                          "policy %s: the sampler trainer is busy (%zu sessions queued); "
                          "session '%s' was not queued",
                          g->name, n_jobs, e->session ? e->session : "");
    train_job *j = job_create(g, hist, n_hist);
    if (!j)
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for a training job", g->name);
    j->e = e;
    train_job *old = NULL, *unused = NULL; /* replaced (queued) / never queued */
    int rc = BG_OK;
    pthread_mutex_lock(&s->mu);
    train_job **pp = pending_of(s, e);
    bg__assert_sampler_state(e, pp || s->running == e);
    if (idle_only && (pp || s->running == e)) {
        unused = j; /* nothing to do: it is being trained */
    } else if (!pp && s->n_jobs >= s->opts.max_sessions) {
        rc = bg_err_set(err, BG_EUNAVAIL,
                        "policy %s: the sampler trainer is busy (%zu sessions queued); "
                        "session '%s' was not queued",
                        g->name, s->n_jobs, e->session ? e->session : "");
        unused = j;
    } else {
        uint64_t owed = steps;
        /* transition "schedule": UNTRAINED -> PENDING, TRAINED -> RETRAINING */
        g->owner.ref(g->owner.ctx);
        bg__sampler_ref(e);
        atomic_fetch_or(&e->state, BG__SAMPLER_JOB);
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
        j->steps = owed < BG_SAMPLED_MAX_OWED_STEPS ? (uint32_t)owed : BG_SAMPLED_MAX_OWED_STEPS;
        bg__assert_sampler_state(e, 1);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    free(unused);
    job_destroy(old);
    return rc;
}

int bg__sampled_observe(bg_sampled_trainer *s, const bg_guard *g, const char *session,
                        const bg_observation *hist, size_t n_hist, bg_err *err)
{
    assert_guard(g);
    bg__sampler *e;
    int rc = session_sampler(s, g, session, &e, err);
    if (rc != BG_OK)
        return rc;
    /* a sampler that never trained on this session (after a reload, a drop
     * or a restart) owes the whole history, not just this observation */
    uint64_t steps = steps_per_obs(s, g);
    if (atomic_load(&e->state) == BG_SAMPLER_UNTRAINED)
        steps *= n_hist;
    if (g->train == BG_TRAIN_BACKGROUND) {
        rc = schedule(s, g, e, hist, n_hist, steps, 0, err);
    } else {
        bg__assert_sampler_state(e, 0); /* inline guards have no jobs */
        if (train_run(s, g, e, hist, n_hist, (uint32_t)steps, (uint32_t)steps) != BG_PLUGIN_OK)
            rc = bg_err_set(err, BG_EINTERNAL,
                            "policy %s: sampler %s: training failed; the observation is "
                            "stored, the sampler keeps its previous state",
                            g->name, g->sampler_name ? g->sampler_name : "?");
        bg__assert_sampler_state(e, 0);
    }
    bg__sampler_put(e);
    return rc;
}

/* e's cached draw for (seed, e's training round, k), with a reference for
 * the caller; NULL when it has none. Needs no lock of e: a draw is
 * immutable, and one a round old is still a draw of this sampler. */
static bg__cands *cands_get(bg__sampler *e, uint64_t seed, uint32_t k)
{
    uint64_t gen = atomic_load(&e->gen);
    pthread_mutex_lock(&e->cands_mu);
    bg__cands *c = e->cands;
    if (c && c->seed == seed && c->gen == gen && c->k == k)
        atomic_fetch_add(&c->refs, 1);
    else
        c = NULL;
    pthread_mutex_unlock(&e->cands_mu);
    return c;
}

/* e's newest draw of k samples whatever its seed and round, with a
 * reference for the caller; NULL when it has none. */
static bg__cands *cands_latest(bg__sampler *e, uint32_t k)
{
    pthread_mutex_lock(&e->cands_mu);
    bg__cands *c = e->cands;
    if (c && c->k == k)
        atomic_fetch_add(&c->refs, 1);
    else
        c = NULL;
    pthread_mutex_unlock(&e->cands_mu);
    return c;
}

/* A draw of k samples (ids, their log q) becomes e's cached one, sorted
 * and deduplicated, with the training state it was made in; returned with
 * a reference for the caller, NULL when out of memory (caller holds e's
 * lock, read). */
static bg__cands *cands_put(bg__sampler *e, uint64_t seed, uint32_t k, const uint64_t *ids,
                            const double *log_q)
{
    size_t each = sizeof(uint64_t) + sizeof(double) + sizeof(uint32_t);
    bg__cands *c = malloc(sizeof *c + k * each);
    if (!c)
        return NULL;
    c->ids = (uint64_t *)(c + 1);
    c->log_q = (double *)(c->ids + k);
    c->mult = (uint32_t *)(c->log_q + k);
    if (bg__cands_fill(c, ids, log_q, k) != BG_OK) {
        free(c);
        return NULL;
    }
    bg__lpcache_init(&c->lpc);
    atomic_init(&c->refs, 2); /* the caller's and the cache's */
    c->seed = seed;
    c->gen = atomic_load(&e->gen);
    c->k = k;
    c->fit = e->fit;
    pthread_mutex_lock(&e->cands_mu);
    bg__cands *old = e->cands;
    e->cands = c;
    pthread_mutex_unlock(&e->cands_mu);
    bg__cands_unref(old);
    return c;
}

/* Draw k samples of e with the generator seeded by seed, and cache them
 * (cands_put): *out is the draw with a reference, NULL when out of memory.
 * The sampler's status (caller holds e's lock, read). */
static int draw(const bg_guard *g, bg__sampler *e, uint64_t seed, uint32_t k, bg__cands **out)
{
    uint64_t *ids = malloc(k * sizeof *ids);
    double *log_q = malloc(k * sizeof *log_q);
    int prc = BG_PLUGIN_OK;
    *out = NULL;
    if (ids && log_q) {
        for (uint32_t i = 0; i < k; i++)
            log_q[i] = NAN; /* a sampler that reports no log q: no health */
        bg_rng rng;
        bg_rng_init(&rng, seed);
        prc = g->sampler->sample(e->inst, &rng, k, ids, log_q);
        if (prc == BG_PLUGIN_OK)
            *out = cands_put(e, seed, k, ids, log_q);
    }
    free(ids);
    free(log_q);
    return prc;
}

/* The refusal of a verdict from a sampler outside the guard's limits
 * (on_unhealthy: unavailable): BG_EUNAVAIL saying why and when to retry.
 * A background sampler that has had little training on these data gets
 * train_steps more (at most 10 * train_steps at one version: a caller
 * cannot keep the trainer busy by asking). */
static int refuse_unhealthy(bg_sampled_trainer *s, const bg_guard *g, bg__sampler *e,
                            const char *session, const bg_observation *hist, size_t n_hist,
                            const bg_sampler_health *h, bg_err *err)
{
    const char *sess = session ? session : "";
    uint64_t ms = (atomic_load(&s->step_ns) * s->opts.train_steps + 999999u) / 1000000u;
    int more = g->train == BG_TRAIN_BACKGROUND &&
               (h->version_lag > 0 || h->train_steps < 10ull * s->opts.train_steps);
    if (more) {
        bg_err e2;
        bg_err_clear(&e2);
        if (h->version_lag == 0 &&
            schedule(s, g, e, hist, n_hist, s->opts.train_steps, 1, &e2) != BG_OK)
            more = 0; /* the trainer is full: say so below */
    }
    if (more)
        return bg_err_set(err, BG_EUNAVAIL,
                          "policy %s: the sampler of session '%s' is not trustworthy now (%s); "
                          "no decision was made: it is training on the session's data, retry "
                          "in about %llu ms",
                          g->name, sess, h->reason, (unsigned long long)(ms ? ms : 1));
    return bg_err_set(err, BG_EUNAVAIL,
                      "policy %s: the sampler of session '%s' is not trustworthy now (%s) after "
                      "%llu training steps on the session's %zu observations; no decision was "
                      "made: retry after the next observation trains it further, or loosen "
                      "spec.sampler's limits (docs/POLICIES.md)",
                      g->name, sess, h->reason, (unsigned long long)h->train_steps, n_hist);
}

/* The candidates ids/lp/harm (n of them, arrays owned) with ex's
 * hypotheses merged in (none among them): the arrays replaced (*u_ids
 * owns the new ids when ids was not c's). BG_OK or BG_ENOMEM. */
static int join(const bg_guard *g, const bg__refined *ex, const uint64_t **ids, uint64_t **u_ids,
                double **lp, double **harm, size_t *n, bg_err *err)
{
    if (!ex->n)
        return BG_OK;
    uint64_t *ui = malloc((*n + ex->n) * sizeof *ui);
    double *ulp = malloc((*n + ex->n) * sizeof *ulp);
    double *uh = malloc((*n + ex->n) * sizeof *uh);
    if (!ui || !ulp || !uh || bg__refined_merge(*ids, *lp, *harm, *n, ex, ui, ulp, uh) != BG_OK) {
        free(ui);
        free(ulp);
        free(uh);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu candidates", g->name,
                          *n + ex->n);
    }
    free(*lp);
    free(*harm);
    free(*u_ids);
    *lp = ulp;
    *harm = uh;
    *ids = *u_ids = ui;
    *n += ex->n;
    return BG_OK;
}

/* How many of a's members are among the n candidates ids (both
 * ascending): the kept set's share of a verdict (a member the model
 * scored NaN was left out of it). */
static size_t members_in(const bg__archive *a, const uint64_t *ids, size_t n)
{
    size_t i = 0, j = 0, k = 0;
    while (i < a->n && j < n) {
        if (a->ids[i] == ids[j]) {
            k++;
            i++;
            j++;
        } else if (a->ids[i] < ids[j]) {
            i++;
        } else {
            j++;
        }
    }
    return k;
}

/* Steps 3-6 over the draw c: score its candidates (log_r: their log R,
 * for the health; *kept_joined: kept's members among the candidates), refine (sampled_refine.c:
 * extra candidates near the cautious hypothesis, at most opts.refine scored) and estimate over the
 * union. */
static int score_refine_estimate(bg_sampled_trainer *s, const bg_guard *g,
                                 const bg_observation *hist, size_t n_hist, const bg_action *action,
                                 bg__cands *c, const bg__archive *arch, const bg__archive *kept,
                                 uint64_t version, bg_verdict *out, double *log_r,
                                 size_t *kept_joined, bg_err *err)
{
    *kept_joined = 0;
    size_t n = c->n;
    double *harm = malloc(n * sizeof *harm), *lp = malloc(n * sizeof *lp);
    bg__refined rf = {0}, ex = {0}, kx = {0};
    uint64_t *u_ids = NULL;
    const uint64_t *ids = c->ids;
    int rc = BG_OK;
    if (!harm || !lp) {
        rc = bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu samples", g->name, n);
        goto done;
    }
    /* the draw's own candidates are scored afresh by every Evaluate, as
     * the enumerated path checks its posterior: a model that turns NaN is
     * caught on the next call (test_engine_failclosed); only the
     * refinement's neighbours and the archive come from the cache */
    if ((rc = bg__score(g, hist, n_hist, action, c->ids, n, log_r, harm, NULL, version, 0, err)) !=
        BG_OK)
        goto done;
    memcpy(lp, log_r, n * sizeof *lp);
    /* 4a. the search archive's members that the draw lacks join the
     * candidates (sampled_archive.c) */
    if (arch && atomic_load(&s->use_archive)) {
        if ((rc = bg__archive_extra(g, hist, n_hist, action, arch, c->ids, n, &c->lpc, version, &ex,
                                    err)) != BG_OK)
            goto done;
        if ((rc = join(g, &ex, &ids, &u_ids, &lp, &harm, &n, err)) != BG_OK)
            goto done;
    }
    int refine = g->sampler_refine ? g->sampler_refine : atomic_load(&s->refine);
    uint32_t budget = refine > 0 ? (uint32_t)refine : 0;
    if (budget && (rc = bg__refine(g, hist, n_hist, action, ids, lp, harm, n, budget, ex.n > 0,
                                   &c->lpc, version, &rf, err)) != BG_OK)
        goto done;
    if ((rc = join(g, &rf, &ids, &u_ids, &lp, &harm, &n, err)) != BG_OK)
        goto done;
    /* 4c. a remembered context's kept candidates (sampled_context.c: what
     * the trainer's search for this context found), exactly scored like the
     * archive's — log R at this version, harm for this action — and added
     * after the refinement, so its climbs are those of the verdict without
     * them: the candidates are a superset of that verdict's, whose iid
     * product can only grow and whose non-iid floor only rise */
    if (kept) {
        if ((rc = bg__archive_extra(g, hist, n_hist, action, kept, ids, n, &c->lpc, version, &kx,
                                    err)) != BG_OK)
            goto done;
        if ((rc = join(g, &kx, &ids, &u_ids, &lp, &harm, &n, err)) != BG_OK)
            goto done;
        *kept_joined = members_in(kept, ids, n);
    }
    rc = bg__estimate_over(g, ids, n, lp, harm, out, err);
done:
    free(harm);
    free(lp);
    free(u_ids);
    bg__refined_free(&rf);
    bg__refined_free(&ex);
    bg__refined_free(&kx);
    return rc;
}

int bg__sampled_evaluate(bg_sampled_trainer *s, const bg_guard *g, const char *session,
                         const bg_observation *hist, size_t n_hist, const bg_action *action,
                         bg_verdict *out, bg_err *err)
{
    assert_guard(g);
    uint32_t k = g->sampler_samples ? g->sampler_samples : s->opts.default_k;
    bg__sampler *e;
    /* a session without data samples the instance's own (prior) sampler:
     * it makes no session sampler and so drops none */
    int rc = session_sampler(s, g, n_hist ? session : NULL, &e, err);
    if (rc != BG_OK)
        return rc;
    /* Invariant 4: a sampler that has not yet trained on the session's data
     * (first use, after a reload or a drop) would give a verdict about
     * nothing: start its training and fail closed until it has had
     * train_steps steps. */
    if (n_hist && g->train == BG_TRAIN_BACKGROUND &&
        !(atomic_load(&e->state) & BG__SAMPLER_TRAINED)) {
        rc = schedule(s, g, e, hist, n_hist, (uint64_t)steps_per_obs(s, g) * n_hist, 1, err);
        if (rc == BG_OK)
            rc = bg_err_set(err, BG_EUNAVAIL,
                            "policy %s: the sampler of session '%s' has not yet trained on "
                            "the session's %zu observations (a new sampler: first use, a reload, "
                            "or it was dropped for newer sessions); "
                            "it is training now and no decision was made: retry in a moment",
                            g->name, session ? session : "", n_hist);
        bg__sampler_put(e);
        return rc;
    }
    uint64_t seed = bg__sampled_seed(s->opts.seed, session, n_hist);
    bg__cands *c = cands_get(e, seed, k);
    /* A background session sampler's draws are made by the trainer after
     * each round (draw_ahead): until the one for this history is there,
     * the newest serves, scored against the current data (its health
     * reports the lag). */
    if (!c && g->train == BG_TRAIN_BACKGROUND && e->session)
        c = cands_latest(e, k);
    int prc = BG_PLUGIN_OK;
    if (!c) {
        /* under the read lock: no round ends between gen and the draw */
        pthread_rwlock_rdlock(&e->lock);
        c = cands_get(e, seed, k); /* another Evaluate may have drawn meanwhile */
        if (!c)
            prc = draw(g, e, seed, k, &c);
        pthread_rwlock_unlock(&e->lock);
    }
    if (prc != BG_PLUGIN_OK || !c) {
        bg__sampler_put(e);
        if (prc != BG_PLUGIN_OK)
            return bg_err_set(err, bg__plugin_code(prc), /* a limit stays a limit */
                              "policy %s: sampler %s: sample failed (%d)", g->name,
                              g->sampler_name ? g->sampler_name : "?", prc);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %u samples", g->name, k);
    }
    uint64_t version = bg__history_version(g, hist, n_hist);
    pthread_mutex_lock(&e->cands_mu);
    bg__archive *arch = e->arch;
    if (arch)
        atomic_fetch_add(&arch->refs, 1);
    pthread_mutex_unlock(&e->cands_mu);
    /* the context remembered (sampled_context.c): its kept candidates, if
     * the trainer has searched for it; out of memory only forgets it */
    bg__ctx *ctx = NULL;
    bg__archive *kept = NULL;
    uint64_t rounds = 0;
    size_t joined = 0;
    if (n_hist)
        bg__ctx_record(&e->ctx, contexts_of(s, g), action, &ctx, &kept, &rounds);
    double *log_r = malloc(c->n * sizeof *log_r);
    if (!log_r)
        rc = bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %u samples", g->name, k);
    else
        rc = score_refine_estimate(s, g, hist, n_hist, action, c, arch, kept, version, out, log_r,
                                   &joined, err);
    if (rc == BG_OK && ctx)
        bg__ctx_cautious(&e->ctx, ctx, out->cautious_id);
    out->sampled = 1;
    out->samples = k;
    if (rc == BG_OK) {
        bg__health_of(g, c, log_r, version, n_hist, &out->health);
        bg__health_archive(atomic_load(&s->use_archive) ? arch : NULL, version, n_hist,
                           &out->health);
        bg__health_context(ctx != NULL, kept, rounds, joined, version, n_hist, &out->health);
        if (!out->health.healthy && g->sampler_limits.on_unhealthy == BG_UNHEALTHY_UNAVAILABLE)
            rc = refuse_unhealthy(s, g, e, session, hist, n_hist, &out->health, err);
    }
    bg__ctx_unref(ctx);
    bg__archive_unref(kept);
    bg__archive_unref(arch);
    free(log_r);
    bg__cands_unref(c);
    bg__sampler_put(e);
    return rc;
}

/* ---------------------------------------------------- the trainer object */

int bg_sampled_trainer_create(const bg_sampled_opts *opts, bg_sampled_trainer **out, bg_err *err)
{
    *out = NULL;
    bg_sampled_trainer *s = calloc(1, sizeof *s);
    if (!s)
        return bg_err_set(err, BG_ENOMEM, "sampled path: out of memory");
    if (opts)
        s->opts = *opts;
    if (!s->opts.train_steps)
        s->opts.train_steps = 20;
    if (!s->opts.default_k)
        s->opts.default_k = 1024;
    if (!s->opts.max_sessions)
        s->opts.max_sessions = 64;
    if (!s->opts.refine)
        s->opts.refine = BG_SAMPLED_REFINE_DEFAULT;
    atomic_init(&s->refine, s->opts.refine > 0 ? s->opts.refine : 0);
    if (!s->opts.search)
        s->opts.search = BG_SAMPLED_SEARCH_DEFAULT;
    atomic_init(&s->search, s->opts.search > 0 ? s->opts.search : 0);
    atomic_init(&s->use_archive, 1);
    if (!s->opts.contexts)
        s->opts.contexts = BG_SAMPLED_CONTEXTS_DEFAULT;
    if (s->opts.contexts > (int32_t)BG__CTX_MAX_CAP)
        s->opts.contexts = (int32_t)BG__CTX_MAX_CAP;
    atomic_init(&s->contexts, s->opts.contexts > 0 ? s->opts.contexts : 0);
    atomic_init(&s->context_search, s->opts.context_search > 0    ? s->opts.context_search
                                    : s->opts.context_search == 0 ? CTX_SEARCH_BY_SPACE
                                                                  : 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    int prc = pthread_create(&s->thread, NULL, trainer_main, s);
    if (prc != 0) {
        bg_sampled_trainer_destroy(s);
        return bg_err_set(err, BG_EINTERNAL, "sampled path: cannot start the trainer thread: %s",
                          strerror(prc));
    }
    s->have_thread = 1;
    *out = s;
    return BG_OK;
}

void bg_sampled_trainer_destroy(bg_sampled_trainer *s)
{
    if (!s)
        return;
    if (s->have_thread) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    while (s->jobs) {
        /* transition "job done" for the jobs that never ran */
        train_job *j = s->jobs;
        s->jobs = j->next;
        atomic_fetch_and(&j->e->state, ~BG__SAMPLER_JOB);
        bg__assert_sampler_state(j->e, 0);
        job_destroy(j);
    }
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void bg_sampled_trainer_wait_idle(bg_sampled_trainer *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->jobs || s->running || s->finishing)
        pthread_cond_wait(&s->idle_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void bg_sampled_trainer_refine(bg_sampled_trainer *s, int32_t refine)
{
    atomic_store(&s->refine, refine > 0 ? refine : 0);
}

void bg_sampled_trainer_use_archive(bg_sampled_trainer *s, int on)
{
    atomic_store(&s->use_archive, on != 0);
}

void bg_sampled_trainer_search(bg_sampled_trainer *s, int32_t search)
{
    atomic_store(&s->search, search > 0 ? search : 0);
}

void bg_sampled_trainer_search_stats(bg_sampled_trainer *s, uint64_t *searches, uint64_t *evals,
                                     uint64_t *cpu_ns)
{
    *searches = atomic_load(&s->searches);
    *evals = atomic_load(&s->search_evals);
    *cpu_ns = atomic_load(&s->search_ns);
}

void bg_sampled_trainer_contexts(bg_sampled_trainer *s, int32_t contexts, int32_t budget)
{
    if (contexts > (int32_t)BG__CTX_MAX_CAP)
        contexts = (int32_t)BG__CTX_MAX_CAP;
    atomic_store(&s->contexts, contexts > 0 ? contexts : 0);
    atomic_store(&s->context_search, budget > 0 ? budget : budget == 0 ? CTX_SEARCH_BY_SPACE : 0);
}

void bg_sampled_trainer_context_stats(bg_sampled_trainer *s, uint64_t *rounds, uint64_t *contexts,
                                      uint64_t *looked, uint64_t *evals, uint64_t *cpu_ns)
{
    *rounds = atomic_load(&s->ctx_rounds);
    *contexts = atomic_load(&s->ctx_contexts);
    *looked = atomic_load(&s->ctx_looked);
    *evals = atomic_load(&s->ctx_evals);
    *cpu_ns = atomic_load(&s->ctx_ns);
}

uint64_t bg_sampled_trainer_search_size(bg_sampled_trainer *s)
{
    return atomic_load(&s->search_size);
}

void bg_sampled_trainer_hold(bg_sampled_trainer *s, int hold)
{
    pthread_mutex_lock(&s->mu);
    s->hold = hold;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int bg_sampled_trainer_next(bg_sampled_trainer *s, char *session, size_t len, size_t *queued)
{
    pthread_mutex_lock(&s->mu);
    const train_job *j = *next_job(s);
    if (j)
        snprintf(session, len, "%s", j->e->session ? j->e->session : "");
    *queued = s->n_jobs;
    pthread_mutex_unlock(&s->mu);
    return j != NULL;
}

uint64_t bg_sampled_trainer_steps(bg_sampled_trainer *s)
{
    return atomic_load(&s->steps_done);
}

uint64_t bg_sampled_trainer_jobs(bg_sampled_trainer *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->jobs_done;
    pthread_mutex_unlock(&s->mu);
    return n;
}
