/*
 * test_lmgfn_theory_vk.c — the latent-theory task's model paths on Vulkan
 * (lavapipe here; a GPU with BG_VK_TEST_NATIVE=1), against the CPU backend,
 * on the tiny model (X = 0 5, Y = 1 7, legal 3 4 9, lengths 1..3: 39
 * theories). lavapipe is slow at lm gfn training, so only a few steps:
 *   1. the enumeration's log R of every theory (batched eval forwards):
 *      Vulkan vs CPU within 1e-4 nats;
 *   2. the base's exact distribution over the space (prefix tree through
 *      bg_nn_train_logits): within 1e-4 in log q;
 *   3. three GFlowNet steps on each backend from the same seed (the LM
 *      reward, on-policy draws from the same RNG): the trained policy's
 *      exact distributions within 5e-3 in TV — float differences may move
 *      a draw near a CDF boundary, so the bound is loose, but a wrong
 *      gradient or mask on one backend moves it by far more (the steps
 *      move the policy by > 0.05 in TV from the base; printed).
 * Skipped (77) with the reason when no Vulkan device exists.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmgfn_test.h"
#include "vk_test_util.h"

static const int32_t x[2] = {0, 5}, y[2] = {1, 7};
static int32_t legal[3] = {3, 4, 9};

/* The base's distribution (adapters off) and, after `steps` GFlowNet
 * steps, the policy's, on one backend. */
static void on_backend(const bg_nn_ckpt *ck, const bg_compute_opts *co,
                       const bg_lmgfn_theory_space *s, int steps, double *base, double *policy)
{
    unsigned char mask[16] = {0};
    for (int j = 0; j < 3; j++)
        mask[legal[j]] = 1;
    bg_lmgfn_opts go;
    bg_nn_train_opts to;
    lt_theory_opts(&go, &to, x, mask);
    bg_lmgfn *g;
    bg_err err;
    CHECK(bg_lmgfn_create(ck, co, &to, &go, &g, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_set_adapters(bg_lmgfn_trainer(g), 0);
    CHECK(bg_lmgfn_theory_logq(bg_lmgfn_trainer(g), x, 2, 1, s, 1.0, base, &err) == BG_OK, "%s",
          err.msg);
    bg_nn_train_set_adapters(bg_lmgfn_trainer(g), 1);
    for (int k = 0; k < steps; k++)
        CHECK(bg_lmgfn_step(g, NULL, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_lmgfn_theory_logq(bg_lmgfn_trainer(g), x, 2, 1, s, 1.0, policy, &err) == BG_OK, "%s",
          err.msg);
    bg_lmgfn_destroy(g);
}

int main(void)
{
    vt_env_setup();
    bg_compute *probe = vt_create_or_skip("test_lmgfn_theory_vk");
    bg_compute_destroy(probe);
    char path[] = "/tmp/bg-test-lmgfn-theory-vk-XXXXXX";
    lt_tiny_model(path);
    bg_err err;
    bg_nn_ckpt ck;
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "%s", err.msg);
    bg_lmgfn_theory_space s;
    CHECK(bg_lmgfn_theory_space_init(&s, legal, 3, 1, 3, &err) == BG_OK, "%s", err.msg);
    bg_compute_opts cpu = {.kind = BG_BACKEND_CPU, .threads = 1, .device_index = -1};
    bg_compute_opts vk = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};

    double r_cpu[39], r_vk[39], d = 0;
    CHECK(bg_lmgfn_theory_logr(&ck, &cpu, x, 2, y, 2, &s, 16, r_cpu, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_lmgfn_theory_logr(&ck, &vk, x, 2, y, 2, &s, 16, r_vk, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < 39; i++)
        d = fmax(d, fabs(r_cpu[i] - r_vk[i]));
    printf("enumeration, vulkan vs cpu: max |diff| %.2e nats (tolerance 1e-4)\n", d);
    CHECK(d < 1e-4, "enumeration differs by %.2e", d);

    double b_cpu[39], b_vk[39], p_cpu[39], p_vk[39];
    on_backend(&ck, &cpu, &s, 3, b_cpu, p_cpu);
    on_backend(&ck, &vk, &s, 3, b_vk, p_vk);
    d = 0;
    for (int i = 0; i < 39; i++)
        d = fmax(d, fabs(b_cpu[i] - b_vk[i]));
    printf("base distribution, vulkan vs cpu: max |diff| %.2e in log q (tolerance 1e-4)\n", d);
    CHECK(d < 1e-4, "base distribution differs by %.2e", d);
    double tv = bg_lmgfn_theory_tv(p_cpu, p_vk, 39), moved = bg_lmgfn_theory_tv(b_cpu, p_cpu, 39);
    printf("after 3 steps: policy tv vulkan vs cpu %.2e (tolerance 5e-3); moved from the base "
           "by tv %.3f\n",
           tv, moved);
    CHECK(tv < 5e-3, "policies differ: tv %.2e", tv);
    CHECK(moved > 0.05, "3 steps hardly moved the policy (tv %.3f): the comparison is weak", moved);
    bg_nn_ckpt_close(&ck);
    unlink(path);
    CHECK_DONE("test_lmgfn_theory_vk");
}
