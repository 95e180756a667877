/*
 * bench_gfn.c — the GFlowNet quality benchmark (issue 6, spec/gflownet.md
 * "How to know it works"). Not a test: run by hand, results and commands
 * in docs/GFLOWNET.md.
 *
 *   bench_gfn [--quick] [--large-only] [--tilted-only] [--contexts N] [--out DIR]
 *             [--seed N] [--fair [--fair-seeds N]]
 *
 * Target: the exploding bandit's posterior P(w | D) ∝ P(w)·P(D|w) for a
 * fixed data set (10 arms, 25 pulls — one episode of the paper), d = 10 …
 * 16 bits where it can be enumerated, 32 and 64 where it cannot. The
 * reward is the bandit plugin's formula (bench_env.c), through the real
 * bg_bandit.so when the plugin host can load it (bench_plugin.c).
 *
 * Sections, each printed as a table (and plotted with gnuplot into DIR):
 *   1. convergence: TV and KL(p‖q^⊤) between the exact q^⊤ and the exact
 *      posterior against trajectories and reward evaluations, TB vs
 *      modified SubTB, with Metropolis–Hastings (single-bit flips, the
 *      empirical distribution of its chain) at equal reward evaluations;
 *      and the evaluations each needs to reach TV ≤ 0.1 / 0.05 / 0.02;
 *   2. oracle at d = 10 and 16: among K = 1024 samples, recall of the
 *      exact cautious hypothesis over many contexts and of the exact
 *      plausible sets I^α, and the sampled bound vs the exact bound;
 *   3. d = 32 and 64: the bound from GFlowNet samples (TB, SubTB, and TB
 *      with its replay buffer seeded by a short MH chain) vs MH samples at
 *      equal reward evaluations, its coverage of the true hypothesis's
 *      harm, the best cautious score found, and wall time;
 *   4. the harm-tilted sampler at d = 16 (bench_tilted.c): per context, a
 *      sampler warm-started from a trained posterior sampler and trained
 *      on R_x = P(h)·P(D|h)·P(H|x,h); recall of the exact cautious
 *      hypothesis among K tilted vs K posterior samples, and the bound gap.
 *   5. (--fair only; bench_fair.c) GFlowNet vs MH on the same footing: K
 *      samples of each at equal reward evaluations against the exact
 *      bounds, on evaluation seeds; exact q^⊤ vs the exact MH-chain
 *      distribution. Section 1's MH column (an empirical histogram set
 *      against an exact q^⊤) is not a fair comparison: see section 5.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_gfn.h"
#include "gfn/gfn.h"

#define N_ARMS 10
#define N_OBS 25
#define K_SAMPLES 1024
#define N_CONTEXTS 256
#define N_CHECK 24

static const char *out_dir = "bench-gfn-out";
static int quick, use_plugin, only_large, only_tilted, only_fair, fair_seeds = 8;
static int tilt_contexts = 64; /* section 4's contexts, 1..N_CONTEXTS */
static uint64_t seed = 1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(const char *what, uint64_t done, uint64_t total, double tv)
{
    fprintf(stderr, "\r  %-24s %8llu / %-8llu TV %.4f   ", what, (unsigned long long)done,
            (unsigned long long)total, tv);
    if (done >= total)
        fprintf(stderr, "\r%*s\r", 70, "");
}

static FILE *open_out(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_gfn: cannot write %s\n", path);
        exit(1);
    }
    return f;
}

/* The fixed data set for d bits; its reward through the bandit plugin when
 * that loaded at start-up. Detach with bench_plugin_detach. */
static void env_setup_obs(bench_env *e, uint32_t d, uint32_t n_obs)
{
    bench_env_init(e, d, N_ARMS, n_obs, seed);
    char why[512];
    if (use_plugin && bench_plugin_attach(e, why, sizeof why) != 0) {
        fprintf(stderr, "bench_gfn: d=%u: %s\n", d, why);
        exit(1);
    }
}

static void env_setup(bench_env *e, uint32_t d)
{
    env_setup_obs(e, d, N_OBS);
}

/* The exact posterior p over all 2^d ids. */
static double *exact_posterior(const bench_env *e)
{
    return bench_exact_posterior(e, NULL);
}

static void gfn_distances(const bg_gfn *g, const double *p, double *lq, double *tv, double *kl)
{
    size_t n = (size_t)1 << bg_gfn_get_config(g)->n_bits;
    bg_gfn_log_q_all(g, lq);
    *tv = 0;
    *kl = 0;
    for (size_t h = 0; h < n; h++) {
        *tv += 0.5 * fabs(exp(lq[h]) - p[h]);
        if (p[h] > 0)
            *kl += p[h] * (log(p[h]) - lq[h]);
    }
}

