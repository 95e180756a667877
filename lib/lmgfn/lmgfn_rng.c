/*
 * lmgfn_rng.c — the random-integer task (Hu et al. §2) end to end, for a
 * model the project trains: `bayesguard lm gfn rng`.
 *
 * stories260K has no tokenizer, so the task brings its own: 16 character
 * tokens (BOS, ⊤ = newline, the ten digits, 'n', '=', ' ', 'x') and the
 * prompt "BOS n =". When no checkpoint is given, a tiny base model is
 * trained here from scratch (full fine-tuning of a synthetic checkpoint) on
 * a corpus of prompt + string + ⊤ lines drawn from a skewed, partly invalid
 * distribution: small integers far more often than large ones, and a third
 * of the lines out of range, with a leading zero, or junk. So the base
 * model is, like GPT-J in the paper, far from uniform and often invalid.
 *
 * Four methods are then measured on the same number of samples: the base
 * model as it is (no mask), the base at the temperature with the lowest KL
 * (chosen on a separate seed), supervised fine-tuning on uniform valid
 * integers (LoRA of the same rank, same steps and sequences per step,
 * sampled with the task's mask), and the GFlowNet (the same LoRA, reward
 * 1 for a valid integer and e^-12 otherwise, for every prefix).
 *
 * Sampling for the measurement walks a prefix tree whose next-token
 * distributions are computed once per prefix (at most 17^4 of them), so
 * 100,000 samples cost a few thousand forwards and are exact draws.
 *
 * Threads: the caller's. Ownership: everything is freed before returning;
 * files go to out_dir (or a temporary directory removed at the end).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmgfn/lmgfn.h"
#include "lmgfn/lmgfn_priv.h"

enum { TOK_BOS = 0, TOK_STOP = 1, TOK_D0 = 2, TOK_N = 12, TOK_EQ = 13, TOK_SP = 14, TOK_X = 15 };
#define RNG_P 3 /* prompt tokens */
#define RNG_L 4 /* max generated tokens */
#define RNG_T (RNG_P + RNG_L)
#define LOGR_INVALID (-12.0)

static const int32_t rng_prompt[RNG_P] = {TOK_BOS, TOK_N, TOK_EQ};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int bg_lmgfn_rng_value(const int32_t *z, int n)
{
    if (n < 1 || n > 3)
        return -1;
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (z[i] < TOK_D0 || z[i] > TOK_D0 + 9)
            return -1;
        v = v * 10 + (z[i] - TOK_D0);
    }
    if (n > 1 && z[0] == TOK_D0)
        return -1; /* a leading zero */
    return v <= 100 ? v : -1;
}

int bg_lmgfn_rng_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                        double *logr, bg_err *err)
{
    (void)ctx;
    (void)g;
    (void)err;
    for (int j = 0; j < k; j++)
        for (int i = 0; i <= n[j]; i++)
            logr[j * (RNG_L + 1) + i] = bg_lmgfn_rng_value(z[j], i) >= 0 ? 0.0 : LOGR_INVALID;
    return BG_OK;
}

void bg_lmgfn_rng_defaults(bg_lmgfn_rng_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->samples = 100000;
    o->base_steps = 400;
    o->steps = 300;
    o->batch = 16;
    o->lora_rank = 4;
    o->lr = 5e-3f;
}

/* One corpus line's string (the part after the prompt), length 0..4. */
static int corpus_line(uint64_t *s, int32_t *z)
{
    double u = bg__lmgfn_unif(s);
    int n = 0;
    if (u < 0.6) { /* a valid integer, strongly skewed to small values */
        int v = (int)floor(101.0 * pow(bg__lmgfn_unif(s), 5.0));
        char buf[8];
        snprintf(buf, sizeof buf, "%d", v);
        for (; buf[n]; n++)
            z[n] = TOK_D0 + (buf[n] - '0');
    } else if (u < 0.72) { /* out of range */
        int v = 101 + (int)(bg__lmgfn_unif(s) * 1899.0);
        char buf[8];
        snprintf(buf, sizeof buf, "%d", v);
        for (; buf[n]; n++)
            z[n] = TOK_D0 + (buf[n] - '0');
    } else if (u < 0.82) { /* a leading zero */
        z[n++] = TOK_D0;
        z[n++] = TOK_D0 + (int)(bg__lmgfn_unif(s) * 10.0);
    } else { /* junk: letters and spaces among digits, or nothing */
        int len = (int)(bg__lmgfn_unif(s) * 4.0);
        static const int32_t junk[] = {TOK_X, TOK_SP, TOK_N, TOK_EQ, TOK_D0 + 7};
        for (; n < len; n++)
            z[n] = junk[(int)(bg__lmgfn_unif(s) * 5.0)];
    }
    return n;
}

