/*
 * sampled_archive.c — the posterior search archive of a session sampler
 * (sampled_priv.h bg__archive; issue 16).
 *
 * Why: a sampled verdict's bound is an optimisation over candidates (the
 * cautious-but-plausible hypothesis, oracle.md), and the refinement's
 * climbs (sampled_refine.c) start from the draw. At d = 22 and beyond the
 * draw's best are often far from the posterior's modes (a GFlowNet trained
 * 20 steps per observation trails a posterior that sharpens: at d = 64 its
 * cautious hypothesis was 4-22 nats below a long MH run's), so the climbs
 * end in local optima. Metropolis-Hastings on the exact reward costs one
 * reward evaluation per proposal — far less than a training step — and
 * finds better hypotheses; it needs no context, so it can run where time
 * is cheap: on the trainer thread after each training round (inline guards:
 * inside Observe), never on the Evaluate path.
 *
 * What it keeps: BG__ARCHIVE_CAP distinct hypotheses of those found so far,
 * by log R = log prior + Σ log lik at one reward version (ties: lower id):
 * first each chain's best (the modes the search reached), then every
 * bit's extremes — the best with the bit set and the best with it clear,
 * at most 2 · bits — then the best by log R (pick). Ids ascending,
 * immutable once made and shared by reference (an Evaluate takes one
 * while a newer one replaces it). Why: the best 1,024 by log R alone are
 * one cluster around the mode, and a context whose cautious hypothesis
 * needs a bit the cluster never flips had no plausible seed for the
 * refinement's climb near it (bench_mh_long, docs/GFLOWNET.md). Each
 * search:
 *   1. re-scores the previous archive at the current reward version (as
 *      gfn's replay buffer re-scores its entries: the version travels with
 *      the archive), and scores the sampler's newest draw;
 *   2. runs BG__ARCHIVE_CHAINS Metropolis chains in lock step (one batched
 *      reward call per step for the proposals not scored yet), each
 *      proposal flipping one uniform bit or, half the time, two (symmetric;
 *      two flips move a feature between coordinates along the bandit's
 *      plateaus). Chains start from the best scored so far (the archive's
 *      best, then the next ones at least BG__ARCHIVE_SPREAD bits from
 *      every start before: distinct modes, not one mode's neighbours), the
 *      draw's best, and uniform random ids; the random ones are annealed
 *      (β from 0.05 to 1 over the first half of their steps), the others
 *      run at β = 1;
 *   3. keeps cap of everything scored (the visited table): the chains'
 *      bests, the extremes, then the best.
 * Budget: at most `budget` reward evaluations a search (the re-scoring
 * included; proposals already scored cost none, at most 4 × budget
 * proposals in all), so its cost per observation is budget × n_hist
 * log-likelihoods plus the priors: measured in docs/GFLOWNET.md.
 *
 * Memory: an archive is cap × 16 bytes (16 KiB at the default 1,024) per
 * session sampler; a search holds a visited table of at most
 * 4 × (budget + cap + K) slots of 17 bytes while it runs (rounded up to a
 * power of two: 2^19, 8.9 MB, at the daemon's 65,536).
 *
 * Deterministic: the same reward, previous archive, draw and seed give the
 * same archive. Threads: a search has no state of its own; the caller
 * publishes its result (sampled.c). Ownership: *out is new (refs 1,
 * bg__archive_unref).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bg_fnv.h"
#include "engine/sampled_priv.h"

/* Chains of one search, run in lock step (one batched reward call a step). */
#define BG__ARCHIVE_CHAINS 16
/* Bits apart the chains started from the best scored are, at least. */
#define BG__ARCHIVE_SPREAD 3

void bg__archive_unref(bg__archive *a)
{
    if (a && atomic_fetch_sub(&a->refs, 1) == 1)
        free(a);
}

/* A search in progress. */
typedef struct search {
    bg__reward_ctx *r;
    bg__idtab v; /* everything scored (sized by the caller for the budget) */
    uint32_t bits;
    uint64_t limit; /* largest valid id + 1; 0: every id of bits */
    uint64_t evals, budget;
    uint64_t *ids; /* scratch for one batch */
    double *out;
} search;

