/*
 * test_gfn_grad.c — the hand-written gradients of the GFlowNet losses
 * (TB, modified SubTB with λ ≠ 1, modified DB), through the masked
 * log-softmax and the whole MLP, against central finite differences.
 *
 * Tolerance: |analytic − numeric| ≤ 1e-7 + 1e-6·|numeric| for every
 * parameter checked (step h = 1e-6, all in double). Also with length masks
 * (min 1, max 4) and a reward temperature ≠ 1, so masked actions and the
 * temperature are covered.
 */
#include <string.h>

#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"

#define D 5

static void check_loss(bg_gfn_loss loss, double lambda, uint32_t min_len, uint32_t max_len,
                       double t_r)
{
    bg_gfn_config c;
    bg_gfn_config_default(&c, D);
    c.loss = loss;
    c.lambda = lambda;
    c.hidden = 7;
    c.n_hidden = 2;
    c.batch = 4;
    c.min_len = min_len;
    c.max_len = max_len;
    c.init_logz = 0.3;
    c.seed = 11 + (uint64_t)loss;
    bg_gfn *g = gfn_new(&c);
    /* Larger weights than the init, so the policy is far from uniform. */
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 99);
    for (size_t i = 0; i + 1 < g->n_params; i++)
        g->params[i] += 0.5 * (bg_gfn_rng_uniform(&rng) - 0.5);

    /* Trajectories of different lengths, inside the masks. */
    const uint64_t all_ids[] = {0x0, 0x13, 0x1f, 0x4, 0x6, 0x9, 0x1e};
    uint64_t ids[4];
    size_t n = 0;
    for (size_t i = 0; i < sizeof all_ids / sizeof all_ids[0] && n < 4; i++)
        if (bg__gfn_id_ok(&c, all_ids[i]))
            ids[n++] = all_ids[i];
    CHECK(n == 4, "need 4 ids inside the masks, got %zu", n);
    double logr[4 * (D + 1)];
    size_t S = 0;
    for (size_t i = 0; i < 4; i++)
        for (int t = 0; t <= __builtin_popcountll(ids[i]); t++)
            logr[S++] = -3.0 * bg_gfn_rng_uniform(&rng) + 0.1 * t;

    double *grad = malloc(g->n_params * sizeof *grad);
    double l0;
    CHECK(bg__gfn_loss_eval(g, ids, logr, t_r, &l0, grad) == BG_PLUGIN_OK, "eval");
    CHECK(l0 > 1e-6, "loss %g should be positive for a random policy", l0);
    const double h = 1e-6;
    double worst = 0;
    size_t checked = 0, nonzero = 0;
    for (size_t i = 0; i < g->n_params; i++) {
        /* every parameter of small layers; log Z always */
        double save = g->params[i], lp, lm;
        g->params[i] = save + h;
        bg__gfn_loss_eval(g, ids, logr, t_r, &lp, NULL);
        g->params[i] = save - h;
        bg__gfn_loss_eval(g, ids, logr, t_r, &lm, NULL);
        g->params[i] = save;
        double num = (lp - lm) / (2 * h), err_abs = fabs(num - grad[i]);
        CHECK(err_abs <= 1e-7 + 1e-6 * fabs(num),
              "%s param %zu of %zu: analytic %.10g numeric %.10g", bg_gfn_loss_name(loss), i,
              g->n_params, grad[i], num);
        if (err_abs > worst)
            worst = err_abs;
        checked++;
        nonzero += fabs(num) > 1e-8;
    }
    CHECK(nonzero > checked / 4, "only %zu of %zu gradients are non-zero", nonzero, checked);
    if (loss != BG_GFN_LOSS_TB)
        CHECK(grad[g->n_params - 1] == 0.0, "log Z gradient must be 0 for %s",
              bg_gfn_loss_name(loss));
    else
        CHECK(fabs(grad[g->n_params - 1]) > 1e-8, "TB must train log Z");
    printf("%-5s lambda=%.2f len=[%u,%u] T_R=%.2f: loss %.6f, %zu params, max |err| %.2e "
           "(tolerance 1e-7 + 1e-6 |g|)\n",
           bg_gfn_loss_name(loss), lambda, min_len, max_len, t_r, l0, checked, worst);
    free(grad);
    bg_gfn_destroy(g);
}

int main(void)
{
    check_loss(BG_GFN_LOSS_TB, 1.0, 0, D, 1.0);
    check_loss(BG_GFN_LOSS_SUBTB, 1.0, 0, D, 1.0);
    check_loss(BG_GFN_LOSS_SUBTB, 0.7, 0, D, 1.3);
    check_loss(BG_GFN_LOSS_DB, 1.0, 0, D, 1.0);
    check_loss(BG_GFN_LOSS_TB, 1.0, 1, 4, 0.8);
    check_loss(BG_GFN_LOSS_SUBTB, 0.9, 1, 4, 0.8);
    check_loss(BG_GFN_LOSS_DB, 1.0, 1, 4, 1.0);
    printf("ok\n");
    return 0;
}
