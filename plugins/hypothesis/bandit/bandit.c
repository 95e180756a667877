/*
 * bandit.c — hypothesis model: the paper's exploding bandit (Bengio et al.,
 * Section 5).
 *
 * A hypothesis is a binary weight vector w ∈ {0,1}^d. Ids enumerate them in
 * cartesian-product order with the FIRST coordinate varying slowest:
 * w_k = bit (d−1−k) of the id, for every d (so for d <= 20, ids 0..2^d−1
 * in the paper's order; for 20 < d <= 64 count() is 0 and space() says the
 * id is a d-bit string, which a sampler builds bit by bit). Everything is
 * computed from the id's bits; nothing is tabulated per hypothesis.
 *
 * Uniform prior. An arm's features x = action.features (d values). Pulling
 * it gives reward r ~ N(x·w, σ): log_lik uses the observation's `value`
 * (required). harm = P(r > θ | x, w) = 1 − Φ((θ − x·w)/σ).
 *
 * Fast path: when x is binary, x·w = popcount(xbits & id) ∈ 0..d, so harm
 * and the log-likelihood take at most d+1 values, tabulated per call (an
 * entry when an id first reads it). The feature mask and the bit count
 * are bandit_bits.h's: AVX2 + POPCNT where the CPU has them (chosen at
 * create()), else portable; the same values bit for bit.
 * Otherwise the dot product is computed per hypothesis, eight at a time
 * without a branch on the id's bits (dot_lanes; the same sums bit for bit).
 *
 * `enumerate: false` makes count() 0 for every d, so a policy takes the
 * sampled path on a space it could enumerate: the sampled bound can then
 * be held against the exact one of an enumerated twin (tests/gfn,
 * test_gfn_fresh). Ids mean the same hypothesis either way.
 *
 * θ comes from config (`theta`): the bench's `max-arm` / `fixed` variants
 * are environment-side choices of that number.
 *
 * Threads: all functions but create/destroy are pure. Ownership: the
 * instance is malloc'd by create, freed by destroy.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bandit_bits.h"
#include "bayesguard/plugin.h"

#define MAX_ENUM_BITS 20

typedef struct bandit_cfg {
    int64_t features;
    double sigma;
    double theta;
    int enumerate;
} bandit_cfg;

typedef struct bandit {
    const bg_host *host;
    unsigned d;
    double sigma;
    double log_sigma; /* log(sigma), once: the log-likelihood table needs it per entry */
    double theta;
    int enumerate; /* 0: count() is 0 for every d (the sampled path) */
    int x86;       /* the CPU has AVX2 and POPCNT: bandit_bits.h's x86 kernels */
} bandit;

static const bg_cfg_entry cfg_map[] = {
    {.key = "features",
     .type = BG_CFGV_INT,
     .def = "10",
     .offset = offsetof(bandit_cfg, features),
     .min = 1,
     .max = 64,
     .desc = "d: features per arm = weights per hypothesis (<= 20 enumerated)"},
    {.key = "sigma",
     .type = BG_CFGV_DOUBLE,
     .def = "1.0",
     .offset = offsetof(bandit_cfg, sigma),
     .min = 1e-9,
     .max = 1e9,
     .desc = "σ of the Gaussian reward"},
    {.key = "theta",
     .type = BG_CFGV_DOUBLE,
     .def = NULL,
     .offset = offsetof(bandit_cfg, theta),
     .min = -1e12,
     .max = 1e12,
     .desc = "θ: an arm explodes when its reward exceeds θ (required)"},
    {.key = "enumerate",
     .type = BG_CFGV_BOOL,
     .def = "true",
     .offset = offsetof(bandit_cfg, enumerate),
     .desc = "false: count() is 0 also for d <= 20, so a policy samples (to compare with exact)"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    bandit_cfg c;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &c);
    if (rc != BG_PLUGIN_OK)
        return rc;
    bandit *self = malloc(sizeof *self);
    if (!self)
        return BG_PLUGIN_ENOMEM;
    self->host = host;
    self->d = (unsigned)c.features;
    self->sigma = c.sigma;
    self->log_sigma = log(c.sigma);
    self->theta = c.theta;
    self->enumerate = c.enumerate;
    self->x86 = 0;
#if BANDIT_X86
    __builtin_cpu_init();
    self->x86 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#endif
    *out = self;
    return BG_PLUGIN_OK;
}

