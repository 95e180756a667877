/*
 * lm_gfn_plugin.c — sampler plugin `lm_gfn`: a language model fine-tuned as
 * a GFlowNet (lib/lmgfn, seed 2) behind the ABI's bg_sampler_vtbl, for a
 * hypothesis model whose ids are token sequences (plugin ABI 1.4,
 * BG_SPACE_SEQUENCE: `lm_theory` in sampled mode). docs/LM_THEORY.md,
 * "Sampled theories".
 *
 * What it samples: a theory is a sequence of 1..max_len symbols; symbol s
 * is the LM token symbols->tokens[s − 1] of the model the hypothesis model
 * names (bg_space_symbols). The policy is that checkpoint with LoRA
 * adapters, generating after the space's prompt; only the symbols' tokens
 * and the stop token (the vocabulary's EOS, id 2) are legal, ⊤ is masked
 * before min_len and forced at max_len. The trajectory of id h is its
 * symbols' tokens in order, so each id has exactly one trajectory and
 * log q(h) is a sum of log-softmaxes over the legal tokens.
 *
 * What it learns: train(reward) runs lib/lmgfn's steps (modified SubTB,
 * replay, tempered behaviour) on log R(s_i ⊤) = the host's reward of the id
 * of every prefix s_i (i >= min_len) — log prior + log-likelihood of the
 * session's history under the theory, bound by the engine. -INFINITY
 * (an excluded theory) becomes `log_reward_floor`; NaN or +INFINITY is an
 * error. The reward carries a version (ABI 1.2): at a new version the
 * reward cache is dropped and the replay buffer re-scored
 * (bg_lmgfn_set_version) before the first step; an unversioned reward is
 * new at every call.
 *
 * Costs and caches: the reward cache maps id -> log R at the current
 * version (at most REWARD_CACHE / 2 ids, then it stops growing), so a
 * prefix met again costs no host call; a step's new ids go to the host in
 * one batched call. sample() caches the policy's legal log-probabilities
 * per prefix (a table of at most POLICY_CACHE_FLOATS floats, half full at
 * most, dropped when it would pass that, by train and by load), and walks
 * its K draws level by level: a level's distinct prefixes the cache lacks
 * are one batched forward through the trainer (bg_nn_train_logits_batch),
 * so K draws cost max_len batched forwards (in chunks of SAMPLE_CHUNK
 * draws), not one forward per distinct prefix, nor one per token. Each
 * draw has its own max_len uniforms, taken from the generator up front
 * draw by draw, so the draws depend on the seed alone, not on the order
 * the levels run in.
 *
 * Why a copy of the weights: the host's LM service (ABI 1.3) scores and
 * gives next-token distributions but does not train; the trainer (lib/nn:
 * base weights + adapters + AdamW state) lives here, one per instance — the
 * engine makes one instance per session with data, so the model's size
 * times max_sessions is the memory this costs (stories260K: ~1 MiB each).
 *
 * Threads: create/destroy on one thread; train and load are serialised by
 * the host against sample and save. sample() may run on several threads at
 * once: the trainer's forward and the caches are behind `mu`.
 *
 * Ownership: the instance owns its lmgfn (and through it the trainer), its
 * copies of the symbols and prompt, and its caches; host is borrowed until
 * destroy; the space and symbols only during create.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/plugin.h"
#include "lmgfn/lmgfn.h"

#define STOP_TOKEN 2                   /* llama2.c's EOS: the theory's end */
#define REWARD_CACHE (1u << 14)        /* slots: up to 8192 ids remembered per reward version */
#define POLICY_CACHE_FLOATS (1u << 18) /* the prefix cache's table, in floats (1 MiB) */
#define SAMPLE_CHUNK 1024u             /* draws advanced per batched forward, at most */

typedef struct lmg_cfg {
    int loss, backend;
    int64_t batch, lora_rank, replay_capacity, replay_min_dist, min_len, threads, seed;
    int64_t reward_temp_steps;
    double lr, lr_logz, lambda, p_replay, p_tempered, temp_lo, temp_hi;
    double reward_temp_start, reward_temp_end, log_reward_floor;
} lmg_cfg;

