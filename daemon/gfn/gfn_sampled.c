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
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gfn.h"
#include "gfn_sampled.h"

typedef struct lock_entry {
    const void *inst;
    pthread_rwlock_t lock;
    struct lock_entry *next;
} lock_entry;

struct bg_gfn_sampled {
    bg_gfn_sampled_opts opts;
    bg_engine_sampled_ops ops;
    pthread_mutex_t mu; /* guards the entry list */
    lock_entry *locks;
};

/* The rwlock of a sampler instance (created on first use). */
static pthread_rwlock_t *lock_of(bg_gfn_sampled *s, const void *inst)
{
    pthread_mutex_lock(&s->mu);
    lock_entry *e = s->locks;
    while (e && e->inst != inst)
        e = e->next;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        e->inst = inst;
        pthread_rwlock_init(&e->lock, NULL);
        e->next = s->locks;
        s->locks = e;
    }
    pthread_mutex_unlock(&s->mu);
    return e ? &e->lock : NULL;
}

/* log R(h) = log P(h) + Σ_i log P(obs_i | obs_<i, h) for a session. */
typedef struct session_reward {
    const bg_guard *g;
    const bg_observation *hist;
    size_t n_hist;
    double *tmp;
    size_t cap;
} session_reward;

static int session_log_r(void *vctx, const uint64_t *h, size_t n, double *out)
{
    session_reward *r = vctx;
    if (n > r->cap) {
        double *t = realloc(r->tmp, n * sizeof *t);
        if (!t)
            return BG_PLUGIN_ENOMEM;
        r->tmp = t;
        r->cap = n;
    }
    int rc = r->g->model->log_prior(r->g->model_inst, h, n, out);
    for (size_t i = 0; i < r->n_hist && rc == BG_PLUGIN_OK; i++) {
        rc = r->g->model->log_lik(r->g->model_inst, &r->hist[i], r->hist, i, h, n, r->tmp);
        for (size_t k = 0; k < n && rc == BG_PLUGIN_OK; k++)
            out[k] += r->tmp[k];
    }
    return rc;
}