static int valid_id(const search *s, uint64_t id)
{
    return !s->limit || id < s->limit;
}

/* log R of ids[0..m) (scored now unless visited; an invalid id or a NaN
 * score is -inf) into lp; the new ones join the visited table. BG_OK, or
 * the reward's failure. */
static int score(search *s, const uint64_t *ids, size_t m, double *lp)
{
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        lp[i] = -INFINITY;
        if (valid_id(s, ids[i]) && !bg__idtab_get(&s->v, ids[i], &lp[i], NULL))
            s->ids[k++] = ids[i];
    }
    if (!k)
        return BG_OK;
    if (bg__session_log_r(s->r, s->ids, k, s->out) != BG_PLUGIN_OK)
        return BG_EINTERNAL;
    s->evals += k;
    for (size_t j = 0; j < k; j++) {
        double l = s->out[j];
        if (isnan(l) || l == INFINITY)
            l = -INFINITY; /* a model that misbehaves there: never kept */
        bg__idtab_put(&s->v, s->ids[j], l, 0);
    }
    for (size_t i = 0; i < m; i++)
        if (valid_id(s, ids[i]))
            bg__idtab_get(&s->v, ids[i], &lp[i], NULL);
    return BG_OK;
}

/* Score ids[0..n) in batches of at most `batch` (the scratch's size). */
static int score_all(search *s, const uint64_t *ids, size_t n, size_t batch, double *lp)
{
    for (size_t i = 0; i < n; i += batch) {
        int rc = score(s, ids + i, n - i < batch ? n - i : batch, lp + i);
        if (rc != BG_OK)
            return rc;
    }
    return BG_OK;
}

static uint64_t random_id(const search *s, bg_rng *rng)
{
    uint64_t id = bg_rng_next(rng);
    if (s->bits < 64)
        id &= (1ULL << s->bits) - 1;
    return s->limit ? id % s->limit : id;
}

uint64_t bg__flip_propose(uint32_t bits, bg_rng *rng, uint64_t id)
{
    uint64_t r = bg_rng_next(rng);
    uint32_t a = (uint32_t)(r % bits);
    id ^= 1ULL << a;
    if (bits > 1 && (r >> 32) & 1) {
        uint32_t b = (uint32_t)((r >> 33) % (bits - 1));
        b += b >= a;
        id ^= 1ULL << b;
    }
    return id;
}

/* The slots of v with a finite lp, best first (new array, *n set); NULL
 * when out of memory. A selection by radix order of the lp's key. */
static size_t *top_slots(const bg__idtab *v, size_t *n)
{
    size_t *sl = malloc((v->n ? v->n : 1) * sizeof *sl);
    uint64_t *key = malloc((v->n ? v->n : 1) * sizeof *key);
    uint32_t *ord = malloc((v->n ? v->n : 1) * sizeof *ord);
    size_t m = 0;
    if (!sl || !key || !ord) {
        free(sl);
        free(key);
        free(ord);
        return NULL;
    }
    for (size_t i = 0; i <= v->mask; i++)
        if (v->used[i] && v->lp[i] > -INFINITY)
            sl[m++] = i;
    /* descending lp, ties ascending id: a stable radix sort by lp of the
     * slots sorted by id */
    for (size_t i = 0; i < m; i++)
        key[i] = v->key[sl[i]];
    if (bg__radix_order(key, m, ord) != BG_OK)
        goto fail;
    size_t *by_id = malloc((m ? m : 1) * sizeof *by_id);
    if (!by_id)
        goto fail;
    for (size_t i = 0; i < m; i++)
        by_id[i] = sl[ord[i]];
    for (size_t i = 0; i < m; i++)
        key[i] = bg__desc_key(v->lp[by_id[i]]);
    if (bg__radix_order(key, m, ord) != BG_OK) {
        free(by_id);
        goto fail;
    }
    for (size_t i = 0; i < m; i++)
        sl[i] = by_id[ord[i]];
    free(by_id);
    free(key);
    free(ord);
    *n = m;
    return sl;
fail:
    free(sl);
    free(key);
    free(ord);
    return NULL;
}

