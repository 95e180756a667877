/*
 * policy_parse.c — the schema of one GuardPolicy document.
 *
 * Why shaped so: every scalar of the schema, with its type, default, range
 * or choices, is one row of a bg_cfg_entry table below — the one place the
 * defaults live (docs/POLICIES.md copies them) — and is checked by the same
 * typed-config engine plugins use (bg_cfg_apply_table), so unknown keys,
 * types, ranges and enums give the same messages with file:line:column
 * whether the mistake is in the policy or in a plugin's config. Sections
 * (metadata, spec, match, model, estimator, sampler) are walked here;
 * plugin configs are left to the plugins (policy_snapshot.c creates them).
 *
 * The estimator section is special: besides `plugin` its keys belong to the
 * estimator plugin (alpha, delta, prior_floor, ...), so the plugin gets the
 * section minus `plugin` as its config node.
 *
 * Threads: called by the (serialised) set builder only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_priv.h"

/* ------------------------------------------------------------- errors */

void bg__errs_add(bg_policy_errors *e, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *line = msg; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char **m = realloc(e->msgs, (e->n + 1) * sizeof *m);
        if (!m)
            return;
        e->msgs = m;
        if (!(e->msgs[e->n] = strdup(line)))
            return;
        e->n++;
        line = nl ? nl + 1 : NULL;
    }
}

int bg__errs_at(void *errs, const bg_cfg_node *n, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        bg__errs_add(errs, "%s:%d:%d: %s", bg_cfg_file(n), bg_cfg_line(n), bg_cfg_column(n), msg);
    else
        bg__errs_add(errs, "%s", msg);
    return BG_ECONFIG;
}

