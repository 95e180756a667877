/*
 * fleet_ids.c — which peers' observations this sidecar holds, in memory
 * that does not grow with each one applied (docs/FLEET.md, "Bounded
 * state").
 *
 * A fleet id is "<node>-<lsn>": node 16 hex digits, lsn the record number
 * in that node's log. Each node ships its own observations in lsn order
 * (fleet.c: the outbox is a queue in log order, re-shipped from the outbox
 * position after a crash; a record that cannot be queued stops the queue
 * until a restart instead of being skipped), so the first copy of each of
 * a node's ids reaches the stream in increasing lsn order, and so does the
 * snapshot (stream order). Hence:
 *
 *   applied(node, lsn)  <=>  lsn < hwm[node]
 *
 * with hwm[node] one past the largest lsn of that node stored here — exact
 * for every copy that can still arrive (a re-ship, a re-read of the
 * stream at start, a snapshot overlapping the stream, a replayed old entry),
 * in O(nodes) memory. hwm is rebuilt at start from the log's fleet
 * receipts (the stored hook's replay), so "applied" and "stored" stay one
 * fact.
 *
 * A snapshot is the exception: it lists the observations session by
 * session, so a node's ids come in lsn order within each session only.
 * While one is applied, applied() compares with the marks as they were
 * before it (bg__fleet_ids_freeze), and the caller drops copies within the
 * snapshot itself (a set of its ids, freed after); the marks after it are
 * again exact for the stream that follows (every later first copy of a
 * node's id has a larger lsn than any the snapshot covers).
 *
 * Two more tables:
 *   index      local lsn -> (node, lsn) of every peer observation stored,
 *              in local lsn order (the stored hook's order): what the
 *              published snapshot names each one by. Packed, 20 bytes per
 *              peer observation held (the history the engine holds is
 *              hundreds of bytes per observation and bounded by max_bytes).
 *   unsettled  (node, lsn) -> local lsn of peer observations replayed from
 *              the log at start whose settle was not in fleet.order (lost
 *              with an OS crash: the journal is not fsynced): the stream
 *              hands them back and the reader settles them. At most
 *              UNSETTLED_MAX; emptied as they are settled.
 *
 * Threads: everything under one mutex (the stored hook on the storing
 * thread, the reader, lag_get's byte counts).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "fleet/fleet_priv.h"

#define UNSETTLED_MAX 65536u

typedef struct node_ent {
    uint64_t node;
    uint64_t hwm;
    uint64_t frozen; /* hwm when the freeze began */
} node_ent;

typedef struct uns_slot {
    uint64_t node, plsn, lsn;
    int used; /* 1 used, 2 removed (tombstone) */
} uns_slot;

struct bg__fleet_ids {
    pthread_mutex_t mu;
    int freeze;               /* a snapshot is being applied: applied() reads frozen */
    uint64_t journaled_below; /* local lsns below it were settled in fleet.order */
    node_ent *nodes;          /* dense: an index into it is stable */
    size_t n_nodes, cap_nodes;
    uint32_t *hash; /* node -> 1 + index into nodes; 0 empty; load <= 1/2 */
    size_t cap_hash;
    /* index, parallel arrays in local lsn order */
    uint64_t *ix_lsn, *ix_plsn;
    uint32_t *ix_node; /* index into nodes */
    size_t n_ix, cap_ix;
    uns_slot *uns; /* open addressing, load (with tombstones) <= 1/2 */
    size_t n_uns, n_dead, cap_uns;
};

int bg__fleet_id_parse(const char *fid, uint64_t *node, uint64_t *lsn)
{
    uint64_t n = 0, l = 0;
    for (int i = 0; i < 16; i++) {
        char c = fid[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        n = n << 4 | (uint64_t)v;
    }
    const char *p = fid + 16;
    if (*p++ != '-' || !*p || strlen(p) > 19 || (p[0] == '0' && p[1]))
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        l = l * 10 + (uint64_t)(*p - '0');
    }
    *node = n;
    *lsn = l;
    return 0;
}

bg__fleet_ids *bg__fleet_ids_create(uint64_t journaled_below)
{
    bg__fleet_ids *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->journaled_below = journaled_below;
    return t;
}

