/*
 * rpc_svc_escalation.c — Guard.ListEscalations, WatchEscalations,
 * ResolveEscalation (operator role) and AwaitDecision (agent role) over the
 * pending-escalation table (daemon/escalation/escalation.h; Evaluate opens
 * its records, rpc_svc_guard.c).
 *
 * AwaitDecision parks its call without holding a thread: the handler finds
 * the record under the table's lock; a settled one is answered at once; a
 * pending one is linked in srv->awaits (at most BG_ESC_AWAITS_PER_ID per
 * escalation: beyond, RESOURCE_EXHAUSTED naming it; so the parked awaits
 * are bounded by the escalation table, at most BG_ESC_AWAITS_PER_ID x
 * --max-escalations, and one caller parking awaits in a loop on its own
 * escalation uses up no one else's room, as a server-wide cap let it: review
 * 2026-12-06) and the call is parked (bg__rpc_call_park: DEFERRED,
 * with a RECV_CLOSE_ON_SERVER batch that tells when the client goes away).
 * It is answered, from whichever thread gets there first and exactly once
 * (the one that unlinks it under esc_mu answers it):
 *   - the table's SETTLED event (table lock, then esc_mu): ALLOW with the
 *     record's receipt (approved, or expired under on_timeout: allow) or
 *     DENY (rejected, expired);
 *   - the tick (loop thread, every BG_ESC_TICK_MS) when timeout_ms passed:
 *     the ESCALATE verdict with escalation = PENDING;
 *   - the client going away (on_recv): CANCELLED, sent to nobody;
 *   - the drain (on_drain hook): UNAVAILABLE.
 * Only the identity that asked may await (the record's peer, compared with
 * the caller's bg_peer identity); anyone else gets NOT_FOUND, the answer
 * for an unknown id, so ids cannot be probed.
 *
 * WatchEscalations is a server stream: the pending records first (taken
 * under the table's lock, with the watcher registered in the same critical
 * section, so no change is missed or sent twice), then every OPENED and
 * SETTLED event. Each watcher has its own queue, bounded at its initial
 * size + BG_ESC_WATCH_QUEUE: a watcher that falls that far behind is cut
 * off with RESOURCE_EXHAUSTED (the daemon never waits on a watcher). At most
 * BG_ESC_MAX_WATCHERS at once. One send is in flight per stream (invariant
 * 2 of rpc_call.c: w->sending under esc_mu). The drain ends every watch
 * with UNAVAILABLE.
 *
 * Every settlement is a decision-log line (a resolution line, joined to the
 * ESCALATE line by decision_id), written from the SETTLED event.
 *
 * Threads: handlers on CQ threads; events on the thread that changed the
 * table (a Resolve's CQ thread, the tick on the loop); the tick and drain
 * hooks on the loop. Lock order: table -> esc_mu. The await and watch
 * state lives in the call's arena (freed when the call recycles, after its
 * last batch), a watcher's queued records on the heap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "common/bg_log.h"
#include "common/bg_time.h"
#include "receipt/receipt.h"
#include "rpc/rpc_priv.h"

#define BG_ESC_TICK_MS 100
#define BG_ESC_AWAITS_PER_ID 4 /* parked AwaitDecision calls per pending escalation */
#define BG_ESC_MAX_WAIT_MS (15u * 60u * 1000u) /* AwaitDecision's timeout_ms 0 or more */
#define BG_ESC_MAX_WATCHERS 64
#define BG_ESC_WATCH_QUEUE 256
#define BG_STR_(x) #x
#define BG_STR(x) BG_STR_(x)

typedef struct esc_await {
    bg__rpc_call *call;
    char id[64];
    uint64_t deadline_ns;
    int linked; /* in srv->awaits (under esc_mu) */
    struct esc_await *next;
} esc_await;

