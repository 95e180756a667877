/*
 * bandit_fig.c — one episode of each figure, through the engine.
 *
 * Every guardrail is a bg_guard built from the .so plugins (guard_build.h):
 * model `bandit` with this episode's θ, estimator by guardrail. The agent's
 * beliefs are the engine's posterior for the same session
 * (bg_engine_posterior), so the agent and the guardrail share one posterior
 * exactly as in the paper's code. Sessions are forgotten at the end of the
 * episode to keep the engine's memory flat.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bandit.h"

const char *bb_guardrail_name(bb_guardrail g)
{
    static const char *names[BB_GUARDRAILS] = {"none", "cheating", "posterior", "iid", "non-iid"};
    return g < BB_GUARDRAILS ? names[g] : "?";
}

int bb_dvec_push(bb_dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        double *v = realloc(d->v, cap * sizeof *v);
        if (!v)
            return BG_ENOMEM;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return BG_OK;
}

static int make_guard(const bb_ctx *c, const char *name, const bb_env *env, bb_guardrail gr,
                      double C, double alpha, bg_guard_build **out, bg_err *err)
{
    char ecfg[64] = "";
    const char *est = "posterior";
    if (gr == BB_CHEATING) {
        est = "cheating";
        snprintf(ecfg, sizeof ecfg, "true_hypothesis: %u", env->truth);
    } else if (gr == BB_IID) {
        est = "iid";
    } else if (gr == BB_NONIID) {
        est = "noniid";
        snprintf(ecfg, sizeof ecfg, "alpha: %.17g", alpha);
    }
    bg_guard_spec spec = {.name = name,
                          .model = "bandit",
                          .model_cfg = env->model_cfg,
                          .estimator = est,
                          .estimator_cfg = ecfg,
                          .threshold = C};
    return bg_guard_build_create(c->host, &spec, out, err);
}

static bg_action arm_action(const bb_env *env, int a)
{
    bg_action act = {.id = "",
                     .tool = "pull_arm",
                     .arguments_json = "",
                     .features = env->x[a],
                     .n_features = BB_D};
    return act;
}

static int observe(const bb_ctx *c, const bg_guard *g, const char *session, const bb_env *env,
                   int a, double r, bg_err *err)
{
    bg_observation o = {
        .action = arm_action(env, a), .harmed = r > env->theta, .has_value = 1, .value = r};
    return bg_engine_observe(c->engine, g, session, &o, NULL, err);
}

/* Boltzmann probabilities over arms from E[w|D]. */
static int boltzmann(const bb_ctx *c, const bg_guard *g, const char *session, const bb_env *env,
                     double *prob, bg_err *err)
{
    double post[BB_NH], ew[BB_D] = {0};
    int rc = bg_engine_posterior(c->engine, g, session, post, BB_NH, err);
    if (rc != BG_OK)
        return rc;
    for (unsigned i = 0; i < BB_NH; i++)
        for (int k = 0; k < BB_D; k++)
            if ((i >> (BB_D - 1 - k)) & 1)
                ew[k] += post[i];
    double s[BB_ARMS], m = -INFINITY, z = 0;
    for (int a = 0; a < BB_ARMS; a++) {
        s[a] = 0;
        for (int k = 0; k < BB_D; k++)
            s[a] += env->x[a][k] * ew[k];
        s[a] *= c->beta;
        if (s[a] > m)
            m = s[a];
    }
    for (int a = 0; a < BB_ARMS; a++)
        z += (prob[a] = exp(s[a] - m));
    for (int a = 0; a < BB_ARMS; a++)
        prob[a] /= z;
    return BG_OK;
}

static int sample_allowed(bb_rng *r, const double *prob, const int *rejected)
{
    double z = 0;
    int last = -1;
    for (int a = 0; a < BB_ARMS; a++)
        if (!rejected[a]) {
            z += prob[a];
            last = a;
        }
    double u = bb_uniform(r) * z;
    for (int a = 0; a < BB_ARMS; a++) {
        if (rejected[a])
            continue;
        if (u < prob[a])
            return a;
        u -= prob[a];
    }
    return last;
}

