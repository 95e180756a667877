/*
 * rpc_priv.h — what the files of daemon/rpc share: the server, the
 * completion-queue threads, the per-call state machine, the method table
 * and the handlers. Not for use outside daemon/rpc.
 *
 * Files, each calling only into the files below it (by name); the files
 * below reach the ones above only through the function pointers of the
 * method table, so no two files call each other round:
 *   rpc_server.c          bind, threads, drain, destroy (the public API)
 *   rpc_svc_guard.c       Evaluate, Observe, ObserveStream
 *   rpc_svc_admin.c       Status, Reload
 *   rpc_svc_health.c      Health Check/Watch, Bench Ping, unknown methods
 *   rpc_svc_escalation.c  ListEscalations, WatchEscalations, ResolveEscalation,
 *                         AwaitDecision: the table's events, parked awaits,
 *                         watchers, the expiry tick on the loop
 *   rpc_call.c            the call object: request posting, state machine,
 *                         arena, replies, streams; dispatch through the table
 *   rpc_listen.c          listeners: their roles, unix sockets (mode, group,
 *                         our accept loop and SO_PEERCRED), TLS credentials,
 *                         and who is calling (bg_peer) and may they (roles);
 *                         it answers no call: the dispatch does
 *   rpc_server_metrics.c  the server's metrics families (calls by method and
 *                         code, in flight, draining) and counting a finished call
 *   rpc_methods.c         the method table (BG_RPC_METHODS as data) and names
 */
#ifndef BG_RPC_PRIV_H
#define BG_RPC_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "common/bg_assert.h"
#include "rpc/rpc.h"
#include "rpc/rpc_wire.h"

typedef struct bg__rpc_call bg__rpc_call;
typedef struct bg__rpc_cq bg__rpc_cq;

/* Every tag handed to gRPC starts with its completion callback; the CQ
 * thread calls tag->cb(tag, ok) for each event. */
typedef struct bg__rpc_tag {
    void (*cb)(struct bg__rpc_tag *t, int ok);
} bg__rpc_tag;

/* Roles: what a listener serves (--listen agent,health@ADDR). A method
 * needs one role (the table's `role` column), checked in one place when a
 * call arrives (bg__rpc_authorize). BENCH is no listener's to name: every
 * listener has it with --enable-bench. */
#define BG_RPC_ROLES(X)                                                                            \
    X(BG_ROLE_AGENT, "agent")                                                                      \
    X(BG_ROLE_REPORTER, "reporter")                                                                \
    X(BG_ROLE_OPERATOR, "operator")                                                                \
    X(BG_ROLE_HEALTH, "health")                                                                    \
    X(BG_ROLE_BENCH, "bench")

enum {
#define BG_RPC_ROLE_ENUM(id, name) id,
    BG_RPC_ROLES(BG_RPC_ROLE_ENUM)
#undef BG_RPC_ROLE_ENUM
        BG_ROLE__COUNT,
    BG_ROLE_NONE = -1 /* BG_M_UNKNOWN: answered UNIMPLEMENTED, whoever asks */
};
#define BG_ROLE_BIT(r) (1u << (r))
/* What a bare --listen ADDR serves: every role a listener can name. */
#define BG_ROLES_ALL                                                                               \
    (BG_ROLE_BIT(BG_ROLE_AGENT) | BG_ROLE_BIT(BG_ROLE_REPORTER) | BG_ROLE_BIT(BG_ROLE_OPERATOR) |  \
     BG_ROLE_BIT(BG_ROLE_HEALTH))

/* The method table: every method the server serves, and every hook by
 * which rpc_call.c and rpc_server.c reach the service that serves it.
 *
 *   X(id, path, role, client_streaming, while_draining,
 *     start, on_recv, on_send, on_drain, on_deadline)
 *
 *   path              the full gRPC path; NULL for BG_M_UNKNOWN (last), the
 *                     catch-all for unregistered paths
 *   role              the role a listener must serve for the call to reach
 *                     start (BG_ROLE_*); others are PERMISSION_DENIED
 *   client_streaming  1: no payload at arrival, the handler reads the stream
 *   while_draining    1: still served while draining (health); the others
 *                     are answered UNAVAILABLE once the drain began
 *   start             the handler: CQ thread, state ACTIVE, holding one ref;
 *                     must end in reply/fail/defer/stream (never NULL)
 *   on_recv           a receive batch completed (a client stream message or
 *                     the client's close); NULL: the method starts none
 *   on_send           a send batch of a server stream completed (ok = sent);
 *                     NULL: the only send is the final one (FINISHING): the
 *                     call drops the batch's reference
 *   on_drain          loop thread, when the drain begins (and again at
 *                     shutdown): end what would keep a call open forever
 *   on_deadline       loop thread, when the drain deadline passed: answer
 *                     what is still waiting on the loop
 * NULL hooks are not called. */