static bg_gfn_config gfn_config(uint32_t d, bg_gfn_loss loss, uint64_t budget_traj)
{
    bg_gfn_config c;
    bg_gfn_config_default(&c, d);
    c.loss = loss;
    c.seed = seed;
    c.lr = 1e-2; /* tuned on d = 10 (docs/GFLOWNET.md): high, then decayed */
    c.lr_end = 1e-5;
    c.lr_horizon = (uint32_t)(budget_traj / c.batch);
    return c;
}

/* ---- 1. convergence -------------------------------------------------- */

typedef struct curve {
    uint64_t traj[N_CHECK], evals[N_CHECK];
    double tv[N_CHECK], kl[N_CHECK], secs[N_CHECK];
    int n;
} curve;

static bg_gfn *train_curve(bench_env *e, const double *p, bg_gfn_loss loss, uint64_t budget,
                           curve *cv)
{
    bg_gfn_config c = gfn_config(e->d, loss, budget);
    bg_gfn *g;
    char err[256];
    if (bg_gfn_create(&c, &g, err, sizeof err) != BG_PLUGIN_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    double *lq = malloc(((size_t)1 << e->d) * sizeof *lq), secs = 0;
    e->reward_evals = 0;
    memset(cv, 0, sizeof *cv);
    uint64_t per = budget / N_CHECK / c.batch;
    char label[64];
    snprintf(label, sizeof label, "d=%u %s", e->d, bg_gfn_loss_name(loss));
    for (int k = 0; k < N_CHECK; k++) {
        double t1 = now_s();
        if (bg_gfn_train(g, bench_log_reward, e, (uint32_t)per, err, sizeof err) != BG_PLUGIN_OK) {
            fprintf(stderr, "train: %s\n", err);
            exit(1);
        }
        secs += now_s() - t1;
        bg_gfn_stats st;
        bg_gfn_get_stats(g, &st);
        cv->traj[k] = st.trajectories;
        cv->evals[k] = e->reward_evals;
        cv->secs[k] = secs;
        gfn_distances(g, p, lq, &cv->tv[k], &cv->kl[k]);
        cv->n = k + 1;
        progress(label, st.trajectories, per * c.batch * N_CHECK, cv->tv[k]);
    }
    free(lq);
    return g;
}

/* MH chain's empirical TV at the given evaluation counts. */
static void mh_curve(bench_env *e, const double *p, const uint64_t *at, int n_at, double *tv)
{
    size_t n = (size_t)1 << e->d;
    double *cnt = calloc(n, sizeof *cnt);
    bench_mh m;
    e->reward_evals = 0;
    bench_mh_init(&m, e, seed + 100);
    uint64_t visits = 0;
    for (int k = 0; k < n_at; k++) {
        while (e->reward_evals < at[k]) {
            cnt[bench_mh_step(&m)] += 1;
            visits++;
        }
        double s = 0;
        for (size_t h = 0; h < n; h++)
            s += fabs(cnt[h] / visits - p[h]);
        tv[k] = 0.5 * s;
        progress("MH", (uint64_t)k + 1, (uint64_t)n_at, tv[k]);
    }
    free(cnt);
}

/* First evaluation count at which a curve reaches tv ≤ target (0 = never). */
static uint64_t evals_to(const uint64_t *evals, const double *tv, int n, double target)
{
    for (int k = 0; k < n; k++)
        if (tv[k] <= target)
            return evals[k];
    return 0;
}

static void print_evals_to(const char *name, const uint64_t *evals, const double *tv, int n)
{
    printf("  %-22s", name);
    const double targets[] = {0.1, 0.05, 0.02};
    for (int t = 0; t < 3; t++) {
        uint64_t v = evals_to(evals, tv, n, targets[t]);
        if (v)
            printf(" %12llu", (unsigned long long)v);
        else
            printf(" %12s", "not reached");
    }
    printf("\n");
}

/* Convergence for one d; returns the trained SubTB sampler (caller frees). */
static bg_gfn *convergence(uint32_t d, uint64_t budget)
{
    bench_env e;
    env_setup(&e, d);
    double *p = exact_posterior(&e);
    curve tb, sub;
    bg_gfn *g_tb = train_curve(&e, p, BG_GFN_LOSS_TB, budget, &tb);
    bg_gfn *g_sub = train_curve(&e, p, BG_GFN_LOSS_SUBTB, budget, &sub);
    bg_gfn_destroy(g_tb);
    /* MH at both methods' evaluation counts, and on a log grid beyond */
    uint64_t at[3 * N_CHECK];
    int n_at = 0;
    for (int k = 0; k < N_CHECK; k++) {
        at[n_at++] = tb.evals[k];
        at[n_at++] = sub.evals[k];
    }
    for (int i = 0; i < n_at; i++) /* sort (insertion) */
        for (int j = i; j > 0 && at[j] < at[j - 1]; j--) {
            uint64_t t = at[j];
            at[j] = at[j - 1];
            at[j - 1] = t;
        }
    /* and beyond, up to 30x the most the GFlowNets used (log grid) */
    uint64_t last = at[n_at - 1];
    for (int k = 1; k <= 9; k++)
        at[n_at++] = (uint64_t)(last * pow(10.0, k / 6.0));
    double mh_tv[3 * N_CHECK];
    mh_curve(&e, p, at, n_at, mh_tv);

    double pmax = 0;
    for (size_t h = 0; h < ((size_t)1 << d); h++)
        pmax = p[h] > pmax ? p[h] : pmax;
    printf("\n### d = %u: %u arms, %u pulls, posterior max %.3f, P(w*|D) = %.3g\n\n", d, N_ARMS,
           N_OBS, pmax, p[e.w_star]);
    printf("| trajectories | TB TV | TB KL | TB evals | SubTB TV | SubTB KL | SubTB evals "
           "| MH TV @ TB evals | MH TV @ SubTB evals | SubTB train s |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < N_CHECK; k += (k < 4 ? 1 : 2)) {
        double mh_tb = 0, mh_sub = 0;
        for (int i = 0; i < n_at; i++) {
            if (at[i] == tb.evals[k])
                mh_tb = mh_tv[i];
            if (at[i] == sub.evals[k])
                mh_sub = mh_tv[i];
        }
        printf("| %llu | %.4f | %.4f | %llu | %.4f | %.4f | %llu | %.4f | %.4f | %.1f |\n",
               (unsigned long long)tb.traj[k], tb.tv[k], tb.kl[k], (unsigned long long)tb.evals[k],
               sub.tv[k], sub.kl[k], (unsigned long long)sub.evals[k], mh_tb, mh_sub, sub.secs[k]);
    }
    printf("\nReward evaluations to reach TV <= 0.1 / 0.05 / 0.02:\n");
    print_evals_to("GFlowNet TB", tb.evals, tb.tv, tb.n);
    print_evals_to("GFlowNet SubTB", sub.evals, sub.tv, sub.n);
    print_evals_to("Metropolis-Hastings", at, mh_tv, n_at);

    char name[64];
    snprintf(name, sizeof name, "conv_d%u.dat", d);
    FILE *f = open_out(name);
    fprintf(f, "# traj tb_evals tb_tv tb_kl sub_evals sub_tv sub_kl\n");
    for (int k = 0; k < N_CHECK; k++)
        fprintf(f, "%llu %llu %.6f %.6f %llu %.6f %.6f\n", (unsigned long long)tb.traj[k],
                (unsigned long long)tb.evals[k], tb.tv[k], tb.kl[k],
                (unsigned long long)sub.evals[k], sub.tv[k], sub.kl[k]);
    fclose(f);
    snprintf(name, sizeof name, "mh_d%u.dat", d);
    f = open_out(name);
    fprintf(f, "# evals mh_tv\n");
    for (int i = 0; i < n_at; i++)
        fprintf(f, "%llu %.6f\n", (unsigned long long)at[i], mh_tv[i]);
    fclose(f);
    free(p);
    bench_plugin_detach(&e);
    return g_sub;
}

/* ---- 2. oracle recall and bounds where the exact answer is known ----- */

static const double alphas[] = {0.1, 0.01, 0.001};
#define N_ALPHA 3

typedef struct oracle_stats {
    double cautious_recall;    /* exact cautious among candidates */
    double cautious_same;      /* sampled cautious == exact */
    double iid_abs, iid_under; /* mean |Δbound|, fraction below exact */
    size_t set_exact[N_ALPHA], set_sampled[N_ALPHA];
    double set_recall[N_ALPHA];
    double noniid_abs[N_ALPHA], noniid_under[N_ALPHA];
    size_t n_cand;
} oracle_stats;

static void contexts(const bench_env *e, uint64_t *x)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, seed + 7);
    uint64_t all = e->d == 64 ? ~0ULL : (1ULL << e->d) - 1;
    for (int i = 0; i < N_CONTEXTS; i++)
        x[i] = i < (int)e->n_arms ? e->arm[i] : bg_gfn_rng_u64(&r) & all;
}

