/*
 * guard_build.h — a bg_guard from plugin names and YAML config text, for
 * programs that run the engine without policies: bench/bandit and the
 * engine tests. (The daemon builds its guards from policy files in
 * daemon/policy; this is the same steps, minus the policy schema.)
 *
 * Steps: find each plugin by name and kind in the host (a reference is
 * kept), parse the config text with bg_cfg_parse_string, create the
 * instance through its own services table, and hash model name + config
 * into model_key (same model and config -> same posterior identity).
 *
 * Separate library target (bg_engine_guard) so that bg_engine itself does
 * not depend on the plugin host.
 *
 * Threads: create/destroy on one thread; the guard may be used from any.
 * Ownership: the builder owns the instances, references and config docs;
 * the guard is valid until bg_guard_build_destroy. Strings in the spec are
 * copied.
 */
#ifndef BG_ENGINE_GUARD_BUILD_H
#define BG_ENGINE_GUARD_BUILD_H

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
 * every "<name>.model:line:col: plugin X: ..." message. */
int bg_guard_build_create(bg_plugin_host *host, const bg_guard_spec *spec, bg_guard_build **out,
                          bg_err *err);
const bg_guard *bg_guard_build_guard(const bg_guard_build *b);
void bg_guard_build_destroy(bg_guard_build *b);

#endif