/* clang-format off */
#define BG_RPC_METHODS(X)                                                                        \
    X(BG_M_EVALUATE, "/bayesguard.v1.Guard/Evaluate", BG_ROLE_AGENT, 0, 0,                       \
      bg__svc_evaluate, NULL, NULL, NULL, NULL)                                                  \
    X(BG_M_OBSERVE, "/bayesguard.v1.Guard/Observe", BG_ROLE_REPORTER, 0, 0,                      \
      bg__svc_observe, NULL, NULL, NULL, NULL)                                                   \
    X(BG_M_OBSERVE_STREAM, "/bayesguard.v1.Guard/ObserveStream", BG_ROLE_REPORTER, 1, 0,         \
      bg__svc_observe_stream, bg__svc_observe_stream_recv, NULL, NULL, NULL)                     \
    X(BG_M_STATUS, "/bayesguard.v1.Guard/Status", BG_ROLE_OPERATOR, 0, 0,                        \
      bg__svc_status, NULL, NULL, NULL, NULL)                                                    \
    X(BG_M_RELOAD, "/bayesguard.v1.Guard/Reload", BG_ROLE_OPERATOR, 0, 0,                        \
      bg__svc_reload, NULL, NULL, NULL, NULL)                                                    \
    X(BG_M_LIST_ESCALATIONS, "/bayesguard.v1.Guard/ListEscalations", BG_ROLE_OPERATOR, 0, 0,     \
      bg__svc_list_escalations, NULL, NULL, NULL, NULL)                                          \
    X(BG_M_WATCH_ESCALATIONS, "/bayesguard.v1.Guard/WatchEscalations", BG_ROLE_OPERATOR, 0, 0,   \
      bg__svc_esc_watch, bg__svc_esc_watch_closed, bg__svc_esc_watch_sent,                       \
      bg__svc_esc_watch_end_all, NULL)                                                           \
    X(BG_M_RESOLVE_ESCALATION, "/bayesguard.v1.Guard/ResolveEscalation", BG_ROLE_OPERATOR, 0, 0, \
      bg__svc_resolve_escalation, NULL, NULL, NULL, NULL)                                        \
    X(BG_M_AWAIT_DECISION, "/bayesguard.v1.Guard/AwaitDecision", BG_ROLE_AGENT, 0, 0,            \
      bg__svc_await, bg__svc_await_closed, NULL, bg__svc_await_end_all, NULL)                    \
    X(BG_M_PING, "/bayesguard.v1.Bench/Ping", BG_ROLE_BENCH, 0, 0,                               \
      bg__svc_ping, NULL, NULL, NULL, bg__svc_ping_flush)                                        \
    X(BG_M_HEALTH_CHECK, "/grpc.health.v1.Health/Check", BG_ROLE_HEALTH, 0, 1,                   \
      bg__svc_health_check, NULL, NULL, NULL, NULL)                                              \
    X(BG_M_HEALTH_WATCH, "/grpc.health.v1.Health/Watch", BG_ROLE_HEALTH, 0, 1,                   \
      bg__svc_health_watch, bg__svc_health_watch_closed, bg__svc_health_watch_sent,              \
      bg__svc_health_end_watches, NULL)                                                          \
    X(BG_M_UNKNOWN, NULL, BG_ROLE_NONE, 1, 0,                                                    \
      bg__svc_unknown, NULL, NULL, NULL, NULL)

enum {
#define BG_RPC_METHOD_ENUM(id, ...) id,
    BG_RPC_METHODS(BG_RPC_METHOD_ENUM)
#undef BG_RPC_METHOD_ENUM
    BG_M__COUNT
};
/* clang-format on */

/* One row of the table (rpc_methods.c), the columns above. */
typedef struct bg__rpc_method {
    const char *path;
    int role;
    int client_streaming;
    int while_draining;
    void (*start)(bg__rpc_call *c);
    void (*on_recv)(bg__rpc_call *c, int ok);
    void (*on_send)(bg__rpc_call *c, int ok);
    void (*on_drain)(bg_rpc_server *s);
    void (*on_deadline)(bg_rpc_server *s);
} bg__rpc_method;

