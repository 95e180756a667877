/*
 * cli_check.c — `bayesguard check DIR [--plugins DIR] [--json]`: validate
 * a policy directory exactly as the daemon's reload would, print every
 * error as file:line:column: message, exit non-zero when invalid — also
 * when a file of the plugin dir is not a loadable plugin or reuses a
 * plugin's name. When valid it lists the policies and each plugin with its
 * description and config keys (with --json: one JSON document,
 * bg_policy_check_dir_json). For an operator's CI (run it on the
 * ConfigMap's source before applying it) and for a plugin author
 * (docs/PLUGINS.md).
 *
 * The plugin dir comes from --plugins, else $BG_PLUGIN_DIR, else the
 * compiled-in BG_DEFAULT_PLUGIN_DIR when the build defines one.
 * Threads: main thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_check.h"
#include "policy/policy.h"

static int usage(FILE *f)
{
    fprintf(f, "usage: bayesguard check DIR [--plugins DIR] [--json]\n"
               "  Validate the policies in DIR (*.yaml, *.yml) as a reload would: schema,\n"
               "  plugins loaded, each plugin's config validated. Prints every error as\n"
               "  file:line:column: message; when valid, lists the policies and every\n"
               "  plugin with its description and config keys. Every *.so in the plugin\n"
               "  dir must load (a plugin is known by its descriptor's name, not its file).\n"
               "  Policy unit tests (*_test.yaml, bayesguard test) are not policies: skipped.\n"
               "  --json: the same report as one JSON document on stdout (docs/CLI.md).\n"
               "  Exit 0 valid, 1 invalid (a policy, or a plugin file that failed to load),\n"
               "  2 usage/plugin dir.\n");
    return 2;
}

int bg_cli_check_main(int argc, char **argv)
{
    const char *dir = NULL, *plugins = getenv("BG_PLUGIN_DIR");
    int json = 0;
#ifdef BG_DEFAULT_PLUGIN_DIR
    if (!plugins)
        plugins = BG_DEFAULT_PLUGIN_DIR;
#endif
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plugins") == 0 && i + 1 < argc) {
            plugins = argv[++i];
        } else if (strncmp(argv[i], "--plugins=", 10) == 0) {
            plugins = argv[i] + 10;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "check: unexpected argument '%s'\n", argv[i]);
            return usage(stderr);
        } else {
            dir = argv[i];
        }
    }
    if (!dir)
        return usage(stderr);
    if (!plugins) {
        fprintf(stderr, "check: no plugin directory: pass --plugins DIR\n");
        return 2;
    }
    return json ? bg_policy_check_dir_json(dir, plugins, stdout)
                : bg_policy_check_dir(dir, plugins, stdout);
}
