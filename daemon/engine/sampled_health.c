/*
 * sampled_health.c — how far a sampled verdict may trust its sampler
 * (sampled.h, "Health"): a draw's candidates, their log q as the sampler
 * reported it, and the training state the draw was made in, set against
 * the session's current reward. No state; any thread.
 *
 * Why from the draw and nothing else: an Evaluate reuses the candidates of
 * one draw (bg__cands) until the next training step, and the exact
 * posterior of every candidate is computed anyway, so the importance
 * weights w = R / q of the K draws cost one subtraction each. They say how
 * far the sampler is from R / Z where it sampled:
 *   tb_residual        the RMS of log w around its mean over the K draws:
 *                      the trajectory-balance residual of the draw as a
 *                      batch at its best log Z (that loss is Var(log w)),
 *                      in nats, against the current reward (the trainer's
 *                      last batch was against the reward of its version);
 *   log_weight_spread  max - min log w over the distinct candidates: the
 *                      worst pair (e^spread = the ratio of their weights);
 *   ess                (Σ w)² / Σ w² over the K draws: as many independent
 *                      samples of the posterior as the draw is worth.
 * An exact sampler has w = Z for every draw: residual 0, spread 0, ess K.
 * None of them sees mass the sampler never visits (a missed mode leaves no
 * weight behind); the training state covers what they cannot: how many
 * observations the sampler has not trained on (version_lag) and how many
 * steps it has had on the current data (train_steps).
 *
 * Beside them, reported and never judged: the search archive the
 * candidates included (bg__health_archive) and this action's remembered
 * context (bg__health_context: its kept members among the candidates, its
 * search rounds, the observations since its newest search) — how much of
 * the verdict rests on a search, and how fresh that search is.
 *
 * A candidate with log R = -inf (excluded by the data) has weight 0: it
 * lowers ess and takes no part in the residual or the spread. A sampler
 * that reports no log q (NaN) gives NaN measures, which no limit passes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampled_priv.h"

typedef struct draw {
    uint64_t id;
    double log_q;
} draw;

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const draw *)a)->id, y = ((const draw *)b)->id;
    return x < y ? -1 : x > y;
}

int bg__cands_fill(bg__cands *c, const uint64_t *ids, const double *log_q, size_t k)
{
    draw *d = malloc(k * sizeof *d);
    if (!d)
        return BG_ENOMEM;
    for (size_t i = 0; i < k; i++)
        d[i] = (draw){ids[i], log_q ? log_q[i] : NAN};
    qsort(d, k, sizeof *d, by_id);
    size_t n = 0;
    for (size_t i = 0; i < k; i++) {
        if (n && c->ids[n - 1] == d[i].id) {
            c->mult[n - 1]++;
            continue;
        }
        c->ids[n] = d[i].id;
        c->log_q[n] = d[i].log_q;
        c->mult[n] = 1;
        n++;
    }
    free(d);
    c->n = n;
    return BG_OK;
}

void bg__fit_trained(bg__fit *f, uint64_t version, size_t n_hist, uint64_t steps)
{
    if (f->version != version) {
        f->version = version;
        f->n_hist = n_hist;
        f->steps = 0;
    }
    f->steps += steps;
}

/* Observations of the session's history (n_hist, at version) the draw's
 * sampler had not trained on. */
static uint64_t version_lag(const bg__fit *f, uint64_t version, size_t n_hist)
{
    if (n_hist == 0 || f->version == version)
        return 0;
    if (f->version == BG_REWARD_UNVERSIONED || f->n_hist >= n_hist)
        return n_hist; /* never trained, or on another history */
    return n_hist - f->n_hist;
}

/* Observations of n_hist (at version) a search made at (a_version,
 * a_n_hist) had not seen: on a prefix of this history, the rest; on
 * another one, all of them. */
