/*
 * gfn_train.c — the GFlowNet trainer and sampler: instance lifecycle,
 * batched roll-outs of the policy, one optimiser step, and the exact
 * terminal probabilities.
 *
 * One training step (step_once), top to bottom:
 *   1. pick the behaviour for the batch: replay (once the buffer holds a
 *      batch), the policy at T ~ U(temp_lo, temp_hi), or the policy itself;
 *      ε-uniform mixing applies to the non-replay ones;
 *   2. get B final ids (a trajectory is its final id: the space is a tree);
 *   3. lay out every state of every trajectory as one row and run the
 *      untempered policy over all rows with the forward cache kept;
 *   4. log-rewards: from the replay buffer, or one reward call (the finals
 *      for TB, every prefix for SubTB/DB), divided by the annealed T_R;
 *   5. loss and d loss / d log q (gfn_loss.c), then d loss / d logits
 *      through the masked log-softmax, then backward through the MLP;
 *   6. Adam; fresh trajectories go to the replay buffer.
 *
 * Before the first step of a call (bg_gfn_train_at), refresh_replay
 * re-scores every replay entry stored at another reward version than the
 * call's, in one batched reward call: a session's reward moves with each
 * observation, and a stored log R replayed unchanged would train the
 * policy toward the old posterior (and, higher than any current reward,
 * would never be evicted from the top-k).
 *
 * Invariants: params, Adam moments, rng, stats and replay change only in
 * bg_gfn_train_at (and load); a failed step leaves them as they were before
 * the step, a failed re-scoring leaves the buffer as it was. Every replay
 * entry a step reads or ranks against has the step's reward version.
 * Sampling and exact probabilities never touch the instance.
 *
 * Threads and ownership: see gfn.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gfn_priv.h"

/* Scratch for `rows` policy evaluations. */
typedef struct work {
    size_t rows;
    double *x;            /* [rows × n_in] */
    double *cache;        /* [rows × cache_per_row] */
    double *logits;       /* [rows × (d+1)] */
    double *logp;         /* [rows × (d+1)] */
    unsigned char *valid; /* [rows × (d+1)] */
} work;

static void work_free(work *w)
{
    free(w->x);
    free(w->cache);
    free(w->logits);
    free(w->logp);
    free(w->valid);
    memset(w, 0, sizeof *w);
}

static int work_alloc(const bg_gfn *g, size_t rows, work *w)
{
    uint32_t d = g->cfg.n_bits;
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->x = malloc(rows * bg__gfn_n_in(d) * sizeof(double));
    w->cache = malloc((rows * g->mlp.cache_per_row + 1) * sizeof(double));
    w->logits = malloc(rows * (d + 1) * sizeof(double));
    w->logp = malloc(rows * (d + 1) * sizeof(double));
    w->valid = malloc(rows * (d + 1));
    if (!w->x || !w->cache || !w->logits || !w->logp || !w->valid) {
        work_free(w);
        return BG_PLUGIN_ENOMEM;
    }
    return BG_PLUGIN_OK;
}

/* Policy over rows states: valid masks, logits, untempered log-probs. */
static void policy_eval(const bg_gfn *g, const bg__gfn_state *st, size_t rows, work *w)
{
    uint32_t d = g->cfg.n_bits, n_in = bg__gfn_n_in(d);
    for (size_t r = 0; r < rows; r++) {
        bg__gfn_encode(d, &st[r], w->x + r * n_in);
        bg__gfn_valid(&g->cfg, &st[r], w->valid + r * (d + 1));
    }
    bg__gfn_mlp_forward(&g->mlp, g->params, rows, w->x, w->cache, w->logits);
    for (size_t r = 0; r < rows; r++)
        bg__gfn_log_softmax(d + 1, w->logits + r * (d + 1), w->valid + r * (d + 1),
                            w->logp + r * (d + 1));
}

/* Draw one action from a row: ε-uniform, else softmax(logits / temp) over
 * the valid actions. */