typedef struct esc_watch {
    bg__rpc_call *call;
    char *policy;          /* filter, "" all (call arena) */
    bg_escalation_rec **q; /* ring of queued records (heap copies) */
    size_t q_head, q_n, q_cap;
    int listed;  /* in srv->esc_watchers */
    int sending; /* a send batch is in flight */
    int ended;   /* the final status went out (or the client left): send nothing more */
    grpc_status_code end_code; /* OK: none pending; else end with it at the next chance */
    const char *end_msg;
    struct esc_watch *next;
} esc_watch;

/* ------------------------------------------------------- wire records */

static Bayesguard__V1__EscalationState wire_state(int st)
{
    return (Bayesguard__V1__EscalationState)st; /* numbered alike (escalation.h) */
}

/* The wire form of r; strings borrowed from r. */
static void to_wire(const bg_escalation_rec *r, Bayesguard__V1__Escalation *e,
                    Bayesguard__V1__CautiousHypothesis *ch)
{
    bayesguard__v1__escalation__init(e);
    bayesguard__v1__cautious_hypothesis__init(ch);
    e->id = r->id;
    e->state = wire_state(r->state);
    e->policy = r->policy;
    e->revision = r->revision;
    e->tool = r->tool;
    e->arguments = r->arguments;
    e->harm_bound = r->harm_bound;
    e->threshold = r->threshold;
    if (r->has_cautious) {
        ch->id = r->cautious_id;
        ch->label = r->cautious_label;
        ch->posterior = r->cautious_posterior;
        ch->harm = r->cautious_harm;
        e->cautious = ch;
    }
    e->session = r->session;
    e->agent = r->agent;
    e->peer = r->peer;
    e->created_unix_ms = r->created_ms;
    e->expires_unix_ms = r->expires_ms;
    e->on_timeout = (char *)(r->on_timeout_allow ? "allow" : "deny");
    e->approver = r->approver;
    e->approver_peer = r->approver_peer;
    e->reason = r->reason;
    e->resolved_unix_ms = r->resolved_ms;
}

/* AwaitDecision's answer for r (pending or settled): reply on c. */
static void answer(bg__rpc_call *c, const bg_escalation_rec *r)
{
    Bayesguard__V1__Verdict v = BAYESGUARD__V1__VERDICT__INIT;
    Bayesguard__V1__Escalation e;
    Bayesguard__V1__CautiousHypothesis ch, ch2;
    to_wire(r, &e, &ch);
    int allows = bg_escalation_allows(r);
    v.decision = allows < 0   ? BAYESGUARD__V1__DECISION__ESCALATE
                 : allows > 0 ? BAYESGUARD__V1__DECISION__ALLOW
                              : BAYESGUARD__V1__DECISION__DENY;
    v.harm_bound = r->harm_bound;
    v.threshold = r->threshold;
    ch2 = ch;
    if (r->has_cautious)
        v.cautious = &ch2;
    v.policy = r->policy;
    v.revision = r->revision;
    v.decision_id = r->id;
    v.bound_kind = BAYESGUARD__V1__BOUND_KIND__BOUND_KIND_UNSPECIFIED;
    v.escalation = wire_state(r->state);
    v.escalation_record = &e;
    if (allows > 0 && r->receipt_len > 0) {
        v.receipt.data = r->receipt;
        v.receipt.len = r->receipt_len;
    }
    if (allows >= 0) {
        v.reason = r->reason && r->reason[0] ? r->reason : (char *)bg_esc_state_name(r->state);
    }
    v.eval_us = (bg_now_ns() - c->start_ns) / 1000u;
    bg__rpc_call_reply(c, &v.base);
}

/* ------------------------------------------------------------ watchers */

