/*
 * rpc_call.c — one server call: its request, its state machine, its arena,
 * its replies and streams.
 *
 * A call object is recycled through its completion queue's free list, so a
 * steady stream of unary calls allocates no call objects, and decoding and
 * reply building use the object's bump arena (BG_CALL_ARENA bytes inline,
 * malloc'd overflow freed at recycle). The services are reached only
 * through the method table (bg__rpc_methods: start, on_recv, on_send), and
 * call back down into the functions here; this file names no service.
 * Before a method's start runs, on_request asks bg__rpc_authorize
 * (rpc_listen.c) who is calling and whether its listener serves the
 * method's role: the one place roles are checked.
 *
 * State diagram (functions that make each transition):
 *
 *      FREE --bg__rpc_call_request--> REQUESTED --on_request(!ok: shutdown)--> FREE
 *                                         |
 *                                    on_request(ok): method's start
 *                                         v
 *     +-------------------------------- ACTIVE (handler runs on the CQ thread)
 *     | defer, park                       |  \ stream_recv (client stream)
 *     v                                   |   \ server_stream (server stream)
 *   DEFERRED --reply/fail (loop)-->       |    v
 *                                         |  STREAMING --reply/fail/stream_send(final)--+
 *                                         v      |  |                                   |
 *                                   reply / fail |  +--abandon (cancelled)------------->|
 *                                         v      |                                      |
 *                                     FINISHING <-----------------------------------------+
 *                                         |      | last ref dropped (Watch cancelled)
 *                                         v      v
 *                                       FREE (recycle, when refs drop to 0)
 *
 * Invariants (each checked with BG_ASSERT where it could break):
 *   1. refs = outstanding batches + 1 while a holder (handler, loop work,
 *      stream callback) owns the call. A call is recycled exactly when refs
 *      drops to 0 (never below), only from REQUESTED, STREAMING or
 *      FINISHING, and only then are grpc_call, buffers and arena released.
 *   2. At most one send batch is in flight (gRPC's rule): c->sends is 0 or
 *      1. Watch keeps to it with watch_sending under srv->watch_mu.
 *   3. A call counted in srv->in_flight (ACTIVE reached) is uncounted at
 *      recycle, so in_flight == calls between arrival and final batch; an
 *      admitted call is likewise counted in srv->working until recycle.
 *   4. A reply is sent exactly once: reply/fail assert ACTIVE, DEFERRED or
 *      STREAMING and move to FINISHING.
 *   5. A call that reached ACTIVE is counted in srv->handled exactly once:
 *      with its status when the status is handed to gRPC (before the client
 *      can see it, so a scrape after the reply includes it), or as
 *      CANCELLED at recycle when it ended without one.
 *   6. Every transition asserts the state it leaves (the diagram's arrows
 *      and no others).
 *
 * Threads: a call's completions run on its CQ thread; reply/fail may run on
 * the loop thread for DEFERRED calls, or on any thread for a parked one
 * (AwaitDecision: whoever unlinks it answers it; gRPC batches are
 * thread-safe). The free list is guarded by a per-CQ mutex because the
 * last release may happen on either.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "common/bg_log.h"
#include "common/bg_time.h"
#include "rpc/rpc_priv.h"
#include "rpc/rpc_wire.h"

const char *bg__rpc_call_state_name(int st)
{
    switch (st) {
#define BG_CALL_STATE_CASE(s)                                                                      \
    case s:                                                                                        \
        return #s;
        BG_CALL_STATES(BG_CALL_STATE_CASE)
#undef BG_CALL_STATE_CASE
    default:
        return "BG_CALL_?";
    }
}

/* Move c from one of the states of `from` to `to` (invariant 6). */
static void transition(bg__rpc_call *c, unsigned from, int to)
{
    BG_CALL_ASSERT(c, from);
    atomic_store(&c->state, to);
}

static void *arena_alloc(void *data, size_t n)
{
    return bg__rpc_call_alloc(data, n);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* released at recycle */
}

