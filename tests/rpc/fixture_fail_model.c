/*
 * fixture_fail_model.c — a hypothesis-model plugin for the RPC tests that
 * fails on request: harm() returns BG_PLUGIN_EINTERNAL when the action's
 * first feature is negative, BG_PLUGIN_ELIMIT when it is -100 or less (a
 * plugin at a limit an agent can reach, as the language-model service's
 * full queue, plugin_lm.c). It lets the tests drive the engine's internal
 * error path through the real daemon: INTERNAL (never a decision) under
 * on_error: deny, ALLOW with on_error_allowed under on_error: allow.
 * Two hypotheses, harm rates 0.1 and 0.2, flat prior; no config.
 * Built into tests/rpc's own plugin folder, never into the product's.
 */
#include <stdio.h>

#include "bayesguard/plugin.h"

static int dummy;

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    (void)host;
    (void)config;
    *out = &dummy;
    return BG_PLUGIN_OK;
}

static void destroy(void *self)
{
    (void)self;
}

static uint64_t count(const void *self)
{
    (void)self;
    return 2;
}

static int log_prior(const void *self, const uint64_t *h, size_t n, double *out)
{
    (void)self;
    (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.0;
    return BG_PLUGIN_OK;
}

static int log_lik(const void *self, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self;
    (void)obs;
    (void)history;
    (void)n_hist;
    (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.0;
    return BG_PLUGIN_OK;
}

static int harm(const void *self, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)self;
    (void)history;
    (void)n_hist;
    if (action->n_features > 0 && action->features[0] <= -100)
        return BG_PLUGIN_ELIMIT;
    if (action->n_features > 0 && action->features[0] < 0)
        return BG_PLUGIN_EINTERNAL;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.1 * (double)(h[i] + 1);
    return BG_PLUGIN_OK;
}

static int label(const void *self, uint64_t h, char *buf, size_t len)
{
    (void)self;
    snprintf(buf, len, "fail-fixture-%llu", (unsigned long long)h);
    return BG_PLUGIN_OK;
}

static const bg_hypothesis_vtbl vt = {
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
    .name = "rpc_fail",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "RPC test fixture: harm fails when features[0] < 0",
    .vt.hypothesis = &vt,
};

BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void);
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void)
{
    return &desc;
}
