/*
 * quota.c — per-identity session counts and observation token buckets.
 * Contract, invariants and threads: quota.h.
 */
#include "engine/quota.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_siphash.h"

#define BUCKETS 4096

typedef struct entry {
    char *who;
    uint64_t hash;
    size_t sessions;
    double tokens;
    uint64_t refill_ns; /* when tokens was last brought up to date */
    struct entry *next; /* bucket chain */
    struct entry *newer, *older;
} entry;

struct bg__quota {
    pthread_mutex_t mu;
    bg__quota_limits lim;
    uint8_t key[BG_SIPHASH_KEY_BYTES];
    entry *buckets[BUCKETS];
    entry *newest, *oldest;
    size_t count;
};

int bg__quota_create(const bg__quota_limits *lim, const uint8_t *key, bg__quota **out, bg_err *err)
{
    bg__quota *q = calloc(1, sizeof *q);
    if (!q)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory");
    pthread_mutex_init(&q->mu, NULL);
    q->lim = *lim;
    if (q->lim.rate > 0 && q->lim.burst < 1)
        q->lim.burst = 1;
    memcpy(q->key, key, sizeof q->key);
    *out = q;
    return BG_OK;
}

void bg__quota_destroy(bg__quota *q)
{
    if (!q)
        return;
    for (entry *e = q->newest, *n; e; e = n) {
        n = e->older;
        free(e->who);
        free(e);
    }
    pthread_mutex_destroy(&q->mu);
    free(q);
}

static void unlink_lru(bg__quota *q, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        q->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        q->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(bg__quota *q, entry *e)
{
    e->older = q->newest;
    e->newer = NULL;
    if (q->newest)
        q->newest->newer = e;
    q->newest = e;
    if (!q->oldest)
        q->oldest = e;
}

static void drop(bg__quota *q, entry *e)
{
    entry **pp = &q->buckets[e->hash % BUCKETS];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    unlink_lru(q, e);
    q->count--;
    free(e->who);
    free(e);
}

/* The entry of who, made (and room made) when create; most recent now.
 * NULL: absent (create 0), out of memory or full (*full set). mu held. */
static entry *find(bg__quota *q, const char *who, int create, uint64_t now_ns, int *full)
{
    uint64_t h = bg_siphash24(q->key, who, strlen(who));
    entry *e = q->buckets[h % BUCKETS];
    while (e && !(e->hash == h && strcmp(e->who, who) == 0))
        e = e->next;
    if (e) {
        unlink_lru(q, e);
        push_newest(q, e);
        return e;
    }
    if (!create)
        return NULL;
    if (q->count >= BG_QUOTA_MAX_IDENTITIES) {
        entry *v = q->oldest;
        while (v && v->sessions > 0)
            v = v->newer;
        if (!v) {
            *full = 1;
            return NULL;
        }
        drop(q, v);
    }
    e = calloc(1, sizeof *e);
    if (e && !(e->who = strdup(who))) {
        free(e);
        e = NULL;
    }
    if (!e)
        return NULL;
    e->hash = h;
    e->tokens = q->lim.burst;
    e->refill_ns = now_ns;
    e->next = q->buckets[h % BUCKETS];
    q->buckets[h % BUCKETS] = e;
    push_newest(q, e);
    q->count++;
    return e;
}

static int no_entry(int full, const char *who, bg_err *err)
{
    if (full)
        return bg_err_set(err, BG_ELIMIT,
                          "engine: %d identities own sessions already; identity \"%s\" cannot "
                          "start one — end sessions of other identities",
                          BG_QUOTA_MAX_IDENTITIES, who);
    return bg_err_set(err, BG_ENOMEM, "engine: out of memory for identity \"%s\"", who);
}

int bg__quota_session_add(bg__quota *q, const char *who, bg_err *err)
{
    int rc = BG_OK, full = 0;
    pthread_mutex_lock(&q->mu);
    entry *e = find(q, who, 1, 0, &full);
    if (!e)
        rc = no_entry(full, who, err);
    else if (q->lim.max_sessions && e->sessions >= q->lim.max_sessions)
        rc = bg_err_set(err, BG_ELIMIT,
                        "identity \"%s\" has %zu sessions, its limit "
                        "(--max-sessions-per-identity=%zu): reuse a session key, or raise the "
                        "limit",
                        who, e->sessions, q->lim.max_sessions);
    else
        e->sessions++;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void bg__quota_session_sub(bg__quota *q, const char *who)
{
    pthread_mutex_lock(&q->mu);
    int full = 0;
    entry *e = find(q, who, 0, 0, &full);
    if (e && e->sessions > 0)
        e->sessions--;
    pthread_mutex_unlock(&q->mu);
}

size_t bg__quota_sessions(bg__quota *q, const char *who)
{
    pthread_mutex_lock(&q->mu);
    int full = 0;
    entry *e = find(q, who, 0, 0, &full);
    size_t n = e ? e->sessions : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int bg__quota_take(bg__quota *q, const char *who, uint64_t now_ns, bg_err *err)
{
    if (q->lim.rate <= 0)
        return BG_OK;
    int rc = BG_OK, full = 0;
    pthread_mutex_lock(&q->mu);
    entry *e = find(q, who, 1, now_ns, &full);
    if (!e) {
        rc = no_entry(full, who, err);
    } else {
        if (now_ns > e->refill_ns) {
            e->tokens += (double)(now_ns - e->refill_ns) * 1e-9 * q->lim.rate;
            if (e->tokens > q->lim.burst)
                e->tokens = q->lim.burst;
        }
        e->refill_ns = now_ns;
        if (e->tokens >= 1.0)
            e->tokens -= 1.0;
        else
            rc = bg_err_set(err, BG_ELIMIT,
                            "identity \"%s\" sends observations faster than its limit "
                            "(--max-observe-rate=%g per second, --observe-burst=%g): slow "
                            "down and retry, or raise the limit",
                            who, q->lim.rate, q->lim.burst);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}
