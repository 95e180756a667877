/*
 * mcp.h — the MCP proxy core (`bayesguard mcp-proxy`): a stdio MCP
 * (Model Context Protocol, revision 2025-06-18) proxy between an MCP client
 * (on our stdin/stdout) and an MCP server (a child process on pipes) that
 * asks the guard before every `tools/call`.
 *
 * Framing: newline-delimited JSON-RPC 2.0, one message per line, no
 * embedded newlines (the MCP stdio transport). Every message is passed on
 * unchanged — the same bytes — except a client `tools/call`, which is held
 * until the guard decides:
 *   ALLOW     -> forwarded unchanged; the verdict (receipt) is kept to report
 *                the outcome when the server answers (bg_mcp_report);
 *   DENY      -> never reaches the server; the proxy answers the client with
 *                a tool result {"content":[{"type":"text",...}],"isError":true}
 *                naming the decision, bound, threshold, cautious hypothesis
 *                and policy;
 *   ESCALATE  -> the call waits on Guard/AwaitDecision (up to the policy's
 *                timeout, or `policy_timeout_ms`), then is forwarded (ALLOW)
 *                or refused as above. When the client declared the
 *                `elicitation` capability the user is also asked through
 *                `elicitation/create`; under the trust model that answer is
 *                the agent side's, so it can only withdraw the call
 *                (decline/cancel), never approve it (docs/MCP.md);
 *   guard error -> refused (fail closed), or forwarded with `fail_open`.
 * JSON-RPC batches (arrays) were removed in 2025-06-18: a client batch is
 * answered with -32600 and not forwarded (it could carry an unguarded
 * tools/call). A line that is not JSON gets -32700, an oversized one (over
 * max_message bytes) -32600 naming the limit; the proxy keeps running.
 *
 * Lifetime (bg_mcp_run): spawn the server, serve until the client closes
 * its stdin (then close the server's stdin, wait for it — SIGTERM, then
 * SIGKILL after a grace — and return BG_MCP_EXIT_OK) or until the server
 * exits (then answer every request still pending with a JSON-RPC error
 * naming the exit status, and return BG_MCP_EXIT_SERVER).
 *
 * Trust: everything on both pipes is untrusted; tables and buffers are
 * bounded (max_message, max_pending). The guard is asked through the
 * bg_mcp_guard table, so this module needs no gRPC: the CLI
 * (daemon/cli/cli_mcp.c) fills it with its Guard client.
 *
 * Threads: bg_mcp_run runs on the caller's thread (the client reader) and
 * starts a server reader, a reporter and one worker per held tools/call;
 * the guard table's functions are called from those threads concurrently.
 */
#ifndef BG_MCP_H
#define BG_MCP_H

#include <stddef.h>

#include <jansson.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_err.h"

/* Exit codes of `bayesguard mcp-proxy` (bg_mcp_run's return values). */
#define BG_MCP_EXIT_OK 0     /* client EOF, or SIGTERM/SIGINT; the server was reaped */
#define BG_MCP_EXIT_IO 1     /* the proxy itself failed (out of memory, a pipe) */
#define BG_MCP_EXIT_USAGE 2  /* bad flags (the CLI's) */
#define BG_MCP_EXIT_SERVER 5 /* the server exited or crashed while the client was connected */
#define BG_MCP_EXIT_SPAWN 6  /* the server command could not be started */

#define BG_MCP_DEFAULT_MAX_MESSAGE (4u << 20)
#define BG_MCP_DEFAULT_MAX_PENDING 1024u
#define BG_MCP_MAX_WORKERS 64u /* tools/call held by the guard at once */

/* Where outcomes go (`--report`). */
typedef enum bg_mcp_report_mode {
    BG_MCP_REPORT_NONE = 0, /* left to a separate reporter */
    BG_MCP_REPORT_IS_ERROR, /* harmed = the tool result's isError */
    BG_MCP_REPORT_FIELD,    /* harmed = structuredContent[report_field] (a boolean) */
} bg_mcp_report_mode;

/* The guard, as the proxy sees it. Every function may be called from
 * several threads at once and returns BG_OK or a BG_E* with err set (the
 * message names the RPC and the gRPC status). Verdicts returned are new:
 * release them with free_msg. */
