/*
 * fuzz_policy.c — the YAML policy loader: the input is written as the one
 * file of a policy directory and loaded as a reload would load it
 * (bg_policy_set_load: libyaml through bg_cfg, the schema tables, the
 * built-in plugins' config maps and instances, glob overlap, priorities,
 * the revision hash).
 *
 * Checks beyond the sanitizers: a load either gives a set and no errors,
 * or no set and at least one error message; a set's policies each have a
 * name and a model, and each tool a policy names (not a glob) is matched
 * by some policy of the set.
 */
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "fuzz_util.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

static bg_plugin_host *host;
static char pdir[600];

static void setup(void)
{
    fz_quiet_logs();
    snprintf(pdir, sizeof pdir, "%s/policies", fz_tmpdir("policy"));
    if (mkdir(pdir, 0700) != 0)
        fz_die("mkdir %s: %s", pdir, strerror(errno));
    bg_err err;
    bg_err_clear(&err);
    if (bg_plugin_host_create(BG_FUZZ_PLUGIN_DIR, &host, &err) != BG_OK)
        fz_die("%s", err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (host == NULL)
        setup();
    if (fz_write(pdir, "p.yaml", data, size) != 0)
        fz_die("cannot write %s/p.yaml: %s", pdir, strerror(errno));
    bg_policy_set *set = NULL;
    bg_policy_errors errs = {0};
    int rc = bg_policy_set_load(pdir, host, &set, &errs);
    if (rc == BG_OK) {
        BG_ASSERT(set != NULL && errs.n == 0, "a load that succeeded: set %p, %zu errors",
                  (void *)set, errs.n);
        for (size_t i = 0; i < bg_policy_set_count(set); i++) {
            const bg_policy *p = bg_policy_set_at(set, i);
            BG_ASSERT(p->name != NULL && p->name[0] != '\0' && p->guard.model != NULL,
                      "policy #%zu of a loaded set has no name or no model", i);
            BG_ASSERT(bg_policy_set_find(set, p->name) == p, "policy %s is not found by name",
                      p->name);
            for (size_t t = 0; t < p->n_tools; t++) {
                if (strpbrk(p->tools[t], "*?[\\") != NULL)
                    continue; /* a glob, not a tool name */
                const bg_policy *m = bg_policy_set_match(set, p->tools[t]);
                BG_ASSERT(m != NULL, "tool pattern '%s' of policy %s matches no policy",
                          p->tools[t], p->name);
            }
        }
        bg_policy_set_unref(set);
    } else {
        BG_ASSERT(set == NULL && errs.n > 0, "a load that failed (%d): set %p, %zu errors", rc,
                  (void *)set, errs.n);
    }
    bg_policy_errors_free(&errs);
    return 0;
}
