/*
 * test_plugin_contract.c — the answers include/bayesguard/plugin.h gives a
 * plugin author, checked against the real host and engine with the
 * fixture plugins of tests/plugin/contract (see fixture_plugin.c):
 *
 *   - a plugin declaring an older minor (BG_PLUGIN_DESC_HEAD_MINOR(0))
 *     loads, and every plugin gets this host's bg_host: abi_major/minor,
 *     size = sizeof(bg_host), every service set, every spare slot NULL;
 *   - a `.so` that is not a plugin at all (not ELF) is refused by name and
 *     does not stop the others from loading;
 *   - an open config bound (0, 1] is enforced for a plugin's own key;
 *   - log_lik may return -inf: that hypothesis's posterior becomes exactly
 *     0; -inf for every hypothesis refuses the observation as invalid and
 *     stores nothing; NaN refuses it as internal;
 *   - label gets a buffer of at least BG_PLUGIN_LABEL_MIN bytes: a longer
 *     label comes back truncated and terminated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "cfg/cfg.h"
#include "engine/engine.h"
#include "guard_build.h"
#include "plugin/plugin_host.h"

#define FIX BG_FIXTURE_DIR

static void test_older_minor_and_host(void)
{
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK(bg_plugin_host_create(FIX "/contract", &h, &err) == BG_OK, "%s", err.msg);
    CHECK_STR(bg_plugin_host_errors(h), "");
    bg_plugin *old = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_old", BG_PLUGIN_KIND_ESTIMATOR, &old, &err), BG_OK);
    CHECK_INT(old->desc->abi_minor, 0);
    CHECK(BG_PLUGIN_ABI_MINOR > 0, "this test needs a host newer than 1.0");

    bg_plugin_services *s = NULL;
    CHECK_INT(bg_plugin_services_create(h, old, &s, &err), BG_OK);
    const bg_host *host = bg_plugin_services_host(s);
    CHECK_INT(host->abi_major, BG_PLUGIN_ABI_MAJOR);
    CHECK_INT(host->abi_minor, BG_PLUGIN_ABI_MINOR);
    CHECK_INT(host->size, sizeof(bg_host));
    CHECK(host->log && host->cfg_type && host->cfg_get && host->cfg_len && host->cfg_item &&
          host->cfg_key && host->cfg_value && host->cfg_scalar && host->cfg_error &&
          host->cfg_apply && host->rng_seed && host->rng_u64 && host->rng_uniform &&
          host->rng_normal && host->metric_add);
    for (size_t i = 0; i < sizeof host->spare / sizeof host->spare[0]; i++)
        CHECK(host->spare[i] == NULL, "host spare[%zu] is set", i);
    /* The older plugin works: create, order_needed, destroy. */
    void *inst = NULL;
    CHECK_INT(old->desc->vt.estimator->create(host, NULL, &inst), BG_PLUGIN_OK);
    CHECK_NEAR(old->desc->vt.estimator->order_needed(inst), 0.05 * 1e-4, 1e-15);
    old->desc->vt.estimator->destroy(inst);
    bg_plugin_services_destroy(s);
    bg_plugin_unref(old);
    bg_plugin_host_destroy(h);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void test_not_a_plugin(void)
{
    char dir[] = "/tmp/bg-test-notplugin-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char junk[256], good[256], want[1024];
    snprintf(junk, sizeof junk, "%s/a_junk.so", dir);
    snprintf(good, sizeof good, "%s/b_est.so", dir);
    write_file(junk, "not an ELF file\n");
    CHECK(symlink(FIX "/good/fx_est.so", good) == 0, "%s", good); /* a good neighbour */
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(dir, &h, &err), BG_OK);
    snprintf(want, sizeof want, "%s: cannot load plugin: ", junk);
    CHECK(strncmp(bg_plugin_host_errors(h), want, strlen(want)) == 0, "errors: %s",
          bg_plugin_host_errors(h));
    CHECK(strchr(bg_plugin_host_errors(h), '\n') == NULL); /* one failure */
    bg_plugin *p = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &p, &err), BG_OK);
    bg_plugin_unref(p);
    bg_plugin_host_destroy(h);
    unlink(junk);
    unlink(good);
    rmdir(dir);
}

