/*
 * main.c — bayesguardd: flags and config file, start, serve, stop.
 *
 * Start order (each step's failure is a clear message and exit code 2):
 *   flags (+ --config YAML; flags win) -> log level -> plugin host (dlopen
 *   the plugin dir) -> engine (replays --data-dir) -> policy store (loads
 *   and validates --policies) -> metrics registry -> loop -> decision log
 *   (opens the file) -> gRPC server (binds every --listen) -> metrics
 *   endpoint (binds --metrics-listen; its address logged before the ready
 *   file exists) -> signals, policy watch -> ready file -> "how to query"
 *   -> run.
 * Stop: SIGTERM/SIGINT -> the server drains (new calls refused, in-flight
 * calls finish within --drain-timeout-ms) -> the metrics endpoint closes
 * (it serves bayesguard_draining 1 until then) -> the loop stops -> everything
 * is destroyed in reverse order -> exit 0. SIGHUP reloads the policies on
 * the loop's worker pool and has the decision log reopen its file. exit()
 * is called here and only here.
 *
 * Threads: everything below runs on the main thread, which is the loop
 * thread once bg_loop_run starts.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/decision_log.h"
#include "common/bg_err.h"
#include "common/bg_log.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"
#include "policy/policy.h"
#include "rpc/rpc.h"

#ifndef BG_VERSION
#define BG_VERSION "0.1.0"
#endif

#define BG_MAX_LISTEN 16
#define BG_EXIT_USAGE 2

typedef struct opts {
    const char *listen[BG_MAX_LISTEN];
    size_t n_listen;
    const char *policies, *plugins, *data_dir, *ready_file, *log_level, *config;
    const char *decision_log;
    const char *metrics_listen;
    long cq_threads;
    long max_message_bytes;
    long drain_timeout_ms;
    long drain_grace_ms;
    long watch_debounce_ms;
    long sampler_sessions;
    long metrics_timeout_ms;
    int no_watch;
    int check;
} opts;

typedef struct daemon_ctx {
    opts o;
    bg_loop *loop;
    bg_rpc_server *server;
    bg_policy_store *store;
    bg_decision_log *decisions;
    bg_metrics *metrics;
    bg_metrics_http *http; /* NULL when --metrics-listen is not given, or once closed */
    int draining;
} daemon_ctx;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bayesguardd --listen ADDR [--listen ADDR ...] --policies DIR --plugins DIR\n"
            "                   [--data-dir DIR] [--decision-log FILE] [--config FILE]\n"
            "                   [--ready-file FILE]\n"
            "                   [--cq-threads N] [--max-message-bytes N] [--drain-timeout-ms N]\n"
            "                   [--drain-grace-ms N] [--sampler-sessions N]\n"
            "                   [--watch-debounce-ms N] [--no-watch] [--log-level L]\n"
            "                   [--metrics-listen HOST:PORT] [--metrics-timeout-ms N]\n"
            "\n"
            "  --listen ADDR          host:port (port 0: the kernel picks) or unix:/path;\n"
            "                         repeatable (default 127.0.0.1:50051)\n"
            "  --policies DIR         policy directory (YAML), watched and hot-reloaded\n"
            "  --plugins DIR          plugin directory (bg_*.so)\n"
            "  --data-dir DIR         observation store; without it observations live in memory\n"
            "  --decision-log FILE    append one JSON line per Evaluate outcome there ('-':\n"
            "                         stdout); reopened on SIGHUP, after log rotation\n"
            "  --config FILE          YAML file with the same keys (listen, policies, plugins,\n"
            "                         data_dir, cq_threads, max_message_bytes, drain_timeout_ms,\n"
            "                         watch_debounce_ms, sampler_sessions, ready_file,\n"
            "                         decision_log, log_level, metrics_listen,\n"
            "                         metrics_timeout_ms); flags win\n"
            "  --ready-file FILE      once serving, write the bound addresses there, one a line\n"
            "  --cq-threads N         completion-queue threads (default: CPU count)\n"
            "  --max-message-bytes N  largest request accepted (default 4194304)\n"
            "  --drain-timeout-ms N   on SIGTERM, wait this long for in-flight calls (default "
            "10000)\n"
            "  --drain-grace-ms N     on SIGTERM, refuse new calls (UNAVAILABLE, health\n"
            "                         NOT_SERVING) this long before closing the listeners\n"
            "                         (default 200)\n"
            "  --watch-debounce-ms N  policy directory watch debounce (default 200)\n"
            "  --sampler-sessions N   sessions per sampled policy that keep a trained sampler\n"
            "                         (default 64; others retrain when used again)\n"
            "  --no-watch             do not watch the policy directory (SIGHUP/Reload only)\n"
            "  --log-level L          debug | info | warn | error (default info)\n"
            "  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                         (port 0: the kernel picks; the address is logged as\n"
            "                         'metrics on ADDR'); default: off\n"
            "  --metrics-timeout-ms N a metrics client must send its request within this time\n"
            "                         (default 10000)\n"
            "  --check                validate --policies with --plugins as a reload would,\n"
            "                         print every error, exit 0 (valid) or 1 (not); no serving\n"
            "  --version, --help\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit 0 (a second one cancels what is still in\n"
            "flight); SIGHUP reloads the policies and reopens the decision log.\n"
            "See docs/CONFIG.md.\n");
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bayesguardd: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return BG_EXIT_USAGE;
}

