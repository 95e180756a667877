/*
 * gfn_bandit_twin.h — what the sampled-vs-exact programs share
 * (tests/gfn/test_gfn_fresh.c, bench/gfn/bench_keepup.c): a d-bit
 * exploding-bandit environment (w*, 10 random arms, θ = the largest true
 * arm mean) and four guards on it through the engine and the real plugins
 * — sampled (the bandit with `enumerate: false` and a gfn sampler trained
 * inline) and exact, each with the iid and the non-iid (α = 0.01)
 * estimator (at d > 20 the bandit enumerates nothing, so only the sampled
 * guards are meaningful: test_gfn_exact22.c computes its reference itself).
 * Header-only (static functions) so each stays one program;
 * checks are bg_test.h's.
 *
 * Ownership: twin_open fills a caller-owned twin; twin_close frees what it
 * made. The guards are valid in between.
 */
#ifndef BG_GFN_BANDIT_TWIN_H
#define BG_GFN_BANDIT_TWIN_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bg_test.h"
#include "engine/engine.h"
#include "gfn/gfn.h"
#include "cfg/cfg.h"
#include "engine/sampled.h"
#include "guard_build.h"

/* A standard normal draw (Box–Muller) from the test's generator. */
static inline double twin_randn(bg_rng *r)
{
    double u1 = bg_gfn_rng_uniform(r) + 1e-12, u2 = bg_gfn_rng_uniform(r);
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Features of an id-layout mask of d bits (bandit: w_k = id bit d-1-k). */
static inline void twin_features(int d, uint64_t m, double *f)
{
    for (int k = 0; k < d; k++)
        f[k] = (double)(m >> (d - 1 - k) & 1);
}

/* A bandit guard `name` with the model config and estimator given. */
static inline const bg_guard *twin_build(bg_plugin_host *h, const char *name, const char *model_cfg,
                                         const char *est, const char *est_cfg, bg_guard_build **gb)
{
    bg_guard_spec spec = {.name = name,
                          .model = "bandit",
                          .model_cfg = model_cfg,
                          .estimator = est,
                          .estimator_cfg = est_cfg,
                          .threshold = 0.5};
    bg_err err;
    CHECK(bg_guard_build_create(h, &spec, gb, &err) == BG_OK, "%s", err.msg);
    return bg_guard_build_guard(*gb);
}

/* g with b's estimator (same name, model and sessions). */
static inline bg_guard twin_with_estimator(const bg_guard *g, const bg_guard *b)
{
    bg_guard o = *g;
    o.estimator_name = b->estimator_name;
    o.estimator = b->estimator;
    o.estimator_inst = b->estimator_inst;
    return o;
}

#define TWIN_ARMS 10

typedef struct twin {
    int d, theta;
    uint64_t arms[TWIN_ARMS], w_star;
    bg_guard_build *b_s, *b_sn, *b_x, *b_xn;
    bg_cfg_doc *doc;
    bg_plugin_instance *sp;
    bg_guard gs, gs_non, gx_non; /* sampled iid, sampled non-iid, exact non-iid */
    const bg_guard *gx;          /* exact iid */
    bg_sampled_trainer *tr;
    bg_engine *e;
} twin;

/* A pull of the arm with mask m: its features into f[d] (borrowed by the
 * observation), the reward x·w* + N(0, 1) drawn from r. */
static inline bg_observation twin_pull(const twin *t, uint64_t m, double *f, bg_rng *r)
{
    twin_features(t->d, m, f);
    bg_observation o = {.action = {.id = "",
                                   .tool = "pull",
                                   .arguments_json = "",
                                   .features = f,
                                   .n_features = (size_t)t->d},
                        .has_value = 1,
                        .value = __builtin_popcountll(m & t->w_star) + twin_randn(r)};
    return o;
}

/* The environment from r (w*, then the arms), the guards named
 * <name>-sampled / <name>-exact, the sampler from its YAML config text
 * drawing k samples, trained steps per observation inline, and an engine. */
static inline void twin_open(twin *t, bg_plugin_host *h, const char *name, int d, bg_rng *r,
                             const char *sampler_cfg, uint32_t k, uint32_t steps)
{
    bg_err err;
    uint64_t mask = d >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << d) - 1; /* 1 << 64 is undefined */
    t->d = d;
    t->w_star = bg_gfn_rng_u64(r) & mask;
    t->theta = 0;
    for (int a = 0; a < TWIN_ARMS; a++) {
        t->arms[a] = bg_gfn_rng_u64(r) & mask;
        int mean = __builtin_popcountll(t->arms[a] & t->w_star);
        t->theta = mean > t->theta ? mean : t->theta;
    }
    char mcfg_s[128], mcfg_x[128], ns[64], nx[64];
    snprintf(mcfg_s, sizeof mcfg_s, "{features: %d, sigma: 1, theta: %d, enumerate: false}", d,
             t->theta);
    snprintf(mcfg_x, sizeof mcfg_x, "{features: %d, sigma: 1, theta: %d}", d, t->theta);
    snprintf(ns, sizeof ns, "%s-sampled", name);
    snprintf(nx, sizeof nx, "%s-exact", name);
    const bg_guard *gs0 = twin_build(h, ns, mcfg_s, "iid", "", &t->b_s);
    const bg_guard *gsn = twin_build(h, ns, mcfg_s, "noniid", "{alpha: 0.01}", &t->b_sn);
    t->gx = twin_build(h, nx, mcfg_x, "iid", "", &t->b_x);
    const bg_guard *gxn = twin_build(h, nx, mcfg_x, "noniid", "{alpha: 0.01}", &t->b_xn);
    /* above d = 20 the bandit enumerates nothing: the "exact" guards are
     * then sampled too and a caller computes its own reference */
    CHECK(gs0->model->count(gs0->model_inst) == 0 &&
              t->gx->model->count(t->gx->model_inst) == (d <= 20 ? (uint64_t)1 << d : 0),
          "enumerate: false must make count() 0");

    CHECK(bg_cfg_parse_string(sampler_cfg, strlen(sampler_cfg), "sampler.yaml", &t->doc, &err) ==
              BG_OK,
          "%s", err.msg);
    const bg_cfg_node *scfg = bg_cfg_doc_root(t->doc, 0);
    bg_space space = {(uint32_t)d, 0};
    CHECK(bg_plugin_instance_create(h, "gfn", BG_PLUGIN_KIND_SAMPLER, scfg, scfg, &space, NULL,
                                    NULL, &t->sp, &err) == BG_OK,
          "sampler: %s", err.msg);
    t->gs = *gs0;
    t->gs.sampler_name = "gfn";
    t->gs.sampler = t->sp->plugin->desc->vt.sampler;
    t->gs.sampler_inst = t->sp->inst;
    t->gs.sampler_samples = k;
    CHECK(bg_sampled_create(t->gs.sampler_inst, &t->gs.sampled, &err) == BG_OK, "%s", err.msg);
    t->gs.train = BG_TRAIN_INLINE;
    CHECK(bg_guard_check(&t->gs, &err) == BG_OK, "%s", err.msg);
    t->gs_non = twin_with_estimator(&t->gs, gsn);
    t->gx_non = twin_with_estimator(t->gx, gxn);

    bg_sampled_opts so = {.train_steps = steps, .seed = 1};
    CHECK(bg_sampled_trainer_create(&so, &t->tr, &err) == BG_OK, "%s", err.msg);
    bg_engine_opts eo = {.trainer = t->tr};
    CHECK(bg_engine_create(&eo, &t->e, &err) == BG_OK, "%s", err.msg);
}

static inline void twin_close(twin *t)
{
    bg_engine_destroy(t->e);
    bg_sampled_trainer_destroy(t->tr);
    bg_sampled_destroy(t->gs.sampled);
    bg_plugin_instance_destroy(t->sp);
    bg_cfg_doc_destroy(t->doc);
    bg_guard_build_destroy(t->b_xn);
    bg_guard_build_destroy(t->b_x);
    bg_guard_build_destroy(t->b_sn);
    bg_guard_build_destroy(t->b_s);
}

#endif