/* A guard over the contract model (n hypotheses) and fx_est. */
static bg_guard_build *contract_guard(bg_plugin_host *h, const char *model_cfg, bg_err *err)
{
    bg_guard_spec spec = {.name = "contract",
                          .model = "fx_contract",
                          .model_cfg = model_cfg,
                          .estimator = "fx_est",
                          .threshold = 0.5};
    bg_guard_build *b = NULL;
    return bg_guard_build_create(h, &spec, &b, err) == BG_OK ? b : NULL;
}

static void test_open_bound_in_plugin(bg_plugin_host *h)
{
    bg_err err;
    bg_err_clear(&err);
    CHECK(contract_guard(h, "{rate: 0}", &err) == NULL);
    CHECK(strstr(err.msg, "plugin fx_contract: key 'rate': 0 is out of range (0, 1]") != NULL, "%s",
          err.msg);
    bg_guard_build *b = contract_guard(h, "{rate: 1}", &err);
    CHECK(b != NULL, "%s", err.msg);
    bg_guard_build_destroy(b);
}

static int observe(bg_engine *e, const bg_guard *g, double value, bg_err *err)
{
    bg_observation obs = {.action = {.tool = "t"}, .harmed = 0, .has_value = 1, .value = value};
    bg_posterior_summary sum;
    bg_err_clear(err);
    return bg_engine_observe(e, g, "s1", &obs, &sum, err);
}

static void test_log_lik_and_label(bg_plugin_host *h)
{
    bg_err err;
    bg_guard_build *b = contract_guard(h, "{n: 4}", &err);
    CHECK(b != NULL, "%s", err.msg);
    const bg_guard *g = bg_guard_build_guard(b);
    bg_engine_opts opts = {0};
    bg_engine *e = NULL;
    CHECK(bg_engine_create(&opts, &e, &err) == BG_OK, "%s", err.msg);

    /* -inf for hypotheses 0..2: they are ruled out, exactly. */
    CHECK(observe(e, g, 1, &err) == BG_OK, "%s", err.msg);
    double post[4];
    CHECK(bg_engine_posterior(e, g, "s1", post, 4, &err) == BG_OK, "%s", err.msg);
    printf("posterior after a -inf observation: %g %g %g %g (exact 0 0 0 1)\n", post[0], post[1],
           post[2], post[3]);
    CHECK(post[0] == 0 && post[1] == 0 && post[2] == 0 && post[3] == 1);

    /* -inf everywhere: refused as invalid, nothing stored. */
    CHECK_INT(observe(e, g, 2, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "zero likelihood under every hypothesis") != NULL, "%s", err.msg);
    bg_posterior_summary sum;
    CHECK_INT(bg_engine_summary(e, g, "s1", &sum, &err), BG_OK);
    CHECK_INT(sum.observations, 1);
    CHECK_INT(sum.map_id, 3);
    CHECK_NEAR(sum.map_posterior, 1, 0);

    /* NaN: a plugin bug, refused as internal, nothing stored. */
    CHECK_INT(observe(e, g, 3, &err), BG_EINTERNAL);
    CHECK(strstr(err.msg, "NaN") != NULL, "%s", err.msg);
    CHECK_INT(bg_engine_summary(e, g, "s1", &sum, &err), BG_OK);
    CHECK_INT(sum.observations, 1);

    /* The label: 300+ bytes asked for, truncated into the verdict's
     * buffer (>= BG_PLUGIN_LABEL_MIN) and terminated. */
    CHECK(strncmp(sum.map_label, "h=3 xxx", 7) == 0, "map label '%s'", sum.map_label);
    CHECK_INT(strlen(sum.map_label), sizeof sum.map_label - 1);
    CHECK(sizeof sum.map_label >= BG_PLUGIN_LABEL_MIN);
    bg_action a = {.tool = "t"};
    bg_verdict v;
    CHECK(bg_engine_evaluate(e, g, "s1", &a, &v, &err) == BG_OK, "%s", err.msg);
    CHECK(strncmp(v.cautious_label, "h=", 2) == 0, "cautious label '%s'", v.cautious_label);
    CHECK_INT(strlen(v.cautious_label), sizeof v.cautious_label - 1);

    bg_engine_destroy(e);
    bg_guard_build_destroy(b);
}

int main(void)
{
    test_older_minor_and_host();
    test_not_a_plugin();
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK(bg_plugin_host_create(FIX "/contract", &h, &err) == BG_OK, "%s", err.msg);
    test_open_bound_in_plugin(h);
    test_log_lik_and_label(h);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_plugin_contract");
}
