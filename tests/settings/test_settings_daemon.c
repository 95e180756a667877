/*
 * test_settings_daemon.c — the real bayesguardd and its settings table:
 * --help lists every setting with its flag, config key, type, range,
 * default and help; an unknown --config key exits 2 with a message that
 * lists every allowed key; each integer setting out of range, from a flag
 * or the file, exits 2 naming the setting and the range; --help and
 * --version still refuse a bad option anywhere on the command line (exit
 * 2), and --json goes with --version only. The expectations
 * are read off bg_settings_table, so a new row is covered here too.
 */
#include <fcntl.h>

#include "settings/settings.h"
#include "settings_test.h"

static char g_exe[1024], g_out[600], g_errf[600];
static char *g_stdout, *g_stderr;

/* Run bayesguardd with args (NULL-terminated); its exit code, its output
 * in g_stdout and g_stderr. */
static int run_v(char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = g_exe;
    while (*args != NULL && argc < 63)
        argv[argc++] = *args++;
    argv[argc] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "%s", "fork");
    if (pid == 0) {
        int o = open(g_out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(g_errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(127);
        execv(g_exe, argv);
        _exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "%s", "waitpid");
    free(g_stdout);
    free(g_stderr);
    g_stdout = st_read(g_out);
    g_stderr = st_read(g_errf);
    CHECK(WIFEXITED(st), "%s did not exit (status %d): %s", argv[1], st, g_stderr);
    return WEXITSTATUS(st);
}

static int run(const char *first, ...)
{
    char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && n < 63; a = va_arg(ap, const char *))
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    return run_v(args);
}

/* s with every run of whitespace made one space (wrapped help, unwrapped). */
static void squeeze(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        int sp = *r == ' ' || *r == '\n';
        if (!sp || (w > s && w[-1] != ' '))
            *w++ = sp ? ' ' : *r;
    }
    *w = '\0';
}

static void help_lists_every_setting(void)
{
    CHECK_INT(run("--help", NULL), 0);
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        char head[128], want[512];
        snprintf(head, sizeof head, "\n  --%s%s%s\n", e->flag, e->arg ? " " : "",
                 e->arg ? e->arg : "");
        const char *p = strstr(g_stdout, head);
        CHECK(p != NULL, "--help has no line '%.*s':\n%s", (int)strlen(head) - 2, head + 1,
              g_stdout);
        p += strlen(head);
        const char *end = strstr(p, "\n  --");
        if (end == NULL)
            end = strstr(p, "\n\n");
        char entry[2048];
        snprintf(entry, sizeof entry, "%.*s", (int)(end ? end - p : 200), p);
        squeeze(entry);
        /* config key or flag only */
        if (e->key)
            snprintf(want, sizeof want, "config: %s;", e->key);
        else
            snprintf(want, sizeof want, "flag only;");
        CHECK(strstr(entry, want), "--%s: no '%s' in: %s", e->flag, want, entry);
        /* type and range */
        if (e->type == BG_SETTING_TYPE_INT)
            snprintf(want, sizeof want, "integer in [%ld, %ld]", e->min, e->max);
        else if (e->type == BG_SETTING_TYPE_LIST)
            snprintf(want, sizeof want, "repeatable (at most %ld;", e->max);
        else if (e->type == BG_SETTING_TYPE_STR)
            snprintf(want, sizeof want, "; string;");
        else
            snprintf(want, sizeof want, "%s",
                     e->type == BG_SETTING_TYPE_SWITCH ? "switch" : "exits 0");
        CHECK(strstr(entry, want), "--%s: no '%s' in: %s", e->flag, want, entry);
        /* default */
        if (e->def)
            snprintf(want, sizeof want, "default: %s", e->def);
        else if (strcmp(e->absent, "required") == 0)
            snprintf(want, sizeof want, "; required");
        else if (e->absent[0])
            snprintf(want, sizeof want, "default: %s", e->absent);
        else
            want[0] = '\0';
        CHECK(strstr(entry, want), "--%s: no '%s' in: %s", e->flag, want, entry);
        /* the whole help text */
        snprintf(want, sizeof want, "%s", e->help);
        squeeze(want);
        CHECK(strstr(entry, want), "--%s: help '%s' not in: %s", e->flag, want, entry);
    }
    CHECK(strstr(g_stdout, "every *.so in DIR is loaded") && !strstr(g_stdout, "bg_*.so"), "%s",
          "--plugins: every *.so is loaded, a plugin is named by its descriptor");
    printf("  --help: %d settings, each with flag, key, type, range, default and help\n",
           (int)BG_SETTING_COUNT);
}

static void unknown_key_lists_the_keys(const char *dir)
{
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/bg.yaml", dir);
    st_write(cfg, "policies: /p\ncolour: blue\n");
    CHECK_INT(run("--config", cfg, NULL), 2);
    CHECK(strstr(g_stderr, "bg.yaml:2:1: unknown setting 'colour': expected one of "), "%s",
          g_stderr);
    const char *list = strstr(g_stderr, "expected one of ");
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        char word[80];
        snprintf(word, sizeof word, "%s", e->key ? e->key : e->name);
        size_t n = strlen(word);
        int listed = 0;
        for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
            listed |= (p[-1] == ' ') && (p[n] == ',' || p[n] == '\n');
        CHECK(listed == (e->key != NULL), "'%s' %s listed: %s", word, e->key ? "not" : "wrongly",
              g_stderr);
    }
    unlink(cfg);
    printf("  an unknown key: exit 2, every allowed key listed\n");
}

