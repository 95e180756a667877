/*
 * test_policy_reload.c — the store under load. 8 reader threads acquire the
 * current set continuously and do evaluate-like work on it (match, batched
 * harm through the model instance, the estimator) while the main thread
 * runs 100 reloads, 20 of them invalid. Checks: every revision a reader saw
 * is one that was valid, and within one snapshot the policy's threshold is
 * the one written with that revision (no torn sets); invalid reloads are
 * refused and counted, the old set keeps serving; the final set is the
 * last valid one; concurrent reload callers are serialised; a set read
 * with its status (bg_policy_store_acquire_status, what Status reports)
 * always carries its own reload's revision. Then: a
 * plugin .so replaced on disk takes effect for new acquisitions after a
 * reload while a set acquired before keeps the old code. Run under ASan
 * this also shows nothing leaks (sets, instances, plugin handles). Last: a
 * sampled policy's session samplers (its bg_sampled, trained through the
 * engine) carry over a reload that keeps its model, sampler plugin and
 * sampler config, and not one that changes either; the shared samplers
 * outlive the set that made them and go with the last one holding them.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "engine/sampled.h"
#include "policy_test.h"

#define READERS 8
#define RELOADS 100
#define MAX_SEEN 4096

typedef struct seen {
    char rev[65];
    double threshold;
} seen;

typedef struct reader {
    pthread_t t;
    bg_policy_store *st;
    atomic_int *stop;
    atomic_int *started; /* readers past their first acquisition */
    seen seen[MAX_SEEN];
    size_t n_seen;
    uint64_t iterations;
    int errors;
    int status_torn; /* acquire_status gave a set beside another reload's status */
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    uint64_t ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    double harm[8], lp[8];
    while (!atomic_load(r->stop)) {
        bg_policy_set *s = bg_policy_store_acquire(r->st);
        const bg_policy *p = bg_policy_set_match(s, "transfer_funds");
        if (!p || strcmp(p->guard.revision, bg_policy_set_revision(s)) != 0) {
            r->errors++;
        } else {
            const bg_guard *g = &p->guard;
            bg_action a = {.tool = "transfer_funds", .id = "", .arguments_json = ""};
            size_t n = (size_t)g->model->count(g->model_inst);
            for (size_t i = 0; i < n; i++)
                lp[i] = -log((double)n);
            bg_estimate_in in = {.n = n, .ids = ids, .log_post = lp, .harm = harm};
            bg_estimate_out out;
            if (n != 8 || g->model->harm(g->model_inst, &a, NULL, 0, ids, n, harm) ||
                g->estimator->estimate(g->estimator_inst, &in, &out) || out.bound != 0.25)
                r->errors++;
            if (!r->n_seen || strcmp(r->seen[r->n_seen - 1].rev, g->revision) != 0 ||
                r->seen[r->n_seen - 1].threshold != g->threshold) {
                if (r->n_seen < MAX_SEEN) {
                    snprintf(r->seen[r->n_seen].rev, 65, "%s", g->revision);
                    r->seen[r->n_seen].threshold = g->threshold;
                    r->n_seen++;
                }
            }
        }
        bg_policy_set_unref(s);
        /* a set and the status of the reload that published it, together
         * (what Status reports): never another reload's revision */
        bg_policy_status ps;
        s = bg_policy_store_acquire_status(r->st, &ps);
        if (strcmp(ps.revision, bg_policy_set_revision(s)) != 0)
            r->status_torn++;
        bg_policy_set_unref(s);
        if (r->iterations++ == 0)
            atomic_fetch_add(r->started, 1);
    }
    return NULL;
}

/* Policy k: threshold (k+1)/1000; invalid ones have an out-of-range
 * priority. */
static void write_policy(const char *dir, int k, int valid)
{
    char p[2048], extra[96];
    snprintf(extra, sizeof extra, "  priority: %d\n", valid ? 1 : 5000000);
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", extra);
    char *t = strstr(p, "threshold: 0.05\n");
    char tail[128];
    snprintf(tail, sizeof tail, "threshold: %.3f\n%s", (double)(k + 1) / 1000.0, extra);
    snprintf(t, sizeof p - (size_t)(t - p), "%s", tail);
    CHECK_INT(pt_write(dir, "payments.yaml", p), 0);
}

