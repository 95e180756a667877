/*
 * gfn_sessions.h — the samplers of a guard's sessions, for the sampled path
 * (gfn_sampled.c). Internal to bg_gfn_sampled.
 *
 * A GFlowNet sampler amortises one posterior: the one of the data it was
 * trained on. Sessions of one policy have their own data, so each session
 * gets its own sampler instance (bg_guard.sampler_new), trained on its own
 * history; a guard without sampler_new/drop (tests, benches) shares its one
 * instance among all sessions, as before.
 *
 * The table lives in the guard's bg_sampler_slot (engine.h), reference
 * counted: a reload that keeps the policy's model and sampler shares it
 * with the new instance (bg_sampler_slot_share), and it dies with the last
 * slot that holds it; an instance made by sampler_new keeps what it needs
 * (its plugin, its host services) and is destroyed by sampler_drop, so it
 * may outlive the policy set that made it. At most `max` sessions keep a
 * sampler: the least recently used one that nothing uses is destroyed
 * first (untrained ones before trained); its session gets a fresh sampler
 * on its next use, trained again
 * on its whole history (the engine keeps the observations). Entries in use
 * (an Evaluate sampling, a training job queued or running) are never
 * destroyed; the table may then exceed `max` for as long as they are.
 *
 * Threads: get/put under the table's mutex; an entry's lock serialises
 * train (write) against sample (read), writer-preferring so that training
 * steps are not starved under evaluations.
 */
#ifndef BG_GFN_SESSIONS_H
#define BG_GFN_SESSIONS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "common/bg_err.h"
#include "engine/engine.h"

typedef struct bg__gfn_table bg__gfn_table;

typedef struct bg__gfn_ss {
    bg__gfn_table *table; /* the table it belongs to */
    char *session;        /* "" for a shared instance */
    void *inst;
    void *keep; /* what inst needs alive (sampler_new) */
    int own;    /* inst from sampler_new: destroyed with the entry */
    pthread_rwlock_t lock;
    atomic_int trained; /* trained at least once */
    int refs;           /* users, under the table's mutex */
    uint64_t last_use;  /* under the table's mutex */
    struct bg__gfn_ss *next;
} bg__gfn_ss;

/* The sampler of (g, session) in slot, created on first use, with a
 * reference for the caller (release with bg__gfn_ss_put). session NULL:
 * the guard's shared instance (sampler_inst), which is not a session
 * sampler and never dropped — for sessions without data, so that they make
 * no sampler and drop none. BG_ENOMEM, or
 * BG_EINTERNAL when the plugin cannot create an instance. */
int bg__gfn_ss_get(bg_sampler_slot *slot, const bg_guard *g, const char *session, size_t max,
                   bg__gfn_ss **out, bg_err *err);
void bg__gfn_ss_ref(bg__gfn_ss *e);
void bg__gfn_ss_put(bg__gfn_ss *e);
/* Sessions holding a sampler in slot; the trained flag of one (-1: none). */
size_t bg__gfn_ss_count(bg_sampler_slot *slot);
int bg__gfn_ss_trained(bg_sampler_slot *slot, const char *session);

#endif
