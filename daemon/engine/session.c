/*
 * session.c — the session table: lookup, reference counts, memory
 * accounting, observation history, eviction of idle posteriors.
 * States, locking and the eviction design: session.h.
 */
#include "engine/session.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_siphash.h"
#include "engine/observation.h"

#define BUCKETS 4096
/* Eviction gives up after this many candidates that turned busy between
 * the choice (table mutex) and the try-lock, or waits for another call's
 * eviction in progress: the caller gets BG_ELIMIT. */
#define EVICT_TRIES 64

struct bg__session_table {
    pthread_mutex_t mu;
    bg__table_limits lim;
    bg__quota *quota; /* lim.quota */
    uint8_t key[BG_SIPHASH_KEY_BYTES];
    bg__session *buckets[BUCKETS];
    size_t sessions;
    uint64_t observations;
    size_t bytes;
    /* Sessions holding a posterior, most recently used first. */
    bg__session *newest, *oldest;
    size_t resident;
    uint64_t evictions;
    int evicting; /* calls between choosing a victim and releasing it */
};

/* SipHash-2-4 of guard, a 0xff separator (no byte of a C string: ("ab","c")
 * and ("a","bc") differ) and id, keyed with the table's random key. One
 * call over a stack copy when the key is short (49 ns against 74 ns for
 * the incremental form at 31 bytes), incremental otherwise. */
static uint64_t key_hash(const bg__session_table *t, const char *guard, const char *id)
{
    size_t lg = strlen(guard), li = strlen(id);
    char buf[256];
    if (lg + li + 1 <= sizeof buf) {
        memcpy(buf, guard, lg);
        buf[lg] = (char)0xff;
        memcpy(buf + lg + 1, id, li);
        return bg_siphash24(t->key, buf, lg + li + 1);
    }
    bg_siphash h;
    bg_siphash_init(&h, t->key);
    bg_siphash_update(&h, guard, lg);
    bg_siphash_update(&h, "\xff", 1);
    bg_siphash_update(&h, id, li);
    return bg_siphash_final(&h);
}

int bg__table_create(const bg__table_limits *lim, bg__session_table **out, bg_err *err)
{
    bg__session_table *t = calloc(1, sizeof *t);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory");
    if (bg_siphash_key_random(t->key) != BG_OK) {
        free(t);
        return bg_err_set(err, BG_EIO, "engine: getrandom failed for the session table's key");
    }
    pthread_mutex_init(&t->mu, NULL);
    t->lim = *lim;
    t->quota = lim->quota;
    *out = t;
    return BG_OK;
}

/* ---------------------------------------------- LRU of resident sessions */

static void lru_unlink(bg__session_table *t, bg__session *s)
{
    if (s->newer)
        s->newer->older = s->older;
    else
        t->newest = s->older;
    if (s->older)
        s->older->newer = s->newer;
    else
        t->oldest = s->newer;
    s->newer = s->older = NULL;
}

static void lru_push(bg__session_table *t, bg__session *s)
{
    s->older = t->newest;
    s->newer = NULL;
    if (t->newest)
        t->newest->newer = s;
    t->newest = s;
    if (!t->oldest)
        t->oldest = s;
}

static void session_free(bg__session *s)
{
    while (s->states) {
        bg__pstate *st = s->states;
        s->states = st->next;
        bg__posterior_close(&st->post);
        free(st);
    }
    for (size_t i = 0; i < s->n_obs; i++)
        free(s->blocks[i]);
    free(s->blocks);
    free(s->hist);
    free(s->lsn);
    pthread_rwlock_destroy(&s->lock);
    free(s->guard);
    free(s->id);
    free(s->owner);
    free(s);
}

void bg__table_destroy(bg__session_table *t)
{
    if (!t)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        while (t->buckets[b]) {
            bg__session *s = t->buckets[b];
            t->buckets[b] = s->next;
            session_free(s);
        }
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Bytes a session costs before any observation or posterior. */
static size_t session_base_bytes(const bg__session *s)
{
    return sizeof *s + strlen(s->guard) + strlen(s->id) + 2 + (s->owner ? strlen(s->owner) + 1 : 0);
}

static bg__session *session_new(const char *guard, const char *id, const char *owner)
{
    bg__session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->guard = strdup(guard);
    s->id = strdup(id);
    s->owner = owner ? strdup(owner) : NULL;
    if (!s->guard || !s->id || (owner && !s->owner)) {
        free(s->guard);
        free(s->id);
        free(s->owner);
        free(s);
        return NULL;
    }
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* Evaluates read; an Observe must not starve under them. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &a);
    pthread_rwlockattr_destroy(&a);
    return s;
}

