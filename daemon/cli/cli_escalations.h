/*
 * cli_escalations.h — `bayesguard escalations list | watch | approve ID |
 * reject ID --reason TEXT`: the operator's side of the escalation workflow
 * (docs/ESCALATIONS.md). Exit codes as cli_guard.h: 0 ok, 2 usage, 3 RPC
 * error (the gRPC code and the daemon's message on stderr). Main thread.
 */
#ifndef BG_CLI_ESCALATIONS_H
#define BG_CLI_ESCALATIONS_H

int bg_cli_escalations_main(int argc, char **argv);

#endif
