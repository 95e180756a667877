/*
 * cli_lm.c — `bayesguard lm generate|logits|score|bench`, the flag table of
 * every lm subcommand, and the dispatch to train, tokenizer train and
 * corpus (cli_lm_train.c, cli_lm_corpus.c) and to gfn (cli_lm_gfn.c).
 *
 *   lm generate --model M [--tokens "1"] [--steps 64] [--temperature 0]
 *               [--top-p 1] [--seed 1] [--backend cpu|vulkan|auto] [--threads 0]
 *       the generated token ids (prompt excluded) on one line
 *   lm generate --model M --prompt TEXT [--tokenizer T] [...]
 *       text mode (when --prompt or --tokenizer is given; the tokenizer
 *       defaults to tokenizer.bin beside the model): the prompt and the
 *       text generated after it, stopping at <s> or </s>, on stdout
 *   lm logits   --model M (--tokens "ids…" | --prompt TEXT [--tokenizer T])
 *               [--backend …] [--threads …]
 *       the last position's logits on one line, space separated, %.6f
 *   lm score    --model M --prefix "ids" --continuation "ids" [--continuation …]
 *   lm score    --model M --prompt TEXT --continuation TEXT [...] [--tokenizer T]
 *       log p(continuation | prefix) in nats, one line per continuation, %.6f;
 *       with text, a continuation's tokens are those that encoding prompt +
 *       continuation adds after the prompt's (refused where a merge crosses
 *       the boundary)
 *   lm bench    [--model M] [--threads N] [--quick] [--tmp DIR]
 *       the benchmark tables (lib/nn/nn_bench.c; no BLAS baseline here)
 *   lm train, lm merge, lm tokenizer train, lm corpus: cli_lm_train.c, cli_lm_corpus.c
 * Token lists are ids separated by spaces or commas. Flags take "--f v" or
 * "--f=v". Exit codes as in cli_lm.h.
 *
 * Why one flag table: every subcommand shares the parser, and an unknown or
 * repeated flag is an error naming it. Main thread only; everything
 * allocated here is freed before returning.
 */
#include "cli/cli_lm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_lm_args.h"
#include "nn/nn.h"
#include "nn/nn_tok.h"

#define MAX_CONTS BG_CLI_LM_MAX_CONTS

typedef bg_cli_lm_args lm_args;

static int usage(FILE *f)
{
    fprintf(f, "usage: bayesguard lm SUBCOMMAND [flags]\n"
               "  generate --model M [--tokens \"1\" | --prompt TEXT [--tokenizer T]] [--steps N]\n"
               "           [--temperature T] [--top-p P] [--seed S] [--backend cpu|vulkan|auto]\n"
               "           [--threads N]\n"
               "  logits   --model M (--tokens \"ids\" | --prompt TEXT [--tokenizer T])\n"
               "           [--backend B] [--threads N]\n"
               "  score    --model M (--prefix \"ids\" --continuation \"ids\" ... |\n"
               "           --prompt TEXT --continuation TEXT ... [--tokenizer T])\n"
               "           [--backend B] [--threads N]\n"
               "  bench    [--model M] [--threads N] [--quick] [--tmp DIR]\n"
               "  train    (--model CKPT | --init dim,layers,heads,kv_heads,hidden,vocab,seq)\n"
               "           --data FILE [--tokenizer T | --ids] --out DIR [--steps N] [--batch B]\n"
               "           [--seq T] [--lr LR] [--lora RANK [--lora-alpha A]] [--seed S]\n"
               "           [--backend cpu|vulkan] [--eval-every N] [--holdout FRACTION]\n"
               "           [--threads N]\n"
               "           [--precision fp32|bf16]   (bf16: CPU with avx512_bf16)\n"
               "           [--recompute] [--act-budget SIZE] [--logit-budget SIZE]\n"
               "           [--save-every N [--keep-saves K]] [--resume DIR]\n"
               "           (SIZE: bytes, or a number and KiB, MiB or GiB)\n"
               "  merge    --model CKPT --adapter FILE --out CKPT [--backend cpu|vulkan]\n"
               "  tokenizer train --data FILE --vocab N --out tokenizer.bin\n"
               "  corpus   [--lines N] [--seed S] [--out FILE]\n"
               "  gfn rng  [--model CKPT] [--backend cpu|vulkan] [--out DIR] [--seed N]\n"
               "           [--samples N] [--steps N]   (GFlowNet fine-tuning, docs/GFLOWNET.md)\n"
               "  gfn theory [--model CKPT] [--tokenizer F] [--backend cpu|vulkan] [--out DIR]\n"
               "           [--seed N] [--x X --y Y] [--legal \"ids\"] [...]   (lm gfn --help)\n");
    return f == stdout ? 0 : 2;
}

