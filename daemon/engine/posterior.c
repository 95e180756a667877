/*
 * posterior.c — log-space posterior arithmetic and the posterior order.
 * Design and invariants: posterior.h.
 */
#include "engine/posterior.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t bg__posterior_bytes(size_t n)
{
    return n * (sizeof(uint64_t) + 3 * sizeof(double) + sizeof(uint32_t));
}

int bg__posterior_init(bg__posterior *p, size_t n, bg_err *err)
{
    memset(p, 0, sizeof *p);
    if (n == 0 || n > UINT32_MAX)
        return bg_err_set(err, BG_EINVAL, "posterior: %zu candidates; expected 1..%u", n,
                          (unsigned)UINT32_MAX);
    p->n = n;
    p->ids = malloc(n * sizeof *p->ids);
    p->log_post = malloc(n * sizeof *p->log_post);
    p->scratch = malloc(n * sizeof *p->scratch);
    p->prob = malloc(n * sizeof *p->prob);
    p->order = malloc(n * sizeof *p->order);
    p->order_need = 2.0;
    if (!p->ids || !p->log_post || !p->scratch || !p->prob || !p->order) {
        bg__posterior_close(p);
        return bg_err_set(err, BG_ENOMEM, "posterior: out of memory for %zu candidates", n);
    }
    return BG_OK;
}

void bg__posterior_close(bg__posterior *p)
{
    free(p->ids);
    free(p->log_post);
    free(p->scratch);
    free(p->prob);
    free(p->order);
    memset(p, 0, sizeof *p);
}

void bg__posterior_stage(bg__posterior *p, size_t off, const double *log_lik, size_t len)
{
    const double *lp = p->log_post + off;
    double *s = p->scratch + off;
    for (size_t i = 0; i < len; i++)
        s[i] = lp[i] + log_lik[i];
}

/* Normalise a[0..n) in place with a max-shifted log-sum-exp; *max_out gets
 * the new maximum. Identical arithmetic for every element (invariant 2). */
static int normalise(double *a, size_t n, double *max_out, bg_err *err)
{
    double m = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || a[i] == INFINITY)
            return bg_err_set(err, BG_EINTERNAL,
                              "posterior: log-weight of candidate %zu is %g; the model returned "
                              "a NaN or +inf log-probability",
                              i, a[i]);
        if (a[i] > m)
            m = a[i];
    }
    if (m == -INFINITY)
        return bg_err_set(err, BG_EINVAL,
                          "posterior: the data has zero likelihood under every hypothesis");
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - m;
        if (d > -746.0) /* exp() of anything lower is exactly 0: skip the call */
            s += exp(d);
    }
    double lz = m + log(s);
    for (size_t i = 0; i < n; i++)
        a[i] -= lz;
    *max_out = m - lz;
    return BG_OK;
}

/* Invariant 4: linear probabilities without subnormals. */
static void fill_prob(bg__posterior *p)
{
    const double floor = log(DBL_MIN);
    for (size_t i = 0; i < p->n; i++)
        p->prob[i] = p->log_post[i] >= floor ? exp(p->log_post[i]) : 0.0;
    for (size_t i = 0; i < p->n; i++)
        if (p->prob[i] < DBL_MIN)
            p->prob[i] = 0.0;
}

int bg__posterior_normalise(bg__posterior *p, bg_err *err)
{
    p->order_need = 2.0;
    p->n_order = 0;
    int rc = normalise(p->log_post, p->n, &p->max_log_post, err);
    if (rc == BG_OK)
        fill_prob(p);
    return rc;
}

int bg__posterior_prepare(bg__posterior *p, double *max_out, bg_err *err)
{
    return normalise(p->scratch, p->n, max_out, err);
}

void bg__posterior_swap(bg__posterior *p, double m)
{
    double *t = p->log_post;
    p->log_post = p->scratch;
    p->scratch = t;
    p->max_log_post = m;
    p->order_need = 2.0;
    p->n_order = 0;
    p->n_obs++;
    fill_prob(p);
}

typedef struct keyed {
    double lp;
    uint32_t idx;
} keyed;

/* Descending posterior, ascending index on ties: a strict total order. */
static int keyed_cmp(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->lp > y->lp)
        return -1;
    if (x->lp < y->lp)
        return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Radix sort for large selections. A descending, total-order key: the
 * IEEE bits mapped so that unsigned order is numeric order (−0 folded into
 * +0 first), then complemented. LSD radix is stable, and the selection is
 * filled in ascending index order, so ties come out by ascending index —
 * the same order keyed_cmp defines. */
#define RADIX_MIN 4096
#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)

typedef struct rkey {
    uint64_t key;
    uint32_t idx;
} rkey;

static uint64_t desc_key(double lp)
{
    double z = lp + 0.0; /* -0.0 -> +0.0: equal values, equal keys */
    uint64_t b;
    memcpy(&b, &z, sizeof b);
    uint64_t asc = (b >> 63) ? ~b : (b | 0x8000000000000000ull);
    return ~asc;
}

/* Sort a[0..n) by key (stable); tmp has room for n. Returns the sorted
 * array (a or tmp). */
