/*
 * session.c — the session table: lookup, reference counts, memory
 * accounting, observation history. States and locking: session.h.
 */
#include "engine/session.h"

#include <stdlib.h>
#include <string.h>

#include "engine/observation.h"

#define BUCKETS 4096

struct bg__session_table {
    pthread_mutex_t mu;
    bg__table_limits lim;
    bg__session *buckets[BUCKETS];
    size_t sessions;
    uint64_t observations;
    size_t bytes;
};

static uint64_t fnv(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","c") != ("a","bc") */
    for (const char *p = b; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

int bg__table_create(const bg__table_limits *lim, bg__session_table **out, bg_err *err)
{
    bg__session_table *t = calloc(1, sizeof *t);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->lim = *lim;
    *out = t;
    return BG_OK;
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
    pthread_rwlock_destroy(&s->lock);
    free(s->guard);
    free(s->id);
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

int bg__table_get(bg__session_table *t, const char *guard, const char *id, int create, int force,
                  bg__session **out, bg_err *err)
{
    uint64_t h = fnv(guard, id);
    size_t b = (size_t)(h % BUCKETS);
    int rc = BG_OK;
    pthread_mutex_lock(&t->mu);
    bg__session *s = t->buckets[b];
    while (s && !(s->hash == h && strcmp(s->guard, guard) == 0 && strcmp(s->id, id) == 0))
        s = s->next;
    if (!s && !create) {
        rc = bg_err_set(err, BG_ENOTFOUND, "policy %s: no session \"%s\"", guard, id);
    } else if (!s && !force && t->sessions >= t->lim.max_sessions) {
        rc = bg_err_set(err, BG_ELIMIT,
                        "engine: session limit reached (max_sessions=%zu); policy %s cannot "
                        "start session \"%s\" — raise the limit or use fewer session keys",
                        t->lim.max_sessions, guard, id);
    } else if (!s) {
        s = calloc(1, sizeof *s);
        if (s) {
            s->guard = strdup(guard);
            s->id = strdup(id);
        }
        if (!s || !s->guard || !s->id) {
            if (s) {
                free(s->guard);
                free(s->id);
                free(s);
            }
            s = NULL;
            rc = bg_err_set(err, BG_ENOMEM, "engine: out of memory for a session");
        } else {
            s->hash = h;
            pthread_rwlockattr_t a;
            pthread_rwlockattr_init(&a);
            /* Evaluates read; an Observe must not starve under them. */
            pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
            pthread_rwlock_init(&s->lock, &a);
            pthread_rwlockattr_destroy(&a);
            s->in_table = 1;
            s->next = t->buckets[b];
            t->buckets[b] = s;
            t->sessions++;
        }
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

int bg__table_remove(bg__session_table *t, const char *guard, const char *id)
{
    uint64_t h = fnv(guard, id);
    size_t b = (size_t)(h % BUCKETS);
    pthread_mutex_lock(&t->mu);
    bg__session **pp = &t->buckets[b];
    while (*pp && !((*pp)->hash == h && strcmp((*pp)->guard, guard) == 0 &&
                    strcmp((*pp)->id, id) == 0))
        pp = &(*pp)->next;
    bg__session *s = *pp;
    int last = 0;
    if (s) {
        *pp = s->next;
        s->in_table = 0;
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

int bg__table_reserve(bg__session_table *t, bg__session *s, size_t bytes, int force,
                      const char *what, bg_err *err)
{
    int rc = BG_OK;
    pthread_mutex_lock(&t->mu);
    if (!force && (t->bytes > t->lim.max_bytes || bytes > t->lim.max_bytes - t->bytes)) {
        rc = bg_err_set(err, BG_ELIMIT,
                        "engine: memory limit reached (max_bytes=%zu, in use %zu, %s needs %zu "
                        "more); policy %s session \"%s\" — raise the limit or end sessions",
                        t->lim.max_bytes, t->bytes, what, bytes, s->guard, s->id);
    } else {
        t->bytes += bytes;
        if (s->in_table)
            s->bytes += bytes;
        else
            t->bytes -= bytes; /* a removed session is no longer counted */
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
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
                       int force, bg_err *err)
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
        if (!h || !bl) {
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
    s->n_obs++;
    pthread_mutex_lock(&t->mu);
    if (s->in_table)
        t->observations++;
    pthread_mutex_unlock(&t->mu);
    return BG_OK;
}

void bg__session_pop(bg__session_table *t, bg__session *s)
{
    if (s->n_obs == 0)
        return;
    s->n_obs--;
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
    bg__table_unreserve(t, s, bg__posterior_bytes(st->post.n) + sizeof *st);
    bg__posterior_close(&st->post);
    free(st);
}

void bg__table_stats_get(bg__session_table *t, bg__table_stats *out)
{
    pthread_mutex_lock(&t->mu);
    out->sessions = t->sessions;
    out->observations = t->observations;
    out->bytes = t->bytes;
    pthread_mutex_unlock(&t->mu);
}
