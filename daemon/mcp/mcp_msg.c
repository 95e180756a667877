/*
 * mcp_msg.c — JSON-RPC 2.0 messages of the MCP proxy: classify a line,
 * build the replies the proxy writes itself (errors, refusals) and read a
 * tool result as an outcome. See mcp.h.
 *
 * Pure functions over jansson values; no state, any thread. The lines come
 * from untrusted peers: classify never trusts a field's type without
 * checking it, and jansson refuses duplicate keys (JSON_REJECT_DUPLICATES)
 * so a message cannot say two things to two readers.
 */
#include "mcp/mcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bg_mcp_msg_clear(bg_mcp_msg *m)
{
    if (m->root != NULL)
        json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

static void invalid(bg_mcp_msg *m, const char *why)
{
    m->kind = BG_MCP_INVALID;
    snprintf(m->why, sizeof(m->why), "%s", why);
}

void bg_mcp_classify(const char *line, size_t len, bg_mcp_msg *m)
{
    memset(m, 0, sizeof(*m));
    json_error_t je;
    m->root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (m->root == NULL) {
        m->kind = BG_MCP_PARSE_ERROR;
        snprintf(m->why, sizeof(m->why), "not JSON at column %d: %s", je.column, je.text);
        return;
    }
    if (json_is_array(m->root)) {
        m->kind = BG_MCP_BATCH;
        snprintf(m->why, sizeof(m->why),
                 "JSON-RPC batches are not part of MCP 2025-06-18: "
                 "send one message per line");
        return;
    }
    if (!json_is_object(m->root))
        return invalid(m, "a JSON-RPC message is an object");
    json_t *ver = json_object_get(m->root, "jsonrpc");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0)
        return invalid(m, "\"jsonrpc\" must be \"2.0\"");
    json_t *id = json_object_get(m->root, "id");
    json_t *method = json_object_get(m->root, "method");
    if (id != NULL && !json_is_string(id) && !json_is_integer(id) && !json_is_real(id) &&
        !json_is_null(id))
        return invalid(m, "\"id\" must be a string or a number");
    if (method != NULL) {
        if (!json_is_string(method))
            return invalid(m, "\"method\" must be a string");
        json_t *params = json_object_get(m->root, "params");
        if (params != NULL && !json_is_object(params) && !json_is_array(params))
            return invalid(m, "\"params\" must be an object");
        m->method = json_string_value(method);
        m->params = params;
        if (id == NULL) {
            m->kind = BG_MCP_NOTIFICATION;
            return;
        }
        if (json_is_null(id))
            return invalid(m, "a request's \"id\" must not be null");
        m->id = id;
        m->kind = BG_MCP_REQUEST;
        return;
    }
    if (id == NULL)
        return invalid(m, "a message needs \"method\" (request, notification) or \"id\" "
                          "(response)");
    json_t *result = json_object_get(m->root, "result");
    json_t *error = json_object_get(m->root, "error");
    if ((result == NULL) == (error == NULL))
        return invalid(m, "a response has exactly one of \"result\" and \"error\"");
    if (error != NULL && !json_is_object(error))
        return invalid(m, "\"error\" must be an object");
    if (json_is_null(id) && result != NULL)
        return invalid(m, "a result's \"id\" must not be null");
    m->id = id;
    m->result = result;
    m->kind = BG_MCP_RESPONSE;
}

char *bg_mcp_id_key(const json_t *id)
{
    return json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
}

json_t *bg_mcp_error_reply(const json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                     "error", "code", code, "message", message);
}

static const char *decision_name(int d)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&bayesguard__v1__decision__descriptor, d);
    return v ? v->name : "UNKNOWN";
}

static const char *escalation_name(int s)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&bayesguard__v1__escalation_state__descriptor, s);
    return v ? v->name : "UNKNOWN";
}

