/*
 * test_obs_store_crc.c — the observation log's record checksum is zlib's
 * crc32 now; logs written by the hand-written CRC before must still
 * replay, so the two must agree on every input. The reference below is
 * that hand-written CRC-32 (IEEE 802.3: reflected polynomial 0xedb88320,
 * init and xorout 0xffffffff), kept as the oracle:
 *   1. the standard check value, CRC-32("123456789") = 0xcbf43926;
 *   2. the empty input (0) and single bytes 0..255;
 *   3. 2,000 random buffers of 0..4,096 bytes (fixed seed), also at odd
 *      offsets (zlib takes aligned words where it can).
 */
#include <stdint.h>

#include "bg_test.h"
#include "engine/obs_store.h"

static uint32_t ref_crc32(const void *buf, size_t len)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    const uint8_t *p = buf;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

int main(void)
{
    CHECK_INT(bg__crc32("123456789", 9), 0xcbf43926u);
    CHECK_INT(ref_crc32("123456789", 9), 0xcbf43926u);
    CHECK_INT(bg__crc32("", 0), 0);
    for (unsigned b = 0; b < 256; b++) {
        uint8_t x = (uint8_t)b;
        CHECK(bg__crc32(&x, 1) == ref_crc32(&x, 1), "byte %u", b);
    }
    static uint8_t buf[4096 + 8];
    for (int t = 0; t < 2000; t++) {
        size_t len = next() % 4097, off = next() % 8;
        for (size_t i = 0; i < len; i++)
            buf[off + i] = (uint8_t)next();
        uint32_t got = bg__crc32(buf + off, len), want = ref_crc32(buf + off, len);
        CHECK(got == want, "buffer %d (%zu bytes at offset %zu): zlib 0x%08x, reference 0x%08x", t,
              len, off, got, want);
    }
    printf("CRC-32: check value, 256 single bytes and 2000 random buffers agree\n");
    CHECK_DONE("test_obs_store_crc");
}
