/*
 * lmgfn.h — a language model fine-tuned as a GFlowNet (seed 2: Hu et al.,
 * "Amortizing intractable inference in large language models"), on the
 * training API of lib/nn (docs/GFLOWNET.md, "LM GFlowNet").
 *
 * The policy q is the base model with LoRA adapters; the reward model is
 * the same weights with the adapters off (one copy in memory, nn.h). A
 * trajectory is a prompt followed by generated tokens z_1..z_n and the
 * task's termination token ⊤; every prefix s_i = z_1..z_i with
 * min_len <= i may terminate, s_max_len must. The task gives log R(s_i ⊤)
 * for every prefix (bg_lmgfn_reward_fn; bg_lmgfn_lm_logr computes the LM's
 * own log p_base(z_1..z_i ⊤ | prompt) for all prefixes of a batch in one
 * forward).
 *
 * Pieces, one file each:
 *   lmgfn_loss.c    modified SubTB (λ-weighted, every prefix terminable) and
 *                   TB over arrays of log-probabilities: loss and d/d log q
 *   lmgfn_replay.c  the replay buffer: top-k by log R, near-duplicates by
 *                   token edit distance rejected, softmax-prioritised draws
 *   lmgfn_train.c   sampling (mask, length rules, temperature), the behaviour
 *                   mixture, reward annealing, one optimiser step
 *   lmgfn_rng.c     the random-integer task (paper §2) end to end
 *   lmgfn_theory.c  the latent-theory task: Z ∝ p_LM(X Z Y) against the
 *                   exact posterior of an enumerable space, vs the base
 *                   model and token-sequence MH
 *
 * Threads: a bg_lmgfn (like its trainer) is used by one thread at a time.
 * Ownership: pointers are borrowed for the call unless said; a bg_lmgfn
 * owns its nn trainer (bg_lmgfn_trainer lends it).
 */
#ifndef BG_LMGFN_H
#define BG_LMGFN_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"
#include "nn/nn.h"

#define BG_LMGFN_MAX_LEN 64       /* generated tokens, ⊤ excluded */
#define BG_LMGFN_MAX_BATCH 1024   /* trajectories per step */
#define BG_LMGFN_MASK_LOGIT -1e4f /* what a masked token's logit gets */

/* ---- the objectives over arrays (lmgfn_loss.c) -----------------------------
 * One trajectory: n generated tokens; for i = 0..n
 *   lq_stop[i] = log q(⊤ | s_i), logr[i] = log R(s_i ⊤) (already divided by
 *   the reward temperature), term[i] = 1 if s_i may terminate;
 * for i = 0..n-1 lq_add[i] = log q(z_{i+1} | s_i).
 * A batch is n_traj such trajectories stored at off[k] (each array of a
 * trajectory has n+1 slots; lq_add's last slot is unused). */
typedef struct bg_lmgfn_batch {
    int n_traj;
    const int *len, *off;
    const double *lq_add, *lq_stop, *logr;
    const unsigned char *term;
} bg_lmgfn_batch;

/* Modified SubTB: with F_i = logr[i] - lq_stop[i] on terminable states and
 * F_0 = log_z when s_0 is not terminable, A_i = Σ_{k<i} lq_add[k],
 *   L = Σ_traj Σ_{i<j, both endpoints} λ^{j-i-1} (A_j - F_j - A_i + F_i)²
 *       / Σ_traj Σ_{i<j} λ^{j-i-1}.
 * Writes dL/d lq_add, dL/d lq_stop (same layout) and dL/d log_z. */
double bg_lmgfn_loss_subtb(const bg_lmgfn_batch *b, double lambda, double log_z, double *g_add,
                           double *g_stop, double *g_log_z);
/* TB: L = mean_traj (log_z + Σ_k lq_add[k] + lq_stop[n] - logr[n])². */
double bg_lmgfn_loss_tb(const bg_lmgfn_batch *b, double log_z, double *g_add, double *g_stop,
                        double *g_log_z);

