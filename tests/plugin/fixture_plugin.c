/*
 * fixture_plugin.c — one source, many fixture plugins. tests/plugin's
 * CMakeLists builds it as real .so files with different FX_* definitions:
 * a good hypothesis model (fx_model), a good estimator (fx_est, in two
 * versions for the replaced-.so test), and one plugin per load failure
 * (wrong major, newer minor, short descriptor, no entry symbol, NULL vtable
 * entry, failing create). Includes only the public plugin ABI, like any
 * third-party plugin.
 *
 * FX_KIND 1 = hypothesis, 2 = estimator, 3 = sampler. FX_NAME, FX_VERSION
 * strings. FX_UNBOUNDED: the model enumerates nothing (count() = 0) and
 * describes n-bit ids with space(), so a policy needs a sampler.
 * FX_BOUND: the estimator's constant bound (so a test can tell versions
 * apart by behaviour, not only by the version string).
 *
 * The ABI answers of plugin.h ("Compatibility"), one fixture each:
 * FX_MINOR_PLUS=k declares this header's minor + k (a plugin from a newer
 * header on this host); FX_DECLARE_MINOR=m declares m through
 * BG_PLUGIN_DESC_HEAD_MINOR; FX_DESC_SPARE / FX_VT_SPARE fill a spare slot;
 * FX_NULL_HARM leaves the model's harm NULL; FX_OLD_SYMBOLS sets the 1.4
 * entry `symbols` (declare an older minor with it: refused); FX_OPEN_BOUND makes the
 * model's `rate` (0, 1] (a 1.1 flag); FX_CONTRACT makes the model's log_lik
 * follow the observation's value (1: only the last hypothesis possible,
 * 2: every hypothesis impossible, 3: NaN) and its label longer than any
 * buffer (truncated by snprintf).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/plugin.h"

#ifndef FX_KIND
#define FX_KIND 2
#endif
#ifndef FX_NAME
#define FX_NAME "fx_est"
#endif
#ifndef FX_VERSION
#define FX_VERSION "1"
#endif
#ifndef FX_BOUND
#define FX_BOUND 0.25
#endif

#if FX_KIND == 1
/* ------------------------------------------------ hypothesis: fx_model */
typedef struct fx_model {
    int64_t n;
    double rate;
    int mode;
    int flag;
    char tag[16];
    double weights[8];
    size_t n_weights;
} fx_model;

#ifdef FX_OPEN_BOUND
#define FX_RATE_TYPE (BG_CFGV_DOUBLE | BG_CFGV_MIN_OPEN)
#else
#define FX_RATE_TYPE BG_CFGV_DOUBLE
#endif

static const bg_cfg_entry fx_cfg[] = {
    {.key = "n",
     .type = BG_CFGV_INT,
     .def = "4",
     .offset = offsetof(fx_model, n),
     .min = 1,
     .max = 1000,
     .desc = "number of hypotheses"},
    {.key = "rate",
     .type = FX_RATE_TYPE,
     .def = "0.1",
     .offset = offsetof(fx_model, rate),
     .min = 0,
     .max = 1,
     .desc = "harm rate scale"},
    {.key = "mode",
     .type = BG_CFGV_ENUM,
     .def = "fast",
     .offset = offsetof(fx_model, mode),
     .choices = "fast|slow",
     .desc = "speed"},
    {.key = "flag",
     .type = BG_CFGV_BOOL,
     .def = "false",
     .offset = offsetof(fx_model, flag),
     .min = 1,
     .max = 0,
     .desc = "a flag"},
    {.key = "tag",
     .type = BG_CFGV_STRING,
     .def = "none",
     .offset = offsetof(fx_model, tag),
     .size = 16,
     .min = 1,
     .max = 0,
     .desc = "a label"},
    {.key = "weights",
     .type = BG_CFGV_DOUBLES,
     .def = "[1, 2]",
     .offset = offsetof(fx_model, weights),
     .size = 8,
     .count_offset = offsetof(fx_model, n_weights),
     .min = -10,
     .max = 10,
     .desc = "weights"},
};

static int m_create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    fx_model *m = calloc(1, sizeof *m);
    if (!m)
        return BG_PLUGIN_ENOMEM;
    int rc = host->cfg_apply(host->host_ctx, config, fx_cfg, sizeof fx_cfg / sizeof fx_cfg[0], m);
    if (rc == BG_PLUGIN_OK && m->mode == 1 && m->n > 100)
        rc = host->cfg_error(host->host_ctx, host->cfg_get(config, "n"),
                             "n must be at most 100 in slow mode, got %lld", (long long)m->n);
    if (rc != BG_PLUGIN_OK) {
        free(m);
        return rc;
    }
    *out = m;
    return BG_PLUGIN_OK;
}

static void m_destroy(void *self)
{
    free(self);
}

static uint64_t m_count(const void *self)
{
#ifdef FX_UNBOUNDED
    (void)self;
    return 0; /* ids encode n bits: needs a sampler */
#else
    return (uint64_t)((const fx_model *)self)->n;
#endif
}

