/*
 * cli_lm_train.c — `bayesguard lm train` and `bayesguard lm tokenizer train`
 * (docs/CLI.md, docs/TRAINING.md).
 *
 *   lm train (--model CKPT | --init dim,layers,heads,kv_heads,hidden,vocab,seq)
 *            --data FILE [--tokenizer FILE | --ids] --out DIR [--steps 100]
 *            [--batch 8] [--seq min(context, 256)] [--lr 1e-3] [--lora RANK]
 *            [--lora-alpha A] [--backend cpu|vulkan] [--seed 1] [--eval-every 0]
 *            [--holdout 0.1] [--threads 0] [--precision fp32|bf16]
 *            [--save-every N [--keep-saves K]] [--resume DIR]
 *   lm merge --model CKPT --adapter FILE --out CKPT [--backend cpu|vulkan]
 *   lm tokenizer train --data FILE --vocab N --out tokenizer.bin
 *
 * Why this order: every input is read and checked before the first step
 * (the checkpoint, the tokenizer, every token of the data against the
 * vocabulary, the sequence against the context, both splits long enough),
 * so bad input is exit 2 with a message and nothing written. Then --out is
 * created, the trainer built (nn.h), and each step prints one line
 * "step N loss X lr Y"; the held-out loss ("eval step N held-out loss X")
 * comes before the first step, every --eval-every steps and after the last.
 * Text data is encoded line by line, each non-empty line as <s> + its
 * tokens (llama2.c's layout), into one stream; the last --holdout of the
 * stream is held out. A batch is --batch windows of --seq + 1 tokens at
 * seeded random offsets of the training part; the held-out loss is the mean
 * over up to 16 batches of consecutive windows of the held-out part.
 * Learning rate: linear warm-up over the first 5% of the steps, then cosine
 * decay to lr / 10.
 * Output in --out: model.bin (llama2.c checkpoint; full fine-tuning) or
 * adapter.lora (LoRA, nn.h's adapter file), optimizer.state (every
 * trainable tensor, AdamW's moments and the step) and tokenizer.bin (a copy
 * of the tokenizer, text data) so `lm generate --model DIR/model.bin
 * --prompt TEXT` finds it; each written under a temporary name and renamed.
 * --save-every N writes the same files after every N-th step into
 * --out/step-N (--keep-saves K: the last K of them are kept, older ones
 * removed as the run goes). --resume DIR loads DIR/optimizer.state after the trainer
 * is made from --model/--init and goes on from its step with the same
 * flags (--steps is the run's total; the data draws of the steps done are
 * skipped, so the losses are the uninterrupted run's, bit for bit, on the
 * same backend and threads). A non-finite loss stops the run (exit 1)
 * with nothing more written. lm merge folds an adapter file into its base
 * (bg_nn_train_save_checkpoint).
 *
 * Main thread only; everything allocated here is freed before returning.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_lm_args.h"
#include "common/bg_io.h"
#include "nn/nn.h"
#include "nn/nn_tok.h"

#define bad bg_cli_lm_bad
#define MAX_DATA_BYTES ((size_t)256 << 20)
#define EVAL_BATCHES 16
#define STATE_FILE "optimizer.state"

/* The whole file (new, NUL-terminated; caller frees) or 2 after saying why. */
static int read_all(const char *flag, const char *path, char **out, size_t *len)
{
    if (bg_read_file(path, MAX_DATA_BYTES, out, len) == 0)
        return 0;
    if (errno == EFBIG)
        return bad("%s %s: larger than %zu MiB; split it", flag, path, MAX_DATA_BYTES >> 20);
    return bad("%s %s: cannot open: %s", flag, path, strerror(errno));
}

