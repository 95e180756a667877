/*
 * nn_model.c — a llama2.c transformer on a bg_compute backend: load (upload
 * the weights once), forward (one-token decode and multi-token prefill with
 * a KV cache) and sequence log-probability scoring.
 *
 * Why shaped so: the forward pass is written once against compute.h and runs
 * on the CPU or Vulkan backend unchanged. One forward chunk is one
 * begin..submit recording; barriers sit only between dependent ops (Q, K, V
 * are independent, so are W1 and W3). K and V are written by their matmuls
 * straight into the layer's cache rows, so no copy op is needed.
 * Sequences longer than the activation buffers (max_T tokens) run in
 * chunks. Logits are computed for the last position only unless targets are
 * gathered (scoring), where every position's row feeds logsoftmax_gather on
 * the device and only T floats come back.
 *
 * The weights are packed once at load into the CPU GEMM's layout
 * (bg_compute_pack; wq|wk|wv and w1|w3 stacked into one product each), so
 * no product repacks a weight per call; the residual adds run in those
 * products' write-back. Same bits as the unpacked ops; a backend that
 * packs nothing (Vulkan) or BG_NN_NO_PACK keeps bg_op_matmul.
 *
 * Backend `auto` is chosen per model: a model under 16 MiB of weights runs on
 * the CPU backend even when a GPU exists. Its decode is bound by per-op cost
 * on a GPU (~70 dependent dispatches per token at ~3 us each on an H200):
 * stories260K (1 MiB) decoded 8x faster on the CPU there, while the 15M
 * shape (58 MiB) was at par with 16 CPU threads and prefilled 2.2x faster
 * (docs/PERFORMANCE.md, ## Vulkan). BG_NN_AUTO_GPU_MIN_MB moves the line
 * (0: a GPU whenever there is one).
 *
 * Invariants: every device buffer is sized from the validated config at
 * load; token ids are checked against vocab_size and positions against
 * seq_len before any recording; held[0..n_held) are the tokens the KV
 * cache holds at those positions (run() lowers n_held to its position
 * before writing and raises it only when the cache held every position
 * before it, computed with the same attention op, held_prefix;
 * bg__nn_hold runs only what it lacks, for nn_batch.c, with the batch's
 * attention op). One
 * thread at a time (see nn.h).
 * Ownership: the model owns its backend and every buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "nn/nn_priv.h"

#define MAX_CHUNK 128
#define AUTO_GPU_MIN_MB 16

/* The backend for `auto` and this model (see the header comment). */
static bg_compute_opts backend_for(const bg_nn_config *c, const bg_compute_opts *in)
{
    bg_compute_opts o = {.kind = BG_BACKEND_CPU, .device_index = -1}; /* NULL: the CPU */
    if (in)
        o = *in;
    if (o.kind != BG_BACKEND_AUTO)
        return o;
    const char *e = getenv("BG_NN_AUTO_GPU_MIN_MB");
    char *end = NULL;
    long min_mb = e && *e ? strtol(e, &end, 10) : AUTO_GPU_MIN_MB;
    if (e && *e && (*end || min_mb < 0 || min_mb > (1L << 30))) {
        BG_WARN("nn", "BG_NN_AUTO_GPU_MIN_MB=%s ignored: expected a number of MiB >= 0", e);
        min_mb = AUTO_GPU_MIN_MB;
    }
    uint64_t bytes = bg_nn_ckpt_bytes(c);
    if (bytes < (uint64_t)min_mb << 20) {
        o.kind = BG_BACKEND_CPU;
        BG_INFO("nn",
                "backend auto: cpu for a model of %.1f MiB (under %ld MiB a GPU is bound "
                "by per-op cost)",
                (double)bytes / (1 << 20), min_mb);
    }
    return o;
}

static bg_tview at(bg_cbuf *b, size_t off)
{
    bg_tview v = {b, off};
    return v;
}

