/*
 * fleet.h — fleet mode: one posterior per agent deployment through a Redis
 * stream (docs/FLEET.md is the design; this header is the contract).
 *
 * Every sidecar of a deployment runs with --fleet redis://HOST:PORT/KEY,
 * or rediss://HOST:PORT/KEY for TLS (fleet_link.c: OpenSSL, the server
 * verified against --fleet-ca by name or IP, TLS 1.2+, an optional client
 * certificate --fleet-cert/--fleet-key).
 *
 *   ids      an observation's fleet id is "<node>-<lsn>": node is this
 *            sidecar's id (16 hex digits, made on first start and kept in
 *            <data-dir>/fleet.node), lsn its record number in the local
 *            log (engine.h, fleet hooks). Unique across the fleet and
 *            stable across restarts.
 *   outbox   the local log: the engine's stored hook hands every local
 *            observation here once it is durable (before the Observe is
 *            acknowledged); the shipper thread XADDs it (fields id,
 *            policy, revision, session, obs, origin) and then moves the
 *            outbox position (<data-dir>/fleet.state, "shipped N": every
 *            local record below N is in the stream). At start the replay
 *            hands back every record at or past N. The position only moves
 *            after Redis acknowledged the XADD: a crash re-ships (peers
 *            drop the copy by id), never skips.
 *   inbox    the reader thread XREADs the stream (BLOCK) and, per entry:
 *            its own -> settle it (engine: the stream's order); an id
 *            already applied (a high-water mark per node, fleet_ids.c,
 *            rebuilt from the local log, where each applied observation is
 *            stored with its id; nodes ship their ids in order) -> count;
 *            else apply it through the engine with the policy of that name
 *            (the limits of a local Observe). At start it reads the stream
 *            from its beginning (what is retained) to restore the stream
 *            order of every session; <data-dir>/fleet.state's "last ID"
 *            says where new entries began.
 *   order    each observation that joins a settled prefix is journaled in
 *            <data-dir>/fleet.order; bg_fleet_start replays it, so the
 *            stream order survives a restart even when Redis lost it.
 *   snapshot every snapshot_every entries read, the reader publishes
 *            <KEY>:snapshot (a hash: id = the last stream id it covers,
 *            data = every settled observation in stream order: magic
 *            "BGFSNAP1", then per observation str fid | str policy |
 *            str session | str record, str = u32 LE length + bytes),
 *            replacing it only when its id is newer (a Lua script). At
 *            start the reader applies the snapshot (same rules as entries)
 *            before reading the stream, so entries trimmed by MAXLEN are
 *            not missed; entries the snapshot covers are settled no-ops.
 *   lag      bg_fleet_lag_get: observations pending out (not yet in the
 *            stream) and in (read, not yet applied), and lag_ms, how long
 *            ago this sidecar last knew it had everything the stream held
 *            (0 while it is in sync).
 *
 * Threads: create/destroy on the main thread; the hooks run on whichever
 * thread stores an observation; lag_get from any thread. Two threads of
 * its own (shipper, reader), each with its own Redis connection.
 * Ownership: the fleet borrows the engine, the policy store and the
 * metrics registry given to bg_fleet_start; each must outlive
 * bg_fleet_destroy's return.
 *
 * Metrics (docs/CONFIG.md `## Metrics`):
 *   bayesguard_fleet_pending{direction="in"|"out"}  gauge
 *   bayesguard_fleet_lag_seconds                    gauge
 *   bayesguard_fleet_connected                      gauge (0 or 1)
 *   bayesguard_fleet_entries_total{result}          counter: shipped, applied,
 *     duplicate, refused, revision_mismatch
 *   bayesguard_fleet_state_bytes{part}              gauge: applied_ids, id_index,
 *     order_file
 */
#ifndef BG_FLEET_H
#define BG_FLEET_H

#include <stdint.h>

#include "common/bg_err.h"
#include "engine/engine.h"
#include "metrics/metrics.h"
#include "policy/policy.h"

/* The largest encoded observation taken from the stream. */
#define BG_FLEET_RECORD_MAX (1u << 20)

typedef struct bg_fleet_opts {
    const char *url;           /* redis[s]://[USER@]HOST:PORT/KEY */
    const char *password_file; /* NULL: no AUTH */
    const char *ca_file;       /* rediss://: required, PEM CAs to verify Redis against */
    const char *cert_file;     /* rediss://: the client certificate (PEM), with key_file */
    const char *key_file;      /* its private key (PEM, mode 0600); NULL: no client cert */
    const char *data_dir;      /* required */
    uint64_t maxlen;           /* XADD MAXLEN ~ maxlen; 0: no trim */
    uint64_t snapshot_every;   /* publish the snapshot after this many entries; 0: 10000 */
} bg_fleet_opts;

typedef struct bg_fleet bg_fleet;

/* new: destroy. Parses the URL (BG_EINVAL saying what to fix), reads the
 * password file, makes or reads the node id and the state. Starts no
 * thread: the engine is made next, with bg_fleet_hooks. */
int bg_fleet_create(const bg_fleet_opts *opts, bg_fleet **out, bg_err *err);

/* Borrowed from f: the hooks to put in bg_engine_opts.fleet. */
const bg_engine_fleet_hooks *bg_fleet_hooks(bg_fleet *f);

/* Starts the shipper and the reader, and registers the fleet's metrics
 * collector in m (NULL: none; m must outlive f). Redis need not be
 * reachable: both retry with backoff. */
int bg_fleet_start(bg_fleet *f, bg_engine *e, bg_policy_store *store, bg_metrics *m, bg_err *err);

/* Stops the threads (within about a second) and frees f. NULL: no-op. */
void bg_fleet_destroy(bg_fleet *f);

typedef struct bg_fleet_lag {
    uint64_t pending_out;       /* local observations not yet in the stream */
    uint64_t pending_in;        /* stream entries read and not yet applied */
    uint64_t lag_ms;            /* 0 in sync; else since it last was */
    int connected;              /* both connections up */
    uint64_t shipped;           /* observations XADDed since start */
    uint64_t applied;           /* peers' observations applied since start */
    uint64_t duplicates;        /* entries already applied (settled only) */
    uint64_t refused;           /* entries not applied: no such policy, bad entry, engine refusal */
    uint64_t revision_mismatch; /* applied though the peer's model differs */
    uint64_t reconnects;
    /* Memory and disk the fleet's state holds (docs/FLEET.md, Bounded
     * state): the applied set (a high-water mark per node, and the few
     * peers' observations replayed unsettled), the snapshot's index of
     * peers' ids (20 bytes per peer observation held), fleet.order. */
    uint64_t applied_ids_bytes;
    uint64_t id_index_bytes;
    uint64_t order_bytes;
} bg_fleet_lag;

/* Any thread. f NULL: all zero. */
void bg_fleet_lag_get(bg_fleet *f, bg_fleet_lag *out);

#endif
