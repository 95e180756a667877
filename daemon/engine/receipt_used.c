/*
 * receipt_used.c — the outcome receipts an engine has accepted: a set of
 * decision ids, so each receipt reports one outcome (engine.h,
 * bg_engine_observe_receipt).
 *
 * A chained hash table of (id, expiry) under one mutex: a claim is one
 * lookup and one insert, far below the fsync of the observation it
 * guards. Ids are minted by the daemon and authenticated by the receipt's
 * MAC before they get here, so a client cannot choose colliding ones; FNV
 * is enough. Bounded by time, not by count: an id whose receipt has
 * expired can never be presented again (verification refuses it first),
 * so a sweep drops those whenever the set has doubled since the last one.
 *
 * Invariants: an id is in the set from its claim until it is released
 * (its observation was not stored) or swept (expired). Threads: any, under
 * mu. Ownership: the set owns its nodes and their copies of the ids.
 */
#include "engine/receipt_used.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_fnv.h"

typedef struct node {
    struct node *next;
    int64_t expiry_unix_ms;
    char id[]; /* NUL-terminated */
} node;

struct bg__receipt_used {
    pthread_mutex_t mu;
    node **buckets;
    size_t n_buckets; /* a power of two */
    size_t count;
    size_t sweep_at; /* sweep expired ids when count reaches it */
};

static uint64_t hash_id(const char *s)
{
    return bg_fnv64_cstr(BG_FNV64_OFFSET, s);
}

int bg__receipt_used_create(bg__receipt_used **out)
{
    bg__receipt_used *u = calloc(1, sizeof *u);
    if (!u || !(u->buckets = calloc(1024, sizeof *u->buckets))) {
        free(u);
        *out = NULL;
        return BG_ENOMEM;
    }
    u->n_buckets = 1024;
    u->sweep_at = 1024;
    pthread_mutex_init(&u->mu, NULL);
    *out = u;
    return BG_OK;
}

void bg__receipt_used_destroy(bg__receipt_used *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_buckets; i++)
        for (node *n = u->buckets[i], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    free(u->buckets);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

/* Drop every id expired by now; then grow the table if it is crowded. */
static void sweep(bg__receipt_used *u, int64_t now_unix_ms)
{
    for (size_t i = 0; i < u->n_buckets; i++)
        for (node **pp = &u->buckets[i]; *pp;) {
            node *n = *pp;
            if (n->expiry_unix_ms <= now_unix_ms) {
                *pp = n->next;
                free(n);
                u->count--;
            } else {
                pp = &n->next;
            }
        }
    if (u->count > u->n_buckets) {
        size_t nb = u->n_buckets * 2;
        while (nb < u->count)
            nb *= 2;
        node **b = calloc(nb, sizeof *b);
        if (b) { /* out of memory: keep the longer chains */
            for (size_t i = 0; i < u->n_buckets; i++)
                for (node *n = u->buckets[i], *next; n; n = next) {
                    next = n->next;
                    size_t j = hash_id(n->id) & (nb - 1);
                    n->next = b[j];
                    b[j] = n;
                }
            free(u->buckets);
            u->buckets = b;
            u->n_buckets = nb;
        }
    }
    u->sweep_at = u->count * 2 > 1024 ? u->count * 2 : 1024;
}

int bg__receipt_used_claim(bg__receipt_used *u, const char *id, int64_t expiry_unix_ms,
                           int64_t now_unix_ms)
{
    size_t len = strlen(id);
    pthread_mutex_lock(&u->mu);
    if (u->count >= u->sweep_at)
        sweep(u, now_unix_ms);
    node **b = &u->buckets[hash_id(id) & (u->n_buckets - 1)];
    for (node *n = *b; n; n = n->next)
        if (strcmp(n->id, id) == 0) {
            pthread_mutex_unlock(&u->mu);
            return BG_EEXIST;
        }
    node *n = malloc(sizeof *n + len + 1);
    if (!n) {
        pthread_mutex_unlock(&u->mu);
        return BG_ENOMEM;
    }
    n->expiry_unix_ms = expiry_unix_ms;
    memcpy(n->id, id, len + 1);
    n->next = *b;
    *b = n;
    u->count++;
    pthread_mutex_unlock(&u->mu);
    return BG_OK;
}

void bg__receipt_used_release(bg__receipt_used *u, const char *id)
{
    pthread_mutex_lock(&u->mu);
    for (node **pp = &u->buckets[hash_id(id) & (u->n_buckets - 1)]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->id, id) == 0) {
            node *n = *pp;
            *pp = n->next;
            free(n);
            u->count--;
            break;
        }
    pthread_mutex_unlock(&u->mu);
}

size_t bg__receipt_used_count(bg__receipt_used *u)
{
    pthread_mutex_lock(&u->mu);
    size_t n = u->count;
    pthread_mutex_unlock(&u->mu);
    return n;
}