int bg_cli_lm_tokenizer_train(const bg_cli_lm_args *a)
{
    if (!a->data || !a->out || a->vocab <= 0)
        return bad("tokenizer train: --data FILE, --vocab N and --out FILE are required");
    char *text;
    size_t len;
    int rc = read_all("--data", a->data, &text, &len);
    if (rc)
        return rc;
    if (len == 0) {
        free(text);
        return bad("--data %s: the file is empty; nothing to learn merges from", a->data);
    }
    bg_nn_tok *t = NULL;
    bg_err err;
    if (bg_nn_tok_train(text, len, (int)a->vocab, &t, &err) != BG_OK)
        rc = bad("tokenizer train: %s", err.msg);
    else if (bg_nn_tok_save(t, a->out, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm tokenizer train: %s\n", err.msg);
        rc = 1;
    } else {
        printf("tokenizer: %d tokens (%d merges) from %zu bytes, written to %s\n",
               bg_nn_tok_size(t), bg_nn_tok_size(t) - 259, len, a->out);
        if (bg_nn_tok_size(t) < a->vocab)
            printf("note: stopped at %d tokens: no pair occurs twice more (asked %ld)\n",
                   bg_nn_tok_size(t), a->vocab);
    }
    bg_nn_tok_destroy(t);
    free(text);
    return rc;
}

/* ---- lm train ---------------------------------------------------------------- */

typedef struct stream {
    int32_t *ids;
    size_t n, cap;
} stream;

static int push(stream *s, const int32_t *ids, size_t n)
{
    if (s->n + n > s->cap) {
        size_t nc = s->cap ? s->cap : 4096;
        while (nc < s->n + n)
            nc *= 2;
        int32_t *p = realloc(s->ids, nc * sizeof *p);
        if (!p)
            return bad("out of memory for %zu tokens", s->n + n);
        s->ids = p;
        s->cap = nc;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    s->n += n;
    return 0;
}

/* Text data: each non-empty line as <s> + its tokens. */
static int encode_text(const char *path, const char *text, size_t len, const bg_nn_tok *tok,
                       stream *s)
{
    int32_t *buf = malloc(sizeof *buf * (BG_NN_TOK_MAX_TEXT + 3));
    if (!buf)
        return bad("out of memory");
    size_t i = 0;
    long line = 0;
    int rc = 0;
    bg_err err;
    while (i < len && rc == 0) {
        line++;
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        size_t l = e > i && text[e - 1] == '\r' ? e - i - 1 : e - i;
        if (l > BG_NN_TOK_MAX_TEXT)
            rc = bad("--data %s: line %ld is %zu bytes; at most %d per line (split it)", path, line,
                     l, BG_NN_TOK_MAX_TEXT);
        int n = 0;
        if (rc == 0 && l > 0 &&
            bg_nn_tok_encode(tok, text + i, l, BG_NN_TOK_ADD_BOS, buf, BG_NN_TOK_MAX_TEXT + 3, &n,
                             &err) != BG_OK)
            rc = bad("--data %s: line %ld: %s", path, line, err.msg);
        if (rc == 0 && n > 0)
            rc = push(s, buf, (size_t)n);
        i = e + 1;
    }
    free(buf);
    return rc;
}

/* --ids data: whitespace-separated ids, each inside the vocabulary. */
static int parse_id_file(const char *path, const char *text, int V, stream *s)
{
    const char *p = text;
    long line = 1;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            line += *p++ == '\n';
        if (!*p)
            return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno ||
            (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r'))
            return bad("--data %s: line %ld: '%.*s' is not a token id (--ids expects "
                       "whitespace-separated integers)",
                       path, line, (int)(strcspn(p, " \t\r\n") < 20 ? strcspn(p, " \t\r\n") : 20),
                       p);
        if (v < 0 || v >= V)
            return bad("--data %s: line %ld: token %ld (token %zu of the file) is out of the "
                       "vocabulary 0..%d",
                       path, line, v, s->n + 1, V - 1);
        int32_t id = (int32_t)v;
        int rc = push(s, &id, 1);
        if (rc)
            return rc;
        p = end;
    }
}

/* "dim,layers,heads,kv_heads,hidden,vocab,seq" -> cfg. */
static int parse_init(const char *v, bg_nn_config *c)
{
    long x[7];
    const char *p = v;
    for (int i = 0; i < 7; i++) {
        char *end;
        errno = 0;
        x[i] = strtol(p, &end, 10);
        if (end == p || errno || x[i] < 1 || x[i] > (1L << 24) || *end != (i < 6 ? ',' : '\0'))
            return bad("--init '%s': expected seven positive integers "
                       "dim,layers,heads,kv_heads,hidden,vocab,seq (e.g. 64,4,4,4,172,512,64)",
                       v);
        p = end + 1;
    }
    *c = (bg_nn_config){(int)x[0], (int)x[4], (int)x[1], (int)x[2],
                        (int)x[3], (int)x[5], (int)x[6], 1};
    bg_err err;
    if (bg_nn_config_check(c, "--init", &err) != BG_OK)
        return bad("%s", err.msg);
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct run {
    const bg_cli_lm_args *a;
    bg_nn_config cfg;
    bg_nn_ckpt ck;
    int have_ck;
    int made_out; /* make_out created --out (removed again if the trainer is refused) */
    bg_nn_tok *tok;
    stream data;
    size_t n_train, n_hold;
    int B, T;
    long steps;
    double lr;
    int32_t *tokens, *targets;
    float *weights;
} run;

/* Checks every input; fills r. Returns 0 or the exit code (2: bad input). */
static int prepare(run *r)
{
    const bg_cli_lm_args *a = r->a;
    bg_err err;
    if (!!a->model == !!a->init)
        return bad("train: give exactly one of --model CKPT and --init "
                   "dim,layers,heads,kv_heads,hidden,vocab,seq");
    if (!a->data)
        return bad("train: --data FILE is required");
    if (!a->out)
        return bad("train: --out DIR is required");
    if (a->precision && bg_precision_parse(a->precision) < 0)
        return bad("--precision '%s': expected fp32 or bf16", a->precision);
    int kind = bg_backend_kind_parse(a->backend ? a->backend : "cpu");
    if (kind != BG_BACKEND_CPU && kind != BG_BACKEND_VULKAN)
        return bad("--backend '%s': expected cpu or vulkan", a->backend);
    if (a->lora_alpha > 0 && a->lora <= 0)
        return bad("train: --lora-alpha sets the LoRA adapters' scale (alpha / rank); it needs "
                   "--lora RANK");
    if (a->ids && a->tokenizer)
        return bad("train: --ids (token ids) and --tokenizer (text) exclude each other");
    if (a->prompt || a->tokens || a->prefix || a->n_conts || a->vocab || a->lines || a->adapter)
        return bad("train: --prompt, --tokens, --prefix, --continuation, --vocab, --lines and "
                   "--adapter belong to other lm subcommands");
    if (a->keep_saves && !a->save_every)
        return bad("train: --keep-saves K keeps the last K of the --save-every N saves; it needs "
                   "--save-every");
    if (a->resume) {
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/" STATE_FILE, a->resume);
        if (access(sp, R_OK) != 0)
            return bad("--resume %s: no readable %s in it (lm train writes one into --out at the "
                       "end of a run and into --out/step-N every --save-every N steps)",
                       a->resume, STATE_FILE);
    }
    int rc;
    if (a->model) {
        if (bg_nn_ckpt_open(&r->ck, a->model, &err) != BG_OK)
            return bad("--model: %s", err.msg);
        r->have_ck = 1;
        r->cfg = r->ck.cfg;
    } else if ((rc = parse_init(a->init, &r->cfg)) != 0) {
        return rc;
    }
    int V = r->cfg.vocab_size;
    if (!a->ids) {
        char def[4096];
        const char *tp = a->tokenizer;
        if (!tp && !a->model)
            return bad("train: text data with --init needs --tokenizer FILE (make one with 'lm "
                       "tokenizer train'), or give --ids data");
        if (!tp) {
            bg_cli_lm_tokenizer_beside(a->model, def, sizeof def);
            tp = def;
        }
        if (bg_nn_tok_load(tp, &r->tok, &err) != BG_OK)
            return bad("--tokenizer: %s", err.msg);
        if (bg_nn_tok_size(r->tok) > V)
            return bad("--tokenizer %s has %d tokens but the model's vocabulary is %d: its ids "
                       "%d..%d would be out of the vocabulary",
                       tp, bg_nn_tok_size(r->tok), V, V, bg_nn_tok_size(r->tok) - 1);
    }
    char *text;
    size_t len;
    if ((rc = read_all("--data", a->data, &text, &len)) != 0)
        return rc;
    rc = a->ids ? parse_id_file(a->data, text, V, &r->data)
                : encode_text(a->data, text, len, r->tok, &r->data);
    free(text);
    if (rc)
        return rc;
    if (r->data.n == 0)
        return bad("--data %s: no tokens (the file is empty or blank)", a->data);
    r->T = a->seq > 0 ? (int)a->seq : (r->cfg.seq_len < 256 ? r->cfg.seq_len : 256);
    if (r->T > r->cfg.seq_len)
        return bad("--seq %d is longer than the model's context (%d positions)", r->T,
                   r->cfg.seq_len);
    r->B = a->batch > 0 ? (int)a->batch : 8;
    double hold = a->holdout >= 0 ? a->holdout : 0.1;
    r->n_hold = (size_t)floor((double)r->data.n * hold);
    r->n_train = r->data.n - r->n_hold;
    if (r->n_train < (size_t)r->T + 1)
        return bad("--data %s: the training split has %zu tokens; one sequence needs --seq + 1 "
                   "= %d (more data, a smaller --seq or --holdout)",
                   a->data, r->n_train, r->T + 1);
    if (r->n_hold > 0 && r->n_hold < (size_t)r->T + 1)
        return bad("--data %s: the held-out split has %zu tokens; one sequence needs --seq + 1 "
                   "= %d (a larger --holdout, more data, or --holdout 0)",
                   a->data, r->n_hold, r->T + 1);
    r->steps = a->steps >= 0 ? a->steps : 100;
    r->lr = a->lr >= 0 ? a->lr : 1e-3;
    size_t R = (size_t)r->B * (size_t)r->T;
    r->tokens = malloc(R * sizeof *r->tokens);
    r->targets = malloc(R * sizeof *r->targets);
    r->weights = malloc(R * sizeof *r->weights);
    if (!r->tokens || !r->targets || !r->weights)
        return bad("out of memory for a batch of %zu tokens", R);
    return 0;
}

/* Creates --out and, for --init, the starting weights. Returns 0 or 1. */
static int make_out(run *r)
{
    const char *out = r->a->out;
    struct stat st;
    if (mkdir(out, 0755) == 0)
        r->made_out = 1;
    else if (!(errno == EEXIST && stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, "bayesguard lm train: --out %s: cannot create the directory: %s\n", out,
                strerror(errno));
        return 1;
    }
    if (r->have_ck)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/.init.bin", out);
    bg_err err;
    int ok = bg_nn_init_write(path, &r->cfg, (uint64_t)r->a->seed * 7919u + 17u, &err) == BG_OK &&
             bg_nn_ckpt_open(&r->ck, path, &err) == BG_OK;
    unlink(path);
    if (!ok) {
        fprintf(stderr, "bayesguard lm train: --init: %s\n", err.msg);
        return 1;
    }
    r->have_ck = 1;
    return 0;
}

/* Held-out loss: mean NLL over up to EVAL_BATCHES batches of consecutive windows. */
static int eval_hold(run *r, bg_nn_trainer *t, double *loss, size_t *ntok, bg_err *err)
{
    const int32_t *h = r->data.ids + r->n_train;
    size_t nwin = (r->n_hold - 1) / (size_t)r->T, cap = (size_t)EVAL_BATCHES * (size_t)r->B;
    nwin = nwin < cap ? nwin : cap;
    *ntok = nwin * (size_t)r->T;
    *loss = 0;
    for (size_t w0 = 0; w0 < nwin; w0 += (size_t)r->B) {
        for (int b = 0; b < r->B; b++) {
            size_t w = w0 + (size_t)b < nwin ? w0 + (size_t)b : 0;
            float wt = w0 + (size_t)b < nwin ? (float)(1.0 / (double)*ntok) : 0.0f;
            for (int k = 0; k < r->T; k++) {
                size_t i = (size_t)b * (size_t)r->T + (size_t)k;
                r->tokens[i] = h[w * (size_t)r->T + (size_t)k];
                r->targets[i] = h[w * (size_t)r->T + (size_t)k + 1];
                r->weights[i] = wt;
            }
        }
        double l = 0;
        int rc = bg_nn_train_eval(t, r->tokens, r->targets, r->weights, &l, NULL, err);
        if (rc != BG_OK)
            return rc;
        *loss += l;
    }
    return BG_OK;
}

/* What save_one writes. */
enum { OUT_ADAPTERS, OUT_CHECKPOINT, OUT_STATE, OUT_TOKENIZER };

/* Writes file `name` in dir through a temporary name and a rename, so a
 * reader (or a --resume after a crash) never sees half a file. */
static int save_one(run *r, bg_nn_trainer *t, const char *dir, const char *name, int kind,
                    bg_err *err)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = kind == OUT_ADAPTERS     ? bg_nn_lora_save(t, tmp, err)
             : kind == OUT_CHECKPOINT ? bg_nn_train_save_checkpoint(t, tmp, err)
             : kind == OUT_STATE      ? bg_nn_train_save_state(t, tmp, err)
                                      : bg_nn_tok_save(r->tok, tmp, err);
    if (rc == BG_OK && rename(tmp, path) != 0)
        rc = bg_err_set(err, BG_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc != BG_OK)
        unlink(tmp);
    return rc;
}

/* The run's outputs in dir: the weights (adapter.lora or model.bin), the
 * optimizer state (for --resume) and the tokenizer (text data). */
static int save_outputs(run *r, bg_nn_trainer *t, const char *dir)
{
    bg_err err;
    int lora = r->a->lora > 0;
    const char *w = lora ? "adapter.lora" : "model.bin";
    int rc = save_one(r, t, dir, w, lora ? OUT_ADAPTERS : OUT_CHECKPOINT, &err);
    if (rc == BG_OK)
        rc = save_one(r, t, dir, STATE_FILE, OUT_STATE, &err);
    if (rc == BG_OK && r->tok)
        rc = save_one(r, t, dir, "tokenizer.bin", OUT_TOKENIZER, &err);
    if (rc != BG_OK) {
        fprintf(stderr, "bayesguard lm train: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s/%s, %s/%s%s%s%s\n", dir, w, dir, STATE_FILE, r->tok ? ", " : "",
           r->tok ? dir : "", r->tok ? "/tokenizer.bin" : "");
    return 0;
}

/* --save-every: the outputs of step `step` in --out/step-N. */
static int save_step(run *r, bg_nn_trainer *t, long step)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/step-%ld", r->a->out, step);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bayesguard lm train: %s: cannot create the directory: %s\n", dir,
                strerror(errno));
        return 1;
    }
    int rc = save_outputs(r, t, dir);
    /* --keep-saves K: the step-N folder K saves back goes (only the files
     * lm train writes there, then the folder if nothing else is in it) */
    long k = r->a->keep_saves, old = step - k * r->a->save_every;
    if (rc == 0 && k > 0 && old > 0) {
        static const char *const names[] = {"model.bin", "adapter.lora", STATE_FILE,
                                            "tokenizer.bin"};
        char path[4200];
        snprintf(dir, sizeof dir, "%s/step-%ld", r->a->out, old);
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            unlink(path);
        }
        if (rmdir(dir) == 0)
            printf("removed %s (--keep-saves %ld)\n", dir, k);
    }
    return rc;
}

