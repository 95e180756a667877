/*
 * cli_client.c — blocking Guard/Health client on gRPC C core (see
 * cli_client.h for the contract).
 *
 * Each call: create the call on the client's pluck queue, one batch with
 * every op (send metadata + message + half-close, receive metadata +
 * message + status), pluck the tag with the call's deadline (plus a margin:
 * gRPC itself ends the call at the deadline with DEADLINE_EXCEEDED), then
 * decode. Ownership: everything allocated for a call is released before it
 * returns; the decoded reply is the caller's.
 */
#include "cli/cli_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "rpc/rpc_wire.h"

struct bg_client {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    unsigned timeout_ms;
    char addr[256];
};

const char *bg_client_code_name(int code)
{
    return bg_rpc_code_name(code);
}

int bg_client_create(const char *addr, unsigned timeout_ms, bg_client **out, bg_err *err)
{
    *out = NULL;
    if (addr == NULL || addr[0] == '\0')
        addr = getenv(BG_CLIENT_ADDR_ENV);
    if (addr == NULL || addr[0] == '\0')
        addr = BG_CLIENT_DEFAULT_ADDR;
    if (strlen(addr) >= sizeof(((bg_client *)0)->addr))
        return bg_err_set(err, BG_EINVAL,
                          "address '%.40s...' is too long: expected host:port or "
                          "unix:/path under 256 bytes",
                          addr);
    bg_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bg_err_set(err, BG_ENOMEM, "client: out of memory");
    grpc_init();
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->timeout_ms = timeout_ms ? timeout_ms : 10000;
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    *out = c;
    return BG_OK;
}

void bg_client_destroy(bg_client *c)
{
    if (c == NULL)
        return;
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    while (
        grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->cq);
    free(c);
    grpc_shutdown();
}

static int status_to_bg(int code)
{
    switch (code) {
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return BG_EUNAVAIL;
    case GRPC_STATUS_NOT_FOUND:
        return BG_ENOTFOUND;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return BG_EINVAL;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return BG_ELIMIT;
    default:
        return BG_EINTERNAL;
    }
}

/* ops[0..4): send the request (metadata, message, half-close) and
 * receive the initial metadata; ops[4..6) zeroed for the caller. */
