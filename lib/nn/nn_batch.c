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
 *   3. Groups. The sorted items are cut into G groups of about equal rows;
 *      the first item of a group shares nothing with the group before it
 *      (its whole path is its own rows: a cut repeats the rows the two
 *      items had in common, so cuts go where they share few). A group needs
 *      nothing of another, so on a backend with lanes (the CPU,
 *      bg_compute_run_lanes) each group runs the whole pass on one thread
 *      with every op single-threaded: one wake-up of the pool per pass
 *      instead of one around each of ~150 small ops (dim 64: each op is
 *      microseconds of work). G is up to GROUPS_PER_LANE per thread, at
 *      least LANE_MIN_ROWS rows each. The threads claim groups one at a
 *      time (the caller too), so more groups per thread would let a busy
 *      host's paused thread hold back less, but each group repeats the
 *      rows its first item shares (and, before the weights were packed
 *      once at load, repacked every weight): at 4 per thread a 16-theory
 *      pass took ~10% more CPU, at 2 with packed weights 3-4%, and p50
 *      under load was no better, so one per thread. Elsewhere (Vulkan, one
 *      thread, a model wider than LANE_MAX_DIM, a pass of few rows) G = 1
 *      on the backend itself.
 *   4. Attention: an item's owned rows (queries at positions P + l ..)
 *      attend to the head and causally to its path. Where the backend has
 *      bg_op_attention_prefix (the CPU), the head is read straight from the
 *      layer's KV cache (H = 0 head rows per region) and the path is the
 *      tail: read in place from the batch's k/v rows when it is consecutive
 *      rows ("direct": a branch that shares nothing with the one before it,
 *      or extends it), else copied per layer into a K/V region of its own.
 *      Elsewhere (Vulkan) every owner gets a region [head P copied from the
 *      cache][its path] (H = P), the cache bg_op_attention expects. RoPE
 *      runs per owned run at its positions, or, with the model's packed
 *      weights, in the Q/K/V product's write-back at each row's position
 *      (the pass's `pos` buffer).
 *   5. Only what is read: every (row, target) pair an item needs (its
 *      positions n_prefix-1 .. L-1) is one "pair row" of the group's pair
 *      range. The last layer runs Q/K/V for every row (its K/V are the
 *      pair rows' keys), but attention, the output projection, the FFN,
 *      the final norm and the classifier only for the pair rows, compacted
 *      (a few rows per item instead of every row of its path), and
 *      logsoftmax_gather returns one float per pair. A run of pairs that
 *      asks for the same query rows as the run before it (two items that
 *      differ only in their last target) copies that run's attention.
 *   A pass holds at most `rows` trie rows, `regions` K/V region rows and
 *   `rows` pairs (both >= seq_len, so one item always fits); items past
 *   that go to the next pass (sorted order kept, the trie restarted).
 *
 * Results do not depend on the lane count beyond float summation order: a
 * row's value is the same computation whichever group runs it, but a GEMM
 * of fewer rows may block differently (test_nn_batch: 1, 2 and 3 threads,
 * each item within 1e-4 nats of bg_nn_score).
 *
 * Invariants: items are validated before anything runs; a pass's rows,
 * regions and pairs stay within the batch buffers (asserted); groups own
 * disjoint row, region and pair ranges and lane i only the logits slot i
 * (so lanes never write what another reads); the KV cache is written only
 * at positions < P (by bg__nn_hold), so m->held stays true. One thread at
 * a time, like the model (nn.h); the lanes are this call's.
 * Ownership: the batch buffers belong to the model's backend (freed with
 * it); the plan arrays are the call's.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "nn/nn_priv.h"

#define BATCH_ROWS 1024        /* trie rows (and gathered pairs) per pass, at least seq_len */
#define BATCH_REGIONS 8192     /* K/V region rows per pass, at least seq_len */
#define LANE_MAX_DIM 512       /* wider models keep the pool inside each op */
#define LANE_MIN_ROWS 48       /* rows per group below which a lane is not worth its wake-up */
#define GROUPS_PER_LANE 1      /* more: rows repeated at the cuts (2: +3-4% CPU, packed weights) */
#define LOGIT_FLOATS (1 << 20) /* per lane: the classifier's rows are chunked to fit */

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
    int g;         /* region's first row; direct: the path's first row in k/v */
    int direct;    /* 1: the path is consecutive rows of the batch, read in place (H == 0) */
} owner;