static int upload(bg_nn_model *m, bg_cbuf **dst, const float *src, size_t n, bg_err *err)
{
    int rc = bg_cbuf_create(m->c, n * sizeof(float), dst, err);
    if (rc == BG_OK && src)
        rc = bg_cbuf_write(m->c, *dst, 0, src, n * sizeof(float), err);
    return rc;
}

static int upload_layer(bg_nn_model *m, const bg_nn_weights *w, int l, bg_err *err)
{
    const bg_nn_config *c = &m->cfg;
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, kv = (size_t)bg_nn_kv_dim(c);
    size_t L = (size_t)l;
    bg__nn_layer *y = &m->layers[l];
    struct {
        bg_cbuf **dst;
        const float *src;
        size_t n;
    } t[] = {
        {&y->rms_att, w->rms_att + L * d, d},    {&y->wq, w->wq + L * d * d, d * d},
        {&y->wk, w->wk + L * kv * d, kv * d},    {&y->wv, w->wv + L * kv * d, kv * d},
        {&y->wo, w->wo + L * d * d, d * d},      {&y->rms_ffn, w->rms_ffn + L * d, d},
        {&y->w1, w->w1 + L * h * d, h * d},      {&y->w2, w->w2 + L * d * h, d * h},
        {&y->w3, w->w3 + L * h * d, h * d},      {&y->kc, NULL, (size_t)c->seq_len * kv},
        {&y->vc, NULL, (size_t)c->seq_len * kv},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int rc = upload(m, t[i].dst, t[i].src, t[i].n, err);
        if (rc != BG_OK)
            return rc;
    }
    return BG_OK;
}

static void unpack_weights(bg_nn_model *m)
{
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
        bg__nn_layer *y = &m->layers[l];
        bg_cpacked **pk[] = {&y->pk_qkv, &y->pk_o, &y->pk_13, &y->pk_2};
        for (size_t i = 0; i < sizeof pk / sizeof pk[0]; i++) {
            bg_cpacked_destroy(m->c, *pk[i]);
            *pk[i] = NULL;
        }
    }
    bg_cpacked_destroy(m->c, m->pk_cls);
    m->pk_cls = NULL;
}

/* The weights packed once for the backend's GEMM (bg_compute_pack), where
 * it packs them: on a backend that packs none, or a model whose products
 * exceed what it packs (BG_EUNAVAIL), or with BG_NN_NO_PACK set (the
 * benchmarks' baseline), none is packed and every product packs per call
 * as before: same bits, more time. Other errors (memory) fail the load. */
static int pack_weights(bg_nn_model *m, bg_err *err)
{
    const bg_nn_config *c = &m->cfg;
    const char *off = getenv("BG_NN_NO_PACK");
    if (off && *off && strcmp(off, "0") != 0)
        return BG_OK;
    int d = c->dim, h = c->hidden_dim, kv = bg_nn_kv_dim(c), rc = BG_OK;
    for (int l = 0; l < c->n_layers && rc == BG_OK; l++) {
        bg__nn_layer *y = &m->layers[l];
        bg_tview qkv[] = {at(y->wq, 0), at(y->wk, 0), at(y->wv, 0)}, o = at(y->wo, 0);
        bg_tview up[] = {at(y->w1, 0), at(y->w3, 0)}, down = at(y->w2, 0);
        int nqkv[] = {d, kv, kv}, nup[] = {h, h};
        rc = bg_compute_pack(m->c, qkv, nqkv, 3, d, &y->pk_qkv, err);
        if (rc == BG_OK)
            rc = bg_compute_pack(m->c, &o, &d, 1, d, &y->pk_o, err);
        if (rc == BG_OK)
            rc = bg_compute_pack(m->c, up, nup, 2, d, &y->pk_13, err);
        if (rc == BG_OK)
            rc = bg_compute_pack(m->c, &down, &d, 1, h, &y->pk_2, err);
    }
    bg_tview cls = at(m->wcls, 0);
    if (rc == BG_OK)
        rc = bg_compute_pack(m->c, &cls, &c->vocab_size, 1, d, &m->pk_cls, err);
    if (rc != BG_OK)
        unpack_weights(m);
    if (rc == BG_EUNAVAIL) {
        bg_err_clear(err);
        return BG_OK;
    }
    return rc;
}

