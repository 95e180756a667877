/*
 * test_engine_session.c — the engine end to end with real plugins:
 *
 *  - posterior after each Observe equals brute-force enumeration (long
 *    double products of Gaussian densities) for a d=4 bandit, and the
 *    non-iid verdict equals the plausible set computed by hand from it;
 *  - a model change (new model_key, same policy and session) rebuilds the
 *    posterior from the stored observations;
 *  - 2^20 hypotheses: hypotheses that differ only in never-observed
 *    features stay exactly tied; no NaN; mass sums to 1 (1e-9);
 *  - the observation log survives a restart (same summary, bitwise), a torn
 *    last record and a corrupted CRC are cut off on open;
 *  - an append the disk refuses (RLIMIT_FSIZE: a short write, then EFBIG)
 *    fails the Observe with BG_EIO naming the log, leaves the file and the
 *    posterior exactly as before (the half record is cut), Evaluate still
 *    answers, and once the disk takes writes again the next Observe is
 *    stored and replayed after a restart;
 *  - limits: max_obs_per_session, max_bytes -> BG_ELIMIT with
 *    the limit's name; bad actions -> BG_EINVAL saying what to fix; a model
 *    without an enumerable space and no sampler -> "needs a sampler";
 *  - decisions: threshold, escalate, shadow.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "eng_fixture.h"

/* Fixed seed: fx_urand / fx_nrand (eng_fixture.h). */
#define urand() fx_urand()
#define nrand() fx_nrand()
static const uint64_t SEED = 88172645463325252ull;

#define D 4
#define N (1u << D)

static int wbit(unsigned id, int k)
{
    return (id >> (D - 1 - k)) & 1;
}

static double dotw(const double *x, unsigned id)
{
    double s = 0;
    for (int k = 0; k < D; k++)
        s += x[k] * wbit(id, k);
    return s;
}

static void brute_force(bg_plugin_host *h)
{
    const double sigma = 1.0, theta = 2.0;
    bg_guard_build *gb = fx_guard(h, "bf", "bandit", "{features: 4, sigma: 1.0, theta: 2.0}",
                                  "noniid", "alpha: 0.01", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    long double w[N];
    for (unsigned i = 0; i < N; i++)
        w[i] = 1.0L;
    unsigned truth = 11;
    for (int t = 0; t < 30; t++) {
        double x[D];
        for (int k = 0; k < D; k++)
            x[k] = urand() < 0.5 ? 0.0 : 1.0;
        if (t % 5 == 4)
            x[1] = 0.5; /* also the non-binary path */
        double r = dotw(x, truth) + sigma * nrand();
        bg_observation o = fx_pull(x, D, r);
        bg_posterior_summary sum;
        CHECK_INT(bg_engine_observe(e, g, "s1", &o, &sum, &err), BG_OK);
        CHECK_INT(sum.observations, (uint64_t)t + 1);
        long double z = 0;
        for (unsigned i = 0; i < N; i++) {
            long double m = dotw(x, i), d = ((long double)r - m) / sigma;
            w[i] *= expl(-0.5L * d * d);
            z += w[i];
        }
        double post[N];
        CHECK_INT(bg_engine_posterior(e, g, "s1", post, N, &err), BG_OK);
        double worst = 0;
        for (unsigned i = 0; i < N; i++) {
            double want = (double)(w[i] / z);
            double rel = fabs(post[i] - want) / (want + 1e-300);
            if (want > 1e-200 && rel > worst)
                worst = rel;
        }
        if (!(worst < 1e-10))
            fprintf(stderr, "step %d: worst relative error %.3g (tolerance 1e-10)\n", t, worst);
        CHECK(worst < 1e-10);
        /* Non-iid verdict for a random arm = plausible set by hand. */
        double xa[D];
        for (int k = 0; k < D; k++)
            xa[k] = urand() < 0.5 ? 0.0 : 1.0;
        bg_action a = o.action;
        a.features = xa;
        bg_verdict v;
        CHECK_INT(bg_engine_evaluate(e, g, "s1", &a, &v, &err), BG_OK);
        unsigned ord[N];
        for (unsigned i = 0; i < N; i++)
            ord[i] = i;
        for (unsigned i = 1; i < N; i++) /* stable insertion sort, descending */
            for (unsigned j = i; j > 0 && w[ord[j - 1]] < w[ord[j]]; j--) {
                unsigned tmp = ord[j];
                ord[j] = ord[j - 1];
                ord[j - 1] = tmp;
            }
        long double s = 0;
        double best = -1;
        uint64_t kept = 0;
        unsigned first_max = 0;
        for (unsigned k = 0; k < N; k++) {
            long double p = w[ord[k]] / z;
            s += p;
            if (k > 0 && p < 0.01L * s)
                break;
            kept++;
            double hm = 0.5 * erfc((theta - dotw(xa, ord[k])) / (sigma * M_SQRT2));
            if (hm > best) {
                best = hm;
                first_max = ord[k]; /* the walk's first maximiser */
            }
        }
        CHECK_INT(v.plausible_set_size, kept);
        CHECK_INT(v.cautious_id, first_max);
        CHECK_NEAR(v.harm_bound, best, 1e-12);
        CHECK_INT(v.decision, best > 0.3 ? BG_DECISION_DENY : BG_DECISION_ALLOW);
        CHECK_INT(v.observations, (uint64_t)t + 1);
        CHECK(v.cautious_label[0] == 'w' && strlen(v.cautious_label) == 2 + D);
    }
    /* A new model config on the same policy/session: rebuilt from the
     * stored observations (σ = 2 now). Only identity matters here: the
     * result must equal a fresh engine fed the same data with that model. */
    bg_guard_build *gb2 = fx_guard(h, "bf", "bandit", "{features: 4, sigma: 2.0, theta: 2.0}",
                                   "noniid", "alpha: 0.01", 0.3);
    CHECK(bg_guard_build_guard(gb2)->model_key != g->model_key);
    bg_posterior_summary s2;
    CHECK_INT(bg_engine_summary(e, bg_guard_build_guard(gb2), "s1", &s2, &err), BG_OK);
    CHECK_INT(s2.observations, 30);
    bg_posterior_summary s1;
    CHECK_INT(bg_engine_summary(e, g, "s1", &s1, &err), BG_OK);
    CHECK(s1.entropy_nats < s2.entropy_nats); /* wider likelihood, flatter posterior */
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb2);
    bg_guard_build_destroy(gb);
}