/* ---- the replay buffer (lmgfn_replay.c) ------------------------------------ */

typedef struct bg_lmgfn_item {
    int32_t z[BG_LMGFN_MAX_LEN];
    int n;
    double logr[BG_LMGFN_MAX_LEN + 1]; /* raw log R(s_i ⊤) for i = 0..n */
    uint64_t version;                  /* the reward's version when computed */
} bg_lmgfn_item;

typedef struct bg_lmgfn_replay {
    bg_lmgfn_item *items; /* owned, cap slots */
    int cap, n;
    int min_dist; /* an item within this edit distance of a kept one is a near-duplicate */
} bg_lmgfn_replay;

int bg_lmgfn_replay_init(bg_lmgfn_replay *r, int cap, int min_dist, bg_err *err);
void bg_lmgfn_replay_close(bg_lmgfn_replay *r);
/* Offers an item (its final log R is logr[n]): a near-duplicate of a kept
 * item replaces it only when better, a full buffer drops its worst when the
 * new item beats it. Returns 1 if kept. */
int bg_lmgfn_replay_add(bg_lmgfn_replay *r, const bg_lmgfn_item *it);
/* Index drawn with probability softmax(logr[n] / temp) over the items;
 * u uniform in [0, 1). -1 when empty. */
int bg_lmgfn_replay_draw(const bg_lmgfn_replay *r, double temp, double u);
/* Levenshtein distance of two token strings (n <= BG_LMGFN_MAX_LEN). */
int bg_lmgfn_edit_distance(const int32_t *a, int na, const int32_t *b, int nb);

/* ---- the trainer (lmgfn_train.c) ------------------------------------------- */

typedef enum { BG_LMGFN_SUBTB = 0, BG_LMGFN_TB = 1 } bg_lmgfn_objective;

typedef struct bg_lmgfn bg_lmgfn;

/* log R(s_i ⊤) for i = 0..n[j] of each of k trajectories z[j][0..n[j])
 * into logr[j*(max_len+1) + i] (one call per batch, so an LM reward is one
 * forward: bg_lmgfn_lm_logr through g); ctx is the task's. */
typedef int (*bg_lmgfn_reward_fn)(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n,
                                  int k, double *logr, bg_err *err);

typedef struct bg_lmgfn_opts {
    const int32_t *prompt; /* copied; >= 1 token (usually BOS first) */
    int n_prompt;
    int stop_token;             /* ⊤ */
    int min_len, max_len;       /* generated tokens before ⊤: min_len <= n <= max_len */
    const unsigned char *legal; /* [vocab] 1 = may be generated (⊤ implied); NULL: all */
    int batch;                  /* trajectories per step; the nn trainer has 2*batch rows */
    bg_lmgfn_objective objective;
    double lambda;                 /* SubTB window decay λ */
    double p_replay;               /* share of steps whose batch is drawn from the replay buffer */
    double p_tempered;             /* share of on-policy steps sampled at T ~ U(temp_lo, temp_hi) */
    double temp_lo, temp_hi;       /* the paper: 0.5, 2 */
    double rtemp_start, rtemp_end; /* reward temperature β: log R / β, linear in the step */
    int rtemp_steps;               /* steps over which β goes from start to end */
    int replay_cap, replay_min_dist;
    double lr_log_z; /* Adam step size of log Z (SubTB with min_len > 0, and TB) */
    uint64_t seed;
    bg_lmgfn_reward_fn reward;
    void *reward_ctx;
} bg_lmgfn_opts;

typedef struct bg_lmgfn_stats {
    double loss, log_z, rtemp, mean_logr;
    int from_replay; /* 1: the step's batch came from the replay buffer */
    double temp;     /* the behaviour temperature (1 on-policy, 0 replay) */
} bg_lmgfn_stats;

/* Creates the nn trainer on ck's weights (ck may be closed afterwards)
 * from `to` (lora_rank >= 1; batch and seq are set here: 2 * o->batch rows
 * of n_prompt + max_len tokens) and sets its logit bias from o->legal.
 * new: destroy with bg_lmgfn_destroy (which destroys the trainer). */
