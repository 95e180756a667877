/*
 * test_gfn_loss.c — the GFlowNet objectives' values (not their gradients,
 * see test_gfn_grad.c):
 *   1. modified SubTB, as implemented (telescoped), equals the spec's
 *      formula written out literally (δ_t, cumulative C, all windows,
 *      λ^(j-i-1), normalised by the batch's weight sum) on random inputs;
 *   2. SubTB (λ = 1 and 0.5), DB and TB are zero for a policy built from
 *      the exact flows of a target R (F(s) = Σ of R over s's subtree,
 *      q(a|s) = F(s')/F(s), q(⊤|s) = R(s)/F(s), log Z = log F(∅)), and
 *      positive once one probability is perturbed;
 *   3. through the real network: with R := Z·q^⊤ of a random MLP policy,
 *      the network matches its target exactly and the SubTB and TB losses
 *      (log Z = log Z) and their gradients vanish.
 * Tolerances: |difference| ≤ 1e-12 relative for (1); loss ≤ 1e-20 for
 * (2) and (3), perturbed loss ≥ 1e-6.
 */
#include <string.h>

#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"

#define D 4
#define N_H (1u << D)
#define MAX_S (N_H * (D + 1))

/* The spec's formula, literally. */
static double spec_subtb(const bg__gfn_batch *b, double lambda)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < b->n_traj; i++) {
        size_t o = b->off[i];
        uint32_t n = b->len[i];
        double C[D + 2];
        C[0] = 0;
        for (uint32_t t = 0; t < n; t++) {
            double delta = b->logr[o + t] + b->logq_add[o + t] + b->logq_stop[o + t + 1] -
                           b->logr[o + t + 1] - b->logq_stop[o + t];
            C[t + 1] = C[t] + delta;
        }
        for (uint32_t a = 0; a <= n; a++)
            for (uint32_t c = a + 1; c <= n; c++) {
                double w = pow(lambda, (double)(c - a - 1));
                num += w * (C[c] - C[a]) * (C[c] - C[a]);
                den += w;
            }
    }
    return den > 0 ? num / den : 0.0;
}

/* All 2^D trajectories laid out as a batch. */
typedef struct all_traj {
    uint32_t len[N_H];
    size_t off[N_H];
    double add[MAX_S], stop[MAX_S], logr[MAX_S], g_add[MAX_S], g_stop[MAX_S];
    unsigned char term[MAX_S];
    bg__gfn_batch b;
} all_traj;

static void layout(all_traj *a)
{
    size_t S = 0;
    for (uint32_t h = 0; h < N_H; h++) {
        a->len[h] = (uint32_t)__builtin_popcount(h);
        a->off[h] = S;
        S += a->len[h] + 1;
    }
    memset(a->term, 1, sizeof a->term);
    a->b = (bg__gfn_batch){N_H, a->len, a->off, a->add, a->stop, a->logr, a->term};
}

static void test_matches_spec(void)
{
    all_traj a;
    layout(&a);
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 5);
    for (size_t s = 0; s < MAX_S; s++) {
        a.add[s] = -3 * bg_gfn_rng_uniform(&rng);
        a.stop[s] = -3 * bg_gfn_rng_uniform(&rng);
        a.logr[s] = 4 * bg_gfn_rng_uniform(&rng) - 2;
    }
    const double lambdas[] = {1.0, 0.5, 0.9, 2.0};
    for (size_t k = 0; k < 4; k++) {
        double mine = bg__gfn_loss_subtb(&a.b, lambdas[k], 0, a.g_add, a.g_stop);
        double spec = spec_subtb(&a.b, lambdas[k]);
        CHECK(fabs(mine - spec) <= 1e-12 * fabs(spec), "lambda %g: %.15g vs spec %.15g", lambdas[k],
              mine, spec);
        printf("SubTB lambda=%.1f: implementation %.12f = spec formula %.12f\n", lambdas[k], mine,
               spec);
    }
}

