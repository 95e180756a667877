/*
 * nn_tok_train.c — the byte-level BPE trainer (nn_tok.h, "the BPE
 * trainer"): learns merges by pair frequency and writes them as a llama2.c
 * vocabulary whose scores make llama2.c's greedy encoder replay them.
 *
 * Why this shape: the text becomes its distinct words with their counts
 * (a word is a run that starts at a line start, with the encoder's leading
 * space, or at a ' '), so a round costs one pass over the distinct words,
 * not the text. Each round counts every adjacent pair into a table
 * rebuilt from scratch, picks the best by a total order (count, then the
 * smaller ids), and rewrites the words. No state depends on hash order, so
 * the result is deterministic.
 *
 * Invariants: every symbol of every word is a token id < the vocabulary
 * built so far; pieces[id] is the concatenation of the bytes it stands for.
 *
 * Threads: pure function. Ownership: all memory is freed before returning
 * except the new tokenizer.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_siphash.h"
#include "nn/nn_tok.h"

#define N_BASE 259

typedef struct word {
    int32_t *sym; /* symbols (token ids) */
    int n;
    int64_t count;
} word;

typedef struct trainer {
    word *words;
    int nw, cap_w;
    /* distinct words: open addressing over (bytes) -> index into words */
    int32_t *wtab;
    size_t wcap;
    uint8_t key[BG_SIPHASH_KEY_BYTES];
    /* pieces of the vocabulary being built */
    char **pieces;
    int *lens;
    int nv;
} trainer;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Adds one occurrence of word w[0..n) (bytes). Returns 0 or -1 (memory). */
static int add_word(trainer *tr, const unsigned char *w, int n)
{
    if (2 * ((size_t)tr->nw + 1) > tr->wcap) {
        size_t ncap = tr->wcap ? tr->wcap * 2 : 1024;
        int32_t *nt = malloc(ncap * sizeof *nt);
        if (!nt)
            return -1;
        memset(nt, 0xff, ncap * sizeof *nt);
        for (int i = 0; i < tr->nw; i++) {
            unsigned char buf[BG_NN_TOK_MAX_TEXT];
            for (int k = 0; k < tr->words[i].n; k++)
                buf[k] = (unsigned char)(tr->words[i].sym[k] - 3);
            size_t h = (size_t)bg_siphash24(tr->key, buf, (size_t)tr->words[i].n) & (ncap - 1);
            while (nt[h] >= 0)
                h = (h + 1) & (ncap - 1);
            nt[h] = i;
        }
        free(tr->wtab);
        tr->wtab = nt;
        tr->wcap = ncap;
    }
    size_t mask = tr->wcap - 1, h = (size_t)bg_siphash24(tr->key, w, (size_t)n) & mask;
    for (; tr->wtab[h] >= 0; h = (h + 1) & mask) {
        word *x = &tr->words[tr->wtab[h]];
        int same = x->n == n;
        for (int k = 0; same && k < n; k++)
            same = x->sym[k] == w[k] + 3;
        if (same) {
            x->count++;
            return 0;
        }
    }
    if (tr->nw == tr->cap_w) {
        int nc = tr->cap_w ? tr->cap_w * 2 : 1024;
        word *nw = realloc(tr->words, sizeof *nw * (size_t)nc);
        if (!nw)
            return -1;
        tr->words = nw;
        tr->cap_w = nc;
    }
    word *x = &tr->words[tr->nw];
    x->sym = malloc(sizeof *x->sym * (size_t)n);
    if (!x->sym)
        return -1;
    for (int k = 0; k < n; k++)
        x->sym[k] = w[k] + 3;
    x->n = n;
    x->count = 1;
    tr->wtab[h] = tr->nw++;
    return 0;
}

/* Cuts data into lines, each with a leading space, and lines into words
 * before each ' '. A word longer than BG_NN_TOK_MAX_TEXT is cut there. */
static int collect_words(trainer *tr, const char *data, size_t len)
{
    unsigned char *buf = malloc(BG_NN_TOK_MAX_TEXT);
    if (!buf)
        return -1;
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        size_t e = i;
        while (e < len && data[e] != '\n')
            e++;
        if (e > i) {
            int n = 0;
            buf[n++] = ' ';
            for (size_t k = i; k < e && rc == 0; k++) {
                if ((data[k] == ' ' && n > 0) || n == BG_NN_TOK_MAX_TEXT) {
                    rc = add_word(tr, buf, n);
                    n = 0;
                }
                buf[n++] = (unsigned char)data[k];
            }
            if (rc == 0 && n > 0)
                rc = add_word(tr, buf, n);
        }
        i = e + 1;
    }
    free(buf);
    return rc;
}

typedef struct pair_slot {
    uint64_t key; /* (a << 32 | b) + 1; 0 = empty */
    int64_t count;
} pair_slot;

/* May (a, b) merge: short enough, not a "<0xNN>" look-alike, not "<unk>". */
static int mergeable(const trainer *tr, int a, int b)
{
    int l = tr->lens[a] + tr->lens[b];
    if (l > BG_NN_TOK_TRAIN_MAX_PIECE)
        return 0;
    if (l != 6 && l != 5)
        return 1;
    char s[6];
    memcpy(s, tr->pieces[a], (size_t)tr->lens[a]);
    memcpy(s + tr->lens[a], tr->pieces[b], (size_t)tr->lens[b]);
    if (l == 5)
        return memcmp(s, "<unk>", 5) != 0;
    return !(memcmp(s, "<0x", 3) == 0 && s[5] == '>');
}