static int parse_long(const char *flag, const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return die("%s %s: expected an integer in [%ld, %ld]", flag, s, min, max);
    *out = v;
    return 0;
}

/* Config file keys that take an integer, and where they go. */
typedef struct int_key {
    const char *key;
    size_t offset;
    long min, max;
} int_key;

static const int_key int_keys[] = {
    {"cq_threads", offsetof(opts, cq_threads), 1, 256},
    {"max_message_bytes", offsetof(opts, max_message_bytes), 1024, 1L << 30},
    {"drain_timeout_ms", offsetof(opts, drain_timeout_ms), 0, 3600000},
    {"drain_grace_ms", offsetof(opts, drain_grace_ms), 0, 3600000},
    {"watch_debounce_ms", offsetof(opts, watch_debounce_ms), 0, 60000},
    {"sampler_sessions", offsetof(opts, sampler_sessions), 1, 1000000},
    {"metrics_timeout_ms", offsetof(opts, metrics_timeout_ms), 10, 3600000},
};

typedef struct str_key {
    const char *key;
    size_t offset;
} str_key;

static const str_key str_keys[] = {
    {"policies", offsetof(opts, policies)},   {"plugins", offsetof(opts, plugins)},
    {"data_dir", offsetof(opts, data_dir)},   {"ready_file", offsetof(opts, ready_file)},
    {"log_level", offsetof(opts, log_level)}, {"decision_log", offsetof(opts, decision_log)},
    {"metrics_listen", offsetof(opts, metrics_listen)},
};

/* Apply the config file to every option the flags left unset. The doc is
 * kept alive by the caller (strings point into it). */
