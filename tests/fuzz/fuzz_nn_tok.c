/*
 * fuzz_nn_tok.c — the llama2.c tokenizer.bin parser (lib/nn/nn_tok.c): the
 * input is a tokenizer file, parsed from memory (bg_nn_tok_parse). A file
 * that loads encodes a few fixed texts (ASCII, UTF-8, invalid UTF-8, a
 * "<0x41>" look-alike) and its own first piece, decodes the ids back, and is
 * saved and parsed again.
 *
 * Checks beyond the sanitizers: a refused file has a message; every id an
 * encode returns is inside the vocabulary and within len + 3 of them; a
 * decode of them succeeds; the saved copy parses to the same vocabulary
 * size and the same pieces.
 */
#include "common/bg_assert.h"
#include "fuzz_util.h"
#include "nn/nn_tok.h"

static const char *dir;

static void encode_decode(const bg_nn_tok *t, const char *s, size_t len)
{
    int32_t ids[96];
    int n = -1;
    bg_err err;
    if (len + 3 > 96)
        return;
    if (bg_nn_tok_encode(t, s, len, BG_NN_TOK_ADD_BOS | BG_NN_TOK_ADD_EOS, ids, 96, &n, &err) !=
        BG_OK) {
        BG_ASSERT(n == 0 && err.msg[0] != '\0', "a failed encode without a message");
        return;
    }
    BG_ASSERT(n >= 2 && (size_t)n <= len + 3, "%d ids for %zu bytes", n, len);
    for (int i = 0; i < n; i++)
        BG_ASSERT(ids[i] >= 0 && ids[i] < bg_nn_tok_size(t), "id %d of %d", (int)ids[i],
                  bg_nn_tok_size(t));
    char *text = NULL;
    size_t tl = 0;
    BG_ASSERT(bg_nn_tok_decode(t, ids, n, &text, &tl, &err) == BG_OK, "decode: %s", err.msg);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir == NULL) {
        fz_quiet_logs();
        dir = fz_tmpdir("tok");
    }
    bg_nn_tok *t = NULL;
    bg_err err;
    bg_err_clear(&err);
    if (bg_nn_tok_parse(data, size, "fuzz.bin", &t, &err) != BG_OK) {
        BG_ASSERT(t == NULL && err.msg[0] != '\0', "a refused tokenizer without a message");
        return 0;
    }
    static const char *texts[] = {"shell_exec rm -rf /tmp/x was harmful.",
                                  "na\xc3\xafve caf\xc3\xa9", "\xff\xfe\x80 ok", "<0x41><s>", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        encode_decode(t, texts[i], strlen(texts[i]));
    int l0;
    const char *p0 = bg_nn_tok_piece(t, 0, &l0);
    encode_decode(t, p0, (size_t)l0);
    char path[600];
    snprintf(path, sizeof path, "%s/tok.bin", dir);
    BG_ASSERT(bg_nn_tok_save(t, path, &err) == BG_OK, "save: %s", err.msg);
    bg_nn_tok *u = NULL;
    BG_ASSERT(bg_nn_tok_load(path, &u, &err) == BG_OK, "reload: %s", err.msg);
    BG_ASSERT(bg_nn_tok_size(u) == bg_nn_tok_size(t), "reload changed the size");
    for (int i = 0; i < bg_nn_tok_size(t); i++) {
        int la, lb;
        const char *a = bg_nn_tok_piece(t, i, &la), *b = bg_nn_tok_piece(u, i, &lb);
        BG_ASSERT(la == lb && memcmp(a, b, (size_t)la) == 0, "reload changed piece %d", i);
    }
    bg_nn_tok_destroy(u);
    bg_nn_tok_destroy(t);
    return 0;
}
