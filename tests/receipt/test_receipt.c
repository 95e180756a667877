/*
 * test_receipt.c — outcome receipts without a daemon: daemon/receipt (mint,
 * verify, key files), the engine's set of used receipt ids, and the
 * version-2 observation record that carries a receipt into the log.
 *
 * What it shows: a receipt verifies only for what it was minted for; every
 * single-byte change of a token, another key, another policy, session
 * keying (spec.session), tool or argument string, and a passed expiry are each refused with their
 * own verdict; it carries the session key it was minted in (any change of those bytes is not
 * authentic, and the Observe's own session plays no part); key files are made 0600 and
 * group/world-readable ones are refused; a used id is refused until released or expired; a receipt
 * written into an observation record comes back from it.
 */
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "engine/observation.h"
#include "engine/receipt_used.h"
#include "receipt/receipt.h"

#define NOW 1800000000000LL /* a fixed "now", Unix ms */

static bg_receipt_claim claim(void)
{
    static const char args[] = "{\"cmd\":\"ls\"}";
    return (bg_receipt_claim){.policy = "shell",
                              .revision = "d1ebb847f7d6aa",
                              .session = "s1",
                              .session_spec = "context.session",
                              .tool = "shell_exec",
                              .args = args,
                              .args_len = sizeof args - 1,
                              .decision = 1,
                              .decision_id = "91209b28d90b6349-0000000000000001",
                              .expiry_unix_ms = NOW + 60000};
}

static bg_receipt_key *key_of(uint8_t fill)
{
    uint8_t b[32];
    memset(b, fill, sizeof b);
    bg_receipt_key *k = NULL;
    bg_err err;
    CHECK(bg_receipt_key_from(b, sizeof b, &k, &err) == BG_OK, "%s", err.msg);
    return k;
}

