/*
 * fleet_link.c — one connection to the fleet's Redis: plain TCP, or TLS.
 *
 * Why a pump: Debian 12's libhiredis 0.14 has no TLS, but it takes any
 * connected stream socket (redisConnectFd). Over TLS the link connects the
 * TCP socket itself, runs the OpenSSL handshake (the server verified
 * against --fleet-ca, its name or IP checked, TLS 1.2 or newer, a client
 * certificate when --fleet-cert is given), sends one PING through the
 * session (so that a server refusing our certificate is reported now, by
 * its alert, and not as a closed connection later), and then hands
 * hiredis one end of a socketpair. A pump thread moves bytes between the
 * other end and the TLS session: hiredis -> SSL_write, SSL_read -> hiredis.
 *
 * Invariants: each direction holds at most PUMP_BUF bytes in the pump (it
 * stops reading a side whose buffer is full, so a slow side back-pressures
 * the other); the pump ends when either side ends (hiredis closing its
 * end, the TLS peer closing or failing), and then closes its end, so
 * hiredis sees EOF and the caller reconnects (fleet.c's backoff).
 * Threads: a link is used by one thread (the shipper or the reader) plus
 * its own pump; close joins the pump. The bg__fleet_tls context is
 * immutable after create and shared.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_log.h"
#include "fleet/fleet_priv.h"

#define PUMP_BUF (16 * 1024)

struct bg__fleet_tls {
    SSL_CTX *ctx;
};

struct bg__fleet_link {
    redisContext *c;
    /* TLS only */
    SSL *ssl;
    int tcp;  /* the TCP socket under ssl */
    int side; /* the pump's end of the socketpair; hiredis has the other */
    pthread_t pump;
    int pumping;
    char why[256];   /* why the pump stopped; written by the pump before done */
    atomic_int done; /* the pump has ended (release: why is written) */
};

/* The OpenSSL error queue as one line (emptied), or fallback. */
static void ssl_why(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, len, "%s", fallback);
        return;
    }
    char s[200];
    ERR_error_string_n(e, s, sizeof s);
    /* "error:0A000086:SSL routines::certificate verify failed": keep the reason */
    const char *r = strrchr(s, ':');
    snprintf(buf, len, "%s", r && r[1] ? r + 1 : s);
    ERR_clear_error();
}

/* Refuses a key file others may read, as --fleet-password-file does. */
static int private_file(const char *flag, const char *file, bg_err *err)
{
    struct stat st;
    if (stat(file, &st) != 0)
        return bg_err_set(err, BG_EIO, "%s %s: %s", flag, file, strerror(errno));
    if (st.st_mode & 077)
        return bg_err_set(err, BG_EINVAL,
                          "%s %s: readable by group or others (mode %03o); chmod 600 it", flag,
                          file, (unsigned)(st.st_mode & 0777));
    return BG_OK;
}

int bg__fleet_tls_create(const char *ca_file, const char *cert_file, const char *key_file,
                         bg__fleet_tls **out, bg_err *err)
{
    *out = NULL;
    if (!ca_file)
        return bg_err_set(err, BG_EINVAL,
                          "--fleet rediss:// needs --fleet-ca FILE: the CA certificate(s) that "
                          "signed Redis's certificate (PEM)");
    if (!cert_file != !key_file)
        return bg_err_set(err, BG_EINVAL,
                          "--fleet-cert and --fleet-key go together (the client certificate "
                          "and its private key, PEM)");
    if (key_file && private_file("--fleet-key", key_file, err) != BG_OK)
        return err->code;
    char why[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return bg_err_set(err, BG_ENOMEM, "fleet: TLS: out of memory");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int rc = BG_OK;
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        ssl_why(why, sizeof why, "cannot read it");
        rc = bg_err_set(err, BG_EINVAL, "--fleet-ca %s: %s (expected PEM CA certificates)", ca_file,
                        why);
    } else if (cert_file && SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_why(why, sizeof why, "cannot read it");
        rc = bg_err_set(err, BG_EINVAL, "--fleet-cert %s: %s (expected a PEM certificate chain)",
                        cert_file, why);
    } else if (key_file && SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_why(why, sizeof why, "cannot read it");
        rc = bg_err_set(err, BG_EINVAL, "--fleet-key %s: %s (expected a PEM private key)", key_file,
                        why);
    } else if (key_file && SSL_CTX_check_private_key(ctx) != 1) {
        ssl_why(why, sizeof why, "mismatch");
        rc = bg_err_set(err, BG_EINVAL, "--fleet-key %s does not belong to --fleet-cert %s: %s",
                        key_file, cert_file, why);
    }
    if (rc != BG_OK) {
        SSL_CTX_free(ctx);
        return rc;
    }
    bg__fleet_tls *t = calloc(1, sizeof *t);
    if (!t) {
        SSL_CTX_free(ctx);
        return bg_err_set(err, BG_ENOMEM, "fleet: TLS: out of memory");
    }
    t->ctx = ctx;
    *out = t;
    return BG_OK;
}