/* Writes a row: prompt + z + ⊤ padded with ⊤; targets the next token;
 * weight w on the positions that predict z and its ⊤, 0 elsewhere. */
static void lm_row(const int32_t *z, int n, float w, int32_t *tok, int32_t *tgt, float *wt)
{
    int32_t line[RNG_T + 1];
    memcpy(line, rng_prompt, sizeof rng_prompt);
    for (int i = 0; i < RNG_L + 1; i++)
        line[RNG_P + i] = i < n ? z[i] : TOK_STOP;
    for (int p = 0; p < RNG_T; p++) {
        tok[p] = line[p];
        tgt[p] = line[p + 1];
        wt[p] = (p >= RNG_P - 1 && p <= RNG_P - 1 + n) ? w : 0.0f;
    }
}

static int train_base(const bg_lmgfn_rng_opts *o, const char *path, bg_err *err)
{
    bg_nn_config cfg = {.dim = 48,
                        .hidden_dim = 96,
                        .n_layers = 2,
                        .n_heads = 4,
                        .n_kv_heads = 4,
                        .vocab_size = BG_LMGFN_RNG_VOCAB,
                        .seq_len = 8,
                        .shared_classifier = 1};
    int rc = bg_nn_synth_write(path, &cfg, o->seed * 7919 + 1, err);
    bg_nn_ckpt ck;
    if (rc == BG_OK)
        rc = bg_nn_ckpt_open(&ck, path, err);
    if (rc != BG_OK)
        return rc;
    int B = 64;
    bg_nn_train_opts to = {
        .batch = B,
        .seq = RNG_T,
        .seed = o->seed,
        .adamw = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
    bg_nn_trainer *t;
    rc = bg_nn_train_create(&ck, &o->copts, &to, &t, err);
    bg_nn_ckpt_close(&ck);
    if (rc != BG_OK)
        return rc;
    int32_t tok[64 * RNG_T], tgt[64 * RNG_T], z[RNG_L + 4];
    float w[64 * RNG_T];
    uint64_t s = o->seed * 0x51ed27ull + 3;
    double loss = 0;
    for (int step = 0; rc == BG_OK && step < o->base_steps; step++) {
        int total = 0, ns[64];
        int32_t zs[64][RNG_L + 4];
        for (int b = 0; b < B; b++) {
            ns[b] = corpus_line(&s, zs[b]);
            total += ns[b] + 1;
        }
        for (int b = 0; b < B; b++)
            lm_row(zs[b], ns[b], 1.0f / (float)total, tok + b * RNG_T, tgt + b * RNG_T,
                   w + b * RNG_T);
        rc = bg_nn_train_step(t, tok, tgt, w, &loss, err);
        if (!o->quiet && (step + 1) % 100 == 0)
            fprintf(stderr, "base model: step %d/%d, loss %.4f nats/token\n", step + 1,
                    o->base_steps, loss);
    }
    (void)z;
    if (rc == BG_OK)
        rc = bg_nn_train_save_checkpoint(t, path, err);
    bg_nn_train_destroy(t);
    if (rc != BG_OK)
        bg_err_prefix(err, "training the base model: ");
    return rc;
}

/* ---- measurement: exact draws through a prefix tree ------------------------ */

typedef struct eval_tree {
    float **probs; /* [17^RNG_L] next-token distributions, by prefix code */
} eval_tree;

static int prefix_code(const int32_t *z, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c = c * (BG_LMGFN_RNG_VOCAB + 1) + z[i] + 1;
    return c;
}

#define TREE_SIZE 100000 /* > 17^4 = 83521 codes */

/* Samples `samples` strings from the trainer's current model at temp
 * (masked: the task's rules, digits only and ⊤ after at least one), counts
 * valid and values. */
static int measure(bg_nn_trainer *t, double temp, int masked, long samples, uint64_t seed,
                   double *valid, double *kl, bg_err *err)
{
    float **probs = calloc(TREE_SIZE, sizeof(float *));
    long *count = calloc(BG_LMGFN_RNG_VALID, sizeof(long));
    if (!probs || !count) {
        free(probs);
        free(count);
        return bg_err_set(err, BG_ENOMEM, "rng task: out of memory for the prefix tree");
    }
    int rc = BG_OK;
    long nvalid = 0;
    uint64_t s = seed;
    float logits[BG_LMGFN_RNG_VOCAB];
    for (long k = 0; rc == BG_OK && k < samples; k++) {
        int32_t seq[RNG_T], z[RNG_L];
        memcpy(seq, rng_prompt, sizeof rng_prompt);
        int n = 0;
        while (n < RNG_L) {
            int code = prefix_code(z, n);
            if (!probs[code]) {
                rc = bg_nn_train_logits(t, seq, RNG_P + n, logits, err);
                if (rc != BG_OK)
                    break;
                float *p = malloc(sizeof(float) * BG_LMGFN_RNG_VOCAB);
                if (!p) {
                    rc = bg_err_set(err, BG_ENOMEM, "rng task: out of memory");
                    break;
                }
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < BG_LMGFN_RNG_VOCAB; j++) {
                    /* the task's rules: digits, and ⊤ only after one (min_len 1) */
                    int ok =
                        !masked || (j == TOK_STOP && n > 0) || (j >= TOK_D0 && j < TOK_D0 + 10);
                    logits[j] = ok ? (float)(logits[j] / temp) : -INFINITY;
                    if (logits[j] > mx)
                        mx = logits[j];
                }
                for (int j = 0; j < BG_LMGFN_RNG_VOCAB; j++)
                    sum += exp(logits[j] - mx);
                for (int j = 0; j < BG_LMGFN_RNG_VOCAB; j++)
                    p[j] = (float)(exp(logits[j] - mx) / sum);
                probs[code] = p;
            }
            double u = bg__lmgfn_unif(&s), acc = 0;
            int tok = TOK_STOP;
            for (int j = 0; j < BG_LMGFN_RNG_VOCAB; j++) {
                acc += probs[code][j];
                if (u < acc) {
                    tok = j;
                    break;
                }
            }
            if (tok == TOK_STOP)
                break;
            z[n] = tok;
            seq[RNG_P + n] = tok;
            n++;
        }
        int v = bg_lmgfn_rng_value(z, n);
        if (v >= 0) {
            nvalid++;
            count[v]++;
        }
    }
    if (rc == BG_OK) {
        *valid = (double)nvalid / (double)samples;
        double d = 0;
        for (int v = 0; v < BG_LMGFN_RNG_VALID && nvalid > 0; v++)
            if (count[v] > 0) {
                double p = (double)count[v] / (double)nvalid;
                d += p * log(p * BG_LMGFN_RNG_VALID);
            }
        *kl = nvalid > 0 ? d : INFINITY;
    }
    for (int i = 0; i < TREE_SIZE; i++)
        free(probs[i]);
    free(probs);
    free(count);
    return rc;
}