static void *reloader_main(void *arg)
{
    bg_err err;
    for (int i = 0; i < 5; i++)
        if (bg_policy_store_reload(arg, "rpc", &err) != BG_OK)
            return arg;
    return NULL;
}

/* A store over dir with the fixture plugins; NULL (host destroyed) on error. */
static bg_policy_store *open_store(const char *dir, bg_plugin_host **host)
{
    bg_policy_store *st = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", host, &err), BG_OK);
    CHECK_INT(bg_policy_store_create(dir, *host, &st, &err), BG_OK);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        bg_plugin_host_destroy(*host);
    }
    return st;
}

static void test_under_load(void)
{
    char dir[128];
    pt_mkdtemp(dir, sizeof dir, "reload");
    write_policy(dir, -1 + 50, 1); /* threshold 0.050 */
    bg_plugin_host *host = NULL;
    bg_err err;
    bg_policy_store *st = open_store(dir, &host);
    if (!st)
        return;
    seen valid[RELOADS + 1];
    size_t n_valid = 0;
    bg_policy_status ss;
    bg_policy_store_status(st, &ss);
    snprintf(valid[n_valid].rev, 65, "%s", ss.revision);
    valid[n_valid++].threshold = 0.05;
    CHECK_STR(ss.last_trigger, "start");

    atomic_int stop = 0, started = 0;
    static reader readers[READERS];
    for (int i = 0; i < READERS; i++) {
        memset(&readers[i], 0, sizeof readers[i]);
        readers[i].st = st;
        readers[i].stop = &stop;
        readers[i].started = &started;
        pthread_create(&readers[i].t, NULL, reader_main, &readers[i]);
    }
    int ok = 0, failed = 0;
    for (int k = 0; k < RELOADS; k++) {
        int is_valid = k % 5 != 4; /* 20 invalid: priority out of range */
        write_policy(dir, k, is_valid);
        int rc = bg_policy_store_reload(st, "rpc", &err);
        if (is_valid) {
            CHECK_INT(rc, BG_OK);
            ok += rc == BG_OK;
            bg_policy_store_status(st, &ss);
            snprintf(valid[n_valid].rev, 65, "%s", ss.revision);
            valid[n_valid++].threshold = (double)(k + 1) / 1000.0;
        } else {
            CHECK_INT(rc, BG_ECONFIG);
            failed += rc == BG_ECONFIG;
            CHECK(strstr(err.msg, "key 'spec.priority': 5000000 is out of range") != NULL);
        }
    }
    /* On a loaded machine a reader may not have run yet when the 100
     * reloads are done (0.3 s): every reader acquires at least once
     * before the stop, so "iterations > 0" checks the store, not the
     * scheduler. */
    while (atomic_load(&started) < READERS)
        sched_yield();
    atomic_store(&stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(readers[i].t, NULL);
        CHECK_INT(readers[i].errors, 0);
        CHECK_INT(readers[i].status_torn, 0);
        CHECK(readers[i].iterations > 0);
        total += readers[i].iterations;
        for (size_t j = 0; j < readers[i].n_seen; j++) {
            int found = 0;
            for (size_t v = 0; v < n_valid; v++)
                if (!strcmp(valid[v].rev, readers[i].seen[j].rev) &&
                    fabs(valid[v].threshold - readers[i].seen[j].threshold) < 1e-12)
                    found = 1;
            if (!found)
                fprintf(stderr, "reader %d saw revision %.12s threshold %g: not a valid set\n", i,
                        readers[i].seen[j].rev, readers[i].seen[j].threshold);
            CHECK(found);
        }
    }
    printf("reload under load: %d ok, %d refused, %llu acquisitions by %d readers\n", ok, failed,
           (unsigned long long)total, READERS);
    CHECK_INT(ok, 80);
    CHECK_INT(failed, 20);
    bg_policy_store_status(st, &ss);
    CHECK_INT(ss.reloads_ok, 80);
    CHECK_INT(ss.reloads_failed, 20);
    CHECK_INT(ss.policies, 1);
    CHECK_STR(ss.last_trigger, "rpc");
    CHECK(ss.last_success_unix_ms > 0 && ss.last_attempt_unix_ms >= ss.last_success_unix_ms);
    CHECK(strstr(ss.last_errors, "payments.yaml:9:13: key 'spec.priority'") != NULL);
    /* The last reload (k = 99) was invalid: the last valid set serves. */
    CHECK_STR(ss.revision, valid[n_valid - 1].rev);
    bg_policy_set *s = bg_policy_store_acquire(st);
    CHECK_STR(bg_policy_set_revision(s), valid[n_valid - 1].rev);
    CHECK_NEAR(bg_policy_set_at(s, 0)->guard.threshold, 0.099, 1e-12);
    bg_policy_set_unref(s);

    /* Concurrent reload callers are serialised: 4 threads x 5 reloads of a
     * valid directory all succeed and are all counted. */
    write_policy(dir, 41, 1);
    pthread_t rl[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&rl[i], NULL, reloader_main, st);
    int all_ok = 1;
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(rl[i], &ret);
        all_ok &= ret == NULL;
    }
    CHECK(all_ok);
    bg_policy_store_status(st, &ss);
    CHECK_INT(ss.reloads_ok, 100);
    CHECK_INT(ss.reloads_failed, 20);
    CHECK_STR(ss.last_errors, "");
    CHECK_NEAR(pt_threshold(st), 0.042, 1e-12);
    bg_policy_store_destroy(st);
    bg_plugin_host_destroy(host);
    pt_rmtree(dir);
}