void *bg__rpc_call_alloc(bg__rpc_call *c, size_t n)
{
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need <= BG_CALL_ARENA - c->arena_used) {
        void *p = c->arena + c->arena_used;
        c->arena_used += need;
        return p;
    }
    if (c->overflow_bytes + need > BG_CALL_OVERFLOW_FACTOR * c->srv->max_message) {
        c->overflow_capped = 1;
        return NULL;
    }
    unsigned char *blk = malloc(16 + need);
    if (blk == NULL)
        return NULL;
    *(void **)blk = c->overflow;
    c->overflow = blk;
    c->overflow_bytes += 16 + need;
    return blk + 16;
}

void bg__rpc_call_free_overflow(bg__rpc_call *c)
{
    while (c->overflow != NULL) {
        void *next = *(void **)c->overflow;
        free(c->overflow);
        c->overflow = next;
    }
    c->overflow_bytes = 0;
    c->overflow_capped = 0;
}

char *bg__rpc_call_strdup(bg__rpc_call *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = bg__rpc_call_alloc(c, n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void *bg__rpc_call_decode(bg__rpc_call *c, const ProtobufCMessageDescriptor *desc)
{
    return bg_rpc_unpack(desc, c->payload, &c->alloc);
}

void *bg__rpc_call_decode_or_fail(bg__rpc_call *c, const ProtobufCMessageDescriptor *desc)
{
    void *m = bg__rpc_call_decode(c, desc);
    if (m == NULL && c->overflow_capped)
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "the %s decodes to more than %d times --max-message-bytes (%zu) of "
                          "memory (e.g. millions of tiny map entries or repeated fields): "
                          "send fewer elements",
                          desc->name, BG_CALL_OVERFLOW_FACTOR, c->srv->max_message);
    else if (m == NULL)
        bg__rpc_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                          "the request is not a valid %s (protobuf decoding failed): send a "
                          "serialized %s",
                          desc->name, desc->name);
    return m;
}

static void on_request(bg__rpc_tag *t, int ok);
static void on_send(bg__rpc_tag *t, int ok);
static void on_recv(bg__rpc_tag *t, int ok);

/* A call object for method, from cq's free list or new: FREE -> REQUESTED. */
static bg__rpc_call *call_get(bg_rpc_server *s, bg__rpc_cq *cq, int listener, int method)
{
    pthread_mutex_lock(&cq->mu);
    bg__rpc_call *c = cq->free_list;
    if (c != NULL)
        cq->free_list = c->next_free;
    else
        cq->allocated++;
    pthread_mutex_unlock(&cq->mu);
    if (c == NULL) {
        c = malloc(sizeof(*c));
        if (c == NULL)
            return NULL;
        memset(c, 0, offsetof(bg__rpc_call, arena));
        c->req_tag.cb = on_request;
        c->send_tag.cb = on_send;
        c->recv_tag.cb = on_recv;
        c->alloc.alloc = arena_alloc;
        c->alloc.free = arena_free;
        c->alloc.allocator_data = c;
        c->srv = s;
        c->cq = cq;
        c->status_msg = grpc_empty_slice();
    }
    c->listener = listener;
    c->method = method;
    transition(c, BG_CALL_BIT(BG_CALL_FREE), BG_CALL_REQUESTED);
    atomic_store(&c->refs, 1);
    grpc_metadata_array_init(&c->md);
    if (method == BG_M_UNKNOWN)
        grpc_call_details_init(&c->details);
    return c;
}

void bg__rpc_call_request(bg_rpc_server *s, bg__rpc_cq *cq, int listener, int method)
{
    BG_ASSERT(method >= 0 && method < BG_M__COUNT, "rpc: request for method id %d", method);
    BG_ASSERT(listener >= 0 && (size_t)listener < s->n_ls, "rpc: request for listener %d of %zu",
              listener, s->n_ls);
    if (atomic_load(&s->shutting_down))
        return;
    const bg__rpc_method *m = &bg__rpc_methods[method];
    bg__rpc_call *c = call_get(s, cq, listener, method);
    bg__rpc_listener *l = &s->ls[listener];
    if (c == NULL) {
        BG_ERROR("rpc", "out of memory requesting a call for %s",
                 m->path ? m->path : "unknown methods");
        return;
    }
    grpc_call_error e;
    if (method == BG_M_UNKNOWN)
        e = grpc_server_request_call(l->server, &c->call, &c->details, &c->md, cq->cq, cq->cq,
                                     &c->req_tag);
    else
        e = grpc_server_request_registered_call(l->server, l->reg[method], &c->call, &c->deadline,
                                                &c->md, m->client_streaming ? NULL : &c->payload,
                                                cq->cq, cq->cq, &c->req_tag);
    if (e != GRPC_CALL_OK) {
        BG_ERROR("rpc", "cannot request a call: %s", grpc_call_error_to_string(e));
        bg__rpc_call_release(c);
    }
}

