/*
 * test_engine_evict.c — a flood of sessions cannot lock others out
 * (issue 11, item 8), in the engine:
 *
 *  - eviction by count: with max_sessions 3 (posteriors in memory), 40 more
 *    sessions each get their Observe; at most 3 hold a posterior; the first
 *    session's posterior, evicted, comes back bit-identical (memcmp of the
 *    posterior and of the verdict's bound) with its observation count;
 *  - eviction by bytes: max_bytes fits about three 1024-hypothesis
 *    posteriors; 12 sessions work, an evicted one comes back identical;
 *  - per-identity sessions: max_sessions_per_identity 3 refuses uid:1's
 *    fourth session with BG_ELIMIT naming the identity, the limit and the
 *    flag, and nothing is stored; uid:2 and "" (plain TCP, one identity)
 *    still start theirs; an existing session takes more observations;
 *    forgetting one frees a place;
 *  - under 4 threads with max_sessions 4 (every call may evict another
 *    thread's idle posterior while that thread evaluates or observes its
 *    own; at most 3 others are in use, so one resident is always idle or
 *    being evicted, and no call may fail): each of the 16 sessions ends with its observations and a
 *    posterior bitwise equal to a single-threaded engine's without
 *    eviction; every verdict read had a bound in [0, 1];
 *  - observation rate: the token bucket (quota.h) at explicit times: burst,
 *    refusal naming --max-observe-rate, refill at the rate, capped at the
 *    burst, identities independent; bg_engine_admit on the engine.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"
#include "engine/engine.h"
#include "engine/posterior.h"
#include "engine/quota.h"

/* Observe n random outcomes into session (d features). */
static void feed(bg_engine *e, const bg_guard *g, const char *session, size_t d, int n)
{
    double x[10];
    bg_err err;
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < d; k++)
            x[k] = fx_urand() < 0.5 ? 1.0 : 0.0;
        bg_observation o = fx_pull(x, d, fx_nrand() + 1.0);
        CHECK_INT(bg_engine_observe(e, g, session, &o, NULL, &err), BG_OK);
    }
}

/* The first session's posterior and verdict survive a flood that evicts
 * it, bit for bit. */
static void flood(bg_engine *e, const bg_guard *g, size_t d, size_t n, int sessions,
                  uint64_t max_resident)
{
    bg_err err;
    double *before = malloc(n * sizeof *before), *after = malloc(n * sizeof *after);
    CHECK(before && after);
    feed(e, g, "first", d, 7);
    CHECK_INT(bg_engine_posterior(e, g, "first", before, n, &err), BG_OK);
    double x[10] = {1, 0, 1, 1, 0, 1, 0, 0, 1, 1};
    bg_verdict v0, v1;
    bg_observation probe = fx_pull(x, d, 0);
    CHECK_INT(bg_engine_evaluate(e, g, "first", &probe.action, &v0, &err), BG_OK);
    for (int i = 0; i < sessions; i++) {
        char id[32];
        snprintf(id, sizeof id, "flood-%d", i);
        feed(e, g, id, d, 1);
    }
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK(st.resident_sessions <= max_resident, "%llu resident, bound %llu",
          (unsigned long long)st.resident_sessions, (unsigned long long)max_resident);
    CHECK(st.evictions >= (uint64_t)sessions + 1 - max_resident, "%llu evictions",
          (unsigned long long)st.evictions);
    CHECK(st.sessions >= (uint64_t)sessions + 1); /* histories stay */
    CHECK_INT(bg_engine_posterior(e, g, "first", after, n, &err), BG_OK);
    CHECK(memcmp(before, after, n * sizeof *before) == 0, "rebuilt posterior differs");
    CHECK_INT(bg_engine_evaluate(e, g, "first", &probe.action, &v1, &err), BG_OK);
    CHECK(memcmp(&v0.harm_bound, &v1.harm_bound, sizeof(double)) == 0, "bound %.17g vs %.17g",
          v0.harm_bound, v1.harm_bound);
    CHECK_INT(v1.observations, 7);
    CHECK_INT(v1.plausible_set_size, v0.plausible_set_size);
    free(before);
    free(after);
}

