/*
 * policy_priv.h — internals shared by the files of module bg_policy only
 * (policy_parse.c, policy_snapshot.c, policy_glob.c, policy_store.c,
 * policy_watch.c). Nothing outside daemon/policy/ includes it.
 */
#ifndef BG_POLICY_PRIV_H
#define BG_POLICY_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "plugin/plugin_host.h"
#include "cfg/cfg.h"
#include "policy/policy.h"

/* ---- errors (policy_parse.c) */
/* Append one message (may contain newlines: split into several). */
void bg__errs_add(bg_policy_errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "file:line:col: msg" for node n (the bg_cfg_sink of the schema). */
int bg__errs_at(void *errs, const bg_cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The defaults of spec.sampler's limits: no limit on the residual and the
 * ESS (on the bandit policies they do not tell a sampler that finds the
 * cautious hypothesis from one that does not: docs/POLICIES.md, "Sampler
 * health"), at most 2 observations the sampler has not trained on. */
#define BG_POLICY_MAX_TB_RESIDUAL "1000000"
#define BG_POLICY_MIN_ESS "0"
#define BG_POLICY_MAX_VERSION_LAG "2"

/* ---- one policy document, schema-checked (policy_parse.c) */
typedef struct bg__policy_spec {
    const bg_cfg_node *root; /* the document */
    const char *name;        /* metadata.name */
    const bg_cfg_node *name_node;
    const bg_cfg_node *tools;     /* spec.match.tools: SEQ of scalars */
    const bg_cfg_node *match;     /* spec.match */
    const bg_cfg_node *model;     /* spec.model section */
    const bg_cfg_node *model_cfg; /* spec.model.config (may be NULL) */
    const bg_cfg_node *estimator; /* spec.estimator section */
    const bg_cfg_node *est_cfg;   /* the estimator map minus `plugin` */
    const bg_cfg_node *sampler;   /* spec.sampler section or NULL */
    const bg_cfg_node *sampler_cfg;
    struct { /* the typed scalars of the schema tables */
        char model_plugin[64];
        char estimator_plugin[64];
        char sampler_plugin[64];
        int64_t samples;
        int sampler_always;              /* spec.sampler.always */
        int64_t sampler_train_steps;     /* spec.sampler.train_steps, 0 = the daemon's */
        int64_t sampler_refine;          /* spec.sampler.refine, -1 = by the space */
        int64_t sampler_search;          /* spec.sampler.search, -1 = by the space */
        int64_t sampler_contexts;        /* spec.sampler.contexts, -1 = by the space */
        int64_t sampler_context_search;  /* spec.sampler.context_search, -1 = the daemon's */
        double max_tb_residual, min_ess; /* spec.sampler's limits */
        int64_t max_version_lag;
        int on_unhealthy; /* 0 unavailable, 1 deny, 2 escalate */
        double threshold;
        int over_threshold; /* 0 deny, 1 escalate */
        int on_error;       /* 0 deny, 1 allow */
        int mode;           /* 0 enforce, 1 shadow */
        char session[128];
        int64_t priority;
        int outcomes;           /* 0 receipts, 1 open */
        char esc_timeout[32];   /* spec.escalation.timeout as written */
        int esc_on_timeout;     /* 0 deny, 1 allow */
        char fleet_max_lag[32]; /* spec.fleet.max_lag as written ("" absent) */
        int fleet_on_stale;     /* 0 deny, 1 escalate, 2 allow */
    } v;
    int64_t esc_timeout_ms;   /* spec.escalation.timeout, parsed (parse_escalation) */
    int64_t fleet_max_lag_ms; /* parse_fleet: 0 no freshness required */
    bg_session_key session_key;
    const char *session_attr; /* into v.session */
    int session_two_level;    /* peer.<...>/context.session */
    /* spec.features (parse_features): compiled expressions (owned: freed
     * with bg__policy_spec_free), or from_request. */
    bg_feature_expr **features;
    size_t n_features;
    int features_from_request;
    /* Which parts passed, so a document with a schema error elsewhere
     * still gets its plugin configs and matches checked (all errors in
     * one pass): */
    int name_ok, match_ok, plugins_ok, schema_ok;
} bg__policy_spec;

/* Schema-check one document; 0 when valid (errors appended otherwise, and
 * the *_ok flags say which parts are still usable). doc owns the derived
 * estimator node. */
int bg__policy_parse(bg_cfg_doc *doc, const bg_cfg_node *root, bg__policy_spec *out,
                     bg_policy_errors *errs);
/* Free what a parsed spec owns (the compiled features); idempotent. */
void bg__policy_spec_free(bg__policy_spec *s);

/* ---- globs (policy_glob.c) */
/* 1 when some tool name matches both fnmatch patterns (conservative:
 * character classes are treated as "any character"). */
int bg__glob_overlap(const char *a, const char *b);

/* ---- who can write the policies (policy_trust.c) */
/* 1 when path (a policy directory or file, symlinks followed) is on a
 * read-only mount, or owned by root or the daemon's euid and not writable
 * by group or others; else 0 with an error naming it and the fix. */
int bg__policy_path_trusted(const char *path, bg_policy_errors *errs);
/* bg__policy_path_trusted of the file path in dir, and of the directory
 * its real path lies in when that is not dir (a symlink elsewhere). */
int bg__policy_file_trusted(const char *dir, const char *path, bg_policy_errors *errs);

/* ---- revision over the files of a dir (policy_snapshot.c) */
/* The policy files of dir: *.yaml / *.yml, regular (symlinks followed),
 * not hidden (which skips ConfigMap ..data dirs); sorted. BG_ECONFIG when
 * the directory or a file is writable by others than root and the daemon's
 * user (bg__policy_file_trusted; every such one named in errs). */
int bg__policy_list_dir(const char *dir, char ***names, size_t *n, bg_policy_errors *errs);
/* Before `to` replaces `from` (a reload): every policy of `to` whose name,
 * model (model_key), sampler plugin (the same loaded object) and sampler
 * config are unchanged shares its sampler state (bg_sampled_inherit, the
 * trained session samplers) with its predecessor. */
void bg__policy_set_inherit(bg_policy_set *to, const bg_policy_set *from);

/* ---- store internals for policy_watch.c (policy_store.c) */
const char *bg__store_dir(const bg_policy_store *st);
/* claim 1: take the store's one watch (0, or -1 when a watch has it);
 * claim 0: give it back. */
int bg__store_claim_watch(bg_policy_store *st, int claim);

#endif
