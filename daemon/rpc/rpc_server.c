/*
 * rpc_server.c — the gRPC C core server: listeners, completion-queue
 * threads, pre-requested calls, drain and destroy.
 *
 * Shape: one grpc_server per --listen (rpc_listen.c: so a call knows the
 * listener, and so the roles, it came in on), N completion queues shared by
 * all of them, one thread each (grpc_completion_queue_next in a loop).
 * Every CQ keeps `prerequest` calls requested for every method of the
 * method table on every listener, bound to itself, so a call's whole life (arrival,
 * handler, reply, recycle) happens on one thread without locks; a request
 * is re-posted as soon as one arrives (rpc_call.c). Unregistered paths are
 * requested too (grpc_server_request_call) and answered UNIMPLEMENTED, so
 * they never hang. The services are reached only through the table's
 * on_drain and on_deadline hooks; this file names no service.
 *
 * Drain states (loop thread; bg_rpc_server_drain, then drain_poll every
 * BG_DRAIN_POLL_MS):
 *
 *   SERVING --bg_rpc_server_drain--> LAME DUCK: draining = 1, on_drain hooks
 *      |                             (health NOT_SERVING, watches ended), new
 *      | destroy                     calls UNAVAILABLE, requests still posted
 *      |                                 | drain_poll: grace passed and no
 *      |                                 | admitted call left, or deadline
 *      v                                 v
 *   SHUTTING DOWN (begin_shutdown): shut_started = 1, on_drain hooks again,
 *      shutting_down = 1 (no request posted), listeners closed, GOAWAY
 *      | on_shutdown (CQ thread): gRPC ended every call it knew of
 *      v
 *   SHUT: shut_done = 1 --drain_poll: in_flight == 0--> DONE: done(arg) ran
 *
 *   At the deadline (from LAME DUCK or SHUTTING DOWN), once: every call is
 *   cancelled and the on_deadline hooks answer what waits on the loop
 *   (delayed Pings): drain_cancelled = 1. It is also set, cancelling the
 *   idle connections, when SHUTTING DOWN has no call left.
 *
 * Invariants (BG_ASSERT where they could break):
 *   1. No request is posted once shutting_down is set (set before
 *      grpc_server_shutdown_and_notify), so the flushed requests are the last.
 *   2. Each listener's shutdown tag fires once, on a CQ thread, after
 *      begin_shutdown and after every call of its server ended; shut_done
 *      is set by the last of them (shut_pending counts down), and only then
 *      may destroy shut the queues down and join the threads.
 *   3. bound[] is written during start only.
 *   4. drain runs once, before any shutdown began; drain_now only after it;
 *      done(arg) runs once, in SHUT with no call in flight.
 *
 * Threads: start/drain/destroy on the loop thread; request posting on CQ
 * threads (and start before they run). The metrics collector
 * (rpc_server_metrics.c) is registered last in start and removed first in
 * destroy, so a scrape never sees a half-built or freed server.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/bg_log.h"
#include "common/bg_time.h"
#include "rpc/rpc_priv.h"

static void *cq_thread(void *arg)
{
    bg__rpc_cq *cq = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(cq->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        bg__rpc_tag *t = ev.tag;
        t->cb(t, ev.success);
    }
    return NULL;
}

/* A listener's server finished its shutdown; the last one sets shut_done. */
static void on_shutdown(bg__rpc_tag *t, int ok)
{
    (void)ok;
    bg__rpc_listener *l =
        (bg__rpc_listener *)((char *)t - offsetof(bg__rpc_listener, shutdown_tag));
    bg_rpc_server *s = l->srv;
    pthread_mutex_lock(&s->shut_mu);
    BG_ASSERT(s->shut_started && !s->shut_done && s->shut_pending > 0,
              "rpc: a shutdown tag fired with shut_started %d, shut_done %d, %u pending "
              "(invariant 2)",
              s->shut_started, s->shut_done, s->shut_pending);
    int last = --s->shut_pending == 0;
    if (last) {
        s->shut_done = 1;
        pthread_cond_broadcast(&s->shut_cv);
    }
    pthread_mutex_unlock(&s->shut_mu);
    if (last)
        BG_INFO("rpc", "listeners closed; %llu calls still held",
                (unsigned long long)bg__rpc_in_flight(s));
}

