/*
 * bernoulli.c — hypothesis model: an unknown harm rate for the tools a
 * policy guards. Hypothesis i is "each guarded action causes harm with
 * probability rate_i, independently"; harm = rate_i; an observation is
 * harmed (log rate) or not harmed (log(1 − rate)).
 *
 * The rates are either a declared grid (`rates`, optional `weights` as the
 * prior, uniform when absent), or a discretised Beta(a, b) prior on
 * `grid_size` midpoints (i + 0.5)/grid_size — never exactly 0 or 1, so no
 * observation has zero likelihood under every hypothesis. One form only.
 *
 * Threads: pure after create. Ownership: instance and its arrays malloc'd
 * by create, freed by destroy.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"

#define MAX_RATES 4096

typedef struct bern_cfg {
    double rates[MAX_RATES];
    size_t n_rates;
    double weights[MAX_RATES];
    size_t n_weights;
    int64_t grid_size;
    double a, b;
} bern_cfg;

typedef struct bern {
    size_t n;
    double *rate;      /* [n] */
    double *log_prior; /* [n] */
} bern;

static const bg_cfg_entry cfg_map[] = {
    {.key = "rates",
     .type = BG_CFGV_DOUBLES,
     .def = "",
     .offset = offsetof(bern_cfg, rates),
     .size = MAX_RATES,
     .count_offset = offsetof(bern_cfg, n_rates),
     .min = 0,
     .max = 1,
     .desc = "explicit grid of harm rates in [0,1] (not with grid_size/a/b)"},
    {.key = "weights",
     .type = BG_CFGV_DOUBLES,
     .def = "",
     .offset = offsetof(bern_cfg, weights),
     .size = MAX_RATES,
     .count_offset = offsetof(bern_cfg, n_weights),
     .min = 0,
     .max = 1e300,
     .desc = "prior weight of each rate (same length as rates; default uniform)"},
    {.key = "grid_size",
     .type = BG_CFGV_INT,
     .def = "100",
     .offset = offsetof(bern_cfg, grid_size),
     .min = 2,
     .max = MAX_RATES,
     .desc = "Beta form: number of rate midpoints (i+0.5)/grid_size"},
    {.key = "a",
     .type = BG_CFGV_DOUBLE,
     .def = "1",
     .offset = offsetof(bern_cfg, a),
     .min = 1e-6,
     .max = 1e6,
     .desc = "Beta form: prior a (pseudo-count of harms + 1)"},
    {.key = "b",
     .type = BG_CFGV_DOUBLE,
     .def = "1",
     .offset = offsetof(bern_cfg, b),
     .min = 1e-6,
     .max = 1e6,
     .desc = "Beta form: prior b (pseudo-count of safe actions + 1)"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])

static void destroy(void *vself)
{
    bern *self = vself;
    if (!self)
        return;
    free(self->rate);
    free(self->log_prior);
    free(self);
}

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    bern_cfg *c = malloc(sizeof *c);
    if (!c)
        return BG_PLUGIN_ENOMEM;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, c);
    const bg_cfg_node *nr = config ? host->cfg_get(config, "rates") : NULL;
    const bg_cfg_node *nw = config ? host->cfg_get(config, "weights") : NULL;
    const bg_cfg_node *beta = NULL;
    if (config && !beta)
        beta = host->cfg_get(config, "grid_size");
    if (config && !beta)
        beta = host->cfg_get(config, "a");
    if (config && !beta)
        beta = host->cfg_get(config, "b");
    if (rc == BG_PLUGIN_OK && nr && beta)
        rc = host->cfg_error(host->host_ctx, beta,
                             "give either `rates` (a grid) or `grid_size`/`a`/`b` (a Beta "
                             "prior), not both");
    if (rc == BG_PLUGIN_OK && nr && c->n_rates == 0)
        rc = host->cfg_error(host->host_ctx, nr, "`rates` is empty; expected at least one rate");
    if (rc == BG_PLUGIN_OK && nw && !nr)
        rc = host->cfg_error(host->host_ctx, nw, "`weights` needs `rates`");
    if (rc == BG_PLUGIN_OK && nw && c->n_weights != c->n_rates)
        rc = host->cfg_error(host->host_ctx, nw, "`weights` has %zu values; `rates` has %zu",
                             c->n_weights, c->n_rates);
    bern *self = rc == BG_PLUGIN_OK ? calloc(1, sizeof *self) : NULL;
    if (rc == BG_PLUGIN_OK && !self)
        rc = BG_PLUGIN_ENOMEM;
    if (rc == BG_PLUGIN_OK) {
        self->n = nr ? c->n_rates : (size_t)c->grid_size;
        self->rate = malloc(self->n * sizeof *self->rate);
        self->log_prior = malloc(self->n * sizeof *self->log_prior);
        if (!self->rate || !self->log_prior)
            rc = BG_PLUGIN_ENOMEM;
    }
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < self->n; i++) {
        if (nr) {
            self->rate[i] = c->rates[i];
            self->log_prior[i] = nw ? log(c->weights[i]) : 0.0;
        } else {
            double r = ((double)i + 0.5) / (double)self->n;
            self->rate[i] = r;
            self->log_prior[i] = (c->a - 1.0) * log(r) + (c->b - 1.0) * log1p(-r);
        }
    }
    free(c);
    if (rc != BG_PLUGIN_OK) {
        destroy(self);
        return rc;
    }
    *out = self;
    return BG_PLUGIN_OK;
}

static uint64_t count(const void *vself)
{
    return ((const bern *)vself)->n;
}

static int log_prior(const void *vself, const uint64_t *h, size_t n, double *out)
{
    const bern *self = vself;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->n)
            return BG_PLUGIN_EINVAL;
        out[i] = self->log_prior[h[i]];
    }
    return BG_PLUGIN_OK;
}

static int log_lik(const void *vself, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const bern *self = vself;
    (void)history;
    (void)n_hist;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->n)
            return BG_PLUGIN_EINVAL;
        double r = self->rate[h[i]];
        out[i] = obs->harmed ? log(r) : log1p(-r);
    }
    return BG_PLUGIN_OK;
}

static int harm(const void *vself, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const bern *self = vself;
    (void)action;
    (void)history;
    (void)n_hist;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->n)
            return BG_PLUGIN_EINVAL;
        out[i] = self->rate[h[i]];
    }
    return BG_PLUGIN_OK;
}

static int label(const void *vself, uint64_t h, char *buf, size_t len)
{
    const bern *self = vself;
    if (h >= self->n)
        return BG_PLUGIN_EINVAL;
    snprintf(buf, len, "rate=%.6g", self->rate[h]);
    return BG_PLUGIN_OK;
}

static const bg_hypothesis_vtbl vtbl = {
    .create = create,
    .destroy = destroy,
    .count = count,
    .log_prior = log_prior,
    .log_lik = log_lik,
    .harm = harm,
    .label = label,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "bernoulli",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "unknown harm rate: a grid of rates or a discretised Beta prior",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.hypothesis = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
