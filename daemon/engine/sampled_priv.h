/*
 * sampled_priv.h — what the files of the sampled path share (sampled.c:
 * the trainer, evaluate and observe; sampled_sessions.c: a guard
 * instance's samplers; sampled_score.c: reward and verdict), and the two
 * calls engine.c makes. Nothing outside daemon/engine/ includes it; the
 * contract and the state diagram are in sampled.h.
 */
#ifndef BG_ENGINE_SAMPLED_PRIV_H
#define BG_ENGINE_SAMPLED_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_err.h"
#include "engine/engine.h"
#include "engine/sampled.h"

/* ---- samplers (sampled_sessions.c) */

/* The bits of a sampler's state word: bg_sampler_state = their value. */
#define BG__SAMPLER_TRAINED 1 /* trained train_steps steps on some history */
#define BG__SAMPLER_JOB 2     /* a job queued or running (under the trainer's mutex) */

typedef struct bg__sampler_table bg__sampler_table;
typedef struct bg__archive bg__archive; /* sampled_archive.c, below */
typedef struct bg__ctx bg__ctx;         /* sampled_context.c, below */

/* A session sampler's remembered contexts (sampled_context.c): at most
 * BG__CTX_MAX_CAP entries, least recently used evicted. mu guards all. */
typedef struct bg__ctx_table {
    pthread_mutex_t mu;
    size_t n, alloc; /* entries; slots allocated (the largest cap seen) */
    uint64_t tick;   /* LRU clock */
    bg__ctx **slot;  /* [alloc], the first n used; each a reference */
} bg__ctx_table;

/* The candidates of one draw (sampled.c): K samples of a sampler in one
 * training round (gen) with one evaluation seed, sorted and deduplicated.
 * Every Evaluate of that (seed, gen) reuses them instead of drawing K
 * trajectories through the policy again; scoring against the history,
 * harm, health and the estimator still run per Evaluate. Immutable once
 * cached; shared by reference (refs). */
/* The training state a draw was made in (sampled_health.c): the reward
 * version of the sampler's last training run, the history length it had,
 * and the steps run at that version. */
typedef struct bg__fit {
    uint64_t version; /* BG_REWARD_UNVERSIONED: never trained */
    size_t n_hist;
    uint64_t steps;
} bg__fit;

/* log R of hypotheses at one reward version, shared by the Evaluates of
 * one draw (bg__cands.lpc): log R does not depend on the action, so the
 * refinement's scores are computed once per version, not once per
 * Evaluate (sampled_score.c). The draw's own candidates are not cached:
 * every Evaluate scores them, so a model that turns NaN is caught. Open-addressed, at most 3/4 of
 * BG__LPC_SLOTS entries (then it stops caching); emptied when asked for
 * another version. Speed only: a verdict is the same with or without it.
 * mu guards the rest. */
typedef struct bg__lpcache {
    pthread_mutex_t mu;
    int valid;        /* keys hold entries of `version` */
    uint64_t version; /* the reward version of the entries */
    size_t n;
    uint64_t *keys; /* [BG__LPC_SLOTS] id + 1, 0 = empty; NULL until first use */
    double *vals;
} bg__lpcache;
#define BG__LPC_SLOTS (1u << 14) /* 256 KiB a draw, once used */
void bg__lpcache_init(bg__lpcache *c);
void bg__lpcache_close(bg__lpcache *c);

/* An open-addressed table of hypothesis ids with their log R (and a harm,
 * where it was made with one): linear probing, at most half full — a put
 * past that is dropped (a search then forgets the id: cost, not results).
 * The search archive's visited table and each context's visited set
 * (sampled_archive.c, sampled_context.c), whose results depend on the
 * probe order only through cost. One thread; bg__idtab_free is right after any init. */
typedef struct bg__idtab {
    uint64_t *key;
    double *lp, *harm; /* harm: NULL unless made with one */
    unsigned char *used;
    size_t mask, n;
} bg__idtab;