void bg__fleet_tls_destroy(bg__fleet_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/* ---------------------------------------------------------- TCP + TLS */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* A connected nonblocking TCP socket to host:port, or -1 and why. */
static int tcp_connect(const char *host, int port, int64_t deadline, char *why, size_t wl)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &res);
    if (g != 0) {
        snprintf(why, wl, "%s", gai_strerror(g));
        return -1;
    }
    int fd = -1;
    snprintf(why, wl, "no address");
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int64_t left = deadline - now_ms();
            if (poll(&p, 1, left > 0 ? (int)left : 0) == 1) {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
                r = e ? -1 : 0;
                errno = e;
            } else
                errno = ETIMEDOUT;
        }
        if (r == 0)
            break;
        snprintf(why, wl, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* Waits for what ssl asked for (r: its last return); 0, or -1 on a
 * timeout or a hard error (why set). */
static int ssl_wait(SSL *ssl, int fd, int r, int64_t deadline, char *why, size_t wl)
{
    int e = SSL_get_error(ssl, r);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (!ev) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            ERR_clear_error();
            snprintf(why, wl, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        } else
            ssl_why(why, wl,
                    e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL
                        ? "the server closed the connection during TLS"
                        : "TLS error");
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = ev};
    int64_t left = deadline - now_ms();
    if (left <= 0 || poll(&p, 1, (int)left) != 1) {
        snprintf(why, wl, "TLS handshake timed out");
        return -1;
    }
    return 0;
}

/* Handshake, then PING through the session and read the first byte of a
 * reply: the server has accepted us (TLS 1.3 sends a refusal of the
 * client certificate only after the client's handshake is done). */
static int tls_start(bg__fleet_link *l, bg__fleet_tls *t, const char *host, int64_t deadline,
                     char *why, size_t wl)
{
    l->ssl = SSL_new(t->ctx);
    if (!l->ssl) {
        snprintf(why, wl, "TLS: out of memory");
        return -1;
    }
    SSL_set_mode(l->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(l->ssl);
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1
              : (SSL_set_tlsext_host_name(l->ssl, host) != 1 || SSL_set1_host(l->ssl, host) != 1)) {
        ssl_why(why, wl, "TLS: cannot set the name to verify");
        return -1;
    }
    SSL_set_fd(l->ssl, l->tcp);
    int r;
    while ((r = SSL_connect(l->ssl)) != 1)
        if (ssl_wait(l->ssl, l->tcp, r, deadline, why, wl) != 0)
            return -1;
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    char reply[64];
    while ((r = SSL_write(l->ssl, ping, sizeof ping - 1)) <= 0)
        if (ssl_wait(l->ssl, l->tcp, r, deadline, why, wl) != 0) {
            /* A server that refused our certificate may have closed before
             * the write: its alert is still there to read. */
            ERR_clear_error();
            while ((r = SSL_read(l->ssl, reply, sizeof reply)) > 0)
                ;
            if (SSL_get_error(l->ssl, r) == SSL_ERROR_SSL && ERR_peek_error())
                ssl_why(why, wl, "");
            return -1;
        }
    size_t got = 0;
    while (got == 0 || reply[got - 1] != '\n') {
        r = SSL_read(l->ssl, reply + got, sizeof reply - got);
        if (r > 0) {
            got += (size_t)r;
            if (got == sizeof reply)
                break;
        } else if (ssl_wait(l->ssl, l->tcp, r, deadline, why, wl) != 0)
            return -1;
    }
    return 0;
}

