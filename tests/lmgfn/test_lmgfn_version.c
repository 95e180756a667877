/*
 * test_lmgfn_version.c — a reward that moves (bg_lmgfn_set_version): a
 * sampler plugin's reward is bound to a session's data and changes with
 * each observation, so the replay buffer's stored log R must be re-scored
 * before it is replayed or ranked. On the tiny synthetic model, after
 * steps have filled the buffer at version 1 under reward f_1:
 *   - set_version(2) under f_2 re-scores every item: each prefix's stored
 *     log R equals f_2 exactly (the reward's own doubles), and each item
 *     is at version 2; the reward was called with at most `batch`
 *     trajectories at a time;
 *   - a reward that fails leaves every item at its old version and log R,
 *     and the version where it was;
 *   - set_version to the version the items already have calls nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmgfn_test.h"

#define L 3
#define B 4
static const int32_t prompt[2] = {0, 5};

static double shift;    /* the reward's data: f(z, i) moves with it */
static int fail;        /* 1: the reward fails */
static int calls, most; /* reward calls, the largest k seen */

static double f(const int32_t *z, int i)
{
    return -0.5 * i + (i > 0 && z[0] == 3 ? shift : 0.0) + (i > 1 ? 0.1 * z[1] : 0.0);
}

static int reward(void *ctx, bg_lmgfn *g, const int32_t *const *z, const int *n, int k,
                  double *logr, bg_err *err)
{
    (void)ctx;
    (void)g;
    calls++;
    most = k > most ? k : most;
    if (fail)
        return bg_err_set(err, BG_EINTERNAL, "the test's reward fails");
    for (int j = 0; j < k; j++)
        for (int i = 0; i <= n[j]; i++)
            logr[j * (L + 1) + i] = f(z[j], i);
    return BG_OK;
}

/* Every item at version v with log R = f under the current shift. */
static void check_items(const bg_lmgfn_replay *r, uint64_t v)
{
    for (int k = 0; k < r->n; k++) {
        const bg_lmgfn_item *it = &r->items[k];
        CHECK(it->version == v, "item %d at version %llu, expected %llu", k,
              (unsigned long long)it->version, (unsigned long long)v);
        for (int i = 0; i <= it->n; i++)
            CHECK(it->logr[i] == f(it->z, i), "item %d prefix %d: log R %.17g, f %.17g", k, i,
                  it->logr[i], f(it->z, i));
    }
}

int main(void)
{
    char path[] = "/tmp/bg-test-lmgfn-version-XXXXXX";
    lt_tiny_model(path);
    bg_err err;
    bg_lmgfn_opts o;
    bg_nn_train_opts to;
    lt_mixture_opts(&o, &to, prompt, L, B, reward);
    o.min_len = 1;
    o.replay_cap = 11; /* not a multiple of B: a partial last batch */
    o.replay_min_dist = 0;
    o.seed = 3;
    bg_lmgfn *g = lt_lmgfn_open(path, &to, &o);
    CHECK(bg_lmgfn_version(g) == 1);
    shift = 1.0;
    for (int s = 0; s < 12; s++)
        CHECK(bg_lmgfn_step(g, NULL, &err) == BG_OK, "%s", err.msg);
    const bg_lmgfn_replay *r = bg_lmgfn_replay_of(g);
    CHECK(r->n >= B + 1, "only %d replay items after 12 steps", r->n);
    check_items(r, 1);

    /* The data moved: a failing re-score changes nothing. */
    shift = -2.0;
    fail = 1;
    CHECK(bg_lmgfn_set_version(g, 2, &err) == BG_EINTERNAL);
    CHECK(bg_lmgfn_version(g) == 1);
    fail = 0;
    for (int k = 0; k < r->n; k++)
        CHECK(r->items[k].version == 1, "item %d left version 1 after a failed re-score", k);

    /* Re-scored under f_2, in batches of at most B. */
    calls = most = 0;
    CHECK(bg_lmgfn_set_version(g, 2, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_lmgfn_version(g) == 2);
    check_items(r, 2);
    CHECK(most <= B && calls == (r->n + B - 1) / B, "%d calls of at most %d for %d items", calls,
          most, r->n);
    printf("re-scored %d replay items in %d reward calls of <= %d\n", r->n, calls, most);

    /* Same version: nothing to do. */
    calls = 0;
    CHECK(bg_lmgfn_set_version(g, 2, &err) == BG_OK, "%s", err.msg);
    CHECK(calls == 0, "%d reward calls at an unchanged version", calls);
    /* New items are stored at the new version, and steps still work. */
    for (int s = 0; s < 4; s++)
        CHECK(bg_lmgfn_step(g, NULL, &err) == BG_OK, "%s", err.msg);
    check_items(r, 2);
    bg_lmgfn_destroy(g);
    unlink(path);
    CHECK_DONE("test_lmgfn_version");
}
