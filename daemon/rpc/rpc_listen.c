/*
 * rpc_listen.c — the listeners as a trust boundary: which roles each one
 * serves, its socket, and who is calling on it.
 *
 * A listener is "[ROLES@]ADDR[?uids=N,...]" (--listen, or the config
 * file's `listen`): ROLES is a comma-separated subset of agent (Evaluate),
 * reporter (Observe, ObserveStream), operator (Status, Reload) and health
 * (grpc.health.v1); none named means every role, with a warning, so
 * `make run` and the README tour keep working. A method needs the role of
 * its row in the method table (rpc_priv.h); bg__rpc_authorize, called once
 * per call by the dispatch (rpc_call.c on_request), is the only place that
 * checks it, and says why a call is PERMISSION_DENIED (naming the role and
 * what this listener serves) for the dispatch to answer. Bench/Ping needs
 * --enable-bench, on any listener.
 *
 * Why one grpc_server per listener: gRPC C core tells a server call
 * nothing about the port it came in on (grpc_call_get_peer is the
 * client's address; the auth context names no port). Each listener gets
 * its own grpc_server with the method table registered; every completion
 * queue is registered with every server (gRPC allows a CQ to serve several
 * servers), so the CQ threads and the lock-free per-CQ call path stay as
 * they were; a call knows its listener because it was requested from that
 * listener's server (c->listener). Cost: prerequested calls per listener.
 *
 * Unix sockets: gRPC C core 1.51 (Debian 12) has no public handshaker
 * hook and its own unix listener reports the peer as "unix:" only, so the
 * daemon binds and accepts the socket itself (on the loop thread, through
 * uv_poll), reads SO_PEERCRED (uid, gid, pid, from the kernel at connect
 * time) into a table indexed by the connection's fd, and hands the fd to
 * the listener's server with grpc_server_add_channel_from_fd. gRPC (1.51)
 * names such a connection's peer "fd:N", so a call finds its credentials
 * by its fd: one grpc_call_get_peer (a small copy) and a table lookup under
 * a mutex per call, no syscall (a peer of another form fails closed:
 * PERMISSION_DENIED). The fd number cannot have been reused by
 * another connection while the call exists: the call holds its stream,
 * the stream holds the transport, and the transport closes the fd only
 * when destroyed. The socket file is created with no moment of being
 * world-writable: bind() in a fresh private directory (mkdtemp, 0700) next
 * to the path, chmod to --socket-mode and chown to --socket-group there,
 * then link() into place (atomic, and unlike rename it never replaces what
 * is at the path: a file there is an error, not clobbered; connect()
 * follows the inode), and the private name removed. A umask
 * around bind() would not do: umask is per process, and other threads
 * (decision log, worker pool) may create files meanwhile. Modes with the
 * world-write bit are refused. `?uids=` narrows a listener to those uids;
 * any other uid's calls are PERMISSION_DENIED (the connection is kept, so
 * the refusal says what to fix).
 *
 * TCP with TLS: with --tls-cert and --tls-key every TCP listener serves
 * TLS through gRPC's file-watcher certificate provider, which re-reads the
 * files every --tls-refresh-s seconds (new handshakes use the new
 * certificates; established connections keep theirs, so rotation fails no
 * call). With --tls-client-ca clients must present a certificate that CA
 * signed (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY), and
 * the call's identity is its SPIFFE ID (URI SAN), else its first URI SAN,
 * DNS SAN, or CN, from the call's auth context.
 *
 * Identity: c->peer.identity is "uid:N" on a unix socket, the certificate's
 * identity under mTLS, "" otherwise. `identities` (--identities ID=ROLES)
 * narrows an identity's roles on every listener; "*" covers every caller
 * not listed, including those without an identity.
 *
 * Threads: open/accept_start/stop_accepting/close on the loop thread (open
 * and accept_start during start); the accept callback on the loop thread;
 * bg__rpc_authorize on CQ threads (conns under conn_mu; the listeners and
 * identities are read-only once start returned). Ownership: the server
 * owns the listeners, their servers, sockets and socket files (unlinked at
 * close), the identities and the conns table.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "common/bg_log.h"
#include "rpc/rpc_priv.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define DEFAULT_SOCKET_MODE "0660"
#define DEFAULT_TLS_REFRESH_S 60u

/* ------------------------------------------------------------------ roles */