int bg__table_get(bg__session_table *t, const char *guard, const char *id, int create,
                  const char *owner, bg__session **out, bg_err *err)
{
    uint64_t h = key_hash(t, guard, id);
    size_t b = (size_t)(h % BUCKETS);
    int rc = BG_OK;
    pthread_mutex_lock(&t->mu);
    bg__session *s = t->buckets[b];
    while (s && !(s->hash == h && strcmp(s->guard, guard) == 0 && strcmp(s->id, id) == 0))
        s = s->next;
    if (!s && !create) {
        rc = bg_err_set(err, BG_ENOTFOUND, "policy %s: no session \"%s\"", guard, id);
    } else if (!s && owner && t->quota &&
               (rc = bg__quota_session_add(t->quota, owner, err)) != BG_OK) {
        bg_err_prefix(err, "policy %s: session \"%s\" not started: ", guard, id);
    } else if (!s) {
        s = session_new(guard, id, t->quota ? owner : NULL);
        if (!s) {
            if (owner && t->quota)
                bg__quota_session_sub(t->quota, owner);
            rc = bg_err_set(err, BG_ENOMEM, "engine: out of memory for a session");
        } else {
            s->hash = h;
            s->in_table = 1;
            s->next = t->buckets[b];
            t->buckets[b] = s;
            t->sessions++;
            /* Counted, never refused: the bound is on what eviction can
             * free (posteriors); sessions per identity are the quota's. */
            s->bytes = session_base_bytes(s);
            t->bytes += s->bytes;
        }
    } else if (s->resident && t->newest != s) {
        lru_unlink(t, s);
        lru_push(t, s);
    }
    if (s)
        s->refs++;
    pthread_mutex_unlock(&t->mu);
    *out = rc == BG_OK ? s : NULL;
    return rc;
}

void bg__table_release(bg__session_table *t, bg__session *s)
{
    pthread_mutex_lock(&t->mu);
    int last = --s->refs == 0 && !s->in_table;
    pthread_mutex_unlock(&t->mu);
    if (last)
        session_free(s);
}

int bg__table_each(bg__session_table *t, int (*fn)(void *ctx, bg__session *s), void *ctx)
{
    pthread_mutex_lock(&t->mu);
    size_t n = 0, cap = t->sessions;
    bg__session **all = malloc((cap ? cap : 1) * sizeof *all);
    for (size_t b = 0; all && b < BUCKETS; b++)
        for (bg__session *s = t->buckets[b]; s && n < cap; s = s->next) {
            s->refs++;
            all[n++] = s;
        }
    pthread_mutex_unlock(&t->mu);
    if (!all)
        return BG_ENOMEM;
    int rc = BG_OK;
    for (size_t i = 0; i < n; i++) {
        if (rc == BG_OK)
            rc = fn(ctx, all[i]);
        bg__table_release(t, all[i]);
    }
    free(all);
    return rc;
}

int bg__table_remove(bg__session_table *t, const char *guard, const char *id)
{
    uint64_t h = key_hash(t, guard, id);
    size_t b = (size_t)(h % BUCKETS);
    pthread_mutex_lock(&t->mu);
    bg__session **pp = &t->buckets[b];
    while (*pp &&
           !((*pp)->hash == h && strcmp((*pp)->guard, guard) == 0 && strcmp((*pp)->id, id) == 0))
        pp = &(*pp)->next;
    bg__session *s = *pp;
    int last = 0;
    if (s) {
        *pp = s->next;
        s->in_table = 0;
        if (s->resident) {
            lru_unlink(t, s);
            t->resident--;
            s->resident = 0;
        }
        if (s->owner && t->quota)
            bg__quota_session_sub(t->quota, s->owner);
        t->sessions--;
        t->bytes -= s->bytes;
        t->observations -= s->n_obs;
        last = s->refs == 0;
    }
    pthread_mutex_unlock(&t->mu);
    if (last)
        session_free(s);
    return s ? BG_OK : BG_ENOTFOUND;
}

