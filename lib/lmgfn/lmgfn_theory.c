/*
 * lmgfn_theory.c — the latent-theory task (issue 14 item 3): Z = an
 * explanation, X = an action's description, Y = the observed outcome; the
 * GFlowNet samples Z ∝ p_LM(X Z Y), measured against the exact posterior on
 * a theory space small enough to enumerate. `bayesguard lm gfn theory`.
 *
 * The reward. ⊤ is Y's first token, so lmgfn's termination convention
 * (R is given for "s_i ⊤") reads R(Z) = p_base(Z y_1 y_2..y_m | X): the
 * model's probability of the explanation followed by the outcome, given
 * the action (raw base model, no mask; the legal list only restricts the
 * support). On the space of every Z of min_len..max_len legal tokens the
 * posterior is p(Z | X, Y) = R(Z) / Σ_Z' R(Z').
 *
 * The enumeration scores every theory once, rows "X Z Y" through a scoring
 * trainer (lora rank 1, adapters off, no logit bias: the base's inference
 * ops, nn.h) in batched forwards; that table is the exact log R. The
 * GFlowNet's reward callback and the MH chain read it, each lookup counted
 * as one reward evaluation (what it would cost without the table: the
 * evaluations column is the fair cost measure, and the seconds columns
 * exclude reward forwards). The scorer is a second copy of the weights:
 * lmgfn's own trainer has rows of prompt + max_len tokens, too short for
 * Z followed by Y.
 *
 * A method's exact distribution over the space (the base at a temperature,
 * the trained policy) comes from a prefix tree: one bg_nn_train_logits per
 * prefix shorter than max_len, softmax over the legal tokens and ⊤ with
 * lmgfn's length rules, and log q(Z) summed along Z's prefixes. Its samples
 * are exact draws from that distribution (inverse CDF over the space).
 *
 * Rows (bg_lmgfn_theory_run): exact (samples of the posterior itself: the
 * floor of the empirical TV and recall at this many samples), base (the
 * model restricted to the space, T = 1), base T=… (the temperature of the
 * lowest exact TV on a grid: an oracle choice, in the baseline's favour),
 * mh (as many reward evaluations as the GFlowNet's training), gflownet.
 *
 * Threads: the caller's. Ownership: everything is freed before returning;
 * gflownet.lora goes to out_dir when one is given.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lmgfn/lmgfn.h"
#include "lmgfn/lmgfn_priv.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the space ------------------------------------------------------------- */

int bg_lmgfn_theory_space_init(bg_lmgfn_theory_space *s, const int32_t *legal, int n_legal,
                               int min_len, int max_len, bg_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_legal < 1 || n_legal > BG_LMGFN_THEORY_MAX_LEGAL)
        return bg_err_set(err, BG_EINVAL, "theory space: %d legal tokens; expected 1..%d", n_legal,
                          BG_LMGFN_THEORY_MAX_LEGAL);
    if (min_len < 0 || min_len > max_len || max_len > BG_LMGFN_MAX_LEN)
        return bg_err_set(err, BG_EINVAL,
                          "theory space: lengths %d..%d; expected 0 <= min <= max <= %d", min_len,
                          max_len, BG_LMGFN_MAX_LEN);
    for (int i = 0; i < n_legal; i++)
        for (int j = 0; j < i; j++)
            if (legal[i] == legal[j])
                return bg_err_set(err, BG_EINVAL,
                                  "theory space: token %d is listed twice among the legal tokens",
                                  legal[i]);
    double size = 0, p = 1;
    for (int n = 0; n <= max_len; n++, p *= n_legal)
        if (n >= min_len)
            size += p;
    if (size > BG_LMGFN_THEORY_MAX_SPACE)
        return bg_err_set(err, BG_EINVAL,
                          "theory space: %d legal tokens at lengths %d..%d make %.0f theories; at "
                          "most %d can be enumerated (fewer tokens or a shorter max length)",
                          n_legal, min_len, max_len, size, BG_LMGFN_THEORY_MAX_SPACE);
    memcpy(s->legal, legal, sizeof(int32_t) * (size_t)n_legal);
    s->n_legal = n_legal;
    s->min_len = min_len;
    s->max_len = max_len;
    s->size = (long)size;
    return BG_OK;
}

/* The index of the first theory of length n. */
static long len_base(const bg_lmgfn_theory_space *s, int n)
{
    long b = 0, p = 1;
    for (int l = 0; l < n; l++, p *= s->n_legal)
        if (l >= s->min_len)
            b += p;
    return b;
}

