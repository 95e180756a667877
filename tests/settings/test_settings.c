/*
 * test_settings.c — bg_settings_parse against its own table: the table's
 * invariants, defaults, flags over the --config file, repeatable and
 * flag-only settings, and every range limit from a flag and from the file
 * (each INT at min, max, min-1, max+1), all read off bg_settings_table so
 * a new row is tested without a new line here.
 */
#include <stdint.h>

#include "settings/settings.h"
#include "settings_test.h"

#define MAX_ARGS 64

static const char *g_dir;
static bg_settings g_s;
static bg_err g_err;

/* Parse a NULL-terminated list of arguments (the program name is added). */
static int parse(const char *first, ...)
{
    static char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = "bayesguardd";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *)) {
        CHECK(argc < MAX_ARGS - 1, "%d arguments", argc);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    bg_settings_close(&g_s);
    bg_err_clear(&g_err);
    return bg_settings_parse(&g_s, argc, argv, &g_err);
}

/* --config FILE with `yaml`, plus --policies/--plugins unless `bare`. */
static int parse_file(const char *yaml, const char *flag, const char *value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bg.yaml", g_dir);
    st_write(path, yaml);
    static char p[600];
    snprintf(p, sizeof p, "%s", path);
    if (flag != NULL)
        return parse("--config", p, "--policies", "P", "--plugins", "Q", flag, value, NULL);
    return parse("--config", p, "--policies", "P", "--plugins", "Q", NULL);
}

static long long_field(const bg_setting *e)
{
    return *(const long *)((const char *)&g_s + e->offset);
}

static void table_invariants(void)
{
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        CHECK(e->flag != NULL && e->help != NULL && e->help[0], "%s", e->name);
        /* flag = name with '-' for '_'; a config key is the name itself */
        char want[64];
        snprintf(want, sizeof want, "%s", e->name);
        for (char *c = want; *c; c++)
            *c = *c == '_' ? '-' : *c;
        CHECK_STR(e->flag, want);
        if (e->key != NULL)
            CHECK_STR(e->key, e->name);
        CHECK((e->def == NULL) != (e->absent == NULL), "%s: exactly one of def, absent", e->name);
        int valueless = e->type == BG_SETTING_TYPE_SWITCH || e->type == BG_SETTING_TYPE_EXIT;
        CHECK(valueless == (e->arg == NULL), "%s: arg iff it takes a value", e->name);
        CHECK(!valueless || e->key == NULL, "%s: a switch is a flag only", e->name);
        if (e->type == BG_SETTING_TYPE_INT)
            CHECK(e->min <= e->max, "%s: [%ld, %ld]", e->name, e->min, e->max);
        if (e->type == BG_SETTING_TYPE_LIST)
            CHECK(e->min == 1 && e->max >= 1, "%s: at most %ld", e->name, e->max);
    }
}

static void defaults_and_required(void)
{
    CHECK_INT(parse("--plugins", "Q", NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "--policies DIR is required"), "%s", g_err.msg);
    CHECK_INT(parse("--policies", "P", NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "--plugins DIR is required"), "%s", g_err.msg);

    CHECK_INT(parse("--policies", "P", "--plugins", "Q", NULL), BG_OK);
    CHECK_STR(g_s.policies, "P");
    CHECK_INT(g_s.n_listen, 1);
    CHECK_STR(g_s.listen[0], "127.0.0.1:50051");
    CHECK_INT(g_s.max_message_bytes, 4194304);
    CHECK_INT(g_s.drain_timeout_ms, 10000);
    CHECK_INT(g_s.drain_grace_ms, 200);
    CHECK_INT(g_s.watch_debounce_ms, 200);
    CHECK_INT(g_s.sampler_sessions, 64);
    CHECK_INT(g_s.metrics_timeout_ms, 10000);
    CHECK_INT(g_s.cq_threads, 0); /* no default: the server picks one per CPU */
    CHECK_STR(g_s.log_level, "info");
    CHECK(g_s.data_dir == NULL && g_s.metrics_listen == NULL && g_s.config == NULL, "%s",
          "unset strings");
    CHECK(!g_s.no_watch && !g_s.check && !g_s.help && !g_s.version, "%s", "switches off");
    CHECK_INT(g_s.from[BG_SETTING_policies], BG_SETTING_FROM_FLAG);
    CHECK_INT(g_s.from[BG_SETTING_drain_grace_ms], BG_SETTING_FROM_DEFAULT);
    CHECK_INT(g_s.from[BG_SETTING_data_dir], BG_SETTING_UNSET);
    /* every INT default is the table's text */
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        if (e->type == BG_SETTING_TYPE_INT && e->def != NULL)
            CHECK_INT(long_field(e), strtol(e->def, NULL, 10));
    }
}

