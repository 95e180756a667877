/*
 * bg_version.c — the build's version, git revision and plugin ABI
 * (bg_version.h). BG_VERSION and BG_GIT_REVISION are defined for this one
 * file by lib/common/CMakeLists.txt, so a new revision recompiles nothing
 * else.
 */
#include "common/bg_version.h"

#include "bayesguard/plugin.h"
#include "common/bg_strbuf.h"

#ifndef BG_VERSION
#define BG_VERSION "0.0.0"
#endif
#ifndef BG_GIT_REVISION
#define BG_GIT_REVISION "unknown"
#endif

const char *bg_version(void)
{
    return BG_VERSION;
}

const char *bg_version_revision(void)
{
    return BG_GIT_REVISION[0] ? BG_GIT_REVISION : "unknown";
}

void bg_version_print(FILE *f, const char *prog, int json)
{
    if (!json) {
        fprintf(f, "%s %s\nrevision %s\nplugin ABI %d.%d (%s)\n", prog, bg_version(),
                bg_version_revision(), BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR,
                BG_PLUGIN_ABI_DATE);
        return;
    }
    char mem[512];
    bg_strbuf b;
    bg_strbuf_init_on(&b, mem, sizeof mem);
    bg_strbuf_puts(&b, "{\"program\": ");
    bg_strbuf_json_cstr(&b, prog);
    bg_strbuf_puts(&b, ", \"version\": ");
    bg_strbuf_json_cstr(&b, bg_version());
    bg_strbuf_puts(&b, ", \"revision\": ");
    bg_strbuf_json_cstr(&b, bg_version_revision());
    bg_strbuf_printf(&b, ", \"plugin_abi\": {\"major\": %d, \"minor\": %d, \"date\": ",
                     BG_PLUGIN_ABI_MAJOR, BG_PLUGIN_ABI_MINOR);
    bg_strbuf_json_cstr(&b, BG_PLUGIN_ABI_DATE);
    bg_strbuf_puts(&b, "}}\n");
    fwrite(b.p, 1, b.len, f);
    bg_strbuf_close(&b);
}
