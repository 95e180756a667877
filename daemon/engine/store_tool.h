/*
 * store_tool.h — the observation log offline: verify, repair, scan.
 *
 * What `bayesguard store verify | repair DIR` run (daemon/cli/cli_store.c),
 * and the reader a fleet shipper uses to send the log from a place on.
 * They read the files through obs_scan.h, the same code the daemon's start
 * uses: no second copy of the format (obs_store.h). Run them while no
 * daemon uses DIR.
 *
 * verify: every file of the log, every record; each problem (obs_scan.h:
 * corruption anywhere, or the torn tail of the last segment, which the
 * daemon cuts at start) is reported with its file and byte offset, and the
 * scan goes on from the next readable record.
 *
 * repair: each file with corruption is kept as FILE.corrupt (a hard link
 * to the damaged bytes) and replaced (temp file, fdatasync, rename,
 * directory fsync) by a file holding every record before the damage and
 * every readable record after it: the scan looks for the next offset where
 * a whole record with a matching CRC that decodes starts, and goes on from
 * there. Dropped: the bytes of each damaged region (reported). A torn tail
 * of the last segment is left for the daemon's start to cut.
 *
 * Threads: any; no state. Ownership: callback arguments are borrowed.
 */
#ifndef BG_ENGINE_STORE_TOOL_H
#define BG_ENGINE_STORE_TOOL_H

#include <stdint.h>

#include "bayesguard/plugin.h"
#include "common/bg_err.h"

typedef struct bg_store_problem {
    const char *file;
    uint64_t offset;
    uint64_t bytes; /* not read as records from offset on */
    int torn_tail;  /* tolerated (cut at start), not corruption */
    const char *what;
} bg_store_problem;

typedef void (*bg_store_problem_cb)(void *ctx, const bg_store_problem *p);

typedef struct bg_store_report {
    uint64_t files, records;
    uint64_t problems, corrupt;
    uint64_t dropped_bytes;  /* repair: bytes of damaged regions left out */
    uint64_t files_repaired; /* repair: files replaced (originals kept as .corrupt) */
} bg_store_report;

/* BG_OK with the report (corrupt > 0: damage found); BG_EIO when DIR or a
 * file cannot be read at all. */
int bg_store_verify(const char *dir, bg_store_problem_cb cb, void *ctx, bg_store_report *out,
                    bg_err *err);
int bg_store_repair(const char *dir, bg_store_problem_cb cb, void *ctx, bg_store_report *out,
                    bg_err *err);

/* Fleet mode and repair (docs/FLEET.md, "store repair"). A fleet sidecar
 * names its observations by record number; repair renumbers every record
 * after a dropped one, so on a fleet directory a repair that drops records
 * would give observations other ids (peers apply them again) and point
 * fleet.order at other records. The tool therefore refuses it, unless the
 * operator resets the sidecar's fleet identity, which is what the fleet
 * procedure was: start as a new node on an empty log and bootstrap from
 * the fleet's snapshot and stream. */

/* 1 when dir holds fleet mode's files (fleet.node, fleet.order,
 * fleet.state): a --fleet sidecar's data directory. */
int bg_store_is_fleet(const char *dir);

/* Moves the observation log (segments, snapshots, quarantine, the
 * .corrupt originals), the fleet files and receipt.key into a new
 * dir/fleet-reset-<UTC time>/ (its name in moved_to), then fsyncs both
 * directories: the next start is a new node with an empty log, which
 * bootstraps from the fleet. receipt.key goes too, so that receipts minted
 * before (their single use was recorded in the log set aside) are refused,
 * not accepted a second time. store.key and escalations.log stay. */
int bg_store_fleet_reset(const char *dir, char *moved_to, size_t moved_len, bg_err *err);

/* Every record of the log at or after (segment, offset) in replay order
 * (a snapshot's records count as segment 0 offset 0...: give 0, 0 to read
 * everything). The observation is as stored. Stops at corruption (BG_EIO
 * naming file and offset) or a cb error. */
typedef int (*bg_store_record_cb)(void *ctx, const char *guard, const char *session,
                                  const bg_observation *obs, uint64_t segment, uint64_t offset,
                                  bg_err *err);
int bg_store_scan(const char *dir, uint64_t segment, uint64_t offset, bg_store_record_cb cb,
                  void *ctx, bg_err *err);

#endif