#define D(k, f, dflt, lo, hi, text)                                                                \
    {                                                                                              \
        .key = k, .type = BG_CFGV_DOUBLE, .def = dflt, .offset = offsetof(lmg_cfg, f), .min = lo,  \
        .max = hi, .desc = text                                                                    \
    }
#define I(k, f, dflt, lo, hi, text)                                                                \
    {                                                                                              \
        .key = k, .type = BG_CFGV_INT, .def = dflt, .offset = offsetof(lmg_cfg, f), .min = lo,     \
        .max = hi, .desc = text                                                                    \
    }

static const bg_cfg_entry cfg_map[] = {
    {.key = "loss",
     .type = BG_CFGV_ENUM,
     .def = "subtb",
     .offset = offsetof(lmg_cfg, loss),
     .choices = "subtb|tb",
     .desc = "objective: modified sub-trajectory balance or trajectory balance"},
    {.key = "backend",
     .type = BG_CFGV_ENUM,
     .def = "cpu",
     .offset = offsetof(lmg_cfg, backend),
     .choices = "cpu|vulkan",
     .desc = "where the sampler's LM trains and samples"},
    I("threads", threads, "1", 0, 256, "CPU threads of the sampler's trainer (0 = every CPU)"),
    I("batch", batch, "16", 1, BG_LMGFN_MAX_BATCH, "trajectories per optimiser step"),
    I("lora_rank", lora_rank, "4", 1, 256, "rank of the LoRA adapters (the policy)"),
    D("lr", lr, "5e-3", 1e-9, 1, "AdamW learning rate of the adapters"),
    D("lr_logz", lr_logz, "0.05", 0, 10, "Adam step size of log Z"),
    D("lambda", lambda, "1.0", 1e-6, 1e3, "subtb window weight lambda^(j-i-1)"),
    D("p_replay", p_replay, "0.25", 0, 1, "share of steps replayed from the buffer"),
    D("p_tempered", p_tempered, "0.5", 0, 1, "share of on-policy steps at T ~ U(temp_lo, temp_hi)"),
    D("temp_lo", temp_lo, "0.5", 1e-3, 1e3, "lowest behaviour temperature"),
    D("temp_hi", temp_hi, "2.0", 1e-3, 1e3, "highest behaviour temperature"),
    D("reward_temp_start", reward_temp_start, "1", 1e-3, 1e3, "reward temperature at step 0"),
    D("reward_temp_end", reward_temp_end, "1", 1e-3, 1e3, "reward temperature after the anneal"),
    I("reward_temp_steps", reward_temp_steps, "0", 0, 1e9, "steps of the linear anneal"),
    I("replay_capacity", replay_capacity, "256", 1, 10000,
      "top-k replay buffer size (~1 KiB an item, per session)"),
    I("replay_min_dist", replay_min_dist, "1", 0, 64,
      "an item within this token edit distance of a kept one is a near-duplicate"),
    I("min_len", min_len, "1", 1, 64, "fewest symbols in a theory"),
    D("log_reward_floor", log_reward_floor, "-1000", -1e6, 0,
      "what an excluded theory's log R (-inf) trains as"),
    I("seed", seed, "1", 0, 9.2e18, "seed of the adapters and the trainer"),
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])
#undef D
#undef I

typedef struct lmg {
    const bg_host *host;
    bg_lmgfn *g;
    uint32_t width, max_len, min_len, n_sym;
    int V;
    int32_t *sym_tok;  /* [n_sym + 1]: symbol s's token (s >= 1) */
    uint32_t *tok_sym; /* [V]: token's symbol, 0 = none */
    int32_t *seq;      /* [n_prompt + max_len]: the prompt (sample() copies it per prefix) */
    int n_prompt;
    double floor;
    uint64_t calls; /* train() calls: the version of an unversioned reward */
    /* the reward bound during train() */
    bg_log_reward_fn reward;
    void *reward_ctx;
    /* id -> log R at the lmgfn's version (open addressing, key + 1; 0 = empty) */
    uint64_t *rkey;
    double *rval;
    uint32_t rn;
    /* sample(): prefix id -> legal log-probabilities [n_sym + 1] (0 = stop) */
    pthread_mutex_t mu;
    uint64_t *pkey;
    float *pval;
    uint32_t pcap, pn;
} lmg;

