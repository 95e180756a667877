/*
 * escalation.h — the pending-escalation table: what an ESCALATE verdict
 * opens, until a person settles it or it expires; its durability under
 * --data-dir and its expiry.
 *
 * Why a module of its own: an ESCALATE verdict is a promise that a person
 * will decide. The promise must be kept across restarts (the agent may be
 * waiting on it), bounded (an agent that escalates in a loop must not grow
 * the daemon without end) and answerable by id. The rpc layer (daemon/rpc)
 * opens records from Evaluate, settles them from ResolveEscalation, parks
 * AwaitDecision calls and feeds WatchEscalations from the events this
 * table emits; this module knows nothing of gRPC.
 *
 * State diagram (the function that makes each transition):
 *
 *     (none) --bg_escalation_open_one--> PENDING --bg_escalation_resolve(approve)--> APPROVED
 *                                          |  \----bg_escalation_resolve(reject)---> REJECTED
 *                                          \------bg_escalation_expire (now >= expires)--> EXPIRED
 *
 * A settled record never changes again. Expired ones become ALLOW or DENY
 * by their policy's on_timeout (copied into the record when it opened).
 *
 * Invariants:
 *   1. At most max_pending records are PENDING; an open beyond that is
 *      refused (BG_ELIMIT) and the caller fails closed (the rpc layer turns
 *      the ESCALATE into a DENY saying why: never an ALLOW).
 *   1a. At most max_per_identity of them share a `peer` (the caller's
 *      authenticated identity; "" — every plain-TCP caller — is one
 *      identity too): an open beyond that is refused the same way, so one
 *      agent cannot fill the table and turn every other agent's ESCALATE
 *      into a DENY. Records replayed from the file count but are never
 *      dropped for it (a promise made is kept).
 *   1b. The last `reserve` free slots (max_pending /
 *      BG_ESC_DEFAULT_RESERVE_SHARE) go only to an identity with none
 *      pending: an identity that holds one opens another only while fewer
 *      than max_pending - reserve are pending. So a few identities at their
 *      quota (four at the default quarter) no longer fill the table: filling
 *      it takes one identity more per reserved slot, each with its first
 *      (review 2026-12-06). Replayed records count, as for 1a.
 *   2. At most max_settled settled records are kept, oldest dropped first;
 *      a dropped one is no longer found (NOT_FOUND for Resolve/Await).
 *   3. Ids are unique among the records held.
 *   4. With a data_dir, a state change is on disk (written and
 *      fdatasync'd) before the call that made it returns BG_OK; a write
 *      that fails changes nothing in memory (BG_EIO).
 *   5. Events (bg_escalation_event_fn) are emitted in the order the
 *      changes were made, under the table's lock, exactly once per change.
 *
 * File (<data_dir>/escalations.log): an append-only sequence of records
 *   u32 length (LE) | u32 CRC-32 of the payload (LE) | payload
 * where a payload is one JSON object: the whole record (every field of
 * bg_escalation_rec, the receipt in hex) as of that change. Replay keeps the
 * last one per id. A record cut short at the end of the file (a crash
 * mid-append) is a torn tail: cut off with a warning. A bad CRC, a length
 * over BG_ESC_RECORD_MAX or a payload that is not a record anywhere before
 * the last record is corruption: open fails naming the file and the byte
 * offset (move the file away to start without its escalations). After
 * replay, and whenever the appends since reach 4 x (max_pending +
 * max_settled), the file is rewritten with only the records held (temp
 * file, fdatasync, rename, fsync of the directory). The file holds the
 * unused receipts of pending escalations: it is created 0600.
 *
 * Threads: every function from any thread; one mutex guards the table and
 * the file (an append's fdatasync is done under it: escalations are rare,
 * and a consistent order on disk is worth it). Time is passed in (Unix
 * milliseconds): the table has no timer; the rpc layer calls
 * bg_escalation_expire from its tick on the libuv loop thread.
 *
 * Ownership: the table copies every string it is given; records handed to
 * callbacks are borrowed for the call; bg_escalation_rec_copy makes a copy
 * the caller frees with bg_escalation_rec_free.
 */