static uint32_t draw_action(uint32_t n, const double *z, const double *logp,
                            const unsigned char *valid, double temp, double eps, bg_rng *rng)
{
    if (eps > 0 && bg_gfn_rng_uniform(rng) < eps) {
        uint32_t n_valid = 0;
        for (uint32_t i = 0; i < n; i++)
            n_valid += valid[i];
        uint32_t pick = (uint32_t)(bg_gfn_rng_uniform(rng) * n_valid);
        for (uint32_t i = 0; i < n; i++)
            if (valid[i] && pick-- == 0)
                return i;
    }
    double p[BG_GFN_MAX_BITS + 1], s = 0;
    if (temp == 1.0) {
        for (uint32_t i = 0; i < n; i++)
            s += p[i] = valid[i] ? exp(logp[i]) : 0.0;
    } else {
        double mx = -INFINITY;
        for (uint32_t i = 0; i < n; i++)
            if (valid[i] && z[i] > mx)
                mx = z[i];
        for (uint32_t i = 0; i < n; i++)
            s += p[i] = valid[i] ? exp((z[i] - mx) / temp) : 0.0;
    }
    double u = bg_gfn_rng_uniform(rng) * s;
    uint32_t last = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!valid[i])
            continue;
        last = i;
        if (u < p[i])
            return i;
        u -= p[i];
    }
    return last; /* rounding: the last valid action */
}

/* Roll out n trajectories step-synchronously (w holds >= n rows). log_q
 * (may be NULL) gets the untempered log q^⊤ of each final id. */
static void rollout(const bg_gfn *g, bg_rng *rng, size_t n, double temp, double eps, work *w,
                    bg__gfn_state *st, size_t *active, uint64_t *ids, double *log_q)
{
    uint32_t d = g->cfg.n_bits;
    size_t n_active = n;
    for (size_t i = 0; i < n; i++) {
        st[i] = (bg__gfn_state){0, -1, 0};
        active[i] = i;
        if (log_q)
            log_q[i] = 0;
    }
    bg__gfn_state *rows = st + n; /* second half: the active states, packed */
    while (n_active > 0) {
        for (size_t r = 0; r < n_active; r++)
            rows[r] = st[active[r]];
        policy_eval(g, rows, n_active, w);
        size_t keep = 0;
        for (size_t r = 0; r < n_active; r++) {
            size_t i = active[r];
            const double *lp = w->logp + r * (d + 1);
            uint32_t a = draw_action(d + 1, w->logits + r * (d + 1), lp, w->valid + r * (d + 1),
                                     temp, eps, rng);
            if (log_q)
                log_q[i] += lp[a];
            if (a == d) {
                ids[i] = st[i].bits;
                continue;
            }
            st[i].bits |= 1ULL << a;
            st[i].last = (int32_t)a;
            st[i].len++;
            active[keep++] = i;
        }
        n_active = keep;
    }
}

/* ---- lifecycle ------------------------------------------------------- */

int bg_gfn_create(const bg_gfn_config *c, bg_gfn **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    int rc = bg_gfn_config_check(c, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    bg_gfn *g = calloc(1, sizeof *g);
    if (!g)
        goto nomem;
    g->cfg = *c;
    bg__gfn_mlp_init(&g->mlp, bg__gfn_n_in(c->n_bits), c->hidden, c->n_hidden, c->n_bits + 1);
    g->n_params = g->mlp.n_params + 1;
    g->params = calloc(g->n_params, sizeof(double));
    g->adam_m = calloc(g->n_params, sizeof(double));
    g->adam_v = calloc(g->n_params, sizeof(double));
    if (!g->params || !g->adam_m || !g->adam_v)
        goto nomem;
    if (bg__gfn_replay_init(&g->replay, c->replay_capacity, c->n_bits) != BG_PLUGIN_OK)
        goto nomem;
    bg_gfn_rng_seed(&g->rng, c->seed);
    bg__gfn_mlp_init_params(&g->mlp, g->params, &g->rng);
    g->params[g->n_params - 1] = c->init_logz;
    g->stats.log_z = c->init_logz;
    g->stats.reward_temp = c->reward_temp_start;
    *out = g;
    return BG_PLUGIN_OK;
nomem:
    bg_gfn_destroy(g);
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "gfn: out of memory creating a d=%u sampler", c->n_bits);
    return BG_PLUGIN_ENOMEM;
}