void bg_lmgfn_theory_z(const bg_lmgfn_theory_space *s, long idx, int32_t *z, int *n)
{
    int len = s->min_len;
    long p = 1;
    for (int l = 0; l < len; l++)
        p *= s->n_legal;
    while (idx >= p && len < s->max_len) {
        idx -= p;
        p *= s->n_legal;
        len++;
    }
    for (int i = len - 1; i >= 0; i--) {
        z[i] = s->legal[idx % s->n_legal];
        idx /= s->n_legal;
    }
    *n = len;
}

static int legal_pos(const bg_lmgfn_theory_space *s, int32_t tok)
{
    for (int j = 0; j < s->n_legal; j++)
        if (s->legal[j] == tok)
            return j;
    return -1;
}

long bg_lmgfn_theory_index(const bg_lmgfn_theory_space *s, const int32_t *z, int n)
{
    if (n < s->min_len || n > s->max_len)
        return -1;
    long d = 0;
    for (int i = 0; i < n; i++) {
        int j = legal_pos(s, z[i]);
        if (j < 0)
            return -1;
        d = d * s->n_legal + j;
    }
    return len_base(s, n) + d;
}

/* ---- the exact log reward: batched forwards --------------------------------- */

int bg_lmgfn_theory_logr(const bg_nn_ckpt *ck, const bg_compute_opts *copts, const int32_t *x,
                         int nx, const int32_t *y, int ny, const bg_lmgfn_theory_space *s, int rows,
                         double *logr, bg_err *err)
{
    int V = ck->cfg.vocab_size, T = nx + s->max_len + ny;
    if (nx < 1 || ny < 1 || rows < 1)
        return bg_err_set(err, BG_EINVAL, "theory reward: X and Y need >= 1 token, rows >= 1");
    if (T > ck->cfg.seq_len)
        return bg_err_set(err, BG_EINVAL,
                          "theory reward: X (%d) + max length (%d) + Y (%d) tokens exceed the "
                          "model's context of %d",
                          nx, s->max_len, ny, ck->cfg.seq_len);
    for (int i = 0; i < nx + ny; i++) {
        int32_t t = i < nx ? x[i] : y[i - nx];
        if (t < 0 || t >= V)
            return bg_err_set(err, BG_EINVAL, "theory reward: token %d of %s is %d; vocabulary %d",
                              i < nx ? i : i - nx, i < nx ? "X" : "Y", t, V);
    }
    for (int j = 0; j < s->n_legal; j++)
        if (s->legal[j] < 0 || s->legal[j] >= V)
            return bg_err_set(err, BG_EINVAL, "theory reward: legal token %d outside vocabulary %d",
                              s->legal[j], V);
    if (rows > s->size)
        rows = (int)s->size;
    bg_nn_train_opts to = {.batch = rows,
                           .seq = T,
                           .lora_rank = 1,
                           .seed = 1,
                           .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}};
    bg_nn_trainer *t;
    int rc = bg_nn_train_create(ck, copts, &to, &t, err);
    if (rc != BG_OK)
        return rc;
    bg_nn_train_set_adapters(t, 0);
    size_t RT = (size_t)rows * (size_t)T;
    int32_t *tok = malloc(sizeof(int32_t) * RT), *tgt = malloc(sizeof(int32_t) * RT);
    float *lp = malloc(sizeof(float) * RT);
    int *len = malloc(sizeof(int) * (size_t)rows);
    if (!tok || !tgt || !lp || !len)
        rc = bg_err_set(err, BG_ENOMEM, "theory reward: out of memory for %d rows", rows);
    for (long first = 0; rc == BG_OK && first < s->size; first += rows) {
        int k = s->size - first < rows ? (int)(s->size - first) : rows;
        for (int r = 0; r < rows; r++) { /* rows past k repeat the last theory */
            int32_t *tk = tok + (size_t)r * T, *tg = tgt + (size_t)r * T;
            int n;
            memcpy(tk, x, sizeof(int32_t) * (size_t)nx);
            bg_lmgfn_theory_z(s, first + (r < k ? r : k - 1), tk + nx, &n);
            memcpy(tk + nx + n, y, sizeof(int32_t) * (size_t)ny);
            for (int p = nx + n + ny; p < T; p++)
                tk[p] = y[ny - 1];
            for (int p = 0; p < T; p++)
                tg[p] = p + 1 < T ? tk[p + 1] : 0;
            len[r] = n;
        }
        double loss;
        rc = bg_nn_train_eval(t, tok, tgt, NULL, &loss, lp, err);
        for (int r = 0; rc == BG_OK && r < k; r++) {
            double a = 0; /* positions nx-1 .. nx-1+n+ny-1 predict Z then Y */
            for (int p = nx - 1; p < nx - 1 + len[r] + ny; p++)
                a += lp[(size_t)r * T + p];
            logr[first + r] = a;
        }
    }
    free(tok);
    free(tgt);
    free(lp);
    free(len);
    bg_nn_train_destroy(t);
    return rc;
}

