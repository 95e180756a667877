/*
 * loop.h — the control-plane event loop (libuv) and the hand-off to it.
 *
 * One thread runs the loop (bg_loop_run): signals, timers, the policy
 * directory watch and the worker pool live there. Data-plane threads (gRPC
 * completion-queue threads) never block on it: they hand work over with
 * bg_loop_post (a locked queue + uv_async_send) or bg_loop_post_work (the
 * same, then uv_queue_work on libuv's pool, then an "after" callback back
 * on the loop thread). The queue is drained in FIFO order.
 *
 * Lifecycle:  create -> run (blocks) ... stop (loop thread) -> run returns
 *             -> destroy (closes every handle still open, then the loop).
 * After destroy starts, posts fail with BG_EUNAVAIL and their callbacks
 * are never called (libuv's rule: a function that returns an error never
 * calls its callback).
 *
 * Threads: bg_loop_post / bg_loop_post_work from any thread; everything
 * else on the loop thread (create/destroy on the thread that runs it).
 * Ownership: `arg` is borrowed by the loop until its callback(s) ran.
 */
#ifndef BG_LOOP_H
#define BG_LOOP_H

#include <uv.h>

#include "common/bg_err.h"

typedef struct bg_loop bg_loop;

/* Runs on the loop thread. */
typedef void (*bg_loop_fn)(void *arg);

int bg_loop_create(bg_loop **out, bg_err *err);
void bg_loop_destroy(bg_loop *l);
uv_loop_t *bg_loop_uv(bg_loop *l);

/* Run until bg_loop_stop (loop thread). */
void bg_loop_run(bg_loop *l);
void bg_loop_stop(bg_loop *l);

/* Any thread: fn(arg) runs soon on the loop thread. BG_OK, BG_ENOMEM, or
 * BG_EUNAVAIL when the loop is closing (fn is then never called). */
int bg_loop_post(bg_loop *l, bg_loop_fn fn, void *arg);

/* Any thread: work(arg) runs on the libuv worker pool, then after(arg) on
 * the loop thread. Same errors as bg_loop_post. */
int bg_loop_post_work(bg_loop *l, bg_loop_fn work, bg_loop_fn after, void *arg);

/* Loop thread: call fn(arg) on the loop thread each time signum arrives
 * (SIGTERM, SIGINT, SIGHUP ...). The handler lives until destroy. */
int bg_loop_on_signal(bg_loop *l, int signum, bg_loop_fn fn, void *arg, bg_err *err);

#endif