static int train_loop(run *r, bg_nn_trainer *t)
{
    bg_err err;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)r->a->seed * 0xD1B54A32D192ED03ull);
    rng = rng ? rng : 1;
    long warm = r->steps / 20 > 0 ? r->steps / 20 : 1;
    long every = r->a->eval_every > 0 ? r->a->eval_every : 0;
    long save_every = r->a->save_every > 0 ? r->a->save_every : 0;
    long start = bg_nn_train_steps_done(t); /* > 0 after --resume */
    double hl;
    size_t hn;
    /* a resumed run draws the batches the first run would have drawn next */
    for (long i = 0; i < start * r->B; i++)
        (void)rng_next(&rng);
    for (long step = start;; step++) {
        if (save_every && step > start && step % save_every == 0 && save_step(r, t, step) != 0)
            return 1;
        if (r->n_hold > 0 && (step == start || step == r->steps || (every && step % every == 0))) {
            if (eval_hold(r, t, &hl, &hn, &err) != BG_OK)
                break;
            if (!isfinite(hl)) {
                fprintf(stderr,
                        "bayesguard lm train: eval step %ld: the held-out loss is %g, not finite: "
                        "the model's forward overflows%s, so nothing more is written\n",
                        step, hl, step == start ? " before this run's first step" : "");
                return 1;
            }
            printf("eval step %ld held-out loss %.6f (%zu tokens)\n", step, hl, hn);
            fflush(stdout);
        }
        if (step == r->steps)
            return 0;
        double lr =
            step < warm
                ? r->lr * (double)(step + 1) / (double)warm
                : r->lr * (0.1 + 0.45 * (1.0 + cos(3.14159265358979323846 * (double)(step - warm) /
                                                   (double)(r->steps - warm))));
        if (bg_nn_train_set_lr(t, (float)lr, &err) != BG_OK)
            break;
        for (int b = 0; b < r->B; b++) {
            size_t off = (size_t)(rng_next(&rng) % (uint64_t)(r->n_train - (size_t)r->T));
            memcpy(r->tokens + (size_t)b * (size_t)r->T, r->data.ids + off,
                   sizeof(int32_t) * (size_t)r->T);
            memcpy(r->targets + (size_t)b * (size_t)r->T, r->data.ids + off + 1,
                   sizeof(int32_t) * (size_t)r->T);
        }
        double t0 = now_s(), loss = 0;
        if (bg_nn_train_step(t, r->tokens, r->targets, NULL, &loss, &err) != BG_OK)
            break;
        if (!isfinite(loss)) {
            /* the weights have diverged: nothing of this run is worth writing */
            fprintf(stderr,
                    "bayesguard lm train: step %ld: the loss is %g, not finite; %s, so nothing "
                    "more is written (a lower --lr or --lora-alpha; the last --save-every "
                    "outputs in --out are kept)\n",
                    step + 1, loss,
                    step == start ? "the model's forward overflows at this run's first step"
                                  : "the weights have diverged");
            return 1;
        }
        printf("step %ld loss %.6f lr %.3g (%.1f ms)\n", step + 1, loss, lr, 1e3 * (now_s() - t0));
        fflush(stdout);
    }
    fprintf(stderr, "bayesguard lm train: %s\n", err.msg);
    return 1;
}