/* ---- the reward cache -------------------------------------------------- */

static uint32_t slot_of(uint64_t id, uint32_t cap)
{
    uint64_t z = (id + 1) * 0x9e3779b97f4a7c15ULL;
    return (uint32_t)(z >> 32) & (cap - 1);
}

static int rcache_get(const lmg *self, uint64_t id, double *out)
{
    for (uint32_t s = slot_of(id, REWARD_CACHE);; s = (s + 1) & (REWARD_CACHE - 1)) {
        if (self->rkey[s] == 0)
            return 0;
        if (self->rkey[s] == id + 1) {
            *out = self->rval[s];
            return 1;
        }
    }
}

static void rcache_put(lmg *self, uint64_t id, double v)
{
    if (self->rn >= REWARD_CACHE / 2) /* full enough: stop remembering */
        return;
    uint32_t s = slot_of(id, REWARD_CACHE);
    while (self->rkey[s] != 0 && self->rkey[s] != id + 1)
        s = (s + 1) & (REWARD_CACHE - 1);
    self->rn += self->rkey[s] == 0;
    self->rkey[s] = id + 1;
    self->rval[s] = v;
}

static void rcache_clear(lmg *self)
{
    memset(self->rkey, 0, REWARD_CACHE * sizeof *self->rkey);
    self->rn = 0;
}

/* ---- the reward lib/lmgfn calls (bg_lmgfn_reward_fn) ------------------- */

typedef struct miss {
    uint64_t id;
    size_t at; /* where in logr */
} miss;

static int miss_cmp(const void *a, const void *b)
{
    uint64_t x = ((const miss *)a)->id, y = ((const miss *)b)->id;
    return x < y ? -1 : x > y;
}

/* log R(s_i ⊤) for the prefixes of k trajectories: the host's reward of
 * each prefix's id, from the cache, and one batched host call for the
 * distinct ids the cache lacks. */
static int lmg_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                      double *logr, bg_err *err)
{
    (void)g;
    lmg *self = ctx;
    int S = (int)self->max_len + 1;
    size_t cap = (size_t)k * self->max_len + 1, nm = 0, nu = 0;
    miss *ms = malloc(cap * sizeof *ms);
    uint64_t *uid = malloc(cap * sizeof *uid);
    double *uval = malloc(cap * sizeof *uval);
    int rc = ms && uid && uval ? BG_OK : bg_err_set(err, BG_ENOMEM, "lm_gfn: out of memory");
    for (int j = 0; rc == BG_OK && j < k; j++) {
        uint64_t id = 0;
        logr[j * S] = 0.0; /* the empty theory never terminates (min_len >= 1) */
        for (int i = 1; rc == BG_OK && i <= n[j]; i++) {
            int32_t t = z[j][i - 1];
            uint32_t sym = t >= 0 && t < self->V ? self->tok_sym[t] : 0;
            if (sym == 0) {
                rc =
                    bg_err_set(err, BG_EINTERNAL,
                               "lm_gfn: generated token %d is no symbol (the mask failed)", (int)t);
                break;
            }
            id |= (uint64_t)sym << (self->width * (uint32_t)(i - 1));
            size_t pos = (size_t)(j * S + i);
            logr[pos] = 0.0;
            if ((uint32_t)i >= self->min_len && !rcache_get(self, id, &logr[pos]))
                ms[nm++] = (miss){id, pos};
        }
    }
    if (rc == BG_OK && nm > 0) { /* the distinct ids, once each */
        qsort(ms, nm, sizeof *ms, miss_cmp);
        for (size_t m = 0; m < nm; m++)
            if (nu == 0 || uid[nu - 1] != ms[m].id)
                uid[nu++] = ms[m].id;
        int hrc = self->reward(self->reward_ctx, uid, nu, uval);
        if (hrc != BG_PLUGIN_OK)
            rc = bg_err_set(err, BG_EINTERNAL, "lm_gfn: the host's reward failed (%d) for %zu ids",
                            hrc, nu);
    }
    for (size_t u = 0; rc == BG_OK && u < nu; u++) {
        double v = uval[u];
        if (isnan(v) || v == INFINITY) {
            rc = bg_err_set(err, BG_EINTERNAL, "lm_gfn: the host's log reward of id %llu is %g",
                            (unsigned long long)uid[u], v);
            break;
        }
        uval[u] = v < self->floor ? self->floor : v;
        rcache_put(self, uid[u], uval[u]);
    }
    for (size_t m = 0, u = 0; rc == BG_OK && m < nm; m++) {
        while (uid[u] != ms[m].id)
            u++;
        logr[ms[m].at] = uval[u];
    }
    free(ms);
    free(uid);
    free(uval);
    return rc;
}

