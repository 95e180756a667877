/*
 * mcp_proxy.c — bg_mcp_run: start the MCP server, route every line between
 * it and the client, end cleanly (see mcp.h for the contract).
 *
 * Threads:
 *   caller   reads the client (stdin), routes each message; ends on the
 *            client's EOF or when the server reader wakes it (wake pipe);
 *   server   reads the server's stdout, passes every line to the client,
 *            settles the pending entry a response answers (queueing its
 *            outcome), reaps the server when its stdout ends;
 *   reporter sends the queued outcomes (Guard/Observe), one at a time;
 *   workers  one per held tools/call (mcp_call.c).
 *
 * Routing, client -> server: requests are recorded in the pending table
 * (bounded, ids unique) then written unchanged; a tools/call is held by a
 * worker instead (one without an id is dropped: it could not be answered,
 * and a server might run it); notifications/cancelled forgets its request (a held call
 * is withdrawn: the server never saw it, so the notice is not passed on);
 * a response to our own elicitation/create is kept
 * for its worker, every other one is passed on. Server -> client: every
 * line, unchanged.
 *
 * Shutdown: client EOF (or SIGTERM/SIGINT) -> close the server's stdin,
 * wait SERVER_GRACE_MS for it to exit, then SIGTERM, then SIGKILL; server exit while the client
 * is connected -> every pending request gets a JSON-RPC error naming the
 * exit status, exit code BG_MCP_EXIT_SERVER. Workers see `stopping` and
 * give up within a round; those stuck in a guard call are left to the
 * process's end (*threads_left).
 */
#include "mcp/mcp_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_log.h"

#define SERVER_GRACE_MS 5000
#define KILL_GRACE_MS 2000
#define THREAD_GRACE_MS 3000
#define REPORT_QUEUE 1024

typedef struct run {
    bg__mcp p;
    pid_t pid;
    int server_fd; /* the server's stdout, read by the server reader */
    int wake[2];
    /* under p.mu */
    int reaped, server_done, reporter_done, client_eof;
    int status; /* waitpid's */
} run;

/* ------------------------------------------------------------ helpers */

/* SIGTERM / SIGINT: end as on the client's EOF (the SDK clients stop a
 * stdio server with SIGTERM). The handler only writes to the wake pipe. */
static volatile sig_atomic_t g_wake_fd = -1;

static void on_term(int sig)
{
    (void)sig;
    int saved = errno;
    if (g_wake_fd >= 0) {
        ssize_t w = write(g_wake_fd, "t", 1);
        (void)w;
    }
    errno = saved;
}

static void reply(bg__mcp *p, const json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(bg__mcp *p, const json_t *id, int code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bg__mcp_out_json(&p->client, bg_mcp_error_reply(id, code, msg));
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Wait on p.cv until *flag (under p.mu) or ms pass; returns *flag. */
static int wait_flag(run *r, const int *flag, unsigned ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&r->p.mu);
    while (!*flag && pthread_cond_timedwait(&r->p.cv, &r->p.mu, &ts) != ETIMEDOUT) {
    }
    int v = *flag;
    pthread_mutex_unlock(&r->p.mu);
    return v;
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "status 0x%x", (unsigned)status);
}

/* ------------------------------------------------------------ the server */

