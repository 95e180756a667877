/*
 * bench_train.c — bg_bench_lm's training table: tokens/s of a full
 * fine-tuning forward+backward on the CPU backend (bg_nn_train_grad) against
 * a plain single-threaded scalar forward+backward of the same model, written
 * here from the scalar reference ops (compute_ref.h), and the backward's
 * time per token against the forward's (bg_nn_train_eval).
 *
 * The models are the synthetic 15M shape (dim 288, hidden 768, 6 layers, 6/6
 * heads, vocab 32000, seq 256; weights from seed 15), written to a temporary
 * file and removed, then stories260K (dim 64, 5 layers, 8/4 heads: grouped
 * KV, head size 8) from --model. Tokens are a fixed LCG sequence (seed 1). The scalar
 * step is the same computation as the trainer's (residual stream, RMSNorm,
 * RoPE, causal attention, SwiGLU, shared classifier, mean cross-entropy):
 * its loss is printed beside the backend's so the two can be compared.
 * Threads: the reference runs on the calling thread; the backend uses its
 * pool.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_gemm.h"
#include "compute/compute_ref.h"
#include "nn/nn.h"

static float *fz(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

/* The activations one layer keeps for its backward. */
typedef struct ref_layer {
    float *x, *xb, *q, *k, *v, *att, *lse, *xmid, *xb2, *h1, *h3, *ha;
} ref_layer;

/* One scalar forward+backward over B sequences of T tokens (rows R = B*T),
 * full fine-tuning: every weight's gradient. Returns the mean loss. */
