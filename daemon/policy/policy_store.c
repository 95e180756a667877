/*
 * policy_store.c — the current policy set, swapped atomically on reload.
 *
 * State and transitions (SQLite-style; each names its function):
 *
 *   [no store] --create--> [serving S0]            first load must succeed
 *   [serving S] --reload ok--> [serving S']        build S' beside, swap, drain S
 *   [serving S] --reload failed--> [serving S]     errors kept for Status
 *   [serving S] --destroy--> [no store]            caller has dropped its refs
 *                                                  and stopped its watch
 *
 * Invariants:
 *   1. cur is never NULL while the store exists and always a fully
 *      validated set (a bad set is freed, never published);
 *   2. reloads are serialised by reload_mu (a second caller waits);
 *   3. a reader's reference keeps its set (and the plugin code it uses)
 *      alive; the store's own reference moves to the new set at the swap.
 *   4. the swap and the status that describes it (revision, trigger,
 *      times) change under status_mu together, so acquire_status never
 *      pairs a set with another reload's status (a Status call once saw
 *      the new revision beside the previous reload's trigger).
 *
 * Reader safety without a lock: acquire() is `acquiring++; s = cur;
 * ref(s); acquiring--` (seq_cst). The reloader swaps cur, then waits until
 * acquiring reads 0 before dropping the store's reference on the old set:
 * any reader that loaded the old pointer incremented `acquiring` before the
 * load and decrements it only after its ref, so once the reloader sees 0
 * after the swap, no reader can still be about to ref the old set. Readers
 * never wait; the (rare) reloader yields until the window is empty.
 *
 * Threads: acquire/unref/status from any thread; reload from any thread
 * (serialised); create/destroy on one thread, destroy after every
 * reference handed out was dropped and after bg_policy_watch_stop
 * (policy_watch.c calls the store, never the other way round).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "policy/policy_priv.h"

struct bg_policy_store {
    char *dir;
    bg_plugin_host *host;         /* borrowed */
    _Atomic(bg_policy_set *) cur; /* store's reference */
    atomic_long acquiring;        /* readers between load and ref */
    pthread_mutex_t reload_mu;    /* serialises reloads */
    pthread_mutex_t status_mu;    /* guards status */
    bg_policy_status status;
    atomic_int watched; /* 1 while a bg_policy_watch is on it */
};

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Join errors into buf ("\n"-separated), noting how many did not fit. */
static void join_errors(const bg_policy_errors *e, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->n; i++) {
        size_t need = strlen(e->msgs[i]) + (used ? 1 : 0);
        if (used + need + 40 >= len) {
            snprintf(buf + used, len - used, "%s(and %zu more)", used ? "\n" : "", e->n - i);
            return;
        }
        used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "\n" : "", e->msgs[i]);
    }
}

const char *bg__store_dir(const bg_policy_store *st)
{
    return st->dir;
}

int bg__store_claim_watch(bg_policy_store *st, int claim)
{
    if (!claim) {
        int was = atomic_exchange(&st->watched, 0);
        BG_ASSERT(was == 1, "policy store %s: watch released but none claimed", st->dir);
        return 0;
    }
    int expect = 0;
    return atomic_compare_exchange_strong(&st->watched, &expect, 1) ? 0 : -1;
}

/* Build a set; on failure fill err with every error. */
static int build(bg_policy_store *st, bg_policy_set **out, char *errbuf, size_t errlen)
{
    bg_policy_errors errs = {0};
    bg_err err;
    if (bg_plugin_host_rescan(st->host, &err) != BG_OK)
        bg__errs_add(&errs, "%s", err.msg);
    int rc = bg_policy_set_load(st->dir, st->host, out, &errs);
    if (rc == BG_OK && errs.n) { /* the plugin dir itself could not be read */
        bg_policy_set_unref(*out);
        *out = NULL;
        rc = BG_ECONFIG;
    }
    if (rc) {
        char perr[2048];
        bg_plugin_host_errors_copy(st->host, perr, sizeof perr);
        if (*perr) /* plugin files that failed to load explain missing plugins */
            bg__errs_add(&errs, "%s", perr);
    }
    join_errors(&errs, errbuf, errlen);
    bg_policy_errors_free(&errs);
    return rc;
}