static void test_round_trip_and_refusals(void)
{
    bg_receipt_key *k = key_of(7), *other = key_of(8);
    bg_receipt_claim c = claim();
    uint8_t tok[BG_RECEIPT_MAX];
    size_t n = bg_receipt_mint(k, &c, tok, sizeof tok);
    CHECK(n > 0 && n <= BG_RECEIPT_MAX, "minted %zu bytes", n);
    bg_receipt_info info;
    bg_err err;
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, NOW, &info, &err), BG_RECEIPT_OK);
    CHECK_STR(info.decision_id, c.decision_id);
    CHECK_STR(info.revision, c.revision);
    CHECK_INT(info.expiry_unix_ms, c.expiry_unix_ms);
    CHECK_INT(info.decision, 1);
    CHECK_INT(info.flags, 0);
    /* The revision is carried, not compared: a reload does not void it. */
    bg_receipt_claim r = c;
    r.revision = "another";
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, &info, &err), BG_RECEIPT_OK);

    /* Each claim the Observe makes, changed. */
    r = c;
    r.policy = "email";
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, NULL, &err), BG_RECEIPT_OTHER_POLICY);
    CHECK(err.code == BG_EPERM && strstr(err.msg, "for another policy"), "%s", err.msg);
    /* Another keying (a reload changed spec.session): the key would mean
     * another session, so the receipt is void. */
    r = c;
    r.session_spec = "peer.identity/context.session";
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, NULL, &err), BG_RECEIPT_OTHER_KEYING);
    CHECK(strstr(err.msg, "another session keying") && strstr(err.msg, "spec.session"), "%s",
          err.msg);
    /* The session is the token's: the Observe's claim of one is ignored. */
    CHECK_STR(info.session, "s1");
    r = c;
    r.session = "s2";
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, &info, &err), BG_RECEIPT_OK);
    CHECK_STR(info.session, "s1");
    r = c;
    r.tool = "shell_run";
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, NULL, &err), BG_RECEIPT_OTHER_TOOL);
    r = c;
    r.args = "{\"cmd\":\"rm -rf /\"}";
    r.args_len = strlen(r.args);
    CHECK_INT(bg_receipt_verify(k, tok, n, &r, NOW, NULL, &err), BG_RECEIPT_OTHER_ARGS);
    /* Time: accepted until its expiry, refused from it on. */
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, c.expiry_unix_ms - 1, NULL, &err), BG_RECEIPT_OK);
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, c.expiry_unix_ms, NULL, &err), BG_RECEIPT_EXPIRED);
    CHECK(strstr(err.msg, "expired") != NULL, "%s", err.msg);
    /* Another key. */
    CHECK_INT(bg_receipt_verify(other, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_FORGED);
    CHECK(strstr(err.msg, "not authentic") != NULL, "%s", err.msg);
    /* Missing, truncated, padded. */
    CHECK_INT(bg_receipt_verify(k, NULL, 0, &c, NOW, NULL, &err), BG_RECEIPT_MISSING);
    for (size_t len = 1; len < n; len++)
        CHECK(bg_receipt_verify(k, tok, len, &c, NOW, NULL, &err) != BG_RECEIPT_OK, "len %zu", len);
    uint8_t longer[BG_RECEIPT_MAX + 1];
    memcpy(longer, tok, n);
    longer[n] = 0;
    CHECK(bg_receipt_verify(k, longer, n + 1, &c, NOW, NULL, &err) != BG_RECEIPT_OK);
    /* Every bit of every byte matters (the expiry, the id, the tag...). */
    int refused = 0;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) {
            tok[i] ^= (uint8_t)(1u << b);
            refused += bg_receipt_verify(k, tok, n, &c, NOW, NULL, &err) != BG_RECEIPT_OK;
            tok[i] ^= (uint8_t)(1u << b);
        }
    CHECK_INT(refused, (long long)n * 8);
    /* A longer expiry written over the token is not authentic. */
    tok[11] ^= 0x40;
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_FORGED);
    tok[11] ^= 0x40;
    /* Deterministic for the same key and claim; the decision id changes it. */
    uint8_t tok2[BG_RECEIPT_MAX];
    CHECK(bg_receipt_mint(k, &c, tok2, sizeof tok2) == n && memcmp(tok, tok2, n) == 0);
    r = c;
    r.decision_id = "91209b28d90b6349-0000000000000002";
    CHECK(bg_receipt_mint(k, &r, tok2, sizeof tok2) == n && memcmp(tok, tok2, n) != 0);
    /* Too small a buffer, too long an id: nothing minted. */
    CHECK_INT(bg_receipt_mint(k, &c, tok2, n - 1), 0);
    char longid[300];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    r = c;
    r.decision_id = longid;
    CHECK_INT(bg_receipt_mint(k, &r, tok2, sizeof tok2), 0);
    bg_receipt_key_destroy(k);
    bg_receipt_key_destroy(other);
}

/* Offset of the session key's u16 length in a version-2 token. */
static size_t session_at(const uint8_t *tok)
{
    size_t nid = tok[12];
    return 12 + 1 + nid + 1 + tok[13 + nid];
}

/* The token carries the session key it was minted in — a two-level
 * child key here, and one as long as allowed — and the tag covers it:
 * flipped bits in its bytes, or another key of the same or another length
 * written over it (what a reporter wanting another session would do), are
 * refused; a key too long for a receipt mints none. */
