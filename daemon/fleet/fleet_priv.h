/*
 * fleet_priv.h — what the files of daemon/fleet share (nothing outside the
 * folder includes it; the fuzz harnesses of tests/fuzz do, as tests).
 *
 *   fleet_link.c  one connection to Redis: plain TCP, or TLS (rediss://)
 *                 through OpenSSL with hiredis on one end of a socketpair
 *                 and a pump thread moving bytes to and from the TLS
 *                 session (Debian 12's hiredis 0.14 has no TLS of its own,
 *                 but it takes a connected fd: redisConnectFd).
 *   fleet_wire.c  the bytes Redis hands back, decoded without I/O: a
 *                 stream entry's fields (XREAD) and the BGFSNAP1 snapshot.
 *                 Pure functions, so tests/fuzz feeds them directly.
 *   fleet_ids.c   which peers' observations are held: a high-water mark per
 *                 node, the snapshot's index, the unsettled few.
 *   fleet_order.c fleet.order, the settle journal, and its compaction.
 *   fleet.c       the rest: node id, outbox, reader, snapshot, lifecycle.
 */
#ifndef BG_FLEET_PRIV_H
#define BG_FLEET_PRIV_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"
#include "fleet/fleet.h"

/* ------------------------------------------------------------- links */

/* The TLS settings of a fleet: an SSL_CTX with the CA to verify Redis
 * against (required), an optional client certificate and key, TLS 1.2+.
 * Immutable after create, shared by both threads' links. */
typedef struct bg__fleet_tls bg__fleet_tls;

/* new: destroy. Errors name the file and say what to fix. */
int bg__fleet_tls_create(const char *ca_file, const char *cert_file, const char *key_file,
                         bg__fleet_tls **out, bg_err *err);
void bg__fleet_tls_destroy(bg__fleet_tls *t);

/* One connection. Owns its hiredis context and, over TLS, the pump
 * thread, the TCP socket and the TLS session. */
typedef struct bg__fleet_link bg__fleet_link;

/* new: close. Connects to host:port within timeout_ms (TCP, then the TLS
 * handshake and one PING through it when tls is set, so that a refused
 * certificate is reported here and not as a closed connection later).
 * Returns NULL and a reason in why ("certificate verify failed: ..."). The
 * context has a 2 s command timeout. */
bg__fleet_link *bg__fleet_link_open(const char *host, int port, bg__fleet_tls *tls, int timeout_ms,
                                    char *why, size_t why_len);

/* Borrowed from l: its hiredis context (valid until close). */
redisContext *bg__fleet_link_ctx(bg__fleet_link *l);

/* Why the TLS pump stopped ("" while it runs, or on a plain link): what to
 * log when a command on the link failed. */
const char *bg__fleet_link_error(bg__fleet_link *l);

/* Frees the context, stops and joins the pump. NULL: no-op. */
void bg__fleet_link_close(bg__fleet_link *l);

/* --------------------------------------------------------------- ids
 * fleet_ids.c's header comment is the design: applied(node, lsn) <=>
 * lsn < hwm[node]. */

/* The most nodes a fleet may have (ids of more are refused, counted): the
 * applied set is O(nodes), and whoever writes the stream picks node ids. */
#define BG_FLEET_NODES_MAX 4096u

typedef struct bg__fleet_ids bg__fleet_ids;

/* "<16 lowercase hex>-<decimal, no leading zero>": 0 with node and lsn;
 * -1 for anything else. */
int bg__fleet_id_parse(const char *fid, uint64_t *node, uint64_t *lsn);

/* new: destroy; NULL when out of memory. journaled_below: local record
 * numbers below it have their settle in fleet.order. */
bg__fleet_ids *bg__fleet_ids_create(uint64_t journaled_below);
void bg__fleet_ids_destroy(bg__fleet_ids *t);

/* 1 when (node, plsn) is stored here. */
int bg__fleet_ids_applied(bg__fleet_ids *t, uint64_t node, uint64_t plsn);
/* on: applied() compares with the marks as they are now, until off (a
 * snapshot is being applied: its ids are in order per session only). */
void bg__fleet_ids_freeze(bg__fleet_ids *t, int on);
/* 1 when an id of node could be added (known, or fewer than NODES_MAX). */
int bg__fleet_ids_room(bg__fleet_ids *t, uint64_t node);
/* The stored hook: peer observation (node, plsn) is local record lsn
 * (replayed: at start). 0; -1 out of memory; -2 too many nodes. */
int bg__fleet_ids_add(bg__fleet_ids *t, uint64_t node, uint64_t plsn, uint64_t lsn, int replayed);
/* 1 and *lsn when (node, plsn) was replayed without its settle in
 * fleet.order (forgotten by the call: settle it now). */
int bg__fleet_ids_unsettled_take(bg__fleet_ids *t, uint64_t node, uint64_t plsn, uint64_t *lsn);
/* 1 and the fleet id of local record lsn in buf when it is a peer's. */
int bg__fleet_ids_fid_of(bg__fleet_ids *t, uint64_t lsn, char *buf, size_t len);
/* Bytes held: the applied set (nodes, unsettled) and the index. */
void bg__fleet_ids_bytes(bg__fleet_ids *t, uint64_t *applied, uint64_t *index);

