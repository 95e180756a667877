/*
 * test_metrics.c — the metrics registry and its exposition text, with a
 * real policy store over the built-in plugins ($BG_PLUGIN_DIR; skipped, 77,
 * when they are not built):
 *   - a policy's entry is cached in the policy (same pointer every time);
 *   - counters, the histogram (buckets by upper bound, inclusive, and
 *     cumulative; _count = +Inf; _sum exact) and observations render with
 *     their exact values;
 *   - a reload that replaces the policy objects (and drops a policy) keeps
 *     every counter: the new object finds the same entry, values only grow,
 *     and the dropped policy keeps its last values; reloads are counted by
 *     result and the revision label follows the live set;
 *   - collectors append their families and are gone once removed; label
 *     values and HELP text are escaped as text format 0.0.4 says, and
 *     numbers print as Prometheus reads them (+Inf, NaN, shortest decimals);
 *   - 4 threads counting into one entry while the main thread renders lose
 *     no count.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "metrics/metrics.h"

#define POLICY(name, thr)                                                                          \
    "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: " name "}\n"                   \
    "spec:\n  match: {tools: [" name "_*]}\n  model: {plugin: bernoulli, config: {grid_size: "     \
    "10}}\n  estimator: {plugin: iid}\n  threshold: " thr "\n"

static char dir[64], file[128];

static void write_policies(const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s/.tmp", dir);
    FILE *f = fopen(tmp, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    CHECK(rename(tmp, file) == 0);
}

static char *render(bg_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    CHECK_INT(bg_metrics_render(m, &text, &len), BG_OK);
    CHECK(text != NULL && strlen(text) == len);
    return text;
}

/* The value of the sample line that starts with `series` ("name{...}"),
 * -1 when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

#define CHECK_VALUE(text, series, want)                                                            \
    do {                                                                                           \
        double got_ = value_of(text, series), want_ = (want);                                      \
        if (got_ != want_)                                                                         \
            bg_test_fail(__FILE__, __LINE__, series, "%.17g, expected %.17g", got_, want_);        \
    } while (0)

/* Every "# TYPE name" appears once, and every sample line belongs to the
 * family typed last (its name, or name_bucket/_sum/_count for a histogram). */
static void check_well_formed(const char *text)
{
    char family[128] = "", type[32] = "";
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        if (nl == NULL)
            return;
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        if (strncmp(line, "# TYPE ", 7) == 0) {
            CHECK(sscanf(line + 7, "%127s %31s", family, type) == 2);
            char again[160];
            snprintf(again, sizeof again, "\n# TYPE %s ", family);
            const char *first = strstr(text, again);
            CHECK(first != NULL && strstr(first + 1, again) == NULL);
        } else if (strncmp(line, "# HELP ", 7) != 0) {
            size_t fl = strlen(family);
            const char *rest = line + fl;
            CHECK(fl > 0 && strncmp(line, family, fl) == 0);
            if (strcmp(type, "histogram") == 0 &&
                (strncmp(rest, "_bucket", 7) == 0 || strncmp(rest, "_count", 6) == 0 ||
                 strncmp(rest, "_sum", 4) == 0))
                rest += rest[1] == 'b' ? 7 : rest[1] == 'c' ? 6 : 4;
            if (!(rest[0] == '{' || rest[0] == ' '))
                fprintf(stderr, "sample outside its family %s: %s\n", family, line);
            CHECK(rest[0] == '{' || rest[0] == ' ');
        }
        p = nl + 1;
    }
}

static void custom(void *arg, bg_metrics_writer *w)
{
    (void)arg;
    bg_metrics_write_family(w, "test_custom", BG_METRIC_GAUGE, "help with \\ and\nnewline");
    bg_metrics_label l = {"v", "a\"b\\c\nd"};
    bg_metrics_write_sample(w, "test_custom", &l, 1, 1);
    bg_metrics_label k = {"v", "inf"};
    bg_metrics_write_sample(w, "test_custom", &k, 1, 1.0 / 0.0);
    k.value = "nan";
    bg_metrics_write_sample(w, "test_custom", &k, 1, 0.0 / 0.0);
    k.value = "tenth";
    bg_metrics_write_sample(w, "test_custom", &k, 1, 0.1);
    k.value = "big";
    bg_metrics_write_sample(w, "test_custom", &k, 1, 12345678901234.0);
}

typedef struct hammer {
    pthread_t t;
    bg_metrics_policy *e;
} hammer;

#define HAMMER_N 100000

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < HAMMER_N; i++) {
        bg_metrics_evaluation(h->e, BG_DECISION_DENY, 0, 0, 1000);
        bg_metrics_observation(h->e, i & 1);
    }
    return NULL;
}