/* The pump: moves bytes both ways until one side ends (header). */
static void *pump_main(void *arg)
{
    bg__fleet_link *l = arg;
    uint8_t *up = malloc(PUMP_BUF), *down = malloc(PUMP_BUF);
    size_t ulen = 0, doff = 0, dlen = 0;
    int want_w = 0, want_r = 0; /* TLS needs the socket writable / readable */
    const char *why = up && down ? NULL : "out of memory";
    while (!why) {
        want_w = want_r = 0;
        /* hiredis -> TLS (a retried SSL_write sees the same bytes first,
         * perhaps more after them: partial writes, moving buffer) */
        if (ulen > 0) {
            int r = SSL_write(l->ssl, up, (int)ulen);
            if (r > 0) {
                memmove(up, up + r, ulen - (size_t)r);
                ulen -= (size_t)r;
            } else {
                int e = SSL_get_error(l->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    want_w = 1;
                else if (e == SSL_ERROR_WANT_READ)
                    want_r = 1;
                else {
                    ssl_why(l->why, sizeof l->why, "TLS write failed");
                    break;
                }
            }
        }
        /* TLS -> hiredis */
        int progressed = 0;
        if (dlen == 0) {
            int r = SSL_read(l->ssl, down, PUMP_BUF);
            if (r > 0) {
                doff = 0;
                dlen = (size_t)r;
                progressed = 1;
            } else {
                int e = SSL_get_error(l->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    want_w = 1;
                else if (e != SSL_ERROR_WANT_READ) {
                    ssl_why(l->why, sizeof l->why,
                            e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL
                                ? "the server closed the TLS connection"
                                : "TLS read failed");
                    break;
                }
            }
        }
        if (dlen > 0) {
            ssize_t w = write(l->side, down + doff, dlen);
            if (w > 0) {
                doff += (size_t)w;
                dlen -= (size_t)w;
                progressed = 1;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR)
                break; /* hiredis closed its end */
        }
        if (ulen < PUMP_BUF) {
            ssize_t n = read(l->side, up + ulen, PUMP_BUF - ulen);
            if (n == 0)
                break; /* hiredis closed its end: the link is being closed */
            if (n > 0) {
                ulen += (size_t)n;
                progressed = 1;
            } else if (errno != EAGAIN && errno != EINTR)
                break;
        }
        if (progressed || (dlen == 0 && SSL_pending(l->ssl) > 0))
            continue;
        struct pollfd p[2] = {
            {.fd = l->side,
             .events = (short)((ulen < PUMP_BUF ? POLLIN : 0) | (dlen > 0 ? POLLOUT : 0))},
            {.fd = l->tcp,
             .events = (short)((dlen == 0 || want_r ? POLLIN : 0) | (want_w ? POLLOUT : 0))}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            break; /* hiredis closed its end */
    }
    if (why)
        snprintf(l->why, sizeof l->why, "%s", why);
    atomic_store_explicit(&l->done, 1, memory_order_release);
    free(up);
    free(down);
    shutdown(l->side, SHUT_RDWR); /* hiredis sees EOF */
    return NULL;
}

bg__fleet_link *bg__fleet_link_open(const char *host, int port, bg__fleet_tls *tls, int timeout_ms,
                                    char *why, size_t why_len)
{
    bg__fleet_link *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    l->tcp = l->side = -1;
    struct timeval ct = {2, 0};
    if (!tls) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        l->c = redisConnectWithTimeout(host, port, tv);
        if (!l->c || l->c->err) {
            snprintf(why, why_len, "%s", l->c ? l->c->errstr : "out of memory");
            bg__fleet_link_close(l);
            return NULL;
        }
        redisSetTimeout(l->c, ct);
        return l;
    }
    int64_t deadline = now_ms() + timeout_ms;
    int sv[2] = {-1, -1};
    if ((l->tcp = tcp_connect(host, port, deadline, why, why_len)) < 0)
        goto fail;
    if (tls_start(l, tls, host, deadline, why, why_len) != 0)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(why, why_len, "socketpair: %s", strerror(errno));
        goto fail;
    }
    l->side = sv[1];
    set_nonblock(l->side, 1);
    l->c = redisConnectFd(sv[0]); /* takes sv[0] (closed by redisFree) */
    if (!l->c || l->c->err) {
        snprintf(why, why_len, "%s", l->c ? l->c->errstr : "out of memory");
        if (!l->c)
            close(sv[0]);
        goto fail;
    }
    redisSetTimeout(l->c, ct);
    if (pthread_create(&l->pump, NULL, pump_main, l) != 0) {
        snprintf(why, why_len, "cannot start the TLS pump thread");
        goto fail;
    }
    l->pumping = 1;
    return l;
fail:
    bg__fleet_link_close(l);
    return NULL;
}

redisContext *bg__fleet_link_ctx(bg__fleet_link *l)
{
    return l->c;
}

const char *bg__fleet_link_error(bg__fleet_link *l)
{
    return atomic_load_explicit(&l->done, memory_order_acquire) ? l->why : "";
}

void bg__fleet_link_close(bg__fleet_link *l)
{
    if (!l)
        return;
    if (l->c)
        redisFree(l->c); /* closes hiredis's end: the pump reads EOF and ends */
    if (l->pumping)
        pthread_join(l->pump, NULL);
    if (l->ssl) {
        if (l->pumping && !l->why[0])
            (void)SSL_shutdown(l->ssl); /* best effort close_notify, nonblocking */
        ERR_clear_error();
        SSL_free(l->ssl);
    }
    if (l->tcp >= 0)
        close(l->tcp);
    if (l->side >= 0)
        close(l->side);
    free(l);
}
