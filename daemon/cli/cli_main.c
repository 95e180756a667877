/*
 * cli_main.c — the `bayesguard` command: dispatch to a subcommand.
 *
 * Each subcommand is `int f(int argc, char **argv)` with argv[0] its own
 * name, returning the exit code. Main thread only.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli_guard.h"
#include "cli/cli_lm.h"
#include "cli/cli_mcp.h"
#include "cli/cli_check.h"
#include "cli/cli_escalations.h"
#include "cli/cli_replay.h"
#include "cli/cli_store.h"
#include "cli/cli_test.h"
#include "common/bg_version.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"eval", bg_cli_eval_main, "ask the daemon whether an action may run (exit 0/1/4)"},
    {"observe", bg_cli_observe_main, "report an action's outcome"},
    {"status", bg_cli_status_main, "daemon, policy and reload state"},
    {"health", bg_cli_health_main, "grpc.health.v1 Check (exit 0 SERVING)"},
    {"reload", bg_cli_reload_main, "reload the policy directory now"},
    {"check", bg_cli_check_main, "validate a policy directory as a reload would"},
    {"replay", bg_cli_replay_main, "replay recorded actions against a daemon"},
    {"lm", bg_cli_lm_main,
     "language-model tools (generate, score, train, tokenizer, corpus, bench)"},
    {"test", bg_cli_test_main, "run the policy unit tests DIR/*_test.yaml offline"},
    {"mcp-proxy", bg_cli_mcp_main, "stdio MCP proxy that asks the guard before each tools/call"},
    {"escalations", bg_cli_escalations_main, "list, watch, approve or reject escalations"},
    {"store", bg_cli_store_main, "verify or repair a --data-dir's observation log offline"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: bayesguard COMMAND [flags]   (bayesguard COMMAND --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nexit codes (every command; table in docs/CLI.md):\n"
               "  0  ok: ALLOW, valid, every test passed, SERVING\n"
               "  1  DENY / invalid policies / a test failed / negative answer / replay stopped\n"
               "  2  usage, or input that cannot be loaded (test files, plugin dir)\n"
               "  3  RPC error (the gRPC status and the daemon's message are printed)\n"
               "  4  ESCALATE (eval): a person must decide\n"
               "\n  bayesguard --version [--json]   version, git revision, plugin ABI\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc == 2) {
            usage(stdout);
            return 0;
        }
        /* help COMMAND: the command's own --help; anything else is a usage error */
        for (size_t i = 0; argc == 3 && i < sizeof(commands) / sizeof(commands[0]); i++)
            if (strcmp(argv[2], commands[i].name) == 0) {
                char *sub[] = {argv[2], "--help", NULL};
                return commands[i].fn(2, sub);
            }
        fprintf(stderr, "bayesguard: %s takes one command name, not '%s'\n\n", argv[1],
                argv[argc - 1]);
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0) {
        int json = argc == 3 && strcmp(argv[2], "--json") == 0;
        if (argc > 2 && !json) {
            fprintf(stderr, "bayesguard: --version takes only --json, not '%s'\n", argv[2]);
            return 2;
        }
        bg_version_print(stdout, "bayesguard", json);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "bayesguard: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