/* slots: a power of two. BG_OK, or BG_ENOMEM. */
static inline int bg__idtab_init(bg__idtab *t, size_t slots, int with_harm)
{
    t->key = malloc(slots * sizeof *t->key);
    t->lp = malloc(slots * sizeof *t->lp);
    t->harm = with_harm ? malloc(slots * sizeof *t->harm) : NULL;
    t->used = calloc(slots, 1);
    t->mask = slots - 1;
    t->n = 0;
    return t->key && t->lp && t->used && (t->harm || !with_harm) ? BG_OK : BG_ENOMEM;
}

static inline void bg__idtab_clear(bg__idtab *t)
{
    memset(t->used, 0, t->mask + 1);
    t->n = 0;
}

static inline void bg__idtab_free(bg__idtab *t)
{
    free(t->key);
    free(t->lp);
    free(t->harm);
    free(t->used);
}

/* id's own slot, or the empty one where it goes. */
static inline size_t bg__idtab_slot(const bg__idtab *t, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(h >> 29) & t->mask;
    while (t->used[i] && t->key[i] != id)
        i = (i + 1) & t->mask;
    return i;
}

/* 1 and *lp (and *harm, where non-NULL: a table with one) when id is in. */
static inline int bg__idtab_get(const bg__idtab *t, uint64_t id, double *lp, double *harm)
{
    size_t i = bg__idtab_slot(t, id);
    if (!t->used[i])
        return 0;
    *lp = t->lp[i];
    if (harm)
        *harm = t->harm[i];
    return 1;
}

/* Adds id (harm ignored by a table without one) unless it is in or the
 * table is half full; 1 when added. */
static inline int bg__idtab_put(bg__idtab *t, uint64_t id, double lp, double harm)
{
    size_t i = bg__idtab_slot(t, id);
    if (t->used[i] || 2 * (t->n + 1) > t->mask + 1)
        return 0;
    t->used[i] = 1;
    t->key[i] = id;
    t->lp[i] = lp;
    if (t->harm)
        t->harm[i] = harm;
    t->n++;
    return 1;
}

typedef struct bg__cands {
    atomic_int refs;
    bg__lpcache lpc; /* log R of what this draw's Evaluates scored */
    uint64_t seed, gen;
    uint32_t k; /* samples drawn */
    bg__fit fit;
    size_t n;
    uint64_t *ids;  /* [n], ascending */
    double *log_q;  /* [n] log q(ids[i]) as the sampler reported it (NaN: none) */
    uint32_t *mult; /* [n] how many of the k draws were ids[i] */
} bg__cands;
void bg__cands_unref(bg__cands *c); /* sampled_sessions.c; NULL is a no-op */

typedef struct bg__sampler {
    bg__sampler_table *table;                /* NULL: an instance's own sampler */
    char *session;                           /* NULL for an instance's own */
    void *inst;                              /* the plugin instance */
    void *keep;                              /* what inst needs alive (factory) */
    void (*destroy)(void *inst, void *keep); /* the factory's; NULL: not ours */
    pthread_rwlock_t lock;                   /* train (write) vs sample (read) */
    atomic_int state;                        /* BG__SAMPLER_* bits */
    atomic_uint_fast64_t gen;                /* training rounds ended (under lock, write) */
    size_t trained_n;                        /* history length of the last step (lock, write) */
    pthread_mutex_t cands_mu;                /* guards cands */
    bg__cands *cands;                        /* the last draw, a reference; NULL: none */
    bg__fit fit;                             /* written under lock (write), read under it */
    bg__archive *arch;                       /* the newest search archive (under cands_mu) */
    bg__ctx_table ctx;                       /* remembered contexts (its own mutex) */
    int refs;                                /* users, under the table's mutex */
    uint64_t last_use;                       /* under the table's mutex */
    struct bg__sampler *next;
} bg__sampler;

struct bg_sampled {
    bg__sampler self;            /* the instance's own (bg_guard.sampler_inst) */
    bg__sampler_table *sessions; /* shared with the instances a reload handed it to */
};

