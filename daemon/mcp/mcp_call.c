/*
 * mcp_call.c — one held `tools/call`: ask the guard, wait on an escalation,
 * then forward the request unchanged or answer the client with a refusal.
 *
 * Each held call runs on its own detached thread (at most
 * BG_MCP_MAX_WORKERS at once; p->workers counts them under p->mu and the
 * shutdown waits on p->cv for it to drop or gives up and lets the process
 * end). The thread owns its `call`; the client request's table entry is
 * GUARDING while it decides, and whoever takes the entry answers it
 * (mcp_priv.h), so a call cancelled by the client (notifications/cancelled)
 * or drained by a server crash is never answered twice.
 *
 * Escalation: Guard/AwaitDecision in rounds of ROUND_MS, so the thread
 * sees between rounds a cancellation, the shutdown, the user's
 * elicitation answer and the --policy-timeout deadline; the daemon returns
 * as soon as the escalation is settled, so a round costs no latency. While
 * it waits, a client that sent params._meta.progressToken gets
 * notifications/progress every PROGRESS_MS (which keeps SDK clients with
 * resetTimeoutOnProgress from timing out).
 *
 * Elicitation (client capability `elicitation`): one elicitation/create
 * asks the user while an operator decides. The answer comes from the
 * agent's side of the trust boundary, so it can only withdraw the call:
 * "decline" or "cancel" refuse it at once (never forwarded, even if an
 * operator approves later); "accept" changes nothing — the operator's
 * ALLOW is still required. Settled first by the operator, the question is
 * withdrawn with notifications/cancelled.
 */
#include "mcp/mcp_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bg_log.h"

#define ROUND_MS 1000u
#define PROGRESS_MS 10000u

typedef struct call {
    bg__mcp *p;
    char *key;
    unsigned long seq;
    json_t *id;
    char *line;
    size_t len;
    char *tool, *args, *action_id;
    json_t *progress; /* params._meta.progressToken, or NULL */
    char session[256], agent[256];
    /* elicitation/create we sent, if any */
    char *ask_key;
    unsigned long ask_seq;
} call;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* ------------------------------------------------------------ endings */

static void refuse(call *c, const char *text, const Bayesguard__V1__Verdict *v)
{
    bg__mcp_entry *e = bg__mcp_table_take(&c->p->pending, c->key, c->seq);
    if (e == NULL)
        return; /* cancelled, or answered by the shutdown */
    if (bg__mcp_out_json(&c->p->client, bg_mcp_refusal(e->id, text, v)) != BG_OK)
        BG_WARN("mcp", "tools/call %s: the refusal could not be written to the client", c->key);
    bg__mcp_entry_free(e);
}

static bg__mcp_report *make_report(call *c, const Bayesguard__V1__Verdict *v)
{
    bg__mcp_report *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->tool = strdup(c->tool);
    r->args = strdup(c->args);
    r->session = strdup(c->session);
    r->agent = strdup(c->agent);
    r->policy = dup_or_empty(v->policy);
    r->decision_id = dup_or_empty(v->decision_id);
    if (v->receipt.len > 0 && (r->receipt = malloc(v->receipt.len)) != NULL) {
        memcpy(r->receipt, v->receipt.data, v->receipt.len);
        r->receipt_len = v->receipt.len;
    }
    if (!r->tool || !r->args || !r->session || !r->agent || !r->policy || !r->decision_id) {
        bg__mcp_report_free(r);
        return NULL;
    }
    return r;
}

/* v: the ALLOW verdict (its receipt reports the outcome), NULL when
 * forwarded by --fail-open. */
static void forward(call *c, const Bayesguard__V1__Verdict *v)
{
    bg__mcp_report *r = NULL;
    if (v != NULL && c->p->cfg->report != BG_MCP_REPORT_NONE)
        r = make_report(c, v);
    if (!bg__mcp_table_forward(&c->p->pending, c->key, c->seq, r))
        return;
    if (bg__mcp_out_line(&c->p->server, c->line, c->len) != BG_OK) {
        bg__mcp_entry *e = bg__mcp_table_take(&c->p->pending, c->key, c->seq);
        if (e != NULL)
            bg__mcp_out_json(&c->p->client, bg_mcp_error_reply(e->id, -32000,
                                                               "bayesguard mcp-proxy: the MCP "
                                                               "server is gone; the call was not "
                                                               "run"));
        bg__mcp_entry_free(e);
    }
}

static void guard_error(call *c, const bg_err *err)
{
    if (c->p->cfg->fail_open) {
        BG_WARN("mcp", "tools/call '%s': guard error, forwarded (--fail-open): %s", c->tool,
                err->msg);
        forward(c, NULL);
        return;
    }
    char text[BG_ERR_MSG_MAX + 256];
    snprintf(text, sizeof(text),
             "bayesguard could not decide on the call to tool '%.200s', so it was not run "
             "(fail closed): %s",
             c->tool, err->msg);
    refuse(c, text, NULL);
}

