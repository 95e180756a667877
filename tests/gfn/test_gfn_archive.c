/*
 * test_gfn_archive.c — the posterior search archive of the sampled path
 * (daemon/engine/sampled_archive.c, issue 16) on its own, against an exact
 * reference: a d = 12 exploding bandit (gfn_bandit_twin.h, the real bandit
 * plugin with `enumerate: false`), 30 observations, every one of the 4,096
 * hypotheses' log R computed by the engine's own reward (bg__session_log_r)
 * — so the check is about the search, not the reward. Asserted:
 *   - an archive holds min(cap, what was scored) distinct ids, ascending,
 *     each with its exact log R bit for bit, at the reward's version;
 *   - it spends at most its budget of reward evaluations;
 *   - from random restarts alone (no previous archive, no draw) 3,000
 *     evaluations find the MAP hypothesis, and the archive's worst member
 *     is within 12 nats of the space's cap-th best (the chains run at
 *     β = 1, so they visit the posterior's bulk, not only its top);
 *   - after a new observation a search with a budget of just the old
 *     archive's size re-scores it (no chain runs): the same ids, their log
 *     R at the new version, exactly;
 *   - which members a cap keeps, exactly: every bit's extremes (the best
 *     scored with it set, the best with it clear), then the best by log
 *     R — checked on a pool the test knows (the space's best 300 as a
 *     draw, no chains)
 *     where the top by log R alone would differ;
 *   - the top level set (every hypothesis at the best log R) of a d = 64
 *     bandit reward (10 arms, 40 observations), whose members are many and
 *     far apart: over 10 searches on one reward, each from the previous
 *     archive, every top-level hypothesis a round found is still a member
 *     after the next (a mode found once is not lost), and the daemon's
 *     default budget keeps at least 3x as many of them as the old 16,384
 *     (measured 17 against 5; with 16,384 as the default the check fails)
 *     — the coverage bench_mh_long's d = 64 contexts need;
 *   - the same inputs give the same archive (deterministic);
 *   - budget 0, or a space that cannot be walked by bit flips, gives none.
 * Deterministic (seeded); ~0.5 s of CPU. Skips (77) when the plugins are not
 * built.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampled.h"
#include "engine/sampled_priv.h"
#include "gfn_bandit_twin.h"
#include "gfn_test_util.h"

#define D 12
#define N_HYP (1u << D)
#define N_OBS 30
#define CAP 64

#define N_PICK 300
#define PICK_CAP 12

/* ids by exact log R descending, ties ascending id (the archive's order) */
static const double *qsort_ctx;
static int by_lr_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    double lx = qsort_ctx[x], ly = qsort_ctx[y];
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int by_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

static void check_archive(const bg__archive *a, const double *exact, uint64_t version,
                          const char *what)
{
    CHECK(a != NULL, "%s: no archive", what);
    CHECK(a->version == version, "%s: version %llu, want %llu", what,
          (unsigned long long)a->version, (unsigned long long)version);
    for (size_t i = 0; i < a->n; i++) {
        CHECK(a->ids[i] < N_HYP, "%s: id %llu outside the space", what,
              (unsigned long long)a->ids[i]);
        CHECK(i == 0 || a->ids[i] > a->ids[i - 1], "%s: ids not ascending and distinct at %zu",
              what, i);
        CHECK(a->lp[i] == exact[a->ids[i]], "%s: log R of %llu is %.17g, exact %.17g", what,
              (unsigned long long)a->ids[i], a->lp[i], exact[a->ids[i]]);
    }
}

#define PD 64     /* the top-level test's bits */
#define P_OBS 40  /* its observations */
#define ROUNDS 10 /* its searches */

/* Members of a at log R top (ids ascending into *ids), how many. */
static size_t at_top(const bg__archive *a, double top, uint64_t *ids)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->lp[i] == top)
            ids[n++] = a->ids[i];
    return n;
}