/* Under esc_mu: send the next queued record, or the pending end. */
static void watch_pump(bg_rpc_server *s, esc_watch *w)
{
    (void)s;
    if (w->sending || w->ended)
        return;
    bg__rpc_call *c = w->call;
    if (w->end_code != GRPC_STATUS_OK) {
        w->ended = 1;
        w->sending = 1;
        bg__rpc_call_stream_fail(c, w->end_code, "%s", w->end_msg);
        return;
    }
    if (w->q_n == 0)
        return;
    bg_escalation_rec *r = w->q[w->q_head];
    w->q_head = (w->q_head + 1) % w->q_cap;
    w->q_n--;
    Bayesguard__V1__EscalationEvent ev = BAYESGUARD__V1__ESCALATION_EVENT__INIT;
    Bayesguard__V1__Escalation e;
    Bayesguard__V1__CautiousHypothesis ch;
    to_wire(r, &e, &ch);
    ev.escalation = &e;
    w->sending = 1;
    int rc = bg__rpc_call_stream_send(c, &ev.base, 0); /* packs now: r may go */
    bg_escalation_rec_free(r);
    if (rc != BG_OK) {
        w->sending = 0;
        w->ended = 1;
        grpc_call_cancel(c->call, NULL);
    }
}

static void watch_drop_queue(esc_watch *w)
{
    while (w->q_n > 0) {
        bg_escalation_rec_free(w->q[w->q_head]);
        w->q_head = (w->q_head + 1) % w->q_cap;
        w->q_n--;
    }
}

