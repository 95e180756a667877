/*
 * test_gfn_health.c — a sampled verdict's account of its sampler (issue 16
 * item 3; engine.h bg_sampler_health, daemon/engine/sampled_health.c), with
 * samplers whose draws the test knows, so every number is checked against
 * one computed here from the exact posterior:
 *
 *   exact     draws from the exact posterior (of the enumerated twin
 *             guard) and reports log q = log P(h|D): every importance
 *             weight is Z, so tb_residual = spread = 0 and ess = K
 *             (to 1e-9 / 1e-6);
 *   sweep     draws ids 0..K-1 once each, whatever the generator, and
 *             claims the uniform log q = -d log 2: then log w = log P(h|D)
 *             + const, so tb_residual is the standard deviation of log
 *             P(h|D) over ids 0..K-1, spread their range, ess
 *             (Σ p)² / Σ p² (relative 1e-9);
 *   silent    writes no log q: the measures are NaN and no limit passes.
 *
 * A d = 10 bandit (`enumerate: false`, so the sampled path runs on a
 * space the test can enumerate), 3 observations, sampler trained inline
 * (20 steps per observation; the fake samplers' train only counts): the
 * verdict reports train_steps = 20 and version_lag = 0. A training that
 * fails (Observe stores the observation and warns) leaves the sampler a version behind: version_lag
 * 1, train_steps 0. Limits (bg_guard.sampler_limits): off, every verdict is healthy;
 * max_version_lag 0 with on_unhealthy unavailable -> BG_EUNAVAIL whose
 * message names the limit and says to retry, deny -> DENY whatever the
 * bound, escalate -> ESCALATE under the threshold and the threshold's
 * DENY over it, shadow -> ALLOW; min_ess above the sweep's ess and
 * max_tb_residual under its residual are reported as such; the exact
 * sampler passes the default limits. Skips (77) when the plugins are not
 * built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "guard_build.h"

#define D 10
#define N (1u << D)
#define K 256
#define N_OBS 3

typedef enum { EXACT, SWEEP, SILENT } fake_kind;

typedef struct fake {
    fake_kind kind;
    double post[N]; /* the exact posterior (EXACT) */
    int fail_train;
    uint64_t steps;
} fake;

static int f_train(void *self, bg_log_reward_fn reward, void *ctx, uint32_t steps)
{
    (void)reward, (void)ctx;
    fake *f = self;
    f->steps += steps;
    return f->fail_train ? BG_PLUGIN_EINTERNAL : BG_PLUGIN_OK;
}

static int f_sample(const void *self, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    const fake *f = self;
    for (size_t i = 0; i < n; i++) {
        if (f->kind == EXACT) {
            double u = bg_rng_next_uniform(rng), c = 0;
            uint64_t id = N - 1;
            for (uint64_t h = 0; h < N; h++)
                if ((c += f->post[h]) > u) {
                    id = h;
                    break;
                }
            ids[i] = id;
            log_q[i] = log(f->post[id]);
        } else {
            ids[i] = i % N;
            if (f->kind == SWEEP)
                log_q[i] = -D * log(2.0);
        }
    }
    return BG_PLUGIN_OK;
}

static const bg_sampler_vtbl fake_vt = {.train = f_train, .sample = f_sample};

static const bg_guard *build(bg_plugin_host *h, const char *name, const char *mcfg,
                             bg_guard_build **gb)
{
    bg_guard_spec spec = {.name = name,
                          .model = "bandit",
                          .model_cfg = mcfg,
                          .estimator = "iid",
                          .estimator_cfg = "",
                          .threshold = 0.5};
    bg_err err;
    CHECK(bg_guard_build_create(h, &spec, gb, &err) == BG_OK, "%s", err.msg);
    return bg_guard_build_guard(*gb);
}

static void features(uint64_t m, double *f)
{
    for (int k = 0; k < D; k++)
        f[k] = (double)(m >> (D - 1 - k) & 1);
}

static void observe(bg_engine *e, const bg_guard *g, uint64_t arm, double r, int expect)
{
    double f[D];
    features(arm, f);
    bg_observation o = {
        .action = {.id = "", .tool = "pull", .arguments_json = "", .features = f, .n_features = D},
        .has_value = 1,
        .value = r};
    bg_posterior_summary sum;
    bg_err err;
    int rc = bg_engine_observe(e, g, "s", &o, &sum, &err);
    CHECK(rc == expect, "observe: %d (%s), expected %d", rc, err.msg, expect);
}

static int evaluate(bg_engine *e, const bg_guard *g, uint64_t x, bg_verdict *v, bg_err *err)
{
    double f[D];
    features(x, f);
    bg_action a = {.id = "", .tool = "pull", .arguments_json = "", .features = f, .n_features = D};
    memset(v, 0, sizeof *v);
    return bg_engine_evaluate(e, g, "s", &a, v, err);
}

static void print_health(const char *what, const bg_sampler_health *h)
{
    printf("%-28s healthy %d tb_residual %.6g spread %.6g ess %.6g steps %llu lag %llu%s%s\n", what,
           h->healthy, h->tb_residual, h->log_weight_spread, h->ess,
           (unsigned long long)h->train_steps, (unsigned long long)h->version_lag,
           h->reason[0] ? " reason: " : "", h->reason);
}

