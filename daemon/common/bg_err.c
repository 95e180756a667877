/* bg_err.c — caller-owned error messages (see bg_err.h). */
#include "common/bg_err.h"

#include <stdio.h>
#include <string.h>

void bg_err_clear(bg_err *err)
{
    if (err) {
        err->code = BG_OK;
        err->msg[0] = '\0';
    }
}

int bg_err_vset(bg_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int bg_err_set(bg_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int bg_err_prefix(bg_err *err, const char *fmt, ...)
{
    if (!err)
        return BG_OK;
    char head[BG_ERR_MSG_MAX];
    char tail[BG_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(tail, err->msg, sizeof tail);
    snprintf(err->msg, sizeof err->msg, "%s%s", head, tail);
    return err->code;
}

const char *bg_err_name(int code)
{
    switch (code) {
#define BG_ERR_CASE(name, value, desc)                                                            \
    case value:                                                                                  \
        return #name;
        BG_ERR_CODES(BG_ERR_CASE)
#undef BG_ERR_CASE
    }
    return "BG_E?";
}
