/*
 * test_plugin_abi.c — BG_PLUGIN_ABI_MAJOR/MINOR/DATE match the newest entry
 * of the "ABI history" comment in include/bayesguard/plugin.h (Varnish's
 * rule: bump the constants and write the history line together).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/plugin.h"
#include "bg_check.h"

int main(void)
{
    const char *src = getenv("BG_SOURCE_DIR");
    if (!src) {
        printf("BG_SOURCE_DIR not set: run through ctest\n");
        return 77;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/include/bayesguard/plugin.h", src);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        CHECK_DONE("test_plugin_abi");
    char line[512];
    int in_history = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "ABI history")) {
            in_history = 1;
            continue;
        }
        char date[16];
        int major, minor;
        if (in_history && sscanf(line, " * %15s %d.%d", date, &major, &minor) == 3) {
            CHECK_INT(major, BG_PLUGIN_ABI_MAJOR);
            CHECK_INT(minor, BG_PLUGIN_ABI_MINOR);
            CHECK_STR(date, BG_PLUGIN_ABI_DATE);
            found = 1;
            break;
        }
    }
    fclose(f);
    CHECK(found);
    /* The frozen head: version and size first. */
    CHECK_INT(offsetof(bg_plugin_desc, abi_major), 0);
    CHECK_INT(offsetof(bg_plugin_desc, abi_minor), 4);
    CHECK_INT(offsetof(bg_plugin_desc, desc_size), 8);
    CHECK_DONE("test_plugin_abi");
}