int main(void)
{
    const char *const need[] = {"bg_bandit.so", "bg_iid.so"};
    const char *dir = bg_test_plugin_dir(need, 2);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_guard_build *b_s, *b_x;
    const bg_guard *gs0 =
        build(h, "health-sampled", "{features: 10, sigma: 1, theta: 4, enumerate: false}", &b_s);
    const bg_guard *gx = build(h, "health-exact", "{features: 10, sigma: 1, theta: 4}", &b_x);

    fake *fk = calloc(1, sizeof *fk);
    CHECK(fk != NULL);
    fk->kind = SWEEP;
    bg_guard gs = *gs0;
    gs.sampler_name = "fake";
    gs.sampler = &fake_vt;
    gs.sampler_inst = fk;
    gs.sampler_samples = K;
    CHECK(bg_sampled_create(fk, &gs.sampled, &err) == BG_OK, "%s", err.msg);
    gs.train = BG_TRAIN_INLINE;
    CHECK(bg_guard_check(&gs, &err) == BG_OK, "%s", err.msg);

    bg_sampled_trainer *tr;
    bg_sampled_opts so = {.train_steps = 20, .seed = 1};
    CHECK(bg_sampled_trainer_create(&so, &tr, &err) == BG_OK, "%s", err.msg);
    bg_engine_opts eo = {.trainer = tr};
    bg_engine *e;
    CHECK(bg_engine_create(&eo, &e, &err) == BG_OK, "%s", err.msg);

    /* 3 observations: a posterior that is neither flat nor underflowing */
    const uint64_t arms[N_OBS] = {0x3f0, 0x0cc, 0x2a5};
    const double rew[N_OBS] = {3.2, 1.1, 2.7};
    for (int i = 0; i < N_OBS; i++) {
        observe(e, &gs, arms[i], rew[i], BG_OK);
        observe(e, gx, arms[i], rew[i], BG_OK);
    }
    CHECK(fk->steps == 20u * N_OBS, "inline training ran %llu steps",
          (unsigned long long)fk->steps);
    double post[N];
    CHECK(bg_engine_posterior(e, gx, "s", post, N, &err) == BG_OK, "%s", err.msg);

    /* sweep: ids 0..K-1 once each, log q uniform */
    double mean = 0, ss = 0, lo = INFINITY, hi = -INFINITY, s1 = 0, s2 = 0;
    for (int i = 0; i < K; i++) {
        CHECK(post[i] > 1e-300, "posterior of %d underflows: pick other data", i);
        mean += log(post[i]) / K;
    }
    for (int i = 0; i < K; i++) {
        double l = log(post[i]);
        ss += (l - mean) * (l - mean);
        lo = fmin(lo, l);
        hi = fmax(hi, l);
        s1 += post[i];
        s2 += post[i] * post[i];
    }
    double want_tb = sqrt(ss / K), want_spread = hi - lo, want_ess = s1 * s1 / s2;
    bg_verdict v;
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    print_health("sweep, limits off:", &v.health);
    printf("  expected tb_residual %.6g spread %.6g ess %.6g\n", want_tb, want_spread, want_ess);
    CHECK(v.sampled == 1 && v.samples == K, "sampled %d samples %llu", v.sampled,
          (unsigned long long)v.samples);
    CHECK(v.health.healthy == 1 && v.health.reason[0] == 0, "limits off: healthy");
    CHECK(fabs(v.health.tb_residual - want_tb) <= 1e-9 * want_tb, "tb_residual %.12g vs %.12g",
          v.health.tb_residual, want_tb);
    CHECK(fabs(v.health.log_weight_spread - want_spread) <= 1e-9 * want_spread,
          "spread %.12g vs %.12g", v.health.log_weight_spread, want_spread);
    CHECK(fabs(v.health.ess - want_ess) <= 1e-9 * want_ess, "ess %.12g vs %.12g", v.health.ess,
          want_ess);
    CHECK(want_tb > 0.5 && want_ess < K / 2.0, "the sweep must be a poor sampler here");
    CHECK(v.health.train_steps == 20 && v.health.version_lag == 0, "steps %llu lag %llu",
          (unsigned long long)v.health.train_steps, (unsigned long long)v.health.version_lag);

    /* limits on: residual and ess limits are reported by name */
    gs.sampler_limits = (bg_sampler_limits){.enabled = 1,
                                            .max_tb_residual = want_tb * 0.99,
                                            .min_ess = want_ess * 1.01,
                                            .max_version_lag = 5,
                                            .on_unhealthy = BG_UNHEALTHY_DENY};
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    print_health("sweep, strict limits, deny:", &v.health);
    CHECK(!v.health.healthy && v.decision == BG_DECISION_DENY, "healthy %d decision %d",
          v.health.healthy, v.decision);
    CHECK(strstr(v.health.reason, "over max_tb_residual") &&
              strstr(v.health.reason, "under min_ess") && !strstr(v.health.reason, "lag"),
          "reason: %s", v.health.reason);
    gs.sampler_limits.max_tb_residual = want_tb * 1.01;
    gs.sampler_limits.min_ess = want_ess * 0.99;
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.health.healthy && v.health.reason[0] == 0, "just within the limits: %s",
          v.health.reason);

    /* a failed training step (the engine stores the observation and warns):
     * the sampler is one observation behind */
    fk->fail_train = 1;
    observe(e, &gs, 0x0f0, 2.0, BG_OK);
    observe(e, gx, 0x0f0, 2.0, BG_OK);
    fk->fail_train = 0;
    gs.sampler_limits = (bg_sampler_limits){0};
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    print_health("one observation unseen:", &v.health);
    CHECK(v.health.version_lag == 1 && v.health.train_steps == 0 && v.health.healthy,
          "lag %llu steps %llu", (unsigned long long)v.health.version_lag,
          (unsigned long long)v.health.train_steps);
    CHECK(v.observations == N_OBS + 1, "observations %llu", (unsigned long long)v.observations);

    gs.sampler_limits = (bg_sampler_limits){.enabled = 1,
                                            .max_tb_residual = 1e6,
                                            .min_ess = 0,
                                            .max_version_lag = 0,
                                            .on_unhealthy = BG_UNHEALTHY_UNAVAILABLE};
    int rc = evaluate(e, &gs, 0x155, &v, &err);
    printf("unavailable: %s\n", err.msg);
    CHECK(rc == BG_EUNAVAIL, "rc %d: %s", rc, err.msg);
    CHECK(strstr(err.msg, "not trustworthy") &&
              strstr(err.msg, "version_lag 1 over "
                              "max_version_lag 0") &&
              strstr(err.msg, "retry"),
          "message: %s", err.msg);
    gs.sampler_limits.on_unhealthy = BG_UNHEALTHY_DENY;
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.decision == BG_DECISION_DENY && !v.health.healthy, "deny: decision %d", v.decision);
    CHECK(strcmp(v.health.reason, "version_lag 1 over max_version_lag 0") == 0, "reason: %s",
          v.health.reason);
    gs.sampler_limits.on_unhealthy = BG_UNHEALTHY_ESCALATE;
    gs.threshold = 1.0; /* the threshold alone: ALLOW */
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.decision == BG_DECISION_ESCALATE, "escalate under threshold: decision %d", v.decision);
    gs.threshold = 0.0; /* over: the threshold's DENY is the stricter */
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.harm_bound > 0 && v.decision == BG_DECISION_DENY, "bound %g decision %d", v.harm_bound,
          v.decision);
    gs.shadow = 1;
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.decision == BG_DECISION_ALLOW && v.shadow && !v.health.healthy, "shadow: %d",
          v.decision);
    gs.shadow = 0;
    gs.threshold = 0.5;

    /* exact: every weight is Z. The next observation trains again (caught
     * up): its 20 steps walk the two prefixes the sampler had not trained
     * on, 10 each (a burst trained like a trickle), so 10 are at the
     * current version; the draw comes at the first Evaluate after it, from
     * the posterior read now. */
    fk->kind = EXACT;
    observe(e, &gs, 0x00f, 1.5, BG_OK);
    observe(e, gx, 0x00f, 1.5, BG_OK);
    CHECK(bg_engine_posterior(e, gx, "s", fk->post, N, &err) == BG_OK, "%s", err.msg);
    gs.sampler_limits = (bg_sampler_limits){.enabled = 1,
                                            .max_tb_residual = 4,
                                            .min_ess = 16,
                                            .max_version_lag = 2,
                                            .on_unhealthy = BG_UNHEALTHY_UNAVAILABLE};
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    print_health("exact sampler, defaults:", &v.health);
    CHECK(v.health.healthy && v.health.version_lag == 0 && v.health.train_steps == 10,
          "exact: steps %llu %s", (unsigned long long)v.health.train_steps, v.health.reason);
    CHECK(v.health.tb_residual <= 1e-9 && v.health.log_weight_spread <= 1e-9,
          "exact: tb_residual %g spread %g", v.health.tb_residual, v.health.log_weight_spread);
    CHECK(fabs(v.health.ess - K) <= 1e-6, "exact: ess %.9g", v.health.ess);

    /* silent: no log q, no health */
    fk->kind = SILENT;
    observe(e, &gs, 0x111, 1.0, BG_OK);
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_EUNAVAIL, "silent sampler answered");
    CHECK(strstr(err.msg, "tb_residual nan"), "message: %s", err.msg);
    gs.sampler_limits = (bg_sampler_limits){0};
    CHECK(evaluate(e, &gs, 0x155, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(isnan(v.health.tb_residual) && isnan(v.health.ess) && v.health.healthy,
          "silent, limits off: tb %g ess %g", v.health.tb_residual, v.health.ess);

    bg_engine_destroy(e);
    bg_sampled_trainer_destroy(tr);
    bg_sampled_destroy(gs.sampled);
    free(fk);
    bg_guard_build_destroy(b_x);
    bg_guard_build_destroy(b_s);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