#define bad bg_cli_lm_bad

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bayesguard lm: %s '%s': expected an integer in %ld..%ld\n", flag, v, lo,
                hi);
        return 2;
    }
    *out = x;
    return 0;
}

static int parse_double(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "bayesguard lm: %s '%s': expected a number in %g..%g\n", flag, v, lo, hi);
        return 2;
    }
    *out = x;
    return 0;
}

/* A size in bytes: "N" or "N" followed by KiB, MiB or GiB (also K, M, G;
 * binary units), N a positive number; the bytes are rounded down and must
 * be >= 1 and fit in 2^48. Returns 0, or 2 after printing why. */
static int parse_size(const char *flag, const char *v, size_t *out)
{
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1.0},        {"B", 1.0},         {"K", 1024.0},       {"KiB", 1024.0},
                 {"M", 1048576.0}, {"MiB", 1048576.0}, {"G", 1073741824.0}, {"GiB", 1073741824.0}};
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    double scale = 0;
    if (!errno && end != v)
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strcmp(end, units[i].unit) == 0)
                scale = units[i].scale;
    double bytes = x * scale;
    if (scale == 0 || !(bytes >= 1.0 && bytes <= 281474976710656.0)) {
        fprintf(stderr,
                "bayesguard lm: %s '%s': expected a size of at least 1 byte: a number of bytes, "
                "or a number followed by KiB, MiB or GiB (e.g. 64MiB)\n",
                flag, v);
        return 2;
    }
    *out = (size_t)bytes;
    return 0;
}

/* Applies one "--flag value"; returns 0, or 2 after printing why. */
static int apply(lm_args *a, const char *flag, const char *v)
{
    const char **s = NULL;
    if (strcmp(flag, "--model") == 0)
        s = &a->model;
    else if (strcmp(flag, "--tokens") == 0)
        s = &a->tokens;
    else if (strcmp(flag, "--prefix") == 0)
        s = &a->prefix;
    else if (strcmp(flag, "--backend") == 0)
        s = &a->backend;
    else if (strcmp(flag, "--tmp") == 0)
        s = &a->tmp;
    else if (strcmp(flag, "--prompt") == 0)
        s = &a->prompt;
    else if (strcmp(flag, "--tokenizer") == 0)
        s = &a->tokenizer;
    else if (strcmp(flag, "--data") == 0)
        s = &a->data;
    else if (strcmp(flag, "--init") == 0)
        s = &a->init;
    else if (strcmp(flag, "--out") == 0)
        s = &a->out;
    else if (strcmp(flag, "--precision") == 0)
        s = &a->precision;
    else if (strcmp(flag, "--resume") == 0)
        s = &a->resume;
    else if (strcmp(flag, "--adapter") == 0)
        s = &a->adapter;
    if (s) {
        if (*s)
            return bad("flag %s given twice", flag);
        *s = v;
        return 0;
    }
    if (strcmp(flag, "--continuation") == 0) {
        if (a->n_conts == MAX_CONTS)
            return bad("at most 64 --continuation flags");
        a->conts[a->n_conts++] = v;
        return 0;
    }
    if (strcmp(flag, "--steps") == 0)
        return parse_long(flag, v, 0, 1 << 20, &a->steps);
    if (strcmp(flag, "--threads") == 0)
        return parse_long(flag, v, 0, 1024, &a->threads);
    if (strcmp(flag, "--seed") == 0)
        return parse_long(flag, v, 0, 0x7fffffffL, &a->seed);
    if (strcmp(flag, "--vocab") == 0)
        return parse_long(flag, v, 259, 65536, &a->vocab);
    if (strcmp(flag, "--batch") == 0)
        return parse_long(flag, v, 1, 4096, &a->batch);
    if (strcmp(flag, "--seq") == 0)
        return parse_long(flag, v, 1, 1 << 20, &a->seq);
    if (strcmp(flag, "--lora") == 0)
        return parse_long(flag, v, 1, 1024, &a->lora);
    if (strcmp(flag, "--eval-every") == 0)
        return parse_long(flag, v, 0, 1 << 30, &a->eval_every);
    if (strcmp(flag, "--save-every") == 0)
        return parse_long(flag, v, 0, 1 << 30, &a->save_every);
    if (strcmp(flag, "--keep-saves") == 0)
        return parse_long(flag, v, 1, 1 << 20, &a->keep_saves);
    if (strcmp(flag, "--lines") == 0)
        return parse_long(flag, v, 1, 100000000L, &a->lines);
    if (strcmp(flag, "--lr") == 0)
        return parse_double(flag, v, 0.0, 10.0, &a->lr);
    if (strcmp(flag, "--act-budget") == 0)
        return parse_size(flag, v, &a->act_budget);
    if (strcmp(flag, "--logit-budget") == 0)
        return parse_size(flag, v, &a->logit_budget);
    if (strcmp(flag, "--holdout") == 0)
        return parse_double(flag, v, 0.0, 0.9, &a->holdout);
    if (strcmp(flag, "--lora-alpha") == 0)
        return parse_double(flag, v, 1e-6, 1e5, &a->lora_alpha);
    if (strcmp(flag, "--temperature") == 0)
        return parse_double(flag, v, 0.0, 100.0, &a->temperature);
    if (strcmp(flag, "--top-p") == 0)
        return parse_double(flag, v, 1e-6, 1.0, &a->topp);
    return bad("unknown flag '%s' (see bayesguard lm --help)", flag);
}

