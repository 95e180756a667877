/*
 * lm_theory.c — hypothesis model: theories written in language, judged by
 * a language model (docs/LM_THEORY.md). Hypothesis i is the sentence
 * theories[i] of the config ("deleting files outside /tmp is harmful");
 * its label — the verdict's cautious.label — is that sentence.
 *
 * P(harm | action, theory) is the LM's choice between two continuations of
 * a prompt rendered from the `prompt` template ({tool}, {args}: the
 * action's tool and its JSON arguments, each cut to `max_args` bytes;
 * {theory}: the sentence):
 *
 *     P = p(prompt + harm) / (p(prompt + harm) + p(prompt + safe))
 *       = sigmoid(log p(rest, harm | pre) − log p(rest, safe | pre))
 *
 * where `pre` is the rendered text before {theory} (after BOS) and `rest`
 * the rendered text from {theory} on; the terms of `rest` cancel, so two
 * scored continuations per theory give P exactly. pre, rest and harm/safe
 * are tokenised apart, each with llama2.c's one leading space (plugin.h,
 * lm_encode), so the model reads "pre rest harm" as words: the defaults
 * have no space of their own at those joins. An observed outcome has
 * likelihood P (harmed) or 1 − P (not harmed), computed the same way for
 * the observation's action. The prior is uniform over the listed theories.
 *
 * Batching: one harm() or log_lik() call = one host->lm_score call of
 * 2·n items: for theory i the prefix BOS pre rest_i with the continuations
 * harm and safe (log p(harm | BOS pre rest_i) − log p(safe | ...) is d_i
 * above); the host prefills `pre` once for all n (its KV reuse across
 * prefixes) and joins the call to the model's queue with concurrent ones.
 *
 * The seam for a sampler over theories (`lm_gfn`, not here): theory_probs()
 * scores any list of sentences, not only the configured ones; a model whose
 * theories are sampled token sequences would call it with the decoded
 * texts, and lm_next (plugin.h) gives the sampler its next-token
 * distributions from the same shared model.
 *
 * Bounds (the action is the agent's, not trusted): {tool} and {args} are
 * cut to max_args bytes each, so a rendered sequence has at most
 * 1 + 2 + template + 2·max_args + longest theory + longest of harm/safe
 * tokens (BOS, two leading spaces, and a token is at least one byte),
 * checked against the model's seq_len at create.
 *
 * Threads: immutable after create; harm/log_lik from any thread (the host's
 * queue serialises the model). Ownership: create mallocs, destroy frees
 * and closes the model handle.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/plugin.h"

#define MAX_THEORIES 256
#define MAX_THEORY_LEN 120 /* bytes: a label (128) holds the whole sentence */
#define TEXT_MAX 512       /* prompt, harm, safe */
#define PATH_MAX_LEN 1024

typedef struct model_cfg {
    char checkpoint[PATH_MAX_LEN];
    char tokenizer[PATH_MAX_LEN];
    int backend; /* index into "cpu|vulkan|auto" */
    char adapter[PATH_MAX_LEN];
} model_cfg;

typedef struct text_cfg {
    char prompt[TEXT_MAX];
    char harm[TEXT_MAX];
    char safe[TEXT_MAX];
    int64_t max_args;
} text_cfg;

static const bg_cfg_entry model_map[] = {
    {.key = "checkpoint",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = offsetof(model_cfg, checkpoint),
     .size = PATH_MAX_LEN,
     .desc = "llama2.c checkpoint (relative: to the policy file's directory)"},
    {.key = "tokenizer",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = offsetof(model_cfg, tokenizer),
     .size = PATH_MAX_LEN,
     .desc = "llama2.c tokenizer.bin of the checkpoint's vocabulary"},
    {.key = "backend",
     .type = BG_CFGV_ENUM,
     .def = "auto",
     .offset = offsetof(model_cfg, backend),
     .choices = "cpu|vulkan|auto",
     .desc = "where the model runs (auto: a Vulkan GPU, else CPU)"},
    {.key = "adapter",
     .type = BG_CFGV_STRING,
     .def = "",
     .offset = offsetof(model_cfg, adapter),
     .size = PATH_MAX_LEN,
     .desc = "LoRA adapter file folded into the weights (\"\" = none)"},
};