void bg__fleet_ids_destroy(bg__fleet_ids *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->hash);
    free(t->ix_lsn);
    free(t->ix_plsn);
    free(t->ix_node);
    free(t->uns);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

/* The hash slot of node, or the empty one it would take. */
static uint32_t *node_slot(const bg__fleet_ids *t, uint64_t node)
{
    size_t mask = t->cap_hash - 1;
    for (size_t i = mix(node) & mask;; i = (i + 1) & mask)
        if (!t->hash[i] || t->nodes[t->hash[i] - 1].node == node)
            return &t->hash[i];
}

static node_ent *node_get(const bg__fleet_ids *t, uint64_t node)
{
    if (!t->cap_hash)
        return NULL;
    uint32_t *h = node_slot(t, node);
    return *h ? &t->nodes[*h - 1] : NULL;
}

/* The entry of node, added (hwm 0) when new: NULL when out of memory,
 * or *full when BG_FLEET_NODES_MAX nodes are known already. */
static node_ent *node_add(bg__fleet_ids *t, uint64_t node, int *full)
{
    *full = 0;
    node_ent *e = node_get(t, node);
    if (e)
        return e;
    if (t->n_nodes >= BG_FLEET_NODES_MAX) {
        *full = 1;
        return NULL;
    }
    if ((t->n_nodes + 1) * 2 > t->cap_hash) {
        size_t cap = t->cap_hash ? t->cap_hash * 2 : 16;
        uint32_t *h = calloc(cap, sizeof *h), *old = t->hash;
        if (!h)
            return NULL;
        t->hash = h;
        t->cap_hash = cap;
        for (size_t i = 0; i < t->n_nodes; i++)
            *node_slot(t, t->nodes[i].node) = (uint32_t)i + 1;
        free(old);
    }
    if (t->n_nodes == t->cap_nodes) {
        size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 8;
        node_ent *n = realloc(t->nodes, cap * sizeof *n);
        if (!n)
            return NULL;
        t->nodes = n;
        t->cap_nodes = cap;
    }
    t->nodes[t->n_nodes] = (node_ent){node, 0, 0};
    *node_slot(t, node) = (uint32_t)++t->n_nodes;
    return &t->nodes[t->n_nodes - 1];
}

int bg__fleet_ids_applied(bg__fleet_ids *t, uint64_t node, uint64_t plsn)
{
    pthread_mutex_lock(&t->mu);
    node_ent *e = node_get(t, node);
    int r = e && plsn < (t->freeze ? e->frozen : e->hwm);
    pthread_mutex_unlock(&t->mu);
    return r;
}

void bg__fleet_ids_freeze(bg__fleet_ids *t, int on)
{
    pthread_mutex_lock(&t->mu);
    t->freeze = on;
    for (size_t i = 0; on && i < t->n_nodes; i++)
        t->nodes[i].frozen = t->nodes[i].hwm;
    pthread_mutex_unlock(&t->mu);
}

int bg__fleet_ids_room(bg__fleet_ids *t, uint64_t node)
{
    pthread_mutex_lock(&t->mu);
    int r = node_get(t, node) || t->n_nodes < BG_FLEET_NODES_MAX;
    pthread_mutex_unlock(&t->mu);
    return r;
}

static uns_slot *uns_find(bg__fleet_ids *t, uint64_t node, uint64_t plsn, int for_insert)
{
    size_t mask = t->cap_uns - 1;
    for (size_t i = mix(node ^ mix(plsn)) & mask;; i = (i + 1) & mask) {
        uns_slot *u = &t->uns[i];
        if (!u->used || (for_insert && u->used == 2))
            return u;
        if (u->used == 1 && u->node == node && u->plsn == plsn)
            return u;
    }
}