static void evict_by_count(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "ev", "bandit", "{features: 4, theta: 2}", "noniid", "alpha: 0.001", 0.3);
    bg_engine_opts opts = {.max_sessions = 3};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    flood(e, bg_guard_build_guard(gb), 4, 16, 40, 3);
    /* A key longer than session.c's stack copy hashes incrementally: the
     * same session is found again. */
    char longid[400];
    memset(longid, 'k', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    feed(e, bg_guard_build_guard(gb), longid, 4, 2);
    bg_posterior_summary sum;
    CHECK_INT(bg_engine_summary(e, bg_guard_build_guard(gb), longid, &sum, &err), BG_OK);
    CHECK_INT(sum.observations, 2);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
}

static void evict_by_bytes(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "evb", "bandit", "{features: 10, theta: 4}", "noniid", "alpha: 0.001", 0.3);
    size_t post = bg__posterior_bytes(1024);
    bg_engine_opts opts = {.max_bytes = 3 * post + post / 2}; /* histories: ~10 KiB */
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    flood(e, bg_guard_build_guard(gb), 10, 1024, 12, 3);
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK(st.bytes <= opts.max_bytes, "%llu bytes", (unsigned long long)st.bytes);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
}

#define TT 4    /* threads */
#define TS 4    /* sessions per thread */
#define TOBS 25 /* observations per session */
#define TN 16   /* hypotheses: bandit d = 4 */

typedef struct worker {
    bg_engine *e;
    const bg_guard *g;
    int t;
    int bad;
} worker;

static double tfeat(int t, int s, int i, int k)
{
    return (double)(((unsigned)(t * 131 + s * 37 + i * 17 + k * 7) >> (k % 3)) & 1);
}

static bg_observation tobs(int t, int s, int i, double *x)
{
    for (int k = 0; k < 4; k++)
        x[k] = tfeat(t, s, i, k);
    return fx_pull(x, 4, (double)((t + s + i) % 5) * 0.7);
}

static void *work(void *arg)
{
    worker *w = arg;
    bg_err err;
    double x[4];
    for (int i = 0; i < TOBS; i++) {
        for (int s = 0; s < TS; s++) {
            char id[32];
            snprintf(id, sizeof id, "t%d-s%d", w->t, s);
            bg_observation o = tobs(w->t, s, i, x);
            if (bg_engine_observe(w->e, w->g, id, &o, NULL, &err) != BG_OK)
                w->bad++;
            bg_verdict v;
            if (bg_engine_evaluate(w->e, w->g, id, &o.action, &v, &err) != BG_OK ||
                !(v.harm_bound >= 0 && v.harm_bound <= 1))
                w->bad++;
        }
    }
    return NULL;
}

static void evict_under_threads(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "evt", "bandit", "{features: 4, theta: 2}", "noniid", "alpha: 0.001", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine_opts opts = {.max_sessions = TT};
    bg_engine *e, *ref;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    CHECK_INT(bg_engine_create(NULL, &ref, &err), BG_OK);
    pthread_t th[TT];
    worker w[TT];
    for (int t = 0; t < TT; t++) {
        w[t] = (worker){.e = e, .g = g, .t = t};
        CHECK_INT(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < TT; t++) {
        CHECK_INT(pthread_join(th[t], NULL), 0);
        CHECK_INT(w[t].bad, 0);
    }
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.observations, TT * TS * TOBS);
    CHECK(st.resident_sessions <= TT && st.evictions > 0, "%llu resident, %llu evictions",
          (unsigned long long)st.resident_sessions, (unsigned long long)st.evictions);
    double x[4], got[TN], want[TN];
    for (int t = 0; t < TT; t++) {
        for (int s = 0; s < TS; s++) {
            char id[32];
            snprintf(id, sizeof id, "t%d-s%d", t, s);
            for (int i = 0; i < TOBS; i++) {
                bg_observation o = tobs(t, s, i, x);
                CHECK_INT(bg_engine_observe(ref, g, id, &o, NULL, &err), BG_OK);
            }
            CHECK_INT(bg_engine_posterior(e, g, id, got, TN, &err), BG_OK);
            CHECK_INT(bg_engine_posterior(ref, g, id, want, TN, &err), BG_OK);
            CHECK(memcmp(got, want, sizeof got) == 0, "session %s differs", id);
        }
    }
    bg_engine_destroy(ref);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
}