static rkey *radix_sort(rkey *a, rkey *tmp, size_t n)
{
    size_t count[RADIX_SIZE];
    for (unsigned shift = 0; shift < 64; shift += RADIX_BITS) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[(a[i].key >> shift) & (RADIX_SIZE - 1)]++;
        if (count[(a[0].key >> shift) & (RADIX_SIZE - 1)] == n)
            continue; /* every key has this digit: nothing to do */
        size_t sum = 0;
        for (size_t d = 0; d < RADIX_SIZE; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].key >> shift) & (RADIX_SIZE - 1)]++] = a[i];
        rkey *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

static int order_radix(bg__posterior *p, double cut, size_t k, bg_err *err)
{
    rkey *a = malloc(k * sizeof *a), *tmp = malloc(k * sizeof *tmp);
    if (!a || !tmp) {
        free(a);
        free(tmp);
        return bg_err_set(err, BG_ENOMEM, "posterior: out of memory ordering %zu candidates", k);
    }
    size_t j = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->log_post[i] >= cut)
            a[j++] = (rkey){desc_key(p->log_post[i]), (uint32_t)i};
    rkey *sorted = radix_sort(a, tmp, k);
    for (size_t i = 0; i < k; i++)
        p->order[i] = sorted[i].idx;
    free(a);
    free(tmp);
    return BG_OK;
}

int bg__posterior_order(bg__posterior *p, double need, bg_err *err)
{
    p->n_order = 0;
    p->order_need = 2.0;
    if (!(need <= 1.0)) /* also NaN: no order */
        return BG_OK;
    if (need < 0.0)
        need = 0.0;
    double cut = need > 0.0 ? p->max_log_post + log(need) - BG_ORDER_MARGIN : -INFINITY;
    /* Threshold filter first: for a concentrated posterior few survive, so
     * the sort below is over the selection, not over all n. */
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->log_post[i] >= cut)
            k++;
    if (k >= RADIX_MIN) {
        int rc = order_radix(p, cut, k, err);
        if (rc != BG_OK)
            return rc;
    } else {
        keyed *sel = malloc((k ? k : 1) * sizeof *sel);
        if (!sel)
            return bg_err_set(err, BG_ENOMEM, "posterior: out of memory ordering %zu candidates",
                              k);
        size_t j = 0;
        for (size_t i = 0; i < p->n; i++)
            if (p->log_post[i] >= cut)
                sel[j++] = (keyed){p->log_post[i], (uint32_t)i};
        qsort(sel, k, sizeof *sel, keyed_cmp);
        for (size_t i = 0; i < k; i++)
            p->order[i] = sel[i].idx;
        free(sel);
    }
    p->n_order = k;
    p->order_need = need;
    return BG_OK;
}

int bg__posterior_order_covers(const bg__posterior *p, double need)
{
    if (!(need <= 1.0))
        return 1;
    if (need < 0.0)
        need = 0.0;
    return p->order_need <= need;
}

size_t bg__posterior_map(const bg__posterior *p)
{
    if (p->n_order > 0)
        return p->order[0];
    size_t best = 0;
    for (size_t i = 1; i < p->n; i++)
        if (p->log_post[i] > p->log_post[best])
            best = i;
    return best;
}

double bg__posterior_entropy(const bg__posterior *p)
{
    double h = 0.0;
    for (size_t i = 0; i < p->n; i++) {
        double lp = p->log_post[i];
        if (lp > -INFINITY)
            h -= exp(lp) * lp;
    }
    return h;
}

int bg__posterior_check(const bg__posterior *p, bg_err *err)
{
    double m = -INFINITY, s = 0.0;
    for (size_t i = 0; i < p->n; i++)
        if (p->log_post[i] > m)
            m = p->log_post[i];
    if (m != p->max_log_post)
        return bg_err_set(err, BG_EINTERNAL, "posterior invariant 1: max %.17g != cached %.17g", m,
                          p->max_log_post);
    for (size_t i = 0; i < p->n; i++)
        s += exp(p->log_post[i] - m);
    double lz = m + log(s);
    if (!(fabs(lz) < 1e-12))
        return bg_err_set(err, BG_EINTERNAL, "posterior invariant 1: log-normaliser %.3g != 0", lz);
    const double floor = log(DBL_MIN);
    for (size_t i = 0; i < p->n; i++) {
        double want = p->log_post[i] >= floor ? exp(p->log_post[i]) : 0.0;
        if (want < DBL_MIN)
            want = 0.0;
        if (p->prob[i] != want)
            return bg_err_set(err, BG_EINTERNAL, "posterior invariant 4: prob[%zu] stale", i);
    }
    if (p->order_need > 1.0)
        return BG_OK;
    double cut = p->order_need > 0.0 ? m + log(p->order_need) - BG_ORDER_MARGIN : -INFINITY;
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->log_post[i] >= cut)
            k++;
    if (k != p->n_order)
        return bg_err_set(err, BG_EINTERNAL, "posterior invariant 3: %zu ordered, %zu selected",
                          p->n_order, k);
    for (size_t i = 1; i < p->n_order; i++) {
        keyed a = {p->log_post[p->order[i - 1]], p->order[i - 1]};
        keyed b = {p->log_post[p->order[i]], p->order[i]};
        if (keyed_cmp(&a, &b) >= 0)
            return bg_err_set(err, BG_EINTERNAL, "posterior invariant 3: order broken at %zu", i);
    }
    return BG_OK;
}
