/*
 * sampled_sessions.c — a guard instance's sampled state (bg_sampled,
 * sampled.h): its own sampler, and the samplers of its sessions in a table
 * shared by reference with the instances a reload hands it to. Each
 * sampler keeps its last draw of candidates (bg__cands, filled by
 * sampled.c's evaluate), released here with the sampler.
 *
 * A session sampler is made by the guard's factory (bg_guard.
 * session_sampler) and destroyed by the factory's destroy, remembered in
 * the entry, so it may outlive the policy set that made it. Entries in use
 * (an Evaluate sampling, a training job queued or running) are never
 * destroyed; the table may then exceed max for as long as they are.
 *
 * Threads: get/put/evict under the table's mutex; the trainer's mutex may
 * be held when the table's is taken (schedule refs a sampler), never the
 * other way round.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "engine/sampled_priv.h"

struct bg__sampler_table {
    pthread_mutex_t mu; /* guards the list and every entry's refs, last_use */
    atomic_int refs;    /* bg_sampled objects holding the table */
    bg__sampler *list;
    size_t n; /* session samplers: what max bounds */
    uint64_t clock;
};

void bg__assert_sampler_state(const bg__sampler *e, int has_job)
{
    int st = atomic_load(&e->state);
    BG_ASSERT(st >= 0 && st <= (BG__SAMPLER_TRAINED | BG__SAMPLER_JOB),
              "sampler of session '%s': state word %d", e->session ? e->session : "", st);
    BG_ASSERT(((st & BG__SAMPLER_JOB) != 0) == (has_job != 0),
              "sampler of session '%s': state %d says %s job, the trainer has %s",
              e->session ? e->session : "", st, st & BG__SAMPLER_JOB ? "a" : "no",
              has_job ? "one" : "none");
}

static void sampler_init(bg__sampler *e)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&e->lock, &a);
    pthread_rwlockattr_destroy(&a);
    atomic_init(&e->state, BG_SAMPLER_UNTRAINED);
    atomic_init(&e->gen, 0);
    pthread_mutex_init(&e->cands_mu, NULL);
    e->cands = NULL;
    e->arch = NULL;
    bg__ctx_table_init(&e->ctx);
    e->fit = (bg__fit){BG_REWARD_UNVERSIONED, 0, 0};
}

void bg__cands_unref(bg__cands *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        bg__lpcache_close(&c->lpc);
        free(c);
    }
}

static void sampler_close(bg__sampler *e)
{
    bg__cands_unref(e->cands);
    bg__archive_unref(e->arch);
    bg__ctx_table_close(&e->ctx);
    pthread_mutex_destroy(&e->cands_mu);
    pthread_rwlock_destroy(&e->lock);
}

static void entry_free(bg__sampler_table *t, bg__sampler *e)
{
    bg__assert_sampler_state(e, 0); /* invariant 2: no job without a reference */
    e->destroy(e->inst, e->keep);
    t->n--;
    sampler_close(e);
    free(e->session);
    free(e);
}

static bg__sampler_table *table_create(void)
{
    bg__sampler_table *t = calloc(1, sizeof *t);
    if (t) {
        pthread_mutex_init(&t->mu, NULL);
        atomic_init(&t->refs, 1);
    }
    return t;
}