static void big_ties(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "big", "bandit", "{features: 20, theta: 6}", "noniid", "alpha: 1e-7", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    double x[20];
    for (int t = 0; t < 25; t++) {
        for (int k = 0; k < 20; k++)
            x[k] = k < 16 && urand() < 0.5 ? 1.0 : 0.0; /* features 16..19 never set */
        bg_observation o = fx_pull(x, D, 0);
        o.action.n_features = 20;
        o.value = 3.0 + nrand();
        CHECK_INT(bg_engine_observe(e, g, "s", &o, NULL, &err), BG_OK);
    }
    size_t n = (size_t)1 << 20;
    double *post = malloc(n * sizeof *post);
    CHECK_INT(bg_engine_posterior(e, g, "s", post, n, &err), BG_OK);
    long double sum = 0;
    size_t nan = 0, untied = 0;
    for (size_t i = 0; i < n; i++) {
        sum += post[i];
        nan += isnan(post[i]) != 0;
        /* ids differing only in the low 4 bits (w_16..w_19) must tie. */
        if (memcmp(&post[i], &post[i & ~(size_t)15], sizeof(double)) != 0)
            untied++;
    }
    CHECK_INT(nan, 0);
    CHECK_INT(untied, 0);
    CHECK_NEAR((double)sum, 1.0, 1e-9);
    bg_verdict v;
    bg_action a = fx_pull(x, D, 0).action;
    a.n_features = 20;
    CHECK_INT(bg_engine_evaluate(e, g, "s", &a, &v, &err), BG_OK);
    /* Ties come in groups of 16, so the plausible set is a multiple of 16
     * unless the walk stops inside a group (it may: α·S_k grows). */
    CHECK(v.plausible_set_size >= 16);
    printf("2^20 bandit, 25 observations: plausible set %llu, bound %.4g, eval %llu us\n",
           (unsigned long long)v.plausible_set_size, v.harm_bound, (unsigned long long)v.eval_us);
    free(post);
    bg_engine_destroy(e);
    bg_guard_build_destroy(gb);
}

static off_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

/* A fresh directory /tmp/<prefix>?????? in dir (64 bytes). */
static void make_tmpdir(char *dir, const char *prefix)
{
    size_t dl = (size_t)snprintf(dir, 64, "/tmp/%s", prefix);
    memset(dir + dl, 'X', 6); /* mkdtemp's template suffix */
    dir[dl + 6] = '\0';
    CHECK(mkdtemp(dir) != NULL);
}

