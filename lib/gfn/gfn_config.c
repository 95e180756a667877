/*
 * gfn_config.c — defaults and validation of a GFlowNet training config.
 *
 * The defaults are conservative (constant lr 1e-3, since a decay horizon
 * depends on the training budget); the benchmark (bench/gfn) and the
 * sampler plugin use lr 1e-2 decayed to 1e-5 over the run, which is what
 * reached TV ≤ 0.02 at d = 10 (docs/GFLOWNET.md). Validation names the
 * field, the value and the allowed range, so the plugin can pass the
 * message on to `bayesguard check`.
 *
 * Threads: pure functions.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gfn.h"

const char *bg_gfn_loss_name(bg_gfn_loss loss)
{
    switch (loss) {
#define BG_GFN_LOSS_CASE(name, value, text)                                                        \
    case name:                                                                                     \
        return text;
        BG_GFN_LOSSES(BG_GFN_LOSS_CASE)
#undef BG_GFN_LOSS_CASE
    }
    return "?";
}

void bg_gfn_config_default(bg_gfn_config *c, uint32_t n_bits)
{
    memset(c, 0, sizeof *c);
    c->n_bits = n_bits;
    c->min_len = 0;
    c->max_len = n_bits;
    c->hidden = 128;
    c->n_hidden = 2;
    c->loss = BG_GFN_LOSS_SUBTB;
    c->lambda = 1.0;
    c->lr = 1e-3;
    c->lr_logz = 0.3;
    c->lr_end = 1e-3;
    c->lr_horizon = 0;
    c->lr_restart = 0;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->grad_clip = 10.0;
    c->batch = 16;
    c->p_replay = 0.25;
    c->p_tempered = 0.25;
    c->temp_lo = 0.5;
    c->temp_hi = 2.0;
    c->epsilon = 0.0;
    c->replay_capacity = 100;
    c->reward_temp_start = 1.0;
    c->reward_temp_end = 1.0;
    c->reward_temp_horizon = 0;
    c->init_logz = 0.0;
    c->logz_from_batch = 1;
    c->seed = 1;
}

static int bad(char *errbuf, size_t errlen, const char *field, double v, const char *expect)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "gfn config: %s = %g is out of range; expected %s", field, v,
                 expect);
    return BG_PLUGIN_EINVAL;
}

/* v in [lo, hi] (finite) */
static int in_range(double v, double lo, double hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

int bg_gfn_config_check(const bg_gfn_config *c, char *errbuf, size_t errlen)
{
    if (c->n_bits < 1 || c->n_bits > BG_GFN_MAX_BITS)
        return bad(errbuf, errlen, "n_bits", c->n_bits, "1..64");
    if (c->max_len < 1 || c->max_len > c->n_bits)
        return bad(errbuf, errlen, "max_len", c->max_len, "1..n_bits");
    if (c->min_len > c->max_len)
        return bad(errbuf, errlen, "min_len", c->min_len, "0..max_len");
    if (c->hidden < 1 || c->hidden > 4096)
        return bad(errbuf, errlen, "hidden", c->hidden, "1..4096");
    if (c->n_hidden < 1 || c->n_hidden > BG_GFN_MAX_HIDDEN_LAYERS)
        return bad(errbuf, errlen, "n_hidden", c->n_hidden, "1..4");
    if (c->loss != BG_GFN_LOSS_TB && c->loss != BG_GFN_LOSS_SUBTB && c->loss != BG_GFN_LOSS_DB)
        return bad(errbuf, errlen, "loss", c->loss, "tb (0), subtb (1) or db (2)");
    if (!in_range(c->lambda, 1e-6, 1e3))
        return bad(errbuf, errlen, "lambda", c->lambda, "1e-6..1e3");
    if (!in_range(c->lr, 1e-9, 1.0) || !in_range(c->lr_logz, 0.0, 10.0))
        return bad(errbuf, errlen, "lr/lr_logz", c->lr, "lr in 1e-9..1, lr_logz in 0..10");
    if (c->lr_horizon > 0 && !in_range(c->lr_end, 1e-12, c->lr))
        return bad(errbuf, errlen, "lr_end", c->lr_end, "1e-12..lr");
    if (c->lr_restart > 1)
        return bad(errbuf, errlen, "lr_restart", c->lr_restart, "0 or 1");
    if (!in_range(c->beta1, 0.0, 0.999999) || !in_range(c->beta2, 0.0, 0.999999) ||
        !in_range(c->adam_eps, 1e-300, 1.0))
        return bad(errbuf, errlen, "beta1/beta2/adam_eps", c->beta1, "betas in [0,1), eps > 0");
    if (!in_range(c->grad_clip, 0.0, 1e12))
        return bad(errbuf, errlen, "grad_clip", c->grad_clip, "0 (off) or > 0");
    if (c->batch < 1 || c->batch > 65536)
        return bad(errbuf, errlen, "batch", c->batch, "1..65536");
    if (!in_range(c->p_replay, 0.0, 1.0) || !in_range(c->p_tempered, 0.0, 1.0) ||
        c->p_replay + c->p_tempered > 1.0)
        return bad(errbuf, errlen, "p_replay + p_tempered", c->p_replay + c->p_tempered,
                   "each in [0,1], sum <= 1");
    if (!in_range(c->temp_lo, 1e-3, 1e3) || !in_range(c->temp_hi, c->temp_lo, 1e3))
        return bad(errbuf, errlen, "temp_lo/temp_hi", c->temp_lo, "0.001 <= lo <= hi <= 1000");
    if (!in_range(c->epsilon, 0.0, 1.0))
        return bad(errbuf, errlen, "epsilon", c->epsilon, "0..1");
    if (c->replay_capacity > 1000000)
        return bad(errbuf, errlen, "replay_capacity", c->replay_capacity, "0..1000000");
    if (!in_range(c->reward_temp_start, 1e-3, 1e3) || !in_range(c->reward_temp_end, 1e-3, 1e3))
        return bad(errbuf, errlen, "reward_temp_start/end", c->reward_temp_start, "0.001..1000");
    if (c->logz_from_batch > 1)
        return bad(errbuf, errlen, "logz_from_batch", c->logz_from_batch, "0 or 1");
    if (!in_range(c->init_logz, -1e6, 1e6))
        return bad(errbuf, errlen, "init_logz", c->init_logz, "finite");
    return BG_PLUGIN_OK;
}
