/*
 * settings.h — bayesguardd's settings: one table, and everything made from it.
 *
 * BG_DAEMON_SETTINGS below is the only list of the daemon's flags and
 * config-file keys. From it come the bg_settings struct (one typed field
 * per setting), the getopt long options, the --config file loader, the
 * range checks, --help, and the unknown-key message that lists the allowed
 * keys; tests/settings checks docs/CONFIG.md against it. Adding a setting
 * is one X(...) row here, one row in docs/CONFIG.md (the test says so),
 * and its use in main.c.
 *
 * Columns: X(name, flag, key, type, arg, def, absent, min, max, help)
 *   name    the bg_settings field, and BG_SETTING_<name>
 *   flag    the command-line flag without "--" (every setting has one)
 *   key     its key in the --config YAML file, or NULL: a flag only
 *   type    STR     a string (the last one given wins)
 *           INT     an integer in [min, max], checked wherever it comes
 *                   from (flag, file or the default itself)
 *           LIST    a string, repeatable up to `max` times; in the file a
 *                   string, a list of strings, or a map whose values are a
 *                   string or a list of strings: each entry becomes the
 *                   string "KEY=V1,V2", the flag's form (`identities`)
 *           SWITCH  a flag without a value (sets the field to 1); flag only
 *           EXIT    --help, --version: the caller prints and exits 0;
 *                   every flag is still read and checked (an unknown
 *                   option, a missing value, a stray argument or a value
 *                   out of range anywhere is a usage error), but the
 *                   --config file is not read and nothing is required;
 *                   flag only
 *   arg     the value's name in --help and CONFIG.md ("DIR"); NULL for
 *           SWITCH and EXIT
 *   def     the default, written as a flag value would be ("10000"),
 *           parsed and range-checked like one; NULL: no default
 *   absent  what no value means, shown as the default when def is NULL
 *           ("off", "number of CPUs"); the word "required" makes the
 *           setting required (bg_settings_parse refuses to go on without
 *           it, unless --help or --version was given)
 *   min,max INT: the range; LIST: 1 and the most values; else 0, 0
 *   help    one or two sentences; --help wraps them
 *
 * Precedence: a setting given by a flag keeps the flag's value; the file
 * fills the rest (its values are still checked); the default fills what
 * neither gave. Exit codes are the caller's (main.c): every error here is
 * a usage error.
 *
 * Threads: parse on the main thread at start; the struct is read-only
 * afterwards. Ownership: strings in a bg_settings are borrowed from argv
 * (valid for the process) or from the --config document, which the struct
 * owns until bg_settings_close.
 */
#ifndef BG_SETTINGS_H
#define BG_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

#include "common/bg_err.h"

