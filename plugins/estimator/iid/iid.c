/*
 * iid.c — estimator plugin: the cautious theory (Prop 3.4 of Bengio et al.).
 *
 *   τ = argmax_τ P(τ|D)·P(H|x,τ), first index wins a tie;  bound = P(H|x,τ).
 *
 * The products P·harm are compared in linear space over the engine's
 * `post` array (one pass, no exp/log per hypothesis); if every product
 * underflows to 0 the scan is redone in log space (log P + log harm), so
 * posteriors of 1e-300 still compare. A hypothesis with harm 0 never wins
 * unless all harms are 0, and then the first index wins (bound 0). The
 * guarantee is asymptotic: P(H|x,τ*) <= bound / P(τ*|D), so the bound holds once
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

/* argmax P·harm, first index on ties; *pred = Σ P·harm. Linear products
 * first (one pass, no exp/log); only when every product underflowed to 0
 * does it rescan in log space, where tiny products still compare. */
static size_t cautious_theory(const bg_estimate_in *in, double *pred)
{
    double sum = 0.0, best = 0.0;
    size_t arg = 0;
    for (size_t i = 0; i < in->n; i++) {
        double prod = in->post[i] * in->harm[i];
        sum += prod;
        if (prod > best) {
            best = prod;
            arg = i;
        }
    }
    *pred = sum;
    if (best > 0.0)
        return arg;
    double lbest = -INFINITY;
    for (size_t i = 0; i < in->n; i++) {
        double score = in->harm[i] > 0.0 ? in->log_post[i] + log(in->harm[i]) : -INFINITY;
        if (score > lbest) {
            lbest = score;
            arg = i;
        }
    }
    return arg;
}

static int estimate(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self;
    if (in->n == 0 || !in->post)
        return BG_PLUGIN_EINVAL;
    double pred;
    size_t arg = cautious_theory(in, &pred);
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

BG_PLUGIN_REGISTER(desc)
