/*
 * test_gfn_train.c — the trainer learns its target, deterministically.
 *   1. On d = 6 (64 hypotheses) with a fixed random reward (log R ~ 1.5·N(0,1)
 *      via a fixed seed), TB and modified SubTB and DB each reach total
 *      variation < 0.05 between the exact q^⊤ and the target within 2,000
 *      steps of 16 trajectories (checked every 25 steps; with seed 7 they
 *      need 500 / 775 / 975), learning rate 3e-3 decayed to 1e-4.
 *   2. Same config and seed → bit-identical parameters and samples; a
 *      different seed → different ones.
 *   3. Length masks (min 2, max 4, d = 6, all behaviour options on:
 *      replay, tempering, ε-uniform, reward-temperature annealing to 1):
 *      every sample and every positive-probability id respects the masks,
 *      Σ q^⊤ = 1 within 1e-9, bg_gfn_log_q equals bg_gfn_log_q_all on every
 *      id, and the empirical frequencies of 20,000 samples agree with the
 *      exact q^⊤ (TV(empirical, exact) < 0.03, where sampling noise alone
 *      gives about 0.02 for 50 cells).
 *   4. bg_gfn_offer seeds the replay buffer: masks and duplicates
 *      respected, evaluations counted, replayed steps call no reward.
 */
#include <string.h>

#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"

#define D 6
#define N_H (1u << D)

static void make_target(double *log_r, uint64_t seed)
{
    bg_rng rng;
    bg_gfn_rng_seed(&rng, seed);
    for (uint32_t h = 0; h < N_H; h++) {
        /* Box–Muller */
        double u1 = bg_gfn_rng_uniform(&rng) + 1e-12, u2 = bg_gfn_rng_uniform(&rng);
        log_r[h] = 1.5 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
    }
}

static void test_reaches_tv(bg_gfn_loss loss, uint32_t max_steps)
{
    double log_r[N_H];
    make_target(log_r, 2024);
    bg_gfn_config c = small_config(D, 64, 7);
    c.loss = loss;
    c.lr = 3e-3; /* decayed linearly: damps the gradient noise at the end */
    c.lr_end = 1e-4;
    c.lr_horizon = 1500;
    bg_gfn *g = gfn_new(&c);
    table_reward tr = {log_r, 0};
    double tv = exact_tv(g, log_r), tv0 = tv;
    uint32_t steps = 0;
    while (tv >= 0.05 && steps < max_steps) {
        train_on(g, &tr, 25);
        steps += 25;
        tv = exact_tv(g, log_r);
    }
    bg_gfn_stats st;
    bg_gfn_get_stats(g, &st);
    printf("%-5s d=%d: TV %.4f -> %.4f after %u steps (%llu trajectories, %llu reward evals); "
           "bound %u steps\n",
           bg_gfn_loss_name(loss), D, tv0, tv, steps, (unsigned long long)st.trajectories,
           (unsigned long long)st.reward_evals, max_steps);
    CHECK(tv < 0.05, "%s: TV %.4f not below 0.05 within %u steps", bg_gfn_loss_name(loss), tv,
          max_steps);
    CHECK(st.reward_evals == tr.calls, "reward_evals %llu != callback ids %llu",
          (unsigned long long)st.reward_evals, (unsigned long long)tr.calls);
    bg_gfn_destroy(g);
}

static bg_gfn *trained(uint64_t seed, const double *log_r, uint32_t steps)
{
    bg_gfn_config c = small_config(D, 32, seed);
    c.epsilon = 0.05;
    bg_gfn *g = gfn_new(&c);
    table_reward tr = {log_r, 0};
    train_on(g, &tr, steps);
    return g;
}

static void test_deterministic(void)
{
    double log_r[N_H];
    make_target(log_r, 1);
    bg_gfn *a = trained(42, log_r, 60), *b = trained(42, log_r, 60), *c = trained(43, log_r, 60);
    CHECK(memcmp(a->params, b->params, a->n_params * sizeof(double)) == 0,
          "same seed must give identical parameters");
    CHECK(memcmp(a->params, c->params, a->n_params * sizeof(double)) != 0,
          "another seed must give other parameters");
    uint64_t ia[64], ib[64];
    bg_rng ra, rb;
    bg_gfn_rng_seed(&ra, 5);
    bg_gfn_rng_seed(&rb, 5);
    bg_gfn_sample(a, &ra, 64, ia, NULL);
    bg_gfn_sample(b, &rb, 64, ib, NULL);
    CHECK(memcmp(ia, ib, sizeof ia) == 0, "same state and generator must sample the same");
    printf("determinism: identical parameters and samples for seed 42 twice, different for 43\n");
    bg_gfn_destroy(a);
    bg_gfn_destroy(b);
    bg_gfn_destroy(c);
}

