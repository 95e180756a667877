/*
 * gfn_priv.h — what the files of lib/gfn share: the MLP, the loss
 * functions over log-q arrays, the replay buffer, the state encoding and
 * the instance layout. Not for other modules (tests use it to check
 * gradients and losses directly).
 *
 * Parameter vector layout (one contiguous double array, so Adam, gradient
 * clipping, finite differences and save/load see one thing):
 *   for each layer l = 0..L-1: W_l [out_l × in_l] row-major, then b_l [out_l];
 *   then log Z (one double, used by TB only).
 */
#ifndef BG_GFN_PRIV_H
#define BG_GFN_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "gfn.h"

#define BG__GFN_MAX_LAYERS (BG_GFN_MAX_HIDDEN_LAYERS + 1)

/* ---- MLP (gfn_mlp.c) --------------------------------------------------- */

typedef struct bg__gfn_mlp {
    uint32_t n_layers;                     /* hidden + 1 (output) */
    uint32_t size[BG__GFN_MAX_LAYERS + 1]; /* size[0] = inputs, size[L] = outputs */
    size_t w_off[BG__GFN_MAX_LAYERS];      /* offsets into the parameter vector */
    size_t b_off[BG__GFN_MAX_LAYERS];
    size_t n_params;      /* network parameters (log Z excluded) */
    size_t cache_per_row; /* doubles of forward cache per input row */
} bg__gfn_mlp;

void bg__gfn_mlp_init(bg__gfn_mlp *m, uint32_t n_in, uint32_t hidden, uint32_t n_hidden,
                      uint32_t n_out);
/* Fan-in scaled uniform init; the output layer starts near zero so the
 * first policy is close to uniform over valid actions. */
void bg__gfn_mlp_init_params(const bg__gfn_mlp *m, double *params, bg_rng *rng);
/* out [rows × n_out] = MLP(x [rows × n_in]). cache: rows × cache_per_row
 * doubles (pre-activations and activations, for backward), or NULL. */
void bg__gfn_mlp_forward(const bg__gfn_mlp *m, const double *params, size_t rows, const double *x,
                         double *cache, double *out);
/* grad += d loss / d params given dout [rows × n_out]; x and cache as
 * filled by the forward. scratch: 2 × rows × max(size) doubles. */
void bg__gfn_mlp_backward(const bg__gfn_mlp *m, const double *params, size_t rows, const double *x,
                          const double *cache, const double *dout, double *grad, double *scratch);
size_t bg__gfn_mlp_max_width(const bg__gfn_mlp *m);

/* ---- state encoding and masks (gfn_space.c) ---------------------------- */

/* A state: the features chosen so far, the largest of them (-1 for ∅), its size. */
typedef struct bg__gfn_state {
    uint64_t bits;
    int32_t last;
    uint32_t len;
} bg__gfn_state;

uint32_t bg__gfn_n_in(uint32_t d);
void bg__gfn_encode(uint32_t d, const bg__gfn_state *s, double *x);
/* valid[k] for k = 0..d (d = ⊤); returns the number of valid actions. */
uint32_t bg__gfn_valid(const bg_gfn_config *c, const bg__gfn_state *s, unsigned char *valid);
/* Masked log-softmax of one row of logits into logp (invalid: -inf). */
void bg__gfn_log_softmax(uint32_t n, const double *z, const unsigned char *valid, double *logp);
/* The t-th state on the unique path of id (t = 0..popcount). */
bg__gfn_state bg__gfn_prefix(uint64_t id, uint32_t t);
/* 1 when id is a hypothesis the config allows (bits < d, length masks). */
int bg__gfn_id_ok(const bg_gfn_config *c, uint64_t id);

/* ---- losses over log-q arrays (gfn_loss.c) ------------------------------ */

/* A batch of trajectories seen as arrays over their states: trajectory i
 * has len[i] add-actions and states off[i] .. off[i]+len[i]. For state t:
 * logq_add = log q(a_t | s_t) (unused at the last state), logq_stop =
 * log q(⊤ | s_t), logr = log R(s_t ⊤) / T_R (TB reads only the last),
 * term = 1 when s_t may stop. Gradients are written (not added) into
 * g_add / g_stop (same indexing). */
typedef struct bg__gfn_batch {
    size_t n_traj;
    const uint32_t *len;
    const size_t *off;
    const double *logq_add;
    const double *logq_stop;
    const double *logr;
    const unsigned char *term;
} bg__gfn_batch;

/* Trajectory balance: mean over trajectories of
 * (log Z + Σ_t logq_add + logq_stop[n] - logr[n])². */
double bg__gfn_loss_tb(const bg__gfn_batch *b, double log_z, double *g_add, double *g_stop,
                       double *g_log_z);
/* Modified SubTB: Σ over windows i < j of terminable states of
 * λ^(j-i-1) (C_j - C_i)² / Σ of the same weights over the batch, with
 * C_j - C_i = Σ_{t=i}^{j-1} δ_t (spec/gflownet.md). db != 0 keeps only
 * windows between consecutive terminable states (modified DB). */
double bg__gfn_loss_subtb(const bg__gfn_batch *b, double lambda, int db, double *g_add,
                          double *g_stop);

/* ---- replay buffer (gfn_replay.c) -------------------------------------- */

/* Top-k trajectories by final log-reward with the untempered log-rewards
 * of every prefix and the version of the reward they were computed at.
 * Exact duplicates are skipped; when full, a new entry replaces the worst
 * only if better. The ranking is meaningful only among entries of one
 * version: bg_gfn_train_at re-scores the others (gfn_train.c
 * refresh_replay) before it adds any. */
#define BG__GFN_VERSION_UNKNOWN UINT64_MAX /* loaded from a file: always stale */
typedef struct bg__gfn_replay {
    uint32_t cap, n, d;
    uint64_t *ids; /* [cap] */
    uint64_t *ver; /* [cap] reward version of each entry's log-rewards */
    double *logr;  /* [cap × (d+1)] prefix log-rewards */
} bg__gfn_replay;

int bg__gfn_replay_init(bg__gfn_replay *r, uint32_t cap, uint32_t d);
void bg__gfn_replay_close(bg__gfn_replay *r);
/* logr: len+1 prefix log-rewards of id, computed at reward version ver.
 * Returns 1 when stored. */
int bg__gfn_replay_add(bg__gfn_replay *r, uint64_t id, const double *logr, uint64_t ver);

/* ---- the instance (gfn_train.c, gfn_io.c) ------------------------------ */

struct bg_gfn {
    bg_gfn_config cfg;
    bg__gfn_mlp mlp;
    size_t n_params;         /* mlp.n_params + 1 (log Z last) */
    double *params;          /* [n_params] */
    double *adam_m, *adam_v; /* [n_params] */
    bg_rng rng;              /* training generator */
    bg_gfn_stats stats;
    bg__gfn_replay replay;
    uint64_t version; /* reward version of the last training call (0 first) */
};

/* Adam step over the whole vector (log Z with lr_logz); grad is clipped
 * to grad_clip first when set. t = step number starting at 1. */
void bg__gfn_adam_step(bg_gfn *g, double *grad, uint64_t t);

/* The training loss of exactly cfg.batch given trajectories, with their
 * untempered prefix log-rewards logr_raw (Σ (popcount+1) values, the states
 * of each trajectory in order; TB reads only each last one), at reward
 * temperature t_r; grad [n_params] receives d loss / d params (log Z last)
 * unless NULL. The instance is not changed. For the gradient tests. */
int bg__gfn_loss_eval(bg_gfn *g, const uint64_t *ids, const double *logr_raw, double t_r,
                      double *loss, double *grad);

#endif
