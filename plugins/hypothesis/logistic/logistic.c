/*
 * logistic.c — hypothesis model: Bayesian logistic regression of harm on
 * the action's numeric features.
 *
 * Hypothesis = weight vector (w_0 = bias when `bias`, then one weight per
 * feature): P(harm | x, w) = σ(w_0 + Σ_k w_k·x_k). Observations are harmed
 * / not harmed; log_lik = log σ(z) or log σ(−z), computed stably.
 *
 * Two forms (exactly one):
 *  - `grid`: every weight takes one of the listed values; ids enumerate the
 *    cartesian product with the first weight varying slowest (count =
 *    |grid|^dims, at most 2^24). Prior: independent N(0, prior_sigma²)
 *    evaluated at the grid points.
 *  - `samples`: K weight vectors drawn once from N(0, prior_sigma² I) with
 *    the host's RNG seeded by `seed` (same config → same hypotheses); each
 *    sampled vector has equal prior mass (they are draws from the prior).
 *
 * check_action rejects an action whose feature count is not `features`,
 * and one whose features are so large that a logit w·x could overflow to
 * ±inf (two of opposite sign add up to NaN: an observation no posterior
 * can take, an evaluation with no bound): |w_k| <= max_w bounds |z| by
 * max_w·(bias + Σ|x_k|), summed term by term as logit() sums.
 *
 * Threads: pure after create. Ownership: instance malloc'd by create.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"

#define MAX_GRID 64
#define MAX_DIMS 64
#define MAX_COUNT ((uint64_t)1 << 24)

typedef struct logi_cfg {
    int64_t features;
    int bias;
    double grid[MAX_GRID];
    size_t n_grid;
    int64_t samples;
    int64_t seed;
    double prior_sigma;
} logi_cfg;

typedef struct logi {
    unsigned d;    /* features */
    unsigned dims; /* d + bias */
    int bias;
    uint64_t count;
    size_t n_grid; /* grid form: values per weight; 0 for samples */
    double grid[MAX_GRID];
    double *w; /* samples form: [count × dims] */
    double prior_sigma;
    double max_w; /* the largest |weight| of any hypothesis */
} logi;

static const bg_cfg_entry cfg_map[] = {
    {.key = "features",
     .type = BG_CFGV_INT,
     .def = NULL,
     .offset = offsetof(logi_cfg, features),
     .min = 0,
     .max = MAX_DIMS - 1,
     .desc = "number of numeric features per action (required)"},
    {.key = "bias",
     .type = BG_CFGV_BOOL,
     .def = "true",
     .offset = offsetof(logi_cfg, bias),
     .desc = "include an intercept weight w_0"},
    {.key = "grid",
     .type = BG_CFGV_DOUBLES,
     .def = "",
     .offset = offsetof(logi_cfg, grid),
     .size = MAX_GRID,
     .count_offset = offsetof(logi_cfg, n_grid),
     .min = -1e6,
     .max = 1e6,
     .desc = "grid form: the values every weight may take"},
    {.key = "samples",
     .type = BG_CFGV_INT,
     .def = "0",
     .offset = offsetof(logi_cfg, samples),
     .min = 0,
     .max = (double)MAX_COUNT,
     .desc = "sample form: K weight vectors from the prior"},
    {.key = "seed",
     .type = BG_CFGV_INT,
     .def = "1",
     .offset = offsetof(logi_cfg, seed),
     .min = 0,
     .max = 9.2e18,
     .desc = "sample form: RNG seed"},
    {.key = "prior_sigma",
     .type = BG_CFGV_DOUBLE,
     .def = "1.0",
     .offset = offsetof(logi_cfg, prior_sigma),
     .min = 1e-6,
     .max = 1e6,
     .desc = "standard deviation of the Gaussian prior on each weight"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])

static void destroy(void *vself)
{
    logi *self = vself;
    if (self)
        free(self->w);
    free(self);
}

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    logi_cfg c;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &c);
    if (rc != BG_PLUGIN_OK)
        return rc;
    const bg_cfg_node *ng = host->cfg_get(config, "grid");
    const bg_cfg_node *ns = host->cfg_get(config, "samples");
    if ((ng != NULL) == (ns != NULL))
        return host->cfg_error(host->host_ctx, ng ? ng : config,
                               "give exactly one of `grid` (values per weight) or `samples` "
                               "(K draws from the prior)");
    logi *self = calloc(1, sizeof *self);
    if (!self)
        return BG_PLUGIN_ENOMEM;
    self->d = (unsigned)c.features;
    self->bias = c.bias;
    self->dims = self->d + (c.bias ? 1u : 0u);
    self->prior_sigma = c.prior_sigma;
    if (ng) {
        if (c.n_grid == 0 || self->dims == 0) {
            destroy(self);
            return host->cfg_error(host->host_ctx, ng, "`grid` is empty or there are no weights");
        }
        uint64_t cnt = 1;
        for (unsigned k = 0; k < self->dims && cnt <= MAX_COUNT; k++)
            cnt *= c.n_grid;
        if (cnt > MAX_COUNT) {
            unsigned dims = self->dims;
            destroy(self);
            return host->cfg_error(host->host_ctx, ng,
                                   "%zu grid values over %u weights is more than %llu "
                                   "hypotheses; use a coarser grid or `samples`",
                                   c.n_grid, dims, (unsigned long long)MAX_COUNT);
        }
        self->count = cnt;
        self->n_grid = c.n_grid;
        for (size_t i = 0; i < c.n_grid; i++) {
            self->grid[i] = c.grid[i];
            self->max_w = fmax(self->max_w, fabs(c.grid[i]));
        }
    } else {
        if (c.samples < 1 || self->dims == 0) {
            destroy(self);
            return host->cfg_error(host->host_ctx, ns, "`samples` must be >= 1");
        }
        self->count = (uint64_t)c.samples;
        self->w = malloc(self->count * self->dims * sizeof *self->w);
        if (!self->w) {
            destroy(self);
            return BG_PLUGIN_ENOMEM;
        }
        bg_rng rng;
        host->rng_seed(&rng, (uint64_t)c.seed);
        for (uint64_t i = 0; i < self->count * self->dims; i++) {
            self->w[i] = c.prior_sigma * host->rng_normal(&rng);
            self->max_w = fmax(self->max_w, fabs(self->w[i]));
        }
    }
    *out = self;
    return BG_PLUGIN_OK;
}

