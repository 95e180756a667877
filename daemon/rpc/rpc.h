/*
 * rpc.h — the gRPC server of bayesguardd (data plane).
 *
 * bg_rpc_server_start binds every --listen address (TCP "host:port", port 0
 * = the kernel picks; "unix:/path"; each prefixed by the roles it serves,
 * "agent,health@unix:/path"; see rpc_listen.c), registers the services
 *   bayesguard.v1.Guard   Evaluate Observe ObserveStream Status Reload
 *                         ListEscalations WatchEscalations ResolveEscalation
 *                         AwaitDecision (docs/ESCALATIONS.md)
 *   bayesguard.v1.Bench   Ping (the empty RPC of bench/rpc)
 *   grpc.health.v1.Health Check Watch
 * and starts `cq_threads` completion-queue threads, each with its own
 * completion queue and its own pre-requested calls, so a cheap call is
 * received, decided and answered on one thread with no lock on the way.
 * Work that must not run there (Reload, delayed Ping) goes through the
 * loop hand-off (daemon/loop/loop.h).
 *
 * Shutdown:  start -> [serving] -> drain (loop thread) -> [lame duck: health
 * NOT_SERVING, watches ended, new calls UNAVAILABLE, admitted calls finish]
 * -> [listeners closed, GOAWAY] -> done(arg) on the loop (all calls ended,
 * or the drain deadline passed and the rest were cancelled) -> destroy.
 *
 * Threads: start/drain/destroy on the loop thread (start may run before the
 * loop runs); bound/count/in_flight from any thread. Everything the options
 * point to is borrowed and must outlive the server.
 */
#ifndef BG_RPC_H
#define BG_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "audit/decision_log.h"
#include "common/bg_err.h"
#include "engine/engine.h"
#include "escalation/escalation.h"
#include "fleet/fleet.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"
#include "receipt/receipt.h"

#define BG_RPC_DEFAULT_MAX_MESSAGE (4u << 20)

typedef struct bg_rpc_opts {
    const char *const *listen; /* [ROLES@]ADDR[?uids=N,...], at least one (rpc_listen.c) */
    size_t n_listen;
    const char *socket_mode;       /* octal mode of unix socket files; NULL: "0660" */
    const char *socket_group;      /* their group, a name or number; NULL: the daemon's */
    const char *tls_cert;          /* PEM files: with cert and key, TCP listeners serve TLS; */
    const char *tls_key;           /*   with a client CA, clients must present a certificate */
    const char *tls_client_ca;     /*   it signed (mTLS); NULL: plain TCP / no client certs */
    unsigned tls_refresh_s;        /* how often the TLS files are re-read; 0: 60 */
    const char *const *identities; /* "ID=ROLE,ROLE": narrow an identity's roles */
    size_t n_identities;
    int enable_bench;         /* serve bayesguard.v1.Bench/Ping */
    unsigned cq_threads;      /* 0 = bg_cpu_available() */
    size_t max_message_bytes; /* 0 = BG_RPC_DEFAULT_MAX_MESSAGE */
    const char *version;      /* reported by Status */
    bg_loop *loop;
    bg_policy_store *store;
    bg_engine *engine;
    bg_fleet *fleet; /* NULL without --fleet: verdicts carry its lag, Status its state */
    /* Outcome receipts (daemon/receipt/receipt.h): Evaluate mints one per
     * ALLOW, Observe under `outcomes: receipts` checks it. NULL: no
     * receipts are minted and such policies refuse every Observe. */
    const bg_receipt_key *receipts;
    int64_t receipt_ttl_ms;     /* a receipt's lifetime; 0 = 1 hour */
    bg_plugin_host *plugins;    /* may be NULL (Status then lists no load errors) */
    bg_decision_log *decisions; /* may be NULL (no decision log) */
    /* The pending-escalation table (daemon/escalation): an enforce-mode
     * ESCALATE verdict opens a record there; the escalation RPCs serve it.
     * NULL: ESCALATE verdicts open nothing and those RPCs answer
     * FAILED_PRECONDITION. The server listens to its events from start to
     * destroy. */
    bg_escalation *escalations;
    bg_metrics *metrics; /* may be NULL: decisions, observations and finished calls
                          * are counted there, and the server registers a collector
                          * for its own families (rpc_server_metrics.c) */
} bg_rpc_opts;

typedef struct bg_rpc_server bg_rpc_server;

/* new: destroy. Fails (nothing left running) with a message naming the
 * address when one cannot be bound ("127.0.0.1:50051: address in use"). */
int bg_rpc_server_start(const bg_rpc_opts *opts, bg_rpc_server **out, bg_err *err);

/* The bound addresses, in --listen order, with real ports
 * ("127.0.0.1:41234", "unix:/run/bg.sock"). Valid until destroy. */
size_t bg_rpc_server_bound_count(const bg_rpc_server *s);
const char *bg_rpc_server_bound(const bg_rpc_server *s, size_t i);

/* Calls being served right now. */
uint64_t bg_rpc_server_in_flight(const bg_rpc_server *s);

/* Loop thread, once. Health turns NOT_SERVING and new calls get
 * UNAVAILABLE at once; after grace_ms (lame duck: clients and load
 * balancers move away) and once the admitted calls finished, the listeners
 * close. At timeout_ms the remaining calls are cancelled. done(arg) runs on
 * the loop thread when no call is left. */
void bg_rpc_server_drain(bg_rpc_server *s, unsigned timeout_ms, unsigned grace_ms, bg_loop_fn done,
                         void *arg);

/* Loop thread, after drain: give up waiting now — the next drain poll
 * cancels what is left (an operator's second SIGTERM). */
void bg_rpc_server_drain_now(bg_rpc_server *s);

/* After done ran (or right after a failed start path never reached):
 * joins the threads and frees everything. NULL is fine. */
void bg_rpc_server_destroy(bg_rpc_server *s);

#endif
