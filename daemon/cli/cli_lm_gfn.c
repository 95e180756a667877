/*
 * cli_lm_gfn.c — `bayesguard lm gfn rng|theory`: the GFlowNet tasks of
 * lib/lmgfn on a small model, one table row per method.
 *
 *   lm gfn rng [--model CKPT] [--backend cpu|vulkan] [--out DIR] [--seed N]
 *              [--samples N] [--steps N] [--threads N]
 *   lm gfn theory [--model CKPT] [--tokenizer F] [--backend cpu|vulkan]
 *              [--out DIR] [--seed N] [--samples N] [--steps N] [--threads N]
 *              [--x X] [--y Y] [--legal "ids"] [--top N] [--min-len N]
 *              [--max-len N] [--batch N] [--lr LR]
 *
 * rng (lmgfn_rng.c): --model: a base checkpoint with the task's 16
 * character tokens (default: train one from scratch, written to
 * DIR/base.bin when --out is given); --out: where base.bin, sft.lora and
 * gflownet.lora are written; --samples: samples per method for valid and
 * kl (default 100000); --steps: GFlowNet and SFT steps (same budget).
 *
 * theory (lmgfn_theory.c): Z ∝ p_LM(X Z Y) on the space of every Z of
 * --min-len..--max-len tokens from --legal (default: the --top likeliest
 * next tokens after X), against its exact posterior. --model defaults to
 * $BG_SHARED_DIR/models/stories260K.bin (../shared when unset); X and Y
 * are token ids, or text through --tokenizer (X gets BOS); without
 * --x/--y a fixed X and Y for stories260K's ids. Columns: tv (exact
 * distribution), tv_emp and recall@k (--samples samples), reward
 * evaluations, seconds; then the ten likeliest theories.
 *
 * Progress on stderr; the table on stdout. Exit codes as in cli_lm.h.
 * Main thread only; everything is freed before returning.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_lm.h"
#include "compute/compute.h"
#include "lmgfn/lmgfn.h"
#include "nn/nn_tok.h"

static int gfn_usage(FILE *f)
{
    fprintf(
        f, "usage: bayesguard lm gfn rng [--model CKPT] [--backend cpu|vulkan] [--out DIR]\n"
           "                             [--seed N] [--samples N] [--steps N] [--threads N]\n"
           "       bayesguard lm gfn theory [--model CKPT] [--tokenizer F] [--backend cpu|vulkan]\n"
           "                             [--out DIR] [--seed N] [--samples N] [--steps N]\n"
           "                             [--threads N] [--x X] [--y Y] [--legal \"ids\"]\n"
           "                             [--top N] [--min-len N] [--max-len N] [--batch N]\n"
           "                             [--lr LR]\n");
    return f == stdout ? 0 : 2;
}

static int num(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bayesguard lm gfn: %s '%s': expected an integer in %ld..%ld\n", flag, v,
                lo, hi);
        return 2;
    }
    *out = x;
    return 0;
}

/* The flags of both tasks, as given (NULL: absent); each task reads its own
 * and refuses the rest. */
typedef struct gfn_flags {
    const char *model, *tokenizer, *backend, *out, *seed, *samples, *steps, *threads;
    const char *x, *y, *legal, *top, *min_len, *max_len, *batch, *lr;
} gfn_flags;

typedef struct flag_slot {
    const char *name;
    size_t off;
    int theory_only;
} flag_slot;

static const flag_slot FLAGS[] = {
    {"--model", offsetof(gfn_flags, model), 0},
    {"--tokenizer", offsetof(gfn_flags, tokenizer), 1},
    {"--backend", offsetof(gfn_flags, backend), 0},
    {"--out", offsetof(gfn_flags, out), 0},
    {"--seed", offsetof(gfn_flags, seed), 0},
    {"--samples", offsetof(gfn_flags, samples), 0},
    {"--steps", offsetof(gfn_flags, steps), 0},
    {"--threads", offsetof(gfn_flags, threads), 0},
    {"--x", offsetof(gfn_flags, x), 1},
    {"--y", offsetof(gfn_flags, y), 1},
    {"--legal", offsetof(gfn_flags, legal), 1},
    {"--top", offsetof(gfn_flags, top), 1},
    {"--min-len", offsetof(gfn_flags, min_len), 1},
    {"--max-len", offsetof(gfn_flags, max_len), 1},
    {"--batch", offsetof(gfn_flags, batch), 1},
    {"--lr", offsetof(gfn_flags, lr), 1},
};