static void test_session_carried(void)
{
    bg_receipt_key *k = key_of(7);
    bg_receipt_claim c = claim();
    c.session = "uid:1000|conv-42";
    uint8_t tok[BG_RECEIPT_MAX];
    size_t n = bg_receipt_mint(k, &c, tok, sizeof tok);
    CHECK(n > 0);
    size_t at = session_at(tok);
    CHECK_INT(tok[at] | tok[at + 1] << 8, (long long)strlen(c.session));
    CHECK(memcmp(tok + at + 2, c.session, strlen(c.session)) == 0);
    bg_receipt_info info;
    bg_err err;
    bg_receipt_claim other = c;
    other.session = "uid:0|root";
    CHECK_INT(bg_receipt_verify(k, tok, n, &other, NOW, &info, &err), BG_RECEIPT_OK);
    CHECK_STR(info.session, "uid:1000|conv-42");
    /* Every bit of the length and of the key's bytes. */
    for (size_t i = at; i < at + 2 + strlen(c.session); i++)
        for (int b = 0; b < 8; b++) {
            tok[i] ^= (uint8_t)(1u << b);
            bg_receipt_verdict v = bg_receipt_verify(k, tok, n, &c, NOW, &info, &err);
            CHECK(v == (i < at + 2 ? BG_RECEIPT_MALFORMED : BG_RECEIPT_FORGED),
                  "byte %zu bit %d: %s", i, b, bg_receipt_verdict_name(v));
            tok[i] ^= (uint8_t)(1u << b);
        }
    /* Another key of the same length written over it: not authentic. */
    memcpy(tok + at + 2, "uid:1001|conv-42", strlen(c.session));
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_FORGED);
    CHECK(strstr(err.msg, "not authentic") != NULL, "%s", err.msg);
    /* ... and of another length, the token re-laid around it. */
    bg_receipt_claim mine = c;
    mine.session = "uid:1001|x";
    uint8_t tok2[BG_RECEIPT_MAX];
    size_t n2 = bg_receipt_mint(k, &mine, tok2, sizeof tok2);
    uint8_t forged[BG_RECEIPT_MAX];
    size_t a2 = session_at(tok2), ns = strlen(mine.session), nc = strlen(c.session);
    CHECK(bg_receipt_mint(k, &c, tok, sizeof tok) == n);
    memcpy(forged, tok, at);
    forged[at] = (uint8_t)ns;
    forged[at + 1] = 0;
    memcpy(forged + at + 2, mine.session, ns);
    memcpy(forged + at + 2 + ns, tok + at + 2 + nc, n - at - 2 - nc);
    size_t nf = n - nc + ns;
    CHECK_INT(a2, at);
    CHECK_INT(nf, n2);
    CHECK_INT(bg_receipt_verify(k, forged, nf, &c, NOW, NULL, &err), BG_RECEIPT_FORGED);
    /* A NUL inside the key: no mint writes one. */
    tok[at + 2 + 3] = 0;
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_MALFORMED);
    /* The longest key fits in BG_RECEIPT_MAX with the longest ids; one
     * byte more mints nothing. */
    static char longest[BG_RECEIPT_SESSION_MAX + 2], id[256], rev[256];
    memset(longest, 's', BG_RECEIPT_SESSION_MAX);
    memset(id, 'i', 255);
    memset(rev, 'r', 255);
    c.session = longest;
    c.decision_id = id;
    c.revision = rev;
    n = bg_receipt_mint(k, &c, tok, sizeof tok);
    CHECK_INT(n, BG_RECEIPT_MAX);
    CHECK_INT(bg_receipt_verify(k, tok, n, &c, NOW, &info, &err), BG_RECEIPT_OK);
    CHECK_INT(strlen(info.session), BG_RECEIPT_SESSION_MAX);
    longest[BG_RECEIPT_SESSION_MAX] = 's';
    CHECK_INT(bg_receipt_mint(k, &c, tok, sizeof tok), 0);
    bg_receipt_key_destroy(k);
}

static void put_str(uint8_t *m, size_t *n, const char *s)
{
    size_t len = strlen(s);
    for (int i = 0; i < 4; i++)
        m[(*n)++] = (uint8_t)(len >> (8 * i));
    memcpy(m + *n, s, len);
    *n += len;
}

/* The tag is HMAC-SHA256 as OpenSSL's EVP_MAC computes it, for a key of
 * one block or less and for a longer one (hashed first, RFC 2104). */