static int apply_config(opts *o, const opts *flags_set, bg_cfg_doc **doc_out)
{
    bg_err err;
    bg_err_clear(&err);
    bg_cfg_doc *doc = NULL;
    if (bg_cfg_parse_file(o->config, &doc, &err) != BG_OK)
        return die("%s", err.msg);
    *doc_out = doc;
    if (bg_cfg_doc_count(doc) == 0)
        return 0;
    const bg_cfg_node *root = bg_cfg_doc_root(doc, 0);
    if (bg_cfg_type_of(root) != BG_CFG_MAP)
        return die("%s:%d:%d: expected a map of settings (listen, policies, plugins, ...)",
                   bg_cfg_file(root), bg_cfg_line(root), bg_cfg_column(root));
    for (size_t i = 0; i < bg_cfg_len(root); i++) {
        const char *key = bg_cfg_key(root, i);
        const bg_cfg_node *v = bg_cfg_value(root, i);
        int known = 0;
        if (strcmp(key, "listen") == 0) {
            known = 1;
            if (flags_set->n_listen > 0)
                continue;
            if (bg_cfg_type_of(v) == BG_CFG_SCALAR) {
                o->listen[o->n_listen++] = bg_cfg_scalar(v);
                continue;
            }
            if (bg_cfg_type_of(v) != BG_CFG_SEQ)
                return die("%s:%d:%d: listen: expected an address or a list of addresses",
                           bg_cfg_file(v), bg_cfg_line(v), bg_cfg_column(v));
            for (size_t k = 0; k < bg_cfg_len(v); k++) {
                const bg_cfg_node *it = bg_cfg_item(v, k);
                if (bg_cfg_type_of(it) != BG_CFG_SCALAR || o->n_listen >= BG_MAX_LISTEN)
                    return die("%s:%d:%d: listen: expected at most %d addresses (strings)",
                               bg_cfg_file(it), bg_cfg_line(it), bg_cfg_column(it),
                               BG_MAX_LISTEN);
                o->listen[o->n_listen++] = bg_cfg_scalar(it);
            }
            continue;
        }
        for (size_t k = 0; k < sizeof(str_keys) / sizeof(str_keys[0]); k++) {
            if (strcmp(key, str_keys[k].key) != 0)
                continue;
            known = 1;
            if (bg_cfg_type_of(v) != BG_CFG_SCALAR)
                return die("%s:%d:%d: %s: expected a string", bg_cfg_file(v), bg_cfg_line(v),
                           bg_cfg_column(v), key);
            const char **dst = (const char **)((char *)o + str_keys[k].offset);
            if (*(const char *const *)((const char *)flags_set + str_keys[k].offset) == NULL)
                *dst = bg_cfg_scalar(v);
        }
        for (size_t k = 0; k < sizeof(int_keys) / sizeof(int_keys[0]); k++) {
            if (strcmp(key, int_keys[k].key) != 0)
                continue;
            known = 1;
            char flag[96];
            snprintf(flag, sizeof(flag), "%s:%d:%d: %s:", bg_cfg_file(v), bg_cfg_line(v),
                     bg_cfg_column(v), key);
            const char *text = bg_cfg_type_of(v) == BG_CFG_SCALAR ? bg_cfg_scalar(v) : "";
            long val;
            if (parse_long(flag, text, int_keys[k].min, int_keys[k].max, &val) != 0)
                return BG_EXIT_USAGE;
            if (*(const long *)((const char *)flags_set + int_keys[k].offset) < 0)
                *(long *)((char *)o + int_keys[k].offset) = val;
        }
        if (!known)
            return die("%s:%d:%d: unknown setting '%s': expected one of listen, policies, "
                       "plugins, data_dir, ready_file, decision_log, log_level, cq_threads, "
                       "max_message_bytes, drain_timeout_ms, drain_grace_ms, watch_debounce_ms, "
                       "sampler_sessions, metrics_listen, metrics_timeout_ms",
                       bg_cfg_file(v), bg_cfg_line(v), bg_cfg_column(v), key);
    }
    return 0;
}