static void row_set(bg_lmgfn_rng_row *r, const char *method, double valid, double kl,
                    double seconds, long samples)
{
    snprintf(r->method, sizeof r->method, "%s", method);
    r->valid = valid;
    r->kl = kl;
    r->seconds = seconds;
    r->samples = samples;
}

static bg_nn_train_opts lora_opts(const bg_lmgfn_rng_opts *o, int batch)
{
    bg_nn_train_opts to = {
        .batch = batch,
        .seq = RNG_T,
        .lora_rank = o->lora_rank,
        .seed = o->seed + 11,
        .adamw = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
    return to;
}

/* base and base T=…: the base model (adapters off, no mask). */
static int run_base(const bg_lmgfn_rng_opts *o, const bg_nn_ckpt *ck, bg_lmgfn_rng_row rows[2],
                    bg_err *err)
{
    bg_nn_train_opts to = lora_opts(o, 1);
    bg_nn_trainer *t;
    int rc = bg_nn_train_create(ck, &o->copts, &to, &t, err);
    if (rc != BG_OK)
        return rc;
    bg_nn_train_set_adapters(t, 0);
    double t0 = now_s(), valid = 0, kl = 0;
    rc = measure(t, 1.0, 0, o->samples, o->seed * 31 + 5, &valid, &kl, err);
    row_set(&rows[0], "base", valid, kl, now_s() - t0, o->samples);
    static const double temps[] = {0.5, 0.7, 0.85, 1.0, 1.25, 1.5, 2.0, 3.0};
    double best_t = 1.0, best_kl = INFINITY;
    long pick = o->samples / 4 > 20000 ? 20000 : (o->samples / 4 > 2000 ? o->samples / 4 : 2000);
    t0 = now_s();
    for (size_t i = 0; rc == BG_OK && i < sizeof temps / sizeof temps[0]; i++) {
        double v2, k2;
        rc = measure(t, temps[i], 0, pick, o->seed * 31 + 1000 + i, &v2, &k2, err);
        if (rc == BG_OK && k2 < best_kl) {
            best_kl = k2;
            best_t = temps[i];
        }
    }
    if (rc == BG_OK)
        rc = measure(t, best_t, 0, o->samples, o->seed * 31 + 7, &valid, &kl, err);
    char name[32];
    snprintf(name, sizeof name, "base T=%.2g", best_t);
    row_set(&rows[1], name, valid, kl, now_s() - t0, o->samples);
    bg_nn_train_destroy(t);
    return rc;
}

/* sft: cross-entropy on uniform valid integers, same LoRA and budget. */
static int run_sft(const bg_lmgfn_rng_opts *o, const bg_nn_ckpt *ck, bg_lmgfn_rng_row *row,
                   bg_err *err)
{
    int B = o->batch;
    bg_nn_train_opts to = lora_opts(o, B);
    bg_nn_trainer *t;
    int rc = bg_nn_train_create(ck, &o->copts, &to, &t, err);
    if (rc != BG_OK)
        return rc;
    float bias[BG_LMGFN_RNG_VOCAB];
    for (int j = 0; j < BG_LMGFN_RNG_VOCAB; j++)
        bias[j] = (j == TOK_STOP || (j >= TOK_D0 && j < TOK_D0 + 10)) ? 0.0f : BG_LMGFN_MASK_LOGIT;
    rc = bg_nn_train_set_logit_bias(t, bias, err);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * RNG_T),
            *tgt = malloc(sizeof(int32_t) * (size_t)B * RNG_T);
    float *w = malloc(sizeof(float) * (size_t)B * RNG_T);
    if (rc == BG_OK && (!tok || !tgt || !w))
        rc = bg_err_set(err, BG_ENOMEM, "rng task: out of memory");
    uint64_t s = o->seed * 0xabcdull + 17;
    double t0 = now_s();
    for (int step = 0; rc == BG_OK && step < o->steps; step++) {
        int total = 0, ns[256];
        int32_t zs[256][RNG_L];
        for (int b = 0; b < B && b < 256; b++) {
            int v = (int)(bg__lmgfn_unif(&s) * BG_LMGFN_RNG_VALID);
            char buf[8];
            snprintf(buf, sizeof buf, "%d", v);
            for (ns[b] = 0; buf[ns[b]]; ns[b]++)
                zs[b][ns[b]] = TOK_D0 + (buf[ns[b]] - '0');
            total += ns[b] + 1;
        }
        for (int b = 0; b < B; b++)
            lm_row(zs[b], ns[b], 1.0f / (float)total, tok + b * RNG_T, tgt + b * RNG_T,
                   w + b * RNG_T);
        rc = bg_nn_train_step(t, tok, tgt, w, NULL, err);
    }
    double valid = 0, kl = 0;
    if (rc == BG_OK)
        rc = measure(t, 1.0, 1, o->samples, o->seed * 31 + 9, &valid, &kl, err);
    if (rc == BG_OK && o->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sft.lora", o->out_dir);
        rc = bg_nn_lora_save(t, path, err);
    }
    row_set(row, "sft", valid, kl, now_s() - t0, o->samples);
    free(tok);
    free(tgt);
    free(w);
    bg_nn_train_destroy(t);
    return rc;
}