/* Call states (see the diagram in rpc_call.c). */
#define BG_CALL_STATES(X)                                                                          \
    X(BG_CALL_FREE)                                                                                \
    X(BG_CALL_REQUESTED)                                                                           \
    X(BG_CALL_ACTIVE)                                                                              \
    X(BG_CALL_DEFERRED)                                                                            \
    X(BG_CALL_STREAMING)                                                                           \
    X(BG_CALL_FINISHING)

enum bg__call_state {
#define BG_CALL_STATE_ENUM(s) s,
    BG_CALL_STATES(BG_CALL_STATE_ENUM)
#undef BG_CALL_STATE_ENUM
};

#define BG_CALL_ARENA 6144

/* Who is calling, as the listener that accepted the call can tell: uid,
 * gid and pid read by the kernel (SO_PEERCRED) on a unix socket, the
 * client certificate's SPIFFE ID or SAN under mTLS. identity is what
 * policies key sessions by (`session: peer.identity`): "uid:<n>" on a unix
 * socket, the certificate's identity under mTLS, "" when the listener
 * cannot tell (plain TCP). Filled when the call arrives, before its
 * handler runs; read-only after. */
typedef struct bg_peer {
    int has_cred; /* 1: uid, gid and pid come from the kernel */
    uint32_t uid, gid;
    int32_t pid;
    char identity[256];
} bg_peer;

struct bg__rpc_call {
    bg__rpc_tag req_tag;  /* the requested call arrived (or the server shut down) */
    bg__rpc_tag send_tag; /* a send batch completed */
    bg__rpc_tag recv_tag; /* a receive (message or close) completed */
    bg_rpc_server *srv;
    bg__rpc_cq *cq; /* whose free list and completion queue */
    int listener;   /* index in srv->ls: whose server the call was requested on */
    int method;
    _Atomic int state;
    atomic_int refs;  /* outstanding batches + 1 while a holder has it */
    atomic_int sends; /* send batches in flight: 0 or 1 (invariant 2 of rpc_call.c) */
    bg__rpc_call *next_free;

    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* BG_M_UNKNOWN only */
    grpc_byte_buffer *payload; /* request (unary) or last stream message */
    grpc_byte_buffer *resp;
    int cancelled;     /* RECV_CLOSE_ON_SERVER result */
    int close_started; /* RECV_CLOSE_ON_SERVER issued */
    grpc_slice status_msg;
    uint64_t start_ns;
    bg_peer peer; /* the caller (see bg_peer); zero until the listener code fills it */

    /* Handler state that outlives the handler (streams, deferred work). */
    void *user;
    uint64_t count;
    int init_md_sent;
    /* Health Watch: linked in srv->watchers under srv->watch_mu. */
    bg__rpc_call *watch_next;
    int watch_sending; /* a send batch is in flight */
    int watch_final;   /* drain asked to end the stream */
    int watch_listed;
    int admitted; /* counted in srv->working */
    int handled;  /* counted in srv->handled (once per call) */

    /* Per-call bump allocator for decoding and building replies. */
    ProtobufCAllocator alloc;
    size_t arena_used;
    void *overflow;        /* malloc'd blocks chained through their first word */
    size_t overflow_bytes; /* their total, capped by BG_CALL_OVERFLOW_FACTOR */
    int overflow_capped;   /* an allocation was refused by that cap */
    _Alignas(max_align_t) unsigned char arena[BG_CALL_ARENA];
};

struct bg__rpc_cq {
    grpc_completion_queue *cq;
    pthread_t thread;
    int index;
    bg_rpc_server *srv;
    pthread_mutex_t mu; /* guards free_list and allocated */
    bg__rpc_call *free_list;
    uint64_t allocated; /* call objects created for this CQ */
};

/* How a listener's connections arrive, and so what it can tell of them. */
enum {
    BG_LISTEN_TCP,  /* plain TCP (gRPC's port): no identity */
    BG_LISTEN_TLS,  /* TLS (gRPC's port): the client certificate's identity under mTLS */
    BG_LISTEN_UNIX, /* our socket and accept loop: SO_PEERCRED per connection */
};

/* One --listen: its own grpc_server (so a call knows the listener it came
 * in on: the server it was requested from), its roles and its socket.
 * Written during start only; read-only afterwards (rpc_listen.c). */
