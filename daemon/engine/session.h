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
 *   current/stale --LRU (BG_SESSION_MAX_STATES), eviction of an idle
 *                   session (below), or bg_engine_forget--> freed
 *
 * Eviction (issue 11, item 8): what a session costs is its posteriors —
 * N hypotheses × (id, log_post, prob, scratch, order) ≈ 36 bytes each, per
 * model_key — while its history is one small block per observation. So the
 * table bounds the *posteriors* in memory, not the sessions: at most
 * max_sessions sessions hold one (resident), and every byte (histories,
 * session records, posteriors) counts against max_bytes. When a new
 * posterior or observation would cross a bound, the posteriors of the
 * least recently used idle session (refs == 0: no call in progress on it,
 * and its lock taken with a try-lock) are freed; a session that is used
 * again rebuilds its posterior from its history (state_build + catch_up in
 * engine.c), through the same per-observation arithmetic an Observe does,
 * so the rebuilt posterior is bit-identical to the evicted one. When no
 * idle posterior is left to free, the call gets BG_ELIMIT naming the limit.
 *
 * Why the history stays in memory rather than being re-read from the
 * observation log: the sampled path and every model's log_lik/harm read
 * the whole history on each call; re-reading it from the log would need an
 * index of file offsets per evicted session (itself memory that grows with
 * every session ever seen) or a scan of the whole log per miss; and
 * without --data-dir there is no log, so evicting a history would lose it.
 * Keeping it costs ~100-300 bytes per observation; it is counted against
 * max_bytes and refused with BG_ELIMIT past it, as before, while one
 * caller's share is bounded by its per-identity quota (quota.h): sessions
 * per identity are counted when an Observe with an owner starts one.
 * Sessions replayed from the log at start have no owner (the log does not
 * record who sent an observation) and count against no identity.
 *
 * Invariants:
 *  1. pstate->post.n_obs <= session->n_obs; "current" means equal.
 *  2. hist[i] is observation i; its strings live in blocks[i].
 *  3. A session is freed only when refs == 0 and it is out of the table.
 *  4. resident == (n_states > 0) for a session in the table, and the LRU
 *     list holds exactly the resident sessions; table->resident counts them.
 *  5. A posterior is freed by eviction only with the session's lock held
 *     exclusively and no reference but the evicting call's.
 *  6. settled <= n_obs; lsn[i] is observation i's record number in the
 *     local log, given once when it is stored (UINT64_MAX until then) and
 *     never changed (the log keeps it through compaction: obs_store.h
 *     invariant 6). Checked with BG_ASSERT in engine.c (store_append,
 *     settle_at).
 *
 * Threads: the table mutex guards the buckets, counts, refs, n_states and
 * the LRU links; the session's rwlock guards everything else in it.
 * Readers (evaluate) hold it shared while calling plugins; observe holds it
 * exclusive. No call waits for two sessions' locks: eviction try-locks the
 * victim while holding its own session's lock, and skips it when busy.
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
#include "engine/quota.h"

#define BG_SESSION_MAX_STATES 2

typedef struct bg__pstate {
    uint64_t model_key;
    bg__posterior post;
    _Atomic uint64_t last_use; /* written by readers under the shared lock */
    struct bg__pstate *next;
} bg__pstate;

typedef struct bg__session {
    char *guard; /* policy name (owned) */
    char *id;    /* session id (owned) */
    char *owner; /* identity that started it (owned), NULL: none */
    uint64_t hash;
    pthread_rwlock_t lock;
    bg_observation *hist; /* [n_obs] headers, pointing into blocks */
    void **blocks;        /* [n_obs] owned copies */
    uint64_t *lsn;        /* [n_obs] the observation's record number in the local
                             log (engine.h, fleet hooks); UINT64_MAX: not stored */
    size_t n_obs, cap_obs;
    /* Fleet mode: hist[0..settled) is in the fleet stream's order; the
     * rest are local observations the stream has not ordered yet
     * (bg_engine_fleet_settle). 0 without a fleet. */
    size_t settled;
    size_t bytes; /* observations + posteriors, counted in the table */
    bg__pstate *states;
    /* table-mutex fields */
    int refs;
    int in_table;
    int resident;                      /* holds a posterior: in the LRU list */
    size_t n_states;                   /* posteriors reserved (bg__table_state_reserve) */
    struct bg__session *newer, *older; /* LRU links while resident */
    struct bg__session *next;
} bg__session;