/* Remove dir and the files the engine left in it (the observation log,
 * store.key): the directory is flat. */
static void remove_tmpdir(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "%s", dir);
    struct dirent *de;
    char p[320];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        CHECK(unlink(p) == 0, "%s: %s", p, strerror(errno));
    }
    closedir(d);
    CHECK(rmdir(dir) == 0, "%s: %s", dir, strerror(errno));
}

static void restart(bg_plugin_host *h)
{
    char dir[64];
    make_tmpdir(dir, "bg_engine_test_");
    char path[256];
    snprintf(path, sizeof path, "%s/obs-00000000000000000001.bglog", dir);
    bg_guard_build *gb = fx_guard(h, "rs", "bandit", "{features: 4, theta: 2}", "iid", "", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine_opts opts = {.data_dir = dir};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    for (int t = 0; t < 6; t++) {
        double x[D] = {1, t & 1, (t >> 1) & 1, 1};
        bg_observation o = fx_pull(x, D, 1.5 + 0.1 * t);
        bg_attr at = {"user", t % 2 ? "alice" : "bob"};
        o.action.attributes = &at;
        o.action.n_attributes = 1;
        o.action.arguments_json = "{\"arm\": 3}";
        CHECK_INT(bg_engine_observe(e, g, t < 4 ? "a" : "b", &o, NULL, &err), BG_OK);
    }
    bg_posterior_summary before;
    CHECK_INT(bg_engine_summary(e, g, "a", &before, &err), BG_OK);
    bg_engine_destroy(e);
    off_t good = file_size(path);

    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.sessions, 2);
    CHECK_INT(st.observations, 6);
    bg_posterior_summary after;
    CHECK_INT(bg_engine_summary(e, g, "a", &after, &err), BG_OK);
    CHECK_INT(after.observations, 4);
    CHECK_INT(after.map_id, before.map_id);
    CHECK(memcmp(&after.entropy_nats, &before.entropy_nats, sizeof(double)) == 0);
    CHECK(memcmp(&after.map_posterior, &before.map_posterior, sizeof(double)) == 0);
    bg_engine_destroy(e);

    /* Torn last record: a header promising 200 bytes, then 10. */
    int fd = open(path, O_WRONLY | O_APPEND);
    uint8_t torn[18] = {200, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(write(fd, torn, sizeof torn) == (ssize_t)sizeof torn);
    close(fd);
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.observations, 6);
    CHECK_INT(file_size(path), good);
    /* Appending after the cut works and survives the next restart. */
    double x[D] = {1, 1, 1, 1};
    bg_observation o = fx_pull(x, D, 4.2);
    CHECK_INT(bg_engine_observe(e, g, "a", &o, NULL, &err), BG_OK);
    bg_engine_destroy(e);
    off_t seven = file_size(path);
    /* Corrupt the CRC of the last record: it is cut off, the rest stays. */
    fd = open(path, O_RDWR);
    uint8_t b;
    CHECK(pread(fd, &b, 1, good + 4) == 1);
    b ^= 0x5a;
    CHECK(pwrite(fd, &b, 1, good + 4) == 1);
    close(fd);
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.observations, 6);
    CHECK_INT(file_size(path), good);
    CHECK(seven > good);
    bg_engine_destroy(e);
    /* Not an observation log: refused, naming the file. */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, "NOTALOG!xxxx", 12) == 12);
    close(fd);
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_EIO);
    CHECK(strstr(err.msg, "obs-00000000000000000001.bglog") != NULL);
    remove_tmpdir(dir);
    bg_guard_build_destroy(gb);
}

