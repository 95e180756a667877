/*
 * metrics_http.c — the /metrics HTTP endpoint: a small HTTP/1.1 server on
 * the libuv loop (uv_tcp_t), one request per connection.
 *
 * Why this shape: Prometheus scrapes one URL every few seconds; what it
 * needs is a correct status line, Content-Type and Content-Length, and a
 * server that no client can stall. So: no keep-alive (Connection: close),
 * no body reading, no chunked encoding; the request head is read into a
 * fixed per-connection buffer and the response is rendered and written in
 * one go. Everything runs on the loop thread and nothing blocks it: reads
 * and writes are libuv's, rendering only takes the registry's short locks.
 * The parser (bg__metrics_http_scan: framing, request line, header fields)
 * is a pure function of the bytes read, so tests/fuzz drives it directly.
 *
 * A connection's life (the functions that make each transition):
 *
 *   accept (on_connection) -> READING --whole head (on_read)--> WRITING
 *        |  > max_conns: closed at once      | head over 8 KiB: 431
 *        |                                   | malformed: 400, ...
 *        v                                   v
 *   READING --timeout (on_timeout)----> CLOSING <--error/EOF--+
 *                                          ^                  |
 *   WRITING --written (on_written): FIN--> LINGER ------------+
 *                                          (unread input discarded until the
 *                                          client's EOF or the linger timer,
 *                                          so closing never resets a
 *                                          connection whose response the
 *                                          client has not read yet)
 *
 * Invariants:
 *   1. A connection is in h->conns exactly while it is not CLOSING; n_conns
 *      counts them (the cap).
 *   2. `pending` counts close callbacks still to come (listener, closing
 *      connections, refused sockets); h is freed when it is closed and
 *      pending drops to 0, so no callback ever sees freed memory.
 *   3. A connection's memory (and its response buffer) is freed once both
 *      its handles are closed; write and shutdown callbacks cancelled by
 *      uv_close run before that.
 *
 * Threads: the loop thread only. Ownership: h owns its connections; the
 * registry and the loop are borrowed (metrics.h).
 */
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <uv.h>

#include "common/bg_log.h"
#include "metrics/metrics.h"

#define BG_HTTP_DEFAULT_TIMEOUT_MS 10000u
#define BG_HTTP_DEFAULT_MAX_CONNS 64u
#define BG_HTTP_LINGER_MS 1000u

typedef enum conn_state { C_READING, C_WRITING, C_LINGER, C_CLOSING } conn_state;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    bg_metrics_http *h;
    struct conn *prev, *next; /* in h->conns unless CLOSING */
    conn_state state;
    int open_handles; /* 2 -> 0 once closed: then freed */
    char *resp;       /* the response being written (owned) */
    size_t len;       /* bytes of head[] read */
    char head[BG_METRICS_HTTP_MAX_HEAD];
} conn;

struct bg_metrics_http {
    bg_metrics *m;
    uv_loop_t *loop;
    uv_tcp_t listener;
    unsigned timeout_ms, max_conns;
    conn *conns;
    unsigned n_conns;
    int closing;
    unsigned pending; /* close callbacks to come */
    char bound[128];
    char discard[4096]; /* LINGER reads land here */
};

static void maybe_free(bg_metrics_http *h)
{
    if (h->closing && h->pending == 0)
        free(h);
}

/* ---------------------------------------------------------- closing */

static void on_conn_closed(uv_handle_t *handle)
{
    conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    bg_metrics_http *h = c->h;
    free(c->resp);
    free(c);
    h->pending--;
    maybe_free(h);
}

static void close_conn(conn *c)
{
    if (c->state == C_CLOSING)
        return;
    bg_metrics_http *h = c->h;
    c->state = C_CLOSING;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h->n_conns--;
    h->pending++;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_refused_closed(uv_handle_t *handle)
{
    bg_metrics_http *h = handle->data;
    free(handle);
    h->pending--;
    maybe_free(h);
}

static void on_listener_closed(uv_handle_t *handle)
{
    bg_metrics_http *h = handle->data;
    h->pending--;
    maybe_free(h);
}

void bg_metrics_http_close(bg_metrics_http *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = 1;
    h->pending++;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    while (h->conns != NULL)
        close_conn(h->conns);
}

/* ---------------------------------------------------------- responses */

static void on_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    BG_DEBUG("metrics", "closing a connection after %s",
             c->state == C_READING   ? "the request timeout"
             : c->state == C_WRITING ? "the response timeout"
                                     : "the linger time");
    close_conn(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (status < 0)
        close_conn(c);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = handle->data;
    if (c->state == C_READING)
        *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof c->head - c->len));
    else
        *buf = uv_buf_init(c->h->discard, sizeof c->h->discard);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    conn *c = req->data;
    free(c->resp);
    c->resp = NULL;
    if (c->state == C_CLOSING)
        return; /* cancelled by close_conn */
    if (status < 0) {
        close_conn(c);
        return;
    }
    c->state = C_LINGER;
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0) {
        close_conn(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, BG_HTTP_LINGER_MS, 0);
}

