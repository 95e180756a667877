/*
 * bg_siphash.c — SipHash-2-4, incremental. Contract: bg_siphash.h.
 */
#include "common/bg_siphash.h"

#include <errno.h>
#include <sys/random.h>

#include "common/bg_err.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static void round_(bg_siphash *h)
{
    h->v0 += h->v1;
    h->v1 = ROTL(h->v1, 13);
    h->v1 ^= h->v0;
    h->v0 = ROTL(h->v0, 32);
    h->v2 += h->v3;
    h->v3 = ROTL(h->v3, 16);
    h->v3 ^= h->v2;
    h->v0 += h->v3;
    h->v3 = ROTL(h->v3, 21);
    h->v3 ^= h->v0;
    h->v2 += h->v1;
    h->v1 = ROTL(h->v1, 17);
    h->v1 ^= h->v2;
    h->v2 = ROTL(h->v2, 32);
}

/* One message word, c = 2 compression rounds. */
static void block(bg_siphash *h, uint64_t m)
{
    h->v3 ^= m;
    round_(h);
    round_(h);
    h->v0 ^= m;
}

void bg_siphash_init(bg_siphash *h, const uint8_t key[BG_SIPHASH_KEY_BYTES])
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    h->v0 = 0x736f6d6570736575ull ^ k0;
    h->v1 = 0x646f72616e646f6dull ^ k1;
    h->v2 = 0x6c7967656e657261ull ^ k0;
    h->v3 = 0x7465646279746573ull ^ k1;
    h->tail = 0;
    h->ntail = 0;
    h->total = 0;
}

void bg_siphash_update(bg_siphash *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    h->total += len;
    while (len > 0 && h->ntail > 0) { /* finish a pending word first */
        h->tail |= (uint64_t)*p++ << (8 * h->ntail);
        len--;
        if (++h->ntail == 8) {
            block(h, h->tail);
            h->tail = 0;
            h->ntail = 0;
        }
    }
    for (; len >= 8; p += 8, len -= 8)
        block(h, le64(p));
    for (; len > 0; len--)
        h->tail |= (uint64_t)*p++ << (8 * h->ntail++);
}

uint64_t bg_siphash_final(bg_siphash *h)
{
    block(h, h->tail | (h->total & 0xff) << 56);
    h->v2 ^= 0xff;
    for (int i = 0; i < 4; i++) /* d = 4 finalisation rounds */
        round_(h);
    return h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}

uint64_t bg_siphash24(const uint8_t key[BG_SIPHASH_KEY_BYTES], const void *data, size_t len)
{
    bg_siphash h;
    bg_siphash_init(&h, key);
    bg_siphash_update(&h, data, len);
    return bg_siphash_final(&h);
}

int bg_siphash_key_random(uint8_t key[BG_SIPHASH_KEY_BYTES])
{
    size_t got = 0;
    while (got < BG_SIPHASH_KEY_BYTES) {
        ssize_t r = getrandom(key + got, BG_SIPHASH_KEY_BYTES - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return BG_EIO;
        got += (size_t)r;
    }
    return BG_OK;
}
