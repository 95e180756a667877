/*
 * session.h — the engine's session table (engine-internal).
 *
 * A session is the data of one (policy name, session id): its observations,
 * oldest first, and the posteriors derived from them, one per model_key
 * (a reload that changes the model gets a new posterior, rebuilt from the
 * same observations, while the old snapshot may still be evaluating with
 * the old one; at most BG_SESSION_MAX_STATES are kept, least recently used
 * dropped first).
 *
 * States of a posterior (bg__pstate), each transition in engine.c:
 *
 *   absent --pstate_build--> at prior (n_obs 0) --catch_up--> current
 *   current --observe (prepare, store, swap)--> current
 *   current --another model's observe appends--> stale --catch_up--> current
 *   current/stale --LRU eviction or bg_engine_forget--> freed
 *
 * Invariants:
 *  1. pstate->post.n_obs <= session->n_obs; "current" means equal.
 *  2. hist[i] is observation i; its strings live in blocks[i].
 *  3. A session is freed only when refs == 0 and it is out of the table.
 *
 * Threads: the table mutex guards the buckets, counts and refs; the
 * session's rwlock guards everything else in it. Readers (evaluate) hold it
 * shared while calling plugins; observe holds it exclusive. No call holds
 * two sessions' locks.
 */
#ifndef BG_ENGINE_SESSION_H
#define BG_ENGINE_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"
#include "engine/posterior.h"

#define BG_SESSION_MAX_STATES 2

typedef struct bg__pstate {
    uint64_t model_key;
    bg__posterior post;
    _Atomic uint64_t last_use; /* written by readers under the shared lock */
    struct bg__pstate *next;
} bg__pstate;

typedef struct bg__session {
    char *guard;               /* policy name (owned) */
    char *id;                  /* session id (owned) */
    uint64_t hash;
    pthread_rwlock_t lock;
    bg_observation *hist;      /* [n_obs] headers, pointing into blocks */
    void **blocks;             /* [n_obs] owned copies */
    size_t n_obs, cap_obs;
    size_t bytes;              /* observations + posteriors, counted in the table */
    bg__pstate *states;
    /* table-mutex fields */
    int refs;
    int in_table;
    struct bg__session *next;
} bg__session;

typedef struct bg__session_table bg__session_table;

typedef struct bg__table_limits {
    size_t max_sessions;
    size_t max_bytes;
} bg__table_limits;

int bg__table_create(const bg__table_limits *lim, bg__session_table **out, bg_err *err);
/* Frees every session; no session may be in use. */
void bg__table_destroy(bg__session_table *t);

/* Find (and with create=1 insert) a session; new reference: release it.
 * BG_ENOTFOUND when absent and create=0; BG_ELIMIT when the session count
 * is at max_sessions (unless `force`, used by replay). */
int bg__table_get(bg__session_table *t, const char *guard, const char *id, int create, int force,
                  bg__session **out, bg_err *err);
void bg__table_release(bg__session_table *t, bg__session *s);
/* Take the session out of the table; freed when its last reference goes. */
int bg__table_remove(bg__session_table *t, const char *guard, const char *id);

/* Memory accounting against max_bytes: reserve fails with BG_ELIMIT (what
 * names the use) unless force; give back with a negative delta. Caller
 * holds s->lock exclusively. */
int bg__table_reserve(bg__session_table *t, bg__session *s, size_t bytes, int force,
                      const char *what, bg_err *err);
void bg__table_unreserve(bg__session_table *t, bg__session *s, size_t bytes);

/* Append an owned copy of obs (caller holds s->lock exclusively). */
int bg__session_append(bg__session_table *t, bg__session *s, const bg_observation *obs,
                       int force, bg_err *err);

/* Undo the last bg__session_append (lock exclusive), when storing it
 * durably failed after the in-memory append. */
void bg__session_pop(bg__session_table *t, bg__session *s);

/* Free one posterior state and give its bytes back (lock exclusive). */
void bg__session_drop_state(bg__session_table *t, bg__session *s, bg__pstate *st);

typedef struct bg__table_stats {
    uint64_t sessions, observations, bytes;
} bg__table_stats;
void bg__table_stats_get(bg__session_table *t, bg__table_stats *out);

#endif
