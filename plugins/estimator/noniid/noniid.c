/*
 * noniid.c — estimator plugin: the plausible-set bound (Prop 4.6 of Bengio
 * et al., "Can a Bayesian Oracle Prevent Harm from an Agent?").
 *
 * Walk the hypotheses in the engine's posterior order (descending, ties in
 * ascending index), with S_k the cumulative mass of the first k inclusive;
 * keep number k iff P(i_k|Z) >= α·S_k. Because P decreases and S increases
 * along the walk, the kept ones are a prefix: the walk stops at the first
 * failure. The top one is always kept. Bound = max harm over the kept set;
 * the cautious hypothesis is the first kept one (in walk order) reaching it.
 *
 * Cost: one sequential pass over posterior and harm for the predictive
 * (the engine hands linear probabilities, so no exp per hypothesis), plus
 * the walk over the kept prefix, random access through the order with
 * software prefetch. For a concentrated posterior the walk is a few
 * entries; for a plausible set of 10^5 it costs about as much again as
 * the pass (docs/PERFORMANCE.md, ## Engine).
 *
 * Tolerance: the comparison is P_k >= α·S_k·(1 − 1e-12). The slack only
 * ever adds a hypothesis sitting on the boundary up to rounding (e.g.
 * α = 2/7 with P = 0.2, S = 0.7 computed from logs), which makes the set
 * larger and the bound more cautious, never smaller: the guarantee holds.
 *
 * α: config `alpha` directly, or `delta` and `prior_floor` with
 * α = δ·prior_floor (prior_floor a lower bound on P(i*), 1/N for a uniform
 * prior over N). Exactly one of the two forms.
 *
 * The engine orders at least every hypothesis with P >= α·max P (see
 * daemon/engine/posterior.h), which contains the kept prefix since
 * S_k >= max P; order_needed returns α.
 *
 * Threads: estimate is pure. Ownership: the instance is malloc'd by create.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"

#define SLACK 1e-12

typedef struct noniid_cfg {
    double alpha;
    double delta;
    double prior_floor;
} noniid_cfg;

typedef struct noniid {
    double alpha;
} noniid;

static const bg_cfg_entry cfg_map[] = {
    {.key = "alpha",
     .type = BG_CFGV_DOUBLE,
     .def = "0",
     .offset = offsetof(noniid_cfg, alpha),
     .min = 0,
     .max = 1,
     .desc = "plausibility level α in [0,1] (alone; not with delta)"},
    {.key = "delta",
     .type = BG_CFGV_DOUBLE,
     .def = "0.05",
     .offset = offsetof(noniid_cfg, delta),
     .min = 0,
     .max = 1,
     .desc = "failure probability δ; α = δ·prior_floor (with prior_floor)"},
    /* (0, 1]: a floor of 0 would make α = 0 and the bound vacuous. The
     * default is never used (prior_floor goes with delta, both given). */
    {.key = "prior_floor",
     .type = BG_CFGV_DOUBLE | BG_CFGV_MIN_OPEN,
     .def = "1",
     .offset = offsetof(noniid_cfg, prior_floor),
     .min = 0,
     .max = 1,
     .desc = "declared lower bound on P(i*) (1/N for a uniform prior); with delta"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    noniid_cfg c;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &c);
    if (rc != BG_PLUGIN_OK)
        return rc;
    const bg_cfg_node *na = config ? host->cfg_get(config, "alpha") : NULL;
    const bg_cfg_node *nd = config ? host->cfg_get(config, "delta") : NULL;
    const bg_cfg_node *np = config ? host->cfg_get(config, "prior_floor") : NULL;
    if (na && (nd || np))
        return host->cfg_error(host->host_ctx, nd ? nd : np,
                               "give either `alpha` or `delta` with `prior_floor`, not both");
    if (!na && !(nd && np))
        return host->cfg_error(host->host_ctx,
                               nd   ? nd
                               : np ? np
                                    : config,
                               "missing `%s`: give `alpha`, or `delta` and `prior_floor` "
                               "(α = δ·prior_floor)",
                               nd   ? "prior_floor"
                               : np ? "delta"
                                    : "alpha");
    noniid *self = malloc(sizeof *self);
    if (!self)
        return BG_PLUGIN_ENOMEM;
    self->alpha = na ? c.alpha : c.delta * c.prior_floor;
    *out = self;
    return BG_PLUGIN_OK;
}

static void destroy(void *self)
{
    free(self);
}

static double order_needed(const void *vself)
{
    return ((const noniid *)vself)->alpha;
}

#define PREFETCH_AHEAD 16

static int estimate(const void *vself, const bg_estimate_in *in, bg_estimate_out *out)
{
    const noniid *self = vself;
    if (in->n == 0 || in->n_order == 0 || !in->post)
        return BG_PLUGIN_EINVAL;
    double s = 0.0, best = -1.0;
    size_t cautious = in->order[0];
    uint64_t kept = 0;
    for (size_t k = 0; k < in->n_order; k++) {
        if (k + PREFETCH_AHEAD < in->n_order) {
            /* The walk is random access through the order: hide latency. */
            __builtin_prefetch(&in->post[in->order[k + PREFETCH_AHEAD]]);
            __builtin_prefetch(&in->harm[in->order[k + PREFETCH_AHEAD]]);
        }
        size_t i = in->order[k];
        double p = in->post[i];
        s += p;
        if (k > 0 && !(p >= self->alpha * s * (1.0 - SLACK)))
            break;
        kept++;
        if (in->harm[i] > best) {
            best = in->harm[i];
            cautious = i;
        }
    }
    out->bound = best;
    out->cautious = cautious;
    out->plausible = kept;
    out->posterior_predictive = bg_posterior_predictive(in->post, in->harm, in->n);
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
    .name = "noniid",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_ESTIMATOR,
    .description = "plausible-set bound: max harm over I^α (anytime-valid, any data dependence)",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.estimator = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
