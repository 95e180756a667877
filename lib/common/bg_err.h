/*
 * bg_err.h — the error convention every module follows.
 *
 * A function that can fail returns an int status (BG_OK or a negative
 * BG_E* code) and writes a human message into a caller-owned bg_err. The
 * message names the thing (file, plugin, key, policy:line), what was wrong
 * and what is expected. The caller owns the bg_err; callees only write it.
 * Codes are one X-macro table so names, numbers and gRPC mappings never
 * drift apart.
 */
#ifndef BG_ERR_H
#define BG_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* X(name, value, description) */
#define BG_ERR_CODES(X)                                                                            \
    X(BG_OK, 0, "ok")                                                                              \
    X(BG_EINVAL, -1, "invalid argument")                                                           \
    X(BG_ENOMEM, -2, "out of memory")                                                              \
    X(BG_ENOTFOUND, -3, "not found")                                                               \
    X(BG_EIO, -4, "i/o error")                                                                     \
    X(BG_EABI, -5, "incompatible plugin ABI")                                                      \
    X(BG_ELIMIT, -6, "resource limit reached")                                                     \
    X(BG_EUNAVAIL, -7, "unavailable")                                                              \
    X(BG_EINTERNAL, -8, "internal error")                                                          \
    X(BG_ECONFIG, -9, "invalid configuration")                                                     \
    X(BG_EUNSUPPORTED, -10, "unsupported")                                                         \
    X(BG_EPERM, -11, "permission denied")                                                          \
    X(BG_EEXIST, -12, "already exists")

enum bg_status {
#define BG_ERR_ENUM(name, value, desc) name = value,
    BG_ERR_CODES(BG_ERR_ENUM)
#undef BG_ERR_ENUM
};

#define BG_ERR_MSG_MAX 1024

typedef struct bg_err {
    int code;                 /* last BG_E* code written, BG_OK when none */
    char msg[BG_ERR_MSG_MAX]; /* NUL-terminated message, "" when none */
    const char *field;        /* the input at fault, a static name a caller can map to
                                 its own (an option struct's member: "act_budget"), NULL
                                 when the error names none; set only by bg_err_set_field */
} bg_err;

/* Reset to "no error" (no field). err may be NULL (then nothing happens). */
void bg_err_clear(bg_err *err);

/* Format a message into err (may be NULL; its field becomes NULL) and
 * return code, so callers can write
 * `return bg_err_set(err, BG_EINVAL, "policy %s: ...", name);`. */
int bg_err_set(bg_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int bg_err_vset(bg_err *err, int code, const char *fmt, va_list ap);

/* bg_err_set, and the input at fault: field, a static string (it is kept,
 * not copied). A caller that takes the input from a flag or a key of its
 * own maps the name to it instead of matching words of the message. */
int bg_err_set_field(bg_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prepend context ("file.yaml: ") to an existing message, keeping its code. */
int bg_err_prefix(bg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The symbolic name ("BG_EINVAL") of a code, "BG_E?" for an unknown one. */
const char *bg_err_name(int code);

#endif
