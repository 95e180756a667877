/*
 * test_gfn_sampled.c — a d = 32 bandit guard (2^32 hypotheses, count() =
 * 0) through the engine with the gfn sampled path: the real plugins
 * (bandit, the iid estimator, the gfn sampler) loaded by the plugin
 * host, observations of a fixed w*, then Evaluate returns a sampled
 * verdict — sampled = 1, samples = K, a bound in [0, 1] equal to the
 * cautious hypothesis's harm (iid), a label, a plausible-set size ≥ 1 —
 * that is reproducible (same data, same verdict), and whose cautious
 * hypothesis fits the data: the exact cautious hypothesis c* maximises
 * log P(h|D) + log harm(x, h) and harm ≤ 1, so log P(c*|D) ≥ log P(w*|D)
 * + log harm(x, w*); the sampled one may fall 4 nats below that — the
 * allowance test_gfn_exact22 asserts against an exact reference at
 * d = 22 with the harm-directed refinement (worst 2.71 nats over four
 * seeds; 5.52 before the refinement, when this allowed 7). Measured here:
 * the cautious hypothesis fits 4.9 nats better than w* (5.4 worse before
 * the refinement), against an allowance of 5.8 below it (a random
 * hypothesis is ~300 worse; the 60 nats this used to allow are a factor
 * 1e26). The quality of the sampled bound is test_gfn_exact22's (d = 22)
 * and test_gfn_keepup's (d = 10, 12, 14); at d = 32 nothing here knows the exact
 * one. Skips (77) when the plugins are not built.
 *
 * Background training, as the daemon runs it: a BG_TRAIN_BACKGROUND guard
 * with an owner (reference counted here) and its own sampled state. Observe
 * queues jobs; after the trainer drains them the session's sampler is
 * TRAINED and every owner reference is back. A guard like the one a reload
 * makes without inheriting (a fresh sampled state) on a session with data
 * is untrained: its first Evaluate fails closed (BG_EUNAVAIL, "retry") and
 * queues one job that owes the whole history; once trained, verdicts come
 * back. A reload that inherits (bg_sampled_inherit) answers at once, and
 * keeps answering after the old instance's state is destroyed; destroying
 * the sampled states destroys every session sampler made.
 *
 * Per session: two sessions with different truths (each the other's bit
 * complement): B's training leaves A's verdict unchanged bit for bit, and
 * each verdict's cautious hypothesis was trained on its own session's
 * data: it fits them within 30 nats (measured 17.0 and 9.5) where the
 * other session's truth is 151 nats off — a check of which data a
 * session sampler saw, not of its quality (above);
 * with max_sessions 2 a third session drops the least recently used
 * sampler.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg/cfg.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "gfn_test_util.h"
#include "guard_build.h"

#define D 32
#define N_OBS 40

static uint64_t w_star = 0x5a3c96e1ULL;

/* plugin convention: w_k = id bit (d-1-k) */
static double dot(uint64_t xmask, uint64_t w)
{
    return __builtin_popcountll(xmask & w);
}

static int nan_harm(const void *self, const bg_action *a, const bg_observation *hist, size_t n_hist,
                    const uint64_t *h, size_t n, double *out)
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

static atomic_int owner_refs;

static void owner_ref(void *o)
{
    (void)o;
    atomic_fetch_add(&owner_refs, 1);
}

static void owner_unref(void *o)
{
    (void)o;
    atomic_fetch_sub(&owner_refs, 1);
}

/* The test's bg_guard.session_sampler: one more gfn instance, as the
 * policy snapshot makes them (same plugin, config and space). */
typedef struct factory {
    bg_plugin_host *host;
    const bg_plugin_instance *of; /* the guard's sampler: its plugin */
    const bg_cfg_node *cfg;
    bg_space space;
} factory;

static atomic_int live; /* instances made and not yet dropped */

static int fx_new(void *ctx, void **inst, void **keep)
{
    factory *f = ctx;
    bg_plugin_instance *pi;
    bg_err err;
    if (bg_plugin_instance_create_from(f->host, f->of->plugin, f->cfg, f->cfg, &f->space, NULL,
                                       NULL, &pi, &err) != BG_OK)
        return BG_EINTERNAL;
    *inst = pi->inst;
    *keep = pi;
    atomic_fetch_add(&live, 1);
    return BG_OK;
}