static void flags(void)
{
    /* --help and --version: nothing is required and the --config file is
     * not read, but every flag is (a bad one anywhere is a usage error) */
    CHECK_INT(parse("--help", "--bogus", NULL), BG_ENOTFOUND);
    CHECK(strstr(g_err.msg, "'--bogus'"), "%s", g_err.msg);
    CHECK_INT(parse("--version", "--json", "stray", NULL), BG_EINVAL);
    CHECK_INT(parse("--help", "--config", "/nonexistent/bg.yaml", NULL), BG_OK);
    CHECK(g_s.help && !g_s.version, "help %d version %d", g_s.help, g_s.version);
    CHECK_INT(parse("--version", "--json", NULL), BG_OK);
    CHECK(g_s.version && g_s.json, "version %d json %d", g_s.version, g_s.json);
    CHECK_INT(parse("--bogus", NULL), BG_ENOTFOUND);
    CHECK(strstr(g_err.msg, "'--bogus'"), "%s", g_err.msg);
    CHECK_INT(parse("--policies", NULL), BG_ENOTFOUND); /* no value */
    CHECK_INT(parse("--policies", "P", "--plugins", "Q", "stray", NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "unexpected argument 'stray'"), "%s", g_err.msg);
    /* switches, and the last of a repeated STR wins */
    CHECK_INT(parse("--policies", "A", "--plugins", "Q", "--no-watch", "--check", "--policies", "P",
                    "--data-dir", "D", "--log-level", "warn", NULL),
              BG_OK);
    CHECK(g_s.no_watch && g_s.check, "no_watch %d check %d", g_s.no_watch, g_s.check);
    CHECK_STR(g_s.policies, "P");
    CHECK_STR(g_s.data_dir, "D");
    CHECK_STR(g_s.log_level, "warn");
    /* --listen: repeatable up to 16 */
    const bg_setting *l = &bg_settings_table[BG_SETTING_listen];
    CHECK_INT(l->max, 16);
    static char *argv[64];
    static char addr[20][32];
    int argc = 0;
    argv[argc++] = "bayesguardd";
    argv[argc++] = "--policies";
    argv[argc++] = "P";
    argv[argc++] = "--plugins";
    argv[argc++] = "Q";
    for (int i = 0; i < 17; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", 1000 + i);
        argv[argc++] = "--listen";
        argv[argc++] = addr[i];
    }
    bg_settings_close(&g_s);
    CHECK_INT(bg_settings_parse(&g_s, argc - 2, argv, &g_err), BG_OK);
    CHECK_INT(g_s.n_listen, 16);
    CHECK_STR(g_s.listen[15], "127.0.0.1:1015");
    CHECK_INT(g_s.from[BG_SETTING_listen], BG_SETTING_FROM_FLAG);
    /* 16 from flags and more in the file: the flags win, nothing added */
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/listen.yaml", g_dir);
    st_write(cfg, "listen: [\"127.0.0.1:9\", \"127.0.0.1:10\"]\n");
    argv[argc - 2] = "--config";
    argv[argc - 1] = cfg;
    bg_settings_close(&g_s);
    CHECK(bg_settings_parse(&g_s, argc, argv, &g_err) == BG_OK, "%s", g_err.msg);
    CHECK_INT(g_s.n_listen, 16);
    CHECK_STR(g_s.listen[0], "127.0.0.1:1000");
    unlink(cfg);
    argv[argc - 2] = "--listen";
    argv[argc - 1] = addr[16];
    bg_settings_close(&g_s);
    CHECK_INT(bg_settings_parse(&g_s, argc, argv, &g_err), BG_EINVAL);
    CHECK(strstr(g_err.msg, "--listen 127.0.0.1:1016: at most 16 values"), "%s", g_err.msg);
}

