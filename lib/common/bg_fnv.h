/*
 * bg_fnv.h — FNV-1a, 64 bits: a fast, unkeyed hash for digests and tables
 * whose keys nobody hostile chooses (or that a MAC checked first). Tables
 * keyed by what a client sends use bg_siphash.h instead.
 *
 *   h = bg_fnv64(BG_FNV64_OFFSET, p, n)      bytes
 *   h = bg_fnv64_cstr(h, s)                  the bytes of s, without its
 *                                            NUL; NULL hashes nothing
 * Chaining (passing one result as the next h) hashes the concatenation.
 */
#ifndef BG_FNV_H
#define BG_FNV_H

#include <stddef.h>
#include <stdint.h>

#define BG_FNV64_OFFSET 1469598103934665603ull
#define BG_FNV64_PRIME 1099511628211ull

static inline uint64_t bg_fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * BG_FNV64_PRIME;
    return h;
}

static inline uint64_t bg_fnv64_cstr(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * BG_FNV64_PRIME;
    return h;
}

#endif