void bg_gfn_destroy(bg_gfn *g)
{
    if (!g)
        return;
    free(g->params);
    free(g->adam_m);
    free(g->adam_v);
    bg__gfn_replay_close(&g->replay);
    free(g);
}

const bg_gfn_config *bg_gfn_get_config(const bg_gfn *g)
{
    return &g->cfg;
}

void bg_gfn_get_stats(const bg_gfn *g, bg_gfn_stats *out)
{
    *out = g->stats;
    out->replay_size = g->replay.n;
}

/* ---- one training step ---------------------------------------------- */

/* Buffers of one step, sized for batch × (max_len + 1) states. */
typedef struct step_buf {
    work w;
    size_t cap_states;
    bg__gfn_state *st;                         /* [cap_states] (rollout uses 2 × batch) */
    size_t *active;                            /* [batch] */
    uint64_t *ids;                             /* [batch] */
    uint32_t *len;                             /* [batch] */
    size_t *off;                               /* [batch] */
    uint64_t *prefix;                          /* [cap_states] the id of every state */
    double *logr_raw;                          /* [cap_states] untempered log R(s_t ⊤) */
    double *logr;                              /* [cap_states] / T_R */
    double *lq_add, *lq_stop, *g_add, *g_stop; /* [cap_states] */
    unsigned char *term;                       /* [cap_states] */
    double *dlogits;                           /* [cap_states × (d+1)] */
    double *scratch;                           /* MLP backward */
    double *grad;                              /* [n_params] */
} step_buf;

static void step_buf_free(step_buf *b)
{
    work_free(&b->w);
    void *ptrs[] = {b->st,       b->active,  b->ids,     b->len,     b->off,   b->prefix,
                    b->logr_raw, b->logr,    b->lq_add,  b->lq_stop, b->g_add, b->g_stop,
                    b->term,     b->dlogits, b->scratch, b->grad};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        free(ptrs[i]);
    memset(b, 0, sizeof *b);
}

static int step_buf_alloc(const bg_gfn *g, step_buf *b)
{
    memset(b, 0, sizeof *b);
    size_t B = g->cfg.batch, d = g->cfg.n_bits;
    size_t S = B * (g->cfg.max_len + 1);
    if (S < 2 * B)
        S = 2 * B;
    b->cap_states = S;
    if (work_alloc(g, S, &b->w) != BG_PLUGIN_OK)
        return BG_PLUGIN_ENOMEM;
    b->st = malloc(S * sizeof *b->st);
    b->active = malloc(B * sizeof *b->active);
    b->ids = malloc(B * sizeof *b->ids);
    b->len = malloc(B * sizeof *b->len);
    b->off = malloc(B * sizeof *b->off);
    b->prefix = malloc(S * sizeof *b->prefix);
    b->logr_raw = malloc(S * sizeof(double));
    b->logr = malloc(S * sizeof(double));
    b->lq_add = malloc(S * sizeof(double));
    b->lq_stop = malloc(S * sizeof(double));
    b->g_add = malloc(S * sizeof(double));
    b->g_stop = malloc(S * sizeof(double));
    b->term = malloc(S);
    b->dlogits = malloc(S * (d + 1) * sizeof(double));
    b->scratch = malloc(2 * S * bg__gfn_mlp_max_width(&g->mlp) * sizeof(double));
    b->grad = malloc(g->n_params * sizeof(double));
    if (!b->st || !b->active || !b->ids || !b->len || !b->off || !b->prefix || !b->logr_raw ||
        !b->logr || !b->lq_add || !b->lq_stop || !b->g_add || !b->g_stop || !b->term ||
        !b->dlogits || !b->scratch || !b->grad) {
        step_buf_free(b);
        return BG_PLUGIN_ENOMEM;
    }
    return BG_PLUGIN_OK;
}

static double reward_temp(const bg_gfn_config *c, uint64_t step)
{
    if (c->reward_temp_horizon == 0 || step >= c->reward_temp_horizon)
        return c->reward_temp_end;
    double f = (double)step / c->reward_temp_horizon;
    return c->reward_temp_start + (c->reward_temp_end - c->reward_temp_start) * f;
}

