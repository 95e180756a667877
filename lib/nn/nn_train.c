/*
 * nn_train.c — training a llama2.c transformer on a bg_compute backend:
 * the forward over [batch, seq] that keeps what the backward needs, the
 * backward, AdamW with global-norm clipping, and LoRA adapters
 * (docs/TRAINING.md has the math and the memory budget).
 *
 * Why shaped so: one step is one recording (zero gradients, forward, fused
 * cross-entropy, backward, sumsq, AdamW), written once against compute.h,
 * so the CPU and Vulkan backends run the same graph. The backward mirrors
 * the forward op by op, reading the activations the forward saved (or, with
 * recompute, re-running one layer's forward from its saved input just
 * before that layer's backward). The residual stream's gradient dx is one
 * buffer that every block's backward accumulates into (rmsnorm_backward's
 * dx is "+="), which is the residual add's backward.
 *
 * With the adapters off the forward records exactly bg_nn_model's inference
 * ops in the same order (attention_train runs the same per-head kernel as
 * the cached attention; SwiGLU runs in place on a copy of h1), so logits
 * are bit-identical to the base model's; the next issue uses one copy of
 * the weights as both reward model (adapters off) and sampler (on).
 *
 * The logits are never [R, V]: one buffer of lrows rows (logit_rows: the
 * logits budget, within the backend's view and allocation limits) is reused
 * chunk after chunk of rows; for each chunk the recording runs the
 * classifier, the logit bias, the fused loss (dL/dlogits in place) and,
 * when training, the classifier's backward (that chunk's rows of dxf, the
 * weight gradient accumulated in row order) before the next chunk
 * overwrites the buffer. Per-row math is unchanged; only the classifier
 * weight's gradient sums its chunks' partials in another order.
 *
 * Invariants: buffers are sized at create from the validated config and
 * opts; every id is checked against the vocabulary on the host before a
 * recording starts; R = B*T never exceeds the buffers' rows.
 * Threads: one caller at a time (nn.h). Ownership: nn_priv.h.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_cpu.h"
#include "nn/nn_priv.h"

enum { RUN_EVAL, RUN_GRAD, RUN_STEP };

static bg_tview at(bg_cbuf *b, size_t off)
{
    bg_tview v = {b, off};
    return v;
}

void bg__nn_proj_dims(const bg_nn_config *c, int p, int *in, int *out)
{
    int d = c->dim, kv = bg_nn_kv_dim(c), hd = c->hidden_dim;
    static const int kind_in[BG__N_PROJ] = {0, 0, 0, 0, 0, 1, 0};  /* 1: hidden */
    static const int kind_out[BG__N_PROJ] = {0, 2, 2, 0, 1, 0, 1}; /* 2: kv */
    *in = kind_in[p] ? hd : d;
    *out = kind_out[p] == 2 ? kv : kind_out[p] == 1 ? hd : d;
}

/* ---- create ------------------------------------------------------------------ */

/* A zeroed (src NULL) or uploaded buffer of n floats, counted in *acct. */
static int mk(bg_nn_trainer *t, bg_cbuf **dst, const void *src, size_t n, size_t *acct, bg_err *err)
{
    int rc = bg_cbuf_create(t->c, n * sizeof(float), dst, err);
    if (rc == BG_OK && src)
        rc = bg_cbuf_write(t->c, *dst, 0, src, n * sizeof(float), err);
    if (rc == BG_OK)
        *acct += n * sizeof(float);
    return rc;
}

/* Registers a trainable tensor: its gradient and moments. *idx = its index. */
static int add_param(bg_nn_trainer *t, const char *name, bg_cbuf *p, size_t n, float wd, int *idx,
                     bg_err *err)
{
    if (t->np == t->np_cap) {
        int cap = t->np_cap ? 2 * t->np_cap : 32;
        bg__tparam *np = realloc(t->params, sizeof *np * (size_t)cap);
        if (!np)
            return bg_err_set(err, BG_ENOMEM, "trainer: out of memory");
        t->params = np;
        t->np_cap = cap;
    }
    bg__tparam *q = &t->params[t->np];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", name);
    q->p = p;
    q->n = n;
    q->wd = wd;
    int rc = mk(t, &q->g, NULL, n, &t->mem.grads, err);
    if (rc == BG_OK)
        rc = mk(t, &q->m, NULL, n, &t->mem.optimizer, err);
    if (rc == BG_OK)
        rc = mk(t, &q->v, NULL, n, &t->mem.optimizer, err);
    if (rc == BG_OK)
        *idx = t->np++;
    return rc;
}

static const char *const PJ_NAME[BG__N_PROJ] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};

static const float *base_tensor(const bg_nn_weights *w, const bg_nn_config *c, int l, int p)
{
    int in, out;
    bg__nn_proj_dims(c, p, &in, &out);
    const float *base[BG__N_PROJ] = {w->wq, w->wk, w->wv, w->wo, w->w1, w->w2, w->w3};
    return base[p] + (size_t)l * in * out;
}