/* A role a listener or identity may name (not bench); -1 when unknown. */
static int role_of(const char *name, size_t n)
{
    for (int r = 0; r < BG_ROLE__COUNT; r++) {
        const char *rn = bg__rpc_role_name(r);
        if (r != BG_ROLE_BENCH && strlen(rn) == n && memcmp(rn, name, n) == 0)
            return r;
    }
    return -1;
}

/* "agent,health" (len bytes) into a role mask. */
static int parse_roles(const char *text, size_t len, int allow_empty, unsigned *out,
                       const char *what, bg_err *err)
{
    unsigned mask = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && text[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && isspace((unsigned char)text[a]))
            a++;
        while (b > a && isspace((unsigned char)text[b - 1]))
            b--;
        if (b > a) {
            int r = role_of(text + a, b - a);
            if (r < 0)
                return bg_err_set(err, BG_EINVAL,
                                  "%s: unknown role '%.*s': expected agent, reporter, operator "
                                  "or health, comma-separated",
                                  what, (int)(b - a), text + a);
            mask |= BG_ROLE_BIT(r);
        }
        i = j + 1;
    }
    if (mask == 0 && !allow_empty)
        return bg_err_set(err, BG_EINVAL,
                          "%s: no role before '@': name agent, reporter, operator or health "
                          "(comma-separated), or leave out 'ROLES@' for every role",
                          what);
    *out = mask;
    return BG_OK;
}

/* "agent, health" ("nothing" for none). */
static void roles_text(unsigned mask, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int r = 0; r < BG_ROLE__COUNT; r++)
        if (mask & BG_ROLE_BIT(r))
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%s", n ? ", " : "",
                                  bg__rpc_role_name(r));
    if (n == 0)
        snprintf(buf, cap, "nothing");
}

/* --identities ID=ROLES (the file's identities map, as settings.c writes it). */
static int parse_identities(bg_rpc_server *s, bg_err *err)
{
    const bg_rpc_opts *o = &s->opts;
    if (o->n_identities == 0)
        return BG_OK;
    s->ids = calloc(o->n_identities, sizeof(*s->ids));
    if (s->ids == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    for (size_t i = 0; i < o->n_identities; i++) {
        const char *t = o->identities[i];
        const char *eq = strrchr(t, '=');
        char what[320];
        snprintf(what, sizeof what, "--identities %.256s", t);
        if (eq == NULL || eq == t)
            return bg_err_set(err, BG_EINVAL,
                              "%s: expected ID=ROLES (e.g. spiffe://example.org/agent=agent,"
                              "health, or *= for no role to callers not listed)",
                              what);
        for (size_t k = 0; k < s->n_ids; k++)
            if (strlen(s->ids[k].id) == (size_t)(eq - t) && memcmp(s->ids[k].id, t, eq - t) == 0)
                return bg_err_set(err, BG_EINVAL, "%s: identity '%.*s' is listed twice", what,
                                  (int)(eq - t), t);
        bg__rpc_identity *e = &s->ids[s->n_ids];
        if (parse_roles(eq + 1, strlen(eq + 1), 1, &e->roles, what, err) != BG_OK)
            return BG_EINVAL;
        e->id = strndup(t, (size_t)(eq - t));
        if (e->id == NULL)
            return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
        s->n_ids++;
    }
    return BG_OK;
}

/* --------------------------------------------------------- listener specs */

/* "1000,alice" into l->uids (numbers or user names). */
static int parse_uids(bg__rpc_listener *l, const char *spec, const char *list, bg_err *err)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    l->uids = calloc(n, sizeof(*l->uids));
    if (l->uids == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    const char *p = list;
    while (*p) {
        size_t w = strcspn(p, ",");
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(w < 255 ? w : 255), p);
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(name, &end, 10);
        if (name[0] != '\0' && *end == '\0' && errno == 0 && v <= UINT32_MAX) {
            l->uids[l->n_uids++] = (uint32_t)v;
        } else {
            struct passwd *pw = name[0] ? getpwnam(name) : NULL;
            if (pw == NULL)
                return bg_err_set(err, BG_EINVAL,
                                  "--listen %s: '%s' in ?uids= is neither a uid nor a user "
                                  "name: list uids or user names, comma-separated",
                                  spec, name);
            l->uids[l->n_uids++] = (uint32_t)pw->pw_uid;
        }
        p += w;
        if (*p == ',')
            p++;
    }
    if (l->n_uids == 0)
        return bg_err_set(err, BG_EINVAL, "--listen %s: ?uids= lists no uid", spec);
    return BG_OK;
}