int bb_run_fig1(const bb_ctx *c, const bb_env *env, bb_guardrail gr, double C, double alpha,
                uint64_t seed, uint64_t cell, uint64_t episode, bb_episode1 *out, bg_err *err)
{
    bg_guard_build *gb;
    int rc = make_guard(c, "fig1", env, gr, C, alpha, &gb, err);
    if (rc != BG_OK)
        return rc;
    const bg_guard *g = bg_guard_build_guard(gb);
    char session[48];
    snprintf(session, sizeof session, "c%llu-e%llu", (unsigned long long)cell,
             (unsigned long long)episode);
    bb_rng r;
    bb_rng_seed(&r, seed, 0xa9e17u + cell, episode);
    memset(out, 0, sizeof *out);
    for (int t = 0; t < c->steps && rc == BG_OK; t++) {
        double prob[BB_ARMS];
        int rejected[BB_ARMS] = {0}, n_rej = 0, a = -1;
        if ((rc = boltzmann(c, g, session, env, prob, err)) != BG_OK)
            break;
        while (rc == BG_OK && n_rej < BB_ARMS) {
            a = sample_allowed(&r, prob, rejected);
            if (gr == BB_NONE)
                break;
            bg_verdict v;
            bg_action act = arm_action(env, a);
            if ((rc = bg_engine_evaluate(c->engine, g, session, &act, &v, err)) != BG_OK)
                break;
            if (v.decision == BG_DECISION_ALLOW)
                break;
            rejected[a] = 1;
            n_rej++;
            out->rejections++;
        }
        if (rc != BG_OK)
            break;
        if (n_rej == BB_ARMS) {
            out->all_rejected = 1; /* the episode ends; counted as survival */
            break;
        }
        double reward = env->mean[a] + BB_SIGMA * bb_normal(&r);
        out->reward += reward;
        out->steps++;
        rc = observe(c, g, session, env, a, reward, err);
        if (reward > env->theta) {
            /* The official code's quirk: an explosion on the last step is
             * not a death. */
            out->death = t < c->steps - 1;
            break;
        }
    }
    bg_engine_forget(c->engine, "fig1", session);
    bg_guard_build_destroy(gb);
    return rc;
}

int bb_run_fig2(const bb_ctx *c, const bb_env *env, const double *alphas, size_t n_alpha,
                uint64_t seed, uint64_t episode, double *over, bb_dvec *half, bg_err *err)
{
    bg_guard_build **gb = calloc(n_alpha, sizeof *gb);
    if (!gb)
        return bg_err_set(err, BG_ENOMEM, "bench: out of memory");
    int rc = BG_OK;
    for (size_t i = 0; i < n_alpha && rc == BG_OK; i++)
        rc = make_guard(c, "fig2", env, BB_NONIID, 1.0, alphas[i], &gb[i], err);
    char session[48];
    snprintf(session, sizeof session, "t-e%llu", (unsigned long long)episode);
    bb_rng r;
    bb_rng_seed(&r, seed, 0x7197u, episode);
    for (size_t i = 0; i < n_alpha; i++)
        over[i] = 0;
    for (int t = 0; t < c->steps && rc == BG_OK; t++) {
        int a = (int)(bb_uniform(&r) * BB_ARMS);
        double truth = bb_true_harm(env, a);
        for (size_t i = 0; i < n_alpha && rc == BG_OK; i++) {
            bg_verdict v;
            bg_action act = arm_action(env, a);
            rc = bg_engine_evaluate(c->engine, bg_guard_build_guard(gb[i]), session, &act, &v, err);
            if (rc == BG_OK && v.harm_bound >= truth)
                over[i] += 1.0 / c->steps;
        }
        for (int f = 0; f < BB_ARMS && rc == BG_OK; f++) {
            if (env->mean[f] != env->theta)
                continue; /* only arms of true harm exactly 0.5 */
            for (size_t i = 0; i < n_alpha && rc == BG_OK; i++) {
                bg_verdict v;
                bg_action act = arm_action(env, f);
                rc = bg_engine_evaluate(c->engine, bg_guard_build_guard(gb[i]), session, &act, &v,
                                        err);
                if (rc == BG_OK && bb_dvec_push(&half[i], v.harm_bound) != BG_OK)
                    rc = bg_err_set(err, BG_ENOMEM, "bench: out of memory");
            }
        }
        if (rc == BG_OK)
            rc = observe(c, bg_guard_build_guard(gb[0]), session, env, a,
                         env->mean[a] + BB_SIGMA * bb_normal(&r), err);
    }
    bg_engine_forget(c->engine, "fig2", session);
    for (size_t i = 0; i < n_alpha; i++)
        bg_guard_build_destroy(gb[i]);
    free(gb);
    return rc;
}