typedef struct bg__session_table bg__session_table;

typedef struct bg__table_limits {
    size_t max_sessions; /* sessions holding a posterior (resident) */
    size_t max_bytes;    /* every byte of the table */
    bg__quota *quota;    /* borrowed, outlives the table; NULL: no per-identity quota */
} bg__table_limits;

int bg__table_create(const bg__table_limits *lim, bg__session_table **out, bg_err *err);
/* Frees every session; no session may be in use. */
void bg__table_destroy(bg__session_table *t);

/* Find (and with create=1 insert) a session; new reference: release it.
 * BG_ENOTFOUND when absent and create=0. A session created with an owner
 * (the caller's identity) counts against that identity's quota: BG_ELIMIT
 * when it has its maximum (quota.h); owner NULL (replay, the shared prior):
 * no quota. Using a resident session makes it the most recently used. */
int bg__table_get(bg__session_table *t, const char *guard, const char *id, int create,
                  const char *owner, bg__session **out, bg_err *err);
void bg__table_release(bg__session_table *t, bg__session *s);
/* fn for every session in the table now (each held by a reference while
 * fn runs, no lock held: fn takes s->lock); stops at the first non-OK
 * return and returns it. BG_ENOMEM when the list cannot be made. */
int bg__table_each(bg__session_table *t, int (*fn)(void *ctx, bg__session *s), void *ctx);
/* Take the session out of the table; freed when its last reference goes. */
int bg__table_remove(bg__session_table *t, const char *guard, const char *id);

/* Memory accounting against max_bytes: reserve evicts idle posteriors
 * (LRU) to make room, and fails with BG_ELIMIT (what names the use) when
 * none is left, unless force; unreserve gives bytes back. Caller holds
 * s->lock exclusively. */
int bg__table_reserve(bg__session_table *t, bg__session *s, size_t bytes, int force,
                      const char *what, bg_err *err);
void bg__table_unreserve(bg__session_table *t, bg__session *s, size_t bytes);
/* The same for one posterior of s, which also makes s resident (bounded by
 * max_sessions, evicting as above); _unreserve when it is freed. */
int bg__table_state_reserve(bg__session_table *t, bg__session *s, size_t bytes, bg_err *err);
void bg__table_state_unreserve(bg__session_table *t, bg__session *s, size_t bytes);

/* Append an owned copy of obs, stored as local-log record lsn (caller
 * holds s->lock exclusively). */
int bg__session_append(bg__session_table *t, bg__session *s, const bg_observation *obs,
                       uint64_t lsn, int force, bg_err *err);

/* Move observation `from` to position `to` <= from, shifting
 * hist[to..from) up by one (lock exclusive). Posteriors are the caller's
 * to drop: they fold the old order. */
void bg__session_move(bg__session *s, size_t from, size_t to);

/* Undo the last bg__session_append (lock exclusive), when storing it
 * durably failed after the in-memory append. */
void bg__session_pop(bg__session_table *t, bg__session *s);

/* Free one posterior state and give its bytes back (lock exclusive). */
void bg__session_drop_state(bg__session_table *t, bg__session *s, bg__pstate *st);

typedef struct bg__table_stats {
    uint64_t sessions, observations, bytes;
    uint64_t resident;  /* sessions holding a posterior */
    uint64_t evictions; /* sessions whose posteriors were evicted */
} bg__table_stats;
void bg__table_stats_get(bg__session_table *t, bg__table_stats *out);

#endif