typedef struct bg_mcp_guard {
    void *ud;
    int (*evaluate)(void *ud, const Bayesguard__V1__EvaluateRequest *req,
                    Bayesguard__V1__Verdict **out, bg_err *err);
    /* timeout_ms > 0: the daemon answers the PENDING verdict once it passes. */
    int (*await_decision)(void *ud, const char *decision_id, unsigned timeout_ms,
                          Bayesguard__V1__Verdict **out, bg_err *err);
    int (*observe)(void *ud, const Bayesguard__V1__ObserveRequest *req, bg_err *err);
    void (*free_msg)(void *ud, void *msg);
} bg_mcp_guard;

typedef struct bg_mcp_config {
    char *const *server_argv;        /* borrowed: the server command, NULL-terminated */
    const char *session, *agent;     /* borrowed; NULL: the client's clientInfo.name */
    const char *policy;              /* borrowed; NULL: the policy matching the tool */
    unsigned long policy_timeout_ms; /* 0: wait until the daemon settles the escalation */
    bg_mcp_report_mode report;
    const char *report_field;  /* borrowed; BG_MCP_REPORT_FIELD */
    int fail_open;             /* guard errors forward the call (logged) */
    size_t max_message;        /* bytes per line, each way */
    size_t max_pending;        /* client requests awaiting an answer */
    int client_in, client_out; /* fds: normally 0 and 1 */
    bg_mcp_guard guard;
} bg_mcp_config;

/* Run the proxy until one side ends; returns a BG_MCP_EXIT_* code.
 * *threads_left is set to the number of workers still blocked in the
 * guard at return (the caller then ends the process with _exit, since
 * those threads still use the guard table). */
int bg_mcp_run(const bg_mcp_config *cfg, unsigned *threads_left);

/* ---------------------------------------------------------- messages */

typedef enum bg_mcp_kind {
    BG_MCP_PARSE_ERROR = 0, /* not JSON: answer -32700 */
    BG_MCP_INVALID,         /* JSON, not a JSON-RPC 2.0 message: -32600 */
    BG_MCP_BATCH,           /* a JSON array: not in 2025-06-18 */
    BG_MCP_REQUEST,         /* method + id */
    BG_MCP_NOTIFICATION,    /* method, no id */
    BG_MCP_RESPONSE,        /* id + result or error */
} bg_mcp_kind;

/* One classified message. root is new (json_decref it, NULL for
 * PARSE_ERROR); method, id, params and result point into it. */
typedef struct bg_mcp_msg {
    bg_mcp_kind kind;
    json_t *root;
    const char *method; /* REQUEST, NOTIFICATION */
    json_t *id;         /* REQUEST, RESPONSE (string or number; null on an error reply) */
    json_t *params;     /* may be NULL */
    json_t *result;     /* RESPONSE: result, NULL on an error reply */
    char why[160];      /* PARSE_ERROR, INVALID: what is wrong */
} bg_mcp_msg;

/* Classify one line (without its newline). Never fails otherwise. */
void bg_mcp_classify(const char *line, size_t len, bg_mcp_msg *out);
void bg_mcp_msg_clear(bg_mcp_msg *m);

/* The id as a table key: its compact JSON ("7", "\"a\""); new; NULL on OOM. */
char *bg_mcp_id_key(const json_t *id);

/* A JSON-RPC error reply (id NULL -> null); new. */
json_t *bg_mcp_error_reply(const json_t *id, int code, const char *message);

/* The tool result that refuses a call: isError true, one text block, and
 * _meta["io.bayesguard/verdict"] with the verdict's fields (v may be NULL
 * for a guard error); new. */
json_t *bg_mcp_refusal(const json_t *id, const char *text, const Bayesguard__V1__Verdict *v);

/* The text a DENY (or a refused escalation) gives the model; new (free). */
char *bg_mcp_verdict_text(const char *tool, const Bayesguard__V1__Verdict *v, const char *why);

/* How a tools/call result reads as an outcome under `mode`: 1 harmed,
 * 0 not, -1 undecidable (why says why: no such field, not a boolean). */
int bg_mcp_outcome(bg_mcp_report_mode mode, const char *field, const json_t *result, char *why,
                   size_t why_len);

#endif