/* clang-format off */
#define BG_DAEMON_SETTINGS(X)                                                                    \
    X(listen, "listen", "listen", LIST, "ADDR", "127.0.0.1:50051", NULL, 1, 16,                  \
      "gRPC address: [ROLES@]host:port (port 0: the kernel picks one) or "                       \
      "[ROLES@]unix:/path[?uids=N,N]; ROLES: agent, reporter, operator, health (comma-"          \
      "separated); none given: every role, with a warning")                                      \
    X(socket_mode, "socket-mode", "socket_mode", STR, "MODE", "0660", NULL, 0, 0,                \
      "octal mode of the unix socket files (never world-writable)")                              \
    X(socket_group, "socket-group", "socket_group", STR, "GROUP", NULL, "the daemon's group", 0, \
      0, "group (name or number) of the unix socket files")                                      \
    X(tls_cert, "tls-cert", "tls_cert", STR, "FILE", NULL, "none (plain TCP)", 0, 0,             \
      "PEM certificate (chain) of the TCP listeners: they serve TLS; re-read when it changes")   \
    X(tls_key, "tls-key", "tls_key", STR, "FILE", NULL, "none", 0, 0,                            \
      "PEM private key of --tls-cert")                                                           \
    X(tls_client_ca, "tls-client-ca", "tls_client_ca", STR, "FILE", NULL, "none (no client "    \
      "certificates)", 0, 0,                                                                     \
      "PEM CA certificates: TCP clients must present a certificate they signed (mTLS)")          \
    X(tls_refresh_s, "tls-refresh-s", "tls_refresh_s", INT, "N", "60", NULL, 1, 86400,           \
      "how often the TLS files are checked for changes (seconds)")                               \
    X(identities, "identities", "identities", LIST, "ID=ROLES", NULL, "none", 1, 64,             \
      "narrow the roles of a caller's identity (SPIFFE ID, DNS name, uid:N; '*': every "         \
      "other caller) to ROLES (comma-separated, may be empty)")                                  \
    X(enable_bench, "enable-bench", NULL, SWITCH, NULL, NULL, "off", 0, 0,                       \
      "serve bayesguard.v1.Bench/Ping (the empty RPC of bench/rpc)")                             \
    X(policies, "policies", "policies", STR, "DIR", NULL, "required", 0, 0,                      \
      "policy directory (*.yaml, *.yml), watched and hot-reloaded")                              \
    X(plugins, "plugins", "plugins", STR, "DIR", NULL, "required", 0, 0,                         \
      "plugin directory: every *.so in DIR is loaded, and each plugin is named by its "          \
      "descriptor's name (built-in plugins live in build/plugins)")                              \
    X(data_dir, "data-dir", "data_dir", STR, "DIR", NULL, "none (memory only)", 0, 0,            \
      "observation store, replayed at start so posteriors survive restarts")                     \
    X(log_segment_bytes, "log-segment-bytes", "log_segment_bytes", INT, "N", "67108864", NULL,   \
      4096, 1073741824, "observation log: start a new segment file once the current one "        \
      "holds this many bytes (docs/STORE.md)")                                                   \
    X(snapshot_bytes, "snapshot-bytes", "snapshot_bytes", INT, "N", "268435456", NULL, 0,        \
      1099511627776, "observation log: compact the sealed segments into a snapshot once they "   \
      "hold this many bytes (0: never)")                                                         \
    X(fleet, "fleet", "fleet", STR, "URL", NULL, "none (this sidecar learns alone)", 0, 0,       \
      "fleet mode: share observations with every sidecar on redis://[USER@]HOST:PORT/KEY "        \
      "(rediss:// for TLS; a Redis stream; needs --data-dir; docs/FLEET.md)")                                        \
    X(fleet_password_file, "fleet-password-file", "fleet_password_file", STR, "FILE", NULL,       \
      "none (no AUTH)", 0, 0,                                                                     \
      "the Redis password of --fleet (first line; mode 0600), kept off the command line")        \
    X(fleet_ca, "fleet-ca", "fleet_ca", STR, "FILE", NULL, "none (required by rediss://)", 0, 0, \
      "TLS (rediss://): the CA certificate(s), PEM, that Redis's certificate must chain to; "    \
      "its name or IP is checked against the URL's host")                                        \
    X(fleet_cert, "fleet-cert", "fleet_cert", STR, "FILE", NULL, "none (no client certificate)", \
      0, 0, "TLS (rediss://): the client certificate chain, PEM, for a Redis with "             \
      "tls-auth-clients yes; with --fleet-key")                                                  \
    X(fleet_key, "fleet-key", "fleet_key", STR, "FILE", NULL, "none", 0, 0,                      \
      "TLS (rediss://): the private key of --fleet-cert, PEM, mode 0600")                       \
    X(fleet_maxlen, "fleet-maxlen", "fleet_maxlen", INT, "N", "0", NULL, 0, 1000000000,         \
      "trim the fleet stream to about N entries (XADD MAXLEN ~ N); 0: never trimmed. A "        \
      "sidecar that starts after its entries were trimmed bootstraps from the snapshot")          \
    X(fleet_snapshot_every, "fleet-snapshot-every", "fleet_snapshot_every", INT, "N", "10000",    \
      NULL, 1, 1000000000,                                                                        \
      "publish the fleet snapshot (every session's history) after N stream entries; keep it "   \
      "below --fleet-maxlen")                                                                     \
    X(receipt_key_file, "receipt-key-file", "receipt_key_file", STR, "FILE", NULL,             \
      "<data-dir>/receipt.key, else in memory", 0, 0,                                            \
      "secret key of outcome receipts (32 to 1024 bytes, mode 0600); must exist; without it "    \
      "<data-dir>/receipt.key is used (created on first start), or a key in memory")             \
    X(receipt_ttl_s, "receipt-ttl-s", "receipt_ttl_s", INT, "N", "3600", NULL, 1, 604800,        \
      "an outcome receipt is accepted this many seconds after its Evaluate")                     \
    X(max_escalations, "max-escalations", "max_escalations", INT, "N", "1024", NULL, 1, 65536,  \
      "pending escalations held at most; an ESCALATE beyond it is a DENY saying so")             \
    X(max_escalations_per_identity, "max-escalations-per-identity",                              \
      "max_escalations_per_identity", INT, "N", NULL, "a quarter of --max-escalations", 1,       \
      65536, "pending escalations one caller identity may hold; its ESCALATE beyond it is a "    \
      "DENY saying so, while other identities still escalate")                                    \
    X(decision_log, "decision-log", "decision_log", STR, "FILE", NULL, "none (no log)", 0, 0,    \
      "append one JSON line per Evaluate outcome there ('-': stdout); reopened on SIGHUP, "      \
      "after log rotation")                                                                      \
    X(config, "config", NULL, STR, "FILE", NULL, "none", 0, 0,                                   \
      "YAML file of settings, by their config keys; a flag given on the command line wins "      \
      "over the file")                                                                           \
    X(ready_file, "ready-file", "ready_file", STR, "FILE", NULL, "none", 0, 0,                   \
      "once serving, write the bound gRPC addresses there, one a line (temp name, then "         \
      "renamed)")                                                                                \
    X(cq_threads, "cq-threads", "cq_threads", INT, "N", NULL, "usable CPUs", 1, 256,             \
      "gRPC completion-queue threads (the data plane); default: the CPUs the affinity mask "     \
      "and the cgroup CPU quota allow")                                                          \
    X(max_message_bytes, "max-message-bytes", "max_message_bytes", INT, "N", "4194304", NULL,   \
      1024, 1073741824,                                                                          \
      "largest request accepted; larger ones get RESOURCE_EXHAUSTED")                            \
    X(drain_timeout_ms, "drain-timeout-ms", "drain_timeout_ms", INT, "N", "10000", NULL, 0,      \
      3600000, "on SIGTERM/SIGINT, how long in-flight calls may take before they are "           \
      "cancelled")                                                                               \
    X(drain_grace_ms, "drain-grace-ms", "drain_grace_ms", INT, "N", "200", NULL, 0, 3600000,     \
      "on SIGTERM/SIGINT, refuse new calls (UNAVAILABLE, health NOT_SERVING) this long "         \
      "before closing the listeners")                                                            \
    X(watch_debounce_ms, "watch-debounce-ms", "watch_debounce_ms", INT, "N", "200", NULL, 0,     \
      60000, "policy directory watch: a burst of file events within this time is one reload")    \
    X(sampler_sessions, "sampler-sessions", "sampler_sessions", INT, "N", "64", NULL, 1,         \
      1000000, "per sampled policy, sessions that keep their trained sampler (others retrain "   \
      "when used again)")                                                                        \
    X(max_sessions, "max-sessions", "max_sessions", INT, "N", "10000", NULL, 1, 100000000,       \
      "sessions whose posterior stays in memory; past it the least recently used idle one's is "  \
      "evicted and rebuilt from its history when used again")                                    \
    X(max_sessions_per_identity, "max-sessions-per-identity", "max_sessions_per_identity", INT,  \
      "N", "1000", NULL, 0, 100000000,                                                           \
      "sessions one caller identity may start with Observe (0: no limit); more are "             \
      "RESOURCE_EXHAUSTED")                                                                      \
    X(max_observe_rate, "max-observe-rate", "max_observe_rate", INT, "N", "1000", NULL, 0,       \
      10000000, "observations per second one caller identity may store (0: no limit); more "     \
      "are RESOURCE_EXHAUSTED")                                                                  \
    X(observe_burst, "observe-burst", "observe_burst", INT, "N", "2000", NULL, 1, 100000000,     \
      "observations one caller identity may store at once above --max-observe-rate")             \
    X(no_watch, "no-watch", NULL, SWITCH, NULL, NULL, "off", 0, 0,                               \
      "do not watch the policy directory (reload on SIGHUP or the Reload RPC only)")             \
    X(log_level, "log-level", "log_level", STR, "L", "info", NULL, 0, 0,                         \
      "debug (one line per decision), info, warn or error")                                      \
    X(metrics_listen, "metrics-listen", "metrics_listen", STR, "HOST:PORT", NULL, "off", 0, 0,   \
      "serve Prometheus metrics at http://HOST:PORT/metrics (port 0: the kernel picks; the "     \
      "address is logged as 'metrics on ADDR')")                                                 \
    X(metrics_timeout_ms, "metrics-timeout-ms", "metrics_timeout_ms", INT, "N", "10000", NULL,  \
      10, 3600000, "a metrics client must send its whole request within this time")              \
    X(check, "check", NULL, SWITCH, NULL, NULL, "off", 0, 0,                                     \
      "validate --policies with --plugins as a reload would, print every error, exit 0 "         \
      "(valid) or 1 (not); nothing is served")                                                   \
    X(version, "version", NULL, EXIT, NULL, NULL, "", 0, 0,                                      \
      "print the version, git revision and plugin ABI (--version --json: as JSON), exit 0")     \
    X(json, "json", NULL, SWITCH, NULL, NULL, "off", 0, 0,                                       \
      "with --version: print it as one JSON object (only with --version)")                       \
    X(help, "help", NULL, EXIT, NULL, NULL, "", 0, 0, "print this help, exit 0")