static int parse_args(int argc, char **argv, int first, lm_args *a)
{
    memset(a, 0, sizeof *a);
    a->steps = -1;
    a->seed = 1;
    a->topp = 1.0;
    a->lr = -1.0;
    a->holdout = -1.0;
    a->eval_every = -1;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--quick") == 0 || strcmp(arg, "--ids") == 0 ||
            strcmp(arg, "--recompute") == 0) {
            if (strcmp(arg, "--ids") == 0)
                a->ids = 1;
            else if (strcmp(arg, "--recompute") == 0)
                a->recompute = 1;
            else
                a->quick = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return bad("unexpected argument '%s'", arg);
        char flag[64];
        const char *eq = strchr(arg, '='), *v;
        if (eq) {
            snprintf(flag, sizeof flag, "%.*s", (int)(eq - arg), arg);
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return bad("flag %s needs a value", arg);
            snprintf(flag, sizeof flag, "%s", arg);
            v = argv[++i];
        }
        int rc = apply(a, flag, v);
        if (rc)
            return rc;
        if (strcmp(flag, "--seed") == 0)
            a->seed_set = 1;
    }
    return 0;
}

/* "1 2, 3" -> ids (new, caller frees). Returns 0 or 2. */
static int parse_ids(const char *flag, const char *s, int32_t **out, int *n)
{
    size_t cap = strlen(s) / 2 + 1;
    int32_t *ids = malloc(sizeof(int32_t) * cap);
    *n = 0;
    if (!ids)
        return bad("out of memory");
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffffL ||
            (*end && *end != ' ' && *end != ',' && *end != '\t')) {
            free(ids);
            return bad("%s '%s': expected token ids (non-negative integers) separated by spaces "
                       "or commas",
                       flag, s);
        }
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    if (*n == 0) {
        free(ids);
        return bad("%s '%s': expected at least one token id", flag, s);
    }
    *out = ids;
    return 0;
}

