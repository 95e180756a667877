/*
 * policy_check.c — `bayesguard check DIR` / `bayesguardd --check`: the
 * exact validation a reload runs (bg_policy_set_load with a fresh plugin
 * host), with every error printed, for an operator's CI.
 * Threads: any; uses its own plugin host (its own private copies).
 */
#include <stdio.h>

#include "policy/policy_priv.h"

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
    if (rc != BG_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(out, "%s\n", errs.msgs[i]);
        const char *perr = bg_plugin_host_errors(host);
        if (*perr)
            fprintf(out, "plugins that failed to load:\n%s\n", perr);
        fprintf(out, "%s: %zu error(s); a reload would be refused\n", dir, errs.n);
        bg_policy_errors_free(&errs);
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
    bg_policy_set_unref(s);
    bg_plugin_host_destroy(host);
    return 0;
}