/* One group's ranges: owners [o0, o1), rows [r0, r1), pairs [j0, j1). */
typedef struct group {
    int o0, o1, r0, r1, j0, j1;
} group;

typedef struct plan {
    int P;
    int H; /* head rows copied into each region: P, or 0 when attention_prefix reads the cache */
    int n_rows, n_reg, n_pairs, n_own, n_grp;
    int32_t *tokens; /* [rows] the token of each trie row */
    int32_t *pos;    /* [rows] its position, P + depth */
    int *row_own;    /* [rows] the owner of each row */
    int *prow;       /* [regions] path rows of each region, at g + P + depth */
    owner *own;      /* [rows]: at most one owner per row */
    int *pair_row;   /* [rows] */
    int32_t *pair_tgt;
    int *pair_item; /* [rows] index into items[] */
    group *grp;     /* [lanes] */
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
    b->lanes = GROUPS_PER_LANE * bg_compute_lanes(m->c);
    if (c->dim > LANE_MAX_DIM || b->lanes < 2 * GROUPS_PER_LANE)
        b->lanes = 1; /* one group, run on the backend itself */
    if (b->lanes > BG__NN_MAX_LANES)
        b->lanes = BG__NN_MAX_LANES;
    b->lchunk = LOGIT_FLOATS / c->vocab_size;
    b->lchunk = b->lchunk < 1 ? 1 : b->lchunk > b->rows ? b->rows : b->lchunk;
    size_t R = (size_t)b->rows, d = (size_t)c->dim, kv = (size_t)bg_nn_kv_dim(c);
    size_t h = (size_t)c->hidden_dim, G = (size_t)b->regions;
    size_t L = (size_t)b->lanes * (size_t)b->lchunk * (size_t)c->vocab_size;
    struct {
        bg_cbuf **dst;
        size_t n;
    } t[] = {{&b->x, R * d},  {&b->xb, R * d},    {&b->xb2, R * d},   {&b->q, R * d},
             {&b->k, R * kv}, {&b->v, R * kv},    {&b->hb, R * h},    {&b->hb2, R * h},
             {&b->tokens, R}, {&b->kreg, G * kv}, {&b->vreg, G * kv}, {&b->targets, R},
             {&b->lp, R},     {&b->cat, R * d},   {&b->cres, R * d},  {&b->cx, R * d},
             {&b->ch, R * h}, {&b->ch2, R * h},   {&b->logits, L},    {&b->pos, R}};
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

/* Plans one pass from sorted seqs [k0, n_seq) in at most G groups of about
 * `target` rows each: returns the first seq not in it. A group is cut
 * before an item once it holds `target` rows, where that item shares at
 * most a quarter of its path with the one before (so a cut repeats few
 * rows); the cut item's path is all its own. */
static int plan_pass(const bg__nn_batch *b, plan *p, const seq *s, int k0, int n_seq, int *path,
                     int G, int target)
{
    p->n_rows = p->n_reg = p->n_pairs = p->n_own = 0;
    p->n_grp = 1;
    p->grp[0] = (group){0, 0, 0, 0, 0, 0};
    int k = k0;
    for (; k < n_seq; k++) {
        const seq *q = &s[k];
        int D = q->len - p->P;
        int l = k > k0 ? lcp_depth(&s[k - 1], q) : 0;
        group *g = &p->grp[p->n_grp - 1];
        int cut = p->n_grp < G && k > k0 && p->n_rows - g->r0 >= target && 4 * l <= D;
        if (cut)
            l = 0;
        int direct = p->H == 0 &&
                     (l == 0 || (path[l - 1] == p->n_rows - 1 && path[0] + l - 1 == path[l - 1]));
        int owned = D - l, reg = owned > 0 && !direct ? p->H + D : 0;
        if (k > k0 && (p->n_rows + owned > b->rows || p->n_reg + reg > b->regions ||
                       p->n_pairs + q->it->n_cont > b->rows))
            break;
        if (cut) {
            *g = (group){g->o0, p->n_own, g->r0, p->n_rows, g->j0, p->n_pairs};
            p->grp[p->n_grp++] = (group){p->n_own, 0, p->n_rows, 0, p->n_pairs, 0};
        }
        for (int d = l; d < D; d++) {
            path[d] = p->n_rows + d - l;
            p->tokens[path[d]] = tok_at(q->it, p->P + d);
            p->pos[path[d]] = p->P + d;
            p->row_own[path[d]] = p->n_own;
        }
        if (owned > 0) {
            p->own[p->n_own++] =
                (owner){p->n_rows, owned, l, D, direct ? path[0] : p->n_reg, direct};
            if (!direct)
                memcpy(p->prow + p->n_reg + p->H, path, (size_t)D * sizeof *path);
            p->n_rows += owned;
            p->n_reg += reg;
        }
        for (int t = q->it->n_prefix - 1; t < q->len; t++) {
            p->pair_row[p->n_pairs] = path[t - p->P];
            p->pair_tgt[p->n_pairs] = tok_at(q->it, t + 1);
            p->pair_item[p->n_pairs++] = q->idx;
        }
    }
    group *g = &p->grp[p->n_grp - 1];
    *g = (group){g->o0, p->n_own, g->r0, p->n_rows, g->j0, p->n_pairs};
    BG_ASSERT(p->n_rows <= b->rows && p->n_reg <= b->regions && p->n_pairs <= b->rows,
              "score batch: a pass outgrew its buffers");
    return k;
}

/* The layer's front, over the group's rows: xb = rmsnorm(x); q, k, v;
 * RoPE of each owner's rows at their positions P + l ..; each owner's
 * region: the cached head, then its path's rows in runs. */
static void record_front(bg_compute *c, const bg_nn_model *m, const plan *p, const group *g, int l)
{
    const bg_nn_config *cf = &m->cfg;
    const bg__nn_batch *b = m->batch;
    const bg__nn_layer *y = &m->layers[l];
    int R = g->r1 - g->r0, d = cf->dim, kv = bg_nn_kv_dim(cf);
    int hs = bg_nn_head_size(cf), nh = cf->n_heads, nkv = cf->n_kv_heads;
    size_t rd = (size_t)g->r0 * d, rkv = (size_t)g->r0 * kv;
    bg_op_rmsnorm(c, at(b->xb, rd), at(b->x, rd), at(y->rms_att, 0), R, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    if (y->pk_qkv) { /* RoPE in the product's write-back, each row at its position */
        bg_tview out[] = {at(b->q, rd), at(b->k, rkv), at(b->v, rkv)};
        bg_op_matmul_packed_rope(c, out, at(b->xb, rd), y->pk_qkv, R, at(b->pos, (size_t)g->r0), nh,
                                 nkv, hs);
    } else {
        bg__nn_qkv(c, m, l, at(b->q, rd), at(b->k, rkv), at(b->v, rkv), at(b->xb, rd), R);
        bg_compute_barrier(c);
        for (int i = g->o0; i < g->o1; i++) {
            const owner *o = &p->own[i];
            bg_op_rope(c, at(b->q, (size_t)o->r0 * d), at(b->k, (size_t)o->r0 * kv), o->owned,
                       p->P + o->l, nh, nkv, hs);
        }
    }
    bg_compute_barrier(c);
    for (int i = g->o0; i < g->o1; i++) {
        const owner *o = &p->own[i];
        if (o->direct)
            continue;
        if (p->H > 0) {
            bg_op_copy(c, at(b->kreg, (size_t)o->g * kv), at(y->kc, 0), p->H * kv);
            bg_op_copy(c, at(b->vreg, (size_t)o->g * kv), at(y->vc, 0), p->H * kv);
        }
        const int *path = p->prow + o->g + p->H;
        for (int d0 = 0; d0 < o->depth;) {
            int d1 = d0 + 1;
            while (d1 < o->depth && path[d1] == path[d1 - 1] + 1)
                d1++;
            size_t dst = (size_t)(o->g + p->H + d0) * kv, src = (size_t)path[d0] * kv;
            bg_op_copy(c, at(b->kreg, dst), at(b->k, src), (d1 - d0) * kv);
            bg_op_copy(c, at(b->vreg, dst), at(b->v, src), (d1 - d0) * kv);
            d0 = d1;
        }
    }
    bg_compute_barrier(c);
}

/* Attention of n queries (q, out at row offsets qr, orow) of owner o, the
 * first at depth dep of its path: over its region (the head copied in,
 * then its path) with bg_op_attention, or with bg_op_attention_prefix over
 * the head straight from the layer's cache and the path alone. */
static void attend(bg_compute *c, const bg_nn_model *m, const plan *p, const owner *o, int l,
                   bg_cbuf *out, size_t orow, size_t qr, int n, int dep)
{
    const bg_nn_config *cf = &m->cfg;
    const bg__nn_batch *b = m->batch;
    const bg__nn_layer *y = &m->layers[l];
    int d = cf->dim, kv = bg_nn_kv_dim(cf), hs = bg_nn_head_size(cf);
    bg_tview kr = at(o->direct ? b->k : b->kreg, (size_t)o->g * kv);
    bg_tview vr = at(o->direct ? b->v : b->vreg, (size_t)o->g * kv);
    if (p->H == p->P)
        bg_op_attention(c, at(out, orow * d), at(b->q, qr * d), kr, vr, n, p->P + dep, cf->n_heads,
                        cf->n_kv_heads, hs, p->P + o->depth);
    else
        bg_op_attention_prefix(c, at(out, orow * d), at(b->q, qr * d), at(y->kc, 0), at(y->vc, 0),
                               p->P, kr, vr, n, dep, cf->n_heads, cf->n_kv_heads, hs, o->depth);
}

/* x += w2 · (silu(w1 · rmsnorm(x)) * (w3 · rmsnorm(x))) over n rows at
 * offset r of x, using xb, h1, h2 as scratch at the same rows; att is the
 * attention output: x += wo · att first. */
static void record_back(bg_compute *c, const bg_nn_model *m, int l, bg_cbuf *x, bg_cbuf *att,
                        bg_cbuf *xb, bg_cbuf *h1, bg_cbuf *h2, int r, int n)
{
    const bg_nn_config *cf = &m->cfg;
    const bg__nn_layer *y = &m->layers[l];
    int d = cf->dim, hd = cf->hidden_dim;
    size_t rd = (size_t)r * d, rh = (size_t)r * hd;
    /* x += wo . att (the residual) */
    bg__nn_matmul_add(c, y->pk_o, at(x, rd), at(att, rd), y->wo, at(xb, rd), n, d, d);
    bg_op_rmsnorm(c, at(xb, rd), at(x, rd), at(y->rms_ffn, 0), n, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    bg__nn_ffn_up(c, m, l, at(h1, rh), at(h2, rh), at(xb, rd), n);
    bg_compute_barrier(c);
    bg_op_swiglu(c, at(h1, rh), at(h2, rh), n * hd);
    bg_compute_barrier(c);
    bg__nn_matmul_add(c, y->pk_2, at(x, rd), at(h1, rh), y->w2, at(xb, rd), n, d, hd);
}

/* A layer but the last, over the group's rows: attention per owner into
 * xb (its norm was read by the projections), then the rest. */
static void record_layer(bg_compute *c, const bg_nn_model *m, const plan *p, const group *g, int l)
{
    const bg__nn_batch *b = m->batch;
    record_front(c, m, p, g, l);
    for (int i = g->o0; i < g->o1; i++) {
        const owner *o = &p->own[i];
        attend(c, m, p, o, l, b->xb, (size_t)o->r0, (size_t)o->r0, o->owned, o->l);
    }
    bg_compute_barrier(c);
    record_back(c, m, l, b->x, b->xb, b->xb2, b->hb, b->hb2, g->r0, g->r1 - g->r0);
}

/* The run of pairs from j: consecutive rows of one owner, [j, *e); returns
 * its first row. *dup: the run before it is the same rows (two items that
 * differ only in their last target: "harm" and "safe" after one theory),
 * so its attention is copied, not computed again. */
static int pair_run(const plan *p, const group *g, int j, int *e, int *dup)
{
    int r = p->pair_row[j], k = j + 1;
    while (k < g->j1 && p->pair_row[k] == p->pair_row[k - 1] + 1 &&
           p->row_own[p->pair_row[k]] == p->row_own[r])
        k++;
    *e = k;
    *dup = 0;
    if (j > g->j0) { /* the run before ends at j - 1: as long, the same first row? */
        int n = k - j, s = j - n;
        *dup = s >= g->j0 && p->pair_row[s] == r && p->pair_row[j - 1] == r + n - 1 &&
               (s == g->j0 || p->pair_row[s - 1] != r - 1 ||
                p->row_own[p->pair_row[s - 1]] != p->row_own[r]);
    }
    return r;
}

/* The last layer and the classifier, only for the group's pair rows
 * (compacted: pair j at row j of cat/cres/cx/ch/ch2): Q/K/V and the
 * regions for every row (the pairs' keys), attention for each pair's query
 * in runs of consecutive rows of one owner, the rest on the compact rows,
 * then lp[j] = log_softmax(wcls · rmsnorm(x_j))[target_j], lchunk pairs at
 * a time through logits slot `slot`. */
static void record_last(bg_compute *c, const bg_nn_model *m, const plan *p, const group *g,
                        int slot)
{
    const bg_nn_config *cf = &m->cfg;
    const bg__nn_batch *b = m->batch;
    int l = cf->n_layers - 1, d = cf->dim, V = cf->vocab_size;
    int n = g->j1 - g->j0;
    record_front(c, m, p, g, l);
    for (int j = g->j0, e, dup; j < g->j1; j = e) {
        int r = pair_run(p, g, j, &e, &dup);
        const owner *o = &p->own[p->row_own[r]];
        if (!dup)
            attend(c, m, p, o, l, b->cat, (size_t)j, (size_t)r, e - j, o->l + (r - o->r0));
        bg_op_copy(c, at(b->cres, (size_t)j * d), at(b->x, (size_t)r * d), (e - j) * d);
    }
    bg_compute_barrier(c);
    for (int j = g->j0, e, dup, src = g->j0; j < g->j1; j = e) {
        pair_run(p, g, j, &e, &dup);
        if (dup) /* the same rows as the last run computed (src): its attention */
            bg_op_copy(c, at(b->cat, (size_t)j * d), at(b->cat, (size_t)src * d), (e - j) * d);
        else
            src = j;
    }
    bg_compute_barrier(c);
    record_back(c, m, l, b->cres, b->cat, b->cx, b->ch, b->ch2, g->j0, n);
    bg_op_rmsnorm(c, at(b->cx, (size_t)g->j0 * d), at(b->cres, (size_t)g->j0 * d),
                  at(m->rms_final, 0), n, d, BG_NN_RMS_EPS);
    bg_compute_barrier(c);
    size_t lg = (size_t)slot * (size_t)b->lchunk * (size_t)V;
    for (int j0 = g->j0; j0 < g->j1; j0 += b->lchunk) {
        int cnt = g->j1 - j0 < b->lchunk ? g->j1 - j0 : b->lchunk;
        bg__nn_matmul(c, m->pk_cls, at(b->logits, lg), at(b->cx, (size_t)j0 * d), m->wcls, cnt, V,
                      d);
        bg_compute_barrier(c);
        bg_op_logsoftmax_gather(c, at(b->lp, (size_t)j0), at(b->logits, lg),
                                at(b->targets, (size_t)j0), cnt, V);
        bg_compute_barrier(c);
    }
}

/* The whole pass of group g on compute c (a lane, or the backend). */
static void record_group(bg_compute *c, const bg_nn_model *m, const plan *p, int gi)
{
    const group *g = &p->grp[gi];
    const bg__nn_batch *b = m->batch;
    int d = m->cfg.dim;
    if (g->r1 == g->r0) /* no rows: every item repeats an earlier one of the pass */
        return;
    bg_op_embed(c, at(b->x, (size_t)g->r0 * d), at(m->tok_emb, 0), at(b->tokens, (size_t)g->r0),
                g->r1 - g->r0, d);
    bg_compute_barrier(c);
    for (int l = 0; l + 1 < m->cfg.n_layers; l++)
        record_layer(c, m, p, g, l);
    record_last(c, m, p, g, gi);
}

typedef struct lane_ctx {
    const bg_nn_model *m;
    const plan *p;
    int rc[BG__NN_MAX_LANES];
    bg_err err[BG__NN_MAX_LANES];
} lane_ctx;

static void lane_run(bg_compute *lane, void *v, int i)
{
    lane_ctx *x = v;
    x->rc[i] = bg_compute_begin(lane, &x->err[i]);
    if (x->rc[i] != BG_OK)
        return;
    record_group(lane, x->m, x->p, i);
    x->rc[i] = bg_compute_submit(lane, &x->err[i]);
}

static int run_pass(bg_nn_model *m, const plan *p, float *lp, double *out, bg_err *err)
{
    bg_compute *c = m->c;
    const bg__nn_batch *b = m->batch;
    int rc = bg_cbuf_write(c, b->tokens, 0, p->tokens, sizeof(int32_t) * (size_t)p->n_rows, err);
    if (rc == BG_OK)
        rc = bg_cbuf_write(c, b->pos, 0, p->pos, sizeof(int32_t) * (size_t)p->n_rows, err);
    if (rc == BG_OK)
        rc =
            bg_cbuf_write(c, b->targets, 0, p->pair_tgt, sizeof(int32_t) * (size_t)p->n_pairs, err);
    if (rc == BG_OK && p->n_grp > 1) { /* one lane per group, every op inline */
        lane_ctx *x = calloc(1, sizeof *x);
        if (!x)
            return bg_err_set(err, BG_ENOMEM, "score batch: out of memory for the lanes");
        x->m = m;
        x->p = p;
        rc = bg_compute_run_lanes(c, p->n_grp, lane_run, x, err);
        for (int i = 0; rc == BG_OK && i < p->n_grp; i++)
            if ((rc = x->rc[i]) != BG_OK)
                *err = x->err[i];
        free(x);
    } else if (rc == BG_OK && (rc = bg_compute_begin(c, err)) == BG_OK) {
        record_group(c, m, p, 0);
        rc = bg_compute_submit(c, err);
    }
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
    plan p = {.P = P, .H = bg_compute_has_attention_prefix(m->c) ? 0 : P};
    p.tokens = malloc((size_t)b->rows * sizeof *p.tokens);
    p.pos = malloc((size_t)b->rows * sizeof *p.pos);
    p.row_own = malloc((size_t)b->rows * sizeof *p.row_own);
    p.prow = malloc((size_t)b->regions * sizeof *p.prow);
    p.own = malloc((size_t)b->rows * sizeof *p.own);
    p.pair_row = malloc((size_t)b->rows * sizeof *p.pair_row);
    p.pair_tgt = malloc((size_t)b->rows * sizeof *p.pair_tgt);
    p.pair_item = malloc((size_t)b->rows * sizeof *p.pair_item);
    p.grp = malloc((size_t)b->lanes * sizeof *p.grp);
    if (!s || !path || !lp || !p.tokens || !p.pos || !p.row_own || !p.prow || !p.own ||
        !p.pair_row || !p.pair_tgt || !p.pair_item || !p.grp)
        rc = bg_err_set(err, BG_ENOMEM, "score batch: out of memory for %d items", n);
    for (int i = 0; rc == BG_OK && i < n; i++) {
        s[i] = (seq){&items[i], i, items[i].n_prefix + items[i].n_cont - 1, P};
        out[i] = 0.0;
    }
    if (rc == BG_OK)
        qsort(s, (size_t)n, sizeof *s, cmp_seq);
    for (int k = 0; rc == BG_OK && k < n;) {
        /* 3. groups: the pass planned whole, then cut into lanes of its rows */
        int G = b->lanes;
        if (G > 1) {
            plan_pass(b, &p, s, k, n, path, 1, 0);
            int fit = p.n_rows / LANE_MIN_ROWS;
            G = fit < 1 ? 1 : fit < G ? fit : G;
        }
        k = plan_pass(b, &p, s, k, n, path, G, (p.n_rows + G - 1) / G);
        rc = run_pass(m, &p, lp, out, err);
    }
    free(p.grp);
    free(p.pair_item);
    free(p.pair_tgt);
    free(p.pair_row);
    free(p.own);
    free(p.prow);
    free(p.row_own);
    free(p.tokens);
    free(p.pos);
    free(lp);
    free(path);
    free(s);
    if (rc != BG_OK)
        bg_err_prefix(err, "score batch: ");
    return rc;
}