void bg__nn_matmul(bg_compute *c, const bg_cpacked *pk, bg_tview out, bg_tview x, bg_cbuf *w, int T,
                   int N, int K)
{
    if (pk)
        bg_op_matmul_packed(c, &out, x, pk, T);
    else
        bg_op_matmul(c, out, x, at(w, 0), T, N, K);
}

void bg__nn_matmul_add(bg_compute *c, const bg_cpacked *pk, bg_tview y, bg_tview x, bg_cbuf *w,
                       bg_tview tmp, int T, int N, int K)
{
    if (pk) {
        bg_op_matmul_packed_add(c, &y, x, pk, T);
    } else {
        bg_op_matmul(c, tmp, x, at(w, 0), T, N, K);
        bg_compute_barrier(c);
        bg_op_add(c, y, tmp, T * N);
    }
    bg_compute_barrier(c);
}

void bg__nn_qkv(bg_compute *c, const bg_nn_model *m, int l, bg_tview q, bg_tview k, bg_tview v,
                bg_tview x, int T)
{
    const bg__nn_layer *y = &m->layers[l];
    int d = m->cfg.dim, kv = bg_nn_kv_dim(&m->cfg);
    bg_tview out[] = {q, k, v};
    if (y->pk_qkv) {
        bg_op_matmul_packed(c, out, x, y->pk_qkv, T);
        return;
    }
    bg_op_matmul(c, q, x, at(y->wq, 0), T, d, d);
    bg_op_matmul(c, k, x, at(y->wk, 0), T, kv, d);
    bg_op_matmul(c, v, x, at(y->wv, 0), T, kv, d);
}

void bg__nn_ffn_up(bg_compute *c, const bg_nn_model *m, int l, bg_tview h1, bg_tview h3, bg_tview x,
                   int T)
{
    const bg__nn_layer *y = &m->layers[l];
    int d = m->cfg.dim, h = m->cfg.hidden_dim;
    bg_tview out[] = {h1, h3};
    if (y->pk_13) {
        bg_op_matmul_packed(c, out, x, y->pk_13, T);
        return;
    }
    bg_op_matmul(c, h1, x, at(y->w1, 0), T, h, d);
    bg_op_matmul(c, h3, x, at(y->w3, 0), T, h, d);
}

int bg_nn_model_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts, bg_nn_model **out,
                       bg_err *err)
{
    *out = NULL;
    bg_nn_model *m = calloc(1, sizeof *m);
    if (!m)
        return bg_err_set(err, BG_ENOMEM, "model: out of memory");
    m->cfg = ck->cfg;
    const bg_nn_config *c = &m->cfg;
    m->max_T = c->seq_len < MAX_CHUNK ? c->seq_len : MAX_CHUNK;
    bg_compute_opts o = backend_for(c, copts);
    int rc = bg_compute_create(&o, &m->c, err);
    if (rc != BG_OK)
        goto fail;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->held = malloc((size_t)c->seq_len * sizeof *m->held);
    if (!m->layers || !m->held) {
        rc = bg_err_set(err, BG_ENOMEM, "model: out of memory");
        goto fail;
    }
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size, T = (size_t)m->max_T;
    rc = upload(m, &m->tok_emb, ck->w.tok_emb, V * d, err);
    if (rc == BG_OK)
        rc = upload(m, &m->rms_final, ck->w.rms_final, d, err);
    if (rc == BG_OK && !c->shared_classifier)
        rc = upload(m, &m->wcls, ck->w.wcls, V * d, err);
    m->wcls = c->shared_classifier ? m->tok_emb : m->wcls;
    for (int l = 0; l < c->n_layers && rc == BG_OK; l++)
        rc = upload_layer(m, &ck->w, l, err);
    struct {
        bg_cbuf **dst;
        size_t n;
    } act[] = {
        {&m->x, T * d},
        {&m->xb, T * d},
        {&m->xb2, T * d},
        {&m->q, T * d},
        {&m->hb, T * (size_t)c->hidden_dim},
        {&m->hb2, T * (size_t)c->hidden_dim},
        {&m->logits, T * V},
        {&m->tokens, T},
        {&m->targets, T},
        {&m->lp, T},
    };
    for (size_t i = 0; i < sizeof act / sizeof act[0] && rc == BG_OK; i++)
        rc = upload(m, act[i].dst, NULL, act[i].n, err);
    if (rc == BG_OK)
        rc = pack_weights(m, err);
    if (rc != BG_OK)
        goto fail;
    *out = m;
    return BG_OK;
fail:
    bg_err_prefix(err, "model: ");
    bg_nn_model_destroy(m);
    return rc;
}