int bg_lmgfn_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts, const bg_nn_train_opts *to,
                    const bg_lmgfn_opts *o, bg_lmgfn **out, bg_err *err);
void bg_lmgfn_destroy(bg_lmgfn *g);
bg_nn_trainer *bg_lmgfn_trainer(bg_lmgfn *g);
double bg_lmgfn_log_z(const bg_lmgfn *g);
/* One step: a batch from the behaviour mixture, its rewards, the loss, one
 * AdamW step of the adapters and one Adam step of log Z. */
int bg_lmgfn_step(bg_lmgfn *g, bg_lmgfn_stats *st, bg_err *err);
/* The loss of o->batch given trajectories z[k][0..n[k]) with raw rewards
 * logr[k*(max_len+1) + i] (reward temperature 1) under the current policy,
 * and its gradient left in the nn trainer (bg_nn_train_grad_read) and in
 * *g_log_z (may be NULL). No update. For gradient checks. */
int bg_lmgfn_grad(bg_lmgfn *g, const int32_t *const *z, const int *n, const double *logr,
                  double *loss, double *g_log_z, bg_err *err);
/* Samples one trajectory from the current policy (adapters on, the mask and
 * length rules) at temperature temp; z[max_len], *n. */
int bg_lmgfn_sample(bg_lmgfn *g, double temp, int32_t *z, int *n, bg_err *err);
/* The LM reward for k trajectories (k <= batch), one forward of the base
 * model (adapters off, then back on): logr[j*(max_len+1) + i] =
 * log p_base(z_1..z_i ⊤ | prompt) for i <= n_j: the base's own
 * conditionals (with the vocabulary mask, without the length rules). */
int bg_lmgfn_lm_logr(bg_lmgfn *g, const int32_t *const *z, const int *n, int k, double *logr,
                     bg_err *err);
/* The log-probabilities the policy (adapters on) or the base (off) gives
 * one trajectory: lq_add[i] for i < n, lq_stop[i] for i <= n (the length
 * rules applied: lq_stop[max_len] = 0). */
int bg_lmgfn_logq(bg_lmgfn *g, int adapters, const int32_t *z, int n, double *lq_add,
                  double *lq_stop, bg_err *err);
const bg_lmgfn_replay *bg_lmgfn_replay_of(const bg_lmgfn *g);
/* A reward that moves (a sampler plugin's, bound to a session's data: plugin
 * ABI 1.2's versions): the version new replay items are stored at, 1 after
 * create. bg_lmgfn_set_version re-scores every replay item stored at
 * another version with o->reward (batches of at most o->batch trajectories)
 * and stores it at `version`, so the next steps replay and rank current
 * rewards only. On error g's version is unchanged and the items not yet
 * re-scored keep their old rewards and versions (a retry re-scores them). */
uint64_t bg_lmgfn_version(const bg_lmgfn *g);
int bg_lmgfn_set_version(bg_lmgfn *g, uint64_t version, bg_err *err);

/* ---- the random-integer task (lmgfn_rng.c) ---------------------------------
 * Character tokens (BG_LMGFN_RNG_VOCAB), prompt "BOS n =", valid = a decimal
 * integer 0..100 without a leading zero followed by ⊤ (newline). */
#define BG_LMGFN_RNG_VOCAB 16
#define BG_LMGFN_RNG_VALID 101

typedef struct bg_lmgfn_rng_opts {
    const char *model;   /* base checkpoint, or NULL: train one (written to out_dir) */
    const char *out_dir; /* where base.bin, gflownet.lora, sft.lora go; NULL: not written */
    bg_compute_opts copts;
    uint64_t seed;
    long samples;   /* per evaluated method */
    int base_steps; /* training of the base model from scratch */
    int steps;      /* GFlowNet steps = SFT steps (same budget) */
    int batch;      /* GFlowNet trajectories per step = SFT sequences per step */
    int lora_rank;
    float lr;
    int quiet; /* 1: no progress lines on stderr */
} bg_lmgfn_rng_opts;

