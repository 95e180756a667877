/*
 * test_nn_train.c — the training API (nn.h "training") end to end on the
 * CPU backend (BG_TEST_BACKEND=vulkan: parts 1, 2 and 6 on Vulkan, ctest's
 * test_vk_backend_nn_train on lavapipe):
 *   1. whole-model gradients (full fine-tuning, shared and separate
 *      classifier; LoRA adapters with B != 0) against central differences
 *      of a double-precision forward of the same model written here;
 *   2. recompute gives the same gradient bits as keeping every activation;
 *   3. adapters off: logits of stories260K bit-identical (memcmp) to the
 *      base model's, after the adapters were trained;
 *   4. the merged checkpoint's logits equal the adapted model's;
 *   5. adapter and optimizer-state files round-trip (the resumed step gives
 *      the same bits) and bad files are refused by name;
 *   6. a LoRA fine-tune of stories260K on a tiny corpus drives the loss down
 *      (the first five losses are printed for the Vulkan backend to compare);
 *   7. bad input is refused before any step runs.
 *
 * Tolerances (printed):
 *   GTOL_MODEL = 1e-4 relative to the tensor's largest gradient, on up to
 *   16 coordinates per tensor: the analytic gradient is float through the
 *   whole network (~1e-5 relative), the FD of the double forward ~1e-9.
 *   A missing term is O(1e-1..1) here: e.g. dropping the residual path in
 *   rmsnorm_backward's dx ("=" instead of "+=") zeroes every earlier layer's
 *   gradient but the last block's; dropping the LoRA scale doubles A's and
 *   B's gradients at alpha = 2r (tested with alpha = 2r so a missing scale
 *   errs by 50%).
 *   Merged vs adapted logits: max |diff| <= 1e-4 * max |logit| (the merged
 *   W + s B A is rounded to float once).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_test.h"

#define GTOL_MODEL 1e-4
#define FD_H 1e-5

static bg_compute_opts cpu2 = {.kind = BG_BACKEND_CPU, .threads = 2, .device_index = -1};

/* The backend under test: the CPU's, or BG_TEST_BACKEND's (vulkan: lavapipe
 * admitted). Parts 1, 2 and 6 run on it. */
static bg_compute_opts test_backend(void)
{
    const char *be = getenv("BG_TEST_BACKEND");
    bg_compute_opts copts = cpu2;
    if (be) {
        int kind = bg_backend_kind_parse(be);
        CHECK(kind >= 0, "BG_TEST_BACKEND=%s: expected cpu|vulkan", be);
        copts.kind = (bg_backend_kind)kind;
        copts.allow_cpu_device = 1;
    }
    return copts;
}

static uint64_t rng = 0x1234567887654321ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 20);
}

/* ---- the model in double ---------------------------------------------------- */

typedef struct dmodel {
    bg_nn_config c;
    double *tok, *rms_att, *rms_ffn, *rms_final, *wcls;
    double *w[7]; /* all layers, llama2.c layout (wq, wk, wv, wo, w1, w2, w3) */
    double *la[8][7], *lb[8][7];
    int rank;
    double scale;
} dmodel;

static double *dcopy(const float *src, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = src[i];
    return d;
}

static void proj_dims(const bg_nn_config *c, int p, int *in, int *out)
{
    int d = c->dim, kv = bg_nn_kv_dim(c), hd = c->hidden_dim;
    int ins[7] = {d, d, d, d, d, hd, d}, outs[7] = {d, kv, kv, d, hd, d, hd};
    *in = ins[p];
    *out = outs[p];
}

static void dmodel_init(dmodel *m, const bg_nn_ckpt *ck)
{
    memset(m, 0, sizeof *m);
    m->c = ck->cfg;
    const bg_nn_config *c = &ck->cfg;
    size_t d = (size_t)c->dim, L = (size_t)c->n_layers, V = (size_t)c->vocab_size;
    m->tok = dcopy(ck->w.tok_emb, V * d);
    m->rms_att = dcopy(ck->w.rms_att, L * d);
    m->rms_ffn = dcopy(ck->w.rms_ffn, L * d);
    m->rms_final = dcopy(ck->w.rms_final, d);
    m->wcls = c->shared_classifier ? m->tok : dcopy(ck->w.wcls, V * d);
    const float *ws[7] = {ck->w.wq, ck->w.wk, ck->w.wv, ck->w.wo, ck->w.w1, ck->w.w2, ck->w.w3};
    for (int p = 0; p < 7; p++) {
        int in, out;
        proj_dims(c, p, &in, &out);
        m->w[p] = dcopy(ws[p], L * in * out);
    }
}

