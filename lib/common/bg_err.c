/* bg_err.c — caller-owned error messages (see bg_err.h). */
#include "common/bg_err.h"

#include <stdio.h>
#include <string.h>

void bg_err_clear(bg_err *err)
{
    if (err) {
        err->code = BG_OK;
        err->msg[0] = '\0';
        err->field = NULL;
    }
}

int bg_err_vset(bg_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        err->field = NULL;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int bg_err_set_field(bg_err *err, int code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_err_vset(err, code, fmt, ap);
    va_end(ap);
    if (err)
        err->field = field;
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
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    if (n < 0)
        return err->code;
    size_t hl = (size_t)n < sizeof head ? (size_t)n : sizeof head - 1;
    size_t tl = strlen(err->msg);
    if (hl + tl > sizeof err->msg - 1)
        tl = sizeof err->msg - 1 - hl;
    memmove(err->msg + hl, err->msg, tl);
    memcpy(err->msg, head, hl);
    err->msg[hl + tl] = '\0';
    return err->code;
}

const char *bg_err_name(int code)
{
    switch (code) {
#define BG_ERR_CASE(name, value, desc)                                                             \
    case value:                                                                                    \
        return #name;
        BG_ERR_CODES(BG_ERR_CASE)
#undef BG_ERR_CASE
    }
    return "BG_E?";
}