static double bound_now(const bg_policy_set *s)
{
    const bg_guard *g = &bg_policy_set_at(s, 0)->guard;
    double lp = 0, harm = 0.1;
    uint64_t id = 0;
    bg_estimate_in in = {.n = 1, .ids = &id, .log_post = &lp, .harm = &harm};
    bg_estimate_out out;
    if (g->estimator->estimate(g->estimator_inst, &in, &out))
        return -1;
    return out.bound;
}

static void test_plugin_replaced(void)
{
    char dir[128], pdir[128];
    pt_mkdtemp(dir, sizeof dir, "repl");
    pt_mkdtemp(pdir, sizeof pdir, "repl-plugins");
    write_policy(dir, 9, 1);
    CHECK_INT(pt_copy(FIX "/good/fx_model.so", pdir, "fx_model.so"), 0);
    CHECK_INT(pt_copy(FIX "/good/fx_est.so", pdir, "fx_est.so"), 0);
    bg_plugin_host *host = NULL;
    bg_policy_store *st = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(pdir, &host, &err), BG_OK);
    CHECK_INT(bg_policy_store_create(dir, host, &st, &err), BG_OK);
    if (st) {
        bg_policy_set *old = bg_policy_store_acquire(st);
        CHECK_NEAR(bound_now(old), 0.25, 0);
        uint64_t old_key = bg_policy_set_at(old, 0)->guard.model_key;
        CHECK_INT(pt_copy(FIX "/v2/fx_est.so", pdir, "fx_est.so"), 0);
        CHECK_INT(bg_policy_store_reload(st, "sighup", &err), BG_OK);
        bg_policy_set *cur = bg_policy_store_acquire(st);
        CHECK_NEAR(bound_now(cur), 0.5, 0);  /* new code for new requests */
        CHECK_NEAR(bound_now(old), 0.25, 0); /* in-flight keeps the old code */
        /* Only the estimator changed: the model's posterior identity holds. */
        CHECK(bg_policy_set_at(cur, 0)->guard.model_key == old_key);
        bg_policy_set_unref(old); /* last user: old .so dlclosed */
        bg_policy_set_unref(cur);
        bg_policy_store_destroy(st);
    }
    bg_plugin_host_destroy(host);
    pt_rmtree(dir);
    pt_rmtree(pdir);
}

static void write_sampled(const char *dir, double threshold, int n, double temperature)
{
    char p[1024];
    snprintf(p, sizeof p,
             "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: bits}\n"
             "spec:\n  match: {tools: [\"*\"]}\n"
             "  model: {plugin: fx_bits, config: {n: %d}}\n"
             "  estimator: {plugin: fx_est}\n  threshold: %g\n"
             "  sampler: {plugin: fx_sampler, samples: 64, config: {temperature: %g}}\n",
             n, threshold, temperature);
    CHECK_INT(pt_write(dir, "bits.yaml", p), 0);
}