static void dmodel_free(dmodel *m)
{
    free(m->tok), free(m->rms_att), free(m->rms_ffn), free(m->rms_final);
    if (!m->c.shared_classifier)
        free(m->wcls);
    for (int p = 0; p < 7; p++) {
        free(m->w[p]);
        for (int l = 0; l < 8; l++)
            free(m->la[l][p]), free(m->lb[l][p]);
    }
}

/* y[T, out] = x[T, in] . W^T (+ scale B A x) */
static void dproj(const dmodel *m, int l, int p, double *y, const double *x, int T)
{
    int in, out;
    proj_dims(&m->c, p, &in, &out);
    const double *w = m->w[p] + (size_t)l * in * out;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = 0.0;
            for (int i = 0; i < in; i++)
                s += x[t * in + i] * w[o * in + i];
            if (m->rank) {
                for (int r = 0; r < m->rank; r++) {
                    double ax = 0.0;
                    for (int i = 0; i < in; i++)
                        ax += m->la[l][p][r * in + i] * x[t * in + i];
                    s += m->scale * m->lb[l][p][o * m->rank + r] * ax;
                }
            }
            y[t * out + o] = s;
        }
}

static void drms(double *o, const double *x, const double *w, int T, int n)
{
    for (int t = 0; t < T; t++) {
        double ss = 0.0;
        for (int i = 0; i < n; i++)
            ss += x[t * n + i] * x[t * n + i];
        double r = 1.0 / sqrt(ss / n + BG_NN_RMS_EPS);
        for (int i = 0; i < n; i++)
            o[t * n + i] = x[t * n + i] * r * w[i];
    }
}

static void drope(double *v, int T, int heads, int hs)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < hs; i += 2) {
                float freq = 1.0f / powf(10000.0f, (float)i / (float)hs);
                float ang = (float)t * freq;
                double c = cosf(ang), s = sinf(ang);
                double *p = v + ((long)t * heads + h) * hs + i, a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
}

/* L = -sum_t w_t log p(target_t) over one sequence of T tokens */
static double dloss_seq(const dmodel *m, const int32_t *tok, const int32_t *tgt, const float *wt,
                        int T)
{
    const bg_nn_config *c = &m->c;
    int d = c->dim, hd = c->hidden_dim, kv = bg_nn_kv_dim(c), hs = bg_nn_head_size(c);
    int nh = c->n_heads, grp = c->n_heads / c->n_kv_heads, V = c->vocab_size;
    double *x = calloc((size_t)T * d, 8), *xb = calloc((size_t)T * d, 8);
    double *q = calloc((size_t)T * d, 8), *k = calloc((size_t)T * kv, 8);
    double *v = calloc((size_t)T * kv, 8), *att = calloc((size_t)T * d, 8);
    double *o = calloc((size_t)T * (hd > V ? hd : V), 8), *h1 = calloc((size_t)T * hd, 8);
    double *h3 = calloc((size_t)T * hd, 8), sc[64];
    for (int t = 0; t < T; t++)
        memcpy(x + t * d, m->tok + (size_t)tok[t] * d, 8 * (size_t)d);
    for (int l = 0; l < c->n_layers; l++) {
        drms(xb, x, m->rms_att + l * d, T, d);
        dproj(m, l, 0, q, xb, T);
        dproj(m, l, 1, k, xb, T);
        dproj(m, l, 2, v, xb, T);
        drope(q, T, nh, hs);
        drope(k, T, c->n_kv_heads, hs);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                double mx = -INFINITY, sum = 0.0;
                for (int p = 0; p <= t; p++) {
                    double s = 0.0;
                    for (int i = 0; i < hs; i++)
                        s += q[t * d + h * hs + i] * k[p * kv + (h / grp) * hs + i];
                    sc[p] = s / sqrt((double)hs);
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = 0; p <= t; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < hs; i++) {
                    double a = 0.0;
                    for (int p = 0; p <= t; p++)
                        a += sc[p] / sum * v[p * kv + (h / grp) * hs + i];
                    att[t * d + h * hs + i] = a;
                }
            }
        dproj(m, l, 3, o, att, T);
        for (int i = 0; i < T * d; i++)
            x[i] += o[i];
        drms(xb, x, m->rms_ffn + l * d, T, d);
        dproj(m, l, 4, h1, xb, T);
        dproj(m, l, 6, h3, xb, T);
        for (int i = 0; i < T * hd; i++)
            h1[i] = h1[i] / (1.0 + exp(-h1[i])) * h3[i];
        dproj(m, l, 5, o, h1, T);
        for (int i = 0; i < T * d; i++)
            x[i] += o[i];
    }
    drms(xb, x, m->rms_final, T, d);
    double L = 0.0;
    for (int t = 0; t < T; t++) {
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) {
            double s = 0.0;
            for (int i = 0; i < d; i++)
                s += xb[t * d + i] * m->wcls[(size_t)j * d + i];
            o[j] = s;
            mx = s > mx ? s : mx;
        }
        for (int j = 0; j < V; j++)
            sum += exp(o[j] - mx);
        L -= wt[t] * (o[tgt[t]] - mx - log(sum));
    }
    free(x), free(xb), free(q), free(k), free(v), free(att), free(o), free(h1), free(h3);
    return L;
}

