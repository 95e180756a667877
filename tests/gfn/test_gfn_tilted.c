/*
 * test_gfn_tilted.c — the harm-tilted reward R_x(h) = P(h)·P(D|h)·P(H|x,h)
 * (lib/gfn/gfn_tilt.h) with the real bandit plugin (bg_bandit.so via
 * the plugin host) on an enumerable space, d = 8 (256 hypotheses):
 *   1. the adaptor: log R_x = log R + log harm exactly (plugin's log_prior
 *      + Σ log_lik + log of the plugin's harm) on every id; a zero harm
 *      gives the floor −700; a NaN or > 1 harm is BG_PLUGIN_EINVAL;
 *   2. data: 6 random arms, w* fixed, 10 pulls r ~ N(x·w*, 1), θ = the
 *      largest true arm mean; the context x is the first arm whose exact
 *      iid cautious hypothesis argmax P(h|D)·P(H|x,h) differs from the MAP
 *      (so the tilt matters) — printed;
 *   3. cold start: TB trained on R_x reaches TV(q^⊤, R_x/Z_x) < 0.05
 *      within 3,000 steps of 16 trajectories (checked every 25; seed 7);
 *      the exact cautious hypothesis is among the top 3 of the exact q^⊤
 *      (rank printed; typically 1);
 *   4. warm start: a posterior sampler trained on R (TV < 0.05 first),
 *      bg_gfn_copy_params into a fresh sampler gives the identical q^⊤;
 *      then trained on R_x it reaches the same TV bound within 3,000 steps,
 *      with the same top-3 check; copying between different shapes is
 *      refused.
 * Fixed seeds; about a second optimised. Skips (77) without bg_bandit.so.
 */
#include <string.h>

#include "gfn/gfn_tilt.h"
#include "gfn_test_util.h"
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"

#define D 8
#define N_H (1u << D)
#define N_ARMS 6
#define N_OBS 10
#define TV_BOUND 0.05
#define MAX_STEPS 3000
#define TOP 3

static const uint64_t w_star = 0xb5;

/* The bandit plugin's posterior log-reward over the fixed data set. */
typedef struct bandit {
    const bg_hypothesis_vtbl *vt;
    void *inst;
    bg_observation obs[N_OBS];
    double feats[N_OBS][D];
    double arm_x[N_ARMS][D];
    uint64_t arm[N_ARMS];
    double theta;
} bandit;

static int log_r_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    bandit *b = ctx;
    double tmp[N_H];
    CHECK(n <= N_H, "batch %zu", n);
    int rc = b->vt->log_prior(b->inst, h, n, out);
    for (size_t i = 0; i < N_OBS && rc == BG_PLUGIN_OK; i++) {
        rc = b->vt->log_lik(b->inst, &b->obs[i], b->obs, i, h, n, tmp);
        for (size_t j = 0; j < n && rc == BG_PLUGIN_OK; j++)
            out[j] += tmp[j];
    }
    return rc;
}

/* plugin convention: w_k = id bit (d−1−k) */
static void to_features(uint64_t mask, double *x)
{
    for (int k = 0; k < D; k++)
        x[k] = (double)(mask >> (D - 1 - k) & 1);
}

static void make_data(bandit *b)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, 31);
    b->theta = 0;
    for (int a = 0; a < N_ARMS; a++) {
        b->arm[a] = bg_gfn_rng_u64(&r) & (N_H - 1);
        to_features(b->arm[a], b->arm_x[a]);
        double m = __builtin_popcountll(b->arm[a] & w_star);
        b->theta = m > b->theta ? m : b->theta;
    }
    for (int i = 0; i < N_OBS; i++) {
        int a = (int)(bg_gfn_rng_uniform(&r) * N_ARMS);
        double u1 = bg_gfn_rng_uniform(&r) + 1e-12, u2 = bg_gfn_rng_uniform(&r);
        double noise = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
        memcpy(b->feats[i], b->arm_x[a], sizeof b->feats[i]);
        b->obs[i] = (bg_observation){.action = {.id = "",
                                                .tool = "pull",
                                                .arguments_json = "",
                                                .features = b->feats[i],
                                                .n_features = D},
                                     .has_value = 1,
                                     .value = __builtin_popcountll(b->arm[a] & w_star) + noise};
    }
}