static void test_masks_and_exactness(void)
{
    double log_r[N_H];
    make_target(log_r, 3);
    bg_gfn_config c = small_config(D, 32, 9);
    c.min_len = 2;
    c.max_len = 4;
    c.epsilon = 0.1;
    c.p_replay = 0.3;
    c.p_tempered = 0.3;
    c.reward_temp_start = 2.0;
    c.reward_temp_end = 1.0;
    c.reward_temp_horizon = 100;
    bg_gfn *g = gfn_new(&c);
    table_reward tr = {log_r, 0};
    train_on(g, &tr, 150);
    bg_gfn_stats st;
    bg_gfn_get_stats(g, &st);
    CHECK(st.reward_temp == 1.0, "annealed T_R must end at 1, is %g", st.reward_temp);
    CHECK(st.replay_size > 0 && st.replay_size <= c.replay_capacity, "replay size %u",
          st.replay_size);

    double lq[N_H], mass = 0;
    CHECK(bg_gfn_log_q_all(g, lq) == BG_PLUGIN_OK, "log_q_all");
    uint64_t ids[N_H];
    double lq2[N_H];
    for (uint32_t h = 0; h < N_H; h++)
        ids[h] = h;
    CHECK(bg_gfn_log_q(g, ids, N_H, lq2) == BG_PLUGIN_OK, "log_q");
    for (uint32_t h = 0; h < N_H; h++) {
        int len = __builtin_popcount(h), ok = len >= 2 && len <= 4;
        CHECK(ok ? isfinite(lq[h]) : lq[h] == -INFINITY, "id %u (len %d): log q %g", h, len, lq[h]);
        CHECK(lq[h] == lq2[h] || fabs(lq[h] - lq2[h]) <= 1e-12, "id %u: %g vs %g", h, lq[h],
              lq2[h]);
        mass += exp(lq[h]);
    }
    CHECK(fabs(mass - 1.0) <= 1e-9, "sum of q^T = %.15f", mass);

    enum { N = 20000 };
    uint64_t *s = malloc(N * sizeof *s);
    double *slq = malloc(N * sizeof *slq), freq[N_H] = {0}, tv = 0;
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 77);
    CHECK(bg_gfn_sample(g, &rng, N, s, slq) == BG_PLUGIN_OK, "sample");
    for (size_t i = 0; i < N; i++) {
        int len = __builtin_popcountll(s[i]);
        CHECK(s[i] < N_H && len >= 2 && len <= 4, "sample 0x%llx breaks the masks",
              (unsigned long long)s[i]);
        CHECK(fabs(slq[i] - lq[s[i]]) <= 1e-12, "sample log q %g vs exact %g", slq[i], lq[s[i]]);
        freq[s[i]] += 1.0 / N;
    }
    for (uint32_t h = 0; h < N_H; h++)
        tv += 0.5 * fabs(freq[h] - exp(lq[h]));
    printf("masks [2,4]: sum q^T = %.12f, TV(empirical of %d, exact) = %.4f (< 0.03)\n", mass, N,
           tv);
    CHECK(tv < 0.03, "empirical TV %.4f", tv);
    free(s);
    free(slq);
    bg_gfn_destroy(g);
}

/* bg_gfn_offer: valid ids enter the buffer with their log-rewards, ids
 * outside the masks and duplicates do not, evaluations are counted, and a
 * seeded buffer is replayed (training runs without fresh reward calls for
 * replay batches). */
static void test_offer(void)
{
    double log_r[N_H];
    make_target(log_r, 5);
    bg_gfn_config c = small_config(D, 16, 3);
    c.max_len = 4;
    c.p_replay = 1.0; /* replay whenever the buffer holds a batch */
    c.p_tempered = 0.0;
    bg_gfn *g = gfn_new(&c);
    uint64_t ids[40];
    for (uint32_t i = 0; i < 40; i++)
        ids[i] = i; /* 0..39: those with > 4 bits break max_len */
    ids[39] = ids[38];
    table_reward tr = {log_r, 0};
    size_t stored = 0, expect = 0;
    for (uint32_t i = 0; i < 39; i++)
        expect += __builtin_popcount(i) <= 4;
    char err[256];
    CHECK(bg_gfn_offer(g, ids, 40, table_reward_fn, &tr, &stored, err, sizeof err) == BG_PLUGIN_OK,
          "%s", err);
    bg_gfn_stats st;
    bg_gfn_get_stats(g, &st);
    CHECK(stored == expect && st.replay_size == expect, "stored %zu, buffer %u, expected %zu",
          stored, st.replay_size, expect);
    CHECK(st.reward_evals == tr.calls && tr.calls > expect, "evals %llu vs calls %llu",
          (unsigned long long)st.reward_evals, (unsigned long long)tr.calls);
    uint64_t calls = tr.calls;
    train_on(g, &tr, 5);
    CHECK(tr.calls == calls, "replayed batches must not call the reward (%llu new calls)",
          (unsigned long long)(tr.calls - calls));
    printf("offer: %zu of 40 ids stored (masks, duplicate), 5 replayed steps without reward "
           "calls\n",
           stored);
    bg_gfn_destroy(g);
}

int main(void)
{
    test_reaches_tv(BG_GFN_LOSS_TB, 2000);
    test_reaches_tv(BG_GFN_LOSS_SUBTB, 2000);
    test_reaches_tv(BG_GFN_LOSS_DB, 2000);
    test_deterministic();
    test_masks_and_exactness();
    test_offer();
    printf("ok\n");
    return 0;
}