enum {
    OPT_LISTEN = 1000,
    OPT_POLICIES,
    OPT_PLUGINS,
    OPT_DATA_DIR,
    OPT_DECISION_LOG,
    OPT_CONFIG,
    OPT_READY,
    OPT_METRICS_LISTEN,
    OPT_INT, /* an integer flag: int_keys has its range (config key = name with '_') */
    OPT_NO_WATCH,
    OPT_LOG,
    OPT_VERSION,
    OPT_HELP,
    OPT_CHECK
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"policies", required_argument, NULL, OPT_POLICIES},
    {"plugins", required_argument, NULL, OPT_PLUGINS},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"decision-log", required_argument, NULL, OPT_DECISION_LOG},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"ready-file", required_argument, NULL, OPT_READY},
    {"cq-threads", required_argument, NULL, OPT_INT},
    {"max-message-bytes", required_argument, NULL, OPT_INT},
    {"drain-timeout-ms", required_argument, NULL, OPT_INT},
    {"drain-grace-ms", required_argument, NULL, OPT_INT},
    {"watch-debounce-ms", required_argument, NULL, OPT_INT},
    {"sampler-sessions", required_argument, NULL, OPT_INT},
    {"metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN},
    {"metrics-timeout-ms", required_argument, NULL, OPT_INT},
    {"no-watch", no_argument, NULL, OPT_NO_WATCH},
    {"check", no_argument, NULL, OPT_CHECK},
    {"log-level", required_argument, NULL, OPT_LOG},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* --name VALUE for an integer setting: its range and place from int_keys. */
static int parse_int_flag(const char *name, const char *value, opts *o)
{
    char key[64], flag[72];
    snprintf(key, sizeof key, "%s", name);
    for (char *p = key; *p; p++)
        *p = *p == '-' ? '_' : *p;
    snprintf(flag, sizeof flag, "--%s", name);
    for (size_t k = 0; k < sizeof(int_keys) / sizeof(int_keys[0]); k++)
        if (strcmp(key, int_keys[k].key) == 0)
            return parse_long(flag, value, int_keys[k].min, int_keys[k].max,
                              (long *)((char *)o + int_keys[k].offset));
    return die("%s: no such setting", flag); /* a long_opts entry without an int_keys one */
}

/* Returns -1 to continue, or an exit code. */
static int parse_flags(int argc, char **argv, opts *o)
{
    int c, idx = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", long_opts, &idx)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_LISTEN:
            if (o->n_listen >= BG_MAX_LISTEN)
                return die("--listen: at most %d addresses", BG_MAX_LISTEN);
            o->listen[o->n_listen++] = optarg;
            break;
        case OPT_POLICIES: o->policies = optarg; break;
        case OPT_PLUGINS: o->plugins = optarg; break;
        case OPT_DATA_DIR: o->data_dir = optarg; break;
        case OPT_DECISION_LOG:
            o->decision_log = optarg;
            break;
        case OPT_CONFIG: o->config = optarg; break;
        case OPT_READY:
            o->ready_file = optarg;
            break;
        case OPT_METRICS_LISTEN:
            o->metrics_listen = optarg;
            break;
        case OPT_LOG:
            o->log_level = optarg;
            break;
        case OPT_NO_WATCH:
            o->no_watch = 1;
            break;
        case OPT_CHECK:
            o->check = 1;
            break;
        case OPT_INT:
            rc = parse_int_flag(long_opts[idx].name, optarg, o);
            break;
        case OPT_VERSION:
            printf("bayesguardd %s (plugin ABI %d.%d)\n", BG_VERSION, BG_PLUGIN_ABI_MAJOR,
                   BG_PLUGIN_ABI_MINOR);
            return 0;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "bayesguardd: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return BG_EXIT_USAGE;
        }
        if (rc != 0)
            return rc;
    }
    if (optind < argc)
        return die("unexpected argument '%s': every setting is a --flag (see --help)",
                   argv[optind]);
    return -1;
}

static int write_ready_file(const char *path, bg_rpc_server *srv)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < bg_rpc_server_bound_count(srv); i++)
        fprintf(f, "%s\n", bg_rpc_server_bound(srv, i));
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void drained(void *arg)
{
    daemon_ctx *d = arg;
    BG_INFO("main", "drained: stopping");
    bg_metrics_http_close(d->http);
    d->http = NULL;
    bg_loop_stop(d->loop);
}

static void on_term(void *arg)
{
    daemon_ctx *d = arg;
    if (d->draining) {
        BG_WARN("main", "second signal: cancelling the %llu calls still in flight",
                (unsigned long long)bg_rpc_server_in_flight(d->server));
        bg_rpc_server_drain_now(d->server);
        return;
    }
    d->draining = 1;
    BG_INFO("main", "signal: draining for up to %ld ms", d->o.drain_timeout_ms);
    bg_rpc_server_drain(d->server, (unsigned)d->o.drain_timeout_ms,
                        (unsigned)d->o.drain_grace_ms, drained, d);
}

static void hup_work(void *arg)
{
    daemon_ctx *d = arg;
    bg_err err;
    bg_err_clear(&err);
    if (bg_policy_store_reload(d->store, "sighup", &err) != BG_OK)
        BG_WARN("main", "SIGHUP reload refused, the current policies keep serving: %s", err.msg);
}

static void hup_done(void *arg)
{
    daemon_ctx *d = arg;
    bg_policy_status st;
    bg_policy_store_status(d->store, &st);
    BG_INFO("main", "SIGHUP reload done: revision %s (%llu policies)", st.revision,
            (unsigned long long)st.policies);
}

