/*
 * sampled_context.c — remembered contexts and their per-context search
 * (sampled_priv.h bg__ctx_table; issue 16).
 *
 * Why: a sampled verdict's bound is set by the context's cautious
 * hypothesis — for the iid estimator argmax P(h|D)·harm(x, h), for the
 * non-iid one the most harmful member of the α set. At d = 64 on the
 * bandit the reward depends on w only through the arm counts, so a huge
 * top level of hypotheses shares the MAP's log R, and a context's cautious
 * hypothesis is the member of that level with the most harm for it: 12-33
 * bits from anything the context-free archive (sampled_archive.c) holds,
 * reached only by moves that keep the level (neutral for log R), which the
 * Evaluate's greedy climbs (sampled_refine.c) do not make and its budget
 * could not pay for (docs/GFLOWNET.md, "d = 32 and 64 against a long MH
 * run"). An agent's tools repeat, so the contexts a session is asked about
 * recur: the trainer thread, where time is cheap, searches for each
 * remembered context's cautious hypothesis after every training round,
 * and the next Evaluate of that context adds what it kept.
 *
 * The table (one per session sampler, bg__sampler.ctx): at most `cap`
 * contexts (the guard's sampler_contexts, else the trainer's; 0 = off),
 * least recently used evicted. A context is the action minus its call id:
 * tool, arguments_json, features and attributes, exact bytes compared
 * (the FNV-1a hash of them only finds the slot), so one changed byte is
 * another context. Who controls it: the agent — so the table is bounded
 * (cap ≤ BG__CTX_MAX_CAP entries), each entry's bytes are bounded
 * (BG__CTX_MAX_BYTES; a larger action is simply not remembered: upstream
 * an action is bounded only by the gRPC message size), and a flood of
 * distinct contexts only evicts — which leaves today's behaviour (the
 * draw, archive and refinement), still sound. An entry is one allocation
 * (bg__ctx, refcounted: the trainer searches an entry an Evaluate may be
 * evicting meanwhile) plus its kept set. Recording costs the hash of the
 * action, a mutex and a scan of at most cap hashes; a miss allocates the
 * new entry (bounded by the table).
 *
 * The search (bg__ctx_search_all, on the trainer thread after the archive
 * search of a round, at the round's reward version): per context, Metropolis
 * chains on the harm-tilted reward log R(h) + log harm(x, h) — the iid
 * estimator's objective, whose mode is the iid cautious hypothesis and
 * which drives the chains along the level towards more harm — with 1- and
 * 2-flip proposals (symmetric; a pair keeps the level where it moves a
 * feature between coordinates of one arm), downhill steps accepted, and
 * one step in CTX_EJECT_EVERY an ejection-chain move (eject: one random
 * flip, then up to CTX_EJECT_K repairs, each the single flip with the best
 * log R over all d - 1; the path's best point by the tilted objective is
 * the proposal) — a compound move along the level that a random pair
 * rarely makes at d = 64 (2-4 flips put 10 arm counts back). Measured
 * (GFLOWNET.md, "An ejection-chain move in the context search"): it does
 * not move issue 16's within-2-nats target (±2 contexts of 256), lowers
 * how often the iid bound falls below MH's, and makes the search 30-50 %
 * cheaper in CPU (its scans are (d - 1)-id reward calls).
 * Starts: the context's kept candidates (re-scored at the new version,
 * so the search accumulates across rounds), the cautious hypothesis its
 * last verdict chose, and the archive's best; half the chains annealed
 * (β 0.1 → 1 over their first half), half at β = 1; half at tilt 1, half
 * at CTX_LOW_TILT (log R + ½ log harm: nearer the posterior's top, where
 * the most plausible hypothesis of each harm level is — chosen on
 * bench_mh_long d = 64 seeds 404 / 406, GFLOWNET.md). At most `budget`
 * hypotheses looked at per context per round (each one log R and one
 * harm), so a round's work is ≤ cap × budget. log R does not depend on
 * the action, but a round's table of it shared between its contexts hit
 * 0.2 % of looks at a budget of 16,384 (5 % at 1,024) and cost every look
 * a cache miss into up to 17 MiB: gone since 2026-12-07, the search a
 * third cheaper in CPU at 16,384 and a quarter at 1,024 (docs/GFLOWNET.md,
 * "A search per remembered context", Cost).
 * Contexts are searched one after another, each step's reward call ≤ 8
 * ids: advancing all contexts in lock step (one reward call a step for
 * all of them) would compute the same kept sets, but the narrow calls
 * were 4.3 % of a d = 64 round (8.4 % once the MLP got cheaper), under
 * the bar that would pay for holding every context's visited table at
 * once (docs/GFLOWNET.md, "A search per remembered context", Cost).
 * Kept per context (≤ BG__CTX_KEEP): the best by the tilted objective,
 * then the (log R, harm) Pareto front — for each harm level reached the
 * most plausible hypothesis reaching it, which is what both estimators'
 * cautious choice needs — most plausible first. Stored as a bg__archive
 * (ids ascending, log R at the round's version, the model's tag).
 *
 * Evaluate (sampled.c, step 4a'): a remembered context's kept set joins
 * the candidates through bg__archive_extra — each member's log R at the
 * current version (stored, or re-scored through the draw's cache) and its
 * harm for this action computed afresh. They are exactly scored
 * candidates, so the refinement's argument holds unchanged: extra
 * candidates never lower the non-iid floor and only raise the iid product
 * (sampled_refine.c). The verdict's health reports the join
 * (sampled_health.c bg__health_context): the kept members among its
 * candidates, the entry's rounds (searches that published a kept set: a
 * counter per entry, read with kept under one lock by
 * bg__ctx_record) and the observations since the kept set's
 * version (its n_hist, stored with it).
 *
 * Deterministic: the same reward, table contents, archive and seed give the
 * same kept sets (the seed of a context mixes the round's seed with its
 * hash).
 *
 * Threads: t->mu guards the table (slots, ticks, each entry's kept,
 * rounds and cautious); the search holds it only to take and publish. Ownership:
 * bg__ctx_record's *kept is a new reference (bg__archive_unref), *entry too
 * (bg__ctx_unref).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bg_assert.h"
#include "common/bg_fnv.h"
#include "engine/observation.h"
#include "engine/sampled_priv.h"

/* Chains per context and round, in lock step. */
#define CTX_CHAINS 8
/* The tilt of the second half of a context's chains (the first half's is
 * 1, the iid objective): a weaker pull towards harm keeps them nearer the
 * posterior's top, where the most plausible hypothesis at each harm level
 * is (the kept front). */
