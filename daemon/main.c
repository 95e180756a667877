/*
 * main.c — bayesguardd: the start sequence, serving, and the stop.
 *
 * main() reads top to bottom as the start order; each step is one short
 * function that prints its own failure ("bayesguardd: ...") and returns
 * the exit code, or GO_ON:
 *   malloc settings (common/bg_malloc.h; before any thread) ->
 *   settings (flags, then the --config YAML; flags win; daemon/settings/)
 *   -> log level -> [--check: validate and exit 0/1] -> plugin host (dlopen
 *   the plugin dir) -> sampled-path trainer -> fleet (--fleet) -> engine (replays --data-dir) ->
 *   receipt key (--receipt-key-file, or made in --data-dir) -> escalation
 *   table (replays <data-dir>/escalations.log) ->
 *   policy store (loads and validates --policies) -> metrics registry -> fleet threads ->
 *   loop -> decision log (opens the file) -> gRPC server (binds every
 *   --listen) -> metrics endpoint (binds --metrics-listen; its address
 *   logged before the ready file exists) -> signals, policy watch -> ready
 *   file -> "how to query" -> run.
 * Exit codes: 0 served and drained (or --help, --version, a valid --check),
 * 1 an invalid --check, 2 any startup error.
 * Stop: SIGTERM/SIGINT -> the server drains (new calls refused, in-flight
 * calls finish within --drain-timeout-ms) -> the metrics endpoint closes
 * (it serves bayesguard_draining 1 until then) -> the loop stops -> stop()
 * destroys everything in reverse order -> exit 0. SIGHUP reloads the
 * policies on the loop's worker pool and has the decision log reopen its
 * file. exit() is never called; main returns.
 *
 * Threads: everything below runs on the main thread, which is the loop
 * thread once bg_loop_run starts. Ownership: daemon_ctx owns every module
 * it points to; stop() destroys what was created, NULL pointers skipped.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/decision_log.h"
#include "common/bg_err.h"
#include "common/bg_log.h"
#include "common/bg_malloc.h"
#include "common/bg_version.h"
#include "engine/engine.h"
#include "fleet/fleet.h"
#include "engine/sampled.h"
#include "escalation/escalation.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"
#include "receipt/receipt.h"
#include "rpc/rpc.h"
#include "settings/settings.h"

#define BG_EXIT_USAGE 2
#define GO_ON (-1) /* a start step succeeded; any other value is the exit code */

typedef struct daemon_ctx {
    bg_settings s;
    bg_plugin_host *host;
    bg_engine *engine;
    bg_fleet *fleet;            /* NULL without --fleet */
    bg_receipt_key *receipts;   /* outcome receipts' key (daemon/receipt) */
    bg_escalation *escalations; /* pending escalations (daemon/escalation) */
    bg_sampled_trainer *sampled;
    bg_policy_store *store;
    bg_policy_watch *watch; /* NULL with --no-watch, or when the watch failed */
    bg_metrics *metrics;
    bg_loop *loop;
    bg_decision_log *decisions; /* NULL without --decision-log */
    bg_rpc_server *server;
    bg_metrics_http *http; /* NULL when --metrics-listen is not given, or once closed */
    bg_err err;            /* the failing step's details */
    int draining;
    int served; /* the loop ran: say "bye" after stop() */
} daemon_ctx;

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

/* ------------------------------------------------- signals, on the loop */

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
    BG_INFO("main", "signal: draining for up to %ld ms", d->s.drain_timeout_ms);
    bg_rpc_server_drain(d->server, (unsigned)d->s.drain_timeout_ms, (unsigned)d->s.drain_grace_ms,
                        drained, d);
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
    BG_INFO("main",
            "serving; try:\n"
            "  bayesguard health --addr %s\n"
            "  bayesguard eval --addr %s --tool TOOL --session s1\n"
            "  bayesguard status --addr %s\n"
            "  python3 -c \"import grpc; ch=grpc.insecure_channel('%s'); "
            "print(ch.unary_unary('/grpc.health.v1.Health/Check')(b''))\"  "
            "# b'\\x08\\x01' = SERVING",
            a, a, a, a);
}

/* ------------------------------------------------------------ start steps */

/* Flags, then the --config file (daemon/settings/). --help and --version
 * print and end the start here, with exit 0 — once every flag has been
 * read: a bad option anywhere on the line is a usage error (exit 2). */
