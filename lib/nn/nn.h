/*
 * nn.h — transformer inference for llama2.c checkpoints (spec/compute.md).
 *
 * Pieces, one file each:
 *   nn_ckpt.c    load + validate a legacy llama2.c checkpoint (untrusted)
 *   nn_synth.c   write deterministic synthetic checkpoints (tests, bench)
 *   nn_model.c   weights on a bg_compute backend; forward (decode/prefill);
 *                sequence log-probability scoring
 *   nn_batch.c   batched scoring: many (prefix, continuation) items in one
 *                pass over a token trie (bg_nn_score_batch)
 *   nn_ref.c     the plain single-threaded scalar forward (test oracle and
 *                benchmark floor), written with compute_ref.h
 *   nn_sample.c  temperature / top-p sampling with a seeded RNG; generate
 *   nn_bench.c   the benchmark behind `bayesguard lm bench` and bg_bench_lm
 *   nn_train.c   training: forward over [batch, seq] keeping activations,
 *                backward, AdamW with clipping, LoRA adapters (docs/TRAINING.md)
 *   nn_train_io.c  optimizer state and adapter files, merged checkpoints
 *   nn_tok.c, nn_tok_train.c  tokenizers (nn_tok.h): llama2.c tokenizer.bin,
 *                encode/decode, the BPE trainer
 *
 * Threads: a bg_nn_model (like its bg_compute) is used by one thread at a
 * time; the caller serialises. Checkpoints and configs are immutable after
 * open.
 * Ownership: every pointer argument is borrowed for the call unless said.
 */
#ifndef BG_NN_H
#define BG_NN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/bg_err.h"
#include "compute/compute.h"

/* The seven header fields, decoded (vocab_size is always positive here). */
typedef struct bg_nn_config {
    int dim;        /* model width */
    int hidden_dim; /* FFN width */
    int n_layers;
    int n_heads;
    int n_kv_heads; /* <= n_heads, divides it (grouped-query attention) */
    int vocab_size;
    int seq_len;           /* KV cache length: positions 0..seq_len-1 */
    int shared_classifier; /* 1: logits use the token embedding (header vocab > 0) */
} bg_nn_config;

/* Host pointers to a checkpoint's tensors (row-major, [out, in]). */
typedef struct bg_nn_weights {
    const float *tok_emb;   /* [vocab, dim] */
    const float *rms_att;   /* [layers, dim] */
    const float *wq;        /* [layers, dim, dim] */
    const float *wk;        /* [layers, kv_dim, dim] */
    const float *wv;        /* [layers, kv_dim, dim] */
    const float *wo;        /* [layers, dim, dim] */
    const float *rms_ffn;   /* [layers, dim] */
    const float *w1;        /* [layers, hidden, dim] */
    const float *w2;        /* [layers, dim, hidden] */
    const float *w3;        /* [layers, hidden, dim] */
    const float *rms_final; /* [dim] */
    const float *wcls;      /* [vocab, dim]; == tok_emb when shared */
} bg_nn_weights;

/* An opened checkpoint: _open/_close on caller storage. */
typedef struct bg_nn_ckpt {
    bg_nn_config cfg;
    bg_nn_weights w;
    void *data; /* private: the file's bytes (open), or NULL (parse) */
} bg_nn_ckpt;

#define BG_NN_RMS_EPS 1e-5f

static inline int bg_nn_head_size(const bg_nn_config *c)
{
    return c->dim / c->n_heads;
}
static inline int bg_nn_kv_dim(const bg_nn_config *c)
{
    return c->n_kv_heads * (c->dim / c->n_heads);
}

/* Reads `path` and validates every header field and the file length (the
 * message names the file and the field). On success ck must be closed. */
int bg_nn_ckpt_open(bg_nn_ckpt *ck, const char *path, bg_err *err);
void bg_nn_ckpt_close(bg_nn_ckpt *ck);
/* The same validation on bytes in memory (borrowed: data must outlive ck;
 * `name` is used in messages). No close needed when parsed this way. */