/* ------------------------------------------------------- fleet.order
 * The settle journal (fleet_order.c): one record per observation as it
 * joins a session's settled prefix, so that a restart restores the stream
 * order even when Redis no longer holds those entries. Appended by the
 * reader thread only; replayed at start; compacted by the reader. */
typedef struct bg__fleet_order bg__fleet_order;

/* new: close. Opens (creates) dir/fleet.order; *journaled_below: one past
 * the largest record number in it (0: none). */
int bg__fleet_order_open(const char *dir, bg__fleet_order **out, uint64_t *journaled_below,
                         bg_err *err);
void bg__fleet_order_close(bg__fleet_order *o);
/* One settle. A failed write is logged (the stream re-settles at start). */
void bg__fleet_order_append(bg__fleet_order *o, uint64_t lsn, const char *policy,
                            const char *session);
/* Calls settle for every journaled observation in order; returns how many. */
uint64_t bg__fleet_order_replay(bg__fleet_order *o,
                                void (*settle)(void *ctx, const char *policy, const char *session,
                                               uint64_t lsn),
                                void *ctx);
/* Rewrites the journal from the engine's settled prefixes (compact
 * encoding) when it has grown past twice its last compacted size plus
 * BG_FLEET_ORDER_SLACK bytes. Reader thread, between batches. */
#define BG_FLEET_ORDER_SLACK (64u * 1024u)
void bg__fleet_order_maybe_compact(bg__fleet_order *o, bg_engine *e);
/* Its size in bytes now. */
uint64_t bg__fleet_order_bytes(bg__fleet_order *o);

/* -------------------------------------------------------------- wire */

/* A stream entry's fields, borrowed from the reply they were read from. */
typedef struct bg__fleet_entry {
    const char *sid; /* the stream id ("1700000000000-0") */
    const char *id, *policy, *revision, *session, *origin;
    const char *obs;
    size_t obs_len;
} bg__fleet_entry;

/* One element of an XREAD reply's entry array ([id, [k, v, ...]]): 0 and
 * *out when it holds id, policy, session, obs and origin, each a string
 * without a NUL inside (revision optional); -1 otherwise. */
int bg__fleet_entry_parse(const redisReply *e, bg__fleet_entry *out);

#define BG_FLEET_SNAP_MAGIC "BGFSNAP1"

/* Limits of a snapshot item's strings (each + NUL fits the parser's
 * buffers); a longer one makes the snapshot malformed. */
#define BG_FLEET_FID_MAX 255
#define BG_FLEET_POLICY_MAX 255
#define BG_FLEET_SESSION_MAX 1023

/* Called per observation of a snapshot with NUL-terminated copies of its
 * strings (borrowed for the call) and its record (borrowed from the input).
 * A non-zero return stops the walk and is returned. */
typedef int (*bg__fleet_snap_cb)(void *ctx, const char *fid, const char *policy,
                                 const char *session, const uint8_t *rec, size_t len);

/* Walks data[0..len): the magic, then items of four strings (u32 LE length
 * + bytes). Returns 0 when every item was whole, -1 with why set when the
 * magic is wrong, an item is cut short, a string is over its limit or has
 * a NUL inside (cb has seen the items before it); a cb's non-zero return
 * otherwise. *n: items handed to cb. */
int bg__fleet_snap_walk(const uint8_t *data, size_t len, bg__fleet_snap_cb cb, void *ctx, size_t *n,
                        const char **why);

/* Appends one string (u32 LE length + bytes) to a growing buffer. */
typedef struct bg__fleet_buf {
    uint8_t *p;
    size_t len, cap;
} bg__fleet_buf;
int bg__fleet_buf_put(bg__fleet_buf *b, const void *d, size_t n);
/* Appends bytes as they are. BG_ENOMEM leaves b as it was. */
int bg__fleet_buf_raw(bg__fleet_buf *b, const void *d, size_t n);

/* ------------------------------------------------- fleet.c's inbox
 * What the reader thread does with what Redis returned, without Redis: for
 * bg_fleet_start and the fuzz harnesses (tests/fuzz/fuzz_fleet_*.c), which
 * call them on a fleet made by bg_fleet_create and attached to an engine,
 * with no thread started. */

/* Borrow e and store and restore the stream order from fleet.order, as
 * bg_fleet_start does before it starts the threads. */
void bg__fleet_attach(bg_fleet *f, bg_engine *e, bg_policy_store *store);

/* One XREAD reply ([[key, [entry...]]]): every entry applied, settled or
 * refused (fleet.h, inbox); from (from_len bytes) becomes the last entry's
 * stream id. Returns how many entries the reply held. */
size_t bg__fleet_read_reply(bg_fleet *f, const redisReply *r, char *from, size_t from_len);

/* A snapshot's bytes (the hash's data field), applied by the inbox rules;
 * sid names it in messages. Returns the observations handed over, or -1
 * when malformed (those before the damage are applied). */
long bg__fleet_snapshot_load(bg_fleet *f, const uint8_t *data, size_t len, const char *sid);

#endif