/* Call the reward on n ids into out; check and clamp. */
static int get_rewards(bg_log_reward_fn reward, void *ctx, const uint64_t *ids, size_t n,
                       double *out, char *errbuf, size_t errlen)
{
    int rc = reward(ctx, ids, n, out);
    if (rc != BG_PLUGIN_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "gfn: reward callback failed with status %d", rc);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (isnan(out[i]) || out[i] == INFINITY) {
            if (errbuf && errlen)
                snprintf(errbuf, errlen,
                         "gfn: reward returned log R = %g for id 0x%llx; expected finite or -inf",
                         out[i], (unsigned long long)ids[i]);
            return BG_PLUGIN_EINVAL;
        }
        if (out[i] < BG_GFN_LOG_R_FLOOR)
            out[i] = BG_GFN_LOG_R_FLOOR;
    }
    return BG_PLUGIN_OK;
}

/* Steps 1–2: the batch's final ids (and, from replay, their log-rewards). */
static void pick_batch(bg_gfn *g, step_buf *b, int *from_replay)
{
    const bg_gfn_config *c = &g->cfg;
    double u = bg_gfn_rng_uniform(&g->rng);
    *from_replay = 0;
    if (g->replay.n >= c->batch && u < c->p_replay) {
        *from_replay = 1;
        for (uint32_t i = 0; i < c->batch; i++) {
            uint32_t k = (uint32_t)(bg_gfn_rng_uniform(&g->rng) * g->replay.n);
            b->ids[i] = g->replay.ids[k];
        }
        return;
    }
    double temp = 1.0;
    if (u < c->p_replay + c->p_tempered)
        temp = c->temp_lo + (c->temp_hi - c->temp_lo) * bg_gfn_rng_uniform(&g->rng);
    rollout(g, &g->rng, c->batch, temp, c->epsilon, &b->w, b->st, b->active, b->ids, NULL);
}

/* Step 3: one row per state, the untempered policy over all rows. */
static size_t layout_states(const bg_gfn *g, step_buf *b)
{
    size_t S = 0;
    for (uint32_t i = 0; i < g->cfg.batch; i++) {
        uint32_t n = (uint32_t)__builtin_popcountll(b->ids[i]);
        b->len[i] = n;
        b->off[i] = S;
        for (uint32_t t = 0; t <= n; t++) {
            b->st[S + t] = bg__gfn_prefix(b->ids[i], t);
            b->prefix[S + t] = b->st[S + t].bits;
        }
        S += n + 1;
    }
    policy_eval(g, b->st, S, &b->w);
    uint32_t d = g->cfg.n_bits;
    for (uint32_t i = 0; i < g->cfg.batch; i++) {
        for (uint32_t t = 0; t <= b->len[i]; t++) {
            size_t r = b->off[i] + t;
            const double *lp = b->w.logp + r * (d + 1);
            b->term[r] = b->w.valid[r * (d + 1) + d];
            b->lq_stop[r] = lp[d];
            b->lq_add[r] = t < b->len[i] ? lp[b->st[r + 1].last] : 0.0;
        }
    }
    return S;
}