static void on_hup(void *arg)
{
    daemon_ctx *d = arg;
    if (d->draining)
        return;
    bg_decision_log_reopen(d->decisions);
    if (bg_loop_post_work(d->loop, hup_work, hup_done, d) != BG_OK)
        BG_WARN("main", "SIGHUP: cannot schedule the reload");
}

static void print_howto(bg_rpc_server *srv)
{
    const char *a = bg_rpc_server_bound(srv, 0);
    BG_INFO("main", "serving; try:\n"
                    "  bayesguard health --addr %s\n"
                    "  bayesguard eval --addr %s --tool TOOL --session s1\n"
                    "  bayesguard status --addr %s\n"
                    "  python3 -c \"import grpc; ch=grpc.insecure_channel('%s'); "
                    "print(ch.unary_unary('/grpc.health.v1.Health/Check')(b''))\"  "
                    "# b'\\x08\\x01' = SERVING",
            a, a, a, a);
}

int main(int argc, char **argv)
{
    daemon_ctx d;
    memset(&d, 0, sizeof(d));
    opts flags;
    memset(&flags, 0, sizeof(flags));
    for (size_t k = 0; k < sizeof(int_keys) / sizeof(int_keys[0]); k++)
        *(long *)((char *)&flags + int_keys[k].offset) = -1; /* -1: not given */
    int rc = parse_flags(argc, argv, &flags);
    if (rc >= 0)
        return rc;
    d.o = flags;
    bg_cfg_doc *cfg = NULL;
    if (d.o.config != NULL && (rc = apply_config(&d.o, &flags, &cfg)) != 0) {
        if (cfg != NULL)
            bg_cfg_doc_destroy(cfg);
        return rc;
    }
    if (d.o.n_listen == 0)
        d.o.listen[d.o.n_listen++] = "127.0.0.1:50051";
    if (d.o.drain_timeout_ms < 0)
        d.o.drain_timeout_ms = 10000;
    if (d.o.drain_grace_ms < 0)
        d.o.drain_grace_ms = 200;
    if (d.o.watch_debounce_ms < 0)
        d.o.watch_debounce_ms = 200;
    int exit_code = BG_EXIT_USAGE;
    bg_plugin_host *host = NULL;
    bg_engine *engine = NULL;
    bg_sampled_trainer *sampled = NULL;
    bg_err err;
    bg_err_clear(&err);

    if (d.o.log_level != NULL) {
        int lvl = bg_log_level_parse(d.o.log_level);
        if (lvl < 0) {
            die("--log-level %s: expected debug, info, warn or error", d.o.log_level);
            goto out;
        }
        bg_log_set_level(lvl);
    }
    if (d.o.policies == NULL || d.o.plugins == NULL) {
        die("%s is required: --policies DIR (YAML policies) and --plugins DIR (bg_*.so); "
            "see --help",
            d.o.policies == NULL ? "--policies" : "--plugins");
        goto out;
    }
    if (d.o.check) {
        exit_code = bg_policy_check_dir(d.o.policies, d.o.plugins, stdout);
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f) must fail an append with EFBIG, which
     * the observation log reports and undoes, not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);

    if (bg_plugin_host_create(d.o.plugins, &host, &err) != BG_OK) {
        die("--plugins %s: %s", d.o.plugins, err.msg);
        goto out;
    }
    /* Models too large to enumerate: sampled verdicts, the sampler trained
     * in the background as observations arrive (daemon/engine/sampled.h). */
    bg_sampled_opts so = {.max_sessions =
                              d.o.sampler_sessions > 0 ? (size_t)d.o.sampler_sessions : 0};
    if (bg_sampled_trainer_create(&so, &sampled, &err) != BG_OK) {
        die("%s", err.msg);
        goto out;
    }
    bg_engine_opts eo;
    memset(&eo, 0, sizeof(eo));
    eo.data_dir = d.o.data_dir;
    eo.trainer = sampled;
    if (bg_engine_create(&eo, &engine, &err) != BG_OK) {
        die("engine: %s", err.msg);
        goto out;
    }
    if (bg_policy_store_create(d.o.policies, host, &d.store, &err) != BG_OK) {
        die("--policies %s: the policies are not valid:\n%s", d.o.policies, err.msg);
        goto out;
    }
    bg_metrics_opts mo = {
        .version = BG_VERSION, .store = d.store, .engine = engine, .plugins = host};
    if (bg_metrics_create(&mo, &d.metrics, &err) != BG_OK) {
        die("%s", err.msg);
        goto out;
    }
    if (bg_loop_create(&d.loop, &err) != BG_OK) {
        die("%s", err.msg);
        goto out;
    }
    if (d.o.decision_log != NULL) {
        bg_decision_log_opts lo = {.path = d.o.decision_log};
        if (bg_decision_log_open(&lo, &d.decisions, &err) != BG_OK) {
            die("--decision-log: %s", err.msg);
            goto out;
        }
    }
    bg_rpc_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.listen = d.o.listen;
    ro.n_listen = d.o.n_listen;
    ro.cq_threads = d.o.cq_threads > 0 ? (unsigned)d.o.cq_threads : 0;
    ro.max_message_bytes = d.o.max_message_bytes > 0 ? (size_t)d.o.max_message_bytes : 0;
    ro.version = BG_VERSION;
    ro.loop = d.loop;
    ro.store = d.store;
    ro.engine = engine;
    ro.plugins = host;
    ro.decisions = d.decisions;
    ro.metrics = d.metrics;
    if (bg_rpc_server_start(&ro, &d.server, &err) != BG_OK) {
        die("%s", err.msg);
        goto out;
    }
    if (d.o.metrics_listen != NULL) {
        bg_metrics_http_opts ho = {
            .listen = d.o.metrics_listen,
            .timeout_ms = d.o.metrics_timeout_ms > 0 ? (unsigned)d.o.metrics_timeout_ms : 0};
        if (bg_metrics_http_start(d.metrics, bg_loop_uv(d.loop), &ho, &d.http, &err) != BG_OK) {
            die("%s", err.msg);
            goto out;
        }
    }
    if (bg_loop_on_signal(d.loop, SIGTERM, on_term, &d, &err) != BG_OK ||
        bg_loop_on_signal(d.loop, SIGINT, on_term, &d, &err) != BG_OK ||
        bg_loop_on_signal(d.loop, SIGHUP, on_hup, &d, &err) != BG_OK) {
        die("%s", err.msg);
        goto out;
    }
    if (!d.o.no_watch &&
        bg_policy_store_watch(d.store, bg_loop_uv(d.loop), (unsigned)d.o.watch_debounce_ms,
                              &err) != BG_OK)
        BG_WARN("main", "not watching %s (SIGHUP and Reload still work): %s", d.o.policies,
                err.msg);
    if (d.o.ready_file != NULL && write_ready_file(d.o.ready_file, d.server) != 0) {
        die("--ready-file %s: cannot write it: %s", d.o.ready_file, strerror(errno));
        goto out;
    }
    print_howto(d.server);
    bg_loop_run(d.loop);
    exit_code = 0;
