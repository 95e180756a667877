/*
 * obs_store.h — the observation log: segments, snapshots, group commit
 * (engine-internal; the offline tools are store_tool.h).
 *
 * Observations are the data the posterior is made of: they are acknowledged
 * only once durable. On disk, in data_dir (docs/STORE.md):
 *
 *   obs-<20-digit seq>.bglog   segments, replayed in seq order; a new one is
 *                              started when the current one reaches
 *                              segment_bytes (rounded up to the records
 *                              written while one fdatasync ran)
 *   observations.bglog         the single file of versions before segments:
 *                              read as segment 0, appended to until full
 *   snapshot-<20 digits>.bgsnap  every record of the segments below that
 *                              seq, rewritten (arguments hashed, expired
 *                              receipts dropped): replayed first
 *   quarantine.bglog           records replay could not fit in the memory
 *                              limits (same format; never replayed)
 *   store.key                  32 random bytes (0600): the key of the
 *                              arguments' hash
 *
 *   segment   header 8 bytes "BGOBS01\n", then records
 *   snapshot  header 8 bytes "BGSNP01\n", then records
 *   record    u32 payload length | u32 CRC-32 (IEEE) of the payload | payload
 *             (payload: observation.h's encoding, version 1 or 2)
 *
 * Invariants:
 *   1. An append returns BG_OK only after fdatasync of the file that holds
 *      its record returned 0 (group commit: a leader syncs for everyone
 *      whose record was written before its fdatasync began; checked with
 *      BG_ASSERT on the waiter's ticket).
 *   2. A segment is never written after a later one exists; a rotation
 *      happens only with no record written and not yet durable.
 *   3. Every create, rename and unlink in data_dir is followed by an fsync
 *      of the directory before it is relied on.
 *   4. A snapshot is renamed into place only after its fdatasync; the
 *      segments it covers are deleted only after that rename is durable;
 *      so at every instant the files hold every acknowledged observation
 *      exactly once (obs_scan.c ignores what a newer snapshot covers).
 *   5. Corruption is never skipped: a record that cannot be read anywhere
 *      except the torn tail of the last segment stops the start with the
 *      file and offset (obs_scan.h).
 *   6. A record's number (its position counted from the first record the
 *      log ever held, the fleet's record number: engine.h, fleet.h) never
 *      changes: a snapshot holds one record per record it covers, in the
 *      same order (checked with BG_ASSERT in compact), and keeps a fleet
 *      receipt (BG_OBS_RECEIPT_FLEET) whatever its expiry. Quarantine
 *      copies a record, never moves it. Only `bayesguard store repair`
 *      drops records (a damaged region), and so renumbers what follows
 *      (docs/FLEET.md says what a fleet sidecar then does).
 *
 * arguments_json is stored as "bgh1:" + 32 hex digits, two SipHash-2-4 of
 * the arguments under store.key (a keyed hash: secrets in the arguments
 * cannot be read or guessed from the log without the key); "" stays "".
 *
 * Threads: append from any thread; one fdatasync per batch. open/replay/
 * close on one thread. A compaction thread runs when snapshot_bytes > 0.
 * Ownership: the store owns its fds and thread; callbacks borrow.
 */
#ifndef BG_ENGINE_OBS_STORE_H
#define BG_ENGINE_OBS_STORE_H

#include <inttypes.h>
#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"
#include "engine/engine.h"

#define BG_OBS_STORE_FILE "observations.bglog"
#define BG_OBS_STORE_MAGIC "BGOBS01\n"
#define BG_OBS_SNAP_MAGIC "BGSNP01\n"
#define BG_OBS_SEGMENT_PREFIX "obs-"
#define BG_OBS_SEGMENT_SUFFIX ".bglog"
#define BG_OBS_SEGMENT_FMT "obs-%020" PRIu64 ".bglog"
#define BG_OBS_SNAPSHOT_PREFIX "snapshot-"
#define BG_OBS_SNAPSHOT_SUFFIX ".bgsnap"
#define BG_OBS_SNAPSHOT_FMT "snapshot-%020" PRIu64 ".bgsnap"
#define BG_OBS_QUARANTINE_FILE "quarantine.bglog"
#define BG_OBS_KEY_FILE "store.key"
#define BG_OBS_RECORD_MAX (64u << 20)
#define BG_OBS_ARGS_HASH_PREFIX "bgh1:"
#define BG_OBS_ARGS_HASH_LEN 37 /* prefix + 32 hex digits */