typedef struct bg__rpc_listener {
    bg_rpc_server *srv;
    int index;
    int kind;            /* BG_LISTEN_* */
    grpc_server *server; /* NULL until created */
    void *reg[BG_M__COUNT];
    unsigned roles; /* BG_ROLE_BIT mask */
    int bare;       /* no roles named: every role */
    char *addr;     /* the address without roles or options ("unix:/p", "host:port") */
    char roles_text[64];
    uint32_t *uids; /* unix: the allow-list (?uids=); n_uids 0: any uid */
    size_t n_uids;
    int fd;             /* unix: our listening socket, -1 once closed */
    int unlink_at_exit; /* unix: the socket file is ours */
    uv_poll_t *poll;    /* unix: readable -> accept (loop thread) */
    bg__rpc_tag shutdown_tag;
} bg__rpc_listener;

/* An `identities` entry: the roles an identity is narrowed to. */
typedef struct bg__rpc_identity {
    char *id; /* "*": every identity not listed */
    unsigned roles;
} bg__rpc_identity;

/* What our accept loop learned of a unix connection, by its fd. */
typedef struct bg__rpc_conn {
    int used;
    int listener;
    uint32_t uid, gid;
    int32_t pid;
} bg__rpc_conn;

struct bg_rpc_server {
    bg_rpc_opts opts;
    bg__rpc_listener *ls; /* one per --listen */
    size_t n_ls;
    unsigned shut_pending; /* listener servers whose shutdown tag has not fired */
    bg__rpc_identity *ids; /* --identities */
    size_t n_ids;
    grpc_server_credentials *fd_creds; /* insecure: unix connections handed to gRPC */
    pthread_mutex_t conn_mu;           /* guards conns */
    bg__rpc_conn *conns;               /* by fd; written at accept (loop thread) */
    size_t n_conns;
    uv_timer_t *accept_retry; /* out of fds: accepting resumes when it fires (loop thread) */
    bg__rpc_cq *cqs;
    unsigned n_cq;
    unsigned n_threads;  /* CQ threads running (cqs[0..n_threads)) */
    unsigned prerequest; /* outstanding requests per method per CQ */
    char **bound;
    size_t n_bound;
    size_t max_message;

    atomic_int draining;
    atomic_int shutting_down; /* no more requests may be posted */
    atomic_uint_fast64_t in_flight;
    uint64_t boot_id;
    atomic_uint_fast64_t decisions;
    /* Finished calls by method and status code (bayesguard_grpc_handled_total). */
    atomic_uint_fast64_t handled[BG_M__COUNT][BG_RPC_N_CODES];
    uint64_t started_ns;

    pthread_mutex_t watch_mu;
    bg__rpc_call *watchers;

    int grpc_inited; /* grpc_init ran: destroy shuts down and calls grpc_shutdown */
    int started;     /* the listeners' servers were started */
    /* Shutdown notification: set by the listeners' tags on a CQ thread. */
    pthread_mutex_t shut_mu;
    pthread_cond_t shut_cv;
    int shut_started;
    int shut_done;
    /* Drain (loop thread only). */
    bg_loop_fn drain_done;
    void *drain_arg;
    uv_timer_t *drain_timer;
    uint64_t drain_start_ns;
    unsigned drain_timeout_ms, drain_grace_ms;
    int drain_cancelled;
    atomic_uint_fast64_t working; /* admitted calls (past the draining check) */
    struct ping_job *pings;       /* delayed Pings waiting on the loop */

    /* Escalations (rpc_svc_escalation.c); esc_mu is taken under the
     * table's lock (its events), never the other way round. */
    pthread_mutex_t esc_mu;
    struct esc_await *awaits; /* parked AwaitDecision calls, under esc_mu */
    size_t n_awaits;
    struct esc_watch *esc_watchers; /* WatchEscalations streams, under esc_mu */
    size_t n_esc_watchers;
    uv_timer_t *esc_tick; /* expiry and await timeouts (loop thread) */
    int esc_listening;    /* the table's events come here */
};

/* The calls being served (invariant 3 of rpc_call.c); any thread. */
static inline uint64_t bg__rpc_in_flight(const bg_rpc_server *s)
{
    return atomic_load(&((bg_rpc_server *)s)->in_flight);
}

/* ---- rpc_methods.c */
/* The table, indexed by method id: BG_RPC_METHODS as data. */
extern const bg__rpc_method bg__rpc_methods[BG_M__COUNT];
/* The full path of a method ("/bayesguard.v1.Guard/Evaluate"); NULL for
 * BG_M_UNKNOWN or an id out of range. */
const char *bg__rpc_method_name(int method);
/* c's path for messages; "(unknown method)" for BG_M_UNKNOWN. */
const char *bg__rpc_method_path(const bg__rpc_call *c);