static void watch_unlist(bg_rpc_server *s, esc_watch *w)
{
    if (!w->listed)
        return;
    for (esc_watch **pp = &s->esc_watchers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    w->listed = 0;
    s->n_esc_watchers--;
}

/* Under esc_mu: end w with code at the next chance. */
static void watch_end(bg_rpc_server *s, esc_watch *w, grpc_status_code code, const char *msg)
{
    watch_unlist(s, w);
    watch_drop_queue(w);
    if (w->end_code == GRPC_STATUS_OK) {
        w->end_code = code;
        w->end_msg = msg;
    }
    watch_pump(s, w);
}

/* Under esc_mu: queue a copy of r for w (or cut w off when it is full). */
static void watch_push(bg_rpc_server *s, esc_watch *w, const bg_escalation_rec *r)
{
    if (w->policy[0] && strcmp(w->policy, r->policy) != 0)
        return;
    if (w->q_n == w->q_cap) {
        watch_end(s, w, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "this watcher fell behind by more than its queue holds: read the stream "
                  "faster, then watch again (the pending ones come first)");
        return;
    }
    bg_escalation_rec *copy = bg_escalation_rec_copy(r);
    if (copy == NULL) {
        watch_end(s, w, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory queueing an event");
        return;
    }
    w->q[(w->q_head + w->q_n) % w->q_cap] = copy;
    w->q_n++;
    watch_pump(s, w);
}

typedef struct watch_start {
    bg_rpc_server *s;
    esc_watch *w;
    size_t n;     /* pending ones that pass the filter */
    int counting; /* first pass: count; second: queue */
    grpc_status_code code;
} watch_start;

static void watch_count(void *arg, const bg_escalation_rec *r)
{
    watch_start *ws = arg;
    if (!ws->w->policy[0] || strcmp(ws->w->policy, r->policy) == 0)
        ws->n++;
}

/* Under the table's lock: allocate the queue, queue the pending ones,
 * register (so the next event reaches this watcher). */
static void watch_fill(void *arg, const bg_escalation_rec *r)
{
    watch_start *ws = arg;
    if (ws->code != GRPC_STATUS_OK || (ws->w->policy[0] && strcmp(ws->w->policy, r->policy) != 0))
        return;
    bg_escalation_rec *copy = ws->w->q_n < ws->w->q_cap ? bg_escalation_rec_copy(r) : NULL;
    if (copy == NULL) {
        ws->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        return;
    }
    ws->w->q[ws->w->q_n++] = copy;
}

static void watch_register(void *arg)
{
    watch_start *ws = arg;
    bg_rpc_server *s = ws->s;
    pthread_mutex_lock(&s->esc_mu);
    if (ws->code == GRPC_STATUS_OK && atomic_load(&s->draining))
        ws->code = GRPC_STATUS_UNAVAILABLE;
    if (ws->code == GRPC_STATUS_OK && s->n_esc_watchers >= BG_ESC_MAX_WATCHERS)
        ws->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (ws->code == GRPC_STATUS_OK) {
        ws->w->listed = 1;
        ws->w->next = s->esc_watchers;
        s->esc_watchers = ws->w;
        s->n_esc_watchers++;
        watch_pump(s, ws->w);
    }
    pthread_mutex_unlock(&s->esc_mu);
}

static bg_escalation *table_or_fail(bg__rpc_call *c)
{
    bg_escalation *t = c->srv->opts.escalations;
    if (t == NULL)
        bg__rpc_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION,
                          "this server keeps no escalations (started without the table)");
    return t;
}

void bg__svc_esc_watch(bg__rpc_call *c)
{
    Bayesguard__V1__WatchEscalationsRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__watch_escalations_request__descriptor);
    if (req == NULL)
        return;
    bg_escalation *t = table_or_fail(c);
    if (t == NULL)
        return;
    bg_rpc_server *s = c->srv;
    esc_watch *w = bg__rpc_call_alloc(c, sizeof *w);
    if (w != NULL) {
        memset(w, 0, sizeof *w);
        w->call = c;
        w->end_code = GRPC_STATUS_OK;
        w->policy = bg__rpc_call_strdup(c, req->policy);
    }
    if (w == NULL || w->policy == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    watch_start ws = {.s = s, .w = w, .code = GRPC_STATUS_OK};
    bg_escalation_each(t, 0, watch_count, NULL, &ws);
    /* Records opened between the count and the fill go to the queue's
     * spare room (BG_ESC_WATCH_QUEUE); past it the watch is refused. */
    w->q_cap = ws.n + BG_ESC_WATCH_QUEUE;
    w->q = bg__rpc_call_alloc(c, w->q_cap * sizeof *w->q);
    if (w->q == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->user = w;
    if (bg__rpc_call_server_stream(c) != BG_OK) {
        bg__rpc_call_fail(c, GRPC_STATUS_INTERNAL, "cannot watch for the client closing");
        return;
    }
    /* The queue fill and the registration in one critical section. */
    bg_escalation_each(t, 0, watch_fill, watch_register, &ws);
    if (ws.code != GRPC_STATUS_OK) {
        pthread_mutex_lock(&s->esc_mu);
        watch_drop_queue(w);
        watch_end(s, w, ws.code,
                  ws.code == GRPC_STATUS_UNAVAILABLE
                      ? "bayesguardd is draining: watch another instance or after it restarts"
                      : "too many escalation watchers (at most " BG_STR(
                            BG_ESC_MAX_WATCHERS) ") "
                                                 "or out of memory: close one");
        pthread_mutex_unlock(&s->esc_mu);
    }
    bg__rpc_call_release(c); /* the handler's; the batches hold theirs */
}

void bg__svc_esc_watch_sent(bg__rpc_call *c, int ok)
{
    bg_rpc_server *s = c->srv;
    esc_watch *w = c->user;
    pthread_mutex_lock(&s->esc_mu);
    w->sending = 0;
    if (!ok) {
        watch_unlist(s, w);
        watch_drop_queue(w);
        w->ended = 1;
    } else {
        watch_pump(s, w);
    }
    pthread_mutex_unlock(&s->esc_mu);
    bg__rpc_call_release(c);
}

void bg__svc_esc_watch_closed(bg__rpc_call *c, int ok)
{
    (void)ok;
    bg_rpc_server *s = c->srv;
    esc_watch *w = c->user;
    pthread_mutex_lock(&s->esc_mu);
    watch_unlist(s, w);
    watch_drop_queue(w);
    w->ended = 1; /* the client is gone (or the status went out) */
    pthread_mutex_unlock(&s->esc_mu);
    bg__rpc_call_release(c);
}

void bg__svc_esc_watch_end_all(bg_rpc_server *s)
{
    pthread_mutex_lock(&s->esc_mu);
    while (s->esc_watchers != NULL)
        watch_end(s, s->esc_watchers, GRPC_STATUS_UNAVAILABLE,
                  "bayesguardd is draining (shutting down): watch again after it restarts");
    pthread_mutex_unlock(&s->esc_mu);
}

/* ---------------------------------------------------------------- List */

typedef struct list_ctx {
    bg__rpc_call *c;
    const char *policy;
    Bayesguard__V1__Escalation **items;
    size_t n, cap;
    int oom;
} list_ctx;

/* Under the table's lock: copy r's wire form into the call arena. */
static void list_one(void *arg, const bg_escalation_rec *r)
{
    list_ctx *l = arg;
    if (l->oom || (l->policy[0] && strcmp(l->policy, r->policy) != 0))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        Bayesguard__V1__Escalation **items = bg__rpc_call_alloc(l->c, cap * sizeof *items);
        if (items == NULL) {
            l->oom = 1;
            return;
        }
        if (l->n)
            memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    Bayesguard__V1__Escalation *e = bg__rpc_call_alloc(l->c, sizeof *e);
    Bayesguard__V1__CautiousHypothesis *ch = bg__rpc_call_alloc(l->c, sizeof *ch);
    if (e == NULL || ch == NULL) {
        l->oom = 1;
        return;
    }
    to_wire(r, e, ch);
    /* The strings into the arena (the record may change after the lock). */
    char **strs[] = {&e->id,        &e->policy,        &e->revision, &e->tool,
                     &e->arguments, &e->session,       &e->agent,    &e->peer,
                     &e->approver,  &e->approver_peer, &e->reason,   &e->on_timeout};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0] && !l->oom; i++)
        if ((*strs[i] = bg__rpc_call_strdup(l->c, *strs[i] ? *strs[i] : "")) == NULL)
            l->oom = 1;
    if (e->cautious != NULL && !l->oom &&
        (ch->label = bg__rpc_call_strdup(l->c, ch->label ? ch->label : "")) == NULL)
        l->oom = 1;
    l->items[l->n++] = e;
}

