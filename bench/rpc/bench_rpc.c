/*
 * bench_rpc.c — Evaluate latency and throughput against the transport
 * floor, on the same server.
 *
 * The floor is bayesguard.v1.Bench/Ping with delay_ms = 0: registered,
 * decoded and answered on the completion-queue thread like Evaluate, but
 * with no policy lookup and no engine work — the cost of an empty unary RPC
 * through this server. For each method and each concurrency (default 1, 8,
 * 64 callers) the client keeps that many calls outstanding on one async
 * completion queue for --seconds after a warm-up, records every latency,
 * and prints p50 / p99 / p99.9 and calls per second side by side, then the
 * Evaluate/Ping p50 ratio. It also reads the CPU time the server (from
 * /proc/PID/stat) and the client used per call: on a shared machine that is
 * the robust number, and 2e6 / (server + client µs) is what two idle cores
 * would sustain.
 *
 * The daemon is started by the bench (--daemon/--policies/--plugins, on
 * 127.0.0.1:0 with --cq-threads) or an existing one is used (--addr).
 *
 * --tls DIR measures over mutual TLS: DIR holds ca.crt, server.crt/.key
 * (SAN 127.0.0.1 and localhost) and client.crt/.key; when any is missing the
 * bench makes all five there with the openssl CLI (P-256, valid 2 days), so
 * no key is ever committed. The spawned daemon serves TLS with them and
 * requires the client certificate (--tls-client-ca); Ping and Evaluate go
 * over the same TLS connection(s). Before measuring, one Evaluate is decoded
 * and its decision and receipt size printed, so a run says whether receipts
 * were minted (they are, for ALLOW, under `outcomes: receipts`).
 * Client and server share the machine: on 2 cores the client's thread
 * competes with the server's, as a sidecar's agent would.
 *
 * --sampled-tool T measures a sampled policy side by side (issue 16: a
 * sampled Evaluate's p50 with the trainer idle and while it trains): each
 * bench session first gets --observations arms of a bandit of
 * --sampled-features d (bench_sampled.c), the bench waits until every
 * session's sampler has trained at their version (the verdict's
 * SamplerHealth: version_lag 0, train_steps >= 20) and prints its health;
 * then each row measures Evaluate of T beside the enumerated tool's, and
 * a second table repeats both while a thread keeps the daemon's trainer
 * busy: an Observe every --load-ms (20) on sessions of its own, or with
 * --load-same on the measured sessions (their own samplers train, and each
 * observation makes the next Evaluate draw again). --sampled-contexts N
 * (default 1) gives each session N distinct actions (feature vectors),
 * cycled call by call: a context repeated every call vs one that differs.
 *
 * Threads: one client thread drives everything.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "bayesguard/v1/bench.pb-c.h"
#include "bayesguard/v1/guard.pb-c.h"
#include "bench_sampled.h"
#include "common/bg_time.h"
#include "rpc/rpc_wire.h"

#define MAX_CALLERS 1024
#define MAX_DAEMON_ARGS 8

typedef struct slot {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code status;
    grpc_slice details;
    uint64_t t0;
} slot;

#define MAX_CHANNELS 16

typedef struct run {
    grpc_channel *chs[MAX_CHANNELS];
    void *m_ping[MAX_CHANNELS], *m_eval[MAX_CHANNELS];
    unsigned n_ch;
    int eval; /* measuring Evaluate (else Ping) */
    grpc_completion_queue *cq;
    grpc_slice req;        /* serialized Ping request */
    grpc_slice *eval_reqs; /* serialized Evaluate requests, n_ctx per session */
    unsigned n_sessions;
    unsigned n_ctx; /* contexts (feature vectors) per session, cycled call by call */
    unsigned long n_started;
    slot slots[MAX_CALLERS];
    uint64_t *lat; /* ns */
    size_t n_lat, cap_lat;
    uint64_t errors;
    int recording;
} run;