#ifdef FX_UNBOUNDED
static int m_space(const void *self, bg_space *out)
{
    out->n_bits = (uint32_t)((const fx_model *)self)->n;
    out->flags = 0;
    return BG_PLUGIN_OK;
}
#endif

static double m_harm1(const fx_model *m, uint64_t h)
{
    return m->rate * (double)(h + 1) / (double)m->n;
}

static int m_log_prior(const void *self, const uint64_t *h, size_t n, double *out)
{
    (void)self;
    (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.0;
    return BG_PLUGIN_OK;
}

static int m_log_lik(const void *self, const bg_observation *obs, const bg_observation *hist,
                     size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)hist;
    (void)n_hist;
#ifdef FX_CONTRACT
    if (obs->has_value) {
        uint64_t last = (uint64_t)((const fx_model *)self)->n - 1;
        for (size_t i = 0; i < n; i++)
            out[i] = obs->value == 1   ? (h[i] == last ? 0.0 : -INFINITY)
                     : obs->value == 2 ? -INFINITY
                                       : NAN;
        return BG_PLUGIN_OK;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        double p = m_harm1(self, h[i]);
        out[i] = obs->harmed ? log(p) : log1p(-p);
    }
    return BG_PLUGIN_OK;
}

#ifndef FX_NULL_HARM
static int m_harm(const void *self, const bg_action *a, const bg_observation *hist, size_t n_hist,
                  const uint64_t *h, size_t n, double *out)
{
    (void)a;
    (void)hist;
    (void)n_hist;
    for (size_t i = 0; i < n; i++)
        out[i] = m_harm1(self, h[i]);
    return BG_PLUGIN_OK;
}
#endif

static int m_label(const void *self, uint64_t h, char *buf, size_t len)
{
#ifdef FX_CONTRACT
    char pad[301];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(buf, len, "h=%llu %s", (unsigned long long)h, pad); /* truncates, terminates */
    (void)self;
#else
    snprintf(buf, len, "h=%llu/%lld", (unsigned long long)h,
             (long long)((const fx_model *)self)->n);
#endif
    return BG_PLUGIN_OK;
}

#ifdef FX_OLD_SYMBOLS
static int m_symbols(const void *self, bg_space_symbols *out)
{
    (void)self;
    (void)out;
    return BG_PLUGIN_EUNSUPPORTED;
}
#endif

static const bg_hypothesis_vtbl fx_vt = {
    .create = m_create,
    .destroy = m_destroy,
    .count = m_count,
#ifdef FX_UNBOUNDED
    .space = m_space,
#endif
    .log_prior = m_log_prior,
    .log_lik = m_log_lik,
#ifndef FX_NULL_HARM
    .harm = m_harm,
#endif
#ifdef FX_OLD_SYMBOLS /* a 1.3 plugin filling what was spare[0] before 1.4 */
    .symbols = m_symbols,
#endif
#ifndef FX_NULL_VT
    .label = m_label,
#else
    .label = NULL,
    .check_action = NULL,
    .spare = {(void *)m_label}, /* keep m_label used; label itself left NULL */
#endif
};
#define FX_VT .vt.hypothesis = &fx_vt
#define FX_KIND_ENUM BG_PLUGIN_KIND_HYPOTHESIS
#define FX_CFG fx_cfg, .config_map_len = sizeof fx_cfg / sizeof fx_cfg[0]

#elif FX_KIND == 3
/* ------------------------------------------------- sampler: fx_sampler */
typedef struct fx_sampler {
    double temperature;
    uint32_t n_bits;
} fx_sampler;

static const bg_cfg_entry fx_cfg[] = {
    {.key = "temperature",
     .type = BG_CFGV_DOUBLE,
     .def = "1",
     .min = 0.01,
     .max = 100,
     .offset = offsetof(fx_sampler, temperature),
     .desc = "sampling temperature"},
};

static int s_create(const bg_host *host, const bg_cfg_node *config, const bg_space *space,
                    void **out)
{
    fx_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return BG_PLUGIN_ENOMEM;
    int rc = host->cfg_apply(host->host_ctx, config, fx_cfg, sizeof fx_cfg / sizeof fx_cfg[0], s);
    if (rc != BG_PLUGIN_OK) {
        free(s);
        return rc;
    }
    s->n_bits = space->n_bits;
    *out = s;
    return BG_PLUGIN_OK;
}

static void s_destroy(void *self)
{
    free(self);
}

static int s_train(void *self, bg_log_reward_fn reward, void *ctx, uint32_t steps)
{
    (void)self;
    (void)reward;
    (void)ctx;
    (void)steps;
    return BG_PLUGIN_OK;
}

static int s_sample(const void *self, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    const fx_sampler *s = self;
    (void)rng;
    for (size_t i = 0; i < n; i++) {
        ids[i] = i & ((s->n_bits >= 64 ? 0 : (1ULL << s->n_bits)) - 1);
        if (log_q)
            log_q[i] = -(double)s->n_bits * log(2.0);
    }
    return BG_PLUGIN_OK;
}