static void destroy(void *self)
{
    free(self);
}

static uint64_t count(const void *vself)
{
    const bandit *self = vself;
    return self->enumerate && self->d <= MAX_ENUM_BITS ? (uint64_t)1 << self->d : 0;
}

static int space(const void *vself, bg_space *out)
{
    const bandit *self = vself;
    out->n_bits = self->d;
    out->flags = 0;
    return BG_PLUGIN_OK;
}

static int log_prior(const void *vself, const uint64_t *h, size_t n, double *out)
{
    (void)vself;
    (void)h;
    for (size_t i = 0; i < n; i++)
        out[i] = 0.0; /* uniform; the engine normalises */
    return BG_PLUGIN_OK;
}

/* x as an id-layout bit mask (feature k at bit d-1-k) of the features
 * that are 1; *binary: whether every feature is 0 or 1 (bandit_bits.h).
 * per_dot calls it once per call, i.e. per observation of the history for
 * each few-id log_lik call of the per-context search (issue 16,
 * docs/GFLOWNET.md "Cost"). Nothing is cached: a history entry's memory
 * can be reused for another observation. */
static uint64_t feature_bits(const bandit *self, const bg_action *a, int *binary)
{
#if BANDIT_X86
    if (self->x86)
        return bandit_fbits_avx2(a->features, self->d, binary);
#endif
    return bandit_fbits_sw(a->features, self->d, binary);
}

static double dot(const bandit *self, const bg_action *a, uint64_t id)
{
    double s = 0.0;
    for (unsigned k = 0; k < self->d; k++)
        if ((id >> (self->d - 1 - k)) & 1)
            s += a->features[k];
    return s;
}

/* dot() of DOT_LANES ids at once, bit for bit the same sums: each lane
 * adds the features of its set bits in k order, and a clear bit adds +0.0,
 * which leaves a sum unchanged (a sum of these never is -0.0). No branch
 * on the id's bits (they are random: the branch in dot() mispredicted
 * about one bit in two), and the lanes are independent chains, so the
 * adds overlap instead of waiting on one another. */
#define DOT_LANES 8
static void dot_lanes(const bandit *self, const bg_action *a, const uint64_t *h,
                      double s[DOT_LANES])
{
    uint64_t id[DOT_LANES];
    double acc[DOT_LANES]; /* local: s may alias the features */
    for (size_t j = 0; j < DOT_LANES; j++) {
        id[j] = h[j];
        acc[j] = 0.0;
    }
    for (unsigned k = 0; k < self->d; k++) {
        uint64_t xb;
        double x = a->features[k];
        memcpy(&xb, &x, sizeof xb);
        unsigned sh = self->d - 1 - k;
        for (size_t j = 0; j < DOT_LANES; j++) {
            /* x where the bit is set, else +0.0: by mask, not a branch */
            uint64_t v = xb & (0 - ((id[j] >> sh) & 1));
            double t;
            memcpy(&t, &v, sizeof t);
            acc[j] += t;
        }
    }
    for (size_t j = 0; j < DOT_LANES; j++)
        s[j] = acc[j];
}

static double harm_of(const bandit *self, double mean)
{
    return 0.5 * erfc((self->theta - mean) / (self->sigma * M_SQRT2));
}

static double loglik_of(const bandit *self, double r, double mean)
{
    double z = (r - mean) / self->sigma;
    return -0.5 * z * z - self->log_sigma - 0.5 * log(2.0 * M_PI);
}

typedef double (*bandit_fn)(const bandit *, double, double);

/* out[i] = f(self, arg, popcount(h[i] & xm)): the table of the values x·w
 * can take (x binary), each entry computed when an id first reads it —
 * the same f call whatever the batch. Computing only what is read pays at
 * every width the sampled path calls with: the per-context search's chain
 * steps (<= 8 ids) and its ejection scans (d - 1 ids one flip apart, so
 * 2-3 distinct counts of the ~d/2 + 1 a whole table held), and the
 * training's K-wide calls (their counts bunch around the middle). hw:
 * the POPCNT instruction (a constant where it is inlined). */
