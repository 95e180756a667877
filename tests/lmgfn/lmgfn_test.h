/*
 * lmgfn_test.h — what the lmgfn tests share: the tiny synthetic model
 * (2 layers, width 16, 16 tokens, context 8) they train on, the LM reward
 * as a bg_lmgfn_reward_fn, the theory tests' small task, the trainer
 * tests' behaviour-mixture options, the lmgfn on a model file, and random
 * LoRA B adapters (so the adapters matter before any step). Header-only:
 * each test is one program.
 */
#ifndef BG_LMGFN_TEST_H
#define BG_LMGFN_TEST_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bg_test.h"
#include "lmgfn/lmgfn.h"

/* Writes the tiny model to a new temporary file; path is the mkstemp
 * template ("...XXXXXX"), rewritten in place. The caller unlinks it. */
static inline int lt_tiny_model(char *path)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp %s", path);
    close(fd);
    bg_err err;
    bg_nn_config cfg = {.dim = 16,
                        .hidden_dim = 32,
                        .n_layers = 2,
                        .n_heads = 2,
                        .n_kv_heads = 2,
                        .vocab_size = 16,
                        .seq_len = 8,
                        .shared_classifier = 1};
    CHECK(bg_nn_synth_write(path, &cfg, 5, &err) == BG_OK, "%s", err.msg);
    return 0;
}

/* The LM's own reward (bg_lmgfn_lm_logr) as a task reward. */
static inline int lt_lm_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                               double *logr, bg_err *err)
{
    (void)ctx;
    return bg_lmgfn_lm_logr(g, z, n, k, logr, err);
}

/* The trainer tests' GFlowNet on the tiny model: prompt x (2 tokens), ⊤ = 1,
 * lengths 0..max_len, the paper's behaviour mixture (SubTB λ = 1, a
 * quarter of the steps replayed, half the on-policy ones tempered in
 * U(0.5, 2), reward temperature 1, log Z's Adam 0.05), replay 16 items at
 * edit distance >= 1, seed 2; LoRA rank 2, AdamW lr 3e-2 clipped at norm 1,
 * in *to. Callers change what their test is about. */
static inline void lt_mixture_opts(bg_lmgfn_opts *go, bg_nn_train_opts *to, const int32_t *x,
                                   int max_len, int batch, bg_lmgfn_reward_fn reward)
{
    *go = (bg_lmgfn_opts){.prompt = x,
                          .n_prompt = 2,
                          .stop_token = 1,
                          .min_len = 0,
                          .max_len = max_len,
                          .batch = batch,
                          .objective = BG_LMGFN_SUBTB,
                          .lambda = 1,
                          .p_replay = 0.25,
                          .p_tempered = 0.5,
                          .temp_lo = 0.5,
                          .temp_hi = 2,
                          .rtemp_start = 1,
                          .rtemp_end = 1,
                          .replay_cap = 16,
                          .replay_min_dist = 1,
                          .lr_log_z = 0.05,
                          .seed = 2,
                          .reward = reward};
    *to = (bg_nn_train_opts){
        .lora_rank = 2,
        .seed = 4,
        .adamw = {.lr = 3e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
}

/* The theory tests' GFlowNet on the tiny model: prompt x (2 tokens), ⊤ = 1,
 * lengths 1..3, mask over 16 tokens, batch 4, the LM reward, on-policy at
 * T = 1 (no tempering, β = 1), seed 3; LoRA rank 2 with AdamW lr 2e-2 (no
 * clipping) in *to. */
static inline void lt_theory_opts(bg_lmgfn_opts *go, bg_nn_train_opts *to, const int32_t *x,
                                  const unsigned char *mask)
{
    lt_mixture_opts(go, to, x, 3, 4, lt_lm_reward);
    go->min_len = 1;
    go->legal = mask;
    go->p_replay = 0;
    go->p_tempered = 0;
    go->temp_lo = go->temp_hi = 1;
    go->seed = 3;
    to->batch = 1;
    to->seq = 1;
    to->adamw.lr = 2e-2f;
    to->adamw.max_norm = 0;
}

/* The lmgfn on the model file at path (CPU backend). new: the caller
 * destroys it. */
static inline bg_lmgfn *lt_lmgfn_open(const char *path, const bg_nn_train_opts *to,
                                      const bg_lmgfn_opts *go)
{
    bg_err err;
    bg_nn_ckpt ck;
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "%s", err.msg);
    bg_lmgfn *g = NULL;
    CHECK(bg_lmgfn_create(&ck, NULL, to, go, &g, &err) == BG_OK, "%s", err.msg);
    bg_nn_ckpt_close(&ck);
    return g;
}

/* Sets every LoRA B adapter of t to seeded values in [-0.3, 0.3) (B starts
 * at zero, so the adapters change nothing until a step or this). */
static inline void lt_random_lora_b(bg_nn_trainer *t, uint64_t s)
{
    bg_err err;
    for (int i = 0; i < bg_nn_train_nparams(t); i++) {
        if (!strstr(bg_nn_train_param_name(t, i), ".B"))
            continue;
        size_t sz = bg_nn_train_param_size(t, i);
        float *p = malloc(sizeof(float) * sz);
        CHECK(p != NULL);
        for (size_t j = 0; j < sz; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            p[j] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5) * 0.6f;
        }
        CHECK(bg_nn_train_param_write(t, i, p, &err) == BG_OK, "%s", err.msg);
        free(p);
    }
}

#endif
