/*
 * obs_store.h — the append-only observation log (engine-internal).
 *
 * Observations are the data the posterior is made of: they are acknowledged
 * only once stored. One file per data_dir, `observations.bglog`:
 *
 *   header  8 bytes  "BGOBS01\n"
 *   record  u32 payload length | u32 CRC-32 (IEEE) of the payload | payload
 *           (payload: observation.h's version-1 encoding)
 *
 * Append = one write(2) of the whole record, then fdatasync(2), before the
 * caller acknowledges. Open = replay every record in order through a
 * callback, then append after them. A record that is cut short or whose CRC
 * does not match ends the replay: it can only be a write torn by a crash
 * (appends are sequential), so the file is truncated back to the last good
 * record and a warning says how many bytes were dropped.
 *
 * Threads: append may be called from any thread (a mutex serialises
 * appends); open/close on one thread.
 * Ownership: the store owns its fd; the replay callback borrows everything.
 */
#ifndef BG_ENGINE_OBS_STORE_H
#define BG_ENGINE_OBS_STORE_H

#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"
#include "engine/engine.h"

#define BG_OBS_STORE_FILE "observations.bglog"
#define BG_OBS_STORE_MAGIC "BGOBS01\n"
#define BG_OBS_RECORD_MAX (64u << 20)

typedef struct bg__obs_store bg__obs_store;

/* rc: the receipt the observation was stored with, NULL when none. */
typedef int (*bg__obs_replay_cb)(void *ctx, const char *guard, const char *session,
                                 const bg_observation *obs, const bg_obs_receipt *rc, bg_err *err);

typedef struct bg__obs_replay_stats {
    uint64_t records;
    uint64_t dropped_bytes; /* torn tail truncated */
} bg__obs_replay_stats;

/* new: close. Creates dir/observations.bglog if absent. A callback error
 * stops the open with that error. stats may be NULL. */
int bg__obs_store_open(const char *dir, bg__obs_replay_cb cb, void *ctx, bg__obs_store **out,
                       bg__obs_replay_stats *stats, bg_err *err);
/* rc: the receipt it was accepted with (version-2 record), or NULL. */
int bg__obs_store_append(bg__obs_store *s, const char *guard, const char *session,
                         const bg_observation *obs, const bg_obs_receipt *rc, bg_err *err);
void bg__obs_store_close(bg__obs_store *s);
/* Appends refused so far (disk full, I/O error, or broken), and whether
 * the log is broken: a failed append could not be cut off, so every
 * further append is refused until a restart. Any thread; never waits for
 * an append in progress (its fdatasync). */
void bg__obs_store_health(bg__obs_store *s, uint64_t *refused, int *broken);

uint32_t bg__crc32(const void *buf, size_t len);

#endif