/* Step 4: untempered log-rewards of the states the loss reads. */
static int fill_rewards(bg_gfn *g, step_buf *b, int from_replay, bg_log_reward_fn reward, void *ctx,
                        char *errbuf, size_t errlen)
{
    const bg_gfn_config *c = &g->cfg;
    size_t S = b->off[c->batch - 1] + b->len[c->batch - 1] + 1;
    for (size_t r = 0; r < S; r++)
        b->logr_raw[r] = 0.0;
    if (from_replay) {
        for (uint32_t i = 0; i < c->batch; i++) {
            /* look the id up again: it is in the buffer by construction,
             * its log-rewards of this call's version (refresh_replay) */
            for (uint32_t k = 0; k < g->replay.n; k++) {
                if (g->replay.ids[k] != b->ids[i])
                    continue;
                memcpy(b->logr_raw + b->off[i], g->replay.logr + (size_t)k * (c->n_bits + 1),
                       (b->len[i] + 1) * sizeof(double));
                break;
            }
        }
        return BG_PLUGIN_OK;
    }
    if (c->loss == BG_GFN_LOSS_TB) {
        /* finals only: gather, call, scatter */
        double *tmp = b->g_add; /* scratch until the loss fills it */
        int rc = get_rewards(reward, ctx, b->ids, c->batch, tmp, errbuf, errlen);
        if (rc != BG_PLUGIN_OK)
            return rc;
        for (uint32_t i = 0; i < c->batch; i++)
            b->logr_raw[b->off[i] + b->len[i]] = tmp[i];
        g->stats.reward_evals += c->batch;
        return BG_PLUGIN_OK;
    }
    int rc = get_rewards(reward, ctx, b->prefix, S, b->logr_raw, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    g->stats.reward_evals += S;
    return BG_PLUGIN_OK;
}

/* Step 5, second half: d loss / d logits through the masked log-softmax:
 * dz_i = c_i − p_i Σ_a c_a, c = the loss's gradient on the used log-probs. */
static void logits_grad(const bg_gfn *g, step_buf *b, size_t S)
{
    uint32_t d = g->cfg.n_bits;
    memset(b->dlogits, 0, S * (d + 1) * sizeof(double));
    for (uint32_t i = 0; i < g->cfg.batch; i++) {
        for (uint32_t t = 0; t <= b->len[i]; t++) {
            size_t r = b->off[i] + t;
            double *dz = b->dlogits + r * (d + 1);
            const double *lp = b->w.logp + r * (d + 1);
            const unsigned char *v = b->w.valid + r * (d + 1);
            double c_add = t < b->len[i] ? b->g_add[r] : 0.0;
            double c_stop = v[d] ? b->g_stop[r] : 0.0;
            double csum = c_add + c_stop;
            for (uint32_t a = 0; a <= d; a++)
                dz[a] = v[a] ? -exp(lp[a]) * csum : 0.0;
            if (t < b->len[i])
                dz[b->st[r + 1].last] += c_add;
            if (v[d])
                dz[d] += c_stop;
        }
    }
}

/* Batch diagnostics: mean and variance of log R/T_R − log q^⊤. */
static void batch_diag(const bg_gfn *g, const step_buf *b, double *mean, double *var)
{
    double s = 0, ss = 0;
    for (uint32_t i = 0; i < g->cfg.batch; i++) {
        size_t o = b->off[i];
        double lq = b->lq_stop[o + b->len[i]];
        for (uint32_t t = 0; t < b->len[i]; t++)
            lq += b->lq_add[o + t];
        double r = b->logr[o + b->len[i]] - lq;
        s += r;
        ss += r * r;
    }
    *mean = s / g->cfg.batch;
    *var = ss / g->cfg.batch - *mean * *mean;
}

/* Steps 4 (temperature) and 5: loss over the laid-out batch and its
 * gradient into b->grad (log Z last). Returns the loss. */
static double loss_and_grad(bg_gfn *g, step_buf *b, size_t S, double t_r)
{
    const bg_gfn_config *c = &g->cfg;
    for (size_t r = 0; r < S; r++)
        b->logr[r] = b->logr_raw[r] / t_r;
    bg__gfn_batch view = {c->batch, b->len, b->off, b->lq_add, b->lq_stop, b->logr, b->term};
    double g_logz = 0, loss;
    if (c->loss == BG_GFN_LOSS_TB)
        loss = bg__gfn_loss_tb(&view, g->params[g->n_params - 1], b->g_add, b->g_stop, &g_logz);
    else
        loss = bg__gfn_loss_subtb(&view, c->lambda, c->loss == BG_GFN_LOSS_DB, b->g_add, b->g_stop);
    logits_grad(g, b, S);
    memset(b->grad, 0, g->n_params * sizeof(double));
    bg__gfn_mlp_backward(&g->mlp, g->params, S, b->w.x, b->w.cache, b->dlogits, b->grad,
                         b->scratch);
    b->grad[g->n_params - 1] = g_logz;
    return loss;
}

static int step_once(bg_gfn *g, step_buf *b, bg_log_reward_fn reward, void *ctx, char *errbuf,
                     size_t errlen)
{
    const bg_gfn_config *c = &g->cfg;
    int from_replay;
    pick_batch(g, b, &from_replay);
    size_t S = layout_states(g, b);
    int rc = fill_rewards(g, b, from_replay, reward, ctx, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    double t_r = reward_temp(c, g->stats.steps);
    if (c->loss == BG_GFN_LOSS_TB && c->logz_from_batch && g->stats.steps == 0) {
        double mean, var;
        for (size_t r = 0; r < S; r++)
            b->logr[r] = b->logr_raw[r] / t_r;
        batch_diag(g, b, &mean, &var);
        g->params[g->n_params - 1] = mean;
    }
    double loss = loss_and_grad(g, b, S, t_r);
    if (!isfinite(loss)) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen,
                     "gfn: loss is %g at step %llu; lower lr (%g) or check the reward scale", loss,
                     (unsigned long long)g->stats.steps, c->lr);
        return BG_PLUGIN_EINTERNAL;
    }
    bg__gfn_adam_step(g, b->grad, g->stats.steps + 1);

    double mean, var;
    batch_diag(g, b, &mean, &var);
    if (!from_replay) {
        g->stats.last_var = var;
        for (uint32_t i = 0; i < c->batch; i++)
            bg__gfn_replay_add(&g->replay, b->ids[i], b->logr_raw + b->off[i], g->version);
    }
    g->stats.steps++;
    g->stats.trajectories += c->batch;
    g->stats.last_loss = loss;
    g->stats.reward_temp = t_r;
    g->stats.log_z = c->loss == BG_GFN_LOSS_TB ? g->params[g->n_params - 1] : mean;
    return BG_PLUGIN_OK;
}