typedef struct bg_lmgfn_rng_row {
    char method[32];
    double valid, kl, seconds; /* kl: of the valid samples' distribution vs uniform (nats) */
    long samples;
} bg_lmgfn_rng_row;

void bg_lmgfn_rng_defaults(bg_lmgfn_rng_opts *o);
/* Runs the task: base, base at the best temperature, sft, gflownet; rows[4]. */
int bg_lmgfn_rng_run(const bg_lmgfn_rng_opts *o, bg_lmgfn_rng_row rows[4], bg_err *err);
/* The task's reward (a bg_lmgfn_reward_fn; ctx unused). */
int bg_lmgfn_rng_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                        double *logr, bg_err *err);
/* Integer value of z if valid, else -1. */
int bg_lmgfn_rng_value(const int32_t *z, int n);

/* ---- the latent-theory task (lmgfn_theory.c) -------------------------------
 * X = an action's description (the prompt, BOS first), Z = an explanation
 * (the generated tokens), Y = the observed outcome. The termination token
 * ⊤ is Y's first token, so R(Z) = p_base(Z Y | X) = p_base(Z y_1 | X) ·
 * p_base(y_2..y_m | X Z y_1): the joint probability of explanation and
 * outcome given the action, the raw base model (no mask). The theory space
 * is every Z of min_len..max_len tokens from the legal list (⊤ = y_1 not in
 * it); on it the posterior is p(Z | X, Y) = R(Z) / Σ R. Index order: by
 * length, then lexicographic in the legal list's order. */
#define BG_LMGFN_THEORY_MAX_LEGAL 64
#define BG_LMGFN_THEORY_MAX_SPACE 200000 /* theories one run may enumerate */
#define BG_LMGFN_THEORY_MAX_TEXT 64      /* tokens of X, of Y */

typedef struct bg_lmgfn_theory_space {
    int32_t legal[BG_LMGFN_THEORY_MAX_LEGAL]; /* distinct token ids */
    int n_legal, min_len, max_len;
    long size; /* Σ_{n=min..max} n_legal^n */
} bg_lmgfn_theory_space;

/* Fails with a message naming what is wrong: no legal token, a repeated
 * one, lengths outside 0 <= min <= max <= BG_LMGFN_MAX_LEN, a space above
 * BG_LMGFN_THEORY_MAX_SPACE theories. */
int bg_lmgfn_theory_space_init(bg_lmgfn_theory_space *s, const int32_t *legal, int n_legal,
                               int min_len, int max_len, bg_err *err);
/* Theory idx (0 <= idx < size) into z[max_len], *n. */
void bg_lmgfn_theory_z(const bg_lmgfn_theory_space *s, long idx, int32_t *z, int *n);
/* The index of z[0..n), or -1 when it is not in the space. */
long bg_lmgfn_theory_index(const bg_lmgfn_theory_space *s, const int32_t *z, int n);
/* log R(Z) = log p_base(Z y_1..y_m | x) for every theory, into logr[size]:
 * rows x Z y through a scoring trainer on ck's weights (adapters off, no
 * logit bias: the base's inference ops) in batches of `rows` sequences.
 * nx + max_len + ny <= the model's seq_len; ids inside the vocabulary. */
int bg_lmgfn_theory_logr(const bg_nn_ckpt *ck, const bg_compute_opts *copts, const int32_t *x,
                         int nx, const int32_t *y, int ny, const bg_lmgfn_theory_space *s, int rows,
                         double *logr, bg_err *err);
/* The exact distribution a model gives the space when sampled as lmgfn
 * does (legal tokens and ⊤ only, ⊤ barred before min_len, forced at
 * max_len) at temperature temp: logq[size] = log q(Z ⊤ | x). t's current
 * adapters and logit bias are used as they are (the bias / temp of an
 * illegal token is irrelevant: only legal tokens and ⊤ are normalised
 * over). One bg_nn_train_logits per prefix shorter than max_len. */
