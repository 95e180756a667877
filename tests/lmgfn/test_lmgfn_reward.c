/*
 * test_lmgfn_reward.c — the LM reward (bg_lmgfn_lm_logr): the same
 * weights with the adapters off are the base model. On a synthetic model,
 * log R(s_i ⊤) of every prefix of a batch (one forward) must equal
 * log p(z_1..z_i ⊤ | prompt) from bg_nn_score on a separately loaded
 * bg_nn_model (tolerance 1e-5 nats: float forwards through different
 * kernels), before and after GFlowNet steps have moved the adapters; the
 * policy's log q (adapters on) must have moved away from it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmgfn_test.h"

#define L 3
static const int32_t prompt[2] = {0, 5};

static void check_against_model(bg_lmgfn *g, bg_nn_model *m)
{
    int32_t z0[L] = {3, 4, 9}, z1[L] = {7}, z2[L] = {2, 2};
    const int32_t *z[3] = {z0, z1, z2};
    int n[3] = {3, 1, 2};
    double logr[3 * (L + 1)];
    bg_err err;
    CHECK(bg_lmgfn_lm_logr(g, z, n, 3, logr, &err) == BG_OK, "%s", err.msg);
    double maxd = 0;
    for (int j = 0; j < 3; j++)
        for (int i = 0; i <= n[j]; i++) {
            int32_t cont[L + 1];
            memcpy(cont, z[j], sizeof(int32_t) * (size_t)i);
            cont[i] = 1; /* ⊤ */
            const int32_t *cp[1] = {cont};
            int len = i + 1;
            double want;
            CHECK(bg_nn_score(m, prompt, 2, cp, &len, 1, &want, &err) == BG_OK, "%s", err.msg);
            double got = logr[j * (L + 1) + i];
            maxd = fmax(maxd, fabs(got - want));
            CHECK(fabs(got - want) < 1e-5, "traj %d prefix %d: lm reward %.6f, nn_score %.6f", j, i,
                  got, want);
        }
    printf("lm reward vs bg_nn_score: max |diff| %.2e (tolerance 1e-5)\n", maxd);
}

int main(void)
{
    char path[] = "/tmp/bg-test-lmgfn-reward-XXXXXX";
    lt_tiny_model(path);
    bg_err err;
    bg_nn_ckpt ck;
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "%s", err.msg);
    bg_nn_model *m;
    CHECK(bg_nn_model_create(&ck, NULL, &m, &err) == BG_OK, "%s", err.msg);
    bg_nn_ckpt_close(&ck);
    bg_lmgfn_opts o;
    bg_nn_train_opts to;
    lt_mixture_opts(&o, &to, prompt, L, 4, lt_lm_reward);
    bg_lmgfn *g = lt_lmgfn_open(path, &to, &o);
    check_against_model(g, m);
    for (int s = 0; s < 20; s++)
        CHECK(bg_lmgfn_step(g, NULL, &err) == BG_OK, "%s", err.msg);
    check_against_model(g, m); /* the reward is still the base */
    int32_t z[L] = {3, 4, 9};
    double qa[L], qs[L + 1], ba[L], bs[L + 1], moved = 0;
    CHECK(bg_lmgfn_logq(g, 1, z, 3, qa, qs, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_lmgfn_logq(g, 0, z, 3, ba, bs, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        moved = fmax(moved, fabs(qa[i] - ba[i]));
    CHECK(moved > 1e-2, "the policy did not move from the base (max |diff| %.3g)", moved);
    printf("policy vs base after 20 steps: max |log q diff| %.3f\n", moved);
    bg_lmgfn_destroy(g);
    bg_nn_model_destroy(m);
    unlink(path);
    CHECK_DONE("test_lmgfn_reward");
}