typedef struct bg__obs_store bg__obs_store;

typedef struct bg__obs_store_opts {
    uint64_t segment_bytes;          /* 0: BG_OBS_SEGMENT_BYTES_DEFAULT */
    uint64_t snapshot_bytes;         /* compact once sealed segments hold this much; 0: never */
    int per_record_sync;             /* 1: no group commit (the benchmark's baseline) */
    bg_engine_durable_cb on_durable; /* after each durable append (engine.h) */
    void *durable_ctx;
} bg__obs_store_opts;

#define BG_OBS_SEGMENT_BYTES_DEFAULT (64u << 20)

/* rc: the receipt the observation was stored with, NULL when none. */
typedef int (*bg__obs_replay_cb)(void *ctx, const char *guard, const char *session,
                                 const bg_observation *obs, const bg_obs_receipt *rc, bg_err *err);

typedef struct bg__obs_replay_stats {
    uint64_t records;
    uint64_t dropped_bytes; /* torn tail truncated */
    uint64_t files;
} bg__obs_replay_stats;

/* new: close. Lists dir's log (obs_scan.h), deletes what a snapshot made
 * stale, reads or makes store.key. Replays nothing yet. */
int bg__obs_store_open(const char *dir, const bg__obs_store_opts *o, bg__obs_store **out,
                       bg_err *err);
/* Every record in order through cb (streamed: one record in memory at a
 * time); cuts the torn tail of the last segment; refuses corruption
 * (BG_EIO naming file and offset). A cb error stops it with that error.
 * Then appends may start. stats may be NULL. */
int bg__obs_store_replay(bg__obs_store *s, bg__obs_replay_cb cb, void *ctx,
                         bg__obs_replay_stats *stats, bg_err *err);
/* Set the record aside in quarantine.bglog (replay only: the observation
 * did not fit the memory limits); why is logged. */
int bg__obs_store_quarantine(bg__obs_store *s, const char *guard, const char *session,
                             const bg_observation *obs, const bg_obs_receipt *rc, const char *why,
                             bg_err *err);
/* rc: the receipt it was accepted with (version-2 record), or NULL.
 * Durable when it returns BG_OK (invariant 1). */
int bg__obs_store_append(bg__obs_store *s, const char *guard, const char *session,
                         const bg_observation *obs, const bg_obs_receipt *rc, bg_err *err);
/* Seal the current segment and write a snapshot of every sealed one now
 * (the compaction thread's work, on the caller's thread). */
int bg__obs_store_compact(bg__obs_store *s, bg_err *err);
void bg__obs_store_close(bg__obs_store *s);

/* The stored form of arguments_json into out (BG_OBS_ARGS_HASH_LEN + 1
 * bytes): "" stays "", a value already hashed stays as is. */
void bg__obs_store_hash_args(const bg__obs_store *s, const char *args, char *out);

typedef struct bg__obs_store_health_t {
    uint64_t refused;     /* appends that failed (not stored) */
    int broken;           /* a failed append could not be cut: refused until restart */
    uint64_t quarantined; /* records set aside at replay */
    uint64_t syncs;       /* fdatasync calls of appends */
    uint64_t appends;     /* records appended */
    uint64_t snapshots;   /* compactions done */
    uint64_t compact_failed;
} bg__obs_store_health_t;
/* Any thread; never waits for an append in progress (its fdatasync). */
void bg__obs_store_health(bg__obs_store *s, bg__obs_store_health_t *out);

/* The record checksum (obs_scan.c). */
uint32_t bg__crc32(const void *buf, size_t len);

#endif