static void test_tag_is_hmac_sha256(void)
{
    for (size_t klen = 32; klen <= 100; klen += 68) {
        uint8_t kb[100];
        for (size_t i = 0; i < klen; i++)
            kb[i] = (uint8_t)(i * 7 + 1);
        bg_receipt_key *k = NULL;
        bg_err err;
        CHECK(bg_receipt_key_from(kb, klen, &k, &err) == BG_OK, "%s", err.msg);
        bg_receipt_claim c = claim();
        uint8_t tok[BG_RECEIPT_MAX];
        size_t n = bg_receipt_mint(k, &c, tok, sizeof tok);
        CHECK(n > 32);
        static const char domain[] = "bayesguard receipt v2";
        uint8_t msg[2 * BG_RECEIPT_MAX];
        size_t m = 0;
        memcpy(msg, domain, sizeof domain); /* with its NUL */
        m += sizeof domain;
        memcpy(msg + m, tok, n - 32);
        m += n - 32;
        put_str(msg, &m, c.policy); /* the session is in the token's bytes */
        put_str(msg, &m, c.session_spec);
        put_str(msg, &m, c.tool);
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        uint8_t want[32];
        size_t wl = 0;
        CHECK(EVP_MAC_init(ctx, kb, klen, params) && EVP_MAC_update(ctx, msg, m) &&
              EVP_MAC_final(ctx, want, &wl, sizeof want) && wl == 32);
        CHECK(memcmp(tok + n - 32, want, 32) == 0, "key of %zu bytes: tag differs from EVP_MAC",
              klen);
        EVP_MAC_CTX_free(ctx);
        EVP_MAC_free(mac);
        bg_receipt_key_destroy(k);
    }
}

static void test_key_files(void)
{
    char dir[] = "/tmp/bg-receipt-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/receipt.key", dir);
    bg_receipt_key *k1 = NULL, *k2 = NULL;
    bg_err err;
    int created = 0;
    /* Absent and not to be created: BG_ENOTFOUND naming the fix. */
    CHECK_INT(bg_receipt_key_load(path, 0, &k1, &created, &err), BG_ENOTFOUND);
    CHECK(strstr(err.msg, "does not exist") && strstr(err.msg, "chmod 600"), "%s", err.msg);
    /* Created 0600 with 32 bytes, whatever the umask. */
    mode_t old = umask(0);
    CHECK(bg_receipt_key_load(path, 1, &k1, &created, &err) == BG_OK, "%s", err.msg);
    umask(old);
    CHECK_INT(created, 1);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(st.st_size, 32);
    /* Loaded again: the same key (a receipt of one verifies with the other). */
    CHECK(bg_receipt_key_load(path, 1, &k2, &created, &err) == BG_OK, "%s", err.msg);
    CHECK_INT(created, 0);
    bg_receipt_claim c = claim();
    uint8_t tok[BG_RECEIPT_MAX];
    size_t n = bg_receipt_mint(k1, &c, tok, sizeof tok);
    CHECK_INT(bg_receipt_verify(k2, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_OK);
    bg_receipt_key_destroy(k2);
    k2 = NULL;
    /* Group or world readable: refused, naming the mode and the fix. */
    CHECK(chmod(path, 0644) == 0);
    CHECK_INT(bg_receipt_key_load(path, 1, &k2, NULL, &err), BG_ECONFIG);
    CHECK(strstr(err.msg, "0644") && strstr(err.msg, "chmod 600"), "%s", err.msg);
    CHECK(chmod(path, 0640) == 0);
    CHECK_INT(bg_receipt_key_load(path, 1, &k2, NULL, &err), BG_ECONFIG);
    /* Too short. */
    CHECK(chmod(path, 0600) == 0);
    CHECK(truncate(path, 16) == 0);
    CHECK_INT(bg_receipt_key_load(path, 1, &k2, NULL, &err), BG_ECONFIG);
    CHECK(strstr(err.msg, "16 bytes") != NULL, "%s", err.msg);
    /* A directory. */
    CHECK_INT(bg_receipt_key_load(dir, 1, &k2, NULL, &err), BG_ECONFIG);
    CHECK(k2 == NULL);
    bg_receipt_key_destroy(k1);
    unlink(path);
    rmdir(dir);
    /* In memory: two random keys differ. */
    CHECK(bg_receipt_key_random(&k1, &err) == BG_OK && bg_receipt_key_random(&k2, &err) == BG_OK);
    n = bg_receipt_mint(k1, &c, tok, sizeof tok);
    CHECK_INT(bg_receipt_verify(k2, tok, n, &c, NOW, NULL, &err), BG_RECEIPT_FORGED);
    bg_receipt_key_destroy(k1);
    bg_receipt_key_destroy(k2);
}

