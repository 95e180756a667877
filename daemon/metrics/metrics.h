/*
 * metrics.h — bayesguardd's Prometheus metrics: the registry the data plane
 * counts into, its text exposition (format 0.0.4), and the HTTP endpoint
 * that serves it on the loop thread (metrics_http.c).
 *
 * What is counted where:
 *   - per policy (bg_metrics_policy): evaluations by decision, shadow
 *     allows, on_error allows, an evaluation-duration histogram and
 *     observations by outcome, counted by the Guard handlers
 *     (daemon/rpc/rpc_svc_guard.c) on the completion-queue threads;
 *   - read at scrape time from the sources Guard.Status reads: the policy
 *     store (revision, policies, reloads), the engine (sessions, stored
 *     observations, bytes), the plugin host (plugin counters) and the
 *     sampled path's trainer (posterior searches: runs, reward
 *     evaluations, CPU time, the newest archive's size);
 *   - by collectors other modules register (bg_metrics_add_collector):
 *     the gRPC server exports its calls by method and code, in-flight
 *     calls and draining this way, and any later module can add its
 *     families without touching this registry.
 *
 * Why per-policy entries are keyed by name and never freed: Prometheus
 * counters never go down, and a reload builds new bg_policy objects for the
 * same policies. An entry is created once per name (get-or-create under the
 * registry mutex) and lives until bg_metrics_destroy, so a policy's counts
 * continue across any number of reloads; a policy removed by a reload keeps
 * its last values.
 *
 * How the request path finds its entry without a name lookup: bg_policy has
 * a cache slot (`metrics`) that bg_metrics_policy_of fills on the policy's
 * first use. The cache is keyed by the policy object itself, so it lives and
 * dies with the policy (no stale entry when a freed policy's address is
 * reused, no binding step in the policy module, which only knows the slot as
 * an opaque pointer). Filling it is idempotent — every thread that races on
 * the first use stores the same entry — so after that a request costs one
 * acquire load and a few relaxed atomic adds: no lock, no allocation, no
 * string compare. A policy set is counted by one registry (the slot holds
 * that registry's entry).
 *
 * Invariants:
 *   1. Entries are only added, never removed or moved before destroy; the
 *      list is read at scrape time under the mutex.
 *   2. Hot-path counters are relaxed atomics; a scrape may see counters of
 *      one request partly updated, but never a counter going down.
 *   3. A histogram's _count is the sum of the bucket counts read in the same
 *      scrape, so _count always equals the +Inf bucket and buckets are
 *      cumulative.
 *
 * Threads: bg_metrics_policy_of, bg_metrics_evaluation and
 * bg_metrics_observation from any thread, lock-free once the slot is
 * filled. Collectors (add/remove) and rendering from any thread, serialised
 * by the registry mutex; collectors run under it and must not call back
 * into the registry. The HTTP endpoint on the loop thread only.
 *
 * Ownership: the registry borrows everything in its opts (they must outlive
 * it); entries are owned by the registry; rendered text is new (free()).
 */
#ifndef BG_METRICS_H
#define BG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

typedef struct bg_metrics bg_metrics;
typedef struct bg_metrics_policy bg_metrics_policy;
typedef struct bg_metrics_writer bg_metrics_writer;

typedef struct bg_metrics_opts {
    const char *version;         /* bayesguard_build_info{version}; borrowed */
    bg_policy_store *store;      /* revision, policies, reloads; may be NULL */
    bg_engine *engine;           /* sessions, stored observations, bytes; may be NULL */
    bg_plugin_host *plugins;     /* plugin counters; may be NULL */
    bg_sampled_trainer *sampled; /* posterior search counters; may be NULL */
} bg_metrics_opts;

/* new: destroy (after every policy set counted into it is gone or no
 * longer used, and after every collector was removed or can no longer be
 * called). */
int bg_metrics_create(const bg_metrics_opts *opts, bg_metrics **out, bg_err *err);
void bg_metrics_destroy(bg_metrics *m);

/* ---------------------------------------------------------- hot path */

/* p's entry (get-or-create by p->name on first use, cached in p). Never
 * NULL: when out of memory, a shared fallback entry labelled
 * policy="(unaccounted)" counts instead, so a count is never lost. */
bg_metrics_policy *bg_metrics_policy_of(bg_metrics *m, const bg_policy *p);

/* One decision made: the decision sent, shadow_allowed (shadow mode let an
 * action through that enforce mode would have denied or escalated),
 * on_error_allowed (the engine failed and the policy's on_error: allow made
 * it ALLOW), and the time from the call's arrival to the verdict. */
void bg_metrics_evaluation(bg_metrics_policy *e, bg_decision d, int shadow_allowed,
                           int on_error_allowed, uint64_t elapsed_ns);
/* One observation stored. */
void bg_metrics_observation(bg_metrics_policy *e, int harmed);

/* ---------------------------------------------------------- collectors */

/* Called at every scrape, after the registry's own families, to append
 * families through the writer (under the registry mutex: do not call into
 * the registry). */