static int load(const lm_args *a, bg_nn_model **m)
{
    if (!a->model)
        return bad("--model is required");
    int kind = bg_backend_kind_parse(a->backend ? a->backend : "cpu");
    if (kind < 0)
        return bad("--backend '%s': expected cpu, vulkan or auto", a->backend);
    bg_compute_opts co = {(bg_backend_kind)kind, (int)a->threads, 0, -1};
    bg_err err;
    if (bg_nn_model_load(a->model, &co, m, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Ids must be inside the model's vocabulary: a usage error, not a failure. */
static int check_vocab(const bg_nn_model *m, const char *flag, const int32_t *ids, int n)
{
    int V = bg_nn_model_config(m)->vocab_size;
    for (int i = 0; i < n; i++)
        if (ids[i] >= V) {
            fprintf(stderr,
                    "bayesguard lm: %s: token id %d out of range; the model's vocabulary is "
                    "0..%d\n",
                    flag, (int)ids[i], V - 1);
            return 2;
        }
    return 0;
}

/* Text mode's tokenizer: --tokenizer, or tokenizer.bin beside the model;
 * no larger than the model's vocabulary. 0 with *out set, or 2 after
 * saying why. */
static int text_tokenizer(const lm_args *a, bg_nn_model *m, bg_nn_tok **out)
{
    char def[4096];
    const char *tpath = a->tokenizer;
    if (!tpath) {
        bg_cli_lm_tokenizer_beside(a->model, def, sizeof def);
        tpath = def;
    }
    bg_err err;
    *out = NULL;
    if (bg_nn_tok_load(tpath, out, &err) != BG_OK)
        return bad("%s", err.msg);
    int V = bg_nn_model_config(m)->vocab_size;
    if (bg_nn_tok_size(*out) > V) {
        int n = bg_nn_tok_size(*out);
        bg_nn_tok_destroy(*out);
        *out = NULL;
        return bad("tokenizer %s has %d tokens; the model's vocabulary is %d", tpath, n, V);
    }
    return 0;
}

/* text (flags: BG_NN_TOK_ADD_BOS or 0) -> *ids (new), *n; 0 or 2 naming flag. */
static int encode(const bg_nn_tok *tok, const char *flag, const char *text, int flags,
                  int32_t **ids, int *n)
{
    size_t len = strlen(text);
    bg_err err;
    *n = 0;
    if (!(*ids = malloc(sizeof **ids * (len + 3))))
        return bad("out of memory");
    if (bg_nn_tok_encode(tok, text, len, flags, *ids, (int)len + 3, n, &err) != BG_OK)
        return bad("%s: %s", flag, err.msg);
    return 0;
}

/* Text mode: the prompt through the tokenizer (BOS first), the output
 * decoded until <s> or </s>. */
static int cmd_generate_text(const lm_args *a, bg_nn_model *m)
{
    if (a->tokens)
        return bad("generate: --tokens (ids) and --prompt/--tokenizer (text) exclude each other");
    bg_err err;
    bg_nn_tok *tok = NULL;
    int rc = text_tokenizer(a, m, &tok);
    if (rc)
        return rc;
    const bg_nn_config *c = bg_nn_model_config(m);
    const char *prompt = a->prompt ? a->prompt : "";
    size_t plen = strlen(prompt);
    int32_t *ids = NULL, *out = NULL;
    int n = 0, n_out = 0;
    long steps = a->steps < 0 ? 64 : a->steps;
    rc = encode(tok, "--prompt", prompt, BG_NN_TOK_ADD_BOS, &ids, &n);
    if (rc == 0 && n > c->seq_len)
        rc = bad("--prompt: %d tokens; the model's context is %d", n, c->seq_len);
    bg_nn_sampler s;
    s.scratch = NULL;
    if (rc == 0 && bg_nn_sampler_init(&s, c->vocab_size, (float)a->temperature, (float)a->topp,
                                      (uint64_t)a->seed, &err) != BG_OK)
        rc = bad("%s", err.msg);
    if (rc == 0 && !(out = malloc(sizeof(int32_t) * (size_t)(steps + 1))))
        rc = 1;
    if (rc == 0 && bg_nn_generate(m, ids, n, (int)steps, &s, out, &n_out, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm generate: %s\n", err.msg);
        rc = 1;
    }
    if (rc == 0) {
        fwrite(prompt, 1, plen, stdout);
        int prev = ids[n - 1];
        for (int i = 0; i < n_out; i++) {
            if (out[i] == BG_NN_TOK_BOS || out[i] == BG_NN_TOK_EOS)
                break;
            size_t l = 0;
            const char *piece = bg_nn_tok_decode_one(tok, prev, out[i], &l);
            if (piece)
                fwrite(piece, 1, l, stdout);
            prev = out[i];
        }
        printf("\n");
    }
    bg_nn_sampler_close(&s);
    free(out);
    free(ids);
    bg_nn_tok_destroy(tok);
    return rc;
}

static int cmd_generate(const lm_args *a, bg_nn_model *m)
{
    if (a->prompt || a->tokenizer)
        return cmd_generate_text(a, m);
    int32_t *prompt = NULL, *out = NULL;
    int n_prompt = 0, n_out = 0;
    int rc = parse_ids("--tokens", a->tokens ? a->tokens : "1", &prompt, &n_prompt);
    if (rc == 0)
        rc = check_vocab(m, "--tokens", prompt, n_prompt);
    const bg_nn_config *c = bg_nn_model_config(m);
    if (rc == 0 && n_prompt > c->seq_len)
        rc = bad("--tokens: the prompt is longer than the model's context");
    bg_nn_sampler s;
    bg_err err;
    s.scratch = NULL;
    if (rc == 0 && bg_nn_sampler_init(&s, c->vocab_size, (float)a->temperature, (float)a->topp,
                                      (uint64_t)a->seed, &err) != BG_OK)
        rc = bad("%s", err.msg);
    long steps = a->steps < 0 ? 64 : a->steps;
    if (rc == 0 && !(out = malloc(sizeof(int32_t) * (size_t)(steps + 1))))
        rc = 1;
    if (rc == 0 && bg_nn_generate(m, prompt, n_prompt, (int)steps, &s, out, &n_out, &err)) {
        fprintf(stderr, "bayesguard lm generate: %s\n", err.msg);
        rc = 1;
    }
    if (rc == 0) {
        for (int i = 0; i < n_out; i++)
            printf(i ? " %d" : "%d", (int)out[i]);
        printf("\n");
    }
    bg_nn_sampler_close(&s);
    free(out);
    free(prompt);
    return rc;
}

static int cmd_logits(const lm_args *a, bg_nn_model *m)
{
    int text = a->prompt || a->tokenizer;
    if (text && a->tokens)
        return bad("logits: --tokens (ids) and --prompt/--tokenizer (text) exclude each other");
    if (!a->tokens && !a->prompt)
        return bad("logits: --tokens \"ids\" or --prompt TEXT is required");
    int32_t *ids = NULL;
    int n = 0, rc;
    if (text) {
        bg_nn_tok *tok = NULL;
        rc = text_tokenizer(a, m, &tok);
        if (rc == 0)
            rc = encode(tok, "--prompt", a->prompt, BG_NN_TOK_ADD_BOS, &ids, &n);
        bg_nn_tok_destroy(tok);
    } else {
        rc = parse_ids("--tokens", a->tokens, &ids, &n);
        if (rc == 0)
            rc = check_vocab(m, "--tokens", ids, n);
    }
    const bg_nn_config *c = bg_nn_model_config(m);
    if (rc == 0 && n > c->seq_len)
        rc = bad("%s: %d tokens, longer than the model's context (%d)",
                 text ? "--prompt" : "--tokens", n, c->seq_len);
    float *logits = rc == 0 ? malloc(sizeof(float) * (size_t)c->vocab_size) : NULL;
    bg_err err;
    if (rc == 0 && (!logits || bg_nn_forward(m, ids, n, 0, logits, &err) != BG_OK)) {
        fprintf(stderr, "bayesguard lm logits: %s\n", logits ? err.msg : "out of memory");
        rc = 1;
    }
    if (rc == 0) {
        for (int i = 0; i < c->vocab_size; i++)
            printf(i ? " %.6f" : "%.6f", (double)logits[i]);
        printf("\n");
    }
    free(logits);
    free(ids);
    return rc;
}

/* Text mode's continuation i: the ids that encoding prompt + text adds
 * after the prompt's own (BOS first), so each is scored as the model would
 * read it after the prompt. When the two encodings part before the prompt's
 * end (a merge across the boundary), it is refused: start it with a space. */
static int text_continuation(const bg_nn_tok *tok, const char *prompt, const int32_t *p, int np,
                             const char *cont, int32_t **out, int *n)
{
    size_t lp = strlen(prompt), lc = strlen(cont);
    char *joined = malloc(lp + lc + 1);
    if (!joined)
        return bad("out of memory");
    memcpy(joined, prompt, lp);
    memcpy(joined + lp, cont, lc + 1);
    int32_t *all = NULL;
    int na = 0;
    int rc = encode(tok, "--continuation", joined, BG_NN_TOK_ADD_BOS, &all, &na);
    free(joined);
    if (rc == 0 && (na < np || memcmp(all, p, sizeof *p * (size_t)np) != 0))
        rc = bad("--continuation '%s': its first bytes merge with the end of --prompt into one "
                 "token (the prompt's tokens are not a prefix of prompt + continuation's), so it "
                 "cannot be scored after them; start it at a word boundary (with a space)",
                 cont);
    if (rc == 0 && na == np)
        rc = bad("--continuation '%s': no tokens (empty)", cont);
    if (rc == 0) {
        *n = na - np;
        memmove(all, all + np, sizeof *all * (size_t)*n);
        *out = all;
        return 0;
    }
    free(all);
    return rc;
}

static int cmd_score(const lm_args *a, bg_nn_model *m)
{
    int text = a->prompt || a->tokenizer;
    if (text && a->prefix)
        return bad("score: --prefix (ids) and --prompt/--tokenizer (text) exclude each other");
    if ((!a->prefix && !a->prompt) || a->n_conts == 0)
        return bad("score: --prefix \"ids\" (or --prompt TEXT) and at least one --continuation "
                   "are required");
    int32_t *prefix = NULL, *conts[MAX_CONTS] = {0};
    int np = 0, lens[MAX_CONTS] = {0}, rc;
    bg_nn_tok *tok = NULL;
    if (text) {
        rc = text_tokenizer(a, m, &tok);
        if (rc == 0)
            rc = encode(tok, "--prompt", a->prompt, BG_NN_TOK_ADD_BOS, &prefix, &np);
        for (int i = 0; i < a->n_conts && rc == 0; i++)
            rc = text_continuation(tok, a->prompt, prefix, np, a->conts[i], &conts[i], &lens[i]);
        bg_nn_tok_destroy(tok);
    } else {
        rc = parse_ids("--prefix", a->prefix, &prefix, &np);
        if (rc == 0)
            rc = check_vocab(m, "--prefix", prefix, np);
        for (int i = 0; i < a->n_conts && rc == 0; i++) {
            rc = parse_ids("--continuation", a->conts[i], &conts[i], &lens[i]);
            if (rc == 0)
                rc = check_vocab(m, "--continuation", conts[i], lens[i]);
        }
    }
    int seq = bg_nn_model_config(m)->seq_len;
    for (int i = 0; i < a->n_conts && rc == 0; i++)
        if (np + lens[i] > seq) {
            fprintf(stderr,
                    "bayesguard lm score: prefix + continuation %d is %d tokens; the "
                    "context is %d\n",
                    i + 1, np + lens[i], seq);
            rc = 2;
        }
    double out[MAX_CONTS];
    bg_err err;
    if (rc == 0 && bg_nn_score(m, prefix, np, (const int32_t *const *)conts, lens, a->n_conts, out,
                               &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm score: %s\n", err.msg);
        rc = 1;
    }
    for (int i = 0; i < a->n_conts && rc == 0; i++)
        printf("%.6f\n", out[i]);
    for (int i = 0; i < a->n_conts; i++)
        free(conts[i]);
    free(prefix);
    return rc;
}

static int cmd_bench(const lm_args *a)
{
    char def[1024];
    const char *model = a->model;
    if (!model) {
        const char *shared = getenv("BG_SHARED_DIR");
        snprintf(def, sizeof def, "%s/models/stories260K.bin", shared ? shared : "../shared");
        model = access(def, R_OK) == 0 ? def : NULL;
    }
    bg_nn_bench_opts o = {model, a->tmp, (int)a->threads, a->quick, NULL, stdout};
    bg_err err;
    if (bg_nn_bench_run(&o, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int bg_cli_lm_main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0)
        return usage(stdout);
    if (strcmp(sub, "gfn") == 0)
        return bg_cli_lm_gfn_main(argc - 1, argv + 1);
    for (int i = 2; i < argc; i++) /* `lm train --help` too */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
    lm_args a;
    int tok_train = strcmp(sub, "tokenizer") == 0;
    if (tok_train && (argc < 3 || strcmp(argv[2], "train") != 0))
        return bad("tokenizer: expected 'lm tokenizer train --data FILE --vocab N --out FILE'");
    int rc = parse_args(argc, argv, tok_train ? 3 : 2, &a);
    if (rc)
        return rc;
    if (strcmp(sub, "bench") == 0)
        return cmd_bench(&a);
    if (tok_train)
        return bg_cli_lm_tokenizer_train(&a);
    if (strcmp(sub, "train") == 0)
        return bg_cli_lm_train(&a);
    if (strcmp(sub, "merge") == 0)
        return bg_cli_lm_merge(&a);
    if (strcmp(sub, "corpus") == 0)
        return bg_cli_lm_corpus(&a);
    int (*fn)(const lm_args *, bg_nn_model *) = NULL;
    if (strcmp(sub, "generate") == 0)
        fn = cmd_generate;
    else if (strcmp(sub, "logits") == 0)
        fn = cmd_logits;
    else if (strcmp(sub, "score") == 0)
        fn = cmd_score;
    else {
        fprintf(stderr, "bayesguard lm: unknown subcommand '%s'\n", sub);
        return usage(stderr);
    }
    bg_nn_model *m = NULL;
    rc = load(&a, &m);
    if (rc == 0)
        rc = fn(&a, m);
    bg_nn_model_destroy(m);
    return rc;
}
