/* bg_io.c — file-descriptor helpers (see bg_io.h). */
#include "common/bg_io.h"

#include <errno.h>
#include <poll.h>
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