int bg_nn_ckpt_parse(bg_nn_ckpt *ck, const void *data, size_t len, const char *name, bg_err *err);
/* Checks a config against the loader's limits (what the header decodes to). */
int bg_nn_config_check(const bg_nn_config *cfg, const char *name, bg_err *err);
/* Bytes of a checkpoint with this config (header included); 0 if invalid. */
uint64_t bg_nn_ckpt_bytes(const bg_nn_config *cfg);

/* Writes a deterministic synthetic checkpoint (weights from `seed`, scaled
 * so activations stay O(1)); shared_classifier selects the header sign. */
int bg_nn_synth_write(const char *path, const bg_nn_config *cfg, uint64_t seed, bg_err *err);
/* Writes the starting weights of a model trained from scratch: N(0, 0.02)
 * matrices and embedding, wo and w2 N(0, 0.02/sqrt(2*layers)), norms 1
 * (nn_synth.c). Deterministic per (config, seed). */
int bg_nn_init_write(const char *path, const bg_nn_config *cfg, uint64_t seed, bg_err *err);

/* ---- the model on a compute backend ---------------------------------------- */

typedef struct bg_nn_model bg_nn_model;

/* Loads `path` onto a backend created from copts (cpu | vulkan | auto;
 * auto keeps a model under 16 MiB on the CPU, see nn_model.c; NULL: the
 * CPU backend with its default threads).
 * new: destroy with bg_nn_model_destroy. */
int bg_nn_model_load(const char *path, const bg_compute_opts *copts, bg_nn_model **out,
                     bg_err *err);
/* Uploads an opened checkpoint (ck may be closed afterwards). */
int bg_nn_model_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts, bg_nn_model **out,
                       bg_err *err);
void bg_nn_model_destroy(bg_nn_model *m);
const bg_nn_config *bg_nn_model_config(const bg_nn_model *m);
/* Borrowed, valid until destroy: "cpu (2 threads, avx2+fma)" ... */
const char *bg_nn_model_backend(const bg_nn_model *m);

/* Runs tokens[0..T) at positions pos..pos+T-1 (prefill when T > 1, decode
 * when T == 1); the KV cache must already hold positions 0..pos-1 of the
 * same sequence (positions >= pos are overwritten). When logits != NULL it
 * receives the vocab_size logits of the last position. */
int bg_nn_forward(bg_nn_model *m, const int32_t *tokens, int T, int pos, float *logits,
                  bg_err *err);

/* Sequence log-probabilities: out[i] = log p(conts[i][0..lens[i]) | prefix)
 * in nats, for n continuations sharing one prefix (n_prefix >= 1: the
 * prefix usually starts with BOS). The prefix is run once; each
 * continuation reuses its KV cache. Every length >= 1 and
 * n_prefix + lens[i] <= seq_len. */
int bg_nn_score(bg_nn_model *m, const int32_t *prefix, int n_prefix, const int32_t *const *conts,
                const int *lens, int n, double *out, bg_err *err);

/* One item of bg_nn_score_batch: log p(cont[0..n_cont) | prefix[0..n_prefix)).
 * Borrowed for the call. */
typedef struct bg_nn_item {
    const int32_t *prefix; /* n_prefix >= 1 tokens (usually BOS first) */
    int n_prefix;
    const int32_t *cont; /* n_cont >= 1 tokens; n_prefix + n_cont <= seq_len */
    int n_cont;
} bg_nn_item;

/* out[i] = log p(items[i].cont | items[i].prefix) in nats, for n >= 0
 * independent items, in one batched pass (or a few, when they do not fit
 * the batch buffers): every token sequence prefix ++ cont is a path in a
 * trie, and each trie node is one row of the batch, run once however many
 * items share it (the theories' common prompt, the harm and safe items of
 * one theory), every weight as one GEMM of all rows. A row attends
 * causally to its own path only. The head every item shares is kept in the
 * model's KV cache: the model remembers which tokens its cache holds (any
 * forward or score updates it), so a call whose shared head the cache
 * already holds runs only its part past them. Equal to bg_nn_score per item
 * up to float summation order (test_nn_batch: 1e-4 nats). Items are
 * checked (lengths, ids) before anything runs; the message names the item. */