/* Send status line, headers and body (not for HEAD), then close. */
static void respond(conn *c, int code, const char *reason, const char *extra_headers,
                    const char *type, const char *body, size_t body_len, int head_only)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, type, body_len, extra_headers ? extra_headers : "");
    size_t send_body = head_only ? 0 : body_len;
    c->resp = malloc((size_t)n + send_body);
    if (c->resp == NULL) {
        close_conn(c);
        return;
    }
    memcpy(c->resp, hdr, (size_t)n);
    if (send_body > 0)
        memcpy(c->resp + n, body, send_body);
    c->state = C_WRITING;
    c->wr.data = c;
    uv_buf_t b = uv_buf_init(c->resp, (unsigned)((size_t)n + send_body));
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        close_conn(c);
}

#define TEXT_PLAIN "text/plain; charset=utf-8"

static void respond_text(conn *c, int code, const char *reason, const char *extra_headers,
                         const char *body, int head_only)
{
    respond(c, code, reason, extra_headers, TEXT_PLAIN, body, strlen(body), head_only);
}

static void respond_metrics(conn *c, int head_only)
{
    char *text;
    size_t len;
    if (bg_metrics_render(c->h->m, &text, &len) != BG_OK) {
        BG_WARN("metrics", "out of memory rendering the metrics: answering 500");
        respond_text(c, 500, "Internal Server Error", NULL,
                     "out of memory rendering the metrics; retry\n", head_only);
        return;
    }
    respond(c, 200, "OK", NULL, BG_METRICS_CONTENT_TYPE, text, len, head_only);
    free(text);
}

/* ---------------------------------------------------------- parsing */

/* RFC 9110 tchar. */
static int is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The line starting at *p (ending at '\n', a '\r' before it dropped), NUL
 * terminated in place; *p moves past it. */
static char *next_line(char **p)
{
    char *line = *p, *nl = strchr(line, '\n');
    *nl = '\0';
    *p = nl + 1;
    if (nl > line && nl[-1] == '\r')
        nl[-1] = '\0';
    return line;
}

/* Checks the header fields up to the blank line; "" when they are well
 * formed, else what is wrong. *has_host: a Host field was present. */
static const char *check_fields(char *p, int *has_host)
{
    *has_host = 0;
    for (;;) {
        char *line = next_line(&p);
        if (line[0] == '\0')
            return "";
        if (line[0] == ' ' || line[0] == '\t')
            return "obsolete line folding in a header field";
        char *colon = line;
        while (is_tchar(*colon))
            colon++;
        if (colon == line || *colon != ':')
            return "a header field that is not 'name: value'";
        for (char *v = colon + 1; *v; v++)
            if ((unsigned char)*v < 0x20 && *v != '\t')
                return "a control character in a header value";
        if (colon - line == 4 && strncasecmp(line, "host", 4) == 0)
            (*has_host)++;
    }
}

/* Fill a with a plain-text answer. */
static void answer(bg__http_answer *a, int code, const char *reason, const char *extra_headers,
                   const char *body, int head_only)
{
    a->code = code;
    a->reason = reason;
    a->extra_headers = extra_headers;
    a->body = body;
    a->metrics = 0;
    a->head_only = head_only;
}