int bg__gfn_loss_eval(bg_gfn *g, const uint64_t *ids, const double *logr_raw, double t_r,
                      double *loss, double *grad)
{
    step_buf b;
    if (step_buf_alloc(g, &b) != BG_PLUGIN_OK)
        return BG_PLUGIN_ENOMEM;
    memcpy(b.ids, ids, g->cfg.batch * sizeof *ids);
    size_t S = layout_states(g, &b);
    memcpy(b.logr_raw, logr_raw, S * sizeof(double));
    *loss = loss_and_grad(g, &b, S, t_r);
    if (grad)
        memcpy(grad, b.grad, g->n_params * sizeof(double));
    step_buf_free(&b);
    return BG_PLUGIN_OK;
}

/* Re-score every replay entry whose reward version is not `version`: one
 * reward call over their finals (TB) or all their prefixes (SubTB, DB),
 * written back only when the whole call succeeded. */
static int refresh_replay(bg_gfn *g, bg_log_reward_fn reward, void *ctx, uint64_t version,
                          char *errbuf, size_t errlen)
{
    bg__gfn_replay *r = &g->replay;
    const bg_gfn_config *c = &g->cfg;
    int tb = c->loss == BG_GFN_LOSS_TB;
    size_t stale = 0, m = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->ver[i] != version) {
            stale++;
            m += tb ? 1 : (size_t)__builtin_popcountll(r->ids[i]) + 1;
        }
    if (stale == 0)
        return BG_PLUGIN_OK;
    uint64_t *ids = malloc(m * sizeof *ids);
    double *out = malloc(m * sizeof *out);
    if (!ids || !out) {
        free(ids);
        free(out);
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "gfn: out of memory re-scoring %zu replay entries", stale);
        return BG_PLUGIN_ENOMEM;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->ver[i] == version)
            continue;
        uint32_t len = (uint32_t)__builtin_popcountll(r->ids[i]);
        if (tb)
            ids[k++] = r->ids[i];
        else
            for (uint32_t t = 0; t <= len; t++)
                ids[k++] = bg__gfn_prefix(r->ids[i], t).bits;
    }
    int rc = get_rewards(reward, ctx, ids, m, out, errbuf, errlen);
    if (rc == BG_PLUGIN_OK) {
        double gap = -INFINITY, shift = 0;
        size_t known = 0;
        k = 0;
        for (uint32_t i = 0; i < r->n; i++) {
            if (r->ver[i] == version)
                continue;
            uint32_t len = (uint32_t)__builtin_popcountll(r->ids[i]);
            double *lr = r->logr + (size_t)i * (c->n_bits + 1);
            double drop = lr[len] - out[k + (tb ? 0 : len)];
            if (r->ver[i] != BG__GFN_VERSION_UNKNOWN) {
                gap = drop > gap ? drop : gap;
                shift -= drop;
                known++;
            }
            if (tb)
                lr[len] = out[k++];
            else
                for (uint32_t t = 0; t <= len; t++)
                    lr[t] = out[k++];
            r->ver[i] = version;
        }
        g->stats.reward_evals += m;
        g->stats.rescored += stale;
        g->stats.last_stale_gap = gap;
        /* TB's log Z is an estimate of log Σ R / T_R and goes stale with
         * the rewards: move it by the buffer's mean change, so a jump in
         * the reward's scale (many observations at once: log R from −5 to
         * −300 at d = 32) does not leave every residual hundreds of nats
         * off and the clipped gradients wreck the policy. */
        if (tb && known > 0)
            g->params[g->n_params - 1] += shift / (double)known / reward_temp(c, g->stats.steps);
    }
    free(ids);
    free(out);
    return rc;
}