int bg_nn_model_load(const char *path, const bg_compute_opts *copts, bg_nn_model **out, bg_err *err)
{
    bg_nn_ckpt ck;
    int rc = bg_nn_ckpt_open(&ck, path, err);
    if (rc != BG_OK)
        return rc;
    rc = bg_nn_model_create(&ck, copts, out, err);
    bg_nn_ckpt_close(&ck);
    return rc;
}

void bg_nn_model_destroy(bg_nn_model *m)
{
    if (!m)
        return;
    if (m->c)
        unpack_weights(m);
    free(m->layers);
    free(m->held);
    free(m->batch);
    bg_compute_destroy(m->c); /* frees every buffer */
    free(m);
}

const bg_nn_config *bg_nn_model_config(const bg_nn_model *m)
{
    return &m->cfg;
}

const char *bg_nn_model_backend(const bg_nn_model *m)
{
    return bg_compute_describe(m->c);
}

/* Records one chunk of T <= max_T tokens at pos. gather: logsoftmax of
 * every row at its target; else logits of the last row when want_logits.
 * pattn: attention through bg_op_attention_prefix (cache rows 0..pos as
 * the prefix, the chunk's own rows as the tail; see held_prefix). */
static void record_chunk(bg_nn_model *m, int T, int pos, int want_logits, int gather, int pattn)
{
    bg_compute *c = m->c;
    const bg_nn_config *p = &m->cfg;
    int d = p->dim, hd = p->hidden_dim, kv = bg_nn_kv_dim(p), hs = bg_nn_head_size(p);
    bg_tview x = at(m->x, 0), xb = at(m->xb, 0), xb2 = at(m->xb2, 0), q = at(m->q, 0);
    bg_tview hb = at(m->hb, 0), hb2 = at(m->hb2, 0);

    /* x[t] = embedding of tokens[t] */
    bg_op_embed(c, x, at(m->tok_emb, 0), at(m->tokens, 0), T, d);
    bg_compute_barrier(c);
    for (int l = 0; l < p->n_layers; l++) {
        bg__nn_layer *y = &m->layers[l];
        bg_tview kpos = at(y->kc, (size_t)pos * kv), vpos = at(y->vc, (size_t)pos * kv);
        /* attention block: xb = rmsnorm(x); q, k, v projections (k, v into the cache) */
        bg_op_rmsnorm(c, xb, x, at(y->rms_att, 0), T, d, BG_NN_RMS_EPS);
        bg_compute_barrier(c);
        bg__nn_qkv(c, m, l, q, kpos, vpos, xb, T);
        bg_compute_barrier(c);
        bg_op_rope(c, q, kpos, T, pos, p->n_heads, p->n_kv_heads, hs);
        bg_compute_barrier(c);
        /* causal attention over cache rows 0..pos+t; grouped K/V heads */
        if (pattn)
            bg_op_attention_prefix(c, xb, q, at(y->kc, 0), at(y->vc, 0), pos, kpos, vpos, T, 0,
                                   p->n_heads, p->n_kv_heads, hs, T);
        else
            bg_op_attention(c, xb, q, at(y->kc, 0), at(y->vc, 0), T, pos, p->n_heads, p->n_kv_heads,
                            hs, p->seq_len);
        bg_compute_barrier(c);
        bg__nn_matmul_add(c, y->pk_o, x, xb, y->wo, xb2, T, d, d); /* x += wo . xb */
        /* FFN block: x += w2 · (silu(w1 · xb) * (w3 · xb)), xb = rmsnorm(x) */
        bg_op_rmsnorm(c, xb, x, at(y->rms_ffn, 0), T, d, BG_NN_RMS_EPS);
        bg_compute_barrier(c);
        bg__nn_ffn_up(c, m, l, hb, hb2, xb, T);
        bg_compute_barrier(c);
        bg_op_swiglu(c, hb, hb2, T * hd);
        bg_compute_barrier(c);
        bg__nn_matmul_add(c, y->pk_2, x, hb, y->w2, xb2, T, d, hd);
    }
    if (gather) {
        /* every row: final norm, classifier, log-softmax at the target */
        bg_op_rmsnorm(c, xb, x, at(m->rms_final, 0), T, d, BG_NN_RMS_EPS);
        bg_compute_barrier(c);
        bg__nn_matmul(c, m->pk_cls, at(m->logits, 0), xb, m->wcls, T, p->vocab_size, d);
        bg_compute_barrier(c);
        bg_op_logsoftmax_gather(c, at(m->lp, 0), at(m->logits, 0), at(m->targets, 0), T,
                                p->vocab_size);
    } else if (want_logits) {
        /* last row only */
        bg_op_rmsnorm(c, xb, at(m->x, (size_t)(T - 1) * d), at(m->rms_final, 0), 1, d,
                      BG_NN_RMS_EPS);
        bg_compute_barrier(c);
        bg__nn_matmul(c, m->pk_cls, at(m->logits, 0), xb, m->wcls, 1, p->vocab_size, d);
    }
}