static void request_ops(grpc_op ops[6], grpc_byte_buffer *send, grpc_metadata_array *md_init)
{
    memset(ops, 0, 6 * sizeof(*ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = md_init;
}

int bg_client_unary(bg_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out,
                    bg_rpc_result *st, bg_err *err)
{
    *out = NULL;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_millis(c->timeout_ms, GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_static_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                               mslice, NULL, deadline, NULL);
    grpc_byte_buffer *send = bg_rpc_pack(req);
    grpc_metadata_array md_init, md_trail;
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    request_ops(ops, send, &md_init);
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;

    int rc = BG_OK;
    grpc_call_error ce = grpc_call_start_batch(call, ops, 6, call, NULL);
    if (ce != GRPC_CALL_OK) {
        rc = bg_err_set(err, BG_EINTERNAL, "RPC %s: cannot start the call: %s", method,
                        grpc_call_error_to_string(ce));
        goto done;
    }
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
        rc = bg_err_set(err, BG_EINTERNAL, "RPC %s: the call did not complete", method);
        goto done;
    }
    if (st != NULL) {
        st->code = (int)code;
        snprintf(st->name, sizeof(st->name), "%s", bg_rpc_code_name(code));
        snprintf(st->message, sizeof(st->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
                 (const char *)GRPC_SLICE_START_PTR(details));
    }
    if (code != GRPC_STATUS_OK) {
        rc = bg_err_set(err, status_to_bg(code), "RPC %s to %s failed: %s: %.*s", method + 1,
                        c->addr, bg_rpc_code_name(code), (int)GRPC_SLICE_LENGTH(details),
                        (const char *)GRPC_SLICE_START_PTR(details));
        goto done;
    }
    *out = bg_rpc_unpack(resp_desc, recv, NULL);
    if (*out == NULL)
        rc =
            bg_err_set(err, BG_EIO, "RPC %s: the reply is not a valid %s", method, resp_desc->name);
done:
    grpc_byte_buffer_destroy(send);
    if (recv != NULL)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_call_unref(call);
    return rc;
}

/* One batch of ops on call, waited for; 0 when it completed. */
static int run_batch(bg_client *c, grpc_call *call, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(call, ops, n, call, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

int bg_client_server_stream(bg_client *c, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp_desc,
                            int (*on_msg)(void *arg, const ProtobufCMessage *m), void *arg,
                            bg_rpc_result *st, bg_err *err)
{
    grpc_slice mslice = grpc_slice_from_static_string(method);
    grpc_call *call =
        grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, mslice, NULL,
                                 gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_byte_buffer *send = bg_rpc_pack(req);
    grpc_metadata_array md_init, md_trail;
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    int rc = BG_OK, stopped = 0;
    grpc_op ops[6];
    request_ops(ops, send, &md_init);
    int sent = run_batch(c, call, ops, 4) == 0;
    while (sent && !stopped) {
        grpc_byte_buffer *recv = NULL;
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_RECV_MESSAGE;
        ops[0].data.recv_message.recv_message = &recv;
        if (run_batch(c, call, ops, 1) != 0 || recv == NULL)
            break; /* the stream ended: its status follows */
        ProtobufCMessage *m = bg_rpc_unpack(resp_desc, recv, NULL);
        grpc_byte_buffer_destroy(recv);
        if (m == NULL) {
            rc = bg_err_set(err, BG_EIO, "RPC %s: a message is not a valid %s", method,
                            resp_desc->name);
            stopped = 1;
        } else {
            stopped = on_msg(arg, m) != 0;
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    if (stopped)
        grpc_call_cancel(call, NULL);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &md_trail;
    ops[0].data.recv_status_on_client.status = &code;
    ops[0].data.recv_status_on_client.status_details = &details;
    if (run_batch(c, call, ops, 1) != 0 && rc == BG_OK && !stopped)
        rc = bg_err_set(err, BG_EINTERNAL, "RPC %s: the call did not complete", method);
    if (st != NULL) {
        st->code = (int)code;
        snprintf(st->name, sizeof(st->name), "%s", bg_rpc_code_name(code));
        snprintf(st->message, sizeof(st->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
                 (const char *)GRPC_SLICE_START_PTR(details));
    }
    if (rc == BG_OK && !stopped && code != GRPC_STATUS_OK)
        rc = bg_err_set(err, status_to_bg(code), "RPC %s to %s failed: %s: %.*s", method + 1,
                        c->addr, bg_rpc_code_name(code), (int)GRPC_SLICE_LENGTH(details),
                        (const char *)GRPC_SLICE_START_PTR(details));
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_call_unref(call);
    return rc;
}

#define BG_CLIENT_CALL(c, path, req, desc, out, st, err)                                           \
    bg_client_unary(c, path, (const ProtobufCMessage *)(req), &(desc), (ProtobufCMessage **)(out), \
                    st, err)

int bg_client_evaluate(bg_client *c, const Bayesguard__V1__EvaluateRequest *req,
                       Bayesguard__V1__Verdict **out, bg_rpc_result *st, bg_err *err)
{
    return BG_CLIENT_CALL(c, "/bayesguard.v1.Guard/Evaluate", req,
                          bayesguard__v1__verdict__descriptor, out, st, err);
}

int bg_client_observe(bg_client *c, const Bayesguard__V1__ObserveRequest *req,
                      Bayesguard__V1__ObserveResponse **out, bg_rpc_result *st, bg_err *err)
{
    return BG_CLIENT_CALL(c, "/bayesguard.v1.Guard/Observe", req,
                          bayesguard__v1__observe_response__descriptor, out, st, err);
}

int bg_client_status(bg_client *c, Bayesguard__V1__StatusResponse **out, bg_rpc_result *st,
                     bg_err *err)
{
    Bayesguard__V1__StatusRequest req = BAYESGUARD__V1__STATUS_REQUEST__INIT;
    return BG_CLIENT_CALL(c, "/bayesguard.v1.Guard/Status", &req,
                          bayesguard__v1__status_response__descriptor, out, st, err);
}

int bg_client_reload(bg_client *c, Bayesguard__V1__ReloadResponse **out, bg_rpc_result *st,
                     bg_err *err)
{
    Bayesguard__V1__ReloadRequest req = BAYESGUARD__V1__RELOAD_REQUEST__INIT;
    return BG_CLIENT_CALL(c, "/bayesguard.v1.Guard/Reload", &req,
                          bayesguard__v1__reload_response__descriptor, out, st, err);
}

int bg_client_health(bg_client *c, const char *service, Grpc__Health__V1__HealthCheckResponse **out,
                     bg_rpc_result *st, bg_err *err)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    return BG_CLIENT_CALL(c, "/grpc.health.v1.Health/Check", &req,
                          grpc__health__v1__health_check_response__descriptor, out, st, err);
}

void bg_client_free(void *msg)
{
    if (msg != NULL)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}