/* 1 when every id of sub[0..n) is a member of a (both ascending). */
static int members(const bg__archive *a, const uint64_t *sub, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        while (j < a->n && a->ids[j] < sub[i])
            j++;
        if (j == a->n || a->ids[j] != sub[i])
            return 0;
    }
    return 1;
}

/* Three searches at budget b on one reward, each from the previous
 * archive: how many hypotheses at log R `level` (or, when level is NAN,
 * at the best found) the last archive holds. Each round keeps every one the rounds before found
 * (they are fewer than the cap): a mode found once is not lost. */
static size_t top_rounds(const twin *t, bg__reward_ctx *rc, uint32_t b, double *top, double level)
{
    static uint64_t was[BG__ARCHIVE_CAP], now[BG__ARCHIVE_CAP];
    bg__archive *prev = NULL, *a = NULL;
    size_t n = 0;
    *top = -INFINITY;
    for (int round = 0; round < ROUNDS; round++) {
        CHECK(bg__archive_search(&t->gs, rc, prev, NULL, 0, b, BG__ARCHIVE_CAP,
                                 77 + (uint64_t)round, &a) == BG_OK &&
              a);
        CHECK(a->evals <= b, "budget %u: %llu evaluations", b, (unsigned long long)a->evals);
        double mx = -INFINITY;
        for (size_t i = 0; i < a->n; i++)
            mx = fmax(mx, a->lp[i]);
        CHECK(mx >= *top, "budget %u, round %d: the best log R fell, %.17g < %.17g", b, round, mx,
              *top);
        size_t m = at_top(a, mx, now);
        CHECK(mx > *top || members(a, was, n),
              "budget %u, round %d: a top-level hypothesis of an earlier round was lost", b, round);
        CHECK(m < BG__ARCHIVE_CAP, "budget %u: the top level fills the archive (%zu)", b, m);
        memcpy(was, now, m * sizeof *now);
        n = m;
        *top = mx;
        bg__archive_unref(prev);
        prev = a;
    }
    if (!isnan(level)) {
        n = 0;
        for (size_t i = 0; i < prev->n; i++)
            n += prev->lp[i] == level;
    }
    bg__archive_unref(prev);
    return n;
}

/* The top level set (every hypothesis at the best log R: at d = 64 with
 * 10 arms, the many w with the same x·w on every arm) of a reward whose
 * top level is far larger than what one search finds: 10 rounds at the old
 * default (16,384) and at the daemon's. bench_mh_long's misses at d = 64
 * are contexts whose cautious hypothesis is on that level, 14-18 bits from
 * every member (docs/GFLOWNET.md): coverage of it is what the default
 * budget buys. */
static void top_level(bg_plugin_host *h)
{
    bg_rng r;
    bg_gfn_rng_seed(&r, 3232);
    twin t;
    twin_open(&t, h, "archive-top", PD, &r, "{}", 64, 1);
    static double f[P_OBS][PD];
    bg_observation hist[P_OBS];
    for (int i = 0; i < P_OBS; i++)
        hist[i] = twin_pull(&t, t.arms[bg_gfn_rng_u64(&r) % TWIN_ARMS], f[i], &r);
    bg__reward_ctx rc = bg__reward_ctx_make(&t.gs, hist, P_OBS);
    double top_small, top_dflt;
    size_t dflt = top_rounds(&t, &rc, BG_SAMPLED_SEARCH_DEFAULT, &top_dflt, NAN);
    size_t small = top_rounds(&t, &rc, 16384, &top_small, top_dflt);
    printf("top level (log R %.3f / %.3f): %zu hypotheses kept after %d rounds of 16,384 "
           "evaluations, %zu at the default %d\n",
           top_small, top_dflt, small, ROUNDS, dflt, BG_SAMPLED_SEARCH_DEFAULT);
    CHECK(top_dflt >= top_small, "the default budget found a worse top (%.3f < %.3f)", top_dflt,
          top_small);
    CHECK(dflt >= 3 * small && dflt >= 12,
          "default budget: %zu top-level hypotheses, 16,384: %zu (want 3x, and 12)", dflt, small);
    free(rc.tmp);
    twin_close(&t);
}