static void failed_append(bg_plugin_host *h)
{
    char dir[64];
    make_tmpdir(dir, "bg_engine_fsz_");
    char path[256];
    snprintf(path, sizeof path, "%s/obs-00000000000000000001.bglog", dir);
    bg_guard_build *gb =
        fx_guard(h, "fa", "bandit", "{features: 4, theta: 2}", "noniid", "alpha: 0.01", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine_opts opts = {.data_dir = dir};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    double x[D] = {1, 0, 1, 1};
    for (int t = 0; t < 3; t++) {
        bg_observation o = fx_pull(x, D, 1.0 + t);
        CHECK_INT(bg_engine_observe(e, g, "s", &o, NULL, &err), BG_OK);
    }
    bg_posterior_summary before, after;
    CHECK_INT(bg_engine_summary(e, g, "s", &before, &err), BG_OK);
    off_t size = file_size(path);

    /* the disk takes 5 more bytes: a short write, then EFBIG */
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = (rlim_t)size + 5;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bg_observation o = fx_pull(x, D, 9.0);
    int rc = bg_engine_observe(e, g, "s", &o, NULL, &err);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, prev);
    printf("refused append: rc %s: %s\n", bg_err_name(rc), err.msg);
    CHECK_INT(rc, BG_EIO);
    CHECK(strstr(err.msg, "obs-00000000000000000001.bglog") && strstr(err.msg, "append"));
    CHECK_INT(file_size(path), size); /* the half record was cut */
    bg_engine_stats es;
    bg_engine_stats_get(e, &es);
    CHECK_INT(es.store_refused, 1);
    CHECK_INT(es.store_broken, 0); /* cut: later appends may succeed */
    CHECK_INT(bg_engine_summary(e, g, "s", &after, &err), BG_OK);
    CHECK_INT(after.observations, 3);
    CHECK_INT(after.map_id, before.map_id);
    CHECK(memcmp(&after.entropy_nats, &before.entropy_nats, sizeof(double)) == 0);
    bg_verdict v;
    CHECK_INT(bg_engine_evaluate(e, g, "s", &o.action, &v, &err), BG_OK);
    CHECK_INT(v.observations, 3);

    /* the disk takes writes again: stored, and replayed after a restart */
    o = fx_pull(x, D, 4.0);
    CHECK_INT(bg_engine_observe(e, g, "s", &o, &after, &err), BG_OK);
    CHECK_INT(after.observations, 4);
    bg_engine_destroy(e);
    CHECK(file_size(path) > size);
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    CHECK_INT(bg_engine_summary(e, g, "s", &before, &err), BG_OK);
    CHECK_INT(before.observations, 4);
    CHECK(memcmp(&after.entropy_nats, &before.entropy_nats, sizeof(double)) == 0);
    bg_engine_destroy(e);
    remove_tmpdir(dir);
    bg_guard_build_destroy(gb);
}

static void limits_and_errors(bg_plugin_host *h)
{
    bg_guard_build *gb =
        fx_guard(h, "lim", "bandit", "{features: 4, theta: 2}", "noniid", "alpha: 0.001", 0.3);
    const bg_guard *g = bg_guard_build_guard(gb);
    bg_engine_opts opts = {.max_sessions = 2, .max_obs_per_session = 3};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&opts, &e, &err), BG_OK);
    double x[D] = {1, 0, 1, 0};
    bg_observation o = fx_pull(x, D, 1.0);
    CHECK_INT(bg_engine_observe(e, g, "one", &o, NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe(e, g, "two", &o, NULL, &err), BG_OK);
    /* max_sessions bounds the posteriors in memory, not the sessions: a
     * third evicts the least recently used idle one (test_engine_evict). */
    CHECK_INT(bg_engine_observe(e, g, "three", &o, NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe(e, g, "one", &o, NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe(e, g, "one", &o, NULL, &err), BG_OK);
    CHECK_INT(bg_engine_observe(e, g, "one", &o, NULL, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "max_obs_per_session=3") != NULL);
    CHECK_INT(bg_engine_forget(e, "lim", "two"), BG_OK);
    /* Evaluating sessions that never observed reads the shared prior: no
     * session per id, so the limit cannot be exhausted by reads. */
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "fresh%d", i);
        bg_verdict pv;
        CHECK_INT(bg_engine_evaluate(e, g, id, &o.action, &pv, &err), BG_OK);
        CHECK_INT(pv.observations, 0);
        CHECK_INT(pv.plausible_set_size, N); /* uniform prior: every hypothesis */
    }
    bg_engine_stats ps;
    bg_engine_stats_get(e, &ps);
    CHECK_INT(ps.sessions, 3); /* one, three, and the policy's prior-only session */

    /* Bad input. */
    bg_verdict v;
    bg_action a = o.action;
    a.n_features = 3;
    CHECK_INT(bg_engine_evaluate(e, g, "one", &a, &v, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "expects 4") != NULL);
    double xn[D] = {1, NAN, 0, 0};
    a = o.action;
    a.features = xn;
    CHECK_INT(bg_engine_evaluate(e, g, "one", &a, &v, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "finite") != NULL);
    bg_observation nov = o;
    nov.has_value = 0;
    CHECK_INT(bg_engine_observe(e, g, "three", &nov, NULL, &err), BG_EINVAL);
    bg_engine_stats st;
    bg_engine_stats_get(e, &st);
    CHECK_INT(st.observations, 4); /* the rejected one was not stored */
    bg_engine_destroy(e);

    /* Memory bound: a 1024-hypothesis posterior does not fit in 4 KiB. */
    bg_guard_build *g10 = fx_guard(h, "mem", "bandit", "{features: 10, theta: 4}", "iid", "", 0.3);
    bg_engine_opts small = {.max_bytes = 4096};
    CHECK_INT(bg_engine_create(&small, &e, &err), BG_OK);
    double x10[10] = {0};
    bg_action a10 = o.action;
    a10.features = x10;
    a10.n_features = 10;
    CHECK_INT(bg_engine_evaluate(e, bg_guard_build_guard(g10), "m", &a10, &v, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "max_bytes=4096") != NULL);
    bg_engine_destroy(e);
    bg_guard_build_destroy(g10);

    /* No enumerable space and no sampler. */
    bg_guard_build *g30 = fx_guard(h, "huge", "bandit", "{features: 30, theta: 4}", "iid", "", 0.3);
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    double x30[30] = {0};
    a10.features = x30;
    a10.n_features = 30;
    CHECK_INT(bg_engine_evaluate(e, bg_guard_build_guard(g30), "m", &a10, &v, &err), BG_EINVAL);
    CHECK_STR(err.msg, "policy huge: model bandit needs a sampler");
    bg_engine_destroy(e);
    bg_guard_build_destroy(g30);
    bg_guard_build_destroy(gb);
}

