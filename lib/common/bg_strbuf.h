/*
 * bg_strbuf.h — a growable byte buffer for building text (JSON lines,
 * exposition text) without a printf-size guess at every step.
 *
 * A buffer may start on caller storage (bg_strbuf_init_on: a stack array,
 * so the common case allocates nothing) and moves to the heap only when
 * it outgrows it. Out of memory is sticky: later appends do nothing and
 * `failed` stays set, so a builder checks once at the end instead of after
 * every append. The text is kept NUL-terminated whenever cap > 0.
 *
 * Threads: a buffer belongs to one thread at a time. Ownership: the buffer
 * owns `p` once it is on the heap; bg_strbuf_close frees it.
 */
#ifndef BG_STRBUF_H
#define BG_STRBUF_H

#include <stddef.h>

typedef struct bg_strbuf {
    char *p;    /* the text, NUL-terminated (NULL while cap == 0) */
    size_t len; /* bytes of text, without the NUL */
    size_t cap; /* bytes of storage */
    int heap;   /* p was malloc'd here */
    int failed; /* an append ran out of memory; the text is incomplete */
} bg_strbuf;

/* Empty, no storage yet. */
void bg_strbuf_init(bg_strbuf *b);
/* Empty, on caller storage `mem` of `cap` bytes (borrowed until close or
 * until the buffer outgrows it). */
void bg_strbuf_init_on(bg_strbuf *b, char *mem, size_t cap);
void bg_strbuf_close(bg_strbuf *b);
/* Forget the text, keep the storage. */
void bg_strbuf_reset(bg_strbuf *b);

void bg_strbuf_put(bg_strbuf *b, const void *p, size_t n);
void bg_strbuf_puts(bg_strbuf *b, const char *s);
void bg_strbuf_putc(bg_strbuf *b, char c);
void bg_strbuf_printf(bg_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* v in decimal, without printf. */
void bg_strbuf_put_u64(bg_strbuf *b, unsigned long long v);

/* JSON values. A string is quoted and escaped; bytes that are not valid
 * UTF-8 become U+FFFD, so the line always parses. s == NULL writes "".
 * A double that is not finite is written as null (JSON has no NaN). */
void bg_strbuf_json_string(bg_strbuf *b, const char *s, size_t n);
/* The same escaping without the quotes (a string written in parts). */
void bg_strbuf_json_chars(bg_strbuf *b, const char *s, size_t n);
void bg_strbuf_json_cstr(bg_strbuf *b, const char *s);
void bg_strbuf_json_double(bg_strbuf *b, double v);

#endif