static int observe_after(void *ctx, const bg_guard *g, const char *session,
                         const bg_observation *hist, size_t n_hist, bg_err *err)
{
    bg_gfn_sampled *s = ctx;
    (void)session;
    pthread_rwlock_t *lk = lock_of(s, g->sampler_inst);
    if (!lk)
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory", g->name);
    session_reward r = {g, hist, n_hist, NULL, 0};
    /* One step per write lock: an Evaluate of another session of this
     * guard waits for at most one optimiser step, not the whole burst. */
    int rc = BG_PLUGIN_OK;
    for (uint32_t k = 0; k < s->opts.train_steps && rc == BG_PLUGIN_OK; k++) {
        pthread_rwlock_wrlock(lk);
        rc = g->sampler->train(g->sampler_inst, session_log_r, &r, 1);
        pthread_rwlock_unlock(lk);
    }
    free(r.tmp);
    if (rc != BG_PLUGIN_OK)
        return bg_err_set(err, BG_EINTERNAL,
                          "policy %s: sampler %s: training failed (%d); the observation is "
                          "stored, the sampler keeps its previous state",
                          g->name, g->sampler_name ? g->sampler_name : "?", rc);
    return BG_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Stable descending order of log_post (ties: ascending index); qsort_r. */
static int by_post(const void *a, const void *b, void *keys)
{
    const double *k = keys;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (k[i] != k[j])
        return k[i] > k[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static uint64_t mix_seed(uint64_t seed, const char *session, size_t n_hist)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const char *p = session; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ^ (n_hist * 0x9e3779b97f4a7c15ULL);
}

/* Steps 3–6 over n unique candidate ids. */
static int score_and_estimate(const bg_guard *g, const bg_observation *hist, size_t n_hist,
                              const bg_action *action, const uint64_t *ids, size_t n,
                              bg_verdict *out, bg_err *err)
{
    double *lp = malloc(n * sizeof *lp), *harm = malloc(n * sizeof *harm);
    double *post = malloc(n * sizeof *post);
    uint32_t *order = malloc(n * sizeof *order);
    session_reward r = {g, hist, n_hist, NULL, 0};
    int rc = BG_OK;
    if (!lp || !harm || !post || !order) {
        rc = bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu samples", g->name, n);
        goto done;
    }
    if (session_log_r(&r, ids, n, lp) != BG_PLUGIN_OK ||
        g->model->harm(g->model_inst, action, hist, n_hist, ids, n, harm) != BG_PLUGIN_OK) {
        rc = bg_err_set(err, BG_EINTERNAL, "policy %s: model %s failed on sampled hypotheses",
                        g->name, g->model_name ? g->model_name : "?");
        goto done;
    }
    double mx = -INFINITY, z = 0;
    for (size_t i = 0; i < n; i++)
        mx = lp[i] > mx ? lp[i] : mx;
    for (size_t i = 0; i < n; i++)
        z += exp(lp[i] - mx);
    double lse = mx + log(z);
    for (size_t i = 0; i < n; i++) {
        lp[i] -= lse;
        post[i] = exp(lp[i]);
        order[i] = (uint32_t)i;
    }
    qsort_r(order, n, sizeof *order, by_post, lp);
    bg_estimate_in in = {.n = n, .ids = ids, .log_post = lp, .harm = harm, .order = order,
                         .n_order = n, .order_complete = 1, .post = post};
    bg_estimate_out eo = {0};
    if (g->estimator->estimate(g->estimator_inst, &in, &eo) != BG_PLUGIN_OK || eo.cautious >= n) {
        rc = bg_err_set(err, BG_EINTERNAL, "policy %s: estimator %s failed on %zu samples",
                        g->name, g->estimator_name ? g->estimator_name : "?", n);
        goto done;
    }
    out->harm_bound = eo.bound;
    out->posterior_predictive = eo.posterior_predictive;
    out->cautious_id = ids[eo.cautious];
    out->cautious_posterior = post[eo.cautious];
    out->cautious_harm = harm[eo.cautious];
    out->plausible_set_size = eo.plausible;
    if (!g->model->label || g->model->label(g->model_inst, out->cautious_id, out->cautious_label,
                                            sizeof out->cautious_label) != BG_PLUGIN_OK)
        snprintf(out->cautious_label, sizeof out->cautious_label, "#%llu",
                 (unsigned long long)out->cautious_id);
done:
    free(lp);
    free(harm);
    free(post);
    free(order);
    free(r.tmp);
    return rc;
}

static int evaluate(void *ctx, const bg_guard *g, const char *session,
                    const bg_observation *hist, size_t n_hist, const bg_action *action,
                    bg_verdict *out, bg_err *err)
{
    bg_gfn_sampled *s = ctx;
    uint32_t k = g->sampler_samples ? g->sampler_samples : s->opts.default_k;
    uint64_t *ids = malloc(k * sizeof *ids);
    pthread_rwlock_t *lk = lock_of(s, g->sampler_inst);
    if (!ids || !lk) {
        free(ids);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %u samples", g->name, k);
    }
    bg_rng rng;
    bg_gfn_rng_seed(&rng, mix_seed(s->opts.seed, session, n_hist));
    pthread_rwlock_rdlock(lk);
    int prc = g->sampler->sample(g->sampler_inst, &rng, k, ids, NULL);
    pthread_rwlock_unlock(lk);
    int rc;
    if (prc != BG_PLUGIN_OK) {
        rc = bg_err_set(err, BG_EINTERNAL, "policy %s: sampler %s: sample failed (%d)", g->name,
                        g->sampler_name ? g->sampler_name : "?", prc);
    } else {
        qsort(ids, k, sizeof *ids, cmp_u64);
        size_t n = 1;
        for (size_t i = 1; i < k; i++)
            if (ids[i] != ids[n - 1])
                ids[n++] = ids[i];
        rc = score_and_estimate(g, hist, n_hist, action, ids, n, out, err);
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
    pthread_mutex_init(&s->mu, NULL);
    s->ops = (bg_engine_sampled_ops){.ctx = s, .evaluate = evaluate,
                                     .observe_after = observe_after};
    *out = s;
    return BG_OK;
}

void bg_gfn_sampled_destroy(bg_gfn_sampled *s)
{
    if (!s)
        return;
    for (lock_entry *e = s->locks, *next; e; e = next) {
        next = e->next;
        pthread_rwlock_destroy(&e->lock);
        free(e);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const bg_engine_sampled_ops *bg_gfn_sampled_ops(bg_gfn_sampled *s)
{
    return &s->ops;
}
