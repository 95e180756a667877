/*
 * fuzz_request.c — the request decoders: the bytes of a unary request as
 * gRPC hands them to the daemon, decoded with a call's arena (the bump
 * allocator and its overflow cap, rpc_call.c) and, for Evaluate and
 * Observe, taken down the decision path as the handlers do
 * (bg__svc_guard_for_fuzz: check, resolve the policy and session key, the
 * engine, the decision log line) against a fixed policy set on the
 * built-in plugins (fuzz_guards.h).
 *
 * Input: byte 0 picks the message (low 3 bits, see `kinds`) and whether the
 * payload arrives in two slices (bit 3: bg_rpc_flatten's copy path); the
 * rest is the serialized message. Payloads over the harness server's
 * max_message (gRPC refuses those before the daemon sees them) are
 * skipped.
 *
 * Checks beyond the sanitizers: a decode that fails leaves no message; a
 * decoded Evaluate/Observe ends in a gRPC status code the handlers use; a
 * request without action.tool is INVALID_ARGUMENT.
 */
#include <stdio.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <sys/stat.h>

#include "audit/decision_log.h"
#include "bayesguard/v1/bench.pb-c.h"
#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_assert.h"
#include "engine/engine.h"
#include "fuzz_guards.h"
#include "fuzz_util.h"
#include "grpc/health/v1/health.pb-c.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"
#include "rpc/rpc_priv.h"

static bg_rpc_server srv;
static bg__rpc_call *call;

static void *arena_alloc(void *data, size_t n)
{
    return bg__rpc_call_alloc(data, n);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* released with the arena, as in rpc_call.c */
}

static void setup(void)
{
    fz_quiet_logs();
    srv.opts.store = fz_guards(fz_tmpdir("request"));
    bg_err err;
    bg_err_clear(&err);
    bg_engine_opts eo = {.max_sessions = 64, .max_obs_per_session = 1000};
    bg_decision_log_opts lo = {.path = "/dev/null"};
    if (bg_engine_create(&eo, &srv.opts.engine, &err) != BG_OK ||
        bg_decision_log_open(&lo, &srv.opts.decisions, &err) != BG_OK)
        fz_die("%s", err.msg);
    srv.max_message = 2048;
    call = calloc(1, sizeof *call);
    if (call == NULL)
        fz_die("out of memory");
    call->srv = &srv;
    call->alloc.alloc = arena_alloc;
    call->alloc.free = arena_free;
    call->alloc.allocator_data = call;
}

static const ProtobufCMessageDescriptor *const kinds[8] = {
    &bayesguard__v1__evaluate_request__descriptor,
    &bayesguard__v1__observe_request__descriptor,
    &bayesguard__v1__evaluate_request__descriptor,
    &bayesguard__v1__observe_request__descriptor,
    &bayesguard__v1__status_request__descriptor,
    &bayesguard__v1__reload_request__descriptor,
    &bayesguard__v1__ping_request__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (call == NULL)
        setup();
    if (size < 1 || size - 1 > srv.max_message)
        return 0;
    const ProtobufCMessageDescriptor *desc = kinds[data[0] & 7];
    size_t n = size - 1, half = (data[0] & 8) ? n / 2 : n;
    /* Bit 4: a caller the listener identified (a unix socket's uid), so
     * policies keyed by peer.* decide; else one it could not (plain TCP). */
    memset(&call->peer, 0, sizeof call->peer);
    if (data[0] & 16) {
        call->peer.has_cred = 1;
        call->peer.uid = call->peer.gid = 1000;
        snprintf(call->peer.identity, sizeof call->peer.identity, "uid:1000");
    }
    grpc_slice s[2] = {grpc_slice_from_copied_buffer((const char *)data + 1, half),
                       grpc_slice_from_copied_buffer((const char *)data + 1 + half, n - half)};
    call->payload = grpc_raw_byte_buffer_create(s, half < n ? 2 : 1);
    grpc_slice_unref(s[0]);
    grpc_slice_unref(s[1]);

    ProtobufCMessage *m = bg__rpc_call_decode(call, desc);
    if (m != NULL && (desc == &bayesguard__v1__evaluate_request__descriptor ||
                      desc == &bayesguard__v1__observe_request__descriptor)) {
        char msg[1536];
        grpc_status_code code = bg__svc_guard_for_fuzz(call, m, msg, sizeof msg);
        /* The codes a request may earn (never INTERNAL): PERMISSION_DENIED
         * and ALREADY_EXISTS are the receipts' (an Observe without a valid
         * one), FAILED_PRECONDITION a peer.* session key with no peer (the
         * harness's call has none). */
        BG_ASSERT(code == GRPC_STATUS_OK || code == GRPC_STATUS_INVALID_ARGUMENT ||
                      code == GRPC_STATUS_NOT_FOUND || code == GRPC_STATUS_RESOURCE_EXHAUSTED ||
                      code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_PERMISSION_DENIED ||
                      code == GRPC_STATUS_ALREADY_EXISTS || code == GRPC_STATUS_FAILED_PRECONDITION,
                  "%s ended with %s: %s", desc->name, bg_rpc_code_name(code), msg);
        /* Both messages have the action first. */
        const Bayesguard__V1__Action *a = desc == &bayesguard__v1__evaluate_request__descriptor
                                              ? ((Bayesguard__V1__EvaluateRequest *)m)->action
                                              : ((Bayesguard__V1__ObserveRequest *)m)->action;
        if (a == NULL || a->tool[0] == '\0')
            BG_ASSERT(code == GRPC_STATUS_INVALID_ARGUMENT,
                      "%s without action.tool ended with %s, expected INVALID_ARGUMENT", desc->name,
                      bg_rpc_code_name(code));
    }
    grpc_byte_buffer_destroy(call->payload);
    call->payload = NULL;
    bg__rpc_call_free_overflow(call);
    call->arena_used = 0;
    return 0;
}