int bg_nn_score_batch(bg_nn_model *m, const bg_nn_item *items, int n, double *out, bg_err *err);

/* ---- the plain scalar forward (oracle / baseline) -------------------------- */

typedef struct bg_nn_ref bg_nn_ref;

/* Borrows ck (must outlive the ref). new: destroy with bg_nn_ref_destroy. */
int bg_nn_ref_create(const bg_nn_ckpt *ck, bg_nn_ref **out, bg_err *err);
void bg_nn_ref_destroy(bg_nn_ref *r);
/* One token at position pos (0 <= pos < seq_len, caller keeps order);
 * returns the logits (vocab_size floats, owned by r, valid until the next
 * call). */
const float *bg_nn_ref_forward(bg_nn_ref *r, int32_t token, int pos);

/* ---- sampling -------------------------------------------------------------- */

typedef struct bg_nn_sampler {
    float temperature; /* 0 = greedy argmax */
    float topp;        /* (0, 1]; 1 = sample from the whole distribution */
    uint64_t rng;      /* xorshift state */
    int vocab;
    void *scratch; /* private: candidates for top-p */
} bg_nn_sampler;

int bg_nn_sampler_init(bg_nn_sampler *s, int vocab, float temperature, float topp, uint64_t seed,
                       bg_err *err);
void bg_nn_sampler_close(bg_nn_sampler *s);
/* Picks a token from logits[vocab] (overwritten with probabilities). */
int bg_nn_sample(bg_nn_sampler *s, float *logits);

/* Runs the prompt (n_prompt >= 1), then samples up to `steps` new tokens
 * into out (capacity steps). The context bounds it: at most
 * seq_len - n_prompt + 1 tokens come out (the last one is predicted from a
 * full context and not fed back). *n_out = how many. */
int bg_nn_generate(bg_nn_model *m, const int32_t *prompt, int n_prompt, int steps, bg_nn_sampler *s,
                   int32_t *out, int *n_out, bg_err *err);

/* ---- training (nn_train.c, nn_train_io.c; docs/TRAINING.md) ---------------
 *
 * A bg_nn_trainer holds ONE copy of the base weights on a backend, the
 * trainable tensors' gradients and AdamW moments, and the activations a
 * step keeps for its backward. Full fine-tuning (lora_rank 0) trains every
 * tensor; with lora_rank r > 0 the base weights are frozen and adapters
 * A [r, in] (uniform +-1/sqrt(in)) and B [out, r] (zeros) on wq, wk, wv, wo,
 * w1, w2, w3 are trained: W x + (alpha / r) * B (A x). With the adapters
 * switched off (bg_nn_train_set_adapters) the forward records exactly the
 * inference ops of bg_nn_model, so its logits are bit-identical to the base
 * model's on the same backend.
 *
 * A step is one recording: zero the gradients, forward over B sequences of
 * T tokens, fused cross-entropy, backward, one sumsq per trainable tensor,
 * AdamW on each; submitted once. Loss = -sum_t w_t log p(target_t) with
 * weights w (NULL: 1 / (B*T), the mean cross-entropy).
 */

/* The default logits budget: the step keeps [rows, V] logits of at most
 * this many bytes (and never over the backend's bg_compute_max_view or
 * bg_compute_max_alloc), reused chunk of rows after chunk (docs/TRAINING.md
 * "Memory"). */
#define BG_NN_LOGIT_BUDGET ((size_t)64 << 20)

