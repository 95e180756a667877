/*
 * test_mcp_msg.c — the MCP proxy's message functions (daemon/mcp/mcp.h):
 * how each kind of line is classified (what the router then does with it),
 * id keys, the refusal a DENY becomes, and how a tool result reads as an
 * outcome under --report is-error / field:NAME.
 */
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "mcp/mcp.h"

static bg_mcp_kind kind_of(const char *line)
{
    bg_mcp_msg m;
    bg_mcp_classify(line, strlen(line), &m);
    bg_mcp_kind k = m.kind;
    bg_mcp_msg_clear(&m);
    return k;
}

static void test_classify(void)
{
    static const struct {
        const char *line;
        bg_mcp_kind kind;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", BG_MCP_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"tools/call\",\"params\":{}}",
         BG_MCP_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", BG_MCP_NOTIFICATION},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", BG_MCP_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}",
         BG_MCP_RESPONSE},
        {"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", BG_MCP_BATCH},
        {"not json", BG_MCP_PARSE_ERROR},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}", BG_MCP_PARSE_ERROR},
        {"{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999,\"method\":\"ping\"}",
         BG_MCP_PARSE_ERROR},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/c\\u0000all\"}", BG_MCP_PARSE_ERROR},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\xff\"}", BG_MCP_PARSE_ERROR},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} {\"x\":1}", BG_MCP_PARSE_ERROR},
        {"\"a string\"", BG_MCP_INVALID},
        {"{\"id\":1,\"method\":\"ping\"}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":3}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}", BG_MCP_INVALID},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}", BG_MCP_INVALID},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECK(kind_of(cases[i].line) == cases[i].kind, "case %zu '%s': kind %d, want %d", i,
              cases[i].line, (int)kind_of(cases[i].line), (int)cases[i].kind);

    bg_mcp_msg m;
    const char *call = "{\"jsonrpc\":\"2.0\",\"id\":9007199254740993,\"method\":\"tools/call\","
                       "\"params\":{\"name\":\"t\"}}";
    bg_mcp_classify(call, strlen(call), &m);
    CHECK_STR(m.method, "tools/call");
    char *key = bg_mcp_id_key(m.id);
    CHECK_STR(key, "9007199254740993"); /* an integer, never a double */
    free(key);
    bg_mcp_msg_clear(&m);
    const char *resp = "{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"result\":{}}";
    bg_mcp_classify(resp, strlen(resp), &m);
    CHECK(m.kind == BG_MCP_RESPONSE);
    key = bg_mcp_id_key(m.id);
    CHECK_STR(key, "\"a\\\"b\"");
    free(key);
    bg_mcp_msg_clear(&m);
}

static void test_refusal(void)
{
    Bayesguard__V1__CautiousHypothesis h = BAYESGUARD__V1__CAUTIOUS_HYPOTHESIS__INIT;
    h.id = 3;
    h.label = "rate=0.9";
    h.posterior = 0.25;
    h.harm = 0.9;
    Bayesguard__V1__Verdict v = BAYESGUARD__V1__VERDICT__INIT;
    v.decision = BAYESGUARD__V1__DECISION__DENY;
    v.harm_bound = 0.62;
    v.threshold = 0.05;
    v.policy = "files";
    v.revision = "0123456789abcdef";
    v.decision_id = "boot-7";
    v.cautious = &h;
    char *text = bg_mcp_verdict_text("delete_all", &v, "the harm bound is over the threshold");
    CHECK(strstr(text, "tool 'delete_all'") && strstr(text, "Decision DENY") &&
              strstr(text, "harm bound 0.62 vs threshold 0.05") &&
              strstr(text, "policy 'files' (revision 0123456789ab,") &&
              strstr(text, "#3 'rate=0.9' (posterior 0.25, P(harm) 0.9)"),
          "text: %s", text);
    json_t *id = json_integer(42);
    json_t *r = bg_mcp_refusal(id, text, &v);
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(strstr(s, "\"id\":42") && strstr(s, "\"isError\":true") &&
              strstr(s, "\"decision\":\"DENY\"") && strstr(s, "\"policy\":\"files\"") &&
              strstr(s, "\"type\":\"text\""),
          "refusal: %s", s);
    free(s);
    json_decref(r);
    json_decref(id);
    free(text);
    r = bg_mcp_error_reply(NULL, -32700, "Parse error");
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(s, "{\"error\":{\"code\":-32700,\"message\":\"Parse error\"},\"id\":null,"
                 "\"jsonrpc\":\"2.0\"}");
    free(s);
    json_decref(r);
}

static int outcome(bg_mcp_report_mode mode, const char *field, const char *result)
{
    json_t *j = json_loads(result, JSON_DECODE_ANY, NULL);
    char why[160];
    int o = bg_mcp_outcome(mode, field, j, why, sizeof(why));
    json_decref(j);
    return o;
}

static void test_outcome(void)
{
    CHECK_INT(outcome(BG_MCP_REPORT_IS_ERROR, NULL, "{\"content\":[],\"isError\":true}"), 1);
    CHECK_INT(outcome(BG_MCP_REPORT_IS_ERROR, NULL, "{\"content\":[],\"isError\":false}"), 0);
    CHECK_INT(outcome(BG_MCP_REPORT_IS_ERROR, NULL, "{\"content\":[]}"), 0);
    CHECK_INT(outcome(BG_MCP_REPORT_IS_ERROR, NULL, "{\"isError\":\"yes\"}"), -1);
    CHECK_INT(outcome(BG_MCP_REPORT_IS_ERROR, NULL, "[]"), -1);
    CHECK_INT(outcome(BG_MCP_REPORT_FIELD, "harmed", "{\"structuredContent\":{\"harmed\":true}}"),
              1);
    CHECK_INT(outcome(BG_MCP_REPORT_FIELD, "harmed",
                      "{\"structuredContent\":{\"harmed\":false},\"isError\":true}"),
              0);
    CHECK_INT(outcome(BG_MCP_REPORT_FIELD, "harmed", "{\"structuredContent\":{\"harmed\":1}}"), -1);
    CHECK_INT(outcome(BG_MCP_REPORT_FIELD, "harmed", "{\"isError\":true}"), -1);
    CHECK_INT(outcome(BG_MCP_REPORT_NONE, NULL, "{\"isError\":true}"), -1);
}

int main(void)
{
    test_classify();
    test_refusal();
    test_outcome();
    CHECK_DONE("test_mcp_msg");
}