#define CTX_LOW_TILT 0.5
/* log harm of a zero harm: log R alone drives the chain there. */
#define CTX_LOG_HARM_MIN (-700.0)
/* The ejection-chain move (run_chains, eject): a chain's step is one with
 * probability 1 / CTX_EJECT_EVERY, and makes at most CTX_EJECT_K repair
 * flips. Chosen on bench_mh_long d = 64 seeds 404 / 406 among 10 variants
 * (GFLOWNET.md, "An ejection-chain move in the context search"). */
#define CTX_EJECT_EVERY 16
#define CTX_EJECT_K 3
/* the widest cscore call: a repair scan of every single flip */
#define CTX_SCRATCH (CTX_CHAINS + BG__CTX_KEEP + 2 + 64)

struct bg__ctx {
    atomic_int refs;
    uint64_t hash;
    uint64_t last_use;   /* under the table's mutex */
    uint64_t rounds;     /* searches that published a kept set, under mu */
    uint64_t cautious;   /* the last verdict's cautious id (has_cautious), under mu */
    int has_cautious;    /* under mu */
    bg__archive *kept;   /* under mu; NULL: not searched yet */
    bg_observation *obs; /* obs->action: the context (id ""), one block */
};

void bg__ctx_unref(bg__ctx *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        bg__archive_unref(c->kept);
        free(c->obs);
        free(c);
    }
}

void bg__ctx_table_init(bg__ctx_table *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
}

void bg__ctx_table_close(bg__ctx_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        bg__ctx_unref(t->slot[i]);
    free(t->slot);
    pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof *t);
}

