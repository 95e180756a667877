/*
 * test_engine_threads.c — the engine under concurrent callers.
 *
 * 4 threads share one engine and one guard (bandit d = 6, noniid). Each
 * thread observes its own session and evaluates it; all threads also
 * evaluate one shared session while thread 0 observes into it. At the end:
 *  - every private session holds exactly its observations, and its posterior
 *    is bitwise what a fresh single-threaded engine computes from the same
 *    observations (concurrency changed nothing);
 *  - every verdict read from the shared session had an observation count in
 *    0..SHARED and a bound in [0,1] (readers saw a consistent state);
 *  - stats count sessions and observations exactly.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "bg_test.h"
#include "eng_fixture.h"

#define T 4
#define PRIV 60
#define SHARED 40
#define D 6
#define N (1u << D)

static bg_engine *eng;
static const bg_guard *guard;
static int bad_reads;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double feat(int t, int i, int k)
{
    return (double)(((unsigned)(t * 131 + i * 17 + k * 7) >> (k % 3)) & 1);
}

static bg_observation obs_for(int t, int i, double *x)
{
    for (int k = 0; k < D; k++)
        x[k] = feat(t, i, k);
    bg_observation o = {
        .action = {.id = "", .tool = "pull", .arguments_json = "", .features = x, .n_features = D},
        .has_value = 1,
        .value = 0.5 * (double)((t + i) % 7)};
    return o;
}

static void *run(void *arg)
{
    int t = (int)(intptr_t)arg;
    char mine[16];
    snprintf(mine, sizeof mine, "p%d", t);
    bg_err err;
    for (int i = 0; i < PRIV; i++) {
        double x[D];
        bg_observation o = obs_for(t, i, x);
        if (bg_engine_observe(eng, guard, mine, &o, NULL, &err) != BG_OK)
            fprintf(stderr, "observe: %s\n", err.msg);
        bg_verdict v;
        if (bg_engine_evaluate(eng, guard, mine, &o.action, &v, &err) != BG_OK ||
            v.observations != (uint64_t)i + 1) {
            pthread_mutex_lock(&mu);
            bad_reads++;
            pthread_mutex_unlock(&mu);
        }
        if (t == 0 && i < SHARED) {
            bg_observation so = obs_for(99, i, x);
            bg_engine_observe(eng, guard, "shared", &so, NULL, &err);
        }
        int rc = bg_engine_evaluate(eng, guard, "shared", &o.action, &v, &err);
        if (rc != BG_OK || v.observations > SHARED || !(v.harm_bound >= 0 && v.harm_bound <= 1)) {
            pthread_mutex_lock(&mu);
            bad_reads++;
            pthread_mutex_unlock(&mu);
        }
    }
    return NULL;
}

int main(void)
{
    bg_plugin_host *h = fx_host();
    bg_guard_build *gb =
        fx_guard(h, "thr", "bandit", "{features: 6, theta: 3}", "noniid", "alpha: 0.001", 0.5);
    guard = bg_guard_build_guard(gb);
    bg_err err;
    CHECK_INT(bg_engine_create(NULL, &eng, &err), BG_OK);
    /* The shared session is read before it has data: that read uses the
     * policy's prior-only session (created here, deterministically). */
    bg_verdict v0;
    double x0[D];
    bg_observation o0 = obs_for(0, 0, x0);
    CHECK_INT(bg_engine_evaluate(eng, guard, "shared", &o0.action, &v0, &err), BG_OK);
    CHECK_INT(v0.observations, 0);
    pthread_t th[T];
    for (int t = 0; t < T; t++)
        pthread_create(&th[t], NULL, run, (void *)(intptr_t)t);
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    CHECK_INT(bad_reads, 0);
    bg_engine_stats st;
    bg_engine_stats_get(eng, &st);
    CHECK_INT(st.sessions, T + 2); /* private ones, shared, the prior-only one */
    CHECK_INT(st.observations, T * PRIV + SHARED);
    CHECK_INT(st.evaluations, 2 * T * PRIV + 1);
    /* Same posterior as a single-threaded replay, bitwise. */
    bg_engine *ref;
    CHECK_INT(bg_engine_create(NULL, &ref, &err), BG_OK);
    for (int t = 0; t < T; t++) {
        char mine[16];
        snprintf(mine, sizeof mine, "p%d", t);
        for (int i = 0; i < PRIV; i++) {
            double x[D];
            bg_observation o = obs_for(t, i, x);
            CHECK_INT(bg_engine_observe(ref, guard, mine, &o, NULL, &err), BG_OK);
        }
        double a[N], b[N];
        CHECK_INT(bg_engine_posterior(eng, guard, mine, a, N, &err), BG_OK);
        CHECK_INT(bg_engine_posterior(ref, guard, mine, b, N, &err), BG_OK);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    bg_engine_destroy(ref);
    bg_engine_destroy(eng);
    bg_guard_build_destroy(gb);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_threads");
}