/* Caller k always uses channel k % n_ch (its own connection). */
static int start_call(run *r, slot *s)
{
    unsigned k = (unsigned)(s - r->slots) % r->n_ch;
    memset(s, 0, sizeof(*s));
    s->call = grpc_channel_create_registered_call(r->chs[k], NULL, GRPC_PROPAGATE_DEFAULTS, r->cq,
                                                  r->eval ? r->m_eval[k] : r->m_ping[k],
                                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    s->send = grpc_raw_byte_buffer_create(
        r->eval ? &r->eval_reqs[(unsigned)(s - r->slots) % r->n_sessions * r->n_ctx +
                                r->n_started++ % r->n_ctx]
                : &r->req,
        1);
    grpc_metadata_array_init(&s->md_init);
    grpc_metadata_array_init(&s->md_trail);
    s->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->md_trail;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    s->t0 = bg_now_ns();
    return grpc_call_start_batch(s->call, ops, 6, s, NULL) == GRPC_CALL_OK ? 0 : -1;
}

static void end_call(run *r, slot *s, int ok)
{
    uint64_t dt = bg_now_ns() - s->t0;
    if (!ok || s->status != GRPC_STATUS_OK) {
        if (r->errors++ < 3)
            fprintf(stderr, "call failed: %s %.*s\n", bg_rpc_code_name(s->status),
                    (int)GRPC_SLICE_LENGTH(s->details),
                    (const char *)GRPC_SLICE_START_PTR(s->details));
    } else if (r->recording) {
        if (r->n_lat == r->cap_lat) {
            r->cap_lat = r->cap_lat ? 2 * r->cap_lat : 1 << 16;
            r->lat = realloc(r->lat, r->cap_lat * sizeof(*r->lat));
        }
        r->lat[r->n_lat++] = dt;
    }
    grpc_byte_buffer_destroy(s->send);
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    grpc_metadata_array_destroy(&s->md_init);
    grpc_metadata_array_destroy(&s->md_trail);
    grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

typedef struct result {
    double p50, p99, p999, rate;
    size_t calls;
    uint64_t errors;
    double srv_cpu_us, cli_cpu_us; /* CPU per recorded call */
} result;

/* CPU seconds (user + system) used so far by process pid (0 = ourselves). */
static double cpu_seconds(pid_t pid)
{
    if (pid == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the ")" of the command name: state is field 3; utime
     * and stime are fields 14 and 15. */
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static pid_t g_server_pid;

/* Keep `callers` calls outstanding: warm-up, then measure for `secs`. */
static result measure(run *r, unsigned callers, double warm, double secs)
{
    result res;
    memset(&res, 0, sizeof(res));
    r->n_lat = 0;
    r->errors = 0;
    r->recording = 0;
    for (unsigned i = 0; i < callers; i++)
        if (start_call(r, &r->slots[i]) != 0)
            r->errors++;
    uint64_t t_start = bg_now_ns();
    uint64_t t_rec = t_start + (uint64_t)(warm * 1e9);
    uint64_t t_end = t_rec + (uint64_t)(secs * 1e9);
    unsigned outstanding = callers;
    int stopping = 0, cpu_marked = 0;
    double srv0 = 0, cli0 = 0;
    size_t calls0 = 0;
    while (outstanding > 0) {
        grpc_event ev = grpc_completion_queue_next(
            r->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(30, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            fprintf(stderr, "bench: no completion in 30 s\n");
            exit(1);
        }
        slot *s = ev.tag;
        uint64_t now = bg_now_ns();
        if (!cpu_marked && now >= t_rec) {
            cpu_marked = 1;
            srv0 = g_server_pid ? cpu_seconds(g_server_pid) : 0;
            cli0 = cpu_seconds(0);
            calls0 = r->n_lat;
        }
        r->recording = now >= t_rec && s->t0 >= t_rec;
        end_call(r, s, ev.success);
        if (now >= t_end)
            stopping = 1;
        if (stopping || start_call(r, s) != 0)
            outstanding--;
    }
    uint64_t rec_ns = bg_now_ns() - t_rec;
    if (r->n_lat > calls0) {
        double k = 1e6 / (double)(r->n_lat - calls0);
        res.srv_cpu_us = g_server_pid ? (cpu_seconds(g_server_pid) - srv0) * k : 0;
        res.cli_cpu_us = (cpu_seconds(0) - cli0) * k;
    }
    qsort(r->lat, r->n_lat, sizeof(*r->lat), cmp_u64);
    res.calls = r->n_lat;
    res.p50 = pct(r->lat, r->n_lat, 0.50);
    res.p99 = pct(r->lat, r->n_lat, 0.99);
    res.p999 = pct(r->lat, r->n_lat, 0.999);
    res.rate = (double)r->n_lat / ((double)rec_ns / 1e9);
    res.errors = r->errors;
    return res;
}

/* The TLS files under --tls DIR, made by tls_prepare. */
typedef struct tls_files {
    char ca[512], cert[512], key[512], cli_cert[512], cli_key[512];
} tls_files;

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Fill t with DIR's paths; make a CA, a server and a client certificate
 * there with the openssl CLI unless all five files are present. */
static int tls_prepare(const char *dir, tls_files *t)
{
    snprintf(t->ca, sizeof(t->ca), "%s/ca.crt", dir);
    snprintf(t->cert, sizeof(t->cert), "%s/server.crt", dir);
    snprintf(t->key, sizeof(t->key), "%s/server.key", dir);
    snprintf(t->cli_cert, sizeof(t->cli_cert), "%s/client.crt", dir);
    snprintf(t->cli_key, sizeof(t->cli_key), "%s/client.key", dir);
    if (file_exists(t->ca) && file_exists(t->cert) && file_exists(t->key) &&
        file_exists(t->cli_cert) && file_exists(t->cli_key))
        return 0;
    if (strchr(dir, '\'') != NULL) {
        fprintf(stderr, "bench: --tls %s: a directory without a single quote, please\n", dir);
        return -1;
    }
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "set -e; mkdir -p '%s'; cd '%s'; "
             "K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'; "
             "openssl req -x509 $K -keyout ca.key -out ca.crt -subj /CN=bench-ca -days 2; "
             "openssl req -new $K -keyout server.key -out server.csr -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost; "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-days 2 -copy_extensions copy -out server.crt; "
             "openssl req -new $K -keyout client.key -out client.csr -subj /CN=bench-agent "
             "-addext subjectAltName=URI:spiffe://bench/agent; "
             "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-days 2 -copy_extensions copy -out client.crt; "
             "rm -f server.csr client.csr",
             dir, dir);
    char full[4200];
    snprintf(full, sizeof(full), "( %s ) >/dev/null 2>&1", cmd);
    if (system(full) != 0) {
        fprintf(stderr,
                "bench: --tls %s: making the certificates with the openssl CLI failed (is "
                "openssl on PATH and the directory writable?)\n",
                dir);
        return -1;
    }
    return 0;
}

/* The whole of a small file as a NUL-terminated string (caller frees). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* One Evaluate before measuring: print its decision and receipt size (a
 * run with receipts on should show ALLOW and a receipt). */
static int probe_evaluate(run *r)
{
    slot *s = &r->slots[0];
    r->eval = 1;
    r->recording = 0;
    if (start_call(r, s) != 0)
        return -1;
    grpc_event ev = grpc_completion_queue_next(
        r->cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(30, GPR_TIMESPAN)),
        NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success || s->status != GRPC_STATUS_OK) {
        fprintf(stderr, "bench: the first Evaluate failed: %s %.*s\n", bg_rpc_code_name(s->status),
                (int)GRPC_SLICE_LENGTH(s->details), (const char *)GRPC_SLICE_START_PTR(s->details));
        return -1;
    }
    Bayesguard__V1__Verdict *v = (Bayesguard__V1__Verdict *)bg_rpc_unpack(
        &bayesguard__v1__verdict__descriptor, s->recv, NULL);
    if (v != NULL) {
        const ProtobufCEnumValue *d = protobuf_c_enum_descriptor_get_value(
            &bayesguard__v1__decision__descriptor, v->decision);
        printf("bench_rpc: Evaluate gives %s, receipt %zu bytes, policy %s\n", d ? d->name : "?",
               v->receipt.len, v->policy);
        protobuf_c_message_free_unpacked(&v->base, NULL);
    }
    end_call(r, s, 1);
    return v != NULL ? 0 : -1;
}

/* The spawned daemon, killed at exit when the bench gives up early. */
static pid_t g_spawned;

static void kill_spawned(void)
{
    if (g_spawned > 0) {
        kill(g_spawned, SIGKILL);
        waitpid(g_spawned, NULL, 0);
    }
}

/* listen: the agent role (Evaluate), and reporter (Observe) when a
 * sampled policy must be given observations. */
static pid_t spawn_daemon(const char *daemon, const char *listen, const char *policies,
                          const char *plugins, const char *cq, const char *decision_log,
                          const tls_files *tls, const char *const *extra, int n_extra, char *addr,
                          size_t len)
{
    char ready[128];
    snprintf(ready, sizeof(ready), "/tmp/bench_rpc_ready_%ld_%llu", (long)getpid(),
             (unsigned long long)bg_now_ns());
    unlink(ready);
    pid_t pid = fork();
    if (pid == 0) {
        const char *av[24 + MAX_DAEMON_ARGS] = {daemon,   "--listen",      listen,  "--policies",
                                                policies, "--plugins",     plugins, "--ready-file",
                                                ready,    "--cq-threads",  cq,      "--log-level",
                                                "warn",   "--enable-bench"};
        int n = 14; /* Evaluate needs the agent role; Ping, --enable-bench */
        if (decision_log != NULL) {
            av[n++] = "--decision-log";
            av[n++] = decision_log;
        }
        if (tls != NULL) {
            av[n++] = "--tls-cert";
            av[n++] = tls->cert;
            av[n++] = "--tls-key";
            av[n++] = tls->key;
            av[n++] = "--tls-client-ca";
            av[n++] = tls->ca;
        }
        for (int i = 0; i < n_extra; i++)
            av[n++] = extra[i];
        av[n] = NULL;
        execv(daemon, (char *const *)av);
        perror("exec bayesguardd");
        _exit(127);
    }
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(ready, "r");
        if (f != NULL) {
            int got = fgets(addr, (int)len, f) != NULL;
            fclose(f);
            unlink(ready);
            if (got) {
                addr[strcspn(addr, "\n")] = '\0';
                return pid;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    return -1;
}

/* variant 0: every feature 0.5; variant v > 0: features spread over
 * [0.25, 0.75) by a hash of (v, i), so each variant is another context
 * (another harm per hypothesis) for the same session. */
static grpc_slice evaluate_request(const char *tool, unsigned n_features, const char *session,
                                   unsigned variant)
{
    Bayesguard__V1__EvaluateRequest req = BAYESGUARD__V1__EVALUATE_REQUEST__INIT;
    Bayesguard__V1__Action a = BAYESGUARD__V1__ACTION__INIT;
    Bayesguard__V1__Context c = BAYESGUARD__V1__CONTEXT__INIT;
    double f[64];
    for (unsigned i = 0; i < n_features && i < 64; i++)
        f[i] = variant
                   ? 0.25 + 0.5 * (double)((variant * 2654435761u + i * 40503u) % 1000u) / 1000.0
                   : 0.5;
    a.tool = (char *)tool;
    a.id = "call_bench";
    a.arguments_json = "{\"to\":\"ops@example.com\",\"subject\":\"weekly report\"}";
    a.features = f;
    a.n_features = n_features < 64 ? n_features : 64;
    c.session = (char *)session;
    c.agent = "bench-agent";
    req.action = &a;
    req.context = &c;
    grpc_byte_buffer *bb = bg_rpc_pack(&req.base);
    grpc_slice s = bg_rpc_flatten(bb);
    grpc_byte_buffer_destroy(bb);
    return s;
}

static grpc_slice ping_request(void)
{
    Bayesguard__V1__PingRequest req = BAYESGUARD__V1__PING_REQUEST__INIT;
    grpc_byte_buffer *bb = bg_rpc_pack(&req.base);
    grpc_slice s = bg_rpc_flatten(bb);
    grpc_byte_buffer_destroy(bb);
    return s;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_rpc (--addr HOST:PORT | --daemon BIN --policies DIR --plugins DIR\n"
            "                  [--cq-threads N] [--decision-log FILE] [--daemon-arg ARG]...)\n"
            "                  [--tls DIR (mutual TLS; certificates made in DIR if absent)]\n"
            "                  [--tool NAME]\n"
            "                  [--features N]\n"
            "                  [--callers 1,8,64] [--channels N] [--sessions N]\n"
            "                  [--seconds S] [--warmup S]\n"
            "                  [--sampled-tool T [--sampled-features D] [--observations N]\n"
            "                   [--load-ms MS (default 20)] [--load-same]\n"
            "                   [--sampled-contexts N (distinct actions per session, default 1)]]\n"
            "                  [--server-pid PID (with --addr: for the CPU columns)]\n");
}

int main(int argc, char **argv)
{
    const char *addr_arg = NULL, *daemon = NULL, *policies = NULL, *plugins = NULL;
    const char *cq = "2", *tool = "send_email", *callers_arg = "1,8,64", *decision_log = NULL;
    const char *extra[MAX_DAEMON_ARGS], *tls_dir = NULL;
    int n_extra = 0;
    unsigned n_channels = 1, n_sessions = 1;
    unsigned n_features = 0;
    const char *sampled_tool = NULL;
    unsigned sampled_features = 22, observations = 40, load_ms = 20, sampled_contexts = 1;
    int load_same = 0;
    double secs = 3.0, warm = 0.5;
    static const struct option opts[] = {{"addr", required_argument, NULL, 'a'},
                                         {"daemon", required_argument, NULL, 'd'},
                                         {"policies", required_argument, NULL, 'p'},
                                         {"plugins", required_argument, NULL, 'P'},
                                         {"cq-threads", required_argument, NULL, 'c'},
                                         {"tool", required_argument, NULL, 't'},
                                         {"features", required_argument, NULL, 'f'},
                                         {"callers", required_argument, NULL, 'n'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"channels", required_argument, NULL, 'C'},
                                         {"server-pid", required_argument, NULL, 'i'},
                                         {"sessions", required_argument, NULL, 'S'},
                                         {"decision-log", required_argument, NULL, 'L'},
                                         {"daemon-arg", required_argument, NULL, 'X'},
                                         {"tls", required_argument, NULL, 'T'},
                                         {"sampled-tool", required_argument, NULL, 'm'},
                                         {"sampled-features", required_argument, NULL, 'F'},
                                         {"observations", required_argument, NULL, 'O'},
                                         {"load-ms", required_argument, NULL, 'l'},
                                         {"load-same", no_argument, NULL, 'y'},
                                         {"sampled-contexts", required_argument, NULL, 'x'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            addr_arg = optarg;
            break;
        case 'd':
            daemon = optarg;
            break;
        case 'p':
            policies = optarg;
            break;
        case 'P':
            plugins = optarg;
            break;
        case 'c':
            cq = optarg;
            break;
        case 't':
            tool = optarg;
            break;
        case 'f':
            n_features = (unsigned)atoi(optarg);
            break;
        case 'n':
            callers_arg = optarg;
            break;
        case 's':
            secs = atof(optarg);
            break;
        case 'w':
            warm = atof(optarg);
            break;
        case 'C':
            n_channels = (unsigned)atoi(optarg);
            break;
        case 'S':
            n_sessions = (unsigned)atoi(optarg);
            break;
        case 'i':
            g_server_pid = (pid_t)atoi(optarg);
            break;
        case 'L':
            decision_log = optarg;
            break;
        case 'T':
            tls_dir = optarg;
            break;
        case 'm':
            sampled_tool = optarg;
            break;
        case 'F':
            sampled_features = (unsigned)atoi(optarg);
            break;
        case 'O':
            observations = (unsigned)atoi(optarg);
            break;
        case 'l':
            load_ms = (unsigned)atoi(optarg);
            break;
        case 'y':
            load_same = 1;
            break;
        case 'x':
            sampled_contexts = (unsigned)atoi(optarg);
            break;
        case 'X':
            if (n_extra == MAX_DAEMON_ARGS) {
                fprintf(stderr, "bench: at most %d --daemon-arg\n", MAX_DAEMON_ARGS);
                return 2;
            }
            extra[n_extra++] = optarg;
            break;
        default:
            usage();
            return 2;
        }
    }
    char addr[256];
    pid_t pid = 0;
    static tls_files tls;
    if (tls_dir != NULL && tls_prepare(tls_dir, &tls) != 0)
        return 1;
    if (addr_arg != NULL) {
        snprintf(addr, sizeof(addr), "%s", addr_arg);
    } else if (daemon && policies && plugins) {
        pid =
            spawn_daemon(daemon, sampled_tool ? "agent,reporter@127.0.0.1:0" : "agent@127.0.0.1:0",
                         policies, plugins, cq, decision_log, tls_dir != NULL ? &tls : NULL, extra,
                         n_extra, addr, sizeof(addr));
        if (pid <= 0) {
            fprintf(stderr, "bench: could not start %s\n", daemon);
            return 1;
        }
        g_server_pid = pid;
        g_spawned = pid;
        atexit(kill_spawned);
    } else {
        usage();
        return 2;
    }
    unsigned callers[16];
    size_t n_callers = 0;
    char cb[128];
    snprintf(cb, sizeof(cb), "%s", callers_arg);
    for (char *t = strtok(cb, ","); t && n_callers < 16; t = strtok(NULL, ",")) {
        int v = atoi(t);
        if (v < 1 || v > MAX_CALLERS) {
            fprintf(stderr, "bench: --callers %s: each in [1, %d]\n", callers_arg, MAX_CALLERS);
            return 2;
        }
        callers[n_callers++] = (unsigned)v;
    }

    if (n_channels < 1 || n_channels > MAX_CHANNELS) {
        fprintf(stderr, "bench: --channels in [1, %d]\n", MAX_CHANNELS);
        return 2;
    }
    grpc_init();
    static run r;
    grpc_channel_credentials *creds = NULL;
    if (tls_dir != NULL) {
        char *ca = slurp(tls.ca), *crt = slurp(tls.cli_cert), *key = slurp(tls.cli_key);
        if (ca == NULL || crt == NULL || key == NULL)
            return 1;
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = crt};
        creds = grpc_ssl_credentials_create_ex(ca, &pair, NULL, NULL);
        free(ca);
        free(crt);
        free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    /* A local subchannel pool gives each channel its own connection; under
     * TLS the server certificate is checked against "localhost". */
    grpc_arg args[2] = {{.type = GRPC_ARG_INTEGER,
                         .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                         .value.integer = 1},
                        {.type = GRPC_ARG_STRING,
                         .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                         .value.string = (char *)"localhost"}};
    grpc_channel_args cargs = {tls_dir != NULL ? 2 : 1, args};
    r.n_ch = n_channels;
    for (unsigned i = 0; i < n_channels; i++) {
        r.chs[i] = grpc_channel_create(addr, creds, &cargs);
        r.m_ping[i] = grpc_channel_register_call(r.chs[i], "/bayesguard.v1.Bench/Ping", NULL, NULL);
        r.m_eval[i] =
            grpc_channel_register_call(r.chs[i], "/bayesguard.v1.Guard/Evaluate", NULL, NULL);
    }
    r.cq = grpc_completion_queue_create_for_next(NULL);
    grpc_slice req_ping = ping_request();
    if (n_sessions < 1 || n_sessions > MAX_CALLERS) {
        fprintf(stderr, "bench: --sessions in [1, %d]\n", MAX_CALLERS);
        return 2;
    }
    r.n_sessions = n_sessions;
    r.n_ctx = 1;
    if (sampled_contexts < 1 || sampled_contexts > 4096) {
        fprintf(stderr, "bench: --sampled-contexts in [1, 4096]\n");
        return 2;
    }
    r.eval_reqs = calloc(n_sessions, sizeof(*r.eval_reqs));
    for (unsigned i = 0; i < n_sessions; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bench-%u", i);
        r.eval_reqs[i] = evaluate_request(tool, n_features, name, 0);
    }

    printf("bench_rpc: server %s%s, tool %s (%u features), %u session(s), %u client "
           "connection(s), %.1f s per row after %.1f s warm-up\n",
           addr, pid ? " (spawned)" : "", tool, n_features, n_sessions, n_channels, secs, warm);
    if (tls_dir != NULL)
        printf("bench_rpc: mutual TLS, certificates in %s\n", tls_dir);
    if (probe_evaluate(&r) != 0)
        return 1;
    bs_opts so = {.addr = addr,
                  .tool = sampled_tool,
                  .features = sampled_features,
                  .observations = observations,
                  .n_sessions = n_sessions,
                  .seed = 2026,
                  .load_same = load_same,
                  .load_ms = load_ms};
    grpc_slice *enum_reqs = r.eval_reqs, *samp_reqs = NULL;
    if (sampled_tool != NULL && tls_dir != NULL) {
        fprintf(stderr, "bench: --sampled-tool runs over plain TCP only (not with --tls)\n");
        return 2;
    }
    if (sampled_tool != NULL) {
        if (bs_prime(&so) != 0 || bs_wait_trained(&so, 20, 300) != 0)
            return 1;
        samp_reqs = calloc((size_t)n_sessions * sampled_contexts, sizeof(*samp_reqs));
        for (unsigned i = 0; i < n_sessions; i++) {
            char name[32];
            snprintf(name, sizeof(name), "bench-%u", i);
            for (unsigned v = 0; v < sampled_contexts; v++)
                samp_reqs[i * sampled_contexts + v] =
                    evaluate_request(sampled_tool, sampled_features, name, v);
        }
    }
    if (decision_log != NULL)
        printf("bench_rpc: the daemon logs every decision to %s\n", decision_log);
    for (int i = 0; i < n_extra; i++)
        printf("bench_rpc: daemon argument %s\n", extra[i]);
    printf("%-7s | %8s %8s %8s %8s %7s | %8s %8s %8s %8s %7s | %5s\n", "", "Ping", "", "", "", "",
           "Evaluate", "", "", "", "", "p50");
    printf("%-7s | %8s %8s %8s %8s %7s | %8s %8s %8s %8s %7s | %5s\n", "callers", "calls/s",
           "p50 us", "p99 us", "p99.9us", "cpu us", "calls/s", "p50 us", "p99 us", "p99.9us",
           "cpu us", "ratio");
    int rc = 0;
    double cpu_rows[16][4];
    result samp_rows[16][3]; /* sampled idle; enumerated and sampled while training */
    size_t n_rows = 0;
    for (size_t i = 0; i < n_callers; i++) {
        r.eval = 0;
        r.req = req_ping;
        result a = measure(&r, callers[i], warm, secs);
        r.eval = 1;
        r.eval_reqs = enum_reqs;
        r.n_ctx = 1;
        result b = measure(&r, callers[i], warm, secs);
        if (samp_reqs != NULL) {
            r.eval_reqs = samp_reqs;
            r.n_ctx = sampled_contexts;
            samp_rows[i][0] = measure(&r, callers[i], warm, secs);
            rc |= samp_rows[i][0].errors != 0;
            r.n_ctx = 1;
        }
        printf("%-7u | %8.0f %8.1f %8.1f %8.1f %7.1f | %8.0f %8.1f %8.1f %8.1f %7.1f | %5.2f\n",
               callers[i], a.rate, a.p50, a.p99, a.p999, a.srv_cpu_us + a.cli_cpu_us, b.rate, b.p50,
               b.p99, b.p999, b.srv_cpu_us + b.cli_cpu_us, a.p50 > 0 ? b.p50 / a.p50 : 0.0);
        cpu_rows[n_rows][0] = a.srv_cpu_us;
        cpu_rows[n_rows][1] = a.cli_cpu_us;
        cpu_rows[n_rows][2] = b.srv_cpu_us;
        cpu_rows[n_rows][3] = b.cli_cpu_us;
        n_rows++;
        fflush(stdout);
        if (a.errors || b.errors) {
            fprintf(stderr, "bench: %llu Ping and %llu Evaluate calls failed\n",
                    (unsigned long long)a.errors, (unsigned long long)b.errors);
            rc = 1;
        }
    }
    if (samp_reqs != NULL) {
        /* the trainer busy: measured after every idle row, since queued
         * training outlives the load */
        bs_load *load = bs_load_start(&so);
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        for (size_t i = 0; i < n_callers; i++) {
            r.eval_reqs = enum_reqs;
            samp_rows[i][1] = measure(&r, callers[i], warm, secs);
            r.eval_reqs = samp_reqs;
            r.n_ctx = sampled_contexts;
            samp_rows[i][2] = measure(&r, callers[i], warm, secs);
            r.n_ctx = 1;
            rc |= samp_rows[i][1].errors != 0 || samp_rows[i][2].errors != 0;
        }
        uint64_t n_obs = bs_load_stop(load);
        printf("\nSampled Evaluate (%s, d = %u, %u observations and %u context(s) per session) "
               "beside the enumerated one (%s); right: while the trainer trains (%llu Observe, "
               "one per %u ms, of %s during it):\n",
               sampled_tool, sampled_features, observations, sampled_contexts, tool,
               (unsigned long long)n_obs, load_ms,
               load_same ? "the measured sessions" : "other sessions");
        printf("%-7s | %8s %8s %8s %8s %7s | %8s %8s | %8s %8s %8s %8s\n", "callers", "sampled/s",
               "p50 us", "p99 us", "p99.9us", "cpu us", "enum p50", "p99", "sampl/s", "p50 us",
               "p99 us", "p99.9us");
        for (size_t i = 0; i < n_callers; i++) {
            const result *x = samp_rows[i];
            printf("%-7u | %8.0f %8.1f %8.1f %8.1f %7.1f | %8.1f %8.1f | %8.0f %8.1f %8.1f %8.1f\n",
                   callers[i], x[0].rate, x[0].p50, x[0].p99, x[0].p999,
                   x[0].srv_cpu_us + x[0].cli_cpu_us, x[1].p50, x[1].p99, x[2].rate, x[2].p50,
                   x[2].p99, x[2].p999);
        }
        if (rc)
            fprintf(stderr, "bench: some sampled-row calls failed (see above)\n");
        for (size_t i = 0; i < (size_t)n_sessions * sampled_contexts; i++)
            grpc_slice_unref(samp_reqs[i]);
        free(samp_reqs);
        r.eval_reqs = enum_reqs;
    }
    if (g_server_pid) {
        /* CPU per call does not depend on how busy the machine is the way
         * wall-clock throughput does: project what two idle cores give. */
        printf("\nCPU per call (server + client, us) and the calls/s two idle cores would "
               "sustain (2e6 / cpu):\n");
        printf("%-7s | %8s %8s %10s | %8s %8s %10s\n", "callers", "Ping srv", "cli", "2-core/s",
               "Eval srv", "cli", "2-core/s");
        for (size_t i = 0; i < n_rows; i++) {
            double pa = cpu_rows[i][0] + cpu_rows[i][1], pb = cpu_rows[i][2] + cpu_rows[i][3];
            printf("%-7u | %8.1f %8.1f %10.0f | %8.1f %8.1f %10.0f\n", callers[i], cpu_rows[i][0],
                   cpu_rows[i][1], pa > 0 ? 2e6 / pa : 0, cpu_rows[i][2], cpu_rows[i][3],
                   pb > 0 ? 2e6 / pb : 0);
        }
    }
    grpc_slice_unref(req_ping);
    for (unsigned i = 0; i < n_sessions; i++)
        grpc_slice_unref(r.eval_reqs[i]);
    free(r.eval_reqs);
    for (unsigned i = 0; i < n_channels; i++)
        grpc_channel_destroy(r.chs[i]);
    grpc_completion_queue_shutdown(r.cq);
    while (grpc_completion_queue_next(r.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(r.cq);
    grpc_channel_credentials_release(creds);
    free(r.lat);
    grpc_shutdown();
    if (pid > 0) {
        int st = 0;
        g_spawned = 0; /* stopped here, its exit status checked */
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench: bayesguardd exited with status %d\n", st);
            rc = 1;
        }
    }
    return rc;
}