static void refuse_verdict(call *c, const Bayesguard__V1__Verdict *v, const char *why)
{
    char *text = bg_mcp_verdict_text(c->tool, v, why);
    refuse(c, text ? text : "bayesguard refused the call", v);
    free(text);
}

/* ------------------------------------------------------------ escalation */

static void ask_user(call *c, const Bayesguard__V1__Verdict *v)
{
    bg__mcp *p = c->p;
    pthread_mutex_lock(&p->mu);
    unsigned long n = ++p->own_seq;
    pthread_mutex_unlock(&p->mu);
    char idbuf[64];
    snprintf(idbuf, sizeof(idbuf), "bayesguard-mcp-proxy-%lu", n);
    json_t *id = json_string(idbuf);
    char *key = bg_mcp_id_key(id);
    if (key == NULL || bg__mcp_table_add(&p->own, key, id, BG__MCP_OWN, &c->ask_seq) != BG_OK) {
        json_decref(id);
        return; /* no question: the operator alone decides */
    }
    c->ask_key = bg_mcp_id_key(id);
    char msg[1024];
    snprintf(msg, sizeof(msg),
             "bayesguard: the call to tool '%.200s' needs an operator's approval (harm bound "
             "%.4g over threshold %.4g, policy '%.200s', escalation %.100s). It waits for the "
             "operator. Decline to withdraw the call now; accepting does not approve it.",
             c->tool, v->harm_bound, v->threshold, v->policy ? v->policy : "",
             v->decision_id ? v->decision_id : "");
    json_t *req = json_pack("{s:s, s:o, s:s, s:{s:s, s:{s:s, s:{}}}}", "jsonrpc", "2.0", "id", id,
                            "method", "elicitation/create", "params", "message", msg,
                            "requestedSchema", "type", "object", "properties");
    bg__mcp_out_json(&p->client, req);
}

/* 1: the user withdrew the call. */
static int user_withdrew(call *c)
{
    if (c->ask_key == NULL)
        return 0;
    json_t *a = bg__mcp_table_answer_get(&c->p->own, c->ask_key, c->ask_seq);
    if (a == NULL)
        return 0;
    json_t *res = json_object_get(a, "result");
    json_t *act = json_object_get(res, "action");
    int accept = json_is_string(act) && strcmp(json_string_value(act), "accept") == 0;
    json_decref(a);
    return !accept; /* decline, cancel, an error reply or nonsense: withdrawn */
}

static void end_question(call *c, int answered)
{
    if (c->ask_key == NULL)
        return;
    bg__mcp_entry *e = bg__mcp_table_take(&c->p->own, c->ask_key, c->ask_seq);
    if (e != NULL && !answered && e->answer == NULL)
        bg__mcp_out_json(&c->p->client,
                         json_pack("{s:s, s:s, s:{s:O, s:s}}", "jsonrpc", "2.0", "method",
                                   "notifications/cancelled", "params", "requestId", e->id,
                                   "reason", "the escalation was settled by an operator"));
    bg__mcp_entry_free(e);
    free(c->ask_key);
    c->ask_key = NULL;
}