#ifndef BG_ESCALATION_H
#define BG_ESCALATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_ESC_DEFAULT_MAX_PENDING 1024
/* max_per_identity when none is given: max_pending / this (at least 1) */
#define BG_ESC_DEFAULT_IDENTITY_SHARE 4
/* the slots held for identities with none pending (invariant 1b):
 * max_pending / this (0 below it: a table of fewer slots reserves none) */
#define BG_ESC_DEFAULT_RESERVE_SHARE 8
#define BG_ESC_DEFAULT_MAX_SETTLED 1024
#define BG_ESC_FILE "escalations.log"
#define BG_ESC_RECORD_MAX (256u << 10) /* bytes of one file record's payload */
#define BG_ESC_FIELD_MAX 1024          /* bytes kept of a caller-chosen string */
#define BG_ESC_REASON_MAX 1024         /* bytes of a resolution's reason */

/* The states, numbered as the wire's EscalationState. */
typedef enum bg_esc_state {
    BG_ESC_PENDING = 1,
    BG_ESC_APPROVED = 2,
    BG_ESC_REJECTED = 3,
    BG_ESC_EXPIRED = 4,
} bg_esc_state;

const char *bg_esc_state_name(int state); /* "PENDING", ...; "?" otherwise */

/* One escalation. All strings are owned by whoever holds the record (the
 * table, or a copy's holder); NULL reads as "". */
typedef struct bg_escalation_rec {
    char *id; /* the ESCALATE verdict's decision_id */
    int state;
    char *policy, *revision, *tool;
    char *arguments; /* as the decision log shows them: never the raw JSON (see rpc) */
    double harm_bound, threshold;
    int has_cautious;
    uint64_t cautious_id;
    char *cautious_label;
    double cautious_posterior, cautious_harm;
    char *session; /* the session key the decision was made in */
    char *agent;   /* context.agent */
    char *peer;    /* who asked: the authenticated identity ("" when none) */
    int64_t created_ms, expires_ms;
    int on_timeout_allow; /* expiry means ALLOW (else DENY) */
    char *approver, *approver_peer, *reason;
    int64_t resolved_ms;
    uint8_t *receipt; /* the receipt an approval hands out (minted at open) */
    size_t receipt_len;
} bg_escalation_rec;

/* new: a deep copy of r (NULL on out of memory). */
bg_escalation_rec *bg_escalation_rec_copy(const bg_escalation_rec *r);
void bg_escalation_rec_free(bg_escalation_rec *r); /* NULL is fine */
/* The decision a settled record stands for: 1 ALLOW (approved, or expired
 * under on_timeout: allow), 0 DENY; -1 while pending. */
int bg_escalation_allows(const bg_escalation_rec *r);

typedef struct bg_escalation bg_escalation;

typedef struct bg_escalation_opts {
    const char *data_dir;    /* NULL: memory only (pending ones die with the process) */
    size_t max_pending;      /* 0 = BG_ESC_DEFAULT_MAX_PENDING */
    size_t max_settled;      /* 0 = BG_ESC_DEFAULT_MAX_SETTLED */
    size_t max_per_identity; /* pending ones of one peer (invariant 1a); 0 = max_pending /
                                BG_ESC_DEFAULT_IDENTITY_SHARE, at least 1; capped at
                                max_pending */
} bg_escalation_opts;

/* new: bg_escalation_close. Replays <data_dir>/escalations.log (see the
 * file format above); a corrupt file fails with BG_EIO and a message
 * naming the file and the offset. */
int bg_escalation_create(const bg_escalation_opts *opts, bg_escalation **out, bg_err *err);
void bg_escalation_close(bg_escalation *t); /* NULL is fine */

/* What changed: a new pending record, or one settled. */
typedef enum bg_esc_event { BG_ESC_EVENT_OPENED = 1, BG_ESC_EVENT_SETTLED = 2 } bg_esc_event;
/* Called under the table's lock (invariant 5): it must not call back into
 * the table. r is borrowed for the call. */
typedef void (*bg_escalation_event_fn)(void *arg, bg_esc_event ev, const bg_escalation_rec *r);
/* Set the one event listener (before serving; NULL to remove). */
void bg_escalation_listen(bg_escalation *t, bg_escalation_event_fn fn, void *arg);

