/*
 * nn_tok.c — llama2.c tokenizer.bin: load, save, encode, decode (nn_tok.h).
 *
 * Why this shape: the encoder is llama2.c run.c's encode() step for step
 * (code points looked up first, byte fallback, then the greedy merge of the
 * best-scoring adjacent pair), so a file either program writes tokenizes
 * the same in both. Two differences that change no result: pieces carry
 * their length (a byte 0x00 piece works), and each adjacent pair's merge
 * candidate is cached and recomputed only beside a merge, so a merge costs
 * one scan of floats, not of hash lookups.
 *
 * Lookup is an open-addressing table keyed by SipHash-2-4 with a random key
 * per tokenizer (pieces come from a file, lookups from text: neither can
 * aim at a bucket). Invariants: every piece is 1..max_len bytes and NUL-
 * terminated in `bytes`; the table holds each distinct piece once, with
 * its first id; byte_id[b] is the token of byte b or -1.
 *
 * Threads: immutable after construction. Ownership: the tokenizer owns one
 * block of piece bytes, the offsets, scores and table.
 */
#include "nn/nn_tok.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_io.h"
#include "common/bg_siphash.h"

struct bg_nn_tok {
    int n, max_len;
    char *bytes;    /* pieces, each NUL-terminated */
    size_t *off;    /* [n + 1]: piece i is bytes[off[i] .. off[i+1] - 1) */
    float *scores;  /* [n] */
    int32_t *table; /* [cap]: id or -1 */
    size_t cap;     /* power of two, >= 2n */
    uint8_t key[BG_SIPHASH_KEY_BYTES];
    int byte_id[256];
    char byte_text[256]; /* decode of "<0xNN>": the byte itself */
};

static int piece_len(const bg_nn_tok *t, int id)
{
    return (int)(t->off[id + 1] - t->off[id] - 1);
}

static const char *piece(const bg_nn_tok *t, int id)
{
    return t->bytes + t->off[id];
}

int bg_nn_tok_lookup(const bg_nn_tok *t, const char *s, size_t len)
{
    if (len == 0 || len > (size_t)t->max_len)
        return -1;
    size_t mask = t->cap - 1;
    size_t h = (size_t)bg_siphash24(t->key, s, len) & mask;
    for (;; h = (h + 1) & mask) {
        int32_t id = t->table[h];
        if (id < 0)
            return -1;
        if ((size_t)piece_len(t, id) == len && memcmp(piece(t, id), s, len) == 0)
            return id;
    }
}

/* "<0xNN>" (NN two hex digits, as llama2.c writes them) -> NN, else -1. */
static int byte_piece(const char *s, int len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Builds the table and byte map once pieces are in place. */
static int index_pieces(bg_nn_tok *t, bg_err *err)
{
    t->cap = 16;
    while (t->cap < 2 * (size_t)t->n)
        t->cap <<= 1;
    t->table = malloc(t->cap * sizeof *t->table);
    if (!t->table || bg_siphash_key_random(t->key) != 0)
        return bg_err_set(err, BG_ENOMEM, "tokenizer: out of memory or no random key");
    memset(t->table, 0xff, t->cap * sizeof *t->table);
    size_t mask = t->cap - 1;
    for (int id = 0; id < t->n; id++) {
        int len = piece_len(t, id);
        if (bg_nn_tok_lookup(t, piece(t, id), (size_t)len) >= 0)
            continue; /* a duplicate: the first id keeps the piece */
        size_t h = (size_t)bg_siphash24(t->key, piece(t, id), (size_t)len) & mask;
        while (t->table[h] >= 0)
            h = (h + 1) & mask;
        t->table[h] = id;
    }
    for (int b = 0; b < 256; b++) {
        char hex[8], raw = (char)b;
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int id = bg_nn_tok_lookup(t, hex, 6);
        t->byte_id[b] = id >= 0 ? id : bg_nn_tok_lookup(t, &raw, 1);
        t->byte_text[b] = (char)b;
    }
    return BG_OK;
}

static bg_nn_tok *tok_alloc(int n, size_t nbytes)
{
    bg_nn_tok *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n = n;
    t->bytes = malloc(nbytes ? nbytes : 1);
    t->off = malloc(sizeof *t->off * ((size_t)n + 1));
    t->scores = malloc(sizeof *t->scores * (size_t)n);
    if (!t->bytes || !t->off || !t->scores) {
        bg_nn_tok_destroy(t);
        return NULL;
    }
    return t;
}

void bg_nn_tok_destroy(bg_nn_tok *t)
{
    if (!t)
        return;
    free(t->bytes);
    free(t->off);
    free(t->scores);
    free(t->table);
    free(t);
}

int bg_nn_tok_create(int n, const char *const *pieces, const int *lens, const float *scores,
                     bg_nn_tok **out, bg_err *err)
{
    *out = NULL;
    if (n < 3 || n > BG_NN_TOK_MAX_VOCAB)
        return bg_err_set(err, BG_EINVAL, "tokenizer: %d tokens; expected 3..%d", n,
                          BG_NN_TOK_MAX_VOCAB);
    size_t nbytes = 0;
    int max_len = 1;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > BG_NN_TOK_MAX_PIECE || !isfinite(scores[i]))
            return bg_err_set(err, BG_EINVAL,
                              "tokenizer: token %d has length %d and score %g; expected 1..%d "
                              "bytes and a finite score",
                              i, lens[i], (double)scores[i], BG_NN_TOK_MAX_PIECE);
        nbytes += (size_t)lens[i] + 1;
        max_len = lens[i] > max_len ? lens[i] : max_len;
    }
    bg_nn_tok *t = tok_alloc(n, nbytes);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "tokenizer: out of memory for %d tokens", n);
    t->max_len = max_len;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        t->off[i] = o;
        memcpy(t->bytes + o, pieces[i], (size_t)lens[i]);
        t->bytes[o + (size_t)lens[i]] = 0;
        o += (size_t)lens[i] + 1;
        t->scores[i] = scores[i];
    }
    t->off[n] = o;
    if (index_pieces(t, err) != BG_OK) {
        bg_nn_tok_destroy(t);
        return err ? err->code : BG_ENOMEM;
    }
    *out = t;
    return BG_OK;
}