/* head[0..end) is a whole request head (NUL-terminated at end). */
static void parse(char *head, size_t end, bg__http_answer *a)
{
    head[end] = '\0';
    char *p = head;
    while (*p == '\r' || *p == '\n') /* RFC 9112 2.2: empty lines before the request line */
        p++;
    if (*p == '\0') {
        answer(a, 400, "Bad Request", NULL, "bad request: no request line\n", 0);
        return;
    }
    char *line = next_line(&p);
    char *method = line, *sp1 = strchr(line, ' ');
    char *target = sp1 ? sp1 + 1 : NULL, *sp2 = target ? strchr(target, ' ') : NULL;
    char *version = sp2 ? sp2 + 1 : NULL;
    if (sp1 == NULL || sp2 == NULL || strchr(version, ' ') != NULL) {
        answer(a, 400, "Bad Request", NULL,
               "bad request: expected 'METHOD /path HTTP/1.1' as the request line\n", 0);
        return;
    }
    *sp1 = *sp2 = '\0';
    for (char *m = method; *m; m++)
        if (!is_tchar(*m)) {
            answer(a, 400, "Bad Request", NULL, "bad request: invalid method\n", 0);
            return;
        }
    if (*target == '\0') {
        answer(a, 400, "Bad Request", NULL, "bad request: an empty request target\n", 0);
        return;
    }
    for (char *t = target; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) {
            answer(a, 400, "Bad Request", NULL, "bad request: invalid request target\n", 0);
            return;
        }
    int http11 = strcmp(version, "HTTP/1.1") == 0;
    if (!http11 && strcmp(version, "HTTP/1.0") != 0) {
        int is_http = strncmp(version, "HTTP/", 5) == 0 && version[5] >= '0' && version[5] <= '9' &&
                      version[6] == '.' && version[7] >= '0' && version[7] <= '9' &&
                      version[8] == '\0';
        if (is_http)
            answer(a, 505, "HTTP Version Not Supported", NULL,
                   "HTTP version not supported: use HTTP/1.1 or HTTP/1.0\n", 0);
        else
            answer(a, 400, "Bad Request", NULL,
                   "bad request: expected HTTP/1.1 or HTTP/1.0 in the request line\n", 0);
        return;
    }
    int hosts;
    const char *bad = check_fields(p, &hosts);
    if (bad[0] == '\0' && http11 && hosts != 1)
        bad = hosts == 0 ? "HTTP/1.1 request without a Host header field"
                         : "more than one Host header field";
    if (bad[0] != '\0') {
        snprintf(a->msg, sizeof a->msg, "bad request: %s\n", bad);
        answer(a, 400, "Bad Request", NULL, a->msg, 0);
        return;
    }
    int head_only = strcmp(method, "HEAD") == 0;
    int get = head_only || strcmp(method, "GET") == 0;
    size_t plen = strcspn(target, "?"); /* the query string is ignored */
    int is_metrics = plen == 8 && strncmp(target, "/metrics", 8) == 0;
    int is_index = plen == 1 && target[0] == '/';
    if (!is_metrics && !is_index)
        answer(a, 404, "Not Found", NULL, "not found: the metrics are at /metrics\n", head_only);
    else if (!get)
        answer(a, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
               "method not allowed: use GET or HEAD\n", 0);
    else if (is_metrics) {
        answer(a, 200, "OK", NULL, NULL, head_only);
        a->metrics = 1;
    } else
        answer(a, 200, "OK", NULL,
               "bayesguardd\n/metrics  Prometheus metrics (text format 0.0.4)\n", head_only);
}

/* Length of the head (through its blank line) within head[0..len), looking
 * from `from` on; 0 when it has not ended yet. */