static void test_used_set(void)
{
    bg__receipt_used *u = NULL;
    CHECK(bg__receipt_used_create(&u) == BG_OK);
    CHECK_INT(bg__receipt_used_claim(u, "a", NOW + 10, NOW), BG_OK);
    CHECK_INT(bg__receipt_used_claim(u, "a", NOW + 10, NOW), BG_EEXIST);
    bg__receipt_used_release(u, "a");
    CHECK_INT(bg__receipt_used_claim(u, "a", NOW + 10, NOW), BG_OK);
    /* 100,000 ids: all remembered while unexpired, with the table grown. */
    char id[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        CHECK_INT(bg__receipt_used_claim(u, id, NOW + 1000 + i, NOW), BG_OK);
    }
    CHECK_INT(bg__receipt_used_count(u), 100001);
    for (int i = 0; i < 100000; i += 997) {
        snprintf(id, sizeof id, "id-%d", i);
        CHECK_INT(bg__receipt_used_claim(u, id, NOW + 1000 + i, NOW), BG_EEXIST);
    }
    /* Later, claims sweep the expired ones: the set stays bounded by what
     * is unexpired (here ids live 10 ms, one claimed per ms). */
    for (int i = 0; i < 300000; i++) {
        snprintf(id, sizeof id, "late-%d", i);
        CHECK_INT(bg__receipt_used_claim(u, id, NOW + 200010 + i, NOW + 200000 + i), BG_OK);
    }
    size_t left = bg__receipt_used_count(u);
    CHECK(left <= 2048, "the expired ids were not swept: %zu left", left);
    bg__receipt_used_destroy(u);
}

static void test_log_record(void)
{
    bg_action a = {.id = "call_1", .tool = "shell_exec", .arguments_json = "{}"};
    bg_observation o = {.action = a, .harmed = 1};
    bg_obs_receipt rc = {.expiry_unix_ms = NOW + 5, .flags = BG_RECEIPT_APPROVED};
    snprintf(rc.id, sizeof rc.id, "%s", "boot-0000000000000007");
    uint8_t *buf = NULL;
    size_t n = bg__obs_encode_receipt("shell", "s1", &o, &rc, &buf);
    CHECK(n > 0 && buf[0] == 2);
    char *guard = NULL, *session = NULL;
    bg_observation *back = NULL;
    bg_obs_receipt got;
    int has = 0;
    bg_err err;
    CHECK(bg__obs_decode_receipt(buf, n, &guard, &session, &back, &got, &has, &err) == BG_OK, "%s",
          err.msg);
    CHECK_INT(has, 1);
    CHECK_STR(got.id, rc.id);
    CHECK_INT(got.expiry_unix_ms, rc.expiry_unix_ms);
    CHECK_INT(got.flags, BG_RECEIPT_APPROVED);
    CHECK_STR(back->action.tool, "shell_exec");
    CHECK_INT(back->harmed, 1);
    free(guard);
    free(session);
    free(back);
    /* Every cut of a version-2 record is refused, never read short. */
    for (size_t len = 0; len < n; len++)
        CHECK(bg__obs_decode_receipt(buf, len, &guard, &session, &back, &got, &has, &err) != BG_OK,
              "len %zu", len);
    free(buf);
    /* Without a receipt: version 1, as before. */
    n = bg__obs_encode("shell", "s1", &o, &buf);
    CHECK(n > 0 && buf[0] == 1);
    CHECK(bg__obs_decode_receipt(buf, n, &guard, &session, &back, &got, &has, &err) == BG_OK);
    CHECK_INT(has, 0);
    free(guard);
    free(session);
    free(back);
    free(buf);
}

int main(void)
{
    test_round_trip_and_refusals();
    test_session_carried();
    test_tag_is_hmac_sha256();
    test_key_files();
    test_used_set();
    test_log_record();
    CHECK_DONE("test_receipt");
}