static uint64_t search_lag(uint64_t a_version, size_t a_n_hist, uint64_t version, size_t n_hist)
{
    if (a_version == version)
        return 0;
    return a_n_hist < n_hist ? n_hist - a_n_hist : n_hist;
}

void bg__health_archive(const bg__archive *a, uint64_t version, size_t n_hist,
                        bg_sampler_health *out)
{
    if (!a) {
        out->archive_size = out->search_evaluations = out->search_cpu_us = 0;
        out->archive_version_lag = n_hist;
        return;
    }
    out->archive_size = a->n;
    out->search_evaluations = a->evals;
    out->search_cpu_us = a->cpu_ns / 1000u;
    out->archive_version_lag = search_lag(a->version, a->n_hist, version, n_hist);
}

void bg__health_context(int remembered, const bg__archive *kept, uint64_t rounds, size_t joined,
                        uint64_t version, size_t n_hist, bg_sampler_health *out)
{
    out->context_kept = out->context_rounds = out->context_version_lag = 0;
    if (!remembered)
        return;
    out->context_kept = joined;
    out->context_rounds = rounds;
    out->context_version_lag =
        kept ? search_lag(kept->version, kept->n_hist, version, n_hist) : n_hist;
}

/* Appends "; " + the formatted text to r (truncating). */
static void why(char *r, size_t len, const char *fmt, double have, double limit)
{
    size_t l = strlen(r);
    if (l + 3 >= len)
        return;
    if (l) {
        memcpy(r + l, "; ", 3);
        l += 2;
    }
    snprintf(r + l, len - l, fmt, have, limit);
}

void bg__health_of(const bg_guard *g, const bg__cands *c, const double *log_r, uint64_t version,
                   size_t n_hist, bg_sampler_health *out)
{
    memset(out, 0, sizeof *out);
    double mx = -INFINITY, mn = INFINITY, sum = 0, draws = 0;
    int nan = 0;
    for (size_t i = 0; i < c->n; i++) {
        double lw = log_r[i] - c->log_q[i];
        if (isnan(lw)) {
            nan = 1;
            continue;
        }
        if (lw == -INFINITY)
            continue;
        mx = lw > mx ? lw : mx;
        mn = lw < mn ? lw : mn;
        sum += c->mult[i] * lw;
        draws += c->mult[i];
    }
    if (nan || draws == 0) {
        out->tb_residual = out->log_weight_spread = nan ? NAN : INFINITY;
        out->ess = nan ? NAN : 0;
    } else {
        double mean = sum / draws, ss = 0, s1 = 0, s2 = 0;
        for (size_t i = 0; i < c->n; i++) {
            double lw = log_r[i] - c->log_q[i];
            if (lw == -INFINITY)
                continue;
            double w = exp(lw - mx);
            ss += c->mult[i] * (lw - mean) * (lw - mean);
            s1 += c->mult[i] * w;
            s2 += c->mult[i] * w * w;
        }
        out->tb_residual = sqrt(ss / draws);
        out->log_weight_spread = mx - mn;
        out->ess = s1 * s1 / s2;
    }
    out->train_steps = c->fit.version == version ? c->fit.steps : 0;
    out->version_lag = version_lag(&c->fit, version, n_hist);
    out->healthy = 1;
    const bg_sampler_limits *l = &g->sampler_limits;
    if (!l->enabled)
        return;
    char *r = out->reason;
    size_t len = sizeof out->reason;
    if (!(out->tb_residual <= l->max_tb_residual))
        why(r, len, "tb_residual %.3g nats over max_tb_residual %.3g", out->tb_residual,
            l->max_tb_residual);
    if (!(out->ess >= l->min_ess))
        why(r, len, "ess %.4g under min_ess %.4g", out->ess, l->min_ess);
    if (out->version_lag > l->max_version_lag)
        why(r, len, "version_lag %.0f over max_version_lag %.0f", (double)out->version_lag,
            (double)l->max_version_lag);
    out->healthy = r[0] == 0;
}
