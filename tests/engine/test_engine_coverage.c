/*
 * test_engine_coverage.c — a coverage test of the non-iid bound that would
 * catch α twice too large (issue 16, item 4), through the engine and the
 * real bandit and noniid plugins.
 *
 * Why this setting. The non-iid guarantee comes from Ville's inequality
 * on the likelihood ratio, which is tight only when that ratio moves in
 * small steps; test_engine_bounds' problems (d = 5, σ = 1, 25 steps) fail
 * far less often than the guarantee allows, so a factor 2 (even 3) in α
 * goes unseen there. Here: a bandit with d = 1 (two hypotheses w = 0, 1,
 * uniform prior), one arm x = [1], σ = 5, θ = 0.5, so harm(w=1) = 0.54 >
 * harm(w=0) = 0.46; the truth is w = 1 and T = 1000 rewards r ~ N(1, 5)
 * arrive one at a time. The log-likelihood ratio Λ = P(D|0)/P(D|1) is a
 * martingale under the truth that moves by ~0.2 nats a step and drifts to
 * −20 nats by T. The noniid walk keeps the truth while it ranks first, and
 * when second iff P(1|D) ≥ α, i.e. Λ ≤ (1 − α)/α; so a run fails (the
 * bound, harm(0), falls below the true harm at some step) exactly when Λ
 * crosses (1 − α)/α, and Ville gives P(fail) ≤ p0 = α / (1 − α).
 *
 * The test: R = 1000 runs at α = 0.05 (p0 = 0.0526); it passes when the
 * failures f ≤ c, the smallest c with P(Binomial(R, p0) > c) ≤ 1e-3 (a
 * false alarm at most once in 1000 seeds even if the guarantee were tight).
 * A noniid that used 2α would fail with probability up to 0.111; measured
 * (the control below runs it: α = 0.1 configured, the same seed and data)
 * 0.103, and the power P(Binomial(R, p1) > c) at the measured p1 is
 * printed and must be ≥ 0.9 — the test checks its own power, and that the
 * control fails. Measured (2026-12-06): 54 of 1000 failures at α = 0.05
 * (c = 76: the rate sits at Ville's 0.0526, the bound is tight here), 103
 * at 2α, power 0.998. ~2 s of CPU.
 * Fixed seed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"

#define RUNS 1000
#define STEPS 1000
#define SIGMA 5.0
#define THETA 0.5
#define ALPHA 0.05

static const uint64_t SEED = 0x9E3779B97F4A7C15ull;

/* P(Binomial(n, p) > c). */
static double binom_sf(int c, int n, double p)
{
    double s = 0;
    for (int k = c + 1; k <= n; k++)
        s += exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) + k * log(p) +
                 (n - k) * log1p(-p));
    return s;
}

/* R runs at noniid α; returns how many failed at some step. */
static int runs(bg_plugin_host *h, bg_engine *e, double alpha)
{
    char mcfg[96], acfg[64];
    snprintf(mcfg, sizeof mcfg, "{features: 1, sigma: %g, theta: %g}", SIGMA, THETA);
    snprintf(acfg, sizeof acfg, "alpha: %.17g", alpha);
    bg_guard_build *gn = fx_guard(h, "cov", "bandit", mcfg, "noniid", acfg, 0.5);
    const bg_guard *g_non = bg_guard_build_guard(gn);
    double x[1] = {1.0};
    bg_action act = {
        .id = "", .tool = "pull", .arguments_json = "", .features = x, .n_features = 1};
    double harm1 = 0.5 * erfc((THETA - 1.0) / (SIGMA * M_SQRT2));
    bg_err err;
    int fails = 0;
    fx_rng_state = SEED; /* the same data for every α */
    for (int run = 0; run < RUNS; run++) {
        char session[32];
        snprintf(session, sizeof session, "run%d", run);
        int failed = 0;
        for (int t = 0; t < STEPS; t++) {
            bg_observation o = fx_pull(x, 1, 1.0 + SIGMA * fx_nrand());
            CHECK_INT(bg_engine_observe(e, g_non, session, &o, NULL, &err), BG_OK);
            bg_verdict vn;
            CHECK_INT(bg_engine_evaluate(e, g_non, session, &act, &vn, &err), BG_OK);
            failed |= vn.harm_bound < harm1 - 1e-12;
        }
        fails += failed;
        bg_engine_forget(e, "cov", session);
    }
    bg_guard_build_destroy(gn);
    return fails;
}

int main(void)
{
    bg_plugin_host *h = fx_host();
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    double p0 = ALPHA / (1 - ALPHA);
    int c = 0;
    while (binom_sf(c, RUNS, p0) > 1e-3)
        c++;
    int f = runs(h, e, ALPHA);
    int f2 = runs(h, e, 2 * ALPHA);
    double p1 = (double)f2 / RUNS, power = binom_sf(c, RUNS, p1);
    printf("non-iid, alpha = %g: %d of %d runs failed (Ville: rate <= %.4f; pass iff <= %d, "
           "false alarm <= 1e-3)\n",
           ALPHA, f, RUNS, p0, c);
    printf("control, alpha twice too large (%g): %d of %d failed (rate %.4f); power to catch "
           "it: P(Binomial(%d, %.4f) > %d) = %.4f\n",
           2 * ALPHA, f2, RUNS, p1, RUNS, p1, c, power);
    CHECK(f <= c, "non-iid: %d failures > %d", f, c);
    CHECK(power >= 0.9, "the test has too little power (%.3f) to catch alpha twice too large",
          power);
    CHECK(f2 > c, "alpha twice too large went unseen (%d failures <= %d)", f2, c);
    bg_engine_destroy(e);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_coverage");
}