/* "[ROLES@]ADDR[?uids=...]" into l. ROLES are only before any ':' or '/',
 * so an '@' later in a path is part of the path. */
static int parse_spec(bg__rpc_listener *l, const char *spec, int tls, bg_err *err)
{
    char what[300];
    snprintf(what, sizeof what, "--listen %.256s", spec);
    const char *addr = spec;
    const char *at = strchr(spec, '@');
    const char *sep = strpbrk(spec, ":/");
    if (at != NULL && (sep == NULL || at < sep)) {
        if (parse_roles(spec, (size_t)(at - spec), 0, &l->roles, what, err) != BG_OK)
            return BG_EINVAL;
        addr = at + 1;
    } else {
        l->roles = BG_ROLES_ALL;
        l->bare = 1;
    }
    roles_text(l->roles, l->roles_text, sizeof l->roles_text);
    int is_unix = strncmp(addr, "unix:", 5) == 0;
    const char *q = strchr(addr, '?');
    if (q != NULL && !is_unix)
        return bg_err_set(err, BG_EINVAL,
                          "%s: options after '?' (uids=) apply to unix: listeners only", what);
    l->addr = strndup(addr, q ? (size_t)(q - addr) : strlen(addr));
    if (l->addr == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    if (q != NULL) {
        if (strncmp(q + 1, "uids=", 5) != 0)
            return bg_err_set(err, BG_EINVAL, "%s: unknown option '%s': expected ?uids=N,N", what,
                              q + 1);
        if (parse_uids(l, spec, q + 6, err) != BG_OK)
            return BG_EINVAL;
    }
    if (is_unix) {
        const char *path = l->addr + 5;
        if (path[0] == '\0' || strlen(path) >= SUN_PATH_MAX)
            return bg_err_set(err, BG_EINVAL,
                              "%s: expected unix:/absolute/path shorter than %zu bytes", what,
                              SUN_PATH_MAX);
        l->kind = BG_LISTEN_UNIX;
    } else if (strrchr(l->addr, ':') == NULL) {
        return bg_err_set(err, BG_EINVAL,
                          "%s: expected host:port (port 0 = any free port) or unix:/path", what);
    } else {
        l->kind = tls ? BG_LISTEN_TLS : BG_LISTEN_TCP;
    }
    return BG_OK;
}

/* ------------------------------------------------------------ unix sockets */

/* A stale unix socket left by a dead daemon is removed. A live one (it
 * accepts a connection) is an error: binding over it would steal the path
 * from the process serving there. Returns 1 when live. */
static int unlink_stale_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    if (!live && unlink(path) == 0)
        BG_INFO("rpc", "removed stale unix socket %s", path);
    return live;
}

/* --socket-mode (octal, never world-writable) and --socket-group. */
static int socket_owner(const bg_rpc_opts *o, mode_t *mode, gid_t *gid, int *set_gid, bg_err *err)
{
    const char *m = o->socket_mode ? o->socket_mode : DEFAULT_SOCKET_MODE;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(m, &end, 8);
    if (m[0] == '\0' || *end != '\0' || errno != 0 || v > 0777)
        return bg_err_set(err, BG_EINVAL, "--socket-mode %s: expected an octal mode such as 0660",
                          m);
    if (v & 0002)
        return bg_err_set(err, BG_EINVAL,
                          "--socket-mode %s: world-writable, so any local user could call: use "
                          "0660 and --socket-group for the callers' group",
                          m);
    *mode = (mode_t)v;
    *set_gid = 0;
    if (o->socket_group == NULL)
        return BG_OK;
    struct group *g = getgrnam(o->socket_group);
    if (g != NULL) {
        *gid = g->gr_gid;
    } else {
        errno = 0;
        v = strtoul(o->socket_group, &end, 10);
        if (o->socket_group[0] == '\0' || *end != '\0' || errno != 0 || v > UINT32_MAX)
            return bg_err_set(err, BG_EINVAL,
                              "--socket-group %s: no such group: give a group name or number",
                              o->socket_group);
        *gid = (gid_t)v;
    }
    *set_gid = 1;
    return BG_OK;
}

