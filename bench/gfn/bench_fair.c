/*
 * bench_fair.c — section 5 of bench_gfn (`bench_gfn --fair`): the GFlowNet
 * and Metropolis–Hastings on the same footing (issue 16 item 5).
 *
 * The old comparison (section 1) set the GFlowNet's exact q^⊤ against the
 * empirical histogram of one MH chain, burn-in included: Monte Carlo noise
 * only one side paid. Here both sides pay the same:
 *
 * Part A, samples at equal reward evaluations. For each data set (the
 * bandit env: 10 arms, 25 pulls; evaluation seeds, never the tuning seed)
 * and d where the exact posterior is known: the GFlowNet (SubTB and TB,
 * the bench's config) trains on a budget of trajectories and uses E
 * reward evaluations; its K samples are drawn from the trained policy
 * (bg_gfn_sample: samples, not q^⊤). MH gets the same E evaluations: half
 * burn-in, then K states thinned evenly from the rest. Candidates from
 * either are scored exactly (that scoring is the same for both and is not
 * counted). Per context (the arms and random x, 64 per data set): the iid
 * and non-iid (α = 0.01) bounds from the candidates against the exact
 * ones over all 2^d hypotheses — how often below (by > 1e-9), by how much
 * — and the TV of the K-sample histogram from the posterior (the same
 * K-sample noise on both sides). A rate of 0/N is printed with its
 * one-sided 95 % upper bound (Clopper–Pearson: 1 − 0.05^(1/N)).
 *
 * Part B, exact distributions where both can be computed (d = 8, 10): the
 * exact q^⊤ of the GFlowNet after E evaluations against the exact
 * distribution of the MH chain after E steps (uniform start, the
 * single-bit-flip kernel applied E times to the vector): TV and KL(p‖·),
 * and the mean over contexts of (1 − m(τ*_x))^K, the chance that K iid
 * draws from m miss the exact cautious hypothesis — an upper bound on the
 * chance that the iid bound from K such draws falls below the exact one.
 *
 * Tuning: the GFlowNet's learning rates were tuned on d = 10 with data seed
 * 1 (bench_gfn.c gfn_config); MH has nothing to tune but burn-in and
 * thinning, fixed above. Part A and B use data seeds 101.. only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gfn.h"

#define FAIR_K 256
#define FAIR_CTX 64
#define FAIR_ALPHA 0.01
#define FAIR_SEED0 101

typedef struct tally {
    uint64_t n, below_iid, below_non;
    double short_iid_sum, short_iid_max, short_non_sum, short_non_max, tv_sum;
    uint64_t runs, evals;
} tally;

/* One-sided 95 % Clopper–Pearson upper bound of x/n (bisection on the
 * binomial tail). */
static double cp_upper(uint64_t x, uint64_t n)
{
    if (x >= n)
        return 1.0;
    double lo = (double)x / n, hi = 1.0;
    for (int it = 0; it < 60; it++) {
        double p = 0.5 * (lo + hi), cdf = 0, term = pow(1 - p, (double)n);
        for (uint64_t k = 0; k <= x; k++) {
            cdf += term;
            term *= (double)(n - k) / (double)(k + 1) * p / (1 - p);
        }
        if (cdf > 0.05)
            lo = p;
        else
            hi = p;
    }
    return hi;
}

static void print_rate(uint64_t x, uint64_t n)
{
    printf(" %llu/%llu (%.3g, 95%% ≤ %.2g) |", (unsigned long long)x, (unsigned long long)n,
           (double)x / n, cp_upper(x, n));
}

static void ctx_of(const bench_env *e, uint64_t s, uint64_t *x)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, s + 7);
    for (int i = 0; i < FAIR_CTX; i++)
        x[i] = i < (int)e->n_arms ? e->arm[i] : bg_gfn_rng_u64(&r) & ((1ULL << e->d) - 1);
}

/* The exact reference of data set (d, s): log R and the posterior over
 * all 2^d ids into *lr and *p (new: free both), the contexts x and their
 * exact bounds ex. */
static void exact_ref(bench_env *e, uint32_t d, uint64_t s, double **lr, double **p, uint64_t *x,
                      bench_oracle *ex)
{
    bench_env_init(e, d, 10, 25, s);
    size_t n = (size_t)1 << d;
    *lr = malloc(n * sizeof **lr);
    *p = bench_exact_posterior(e, *lr);
    uint64_t *all = malloc(n * sizeof *all);
    uint32_t *order = malloc(2 * n * sizeof *order);
    for (size_t h = 0; h < n; h++)
        all[h] = h;
    ctx_of(e, s, x);
    for (int c = 0; c < FAIR_CTX; c++)
        bench_oracle_eval(e, all, *lr, n, x[c], FAIR_ALPHA, order, &ex[c]);
    free(all);
    free(order);
}

