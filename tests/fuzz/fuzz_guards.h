/*
 * fuzz_guards.h — the policy set the decision-path harnesses run against
 * (fuzz_request, fuzz_obs_log): the built-in plugins with small grids so
 * one evaluation is cheap; every session key kind, both over_threshold
 * choices, shadow mode, on_error: allow, a model that reads features and
 * one that needs a measured value.
 */
#ifndef BG_FUZZ_GUARDS_H
#define BG_FUZZ_GUARDS_H

#include <sys/stat.h>

#include "fuzz_util.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

static const char fz_policies[] =
    "apiVersion: bayesguard/v1\n"
    "kind: GuardPolicy\n"
    "metadata: {name: email}\n"
    "spec:\n"
    "  match: {tools: [send_email, \"email_*\"]}\n"
    "  model: {plugin: bernoulli, config: {grid_size: 20, a: 1, b: 50}}\n"
    "  estimator: {plugin: noniid, delta: 0.05, prior_floor: 1e-4}\n"
    "  threshold: 0.3\n"
    "  session: context.session\n"
    "---\n"
    "apiVersion: bayesguard/v1\n"
    "kind: GuardPolicy\n"
    "metadata: {name: payments}\n"
    "spec:\n"
    "  match: {tools: [\"transfer_*\", refund]}\n"
    "  model: {plugin: logistic, config: {features: 2, grid: [-2, 0, 2], prior_sigma: 3}}\n"
    "  estimator: {plugin: noniid, delta: 0.05, prior_floor: 1e-5}\n"
    "  threshold: 0.01\n"
    "  over_threshold: escalate\n"
    "  session: context.agent\n"
    "---\n"
    "apiVersion: bayesguard/v1\n"
    "kind: GuardPolicy\n"
    "metadata: {name: shell}\n"
    "spec:\n"
    "  match: {tools: [\"shell_*\", exec]}\n"
    "  model: {plugin: bernoulli, config: {rates: [0.01, 0.5, 0.9]}}\n"
    "  estimator: {plugin: iid}\n"
    "  threshold: 0.05\n"
    "  mode: shadow\n"
    "  on_error: allow\n"
    "  session: attributes.user\n"
    "---\n"
    "apiVersion: bayesguard/v1\n"
    "kind: GuardPolicy\n"
    "metadata: {name: arms}\n"
    "spec:\n"
    "  match: {tools: [\"arm_*\"]}\n"
    "  model: {plugin: bandit, config: {features: 3, theta: 1.5}}\n"
    "  estimator: {plugin: posterior}\n"
    "  threshold: 0.5\n"
    "  session: global\n";

/* The store of those policies, written under dir/policies; the plugin
 * host stays alive for the process (never destroyed: the harness exits). */
static inline bg_policy_store *fz_guards(const char *dir)
{
    static bg_plugin_host *host;
    char pdir[600];
    snprintf(pdir, sizeof pdir, "%s/policies", dir);
    if (mkdir(pdir, 0700) != 0 ||
        fz_write(pdir, "p.yaml", fz_policies, sizeof fz_policies - 1) != 0)
        fz_die("cannot write the policies into %s", pdir);
    bg_err err;
    bg_err_clear(&err);
    bg_policy_store *st = NULL;
    if (bg_plugin_host_create(BG_FUZZ_PLUGIN_DIR, &host, &err) != BG_OK ||
        bg_policy_store_create(pdir, host, &st, &err) != BG_OK)
        fz_die("%s", err.msg);
    return st;
}

#endif
