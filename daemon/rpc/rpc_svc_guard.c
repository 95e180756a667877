/*
 * rpc_svc_guard.c — Guard.Evaluate, Guard.Observe, Guard.ObserveStream.
 *
 * The decision path as the wire sees it, top to bottom:
 *   decode (call arena, size already bounded by gRPC)  -> INVALID_ARGUMENT
 *   check the action (tool present, features finite)  -> INVALID_ARGUMENT
 *   acquire the policy snapshot, pick the policy (a tool no policy matches
 *     gets the built-in default-deny; a named policy that does not exist
 *     -> NOT_FOUND)
 *   the features: computed from the arguments by the policy's spec.features,
 *     or the request's where it says from_request  -> INVALID_ARGUMENT
 *   resolve the session key the policy names, from the request and the
 *     peer (bg_policy_session_keys)                -> FAILED_PRECONDITION
 *   engine evaluate / observe (a two-level key: both levels, the larger
 *     bound decides; default-deny: no engine, DENY) -> by engine status;
 *     an Observe first takes a token of the caller's identity's rate, and
 *     of the session's identity's (session_owner) when that is another;
 *     a new session counts against the latter's quota -> RESOURCE_EXHAUSTED
 *   an enforce-mode ESCALATE opens its pending escalation (open_escalation,
 *     daemon/escalation: the record and the approval's receipt); one that
 *     cannot be opened (table full, the data directory refused it) is a
 *     DENY whose Verdict.reason says why: fail closed, never ALLOW
 *   count it in the metrics (before the reply, so a scrape that follows the
 *     client's answer includes it; a cached per-policy entry, relaxed adds)
 *   queue the outcome for the decision log (Evaluate: decisions and
 *     failures after decoding; a line copied into a buffer, no I/O)
 *   fill the reply, drop the snapshot reference.
 * An engine failure becomes INTERNAL — never a decision — unless the policy
 * says on_error: allow, in which case the verdict is ALLOW with
 * on_error_allowed set and a warning is logged.
 *
 * Outcome receipts (daemon/receipt/receipt.h): every ALLOW verdict carries
 * one (mint_receipt), bound to the policy, revision, resolved session key,
 * tool, arguments (and the request's features under features:
 * from_request: claim_args), decision id and an expiry (--receipt-ttl-s). DENY and
 * ESCALATE carry none: the action does not run, so there is no outcome to
 * report (an approved escalation gets its receipt from the approval). An
 * Observe under `outcomes: receipts` is checked (check_receipt) after the
 * policy is resolved and before the engine, which accepts each receipt
 * once (bg_engine_observe_receipt): refused -> PERMISSION_DENIED saying
 * why, used before -> ALREADY_EXISTS; nothing is stored either way. The
 * outcome is recorded in the session key the receipt carries (and its
 * identity level for a two-level key), not one computed from the
 * reporter, who may run under another uid than the agent; the reporter's
 * identity is still charged the observation rate, and the sessions count
 * against the identity they belong to (session_owner). `outcomes: open`
 * ignores receipts: the session is the request's, as for Evaluate.
 *
 * ObserveStream reads its client stream through the method table's on_recv
 * hook (bg__svc_observe_stream_recv); rpc_call.c never names this file.
 *
 * Threads: handlers run on the CQ thread that received the call; they hold
 * no lock; the snapshot reference keeps the policy and its plugin
 * instances alive for the duration of the engine call.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_log.h"
#include "common/bg_time.h"
#include "rpc/rpc_priv.h"
#include "rpc/rpc_wire.h"

/* What a request resolves to before the engine runs. */
typedef struct resolved {
    bg_policy_set *set;   /* shared: unref when done */
    const bg_policy *pol; /* borrowed from set */
    const char *session;  /* borrowed from the request, the peer or the call arena; "" */
    const char *parent;   /* a two-level key's identity level, else NULL */
    bg_action act;        /* borrows the request's strings (features: maybe the arena's) */
} resolved;