static int grow_ix(bg__fleet_ids *t)
{
    size_t cap = t->cap_ix ? t->cap_ix * 2 : 1024;
    uint64_t *a = realloc(t->ix_lsn, cap * sizeof *a);
    if (a)
        t->ix_lsn = a;
    uint64_t *b = a ? realloc(t->ix_plsn, cap * sizeof *b) : NULL;
    if (b)
        t->ix_plsn = b;
    uint32_t *c = b ? realloc(t->ix_node, cap * sizeof *c) : NULL;
    if (c)
        t->ix_node = c;
    if (!c)
        return -1;
    t->cap_ix = cap;
    return 0;
}

/* Room for one more unsettled entry (rehashing away the tombstones). */
static int uns_reserve(bg__fleet_ids *t)
{
    if ((t->n_uns + t->n_dead + 1) * 2 <= t->cap_uns)
        return 0;
    size_t cap = t->cap_uns ? t->cap_uns : 64;
    while ((t->n_uns + 1) * 2 > cap)
        cap *= 2;
    uns_slot *old = t->uns, *nw = calloc(cap, sizeof *nw);
    if (!nw)
        return -1;
    size_t oc = t->cap_uns;
    t->uns = nw;
    t->cap_uns = cap;
    t->n_dead = 0;
    for (size_t i = 0; i < oc; i++)
        if (old[i].used == 1)
            *uns_find(t, old[i].node, old[i].plsn, 1) = old[i];
    free(old);
    return 0;
}

int bg__fleet_ids_add(bg__fleet_ids *t, uint64_t node, uint64_t plsn, uint64_t lsn, int replayed)
{
    pthread_mutex_lock(&t->mu);
    int full, rc = 0;
    node_ent *e = node_add(t, node, &full);
    if (!e) {
        pthread_mutex_unlock(&t->mu);
        return full ? -2 : -1;
    }
    if (plsn + 1 > e->hwm)
        e->hwm = plsn + 1;
    if (t->n_ix == t->cap_ix && grow_ix(t) != 0)
        rc = -1;
    else if (t->n_ix == 0 || t->ix_lsn[t->n_ix - 1] < lsn) {
        t->ix_lsn[t->n_ix] = lsn;
        t->ix_plsn[t->n_ix] = plsn;
        t->ix_node[t->n_ix] = (uint32_t)(e - t->nodes);
        t->n_ix++;
    }
    if (replayed && lsn >= t->journaled_below && t->n_uns < UNSETTLED_MAX) {
        if (uns_reserve(t) == 0) {
            uns_slot *u = uns_find(t, node, plsn, 0);
            if (u->used != 1) {
                u = uns_find(t, node, plsn, 1);
                if (u->used == 2)
                    t->n_dead--;
                *u = (uns_slot){node, plsn, lsn, 1};
                t->n_uns++;
            }
        } else
            rc = -1;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int bg__fleet_ids_unsettled_take(bg__fleet_ids *t, uint64_t node, uint64_t plsn, uint64_t *lsn)
{
    pthread_mutex_lock(&t->mu);
    int r = 0;
    if (t->n_uns) {
        uns_slot *u = uns_find(t, node, plsn, 0);
        if (u->used == 1) {
            *lsn = u->lsn;
            u->used = 2;
            t->n_uns--;
            t->n_dead++;
            r = 1;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return r;
}

int bg__fleet_ids_fid_of(bg__fleet_ids *t, uint64_t lsn, char *buf, size_t len)
{
    pthread_mutex_lock(&t->mu);
    size_t lo = 0, hi = t->n_ix;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ix_lsn[mid] < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    int found = lo < t->n_ix && t->ix_lsn[lo] == lsn;
    if (found)
        snprintf(buf, len, "%016" PRIx64 "-%" PRIu64, t->nodes[t->ix_node[lo]].node,
                 t->ix_plsn[lo]);
    pthread_mutex_unlock(&t->mu);
    return found;
}

void bg__fleet_ids_bytes(bg__fleet_ids *t, uint64_t *applied, uint64_t *index)
{
    pthread_mutex_lock(&t->mu);
    *applied = t->cap_nodes * sizeof *t->nodes + t->cap_hash * sizeof *t->hash +
               t->cap_uns * sizeof *t->uns;
    *index = t->cap_ix * (2 * sizeof(uint64_t) + sizeof(uint32_t));
    pthread_mutex_unlock(&t->mu);
}