static void recycle(bg__rpc_call *c)
{
    bg_rpc_server *s = c->srv;
    int st = atomic_load(&c->state);
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_REQUESTED) | BG_CALL_BIT(BG_CALL_STREAMING) |
                          BG_CALL_BIT(BG_CALL_FINISHING));
    BG_ASSERT(atomic_load(&c->sends) == 0, "rpc call %p (%s) recycled with a send in flight",
              (void *)c, bg__rpc_method_path(c));
    if (c->admitted) {
        uint64_t working = atomic_fetch_sub(&s->working, 1);
        BG_ASSERT(working > 0, "rpc: an admitted %s call found srv->working at 0",
                  bg__rpc_method_path(c));
    }
    c->admitted = 0;
    if (st != BG_CALL_REQUESTED) {
        bg__rpc_count_handled(c, GRPC_STATUS_CANCELLED); /* no-op when a status was sent */
        uint64_t in_flight = atomic_fetch_sub(&s->in_flight, 1);
        BG_ASSERT(in_flight > 0, "rpc: a %s call in state %s found srv->in_flight at 0",
                  bg__rpc_method_path(c), bg__rpc_call_state_name(st));
    }
    c->handled = 0;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    c->call = NULL;
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (c->resp != NULL)
        grpc_byte_buffer_destroy(c->resp);
    c->resp = NULL;
    grpc_slice_unref(c->status_msg);
    c->status_msg = grpc_empty_slice();
    grpc_metadata_array_destroy(&c->md);
    if (c->method == BG_M_UNKNOWN)
        grpc_call_details_destroy(&c->details);
    bg__rpc_call_free_overflow(c);
    c->arena_used = 0;
    c->user = NULL;
    c->count = 0;
    c->cancelled = 0;
    c->init_md_sent = 0;
    c->close_started = 0;
    c->watch_sending = c->watch_final = c->watch_listed = 0;
    c->watch_next = NULL;
    atomic_store(&c->state, BG_CALL_FREE);
    bg__rpc_cq *cq = c->cq;
    pthread_mutex_lock(&cq->mu);
    c->next_free = cq->free_list;
    cq->free_list = c;
    pthread_mutex_unlock(&cq->mu);
}

void bg__rpc_call_release(bg__rpc_call *c)
{
    int refs = atomic_fetch_sub(&c->refs, 1);
    BG_ASSERT(refs >= 1, "rpc call %p (%s) in state %s released with %d refs", (void *)c,
              bg__rpc_method_path(c), bg__rpc_call_state_name(atomic_load(&c->state)), refs);
    if (refs == 1)
        recycle(c);
}

void bg__rpc_call_free_all(bg__rpc_cq *cq)
{
    while (cq->free_list != NULL) {
        bg__rpc_call *n = cq->free_list->next_free;
        free(cq->free_list);
        cq->free_list = n;
        cq->allocated--;
    }
    if (cq->allocated != 0)
        BG_WARN("rpc", "cq %d: %llu call objects still referenced at destroy", cq->index,
                (unsigned long long)cq->allocated);
}

