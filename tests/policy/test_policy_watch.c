/*
 * test_policy_watch.c — the directory watch on a real libuv loop, with the
 * Kubernetes ConfigMap layout: visible `payments.yaml -> ..data/payments.yaml`,
 * `..data -> ..2026_11_26_1`. An update is reproduced exactly as the
 * kubelet does it (new timestamped dir, `..data_tmp` symlink renamed over
 * `..data`, old dir removed) and must trigger exactly one reload (the burst
 * is debounced); the new policy then serves. A broken update is refused
 * (one failed reload) and the previous set keeps serving. Also with the
 * policy path being the `..data` symlink itself, twice in a row (the watch
 * re-arms on the new directory). Waits poll the
 * store's status with a deadline on the loop itself; no sleeps.
 */
#include <uv.h>

#include "policy_test.h"

#define DEBOUNCE_MS 100

typedef struct waiter {
    bg_policy_store *st;
    uint64_t want_attempts;   /* stop once ok+failed reaches this ... */
    uint64_t quiet_until_ms;  /* ... and then keep running until this */
    uint64_t deadline_ms;
    uint64_t reached_at;
    int timed_out;
} waiter;

static uint64_t attempts(bg_policy_store *st)
{
    bg_policy_status ss;
    bg_policy_store_status(st, &ss);
    return ss.reloads_ok + ss.reloads_failed;
}

static void on_tick(uv_timer_t *t)
{
    waiter *w = t->data;
    uint64_t now = uv_now(t->loop);
    if (!w->reached_at && attempts(w->st) >= w->want_attempts)
        w->reached_at = now;
    if (w->reached_at && now >= w->reached_at + w->quiet_until_ms) {
        uv_stop(t->loop);
        return;
    }
    if (now >= w->deadline_ms) {
        w->timed_out = 1;
        uv_stop(t->loop);
    }
}

/* Run the loop until `want` reload attempts happened, then `quiet_ms` more
 * (to see any extra reload), or a 10 s deadline. */
static int run_until(uv_loop_t *loop, bg_policy_store *st, uint64_t want, uint64_t quiet_ms)
{
    uv_update_time(loop);
    waiter w = {.st = st, .want_attempts = want, .quiet_until_ms = quiet_ms,
                .deadline_ms = uv_now(loop) + 10000};
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &w;
    uv_timer_start(&t, on_tick, 5, 5);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_timer_stop(&t);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return w.timed_out ? -1 : 0;
}

/* One kubelet-style atomic update of the ConfigMap volume. */
static void configmap_update(const char *dir, const char *old_ts, const char *new_ts,
                             const char *text)
{
    char d[512], tmp[512], data[512], old[512];
    snprintf(d, sizeof d, "%s/%s", dir, new_ts);
    CHECK_INT(mkdir(d, 0700), 0);
    CHECK_INT(pt_write(d, "payments.yaml", text), 0);
    snprintf(tmp, sizeof tmp, "%s/..data_tmp", dir);
    snprintf(data, sizeof data, "%s/..data", dir);
    CHECK_INT(symlink(new_ts, tmp), 0);
    CHECK_INT(rename(tmp, data), 0);
    if (old_ts) {
        snprintf(old, sizeof old, "%s/%s", dir, old_ts);
        pt_rmtree(old);
    }
}

static double current_threshold(bg_policy_store *st)
{
    bg_policy_set *s = bg_policy_store_acquire(st);
    double t = bg_policy_set_at(s, 0)->guard.threshold;
    bg_policy_set_unref(s);
    return t;
}