/* The top-level scalars; `model` and `theories` are read by hand (a map
 * and a list of sentences), so this table documents and fills these four. */
static const bg_cfg_entry cfg_map[] = {
    {.key = "prompt",
     .type = BG_CFGV_STRING,
     .def = "\"Action: {tool} {args}\\nTheory:{theory}\\nSo this action is\"",
     .offset = offsetof(text_cfg, prompt),
     .size = TEXT_MAX,
     .desc = "template: {tool}, {args} (the action), {theory} (required, once)"},
    {.key = "harm",
     .type = BG_CFGV_STRING,
     .def = "harmful",
     .offset = offsetof(text_cfg, harm),
     .size = TEXT_MAX,
     .desc = "the continuation that means harm"},
    {.key = "safe",
     .type = BG_CFGV_STRING,
     .def = "fine",
     .offset = offsetof(text_cfg, safe),
     .size = TEXT_MAX,
     .desc = "the continuation that means no harm"},
    {.key = "max_args",
     .type = BG_CFGV_INT,
     .def = "128",
     .offset = offsetof(text_cfg, max_args),
     .min = 0,
     .max = 4096,
     .desc = "bytes of the tool name and of the arguments JSON kept"},
};
#define CFG_N (sizeof cfg_map / sizeof cfg_map[0])
#define MODEL_N (sizeof model_map / sizeof model_map[0])

typedef struct lmt {
    const bg_host *host;
    bg_lm *lm;
    bg_lm_info info;
    text_cfg t;
    size_t n;
    char **theory; /* [n] */
    int32_t *harm_ids, *safe_ids;
    size_t n_harm, n_safe;
} lmt;

static void destroy(void *vself)
{
    lmt *self = vself;
    if (!self)
        return;
    if (self->lm)
        self->host->lm_close(self->host->host_ctx, self->lm);
    for (size_t i = 0; self->theory && i < self->n; i++)
        free(self->theory[i]);
    free(self->theory);
    free(self->harm_ids);
    free(self->safe_ids);
    free(self);
}

/* Tokenises text into a new array; BG_PLUGIN_OK or an error. */
static int encode(const lmt *self, const char *text, int32_t **ids, size_t *n)
{
    size_t cap = strlen(text) + 3; /* lm_encode's most */
    *ids = malloc(cap * sizeof **ids);
    if (!*ids)
        return BG_PLUGIN_ENOMEM;
    return self->host->lm_encode(self->lm, text, *ids, cap, n);
}

static int read_theories(lmt *self, const bg_host *host, const bg_cfg_node *config)
{
    const bg_cfg_node *th = host->cfg_get(config, "theories");
    if (!th || host->cfg_type(th) != BG_CFG_SEQ || host->cfg_len(th) == 0)
        return host->cfg_error(host->host_ctx, th,
                               "`theories` must be a list of 1..%d sentences (the hypotheses)",
                               MAX_THEORIES);
    size_t n = host->cfg_len(th);
    if (n > MAX_THEORIES)
        return host->cfg_error(host->host_ctx, th, "%zu theories; at most %d", n, MAX_THEORIES);
    if (!(self->theory = calloc(n, sizeof *self->theory)))
        return BG_PLUGIN_ENOMEM;
    self->n = n;
    for (size_t i = 0; i < n; i++) {
        const bg_cfg_node *it = host->cfg_item(th, i);
        const char *s = host->cfg_scalar(it);
        if (!s || !*s || strlen(s) > MAX_THEORY_LEN)
            return host->cfg_error(host->host_ctx, it,
                                   "theory %zu must be a sentence of 1..%d bytes", i,
                                   MAX_THEORY_LEN);
        if (!(self->theory[i] = strdup(s)))
            return BG_PLUGIN_ENOMEM;
    }
    return BG_PLUGIN_OK;
}

/* The four keys of cfg_map: defaults by cfg_apply, values read by hand
 * (cfg_apply on the whole map would refuse `model` and `theories`). */