json_t *bg_mcp_refusal(const json_t *id, const char *text, const Bayesguard__V1__Verdict *v)
{
    json_t *meta = json_object();
    if (v != NULL) {
        json_object_set_new(meta, "decision", json_string(decision_name((int)v->decision)));
        json_object_set_new(meta, "harm_bound", json_real(v->harm_bound));
        json_object_set_new(meta, "threshold", json_real(v->threshold));
        json_object_set_new(meta, "policy", json_string(v->policy ? v->policy : ""));
        json_object_set_new(meta, "revision", json_string(v->revision ? v->revision : ""));
        json_object_set_new(meta, "decision_id", json_string(v->decision_id ? v->decision_id : ""));
        if (v->escalation != BAYESGUARD__V1__ESCALATION_STATE__ESCALATION_STATE_UNSPECIFIED)
            json_object_set_new(meta, "escalation",
                                json_string(escalation_name((int)v->escalation)));
        if (v->cautious != NULL)
            json_object_set_new(meta, "cautious",
                                json_pack("{s:I, s:s, s:f, s:f}", "id", (json_int_t)v->cautious->id,
                                          "label", v->cautious->label ? v->cautious->label : "",
                                          "posterior", v->cautious->posterior, "harm",
                                          v->cautious->harm));
    } else {
        json_object_set_new(meta, "decision", json_string("ERROR"));
    }
    return json_pack("{s:s, s:O, s:{s:[{s:s, s:s}], s:b, s:{s:o}}}", "jsonrpc", "2.0", "id",
                     id ? id : json_null(), "result", "content", "type", "text", "text", text,
                     "isError", 1, "_meta", "io.bayesguard/verdict", meta);
}

char *bg_mcp_verdict_text(const char *tool, const Bayesguard__V1__Verdict *v, const char *why)
{
    char cautious[512] = "";
    if (v->cautious != NULL)
        snprintf(cautious, sizeof(cautious),
                 " The cautious-but-plausible hypothesis is #%llu '%.200s' (posterior %.4g, "
                 "P(harm) %.4g).",
                 (unsigned long long)v->cautious->id, v->cautious->label ? v->cautious->label : "",
                 v->cautious->posterior, v->cautious->harm);
    char *out = NULL;
    int n = asprintf(&out,
                     "bayesguard refused the call to tool '%.200s': %s. Decision %s: harm "
                     "bound %.4g vs threshold %.4g under policy '%.200s' (revision %.12s, "
                     "decision id %.100s).%s The tool was not run. Do not retry it unchanged: "
                     "choose a less risky action, or ask the user.",
                     tool, why, decision_name((int)v->decision), v->harm_bound, v->threshold,
                     v->policy ? v->policy : "", v->revision ? v->revision : "",
                     v->decision_id ? v->decision_id : "", cautious);
    return n < 0 ? NULL : out;
}

int bg_mcp_outcome(bg_mcp_report_mode mode, const char *field, const json_t *result, char *why,
                   size_t why_len)
{
    if (!json_is_object(result)) {
        snprintf(why, why_len, "the tool result is not an object");
        return -1;
    }
    if (mode == BG_MCP_REPORT_IS_ERROR) {
        json_t *e = json_object_get(result, "isError");
        if (e == NULL)
            return 0; /* absent means false (MCP schema) */
        if (!json_is_boolean(e)) {
            snprintf(why, why_len, "the tool result's isError is not a boolean");
            return -1;
        }
        return json_is_true(e);
    }
    if (mode == BG_MCP_REPORT_FIELD) {
        json_t *sc = json_object_get(result, "structuredContent");
        json_t *f = json_is_object(sc) ? json_object_get(sc, field) : NULL;
        if (!json_is_boolean(f)) {
            snprintf(why, why_len, "structuredContent.%.60s is %s", field,
                     f == NULL ? "missing" : "not a boolean");
            return -1;
        }
        return json_is_true(f);
    }
    snprintf(why, why_len, "reporting is off");
    return -1;
}