int bg_gfn_train_at(bg_gfn *g, bg_log_reward_fn reward, void *reward_ctx, uint64_t version,
                    uint32_t steps, char *errbuf, size_t errlen)
{
    int rc = refresh_replay(g, reward, reward_ctx, version, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    /* warm restart: the posterior moved, the schedule starts again */
    if (g->cfg.lr_restart && version != g->version && g->stats.steps > 0) {
        g->stats.sched_start = g->stats.steps;
        g->stats.restarts++;
    }
    g->version = version;
    step_buf b;
    if (step_buf_alloc(g, &b) != BG_PLUGIN_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "gfn: out of memory for a batch of %u", g->cfg.batch);
        return BG_PLUGIN_ENOMEM;
    }
    for (uint32_t s = 0; s < steps && rc == BG_PLUGIN_OK; s++)
        rc = step_once(g, &b, reward, reward_ctx, errbuf, errlen);
    step_buf_free(&b);
    return rc;
}

int bg_gfn_train(bg_gfn *g, bg_log_reward_fn reward, void *reward_ctx, uint32_t steps, char *errbuf,
                 size_t errlen)
{
    return bg_gfn_train_at(g, reward, reward_ctx, 0, steps, errbuf, errlen);
}

int bg_gfn_offer(bg_gfn *g, const uint64_t *ids, size_t n, bg_log_reward_fn reward,
                 void *reward_ctx, size_t *stored, char *errbuf, size_t errlen)
{
    const bg_gfn_config *c = &g->cfg;
    uint64_t prefix[BG_GFN_MAX_BITS + 1];
    double logr[BG_GFN_MAX_BITS + 1];
    size_t kept = 0;
    int rc = BG_PLUGIN_OK;
    for (size_t i = 0; i < n && rc == BG_PLUGIN_OK; i++) {
        if (!bg__gfn_id_ok(c, ids[i]))
            continue;
        uint32_t len = (uint32_t)__builtin_popcountll(ids[i]);
        for (uint32_t t = 0; t <= len; t++) {
            prefix[t] = bg__gfn_prefix(ids[i], t).bits;
            logr[t] = 0.0;
        }
        int tb = c->loss == BG_GFN_LOSS_TB;
        size_t m = tb ? 1 : len + 1;
        rc = get_rewards(reward, reward_ctx, tb ? &ids[i] : prefix, m, tb ? &logr[len] : logr,
                         errbuf, errlen);
        if (rc == BG_PLUGIN_OK) {
            g->stats.reward_evals += m;
            kept += (size_t)bg__gfn_replay_add(&g->replay, ids[i], logr, g->version);
        }
    }
    if (stored)
        *stored = kept;
    return rc;
}