void bg__svc_list_escalations(bg__rpc_call *c)
{
    Bayesguard__V1__ListEscalationsRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__list_escalations_request__descriptor);
    if (req == NULL)
        return;
    bg_escalation *t = table_or_fail(c);
    if (t == NULL)
        return;
    list_ctx l = {.c = c, .policy = req->policy};
    bg_escalation_each(t, req->include_settled, list_one, NULL, &l);
    if (l.oom) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "the list is larger than this call may hold (%zu escalations so "
                          "far): filter by policy, or leave include_settled off",
                          l.n);
        return;
    }
    Bayesguard__V1__ListEscalationsResponse out = BAYESGUARD__V1__LIST_ESCALATIONS_RESPONSE__INIT;
    out.escalations = l.items;
    out.n_escalations = l.n;
    bg__rpc_call_reply(c, &out.base);
}

/* ------------------------------------------------------------- Resolve */

void bg__svc_resolve_escalation(bg__rpc_call *c)
{
    Bayesguard__V1__ResolveEscalationRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__resolve_escalation_request__descriptor);
    if (req == NULL)
        return;
    bg_escalation *t = table_or_fail(c);
    if (t == NULL)
        return;
    const char *what = "ResolveEscalationRequest";
    if (req->id[0] == '\0') {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "%s.id is empty: give the escalation's id (the ESCALATE verdict's "
                          "decision_id)",
                          what);
        return;
    }
    if (req->resolution != BAYESGUARD__V1__RESOLUTION__APPROVE &&
        req->resolution != BAYESGUARD__V1__RESOLUTION__REJECT) {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "%s.resolution is %d: give APPROVE or REJECT", what,
                          (int)req->resolution);
        return;
    }
    if (req->approver[0] == '\0') {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "%s.approver is empty: say who decides (a person's name; it is "
                          "recorded beside the connection's identity)",
                          what);
        return;
    }
    int approve = req->resolution == BAYESGUARD__V1__RESOLUTION__APPROVE;
    if (!approve && req->reason[0] == '\0') {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "%s.reason is empty: a REJECT needs a reason (the agent gets it "
                          "with the DENY)",
                          what);
        return;
    }
    bg_err err;
    bg_err_clear(&err);
    bg_escalation_rec *r = NULL;
    int rc = bg_escalation_resolve(t, req->id, approve, req->approver, c->peer.identity,
                                   req->reason, bg_receipt_now_ms(), &r, &err);
    if (rc != BG_OK) {
        grpc_status_code code =
            rc == BG_EEXIST ? GRPC_STATUS_FAILED_PRECONDITION : bg__rpc_code_of(rc);
        bg__rpc_call_fail(c, code, "%s", err.msg);
        return;
    }
    if (r == NULL) { /* settled, but the copy ran out of memory */
        Bayesguard__V1__Escalation e = BAYESGUARD__V1__ESCALATION__INIT;
        e.id = req->id;
        e.state = approve ? BAYESGUARD__V1__ESCALATION_STATE__APPROVED
                          : BAYESGUARD__V1__ESCALATION_STATE__REJECTED;
        bg__rpc_call_reply(c, &e.base);
        return;
    }
    Bayesguard__V1__Escalation e;
    Bayesguard__V1__CautiousHypothesis ch;
    to_wire(r, &e, &ch);
    bg__rpc_call_reply(c, &e.base);
    bg_escalation_rec_free(r);
}