/* harm_tab[m] = P(harm | x·w = m) */
static void harm_table(const bench_env *e, double *tab)
{
    for (uint32_t m = 0; m <= e->d; m++)
        tab[m] = 0.5 * erfc((e->theta - m) / (e->sigma * sqrt(2.0)));
}

/* Cautious hypothesis and bounds over a candidate list, per context. */
static void bounds_over(const bench_env *e, const uint64_t *ids, const double *log_r, size_t n,
                        const uint64_t *x, uint32_t *const sets[N_ALPHA],
                        const size_t set_n[N_ALPHA], uint64_t *cautious, double *iid,
                        double noniid[][N_ALPHA])
{
    double tab[BG_GFN_MAX_BITS + 1];
    harm_table(e, tab);
    for (int c = 0; c < N_CONTEXTS; c++) {
        double best = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            double hm = tab[__builtin_popcountll(ids[i] & x[c])];
            double s = log_r[i] + log(hm);
            if (s > best) {
                best = s;
                cautious[c] = ids[i];
                iid[c] = hm;
            }
        }
        for (int a = 0; a < N_ALPHA; a++) {
            noniid[c][a] = 0;
            for (size_t k = 0; k < set_n[a]; k++) {
                double hm = tab[__builtin_popcountll(ids[sets[a][k]] & x[c])];
                noniid[c][a] = hm > noniid[c][a] ? hm : noniid[c][a];
            }
        }
    }
}

