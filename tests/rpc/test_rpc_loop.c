/*
 * test_rpc_loop.c — the loop hand-off (daemon/loop/loop.h): items posted
 * from many threads all run, on the loop thread, in per-thread FIFO order;
 * post_work runs work off the loop thread and after on it; a signal handler
 * runs on the loop thread; items posted before destroy still run, and
 * once destroy started posts fail with BG_EUNAVAIL and never run.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_time.h"
#include "bg_test.h"
#include "loop/loop.h"

#define THREADS 4
#define PER_THREAD 5000

static pthread_t loop_thread;
static bg_loop *L;
static int last_seen[THREADS];
static atomic_int ran;
static int order_ok = 1;
static atomic_int work_off_loop, after_on_loop, sig_on_loop;

typedef struct item {
    int thread, seq;
} item;

static item items[THREADS][PER_THREAD];

static void on_item(void *arg)
{
    item *it = arg;
    if (!pthread_equal(pthread_self(), loop_thread) || it->seq != last_seen[it->thread] + 1)
        order_ok = 0;
    last_seen[it->thread] = it->seq;
    if (atomic_fetch_add(&ran, 1) + 1 == THREADS * PER_THREAD + 2)
        bg_loop_stop(L);
}

static void *producer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        items[t][i].thread = t;
        items[t][i].seq = i;
        CHECK(bg_loop_post(L, on_item, &items[t][i]) == BG_OK);
    }
    return NULL;
}

static void work(void *arg)
{
    (void)arg;
    if (!pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&work_off_loop, 1);
}

static void after(void *arg)
{
    (void)arg;
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&after_on_loop, 1);
    if (atomic_fetch_add(&ran, 1) + 1 == THREADS * PER_THREAD + 2)
        bg_loop_stop(L);
}

static void on_sig(void *arg)
{
    (void)arg;
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&sig_on_loop, 1);
    if (atomic_fetch_add(&ran, 1) + 1 == THREADS * PER_THREAD + 2)
        bg_loop_stop(L);
}

static void never(void *arg)
{
    (void)arg;
    fprintf(stderr, "a callback ran after its post failed\n");
    exit(1);
}

static int destroy_ran;

static void during_destroy(void *arg)
{
    (void)arg;
    CHECK(bg_loop_post(L, never, NULL) == BG_EUNAVAIL);
    CHECK(bg_loop_post_work(L, never, never, NULL) == BG_EUNAVAIL);
    destroy_ran = 1;
}

/* Stops the loop if the test hangs, so it fails instead of timing out. */
static void watchdog(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "watchdog: only %d of %d callbacks ran in 20 s\n", atomic_load(&ran),
            THREADS * PER_THREAD + 2);
    exit(1);
}

int main(void)
{
    bg_err err;
    bg_err_clear(&err);
    loop_thread = pthread_self();
    CHECK(bg_loop_create(&L, &err) == BG_OK);
    for (int t = 0; t < THREADS; t++)
        last_seen[t] = -1;
    CHECK(bg_loop_on_signal(L, SIGUSR1, on_sig, NULL, &err) == BG_OK);
    uv_timer_t wd;
    uv_timer_init(bg_loop_uv(L), &wd);
    uv_timer_start(&wd, watchdog, 20000, 0);
    uv_unref((uv_handle_t *)&wd);

    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, producer, (void *)(intptr_t)t) == 0);
    CHECK(bg_loop_post_work(L, work, after, NULL) == BG_OK);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    uint64_t t0 = bg_now_ns();
    bg_loop_run(L);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    printf("%d callbacks in %.1f ms\n", atomic_load(&ran), (bg_now_ns() - t0) / 1e6);
    CHECK(atomic_load(&ran) == THREADS * PER_THREAD + 2);
    CHECK(order_ok);
    for (int t = 0; t < THREADS; t++)
        CHECK(last_seen[t] == PER_THREAD - 1);
    CHECK(atomic_load(&work_off_loop) == 1);
    CHECK(atomic_load(&after_on_loop) == 1);
    CHECK(atomic_load(&sig_on_loop) == 1);

    uv_timer_stop(&wd);
    uv_close((uv_handle_t *)&wd, NULL);
    /* Posted before destroy: runs during destroy, where posting is refused. */
    CHECK(bg_loop_post(L, during_destroy, NULL) == BG_OK);
    bg_loop_destroy(L);
    CHECK(destroy_ran == 1);
    printf("ok\n");
    return 0;
}