/* --------------------------------------------------------------- Await */

static void await_unlink(bg_rpc_server *s, esc_await *a)
{
    if (!a->linked)
        return;
    for (esc_await **pp = &s->awaits; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    a->linked = 0;
    s->n_awaits--;
}

/* Under esc_mu: the parked awaits of escalation id. */
static size_t parked_on(const bg_rpc_server *s, const char *id)
{
    size_t n = 0;
    for (const esc_await *a = s->awaits; a; a = a->next)
        n += strcmp(a->id, id) == 0;
    return n;
}

typedef struct await_ctx {
    bg__rpc_call *c;
    esc_await *a;
    grpc_status_code code;
    char msg[256];
} await_ctx;

/* Under the table's lock: answer now, or park. */
static int await_find(void *arg, const bg_escalation_rec *r)
{
    await_ctx *x = arg;
    bg__rpc_call *c = x->c;
    bg_rpc_server *s = c->srv;
    if (r == NULL || strcmp(r->peer ? r->peer : "", c->peer.identity) != 0) {
        x->code = GRPC_STATUS_NOT_FOUND;
        snprintf(x->msg, sizeof x->msg,
                 "no escalation %s of yours: only the caller whose Evaluate opened it may "
                 "await it (settled ones are kept only for a while)",
                 x->a->id);
        return 0;
    }
    if (r->state != BG_ESC_PENDING) {
        answer(c, r);
        return 0;
    }
    pthread_mutex_lock(&s->esc_mu);
    if (atomic_load(&s->draining)) {
        x->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(x->msg, sizeof x->msg,
                 "bayesguardd is draining: await again after it restarts (the escalation "
                 "survives with --data-dir)");
    } else if (parked_on(s, x->a->id) >= BG_ESC_AWAITS_PER_ID) {
        x->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(x->msg, sizeof x->msg,
                 "%d AwaitDecision calls wait on escalation %s already, the most one "
                 "escalation parks: wait for one of them to answer",
                 BG_ESC_AWAITS_PER_ID, x->a->id);
    } else if (bg__rpc_call_park(c) != BG_OK) {
        x->code = GRPC_STATUS_INTERNAL;
        snprintf(x->msg, sizeof x->msg, "cannot park the call");
    } else {
        x->a->linked = 1;
        x->a->next = s->awaits;
        s->awaits = x->a;
        s->n_awaits++;
    }
    pthread_mutex_unlock(&s->esc_mu);
    return 0;
}

void bg__svc_await(bg__rpc_call *c)
{
    Bayesguard__V1__AwaitDecisionRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__await_decision_request__descriptor);
    if (req == NULL)
        return;
    bg_escalation *t = table_or_fail(c);
    if (t == NULL)
        return;
    size_t idn = strlen(req->decision_id);
    if (idn == 0 || idn >= sizeof(((esc_await *)0)->id)) {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "AwaitDecisionRequest.decision_id is %s: give the ESCALATE "
                          "verdict's decision_id",
                          idn ? "too long" : "empty");
        return;
    }
    esc_await *a = bg__rpc_call_alloc(c, sizeof *a);
    if (a == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    memset(a, 0, sizeof *a);
    a->call = c;
    memcpy(a->id, req->decision_id, idn + 1);
    uint32_t ms = req->timeout_ms == 0 || req->timeout_ms > BG_ESC_MAX_WAIT_MS ? BG_ESC_MAX_WAIT_MS
                                                                               : req->timeout_ms;
    a->deadline_ns = c->start_ns + (uint64_t)ms * 1000000u;
    c->user = a;
    await_ctx x = {.c = c, .a = a, .code = GRPC_STATUS_OK};
    bg_escalation_with(t, a->id, await_find, &x);
    /* answered or parked: c is no longer ours to touch, unless refused
     * (then ACTIVE, or DEFERRED when only the park failed) */
    if (x.code != GRPC_STATUS_OK)
        bg__rpc_call_fail(c, x.code, "%s", x.msg);
}