/* ---- exact distributions of a model over the space --------------------------- */

/* Prefixes shorter than max_len, coded base[i] + digits; lg[(code)*(V+1)+j]
 * = logit of legal token j (j < V) or ⊤ (j = V). */
typedef struct tree {
    long n_pref;
    double *lg;
} tree;

static long pref_base(const bg_lmgfn_theory_space *s, int i)
{
    long b = 0, p = 1;
    for (int l = 0; l < i; l++, p *= s->n_legal)
        b += p;
    return b;
}

static int tree_build(tree *tr, bg_nn_trainer *t, const int32_t *x, int nx, int stop,
                      const bg_lmgfn_theory_space *s, bg_err *err)
{
    int V = s->n_legal, L = s->max_len, vocab = bg_nn_train_config(t)->vocab_size;
    tr->n_pref = pref_base(s, L);
    tr->lg = malloc(sizeof(double) * (size_t)(tr->n_pref > 0 ? tr->n_pref : 1) * (size_t)(V + 1));
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(nx + L + 1));
    int rc = (!tr->lg || !logits || !seq)
                 ? bg_err_set(err, BG_ENOMEM, "theory: out of memory for the prefix tree")
                 : BG_OK;
    if (rc == BG_OK)
        memcpy(seq, x, sizeof(int32_t) * (size_t)nx);
    for (int i = 0; rc == BG_OK && i < L; i++) {
        long cnt = pref_base(s, i + 1) - pref_base(s, i);
        for (long d = 0; rc == BG_OK && d < cnt; d++) {
            long dd = d;
            for (int p = i - 1; p >= 0; p--, dd /= V)
                seq[nx + p] = s->legal[dd % V];
            rc = bg_nn_train_logits(t, seq, nx + i, logits, err);
            double *row = tr->lg + (size_t)(pref_base(s, i) + d) * (size_t)(V + 1);
            for (int j = 0; rc == BG_OK && j < V; j++)
                row[j] = logits[s->legal[j]];
            row[V] = logits[stop];
        }
    }
    free(logits);
    free(seq);
    if (rc != BG_OK) {
        free(tr->lg);
        tr->lg = NULL;
    }
    return rc;
}

/* logq[size] from the tree at temperature temp (lmgfn's length rules). */
static int tree_logq(const tree *tr, const bg_lmgfn_theory_space *s, double temp, double *logq,
                     bg_err *err)
{
    int V = s->n_legal, L = s->max_len;
    double *ls =
        malloc(sizeof(double) * (size_t)(tr->n_pref > 0 ? tr->n_pref : 1) * (size_t)(V + 1));
    if (!ls)
        return bg_err_set(err, BG_ENOMEM, "theory: out of memory for the prefix tree");
    for (int i = 0; i < L; i++)
        for (long c = pref_base(s, i); c < pref_base(s, i + 1); c++) {
            const double *row = tr->lg + (size_t)c * (size_t)(V + 1);
            double *out = ls + (size_t)c * (size_t)(V + 1);
            int nj = i < s->min_len ? V : V + 1; /* ⊤ barred before min_len */
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < nj; j++)
                mx = fmax(mx, row[j] / temp);
            for (int j = 0; j < nj; j++)
                sum += exp(row[j] / temp - mx);
            for (int j = 0; j < V + 1; j++)
                out[j] = j < nj ? row[j] / temp - mx - log(sum) : -INFINITY;
        }
    int32_t z[BG_LMGFN_MAX_LEN];
    for (long idx = 0; idx < s->size; idx++) {
        int n;
        bg_lmgfn_theory_z(s, idx, z, &n);
        double a = 0;
        long d = 0;
        for (int i = 0; i <= n && i < L; i++) {
            const double *row = ls + (size_t)(pref_base(s, i) + d) * (size_t)(V + 1);
            if (i == n) {
                a += row[V];
                break;
            }
            int j = legal_pos(s, z[i]);
            a += row[j];
            d = d * V + j;
        }
        logq[idx] = a;
    }
    free(ls);
    return BG_OK;
}

