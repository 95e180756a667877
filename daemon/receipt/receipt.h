/*
 * receipt.h — outcome receipts: a MAC the daemon gives with a decision and
 * takes back with its outcome.
 *
 * Why: an outcome report moves the posterior every later decision is made
 * from. Without receipts anyone who can reach Observe can report "harmless"
 * outcomes of actions that never ran and talk the bound down. A receipt is
 * minted by Evaluate for a decision that lets an action run (ALLOW), and an
 * Observe under a policy's `outcomes: receipts` is accepted only with one
 * that is authentic, unexpired, for the same policy, tool and arguments,
 * and not used before (the single-use record lives in the engine,
 * engine.h: bg_engine_observe_receipt, persisted in the observation log).
 * The receipt names the session key it was minted in (a two-level
 * policy's child key), and the Observe's outcome is recorded there: the
 * reporter (a tool runner under another uid, say) neither needs the
 * agent's identity nor can pick another session — the key is covered by
 * the tag.
 *
 * Token (version 2, little-endian), at most BG_RECEIPT_MAX bytes:
 *   u8 version=2 | u8 decision (bg_decision) | u8 flags (BG_RECEIPT_*) |
 *   u8 0 | i64 expiry (Unix ms) | u8 n + decision id | u8 n + revision |
 *   u16 n + session key | u64 digest(policy) | u64 digest(session spec) |
 *   u64 digest(tool) | 16 bytes SHA-256(arguments_json) prefix |
 *   32 bytes tag = HMAC-SHA256(key, "bayesguard receipt v2" NUL | every byte
 *                  above | u32 n + policy | u32 n + session spec |
 *                  u32 n + tool)
 * The tag covers the session key (in the body) and the full policy,
 * session spec and tool strings (the Observe's own, on verify); the 64-bit
 * digests (FNV-1a) only let a refusal say which of them differs. The
 * session spec (the policy's spec.session) says what the key means: a
 * reload that changes it voids the receipts minted before, so a key can
 * never be read under another keying (a context.session an agent chose,
 * "uid:5|x", read as uid 5's two-level key). The revision is carried,
 * not compared: a reload between Evaluate and Observe does not void
 * receipts. Version 1 (unreleased) bound the session key without carrying
 * it, so an Observe had to recompute it from its own caller; its tokens
 * are refused as malformed, naming the version — a distinct version (and
 * MAC domain) so no v1 token is ever parsed as a v2 one.
 *
 * Key: BG_RECEIPT_KEY_MIN..BG_RECEIPT_KEY_MAX raw bytes, from a file that
 * only its owner may read (mode & 077 == 0, else refused), that owner root
 * or the daemon's euid (another uid could read it and forge), or created there
 * (O_CREAT|O_EXCL, 0600, getrandom(2)), or random in memory.
 *
 * Cost: mint and verify are each one SHA-256 of the arguments and one
 * HMAC-SHA256 from the key's precomputed pad states (receipt.c): about
 * 0.65 us of CPU each for short arguments, plus ~0.6 ns per argument byte
 * (bench/rpc/bench_receipt.c; docs/PERFORMANCE.md).
 *
 * Threads: a key is immutable after load; mint and verify from any thread
 * at once. Ownership: _load/_random return new (bg_receipt_key_destroy).
 */
#ifndef BG_RECEIPT_H
#define BG_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_RECEIPT_VERSION 2
#define BG_RECEIPT_SESSION_MAX 1024 /* bytes of session key a receipt carries */
/* the largest token: header, id, revision, session, digests, tag */
#define BG_RECEIPT_MAX (12 + 1 + 255 + 1 + 255 + 2 + BG_RECEIPT_SESSION_MAX + 24 + 16 + 32)
#define BG_RECEIPT_KEY_MIN 32
#define BG_RECEIPT_KEY_MAX 1024
#define BG_RECEIPT_KEY_FILE "receipt.key" /* default, in --data-dir */

/* flags */
#define BG_RECEIPT_APPROVED 0x01u /* a person approved the action (escalation) */

typedef struct bg_receipt_key bg_receipt_key;