static int32_t rd_i32(const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t s;
    memcpy(&s, &v, 4);
    return s;
}

int bg_nn_tok_parse(const void *data, size_t len, const char *name, bg_nn_tok **out, bg_err *err)
{
    const unsigned char *p = data;
    *out = NULL;
    if (len < 4)
        return bg_err_set(err, BG_EINVAL,
                          "tokenizer %s: %zu bytes, too short for the max token length header "
                          "(is it a llama2.c tokenizer.bin?)",
                          name, len);
    int32_t max_len = rd_i32(p);
    if (max_len < 1 || max_len > BG_NN_TOK_MAX_PIECE)
        return bg_err_set(err, BG_EINVAL,
                          "tokenizer %s: max token length %d; expected 1..%d (is it a llama2.c "
                          "tokenizer.bin?)",
                          name, (int)max_len, BG_NN_TOK_MAX_PIECE);
    /* First pass: validate and count, so the second cannot fail. */
    int n = 0;
    size_t pos = 4, nbytes = 0;
    while (pos < len) {
        if (n == BG_NN_TOK_MAX_VOCAB)
            return bg_err_set(err, BG_EINVAL, "tokenizer %s: more than %d tokens", name,
                              BG_NN_TOK_MAX_VOCAB);
        if (len - pos < 8)
            return bg_err_set(err, BG_EINVAL,
                              "tokenizer %s: token %d is truncated at byte %zu (score and length "
                              "need 8 bytes, %zu left)",
                              name, n, pos, len - pos);
        float score;
        memcpy(&score, p + pos, 4);
        int32_t l = rd_i32(p + pos + 4);
        if (!isfinite(score))
            return bg_err_set(err, BG_EINVAL, "tokenizer %s: token %d has a non-finite score", name,
                              n);
        if (l < 1 || l > max_len)
            return bg_err_set(err, BG_EINVAL,
                              "tokenizer %s: token %d has length %d; expected 1..%d (the max "
                              "token length)",
                              name, n, (int)l, (int)max_len);
        if (len - pos - 8 < (size_t)l)
            return bg_err_set(err, BG_EINVAL,
                              "tokenizer %s: token %d is truncated: %d bytes announced, %zu left",
                              name, n, (int)l, len - pos - 8);
        pos += 8 + (size_t)l;
        nbytes += (size_t)l + 1;
        n++;
    }
    if (n < 3)
        return bg_err_set(err, BG_EINVAL,
                          "tokenizer %s: %d tokens; expected at least 3 (<unk>, <s>, </s>)", name,
                          n);
    bg_nn_tok *t = tok_alloc(n, nbytes);
    if (!t)
        return bg_err_set(err, BG_ENOMEM, "tokenizer %s: out of memory for %d tokens", name, n);
    t->max_len = max_len;
    pos = 4;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(&t->scores[i], p + pos, 4);
        size_t l = (size_t)rd_i32(p + pos + 4);
        t->off[i] = o;
        memcpy(t->bytes + o, p + pos + 8, l);
        t->bytes[o + l] = 0;
        o += l + 1;
        pos += 8 + l;
    }
    t->off[n] = o;
    if (index_pieces(t, err) != BG_OK) {
        bg_nn_tok_destroy(t);
        return err ? err->code : BG_ENOMEM;
    }
    *out = t;
    return BG_OK;
}

