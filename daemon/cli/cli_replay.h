/*
 * cli_replay.h — `bayesguard replay FILE.jsonl --session S [--policy P]
 * [--addr A] [--timeout-ms N] [--json]`: send every line of a file of logged
 * outcomes to a daemon with Guard/Observe, in order, then print the
 * session's posterior summary. Lets an operator seed a posterior from
 * history. Line format: daemon/cli/cli_replay.c and docs/EXPERIMENTS.md.
 *
 * argv[0] is "replay"; returns the process exit code (0 all stored,
 * 1 a line was refused or the daemon failed, 2 usage).
 */
#ifndef BG_CLI_REPLAY_H
#define BG_CLI_REPLAY_H

int bg_cli_replay_main(int argc, char **argv);

#endif