/* Which of the m slots (best first) an archive of cap keeps, moved to the
 * front of sl (returns how many, min(m, cap)): first the chains' bests
 * (`force`, n_force ids: one per chain, the modes the search reached),
 * then every bit's extremes — for each bit, the best scored hypothesis
 * with it set and the best with it clear (the first such in the order),
 * at most 2 · bits slots, fewer where one hypothesis is the extreme of
 * several — then the others, best first (why: the top comment, "What it
 * keeps"). Order kept within each part (a stable partition of a sorted
 * list). 0 when out of memory. */
static size_t pick(const bg__idtab *v, size_t *sl, size_t m, size_t cap, uint32_t bits,
                   const uint64_t *force, size_t n_force)
{
    uint64_t all = bits >= 64 ? ~0ULL : (1ULL << bits) - 1, have_set = 0, have_clear = 0;
    unsigned char *keep = calloc(m ? m : 1, 1);
    size_t *tmp = malloc((m ? m : 1) * sizeof *tmp);
    if (!keep || !tmp) {
        free(keep);
        free(tmp);
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < m && n < cap; i++)
        for (size_t f = 0; f < n_force && !keep[i]; f++)
            if (v->key[sl[i]] == force[f])
                keep[i] = 1, n++;
    for (size_t i = 0; i < m && n < cap && (have_set != all || have_clear != all); i++) {
        uint64_t id = v->key[sl[i]];
        uint64_t new_set = id & all & ~have_set, new_clear = ~id & all & ~have_clear;
        have_set |= new_set;
        have_clear |= new_clear;
        if ((new_set || new_clear) && !keep[i])
            keep[i] = 1, n++;
    }
    size_t a = 0, b = n;
    for (size_t i = 0; i < m; i++)
        tmp[keep[i] ? a++ : b++] = sl[i];
    memcpy(sl, tmp, m * sizeof *sl);
    free(keep);
    free(tmp);
    return m < cap ? m : cap;
}

/* The archive of v: pick's choice of cap (ids ascending). */
static bg__archive *archive_of(const bg__idtab *v, size_t cap, uint64_t version, uint32_t bits,
                               const uint64_t *force, size_t n_force)
{
    size_t m;
    size_t *sl = top_slots(v, &m);
    if (!sl)
        return NULL;
    size_t n = pick(v, sl, m, cap, bits, force, n_force);
    if (!n && m) {
        free(sl);
        return NULL;
    }
    bg__archive *a = malloc(sizeof *a + n * (sizeof(uint64_t) + sizeof(double)));
    uint64_t *key = malloc((n ? n : 1) * sizeof *key);
    uint32_t *ord = malloc((n ? n : 1) * sizeof *ord);
    if (!a || !key || !ord) {
        free(a);
        a = NULL;
        goto done;
    }
    a->ids = (uint64_t *)(a + 1);
    a->lp = (double *)(a->ids + n);
    a->n = n;
    a->version = version;
    atomic_init(&a->refs, 1);
    for (size_t i = 0; i < n; i++)
        key[i] = v->key[sl[i]];
    if (bg__radix_order(key, n, ord) != BG_OK) {
        free(a);
        a = NULL;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        a->ids[i] = v->key[sl[ord[i]]];
        a->lp[i] = v->lp[sl[ord[i]]];
    }
done:
    free(key);
    free(ord);
    free(sl);
    return a;
}

/* Which model scored an archive's log R: its vtable and instance, as the
 * draw's log R cache keys them (sampled_score.c). */
uint64_t bg__model_tag(const bg_guard *g)
{
    uint64_t h = bg_fnv64(BG_FNV64_OFFSET, &g->model, sizeof g->model);
    return bg_fnv64(h, &g->model_inst, sizeof g->model_inst);
}

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}

