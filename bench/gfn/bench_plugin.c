/*
 * bench_plugin.c — the benchmark's reward through the real bandit plugin:
 * without a plugin host in this build, the benchmark says why and uses the
 * local formula of bench_env.c (the same numbers).
 */
#include <stdio.h>

#include "bench_gfn.h"

int bench_plugin_attach(bench_env *e, char *why, size_t len)
{
    (void)e;
    snprintf(why, len, "the local bandit formula (bench_env.c; the plugin host is not built in "
                       "this configuration)");
    return -1;
}

void bench_plugin_detach(bench_env *e)
{
    e->plugin_log_r = NULL;
    e->plugin_ctx = NULL;
}
