/*
 * test_engine_estimators.c — the estimator plugins' semantics (spec
 * oracle.md), each loaded as a .so through the plugin host and fed a
 * posterior ordered by the engine's own order code.
 *
 *  - the spec's worked example for I^α: posterior (0.1, 0.5, 0.2, 0.2),
 *    at every α band and at the exact boundaries 2/7, 2/9, 1/10 (a boundary
 *    belongs to the larger set), and α just above each boundary;
 *  - α via delta·prior_floor equals α given directly; exactly one form;
 *  - iid: argmax P·harm, first index wins a tie; the bound is its harm;
 *  - posterior: the predictive mean; cheating: the true hypothesis' harm.
 */
#include <math.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"
#include "engine/posterior.h"

typedef struct prob {
    bg__posterior p;
    double harm[8];
} prob;

/* A posterior from probabilities (through log + normalise, as the engine). */
static void prob_init(prob *pr, const double *post, const double *harm, size_t n, double need)
{
    bg_err err;
    CHECK_INT(bg__posterior_init(&pr->p, n, &err), BG_OK);
    for (size_t i = 0; i < n; i++) {
        pr->p.ids[i] = i;
        pr->p.log_post[i] = log(post[i]);
        pr->harm[i] = harm[i];
    }
    CHECK_INT(bg__posterior_normalise(&pr->p, &err), BG_OK);
    CHECK_INT(bg__posterior_order(&pr->p, need, &err), BG_OK);
}

static bg_estimate_out run(const bg_guard *g, prob *pr)
{
    bg_estimate_in in = {.n = pr->p.n,
                         .ids = pr->p.ids,
                         .log_post = pr->p.log_post,
                         .harm = pr->harm,
                         .order = pr->p.order,
                         .n_order = pr->p.n_order,
                         .order_complete = pr->p.n_order == pr->p.n,
                         .post = pr->p.prob};
    bg_estimate_out out;
    memset(&out, 0, sizeof out);
    CHECK_INT(g->estimator->estimate(g->estimator_inst, &in, &out), BG_PLUGIN_OK);
    return out;
}

/* Harm is a one-hot marker per hypothesis so the bound reveals the set:
 * harm_i = 2^i / 16 — the max over a set identifies its largest member,
 * and plausible gives its size. */
static void worked_example(bg_plugin_host *h)
{
    static const double post[4] = {0.1, 0.5, 0.2, 0.2};
    static const double harm[4] = {1.0 / 16, 2.0 / 16, 4.0 / 16, 8.0 / 16};
    struct band {
        double alpha;
        uint64_t size;
        double bound; /* max harm over the set */
    } bands[] = {
        {1.0, 1, 2.0 / 16},                  /* {1} */
        {0.5, 1, 2.0 / 16},                  /* {1} */
        {2.0 / 7 * (1 + 1e-9), 1, 2.0 / 16}, /* just above 2/7: {1} */
        {2.0 / 7, 2, 4.0 / 16},              /* boundary: {1, 2} */
        {0.25, 2, 4.0 / 16},                 /* {1, 2} */
        {2.0 / 9 * (1 + 1e-9), 2, 4.0 / 16}, /* just above 2/9: {1, 2} */
        {2.0 / 9, 3, 8.0 / 16},              /* boundary: {1, 2, 3} */
        {0.15, 3, 8.0 / 16},                 /* {1, 2, 3} */
        {0.1 * (1 + 1e-9), 3, 8.0 / 16},     /* just above 1/10 */
        {0.1, 4, 8.0 / 16},                  /* boundary: all four */
        {0.05, 4, 8.0 / 16},
        {0.0, 4, 8.0 / 16},
    };
    for (size_t b = 0; b < sizeof bands / sizeof bands[0]; b++) {
        char cfg[64];
        snprintf(cfg, sizeof cfg, "alpha: %.17g", bands[b].alpha);
        bg_guard_build *gb = fx_guard(h, "ex", "bandit", "theta: 1", "noniid", cfg, 0.5);
        const bg_guard *g = bg_guard_build_guard(gb);
        double need = g->estimator->order_needed(g->estimator_inst);
        CHECK_NEAR(need, bands[b].alpha, 0.0);
        prob pr;
        prob_init(&pr, post, harm, 4, need);
        bg_estimate_out out = run(g, &pr);
        if (out.plausible != bands[b].size)
            fprintf(stderr, "alpha %.17g:\n", bands[b].alpha);
        CHECK_INT(out.plausible, bands[b].size);
        CHECK_NEAR(out.bound, bands[b].bound, 0.0);
        CHECK_NEAR(out.posterior_predictive, 0.1 / 16 + 1.0 / 16 + 0.8 / 16 + 1.6 / 16, 1e-15);
        /* The same with the full order (order_need 0) must not change it. */
        CHECK_INT(bg__posterior_order(&pr.p, 0.0, &(bg_err){0}), BG_OK);
        bg_estimate_out full = run(g, &pr);
        CHECK_INT(full.plausible, bands[b].size);
        CHECK_INT(full.cautious, out.cautious);
        bg__posterior_close(&pr.p);
        bg_guard_build_destroy(gb);
    }
    /* The cautious hypothesis is the argmax of harm over the set: with
     * α = 2/9 the set is {1, 2, 3} and hypothesis 3 has the largest harm. */
    bg_guard_build *gb = fx_guard(h, "ex", "bandit", "theta: 1", "noniid", "alpha: 0.2", 0.5);
    prob pr;
    prob_init(&pr, post, harm, 4, 0.2);
    CHECK_INT(run(bg_guard_build_guard(gb), &pr).cautious, 3);
    bg__posterior_close(&pr.p);
    bg_guard_build_destroy(gb);
}