/* The least recently used resident session other than self that no call
 * uses (refs == 0), with a new reference; NULL when none. mu held. */
static bg__session *pick_victim(bg__session_table *t, const bg__session *self)
{
    for (bg__session *v = t->oldest; v; v = v->newer)
        if (v != self && v->refs == 0) {
            v->refs++;
            return v;
        }
    return NULL;
}

/* Drop every posterior of v if no call holds its lock (try-lock: the caller
 * holds its own session's lock, and no call waits for two). 1 if evicted. */
static int evict(bg__session_table *t, bg__session *v)
{
    if (pthread_rwlock_trywrlock(&v->lock) != 0)
        return 0;
    while (v->states)
        bg__session_drop_state(t, v, v->states);
    pthread_rwlock_unlock(&v->lock);
    pthread_mutex_lock(&t->mu);
    t->evictions++;
    pthread_mutex_unlock(&t->mu);
    return 1;
}

/* Reserve bytes for s (and, for a posterior, a resident place), evicting
 * the posteriors of idle sessions, least recently used first, while a
 * bound is in the way. */
static int reserve(bg__session_table *t, bg__session *s, size_t bytes, int force, int state,
                   const char *what, bg_err *err)
{
    int rc = BG_OK;
    for (int tries = 0;;) {
        pthread_mutex_lock(&t->mu);
        int over_bytes = t->bytes > t->lim.max_bytes || bytes > t->lim.max_bytes - t->bytes;
        int over_count = state && !s->resident && t->resident >= t->lim.max_sessions;
        bg__session *v = NULL;
        if (!force && (over_bytes || over_count) && tries < EVICT_TRIES)
            v = pick_victim(t, s);
        if (!force && (over_bytes || over_count) && !v && t->evicting > 0 && tries < EVICT_TRIES) {
            /* Another call holds the only idle one while it evicts: what it
             * frees may be enough, or the next victim may be idle by then. */
            pthread_mutex_unlock(&t->mu);
            tries++;
            sched_yield();
            continue;
        }
        if (!force && (over_bytes || over_count) && !v) {
            if (over_bytes)
                rc = bg_err_set(err, BG_ELIMIT,
                                "engine: memory limit reached (max_bytes=%zu, in use %zu, %s "
                                "needs %zu more, no idle posterior left to evict); policy %s "
                                "session \"%s\" — raise the limit or end sessions",
                                t->lim.max_bytes, t->bytes, what, bytes, s->guard, s->id);
            else
                rc = bg_err_set(err, BG_ELIMIT,
                                "engine: session limit reached (max_sessions=%zu posteriors in "
                                "memory, every one in use by a call); policy %s session \"%s\" "
                                "— retry, or raise the limit",
                                t->lim.max_sessions, s->guard, s->id);
            pthread_mutex_unlock(&t->mu);
            return rc;
        }
        if (!v) {
            t->bytes += bytes;
            if (s->in_table) {
                s->bytes += bytes;
                if (state && s->n_states++ == 0) {
                    s->resident = 1;
                    t->resident++;
                    lru_push(t, s);
                }
            } else {
                t->bytes -= bytes; /* a removed session is no longer counted */
            }
            pthread_mutex_unlock(&t->mu);
            return BG_OK;
        }
        t->evicting++;
        pthread_mutex_unlock(&t->mu);
        if (!evict(t, v))
            tries++;
        pthread_mutex_lock(&t->mu);
        t->evicting--;
        pthread_mutex_unlock(&t->mu);
        bg__table_release(t, v);
    }
}

int bg__table_reserve(bg__session_table *t, bg__session *s, size_t bytes, int force,
                      const char *what, bg_err *err)
{
    return reserve(t, s, bytes, force, 0, what, err);
}

int bg__table_state_reserve(bg__session_table *t, bg__session *s, size_t bytes, bg_err *err)
{
    return reserve(t, s, bytes, 0, 1, "a posterior", err);
}