/* Every listener's server (that exists). */
static void cancel_all_calls(bg_rpc_server *s)
{
    for (size_t i = 0; i < s->n_ls; i++)
        if (s->ls[i].server != NULL)
            grpc_server_cancel_all_calls(s->ls[i].server);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

int bg_rpc_server_start(const bg_rpc_opts *opts, bg_rpc_server **out, bg_err *err)
{
    *out = NULL;
    if (opts->n_listen == 0)
        return bg_err_set(err, BG_EINVAL, "rpc: no --listen address given");
    bg_rpc_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    s->opts = *opts;
    s->n_cq = opts->cq_threads ? opts->cq_threads : online_cpus();
    s->prerequest = 4;
    s->max_message = opts->max_message_bytes ? opts->max_message_bytes : BG_RPC_DEFAULT_MAX_MESSAGE;
    s->started_ns = bg_now_ns();
    pthread_mutex_init(&s->watch_mu, NULL);
    pthread_mutex_init(&s->esc_mu, NULL);
    pthread_mutex_init(&s->shut_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->shut_cv, NULL);
    int urnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (urnd < 0 || read(urnd, &s->boot_id, sizeof(s->boot_id)) != (ssize_t)sizeof(s->boot_id))
        s->boot_id = bg_now_ns() ^ ((uint64_t)getpid() << 32);
    if (urnd >= 0)
        close(urnd);
    s->bound = calloc(opts->n_listen, sizeof(char *));
    s->cqs = calloc(s->n_cq, sizeof(*s->cqs));
    if (s->bound == NULL || s->cqs == NULL) {
        free(s->bound);
        free(s->cqs);
        free(s);
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    }

    grpc_init();
    s->grpc_inited = 1;
    for (unsigned i = 0; i < s->n_cq; i++) {
        s->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
        s->cqs[i].index = (int)i;
        s->cqs[i].srv = s;
        pthread_mutex_init(&s->cqs[i].mu, NULL);
    }
    grpc_arg args[3];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    /* gRPC's own cap is twice ours: requests between the two get our
     * message saying what to fix (on_request); only absurd ones get gRPC's
     * terse one. Memory stays bounded either way. */
    size_t cap = s->max_message > INT32_MAX / 2 ? INT32_MAX : 2 * s->max_message;
    args[0].value.integer = (int)cap;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_ALLOW_REUSEPORT; /* a second daemon must fail, not share */
    args[1].value.integer = 0;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
    args[2].value.integer = 1024;
    grpc_channel_args cargs = {3, args};
    /* One grpc_server per listener, every CQ registered with each. */
    int rc = bg__rpc_listen_open(s, &cargs, err);
    if (rc != BG_OK) {
        bg_rpc_server_destroy(s);
        return rc;
    }
    for (size_t l = 0; l < s->n_ls; l++)
        grpc_server_start(s->ls[l].server);
    s->started = 1;
    for (size_t l = 0; l < s->n_ls; l++)
        for (unsigned i = 0; i < s->n_cq; i++)
            for (int m = 0; m < BG_M__COUNT; m++)
                for (unsigned k = 0; k < s->prerequest; k++)
                    bg__rpc_call_request(s, &s->cqs[i], (int)l, m);
    for (unsigned i = 0; i < s->n_cq; i++) {
        if (pthread_create(&s->cqs[i].thread, NULL, cq_thread, &s->cqs[i]) != 0) {
            bg_rpc_server_destroy(s);
            return bg_err_set(err, BG_EINTERNAL, "rpc: cannot start completion-queue thread %u", i);
        }
        s->n_threads = i + 1;
    }
    if ((rc = bg__rpc_listen_accept_start(s, err)) != BG_OK ||
        (rc = bg__rpc_metrics_start(s, err)) != BG_OK ||
        (rc = bg__svc_escalation_start(s, err)) != BG_OK) {
        bg_rpc_server_destroy(s);
        return rc;
    }
    for (size_t i = 0; i < s->n_bound; i++)
        BG_INFO("rpc",
                "serving on %s, roles %s (%u completion-queue threads, max message %zu bytes)",
                s->bound[i], s->ls[i].roles_text, s->n_cq, s->max_message);
    *out = s;
    return BG_OK;
}

size_t bg_rpc_server_bound_count(const bg_rpc_server *s)
{
    return s->n_bound;
}

const char *bg_rpc_server_bound(const bg_rpc_server *s, size_t i)
{
    return i < s->n_bound ? s->bound[i] : NULL;
}

uint64_t bg_rpc_server_in_flight(const bg_rpc_server *s)
{
    return bg__rpc_in_flight(s);
}

/* Every method's on_drain hook, or its on_deadline hook (loop thread). */
static void run_hooks(bg_rpc_server *s, int deadline)
{
    for (int m = 0; m < BG_M__COUNT; m++) {
        void (*hook)(bg_rpc_server *) =
            deadline ? bg__rpc_methods[m].on_deadline : bg__rpc_methods[m].on_drain;
        if (hook != NULL)
            hook(s);
    }
}

static void begin_shutdown(bg_rpc_server *s)
{
    pthread_mutex_lock(&s->shut_mu);
    int started = s->shut_started;
    s->shut_started = 1;
    pthread_mutex_unlock(&s->shut_mu);
    if (started)
        return;
    atomic_store(&s->draining, 1);
    run_hooks(s, 0);
    atomic_store(&s->shutting_down, 1);
    bg__rpc_listen_stop_accepting(s); /* no connection is handed to a server shutting down */
    unsigned n = 0;
    for (size_t i = 0; i < s->n_ls; i++)
        n += s->ls[i].server != NULL;
    pthread_mutex_lock(&s->shut_mu);
    s->shut_pending = n; /* before any tag can fire */
    if (n == 0)
        s->shut_done = 1;
    pthread_mutex_unlock(&s->shut_mu);
    for (size_t i = 0; i < s->n_ls; i++) {
        s->ls[i].shutdown_tag.cb = on_shutdown;
        if (s->ls[i].server != NULL)
            grpc_server_shutdown_and_notify(s->ls[i].server, s->cqs[0].cq, &s->ls[i].shutdown_tag);
    }
}

/* The drain poll (see the drain states at the top). */
#define BG_DRAIN_POLL_MS 5

static void drain_poll(uv_timer_t *t)
{
    bg_rpc_server *s = t->data;
    uint64_t ms = (bg_now_ns() - s->drain_start_ns) / 1000000u;
    int past_deadline = ms >= s->drain_timeout_ms;
    if (!s->shut_started &&
        ((ms >= s->drain_grace_ms && atomic_load(&s->working) == 0) || past_deadline)) {
        BG_INFO("rpc", "drain: closing listeners after %llu ms (%llu calls in flight)",
                (unsigned long long)ms, (unsigned long long)bg__rpc_in_flight(s));
        begin_shutdown(s);
    }
    if (past_deadline && !s->drain_cancelled) {
        s->drain_cancelled = 1;
        BG_WARN("rpc",
                "drain deadline (%u ms) passed with %llu calls in flight: cancelling "
                "them",
                s->drain_timeout_ms, (unsigned long long)bg__rpc_in_flight(s));
        cancel_all_calls(s);
        run_hooks(s, 1);
    }
    pthread_mutex_lock(&s->shut_mu);
    int shut = s->shut_done;
    pthread_mutex_unlock(&s->shut_mu);
    if (s->shut_started && !shut && !s->drain_cancelled && bg__rpc_in_flight(s) == 0) {
        /* No call left: close the idle client connections too (gRPC's
         * shutdown otherwise waits for every client to hang up). */
        s->drain_cancelled = 1;
        cancel_all_calls(s);
    }
    BG_ASSERT(!shut || s->shut_started, "rpc: drain found the shutdown done before it began");
    if (shut && bg__rpc_in_flight(s) == 0 && s->drain_done != NULL) {
        bg_loop_fn done = s->drain_done;
        s->drain_done = NULL;
        uv_timer_stop(t);
        BG_INFO("rpc", "drained in %llu ms", (unsigned long long)ms);
        done(s->drain_arg);
    }
}

void bg_rpc_server_drain(bg_rpc_server *s, unsigned timeout_ms, unsigned grace_ms, bg_loop_fn done,
                         void *arg)
{
    BG_ASSERT(s->drain_start_ns == 0 && !s->shut_started,
              "rpc: drain called again, or after the shutdown began (invariant 4)");
    BG_INFO("rpc", "draining: %llu calls in flight, grace %u ms, deadline %u ms",
            (unsigned long long)bg__rpc_in_flight(s), grace_ms, timeout_ms);
    s->drain_done = done;
    s->drain_arg = arg;
    s->drain_start_ns = bg_now_ns();
    s->drain_timeout_ms = timeout_ms;
    s->drain_grace_ms = grace_ms < timeout_ms ? grace_ms : timeout_ms;
    atomic_store(&s->draining, 1);
    run_hooks(s, 0);
    s->drain_timer = calloc(1, sizeof(*s->drain_timer));
    if (s->drain_timer == NULL) {
        begin_shutdown(s); /* no poll: destroy waits for the shutdown instead */
        done(arg);
        return;
    }
    uv_timer_init(bg_loop_uv(s->opts.loop), s->drain_timer);
    s->drain_timer->data = s;
    uv_timer_start(s->drain_timer, drain_poll, 0, BG_DRAIN_POLL_MS);
}

void bg_rpc_server_drain_now(bg_rpc_server *s)
{
    BG_ASSERT(s->drain_start_ns != 0, "rpc: drain_now before drain (invariant 4)");
    s->drain_timeout_ms = 0;
    s->drain_grace_ms = 0;
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

void bg_rpc_server_destroy(bg_rpc_server *s)
{
    if (s == NULL)
        return;
    bg__rpc_metrics_stop(s);
    bg__svc_escalation_stop(s); /* no table event reaches the calls from here on */
    if (s->grpc_inited) {
        begin_shutdown(s);
        cancel_all_calls(s);
        pthread_mutex_lock(&s->shut_mu);
        while (!s->shut_done) {
            if (s->n_threads > 0) {
                pthread_cond_wait(&s->shut_cv, &s->shut_mu);
                continue;
            }
            /* No thread serves cq 0 (start failed early): pump it here. */
            pthread_mutex_unlock(&s->shut_mu);
            grpc_event ev =
                grpc_completion_queue_next(s->cqs[0].cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            if (ev.type == GRPC_OP_COMPLETE)
                ((bg__rpc_tag *)ev.tag)->cb(ev.tag, ev.success);
            pthread_mutex_lock(&s->shut_mu);
        }
        pthread_mutex_unlock(&s->shut_mu);
        for (size_t i = 0; i < s->n_ls; i++)
            if (s->ls[i].server != NULL)
                grpc_server_destroy(s->ls[i].server);
    }
    for (unsigned i = 0; i < s->n_cq; i++)
        grpc_completion_queue_shutdown(s->cqs[i].cq);
    for (unsigned i = 0; i < s->n_cq; i++) {
        if (i < s->n_threads)
            pthread_join(s->cqs[i].thread, NULL);
        else
            cq_thread(&s->cqs[i]); /* flush a queue no thread served */
    }
    if (s->drain_timer != NULL) {
        uv_timer_stop(s->drain_timer);
        uv_close((uv_handle_t *)s->drain_timer, free_timer);
    }
    for (unsigned i = 0; i < s->n_cq; i++) {
        grpc_completion_queue_destroy(s->cqs[i].cq);
        bg__rpc_call_free_all(&s->cqs[i]);
        pthread_mutex_destroy(&s->cqs[i].mu);
    }
    bg__rpc_listen_close(s); /* unlinks the socket files; frees the listeners */
    if (s->grpc_inited)
        grpc_shutdown();
    for (size_t i = 0; i < s->n_bound; i++)
        free(s->bound[i]);
    free(s->bound);
    free(s->cqs);
    pthread_mutex_destroy(&s->watch_mu);
    pthread_mutex_destroy(&s->esc_mu);
    pthread_mutex_destroy(&s->shut_mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_cond_destroy(&s->shut_cv);
    free(s);
}
