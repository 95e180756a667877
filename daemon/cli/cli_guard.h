/*
 * cli_guard.h — the `bayesguard` commands that talk to a running daemon:
 * eval, observe, status, health, reload. Each is `int f(argc, argv)` with
 * argv[0] the command name, returning the process exit code:
 *   0  ALLOW (eval) / ok / SERVING / reload applied
 *   1  DENY (eval) / NOT_SERVING (health) / reload refused
 *   2  usage error (bad flag, missing --tool ...)
 *   3  RPC error: the gRPC status name and the daemon's message are printed
 *   4  ESCALATE (eval): a person must decide, distinct from DENY
 * The table of every subcommand's codes is docs/CLI.md.
 * Main thread only.
 */
#ifndef BG_CLI_GUARD_H
#define BG_CLI_GUARD_H

#define BG_CLI_EXIT_OK 0
#define BG_CLI_EXIT_NO 1
#define BG_CLI_EXIT_USAGE 2
#define BG_CLI_EXIT_RPC 3
#define BG_CLI_EXIT_ESCALATE 4

int bg_cli_eval_main(int argc, char **argv);
int bg_cli_observe_main(int argc, char **argv);
int bg_cli_status_main(int argc, char **argv);
int bg_cli_health_main(int argc, char **argv);
int bg_cli_reload_main(int argc, char **argv);

#endif
