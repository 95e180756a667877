/*
 * nn_priv.h — lib/nn's internals shared between its files: the inference
 * model (nn_model.c: load, forward; nn_batch.c: batched scoring over the
 * same weights and KV cache) and the trainer (nn_train.c: forward,
 * backward, step; nn_train_io.c: files). Nothing outside lib/nn includes
 * it.
 *
 * Ownership: a model owns its backend and every buffer of it (the batch
 * buffers too, created at the first bg_nn_score_batch); the trainer owns
 * its backend and every buffer below; params[] borrows the parameter
 * buffers (base weights or adapters) and owns the names only by value.
 */
#ifndef BG_NN_PRIV_H
#define BG_NN_PRIV_H

#include "nn/nn.h"

/* ---- the inference model (nn_model.c, nn_batch.c) ------------------------- */

typedef struct bg__nn_layer {
    bg_cbuf *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3;
    bg_cbuf *kc, *vc; /* [seq_len, kv_dim] */
    /* The same weights packed once for the CPU GEMM (bg_compute_pack):
     * wq|wk|wv, wo, w1|w3, w2; NULL where the backend packs none. */
    bg_cpacked *pk_qkv, *pk_o, *pk_13, *pk_2;
} bg__nn_layer;

/* Buffers of bg_nn_score_batch (nn_batch.c), [rows, width] unless said. */
#define BG__NN_MAX_LANES 64 /* groups of one pass (nn_batch.c): lanes beyond are not used */
typedef struct bg__nn_batch {
    int rows;    /* trie rows one pass may hold (>= seq_len) */
    int regions; /* K/V region rows one pass may hold (>= seq_len) */
    int lanes;   /* groups a pass may be cut into (compute lanes): 1..BG__NN_MAX_LANES */
    int lchunk;  /* pairs per classifier GEMM: [lchunk, vocab] logits per lane */
    bg_cbuf *x, *xb, *xb2, *q, *k, *v, *hb, *hb2, *tokens;
    bg_cbuf *pos;          /* [rows] int32: each trie row's position (RoPE in the packed Q/K/V) */
    bg_cbuf *kreg, *vreg;  /* [regions, kv_dim]: each sequence's prefix + path */
    bg_cbuf *targets, *lp; /* [rows]: one per gathered (row, target) pair */
    /* the last layer's compacted pair rows, [rows (pairs), width] */
    bg_cbuf *cat, *cres, *cx, *ch, *ch2;
    bg_cbuf *logits; /* [lanes, lchunk, vocab] */
} bg__nn_batch;

struct bg_nn_model {
    bg_nn_config cfg;
    bg_compute *c;
    bg_cbuf *tok_emb, *rms_final, *wcls;
    bg_cpacked *pk_cls; /* wcls packed, or NULL (see bg__nn_layer) */
    bg__nn_layer *layers;
    int max_T;
    /* activations, [max_T, width] */
    bg_cbuf *x, *xb, *xb2, *q, *hb, *hb2, *logits, *tokens, *targets, *lp;
    /* The tokens the KV cache holds at positions 0..n_held (every forward
     * keeps it; bg_nn_score_batch reuses it). */
    int32_t *held;
    int n_held;
    /* 1: the held rows ran their attention through bg_op_attention_prefix
     * (bg__nn_hold on a backend that has it: the kernel of the batch's
     * rows, so a row's bits do not depend on whether a batch's shared head
     * ends before or after it); 0: bg_op_attention (every other forward,
     * whose bits the training forward's attention_train matches). */
    int held_prefix;
    bg__nn_batch *batch; /* NULL until the first bg_nn_score_batch */
};

/* Token ids in range, else EINVAL naming `what` and the index. */
int bg__nn_check_ids(const bg_nn_model *m, const int32_t *ids, int n, const char *what,
                     bg_err *err);
/* Makes the KV cache hold tokens[0..n) (n >= 0), running only the part past
 * what it already holds (m->held). */
int bg__nn_hold(bg_nn_model *m, const int32_t *tokens, int n, bg_err *err);
/* The forward's products, recorded on c (the model's backend or a lane)
 * over T rows of x: through the packed weights where the model has them,
 * else bg_op_matmul per weight (the same bits either way). */
void bg__nn_qkv(bg_compute *c, const bg_nn_model *m, int l, bg_tview q, bg_tview k, bg_tview v,
                bg_tview x, int T);