/* Finds the best pair this round; returns its count (0 when none). */
static int64_t best_pair(const trainer *tr, pair_slot *tab, size_t cap, int *ba, int *bb)
{
    memset(tab, 0, cap * sizeof *tab);
    size_t mask = cap - 1;
    int64_t best = 0;
    for (int i = 0; i < tr->nw; i++) {
        const word *w = &tr->words[i];
        for (int k = 0; k + 1 < w->n; k++) {
            uint64_t key = ((uint64_t)(uint32_t)w->sym[k] << 32 | (uint32_t)w->sym[k + 1]) + 1;
            size_t h = (size_t)mix(key) & mask;
            while (tab[h].key && tab[h].key != key)
                h = (h + 1) & mask;
            tab[h].key = key;
            tab[h].count += w->count;
        }
    }
    for (size_t h = 0; h < cap; h++) {
        if (!tab[h].key)
            continue;
        int a = (int)((tab[h].key - 1) >> 32), b = (int)((tab[h].key - 1) & 0xffffffffu);
        int64_t c = tab[h].count;
        if (c < 2 || c < best)
            continue;
        if (c == best && (a > *ba || (a == *ba && b > *bb)))
            continue;
        if (!mergeable(tr, a, b))
            continue;
        best = c;
        *ba = a;
        *bb = b;
    }
    return best;
}

static void apply_merge(trainer *tr, int a, int b, int id)
{
    for (int i = 0; i < tr->nw; i++) {
        word *w = &tr->words[i];
        int o = 0;
        for (int k = 0; k < w->n; k++) {
            if (k + 1 < w->n && w->sym[k] == a && w->sym[k + 1] == b) {
                w->sym[o++] = id;
                k++;
            } else {
                w->sym[o++] = w->sym[k];
            }
        }
        w->n = o;
    }
}

/* The id of an existing piece equal to a+b, or -1 (a linear scan: merges
 * are few next to the word passes). */
static int existing(const trainer *tr, const char *s, int l)
{
    for (int i = N_BASE; i < tr->nv; i++)
        if (tr->lens[i] == l && memcmp(tr->pieces[i], s, (size_t)l) == 0)
            return i;
    return -1;
}

static void trainer_free(trainer *tr)
{
    for (int i = 0; i < tr->nw; i++)
        free(tr->words[i].sym);
    free(tr->words);
    free(tr->wtab);
    for (int i = 0; i < tr->nv; i++)
        free(tr->pieces[i]);
    free(tr->pieces);
    free(tr->lens);
}

int bg_nn_tok_train(const char *data, size_t len, int vocab, bg_nn_tok **out, bg_err *err)
{
    *out = NULL;
    if (vocab < N_BASE || vocab > 65536)
        return bg_err_set(err, BG_EINVAL,
                          "tokenizer train: vocabulary %d; expected %d..65536 (3 specials + 256 "
                          "bytes + merges)",
                          vocab, N_BASE);
    trainer tr = {0};
    int rc = BG_ENOMEM;
    float *scores = NULL;
    pair_slot *tab = NULL;
    tr.pieces = calloc((size_t)vocab, sizeof *tr.pieces);
    tr.lens = calloc((size_t)vocab, sizeof *tr.lens);
    scores = calloc((size_t)vocab, sizeof *scores);
    if (!tr.pieces || !tr.lens || !scores || bg_siphash_key_random(tr.key) != 0)
        goto done;
    static const char *specials[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (; tr.nv < N_BASE; tr.nv++) {
        int l = tr.nv < 3 ? (int)strlen(specials[tr.nv]) : 1;
        if (!(tr.pieces[tr.nv] = malloc((size_t)l)))
            goto done;
        if (tr.nv < 3)
            memcpy(tr.pieces[tr.nv], specials[tr.nv], (size_t)l);
        else
            tr.pieces[tr.nv][0] = (char)(tr.nv - 3);
        tr.lens[tr.nv] = l;
    }
    if (collect_words(&tr, data, len) != 0)
        goto done;
    size_t nsym = 0;
    for (int i = 0; i < tr.nw; i++)
        nsym += (size_t)tr.words[i].n;
    size_t cap = 16;
    while (cap < 2 * nsym)
        cap <<= 1;
    if (!(tab = malloc(cap * sizeof *tab)))
        goto done;
    int merges = 0;
    while (tr.nv < vocab) {
        int a = 0x7fffffff, b = 0x7fffffff;
        if (best_pair(&tr, tab, cap, &a, &b) == 0)
            break;
        int l = tr.lens[a] + tr.lens[b];
        char s[BG_NN_TOK_TRAIN_MAX_PIECE];
        memcpy(s, tr.pieces[a], (size_t)tr.lens[a]);
        memcpy(s + tr.lens[a], tr.pieces[b], (size_t)tr.lens[b]);
        int id = existing(&tr, s, l);
        if (id < 0) {
            id = tr.nv;
            if (!(tr.pieces[id] = malloc((size_t)l)))
                goto done;
            memcpy(tr.pieces[id], s, (size_t)l);
            tr.lens[id] = l;
            scores[id] = -(float)(++merges);
            tr.nv++;
        }
        apply_merge(&tr, a, b, id);
    }
    rc = bg_nn_tok_create(tr.nv, (const char *const *)tr.pieces, tr.lens, scores, out, err);
done:
    if (rc == BG_ENOMEM && !*out)
        bg_err_set(err, BG_ENOMEM, "tokenizer train: out of memory (%zu bytes of text)", len);
    free(tab);
    free(scores);
    trainer_free(&tr);
    return rc;
}
