/*
 * cli_mcp.c — `bayesguard mcp-proxy` (cli_mcp.h): flags, and the guard
 * table of the proxy core (daemon/mcp/mcp.h) filled with the CLI's Guard
 * client (cli_client.h).
 *
 * A bg_client serves one thread at a time, and the proxy calls the guard
 * from several (one worker per held tools/call, the reporter), so the
 * clients are pooled: a call takes an idle one or makes one, and puts it
 * back. Two pools: unary calls with --timeout-ms, and AwaitDecision rounds
 * whose deadline must outlast the round the daemon is asked to wait.
 * The pools grow to at most the number of threads that call at once
 * (BG_MCP_MAX_WORKERS + 1).
 */
#include "cli/cli_mcp.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_client.h"
#include "common/bg_log.h"
#include "mcp/mcp.h"

#define AWAIT_MARGIN_MS 5000u
#define AWAIT_ROUND_MAX_MS 60000u

/* ------------------------------------------------------------ client pool */

typedef struct pool {
    pthread_mutex_t mu;
    const char *addr;
    unsigned timeout_ms;
    bg_client *idle[BG_MCP_MAX_WORKERS + 2];
    size_t n_idle;
} pool;

typedef struct guard {
    pool unary, await;
} guard;

static int pool_get(pool *pl, bg_client **out, bg_err *err)
{
    pthread_mutex_lock(&pl->mu);
    *out = pl->n_idle > 0 ? pl->idle[--pl->n_idle] : NULL;
    pthread_mutex_unlock(&pl->mu);
    if (*out != NULL)
        return BG_OK;
    return bg_client_create(pl->addr, pl->timeout_ms, out, err);
}