static size_t head_end(const char *head, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        if (head[i] != '\n')
            continue;
        if (i + 1 < len && head[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && head[i + 1] == '\r' && head[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int bg__metrics_http_scan(char *head, size_t from, size_t len, bg__http_answer *a)
{
    if (memchr(head + from, '\0', len - from) != NULL) {
        answer(a, 400, "Bad Request", NULL, "bad request: a NUL byte in the head\n", 0);
        return 1;
    }
    size_t end = head_end(head, from > 2 ? from - 2 : 0, len);
    if (end > 0 && end < BG_METRICS_HTTP_MAX_HEAD) {
        parse(head, end, a);
        return 1;
    }
    if (len >= BG_METRICS_HTTP_MAX_HEAD - 1) {
        answer(a, 431, "Request Header Fields Too Large", NULL,
               "request header fields too large: the request head must be under 8 KiB\n", 0);
        return 1;
    }
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn *c = s->data;
    if (nread == 0 || c->state == C_CLOSING)
        return;
    if (nread < 0) { /* EOF or error: a partial request is dropped */
        close_conn(c);
        return;
    }
    if (c->state != C_READING)
        return; /* LINGER: discarded */
    size_t from = c->len;
    c->len += (size_t)nread;
    bg__http_answer a;
    if (!bg__metrics_http_scan(c->head, from, c->len, &a))
        return;
    if (a.metrics)
        respond_metrics(c, a.head_only);
    else
        respond_text(c, a.code, a.reason, a.extra_headers, a.body, a.head_only);
}

/* ---------------------------------------------------------- accepting */

static void refuse(bg_metrics_http *h, uv_stream_t *server)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL)
        return; /* the kernel keeps it queued; the next accept retries */
    uv_tcp_init(h->loop, t);
    t->data = h;
    if (uv_accept(server, (uv_stream_t *)t) == 0)
        BG_WARN("metrics", "%u connections open (the limit): closing a new one", h->max_conns);
    h->pending++;
    uv_close((uv_handle_t *)t, on_refused_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    bg_metrics_http *h = server->data;
    if (status < 0) {
        BG_WARN("metrics", "accept on %s: %s", h->bound, uv_strerror(status));
        return;
    }
    if (h->n_conns >= h->max_conns) {
        refuse(h, server);
        return;
    }
    conn *c = malloc(sizeof *c);
    if (c == NULL) {
        refuse(h, server);
        return;
    }
    memset(c, 0, offsetof(conn, head));
    c->h = h;
    c->open_handles = 2;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0) {
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timeout, h->timeout_ms, 0);
}

/* ---------------------------------------------------------- start */

/* "host:port" or "[v6]:port" -> a socket address (names resolved now: this
 * runs at startup, before the loop serves anything). */
static int resolve(const char *addr, struct sockaddr_storage *out, bg_err *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    const char *h0 = addr, *h1 = colon;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        h0 = addr + 1;
        h1 = rb;
        if (rb == NULL || rb[1] != ':')
            colon = NULL;
    }
    char *endp = NULL;
    long port = colon ? strtol(colon + 1, &endp, 10) : -1;
    if (colon == NULL || h1 == h0 || (size_t)(h1 - h0) >= sizeof host || colon[1] == '\0' ||
        *endp != '\0' || port < 0 || port > 65535)
        return bg_err_set(err, BG_EINVAL,
                          "--metrics-listen %s: expected host:port (port 0: the kernel picks "
                          "one), e.g. 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464",
                          addr);
    memcpy(host, h0, (size_t)(h1 - h0));
    host[h1 - h0] = '\0';
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL)
        return bg_err_set(err, BG_EINVAL, "--metrics-listen %s: cannot resolve '%s': %s", addr,
                          host, gai_strerror(rc));
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    return BG_OK;
}

static void format_bound(bg_metrics_http *h)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[64] = "?";
    int port = 0;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(h->bound, sizeof h->bound, "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(h->bound, sizeof h->bound, "%s:%d", ip, port);
}

int bg_metrics_http_start(bg_metrics *m, uv_loop_t *loop, const bg_metrics_http_opts *opts,
                          bg_metrics_http **out, bg_err *err)
{
    *out = NULL;
    struct sockaddr_storage sa;
    int rc = resolve(opts->listen, &sa, err);
    if (rc != BG_OK)
        return rc;
    bg_metrics_http *h = calloc(1, sizeof *h);
    if (h == NULL)
        return bg_err_set(err, BG_ENOMEM, "metrics: out of memory");
    h->m = m;
    h->loop = loop;
    h->timeout_ms = opts->timeout_ms ? opts->timeout_ms : BG_HTTP_DEFAULT_TIMEOUT_MS;
    h->max_conns = opts->max_conns ? opts->max_conns : BG_HTTP_DEFAULT_MAX_CONNS;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    int uvrc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&sa, 0);
    if (uvrc == 0)
        uvrc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
    if (uvrc != 0) {
        bg_metrics_http_close(h); /* freed once the loop runs the close */
        return bg_err_set(err, BG_EIO,
                          "--metrics-listen %s: cannot listen there (%s): pick another address "
                          "or stop the other process",
                          opts->listen, uv_strerror(uvrc));
    }
    format_bound(h);
    BG_INFO("metrics", "metrics on %s (GET /metrics, Prometheus text format 0.0.4)", h->bound);
    *out = h;
    return BG_OK;
}

const char *bg_metrics_http_bound(const bg_metrics_http *h)
{
    return h->bound;
}