size_t bg__ctx_table_size(bg__ctx_table *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static size_t str_len(const char *s)
{
    return s ? strlen(s) : 0;
}

/* The bytes of a's context (what a deep copy needs beyond the struct) and
 * its hash: each field length-prefixed, so no two contexts share a byte
 * string. */
static size_t ctx_bytes(const bg_action *a, uint64_t *hash)
{
    uint64_t h = BG_FNV64_OFFSET;
    size_t n = 0, l;
#define FIELD(p, len)                                                                              \
    do {                                                                                           \
        uint64_t L = (uint64_t)(len);                                                              \
        h = bg_fnv64(h, &L, sizeof L);                                                             \
        if (L)                                                                                     \
            h = bg_fnv64(h, (p), (size_t)L);                                                       \
    } while (0)
    l = str_len(a->tool);
    FIELD(a->tool, l);
    n += l + 1;
    l = str_len(a->arguments_json);
    FIELD(a->arguments_json, l);
    n += l + 1;
    FIELD(a->features, a->n_features * sizeof(double));
    n += a->n_features * sizeof(double);
    FIELD(&a->n_attributes, 0);
    uint64_t na = a->n_attributes;
    h = bg_fnv64(h, &na, sizeof na);
    n += a->n_attributes * sizeof(bg_attr);
    for (size_t i = 0; i < a->n_attributes; i++) {
        l = str_len(a->attributes[i].key);
        FIELD(a->attributes[i].key, l);
        n += l + 1;
        l = str_len(a->attributes[i].value);
        FIELD(a->attributes[i].value, l);
        n += l + 1;
    }
#undef FIELD
    *hash = h;
    return n;
}

static int str_eq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

/* Whether stored context c is action a's (exact bytes). */
static int ctx_equal(const bg__ctx *c, const bg_action *a)
{
    const bg_action *s = &c->obs->action;
    if (s->n_features != a->n_features || s->n_attributes != a->n_attributes ||
        !str_eq(s->tool, a->tool) || !str_eq(s->arguments_json, a->arguments_json))
        return 0;
    if (a->n_features && memcmp(s->features, a->features, a->n_features * sizeof(double)))
        return 0;
    for (size_t i = 0; i < a->n_attributes; i++)
        if (!str_eq(s->attributes[i].key, a->attributes[i].key) ||
            !str_eq(s->attributes[i].value, a->attributes[i].value))
            return 0;
    return 1;
}

/* A new entry for a (refs 1): a copy of a without its call id
 * (observation.c's one-block copy); NULL: no memory. */
static bg__ctx *ctx_new(const bg_action *a, uint64_t hash)
{
    bg_observation o = {.action = *a};
    o.action.id = "";
    bg__ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->obs = bg__obs_dup(&o))) {
        free(c);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->hash = hash;
    return c;
}

/* Drops the least recently used entry (t->mu held, t->n > 0). */
static void evict_lru(bg__ctx_table *t)
{
    size_t lru = 0;
    for (size_t i = 1; i < t->n; i++)
        if (t->slot[i]->last_use < t->slot[lru]->last_use)
            lru = i;
    bg__ctx_unref(t->slot[lru]);
    t->slot[lru] = t->slot[--t->n];
}

