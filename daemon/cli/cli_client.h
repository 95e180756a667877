/*
 * cli_client.h — a small blocking gRPC client for the Guard API, used by
 * the `bayesguard` CLI commands (eval, observe, status, health, reload) and
 * by `bayesguard replay` (daemon/cli/cli_replay.c).
 *
 * Shape: one bg_client = one gRPC channel (C core, insecure credentials)
 * to one target. Each call is synchronous: it builds a call on a private
 * pluck completion queue, sends the request, waits for the response or the
 * per-call deadline, and decodes the reply with protobuf-c. Requests and
 * responses are the generated protobuf-c structs of
 * proto/bayesguard/v1/guard.proto ("bayesguard/v1/guard.pb-c.h"); link with
 * bg_cli_client (which pulls in bg_proto and gRPC).
 *
 * Targets: "host:port" (e.g. "127.0.0.1:50051", "[::1]:50051") or
 * "unix:/path/to/socket" — the daemon's --listen spellings.
 *
 * Errors: every call returns BG_OK, or a negative BG_E* with `err` set:
 *   - the RPC ended with a non-OK gRPC status: BG_EUNAVAIL for UNAVAILABLE
 *     and DEADLINE_EXCEEDED, BG_ENOTFOUND for NOT_FOUND, BG_EINVAL for
 *     INVALID_ARGUMENT, BG_ELIMIT for RESOURCE_EXHAUSTED, BG_EINTERNAL
 *     otherwise; `st` (when not NULL) holds the code, its name and the
 *     server's message, and err->msg reads "RPC Guard/Evaluate failed:
 *     NOT_FOUND: <server message>";
 *   - the reply did not decode: BG_EIO.
 * On success *out is new: free it with bg_client_free().
 *
 * Threads: a bg_client may be used from one thread at a time; several
 * clients may be used concurrently. bg_client_create calls grpc_init() and
 * bg_client_destroy the matching grpc_shutdown().
 */
#ifndef BG_CLI_CLIENT_H
#define BG_CLI_CLIENT_H

#include <stdint.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_err.h"
#include "grpc/health/v1/health.pb-c.h"

#define BG_CLIENT_DEFAULT_ADDR "127.0.0.1:50051"
/* Where no --addr is given: this variable, else BG_CLIENT_DEFAULT_ADDR
 * (`make run` prints the export for its unix socket). */
#define BG_CLIENT_ADDR_ENV "BAYESGUARD_ADDR"

typedef struct bg_client bg_client;

/* How an RPC ended (`st` of every call). code is a grpc_status_code (0 = OK). */
typedef struct bg_rpc_result {
    int code;
    char name[32];      /* "OK", "NOT_FOUND", ... */
    char message[1024]; /* the server's status message */
} bg_rpc_result;

/* new: destroy. timeout_ms bounds every call (0 = 10000). Does not connect
 * yet: a daemon that is not there shows up as UNAVAILABLE on the first call. */
int bg_client_create(const char *addr, unsigned timeout_ms, bg_client **out, bg_err *err);
void bg_client_destroy(bg_client *c);

/* Generic unary call: method is the full path "/bayesguard.v1.Guard/Status". */
int bg_client_unary(bg_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out,
                    bg_rpc_result *st, bg_err *err);

int bg_client_evaluate(bg_client *c, const Bayesguard__V1__EvaluateRequest *req,
                       Bayesguard__V1__Verdict **out, bg_rpc_result *st, bg_err *err);
int bg_client_observe(bg_client *c, const Bayesguard__V1__ObserveRequest *req,
                      Bayesguard__V1__ObserveResponse **out, bg_rpc_result *st, bg_err *err);
int bg_client_status(bg_client *c, Bayesguard__V1__StatusResponse **out, bg_rpc_result *st,
                     bg_err *err);
int bg_client_reload(bg_client *c, Bayesguard__V1__ReloadResponse **out, bg_rpc_result *st,
                     bg_err *err);
/* service: "" for the whole server, or "bayesguard.v1.Guard". */
int bg_client_health(bg_client *c, const char *service, Grpc__Health__V1__HealthCheckResponse **out,
                     bg_rpc_result *st, bg_err *err);

/* A server-streaming call (WatchEscalations): sends req, then hands each
 * message to on_msg (borrowed for the call) until the stream ends or
 * on_msg returns non-zero (the call is then cancelled: BG_OK). No
 * deadline. The end: BG_OK on status OK, else as the unary calls. */
int bg_client_server_stream(bg_client *c, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp_desc,
                            int (*on_msg)(void *arg, const ProtobufCMessage *m), void *arg,
                            bg_rpc_result *st, bg_err *err);

/* Free a message returned by any call above (NULL is fine). */
void bg_client_free(void *msg);

/* "NOT_FOUND" for 5, "UNKNOWN_STATUS" when out of range. */
const char *bg_client_code_name(int code);

#endif