/* Fixed harm for the adaptor's edge cases. */
static int const_harm(void *ctx, const uint64_t *h, size_t n, double *out)
{
    (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = *(const double *)ctx;
    return BG_PLUGIN_OK;
}

static void check_adaptor(bandit *b, bg_gfn_tilt *t, const double *log_r)
{
    uint64_t ids[N_H];
    double lx[N_H], hm[N_H];
    for (uint32_t i = 0; i < N_H; i++)
        ids[i] = i;
    CHECK(bg_gfn_tilt_reward(t, ids, N_H, lx) == BG_PLUGIN_OK, "tilt reward");
    CHECK(bg_gfn_model_harm(t->harm_ctx, ids, N_H, hm) == BG_PLUGIN_OK, "harm");
    for (uint32_t i = 0; i < N_H; i++) {
        double want = log_r[i] + (hm[i] > 0 ? log(hm[i]) : BG_GFN_TILT_LOG_HARM_FLOOR);
        CHECK(lx[i] == want || fabs(lx[i] - want) <= 1e-12 * fabs(want),
              "id %u: log R_x %.17g vs log R + log harm %.17g", i, lx[i], want);
    }
    double v[3] = {0.0, NAN, 1.5};
    for (int k = 0; k < 3; k++) {
        bg_gfn_tilt e = {log_r_fn, b, const_harm, &v[k], 0};
        double out[4];
        int rc = bg_gfn_tilt_reward(&e, ids, 4, out);
        if (k == 0)
            CHECK(rc == BG_PLUGIN_OK && out[3] == log_r[3] + BG_GFN_TILT_LOG_HARM_FLOOR,
                  "zero harm: rc %d, %.17g", rc, out[3]);
        else
            CHECK(rc == BG_PLUGIN_EINVAL, "harm %g must be refused (rc %d)", v[k], rc);
    }
    printf("adaptor: log R_x = log R + log harm on all %u ids; harm 0 -> floor %.0f; "
           "NaN and 1.5 refused\n",
           N_H, BG_GFN_TILT_LOG_HARM_FLOOR);
}

static int argmax(const double *v, uint32_t n)
{
    int best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = (int)i; /* first index wins a tie */
    return best;
}

/* Rank (1 = mode) of id under g's exact q^⊤. */
static int q_rank(const bg_gfn *g, uint32_t id)
{
    double lq[N_H];
    CHECK(bg_gfn_log_q_all(g, lq) == BG_PLUGIN_OK, "log_q_all");
    int rank = 1;
    for (uint32_t i = 0; i < N_H; i++)
        rank += lq[i] > lq[id];
    return rank;
}

static bg_gfn_config tb_config(uint64_t seed)
{
    bg_gfn_config c = small_config(D, 64, seed);
    c.loss = BG_GFN_LOSS_TB;
    c.lr = 3e-3;
    c.lr_end = 1e-4;
    c.lr_horizon = 1500;
    return c;
}

/* Train g on reward until TV to target < bound or MAX_STEPS; returns steps. */
static uint32_t train_to(bg_gfn *g, bg_log_reward_fn fn, void *ctx, const double *target,
                         double *tv)
{
    char err[256];
    uint32_t steps = 0;
    *tv = exact_tv(g, target);
    while (*tv >= TV_BOUND && steps < MAX_STEPS) {
        CHECK(bg_gfn_train(g, fn, ctx, 25, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
        steps += 25;
        *tv = exact_tv(g, target);
    }
    return steps;
}

static void check_tilted(const char *what, bg_gfn *g, bg_gfn_tilt *t, const double *log_rx,
                         int cautious)
{
    double tv0 = exact_tv(g, log_rx), tv;
    uint32_t steps = train_to(g, bg_gfn_tilt_reward, t, log_rx, &tv);
    int rank = q_rank(g, (uint32_t)cautious);
    printf("%s: TV(q, R_x) %.4f -> %.4f after %u steps (bound %.2f within %u); exact "
           "cautious has rank %d in q (want <= %d)\n",
           what, tv0, tv, steps, TV_BOUND, MAX_STEPS, rank, TOP);
    CHECK(tv < TV_BOUND, "%s: TV %.4f not below %.2f within %u steps", what, tv, TV_BOUND,
          MAX_STEPS);
    CHECK(rank <= TOP, "%s: exact cautious hypothesis ranks %d in q^T", what, rank);
}

int main(void)
{
    const char *const need[] = {"bg_bandit.so"};
    const char *dir = bg_test_plugin_dir(need, 1);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    static bandit b;
    make_data(&b);
    char yaml[128];
    snprintf(yaml, sizeof yaml, "{features: %d, sigma: 1, theta: %g}", D, b.theta);
    bg_cfg_doc *doc;
    CHECK(bg_cfg_parse_string(yaml, strlen(yaml), "b.yaml", &doc, &err) == BG_OK, "%s", err.msg);
    bg_plugin_instance *pi;
    const bg_cfg_node *cfg = bg_cfg_doc_root(doc, 0);
    CHECK(bg_plugin_instance_create(h, "bandit", BG_PLUGIN_KIND_HYPOTHESIS, cfg, cfg, NULL, NULL,
                                    NULL, &pi, &err) == BG_OK,
          "bandit: %s", err.msg);
    b.vt = pi->plugin->desc->vt.hypothesis;
    b.inst = pi->inst;

    /* exact posterior reward and, per arm, the exact tilted reward */
    uint64_t ids[N_H];
    double log_r[N_H], log_rx[N_H], hm[N_H];
    for (uint32_t i = 0; i < N_H; i++)
        ids[i] = i;
    CHECK(log_r_fn(&b, ids, N_H, log_r) == BG_PLUGIN_OK, "log R");
    int map = argmax(log_r, N_H), cautious = -1, ctx = -1;
    bg_action act;
    bg_gfn_model_harm_ctx mh;
    bg_gfn_tilt t;
    for (int a = 0; a < N_ARMS && ctx < 0; a++) {
        act = (bg_action){.id = "",
                          .tool = "pull",
                          .arguments_json = "",
                          .features = b.arm_x[a],
                          .n_features = D};
        mh = (bg_gfn_model_harm_ctx){b.vt, b.inst, &act, b.obs, N_OBS};
        t = (bg_gfn_tilt){log_r_fn, &b, bg_gfn_model_harm, &mh, 0};
        CHECK(bg_gfn_tilt_reward(&t, ids, N_H, log_rx) == BG_PLUGIN_OK, "R_x");
        cautious = argmax(log_rx, N_H);
        if (cautious != map)
            ctx = a;
    }
    CHECK(ctx >= 0, "no arm's cautious hypothesis differs from the MAP: change the data seed");
    CHECK(bg_gfn_model_harm(&mh, ids, N_H, hm) == BG_PLUGIN_OK, "harm");
    printf("d=%d, %d pulls, theta %g; context: arm %d; MAP 0x%02x (harm %.4f), exact cautious "
           "0x%02x (harm %.4f)\n",
           D, N_OBS, b.theta, ctx, map, hm[map], cautious, hm[cautious]);
    check_adaptor(&b, &t, log_r);

    /* 3. cold start */
    bg_gfn_config c = tb_config(7);
    bg_gfn *cold = gfn_new(&c);
    check_tilted("cold start", cold, &t, log_rx, cautious);

    /* 4. warm start from a posterior sampler */
    bg_gfn *post = gfn_new(&c);
    double tv;
    uint32_t steps = train_to(post, log_r_fn, &b, log_r, &tv);
    printf("posterior sampler: TV(q, R) %.4f after %u steps\n", tv, steps);
    CHECK(tv < TV_BOUND, "posterior sampler: TV %.4f", tv);
    bg_gfn_config c2 = tb_config(8);
    bg_gfn *warm = gfn_new(&c2);
    char msg[256];
    CHECK(bg_gfn_copy_params(warm, post, msg, sizeof msg) == BG_PLUGIN_OK, "%s", msg);
    double qa[N_H], qb[N_H];
    bg_gfn_log_q_all(post, qa);
    bg_gfn_log_q_all(warm, qb);
    CHECK(memcmp(qa, qb, sizeof qa) == 0, "copied sampler must have the same q^T");
    printf("warm start: copied q^T identical; TV(q, R_x) before training %.4f\n",
           exact_tv(warm, log_rx));
    check_tilted("warm start", warm, &t, log_rx, cautious);
    bg_gfn_config c3 = tb_config(9);
    c3.hidden = 32;
    bg_gfn *other = gfn_new(&c3);
    CHECK(bg_gfn_copy_params(other, post, msg, sizeof msg) == BG_PLUGIN_EINVAL &&
              strstr(msg, "same shape"),
          "a different shape must be refused: %s", msg);
    printf("refused: %s\n", msg);

    bg_gfn_destroy(other);
    bg_gfn_destroy(warm);
    bg_gfn_destroy(post);
    bg_gfn_destroy(cold);
    bg_plugin_instance_destroy(pi);
    bg_cfg_doc_destroy(doc);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
