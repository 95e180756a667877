/*
 * rpc_svc_admin.c — Guard.Status and Guard.Reload (operators).
 *
 * Status is cheap and answered on the CQ thread: it reads the policy
 * store's status, the current snapshot, the engine's counters and the
 * server's own counters; every string points into the snapshot or the
 * call arena, so the reply is packed before the snapshot reference drops.
 *
 * Reload is not cheap (YAML, dlopen, plugin instance creation) and must
 * not stall a CQ thread: the call moves to DEFERRED and the reload runs on
 * the loop's worker pool (bg_loop_post_work); the reply is sent from the
 * loop thread when it is done. A refused reload is a successful RPC with
 * ok = false and the errors; the old set keeps serving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_log.h"
#include "common/bg_time.h"
#include "rpc/rpc_priv.h"

/* Split newline-separated text into an arena array of lines. */
static char **split_lines(bg__rpc_call *c, const char *text, size_t *n_out)
{
    *n_out = 0;
    if (text == NULL || text[0] == '\0')
        return NULL;
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    char **v = bg__rpc_call_alloc(c, n * sizeof(char *));
    char *copy = bg__rpc_call_strdup(c, text);
    if (v == NULL || copy == NULL)
        return NULL;
    size_t k = 0;
    for (char *line = copy; line != NULL && k < n;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (line[0] != '\0')
            v[k++] = line;
        line = nl ? nl + 1 : NULL;
    }
    *n_out = k;
    return v;
}

/* Add a plugin (name, kind) to the list unless it is there. */
static void add_plugin(Bayesguard__V1__PluginInfo **v, size_t *n, size_t cap,
                       Bayesguard__V1__PluginInfo *store, const char *name, const char *kind)
{
    if (name == NULL || name[0] == '\0')
        return;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i]->name, name) == 0 && strcmp(v[i]->kind, kind) == 0)
            return;
    if (*n >= cap)
        return;
    Bayesguard__V1__PluginInfo *pi = &store[*n];
    bayesguard__v1__plugin_info__init(pi);
    pi->name = (char *)name;
    pi->kind = (char *)kind;
    v[(*n)++] = pi;
}

/* 900000 -> "15m" (the largest unit that divides it), in the call arena. */
static char *duration_text(bg__rpc_call *c, int64_t ms)
{
    char buf[32];
    if (ms > 0 && ms % 3600000 == 0)
        snprintf(buf, sizeof buf, "%lldh", (long long)(ms / 3600000));
    else if (ms > 0 && ms % 60000 == 0)
        snprintf(buf, sizeof buf, "%lldm", (long long)(ms / 60000));
    else if (ms > 0 && ms % 1000 == 0)
        snprintf(buf, sizeof buf, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, sizeof buf, "%lldms", (long long)ms);
    char *t = bg__rpc_call_strdup(c, buf);
    return t ? t : (char *)"";
}