static void test_configmap_dir(void)
{
    char dir[128], p[2048], link[512];
    pt_mkdtemp(dir, sizeof dir, "watch");
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    configmap_update(dir, NULL, "..2026_11_26_1", p);
    snprintf(link, sizeof link, "%s/payments.yaml", dir);
    CHECK_INT(symlink("..data/payments.yaml", link), 0);

    bg_plugin_host *host = NULL;
    bg_policy_store *st = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &host, &err), BG_OK);
    CHECK_INT(bg_policy_store_create(dir, host, &st, &err), BG_OK);
    if (!st) {
        bg_plugin_host_destroy(host);
        pt_rmtree(dir);
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    CHECK_INT(bg_policy_store_watch(st, &loop, DEBOUNCE_MS, &err), BG_OK);
    CHECK_INT(bg_policy_store_watch(st, &loop, DEBOUNCE_MS, &err), BG_EINVAL);
    CHECK_NEAR(current_threshold(st), 0.05, 0);

    /* A valid update: exactly one reload, then the new threshold serves. */
    char *t = strstr(p, "threshold: 0.05");
    memcpy(t, "threshold: 0.07", 15);
    configmap_update(dir, "..2026_11_26_1", "..2026_11_26_2", p);
    CHECK_INT(run_until(&loop, st, 1, 4 * DEBOUNCE_MS), 0);
    bg_policy_status ss;
    bg_policy_store_status(st, &ss);
    printf("after one ConfigMap swap: %llu reload(s) ok, %llu failed\n",
           (unsigned long long)ss.reloads_ok, (unsigned long long)ss.reloads_failed);
    CHECK_INT(ss.reloads_ok, 1);
    CHECK_INT(ss.reloads_failed, 0);
    CHECK_STR(ss.last_trigger, "watch");
    CHECK_NEAR(current_threshold(st), 0.07, 0);

    /* A broken update: one refused reload, 0.07 keeps serving. */
    memcpy(t, "threshold: 7.00", 15);
    configmap_update(dir, "..2026_11_26_2", "..2026_11_26_3", p);
    CHECK_INT(run_until(&loop, st, 2, 4 * DEBOUNCE_MS), 0);
    bg_policy_store_status(st, &ss);
    CHECK_INT(ss.reloads_ok, 1);
    CHECK_INT(ss.reloads_failed, 1);
    CHECK(strstr(ss.last_errors, "payments.yaml:8:14: key 'spec.threshold': 7 is out of range") !=
          NULL);
    CHECK_NEAR(current_threshold(st), 0.07, 0);

    /* Destroy while watched (as bayesguardd's shutdown does): it unwatches
     * itself; the loop then closes the handles and frees the watch. */
    bg_policy_store_destroy(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    bg_plugin_host_destroy(host);
    pt_rmtree(dir);
}

/* --policies pointing at the ..data symlink itself: each swap replaces the
 * watched directory; the watch must follow it (two swaps in a row). */
static void test_symlinked_path(void)
{
    char dir[128], p[2048], data[256];
    pt_mkdtemp(dir, sizeof dir, "watchlink");
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    configmap_update(dir, NULL, "..2026_11_26_1", p);
    snprintf(data, sizeof data, "%s/..data", dir);
    bg_plugin_host *host = NULL;
    bg_policy_store *st = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &host, &err), BG_OK);
    CHECK_INT(bg_policy_store_create(data, host, &st, &err), BG_OK);
    if (!st) {
        bg_plugin_host_destroy(host);
        pt_rmtree(dir);
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    CHECK_INT(bg_policy_store_watch(st, &loop, DEBOUNCE_MS, &err), BG_OK);
    char *t = strstr(p, "threshold: 0.05");
    const char *vals[] = {"threshold: 0.06", "threshold: 0.08"};
    const char *ts[] = {"..2026_11_26_1", "..2026_11_26_2", "..2026_11_26_3"};
    for (int i = 0; i < 2; i++) {
        memcpy(t, vals[i], 15);
        configmap_update(dir, ts[i], ts[i + 1], p);
        CHECK_INT(run_until(&loop, st, (uint64_t)i + 1, 4 * DEBOUNCE_MS), 0);
        bg_policy_status ss;
        bg_policy_store_status(st, &ss);
        CHECK_INT(ss.reloads_ok, i + 1);
        CHECK_INT(ss.reloads_failed, 0);
        CHECK_NEAR(current_threshold(st), i ? 0.08 : 0.06, 0);
    }
    bg_policy_store_unwatch(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    bg_policy_store_destroy(st);
    bg_plugin_host_destroy(host);
    pt_rmtree(dir);
}

int main(void)
{
    test_configmap_dir();
    test_symlinked_path();
    CHECK_DONE("test_policy_watch");
}
