/*
 * estimate.c — what becomes a verdict, checked: an estimator's output and
 * the cautious hypothesis's label, on both paths (the enumerated one in engine.c, the sampled one
 * in sampled_score.c): a file of its own, below both, so neither calls back into the other
 * (engine.h: bg_estimate_out_init / _check).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"

void bg_estimate_out_init(bg_estimate_out *eo)
{
    eo->bound = NAN;
    eo->cautious = SIZE_MAX;
    eo->plausible = 0;
    eo->posterior_predictive = NAN;
}

/* 1e-9: a sum of n probabilities times harms may pass 1 by rounding. */
int bg_estimate_out_check(const bg_guard *g, const bg_estimate_out *eo, size_t n, bg_err *err)
{
    if (eo->bound >= 0.0 && eo->bound <= 1.0 && eo->cautious < n && eo->plausible >= 1 &&
        eo->plausible <= n && eo->posterior_predictive >= 0.0 &&
        eo->posterior_predictive <= 1.0 + 1e-9)
        return BG_OK;
    return bg_err_set(err, BG_EINTERNAL,
                      "policy %s: estimator %s: bound %g, cautious index %zu, plausible-set "
                      "size %llu, posterior predictive %g over %zu candidates; expected "
                      "probabilities, an index below %zu and a size in 1..%zu (the estimator "
                      "plugin returned OK with output it did not fill or got wrong)",
                      g->name, g->estimator_name ? g->estimator_name : "?", eo->bound, eo->cautious,
                      (unsigned long long)eo->plausible, eo->posterior_predictive, n, n, n);
}

void bg_hypothesis_label(const bg_guard *g, uint64_t id, char *buf, size_t len)
{
    buf[0] = '\0';
    if (g->model->label && g->model->label(g->model_inst, id, buf, len) == BG_PLUGIN_OK) {
        buf[len - 1] = '\0'; /* plugin.h asks the plugin to; a verdict never relies on it */
        return;
    }
    snprintf(buf, len, "#%llu", (unsigned long long)id);
}
