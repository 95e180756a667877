/*
 * loop.c — the libuv control-plane loop and its thread-safe hand-off queue.
 *
 * Why a locked queue plus one uv_async_t: uv_async_send coalesces, so the
 * only way to hand over many independent items safely is to queue them and
 * drain the whole queue in the async callback. The mutex is held only to
 * link/unlink items, never while running one.
 *
 * Invariants:
 *   1. `closing` is set (under mu) before the async handle is closed; after
 *      that no item is queued, so none is ever leaked or run late.
 *   2. Items run on the loop thread, in the order they were posted.
 *   3. Work items (post_work) hold a uv_work_t; the loop does not finish
 *      destroy until libuv has run their after callbacks.
 */
#include "loop/loop.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"

typedef struct item {
    struct item *next;
    bg_loop_fn fn;    /* post: the callback; post_work: the work */
    bg_loop_fn after; /* post_work only */
    void *arg;
    uv_work_t work;
} item;

typedef struct sig {
    uv_signal_t h;
    bg_loop_fn fn;
    void *arg;
    struct sig *next;
} sig;

struct bg_loop {
    uv_loop_t uv;
    uv_async_t async;
    pthread_mutex_t mu;
    item *head, *tail; /* guarded by mu */
    int closing;       /* guarded by mu */
    sig *sigs;         /* loop thread */
};

static void drain_queue(uv_async_t *a);

int bg_loop_create(bg_loop **out, bg_err *err)
{
    *out = NULL;
    bg_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return bg_err_set(err, BG_ENOMEM, "loop: out of memory");
    int rc = uv_loop_init(&l->uv);
    if (rc != 0) {
        free(l);
        return bg_err_set(err, BG_EINTERNAL, "loop: uv_loop_init: %s", uv_strerror(rc));
    }
    rc = uv_async_init(&l->uv, &l->async, drain_queue);
    if (rc != 0) {
        uv_loop_close(&l->uv);
        free(l);
        return bg_err_set(err, BG_EINTERNAL, "loop: uv_async_init: %s", uv_strerror(rc));
    }
    l->async.data = l;
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return BG_OK;
}

uv_loop_t *bg_loop_uv(bg_loop *l)
{
    return &l->uv;
}

static void work_cb(uv_work_t *w)
{
    item *it = w->data;
    it->fn(it->arg);
}

static void after_work_cb(uv_work_t *w, int status)
{
    (void)status; /* UV_ECANCELED cannot happen: nothing calls uv_cancel */
    item *it = w->data;
    it->after(it->arg);
    free(it);
}

static void drain_queue(uv_async_t *a)
{
    bg_loop *l = a->data;
    pthread_mutex_lock(&l->mu);
    item *it = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (it != NULL) {
        item *next = it->next;
        if (it->after == NULL) {
            it->fn(it->arg);
            free(it);
        } else {
            it->work.data = it;
            int rc = uv_queue_work(&l->uv, &it->work, work_cb, after_work_cb);
            if (rc != 0) {
                /* Cannot happen with a live loop; keep the promise anyway. */
                BG_ERROR("loop", "uv_queue_work: %s; running the work on the loop thread",
                         uv_strerror(rc));
                it->fn(it->arg);
                it->after(it->arg);
                free(it);
            }
        }
        it = next;
    }
}

static int post(bg_loop *l, bg_loop_fn fn, bg_loop_fn after, void *arg)
{
    item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return BG_ENOMEM;
    it->fn = fn;
    it->after = after;
    it->arg = arg;
    pthread_mutex_lock(&l->mu);
    if (l->closing) {
        pthread_mutex_unlock(&l->mu);
        free(it);
        return BG_EUNAVAIL;
    }
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    /* Sent under the lock so destroy cannot close the handle in between. */
    uv_async_send(&l->async);
    pthread_mutex_unlock(&l->mu);
    return BG_OK;
}

int bg_loop_post(bg_loop *l, bg_loop_fn fn, void *arg)
{
    return post(l, fn, NULL, arg);
}

int bg_loop_post_work(bg_loop *l, bg_loop_fn work, bg_loop_fn after, void *arg)
{
    return post(l, work, after, arg);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    (void)signum;
    sig *s = h->data;
    s->fn(s->arg);
}

int bg_loop_on_signal(bg_loop *l, int signum, bg_loop_fn fn, void *arg, bg_err *err)
{
    sig *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return bg_err_set(err, BG_ENOMEM, "loop: out of memory");
    uv_signal_init(&l->uv, &s->h);
    s->h.data = s;
    s->fn = fn;
    s->arg = arg;
    int rc = uv_signal_start(&s->h, signal_cb, signum);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->h, NULL);
        uv_run(&l->uv, UV_RUN_NOWAIT);
        free(s);
        return bg_err_set(err, BG_EINTERNAL, "loop: cannot handle signal %d: %s", signum,
                          uv_strerror(rc));
    }
    s->next = l->sigs;
    l->sigs = s;
    return BG_OK;
}

void bg_loop_run(bg_loop *l)
{
    uv_run(&l->uv, UV_RUN_DEFAULT);
}

void bg_loop_stop(bg_loop *l)
{
    uv_stop(&l->uv);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        BG_DEBUG("loop", "closing a %s handle left open at shutdown", uv_handle_type_name(h->type));
        uv_close(h, NULL);
    }
}

void bg_loop_destroy(bg_loop *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->closing = 1;
    pthread_mutex_unlock(&l->mu);
    /* Run what was posted before closing, and let queued work finish. */
    drain_queue(&l->async);
    uv_close((uv_handle_t *)&l->async, NULL);
    for (sig *s = l->sigs; s; s = s->next)
        uv_close((uv_handle_t *)&s->h, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    uv_walk(&l->uv, close_any, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&l->uv);
    if (rc != 0)
        BG_WARN("loop", "uv_loop_close: %s", uv_strerror(rc));
    while (l->sigs) {
        sig *n = l->sigs->next;
        free(l->sigs);
        l->sigs = n;
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}
