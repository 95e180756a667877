/*
 * plugin_lm_cache.c — the score cache of a host language model
 * (plugin_lm_cache.h): a hash table of exact token sequences with an LRU
 * list, both under one mutex.
 *
 * Layout: `nb` buckets (a power of two, >= 2 cap) of singly linked chains;
 * a doubly linked recency list, most recent at `head`. An entry stores its
 * prefix and continuation tokens back to back in one allocation.
 *
 * Invariants: (1) every entry is in exactly one chain (bucket hash & (nb-1))
 * and in the recency list; (2) n <= cap and tokens <= BG__LM_CACHE_TOKENS
 * after every put; (3) an entry's key never changes after insertion.
 * Threads: the mutex guards everything but `key` (set at create).
 * Ownership: entries are the cache's; freed by eviction or destroy.
 */
#include "plugin/plugin_lm_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_siphash.h"

typedef struct entry {
    struct entry *chain;       /* bucket chain */
    struct entry *prev, *next; /* recency: prev is more recent */
    uint64_t hash;
    size_t n_prefix, n_cont;
    double score;
    int32_t tok[]; /* prefix then cont */
} entry;

struct bg__lm_cache {
    pthread_mutex_t mu;
    uint8_t key[BG_SIPHASH_KEY_BYTES];
    size_t cap, n, tokens, nb;
    entry **bucket;
    entry *head, *tail;
    uint64_t hits, misses;
};

int bg__lm_cache_create(size_t cap, bg__lm_cache **out, bg_err *err)
{
    *out = NULL;
    bg__lm_cache *c = calloc(1, sizeof *c);
    if (!c)
        return bg_err_set(err, BG_ENOMEM, "language model score cache: out of memory");
    c->cap = cap;
    c->nb = 1;
    while (c->nb < 2 * cap)
        c->nb <<= 1;
    c->bucket = calloc(c->nb, sizeof *c->bucket);
    if (!c->bucket) {
        free(c);
        return bg_err_set(err, BG_ENOMEM,
                          "language model score cache: out of memory for %zu entries", cap);
    }
    if (bg_siphash_key_random(c->key) != BG_OK) {
        free(c->bucket);
        free(c);
        return bg_err_set(err, BG_EIO, "language model score cache: getrandom failed");
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return BG_OK;
}

void bg__lm_cache_destroy(bg__lm_cache *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *nx; e; e = nx) {
        nx = e->next;
        free(e);
    }
    free(c->bucket);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static uint64_t hash_of(const bg__lm_cache *c, const int32_t *p, size_t np, const int32_t *q,
                        size_t nq)
{
    bg_siphash h;
    uint64_t lens[2] = {np, nq}; /* the split is part of the key */
    bg_siphash_init(&h, c->key);
    bg_siphash_update(&h, lens, sizeof lens);
    bg_siphash_update(&h, p, np * sizeof *p);
    bg_siphash_update(&h, q, nq * sizeof *q);
    return bg_siphash_final(&h);
}

static entry *find(const bg__lm_cache *c, uint64_t hash, const int32_t *p, size_t np,
                   const int32_t *q, size_t nq, entry ***link)
{
    entry **l = &c->bucket[hash & (c->nb - 1)];
    for (; *l; l = &(*l)->chain) {
        const entry *e = *l;
        if (e->hash == hash && e->n_prefix == np && e->n_cont == nq &&
            memcmp(e->tok, p, np * sizeof *p) == 0 && memcmp(e->tok + np, q, nq * sizeof *q) == 0)
            break;
    }
    if (link)
        *link = l;
    return *l;
}

static void unlink_lru(bg__lm_cache *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(bg__lm_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void evict(bg__lm_cache *c, entry *e)
{
    entry **l;
    find(c, e->hash, e->tok, e->n_prefix, e->tok + e->n_prefix, e->n_cont, &l);
    *l = e->chain;
    unlink_lru(c, e);
    c->n--;
    c->tokens -= e->n_prefix + e->n_cont;
    free(e);
}

int bg__lm_cache_get(bg__lm_cache *c, const int32_t *prefix, size_t n_prefix, const int32_t *cont,
                     size_t n_cont, double *score)
{
    if (c->cap == 0)
        return 0;
    uint64_t h = hash_of(c, prefix, n_prefix, cont, n_cont);
    pthread_mutex_lock(&c->mu);
    entry *e = find(c, h, prefix, n_prefix, cont, n_cont, NULL);
    if (e) {
        *score = e->score;
        unlink_lru(c, e);
        push_front(c, e);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return e != NULL;
}

void bg__lm_cache_put(bg__lm_cache *c, const int32_t *prefix, size_t n_prefix, const int32_t *cont,
                      size_t n_cont, double score)
{
    size_t nt = n_prefix + n_cont;
    if (c->cap == 0 || nt > BG__LM_CACHE_TOKENS)
        return;
    uint64_t h = hash_of(c, prefix, n_prefix, cont, n_cont);
    pthread_mutex_lock(&c->mu);
    entry **l;
    entry *e = find(c, h, prefix, n_prefix, cont, n_cont, &l);
    if (e) {
        e->score = score;
        unlink_lru(c, e);
        push_front(c, e);
    } else if ((e = malloc(sizeof *e + nt * sizeof(int32_t)))) {
        *e = (entry){
            .chain = NULL, .hash = h, .n_prefix = n_prefix, .n_cont = n_cont, .score = score};
        memcpy(e->tok, prefix, n_prefix * sizeof *prefix);
        memcpy(e->tok + n_prefix, cont, n_cont * sizeof *cont);
        *l = e;
        push_front(c, e);
        c->n++;
        c->tokens += nt;
        while (c->n > c->cap || c->tokens > BG__LM_CACHE_TOKENS)
            evict(c, c->tail); /* never e: it is the most recent and fits alone */
    }
    pthread_mutex_unlock(&c->mu);
}

void bg__lm_cache_stats(bg__lm_cache *c, size_t *entries, uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&c->mu);
    *entries = c->n;
    *hits = c->hits;
    *misses = c->misses;
    pthread_mutex_unlock(&c->mu);
}