int bg__ctx_record(bg__ctx_table *t, size_t cap, const bg_action *a, bg__ctx **entry,
                   bg__archive **kept, uint64_t *rounds)
{
    *entry = NULL;
    *kept = NULL;
    if (rounds)
        *rounds = 0;
    if (!cap)
        return BG_OK;
    if (cap > BG__CTX_MAX_CAP)
        cap = BG__CTX_MAX_CAP;
    uint64_t hash;
    size_t bytes = ctx_bytes(a, &hash);
    if (bytes > BG__CTX_MAX_BYTES)
        return BG_OK; /* not remembered: the verdict is today's */
    pthread_mutex_lock(&t->mu);
    bg__ctx *c = NULL;
    for (size_t i = 0; i < t->n && !c; i++)
        if (t->slot[i]->hash == hash && ctx_equal(t->slot[i], a))
            c = t->slot[i];
    int rc = BG_OK;
    if (!c) {
        if (t->alloc < cap) {
            bg__ctx **s = realloc(t->slot, cap * sizeof *s);
            if (!s) {
                rc = BG_ENOMEM;
                goto done;
            }
            t->slot = s;
            t->alloc = cap;
        }
        while (t->n >= cap) /* full, or the cap came down (a reload) */
            evict_lru(t);
        if (!(c = ctx_new(a, hash))) {
            rc = BG_ENOMEM;
            goto done;
        }
        t->slot[t->n++] = c;
    }
    c->last_use = ++t->tick;
    atomic_fetch_add(&c->refs, 1);
    *entry = c;
    if (c->kept) {
        atomic_fetch_add(&c->kept->refs, 1);
        *kept = c->kept;
    }
    if (rounds)
        *rounds = c->rounds;
done:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void bg__ctx_cautious(bg__ctx_table *t, bg__ctx *c, uint64_t id)
{
    pthread_mutex_lock(&t->mu);
    c->cautious = id;
    c->has_cautious = 1;
    pthread_mutex_unlock(&t->mu);
}

/* ---- the search */

/* A context's search in progress. */
typedef struct csearch {
    const bg_guard *g;
    bg__reward_ctx *r;
    const bg_action *act;
    bg__idtab v; /* this context's visited hypotheses: log R and harm */
    uint32_t bits;
    uint64_t limit;
    uint32_t looked, budget; /* hypotheses looked at (new to this context) */
    uint64_t reward_evals;
    uint64_t ejections, eject_looked; /* the round's ejection moves, what they looked at */
    uint64_t *ids;                    /* scratch [CTX_SCRATCH] */
    double *out, *hout;
} csearch;

static int valid(const csearch *s, uint64_t id)
{
    return !s->limit || id < s->limit;
}

/* log R and harm of ids[0..m) for the context (m ≤ the scratch): looked up,
 * else scored (the new ones count against the budget; none beyond it: those
 * get -inf); an invalid id, a NaN or a harm outside [0, 1] is -inf.
 * distinct: the caller's ids are distinct (an ejection's scan), so the
 * O(m²) check for repeats among the new ones is skipped. A visited id's
 * slot, found by the first probe, is read back without a second (slots do
 * not move: the table only grows within a context). */
static int cscore(csearch *s, const uint64_t *ids, size_t m, double *lp, double *harm, int distinct)
{
    size_t k = 0, at[CTX_SCRATCH]; /* at[i]: ids[i]'s slot when visited, else SIZE_MAX */
    BG_ASSERT(m <= CTX_SCRATCH, "cscore: %zu ids, the scratch holds %d", m, CTX_SCRATCH);
    for (size_t i = 0; i < m; i++) {
        lp[i] = -INFINITY;
        harm[i] = 0;
        at[i] = SIZE_MAX;
        if (!valid(s, ids[i]))
            continue;
        size_t sl = bg__idtab_slot(&s->v, ids[i]);
        if (s->v.used[sl]) {
            at[i] = sl;
            continue;
        }
        int dup = 0;
        if (!distinct)
            for (size_t j = 0; j < k && !dup; j++)
                dup = s->ids[j] == ids[i];
        if (!dup && s->looked + k < s->budget && 2 * (s->v.n + k + 1) <= s->v.mask + 1)
            s->ids[k++] = ids[i];
    }
    if (k) {
        /* log R: the reward (batched), for each id new to this context */
        if (bg__session_log_r(s->r, s->ids, k, s->out) != BG_PLUGIN_OK)
            return BG_EINTERNAL;
        s->reward_evals += k;
        if (s->g->model->harm(s->g->model_inst, s->act, s->r->hist, s->r->n_hist, s->ids, k,
                              s->hout) != BG_PLUGIN_OK)
            return BG_EINTERNAL;
        s->looked += (uint32_t)k;
        for (size_t j = 0; j < k; j++) {
            double l = s->out[j], hm = s->hout[j];
            if (isnan(l) || l == INFINITY || !(hm >= 0.0 && hm <= 1.0))
                l = -INFINITY, hm = 0;
            bg__idtab_put(&s->v, s->ids[j], l, hm); /* room: checked above */
        }
    }
    for (size_t i = 0; i < m; i++)
        if (at[i] != SIZE_MAX) {
            lp[i] = s->v.lp[at[i]];
            harm[i] = s->v.harm[at[i]];
        } else if (k && valid(s, ids[i])) {
            bg__idtab_get(&s->v, ids[i], &lp[i], &harm[i]);
        }
    return BG_OK;
}

/* log R + t·log harm (-inf for an excluded hypothesis). */
static double tilted_by(double lp, double harm, double t)
{
    if (!(lp > -INFINITY))
        return -INFINITY;
    return lp + t * (harm > 0 ? fmax(log(harm), CTX_LOG_HARM_MIN) : CTX_LOG_HARM_MIN);
}

static double tilted(double lp, double harm)
{
    return tilted_by(lp, harm, 1.0);
}

/* The ejection-chain move from cur, a chain's state at tilt: flip one
 * random bit i — off the level, usually, at a cost of nats — then repair:
 * score every single flip j not yet made by this move and take the one
 * with the best log R (ties: the first in a random order of the bits), up
 * to CTX_EJECT_K times, stopping once log R is back at cur's or above.
 * *out: the point on the repair path with the best tilted objective (or
 * cur ^ bit i when nothing could be scored: the budget is spent). Every
 * scanned flip is looked at, counted against the context's budget (cscore
 * scores none beyond it) and visited, so the kept set chooses among them
 * too. It is one proposal, accepted by the chain's rule on the tilted
 * objective: a compound move that can cross a level along which single and
 * random pair flips pass only through points that cost nats (one bit off
 * an arm's count, the others that put it back), at d = 64 the 2-4 flips
 * the bandit's 10 arm counts ask for. Not symmetric, and the chains do not
 * correct for it: they are a search, not a sampler — every kept member is
 * exactly scored and nothing is weighted by how it was proposed — so
 * detailed balance is not needed. The scans are wide reward calls (d - 1
 * ids), cheaper per id than a chain step's 8. */
static int eject(csearch *s, bg_rng *rng, uint64_t cur, double tilt, uint64_t *out)
{
    double clp, ch;
    int rc = cscore(s, &cur, 1, &clp, &ch, 1); /* visited: a look-up */
    if (rc != BG_OK)
        return rc;
    uint32_t d = s->bits, looked0 = s->looked;
    uint32_t i = (uint32_t)(bg_rng_next(rng) % d);
    uint64_t y = cur ^ (1ULL << i), flipped = 1ULL << i, best = y;
    double bf = -INFINITY;
    uint64_t cand[64];
    double lp[64], hm[64];
    uint32_t avail[64];
    s->ejections++;
    for (int step = 0; step < CTX_EJECT_K; step++) {
        uint32_t na = 0;
        for (uint32_t j = 0; j < d; j++)
            if (!(flipped >> j & 1))
                avail[na++] = j;
        if (!na)
            break;
        for (uint32_t q = 0; q < na; q++) { /* a random order (Fisher-Yates) */
            uint32_t r = q + (uint32_t)(bg_rng_next(rng) % (na - q));
            uint32_t tmp = avail[q];
            avail[q] = avail[r];
            avail[r] = tmp;
            cand[q] = y ^ (1ULL << avail[q]);
        }
        rc = cscore(s, cand, na, lp, hm, 1); /* distinct flips of y */
        s->eject_looked += s->looked - looked0;
        looked0 = s->looked;
        if (rc != BG_OK)
            return rc;
        uint32_t bj = UINT32_MAX;
        for (uint32_t q = 0; q < na; q++)
            if (lp[q] > -INFINITY && (bj == UINT32_MAX || lp[q] > lp[bj]))
                bj = q;
        if (bj == UINT32_MAX)
            break; /* nothing scored: the budget is spent */
        y = cand[bj];
        flipped |= 1ULL << avail[bj];
        double f = tilted_by(lp[bj], hm[bj], tilt);
        if (f > bf) {
            bf = f;
            best = y;
        }
        if (lp[bj] >= clp)
            break; /* repaired */
    }
    *out = best;
    return BG_OK;
}

/* The chains from start[0..CTX_CHAINS) until the budget is spent (or 4 ×
 * budget proposals). */
static int run_chains(csearch *s, bg_rng *rng, const uint64_t *start)
{
    enum { C = CTX_CHAINS };
    uint64_t cur[C], prop[C];
    double clp[C], ch[C], cf[C], plp[C], ph[C];
    memcpy(cur, start, sizeof cur);
    int rc = cscore(s, cur, C, clp, ch, 0);
    double tilt[C];
    for (int c = 0; c < C; c++) {
        tilt[c] = c < C / 2 ? 1.0 : CTX_LOW_TILT;
        cf[c] = tilted_by(clp[c], ch[c], tilt[c]);
    }
    size_t steps = s->budget > s->looked ? (s->budget - s->looked) / C + 1 : 0;
    if (steps) { /* the annealing's length: an ejection looks at up to k·(d - 1) */
        double per = 1.0 + ((double)CTX_EJECT_K * (s->bits - 1) - 1.0) / CTX_EJECT_EVERY;
        steps = (size_t)((double)(steps - 1) / (per > 1 ? per : 1)) + 1;
    }
    size_t max_prop = 4 * (size_t)s->budget;
    for (size_t t = 0, proposals = 0;
         rc == BG_OK && s->looked + C <= s->budget && proposals < max_prop; t++) {
        for (int c = 0; c < C && rc == BG_OK; c++) {
            if (bg_rng_next(rng) % CTX_EJECT_EVERY == 0)
                rc = eject(s, rng, cur[c], tilt[c], &prop[c]);
            else
                prop[c] = bg__flip_propose(s->bits, rng, cur[c]);
        }
        if (rc != BG_OK)
            break;
        proposals += C;
        if ((rc = cscore(s, prop, C, plp, ph, 0)) != BG_OK)
            break;
        for (int c = 0; c < C; c++) {
            double beta = 1;
            if ((c & 1) && 2 * t < steps) /* odd chains annealed */
                beta = 0.1 + 0.9 * (double)(2 * t) / (double)steps;
            double pf = tilted_by(plp[c], ph[c], tilt[c]);
            double u = bg_rng_next_uniform(rng);
            if (pf > -INFINITY &&
                (cf[c] == -INFINITY || pf >= cf[c] || u < exp(beta * (pf - cf[c])))) {
                cur[c] = prop[c];
                cf[c] = pf;
            }
        }
    }
    return rc;
}

/* A visited entry in keep_pick's heap. */
typedef struct kentry {
    double lp, harm;
    uint64_t id;
} kentry;

/* Whether (a1, a2, ida) comes before (b1, b2, idb): the first key
 * descending, then the second descending, then the id ascending (a strict
 * total order: ids are distinct; no NaN). */
static int keys_first(double a1, double a2, uint64_t ida, double b1, double b2, uint64_t idb)
{
    if (a1 != b1)
        return a1 > b1;
    if (a2 != b2)
        return a2 > b2;
    return ida < idb;
}

/* x before y by log R descending, harm descending, id ascending. */
static int lp_first(const kentry *x, const kentry *y)
{
    return keys_first(x->lp, x->harm, x->id, y->lp, y->harm, y->id);
}

/* x before y by harm descending, log R descending, id ascending: the
 * front's order, whose first wins a tie of the tilted best. */
static int harm_first(const kentry *x, const kentry *y)
{
    return keys_first(x->harm, x->lp, x->id, y->harm, y->lp, y->id);
}

static void sift_down(kentry *h, size_t n, size_t i)
{
    kentry e = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && lp_first(&h[c + 1], &h[c]))
            c++;
        if (!lp_first(&h[c], &e))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

/* The distinct harm values keep_pick tracks each level's top for before
 * it falls back to the heap walk (a bandit has at most d + 1). */
#define KEEP_LEVELS 128

/* harm's slot in keep_pick's table of levels (256 slots, at most
 * KEEP_LEVELS used: a probe always ends), its key the bits of harm + 0.0. */
static size_t level_slot(const uint64_t *key, const unsigned char *used, double harm)
{
    double h0 = harm + 0.0; /* -0.0 is 0.0's level, as the sort had it */
    uint64_t bits;
    memcpy(&bits, &h0, sizeof bits);
    size_t i = (size_t)((bits * 0x9e3779b97f4a7c15ULL) >> 56); /* 256 slots */
    while (used[i] && key[i] != bits)
        i = (i + 1) & 255;
    return i;
}

/* Why not the sort it replaced (three stable LSD passes over every
 * visited entry, 9 % of a d = 64 training at a budget of 16,384; the
 * sort's order: harm descending, log R descending, id ascending). Walked
 * by log R descending (ties harm descending, id ascending), an entry is on
 * the front exactly when its harm is above every earlier one's — the
 * entries that precede it there are those with log R at least its own
 * that the sort puts before it or that dominate it — so the front comes
 * most plausible end first. Only a harm level's top (its highest log R,
 * then lowest id) can be on the front, so when there are at most
 * KEEP_LEVELS distinct harms (the bandit has ≤ d + 1) one pass keeps each
 * level's top and the walk is over the levels. Else a heap walk over every
 * entry, stopped once BG__CTX_KEEP are kept or the front's harm reached
 * the highest visited (a first try walked the heap always: at d = 64 the
 * top level is large and the walk went deep, as dear as the sort). Same
 * set, same tie-breaking (test_gfn_context test_keep). */
int bg__ctx_keep_pick(const bg__idtab *v, uint64_t ids[BG__CTX_KEEP], double lp[BG__CTX_KEEP],
                      size_t *n)
{
    *n = 0;
    /* one pass: the tilted best, the highest harm, each harm level's top
     * (by log R, then id: the only member of a level the front can hold) */
    kentry b = {0}, lv[KEEP_LEVELS];
    uint64_t lkey[256];
    unsigned char lused[256] = {0}, lidx[256];
    size_t m = 0, nl = 0;
    int many = 0; /* more harm levels than KEEP_LEVELS: the heap walk */
    double bt = -INFINITY, hmax = -INFINITY;
    for (size_t i = 0; i <= v->mask; i++)
        if (v->used[i] && v->lp[i] > -INFINITY) {
            kentry e = {.lp = v->lp[i], .harm = v->harm[i], .id = v->key[i]};
            double t = tilted(e.lp, e.harm);
            if (!m || t > bt || (t == bt && harm_first(&e, &b)))
                b = e, bt = t;
            if (e.harm > hmax)
                hmax = e.harm;
            m++;
            if (many)
                continue;
            size_t q = level_slot(lkey, lused, e.harm);
            if (lused[q]) {
                if (lp_first(&e, &lv[lidx[q]]))
                    lv[lidx[q]] = e;
            } else if (nl < KEEP_LEVELS) {
                double h0 = e.harm + 0.0;
                memcpy(&lkey[q], &h0, sizeof lkey[q]);
                lused[q] = 1;
                lidx[q] = (unsigned char)nl;
                lv[nl++] = e;
            } else {
                many = 1;
            }
        }
    if (!m)
        return BG_OK;
    size_t k = 0;
    ids[k] = b.id;
    lp[k++] = b.lp;
    if (!many) {
        /* the levels by log R descending (ties harm descending): a level's
         * top is on the front when its harm is above every earlier one's */
        for (size_t i = 1; i < nl; i++)
            for (size_t j = i; j > 0 && lp_first(&lv[j], &lv[j - 1]); j--) {
                kentry t = lv[j];
                lv[j] = lv[j - 1];
                lv[j - 1] = t;
            }
        double top = -INFINITY;
        for (size_t i = 0; i < nl && k < BG__CTX_KEEP; i++)
            if (lv[i].harm > top) {
                top = lv[i].harm;
                if (lv[i].id != b.id) {
                    ids[k] = lv[i].id;
                    lp[k++] = lv[i].lp;
                }
            }
    } else {
        kentry *h = malloc(m * sizeof *h);
        if (!h)
            return BG_ENOMEM;
        m = 0;
        for (size_t i = 0; i <= v->mask; i++)
            if (v->used[i] && v->lp[i] > -INFINITY)
                h[m++] = (kentry){.lp = v->lp[i], .harm = v->harm[i], .id = v->key[i]};
        for (size_t i = m / 2; i-- > 0;)
            sift_down(h, m, i);
        double top = -INFINITY; /* the front's harm so far */
        while (m && k < BG__CTX_KEEP && top < hmax) {
            kentry e = h[0];
            h[0] = h[--m];
            sift_down(h, m, 0);
            if (e.harm > top) {
                top = e.harm;
                if (e.id != b.id) {
                    ids[k] = e.id;
                    lp[k++] = e.lp;
                }
            }
        }
        free(h);
    }
    for (size_t i = 1; i < k; i++) /* ids ascending (insertion: k ≤ 32) */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint64_t ti = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = ti;
            double tl = lp[j];
            lp[j] = lp[j - 1];
            lp[j - 1] = tl;
        }
    *n = k;
    return BG_OK;
}