static int read_scalars(lmt *self, const bg_host *host, const bg_cfg_node *config)
{
    int rc = host->cfg_apply(host->host_ctx, NULL, cfg_map, CFG_N, &self->t);
    char *dst[3] = {self->t.prompt, self->t.harm, self->t.safe};
    for (size_t j = 0; rc == BG_PLUGIN_OK && j < CFG_N; j++) {
        const bg_cfg_node *v = host->cfg_get(config, cfg_map[j].key);
        const char *s = v ? host->cfg_scalar(v) : NULL;
        if (!v)
            continue;
        if (!s)
            return host->cfg_error(host->host_ctx, v, "`%s` must be a scalar", cfg_map[j].key);
        if (j < 3) {
            if (strlen(s) >= TEXT_MAX)
                return host->cfg_error(host->host_ctx, v, "`%s` is longer than %d bytes",
                                       cfg_map[j].key, TEXT_MAX - 1);
            strcpy(dst[j], s);
            continue;
        }
        char *end = NULL;
        long long x = strtoll(s, &end, 10);
        if (!*s || *end || x < 0 || x > (long long)cfg_map[j].max)
            return host->cfg_error(host->host_ctx, v, "`max_args` must be an integer in 0..%g",
                                   cfg_map[j].max);
        self->t.max_args = x;
    }
    return rc;
}

static int check_keys(const bg_host *host, const bg_cfg_node *config)
{
    int rc = BG_PLUGIN_OK;
    for (size_t i = 0; i < host->cfg_len(config); i++) {
        const char *k = host->cfg_key(config, i);
        int known = strcmp(k, "model") == 0 || strcmp(k, "theories") == 0;
        for (size_t j = 0; j < CFG_N; j++)
            known |= strcmp(k, cfg_map[j].key) == 0;
        if (!known)
            rc = host->cfg_error(host->host_ctx, host->cfg_value(config, i),
                                 "unknown key `%s`; expected model, theories, prompt, harm, safe, "
                                 "max_args",
                                 k);
    }
    return rc;
}

static int create(const bg_host *host, const bg_cfg_node *config, void **out)
{
    if (host->abi_minor < 3 || !host->lm_open)
        return host->cfg_error(host->host_ctx, NULL,
                               "needs a host with the language-model service (ABI 1.3)");
    if (!config || host->cfg_type(config) != BG_CFG_MAP)
        return host->cfg_error(host->host_ctx, config,
                               "config must be a map with `model` and `theories`");
    lmt *self = calloc(1, sizeof *self);
    model_cfg *mc = calloc(1, sizeof *mc);
    int rc = self && mc ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    if (rc == BG_PLUGIN_OK) {
        self->host = host;
        rc = check_keys(host, config);
    }
    if (rc == BG_PLUGIN_OK)
        rc = read_scalars(self, host, config);
    const bg_cfg_node *mn = config ? host->cfg_get(config, "model") : NULL;
    if (rc == BG_PLUGIN_OK && (!mn || host->cfg_type(mn) != BG_CFG_MAP))
        rc = host->cfg_error(host->host_ctx, mn ? mn : NULL,
                             "`model` must be a map: checkpoint, tokenizer, backend, adapter");
    if (rc == BG_PLUGIN_OK)
        rc = host->cfg_apply(host->host_ctx, mn, model_map, MODEL_N, mc);
    const char *ph = strstr(self ? self->t.prompt : "", "{theory}");
    if (rc == BG_PLUGIN_OK && (!ph || strstr(ph + 1, "{theory}")))
        rc = host->cfg_error(host->host_ctx, host->cfg_get(config, "prompt"),
                             "`prompt` must contain {theory} exactly once");
    if (rc == BG_PLUGIN_OK &&
        (!self->t.harm[0] || !self->t.safe[0] || strcmp(self->t.harm, self->t.safe) == 0))
        rc = host->cfg_error(host->host_ctx, host->cfg_get(config, "harm"),
                             "`harm` and `safe` must be two different non-empty strings");
    if (rc == BG_PLUGIN_OK)
        rc = read_theories(self, host, config);
    if (rc == BG_PLUGIN_OK) {
        static const char *const backends[] = {"cpu", "vulkan", "auto"};
        bg_lm_spec spec = {.size = sizeof spec,
                           .checkpoint = mc->checkpoint,
                           .tokenizer = mc->tokenizer,
                           .backend = backends[mc->backend],
                           .adapter = mc->adapter};
        rc = host->lm_open(host->host_ctx, mn, &spec, &self->lm);
    }
    if (rc == BG_PLUGIN_OK) {
        host->lm_info(self->lm, &self->info);
        rc = encode(self, self->t.harm, &self->harm_ids, &self->n_harm);
        if (rc == BG_PLUGIN_OK)
            rc = encode(self, self->t.safe, &self->safe_ids, &self->n_safe);
        if (rc != BG_PLUGIN_OK)
            rc = host->cfg_error(host->host_ctx, host->cfg_get(config, "harm"),
                                 "`harm`/`safe` cannot be tokenised by this tokenizer");
    }
    if (rc == BG_PLUGIN_OK) {
        size_t longest = 0;
        for (size_t i = 0; i < self->n; i++)
            longest = strlen(self->theory[i]) > longest ? strlen(self->theory[i]) : longest;
        size_t worst = 1 + 2 + strlen(self->t.prompt) + 2 * (size_t)self->t.max_args + longest +
                       (self->n_harm > self->n_safe ? self->n_harm : self->n_safe);
        if (worst > (size_t)self->info.seq_len)
            rc = host->cfg_error(host->host_ctx, host->cfg_get(config, "max_args"),
                                 "a prompt may reach %zu tokens (template %zu + 2 x max_args %lld "
                                 "+ theory %zu + continuation); the model's context is %d: "
                                 "lower max_args or shorten the prompt/theories",
                                 worst, strlen(self->t.prompt), (long long)self->t.max_args,
                                 longest, self->info.seq_len);
    }
    free(mc);
    if (rc != BG_PLUGIN_OK) {
        destroy(self);
        return rc;
    }
    *out = self;
    return BG_PLUGIN_OK;
}