static const bg_sampler_vtbl fx_vt = {
    .create = s_create,
    .destroy = s_destroy,
    .train = s_train,
    .sample = s_sample,
};
#define FX_VT .vt.sampler = &fx_vt
#define FX_KIND_ENUM BG_PLUGIN_KIND_SAMPLER
#define FX_CFG fx_cfg, .config_map_len = sizeof fx_cfg / sizeof fx_cfg[0]

#else
/* ------------------------------------------------- estimator: fx_est */
typedef struct fx_est {
    double alpha, delta, prior_floor;
} fx_est;

static const bg_cfg_entry fx_cfg[] = {
    {.key = "alpha",
     .type = BG_CFGV_DOUBLE,
     .def = "0",
     .offset = offsetof(fx_est, alpha),
     .min = 0,
     .max = 1,
     .desc = "alpha (0 = delta*prior_floor)"},
    {.key = "delta",
     .type = BG_CFGV_DOUBLE,
     .def = "0.05",
     .offset = offsetof(fx_est, delta),
     .min = 0,
     .max = 1,
     .desc = "delta"},
    {.key = "prior_floor",
     .type = BG_CFGV_DOUBLE,
     .def = "1e-4",
     .offset = offsetof(fx_est, prior_floor),
     .min = 0,
     .max = 1,
     .desc = "prior floor"},
};

static int e_create(const bg_host *host, const bg_cfg_node *config, void **out)
{
#ifdef FX_FAIL_CREATE
    (void)config;
    (void)out;
    return host->cfg_error(host->host_ctx, NULL, "refusing to start: fixture fails on purpose");
#else
    fx_est *e = calloc(1, sizeof *e);
    if (!e)
        return BG_PLUGIN_ENOMEM;
    int rc = host->cfg_apply(host->host_ctx, config, fx_cfg, sizeof fx_cfg / sizeof fx_cfg[0], e);
    if (rc != BG_PLUGIN_OK) {
        free(e);
        return rc;
    }
    if (e->alpha == 0)
        e->alpha = e->delta * e->prior_floor;
    host->metric_add(host->host_ctx, "created", 1);
    *out = e;
    return BG_PLUGIN_OK;
#endif
}

static void e_destroy(void *self)
{
    free(self);
}

static double e_order_needed(const void *self)
{
    return ((const fx_est *)self)->alpha;
}

static int e_estimate(const void *self, const bg_estimate_in *in, bg_estimate_out *out)
{
    (void)self;
    double pp = 0;
    for (size_t i = 0; i < in->n; i++)
        pp += exp(in->log_post[i]) * in->harm[i];
    out->bound = FX_BOUND;
    out->cautious = 0;
    out->plausible = in->n;
    out->posterior_predictive = pp;
    return BG_PLUGIN_OK;
}

static const bg_estimator_vtbl fx_vt = {
    .create = e_create,
    .destroy = e_destroy,
    .order_needed = e_order_needed,
#if !defined(FX_NULL_VT)
    .estimate = e_estimate,
#endif
#if defined(FX_NULL_VT) || defined(FX_VT_SPARE)
    .spare = {(void *)e_estimate},
#endif
};
#define FX_VT .vt.estimator = &fx_vt
#define FX_KIND_ENUM BG_PLUGIN_KIND_ESTIMATOR
#define FX_CFG fx_cfg, .config_map_len = sizeof fx_cfg / sizeof fx_cfg[0]
#endif

/* ------------------------------------------------------ the descriptor */

#ifdef FX_DECLARE_MINOR
#define FX_HEAD BG_PLUGIN_DESC_HEAD_MINOR(FX_DECLARE_MINOR)
#else
#define FX_HEAD BG_PLUGIN_DESC_HEAD
#endif

static const bg_plugin_desc fx_desc = {
    FX_HEAD,
    .name = FX_NAME,
    .version = FX_VERSION,
    .kind = FX_KIND_ENUM,
    .description = "test fixture",
    .config_map = FX_CFG,
    FX_VT,
#ifdef FX_DESC_SPARE
    .spare = {(void *)"a 1.1 plugin has no use for this slot"},
#endif
};

#ifndef FX_NO_ENTRY
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void);
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry(void)
{
#if defined(FX_ABI_MAJOR) || defined(FX_MINOR_PLUS) || defined(FX_DESC_SIZE)
    static bg_plugin_desc d;
    d = fx_desc;
#ifdef FX_ABI_MAJOR
    d.abi_major = FX_ABI_MAJOR;
#endif
#ifdef FX_MINOR_PLUS
    d.abi_minor = BG_PLUGIN_ABI_MINOR + FX_MINOR_PLUS; /* only older features used */
#endif
#ifdef FX_DESC_SIZE
    d.desc_size = FX_DESC_SIZE;
#endif
    return &d;
#else
    return &fx_desc;
#endif
}
#else
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry_misspelled(void);
BG_PLUGIN_EXPORT const bg_plugin_desc *bg_plugin_entry_misspelled(void)
{
    return &fx_desc;
}
#endif