static double dloss(const dmodel *m, const int32_t *tok, const int32_t *tgt, const float *wt, int B,
                    int T)
{
    double L = 0.0;
    for (int b = 0; b < B; b++)
        L += dloss_seq(m, tok + b * T, tgt + b * T, wt + b * T, T);
    return L;
}

/* The double tensor a trainer parameter name refers to. */
static double *resolve(dmodel *m, const char *name)
{
    static const char *pj[7] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};
    const bg_nn_config *c = &m->c;
    int d = c->dim, l;
    char rest[24];
    if (strcmp(name, "tok_emb") == 0)
        return m->tok;
    if (strcmp(name, "rms_final") == 0)
        return m->rms_final;
    if (strcmp(name, "wcls") == 0)
        return m->wcls;
    if (sscanf(name, "l%d.%23s", &l, rest) != 2)
        return NULL;
    if (strcmp(rest, "rms_att") == 0)
        return m->rms_att + l * d;
    if (strcmp(rest, "rms_ffn") == 0)
        return m->rms_ffn + l * d;
    for (int p = 0; p < 7; p++) {
        size_t n = strlen(pj[p]);
        if (strncmp(rest, pj[p], n) != 0)
            continue;
        int in, out;
        proj_dims(c, p, &in, &out);
        if (rest[n] == 0)
            return m->w[p] + (size_t)l * in * out;
        return strcmp(rest + n, ".A") == 0 ? m->la[l][p] : m->lb[l][p];
    }
    return NULL;
}

/* Analytic gradients of every trainable tensor vs FD of the double model. */
static void check_model_grads(const char *label, bg_nn_trainer *t, dmodel *m, int B, int T)
{
    bg_err err;
    int R = B * T, V = m->c.vocab_size;
    int32_t *tok = malloc(4 * (size_t)R), *tgt = malloc(4 * (size_t)R);
    float *wt = malloc(4 * (size_t)R);
    for (int i = 0; i < R; i++) {
        tok[i] = (int32_t)(rnd() % (unsigned)V);
        tgt[i] = (int32_t)(rnd() % (unsigned)V);
        wt[i] = (float)((i % 3) + 1) / (float)(2 * R); /* uneven weights */
    }
    double loss;
    CHECK(bg_nn_train_grad(t, tok, tgt, wt, &loss, &err) == BG_OK, "%s", err.msg);
    double L0 = dloss(m, tok, tgt, wt, B, T);
    printf("  %s: loss float %.7f, double %.7f\n", label, loss, L0);
    CHECK(fabs(loss - L0) <= 1e-5 * (1.0 + fabs(L0)), "%s: the float forward's loss differs",
          label);
    double worst = 0.0;
    for (int i = 0; i < bg_nn_train_nparams(t); i++) {
        const char *name = bg_nn_train_param_name(t, i);
        size_t n = bg_nn_train_param_size(t, i);
        double *p = resolve(m, name);
        CHECK(p != NULL, "no double tensor for %s", name);
        float *g = malloc(4 * n);
        CHECK(bg_nn_train_grad_read(t, i, g, &err) == BG_OK, "%s", err.msg);
        double gmax = 0.0, emax = 0.0;
        for (size_t j = 0; j < n; j++)
            gmax = fabs(g[j]) > gmax ? fabs(g[j]) : gmax;
        int probes = n < 16 ? (int)n : 16;
        for (int k = 0; k < probes; k++) {
            size_t j = n <= 16 ? (size_t)k : rnd() % n;
            double keep = p[j];
            p[j] = keep + FD_H;
            double lp = dloss(m, tok, tgt, wt, B, T);
            p[j] = keep - FD_H;
            double lm = dloss(m, tok, tgt, wt, B, T);
            p[j] = keep;
            double fd = (lp - lm) / (2 * FD_H), e = fabs(fd - g[j]);
            emax = e > emax ? e : emax;
        }
        double rel = gmax > 0 ? emax / gmax : emax;
        worst = rel > worst ? rel : worst;
        if (rel > GTOL_MODEL)
            bg_test_tally(__FILE__, __LINE__, name,
                          "%s: gradient vs FD rel err %.3g (max |g| %.3g)", label, rel, gmax);
        free(g);
    }
    printf("  %s: %d tensors, worst FD rel err %.2e (tol %.0e)\n", label, bg_nn_train_nparams(t),
           worst, GTOL_MODEL);
    free(tok), free(tgt), free(wt);
}