static void fx_drop(void *inst, void *keep)
{
    (void)inst; /* keep's */
    bg_plugin_instance_destroy(keep);
    atomic_fetch_sub(&live, 1);
}

/* g with a fresh sampled state of its own (a new policy instance). */
static void fresh_state(bg_guard *g)
{
    bg_err err;
    CHECK(bg_sampled_create(g->sampler_inst, &g->sampled, &err) == BG_OK, "%s", err.msg);
}

/* g as a policy makes it: a sampler per session, trained in the
 * background while the owner is referenced; a fresh sampled state. */
static void as_policy(bg_guard *g, factory *f)
{
    fresh_state(g);
    g->per_session = 1;
    g->session_sampler = (bg_sampler_factory){.ctx = f, .create = fx_new, .destroy = fx_drop};
    g->train = BG_TRAIN_BACKGROUND;
    g->owner = (bg_guard_owner){.ctx = &owner_refs, .ref = owner_ref, .unref = owner_unref};
    bg_err err;
    CHECK(bg_guard_check(g, &err) == BG_OK, "%s", err.msg);
}

/* Arm i of the pulls seeded with seed (the same sequence each call). */
static uint64_t pull_mask(bg_rng *r)
{
    return bg_gfn_rng_u64(r) & 0xffffffffULL;
}

/* Observe n noise-free pulls of `truth` (arms seeded) into (g, session). */
static void observe_pulls(bg_engine *e, const bg_guard *g, const char *session, uint64_t seed,
                          int n, uint64_t truth)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    double f[D];
    bg_posterior_summary sum;
    bg_err err;
    for (int i = 0; i < n; i++) {
        uint64_t m = pull_mask(&r);
        for (int k = 0; k < D; k++)
            f[k] = (double)(m >> (D - 1 - k) & 1);
        bg_observation o = {.action = {.id = "",
                                       .tool = "pull",
                                       .arguments_json = "",
                                       .features = f,
                                       .n_features = D},
                            .has_value = 1,
                            .value = dot(m, truth)};
        CHECK(bg_engine_observe(e, g, session, &o, &sum, &err) == BG_OK, "observe: %s", err.msg);
    }
}

/* log-likelihood of the truth minus that of h on those pulls (sigma 1) */
static double fit_gap(uint64_t seed, int n, uint64_t truth, uint64_t h)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    double gap = 0;
    for (int i = 0; i < n; i++) {
        uint64_t m = pull_mask(&r);
        double d = dot(m, truth) - dot(m, h);
        gap += 0.5 * d * d;
    }
    return gap;
}

/* A memory-only engine with the sampled path (steps per observation). */
static void make_engine(size_t max_sessions, int steps, bg_engine **e, bg_sampled_trainer **gs)
{
    bg_err err;
    bg_sampled_opts so = {.train_steps = steps, .seed = 1, .max_sessions = max_sessions};
    CHECK(bg_sampled_trainer_create(&so, gs, &err) == BG_OK, "%s", err.msg);
    bg_engine_opts eo = {.trainer = *gs};
    CHECK(bg_engine_create(&eo, e, &err) == BG_OK, "%s", err.msg);
}

/* The trainer's queue, on session "bg" (12 observations) of g:
 * - a fresh sampler whose first call is an Observe owes the whole history
 *   (20 steps x 13 observations), not one observation's worth;
 * - a sampler that has not trained yet goes before trained ones;
 * - a queue of max_sessions jobs refuses a new session's (memory bound):
 *   its observation is stored, its Evaluate says the trainer is busy. */