void bg_policy_errors_free(bg_policy_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

/* ------------------------------------------------------------- tables */

#define OFF(f) offsetof(bg__policy_spec, v.f)
#define NOCHECK .min = 1, .max = 0

static const bg_cfg_entry top_table[] = {
    {.key = "apiVersion",
     .type = BG_CFGV_ENUM,
     .def = NULL,
     .offset = 0,
     .choices = "bayesguard/v1",
     .desc = "bayesguard/v1"},
    {.key = "kind",
     .type = BG_CFGV_ENUM,
     .def = NULL,
     .offset = sizeof(int),
     .choices = "GuardPolicy",
     .desc = "GuardPolicy"},
};
static const char *const top_sections[] = {"metadata", "spec", NULL};

static const bg_cfg_entry spec_table[] = {
    {.key = "threshold",
     .type = BG_CFGV_DOUBLE,
     .def = NULL,
     .offset = OFF(threshold),
     .min = 0,
     .max = 1,
     .desc = "a harm probability in [0, 1]"},
    {.key = "over_threshold",
     .type = BG_CFGV_ENUM,
     .def = "deny",
     .offset = OFF(over_threshold),
     .choices = "deny|escalate",
     .desc = "decision when the bound is above threshold"},
    {.key = "on_error",
     .type = BG_CFGV_ENUM,
     .def = "deny",
     .offset = OFF(on_error),
     .choices = "deny|allow",
     .desc = "decision when evaluation fails"},
    {.key = "mode",
     .type = BG_CFGV_ENUM,
     .def = "enforce",
     .offset = OFF(mode),
     .choices = "enforce|shadow",
     .desc = "shadow: log the verdict, return ALLOW"},
    {.key = "session",
     .type = BG_CFGV_STRING,
     .def = "context.session",
     .offset = OFF(session),
     .size = sizeof(((bg__policy_spec *)0)->v.session),
     NOCHECK,
     .desc = "context.session | context.agent | global | attributes.<name> | peer.identity | "
             "peer.uid | peer.identity/context.session | peer.uid/context.session"},
    {.key = "priority",
     .type = BG_CFGV_INT,
     .def = "0",
     .offset = OFF(priority),
     .min = -1000000,
     .max = 1000000,
     .desc = "higher wins where matches overlap"},
    /* Outcome receipts (daemon/receipt): who may report outcomes. */
    {.key = "outcomes",
     .type = BG_CFGV_ENUM,
     .def = "receipts",
     .offset = OFF(outcomes),
     .choices = "receipts|open",
     .desc = "receipts: Observe needs the Verdict's receipt; open: anyone may report"},
};
static const char *const spec_sections[] = {"match",    "model",      "estimator", "sampler",
                                            "features", "escalation", "fleet",     NULL};

/* spec.escalation (daemon/escalation): how long an ESCALATE waits for a
 * person, and what it becomes when nobody answers. timeout is a duration
 * (parse_duration). */
static const bg_cfg_entry escalation_table[] = {
    {.key = "timeout",
     .type = BG_CFGV_STRING,
     .def = "15m",
     .offset = OFF(esc_timeout),
     .size = sizeof(((bg__policy_spec *)0)->v.esc_timeout),
     NOCHECK,
     .desc = "a duration: 30s, 15m, 1h (1s to 7d)"},
    {.key = "on_timeout",
     .type = BG_CFGV_ENUM,
     .def = "deny",
     .offset = OFF(esc_on_timeout),
     .choices = "deny|allow",
     .desc = "the decision when nobody settles it in time"},
};

/* spec.fleet: freshness in fleet mode (docs/FLEET.md). */
static const bg_cfg_entry fleet_table[] = {
    {.key = "max_lag",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = OFF(fleet_max_lag),
     .size = sizeof(((bg__policy_spec *)0)->v.fleet_max_lag),
     NOCHECK,
     .desc = "how far behind the fleet a verdict may be: a duration (500ms, 5s, 2m)"},
    {.key = "on_stale",
     .type = BG_CFGV_ENUM,
     .def = "deny",
     .offset = OFF(fleet_on_stale),
     .choices = "deny|escalate|allow",
     .desc = "the decision while more than max_lag behind"},
};

static const bg_cfg_entry model_table[] = {
    {.key = "plugin",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = OFF(model_plugin),
     .size = sizeof(((bg__policy_spec *)0)->v.model_plugin),
     NOCHECK,
     .desc = "a hypothesis plugin name"},
};
static const char *const config_section[] = {"config", NULL};

static const bg_cfg_entry sampler_table[] = {
    {.key = "plugin",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = OFF(sampler_plugin),
     .size = sizeof(((bg__policy_spec *)0)->v.sampler_plugin),
     NOCHECK,
     .desc = "a sampler plugin name"},
    {.key = "samples",
     .type = BG_CFGV_INT,
     .def = "256",
     .offset = OFF(samples),
     .min = 1,
     .max = 1000000,
     .desc = "candidate hypotheses drawn per evaluation"},
    {.key = "always",
     .type = BG_CFGV_BOOL,
     .def = "false",
     .offset = OFF(sampler_always),
     .desc = "true: take the sampled path even when the model enumerates its hypotheses"},
    {.key = "train_steps",
     .type = BG_CFGV_INT,
     .def = "0",
     .offset = OFF(sampler_train_steps),
     .min = 0,
     .max = 4000,
     .desc = "optimiser steps per observation (0 = the daemon's default budget)"},
    {.key = "refine",
     .type = BG_CFGV_INT,
     .def = "-1",
     .offset = OFF(sampler_refine),
     .min = -1,
     .max = 65536,
     .desc = "hypotheses the harm-directed refinement may score per evaluation (0 = none; "
             "-1 = the daemon's budget on a bit-set space, none on a token-sequence space)"},
    {.key = "search",
     .type = BG_CFGV_INT,
     .def = "-1",
     .offset = OFF(sampler_search),
     .min = -1,
     .max = 262144,
     .desc = "reward evaluations of the posterior search after each training round, on the "
             "trainer thread (0 = none; -1 = the daemon's budget on a bit-set space, none on a "
             "token-sequence space)"},
    {.key = "contexts",
     .type = BG_CFGV_INT,
     .def = "-1",
     .offset = OFF(sampler_contexts),
     .min = -1,
     .max = 1024,
     .desc = "contexts (actions) each session sampler remembers, least recently used evicted, "
             "and searches for on the trainer thread after each training round (0 = none; -1 = "
             "the daemon's default on a bit-set space, none on a token-sequence space)"},
    {.key = "context_search",
     .type = BG_CFGV_INT,
     .def = "-1",
     .offset = OFF(sampler_context_search),
     .min = -1,
     .max = 65536,
     .desc = "hypotheses the search for one remembered context looks at per training round "
             "(0 = none; -1 = the daemon's budget)"},
    /* When a sampled verdict's sampler is trusted (engine.h
     * bg_sampler_limits; the defaults and the data behind them:
     * docs/POLICIES.md). */
    {.key = "max_tb_residual",
     .type = BG_CFGV_DOUBLE,
     .def = BG_POLICY_MAX_TB_RESIDUAL,
     .offset = OFF(max_tb_residual),
     .min = 0,
     .max = 1e6,
     .desc = "nats: the RMS trajectory-balance residual of the candidates above which the "
             "sampler is not trusted"},
    {.key = "min_ess",
     .type = BG_CFGV_DOUBLE,
     .def = BG_POLICY_MIN_ESS,
     .offset = OFF(min_ess),
     .min = 0,
     .max = 1000000,
     .desc = "the effective sample size of the candidates' importance weights below which "
             "the sampler is not trusted"},
    {.key = "max_version_lag",
     .type = BG_CFGV_INT,
     .def = BG_POLICY_MAX_VERSION_LAG,
     .offset = OFF(max_version_lag),
     .min = 0,
     .max = 1000000,
     .desc = "observations the sampler may not yet have trained on"},
    {.key = "on_unhealthy",
     .type = BG_CFGV_ENUM,
     .def = "unavailable",
     .offset = OFF(on_unhealthy),
     .choices = "unavailable|deny|escalate",
     .desc = "outside the limits: fail UNAVAILABLE (retry), or decide DENY / ESCALATE"},
};

static const bg_cfg_entry metadata_table[] = {
    {.key = "name",
     .type = BG_CFGV_STRING,
     .def = NULL,
     .offset = 0,
     .size = 64,
     NOCHECK,
     .desc = "the policy's unique name"},
};
static const char *const metadata_sections[] = {"labels", "annotations", NULL};

#define N(t) (sizeof(t) / sizeof((t)[0]))

/* ----------------------------------------------------------- sections */

/* A required sub-map of `parent`; error at parent when missing or not a map. */
static const bg_cfg_node *section(const bg_cfg_node *parent, const char *key, const char *path,
                                  bg_policy_errors *errs, int required)
{
    const bg_cfg_node *n = bg_cfg_get(parent, key);
    if (!n || bg_cfg_type_of(n) == BG_CFG_NULL) {
        if (required)
            bg__errs_at(errs, parent, "missing required key '%s'", path);
        return NULL;
    }
    if (bg_cfg_type_of(n) != BG_CFG_MAP) {
        bg__errs_at(errs, n, "%s must be a map", path);
        return NULL;
    }
    return n;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int parse_metadata(const bg_cfg_node *root, bg__policy_spec *s, bg_policy_errors *errs)
{
    const bg_cfg_node *md = section(root, "metadata", "metadata", errs, 1);
    if (!md)
        return BG_ECONFIG;
    char name[64]; /* checked copy; s->name points into the doc */
    int rc = bg_cfg_apply_table(bg__errs_at, errs, md, metadata_table, N(metadata_table),
                                "metadata.", metadata_sections, name);
    if (rc)
        return BG_ECONFIG;
    s->name_node = bg_cfg_get(md, "name");
    s->name = bg_cfg_scalar(s->name_node);
    if (strcmp(s->name, BG_POLICY_DEFAULT_DENY) == 0)
        return bg__errs_at(errs, s->name_node,
                           "metadata.name '%s' is the built-in catch-all's: name the policy "
                           "otherwise (a policy that matches \"*\" replaces the catch-all)",
                           s->name);
    if (!valid_name(s->name))
        return bg__errs_at(errs, s->name_node,
                           "metadata.name '%s' is not a valid name: use letters, digits, '-', "
                           "'_' and '.'",
                           s->name);
    return BG_OK;
}

/* "30s", "15m", "1h", "2d", "500ms" -> milliseconds; -1 when malformed. */
static int64_t parse_duration(const char *t)
{
    if (t == NULL || *t < '0' || *t > '9')
        return -1;
    int64_t n = 0;
    while (*t >= '0' && *t <= '9') {
        n = n * 10 + (*t++ - '0');
        if (n > 1000000000)
            return -1;
    }
    int64_t unit = strcmp(t, "ms") == 0  ? 1
                   : strcmp(t, "s") == 0 ? 1000
                   : strcmp(t, "m") == 0 ? 60000
                   : strcmp(t, "h") == 0 ? 3600000
                   : strcmp(t, "d") == 0 ? 86400000
                                         : 0;
    return unit ? n * unit : -1;
}

static int parse_fleet(const bg_cfg_node *spec, bg__policy_spec *s, bg_policy_errors *errs)
{
    const bg_cfg_node *fl = section(spec, "fleet", "spec.fleet", errs, 0);
    if (!fl)
        return BG_OK;
    if (bg_cfg_apply_table(bg__errs_at, errs, fl, fleet_table, N(fleet_table), "spec.fleet.", NULL,
                           s))
        return BG_ECONFIG;
    s->fleet_max_lag_ms = parse_duration(s->v.fleet_max_lag);
    if (s->fleet_max_lag_ms < 1 || s->fleet_max_lag_ms > 86400000)
        return bg__errs_at(errs, bg_cfg_get(fl, "max_lag"),
                           "spec.fleet.max_lag '%s' is not a duration from 1ms to 24h: write "
                           "it like 500ms, 5s or 2m",
                           s->v.fleet_max_lag);
    return BG_OK;
}

static int parse_match(const bg_cfg_node *spec, bg__policy_spec *s, bg_policy_errors *errs)
{
    s->match = section(spec, "match", "spec.match", errs, 1);
    if (!s->match)
        return BG_ECONFIG;
    int rc = bg_cfg_apply_table(bg__errs_at, errs, s->match, NULL, 0, "spec.match.",
                                (const char *const[]){"tools", NULL}, s);
    s->tools = bg_cfg_get(s->match, "tools");
    if (!s->tools)
        return bg__errs_at(errs, s->match,
                           "missing required key 'spec.match.tools' (a list of "
                           "tool names or globs)");
    if (bg_cfg_type_of(s->tools) != BG_CFG_SEQ || bg_cfg_len(s->tools) == 0)
        return bg__errs_at(errs, s->tools,
                           "spec.match.tools must be a non-empty list of tool "
                           "names or globs like [\"transfer_*\"]");
    for (size_t i = 0; i < bg_cfg_len(s->tools); i++) {
        const char *t = bg_cfg_scalar(bg_cfg_item(s->tools, i));
        if (!t || !*t)
            rc = bg__errs_at(errs, bg_cfg_item(s->tools, i),
                             "spec.match.tools[%zu] must be a non-empty string", i);
    }
    return rc ? BG_ECONFIG : BG_OK;
}

/* peer.identity, peer.uid, and their two-level forms "/context.session". */
static int parse_peer_session(bg__policy_spec *s, const char *v)
{
    static const char two[] = "/context.session";
    size_t n = strlen(v), tl = sizeof two - 1;
    s->session_two_level = n > tl && strcmp(v + n - tl, two) == 0;
    size_t base = s->session_two_level ? n - tl : n;
    if (base == 13 && strncmp(v, "peer.identity", 13) == 0)
        s->session_key = BG_SESSION_PEER_IDENTITY;
    else if (base == 8 && strncmp(v, "peer.uid", 8) == 0)
        s->session_key = BG_SESSION_PEER_UID;
    else
        return BG_ECONFIG;
    return BG_OK;
}

static int parse_session(bg__policy_spec *s, const bg_cfg_node *spec, bg_policy_errors *errs)
{
    const char *v = s->v.session;
    if (strcmp(v, "context.session") == 0)
        s->session_key = BG_SESSION_CONTEXT_SESSION;
    else if (strcmp(v, "context.agent") == 0)
        s->session_key = BG_SESSION_CONTEXT_AGENT;
    else if (strcmp(v, "global") == 0)
        s->session_key = BG_SESSION_GLOBAL;
    else if (strncmp(v, "attributes.", 11) == 0 && v[11]) {
        s->session_key = BG_SESSION_ATTRIBUTE;
        s->session_attr = v + 11;
    } else if (parse_peer_session(s, v) != BG_OK) {
        const bg_cfg_node *n = bg_cfg_get(spec, "session");
        return bg__errs_at(errs, n ? n : spec,
                           "key 'spec.session': expected context.session, context.agent, global, "
                           "attributes.<name>, peer.identity, peer.uid, "
                           "peer.identity/context.session or peer.uid/context.session, got '%s'",
                           v);
    }
    return BG_OK;
}

/* ------------------------------------------------ features (spec.features) */

void bg__policy_spec_free(bg__policy_spec *s)
{
    for (size_t i = 0; i < s->n_features; i++)
        bg_feature_destroy(s->features[i]);
    free(s->features);
    s->features = NULL;
    s->n_features = 0;
}

/* The column in the file of byte `off` of scalar n's text: its own column,
 * past the opening quote when quoted (exact for one-line scalars). */
static int column_of(const bg_cfg_node *n, int off)
{
    return bg_cfg_column(n) + (bg_cfg_plain(n) ? 0 : 1) + off;
}

/* spec.features: absent (no features; a request that sends some is
 * refused), "from_request", or a list of expressions compiled now. */
static int parse_features(bg__policy_spec *s, const bg_cfg_node *spec, bg_policy_errors *errs)
{
    const bg_cfg_node *f = bg_cfg_get(spec, "features");
    if (!f || bg_cfg_type_of(f) == BG_CFG_NULL)
        return BG_OK;
    if (bg_cfg_type_of(f) == BG_CFG_SCALAR && strcmp(bg_cfg_scalar(f), "from_request") == 0) {
        s->features_from_request = 1;
        return BG_OK;
    }
    if (bg_cfg_type_of(f) != BG_CFG_SEQ || bg_cfg_len(f) == 0 ||
        bg_cfg_len(f) > BG_FEATURES_MAX_COUNT)
        return bg__errs_at(errs, f,
                           "spec.features must be from_request or a list of 1 to %d expressions "
                           "over the action's arguments, like [\"log10(amount)\", "
                           "\"payee_is_new == true\"]",
                           BG_FEATURES_MAX_COUNT);
    s->features = calloc(bg_cfg_len(f), sizeof *s->features);
    if (!s->features)
        return bg__errs_at(errs, f, "out of memory");
    int rc = BG_OK;
    for (size_t i = 0; i < bg_cfg_len(f); i++) {
        const bg_cfg_node *x = bg_cfg_item(f, i);
        const char *src = bg_cfg_type_of(x) == BG_CFG_SCALAR ? bg_cfg_scalar(x) : NULL;
        if (!src) {
            rc = bg__errs_at(errs, x, "spec.features[%zu] must be an expression (a string)", i);
            continue;
        }
        char msg[512];
        int col;
        bg_feature_expr *e = NULL;
        if (bg_feature_compile(src, strlen(src), &e, &col, msg, sizeof msg) != BG_OK) {
            bg__errs_add(errs, "%s:%d:%d: spec.features[%zu]: %s", bg_cfg_file(x), bg_cfg_line(x),
                         column_of(x, col - 1), i, msg);
            rc = BG_ECONFIG;
            continue;
        }
        s->features[s->n_features++] = e;
    }
    return rc;
}

#define BG_ESC_TIMEOUT_MIN_MS 1000
#define BG_ESC_TIMEOUT_MAX_MS (7 * 86400000LL)

/* spec.escalation: {timeout, on_timeout}; defaults when absent. */
static int parse_escalation(const bg_cfg_node *spec, bg__policy_spec *s, bg_policy_errors *errs)
{
    const bg_cfg_node *esc = section(spec, "escalation", "spec.escalation", errs, 0);
    if (esc == NULL && bg_cfg_get(spec, "escalation") != NULL &&
        bg_cfg_type_of(bg_cfg_get(spec, "escalation")) != BG_CFG_NULL)
        return BG_ECONFIG; /* not a map: reported by section() */
    if (esc == NULL) {
        s->esc_timeout_ms = 15 * 60000;
        return BG_OK;
    }
    int rc = bg_cfg_apply_table(bg__errs_at, errs, esc, escalation_table, N(escalation_table),
                                "spec.escalation.", NULL, s)
                 ? BG_ECONFIG
                 : BG_OK;
    const bg_cfg_node *n = bg_cfg_get(esc, "timeout");
    const char *text = n ? bg_cfg_scalar(n) : "15m";
    int64_t ms = parse_duration(text);
    if (text != NULL && (ms < BG_ESC_TIMEOUT_MIN_MS || ms > BG_ESC_TIMEOUT_MAX_MS))
        return bg__errs_at(errs, n ? n : esc,
                           "key 'spec.escalation.timeout': '%s' is not a duration from 1s to 7d: "
                           "write a number and a unit, e.g. 30s, 15m, 1h",
                           text);
    s->esc_timeout_ms = ms;
    return rc;
}

static int parse_plugins(bg_cfg_doc *doc, const bg_cfg_node *spec, bg__policy_spec *s,
                         bg_policy_errors *errs)
{
    int rc = BG_OK;
    s->model = section(spec, "model", "spec.model", errs, 1);
    if (!s->model || bg_cfg_apply_table(bg__errs_at, errs, s->model, model_table, N(model_table),
                                        "spec.model.", config_section, s))
        rc = BG_ECONFIG;
    s->model_cfg = bg_cfg_get(s->model, "config");

    s->estimator = section(spec, "estimator", "spec.estimator", errs, 1);
    if (s->estimator) {
        const bg_cfg_node *p = bg_cfg_get(s->estimator, "plugin");
        const char *name = bg_cfg_scalar(p);
        if (!p)
            rc = bg__errs_at(errs, s->estimator,
                             "missing required key 'spec.estimator.plugin' "
                             "(an estimator plugin name)");
        else if (!name || !*name || strlen(name) >= sizeof s->v.estimator_plugin)
            rc = bg__errs_at(errs, p,
                             "key 'spec.estimator.plugin': expected an estimator "
                             "plugin name");
        else
            memcpy(s->v.estimator_plugin, name, strlen(name) + 1);
        if (bg_cfg_get(s->estimator, "alpha") && bg_cfg_get(s->estimator, "delta"))
            rc = bg__errs_at(errs, bg_cfg_get(s->estimator, "delta"),
                             "spec.estimator: give either alpha or delta (+ prior_floor, alpha = "
                             "delta * prior_floor), not both");
        s->est_cfg = bg_cfg_map_without(doc, s->estimator, "plugin");
        if (!s->est_cfg)
            rc = bg__errs_at(errs, s->estimator, "out of memory");
    } else {
        rc = BG_ECONFIG;
    }

    s->sampler = section(spec, "sampler", "spec.sampler", errs, 0);
    if (s->sampler) {
        if (bg_cfg_apply_table(bg__errs_at, errs, s->sampler, sampler_table, N(sampler_table),
                               "spec.sampler.", config_section, s))
            rc = BG_ECONFIG;
        s->sampler_cfg = bg_cfg_get(s->sampler, "config");
    } else if (bg_cfg_get(spec, "sampler") &&
               bg_cfg_type_of(bg_cfg_get(spec, "sampler")) != BG_CFG_NULL) {
        rc = BG_ECONFIG; /* present but not a map: reported by section() */
    }
    return rc;
}

int bg__policy_parse(bg_cfg_doc *doc, const bg_cfg_node *root, bg__policy_spec *s,
                     bg_policy_errors *errs)
{
    memset(s, 0, sizeof *s);
    s->root = root;
    if (bg_cfg_type_of(root) != BG_CFG_MAP)
        return bg__errs_at(errs, root,
                           "a policy document must be a map with apiVersion, kind, "
                           "metadata and spec");
    int kinds[2];
    int rc = BG_OK;
    if (bg_cfg_apply_table(bg__errs_at, errs, root, top_table, N(top_table), "", top_sections,
                           kinds))
        return BG_ECONFIG; /* wrong apiVersion/kind: nothing else is meaningful */
    if (parse_metadata(root, s, errs))
        rc = BG_ECONFIG;
    else
        s->name_ok = 1;
    const bg_cfg_node *spec = section(root, "spec", "spec", errs, 1);
    if (!spec)
        return BG_ECONFIG;
    if (bg_cfg_apply_table(bg__errs_at, errs, spec, spec_table, N(spec_table), "spec.",
                           spec_sections, s))
        rc = BG_ECONFIG;
    else if (parse_session(s, spec, errs))
        rc = BG_ECONFIG;
    if (parse_match(spec, s, errs))
        rc = BG_ECONFIG;
    else
        s->match_ok = 1;
    if (parse_features(s, spec, errs))
        rc = BG_ECONFIG;
    if (parse_escalation(spec, s, errs))
        rc = BG_ECONFIG;
    if (parse_fleet(spec, s, errs))
        rc = BG_ECONFIG;
    if (parse_plugins(doc, spec, s, errs))
        rc = BG_ECONFIG;
    else
        s->plugins_ok = 1;
    s->schema_ok = rc == BG_OK;
    return rc;
}
