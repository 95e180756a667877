/*
 * test_gfn_fresh.c — the sampled bound must not fall below the exact one
 * because of stale rewards (issue 16, item 1).
 *
 * Part 1, the trainer (lib/gfn): replay entries stored at one reward
 * version are re-scored, in one batched reward call, before the first
 * step at another version — their stored log R then equals the current
 * reward, bit for bit — and not at the same version; TB's log Z moves by
 * the buffer's mean change (−40 here); a failing re-score leaves buffer
 * and log Z as they were; bg_reward_version tells a versioned reward from
 * one without a version.
 *
 * Part 2, through the engine and the real plugins (bandit, iid, noniid,
 * gfn; the sampler trained inline, so deterministic): a d = 10 bandit, so
 * the exact bound is computable. The sampled guard's model is the bandit
 * with `enumerate: false` (count() = 0: the sampled path on a space the
 * model could enumerate); its twin with the same config otherwise is
 * enumerated. 40 observations arrive one at a time (r ~ N(x·w*, 1) on a
 * uniformly chosen arm of 10, θ = the largest true arm mean), each trains
 * the sampler 20 steps (the defaults; the gfn plugin's default config).
 * Then, over 64 contexts (the 10 arms and 54 random x ∈ {0,1}^10), with
 * K = 256 samples:
 *   - the sampled iid and non-iid (α = 0.01) bounds are ≥ the exact ones
 *     − 1e-9 in ≥ 97 % of the contexts (at most 1 of 64 below);
 *   - the sampled iid cautious hypothesis's exact posterior is within a
 *     factor 10 of the exact cautious one's, in every context.
 * Measured (SEED 2026, 2026-12-06; counts of 64 contexts below exact,
 * iid / non-iid, and contexts with the cautious posterior off by > 10x):
 * before the fix (stored rewards replayed unchanged) 20 / 25 and 61 (worst
 * ratio 0.0103); after it 0 / 0 and 0 (ratio 1). ~7 s plain. It also
 * prints Evaluate times: the first sampled one draws (24.7 ms, what each
 * cost before draws were reused), the others reuse the draw (6 µs; the
 * enumerated twin 3 µs).
 * Other environment seeds, same settings, before -> after the fix:
 *   seed      1        3        5        7        11       99
 *   before  22/41,62  9/17,51  19/19,55 26/16,64 38/38,64 29/38,64
 *   after    0/0,0   10/18,3   0/0,0    0/11,0   0/0,0    2/3,0
 * so the fix removes the systematic failure, but at seeds 3, 7 and 99 the
 * default sampler (subtb, 20 steps per observation) still trails the
 * posterior (exact TV 0.24-0.27 after 40 observations): training that
 * keeps up with a moving target is issue 16 item 2, not this test's.
 * (With `loss: tb`, after the fix: at most 1 iid and 0, 0, 0, 5, 0, 1
 * non-iid below at the same seeds.)
 * Part 2 runs with the harm-directed refinement of the candidates
 * (daemon/engine/sampled_refine.c, the default budget), as the daemon
 * does, at d = 10 (SEED) and again at d = 12 on a seed used for nothing
 * else (SEED12, 20 steps per observation): the same bar. Draw alone, d = 12
 * held it in 1 of 8 fresh environments of bench_keepup, refined in 8 of 8
 * (docs/GFLOWNET.md "Refinement"); measured here 0 / 0 below and ratio 1
 * at both d. ~10 s plain idle (the d = 12 part ~4 s), ~100 s under load 17.
 * Skips (77) when the plugins are not built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"
#include "gfn_bandit_twin.h"

#define MAX_D 12
#define N_ARMS TWIN_ARMS
#define N_OBS 40
#define N_CTX 64
#define K 256
#define SEED 2026   /* d = 10 */
#define SEED12 2027 /* d = 12: not used to tune anything */

/* ---- part 1: the trainer ------------------------------------------- */

typedef struct shifted {
    const double *base;
    double shift;
    uint64_t calls; /* ids scored */
    int fail;
} shifted;

static int shifted_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    shifted *s = ctx;
    if (s->fail)
        return BG_PLUGIN_EINTERNAL;
    for (size_t i = 0; i < n; i++)
        out[i] = s->base[h[i]] + s->shift;
    s->calls += n;
    return BG_PLUGIN_OK;
}