/* dim, hidden, layers, heads, kv heads, vocab, seq_len, shared classifier */
static bg_nn_config cfg_of(int d, int hd, int L, int nh, int nkv, int V, int seq, int shared)
{
    bg_nn_config c = {d, hd, L, nh, nkv, V, seq, shared};
    return c;
}

static void test_model_grads(const char *dir)
{
    bg_err err;
    bg_compute_opts be = test_backend();
    for (int shared = 0; shared < 2; shared++) {
        bg_nn_config c = cfg_of(16, 20, 2, 4, 2, 19, 8, shared);
        bg_nn_ckpt ck;
        nt_synth_open(dir, "g.bin", &c, &ck);
        bg_nn_trainer *t;
        bg_nn_train_opts o = nt_train_opts(2, 5, 0);
        CHECK(bg_nn_train_create(&ck, &be, &o, &t, &err) == BG_OK, "%s", err.msg);
        dmodel m;
        dmodel_init(&m, &ck);
        check_model_grads(shared ? "full, shared classifier" : "full, separate classifier", t, &m,
                          2, 5);
        dmodel_free(&m);
        bg_nn_train_destroy(t);
        bg_nn_ckpt_close(&ck);
    }
    /* LoRA rank 3, alpha 2r: adapters with B != 0 so A's gradient is alive */
    bg_nn_config c = cfg_of(16, 20, 2, 4, 2, 19, 8, 1);
    bg_nn_ckpt ck;
    nt_synth_open(dir, "g.bin", &c, &ck);
    bg_nn_train_opts o = nt_train_opts(2, 5, 3);
    o.lora_alpha = 6.0f;
    bg_nn_trainer *t;
    CHECK(bg_nn_train_create(&ck, &be, &o, &t, &err) == BG_OK, "%s", err.msg);
    dmodel m;
    dmodel_init(&m, &ck);
    m.rank = 3;
    m.scale = 2.0;
    for (int i = 0; i < bg_nn_train_nparams(t); i++) {
        size_t n = bg_nn_train_param_size(t, i);
        float *v = malloc(4 * n);
        CHECK(bg_nn_train_param_read(t, i, v, &err) == BG_OK, "%s", err.msg);
        const char *name = bg_nn_train_param_name(t, i);
        if (name[strlen(name) - 1] == 'B') { /* B starts at 0: give it values */
            for (size_t j = 0; j < n; j++)
                v[j] = (float)((int)(rnd() % 2001) - 1000) / 4000.0f;
            CHECK(bg_nn_train_param_write(t, i, v, &err) == BG_OK, "%s", err.msg);
        }
        int l, p;
        char rest[24];
        CHECK(sscanf(name, "l%d.%23s", &l, rest) == 2);
        static const char *pj[7] = {"wq", "wk", "wv", "wo", "w1", "w2", "w3"};
        for (p = 0; p < 7 && strncmp(rest, pj[p], 2) != 0; p++)
            ;
        double *d = dcopy(v, n);
        if (name[strlen(name) - 1] == 'A')
            m.la[l][p] = d;
        else
            m.lb[l][p] = d;
        free(v);
    }
    check_model_grads("LoRA rank 3, alpha 6", t, &m, 2, 5);
    dmodel_free(&m);
    bg_nn_train_destroy(t);
    bg_nn_ckpt_close(&ck);
}

