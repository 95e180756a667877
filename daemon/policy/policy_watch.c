/*
 * policy_watch.c — reload when the policy directory changes.
 *
 * Why a directory watch: a Kubernetes ConfigMap volume shows each key as a
 * symlink `a.yaml -> ..data/a.yaml`; an update writes a new timestamped
 * dir `..2026_11_26_…`, points a `..data_tmp` symlink at it and renames it
 * over `..data`. Watching the files would miss that (their symlinks never
 * change); watching the directory sees the rename.
 *
 * When the policy path is itself a symlink (`--policies /cm/..data`), the
 * inotify watch sits on the directory the link pointed to when armed, which
 * the swap replaces. So the link's parent is watched too (events for the
 * link's name count), and before each reload the path is resolved again:
 * if it now names another directory, the directory watch is re-armed on the
 * path. A watch error (directory removed) also re-arms.
 *
 * An event naming a policy unit test (*_test.yaml: bg_policy_is_test_file)
 * is ignored: the loader does not read those files, so a reload would
 * change nothing. Any other event (re)starts a debounce timer, so the
 * burst of one update gives one reload; the reload runs on the libuv worker pool
 * (uv_queue_work: it dlopens and creates plugin instances) and never two at
 * once: an event during a running reload re-arms the timer when it ends.
 *
 *   idle --event--> debouncing --timer--> reloading --done--> idle
 *                   ^  (event: restart)   |  (event: again=1)
 *                   +-----------------------+ done with again=1
 *
 * Threads: watch/unwatch and every callback on the loop thread; the work
 * function on a pool thread (it only calls bg_policy_store_reload).
 * Ownership: the watch is heap-allocated, owned by the caller of
 * bg_policy_watch_start until bg_policy_watch_stop, then by the handles'
 * close callbacks (freed after all three handles closed and no work is in
 * flight). stop waits for a reload running on the pool, and a queued one
 * finds st == NULL and does nothing, so the store may be destroyed right
 * after stop returns; the loop must still run once to close the handles
 * (bg_loop_destroy / uv_run do).
 *
 * Calls go one way: the watch calls the store (reload, its directory, the
 * one-watch claim); the store knows nothing of the watch, and its destroy
 * asserts that no watch is left on it.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "policy/policy_priv.h"

struct bg_policy_watch {
    pthread_mutex_t mu;  /* guards st against the pool thread */
    bg_policy_store *st; /* NULL after unwatch; written on the loop thread */
    uv_loop_t *loop;
    uv_fs_event_t ev;  /* the directory */
    uv_fs_event_t pev; /* its parent, when the path is a symlink */
    uv_timer_t timer;
    uv_work_t work;
    unsigned debounce_ms;
    int running;          /* a reload is on the pool */
    int again;            /* an event arrived during it */
    int open_handles;     /* 3 until closed */
    char armed[PATH_MAX]; /* realpath of the directory when armed */
    char link_name[256];  /* basename of the path when it is a symlink */
};
typedef bg_policy_watch watch;

static void maybe_free(watch *w)
{
    if (!w->st && !w->running && w->open_handles == 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
    }
}

static void on_close(uv_handle_t *h)
{
    watch *w = h->data;
    w->open_handles--;
    maybe_free(w);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status);

/* (Re)start the directory watch on the path; remember what it resolved to. */
static int arm_dir(watch *w)
{
    const char *dir = bg__store_dir(w->st);
    if (!realpath(dir, w->armed))
        snprintf(w->armed, sizeof w->armed, "%s", dir);
    uv_fs_event_stop(&w->ev);
    return uv_fs_event_start(&w->ev, on_event, dir, 0);
}

static void work_run(uv_work_t *req)
{
    watch *w = req->data;
    bg_err err;
    pthread_mutex_lock(&w->mu); /* unwatch waits here for a running reload */
    if (w->st)
        bg_policy_store_reload(w->st, "watch", &err); /* logs and records status itself */
    pthread_mutex_unlock(&w->mu);
}

static void on_timer(uv_timer_t *t);

static void work_done(uv_work_t *req, int status)
{
    (void)status;
    watch *w = req->data;
    w->running = 0;
    if (!w->st) {
        maybe_free(w);
        return;
    }
    if (w->again) {
        w->again = 0;
        uv_timer_start(&w->timer, on_timer, w->debounce_ms, 0);
    }
}