/* Uniform in +-1/sqrt(fan_in) from a xorshift64* stream (LoRA A). */
static void init_a(float *a, size_t n, int fan_in, uint64_t *s)
{
    float sc = 1.0f / sqrtf((float)fan_in);
    for (size_t i = 0; i < n; i++) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        uint64_t r = *s * 0x2545F4914F6CDD1Dull;
        a[i] = sc * ((float)((double)(r >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f);
    }
}

static int upload_layer(bg_nn_trainer *t, const bg_nn_weights *w, int l, uint64_t *seed,
                        bg_err *err)
{
    const bg_nn_config *c = &t->cfg;
    bg__tlayer *y = &t->layers[l];
    size_t d = (size_t)c->dim;
    int full = t->rank == 0, rc;
    char name[32];
    rc = mk(t, &y->rms_att, w->rms_att + (size_t)l * d, d, &t->mem.weights, err);
    if (rc == BG_OK)
        rc = mk(t, &y->rms_ffn, w->rms_ffn + (size_t)l * d, d, &t->mem.weights, err);
    y->g_rms_att = y->g_rms_ffn = -1;
    if (rc == BG_OK && full) {
        snprintf(name, sizeof name, "l%d.rms_att", l);
        rc = add_param(t, name, y->rms_att, d, 0.0f, &y->g_rms_att, err);
        snprintf(name, sizeof name, "l%d.rms_ffn", l);
        if (rc == BG_OK)
            rc = add_param(t, name, y->rms_ffn, d, 0.0f, &y->g_rms_ffn, err);
    }
    for (int p = 0; p < BG__N_PROJ && rc == BG_OK; p++) {
        int in, out;
        bg__nn_proj_dims(c, p, &in, &out);
        size_t n = (size_t)in * out;
        y->g_w[p] = y->g_la[p] = y->g_lb[p] = -1;
        rc = mk(t, &y->w[p], base_tensor(w, c, l, p), n, &t->mem.weights, err);
        if (rc == BG_OK && full) {
            snprintf(name, sizeof name, "l%d.%s", l, PJ_NAME[p]);
            rc = add_param(t, name, y->w[p], n, t->o.adamw.weight_decay, &y->g_w[p], err);
        }
        if (rc != BG_OK || full)
            continue;
        size_t na = (size_t)t->rank * in;
        float *a = malloc(sizeof(float) * na);
        if (!a)
            return bg_err_set(err, BG_ENOMEM, "trainer: out of memory");
        init_a(a, na, in, seed);
        rc = mk(t, &y->la[p], a, na, &t->mem.weights, err);
        free(a);
        if (rc == BG_OK)
            rc = mk(t, &y->lb[p], NULL, (size_t)out * t->rank, &t->mem.weights, err);
        snprintf(name, sizeof name, "l%d.%s.A", l, PJ_NAME[p]);
        if (rc == BG_OK)
            rc = add_param(t, name, y->la[p], na, t->o.adamw.weight_decay, &y->g_la[p], err);
        snprintf(name, sizeof name, "l%d.%s.B", l, PJ_NAME[p]);
        if (rc == BG_OK)
            rc = add_param(t, name, y->lb[p], (size_t)out * t->rank, t->o.adamw.weight_decay,
                           &y->g_lb[p], err);
    }
    return rc;
}

static int alloc_set(bg_nn_trainer *t, bg__actset *s, bg_err *err)
{
    const bg_nn_config *c = &t->cfg;
    size_t R = (size_t)t->o.batch * t->o.seq, d = (size_t)c->dim, hd = (size_t)c->hidden_dim;
    size_t kv = (size_t)bg_nn_kv_dim(c);
    struct {
        bg_cbuf **b;
        size_t n;
    } a[] = {{&s->xb, R * d},   {&s->q, R * d},   {&s->k, R * kv},
             {&s->v, R * kv},   {&s->att, R * d}, {&s->lse, R * (size_t)c->n_heads},
             {&s->xmid, R * d}, {&s->xb2, R * d}, {&s->h1, R * hd},
             {&s->h3, R * hd},  {&s->ha, R * hd}};
    int rc = BG_OK;
    for (size_t i = 0; i < sizeof a / sizeof a[0] && rc == BG_OK; i++)
        rc = mk(t, a[i].b, NULL, a[i].n, &t->mem.activations, err);
    for (int p = 0; p < BG__N_PROJ && rc == BG_OK && t->rank; p++)
        rc = mk(t, &s->lt[p], NULL, R * (size_t)t->rank, &t->mem.activations, err);
    return rc;
}

/* Bytes of one activation set and of the residual inputs (for the budget). */
static size_t set_bytes(const bg_nn_config *c, size_t R, int rank)
{
    size_t d = (size_t)c->dim, hd = (size_t)c->hidden_dim, kv = (size_t)bg_nn_kv_dim(c);
    return 4 * R * (5 * d + 2 * kv + 3 * hd + (size_t)c->n_heads + BG__N_PROJ * (size_t)rank);
}

/* "1.5 MiB", "12.0 KiB" or "100 bytes" into buf[32] (a refusal's sizes). */
static const char *fmt_bytes(char buf[32], size_t n)
{
    if (n >= ((size_t)1 << 20))
        snprintf(buf, 32, "%.1f MiB", (double)n / 1048576.0);
    else if (n >= 1024)
        snprintf(buf, 32, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(buf, 32, "%zu bytes", n);
    return buf;
}

static int check_opts(const bg_nn_config *c, const bg_nn_train_opts *o, bg_err *err)
{
    if (o->batch < 1 || o->batch > 4096)
        return bg_err_set_field(err, BG_EINVAL, "batch",
                                "trainer: batch %d out of range; expected 1..4096", o->batch);
    if (o->seq < 1 || o->seq > c->seq_len)
        return bg_err_set_field(
            err, BG_EINVAL, "seq",
            "trainer: sequence length %d out of range; the model's context is 1..%d", o->seq,
            c->seq_len);
    int maxr = c->dim < c->hidden_dim ? c->dim : c->hidden_dim;
    if (o->lora_rank < 0 || o->lora_rank > maxr)
        return bg_err_set_field(err, BG_EINVAL, "lora_rank",
                                "trainer: LoRA rank %d out of range; expected 0..%d", o->lora_rank,
                                maxr);
    if (!(o->lora_alpha >= 0.0f && o->lora_alpha < 1e6f))
        return bg_err_set_field(err, BG_EINVAL, "lora_alpha",
                                "trainer: LoRA alpha %g out of range; expected >= 0",
                                (double)o->lora_alpha);
    const bg_adamw_params *a = &o->adamw;
    if (!(a->lr >= 0.0f && a->beta1 >= 0.0f && a->beta1 < 1.0f && a->beta2 >= 0.0f &&
          a->beta2 < 1.0f && a->eps > 0.0f && a->weight_decay >= 0.0f && a->max_norm >= 0.0f))
        return bg_err_set_field(
            err, BG_EINVAL, "adamw",
            "trainer: AdamW settings out of range; need lr >= 0, betas in [0, 1), "
            "eps > 0, weight_decay >= 0, max_norm >= 0");
    size_t R = (size_t)o->batch * o->seq;
    size_t widest = (size_t)(c->vocab_size > c->hidden_dim ? c->vocab_size : c->hidden_dim);
    widest = widest > (size_t)c->dim ? widest : (size_t)c->dim;
    if (R * widest > (size_t)INT_MAX) /* op sizes are int elements (compute.h) */
        return bg_err_set_field(
            err, BG_EINVAL, "batch",
            "trainer: batch %d x seq %d x width %zu exceeds %d elements per tensor; "
            "lower the batch or the sequence length",
            o->batch, o->seq, widest, INT_MAX);
    size_t keep = (size_t)(c->n_layers + 1) * R * c->dim * 4 +
                  (o->recompute ? 1 : (size_t)c->n_layers) * set_bytes(c, R, o->lora_rank);
    size_t lean = (size_t)(c->n_layers + 1) * R * c->dim * 4 + set_bytes(c, R, o->lora_rank);
    char kb[32], bb[32];
    if (o->act_budget && keep > o->act_budget)
        return bg_err_set_field(
            err, BG_EINVAL, "act_budget",
            "trainer: batch %d x seq %d keeps %s of activations%s; the budget is "
            "%s: %s",
            o->batch, o->seq, fmt_bytes(kb, keep), o->recompute ? " with recompute" : "",
            fmt_bytes(bb, o->act_budget),
            !o->recompute && lean <= o->act_budget
                ? "turn on recompute (it would keep only the layer inputs)"
                : "lower the batch or the sequence length");
    return BG_OK;
}

/* Rows of the logits buffer (the chunk) for R = o.batch * o.seq rows of V
 * floats: the bytes allowed are the logits budget (o->logit_budget, 0:
 * BG_NN_LOGIT_BUDGET), and never more than one view of the backend
 * (bg_compute_max_view) nor one allocation (bg_compute_max_alloc); all R
 * rows where [R, V] fits, else as few even chunks as fit (the last may be
 * shorter). A single row over the allowance is an error: BG_EINVAL when the
 * budget is below a row, BG_ELIMIT when the device's limit is. */
static int logit_rows(const bg_compute *c, const bg_nn_train_opts *o, int V, int *rows, bg_err *err)
{
    size_t row = sizeof(float) * (size_t)V, R = (size_t)o->batch * (size_t)o->seq;
    size_t budget = o->logit_budget ? o->logit_budget : BG_NN_LOGIT_BUDGET;
    size_t dev = bg_compute_max_view(c), ma = bg_compute_max_alloc(c);
    dev = ma < dev ? ma : dev;
    if (budget < row)
        return bg_err_set_field(err, BG_EINVAL, "logit_budget",
                                "the logits budget of %zu bytes is below one row of logits "
                                "(vocab %d x 4 = %zu bytes)",
                                budget, V, row);
    if (dev < row)
        return bg_err_set(err, BG_ELIMIT,
                          "one row of logits (vocab %d x 4 = %zu bytes) exceeds the "
                          "device's largest buffer view or allocation (%zu bytes)",
                          V, row, dev);
    size_t fit = (budget < dev ? budget : dev) / row;
    if (fit >= R) {
        *rows = (int)R;
        return BG_OK;
    }
    size_t chunks = (R + fit - 1) / fit;
    *rows = (int)((R + chunks - 1) / chunks);
    return BG_OK;
}

/* ---- the CPU backend's transient memory ------------------------------------ */

/* Every gemm of a step for one op matmul(R, out, in): the forward gemm(R,
 * out, in), matmul_backward_x's gemm(R, in, out) and, when the weight
 * trains, matmul_backward_w's gemm(out, in, R) — each one's packing scratch
 * as the compute layer sizes it (bg_compute_gemm_scratch: the kernel's own
 * blocking, not a copy of it). */
static void op_slots(const bg_compute *c, long R, long out, long in, int dw, size_t slot[2])
{
    bg_compute_gemm_scratch(c, R, out, in, slot);
    bg_compute_gemm_scratch(c, R, in, out, slot);
    if (dw)
        bg_compute_gemm_scratch(c, out, in, R, slot);
}

/* Bytes the CPU backend allocates beyond the trainer's buffers during a
 * step, bounded tightly (docs/TRAINING.md "Memory"):
 *   - the GEMM's packing scratch: the pool keeps two slots between calls
 *     and grows each to the largest request (compute_cpu_pool.c), so the
 *     most held at once is the largest A chunk plus the largest B block over
 *     the step's matmuls (the classifier's gradients dominate);
 *   - the largest per-op scratch, held while the slots are: attention (per
 *     running task, forward and backward kernels' packed K/V), rmsnorm's
 *     backward (two floats per row, a double per column per task), sumsq's
 *     chunk sums;
 *   - the step's host arrays (token weights and log-probs, 2R floats);
 *   - malloc's rounding of those blocks to whole pages.
 * threads: the backend's thread count (tasks running at once). */
static size_t transient_bound(const bg_nn_trainer *t, int threads)
{
    if (bg_compute_kind(t->c) != BG_BACKEND_CPU)
        return 0;
    const bg_nn_config *c = &t->cfg;
    long R = (long)t->o.batch * t->o.seq, r = t->rank, V = c->vocab_size, d = c->dim;
    int full = t->rank == 0;
    size_t slot[2] = {0, 0};
    for (int p = 0; p < BG__N_PROJ; p++) {
        int in, out;
        bg__nn_proj_dims(c, p, &in, &out);
        op_slots(t->c, R, out, in, full, slot);
        if (r) { /* u = (x A^T) B^T: both factors train */
            op_slots(t->c, R, r, in, 1, slot);
            op_slots(t->c, R, out, r, 1, slot);
        }
    }
    /* the classifier by chunks of lrows rows (the last may be shorter) */
    long lr = t->lrows, last = R - (R - 1) / lr * lr;
    op_slots(t->c, lr, V, d, full, slot);
    op_slots(t->c, last, V, d, full, slot);
    size_t gemm = slot[0] + slot[1];
    /* attention: bg__cpu_attend_scratch / bg__cpu_attend_bwd_scratch (blocks
     * of 16 keys: packed K, V (and dK, dV), a score row, two scaled queries),
     * one per running task */
    long hs = bg_nn_head_size(c), blocks = (t->o.seq + 15) / 16;
    long att = 4 * blocks * 16 * hs + blocks * 16 + 2 * hs;
    long att_tasks = (long)t->o.batch * c->n_kv_heads;
    att *= threads < att_tasks ? threads : att_tasks;
    long widest = d > c->hidden_dim ? d : c->hidden_dim;
    size_t op = (size_t)att * 4;
    size_t rms = (size_t)R * 2 * 4 + (size_t)threads * (size_t)widest * 8;
    size_t sumsq = ((size_t)V * d / 16384 + 1) * 8;
    op = op > rms ? op : rms;
    op = op > sumsq ? op : sumsq;
    /* malloc rounds a large block up to whole pages: one per block held at
     * once (two slots, the op's per-task blocks, the host arrays) */
    size_t pages = (size_t)(4 + threads) * 4096;
    return 4 * gemm + op + (size_t)R * 2 * 4 + pages;
}

int bg_nn_train_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts,
                       const bg_nn_train_opts *o, bg_nn_trainer **out, bg_err *err)
{
    *out = NULL;
    const bg_nn_config *c = &ck->cfg;
    int rc = check_opts(c, o, err);
    if (rc != BG_OK)
        return rc;
    bg_nn_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "trainer: out of memory");
    t->cfg = *c;
    t->o = *o;
    t->rank = o->lora_rank;
    t->lscale = t->rank ? (o->lora_alpha > 0.0f ? o->lora_alpha : (float)t->rank) / t->rank : 1.0f;
    t->adapters_on = t->rank > 0;
    t->B = o->batch;
    t->T = o->seq;
    t->R = t->B * t->T;
    t->g_tok = t->g_rms_final = t->g_wcls = -1;
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .device_index = -1};
    if (copts)
        co = *copts;
    if (co.kind == BG_BACKEND_AUTO)
        co.kind = BG_BACKEND_CPU; /* training picks its backend explicitly */
    rc = bg_compute_create(&co, &t->c, err);
    if (rc == BG_OK && o->precision != BG_PRECISION_FP32)
        rc = bg_compute_set_precision(t->c, o->precision, err);
    t->layers = rc == BG_OK ? calloc((size_t)c->n_layers, sizeof *t->layers) : NULL;
    t->X = t->layers ? calloc((size_t)c->n_layers + 1, sizeof *t->X) : NULL;
    t->nsets = o->recompute ? 1 : c->n_layers;
    t->sets = t->X ? calloc((size_t)t->nsets, sizeof *t->sets) : NULL;
    if (rc == BG_OK && !t->sets)
        rc = bg_err_set(err, BG_ENOMEM, "trainer: out of memory");
    if (rc == BG_OK)
        rc = logit_rows(t->c, o, c->vocab_size, &t->lrows, err);
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size, R = (size_t)t->R;
    size_t hd = (size_t)c->hidden_dim, kv = (size_t)bg_nn_kv_dim(c), wide = hd > d ? hd : d;
    int full = t->rank == 0;
    if (rc == BG_OK)
        rc = mk(t, &t->tok_emb, ck->w.tok_emb, V * d, &t->mem.weights, err);
    if (rc == BG_OK && full)
        rc = add_param(t, "tok_emb", t->tok_emb, V * d, o->adamw.weight_decay, &t->g_tok, err);
    uint64_t seed = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    for (int l = 0; l < c->n_layers && rc == BG_OK; l++)
        rc = upload_layer(t, &ck->w, l, &seed, err);
    if (rc == BG_OK)
        rc = mk(t, &t->rms_final, ck->w.rms_final, d, &t->mem.weights, err);
    if (rc == BG_OK && full)
        rc = add_param(t, "rms_final", t->rms_final, d, 0.0f, &t->g_rms_final, err);
    if (rc == BG_OK && !c->shared_classifier) {
        rc = mk(t, &t->wcls, ck->w.wcls, V * d, &t->mem.weights, err);
        if (rc == BG_OK && full)
            rc = add_param(t, "wcls", t->wcls, V * d, o->adamw.weight_decay, &t->g_wcls, err);
    } else {
        t->wcls = t->tok_emb;
        t->g_wcls = t->g_tok;
    }
    for (int l = 0; l <= c->n_layers && rc == BG_OK; l++)
        rc = mk(t, &t->X[l], NULL, R * d, &t->mem.activations, err);
    for (int s = 0; s < t->nsets && rc == BG_OK; s++)
        rc = alloc_set(t, &t->sets[s], err);
    size_t r = (size_t)(t->rank ? t->rank : 1);
    struct {
        bg_cbuf **b;
        size_t n;
    } sc[] = {{&t->tmp, R * d},   {&t->u, R * wide},
              {&t->du, R * wide}, {&t->dt, R * r},
              {&t->dx, R * d},    {&t->dxb, R * d},
              {&t->datt, R * d},  {&t->dq, R * d},
              {&t->dk, R * kv},   {&t->dv, R * kv},
              {&t->dha, R * hd},  {&t->xf, R * d},
              {&t->dxf, R * d},   {&t->logits, (size_t)t->lrows * V},
              {&t->lp, R},        {&t->tokens, R},
              {&t->targets, R},   {&t->weights, R},
              {&t->dnull, wide},  {&t->gsq, (size_t)(t->np ? t->np : 1)}};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0] && rc == BG_OK; i++)
        rc = mk(t, sc[i].b, NULL, sc[i].n, &t->mem.scratch, err);
    if (rc != BG_OK) {
        bg_err_prefix(err, "trainer: ");
        bg_nn_train_destroy(t);
        return rc;
    }
    t->mem.logit_rows = t->lrows;
    t->mem.transient = transient_bound(t, co.threads > 0 ? co.threads : bg_cpu_available());
    t->mem.peak = t->mem.weights + t->mem.grads + t->mem.optimizer + t->mem.activations +
                  t->mem.scratch + t->mem.transient;
    *out = t;
    return BG_OK;
}