int bg_nn_tok_load(const char *path, bg_nn_tok **out, bg_err *err)
{
    *out = NULL;
    char *buf;
    size_t len;
    if (bg_read_file(path, (size_t)BG_NN_TOK_MAX_VOCAB * (BG_NN_TOK_MAX_PIECE + 8) + 4, &buf,
                     &len) != 0)
        return bg_err_set(err, errno == EFBIG ? BG_EINVAL : BG_EIO, "tokenizer %s: cannot open: %s",
                          path,
                          errno == EFBIG ? "larger than any valid tokenizer" : strerror(errno));
    int rc = bg_nn_tok_parse(buf, len, path, out, err);
    free(buf);
    return rc;
}

static void wr_i32(unsigned char *p, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

int bg_nn_tok_save(const bg_nn_tok *t, const char *path, bg_err *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return bg_err_set(err, BG_EIO, "tokenizer %s: cannot create: %s", path, strerror(errno));
    unsigned char hdr[8];
    wr_i32(hdr, t->max_len);
    int ok = fwrite(hdr, 1, 4, f) == 4;
    for (int i = 0; i < t->n && ok; i++) {
        memcpy(hdr, &t->scores[i], 4);
        wr_i32(hdr + 4, piece_len(t, i));
        ok = fwrite(hdr, 1, 8, f) == 8 &&
             fwrite(piece(t, i), 1, (size_t)piece_len(t, i), f) == (size_t)piece_len(t, i);
    }
    if (fclose(f) != 0 || !ok)
        return bg_err_set(err, BG_EIO, "tokenizer %s: write failed: %s", path, strerror(errno));
    return BG_OK;
}

int bg_nn_tok_size(const bg_nn_tok *t)
{
    return t->n;
}

int bg_nn_tok_max_len(const bg_nn_tok *t)
{
    return t->max_len;
}

const char *bg_nn_tok_piece(const bg_nn_tok *t, int id, int *len)
{
    if (id < 0 || id >= t->n)
        return NULL;
    if (len)
        *len = piece_len(t, id);
    return piece(t, id);
}

float bg_nn_tok_score(const bg_nn_tok *t, int id)
{
    return id >= 0 && id < t->n ? t->scores[id] : 0.0f;
}

/* The id pieces a and b concatenate to, or -1. */
static int pair_id(const bg_nn_tok *t, int a, int b, char *buf)
{
    int la = piece_len(t, a), lb = piece_len(t, b);
    if (la + lb > t->max_len)
        return -1;
    memcpy(buf, piece(t, a), (size_t)la);
    memcpy(buf + la, piece(t, b), (size_t)lb);
    int id = bg_nn_tok_lookup(t, buf, (size_t)(la + lb));
    return id >= 0 && t->scores[id] > -1e10f ? id : -1;
}

/* Appends the token(s) of one code point (llama2.c: the piece, else its bytes). */
static int push_codepoint(const bg_nn_tok *t, const char *s, int len, size_t at, int32_t *ids,
                          int *n, bg_err *err)
{
    int id = bg_nn_tok_lookup(t, s, (size_t)len);
    if (id >= 0) {
        ids[(*n)++] = id;
        return BG_OK;
    }
    for (int i = 0; i < len; i++) {
        int b = t->byte_id[(unsigned char)s[i]];
        if (b < 0)
            return bg_err_set(err, BG_EINVAL,
                              "encode: byte 0x%02X at offset %zu has no token in this "
                              "vocabulary (no piece <0x%02X> nor the byte itself)",
                              (unsigned char)s[i], at + (size_t)i, (unsigned char)s[i]);
        ids[(*n)++] = b;
    }
    return BG_OK;
}

int bg_nn_tok_encode(const bg_nn_tok *t, const char *text, size_t len, int flags, int32_t *ids,
                     int cap, int *n, bg_err *err)
{
    *n = 0;
    if (len > BG_NN_TOK_MAX_TEXT)
        return bg_err_set(err, BG_EINVAL,
                          "encode: %zu bytes of text in one call; at most %d (split the text, "
                          "e.g. by line)",
                          len, BG_NN_TOK_MAX_TEXT);
    if (cap < 0 || (size_t)cap < len + 3)
        return bg_err_set(err, BG_EINVAL, "encode: room for %d ids; %zu bytes need up to %zu", cap,
                          len, len + 3);
    int cnt = 0, rc = BG_OK;
    if (flags & BG_NN_TOK_ADD_BOS)
        ids[cnt++] = BG_NN_TOK_BOS;
    int first = cnt;
    if (len > 0) {
        int sp = bg_nn_tok_lookup(t, " ", 1);
        if (sp >= 0)
            ids[cnt++] = sp;
    }
    /* Code points: a lead byte starts one; up to 3 continuation bytes join it. */
    char cp[4];
    int cl = 0;
    for (size_t i = 0; i < len && rc == BG_OK; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80)
            cl = 0;
        cp[cl++] = (char)c;
        if (i + 1 < len && ((unsigned char)text[i + 1] & 0xC0) == 0x80 && cl < 4)
            continue;
        rc = push_codepoint(t, cp, cl, i + 1 - (size_t)cl, ids, &cnt, err);
        cl = 0;
    }
    if (rc != BG_OK)
        return rc;
    /* Greedy merges: the best-scoring pair, leftmost on a tie. pid[i] caches
     * the merge of (i, i+1). */
    int m = cnt - first;
    int32_t *tk = ids + first;
    int32_t *pid = m > 1 ? malloc(sizeof *pid * (size_t)m) : NULL;
    char *buf = malloc((size_t)t->max_len * 2 + 1);
    if ((m > 1 && !pid) || !buf) {
        free(pid);
        free(buf);
        return bg_err_set(err, BG_ENOMEM, "encode: out of memory");
    }
    for (int i = 0; i + 1 < m; i++)
        pid[i] = pair_id(t, tk[i], tk[i + 1], buf);
    for (;;) {
        float best = -1e10f;
        int at = -1;
        for (int i = 0; i + 1 < m; i++)
            if (pid[i] >= 0 && t->scores[pid[i]] > best) {
                best = t->scores[pid[i]];
                at = i;
            }
        if (at < 0)
            break;
        tk[at] = pid[at];
        memmove(tk + at + 1, tk + at + 2, sizeof *tk * (size_t)(m - at - 2));
        if (m - at - 3 > 0)
            memmove(pid + at + 1, pid + at + 2, sizeof *pid * (size_t)(m - at - 3));
        m--;
        if (at > 0)
            pid[at - 1] = pair_id(t, tk[at - 1], tk[at], buf);
        if (at + 1 < m)
            pid[at] = pair_id(t, tk[at], tk[at + 1], buf);
    }
    free(pid);
    free(buf);
    cnt = first + m;
    if (flags & BG_NN_TOK_ADD_EOS)
        ids[cnt++] = BG_NN_TOK_EOS;
    *n = cnt;
    return BG_OK;
}