static void sessions_per_identity(bg_plugin_host *h)
{
    bg_guard_build *gb = fx_guard(h, "q", "bandit", "{features: 4, theta: 2}", "iid", "", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine_opts opts = {.max_sessions_per_identity = 3};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    double x[4] = {1, 0, 1, 0};
    bg_observation o = fx_pull(x, 4, 1.0);
    const char *ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        CHECK_INT(bg_engine_observe_owned(e, g, ids[i], &o, NULL, "uid:1", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "d", &o, NULL, "uid:1", NULL, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "\"uid:1\"") && strstr(err.msg, "--max-sessions-per-identity=3"), "%s",
          err.msg);
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.observations, 3); /* the refused one is not stored */
    /* Another identity, and plain TCP's "" (one identity), are unaffected. */
    CHECK_INT(bg_engine_observe_owned(e, g, "d", &o, NULL, "uid:2", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "e", &o, NULL, "", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "f", &o, NULL, "", NULL, &err), BG_OK);
    /* An existing session is not a new one; no owner means no quota. */
    CHECK_INT(bg_engine_observe_owned(e, g, "a", &o, NULL, "uid:1", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "d", &o, NULL, "uid:1", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe(e, g, "g", &o, NULL, &err), BG_OK);
    /* Ending a session gives its place back. */
    CHECK_INT(bg_engine_forget(e, "q", "b"), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "h", &o, NULL, "uid:1", NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe_owned(e, g, "i", &o, NULL, "uid:1", NULL, &err), BG_ELIMIT);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
}

static void observation_rate(void)
{
    uint8_t key[16] = {0};
    bg__quota_limits lim = {.rate = 2.0, .burst = 3.0};
    bg__quota *q;
    bg_err err;
    CHECK_INT(bg__quota_create(&lim, key, &q, &err), BG_OK);
    const uint64_t s = 1000000000ull;
    for (int i = 0; i < 3; i++)
        CHECK_INT(bg__quota_take(q, "uid:7", 10 * s, &err), BG_OK);
    CHECK_INT(bg__quota_take(q, "uid:7", 10 * s, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "\"uid:7\"") && strstr(err.msg, "--max-observe-rate=2"), "%s", err.msg);
    CHECK_INT(bg__quota_take(q, "uid:8", 10 * s, &err), BG_OK);         /* its own bucket */
    CHECK_INT(bg__quota_take(q, "uid:7", 10 * s + s / 2, &err), BG_OK); /* 0.5 s: one token */
    CHECK_INT(bg__quota_take(q, "uid:7", 10 * s + s / 2, &err), BG_ELIMIT);
    for (int i = 0; i < 3; i++) /* an hour later: the burst, not 7200 */
        CHECK_INT(bg__quota_take(q, "uid:7", 3610 * s, &err), BG_OK);
    CHECK_INT(bg__quota_take(q, "uid:7", 3610 * s, &err), BG_ELIMIT);
    bg__quota_destroy(q);

    bg_engine_opts opts = {.max_observe_rate = 0.001, .observe_burst = 2};
    bg_engine *e;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    CHECK_INT(bg_engine_admit(e, "", &err), BG_OK);
    CHECK_INT(bg_engine_admit(e, "", &err), BG_OK);
    CHECK_INT(bg_engine_admit(e, "", &err), BG_ELIMIT);
    CHECK_INT(bg_engine_admit(e, "uid:0", &err), BG_OK);
    bg_engine_destroy(e);
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK); /* rate 0: no limit */
    for (int i = 0; i < 10000; i++)
        CHECK_INT(bg_engine_admit(e, "", &err), BG_OK);
    bg_engine_destroy(e);
}

int main(void)
{
    fx_rng_state = 88172645463325252ull;
    bg_plugin_host *h = fx_host();
    evict_by_count(h);
    evict_by_bytes(h);
    evict_under_threads(h);
    sessions_per_identity(h);
    observation_rate();
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_evict");
}
