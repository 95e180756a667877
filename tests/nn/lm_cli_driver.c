/*
 * lm_cli_driver.c — a tiny main() around bg_cli_lm_main, so the `lm`
 * subcommand is tested even when the bayesguard binary is not built:
 *   lm_cli_driver lm generate --model M ...   ==   bayesguard lm generate ...
 */
#include <dlfcn.h>

#include "cli/cli_lm.h"

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    /* Keep Mesa's lavapipe mapped after the Vulkan loader unloads it (the
     * `--backend vulkan` probe loads it): its process-wide caches would
     * otherwise be reported by LeakSanitizer as leaks of an "<unknown
     * module>" (same fix as tests/vulkan/vk_test_util.c). */
    dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    return bg_cli_lm_main(argc - 1, argv + 1);
}
