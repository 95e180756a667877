/*
 * policy.h — operator policies: a validated, immutable snapshot of a policy
 * directory, and the store that swaps snapshots atomically on reload.
 *
 * A bg_policy_set is built beside the current one from a directory of YAML
 * files (several documents per file, several files per directory), fully
 * validated — schema, plugins loaded, each plugin's config validated by the
 * plugin, instances created — and only then published with one atomic
 * pointer store. Readers take a reference (bg_policy_store_acquire) and
 * drop it when their call is done; a set and its plugin instances are
 * freed when the last reference drops. A set that fails validation never
 * replaces the current one; the errors are kept for Status.
 *
 * Threads: acquire/unref/find/match from any thread, lock-free for readers
 * apart from the reference count. reload is serialised internally (a
 * second caller waits for the first). watch must be called on the loop
 * thread.
 */
#ifndef BG_POLICY_H
#define BG_POLICY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/bg_err.h"
#include "engine/engine.h"
#include "features/features.h"

typedef struct uv_loop_s uv_loop_t;
typedef struct bg_plugin_host bg_plugin_host;
struct bg_metrics_policy;

/* Which request field keys a policy's posterior. */
typedef enum bg_session_key {
    BG_SESSION_CONTEXT_SESSION = 0, /* "context.session" (default) */
    BG_SESSION_CONTEXT_AGENT = 1,   /* "context.agent" */
    BG_SESSION_GLOBAL = 2,          /* "global": one posterior for all */
    BG_SESSION_ATTRIBUTE = 3,       /* "attributes.<name>" */
    BG_SESSION_PEER_IDENTITY = 4,   /* "peer.identity": who the listener says calls */
    BG_SESSION_PEER_UID = 5,        /* "peer.uid": the kernel's uid of the caller */
} bg_session_key;

/* The name of the built-in catch-all policy: a tool no policy matches is
 * denied by it (bg_policy_set_catch_all). Reserved: no policy may take it. */
#define BG_POLICY_DEFAULT_DENY "default-deny"

typedef struct bg_policy {
    const char *name;
    const char *file; /* where it was defined, for messages */
    int line;
    bg_guard guard;     /* what the engine runs; instances owned here */
    int on_error_allow; /* on_error: allow (default deny) */
    bg_session_key session_key;
    const char *session_attr; /* for BG_SESSION_ATTRIBUTE */
    /* "peer.identity/context.session" (or peer.uid/...): the key is two
     * levels, the identity's session (parent) and identity|session (child);
     * see bg_policy_session_keys. session_key is then a PEER_ kind. */
    int session_two_level;
    const char *session_spec; /* spec.session as written, for Status */
    /* spec.features: the model's features computed from the action's JSON
     * arguments, one compiled expression each (daemon/features), in order;
     * or features_from_request: the request's own features are used. With
     * neither, a request that sends features is refused. */
    const bg_feature_expr *const *features;
    size_t n_features;
    int features_from_request;
    /* 1: the built-in default-deny catch-all: no model, no engine; every
     * Evaluate is DENY with harm_bound 1. */
    int builtin;
    int priority;      /* resolves overlapping matches, see POLICIES.md */
    int outcomes_open; /* outcomes: open (default receipts: Observe needs one) */
    /* spec.escalation (daemon/escalation): how long an ESCALATE verdict's
     * pending escalation waits for a person (timeout, default 15m), and
     * whether it then becomes ALLOW (on_timeout: allow) or DENY (default). */
    int64_t escalation_timeout_ms;
    int escalation_on_timeout_allow;
    /* spec.fleet (docs/FLEET.md): a verdict of a sidecar more than
     * fleet_max_lag_ms behind its fleet is DENY / ESCALATE (fleet_on_stale)
     * or stays as it is (BG_DECISION_ALLOW: on_stale allow). 0: no
     * freshness required (and none without --fleet). */
    int64_t fleet_max_lag_ms;
    bg_decision fleet_on_stale;
    const char *const *tools; /* spec.match.tools as written (names and globs) */
    size_t n_tools;
    /* A cache, the one field that changes in a published policy: this
     * policy's counters in the metrics registry, filled on first use by
     * bg_metrics_policy_of (daemon/metrics/metrics.h; idempotent, every
     * filler stores the same entry); NULL until then. */
    _Atomic(struct bg_metrics_policy *) metrics;
} bg_policy;

typedef struct bg_policy_set bg_policy_set;

