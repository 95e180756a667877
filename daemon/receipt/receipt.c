/*
 * receipt.c — outcome receipts: key files, mint, verify. Contract and token
 * layout: receipt.h.
 *
 * The keyed HMAC context is made once per key (EVP_MAC_init with the key)
 * and duplicated per call, so a call pays for the message's blocks and
 * not for the key schedule or the algorithm fetch; SHA-256 is fetched once
 * too. Threads: the key and its contexts are read-only after load.
 */
#include "receipt/receipt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_io.h"

#define TAG_BYTES 32
#define ARGS_DIGEST_BYTES 16
#define DOMAIN "bayesguard receipt v1"

struct bg_receipt_key {
    EVP_MAC *mac;
    EVP_MAC_CTX *keyed; /* initialised with the key; duplicated per call */
    EVP_MD *sha256;
};

/* ------------------------------------------------------------------ keys */

int bg_receipt_key_from(const uint8_t *bytes, size_t len, bg_receipt_key **out, bg_err *err)
{
    *out = NULL;
    if (len < BG_RECEIPT_KEY_MIN || len > BG_RECEIPT_KEY_MAX)
        return bg_err_set(err, BG_EINVAL, "receipt key: %zu bytes; expected %d to %d", len,
                          BG_RECEIPT_KEY_MIN, BG_RECEIPT_KEY_MAX);
    bg_receipt_key *k = calloc(1, sizeof *k);
    if (!k)
        return bg_err_set(err, BG_ENOMEM, "receipt key: out of memory");
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->keyed = k->mac ? EVP_MAC_CTX_new(k->mac) : NULL;
    k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!k->keyed || !k->sha256 || !EVP_MAC_init(k->keyed, bytes, len, params)) {
        bg_receipt_key_destroy(k);
        return bg_err_set(err, BG_EINTERNAL,
                          "receipt key: OpenSSL has no HMAC-SHA256 (libcrypto 3 with the "
                          "default provider is needed)");
    }
    *out = k;
    return BG_OK;
}

int bg_receipt_key_random(bg_receipt_key **out, bg_err *err)
{
    uint8_t b[BG_RECEIPT_KEY_MIN];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return bg_err_set(err, BG_EIO, "receipt key: getrandom failed: %s", strerror(errno));
    int rc = bg_receipt_key_from(b, sizeof b, out, err);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}

/* Make path with a fresh random key: O_EXCL, so two daemons starting at
 * once cannot both write one; 0600 from the first byte. */
static int key_create(const char *path, bg_err *err)
{
    uint8_t b[BG_RECEIPT_KEY_MIN];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return bg_err_set(err, BG_EIO, "receipt key: getrandom failed: %s", strerror(errno));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(b, sizeof b);
        if (errno == EEXIST)
            return BG_OK; /* another process made it first: read theirs */
        return bg_err_set(err, BG_EIO, "receipt key file %s: cannot create it: %s", path,
                          strerror(errno));
    }
    int ok = bg_write_all(fd, b, sizeof b) == 0 && fsync(fd) == 0;
    int e = errno;
    OPENSSL_cleanse(b, sizeof b);
    close(fd);
    if (!ok) {
        unlink(path);
        return bg_err_set(err, BG_EIO, "receipt key file %s: cannot write it: %s", path,
                          strerror(e));
    }
    return BG_OK;
}