static void config_file(void)
{
    /* the file fills what flags left unset; flags win */
    CHECK_INT(parse_file("listen: [\"127.0.0.1:1\", \"unix:/x.sock\"]\ncq_threads: 3\n"
                         "drain_grace_ms: 50\ndata_dir: /d\nlog_level: debug\n",
                         "--cq-threads", "5"),
              BG_OK);
    CHECK_INT(g_s.cq_threads, 5);
    CHECK_INT(g_s.from[BG_SETTING_cq_threads], BG_SETTING_FROM_FLAG);
    CHECK_INT(g_s.drain_grace_ms, 50);
    CHECK_INT(g_s.from[BG_SETTING_drain_grace_ms], BG_SETTING_FROM_FILE);
    CHECK_STR(g_s.data_dir, "/d");
    CHECK_STR(g_s.log_level, "debug");
    CHECK_INT(g_s.n_listen, 2);
    CHECK_STR(g_s.listen[1], "unix:/x.sock");
    CHECK_INT(parse_file("listen: \"127.0.0.1:1\"\n", "--listen", "127.0.0.1:2"), BG_OK);
    CHECK_INT(g_s.n_listen, 1);
    CHECK_STR(g_s.listen[0], "127.0.0.1:2");
    /* required settings may come from the file */
    char path[600];
    snprintf(path, sizeof path, "%s/req.yaml", g_dir);
    st_write(path, "policies: /p\nplugins: /q\n");
    CHECK_INT(parse("--config", path, NULL), BG_OK);
    CHECK_STR(g_s.plugins, "/q");
    /* an empty file is no settings */
    CHECK_INT(parse_file("", NULL, NULL), BG_OK);
    /* wrong shapes, with file:line:column */
    CHECK_INT(parse_file("- a\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "bg.yaml:1:1: expected a map of settings"), "%s", g_err.msg);
    CHECK_INT(parse_file("policies: [a]\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "bg.yaml:1:11: policies: expected a string, got a list"), "%s",
          g_err.msg);
    CHECK_INT(parse_file("cq_threads: {a: 1}\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "cq_threads: expected an integer, got a map"), "%s", g_err.msg);
    CHECK_INT(parse_file("listen: [[a]]\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "listen: expected a list of strings"), "%s", g_err.msg);
    char many[1024] = "listen: [";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"h:%d\"", i ? ", " : "", i);
    strcat(many, "]\n");
    CHECK_INT(parse_file(many, NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "listen: expected at most 16 values, got 17"), "%s", g_err.msg);
    /* a LIST key may be a map: each entry is "KEY=V1,V2", the flag's form */
    CHECK_INT(
        parse_file("identities: {\"spiffe://x/a\": [agent, health], \"*\": [], u: reporter}\n",
                   NULL, NULL),
        BG_OK);
    CHECK_INT(g_s.n_identities, 3);
    CHECK_STR(g_s.identities[0], "spiffe://x/a=agent,health");
    CHECK_STR(g_s.identities[1], "*=");
    CHECK_STR(g_s.identities[2], "u=reporter");
    CHECK_INT(parse_file("identities: {a: [[agent]]}\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "identities: a: expected a string or a list of strings, got a list"),
          "%s", g_err.msg);
    /* a value from the file is checked even when a flag overrides it */
    CHECK_INT(parse_file("cq_threads: 0\n", "--cq-threads", "2"), BG_EINVAL);
    CHECK(strstr(g_err.msg, "cq_threads: 0: expected an integer in [1, 256]"), "%s", g_err.msg);
    /* a flag-only setting is not a key (test_settings_daemon checks the key list) */
    CHECK_INT(parse_file("policies: /p\nno_watch: true\n", NULL, NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "bg.yaml:2:1: unknown setting 'no_watch': expected one of "), "%s",
          g_err.msg);
    CHECK_INT(parse("--config", "/nonexistent/bg.yaml", NULL), BG_EINVAL);
    CHECK(strstr(g_err.msg, "/nonexistent/bg.yaml"), "%s", g_err.msg);
}

/* Every INT limit from a flag and from the file. */
static void ranges(void)
{
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        if (e->type != BG_SETTING_TYPE_INT)
            continue;
        char flag[80], range[64], yaml[160];
        snprintf(flag, sizeof flag, "--%s", e->flag);
        snprintf(range, sizeof range, "[%ld, %ld]", e->min, e->max);
        const long vals[4] = {e->min, e->max, e->min - 1, e->max + 1};
        for (int k = 0; k < 4; k++) {
            char v[32], want[160];
            snprintf(v, sizeof v, "%ld", vals[k]);
            int rc = parse("--policies", "P", "--plugins", "Q", flag, v, NULL);
            if (k < 2) {
                CHECK_INT(rc, BG_OK);
                CHECK_INT(long_field(e), vals[k]);
            } else {
                CHECK_INT(rc, BG_EINVAL);
                snprintf(want, sizeof want, "%s %s: expected an integer in %s", flag, v, range);
                CHECK(strstr(g_err.msg, want), "%s", g_err.msg);
            }
            snprintf(yaml, sizeof yaml, "%s: %s\n", e->key, v);
            rc = parse_file(yaml, NULL, NULL);
            if (k < 2) {
                CHECK_INT(rc, BG_OK);
                CHECK_INT(long_field(e), vals[k]);
            } else {
                CHECK_INT(rc, BG_EINVAL);
                snprintf(want, sizeof want, "%s: %s: expected an integer in %s", e->key, v, range);
                CHECK(strstr(g_err.msg, want), "%s", g_err.msg);
            }
        }
        CHECK_INT(parse("--policies", "P", "--plugins", "Q", flag, "12x", NULL), BG_EINVAL);
        CHECK_INT(parse("--policies", "P", "--plugins", "Q", flag, "", NULL), BG_EINVAL);
        printf("  %-22s %s from a flag and the file\n", flag, range);
    }
}

int main(void)
{
    g_dir = st_tmpdir();
    table_invariants();
    defaults_and_required();
    flags();
    config_file();
    ranges();
    bg_settings_close(&g_s);
    char path[600];
    snprintf(path, sizeof path, "%s/bg.yaml", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/req.yaml", g_dir);
    unlink(path);
    rmdir(g_dir);
    CHECK_DONE("test_settings");
}
