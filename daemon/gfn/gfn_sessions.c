/*
 * gfn_sessions.c — the samplers of a guard's sessions (gfn_sessions.h).
 */
#include <stdlib.h>
#include <string.h>

#include "gfn_sessions.h"

struct bg__gfn_table {
    pthread_mutex_t mu;                   /* guards the list and every entry's refs, last_use */
    atomic_int refs;                      /* slots holding the table */
    void (*drop)(void *inst, void *keep); /* bg_guard.sampler_drop, for own instances */
    bg__gfn_ss *list;
    size_t n; /* own entries (session samplers), what max bounds */
    uint64_t clock;
};

/* Whether g makes a sampler per session (else its one instance is shared). */
static int per_session(const bg_guard *g)
{
    return g->sampler_new && g->sampler_drop;
}

static void entry_free(bg__gfn_table *t, bg__gfn_ss *e)
{
    if (e->own) {
        t->drop(e->inst, e->keep);
        t->n--;
    }
    pthread_rwlock_destroy(&e->lock);
    free(e->session);
    free(e);
}

static void table_ref(void *vt)
{
    atomic_fetch_add(&((bg__gfn_table *)vt)->refs, 1);
}

/* A slot lets go of the table: the last one destroys it. */
static void table_unref(void *vt)
{
    bg__gfn_table *t = vt;
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (bg__gfn_ss *e = t->list, *next; e; e = next) {
        next = e->next;
        entry_free(t, e);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* 1 when a should go before b: untrained first (nothing is lost), then the
 * least recently used. */
static int evict_before(const bg__gfn_ss *a, const bg__gfn_ss *b)
{
    int ta = atomic_load(&a->trained), tb = atomic_load(&b->trained);
    return ta != tb ? ta < tb : a->last_use < b->last_use;
}

/* Destroys idle session samplers while there are more than max. */
static void evict(bg__gfn_table *t, size_t max)
{
    while (t->n > max) {
        bg__gfn_ss **victim = NULL;
        for (bg__gfn_ss **pp = &t->list; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (*pp)->own && (!victim || evict_before(*pp, *victim)))
                victim = pp;
        if (!victim)
            return; /* all in use: over max until they are released */
        bg__gfn_ss *e = *victim;
        *victim = e->next;
        entry_free(t, e);
    }
}

/* A table entry for key; own: a new instance from sampler_new, else the
 * guard's shared sampler_inst. */
static int entry_new(bg__gfn_table *t, const bg_guard *g, const char *key, int own,
                     bg__gfn_ss **out, bg_err *err)
{
    bg__gfn_ss *e = calloc(1, sizeof *e);
    if (!e || !(e->session = strdup(key))) {
        free(e);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for a session sampler",
                          g->name);
    }
    e->table = t;
    if (own) {
        int rc = g->sampler_new(g->sampler_ctx, &e->inst, &e->keep);
        if (rc != BG_OK) {
            free(e->session);
            free(e);
            return bg_err_set(err, rc == BG_ENOMEM ? BG_ENOMEM : BG_EINTERNAL,
                              "policy %s: sampler %s: cannot create a sampler for session "
                              "'%s' (%s)",
                              g->name, g->sampler_name ? g->sampler_name : "?", key,
                              bg_err_name(rc));
        }
        e->own = 1;
    } else {
        e->inst = g->sampler_inst;
    }
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&e->lock, &a);
    pthread_rwlockattr_destroy(&a);
    atomic_init(&e->trained, 0);
    *out = e;
    return BG_OK;
}

/* The slot's table, created on first use. */
static bg__gfn_table *table_of(bg_sampler_slot *slot, const bg_guard *g)
{
    pthread_mutex_lock(&slot->mu);
    bg__gfn_table *t = slot->state;
    if (!t && (t = calloc(1, sizeof *t)) != NULL) {
        pthread_mutex_init(&t->mu, NULL);
        atomic_init(&t->refs, 1);
        t->drop = g->sampler_drop;
        slot->state = t;
        slot->state_free = table_unref;
        slot->state_ref = table_ref;
    }
    pthread_mutex_unlock(&slot->mu);
    return t;
}

int bg__gfn_ss_get(bg_sampler_slot *slot, const bg_guard *g, const char *session, size_t max,
                   bg__gfn_ss **out, bg_err *err)
{
    *out = NULL;
    bg__gfn_table *t = table_of(slot, g);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory", g->name);
    int own = per_session(g) && session;
    const char *key = own ? session : ""; /* "": the shared one */
    int rc = BG_OK;
    pthread_mutex_lock(&t->mu);
    bg__gfn_ss *e = t->list;
    while (e && (e->own != own || strcmp(e->session, key) != 0)) /* a session "" is no shared one */
        e = e->next;
    if (!e && (rc = entry_new(t, g, key, own, &e, err)) == BG_OK) {
        e->next = t->list;
        t->list = e;
        t->n += e->own;
    }
    if (rc == BG_OK) {
        e->refs++;
        e->last_use = ++t->clock;
        evict(t, max);
        *out = e;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void bg__gfn_ss_ref(bg__gfn_ss *e)
{
    pthread_mutex_lock(&e->table->mu);
    e->refs++;
    pthread_mutex_unlock(&e->table->mu);
}

void bg__gfn_ss_put(bg__gfn_ss *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->table->mu);
    e->refs--;
    pthread_mutex_unlock(&e->table->mu);
}

/* The slot's table, NULL before first use. */
static bg__gfn_table *table_peek(bg_sampler_slot *slot)
{
    pthread_mutex_lock(&slot->mu);
    bg__gfn_table *t = slot->state;
    pthread_mutex_unlock(&slot->mu);
    return t;
}

size_t bg__gfn_ss_count(bg_sampler_slot *slot)
{
    bg__gfn_table *t = table_peek(slot);
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int bg__gfn_ss_trained(bg_sampler_slot *slot, const char *session)
{
    bg__gfn_table *t = table_peek(slot);
    if (!t)
        return -1;
    pthread_mutex_lock(&t->mu);
    bg__gfn_ss *e = t->list;
    while (e && strcmp(e->session, session) != 0)
        e = e->next;
    int r = e ? atomic_load(&e->trained) : -1;
    pthread_mutex_unlock(&t->mu);
    return r;
}