/* The sampler of (g, session) with a reference for the caller (release
 * with bg__sampler_put), made on first use. session NULL, or a guard
 * without per_session: the instance's own sampler (never made or dropped).
 * At most max session samplers are kept (evict). BG_ENOMEM, or
 * BG_EINTERNAL when the factory cannot make an instance. */
int bg__sampler_get(bg_sampled *sd, const bg_guard *g, const char *session, size_t max,
                    bg__sampler **out, bg_err *err);
void bg__sampler_ref(bg__sampler *e);
void bg__sampler_put(bg__sampler *e);
/* Invariants 1-3 of sampled.h for e, given whether a job of e is queued or
 * running now (the caller knows: it holds the trainer's mutex or trains
 * inline); BG_ASSERT. */
void bg__assert_sampler_state(const bg__sampler *e, int has_job);

/* ---- scoring (sampled_score.c): no state */

/* log R(h) = log P(h) + Σ_i log P(obs_i | obs_<i, h) for a session, and
 * the version of that reward (bg__history_version of the model and hist). */
typedef struct bg__reward_ctx {
    const bg_guard *g;
    const bg_observation *hist;
    size_t n_hist;
    uint64_t version;
    double *tmp;
    size_t cap;
} bg__reward_ctx;

/* A reward context for (g, hist): version computed, no scratch yet. */
bg__reward_ctx bg__reward_ctx_make(const bg_guard *g, const bg_observation *hist, size_t n_hist);

/* The sampler's reward callback (bg_sampler_vtbl.train): log R(h) of n
 * hypotheses for the context's session; tmp grows as needed (free it).
 * h == NULL, n == 0: the reward's version into out[0] (ABI 1.2). */
int bg__session_log_r(void *vctx, const uint64_t *h, size_t n, double *out);

/* The version of a session's reward: a 53-bit digest of the model (its
 * model_key), the history's length and every observation in it (action,
 * features, attributes, outcome). Equal versions: the same reward (a
 * sampler's stored rewards are current); a new observation, or another
 * history of the same length, changes it. */
uint64_t bg__history_version(const bg_guard *g, const bg_observation *hist, size_t n_hist);

/* A draw of k (id, log q) into c's arrays (c->ids etc. hold k slots):
 * sorted by id, duplicates merged into mult; sets c->n. log_q may be NULL
 * (a sampler that reports none: NaN). BG_OK or BG_ENOMEM. */
int bg__cands_fill(bg__cands *c, const uint64_t *ids, const double *log_q, size_t k);

/* The evaluation seed of (seed, session, number of observations): the same
 * data give the same verdict. */
uint64_t bg__sampled_seed(uint64_t seed, const char *session, size_t n_hist);

/* Steps 3-4 of an evaluation over n candidates: lp[i] = log R(ids[i])
 * (log prior + Σ log lik over the history, unnormalised) and harm[i] for
 * the action, from the model's batched calls; log R from lpc when it holds
 * the id at `version` (the history's bg__history_version), and put there
 * (lpc NULL: no cache). BG_EINTERNAL when the model fails or returns a
 * NaN / +inf score or a harm outside [0, 1] — with `soft`, such an entry
 * gets lp = -inf (never a candidate) instead: the refinement's
 * neighbours are ids no sampler proposed, and a model that misbehaves
 * there must not cost the verdict the draw alone would give. */
int bg__score(const bg_guard *g, const bg_observation *hist, size_t n_hist, const bg_action *action,
              const uint64_t *ids, size_t n, double *lp, double *harm, bg__lpcache *lpc,
              uint64_t version, int soft, bg_err *err);

/* order[0..n) = 0..n-1 sorted by key ascending, stable (ties: ascending
 * index): an LSD radix sort, 8 bits a pass, passes over a byte every key
 * shares skipped — the sampled path sorts thousands of candidates per
 * Evaluate, where a comparison sort was a third of its cost. BG_OK or
 * BG_ENOMEM. */