typedef struct oracle_ref {
    uint64_t x[N_CONTEXTS], cautious[N_CONTEXTS];
    double iid[N_CONTEXTS], noniid[N_CONTEXTS][N_ALPHA];
    uint32_t *sets[N_ALPHA];
    size_t set_n[N_ALPHA];
    uint64_t *all_ids;
} oracle_ref;

static void oracle_exact(const bench_env *e, oracle_ref *ref)
{
    size_t n = (size_t)1 << e->d;
    ref->all_ids = malloc(n * sizeof *ref->all_ids);
    double *lr = malloc(n * sizeof *lr);
    uint32_t *order = malloc(n * sizeof *order);
    for (size_t h = 0; h < n; h++) {
        ref->all_ids[h] = h;
        lr[h] = bench_log_r_local(e, h);
    }
    contexts(e, ref->x);
    for (int a = 0; a < N_ALPHA; a++) {
        ref->sets[a] = malloc(n * sizeof *ref->sets[a]);
        ref->set_n[a] = bench_plausible_set(lr, n, alphas[a], order, ref->sets[a]);
    }
    bounds_over(e, ref->all_ids, lr, n, ref->x, ref->sets, ref->set_n, ref->cautious, ref->iid,
                ref->noniid);
    free(lr);
    free(order);
}

static int contains(const uint64_t *sorted, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sorted[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == id;
}

/* Score a candidate set (sorted unique ids) against the exact reference. */
static void oracle_compare(bench_env *e, const oracle_ref *ref, const uint64_t *cand, size_t n,
                           oracle_stats *st)
{
    memset(st, 0, sizeof *st);
    st->n_cand = n;
    double *lr = malloc(n * sizeof *lr);
    uint32_t *order = malloc(n * sizeof *order), *sets[N_ALPHA];
    size_t set_n[N_ALPHA];
    bench_log_reward(e, cand, n, lr);
    for (int a = 0; a < N_ALPHA; a++) {
        sets[a] = malloc(n * sizeof *sets[a]);
        set_n[a] = bench_plausible_set(lr, n, alphas[a], order, sets[a]);
        st->set_exact[a] = ref->set_n[a];
        st->set_sampled[a] = set_n[a];
        size_t hit = 0;
        for (size_t k = 0; k < ref->set_n[a]; k++)
            hit += (size_t)contains(cand, n, ref->all_ids[ref->sets[a][k]]);
        st->set_recall[a] = (double)hit / ref->set_n[a];
    }
    uint64_t caut[N_CONTEXTS];
    double iid[N_CONTEXTS], noniid[N_CONTEXTS][N_ALPHA];
    bounds_over(e, cand, lr, n, ref->x, sets, set_n, caut, iid, noniid);
    for (int c = 0; c < N_CONTEXTS; c++) {
        st->cautious_recall += contains(cand, n, ref->cautious[c]) / (double)N_CONTEXTS;
        st->cautious_same += (caut[c] == ref->cautious[c]) / (double)N_CONTEXTS;
        st->iid_abs += fabs(iid[c] - ref->iid[c]) / N_CONTEXTS;
        st->iid_under += (iid[c] < ref->iid[c] - 1e-12) / (double)N_CONTEXTS;
        for (int a = 0; a < N_ALPHA; a++) {
            st->noniid_abs[a] += fabs(noniid[c][a] - ref->noniid[c][a]) / N_CONTEXTS;
            st->noniid_under[a] += (noniid[c][a] < ref->noniid[c][a] - 1e-12) / (double)N_CONTEXTS;
        }
    }
    for (int a = 0; a < N_ALPHA; a++)
        free(sets[a]);
    free(lr);
    free(order);
}

/* K samples from the sampler, unique and sorted, into cand; returns count. */
static size_t gfn_candidates(const bg_gfn *g, uint64_t *cand)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, seed + 11);
    bg_gfn_sample(g, &r, K_SAMPLES, cand, NULL);
    return bench_unique(cand, K_SAMPLES);
}

