/*
 * gfn_plugin.c — sampler plugin `gfn`: the GFlowNet training engine of
 * lib/gfn behind the ABI's bg_sampler_vtbl.
 *
 * Why shaped so: the engine is self-contained C (libc, libm and
 * bayesguard/plugin.h only), so this plugin links its static library
 * bg_gfn (position independent, hidden symbols: the .so still exports only
 * its descriptor) and no daemon symbol. This file only maps the policy config (a typed config
 * map, checked by the host) onto bg_gfn_config and the vtable onto the
 * engine's calls.
 *
 * Rewards that move: train() asks the reward for its version (ABI 1.2,
 * bg_reward_version) and trains at it (bg_gfn_train_at), so replay
 * entries stored at an older version are re-scored against the current
 * data first. A reward without a version (a host of minor < 2, a test's
 * callback) gets a new version at every call: re-scored every call, never
 * stale. The plugin declares minor 1 and asks only hosts of minor >= 2.
 *
 * Threads: as the ABI says — create/destroy on one thread; train and load
 * mutate and are serialised by the host against sample and save; sample
 * and save only read and may run concurrently with each other.
 *
 * Ownership: the instance (malloc'd in create, freed in destroy) owns its
 * engine; the host pointer is borrowed until destroy.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bayesguard/plugin.h"
#include "gfn/gfn.h"

typedef struct gfn_cfg {
    int loss, lr_restart;
    int64_t hidden, layers, batch, replay_capacity, min_len, max_len, seed;
    int64_t lr_horizon, reward_temp_horizon;
    double lr, lr_end, lr_logz, lambda, grad_clip;
    double p_replay, p_tempered, temp_lo, temp_hi, epsilon;
    double reward_temp_start, reward_temp_end;
} gfn_cfg;

#define D(k, f, dflt, lo, hi, text)                                                                \
    {                                                                                              \
        .key = k, .type = BG_CFGV_DOUBLE, .def = dflt, .offset = offsetof(gfn_cfg, f), .min = lo,  \
        .max = hi, .desc = text                                                                    \
    }
#define I(k, f, dflt, lo, hi, text)                                                                \
    {                                                                                              \
        .key = k, .type = BG_CFGV_INT, .def = dflt, .offset = offsetof(gfn_cfg, f), .min = lo,     \
        .max = hi, .desc = text                                                                    \
    }

static const bg_cfg_entry cfg_map[] = {
    {.key = "loss",
     .type = BG_CFGV_ENUM,
     .def = "subtb",
     .offset = offsetof(gfn_cfg, loss),
     .choices = "tb|subtb|db",
     .desc = "objective: trajectory balance, modified sub-trajectory or detailed balance"},
    I("hidden", hidden, "128", 1, 4096, "width of each hidden layer of the policy MLP"),
    I("layers", layers, "2", 1, BG_GFN_MAX_HIDDEN_LAYERS, "number of hidden layers"),
    I("batch", batch, "16", 1, 65536, "trajectories per optimiser step"),
    D("lr", lr, "1e-2", 1e-9, 1, "Adam learning rate at the start"),
    D("lr_end", lr_end, "1e-5", 1e-12, 1, "learning rate reached after lr_horizon steps"),
    I("lr_horizon", lr_horizon, "2000", 0, 1e9, "steps of the linear decay (0 = constant lr)"),
    {.key = "lr_restart",
     .type = BG_CFGV_BOOL,
     .def = "true",
     .offset = offsetof(gfn_cfg, lr_restart),
     .desc = "restart the lr schedule each time the posterior moves (a new observation)"},
    D("lr_logz", lr_logz, "0.3", 0, 10, "learning rate of log Z (tb)"),
    D("lambda", lambda, "1.0", 1e-6, 1e3, "subtb window weight lambda^(j-i-1)"),
    D("grad_clip", grad_clip, "10", 0, 1e12, "global gradient-norm clip (0 = none)"),
    D("p_replay", p_replay, "0.25", 0, 1, "probability a batch is replayed from the buffer"),
    D("p_tempered", p_tempered, "0.25", 0, 1, "probability a batch uses a tempered policy"),
    D("temp_lo", temp_lo, "0.5", 1e-3, 1e3, "lowest behaviour temperature"),
    D("temp_hi", temp_hi, "2.0", 1e-3, 1e3, "highest behaviour temperature"),
    D("epsilon", epsilon, "0", 0, 1, "epsilon-uniform exploration per action"),
    I("replay_capacity", replay_capacity, "100", 0, 1000000, "top-k replay buffer size"),
    D("reward_temp_start", reward_temp_start, "1", 1e-3, 1e3, "reward temperature at step 0"),
    D("reward_temp_end", reward_temp_end, "1", 1e-3, 1e3, "reward temperature after the horizon"),
    I("reward_temp_horizon", reward_temp_horizon, "0", 0, 1e9, "steps of the linear anneal"),
    I("min_len", min_len, "0", 0, 64, "fewest features in a hypothesis"),
    I("max_len", max_len, "0", 0, 64, "most features in a hypothesis (0 = all d)"),
    I("seed", seed, "1", 0, 9.2e18, "training seed (same seed, same samples)"),
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])
#undef D
#undef I

typedef struct gfn_sampler {
    const bg_host *host;
    bg_gfn *g;
    uint64_t calls; /* train() calls: the version of an unversioned reward */
} gfn_sampler;