int bg__radix_order(const uint64_t *key, size_t n, uint32_t *order);
/* The radix key of x that orders as descending x (-0.0 as 0.0; no NaN). */
uint64_t bg__desc_key(double x);

/* Steps 5-6 over n unique candidates with their scores: lp normalised over
 * them in place (max-shifted log-sum-exp), the stable posterior order (none
 * for an estimator whose order_needed is > 1, as on the enumerated path)
 * and the estimator; fills out (not sampled/samples). BG_EINTERNAL when no
 * score is finite or the estimator misbehaves. */
int bg__estimate_over(const bg_guard *g, const uint64_t *ids, size_t n, double *lp,
                      const double *harm, bg_verdict *out, bg_err *err);

/* ---- harm-directed refinement (sampled_refine.c): no state */

/* Hypotheses the refinement scored beyond the draw: ids not among the
 * candidates, with their log R and harm; arrays owned (bg__refined_free). */
typedef struct bg__refined {
    size_t n, cap;
    uint64_t *ids;
    double *lp, *harm;
    uint32_t evals; /* hypotheses scored (the budget spent) */
} bg__refined;
void bg__refined_free(bg__refined *r);

/* Searches the neighbourhood of the n candidates (ids ascending, unique;
 * lp, harm from bg__score; lpc, version as there) for the hypothesis the guard's estimator is
 * after — the cautious-but-plausible one — by bit-flip ascent from the
 * best candidates, scoring at most `budget` new hypotheses (half that
 * for an iid objective's single-flip climbs when `archive`: the search
 * archive's members are among the candidates); every one
 * scored that clears the final plausibility floor goes into out. BG_OK
 * (out may be empty; a neighbour the model scores NaN or outside [0, 1]
 * is left out, and a failing model call ends the search), or BG_ENOMEM.
 * Contract and the argument why extra candidates never lower the
 * guarantee: sampled_refine.c. */
int bg__refine(const bg_guard *g, const bg_observation *hist, size_t n_hist,
               const bg_action *action, const uint64_t *ids, const double *lp, const double *harm,
               size_t n, uint32_t budget, int archive, bg__lpcache *lpc, uint64_t version,
               bg__refined *out, bg_err *err);
/* The candidates (ids ascending) and r's hypotheses (none among them) into
 * m_* (n + r->n slots each), ids ascending. BG_OK or BG_ENOMEM. */
int bg__refined_merge(const uint64_t *ids, const double *lp, const double *harm, size_t n,
                      const bg__refined *r, uint64_t *m_ids, double *m_lp, double *m_harm);

/* The bits of g's hypothesis ids and the largest valid id + 1 (0: every
 * id of that many bits); 0 bits when the space cannot be walked by bit
 * flips (sampled_refine.c). */
uint32_t bg__space_bits(const bg_guard *g, uint64_t *limit);

/* ---- posterior search archive (sampled_archive.c) */

/* The hypotheses a session sampler's searches found that it keeps (the
 * chains' bests, every bit's extremes, then the best by log R at one
 * reward version; sampled_archive.c): ids ascending, unique; immutable once made, shared by
 * reference (refs). evals and cpu_ns: what the search that made it cost. */
struct bg__archive {
    atomic_int refs;
    uint64_t version; /* reward version of lp */
    /* the model (vtable and instance) that scored lp: a guard whose model
     * differs behind the same key (a test's misbehaving copy) re-scores */
    uint64_t model_tag;
    size_t n;
    uint64_t *ids; /* [n] ascending */
    double *lp;    /* [n] log R at version */
    size_t n_hist; /* the history length of version (the observations it saw) */
    uint64_t evals;
    uint64_t cpu_ns;
};
/* Drops a reference; NULL is a no-op. */
void bg__archive_unref(bg__archive *a);
/* Archive sizes kept per session sampler (16 bytes an entry). */
#define BG__ARCHIVE_CAP 1024u