void bg__svc_status(bg__rpc_call *c)
{
    bg_rpc_server *s = c->srv;
    if (bg__rpc_call_decode_or_fail(c, &bayesguard__v1__status_request__descriptor) == NULL)
        return;
    bg_policy_status *ps = bg__rpc_call_alloc(c, sizeof(*ps));
    if (ps == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* together: the set's revision beside the reload that published it */
    bg_policy_set *set = bg_policy_store_acquire_status(s->opts.store, ps);
    bg_engine_stats es;
    memset(&es, 0, sizeof(es));
    bg_engine_stats_get(s->opts.engine, &es);

    Bayesguard__V1__StatusResponse out = BAYESGUARD__V1__STATUS_RESPONSE__INIT;
    Bayesguard__V1__ReloadStatus rs = BAYESGUARD__V1__RELOAD_STATUS__INIT;
    out.version = (char *)(s->opts.version ? s->opts.version : "");
    out.revision = (char *)bg_policy_set_revision(set);
    /* the policies, then the built-in default-deny catch-all unless a
     * policy matching "*" replaced it */
    const bg_policy *catch_all = bg_policy_set_catch_all(set);
    size_t np = bg_policy_set_count(set) + (catch_all != NULL);
    out.policies = bg__rpc_call_alloc(c, (np ? np : 1) * sizeof(*out.policies));
    Bayesguard__V1__PolicyInfo *pis = bg__rpc_call_alloc(c, (np ? np : 1) * sizeof(*pis));
    size_t cap = 3 * np + 1;
    Bayesguard__V1__PluginInfo **plv = bg__rpc_call_alloc(c, cap * sizeof(*plv));
    Bayesguard__V1__PluginInfo *pls = bg__rpc_call_alloc(c, cap * sizeof(*pls));
    if (out.policies == NULL || pis == NULL || plv == NULL || pls == NULL) {
        bg_policy_set_unref(set);
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    out.plugins = plv;
    for (size_t i = 0; i < np; i++) {
        const bg_policy *p = i < bg_policy_set_count(set) ? bg_policy_set_at(set, i) : catch_all;
        Bayesguard__V1__PolicyInfo *pi = &pis[i];
        bayesguard__v1__policy_info__init(pi);
        pi->name = (char *)p->name;
        pi->model = (char *)(p->guard.model_name ? p->guard.model_name : "");
        pi->estimator = (char *)(p->guard.estimator_name ? p->guard.estimator_name : "");
        pi->threshold = p->guard.threshold;
        pi->mode = (char *)(p->guard.shadow ? "shadow" : "enforce");
        pi->over_threshold =
            (char *)(p->guard.over_threshold == BG_DECISION_ESCALATE ? "escalate" : "deny");
        pi->on_error = (char *)(p->on_error_allow ? "allow" : "deny");
        pi->session = (char *)(p->session_spec ? p->session_spec : "");
        pi->outcomes = (char *)(p->outcomes_open ? "open" : "receipts");
        pi->file = (char *)(p->file ? p->file : "");
        if (!p->builtin) {
            pi->escalation_timeout = duration_text(c, p->escalation_timeout_ms);
            pi->escalation_on_timeout = (char *)(p->escalation_on_timeout_allow ? "allow" : "deny");
        }
        pi->tools = (char **)p->tools; /* protobuf-c only reads it */
        pi->n_tools = p->n_tools;
        out.policies[i] = pi;
        add_plugin(plv, &out.n_plugins, cap, pls, p->guard.model_name, "hypothesis");
        add_plugin(plv, &out.n_plugins, cap, pls, p->guard.estimator_name, "estimator");
        add_plugin(plv, &out.n_plugins, cap, pls, p->guard.sampler_name, "sampler");
    }
    out.n_policies = np;
    rs.reloads_ok = ps->reloads_ok;
    rs.reloads_failed = ps->reloads_failed;
    rs.last_success_unix_ms = ps->last_success_unix_ms;
    rs.last_attempt_unix_ms = ps->last_attempt_unix_ms;
    rs.last_trigger = ps->last_trigger;
    rs.last_errors = split_lines(c, ps->last_errors, &rs.n_last_errors);
    out.reload = &rs;
    out.sessions = es.sessions;
    out.observations = es.observations;
    out.evaluations = es.evaluations;
    out.engine_bytes = es.bytes;
    out.observations_refused = es.store_refused;
    out.observation_log_broken = es.store_broken != 0;
    if (s->opts.escalations != NULL) {
        bg_escalation_stats xs;
        bg_escalation_stats_get(s->opts.escalations, &xs);
        out.escalations_pending = xs.pending;
    }
    out.observations_quarantined = es.store_quarantined;
    Bayesguard__V1__FleetStatus fs = BAYESGUARD__V1__FLEET_STATUS__INIT;
    if (s->opts.fleet != NULL) {
        bg_fleet_lag fl;
        bg_fleet_lag_get(s->opts.fleet, &fl);
        fs.pending_in = fl.pending_in;
        fs.pending_out = fl.pending_out;
        fs.lag_ms = fl.lag_ms;
        fs.connected = fl.connected != 0;
        fs.shipped = fl.shipped;
        fs.applied = fl.applied;
        fs.duplicates = fl.duplicates;
        fs.refused = fl.refused;
        fs.revision_mismatch = fl.revision_mismatch;
        out.fleet = &fs;
    }
    out.uptime_s = (double)(bg_now_ns() - s->started_ns) / 1e9;
    if (s->opts.plugins != NULL)
        out.plugin_errors =
            split_lines(c, bg_plugin_host_errors(s->opts.plugins), &out.n_plugin_errors);
    out.in_flight = bg__rpc_in_flight(s);
    out.draining = atomic_load(&s->draining) != 0;
    out.listen = s->bound;
    out.n_listen = s->n_bound;
    Bayesguard__V1__DecisionLogStatus dl = BAYESGUARD__V1__DECISION_LOG_STATUS__INIT;
    if (s->opts.decisions != NULL) {
        bg_decision_log_stats ds;
        bg_decision_log_stats_get(s->opts.decisions, &ds);
        dl.path = (char *)bg_decision_log_path(s->opts.decisions);
        dl.appended = ds.appended;
        dl.written = ds.written;
        dl.dropped = ds.dropped;
        dl.lost = ds.lost;
        dl.write_errors = ds.write_errors;
        dl.reopens = ds.reopens;
        out.decision_log = &dl;
    }
    bg__rpc_call_reply(c, &out.base);
    bg_policy_set_unref(set);
}

/* Reload work, shared between the pool thread and the loop thread. */
typedef struct reload_job {
    bg__rpc_call *call;
    int rc;
    bg_err err;
} reload_job;

static void reload_work(void *arg)
{
    reload_job *j = arg;
    bg_err_clear(&j->err);
    j->rc = bg_policy_store_reload(j->call->srv->opts.store, "rpc", &j->err);
}

static void reload_done(void *arg)
{
    reload_job *j = arg;
    bg__rpc_call *c = j->call;
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_DEFERRED));
    bg_policy_status *ps = bg__rpc_call_alloc(c, sizeof(*ps));
    Bayesguard__V1__ReloadResponse out = BAYESGUARD__V1__RELOAD_RESPONSE__INIT;
    if (ps != NULL) {
        bg_policy_store_status(c->srv->opts.store, ps);
        out.revision = ps->revision;
    }
    out.ok = j->rc == BG_OK;
    if (j->rc != BG_OK) {
        /* The store keeps every error (4 KiB); err holds the first 1 KiB. */
        const char *errs = ps != NULL && ps->last_errors[0] ? ps->last_errors : j->err.msg;
        out.errors = split_lines(c, errs, &out.n_errors);
        BG_WARN("rpc", "Reload refused, the current policies keep serving: %s", j->err.msg);
    } else {
        BG_INFO("rpc", "Reload: revision %s is live", out.revision);
    }
    bg__rpc_call_reply(c, &out.base);
    free(j);
}

void bg__svc_reload(bg__rpc_call *c)
{
    if (bg__rpc_call_decode_or_fail(c, &bayesguard__v1__reload_request__descriptor) == NULL)
        return;
    reload_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->call = c;
    bg__rpc_call_defer(c);
    if (bg_loop_post_work(c->srv->opts.loop, reload_work, reload_done, j) != BG_OK) {
        free(j);
        bg__rpc_call_fail(c, GRPC_STATUS_UNAVAILABLE,
                          "the daemon is shutting down and cannot reload now");
    }
}