/* Shared: ref-counted. */
void bg_policy_set_ref(bg_policy_set *s);
void bg_policy_set_unref(bg_policy_set *s);

const char *bg_policy_set_revision(const bg_policy_set *s); /* hex content hash */
size_t bg_policy_set_count(const bg_policy_set *s);
const bg_policy *bg_policy_set_at(const bg_policy_set *s, size_t i);
/* By name; NULL when absent. */
const bg_policy *bg_policy_set_find(const bg_policy_set *s, const char *name);
/* The policy whose match covers `tool`; NULL when none. */
const bg_policy *bg_policy_set_match(const bg_policy_set *s, const char *tool);
/* The built-in default-deny policy that answers for a tool no policy
 * matches (BG_POLICY_DEFAULT_DENY, builtin = 1); NULL when an operator's
 * policy matches "*" and so replaces it. bg_policy_set_find finds it by
 * name too. Borrowed from s. */
const bg_policy *bg_policy_set_catch_all(const bg_policy_set *s);

/* ------------------------------------------------------- session keys */

/* What a request says about who calls, for the session key. Strings are
 * borrowed, "" when absent. */
typedef struct bg_session_who {
    const char *session; /* context.session */
    const char *agent;   /* context.agent */
    const bg_attr *attributes;
    size_t n_attributes;
    const char *identity; /* the peer's, as the listener tells it; "" when it cannot */
    int has_uid;          /* 1: uid comes from the kernel (SO_PEERCRED) */
    uint32_t uid;
} bg_session_who;

/* The separator of a two-level key: child = identity "|" session. No
 * identity may contain it (a SPIFFE ID, a DNS or URI SAN and "uid:<n>"
 * cannot), so a child key never equals another identity's parent key. */
#define BG_SESSION_LEVEL_SEP '|'

/* The session key(s) policy p reads for a request from `who`: *key, and
 * for a two-level key also *parent (else NULL), written into buf[0..len)
 * or borrowed from who. A key of the peer (peer.identity, peer.uid) when
 * the listener cannot tell who calls (empty identity, no kernel uid), or
 * an identity containing BG_SESSION_LEVEL_SEP: BG_EUNSUPPORTED with a message
 * saying to use a unix socket or mTLS — never a shared "" session for
 * every anonymous caller. buf too small: BG_ELIMIT; len >=
 * strlen(identity) + strlen(session) + 32 always suffices. Pure: no state,
 * any thread. */
int bg_policy_session_keys(const bg_policy *p, const bg_session_who *who, char *buf, size_t len,
                           const char **key, const char **parent, bg_err *err);

/* ------------------------------------------------------- one decision
 * What a chosen policy does to one request (policy_decide.c): the daemon's
 * Guard service and `bayesguard test` both decide through these. */

/* act's features as p says: unchanged under spec.features from_request;
 * else computed from act->arguments_json by p's spec.features into
 * buf[0..p->n_features) and act->features pointed at it (a request that
 * sends its own is refused). BG_OK, or BG_EINVAL with msg[0..len) saying
 * what to fix, prefixed by `what` ("EvaluateRequest"). */
int bg_policy_action_features(const bg_policy *p, const char *what, bg_action *act, double *buf,
                              char *msg, size_t len);

/* The verdict of p for act: the built-in catch-all's DENY (no model, bound
 * 1); else the engine's for *session, and for a two-level key (parent not
 * NULL) the one of the child and the identity level with the larger bound
 * (a NaN bound counts as the larger), *session then naming the level that
 * decided — so a fresh child session is never laxer than its identity.
 * Engine errors as bg_engine_evaluate. */
int bg_policy_evaluate(bg_engine *e, const bg_policy *p, const char **session, const char *parent,
                       const bg_action *act, bg_verdict *v, bg_err *err);

/* Store obs for session, and for a two-level key also for parent: two
 * records in the observation log, one per session. First one token of
 * `who`'s observation rate (bg_engine_admit); the receipt (NULL: none) is
 * claimed with the child's record. The child first: a failure there stores
 * nothing; a failure of the parent after it is reported (a retry counts it
 * twice in the child only, which the parent's bound covers). *sum is the
 * child's. Errors as bg_engine_observe_owned. */
int bg_policy_observe(bg_engine *e, const bg_policy *p, const char *session, const char *parent,
                      const bg_observation *obs, const bg_obs_receipt *receipt, const char *who,
                      bg_posterior_summary *sum, bg_err *err);