int bg_policy_store_create(const char *dir, bg_plugin_host *host, bg_policy_store **out,
                           bg_err *err)
{
    *out = NULL;
    bg_policy_store *st = calloc(1, sizeof *st);
    if (!st || !(st->dir = strdup(dir))) {
        free(st);
        return bg_err_set(err, BG_ENOMEM, "policy store: out of memory");
    }
    st->host = host;
    atomic_init(&st->acquiring, 0);
    pthread_mutex_init(&st->reload_mu, NULL);
    pthread_mutex_init(&st->status_mu, NULL);
    bg_policy_set *s = NULL;
    char errs[sizeof st->status.last_errors];
    int rc = build(st, &s, errs, sizeof errs);
    if (rc) {
        bg_err_set(err, rc, "%s", errs);
        pthread_mutex_destroy(&st->reload_mu);
        pthread_mutex_destroy(&st->status_mu);
        free(st->dir);
        free(st);
        return rc;
    }
    atomic_init(&st->cur, s);
    bg_policy_status *ss = &st->status;
    snprintf(ss->revision, sizeof ss->revision, "%s", bg_policy_set_revision(s));
    ss->policies = bg_policy_set_count(s);
    ss->reloads_ok = 0;
    ss->last_success_unix_ms = ss->last_attempt_unix_ms = unix_ms();
    snprintf(ss->last_trigger, sizeof ss->last_trigger, "start");
    BG_INFO("policy", "loaded %zu policies from %s, revision %.12s", bg_policy_set_count(s), dir,
            bg_policy_set_revision(s));
    *out = st;
    return BG_OK;
}

void bg_policy_store_destroy(bg_policy_store *st)
{
    if (!st)
        return;
    BG_ASSERT(atomic_load(&st->watched) == 0,
              "policy store %s destroyed while watched: bg_policy_watch_stop first", st->dir);
    bg_policy_set_unref(atomic_load(&st->cur));
    pthread_mutex_destroy(&st->reload_mu);
    pthread_mutex_destroy(&st->status_mu);
    free(st->dir);
    free(st);
}

bg_policy_set *bg_policy_store_acquire(bg_policy_store *st)
{
    atomic_fetch_add(&st->acquiring, 1);
    bg_policy_set *s = atomic_load(&st->cur);
    bg_policy_set_ref(s);
    atomic_fetch_sub(&st->acquiring, 1);
    return s;
}

int bg_policy_store_reload(bg_policy_store *st, const char *trigger, bg_err *err)
{
    pthread_mutex_lock(&st->reload_mu);
    int64_t now = unix_ms();
    bg_policy_set *s = NULL;
    char errs[sizeof st->status.last_errors];
    int rc = build(st, &s, errs, sizeof errs);
    bg_policy_set *old = NULL;
    if (rc == BG_OK) /* trained samplers of unchanged sampled policies keep serving */
        bg__policy_set_inherit(s, atomic_load(&st->cur));
    /* the swap and its status together (invariant 4) */
    pthread_mutex_lock(&st->status_mu);
    if (rc == BG_OK)
        old = atomic_exchange(&st->cur, s);
    bg_policy_status *ss = &st->status;
    ss->last_attempt_unix_ms = now;
    snprintf(ss->last_trigger, sizeof ss->last_trigger, "%s", trigger ? trigger : "");
    if (rc == BG_OK) {
        ss->reloads_ok++;
        ss->last_success_unix_ms = now;
        ss->policies = bg_policy_set_count(s);
        snprintf(ss->revision, sizeof ss->revision, "%s", bg_policy_set_revision(s));
        ss->last_errors[0] = '\0';
    } else {
        ss->reloads_failed++;
        snprintf(ss->last_errors, sizeof ss->last_errors, "%s", errs);
    }
    pthread_mutex_unlock(&st->status_mu);
    if (old) {
        while (atomic_load(&st->acquiring) != 0)
            sched_yield(); /* see the header comment: drain the acquire window */
        bg_policy_set_unref(old);
    }
    if (rc == BG_OK) {
        BG_INFO("policy", "reload (%s): %zu policies, revision %.12s", trigger ? trigger : "",
                bg_policy_set_count(s), bg_policy_set_revision(s));
        bg_err_clear(err);
    } else {
        BG_ERROR("policy", "reload (%s) refused, the previous policies keep serving:\n%s",
                 trigger ? trigger : "", errs);
        bg_err_set(err, BG_ECONFIG, "%s", errs);
    }
    pthread_mutex_unlock(&st->reload_mu);
    return rc == BG_OK ? BG_OK : BG_ECONFIG;
}

void bg_policy_store_status(bg_policy_store *st, bg_policy_status *out)
{
    pthread_mutex_lock(&st->status_mu);
    *out = st->status;
    pthread_mutex_unlock(&st->status_mu);
}

bg_policy_set *bg_policy_store_acquire_status(bg_policy_store *st, bg_policy_status *out)
{
    pthread_mutex_lock(&st->status_mu);
    *out = st->status;
    bg_policy_set *s = bg_policy_store_acquire(st);
    pthread_mutex_unlock(&st->status_mu);
    return s;
}
