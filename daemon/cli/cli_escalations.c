/*
 * cli_escalations.c — `bayesguard escalations` (cli_escalations.h).
 *
 *   list     [--all] [--policy P] [--json]   the pending ones (--all: and
 *                                            the settled ones still held)
 *   watch    [--policy P] [--json]           the pending ones, then every
 *                                            new and settled one, until ^C
 *   approve  ID [--approver NAME] [--reason TEXT] [--json]
 *   reject   ID --reason TEXT [--approver NAME] [--json]
 * Every subcommand takes --addr (default $BAYESGUARD_ADDR, else
 * 127.0.0.1:50051) and --timeout-ms. --approver defaults to $USER (a
 * name the operator gives; the daemon records it beside the connection's
 * authenticated identity). Text output is one line per escalation; --json
 * prints each Escalation as one JSON object per line (cli_json.h).
 */
#include "cli/cli_escalations.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cli/cli_client.h"
#include "cli/cli_guard.h"
#include "cli/cli_json.h"

typedef struct opts {
    const char *addr, *policy, *approver, *reason, *id;
    long timeout_ms;
    int json, all;
} opts;

enum { O_ADDR = 1000, O_TIMEOUT, O_JSON, O_ALL, O_POLICY, O_APPROVER, O_REASON, O_HELP };

static const struct option longopts[] = {
    {"addr", required_argument, NULL, O_ADDR},
    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
    {"json", no_argument, NULL, O_JSON},
    {"all", no_argument, NULL, O_ALL},
    {"policy", required_argument, NULL, O_POLICY},
    {"approver", required_argument, NULL, O_APPROVER},
    {"reason", required_argument, NULL, O_REASON},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bayesguard escalations list [--all] [--policy P] [--json]\n"
            "       bayesguard escalations watch [--policy P] [--json]\n"
            "       bayesguard escalations approve ID [--approver NAME] [--reason TEXT] [--json]\n"
            "       bayesguard escalations reject ID --reason TEXT [--approver NAME] [--json]\n"
            "  Escalations are what ESCALATE verdicts opened, waiting for a person\n"
            "  (operator role). --approver defaults to $USER; --addr to $" BG_CLIENT_ADDR_ENV
            ",\n  else " BG_CLIENT_DEFAULT_ADDR ". --all lists settled ones still held too.\n"
            "  Exit 0 ok, 2 usage, 3 RPC error (e.g. FAILED_PRECONDITION: settled already).\n");
}

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "bayesguard escalations: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    usage(stderr);
    return BG_CLI_EXIT_USAGE;
}

