/*
 * test_gfn_context.c — remembered contexts and their search on the trainer
 * thread (issue 16; daemon/engine/sampled_context.c).
 *
 *   test_level: a d = 12 bandit whose data pin every bit but one level: an
 *     arm with features 0 and 1 observed 20 times at value 1 (exactly one
 *     of w0, w1 set: leaving the level costs 10 nats) and each other
 *     feature alone 30 times at its bit of `start`. start has w0 set, its
 *     swap w1: the same log R, and the context x = e1 puts harm on w1
 *     alone, so the swap is the exact cautious hypothesis of both
 *     estimators (enumerated here). Every single flip of start costs
 *     >= 10 nats, more than the log harm it gains, so the Evaluate's
 *     single-flip climbs (budget 300 < 4 × 78 pairs, as at d = 64 with the
 *     default 4,096) from {start} stop at start. The archive here holds
 *     start only (at d = 64 the level is larger than the archive's 1,024,
 *     GFLOWNET.md; a d = 12 archive would hold the whole level, so the test
 *     stands in for one that does not). At first sight the verdict's
 *     cautious hypothesis is start; after the context was recorded and one
 *     per-context search ran (harm-tilted chains with pair proposals), the
 *     next Evaluate's candidates hold the swap and both estimators pick it.
 *     With the feature off (cap 0) nothing is recorded or searched and the
 *     verdict stays start.
 *   test_table: the table's bounds — more distinct contexts than the cap
 *     evict the least recently used; a context whose features differ by one
 *     byte is another context; an action over BG__CTX_MAX_BYTES is not
 *     remembered; a round looks at <= cap × budget hypotheses (counted),
 *     each context <= budget, and computes at most that many log R.
 *   test_eject: the ejection-chain move (sampled_context.c eject). A
 *     d = 12 bandit where arms P = {0, 1} and Q = {0, 2} are observed 200
 *     times each at value 1 (P and Q each hold exactly one set bit on the
 *     level) and every other feature alone 300 times: start (w0 set) and
 *     target (w1 and w2 set, w0 not) share log R, and the context x = e1 +
 *     e2 puts harm on target (x·w 2 against 0). Every single and pair flip
 *     of start costs >= 100 nats (checked) — so high that even the annealed
 *     chains' β = 0.1 (a factor e^-10 a step) cannot cross — and target is 3
 *     flips away: with the move (flip 0, 1 or 2; repair by the best log R
 *     twice) one round at budget 512 keeps it, without it (the chains alone)
 *     not. At budgets 16-96, where a move's scans (up to 3 × 11) overrun
 *     what is left, the round still looks at <= cap × budget, each context
 *     <= budget, and the moves were made.
 *   test_engine: through the engine (inline training, the gfn sampler,
 *     d = 16): contexts evaluated, then observations: the trainer's
 *     per-context rounds run, and each verdict's iid objective log R + log
 *     harm of its cautious hypothesis is >= the one without the feature
 *     on the same draw (the kept members join after the refinement, so the
 *     candidates are a superset of those without them: the iid product
 *     only grows).
 *   test_keep: bg__ctx_keep_pick (the kept set found over each harm
 *     level's top, or past 128 levels by a heap walk by log R descending)
 *     against the full three-pass sort it replaced (keep_ref,
 *     the old keep_of's selection, verbatim) on 400 random visited tables
 *     of 1-600 entries: ids, log R and harm drawn from a few values (ties
 *     on every key, -0.0 beside 0.0, some -inf), continuous and
 *     anti-correlated, or on 200 harm levels with ties (fronts longer than
 *     BG__CTX_KEEP; over the 128 levels keep_pick tracks: its heap walk):
 *     the same ids and log R, bit for bit.
 *   test_default_budget: the per-context search's budget when nothing sets
 *     it, 1,024 up to 32 bits, doubled every 8 bits above (33: 1,024; 40:
 *     2,048; 63: 8,192; 64: 16,384; capped at 65,536), 1,024 on a
 *     token-sequence space; resolved for a guard (d = 10 and 64 bandits):
 *     the policy's value wins (1,024 included), then the trainer's (opts or
 *     bg_sampled_trainer_contexts), else the space's default — and at d = 64
 *     a round's search of one context looks at more than 8,192.
 * ~1 s. Skips (77) when the plugins are not built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampled_priv.h"
#include "gfn_bandit_twin.h"

enum { D = 12, NA = 20, NP = 30, NOBS = NA + (D - 2) * NP };

static double feat[D][D];
static bg_observation hist[NOBS];

/* n pulls of the arm with features f, each of value v, into h[*t..). */
static void pulls(bg_observation *h, size_t *t, double *f, int n, double v)
{
    for (int i = 0; i < n; i++)
        h[(*t)++] = (bg_observation){
            .action = {.tool = "pull", .features = f, .n_features = D}, .has_value = 1, .value = v};
}