int bg_lmgfn_theory_logq(bg_nn_trainer *t, const int32_t *x, int nx, int stop,
                         const bg_lmgfn_theory_space *s, double temp, double *logq, bg_err *err)
{
    if (!(temp > 0))
        return bg_err_set(err, BG_EINVAL, "theory: temperature %g; expected > 0", temp);
    int vocab = bg_nn_train_config(t)->vocab_size;
    if (stop < 0 || stop >= vocab || nx < 1)
        return bg_err_set(err, BG_EINVAL,
                          "theory: termination token %d outside the vocabulary of %d, or no X",
                          stop, vocab);
    for (int j = 0; j < s->n_legal; j++)
        if (s->legal[j] < 0 || s->legal[j] >= vocab)
            return bg_err_set(err, BG_EINVAL, "theory: legal token %d outside the vocabulary of %d",
                              s->legal[j], vocab);
    tree tr;
    int rc = tree_build(&tr, t, x, nx, stop, s, err);
    if (rc == BG_OK)
        rc = tree_logq(&tr, s, temp, logq, err);
    free(tr.lg);
    return rc;
}

/* ---- measures ---------------------------------------------------------------- */

double bg_lmgfn_theory_normalise(double *a, long n)
{
    double mx = -INFINITY, sum = 0;
    for (long i = 0; i < n; i++)
        mx = fmax(mx, a[i]);
    for (long i = 0; i < n; i++)
        sum += exp(a[i] - mx);
    double lz = mx + log(sum);
    for (long i = 0; i < n; i++)
        a[i] -= lz;
    return lz;
}

double bg_lmgfn_theory_tv(const double *logp, const double *logq, long n)
{
    double d = 0;
    for (long i = 0; i < n; i++)
        d += fabs(exp(logp[i]) - exp(logq[i]));
    return d / 2;
}

double bg_lmgfn_theory_tv_counts(const double *logp, const long *counts, long n)
{
    long total = 0;
    for (long i = 0; i < n; i++)
        total += counts[i];
    double d = 0;
    for (long i = 0; i < n; i++)
        d += fabs(exp(logp[i]) - (total > 0 ? (double)counts[i] / (double)total : 0.0));
    return d / 2;
}

/* The k largest of logp (ties: the lower index) into top[k]. */
static void top_k(const double *logp, long n, int k, long *top)
{
    int m = 0;
    for (long i = 0; i < n; i++) {
        if (m == k && logp[i] <= logp[top[k - 1]])
            continue;
        int p = m < k ? m++ : k - 1;
        while (p > 0 && logp[top[p - 1]] < logp[i]) {
            top[p] = top[p - 1];
            p--;
        }
        top[p] = i;
    }
}

double bg_lmgfn_theory_recall(const double *logp, const long *counts, long n, int k)
{
    long top[64];
    if (k > 64)
        k = 64;
    if (k > n)
        k = (int)n;
    if (k < 1)
        return 0;
    top_k(logp, n, k, top);
    int hit = 0;
    for (int i = 0; i < k; i++)
        hit += counts[top[i]] > 0;
    return (double)hit / k;
}