static void decisions(bg_plugin_host *h)
{
    /* Prior only, uniform over 16: arm (1,1,1,1) has harm 0.5 under the
     * MAP-tied set... use the posterior estimator: predictive = mean harm. */
    bg_guard_spec spec = {.name = "dec",
                          .model = "bandit",
                          .model_cfg = "{features: 4, theta: 2}",
                          .estimator = "posterior",
                          .threshold = 0.2,
                          .over_threshold = BG_DECISION_ESCALATE};
    bg_guard_build *gb;
    bg_err err;
    CHECK_INT(bg_guard_build_create(h, &spec, &gb, &err), BG_OK);
    bg_engine *e;
    CHECK_INT(bg_engine_create(NULL, &e, &err), BG_OK);
    double x[D] = {1, 1, 1, 1};
    bg_action a = fx_pull(x, D, 0).action;
    bg_verdict v;
    CHECK_INT(bg_engine_evaluate(e, bg_guard_build_guard(gb), "s", &a, &v, &err), BG_OK);
    double want = 0;
    for (unsigned i = 0; i < N; i++)
        want += 0.5 * erfc((2.0 - dotw(x, i)) / M_SQRT2) / N;
    CHECK_NEAR(v.harm_bound, want, 1e-12);
    CHECK_INT(v.decision, BG_DECISION_ESCALATE);
    CHECK_INT(v.shadow, 0);
    bg_guard_build_destroy(gb);
    spec.shadow = 1;
    CHECK_INT(bg_guard_build_create(h, &spec, &gb, &err), BG_OK);
    CHECK_INT(bg_engine_evaluate(e, bg_guard_build_guard(gb), "s", &a, &v, &err), BG_OK);
    CHECK_INT(v.decision, BG_DECISION_ALLOW);
    CHECK_INT(v.shadow, 1);
    bg_guard_build_destroy(gb);
    spec.shadow = 0;
    spec.threshold = 0.99;
    CHECK_INT(bg_guard_build_create(h, &spec, &gb, &err), BG_OK);
    CHECK_INT(bg_engine_evaluate(e, bg_guard_build_guard(gb), "s", &a, &v, &err), BG_OK);
    CHECK_INT(v.decision, BG_DECISION_ALLOW);
    CHECK_STR(bg_decision_name(BG_DECISION_DENY), "DENY");
    bg_guard_build_destroy(gb);
    bg_engine_destroy(e);
}

int main(void)
{
    fx_rng_state = SEED;
    bg_plugin_host *h = fx_host();
    brute_force(h);
    big_ties(h);
    restart(h);
    failed_append(h);
    limits_and_errors(h);
    decisions(h);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_session");
}