/* new: the key in `path`. A missing file is created (0600, random bytes)
 * when `create` is 1, else BG_ENOTFOUND. A file group or others may read,
 * one owned by neither root nor the daemon's euid,
 * not a regular file, or of a size outside [KEY_MIN, KEY_MAX]: BG_ECONFIG
 * naming it and the fix. *created (may be NULL) says whether it was made. */
int bg_receipt_key_load(const char *path, int create, bg_receipt_key **out, int *created,
                        bg_err *err);
/* new: a random key that lives only in memory. */
int bg_receipt_key_random(bg_receipt_key **out, bg_err *err);
/* new: a key from bytes (tests and benches). */
int bg_receipt_key_from(const uint8_t *bytes, size_t len, bg_receipt_key **out, bg_err *err);
void bg_receipt_key_destroy(bg_receipt_key *k);

/* What a receipt binds. Strings borrowed; ids and revision at most 255
 * bytes, the session key at most BG_RECEIPT_SESSION_MAX. */
typedef struct bg_receipt_claim {
    const char *policy;
    const char *revision;
    const char *session;      /* the resolved session key (mint only: verify reads the token's) */
    const char *session_spec; /* the policy's spec.session, as written; NULL = "" */
    const char *tool;
    const char *args; /* arguments_json, may be NULL (= "") */
    size_t args_len;
    int decision; /* bg_decision */
    const char *decision_id;
    int64_t expiry_unix_ms;
    unsigned flags; /* BG_RECEIPT_* */
} bg_receipt_claim;

/* Write the token into out[0..cap) (cap >= BG_RECEIPT_MAX is always
 * enough); returns its length, or 0 when an id, the revision or the
 * session key is too long or the MAC failed. */
size_t bg_receipt_mint(const bg_receipt_key *k, const bg_receipt_claim *c, uint8_t *out,
                       size_t cap);

/* Why a receipt was refused (BG_RECEIPT_OK: accepted). */
#define BG_RECEIPT_VERDICTS(X)                                                                     \
    X(BG_RECEIPT_OK, "ok")                                                                         \
    X(BG_RECEIPT_MISSING, "missing")                                                               \
    X(BG_RECEIPT_MALFORMED, "malformed")                                                           \
    X(BG_RECEIPT_OTHER_POLICY, "for another policy")                                               \
    X(BG_RECEIPT_OTHER_KEYING, "for another session keying")                                       \
    X(BG_RECEIPT_OTHER_TOOL, "for another tool")                                                   \
    X(BG_RECEIPT_OTHER_ARGS, "for other arguments")                                                \
    X(BG_RECEIPT_FORGED, "not authentic")                                                          \
    X(BG_RECEIPT_EXPIRED, "expired")

typedef enum bg_receipt_verdict {
#define BG_RECEIPT_ENUM(name, text) name,
    BG_RECEIPT_VERDICTS(BG_RECEIPT_ENUM)
#undef BG_RECEIPT_ENUM
} bg_receipt_verdict;

const char *bg_receipt_verdict_name(bg_receipt_verdict v);

/* What an accepted receipt says. */
typedef struct bg_receipt_info {
    int decision;
    unsigned flags;
    int64_t expiry_unix_ms;
    char decision_id[256];
    char revision[256];
    char session[BG_RECEIPT_SESSION_MAX + 1]; /* the session key it was minted in */
} bg_receipt_info;

/* Check tok[0..len) against what the Observe claims (c->policy,
 * session_spec, tool, args; the other fields of c, session included, are ignored: the token
 * names its session, info->session) at time now_unix_ms.
 * BG_RECEIPT_OK fills *info; any other verdict leaves a message in err
 * (code BG_EPERM) saying what is wrong and what to send instead. The tag
 * is compared in constant time (CRYPTO_memcmp). */
bg_receipt_verdict bg_receipt_verify(const bg_receipt_key *k, const uint8_t *tok, size_t len,
                                     const bg_receipt_claim *c, int64_t now_unix_ms,
                                     bg_receipt_info *info, bg_err *err);

/* The wall clock in Unix milliseconds (receipt expiries survive restarts). */
int64_t bg_receipt_now_ms(void);

#endif
