/*
 * test_gfn_exact22.c — the sampled path against an exact reference at
 * d > 20 (issue 16 item 4), computed here by enumeration, independently
 * of the daemon's code: no engine posterior, no estimator plugin, only
 * the formulas of shared/spec/oracle.md on the same data.
 *
 * The environment (gfn_bandit_twin.h): a d-bit exploding bandit, w*, 10
 * random arms, θ = the largest true arm mean, σ = 1. 40 observations
 * arrive one at a time into the sampled guard (the bandit with `enumerate:
 * false`, the gfn sampler with the plugin's defaults, trained inline
 * STEPS steps per observation, K samples). The reference enumerates the
 * 2^d hypotheses: log P(D | w) from each arm's pull count, reward sum and
 * sum of squares (10 popcounts per hypothesis), the posterior normalised
 * by a max-shifted log-sum-exp (uniform prior); for each of 64 contexts
 * (the 10 arms, 54 random x ∈ {0,1}^d):
 *   - iid: the cautious hypothesis argmax_w P(w|D)·harm(x·w), found
 *     through the best log-likelihood at each value of x·w (harm depends
 *     on w only through x·w); its harm is the exact iid bound;
 *   - non-iid (α = 0.01): the plausible set I^α — hypotheses sorted by
 *     posterior (ties by index), kept while P ≥ α·S_k, a prefix since
 *     P falls and S_k rises; only hypotheses with P ≥ α·P_max can be in
 *     it, so only those are sorted — and its largest harm.
 * Each context is evaluated three times on the same draw: the candidates
 * alone, with the harm-directed refinement (daemon/engine/sampled_refine.c,
 * the default budget, or BG_EXACT_REFINE), and with the posterior search
 * archive added before the refinement (daemon/engine/sampled_archive.c:
 * the best 1,024 hypotheses Metropolis chains on the exact reward found
 * after each observation's training, the default budget or
 * BG_EXACT_SEARCH) — what the daemon runs. Asserted, with the plugin's
 * defaults and 20 steps per observation (what a policy gets without
 * tuning; ~10 s of CPU here):
 *   - every sampled verdict is sampled, K samples, a bound in [0, 1];
 *   - refinement and archive never lower the iid objective: the exact log
 *     posterior + log harm of their cautious hypothesis ≥ the draw's (the
 *     argument in sampled_refine.c: a larger candidate set can only raise
 *     the maximised product);
 *   - with the archive, the bar: the sampled iid and non-iid bounds
 *     ≥ exact − 1e-9 in at least MIN_COVER = 62 of 64 contexts (97 %), the
 *     iid cautious hypothesis's exact posterior within a factor 10
 *     (2.3 nats) of the exact cautious one's in at least MIN_NEAR = 62 and
 *     within MAX_NATS = 2.3 in every one.
 * Measured (2026-12-06, refine 4096, search 16384, load 8-12), of 64
 * contexts: bound below exact iid / non-iid, cautious posterior off by
 * > 10x, worst nats:
 *   seed          draw alone             refined               archive + refined
 *   2222 (test)   38 / 36,  4, 3.63       5 /  5,  0, 1.70      0 / 0, 0, 0.00
 *   1             23 / 26, 50, 4.45       5 / 12,  0, 2.11      0 / 0, 0, 0.00
 *   2             47 / 42, 47, 5.52      20 /  3, 24, 2.71      0 / 0, 0, 0.00
 *   3             38 / 24, 14, 3.38      14 /  4,  1, 2.42      0 / 0, 0, 0.00
 * (the search: 10,700-13,200 reward evaluations and 4-5 ms of CPU per
 * observation; Evaluate thread CPU p50 433-637 us with the archive,
 * 170-451 refined alone). Rerun at today's defaults (search 65,536,
 * remembered contexts 64; 2026-12-06 21:20, seed 2222): draw alone
 * 38 / 36, 4, 3.63; refined 2 / 5, 1, 2.51; archive + refined 0 / 0, 0,
 * 0.00. The floors leave a margin of 2 contexts under
 * what every seed gave (all 64): they catch an archive that stopped
 * working (the refinement alone fails them at every seed) and a broken
 * sampler. Nothing was tuned on these seeds.
 * Before the refinement more training helped on average but not
 * monotonically (draw alone, seed 2222: 38 / 36 at 20 steps, 37 / 33 at
 * 40, 29 / 24 at 100; BG_EXACT_STEPS / BG_EXACT_SEED run other budgets and
 * seeds).
 * Power: deterministic (inline training, seeded sampler and search), no
 * sampling error in the check itself.
 * ASan (BG_EXACT_SMALL): d = 16, the same floors.
 * Skips (77) when the plugins are not built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg/cfg.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "gfn_bandit_twin.h"
#include "gfn_test_util.h"

#ifdef BG_EXACT_SMALL
#define D 16
#else
#define D 22
#endif
#define N_ARMS TWIN_ARMS
#define N_OBS 40
#define N_CTX 64
#define K 256
#define STEPS 20
#define ALPHA 0.01
#define SEED 2222
/* archive + refined, seeds 2222, 1, 2, 3 (header): 64 of 64 each */
#define MIN_COVER 62 /* the bar, 97 % of 64 */
#define MIN_NEAR 62
#define MAX_NATS 2.3 /* a factor 10 */
#define N_HYP ((uint64_t)1 << D)
#define NV 3 /* draw alone, refined, archive + refined */