static int rpc_error(const bg_rpc_result *st, const bg_err *err)
{
    if (st->code != 0)
        fprintf(stderr, "bayesguard escalations: error: %s: %s\n", st->name, st->message);
    else
        fprintf(stderr, "bayesguard escalations: error: %s\n", err->msg);
    return BG_CLI_EXIT_RPC;
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void print_one(const opts *o, const Bayesguard__V1__Escalation *e)
{
    if (o->json) {
        bg_cli_json_print(stdout, &e->base);
        fflush(stdout);
        return;
    }
    const char *state = e->state == BAYESGUARD__V1__ESCALATION_STATE__PENDING    ? "PENDING"
                        : e->state == BAYESGUARD__V1__ESCALATION_STATE__APPROVED ? "APPROVED"
                        : e->state == BAYESGUARD__V1__ESCALATION_STATE__REJECTED ? "REJECTED"
                        : e->state == BAYESGUARD__V1__ESCALATION_STATE__EXPIRED  ? "EXPIRED"
                                                                                 : "?";
    printf("%s  %-8s policy=%s tool=%s bound=%.4g threshold=%.4g agent=%s peer=%s", e->id, state,
           e->policy, e->tool, e->harm_bound, e->threshold, e->agent, e->peer);
    if (e->state == BAYESGUARD__V1__ESCALATION_STATE__PENDING)
        printf(" expires_in=%llds on_timeout=%s",
               (long long)((e->expires_unix_ms - now_ms()) / 1000), e->on_timeout);
    else
        printf(" by=%s%s%s%s", e->approver[0] ? e->approver : "(timeout)",
               e->approver_peer[0] ? " (" : "", e->approver_peer, e->approver_peer[0] ? ")" : "");
    if (e->reason[0])
        printf(" reason=\"%s\"", e->reason);
    printf("\n");
    fflush(stdout);
}

static int do_list(bg_client *cl, const opts *o)
{
    Bayesguard__V1__ListEscalationsRequest req = BAYESGUARD__V1__LIST_ESCALATIONS_REQUEST__INIT;
    req.include_settled = o->all;
    req.policy = (char *)(o->policy ? o->policy : "");
    Bayesguard__V1__ListEscalationsResponse *out = NULL;
    bg_rpc_result st = {0};
    bg_err err;
    bg_err_clear(&err);
    if (bg_client_unary(cl, "/bayesguard.v1.Guard/ListEscalations", &req.base,
                        &bayesguard__v1__list_escalations_response__descriptor,
                        (ProtobufCMessage **)&out, &st, &err) != BG_OK)
        return rpc_error(&st, &err);
    for (size_t i = 0; i < out->n_escalations; i++)
        print_one(o, out->escalations[i]);
    if (!o->json && out->n_escalations == 0)
        printf("no %sescalations\n", o->all ? "" : "pending ");
    bg_client_free(out);
    return BG_CLI_EXIT_OK;
}

static int watch_one(void *arg, const ProtobufCMessage *m)
{
    const Bayesguard__V1__EscalationEvent *ev = (const Bayesguard__V1__EscalationEvent *)m;
    if (ev->escalation != NULL)
        print_one(arg, ev->escalation);
    return 0;
}

static int do_watch(bg_client *cl, const opts *o)
{
    Bayesguard__V1__WatchEscalationsRequest req = BAYESGUARD__V1__WATCH_ESCALATIONS_REQUEST__INIT;
    req.policy = (char *)(o->policy ? o->policy : "");
    bg_rpc_result st = {0};
    bg_err err;
    bg_err_clear(&err);
    if (bg_client_server_stream(cl, "/bayesguard.v1.Guard/WatchEscalations", &req.base,
                                &bayesguard__v1__escalation_event__descriptor, watch_one, (void *)o,
                                &st, &err) != BG_OK)
        return rpc_error(&st, &err);
    return BG_CLI_EXIT_OK;
}

static int do_resolve(bg_client *cl, const opts *o, int approve)
{
    Bayesguard__V1__ResolveEscalationRequest req = BAYESGUARD__V1__RESOLVE_ESCALATION_REQUEST__INIT;
    req.id = (char *)o->id;
    req.resolution =
        approve ? BAYESGUARD__V1__RESOLUTION__APPROVE : BAYESGUARD__V1__RESOLUTION__REJECT;
    req.approver = (char *)o->approver;
    req.reason = (char *)(o->reason ? o->reason : "");
    Bayesguard__V1__Escalation *out = NULL;
    bg_rpc_result st = {0};
    bg_err err;
    bg_err_clear(&err);
    if (bg_client_unary(cl, "/bayesguard.v1.Guard/ResolveEscalation", &req.base,
                        &bayesguard__v1__escalation__descriptor, (ProtobufCMessage **)&out, &st,
                        &err) != BG_OK)
        return rpc_error(&st, &err);
    print_one(o, out);
    bg_client_free(out);
    return BG_CLI_EXIT_OK;
}

int bg_cli_escalations_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? BG_CLI_EXIT_USAGE : BG_CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    int is_list = strcmp(sub, "list") == 0, is_watch = strcmp(sub, "watch") == 0;
    int is_approve = strcmp(sub, "approve") == 0, is_reject = strcmp(sub, "reject") == 0;
    if (!is_list && !is_watch && !is_approve && !is_reject)
        return usage_error("unknown subcommand '%s': list, watch, approve or reject", sub);
    opts o = {.timeout_ms = 10000, .approver = getenv("USER")};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_ADDR:
            o.addr = optarg;
            break;
        case O_TIMEOUT:
            o.timeout_ms = strtol(optarg, NULL, 10);
            if (o.timeout_ms <= 0)
                return usage_error("--timeout-ms '%s': a positive number of milliseconds", optarg);
            break;
        case O_JSON:
            o.json = 1;
            break;
        case O_ALL:
            o.all = 1;
            break;
        case O_POLICY:
            o.policy = optarg;
            break;
        case O_APPROVER:
            o.approver = optarg;
            break;
        case O_REASON:
            o.reason = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return BG_CLI_EXIT_OK;
        default:
            return usage_error("unknown or incomplete flag '%s'", argv[optind]);
        }
    }
    int npos = argc - 1 - optind;
    char **pos = argv + 1 + optind;
    if ((is_list || is_watch) && npos > 0)
        return usage_error("unexpected argument '%s'", pos[0]);
    if (is_approve || is_reject) {
        if (npos != 1)
            return usage_error("%s takes one escalation ID (the ESCALATE verdict's "
                               "decision_id)",
                               sub);
        o.id = pos[0];
        if (o.approver == NULL || o.approver[0] == '\0')
            return usage_error("%s: give --approver NAME (no $USER to default to)", sub);
        if (is_reject && (o.reason == NULL || o.reason[0] == '\0'))
            return usage_error("%s needs --reason TEXT (the agent gets it with the DENY)", sub);
    }
    bg_client *cl = NULL;
    bg_err err;
    bg_err_clear(&err);
    /* watch waits for events without a deadline; the others have one */
    if (bg_client_create(o.addr, (unsigned)o.timeout_ms, &cl, &err) != BG_OK) {
        fprintf(stderr, "bayesguard escalations: %s\n", err.msg);
        return BG_CLI_EXIT_USAGE;
    }
    int rc = is_list    ? do_list(cl, &o)
             : is_watch ? do_watch(cl, &o)
                        : do_resolve(cl, &o, is_approve);
    bg_client_destroy(cl);
    return rc;
}
