/*
 * guard_build.h — a bg_guard from plugin names and YAML config text, for
 * programs that run the engine without policy files: the engine and gfn
 * tests and bench/bandit (library bg_test_support; the daemon builds its
 * guards from policies in daemon/policy, and does not link this).
 *
 * Steps: parse each config text with bg_cfg_parse_string (source name
 * "<name>.model", "<name>.estimator"), then make each instance the one way
 * the daemon does (bg_plugin_instance_create: the plugin found by name and
 * kind with a reference, its services table, create from the config), so
 * model_key is the model instance's key, the same recipe as a policy's.
 *
 * Threads: create/destroy on one thread; the guard may be used from any.
 * Ownership: the builder owns the instances and config docs; the guard is
 * valid until bg_guard_build_destroy. Strings in the spec are copied.
 */
#ifndef BG_TEST_GUARD_BUILD_H
#define BG_TEST_GUARD_BUILD_H

#include "engine/engine.h"
#include "plugin/plugin_host.h"

typedef struct bg_guard_spec {
    const char *name;          /* policy name (session key part) */
    const char *model;         /* hypothesis plugin name */
    const char *model_cfg;     /* YAML map text; NULL or "" = defaults */
    const char *estimator;     /* estimator plugin name */
    const char *estimator_cfg; /* YAML map text; NULL or "" = defaults */
    double threshold;
    bg_decision over_threshold; /* 0 = DENY */
    int shadow;
} bg_guard_spec;

typedef struct bg_guard_build bg_guard_build;

/* new: bg_guard_build_destroy. Config errors come back as BG_ECONFIG with
 * every "<name>.model:line:col: plugin X: ..." message; a plugin that is
 * not there as its BG_ENOTFOUND, "<name>.model: no hypothesis plugin ...". */
int bg_guard_build_create(bg_plugin_host *host, const bg_guard_spec *spec, bg_guard_build **out,
                          bg_err *err);
const bg_guard *bg_guard_build_guard(const bg_guard_build *b);
void bg_guard_build_destroy(bg_guard_build *b);

#endif
