/*
 * lm_cli_driver.c — a tiny main() around bg_cli_lm_main, so the `lm`
 * subcommand is tested even when the bayesguard binary is not built:
 *   lm_cli_driver lm generate --model M ...   ==   bayesguard lm generate ...
 */

#include "cli/cli_lm.h"

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    return bg_cli_lm_main(argc - 1, argv + 1);
}