/* 0, or the exit code after a message. */
static int parse_flags(int argc, char **argv, int theory, gfn_flags *fl)
{
    memset(fl, 0, sizeof *fl);
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i], *eq = strchr(f, '='), *v;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0)
            return gfn_usage(stdout) == 0 ? -1 : 2;
        char name[32];
        size_t nl = eq ? (size_t)(eq - f) : strlen(f);
        if (strncmp(f, "--", 2) != 0 || nl >= sizeof name) {
            fprintf(stderr, "bayesguard lm gfn: unexpected argument '%s'\n", f);
            return gfn_usage(stderr);
        }
        memcpy(name, f, nl);
        name[nl] = 0;
        const flag_slot *slot = NULL;
        for (size_t k = 0; k < sizeof FLAGS / sizeof FLAGS[0]; k++)
            if (strcmp(FLAGS[k].name, name) == 0 && (theory || !FLAGS[k].theory_only))
                slot = &FLAGS[k];
        if (!slot) {
            fprintf(stderr, "bayesguard lm gfn %s: unknown flag '%s'\n", argv[1], name);
            return gfn_usage(stderr);
        }
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "bayesguard lm gfn: %s needs a value\n", name);
            return 2;
        }
        const char **dst = (const char **)((char *)fl + slot->off);
        if (*dst) {
            fprintf(stderr, "bayesguard lm gfn: %s given twice\n", name);
            return 2;
        }
        *dst = v;
    }
    return 0;
}

/* --backend and --threads into copts; 0 or the exit code. */
static int backend_opts(const gfn_flags *fl, bg_compute_opts *co)
{
    const char *backend = fl->backend ? fl->backend : "cpu";
    long threads = 0;
    if (fl->threads && num("--threads", fl->threads, 0, 1024, &threads))
        return 2;
    int kind = bg_backend_kind_parse(backend);
    if (kind < 0 || kind == BG_BACKEND_AUTO) {
        fprintf(stderr, "bayesguard lm gfn: --backend '%s': expected cpu or vulkan\n", backend);
        return 2;
    }
    *co = (bg_compute_opts){(bg_backend_kind)kind, (int)threads, 1, -1};
    return 0;
}