/* The flags that set a trainer option, by the name the trainer gives the
 * option it refused (err.field, bg_nn_train_create); NULL for any other. */
static const char *train_flags(const char *field)
{
    static const struct {
        const char *field, *flags;
    } map[] = {
        {"batch", "--batch"},
        {"seq", "--seq"},
        {"lora_rank", "--lora"},
        {"lora_alpha", "--lora-alpha"},
        {"adamw", "--lr"},
        {"act_budget", "--recompute, --act-budget, --batch, --seq"},
        {"logit_budget", "--logit-budget"},
    };
    for (size_t i = 0; field && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(field, map[i].field))
            return map[i].flags;
    return NULL;
}

int bg_cli_lm_train(const bg_cli_lm_args *a)
{
    run r;
    memset(&r, 0, sizeof r);
    r.a = a;
    int rc = prepare(&r);
    if (rc == 0)
        rc = make_out(&r);
    bg_nn_trainer *t = NULL;
    if (rc == 0) {
        int kind = bg_backend_kind_parse(a->backend ? a->backend : "cpu");
        bg_compute_opts co = {(bg_backend_kind)kind, (int)a->threads, 0, -1};
        bg_nn_train_opts o = {
            .batch = r.B,
            .seq = r.T,
            .lora_rank = (int)a->lora,
            .lora_alpha = (float)a->lora_alpha,
            .recompute = a->recompute,
            .act_budget = a->act_budget,
            .logit_budget = a->logit_budget,
            .seed = (uint64_t)a->seed,
            .precision =
                (bg_precision)(a->precision ? bg_precision_parse(a->precision) : BG_PRECISION_FP32),
            .adamw = {.lr = (float)r.lr,
                      .beta1 = 0.9f,
                      .beta2 = 0.95f,
                      .eps = 1e-8f,
                      .weight_decay = 0.0f,
                      .max_norm = 1.0f}};
        bg_err err;
        if (bg_nn_train_create(&r.ck, &co, &o, &t, &err) != BG_OK) {
            /* the trainer names the option it refused; say the flags */
            const char *flags = train_flags(err.field);
            fprintf(stderr, "bayesguard lm train: %s%s%s%s\n", err.msg, flags ? " (lm train: " : "",
                    flags ? flags : "", flags ? ")" : "");
            rc = err.code == BG_EINVAL ? 2 : 1;
            /* bad input (a budget the step does not fit, ...) is refused
             * before --out exists, as every other bad input is */
            if (rc == 2 && r.made_out)
                rmdir(a->out);
        }
    }
    if (rc == 0 && a->resume) {
        /* the state holds the trainable tensors, AdamW's moments and the
         * step: the run goes on from there with the same flags */
        char sp[4096];
        bg_err err;
        snprintf(sp, sizeof sp, "%s/" STATE_FILE, a->resume);
        if (bg_nn_train_load_state(t, sp, &err) != BG_OK)
            rc = bad("--resume: %s", err.msg);
        else if (bg_nn_train_steps_done(t) >= r.steps)
            rc = bad("--resume %s: the state is at step %d; --steps %ld leaves nothing to do "
                     "(--steps is the run's total, counted from its first step)",
                     a->resume, bg_nn_train_steps_done(t), r.steps);
        if (rc && r.made_out)
            rmdir(a->out);
    }
    if (rc == 0) {
        const bg_nn_config *c = &r.cfg;
        bg_nn_train_mem mem;
        bg_nn_train_memory(t, &mem);
        size_t np = 0;
        for (int i = 0; i < bg_nn_train_nparams(t); i++)
            np += bg_nn_train_param_size(t, i);
        printf("model: dim %d, layers %d, heads %d, kv heads %d, hidden %d, vocab %d, seq %d "
               "(%s)\n",
               c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size,
               c->seq_len, a->model ? a->model : "--init");
        int mib = mem.activations >= ((size_t)1 << 20);
        char kind[64] = "full";
        if (a->lora > 0)
            snprintf(kind, sizeof kind, "LoRA rank %ld alpha %g", a->lora,
                     (double)bg_nn_train_lora_alpha(t));
        printf("training: %s, %zu trainable floats, batch %d x seq %d, %ld steps, lr %g, seed "
               "%ld, peak memory %.2f MiB (logits by %d rows, activations %.2f %s%s)\n",
               kind, np, r.B, r.T, r.steps, r.lr, a->seed, (double)mem.peak / 1048576.0,
               mem.logit_rows, (double)mem.activations / (mib ? 1048576.0 : 1024.0),
               mib ? "MiB" : "KiB", a->recompute ? " with recompute" : "");
        printf("data: %zu tokens (training %zu, held-out %zu)\n", r.data.n, r.n_train, r.n_hold);
        if (a->resume)
            printf("resumed from %s/%s at step %d\n", a->resume, STATE_FILE,
                   bg_nn_train_steps_done(t));
        fflush(stdout);
        rc = train_loop(&r, t);
    }
    if (rc == 0)
        rc = save_outputs(&r, t, a->out);
    bg_nn_train_destroy(t);
    if (r.have_ck)
        bg_nn_ckpt_close(&r.ck);
    bg_nn_tok_destroy(r.tok);
    free(r.data.ids);
    free(r.tokens);
    free(r.targets);
    free(r.weights);
    return rc;
}

