/*
 * test_rpc_wire.c — the wire glue shared by server and clients: status code
 * names, protobuf-c <-> grpc byte buffer round trips (single and multi-
 * slice buffers, empty message, malformed bytes), and the CLI's JSON
 * printer on a Verdict (exact text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "cli/cli_json.h"
#include "rpc/rpc_wire.h"
#include "bg_test.h"

static void test_codes(void)
{
    CHECK(strcmp(bg_rpc_code_name(0), "OK") == 0);
    CHECK(strcmp(bg_rpc_code_name(3), "INVALID_ARGUMENT") == 0);
    CHECK(strcmp(bg_rpc_code_name(5), "NOT_FOUND") == 0);
    CHECK(strcmp(bg_rpc_code_name(8), "RESOURCE_EXHAUSTED") == 0);
    CHECK(strcmp(bg_rpc_code_name(14), "UNAVAILABLE") == 0);
    CHECK(strcmp(bg_rpc_code_name(16), "UNAUTHENTICATED") == 0);
    CHECK(strcmp(bg_rpc_code_name(17), "UNKNOWN_STATUS") == 0);
    CHECK(strcmp(bg_rpc_code_name(-1), "UNKNOWN_STATUS") == 0);
}

static void test_round_trip(void)
{
    Bayesguard__V1__EvaluateRequest req = BAYESGUARD__V1__EVALUATE_REQUEST__INIT;
    Bayesguard__V1__Action a = BAYESGUARD__V1__ACTION__INIT;
    double feats[3] = {1.5, -2.0, 1e-300};
    a.tool = "transfer_funds";
    a.features = feats;
    a.n_features = 3;
    req.action = &a;
    req.policy = "payments";
    grpc_byte_buffer *bb = bg_rpc_pack(&req.base);
    CHECK(bb != NULL);
    CHECK(grpc_byte_buffer_length(bb) == protobuf_c_message_get_packed_size(&req.base));
    Bayesguard__V1__EvaluateRequest *back = (Bayesguard__V1__EvaluateRequest *)bg_rpc_unpack(
        &bayesguard__v1__evaluate_request__descriptor, bb, NULL);
    CHECK(back != NULL && back->action != NULL);
    CHECK(strcmp(back->action->tool, "transfer_funds") == 0);
    CHECK(strcmp(back->policy, "payments") == 0);
    CHECK(back->action->n_features == 3 && back->action->features[2] == 1e-300);
    protobuf_c_message_free_unpacked(&back->base, NULL);

    /* The same bytes split over three slices decode the same. */
    grpc_slice flat = bg_rpc_flatten(bb);
    size_t n = GRPC_SLICE_LENGTH(flat);
    grpc_slice parts[3] = {
        grpc_slice_from_copied_buffer((const char *)GRPC_SLICE_START_PTR(flat), 3),
        grpc_slice_from_copied_buffer((const char *)GRPC_SLICE_START_PTR(flat) + 3, 5),
        grpc_slice_from_copied_buffer((const char *)GRPC_SLICE_START_PTR(flat) + 8, n - 8)};
    grpc_byte_buffer *multi = grpc_raw_byte_buffer_create(parts, 3);
    back = (Bayesguard__V1__EvaluateRequest *)bg_rpc_unpack(
        &bayesguard__v1__evaluate_request__descriptor, multi, NULL);
    CHECK(back != NULL && strcmp(back->action->tool, "transfer_funds") == 0);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    for (int i = 0; i < 3; i++)
        grpc_slice_unref(parts[i]);
    grpc_slice_unref(flat);
    grpc_byte_buffer_destroy(multi);
    grpc_byte_buffer_destroy(bb);

    /* NULL buffer = empty message: valid, all defaults. */
    ProtobufCMessage *empty =
        bg_rpc_unpack(&bayesguard__v1__status_request__descriptor, NULL, NULL);
    CHECK(empty != NULL);
    protobuf_c_message_free_unpacked(empty, NULL);

    /* Malformed: a truncated varint is refused. */
    grpc_slice bad = grpc_slice_from_copied_buffer("\xff\xff\xff\xff", 4);
    grpc_byte_buffer *bbad = grpc_raw_byte_buffer_create(&bad, 1);
    CHECK(bg_rpc_unpack(&bayesguard__v1__evaluate_request__descriptor, bbad, NULL) == NULL);
    grpc_slice_unref(bad);
    grpc_byte_buffer_destroy(bbad);
}

static void test_json(void)
{
    Bayesguard__V1__Verdict v = BAYESGUARD__V1__VERDICT__INIT;
    Bayesguard__V1__CautiousHypothesis ch = BAYESGUARD__V1__CAUTIOUS_HYPOTHESIS__INIT;
    ch.id = 18446744073709551615ull;
    ch.label = "rate=\"0.5\"\n";
    ch.posterior = 0.25;
    v.decision = BAYESGUARD__V1__DECISION__DENY;
    v.harm_bound = 0.5;
    v.cautious = &ch;
    v.policy = "p";
    v.bound_kind = BAYESGUARD__V1__BOUND_KIND__EXACT;
    v.shadow = 1;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bg_cli_json_print(f, &v.base);
    fclose(f);
    const char *want =
        "{\"decision\":\"DENY\",\"harm_bound\":0.5,\"posterior_predictive\":0.0,"
        "\"cautious\":{\"id\":\"18446744073709551615\",\"label\":\"rate=\\\"0.5\\\"\\n\","
        "\"posterior\":0.25,\"harm\":0.0},\"plausible_set_size\":\"0\",\"estimator\":\"\","
        "\"policy\":\"p\",\"revision\":\"\",\"decision_id\":\"\",\"bound_kind\":\"EXACT\","
        "\"samples\":\"0\",\"shadow\":true,\"eval_us\":\"0\",\"model\":\"\","
        "\"observations\":\"0\",\"threshold\":0.0,\"on_error_allowed\":false,\"receipt\":\"\","
        "\"escalation\":\"ESCALATION_STATE_UNSPECIFIED\",\"reason\":\"\",\"fleet_pending_in\":"
        "\"0\","
        "\"fleet_pending_out\":\"0\",\"fleet_lag_ms\":\"0\",\"fleet_stale\":false}\n";
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "json:\n got  %s want %s", buf, want);
        exit(1);
    }
    free(buf);
}

int main(void)
{
    grpc_init();
    test_codes();
    test_round_trip();
    test_json();
    grpc_shutdown();
    printf("ok\n");
    return 0;
}
