/*
 * test_nn_tok.c — the llama2.c tokenizer (lib/nn/nn_tok.c) on the real
 * Llama 2 vocabulary (../shared/models/llama2-tokenizer.bin, 32,000
 * tokens): encodings checked against llama2.c run.c's encode() algorithm
 * (the ids below were computed by a line-for-line transcription of it, and
 * "Hello world" -> 1 15043 3186 is sentencepiece's own answer), decode
 * round trips over UTF-8, invalid UTF-8 and control bytes, byte-fallback
 * pieces <0xNN>, the leading-space convention, save -> identical bytes,
 * and every way a file can be corrupt.
 */
#include <math.h>
#include <sys/stat.h>

#include "nn/nn_tok.h"
#include "nn_test.h"

static char g_tokpath[1024];

static void check_encode(const bg_nn_tok *t, const char *text, size_t len, const int32_t *want,
                         int n_want)
{
    int32_t ids[256];
    int n = 0;
    bg_err err;
    CHECK(bg_nn_tok_encode(t, text, len, BG_NN_TOK_ADD_BOS, ids, 256, &n, &err) == BG_OK,
          "encode '%s': %s", text, err.msg);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    if (!same) {
        printf("encode '%s': got", text);
        for (int i = 0; i < n; i++)
            printf(" %d", (int)ids[i]);
        printf("\n");
    }
    CHECK(same, "encode '%s' differs from llama2.c's algorithm", text);
    char *back = NULL;
    size_t blen = 0;
    CHECK(bg_nn_tok_decode(t, ids, n, &back, &blen, &err) == BG_OK, "decode: %s", err.msg);
    CHECK(blen == len && memcmp(back, text, len) == 0, "round trip of '%s' gave '%s'", text, back);
    free(back);
}

static void round_trip(const bg_nn_tok *t, const char *text, size_t len)
{
    int32_t *ids = malloc(sizeof *ids * (len + 3));
    int n = 0;
    bg_err err;
    CHECK(bg_nn_tok_encode(t, text, len, BG_NN_TOK_ADD_BOS | BG_NN_TOK_ADD_EOS, ids, (int)len + 3,
                           &n, &err) == BG_OK,
          "encode: %s", err.msg);
    CHECK(n >= 2 && ids[0] == BG_NN_TOK_BOS && ids[n - 1] == BG_NN_TOK_EOS);
    for (int i = 0; i < n; i++)
        CHECK(ids[i] >= 0 && ids[i] < bg_nn_tok_size(t));
    char *back = NULL;
    size_t blen = 0;
    CHECK(bg_nn_tok_decode(t, ids, n, &back, &blen, &err) == BG_OK, "decode: %s", err.msg);
    CHECK(blen == len && memcmp(back, text, len) == 0, "round trip of %zu bytes differs", len);
    free(back);
    free(ids);
}

/* A file image with a header and entries; returns the tokenizer status. */
static int parse_bytes(const void *b, size_t n, bg_err *err)
{
    bg_nn_tok *t = NULL;
    int rc = bg_nn_tok_parse(b, n, "bad.bin", &t, err);
    CHECK((rc == BG_OK) == (t != NULL));
    bg_nn_tok_destroy(t);
    return rc;
}