/* The level's history (top comment); start and swap into *start, *swap. */
static void level_history(uint64_t *start, uint64_t *swap)
{
    uint64_t st = 1ull << (D - 1), sw = 1ull << (D - 2);
    for (int k = 2; k < D; k++)
        if (k % 2)
            st |= 1ull << (D - 1 - k);
    sw |= st & ((1ull << (D - 2)) - 1);
    memset(feat, 0, sizeof feat);
    feat[0][0] = feat[0][1] = 1;
    for (int k = 2; k < D; k++)
        feat[k][k] = 1;
    size_t t = 0;
    pulls(hist, &t, feat[0], NA, 1);
    for (int k = 2; k < D; k++)
        pulls(hist, &t, feat[k], NP, (double)(st >> (D - 1 - k) & 1));
    CHECK_INT((int)t, NOBS);
    *start = st;
    *swap = sw;
}

/* A hand-made archive of n ids (ascending) with their log R at r's version. */
static bg__archive *archive_of(const bg_guard *g, bg__reward_ctx *r, const uint64_t *ids, size_t n)
{
    bg__archive *a = calloc(1, sizeof *a + n * (sizeof(uint64_t) + sizeof(double)));
    CHECK(a != NULL);
    atomic_init(&a->refs, 1);
    a->ids = (uint64_t *)(a + 1);
    a->lp = (double *)(a->ids + n);
    memcpy(a->ids, ids, n * sizeof *ids);
    CHECK_INT(bg__session_log_r(r, a->ids, n, a->lp), BG_PLUGIN_OK);
    a->n = n;
    a->version = r->version;
    a->model_tag = bg__model_tag(g);
    a->n_hist = r->n_hist;
    return a;
}

/* Merges the members of a (an archive or a kept set) that ids lacks into
 * (ids, lp, harm) (n of them, ascending), exactly scored, as the engine's
 * bg__archive_extra and join do. */
static void add_members(const bg_guard *g, const bg_action *a, const bg__archive *arc,
                        uint64_t version, uint64_t *ids, double *lp, double *harm, size_t *n,
                        size_t cap)
{
    static uint64_t m_ids[1 + 32 + 32 + 4096];
    static double m_lp[1 + 32 + 32 + 4096], m_harm[1 + 32 + 32 + 4096];
    bg_err err;
    bg__refined ex;
    CHECK(bg__archive_extra(g, hist, NOBS, a, arc, ids, *n, NULL, version, &ex, &err) == BG_OK,
          "%s", err.msg);
    CHECK(*n + ex.n <= cap);
    CHECK_INT(bg__refined_merge(ids, lp, harm, *n, &ex, m_ids, m_lp, m_harm), BG_OK);
    *n += ex.n;
    memcpy(ids, m_ids, *n * sizeof *ids);
    memcpy(lp, m_lp, *n * sizeof *lp);
    memcpy(harm, m_harm, *n * sizeof *harm);
    bg__refined_free(&ex);
}

/* The Evaluate's steps over the candidates {start}, in the engine's order:
 * the archive's members joined, refined (budget 300), the context's kept
 * members joined, estimated. */
static bg_verdict verdict_of(const bg_guard *g, const bg_action *a, uint64_t start,
                             const bg__archive *arch, const bg__archive *kept, uint64_t version)
{
    enum { CAP = 1 + 32 + 32 + 4096 };
    static uint64_t ids[CAP], m_ids[CAP];
    static double lp[CAP], harm[CAP], m_lp[CAP], m_harm[CAP];
    bg_err err;
    size_t n = 1;
    ids[0] = start;
    CHECK(bg__score(g, hist, NOBS, a, ids, 1, lp, harm, NULL, version, 0, &err) == BG_OK, "%s",
          err.msg);
    if (arch)
        add_members(g, a, arch, version, ids, lp, harm, &n, CAP);
    bg__refined rf;
    CHECK(bg__refine(g, hist, NOBS, a, ids, lp, harm, n, 300, 0, NULL, version, &rf, &err) == BG_OK,
          "%s", err.msg);
    CHECK(n + rf.n <= CAP, "%zu + %zu candidates", n, rf.n);
    CHECK_INT(bg__refined_merge(ids, lp, harm, n, &rf, m_ids, m_lp, m_harm), BG_OK);
    n += rf.n;
    memcpy(ids, m_ids, n * sizeof *ids);
    memcpy(lp, m_lp, n * sizeof *lp);
    memcpy(harm, m_harm, n * sizeof *harm);
    bg__refined_free(&rf);
    if (kept)
        add_members(g, a, kept, version, ids, lp, harm, &n, CAP);
    bg_verdict v;
    memset(&v, 0, sizeof v);
    CHECK(bg__estimate_over(g, ids, n, lp, harm, &v, &err) == BG_OK, "%s", err.msg);
    return v;
}

