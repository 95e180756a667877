/*
 * test_lmgfn_logits_batch.c — bg_nn_train_logits_batch (lib/nn, the
 * lm_gfn plugin's level-by-level draws) against bg_nn_train_logits one
 * sequence at a time, on the tiny model with LoRA adapters on (random B,
 * so the adapters matter) and a logit bias, on the CPU and on Vulkan
 * (lavapipe; that part is skipped, saying why, without a device):
 *   - 21 sequences of n = 1, 5 and 8 tokens through a trainer of batch 2,
 *     seq 8, so a call runs in chunks of 16 / n sequences (the chunking
 *     and a last short chunk): every logit within 1e-5 (float order: the
 *     classifier is one matmul of the chunk's rows instead of the M == 1
 *     kernel; measured worst printed);
 *   - a token outside the vocabulary and n outside 1..seq are EINVAL.
 */
#include <math.h>
#include <stdio.h>

#include "lmgfn_test.h"
#include "vk_test_util.h"

#define V 16
#define NSEQ 21
#define TOL 1e-5

static double check_backend(const char *ckpt, const bg_compute_opts *co, const char *what)
{
    bg_nn_ckpt ck;
    bg_err err;
    CHECK(bg_nn_ckpt_open(&ck, ckpt, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_opts to = {.batch = 2,
                           .seq = 8,
                           .lora_rank = 2,
                           .seed = 4,
                           .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}};
    bg_nn_trainer *t;
    CHECK(bg_nn_train_create(&ck, co, &to, &t, &err) == BG_OK, "%s: %s", what, err.msg);
    bg_nn_ckpt_close(&ck);
    lt_random_lora_b(t, 77);
    float bias[V] = {0};
    bias[3] = -1e4f;
    bias[7] = 0.5f;
    CHECK(bg_nn_train_set_logit_bias(t, bias, &err) == BG_OK, "%s", err.msg);
    static const int lens[3] = {1, 5, 8};
    double worst = 0;
    for (int li = 0; li < 3; li++) {
        int n = lens[li];
        int32_t tok[NSEQ * 8];
        for (int i = 0; i < NSEQ * n; i++)
            tok[i] = (int32_t)((i * 7 + li * 3 + i / n) % V);
        float got[NSEQ * V], want[V];
        CHECK(bg_nn_train_logits_batch(t, tok, NSEQ, n, got, &err) == BG_OK, "%s n %d: %s", what, n,
              err.msg);
        for (int s = 0; s < NSEQ; s++) {
            CHECK(bg_nn_train_logits(t, tok + s * n, n, want, &err) == BG_OK, "%s", err.msg);
            for (int v = 0; v < V; v++) {
                double d = fabs((double)got[s * V + v] - want[v]);
                worst = d > worst ? d : worst;
                CHECK(d <= TOL, "%s n %d sequence %d token %d: batched %.8g, one %.8g", what, n, s,
                      v, got[s * V + v], want[v]);
            }
        }
    }
    int32_t bad[2] = {1, V};
    float out[2 * V];
    CHECK(bg_nn_train_logits_batch(t, bad, 1, 2, out, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "out of range") != NULL, "%s", err.msg);
    CHECK(bg_nn_train_logits_batch(t, bad, 1, 9, out, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "expected 1..8 tokens") != NULL, "%s", err.msg);
    bg_nn_train_destroy(t);
    printf("%s: worst |batched - one at a time| %.3g (tolerance %g)\n", what, worst, TOL);
    return worst;
}

int main(void)
{
    char path[] = "/tmp/bg-test-lmgfn-logits-batch-XXXXXX";
    lt_tiny_model(path);
    bg_compute_opts cpu = {.kind = BG_BACKEND_CPU, .threads = 1};
    check_backend(path, &cpu, "cpu");
    vt_env_setup();
    bg_compute_opts vk = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};
    bg_compute *probe = NULL;
    bg_err err;
    if (bg_compute_create(&vk, &probe, &err) == BG_OK) {
        bg_compute_destroy(probe);
        check_backend(path, &vk, "vulkan");
    } else {
        printf("vulkan: skipped, no device: %s\n", err.msg);
    }
    unlink(path);
    CHECK_DONE("test_lmgfn_logits_batch");
}