static void corrupt_files(const unsigned char *good, size_t len)
{
    bg_err err;
    unsigned char *b = malloc(len);
    static const struct {
        const char *what;
        size_t cut;
        const char *needle;
    } cuts[] = {
        {"empty", 0, "too short"},
        {"header only minus one", 3, "too short"},
        {"header only", 4, "expected at least 3"},
        {"mid score", 6, "truncated"},
        {"mid bytes", 4 + 8 + 2, "truncated: 5 bytes announced"},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(parse_bytes(good, cuts[i].cut, &err) == BG_EINVAL && strstr(err.msg, cuts[i].needle),
              "%s: '%s' (want '%s')", cuts[i].what, err.msg, cuts[i].needle);
        printf("refused (%s): %s\n", cuts[i].what, err.msg);
    }
    /* the whole file minus its last byte */
    CHECK(parse_bytes(good, len - 1, &err) == BG_EINVAL && strstr(err.msg, "token 31999"), "%s",
          err.msg);
    /* max token length 0 and huge */
    memcpy(b, good, len);
    b[0] = 0;
    CHECK(parse_bytes(b, len, &err) == BG_EINVAL && strstr(err.msg, "max token length 0"), "%s",
          err.msg);
    b[3] = 0x7f;
    CHECK(parse_bytes(b, len, &err) == BG_EINVAL && strstr(err.msg, "max token length"), "%s",
          err.msg);
    /* token 0's length: 0, negative, over the max */
    static const int32_t lens[] = {0, -5, 28, 0x7fffffff};
    for (size_t i = 0; i < 4; i++) {
        memcpy(b, good, len);
        memcpy(b + 8, &lens[i], 4);
        CHECK(parse_bytes(b, len, &err) == BG_EINVAL && strstr(err.msg, "token 0 has length"),
              "len %d: %s", (int)lens[i], err.msg);
    }
    /* NaN and infinite scores */
    float bad[2] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        memcpy(b, good, len);
        memcpy(b + 4, &bad[i], 4);
        CHECK(parse_bytes(b, len, &err) == BG_EINVAL && strstr(err.msg, "non-finite score"), "%s",
              err.msg);
    }
    free(b);
    bg_nn_tok *t = NULL;
    CHECK(bg_nn_tok_load("/nonexistent/tokenizer.bin", &t, &err) == BG_EIO &&
          strstr(err.msg, "cannot open") && t == NULL);
}