static void pool_put(pool *pl, bg_client *c)
{
    pthread_mutex_lock(&pl->mu);
    if (pl->n_idle < sizeof(pl->idle) / sizeof(pl->idle[0])) {
        pl->idle[pl->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&pl->mu);
    bg_client_destroy(c);
}

static void pool_close(pool *pl)
{
    for (size_t i = 0; i < pl->n_idle; i++)
        bg_client_destroy(pl->idle[i]);
    pl->n_idle = 0;
    pthread_mutex_destroy(&pl->mu);
}

static int g_evaluate(void *ud, const Bayesguard__V1__EvaluateRequest *req,
                      Bayesguard__V1__Verdict **out, bg_err *err)
{
    guard *g = ud;
    bg_client *c;
    if (pool_get(&g->unary, &c, err) != BG_OK)
        return err->code;
    int rc = bg_client_evaluate(c, req, out, NULL, err);
    pool_put(&g->unary, c);
    return rc;
}

static int g_await(void *ud, const char *decision_id, unsigned timeout_ms,
                   Bayesguard__V1__Verdict **out, bg_err *err)
{
    guard *g = ud;
    bg_client *c;
    if (pool_get(&g->await, &c, err) != BG_OK)
        return err->code;
    Bayesguard__V1__AwaitDecisionRequest req = BAYESGUARD__V1__AWAIT_DECISION_REQUEST__INIT;
    req.decision_id = (char *)decision_id;
    req.timeout_ms = timeout_ms < AWAIT_ROUND_MAX_MS ? timeout_ms : AWAIT_ROUND_MAX_MS;
    int rc =
        bg_client_unary(c, "/bayesguard.v1.Guard/AwaitDecision", (const ProtobufCMessage *)&req,
                        &bayesguard__v1__verdict__descriptor, (ProtobufCMessage **)out, NULL, err);
    pool_put(&g->await, c);
    return rc;
}

static int g_observe(void *ud, const Bayesguard__V1__ObserveRequest *req, bg_err *err)
{
    guard *g = ud;
    bg_client *c;
    if (pool_get(&g->unary, &c, err) != BG_OK)
        return err->code;
    Bayesguard__V1__ObserveResponse *r = NULL;
    int rc = bg_client_observe(c, req, &r, NULL, err);
    bg_client_free(r);
    pool_put(&g->unary, c);
    return rc;
}

static void g_free(void *ud, void *msg)
{
    (void)ud;
    bg_client_free(msg);
}

/* ------------------------------------------------------------ flags */

enum {
    O_GUARD = 1000,
    O_SESSION,
    O_AGENT,
    O_POLICY,
    O_PTIMEOUT,
    O_REPORT,
    O_FAILOPEN,
    O_MAXMSG,
    O_MAXPEND,
    O_TIMEOUT,
    O_LOG,
    O_HELP
};

static const struct option opts[] = {
    {"guard", required_argument, NULL, O_GUARD},
    {"session", required_argument, NULL, O_SESSION},
    {"agent", required_argument, NULL, O_AGENT},
    {"policy", required_argument, NULL, O_POLICY},
    {"policy-timeout", required_argument, NULL, O_PTIMEOUT},
    {"report", required_argument, NULL, O_REPORT},
    {"fail-open", no_argument, NULL, O_FAILOPEN},
    {"max-message", required_argument, NULL, O_MAXMSG},
    {"max-pending", required_argument, NULL, O_MAXPEND},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"log-level", required_argument, NULL, O_LOG},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bayesguard mcp-proxy --guard ADDR [flags] -- SERVER_COMMAND [ARGS...]\n"
            "\n"
            "A stdio MCP proxy (protocol 2025-06-18): the MCP client talks to it on stdin/stdout,\n"
            "it runs SERVER_COMMAND and asks the guard before every tools/call (docs/MCP.md).\n"
            "\n"
            "  --guard ADDR            the daemon, host:port or unix:/path (default: "
            "$" BG_CLIENT_ADDR_ENV ", else " BG_CLIENT_DEFAULT_ADDR ")\n"
            "  --session S             context.session (default: the client's clientInfo.name)\n"
            "  --agent A               context.agent (default: the client's clientInfo.name)\n"
            "  --policy NAME           the policy expected to guard every tool (default: the one\n"
            "                          matching each tool)\n"
            "  --policy-timeout D      longest wait on an escalation, e.g. 90s, 15m (default 0:\n"
            "                          until the daemon settles it, by the policy's timeout)\n"
            "  --report MODE           outcomes: is-error (harmed = the result's isError),\n"
            "                          field:NAME (harmed = structuredContent.NAME, a boolean),\n"
            "                          none (default: a separate reporter sends them)\n"
            "  --fail-open             forward a call when the guard fails (default: refuse it)\n"
            "  --max-message BYTES     longest message each way (default 4194304)\n"
            "  --max-pending N         requests awaiting an answer (default 1024)\n"
            "  --timeout-ms N          deadline of each Evaluate/Observe (default 10000)\n"
            "  --log-level L           debug|info|warn|error on stderr (default warn)\n"
            "\n"
            "exit: 0 the client closed stdin (or SIGTERM/SIGINT), 1 proxy failure, 2 usage, 5 the\n"
            "server exited while the client was connected, 6 the server could not be started\n");
}

static int bad(const char *fmt, const char *what)
{
    fprintf(stderr, "bayesguard mcp-proxy: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see bayesguard mcp-proxy --help)\n");
    return BG_MCP_EXIT_USAGE;
}

static int parse_size(const char *s, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* "90", "90s", "1500ms", "15m", "2h" -> milliseconds. */
static int parse_duration(const char *s, unsigned long *ms)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0))
        return -1;
    double mult = 1000;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "s") != 0 && *end != '\0')
        return -1;
    double r = v * mult;
    if (r > 7 * 24 * 3600000.0)
        return -1;
    *ms = (unsigned long)r;
    return 0;
}

