/*
 * rpc_svc_health.c — grpc.health.v1.Health (Check, Watch), the
 * bayesguard.v1.Bench/Ping transport floor, and the UNIMPLEMENTED answer
 * for unknown methods.
 *
 * Health: service "" (the whole server) and "bayesguard.v1.Guard" are
 * SERVING until the drain starts, then NOT_SERVING. Check on any other
 * name is NOT_FOUND (the health protocol's rule); Watch on another name
 * streams SERVICE_UNKNOWN and stays open. A Watch stream is kept in
 * srv->watchers; at drain every one gets NOT_SERVING and status OK (the
 * Watch row's on_drain hook), so the drain never waits on a watcher. Only
 * one send batch is ever in flight per stream (watch_sending, under
 * srv->watch_mu); the stream's completions arrive through the row's on_send
 * (a send finished) and on_recv (the client closed) hooks.
 *
 * Ping: delay_ms = 0 is answered at once on the CQ thread (the empty RPC);
 * delay_ms > 0 defers the call to the loop, which answers it from a timer;
 * at the drain deadline the Ping row's on_deadline hook answers them all.
 *
 * Every entry point here is a hook of the method table (rpc_priv.h),
 * reached only through it; this file calls down into rpc_call.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bayesguard/v1/bench.pb-c.h"
#include "common/bg_log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc_priv.h"

#define BG_PING_MAX_DELAY_MS 10000u

static const char *const known_services[] = {"", "bayesguard.v1.Guard", "bayesguard.v1.Bench",
                                             "grpc.health.v1.Health"};

static Grpc__Health__V1__HealthCheckResponse__ServingStatus status_of(bg_rpc_server *s,
                                                                      const char *service)
{
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++)
        if (strcmp(service, known_services[i]) == 0)
            return atomic_load(&s->draining)
                       ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                       : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

static Grpc__Health__V1__HealthCheckRequest *decode_health(bg__rpc_call *c)
{
    return bg__rpc_call_decode_or_fail(c, &grpc__health__v1__health_check_request__descriptor);
}

void bg__svc_health_check(bg__rpc_call *c)
{
    Grpc__Health__V1__HealthCheckRequest *req = decode_health(c);
    if (req == NULL)
        return;
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = status_of(c->srv, req->service);
    if (out.status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
        bg__rpc_call_fail(c, GRPC_STATUS_NOT_FOUND,
                          "unknown service '%s': ask for \"\" (the whole server) or "
                          "\"bayesguard.v1.Guard\"",
                          req->service);
        return;
    }
    bg__rpc_call_reply(c, &out.base);
}

void bg__svc_health_watch(bg__rpc_call *c)
{
    Grpc__Health__V1__HealthCheckRequest *req = decode_health(c);
    if (req == NULL)
        return;
    bg_rpc_server *s = c->srv;
    c->user = bg__rpc_call_strdup(c, req->service);
    if (c->user == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (bg__rpc_call_server_stream(c) != BG_OK) {
        bg__rpc_call_fail(c, GRPC_STATUS_INTERNAL, "cannot watch for the client closing");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    pthread_mutex_lock(&s->watch_mu);
    /* Draining already: send the final answer right away. */
    int final = atomic_load(&s->draining) != 0;
    out.status = status_of(s, c->user);
    c->watch_sending = 1;
    c->watch_final = final;
    if (!final) {
        c->watch_listed = 1;
        c->watch_next = s->watchers;
        s->watchers = c;
    }
    /* The handler's reference is dropped below; the batches hold theirs. */
    if (bg__rpc_call_stream_send(c, &out.base, final) != BG_OK) {
        c->watch_sending = 0;
        BG_ERROR("rpc", "Health/Watch: cannot send the first status");
        grpc_call_cancel(c->call, NULL);
    }
    pthread_mutex_unlock(&s->watch_mu);
    bg__rpc_call_release(c);
}

static void unlist(bg_rpc_server *s, bg__rpc_call *c)
{
    if (!c->watch_listed)
        return;
    for (bg__rpc_call **pp = &s->watchers; *pp; pp = &(*pp)->watch_next) {
        if (*pp == c) {
            *pp = c->watch_next;
            break;
        }
    }
    c->watch_listed = 0;
}

/* Under watch_mu: end the stream now (NOT_SERVING + OK) if no send is in
 * flight; otherwise watch_sent does it when the current send completes. */