const char *bg_nn_tok_decode_one(const bg_nn_tok *t, int prev, int id, size_t *len)
{
    if (id < 0 || id >= t->n)
        return NULL;
    if (id == BG_NN_TOK_BOS || id == BG_NN_TOK_EOS) {
        *len = 0;
        return "";
    }
    const char *s = piece(t, id);
    int l = piece_len(t, id);
    int b = byte_piece(s, l);
    if (b >= 0) {
        *len = 1;
        return &t->byte_text[b];
    }
    if (prev == BG_NN_TOK_BOS && s[0] == ' ') {
        s++;
        l--;
    }
    *len = (size_t)l;
    return s;
}

int bg_nn_tok_decode(const bg_nn_tok *t, const int32_t *ids, int n, char **text, size_t *len,
                     bg_err *err)
{
    *text = NULL;
    *len = 0;
    size_t total = 0, l;
    for (int i = 0; i < n; i++) {
        if (!bg_nn_tok_decode_one(t, i ? ids[i - 1] : -1, ids[i], &l))
            return bg_err_set(err, BG_EINVAL,
                              "decode: token %d (position %d) is outside the vocabulary 0..%d",
                              (int)ids[i], i, t->n - 1);
        total += l;
    }
    char *out = malloc(total + 1);
    if (!out)
        return bg_err_set(err, BG_ENOMEM, "decode: out of memory for %zu bytes", total);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const char *s = bg_nn_tok_decode_one(t, i ? ids[i - 1] : -1, ids[i], &l);
        memcpy(out + o, s, l);
        o += l;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return BG_OK;
}
