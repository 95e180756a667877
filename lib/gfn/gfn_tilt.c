/*
 * gfn_tilt.c — the harm-tilted reward log R_x(h) = log R(h) + log P(H|x,h),
 * a hypothesis plugin's harm as its harm callback, and the warm start of a
 * tilted sampler from a posterior sampler (gfn_tilt.h says why and the
 * zero-harm floor).
 *
 * The harm is computed in chunks of TILT_CHUNK ids into a stack buffer, so
 * the reward allocates nothing and needs no cleanup.
 *
 * Threads: see gfn_tilt.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gfn_priv.h"
#include "gfn_tilt.h"

#define TILT_CHUNK 256

int bg_gfn_tilt_reward(void *ctx, const uint64_t *h, size_t n, double *out)
{
    bg_gfn_tilt *t = ctx;
    int rc = t->base(t->base_ctx, h, n, out);
    if (rc != BG_PLUGIN_OK)
        return rc;
    double harm[TILT_CHUNK];
    for (size_t at = 0; at < n; at += TILT_CHUNK) {
        size_t m = n - at < TILT_CHUNK ? n - at : TILT_CHUNK;
        rc = t->harm(t->harm_ctx, h + at, m, harm);
        t->harm_evals += m;
        if (rc != BG_PLUGIN_OK)
            return rc;
        for (size_t i = 0; i < m; i++) {
            if (!(harm[i] >= 0.0 && harm[i] <= 1.0)) /* also NaN */
                return BG_PLUGIN_EINVAL;
            double lh = harm[i] > 0 ? log(harm[i]) : BG_GFN_TILT_LOG_HARM_FLOOR;
            out[at + i] += lh > BG_GFN_TILT_LOG_HARM_FLOOR ? lh : BG_GFN_TILT_LOG_HARM_FLOOR;
        }
    }
    return BG_PLUGIN_OK;
}

int bg_gfn_model_harm(void *ctx, const uint64_t *h, size_t n, double *out)
{
    const bg_gfn_model_harm_ctx *m = ctx;
    return m->vt->harm(m->inst, m->action, m->history, m->n_hist, h, n, out);
}

int bg_gfn_copy_params(bg_gfn *dst, const bg_gfn *src, char *errbuf, size_t errlen)
{
    const bg_gfn_config *a = &dst->cfg, *b = &src->cfg;
    if (a->n_bits != b->n_bits || a->hidden != b->hidden || a->n_hidden != b->n_hidden ||
        dst->n_params != src->n_params) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen,
                     "gfn copy_params: source has d=%u, %u×%u hidden; destination d=%u, "
                     "%u×%u; expected the same shape",
                     b->n_bits, b->n_hidden, b->hidden, a->n_bits, a->n_hidden, a->hidden);
        return BG_PLUGIN_EINVAL;
    }
    memcpy(dst->params, src->params, dst->n_params * sizeof *dst->params);
    memset(dst->adam_m, 0, dst->n_params * sizeof *dst->adam_m);
    memset(dst->adam_v, 0, dst->n_params * sizeof *dst->adam_v);
    return BG_PLUGIN_OK;
}