void bg_nn_train_destroy(bg_nn_trainer *t)
{
    if (!t)
        return;
    bg_compute_destroy(t->c); /* frees every buffer */
    free(t->layers);
    free(t->X);
    free(t->sets);
    free(t->params);
    free(t);
}

const bg_nn_config *bg_nn_train_config(const bg_nn_trainer *t)
{
    return &t->cfg;
}

void bg_nn_train_memory(const bg_nn_trainer *t, bg_nn_train_mem *m)
{
    *m = t->mem;
}

int bg_nn_train_steps_done(const bg_nn_trainer *t)
{
    return t->step;
}

void bg_nn_train_set_adapters(bg_nn_trainer *t, int on)
{
    t->adapters_on = on && t->rank > 0;
}

int bg_nn_train_set_lr(bg_nn_trainer *t, float lr, bg_err *err)
{
    if (!(lr >= 0.0f && lr < 1e30f))
        return bg_err_set_field(err, BG_EINVAL, "adamw",
                                "trainer: learning rate %g; expected a finite lr >= 0", (double)lr);
    t->o.adamw.lr = lr;
    return BG_OK;
}

/* ---- forward ------------------------------------------------------------------ */

/* y[R, out] = x · W^T (+ scale * B (A x), saving A x in s->lt[p]) */
static void proj_fwd(bg_nn_trainer *t, int l, int p, bg_tview y, bg_tview x, bg__actset *s)
{
    bg_compute *c = t->c;
    bg__tlayer *ly = &t->layers[l];
    int in, out;
    bg__nn_proj_dims(&t->cfg, p, &in, &out);
    bg_op_matmul(c, y, x, at(ly->w[p], 0), t->R, out, in);
    if (!t->adapters_on)
        return;
    bg_op_matmul(c, at(s->lt[p], 0), x, at(ly->la[p], 0), t->R, t->rank, in);
    bg_compute_barrier(c);
    bg_op_matmul(c, at(t->u, 0), at(s->lt[p], 0), at(ly->lb[p], 0), t->R, out, t->rank);
    bg_compute_barrier(c);
    bg_op_axpy(c, y, at(t->u, 0), t->lscale, t->R * out);
    bg_compute_barrier(c); /* u is reused by the next projection */
}