static int run_gfn(const bg_lmgfn_rng_opts *o, const bg_nn_ckpt *ck, bg_lmgfn_rng_row *row,
                   bg_err *err)
{
    unsigned char legal[BG_LMGFN_RNG_VOCAB] = {0};
    for (int j = 0; j < 10; j++)
        legal[TOK_D0 + j] = 1;
    bg_lmgfn_opts go = {.prompt = rng_prompt,
                        .n_prompt = RNG_P,
                        .stop_token = TOK_STOP,
                        .min_len = 1,
                        .max_len = RNG_L,
                        .legal = legal,
                        .batch = o->batch,
                        .reward = bg_lmgfn_rng_reward};
    bg__lmgfn_task_schedule(&go, o->steps, o->seed);
    bg_nn_train_opts to = lora_opts(o, 1);
    bg_lmgfn *g;
    double t0 = now_s();
    int rc = bg_lmgfn_create(ck, &o->copts, &to, &go, &g, err);
    if (rc != BG_OK)
        return rc;
    bg_lmgfn_stats st;
    for (int step = 0; rc == BG_OK && step < o->steps; step++) {
        rc = bg_lmgfn_step(g, &st, err);
        if (rc == BG_OK && !o->quiet && (step + 1) % 50 == 0)
            fprintf(stderr, "gflownet: step %d/%d, loss %.4f, mean log R %.2f, beta %.2f\n",
                    step + 1, o->steps, st.loss, st.mean_logr, st.rtemp);
    }
    double valid = 0, kl = 0;
    if (rc == BG_OK)
        rc = measure(bg_lmgfn_trainer(g), 1.0, 1, o->samples, o->seed * 31 + 11, &valid, &kl, err);
    if (rc == BG_OK && o->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/gflownet.lora", o->out_dir);
        rc = bg_nn_lora_save(bg_lmgfn_trainer(g), path, err);
    }
    row_set(row, "gflownet", valid, kl, now_s() - t0, o->samples);
    bg_lmgfn_destroy(g);
    return rc;
}

