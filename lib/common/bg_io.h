/* bg_io.h — small file helpers. Any thread. */
#ifndef BG_IO_H
#define BG_IO_H

#include <stddef.h>

/* Write all n bytes, retrying short writes and EINTR, and waiting (poll)
 * while a non-blocking fd is full. 0, or -1 with errno set by the write
 * that failed (bytes before it may have been written). */
int bg_write_all(int fd, const void *p, size_t n);

/* Reads the whole file at `path` into a new buffer (caller frees) with a
 * NUL after its *len bytes. 0, or -1 with errno: the open's or read's,
 * EFBIG when the file has more than max bytes, ENOMEM. */
int bg_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
