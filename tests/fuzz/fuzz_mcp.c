/*
 * fuzz_mcp.c — the MCP proxy's message reading (daemon/mcp): what a client
 * or a server writes on its pipe, cut into lines by the proxy's bounded
 * line reader (bg__mcp_in_next, with a 256-byte limit so oversized lines
 * are exercised) and each line classified (bg_mcp_classify) as the router
 * would; then the replies the proxy builds from what it read (an error
 * reply, a refusal, the id's table key) and the outcome a result reads as
 * under both report modes.
 *
 * Beyond the sanitizers it checks: a line the reader returns is within the
 * limit and holds no newline; the lines and the oversized ones account for
 * every newline of the input; a REQUEST has a method and a non-null id, a
 * NOTIFICATION a method and no id, a RESPONSE an id; an id's key parses
 * back to an equal JSON value; every reply built encodes to one line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "mcp/mcp.h"
#include "mcp/mcp_priv.h"

#define LIMIT 256

#define FZ_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_mcp: check failed: %s (line %d)\n", #cond, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_line_json(json_t *msg)
{
    FZ_CHECK(msg != NULL);
    char *s = json_dumps(msg, JSON_COMPACT);
    FZ_CHECK(s != NULL && strchr(s, '\n') == NULL);
    free(s);
    json_decref(msg);
}

static void one_message(const char *line, size_t len)
{
    bg_mcp_msg m;
    bg_mcp_classify(line, len, &m);
    switch (m.kind) {
    case BG_MCP_PARSE_ERROR:
        FZ_CHECK(m.root == NULL && m.why[0] != '\0');
        break;
    case BG_MCP_INVALID:
    case BG_MCP_BATCH:
        FZ_CHECK(m.root != NULL && m.why[0] != '\0');
        break;
    case BG_MCP_REQUEST:
        FZ_CHECK(m.method != NULL && m.id != NULL && !json_is_null(m.id));
        break;
    case BG_MCP_NOTIFICATION:
        FZ_CHECK(m.method != NULL && m.id == NULL);
        break;
    case BG_MCP_RESPONSE:
        FZ_CHECK(m.id != NULL && m.method == NULL);
        break;
    }
    if (m.id != NULL) {
        char *key = bg_mcp_id_key(m.id);
        FZ_CHECK(key != NULL && strchr(key, '\n') == NULL);
        json_error_t je;
        json_t *back = json_loads(key, JSON_DECODE_ANY, &je);
        FZ_CHECK(back != NULL && json_equal(back, m.id));
        json_decref(back);
        free(key);
        check_line_json(bg_mcp_error_reply(m.id, -32600, m.why));
        Bayesguard__V1__Verdict v = BAYESGUARD__V1__VERDICT__INIT;
        v.decision = BAYESGUARD__V1__DECISION__DENY;
        v.policy = (char *)(m.method ? m.method : "p");
        char *text = bg_mcp_verdict_text(m.method ? m.method : "t", &v, "fuzz");
        FZ_CHECK(text != NULL);
        check_line_json(bg_mcp_refusal(m.id, text, &v));
        check_line_json(bg_mcp_refusal(m.id, text, NULL));
        free(text);
    }
    if (m.kind == BG_MCP_RESPONSE || m.kind == BG_MCP_REQUEST) {
        json_t *res = m.result ? m.result : m.params;
        char why[160];
        int a = bg_mcp_outcome(BG_MCP_REPORT_IS_ERROR, NULL, res, why, sizeof(why));
        int b = bg_mcp_outcome(BG_MCP_REPORT_FIELD, "harmed", res, why, sizeof(why));
        FZ_CHECK(a >= -1 && a <= 1 && b >= -1 && b <= 1);
    }
    bg_mcp_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        bg_log_set_level(BG_LOG_ERROR);
        once = 1;
    }
    if (size > 60000)
        return 0; /* one pipe's capacity: written whole before reading */
    int fds[2];
    if (pipe(fds) != 0)
        fz_die("pipe: %s", strerror(errno));
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fds[1], data + off, size - off);
        if (w <= 0)
            fz_die("write: %s", strerror(errno));
        off += (size_t)w;
    }
    close(fds[1]);
    size_t newlines = 0;
    for (size_t i = 0; i < size; i++)
        newlines += data[i] == '\n';
    bg__mcp_in in;
    bg__mcp_in_init(&in, fds[0], LIMIT);
    size_t seen = 0;
    for (;;) {
        const char *line;
        size_t len;
        int k = bg__mcp_in_next(&in, -1, &line, &len);
        FZ_CHECK(k >= 0 && k != BG__MCP_IN_WOKEN);
        if (k == BG__MCP_IN_EOF)
            break;
        seen++;
        if (k == BG__MCP_IN_LINE) {
            FZ_CHECK(len <= LIMIT && memchr(line, '\n', len) == NULL);
            one_message(line, len);
        }
    }
    /* Every newline ends one line or one oversized line; a last line
     * without a newline adds one more. */
    FZ_CHECK(seen == newlines || seen == newlines + 1);
    bg__mcp_in_close(&in);
    close(fds[0]);
    /* The whole input as one line, as a message up to the proxy's limit. */
    one_message((const char *)data, size);
    return 0;
}