/* The current set's policy's sampled state; with observe, one observation
 * of session "s" through the engine first, trained in the background. */
static bg_sampled *sampled_now(bg_policy_store *st, bg_policy_set **hold, bg_engine *e,
                               bg_sampled_trainer *tr, int observe)
{
    *hold = bg_policy_store_acquire(st);
    const bg_guard *g = &bg_policy_set_at(*hold, 0)->guard;
    CHECK(g->sampled != NULL);
    if (observe) {
        bg_observation o = {.action = {.id = "", .tool = "t", .arguments_json = ""}};
        bg_err err;
        CHECK_INT(bg_engine_observe(e, g, "s", &o, NULL, &err), BG_OK);
        bg_sampled_trainer_wait_idle(tr);
    }
    return g->sampled;
}

static void test_sampler_carryover(void)
{
    char dir[128];
    pt_mkdtemp(dir, sizeof dir, "carry");
    write_sampled(dir, 0.5, 12, 0.5);
    bg_plugin_host *host = NULL;
    bg_err err;
    bg_policy_store *st = open_store(dir, &host);
    if (!st)
        return;
    bg_sampled_trainer *tr = NULL;
    bg_engine *e = NULL;
    CHECK_INT(bg_sampled_trainer_create(NULL, &tr, &err), BG_OK);
    bg_engine_opts eo = {.trainer = tr};
    CHECK_INT(bg_engine_create(&eo, &e, &err), BG_OK);
    bg_policy_set *s1, *s2, *s3, *s4;
    bg_sampled *a = sampled_now(st, &s1, e, tr, 1);
    CHECK_INT(bg_sampled_samplers(a), 1);
    CHECK_INT(bg_sampled_state(a, "s"), BG_SAMPLER_TRAINED);
    /* only the threshold changes: shared */
    write_sampled(dir, 0.4, 12, 0.5);
    CHECK_INT(bg_policy_store_reload(st, "test", &err), BG_OK);
    bg_sampled *b = sampled_now(st, &s2, e, tr, 0);
    CHECK(b != a);
    CHECK_INT(bg_sampled_samplers(b), 1);
    CHECK_INT(bg_sampled_state(b, "s"), BG_SAMPLER_TRAINED);
    /* the sampler's config changes: fresh */
    write_sampled(dir, 0.4, 12, 0.7);
    CHECK_INT(bg_policy_store_reload(st, "test", &err), BG_OK);
    bg_sampled *c = sampled_now(st, &s3, e, tr, 0);
    CHECK_INT(bg_sampled_samplers(c), 0);
    CHECK_INT(bg_sampled_state(c, "s"), BG_SAMPLER_NONE);
    /* the model's config changes: fresh */
    write_sampled(dir, 0.4, 13, 0.7);
    CHECK_INT(bg_policy_store_reload(st, "test", &err), BG_OK);
    bg_sampled *d = sampled_now(st, &s4, e, tr, 0);
    CHECK_INT(bg_sampled_samplers(d), 0);
    /* the samplers s1 and s2 share outlive s1 (ASan: freed once, with s2);
     * a session without data samples s2's own sampler instance, never s1's
     * destroyed one */
    bg_policy_set_unref(s1);
    CHECK_INT(bg_sampled_samplers(b), 1);
    CHECK_INT(bg_sampled_state(b, "s"), BG_SAMPLER_TRAINED);
    bg_action act = {.id = "", .tool = "t", .arguments_json = ""};
    bg_verdict v;
    CHECK_INT(bg_engine_evaluate(e, &bg_policy_set_at(s2, 0)->guard, "fresh", &act, &v, &err),
              BG_OK);
    CHECK_INT(v.sampled, 1);
    bg_policy_set_unref(s2);
    bg_policy_set_unref(s3);
    bg_policy_set_unref(s4);
    bg_engine_destroy(e);
    bg_sampled_trainer_destroy(tr);
    bg_policy_store_destroy(st);
    bg_plugin_host_destroy(host);
    pt_rmtree(dir);
}

int main(void)
{
    test_under_load();
    test_plugin_replaced();
    test_sampler_carryover();
    CHECK_DONE("test_policy_reload");
}