typedef struct bg_nn_train_opts {
    int batch;              /* B >= 1 sequences per step */
    int seq;                /* T: tokens per sequence, 1..seq_len of the model */
    int lora_rank;          /* 0: full fine-tuning; r > 0: LoRA of rank r, base frozen */
    float lora_alpha;       /* adapter scale alpha / r; 0 means alpha = r (scale 1) */
    int recompute;          /* 1: keep only each layer's input; recompute its activations in
                               backward (about one extra forward per step) */
    size_t act_budget;      /* bytes the kept activations may take; 0 = no limit. Over it,
                               create fails saying what fits (recompute, smaller batch/seq) */
    size_t logit_budget;    /* bytes of the logits buffer; 0 = BG_NN_LOGIT_BUDGET. The
                               classifier, the loss and the classifier's backward run by
                               chunks of rows that fit it (below one row: create fails) */
    uint64_t seed;          /* adapter initialisation */
    bg_precision precision; /* the matmuls' inputs: FP32 (0) or BF16 (CPU backend with
                               AVX512_BF16, fp32 accumulation; compute.h) */
    bg_adamw_params adamw;  /* lr, betas, eps, weight_decay (matrices only), max_norm;
                               step is kept by the trainer */
} bg_nn_train_opts;

/* Bytes a trainer keeps on its backend, by role, and the step's peak. */
typedef struct bg_nn_train_mem {
    size_t weights;     /* base weights (+ adapters) */
    size_t grads;       /* gradients of the trainable tensors */
    size_t optimizer;   /* AdamW m and v */
    size_t activations; /* kept for backward (all layers, or inputs only with recompute) */
    size_t scratch;     /* per-step work buffers (a chunk of logits, activation gradients) */
    size_t transient;   /* upper bound of the backend's per-op scratch (CPU GEMM packing) */
    size_t peak;        /* sum of the above: the most a step holds at once */
    int logit_rows;     /* rows of the logits buffer (in scratch): a step of R rows runs the
                           classifier in ceil(R / logit_rows) chunks */
} bg_nn_train_mem;

typedef struct bg_nn_trainer bg_nn_trainer;

/* Uploads ck's weights (ck may be closed afterwards) onto a backend from
 * copts (NULL: CPU). new: destroy with bg_nn_train_destroy. An option
 * refused (BG_EINVAL) is named in err->field by its bg_nn_train_opts
 * member: "batch", "seq", "lora_rank", "lora_alpha", "adamw",
 * "act_budget" or "logit_budget" (bg_nn_train_set_lr's: "adamw"). */
int bg_nn_train_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts,
                       const bg_nn_train_opts *o, bg_nn_trainer **out, bg_err *err);
void bg_nn_train_destroy(bg_nn_trainer *t);
const bg_nn_config *bg_nn_train_config(const bg_nn_trainer *t);
void bg_nn_train_memory(const bg_nn_trainer *t, bg_nn_train_mem *m);
/* Adapters on (1, the default with lora_rank > 0) or off (the base model). */
void bg_nn_train_set_adapters(bg_nn_trainer *t, int on);
/* AdamW steps taken (restored by bg_nn_train_load_state). */
int bg_nn_train_steps_done(const bg_nn_trainer *t);
/* The learning rate of the next steps (a schedule is the caller's). */
int bg_nn_train_set_lr(bg_nn_trainer *t, float lr, bg_err *err);

/* One optimizer step on tokens/targets [B*T] (row b*T + t; ids checked
 * against the vocabulary before anything runs), weights [B*T] or NULL.
 * *loss (may be NULL) receives the loss before the update. */
int bg_nn_train_step(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, bg_err *err);
/* Forward and backward only: gradients of this batch (zeroed first), no
 * update (gradient checks, accumulation). */
int bg_nn_train_grad(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, bg_err *err);
/* Forward only: the loss, and lp[B*T] = log p(target) per position when lp
 * is not NULL. */
int bg_nn_train_eval(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, float *lp, bg_err *err);
/* Logits of the last of tokens[0..n) (1 <= n <= T, one sequence), computed
 * with the inference ops (last row through the M == 1 matmul), vocab floats. */
