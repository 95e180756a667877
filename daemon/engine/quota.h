/*
 * quota.h — per-identity quotas of the engine (engine-internal): how many
 * sessions an identity (the caller's peer identity: "uid:N", a certificate
 * identity, "" for plain TCP) has started, and a token bucket for the rate
 * of its observations. So one caller flooding sessions or outcomes hits its
 * own limit and leaves every other identity's Observe working.
 *
 * Shape: a hash table of identities (SipHash-2-4 keyed with the table's
 * random key, so identities cannot be chosen to collide), at most
 * BG_QUOTA_MAX_IDENTITIES entries, in least-recently-used order. An entry
 * that owns no session may be dropped to make room (its bucket starts full
 * again when it comes back: at worst one more burst); an entry that owns
 * sessions never is, so its count stays exact. When every entry owns
 * sessions a new identity is refused (BG_ELIMIT).
 *
 * Invariants:
 *  1. entry->sessions == the number of sessions in the session table whose
 *     owner is that identity (session.c adds and subtracts under its mutex).
 *  2. 0 <= tokens <= burst.
 *
 * Threads: any; one mutex. session.c calls the session functions while it
 * holds its table mutex (lock order: table, then quota).
 * Ownership: identities are copied.
 */
#ifndef BG_ENGINE_QUOTA_H
#define BG_ENGINE_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_QUOTA_MAX_IDENTITIES 65536

typedef struct bg__quota_limits {
    size_t max_sessions; /* per identity; 0: no limit */
    double rate;         /* observations per second per identity; 0: no limit */
    double burst;        /* bucket size (>= 1 when rate > 0) */
} bg__quota_limits;

typedef struct bg__quota bg__quota;

int bg__quota_create(const bg__quota_limits *lim, const uint8_t *key, bg__quota **out, bg_err *err);
void bg__quota_destroy(bg__quota *q);

/* One more session for `who`: BG_ELIMIT naming the identity, the limit and
 * --max-sessions-per-identity when it has max_sessions already; BG_ENOMEM. */
int bg__quota_session_add(bg__quota *q, const char *who, bg_err *err);
/* One session of `who` less (it left the session table). */
void bg__quota_session_sub(bg__quota *q, const char *who);
/* Sessions `who` owns now (tests). */
size_t bg__quota_sessions(bg__quota *q, const char *who);

/* Take one token of `who`'s bucket at monotonic time now_ns: BG_OK, or
 * BG_ELIMIT naming the identity, the rate and --max-observe-rate. */
int bg__quota_take(bg__quota *q, const char *who, uint64_t now_ns, bg_err *err);

#endif