/* The chains of step 2 (the top comment), `steps` proposals each. */
static int run_chains(search *s, bg_rng *rng, const uint64_t *start, const int *annealed,
                      size_t steps, uint64_t *best)
{
    enum { C = BG__ARCHIVE_CHAINS };
    uint64_t cur[C], prop[C];
    double clp[C], plp[C], blp[C];
    memcpy(cur, start, sizeof cur);
    int rc = score(s, cur, C, clp);
    memcpy(best, cur, sizeof cur);
    memcpy(blp, clp, sizeof clp);
    size_t proposals = 0, max_prop = 4 * (size_t)s->budget;
    for (size_t t = 0; t < steps && rc == BG_OK; t++) {
        if (s->evals + C > s->budget || proposals >= max_prop)
            break;
        for (int c = 0; c < C; c++)
            prop[c] = bg__flip_propose(s->bits, rng, cur[c]);
        proposals += C;
        if ((rc = score(s, prop, C, plp)) != BG_OK)
            break;
        for (int c = 0; c < C; c++) {
            double beta = 1;
            if (annealed[c] && 2 * t < steps)
                beta = 0.05 + 0.95 * (double)(2 * t) / (double)steps;
            double u = bg_rng_next_uniform(rng);
            if (plp[c] > -INFINITY &&
                (clp[c] == -INFINITY || plp[c] >= clp[c] || u < exp(beta * (plp[c] - clp[c])))) {
                cur[c] = prop[c];
                clp[c] = plp[c];
                if (clp[c] > blp[c])
                    best[c] = cur[c], blp[c] = clp[c];
            }
        }
    }
    return rc;
}

int bg__archive_search(const bg_guard *g, bg__reward_ctx *r, const bg__archive *old,
                       const uint64_t *draw, size_t n_draw, uint32_t budget, size_t cap,
                       uint64_t seed, bg__archive **out)
{
    *out = NULL;
    double c0 = thread_cpu_ns();
    search s = {.r = r, .budget = budget};
    s.bits = bg__space_bits(g, &s.limit);
    if (!s.bits || !budget || !cap)
        return BG_OK; /* nothing to walk */
    size_t n_old = old ? old->n : 0;
    size_t slots = 16;
    while (slots < 4 * ((size_t)budget + n_old + n_draw + BG__ARCHIVE_CHAINS))
        slots *= 2;
    size_t batch = 256;
    int vrc = bg__idtab_init(&s.v, slots, 0);
    s.ids = malloc(batch * sizeof *s.ids);
    s.out = malloc(batch * sizeof *s.out);
    double *lp = malloc((n_old + n_draw + 1) * sizeof *lp);
    int rc = BG_ENOMEM;
    if (vrc != BG_OK || !s.ids || !s.out || !lp)
        goto done;

    /* 1. the previous archive at the current version (its stored log R
     * when the version is the same), and the draw */
    if (old && old->version == r->version && old->model_tag == bg__model_tag(g)) {
        for (size_t i = 0; i < n_old; i++)
            bg__idtab_put(&s.v, old->ids[i], old->lp[i], 0);
    } else if (old && (rc = score_all(&s, old->ids, n_old, batch, lp)) != BG_OK) {
        goto done;
    }
    if ((rc = score_all(&s, draw, n_draw, batch, lp)) != BG_OK)
        goto done;
    uint64_t draw_best = 0;
    double dbl = -INFINITY;
    for (size_t i = 0; i < n_draw; i++)
        if (lp[i] > dbl) {
            dbl = lp[i];
            draw_best = draw[i];
        }

    /* 2. the chains: from the best scored so far, the draw's best, and
     * random ids (annealed) */
    bg_rng rng;
    bg_rng_init(&rng, seed);
    uint64_t start[BG__ARCHIVE_CHAINS];
    int annealed[BG__ARCHIVE_CHAINS] = {0};
    size_t m = 0;
    size_t *top = top_slots(&s.v, &m);
    if (!top) {
        rc = BG_ENOMEM;
        goto done;
    }
    /* the best scored so far, each at least BG__ARCHIVE_SPREAD bits from
     * the starts before it: the modes, not one mode's neighbours */
    int c = 0;
    for (size_t t = 0; c < BG__ARCHIVE_CHAINS / 2 - 1 && t < m; t++) {
        uint64_t id = s.v.key[top[t]];
        int near = 0;
        for (int j = 0; j < c && !near; j++)
            near = __builtin_popcountll(id ^ start[j]) < BG__ARCHIVE_SPREAD;
        if (!near)
            start[c++] = id;
    }
    free(top);
    if (dbl > -INFINITY)
        start[c++] = draw_best;
    for (; c < BG__ARCHIVE_CHAINS; c++) {
        start[c] = random_id(&s, &rng);
        annealed[c] = 1;
    }
    /* the starts cost up to one batch: chains only when a step is left */
    size_t left = s.evals < budget ? budget - s.evals : 0;
    uint64_t best[BG__ARCHIVE_CHAINS];
    size_t n_best = 0;
    if (left >= 2 * BG__ARCHIVE_CHAINS) {
        if ((rc = run_chains(&s, &rng, start, annealed, left / BG__ARCHIVE_CHAINS, best)) != BG_OK)
            goto done;
        n_best = BG__ARCHIVE_CHAINS;
    }

    /* 3. the best cap of everything scored */
    *out = archive_of(&s.v, cap, r->version, s.bits, best, n_best);
    rc = *out ? BG_OK : BG_ENOMEM;
    if (*out) {
        (*out)->model_tag = bg__model_tag(g);
        (*out)->n_hist = r->n_hist;
        (*out)->evals = s.evals;
        (*out)->cpu_ns = (uint64_t)(thread_cpu_ns() - c0);
    }
done:
    bg__idtab_free(&s.v);
    free(s.ids);
    free(s.out);
    free(lp);
    return rc;
}

