/*
 * test_gfn_sampled.c — a d = 32 bandit guard (2^32 hypotheses, count() =
 * 0) through the engine with the gfn sampled path: the real plugins
 * (bandit, the iid estimator, the gfn sampler) loaded by the plugin
 * host, observations of a fixed w*, then Evaluate returns a sampled
 * verdict — sampled = 1, samples = K, a bound in [0, 1] equal to the
 * cautious hypothesis's harm (iid), a label, a plausible-set size ≥ 1 —
 * that is reproducible (same data, same verdict), and whose cautious
 * hypothesis fits the data: its log-likelihood is within 60 nats of
 * w*'s after training (a random hypothesis is ~300 nats
 * worse; printed). Skips (77) when the plugins are not built.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/guard_build.h"
#include "gfn/gfn_sampled.h"
#include "gfn_test_util.h"
#include "policy/cfg.h"

#define D 32
#define N_OBS 40

static uint64_t w_star = 0x5a3c96e1ULL;

/* plugin convention: w_k = id bit (d-1-k) */
static double dot(uint64_t xmask, uint64_t w)
{
    return __builtin_popcountll(xmask & w);
}

static int nan_harm(const void *self, const bg_action *a, const bg_observation *hist,
                    size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self, (void)a, (void)hist, (void)n_hist, (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
    return BG_PLUGIN_OK;
}

static int neg_inf_lik(const void *self, const bg_observation *obs, const bg_observation *hist,
                       size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self, (void)obs, (void)hist, (void)n_hist, (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = -INFINITY;
    return BG_PLUGIN_OK;
}

int main(void)
{
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so"};
    const char *dir = plugin_dir_or_skip(need, 3);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_guard_spec spec = {.name = "bandit32", .model = "bandit",
                          .model_cfg = "{features: 32, sigma: 1, theta: 6}",
                          .estimator = "iid", .estimator_cfg = "", .threshold = 0.5};
    bg_guard_build *gb;
    CHECK(bg_guard_build_create(h, &spec, &gb, &err) == BG_OK, "%s", err.msg);
    bg_guard g = *bg_guard_build_guard(gb);

    /* the sampler instance, through the host like the daemon would */
    bg_plugin *sp;
    CHECK(bg_plugin_host_find(h, "gfn", BG_PLUGIN_KIND_SAMPLER, &sp, &err) == BG_OK, "%s",
          err.msg);
    const char *yaml = "{loss: tb, hidden: 64, lr: 0.01, lr_end: 0.001, lr_horizon: 400, "
                       "seed: 5}";
    bg_cfg_doc *doc;
    CHECK(bg_cfg_parse_string(yaml, strlen(yaml), "s.yaml", &doc, &err) == BG_OK, "%s", err.msg);
    bg_plugin_services *svc;
    CHECK(bg_plugin_services_create(h, sp, &svc, &err) == BG_OK, "%s", err.msg);
    bg_space space = {D, 0};
    void *inst;
    CHECK(sp->desc->vt.sampler->create(bg_plugin_services_host(svc), bg_cfg_doc_root(doc, 0),
                                       &space, &inst) == BG_PLUGIN_OK,
          "sampler create: %s", bg_plugin_services_errors(svc));
    g.sampler_name = "gfn";
    g.sampler = sp->desc->vt.sampler;
    g.sampler_inst = inst;
    g.sampler_samples = 256;

    bg_engine *e;
    bg_engine_opts eo = {0};
    CHECK(bg_engine_create(&eo, &e, &err) == BG_OK, "%s", err.msg);
    bg_gfn_sampled *gs;
    bg_gfn_sampled_opts so = {.train_steps = 20, .default_k = 0, .seed = 1};
    CHECK(bg_gfn_sampled_create(&so, &gs, &err) == BG_OK, "%s", err.msg);
    bg_engine_set_sampled(e, bg_gfn_sampled_ops(gs));

    /* observations: random arms, r ~ N(x·w*, 1) */
    bg_rng r;
    bg_gfn_rng_seed(&r, 12);
    double feats[N_OBS][D];
    uint64_t masks[N_OBS];
    bg_posterior_summary sum;
    for (int i = 0; i < N_OBS; i++) {
        masks[i] = bg_gfn_rng_u64(&r) & 0xffffffffULL;
        for (int k = 0; k < D; k++)
            feats[i][k] = (double)(masks[i] >> (D - 1 - k) & 1);
        double u1 = bg_gfn_rng_uniform(&r) + 1e-12, u2 = bg_gfn_rng_uniform(&r);
        double noise = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
        bg_observation o = {.action = {.id = "", .tool = "pull", .arguments_json = "",
                                       .features = feats[i], .n_features = D},
                            .has_value = 1, .value = dot(masks[i], w_star) + noise};
        CHECK(bg_engine_observe(e, &g, "s1", &o, &sum, &err) == BG_OK, "observe %d: %s", i,
              err.msg);
    }
    CHECK(sum.observations == N_OBS, "observations %llu", (unsigned long long)sum.observations);

    double x[D];
    for (int k = 0; k < D; k++)
        x[k] = k % 3 == 0;
    bg_action a = {.id = "", .tool = "pull", .arguments_json = "", .features = x,
                   .n_features = D};
    bg_verdict v1, v2;
    CHECK(bg_engine_evaluate(e, &g, "s1", &a, &v1, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_engine_evaluate(e, &g, "s1", &a, &v2, &err) == BG_OK, "%s", err.msg);
    printf("sampled verdict: %s bound %.4f cautious %s (posterior among samples %.3f, harm "
           "%.4f), plausible %llu, sampled %d from %llu samples, %llu us\n",
           bg_decision_name(v1.decision), v1.harm_bound, v1.cautious_label,
           v1.cautious_posterior, v1.cautious_harm, (unsigned long long)v1.plausible_set_size,
           v1.sampled, (unsigned long long)v1.samples, (unsigned long long)v1.eval_us);
    CHECK(v1.sampled == 1 && v1.samples == 256, "sampled %d samples %llu", v1.sampled,
          (unsigned long long)v1.samples);
    CHECK(v1.harm_bound >= 0 && v1.harm_bound <= 1 && v1.harm_bound == v1.cautious_harm,
          "bound %g vs cautious harm %g", v1.harm_bound, v1.cautious_harm);
    CHECK(v1.plausible_set_size >= 1 && v1.cautious_label[0], "plausible / label");
    CHECK(v1.harm_bound == v2.harm_bound && v1.cautious_id == v2.cautious_id,
          "same data must give the same verdict");
    CHECK(v1.decision == (v1.harm_bound > 0.5 ? BG_DECISION_DENY : BG_DECISION_ALLOW),
          "decision follows the threshold");

    /* the cautious hypothesis fits the data about as well as w* */
    double ll_c = 0, ll_star = 0;
    {
        bg_rng r2;
        bg_gfn_rng_seed(&r2, 12);
        for (int i = 0; i < N_OBS; i++) {
            (void)bg_gfn_rng_u64(&r2);
            double u1 = bg_gfn_rng_uniform(&r2) + 1e-12, u2 = bg_gfn_rng_uniform(&r2);
            double noise = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            double y = dot(masks[i], w_star) + noise;
            double mc = dot(masks[i], v1.cautious_id), ms = dot(masks[i], w_star);
            ll_c += -0.5 * (y - mc) * (y - mc);
            ll_star += -0.5 * (y - ms) * (y - ms);
        }
    }
    printf("log-likelihood: cautious %.1f, w* %.1f (want within 60 nats)\n", ll_c, ll_star);
    CHECK(ll_c >= ll_star - 60, "the sampled hypotheses do not fit the data");

    /* A model that misbehaves on the sampled path is an internal error,
     * never a decision: NaN harm, and candidates all ruled out (-inf
     * log-likelihood: no finite posterior score). */
    bg_hypothesis_vtbl bad = *g.model;
    bg_guard gb2 = g;
    gb2.model = &bad;
    bad.harm = nan_harm;
    bg_verdict vb;
    int rc = bg_engine_evaluate(e, &gb2, "s1", &a, &vb, &err);
    printf("NaN harm: rc %d (%s)\n", rc, err.msg);
    CHECK(rc == BG_EINTERNAL && strstr(err.msg, "expected a probability"), "NaN harm: rc %d",
          rc);
    bad = *g.model;
    bad.log_lik = neg_inf_lik;
    rc = bg_engine_evaluate(e, &gb2, "s1", &a, &vb, &err);
    printf("-inf log-likelihood: rc %d (%s)\n", rc, err.msg);
    CHECK(rc == BG_EINTERNAL && strstr(err.msg, "finite posterior"), "-inf lik: rc %d", rc);

    bg_engine_destroy(e);
    bg_gfn_sampled_destroy(gs);
    sp->desc->vt.sampler->destroy(inst);
    bg_plugin_services_destroy(svc);
    bg_cfg_doc_destroy(doc);
    bg_plugin_unref(sp);
    bg_guard_build_destroy(gb);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