void bg__nn_ffn_up(bg_compute *c, const bg_nn_model *m, int l, bg_tview h1, bg_tview h3, bg_tview x,
                   int T);
/* out = x . w^T for one weight: pk (may be NULL) is w packed. */
void bg__nn_matmul(bg_compute *c, const bg_cpacked *pk, bg_tview out, bg_tview x, bg_cbuf *w, int T,
                   int N, int K);
/* The residual: y += x . w^T, folded into the packed product where pk is
 * set, else through tmp (T x N floats) and bg_op_add (the same bits);
 * ends with a barrier. */
void bg__nn_matmul_add(bg_compute *c, const bg_cpacked *pk, bg_tview y, bg_tview x, bg_cbuf *w,
                       bg_tview tmp, int T, int N, int K);

/* ---- the trainer (nn_train.c, nn_train_io.c) ------------------------------- */

/* The seven projections of a layer, in llama2.c's file order of wq..w3
 * except that the FFN ones follow w1, w2, w3. */
enum { BG__PJ_Q, BG__PJ_K, BG__PJ_V, BG__PJ_O, BG__PJ_1, BG__PJ_2, BG__PJ_3, BG__N_PROJ };

typedef struct bg__tparam {
    char name[32];
    bg_cbuf *p;         /* borrowed: the tensor itself */
    bg_cbuf *g, *m, *v; /* gradient, AdamW moments */
    size_t n;           /* floats */
    float wd;           /* weight decay: opts' for matrices, 0 for norms */
} bg__tparam;

typedef struct bg__tlayer {
    bg_cbuf *rms_att, *rms_ffn, *w[BG__N_PROJ]; /* base */
    bg_cbuf *la[BG__N_PROJ], *lb[BG__N_PROJ];   /* LoRA A [r, in], B [out, r] */
    int g_rms_att, g_rms_ffn, g_w[BG__N_PROJ];  /* param index or -1 (frozen) */
    int g_la[BG__N_PROJ], g_lb[BG__N_PROJ];
} bg__tlayer;

/* Activations one layer keeps for its backward, [R, width] each. */
typedef struct bg__actset {
    bg_cbuf *xb, *q, *k, *v, *att, *lse, *xmid, *xb2, *h1, *h3, *ha;
    bg_cbuf *lt[BG__N_PROJ]; /* LoRA: A x, [R, r] */
} bg__actset;

struct bg_nn_trainer {
    bg_nn_config cfg;
    bg_nn_train_opts o;
    bg_compute *c;
    int B, T, R;  /* the recording's shape (R = B*T <= o.batch * o.seq) */
    int rank;     /* 0: full fine-tuning */
    float lscale; /* alpha / rank */
    int adapters_on;
    int step; /* AdamW steps taken */
    bg_cbuf *tok_emb, *rms_final, *wcls;
    int g_tok, g_rms_final, g_wcls;
    bg__tlayer *layers;
    bg__tparam *params;
    int np, np_cap;
    bg_cbuf **X;      /* [n_layers + 1] residual stream at each layer input, [R, d] */
    bg__actset *sets; /* n_layers sets, or one with recompute */
    int nsets;
    bg_cbuf *tmp, *u, *du, *dt, *dx, *dxb, *datt, *dq, *dk, *dv, *dha, *xf, *dxf;
    bg_cbuf *logits, *lp, *tokens, *targets, *weights, *gsq, *dnull;
    int lrows;          /* rows of logits (and lbias_buf): the chunk, <= o.batch * o.seq */
    bg_cbuf *lbias;     /* NULL (no bias), or lbias_buf */
    bg_cbuf *lbias_buf; /* the logit bias repeated on every row, [lrows, V] */
    bg_nn_train_mem mem;
};

/* Input and output width of projection p. */
void bg__nn_proj_dims(const bg_nn_config *c, int p, int *in, int *out);
/* nn_train.c, for nn_train_logits.c: the forward of the recording's B*T
 * rows (t->tokens) into t->X (adapters as set), recorded, not submitted;
 * and the vocabulary check of ids on the host. */
void bg__nn_train_forward(bg_nn_trainer *t);
int bg__nn_train_check_ids(const bg_nn_trainer *t, const int32_t *ids, int n, const char *what,
                           bg_err *err);

#endif