static inline __attribute__((always_inline)) void tab_body(const bandit *self, uint64_t xm,
                                                           const uint64_t *h, size_t n, double arg,
                                                           bandit_fn f, double *out, int hw)
{
    double tab[65]; /* x·w in 0..64 */
    uint64_t have[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        uint64_t v = h[i] & xm;
#if BANDIT_X86
        unsigned k = hw ? bandit_popcount_hw(v) : bandit_popcount_sw(v);
#else
        unsigned k = bandit_popcount_sw(v);
        (void)hw;
#endif
        if (!(have[k >> 6] >> (k & 63) & 1)) {
            tab[k] = f(self, arg, (double)k);
            have[k >> 6] |= (uint64_t)1 << (k & 63);
        }
        out[i] = tab[k];
    }
}

static void tab_sw(const bandit *self, uint64_t xm, const uint64_t *h, size_t n, double arg,
                   bandit_fn f, double *out)
{
    tab_body(self, xm, h, n, arg, f, out, 0);
}

#if BANDIT_X86
BANDIT_TX86 static void tab_hw(const bandit *self, uint64_t xm, const uint64_t *h, size_t n,
                               double arg, bandit_fn f, double *out)
{
    tab_body(self, xm, h, n, arg, f, out, 1);
}
#endif

/* out[i] = f(x·w_i) through the (d+1)-entry table when x is binary. */
static void per_dot(const bandit *self, const bg_action *a, const uint64_t *h, size_t n, double arg,
                    bandit_fn f, double *out)
{
    int binary;
    uint64_t xm = feature_bits(self, a, &binary);
    if (binary) {
#if BANDIT_X86
        if (self->x86) {
            tab_hw(self, xm, h, n, arg, f, out);
            return;
        }
#endif
        tab_sw(self, xm, h, n, arg, f, out);
    } else {
        double s[DOT_LANES];
        size_t i = 0;
        for (; i + DOT_LANES <= n; i += DOT_LANES) {
            dot_lanes(self, a, h + i, s);
            for (size_t j = 0; j < DOT_LANES; j++)
                out[i + j] = f(self, arg, s[j]);
        }
        for (; i < n; i++)
            out[i] = f(self, arg, dot(self, a, h[i]));
    }
}

static double harm_f(const bandit *self, double unused, double mean)
{
    (void)unused;
    return harm_of(self, mean);
}

static int log_lik(const void *vself, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const bandit *self = vself;
    (void)history;
    (void)n_hist;
    if (!obs->has_value || !isfinite(obs->value)) {
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR,
                        "observation of tool %s has no reward: set `value`", obs->action.tool);
        return BG_PLUGIN_EINVAL;
    }
    if (obs->action.n_features != self->d)
        return BG_PLUGIN_EINVAL;
    per_dot(self, &obs->action, h, n, obs->value, loglik_of, out);
    return BG_PLUGIN_OK;
}

static int harm(const void *vself, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    const bandit *self = vself;
    (void)history;
    (void)n_hist;
    if (action->n_features != self->d)
        return BG_PLUGIN_EINVAL;
    per_dot(self, action, h, n, 0.0, harm_f, out);
    return BG_PLUGIN_OK;
}

static int label(const void *vself, uint64_t h, char *buf, size_t len)
{
    const bandit *self = vself;
    if (len < (size_t)self->d + 3)
        return BG_PLUGIN_EINVAL;
    buf[0] = 'w';
    buf[1] = '=';
    for (unsigned k = 0; k < self->d; k++)
        buf[2 + k] = (char)('0' + ((h >> (self->d - 1 - k)) & 1));
    buf[2 + self->d] = '\0';
    return BG_PLUGIN_OK;
}

static int check_action(const void *vself, const bg_action *a, char *buf, size_t len)
{
    const bandit *self = vself;
    if (a->n_features != self->d) {
        snprintf(buf, len, "action has %zu features; this bandit expects %u (config `features`)",
                 a->n_features, self->d);
        return BG_PLUGIN_EINVAL;
    }
    return BG_PLUGIN_OK;
}

static const bg_hypothesis_vtbl vtbl = {
    .create = create,
    .destroy = destroy,
    .count = count,
    .space = space,
    .log_prior = log_prior,
    .log_lik = log_lik,
    .harm = harm,
    .label = label,
    .check_action = check_action,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "bandit",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "exploding bandit: binary weights, Gaussian reward, harm = P(reward > θ)",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.hypothesis = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