static int run_rng(const gfn_flags *fl)
{
    bg_lmgfn_rng_opts o;
    bg_lmgfn_rng_defaults(&o);
    long x = 0;
    o.model = fl->model;
    o.out_dir = fl->out;
    if ((fl->seed && num("--seed", fl->seed, 0, 1L << 30, &x)) || backend_opts(fl, &o.copts))
        return 2;
    if (fl->seed)
        o.seed = (uint64_t)x;
    if (fl->samples && num("--samples", fl->samples, 1, 100000000, &o.samples))
        return 2;
    if (fl->steps) {
        if (num("--steps", fl->steps, 1, 1000000, &x))
            return 2;
        o.steps = (int)x;
    }
    bg_lmgfn_rng_row rows[4];
    bg_err err;
    if (bg_lmgfn_rng_run(&o, rows, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm gfn rng: %s\n", err.msg);
        return 1;
    }
    printf("%-12s %8s %10s %9s %9s\n", "method", "valid", "kl", "seconds", "samples");
    for (int i = 0; i < 4; i++)
        printf("%-12s %7.2f%% %10.3g %9.1f %9ld\n", rows[i].method, 100.0 * rows[i].valid,
               rows[i].kl, rows[i].seconds, rows[i].samples);
    return 0;
}

/* Token ids separated by spaces or commas into ids[cap]; 0 or 2. */
static int parse_ids(const char *flag, const char *v, int32_t *ids, int cap, int *n)
{
    *n = 0;
    for (const char *p = v; *p;) {
        if (*p == ' ' || *p == ',') {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || *n == cap) {
            fprintf(stderr, "bayesguard lm gfn theory: %s '%s': expected up to %d token ids\n",
                    flag, v, cap);
            return 2;
        }
        ids[(*n)++] = (int32_t)x;
        p = end;
    }
    if (*n == 0) {
        fprintf(stderr, "bayesguard lm gfn theory: %s is empty; expected token ids\n", flag);
        return 2;
    }
    return 0;
}

/* X or Y: ids, or text through the tokenizer (X with BOS). 0, 1 or 2. */
static int text_or_ids(const char *flag, const char *v, const bg_nn_tok *tok, int bos, int32_t *ids,
                       int *n)
{
    if (!tok)
        return parse_ids(flag, v, ids, BG_LMGFN_THEORY_MAX_TEXT, n);
    int32_t buf[BG_LMGFN_THEORY_MAX_TEXT + 3];
    bg_err err;
    size_t len = strlen(v);
    if (len > BG_LMGFN_THEORY_MAX_TEXT ||
        bg_nn_tok_encode(tok, v, len, bos ? BG_NN_TOK_ADD_BOS : 0, buf, (int)len + 3, n, &err) !=
            BG_OK ||
        *n < 1 || *n > BG_LMGFN_THEORY_MAX_TEXT) {
        fprintf(stderr, "bayesguard lm gfn theory: %s '%s': not 1..%d tokens of this tokenizer\n",
                flag, v, BG_LMGFN_THEORY_MAX_TEXT);
        return 2;
    }
    memcpy(ids, buf, sizeof(int32_t) * (size_t)*n);
    return 0;
}

static void print_theory(const bg_lmgfn_theory_space *s, long idx, const bg_nn_tok *tok)
{
    int32_t z[BG_LMGFN_MAX_LEN];
    int n;
    bg_lmgfn_theory_z(s, idx, z, &n);
    if (tok) {
        char *text = NULL;
        size_t len = 0;
        bg_err err;
        if (bg_nn_tok_decode(tok, z, n, &text, &len, &err) == BG_OK) {
            printf("\"%.*s\"", (int)len, text);
            free(text);
            return;
        }
    }
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? " " : "", z[i]);
}

/* stories260K: a sampled opening (`lm generate --tokens 1 --temperature
 * 0.8 --seed 1`) as X and the two tokens that followed it as Y; its
 * posterior on the default space spreads over ~9 theories (e^entropy). */
static const int32_t DEF_X[] = {1, 306, 461, 465, 466, 266};
static const int32_t DEF_Y[] = {435, 239};