static void out_of_range_exits_2(const char *dir)
{
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/range.yaml", dir);
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        if (e->type != BG_SETTING_TYPE_INT)
            continue;
        char flag[80], v[32], want[200], yaml[200];
        snprintf(flag, sizeof flag, "--%s", e->flag);
        snprintf(v, sizeof v, "%ld", e->max + 1);
        CHECK_INT(run("--policies", "P", "--plugins", "Q", flag, v, NULL), 2);
        snprintf(want, sizeof want, "bayesguardd: %s %s: expected an integer in [%ld, %ld]", flag,
                 v, e->min, e->max);
        CHECK(strstr(g_stderr, want), "want '%s', got: %s", want, g_stderr);
        snprintf(v, sizeof v, "%ld", e->min - 1);
        snprintf(yaml, sizeof yaml, "%s: %s\n", e->key, v);
        st_write(cfg, yaml);
        CHECK_INT(run("--policies", "P", "--plugins", "Q", "--config", cfg, NULL), 2);
        snprintf(want, sizeof want, "range.yaml:1:%d: %s: %s: expected an integer in [%ld, %ld]",
                 (int)strlen(e->key) + 3, e->key, v, e->min, e->max);
        CHECK(strstr(g_stderr, want), "want '%s', got: %s", want, g_stderr);
        printf("  %-22s out of range: exit 2 naming [%ld, %ld], from a flag and the file\n", flag,
               e->min, e->max);
    }
    unlink(cfg);
}

static void other_usage_errors(void)
{
    CHECK_INT(run("--bogus", NULL), 2);
    CHECK(strstr(g_stderr, "'--bogus'") && strstr(g_stderr, "usage: bayesguardd"), "%s", g_stderr);
    CHECK_INT(run("--policies", "P", NULL), 2);
    CHECK(strstr(g_stderr, "--plugins DIR is required"), "%s", g_stderr);
    char *many[40];
    char addr[17][24];
    int n = 0;
    for (int i = 0; i < 17; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", 2000 + i);
        many[n++] = "--listen";
        many[n++] = addr[i];
    }
    many[n] = NULL; /* 17 addresses: one over --listen's limit */
    CHECK_INT(run_v(many), 2);
    CHECK(strstr(g_stderr, "--listen 127.0.0.1:2016: at most 16 values"), "%s", g_stderr);
    CHECK_INT(run("--version", NULL), 0);
    CHECK(strncmp(g_stdout, "bayesguardd ", 12) == 0, "%s", g_stdout);
}

/* The early exits (--help, --version) still read the whole command line:
 * a bad option after them is a usage error (exit 2, nothing printed on
 * stdout), before or after; --json goes with --version only. */
static void early_exits_read_every_flag(void)
{
    static const char *const exits[] = {"--help", "--version"};
    for (size_t i = 0; i < 2; i++) {
        CHECK_INT(run(exits[i], "--bogus", NULL), 2);
        CHECK(strstr(g_stderr, "'--bogus'") && g_stdout[0] == '\0', "%s --bogus: %s | %s", exits[i],
              g_stderr, g_stdout);
        CHECK_INT(run("--bogus", exits[i], NULL), 2);
        CHECK_INT(run(exits[i], "stray", NULL), 2);
        CHECK(strstr(g_stderr, "unexpected argument 'stray'"), "%s", g_stderr);
        CHECK_INT(run(exits[i], "--listen", NULL), 2); /* a value missing */
        CHECK_INT(run(exits[i], "--max-escalations", "0", NULL), 2);
        CHECK(strstr(g_stderr, "--max-escalations") && strstr(g_stderr, "[1, 65536]"), "%s",
              g_stderr);
        /* a good flag beside it changes nothing; no setting is required */
        CHECK_INT(run(exits[i], "--log-level", "warn", NULL), 0);
        CHECK(g_stdout[0] != '\0', "%s printed nothing", exits[i]);
    }
    CHECK_INT(run("--version", "--json", NULL), 0);
    CHECK(strncmp(g_stdout, "{\"program\": \"bayesguardd\"", 24) == 0, "%s", g_stdout);
    CHECK_INT(run("--json", "--version", NULL), 0);
    CHECK(g_stdout[0] == '{', "%s", g_stdout);
    CHECK_INT(run("--version", "--json", "--bogus", NULL), 2);
    CHECK_INT(run("--json", "--policies", "P", "--plugins", "Q", NULL), 2);
    CHECK(strstr(g_stderr, "--json") && strstr(g_stderr, "--version"), "%s", g_stderr);
    /* --check reads every flag too (it exits after validating) */
    CHECK_INT(run("--check", "--bogus", NULL), 2);
    CHECK(strstr(g_stderr, "'--bogus'"), "%s", g_stderr);
}

int main(void)
{
    const char *build = getenv("BG_BUILD_DIR");
    if (build == NULL) {
        printf("BG_BUILD_DIR not set (run through ctest); skipped\n");
        return BG_TEST_SKIP;
    }
    snprintf(g_exe, sizeof g_exe, "%s/daemon/bayesguardd", build);
    if (access(g_exe, X_OK) != 0) {
        printf("skip: %s not built\n", g_exe);
        return BG_TEST_SKIP;
    }
    const char *dir = st_tmpdir();
    snprintf(g_out, sizeof g_out, "%s/stdout", dir);
    snprintf(g_errf, sizeof g_errf, "%s/stderr", dir);
    help_lists_every_setting();
    unknown_key_lists_the_keys(dir);
    out_of_range_exits_2(dir);
    other_usage_errors();
    early_exits_read_every_flag();
    free(g_stdout);
    free(g_stderr);
    unlink(g_out);
    unlink(g_errf);
    rmdir(dir);
    CHECK_DONE("test_settings_daemon");
}