void bg__svc_await_closed(bg__rpc_call *c, int ok)
{
    (void)ok;
    bg_rpc_server *s = c->srv;
    esc_await *a = c->user;
    pthread_mutex_lock(&s->esc_mu);
    int mine = a->linked;
    await_unlink(s, a);
    pthread_mutex_unlock(&s->esc_mu);
    if (mine) /* the client left before an answer: finish the call (nobody reads it) */
        bg__rpc_call_fail(c, GRPC_STATUS_CANCELLED, "the client went away");
    bg__rpc_call_release(c); /* the close batch's */
}

/* Unlink (under esc_mu) the awaits matching `pick`, into a list. */
static esc_await *await_take(bg_rpc_server *s, int (*pick)(const esc_await *, const void *),
                             const void *arg)
{
    esc_await *out = NULL;
    for (esc_await **pp = &s->awaits; *pp;) {
        esc_await *a = *pp;
        if (!pick(a, arg)) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        a->linked = 0;
        s->n_awaits--;
        a->next = out;
        out = a;
    }
    return out;
}

static int pick_all(const esc_await *a, const void *arg)
{
    (void)a;
    (void)arg;
    return 1;
}

static int pick_id(const esc_await *a, const void *id)
{
    return strcmp(a->id, id) == 0;
}

static int pick_due(const esc_await *a, const void *now)
{
    return a->deadline_ns <= *(const uint64_t *)now;
}

void bg__svc_await_end_all(bg_rpc_server *s)
{
    pthread_mutex_lock(&s->esc_mu);
    esc_await *list = await_take(s, pick_all, NULL);
    pthread_mutex_unlock(&s->esc_mu);
    while (list != NULL) {
        esc_await *next = list->next;
        bg__rpc_call_fail(list->call, GRPC_STATUS_UNAVAILABLE,
                          "bayesguardd is draining (shutting down): await again after it "
                          "restarts (the escalation survives with --data-dir)");
        list = next;
    }
}

/* Under the table's lock (the tick): a timed-out await gets the record as
 * it is now. */
static int await_timed_out(void *arg, const bg_escalation_rec *r)
{
    esc_await *a = arg;
    if (r == NULL)
        bg__rpc_call_fail(a->call, GRPC_STATUS_NOT_FOUND,
                          "escalation %s is no longer held: it was settled long ago", a->id);
    else
        answer(a->call, r);
    return 0;
}

/* ------------------------------------------------- events, tick, start */

