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
 * log_lik() of an observation asks the same 2·n items as harm() of its
 * action, so the Observe of an evaluated action is answered by the host's
 * score cache (plugin_lm_cache.c) without a forward.
 *
 * Sampled mode (`theories: {sampled: {vocabulary: [...], max_len: N}}`,
 * plugin ABI 1.4): the theories are every sequence of 1..max_len words of
 * the vocabulary, too many to list; count() is 0 and an id is a token
 * sequence of the space (plugin.h, BG_SPACE_SEQUENCE): symbol s is word
 * s − 1, width = the bits of n_words. The theory's text is its words
 * joined by single spaces, scored by theory_logit() exactly as a listed
 * sentence, and its label is that text. The prior is uniform over the
 * sequences (log 0 for every well-formed id, −INFINITY for the empty or a
 * malformed one). symbols() tells the sampler (`lm_gfn`) the model files,
 * one language-model token per word (the last token of its encoding; the
 * words' last tokens must differ) and a prompt (BOS and the template's
 * line up to {theory}, its {tool}/{args} left out), so the sampler's LM
 * starts from what the words mean to the same model.
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
#define MAX_WORDS 1023     /* sampled mode: symbols of up to 10 bits */
#define MAX_SEQ_LEN 32     /* sampled mode: words per theory */
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
    /* sampled mode (n == 0): theories are sequences of words */
    int sampled;
    size_t n_words;
    char **word;             /* [n_words] */
    uint32_t width, max_len; /* the space: bits per word, words per theory */
    int32_t *word_tok;       /* [n_words] each word's token, for the sampler */
    int32_t *prompt_ids;     /* BOS + the template's {theory} line before it */
    size_t n_prompt_ids;
    model_cfg files;     /* the model files, named in symbols() */
    const char *backend; /* static string */
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
    for (size_t i = 0; self->word && i < self->n_words; i++)
        free(self->word[i]);
    free(self->word);
    free(self->word_tok);
    free(self->prompt_ids);
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

/* theories: {sampled: {vocabulary: [words], max_len: N}}: the words and the
 * space; the words' tokens come later (read_word_tokens, with the model). */
static int read_sampled(lmt *self, const bg_host *host, const bg_cfg_node *th)
{
    const bg_cfg_node *sm = host->cfg_get(th, "sampled");
    if (host->cfg_len(th) != 1 || !sm || host->cfg_type(sm) != BG_CFG_MAP)
        return host->cfg_error(host->host_ctx, th,
                               "`theories` must be a list of sentences or {sampled: {vocabulary: "
                               "[words], max_len: N}}");
    for (size_t i = 0; i < host->cfg_len(sm); i++) {
        const char *k = host->cfg_key(sm, i);
        if (strcmp(k, "vocabulary") != 0 && strcmp(k, "max_len") != 0)
            return host->cfg_error(host->host_ctx, host->cfg_value(sm, i),
                                   "unknown key `%s` in theories.sampled; expected vocabulary, "
                                   "max_len",
                                   k);
    }
    const bg_cfg_node *vn = host->cfg_get(sm, "vocabulary"), *ln = host->cfg_get(sm, "max_len");
    size_t n = vn && host->cfg_type(vn) == BG_CFG_SEQ ? host->cfg_len(vn) : 0;
    if (n == 0 || n > MAX_WORDS)
        return host->cfg_error(host->host_ctx, vn ? vn : sm,
                               "theories.sampled.vocabulary must be a list of 1..%d words",
                               MAX_WORDS);
    const char *ls = ln ? host->cfg_scalar(ln) : NULL;
    char *end = NULL;
    long long ml = ls ? strtoll(ls, &end, 10) : 0;
    if (!ls || !*ls || *end || ml < 1 || ml > MAX_SEQ_LEN)
        return host->cfg_error(host->host_ctx, ln ? ln : sm,
                               "theories.sampled.max_len must be an integer in 1..%d (words per "
                               "theory)",
                               MAX_SEQ_LEN);
    if (!(self->word = calloc(n, sizeof *self->word)))
        return BG_PLUGIN_ENOMEM;
    self->n_words = n;
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        const bg_cfg_node *it = host->cfg_item(vn, i);
        const char *w = host->cfg_scalar(it);
        if (!w || !*w || strchr(w, ' ') || strlen(w) > MAX_THEORY_LEN)
            return host->cfg_error(host->host_ctx, it,
                                   "word %zu must be 1..%d bytes without spaces (a theory is its "
                                   "words joined by spaces)",
                                   i, MAX_THEORY_LEN);
        for (size_t j = 0; j < i; j++)
            if (strcmp(self->word[j], w) == 0)
                return host->cfg_error(host->host_ctx, it, "word `%s` is listed twice", w);
        if (!(self->word[i] = strdup(w)))
            return BG_PLUGIN_ENOMEM;
        longest = strlen(w) > longest ? strlen(w) : longest;
    }
    self->width = 1;
    while ((1u << self->width) - 1 < n)
        self->width++;
    self->max_len = (uint32_t)ml;
    if (self->width * self->max_len > 64)
        return host->cfg_error(host->host_ctx, ln,
                               "max_len %lld words of %u bits (a vocabulary of %zu) take %u bits; "
                               "an id holds 64: lower max_len to %u or shorten the vocabulary",
                               ml, self->width, n, self->width * self->max_len, 64 / self->width);
    if (self->max_len * (longest + 1) - 1 > MAX_THEORY_LEN)
        return host->cfg_error(host->host_ctx, ln,
                               "a theory of max_len %lld words of up to %zu bytes may reach %zu "
                               "bytes; a label holds %d: lower max_len or shorten the words",
                               ml, longest, self->max_len * (longest + 1) - 1, MAX_THEORY_LEN);
    self->sampled = 1;
    return BG_PLUGIN_OK;
}

