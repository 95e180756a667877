/*
 * test_engine_failclosed.c — plugin output the engine must refuse rather
 * than turn into a decision, and a session id no client may write to.
 *
 *  1. An estimator that returns OK without filling its output, or with a
 *     plausible-set size of 0 or a posterior predictive that is not a
 *     probability: BG_EINTERNAL, never a verdict (an unfilled output used
 *     to read as bound 0 -> ALLOW). Enumerated path (in-process fakes) and
 *     sampled path (engine/sampled.h with a fake sampler, trained inline).
 *  2. Sampled path: a model whose log-prior of one sampled candidate is NaN
 *     gets BG_EINTERNAL, like the enumerated path's normalisation (the NaN
 *     used to make every candidate's posterior NaN, and the real iid
 *     estimator then picked candidate 0, harm 0: ALLOW).
 *  3. The shared prior-only session that evaluations of unknown sessions
 *     read is not a session a client may Observe into: Observe with its id
 *     is BG_EINVAL, and another session's fresh evaluation still sees the
 *     prior (before: 40 harmless observations written there turned the
 *     prior's DENY into ALLOW for every new session).
 *  4. A stored observation that a changed model (new model_key, as after a
 *     reload) gives zero likelihood under every hypothesis is the daemon's
 *     failure, not the request's: Evaluate says BG_EINTERNAL, not BG_EINVAL
 *     (INVALID_ARGUMENT told the client to fix a request that was fine).
 *  5. Finite features so large that the logistic model's logit w·x
 *     overflows (found by tests/fuzz/fuzz_request): one weight times a
 *     feature gives +inf, another -inf, their sum NaN. The model's
 *     check_action refuses them (BG_EINVAL naming the feature) for Observe
 *     and Evaluate alike; before, Observe failed with BG_EINTERNAL ("retry
 *     it") and Evaluate with no bound. Large features that do not overflow
 *     still decide, and the session's posterior is untouched.
 *
 * Loads the built-in bernoulli, logistic and iid plugins from
 * $BG_PLUGIN_DIR (77 = skip without it).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"
#include "engine/engine.h"
#include "engine/sampled.h"

/* ---------------------------------------------------------------- fakes */

/* Four hypotheses (enumerated, or ids 0..3 of a 2-bit space); harm 0 for
 * hypothesis 0, 1 for the others; flat prior and likelihood, except that
 * nan_prior makes the log-prior of id 3 NaN. */
static int nan_prior;
/* 1: every observation has zero likelihood (a changed model). */
static int zero_lik;
/* A plugin code harm() answers instead of computing (BG_PLUGIN_OK: none). */
static int harm_code = BG_PLUGIN_OK;

static uint64_t count4(const void *self)
{
    (void)self;
    return 4;
}

static int flat_prior(const void *self, const uint64_t *h, size_t n, double *out)
{
    (void)self;
    for (size_t i = 0; i < n; i++)
        out[i] = nan_prior && h[i] == 3 ? NAN : 0.0;
    return BG_PLUGIN_OK;
}