int bg__nn_check_ids(const bg_nn_model *m, const int32_t *ids, int n, const char *what, bg_err *err)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return bg_err_set(err, BG_EINVAL,
                              "%s: token id %d at index %d out of range; the vocabulary is 0..%d",
                              what, (int)ids[i], i, m->cfg.vocab_size - 1);
    return BG_OK;
}

/* Runs tokens[0..T) at pos in chunks. targets != NULL: lp[t] = log p(targets[t]).
 * pattn: see record_chunk. */
static int run(bg_nn_model *m, const int32_t *tokens, const int32_t *targets, int T, int pos,
               float *logits, float *lp, int pattn, bg_err *err)
{
    if (T <= 0 || pos < 0 || pos > m->cfg.seq_len - T)
        return bg_err_set(err, BG_EINVAL,
                          "forward: %d tokens at position %d do not fit the context of %d", T, pos,
                          m->cfg.seq_len);
    int rc = bg__nn_check_ids(m, tokens, T, "forward", err);
    if (rc == BG_OK && targets)
        rc = bg__nn_check_ids(m, targets, T, "forward targets", err);
    int known = m->n_held >= pos; /* held[0..pos) stays what the cache holds */
    if (m->n_held > pos)
        m->n_held = pos; /* positions >= pos are about to be overwritten */
    for (int done = 0; rc == BG_OK && done < T;) {
        int n = T - done < m->max_T ? T - done : m->max_T;
        int last = done + n == T;
        rc = bg_cbuf_write(m->c, m->tokens, 0, tokens + done, sizeof(int32_t) * (size_t)n, err);
        if (rc == BG_OK && targets)
            rc = bg_cbuf_write(m->c, m->targets, 0, targets + done, sizeof(int32_t) * (size_t)n,
                               err);
        if (rc == BG_OK)
            rc = bg_compute_begin(m->c, err);
        if (rc != BG_OK)
            break;
        record_chunk(m, n, pos + done, last && logits, targets != NULL, pattn);
        rc = bg_compute_submit(m->c, err);
        if (rc == BG_OK && targets)
            rc = bg_cbuf_read(m->c, m->lp, 0, lp + done, sizeof(float) * (size_t)n, err);
        if (rc == BG_OK && last && logits && !targets)
            rc = bg_cbuf_read(m->c, m->logits, 0, logits, sizeof(float) * (size_t)m->cfg.vocab_size,
                              err);
        done += n;
    }
    if (rc == BG_OK && known && pos > 0 && m->held_prefix != pattn)
        m->n_held = 0; /* rows of both kinds: none a hold may reuse */
    else if (rc == BG_OK && known) {
        memcpy(m->held + pos, tokens, sizeof(int32_t) * (size_t)T);
        m->n_held = pos + T;
        m->held_prefix = pattn;
    }
    return rc;
}