static void test_level(bg_plugin_host *h)
{
    uint64_t start, swap;
    level_history(&start, &swap);
    static double x[D];
    memset(x, 0, sizeof x);
    x[1] = 1;
    bg_action a = {
        .id = "call-1", .tool = "pull", .arguments_json = "", .features = x, .n_features = D};
    static const char *const est[2] = {"iid", "noniid"};
    static const char *const ecfg[2] = {"", "{alpha: 0.01}"};
    for (int e = 0; e < 2; e++) {
        bg_guard_build *b;
        const bg_guard *g =
            twin_build(h, "level", "{features: 12, sigma: 1, theta: 2, enumerate: false}", est[e],
                       ecfg[e], &b);
        bg__reward_ctx r = bg__reward_ctx_make(g, hist, NOBS);
        bg__archive *arch = archive_of(g, &r, &start, 1);
        for (int on = 0; on < 2; on++) {
            size_t cap = on ? 64 : 0;
            bg__ctx_table t;
            bg__ctx_table_init(&t);
            bg__ctx *c;
            bg__archive *kept;
            /* first sight: recorded (when on), nothing kept yet */
            CHECK_INT(bg__ctx_record(&t, cap, &a, &c, &kept, NULL), BG_OK);
            CHECK(kept == NULL && (c != NULL) == on);
            bg_verdict v0 = verdict_of(g, &a, start, arch, kept, r.version);
            CHECK(v0.cautious_id == start,
                  "%s: at first sight the refinement (single flips) found %llu; the test needs "
                  "a level it cannot walk",
                  est[e], (unsigned long long)v0.cautious_id);
            if (c)
                bg__ctx_cautious(&t, c, v0.cautious_id);
            bg__ctx_unref(c);
            /* a training round: the per-context search */
            bg__ctx_stats st;
            CHECK_INT(bg__ctx_search_all(g, &r, &t, arch, 512, 7, &st), BG_OK);
            CHECK_INT((int)st.contexts, on);
            CHECK(st.looked <= 512u * st.contexts && st.reward_evals <= st.looked,
                  "looked %llu, reward evaluations %llu", (unsigned long long)st.looked,
                  (unsigned long long)st.reward_evals);
            /* seen again (the call id differs: not part of the context) */
            a.id = "call-2";
            CHECK_INT(bg__ctx_record(&t, cap, &a, &c, &kept, NULL), BG_OK);
            a.id = "call-1";
            CHECK((kept != NULL) == on, "%s: kept %p with the feature %s", est[e], (void *)kept,
                  on ? "on" : "off");
            bg_verdict v1 = verdict_of(g, &a, start, arch, kept, r.version);
            if (on)
                CHECK(v1.cautious_id == swap,
                      "%s: after one per-context search the verdict's cautious hypothesis is "
                      "%llu, not the swap %llu along the level (%zu kept, %llu looked at)",
                      est[e], (unsigned long long)v1.cautious_id, (unsigned long long)swap, kept->n,
                      (unsigned long long)st.looked);
            else
                CHECK(v1.cautious_id == start, "%s: off, yet %llu", est[e],
                      (unsigned long long)v1.cautious_id);
            printf("level, %s, contexts %s: cautious %llu -> %llu (swap %llu; harm %.4f -> %.4f; "
                   "%llu looked at, %llu log R computed, %zu kept)\n",
                   est[e], on ? "on" : "off", (unsigned long long)v0.cautious_id,
                   (unsigned long long)v1.cautious_id, (unsigned long long)swap, v0.harm_bound,
                   v1.harm_bound, (unsigned long long)st.looked,
                   (unsigned long long)st.reward_evals, kept ? kept->n : 0);
            bg__ctx_unref(c);
            bg__archive_unref(kept);
            bg__ctx_table_close(&t);
        }
        bg__archive_unref(arch);
        free(r.tmp);
        bg_guard_build_destroy(b);
    }
}

/* test_eject's history (top comment): arms P = {0, 1} and Q = {0, 2}
 * observed EPQ times each at value 1, every other feature alone EPIN times
 * at its bit of *start; *target is start with features 0, 1, 2 flipped. */
enum { EPQ = 200, EPIN = 300, EOBS = 2 * EPQ + (D - 3) * EPIN };
static double efeat[D][D];
static bg_observation ehist[EOBS];

static void eject_history(uint64_t *start, uint64_t *target)
{
    uint64_t st = 1ull << (D - 1); /* feature 0 on, 1 and 2 off */
    for (int k = 3; k < D; k++)
        if (k % 2)
            st |= 1ull << (D - 1 - k);
    memset(efeat, 0, sizeof efeat);
    efeat[0][0] = efeat[0][1] = 1; /* P */
    efeat[1][0] = efeat[1][2] = 1; /* Q */
    for (int k = 3; k < D; k++)
        efeat[k][k] = 1;
    size_t t = 0;
    for (int arm = 0; arm < 2; arm++)
        pulls(ehist, &t, efeat[arm], EPQ, 1);
    for (int k = 3; k < D; k++)
        pulls(ehist, &t, efeat[k], EPIN, (double)(st >> (D - 1 - k) & 1));
    CHECK_INT((int)t, EOBS);
    *start = st;
    *target = st ^ (7ull << (D - 3));
}

