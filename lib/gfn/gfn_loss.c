/*
 * gfn_loss.c — the GFlowNet objectives as functions of the log-probabilities
 * the policy gave along a batch of trajectories (spec/gflownet.md):
 * trajectory balance with a learned log Z, the modified sub-trajectory
 * balance with λ-weighted windows, and the modified detailed balance (its
 * windows of length 1).
 *
 * Why over arrays and not over the network: the losses are then testable
 * on their own (zero for a policy built to match the target exactly, exact
 * gradients against finite differences) and the trainer only has to turn
 * d loss / d log q into d loss / d logits.
 *
 * Modified SubTB, written through the telescoped sum: with
 * F_t = log R(s_t⊤) − log q(⊤|s_t) (the state's implied log-flow) and
 * A_t = Σ_{u<t} log q(a_u|s_u),
 *   C_j − C_i = Σ_{t=i}^{j−1} δ_t = G_j − G_i,  G_t = A_t − F_t,
 * which is the spec's δ_t summed exactly; writing it this way costs one
 * pass per trajectory and lets a window skip states that may not stop
 * (length masks): windows join terminable states only. With no masks every
 * state is terminable and this is the spec's formula verbatim.
 *
 * Threads: pure functions.
 */
#include <math.h>
#include <string.h>

#include "gfn_priv.h"

double bg__gfn_loss_tb(const bg__gfn_batch *b, double log_z, double *g_add, double *g_stop,
                       double *g_log_z)
{
    double loss = 0, gz = 0, inv_n = b->n_traj ? 1.0 / (double)b->n_traj : 0.0;
    for (size_t i = 0; i < b->n_traj; i++) {
        size_t o = b->off[i];
        uint32_t n = b->len[i];
        double s = log_z + b->logq_stop[o + n] - b->logr[o + n];
        for (uint32_t t = 0; t < n; t++)
            s += b->logq_add[o + t];
        loss += s * s * inv_n;
        double g = 2.0 * s * inv_n;
        for (uint32_t t = 0; t <= n; t++) {
            g_add[o + t] = t < n ? g : 0.0;
            g_stop[o + t] = t == n ? g : 0.0;
        }
        gz += g;
    }
    *g_log_z = gz;
    return loss;
}

/* Σ of window weights of one trajectory (λ^(j-i-1) over terminable i < j). */
static double traj_weight(const unsigned char *term, uint32_t n, const double *lpow, int db)
{
    double w = 0;
    int32_t prev = -1;
    for (uint32_t j = 0; j <= n; j++) {
        if (!term[j])
            continue;
        if (db) {
            w += prev >= 0;
        } else {
            for (uint32_t i = 0; i < j; i++)
                if (term[i])
                    w += lpow[j - i - 1];
        }
        prev = (int32_t)j;
    }
    return w;
}

double bg__gfn_loss_subtb(const bg__gfn_batch *b, double lambda, int db, double *g_add,
                          double *g_stop)
{
    double lpow[BG_GFN_MAX_BITS + 1];
    lpow[0] = 1.0;
    for (int k = 1; k <= BG_GFN_MAX_BITS; k++)
        lpow[k] = lpow[k - 1] * lambda;

    double wsum = 0;
    for (size_t i = 0; i < b->n_traj; i++)
        wsum += traj_weight(b->term + b->off[i], b->len[i], lpow, db);

    double loss = 0;
    for (size_t i = 0; i < b->n_traj; i++) {
        size_t o = b->off[i];
        uint32_t n = b->len[i];
        const unsigned char *term = b->term + o;
        double G[BG_GFN_MAX_BITS + 1], gG[BG_GFN_MAX_BITS + 1];
        double A = 0;
        for (uint32_t t = 0; t <= n; t++) {
            G[t] = term[t] ? A - (b->logr[o + t] - b->logq_stop[o + t]) : 0.0;
            gG[t] = 0;
            if (t < n)
                A += b->logq_add[o + t];
        }
        if (wsum > 0) {
            int32_t prev = -1;
            for (uint32_t j = 0; j <= n; j++) {
                if (!term[j])
                    continue;
                for (uint32_t i2 = db ? (uint32_t)(prev < 0 ? (int32_t)j : prev) : 0; i2 < j;
                     i2++) {
                    if (!term[i2])
                        continue;
                    double w = (db ? 1.0 : lpow[j - i2 - 1]) / wsum;
                    double diff = G[j] - G[i2];
                    loss += w * diff * diff;
                    gG[j] += 2.0 * w * diff;
                    gG[i2] -= 2.0 * w * diff;
                }
                prev = (int32_t)j;
            }
        }
        /* dG_t/dlogq_stop_t = 1 ; dG_t/dlogq_add_u = 1 for u < t */
        double suffix = 0;
        for (uint32_t t = n + 1; t-- > 0;) {
            g_stop[o + t] = gG[t];
            g_add[o + t] = t < n ? suffix : 0.0;
            suffix += gG[t];
        }
    }
    return loss;
}