/* A GFlowNet with the bench's settings (bench_gfn.c gfn_config: tuned on
 * d = 10, data seed 1) for a run of traj trajectories. */
static bg_gfn *gfn_new_fair(uint32_t d, bg_gfn_loss loss, uint64_t traj, uint64_t s,
                            uint32_t *steps)
{
    bg_gfn_config c;
    bg_gfn_config_default(&c, d);
    c.loss = loss;
    c.seed = s;
    c.lr = 1e-2;
    c.lr_end = 1e-5;
    c.lr_horizon = (uint32_t)(traj / c.batch);
    *steps = c.lr_horizon;
    bg_gfn *g;
    char err[256];
    if (bg_gfn_create(&c, &g, err, sizeof err) != BG_PLUGIN_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return g;
}

/* K samples (with repeats) -> the tally, against the exact bounds. */
static void score(const bench_env *e, const double *p, const double *lr_all, const uint64_t *x,
                  const bench_oracle *ex, uint64_t *samples, tally *t)
{
    size_t n_all = (size_t)1 << e->d;
    double *cnt = calloc(n_all, sizeof *cnt), tv = 0;
    for (int i = 0; i < FAIR_K; i++)
        cnt[samples[i]] += 1.0 / FAIR_K;
    for (size_t h = 0; h < n_all; h++)
        tv += 0.5 * fabs(cnt[h] - p[h]);
    free(cnt);
    size_t n = bench_unique(samples, FAIR_K);
    double lr[FAIR_K];
    uint32_t order[2 * FAIR_K];
    for (size_t i = 0; i < n; i++)
        lr[i] = lr_all[samples[i]];
    for (int c = 0; c < FAIR_CTX; c++) {
        bench_oracle o;
        bench_oracle_eval(e, samples, lr, n, x[c], FAIR_ALPHA, order, &o);
        double si = ex[c].iid_bound - o.iid_bound, sn = ex[c].noniid_bound - o.noniid_bound;
        t->n++;
        if (si > 1e-9) {
            t->below_iid++;
            t->short_iid_sum += si;
            t->short_iid_max = fmax(t->short_iid_max, si);
        }
        if (sn > 1e-9) {
            t->below_non++;
            t->short_non_sum += sn;
            t->short_non_max = fmax(t->short_non_max, sn);
        }
    }
    t->tv_sum += tv;
    t->runs++;
}

static bg_gfn *gfn_trained(bench_env *e, bg_gfn_loss loss, uint64_t traj, uint64_t s,
                           uint64_t *evals)
{
    uint32_t steps;
    bg_gfn *g = gfn_new_fair(e->d, loss, traj, s, &steps);
    char err[256];
    e->reward_evals = 0;
    if (bg_gfn_train(g, bench_log_reward, e, steps, err, sizeof err) != BG_PLUGIN_OK) {
        fprintf(stderr, "train: %s\n", err);
        exit(1);
    }
    *evals = e->reward_evals;
    return g;
}

/* MH with `evals` reward evaluations: half burn-in, K thinned states. */
static void mh_samples(bench_env *e, uint64_t evals, uint64_t s, uint64_t *out)
{
    bench_mh m;
    e->reward_evals = 0;
    bench_mh_init(&m, e, s + 100);
    uint64_t steps = evals > 1 ? evals - 1 : 1, burn = steps / 2;
    uint64_t thin = (steps - burn) / FAIR_K ? (steps - burn) / FAIR_K : 1;
    for (uint64_t i = 0; i < burn; i++)
        bench_mh_step(&m);
    for (int k = 0; k < FAIR_K; k++) {
        uint64_t h = m.cur;
        for (uint64_t i = 0; i < thin; i++)
            h = bench_mh_step(&m);
        out[k] = h;
    }
}

static void part_a(uint32_t d, uint64_t traj, int n_seeds)
{
    enum { GFN_SUB, GFN_TB, MH_SUB, MH_TB, EXACT, N_METH };
    static const char *names[N_METH] = {"GFlowNet SubTB", "GFlowNet TB", "MH at SubTB's evals",
                                        "MH at TB's evals",
                                        "reference: K iid draws of the exact posterior"};
    tally t[N_METH];
    memset(t, 0, sizeof t);
    double tvq[2] = {0, 0};
    for (int si = 0; si < n_seeds; si++) {
        uint64_t s = FAIR_SEED0 + (uint64_t)si;
        bench_env e;
        size_t n_all = (size_t)1 << d;
        double *lr_all, *p;
        uint64_t x[FAIR_CTX];
        bench_oracle ex[FAIR_CTX];
        exact_ref(&e, d, s, &lr_all, &p, x, ex);
        uint64_t smp[FAIR_K];
        for (int l = 0; l < 2; l++) {
            uint64_t ev;
            bg_gfn *g = gfn_trained(&e, l == 0 ? BG_GFN_LOSS_SUBTB : BG_GFN_LOSS_TB, traj, s, &ev);
            double *lq = malloc(n_all * sizeof *lq), tv = 0;
            bg_gfn_log_q_all(g, lq);
            for (size_t h = 0; h < n_all; h++)
                tv += 0.5 * fabs(exp(lq[h]) - p[h]);
            tvq[l] += tv / n_seeds;
            free(lq);
            bg_rng r;
            bg_gfn_rng_seed(&r, s + 55);
            bg_gfn_sample(g, &r, FAIR_K, smp, NULL);
            score(&e, p, lr_all, x, ex, smp, &t[l]);
            t[l].evals += ev;
            bg_gfn_destroy(g);
            mh_samples(&e, ev, s, smp);
            score(&e, p, lr_all, x, ex, smp, &t[2 + l]);
            t[2 + l].evals += e.reward_evals;
        }
        bg_rng r; /* the floor: K independent exact samples */
        bg_gfn_rng_seed(&r, s + 77);
        for (int k = 0; k < FAIR_K; k++) {
            double u = bg_gfn_rng_uniform(&r), cum = 0;
            smp[k] = n_all - 1;
            for (size_t h = 0; h < n_all; h++)
                if ((cum += p[h]) > u) {
                    smp[k] = h;
                    break;
                }
        }
        score(&e, p, lr_all, x, ex, smp, &t[EXACT]);
        fprintf(stderr, "\r  fair d=%u seed %llu done   ", d, (unsigned long long)s);
        free(lr_all);
        free(p);
    }
    fprintf(stderr, "\r%40s\r", "");
    printf("\n### d = %u: %d data sets (seeds %d-%d), %llu training trajectories, K = %d, %d "
           "contexts each\n\n",
           d, n_seeds, FAIR_SEED0, FAIR_SEED0 + n_seeds - 1, (unsigned long long)traj, FAIR_K,
           FAIR_CTX);
    printf("| method | reward evals (mean) | iid bound below exact | mean / max shortfall | "
           "non-iid (α 0.01) below exact | mean / max shortfall | TV(K-sample histogram, p) |\n"
           "|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < N_METH; m++) {
        const tally *a = &t[m];
        printf("| %s | %.0f |", names[m], (double)a->evals / a->runs);
        print_rate(a->below_iid, a->n);
        printf(" %.3g / %.3g |", a->below_iid ? a->short_iid_sum / a->below_iid : 0,
               a->short_iid_max);
        print_rate(a->below_non, a->n);
        printf(" %.3g / %.3g | %.3f |\n", a->below_non ? a->short_non_sum / a->below_non : 0,
               a->short_non_max, a->tv_sum / a->runs);
    }
    printf("\n(The GFlowNets' exact TV(q^T, p), mean over the data sets: SubTB %.3f, TB %.3f; "
           "the reference row costs no reward evaluation: it is the floor K samples allow.)\n",
           tvq[0], tvq[1]);
}

/* The exact distribution of the MH chain (uniform start, single-bit
 * flips) after `steps` more steps, in place. */
static void mh_kernel(const double *lr, uint32_t d, double *pi, double *tmp, uint64_t steps)
{
    size_t n = (size_t)1 << d;
    for (uint64_t s = 0; s < steps; s++) {
        memset(tmp, 0, n * sizeof *tmp);
        for (size_t h = 0; h < n; h++) {
            if (pi[h] == 0)
                continue;
            double stay = 1.0;
            for (uint32_t k = 0; k < d; k++) {
                size_t g = h ^ ((size_t)1 << k);
                double a = lr[g] >= lr[h] ? 1.0 : exp(lr[g] - lr[h]);
                tmp[g] += pi[h] * a / d;
                stay -= a / d;
            }
            tmp[h] += pi[h] * stay;
        }
        memcpy(pi, tmp, n * sizeof *tmp);
    }
}

/* TV, KL(p‖m) and the chance K iid draws of m miss τ*, as table cells. */
static void dist_row(const double *m, const double *p, const bench_oracle *ex, size_t n)
{
    double tv = 0, kl = 0, miss = 0;
    for (size_t h = 0; h < n; h++) {
        tv += 0.5 * fabs(m[h] - p[h]);
        if (p[h] > 0)
            kl += p[h] * (log(p[h]) - log(fmax(m[h], 1e-300)));
    }
    kl = fmax(kl, 0); /* rounding below 0 */
    for (int c = 0; c < FAIR_CTX; c++)
        miss += pow(1 - m[ex[c].cautious], FAIR_K) / FAIR_CTX;
    printf(" %.4f | %.3f | %.3g |", tv, kl, miss);
}

static void part_b(uint32_t d, uint64_t traj)
{
    uint64_t s = FAIR_SEED0;
    bench_env e;
    size_t n = (size_t)1 << d;
    double *lr, *p;
    uint64_t x[FAIR_CTX];
    bench_oracle ex[FAIR_CTX];
    exact_ref(&e, d, s, &lr, &p, x, ex);
    uint32_t steps;
    bg_gfn *g = gfn_new_fair(d, BG_GFN_LOSS_SUBTB, traj, s, &steps);
    char err[256];
    double *q = malloc(n * sizeof *q), *pi = malloc(n * sizeof *pi), *tmp = malloc(n * sizeof *tmp);
    for (size_t h = 0; h < n; h++)
        pi[h] = 1.0 / n;
    printf("\n### d = %u (data seed %llu): exact distributions at equal reward evaluations\n\n"
           "| reward evals | GFlowNet SubTB q^T: TV | KL(p‖q) | P(K=%d iid miss τ*) | MH after "
           "that many steps: TV | KL(p‖π) | P(K=%d iid miss τ*) |\n|---|---|---|---|---|---|---|\n",
           d, (unsigned long long)s, FAIR_K, FAIR_K);
    /* MH alone first, on a log grid: where its exact distribution gets to */
    uint64_t mh_steps = 0;
    static const uint64_t early[] = {100, 300, 1000, 3000};
    for (int k = 0; k < 4; k++) {
        mh_kernel(lr, d, pi, tmp, early[k] - mh_steps);
        mh_steps = early[k];
        printf("| %llu | - | - | - |", (unsigned long long)mh_steps);
        dist_row(pi, p, ex, n);
        printf("\n");
    }
    uint32_t per = steps / 8;
    e.reward_evals = 0;
    for (int k = 0; k < 8; k++) {
        if (bg_gfn_train(g, bench_log_reward, &e, per, err, sizeof err) != BG_PLUGIN_OK) {
            fprintf(stderr, "train: %s\n", err);
            exit(1);
        }
        uint64_t ev = e.reward_evals;
        bg_gfn_log_q_all(g, q);
        for (size_t h = 0; h < n; h++)
            q[h] = exp(q[h]);
        if (ev > mh_steps) {
            mh_kernel(lr, d, pi, tmp, ev - mh_steps);
            mh_steps = ev;
        }
        printf("| %llu |", (unsigned long long)ev);
        dist_row(q, p, ex, n);
        dist_row(pi, p, ex, n);
        printf("\n");
        fflush(stdout);
    }
    bg_gfn_destroy(g);
    free(q);
    free(pi);
    free(tmp);
    free(lr);
    free(p);
}

void bench_fair(int n_seeds, int quick)
{
    printf("\n## 5. GFlowNet vs MH on the same footing (issue 16 item 5)\n");
    printf("\nPart A: K = %d samples from each at equal reward evaluations (GFlowNet: samples "
           "of the trained policy; MH: half burn-in, K states thinned from the rest), scored "
           "exactly; bounds against the exact ones over all 2^d hypotheses.\n",
           FAIR_K);
    part_a(10, 20000, n_seeds);
    if (!quick)
        part_a(12, 40000, n_seeds);
    printf("\nPart B: exact q^T of the GFlowNet vs the exact distribution of the MH chain "
           "(uniform start) at equal reward evaluations; P(miss τ*) = mean over %d contexts "
           "of (1 - m(τ*))^%d.\n",
           FAIR_CTX, FAIR_K);
    part_b(8, 10000);
    part_b(10, 20000);
}
