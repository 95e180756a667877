/*
 * policy_check.c — `bayesguard check DIR` / `bayesguardd --check`: the
 * exact validation a reload runs (bg_policy_set_load with a fresh plugin
 * host), with every error printed, for an operator's CI and for a plugin
 * author trying a plugin.
 *
 * Valid means: every policy valid AND every *.so of the plugin dir loaded.
 * A reload would serve with a plugin file that failed to load (it is only
 * logged), but a file in the plugin dir that is not a plugin, or a second
 * plugin of a kind with a name already taken, is a mistake someone made:
 * check says so and exits 1 instead of "ok". On success it lists the
 * policies, then every plugin with its description and each config key
 * (type, range, default, desc) from its config map.
 * Threads: any; uses its own plugin host (its own private copies).
 */
#include <stdio.h>
#include <string.h>

#include "policy/policy_priv.h"

static size_t count_lines(const char *s)
{
    size_t n = *s ? 1 : 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void print_plugin(void *ctx, const bg_plugin *p)
{
    FILE *out = ctx;
    const bg_plugin_desc *d = p->desc;
    const char *base = strrchr(p->path, '/');
    fprintf(out, "  %s %s %s (%s, ABI %u.%u): %s\n", bg_plugin_kind_name(d->kind), d->name,
            d->version, base ? base + 1 : p->path, d->abi_major, d->abi_minor,
            d->description && d->description[0] ? d->description : "(no description)");
    for (size_t i = 0; i < d->config_map_len; i++) {
        const bg_cfg_entry *e = &d->config_map[i];
        char what[512];
        bg_cfg_entry_describe(e, what, sizeof what);
        fprintf(out, "      %-16s %s%s%s\n", e->key, what, e->desc && e->desc[0] ? ": " : "",
                e->desc ? e->desc : "");
    }
}

int bg_policy_check_dir(const char *dir, const char *plugin_dir, FILE *out)
{
    bg_plugin_host *host = NULL;
    bg_err err;
    if (bg_plugin_host_create(plugin_dir, &host, &err) != BG_OK) {
        fprintf(out, "%s\n", err.msg);
        return 2;
    }
    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    int rc = bg_policy_set_load(dir, host, &s, &errs);
    const char *perr = bg_plugin_host_errors(host);
    if (rc != BG_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(out, "%s\n", errs.msgs[i]);
        if (*perr)
            fprintf(out, "plugins that failed to load:\n%s\n", perr);
        fprintf(out, "%s: %zu error(s); a reload would be refused\n", dir, errs.n);
        bg_policy_errors_free(&errs);
        bg_plugin_host_destroy(host);
        return 1;
    }
    if (*perr) {
        fprintf(out, "plugins that failed to load:\n%s\n", perr);
        fprintf(out,
                "%s: %zu policies valid (revision %s), but %zu file(s) in plugin dir %s failed "
                "to load: fix or remove them\n",
                dir, bg_policy_set_count(s), bg_policy_set_revision(s), count_lines(perr),
                plugin_dir);
        bg_policy_set_unref(s);
        bg_plugin_host_destroy(host);
        return 1;
    }
    fprintf(out, "%s: ok, %zu policies, revision %s\n", dir, bg_policy_set_count(s),
            bg_policy_set_revision(s));
    for (size_t i = 0; i < bg_policy_set_count(s); i++) {
        const bg_policy *p = bg_policy_set_at(s, i);
        fprintf(out, "  %-20s %s:%d  model %s, estimator %s%s%s, threshold %g, %s%s, priority %d\n",
                p->name, p->file, p->line, p->guard.model_name, p->guard.estimator_name,
                p->guard.sampler_name ? ", sampler " : "",
                p->guard.sampler_name ? p->guard.sampler_name : "", p->guard.threshold,
                p->guard.over_threshold == BG_DECISION_ESCALATE ? "escalate" : "deny",
                p->guard.shadow ? " (shadow)" : "", p->priority);
    }
    fprintf(out, "plugins in %s:\n", plugin_dir);
    rc = bg_plugin_host_each(host, print_plugin, out);
    bg_policy_set_unref(s);
    bg_plugin_host_destroy(host);
    return rc == BG_OK ? 0 : 1;
}
