/*
 * bg_assert.c — the one place an invariant's failure is reported.
 */
#include "common/bg_assert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void bg__panic(const char *file, int line, const char *cond, const char *fmt, ...)
{
    char buf[1024];
    int n;
    if (cond)
        n = snprintf(buf, sizeof buf, "bayesguard: %s:%d: invariant failed: %s: ", file, line,
                     cond);
    else
        n = snprintf(buf, sizeof buf, "bayesguard: %s:%d: unreachable state: ", file, line);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof buf - 2) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(buf + n, sizeof buf - 2 - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += (size_t)m < sizeof buf - 2 - (size_t)n ? m : (int)(sizeof buf - 3 - (size_t)n);
    }
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    abort();
}