/* K states of an MH chain of `evals` reward evaluations in all (the last
 * K·thin steps, every thin-th state), unique and sorted. */
static size_t mh_candidates(bench_env *e, uint64_t evals, uint64_t *cand, double *secs)
{
    bench_mh m;
    double t0 = now_s();
    e->reward_evals = 0;
    bench_mh_init(&m, e, seed + 200);
    uint64_t steps = evals > 1 ? evals - 1 : 1;
    uint64_t thin = steps / 2 / K_SAMPLES ? steps / 2 / K_SAMPLES : 1;
    uint64_t start = steps > thin * K_SAMPLES ? steps - thin * K_SAMPLES : 0;
    size_t k = 0;
    for (uint64_t s = 0; s < steps; s++) {
        uint64_t cur = bench_mh_step(&m);
        if (s >= start && (s - start) % thin == thin - 1 && k < K_SAMPLES)
            cand[k++] = cur;
    }
    *secs = now_s() - t0;
    return bench_unique(cand, k);
}

static void oracle_section(uint32_t d, const bg_gfn *g, uint64_t train_evals)
{
    bench_env e;
    env_setup(&e, d);
    oracle_ref *ref = calloc(1, sizeof *ref);
    oracle_exact(&e, ref);
    uint64_t *cand = malloc(K_SAMPLES * sizeof *cand);
    oracle_stats sg, sm;
    size_t n = gfn_candidates(g, cand);
    oracle_compare(&e, ref, cand, n, &sg);
    double mh_secs;
    n = mh_candidates(&e, train_evals + K_SAMPLES, cand, &mh_secs);
    oracle_compare(&e, ref, cand, n, &sm);

    printf("\n### Oracle at d = %u: K = %d samples, %d contexts (the %u arms + random)\n\n", d,
           K_SAMPLES, N_CONTEXTS, N_ARMS);
    printf("MH ran %llu reward evaluations (the GFlowNet's training %llu + K), took the last "
           "K states thinned.\n\n",
           (unsigned long long)(train_evals + K_SAMPLES), (unsigned long long)train_evals);
    printf("| measure | GFlowNet (SubTB) | MH |\n|---|---|---|\n");
    printf("| distinct candidates | %zu | %zu |\n", sg.n_cand, sm.n_cand);
    printf("| recall of the exact cautious hypothesis | %.4f | %.4f |\n", sg.cautious_recall,
           sm.cautious_recall);
    printf("| sampled cautious = exact cautious | %.4f | %.4f |\n", sg.cautious_same,
           sm.cautious_same);
    printf("| iid bound: mean abs error | %.2e | %.2e |\n", sg.iid_abs, sm.iid_abs);
    printf("| iid bound: fraction below exact | %.4f | %.4f |\n", sg.iid_under, sm.iid_under);
    for (int a = 0; a < N_ALPHA; a++) {
        printf("| I^α, α=%g: exact size / sampled size | %zu / %zu | %zu / %zu |\n", alphas[a],
               sg.set_exact[a], sg.set_sampled[a], sm.set_exact[a], sm.set_sampled[a]);
        printf("| I^α, α=%g: recall of exact members | %.4f | %.4f |\n", alphas[a],
               sg.set_recall[a], sm.set_recall[a]);
        printf("| non-iid bound α=%g: mean abs error / fraction below exact | %.2e / %.4f | "
               "%.2e / %.4f |\n",
               alphas[a], sg.noniid_abs[a], sg.noniid_under[a], sm.noniid_abs[a],
               sm.noniid_under[a]);
    }
    for (int a = 0; a < N_ALPHA; a++)
        free(ref->sets[a]);
    free(ref->all_ids);
    free(ref);
    free(cand);
    bench_plugin_detach(&e);
}

/* ---- 3. spaces too large to enumerate -------------------------------- */