static void on_request(bg__rpc_tag *t, int ok)
{
    bg__rpc_call *c = (bg__rpc_call *)((char *)t - offsetof(bg__rpc_call, req_tag));
    bg_rpc_server *s = c->srv;
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_REQUESTED));
    if (!ok) {
        /* The server is shutting down: the request was flushed. */
        bg__rpc_call_release(c);
        return;
    }
    const bg__rpc_method *m = &bg__rpc_methods[c->method];
    /* Keep the method pre-requested before doing any work. */
    bg__rpc_call_request(s, c->cq, c->listener, c->method);
    atomic_fetch_add(&s->in_flight, 1);
    transition(c, BG_CALL_BIT(BG_CALL_REQUESTED), BG_CALL_ACTIVE);
    c->start_ns = bg_now_ns();
    if (atomic_load(&s->draining) && !m->while_draining) {
        bg__rpc_call_fail(c, GRPC_STATUS_UNAVAILABLE,
                          "bayesguardd is draining (shutting down): retry against another "
                          "instance or after it restarts");
        return;
    }
    if (c->payload != NULL && grpc_byte_buffer_length(c->payload) > s->max_message) {
        bg__rpc_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "the request is %zu bytes, over this daemon's --max-message-bytes "
                          "(%zu): send fewer features or shorter arguments_json/attributes, "
                          "or raise the limit",
                          grpc_byte_buffer_length(c->payload), s->max_message);
        return;
    }
    /* Who is calling, and may they: the one place roles are checked. */
    char why[768];
    grpc_status_code denied = bg__rpc_authorize(c, why, sizeof(why));
    if (denied != GRPC_STATUS_OK) {
        bg__rpc_call_fail(c, denied, "%s", why);
        return;
    }
    c->admitted = 1;
    atomic_fetch_add(&s->working, 1);
    BG_ASSERT(m->start != NULL, "rpc: method %s has no start hook", bg__rpc_method_path(c));
    m->start(c);
}

/* A send batch was handed to gRPC: at most one in flight (invariant 2). */
static void send_started(bg__rpc_call *c)
{
    int sends = atomic_fetch_add(&c->sends, 1);
    BG_ASSERT(sends == 0, "rpc call %p (%s) in state %s: a second send batch while %d in flight",
              (void *)c, bg__rpc_method_path(c), bg__rpc_call_state_name(atomic_load(&c->state)),
              sends);
}

/* ... and completed, or was refused. */
static void send_ended(bg__rpc_call *c)
{
    int sends = atomic_fetch_sub(&c->sends, 1);
    BG_ASSERT(sends == 1, "rpc call %p (%s): a send batch ended with %d in flight", (void *)c,
              bg__rpc_method_path(c), sends);
}

static void on_send(bg__rpc_tag *t, int ok)
{
    bg__rpc_call *c = (bg__rpc_call *)((char *)t - offsetof(bg__rpc_call, send_tag));
    const bg__rpc_method *m = &bg__rpc_methods[c->method];
    send_ended(c);
    if (m->on_send != NULL) {
        m->on_send(c, ok);
        return;
    }
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_FINISHING));
    bg__rpc_call_release(c);
}

static void on_recv(bg__rpc_tag *t, int ok)
{
    bg__rpc_call *c = (bg__rpc_call *)((char *)t - offsetof(bg__rpc_call, recv_tag));
    const bg__rpc_method *m = &bg__rpc_methods[c->method];
    BG_ASSERT(m->on_recv != NULL,
              "rpc call %p (%s) in state %s: a receive completed but the "
              "method has no on_recv hook",
              (void *)c, bg__rpc_method_path(c), bg__rpc_call_state_name(atomic_load(&c->state)));
    m->on_recv(c, ok);
}

/* Initial metadata (first time only) and msg (when not NULL) into ops;
 * returns how many ops were written. */
static size_t send_ops(bg__rpc_call *c, grpc_op *ops, const ProtobufCMessage *msg)
{
    size_t n = 0;
    if (!c->init_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->init_md_sent = 1;
    }
    if (msg != NULL) {
        if (c->resp != NULL)
            grpc_byte_buffer_destroy(c->resp);
        c->resp = bg_rpc_pack(msg);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->resp;
    }
    return n;
}

static void finish(bg__rpc_call *c, const ProtobufCMessage *msg, grpc_status_code code)
{
    transition(c,
               BG_CALL_BIT(BG_CALL_ACTIVE) | BG_CALL_BIT(BG_CALL_DEFERRED) |
                   BG_CALL_BIT(BG_CALL_STREAMING),
               BG_CALL_FINISHING);
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    size_t n = send_ops(c, ops, msg);
    bg__rpc_count_handled(c, code);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details =
        code == GRPC_STATUS_OK ? NULL : &c->status_msg;
    if (!c->close_started) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
        c->close_started = 1;
    }
    send_started(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->send_tag, NULL);
    if (e != GRPC_CALL_OK) {
        BG_ERROR("rpc", "cannot send the reply: %s", grpc_call_error_to_string(e));
        send_ended(c);
        grpc_call_cancel(c->call, NULL);
        bg__rpc_call_release(c);
    }
}