static int run_theory(const gfn_flags *fl)
{
    bg_lmgfn_theory_opts o;
    bg_lmgfn_theory_defaults(&o);
    int32_t x[BG_LMGFN_THEORY_MAX_TEXT], y[BG_LMGFN_THEORY_MAX_TEXT],
        legal[BG_LMGFN_THEORY_MAX_LEGAL];
    char def[1024];
    long v = 0;
    int rc = backend_opts(fl, &o.copts);
    if (!rc && fl->seed && !(rc = num("--seed", fl->seed, 0, 1L << 30, &v)))
        o.seed = (uint64_t)v;
    if (!rc && fl->samples)
        rc = num("--samples", fl->samples, 1, 100000000, &o.samples);
    if (!rc && fl->steps && !(rc = num("--steps", fl->steps, 1, 1000000, &v)))
        o.steps = (int)v;
    if (!rc && fl->top && !(rc = num("--top", fl->top, 1, BG_LMGFN_THEORY_MAX_LEGAL, &v)))
        o.n_top = (int)v;
    if (!rc && fl->min_len && !(rc = num("--min-len", fl->min_len, 0, BG_LMGFN_MAX_LEN, &v)))
        o.min_len = (int)v;
    if (!rc && fl->max_len && !(rc = num("--max-len", fl->max_len, 1, BG_LMGFN_MAX_LEN, &v)))
        o.max_len = (int)v;
    if (!rc && fl->batch && !(rc = num("--batch", fl->batch, 1, 256, &v)))
        o.batch = (int)v;
    if (!rc && fl->lr) {
        char *end;
        double lr = strtod(fl->lr, &end);
        if (end == fl->lr || *end || !(lr > 0) || lr > 1) {
            fprintf(stderr, "bayesguard lm gfn theory: --lr '%s': expected a number in (0, 1]\n",
                    fl->lr);
            rc = 2;
        }
        o.lr = (float)lr;
    }
    if (!rc && fl->legal &&
        !(rc = parse_ids("--legal", fl->legal, legal, BG_LMGFN_THEORY_MAX_LEGAL, &o.n_legal)))
        o.legal = legal;
    if (rc)
        return rc;
    if ((fl->x == NULL) != (fl->y == NULL)) {
        fprintf(stderr, "bayesguard lm gfn theory: --x and --y go together\n");
        return 2;
    }
    o.model = fl->model;
    if (!o.model) {
        const char *shared = getenv("BG_SHARED_DIR");
        snprintf(def, sizeof def, "%s/models/stories260K.bin", shared ? shared : "../shared");
        o.model = def;
    }
    o.out_dir = fl->out;
    bg_nn_tok *tok = NULL;
    bg_err err;
    if (fl->tokenizer && bg_nn_tok_load(fl->tokenizer, &tok, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm gfn theory: %s\n", err.msg);
        return 1;
    }
    if (fl->x) {
        rc = text_or_ids("--x", fl->x, tok, 1, x, &o.nx);
        if (!rc)
            rc = text_or_ids("--y", fl->y, tok, 0, y, &o.ny);
        o.x = x;
        o.y = y;
    } else {
        o.x = DEF_X;
        o.nx = (int)(sizeof DEF_X / sizeof DEF_X[0]);
        o.y = DEF_Y;
        o.ny = (int)(sizeof DEF_Y / sizeof DEF_Y[0]);
    }
    bg_lmgfn_theory_result *res = rc ? NULL : malloc(sizeof *res);
    if (!rc && !res)
        rc = 1;
    if (!rc && bg_lmgfn_theory_run(&o, res, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm gfn theory: %s\n", err.msg);
        rc = 1;
    }
    if (!rc) {
        const bg_lmgfn_theory_space *s = &res->space;
        printf("theory space: %ld theories (%d legal tokens, lengths %d..%d); enumeration %.1f s; "
               "log sum R %.3f; posterior entropy %.3f nats (e^H = %.1f theories)\n",
               s->size, s->n_legal, s->min_len, s->max_len, res->enum_seconds, res->log_z,
               res->entropy, exp(res->entropy));
        printf("%-12s %7s %7s %9s %10s %10s %8s %8s\n", "method", "tv", "tv_emp", "recall@5",
               "recall@10", "evals", "samples", "seconds");
        for (int i = 0; i < BG_LMGFN_THEORY_ROWS; i++) {
            const bg_lmgfn_theory_row *r = &res->rows[i];
            char tv[16];
            if (isnan(r->tv))
                snprintf(tv, sizeof tv, "-");
            else
                snprintf(tv, sizeof tv, "%.4f", r->tv);
            printf("%-12s %7s %7.4f %9.2f %10.2f %10ld %8ld %8.1f\n", r->method, tv, r->tv_emp,
                   r->recall5, r->recall10, r->evals, r->samples, r->seconds);
        }
        printf("likeliest theories: posterior p, gflownet q\n");
        for (int i = 0; i < 10 && i < s->size; i++) {
            printf("  %2d  p %.4f  q %.4f  ", i + 1, res->top_p[i], res->top_q[i]);
            print_theory(s, res->top[i], tok);
            printf("\n");
        }
    }
    free(res);
    bg_nn_tok_destroy(tok);
    return rc;
}

int bg_cli_lm_gfn_main(int argc, char **argv)
{
    if (argc < 2)
        return gfn_usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return gfn_usage(stdout);
    int theory = strcmp(argv[1], "theory") == 0;
    if (!theory && strcmp(argv[1], "rng") != 0) {
        fprintf(stderr, "bayesguard lm gfn: unknown task '%s' (known: rng, theory)\n", argv[1]);
        return gfn_usage(stderr);
    }
    gfn_flags fl;
    int rc = parse_flags(argc, argv, theory, &fl);
    if (rc)
        return rc < 0 ? 0 : rc;
    return theory ? run_theory(&fl) : run_rng(&fl);
}