typedef void (*bg_metrics_collect_fn)(void *arg, bg_metrics_writer *w);
/* BG_OK or BG_ENOMEM. The pair (fn, arg) is borrowed until removed. */
int bg_metrics_add_collector(bg_metrics *m, bg_metrics_collect_fn fn, void *arg);
/* Remove the pair (no-op when absent); no call of fn(arg) runs after it
 * returns. */
void bg_metrics_remove_collector(bg_metrics *m, bg_metrics_collect_fn fn, void *arg);

/* ---------------------------------------------------------- writer */

typedef struct bg_metrics_label {
    const char *name;  /* a valid label name, e.g. "policy" */
    const char *value; /* any UTF-8 text: escaped (\\, \", \n) when written */
} bg_metrics_label;

/* X(id, type) — the metric types of the text format. */
#define BG_METRIC_TYPES(X)                                                                         \
    X(BG_METRIC_COUNTER, "counter")                                                                \
    X(BG_METRIC_GAUGE, "gauge")                                                                    \
    X(BG_METRIC_HISTOGRAM, "histogram")

typedef enum bg_metric_type {
#define BG_METRIC_TYPE_ENUM(id, text) id,
    BG_METRIC_TYPES(BG_METRIC_TYPE_ENUM)
#undef BG_METRIC_TYPE_ENUM
} bg_metric_type;

/* "# HELP name help" (help escaped) and "# TYPE name type": once per family,
 * before its samples. name must match [a-zA-Z_:][a-zA-Z0-9_:]*. */
void bg_metrics_write_family(bg_metrics_writer *w, const char *name, bg_metric_type type,
                             const char *help);
/* "name{l1="v1",...} value": integers below 2^53 exactly, otherwise the
 * shortest of %.15g..%.17g that reads back as the same double;
 * +Inf, -Inf, NaN as the format spells them. */
void bg_metrics_write_sample(bg_metrics_writer *w, const char *name, const bg_metrics_label *labels,
                             size_t n_labels, double value);
/* 1 when name is a valid metric name. */
int bg_metrics_name_ok(const char *name);

/* ---------------------------------------------------------- exposition */

/* The whole exposition text. *text is new (free()), NUL-terminated, *len
 * bytes. BG_OK or BG_ENOMEM. */
int bg_metrics_render(bg_metrics *m, char **text, size_t *len);

#define BG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---------------------------------------------------------- HTTP endpoint */

/* A minimal HTTP/1.1 server on the loop: GET or HEAD /metrics (the
 * exposition), / (an index), anything else 404, other methods 405, bad
 * requests 400, request heads over 8 KiB 431. One request per connection
 * (Connection: close); a connection that has not sent its whole request
 * within timeout_ms is closed; beyond max_conns open connections a new one
 * is closed at once. Rendering runs on the loop thread; the loop never
 * blocks on a client. */
typedef struct bg_metrics_http bg_metrics_http;

typedef struct bg_metrics_http_opts {
    const char *listen;  /* "host:port" (port 0: the kernel picks), "[v6]:port" */
    unsigned timeout_ms; /* 0 = 10000 */
    unsigned max_conns;  /* 0 = 64 */
} bg_metrics_http_opts;

#define BG_METRICS_HTTP_MAX_HEAD 8192

typedef struct uv_loop_s uv_loop_t;

/* Loop thread (or before the loop runs). new: close. Fails with a message
 * naming the address and --metrics-listen when it cannot listen there. m
 * and loop are borrowed until the close finished (the loop ran once more
 * after bg_metrics_http_close). */
int bg_metrics_http_start(bg_metrics *m, uv_loop_t *loop, const bg_metrics_http_opts *opts,
                          bg_metrics_http **out, bg_err *err);
/* The bound address with its real port ("127.0.0.1:41234"); valid until
 * close. */
const char *bg_metrics_http_bound(const bg_metrics_http *h);
/* Loop thread: stop listening and close every connection (a response being
 * written is cut). h is freed once libuv closed its handles (the loop must
 * run again: bg_loop_run or bg_loop_destroy); h must not be used after this
 * call. NULL is fine. */
void bg_metrics_http_close(bg_metrics_http *h);

/* The request parser of the endpoint, pure (no connection, no I/O): what
 * the server answers to the head read so far. Internal; the server's read
 * callback and tests/fuzz call it. */
typedef struct bg__http_answer {
    int code;                  /* 200, 400, 404, 405, 431, 505 */
    const char *reason;        /* "Bad Request" */
    const char *extra_headers; /* NULL, or header lines ending in CRLF */
    const char *body;          /* text/plain body (static or msg); NULL when metrics */
    int metrics;               /* 1: answer with the rendered metrics */
    int head_only;             /* 1: send the headers without the body (HEAD) */
    char msg[160];             /* backs body for some 400s */
} bg__http_answer;

/* head[0..len) is what a connection read so far, head[from..len) the bytes
 * just read; head has room for BG_METRICS_HTTP_MAX_HEAD bytes (len <= that).
 * Returns 1 with *a filled when the server answers now (a whole head, or
 * one that is bad already), 0 when it reads on. Writes into head (NUL
 * terminators) once it answers. */
int bg__metrics_http_scan(char *head, size_t from, size_t len, bg__http_answer *a);

#endif
