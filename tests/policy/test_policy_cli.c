/*
 * test_policy_cli.c — `bayesguard check` (cli_check.c, compiled in here):
 * argument handling and exit codes (0 valid, 1 invalid, 2 usage or plugin
 * dir), and that its output lists every error with its position; a plugin
 * dir with a file that is not a plugin, or two plugins of one name, is
 * invalid (exit 1, each file named) even when every policy is; a valid
 * run lists each plugin's description and config keys.
 */
#include <fcntl.h>

#include "cli/cli_check.h"
#include "policy_test.h"

/* Run the command with stdout captured into buf. */
static int run(char *buf, size_t len, int argc, char **argv)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/bg-cli-out-%s", pt_six_x);
    int fd = mkstemp(path);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = bg_cli_check_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

int main(void)
{
    char dir[128], p[2048], out[8192];
    pt_mkdtemp(dir, sizeof dir, "cli");
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    char *ok_argv[] = {"check", dir, "--plugins", FIX "/good", NULL};
    CHECK_INT(run(out, sizeof out, 4, ok_argv), 0);
    CHECK(strstr(out, ": ok, 1 policies, revision ") != NULL);
    char *eq_argv[] = {"check", "--plugins=" FIX "/good", dir, NULL};
    CHECK_INT(run(out, sizeof out, 3, eq_argv), 0);

    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8, rate: 2}", "  mode: loud\n");
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    CHECK_INT(run(out, sizeof out, 4, ok_argv), 1);
    char want[2048];
    snprintf(want, sizeof want,
             "%s/a.yaml:9:9: key 'spec.mode': expected one of enforce|shadow, got 'loud'\n"
             "%s/a.yaml:6:50: plugin fx_model: key 'rate': 2 is out of range [0, 1]\n"
             "%s: 2 error(s); a reload would be refused\n",
             dir, dir, dir);
    CHECK_STR(out, want);

    char *no_dir[] = {"check", NULL};
    CHECK_INT(run(out, sizeof out, 1, no_dir), 2);
    char *extra[] = {"check", dir, "other", NULL};
    CHECK_INT(run(out, sizeof out, 3, extra), 2);
    char *bad_plugins[] = {"check", dir, "--plugins", "/nonexistent", NULL};
    CHECK_INT(run(out, sizeof out, 4, bad_plugins), 2);
    CHECK_STR(out, "plugin dir /nonexistent: not a directory: pass --plugins DIR\n");
    /* The plugin dir: fx_model and fx_est, a second fx_est under another
     * file name, then a .so that is not a plugin. */
    char pdir[128];
    pt_mkdtemp(pdir, sizeof pdir, "cli-plugins");
    CHECK_INT(pt_copy(FIX "/good/fx_model.so", pdir, "fx_model.so"), 0);
    CHECK_INT(pt_copy(FIX "/good/fx_est.so", pdir, "fx_est.so"), 0);
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    char *own_argv[] = {"check", dir, "--plugins", pdir, NULL};
    CHECK_INT(run(out, sizeof out, 4, own_argv), 0);
    char line[4096];
    snprintf(line, sizeof line,
             "plugins in %s:\n  estimator fx_est 1 (fx_est.so, ABI 1.%d): "
             "test fixture\n      alpha            number in [0, 1], default 0: alpha (0 = "
             "delta*prior_floor)\n",
             pdir, BG_PLUGIN_ABI_MINOR);
    CHECK(strstr(out, line) != NULL);
    CHECK(strstr(out, "      n                integer in [1, 1000], default 4: number of "
                      "hypotheses\n") != NULL);
    CHECK(strstr(out, "      mode             one of fast|slow, default fast: speed\n") != NULL);

    CHECK_INT(pt_copy(FIX "/v2/fx_est.so", pdir, "fx_est_v2.so"), 0);
    CHECK_INT(run(out, sizeof out, 4, own_argv), 1);
    snprintf(want, sizeof want,
             "plugins that failed to load:\n"
             "%s/fx_est_v2.so: plugin name 'fx_est' (estimator) is already provided by "
             "%s/fx_est.so: rename one\n"
             "%s: 1 policies valid (revision ",
             pdir, pdir, dir);
    CHECK(strncmp(out, want, strlen(want)) == 0);
    snprintf(want, sizeof want,
             "), but 1 file(s) in plugin dir %s failed to load: fix or remove "
             "them\n",
             pdir);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, ": ok") == NULL);

    char v2[512];
    snprintf(v2, sizeof v2, "%s/fx_est_v2.so", pdir);
    unlink(v2);
    CHECK_INT(pt_write(pdir, "libnotes.so", "not a shared object\n"), 0);
    CHECK_INT(run(out, sizeof out, 4, own_argv), 1);
    snprintf(want, sizeof want,
             "plugins that failed to load:\n%s/libnotes.so: cannot load "
             "plugin: ",
             pdir);
    CHECK(strncmp(out, want, strlen(want)) == 0);
    CHECK(strstr(out, "but 1 file(s) in plugin dir") != NULL);
    pt_rmtree(pdir);

    char *help[] = {"check", "--help", NULL};
    CHECK_INT(run(out, sizeof out, 2, help), 0);
    CHECK(strstr(out, "usage: bayesguard check DIR") != NULL);
    pt_rmtree(dir);
    CHECK_DONE("test_policy_cli");
}
