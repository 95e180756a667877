/*
 * guard_build.c — plugin instances + config -> bg_guard (see guard_build.h).
 */
#include "engine/guard_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"

typedef struct part {
    bg_plugin *plugin;
    bg_plugin_services *svc;
    bg_cfg_doc *doc;
    void *inst;
} part;

struct bg_guard_build {
    bg_guard guard;
    char *name;
    part model, est;
};

static void part_close(part *p, int kind)
{
    if (p->inst) {
        if (kind == BG_PLUGIN_KIND_HYPOTHESIS)
            p->plugin->desc->vt.hypothesis->destroy(p->inst);
        else
            p->plugin->desc->vt.estimator->destroy(p->inst);
    }
    if (p->svc)
        bg_plugin_services_destroy(p->svc);
    if (p->doc)
        bg_cfg_doc_destroy(p->doc);
    if (p->plugin)
        bg_plugin_unref(p->plugin);
    memset(p, 0, sizeof *p);
}

static int part_open(bg_plugin_host *host, const char *guard, const char *what, const char *name,
                     int kind, const char *cfg, part *p, bg_err *err)
{
    int rc = bg_plugin_host_find(host, name, (bg_plugin_kind)kind, &p->plugin, err);
    if (rc != BG_OK)
        return bg_err_prefix(err, "%s.%s: ", guard, what);
    char src[256];
    snprintf(src, sizeof src, "%s.%s", guard, what);
    const bg_cfg_node *root = NULL;
    if (cfg && cfg[0]) {
        if ((rc = bg_cfg_parse_string(cfg, strlen(cfg), src, &p->doc, err)) != BG_OK)
            return rc;
        root = bg_cfg_doc_count(p->doc) ? bg_cfg_doc_root(p->doc, 0) : NULL;
    }
    if ((rc = bg_plugin_services_create(host, p->plugin, &p->svc, err)) != BG_OK)
        return rc;
    bg_plugin_services_set_section(p->svc, root);
    const bg_host *h = bg_plugin_services_host(p->svc);
    int prc = kind == BG_PLUGIN_KIND_HYPOTHESIS
                  ? p->plugin->desc->vt.hypothesis->create(h, root, &p->inst)
                  : p->plugin->desc->vt.estimator->create(h, root, &p->inst);
    if (prc != BG_PLUGIN_OK) {
        p->inst = NULL;
        const char *msgs = bg_plugin_services_errors(p->svc);
        return bg_err_set(err, BG_ECONFIG, "%s: plugin %s: create failed (%d)%s%s", src, name,
                          prc, msgs[0] ? ":\n" : "", msgs);
    }
    return BG_OK;
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
    uint64_t seed = 1469598103934665603ull;
    for (const char *c = spec->model; *c; c++)
        seed = (seed ^ (uint8_t)*c) * 1099511628211ull;
    g->model_key = b->model.doc ? bg_cfg_hash(bg_cfg_doc_root(b->model.doc, 0), seed) : seed;
    g->model_name = b->model.plugin->desc->name;
    g->model = b->model.plugin->desc->vt.hypothesis;
    g->model_inst = b->model.inst;
    g->estimator_name = b->est.plugin->desc->name;
    g->estimator = b->est.plugin->desc->vt.estimator;
    g->estimator_inst = b->est.inst;
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
    part_close(&b->est, BG_PLUGIN_KIND_ESTIMATOR);
    part_close(&b->model, BG_PLUGIN_KIND_HYPOTHESIS);
    free(b->name);
    free(b);
}
