/*
 * bandit_micro.c — microbenchmark of the non-iid bound per Evaluate.
 *
 * Targets (issue 3): over 1,024 hypotheses <= 20 µs per Evaluate; over 2^20
 * hypotheses <= 2x the time one core needs to stream the posterior and harm
 * arrays once — that stream time is measured here, in the same run, on the
 * same arrays (a sum over both, 16 bytes per hypothesis).
 *
 * For each size: a bandit posterior after some observations (the engine's,
 * through bg_engine_observe), then
 *   evaluate   bg_engine_evaluate end to end (harm for every hypothesis via
 *              the plugin + the noniid estimator + verdict), median per call;
 *   estimator  the noniid plugin's estimate() alone on the same posterior,
 *              harm and order arrays (what "the bound" costs);
 *   stream     one pass reading the posterior and harm arrays (the baseline);
 *   observe    mean bg_engine_observe while building the posterior (the
 *              log-likelihood pass, renormalisation, linear copy, order).
 * Medians over reps; single thread.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bandit.h"
#include "common/bg_time.h"
#include "engine/posterior.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double median_ns(uint64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (double)v[n / 2];
}

static volatile double sink;

static double stream_once(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] + b[i];
        s1 += a[i + 1] + b[i + 1];
        s2 += a[i + 2] + b[i + 2];
        s3 += a[i + 3] + b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] + b[i];
    return s0 + s1 + s2 + s3;
}

static int one_size(bg_plugin_host *host, unsigned d, int n_obs, int reps, uint64_t seed)
{
    size_t n = (size_t)1 << d;
    char mcfg[96], ecfg[64];
    snprintf(mcfg, sizeof mcfg, "{features: %u, sigma: 1, theta: %u}", d, d / 2);
    snprintf(ecfg, sizeof ecfg, "alpha: %.17g", 0.1 / (double)n); /* δ·P(i*), δ = 0.1 */
    bg_guard_spec spec = {.name = "micro",
                          .model = "bandit",
                          .model_cfg = mcfg,
                          .estimator = "noniid",
                          .estimator_cfg = ecfg,
                          .threshold = 0.5};
    bg_guard_build *gb;
    bg_engine *e;
    bg_err err;
    if (bg_guard_build_create(host, &spec, &gb, &err) != BG_OK ||
        bg_engine_create(NULL, &e, &err) != BG_OK) {
        fprintf(stderr, "micro: %s\n", err.msg);
        return 1;
    }
    const bg_guard *g = bg_guard_build_guard(gb);
    bb_rng r;
    bb_rng_seed(&r, seed, d, 0);
    double *x = calloc(d, sizeof *x);
    uint64_t truth = (uint64_t)(bb_uniform(&r) * (double)n);
    bg_action act = {
        .id = "", .tool = "pull_arm", .arguments_json = "", .features = x, .n_features = d};
    uint64_t obs_t0 = bg_now_ns();
    for (int t = 0; t < n_obs; t++) {
        double m = 0;
        for (unsigned k = 0; k < d; k++) {
            x[k] = bb_uniform(&r) < 0.5;
            m += x[k] * (double)((truth >> (d - 1 - k)) & 1);
        }
        bg_observation o = {.action = act, .has_value = 1, .value = m + bb_normal(&r)};
        if (bg_engine_observe(e, g, "s", &o, NULL, &err) != BG_OK) {
            fprintf(stderr, "micro: %s\n", err.msg);
            return 1;
        }
    }
    double obs_us = (double)(bg_now_ns() - obs_t0) / 1e3 / n_obs;
    for (unsigned k = 0; k < d; k++)
        x[k] = bb_uniform(&r) < 0.5;
    uint64_t *ts = malloc((size_t)reps * sizeof *ts);
    bg_verdict v;
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = bg_now_ns();
        if (bg_engine_evaluate(e, g, "s", &act, &v, &err) != BG_OK) {
            fprintf(stderr, "micro: %s\n", err.msg);
            return 1;
        }
        ts[i] = bg_now_ns() - t0;
    }
    double eval_ns = median_ns(ts, reps);

    /* The same arrays the engine hands the estimator. */
    bg__posterior p;
    double *post = malloc(n * sizeof *post), *harm = malloc(n * sizeof *harm);
    bg__posterior_init(&p, n, &err);
    bg_engine_posterior(e, g, "s", post, n, &err);
    for (size_t i = 0; i < n; i++) {
        p.ids[i] = i;
        p.log_post[i] = log(post[i]);
    }
    bg__posterior_normalise(&p, &err);
    bg__posterior_order(&p, g->estimator->order_needed(g->estimator_inst), &err);
    g->model->harm(g->model_inst, &act, NULL, 0, p.ids, n, harm);
    bg_estimate_in in = {.n = n,
                         .ids = p.ids,
                         .log_post = p.log_post,
                         .harm = harm,
                         .order = p.order,
                         .n_order = p.n_order,
                         .order_complete = p.n_order == n,
                         .post = p.prob};
    bg_estimate_out out;
    /* Estimator and stream timed back to back in each repetition, so a
     * burst of load on the machine hits both; the ratio is the median of
     * the per-repetition ratios. */
    uint64_t *ts2 = malloc((size_t)reps * sizeof *ts2);
    double *ratio = malloc((size_t)reps * sizeof *ratio);
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = bg_now_ns();
        g->estimator->estimate(g->estimator_inst, &in, &out);
        uint64_t t1 = bg_now_ns();
        sink = stream_once(p.prob, harm, n);
        uint64_t t2 = bg_now_ns();
        ts[i] = t1 - t0;
        ts2[i] = t2 - t1;
        ratio[i] = (double)(t1 - t0) / (double)(t2 - t1 ? t2 - t1 : 1);
    }
    for (int i = 1; i < reps; i++) /* insertion sort: reps is small */
        for (int j = i; j > 0 && ratio[j - 1] > ratio[j]; j--) {
            double t = ratio[j];
            ratio[j] = ratio[j - 1];
            ratio[j - 1] = t;
        }
    double med_ratio = ratio[reps / 2];
    double est_ns = median_ns(ts, reps);
    double stream_ns = median_ns(ts2, reps);
    free(ts2);
    free(ratio);
    printf("%-9zu %-8d %-6llu %-10.4f %12.1f %14.1f %12.1f %10.2f %12.1f\n", n, n_obs,
           (unsigned long long)out.plausible, out.bound, eval_ns / 1e3, est_ns / 1e3,
           stream_ns / 1e3, med_ratio, obs_us);
    if (out.bound != v.harm_bound)
        printf("  (estimator alone gave %.17g, evaluate %.17g)\n", out.bound, v.harm_bound);
    bg__posterior_close(&p);
    free(post);
    free(harm);
    free(ts);
    free(x);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
    return 0;
}

int bb_micro(bg_plugin_host *host, uint64_t seed, int reps)
{
    printf("non-iid bound per Evaluate (bandit model, alpha = 0.1/N, one thread, median of "
           "reps)\n");
    printf("%-9s %-8s %-6s %-10s %12s %14s %12s %10s %12s\n", "N", "obs", "|I|", "bound",
           "evaluate us", "estimator us", "stream us", "est/stream", "observe us");
    int rc = one_size(host, 10, 10, reps, seed);
    if (rc == 0)
        rc = one_size(host, 10, 200, reps, seed);
    int big = reps / 20 > 20 ? reps / 20 : 20;
    if (rc == 0)
        rc = one_size(host, 20, 10, big, seed);
    if (rc == 0)
        rc = one_size(host, 20, 200, big, seed);
    printf("targets: evaluate <= 20 us at N = 1024; estimator <= 2 x stream at N = 2^20\n");
    return rc;
}
