/* bg_io.h — small file-descriptor helpers. Any thread. */
#ifndef BG_IO_H
#define BG_IO_H

#include <stddef.h>

/* Write all n bytes, retrying short writes and EINTR, and waiting (poll)
 * while a non-blocking fd is full. 0, or -1 with errno set by the write
 * that failed (bytes before it may have been written). */
int bg_write_all(int fd, const void *p, size_t n);

#endif
