/*
 * lmgfn_train.c — the LM GFlowNet trainer: the behaviour mixture of the
 * paper's code, rewards, the loss through the nn trainer, log Z.
 *
 * The nn trainer runs 2B rows of T tokens (T >= prompt + max_len): row k
 * (k < B) is trajectory k with targets z_{i+1} at position P-1+i ("action
 * rows"), row B+k the same tokens with target ⊤ at every position P-1+i,
 * i <= n ("stop rows"). One forward thus gives log q(z_{i+1}|s_i) and
 * log q(⊤|s_i) for every prefix; with the adapters off the same forward is
 * the base model's (the LM reward, bg_lmgfn_lm_logr). A step is an eval
 * forward for the log-probabilities, the loss on the host
 * (lmgfn_loss.c), and one train step whose per-token weights are
 * -dL/d log q (nn.h: L = -Σ w lp), so the gradient is the loss's.
 *
 * Length rules: before min_len ⊤ is masked, so the policy there is
 * log q(a|s) - log(1 - q(⊤|s)) (and the stop row carries that term's
 * gradient); at max_len only ⊤ is legal, log q(⊤|s) = 0. Illegal tokens
 * get BG_LMGFN_MASK_LOGIT through the trainer's logit bias, in policy and
 * reward alike.
 *
 * Behaviour: with probability p_replay (once the buffer holds a batch) the
 * batch is drawn from the replay buffer by softmax(log R / β); otherwise
 * on-policy, and with probability p_tempered at one temperature
 * T ~ U(temp_lo, temp_hi) for the batch. The loss always uses the
 * untempered log q of the policy (off-policy training is allowed: the
 * balance conditions hold for any full-support behaviour).
 *
 * Threads: the owner's. Ownership: g owns its nn trainer.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmgfn/lmgfn.h"
#include "lmgfn/lmgfn_priv.h"

struct bg_lmgfn {
    bg_nn_trainer *t;
    bg_lmgfn_opts o;
    int32_t *prompt;
    int V, T, rows, S; /* vocab, tokens per row, 2B, max_len + 1 */
    bg_lmgfn_replay replay;
    uint64_t rng, version;
    double log_z, zm, zv;
    int step;
    int32_t *tok, *tgt, *z;                           /* [rows*T], [rows*T], [B*max_len] */
    float *w, *lp, *logits;                           /* [rows*T], [rows*T], [V] */
    int *n, *off;                                     /* [B] */
    double *logr, *lq_add, *lq_stop, *g_add, *g_stop; /* [B*S] */
    unsigned char *term;                              /* [B*S] */
};