static double ref_step(const bg_nn_ckpt *ck, const int32_t *tok, const int32_t *tgt, int B, int T)
{
    const bg_nn_config *p = &ck->cfg;
    const bg_nn_weights *w = &ck->w;
    int d = p->dim, hd = p->hidden_dim, L = p->n_layers, V = p->vocab_size;
    int hs = bg_nn_head_size(p), kvd = bg_nn_kv_dim(p), nh = p->n_heads, nkv = p->n_kv_heads;
    size_t R = (size_t)B * T;
    ref_layer *ly = calloc((size_t)L, sizeof *ly);
    float *x = fz(R * d);
    bg_ref_embed(x, w->tok_emb, tok, (int)R, d);
    for (int l = 0; l < L; l++) {
        ref_layer *a = &ly[l];
        a->x = x;
        a->xb = fz(R * d), a->q = fz(R * d), a->k = fz(R * kvd), a->v = fz(R * kvd);
        a->att = fz(R * d), a->lse = fz(R * nh), a->xmid = fz(R * d), a->xb2 = fz(R * d);
        a->h1 = fz(R * hd), a->h3 = fz(R * hd), a->ha = fz(R * hd);
        bg_ref_rmsnorm(a->xb, x, w->rms_att + (size_t)l * d, (int)R, d, BG_NN_RMS_EPS);
        bg_ref_matmul(a->q, a->xb, w->wq + (size_t)l * d * d, (int)R, d, d);
        bg_ref_matmul(a->k, a->xb, w->wk + (size_t)l * kvd * d, (int)R, kvd, d);
        bg_ref_matmul(a->v, a->xb, w->wv + (size_t)l * kvd * d, (int)R, kvd, d);
        for (int b = 0; b < B; b++)
            bg_ref_rope(a->q + (size_t)b * T * d, a->k + (size_t)b * T * kvd, T, 0, nh, nkv, hs);
        bg_ref_attention_train(a->att, a->lse, a->q, a->k, a->v, B, T, nh, nkv, hs);
        bg_ref_matmul(a->xmid, a->att, w->wo + (size_t)l * d * d, (int)R, d, d);
        bg_ref_add(a->xmid, x, (int)(R * d));
        bg_ref_rmsnorm(a->xb2, a->xmid, w->rms_ffn + (size_t)l * d, (int)R, d, BG_NN_RMS_EPS);
        bg_ref_matmul(a->h1, a->xb2, w->w1 + (size_t)l * hd * d, (int)R, hd, d);
        bg_ref_matmul(a->h3, a->xb2, w->w3 + (size_t)l * hd * d, (int)R, hd, d);
        bg_ref_copy(a->ha, a->h1, (int)(R * hd));
        bg_ref_swiglu(a->ha, a->h3, (int)(R * hd));
        x = fz(R * d);
        bg_ref_matmul(x, a->ha, w->w2 + (size_t)l * d * hd, (int)R, d, hd);
        bg_ref_add(x, a->xmid, (int)(R * d));
    }
    float *xf = fz(R * d), *logits = fz(R * (size_t)V), *lp = fz(R);
    bg_ref_rmsnorm(xf, x, w->rms_final, (int)R, d, BG_NN_RMS_EPS);
    bg_ref_matmul(logits, xf, w->wcls, (int)R, V, d);
    float *wt = fz(R); /* the mean cross-entropy: weight 1/R per position */
    for (size_t i = 0; i < R; i++)
        wt[i] = 1.0f / (float)R;
    bg_ref_xent(lp, logits, logits, tgt, wt, (int)R, V); /* dlogits in place */
    free(wt);
    double loss = 0;
    for (size_t i = 0; i < R; i++)
        loss -= lp[i];
    loss /= (double)R;
    /* gradients (one buffer per weight kind, reused across layers: the
     * arithmetic is the same as keeping one per layer) */
    float *g_cls = fz((size_t)V * d), *g_tok = g_cls; /* shared classifier */
    float *g_rms = fz(d), *g_wq = fz((size_t)d * d), *g_wk = fz((size_t)kvd * d);
    float *g_wv = fz((size_t)kvd * d), *g_wo = fz((size_t)d * d), *g_w1 = fz((size_t)hd * d);
    float *g_w2 = fz((size_t)d * hd), *g_w3 = fz((size_t)hd * d);
    float *dxf = fz(R * d), *dx = fz(R * d), *dxm = fz(R * d), *dha = fz(R * hd);
    float *dh1 = fz(R * hd), *dh3 = fz(R * hd), *dxb = fz(R * d), *datt = fz(R * d);
    float *dq = fz(R * d), *dk = fz(R * kvd), *dv = fz(R * kvd);
    bg_ref_matmul_backward_x(dxf, logits, w->wcls, (int)R, V, d, 0);
    bg_ref_matmul_backward_w(g_cls, logits, xf, (int)R, V, d);
    bg_ref_rmsnorm_backward(dx, g_rms, dxf, x, w->rms_final, (int)R, d, BG_NN_RMS_EPS);
    for (int l = L - 1; l >= 0; l--) {
        ref_layer *a = &ly[l];
        /* x_{l+1} = xmid + w2 . swiglu(w1 xb2, w3 xb2) */
        bg_ref_copy(dxm, dx, (int)(R * d));
        bg_ref_matmul_backward_x(dha, dx, w->w2 + (size_t)l * d * hd, (int)R, d, hd, 0);
        bg_ref_matmul_backward_w(g_w2, dx, a->ha, (int)R, d, hd);
        bg_ref_swiglu_backward(dh1, dh3, dha, a->h1, a->h3, (int)(R * hd));
        bg_ref_matmul_backward_x(dxb, dh1, w->w1 + (size_t)l * hd * d, (int)R, hd, d, 0);
        bg_ref_matmul_backward_x(dxb, dh3, w->w3 + (size_t)l * hd * d, (int)R, hd, d, 1);
        bg_ref_matmul_backward_w(g_w1, dh1, a->xb2, (int)R, hd, d);
        bg_ref_matmul_backward_w(g_w3, dh3, a->xb2, (int)R, hd, d);
        bg_ref_rmsnorm_backward(dxm, g_rms, dxb, a->xmid, w->rms_ffn + (size_t)l * d, (int)R, d,
                                BG_NN_RMS_EPS);
        /* xmid = x_l + wo . attention(rope(wq xb), rope(wk xb), wv xb) */
        bg_ref_copy(dx, dxm, (int)(R * d));
        bg_ref_matmul_backward_x(datt, dxm, w->wo + (size_t)l * d * d, (int)R, d, d, 0);
        bg_ref_matmul_backward_w(g_wo, dxm, a->att, (int)R, d, d);
        bg_ref_attention_backward(dq, dk, dv, datt, a->q, a->k, a->v, a->att, a->lse, B, T, nh, nkv,
                                  hs);
        for (int b = 0; b < B; b++)
            bg_ref_rope_backward(dq + (size_t)b * T * d, dk + (size_t)b * T * kvd, T, 0, nh, nkv,
                                 hs);
        bg_ref_matmul_backward_x(dxb, dq, w->wq + (size_t)l * d * d, (int)R, d, d, 0);
        bg_ref_matmul_backward_x(dxb, dk, w->wk + (size_t)l * kvd * d, (int)R, kvd, d, 1);
        bg_ref_matmul_backward_x(dxb, dv, w->wv + (size_t)l * kvd * d, (int)R, kvd, d, 1);
        bg_ref_matmul_backward_w(g_wq, dq, a->xb, (int)R, d, d);
        bg_ref_matmul_backward_w(g_wk, dk, a->xb, (int)R, kvd, d);
        bg_ref_matmul_backward_w(g_wv, dv, a->xb, (int)R, kvd, d);
        bg_ref_rmsnorm_backward(dx, g_rms, dxb, a->x, w->rms_att + (size_t)l * d, (int)R, d,
                                BG_NN_RMS_EPS);
    }
    bg_ref_embed_backward(g_tok, dx, tok, (int)R, d);
    for (int l = 0; l < L; l++) {
        ref_layer *a = &ly[l];
        float *f[] = {a->x,   a->xb,   a->q,   a->k,  a->v,  a->att,
                      a->lse, a->xmid, a->xb2, a->h1, a->h3, a->ha};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            free(f[i]);
    }
    free(x), free(ly);
    float *g[] = {xf,  logits, lp,  g_cls, g_rms, g_wq, g_wk, g_wv, g_wo, g_w1, g_w2, g_w3,
                  dxf, dx,     dxm, dha,   dh1,   dh3,  dxb,  datt, dq,   dk,   dv};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        free(g[i]);
    return loss;
}