/* Bind l's socket file with its final mode and group before anyone else can
 * reach it: in a private directory, then linked into place. */
static int bind_unix(bg__rpc_listener *l, mode_t mode, gid_t gid, int set_gid, bg_err *err)
{
    const char *path = l->addr + 5;
    if (unlink_stale_socket(path))
        return bg_err_set(err, BG_EIO,
                          "--listen %s: another process is serving on this socket: stop it "
                          "or pick another path",
                          l->addr);
    char dir[SUN_PATH_MAX + 16];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    char priv[SUN_PATH_MAX + 32], tmp[SUN_PATH_MAX + 40];
    snprintf(priv, sizeof priv, "%s/.bg-XXXXXX", dir);
    snprintf(tmp, sizeof tmp, "%s/s", priv);
    if (strlen(tmp) >= SUN_PATH_MAX)
        return bg_err_set(err, BG_EINVAL,
                          "--listen %s: the directory's path is too long to bind in a private "
                          "directory there (%zu bytes at most): use a shorter path",
                          l->addr, SUN_PATH_MAX - 12);
    if (mkdtemp(priv) == NULL)
        return bg_err_set(err, BG_EIO,
                          "--listen %s: cannot create a private directory in %s to bind the "
                          "socket: %s",
                          l->addr, dir, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/s", priv);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", tmp);
    const char *step = "socket";
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (step = "bind", bind(fd, (struct sockaddr *)&sa, sizeof(sa))) == 0 &&
        (step = "chmod", chmod(tmp, mode)) == 0 &&
        (step = "chown to --socket-group", set_gid ? chown(tmp, (uid_t)-1, gid) : 0) == 0 &&
        (step = "link into place (is something else at that path?)", link(tmp, path)) == 0 &&
        (step = "listen", listen(fd, SOMAXCONN)) == 0) {
        unlink(tmp);
        rmdir(priv);
        l->fd = fd;
        l->unlink_at_exit = 1;
        return BG_OK;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (strcmp(step, "listen") == 0)
        unlink(path); /* linked, but will not serve */
    unlink(tmp);
    rmdir(priv);
    return bg_err_set(err, BG_EIO, "--listen %s: %s failed: %s", l->addr, step, strerror(e));
}

/* ------------------------------------------------------------------- TLS */

/* path must be a readable PEM file (gRPC's watcher only logs failures). */
static int check_pem(const char *flag, const char *path, bg_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return bg_err_set(err, BG_EINVAL, "%s %s: cannot read it: %s", flag, path, strerror(errno));
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "-----BEGIN ") == NULL)
        return bg_err_set(err, BG_EINVAL, "%s %s: not a PEM file (no '-----BEGIN ' line)", flag,
                          path);
    return BG_OK;
}