/* A bg_sampled lets go of the table: the last one destroys it. */
static void table_unref(bg__sampler_table *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (bg__sampler *e = t->list, *next; e; e = next) {
        next = e->next;
        entry_free(t, e);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* 1 when a should go before b: untrained first (nothing is lost), then the
 * least recently used. */
static int evict_before(const bg__sampler *a, const bg__sampler *b)
{
    int ta = atomic_load(&a->state) & BG__SAMPLER_TRAINED;
    int tb = atomic_load(&b->state) & BG__SAMPLER_TRAINED;
    return ta != tb ? ta < tb : a->last_use < b->last_use;
}

/* Transition evict: destroys idle session samplers while there are more
 * than max. */
static void evict(bg__sampler_table *t, size_t max)
{
    while (t->n > max) {
        bg__sampler **victim = NULL;
        for (bg__sampler **pp = &t->list; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (!victim || evict_before(*pp, *victim)))
                victim = pp;
        if (!victim)
            return; /* all in use: over max until they are released */
        bg__sampler *e = *victim;
        *victim = e->next;
        entry_free(t, e);
    }
}

/* Transition get: a new session sampler from the guard's factory. */
static int entry_new(bg__sampler_table *t, const bg_guard *g, const char *session,
                     bg__sampler **out, bg_err *err)
{
    bg__sampler *e = calloc(1, sizeof *e);
    if (!e || !(e->session = strdup(session))) {
        free(e);
        return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for a session sampler",
                          g->name);
    }
    int rc = g->session_sampler.create(g->session_sampler.ctx, &e->inst, &e->keep);
    if (rc != BG_OK) {
        free(e->session);
        free(e);
        return bg_err_set(err, rc == BG_ENOMEM ? BG_ENOMEM : BG_EINTERNAL,
                          "policy %s: sampler %s: cannot create a sampler for session '%s' (%s)",
                          g->name, g->sampler_name ? g->sampler_name : "?", session,
                          bg_err_name(rc));
    }
    e->table = t;
    e->destroy = g->session_sampler.destroy;
    sampler_init(e);
    bg__assert_sampler_state(e, 0);
    *out = e;
    return BG_OK;
}

int bg__sampler_get(bg_sampled *sd, const bg_guard *g, const char *session, size_t max,
                    bg__sampler **out, bg_err *err)
{
    *out = NULL;
    if (!session || !g->per_session) {
        *out = &sd->self; /* lives as long as the guard: no reference counted */
        return BG_OK;
    }
    bg__sampler_table *t = sd->sessions;
    int rc = BG_OK;
    pthread_mutex_lock(&t->mu);
    bg__sampler *e = t->list;
    while (e && strcmp(e->session, session) != 0)
        e = e->next;
    if (!e && (rc = entry_new(t, g, session, &e, err)) == BG_OK) {
        e->next = t->list;
        t->list = e;
        t->n++;
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

void bg__sampler_ref(bg__sampler *e)
{
    if (!e->table)
        return;
    pthread_mutex_lock(&e->table->mu);
    e->refs++;
    pthread_mutex_unlock(&e->table->mu);
}

void bg__sampler_put(bg__sampler *e)
{
    if (!e || !e->table)
        return;
    pthread_mutex_lock(&e->table->mu);
    BG_ASSERT(e->refs > 0, "sampler of session '%s': released more often than taken", e->session);
    e->refs--;
    pthread_mutex_unlock(&e->table->mu);
}

/* ------------------------------------------------------------ bg_sampled */

int bg_sampled_create(void *sampler_inst, bg_sampled **out, bg_err *err)
{
    *out = NULL;
    bg_sampled *sd = calloc(1, sizeof *sd);
    if (!sd || !(sd->sessions = table_create())) {
        free(sd);
        return bg_err_set(err, BG_ENOMEM, "sampled path: out of memory");
    }
    sd->self.inst = sampler_inst;
    sampler_init(&sd->self);
    *out = sd;
    return BG_OK;
}

void bg_sampled_destroy(bg_sampled *sd)
{
    if (!sd)
        return;
    bg__assert_sampler_state(&sd->self, 0); /* a job holds the guard's owner */
    table_unref(sd->sessions);
    sampler_close(&sd->self);
    free(sd);
}

void bg_sampled_inherit(bg_sampled *to, bg_sampled *from)
{
    BG_ASSERT(to->sessions->n == 0 && atomic_load(&to->sessions->refs) == 1,
              "inherit into a sampled state that is in use (%zu session samplers)",
              to->sessions->n);
    table_unref(to->sessions);
    atomic_fetch_add(&from->sessions->refs, 1);
    to->sessions = from->sessions;
}

size_t bg_sampled_samplers(bg_sampled *sd)
{
    bg__sampler_table *t = sd->sessions;
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

size_t bg_sampled_contexts(bg_sampled *sd)
{
    /* the table's mutex, then each sampler's context table's (short: the
     * per-context search holds it only to take and publish); nothing takes
     * them the other way round */
    size_t n = bg__ctx_table_size(&sd->self.ctx);
    bg__sampler_table *t = sd->sessions;
    pthread_mutex_lock(&t->mu);
    for (bg__sampler *e = t->list; e; e = e->next)
        n += bg__ctx_table_size(&e->ctx);
    pthread_mutex_unlock(&t->mu);
    return n;
}

bg_sampler_state bg_sampled_state(bg_sampled *sd, const char *session)
{
    if (!session)
        return (bg_sampler_state)atomic_load(&sd->self.state);
    bg__sampler_table *t = sd->sessions;
    pthread_mutex_lock(&t->mu);
    bg__sampler *e = t->list;
    while (e && strcmp(e->session, session) != 0)
        e = e->next;
    bg_sampler_state st = e ? (bg_sampler_state)atomic_load(&e->state) : BG_SAMPLER_NONE;
    pthread_mutex_unlock(&t->mu);
    return st;
}