static int read_theories(lmt *self, const bg_host *host, const bg_cfg_node *config)
{
    const bg_cfg_node *th = host->cfg_get(config, "theories");
    if (th && host->cfg_type(th) == BG_CFG_MAP)
        return read_sampled(self, host, th);
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

/* Sampled mode, with the model open: each word's token (the last of its
 * encoding; distinct, so a token names one word) and the sampler's prompt. */
static int read_word_tokens(lmt *self, const bg_host *host, const bg_cfg_node *config)
{
    const bg_cfg_node *vn =
        host->cfg_get(host->cfg_get(host->cfg_get(config, "theories"), "sampled"), "vocabulary");
    if (!(self->word_tok = calloc(self->n_words, sizeof *self->word_tok)))
        return BG_PLUGIN_ENOMEM;
    for (size_t i = 0; i < self->n_words; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = encode(self, self->word[i], &ids, &n);
        if (rc == BG_PLUGIN_OK && n > 0)
            self->word_tok[i] = ids[n - 1];
        free(ids);
        if (rc == BG_PLUGIN_ENOMEM)
            return rc;
        if (rc != BG_PLUGIN_OK || n == 0)
            return host->cfg_error(host->host_ctx, host->cfg_item(vn, i),
                                   "word `%s` cannot be tokenised by this tokenizer",
                                   self->word[i]);
        for (size_t j = 0; j < i; j++)
            if (self->word_tok[j] == self->word_tok[i])
                return host->cfg_error(host->host_ctx, host->cfg_item(vn, i),
                                       "words `%s` and `%s` end in the same token (%d): the "
                                       "sampler generates one token per word, so each word's "
                                       "last token must be its own",
                                       self->word[j], self->word[i], (int)self->word_tok[i]);
    }
    /* the prompt: BOS and the template's line up to {theory}, placeholders out */
    const char *ph = strstr(self->t.prompt, "{theory}"), *line = ph;
    while (line > self->t.prompt && line[-1] != '\n')
        line--;
    char buf[TEXT_MAX];
    size_t len = 0;
    for (const char *p = line; p < ph;) {
        if (strncmp(p, "{tool}", 6) == 0 || strncmp(p, "{args}", 6) == 0) {
            p += 6;
            continue;
        }
        buf[len++] = *p++;
    }
    buf[len] = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = encode(self, buf, &ids, &n);
    if (rc == BG_PLUGIN_OK && !(self->prompt_ids = malloc((n + 1) * sizeof *ids)))
        rc = BG_PLUGIN_ENOMEM;
    if (rc == BG_PLUGIN_OK) {
        self->prompt_ids[0] = self->info.bos;
        memcpy(self->prompt_ids + 1, ids, n * sizeof *ids);
        self->n_prompt_ids = n + 1;
    }
    free(ids);
    if (rc != BG_PLUGIN_OK && rc != BG_PLUGIN_ENOMEM)
        return host->cfg_error(host->host_ctx, host->cfg_get(config, "prompt"),
                               "the prompt's {theory} line cannot be tokenised");
    return rc;
}

/* The longest theory in bytes: a listed sentence, or max_len words. */
static size_t longest_theory(const lmt *self)
{
    size_t longest = 0;
    for (size_t i = 0; i < self->n; i++)
        longest = strlen(self->theory[i]) > longest ? strlen(self->theory[i]) : longest;
    if (self->sampled) {
        for (size_t i = 0; i < self->n_words; i++)
            longest = strlen(self->word[i]) > longest ? strlen(self->word[i]) : longest;
        longest = self->max_len * (longest + 1) - 1;
    }
    return longest;
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
        self->files = *mc;
        self->backend = backends[mc->backend];
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
    if (rc == BG_PLUGIN_OK && self->sampled)
        rc = read_word_tokens(self, host, config);
    if (rc == BG_PLUGIN_OK) {
        size_t longest = longest_theory(self);
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

/* Sampled mode: the text of sequence id h into buf[MAX_THEORY_LEN + 1];
 * BG_PLUGIN_EINVAL when h is not a theory of the space (empty, malformed,
 * a symbol past the vocabulary). */
static int seq_text(const lmt *self, uint64_t h, char *buf)
{
    uint32_t sym[64];
    int n = bg_seq_decode(h, self->width, self->max_len, sym);
    size_t len = 0;
    if (n < 1)
        return BG_PLUGIN_EINVAL;
    for (int i = 0; i < n; i++) {
        if (sym[i] > self->n_words)
            return BG_PLUGIN_EINVAL;
        const char *w = self->word[sym[i] - 1];
        size_t wl = strlen(w);
        if (len + (i > 0) + wl > MAX_THEORY_LEN) /* cannot happen: checked at create */
            return BG_PLUGIN_EINVAL;
        if (i > 0)
            buf[len++] = ' ';
        memcpy(buf + len, w, wl);
        len += wl;
    }
    buf[len] = 0;
    return BG_PLUGIN_OK;
}

static int space(const void *vself, bg_space *out)
{
    const lmt *self = vself;
    if (!self->sampled)
        return BG_PLUGIN_EUNSUPPORTED;
    *out = bg_space_sequence(self->width, self->max_len);
    return BG_PLUGIN_OK;
}

static int symbols(const void *vself, bg_space_symbols *out)
{
    const lmt *self = vself;
    if (!self->sampled)
        return BG_PLUGIN_EUNSUPPORTED;
    out->size = sizeof *out;
    out->n_symbols = (uint32_t)self->n_words;
    out->tokens = self->word_tok;
    out->texts = (const char *const *)self->word;
    out->prompt = self->prompt_ids;
    out->n_prompt = (uint32_t)self->n_prompt_ids;
    out->lm = (bg_lm_spec){.size = sizeof out->lm,
                           .checkpoint = self->files.checkpoint,
                           .tokenizer = self->files.tokenizer,
                           .backend = self->backend,
                           .adapter = self->files.adapter};
    return BG_PLUGIN_OK;
}

static int log_prior(const void *vself, const uint64_t *h, size_t n, double *out)
{
    const lmt *self = vself;
    char text[MAX_THEORY_LEN + 1];
    for (size_t i = 0; self->sampled && i < n; i++)
        out[i] = seq_text(self, h[i], text) == BG_PLUGIN_OK ? 0.0 : -INFINITY;
    for (size_t i = 0; !self->sampled && i < n; i++) {
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
    char *decoded = self->sampled ? malloc((n ? n : 1) * (MAX_THEORY_LEN + 1)) : NULL;
    int rc = texts && (decoded || !self->sampled) ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    for (size_t i = 0; rc == BG_PLUGIN_OK && i < n; i++) {
        if (self->sampled) {
            texts[i] = decoded + i * (MAX_THEORY_LEN + 1);
            rc = seq_text(self, h[i], decoded + i * (MAX_THEORY_LEN + 1));
        } else if (h[i] >= self->n) {
            rc = BG_PLUGIN_EINVAL;
        } else {
            texts[i] = self->theory[h[i]];
        }
    }
    if (rc == BG_PLUGIN_OK)
        rc = theory_logit(self, a, texts, n, d);
    free(texts);
    free(decoded);
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
    char text[MAX_THEORY_LEN + 1];
    if (self->sampled && seq_text(self, h, text) != BG_PLUGIN_OK)
        return BG_PLUGIN_EINVAL;
    if (!self->sampled && h >= self->n)
        return BG_PLUGIN_EINVAL;
    snprintf(buf, len, "%s", self->sampled ? text : self->theory[h]);
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
    .symbols = symbols,
};

static const bg_plugin_desc desc = {
    BG_PLUGIN_DESC_HEAD,
    .name = "lm_theory",
    .version = "1.1.0",
    .kind = BG_PLUGIN_KIND_HYPOTHESIS,
    .description = "theories in language, listed or sampled; P(harm | action, theory) from a "
                   "language model",
    .config_map = cfg_map,
    .config_map_len = CFG_N,
    .vt.hypothesis = &vtbl,
};

BG_PLUGIN_REGISTER(desc)
