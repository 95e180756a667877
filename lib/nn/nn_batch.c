/*
 * nn_batch.c — bg_nn_score_batch: the log-probabilities of many
 * (prefix, continuation) items in one batched pass (nn.h).
 *
 * Why shaped so: bg_nn_score runs one sequence at a time, so a batch of n
 * prompts of R tokens each costs n forwards of R rows; a model as small as
 * stories260K is then bound by per-op cost, not by arithmetic. Here the n
 * token sequences become one batch of rows that every weight multiplies as
 * one GEMM, and only attention is per sequence.
 *
 * The plan (per call):
 *   1. Each item is the sequence s = prefix ++ cont without its last token
 *      (the tokens whose rows predict cont), L = n_prefix + n_cont - 1
 *      tokens. The head P every item shares (at most min n_prefix - 1, so
 *      every row whose logits are read lies past it) is kept in the model's
 *      KV cache (bg__nn_hold: only the part the cache does not hold yet
 *      runs).
 *   2. The items are sorted by their tokens past P: in that order they are
 *      a depth-first walk of the trie of the sequences, each item's new
 *      nodes are the tail of its path past its common prefix with the item
 *      before it, and they are contiguous rows of the batch. Each trie node
 *      is one row (one token at one position), run once.
 *   3. Attention: an item that owns rows gets a K/V region, rows
 *      [prefix P from the cache][its path's nodes], filled per layer by
 *      copies (runs of consecutive rows); its owned rows (queries at
 *      positions P + l ..) attend causally within the region, which is the
 *      cache bg_op_attention expects. RoPE runs per owned run at its
 *      positions.
 *   4. Every (row, target) pair an item needs (its positions n_prefix-1 ..
 *      L-1) goes through the final norm and the classifier in chunks of
 *      max_T rows, and logsoftmax_gather returns one float per pair.
 *   A pass holds at most `rows` trie rows, `regions` K/V region rows and
 *   `rows` pairs (both >= seq_len, so one item always fits); items past
 *   that go to the next pass (sorted order kept, the trie restarted).
 *
 * Invariants: items are validated before anything runs; a pass's rows,
 * regions and pairs stay within the batch buffers (asserted); the KV cache
 * is written only at positions < P (by bg__nn_hold), so m->held stays
 * true. One thread at a time, like the model (nn.h).
 * Ownership: the batch buffers belong to the model's backend (freed with
 * it); the plan arrays are the call's.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "nn/nn_priv.h"

#define BATCH_ROWS 1024    /* trie rows (and gathered pairs) per pass, at least seq_len */
#define BATCH_REGIONS 8192 /* K/V region rows per pass, at least seq_len */

typedef struct seq {
    const bg_nn_item *it;
    int idx;  /* its index in items[] */
    int len;  /* L: tokens that feed rows */
    int head; /* P, the same in every seq (cmp_seq reads it) */
} seq;

/* A sequence's owned rows in a pass and its K/V region. */
typedef struct owner {
    int r0, owned; /* rows r0 .. r0+owned: depths l .. l+owned */
    int l, depth;  /* first owned depth; path length D = L - P */
    int g;         /* region's first row */
} owner;

typedef struct plan {
    int P;
    int n_rows, n_reg, n_pairs, n_own;
    int32_t *tokens; /* [rows] the token of each trie row */
    int *prow;       /* [regions] path rows of each region, at g + P + depth */
    owner *own;      /* [rows]: at most one owner per row */
    int *pair_row;   /* [rows] */
    int32_t *pair_tgt;
    int *pair_item; /* [rows] index into items[] */
} plan;

static bg_tview at(bg_cbuf *b, size_t off)
{
    bg_tview v = {b, off};
    return v;
}

static int32_t tok_at(const bg_nn_item *it, int t)
{
    return t < it->n_prefix ? it->prefix[t] : it->cont[t - it->n_prefix];
}

/* Token order past the shared head; a sequence before its extensions; ties
 * by index (qsort is not stable, the plan must be deterministic). */