out:
    /* Teardown order:
     *   1. the server (its drain timer needs the loop), after the metrics
     *      endpoint (closing it needs the loop to run once more); then the
     *      decision log, which writes what the last calls appended;
     *   2. the watch, then the loop: destroying the loop runs work still
     *      queued or running on its pool (a SIGHUP reload) and their
     *      completions, which use the store and the plugin host;
     *   3. the store and the engine;
     *   4. the sampled path's trainer, whose pending training jobs hold
     *      policy-set references whose release destroys plugin instances;
     *   5. the plugin host;
     *   6. the metrics registry, which every one of them may count into. */
    bg_metrics_http_close(d.http);
    d.http = NULL;
    bg_rpc_server_destroy(d.server);
    bg_decision_log_close(d.decisions);
    if (d.store != NULL)
        bg_policy_store_unwatch(d.store);
    bg_loop_destroy(d.loop);
    d.loop = NULL;
    if (d.store != NULL)
        bg_policy_store_destroy(d.store);
    if (engine != NULL)
        bg_engine_destroy(engine);
    bg_sampled_trainer_destroy(sampled);
    if (host != NULL)
        bg_plugin_host_destroy(host);
    bg_metrics_destroy(d.metrics);
    if (cfg != NULL)
        bg_cfg_doc_destroy(cfg);
    if (exit_code == 0 && !d.o.check)
        BG_INFO("main", "bye");
    return exit_code;
}