int bg__nn_hold(bg_nn_model *m, const int32_t *tokens, int n, bg_err *err)
{
    int pattn = bg_compute_has_attention_prefix(m->c), l = 0;
    while (m->held_prefix == pattn && l < m->n_held && l < n && m->held[l] == tokens[l])
        l++;
    if (l == n)
        return BG_OK;
    return run(m, tokens + l, NULL, n - l, l, NULL, NULL, pattn, err);
}

int bg_nn_forward(bg_nn_model *m, const int32_t *tokens, int T, int pos, float *logits, bg_err *err)
{
    if (!m || !tokens)
        return bg_err_set(err, BG_EINVAL, "forward: NULL argument");
    return run(m, tokens, NULL, T, pos, logits, NULL, 0, err);
}

int bg_nn_score(bg_nn_model *m, const int32_t *prefix, int n_prefix, const int32_t *const *conts,
                const int *lens, int n, double *out, bg_err *err)
{
    if (!m || !prefix || (n > 0 && (!conts || !lens || !out)) || n < 0)
        return bg_err_set(err, BG_EINVAL, "score: NULL argument or negative count");
    if (n_prefix < 1)
        return bg_err_set(err, BG_EINVAL, "score: the prefix needs at least one token (BOS)");
    int maxlen = 0;
    for (int i = 0; i < n; i++) {
        if (!conts[i])
            return bg_err_set(err, BG_EINVAL, "score: continuation %d is NULL", i);
        if (lens[i] < 1 || lens[i] > m->cfg.seq_len - n_prefix)
            return bg_err_set(err, BG_EINVAL,
                              "score: continuation %d has %d tokens; expected 1..%d (context %d, "
                              "prefix %d)",
                              i, lens[i], m->cfg.seq_len - n_prefix, m->cfg.seq_len, n_prefix);
        maxlen = lens[i] > maxlen ? lens[i] : maxlen;
    }
    int rc = bg__nn_check_ids(m, prefix, n_prefix, "score prefix", err);
    for (int i = 0; i < n && rc == BG_OK; i++)
        rc = bg__nn_check_ids(m, conts[i], lens[i], "score continuation", err);
    if (rc != BG_OK)
        return rc;
    /* the prefix but its last token once; each continuation then feeds
     * [last prefix token, c0 .. c(L-2)] and gathers targets [c0 .. c(L-1)] */
    if (n_prefix > 1) {
        rc = run(m, prefix, NULL, n_prefix - 1, 0, NULL, NULL, 0, err);
        if (rc != BG_OK)
            return rc;
    }
    int32_t *in = malloc(sizeof(int32_t) * (size_t)(maxlen > 0 ? maxlen : 1));
    float *lp = malloc(sizeof(float) * (size_t)(maxlen > 0 ? maxlen : 1));
    if (!in || !lp) {
        free(in);
        free(lp);
        return bg_err_set(err, BG_ENOMEM, "score: out of memory");
    }
    for (int i = 0; i < n && rc == BG_OK; i++) {
        in[0] = prefix[n_prefix - 1];
        memcpy(in + 1, conts[i], sizeof(int32_t) * (size_t)(lens[i] - 1));
        rc = run(m, in, conts[i], lens[i], n_prefix - 1, NULL, lp, 0, err);
        double s = 0.0;
        for (int t = 0; rc == BG_OK && t < lens[i]; t++)
            s += lp[t];
        out[i] = s;
    }
    free(in);
    free(lp);
    return rc;
}
