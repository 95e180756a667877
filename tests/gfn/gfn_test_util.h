/*
 * gfn_test_util.h — small helpers shared by the GFlowNet tests (checks are
 * bg_test.h's): a reward given by a table over all ids, and
 * the exact distances between the sampler and its target. Header-only
 * (static functions) so every test stays one program.
 */
#ifndef BG_GFN_TEST_UTIL_H
#define BG_GFN_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bg_test.h"
#include "gfn/gfn.h"

/* A new sampler from c, or exit with the engine's message. */
static inline bg_gfn *gfn_new(const bg_gfn_config *c)
{
    bg_gfn *g;
    char err[256];
    CHECK(bg_gfn_create(c, &g, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    return g;
}

/* The defaults for d bits with a given hidden width and seed. */
static inline bg_gfn_config small_config(uint32_t d, uint32_t hidden, uint64_t seed)
{
    bg_gfn_config c;
    bg_gfn_config_default(&c, d);
    c.hidden = hidden;
    c.seed = seed;
    return c;
}

/* log R(h) = table[h] over all 2^d ids. */
typedef struct table_reward {
    const double *log_r;
    uint64_t calls;
} table_reward;

static inline int table_reward_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    table_reward *t = ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = t->log_r[h[i]];
    t->calls += n;
    return BG_PLUGIN_OK;
}

/* Train g for steps on a table reward, or exit with the engine's message. */
static inline void train_on(bg_gfn *g, table_reward *tr, uint32_t steps)
{
    char err[256];
    CHECK(bg_gfn_train(g, table_reward_fn, tr, steps, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
}

/* Normalise log-weights over n entries into probabilities. */
static inline void normalise(const double *logw, size_t n, double *p)
{
    double mx = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++)
        if (logw[i] > mx)
            mx = logw[i];
    for (size_t i = 0; i < n; i++)
        s += p[i] = exp(logw[i] - mx);
    for (size_t i = 0; i < n; i++)
        p[i] /= s;
}

/* Total variation between the exact q^⊤ of g and the target ∝ exp(log_r). */
static inline double exact_tv(const bg_gfn *g, const double *log_r)
{
    size_t n = (size_t)1 << bg_gfn_get_config(g)->n_bits;
    double *lq = malloc(n * sizeof *lq), *p = malloc(n * sizeof *p);
    CHECK(lq && p, "oom");
    CHECK(bg_gfn_log_q_all(g, lq) == BG_PLUGIN_OK, "log_q_all");
    normalise(log_r, n, p);
    double tv = 0;
    for (size_t i = 0; i < n; i++)
        tv += fabs(exp(lq[i]) - p[i]);
    free(lq);
    free(p);
    return 0.5 * tv;
}

#endif
