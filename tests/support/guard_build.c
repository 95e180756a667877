/*
 * guard_build.c — plugin instances + config -> bg_guard (see guard_build.h).
 */
#include "guard_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"

typedef struct part {
    bg_cfg_doc *doc;
    bg_plugin_instance *pi;
} part;

struct bg_guard_build {
    bg_guard guard;
    char *name;
    part model, est;
};

static void part_close(part *p)
{
    bg_plugin_instance_destroy(p->pi);
    bg_cfg_doc_destroy(p->doc);
    memset(p, 0, sizeof *p);
}

/* Parse cfg (source "<guard>.<what>") and create the instance from it. */
static int part_open(bg_plugin_host *host, const char *guard, const char *what, const char *name,
                     bg_plugin_kind kind, const char *cfg, part *p, bg_err *err)
{
    char src[256];
    snprintf(src, sizeof src, "%s.%s", guard, what);
    const bg_cfg_node *root = NULL;
    int rc;
    if (cfg && cfg[0]) {
        if ((rc = bg_cfg_parse_string(cfg, strlen(cfg), src, &p->doc, err)) != BG_OK)
            return rc;
        root = bg_cfg_doc_count(p->doc) ? bg_cfg_doc_root(p->doc, 0) : NULL;
    }
    rc = bg_plugin_instance_create(host, name, kind, root, root, NULL, NULL, NULL, &p->pi, err);
    if (rc != BG_OK && rc != BG_ECONFIG) /* config errors carry their position */
        bg_err_prefix(err, "%s: ", src);
    return rc;
}

int bg_guard_build_create(bg_plugin_host *host, const bg_guard_spec *spec, bg_guard_build **out,
                          bg_err *err)
{
    *out = NULL;
    bg_guard_build *b = calloc(1, sizeof *b);
    if (!b || !(b->name = strdup(spec->name))) {
        free(b);
        return bg_err_set(err, BG_ENOMEM, "guard %s: out of memory", spec->name);
    }
    int rc = part_open(host, spec->name, "model", spec->model, BG_PLUGIN_KIND_HYPOTHESIS,
                       spec->model_cfg, &b->model, err);
    if (rc == BG_OK)
        rc = part_open(host, spec->name, "estimator", spec->estimator, BG_PLUGIN_KIND_ESTIMATOR,
                       spec->estimator_cfg, &b->est, err);
    if (rc != BG_OK) {
        bg_guard_build_destroy(b);
        return rc;
    }
    bg_guard *g = &b->guard;
    g->name = b->name;
    g->revision = "guard_build";
    g->model_key = b->model.pi->key;
    g->model_name = b->model.pi->plugin->desc->name;
    g->model = b->model.pi->plugin->desc->vt.hypothesis;
    g->model_inst = b->model.pi->inst;
    g->estimator_name = b->est.pi->plugin->desc->name;
    g->estimator = b->est.pi->plugin->desc->vt.estimator;
    g->estimator_inst = b->est.pi->inst;
    g->threshold = spec->threshold;
    g->over_threshold = spec->over_threshold ? spec->over_threshold : BG_DECISION_DENY;
    g->shadow = spec->shadow;
    *out = b;
    return BG_OK;
}

const bg_guard *bg_guard_build_guard(const bg_guard_build *b)
{
    return &b->guard;
}

void bg_guard_build_destroy(bg_guard_build *b)
{
    if (!b)
        return;
    part_close(&b->est);
    part_close(&b->model);
    free(b->name);
    free(b);
}