int bg_nn_train_logits(bg_nn_trainer *t, const int32_t *tokens, int n, float *logits, bg_err *err);
/* The same for nseq sequences of n tokens each (tokens[nseq * n], row s at
 * s * n): logits[nseq * vocab], row s the logits after sequence s's last
 * token. Up to o.batch * o.seq / n sequences per recording, and no more
 * than the logits buffer's rows (nn_train_logits.c); within float rounding of bg_nn_train_logits
 * (the classifier runs as one matmul of the sequences' rows). */
int bg_nn_train_logits_batch(bg_nn_trainer *t, const int32_t *tokens, int nseq, int n,
                             float *logits, bg_err *err);

/* A constant added to every position's logits before the cross-entropy and
 * in bg_nn_train_logits, with adapters on or off (a vocabulary mask: a large
 * negative entry such as -1e4 removes a token; no gradient flows into it).
 * bias[vocab] is copied; NULL removes it (the inference ops bit for bit
 * again). Entries must be finite. */
int bg_nn_train_set_logit_bias(bg_nn_trainer *t, const float *bias, bg_err *err);

/* The trainable tensors, in a fixed order: "tok_emb", "l0.wq", ... or, with
 * LoRA, "l0.wq.A", "l0.wq.B", ... Host copies of parameter and gradient. */
int bg_nn_train_nparams(const bg_nn_trainer *t);
/* The LoRA adapters' alpha in use (the option's, or the rank where it was
 * 0); 0 for full fine-tuning. */
float bg_nn_train_lora_alpha(const bg_nn_trainer *t);
const char *bg_nn_train_param_name(const bg_nn_trainer *t, int i);
size_t bg_nn_train_param_size(const bg_nn_trainer *t, int i); /* floats */
int bg_nn_train_param_read(bg_nn_trainer *t, int i, float *dst, bg_err *err);
int bg_nn_train_param_write(bg_nn_trainer *t, int i, const float *src, bg_err *err);
int bg_nn_train_grad_read(bg_nn_trainer *t, int i, float *dst, bg_err *err);

/* Files (nn_train_io.c). Each starts with a magic and a version, records the
 * shapes it was written for, and ends with a CRC-32 of everything before it;
 * a file for another model or rank, a short file or a bad CRC is refused
 * with a message naming the file and what differs.
 *   optimizer state: step, every trainable tensor's parameter, m and v
 *   adapters:        rank, alpha, every adapter's A and B
 *   merged:          a llama2.c checkpoint with W + (alpha/r) B A folded in */
int bg_nn_train_save_state(bg_nn_trainer *t, const char *path, bg_err *err);
int bg_nn_train_load_state(bg_nn_trainer *t, const char *path, bg_err *err);
int bg_nn_lora_save(bg_nn_trainer *t, const char *path, bg_err *err);
/* The rank and alpha an adapter file was written with (its header only: a
 * trainer for a merge or a load is created with them; bg_nn_lora_load then
 * checks the whole file). */
int bg_nn_lora_file_info(const char *path, int *rank, float *alpha, bg_err *err);
int bg_nn_lora_load(bg_nn_trainer *t, const char *path, bg_err *err);
int bg_nn_train_save_checkpoint(bg_nn_trainer *t, const char *path, bg_err *err);

/* ---- benchmark ------------------------------------------------------------- */

/* A baseline GEMM to compare against (OpenBLAS in bg_bench_lm; absent in
 * the daemon, which never links a BLAS). out[M,N] = x[M,K] · w[N,K]^T. */
typedef struct bg_nn_bench_blas {
    const char *name;
    void (*sgemm)(float *out, const float *x, const float *w, int M, int N, int K);
    void (*set_threads)(int n);
} bg_nn_bench_blas;

typedef struct bg_nn_bench_opts {
    const char *model_path;       /* stories260K.bin or NULL to skip it */
    const char *tmp_dir;          /* where the synthetic 15M checkpoint is written */
    int threads;                  /* multi-threaded runs; 0 = number of cores */
    int quick;                    /* fewer repetitions and tokens */
    const bg_nn_bench_blas *blas; /* may be NULL */
    FILE *out;
} bg_nn_bench_opts;

int bg_nn_bench_run(const bg_nn_bench_opts *o, bg_err *err);

#endif