/* Which of the context's visited hypotheses it keeps (bg__ctx_keep_pick):
 * a new archive of at most BG__CTX_KEEP, or NULL (none scored / no memory). */
static bg__archive *keep_of(const csearch *s, uint64_t version, uint64_t tag, size_t n_hist)
{
    bg__archive *a = malloc(sizeof *a + BG__CTX_KEEP * (sizeof(uint64_t) + sizeof(double)));
    if (!a)
        return NULL;
    a->ids = (uint64_t *)(a + 1);
    a->lp = (double *)(a->ids + BG__CTX_KEEP);
    size_t n;
    if (bg__ctx_keep_pick(&s->v, a->ids, a->lp, &n) != BG_OK || !n) {
        free(a);
        return NULL;
    }
    a->n = n;
    atomic_init(&a->refs, 1);
    a->version = version;
    a->model_tag = tag;
    a->n_hist = n_hist;
    a->evals = s->looked;
    a->cpu_ns = 0;
    return a;
}

/* One context's search: starts from its kept set, its last cautious
 * hypothesis and the archive's best; *out its new kept set (NULL: keep
 * the old). */
static int search_one(csearch *s, const bg__archive *kept, int has_cautious, uint64_t cautious,
                      const bg__archive *arch, uint64_t seed, bg__archive **out)
{
    *out = NULL;
    enum { C = CTX_CHAINS, NS = BG__CTX_KEEP + C + 2 };
    uint64_t cand[NS];
    double lp[NS], harm[NS];
    size_t nc = 0;
    /* 1. the previous kept set at this version, the cautious hypothesis */
    if (kept)
        for (size_t i = 0; i < kept->n && nc < BG__CTX_KEEP; i++)
            cand[nc++] = kept->ids[i];
    if (has_cautious)
        cand[nc++] = cautious;
    /* the archive's best few by log R */
    if (arch && arch->n) {
        size_t take = C < arch->n ? C : arch->n;
        for (size_t k = 0; k < take; k++) {
            size_t bi = SIZE_MAX;
            for (size_t i = 0; i < arch->n; i++) {
                int dup = 0;
                for (size_t j = 0; j < nc && !dup; j++)
                    dup = cand[j] == arch->ids[i];
                if (!dup && (bi == SIZE_MAX || arch->lp[i] > arch->lp[bi]))
                    bi = i;
            }
            if (bi == SIZE_MAX)
                break;
            cand[nc++] = arch->ids[bi];
        }
    }
    if (!nc)
        return BG_OK;
    int rc = BG_OK;
    for (size_t i = 0; i < nc && rc == BG_OK; i += C)
        rc = cscore(s, cand + i, nc - i < C ? nc - i : C, lp + i, harm + i, 0);
    if (rc != BG_OK)
        return rc;
    /* 2. chains from the best starts by the tilted objective, distinct */
    uint64_t start[C];
    size_t ns = 0;
    unsigned char taken[NS] = {0};
    while (ns < C) {
        size_t bi = SIZE_MAX;
        for (size_t i = 0; i < nc; i++)
            if (!taken[i] && lp[i] > -INFINITY &&
                (bi == SIZE_MAX || tilted(lp[i], harm[i]) > tilted(lp[bi], harm[bi])))
                bi = i;
        if (bi == SIZE_MAX)
            break;
        taken[bi] = 1;
        start[ns++] = cand[bi];
    }
    if (!ns)
        return BG_OK;
    for (size_t c = ns; c < C; c++) /* fewer starts: the best ones again */
        start[c] = start[c % ns];
    bg_rng rng;
    bg_rng_init(&rng, seed);
    if ((rc = run_chains(s, &rng, start)) != BG_OK)
        return rc;
    *out = keep_of(s, s->r->version, bg__model_tag(s->g), s->r->n_hist);
    return *out ? BG_OK : BG_ENOMEM;
}

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}