static int cmp_seq(const void *a, const void *b)
{
    const seq *x = a, *y = b;
    for (int t = x->head; t < x->len && t < y->len; t++) {
        int32_t u = tok_at(x->it, t), v = tok_at(y->it, t);
        if (u != v)
            return u < v ? -1 : 1;
    }
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Common tokens of two sequences past the head, in depths. */
static int lcp_depth(const seq *x, const seq *y)
{
    int t = x->head;
    while (t < x->len && t < y->len && tok_at(x->it, t) == tok_at(y->it, t))
        t++;
    return t - x->head;
}

static int check_items(const bg_nn_model *m, const bg_nn_item *items, int n, bg_err *err)
{
    int S = m->cfg.seq_len;
    for (int i = 0; i < n; i++) {
        const bg_nn_item *it = &items[i];
        if (!it->prefix || !it->cont)
            return bg_err_set(err, BG_EINVAL, "score batch: item %d has a NULL token array", i);
        if (it->n_prefix < 1 || it->n_cont < 1 || it->n_prefix > S - it->n_cont)
            return bg_err_set(err, BG_EINVAL,
                              "score batch: item %d has %d prefix + %d continuation tokens; "
                              "expected >= 1 each and at most %d in all (the context)",
                              i, it->n_prefix, it->n_cont, S);
        int rc = bg__nn_check_ids(m, it->prefix, it->n_prefix, "score batch prefix", err);
        if (rc == BG_OK)
            rc = bg__nn_check_ids(m, it->cont, it->n_cont, "score batch continuation", err);
        if (rc != BG_OK) {
            bg_err_prefix(err, "item %d: ", i);
            return rc;
        }
    }
    return BG_OK;
}

static int batch_create(bg_nn_model *m, bg_err *err)
{
    const bg_nn_config *c = &m->cfg;
    bg__nn_batch *b = calloc(1, sizeof *b);
    if (!b)
        return bg_err_set(err, BG_ENOMEM, "score batch: out of memory");
    b->rows = c->seq_len > BATCH_ROWS ? c->seq_len : BATCH_ROWS;
    b->regions = c->seq_len > BATCH_REGIONS ? c->seq_len : BATCH_REGIONS;
    size_t R = (size_t)b->rows, d = (size_t)c->dim, kv = (size_t)bg_nn_kv_dim(c);
    size_t h = (size_t)c->hidden_dim, G = (size_t)b->regions;
    struct {
        bg_cbuf **dst;
        size_t n;
    } t[] = {{&b->x, R * d},  {&b->xb, R * d},    {&b->xb2, R * d},   {&b->q, R * d},
             {&b->k, R * kv}, {&b->v, R * kv},    {&b->hb, R * h},    {&b->hb2, R * h},
             {&b->tokens, R}, {&b->kreg, G * kv}, {&b->vreg, G * kv}, {&b->targets, R},
             {&b->lp, R}};
    int rc = BG_OK;
    for (size_t i = 0; i < sizeof t / sizeof t[0] && rc == BG_OK; i++)
        rc = bg_cbuf_create(m->c, t[i].n * sizeof(float), t[i].dst, err);
    if (rc != BG_OK) { /* buffers made so far stay with the backend, freed with it */
        free(b);
        return rc;
    }
    m->batch = b;
    return BG_OK;
}

/* Plans one pass from sorted seqs [k0, n_seq): returns the first seq not
 * in it. */
static int plan_pass(const bg__nn_batch *b, plan *p, const seq *s, int k0, int n_seq, int *path)
{
    p->n_rows = p->n_reg = p->n_pairs = p->n_own = 0;
    int k = k0;
    for (; k < n_seq; k++) {
        const seq *q = &s[k];
        int D = q->len - p->P;
        int l = k > k0 ? lcp_depth(&s[k - 1], q) : 0;
        int owned = D - l, reg = owned > 0 ? p->P + D : 0;
        if (k > k0 && (p->n_rows + owned > b->rows || p->n_reg + reg > b->regions ||
                       p->n_pairs + q->it->n_cont > b->rows))
            break;
        for (int d = l; d < D; d++) {
            path[d] = p->n_rows + d - l;
            p->tokens[path[d]] = tok_at(q->it, p->P + d);
        }
        if (owned > 0) {
            p->own[p->n_own++] = (owner){p->n_rows, owned, l, D, p->n_reg};
            memcpy(p->prow + p->n_reg + p->P, path, (size_t)D * sizeof *path);
            p->n_rows += owned;
            p->n_reg += reg;
        }
        for (int t = q->it->n_prefix - 1; t < q->len; t++) {
            p->pair_row[p->n_pairs] = path[t - p->P];
            p->pair_tgt[p->n_pairs] = tok_at(q->it, t + 1);
            p->pair_item[p->n_pairs++] = q->idx;
        }
    }
    BG_ASSERT(p->n_rows <= b->rows && p->n_reg <= b->regions && p->n_pairs <= b->rows,
              "score batch: a pass outgrew its buffers");
    return k;
}

/* Per layer: q, k, v of every row; RoPE, K/V regions and attention per
 * owner; the output projection and the FFN over every row. */
static void record_layer(bg_nn_model *m, const plan *p, int l)
{
    bg_compute *c = m->c;
    const bg_nn_config *cf = &m->cfg;
    const bg__nn_batch *b = m->batch;
    const bg__nn_layer *y = &m->layers[l];
    int R = p->n_rows, d = cf->dim, hd = cf->hidden_dim, kv = bg_nn_kv_dim(cf);
    int hs = bg_nn_head_size(cf), nh = cf->n_heads, nkv = cf->n_kv_heads;
    /* xb = rmsnorm(x); q, k, v of every row */
    bg_op_rmsnorm(c, at(b->xb, 0), at(b->x, 0), at(y->rms_att, 0), R, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    bg_op_matmul(c, at(b->q, 0), at(b->xb, 0), at(y->wq, 0), R, d, d);
    bg_op_matmul(c, at(b->k, 0), at(b->xb, 0), at(y->wk, 0), R, kv, d);
    bg_op_matmul(c, at(b->v, 0), at(b->xb, 0), at(y->wv, 0), R, kv, d);
    bg_compute_barrier(c);
    /* RoPE of each owner's rows at their positions P + l .. */
    for (int i = 0; i < p->n_own; i++) {
        const owner *o = &p->own[i];
        bg_op_rope(c, at(b->q, (size_t)o->r0 * d), at(b->k, (size_t)o->r0 * kv), o->owned,
                   p->P + o->l, nh, nkv, hs);
    }
    bg_compute_barrier(c);
    /* each owner's region: the cached head, then its path's rows in runs */
    for (int i = 0; i < p->n_own; i++) {
        const owner *o = &p->own[i];
        if (p->P > 0) {
            bg_op_copy(c, at(b->kreg, (size_t)o->g * kv), at(y->kc, 0), p->P * kv);
            bg_op_copy(c, at(b->vreg, (size_t)o->g * kv), at(y->vc, 0), p->P * kv);
        }
        const int *path = p->prow + o->g + p->P;
        for (int d0 = 0; d0 < o->depth;) {
            int d1 = d0 + 1;
            while (d1 < o->depth && path[d1] == path[d1 - 1] + 1)
                d1++;
            size_t dst = (size_t)(o->g + p->P + d0) * kv, src = (size_t)path[d0] * kv;
            bg_op_copy(c, at(b->kreg, dst), at(b->k, src), (d1 - d0) * kv);
            bg_op_copy(c, at(b->vreg, dst), at(b->v, src), (d1 - d0) * kv);
            d0 = d1;
        }
    }
    bg_compute_barrier(c);
    for (int i = 0; i < p->n_own; i++) {
        const owner *o = &p->own[i];
        bg_op_attention(c, at(b->xb, (size_t)o->r0 * d), at(b->q, (size_t)o->r0 * d),
                        at(b->kreg, (size_t)o->g * kv), at(b->vreg, (size_t)o->g * kv), o->owned,
                        p->P + o->l, nh, nkv, hs, p->P + o->depth);
    }
    bg_compute_barrier(c);
    bg_op_matmul(c, at(b->xb2, 0), at(b->xb, 0), at(y->wo, 0), R, d, d);
    bg_compute_barrier(c);
    bg_op_add(c, at(b->x, 0), at(b->xb2, 0), R * d); /* residual */
    bg_compute_barrier(c);
    /* FFN: x += w2 · (silu(w1 · xb) * (w3 · xb)), xb = rmsnorm(x) */
    bg_op_rmsnorm(c, at(b->xb, 0), at(b->x, 0), at(y->rms_ffn, 0), R, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    bg_op_matmul(c, at(b->hb, 0), at(b->xb, 0), at(y->w1, 0), R, hd, d);
    bg_op_matmul(c, at(b->hb2, 0), at(b->xb, 0), at(y->w3, 0), R, hd, d);
    bg_compute_barrier(c);
    bg_op_swiglu(c, at(b->hb, 0), at(b->hb2, 0), R * hd);
    bg_compute_barrier(c);
    bg_op_matmul(c, at(b->xb2, 0), at(b->hb, 0), at(y->w2, 0), R, d, hd);
    bg_compute_barrier(c);
    bg_op_add(c, at(b->x, 0), at(b->xb2, 0), R * d);
    bg_compute_barrier(c);
}

/* The pairs through the final norm and the classifier, max_T at a time:
 * lp[j] = log_softmax(logits of pair_row[j])[pair_tgt[j]]. */
static void record_gather(bg_nn_model *m, const plan *p)
{
    bg_compute *c = m->c;
    const bg__nn_batch *b = m->batch;
    int d = m->cfg.dim, V = m->cfg.vocab_size;
    bg_op_rmsnorm(c, at(b->xb, 0), at(b->x, 0), at(m->rms_final, 0), p->n_rows, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    for (int j0 = 0; j0 < p->n_pairs; j0 += m->max_T) {
        int cnt = p->n_pairs - j0 < m->max_T ? p->n_pairs - j0 : m->max_T;
        for (int j = 0; j < cnt;) { /* runs of consecutive rows: one copy each */
            int e = j + 1;
            while (e < cnt && p->pair_row[j0 + e] == p->pair_row[j0 + e - 1] + 1)
                e++;
            bg_op_copy(c, at(m->xb, (size_t)j * d), at(b->xb, (size_t)p->pair_row[j0 + j] * d),
                       (e - j) * d);
            j = e;
        }
        bg_compute_barrier(c);
        bg_op_matmul(c, at(m->logits, 0), at(m->xb, 0), at(m->wcls, 0), cnt, V, d);
        bg_compute_barrier(c);
        bg_op_logsoftmax_gather(c, at(b->lp, (size_t)j0), at(m->logits, 0),
                                at(b->targets, (size_t)j0), cnt, V);
        bg_compute_barrier(c);
    }
}

static int run_pass(bg_nn_model *m, const plan *p, float *lp, double *out, bg_err *err)
{
    bg_compute *c = m->c;
    const bg__nn_batch *b = m->batch;
    int rc = bg_cbuf_write(c, b->tokens, 0, p->tokens, sizeof(int32_t) * (size_t)p->n_rows, err);
    if (rc == BG_OK)
        rc =
            bg_cbuf_write(c, b->targets, 0, p->pair_tgt, sizeof(int32_t) * (size_t)p->n_pairs, err);
    if (rc == BG_OK)
        rc = bg_compute_begin(c, err);
    if (rc != BG_OK)
        return rc;
    if (p->n_rows > 0) { /* no rows: every item repeats an earlier one of the pass */
        bg_op_embed(c, at(b->x, 0), at(m->tok_emb, 0), at(b->tokens, 0), p->n_rows, m->cfg.dim);
        bg_compute_barrier(c);
        for (int l = 0; l < m->cfg.n_layers; l++)
            record_layer(m, p, l);
        record_gather(m, p);
    }
    rc = bg_compute_submit(c, err);
    if (rc == BG_OK)
        rc = bg_cbuf_read(c, b->lp, 0, lp, sizeof(float) * (size_t)p->n_pairs, err);
    for (int j = 0; rc == BG_OK && j < p->n_pairs; j++)
        out[p->pair_item[j]] += lp[j];
    return rc;
}

int bg_nn_score_batch(bg_nn_model *m, const bg_nn_item *items, int n, double *out, bg_err *err)
{
    if (!m || n < 0 || (n > 0 && (!items || !out)))
        return bg_err_set(err, BG_EINVAL, "score batch: NULL argument or negative count");
    if (n == 0)
        return BG_OK;
    int rc = check_items(m, items, n, err);
    if (rc == BG_OK && !m->batch)
        rc = batch_create(m, err);
    if (rc != BG_OK)
        return rc;
    /* 1. the shared head P, kept in the KV cache */
    int P = items[0].n_prefix - 1;
    for (int i = 1; i < n; i++) {
        int lim = items[i].n_prefix - 1 < P ? items[i].n_prefix - 1 : P, t = 0;
        while (t < lim && items[i].prefix[t] == items[0].prefix[t])
            t++;
        P = t;
    }
    if (P > 0 && (rc = bg__nn_hold(m, items[0].prefix, P, err)) != BG_OK)
        return rc;
    /* 2. sorted sequences, then passes */
    const bg__nn_batch *b = m->batch;
    seq *s = malloc((size_t)n * sizeof *s);
    int *path = malloc((size_t)m->cfg.seq_len * sizeof *path);
    float *lp = malloc((size_t)b->rows * sizeof *lp);
    plan p = {.P = P};
    p.tokens = malloc((size_t)b->rows * sizeof *p.tokens);
    p.prow = malloc((size_t)b->regions * sizeof *p.prow);
    p.own = malloc((size_t)b->rows * sizeof *p.own);
    p.pair_row = malloc((size_t)b->rows * sizeof *p.pair_row);
    p.pair_tgt = malloc((size_t)b->rows * sizeof *p.pair_tgt);
    p.pair_item = malloc((size_t)b->rows * sizeof *p.pair_item);
    if (!s || !path || !lp || !p.tokens || !p.prow || !p.own || !p.pair_row || !p.pair_tgt ||
        !p.pair_item)
        rc = bg_err_set(err, BG_ENOMEM, "score batch: out of memory for %d items", n);
    for (int i = 0; rc == BG_OK && i < n; i++) {
        s[i] = (seq){&items[i], i, items[i].n_prefix + items[i].n_cont - 1, P};
        out[i] = 0.0;
    }
    if (rc == BG_OK)
        qsort(s, (size_t)n, sizeof *s, cmp_seq);
    for (int k = 0; rc == BG_OK && k < n;) {
        k = plan_pass(b, &p, s, k, n, path);
        rc = run_pass(m, &p, lp, out, err);
    }
    free(p.pair_item);
    free(p.pair_tgt);
    free(p.pair_row);
    free(p.own);
    free(p.prow);
    free(p.tokens);
    free(lp);
    free(path);
    free(s);
    if (rc != BG_OK)
        bg_err_prefix(err, "score batch: ");
    return rc;
}