/* Seconds per call of the backend's grad (or eval) step: best of reps, by
 * the clock (returned) and in CPU seconds (*cpu). */
static double time_backend(bg_nn_trainer *tr, const int32_t *tok, const int32_t *tgt, int grad,
                           int reps, double *loss, double *cpu)
{
    double best = INFINITY;
    *cpu = INFINITY;
    bg_err err;
    for (int r = 0; r < reps; r++) {
        double t0 = bg_bench_wall(), c0 = bg_bench_cpu();
        int rc = grad ? bg_nn_train_grad(tr, tok, tgt, NULL, loss, &err)
                      : bg_nn_train_eval(tr, tok, tgt, NULL, loss, NULL, &err);
        if (rc != BG_OK) {
            fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
            return -1;
        }
        best = fmin(best, bg_bench_wall() - t0);
        *cpu = fmin(*cpu, bg_bench_cpu() - c0);
    }
    return best;
}

/* One row per (threads, batch, precision) for the model in ck, after the
 * plain scalar reference's row. */
static int bench_model(const bg_nn_ckpt *ck, const char *name, int quick, int threads, FILE *out)
{
    const bg_nn_config *cfg = &ck->cfg;
    int T = quick ? 64 : 256, B = 4, reps = quick ? 2 : 3;
    if (T > cfg->seq_len)
        T = cfg->seq_len;
    bg_err err;
    size_t R = (size_t)B * T;
    int32_t *tok = malloc(sizeof(int32_t) * (R + 1));
    if (!tok)
        return -1;
    unsigned s = 1;
    for (size_t i = 0; i <= R; i++) {
        s = s * 1664525u + 1013904223u;
        tok[i] = (int32_t)((s >> 8) % (unsigned)cfg->vocab_size);
    }
    fprintf(out,
            "\n### training, %s (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d), full "
            "fine-tuning, seq %d\n\n",
            name, cfg->dim, cfg->hidden_dim, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads,
            cfg->vocab_size, T);
    fprintf(out,
            "Times are best of %d; \"CPU\" = per CPU-second of the process (all threads), "
            "which the load of a shared machine disturbs least.\n\n",
            reps);
    fprintf(out, "| run | batch | tokens/s fwd+bwd (wall) | tokens per CPU-s | vs scalar (CPU) | "
                 "fwd ms/token (CPU) | bwd ms/token (CPU) | bwd / fwd | loss |\n"
                 "|---|---|---|---|---|---|---|---|---|\n");
    /* plain scalar: one sequence, single-threaded */
    double t0 = bg_bench_wall(), c0 = bg_bench_cpu();
    double ref_loss = ref_step(ck, tok, tok + 1, 1, T);
    double t_ref = bg_bench_wall() - t0, c_ref = bg_bench_cpu() - c0;
    double ref_cps = T / c_ref;
    fprintf(out,
            "| plain scalar reference (1 thread) | 1 | %.1f | %.1f | 1.00x | - | - | - | %.4f |\n",
            T / t_ref, ref_cps, ref_loss);
    int counts[2] = {1, threads > 1 ? threads : 2};
    for (int ci = 0; ci < 2; ci++) {
        /* batch 1 and B in fp32, then B with bf16 matmuls */
        for (int bi = 0; bi < 3; bi++) {
            int bb = bi ? B : 1, bf16 = bi == 2;
            bg_compute_opts co = {BG_BACKEND_CPU, counts[ci], 0, -1};
            bg_nn_train_opts to;
            memset(&to, 0, sizeof to);
            to.batch = bb;
            to.seq = T;
            to.precision = bf16 ? BG_PRECISION_BF16 : BG_PRECISION_FP32;
            to.adamw.lr = 1e-3f;
            to.adamw.beta1 = 0.9f;
            to.adamw.beta2 = 0.999f;
            to.adamw.eps = 1e-8f;
            bg_nn_trainer *tr = NULL;
            char desc[160];
            bg_compute *probe = NULL;
            if (bg_compute_create(&co, &probe, &err) != BG_OK) {
                fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
                free(tok);
                return -1;
            }
            int can = !bf16 || bg_compute_set_precision(probe, BG_PRECISION_BF16, &err) == BG_OK;
            snprintf(desc, sizeof desc, "%s", bg_compute_describe(probe));
            bg_compute_destroy(probe);
            if (!can) {
                fprintf(out,
                        "| bf16 matmuls: not run here (%s) | %d | - | - | - | - | - | - | - |\n",
                        err.msg, bb);
                continue;
            }
            if (bg_nn_train_create(ck, &co, &to, &tr, &err) != BG_OK) {
                fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
                free(tok);
                return -1;
            }
            /* the batch's sequences are consecutive windows of tok */
            int32_t *bt = malloc(sizeof(int32_t) * ((size_t)bb * T + 1));
            memcpy(bt, tok, sizeof(int32_t) * ((size_t)bb * T + 1));
            double loss = 0, lf = 0, cg, cf;
            double tg = time_backend(tr, bt, bt + 1, 1, reps, &loss, &cg);
            double tf = time_backend(tr, bt, bt + 1, 0, reps, &lf, &cf);
            double ntok = (double)bb * T;
            if (tg > 0 && tf > 0)
                fprintf(
                    out,
                    "| bayesguard %s | %d | %.1f | %.1f | %.2fx | %.3f | %.3f | %.2f | %.4f |\n",
                    desc, bb, ntok / tg, ntok / cg, ntok / cg / ref_cps, cf / ntok * 1e3,
                    (cg - cf) / ntok * 1e3, (cg - cf) / cf, loss);
            free(bt);
            bg_nn_train_destroy(tr);
        }
    }
    free(tok);
    return 0;
}