int bg__ctx_search_all(const bg_guard *g, bg__reward_ctx *r, bg__ctx_table *t,
                       const bg__archive *arch, uint32_t budget, uint64_t seed,
                       bg__ctx_stats *stats)
{
    double c0 = thread_cpu_ns();
    if (stats)
        memset(stats, 0, sizeof *stats);
    uint64_t limit;
    uint32_t bits = bg__space_bits(g, &limit);
    if (!bits || !budget)
        return BG_OK;
    /* take the entries (references) */
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    bg__ctx **e = malloc((n ? n : 1) * sizeof *e);
    bg__archive **kept = malloc((n ? n : 1) * sizeof *kept);
    uint64_t *caut = malloc((n ? n : 1) * sizeof *caut);
    int *has = malloc((n ? n : 1) * sizeof *has);
    if (e && kept && caut && has)
        for (size_t i = 0; i < n; i++) {
            e[i] = t->slot[i];
            atomic_fetch_add(&e[i]->refs, 1);
            kept[i] = e[i]->kept;
            if (kept[i])
                atomic_fetch_add(&kept[i]->refs, 1);
            caut[i] = e[i]->cautious;
            has[i] = e[i]->has_cautious;
        }
    pthread_mutex_unlock(&t->mu);
    int rc = BG_ENOMEM;
    csearch s = {.g = g, .r = r, .bits = bits, .limit = limit, .budget = budget};
    size_t vslots = 16, scratch = CTX_SCRATCH;
    while (vslots < 4 * ((size_t)budget + BG__CTX_KEEP + CTX_CHAINS + 2))
        vslots *= 2;
    if (!e || !kept || !caut || !has) {
        n = 0; /* no references were taken */
        goto done;
    }
    int vrc = bg__idtab_init(&s.v, vslots, 1);
    s.ids = malloc(scratch * sizeof *s.ids);
    s.out = malloc(scratch * sizeof *s.out);
    s.hout = malloc(scratch * sizeof *s.hout);
    if (vrc != BG_OK || !s.ids || !s.out || !s.hout)
        goto done;
    rc = BG_OK;
    uint64_t looked = 0;
    for (size_t i = 0; i < n && rc == BG_OK; i++) {
        bg__idtab_clear(&s.v);
        s.looked = 0;
        s.act = &e[i]->obs->action;
        bg__archive *nk = NULL;
        rc = search_one(&s, kept[i], has[i], caut[i], arch, seed ^ e[i]->hash, &nk);
        looked += s.looked;
        if (rc == BG_OK && nk) {
            pthread_mutex_lock(&t->mu);
            e[i]->rounds++;
            bg__archive *prev = e[i]->kept;
            e[i]->kept = nk;
            pthread_mutex_unlock(&t->mu);
            bg__archive_unref(prev);
        }
    }
    if (stats) {
        stats->contexts = n;
        stats->looked = looked;
        stats->reward_evals = s.reward_evals;
        stats->ejections = s.ejections;
        stats->eject_looked = s.eject_looked;
    }
done:
    for (size_t i = 0; i < n; i++) {
        bg__archive_unref(kept[i]);
        bg__ctx_unref(e[i]);
    }
    free(e);
    free(kept);
    free(caut);
    free(has);
    bg__idtab_free(&s.v);
    free(s.ids);
    free(s.out);
    free(s.hout);
    if (stats)
        stats->cpu_ns = (uint64_t)(thread_cpu_ns() - c0);
    return rc;
}
