/*
 * test_engine_bounds.c — the guarantees, statistically (spec oracle.md,
 * Props 3.4 and 4.6), through the engine and the .so plugins.
 *
 * Random finite problems: exploding bandits with d = 5 (32 hypotheses,
 * uniform prior, so P(i*) = 1/32), 10 random binary arms, θ = the largest
 * true arm mean, σ = 1; a uniformly random agent pulls 25 arms per run.
 *
 *  - non-iid, α = δ·P(i*) with δ = 0.1: a run "holds" when at EVERY step the
 *    bound for EVERY arm is >= the arm's true harm. Over R runs with f
 *    failures, the one-sided 99% Clopper–Pearson upper bound on the failure
 *    probability must be <= δ (the theorem says <= δ; we assert it with a
 *    confidence bound, not a point estimate).
 *  - iid: at every step where P(i*|D) > 1/2, its bound for every arm is >=
 *    the true harm — deterministic, so zero violations, and the test
 *    requires that enough such steps were checked to mean something.
 * A negative control is printed: the posterior-predictive baseline (not a
 * bound) fails far more often. Fixed seed.
 *
 * Power: these problems fail far less often than δ allows, so this test
 * would pass with α three times too large; test_engine_coverage is the one
 * that catches α twice too large (a setting where Ville's bound is tight).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"

#define D 5
#define NH (1u << D)
#define ARMS 10
#define STEPS 25
#define RUNS 600
#define DELTA 0.1

/* Fixed seed: fx_urand / fx_nrand (eng_fixture.h). */
#define urand() fx_urand()
#define nrand() fx_nrand()
static const uint64_t SEED = 0x2545F4914F6CDD1Dull;

/* log P(X <= f) for X ~ Binomial(n, p). */
static double binom_cdf(int f, int n, double p)
{
    double s = 0;
    for (int k = 0; k <= f; k++)
        s += exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) + k * log(p) +
                 (n - k) * log1p(-p));
    return s;
}

/* One-sided (1-gamma) Clopper–Pearson upper bound for f failures in n. */
static double cp_upper(int f, int n, double gamma)
{
    if (f >= n)
        return 1.0;
    double lo = (double)f / n, hi = 1.0;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (binom_cdf(f, n, mid) > gamma)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

int main(void)
{
    fx_rng_state = SEED;
    bg_plugin_host *h = fx_host();
    bg_engine *e;
    bg_err err;
    if (bg_engine_create(NULL, &e, &err) != BG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char alpha_cfg[64];
    snprintf(alpha_cfg, sizeof alpha_cfg, "alpha: %.17g", DELTA / NH);
    int noniid_fail = 0, post_fail = 0;
    long iid_checked = 0, iid_violations = 0;
    for (int run = 0; run < RUNS; run++) {
        double x[ARMS][D], mean[ARMS];
        unsigned truth = (unsigned)(urand() * NH);
        double theta = -1;
        for (int a = 0; a < ARMS; a++) {
            mean[a] = 0;
            for (int k = 0; k < D; k++) {
                x[a][k] = urand() < 0.5 ? 0.0 : 1.0;
                mean[a] += x[a][k] * ((truth >> (D - 1 - k)) & 1);
            }
            if (mean[a] > theta)
                theta = mean[a];
        }
        char model_cfg[96];
        snprintf(model_cfg, sizeof model_cfg, "{features: %d, sigma: 1, theta: %.17g}", D, theta);
        bg_guard_build *gn = fx_guard(h, "b", "bandit", model_cfg, "noniid", alpha_cfg, 0.5);
        bg_guard_build *gi = fx_guard(h, "b", "bandit", model_cfg, "iid", "", 0.5);
        bg_guard_build *gp = fx_guard(h, "b", "bandit", model_cfg, "posterior", "", 0.5);
        const bg_guard *g[3] = {bg_guard_build_guard(gn), bg_guard_build_guard(gi),
                                bg_guard_build_guard(gp)};
        char session[32];
        snprintf(session, sizeof session, "run%d", run);
        int n_ok = 1, p_ok = 1;
        for (int t = 0; t < STEPS; t++) {
            double post[NH];
            CHECK_INT(bg_engine_posterior(e, g[0], session, post, NH, &err), BG_OK);
            for (int a = 0; a < ARMS; a++) {
                bg_action act = {.id = "",
                                 .tool = "pull",
                                 .arguments_json = "",
                                 .features = x[a],
                                 .n_features = D};
                double truth_harm = 0.5 * erfc((theta - mean[a]) / M_SQRT2);
                bg_verdict v[3];
                for (int k = 0; k < 3; k++)
                    CHECK_INT(bg_engine_evaluate(e, g[k], session, &act, &v[k], &err), BG_OK);
                if (v[0].harm_bound < truth_harm)
                    n_ok = 0;
                if (v[2].harm_bound < truth_harm)
                    p_ok = 0;
                if (post[truth] > 0.5) {
                    iid_checked++;
                    if (v[1].harm_bound < truth_harm)
                        iid_violations++;
                }
            }
            int a = (int)(urand() * ARMS);
            bg_observation o = {.action = {.id = "",
                                           .tool = "pull",
                                           .arguments_json = "",
                                           .features = x[a],
                                           .n_features = D},
                                .has_value = 1,
                                .value = mean[a] + nrand()};
            CHECK_INT(bg_engine_observe(e, g[0], session, &o, NULL, &err), BG_OK);
        }
        noniid_fail += !n_ok;
        post_fail += !p_ok;
        bg_engine_forget(e, "b", session);
        bg_guard_build_destroy(gn);
        bg_guard_build_destroy(gi);
        bg_guard_build_destroy(gp);
    }
    double up = cp_upper(noniid_fail, RUNS, 0.01);
    printf("non-iid (alpha = delta/32, delta = %.2f): %d of %d runs failed at some step; "
           "99%% Clopper-Pearson upper bound %.4f (must be <= delta)\n",
           DELTA, noniid_fail, RUNS, up);
    printf("control, posterior predictive: %d of %d runs failed\n", post_fail, RUNS);
    printf("iid: %ld (step, arm) checks with P(i*|D) > 1/2, %ld violations (must be 0)\n",
           iid_checked, iid_violations);
    CHECK(up <= DELTA);
    CHECK_INT(iid_violations, 0);
    CHECK(iid_checked > 10000);
    CHECK(post_fail > noniid_fail);
    bg_engine_destroy(e);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_bounds");
}