/* The role's name ("agent"); "?" out of range. */
const char *bg__rpc_role_name(int role);

/* ---- rpc_listen.c */
/* Parse every --listen and --identities, make the listeners' grpc_servers
 * (with the method table registered and the CQs), bind them (unix sockets
 * with their mode and group; TLS where configured). Start time, loop
 * thread; on failure the caller destroys s (bg__rpc_listen_close). */
int bg__rpc_listen_open(bg_rpc_server *s, const grpc_channel_args *args, bg_err *err);
/* After grpc_server_start: accept on the unix sockets (loop thread). */
int bg__rpc_listen_accept_start(bg_rpc_server *s, bg_err *err);
/* Stop accepting and close the unix sockets (loop thread; idempotent). */
void bg__rpc_listen_stop_accepting(bg_rpc_server *s);
/* Free what open made and unlink the socket files (after the servers are
 * destroyed). */
void bg__rpc_listen_close(bg_rpc_server *s);
/* A call arrived (ACTIVE, CQ thread): fill c->peer and check the method's
 * role against the listener and the identities map. Returns GRPC_STATUS_OK
 * to go on, else the code to answer with (PERMISSION_DENIED) and why in
 * `why` (cap bytes); the caller answers. */
grpc_status_code bg__rpc_authorize(bg__rpc_call *c, char *why, size_t cap);

/* ---- rpc_call.c */
/* Post a fresh request for `method` of listener l on cq (CQ thread, or
 * start before the threads run); nothing once srv->shutting_down is set. */
void bg__rpc_call_request(bg_rpc_server *s, bg__rpc_cq *cq, int listener, int method);
void bg__rpc_call_release(bg__rpc_call *c); /* drop one ref; recycle at zero */
void bg__rpc_call_free_all(bg__rpc_cq *cq);
const char *bg__rpc_call_state_name(int st);

#define BG_CALL_BIT(st) (1u << (st))
/* Stop (BG_ASSERT: file:line, method, state) when c is not in one of the
 * states of `mask` (BG_CALL_BIT(...) | ...). */
#define BG_CALL_ASSERT(c, mask)                                                                    \
    do {                                                                                           \
        int st_ = atomic_load(&(c)->state);                                                        \
        BG_ASSERT((BG_CALL_BIT(st_) & (mask)) != 0,                                                \
                  "rpc call %p (%s) in state %s: not allowed here", (const void *)(c),             \
                  bg__rpc_method_path(c), bg__rpc_call_state_name(st_));                           \
    } while (0)

/* Decoded messages may take at most this many times --max-message-bytes
 * of memory beyond the call's arena: protobuf's smallest encodings (an
 * empty map entry is 2 bytes) decode to far larger structs. */
#define BG_CALL_OVERFLOW_FACTOR 4
void *bg__rpc_call_alloc(bg__rpc_call *c, size_t n);
/* Free the overflow blocks (the arena is reset by the caller). */
void bg__rpc_call_free_overflow(bg__rpc_call *c);
char *bg__rpc_call_strdup(bg__rpc_call *c, const char *s);
/* Decode c->payload as desc using the call's arena; NULL when malformed. */
void *bg__rpc_call_decode(bg__rpc_call *c, const ProtobufCMessageDescriptor *desc);
/* The same, but a malformed request is answered INVALID_ARGUMENT naming
 * the expected message type (then NULL is returned and c is finished). */
void *bg__rpc_call_decode_or_fail(bg__rpc_call *c, const ProtobufCMessageDescriptor *desc);

/* Finish a unary call with msg (status OK) or with an error status whose
 * message says what to fix: ACTIVE, DEFERRED or STREAMING -> FINISHING.
 * Both take the holder's reference. */