static void test_eject(bg_plugin_host *h)
{
    uint64_t start, target;
    eject_history(&start, &target);
    bg_guard_build *b;
    const bg_guard *g = twin_build(
        h, "eject", "{features: 12, sigma: 1, theta: 2, enumerate: false}", "iid", "", &b);
    bg__reward_ctx r = bg__reward_ctx_make(g, ehist, EOBS);
    /* the premise: target on start's level; every single and pair flip of
     * start at least 100 nats below it */
    uint64_t nb[1 + D + D * (D - 1) / 2];
    double nlp[1 + D + D * (D - 1) / 2], tlp;
    size_t nn = 0;
    nb[nn++] = start;
    for (int i = 0; i < D; i++) {
        nb[nn++] = start ^ 1ull << i;
        for (int j = i + 1; j < D; j++)
            nb[nn++] = start ^ 1ull << i ^ 1ull << j;
    }
    CHECK_INT(bg__session_log_r(&r, nb, nn, nlp), BG_PLUGIN_OK);
    CHECK_INT(bg__session_log_r(&r, &target, 1, &tlp), BG_PLUGIN_OK);
    CHECK(fabs(tlp - nlp[0]) < 1e-9, "target %.9f, start %.9f: not one level", tlp, nlp[0]);
    for (size_t i = 1; i < nn; i++)
        CHECK(nlp[i] <= nlp[0] - 100, "flip %zu of start costs only %.3f nats", i, nlp[0] - nlp[i]);
    bg__archive *arch = archive_of(g, &r, &start, 1);
    static double x[D];
    memset(x, 0, sizeof x);
    x[1] = x[2] = 1;
    bg_action a = {.tool = "pull", .arguments_json = "", .features = x, .n_features = D};
    /* small budgets, where a move's scans (up to k·m) overrun what is left,
     * then one where the target must be reached */
    static const uint32_t budgets[] = {16, 24, 32, 40, 48, 64, 96, 512};
    uint64_t small_moves = 0;
    for (size_t bi = 0; bi < sizeof budgets / sizeof *budgets; bi++) {
        uint32_t budget = budgets[bi];
        bg__ctx_table t;
        bg__ctx_table_init(&t);
        bg__ctx *c;
        bg__archive *kept;
        CHECK_INT(bg__ctx_record(&t, 4, &a, &c, &kept, NULL), BG_OK);
        bg__ctx_cautious(&t, c, start);
        bg__ctx_unref(c);
        /* two more contexts, so the round's bound is cap × budget */
        static double y[2][D];
        for (int i = 0; i < 2; i++) {
            memset(y[i], 0, sizeof y[i]);
            y[i][3 + i] = 1;
            bg_action ay = {.tool = "pull", .features = y[i], .n_features = D};
            CHECK_INT(bg__ctx_record(&t, 4, &ay, &c, &kept, NULL), BG_OK);
            bg__ctx_unref(c);
        }
        bg__ctx_stats st;
        CHECK_INT(bg__ctx_search_all(g, &r, &t, arch, budget, 5, &st), BG_OK);
        CHECK(st.contexts == 3 && st.looked <= 3ull * budget && st.reward_evals <= st.looked &&
                  st.eject_looked <= st.looked,
              "budget %u: %llu contexts looked at %llu (%llu by %llu ejections), %llu log R",
              budget, (unsigned long long)st.contexts, (unsigned long long)st.looked,
              (unsigned long long)st.eject_looked, (unsigned long long)st.ejections,
              (unsigned long long)st.reward_evals);
        CHECK_INT(bg__ctx_record(&t, 4, &a, &c, &kept, NULL), BG_OK);
        CHECK(kept != NULL && kept->evals <= budget, "budget %u: %llu looked at for the context",
              budget, kept ? (unsigned long long)kept->evals : 0ull);
        int found = 0;
        for (size_t i = 0; i < kept->n; i++)
            found |= kept->ids[i] == target;
        if (budget < 512)
            small_moves += st.ejections;
        else
            CHECK(found,
                  "budget %u: the target %llu (3 flips along the level, every single and pair "
                  "flip costs >= 100 nats) not kept (%zu kept, %llu looked at, %llu ejections)",
                  budget, (unsigned long long)target, kept->n, (unsigned long long)st.looked,
                  (unsigned long long)st.ejections);
        printf("eject, budget %u: target %s; a round of 3 contexts looked at %llu (cap × budget "
               "%u), %llu of them in %llu ejection moves, %llu log R\n",
               budget, found ? "kept" : "not kept", (unsigned long long)st.looked, 3 * budget,
               (unsigned long long)st.eject_looked, (unsigned long long)st.ejections,
               (unsigned long long)st.reward_evals);
        bg__ctx_unref(c);
        bg__archive_unref(kept);
        bg__ctx_table_close(&t);
    }
    /* the bounds above held with the move making moves at budgets it could
     * overrun */
    CHECK(small_moves > 0, "no ejection move at the small budgets");
    bg__archive_unref(arch);
    free(r.tmp);
    bg_guard_build_destroy(b);
}

/* Whether ctx x (features) has kept candidates in t (recording it). */
static int has_kept(bg__ctx_table *t, size_t cap, const double *x)
{
    bg_action a = {.tool = "pull", .features = x, .n_features = D};
    bg__ctx *c;
    bg__archive *kept;
    CHECK_INT(bg__ctx_record(t, cap, &a, &c, &kept, NULL), BG_OK);
    CHECK(c != NULL);
    int k = kept != NULL;
    bg__ctx_unref(c);
    bg__archive_unref(kept);
    return k;
}