/* The TLS credentials of the TCP listeners; *out NULL: plain TCP. */
static int tls_creds(const bg_rpc_opts *o, grpc_server_credentials **out, bg_err *err)
{
    *out = NULL;
    if (o->tls_cert == NULL && o->tls_key == NULL) {
        if (o->tls_client_ca != NULL)
            return bg_err_set(err, BG_EINVAL,
                              "--tls-client-ca %s needs --tls-cert and --tls-key: mTLS needs "
                              "the server's own certificate",
                              o->tls_client_ca);
        return BG_OK;
    }
    if (o->tls_cert == NULL || o->tls_key == NULL)
        return bg_err_set(err, BG_EINVAL, "--tls-cert and --tls-key go together: give both");
    if (check_pem("--tls-cert", o->tls_cert, err) != BG_OK ||
        check_pem("--tls-key", o->tls_key, err) != BG_OK ||
        (o->tls_client_ca && check_pem("--tls-client-ca", o->tls_client_ca, err) != BG_OK))
        return BG_EINVAL;
    grpc_tls_certificate_provider *prov = grpc_tls_certificate_provider_file_watcher_create(
        o->tls_key, o->tls_cert, o->tls_client_ca,
        o->tls_refresh_s ? o->tls_refresh_s : DEFAULT_TLS_REFRESH_S);
    grpc_tls_credentials_options *to = grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(to, prov); /* takes its own ref */
    grpc_tls_certificate_provider_release(prov);
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(to);
    if (o->tls_client_ca != NULL) {
        grpc_tls_credentials_options_watch_root_certs(to);
        grpc_tls_credentials_options_set_cert_request_type(
            to, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    } else {
        grpc_tls_credentials_options_set_cert_request_type(
            to, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    }
    *out = grpc_tls_server_credentials_create(to); /* takes the options */
    if (*out == NULL)
        return bg_err_set(err, BG_EINVAL,
                          "--tls-cert %s, --tls-key %s: gRPC refused the TLS settings", o->tls_cert,
                          o->tls_key);
    return BG_OK;
}

/* ------------------------------------------------------------------- open */

static int bind_listener(bg_rpc_server *s, bg__rpc_listener *l, grpc_server_credentials *creds,
                         mode_t mode, gid_t gid, int set_gid, bg_err *err)
{
    char buf[512];
    if (l->kind == BG_LISTEN_UNIX) {
        if (bind_unix(l, mode, gid, set_gid, err) != BG_OK)
            return BG_EIO;
        snprintf(buf, sizeof buf, "%s", l->addr);
    } else {
        int port = grpc_server_add_http2_port(l->server, l->addr, creds);
        if (port == 0)
            return bg_err_set(err, BG_EIO,
                              "--listen %s: cannot listen there (address in use, not local, or "
                              "permission denied): pick another address or stop the other "
                              "process",
                              l->addr);
        const char *colon = strrchr(l->addr, ':');
        snprintf(buf, sizeof buf, "%.*s:%d", (int)(colon - l->addr), l->addr, port);
    }
    s->bound[s->n_bound] = strdup(buf);
    if (s->bound[s->n_bound] == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    s->n_bound++;
    return BG_OK;
}

/* l's grpc_server: the method table registered, every CQ registered. */
static void make_server(bg_rpc_server *s, bg__rpc_listener *l, const grpc_channel_args *args)
{
    l->server = grpc_server_create(args, NULL);
    for (int m = 0; m < BG_M__COUNT; m++) {
        const bg__rpc_method *meth = &bg__rpc_methods[m];
        if (meth->path == NULL)
            continue;
        l->reg[m] = grpc_server_register_method(l->server, meth->path, NULL,
                                                meth->client_streaming
                                                    ? GRPC_SRM_PAYLOAD_NONE
                                                    : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                                0);
    }
    for (unsigned i = 0; i < s->n_cq; i++)
        grpc_server_register_completion_queue(l->server, s->cqs[i].cq, NULL);
}

int bg__rpc_listen_open(bg_rpc_server *s, const grpc_channel_args *args, bg_err *err)
{
    const bg_rpc_opts *o = &s->opts;
    s->ls = calloc(o->n_listen, sizeof(*s->ls));
    if (s->ls == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    s->n_ls = o->n_listen;
    for (size_t i = 0; i < s->n_ls; i++) {
        s->ls[i].srv = s;
        s->ls[i].index = (int)i;
        s->ls[i].fd = -1;
    }
    mode_t mode = 0;
    gid_t gid = 0;
    int set_gid = 0;
    grpc_server_credentials *tls = NULL;
    if (parse_identities(s, err) != BG_OK || socket_owner(o, &mode, &gid, &set_gid, err) != BG_OK ||
        tls_creds(o, &tls, err) != BG_OK)
        return BG_EINVAL;
    grpc_server_credentials *plain = grpc_insecure_server_credentials_create();
    s->fd_creds = grpc_insecure_server_credentials_create();
    int rc = BG_OK, n_tcp = 0;
    for (size_t i = 0; i < s->n_ls && rc == BG_OK; i++) {
        bg__rpc_listener *l = &s->ls[i];
        if ((rc = parse_spec(l, o->listen[i], tls != NULL, err)) != BG_OK)
            break;
        make_server(s, l, args);
        rc = bind_listener(s, l, tls ? tls : plain, mode, gid, set_gid, err);
        n_tcp += l->kind != BG_LISTEN_UNIX;
        if (rc == BG_OK && l->bare)
            BG_WARN("rpc",
                    "--listen %s names no roles, so it serves every role: every caller that "
                    "can reach it can report outcomes (Observe) and Reload; give each caller "
                    "its own listener, e.g. --listen agent,health@%s",
                    o->listen[i], l->addr);
    }
    grpc_server_credentials_release(plain);
    if (tls != NULL)
        grpc_server_credentials_release(tls);
    if (rc == BG_OK && tls != NULL && n_tcp == 0)
        BG_WARN("rpc", "--tls-cert is set but no --listen is a TCP address: TLS is not used");
    return rc;
}

/* ----------------------------------------------------------------- accept */

/* Record what the kernel says of the connection on fd (loop thread). */
static int conn_put(bg_rpc_server *s, int fd, int listener, const struct ucred *uc)
{
    pthread_mutex_lock(&s->conn_mu);
    if ((size_t)fd >= s->n_conns) {
        size_t n = s->n_conns ? s->n_conns : 64;
        while (n <= (size_t)fd)
            n *= 2;
        bg__rpc_conn *c = realloc(s->conns, n * sizeof(*c));
        if (c == NULL) {
            pthread_mutex_unlock(&s->conn_mu);
            return BG_ENOMEM;
        }
        memset(c + s->n_conns, 0, (n - s->n_conns) * sizeof(*c));
        s->conns = c;
        s->n_conns = n;
    }
    s->conns[fd] = (bg__rpc_conn){
        .used = 1, .listener = listener, .uid = uc->uid, .gid = uc->gid, .pid = uc->pid};
    pthread_mutex_unlock(&s->conn_mu);
    return BG_OK;
}

static int conn_get(bg_rpc_server *s, int fd, bg__rpc_conn *out)
{
    pthread_mutex_lock(&s->conn_mu);
    int ok = fd >= 0 && (size_t)fd < s->n_conns && s->conns[fd].used;
    if (ok)
        *out = s->conns[fd];
    pthread_mutex_unlock(&s->conn_mu);
    return ok;
}

#define ACCEPT_RETRY_MS 100

static void on_accept(uv_poll_t *h, int status, int events);

static void resume_accepting(uv_timer_t *t)
{
    bg_rpc_server *s = t->data;
    for (size_t i = 0; i < s->n_ls; i++)
        if (s->ls[i].poll != NULL)
            uv_poll_start(s->ls[i].poll, UV_READABLE, on_accept);
}

/* Out of fds: a readable listening socket would wake the loop at once,
 * again and again; stop polling for ACCEPT_RETRY_MS instead. */
static void pause_accepting(bg_rpc_server *s, const bg__rpc_listener *l, int e)
{
    if (uv_is_active((uv_handle_t *)s->accept_retry))
        return;
    BG_WARN("rpc", "%s: cannot accept a connection (%s): pausing all unix listeners for %d ms",
            l->addr, strerror(e), ACCEPT_RETRY_MS);
    for (size_t i = 0; i < s->n_ls; i++)
        if (s->ls[i].poll != NULL)
            uv_poll_stop(s->ls[i].poll);
    uv_timer_start(s->accept_retry, resume_accepting, ACCEPT_RETRY_MS, 0);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    (void)events;
    bg__rpc_listener *l = h->data;
    bg_rpc_server *s = l->srv;
    if (status < 0) {
        BG_WARN("rpc", "%s: poll failed: %s", l->addr, uv_strerror(status));
        return;
    }
    for (int k = 0; k < 64 && l->fd >= 0; k++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(s, l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                BG_WARN("rpc", "%s: accept failed: %s", l->addr, strerror(errno));
            return;
        }
        struct ucred uc;
        socklen_t len = sizeof(uc);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 ||
            conn_put(s, fd, l->index, &uc) != BG_OK) {
            BG_WARN("rpc", "%s: cannot record the caller's credentials (%s): connection closed",
                    l->addr, strerror(errno));
            close(fd);
            continue;
        }
        BG_DEBUG("rpc", "%s: connection from uid %u gid %u pid %d", l->addr, (unsigned)uc.uid,
                 (unsigned)uc.gid, (int)uc.pid);
        grpc_server_add_channel_from_fd(l->server, fd, s->fd_creds); /* gRPC owns fd now */
    }
}

int bg__rpc_listen_accept_start(bg_rpc_server *s, bg_err *err)
{
    s->accept_retry = calloc(1, sizeof(*s->accept_retry));
    if (s->accept_retry == NULL)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
    uv_timer_init(bg_loop_uv(s->opts.loop), s->accept_retry);
    s->accept_retry->data = s;
    for (size_t i = 0; i < s->n_ls; i++) {
        bg__rpc_listener *l = &s->ls[i];
        if (l->kind != BG_LISTEN_UNIX)
            continue;
        l->poll = calloc(1, sizeof(*l->poll));
        if (l->poll == NULL)
            return bg_err_set(err, BG_ENOMEM, "rpc: out of memory");
        int rc = uv_poll_init(bg_loop_uv(s->opts.loop), l->poll, l->fd);
        if (rc == 0) {
            l->poll->data = l;
            rc = uv_poll_start(l->poll, UV_READABLE, on_accept);
        }
        if (rc != 0) {
            free(l->poll);
            l->poll = NULL;
            return bg_err_set(err, BG_EIO, "--listen %s: cannot watch the socket: %s", l->addr,
                              uv_strerror(rc));
        }
    }
    return BG_OK;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void bg__rpc_listen_stop_accepting(bg_rpc_server *s)
{
    if (s->accept_retry != NULL) {
        uv_timer_stop(s->accept_retry);
        uv_close((uv_handle_t *)s->accept_retry, free_handle);
        s->accept_retry = NULL;
    }
    for (size_t i = 0; i < s->n_ls; i++) {
        bg__rpc_listener *l = &s->ls[i];
        if (l->poll != NULL) {
            uv_poll_stop(l->poll);
            uv_close((uv_handle_t *)l->poll, free_handle);
            l->poll = NULL;
        }
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
    }
}

void bg__rpc_listen_close(bg_rpc_server *s)
{
    bg__rpc_listen_stop_accepting(s);
    for (size_t i = 0; i < s->n_ls; i++) {
        bg__rpc_listener *l = &s->ls[i];
        if (l->unlink_at_exit)
            unlink(l->addr + 5);
        free(l->addr);
        free(l->uids);
    }
    free(s->ls);
    s->ls = NULL;
    s->n_ls = 0;
    for (size_t i = 0; i < s->n_ids; i++)
        free(s->ids[i].id);
    free(s->ids);
    s->ids = NULL;
    s->n_ids = 0;
    free(s->conns);
    s->conns = NULL;
    s->n_conns = 0;
    if (s->fd_creds != NULL)
        grpc_server_credentials_release(s->fd_creds);
    s->fd_creds = NULL;
}

/* -------------------------------------------------------- who is calling */

/* A unix call's credentials, by its connection's fd ("fd:N"). */
static int unix_peer(bg__rpc_call *c)
{
    char *peer = grpc_call_get_peer(c->call);
    int fd = -1;
    if (peer != NULL && strncmp(peer, "fd:", 3) == 0)
        fd = atoi(peer + 3);
    gpr_free(peer);
    bg__rpc_conn conn;
    if (!conn_get(c->srv, fd, &conn) || conn.listener != c->listener)
        return 0;
    c->peer.has_cred = 1;
    c->peer.uid = conn.uid;
    c->peer.gid = conn.gid;
    c->peer.pid = conn.pid;
    snprintf(c->peer.identity, sizeof c->peer.identity, "uid:%u", (unsigned)conn.uid);
    return 1;
}

/* Under mTLS: the client certificate's SPIFFE ID, else its first URI SAN,
 * DNS SAN or CN (one shorter than bg_peer.identity, without NUL bytes);
 * none: "" (unknown). */
static void tls_peer(bg__rpc_call *c)
{
    static const char *const props[] = {GRPC_PEER_SPIFFE_ID_PROPERTY_NAME,
                                        GRPC_PEER_URI_PROPERTY_NAME, GRPC_PEER_DNS_PROPERTY_NAME,
                                        GRPC_X509_CN_PROPERTY_NAME};
    grpc_auth_context *ac = grpc_call_auth_context(c->call);
    if (ac == NULL)
        return;
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ac, props[i]);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        /* Whole or not at all: a cut or NUL-bearing name could equal
         * another identity (the identities map compares strings). */
        if (p != NULL && p->value != NULL && p->value_length > 0 &&
            p->value_length < sizeof c->peer.identity &&
            memchr(p->value, '\0', p->value_length) == NULL) {
            memcpy(c->peer.identity, p->value, p->value_length);
            c->peer.identity[p->value_length] = '\0';
            break;
        }
    }
    grpc_auth_context_release(ac);
}

/* The identities entry for id: its own, else "*"; NULL: not narrowed. */
static const bg__rpc_identity *identity_entry(const bg_rpc_server *s, const char *id)
{
    const bg__rpc_identity *star = NULL;
    for (size_t i = 0; i < s->n_ids; i++) {
        if (id[0] != '\0' && strcmp(s->ids[i].id, id) == 0)
            return &s->ids[i];
        if (strcmp(s->ids[i].id, "*") == 0)
            star = &s->ids[i];
    }
    return star;
}

/* "Evaluate" of "/bayesguard.v1.Guard/Evaluate". */
static const char *short_name(const bg__rpc_call *c)
{
    const char *p = bg__rpc_method_path(c);
    const char *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

grpc_status_code bg__rpc_authorize(bg__rpc_call *c, char *why, size_t cap)
{
    bg_rpc_server *s = c->srv;
    const bg__rpc_listener *l = &s->ls[c->listener];
    const bg__rpc_method *m = &bg__rpc_methods[c->method];
    memset(&c->peer, 0, offsetof(bg_peer, identity) + 1);
    if (l->kind == BG_LISTEN_UNIX) {
        if (!unix_peer(c)) {
            snprintf(why, cap,
                     "%s: no credentials recorded for this connection, so the caller "
                     "is unknown: reconnect",
                     l->addr);
            return GRPC_STATUS_PERMISSION_DENIED;
        }
        int allowed = l->n_uids == 0;
        for (size_t i = 0; i < l->n_uids && !allowed; i++)
            allowed = l->uids[i] == c->peer.uid;
        if (!allowed) {
            char list[256];
            size_t n = 0;
            list[0] = '\0';
            for (size_t i = 0; i < l->n_uids && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%u", i ? "," : "",
                                      (unsigned)l->uids[i]);
            snprintf(why, cap,
                     "uid %u may not call on %s: this listener admits uids %s only "
                     "(?uids=)",
                     (unsigned)c->peer.uid, l->addr, list);
            return GRPC_STATUS_PERMISSION_DENIED;
        }
    } else if (l->kind == BG_LISTEN_TLS && s->opts.tls_client_ca != NULL) {
        tls_peer(c);
    }
    if (m->role == BG_ROLE_NONE) /* unknown methods: UNIMPLEMENTED, whoever asks */
        return GRPC_STATUS_OK;
    if (m->role == BG_ROLE_BENCH) {
        if (s->opts.enable_bench)
            return GRPC_STATUS_OK;
        snprintf(why, cap,
                 "%s is the benchmark's empty RPC, off unless bayesguardd is started "
                 "with --enable-bench",
                 short_name(c));
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    unsigned bit = BG_ROLE_BIT(m->role);
    if (!(l->roles & bit)) {
        snprintf(why, cap, "%s needs the %s role; this listener (%s) serves %s", short_name(c),
                 bg__rpc_role_name(m->role), l->addr, l->roles_text);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    const bg__rpc_identity *e = s->n_ids ? identity_entry(s, c->peer.identity) : NULL;
    if (e != NULL && !(e->roles & bit)) {
        char allowed[64];
        roles_text(e->roles, allowed, sizeof allowed);
        snprintf(why, cap,
                 "%s needs the %s role; identity '%s' is allowed %s (identities entry "
                 "'%s')",
                 short_name(c), bg__rpc_role_name(m->role), c->peer.identity, allowed, e->id);
        return GRPC_STATUS_PERMISSION_DENIED;
    }
    return GRPC_STATUS_OK;
}