int bg_lmgfn_rng_run(const bg_lmgfn_rng_opts *o, bg_lmgfn_rng_row rows[4], bg_err *err)
{
    if (o->samples < 1 || o->steps < 1 || o->batch < 1 || o->batch > 256 || o->lora_rank < 1)
        return bg_err_set(err, BG_EINVAL,
                          "rng task: samples >= 1, steps >= 1, batch 1..256 and lora rank >= 1 "
                          "are required");
    char tmpdir[] = "/tmp/bg-lmgfn-XXXXXX", path[4096];
    const char *dir = o->out_dir;
    if (!dir && !(dir = mkdtemp(tmpdir)))
        return bg_err_set(err, BG_EIO, "rng task: cannot create a temporary directory");
    if (o->out_dir && mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
        return bg_err_set(err, BG_EIO, "rng task: cannot create --out directory %s: %s", o->out_dir,
                          strerror(errno));
    int rc = BG_OK;
    if (o->model) {
        snprintf(path, sizeof path, "%s", o->model);
    } else {
        snprintf(path, sizeof path, "%s/base.bin", dir);
        rc = train_base(o, path, err);
    }
    bg_nn_ckpt ck;
    int open = 0;
    if (rc == BG_OK && (rc = bg_nn_ckpt_open(&ck, path, err)) == BG_OK) {
        open = 1;
        if (ck.cfg.vocab_size != BG_LMGFN_RNG_VOCAB || ck.cfg.seq_len < RNG_T)
            rc = bg_err_set(err, BG_EINVAL,
                            "rng task: %s has a vocabulary of %d and a context of %d; the task's "
                            "character tokenizer needs %d and at least %d",
                            path, ck.cfg.vocab_size, ck.cfg.seq_len, BG_LMGFN_RNG_VOCAB, RNG_T);
    }
    if (rc == BG_OK)
        rc = run_base(o, &ck, rows, err);
    if (rc == BG_OK)
        rc = run_sft(o, &ck, &rows[2], err);
    if (rc == BG_OK)
        rc = run_gfn(o, &ck, &rows[3], err);
    if (open)
        bg_nn_ckpt_close(&ck);
    if (!o->out_dir) {
        if (!o->model)
            unlink(path);
        rmdir(dir);
    }
    return rc;
}