/* 0 (r->pid, r->server, r->server_fd set) or a BG_MCP_EXIT_* code. */
static int spawn(run *r, char *const *argv)
{
    int in[2], out[2], ex[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(ex, O_CLOEXEC) != 0) {
        BG_ERROR("mcp", "cannot make the server's pipes: %s", strerror(errno));
        return BG_MCP_EXIT_IO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        BG_ERROR("mcp", "cannot fork the server '%s': %s", argv[0], strerror(errno));
        return BG_MCP_EXIT_IO;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        int e = errno;
        ssize_t w = write(ex[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(ex[1]);
    int e = 0;
    ssize_t got;
    do
        got = read(ex[0], &e, sizeof(e));
    while (got < 0 && errno == EINTR);
    close(ex[0]);
    if (got == (ssize_t)sizeof(e)) {
        BG_ERROR("mcp", "cannot start the MCP server '%s': %s (check the command after --)",
                 argv[0], strerror(e));
        waitpid(pid, NULL, 0);
        close(in[1]);
        close(out[0]);
        return BG_MCP_EXIT_SPAWN;
    }
    r->pid = pid;
    bg__mcp_out_init(&r->p.server, in[1]);
    r->server_fd = out[0];
    return 0;
}

static void reap(run *r)
{
    int status = 0;
    pid_t w;
    struct timespec step = {0, 10 * 1000000L};
    int waited = 0, sent = 0;
    for (;;) {
        w = waitpid(r->pid, &status, WNOHANG);
        if (w == r->pid || (w < 0 && errno != EINTR))
            break;
        nanosleep(&step, NULL);
        waited += 10;
        if (waited >= KILL_GRACE_MS && sent == 0) {
            kill(r->pid, SIGTERM);
            sent = 1;
        } else if (waited >= 2 * KILL_GRACE_MS && sent == 1) {
            kill(r->pid, SIGKILL);
            sent = 2;
        }
    }
    pthread_mutex_lock(&r->p.mu);
    r->status = status;
    r->reaped = 1;
    pthread_mutex_unlock(&r->p.mu);
}

static void route_server(bg__mcp *p, const char *line, size_t len)
{
    bg_mcp_msg m;
    bg_mcp_classify(line, len, &m);
    if (m.kind == BG_MCP_RESPONSE && !json_is_null(m.id)) {
        char *key = bg_mcp_id_key(m.id);
        bg__mcp_entry *e = key ? bg__mcp_table_take(&p->pending, key, 0) : NULL;
        if (e != NULL && e->report != NULL) {
            char why[160];
            int harmed =
                bg_mcp_outcome(p->cfg->report, p->cfg->report_field, m.result, why, sizeof(why));
            if (m.result == NULL)
                BG_WARN("mcp",
                        "tools/call %s (tool '%s') answered with a JSON-RPC error: no "
                        "outcome reported",
                        key, e->report->tool);
            else if (harmed < 0)
                BG_WARN("mcp", "tools/call %s (tool '%s'): no outcome reported: %s", key,
                        e->report->tool, why);
            else if (bg__mcp_queue_push(&p->reports, e->report, harmed) != 0)
                BG_WARN("mcp", "tools/call %s: the report queue is full (%d); outcome dropped", key,
                        REPORT_QUEUE);
            if (m.result != NULL && harmed >= 0)
                e->report = NULL; /* queued or freed by push */
        }
        bg__mcp_entry_free(e);
        free(key);
    }
    bg_mcp_msg_clear(&m);
    bg__mcp_out_line(&p->client, line, len); /* everything, unchanged */
}

static void *server_reader(void *arg)
{
    run *r = arg;
    bg__mcp *p = &r->p;
    bg__mcp_in in;
    bg__mcp_in_init(&in, r->server_fd, p->cfg->max_message);
    for (;;) {
        const char *line;
        size_t len;
        int k = bg__mcp_in_next(&in, -1, &line, &len);
        if (k == BG__MCP_IN_LINE)
            route_server(p, line, len);
        else if (k == BG__MCP_IN_OVERSIZED)
            BG_WARN("mcp", "dropped a message from the server over %zu bytes (--max-message)",
                    p->cfg->max_message);
        else
            break;
    }
    close(in.fd);
    bg__mcp_in_close(&in);
    reap(r);
    pthread_mutex_lock(&p->mu);
    r->server_done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    ssize_t w = write(r->wake[1], "x", 1); /* wake the client loop */
    (void)w;
    return NULL;
}

/* ------------------------------------------------------------ reporter */

static void *reporter(void *arg)
{
    run *r = arg;
    bg__mcp *p = &r->p;
    const bg_mcp_guard *g = &p->cfg->guard;
    bg__mcp_job *j;
    while ((j = bg__mcp_queue_pop(&p->reports)) != NULL) {
        bg__mcp_report *rep = j->report;
        Bayesguard__V1__Action a;
        Bayesguard__V1__Context ctx;
        Bayesguard__V1__ObserveRequest req = BAYESGUARD__V1__OBSERVE_REQUEST__INIT;
        bg__mcp_action_fill(&a, &ctx, rep->tool, rep->args, rep->session, rep->agent);
        req.action = &a;
        req.context = &ctx;
        req.policy = rep->policy;
        req.harmed = j->harmed;
        req.id = rep->decision_id;
        req.receipt.data = rep->receipt;
        req.receipt.len = rep->receipt_len;
        bg_err err;
        bg_err_clear(&err);
        if (g->observe(g->ud, &req, &err) != BG_OK)
            BG_WARN("mcp", "outcome of tool '%s' (decision %s, harmed=%d) not reported: %s",
                    rep->tool, rep->decision_id, j->harmed, err.msg);
        else
            BG_DEBUG("mcp", "reported tool '%s' decision %s harmed=%d", rep->tool, rep->decision_id,
                     j->harmed);
        bg__mcp_report_free(rep);
        free(j);
    }
    pthread_mutex_lock(&p->mu);
    r->reporter_done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------ the client */

static void note_initialize(bg__mcp *p, const json_t *params)
{
    json_t *name = json_object_get(json_object_get(params, "clientInfo"), "name");
    json_t *caps = json_object_get(params, "capabilities");
    pthread_mutex_lock(&p->mu);
    if (json_is_string(name))
        snprintf(p->client_name, sizeof(p->client_name), "%s", json_string_value(name));
    p->elicitation = json_is_object(json_object_get(caps, "elicitation"));
    pthread_mutex_unlock(&p->mu);
}

static void client_request(bg__mcp *p, bg_mcp_msg *m, const char *line, size_t len)
{
    int is_call = strcmp(m->method, "tools/call") == 0;
    if (strcmp(m->method, "initialize") == 0)
        note_initialize(p, m->params);
    if (is_call && !json_is_string(json_object_get(m->params, "name")))
        return reply(p, m->id, -32602,
                     "Invalid params: tools/call needs params.name, the "
                     "tool's name (a string)");
    char *key = bg_mcp_id_key(m->id);
    if (key == NULL)
        return reply(p, m->id, -32603, "bayesguard mcp-proxy: out of memory");
    unsigned long seq = 0;
    int rc = bg__mcp_table_add(&p->pending, strdup(key), m->id,
                               is_call ? BG__MCP_GUARDING : BG__MCP_FORWARDED, &seq);
    if (rc == BG_EEXIST) {
        reply(p, m->id, -32600,
              "Invalid Request: id %.100s is already in use by a request "
              "still pending; use a new id",
              key);
    } else if (rc == BG_ELIMIT) {
        reply(p, m->id, -32000,
              "bayesguard mcp-proxy: %zu requests are already pending "
              "(--max-pending); retry when some are answered",
              p->cfg->max_pending);
    } else if (rc != BG_OK) {
        reply(p, m->id, -32603, "bayesguard mcp-proxy: out of memory");
    } else if (is_call) {
        if (bg__mcp_call_start(p, m, key, seq, line, len) != BG_OK) {
            bg__mcp_entry_free(bg__mcp_table_take(&p->pending, key, seq));
            reply(p, m->id, -32000,
                  "bayesguard mcp-proxy: %u tool calls are already waiting "
                  "for the guard; retry later",
                  BG_MCP_MAX_WORKERS);
        }
    } else if (bg__mcp_out_line(&p->server, line, len) != BG_OK) {
        bg__mcp_entry *e = bg__mcp_table_take(&p->pending, key, seq);
        if (e != NULL)
            reply(p, m->id, -32000, "bayesguard mcp-proxy: the MCP server is gone");
        bg__mcp_entry_free(e);
    }
    free(key);
}

static int blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return 0;
    return 1;
}

static void route_client(bg__mcp *p, const char *line, size_t len)
{
    if (blank(line, len))
        return; /* no message: nothing to answer */
    bg_mcp_msg m;
    bg_mcp_classify(line, len, &m);
    switch (m.kind) {
    case BG_MCP_PARSE_ERROR:
        reply(p, NULL, -32700, "Parse error: %s", m.why);
        break;
    case BG_MCP_BATCH:
    case BG_MCP_INVALID: {
        json_t *id = json_is_object(m.root) ? json_object_get(m.root, "id") : NULL;
        if (!json_is_string(id) && !json_is_integer(id))
            id = NULL;
        reply(p, id, -32600, "Invalid Request: %s", m.why);
        break;
    }
    case BG_MCP_REQUEST:
        client_request(p, &m, line, len);
        break;
    case BG_MCP_NOTIFICATION:
        if (strcmp(m.method, "tools/call") == 0) {
            /* A tools/call without an id cannot be answered, and must not
             * reach a server that might run it unguarded: dropped. */
            BG_WARN("mcp", "dropped a tools/call sent as a notification (no id): it cannot be "
                           "guarded nor answered");
            break;
        }
        if (strcmp(m.method, "notifications/cancelled") == 0) {
            /* The client expects no answer any more: forget the entry (a
             * late answer from the server still passes through). A call
             * held here was never seen by the server: nothing to pass on. */
            json_t *rid = json_object_get(m.params, "requestId");
            char *key = rid ? bg_mcp_id_key(rid) : NULL;
            bg__mcp_entry *e = key ? bg__mcp_table_take(&p->pending, key, 0) : NULL;
            int held = e != NULL && e->state == BG__MCP_GUARDING;
            bg__mcp_entry_free(e);
            free(key);
            if (held)
                break;
        }
        bg__mcp_out_line(&p->server, line, len);
        break;
    case BG_MCP_RESPONSE: {
        char *key = json_is_null(m.id) ? NULL : bg_mcp_id_key(m.id);
        /* Ours (an elicitation/create answer): kept for its worker. */
        if (key == NULL || !bg__mcp_table_answer(&p->own, key, json_incref(m.root))) {
            bg__mcp_out_line(&p->server, line, len);
        }
        free(key);
        break;
    }
    }
    bg_mcp_msg_clear(&m);
}

/* ------------------------------------------------------------ run */

static void drain_pending(run *r)
{
    char st[96];
    describe_status(r->status, st, sizeof(st));
    bg__mcp_entry *e = bg__mcp_table_take_all(&r->p.pending);
    while (e != NULL) {
        bg__mcp_entry *n = e->next;
        reply(&r->p, e->id, -32000,
              "bayesguard mcp-proxy: the MCP server '%.100s' exited (%s) before answering; "
              "the proxy stops with exit code %d",
              r->p.cfg->server_argv[0], st, BG_MCP_EXIT_SERVER);
        bg__mcp_entry_free(e);
        e = n;
    }
}

int bg_mcp_run(const bg_mcp_config *cfg, unsigned *threads_left)
{
    *threads_left = 0;
    signal(SIGPIPE, SIG_IGN);
    run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return BG_MCP_EXIT_IO;
    bg__mcp *p = &r->p;
    p->cfg = cfg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    bg__mcp_out_init(&p->client, cfg->client_out);
    bg__mcp_table_init(&p->pending, cfg->max_pending);
    bg__mcp_table_init(&p->own, BG_MCP_MAX_WORKERS);
    bg__mcp_queue_init(&p->reports, REPORT_QUEUE);
    r->wake[0] = r->wake[1] = -1;
    int rc = spawn(r, cfg->server_argv);
    if (rc != 0) {
        free(r); /* nothing started yet */
        return rc;
    }
    if (pipe2(r->wake, O_CLOEXEC) != 0) {
        BG_ERROR("mcp", "cannot make a pipe: %s", strerror(errno));
        return BG_MCP_EXIT_IO;
    }
    pthread_t srv, rep;
    g_wake_fd = r->wake[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (pthread_create(&srv, NULL, server_reader, r) != 0 ||
        pthread_create(&rep, NULL, reporter, r) != 0) {
        BG_ERROR("mcp", "cannot start the proxy's threads");
        return BG_MCP_EXIT_IO;
    }

    bg__mcp_in in;
    bg__mcp_in_init(&in, cfg->client_in, cfg->max_message);
    int woken = 0;
    for (;;) {
        const char *line;
        size_t len;
        int k = bg__mcp_in_next(&in, r->wake[0], &line, &len);
        if (k == BG__MCP_IN_LINE) {
            route_client(p, line, len);
        } else if (k == BG__MCP_IN_OVERSIZED) {
            reply(p, NULL, -32600,
                  "Invalid Request: a message of more than %zu bytes was "
                  "refused (the proxy's --max-message); it was not forwarded",
                  cfg->max_message);
        } else {
            if (k == BG__MCP_IN_WOKEN) {
                pthread_mutex_lock(&p->mu);
                woken = r->server_done; /* else a signal: end as on EOF */
                pthread_mutex_unlock(&p->mu);
                if (!woken)
                    BG_INFO("mcp", "SIGTERM/SIGINT: closing the server's stdin");
            }
            break;
        }
    }
    bg__mcp_in_close(&in);

    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    r->client_eof = !woken;
    pthread_mutex_unlock(&p->mu);
    int code = BG_MCP_EXIT_OK;
    if (!woken) {
        /* The client is done: let the server finish, then make it. */
        bg__mcp_out_close(&p->server);
        if (!wait_flag(r, &r->server_done, SERVER_GRACE_MS)) {
            pthread_mutex_lock(&p->mu);
            if (!r->reaped)
                kill(r->pid, SIGTERM);
            pthread_mutex_unlock(&p->mu);
            if (!wait_flag(r, &r->server_done, KILL_GRACE_MS)) {
                pthread_mutex_lock(&p->mu);
                if (!r->reaped)
                    kill(r->pid, SIGKILL);
                pthread_mutex_unlock(&p->mu);
            }
        }
    } else {
        char st[96];
        describe_status(r->status, st, sizeof(st));
        BG_ERROR("mcp", "the MCP server '%s' exited (%s) while the client was connected",
                 cfg->server_argv[0], st);
        drain_pending(r);
        code = BG_MCP_EXIT_SERVER;
    }
    int joined = wait_flag(r, &r->server_done, THREAD_GRACE_MS);
    if (joined)
        pthread_join(srv, NULL);
    bg__mcp_queue_shut(&p->reports);
    int rep_done = wait_flag(r, &r->reporter_done, THREAD_GRACE_MS);
    if (rep_done)
        pthread_join(rep, NULL);
    /* Workers give up within a round once `stopping` is set. */
    struct timespec ts;
    deadline_in(&ts, THREAD_GRACE_MS);
    pthread_mutex_lock(&p->mu);
    while (p->workers > 0 && pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT) {
    }
    *threads_left = p->workers + !joined + !rep_done;
    pthread_mutex_unlock(&p->mu);
    if (*threads_left > 0)
        return code; /* threads still use *r: the process ends now */
    bg__mcp_out_close(&p->server);
    bg__mcp_table_close(&p->pending);
    bg__mcp_table_close(&p->own);
    bg__mcp_queue_close(&p->reports);
    g_wake_fd = -1;
    close(r->wake[0]);
    close(r->wake[1]);
    pthread_mutex_destroy(&p->client.mu);
    pthread_mutex_destroy(&p->server.mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(r);
    return code;
}
