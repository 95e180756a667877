/*
 * lmgfn_replay.c — the LM GFlowNet's replay buffer (the paper's code keeps
 * the best sequences seen and replays them): at most cap items, the best by
 * final log R; an item within min_dist token edits of a kept one is a
 * near-duplicate and only replaces it when its log R is higher; draws are
 * prioritised by softmax(log R / temp).
 *
 * Invariants: 0 <= n <= cap; no two kept items within min_dist edits
 * (min_dist >= 1: no exact duplicates). Each item keeps the reward's
 * version it was computed under (the task's reward here is fixed, so the
 * trainer never recomputes; a changing reward would rescore stale items
 * as lib/gfn does).
 *
 * Threads: the owner's. Ownership: items are owned; add copies.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmgfn/lmgfn.h"

int bg_lmgfn_replay_init(bg_lmgfn_replay *r, int cap, int min_dist, bg_err *err)
{
    memset(r, 0, sizeof *r);
    if (cap < 1 || cap > 1000000)
        return bg_err_set(err, BG_EINVAL, "lmgfn replay: capacity %d; expected 1..1000000", cap);
    r->items = calloc((size_t)cap, sizeof *r->items);
    if (!r->items)
        return bg_err_set(err, BG_ENOMEM, "lmgfn replay: out of memory for %d items", cap);
    r->cap = cap;
    r->min_dist = min_dist < 1 ? 1 : min_dist;
    return BG_OK;
}

void bg_lmgfn_replay_close(bg_lmgfn_replay *r)
{
    free(r->items);
    memset(r, 0, sizeof *r);
}

int bg_lmgfn_edit_distance(const int32_t *a, int na, const int32_t *b, int nb)
{
    int row[BG_LMGFN_MAX_LEN + 1];
    for (int j = 0; j <= nb; j++)
        row[j] = j;
    for (int i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= nb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

static double final_logr(const bg_lmgfn_item *it)
{
    return it->logr[it->n];
}

int bg_lmgfn_replay_add(bg_lmgfn_replay *r, const bg_lmgfn_item *it)
{
    double lr = final_logr(it);
    if (!isfinite(lr))
        return 0;
    int near = 0;
    for (int k = 0; k < r->n; k++)
        if (bg_lmgfn_edit_distance(r->items[k].z, r->items[k].n, it->z, it->n) < r->min_dist) {
            if (lr <= final_logr(&r->items[k]))
                return 0; /* a kept near-duplicate is as good */
            near = 1;
        }
    if (near) { /* the new item replaces every worse near-duplicate */
        int w = 0;
        for (int k = 0; k < r->n; k++)
            if (bg_lmgfn_edit_distance(r->items[k].z, r->items[k].n, it->z, it->n) >= r->min_dist)
                r->items[w++] = r->items[k];
        r->n = w;
    }
    if (r->n < r->cap) {
        r->items[r->n++] = *it;
        return 1;
    }
    int worst = 0;
    for (int k = 1; k < r->n; k++)
        if (final_logr(&r->items[k]) < final_logr(&r->items[worst]))
            worst = k;
    if (lr <= final_logr(&r->items[worst]))
        return 0;
    r->items[worst] = *it;
    return 1;
}

int bg_lmgfn_replay_draw(const bg_lmgfn_replay *r, double temp, double u)
{
    if (r->n == 0)
        return -1;
    double mx = -INFINITY, z = 0;
    for (int k = 0; k < r->n; k++)
        if (final_logr(&r->items[k]) / temp > mx)
            mx = final_logr(&r->items[k]) / temp;
    for (int k = 0; k < r->n; k++)
        z += exp(final_logr(&r->items[k]) / temp - mx);
    double acc = 0, target = u * z;
    for (int k = 0; k < r->n; k++) {
        acc += exp(final_logr(&r->items[k]) / temp - mx);
        if (target < acc)
            return k;
    }
    return r->n - 1;
}