/* ---- create / destroy -------------------------------------------------- */

static void destroy(void *vself)
{
    lmg *self = vself;
    if (!self)
        return;
    bg_lmgfn_destroy(self->g);
    pthread_mutex_destroy(&self->mu);
    free(self->sym_tok);
    free(self->tok_sym);
    free(self->seq);
    free(self->rkey);
    free(self->rval);
    free(self->pkey);
    free(self->pval);
    free(self);
}

/* The space's symbols against the checkpoint: every token in the
 * vocabulary, distinct, none the stop token. */
static int check_symbols(const bg_host *host, const bg_cfg_node *config, const bg_space_symbols *sy,
                         int V)
{
    for (uint32_t s = 0; s < sy->n_symbols; s++) {
        int32_t t = sy->tokens[s];
        if (t < 0 || t >= V || t == STOP_TOKEN)
            return host->cfg_error(host->host_ctx, config,
                                   "symbol %u (`%s`) is token %d: expected a token of the "
                                   "checkpoint's vocabulary 0..%d other than %d (the stop token)",
                                   s + 1, sy->texts ? sy->texts[s] : "?", (int)t, V - 1,
                                   STOP_TOKEN);
        for (uint32_t r = 0; r < s; r++)
            if (sy->tokens[r] == t)
                return host->cfg_error(host->host_ctx, config,
                                       "symbols %u and %u are both token %d: a token must name "
                                       "one symbol",
                                       r + 1, s + 1, (int)t);
    }
    for (uint32_t i = 0; i < sy->n_prompt; i++)
        if (sy->prompt[i] < 0 || sy->prompt[i] >= V)
            return host->cfg_error(host->host_ctx, config,
                                   "prompt token %u is %d: outside the vocabulary of %d", i,
                                   (int)sy->prompt[i], V);
    return BG_PLUGIN_OK;
}

/* Builds the lmgfn on the checkpoint ck for the space; config errors go to
 * cfg_error. */