static int versioned_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    (void)ctx;
    if (n == 0 && !h)
        out[0] = 12345.0;
    return BG_PLUGIN_OK;
}

/* Every entry's final log R equals base + shift. */
static void check_buffer(const bg_gfn *g, const double *base, double shift, int tb)
{
    const bg__gfn_replay *r = &g->replay;
    for (uint32_t i = 0; i < r->n; i++) {
        uint32_t len = (uint32_t)__builtin_popcountll(r->ids[i]);
        const double *lr = r->logr + (size_t)i * (r->d + 1);
        for (uint32_t t = tb ? len : 0; t <= len; t++) {
            uint64_t pre = bg__gfn_prefix(r->ids[i], t).bits;
            CHECK(lr[t] == base[pre] + shift, "entry %u prefix %u: stored %g, current %g", i, t,
                  lr[t], base[pre] + shift);
        }
    }
}

static void test_trainer(bg_gfn_loss loss)
{
    enum { d = 6 };
    double base[1 << d];
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 3);
    for (int h = 0; h < (1 << d); h++)
        base[h] = -3 * bg_gfn_rng_uniform(&rng);
    bg_gfn_config c = small_config(d, 32, 9);
    c.loss = loss;
    c.replay_capacity = 20;
    bg_gfn *g = gfn_new(&c);
    char err[256];
    int tb = loss == BG_GFN_LOSS_TB;
    shifted s = {base, 0, 0, 0};
    CHECK(bg_gfn_train_at(g, shifted_fn, &s, 1, 60, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn_stats st;
    bg_gfn_get_stats(g, &st);
    CHECK(st.replay_size == 20 && st.rescored == 0, "replay %u rescored %llu", st.replay_size,
          (unsigned long long)st.rescored);
    /* same version: nothing re-scored */
    CHECK(bg_gfn_train_at(g, shifted_fn, &s, 1, 1, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn_get_stats(g, &st);
    CHECK(st.rescored == 0, "re-scored at the same version");
    check_buffer(g, base, 0, tb);
    /* the data moved (every log R 40 nats lower): a failing re-score
     * changes nothing, a working one brings every entry to the new reward */
    s.shift = -40;
    s.fail = 1;
    CHECK(bg_gfn_train_at(g, shifted_fn, &s, 2, 1, err, sizeof err) == BG_PLUGIN_EINTERNAL,
          "failing reward");
    check_buffer(g, base, 0, tb);
    s.fail = 0;
    uint64_t calls0 = s.calls;
    double log_z = g->params[g->n_params - 1];
    CHECK(bg_gfn_train_at(g, shifted_fn, &s, 2, 0, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn_get_stats(g, &st);
    printf("%s: version 1 -> 2: %llu entries re-scored (%llu ids), stored rewards were %.1f nats "
           "stale\n",
           bg_gfn_loss_name(loss), (unsigned long long)st.rescored,
           (unsigned long long)(s.calls - calls0), st.last_stale_gap);
    CHECK(st.rescored == 20 && fabs(st.last_stale_gap - 40) < 1e-9, "rescored %llu gap %g",
          (unsigned long long)st.rescored, st.last_stale_gap);
    check_buffer(g, base, -40, tb);
    double moved = g->params[g->n_params - 1] - log_z;
    CHECK(fabs(moved - (tb ? -40 : 0)) < 1e-9, "log Z moved by %g", moved);
    CHECK(bg_gfn_train_at(g, shifted_fn, &s, 2, 30, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    check_buffer(g, base, -40, tb); /* newcomers at the same version */
    bg_gfn_destroy(g);

    CHECK(bg_reward_version(versioned_fn, NULL) == 12345, "versioned reward");
    CHECK(bg_reward_version(shifted_fn, &s) == BG_REWARD_UNVERSIONED, "unversioned reward");
}

/* How far one step at `version` moves the parameters (L2). */
static double step_moves(bg_gfn *g, shifted *s, uint64_t version)
{
    double *before = malloc(g->n_params * sizeof *before);
    CHECK(before != NULL);
    memcpy(before, g->params, g->n_params * sizeof *before);
    char err[256];
    CHECK(bg_gfn_train_at(g, shifted_fn, s, version, 1, err, sizeof err) == BG_PLUGIN_OK, "%s",
          err);
    double ss = 0;
    for (size_t i = 0; i + 1 < g->n_params; i++) /* log Z excluded */
        ss += (g->params[i] - before[i]) * (g->params[i] - before[i]);
    free(before);
    return sqrt(ss);
}

/* Warm restarts (lr_restart): the decay lr -> lr_end starts again at the
 * first step at a new reward version, not at the same one; without
 * restarts the rate stays at lr_end. Observed through the parameters: a
 * step at lr = 1e-2 moves them by orders of magnitude more than one at
 * lr_end = 1e-8. The step of the restart survives save and load. */
static void test_restart(const char *dir)
{
    enum { d = 6 };
    double base[1 << d];
    for (int h = 0; h < (1 << d); h++)
        base[h] = -0.1 * __builtin_popcount((unsigned)h);
    double moved[2][2]; /* [lr_restart][same version, new version] */
    for (int rs = 0; rs <= 1; rs++) {
        bg_gfn_config c = small_config(d, 32, 5);
        c.lr = 1e-2;
        c.lr_end = 1e-8;
        c.lr_horizon = 10;
        c.lr_restart = (uint32_t)rs;
        c.p_replay = 0; /* every step a fresh roll-out: comparable steps */
        bg_gfn *g = gfn_new(&c);
        shifted s = {base, 0, 0, 0};
        char err[256];
        CHECK(bg_gfn_train_at(g, shifted_fn, &s, 1, 30, err, sizeof err) == BG_PLUGIN_OK, "%s",
              err);
        moved[rs][0] = step_moves(g, &s, 1);
        s.shift = -5;
        moved[rs][1] = step_moves(g, &s, 2);
        bg_gfn_stats st;
        bg_gfn_get_stats(g, &st);
        CHECK(st.restarts == (uint64_t)rs && st.sched_start == (rs ? 31u : 0u),
              "lr_restart %d: %llu restarts, schedule from step %llu", rs,
              (unsigned long long)st.restarts, (unsigned long long)st.sched_start);
        if (rs) {
            char path[512];
            snprintf(path, sizeof path, "%s/restart.gfn", dir);
            CHECK(bg_gfn_save(g, path, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
            bg_gfn *l;
            CHECK(bg_gfn_load(path, &l, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
            bg_gfn_stats sl;
            bg_gfn_get_stats(l, &sl);
            CHECK(sl.sched_start == st.sched_start && sl.restarts == st.restarts &&
                      bg_gfn_get_config(l)->lr_restart == 1,
                  "save/load lost the schedule: from %llu, %llu restarts",
                  (unsigned long long)sl.sched_start, (unsigned long long)sl.restarts);
            bg_gfn_destroy(l);
            unlink(path);
        }
        bg_gfn_destroy(g);
    }
    printf("one step after 30 at lr_end, same version / new version: without restarts %.3g / "
           "%.3g, with %.3g / %.3g\n",
           moved[0][0], moved[0][1], moved[1][0], moved[1][1]);
    CHECK(moved[1][1] > 100 * moved[1][0], "a new version must restart the rate");
    CHECK(moved[0][1] < 10 * moved[0][0], "without lr_restart the rate stays at lr_end");
}

/* ---- part 2: sampled vs exact through the engine -------------------- */

static void test_engine(const char *dir, int D, uint64_t seed, uint32_t steps, int refine)
{
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);

    /* the environment (arms, w*, θ = the largest true arm mean), the
     * guards, the sampler with the gfn plugin's defaults, the engine */
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    twin t;
    twin_open(&t, h, "fresh", D, &r, "{}", K, steps);
    bg_sampled_trainer_refine(t.tr, refine);
    const uint64_t *arms = t.arms;
    bg_engine *e = t.e;
    const bg_guard *gx = t.gx;

    /* 40 observations, one at a time, into both guards */
    double f[MAX_D];
    bg_posterior_summary sum;
    for (int i = 0; i < N_OBS; i++) {
        uint64_t m = arms[bg_gfn_rng_u64(&r) % N_ARMS];
        bg_observation o = twin_pull(&t, m, f, &r);
        CHECK(bg_engine_observe(e, &t.gs, "s", &o, &sum, &err) == BG_OK, "observe: %s", err.msg);
        CHECK(bg_engine_observe(e, gx, "s", &o, &sum, &err) == BG_OK, "observe: %s", err.msg);
    }
    double *post = malloc(sizeof(double) << D);
    CHECK(post != NULL);
    CHECK(bg_engine_posterior(e, gx, "s", post, (size_t)1 << D, &err) == BG_OK, "%s", err.msg);

    /* 64 contexts: the arms, then random x */
    int below_iid = 0, below_non = 0, far = 0;
    double worst_ratio = 1, worst_gap_iid = 0, worst_gap_non = 0;
    uint64_t us_first = 0, us_sampled = 0, us_exact = 0;
    for (int c = 0; c < N_CTX; c++) {
        uint64_t m = c < N_ARMS ? arms[c] : bg_gfn_rng_u64(&r) & ((1u << D) - 1);
        twin_features(D, m, f);
        bg_action a = {
            .id = "", .tool = "pull", .arguments_json = "", .features = f, .n_features = D};
        bg_verdict vs, vsn, vx, vxn;
        CHECK(bg_engine_evaluate(e, &t.gs, "s", &a, &vs, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_engine_evaluate(e, &t.gs_non, "s", &a, &vsn, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_engine_evaluate(e, gx, "s", &a, &vx, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_engine_evaluate(e, &t.gx_non, "s", &a, &vxn, &err) == BG_OK, "%s", err.msg);
        CHECK(vs.sampled && vsn.sampled && !vx.sampled && !vxn.sampled && vs.samples == K,
              "paths: sampled %d %d exact %d %d", vs.sampled, vsn.sampled, vx.sampled, vxn.sampled);
        if (c == 0)
            us_first = vs.eval_us;
        else
            us_sampled += vs.eval_us + vsn.eval_us;
        us_exact += vx.eval_us + vxn.eval_us;
        below_iid += vs.harm_bound < vx.harm_bound - 1e-9;
        below_non += vsn.harm_bound < vxn.harm_bound - 1e-9;
        worst_gap_iid = fmax(worst_gap_iid, vx.harm_bound - vs.harm_bound);
        worst_gap_non = fmax(worst_gap_non, vxn.harm_bound - vsn.harm_bound);
        double ratio = post[vs.cautious_id] / post[vx.cautious_id];
        far += !(ratio >= 0.1 && ratio <= 10);
        if (fabs(log(ratio)) > fabs(log(worst_ratio)))
            worst_ratio = ratio;
    }
    printf("d = %d (seed %llu, %u steps per observation, refinement budget %d), %d "
           "observations one at a time, K = %d, %d contexts: sampled bound below "
           "exact in %d (iid, worst by %.3g) and %d (non-iid alpha 0.01, worst by %.3g); iid "
           "cautious posterior off by more than 10x in %d, worst ratio %.3g\n",
           D, (unsigned long long)seed, steps, refine, N_OBS, K, N_CTX, below_iid, worst_gap_iid,
           below_non, worst_gap_non, far, worst_ratio);
    printf("Evaluate: sampled first %llu us, then %.0f us on average; exact %.0f us\n",
           (unsigned long long)us_first, (double)us_sampled / (2 * N_CTX - 2),
           (double)us_exact / (2 * N_CTX));
    CHECK((N_CTX - below_iid) * 100 >= 97 * N_CTX, "iid: %d of %d contexts below exact", below_iid,
          N_CTX);
    CHECK((N_CTX - below_non) * 100 >= 97 * N_CTX, "non-iid: %d of %d contexts below exact",
          below_non, N_CTX);
    CHECK(far == 0, "cautious posterior off by more than 10x in %d contexts", far);

    free(post);
    twin_close(&t);
    bg_plugin_host_destroy(h);
}

int main(void)
{
    const char *dir_;
    test_trainer(BG_GFN_LOSS_TB);
    test_trainer(BG_GFN_LOSS_SUBTB);
    char dir[] = "/tmp/bg_gfn_fresh_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_restart(dir);
    rmdir(dir);
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so", "bg_noniid.so"};
    dir_ = bg_test_plugin_dir(need, 4);
    test_engine(dir_, 10, SEED, 20, BG_SAMPLED_REFINE_DEFAULT);
    test_engine(dir_, 12, SEED12, 20, BG_SAMPLED_REFINE_DEFAULT);
    printf("ok\n");
    return 0;
}