static void test_table(bg_plugin_host *h)
{
    uint64_t start, swap;
    level_history(&start, &swap);
    bg_guard_build *b;
    const bg_guard *g = twin_build(
        h, "table", "{features: 12, sigma: 1, theta: 2, enumerate: false}", "iid", "", &b);
    bg__reward_ctx r = bg__reward_ctx_make(g, hist, NOBS);
    bg__archive *arch = archive_of(g, &r, &start, 1);
    enum { CAPN = 3, NX = 5 };
    static double x[NX][D];
    for (int i = 0; i < NX; i++)
        for (int k = 0; k < D; k++)
            x[i][k] = (double)(k % (i + 2) == 0); /* distinct for i < 5 */
    bg__ctx_table t;
    bg__ctx_table_init(&t);
    /* A, B, C recorded; A touched; D evicts the least recently used, B */
    for (int i = 0; i < 3; i++)
        CHECK(!has_kept(&t, CAPN, x[i]));
    CHECK(!has_kept(&t, CAPN, x[0]));
    CHECK(!has_kept(&t, CAPN, x[3]));
    CHECK_INT((int)bg__ctx_table_size(&t), CAPN);
    const uint32_t budget = 200;
    bg__ctx_stats st;
    CHECK_INT(bg__ctx_search_all(g, &r, &t, arch, budget, 11, &st), BG_OK);
    CHECK_INT((int)st.contexts, CAPN);
    /* one log R per look: no table shared between the contexts (2026-12-07) */
    CHECK(st.looked > 0 && st.looked <= (uint64_t)CAPN * budget && st.reward_evals == st.looked,
          "a round looked at %llu (cap × budget %u), computed %llu log R",
          (unsigned long long)st.looked, CAPN * budget, (unsigned long long)st.reward_evals);
    printf("table: a round of %u contexts looked at %llu hypotheses (cap × budget = %u), %llu "
           "log R computed, %.2f ms CPU\n",
           CAPN, (unsigned long long)st.looked, CAPN * budget, (unsigned long long)st.reward_evals,
           (double)st.cpu_ns / 1e6);
    /* each context's own count: kept->evals <= budget; its rounds (the
     * verdict's context_rounds) count the searches that published for it:
     * one, then two after another round */
    for (uint64_t want = 1; want <= 2; want++) {
        for (int i = 0; i < 4; i++) {
            if (i == 1)
                continue;
            bg_action a = {.tool = "pull", .features = x[i], .n_features = D};
            bg__ctx *c;
            bg__archive *kept;
            uint64_t rounds = 99;
            CHECK_INT(bg__ctx_record(&t, CAPN, &a, &c, &kept, &rounds), BG_OK);
            CHECK(kept != NULL, "context %d lost its kept set", i);
            CHECK(kept->evals <= budget && kept->n <= BG__CTX_KEEP,
                  "context %d: %llu looked at, %zu kept", i, (unsigned long long)kept->evals,
                  kept->n);
            CHECK(rounds == want, "context %d: %llu rounds after %llu searches", i,
                  (unsigned long long)rounds, (unsigned long long)want);
            bg__ctx_unref(c);
            bg__archive_unref(kept);
        }
        if (want == 1)
            CHECK_INT(bg__ctx_search_all(g, &r, &t, arch, budget, 12, &st), BG_OK);
    }
    /* B was evicted: it comes back with nothing kept and no rounds */
    CHECK(!has_kept(&t, CAPN, x[1]), "the least recently used context was not evicted");
    {
        bg_action a = {.tool = "pull", .features = x[1], .n_features = D};
        bg__ctx *c;
        bg__archive *kept;
        uint64_t rounds = 99;
        CHECK_INT(bg__ctx_record(&t, CAPN, &a, &c, &kept, &rounds), BG_OK);
        CHECK(c != NULL && kept == NULL && rounds == 0, "a new context reports %llu rounds",
              (unsigned long long)rounds);
        bg__ctx_unref(c);
    }
    CHECK_INT((int)bg__ctx_table_size(&t), CAPN);
    /* one byte of one feature changed: another context */
    double y[D];
    memcpy(y, x[3], sizeof y);
    ((unsigned char *)&y[5])[0] ^= 1;
    CHECK(has_kept(&t, CAPN, x[3]));
    CHECK(!has_kept(&t, CAPN, y), "a context one byte away shared the kept set");
    /* an action over the byte bound is not remembered */
    size_t big = BG__CTX_MAX_BYTES + 1;
    char *args = malloc(big + 1);
    CHECK(args != NULL);
    memset(args, 'a', big);
    args[big] = '\0';
    bg_action a = {.tool = "pull", .arguments_json = args, .features = x[4], .n_features = D};
    bg__ctx *c;
    bg__archive *kept;
    CHECK_INT(bg__ctx_record(&t, CAPN, &a, &c, &kept, NULL), BG_OK);
    CHECK(c == NULL && kept == NULL, "an action of %zu bytes was remembered", big);
    free(args);
    /* the cap coming down (a reload) evicts down to it */
    CHECK(!has_kept(&t, 1, x[4]));
    CHECK_INT((int)bg__ctx_table_size(&t), 1);
    bg__ctx_table_close(&t);
    bg__archive_unref(arch);
    free(r.tmp);
    bg_guard_build_destroy(b);
}

