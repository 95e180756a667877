/*
 * test_nn_train_bf16.c — training with bf16 matmuls (bg_nn_train_opts
 * .precision, `lm train --precision bf16`) against the fp32 path: the same
 * model (bg_nn_init_write, the --init weights), the same batches, two
 * trainers on the CPU backend.
 *
 * Data: a first-order Markov chain over a 512-token vocabulary (each token
 * has four likely successors), so the loss has something to learn and
 * falls from ln 512 = 6.24 towards the chain's entropy.
 *
 * Tolerances (printed; measured on an AMD EPYC Zen 4, 2026-12-06, and set
 * with a margin of about 15x): the first 20 step losses agree within
 * REL_STEP relative (observed <= 6.4e-5: bf16 rounds each matmul input to 8
 * significant bits, the sums stay fp32); the held-out loss after STEPS
 * steps within REL_FINAL relative (observed 1.2e-4). Both runs must learn (held-out loss below 0.75
 * x ln 512), so agreeing on a broken run cannot pass. A CPU without AVX512_BF16 is a skip that says
 * why.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_test.h"

#define REL_STEP 1e-3
#define REL_FINAL 2e-3
#define STEPS 60
#define B 8
#define T 64
#define V 512

static uint64_t rng = 0x5DEECE66Dull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* B*T+1 tokens of the chain: next = (a*t + b[choice]) mod V */
static void batch(int32_t *tok, int32_t *tgt)
{
    static const int off[4] = {1, 7, 31, 101};
    int32_t t = (int32_t)(rnd() % V);
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < T; i++) {
            int32_t n = (int32_t)((5 * t + off[rnd() % 4]) % V);
            tok[b * T + i] = t;
            tgt[b * T + i] = n;
            t = n;
        }
    }
}

static bg_nn_trainer *make(const bg_nn_ckpt *ck, bg_precision p, bg_err *err)
{
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 2, .device_index = -1};
    bg_nn_train_opts o = {
        .batch = B,
        .seq = T,
        .seed = 3,
        .precision = p,
        .adamw = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .max_norm = 1.0f}};
    bg_nn_trainer *t = NULL;
    return bg_nn_train_create(ck, &co, &o, &t, err) == BG_OK ? t : NULL;
}

int main(void)
{
    const char *dir = nt_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/init.bin", dir);
    bg_nn_config cfg = {64, 172, 2, 4, 4, V, T, 1};
    bg_err err;
    CHECK(bg_nn_init_write(path, &cfg, 11, &err) == BG_OK, "%s", err.msg);
    bg_nn_ckpt ck;
    CHECK(bg_nn_ckpt_open(&ck, path, &err) == BG_OK, "%s", err.msg);
    bg_nn_trainer *t16 = make(&ck, BG_PRECISION_BF16, &err);
    if (!t16) {
        CHECK(strstr(err.msg, "AVX512_BF16") && strstr(err.msg, "fp32"), "message: %s", err.msg);
        printf("SKIP: bf16 refused here: %s\n", err.msg);
        bg_nn_ckpt_close(&ck);
        unlink(path);
        rmdir(dir);
        return 77;
    }
    bg_nn_trainer *t32 = make(&ck, BG_PRECISION_FP32, &err);
    CHECK(t32 != NULL, "%s", err.msg);
    printf("tolerance: steps 1-20 within %g relative, held-out after %d steps within %g\n",
           REL_STEP, STEPS, REL_FINAL);
    static int32_t tok[B * T], tgt[B * T], htok[B * T], htgt[B * T];
    batch(htok, htgt); /* held out */
    double worst = 0;
    for (int s = 1; s <= STEPS; s++) {
        batch(tok, tgt);
        double l32, l16;
        CHECK(bg_nn_train_step(t32, tok, tgt, NULL, &l32, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_step(t16, tok, tgt, NULL, &l16, &err) == BG_OK, "%s", err.msg);
        double rel = fabs(l16 - l32) / fabs(l32);
        if (s <= 20) {
            worst = rel > worst ? rel : worst;
            CHECK(rel <= REL_STEP, "step %d: loss fp32 %.6f bf16 %.6f (%.2e relative)", s, l32, l16,
                  rel);
        }
        if (s <= 3 || s % 20 == 0)
            printf("step %d loss fp32 %.6f bf16 %.6f (%.1e)\n", s, l32, l16, rel);
    }
    double h32, h16;
    CHECK(bg_nn_train_eval(t32, htok, htgt, NULL, &h32, NULL, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_eval(t16, htok, htgt, NULL, &h16, NULL, &err) == BG_OK, "%s", err.msg);
    double relf = fabs(h16 - h32) / h32;
    printf("steps 1-20: worst %.2e relative; held-out after %d steps: fp32 %.6f bf16 %.6f "
           "(%.2e relative)\n",
           worst, STEPS, h32, h16, relf);
    CHECK(relf <= REL_FINAL, "held-out fp32 %.6f bf16 %.6f: %.2e relative", h32, h16, relf);
    CHECK(h32 < 0.75 * log((double)V) && h16 < 0.75 * log((double)V),
          "did not learn: held-out fp32 %.4f bf16 %.4f (ln V = %.4f)", h32, h16, log((double)V));
    bg_nn_train_destroy(t32);
    bg_nn_train_destroy(t16);
    bg_nn_ckpt_close(&ck);
    unlink(path);
    rmdir(dir);
    CHECK_DONE("test_nn_train_bf16");
}
