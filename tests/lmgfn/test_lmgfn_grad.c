/*
 * test_lmgfn_grad.c — the LM GFlowNet trainer's gradient (lmgfn_train.c:
 * the loss's d/d log q turned into the nn trainer's per-token weights,
 * the ⊤-masked renormalisation before min_len, the forced ⊤ at max_len,
 * the vocabulary mask as a logit bias) against central finite differences
 * of the loss, on a tiny synthetic model (2 layers, width 16, 16 tokens)
 * with LoRA rank 2 whose B was set to random values (so A has a gradient
 * too). Both objectives, min_len 0 and 1.
 *
 * Tolerance: the forward runs in float, so the loss is known to ~1e-6
 * relative; with h = 2e-3 the central difference of a loss of O(10) has an
 * error around 1e-3 absolute; each checked entry must agree within
 * 2e-3 + 2% of its size, and the checked entries are the 8 largest of
 * every adapter tensor of layer 0 (so a dropped row would show).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmgfn_test.h"

static int reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                  double *logr, bg_err *err)
{
    (void)ctx, (void)g, (void)z, (void)err;
    for (int j = 0; j < k; j++)
        for (int i = 0; i <= n[j]; i++)
            logr[j * 4 + i] = -0.5 * i;
    return BG_OK;
}

static double loss_of(bg_lmgfn *g, const int32_t *const *z, const int *n, const double *logr)
{
    bg_err err;
    double L = 0;
    int rc = bg_lmgfn_grad(g, z, n, logr, &L, NULL, &err);
    CHECK(rc == BG_OK, "grad: %s", err.msg);
    return L;
}

static void check(const char *ckpt, int objective, int min_len)
{
    bg_err err;
    static const int32_t prompt[2] = {0, 5};
    unsigned char legal[16] = {0};
    for (int j = 2; j < 12; j++)
        legal[j] = 1;
    bg_lmgfn_opts o = {.prompt = prompt,
                       .n_prompt = 2,
                       .stop_token = 1,
                       .min_len = min_len,
                       .max_len = 3,
                       .legal = legal,
                       .batch = 3,
                       .objective = objective,
                       .lambda = 0.8,
                       .temp_lo = 1,
                       .temp_hi = 1,
                       .rtemp_start = 1,
                       .rtemp_end = 1,
                       .replay_cap = 4,
                       .replay_min_dist = 1,
                       .seed = 3,
                       .reward = reward};
    bg_nn_train_opts to = {.lora_rank = 2,
                           .seed = 9,
                           .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}};
    bg_lmgfn *g = lt_lmgfn_open(ckpt, &to, &o);
    bg_nn_trainer *t = bg_lmgfn_trainer(g);
    lt_random_lora_b(t, 77);
    int32_t z0[3] = {3, 4, 5}, z1[1] = {7}, z2[3] = {2, 2, 9};
    const int32_t *z[3] = {z0, z1, z2};
    int n[3] = {3, 1, 2};
    double logr[3 * 4];
    reward(NULL, g, z, n, 3, logr, &err);
    double L = loss_of(g, z, n, logr), maxrel = 0;
    int checked = 0;
    for (int i = 0; i < bg_nn_train_nparams(t); i++) {
        const char *name = bg_nn_train_param_name(t, i);
        if (strncmp(name, "l0.", 3) != 0)
            continue;
        size_t sz = bg_nn_train_param_size(t, i);
        float *p = malloc(sizeof(float) * sz), *gr = malloc(sizeof(float) * sz);
        loss_of(g, z, n, logr); /* the gradient at the unperturbed point */
        CHECK(bg_nn_train_grad_read(t, i, gr, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_param_read(t, i, p, &err) == BG_OK, "%s", err.msg);
        for (int pick = 0; pick < 8; pick++) {
            size_t best = 0;
            for (size_t j = 1; j < sz; j++)
                if (fabsf(gr[j]) > fabsf(gr[best]))
                    best = j;
            float p0 = p[best];
            const float h = 2e-3f;
            p[best] = p0 + h;
            bg_nn_train_param_write(t, i, p, &err);
            double lp = loss_of(g, z, n, logr);
            p[best] = p0 - h;
            bg_nn_train_param_write(t, i, p, &err);
            double lm = loss_of(g, z, n, logr);
            p[best] = p0;
            bg_nn_train_param_write(t, i, p, &err);
            double fd = (lp - lm) / (2.0 * h), an = gr[best];
            double tol = 2e-3 + 0.02 * fabs(fd);
            if (fabs(an) > 1e-3 && fabs(fd - an) / fabs(an) > maxrel)
                maxrel = fabs(fd - an) / fabs(an);
            CHECK(fabs(fd - an) <= tol, "%s obj %d min_len %d: %s[%zu] analytic %.6g fd %.6g", ckpt,
                  objective, min_len, name, best, an, fd);
            gr[best] = 0; /* next largest */
            checked++;
        }
        free(p);
        free(gr);
    }
    printf("%s min_len %d: loss %.5f, %d entries, max relative error %.2e\n",
           objective == BG_LMGFN_TB ? "TB" : "SubTB", min_len, L, checked, maxrel);
    CHECK(checked >= 8 * 14, "only %d entries checked", checked);
    bg_lmgfn_destroy(g);
}

int main(void)
{
    char path[] = "/tmp/bg-test-lmgfn-grad-XXXXXX";
    lt_tiny_model(path);
    check(path, BG_LMGFN_SUBTB, 0);
    check(path, BG_LMGFN_SUBTB, 1);
    check(path, BG_LMGFN_TB, 1);
    unlink(path);
    CHECK_DONE("test_lmgfn_grad");
}