/* log R + log harm of id under g for action a and hist. */
static double iid_obj(const bg_guard *g, const bg_observation *hs, size_t n, const bg_action *a,
                      uint64_t id)
{
    double lp, hm;
    bg_err err;
    CHECK(bg__score(g, hs, n, a, &id, 1, &lp, &hm, NULL, 0, 0, &err) == BG_OK, "%s", err.msg);
    return lp + log(hm);
}

static void test_engine(bg_plugin_host *h)
{
    enum { DE = 16, OBS = 6, NC = 4 };
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 1601);
    twin t;
    twin_open(&t, h, "ctx", DE, &rng, "{}", 64, 5);
    bg_sampled_trainer_contexts(t.tr, 8, 256);
    static bg_observation hs[OBS];
    static double f[OBS][DE], cx[NC][DE];
    for (int i = 0; i < NC; i++)
        twin_features(DE, bg_gfn_rng_u64(&rng) & 0xffff, cx[i]);
    bg_err err;
    int better = 0, checked = 0;
    for (int o = 0; o < OBS; o++) {
        hs[o] = twin_pull(&t, t.arms[o % TWIN_ARMS], f[o], &rng);
        CHECK(bg_engine_observe(t.e, &t.gs, "s", &hs[o], NULL, &err) == BG_OK, "%s", err.msg);
        for (int i = 0; i < NC; i++) {
            bg_action a = {.id = "",
                           .tool = "pull",
                           .arguments_json = "",
                           .features = cx[i],
                           .n_features = DE};
            bg_verdict on, off;
            bg_sampled_trainer_contexts(t.tr, 0, 0); /* the same draw without */
            CHECK(bg_engine_evaluate(t.e, &t.gs, "s", &a, &off, &err) == BG_OK, "%s", err.msg);
            bg_sampled_trainer_contexts(t.tr, 8, 256);
            CHECK(bg_engine_evaluate(t.e, &t.gs, "s", &a, &on, &err) == BG_OK, "%s", err.msg);
            CHECK(on.sampled && off.sampled);
            double jon = iid_obj(&t.gs, hs, (size_t)o + 1, &a, on.cautious_id);
            double joff = iid_obj(&t.gs, hs, (size_t)o + 1, &a, off.cautious_id);
            CHECK(jon >= joff - 1e-9,
                  "obs %d ctx %d: the iid objective fell with the remembered context's "
                  "candidates: %.6f < %.6f",
                  o, i, jon, joff);
            better += jon > joff + 1e-9;
            checked++;
        }
    }
    uint64_t rounds, ctxs, looked, evals, ns;
    bg_sampled_trainer_context_stats(t.tr, &rounds, &ctxs, &looked, &evals, &ns);
    /* recorded after the first observation's round: searched in the next
     * OBS - 1 rounds, NC contexts each */
    CHECK_INT((int)rounds, OBS - 1);
    CHECK_INT((int)ctxs, (OBS - 1) * NC);
    CHECK(looked <= ctxs * 256 && evals <= looked, "looked %llu, evals %llu",
          (unsigned long long)looked, (unsigned long long)evals);
    printf("engine, d = %d: %d verdicts, iid objective higher with the contexts' candidates in "
           "%d, never lower; %llu rounds, %llu contexts searched, %llu looked at, %llu log R, "
           "%.1f ms CPU\n",
           DE, checked, better, (unsigned long long)rounds, (unsigned long long)ctxs,
           (unsigned long long)looked, (unsigned long long)evals, (double)ns / 1e6);
    twin_close(&t);
}

/* The per-context search's default budget (bg_sampled_context_search_default)
 * and its resolution for a guard (bg_sampled_trainer_context_budget). */