/* recompute: the same gradient bits */
static void test_recompute(const char *dir)
{
    bg_err err;
    bg_nn_config c = cfg_of(24, 40, 3, 6, 3, 37, 16, 0);
    bg_nn_ckpt ck;
    nt_synth_open(dir, "r.bin", &c, &ck);
    int32_t tok[3 * 11], tgt[3 * 11];
    for (int i = 0; i < 33; i++) {
        tok[i] = (int32_t)(rnd() % 37);
        tgt[i] = (int32_t)(rnd() % 37);
    }
    float *g[2];
    size_t total = 0;
    bg_nn_train_mem mem[2];
    bg_compute_opts be = test_backend();
    for (int rc_mode = 0; rc_mode < 2; rc_mode++) {
        bg_nn_train_opts o = nt_train_opts(3, 11, 0);
        o.recompute = rc_mode;
        bg_nn_trainer *t;
        CHECK(bg_nn_train_create(&ck, &be, &o, &t, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_grad(t, tok, tgt, NULL, NULL, &err) == BG_OK, "%s", err.msg);
        total = 0;
        for (int i = 0; i < bg_nn_train_nparams(t); i++)
            total += bg_nn_train_param_size(t, i);
        g[rc_mode] = malloc(4 * total);
        float *p = g[rc_mode];
        for (int i = 0; i < bg_nn_train_nparams(t); i++) {
            CHECK(bg_nn_train_grad_read(t, i, p, &err) == BG_OK, "%s", err.msg);
            p += bg_nn_train_param_size(t, i);
        }
        bg_nn_train_memory(t, &mem[rc_mode]);
        bg_nn_train_destroy(t);
    }
    CHECK(memcmp(g[0], g[1], 4 * total) == 0, "recompute changed the gradients");
    printf("  recompute: %zu gradient floats bit-identical; activations %zu -> %zu bytes\n", total,
           mem[0].activations, mem[1].activations);
    CHECK(mem[1].activations < mem[0].activations);
    /* the budget refuses what does not fit, and says what would */
    bg_nn_train_opts o = nt_train_opts(3, 11, 0);
    o.act_budget = mem[1].activations + 1;
    bg_nn_trainer *t;
    CHECK(bg_nn_train_create(&ck, &cpu2, &o, &t, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "turn on recompute"), "message: %s", err.msg);
    CHECK(err.field && !strcmp(err.field, "act_budget"), "field %s",
          err.field ? err.field : "(none)");
    /* each refused option is named by its member (err.field), which the
     * CLI maps to its flags instead of matching the message's words */
    for (int i = 0; i < 5; i++) {
        static const char *const want[] = {"batch", "seq", "lora_rank", "lora_alpha", "adamw"};
        bg_nn_train_opts b = nt_train_opts(3, 11, 0);
        if (i == 0)
            b.batch = 0;
        else if (i == 1)
            b.seq = ck.cfg.seq_len + 1;
        else if (i == 2)
            b.lora_rank = ck.cfg.dim + 1;
        else if (i == 3)
            b.lora_alpha = -1.0f;
        else
            b.adamw.beta1 = 1.0f;
        bg_nn_trainer *bt = NULL;
        CHECK(bg_nn_train_create(&ck, &cpu2, &b, &bt, &err) == BG_EINVAL && !bt, "case %d", i);
        CHECK(err.field && !strcmp(err.field, want[i]), "case %d: field %s (%s)", i,
              err.field ? err.field : "(none)", err.msg);
    }
    bg_err_set(&err, BG_EINVAL, "a later error without a field");
    CHECK(err.field == NULL, "bg_err_set kept the field of an earlier error");
    o.recompute = 1;
    CHECK(bg_nn_train_create(&ck, &cpu2, &o, &t, &err) == BG_OK, "%s", err.msg);
    /* full fine-tuning's checkpoint: two steps, saved, reloaded as a model:
     * the same logits, bit for bit (the trainer's forward is the model's) */
    double l0, l1;
    CHECK(bg_nn_train_step(t, tok, tgt, NULL, &l0, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_step(t, tok, tgt, NULL, &l1, &err) == BG_OK, "%s", err.msg);
    CHECK(l1 < l0, "full fine-tuning: loss %g then %g", l0, l1);
    char path[600];
    snprintf(path, sizeof path, "%s/full.bin", dir);
    CHECK(bg_nn_train_save_checkpoint(t, path, &err) == BG_OK, "%s", err.msg);
    bg_nn_model *m;
    CHECK(bg_nn_model_load(path, &cpu2, &m, &err) == BG_OK, "%s", err.msg);
    unlink(path);
    float a[37], b[37];
    CHECK(bg_nn_forward(m, tok, 9, 0, a, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t, tok, 9, b, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(a, b, sizeof a) == 0, "the saved full checkpoint gives other logits");
    printf("  full fine-tuning checkpoint: reloaded logits bit-identical (loss %.4f -> %.4f)\n", l0,
           l1);
    bg_nn_model_destroy(m);
    bg_nn_train_destroy(t);
    free(g[0]), free(g[1]);
    bg_nn_ckpt_close(&ck);
}

static float max_abs(const float *v, int n)
{
    float m = 0;
    for (int i = 0; i < n; i++)
        m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

/* stories260K: fine-tune, adapters off = base, merge, files, bad input */
static void test_stories(const char *dir)
{
    char mpath[600];
    bg_err err;
    bg_nn_ckpt ck;
    if (!nt_stories_path(mpath, sizeof mpath)) {
        printf("SKIP stories260K parts: %s not readable\n", mpath);
        exit(BG_TEST_SKIP);
    }
    CHECK(bg_nn_ckpt_open(&ck, mpath, &err) == BG_OK, "%s", err.msg);
    /* BG_TEST_BACKEND=vulkan: the same fine-tune on Vulkan (lavapipe admitted),
     * whose first five losses must match the CPU's within 1e-3 relative */
    bg_compute_opts copts = test_backend();
    int V = ck.cfg.vocab_size, B = NT_STORY_B, T = NT_STORY_T;
    /* the corpus: a fixed 40-token "story" of ids, repeated; windows of T+1 */
    int32_t corpus[NT_STORY_LEN];
    nt_story_corpus(corpus, V);
    int32_t tok[NT_STORY_B * NT_STORY_T], tgt[NT_STORY_B * NT_STORY_T];
    bg_nn_train_opts o = nt_story_opts();
    bg_nn_trainer *t;
    CHECK(bg_nn_train_create(&ck, &copts, &o, &t, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_mem mem;
    bg_nn_train_memory(t, &mem);
    printf("  stories260K LoRA r=4, batch %d x seq %d: peak %.2f MiB (weights %.2f, grads %.2f, "
           "adam %.2f, activations %.2f, scratch %.2f, transient %.2f)\n",
           B, T, mem.peak / 1048576.0, mem.weights / 1048576.0, mem.grads / 1048576.0,
           mem.optimizer / 1048576.0, mem.activations / 1048576.0, mem.scratch / 1048576.0,
           mem.transient / 1048576.0);
    double losses[12];
    int steps = 12;
    printf("  first five losses (%s backend):", copts.kind == BG_BACKEND_VULKAN ? "vulkan" : "cpu");
    for (int st = 0; st < steps; st++) {
        nt_story_batch(corpus, st, tok, tgt);
        CHECK(bg_nn_train_step(t, tok, tgt, NULL, &losses[st], &err) == BG_OK, "%s", err.msg);
        if (st < 5)
            printf(" %.6f", losses[st]);
    }
    printf("\n  loss step 1 %.4f -> step %d %.4f\n", losses[0], steps, losses[steps - 1]);
    CHECK(losses[steps - 1] < 0.8 * losses[0], "LoRA fine-tuning did not drive the loss down");
    for (int st = 1; st < 5; st++)
        CHECK(losses[st] < losses[0], "loss of step %d above step 1's", st + 1);

    /* adapters off: the base model's logits, bit for bit */
    int n = 20;
    float *base = malloc(4 * (size_t)V), *off = malloc(4 * (size_t)V), *on = malloc(4 * (size_t)V);
    bg_nn_model *m;
    CHECK(bg_nn_model_create(&ck, &copts, &m, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_forward(m, corpus, n, 0, base, &err) == BG_OK, "%s", err.msg);
    bg_nn_model_destroy(m);
    CHECK(bg_nn_train_logits(t, corpus, n, on, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_set_adapters(t, 0);
    CHECK(bg_nn_train_logits(t, corpus, n, off, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(base, off, 4 * (size_t)V) == 0, "adapters off: logits differ from the base model");
    CHECK(memcmp(base, on, 4 * (size_t)V) != 0, "trained adapters changed nothing");
    CHECK(bg_nn_train_step(t, tok, tgt, NULL, NULL, &err) == BG_EINVAL);
    bg_nn_train_set_adapters(t, 1);
    printf("  adapters off: %d logits bit-identical to the base model (memcmp)\n", V);

    /* merge: a llama2.c checkpoint whose logits are the adapted model's */
    char path[700];
    snprintf(path, sizeof path, "%s/merged.bin", dir);
    CHECK(bg_nn_train_save_checkpoint(t, path, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_model_load(path, &copts, &m, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_forward(m, corpus, n, 0, off, &err) == BG_OK, "%s", err.msg);
    bg_nn_model_destroy(m);
    unlink(path);
    float dmax = 0;
    for (int i = 0; i < V; i++)
        dmax = fabsf(off[i] - on[i]) > dmax ? fabsf(off[i] - on[i]) : dmax;
    printf("  merged checkpoint: max |logit diff| %.2e (tol %.2e)\n", dmax, 1e-4 * max_abs(on, V));
    CHECK(dmax <= 1e-4f * max_abs(on, V), "merged logits differ from the adapted model's");

    /* adapters file round trip; a second trainer from the same base */
    char apath[700], spath[700];
    snprintf(apath, sizeof apath, "%s/a.lora", dir);
    snprintf(spath, sizeof spath, "%s/s.opt", dir);
    CHECK(bg_nn_lora_save(t, apath, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_save_state(t, spath, &err) == BG_OK, "%s", err.msg);
    bg_nn_trainer *t2;
    CHECK(bg_nn_train_create(&ck, &copts, &o, &t2, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_lora_load(t2, apath, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t2, corpus, n, off, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(off, on, 4 * (size_t)V) == 0, "loaded adapters give other logits");
    /* optimizer state: the resumed step equals the uninterrupted one */
    CHECK(bg_nn_train_load_state(t2, spath, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_step(t, tok, tgt, NULL, NULL, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_step(t2, tok, tgt, NULL, NULL, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t, corpus, n, on, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t2, corpus, n, off, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(off, on, 4 * (size_t)V) == 0, "a step after loading the state differs");
    printf("  adapter file and optimizer state round trip: resumed step bit-identical\n");

    /* bad files: flipped byte (CRC), truncated, another rank, wrong kind */
    FILE *f = fopen(apath, "r+b");
    CHECK(f && fseek(f, 200, SEEK_SET) == 0 && fputc(0x5A, f) != EOF && fclose(f) == 0);
    CHECK(bg_nn_lora_load(t2, apath, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "CRC mismatch") && strstr(err.msg, apath), "message: %s", err.msg);
    CHECK(truncate(spath, 1000) == 0);
    CHECK(bg_nn_train_load_state(t2, spath, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "truncated"), "message: %s", err.msg);
    CHECK(bg_nn_lora_save(t, apath, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_load_state(t2, apath, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "bad magic"), "message: %s", err.msg);
    bg_nn_train_opts o8 = o;
    o8.lora_rank = 8;
    bg_nn_trainer *t8;
    CHECK(bg_nn_train_create(&ck, &copts, &o8, &t8, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_lora_load(t8, apath, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "LoRA rank 4"), "message: %s", err.msg);
    bg_nn_train_destroy(t8);
    /* a NaN behind a valid CRC: refused by value, the adapters untouched */
    FILE *fa = fopen(apath, "rb");
    CHECK(fa && fseek(fa, 0, SEEK_END) == 0);
    size_t len = (size_t)ftell(fa);
    unsigned char *img = malloc(len);
    rewind(fa);
    CHECK(len > 400 && img && fread(img, 1, len, fa) == len, "adapter file of %zu bytes", len);
    fclose(fa);
    float nan = NAN;
    memcpy(img + len - 8, &nan, 4); /* the last value of the last tensor */
    uint32_t crc = ~0u;
    for (size_t i = 0; i < len - 4; i++) {
        crc ^= img[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    crc = ~crc;
    memcpy(img + len - 4, &crc, 4);
    fa = fopen(apath, "wb");
    CHECK(fa && fwrite(img, 1, len, fa) == len && fclose(fa) == 0);
    CHECK(bg_nn_train_logits(t2, corpus, n, on, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_lora_load(t2, apath, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "l4.w3.B holds a non-finite value"), "message: %s", err.msg);
    CHECK(bg_nn_train_logits(t2, corpus, n, off, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(on, off, 4 * (size_t)V) == 0, "a refused adapter file changed the model");
    free(img);
    printf("  bad files refused: CRC, truncated, wrong kind, wrong rank, NaN (model unchanged)\n");
    unlink(apath);
    unlink(spath);

    /* bad input before any step: a token out of the vocabulary, a long sequence */
    tok[5] = V;
    CHECK(bg_nn_train_step(t, tok, tgt, NULL, NULL, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "token id 512 at index 5"), "message: %s", err.msg);
    bg_nn_train_opts ol = nt_train_opts(1, ck.cfg.seq_len + 1, 4);
    CHECK(bg_nn_train_create(&ck, &copts, &ol, &t8, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "sequence length 513"), "message: %s", err.msg);
    free(base), free(off), free(on);
    bg_nn_train_destroy(t);
    bg_nn_train_destroy(t2);
    bg_nn_ckpt_close(&ck);
}

/* The logit bias (a vocabulary mask): logits move by exactly the bias in
 * bg_nn_train_logits, log p in eval is the biased log-softmax, masked
 * tokens get ~0 probability, a non-finite entry is refused, and removing
 * it gives the unbiased logits bit for bit again. */
static void test_logit_bias(const char *dir)
{
    bg_nn_config c = {.dim = 16,
                      .hidden_dim = 32,
                      .n_layers = 1,
                      .n_heads = 2,
                      .n_kv_heads = 2,
                      .vocab_size = 12,
                      .seq_len = 8,
                      .shared_classifier = 1};
    bg_nn_ckpt ck;
    nt_synth_open(dir, "bias.bin", &c, &ck);
    bg_nn_train_opts o = nt_train_opts(1, 4, 2);
    bg_nn_trainer *t;
    bg_err err;
    CHECK(bg_nn_train_create(&ck, NULL, &o, &t, &err) == BG_OK, "%s", err.msg);
    int32_t tok[4] = {1, 5, 3, 7}, tgt[4] = {5, 3, 7, 2};
    float l0[12], l1[12], l2[12], bias[12], lp[4];
    CHECK(bg_nn_train_logits(t, tok, 4, l0, &err) == BG_OK, "%s", err.msg);
    for (int j = 0; j < 12; j++)
        bias[j] = j == 4 ? -1e4f : 0.25f * (float)j;
    CHECK(bg_nn_train_set_logit_bias(t, bias, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t, tok, 4, l1, &err) == BG_OK, "%s", err.msg);
    for (int j = 0; j < 12; j++)
        CHECK(l1[j] == l0[j] + bias[j], "biased logit %d: %g, expected %g", j, l1[j],
              l0[j] + bias[j]);
    double lse = -INFINITY;
    for (int j = 0; j < 12; j++)
        lse = fmax(lse, l1[j]);
    double s = 0;
    for (int j = 0; j < 12; j++)
        s += exp(l1[j] - lse);
    lse += log(s);
    CHECK(bg_nn_train_eval(t, tok, tgt, NULL, NULL, lp, &err) == BG_OK, "%s", err.msg);
    CHECK_NEAR(lp[3], l1[2] - lse, 1e-4);
    float nan_bias[12] = {0};
    nan_bias[3] = NAN;
    CHECK(bg_nn_train_set_logit_bias(t, nan_bias, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, "entry 3") != NULL, "message: %s", err.msg);
    CHECK(bg_nn_train_set_logit_bias(t, NULL, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(t, tok, 4, l2, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(l0, l2, sizeof l0) == 0, "logits without the bias differ from before");
    bg_nn_train_destroy(t);
    bg_nn_ckpt_close(&ck);
}

int main(void)
{
    const char *dir = nt_tmpdir();
    test_logit_bias(dir);
    printf("GTOL_MODEL %.0e (FD of a double forward, h = %.0e)\n", GTOL_MODEL, FD_H);
    test_model_grads(dir);
    test_recompute(dir);
    test_stories(dir);
    rmdir(dir);
    CHECK_DONE("test_nn_train");
}
