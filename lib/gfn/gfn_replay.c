/*
 * gfn_replay.c — the replay buffer: the top-k trajectories seen so far by
 * final log-reward, each with the untempered log-rewards of all its
 * prefixes and the version of the reward they were computed at, so that
 * replaying it needs no reward call while the reward stays the same. When
 * the reward moves (a new observation), gfn_train.c re-scores the entries
 * of older versions before it replays or ranks any (refresh_replay): a
 * stored reward is never used at another version than its own.
 *
 * A trajectory is its final id (the state space is a tree), so exact
 * duplicates are found by id and skipped. When full, a newcomer replaces
 * the worst entry only when its log-reward is strictly larger. Linear
 * scans: capacities are in the hundreds.
 *
 * Threads: owned by one trainer, mutated only inside bg_gfn_train/load.
 */
#include <stdlib.h>
#include <string.h>

#include "gfn_priv.h"

int bg__gfn_replay_init(bg__gfn_replay *r, uint32_t cap, uint32_t d)
{
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->d = d;
    if (cap == 0)
        return BG_PLUGIN_OK;
    r->ids = calloc(cap, sizeof *r->ids);
    r->ver = calloc(cap, sizeof *r->ver);
    r->logr = calloc((size_t)cap * (d + 1), sizeof *r->logr);
    if (!r->ids || !r->ver || !r->logr) {
        bg__gfn_replay_close(r);
        return BG_PLUGIN_ENOMEM;
    }
    return BG_PLUGIN_OK;
}

void bg__gfn_replay_close(bg__gfn_replay *r)
{
    free(r->ids);
    free(r->ver);
    free(r->logr);
    r->ids = NULL;
    r->ver = NULL;
    r->logr = NULL;
    r->n = 0;
}

static double final_logr(const bg__gfn_replay *r, uint32_t i)
{
    return r->logr[(size_t)i * (r->d + 1) + (uint32_t)__builtin_popcountll(r->ids[i])];
}

int bg__gfn_replay_add(bg__gfn_replay *r, uint64_t id, const double *logr, uint64_t ver)
{
    if (r->cap == 0)
        return 0;
    uint32_t len = (uint32_t)__builtin_popcountll(id);
    uint32_t worst = 0;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->ids[i] == id)
            return 0;
        if (final_logr(r, i) < final_logr(r, worst))
            worst = i;
    }
    uint32_t slot;
    if (r->n < r->cap) {
        slot = r->n++;
    } else {
        if (!(logr[len] > final_logr(r, worst)))
            return 0;
        slot = worst;
    }
    r->ids[slot] = id;
    r->ver[slot] = ver;
    memcpy(r->logr + (size_t)slot * (r->d + 1), logr, (len + 1) * sizeof(double));
    return 1;
}
