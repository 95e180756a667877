/* cli_store.h — `bayesguard store verify|repair DIR [--json]` (see cli_store.c). */
#ifndef BG_CLI_STORE_H
#define BG_CLI_STORE_H

/* argv[0] = "store"; returns the exit code: 0 clean (verify) or repaired,
 * 1 corruption found (verify), 2 usage or a log that cannot be read. */
int bg_cli_store_main(int argc, char **argv);

#endif
