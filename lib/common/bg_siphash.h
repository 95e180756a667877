/*
 * bg_siphash.h — SipHash-2-4 (Aumasson & Bernstein, 2012): a keyed 64-bit
 * hash for tables whose keys an adversary chooses (session ids, caller
 * identities). With a secret random key an attacker cannot compute which
 * keys collide, so no input can turn a bucket chain into a linear list.
 *
 * The output is the reference implementation's, read as a little-endian
 * u64 (the paper's test vectors: tests/engine/test_siphash.c). Incremental
 * form (init / update / final) so several strings hash as one message
 * without copying them together.
 *
 * Threads: pure functions; a bg_siphash state belongs to one caller.
 */
#ifndef BG_SIPHASH_H
#define BG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define BG_SIPHASH_KEY_BYTES 16

typedef struct bg_siphash {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;  /* pending bytes, little-endian, low first */
    size_t ntail;   /* 0..7 */
    uint64_t total; /* bytes hashed so far (its low byte ends the message) */
} bg_siphash;

void bg_siphash_init(bg_siphash *h, const uint8_t key[BG_SIPHASH_KEY_BYTES]);
void bg_siphash_update(bg_siphash *h, const void *data, size_t len);
uint64_t bg_siphash_final(bg_siphash *h);

/* One-shot SipHash-2-4 of data[0..len). */
uint64_t bg_siphash24(const uint8_t key[BG_SIPHASH_KEY_BYTES], const void *data, size_t len);

/* Fill key with random bytes from getrandom(2): BG_OK, or BG_EIO. */
int bg_siphash_key_random(uint8_t key[BG_SIPHASH_KEY_BYTES]);

#endif