static void test_queue(bg_engine *e, bg_sampled_trainer *gs, const bg_guard *g, factory *f)
{
    bg_guard g3 = *g;
    as_policy(&g3, f);
    uint64_t st0 = bg_sampled_trainer_steps(gs);
    observe_pulls(e, &g3, "bg", 78, 1, w_star);
    bg_sampled_trainer_wait_idle(gs);
    uint64_t st1 = bg_sampled_trainer_steps(gs);
    printf("Observe first on a fresh sampler: %llu steps for 13 observations\n",
           (unsigned long long)(st1 - st0));
    CHECK(st1 - st0 == 20 * 13, "steps %llu, want 260", (unsigned long long)(st1 - st0));
    CHECK(bg_sampled_state(g3.sampled, "bg") == BG_SAMPLER_TRAINED, "not trained");

    bg_sampled_trainer_hold(gs, 1);
    observe_pulls(e, &g3, "bg", 79, 3, w_star);  /* trained: one job, 60 steps */
    observe_pulls(e, &g3, "new", 80, 1, w_star); /* untrained: 20 steps */
    CHECK(bg_sampled_state(g3.sampled, "bg") == BG_SAMPLER_RETRAINING &&
              bg_sampled_state(g3.sampled, "new") == BG_SAMPLER_PENDING,
          "states %d / %d, want RETRAINING / PENDING", bg_sampled_state(g3.sampled, "bg"),
          bg_sampled_state(g3.sampled, "new"));
    char next[32] = "";
    size_t queued = 0;
    CHECK(bg_sampled_trainer_next(gs, next, sizeof next, &queued) == 1, "no job queued");
    printf("queued %zu jobs; next: session '%s'\n", queued, next);
    CHECK(queued == 2 && strcmp(next, "new") == 0, "the untrained sampler must go first");
    bg_sampled_trainer_hold(gs, 0);
    bg_sampled_trainer_wait_idle(gs);
    CHECK(bg_sampled_trainer_steps(gs) - st1 == 80, "steps %llu, want 80",
          (unsigned long long)(bg_sampled_trainer_steps(gs) - st1));
    CHECK(bg_sampled_state(g3.sampled, "bg") == BG_SAMPLER_TRAINED &&
              bg_sampled_state(g3.sampled, "new") == BG_SAMPLER_TRAINED,
          "not trained after the jobs");
    bg_sampled_destroy(g3.sampled);

    /* max_sessions 2 */
    bg_engine *e2;
    bg_sampled_trainer *gs2;
    make_engine(2, 20, &e2, &gs2);
    bg_guard g4 = *g;
    as_policy(&g4, f);
    bg_sampled_trainer_hold(gs2, 1);
    observe_pulls(e2, &g4, "q1", 81, 1, w_star);
    observe_pulls(e2, &g4, "q2", 82, 1, w_star);
    observe_pulls(e2, &g4, "q3", 83, 1, w_star); /* stored, not queued */
    CHECK(bg_sampled_trainer_next(gs2, next, sizeof next, &queued) == 1 && queued == 2,
          "queued %zu, want 2", queued);
    bg_action a3 = {.id = "", .tool = "pull", .arguments_json = "", .features = NULL};
    double x[D] = {0};
    a3.features = x;
    a3.n_features = D;
    bg_verdict v;
    bg_err err;
    int rc = bg_engine_evaluate(e2, &g4, "q3", &a3, &v, &err);
    printf("full queue: %s: %s\n", bg_err_name(rc), err.msg);
    CHECK(rc == BG_EUNAVAIL && strstr(err.msg, "busy"), "rc %d", rc);
    bg_sampled_trainer_hold(gs2, 0);
    bg_sampled_trainer_wait_idle(gs2);
    rc = bg_engine_evaluate(e2, &g4, "q3", &a3, &v, &err); /* now it queues */
    CHECK(rc == BG_EUNAVAIL && strstr(err.msg, "training now"), "rc %d", rc);
    bg_sampled_trainer_wait_idle(gs2);
    CHECK(bg_engine_evaluate(e2, &g4, "q3", &a3, &v, &err) == BG_OK, "%s", err.msg);
    bg_engine_destroy(e2);
    bg_sampled_trainer_destroy(gs2);
    bg_sampled_destroy(g4.sampled);
    CHECK(atomic_load(&owner_refs) == 0, "owner references left: %d", atomic_load(&owner_refs));
}

