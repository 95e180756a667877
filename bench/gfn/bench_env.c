/*
 * bench_env.c — the benchmark's bandit data set, its exact posterior
 * reward and harm, the Metropolis–Hastings baseline, and the oracle's
 * cautious hypothesis / plausible set / bound over a candidate set.
 *
 * The formulas are the bandit plugin's (plugins/hypothesis/bandit):
 * uniform prior, r ~ N(x·w, σ), harm = 1 − Φ((θ − x·w)/σ); the likelihood
 * is summed per arm from sufficient statistics (pulls, Σr, Σr²), which is
 * the same number up to rounding and a constant. bench_plugin.c checks
 * the two against each other when the plugin loads.
 *
 * The oracle follows spec/oracle.md: posterior ∝ exp(log R) normalised over
 * the candidates; cautious = argmax P(h|D)·harm (first in the candidate
 * order wins a tie); I^α = walk the posterior order (stable, descending),
 * keep k iff P(i_k) ≥ α·S_k.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gfn.h"
#include "gfn/gfn.h"

static double normal(bg_rng *r)
{
    double u1 = bg_gfn_rng_uniform(r) + 1e-300, u2 = bg_gfn_rng_uniform(r);
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

void bench_env_init(bench_env *e, uint32_t d, uint32_t n_arms, uint32_t n_obs, uint64_t seed)
{
    memset(e, 0, sizeof *e);
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    uint64_t all = d == 64 ? ~0ULL : (1ULL << d) - 1;
    e->d = d;
    e->n_arms = n_arms;
    e->n_obs = n_obs;
    e->sigma = 1.0;
    e->w_star = bg_gfn_rng_u64(&r) & all;
    e->theta = 0;
    for (uint32_t a = 0; a < n_arms; a++) {
        e->arm[a] = bg_gfn_rng_u64(&r) & all;
        double mean = __builtin_popcountll(e->arm[a] & e->w_star);
        if (mean > e->theta)
            e->theta = mean;
    }
    for (uint32_t i = 0; i < n_obs; i++) {
        uint32_t a = (uint32_t)(bg_gfn_rng_uniform(&r) * n_arms);
        double rew = __builtin_popcountll(e->arm[a] & e->w_star) + e->sigma * normal(&r);
        e->obs_arm[i] = a;
        e->obs_r[i] = rew;
        e->n_a[a] += 1;
        e->s_a[a] += rew;
        e->q_a[a] += rew * rew;
    }
}

double bench_log_r_local(const bench_env *e, uint64_t h)
{
    double s = 0, k = -0.5 / (e->sigma * e->sigma);
    for (uint32_t a = 0; a < e->n_arms; a++) {
        if (e->n_a[a] == 0)
            continue;
        double m = __builtin_popcountll(e->arm[a] & h);
        s += k * (e->n_a[a] * m * m - 2 * m * e->s_a[a] + e->q_a[a]);
    }
    return s;
}

int bench_log_reward(void *env, const uint64_t *h, size_t n, double *out)
{
    bench_env *e = env;
    e->reward_evals += n;
    if (e->plugin_log_r)
        return e->plugin_log_r(e->plugin_ctx, h, n, out);
    for (size_t i = 0; i < n; i++)
        out[i] = bench_log_r_local(e, h[i]);
    return BG_PLUGIN_OK;
}

double bench_harm(const bench_env *e, uint64_t xmask, uint64_t h)
{
    double m = __builtin_popcountll(xmask & h);
    return 0.5 * erfc((e->theta - m) / (e->sigma * sqrt(2.0)));
}

int bench_harm_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    const bench_harm_ctx *c = ctx;
    if (c->env->plugin_harm)
        return c->env->plugin_harm(c->env->plugin_ctx, c->xmask, h, n, out);
    for (size_t i = 0; i < n; i++)
        out[i] = bench_harm(c->env, c->xmask, h[i]);
    return BG_PLUGIN_OK;
}

void bench_mh_init(bench_mh *m, bench_env *env, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->env = env;
    bg_gfn_rng_seed(&m->rng, seed);
    uint64_t all = env->d == 64 ? ~0ULL : (1ULL << env->d) - 1;
    m->cur = bg_gfn_rng_u64(&m->rng) & all;
    bench_log_reward(env, &m->cur, 1, &m->cur_logr);
}

uint64_t bench_mh_step(bench_mh *m)
{
    uint32_t k = (uint32_t)(bg_gfn_rng_uniform(&m->rng) * m->env->d);
    uint64_t prop = m->cur ^ (1ULL << k);
    double lr;
    bench_log_reward(m->env, &prop, 1, &lr);
    /* symmetric proposal: accept with min(1, R'/R) */
    if (lr >= m->cur_logr || bg_gfn_rng_uniform(&m->rng) < exp(lr - m->cur_logr)) {
        m->cur = prop;
        m->cur_logr = lr;
        m->accepted++;
    }
    m->steps++;
    return m->cur;
}

static const double *sort_keys;
static int by_post_desc(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (sort_keys[i] != sort_keys[j])
        return sort_keys[i] > sort_keys[j] ? -1 : 1;
    return i < j ? -1 : i > j; /* stable: ascending index */
}

size_t bench_plausible_set(const double *log_r, size_t n, double alpha, uint32_t *order,
                           uint32_t *set)
{
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    sort_keys = log_r;
    qsort(order, n, sizeof *order, by_post_desc);
    double mx = log_r[order[0]], z = 0;
    for (size_t i = 0; i < n; i++)
        z += exp(log_r[i] - mx);
    double cum = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        double p = exp(log_r[order[i]] - mx) / z;
        cum += p;
        if (p >= alpha * cum)
            set[k++] = order[i];
    }
    return k;
}

void bench_oracle_eval(const bench_env *e, const uint64_t *ids, const double *log_r, size_t n,
                       uint64_t xmask, double alpha, uint32_t *order, bench_oracle *out)
{
    double best = -INFINITY;
    out->cautious = ids[0];
    out->iid_bound = 0;
    for (size_t i = 0; i < n; i++) {
        double hm = bench_harm(e, xmask, ids[i]);
        double score = log_r[i] + log(hm);
        if (score > best) {
            best = score;
            out->cautious = ids[i];
            out->iid_bound = hm;
        }
    }
    uint32_t *set = order + n; /* caller gave 2n */
    out->plausible = bench_plausible_set(log_r, n, alpha, order, set);
    out->noniid_bound = 0;
    for (size_t i = 0; i < out->plausible; i++) {
        double hm = bench_harm(e, xmask, ids[set[i]]);
        if (hm > out->noniid_bound)
            out->noniid_bound = hm;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t bench_unique(uint64_t *ids, size_t n)
{
    if (n == 0)
        return 0;
    qsort(ids, n, sizeof *ids, cmp_u64);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (ids[i] != ids[k - 1])
            ids[k++] = ids[i];
    return k;
}

double *bench_exact_posterior(const bench_env *e, double *log_r)
{
    size_t n = (size_t)1 << e->d;
    double *p = malloc(n * sizeof *p), mx = -INFINITY, z = 0;
    for (size_t h = 0; h < n; h++) {
        p[h] = bench_log_r_local(e, h);
        if (log_r)
            log_r[h] = p[h];
        mx = p[h] > mx ? p[h] : mx;
    }
    for (size_t h = 0; h < n; h++)
        z += p[h] = exp(p[h] - mx);
    for (size_t h = 0; h < n; h++)
        p[h] /= z;
    return p;
}