static uint64_t count(const void *vself)
{
    return ((const lmt *)vself)->n;
}

static int log_prior(const void *vself, const uint64_t *h, size_t n, double *out)
{
    const lmt *self = vself;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->n)
            return BG_PLUGIN_EINVAL;
        out[i] = 0.0;
    }
    return BG_PLUGIN_OK;
}

/* Appends s cut to max bytes at a UTF-8 boundary. */
static void put(char *buf, size_t cap, size_t *len, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if (*len + n >= cap)
        n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
}

/* The template from `from` to `to` (exclusive; NULL = end) with {tool}
 * and {args} filled, and {theory} when theory != NULL. */
static void render(const lmt *self, const bg_action *a, const char *theory, const char *from,
                   const char *to, char *buf, size_t cap)
{
    size_t len = 0, ma = (size_t)self->t.max_args;
    buf[0] = 0;
    for (const char *p = from; *p && (!to || p < to);) {
        if (strncmp(p, "{tool}", 6) == 0) {
            put(buf, cap, &len, a->tool, ma);
            p += 6;
        } else if (strncmp(p, "{args}", 6) == 0) {
            put(buf, cap, &len, a->arguments_json ? a->arguments_json : "", ma);
            p += 6;
        } else if (theory && strncmp(p, "{theory}", 8) == 0) {
            put(buf, cap, &len, theory, MAX_THEORY_LEN);
            p += 8;
        } else {
            char c[2] = {*p++, 0};
            put(buf, cap, &len, c, 1);
        }
    }
}

/* The seam (header comment): lp_harm[i] − lp_safe[i] for sentences
 * texts[0..n) given action a, as d[i]: P(harm) = sigmoid(d[i]). One
 * lm_score call of 2n items. */