/* The data, reduced to what log P(D | w) needs: per arm the number of
 * pulls, the sum of rewards and of their squares. */
typedef struct arm_stats {
    double n, s, q;
} arm_stats;

static double harm_of(int theta, double mean)
{
    return 0.5 * erfc((theta - mean) / M_SQRT2);
}

/* log P(D | w) for every w: Σ_a −½ (q_a − 2 m s_a + n_a m²), m = x_a·w
 * (the constant −n/2 log 2π drops out of every ratio). */
static void exact_loglik(const uint64_t *arms, const arm_stats *st, double *ll)
{
    for (uint64_t w = 0; w < N_HYP; w++) {
        double l = 0;
        for (int a = 0; a < N_ARMS; a++) {
            double m = __builtin_popcountll(arms[a] & w);
            l -= 0.5 * (st[a].q - 2 * m * st[a].s + st[a].n * m * m);
        }
        ll[w] = l;
    }
}

typedef struct ranked {
    double lp;
    uint64_t id;
} ranked;

static int by_posterior(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->lp != b->lp)
        return a->lp < b->lp ? 1 : -1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The plausible set I^α of the normalised log posterior lp: ids into
 * *set (malloc'd), its size returned. */
static size_t plausible_set(const double *lp, double lp_max, uint64_t **set)
{
    size_t n = 0, cap = 1024;
    ranked *r = malloc(cap * sizeof *r);
    CHECK(r != NULL, "out of memory");
    double floor_lp = lp_max + log(ALPHA) - 1e-12;
    for (uint64_t w = 0; w < N_HYP; w++) {
        if (lp[w] < floor_lp)
            continue;
        if (n == cap) {
            cap *= 2;
            r = realloc(r, cap * sizeof *r);
            CHECK(r != NULL, "out of memory");
        }
        r[n++] = (ranked){lp[w], w};
    }
    qsort(r, n, sizeof *r, by_posterior);
    double s = 0;
    size_t k = 0;
    for (; k < n; k++) {
        double p = exp(r[k].lp);
        s += p;
        if (p < ALPHA * s)
            break;
    }
    *set = malloc((k ? k : 1) * sizeof **set);
    CHECK(*set != NULL, "out of memory");
    for (size_t i = 0; i < k; i++)
        (*set)[i] = r[i].id;
    free(r);
    return k;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so", "bg_noniid.so"};
    const char *dir = bg_test_plugin_dir(need, 4);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    const char *seed_env = getenv("BG_EXACT_SEED"); /* for measuring other seeds */
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : SEED;
    const char *steps_env = getenv("BG_EXACT_STEPS"); /* for measuring other budgets */
    uint32_t steps = steps_env ? (uint32_t)strtoul(steps_env, NULL, 10) : STEPS;
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    twin t;
    twin_open(&t, h, "exact22", D, &r, "{}", K, steps);
    const char *search_env = getenv("BG_EXACT_SEARCH"); /* for measuring other budgets */
    if (search_env)
        bg_sampled_trainer_search(t.tr, (int32_t)strtol(search_env, NULL, 10));

    /* 40 observations one at a time into the sampled guard only; the
     * reference keeps each arm's sufficient statistics */
    arm_stats st[N_ARMS] = {{0}};
    double f[D];
    bg_posterior_summary sum;
    for (int i = 0; i < N_OBS; i++) {
        int a = (int)(bg_gfn_rng_u64(&r) % N_ARMS);
        bg_observation o = twin_pull(&t, t.arms[a], f, &r);
        CHECK(bg_engine_observe(t.e, &t.gs, "s", &o, &sum, &err) == BG_OK, "observe: %s", err.msg);
        st[a].n += 1, st[a].s += o.value, st[a].q += o.value * o.value;
    }

    /* the exact reference: normalised log posterior (uniform prior) */
    double *lp = malloc(N_HYP * sizeof *lp);
    CHECK(lp != NULL, "out of memory");
    exact_loglik(t.arms, st, lp);
    double mx = -INFINITY, z = 0;
    for (uint64_t w = 0; w < N_HYP; w++)
        mx = fmax(mx, lp[w]);
    for (uint64_t w = 0; w < N_HYP; w++)
        z += exp(lp[w] - mx);
    double log_z = mx + log(z);
    for (uint64_t w = 0; w < N_HYP; w++)
        lp[w] -= log_z;
    uint64_t *set;
    size_t n_set = plausible_set(lp, mx - log_z, &set);

    /* each context three times, on the same draw: [0] the draw alone, [1]
     * with the harm-directed refinement (the default budget, or
     * BG_EXACT_REFINE), [2] with the search archive too (the daemon's way) */
    const char *refine_env = getenv("BG_EXACT_REFINE");
    int32_t budget = refine_env ? (int32_t)strtol(refine_env, NULL, 10) : BG_SAMPLED_REFINE_DEFAULT;
    int below_iid[NV] = {0}, below_non[NV] = {0}, far[NV] = {0};
    double worst_gap_iid[NV] = {0}, worst_gap_non[NV] = {0}, worst_nats[NV] = {0};
    double cpu_us[NV][2 * N_CTX]; /* thread CPU time of each sampled Evaluate */
    for (int c = 0; c < N_CTX; c++) {
        uint64_t x = c < N_ARMS ? t.arms[c] : bg_gfn_rng_u64(&r) & (N_HYP - 1);
        /* iid: the best log posterior at each x·w, then the cautious one */
        double best[D + 1];
        uint64_t best_id[D + 1];
        for (int m = 0; m <= D; m++)
            best[m] = -INFINITY, best_id[m] = 0;
        for (uint64_t w = 0; w < N_HYP; w++) {
            int m = __builtin_popcountll(x & w);
            if (lp[w] > best[m])
                best[m] = lp[w], best_id[m] = w;
        }
        double top = -INFINITY;
        uint64_t caut = 0;
        int caut_m = 0;
        for (int m = 0; m <= D; m++) {
            double v = best[m] + log(harm_of(t.theta, m));
            if (v > top || (v == top && best_id[m] < caut))
                top = v, caut = best_id[m], caut_m = m;
        }
        double exact_iid = harm_of(t.theta, caut_m), exact_non = 0;
        for (size_t i = 0; i < n_set; i++)
            exact_non = fmax(exact_non, harm_of(t.theta, __builtin_popcountll(x & set[i])));

        twin_features(D, x, f);
        bg_action act = {
            .id = "", .tool = "pull", .arguments_json = "", .features = f, .n_features = D};
        double objective[NV];
        for (int v = 0; v < NV; v++) {
            bg_sampled_trainer_refine(t.tr, v ? budget : 0);
            bg_sampled_trainer_use_archive(t.tr, v == 2);
            bg_verdict vs, vsn;
            double c0 = cpu_now();
            CHECK(bg_engine_evaluate(t.e, &t.gs, "s", &act, &vs, &err) == BG_OK, "%s", err.msg);
            double c1 = cpu_now();
            CHECK(bg_engine_evaluate(t.e, &t.gs_non, "s", &act, &vsn, &err) == BG_OK, "%s",
                  err.msg);
            cpu_us[v][2 * c] = c1 - c0;
            cpu_us[v][2 * c + 1] = cpu_now() - c1;
            CHECK(vs.sampled && vsn.sampled && vs.samples == K,
                  "paths: sampled %d %d, samples %llu", vs.sampled, vsn.sampled,
                  (unsigned long long)vs.samples);
            CHECK(vs.harm_bound >= 0 && vs.harm_bound <= 1 && vsn.harm_bound >= 0 &&
                      vsn.harm_bound <= 1,
                  "bounds %g, %g", vs.harm_bound, vsn.harm_bound);
            CHECK(vs.cautious_id < N_HYP, "cautious id %llu outside 2^%d",
                  (unsigned long long)vs.cautious_id, D);
            below_iid[v] += vs.harm_bound < exact_iid - 1e-9;
            below_non[v] += vsn.harm_bound < exact_non - 1e-9;
            worst_gap_iid[v] = fmax(worst_gap_iid[v], exact_iid - vs.harm_bound);
            worst_gap_non[v] = fmax(worst_gap_non[v], exact_non - vsn.harm_bound);
            double nats = lp[caut] - lp[vs.cautious_id];
            far[v] += fabs(nats) > log(10);
            worst_nats[v] = fmax(worst_nats[v], fabs(nats));
            objective[v] = lp[vs.cautious_id] + log(vs.cautious_harm);
        }
        /* the iid objective over more candidates can only grow
         * (sampled_refine.c): exact log posterior + log harm */
        for (int v = 1; v < NV; v++)
            CHECK(objective[v] >= objective[0] - 1e-9,
                  "context %d: %s lowered the iid objective from %.6f to %.6f", c,
                  v == 1 ? "refinement" : "the archive", objective[0], objective[v]);
    }
    printf("d = %d (seed %llu), %d observations one at a time, %d steps each, K = %d, %d "
           "contexts; exact: max posterior %.3g, plausible set (alpha %g) %zu hypotheses\n",
           D, (unsigned long long)seed, N_OBS, steps, K, N_CTX, exp(mx - log_z), ALPHA, n_set);
    for (int v = 0; v < NV; v++)
        qsort(cpu_us[v], 2 * N_CTX, sizeof cpu_us[v][0], by_value);
    printf("sampled Evaluate, thread CPU p50 / max: draw alone %.0f / %.0f us, refined %.0f / "
           "%.0f us, archive + refined %.0f / %.0f us (the first one draws)\n",
           0.5 * (cpu_us[0][N_CTX - 1] + cpu_us[0][N_CTX]), cpu_us[0][2 * N_CTX - 1],
           0.5 * (cpu_us[1][N_CTX - 1] + cpu_us[1][N_CTX]), cpu_us[1][2 * N_CTX - 1],
           0.5 * (cpu_us[2][N_CTX - 1] + cpu_us[2][N_CTX]), cpu_us[2][2 * N_CTX - 1]);
    uint64_t n_search, s_evals, s_ns;
    bg_sampled_trainer_search_stats(t.tr, &n_search, &s_evals, &s_ns);
    printf("posterior search: %llu searches, %.0f reward evaluations and %.1f ms of CPU per "
           "observation\n",
           (unsigned long long)n_search, (double)s_evals / N_OBS, 1e-6 * (double)s_ns / N_OBS);
    char label[NV][40] = {"draw alone:", "", ""};
    snprintf(label[1], sizeof label[1], "refined (budget %d):", budget);
    snprintf(label[2], sizeof label[2], "archive + refined:");
    for (int v = 0; v < NV; v++)
        printf("%-22s sampled bound below exact in %d (iid, worst by %.3g) and %d (non-iid, "
               "worst by %.3g); iid cautious posterior off by more than 10x in %d, worst %.2f "
               "nats\n",
               label[v], below_iid[v], worst_gap_iid[v], below_non[v], worst_gap_non[v], far[v],
               worst_nats[v]);
    CHECK(N_CTX - far[2] >= MIN_NEAR,
          "cautious posterior off by more than 10x in %d of %d contexts", far[2], N_CTX);
    CHECK(worst_nats[2] <= MAX_NATS, "a cautious hypothesis %.2f nats below the exact one's",
          worst_nats[2]);
    CHECK(N_CTX - below_iid[2] >= MIN_COVER, "iid: %d of %d contexts below exact", below_iid[2],
          N_CTX);
    CHECK(N_CTX - below_non[2] >= MIN_COVER, "non-iid: %d of %d contexts below exact", below_non[2],
          N_CTX);

    free(set);
    free(lp);
    twin_close(&t);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
