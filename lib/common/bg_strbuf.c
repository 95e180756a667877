/*
 * bg_strbuf.c — growable text buffer and JSON string escaping (see
 * bg_strbuf.h). Growth doubles, so n appends cost O(total) copies.
 */
#include "common/bg_strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bg_strbuf_init(bg_strbuf *b)
{
    memset(b, 0, sizeof *b);
}

void bg_strbuf_init_on(bg_strbuf *b, char *mem, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->p = mem;
    b->cap = cap;
    if (cap)
        mem[0] = '\0';
}

void bg_strbuf_close(bg_strbuf *b)
{
    if (b->heap)
        free(b->p);
    memset(b, 0, sizeof *b);
}

void bg_strbuf_reset(bg_strbuf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->cap)
        b->p[0] = '\0';
}

/* Room for `more` bytes of text plus the NUL; 0 on success. */
static int reserve(bg_strbuf *b, size_t more)
{
    if (b->failed)
        return -1;
    if (more < b->cap && b->len < b->cap - more)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= more) {
        if (cap > ((size_t)-1) / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    if (!b->heap && b->len)
        memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = cap;
    b->heap = 1;
    return 0;
}

void bg_strbuf_put(bg_strbuf *b, const void *p, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void bg_strbuf_puts(bg_strbuf *b, const char *s)
{
    bg_strbuf_put(b, s, strlen(s));
}

void bg_strbuf_putc(bg_strbuf *b, char c)
{
    bg_strbuf_put(b, &c, 1);
}

void bg_strbuf_printf(bg_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        bg_strbuf_put(b, small, (size_t)n);
        return;
    }
    if (reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bg_strbuf_put_u64(bg_strbuf *b, unsigned long long v)
{
    char d[20];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    bg_strbuf_put(b, d + i, sizeof d - i);
}

/* Length of the valid UTF-8 sequence at s[0..n), 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

void bg_strbuf_json_chars(bg_strbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char ctl[8];
        size_t adv = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            snprintf(ctl, sizeof ctl, "\\u%04x", c);
            esc = ctl;
        } else if (c >= 0x80 && (adv = utf8_len(u + i, n - i)) == 0) {
            esc = "\\ufffd";
            adv = 1;
        }
        if (esc) {
            bg_strbuf_put(b, u + run, i - run);
            bg_strbuf_puts(b, esc);
            run = i + adv;
        }
        i += adv;
    }
    bg_strbuf_put(b, u + run, n - run);
}

void bg_strbuf_json_string(bg_strbuf *b, const char *s, size_t n)
{
    bg_strbuf_putc(b, '"');
    bg_strbuf_json_chars(b, s, n);
    bg_strbuf_putc(b, '"');
}

void bg_strbuf_json_cstr(bg_strbuf *b, const char *s)
{
    bg_strbuf_json_string(b, s, s ? strlen(s) : 0);
}

void bg_strbuf_json_double(bg_strbuf *b, double v)
{
    if (isfinite(v))
        bg_strbuf_printf(b, "%.17g", v);
    else
        bg_strbuf_puts(b, "null");
}
