/*
 * test_policy_builtin.c — policies against the built-in plugins in
 * $BG_PLUGIN_DIR (loaded through the same dlopen path as fixtures):
 * a bernoulli + noniid policy loads and its estimator gets alpha from
 * delta * prior_floor; a key the estimator does not take is refused by the
 * plugin with its position; the repository's default policies/ pass
 * `check`. Skips (77) when the built-in plugins are not built.
 */
#include <jansson.h>

#include "policy_test.h"

/* features[0] of the shipped shell policy for {"cmd": cmd}. */
static double shell_flag(const bg_policy *p, const char *cmd)
{
    json_t *args = json_pack("{s:s}", "cmd", cmd);
    double x = -1;
    char msg[256];
    CHECK(args != NULL);
    CHECK_INT(bg_feature_eval(p->features[0], args, &x, msg, sizeof msg), BG_OK);
    json_decref(args);
    return x;
}

/* The shipped policies compute their features on the server: shell flags
 * destructive commands and not ordinary ones; payments reads amount and
 * payee_is_new. */
static void shipped_features(const char *pol, const char *pdir)
{
    bg_plugin_host *host = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(pdir, &host, &err), BG_OK);
    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    CHECK_INT(bg_policy_set_load(pol, host, &s, &errs), BG_OK);
    const bg_policy *sh = bg_policy_set_find(s, "shell");
    CHECK(sh != NULL && sh->n_features == 2 && !sh->features_from_request);
    static const char *const destructive[] = {"rm -rf /",
                                              "sudo rm -rf /var/lib",
                                              "rm -fr ~",
                                              "rm  -Rf build",
                                              "cd / && rm -r home",
                                              "mkfs.ext4 /dev/sda1",
                                              "dd if=/dev/zero of=/dev/sda bs=1M",
                                              "cat x > /dev/sda"};
    static const char *const ordinary[] = {"ls -la",     "rm file.txt",   "git status",
                                           "echo mkdir", "cat /dev/null", "grep -r dd src"};
    for (size_t i = 0; i < sizeof destructive / sizeof destructive[0]; i++)
        CHECK(shell_flag(sh, destructive[i]) == 1.0, "'%s' not flagged", destructive[i]);
    for (size_t i = 0; i < sizeof ordinary / sizeof ordinary[0]; i++)
        CHECK(shell_flag(sh, ordinary[i]) == 0.0, "'%s' flagged", ordinary[i]);
    const bg_policy *pay = bg_policy_set_find(s, "payments");
    CHECK(pay != NULL && pay->n_features == 2);
    json_t *args = json_pack("{s:f,s:b}", "amount", 100.0, "payee_is_new", 1);
    double x[2];
    char msg[256];
    for (int i = 0; i < 2; i++)
        CHECK_INT(bg_feature_eval(pay->features[i], args, &x[i], msg, sizeof msg), BG_OK);
    CHECK_NEAR(x[0], 2.0, 1e-12);
    CHECK_NEAR(x[1], 1.0, 0);
    json_decref(args);
    bg_policy_set_unref(s);
    bg_plugin_host_destroy(host);
}

int main(void)
{
    const char *pdir = getenv("BG_PLUGIN_DIR"), *src = getenv("BG_SOURCE_DIR");
    char so[4096];
    snprintf(so, sizeof so, "%s/bg_bernoulli.so", pdir ? pdir : "");
    char so2[4096];
    snprintf(so2, sizeof so2, "%s/bg_noniid.so", pdir ? pdir : "");
    if (!pdir || !src || access(so, R_OK) != 0 || access(so2, R_OK) != 0) {
        printf("built-in plugins bernoulli/noniid not built in %s: skipped\n",
               pdir ? pdir : "(BG_PLUGIN_DIR unset)");
        return 77;
    }
    bg_plugin_host *host = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(pdir, &host, &err), BG_OK);
    if (!host)
        CHECK_DONE("test_policy_builtin");
    char dir[128];
    pt_mkdtemp(dir, sizeof dir, "builtin");
    const char *good = "apiVersion: bayesguard/v1\n"
                       "kind: GuardPolicy\n"
                       "metadata: {name: payments}\n"
                       "spec:\n"
                       "  match: {tools: [\"transfer_*\"]}\n"
                       "  model: {plugin: bernoulli, config: {grid_size: 50}}\n"
                       "  estimator: {plugin: noniid, delta: 0.05, prior_floor: 0.001}\n"
                       "  threshold: 0.01\n";
    CHECK_INT(pt_write(dir, "p.yaml", good), 0);
    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    CHECK_INT(bg_policy_set_load(dir, host, &s, &errs), BG_OK);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
    bg_policy_errors_free(&errs);
    if (s) {
        const bg_guard *g = &bg_policy_set_at(s, 0)->guard;
        CHECK(g->model->count(g->model_inst) > 0);
        CHECK_NEAR(g->estimator->order_needed(g->estimator_inst), 0.05 * 0.001, 1e-12);
        bg_policy_set_unref(s);
    }
    const char *bad = "apiVersion: bayesguard/v1\n"
                      "kind: GuardPolicy\n"
                      "metadata: {name: payments}\n"
                      "spec:\n"
                      "  match: {tools: [\"transfer_*\"]}\n"
                      "  model: {plugin: bernoulli}\n"
                      "  estimator: {plugin: iid, delta: 0.05}\n"
                      "  threshold: 0.01\n";
    CHECK_INT(pt_write(dir, "p.yaml", bad), 0);
    CHECK_INT(bg_policy_set_load(dir, host, &s, &errs), BG_ECONFIG);
    char want[512];
    snprintf(want, sizeof want,
             "%s/p.yaml:7:28: plugin iid: unknown key 'delta'; allowed keys: (none: this plugin "
             "takes no config)",
             dir);
    CHECK_INT(errs.n, 1);
    if (errs.n)
        CHECK_STR(errs.msgs[0], want);
    bg_policy_errors_free(&errs);
    pt_rmtree(dir);
    bg_plugin_host_destroy(host);

    /* The default policies shipped in policies/ are valid. */
    char pol[4096];
    snprintf(pol, sizeof pol, "%s/policies", src);
    char **names = NULL;
    size_t n = 0;
    DIR *d = opendir(pol);
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".yaml") || strstr(e->d_name, ".yml");
    if (d)
        closedir(d);
    (void)names;
    if (n) {
        CHECK_INT(bg_policy_check_dir(pol, pdir, stdout), 0);
        shipped_features(pol, pdir);
    } else {
        printf("policies/ has no policy files yet: default-policy check not run\n");
    }
    CHECK_DONE("test_policy_builtin");
}