/* `want` exact draws from exp(logq) into counts (zeroed first). */
static int draw(const double *logq, long n, long want, uint64_t seed, long *counts, bg_err *err)
{
    double *cdf = malloc(sizeof(double) * (size_t)n);
    if (!cdf)
        return bg_err_set(err, BG_ENOMEM, "theory: out of memory for %ld theories", n);
    double acc = 0;
    for (long i = 0; i < n; i++)
        cdf[i] = (acc += exp(logq[i]));
    memset(counts, 0, sizeof(long) * (size_t)n);
    uint64_t st = seed;
    for (long k = 0; k < want; k++) {
        double u = bg__lmgfn_unif(&st) * acc;
        long lo = 0, hi = n - 1;
        while (lo < hi) {
            long mid = (lo + hi) / 2;
            if (cdf[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        counts[lo]++;
    }
    free(cdf);
    return BG_OK;
}

/* ---- the MH baseline ------------------------------------------------------------ */

/* Moves allowed at length n: substitution, insertion, deletion. */
static int n_moves(const bg_lmgfn_theory_space *s, int n, int *moves)
{
    int m = 0;
    if (n >= 1 && s->n_legal >= 2)
        moves[m++] = 0;
    if (n < s->max_len)
        moves[m++] = 1;
    if (n > s->min_len)
        moves[m++] = 2;
    return m;
}

void bg_lmgfn_theory_mh(const bg_lmgfn_theory_space *s, const double *logr, long evals, long burn,
                        long want, uint64_t seed, long *counts, long *kept)
{
    memset(counts, 0, sizeof(long) * (size_t)s->size);
    *kept = 0;
    if (evals < 1)
        return;
    uint64_t st = seed;
    int32_t z[BG_LMGFN_MAX_LEN], w[BG_LMGFN_MAX_LEN];
    int n, V = s->n_legal;
    long cur = (long)(bg__lmgfn_unif(&st) * (double)s->size);
    bg_lmgfn_theory_z(s, cur, z, &n); /* evaluation 1: the start */
    long post = evals - 1 - burn, thin = want > 0 && post / want > 1 ? post / want : 1;
    for (long t = 1; t < evals; t++) {
        int moves[3], m = n_moves(s, n, moves), nw = n;
        int mv = moves[(int)(bg__lmgfn_unif(&st) * m)];
        double lratio = 0;
        memcpy(w, z, sizeof(int32_t) * (size_t)n);
        if (mv == 0) { /* substitution: symmetric */
            int p = (int)(bg__lmgfn_unif(&st) * n), j = legal_pos(s, z[p]);
            int k = (int)(bg__lmgfn_unif(&st) * (V - 1));
            w[p] = s->legal[k >= j ? k + 1 : k];
        } else if (mv == 1) { /* insertion: reverse is a deletion from n + 1 */
            int p = (int)(bg__lmgfn_unif(&st) * (n + 1)), m2[3];
            memmove(w + p + 1, w + p, sizeof(int32_t) * (size_t)(n - p));
            w[p] = s->legal[(int)(bg__lmgfn_unif(&st) * V)];
            nw = n + 1;
            lratio = log((double)m * V / n_moves(s, nw, m2));
        } else { /* deletion: reverse is an insertion into n - 1 */
            int p = (int)(bg__lmgfn_unif(&st) * n), m2[3];
            memmove(w + p, w + p + 1, sizeof(int32_t) * (size_t)(n - 1 - p));
            nw = n - 1;
            lratio = log((double)m / ((double)n_moves(s, nw, m2) * V));
        }
        long nxt = bg_lmgfn_theory_index(s, w, nw);
        double a = logr[nxt] - logr[cur] + lratio;
        if (a >= 0 || log(bg__lmgfn_unif(&st)) < a) {
            memcpy(z, w, sizeof(int32_t) * (size_t)nw);
            n = nw;
            cur = nxt;
        }
        long after = t - 1 - burn;
        if (after >= 0 && after % thin == 0 && (want <= 0 || *kept < want)) {
            counts[cur]++;
            (*kept)++;
        }
    }
}

/* ---- the task end to end ---------------------------------------------------------- */

void bg_lmgfn_theory_defaults(bg_lmgfn_theory_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_top = 8;
    o->min_len = 1;
    o->max_len = 3;
    o->seed = 1;
    o->samples = 10000;
    o->steps = 300;
    o->batch = 16;
    o->lora_rank = 4;
    o->lr = 1e-2f;
}

/* The GFlowNet's reward: the enumeration's table, shifted by a constant
 * (the best log R of the first batch: log Z starts at 0, so its Adam does
 * not have to travel tens of nats; the posterior is unchanged). */
typedef struct reward_ctx {
    const bg_lmgfn_theory_space *s;
    const double *logr;
    double shift;
    int shifted;
    long evals;
} reward_ctx;

static int table_reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                        double *logr, bg_err *err)
{
    (void)g;
    (void)err;
    reward_ctx *c = ctx;
    int S = c->s->max_len + 1;
    for (int j = 0; j < k; j++)
        for (int i = 0; i <= n[j]; i++) {
            double v = 0; /* prefixes shorter than min_len never terminate: unused */
            if (i >= c->s->min_len) {
                long idx = bg_lmgfn_theory_index(c->s, z[j], i);
                v = idx >= 0 ? c->logr[idx] : -1e3; /* the mask makes idx < 0 impossible */
                c->evals++;
            }
            logr[j * S + i] = v;
        }
    if (!c->shifted) {
        c->shift = -INFINITY;
        for (int j = 0; j < k; j++)
            for (int i = c->s->min_len; i <= n[j]; i++)
                c->shift = fmax(c->shift, logr[j * S + i]);
        c->shifted = 1;
    }
    for (int j = 0; j < k; j++)
        for (int i = c->s->min_len; i <= n[j]; i++)
            logr[j * S + i] -= c->shift;
    return BG_OK;
}

static void row_set(bg_lmgfn_theory_row *r, const char *method, double tv, const double *logp,
                    const long *counts, long n, long evals, long samples, double seconds)
{
    snprintf(r->method, sizeof r->method, "%s", method);
    r->tv = tv;
    r->tv_emp = bg_lmgfn_theory_tv_counts(logp, counts, n);
    r->recall5 = bg_lmgfn_theory_recall(logp, counts, n, 5);
    r->recall10 = bg_lmgfn_theory_recall(logp, counts, n, 10);
    r->evals = evals;
    r->samples = samples;
    r->seconds = seconds;
}

/* The theory vocabulary when none is given: the n_top likeliest next tokens
 * after x by the base, ids < 3 (unk, BOS, EOS) and ⊤ left out. */
static int pick_legal(bg_nn_trainer *t, const bg_lmgfn_theory_opts *o, int32_t *legal, bg_err *err)
{
    int vocab = bg_nn_train_config(t)->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)vocab);
    if (!lg)
        return bg_err_set(err, BG_ENOMEM, "theory: out of memory");
    int rc = bg_nn_train_logits(t, o->x, o->nx, lg, err);
    for (int k = 0; rc == BG_OK && k < o->n_top; k++) {
        int best = -1;
        for (int j = 3; j < vocab; j++)
            if (j != o->y[0] && lg[j] > -INFINITY && (best < 0 || lg[j] > lg[best]))
                best = j;
        if (best < 0)
            rc = bg_err_set(err, BG_EINVAL, "theory: the vocabulary has fewer than %d tokens",
                            o->n_top);
        else {
            legal[k] = best;
            lg[best] = -INFINITY;
        }
    }
    free(lg);
    return rc;
}

