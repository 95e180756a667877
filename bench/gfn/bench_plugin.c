/*
 * bench_plugin.c — the benchmark's reward through the real bandit plugin
 * (plugins/hypothesis/bandit, bg_bandit.so) loaded by the daemon's plugin
 * host: log R(h) = log_prior(h) + Σ_obs log_lik(obs | h), the observations
 * being the data set's pulls. Before use it is checked against the local
 * formula of bench_env.c: equal up to one constant over all ids (the
 * Gaussian normaliser), which no GFlowNet objective or posterior sees.
 * The plugin's harm (for the harm-tilted reward) is checked equal to
 * bench_harm likewise.
 * Without a plugin host in the build, or when the plugin does not load,
 * the benchmark says why and uses the local formula.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gfn.h"

#ifdef BENCH_HAVE_PLUGIN_HOST
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"

typedef struct bandit_ctx {
    bg_plugin_host *host;
    bg_cfg_doc *doc;
    bg_plugin_instance *pi; /* the bandit model (plugin_host.h) */
    const bg_hypothesis_vtbl *vt;
    void *inst; /* pi->inst */
    bg_observation obs[BENCH_MAX_OBS];
    double *features; /* [n_obs × d] */
    double *tmp;
    size_t tmp_cap;
    uint32_t d, n_obs;
} bandit_ctx;

static int plugin_log_r(void *vctx, const uint64_t *h, size_t n, double *out)
{
    bandit_ctx *c = vctx;
    const bg_hypothesis_vtbl *vt = c->vt;
    if (n > c->tmp_cap) {
        free(c->tmp);
        c->tmp = malloc(n * sizeof *c->tmp);
        c->tmp_cap = c->tmp ? n : 0;
        if (!c->tmp)
            return BG_PLUGIN_ENOMEM;
    }
    int rc = vt->log_prior(c->inst, h, n, out);
    for (const bg_observation *o = c->obs; rc == BG_PLUGIN_OK && o->action.tool; o++) {
        rc = vt->log_lik(c->inst, o, c->obs, (size_t)(o - c->obs), h, n, c->tmp);
        for (size_t i = 0; i < n && rc == BG_PLUGIN_OK; i++)
            out[i] += c->tmp[i];
    }
    return rc;
}

/* The plugin's harm for the action with features x (an id-space mask),
 * with the data set as its history. */
static int plugin_harm(void *vctx, uint64_t xmask, const uint64_t *h, size_t n, double *out)
{
    bandit_ctx *c = vctx;
    double x[BG_GFN_MAX_BITS];
    uint32_t d = c->d;
    for (uint32_t k = 0; k < d; k++) /* plugin: w_k = id bit (d-1-k) */
        x[k] = (double)(xmask >> (d - 1 - k) & 1);
    bg_action a = {.id = "", .tool = "pull", .arguments_json = "", .features = x, .n_features = d};
    return c->vt->harm(c->inst, &a, c->obs, c->n_obs, h, n, out);
}

void bench_plugin_detach(bench_env *e)
{
    bandit_ctx *c = e->plugin_ctx;
    e->plugin_log_r = NULL;
    e->plugin_harm = NULL;
    e->plugin_ctx = NULL;
    if (!c)
        return;
    bg_plugin_instance_destroy(c->pi);
    bg_cfg_doc_destroy(c->doc);
    if (c->host)
        bg_plugin_host_destroy(c->host);
    free(c->features);
    free(c->tmp);
    free(c);
}