typedef struct large_stats {
    size_t n_cand;
    double best_logr; /* best log R found, minus log R(w*) */
    double iid_mean, noniid_mean, iid_cover, noniid_cover;
    double score[N_CONTEXTS]; /* best log R + log harm per context */
    double secs;
} large_stats;

static void large_eval(bench_env *e, const uint64_t *x, const uint64_t *cand, size_t n,
                       large_stats *st)
{
    double *lr = malloc(n * sizeof *lr);
    uint32_t *order = malloc(2 * n * sizeof *order);
    bench_log_reward(e, cand, n, lr);
    double lr_star;
    bench_log_reward(e, &e->w_star, 1, &lr_star); /* same source as the candidates' */
    st->n_cand = n;
    st->best_logr = -INFINITY;
    for (size_t i = 0; i < n; i++)
        st->best_logr = lr[i] - lr_star > st->best_logr ? lr[i] - lr_star : st->best_logr;
    st->iid_mean = st->noniid_mean = st->iid_cover = st->noniid_cover = 0;
    for (int c = 0; c < N_CONTEXTS; c++) {
        bench_oracle o;
        bench_oracle_eval(e, cand, lr, n, x[c], 0.01, order, &o);
        double truth = bench_harm(e, x[c], e->w_star);
        st->iid_mean += o.iid_bound / N_CONTEXTS;
        st->noniid_mean += o.noniid_bound / N_CONTEXTS;
        st->iid_cover += (o.iid_bound >= truth) / (double)N_CONTEXTS;
        st->noniid_cover += (o.noniid_bound >= truth) / (double)N_CONTEXTS;
        st->score[c] = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            double s = lr[i] + log(bench_harm(e, x[c], cand[i]));
            st->score[c] = s > st->score[c] ? s : st->score[c];
        }
    }
    free(lr);
    free(order);
}

#define MH_SEED_EVALS 2000

/* Run an MH chain of `evals` evaluations and offer its distinct states to
 * g's replay buffer (the buffer keeps the top-k). */
static int seed_replay(bench_env *e, bg_gfn *g, uint64_t evals)
{
    bench_mh m;
    bench_mh_init(&m, e, seed + 300);
    uint64_t *visited = malloc(evals * sizeof *visited);
    size_t n = 0;
    while (e->reward_evals < evals)
        visited[n++] = bench_mh_step(&m);
    n = bench_unique(visited, n);
    char err[256];
    int rc = bg_gfn_offer(g, visited, n, bench_log_reward, e, NULL, err, sizeof err);
    if (rc != BG_PLUGIN_OK)
        fprintf(stderr, "offer: %s\n", err);
    free(visited);
    return rc;
}

static void large_section(uint32_t d, uint64_t budget)
{
    bench_env e;
    env_setup(&e, d);
    uint64_t x[N_CONTEXTS];
    contexts(&e, x);
    uint64_t *cand = malloc(K_SAMPLES * sizeof *cand);
    printf("\n### d = %u (2^%u hypotheses, not enumerable): %llu training trajectories, "
           "K = %d, %d contexts, α = 0.01\n\n",
           d, d, (unsigned long long)budget, K_SAMPLES, N_CONTEXTS);
    printf("| method | reward evals | wall s | distinct | best log R − log R(w*) | mean iid "
           "bound | mean non-iid bound | iid covers harm(w*) | non-iid covers | GFN score − "
           "MH score (mean, >0: GFN found more cautious) "
           "|\n|---|---|---|---|---|---|---|---|---|---|\n");
    /* TB, SubTB, and TB whose replay buffer is first seeded with the states
     * of a short MH chain (its evaluations count in the budget). */
    const bg_gfn_loss losses[] = {BG_GFN_LOSS_TB, BG_GFN_LOSS_SUBTB, BG_GFN_LOSS_TB};
    const char *names[] = {"tb", "subtb", "tb + MH-seeded replay"};
    for (int li = 0; li < 3; li++) {
        bg_gfn_config c = gfn_config(d, losses[li], budget);
        bg_gfn *g;
        char err[256];
        if (bg_gfn_create(&c, &g, err, sizeof err) != BG_PLUGIN_OK) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
        large_stats sg, sm;
        e.reward_evals = 0;
        double t0 = now_s();
        if (li == 2 && seed_replay(&e, g, MH_SEED_EVALS) != 0)
            exit(1);
        uint32_t steps = (uint32_t)(budget / c.batch), chunk = steps / 20 ? steps / 20 : 1;
        char label[64];
        snprintf(label, sizeof label, "d=%u %s", d, names[li]);
        for (uint32_t s = 0; s < steps; s += chunk) {
            uint32_t m = steps - s < chunk ? steps - s : chunk;
            if (bg_gfn_train(g, bench_log_reward, &e, m, err, sizeof err) != BG_PLUGIN_OK) {
                fprintf(stderr, "train: %s\n", err);
                exit(1);
            }
            progress(label, (uint64_t)(s + m) * c.batch, (uint64_t)steps * c.batch, NAN);
        }
        size_t n = gfn_candidates(g, cand);
        sg.secs = now_s() - t0;
        uint64_t evals = e.reward_evals + K_SAMPLES;
        large_eval(&e, x, cand, n, &sg);
        n = mh_candidates(&e, evals, cand, &sm.secs);
        large_eval(&e, x, cand, n, &sm);
        double adv = 0;
        for (int k = 0; k < N_CONTEXTS; k++)
            adv += (sg.score[k] - sm.score[k]) / N_CONTEXTS;
        printf("| GFlowNet %s | %llu | %.1f | %zu | %.2f | %.4f | %.4f | %.3f | %.3f | %+.2f |\n",
               names[li], (unsigned long long)evals, sg.secs, sg.n_cand, sg.best_logr, sg.iid_mean,
               sg.noniid_mean, sg.iid_cover, sg.noniid_cover, adv);
        printf("| MH (same evals) | %llu | %.1f | %zu | %.2f | %.4f | %.4f | %.3f | %.3f | |\n",
               (unsigned long long)evals, sm.secs, sm.n_cand, sm.best_logr, sm.iid_mean,
               sm.noniid_mean, sm.iid_cover, sm.noniid_cover);
        bg_gfn_destroy(g);
    }
    free(cand);
    bench_plugin_detach(&e);
}