static int parse_settings(daemon_ctx *d, int argc, char **argv)
{
    int rc = bg_settings_parse(&d->s, argc, argv, &d->err);
    if (rc != BG_OK) {
        die("%s", d->err.msg);
        if (rc == BG_ENOTFOUND)
            bg_settings_usage(stderr);
        return BG_EXIT_USAGE;
    }
    if (d->s.help) {
        bg_settings_usage(stdout);
        return 0;
    }
    if (d->s.version) {
        bg_version_print(stdout, "bayesguardd", d->s.json);
        return 0;
    }
    if (d->s.json) {
        die("--json goes with --version only (bayesguardd --version --json)");
        return BG_EXIT_USAGE;
    }
    return GO_ON;
}

static int set_log_level(daemon_ctx *d)
{
    int lvl = bg_log_level_parse(d->s.log_level);
    if (lvl < 0)
        return die("--log-level %s: expected debug, info, warn or error", d->s.log_level);
    bg_log_set_level(lvl);
    return GO_ON;
}

/* --check: validate the policies as a reload would; exit 0 or 1. */
static int check_only(daemon_ctx *d)
{
    if (!d->s.check)
        return GO_ON;
    return bg_policy_check_dir(d->s.policies, d->s.plugins, stdout);
}

static void ignore_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit (ulimit -f) must fail an append with EFBIG, which
     * the observation log reports and undoes, not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);
}

static int start_plugin_host(daemon_ctx *d)
{
    if (bg_plugin_host_create(d->s.plugins, &d->host, &d->err) != BG_OK)
        return die("--plugins %s: %s", d->s.plugins, d->err.msg);
    return GO_ON;
}

/* Models too large to enumerate: sampled verdicts, the sampler trained in
 * the background as observations arrive (daemon/engine/sampled.h). The
 * trainer comes before the engine, which is given it. */