int bg_bench_train(int quick, const char *tmp_dir, int threads, const char *model_path, FILE *out)
{
    bg_nn_config cfg = {288, 768, 6, 6, 6, 32000, 256, 1};
    char path[1024];
    snprintf(path, sizeof path, "%s/bg_bench_train_15M_%ld.bin", tmp_dir ? tmp_dir : "/tmp",
             (long)getpid());
    bg_err err;
    bg_nn_ckpt ck;
    if (bg_nn_synth_write(path, &cfg, 15, &err) != BG_OK ||
        bg_nn_ckpt_open(&ck, path, &err) != BG_OK) {
        fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
        unlink(path);
        return -1;
    }
    unlink(path);
    int rc = bench_model(&ck, "synthetic 15M shape", quick, threads, out);
    bg_nn_ckpt_close(&ck);
    if (rc != 0)
        return rc;
    if (!model_path) {
        fprintf(out, "\n(stories260K: no model file; pass --model)\n");
        return 0;
    }
    if (bg_nn_ckpt_open(&ck, model_path, &err) != BG_OK) {
        fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
        return -1;
    }
    const char *base = strrchr(model_path, '/');
    rc = bench_model(&ck, base ? base + 1 : model_path, quick, threads, out);
    bg_nn_ckpt_close(&ck);
    return rc;
}
