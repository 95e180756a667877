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
 *   fleet.c       the rest: ids, outbox, reader, applied set, lifecycle.
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