static int create(const bg_host *host, const bg_cfg_node *config, const bg_space *space, void **out)
{
    gfn_cfg pc;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &pc);
    if (rc != BG_PLUGIN_OK)
        return rc;
    if (!space || space->n_bits < 1 || space->n_bits > BG_GFN_MAX_BITS)
        return host->cfg_error(host->host_ctx, config,
                               "the hypothesis space has %u bits; expected 1..64",
                               space ? space->n_bits : 0);
    bg_gfn_config c;
    bg_gfn_config_default(&c, space->n_bits);
    c.loss = (bg_gfn_loss)pc.loss;
    c.hidden = (uint32_t)pc.hidden;
    c.n_hidden = (uint32_t)pc.layers;
    c.batch = (uint32_t)pc.batch;
    c.lr = pc.lr;
    c.lr_end = pc.lr_end < pc.lr ? pc.lr_end : pc.lr;
    c.lr_horizon = (uint32_t)pc.lr_horizon;
    c.lr_restart = pc.lr_restart ? 1 : 0;
    c.lr_logz = pc.lr_logz;
    c.lambda = pc.lambda;
    c.grad_clip = pc.grad_clip;
    c.p_replay = pc.p_replay;
    c.p_tempered = pc.p_tempered;
    c.temp_lo = pc.temp_lo;
    c.temp_hi = pc.temp_hi;
    c.epsilon = pc.epsilon;
    c.replay_capacity = (uint32_t)pc.replay_capacity;
    c.reward_temp_start = pc.reward_temp_start;
    c.reward_temp_end = pc.reward_temp_end;
    c.reward_temp_horizon = (uint32_t)pc.reward_temp_horizon;
    c.min_len = (uint32_t)pc.min_len;
    c.max_len = pc.max_len ? (uint32_t)pc.max_len : space->n_bits;
    c.seed = (uint64_t)pc.seed;
    char msg[256];
    if (bg_gfn_config_check(&c, msg, sizeof msg) != BG_PLUGIN_OK)
        return host->cfg_error(host->host_ctx, config, "%s", msg);
    gfn_sampler *self = calloc(1, sizeof *self);
    if (!self)
        return BG_PLUGIN_ENOMEM;
    self->host = host;
    rc = bg_gfn_create(&c, &self->g, msg, sizeof msg);
    if (rc != BG_PLUGIN_OK) {
        host->log(host->host_ctx, BG_PLUGIN_LOG_ERROR, "%s", msg);
        free(self);
        return rc;
    }
    *out = self;
    return BG_PLUGIN_OK;
}

static void destroy(void *vself)
{
    gfn_sampler *self = vself;
    if (!self)
        return;
    bg_gfn_destroy(self->g);
    free(self);
}

static int train(void *vself, bg_log_reward_fn reward, void *reward_ctx, uint32_t steps)
{
    gfn_sampler *self = vself;
    char msg[256];
    uint64_t v =
        self->host->abi_minor >= 2 ? bg_reward_version(reward, reward_ctx) : BG_REWARD_UNVERSIONED;
    self->calls++;
    if (v == BG_REWARD_UNVERSIONED) /* above every host version (< 2^53) */
        v = (1ULL << 63) | self->calls;
    int rc = bg_gfn_train_at(self->g, reward, reward_ctx, v, steps, msg, sizeof msg);
    if (rc != BG_PLUGIN_OK) {
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "%s", msg);
        return rc;
    }
    if (self->host->metric_add)
        self->host->metric_add(self->host->host_ctx, "train_steps", steps);
    return BG_PLUGIN_OK;
}

static int sample(const void *vself, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    const gfn_sampler *self = vself;
    return bg_gfn_sample(self->g, rng, n, ids, log_q);
}

static int save(const void *vself, const char *path)
{
    const gfn_sampler *self = vself;
    char msg[512];
    int rc = bg_gfn_save(self->g, path, msg, sizeof msg);
    if (rc != BG_PLUGIN_OK)
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "%s", msg);
    return rc;
}

static int load(void *vself, const char *path)
{
    gfn_sampler *self = vself;
    char msg[512];
    int rc = bg_gfn_load_into(self->g, path, msg, sizeof msg);
    if (rc != BG_PLUGIN_OK)
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "%s", msg);
    return rc;
}

static const bg_sampler_vtbl vtbl = {
    .create = create,
    .destroy = destroy,
    .train = train,
    .sample = sample,
    .save = save,
    .load = load,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD_MINOR(1), /* asks for reward versions only on 1.2 hosts */
    .name = "gfn",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_SAMPLER,
    .description = "GFlowNet sampler over sets of up to 64 binary features (TB / SubTB / DB)",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.sampler = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