void bg__rpc_call_reply(bg__rpc_call *c, const ProtobufCMessage *msg);
void bg__rpc_call_fail(bg__rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* ACTIVE -> DEFERRED: the handler hands the call (and its reference) to
 * the loop, which answers it with reply/fail. */
void bg__rpc_call_defer(bg__rpc_call *c);
/* Server stream (Watch): ACTIVE -> STREAMING and RECV_CLOSE_ON_SERVER, which
 * completes on the method's on_recv. Takes a new ref for the batch. */
int bg__rpc_call_server_stream(bg__rpc_call *c);
/* Send one message on a server stream (STREAMING): SEND_INITIAL_METADATA
 * the first time. final: also send status OK (-> FINISHING). Completes on
 * the method's on_send; at most one at a time. Takes a new ref for the
 * batch. */
int bg__rpc_call_stream_send(bg__rpc_call *c, const ProtobufCMessage *msg, int final);
/* Client stream: ACTIVE or STREAMING -> STREAMING and RECV_MESSAGE into
 * c->payload, which completes on the method's on_recv (NULL payload: the
 * client half-closed). The holder's reference covers it. */
int bg__rpc_call_stream_recv(bg__rpc_call *c);
/* End a server stream with an error status (STREAMING -> FINISHING);
 * takes a new ref for the batch (no send may be in flight). */
void bg__rpc_call_stream_fail(bg__rpc_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Park a unary call (AwaitDecision): ACTIVE -> DEFERRED and
 * RECV_CLOSE_ON_SERVER, which completes on the method's on_recv when the
 * client goes away or after the reply; takes a new ref for that batch. The
 * holder's reference goes with the call to whoever answers it (reply/fail,
 * from any thread). */
int bg__rpc_call_park(bg__rpc_call *c);
/* A stream ended without a status (cancelled, connection gone): STREAMING
 * -> FINISHING, nothing more is sent, the holder's reference is dropped. */
void bg__rpc_call_abandon(bg__rpc_call *c);

/* Map an engine/policy status to a gRPC code. */
grpc_status_code bg__rpc_code_of(int bg_status);

/* ---- rpc_server_metrics.c */
/* Count c as finished with `code`, once per call (later calls are no-ops);
 * a call recycled without a status sent counts as CANCELLED. Any thread. */
void bg__rpc_count_handled(bg__rpc_call *c, grpc_status_code code);
/* Register / remove the server's metrics collector (loop thread). */
int bg__rpc_metrics_start(bg_rpc_server *s, bg_err *err);
void bg__rpc_metrics_stop(bg_rpc_server *s);

/* ---- the services (rpc_svc_*.c): the hooks of the method table, called
 * only through it (see BG_RPC_METHODS for when each runs). */
/* rpc_svc_guard.c */
void bg__svc_evaluate(bg__rpc_call *c);
void bg__svc_observe(bg__rpc_call *c);
void bg__svc_observe_stream(bg__rpc_call *c);
void bg__svc_observe_stream_recv(bg__rpc_call *c, int ok);
/* For tests/fuzz only (no gRPC call: c->call is NULL, c->srv a server
 * struct with opts.store, opts.engine and max_message set): what Evaluate
 * or Observe does with `req` (a decoded EvaluateRequest or ObserveRequest)
 * between decoding and the reply — check, resolve, the engine, the decision
 * log line. An observed session is forgotten again (runs stay independent).
 * Returns the status the call would end with; msg says why when not OK. */
grpc_status_code bg__svc_guard_for_fuzz(bg__rpc_call *c, const ProtobufCMessage *req, char *msg,
                                        size_t len);
/* rpc_svc_admin.c */
void bg__svc_status(bg__rpc_call *c);
void bg__svc_reload(bg__rpc_call *c);
/* rpc_svc_health.c */
void bg__svc_ping(bg__rpc_call *c);
void bg__svc_ping_flush(bg_rpc_server *s);
void bg__svc_health_check(bg__rpc_call *c);
void bg__svc_health_watch(bg__rpc_call *c);
void bg__svc_health_watch_closed(bg__rpc_call *c, int ok);
void bg__svc_health_watch_sent(bg__rpc_call *c, int ok);
void bg__svc_health_end_watches(bg_rpc_server *s);
void bg__svc_unknown(bg__rpc_call *c);
/* rpc_svc_escalation.c */
void bg__svc_list_escalations(bg__rpc_call *c);
void bg__svc_esc_watch(bg__rpc_call *c);
void bg__svc_esc_watch_closed(bg__rpc_call *c, int ok);
void bg__svc_esc_watch_sent(bg__rpc_call *c, int ok);
void bg__svc_esc_watch_end_all(bg_rpc_server *s);
void bg__svc_resolve_escalation(bg__rpc_call *c);
void bg__svc_await(bg__rpc_call *c);
void bg__svc_await_closed(bg__rpc_call *c, int ok);
void bg__svc_await_end_all(bg_rpc_server *s);
/* Server start (loop thread, after the threads run): listen to the
 * table's events and start the tick; stop (destroy) undoes both. No-ops
 * without opts.escalations. */
int bg__svc_escalation_start(bg_rpc_server *s, bg_err *err);
void bg__svc_escalation_stop(bg_rpc_server *s);

#endif