static void alpha_forms(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "f", "bandit", "theta: 1", "noniid", "{delta: 0.05, prior_floor: 0.001}", 0.5);
    const bg_guard *g = bg_guard_build_guard(gb);
    CHECK_NEAR(g->estimator->order_needed(g->estimator_inst), 0.05 * 0.001, 1e-20);
    bg_guard_build_destroy(gb);
    const char *bad[] = {"{alpha: 0.1, delta: 0.05}",
                         "{delta: 0.05}",
                         "{prior_floor: 0.01}",
                         "{alpha: 1.5}",
                         "{alfa: 0.1}",
                         "{delta: 0.1, prior_floor: 0}"};
    const char *want[] = {"not both", "prior_floor", "delta", "alpha", "alfa", "prior_floor"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bg_guard_spec spec = {.name = "bad",
                              .model = "bandit",
                              .model_cfg = "theta: 1",
                              .estimator = "noniid",
                              .estimator_cfg = bad[i],
                              .threshold = 0.1};
        bg_guard_build *b = NULL;
        bg_err err;
        CHECK_INT(bg_guard_build_create(h, &spec, &b, &err), BG_ECONFIG);
        if (!strstr(err.msg, want[i]))
            fprintf(stderr, "config %s: message does not name %s: %s\n", bad[i], want[i], err.msg);
        CHECK(strstr(err.msg, want[i]) != NULL);
        CHECK(strstr(err.msg, "bad.estimator:1:") != NULL);
    }
}

static void iid_and_friends(bg_plugin_host *h)
{
    /* P·harm: 0.1·0.5=0.05, 0.5·0.1=0.05, 0.2·0.25=0.05, 0.2·0.2=0.04 —
     * a three-way tie in exact arithmetic, first index (0) must win. Use
     * values exact in binary so the tie is exact: posterior (1/8, 1/2, 1/4,
     * 1/8), harm (1/2, 1/8, 1/4, 1/4): products 1/16, 1/16, 1/16, 1/32. */
    static const double post[4] = {0.125, 0.5, 0.25, 0.125};
    static const double harm[4] = {0.5, 0.125, 0.25, 0.25};
    bg_guard_build *gb = fx_guard(h, "i", "bandit", "theta: 1", "iid", "", 0.5);
    prob pr;
    prob_init(&pr, post, harm, 4, 2.0);
    bg_estimate_out out = run(bg_guard_build_guard(gb), &pr);
    CHECK_INT(out.cautious, 0);
    CHECK_NEAR(out.bound, 0.5, 0.0);
    CHECK_INT(out.plausible, 1);
    double pred = 0.125 * 0.5 + 0.5 * 0.125 + 0.25 * 0.25 + 0.125 * 0.25;
    CHECK_NEAR(out.posterior_predictive, pred, 1e-15);
    bg_guard_build_destroy(gb);
    /* Drop hypothesis 0's harm: 1 and 2 tie, 1 wins (lower index). */
    pr.harm[0] = 0.0;
    gb = fx_guard(h, "i", "bandit", "theta: 1", "iid", "", 0.5);
    out = run(bg_guard_build_guard(gb), &pr);
    CHECK_INT(out.cautious, 1);
    CHECK_NEAR(out.bound, 0.125, 0.0);
    bg_guard_build_destroy(gb);
    /* All harms zero: first index, bound 0. */
    for (int i = 0; i < 4; i++)
        pr.harm[i] = 0.0;
    gb = fx_guard(h, "i", "bandit", "theta: 1", "iid", "", 0.5);
    out = run(bg_guard_build_guard(gb), &pr);
    CHECK_INT(out.cautious, 0);
    CHECK_NEAR(out.bound, 0.0, 0.0);
    bg_guard_build_destroy(gb);
    memcpy(pr.harm, harm, sizeof harm);

    gb = fx_guard(h, "p", "bandit", "theta: 1", "posterior", "", 0.5);
    out = run(bg_guard_build_guard(gb), &pr);
    CHECK_NEAR(out.bound, pred, 1e-15);
    CHECK_INT(out.plausible, 4);
    bg_guard_build_destroy(gb);

    gb = fx_guard(h, "c", "bandit", "theta: 1", "cheating", "true_hypothesis: 3", 0.5);
    out = run(bg_guard_build_guard(gb), &pr);
    CHECK_INT(out.cautious, 3);
    CHECK_NEAR(out.bound, 0.25, 0.0);
    bg_guard_build_destroy(gb);
    gb = fx_guard(h, "c", "bandit", "theta: 1", "cheating", "true_hypothesis: 9", 0.5);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_estimate_in in = {
        .n = 4, .ids = pr.p.ids, .log_post = pr.p.log_post, .harm = pr.harm, .post = pr.p.prob};
    bg_estimate_out o2;
    CHECK_INT(g->estimator->estimate(g->estimator_inst, &in, &o2), BG_PLUGIN_EINVAL);
    bg_guard_build_destroy(gb);
    bg__posterior_close(&pr.p);
}

int main(void)
{
    bg_plugin_host *h = fx_host();
    worked_example(h);
    alpha_forms(h);
    iid_and_friends(h);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_estimators");
}