static void on_timer(uv_timer_t *t)
{
    watch *w = t->data;
    if (!w->st)
        return;
    if (w->running) {
        w->again = 1;
        return;
    }
    char now[PATH_MAX];
    if (realpath(bg__store_dir(w->st), now) && strcmp(now, w->armed) != 0) {
        BG_INFO("policy", "watch: %s now resolves to %s: re-armed", bg__store_dir(w->st), now);
        if (arm_dir(w) != 0)
            BG_ERROR("policy", "watch on %s lost: reload with SIGHUP", bg__store_dir(w->st));
    }
    w->running = 1;
    w->work.data = w;
    if (uv_queue_work(w->loop, &w->work, work_run, work_done) != 0) {
        w->running = 0;
        BG_ERROR("policy", "watch: cannot queue the reload");
    }
}

static void schedule(watch *w)
{
    if (w->running)
        w->again = 1;
    else
        uv_timer_start(&w->timer, on_timer, w->debounce_ms, 0);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    watch *w = h->data;
    (void)events;
    if (!w->st)
        return;
    if (status >= 0 && filename && bg_policy_is_test_file(filename)) {
        BG_DEBUG("policy", "watch: %s changed: a policy unit test, no reload", filename);
        return;
    }
    if (status < 0) {
        BG_WARN("policy", "watch on %s failed (%s): re-arming", bg__store_dir(w->st),
                uv_strerror(status));
        if (arm_dir(w) != 0)
            BG_ERROR("policy", "watch on %s lost: reload with SIGHUP", bg__store_dir(w->st));
    }
    BG_DEBUG("policy", "watch: %s changed", filename ? filename : "(dir)");
    schedule(w);
}

/* The parent of a symlinked policy path: only the link's own name counts
 * (and the kubelet's temp link renamed over it). */
static void on_parent_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    watch *w = h->data;
    (void)events;
    if (!w->st || status < 0 || !filename)
        return;
    size_t n = strlen(w->link_name);
    if (strcmp(filename, w->link_name) == 0 ||
        (strncmp(filename, w->link_name, n) == 0 && strcmp(filename + n, "_tmp") == 0))
        schedule(w);
}

/* When dir is a symlink, watch its parent for the link being replaced. */
static int arm_parent(watch *w, bg_err *err)
{
    const char *dir = bg__store_dir(w->st);
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISLNK(st.st_mode))
        return BG_OK;
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : parent;
    snprintf(w->link_name, sizeof w->link_name, "%s", base);
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    int rc = uv_fs_event_start(&w->pev, on_parent_event, parent, 0);
    if (rc != 0)
        return bg_err_set(err, BG_EIO,
                          "policy watch: cannot watch %s (the parent of the "
                          "symlink %s): %s",
                          parent, dir, uv_strerror(rc));
    return BG_OK;
}

static void close_all(watch *w)
{
    uv_close((uv_handle_t *)&w->ev, on_close);
    uv_close((uv_handle_t *)&w->pev, on_close);
    uv_close((uv_handle_t *)&w->timer, on_close);
}

int bg_policy_watch_start(bg_policy_store *st, uv_loop_t *loop, unsigned debounce_ms,
                          bg_policy_watch **out, bg_err *err)
{
    *out = NULL;
    if (bg__store_claim_watch(st, 1) != 0)
        return bg_err_set(err, BG_EINVAL, "policy watch: %s is already watched", bg__store_dir(st));
    watch *w = calloc(1, sizeof *w);
    if (!w) {
        bg__store_claim_watch(st, 0);
        return bg_err_set(err, BG_ENOMEM, "policy watch: out of memory");
    }
    pthread_mutex_init(&w->mu, NULL);
    w->st = st;
    w->loop = loop;
    w->debounce_ms = debounce_ms;
    uv_fs_event_init(loop, &w->ev);
    uv_fs_event_init(loop, &w->pev);
    uv_timer_init(loop, &w->timer);
    w->ev.data = w->pev.data = w->timer.data = w;
    w->open_handles = 3;
    int rc = arm_dir(w);
    if (rc != 0) {
        bg_err_set(err, BG_EIO, "policy watch: cannot watch %s: %s", bg__store_dir(st),
                   uv_strerror(rc));
    } else {
        rc = arm_parent(w, err);
    }
    if (rc != 0) {
        w->st = NULL;
        bg__store_claim_watch(st, 0);
        close_all(w);
        return BG_EIO;
    }
    *out = w;
    return BG_OK;
}

void bg_policy_watch_stop(bg_policy_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu); /* waits for a reload running on the pool */
    bg_policy_store *st = w->st;
    w->st = NULL;
    pthread_mutex_unlock(&w->mu);
    BG_ASSERT(st != NULL, "policy watch %p stopped twice", (void *)w);
    bg__store_claim_watch(st, 0);
    uv_fs_event_stop(&w->ev);
    uv_fs_event_stop(&w->pev);
    uv_timer_stop(&w->timer);
    close_all(w);
}