double bg__lmgfn_unif(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int check_opts(const bg_nn_config *c, int seq, const bg_lmgfn_opts *o, bg_err *err)
{
    if (!o->prompt || o->n_prompt < 1)
        return bg_err_set(err, BG_EINVAL, "lmgfn: the prompt needs at least one token");
    if (o->max_len < 1 || o->max_len > BG_LMGFN_MAX_LEN || o->min_len < 0 ||
        o->min_len > o->max_len)
        return bg_err_set(err, BG_EINVAL, "lmgfn: lengths %d..%d; expected 0 <= min <= max <= %d",
                          o->min_len, o->max_len, BG_LMGFN_MAX_LEN);
    if (o->n_prompt + o->max_len > seq)
        return bg_err_set(err, BG_EINVAL,
                          "lmgfn: prompt %d + max_len %d tokens exceed the trainer's seq %d",
                          o->n_prompt, o->max_len, seq);
    if (o->stop_token < 0 || o->stop_token >= c->vocab_size)
        return bg_err_set(err, BG_EINVAL, "lmgfn: stop token %d outside the vocabulary of %d",
                          o->stop_token, c->vocab_size);
    for (int i = 0; i < o->n_prompt; i++)
        if (o->prompt[i] < 0 || o->prompt[i] >= c->vocab_size)
            return bg_err_set(err, BG_EINVAL, "lmgfn: prompt token %d is %d; vocabulary is %d", i,
                              o->prompt[i], c->vocab_size);
    if (!o->reward)
        return bg_err_set(err, BG_EINVAL, "lmgfn: no reward function");
    if (o->batch < 1 || o->batch > BG_LMGFN_MAX_BATCH)
        return bg_err_set(err, BG_EINVAL, "lmgfn: batch %d; expected 1..%d", o->batch,
                          BG_LMGFN_MAX_BATCH);
    if (!(o->lambda > 0) || !(o->temp_lo > 0) || o->temp_hi < o->temp_lo || !(o->rtemp_start > 0) ||
        !(o->rtemp_end > 0))
        return bg_err_set(err, BG_EINVAL,
                          "lmgfn: batch >= 1, lambda > 0, 0 < temp_lo <= temp_hi and positive "
                          "reward temperatures are required");
    return BG_OK;
}

int bg_lmgfn_create(const bg_nn_ckpt *ck, const bg_compute_opts *copts, const bg_nn_train_opts *to,
                    const bg_lmgfn_opts *o, bg_lmgfn **out, bg_err *err)
{
    *out = NULL;
    int rows = 2 * o->batch;
    int rc = check_opts(&ck->cfg, ck->cfg.seq_len, o, err);
    if (rc != BG_OK)
        return rc;
    if (to->lora_rank < 1)
        return bg_err_set(err, BG_EINVAL,
                          "lmgfn: lora_rank %d; the policy needs adapters (rank >= 1) so that "
                          "the base model stays the reward model",
                          to->lora_rank);
    bg_nn_train_opts tro = *to;
    tro.batch = rows;
    tro.seq = o->n_prompt + o->max_len;
    bg_nn_trainer *t;
    rc = bg_nn_train_create(ck, copts, &tro, &t, err);
    if (rc != BG_OK)
        return rc;
    const bg_nn_config *c = bg_nn_train_config(t);
    bg_lmgfn *g = calloc(1, sizeof *g);
    if (!g) {
        bg_nn_train_destroy(t);
        return bg_err_set(err, BG_ENOMEM, "lmgfn: out of memory");
    }
    g->t = t;
    g->o = *o;
    g->V = c->vocab_size;
    g->rows = rows;
    g->S = o->max_len + 1;
    g->rng = o->seed ^ 0x6c6d67666eull;
    g->version = 1;
    g->log_z = 0;
    int B = o->batch;
    g->T = o->n_prompt + o->max_len;
    g->prompt = malloc(sizeof(int32_t) * (size_t)o->n_prompt);
    g->o.prompt = g->prompt;
    g->o.legal = NULL;
    size_t RT = (size_t)rows * (size_t)g->T, BS = (size_t)B * (size_t)g->S;
    g->tok = calloc(RT, sizeof(int32_t));
    g->tgt = calloc(RT, sizeof(int32_t));
    g->w = calloc(RT, sizeof(float));
    g->lp = calloc(RT, sizeof(float));
    g->logits = calloc((size_t)g->V, sizeof(float));
    g->z = calloc((size_t)B * (size_t)o->max_len, sizeof(int32_t));
    g->n = calloc((size_t)B, sizeof(int));
    g->off = calloc((size_t)B, sizeof(int));
    g->logr = calloc(BS, sizeof(double));
    g->lq_add = calloc(BS, sizeof(double));
    g->lq_stop = calloc(BS, sizeof(double));
    g->g_add = calloc(BS, sizeof(double));
    g->g_stop = calloc(BS, sizeof(double));
    g->term = calloc(BS, 1);
    float *bias = calloc((size_t)g->V, sizeof(float));
    if (!g->prompt || !g->tok || !g->tgt || !g->w || !g->lp || !g->logits || !g->z || !g->n ||
        !g->off || !g->logr || !g->lq_add || !g->lq_stop || !g->g_add || !g->g_stop || !g->term ||
        !bias) {
        free(bias);
        bg_lmgfn_destroy(g);
        return bg_err_set(err, BG_ENOMEM, "lmgfn: out of memory");
    }
    memcpy(g->prompt, o->prompt, sizeof(int32_t) * (size_t)o->n_prompt);
    for (int k = 0; k < B; k++)
        g->off[k] = k * g->S;
    for (int j = 0; j < g->V; j++)
        bias[j] = (!o->legal || o->legal[j] || j == o->stop_token) ? 0.0f : BG_LMGFN_MASK_LOGIT;
    rc = bg_nn_train_set_logit_bias(t, bias, err);
    free(bias);
    if (rc == BG_OK)
        rc = bg_lmgfn_replay_init(&g->replay, o->replay_cap > 0 ? o->replay_cap : 1,
                                  o->replay_min_dist, err);
    if (rc != BG_OK) {
        bg_lmgfn_destroy(g);
        return rc;
    }
    *out = g;
    return BG_OK;
}

void bg_lmgfn_destroy(bg_lmgfn *g)
{
    if (!g)
        return;
    bg_lmgfn_replay_close(&g->replay);
    bg_nn_train_destroy(g->t);
    free(g->prompt);
    free(g->tok);
    free(g->tgt);
    free(g->w);
    free(g->lp);
    free(g->logits);
    free(g->z);
    free(g->n);
    free(g->off);
    free(g->logr);
    free(g->lq_add);
    free(g->lq_stop);
    free(g->g_add);
    free(g->g_stop);
    free(g->term);
    free(g);
}

bg_nn_trainer *bg_lmgfn_trainer(bg_lmgfn *g)
{
    return g->t;
}

const bg_lmgfn_replay *bg_lmgfn_replay_of(const bg_lmgfn *g)
{
    return &g->replay;
}

int bg_lmgfn_sample(bg_lmgfn *g, double temp, int32_t *z, int *n, bg_err *err)
{
    int32_t seq[2 * BG_LMGFN_MAX_LEN + 512];
    int P = g->o.n_prompt, V = g->V;
    if (P + g->o.max_len > (int)(sizeof seq / sizeof seq[0]))
        return bg_err_set(err, BG_EINVAL, "lmgfn sample: prompt of %d tokens is too long", P);
    memcpy(seq, g->prompt, sizeof(int32_t) * (size_t)P);
    for (int i = 0;; i++) {
        if (i == g->o.max_len) {
            *n = i;
            return BG_OK;
        }
        int rc = bg_nn_train_logits(g->t, seq, P + i, g->logits, err);
        if (rc != BG_OK)
            return rc;
        if (i < g->o.min_len)
            g->logits[g->o.stop_token] = -INFINITY;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            if (g->logits[j] / temp > mx)
                mx = g->logits[j] / temp;
        for (int j = 0; j < V; j++)
            s += exp(g->logits[j] / temp - mx);
        double u = bg__lmgfn_unif(&g->rng) * s, acc = 0;
        int tok = V - 1;
        for (int j = 0; j < V; j++) {
            acc += exp(g->logits[j] / temp - mx);
            if (u < acc) {
                tok = j;
                break;
            }
        }
        if (tok == g->o.stop_token) {
            *n = i;
            return BG_OK;
        }
        z[i] = tok;
        seq[P + i] = tok;
    }
}

/* Fills the 2B rows for trajectories 0..k-1 (z[j] has n[j] tokens); rows of
 * absent trajectories repeat the prompt with weight 0. */
static void fill_rows(bg_lmgfn *g, const int32_t *const *z, const int *n, int k)
{
    int P = g->o.n_prompt, T = g->T, B = g->o.batch, stop = g->o.stop_token;
    for (int r = 0; r < g->rows; r++) {
        int j = r % B, nj = j < k ? n[j] : 0;
        int32_t *tk = g->tok + (size_t)r * T, *tg = g->tgt + (size_t)r * T;
        memcpy(tk, g->prompt, sizeof(int32_t) * (size_t)P);
        for (int i = 0; i < T - P; i++)
            tk[P + i] = i < nj ? z[j][i] : stop;
        for (int p = 0; p < T; p++) {
            int i = p - (P - 1); /* the prefix length this position predicts from */
            if (r < B)
                tg[p] = (i >= 0 && i < nj) ? z[j][i] : (p + 1 < T ? tk[p + 1] : stop);
            else
                tg[p] = i >= 0 ? stop : tk[p + 1];
            g->w[(size_t)r * T + p] = 0.0f;
        }
    }
}

/* Runs the eval forward with adapters on/off and extracts lq_add/lq_stop
 * and term for k trajectories into the [B*S] arrays; rules: apply the
 * length rules (the policy), else the model's raw conditionals (the LM
 * reward: log p_base of the string, whatever the sampler's rules). */
static int eval_lq(bg_lmgfn *g, int adapters, int rules, const int32_t *const *z, const int *n,
                   int k, bg_err *err)
{
    fill_rows(g, z, n, k);
    bg_nn_train_set_adapters(g->t, adapters);
    double loss;
    int rc = bg_nn_train_eval(g->t, g->tok, g->tgt, g->w, &loss, g->lp, err);
    bg_nn_train_set_adapters(g->t, 1);
    if (rc != BG_OK)
        return rc;
    int P = g->o.n_prompt, T = g->T, B = g->o.batch;
    for (int j = 0; j < k; j++) {
        int o = j * g->S;
        for (int i = 0; i <= n[j]; i++) {
            double ls = g->lp[(size_t)(B + j) * T + (P - 1 + i)];
            g->lq_stop[o + i] = rules && i == g->o.max_len ? 0.0 : ls;
            g->term[o + i] = i >= g->o.min_len;
            if (i < n[j]) {
                double la = g->lp[(size_t)j * T + (P - 1 + i)];
                if (rules && i < g->o.min_len) /* ⊤ masked here: renormalise */
                    la -= log1p(-exp(ls));
                g->lq_add[o + i] = la;
            } else {
                g->lq_add[o + i] = 0.0;
            }
        }
    }
    return BG_OK;
}

int bg_lmgfn_logq(bg_lmgfn *g, int adapters, const int32_t *z, int n, double *lq_add,
                  double *lq_stop, bg_err *err)
{
    if (n < 0 || n > g->o.max_len)
        return bg_err_set(err, BG_EINVAL, "lmgfn logq: %d tokens; max_len is %d", n, g->o.max_len);
    const int32_t *zz[1] = {z};
    int rc = eval_lq(g, adapters, 1, zz, &n, 1, err);
    for (int i = 0; rc == BG_OK && i <= n; i++) {
        if (i < n)
            lq_add[i] = g->lq_add[i];
        lq_stop[i] = g->lq_stop[i];
    }
    return rc;
}

int bg_lmgfn_lm_logr(bg_lmgfn *g, const int32_t *const *z, const int *n, int k, double *logr,
                     bg_err *err)
{
    if (k < 1 || k > g->o.batch)
        return bg_err_set(err, BG_EINVAL, "lmgfn lm reward: %d trajectories; expected 1..%d", k,
                          g->o.batch);
    int rc = eval_lq(g, 0, 0, z, n, k, err);
    for (int j = 0; rc == BG_OK && j < k; j++) {
        double A = 0;
        for (int i = 0; i <= n[j]; i++) {
            logr[j * g->S + i] = A + g->lq_stop[j * g->S + i];
            A += g->lq_add[j * g->S + i];
        }
    }
    return rc;
}

static double reward_temp(const bg_lmgfn *g)
{
    if (g->o.rtemp_steps <= 0 || g->step >= g->o.rtemp_steps)
        return g->o.rtemp_end;
    double f = (double)g->step / g->o.rtemp_steps;
    return g->o.rtemp_start + f * (g->o.rtemp_end - g->o.rtemp_start);
}

/* The step's batch: replayed or sampled (and then scored and offered). */
static int behaviour(bg_lmgfn *g, bg_lmgfn_stats *st, double beta, bg_err *err)
{
    int B = g->o.batch, L = g->o.max_len;
    st->from_replay = g->replay.n >= B && bg__lmgfn_unif(&g->rng) < g->o.p_replay;
    st->temp = 1.0;
    if (st->from_replay) {
        st->temp = 0.0;
        for (int k = 0; k < B; k++) {
            const bg_lmgfn_item *it =
                &g->replay.items[bg_lmgfn_replay_draw(&g->replay, beta, bg__lmgfn_unif(&g->rng))];
            memcpy(g->z + (size_t)k * L, it->z, sizeof(int32_t) * (size_t)it->n);
            g->n[k] = it->n;
            memcpy(g->logr + g->off[k], it->logr, sizeof(double) * (size_t)(it->n + 1));
        }
        return BG_OK;
    }
    if (bg__lmgfn_unif(&g->rng) < g->o.p_tempered)
        st->temp = g->o.temp_lo + bg__lmgfn_unif(&g->rng) * (g->o.temp_hi - g->o.temp_lo);
    const int32_t *zp[BG_LMGFN_MAX_BATCH];
    for (int k = 0; k < B; k++) {
        int rc = bg_lmgfn_sample(g, st->temp, g->z + (size_t)k * L, &g->n[k], err);
        if (rc != BG_OK)
            return rc;
        zp[k] = g->z + (size_t)k * L;
    }
    int rc = g->o.reward(g->o.reward_ctx, g, zp, g->n, B, g->logr, err);
    if (rc != BG_OK)
        return rc;
    for (int k = 0; k < B; k++) {
        for (int i = 0; i <= g->n[k]; i++)
            if (isnan(g->logr[g->off[k] + i]))
                return bg_err_set(err, BG_EINVAL,
                                  "lmgfn: the reward of trajectory %d, prefix %d is NaN", k, i);
        bg_lmgfn_item it;
        memset(&it, 0, sizeof it);
        memcpy(it.z, g->z + (size_t)k * L, sizeof(int32_t) * (size_t)g->n[k]);
        it.n = g->n[k];
        memcpy(it.logr, g->logr + g->off[k], sizeof(double) * (size_t)(g->n[k] + 1));
        it.version = g->version;
        bg_lmgfn_replay_add(&g->replay, &it);
    }
    return BG_OK;
}

/* For the B trajectories in g->z/g->n with raw rewards g->logr: the
 * log-probabilities (eval forward), the loss at reward temperature beta,
 * and the per-token weights -dL/d lp in g->w for the nn trainer. */
static int loss_weights(bg_lmgfn *g, double beta, double *loss, double *gz, double *mean_logr,
                        bg_err *err)
{
    int B = g->o.batch, L = g->o.max_len, T = g->T, P = g->o.n_prompt;
    const int32_t **zp = calloc((size_t)B, sizeof(int32_t *));
    double *scaled = malloc(sizeof(double) * (size_t)B * (size_t)g->S);
    if (!zp || !scaled) {
        free(zp);
        free(scaled);
        return bg_err_set(err, BG_ENOMEM, "lmgfn step: out of memory");
    }
    for (int k = 0; k < B; k++)
        zp[k] = g->z + (size_t)k * L;
    int rc = eval_lq(g, 1, 1, zp, g->n, B, err);
    if (rc == BG_OK) {
        double mr = 0;
        for (int k = 0; k < B; k++) {
            for (int i = 0; i <= g->n[k]; i++)
                scaled[g->off[k] + i] = g->logr[g->off[k] + i] / beta;
            mr += g->logr[g->off[k] + g->n[k]] / B;
        }
        bg_lmgfn_batch b = {.n_traj = B,
                            .len = g->n,
                            .off = g->off,
                            .lq_add = g->lq_add,
                            .lq_stop = g->lq_stop,
                            .logr = scaled,
                            .term = g->term};
        *loss = g->o.objective == BG_LMGFN_TB
                    ? bg_lmgfn_loss_tb(&b, g->log_z, g->g_add, g->g_stop, gz)
                    : bg_lmgfn_loss_subtb(&b, g->o.lambda, g->log_z, g->g_add, g->g_stop, gz);
        *mean_logr = mr;
        /* the weights: -dL/d lp on the rows the loss read (fill_rows zeroed the rest) */
        for (int k = 0; k < B; k++) {
            for (int i = 0; i <= g->n[k]; i++) {
                int o = g->off[k] + i;
                size_t pa = (size_t)k * T + (size_t)(P - 1 + i),
                       ps = (size_t)(B + k) * T + (size_t)(P - 1 + i);
                double ws = i == L ? 0.0 : -g->g_stop[o];
                if (i < g->n[k]) {
                    g->w[pa] = (float)-g->g_add[o];
                    if (i < g->o.min_len) { /* d/d ls of -log(1 - e^ls) = q⊤ / (1 - q⊤) */
                        double q = exp(g->lp[ps]);
                        ws += -g->g_add[o] * (q / (1.0 - q));
                    }
                }
                g->w[ps] = (float)ws;
            }
        }
    }
    free(zp);
    free(scaled);
    return rc;
}

int bg_lmgfn_step(bg_lmgfn *g, bg_lmgfn_stats *st, bg_err *err)
{
    bg_lmgfn_stats dummy;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    double beta = reward_temp(g), gz = 0;
    int rc = behaviour(g, st, beta, err);
    if (rc == BG_OK)
        rc = loss_weights(g, beta, &st->loss, &gz, &st->mean_logr, err);
    if (rc == BG_OK)
        rc = bg_nn_train_step(g->t, g->tok, g->tgt, g->w, NULL, err);
    if (rc == BG_OK) { /* Adam on log Z */
        g->step++;
        g->zm = 0.9 * g->zm + 0.1 * gz;
        g->zv = 0.999 * g->zv + 0.001 * gz * gz;
        double mh = g->zm / (1 - pow(0.9, g->step)), vh = g->zv / (1 - pow(0.999, g->step));
        g->log_z -= g->o.lr_log_z * mh / (sqrt(vh) + 1e-8);
    }
    st->rtemp = beta;
    st->log_z = g->log_z;
    return rc;
}

int bg_lmgfn_grad(bg_lmgfn *g, const int32_t *const *z, const int *n, const double *logr,
                  double *loss, double *g_log_z, bg_err *err)
{
    int B = g->o.batch, L = g->o.max_len;
    for (int k = 0; k < B; k++) {
        if (n[k] < 0 || n[k] > L)
            return bg_err_set(err, BG_EINVAL,
                              "lmgfn grad: trajectory %d has %d tokens; "
                              "expected 0..%d",
                              k, n[k], L);
        memcpy(g->z + (size_t)k * L, z[k], sizeof(int32_t) * (size_t)n[k]);
        g->n[k] = n[k];
        memcpy(g->logr + g->off[k], logr + (size_t)k * g->S, sizeof(double) * (size_t)(n[k] + 1));
    }
    double mr, gz = 0;
    int rc = loss_weights(g, 1.0, loss, &gz, &mr, err);
    if (rc == BG_OK)
        rc = bg_nn_train_grad(g->t, g->tok, g->tgt, g->w, NULL, err);
    if (g_log_z)
        *g_log_z = gz;
    return rc;
}

double bg_lmgfn_log_z(const bg_lmgfn *g)
{
    return g->log_z;
}

void bg__lmgfn_task_schedule(bg_lmgfn_opts *o, int steps, uint64_t seed)
{
    o->objective = BG_LMGFN_SUBTB;
    o->lambda = 1.0;
    o->p_replay = 0.25;
    o->p_tempered = 0.5;
    o->temp_lo = 0.5;
    o->temp_hi = 2.0;
    o->rtemp_start = 2.0;
    o->rtemp_end = 1.0;
    o->rtemp_steps = steps / 2;
    o->replay_cap = 256;
    o->replay_min_dist = 1;
    o->lr_log_z = 0.05;
    o->seed = seed;
}

uint64_t bg_lmgfn_version(const bg_lmgfn *g)
{
    return g->version;
}

int bg_lmgfn_set_version(bg_lmgfn *g, uint64_t version, bg_err *err)
{
    int B = g->o.batch, S = g->S;
    bg_lmgfn_replay *r = &g->replay;
    const int32_t *zp[BG_LMGFN_MAX_BATCH];
    int n[BG_LMGFN_MAX_BATCH], idx[BG_LMGFN_MAX_BATCH];
    double *logr = malloc(sizeof(double) * (size_t)B * (size_t)S);
    if (!logr)
        return bg_err_set(err, BG_ENOMEM, "lmgfn: out of memory");
    int rc = BG_OK, k = 0;
    for (int i = 0; rc == BG_OK && i <= r->n; i++) {
        if (i < r->n && r->items[i].version != version) {
            zp[k] = r->items[i].z;
            n[k] = r->items[i].n;
            idx[k++] = i;
        }
        if (k == B || (i == r->n && k > 0)) {
            rc = g->o.reward(g->o.reward_ctx, g, zp, n, k, logr, err);
            for (int j = 0; rc == BG_OK && j < k; j++) {
                bg_lmgfn_item *it = &r->items[idx[j]];
                for (int m = 0; m <= it->n; m++)
                    if (isnan(logr[j * S + m]))
                        rc = bg_err_set(err, BG_EINVAL, "lmgfn: a re-scored reward is NaN");
                if (rc == BG_OK) {
                    memcpy(it->logr, logr + j * S, sizeof(double) * (size_t)(it->n + 1));
                    it->version = version;
                }
            }
            k = 0;
        }
    }
    free(logr);
    if (rc == BG_OK)
        g->version = version;
    return rc;
}