/* base and base T=…: the scorer (adapters off, no bias) restricted to the space. */
static int run_base(const bg_lmgfn_theory_opts *o, bg_nn_trainer *t, const double *logp,
                    bg_lmgfn_theory_result *res, double *logq, long *counts, bg_err *err)
{
    const bg_lmgfn_theory_space *s = &res->space;
    double t0 = now_s();
    tree tr;
    int rc = tree_build(&tr, t, o->x, o->nx, o->y[0], s, err);
    if (rc == BG_OK)
        rc = tree_logq(&tr, s, 1.0, logq, err);
    if (rc == BG_OK)
        rc = draw(logq, s->size, o->samples, o->seed * 31 + 5, counts, err);
    if (rc == BG_OK)
        row_set(&res->rows[1], "base", bg_lmgfn_theory_tv(logp, logq, s->size), logp, counts,
                s->size, 0, o->samples, now_s() - t0);
    static const double temps[] = {0.5, 0.7, 0.85, 1.0, 1.25, 1.5, 2.0, 3.0};
    double best_t = 1, best_tv = INFINITY;
    t0 = now_s();
    for (size_t i = 0; rc == BG_OK && i < sizeof temps / sizeof temps[0]; i++) {
        rc = tree_logq(&tr, s, temps[i], logq, err);
        double tv = rc == BG_OK ? bg_lmgfn_theory_tv(logp, logq, s->size) : INFINITY;
        if (tv < best_tv) {
            best_tv = tv;
            best_t = temps[i];
        }
    }
    if (rc == BG_OK)
        rc = tree_logq(&tr, s, best_t, logq, err);
    if (rc == BG_OK)
        rc = draw(logq, s->size, o->samples, o->seed * 31 + 7, counts, err);
    char name[32];
    snprintf(name, sizeof name, "base T=%.2g", best_t);
    if (rc == BG_OK)
        row_set(&res->rows[2], name, best_tv, logp, counts, s->size, 0, o->samples, now_s() - t0);
    free(tr.lg);
    return rc;
}

static int run_gfn(const bg_lmgfn_theory_opts *o, const bg_nn_ckpt *ck, const double *logr,
                   const double *logp, bg_lmgfn_theory_result *res, double *logq, long *counts,
                   bg_err *err)
{
    const bg_lmgfn_theory_space *s = &res->space;
    int vocab = ck->cfg.vocab_size;
    unsigned char *legal = calloc((size_t)vocab, 1);
    if (!legal)
        return bg_err_set(err, BG_ENOMEM, "theory: out of memory");
    for (int j = 0; j < s->n_legal; j++)
        legal[s->legal[j]] = 1;
    reward_ctx rctx = {.s = s, .logr = logr};
    bg_lmgfn_opts go = {.prompt = o->x,
                        .n_prompt = o->nx,
                        .stop_token = o->y[0],
                        .min_len = s->min_len,
                        .max_len = s->max_len,
                        .legal = legal,
                        .batch = o->batch,
                        .reward = table_reward,
                        .reward_ctx = &rctx};
    bg__lmgfn_task_schedule(&go, o->steps, o->seed);
    bg_nn_train_opts to = {
        .batch = 1,
        .seq = 1,
        .lora_rank = o->lora_rank,
        .seed = o->seed + 11,
        .adamw = {.lr = o->lr, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .max_norm = 1.0f}};
    double t0 = now_s();
    bg_lmgfn *g;
    int rc = bg_lmgfn_create(ck, &o->copts, &to, &go, &g, err);
    free(legal);
    if (rc != BG_OK)
        return rc;
    bg_lmgfn_stats st;
    for (int step = 0; rc == BG_OK && step < o->steps; step++) {
        rc = bg_lmgfn_step(g, &st, err);
        if (rc == BG_OK && !o->quiet && (step + 1) % 50 == 0)
            fprintf(stderr, "gflownet: step %d/%d, loss %.4f, log Z %.2f, beta %.2f, %ld evals\n",
                    step + 1, o->steps, st.loss, st.log_z, st.rtemp, rctx.evals);
    }
    if (rc == BG_OK)
        rc = bg_lmgfn_theory_logq(bg_lmgfn_trainer(g), o->x, o->nx, o->y[0], s, 1.0, logq, err);
    if (rc == BG_OK)
        rc = draw(logq, s->size, o->samples, o->seed * 31 + 11, counts, err);
    if (rc == BG_OK && o->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/gflownet.lora", o->out_dir);
        rc = bg_nn_lora_save(bg_lmgfn_trainer(g), path, err);
    }
    if (rc == BG_OK) {
        row_set(&res->rows[4], "gflownet", bg_lmgfn_theory_tv(logp, logq, s->size), logp, counts,
                s->size, rctx.evals, o->samples, now_s() - t0);
        for (int i = 0; i < 10 && i < s->size; i++)
            res->top_q[i] = exp(logq[res->top[i]]);
    }
    bg_lmgfn_destroy(g);
    return rc;
}

