/* bg_io.c — file-descriptor helpers (see bg_io.h). */
#include "common/bg_io.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int bg_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* a non-blocking descriptor (a stdout inherited that way):
                 * wait until it takes more */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, -1) >= 0 || errno == EINTR)
                    continue;
            }
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int bg_read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    int e = b ? 0 : ENOMEM;
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (n > max) {
            e = EFBIG;
            break;
        }
        char *nb = realloc(b, cap * 2 + 1);
        if (!nb) {
            e = ENOMEM;
            break;
        }
        b = nb;
        cap *= 2;
    }
    if (!e && ferror(f))
        e = EIO;
    if (!e && n > max)
        e = EFBIG;
    fclose(f);
    if (e) {
        free(b);
        errno = e;
        return -1;
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}
