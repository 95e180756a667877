/*
 * lmgfn_loss.c — the LM GFlowNet's objectives as functions of the
 * log-probabilities along a batch of token trajectories (docs/GFLOWNET.md,
 * "LM GFlowNet"): modified sub-trajectory balance, where every prefix that
 * may terminate is a window endpoint, and trajectory balance.
 *
 * Why over arrays: the losses are testable on their own against the
 * formula written out as a double sum (tests/lmgfn), and the trainer only
 * turns d loss / d log q into per-token weights of the nn trainer's
 * cross-entropy (nn.h: L = -Σ w_t lp_t, so w_t = -dL/d lq_t).
 *
 * SubTB is computed through G_i = A_i - F_i (A_i the summed log q of the
 * first i tokens, F_i = log R(s_i⊤) - log q(⊤|s_i)): a window's residual
 * is G_j - G_i, the paper's sum over the window telescoped. A state before
 * min_len is no endpoint, except s_0, which then takes F_0 = log Z (a
 * learned scalar) so the first tokens are still trained.
 *
 * Threads: pure functions.
 */
#include <math.h>

#include "lmgfn/lmgfn.h"

/* Endpoint i of trajectory k: terminable, or s_0 anchored by log Z. */
static int endpoint(const bg_lmgfn_batch *b, int o, int i)
{
    return b->term[o + i] || i == 0;
}

static double window_weight_sum(const bg_lmgfn_batch *b, const double *lpow)
{
    double w = 0;
    for (int k = 0; k < b->n_traj; k++)
        for (int j = 0; j <= b->len[k]; j++)
            for (int i = 0; i < j; i++)
                if (endpoint(b, b->off[k], i) && endpoint(b, b->off[k], j))
                    w += lpow[j - i - 1];
    return w;
}

double bg_lmgfn_loss_subtb(const bg_lmgfn_batch *b, double lambda, double log_z, double *g_add,
                           double *g_stop, double *g_log_z)
{
    double lpow[BG_LMGFN_MAX_LEN + 1];
    lpow[0] = 1.0;
    for (int k = 1; k <= BG_LMGFN_MAX_LEN; k++)
        lpow[k] = lpow[k - 1] * lambda;
    double wsum = window_weight_sum(b, lpow), loss = 0, gz = 0;
    for (int k = 0; k < b->n_traj; k++) {
        int o = b->off[k], n = b->len[k];
        double G[BG_LMGFN_MAX_LEN + 1], gG[BG_LMGFN_MAX_LEN + 1], A = 0;
        for (int i = 0; i <= n; i++) {
            double F = b->term[o + i] ? b->logr[o + i] - b->lq_stop[o + i] : log_z;
            G[i] = A - F;
            gG[i] = 0;
            if (i < n)
                A += b->lq_add[o + i];
        }
        for (int j = 1; j <= n && wsum > 0; j++) {
            if (!endpoint(b, o, j))
                continue;
            for (int i = 0; i < j; i++) {
                if (!endpoint(b, o, i))
                    continue;
                double w = lpow[j - i - 1] / wsum, d = G[j] - G[i];
                loss += w * d * d;
                gG[j] += 2.0 * w * d;
                gG[i] -= 2.0 * w * d;
            }
        }
        /* dG_i/d lq_add[u] = 1 for u < i; dG_i/d lq_stop[i] = 1 when terminable;
         * dG_0/d log Z = -1 when s_0 is anchored */
        double suffix = 0;
        for (int i = n; i >= 0; i--) {
            g_stop[o + i] = b->term[o + i] ? gG[i] : 0.0;
            g_add[o + i] = i < n ? suffix : 0.0;
            suffix += gG[i];
        }
        if (!b->term[o])
            gz -= gG[0];
    }
    *g_log_z = gz;
    return loss;
}

double bg_lmgfn_loss_tb(const bg_lmgfn_batch *b, double log_z, double *g_add, double *g_stop,
                        double *g_log_z)
{
    double loss = 0, gz = 0, inv = b->n_traj > 0 ? 1.0 / b->n_traj : 0.0;
    for (int k = 0; k < b->n_traj; k++) {
        int o = b->off[k], n = b->len[k];
        double r = log_z + b->lq_stop[o + n] - b->logr[o + n];
        for (int i = 0; i < n; i++)
            r += b->lq_add[o + i];
        loss += inv * r * r;
        for (int i = 0; i <= n; i++) {
            g_add[o + i] = i < n ? 2.0 * inv * r : 0.0;
            g_stop[o + i] = i == n ? 2.0 * inv * r : 0.0;
        }
        gz += 2.0 * inv * r;
    }
    *g_log_z = gz;
    return loss;
}