static int check_opts(const bg_lmgfn_theory_opts *o, bg_err *err)
{
    if (!o->model)
        return bg_err_set(err, BG_EINVAL, "theory task: no model (a llama2.c checkpoint)");
    if (!o->x || !o->y || o->nx < 1 || o->ny < 1 || o->nx > BG_LMGFN_THEORY_MAX_TEXT ||
        o->ny > BG_LMGFN_THEORY_MAX_TEXT)
        return bg_err_set(err, BG_EINVAL, "theory task: X and Y need 1..%d tokens each",
                          BG_LMGFN_THEORY_MAX_TEXT);
    if (o->samples < 1 || o->steps < 1 || o->batch < 1 || o->batch > 256 || o->lora_rank < 1)
        return bg_err_set(err, BG_EINVAL,
                          "theory task: samples >= 1, steps >= 1, batch 1..256 and lora rank >= "
                          "1 are required");
    if (!o->legal && (o->n_top < 1 || o->n_top > BG_LMGFN_THEORY_MAX_LEGAL))
        return bg_err_set(err, BG_EINVAL, "theory task: %d top tokens; expected 1..%d", o->n_top,
                          BG_LMGFN_THEORY_MAX_LEGAL);
    for (int j = 0; o->legal && j < o->n_legal; j++)
        if (o->legal[j] == o->y[0])
            return bg_err_set(err, BG_EINVAL,
                              "theory task: legal token %d is Y's first token, the termination "
                              "token; leave it out",
                              o->legal[j]);
    return BG_OK;
}

/* Fills res->space, the scorer-based rows and the tables; the caller owns
 * the buffers. */
static int run_all(const bg_lmgfn_theory_opts *o, const bg_nn_ckpt *ck, bg_lmgfn_theory_result *res,
                   double *logr, double *logp, double *logq, long *counts, bg_err *err)
{
    bg_lmgfn_theory_space *s = &res->space;
    long size = s->size;
    double t0 = now_s();
    int rc = bg_lmgfn_theory_logr(ck, &o->copts, o->x, o->nx, o->y, o->ny, s, 256, logr, err);
    res->enum_seconds = now_s() - t0;
    if (rc != BG_OK)
        return rc;
    memcpy(logp, logr, sizeof(double) * (size_t)size);
    res->log_z = bg_lmgfn_theory_normalise(logp, size);
    for (long i = 0; i < size; i++)
        res->entropy -= logp[i] > -INFINITY ? exp(logp[i]) * logp[i] : 0.0;
    int k = size < 10 ? (int)size : 10;
    top_k(logp, size, k, res->top);
    for (int i = 0; i < k; i++)
        res->top_p[i] = exp(logp[res->top[i]]);
    rc = draw(logp, size, o->samples, o->seed * 31 + 3, counts, err);
    if (rc == BG_OK)
        row_set(&res->rows[0], "exact", 0.0, logp, counts, size, size, o->samples,
                res->enum_seconds);
    bg_nn_train_opts to = {.batch = 1,
                           .seq = o->nx + s->max_len,
                           .lora_rank = 1,
                           .seed = 1,
                           .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}};
    bg_nn_trainer *t = NULL;
    if (rc == BG_OK && (rc = bg_nn_train_create(ck, &o->copts, &to, &t, err)) == BG_OK) {
        bg_nn_train_set_adapters(t, 0);
        rc = run_base(o, t, logp, res, logq, counts, err);
        bg_nn_train_destroy(t);
    }
    if (rc == BG_OK)
        rc = run_gfn(o, ck, logr, logp, res, logq, counts, err);
    if (rc == BG_OK) { /* mh: the GFlowNet's reward evaluations, burn-in a fifth */
        long evals = res->rows[4].evals, kept;
        t0 = now_s();
        bg_lmgfn_theory_mh(s, logr, evals, evals / 5, o->samples, o->seed * 31 + 13, counts, &kept);
        row_set(&res->rows[3], "mh", NAN, logp, counts, size, evals, kept, now_s() - t0);
    }
    return rc;
}