/* lm merge --model CKPT --adapter FILE --out CKPT: the base with the
 * adapters folded in (W + (alpha / r) B A, summed in double: nn_train_io.c),
 * a llama2.c checkpoint that every lm command and the plugin load as it is.
 * The trainer is made only to hold the weights (batch 1 x 1 token). */
int bg_cli_lm_merge(const bg_cli_lm_args *a)
{
    if (!a->model || !a->adapter || !a->out)
        return bad("merge: --model CKPT, --adapter FILE and --out CKPT are required");
    if (a->data || a->init || a->resume || a->lora || a->prompt || a->tokens || a->tokenizer)
        return bad("merge: takes --model, --adapter, --out, --backend and --threads only");
    int kind = bg_backend_kind_parse(a->backend ? a->backend : "cpu");
    if (kind != BG_BACKEND_CPU && kind != BG_BACKEND_VULKAN)
        return bad("--backend '%s': expected cpu or vulkan", a->backend);
    bg_err err;
    bg_nn_ckpt ck;
    if (bg_nn_ckpt_open(&ck, a->model, &err) != BG_OK)
        return bad("--model: %s", err.msg);
    int rank = 0, rc = 0;
    float alpha = 0;
    if (bg_nn_lora_file_info(a->adapter, &rank, &alpha, &err) != BG_OK)
        rc = bad("--adapter: %s", err.msg);
    bg_nn_trainer *t = NULL;
    if (rc == 0) {
        bg_compute_opts co = {(bg_backend_kind)kind, (int)a->threads, 0, -1};
        bg_nn_train_opts o = {
            .batch = 1,
            .seq = 1,
            .lora_rank = rank,
            .lora_alpha = alpha,
            .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .max_norm = 1.0f}};
        if (bg_nn_train_create(&ck, &co, &o, &t, &err) != BG_OK) {
            if (err.code != BG_EINVAL) {
                fprintf(stderr, "bayesguard lm merge: %s\n", err.msg);
                rc = 1;
            } else {
                rc = bad("--adapter %s (rank %d) on --model %s: %s", a->adapter, rank, a->model,
                         err.msg);
            }
        }
    }
    if (rc == 0 && bg_nn_lora_load(t, a->adapter, &err) != BG_OK)
        rc = bad("--adapter: %s", err.msg);
    if (rc == 0) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", a->out);
        bg_err_clear(&err);
        if (bg_nn_train_save_checkpoint(t, tmp, &err) == BG_OK && rename(tmp, a->out) != 0)
            bg_err_set(&err, BG_EIO, "cannot rename %s into place: %s", tmp, strerror(errno));
        if (err.code != BG_OK) {
            fprintf(stderr, "bayesguard lm merge: --out %s: %s\n", a->out, err.msg);
            unlink(tmp);
            rc = 1;
        } else {
            printf("wrote %s: %s with %s folded in (LoRA rank %d, alpha %g)\n", a->out, a->model,
                   a->adapter, rank, (double)alpha);
        }
    }
    bg_nn_train_destroy(t);
    bg_nn_ckpt_close(&ck);
    return rc;
}