void bg__rpc_call_reply(bg__rpc_call *c, const ProtobufCMessage *msg)
{
    finish(c, msg, GRPC_STATUS_OK);
}

void bg__rpc_call_fail(bg__rpc_call *c, grpc_status_code code, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (code == GRPC_STATUS_INTERNAL)
        BG_WARN("rpc", "%s -> %s: %s", bg__rpc_method_path(c), bg_rpc_code_name(code), buf);
    else
        BG_DEBUG("rpc", "%s -> %s: %s", bg__rpc_method_path(c), bg_rpc_code_name(code), buf);
    grpc_slice_unref(c->status_msg);
    c->status_msg = grpc_slice_from_copied_string(buf);
    finish(c, NULL, code);
}

void bg__rpc_call_defer(bg__rpc_call *c)
{
    transition(c, BG_CALL_BIT(BG_CALL_ACTIVE), BG_CALL_DEFERRED);
}

/* RECV_CLOSE_ON_SERVER on the recv tag (the method's on_recv), with a
 * new ref for the batch; undone when gRPC refuses it. */
static int watch_close(bg__rpc_call *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_started = 1;
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL);
    if (e != GRPC_CALL_OK) {
        atomic_fetch_sub(&c->refs, 1);
        c->close_started = 0;
        return BG_EINTERNAL;
    }
    return BG_OK;
}

int bg__rpc_call_server_stream(bg__rpc_call *c)
{
    transition(c, BG_CALL_BIT(BG_CALL_ACTIVE), BG_CALL_STREAMING);
    return watch_close(c);
}

int bg__rpc_call_stream_send(bg__rpc_call *c, const ProtobufCMessage *msg, int final)
{
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_STREAMING));
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = send_ops(c, ops, msg);
    if (final) {
        transition(c, BG_CALL_BIT(BG_CALL_STREAMING), BG_CALL_FINISHING);
        bg__rpc_count_handled(c, GRPC_STATUS_OK);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n++].data.send_status_from_server.status = GRPC_STATUS_OK;
    }
    atomic_fetch_add(&c->refs, 1);
    send_started(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->send_tag, NULL);
    if (e != GRPC_CALL_OK) {
        send_ended(c);
        atomic_fetch_sub(&c->refs, 1);
        return BG_EINTERNAL;
    }
    return BG_OK;
}

int bg__rpc_call_stream_recv(bg__rpc_call *c)
{
    transition(c, BG_CALL_BIT(BG_CALL_ACTIVE) | BG_CALL_BIT(BG_CALL_STREAMING), BG_CALL_STREAMING);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->payload;
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL);
    return e == GRPC_CALL_OK ? BG_OK : BG_EINTERNAL;
}

void bg__rpc_call_stream_fail(bg__rpc_call *c, grpc_status_code code, const char *fmt, ...)
{
    BG_CALL_ASSERT(c, BG_CALL_BIT(BG_CALL_STREAMING));
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    atomic_fetch_add(&c->refs, 1); /* the status batch's, dropped by on_send */
    bg__rpc_call_fail(c, code, "%s", buf);
}

int bg__rpc_call_park(bg__rpc_call *c)
{
    transition(c, BG_CALL_BIT(BG_CALL_ACTIVE), BG_CALL_DEFERRED);
    return watch_close(c);
}

void bg__rpc_call_abandon(bg__rpc_call *c)
{
    transition(c, BG_CALL_BIT(BG_CALL_STREAMING), BG_CALL_FINISHING);
    c->close_started = 1; /* nothing more may be sent: just release */
    bg__rpc_call_release(c);
}

grpc_status_code bg__rpc_code_of(int st)
{
    switch (st) {
    case BG_OK:
        return GRPC_STATUS_OK;
    case BG_EINVAL:
    case BG_ECONFIG:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case BG_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case BG_ELIMIT:
    case BG_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case BG_EUNAVAIL:
    case BG_EIO: /* the observation log refused a write: nothing stored, retry */
        return GRPC_STATUS_UNAVAILABLE;
    case BG_EUNSUPPORTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case BG_EPERM:
        return GRPC_STATUS_PERMISSION_DENIED;
    case BG_EEXIST: /* an outcome receipt accepted before */
        return GRPC_STATUS_ALREADY_EXISTS;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}
