/*
 * cheating.c — estimator plugin for experiments only: the harm under the
 * true hypothesis, which the experiment knows (config `true_hypothesis`).
 * A policy serving real traffic has no use for it.
 *
 * Threads: estimate is pure. Ownership: instance malloc'd by create.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"

typedef struct cheating_cfg {
    int64_t true_hypothesis;
} cheating_cfg;

static const bg_cfg_entry cfg_map[] = {
    {.key = "true_hypothesis",
     .type = BG_CFGV_INT,
     .def = NULL,
     .offset = offsetof(cheating_cfg, true_hypothesis),
     .min = 0,
     .max = 9.2e18,
     .desc = "id of the true hypothesis (required)"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    cheating_cfg c;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &c);
    if (rc != BG_PLUGIN_OK)
        return rc;
    cheating_cfg *self = malloc(sizeof *self);
    if (!self)
        return BG_PLUGIN_ENOMEM;
    *self = c;
    *out = self;
    return BG_PLUGIN_OK;
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

static int estimate(const void *vself, const bg_estimate_in *in, bg_estimate_out *out)
{
    const cheating_cfg *self = vself;
    uint64_t want = (uint64_t)self->true_hypothesis;
    size_t at = 0;
    if (!in->post)
        return BG_PLUGIN_EINVAL;
    while (at < in->n && in->ids[at] != want)
        at++;
    if (at == in->n)
        return BG_PLUGIN_EINVAL; /* the true hypothesis is not a candidate */
    out->bound = in->harm[at];
    out->cautious = at;
    out->plausible = 1;
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
    .name = "cheating",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_ESTIMATOR,
    .description = "experiments only: harm under the known true hypothesis",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.estimator = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