/* clang-format on */

typedef enum bg_setting_type {
    BG_SETTING_TYPE_STR,
    BG_SETTING_TYPE_INT,
    BG_SETTING_TYPE_LIST,
    BG_SETTING_TYPE_SWITCH,
    BG_SETTING_TYPE_EXIT
} bg_setting_type;

/* BG_SETTING_<name>: a setting's index in bg_settings_table. */
typedef enum bg_setting_id {
#define BG__SETTING_ID(name, ...) BG_SETTING_##name,
    BG_DAEMON_SETTINGS(BG__SETTING_ID)
#undef BG__SETTING_ID
        BG_SETTING_COUNT
} bg_setting_id;

/* The field each type gives a setting in bg_settings. */
#define BG__SETTING_FIELD_STR(name, max) const char *name;
#define BG__SETTING_FIELD_INT(name, max) long name;
#define BG__SETTING_FIELD_LIST(name, max)                                                          \
    const char *name[max];                                                                         \
    size_t n_##name;
#define BG__SETTING_FIELD_SWITCH(name, max) int name;
#define BG__SETTING_FIELD_EXIT(name, max) int name;
#define BG__SETTING_FIELD(name, flag, key, type, arg, def, absent, min, max, help)                 \
    BG__SETTING_FIELD_##type(name, max)

