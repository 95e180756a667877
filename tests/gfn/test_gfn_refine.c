/*
 * test_gfn_refine.c — why the sampled path may add candidates (issue 16,
 * the harm-directed refinement of daemon/engine/sampled_refine.c): the
 * argument of that file's header, checked on the real estimator plugins
 * (iid; noniid with α = 0.01) over a synthetic posterior whose exact
 * answers the test computes itself.
 *
 * N = 2048 hypotheses, log R(h) = −3·E (E ~ Exp(1): ~ 200 within ln(1/α)
 * of the best, a plausible set of dozens), harm uniform in [0, 1). The
 * exact non-iid set I^α is the oracle's walk (stable descending order,
 * keep k iff P_k ≥ α·S_k) over all N; the exact iid cautious hypothesis is
 * argmax R·harm. Then, 400 times, a random candidate set C (16–512 ids,
 * ascending, as the engine passes them) and a superset C' = C ∪ extra
 * (1–256 more), each scored by the estimator with the posterior normalised
 * over the set itself (as bg__estimate_over does):
 *   non-iid: bound(C) ≥ floor(C) = max harm over I^α ∩ C, floor(C') ≥
 *     floor(C), and bound(C) ≥ the exact bound whenever C holds the exact
 *     cautious hypothesis — adding candidates can lower the sampled bound
 *     only down to a floor that rises with them (the test also counts how
 *     often bound(C') < bound(C): that does happen, which is why the claim
 *     is about the floor, not the value);
 *   iid: R·harm of the cautious hypothesis of C' ≥ that of C, and the
 *     bound equals the exact one whenever C holds the exact maximiser.
 * A failure means the estimator (or the normalisation over candidates)
 * broke the property the refinement relies on.
 *
 * Then bg__refine itself on bandit guards, for d64fast's two changes:
 *   test_archive_budget: the hypotheses looked at (bg__refined.evals) at
 *     the default budget 4,096 are <= 2,048 with the archive flag, the iid
 *     estimator and single flips (d = 64), and > 2,048 without the
 *     archive, with the non-iid estimator, and with pair flips (d = 16);
 *   test_seedless_turn: a d = 12 candidate set where every iid plausible
 *     turn finds no seed still reaches the exact iid cautious hypothesis
 *     (enumerated here) through the tilted climbs, and the estimator over
 *     the refined candidates picks it.
 * Both fail on the code before those changes (the halving removed, or
 * applied to every objective; the seedless turn ending the search).
 * ~0.1 s. Skips (77) when the plugins are not built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampled_priv.h"
#include "gfn_bandit_twin.h"

#define N 2048
#define ALPHA 0.01
#define TRIALS 400

static double lr[N], hm[N];

/* Stable descending order of lr (ties: ascending id). */
static int by_lr(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (lr[i] != lr[j])
        return lr[i] > lr[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

static const double *keys;

/* Stable descending order of keys (ties: ascending index). */
static int by_key(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (keys[i] != keys[j])
        return keys[i] > keys[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* The estimator over the ids in[0..n) (ascending), normalised over them. */
static bg_estimate_out run(const bg_guard *g, const uint64_t *ids, size_t n)
{
    double *lp = malloc(n * sizeof *lp), *harm = malloc(n * sizeof *harm);
    double *post = malloc(n * sizeof *post);
    uint32_t *order = malloc(n * sizeof *order);
    CHECK(lp && harm && post && order);
    double mx = -INFINITY, z = 0;
    for (size_t i = 0; i < n; i++) {
        lp[i] = lr[ids[i]];
        harm[i] = hm[ids[i]];
        mx = fmax(mx, lp[i]);
    }
    for (size_t i = 0; i < n; i++)
        z += exp(lp[i] - mx);
    for (size_t i = 0; i < n; i++) {
        lp[i] -= mx + log(z);
        post[i] = exp(lp[i]);
        order[i] = (uint32_t)i;
    }
    /* ids ascending, so index order is id order: the engine's stable order */
    keys = lp;
    qsort(order, n, sizeof *order, by_key);
    bg_estimate_in in = {.n = n,
                         .ids = ids,
                         .log_post = lp,
                         .harm = harm,
                         .order = order,
                         .n_order = n,
                         .order_complete = 1,
                         .post = post};
    bg_estimate_out o;
    memset(&o, 0, sizeof o);
    CHECK(g->estimator->estimate(g->estimator_inst, &in, &o) == BG_PLUGIN_OK, "estimate");
    CHECK(o.cautious < n);
    o.cautious = (size_t)ids[o.cautious]; /* as an id from here on */
    free(lp);
    free(harm);
    free(post);
    free(order);
    return o;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A random subset of n ids of the N, plus base[0..nb) (distinct), sorted. */
static size_t pick(bg_rng *r, const uint64_t *base, size_t nb, size_t n, uint64_t *out,
                   unsigned char *in)
{
    memset(in, 0, N);
    for (size_t i = 0; i < nb; i++) {
        out[i] = base[i];
        in[base[i]] = 1;
    }
    size_t m = nb;
    while (m < nb + n) {
        uint64_t id = bg_gfn_rng_u64(r) % N;
        if (!in[id]) {
            in[id] = 1;
            out[m++] = id;
        }
    }
    qsort(out, m, sizeof *out, cmp_u64);
    return m;
}

static double floor_of(const uint64_t *ids, size_t n, const unsigned char *plausible)
{
    double f = -1;
    for (size_t i = 0; i < n; i++)
        if (plausible[ids[i]])
            f = fmax(f, hm[ids[i]]);
    return f;
}

/* bg__radix_order (the sampled path's sort) against a stable comparison
 * sort: keys with shared high bytes (the pass-skipping path), all-equal
 * keys, duplicates, full 64-bit keys, n = 0 and 1. */
static const uint64_t *radix_keys;
static int radix_cmp(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    uint64_t x = radix_keys[i], y = radix_keys[j];
    return x < y ? -1 : x > y ? 1 : (i > j) - (i < j);
}

static void test_radix(void)
{
    static const size_t sizes[] = {0, 1, 2, 7, 255, 256, 257, 5000};
    static uint64_t key[5000];
    static uint32_t got[5000], want[5000];
    bg_rng r;
    bg_gfn_rng_seed(&r, 77);
    for (int kind = 0; kind < 4; kind++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            for (size_t i = 0; i < n; i++) {
                uint64_t u = (uint64_t)(bg_gfn_rng_uniform(&r) * 4294967296.0) << 32 |
                             (uint64_t)(bg_gfn_rng_uniform(&r) * 4294967296.0);
                key[i] = kind == 0   ? u                                   /* full width */
                         : kind == 1 ? 0xabcd000000000000ull | (u & 0xfff) /* shared bytes */
                         : kind == 2 ? u % 5                               /* duplicates */
                                     : 42;                                 /* all equal */
                want[i] = (uint32_t)i;
            }
            radix_keys = key;
            qsort(want, n, sizeof want[0], radix_cmp);
            CHECK_INT(bg__radix_order(key, n, got), BG_OK);
            for (size_t i = 0; i < n; i++)
                CHECK(got[i] == want[i], "radix kind %d n %zu: order[%zu] = %u, want %u", kind, n,
                      i, got[i], want[i]);
        }
}

/* The bandit's batched harm with real-valued features (the refinement's
 * neighbours at the bench's contexts; dot_lanes, eight ids at a time, no
 * branch on the bits) against x·w summed feature by feature in k order as
 * the scalar path does: bit for bit, for batch sizes that end in a partial
 * group of eight, with negative features, -0.0 and a pair that cancels. */
static void test_bandit_dot(bg_plugin_host *h)
{
    enum { DD = 64, NMAX = 37 };
    bg_guard_build *b;
    const bg_guard *g = twin_build(
        h, "dot", "{features: 64, theta: 3, sigma: 0.7, enumerate: false}", "iid", "", &b);
    double x[DD];
    bg_rng r;
    bg_gfn_rng_seed(&r, 64);
    for (int k = 0; k < DD; k++)
        x[k] = 2 * bg_gfn_rng_uniform(&r) - 0.7;
    x[5] = -0.0;
    x[9] = 0.3;
    x[10] = -0.3; /* 0.3 + -0.3: an exact zero on the way */
    bg_action a = {.tool = "pull", .features = x, .n_features = DD};
    uint64_t ids[NMAX];
    double got[NMAX];
    for (size_t n = 1; n <= NMAX; n += 3) {
        for (size_t i = 0; i < n; i++)
            ids[i] = bg_gfn_rng_u64(&r) ^ (i == 0 ? 0 : bg_gfn_rng_u64(&r) << 7);
        ids[0] = 3ull << (DD - 10) | 1ull << (DD - 11); /* features 8, 9 and 10 */
        CHECK_INT(g->model->harm(g->model_inst, &a, NULL, 0, ids, n, got), BG_PLUGIN_OK);
        for (size_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int k = 0; k < DD; k++)
                if ((ids[i] >> (DD - 1 - k)) & 1)
                    s += x[k];
            double want = 0.5 * erfc((3.0 - s) / (0.7 * M_SQRT2));
            CHECK(memcmp(&got[i], &want, sizeof want) == 0,
                  "bandit harm of id %llu (batch of %zu, #%zu) is %.17g, the scalar sum gives "
                  "%.17g",
                  (unsigned long long)ids[i], n, i, got[i], want);
        }
    }
    bg_guard_build_destroy(b);
}

/* ---- bg__refine itself on a bandit (issue 16, d64fast's two changes) */

/* Scores ids[0..n) (ascending) for action a under hist with the model's
 * batched calls, as the engine does before refining (no cache). */
static void score(const bg_guard *g, const bg_observation *hist, size_t n_hist, const bg_action *a,
                  const uint64_t *ids, size_t n, double *lp, double *harm)
{
    bg_err err;
    CHECK(bg__score(g, hist, n_hist, a, ids, n, lp, harm, NULL, 0, 0, &err) == BG_OK, "%s",
          err.msg);
}

/* The hypotheses the refinement looked at (bg__refined.evals) from n
 * random d-bit candidates (seeded), with no observation (a flat posterior:
 * every candidate meets every plausibility floor, and each climb turns on
 * the bits of the action's positive features one round at a time). */
static uint32_t refine_evals(const bg_guard *g, int d, uint32_t budget, int archive)
{
    enum { NC = 64 };
    uint64_t ids[NC];
    double lp[NC], harm[NC], x[64];
    bg_rng r;
    bg_gfn_rng_seed(&r, 2048);
    for (int k = 0; k < d; k++)
        x[k] = 1.0;
    uint64_t mask = d >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << d) - 1;
    size_t n = 0;
    while (n < NC) {
        uint64_t id = bg_gfn_rng_u64(&r) & mask, dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= ids[i] == id;
        if (!dup)
            ids[n++] = id;
    }
    qsort(ids, n, sizeof *ids, cmp_u64);
    bg_action a = {.tool = "pull", .features = x, .n_features = (size_t)d};
    score(g, NULL, 0, &a, ids, n, lp, harm);
    bg__refined out;
    bg_err err;
    CHECK(bg__refine(g, NULL, 0, &a, ids, lp, harm, n, budget, archive, NULL, 0, &out, &err) ==
              BG_OK,
          "%s", err.msg);
    uint32_t e = out.evals;
    bg__refined_free(&out);
    return e;
}

/* d64fast (1): with the search archive among the candidates, the iid
 * objective's single-flip climbs get half the budget (2,048 of 4,096);
 * pair-flip climbs (d = 16: 136 per round <= 4,096 / 4) and the non-iid
 * objective keep the whole of it. The same candidates, action and budget
 * each time; only the archive flag, the estimator and d change. Before
 * that change (3cdc7e4's parent) the first count was ~4,096 too. */
static void test_archive_budget(bg_plugin_host *h)
{
    const uint32_t budget = BG_SAMPLED_REFINE_DEFAULT;
    bg_guard_build *b64i, *b64n, *b16i;
    const bg_guard *g64i = twin_build(
        h, "budget", "{features: 64, sigma: 1, theta: 48, enumerate: false}", "iid", "", &b64i);
    const bg_guard *g64n =
        twin_build(h, "budget", "{features: 64, sigma: 1, theta: 48, enumerate: false}", "noniid",
                   "{alpha: 0.01}", &b64n);
    const bg_guard *g16i = twin_build(
        h, "budget", "{features: 16, sigma: 1, theta: 12, enumerate: false}", "iid", "", &b16i);
    uint32_t arch = refine_evals(g64i, 64, budget, 1), plain = refine_evals(g64i, 64, budget, 0);
    uint32_t non = refine_evals(g64n, 64, budget, 1), pairs = refine_evals(g16i, 16, budget, 1);
    printf("refinement budget %u: iid d = 64 archive %u, no archive %u; non-iid d = 64 archive "
           "%u; iid d = 16 (pair flips) archive %u hypotheses looked at\n",
           budget, arch, plain, non, pairs);
    CHECK(arch <= budget / 2,
          "iid single-flip climbs with the archive looked at %u hypotheses, over half the "
          "budget (%u)",
          arch, budget / 2);
    CHECK(arch > budget / 4,
          "with the archive the climbs should still spend most of their "
          "half (%u looked at)",
          arch);
    CHECK(plain > budget / 2, "without the archive the iid climbs keep the whole budget: %u",
          plain);
    CHECK(non > budget / 2, "the non-iid objective keeps the whole budget with the archive: %u",
          non);
    CHECK(pairs > budget / 2, "pair-flip climbs keep the whole budget with the archive: %u", pairs);
    bg_guard_build_destroy(b64i);
    bg_guard_build_destroy(b64n);
    bg_guard_build_destroy(b16i);
}

/* The iid objective log R + log harm of ids[i]. */
static double iid_obj(const double *lp, const double *harm, size_t i)
{
    return harm[i] > 0 ? lp[i] + log(harm[i]) : -INFINITY;
}

/* Whether id is among r's hypotheses. */
static int refined_has(const bg__refined *r, uint64_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->ids[i] == id)
            return 1;
    return 0;
}

/* d64fast (2): an iid plausible turn that finds no seed at its floor is
 * skipped, and the tilted climbs go on. A d = 12 bandit (single flips:
 * 78 pairs a round > 300 / 4) after 6 observations of real-valued arms,
 * enumerated here: the exact iid cautious hypothesis h* = argmax log R +
 * log harm. The candidates: A, a hypothesis whose own climb (refine of
 * {A} alone: climb 0, then no seed) misses h*, and B, the 8 best by log R
 * + 4 log harm among those with log R below A's log R + log harm — so no
 * candidate but A meets the iid plausible floor (the best log R + log harm
 * scored, which only rises): every plausible turn finds no seed. The test
 * picks the first such A (by descending objective) from whose candidate
 * set the search reaches h*, and checks it does: the tilted climbs from B
 * ran after the seedless turn. Before the fix (3cdc7e4's parent) the
 * seedless turn ended the search after climb 0, which misses h*. */
static void test_seedless_turn(bg_plugin_host *h)
{
    enum { D = 12, NH = 1 << D, NOBS = 6, NB = 8 };
    const uint32_t budget = 300;
    bg_guard_build *b;
    const bg_guard *g = twin_build(
        h, "seedless", "{features: 12, sigma: 1, theta: 3, enumerate: false}", "iid", "", &b);
    static double feat[NOBS][D], x[D];
    bg_observation hist[NOBS];
    bg_rng r;
    bg_gfn_rng_seed(&r, 2026);
    uint64_t w = bg_gfn_rng_u64(&r) & (NH - 1);
    for (int t = 0; t < NOBS; t++) {
        double v = 0;
        for (int k = 0; k < D; k++) {
            feat[t][k] = 2 * bg_gfn_rng_uniform(&r) - 0.5;
            v += (w >> (D - 1 - k) & 1) ? feat[t][k] : 0;
        }
        hist[t] = (bg_observation){.action = {.id = "",
                                              .tool = "pull",
                                              .arguments_json = "",
                                              .features = feat[t],
                                              .n_features = D},
                                   .has_value = 1,
                                   .value = v + twin_randn(&r)};
    }
    for (int k = 0; k < D; k++)
        x[k] = 2 * bg_gfn_rng_uniform(&r) - 0.5;
    bg_action a = {.tool = "pull", .features = x, .n_features = D};
    static uint64_t all[NH];
    static double lp[NH], harm[NH], f[NH];
    static uint32_t by_f[NH];
    for (uint64_t i = 0; i < NH; i++)
        all[i] = i;
    score(g, hist, NOBS, &a, all, NH, lp, harm);
    uint64_t star = 0;
    for (uint32_t i = 0; i < NH; i++) {
        f[i] = iid_obj(lp, harm, i);
        by_f[i] = i;
        if (f[i] > f[star])
            star = i;
    }
    keys = f;
    qsort(by_f, NH, sizeof *by_f, by_key);
    bg_err err;
    int found = 0, tried = 0;
    for (uint32_t j = 1; j < NH && !found && tried < 64; j++) {
        uint64_t A = by_f[j];
        /* climb 0 alone: {A} */
        bg__refined one;
        CHECK(bg__refine(g, hist, NOBS, &a, &A, &lp[A], &harm[A], 1, budget, 0, NULL, 0, &one,
                         &err) == BG_OK,
              "%s", err.msg);
        int alone = refined_has(&one, star);
        bg__refined_free(&one);
        if (alone)
            continue;
        /* B: the NB best by log R + 4 log harm with log R < f(A) */
        uint64_t c[NB + 1];
        double clp[NB + 1], charm[NB + 1];
        size_t nc = 0;
        unsigned char pick_b[NH] = {0};
        for (int k = 0; k < NB; k++) {
            long best = -1;
            for (uint32_t i = 0; i < NH; i++)
                if (!pick_b[i] && i != A && lp[i] < f[A] && harm[i] > 0 &&
                    (best < 0 || lp[i] + 4 * log(harm[i]) > lp[best] + 4 * log(harm[best])))
                    best = (long)i;
            CHECK(best >= 0);
            pick_b[best] = 1;
        }
        for (uint32_t i = 0; i < NH; i++)
            if (pick_b[i] || i == A) {
                c[nc] = i;
                clp[nc] = lp[i];
                charm[nc++] = harm[i];
            }
        tried++;
        bg__refined out;
        CHECK(bg__refine(g, hist, NOBS, &a, c, clp, charm, nc, budget, 0, NULL, 0, &out, &err) ==
                  BG_OK,
              "%s", err.msg);
        found = refined_has(&out, star);
        if (found) {
            /* the precondition: A alone meets the iid plausible floor */
            for (size_t i = 0; i < nc; i++)
                CHECK(c[i] == A || clp[i] < f[A], "candidate %llu meets the floor",
                      (unsigned long long)c[i]);
            printf("seedless iid plausible turn: h* = %llu (log R + log harm %.4f), A = %llu "
                   "(rank %u, %.4f) misses it alone; with %d seeds below the floor the tilted "
                   "climbs found it (%u looked at, %zu kept)\n",
                   (unsigned long long)star, f[star], (unsigned long long)A, j, f[A], NB, out.evals,
                   out.n);
            /* and the estimator over the union picks it */
            uint64_t *m_ids = malloc((nc + out.n) * sizeof *m_ids);
            double *m_lp = malloc((nc + out.n) * sizeof *m_lp);
            double *m_harm = malloc((nc + out.n) * sizeof *m_harm);
            CHECK(m_ids && m_lp && m_harm);
            CHECK_INT(bg__refined_merge(c, clp, charm, nc, &out, m_ids, m_lp, m_harm), BG_OK);
            bg_verdict v;
            memset(&v, 0, sizeof v);
            CHECK(bg__estimate_over(g, m_ids, nc + out.n, m_lp, m_harm, &v, &err) == BG_OK, "%s",
                  err.msg);
            CHECK(v.cautious_id == star && v.harm_bound == harm[star],
                  "the estimate over the refined candidates is id %llu harm %.17g, the exact "
                  "cautious hypothesis is %llu harm %.17g",
                  (unsigned long long)v.cautious_id, v.harm_bound, (unsigned long long)star,
                  harm[star]);
            free(m_ids);
            free(m_lp);
            free(m_harm);
        }
        bg__refined_free(&out);
    }
    CHECK(found,
          "no candidate set of %d tried had a seedless plausible turn whose tilted climbs "
          "found h* = %llu",
          tried, (unsigned long long)star);
    bg_guard_build_destroy(b);
}

int main(void)
{
    test_radix();
    const char *const need[] = {"bg_bandit.so", "bg_iid.so", "bg_noniid.so"};
    const char *dir = bg_test_plugin_dir(need, 3);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    test_bandit_dot(h);
    test_archive_budget(h);
    test_seedless_turn(h);
    bg_guard_build *bi, *bn;
    const bg_guard *gi = twin_build(h, "refine", "{features: 4, theta: 2}", "iid", "", &bi);
    const bg_guard *gn =
        twin_build(h, "refine", "{features: 4, theta: 2}", "noniid", "{alpha: 0.01}", &bn);

    bg_rng r;
    bg_gfn_rng_seed(&r, 16);
    for (int i = 0; i < N; i++) {
        lr[i] = 3 * log(1 - bg_gfn_rng_uniform(&r)); /* −3·Exp(1) */
        hm[i] = bg_gfn_rng_uniform(&r);
    }
    /* the exact answers */
    static uint32_t order[N];
    static unsigned char plausible[N], in[N];
    for (uint32_t i = 0; i < N; i++)
        order[i] = i;
    qsort(order, N, sizeof *order, by_lr);
    double mx = lr[order[0]], z = 0, s = 0;
    for (int i = 0; i < N; i++)
        z += exp(lr[i] - mx);
    uint64_t exact_non = order[0], exact_iid = 0;
    int n_plausible = 0;
    for (int k = 0; k < N; k++) {
        double p = exp(lr[order[k]] - mx) / z;
        s += p;
        if (k == 0 || p >= ALPHA * s) {
            plausible[order[k]] = 1;
            n_plausible++;
            if (hm[order[k]] > hm[exact_non])
                exact_non = order[k];
        }
    }
    for (int i = 1; i < N; i++)
        if (lr[i] + log(hm[i]) > lr[exact_iid] + log(hm[exact_iid]))
            exact_iid = (uint64_t)i;
    printf("N = %d: |I^alpha| = %d, exact non-iid bound %.4f (id %llu), iid %.4f (id %llu)\n", N,
           n_plausible, hm[exact_non], (unsigned long long)exact_non, hm[exact_iid],
           (unsigned long long)exact_iid);
    CHECK(n_plausible >= 10, "the synthetic posterior should give a plausible set of some size");

    static uint64_t c[N], c2[N];
    int lowered = 0, with_star = 0;
    for (int t = 0; t < TRIALS; t++) {
        size_t n = 16 + bg_gfn_rng_u64(&r) % 497, extra = 1 + bg_gfn_rng_u64(&r) % 256;
        /* every fourth trial: C' gets both exact cautious hypotheses */
        uint64_t stars[2] = {exact_non, exact_iid};
        n = pick(&r, NULL, 0, n, c, in);
        size_t nb = 0;
        uint64_t base[N];
        for (size_t i = 0; i < n; i++)
            base[nb++] = c[i];
        if (t % 4 == 3)
            for (int k = 0; k < 2; k++)
                if (!in[stars[k]] && (k == 0 || stars[1] != stars[0]))
                    base[nb++] = stars[k];
        size_t n2 = pick(&r, base, nb, extra, c2, in);

        bg_estimate_out on = run(gn, c, n), on2 = run(gn, c2, n2);
        double f1 = floor_of(c, n, plausible), f2 = floor_of(c2, n2, plausible);
        CHECK(on.bound >= f1, "trial %d: non-iid bound %.6f below max harm over I^a & C %.6f", t,
              on.bound, f1);
        CHECK(on2.bound >= f2, "trial %d: non-iid bound %.6f below max harm over I^a & C' %.6f", t,
              on2.bound, f2);
        CHECK(f2 >= f1, "trial %d: the floor fell from %.6f to %.6f", t, f1, f2);
        lowered += on2.bound < on.bound;
        if (in[exact_non]) {
            with_star++;
            CHECK(on2.bound >= hm[exact_non],
                  "trial %d: C' holds the exact cautious hypothesis "
                  "but its bound %.6f < exact %.6f",
                  t, on2.bound, hm[exact_non]);
        }

        bg_estimate_out oi = run(gi, c, n), oi2 = run(gi, c2, n2);
        double s1 = lr[oi.cautious] + log(hm[oi.cautious]);
        double s2 = lr[oi2.cautious] + log(hm[oi2.cautious]);
        CHECK(s2 >= s1, "trial %d: iid objective fell from %.6f to %.6f", t, s1, s2);
        if (in[exact_iid])
            CHECK(oi2.bound == hm[exact_iid] && oi2.cautious == exact_iid,
                  "trial %d: C' holds the exact iid maximiser %llu but the estimate is %.6f "
                  "(id %zu)",
                  t, (unsigned long long)exact_iid, oi2.bound, oi2.cautious);
    }
    printf("%d trials: the non-iid bound fell when candidates were added in %d (never below the "
           "floor); %d supersets held the exact cautious hypothesis and covered it\n",
           TRIALS, lowered, with_star);
    CHECK(with_star >= TRIALS / 4, "the exact cautious hypothesis should be in many supersets");
    bg_guard_build_destroy(bi);
    bg_guard_build_destroy(bn);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