/* ---- 4. the harm-tilted sampler --------------------------------------- */

#define TILT_D 16
#define TILT_POST_TRAJ 40000
#define TILT_STEPS 300
#define TILT_FEW_OBS 8
#define TILT_COLD 0.25

/* n_obs pulls: 25 (section 1's data set, a concentrated posterior) or
 * fewer (a broad one, where cautious hypotheses sit in its tail). */
static void tilted_section(uint32_t n_obs)
{
    bench_env e;
    env_setup_obs(&e, TILT_D, n_obs);
    double *p = exact_posterior(&e), tv, kl;
    curve cv;
    bg_gfn *post = train_curve(&e, p, BG_GFN_LOSS_TB, TILT_POST_TRAJ, &cv);
    tv = cv.tv[cv.n - 1];
    kl = cv.kl[cv.n - 1];
    uint64_t x[N_CONTEXTS];
    contexts(&e, x);
    /* fine-tuning: a fresh schedule from 1e-3 down to 1e-5, log Z re-estimated
     * from the first batch (R_x's scale is R's times the mean harm) */
    bg_gfn_config fine[BENCH_TILT_VARIANTS];
    fine[0] = gfn_config(TILT_D, BG_GFN_LOSS_TB, (uint64_t)TILT_STEPS * 16);
    fine[0].lr = 1e-3;
    /* and a sharper one: log R_x / T_R with T_R 1 -> 0.25 over the first
     * two thirds (its samples are still scored exactly) */
    fine[1] = fine[0];
    fine[1].reward_temp_end = TILT_COLD;
    fine[1].reward_temp_horizon = TILT_STEPS * 2 / 3;
    printf("\n### Data: %u arms, %u pulls\n\nPosterior sampler: TB, %d trajectories, TV %.4f, KL "
           "%.4f (exact q^T vs "
           "posterior). Tilted: TB, lr %g -> %g over %d steps of %u, started from its "
           "parameters.\n",
           N_ARMS, n_obs, TILT_POST_TRAJ, tv, kl, fine[0].lr, fine[0].lr_end, TILT_STEPS,
           fine[0].batch);
    bench_tilted(&e, fine, TILT_STEPS, post, x, tilt_contexts, seed);
    bg_gfn_destroy(post);
    free(p);
    bench_plugin_detach(&e);
}

/* ---- plots and main --------------------------------------------------- */