static void small_vocab(void)
{
    /* No byte tokens, no " ": a byte without a token is an error naming it. */
    const char *p[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    int l[] = {5, 3, 4, 1, 1, 2};
    float s[] = {0, 0, 0, 0, 0, -1};
    bg_nn_tok *t = NULL;
    bg_err err;
    CHECK(bg_nn_tok_create(6, p, l, s, &t, &err) == BG_OK, "%s", err.msg);
    int32_t ids[16];
    int n;
    CHECK(bg_nn_tok_encode(t, "abab", 4, 0, ids, 16, &n, &err) == BG_OK && n == 2 && ids[0] == 5 &&
          ids[1] == 5);
    CHECK(bg_nn_tok_encode(t, "abx", 3, 0, ids, 16, &n, &err) == BG_EINVAL &&
              strstr(err.msg, "byte 0x78 at offset 2") && n == 0,
          "%s", err.msg);
    CHECK(bg_nn_tok_encode(t, "ab", 2, 0, ids, 4, &n, &err) == BG_EINVAL &&
          strstr(err.msg, "room for 4 ids"));
    int32_t out_of_range[2] = {1, 6};
    char *txt;
    size_t tl;
    CHECK(bg_nn_tok_decode(t, out_of_range, 2, &txt, &tl, &err) == BG_EINVAL &&
              strstr(err.msg, "token 6 (position 1)"),
          "%s", err.msg);
    CHECK(bg_nn_tok_lookup(t, "ab", 2) == 5 && bg_nn_tok_lookup(t, "abc", 3) == -1);
    bg_nn_tok_destroy(t);
    l[3] = 0;
    CHECK(bg_nn_tok_create(6, p, l, s, &t, &err) == BG_EINVAL && strstr(err.msg, "token 3"));
}

/* The BPE trainer: vocab honoured, a learned merge used by the encoder,
 * merge scores in order, round trips through the trained vocabulary,
 * deterministic files. */
static void bpe_train(void)
{
    char corpus[8192];
    size_t len = 0;
    static const char *lines[] = {
        "shell_exec rm -rf /tmp/x was harmful.", "send_email to a known contact was fine.",
        "shell_exec ls /tmp was fine.", "caf\xc3\xa9 na\xc3\xafve was fine."};
    for (int r = 0; r < 40; r++) {
        const char *l = lines[r % 4];
        memcpy(corpus + len, l, strlen(l));
        len += strlen(l);
        corpus[len++] = '\n';
    }
    bg_nn_tok *t = NULL, *u = NULL;
    bg_err err;
    CHECK(bg_nn_tok_train(corpus, len, 300, &t, &err) == BG_OK, "%s", err.msg);
    CHECK_INT(bg_nn_tok_size(t), 300);
    int pl;
    const char *p = bg_nn_tok_piece(t, 3 + 'a', &pl);
    CHECK(pl == 1 && p[0] == 'a', "byte tokens at id b + 3");
    CHECK_STR(bg_nn_tok_piece(t, BG_NN_TOK_BOS, &pl), "\n<s>\n");
    for (int i = 259; i < 300; i++)
        CHECK(bg_nn_tok_score(t, i) == -(float)(i - 258), "merge %d score %g", i,
              (double)bg_nn_tok_score(t, i));
    /* a learned merge: the frequent word is one token, after the BOS */
    int32_t ids[600];
    int n;
    CHECK(bg_nn_tok_encode(t, "shell_exec", 10, BG_NN_TOK_ADD_BOS, ids, 600, &n, &err) == BG_OK);
    CHECK(n == 2 && bg_nn_tok_lookup(t, " shell_exec", 11) == ids[1], "' shell_exec' in %d ids",
          n - 1);
    CHECK(bg_nn_tok_encode(t, corpus, 38, BG_NN_TOK_ADD_BOS, ids, 600, &n, &err) == BG_OK);
    printf("trained vocab 300: the first line is %d tokens (38 bytes)\n", n - 1);
    CHECK(n - 1 < 20, "merges shorten the line: 39 byte tokens without them");
    round_trip(t, corpus, len);
    char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (char)(i * 7 + 3);
    round_trip(t, all, 512);
    round_trip(t, "\xff\xc3 caf\xc3\xa9\xe2\x98", 10);
    /* deterministic: the same file twice */
    CHECK(bg_nn_tok_train(corpus, len, 300, &u, &err) == BG_OK);
    for (int i = 0; i < 300; i++) {
        int la, lb;
        const char *a = bg_nn_tok_piece(t, i, &la), *b = bg_nn_tok_piece(u, i, &lb);
        CHECK(la == lb && memcmp(a, b, (size_t)la) == 0, "piece %d differs between runs", i);
    }
    bg_nn_tok_destroy(u);
    /* too little data: stops when no pair occurs twice */
    CHECK(bg_nn_tok_train("abab", 4, 1000, &u, &err) == BG_OK);
    CHECK(bg_nn_tok_size(u) == 260 && bg_nn_tok_lookup(u, "ab", 2) == 259, "size %d",
          bg_nn_tok_size(u));
    bg_nn_tok_destroy(u);
    CHECK(bg_nn_tok_train(corpus, len, 258, &u, &err) == BG_EINVAL &&
              strstr(err.msg, "expected 259..65536"),
          "%s", err.msg);
    /* "<0xNN>" and "<unk>" never become pieces */
    CHECK(bg_nn_tok_train("<0x41> <0x41> <unk> <unk>", 25, 400, &u, &err) == BG_OK);
    CHECK(bg_nn_tok_lookup(u, "<0x41>", 6) < 0 && bg_nn_tok_lookup(u, "<unk>", 5) == 0);
    round_trip(u, "<0x41> <unk>", 12);
    bg_nn_tok_destroy(u);
    bg_nn_tok_destroy(t);
}

int main(void)
{
    bpe_train();
    const char *shared = getenv("BG_SHARED_DIR");
    snprintf(g_tokpath, sizeof g_tokpath, "%s/models/llama2-tokenizer.bin",
             shared ? shared : "../shared");
    small_vocab();
    if (access(g_tokpath, R_OK) != 0) {
        printf("%s not found (set BG_SHARED_DIR); the Llama 2 vocabulary checks are skipped\n",
               g_tokpath);
        return BG_TEST_SKIP;
    }
    bg_nn_tok *t = NULL;
    bg_err err;
    CHECK(bg_nn_tok_load(g_tokpath, &t, &err) == BG_OK, "%s", err.msg);
    CHECK_INT(bg_nn_tok_size(t), 32000);
    CHECK_INT(bg_nn_tok_max_len(t), 27);
    int l;
    CHECK_STR(bg_nn_tok_piece(t, 3 + 0x41, &l), "<0x41>");
    CHECK_STR(bg_nn_tok_piece(t, 29871, &l), " ");

    /* encodings: llama2.c's algorithm, written out */
    {
        static const int32_t w[] = {1, 15043, 3186};
        check_encode(t, "Hello world", 11, w, 3);
    }
    {
        static const int32_t w[] = {1,    6473,  29918, 4258, 20241, 448,  9600, 847,
                                    7050, 29914, 29916, 471,  10311, 1319, 29889};
        const char *s = "shell_exec rm -rf /tmp/x was harmful.";
        check_encode(t, s, strlen(s), w, 15);
    }
    {
        static const int32_t w[] = {1, 1055, 30085, 345, 274, 28059}; /* "naïve café" */
        check_encode(t, "na\xc3\xafve caf\xc3\xa9", 12, w, 6);
    }
    {
        static const int32_t w[] = {1, 29871, 30325, 30346}; /* 日本: code-point pieces */
        check_encode(t, "\xe6\x97\xa5\xe6\x9c\xac", 6, w, 4);
    }
    {
        static const int32_t w[] = {1, 29871, 4, 130}; /* control bytes: <0x01> <0x7F> */
        check_encode(t, "\x01\x7f", 2, w, 4);
    }
    {
        static const int32_t w[] = {1, 29871, 258, 257, 3431}; /* invalid UTF-8: <0xFF> <0xFE> */
        check_encode(t, "\xff\xfe ok", 5, w, 5);
    }
    {
        static const int32_t w[] = {1, 259, 1023}; /* leading spaces: "  " then "two" */
        check_encode(t, "  two", 5, w, 3);
    }
    /* the leading-space convention: without BOS the dummy space decodes */
    int32_t ids[64];
    int n;
    CHECK(bg_nn_tok_encode(t, "Hello", 5, 0, ids, 64, &n, &err) == BG_OK && n == 1 &&
          ids[0] == 15043);
    size_t dl;
    const char *d = bg_nn_tok_decode_one(t, -1, 15043, &dl);
    CHECK(dl == 6 && memcmp(d, " Hello", 6) == 0);
    d = bg_nn_tok_decode_one(t, BG_NN_TOK_BOS, 15043, &dl);
    CHECK(dl == 5 && memcmp(d, "Hello", 5) == 0);
    d = bg_nn_tok_decode_one(t, -1, 3 + 0xC3, &dl);
    CHECK(dl == 1 && (unsigned char)d[0] == 0xC3, "<0xC3> decodes to the byte");
    CHECK(bg_nn_tok_decode_one(t, -1, 32000, &dl) == NULL);
    CHECK(bg_nn_tok_encode(t, "", 0, BG_NN_TOK_ADD_BOS, ids, 64, &n, &err) == BG_OK && n == 1);

    /* round trips: every byte value, random bytes, long UTF-8 text */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    round_trip(t, all, 256);
    uint64_t x = 88172645463325252ull;
    char rnd[2000];
    for (int k = 0; k < 20; k++) {
        size_t len = (size_t)(k * 97 % 2000);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            rnd[i] = (char)(k & 1 ? x : (x % 3 ? 'a' + x % 26 : ' '));
        }
        round_trip(t, rnd, len);
    }
    const char *utf = "Ünïcödé — «quotes» ☃ 漢字 and emoji \xf0\x9f\x98\x80 mixed\n";
    round_trip(t, utf, strlen(utf));
    CHECK(bg_nn_tok_encode(t, rnd, BG_NN_TOK_MAX_TEXT + 1, 0, ids, 64, &n, &err) == BG_EINVAL &&
          strstr(err.msg, "split the text"));

    /* save: the same bytes as the original file */
    const char *dir = nt_tmpdir();
    char out[1200];
    snprintf(out, sizeof out, "%s/tok.bin", dir);
    CHECK(bg_nn_tok_save(t, out, &err) == BG_OK, "%s", err.msg);
    FILE *a = fopen(g_tokpath, "rb"), *b = fopen(out, "rb");
    CHECK(a && b);
    static unsigned char ba[1 << 20], bb[1 << 20];
    size_t na = fread(ba, 1, sizeof ba, a), nb = fread(bb, 1, sizeof bb, b);
    fclose(a);
    fclose(b);
    CHECK(na == nb && memcmp(ba, bb, na) == 0, "saved %zu bytes vs %zu, differ", nb, na);
    printf("saved tokenizer: %zu bytes, identical to the original\n", nb);
    corrupt_files(ba, na);
    unlink(out);
    rmdir(dir);
    bg_nn_tok_destroy(t);
    CHECK_DONE("test_nn_tok");
}