int main(void)
{
    const char *pdir = getenv("BG_PLUGIN_DIR");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/bg_bernoulli.so", pdir ? pdir : "");
    if (pdir == NULL || access(probe, R_OK) != 0) {
        printf("skip: built-in plugins not found (BG_PLUGIN_DIR=%s)\n", pdir ? pdir : "");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/bg-metrics-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/p.yaml", dir);
    write_policies(POLICY("alpha", "0.5") "---\n" POLICY("beta", "0.5"));
    bg_err err;
    bg_err_clear(&err);
    bg_plugin_host *host = NULL;
    bg_policy_store *store = NULL;
    bg_metrics *m = NULL;
    CHECK_INT(bg_plugin_host_create(pdir, &host, &err), BG_OK);
    CHECK_INT(bg_policy_store_create(dir, host, &store, &err), BG_OK);
    bg_metrics_opts mo = {.version = "9.9.9", .store = store, .plugins = host};
    CHECK_INT(bg_metrics_create(&mo, &m, &err), BG_OK);

    /* The entry is cached in the policy. */
    bg_policy_set *set = bg_policy_store_acquire(store);
    const bg_policy *alpha = bg_policy_set_find(set, "alpha");
    const bg_policy *beta = bg_policy_set_find(set, "beta");
    CHECK(atomic_load(&alpha->metrics) == NULL);
    bg_metrics_policy *ea = bg_metrics_policy_of(m, alpha);
    CHECK(ea != NULL && atomic_load(&alpha->metrics) == ea && bg_metrics_policy_of(m, alpha) == ea);
    bg_metrics_policy *eb = bg_metrics_policy_of(m, beta);
    CHECK(eb != ea);

    /* Durations on and around bucket bounds: 25 µs and 0.1 s are inclusive. */
    static const uint64_t ns[] = {10000, 25000, 30000, 2000000, 100000000, 200000000};
    static const bg_decision dec[] = {BG_DECISION_ALLOW, BG_DECISION_ALLOW, BG_DECISION_ALLOW,
                                      BG_DECISION_DENY,  BG_DECISION_DENY,  BG_DECISION_ESCALATE};
    for (int i = 0; i < 6; i++)
        bg_metrics_evaluation(ea, dec[i], i == 0, i == 1, ns[i]);
    bg_metrics_observation(ea, 1);
    bg_metrics_observation(ea, 1);
    bg_metrics_observation(ea, 0);
    bg_metrics_evaluation(eb, BG_DECISION_DENY, 0, 0, 40000);
    char rev0[120];
    snprintf(rev0, sizeof rev0, "bayesguard_policy_revision_info{revision=\"%s\"}",
             bg_policy_set_revision(set));

    char *t = render(m);
    check_well_formed(t);
    CHECK_VALUE(t, "bayesguard_build_info{version=\"9.9.9\"}", 1);
    CHECK_VALUE(t, "bayesguard_policies", 2);
    CHECK_VALUE(t, "bayesguard_reloads_total{result=\"ok\"}", 0);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"alpha\",decision=\"allow\"}", 3);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"alpha\",decision=\"deny\"}", 2);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"alpha\",decision=\"escalate\"}", 1);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"beta\",decision=\"deny\"}", 1);
    CHECK_VALUE(t, "bayesguard_shadow_allowed_total{policy=\"alpha\"}", 1);
    CHECK_VALUE(t, "bayesguard_on_error_allowed_total{policy=\"alpha\"}", 1);
    CHECK_VALUE(t, "bayesguard_shadow_allowed_total{policy=\"beta\"}", 0);
    static const struct {
        const char *le;
        double want;
    } cum[] = {{"2.5e-05", 2}, {"5e-05", 3}, {"0.0001", 3}, {"0.001", 3},
               {"0.0025", 4},  {"0.05", 4},  {"0.1", 5},    {"+Inf", 6}};
    for (size_t i = 0; i < sizeof cum / sizeof cum[0]; i++) {
        char series[160];
        snprintf(series, sizeof series,
                 "bayesguard_evaluation_duration_seconds_bucket{policy=\"alpha\",le=\"%s\"}",
                 cum[i].le);
        CHECK_VALUE(t, series, cum[i].want);
    }
    CHECK_VALUE(t, "bayesguard_evaluation_duration_seconds_count{policy=\"alpha\"}", 6);
    CHECK_VALUE(t, "bayesguard_evaluation_duration_seconds_sum{policy=\"alpha\"}", 0.302065);
    CHECK(strstr(t, "bayesguard_evaluation_duration_seconds_sum{policy=\"alpha\"} 0.302065\n"));
    CHECK_VALUE(t, "bayesguard_observations_total{policy=\"alpha\",harmed=\"true\"}", 2);
    CHECK_VALUE(t, "bayesguard_observations_total{policy=\"alpha\",harmed=\"false\"}", 1);
    CHECK_VALUE(t, rev0, 1);
    free(t);

    /* A reload swaps the policy objects and drops beta: counts continue.
     * (The old set stays referenced until compared, so its address cannot
     * be reused by the new one.) */
    write_policies(POLICY("alpha", "0.25"));
    CHECK_INT(bg_policy_store_reload(store, "test", &err), BG_OK);
    write_policies("apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: bad}\n");
    CHECK_INT(bg_policy_store_reload(store, "test", &err), BG_ECONFIG);
    bg_policy_set *set2 = bg_policy_store_acquire(store);
    const bg_policy *alpha2 = bg_policy_set_find(set2, "alpha");
    CHECK(alpha2 != NULL && alpha2 != alpha && alpha2->guard.threshold == 0.25);
    CHECK(bg_metrics_policy_of(m, alpha2) == ea);
    bg_policy_set_unref(set);
    bg_metrics_evaluation(bg_metrics_policy_of(m, alpha2), BG_DECISION_ALLOW, 0, 0, 1000);
    t = render(m);
    check_well_formed(t);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"alpha\",decision=\"allow\"}", 4);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"beta\",decision=\"deny\"}", 1);
    CHECK_VALUE(t, "bayesguard_evaluation_duration_seconds_count{policy=\"alpha\"}", 7);
    CHECK_VALUE(t, "bayesguard_evaluation_duration_seconds_bucket{policy=\"alpha\",le=\"2.5e-05\"}",
                3);
    CHECK_VALUE(t, "bayesguard_policies", 1);
    CHECK_VALUE(t, "bayesguard_reloads_total{result=\"ok\"}", 1);
    CHECK_VALUE(t, "bayesguard_reloads_total{result=\"refused\"}", 1);
    CHECK_VALUE(t, rev0, -1); /* the old revision is gone */
    char rev1[120];
    snprintf(rev1, sizeof rev1, "bayesguard_policy_revision_info{revision=\"%s\"}",
             bg_policy_set_revision(set2));
    CHECK_VALUE(t, rev1, 1);
    free(t);

    /* Collectors, escaping, number formats. */
    CHECK_INT(bg_metrics_add_collector(m, custom, NULL), BG_OK);
    t = render(m);
    check_well_formed(t);
    CHECK(strstr(t, "# HELP test_custom help with \\\\ and\\nnewline\n# TYPE test_custom gauge\n"));
    CHECK(strstr(t, "\ntest_custom{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    CHECK(strstr(t, "\ntest_custom{v=\"inf\"} +Inf\n"));
    CHECK(strstr(t, "\ntest_custom{v=\"nan\"} NaN\n"));
    CHECK(strstr(t, "\ntest_custom{v=\"tenth\"} 0.1\n"));
    CHECK(strstr(t, "\ntest_custom{v=\"big\"} 12345678901234\n"));
    free(t);
    bg_metrics_remove_collector(m, custom, NULL);
    t = render(m);
    CHECK(strstr(t, "test_custom") == NULL);
    free(t);
    CHECK(bg_metrics_name_ok("bayesguard_x:y_1") && !bg_metrics_name_ok("1x") &&
          !bg_metrics_name_ok("a-b") && !bg_metrics_name_ok(""));

    /* Concurrent counting while rendering loses nothing. */
    hammer hs[4];
    bg_metrics_policy *eh = bg_metrics_policy_of(m, alpha2);
    for (int i = 0; i < 4; i++) {
        hs[i].e = eh;
        CHECK(pthread_create(&hs[i].t, NULL, hammer_main, &hs[i]) == 0);
    }
    for (int i = 0; i < 20; i++)
        free(render(m));
    for (int i = 0; i < 4; i++)
        pthread_join(hs[i].t, NULL);
    t = render(m);
    CHECK_VALUE(t, "bayesguard_evaluations_total{policy=\"alpha\",decision=\"deny\"}",
                2 + 4 * HAMMER_N);
    CHECK_VALUE(t, "bayesguard_evaluation_duration_seconds_count{policy=\"alpha\"}",
                7 + 4 * HAMMER_N);
    CHECK_VALUE(t, "bayesguard_observations_total{policy=\"alpha\",harmed=\"true\"}",
                2 + 2 * HAMMER_N);
    free(t);

    bg_policy_set_unref(set2);
    bg_metrics_destroy(m);
    bg_policy_store_destroy(store);
    bg_plugin_host_destroy(host);
    unlink(file);
    rmdir(dir);
    CHECK_DONE("test_metrics");
}