static int build(lmg *self, const bg_host *host, const bg_cfg_node *config, const lmg_cfg *pc,
                 const bg_space_symbols *sy, const bg_nn_ckpt *ck)
{
    unsigned char *legal = calloc((size_t)self->V, 1);
    if (!legal)
        return BG_PLUGIN_ENOMEM;
    for (uint32_t s = 0; s < sy->n_symbols; s++)
        legal[sy->tokens[s]] = 1;
    bg_lmgfn_opts o = {.prompt = sy->prompt,
                       .n_prompt = (int)sy->n_prompt,
                       .stop_token = STOP_TOKEN,
                       .min_len = (int)self->min_len,
                       .max_len = (int)self->max_len,
                       .legal = legal,
                       .batch = (int)pc->batch,
                       .objective = pc->loss ? BG_LMGFN_TB : BG_LMGFN_SUBTB,
                       .lambda = pc->lambda,
                       .p_replay = pc->p_replay,
                       .p_tempered = pc->p_tempered,
                       .temp_lo = pc->temp_lo,
                       .temp_hi = pc->temp_hi,
                       .rtemp_start = pc->reward_temp_start,
                       .rtemp_end = pc->reward_temp_end,
                       .rtemp_steps = (int)pc->reward_temp_steps,
                       .replay_cap = (int)pc->replay_capacity,
                       .replay_min_dist = (int)pc->replay_min_dist,
                       .lr_log_z = pc->lr_logz,
                       .seed = (uint64_t)pc->seed,
                       .reward = lmg_reward,
                       .reward_ctx = self};
    bg_nn_train_opts to = {
        .lora_rank = (int)pc->lora_rank,
        .seed = (uint64_t)pc->seed + 11,
        .adamw = {
            .lr = (float)pc->lr, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
    /* `backend: vulkan` is asked for by name, so a CPU-type device
     * (lavapipe) is accepted, as the host's LM service does (plugin_lm.c):
     * no GPU means lavapipe or a create error, never a silent CPU. */
    bg_compute_opts copts = {.kind = pc->backend ? BG_BACKEND_VULKAN : BG_BACKEND_CPU,
                             .threads = (int)pc->threads,
                             .allow_cpu_device = pc->backend != 0,
                             .device_index = -1};
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_lmgfn_create(ck, &copts, &to, &o, &self->g, &err);
    free(legal);
    if (rc == BG_ENOMEM)
        return BG_PLUGIN_ENOMEM;
    if (rc != BG_OK)
        return host->cfg_error(host->host_ctx, config, "the sampler's trainer: %s", err.msg);
    host->log(host->host_ctx, BG_PLUGIN_LOG_INFO, "the sampler's LM trains and samples on %s",
              pc->backend ? "vulkan" : "cpu");
    return BG_PLUGIN_OK;
}

static int create(const bg_host *host, const bg_cfg_node *config, const bg_space *space, void **out)
{
    lmg_cfg pc;
    int rc = host->cfg_apply(host->host_ctx, config, cfg_map, CFG_N, &pc);
    if (rc != BG_PLUGIN_OK)
        return rc;
    const bg_space_symbols *sy = space ? bg_space_symbols_of(space) : NULL;
    if (!sy || !bg_space_is_sequence(space))
        return host->cfg_error(host->host_ctx, config,
                               "lm_gfn samples token sequences (plugin ABI 1.4, "
                               "BG_SPACE_SEQUENCE); this model's ids are %u-bit sets: use the "
                               "gfn sampler, or a model of token sequences such as lm_theory "
                               "with `theories: {sampled: ...}`",
                               space ? space->n_bits : 0);
    uint32_t max_len = bg_space_seq_max_len(space), width = bg_space_seq_width(space);
    if (max_len > BG_LMGFN_MAX_LEN || sy->n_symbols < 1 || sy->n_symbols > (1u << width) - 1 ||
        sy->n_prompt < 1 || !sy->tokens || !sy->prompt || !sy->lm.checkpoint)
        return host->cfg_error(host->host_ctx, config,
                               "the model's sequence space (max_len %u, %u symbols of %u bits, "
                               "prompt of %u tokens) is not one lm_gfn can sample: max_len "
                               "1..%d, 1..2^width-1 symbols, a prompt and a checkpoint",
                               max_len, sy->n_symbols, width, sy->n_prompt, BG_LMGFN_MAX_LEN);
    if ((uint64_t)pc.min_len > max_len)
        return host->cfg_error(host->host_ctx, host->cfg_get(config, "min_len"),
                               "min_len %lld is above the space's max_len %u",
                               (long long)pc.min_len, max_len);
    bg_nn_ckpt ck;
    bg_err err;
    bg_err_clear(&err);
    if (bg_nn_ckpt_open(&ck, sy->lm.checkpoint, &err) != BG_OK)
        return host->cfg_error(host->host_ctx, config, "the model's checkpoint: %s", err.msg);
    lmg *self = calloc(1, sizeof *self);
    if (!self) {
        bg_nn_ckpt_close(&ck);
        return BG_PLUGIN_ENOMEM;
    }
    pthread_mutex_init(&self->mu, NULL);
    self->host = host;
    self->width = width;
    self->max_len = max_len;
    self->min_len = (uint32_t)pc.min_len;
    self->n_sym = sy->n_symbols;
    self->V = ck.cfg.vocab_size;
    self->n_prompt = (int)sy->n_prompt;
    self->floor = pc.log_reward_floor;
    rc = check_symbols(host, config, sy, self->V);
    if (rc == BG_PLUGIN_OK) {
        self->sym_tok = calloc(self->n_sym + 1, sizeof *self->sym_tok);
        self->tok_sym = calloc((size_t)self->V, sizeof *self->tok_sym);
        self->seq = calloc(sy->n_prompt + max_len, sizeof *self->seq);
        self->rkey = calloc(REWARD_CACHE, sizeof *self->rkey);
        self->rval = calloc(REWARD_CACHE, sizeof *self->rval);
        self->pcap = 1;
        while (self->pcap * 2 * (self->n_sym + 1) <= POLICY_CACHE_FLOATS)
            self->pcap *= 2;
        self->pkey = calloc(self->pcap, sizeof *self->pkey);
        self->pval = calloc((size_t)self->pcap * (self->n_sym + 1), sizeof *self->pval);
        if (!self->sym_tok || !self->tok_sym || !self->seq || !self->rkey || !self->rval ||
            !self->pkey || !self->pval)
            rc = BG_PLUGIN_ENOMEM;
    }
    if (rc == BG_PLUGIN_OK) {
        for (uint32_t s = 1; s <= self->n_sym; s++) {
            self->sym_tok[s] = sy->tokens[s - 1];
            self->tok_sym[sy->tokens[s - 1]] = s;
        }
        memcpy(self->seq, sy->prompt, sy->n_prompt * sizeof *self->seq);
        rc = build(self, host, config, &pc, sy, &ck);
    }
    bg_nn_ckpt_close(&ck); /* the trainer copied the weights */
    if (rc != BG_PLUGIN_OK) {
        destroy(self);
        return rc;
    }
    *out = self;
    return BG_PLUGIN_OK;
}

/* ---- train ------------------------------------------------------------- */

static void pcache_clear(lmg *self)
{
    memset(self->pkey, 0, self->pcap * sizeof *self->pkey);
    self->pn = 0;
}

static int train(void *vself, bg_log_reward_fn reward, void *reward_ctx, uint32_t steps)
{
    lmg *self = vself;
    const bg_host *host = self->host;
    uint64_t v = bg_reward_version(reward, reward_ctx);
    self->calls++;
    if (v == BG_REWARD_UNVERSIONED) /* above every host version (< 2^53) */
        v = (1ULL << 63) | self->calls;
    self->reward = reward;
    self->reward_ctx = reward_ctx;
    bg_err err;
    bg_err_clear(&err);
    int rc = BG_OK;
    if (v != bg_lmgfn_version(self->g)) {
        rcache_clear(self);
        rc = bg_lmgfn_set_version(self->g, v, &err);
    }
    for (uint32_t s = 0; rc == BG_OK && s < steps; s++)
        rc = bg_lmgfn_step(self->g, NULL, &err);
    pcache_clear(self); /* the policy moved */
    self->reward = NULL;
    self->reward_ctx = NULL;
    if (rc != BG_OK) {
        host->log(host->host_ctx, BG_PLUGIN_LOG_ERROR, "train: %s", err.msg);
        return rc == BG_ENOMEM ? BG_PLUGIN_ENOMEM : BG_PLUGIN_EINTERNAL;
    }
    if (host->metric_add)
        host->metric_add(host->host_ctx, "train_steps", steps);
    return BG_PLUGIN_OK;
}

/* ---- sample ------------------------------------------------------------ */

/* The prefix cache's slot of id, or -1. */
static long pcache_find(const lmg *self, uint64_t id)
{
    uint32_t s = slot_of(id, self->pcap);
    for (uint32_t probe = 0; probe < self->pcap; probe++, s = (s + 1) & (self->pcap - 1)) {
        if (self->pkey[s] == id + 1)
            return (long)s;
        if (self->pkey[s] == 0)
            return -1;
    }
    return -1;
}

/* Stores the policy's log-probabilities over [stop, symbol 1, ...,
 * symbol n_sym] after a prefix of len symbols, from its logits[V], as the
 * cache's entry of id (the caller keeps the table under half full). */
static void pcache_put(lmg *self, uint64_t id, uint32_t len, const float *logits)
{
    uint32_t s = slot_of(id, self->pcap), W = self->n_sym + 1;
    while (self->pkey[s] != 0 && self->pkey[s] != id + 1)
        s = (s + 1) & (self->pcap - 1);
    float *lp = self->pval + (size_t)s * W;
    int stop_ok = len >= self->min_len;
    double mx = stop_ok ? logits[STOP_TOKEN] : -INFINITY, z;
    for (uint32_t k = 1; k <= self->n_sym; k++)
        mx = fmax(mx, logits[self->sym_tok[k]]);
    z = stop_ok ? exp(logits[STOP_TOKEN] - mx) : 0;
    for (uint32_t k = 1; k <= self->n_sym; k++)
        z += exp(logits[self->sym_tok[k]] - mx);
    double lz = mx + log(z);
    lp[0] = stop_ok ? (float)(logits[STOP_TOKEN] - lz) : -INFINITY;
    for (uint32_t k = 1; k <= self->n_sym; k++)
        lp[k] = (float)(logits[self->sym_tok[k]] - lz);
    self->pn += self->pkey[s] == 0;
    self->pkey[s] = id + 1;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The K draws of sample(), advanced together one symbol a level. */
typedef struct draws {
    size_t n;
    const double *u; /* [n * max_len]: draw j's uniform at level i is u[j * max_len + i] */
    uint64_t *h;     /* [n] the prefix so far, then the id */
    double *lq;      /* [n] */
    unsigned char *live;
    uint64_t *miss; /* [chunk] scratch: a chunk's prefixes the cache lacks */
    int32_t *tok;   /* [chunk * (n_prompt + max_len)] */
    float *logits;  /* [chunk * V] */
} draws;

/* Level i of draws [a, b) (b - a <= pcap / 2, so the misses fit the cache
 * without a clear): the distinct prefixes the cache lacks go through the
 * trainer as one batch, then each live draw picks its symbol. */
static int level_chunk(lmg *self, draws *d, uint32_t i, size_t a, size_t b)
{
    if (self->pn + (b - a) > self->pcap / 2)
        pcache_clear(self);
    size_t nm = 0;
    for (size_t j = a; j < b; j++)
        if (d->live[j] && pcache_find(self, d->h[j]) < 0)
            d->miss[nm++] = d->h[j];
    if (nm > 0) {
        qsort(d->miss, nm, sizeof *d->miss, u64_cmp);
        size_t nu = 0;
        for (size_t m = 0; m < nm; m++)
            if (nu == 0 || d->miss[nu - 1] != d->miss[m])
                d->miss[nu++] = d->miss[m];
        int n = self->n_prompt + (int)i;
        uint64_t mask = (1ULL << self->width) - 1;
        for (size_t m = 0; m < nu; m++) {
            int32_t *row = d->tok + m * (size_t)n;
            memcpy(row, self->seq, (size_t)self->n_prompt * sizeof *row);
            for (uint32_t k = 0; k < i; k++)
                row[self->n_prompt + (int)k] =
                    self->sym_tok[(d->miss[m] >> (self->width * k)) & mask];
        }
        bg_err err;
        bg_err_clear(&err);
        if (bg_nn_train_logits_batch(bg_lmgfn_trainer(self->g), d->tok, (int)nu, n, d->logits,
                                     &err) != BG_OK) {
            self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "sample: %s", err.msg);
            return BG_PLUGIN_EINTERNAL;
        }
        for (size_t m = 0; m < nu; m++)
            pcache_put(self, d->miss[m], i, d->logits + m * (size_t)self->V);
    }
    for (size_t j = a; j < b; j++) {
        if (!d->live[j])
            continue;
        long s = pcache_find(self, d->h[j]);
        if (s < 0) { /* cannot happen: the chunk's prefixes were put above */
            self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR,
                            "sample: prefix %llu missing from the cache it was put in",
                            (unsigned long long)d->h[j]);
            return BG_PLUGIN_EINTERNAL;
        }
        const float *lp = self->pval + (size_t)s * (self->n_sym + 1);
        double u = d->u[j * self->max_len + i], acc = 0;
        uint32_t pick = self->n_sym; /* rounding: the last symbol */
        for (uint32_t k = 0; k <= self->n_sym; k++) {
            acc += exp(lp[k]);
            if (u < acc) {
                pick = k;
                break;
            }
        }
        d->lq[j] += lp[pick];
        if (pick == 0)
            d->live[j] = 0;
        else
            d->h[j] |= (uint64_t)pick << (self->width * i);
    }
    return BG_PLUGIN_OK;
}

/* n draws: each a walk from the empty prefix, a symbol or stop at each
 * level by its own uniform (drawn from rng up front, draw by draw, max_len
 * each), stop forced by max_len. Level by level, so a level's distinct new
 * prefixes are one batched forward (bg_nn_train_logits_batch) instead of
 * one forward each. */
static int draw_all(lmg *self, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    if (n == 0)
        return BG_PLUGIN_OK;
    size_t chunk = self->pcap / 2 < SAMPLE_CHUNK ? self->pcap / 2 : SAMPLE_CHUNK;
    size_t L = self->max_len, width = (size_t)self->n_prompt + L;
    draws d = {.n = n};
    double *u = malloc(n * L * sizeof *u);
    d.u = u;
    d.h = calloc(n, sizeof *d.h);
    d.lq = calloc(n, sizeof *d.lq);
    d.live = malloc(n);
    d.miss = malloc(chunk * sizeof *d.miss);
    d.tok = malloc(chunk * width * sizeof *d.tok);
    d.logits = malloc(chunk * (size_t)self->V * sizeof *d.logits);
    int rc =
        u && d.h && d.lq && d.live && d.miss && d.tok && d.logits ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    if (rc == BG_PLUGIN_OK) {
        for (size_t k = 0; k < n * L; k++)
            u[k] = bg_rng_next_uniform(rng);
        memset(d.live, 1, n);
    }
    for (uint32_t i = 0; rc == BG_PLUGIN_OK && i < self->max_len; i++)
        for (size_t a = 0; rc == BG_PLUGIN_OK && a < n; a += chunk)
            rc = level_chunk(self, &d, i, a, a + chunk < n ? a + chunk : n);
    if (rc == BG_PLUGIN_OK) {
        memcpy(ids, d.h, n * sizeof *ids);
        if (log_q)
            memcpy(log_q, d.lq, n * sizeof *log_q);
    }
    free(u);
    free(d.h);
    free(d.lq);
    free(d.live);
    free(d.miss);
    free(d.tok);
    free(d.logits);
    return rc;
}

static int sample(const void *vself, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    lmg *self = (lmg *)vself; /* the caches and the trainer's scratch, under mu */
    pthread_mutex_lock(&self->mu);
    int rc = draw_all(self, rng, n, ids, log_q);
    pthread_mutex_unlock(&self->mu);
    return rc;
}

/* ---- save / load: the adapters (lib/nn's LoRA file) --------------------- */

static int save(const void *vself, const char *path)
{
    lmg *self = (lmg *)vself;
    bg_err err;
    bg_err_clear(&err);
    pthread_mutex_lock(&self->mu);
    int rc = bg_nn_lora_save(bg_lmgfn_trainer(self->g), path, &err);
    pthread_mutex_unlock(&self->mu);
    if (rc != BG_OK)
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "save %s: %s", path, err.msg);
    return rc == BG_OK ? BG_PLUGIN_OK : BG_PLUGIN_EIO;
}

static int load(void *vself, const char *path)
{
    lmg *self = vself;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_nn_lora_load(bg_lmgfn_trainer(self->g), path, &err);
    pcache_clear(self);
    if (rc != BG_OK)
        self->host->log(self->host->host_ctx, BG_PLUGIN_LOG_ERROR, "load %s: %s", path, err.msg);
    return rc == BG_OK ? BG_PLUGIN_OK : BG_PLUGIN_EIO;
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
    BG_PLUGIN_DESC_HEAD, /* 1.4: sequence spaces */
    .name = "lm_gfn",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_SAMPLER,
    .description = "a language model fine-tuned as a GFlowNet (LoRA, SubTB) over token-sequence "
                   "theories",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.sampler = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