static int start_sampled_trainer(daemon_ctx *d)
{
    bg_sampled_opts so = {.max_sessions = (size_t)d->s.sampler_sessions};
    if (bg_sampled_trainer_create(&so, &d->sampled, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

/* Fleet mode (docs/FLEET.md): made before the engine, whose replay hands
 * it the records not yet shipped; started once the policies are loaded. */
static int make_fleet(daemon_ctx *d)
{
    if (d->s.fleet == NULL)
        return GO_ON;
    bg_fleet_opts fo = {.url = d->s.fleet,
                        .password_file = d->s.fleet_password_file,
                        .ca_file = d->s.fleet_ca,
                        .cert_file = d->s.fleet_cert,
                        .key_file = d->s.fleet_key,
                        .data_dir = d->s.data_dir,
                        .maxlen = (uint64_t)d->s.fleet_maxlen,
                        .snapshot_every = (uint64_t)d->s.fleet_snapshot_every};
    if (bg_fleet_create(&fo, &d->fleet, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int start_fleet(daemon_ctx *d)
{
    if (d->fleet != NULL &&
        bg_fleet_start(d->fleet, d->engine, d->store, d->metrics, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int start_engine(daemon_ctx *d)
{
    bg_engine_opts eo;
    memset(&eo, 0, sizeof(eo));
    eo.fleet = d->fleet != NULL ? bg_fleet_hooks(d->fleet) : NULL;
    eo.data_dir = d->s.data_dir;
    eo.segment_bytes = (uint64_t)d->s.log_segment_bytes;
    eo.snapshot_bytes = (uint64_t)d->s.snapshot_bytes;
    eo.trainer = d->sampled;
    eo.max_sessions = (size_t)d->s.max_sessions;
    eo.max_sessions_per_identity = (size_t)d->s.max_sessions_per_identity;
    eo.max_observe_rate = (double)d->s.max_observe_rate;
    eo.observe_burst = (double)d->s.observe_burst;
    if (bg_engine_create(&eo, &d->engine, &d->err) != BG_OK)
        return die("engine: %s", d->err.msg);
    return GO_ON;
}

/* The outcome receipts' key: --receipt-key-file (must exist), else
 * <data-dir>/receipt.key (made 0600 on first start), else a random key in
 * memory (receipts then die with the process). A key file others may read
 * is refused. */
static int load_receipt_key(daemon_ctx *d)
{
    char path[4096];
    const char *file = d->s.receipt_key_file;
    if (file == NULL && d->s.data_dir != NULL) {
        snprintf(path, sizeof(path), "%s/%s", d->s.data_dir, BG_RECEIPT_KEY_FILE);
        file = path;
    }
    if (file == NULL) {
        BG_WARN("main", "no --receipt-key-file and no --data-dir: outcome receipts are signed "
                        "with a random key in memory and are void after a restart");
        if (bg_receipt_key_random(&d->receipts, &d->err) != BG_OK)
            return die("%s", d->err.msg);
        return GO_ON;
    }
    int created = 0;
    if (bg_receipt_key_load(file, d->s.receipt_key_file == NULL, &d->receipts, &created, &d->err) !=
        BG_OK)
        return die("--receipt-key-file: %s", d->err.msg);
    BG_INFO("main", "receipt key %s%s", file, created ? " (created)" : "");
    return GO_ON;
}

/* The pending-escalation table: <data-dir>/escalations.log replayed (a
 * corrupt file stops the start, naming the file and offset), else memory
 * only. */
static int open_escalations(daemon_ctx *d)
{
    bg_escalation_opts eo = {.data_dir = d->s.data_dir,
                             .max_pending = (size_t)d->s.max_escalations,
                             .max_per_identity = (size_t)d->s.max_escalations_per_identity};
    if (bg_escalation_create(&eo, &d->escalations, &d->err) != BG_OK)
        return die("--data-dir: %s", d->err.msg);
    return GO_ON;
}

static int load_policies(daemon_ctx *d)
{
    if (bg_policy_store_create(d->s.policies, d->host, &d->store, &d->err) != BG_OK)
        return die("--policies %s: the policies are not valid:\n%s", d->s.policies, d->err.msg);
    return GO_ON;
}

static int start_metrics(daemon_ctx *d)
{
    bg_metrics_opts mo = {.version = bg_version(),
                          .store = d->store,
                          .engine = d->engine,
                          .plugins = d->host,
                          .sampled = d->sampled};
    if (bg_metrics_create(&mo, &d->metrics, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int start_loop(daemon_ctx *d)
{
    if (bg_loop_create(&d->loop, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int open_decision_log(daemon_ctx *d)
{
    if (d->s.decision_log == NULL)
        return GO_ON;
    bg_decision_log_opts lo = {.path = d->s.decision_log};
    if (bg_decision_log_open(&lo, &d->decisions, &d->err) != BG_OK)
        return die("--decision-log: %s", d->err.msg);
    return GO_ON;
}

static int start_server(daemon_ctx *d)
{
    bg_rpc_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.listen = d->s.listen;
    ro.n_listen = d->s.n_listen;
    ro.socket_mode = d->s.socket_mode;
    ro.socket_group = d->s.socket_group;
    ro.tls_cert = d->s.tls_cert;
    ro.tls_key = d->s.tls_key;
    ro.tls_client_ca = d->s.tls_client_ca;
    ro.tls_refresh_s = (unsigned)d->s.tls_refresh_s;
    ro.identities = d->s.identities;
    ro.n_identities = d->s.n_identities;
    ro.enable_bench = d->s.enable_bench;
    ro.cq_threads = (unsigned)d->s.cq_threads; /* 0 when not given: one per CPU */
    ro.max_message_bytes = (size_t)d->s.max_message_bytes;
    ro.version = bg_version();
    ro.loop = d->loop;
    ro.store = d->store;
    ro.engine = d->engine;
    ro.fleet = d->fleet;
    ro.receipts = d->receipts;
    ro.receipt_ttl_ms = (int64_t)d->s.receipt_ttl_s * 1000;
    ro.plugins = d->host;
    ro.decisions = d->decisions;
    ro.escalations = d->escalations;
    ro.metrics = d->metrics;
    if (bg_rpc_server_start(&ro, &d->server, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int start_metrics_endpoint(daemon_ctx *d)
{
    if (d->s.metrics_listen == NULL)
        return GO_ON;
    bg_metrics_http_opts ho = {.listen = d->s.metrics_listen,
                               .timeout_ms = (unsigned)d->s.metrics_timeout_ms};
    if (bg_metrics_http_start(d->metrics, bg_loop_uv(d->loop), &ho, &d->http, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    return GO_ON;
}

static int handle_signals_and_watch(daemon_ctx *d)
{
    if (bg_loop_on_signal(d->loop, SIGTERM, on_term, d, &d->err) != BG_OK ||
        bg_loop_on_signal(d->loop, SIGINT, on_term, d, &d->err) != BG_OK ||
        bg_loop_on_signal(d->loop, SIGHUP, on_hup, d, &d->err) != BG_OK)
        return die("%s", d->err.msg);
    if (!d->s.no_watch &&
        bg_policy_watch_start(d->store, bg_loop_uv(d->loop), (unsigned)d->s.watch_debounce_ms,
                              &d->watch, &d->err) != BG_OK)
        BG_WARN("main", "not watching %s (SIGHUP and Reload still work): %s", d->s.policies,
                d->err.msg);
    return GO_ON;
}

/* The bound addresses, one a line, to a temp name renamed into place: a
 * waiter sees the whole file or none. */
static int write_ready_file(daemon_ctx *d)
{
    const char *path = d->s.ready_file;
    if (path == NULL)
        return GO_ON;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f != NULL) {
        for (size_t i = 0; i < bg_rpc_server_bound_count(d->server); i++)
            fprintf(f, "%s\n", bg_rpc_server_bound(d->server, i));
        if (fclose(f) == 0 && rename(tmp, path) == 0)
            return GO_ON;
    }
    int e = errno;
    unlink(tmp);
    return die("--ready-file %s: cannot write it: %s", path, strerror(e));
}

/* Serve until a drain ends: exit 0. */
static int serve(daemon_ctx *d)
{
    print_howto(d->server);
    bg_loop_run(d->loop);
    d->served = 1;
    return 0;
}

/* Teardown, whatever step the start reached:
 *   1. the server (its drain timer needs the loop), after the metrics
 *      endpoint (closing it needs the loop to run once more); then the
 *      decision log, which writes what the last calls appended;
 *   2. the watch, then the loop: destroying the loop runs work still
 *      queued or running on its pool (a SIGHUP reload) and their
 *      completions, which use the store and the plugin host;
 *   3. the fleet's threads, then the store and the engine;
 *   4. the sampled path's trainer, whose pending training jobs hold policy-set
 *      references whose release destroys plugin instances;
 *   5. the plugin host;
 *   6. the metrics registry, which every one of them may count into;
 *   7. the settings (the --config document their strings point into). */
static void stop(daemon_ctx *d)
{
    bg_metrics_http_close(d->http);
    d->http = NULL;
    bg_rpc_server_destroy(d->server);
    bg_decision_log_close(d->decisions);
    bg_policy_watch_stop(d->watch);
    d->watch = NULL;
    bg_loop_destroy(d->loop);
    d->loop = NULL;
    bg_fleet_destroy(d->fleet); /* its threads use the store and the engine */
    d->fleet = NULL;
    if (d->store != NULL)
        bg_policy_store_destroy(d->store);
    if (d->engine != NULL)
        bg_engine_destroy(d->engine);
    bg_escalation_close(d->escalations);
    bg_receipt_key_destroy(d->receipts);
    bg_sampled_trainer_destroy(d->sampled);
    if (d->host != NULL)
        bg_plugin_host_destroy(d->host);
    bg_metrics_destroy(d->metrics);
    bg_settings_close(&d->s);
}

/* A start step: go on, or stop with its exit code. */
#define STEP(call)                                                                                 \
    do {                                                                                           \
        if ((code = (call)) != GO_ON)                                                              \
            goto out;                                                                              \
    } while (0)

int main(int argc, char **argv)
{
    bg_malloc_tune(); /* before any thread: common/bg_malloc.h says why */
    daemon_ctx d;
    memset(&d, 0, sizeof(d));
    bg_err_clear(&d.err);
    int code;
    STEP(parse_settings(&d, argc, argv));
    STEP(set_log_level(&d));
    STEP(check_only(&d));
    ignore_signals();
    STEP(start_plugin_host(&d));
    STEP(start_sampled_trainer(&d));
    STEP(make_fleet(&d));
    STEP(start_engine(&d));
    STEP(load_receipt_key(&d));
    STEP(open_escalations(&d));
    STEP(load_policies(&d));
    STEP(start_metrics(&d));
    STEP(start_fleet(&d));
    STEP(start_loop(&d));
    STEP(open_decision_log(&d));
    STEP(start_server(&d));
    STEP(start_metrics_endpoint(&d));
    STEP(handle_signals_and_watch(&d));
    STEP(write_ready_file(&d));
    code = serve(&d);
out:
    stop(&d);
    if (d.served)
        BG_INFO("main", "bye");
    return code;
}