/* ---- sampling and exact probabilities ------------------------------- */

#define CHUNK 256

int bg_gfn_sample(const bg_gfn *g, bg_rng *rng, size_t n, uint64_t *ids, double *log_q)
{
    work w;
    if (work_alloc(g, CHUNK, &w) != BG_PLUGIN_OK)
        return BG_PLUGIN_ENOMEM;
    bg__gfn_state st[2 * CHUNK];
    size_t active[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        rollout(g, rng, m, 1.0, 0.0, &w, st, active, ids + i, log_q ? log_q + i : NULL);
    }
    work_free(&w);
    return BG_PLUGIN_OK;
}

int bg_gfn_log_q(const bg_gfn *g, const uint64_t *ids, size_t n, double *out)
{
    uint32_t d = g->cfg.n_bits;
    size_t rows_max = (size_t)(d + 1) * 4;
    work w;
    if (work_alloc(g, rows_max, &w) != BG_PLUGIN_OK)
        return BG_PLUGIN_ENOMEM;
    bg__gfn_state st[(BG_GFN_MAX_BITS + 1) * 4];
    for (size_t i = 0; i < n; i += 4) {
        size_t m = n - i < 4 ? n - i : 4, rows = 0;
        for (size_t j = 0; j < m; j++)
            if (bg__gfn_id_ok(&g->cfg, ids[i + j]))
                for (uint32_t t = 0; t <= (uint32_t)__builtin_popcountll(ids[i + j]); t++)
                    st[rows++] = bg__gfn_prefix(ids[i + j], t);
        if (rows == 0) {
            for (size_t j = 0; j < m; j++)
                out[i + j] = -INFINITY;
            continue;
        }
        policy_eval(g, st, rows, &w);
        size_t r = 0;
        for (size_t j = 0; j < m; j++) {
            uint64_t id = ids[i + j];
            uint32_t len = (uint32_t)__builtin_popcountll(id);
            if (!bg__gfn_id_ok(&g->cfg, id)) {
                out[i + j] = -INFINITY;
                continue;
            }
            double lq = 0;
            for (uint32_t t = 0; t < len; t++, r++)
                lq += w.logp[r * (d + 1) + (uint32_t)st[r + 1].last];
            lq += w.logp[r * (d + 1) + d];
            r++;
            out[i + j] = lq;
        }
    }
    work_free(&w);
    return BG_PLUGIN_OK;
}

int bg_gfn_log_q_all(const bg_gfn *g, double *out)
{
    uint32_t d = g->cfg.n_bits;
    if (d > BG_GFN_ENUM_MAX_BITS)
        return BG_PLUGIN_EINVAL;
    uint64_t total = 1ULL << d;
    work w;
    if (work_alloc(g, CHUNK, &w) != BG_PLUGIN_OK)
        return BG_PLUGIN_ENOMEM;
    bg__gfn_state st[CHUNK];
    /* out[id] first holds the log-probability of id's path, then, once id's
     * own row is evaluated (children pushed), log q^⊤(id). A parent id is
     * smaller than its children, so it is always evaluated first. */
    out[0] = 0.0;
    for (uint64_t id = 1; id < total; id++)
        out[id] = -INFINITY;
    for (uint64_t base = 0; base < total; base += CHUNK) {
        size_t m = total - base < CHUNK ? (size_t)(total - base) : CHUNK;
        for (size_t j = 0; j < m; j++) {
            uint64_t id = base + j;
            st[j] = (bg__gfn_state){id, id ? 63 - __builtin_clzll(id) : -1,
                                    (uint32_t)__builtin_popcountll(id)};
        }
        policy_eval(g, st, m, &w);
        for (size_t j = 0; j < m; j++) {
            uint64_t id = base + j;
            const double *lp = w.logp + j * (d + 1);
            double path = out[id];
            for (uint32_t k = (uint32_t)(st[j].last + 1); k < d; k++)
                if (w.valid[j * (d + 1) + k])
                    out[id | 1ULL << k] = path + lp[k];
            out[id] = path + lp[d];
        }
    }
    work_free(&w);
    return BG_PLUGIN_OK;
}
