/*
 * test_engine_posterior.c — the engine's log-space posterior arithmetic and
 * posterior order, without plugins (daemon/engine/posterior.h).
 *
 *  1. normalisation equals brute-force enumeration with long double
 *     products on small random problems (tolerance 1e-12 relative);
 *  2. 10^6 candidates with log-likelihoods that drive most of them to
 *     P = 1e-300 and below: no NaN, the log-normaliser is 0 (1e-12), the
 *     log-ratios are exact to 1e-13 relative after 40 updates;
 *  3. exactly tied candidates stay bitwise equal through 10^5 updates;
 *  4. the order equals a full stable sort restricted to P >= need·max P,
 *     for needs 0, 1e-3, 0.3, 1, and none for need 2 (random data with ties),
 *     at 3,000 (the engine's qsort path) and 200,000 candidates (its radix
 *     path), including -inf values.
 * Fixed seeds; every tolerance is printed when a check fails.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "engine/posterior.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* Apply one update with log_lik ll[0..n) through stage/prepare/swap. */
static int update(bg__posterior *p, const double *ll)
{
    bg_err err;
    double m;
    bg__posterior_stage(p, 0, ll, p->n);
    int rc = bg__posterior_prepare(p, &m, &err);
    if (rc == BG_OK)
        bg__posterior_swap(p, m);
    else
        fprintf(stderr, "update: %s\n", err.msg);
    return rc;
}

static void test_brute_force(void)
{
    for (int trial = 0; trial < 50; trial++) {
        size_t n = 2 + (size_t)(urand() * 30);
        size_t steps = 1 + (size_t)(urand() * 20);
        bg__posterior p;
        bg_err err;
        CHECK_INT(bg__posterior_init(&p, n, &err), BG_OK);
        long double *prod = malloc(n * sizeof *prod);
        double *ll = malloc(n * sizeof *ll);
        for (size_t i = 0; i < n; i++) {
            double pr = 0.05 + urand();
            p.log_post[i] = log(pr);
            prod[i] = pr;
        }
        CHECK_INT(bg__posterior_normalise(&p, &err), BG_OK);
        for (size_t t = 0; t < steps; t++) {
            for (size_t i = 0; i < n; i++) {
                double lik = 0.01 + urand();
                ll[i] = log(lik);
                prod[i] *= lik;
            }
            CHECK_INT(update(&p, ll), BG_OK);
        }
        long double z = 0;
        for (size_t i = 0; i < n; i++)
            z += prod[i];
        for (size_t i = 0; i < n; i++) {
            double want = (double)(prod[i] / z);
            CHECK_NEAR(exp(p.log_post[i]) / want, 1.0, 1e-12);
        }
        CHECK_INT(bg__posterior_check(&p, &err), BG_OK);
        free(prod);
        free(ll);
        bg__posterior_close(&p);
    }
}

static void test_million(void)
{
    const size_t n = 1000000, steps = 40;
    bg__posterior p;
    bg_err err;
    CHECK_INT(bg__posterior_init(&p, n, &err), BG_OK);
    double *ll = malloc(n * sizeof *ll);
    /* Candidate i's log-lik per step: -(i mod 1000)·0.5 - (i / 1000)·1e-3;
     * after 40 steps candidate 999 sits ~e^-19980 below the top. */
    for (size_t i = 0; i < n; i++)
        p.log_post[i] = 0.0;
    CHECK_INT(bg__posterior_normalise(&p, &err), BG_OK);
    for (size_t i = 0; i < n; i++)
        ll[i] = -(double)(i % 1000) * 0.5 - (double)(i / 1000) * 1e-3;
    for (size_t t = 0; t < steps; t++)
        CHECK_INT(update(&p, ll), BG_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (isnan(p.log_post[i]) || p.log_post[i] > 0)
            bad++;
    CHECK_INT(bad, 0);
    CHECK_INT(bg__posterior_check(&p, &err), BG_OK);
    /* Exact log-ratios: log P(i) - log P(0) = steps · (ll[i] - ll[0]). */
    double worst = 0;
    for (size_t i = 0; i < n; i += 997) {
        double got = p.log_post[i] - p.log_post[0];
        double want = (double)steps * (ll[i] - ll[0]);
        double d = fabs(got - want) / (1.0 + fabs(want));
        if (d > worst)
            worst = d;
    }
    printf("million: worst relative log-ratio error %.3g (tolerance 1e-13)\n", worst);
    CHECK(worst < 1e-13);
    CHECK_INT(bg__posterior_map(&p), 0);
    CHECK(p.log_post[999] < -19000.0); /* far below 1e-300, still a number */
    free(ll);
    bg__posterior_close(&p);
}

static void test_ties(void)
{
    const size_t n = 64, steps = 100000;
    bg__posterior p;
    bg_err err;
    CHECK_INT(bg__posterior_init(&p, n, &err), BG_OK);
    double *ll = malloc(n * sizeof *ll);
    for (size_t i = 0; i < n; i++)
        p.log_post[i] = -(double)(i / 2); /* pairs (2k, 2k+1) tied */
    CHECK_INT(bg__posterior_normalise(&p, &err), BG_OK);
    for (size_t t = 0; t < steps; t++) {
        for (size_t i = 0; i < n; i += 2)
            ll[i] = ll[i + 1] = -urand() * 3.0;
        if (update(&p, ll) != BG_OK)
            break;
    }
    size_t broken = 0;
    for (size_t i = 0; i < n; i += 2)
        if (memcmp(&p.log_post[i], &p.log_post[i + 1], sizeof(double)) != 0)
            broken++;
    CHECK_INT(broken, 0);
    CHECK_INT(p.n_obs, steps);
    CHECK_INT(bg__posterior_check(&p, &err), BG_OK);
    /* Ties order by ascending index. */
    CHECK_INT(bg__posterior_order(&p, 0.0, &err), BG_OK);
    for (size_t k = 0; k + 1 < p.n_order; k++)
        if (p.log_post[p.order[k]] == p.log_post[p.order[k + 1]])
            CHECK(p.order[k] < p.order[k + 1]);
    free(ll);
    bg__posterior_close(&p);
}

typedef struct ref_item {
    double lp;
    size_t idx;
} ref_item;

/* Insertion sort: stable by construction, the reference. */
static void stable_sort_desc(ref_item *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        ref_item x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1].lp < x.lp) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Reference for large n: qsort with the total order (value desc, index
 * asc), which is what a stable sort of a descending sort by value gives. */
