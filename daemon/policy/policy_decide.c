/*
 * policy_decide.c — what a policy does to one request once it is chosen:
 * the action's features (spec.features), the verdict over the session
 * key's levels, and the outcome stored in every level.
 *
 * Shared by the daemon's Guard service (daemon/rpc/rpc_svc_guard.c) and
 * `bayesguard test` (daemon/cli/cli_test.c), which runs a policy's unit
 * tests in-process: both decide through these functions, so a policy test
 * exercises the daemon's decision and not a copy of it.
 *
 * Threads: any (the engine locks per session). Ownership: everything is
 * borrowed for the call; the policy must stay alive (a snapshot reference).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "policy/policy.h"

int bg_policy_action_features(const bg_policy *p, const char *what, bg_action *act, double *buf,
                              char *msg, size_t len)
{
    if (p->features_from_request)
        return BG_OK;
    if (act->n_features > 0) {
        if (p->n_features > 0)
            snprintf(msg, len,
                     "%s.action.features: policy %s computes its features from the arguments; do "
                     "not send features",
                     what, p->name);
        else
            snprintf(msg, len,
                     "%s.action.features: policy %s takes no features (its spec.features is not "
                     "from_request); do not send features",
                     what, p->name);
        return BG_EINVAL;
    }
    if (p->n_features == 0)
        return BG_OK;
    const char *aj = act->arguments_json ? act->arguments_json : "";
    char why[768];
    json_t *args = NULL;
    if (bg_features_parse_args(aj, strlen(aj), &args, why, sizeof why) != BG_OK) {
        snprintf(msg, len, "%s.%s (policy %s computes its features from the arguments)", what, why,
                 p->name);
        return BG_EINVAL;
    }
    int rc = BG_OK;
    for (size_t i = 0; rc == BG_OK && i < p->n_features; i++) {
        if (bg_feature_eval(p->features[i], args, &buf[i], why, sizeof why) != BG_OK) {
            snprintf(msg, len, "%s.action.arguments_json: %s (policy %s, spec.features[%zu]: %s)",
                     what, why, p->name, i, bg_feature_source(p->features[i]));
            rc = BG_EINVAL;
        }
    }
    json_decref(args);
    if (rc == BG_OK) {
        act->features = buf;
        act->n_features = p->n_features;
    }
    return rc;
}

int bg_policy_evaluate(bg_engine *e, const bg_policy *p, const char **session, const char *parent,
                       const bg_action *act, bg_verdict *v, bg_err *err)
{
    if (p->builtin) {
        memset(v, 0, sizeof(*v));
        v->decision = BG_DECISION_DENY;
        v->harm_bound = 1.0;
        v->posterior_predictive = 1.0;
        snprintf(v->cautious_label, sizeof(v->cautious_label), "no policy matches the tool");
        return BG_OK;
    }
    int rc = bg_engine_evaluate(e, &p->guard, *session, act, v, err);
    if (rc != BG_OK || parent == NULL)
        return rc;
    bg_verdict pv;
    memset(&pv, 0, sizeof(pv));
    rc = bg_engine_evaluate(e, &p->guard, parent, act, &pv, err);
    if (rc != BG_OK)
        return rc;
    if (isnan(pv.harm_bound) || !(v->harm_bound >= pv.harm_bound)) {
        *v = pv;
        *session = parent;
    }
    return BG_OK;
}

int bg_policy_observe(bg_engine *e, const bg_policy *p, const char *session, const char *parent,
                      const bg_observation *obs, const bg_obs_receipt *receipt, const char *who,
                      bg_posterior_summary *sum, bg_err *err)
{
    /* One token of the caller's observation rate, and new sessions count
     * against its quota (engine.h: bg_engine_admit, _observe_owned). */
    int rc = bg_engine_admit(e, who, err);
    if (rc != BG_OK)
        return rc;
    /* The receipt is claimed (single use) with the child's observation; the
     * parent's record is the same outcome, counted at the identity level. */
    rc = bg_engine_observe_owned(e, &p->guard, session, obs, receipt, who, sum, err);
    if (rc != BG_OK || parent == NULL)
        return rc;
    bg_posterior_summary ps;
    memset(&ps, 0, sizeof(ps));
    rc = bg_engine_observe_owned(e, &p->guard, parent, obs, NULL, who, &ps, err);
    if (rc != BG_OK)
        bg_err_prefix(err,
                      "stored for session '%s' but not for its identity's session '%s': ", session,
                      parent);
    return rc;
}