static void send_final_locked(bg_rpc_server *s, bg__rpc_call *c)
{
    c->watch_final = 1;
    unlist(s, c);
    if (c->watch_sending || atomic_load(&c->state) == BG_CALL_FINISHING)
        return;
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = status_of(s, c->user);
    c->watch_sending = 1;
    if (bg__rpc_call_stream_send(c, &out.base, 1) != BG_OK) {
        c->watch_sending = 0;
        grpc_call_cancel(c->call, NULL);
    }
}

void bg__svc_health_watch_sent(bg__rpc_call *c, int ok)
{
    bg_rpc_server *s = c->srv;
    pthread_mutex_lock(&s->watch_mu);
    c->watch_sending = 0;
    if (!ok) {
        unlist(s, c);
    } else if (c->watch_final && atomic_load(&c->state) != BG_CALL_FINISHING) {
        send_final_locked(s, c);
    }
    pthread_mutex_unlock(&s->watch_mu);
    bg__rpc_call_release(c);
}

void bg__svc_health_watch_closed(bg__rpc_call *c, int ok)
{
    (void)ok;
    bg_rpc_server *s = c->srv;
    pthread_mutex_lock(&s->watch_mu);
    unlist(s, c);
    pthread_mutex_unlock(&s->watch_mu);
    bg__rpc_call_release(c);
}

void bg__svc_health_end_watches(bg_rpc_server *s)
{
    pthread_mutex_lock(&s->watch_mu);
    while (s->watchers != NULL)
        send_final_locked(s, s->watchers);
    pthread_mutex_unlock(&s->watch_mu);
}

/* ---------------------------------------------------------------- Ping */

/* Linked in srv->pings (loop thread only) while its timer runs. */
typedef struct ping_job {
    bg__rpc_call *call;
    unsigned delay_ms;
    uv_timer_t timer;
    struct ping_job *next, **prevp;
} ping_job;

static void ping_reply(bg__rpc_call *c)
{
    Bayesguard__V1__PingRequest *req = c->user;
    Bayesguard__V1__PingResponse out = BAYESGUARD__V1__PING_RESPONSE__INIT;
    out.payload = req->payload;
    bg__rpc_call_reply(c, &out.base);
}

static void ping_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ping_fire(uv_timer_t *t)
{
    ping_job *j = t->data;
    BG_CALL_ASSERT(j->call, BG_CALL_BIT(BG_CALL_DEFERRED));
    *j->prevp = j->next;
    if (j->next)
        j->next->prevp = j->prevp;
    uv_timer_stop(t);
    ping_reply(j->call);
    uv_close((uv_handle_t *)t, ping_closed);
}

static void ping_start_timer(void *arg)
{
    ping_job *j = arg;
    bg_rpc_server *s = j->call->srv;
    uv_timer_init(bg_loop_uv(s->opts.loop), &j->timer);
    j->timer.data = j;
    j->next = s->pings;
    if (s->pings)
        s->pings->prevp = &j->next;
    j->prevp = &s->pings;
    s->pings = j;
    uv_timer_start(&j->timer, ping_fire, j->delay_ms, 0);
}

void bg__svc_ping_flush(bg_rpc_server *s)
{
    while (s->pings != NULL)
        ping_fire(&s->pings->timer);
}

void bg__svc_ping(bg__rpc_call *c)
{
    Bayesguard__V1__PingRequest *req =
        bg__rpc_call_decode_or_fail(c, &bayesguard__v1__ping_request__descriptor);
    if (req == NULL)
        return;
    c->user = req;
    if (req->delay_ms == 0) {
        ping_reply(c);
        return;
    }
    if (req->delay_ms > BG_PING_MAX_DELAY_MS) {
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "PingRequest.delay_ms is %u: at most %u",
                          req->delay_ms, BG_PING_MAX_DELAY_MS);
        return;
    }
    ping_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->call = c;
    j->delay_ms = req->delay_ms;
    bg__rpc_call_defer(c);
    if (bg_loop_post(c->srv->opts.loop, ping_start_timer, j) != BG_OK) {
        free(j);
        bg__rpc_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the daemon is shutting down");
    }
}

/* ------------------------------------------------------------- unknown */

void bg__svc_unknown(bg__rpc_call *c)
{
    bg__rpc_call_fail(c, GRPC_STATUS_UNIMPLEMENTED,
                      "method %.*s is not served by bayesguardd: it serves "
                      "/bayesguard.v1.Guard/{Evaluate,Observe,ObserveStream,Status,Reload,"
                      "ListEscalations,WatchEscalations,ResolveEscalation,AwaitDecision}, "
                      "/bayesguard.v1.Bench/Ping and /grpc.health.v1.Health/{Check,Watch}",
                      (int)GRPC_SLICE_LENGTH(c->details.method),
                      (const char *)GRPC_SLICE_START_PTR(c->details.method));
}
