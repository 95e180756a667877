/*
 * bench_lmgfn.c — LM GFlowNet throughput (lib/lmgfn): trajectories per
 * second of sampling (the policy, token by token through the trainer's
 * logits) and of full training steps (sampling, the LM reward of every
 * prefix in one adapters-off forward, the loss forward, forward + backward
 * + AdamW), on stories260K with LoRA rank 4, per backend: CPU with 1 and 2
 * threads, and Vulkan (lavapipe when no GPU; a backend that lacks an op
 * says so in its row). Not a test; run by hand:
 *   bench_lmgfn [--model stories260K.bin] [--steps N] [--len L]
 * Prints a markdown table (docs/GFLOWNET.md has a run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lmgfn/lmgfn.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int lm_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                     double *logr, bg_err *err)
{
    (void)ctx;
    return bg_lmgfn_lm_logr(g, z, n, k, logr, err);
}

static void row(const char *label, const bg_nn_ckpt *ck, bg_compute_opts co, int steps, int len)
{
    static const int32_t prompt[1] = {1};
    bg_lmgfn_opts o = {.prompt = prompt,
                       .n_prompt = 1,
                       .stop_token = 2,
                       .min_len = 1,
                       .max_len = len,
                       .batch = 16,
                       .objective = BG_LMGFN_SUBTB,
                       .lambda = 1,
                       .p_replay = 0,
                       .p_tempered = 0,
                       .temp_lo = 1,
                       .temp_hi = 1,
                       .rtemp_start = 1,
                       .rtemp_end = 1,
                       .replay_cap = 64,
                       .replay_min_dist = 1,
                       .lr_log_z = 0.05,
                       .seed = 1,
                       .reward = lm_reward};
    bg_nn_train_opts to = {
        .lora_rank = 4,
        .seed = 1,
        .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
    bg_lmgfn *g;
    bg_err err;
    if (bg_lmgfn_create(ck, &co, &to, &o, &g, &err) != BG_OK) {
        printf("| %s | unavailable: %s | | |\n", label, err.msg);
        return;
    }
    int32_t z[BG_LMGFN_MAX_LEN];
    int n, rc = BG_OK;
    long tokens = 0;
    double t0 = now_s();
    for (int i = 0; rc == BG_OK && i < steps * o.batch; i++) {
        rc = bg_lmgfn_sample(g, 1.0, z, &n, &err);
        tokens += n + 1;
    }
    double ts = now_s() - t0;
    if (rc != BG_OK) {
        printf("| %s | sampling failed: %s | | |\n", label, err.msg);
        bg_lmgfn_destroy(g);
        return;
    }
    t0 = now_s();
    for (int i = 0; rc == BG_OK && i < steps; i++)
        rc = bg_lmgfn_step(g, NULL, &err);
    double tt = now_s() - t0;
    if (rc != BG_OK)
        printf("| %s | %.0f | training unavailable: %s | %.1f |\n", label, steps * o.batch / ts,
               err.msg, tokens / (double)(steps * o.batch));
    else
        printf("| %s | %.0f | %.0f | %.1f |\n", label, steps * o.batch / ts, steps * o.batch / tt,
               tokens / (double)(steps * o.batch));
    bg_lmgfn_destroy(g);
}

int main(int argc, char **argv)
{
    const char *model = BG_BENCH_SHARED_DIR "/models/stories260K.bin";
    int steps = 10, len = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--len") == 0 && i + 1 < argc)
            len = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_lmgfn [--model CKPT] [--steps N] [--len L]\n");
            return 2;
        }
    }
    if (steps < 1 || len < 1 || len > BG_LMGFN_MAX_LEN) {
        fprintf(stderr, "bench_lmgfn: --steps >= 1 and --len 1..%d\n", BG_LMGFN_MAX_LEN);
        return 2;
    }
    bg_nn_ckpt ck;
    bg_err err;
    if (bg_nn_ckpt_open(&ck, model, &err) != BG_OK) {
        fprintf(stderr, "bench_lmgfn: %s\n", err.msg);
        return 1;
    }
    printf("LM GFlowNet on %s: batch 16, max_len %d, LoRA rank 4, SubTB, LM reward, %d steps\n\n",
           model, len, steps);
    printf("| backend | sampling traj/s | training traj/s | tokens/traj |\n|---|---|---|---|\n");
    row("cpu, 1 thread", &ck, (bg_compute_opts){BG_BACKEND_CPU, 1, 0, -1}, steps, len);
    row("cpu, 2 threads", &ck, (bg_compute_opts){BG_BACKEND_CPU, 2, 0, -1}, steps, len);
    row("vulkan (lavapipe if no GPU)", &ck, (bg_compute_opts){BG_BACKEND_VULKAN, 0, 1, -1}, steps,
        len);
    bg_nn_ckpt_close(&ck);
    return 0;
}