/* Where a setting's value came from. */
enum { BG_SETTING_UNSET, BG_SETTING_FROM_FLAG, BG_SETTING_FROM_FILE, BG_SETTING_FROM_DEFAULT };

typedef struct bg_cfg_doc bg_cfg_doc;

/* The parsed settings: caller storage, filled by bg_settings_parse,
 * read-only afterwards. An INT that no one gave and that has no default is
 * 0 ("the module picks"), a STR NULL, a SWITCH 0. */
typedef struct bg_settings {
    BG_DAEMON_SETTINGS(BG__SETTING_FIELD)
    unsigned char from[BG_SETTING_COUNT]; /* BG_SETTING_FROM_*, by BG_SETTING_<name> */
    bg_cfg_doc *doc;                      /* the --config file; owned (strings point into it) */
    char **made; /* "KEY=V1,V2" strings made from a file's map for a LIST; owned */
    size_t n_made;
} bg_settings;

/* One row of the table, for the loader, --help and the tests. */
typedef struct bg_setting {
    const char *name, *flag, *key; /* key NULL: flag only */
    bg_setting_type type;
    const char *arg;    /* NULL for SWITCH and EXIT */
    const char *def;    /* NULL: no default */
    const char *absent; /* what no value means; NULL when def is set */
    long min, max;      /* INT: range; LIST: 1 and the most values */
    const char *help;
    size_t offset;       /* of the field in bg_settings */
    size_t count_offset; /* LIST: of n_<name>; else 0 */
} bg_setting;

extern const bg_setting bg_settings_table[BG_SETTING_COUNT];

/* Parse argv (argv[0] is the program), then the --config file if one was
 * given, then apply defaults and check required settings. s is
 * initialised here; call bg_settings_close(s) afterwards whatever this
 * returns. Stops at the first error: BG_EINVAL with a message naming the
 * flag or file:line:column and the key, what was wrong and what is
 * expected (an out-of-range value names the range, an unknown key lists
 * the allowed ones); BG_ENOTFOUND for an unknown or incomplete flag (the
 * caller shows the usage). When an EXIT setting (--help, --version)
 * stopped parsing, its field is 1, BG_OK is returned, and nothing else
 * (file, defaults, required) was looked at. argv may be permuted (getopt). */
int bg_settings_parse(bg_settings *s, int argc, char **argv, bg_err *err);

/* Destroy the --config document; strings from it are invalid after this. */
void bg_settings_close(bg_settings *s);

/* --help: a usage line, then every setting with its flag, config key,
 * type, range, default and help. */
void bg_settings_usage(FILE *f);

#endif
