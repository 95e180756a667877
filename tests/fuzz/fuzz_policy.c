/*
 * fuzz_policy.c — the YAML policy loader: the input is written as the one
 * file of a policy directory and loaded as a reload would load it
 * (bg_policy_set_load: libyaml through bg_cfg, the schema tables, the
 * built-in plugins' config maps and instances, glob overlap, priorities,
 * the revision hash).
 *
 * A policy that loads then decides: on an engine of its own, each policy
 * whose model enumerates at most 100,000 hypotheses evaluates an action,
 * takes one observation and evaluates again.
 *
 * Checks beyond the sanitizers: a load either gives a set and no errors,
 * or no set and at least one error message; a set's policies each pass
 * bg_guard_check and are found by name, and each tool a policy names (not
 * a glob) is matched by some policy of the set; a configuration that
 * loaded never makes the engine fail (BG_EINTERNAL: a plugin returning
 * NaN, a bound outside [0, 1]) — what the config check let through must
 * decide.
 */
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "engine/engine.h"
#include "fuzz_util.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

static bg_plugin_host *host;
static bg_engine *engine;
static char pdir[600];

static void setup(void)
{
    fz_quiet_logs();
    snprintf(pdir, sizeof pdir, "%s/policies", fz_tmpdir("policy"));
    if (mkdir(pdir, 0700) != 0)
        fz_die("mkdir %s: %s", pdir, strerror(errno));
    bg_err err;
    bg_err_clear(&err);
    bg_engine_opts eo = {.max_sessions = 64, .max_obs_per_session = 1000};
    if (bg_plugin_host_create(BG_FUZZ_PLUGIN_DIR, &host, &err) != BG_OK ||
        bg_engine_create(&eo, &engine, &err) != BG_OK)
        fz_die("%s", err.msg);
}

/* Evaluate, observe, evaluate: the first feature count (0..4) the model
 * takes. Never BG_EINTERNAL. */
static void decide(const bg_policy *p)
{
    uint64_t n = p->guard.model->count(p->guard.model_inst);
    if (n == 0 || n > 100000)
        return;
    static const double feats[4] = {0.5, -1.0, 2.0, 0.25};
    bg_action a = {.tool = "fuzz_tool", .features = feats};
    bg_observation o = {.harmed = 1, .has_value = 1, .value = 1.0};
    bg_verdict v;
    bg_posterior_summary sum;
    bg_err err;
    int rc = BG_EINVAL;
    for (a.n_features = 0; a.n_features <= 4 && rc == BG_EINVAL; a.n_features++) {
        bg_err_clear(&err);
        rc = bg_engine_evaluate(engine, &p->guard, "s", &a, &v, &err);
    }
    a.n_features--;
    BG_ASSERT(rc != BG_EINTERNAL, "policy %s: evaluate: %s", p->name, err.msg);
    if (rc != BG_OK)
        return;
    o.action = a;
    bg_err_clear(&err);
    rc = bg_engine_observe(engine, &p->guard, "s", &o, &sum, &err);
    BG_ASSERT(rc != BG_EINTERNAL, "policy %s: observe: %s", p->name, err.msg);
    bg_err_clear(&err);
    rc = bg_engine_evaluate(engine, &p->guard, "s", &a, &v, &err);
    BG_ASSERT(rc != BG_EINTERNAL, "policy %s: evaluate after an observation: %s", p->name, err.msg);
    bg_engine_forget(engine, p->name, "s");
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
            bg_err err;
            BG_ASSERT(bg_guard_check(&p->guard, &err) == BG_OK, "policy %s: %s", p->name, err.msg);
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
            decide(p);
        }
        bg_policy_set_unref(set);
    } else {
        BG_ASSERT(set == NULL && errs.n > 0, "a load that failed (%d): set %p, %zu errors", rc,
                  (void *)set, errs.n);
    }
    bg_policy_errors_free(&errs);
    return 0;
}