static int flat_lik(const void *self, const bg_observation *obs, const bg_observation *hist,
                    size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self, (void)obs, (void)hist, (void)n_hist, (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = zero_lik ? -INFINITY : 0.0;
    return BG_PLUGIN_OK;
}

static int step_harm(const void *self, const bg_action *a, const bg_observation *hist,
                     size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self, (void)a, (void)hist, (void)n_hist;
    if (harm_code != BG_PLUGIN_OK)
        return harm_code;
    for (size_t i = 0; i < n; i++)
        out[i] = h[i] == 0 ? 0.0 : 1.0;
    return BG_PLUGIN_OK;
}

static const bg_hypothesis_vtbl model4 = {
    .count = count4, .log_prior = flat_prior, .log_lik = flat_lik, .harm = step_harm};
static const bg_hypothesis_vtbl model_sampled = {.count = fx_count0,
                                                 .space = fx_space2,
                                                 .log_prior = flat_prior,
                                                 .log_lik = flat_lik,
                                                 .harm = step_harm};

/* Estimators that return OK with garbage. */
static int est_silent(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self, (void)in, (void)out;
    return BG_PLUGIN_OK;
}

static int est_no_plausible(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self, (void)in;
    out->bound = 0.0;
    out->cautious = 0;
    out->plausible = 0;
    out->posterior_predictive = 0.0;
    return BG_PLUGIN_OK;
}

static int est_nan_pred(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self, (void)in;
    out->bound = 0.0;
    out->cautious = 0;
    out->plausible = 1;
    out->posterior_predictive = NAN;
    return BG_PLUGIN_OK;
}

static double no_order(const void *self)
{
    (void)self;
    return 2.0;
}

static const bg_estimator_vtbl silent = {.order_needed = no_order, .estimate = est_silent};
static const bg_estimator_vtbl no_plausible = {.order_needed = no_order,
                                               .estimate = est_no_plausible};
static const bg_estimator_vtbl nan_pred = {.order_needed = no_order, .estimate = est_nan_pred};

static const bg_sampler_vtbl cycler = {.sample = fx_cycle_sample};

static int inst;                 /* any non-NULL instance */
static bg_sampled *fake_sampled; /* the sampled state of the fake sampler instance */

static bg_guard fake_guard(const bg_hypothesis_vtbl *model, const bg_estimator_vtbl *est)
{
    bg_guard g = {.name = "fc",
                  .revision = "r",
                  .model_key = 7,
                  .model_name = "fake",
                  .model = model,
                  .model_inst = &inst,
                  .estimator_name = "fake-est",
                  .estimator = est,
                  .estimator_inst = &inst,
                  .threshold = 0.5,
                  .over_threshold = BG_DECISION_DENY};
    if (model->count(&inst) == 0) {
        g.sampler_name = "cycler";
        g.sampler = &cycler;
        g.sampler_inst = &inst;
        g.sampler_samples = 16;
        g.sampled = fake_sampled;
        g.train = BG_TRAIN_INLINE;
    }
    bg_err err;
    bg_err_clear(&err);
    CHECK_INT(bg_guard_check(&g, &err), BG_OK);
    return g;
}

static const bg_action act = {.id = "", .tool = "t", .arguments_json = ""};

/* ---------------------------------------------------------------- tests */

static void check_refused(bg_engine *e, const bg_guard *g, const char *what)
{
    bg_verdict v;
    bg_err err;
    bg_err_clear(&err);
    memset(&v, 0, sizeof v);
    int rc = bg_engine_evaluate(e, g, "s", &act, &v, &err);
    if (rc != BG_EINTERNAL)
        fprintf(stderr, "%s: rc %d, decision %s, bound %g: %s\n", what, rc,
                bg_decision_name(v.decision), v.harm_bound, err.msg);
    CHECK_INT(rc, BG_EINTERNAL);
}

static void test_estimator_garbage(bg_engine *e)
{
    const bg_hypothesis_vtbl *models[] = {&model4, &model_sampled};
    for (int m = 0; m < 2; m++) {
        bg_guard g = fake_guard(models[m], &silent);
        check_refused(e, &g, m ? "sampled, silent estimator" : "enumerated, silent estimator");
        g = fake_guard(models[m], &no_plausible);
        check_refused(e, &g, m ? "sampled, plausible 0" : "enumerated, plausible 0");
        g = fake_guard(models[m], &nan_pred);
        check_refused(e, &g, m ? "sampled, NaN predictive" : "enumerated, NaN predictive");
    }
}

static void test_sampled_nan_prior(bg_engine *e, const bg_guard *iid)
{
    bg_guard g = fake_guard(&model_sampled, iid->estimator);
    g.estimator_inst = iid->estimator_inst;
    g.estimator_name = iid->estimator_name;
    bg_verdict v;
    bg_err err;
    nan_prior = 0; /* sound model: candidates 1..3 have harm 1 -> DENY */
    CHECK_INT(bg_engine_evaluate(e, &g, "s", &act, &v, &err), BG_OK);
    CHECK_INT(v.decision, BG_DECISION_DENY);
    nan_prior = 1;
    check_refused(e, &g, "sampled, NaN log-prior");
    nan_prior = 0;
}

/* A model at its limit (a queue an agent can fill by flooding Evaluate)
 * is RESOURCE_EXHAUSTED on both paths — BG_ELIMIT, which on_error: allow
 * does not turn into ALLOW (rpc_svc_guard.c) — and an ENOMEM stays ENOMEM;
 * only other failures are internal (plugin_code.h). */
static void test_model_at_limit(bg_engine *e, const bg_guard *iid)
{
    static const struct {
        int prc, want;
    } cases[] = {{BG_PLUGIN_ELIMIT, BG_ELIMIT},
                 {BG_PLUGIN_ENOMEM, BG_ENOMEM},
                 {BG_PLUGIN_EINTERNAL, BG_EINTERNAL},
                 {BG_PLUGIN_EIO, BG_EINTERNAL}};
    const bg_hypothesis_vtbl *models[] = {&model4, &model_sampled};
    for (int m = 0; m < 2; m++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            bg_guard g = fake_guard(models[m], iid->estimator);
            g.estimator_inst = iid->estimator_inst;
            g.estimator_name = iid->estimator_name;
            bg_verdict v;
            bg_err err;
            harm_code = cases[c].prc;
            int rc = bg_engine_evaluate(e, &g, "limit", &act, &v, &err);
            harm_code = BG_PLUGIN_OK;
            CHECK(rc == cases[c].want, "%s path, harm() = %d: got %d (%s), want %d",
                  m ? "sampled" : "enumerated", cases[c].prc, rc, err.msg, cases[c].want);
        }
}

static void test_prior_session(bg_engine *e, const bg_guard *g)
{
    bg_verdict v;
    bg_err err;
    /* The prior: iid picks rate 0.9 -> DENY. */
    CHECK_INT(bg_engine_evaluate(e, g, "fresh-1", &act, &v, &err), BG_OK);
    CHECK_INT(v.decision, BG_DECISION_DENY);
    bg_observation ok = {.action = act, .harmed = 0};
    int refused = 0;
    for (int i = 0; i < 40; i++) {
        bg_err_clear(&err);
        int rc = bg_engine_observe(e, g, "\x01prior", &ok, NULL, &err);
        refused += rc == BG_EINVAL;
    }
    CHECK_INT(refused, 40);
    CHECK(strstr(err.msg, "reserves") != NULL);
    CHECK_INT(bg_engine_evaluate(e, g, "fresh-2", &act, &v, &err), BG_OK);
    CHECK_INT(v.observations, 0);
    CHECK_INT(v.decision, BG_DECISION_DENY);
}

static void test_replay_zero_lik(bg_engine *e)
{
    bg_guard g = fake_guard(&model4, &nan_pred);
    bg_observation o = {.action = act, .harmed = 1};
    bg_err err;
    bg_verdict v;
    CHECK_INT(bg_engine_observe(e, &g, "replayed", &o, NULL, &err), BG_OK);
    g.model_key = 8; /* the model changed: the stored observation is replayed */
    zero_lik = 1;
    bg_err_clear(&err);
    CHECK_INT(bg_engine_evaluate(e, &g, "replayed", &act, &v, &err), BG_EINTERNAL);
    CHECK(strstr(err.msg, "replaying observation 0") != NULL);
    zero_lik = 0;
}

static void test_logistic_overflow(bg_plugin_host *h)
{
    bg_guard_build *b =
        fx_guard(h, "fc-logistic", "logistic", "{features: 2, grid: [-2, 0, 2]}", "iid", "", 0.5);
    const bg_guard *g = bg_guard_build_guard(b);
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    double huge[2] = {-1.1e308, -1.2e308}, big[2] = {1e300, -1e300};
    bg_action a = {.tool = "transfer_out", .features = huge, .n_features = 2};
    bg_observation o = {.action = a, .harmed = 0};
    bg_verdict v;
    bg_posterior_summary sum;
    bg_err_clear(&err);
    CHECK_INT(bg_engine_observe(e, g, "s", &o, &sum, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "features[0] is -1.1e+308") != NULL, "message: %s", err.msg);
    bg_err_clear(&err);
    CHECK_INT(bg_engine_evaluate(e, g, "s", &a, &v, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "overflows") != NULL, "message: %s", err.msg);
    a.features = big;
    CHECK_INT(bg_engine_evaluate(e, g, "s", &a, &v, &err), BG_OK);
    CHECK(v.harm_bound >= 0 && v.harm_bound <= 1, "bound %g", v.harm_bound);
    CHECK_INT(v.observations, 0);
    bg_engine_destroy(e);
    bg_guard_build_destroy(b);
}

int main(void)
{
    bg_plugin_host *h = fx_host();
    bg_guard_build *b = fx_guard(h, "fc-iid", "bernoulli", "{rates: [0.01, 0.9]}", "iid", "", 0.5);
    bg_engine *e;
    bg_sampled_trainer *tr;
    bg_err err;
    bg_sampled_opts so = {.train_steps = 1, .seed = 1};
    bg_engine_opts eo = {0};
    if (bg_sampled_trainer_create(&so, &tr, &err) != BG_OK ||
        bg_sampled_create(&inst, &fake_sampled, &err) != BG_OK ||
        (eo.trainer = tr, bg_engine_create(&eo, &e, &err)) != BG_OK) {
        fprintf(stderr, "engine with the sampled path: %s\n", err.msg);
        return 1;
    }

    test_estimator_garbage(e);
    test_sampled_nan_prior(e, bg_guard_build_guard(b));
    test_model_at_limit(e, bg_guard_build_guard(b));
    test_prior_session(e, bg_guard_build_guard(b));
    test_replay_zero_lik(e);
    test_logistic_overflow(h);

    bg_engine_destroy(e);
    bg_sampled_destroy(fake_sampled);
    bg_sampled_trainer_destroy(tr);
    bg_guard_build_destroy(b);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_failclosed");
}