static void test_exact_flows_zero(void)
{
    all_traj a;
    layout(&a);
    double R[N_H], F[N_H];
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 8);
    for (uint32_t h = 0; h < N_H; h++)
        R[h] = exp(3 * bg_gfn_rng_uniform(&rng));
    for (uint32_t s = N_H; s-- > 0;) {
        int last = s ? 31 - __builtin_clz(s) : -1;
        F[s] = R[s];
        for (int k = last + 1; k < D; k++)
            F[s] += F[s | 1u << k];
    }
    for (uint32_t h = 0; h < N_H; h++) {
        for (uint32_t t = 0; t <= a.len[h]; t++) {
            uint32_t s = (uint32_t)bg__gfn_prefix(h, t).bits;
            size_t r = a.off[h] + t;
            a.logr[r] = log(R[s]);
            a.stop[r] = log(R[s] / F[s]);
            a.add[r] = t < a.len[h] ? log(F[bg__gfn_prefix(h, t + 1).bits] / F[s]) : 0.0;
        }
    }
    double l1 = bg__gfn_loss_subtb(&a.b, 1.0, 0, a.g_add, a.g_stop);
    double l2 = bg__gfn_loss_subtb(&a.b, 0.5, 0, a.g_add, a.g_stop);
    double l3 = bg__gfn_loss_subtb(&a.b, 1.0, 1, a.g_add, a.g_stop);
    double gz, l4 = bg__gfn_loss_tb(&a.b, log(F[0]), a.g_add, a.g_stop, &gz);
    printf("exact flows: SubTB(1) %.3g SubTB(0.5) %.3g DB %.3g TB %.3g (want <= 1e-20)\n", l1, l2,
           l3, l4);
    CHECK(l1 <= 1e-20 && l2 <= 1e-20 && l3 <= 1e-20 && l4 <= 1e-20, "losses must vanish");
    a.add[a.off[N_H - 1] + 1] += 0.01;
    l1 = bg__gfn_loss_subtb(&a.b, 1.0, 0, a.g_add, a.g_stop);
    l4 = bg__gfn_loss_tb(&a.b, log(F[0]), a.g_add, a.g_stop, &gz);
    printf("one log q off by 0.01: SubTB %.3g TB %.3g (want >= 1e-6)\n", l1, l4);
    CHECK(l1 >= 1e-6 && l4 >= 1e-6, "perturbed losses must be positive");
}

static void test_network_matches_own_target(bg_gfn_loss loss)
{
    bg_gfn_config c;
    bg_gfn_config_default(&c, D);
    c.loss = loss;
    c.hidden = 16;
    c.batch = N_H;
    c.seed = 3;
    const double log_z = 2.5;
    c.init_logz = log_z;
    bg_gfn *g = gfn_new(&c);
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 4);
    for (size_t i = 0; i + 1 < g->n_params; i++)
        g->params[i] += bg_gfn_rng_uniform(&rng) - 0.5; /* a far-from-uniform policy */
    double lq[N_H], logr[MAX_S];
    CHECK(bg_gfn_log_q_all(g, lq) == BG_PLUGIN_OK, "log_q_all");
    uint64_t ids[N_H];
    size_t S = 0;
    for (uint32_t h = 0; h < N_H; h++) {
        ids[h] = h;
        for (uint32_t t = 0; t <= (uint32_t)__builtin_popcount(h); t++)
            logr[S++] = log_z + lq[bg__gfn_prefix(h, t).bits];
    }
    double *grad = malloc(g->n_params * sizeof *grad), l, gmax = 0;
    CHECK(bg__gfn_loss_eval(g, ids, logr, 1.0, &l, grad) == BG_PLUGIN_OK, "eval");
    for (size_t i = 0; i < g->n_params; i++)
        gmax = fmax(gmax, fabs(grad[i]));
    printf("network vs R = Z q^T, %s: loss %.3g, max |grad| %.3g (want <= 1e-20, <= 1e-9)\n",
           bg_gfn_loss_name(loss), l, gmax);
    CHECK(l <= 1e-20 && gmax <= 1e-9, "loss and gradient must vanish");
    logr[2] += 0.05; /* the final state of trajectory 1 (id 0x1) */
    CHECK(bg__gfn_loss_eval(g, ids, logr, 1.0, &l, NULL) == BG_PLUGIN_OK, "eval");
    CHECK(l >= 1e-6, "perturbed reward: loss %g must be positive", l);
    free(grad);
    bg_gfn_destroy(g);
}

int main(void)
{
    test_matches_spec();
    test_exact_flows_zero();
    test_network_matches_own_target(BG_GFN_LOSS_SUBTB);
    test_network_matches_own_target(BG_GFN_LOSS_DB);
    test_network_matches_own_target(BG_GFN_LOSS_TB);
    printf("ok\n");
    return 0;
}