static void test_default_budget(bg_plugin_host *h)
{
    static const uint32_t bits[] = {1, 10, 32, 33, 39, 40, 47, 48, 56, 63, 64, 112};
    static const uint32_t want[] = {1024, 1024, 1024, 1024, 1024,  2048,
                                    2048, 4096, 8192, 8192, 16384, 65536};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        CHECK(bg_sampled_context_search_default(bits[i], 0) == want[i], "%u bits: %u, want %u",
              bits[i], bg_sampled_context_search_default(bits[i], 0), want[i]);
    /* d > 64 is no bg_space; 112 bits checks the cap's arithmetic only */
    bg_space seq = bg_space_sequence(8, 8); /* 64 bits, a token sequence: as before */
    CHECK_INT((int)bg_sampled_context_search_default(seq.n_bits, seq.flags), 1024);

    /* through the trainer: d = 10 and 64 bandits (bg_space {d, 0}), nothing set */
    bg_err err;
    for (int d = 10; d <= 64; d += 54) {
        int dflt = d == 64 ? 16384 : 1024;
        bg_rng rng;
        bg_gfn_rng_seed(&rng, 1701);
        twin t;
        twin_open(&t, h, "budget", d, &rng, "{}", 16, 1);
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &t.gs), dflt);
        bg_guard g = t.gs;
        g.sampler_context_search = 1024; /* the policy's, even at the old default: it wins */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &g), 1024);
        g.sampler_context_search = 300;
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &g), 300);
        g.sampler_context_search = -1; /* the policy's 0: none */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &g), 0);
        bg_sampled_trainer_contexts(t.tr, 8, 1024); /* the trainer's, explicit: wins */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &t.gs), 1024);
        g.sampler_context_search = 300; /* ... but not over the policy's */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &g), 300);
        bg_sampled_trainer_contexts(t.tr, 8, -1); /* none */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &t.gs), 0);
        bg_sampled_trainer_contexts(t.tr, 8, 0); /* back to the space's default */
        CHECK_INT((int)bg_sampled_trainer_context_budget(t.tr, &t.gs), dflt);
        if (d == 64) { /* and a round's search uses it: one context looks at > 8192 */
            bg_sampled_trainer_search(t.tr, 0);
            bg_sampled_trainer_contexts(t.tr, 1, 0);
            static double f[2][64], cx[64];
            twin_features(64, bg_gfn_rng_u64(&rng), cx);
            bg_action a = {
                .id = "", .tool = "pull", .arguments_json = "", .features = cx, .n_features = 64};
            bg_verdict v;
            for (int o = 0; o < 2; o++) {
                bg_observation ob = twin_pull(&t, t.arms[o], f[o], &rng);
                CHECK(bg_engine_observe(t.e, &t.gs, "s", &ob, NULL, &err) == BG_OK, "%s", err.msg);
                CHECK(bg_engine_evaluate(t.e, &t.gs, "s", &a, &v, &err) == BG_OK, "%s", err.msg);
            }
            uint64_t rounds, ctxs, looked, evals, ns;
            bg_sampled_trainer_context_stats(t.tr, &rounds, &ctxs, &looked, &evals, &ns);
            CHECK(rounds == 1 && ctxs == 1 && looked > 8192 && looked <= 16384,
                  "d = 64, default budget: %llu rounds, %llu contexts, %llu looked at",
                  (unsigned long long)rounds, (unsigned long long)ctxs, (unsigned long long)looked);
            printf("d = 64, default budget: one context's round looked at %llu\n",
                   (unsigned long long)looked);
        }
        twin_close(&t);
    }
    bg_sampled_opts so = {.context_search = 2000};
    bg_sampled_trainer *tr;
    CHECK(bg_sampled_trainer_create(&so, &tr, &err) == BG_OK, "%s", err.msg);
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 1702);
    twin t;
    twin_open(&t, h, "budget", 64, &rng, "{}", 16, 1);
    CHECK_INT((int)bg_sampled_trainer_context_budget(tr, &t.gs), 2000); /* the daemon's opts */
    twin_close(&t);
    bg_sampled_trainer_destroy(tr);
    printf("default budget: 1024 to 32 bits, x2 every 8 above (64: 16384), capped at 65536; a "
           "token sequence 1024; the policy's, then the trainer's, win\n");
}

/* The old keep_of's selection (full sort by harm descending, log R
 * descending, id ascending; the tilted best; the front from its most
 * plausible end), the reference test_keep holds bg__ctx_keep_pick to.
 * keep_tilted is sampled_context.c's tilted(): log harm floored at
 * CTX_LOG_HARM_MIN, -700 (harm 0 in the few-values mode takes the floor,
 * 1e-300 lands just above it at -690.8). */
static double keep_tilted(double lp, double harm)
{
    if (!(lp > -INFINITY))
        return -INFINITY;
    return lp + (harm > 0 ? fmax(log(harm), -700.0) : -700.0);
}