static void test_background(bg_engine *e, bg_sampled_trainer *gs, const bg_guard *base,
                            const bg_action *a, factory *f)
{
    uint64_t done0 = bg_sampled_trainer_jobs(gs);
    bg_guard gw = *base;
    as_policy(&gw, f);
    observe_pulls(e, &gw, "bg", 77, 12, w_star);
    bg_sampled_trainer_wait_idle(gs);
    uint64_t done1 = bg_sampled_trainer_jobs(gs);
    printf("background: %llu jobs for 12 observations, state %d, owner refs %d\n",
           (unsigned long long)(done1 - done0), bg_sampled_state(gw.sampled, "bg"),
           atomic_load(&owner_refs));
    CHECK(done1 > done0 && done1 - done0 <= 12, "jobs %llu", (unsigned long long)(done1 - done0));
    CHECK(bg_sampled_state(gw.sampled, "bg") == BG_SAMPLER_TRAINED,
          "session sampler not marked trained");
    CHECK(bg_sampled_samplers(gw.sampled) == 1, "samplers %zu", bg_sampled_samplers(gw.sampled));
    CHECK(atomic_load(&owner_refs) == 0, "owner references left: %d", atomic_load(&owner_refs));

    /* what a reload that cannot inherit makes: same data, a fresh state */
    bg_guard g2 = gw;
    fresh_state(&g2);
    bg_verdict v;
    bg_err err;
    /* its sampler has not seen the session's data: no verdict (fail closed),
     * training starts; a second Evaluate meanwhile queues nothing more */
    int rc = bg_engine_evaluate(e, &g2, "bg", a, &v, &err);
    printf("first Evaluate after a reload: %s: %s\n", bg_err_name(rc), err.msg);
    CHECK(rc == BG_EUNAVAIL && strstr(err.msg, "retry"), "rc %d", rc);
    rc = bg_engine_evaluate(e, &g2, "bg", a, &v, &err);
    CHECK(rc == BG_EUNAVAIL || rc == BG_OK, "rc %d", rc);
    bg_sampled_trainer_wait_idle(gs);
    CHECK(bg_engine_evaluate(e, &g2, "bg", a, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(v.sampled == 1, "sampled verdict");
    uint64_t done2 = bg_sampled_trainer_jobs(gs);
    printf("after a reload: Evaluate queued %llu job(s), new sampler state %d\n",
           (unsigned long long)(done2 - done1), bg_sampled_state(g2.sampled, "bg"));
    CHECK(done2 == done1 + 1, "a fresh sampler on a session with data must be trained once");
    CHECK(bg_sampled_state(g2.sampled, "bg") == BG_SAMPLER_TRAINED, "reloaded sampler not trained");
    CHECK(atomic_load(&owner_refs) == 0, "owner references left: %d", atomic_load(&owner_refs));

    /* a reload that keeps model, sampler and config inherits the trained
     * session samplers: a verdict at once, no job, and still after the old
     * instance's state is gone */
    bg_guard g5 = gw;
    fresh_state(&g5);
    bg_sampled_inherit(g5.sampled, gw.sampled);
    CHECK(bg_sampled_state(g5.sampled, "bg") == BG_SAMPLER_TRAINED, "inherited sampler state %d",
          bg_sampled_state(g5.sampled, "bg"));
    bg_sampled_destroy(gw.sampled);
    CHECK(atomic_load(&live) == 2, "session samplers alive %d, want 2 (shared, g2's)",
          atomic_load(&live));
    CHECK(bg_engine_evaluate(e, &g5, "bg", a, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_sampled_trainer_jobs(gs) == done2, "an inherited trained sampler needs no job");

    test_queue(e, gs, &g2, f);
    bg_sampled_destroy(g5.sampled);
    bg_sampled_destroy(g2.sampled);
    CHECK(atomic_load(&live) == 0, "session samplers left after the states: %d",
          atomic_load(&live));
}

/* Two sessions with different truths: training B leaves A's verdict bit for
 * bit as it was (a shared sampler would have moved), each verdict's cautious
 * hypothesis fits its own data; at most max_sessions keep a sampler. */
static void test_sessions(const bg_guard *base, const bg_action *a, factory *f)
{
    bg_engine *e;
    bg_sampled_trainer *gs;
    bg_err err;
    /* 10 steps per observation, not 20: what this checks is which data
     * each session's sampler saw (the other session's truth fits 151 nats
     * worse, the bar is 30), not how well it learned (the first part's
     * check); half the training was most of this test's time. */
    make_engine(2, 10, &e, &gs);
    bg_guard g = *base; /* inline training, a sampler per session */
    fresh_state(&g);
    g.per_session = 1;
    g.session_sampler = (bg_sampler_factory){.ctx = f, .create = fx_new, .destroy = fx_drop};
    CHECK(bg_guard_check(&g, &err) == BG_OK, "%s", err.msg);
    const uint64_t truth_a = w_star, truth_b = ~w_star & 0xffffffffULL;
    observe_pulls(e, &g, "A", 31, N_OBS, truth_a);
    bg_verdict va0, va, vb;
    CHECK(bg_engine_evaluate(e, &g, "A", a, &va0, &err) == BG_OK, "%s", err.msg);
    observe_pulls(e, &g, "B", 32, N_OBS, truth_b);
    CHECK(bg_engine_evaluate(e, &g, "A", a, &va, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_engine_evaluate(e, &g, "B", a, &vb, &err) == BG_OK, "%s", err.msg);
    /* B's training leaves A's sampler as it was: the same verdict, bit for bit */
    printf("session A before / after B trained: cautious %llu / %llu, posterior %.17g / %.17g, "
           "plausible %llu / %llu\n",
           (unsigned long long)va0.cautious_id, (unsigned long long)va.cautious_id,
           va0.cautious_posterior, va.cautious_posterior,
           (unsigned long long)va0.plausible_set_size, (unsigned long long)va.plausible_set_size);
    CHECK(va.cautious_id == va0.cautious_id && va.harm_bound == va0.harm_bound &&
              va.cautious_posterior == va0.cautious_posterior &&
              va.plausible_set_size == va0.plausible_set_size,
          "another session's training changed session A's verdict");
    double gap_a = fit_gap(31, N_OBS, truth_a, va.cautious_id);
    double gap_b = fit_gap(32, N_OBS, truth_b, vb.cautious_id);
    double cross = fit_gap(31, N_OBS, truth_a, truth_b);
    printf("per-session samplers: session A's cautious %.1f nats from its truth, B's %.1f "
           "(B's truth on A's data: %.1f; want within 30)\n",
           gap_a, gap_b, cross);
    CHECK(cross >= 100, "the two truths must be told apart by the data (%.1f)", cross);
    CHECK(gap_a <= 30 && gap_b <= 30, "a session's verdict does not fit its own data");
    CHECK(bg_sampled_samplers(g.sampled) == 2, "samplers %zu", bg_sampled_samplers(g.sampled));
    /* sessions without data sample the shared instance: no sampler made,
     * none dropped */
    for (int i = 0; i < 3; i++) {
        char sid[16];
        snprintf(sid, sizeof sid, "nodata%d", i);
        bg_verdict vn;
        CHECK(bg_engine_evaluate(e, &g, sid, a, &vn, &err) == BG_OK, "%s", err.msg);
    }
    CHECK(bg_sampled_samplers(g.sampled) == 2 &&
              bg_sampled_state(g.sampled, "A") == BG_SAMPLER_TRAINED &&
              bg_sampled_state(g.sampled, "B") == BG_SAMPLER_TRAINED,
          "evaluations without data dropped a trained sampler (%zu, A %d, B %d)",
          bg_sampled_samplers(g.sampled), bg_sampled_state(g.sampled, "A"),
          bg_sampled_state(g.sampled, "B"));
    /* a third session: the least recently used idle sampler (A's) goes */
    observe_pulls(e, &g, "C", 33, 1, truth_a);
    CHECK(bg_sampled_samplers(g.sampled) == 2, "samplers %zu over max_sessions 2",
          bg_sampled_samplers(g.sampled));
    CHECK(bg_sampled_state(g.sampled, "A") == BG_SAMPLER_NONE,
          "A's sampler was not the one dropped");
    CHECK(bg_sampled_state(g.sampled, "B") == BG_SAMPLER_TRAINED &&
              bg_sampled_state(g.sampled, "C") == BG_SAMPLER_TRAINED,
          "B and C keep theirs");
    bg_engine_destroy(e);
    bg_sampled_trainer_destroy(gs);
    bg_sampled_destroy(g.sampled);
    CHECK(atomic_load(&live) == 0, "session samplers left: %d", atomic_load(&live));
}

int main(void)
{
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so"};
    const char *dir = bg_test_plugin_dir(need, 3);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_guard_spec spec = {.name = "bandit32",
                          .model = "bandit",
                          .model_cfg = "{features: 32, sigma: 1, theta: 6}",
                          .estimator = "iid",
                          .estimator_cfg = "",
                          .threshold = 0.5};
    bg_guard_build *gb;
    CHECK(bg_guard_build_create(h, &spec, &gb, &err) == BG_OK, "%s", err.msg);
    bg_guard g = *bg_guard_build_guard(gb);

    /* the sampler instance, made the daemon's way */
    const char *yaml = "{loss: tb, hidden: 64, lr: 0.01, lr_end: 0.001, lr_horizon: 400, "
                       "seed: 5}";
    bg_cfg_doc *doc;
    CHECK(bg_cfg_parse_string(yaml, strlen(yaml), "s.yaml", &doc, &err) == BG_OK, "%s", err.msg);
    const bg_cfg_node *scfg = bg_cfg_doc_root(doc, 0);
    bg_space space = {D, 0};
    bg_plugin_instance *sp;
    CHECK(bg_plugin_instance_create(h, "gfn", BG_PLUGIN_KIND_SAMPLER, scfg, scfg, &space, NULL,
                                    NULL, &sp, &err) == BG_OK,
          "sampler: %s", err.msg);
    g.sampler_name = "gfn";
    g.sampler = sp->plugin->desc->vt.sampler;
    g.sampler_inst = sp->inst;
    g.sampler_samples = 256;
    fresh_state(&g);
    g.train = BG_TRAIN_INLINE; /* one sampler for every session */
    CHECK(bg_guard_check(&g, &err) == BG_OK, "%s", err.msg);

    bg_engine *e;
    bg_sampled_trainer *gs;
    make_engine(0, 20, &e, &gs);

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
        bg_observation o = {.action = {.id = "",
                                       .tool = "pull",
                                       .arguments_json = "",
                                       .features = feats[i],
                                       .n_features = D},
                            .has_value = 1,
                            .value = dot(masks[i], w_star) + noise};
        CHECK(bg_engine_observe(e, &g, "s1", &o, &sum, &err) == BG_OK, "observe %d: %s", i,
              err.msg);
    }
    CHECK(sum.observations == N_OBS, "observations %llu", (unsigned long long)sum.observations);

    double x[D];
    for (int k = 0; k < D; k++)
        x[k] = k % 3 == 0;
    bg_action a = {.id = "", .tool = "pull", .arguments_json = "", .features = x, .n_features = D};
    bg_verdict v1, v2;
    CHECK(bg_engine_evaluate(e, &g, "s1", &a, &v1, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_engine_evaluate(e, &g, "s1", &a, &v2, &err) == BG_OK, "%s", err.msg);
    printf("sampled verdict: %s bound %.4f cautious %s (posterior among samples %.3f, harm "
           "%.4f), plausible %llu, sampled %d from %llu samples, %llu us (again, reusing the draw: "
           "%llu us)\n",
           bg_decision_name(v1.decision), v1.harm_bound, v1.cautious_label, v1.cautious_posterior,
           v1.cautious_harm, (unsigned long long)v1.plausible_set_size, v1.sampled,
           (unsigned long long)v1.samples, (unsigned long long)v1.eval_us,
           (unsigned long long)v2.eval_us);
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
    /* log P(c*|D) >= log P(w*|D) + log harm(x, w*) for the exact cautious
     * c* (uniform prior); 4 nats more for the sampler (test_gfn_exact22) */
    double m_star = 0;
    for (int k = 0; k < D; k++)
        m_star += x[k] * (double)(w_star >> (D - 1 - k) & 1);
    double allow = 4 - log(0.5 * erfc((6 - m_star) / M_SQRT2));
    printf("log-likelihood: cautious %.1f, w* %.1f (want within %.1f nats)\n", ll_c, ll_star,
           allow);
    CHECK(ll_c >= ll_star - allow,
          "the sampled cautious hypothesis is %.1f nats below w*, "
          "more than the %.1f an exact cautious one plus the sampler's 4 can be",
          ll_star - ll_c, allow);

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
    CHECK(rc == BG_EINTERNAL && strstr(err.msg, "expected a probability"), "NaN harm: rc %d", rc);
    bad = *g.model;
    bad.log_lik = neg_inf_lik;
    rc = bg_engine_evaluate(e, &gb2, "s1", &a, &vb, &err);
    printf("-inf log-likelihood: rc %d (%s)\n", rc, err.msg);
    CHECK(rc == BG_EINTERNAL && strstr(err.msg, "finite posterior"), "-inf lik: rc %d", rc);

    factory fac = {.host = h, .of = sp, .cfg = scfg, .space = {D, 0}};
    test_background(e, gs, &g, &a, &fac);
    test_sessions(&g, &a, &fac);

    bg_engine_destroy(e);
    bg_sampled_trainer_destroy(gs);
    bg_sampled_destroy(g.sampled);
    bg_plugin_instance_destroy(sp);
    bg_cfg_doc_destroy(doc);
    bg_guard_build_destroy(gb);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
