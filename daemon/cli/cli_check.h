/* cli_check.h — `bayesguard check DIR [--plugins DIR] [--json]` (see cli_check.c). */
#ifndef BG_CLI_CHECK_H
#define BG_CLI_CHECK_H

/* argv[0] = "check"; returns the exit code: 0 valid, 1 invalid, 2 usage. */
int bg_cli_check_main(int argc, char **argv);

#endif