static size_t keep_ref(const bg__idtab *v, uint64_t *out_ids, double *out_lp)
{
    size_t m = 0, mask = v->mask, cnt = v->n ? v->n : 1;
    size_t *sl = malloc(cnt * sizeof *sl), *tmp = malloc(cnt * sizeof *tmp);
    uint64_t *key = malloc(cnt * sizeof *key);
    uint32_t *ord = malloc(cnt * sizeof *ord);
    CHECK(sl && tmp && key && ord, "memory");
    for (size_t i = 0; i <= mask; i++)
        if (v->used[i] && v->lp[i] > -INFINITY)
            sl[m++] = i;
    size_t n = 0;
    if (m) {
        for (size_t i = 0; i < m; i++)
            key[i] = v->key[sl[i]];
        CHECK(bg__radix_order(key, m, ord) == BG_OK, "sort");
        for (int pass = 0; pass < 3; pass++) {
            for (size_t i = 0; i < m; i++)
                tmp[i] = sl[ord[i]];
            memcpy(sl, tmp, m * sizeof *sl);
            if (pass == 2)
                break;
            for (size_t i = 0; i < m; i++)
                key[i] = bg__desc_key(pass == 0 ? v->lp[sl[i]] : v->harm[sl[i]]);
            CHECK(bg__radix_order(key, m, ord) == BG_OK, "sort");
        }
        size_t best = 0;
        for (size_t i = 1; i < m; i++)
            if (keep_tilted(v->lp[sl[i]], v->harm[sl[i]]) >
                keep_tilted(v->lp[sl[best]], v->harm[sl[best]]))
                best = i;
        size_t nf = 0, hi = (size_t)1 << (sizeof(size_t) * 8 - 1);
        double top = -INFINITY;
        for (size_t i = 0; i < m; i++)
            if (v->lp[sl[i]] > top) {
                top = v->lp[sl[i]];
                sl[nf++] = sl[i] | (i == best ? hi : 0);
            } else if (i == best) {
                sl[nf++] = sl[i] | hi;
            }
        uint64_t ids[BG__CTX_KEEP];
        double lps[BG__CTX_KEEP];
        for (size_t i = 0; i < nf; i++)
            if (sl[i] & hi) {
                ids[n] = v->key[sl[i] & ~hi];
                lps[n++] = v->lp[sl[i] & ~hi];
            }
        for (size_t i = nf; i-- > 0 && n < BG__CTX_KEEP;)
            if (!(sl[i] & hi)) {
                ids[n] = v->key[sl[i]];
                lps[n++] = v->lp[sl[i]];
            }
        CHECK(bg__radix_order(ids, n, ord) == BG_OK, "sort");
        for (size_t i = 0; i < n; i++) {
            out_ids[i] = ids[ord[i]];
            out_lp[i] = lps[ord[i]];
        }
    }
    free(sl);
    free(tmp);
    free(key);
    free(ord);
    return n;
}

static void test_keep(void)
{
    bg__idtab v;
    CHECK(bg__idtab_init(&v, 2048, 1) == BG_OK, "memory");
    bg_rng rng;
    bg_rng_init(&rng, 20261207);
    static const double lps[] = {-3.0, -1.5, -0.0, 0.0, -1.5, -INFINITY, -7.25};
    static const double harms[] = {0.0, -0.0, 0.5, 1.0, 0.25, 1e-300, 0.75};
    size_t same = 0, long_front = 0, cut = 0;
    for (int trial = 0; trial < 400; trial++) {
        bg__idtab_clear(&v);
        int mode = trial % 3; /* 0: few values, 1: continuous, 2: 200 harm levels */
        size_t m = 1 + (size_t)(bg_rng_next(&rng) % 600);
        uint64_t idspan = trial % 5 == 0 ? 1024 : UINT64_MAX; /* small ids: dense */
        for (size_t i = 0; i < m; i++) {
            uint64_t id = bg_rng_next(&rng) % idspan;
            double lp, hm;
            if (mode == 1) {
                double u = bg_rng_next_uniform(&rng);
                hm = u;
                lp = -10.0 * u - 3.0 * bg_rng_next_uniform(&rng);
            } else if (mode == 2) {
                unsigned q = (unsigned)(bg_rng_next(&rng) % 200);
                hm = q / 199.0;
                lp = -0.05 * q - 0.5 * (double)(bg_rng_next(&rng) % 3);
            } else {
                lp = lps[bg_rng_next(&rng) % 7];
                hm = harms[bg_rng_next(&rng) % 7];
            }
            bg__idtab_put(&v, id, lp, hm); /* a repeated id: dropped */
        }
        uint64_t ri[BG__CTX_KEEP], ni[BG__CTX_KEEP];
        double rl[BG__CTX_KEEP], nl[BG__CTX_KEEP];
        size_t rn = keep_ref(&v, ri, rl), nn = 99;
        CHECK(bg__ctx_keep_pick(&v, ni, nl, &nn) == BG_OK, "pick");
        CHECK(nn == rn, "trial %d: %zu kept, the sort keeps %zu", trial, nn, rn);
        if (nn == rn && !memcmp(ni, ri, rn * sizeof *ri) && !memcmp(nl, rl, rn * sizeof *rl))
            same++;
        else
            CHECK(0, "trial %d: kept set differs from the sort's", trial);
        long_front += rn == BG__CTX_KEEP;
        cut += mode && rn == BG__CTX_KEEP;
    }
    /* the cases the walk must stop early in were there */
    CHECK(long_front >= 50 && cut >= 50, "%zu full kept sets (%zu of modes 1-2)", long_front, cut);
    bg__idtab_clear(&v); /* nothing finite: nothing kept */
    bg__idtab_put(&v, 5, -INFINITY, 1.0);
    size_t nn = 99;
    uint64_t ni[BG__CTX_KEEP];
    double nl[BG__CTX_KEEP];
    CHECK(bg__ctx_keep_pick(&v, ni, nl, &nn) == BG_OK && nn == 0, "%zu kept of none finite", nn);
    bg__idtab_free(&v);
    printf(
        "test_keep: 400 tables, %zu kept sets as the sort's (%zu with %u kept, %zu of modes 1-2)\n",
        same, long_front, BG__CTX_KEEP, cut);
}

int main(void)
{
    test_keep();
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so", "bg_noniid.so"};
    const char *dir = bg_test_plugin_dir(need, 4);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    test_level(h);
    test_table(h);
    test_eject(h);
    test_engine(h);
    test_default_budget(h);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_gfn_context");
}
