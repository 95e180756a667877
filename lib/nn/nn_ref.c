/*
 * nn_ref.c — the plain forward pass: one token at a time, single-threaded,
 * on host arrays, with the scalar reference ops (compute_ref.h). It is what
 * llama2.c's run.c does, step for step.
 *
 * Two uses: the oracle the backend forward is tested against, and the
 * floor the benchmark compares tokens/s with. So it stays simple; nothing
 * here may be optimised.
 * Ownership: borrows the checkpoint (its weights); owns its activations
 * and KV cache. One thread at a time.
 */
#include <stdlib.h>

#include "compute/compute_ref.h"
#include "nn/nn.h"

struct bg_nn_ref {
    const bg_nn_ckpt *ck;
    float *x, *xb, *xb2, *q, *hb, *hb2, *logits; /* one token */
    float *kc, *vc;                              /* [layers, seq_len, kv_dim] */
};

int bg_nn_ref_create(const bg_nn_ckpt *ck, bg_nn_ref **out, bg_err *err)
{
    *out = NULL;
    const bg_nn_config *c = &ck->cfg;
    bg_nn_ref *r = calloc(1, sizeof *r);
    if (!r)
        return bg_err_set(err, BG_ENOMEM, "reference forward: out of memory");
    r->ck = ck;
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    size_t cache = (size_t)c->n_layers * (size_t)c->seq_len * (size_t)bg_nn_kv_dim(c);
    r->x = calloc(d, sizeof(float));
    r->xb = calloc(d, sizeof(float));
    r->xb2 = calloc(d, sizeof(float));
    r->q = calloc(d, sizeof(float));
    r->hb = calloc(h, sizeof(float));
    r->hb2 = calloc(h, sizeof(float));
    r->logits = calloc((size_t)c->vocab_size, sizeof(float));
    r->kc = calloc(cache, sizeof(float));
    r->vc = calloc(cache, sizeof(float));
    if (!r->x || !r->xb || !r->xb2 || !r->q || !r->hb || !r->hb2 || !r->logits || !r->kc ||
        !r->vc) {
        bg_nn_ref_destroy(r);
        return bg_err_set(err, BG_ENOMEM, "reference forward: out of memory");
    }
    *out = r;
    return BG_OK;
}

void bg_nn_ref_destroy(bg_nn_ref *r)
{
    if (!r)
        return;
    free(r->x);
    free(r->xb);
    free(r->xb2);
    free(r->q);
    free(r->hb);
    free(r->hb2);
    free(r->logits);
    free(r->kc);
    free(r->vc);
    free(r);
}

const float *bg_nn_ref_forward(bg_nn_ref *r, int32_t token, int pos)
{
    const bg_nn_config *p = &r->ck->cfg;
    const bg_nn_weights *w = &r->ck->w;
    int d = p->dim, hd = p->hidden_dim, kv = bg_nn_kv_dim(p), hs = bg_nn_head_size(p);
    size_t D = (size_t)d, H = (size_t)hd, KV = (size_t)kv;

    bg_ref_embed(r->x, w->tok_emb, &token, 1, d);
    for (int l = 0; l < p->n_layers; l++) {
        size_t L = (size_t)l;
        float *kc = r->kc + L * (size_t)p->seq_len * KV, *vc = r->vc + L * (size_t)p->seq_len * KV;
        float *k = kc + (size_t)pos * KV, *v = vc + (size_t)pos * KV;
        bg_ref_rmsnorm(r->xb, r->x, w->rms_att + L * D, 1, d, BG_NN_RMS_EPS);
        bg_ref_matmul(r->q, r->xb, w->wq + L * D * D, 1, d, d);
        bg_ref_matmul(k, r->xb, w->wk + L * KV * D, 1, kv, d);
        bg_ref_matmul(v, r->xb, w->wv + L * KV * D, 1, kv, d);
        bg_ref_rope(r->q, k, 1, pos, p->n_heads, p->n_kv_heads, hs);
        bg_ref_attention(r->xb, r->q, kc, vc, 1, pos, p->n_heads, p->n_kv_heads, hs, p->seq_len);
        bg_ref_matmul(r->xb2, r->xb, w->wo + L * D * D, 1, d, d);
        bg_ref_add(r->x, r->xb2, d);
        bg_ref_rmsnorm(r->xb, r->x, w->rms_ffn + L * D, 1, d, BG_NN_RMS_EPS);
        bg_ref_matmul(r->hb, r->xb, w->w1 + L * H * D, 1, hd, d);
        bg_ref_matmul(r->hb2, r->xb, w->w3 + L * H * D, 1, hd, d);
        bg_ref_swiglu(r->hb, r->hb2, hd);
        bg_ref_matmul(r->xb2, r->hb, w->w2 + L * D * H, 1, d, hd);
        bg_ref_add(r->x, r->xb2, d);
    }
    bg_ref_rmsnorm(r->x, r->x, w->rms_final, 1, d, BG_NN_RMS_EPS);
    bg_ref_matmul(r->logits, r->x, w->wcls, 1, p->vocab_size, d);
    return r->logits;
}