static int stopping(bg__mcp *p)
{
    pthread_mutex_lock(&p->mu);
    int s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void escalate(call *c, const Bayesguard__V1__Verdict *first)
{
    bg__mcp *p = c->p;
    const bg_mcp_config *cfg = p->cfg;
    pthread_mutex_lock(&p->mu);
    int elicit = p->elicitation;
    pthread_mutex_unlock(&p->mu);
    if (elicit)
        ask_user(c, first);
    uint64_t start = now_ms(), last_progress = start;
    double progress = 0;
    for (;;) {
        unsigned round = ROUND_MS;
        if (cfg->policy_timeout_ms > 0) {
            uint64_t spent = now_ms() - start;
            if (spent >= cfg->policy_timeout_ms) {
                end_question(c, 0);
                char why[160];
                snprintf(why, sizeof(why),
                         "escalated to an operator and still pending after "
                         "%.1f s (--policy-timeout)",
                         (double)cfg->policy_timeout_ms / 1000.0);
                refuse_verdict(c, first, why);
                return;
            }
            if (cfg->policy_timeout_ms - spent < round)
                round = (unsigned)(cfg->policy_timeout_ms - spent);
        }
        Bayesguard__V1__Verdict *v = NULL;
        bg_err err;
        bg_err_clear(&err);
        if (cfg->guard.await_decision(cfg->guard.ud, first->decision_id, round, &v, &err) !=
            BG_OK) {
            end_question(c, 0);
            guard_error(c, &err);
            return;
        }
        if (v->decision == BAYESGUARD__V1__DECISION__ALLOW) {
            end_question(c, 0);
            forward(c, v);
            cfg->guard.free_msg(cfg->guard.ud, v);
            return;
        }
        if (v->decision == BAYESGUARD__V1__DECISION__DENY) {
            end_question(c, 0);
            const Bayesguard__V1__Escalation *e = v->escalation_record;
            char why[700];
            if (v->escalation == BAYESGUARD__V1__ESCALATION_STATE__REJECTED && e != NULL)
                snprintf(why, sizeof(why),
                         "escalated to an operator and rejected by %.100s: "
                         "%.500s",
                         e->approver ? e->approver : "?", e->reason ? e->reason : "");
            else if (v->escalation == BAYESGUARD__V1__ESCALATION_STATE__EXPIRED)
                snprintf(why, sizeof(why),
                         "escalated to an operator, who did not decide "
                         "before the policy's escalation timeout");
            else
                snprintf(why, sizeof(why), "escalated to an operator, then denied");
            refuse_verdict(c, v, why);
            cfg->guard.free_msg(cfg->guard.ud, v);
            return;
        }
        cfg->guard.free_msg(cfg->guard.ud, v);
        /* Still pending. */
        if (bg__mcp_table_state(&p->pending, c->key, c->seq) < 0 || stopping(p)) {
            end_question(c, 0);
            return; /* cancelled by the client, or the proxy is ending */
        }
        if (user_withdrew(c)) {
            end_question(c, 1);
            refuse_verdict(c, first,
                           "escalated to an operator, and the user withdrew the call "
                           "(elicitation declined)");
            return;
        }
        if (c->progress != NULL && now_ms() - last_progress >= PROGRESS_MS) {
            last_progress = now_ms();
            progress += 1;
            bg__mcp_out_json(&p->client,
                             json_pack("{s:s, s:s, s:{s:O, s:f, s:s}}", "jsonrpc", "2.0", "method",
                                       "notifications/progress", "params", "progressToken",
                                       c->progress, "progress", progress, "message",
                                       "bayesguard: waiting for an operator to "
                                       "approve the call"));
        }
    }
}

/* ------------------------------------------------------------ the thread */

static void decide(call *c)
{
    const bg_mcp_config *cfg = c->p->cfg;
    Bayesguard__V1__Action a;
    Bayesguard__V1__Context ctx;
    Bayesguard__V1__EvaluateRequest req = BAYESGUARD__V1__EVALUATE_REQUEST__INIT;
    bg__mcp_action_fill(&a, &ctx, c->tool, c->args, c->session, c->agent);
    a.id = c->action_id;
    req.action = &a;
    req.context = &ctx;
    if (cfg->policy)
        req.policy = (char *)cfg->policy;
    Bayesguard__V1__Verdict *v = NULL;
    bg_err err;
    bg_err_clear(&err);
    if (cfg->guard.evaluate(cfg->guard.ud, &req, &v, &err) != BG_OK) {
        guard_error(c, &err);
        return;
    }
    switch (v->decision) {
    case BAYESGUARD__V1__DECISION__ALLOW:
        forward(c, v);
        break;
    case BAYESGUARD__V1__DECISION__ESCALATE:
        escalate(c, v);
        break;
    default:
        refuse_verdict(c, v, "the harm bound is over the policy's threshold");
        break;
    }
    cfg->guard.free_msg(cfg->guard.ud, v);
}

static void call_free(call *c)
{
    free(c->key);
    json_decref(c->id);
    json_decref(c->progress);
    free(c->line);
    free(c->tool);
    free(c->args);
    free(c->action_id);
    free(c->ask_key);
    free(c);
}

static void *worker(void *arg)
{
    call *c = arg;
    bg__mcp *p = c->p;
    decide(c);
    call_free(c);
    pthread_mutex_lock(&p->mu);
    p->workers--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int bg__mcp_call_start(bg__mcp *p, bg_mcp_msg *m, const char *key, unsigned long seq,
                       const char *line, size_t len)
{
    call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return BG_ENOMEM;
    c->p = p;
    c->seq = seq;
    c->key = strdup(key);
    c->id = json_incref(m->id);
    c->line = malloc(len + 1);
    if (c->line)
        memcpy(c->line, line, len);
    c->len = len;
    json_t *name = json_object_get(m->params, "name");
    json_t *args = json_object_get(m->params, "arguments");
    c->tool = strdup(json_string_value(name));
    c->args = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
    c->action_id = json_is_string(m->id) ? strdup(json_string_value(m->id)) : strdup(key);
    json_t *tok = json_object_get(json_object_get(m->params, "_meta"), "progressToken");
    if (json_is_string(tok) || json_is_integer(tok))
        c->progress = json_incref(tok);
    pthread_mutex_lock(&p->mu);
    const char *who = p->client_name[0] ? p->client_name : "unknown-mcp-client";
    snprintf(c->session, sizeof(c->session), "%s", p->cfg->session ? p->cfg->session : who);
    snprintf(c->agent, sizeof(c->agent), "%s", p->cfg->agent ? p->cfg->agent : who);
    int full = p->workers >= BG_MCP_MAX_WORKERS;
    if (!full)
        p->workers++;
    pthread_mutex_unlock(&p->mu);
    if (!c->key || !c->line || !c->tool || !c->args || !c->action_id || full) {
        call_free(c);
        if (!full)
            goto uncount;
        return BG_ELIMIT;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, worker, c);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return BG_OK;
    call_free(c);
uncount:
    pthread_mutex_lock(&p->mu);
    p->workers--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return BG_ENOMEM;
}