int main(void)
{
    const char *const need[] = {"bg_gfn.so", "bg_bandit.so", "bg_iid.so", "bg_noniid.so"};
    const char *dir = bg_test_plugin_dir(need, 4);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_rng r;
    bg_gfn_rng_seed(&r, 1212);
    twin t;
    twin_open(&t, h, "archive", D, &r, "{}", 64, 1);

    /* the history, kept here (features borrowed from f) */
    static double f[N_OBS + 1][D];
    bg_observation hist[N_OBS + 1];
    for (int i = 0; i <= N_OBS; i++)
        hist[i] = twin_pull(&t, t.arms[bg_gfn_rng_u64(&r) % TWIN_ARMS], f[i], &r);

    uint64_t *all = malloc(N_HYP * sizeof *all);
    double *exact = malloc(N_HYP * sizeof *exact), *exact2 = malloc(N_HYP * sizeof *exact2);
    double *sorted = malloc(N_HYP * sizeof *sorted);
    CHECK(all && exact && exact2 && sorted, "out of memory");
    for (uint64_t i = 0; i < N_HYP; i++)
        all[i] = i;
    bg__reward_ctx rc1 = bg__reward_ctx_make(&t.gs, hist, N_OBS);
    bg__reward_ctx rc2 = bg__reward_ctx_make(&t.gs, hist, N_OBS + 1);
    CHECK(rc1.version != rc2.version, "a new observation must change the reward's version");
    CHECK(bg__session_log_r(&rc1, all, N_HYP, exact) == BG_PLUGIN_OK);
    CHECK(bg__session_log_r(&rc2, all, N_HYP, exact2) == BG_PLUGIN_OK);
    uint64_t map = 0;
    for (uint64_t i = 0; i < N_HYP; i++)
        map = exact[i] > exact[map] ? i : map;
    memcpy(sorted, exact, N_HYP * sizeof *sorted);
    qsort(sorted, N_HYP, sizeof *sorted, by_desc);

    /* random restarts only */
    bg__archive *a = NULL, *b = NULL, *c = NULL;
    CHECK(bg__archive_search(&t.gs, &rc1, NULL, NULL, 0, 3000, CAP, 7, &a) == BG_OK);
    check_archive(a, exact, rc1.version, "search");
    CHECK(a->n == CAP, "archive of %zu, want %d", a->n, CAP);
    CHECK(a->evals <= 3000, "%llu reward evaluations, budget 3000", (unsigned long long)a->evals);
    int has_map = 0;
    double worst = INFINITY;
    for (size_t i = 0; i < a->n; i++) {
        has_map |= a->ids[i] == map;
        worst = fmin(worst, a->lp[i]);
    }
    CHECK(has_map, "the MAP hypothesis %llu (log R %.3f) is not in the archive",
          (unsigned long long)map, exact[map]);
    CHECK(worst >= sorted[CAP - 1] - 12, "archive's worst %.3f, the %d-th best %.3f", worst, CAP,
          sorted[CAP - 1]);
    printf("search: %llu evaluations, MAP found, archive's worst log R %.3f (exact %d-th best "
           "%.3f)\n",
           (unsigned long long)a->evals, worst, CAP, sorted[CAP - 1]);

    /* deterministic */
    CHECK(bg__archive_search(&t.gs, &rc1, NULL, NULL, 0, 3000, CAP, 7, &b) == BG_OK && b);
    CHECK(b->n == a->n && !memcmp(b->ids, a->ids, a->n * sizeof *a->ids) &&
              !memcmp(b->lp, a->lp, a->n * sizeof *a->lp),
          "the same search gave another archive");
    bg__archive_unref(b);

    /* a new observation: re-scored, nothing else (budget = its size) */
    CHECK(bg__archive_search(&t.gs, &rc2, a, NULL, 0, CAP, CAP, 7, &c) == BG_OK);
    check_archive(c, exact2, rc2.version, "re-scored");
    CHECK(c->n == a->n && !memcmp(c->ids, a->ids, a->n * sizeof *a->ids),
          "re-scoring changed the members");
    CHECK(c->evals == CAP, "re-scoring took %llu evaluations, want %d",
          (unsigned long long)c->evals, CAP);
    bg__archive_unref(c);

    /* the draw's ids are scored and kept too */
    uint64_t draw[3] = {map ^ 1, map ^ 6, map};
    CHECK(bg__archive_search(&t.gs, &rc1, NULL, draw, 3, 3, CAP, 7, &c) == BG_OK);
    check_archive(c, exact, rc1.version, "draw");
    CHECK(c->n == 3, "archive of %zu from a draw of 3 and no chains", c->n);
    bg__archive_unref(c);

    /* which members a cap keeps, exactly: from a draw of N_PICK distinct
     * ids and no chains (budget = the draw), every bit's extremes — the
     * best (log R, ties lower id) with it set and the best with it clear —
     * then the best by log R; computed here from the exact log R */
    static uint64_t pool[N_HYP]; /* the space's best N_PICK: a cluster */
    for (uint64_t i = 0; i < N_HYP; i++)
        pool[i] = i;
    qsort_ctx = exact;
    qsort(pool, N_HYP, sizeof *pool, by_lr_id);
    static int want[N_HYP];
    memset(want, 0, sizeof want);
    uint64_t have_set = 0, have_clear = 0, all_bits = N_HYP - 1;
    size_t n_want = 0, n_ext = 0;
    for (size_t i = 0; i < N_PICK; i++) {
        uint64_t id = pool[i];
        if ((id & ~have_set) || (~id & all_bits & ~have_clear)) {
            want[id] = 1, n_want++, n_ext++;
            have_set |= id, have_clear |= ~id & all_bits;
        }
    }
    CHECK(have_set == all_bits && have_clear == all_bits && n_ext <= 2 * D,
          "the pool lacks a bit value (%llx %llx) or %zu extremes", (unsigned long long)have_set,
          (unsigned long long)have_clear, n_ext);
    for (size_t i = 0; i < N_PICK && n_want < PICK_CAP; i++)
        if (!want[pool[i]])
            want[pool[i]] = 1, n_want++;
    CHECK(bg__archive_search(&t.gs, &rc1, NULL, pool, N_PICK, N_PICK, PICK_CAP, 7, &c) == BG_OK);
    check_archive(c, exact, rc1.version, "pick");
    CHECK(c->n == PICK_CAP && c->evals == N_PICK, "archive of %zu after %llu evaluations", c->n,
          (unsigned long long)c->evals);
    int only_top = 1; /* would the best PICK_CAP by log R alone have done? */
    for (size_t i = 0; i < c->n; i++) {
        CHECK(want[c->ids[i]], "member %llu (log R %.3f) is neither an extreme nor in the top",
              (unsigned long long)c->ids[i], c->lp[i]);
        only_top &= c->lp[i] >= exact[pool[PICK_CAP - 1]];
    }
    CHECK(!only_top, "the test's pool does not tell extremes from the top %d", PICK_CAP);
    printf("pick: %zu extremes of %d bits among %d members of a pool of %d\n", n_ext, D, PICK_CAP,
           N_PICK);
    bg__archive_unref(c);

    /* the top level set kept across rounds: a d = 20 reward whose every
     * hypothesis of popcount 10 has the top log R (184,756 of them, 8
     * observations of x = all ones at r = 10); three searches, each after
     * one more such observation, from the previous archive */
    top_level(h);

    /* nothing to do */
    c = a;
    CHECK(bg__archive_search(&t.gs, &rc1, NULL, NULL, 0, 0, CAP, 7, &c) == BG_OK && c == NULL,
          "budget 0 must give no archive");
    bg__archive_unref(a);

    free(rc1.tmp);
    free(rc2.tmp);
    free(all);
    free(exact);
    free(exact2);
    free(sorted);
    twin_close(&t);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_gfn_archive");
}