/* A search on r's reward (bg__session_log_r; version r->version) at most
 * `budget` reward evaluations: old (NULL: none) re-scored, the draw's
 * n_draw ids scored, Metropolis chains from the best of them and from
 * random ids (seeded by seed); *out `cap` of everything scored: the
 * chains' bests, every bit's extremes, then the best (new, refs 1), NULL when the space cannot be
 * walked by bit flips or budget is 0. BG_OK, BG_ENOMEM, or BG_EINTERNAL when the reward fails.
 * Contract: sampled_archive.c. */
int bg__archive_search(const bg_guard *g, bg__reward_ctx *r, const bg__archive *old,
                       const uint64_t *draw, size_t n_draw, uint32_t budget, size_t cap,
                       uint64_t seed, bg__archive **out);

/* The members of archive a that are not among the draw's n candidates
 * (ids ascending) into out (arrays new, ids ascending), with their log R
 * (a's own when a->version == version and g's model scored them, else
 * re-scored through lpc) and
 * harm for the action; members the model scores NaN or outside [0, 1]
 * are left out, and a failing model call leaves out empty (the verdict is
 * the draw's). BG_OK or BG_ENOMEM. */
int bg__archive_extra(const bg_guard *g, const bg_observation *hist, size_t n_hist,
                      const bg_action *action, const bg__archive *a, const uint64_t *ids, size_t n,
                      bg__lpcache *lpc, uint64_t version, bg__refined *out, bg_err *err);

/* One Metropolis proposal from id over `bits` bits: one uniform bit
 * flipped, or half the time two distinct ones (symmetric: q(a -> b) =
 * q(b -> a); a pair moves along the bandit's levels). The archive's and
 * the per-context search's. */
uint64_t bg__flip_propose(uint32_t bits, bg_rng *rng, uint64_t id);

/* Which model scored a stored log R: its vtable and instance (a guard
 * whose model differs behind the same key re-scores). */
uint64_t bg__model_tag(const bg_guard *g);

/* ---- remembered contexts and their search (sampled_context.c) */

/* Contexts a table may hold, whatever the policy says; the bytes of one
 * (tool, arguments, features, attributes: a larger action is not
 * remembered); the candidates kept per context. */
#define BG__CTX_MAX_CAP 1024u
#define BG__CTX_MAX_BYTES 4096u
#define BG__CTX_KEEP 32u

void bg__ctx_table_init(bg__ctx_table *t);
void bg__ctx_table_close(bg__ctx_table *t); /* drops every entry */
size_t bg__ctx_table_size(bg__ctx_table *t);
void bg__ctx_unref(bg__ctx *c); /* NULL is a no-op */
/* Records the action's context in t (cap: the guard's; 0 = off, nothing
 * recorded): found (its LRU tick moves) or added (the least recently used
 * evicted when t holds cap). *entry: a reference to it (NULL when off or
 * the action is over BG__CTX_MAX_BYTES), *kept: a reference to its kept
 * candidates (NULL: none yet), *rounds (when rounds is not NULL): the
 * per-context search rounds the entry has had (0: new, or not
 * remembered), read under the same lock as *kept, so the two agree (the
 * verdict's health). BG_OK or BG_ENOMEM (nothing recorded). */
int bg__ctx_record(bg__ctx_table *t, size_t cap, const bg_action *a, bg__ctx **entry,
                   bg__archive **kept, uint64_t *rounds);
/* The cautious hypothesis of c's newest verdict: a start of its next search. */
void bg__ctx_cautious(bg__ctx_table *t, bg__ctx *c, uint64_t id);