/* RoPE on each of the B sequences (positions 0..T-1 each); backward when bwd. */
static void rope_all(bg_nn_trainer *t, bg_cbuf *q, bg_cbuf *k, int bwd)
{
    const bg_nn_config *p = &t->cfg;
    int d = p->dim, kv = bg_nn_kv_dim(p), hs = bg_nn_head_size(p);
    for (int b = 0; b < t->B; b++) {
        bg_tview qv = at(q, (size_t)b * t->T * d), kvv = at(k, (size_t)b * t->T * kv);
        if (bwd)
            bg_op_rope_backward(t->c, qv, kvv, t->T, 0, p->n_heads, p->n_kv_heads, hs);
        else
            bg_op_rope(t->c, qv, kvv, t->T, 0, p->n_heads, p->n_kv_heads, hs);
    }
}

/* One layer from X[l]; X[l+1] written when next (the recompute pass skips it). */
static void layer_fwd(bg_nn_trainer *t, int l, bg__actset *s, int next)
{
    bg_compute *c = t->c;
    const bg_nn_config *p = &t->cfg;
    bg__tlayer *y = &t->layers[l];
    int n = t->R * p->dim, nh = t->R * p->hidden_dim;
    bg_tview x = at(t->X[l], 0), tmp = at(t->tmp, 0);
    /* attention block: xb = rmsnorm(x); q, k, v; RoPE; attention; wo */
    bg_op_rmsnorm(c, at(s->xb, 0), x, at(y->rms_att, 0), t->R, p->dim, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    proj_fwd(t, l, BG__PJ_Q, at(s->q, 0), at(s->xb, 0), s);
    proj_fwd(t, l, BG__PJ_K, at(s->k, 0), at(s->xb, 0), s);
    proj_fwd(t, l, BG__PJ_V, at(s->v, 0), at(s->xb, 0), s);
    bg_compute_barrier(c);
    rope_all(t, s->q, s->k, 0);
    bg_compute_barrier(c);
    bg_op_attention_train(c, at(s->att, 0), at(s->lse, 0), at(s->q, 0), at(s->k, 0), at(s->v, 0),
                          t->B, t->T, p->n_heads, p->n_kv_heads, bg_nn_head_size(p));
    bg_compute_barrier(c);
    proj_fwd(t, l, BG__PJ_O, tmp, at(s->att, 0), s);
    bg_compute_barrier(c);
    /* residual: xmid = x + attention */
    bg_op_copy(c, at(s->xmid, 0), x, n);
    bg_compute_barrier(c);
    bg_op_add(c, at(s->xmid, 0), tmp, n);
    bg_compute_barrier(c);
    /* FFN block: ha = silu(w1 xb2) * (w3 xb2), h1 kept for the backward */
    bg_op_rmsnorm(c, at(s->xb2, 0), at(s->xmid, 0), at(y->rms_ffn, 0), t->R, p->dim, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    proj_fwd(t, l, BG__PJ_1, at(s->h1, 0), at(s->xb2, 0), s);
    proj_fwd(t, l, BG__PJ_3, at(s->h3, 0), at(s->xb2, 0), s);
    bg_compute_barrier(c);
    bg_op_copy(c, at(s->ha, 0), at(s->h1, 0), nh);
    bg_compute_barrier(c);
    bg_op_swiglu(c, at(s->ha, 0), at(s->h3, 0), nh);
    bg_compute_barrier(c);
    proj_fwd(t, l, BG__PJ_2, tmp, at(s->ha, 0), s);
    bg_compute_barrier(c);
    if (!next)
        return;
    bg_op_copy(c, at(t->X[l + 1], 0), at(s->xmid, 0), n);
    bg_compute_barrier(c);
    bg_op_add(c, at(t->X[l + 1], 0), tmp, n);
    bg_compute_barrier(c);
}

static bg__actset *set_of(bg_nn_trainer *t, int l)
{
    return &t->sets[t->nsets == 1 ? 0 : l];
}

void bg__nn_train_forward(bg_nn_trainer *t)
{
    bg_op_embed(t->c, at(t->X[0], 0), at(t->tok_emb, 0), at(t->tokens, 0), t->R, t->cfg.dim);
    bg_compute_barrier(t->c);
    for (int l = 0; l < t->cfg.n_layers; l++)
        layer_fwd(t, l, set_of(t, l), 1);
}

/* ---- backward ------------------------------------------------------------------ */

static bg_tview grad_of(bg_nn_trainer *t, int idx)
{
    return idx >= 0 ? at(t->params[idx].g, 0) : at(t->dnull, 0);
}

/* dx (= or += when acc) and the weight gradients of projection p, from dy
 * and the projection's saved input x. */
static void proj_bwd(bg_nn_trainer *t, int l, int p, bg_tview dx, int acc, bg_tview dy, bg_tview x,
                     bg__actset *s)
{
    bg_compute *c = t->c;
    bg__tlayer *ly = &t->layers[l];
    int in, out, R = t->R, r = t->rank;
    bg__nn_proj_dims(&t->cfg, p, &in, &out);
    bg_op_matmul_backward_x(c, dx, dy, at(ly->w[p], 0), R, out, in, acc);
    if (ly->g_w[p] >= 0)
        bg_op_matmul_backward_w(c, grad_of(t, ly->g_w[p]), dy, x, R, out, in);
    if (!t->adapters_on)
        return;
    bg_tview du = dy;
    if (t->lscale != 1.0f) { /* du = scale * dy */
        du = at(t->du, 0);
        bg_op_fill(c, du, 0.0f, R * out);
        bg_compute_barrier(c);
        bg_op_axpy(c, du, dy, t->lscale, R * out);
    }
    bg_compute_barrier(c);
    bg_op_matmul_backward_w(c, grad_of(t, ly->g_lb[p]), du, at(s->lt[p], 0), R, out, r);
    bg_op_matmul_backward_x(c, at(t->dt, 0), du, at(ly->lb[p], 0), R, out, r, 0);
    bg_compute_barrier(c);
    bg_op_matmul_backward_w(c, grad_of(t, ly->g_la[p]), at(t->dt, 0), x, R, r, in);
    bg_op_matmul_backward_x(c, dx, at(t->dt, 0), at(ly->la[p], 0), R, r, in, 1);
    bg_compute_barrier(c);
}

/* On entry t->dx holds dL/dX[l+1]; on return dL/dX[l]. */
static void layer_bwd(bg_nn_trainer *t, int l)
{
    bg_compute *c = t->c;
    const bg_nn_config *p = &t->cfg;
    bg__tlayer *y = &t->layers[l];
    bg__actset *s = set_of(t, l);
    int R = t->R, nh = R * p->hidden_dim;
    bg_tview dx = at(t->dx, 0), dxb = at(t->dxb, 0);
    if (t->nsets == 1) /* recompute this layer's activations from X[l] */
        layer_fwd(t, l, s, 0);
    /* FFN: X[l+1] = xmid + w2 · ha, ha = silu(h1) * h3 */
    proj_bwd(t, l, BG__PJ_2, at(t->dha, 0), 0, dx, at(s->ha, 0), s);
    bg_compute_barrier(c);
    bg_op_swiglu_backward(c, at(s->h1, 0), at(s->h3, 0), at(t->dha, 0), at(s->h1, 0), at(s->h3, 0),
                          nh); /* in place: h1, h3 now hold dh1, dh3 */
    bg_compute_barrier(c);
    proj_bwd(t, l, BG__PJ_1, dxb, 0, at(s->h1, 0), at(s->xb2, 0), s);
    bg_compute_barrier(c);
    proj_bwd(t, l, BG__PJ_3, dxb, 1, at(s->h3, 0), at(s->xb2, 0), s);
    bg_compute_barrier(c);
    bg_op_rmsnorm_backward(c, dx, grad_of(t, y->g_rms_ffn), dxb, at(s->xmid, 0), at(y->rms_ffn, 0),
                           R, p->dim, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    /* attention: xmid = X[l] + wo · att */
    proj_bwd(t, l, BG__PJ_O, at(t->datt, 0), 0, dx, at(s->att, 0), s);
    bg_compute_barrier(c);
    bg_op_attention_backward(c, at(t->dq, 0), at(t->dk, 0), at(t->dv, 0), at(t->datt, 0),
                             at(s->q, 0), at(s->k, 0), at(s->v, 0), at(s->att, 0), at(s->lse, 0),
                             t->B, t->T, p->n_heads, p->n_kv_heads, bg_nn_head_size(p));
    bg_compute_barrier(c);
    rope_all(t, t->dq, t->dk, 1);
    bg_compute_barrier(c);
    proj_bwd(t, l, BG__PJ_Q, dxb, 0, at(t->dq, 0), at(s->xb, 0), s);
    bg_compute_barrier(c);
    proj_bwd(t, l, BG__PJ_K, dxb, 1, at(t->dk, 0), at(s->xb, 0), s);
    bg_compute_barrier(c);
    proj_bwd(t, l, BG__PJ_V, dxb, 1, at(t->dv, 0), at(s->xb, 0), s);
    bg_compute_barrier(c);
    bg_op_rmsnorm_backward(c, dx, grad_of(t, y->g_rms_att), dxb, at(t->X[l], 0), at(y->rms_att, 0),
                           R, p->dim, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
}

/* The classifier, the fused loss and, when grad, the classifier's backward,
 * chunk by chunk of t->lrows rows through the one logits buffer: each row's
 * logits, bias, log-prob and dL/dlogits depend only on that row, so the
 * chunks give the rows the same math as one call. A chunk's backward reads
 * its dL/dlogits before the next chunk's classifier overwrites them (the
 * barrier after it); on return dxf holds dL/dxf for every row and the
 * classifier weight's gradient (when it trains) the sum of the chunks'
 * partials, added in row order. Without grad nothing touches a gradient. */
static void classifier_loss(bg_nn_trainer *t, int grad)
{
    bg_compute *c = t->c;
    int R = t->R, V = t->cfg.vocab_size, d = t->cfg.dim, cr = t->lrows;
    bg_tview lg = at(t->logits, 0);
    for (int r0 = 0; r0 < R; r0 += cr) {
        int n = R - r0 < cr ? R - r0 : cr;
        size_t od = (size_t)r0 * (size_t)d;
        bg_op_matmul(c, lg, at(t->xf, od), at(t->wcls, 0), n, V, d);
        bg_compute_barrier(c);
        if (t->lbias) { /* a constant: its backward is the identity */
            bg_op_add(c, lg, at(t->lbias, 0), n * V);
            bg_compute_barrier(c);
        }
        bg_op_xent(c, at(t->lp, (size_t)r0), lg, lg, at(t->targets, (size_t)r0),
                   at(t->weights, (size_t)r0), n, V);
        bg_compute_barrier(c);
        if (!grad)
            continue;
        bg_op_matmul_backward_x(c, at(t->dxf, od), lg, at(t->wcls, 0), n, V, d, 0);
        if (t->g_wcls >= 0)
            bg_op_matmul_backward_w(c, grad_of(t, t->g_wcls), lg, at(t->xf, od), n, V, d);
        bg_compute_barrier(c);
    }
}

/* After classifier_loss(t, 1): dxf is complete; the rest of the backward. */
static void backward(bg_nn_trainer *t)
{
    bg_compute *c = t->c;
    const bg_nn_config *p = &t->cfg;
    int R = t->R, d = p->dim;
    bg_op_fill(c, at(t->dx, 0), 0.0f, R * d);
    bg_compute_barrier(c);
    bg_op_rmsnorm_backward(c, at(t->dx, 0), grad_of(t, t->g_rms_final), at(t->dxf, 0),
                           at(t->X[p->n_layers], 0), at(t->rms_final, 0), R, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    for (int l = p->n_layers - 1; l >= 0; l--)
        layer_bwd(t, l);
    if (t->g_tok >= 0)
        bg_op_embed_backward(c, grad_of(t, t->g_tok), at(t->dx, 0), at(t->tokens, 0), R, d);
    bg_compute_barrier(c);
}

static void optimizer(bg_nn_trainer *t)
{
    bg_compute *c = t->c;
    for (int i = 0; i < t->np; i++)
        bg_op_sumsq(c, at(t->gsq, (size_t)i), at(t->params[i].g, 0), (int)t->params[i].n);
    bg_compute_barrier(c);
    bg_adamw_params hp = t->o.adamw;
    hp.step = t->step + 1;
    for (int i = 0; i < t->np; i++) {
        bg__tparam *q = &t->params[i];
        hp.weight_decay = q->wd;
        bg_op_adamw(c, at(q->p, 0), at(q->g, 0), at(q->m, 0), at(q->v, 0), at(t->gsq, 0), t->np,
                    (int)q->n, &hp);
    }
}

/* ---- runs ---------------------------------------------------------------------- */

int bg__nn_train_check_ids(const bg_nn_trainer *t, const int32_t *ids, int n, const char *what,
                           bg_err *err)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->cfg.vocab_size)
            return bg_err_set(err, BG_EINVAL,
                              "trainer: %s id %d at index %d out of range; the vocabulary is 0..%d",
                              what, (int)ids[i], i, t->cfg.vocab_size - 1);
    return BG_OK;
}

static int run(bg_nn_trainer *t, int mode, const int32_t *tokens, const int32_t *targets,
               const float *weights, double *loss, float *lp_out, bg_err *err)
{
    if (!t || !tokens || !targets)
        return bg_err_set(err, BG_EINVAL, "trainer: NULL tokens or targets");
    if (mode != RUN_EVAL && t->rank > 0 && !t->adapters_on)
        return bg_err_set(err, BG_EINVAL,
                          "trainer: the adapters are switched off; nothing would be trained");
    t->B = t->o.batch;
    t->T = t->o.seq;
    t->R = t->B * t->T;
    int R = t->R, rc = bg__nn_train_check_ids(t, tokens, R, "token", err);
    if (rc == BG_OK)
        rc = bg__nn_train_check_ids(t, targets, R, "target", err);
    float *w = malloc(sizeof(float) * (size_t)R), *lp = malloc(sizeof(float) * (size_t)R);
    if (rc == BG_OK && (!w || !lp))
        rc = bg_err_set(err, BG_ENOMEM, "trainer: out of memory");
    for (int i = 0; rc == BG_OK && i < R; i++) {
        w[i] = weights ? weights[i] : 1.0f / (float)R;
        if (!isfinite(w[i]))
            rc = bg_err_set(err, BG_EINVAL, "trainer: weight %d is not finite", i);
    }
    if (rc == BG_OK)
        rc = bg_cbuf_write(t->c, t->tokens, 0, tokens, 4 * (size_t)R, err);
    if (rc == BG_OK)
        rc = bg_cbuf_write(t->c, t->targets, 0, targets, 4 * (size_t)R, err);
    if (rc == BG_OK)
        rc = bg_cbuf_write(t->c, t->weights, 0, w, 4 * (size_t)R, err);
    if (rc == BG_OK)
        rc = bg_compute_begin(t->c, err);
    if (rc == BG_OK) {
        bg_compute *c = t->c;
        for (int i = 0; mode != RUN_EVAL && i < t->np; i++)
            bg_op_fill(c, at(t->params[i].g, 0), 0.0f, (int)t->params[i].n);
        bg__nn_train_forward(t);
        bg_op_rmsnorm(c, at(t->xf, 0), at(t->X[t->cfg.n_layers], 0), at(t->rms_final, 0), R,
                      t->cfg.dim, BG_NN_RMS_EPS);
        bg_compute_barrier(c);
        classifier_loss(t, mode != RUN_EVAL);
        if (mode != RUN_EVAL)
            backward(t);
        if (mode == RUN_STEP)
            optimizer(t);
        rc = bg_compute_submit(c, err);
    }
    if (rc == BG_OK)
        rc = bg_cbuf_read(t->c, t->lp, 0, lp, 4 * (size_t)R, err);
    if (rc == BG_OK) {
        double L = 0.0;
        for (int i = 0; i < R; i++)
            L -= (double)w[i] * lp[i];
        if (loss)
            *loss = L;
        if (lp_out)
            memcpy(lp_out, lp, 4 * (size_t)R);
        if (mode == RUN_STEP)
            t->step++;
    }
    free(w);
    free(lp);
    return rc;
}

int bg_nn_train_step(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, bg_err *err)
{
    return run(t, RUN_STEP, tokens, targets, weights, loss, NULL, err);
}

int bg_nn_train_grad(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, bg_err *err)
{
    return run(t, RUN_GRAD, tokens, targets, weights, loss, NULL, err);
}

int bg_nn_train_eval(bg_nn_trainer *t, const int32_t *tokens, const int32_t *targets,
                     const float *weights, double *loss, float *lp, bg_err *err)
{
    return run(t, RUN_EVAL, tokens, targets, weights, loss, lp, err);
}

int bg_nn_train_logits(bg_nn_trainer *t, const int32_t *tokens, int n, float *logits, bg_err *err)
{
    if (!t || !tokens || !logits)
        return bg_err_set(err, BG_EINVAL, "trainer logits: NULL argument");
    if (n < 1 || n > t->o.seq)
        return bg_err_set(err, BG_EINVAL, "trainer logits: %d tokens; expected 1..%d", n, t->o.seq);
    int rc = bg__nn_train_check_ids(t, tokens, n, "token", err);
    if (rc == BG_OK)
        rc = bg_cbuf_write(t->c, t->tokens, 0, tokens, 4 * (size_t)n, err);
    if (rc == BG_OK)
        rc = bg_compute_begin(t->c, err);
    if (rc != BG_OK)
        return rc;
    t->B = 1;
    t->T = n;
    t->R = n;
    const bg_nn_config *p = &t->cfg;
    bg__nn_train_forward(t);
    /* the last row only, as bg_nn_forward does (M == 1: the matvec kernel) */
    bg_op_rmsnorm(t->c, at(t->xf, 0), at(t->X[p->n_layers], (size_t)(n - 1) * p->dim),
                  at(t->rms_final, 0), 1, p->dim, BG_NN_RMS_EPS);
    bg_compute_barrier(t->c);
    bg_op_matmul(t->c, at(t->logits, 0), at(t->xf, 0), at(t->wcls, 0), 1, p->vocab_size, p->dim);
    if (t->lbias) {
        bg_compute_barrier(t->c);
        bg_op_add(t->c, at(t->logits, 0), at(t->lbias, 0), p->vocab_size);
    }
    rc = bg_compute_submit(t->c, err);
    if (rc == BG_OK)
        rc = bg_cbuf_read(t->c, t->logits, 0, logits, 4 * (size_t)p->vocab_size, err);
    return rc;
}

int bg_nn_train_set_logit_bias(bg_nn_trainer *t, const float *bias, bg_err *err)
{
    if (!t)
        return bg_err_set(err, BG_EINVAL, "trainer logit bias: NULL trainer");
    if (!bias) {
        t->lbias = NULL; /* the buffer stays with the backend, freed at destroy */
        return BG_OK;
    }
    size_t V = (size_t)t->cfg.vocab_size, rows = (size_t)t->lrows; /* the logits' rows */
    for (size_t j = 0; j < V; j++)
        if (!isfinite(bias[j]))
            return bg_err_set(err, BG_EINVAL,
                              "trainer logit bias: entry %zu is not finite (use a large "
                              "negative number such as -1e4 to mask a token)",
                              j);
    float *rep = malloc(sizeof(float) * rows * V);
    if (!rep)
        return bg_err_set(err, BG_ENOMEM, "trainer logit bias: out of memory");
    for (size_t r = 0; r < rows; r++)
        memcpy(rep + r * V, bias, sizeof(float) * V);
    int rc = BG_OK;
    if (!t->lbias_buf) {
        rc = mk(t, &t->lbias_buf, NULL, rows * V, &t->mem.scratch, err);
        if (rc == BG_OK)
            t->mem.peak += sizeof(float) * rows * V;
    }
    if (rc == BG_OK)
        rc = bg_cbuf_write(t->c, t->lbias_buf, 0, rep, sizeof(float) * rows * V, err);
    free(rep);
    t->lbias = rc == BG_OK ? t->lbias_buf : NULL;
    return rc;
}

/* ---- parameters ------------------------------------------------------------- */

int bg_nn_train_nparams(const bg_nn_trainer *t)
{
    return t->np;
}

float bg_nn_train_lora_alpha(const bg_nn_trainer *t)
{
    return t->rank ? t->lscale * (float)t->rank : 0.0f;
}

const char *bg_nn_train_param_name(const bg_nn_trainer *t, int i)
{
    return i >= 0 && i < t->np ? t->params[i].name : NULL;
}

size_t bg_nn_train_param_size(const bg_nn_trainer *t, int i)
{
    return i >= 0 && i < t->np ? t->params[i].n : 0;
}

static int param_io(bg_nn_trainer *t, int i, bg_cbuf *which, float *dst, const float *src,
                    bg_err *err)
{
    if (!t || i < 0 || i >= t->np)
        return bg_err_set(err, BG_EINVAL, "trainer: parameter %d out of range; there are %d", i,
                          t ? t->np : 0);
    size_t bytes = 4 * t->params[i].n;
    return src ? bg_cbuf_write(t->c, which, 0, src, bytes, err)
               : bg_cbuf_read(t->c, which, 0, dst, bytes, err);
}

int bg_nn_train_param_read(bg_nn_trainer *t, int i, float *dst, bg_err *err)
{
    return param_io(t, i, t && i >= 0 && i < t->np ? t->params[i].p : NULL, dst, NULL, err);
}

int bg_nn_train_param_write(bg_nn_trainer *t, int i, const float *src, bg_err *err)
{
    return param_io(t, i, t && i >= 0 && i < t->np ? t->params[i].p : NULL, NULL, src, err);
}

int bg_nn_train_grad_read(bg_nn_trainer *t, int i, float *dst, bg_err *err)
{
    return param_io(t, i, t && i >= 0 && i < t->np ? t->params[i].g : NULL, dst, NULL, err);
}