/* The resolution line of the decision log for a settled r. */
static void log_resolution(bg_rpc_server *s, const bg_escalation_rec *r)
{
    if (s->opts.decisions == NULL)
        return;
    bg_decision_record lr;
    memset(&lr, 0, sizeof lr);
    lr.decision_id = r->id;
    lr.decision = bg_escalation_allows(r) > 0 ? "ALLOW" : "DENY";
    lr.resolution = 1;
    lr.escalation = bg_esc_state_name(r->state);
    lr.approver = r->approver;
    lr.approver_peer = r->approver_peer;
    lr.reason = r->reason;
    double waited = (double)r->resolved_ms - (double)r->created_ms; /* a replayed record's */
    lr.waited_ms = waited > 0 ? (uint64_t)(waited < 1e18 ? waited : 1e18) : 0;
    lr.tool = r->tool;
    lr.agent = r->agent;
    lr.peer = r->peer;
    lr.resolved = 1;
    lr.policy = r->policy;
    lr.revision = r->revision;
    lr.session_key = r->session;
    lr.harm_bound = r->harm_bound;
    lr.threshold = r->threshold;
    bg_decision_log_append(s->opts.decisions, &lr);
}

/* The table's event (under its lock): wake the awaits, feed the watchers,
 * log a settlement. */
static void on_event(void *arg, bg_esc_event ev, const bg_escalation_rec *r)
{
    bg_rpc_server *s = arg;
    if (ev == BG_ESC_EVENT_SETTLED) {
        log_resolution(s, r);
        BG_INFO("escalation", "%s %s (policy %s, tool %s)%s%s", r->id, bg_esc_state_name(r->state),
                r->policy, r->tool, r->approver[0] ? " by " : "", r->approver);
    }
    pthread_mutex_lock(&s->esc_mu);
    esc_await *list = ev == BG_ESC_EVENT_SETTLED ? await_take(s, pick_id, r->id) : NULL;
    for (esc_watch *w = s->esc_watchers, *next; w != NULL; w = next) {
        next = w->next; /* watch_push may unlist w */
        watch_push(s, w, r);
    }
    pthread_mutex_unlock(&s->esc_mu);
    while (list != NULL) {
        esc_await *next = list->next;
        answer(list->call, r);
        list = next;
    }
}

static void tick(uv_timer_t *timer)
{
    bg_rpc_server *s = timer->data;
    bg_escalation *t = s->opts.escalations;
    bg_escalation_expire(t, bg_receipt_now_ms());
    uint64_t now = bg_now_ns();
    pthread_mutex_lock(&s->esc_mu);
    esc_await *list = await_take(s, pick_due, &now);
    pthread_mutex_unlock(&s->esc_mu);
    while (list != NULL) {
        esc_await *next = list->next;
        bg_escalation_with(t, list->id, await_timed_out, list);
        list = next;
    }
}

int bg__svc_escalation_start(bg_rpc_server *s, bg_err *err)
{
    if (s->opts.escalations == NULL)
        return BG_OK;
    s->esc_tick = calloc(1, sizeof *s->esc_tick);
    if (s->esc_tick == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    uv_timer_init(bg_loop_uv(s->opts.loop), s->esc_tick);
    s->esc_tick->data = s;
    uv_timer_start(s->esc_tick, tick, BG_ESC_TICK_MS, BG_ESC_TICK_MS);
    bg_escalation_listen(s->opts.escalations, on_event, s);
    s->esc_listening = 1;
    return BG_OK;
}

static void tick_closed(uv_handle_t *h)
{
    free(h);
}

void bg__svc_escalation_stop(bg_rpc_server *s)
{
    if (s->esc_listening)
        bg_escalation_listen(s->opts.escalations, NULL, NULL);
    s->esc_listening = 0;
    if (s->esc_tick != NULL) {
        uv_timer_stop(s->esc_tick);
        uv_close((uv_handle_t *)s->esc_tick, tick_closed);
        s->esc_tick = NULL;
    }
}