/* Append the names of every policy in set to buf. */
static void list_policies(const bg_policy_set *set, char *buf, size_t len)
{
    size_t n = bg_policy_set_count(set), used = 0;
    if (n == 0) {
        snprintf(buf, len, "none (the policy directory has no policy)");
        return;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < len; i++) {
        int w =
            snprintf(buf + used, len - used, "%s%s", i ? ", " : "", bg_policy_set_at(set, i)->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* The session key(s) of r's policy for this call (bg_policy_session_keys),
 * into the call arena. */
static grpc_status_code keys_of(bg__rpc_call *c, const Bayesguard__V1__Context *ctx, resolved *r,
                                char *msg, size_t len)
{
    bg_session_who who = {
        .session = ctx ? ctx->session : "",
        .agent = ctx ? ctx->agent : "",
        .attributes = r->act.attributes,
        .n_attributes = r->act.n_attributes,
        .identity = c->peer.identity,
        .has_uid = c->peer.has_cred,
        .uid = c->peer.uid,
    };
    size_t n = strnlen(c->peer.identity, sizeof c->peer.identity) + strlen(who.session) + 32;
    char *buf = bg__rpc_call_alloc(c, n);
    if (buf == NULL) {
        snprintf(msg, len, "out of memory for the session key");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    bg_err err;
    bg_err_clear(&err);
    if (bg_policy_session_keys(r->pol, &who, buf, n, &r->session, &r->parent, &err) != BG_OK) {
        snprintf(msg, len, "%s", err.msg);
        return GRPC_STATUS_FAILED_PRECONDITION;
    }
    return GRPC_STATUS_OK;
}

/* The action's features as r's policy says (bg_policy_action_features),
 * computed into the call arena. */
static grpc_status_code features_of(bg__rpc_call *c, const char *what, resolved *r, char *msg,
                                    size_t len)
{
    const bg_policy *p = r->pol;
    double *f = NULL;
    if (!p->features_from_request && r->act.n_features == 0 && p->n_features > 0 &&
        (f = bg__rpc_call_alloc(c, p->n_features * sizeof(*f))) == NULL) {
        snprintf(msg, len, "out of memory for %zu features", p->n_features);
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    return bg_policy_action_features(p, what, &r->act, f, msg, len) == BG_OK
               ? GRPC_STATUS_OK
               : GRPC_STATUS_INVALID_ARGUMENT;
}

/* Check and resolve; on failure returns the gRPC code with msg filled and
 * holds no reference. */
static grpc_status_code resolve(bg__rpc_call *c, const Bayesguard__V1__Action *a,
                                const Bayesguard__V1__Context *ctx, const char *policy,
                                const char *what, int observing, resolved *r, char *msg, size_t len)
{
    memset(r, 0, sizeof(*r));
    if (a == NULL) {
        snprintf(msg, len,
                 "%s.action is missing: set action with at least action.tool (the "
                 "tool name the agent wants to call)",
                 what);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    if (a->tool == NULL || a->tool[0] == '\0') {
        snprintf(msg, len,
                 "%s.action.tool is empty: set it to the tool name the agent wants "
                 "to call (it selects the policy)",
                 what);
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < a->n_features; i++) {
        if (!isfinite(a->features[i])) {
            snprintf(msg, len,
                     "%s.action.features[%zu] is %s: every feature must be a finite "
                     "number",
                     what, i, isnan(a->features[i]) ? "NaN" : "infinite");
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
    }
    r->act.id = a->id;
    r->act.tool = a->tool;
    r->act.arguments_json = a->arguments_json;
    r->act.features = a->features;
    r->act.n_features = a->n_features;
    if (a->n_attributes > 0) {
        bg_attr *attrs = bg__rpc_call_alloc(c, a->n_attributes * sizeof(*attrs));
        if (attrs == NULL) {
            snprintf(msg, len, "out of memory decoding %zu attributes", a->n_attributes);
            return GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
        for (size_t i = 0; i < a->n_attributes; i++) {
            attrs[i].key = a->attributes[i]->key;
            attrs[i].value = a->attributes[i]->value;
        }
        r->act.attributes = attrs;
        r->act.n_attributes = a->n_attributes;
    }

    /* The policy is the one matching picks, always: a caller that names
     * one only states which it expects (a caller choosing a laxer policy
     * than the one that guards its tool would be a way around the guard). */
    r->set = bg_policy_store_acquire(c->srv->opts.store);
    r->pol = bg_policy_set_match(r->set, a->tool);
    if (r->pol == NULL) /* default deny (NULL only if a "*" policy replaced it: never) */
        r->pol = bg_policy_set_catch_all(r->set);
    grpc_status_code code = GRPC_STATUS_OK;
    char names[1024];
    if (policy != NULL && policy[0] != '\0') {
        const bg_policy *named = bg_policy_set_find(r->set, policy);
        if (named == NULL) {
            list_policies(r->set, names, sizeof(names));
            snprintf(msg, len, "no policy named '%s' (revision %s): policies are: %s", policy,
                     bg_policy_set_revision(r->set), names);
            code = GRPC_STATUS_NOT_FOUND;
        } else if (named != r->pol) {
            snprintf(msg, len,
                     "%s.policy is '%s', but tool '%s' is guarded by %s%s%s (revision %s): the "
                     "policy is chosen by spec.match.tools and spec.priority, not by the "
                     "caller; leave %s.policy empty, or change the policies",
                     what, policy, a->tool, r->pol ? "policy '" : "no policy",
                     r->pol ? r->pol->name : "", r->pol ? "'" : "", bg_policy_set_revision(r->set),
                     what);
            code = GRPC_STATUS_INVALID_ARGUMENT;
        }
    }
    if (code == GRPC_STATUS_OK && (r->pol == NULL || (r->pol->builtin && observing))) {
        /* An Observe of a tool the catch-all denies: nothing ran, so there
         * is no outcome, and the catch-all keeps no posterior. */
        list_policies(r->set, names, sizeof(names));
        snprintf(msg, len,
                 "no policy matches tool '%s' (revision %s), so the built-in %s policy denies "
                 "it and keeps no observations: add the tool to a policy's spec.match.tools; "
                 "policies are: %s",
                 a->tool, bg_policy_set_revision(r->set), BG_POLICY_DEFAULT_DENY, names);
        code = GRPC_STATUS_NOT_FOUND;
    }
    if (code == GRPC_STATUS_OK && !r->pol->builtin) {
        code = features_of(c, what, r, msg, len);
        /* An Observe under `outcomes: receipts` is recorded in the session
         * its receipt names (check_receipt), never the reporter's own. */
        if (code == GRPC_STATUS_OK && !(observing && !r->pol->outcomes_open))
            code = keys_of(c, ctx, r, msg, len);
        /* A receipt carries its session key: one too long for it would be
         * an ALLOW whose outcome nobody can report, so the session would
         * never learn. Refused before any decision. */
        size_t klen = code == GRPC_STATUS_OK && r->session ? strlen(r->session) : 0;
        if (!observing && !r->pol->outcomes_open && c->srv->opts.receipts != NULL &&
            klen > BG_RECEIPT_SESSION_MAX) {
            snprintf(msg, len,
                     "%s: policy %s: the session key is %zu bytes (context.session, "
                     "context.agent or the attribute it is made of); at most %d under "
                     "outcomes: receipts, whose receipts carry it",
                     what, r->pol->name, klen, BG_RECEIPT_SESSION_MAX);
            code = GRPC_STATUS_INVALID_ARGUMENT;
        }
    }
    if (code != GRPC_STATUS_OK) {
        bg_policy_set_unref(r->set);
        r->set = NULL;
        r->pol = NULL;
        return code;
    }
    if (r->session == NULL)
        r->session = ""; /* the catch-all's */
    return GRPC_STATUS_OK;
}

/* The verdict for r (bg_policy_evaluate): r->session then names the
 * level that decided. */
static int evaluate_levels(bg_rpc_server *s, resolved *r, bg_verdict *v, bg_err *err)
{
    return bg_policy_evaluate(s->opts.engine, r->pol, &r->session, r->parent, &r->act, v, err);
}

/* Store obs for r's session and its identity level (bg_policy_observe). */
static int observe_levels(bg_engine *e, const resolved *r, const bg_observation *obs,
                          const bg_obs_receipt *receipt, const char *who, bg_posterior_summary *sum,
                          bg_err *err)
{
    return bg_policy_observe(e, r->pol, r->session, r->parent, obs, receipt, who, sum, err);
}

static Bayesguard__V1__Decision wire_decision(bg_decision d)
{
    switch (d) {
    case BG_DECISION_ALLOW:
        return BAYESGUARD__V1__DECISION__ALLOW;
    case BG_DECISION_DENY:
        return BAYESGUARD__V1__DECISION__DENY;
    case BG_DECISION_ESCALATE:
        return BAYESGUARD__V1__DECISION__ESCALATE;
    default:
        return BAYESGUARD__V1__DECISION__DECISION_UNSPECIFIED;
    }
}

/* The decision log's view of a request: what the request says. */
static void record_request(bg_decision_record *lr, const Bayesguard__V1__EvaluateRequest *req)
{
    memset(lr, 0, sizeof(*lr));
    if (req->action) {
        lr->tool = req->action->tool;
        lr->action_id = req->action->id;
    }
    if (req->context) {
        lr->session = req->context->session;
        lr->agent = req->context->agent;
        lr->trace_id = req->context->trace_id;
    }
}

/* ... and what the policy it resolved to says. */
static void record_policy(bg_decision_record *lr, const resolved *r)
{
    const bg_guard *g = &r->pol->guard;
    lr->resolved = 1;
    lr->policy = r->pol->name;
    lr->revision = bg_policy_set_revision(r->set);
    lr->model = g->model_name;
    lr->estimator = g->estimator_name;
    lr->session_key = r->session;
    lr->threshold = g->threshold;
    lr->over_threshold = bg_decision_name(g->over_threshold);
    lr->shadow = g->shadow != 0;
}

/* What a receipt binds as the action's arguments (bg_receipt_claim.args):
 * arguments_json, and under `features: from_request` also the request's
 * features — the decision was about them, so an outcome reported at other
 * features is not that action's (review 2026-12-06) — after a NUL (which no
 * arguments_json holds), each as the 8 little-endian bytes of its IEEE
 * double. In the call arena (or the request); NULL when out of memory. */
static const char *claim_args(bg__rpc_call *c, const resolved *r, size_t *len)
{
    const char *args = r->act.arguments_json ? r->act.arguments_json : "";
    size_t na = strlen(args);
    *len = na;
    if (!r->pol->features_from_request || r->act.n_features == 0)
        return args;
    *len = na + 1 + 8 * r->act.n_features;
    uint8_t *b = bg__rpc_call_alloc(c, *len);
    if (b == NULL)
        return NULL;
    memcpy(b, args, na);
    b[na] = 0;
    for (size_t i = 0; i < r->act.n_features; i++) {
        uint64_t u;
        memcpy(&u, &r->act.features[i], sizeof u);
        for (int k = 0; k < 8; k++)
            b[na + 1 + 8 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    return (const char *)b;
}

/* Fill out->receipt for an ALLOW (buf: at least BG_RECEIPT_MAX bytes),
 * naming `session`: the key resolved for the request (a two-level key's
 * child, whichever level decided), where its outcome is recorded. */
static void mint_receipt(bg__rpc_call *c, const resolved *r, const char *session,
                         const bg_verdict *v, const char *did, uint8_t *buf,
                         Bayesguard__V1__Verdict *out)
{
    const bg_rpc_server *s = c->srv;
    if (v->decision != BG_DECISION_ALLOW || s->opts.receipts == NULL)
        return;
    int64_t ttl = s->opts.receipt_ttl_ms > 0 ? s->opts.receipt_ttl_ms : 3600 * 1000;
    size_t nargs;
    const char *args = claim_args(c, r, &nargs);
    if (args == NULL) {
        BG_WARN("decision", "%s: no receipt minted: out of memory", did);
        return;
    }
    bg_receipt_claim rc = {.policy = r->pol->name,
                           .revision = bg_policy_set_revision(r->set),
                           .session = session,
                           .session_spec = r->pol->session_spec,
                           .tool = r->act.tool,
                           .args = args,
                           .args_len = nargs,
                           .decision = v->decision,
                           .decision_id = did,
                           .expiry_unix_ms = bg_receipt_now_ms() + ttl};
    out->receipt.len = bg_receipt_mint(s->opts.receipts, &rc, buf, BG_RECEIPT_MAX);
    out->receipt.data = out->receipt.len ? buf : NULL;
    if (out->receipt.len == 0)
        BG_WARN("decision",
                "%s: no receipt minted: the session key is longer than %d bytes, or SHA-256 "
                "failed; its outcome cannot be reported under outcomes: receipts",
                did, BG_RECEIPT_SESSION_MAX);
}

/* "sha256:<hex> (<n> bytes)": the arguments as an escalation shows them.
 * Never the JSON itself: it may hold secrets, and the decision log (whose
 * view an escalation shares) never records it (decision_log.h). */
static void arguments_view(const char *args, char *out, size_t len)
{
    size_t n = args ? strlen(args) : 0;
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(args ? args : ""), n, d);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    snprintf(out, len, "sha256:%s (%zu bytes)", hex, n);
}

/* Open the pending escalation of an ESCALATE verdict (daemon/escalation):
 * who asked, what, the bound, and the receipt an approval will hand out
 * (minted now, flagged BG_RECEIPT_APPROVED, valid until the escalation's
 * expiry plus the receipt lifetime). Not BG_OK: why in msg (the table is
 * full, the data directory refused the write). */
static int open_escalation(bg__rpc_call *c, const resolved *r, const char *child,
                           const Bayesguard__V1__EvaluateRequest *req, const bg_verdict *v,
                           const char *did, char *msg, size_t len)
{
    bg_rpc_server *s = c->srv;
    const bg_policy *p = r->pol;
    char argv[128];
    arguments_view(r->act.arguments_json, argv, sizeof argv);
    int64_t now = bg_receipt_now_ms();
    int64_t ttl = s->opts.receipt_ttl_ms > 0 ? s->opts.receipt_ttl_ms : 3600 * 1000;
    bg_escalation_rec e;
    memset(&e, 0, sizeof e);
    e.id = (char *)did;
    e.policy = (char *)p->name;
    e.revision = (char *)bg_policy_set_revision(r->set);
    e.tool = (char *)r->act.tool;
    e.arguments = argv;
    e.harm_bound = v->harm_bound;
    e.threshold = p->guard.threshold;
    e.has_cautious = 1;
    e.cautious_id = v->cautious_id;
    e.cautious_label = (char *)v->cautious_label;
    e.cautious_posterior = v->cautious_posterior;
    e.cautious_harm = v->cautious_harm;
    e.session = (char *)r->session;
    e.agent = (char *)(req->context ? req->context->agent : "");
    e.peer = c->peer.identity;
    e.created_ms = now;
    e.expires_ms = now + p->escalation_timeout_ms;
    e.on_timeout_allow = p->escalation_on_timeout_allow;
    uint8_t receipt[BG_RECEIPT_MAX];
    size_t nargs;
    const char *args = s->opts.receipts != NULL ? claim_args(c, r, &nargs) : NULL;
    if (args != NULL) { /* NULL: no receipt, so no approval can be reported */
        bg_receipt_claim rc = {.policy = p->name,
                               .revision = e.revision,
                               .session = child,
                               .session_spec = p->session_spec,
                               .tool = r->act.tool,
                               .args = args,
                               .args_len = nargs,
                               .decision = BG_DECISION_ALLOW,
                               .decision_id = did,
                               .expiry_unix_ms = e.expires_ms + ttl,
                               .flags = BG_RECEIPT_APPROVED};
        e.receipt_len = bg_receipt_mint(s->opts.receipts, &rc, receipt, sizeof receipt);
        e.receipt = e.receipt_len ? receipt : NULL;
    }
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_escalation_open_one(s->opts.escalations, &e, &err);
    if (rc != BG_OK)
        snprintf(msg, len, "ESCALATE turned into DENY: no escalation could be opened (%s)",
                 err.msg);
    return rc;
}

/* Answer a failed evaluation with code and msg, and log it. */
static void fail_logged(bg__rpc_call *c, bg_decision_record *lr, grpc_status_code code,
                        const char *msg)
{
    lr->error_code = bg_rpc_code_name(code);
    lr->error = msg;
    lr->eval_us = (bg_now_ns() - c->start_ns) / 1000u;
    bg_decision_log_append(c->srv->opts.decisions, lr);
    bg__rpc_call_fail(c, code, "%s", msg);
}

void bg__svc_evaluate(bg__rpc_call *c)
{
    Bayesguard__V1__EvaluateRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__evaluate_request__descriptor);
    if (req == NULL)
        return;
    bg_decision_record lr;
    record_request(&lr, req);
    lr.peer = c->peer.identity;
    char msg[1536];
    resolved r;
    grpc_status_code code = resolve(c, req->action, req->context, req->policy, "EvaluateRequest", 0,
                                    &r, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK) {
        fail_logged(c, &lr, code, msg);
        return;
    }
    record_policy(&lr, &r);
    const bg_policy *p = r.pol;
    bg_rpc_server *s = c->srv;
    bg_verdict v;
    bg_err err;
    bg_err_clear(&err);
    memset(&v, 0, sizeof(v));
    const char *child = r.session; /* the receipt's: evaluate_levels may name the parent */
    int rc = evaluate_levels(s, &r, &v, &err);
    lr.session_key = r.session; /* the level that decided */
    int on_error_allowed = 0;
    /* Bad input, limits and BG_EUNAVAIL (a sampler still training on the
     * session's data: retry) keep their status codes, whatever on_error
     * says; any other failure is INTERNAL, or ALLOW under on_error: allow. */
    int known = rc == BG_EINVAL || rc == BG_ELIMIT || rc == BG_ENOMEM || rc == BG_EUNAVAIL;
    if (known || (rc != BG_OK && !p->on_error_allow)) {
        grpc_status_code ec = known ? bg__rpc_code_of(rc) : GRPC_STATUS_INTERNAL;
        if (ec == GRPC_STATUS_INTERNAL)
            snprintf(msg, sizeof(msg),
                     "policy %s: evaluation failed, no decision was made (%s): the policy's "
                     "on_error is deny; treat the action as not approved and check the daemon "
                     "log",
                     p->name, err.msg);
        else
            snprintf(msg, sizeof(msg), "%s", err.msg);
        fail_logged(c, &lr, ec, msg);
        bg_policy_set_unref(r.set);
        return;
    }
    if (rc != BG_OK) {
        BG_WARN("decision",
                "policy %s tool %s session '%s': engine failed (%s); on_error: "
                "allow -> ALLOW",
                p->name, r.act.tool, r.session, err.msg);
        memset(&v, 0, sizeof(v));
        v.decision = BG_DECISION_ALLOW;
        on_error_allowed = 1;
        lr.error = err.msg;
    }

    /* Fleet freshness (spec.fleet): past max_lag the policy's on_stale
     * decides (fail closed); a lag without --fleet is none. */
    bg_fleet_lag fl;
    bg_fleet_lag_get(s->opts.fleet, &fl);
    int stale = s->opts.fleet != NULL && p->fleet_max_lag_ms > 0 &&
                fl.lag_ms > (uint64_t)p->fleet_max_lag_ms;
    char stale_reason[160] = "";
    if (stale && p->fleet_on_stale != BG_DECISION_ALLOW && !v.shadow) {
        /* Verdict.reason: more than the bound decided (an escalation's
         * failure below replaces it with its own). */
        snprintf(stale_reason, sizeof stale_reason,
                 "fleet: %llu ms behind the fleet, past spec.fleet.max_lag %lld ms: on_stale %s",
                 (unsigned long long)fl.lag_ms, (long long)p->fleet_max_lag_ms,
                 bg_decision_name(p->fleet_on_stale));
        BG_DEBUG("decision", "policy %s: %s", p->name, stale_reason);
        v.decision = p->fleet_on_stale;
    }

    Bayesguard__V1__Verdict out = BAYESGUARD__V1__VERDICT__INIT;
    Bayesguard__V1__CautiousHypothesis ch = BAYESGUARD__V1__CAUTIOUS_HYPOTHESIS__INIT;
    char did[40];
    uint64_t seq = atomic_fetch_add(&s->decisions, 1) + 1;
    snprintf(did, sizeof(did), "%016" PRIx64 "-%016" PRIx64, s->boot_id, seq);
    if (stale_reason[0]) {
        out.reason = stale_reason;
        lr.reason = stale_reason;
    }
    if (v.decision == BG_DECISION_ESCALATE && !v.shadow && s->opts.escalations != NULL) {
        /* The pending escalation; one that cannot be opened fails closed. */
        if (open_escalation(c, &r, child, req, &v, did, msg, sizeof(msg)) == BG_OK) {
            out.escalation = BAYESGUARD__V1__ESCALATION_STATE__PENDING;
            lr.escalation = "PENDING";
        } else {
            BG_WARN("decision", "%s: ESCALATE -> DENY: %s", did, msg);
            v.decision = BG_DECISION_DENY;
            out.reason = msg;
            lr.escalation = "REFUSED";
            lr.reason = msg;
        }
    }
    out.decision = wire_decision(v.decision);
    out.harm_bound = v.harm_bound;
    out.posterior_predictive = v.posterior_predictive;
    ch.id = v.cautious_id;
    ch.label = v.cautious_label;
    ch.posterior = v.cautious_posterior;
    ch.harm = v.cautious_harm;
    if (!on_error_allowed)
        out.cautious = &ch;
    out.plausible_set_size = v.plausible_set_size;
    out.estimator = (char *)(p->guard.estimator_name ? p->guard.estimator_name : "");
    out.model = (char *)(p->guard.model_name ? p->guard.model_name : "");
    out.policy = (char *)p->name;
    out.revision = (char *)bg_policy_set_revision(r.set);
    out.decision_id = did;
    out.bound_kind = on_error_allowed ? BAYESGUARD__V1__BOUND_KIND__BOUND_KIND_UNSPECIFIED
                     : v.sampled      ? BAYESGUARD__V1__BOUND_KIND__SAMPLED
                                      : BAYESGUARD__V1__BOUND_KIND__EXACT;
    out.samples = v.samples;
    Bayesguard__V1__SamplerHealth sh = BAYESGUARD__V1__SAMPLER_HEALTH__INIT;
    if (v.sampled && !on_error_allowed) {
        sh.healthy = v.health.healthy != 0;
        sh.tb_residual = v.health.tb_residual;
        sh.log_weight_spread = v.health.log_weight_spread;
        sh.ess = v.health.ess;
        sh.train_steps = v.health.train_steps;
        sh.version_lag = v.health.version_lag;
        sh.archive_size = v.health.archive_size;
        sh.archive_version_lag = v.health.archive_version_lag;
        sh.search_evaluations = v.health.search_evaluations;
        sh.search_cpu_us = v.health.search_cpu_us;
        sh.context_kept = v.health.context_kept;
        sh.context_rounds = v.health.context_rounds;
        sh.context_version_lag = v.health.context_version_lag;
        sh.reason = v.health.reason;
        out.sampler = &sh;
    }
    out.shadow = v.shadow != 0;
    out.observations = v.observations;
    out.threshold = p->guard.threshold;
    out.on_error_allowed = on_error_allowed;
    out.fleet_pending_in = fl.pending_in;
    out.fleet_pending_out = fl.pending_out;
    out.fleet_lag_ms = fl.lag_ms;
    out.fleet_stale = stale != 0;
    uint8_t receipt[BG_RECEIPT_MAX];
    mint_receipt(c, &r, child, &v, did, receipt, &out);
    uint64_t elapsed_ns = bg_now_ns() - c->start_ns;
    out.eval_us = elapsed_ns / 1000u;
    if (s->opts.metrics != NULL)
        /* shadow allowed: the bound was over the threshold (or not a
         * number: see decide() in engine.c) and only shadow mode allowed it */
        bg_metrics_evaluation(bg_metrics_policy_of(s->opts.metrics, p), v.decision,
                              v.shadow && !(v.harm_bound <= p->guard.threshold), on_error_allowed,
                              elapsed_ns);
    BG_DEBUG("decision", "%s policy=%s rev=%s tool=%s session='%s' trace=%s -> %s bound=%.6g", did,
             p->name, out.revision, r.act.tool, r.session,
             req->context ? req->context->trace_id : "", bg_decision_name(v.decision),
             v.harm_bound);

    lr.decision_id = did;
    lr.decision = bg_decision_name(v.decision);
    lr.on_error_allowed = on_error_allowed;
    lr.harm_bound = v.harm_bound;
    lr.posterior_predictive = v.posterior_predictive;
    lr.sampled = v.sampled;
    lr.samples = v.samples;
    lr.sampler.healthy = v.health.healthy;
    lr.sampler.tb_residual = v.health.tb_residual;
    lr.sampler.log_weight_spread = v.health.log_weight_spread;
    lr.sampler.ess = v.health.ess;
    lr.sampler.train_steps = v.health.train_steps;
    lr.sampler.version_lag = v.health.version_lag;
    lr.sampler.reason = v.health.reason;
    lr.sampler.archive_size = v.health.archive_size;
    lr.sampler.archive_version_lag = v.health.archive_version_lag;
    lr.sampler.search_evaluations = v.health.search_evaluations;
    lr.sampler.search_cpu_us = v.health.search_cpu_us;
    lr.sampler.context_kept = v.health.context_kept;
    lr.sampler.context_rounds = v.health.context_rounds;
    lr.sampler.context_version_lag = v.health.context_version_lag;
    lr.plausible_set_size = v.plausible_set_size;
    lr.observations = v.observations;
    lr.has_cautious = !on_error_allowed;
    lr.cautious_id = v.cautious_id;
    lr.cautious_label = v.cautious_label;
    lr.cautious_posterior = v.cautious_posterior;
    lr.cautious_harm = v.cautious_harm;
    lr.eval_us = out.eval_us;
    bg_decision_log_append(s->opts.decisions, &lr);
    bg__rpc_call_reply(c, &out.base);
    bg_policy_set_unref(r.set);
}

/* Observe one request; on success fills `resp` (strings point into the
 * snapshot, so it is built while the reference is held) via `emit`. */
typedef void (*observed_fn)(bg__rpc_call *c, const Bayesguard__V1__ObserveResponse *resp);

/* Under `outcomes: receipts`: the request's receipt must be authentic,
 * unexpired, minted for r's policy, tool and arguments, for an action that
 * ran, under the same spec.session (a reload that changed it voids the
 * receipt: its key would mean another session), and for the decision
 * req->id names (when it names one). Accepted,
 * r->session becomes the session key the receipt was minted in (covered
 * by its tag: the reporter's identity and context.session play no part),
 * and for a two-level policy r->parent that key's identity level (the
 * part before the first BG_SESSION_LEVEL_SEP, which no identity contains:
 * policy_session.c). Both live in the call arena. */
static grpc_status_code check_receipt(bg__rpc_call *c, const Bayesguard__V1__ObserveRequest *req,
                                      resolved *r, const char *what, bg_obs_receipt *used,
                                      char *msg, size_t len)
{
    if (c->srv->opts.receipts == NULL) {
        snprintf(msg, len,
                 "%s: policy %s accepts outcomes only with a receipt, and this server "
                 "mints none: give bayesguardd a receipt key, or set the policy's "
                 "outcomes: open",
                 what, r->pol->name);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    size_t nargs;
    const char *args = claim_args(c, r, &nargs);
    if (args == NULL) {
        snprintf(msg, len, "out of memory checking the receipt");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    bg_receipt_claim claim = {.policy = r->pol->name,
                              .session_spec = r->pol->session_spec,
                              .tool = r->act.tool,
                              .args = args,
                              .args_len = nargs};
    bg_receipt_info info;
    bg_err err;
    bg_err_clear(&err);
    if (bg_receipt_verify(c->srv->opts.receipts, req->receipt.data, req->receipt.len, &claim,
                          bg_receipt_now_ms(), &info, &err) != BG_RECEIPT_OK) {
        snprintf(msg, len, "%s.receipt refused (policy %s, outcomes: receipts): %s%s", what,
                 r->pol->name, err.msg,
                 r->pol->features_from_request
                     ? " (under features: from_request the receipt binds action.features "
                       "too: send the features of the decision)"
                     : "");
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    if (info.decision != BG_DECISION_ALLOW && !(info.flags & BG_RECEIPT_APPROVED)) {
        snprintf(msg, len,
                 "%s.receipt is for decision %s, a %s: the action did not run, so it has no "
                 "outcome to report",
                 what, info.decision_id, bg_decision_name((bg_decision)info.decision));
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    if (req->id && req->id[0] && strcmp(req->id, info.decision_id) != 0) {
        snprintf(msg, len,
                 "%s.id is '%s' but the receipt is for decision %s: leave id empty or send "
                 "the receipt of that decision",
                 what, req->id, info.decision_id);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    size_t ns = strlen(info.session);
    char *key = bg__rpc_call_alloc(c, 2 * (ns + 1));
    if (key == NULL) {
        snprintf(msg, len, "out of memory for the receipt's session key");
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    memcpy(key, info.session, ns + 1);
    r->session = key;
    r->parent = NULL;
    const char *sep = r->pol->session_two_level ? strchr(key, BG_SESSION_LEVEL_SEP) : NULL;
    if (sep != NULL) { /* always: the tag binds spec.session, and two levels mint id|session */
        char *parent = key + ns + 1;
        memcpy(parent, key, (size_t)(sep - key));
        parent[sep - key] = '\0';
        r->parent = parent;
    }
    memset(used, 0, sizeof(*used));
    snprintf(used->id, sizeof(used->id), "%s", info.decision_id);
    used->expiry_unix_ms = info.expiry_unix_ms;
    used->flags = info.flags;
    return GRPC_STATUS_OK;
}

/* Whose quotas an outcome's new sessions count against: the identity the
 * receipt's session belongs to (a two-level key's identity level, or the
 * key itself under session: peer.identity / peer.uid), else the caller.
 * Charging the reporter — one tool runner for every agent — let one agent
 * naming a fresh context.session per action fill the reporter's
 * --max-sessions-per-identity, and every other agent's new session was
 * refused (review 2026-12-06). The caller is still charged its
 * observation rate (observe_one). */
static const char *session_owner(const bg__rpc_call *c, const resolved *r)
{
    if (r->pol->outcomes_open)
        return c->peer.identity;
    if (r->parent != NULL)
        return r->parent;
    if (r->pol->session_key == BG_SESSION_PEER_IDENTITY ||
        r->pol->session_key == BG_SESSION_PEER_UID)
        return r->session;
    return c->peer.identity;
}

static grpc_status_code observe_one(bg__rpc_call *c, const Bayesguard__V1__ObserveRequest *req,
                                    const char *what, observed_fn emit, char *msg, size_t len)
{
    resolved r;
    grpc_status_code code =
        resolve(c, req->action, req->context, req->policy, what, 1, &r, msg, len);
    if (code != GRPC_STATUS_OK)
        return code;
    bg_observation obs;
    memset(&obs, 0, sizeof(obs));
    obs.action = r.act;
    obs.harmed = req->harmed ? 1 : 0;
    if (req->measured_case == BAYESGUARD__V1__OBSERVE_REQUEST__MEASURED_VALUE) {
        if (!isfinite(req->value)) {
            snprintf(msg, len,
                     "%s.value is not a finite number: send a finite measured "
                     "outcome or leave it unset",
                     what);
            bg_policy_set_unref(r.set);
            return GRPC_STATUS_INVALID_ARGUMENT;
        }
        obs.has_value = 1;
        obs.value = req->value;
    }
    bg_obs_receipt used;
    if (!r.pol->outcomes_open &&
        (code = check_receipt(c, req, &r, what, &used, msg, len)) != GRPC_STATUS_OK) {
        bg_policy_set_unref(r.set);
        return code;
    }
    bg_posterior_summary sum;
    bg_err err;
    bg_err_clear(&err);
    memset(&sum, 0, sizeof(sum));
    const char *owner = session_owner(c, &r);
    /* the caller's rate token; the owner's is taken with the observation */
    int rc = strcmp(owner, c->peer.identity) == 0
                 ? BG_OK
                 : bg_engine_admit(c->srv->opts.engine, c->peer.identity, &err);
    if (rc == BG_OK)
        rc = observe_levels(c->srv->opts.engine, &r, &obs, r.pol->outcomes_open ? NULL : &used,
                            owner, &sum, &err);
    if (rc != BG_OK) {
        code = bg__rpc_code_of(rc);
        if (code == GRPC_STATUS_INTERNAL)
            snprintf(msg, len, "policy %s: the observation was not stored (%s): retry it",
                     r.pol->name, err.msg);
        else
            snprintf(msg, len, "%s", err.msg);
        bg_policy_set_unref(r.set);
        return code;
    }
    if (c->srv->opts.metrics != NULL)
        bg_metrics_observation(bg_metrics_policy_of(c->srv->opts.metrics, r.pol), obs.harmed);
    BG_DEBUG("decision",
             "observed policy=%s tool=%s session='%s' harmed=%d decision=%s -> %llu "
             "observations",
             r.pol->name, r.act.tool, r.session, obs.harmed, req->id,
             (unsigned long long)sum.observations);
    Bayesguard__V1__ObserveResponse out = BAYESGUARD__V1__OBSERVE_RESPONSE__INIT;
    Bayesguard__V1__PosteriorSummary ps = BAYESGUARD__V1__POSTERIOR_SUMMARY__INIT;
    out.policy = (char *)r.pol->name;
    out.revision = (char *)bg_policy_set_revision(r.set);
    out.session = (char *)r.session;
    out.observations = sum.observations;
    ps.hypotheses = sum.hypotheses;
    ps.map_id = sum.map_id;
    ps.map_label = sum.map_label;
    ps.map_posterior = sum.map_posterior;
    ps.entropy_nats = sum.entropy_nats;
    out.posterior = &ps;
    emit(c, &out);
    bg_policy_set_unref(r.set);
    return GRPC_STATUS_OK;
}

static void reply_observe(bg__rpc_call *c, const Bayesguard__V1__ObserveResponse *resp)
{
    bg__rpc_call_reply(c, &resp->base);
}

void bg__svc_observe(bg__rpc_call *c)
{
    Bayesguard__V1__ObserveRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__observe_request__descriptor);
    if (req == NULL)
        return;
    char msg[1536];
    grpc_status_code code = observe_one(c, req, "ObserveRequest", reply_observe, msg, sizeof(msg));
    if (code != GRPC_STATUS_OK)
        bg__rpc_call_fail(c, code, "%s", msg);
}

/* ObserveStream keeps the state after the last observation in the arena
 * (allocated first, so resetting the arena to just after it between
 * messages keeps it while releasing each message's memory). */
typedef struct stream_state {
    size_t arena_mark;
    char policy[256];
    char revision[80];
    char session[256];
    uint64_t observations;
    Bayesguard__V1__PosteriorSummary ps;
    char map_label[128];
} stream_state;

static void remember(bg__rpc_call *c, const Bayesguard__V1__ObserveResponse *resp)
{
    stream_state *st = c->user;
    snprintf(st->policy, sizeof(st->policy), "%s", resp->policy);
    snprintf(st->revision, sizeof(st->revision), "%s", resp->revision);
    snprintf(st->session, sizeof(st->session), "%s", resp->session);
    st->observations = resp->observations;
    st->ps = *resp->posterior;
    snprintf(st->map_label, sizeof(st->map_label), "%s", resp->posterior->map_label);
    st->ps.map_label = st->map_label;
}

void bg__svc_observe_stream(bg__rpc_call *c)
{
    stream_state *st = bg__rpc_call_alloc(c, sizeof(*st));
    if (st == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    memset(st, 0, sizeof(*st));
    st->arena_mark = c->arena_used;
    c->user = st;
    if (bg__rpc_call_stream_recv(c) != BG_OK)
        bg__rpc_call_fail(c, GRPC_STATUS_INTERNAL, "cannot read the observation stream");
}

void bg__svc_observe_stream_recv(bg__rpc_call *c, int ok)
{
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_STREAMING));
    stream_state *st = c->user;
    if (!ok) {
        /* The call was cancelled or the connection dropped. */
        bg__rpc_call_abandon(c);
        return;
    }
    if (c->payload == NULL) {
        /* Client half-closed: acknowledge everything. */
        Bayesguard__V1__ObserveStreamResponse out = BAYESGUARD__V1__OBSERVE_STREAM_RESPONSE__INIT;
        Bayesguard__V1__ObserveResponse last = BAYESGUARD__V1__OBSERVE_RESPONSE__INIT;
        out.accepted = c->count;
        if (c->count > 0) {
            last.policy = st->policy;
            last.revision = st->revision;
            last.session = st->session;
            last.observations = st->observations;
            last.posterior = &st->ps;
            out.last = &last;
        }
        bg__rpc_call_reply(c, &out.base);
        return;
    }
    if (grpc_byte_buffer_length(c->payload) > c->srv->max_message) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "observation #%" PRIu64 " is larger than the daemon's "
                          "--max-message-bytes (%zu): send smaller observations",
                          c->count, c->srv->max_message);
        return;
    }
    Bayesguard__V1__ObserveRequest *req =
        bg__rpc_call_decode(c, &bayesguard__v1__observe_request__descriptor);
    char msg[1536];
    grpc_status_code code;
    if (req == NULL) {
        code = GRPC_STATUS_INVALID_ARGUMENT;
        snprintf(msg, sizeof(msg),
                 "not a valid bayesguard.v1.ObserveRequest (protobuf "
                 "decoding failed)");
    } else {
        code = observe_one(c, req, "ObserveRequest", remember, msg, sizeof(msg));
    }
    if (code != GRPC_STATUS_OK) {
        bg__rpc_call_fail(c, code,
                          "observation #%" PRIu64 " (0-based): %s; the %" PRIu64
                          " before it were stored",
                          c->count, msg, c->count);
        return;
    }
    c->count++;
    /* Release this message's memory, keep the stream state. */
    bg__rpc_call_free_overflow(c);
    c->arena_used = st->arena_mark;
    if (bg__rpc_call_stream_recv(c) != BG_OK)
        bg__rpc_call_fail(c, GRPC_STATUS_INTERNAL, "cannot read the observation stream");
}

/* ---- tests/fuzz (rpc_priv.h): the decision path without a gRPC call */

static void fuzz_observed(bg__rpc_call *c, const Bayesguard__V1__ObserveResponse *resp)
{
    grpc_byte_buffer_destroy(bg_rpc_pack(&resp->base));
    bg_engine_forget(c->srv->opts.engine, resp->policy, resp->session);
}

grpc_status_code bg__svc_guard_for_fuzz(bg__rpc_call *c, const ProtobufCMessage *req, char *msg,
                                        size_t len)
{
    if (req->descriptor == &bayesguard__v1__observe_request__descriptor)
        return observe_one(c, (const Bayesguard__V1__ObserveRequest *)req, "ObserveRequest",
                           fuzz_observed, msg, len);
    BG_ASSERT(req->descriptor == &bayesguard__v1__evaluate_request__descriptor,
              "bg__svc_guard_for_fuzz: a %s, expected an EvaluateRequest or ObserveRequest",
              req->descriptor->name);
    const Bayesguard__V1__EvaluateRequest *e = (const Bayesguard__V1__EvaluateRequest *)req;
    bg_decision_record lr;
    record_request(&lr, e);
    resolved r;
    lr.peer = c->peer.identity;
    grpc_status_code code =
        resolve(c, e->action, e->context, e->policy, "EvaluateRequest", 0, &r, msg, len);
    bg_verdict v;
    memset(&v, 0, sizeof(v));
    if (code == GRPC_STATUS_OK) {
        record_policy(&lr, &r);
        bg_err err;
        bg_err_clear(&err);
        int rc = evaluate_levels(c->srv, &r, &v, &err); /* both levels, as Evaluate does */
        lr.session_key = r.session;
        if (rc != BG_OK) {
            code = bg__rpc_code_of(rc);
            snprintf(msg, len, "%s", err.msg);
        } else {
            lr.decision = bg_decision_name(v.decision);
            lr.harm_bound = v.harm_bound;
            lr.has_cautious = 1;
            lr.cautious_id = v.cautious_id;
            lr.cautious_label = v.cautious_label;
        }
    }
    if (code != GRPC_STATUS_OK) {
        lr.error_code = bg_rpc_code_name(code);
        lr.error = msg;
    }
    bg_decision_log_append(c->srv->opts.decisions, &lr);
    if (r.set != NULL)
        bg_policy_set_unref(r.set);
    return code;
}
