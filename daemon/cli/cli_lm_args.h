/*
 * cli_lm_args.h — the parsed flags of every `bayesguard lm` subcommand (one
 * table, parsed by cli_lm.c) and the subcommands that live in their own
 * files: `lm train`, `lm merge` and `lm tokenizer train` (cli_lm_train.c), `lm corpus`
 * (cli_lm_corpus.c). Each returns the exit code of cli_lm.h: 0 ok, 1
 * runtime failure, 2 bad input (said on stderr before any work).
 *
 * Ownership: string fields borrow argv. Main thread only.
 */
#ifndef BG_CLI_LM_ARGS_H
#define BG_CLI_LM_ARGS_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BG_CLI_LM_MAX_CONTS 64

typedef struct bg_cli_lm_args {
    const char *model, *tokens, *prefix, *backend, *tmp;
    const char *prompt, *tokenizer, *data, *init, *out, *precision;
    const char *resume, *adapter; /* lm train --resume DIR; lm merge --adapter FILE */
    const char *conts[BG_CLI_LM_MAX_CONTS];
    int n_conts;
    long steps; /* -1: the subcommand's default */
    long threads, seed, vocab, batch, seq, lora, eval_every, lines, save_every, keep_saves;
    int seed_set;
    double temperature, topp, lr, holdout;
    double lora_alpha; /* 0: not given (alpha = rank) */
    int quick, ids, recompute;
    size_t act_budget, logit_budget; /* bytes; 0: not given */
} bg_cli_lm_args;

/* Prints "bayesguard lm: <msg>" on stderr and returns 2 (inline: every lm
 * file uses it and none may call another round). */
__attribute__((format(printf, 1, 2))) static inline int bg_cli_lm_bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bayesguard lm: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

/* "tokenizer.bin" in the folder of `model` into buf (the default --tokenizer). */
static inline void bg_cli_lm_tokenizer_beside(const char *model, char *buf, size_t n)
{
    const char *slash = strrchr(model, '/');
    if (slash)
        snprintf(buf, n, "%.*s/tokenizer.bin", (int)(slash - model), model);
    else
        snprintf(buf, n, "tokenizer.bin");
}

int bg_cli_lm_train(const bg_cli_lm_args *a);
int bg_cli_lm_merge(const bg_cli_lm_args *a);
int bg_cli_lm_tokenizer_train(const bg_cli_lm_args *a);
int bg_cli_lm_corpus(const bg_cli_lm_args *a);

#endif
