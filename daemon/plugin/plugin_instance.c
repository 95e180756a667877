/*
 * plugin_instance.c — one plugin instance made the one way the daemon makes
 * them (contract in plugin_host.h, "plugin instances"): the plugin found by
 * name and kind with a reference, its own services table, the instance
 * created from a config node, and the key that says what the instance's
 * state depends on.
 *
 * Why here: policy snapshots (daemon/policy/policy_snapshot.c) and the
 * programs that build guards without policies (tests/support, benches)
 * used to repeat these steps with two different model_key recipes; now a
 * guard built by either has the same posterior identity for the same
 * plugin file, name and config.
 *
 * Invariants: an instance holds a reference on its plugin until it is
 * destroyed, so the plugin's code stays loaded while the instance lives;
 * its services table lives exactly as long as the instance. A failed
 * create leaves nothing behind.
 *
 * Threads: create/destroy on one thread at a time per instance (the host's
 * lookups lock themselves). Ownership: *out is new (destroy it); the
 * config nodes are borrowed for the call (the section, blamed by config
 * errors, only until create returns: it is cleared afterwards, so an
 * instance may outlive the document it was made from).
 */
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "plugin/plugin_priv.h"

uint64_t bg_plugin_config_key(const bg_plugin *p, const bg_cfg_node *cfg)
{
    uint64_t seed = bg_plugin_identity(p);
    for (const char *c = p->desc->name; *c; c++)
        seed = (seed ^ (unsigned char)*c) * 0x100000001b3ULL;
    return bg_cfg_hash(cfg, seed);
}

/* The plugin's create for its kind; a BG_PLUGIN_* code. */
static int create_inst(const bg_plugin_desc *d, const bg_host *host, const bg_cfg_node *cfg,
                       const bg_space *space, void **inst)
{
    switch (d->kind) {
    case BG_PLUGIN_KIND_HYPOTHESIS:
        return d->vt.hypothesis->create(host, cfg, inst);
    case BG_PLUGIN_KIND_ESTIMATOR:
        return d->vt.estimator->create(host, cfg, inst);
    case BG_PLUGIN_KIND_SAMPLER:
        return d->vt.sampler->create(host, cfg, space, inst);
    }
    return BG_PLUGIN_EINVAL;
}

/* Every line of the plugin's newline-separated errors to the sink. */
static void sink_lines(bg_cfg_sink sink, void *ctx, const char *msgs)
{
    while (*msgs) {
        size_t len = strcspn(msgs, "\n");
        sink(ctx, NULL, "%.*s", (int)len, msgs);
        msgs += len + (msgs[len] == '\n');
    }
}

int bg_plugin_instance_create_from(bg_plugin_host *h, bg_plugin *p, const bg_cfg_node *section,
                                   const bg_cfg_node *cfg, const bg_space *space, bg_cfg_sink sink,
                                   void *sink_ctx, bg_plugin_instance **out, bg_err *err)
{
    *out = NULL;
    const bg_plugin_desc *d = p->desc;
    if (d->kind == BG_PLUGIN_KIND_SAMPLER && !space)
        return bg_err_set(err, BG_EINVAL, "plugin %s: a sampler instance needs the model's space",
                          d->name);
    bg_plugin_instance *pi = calloc(1, sizeof *pi);
    if (!pi)
        return bg_err_set(err, BG_ENOMEM, "plugin %s: out of memory", d->name);
    int rc = bg_plugin_services_create(h, p, &pi->svc, err);
    if (rc != BG_OK) {
        free(pi);
        return rc;
    }
    bg_plugin_services_set_section(pi->svc, section);
    int prc = create_inst(d, bg_plugin_services_host(pi->svc), cfg, space, &pi->inst);
    bg_plugin_services_set_section(pi->svc, NULL);
    if (prc != BG_PLUGIN_OK) {
        const char *msgs = bg_plugin_services_errors(pi->svc);
        if (msgs[0]) {
            bg_err_set(err, BG_ECONFIG, "%s", msgs);
            if (sink)
                sink_lines(sink, sink_ctx, msgs);
        } else {
            const char *why = bg_err_name(prc);
            if (section)
                bg_err_set(err, BG_ECONFIG,
                           "%s:%d:%d: plugin %s: create failed (%s) without saying why",
                           bg_cfg_file(section), bg_cfg_line(section), bg_cfg_column(section),
                           d->name, why);
            else
                bg_err_set(err, BG_ECONFIG, "plugin %s: create failed (%s) without saying why",
                           d->name, why);
            if (sink)
                sink(sink_ctx, section, "plugin %s: create failed (%s) without saying why", d->name,
                     why);
        }
        bg_plugin_services_destroy(pi->svc);
        free(pi);
        return BG_ECONFIG;
    }
    bg_plugin_ref(p);
    pi->plugin = p;
    /* the config text, and the files the instance opened (the LM service) */
    pi->key = bg_plugin_config_key(p, cfg) ^ bg__services_identity(pi->svc);
    *out = pi;
    return BG_OK;
}

int bg_plugin_instance_create(bg_plugin_host *h, const char *name, bg_plugin_kind kind,
                              const bg_cfg_node *section, const bg_cfg_node *cfg,
                              const bg_space *space, bg_cfg_sink sink, void *sink_ctx,
                              bg_plugin_instance **out, bg_err *err)
{
    *out = NULL;
    bg_plugin *p;
    int rc = bg_plugin_host_find(h, name, kind, &p, err);
    if (rc != BG_OK)
        return rc;
    rc = bg_plugin_instance_create_from(h, p, section, cfg, space, sink, sink_ctx, out, err);
    bg_plugin_unref(p); /* the instance holds its own reference */
    return rc;
}

void bg_plugin_instance_destroy(bg_plugin_instance *pi)
{
    if (!pi)
        return;
    const bg_plugin_desc *d = pi->plugin->desc;
    if (d->kind == BG_PLUGIN_KIND_HYPOTHESIS)
        d->vt.hypothesis->destroy(pi->inst);
    else if (d->kind == BG_PLUGIN_KIND_ESTIMATOR)
        d->vt.estimator->destroy(pi->inst);
    else
        d->vt.sampler->destroy(pi->inst);
    bg_plugin_services_destroy(pi->svc);
    bg_plugin_unref(pi->plugin);
    free(pi);
}
