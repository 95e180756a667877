/*
 * posterior.c — estimator plugin: the posterior predictive (baseline, not a
 * bound): P(H|x,D) = Σ_h P(h|D)·P(H|x,h).
 *
 * For reporting, the "cautious" hypothesis is the one contributing most,
 * argmax P(h|D)·P(harm|x,h) (first index on ties, linear products);
 * the plausible-set size is the number of candidates averaged over.
 *
 * No config keys. Needs no posterior order. Threads: estimate is pure.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    int rc = host->cfg_apply(host->host_ctx, config, NULL, 0, NULL);
    if (rc != BG_PLUGIN_OK)
        return rc;
    *out = malloc(1);
    return *out ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
}

static void destroy(void *self)
{
    free(self);
}

static double order_needed(const void *self)
{
    (void)self;
    return 2.0;
}

static int estimate(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self;
    if (in->n == 0 || !in->post)
        return BG_PLUGIN_EINVAL;
    /* One pass: the mean, and the largest contribution for reporting. */
    double pred = 0.0, top = -1.0;
    size_t arg = 0;
    for (size_t i = 0; i < in->n; i++) {
        double c = in->post[i] * in->harm[i];
        pred += c;
        if (c > top) {
            top = c;
            arg = i;
        }
    }
    /* Rounding can push a sum of probabilities a hair past 1. */
    out->bound = pred > 1.0 ? 1.0 : pred;
    out->cautious = arg;
    out->plausible = in->n;
    out->posterior_predictive = out->bound;
    return BG_PLUGIN_OK;
}

static const bg_estimator_vtbl vtbl = {
    .create = create,
    .destroy = destroy,
    .order_needed = order_needed,
    .estimate = estimate,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "posterior",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_ESTIMATOR,
    .description = "posterior predictive harm Σ P(h|D)·P(harm|x,h) (a baseline, not a bound)",
    .vt.estimator = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
