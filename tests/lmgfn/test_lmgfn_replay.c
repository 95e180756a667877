/*
 * test_lmgfn_replay.c — the LM GFlowNet's replay buffer
 * (lib/lmgfn/lmgfn_replay.c): token edit distance, near-duplicates
 * rejected or replacing a worse twin, top-k by log R when full, and draws
 * in proportion to softmax(log R / temp), checked exactly with a grid of
 * u (the draw is the inverse CDF, so M evenly spaced u give each item
 * round(M p) draws, within 1).
 */
#include <math.h>
#include <string.h>

#include "bg_test.h"
#include "lmgfn/lmgfn.h"

static bg_lmgfn_item item(const char *s, double logr)
{
    bg_lmgfn_item it;
    memset(&it, 0, sizeof it);
    it.n = (int)strlen(s);
    for (int i = 0; i < it.n; i++)
        it.z[i] = s[i];
    it.logr[it.n] = logr;
    it.version = 1;
    return it;
}

int main(void)
{
    int32_t a[] = {'k', 'i', 't', 't', 'e', 'n'}, b[] = {'s', 'i', 't', 't', 'i', 'n', 'g'};
    CHECK_INT(bg_lmgfn_edit_distance(a, 6, b, 7), 3);
    CHECK_INT(bg_lmgfn_edit_distance(a, 6, a, 6), 0);
    CHECK_INT(bg_lmgfn_edit_distance(a, 0, b, 7), 7);
    CHECK_INT(bg_lmgfn_edit_distance(a, 6, a, 5), 1);

    bg_lmgfn_replay r;
    bg_err err;
    CHECK(bg_lmgfn_replay_init(&r, 0, 1, &err) == BG_EINVAL);
    CHECK(bg_lmgfn_replay_init(&r, 3, 2, &err) == BG_OK, "%s", err.msg);
    bg_lmgfn_item x;
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("abc", -1.0), &x)), 1);
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("abd", -2.0), &x)), 0); /* 1 edit, worse */
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("abd", -0.5), &x)), 1); /* 1 edit, better */
    CHECK_INT(r.n, 1);
    CHECK_INT(r.items[0].z[2], 'd');
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("xyz", -3.0), &x)), 1);
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("pqrs", -2.0), &x)), 1);
    CHECK_INT(r.n, 3);
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("mmmm", -4.0), &x)), 0); /* worse than all */
    CHECK_INT(bg_lmgfn_replay_add(&r, (x = item("nnnn", -1.5), &x)), 1); /* drops xyz */
    for (int k = 0; k < r.n; k++)
        CHECK(r.items[k].z[0] != 'x', "the worst item stayed");
    x = item("qqq", NAN);
    CHECK_INT(bg_lmgfn_replay_add(&r, &x), 0);

    /* draws: logr -0.5, -2.0, -1.5 at temp 0.5 */
    double temp = 0.5, p[3], zsum = 0;
    for (int k = 0; k < 3; k++)
        zsum += p[k] = exp(r.items[k].logr[r.items[k].n] / temp);
    int cnt[3] = {0}, M = 100000;
    for (int i = 0; i < M; i++)
        cnt[bg_lmgfn_replay_draw(&r, temp, (i + 0.5) / M)]++;
    for (int k = 0; k < 3; k++)
        CHECK(fabs(cnt[k] - M * p[k] / zsum) <= 1.0, "item %d drawn %d times, expected %.1f", k,
              cnt[k], M * p[k] / zsum);
    bg_lmgfn_replay_close(&r);
    CHECK_DONE("test_lmgfn_replay");
}