/* Open a PENDING record (a copy of r, every string cut at
 * BG_ESC_FIELD_MAX bytes on a UTF-8 boundary, so a record's size is
 * bounded whatever the request held; state, approver, reason, resolved
 * are ignored). BG_ELIMIT when max_pending are pending (invariant 1) or
 * r->peer holds max_per_identity of them (1a; the message names the
 * identity, the quota and how to clear it) or holds one and only the
 * reserved slots are free (1b), BG_EEXIST when the id is held,
 * BG_EIO when the file refused it. Each refusal but BG_EEXIST and out of
 * memory is counted in the stats by its reason. */
int bg_escalation_open_one(bg_escalation *t, const bg_escalation_rec *r, bg_err *err);

/* Settle a pending record. BG_ENOTFOUND for an id not held; BG_EEXIST
 * when already settled (the message names its state); BG_EIO when the file
 * refused the change. On BG_OK, *out (when not NULL) is a new copy of the
 * settled record. Strings are cut at BG_ESC_FIELD_MAX / BG_ESC_REASON_MAX. */
int bg_escalation_resolve(bg_escalation *t, const char *id, int approve, const char *approver,
                          const char *approver_peer, const char *reason, int64_t now_ms,
                          bg_escalation_rec **out, bg_err *err);

/* Settle every pending record whose expiry is <= now_ms as EXPIRED;
 * returns how many. A record whose change the file refused stays pending
 * (and is retried at the next call). */
size_t bg_escalation_expire(bg_escalation *t, int64_t now_ms);

/* Call fn(arg, r) under the lock with the record of `id`, or NULL when
 * none is held; returns fn's result. */
int bg_escalation_with(bg_escalation *t, const char *id,
                       int (*fn)(void *arg, const bg_escalation_rec *r), void *arg);

/* Call fn for each record held, under the lock: the pending ones oldest
 * first, then (include_settled) the settled ones newest first; then, when
 * `last` is not NULL, last(arg) still under the lock (so a watcher can
 * register before any later change is emitted). */
void bg_escalation_each(bg_escalation *t, int include_settled,
                        void (*fn)(void *arg, const bg_escalation_rec *r), void (*last)(void *arg),
                        void *arg);

/* The wait-time histogram's upper bounds, seconds (+Inf is implied). */
#define BG_ESC_WAIT_BUCKETS(X)                                                                     \
    X(1) X(5) X(15) X(30) X(60) X(300) X(900) X(1800) X(3600) X(14400) X(86400)
#define BG_ESC_COUNT_BUCKET(b) +1
enum { BG_ESC_N_BUCKETS = 0 BG_ESC_WAIT_BUCKETS(BG_ESC_COUNT_BUCKET) };

/* Why an open was refused (the ESCALATE became a DENY): the stats' and
 * the metric's `reason` label. */
#define BG_ESC_REFUSALS(X)                                                                         \
    X(FULL, "table_full")         /* max_pending are pending */                                    \
    X(IDENTITY, "identity_quota") /* the caller holds max_per_identity */                          \
    X(RESERVED, "reserved")       /* the caller holds one; the free slots are the reserve */       \
    X(WRITE, "write_failed")      /* the data directory refused the record */
typedef enum bg_esc_refusal {
#define BG_ESC_REFUSAL_ENUM(name, label) BG_ESC_REFUSED_##name,
    BG_ESC_REFUSALS(BG_ESC_REFUSAL_ENUM)
#undef BG_ESC_REFUSAL_ENUM
        BG_ESC_N_REFUSALS
} bg_esc_refusal;
const char *bg_esc_refusal_label(int why); /* "table_full", ...; "?" otherwise */

typedef struct bg_escalation_stats {
    uint64_t pending;
    uint64_t settled_held;
    uint64_t opened;                        /* since start */
    uint64_t refused[BG_ESC_N_REFUSALS];    /* opens refused, by bg_esc_refusal */
    uint64_t resolved[5];                   /* by bg_esc_state: [APPROVED], [REJECTED], [EXPIRED] */
    uint64_t wait_le[BG_ESC_N_BUCKETS + 1]; /* cumulative counts, the last is +Inf */
    double wait_sum_s;
    uint64_t wait_count;
    size_t max_pending, max_per_identity, reserve;
} bg_escalation_stats;

void bg_escalation_stats_get(bg_escalation *t, bg_escalation_stats *st);

#endif