/* Fails with a reason; the caller detaches. */
static int attach(bench_env *e, bandit_ctx *c, char *why, size_t len)
{
    const char *dir = getenv("BG_PLUGIN_DIR") ? getenv("BG_PLUGIN_DIR") : BENCH_PLUGIN_DIR;
    bg_err err;
    char yaml[256];
    snprintf(yaml, sizeof yaml, "features: %u\nsigma: %.17g\ntheta: %.17g\n", e->d, e->sigma,
             e->theta);
    const bg_cfg_node *cfg = NULL;
    if (bg_plugin_host_create(dir, &c->host, &err) != BG_OK ||
        bg_cfg_parse_string(yaml, strlen(yaml), "bench.yaml", &c->doc, &err) != BG_OK ||
        (cfg = bg_cfg_doc_root(c->doc, 0),
         bg_plugin_instance_create(c->host, "bandit", BG_PLUGIN_KIND_HYPOTHESIS, cfg, cfg, NULL,
                                   NULL, NULL, &c->pi, &err)) != BG_OK) {
        snprintf(why, len, "the local bandit formula (bench_env.c): %s", err.msg);
        return -1;
    }
    c->vt = c->pi->plugin->desc->vt.hypothesis;
    c->inst = c->pi->inst;
    c->d = e->d;
    c->n_obs = e->n_obs;
    c->features = calloc((size_t)e->n_obs * e->d, sizeof *c->features);
    if (!c->features)
        return -1;
    for (uint32_t i = 0; i < e->n_obs; i++) {
        double *x = c->features + (size_t)i * e->d;
        for (uint32_t k = 0; k < e->d; k++) /* plugin: w_k = id bit (d-1-k) */
            x[k] = (double)(e->arm[e->obs_arm[i]] >> (e->d - 1 - k) & 1);
        c->obs[i] = (bg_observation){.action = {.id = "",
                                                .tool = "pull",
                                                .arguments_json = "",
                                                .features = x,
                                                .n_features = e->d},
                                     .harmed = 0,
                                     .has_value = 1,
                                     .value = e->obs_r[i]};
    }
    /* check: plugin − local is one constant over many ids */
    uint64_t ids[64];
    double pl[64];
    bg_rng r = {{1, 2, 3, 4}};
    uint64_t all = e->d == 64 ? ~0ULL : (1ULL << e->d) - 1;
    for (int i = 0; i < 64; i++) {
        r.s[0] = r.s[0] * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = i == 0 ? e->w_star : (r.s[0] >> 7) & all;
    }
    if (plugin_log_r(c, ids, 64, pl) != BG_PLUGIN_OK) {
        snprintf(why, len, "the local bandit formula (bench_env.c): plugin log_lik failed");
        return -1;
    }
    double hm[64];
    if (plugin_harm(c, e->arm[0], ids, 64, hm) != BG_PLUGIN_OK) {
        snprintf(why, len, "the local bandit formula (bench_env.c): plugin harm failed");
        return -1;
    }
    for (int i = 0; i < 64; i++)
        if (fabs(hm[i] - bench_harm(e, e->arm[0], ids[i])) > 1e-12) {
            snprintf(why, len,
                     "the local bandit formula (bench_env.c): the plugin's harm "
                     "disagrees on id 0x%llx",
                     (unsigned long long)ids[i]);
            return -1;
        }
    double off = pl[0] - bench_log_r_local(e, ids[0]);
    for (int i = 1; i < 64; i++) {
        double diff = pl[i] - bench_log_r_local(e, ids[i]) - off;
        if (fabs(diff) > 1e-7 * (1 + fabs(pl[i]))) {
            snprintf(why, len,
                     "the local bandit formula (bench_env.c): the plugin disagrees on id 0x%llx "
                     "by %g",
                     (unsigned long long)ids[i], diff);
            return -1;
        }
    }
    return 0;
}

int bench_plugin_attach(bench_env *e, char *why, size_t len)
{
    bandit_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    e->plugin_ctx = c;
    if (attach(e, c, why, len) != 0) {
        bench_plugin_detach(e);
        return -1;
    }
    e->plugin_log_r = plugin_log_r;
    e->plugin_harm = plugin_harm;
    return 0;
}

#else

int bench_plugin_attach(bench_env *e, char *why, size_t len)
{
    (void)e;
    snprintf(why, len, "the local bandit formula (bench_env.c; no plugin host in this build)");
    return -1;
}

void bench_plugin_detach(bench_env *e)
{
    e->plugin_log_r = NULL;
    e->plugin_harm = NULL;
    e->plugin_ctx = NULL;
}

#endif
