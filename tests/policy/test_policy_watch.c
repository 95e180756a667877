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

#define DEBOUNCE_MS 250 /* wide: a loaded 2-core CI must not split one update */

typedef struct waiter {
    bg_policy_store *st;
    uint64_t want_attempts;  /* stop once ok+failed reaches this ... */
    uint64_t quiet_until_ms; /* ... and then keep running until this */
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
    waiter w = {.st = st,
                .want_attempts = want,
                .quiet_until_ms = quiet_ms,
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

/* A ConfigMap-style dir with one policy, and a watched store on `path`
 * (relative to the dir: "" = the dir, "..data" = the symlink). Returns 0
 * with everything set, or -1 (nothing left to clean but the dir). */
typedef struct fixture {
    char dir[128];
    char policy[2048];
    bg_plugin_host *host;
    bg_policy_store *st;
    bg_policy_watch *watch;
    uv_loop_t loop;
} fixture;

static int fixture_open(fixture *f, const char *tag, const char *path)
{
    char where[256];
    bg_err err;
    pt_mkdtemp(f->dir, sizeof f->dir, tag);
    pt_policy(f->policy, sizeof f->policy, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    configmap_update(f->dir, NULL, "..2026_11_26_1", f->policy);
    /* The visible name, as a ConfigMap volume shows it. */
    snprintf(where, sizeof where, "%s/payments.yaml", f->dir);
    CHECK_INT(symlink("..data/payments.yaml", where), 0);
    snprintf(where, sizeof where, "%s%s%s", f->dir, *path ? "/" : "", path);
    f->host = NULL;
    f->st = NULL;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &f->host, &err), BG_OK);
    if (f->host)
        CHECK_INT(bg_policy_store_create(where, f->host, &f->st, &err), BG_OK);
    if (!f->st) {
        bg_plugin_host_destroy(f->host);
        pt_rmtree(f->dir);
        return -1;
    }
    uv_loop_init(&f->loop);
    CHECK_INT(bg_policy_watch_start(f->st, &f->loop, DEBOUNCE_MS, &f->watch, &err), BG_OK);
    return 0;
}

static void test_configmap_dir(void)
{
    fixture fx;
    if (fixture_open(&fx, "watch", "") != 0)
        return;
    const char *dir = fx.dir;
    char *p = fx.policy;
    bg_policy_store *st = fx.st;
    bg_err err;
    bg_policy_watch *second = (bg_policy_watch *)&fx; /* must come back NULL */
    CHECK_INT(bg_policy_watch_start(st, &fx.loop, DEBOUNCE_MS, &second, &err), BG_EINVAL);
    CHECK(second == NULL);
    CHECK_NEAR(pt_threshold(st), 0.05, 0);

    /* A valid update: exactly one reload, then the new threshold serves. */
    char *t = strstr(p, "threshold: 0.05");
    memcpy(t, "threshold: 0.07", 15);
    configmap_update(dir, "..2026_11_26_1", "..2026_11_26_2", p);
    CHECK_INT(run_until(&fx.loop, st, 1, 4 * DEBOUNCE_MS), 0);
    bg_policy_status ss;
    bg_policy_store_status(st, &ss);
    printf("after one ConfigMap swap: %llu reload(s) ok, %llu failed\n",
           (unsigned long long)ss.reloads_ok, (unsigned long long)ss.reloads_failed);
    CHECK_INT(ss.reloads_ok, 1);
    CHECK_INT(ss.reloads_failed, 0);
    CHECK_STR(ss.last_trigger, "watch");
    CHECK_NEAR(pt_threshold(st), 0.07, 0);

    /* A broken update: one refused reload, 0.07 keeps serving. */
    memcpy(t, "threshold: 7.00", 15);
    configmap_update(dir, "..2026_11_26_2", "..2026_11_26_3", p);
    CHECK_INT(run_until(&fx.loop, st, 2, 4 * DEBOUNCE_MS), 0);
    bg_policy_store_status(st, &ss);
    CHECK_INT(ss.reloads_ok, 1);
    CHECK_INT(ss.reloads_failed, 1);
    CHECK(strstr(ss.last_errors, "payments.yaml:8:14: key 'spec.threshold': 7 is out of range") !=
          NULL);
    CHECK_NEAR(pt_threshold(st), 0.07, 0);

    /* Stop, destroy the store, then run the loop (bayesguardd's shutdown
     * order): the loop closes the handles and frees the watch. */
    bg_policy_watch_stop(fx.watch);
    bg_policy_store_destroy(st);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&fx.loop), 0);
    bg_plugin_host_destroy(fx.host);
    pt_rmtree(dir);
}

/* --policies pointing at the ..data symlink itself: each swap replaces the
 * watched directory; the watch must follow it (two swaps in a row). */
static void test_symlinked_path(void)
{
    fixture fx;
    if (fixture_open(&fx, "watchlink", "..data") != 0)
        return;
    char *p = fx.policy;
    bg_policy_store *st = fx.st;
    char *t = strstr(p, "threshold: 0.05");
    const char *vals[] = {"threshold: 0.06", "threshold: 0.08"};
    const char *ts[] = {"..2026_11_26_1", "..2026_11_26_2", "..2026_11_26_3"};
    for (int i = 0; i < 2; i++) {
        memcpy(t, vals[i], 15);
        configmap_update(fx.dir, ts[i], ts[i + 1], p);
        CHECK_INT(run_until(&fx.loop, st, (uint64_t)i + 1, 4 * DEBOUNCE_MS), 0);
        bg_policy_status ss;
        bg_policy_store_status(st, &ss);
        CHECK_INT(ss.reloads_ok, i + 1);
        CHECK_INT(ss.reloads_failed, 0);
        CHECK_NEAR(pt_threshold(st), i ? 0.08 : 0.06, 0);
    }
    bg_policy_watch_stop(fx.watch);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&fx.loop), 0);
    bg_policy_store_destroy(st);
    bg_plugin_host_destroy(fx.host);
    pt_rmtree(fx.dir);
}

int main(void)
{
    test_configmap_dir();
    test_symlinked_path();
    CHECK_DONE("test_policy_watch");
}