void bg__table_state_unreserve(bg__session_table *t, bg__session *s, size_t bytes)
{
    pthread_mutex_lock(&t->mu);
    if (s->in_table) {
        t->bytes -= bytes;
        s->bytes -= bytes;
        if (--s->n_states == 0 && s->resident) {
            lru_unlink(t, s);
            s->resident = 0;
            t->resident--;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void bg__table_unreserve(bg__session_table *t, bg__session *s, size_t bytes)
{
    pthread_mutex_lock(&t->mu);
    if (s->in_table) {
        t->bytes -= bytes;
        s->bytes -= bytes;
    }
    pthread_mutex_unlock(&t->mu);
}

int bg__session_append(bg__session_table *t, bg__session *s, const bg_observation *obs,
                       uint64_t lsn, int force, bg_err *err)
{
    size_t sz = bg__obs_size(obs);
    int rc = bg__table_reserve(t, s, sz, force, "an observation", err);
    if (rc != BG_OK)
        return rc;
    if (s->n_obs == s->cap_obs) {
        size_t cap = s->cap_obs ? s->cap_obs * 2 : 16;
        bg_observation *h = realloc(s->hist, cap * sizeof *h);
        if (h)
            s->hist = h;
        void **bl = h ? realloc(s->blocks, cap * sizeof *bl) : NULL;
        if (bl)
            s->blocks = bl;
        uint64_t *ln = bl ? realloc(s->lsn, cap * sizeof *ln) : NULL;
        if (ln)
            s->lsn = ln;
        if (!h || !bl || !ln) {
            bg__table_unreserve(t, s, sz);
            return bg_err_set(err, BG_ENOMEM, "engine: out of memory for observations");
        }
        s->cap_obs = cap;
    }
    bg_observation *c = bg__obs_dup(obs);
    if (!c) {
        bg__table_unreserve(t, s, sz);
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory for an observation");
    }
    s->blocks[s->n_obs] = c;
    s->hist[s->n_obs] = *c;
    s->lsn[s->n_obs] = lsn;
    s->n_obs++;
    pthread_mutex_lock(&t->mu);
    if (s->in_table)
        t->observations++;
    pthread_mutex_unlock(&t->mu);
    return BG_OK;
}

void bg__session_move(bg__session *s, size_t from, size_t to)
{
    if (from == to)
        return;
    bg_observation h = s->hist[from];
    void *b = s->blocks[from];
    uint64_t l = s->lsn[from];
    memmove(&s->hist[to + 1], &s->hist[to], (from - to) * sizeof *s->hist);
    memmove(&s->blocks[to + 1], &s->blocks[to], (from - to) * sizeof *s->blocks);
    memmove(&s->lsn[to + 1], &s->lsn[to], (from - to) * sizeof *s->lsn);
    s->hist[to] = h;
    s->blocks[to] = b;
    s->lsn[to] = l;
}

void bg__session_pop(bg__session_table *t, bg__session *s)
{
    if (s->n_obs == 0)
        return;
    s->n_obs--;
    if (s->settled > s->n_obs)
        s->settled = s->n_obs;
    bg__table_unreserve(t, s, bg__obs_size(&s->hist[s->n_obs]));
    free(s->blocks[s->n_obs]);
    pthread_mutex_lock(&t->mu);
    if (s->in_table)
        t->observations--;
    pthread_mutex_unlock(&t->mu);
}

void bg__session_drop_state(bg__session_table *t, bg__session *s, bg__pstate *st)
{
    bg__pstate **pp = &s->states;
    while (*pp && *pp != st)
        pp = &(*pp)->next;
    if (*pp)
        *pp = st->next;
    bg__table_state_unreserve(t, s, bg__posterior_bytes(st->post.n) + sizeof *st);
    bg__posterior_close(&st->post);
    free(st);
}

void bg__table_stats_get(bg__session_table *t, bg__table_stats *out)
{
    pthread_mutex_lock(&t->mu);
    out->sessions = t->sessions;
    out->observations = t->observations;
    out->bytes = t->bytes;
    out->resident = t->resident;
    out->evictions = t->evictions;
    pthread_mutex_unlock(&t->mu);
}