int bg_lmgfn_theory_logq(bg_nn_trainer *t, const int32_t *x, int nx, int stop,
                         const bg_lmgfn_theory_space *s, double temp, double *logq, bg_err *err);
/* log-normalises a[n] in place (log-softmax); returns the log of the sum. */
double bg_lmgfn_theory_normalise(double *a, long n);
/* Total variation ½ Σ |p - q| of two log-distributions over n items. */
double bg_lmgfn_theory_tv(const double *logp, const double *logq, long n);
/* The same against counts[n] of samples (an empirical distribution). */
double bg_lmgfn_theory_tv_counts(const double *logp, const long *counts, long n);
/* The share of the k most probable theories under logp (ties: the lower
 * index) that occur at least once in counts. */
double bg_lmgfn_theory_recall(const double *logp, const long *counts, long n, int k);
/* Token-sequence Metropolis–Hastings on the space with target R = e^logr:
 * from a uniform random start, each step proposes — uniformly among the
 * moves the current length allows — a substitution of one position, an
 * insertion or a deletion (uniform position and legal token), accepted with
 * the Hastings ratio; one reward evaluation per step, `evals` steps. After
 * the first `burn` steps every thin-th state is counted into counts[size]
 * (zeroed first), thin = max(1, (evals - burn) / want); *kept = how many. */
void bg_lmgfn_theory_mh(const bg_lmgfn_theory_space *s, const double *logr, long evals, long burn,
                        long want, uint64_t seed, long *counts, long *kept);

typedef struct bg_lmgfn_theory_opts {
    const char *model;     /* a llama2.c checkpoint (required) */
    const char *out_dir;   /* where gflownet.lora goes; NULL: not written */
    const int32_t *x, *y;  /* the action (BOS first) and the outcome, >= 1 token each */
    int nx, ny;            /* <= BG_LMGFN_THEORY_MAX_TEXT */
    const int32_t *legal;  /* the theory vocabulary; NULL: the n_top likeliest next */
    int n_legal, n_top;    /* tokens after x by the base (ids < 3 and y_1 left out) */
    int min_len, max_len;  /* theory lengths */
    bg_compute_opts copts; /* the backend of the GFlowNet's trainer and the scorer */
    uint64_t seed;
    long samples; /* per method, for tv_emp and recall */
    int steps, batch, lora_rank;
    float lr;
    int quiet;
} bg_lmgfn_theory_opts;

typedef struct bg_lmgfn_theory_row {
    char method[32];
    double tv;     /* of the method's exact distribution; NAN where none (mh) */
    double tv_emp; /* of its `samples` samples' empirical distribution */
    double recall5, recall10;
    long evals; /* reward evaluations spent (training + sampling) */
    long samples;
    double seconds;
} bg_lmgfn_theory_row;

#define BG_LMGFN_THEORY_ROWS 5 /* exact, base, base T=…, mh, gflownet */

typedef struct bg_lmgfn_theory_result {
    bg_lmgfn_theory_row rows[BG_LMGFN_THEORY_ROWS];
    bg_lmgfn_theory_space space;
    double log_z;        /* log Σ_Z R(Z) over the space */
    double entropy;      /* of the posterior, nats (e^H: its effective number of theories) */
    double enum_seconds; /* the batched forwards of the enumeration */
    long top[10];        /* the ten likeliest theories (indices), best first */
    double top_p[10], top_q[10]; /* their posterior and GFlowNet probabilities */
} bg_lmgfn_theory_result;

void bg_lmgfn_theory_defaults(bg_lmgfn_theory_opts *o);
/* Runs the task: the enumeration and exact posterior, then the rows. */
int bg_lmgfn_theory_run(const bg_lmgfn_theory_opts *o, bg_lmgfn_theory_result *res, bg_err *err);

#endif