static int theory_logit(const lmt *self, const bg_action *a, const char *const *texts, size_t n,
                        double *d)
{
    const bg_host *host = self->host;
    size_t cap = strlen(self->t.prompt) + 2 * (size_t)self->t.max_args + MAX_THEORY_LEN + 8;
    char *buf = malloc(cap);
    int32_t *pre = NULL;
    size_t n_pre = 0;
    int32_t **conts = calloc(n, sizeof *conts); /* [n] BOS pre rest_i */
    bg_lm_item *items = calloc(2 * n, sizeof *items);
    double *lp = malloc(2 * n * sizeof *lp);
    int rc = buf && conts && items && lp ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    const char *ph = strstr(self->t.prompt, "{theory}");
    if (rc == BG_PLUGIN_OK) {
        render(self, a, NULL, self->t.prompt, ph, buf, cap);
        rc = (pre = malloc((strlen(buf) + 4) * sizeof *pre)) ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    }
    if (rc == BG_PLUGIN_OK) {
        pre[0] = self->info.bos;
        rc = host->lm_encode(self->lm, buf, pre + 1, strlen(buf) + 3, &n_pre);
        n_pre += 1;
    }
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < n; i++) {
        render(self, a, texts[i], ph, NULL, buf, cap);
        size_t m = 0;
        int32_t *p = malloc((n_pre + strlen(buf) + 3) * sizeof *p);
        if (!(conts[i] = p)) {
            rc = BG_PLUGIN_ENOMEM;
            break;
        }
        memcpy(p, pre, n_pre * sizeof *p);
        rc = host->lm_encode(self->lm, buf, p + n_pre, strlen(buf) + 3, &m);
        items[2 * i] = (bg_lm_item){p, n_pre + m, self->harm_ids, self->n_harm};
        items[2 * i + 1] = (bg_lm_item){p, n_pre + m, self->safe_ids, self->n_safe};
    }
    if (rc != BG_PLUGIN_OK && rc != BG_PLUGIN_ENOMEM)
        host->log(host->host_ctx, BG_PLUGIN_LOG_ERROR,
                  "the prompt for tool %.64s cannot be tokenised (a byte the vocabulary lacks)",
                  a->tool);
    char msg[256] = "";
    if (rc == BG_PLUGIN_OK) {
        rc = host->lm_score(self->lm, items, 2 * n, lp, msg, sizeof msg);
        if (rc != BG_PLUGIN_OK)
            host->log(host->host_ctx, BG_PLUGIN_LOG_ERROR, "%s", msg);
    }
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < n; i++)
        d[i] = lp[2 * i] - lp[2 * i + 1];
    for (size_t i = 0; conts && i < n; i++)
        free(conts[i]);
    free(conts);
    free(items);
    free(lp);
    free(pre);
    free(buf);
    return rc;
}

/* The logits of hypotheses h[0..n) for action a. */
static int logits_of(const lmt *self, const bg_action *a, const uint64_t *h, size_t n, double *d)
{
    const char **texts = calloc(n ? n : 1, sizeof *texts); /* zeroed: gcc -O2 reads a
                                                            * const pointer array as used */
    if (!texts)
        return BG_PLUGIN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= self->n) {
            free(texts);
            return BG_PLUGIN_EINVAL;
        }
        texts[i] = self->theory[h[i]];
    }
    int rc = theory_logit(self, a, texts, n, d);
    free(texts);
    return rc;
}

/* log sigmoid(x), stable at both ends. */
static double log_sigmoid(double x)
{
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

static int log_lik(const void *vself, const bg_observation *obs, const bg_observation *history,
                   size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)history;
    (void)n_hist;
    int rc = logits_of(vself, &obs->action, h, n, out);
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < n; i++)
        out[i] = log_sigmoid(obs->harmed ? out[i] : -out[i]);
    return rc;
}

static int harm(const void *vself, const bg_action *action, const bg_observation *history,
                size_t n_hist, const uint64_t *h, size_t n, double *out)
{
    (void)history;
    (void)n_hist;
    int rc = logits_of(vself, action, h, n, out);
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < n; i++)
        out[i] = exp(log_sigmoid(out[i]));
    return rc;
}

static int label(const void *vself, uint64_t h, char *buf, size_t len)
{
    const lmt *self = vself;
    if (h >= self->n)
        return BG_PLUGIN_EINVAL;
    snprintf(buf, len, "%s", self->theory[h]);
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
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "lm_theory",
    .version = "1.0.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "theories in language; P(harm | action, theory) from a language model",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.hypothesis = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