/* A list of "file:line:col: message" errors. */
typedef struct bg_policy_errors {
    size_t n;
    char **msgs; /* owned */
} bg_policy_errors;
void bg_policy_errors_free(bg_policy_errors *e);

/* 1 when a file name is a policy unit test (`bayesguard test`): NAME_test.yaml
 * or NAME_test.yml, not hidden. Such files sit beside the policies; the
 * loader never reads them as policies (nor hashes them into the revision)
 * and the directory watch does not reload when they change. Pure. */
int bg_policy_is_test_file(const char *name);

/* Build and validate a set from dir without publishing it (for `check`).
 * On failure *out is NULL and errs lists every error found. */
int bg_policy_set_load(const char *dir, bg_plugin_host *host, bg_policy_set **out,
                       bg_policy_errors *errs);

/* ---------------------------------------------------------------- store */

typedef struct bg_policy_store bg_policy_store;

typedef struct bg_policy_status {
    char revision[65]; /* current */
    uint64_t policies;
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    int64_t last_success_unix_ms;
    int64_t last_attempt_unix_ms;
    char last_trigger[32];  /* "start" | "sighup" | "watch" | "rpc" */
    char last_errors[4096]; /* newline-separated, "" after a success */
} bg_policy_status;

/* Loads dir once; fails (with every error in err) if the first set is bad.
 * host is borrowed and must outlive the store. */
int bg_policy_store_create(const char *dir, bg_plugin_host *host, bg_policy_store **out,
                           bg_err *err);
void bg_policy_store_destroy(bg_policy_store *st);

/* Shared: the current set with a reference the caller drops with unref. */
bg_policy_set *bg_policy_store_acquire(bg_policy_store *st);

/* Synchronous reload. BG_OK when the new set is live (or unchanged);
 * BG_ECONFIG with the errors (the old set keeps serving). */
int bg_policy_store_reload(bg_policy_store *st, const char *trigger, bg_err *err);

void bg_policy_store_status(bg_policy_store *st, bg_policy_status *out);
/* The current set (a reference, as acquire) and the status of the reload
 * that published it, read together: the revision of the set is
 * out->revision and out->last_trigger is that reload's. */
bg_policy_set *bg_policy_store_acquire_status(bg_policy_store *st, bg_policy_status *out);

/* A watch on the store's directory: reloads when it changes (survives
 * Kubernetes ConfigMap ..data symlink swaps); bursts debounced by
 * debounce_ms; reloads run off the loop thread. At most one watch per store
 * (a second start: BG_EINVAL). start and stop on the loop thread. */
typedef struct bg_policy_watch bg_policy_watch;

/* new: *out until bg_policy_watch_stop. */
int bg_policy_watch_start(bg_policy_store *st, uv_loop_t *loop, unsigned debounce_ms,
                          bg_policy_watch **out, bg_err *err);
/* Stop watching (loop thread): waits for a watch-triggered reload running
 * on the worker pool, then closes the watch's handles; the loop must run
 * once more (uv_run, bg_loop_destroy) to finish closing them and free the
 * watch. w is invalid after the call; NULL is a no-op. Call it before
 * bg_policy_store_destroy (which asserts the store is no longer watched). */
void bg_policy_watch_stop(bg_policy_watch *w);

/* ---------------------------------------------------------------- check */

/* Validate dir exactly as a reload would (plugins from plugin_dir loaded,
 * every plugin config validated, instances created and destroyed) and
 * print every error, one per line, then a summary line, to out; when
 * valid, also every plugin with its description and config keys. Returns
 * 0 when valid, 1 when not (a policy error, or a file of plugin_dir that
 * failed to load: not a plugin, refused, or a name already taken), 2 when
 * plugin_dir cannot be used. Used by `bayesguard check` and
 * `bayesguardd --check`. */
int bg_policy_check_dir(const char *dir, const char *plugin_dir, FILE *out);
/* The same check and exit code, reported as one JSON document on out:
 * {"dir", "plugin_dir", "valid", "revision" (null when invalid), "errors"
 * [file:line:col: message], "plugin_errors" [...], "policies" [{name, file,
 * line, model, estimator, sampler, threshold, over_threshold, shadow,
 * priority, session, builtin, tools}], "plugins" [{kind, name, version,
 * file, abi, description, config [{key, type, desc}]}]}. */
int bg_policy_check_dir_json(const char *dir, const char *plugin_dir, FILE *out);

#endif