static void plots(const uint32_t *ds, int n_d)
{
    FILE *f = open_out("plots.gp");
    fprintf(f, "set terminal png size 900,600\nset logscale x\nset logscale y\nset grid\n"
               "set key top right\nset xlabel 'reward evaluations'\nset ylabel 'TV'\n");
    for (int i = 0; i < n_d; i++) {
        fprintf(f,
                "set output 'tv_evals_d%u.png'\nset title 'd = %u: TV(q, posterior) vs reward "
                "evaluations'\nplot 'conv_d%u.dat' u 2:3 w lp t 'GFlowNet TB', 'conv_d%u.dat' "
                "u 5:6 w lp t 'GFlowNet SubTB', 'mh_d%u.dat' u 1:2 w lp t 'MH (empirical)', "
                "0.02 w l dt 2 t 'TV 0.02'\n",
                ds[i], ds[i], ds[i], ds[i], ds[i]);
    }
    fprintf(f, "set output 'tv_traj.png'\nset xlabel 'training trajectories'\n"
               "set title 'TV vs training trajectories (SubTB solid, TB dashed)'\nplot ");
    for (int i = 0; i < n_d; i++)
        fprintf(f,
                "%s'conv_d%u.dat' u 1:6 w lp t 'SubTB d=%u', 'conv_d%u.dat' u 1:3 w l dt 2 "
                "t 'TB d=%u'",
                i ? ", " : "", ds[i], ds[i], ds[i], ds[i]);
    fprintf(f, "\n");
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp 2>/dev/null", out_dir);
    if (system(cmd) != 0)
        printf("\n(gnuplot not available or failed: the .dat files and plots.gp are in %s)\n",
               out_dir);
    else
        printf("\nPlots: %s/tv_evals_d*.png, %s/tv_traj.png\n", out_dir, out_dir);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--large-only"))
            only_large = 1;
        else if (!strcmp(argv[i], "--tilted-only"))
            only_tilted = 1;
        else if (!strcmp(argv[i], "--fair"))
            only_fair = 1;
        else if (!strcmp(argv[i], "--fair-seeds") && i + 1 < argc && atoi(argv[i + 1]) >= 1)
            fair_seeds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--contexts") && i + 1 < argc && atoi(argv[i + 1]) >= 1 &&
                 atoi(argv[i + 1]) <= N_CONTEXTS)
            tilt_contexts = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_dir = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--large-only] [--tilted-only] [--contexts 1..%d] "
                    "[--out DIR] [--seed N] [--fair [--fair-seeds N]]\n",
                    argv[0], N_CONTEXTS);
            return 2;
        }
    }
    mkdir(out_dir, 0755);
    bench_env probe;
    bench_env_init(&probe, 10, N_ARMS, N_OBS, seed);
    char why[512] = "";
    int plugin = bench_plugin_attach(&probe, why, sizeof why) == 0;
    use_plugin = plugin;
    printf("# GFlowNet quality benchmark (seed %llu%s)\n\nReward: %s\n", (unsigned long long)seed,
           quick ? ", --quick" : "",
           plugin ? "the bandit plugin bg_bandit.so through the plugin host (checked equal to "
                    "the local formula)"
                  : why);
    bench_plugin_detach(&probe);

    if (only_fair) {
        bench_fair(fair_seeds, quick);
        return 0;
    }
    if (only_tilted) {
        printf("\n## 4. Harm-tilted sampler: cautious hypotheses for a context\n");
        tilted_section(TILT_FEW_OBS);
        tilted_section(N_OBS);
        return 0;
    }
    const uint32_t ds[] = {10, 12, 14, 16};
    int n_d = only_large ? 0 : quick ? 1 : 4;
    if (n_d)
        printf("\n## 1. Convergence: exact q^T vs exact posterior\n");
    bg_gfn *trained[4] = {0};
    uint64_t train_evals[4] = {0};
    for (int i = 0; i < n_d; i++) {
        uint64_t budget = ds[i] == 10 ? 20000 : 40000;
        trained[i] = convergence(ds[i], budget);
        bg_gfn_stats st;
        bg_gfn_get_stats(trained[i], &st);
        train_evals[i] = st.reward_evals;
    }
    if (n_d) {
        plots(ds, n_d);
        printf("\n## 2. Oracle: cautious hypothesis, plausible sets, bounds from samples\n");
    }
    for (int i = 0; i < n_d; i++)
        if (ds[i] == 10 || ds[i] == 16)
            oracle_section(ds[i], trained[i], train_evals[i]);
    for (int i = 0; i < n_d; i++)
        bg_gfn_destroy(trained[i]);

    printf("\n## 3. Too large to enumerate: GFlowNet vs MH at equal reward evaluations\n");
    large_section(32, quick ? 2000 : 8000);
    if (!quick)
        large_section(64, 4000);
    if (!quick && !only_large) {
        printf("\n## 4. Harm-tilted sampler: cautious hypotheses for a context\n");
        tilted_section(TILT_FEW_OBS);
        tilted_section(N_OBS);
    }
    return 0;
}