int bg__archive_extra(const bg_guard *g, const bg_observation *hist, size_t n_hist,
                      const bg_action *action, const bg__archive *a, const uint64_t *ids, size_t n,
                      bg__lpcache *lpc, uint64_t version, bg__refined *out, bg_err *err)
{
    memset(out, 0, sizeof *out);
    size_t m = 0, na = a->n;
    uint32_t *from = malloc((na ? na : 1) * sizeof *from); /* index in a of each extra */
    out->ids = malloc((na ? na : 1) * sizeof *out->ids);
    out->lp = malloc((na ? na : 1) * sizeof *out->lp);
    out->harm = malloc((na ? na : 1) * sizeof *out->harm);
    if (!from || !out->ids || !out->lp || !out->harm) {
        free(from);
        bg__refined_free(out);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for the search archive",
                          g->name);
    }
    out->cap = na;
    /* both ascending: the members the draw lacks */
    for (size_t i = 0, j = 0; i < na; i++) {
        while (j < n && ids[j] < a->ids[i])
            j++;
        if (j < n && ids[j] == a->ids[i])
            continue;
        from[m] = (uint32_t)i;
        out->ids[m++] = a->ids[i];
    }
    int ok = 1;
    if (m && a->version == version && a->model_tag == bg__model_tag(g)) {
        /* the search scored them at this reward: harm only */
        for (size_t k = 0; k < m; k++)
            out->lp[k] = a->lp[from[k]];
        ok = g->model->harm(g->model_inst, action, hist, n_hist, out->ids, m, out->harm) ==
             BG_PLUGIN_OK;
    } else if (m) {
        /* an older archive (the session moved on since the search), or
         * one another model scored: re-scored, its log R cached per draw
         * like the refinement's */
        bg_err serr;
        ok = bg__score(g, hist, n_hist, action, out->ids, m, out->lp, out->harm, lpc, version, 1,
                       &serr) == BG_OK;
    }
    free(from);
    if (!ok) { /* a failing model call: the verdict is the draw's, as the refinement's */
        out->n = 0;
        return BG_OK;
    }
    /* keep the ones the model scores as a probability and a finite log R
     * (soft, as the refinement's neighbours: none of them is the draw's) */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (!(out->harm[i] >= 0.0 && out->harm[i] <= 1.0) || isnan(out->lp[i]) ||
            !(out->lp[i] > -INFINITY) || out->lp[i] == INFINITY)
            continue;
        out->ids[k] = out->ids[i];
        out->lp[k] = out->lp[i];
        out->harm[k++] = out->harm[i];
    }
    out->n = k;
    return BG_OK;
}