int bg_lmgfn_theory_run(const bg_lmgfn_theory_opts *o, bg_lmgfn_theory_result *res, bg_err *err)
{
    memset(res, 0, sizeof *res);
    int rc = check_opts(o, err);
    if (rc != BG_OK)
        return rc;
    if (o->out_dir && mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
        return bg_err_set(err, BG_EIO, "theory task: cannot create --out directory %s: %s",
                          o->out_dir, strerror(errno));
    bg_nn_ckpt ck;
    rc = bg_nn_ckpt_open(&ck, o->model, err);
    if (rc != BG_OK)
        return rc;
    int32_t legal[BG_LMGFN_THEORY_MAX_LEGAL];
    int n_legal = o->legal ? o->n_legal : o->n_top;
    if (o->nx + o->max_len + o->ny > ck.cfg.seq_len)
        rc = bg_err_set(err, BG_EINVAL,
                        "theory task: X (%d) + max length (%d) + Y (%d) tokens exceed the "
                        "context of %s (%d)",
                        o->nx, o->max_len, o->ny, o->model, ck.cfg.seq_len);
    for (int i = 0; rc == BG_OK && i < o->nx + o->ny; i++) {
        int32_t tk = i < o->nx ? o->x[i] : o->y[i - o->nx];
        if (tk < 0 || tk >= ck.cfg.vocab_size)
            rc = bg_err_set(err, BG_EINVAL, "theory task: token %d of %s is %d; %s has %d", i,
                            i < o->nx ? "X" : "Y", tk, o->model, ck.cfg.vocab_size);
    }
    for (int j = 0; rc == BG_OK && o->legal && j < o->n_legal; j++)
        if (o->legal[j] < 0 || o->legal[j] >= ck.cfg.vocab_size)
            rc = bg_err_set(err, BG_EINVAL, "theory task: legal token %d; %s has %d tokens",
                            o->legal[j], o->model, ck.cfg.vocab_size);
    if (rc == BG_OK && o->legal) {
        if (o->n_legal < 1 || o->n_legal > BG_LMGFN_THEORY_MAX_LEGAL)
            rc = bg_err_set(err, BG_EINVAL, "theory task: %d legal tokens; expected 1..%d",
                            o->n_legal, BG_LMGFN_THEORY_MAX_LEGAL);
        else
            memcpy(legal, o->legal, sizeof(int32_t) * (size_t)o->n_legal);
    } else if (rc == BG_OK) {
        bg_nn_train_opts to = {.batch = 1,
                               .seq = o->nx,
                               .lora_rank = 1,
                               .seed = 1,
                               .adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f}};
        bg_nn_trainer *t;
        if ((rc = bg_nn_train_create(&ck, &o->copts, &to, &t, err)) == BG_OK) {
            bg_nn_train_set_adapters(t, 0);
            rc = pick_legal(t, o, legal, err);
            bg_nn_train_destroy(t);
        }
    }
    if (rc == BG_OK)
        rc = bg_lmgfn_theory_space_init(&res->space, legal, n_legal, o->min_len, o->max_len, err);
    long size = res->space.size;
    double *logr = NULL, *logp = NULL, *logq = NULL;
    long *counts = NULL;
    if (rc == BG_OK) {
        logr = malloc(sizeof(double) * (size_t)size);
        logp = malloc(sizeof(double) * (size_t)size);
        logq = malloc(sizeof(double) * (size_t)size);
        counts = malloc(sizeof(long) * (size_t)size);
        if (!logr || !logp || !logq || !counts)
            rc = bg_err_set(err, BG_ENOMEM, "theory task: out of memory for %ld theories", size);
    }
    if (rc == BG_OK)
        rc = run_all(o, &ck, res, logr, logp, logq, counts, err);
    free(logr);
    free(logp);
    free(logq);
    free(counts);
    bg_nn_ckpt_close(&ck);
    return rc;
}