int bg_receipt_key_load(const char *path, int create, bg_receipt_key **out, int *created,
                        bg_err *err)
{
    *out = NULL;
    if (created)
        *created = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (!create)
            return bg_err_set(err, BG_ENOTFOUND,
                              "receipt key file %s does not exist: create it with "
                              "'head -c 32 /dev/urandom > %s && chmod 600 %s', or leave "
                              "--receipt-key-file out to use <data-dir>/" BG_RECEIPT_KEY_FILE,
                              path, path, path);
        int rc = key_create(path, err);
        if (rc != BG_OK)
            return rc;
        if (created)
            *created = 1;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return bg_err_set(err, BG_EIO, "receipt key file %s: cannot open it: %s", path,
                          strerror(errno));
    struct stat st;
    int rc = BG_OK;
    if (fstat(fd, &st) != 0)
        rc = bg_err_set(err, BG_EIO, "receipt key file %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = bg_err_set(err, BG_ECONFIG, "receipt key file %s is not a regular file", path);
    else if (st.st_mode & 077)
        rc = bg_err_set(err, BG_ECONFIG,
                        "receipt key file %s has mode %04o: group and others may not read a "
                        "secret key; run 'chmod 600 %s'",
                        path, (unsigned)(st.st_mode & 07777), path);
    else if (st.st_size < BG_RECEIPT_KEY_MIN || st.st_size > BG_RECEIPT_KEY_MAX)
        rc = bg_err_set(err, BG_ECONFIG,
                        "receipt key file %s has %lld bytes; expected %d to %d random bytes", path,
                        (long long)st.st_size, BG_RECEIPT_KEY_MIN, BG_RECEIPT_KEY_MAX);
    uint8_t b[BG_RECEIPT_KEY_MAX];
    ssize_t n = 0;
    if (rc == BG_OK) {
        n = read(fd, b, (size_t)st.st_size);
        if (n != (ssize_t)st.st_size)
            rc = bg_err_set(err, BG_EIO, "receipt key file %s: short read", path);
    }
    close(fd);
    if (rc == BG_OK)
        rc = bg_receipt_key_from(b, (size_t)n, out, err);
    OPENSSL_cleanse(b, sizeof b);
    return rc;
}

void bg_receipt_key_destroy(bg_receipt_key *k)
{
    if (!k)
        return;
    EVP_MAC_CTX_free(k->keyed);
    EVP_MAC_free(k->mac);
    EVP_MD_free(k->sha256);
    free(k);
}

/* ----------------------------------------------------------- encoding */

static uint64_t fnv64(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int args_digest(const bg_receipt_key *k, const bg_receipt_claim *c,
                       uint8_t out[ARGS_DIGEST_BYTES])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    const char *a = c->args ? c->args : "";
    if (!EVP_Digest(a, c->args ? c->args_len : 0, md, &n, k->sha256, NULL))
        return BG_EINTERNAL;
    memcpy(out, md, ARGS_DIGEST_BYTES);
    return BG_OK;
}

static int mac_str(EVP_MAC_CTX *m, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    uint8_t len[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    return EVP_MAC_update(m, len, 4) && (n == 0 || EVP_MAC_update(m, (const uint8_t *)s, n));
}

/* tag = HMAC(key, DOMAIN NUL | body | policy | session | tool). */
static int tag_of(const bg_receipt_key *k, const uint8_t *body, size_t n, const bg_receipt_claim *c,
                  uint8_t tag[TAG_BYTES])
{
    EVP_MAC_CTX *m = EVP_MAC_CTX_dup(k->keyed);
    size_t out = 0;
    int ok = m && EVP_MAC_update(m, (const uint8_t *)DOMAIN, sizeof DOMAIN) &&
             EVP_MAC_update(m, body, n) && mac_str(m, c->policy) && mac_str(m, c->session) &&
             mac_str(m, c->tool) && EVP_MAC_final(m, tag, &out, TAG_BYTES) && out == TAG_BYTES;
    EVP_MAC_CTX_free(m);
    return ok ? BG_OK : BG_EINTERNAL;
}

size_t bg_receipt_mint(const bg_receipt_key *k, const bg_receipt_claim *c, uint8_t *out, size_t cap)
{
    size_t nid = c->decision_id ? strlen(c->decision_id) : 0;
    size_t nrev = c->revision ? strlen(c->revision) : 0;
    size_t body = 12 + 1 + nid + 1 + nrev + 24 + ARGS_DIGEST_BYTES;
    if (nid > 255 || nrev > 255 || body + TAG_BYTES > cap)
        return 0;
    uint8_t *p = out;
    *p++ = BG_RECEIPT_VERSION;
    *p++ = (uint8_t)c->decision;
    *p++ = (uint8_t)c->flags;
    *p++ = 0;
    put_u64(p, (uint64_t)c->expiry_unix_ms);
    p += 8;
    *p++ = (uint8_t)nid;
    memcpy(p, c->decision_id, nid);
    p += nid;
    *p++ = (uint8_t)nrev;
    memcpy(p, c->revision, nrev);
    p += nrev;
    put_u64(p, fnv64(c->policy));
    put_u64(p + 8, fnv64(c->session));
    put_u64(p + 16, fnv64(c->tool));
    p += 24;
    if (args_digest(k, c, p) != BG_OK)
        return 0;
    p += ARGS_DIGEST_BYTES;
    if (tag_of(k, out, body, c, p) != BG_OK)
        return 0;
    return body + TAG_BYTES;
}

/* ------------------------------------------------------------- verify */

const char *bg_receipt_verdict_name(bg_receipt_verdict v)
{
    switch (v) {
#define BG_RECEIPT_CASE(name, text)                                                                \
    case name:                                                                                     \
        return text;
        BG_RECEIPT_VERDICTS(BG_RECEIPT_CASE)
#undef BG_RECEIPT_CASE
    }
    return "?";
}

static bg_receipt_verdict refuse(bg_err *err, bg_receipt_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bg_receipt_verdict refuse(bg_err *err, bg_receipt_verdict v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_err_vset(err, BG_EPERM, fmt, ap);
    va_end(ap);
    return v;
}

bg_receipt_verdict bg_receipt_verify(const bg_receipt_key *k, const uint8_t *tok, size_t len,
                                     const bg_receipt_claim *c, int64_t now_unix_ms,
                                     bg_receipt_info *info, bg_err *err)
{
    if (tok == NULL || len == 0)
        return refuse(err, BG_RECEIPT_MISSING,
                      "no receipt: policy %s accepts outcomes only with the receipt of the "
                      "Verdict that allowed the action (send Verdict.receipt in "
                      "ObserveRequest.receipt)",
                      c->policy);
    /* Parse: every length checked before it is used. */
    const uint8_t *p = tok, *end = tok + len;
    if (len < 12 + 2 + 24 + ARGS_DIGEST_BYTES + TAG_BYTES || p[0] != BG_RECEIPT_VERSION)
        return refuse(err, BG_RECEIPT_MALFORMED,
                      "the receipt is malformed (%zu bytes, version %u; expected version %d): "
                      "send Verdict.receipt unchanged",
                      len, (unsigned)p[0], BG_RECEIPT_VERSION);
    int decision = p[1];
    unsigned flags = p[2];
    int64_t expiry = (int64_t)get_u64(p + 4);
    p += 12;
    size_t nid = *p++;
    if ((size_t)(end - p) < nid + 1)
        goto malformed;
    const uint8_t *id = p;
    p += nid;
    size_t nrev = *p++;
    if ((size_t)(end - p) != nrev + 24 + ARGS_DIGEST_BYTES + TAG_BYTES)
        goto malformed;
    const uint8_t *rev = p;
    p += nrev;
    const uint8_t *dig = p;
    size_t body = (size_t)(p + 24 + ARGS_DIGEST_BYTES - tok);

    /* Which claim differs, for the message (the tag below decides). */
    uint8_t ad[ARGS_DIGEST_BYTES];
    if (args_digest(k, c, ad) != BG_OK)
        return refuse(err, BG_RECEIPT_FORGED, "receipt check failed (SHA-256 unavailable)");
    bg_receipt_verdict other = BG_RECEIPT_OK;
    if (get_u64(dig) != fnv64(c->policy))
        other = BG_RECEIPT_OTHER_POLICY;
    else if (get_u64(dig + 8) != fnv64(c->session))
        other = BG_RECEIPT_OTHER_SESSION;
    else if (get_u64(dig + 16) != fnv64(c->tool))
        other = BG_RECEIPT_OTHER_TOOL;
    else if (CRYPTO_memcmp(dig + 24, ad, ARGS_DIGEST_BYTES) != 0)
        other = BG_RECEIPT_OTHER_ARGS;
    if (other != BG_RECEIPT_OK)
        return refuse(err, other,
                      "the receipt is %s: it was given for decision %.*s, not for policy %s, "
                      "session '%s', tool '%s' with these arguments; send the receipt of the "
                      "Verdict for this action",
                      bg_receipt_verdict_name(other), (int)nid, (const char *)id, c->policy,
                      c->session ? c->session : "", c->tool ? c->tool : "");
    uint8_t tag[TAG_BYTES];
    if (tag_of(k, tok, body, c, tag) != BG_OK)
        return refuse(err, BG_RECEIPT_FORGED, "receipt check failed (HMAC unavailable)");
    if (CRYPTO_memcmp(tag, tok + body, TAG_BYTES) != 0)
        return refuse(err, BG_RECEIPT_FORGED,
                      "the receipt is not authentic (altered, or minted with another key — "
                      "another daemon, or before the receipt key changed)");
    if (expiry <= now_unix_ms)
        return refuse(err, BG_RECEIPT_EXPIRED,
                      "the receipt of decision %.*s expired %lld ms ago (see "
                      "--receipt-ttl-s): report outcomes sooner",
                      (int)nid, (const char *)id, (long long)(now_unix_ms - expiry));
    if (info) {
        info->decision = decision;
        info->flags = flags;
        info->expiry_unix_ms = expiry;
        memcpy(info->decision_id, id, nid);
        info->decision_id[nid] = '\0';
        memcpy(info->revision, rev, nrev);
        info->revision[nrev] = '\0';
    }
    return BG_RECEIPT_OK;
malformed:
    return refuse(err, BG_RECEIPT_MALFORMED,
                  "the receipt is malformed (%zu bytes, lengths do not add up): send "
                  "Verdict.receipt unchanged",
                  len);
}

int64_t bg_receipt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