int bg_cli_mcp_main(int argc, char **argv)
{
    bg_mcp_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_message = BG_MCP_DEFAULT_MAX_MESSAGE;
    cfg.max_pending = BG_MCP_DEFAULT_MAX_PENDING;
    cfg.client_in = 0;
    cfg.client_out = 1;
    const char *addr = NULL;
    unsigned long long timeout_ms = 10000;
    bg_log_set_level(BG_LOG_WARN);
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        unsigned long long v;
        switch (o) {
        case O_GUARD:
            addr = optarg;
            break;
        case O_SESSION:
            cfg.session = optarg;
            break;
        case O_AGENT:
            cfg.agent = optarg;
            break;
        case O_POLICY:
            cfg.policy = optarg;
            break;
        case O_FAILOPEN:
            cfg.fail_open = 1;
            break;
        case O_HELP:
            usage(stdout);
            return BG_MCP_EXIT_OK;
        case O_PTIMEOUT:
            if (parse_duration(optarg, &cfg.policy_timeout_ms) != 0)
                return bad("--policy-timeout '%s': expected a duration such as 90s, 15m or 0 "
                           "(up to 7 days)",
                           optarg);
            break;
        case O_REPORT:
            if (strcmp(optarg, "none") == 0) {
                cfg.report = BG_MCP_REPORT_NONE;
            } else if (strcmp(optarg, "is-error") == 0) {
                cfg.report = BG_MCP_REPORT_IS_ERROR;
            } else if (strncmp(optarg, "field:", 6) == 0 && optarg[6] != '\0') {
                cfg.report = BG_MCP_REPORT_FIELD;
                cfg.report_field = optarg + 6;
            } else {
                return bad("--report '%s': expected is-error, field:NAME or none", optarg);
            }
            break;
        case O_MAXMSG:
            if (parse_size(optarg, 1024, 1ull << 30, &v) != 0)
                return bad("--max-message '%s': expected bytes between 1024 and 1073741824",
                           optarg);
            cfg.max_message = (size_t)v;
            break;
        case O_MAXPEND:
            if (parse_size(optarg, 1, 1000000, &v) != 0)
                return bad("--max-pending '%s': expected a count between 1 and 1000000", optarg);
            cfg.max_pending = (size_t)v;
            break;
        case O_TIMEOUT:
            if (parse_size(optarg, 1, 3600000, &timeout_ms) != 0)
                return bad("--timeout-ms '%s': expected milliseconds between 1 and 3600000",
                           optarg);
            break;
        case O_LOG: {
            int lvl = bg_log_level_parse(optarg);
            if (lvl < 0)
                return bad("--log-level '%s': expected debug, info, warn or error", optarg);
            bg_log_set_level(lvl);
            break;
        }
        default:
            return bad("unknown or incomplete flag '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return bad("%s", "no server command: put it after --, e.g. "
                         "bayesguard mcp-proxy --guard unix:/run/bg.sock -- node server.mjs");
    cfg.server_argv = argv + optind;
    if (addr != NULL && strlen(addr) >= 256)
        return bad("--guard '%.40s...': expected host:port or unix:/path under 256 bytes", addr);

    guard g;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.unary.mu, NULL);
    pthread_mutex_init(&g.await.mu, NULL);
    g.unary.addr = g.await.addr = addr;
    g.unary.timeout_ms = (unsigned)timeout_ms;
    g.await.timeout_ms = AWAIT_ROUND_MAX_MS + AWAIT_MARGIN_MS;
    cfg.guard.ud = &g;
    cfg.guard.evaluate = g_evaluate;
    cfg.guard.await_decision = g_await;
    cfg.guard.observe = g_observe;
    cfg.guard.free_msg = g_free;

    unsigned left = 0;
    int code = bg_mcp_run(&cfg, &left);
    if (left > 0) {
        /* Threads still blocked in a guard call use g: end without unwinding. */
        fflush(NULL);
        _exit(code);
    }
    pool_close(&g.unary);
    pool_close(&g.await);
    return code;
}