static uint64_t count(const void *vself)
{
    return ((const logi *)vself)->count;
}

/* Weight k of hypothesis h. */
static double weight(const logi *self, uint64_t h, unsigned k)
{
    if (self->w)
        return self->w[h * self->dims + k];
    uint64_t q = h;
    for (unsigned j = self->dims - 1; j > k; j--)
        q /= self->n_grid;
    return self->grid[q % self->n_grid];
}

static double logit(const logi *self, const bg_action *a, uint64_t h)
{
    double z = 0.0;
    unsigned k0 = 0;
    if (self->bias)
        z = weight(self, h, k0++);
    for (unsigned k = 0; k < self->d; k++)
        z += weight(self, h, k0 + k) * a->features[k];
    return z;
}

/* log σ(z), stable for large |z|. */
static double log_sigmoid(double z)
{
    return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z));
}

static int log_prior(const void *vself, const uint64_t *h, size_t n, double *out)
{
    const logi *self = vself;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->count)
            return BG_PLUGIN_EINVAL;
        double s = 0.0;
        if (!self->w)
            for (unsigned k = 0; k < self->dims; k++) {
                double v = weight(self, h[i], k) / self->prior_sigma;
                s -= 0.5 * v * v;
            }
        out[i] = s;
    }
    return BG_PLUGIN_OK;
}

static int log_lik(const void *vself, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const logi *self = vself;
    (void)history;
    (void)n_hist;
    if (obs->action.n_features != self->d)
        return BG_PLUGIN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->count)
            return BG_PLUGIN_EINVAL;
        double z = logit(self, &obs->action, h[i]);
        out[i] = log_sigmoid(obs->harmed ? z : -z);
    }
    return BG_PLUGIN_OK;
}

static int harm(const void *vself, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const logi *self = vself;
    (void)history;
    (void)n_hist;
    if (action->n_features != self->d)
        return BG_PLUGIN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->count)
            return BG_PLUGIN_EINVAL;
        out[i] = exp(log_sigmoid(logit(self, action, h[i])));
    }
    return BG_PLUGIN_OK;
}

static int label(const void *vself, uint64_t h, char *buf, size_t len)
{
    const logi *self = vself;
    if (h >= self->count || len < 8)
        return BG_PLUGIN_EINVAL;
    size_t used = (size_t)snprintf(buf, len, "w=(");
    for (unsigned k = 0; k < self->dims && used < len; k++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s%.3g", k ? "," : "", weight(self, h, k));
    if (used < len)
        snprintf(buf + used, len - used, ")");
    return BG_PLUGIN_OK;
}

static int check_action(const void *vself, const bg_action *a, char *buf, size_t len)
{
    const logi *self = vself;
    if (a->n_features != self->d) {
        snprintf(buf, len, "action has %zu features; this model expects %u (config `features`)",
                 a->n_features, self->d);
        return BG_PLUGIN_EINVAL;
    }
    double bound = self->bias ? self->max_w : 0.0;
    for (unsigned k = 0; k < self->d; k++) {
        bound += self->max_w * fabs(a->features[k]);
        if (!isfinite(bound)) {
            snprintf(buf, len,
                     "features[%u] is %g: with weights up to %g the logit w·x overflows; "
                     "scale the features so that |w·x| stays below %g",
                     k, a->features[k], self->max_w, DBL_MAX);
            return BG_PLUGIN_EINVAL;
        }
    }
    return BG_PLUGIN_OK;
}

static const bg_hypothesis_vtbl vtbl = {
    .create = create,
    .destroy = destroy,
    .count = count,
    .log_prior = log_prior,
    .log_lik = log_lik,
    .harm = harm,
    .label = label,
    .check_action = check_action,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "logistic",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "Bayesian logistic regression of harm on the action's features",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.hypothesis = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