/* What one round's per-context searches did. */
typedef struct bg__ctx_stats {
    uint64_t contexts;     /* searched */
    uint64_t looked;       /* hypotheses looked at (≤ contexts × budget) */
    uint64_t reward_evals; /* log R computed (= looked: one per look) */
    uint64_t cpu_ns;       /* thread CPU */
    uint64_t ejections;    /* ejection-chain moves made (sampled_context.c eject) */
    uint64_t eject_looked; /* hypotheses they looked at (part of looked) */
} bg__ctx_stats;
/* After a round's archive search, on r's reward: each of t's contexts
 * searched (harm-tilted Metropolis chains from its kept set, its last
 * cautious hypothesis and arch's best; at most `budget` hypotheses looked
 * at per context), its kept set replaced (≤ BG__CTX_KEEP: the tilted best
 * and the (log R, harm) Pareto front, at r->version). Seeded by seed and
 * each context's hash. BG_OK (nothing to walk: nothing done), BG_ENOMEM,
 * or BG_EINTERNAL when the model fails (the kept sets searched so far are
 * published). Contract: sampled_context.c. */
int bg__ctx_search_all(const bg_guard *g, bg__reward_ctx *r, bg__ctx_table *t,
                       const bg__archive *arch, uint32_t budget, uint64_t seed,
                       bg__ctx_stats *stats);

/* The kept set of a context's visited table v (with harm; what
 * bg__ctx_search_all keeps, its contract): the best by the tilted
 * objective log R + log harm (ties: the first by harm descending, log R
 * descending, id ascending), then the members of the (harm, log R) Pareto
 * front (in that order, each member's log R above every earlier one's)
 * from its most plausible end, at most BG__CTX_KEEP in all; an entry of
 * log R -inf is never kept. ids[0..*n) ascending, lp their log R. Found
 * without a full sort: over each harm level's top where there are few
 * levels, else by a heap walk by log R descending (sampled_context.c;
 * issue 16, docs/GFLOWNET.md "Cost"). BG_OK (*n 0: nothing finite) or
 * BG_ENOMEM. */
int bg__ctx_keep_pick(const bg__idtab *v, uint64_t ids[BG__CTX_KEEP], double lp[BG__CTX_KEEP],
                      size_t *n);

/* ---- health (sampled_health.c): no state */

/* The health of a draw c against the session's current reward: log_r[i]
 * = log R(c->ids[i]) (bg__score's), version and n_hist the
 * session's; judged against g's limits. */
void bg__health_of(const bg_guard *g, const bg__cands *c, const double *log_r, uint64_t version,
                   size_t n_hist, bg_sampler_health *out);
/* The archive fields of out (engine.h): a's size, the observations of the
 * session's n_hist (at version) its search had not seen, and what that
 * search cost; a NULL (no archive, or the verdict did not use one): size
 * 0 and a lag of n_hist. After bg__health_of (which zeroes out). */
void bg__health_archive(const bg__archive *a, uint64_t version, size_t n_hist,
                        bg_sampler_health *out);
/* The context fields of out (engine.h): not `remembered` (contexts off, no
 * entry): all 0; else `joined` (its kept members among the verdict's
 * candidates), `rounds`, and the observations of the session's n_hist (at
 * version) since the search that made kept (NULL: never searched, n_hist). */
void bg__health_context(int remembered, const bg__archive *kept, uint64_t rounds, size_t joined,
                        uint64_t version, size_t n_hist, bg_sampler_health *out);
/* Training ran `steps` more steps at reward version `version` on n_hist
 * observations (under e's write lock). */
void bg__fit_trained(bg__fit *f, uint64_t version, size_t n_hist, uint64_t steps);

/* ---- what engine.c calls (sampled.c); t is the engine's trainer */

/* A verdict from K samples of the session's sampler; runs with the
 * session's history read-locked. */
int bg__sampled_evaluate(bg_sampled_trainer *t, const bg_guard *g, const char *session,
                         const bg_observation *hist, size_t n_hist, const bg_action *action,
                         bg_verdict *out, bg_err *err);
/* Train (inline) or schedule (background) the session's sampler on its
 * history; runs with it write-locked right after the observation was
 * stored and appended (hist[n_hist-1] is the new one). */
int bg__sampled_observe(bg_sampled_trainer *t, const bg_guard *g, const char *session,
                        const bg_observation *hist, size_t n_hist, bg_err *err);

#endif
