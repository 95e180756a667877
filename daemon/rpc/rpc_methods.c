/*
 * rpc_methods.c — the method table: BG_RPC_METHODS (rpc_priv.h) as
 * data, one row per method with its path, its flags and the service hooks
 * that serve it, and the method names for registration, logs and metrics.
 *
 * Why a file of its own: rpc_call.c (dispatch, stream completions) and
 * rpc_server.c (registration, drain) reach the services only through this
 * table, and the services call down into rpc_call.c; holding the table
 * here keeps every file's calls pointing one way (see rpc_priv.h).
 *
 * Invariants: immutable (const, built by the compiler); every row has a
 * start hook; only BG_M_UNKNOWN has no path. Any thread.
 */
#include <stddef.h>

#include "rpc/rpc_priv.h"

const bg__rpc_method bg__rpc_methods[BG_M__COUNT] = {
#define BG_RPC_METHOD_ROW(id, path, role, client_streaming, while_draining, start, on_recv,        \
                          on_send, on_drain, on_deadline)                                          \
    [id] = {path,    role,    client_streaming, while_draining, start,                             \
            on_recv, on_send, on_drain,         on_deadline},
    BG_RPC_METHODS(BG_RPC_METHOD_ROW)
#undef BG_RPC_METHOD_ROW
};

const char *bg__rpc_method_name(int method)
{
    return method >= 0 && method < BG_M__COUNT ? bg__rpc_methods[method].path : NULL;
}

const char *bg__rpc_method_path(const bg__rpc_call *c)
{
    const char *path = bg__rpc_method_name(c->method);
    return path != NULL ? path : "(unknown method)";
}

const char *bg__rpc_role_name(int role)
{
    static const char *const names[BG_ROLE__COUNT] = {
#define BG_RPC_ROLE_NAME(id, name) [id] = name,
        BG_RPC_ROLES(BG_RPC_ROLE_NAME)
#undef BG_RPC_ROLE_NAME
    };
    return role >= 0 && role < BG_ROLE__COUNT ? names[role] : "?";
}
