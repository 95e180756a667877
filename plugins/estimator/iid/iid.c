/*
 * iid.c — estimator plugin: the cautious theory (Prop 3.4 of Bengio et al.).
 *
 *   τ = argmax_τ P(τ|D)·P(H|x,τ), first index wins a tie;  bound = P(H|x,τ).
 *
 * The product is compared in log space (log P + log harm) so posteriors of
 * 1e-300 still compare correctly; a hypothesis with harm 0 scores -inf, and
 * when every score is -inf the first index wins (bound 0). The guarantee is
 * asymptotic: P(H|x,τ*) <= bound / P(τ*|D), so the bound holds once
 * P(τ*|D) > 1/2 — not before.
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
    if (in->n == 0)
        return BG_PLUGIN_EINVAL;
    double pred = 0.0, best = -INFINITY;
    size_t arg = 0;
    for (size_t i = 0; i < in->n; i++) {
        double lp = in->log_post[i], h = in->harm[i];
        pred += exp(lp) * h;
        double score = h > 0.0 ? lp + log(h) : -INFINITY;
        if (score > best) {
            best = score;
            arg = i;
        }
    }
    out->bound = in->harm[arg];
    out->cautious = arg;
    out->plausible = 1;
    out->posterior_predictive = pred;
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
    .name = "iid",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_ESTIMATOR,
    .description = "cautious theory: harm of argmax P(h|D)·P(harm|x,h) (asymptotic, iid data)",
    .vt.estimator = &vtbl,
};

BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void);
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void)
{
    return &desc;
}