static int ref_cmp(const void *a, const void *b)
{
    const ref_item *x = a, *y = b;
    if (x->lp != y->lp)
        return x->lp > y->lp ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* n below the engine's radix threshold exercises its qsort path, above it
 * the radix path; both must give the reference order. */
static void test_order(size_t n)
{
    bg__posterior p;
    bg_err err;
    CHECK_INT(bg__posterior_init(&p, n, &err), BG_OK);
    for (size_t i = 0; i < n; i++)
        p.log_post[i] = -floor(urand() * 40.0) * 0.25; /* many ties */
    p.log_post[9] = p.log_post[n - 1] = -INFINITY;     /* impossible hypotheses */
    CHECK_INT(bg__posterior_normalise(&p, &err), BG_OK);

    ref_item *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
        ref[i] = (ref_item){p.log_post[i], i};
    if (n <= 4000)
        stable_sort_desc(ref, n);
    else
        qsort(ref, n, sizeof *ref, ref_cmp);
    const double needs[] = {0.0, 1e-3, 0.3, 1.0};
    for (size_t t = 0; t < sizeof needs / sizeof needs[0]; t++) {
        CHECK_INT(bg__posterior_order(&p, needs[t], &err), BG_OK);
        size_t want = 0;
        double cut = needs[t] > 0 ? p.max_log_post + log(needs[t]) - BG_ORDER_MARGIN : -INFINITY;
        while (want < n && ref[want].lp >= cut)
            want++;
        CHECK_INT(p.n_order, want);
        size_t mism = 0;
        for (size_t k = 0; k < p.n_order && k < want; k++)
            if (p.order[k] != ref[k].idx)
                mism++;
        CHECK_INT(mism, 0);
        CHECK_INT(bg__posterior_check(&p, &err), BG_OK);
        CHECK(bg__posterior_order_covers(&p, needs[t]));
        CHECK(bg__posterior_order_covers(&p, 1.5));
    }
    CHECK(!bg__posterior_order_covers(&p, 0.5)); /* ordered for need 1 only */
    CHECK_INT(bg__posterior_order(&p, 0.3, &err), BG_OK);
    CHECK(!bg__posterior_order_covers(&p, 0.1));
    CHECK(bg__posterior_order_covers(&p, 0.5));
    CHECK_INT(bg__posterior_order(&p, 2.0, &err), BG_OK);
    CHECK_INT(p.n_order, 0);
    free(ref);
    bg__posterior_close(&p);
}

static void test_zero_likelihood(void)
{
    bg__posterior p;
    bg_err err;
    CHECK_INT(bg__posterior_init(&p, 3, &err), BG_OK);
    p.log_post[0] = p.log_post[1] = p.log_post[2] = 0;
    CHECK_INT(bg__posterior_normalise(&p, &err), BG_OK);
    double before = p.log_post[1];
    double ll[3] = {-INFINITY, -INFINITY, -INFINITY};
    double m;
    bg__posterior_stage(&p, 0, ll, 3);
    CHECK_INT(bg__posterior_prepare(&p, &m, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "zero likelihood") != NULL);
    CHECK(p.log_post[1] == before); /* unchanged */
    double nanll[3] = {0, NAN, 0};
    bg__posterior_stage(&p, 0, nanll, 3);
    CHECK_INT(bg__posterior_prepare(&p, &m, &err), BG_EINTERNAL);
    bg__posterior_close(&p);
}

int main(void)
{
    test_brute_force();
    test_million();
    test_ties();
    test_order(3000);
    test_order(200000);
    test_zero_likelihood();
    CHECK_DONE("test_engine_posterior");
}
