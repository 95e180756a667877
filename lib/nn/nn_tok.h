/*
 * nn_tok.h — tokenizers in llama2.c's `tokenizer.bin` format: read, write,
 * encode text to token ids and decode ids to text, exactly as llama2.c's
 * run.c does (nn_tok.c), and a byte-level BPE trainer whose files that
 * encoder reproduces (nn_tok_train.c).
 *
 * The file (little-endian, no magic, no count: entries run to the end):
 *   i32 max_token_length | per token: f32 score | i32 len | len bytes
 * Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS) by llama2.c's convention.
 *
 * Encoding (llama2.c encode()): optional BOS; a " " token before non-empty
 * text (the leading-space convention: sentencepiece's dummy prefix); each
 * UTF-8 code point looked up as a piece, else its bytes as byte tokens (the
 * piece "<0xNN>" when the vocabulary has it, else the one-byte piece);
 * then, repeatedly, the adjacent pair whose concatenation is a piece with
 * the highest score (the leftmost on a tie; scores <= -1e10 never merge)
 * is merged, until no pair merges; optional EOS.
 * Decoding (llama2.c decode()): each id's piece; "<0xNN>" is the byte NN;
 * the piece after a BOS loses one leading space; BOS and EOS emit nothing.
 * So decode(encode(text, BOS)) == text for every byte string whose bytes
 * all have tokens.
 *
 * Limits: max_token_length 1..BG_NN_TOK_MAX_PIECE, at most BG_NN_TOK_MAX_VOCAB
 * tokens (at least 3), finite scores; one encode call takes at most
 * BG_NN_TOK_MAX_TEXT bytes (the merge loop is quadratic: callers split long
 * text, `lm train` encodes line by line) and yields at most len + 3 ids.
 *
 * Threads: a bg_nn_tok is immutable after load/create; any number of
 * threads may encode and decode with it at once.
 * Ownership: borrowed arguments; _load/_parse/_create return a new
 * tokenizer the caller destroys; pieces returned are borrowed from it.
 */
#ifndef BG_NN_TOK_H
#define BG_NN_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_NN_TOK_UNK 0
#define BG_NN_TOK_BOS 1
#define BG_NN_TOK_EOS 2
#define BG_NN_TOK_MAX_PIECE 1024
#define BG_NN_TOK_MAX_VOCAB (1 << 20)
#define BG_NN_TOK_MAX_TEXT (1 << 16)

/* encode flags */
#define BG_NN_TOK_ADD_BOS 1
#define BG_NN_TOK_ADD_EOS 2

typedef struct bg_nn_tok bg_nn_tok;

/* Reads a tokenizer.bin; the message names the file, the token and what is
 * wrong (truncated record, bad length, non-finite score). */
int bg_nn_tok_load(const char *path, bg_nn_tok **out, bg_err *err);
/* The same on bytes in memory (copied); `name` is used in messages. */
int bg_nn_tok_parse(const void *data, size_t len, const char *name, bg_nn_tok **out, bg_err *err);
/* From pieces[i] (lens[i] bytes each, 1..BG_NN_TOK_MAX_PIECE) and scores. */
int bg_nn_tok_create(int n, const char *const *pieces, const int *lens, const float *scores,
                     bg_nn_tok **out, bg_err *err);
/* Writes the tokenizer.bin (max_token_length = the longest piece). */
int bg_nn_tok_save(const bg_nn_tok *t, const char *path, bg_err *err);
void bg_nn_tok_destroy(bg_nn_tok *t);

int bg_nn_tok_size(const bg_nn_tok *t);
int bg_nn_tok_max_len(const bg_nn_tok *t);
/* Token id's piece (borrowed, *len bytes, NUL-terminated) and score. */
const char *bg_nn_tok_piece(const bg_nn_tok *t, int id, int *len);
float bg_nn_tok_score(const bg_nn_tok *t, int id);
/* The id of a piece, or -1 (the first of equal pieces). */
int bg_nn_tok_lookup(const bg_nn_tok *t, const char *piece, size_t len);

/* text[0..len) -> ids (capacity cap >= len + 3), *n of them. Fails (nothing
 * written past *n = 0) when len > BG_NN_TOK_MAX_TEXT, cap is too small, or
 * a byte has no token (named with its offset). */
int bg_nn_tok_encode(const bg_nn_tok *t, const char *text, size_t len, int flags, int32_t *ids,
                     int cap, int *n, bg_err *err);
/* The bytes one id decodes to after `prev` (-1: none): borrowed, *len
 * bytes (0 for BOS/EOS). Fails (NULL) for an id outside the vocabulary. */
const char *bg_nn_tok_decode_one(const bg_nn_tok *t, int prev, int id, size_t *len);
/* ids -> text: new NUL-terminated buffer (caller frees), *len bytes
 * (embedded NULs possible). An id outside the vocabulary is an error. */
int bg_nn_tok_decode(const bg_nn_tok *t, const int32_t *ids, int n, char **text, size_t *len,
                     bg_err *err);

/* ---- the BPE trainer (nn_tok_train.c) -----------------------------------
 *
 * Vocabulary: <unk>, <s>, </s> (pieces "<unk>", "\n<s>\n", "\n</s>\n" as
 * llama2.c's export writes them), the 256 bytes as one-byte pieces (id
 * b + 3, llama2.c's byte fallback id), then up to vocab - 259 merges learned
 * from data[0..len). The text is read as the encoder will see it: line by
 * line ('\n' ends a line, empty lines are skipped), each line with the
 * leading space, cut into words before each ' ' (no merge spans a word
 * start). Each round the most frequent adjacent pair (ties: the smaller
 * left id, then the smaller right id) is merged in every word; its piece
 * becomes a new token unless an earlier token already has that piece. Merge
 * k (0-based) gets score -(k + 1) (base tokens 0, never a merge result), so
 * llama2.c's greedy encoder applies merges in the order they were learned.
 * Pairs whose piece would exceed BG_NN_TOK_TRAIN_MAX_PIECE bytes or read as
 * a byte token "<0xNN>" or "<unk>" are never merged. Stops early when no pair occurs
 * twice. Deterministic: the same data and vocab give the same file.
 * Cost: one pass over the distinct words per merge. */
#define BG_NN_TOK_TRAIN_MAX_PIECE 64
int bg_nn_tok_train(const char *data, size_t len, int vocab, bg_nn_tok **out, bg_err *err);

#endif
