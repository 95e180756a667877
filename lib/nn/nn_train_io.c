/*
 * nn_train_io.c — the trainer's files: optimizer state, LoRA adapters, and
 * a merged llama2.c checkpoint (nn.h, "training"; formats in
 * docs/TRAINING.md).
 *
 * Both binary formats are little-endian, written from the host:
 *   magic[8] | u32 version | i32 model[7] (the llama2.c header fields) |
 *   i32 rank | f32 alpha | i32 step | i32 count |
 *   count x { char name[32] | u32 a | u32 b | f32 data[...] } | u32 crc32
 * where the optimizer state ("BGNNOPT\0") stores, per trainable tensor,
 * a = floats, b = 3 and the parameter, m and v; the adapter file
 * ("BGLORA\0\0") stores per adapter matrix a = rows, b = cols and its
 * values. The CRC-32 (IEEE, reflected 0xEDB88320) covers every byte before
 * it. A load computes the exact length the trainer expects before reading,
 * so a file for another model, rank or trainer shape is refused by name
 * (which field differs); every value must be finite; nothing is written to
 * the device unless the whole file checked out (fuzzed by
 * tests/fuzz/fuzz_nn_train_files.c).
 *
 * Threads: the trainer's caller (one at a time). Ownership: host buffers
 * are allocated and freed per call.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_priv.h"

#define FILE_VERSION 1u
#define NAME_LEN 32

static const char OPT_MAGIC[8] = {'B', 'G', 'N', 'N', 'O', 'P', 'T', 0};
static const char LORA_MAGIC[8] = {'B', 'G', 'L', 'O', 'R', 'A', 0, 0};

static uint32_t crc32_update(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* A file image being built or parsed in memory. */
typedef struct img {
    unsigned char *b;
    size_t len, pos;
} img;

static void put(img *m, const void *src, size_t n)
{
    memcpy(m->b + m->pos, src, n);
    m->pos += n;
}

static void get(img *m, void *dst, size_t n)
{
    memcpy(dst, m->b + m->pos, n);
    m->pos += n;
}

typedef struct hdr {
    char magic[8];
    uint32_t version;
    int32_t model[7];
    int32_t rank;
    float alpha;
    int32_t step;
    int32_t count;
} hdr;

static void model_fields(const bg_nn_config *c, int32_t out[7])
{
    int32_t v[7] = {c->dim,        c->hidden_dim,
                    c->n_layers,   c->n_heads,
                    c->n_kv_heads, c->shared_classifier ? c->vocab_size : -c->vocab_size,
                    c->seq_len};
    memcpy(out, v, sizeof v);
}

/* One tensor record: which trainer buffers, and the (a, b) header. */
typedef struct rec {
    const char *name;
    bg_cbuf *buf[3];
    int nbuf;
    uint32_t a, b;
    size_t floats; /* per buffer */
} rec;

static int opt_recs(bg_nn_trainer *t, rec **out)
{
    rec *r = calloc((size_t)(t->np ? t->np : 1), sizeof *r);
    if (!r)
        return -1;
    for (int i = 0; i < t->np; i++) {
        bg__tparam *q = &t->params[i];
        r[i] = (rec){q->name, {q->p, q->m, q->v}, 3, (uint32_t)q->n, 3, q->n};
    }
    *out = r;
    return t->np;
}

static int lora_recs(bg_nn_trainer *t, rec **out)
{
    int n = t->cfg.n_layers * BG__N_PROJ * 2;
    rec *r = calloc((size_t)(n ? n : 1), sizeof *r);
    if (!r)
        return -1;
    int k = 0;
    for (int l = 0; l < t->cfg.n_layers; l++)
        for (int p = 0; p < BG__N_PROJ; p++) {
            int in, o;
            bg__nn_proj_dims(&t->cfg, p, &in, &o);
            bg__tlayer *y = &t->layers[l];
            r[k++] = (rec){t->params[y->g_la[p]].name, {y->la[p]},   1,
                           (uint32_t)t->rank,          (uint32_t)in, (size_t)t->rank * in};
            r[k++] = (rec){t->params[y->g_lb[p]].name, {y->lb[p]},         1, (uint32_t)o,
                           (uint32_t)t->rank,          (size_t)o * t->rank};
        }
    *out = r;
    return n;
}

static size_t image_len(const rec *r, int n)
{
    size_t len = sizeof(hdr) + 4;
    for (int i = 0; i < n; i++)
        len += NAME_LEN + 8 + 4 * r[i].floats * (size_t)r[i].nbuf;
    return len;
}

static void fill_hdr(const bg_nn_trainer *t, hdr *h, const char magic[8], int count)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, magic, 8);
    h->version = FILE_VERSION;
    model_fields(&t->cfg, h->model);
    h->rank = t->rank;
    h->alpha = t->lscale * (float)(t->rank ? t->rank : 1);
    h->step = t->step;
    h->count = count;
}

static int save(bg_nn_trainer *t, const char *path, const char *what, const char magic[8],
                const rec *r, int n, bg_err *err)
{
    img m = {NULL, image_len(r, n), 0};
    m.b = malloc(m.len);
    if (!m.b)
        return bg_err_set(err, BG_ENOMEM, "%s %s: out of memory for %zu bytes", what, path, m.len);
    hdr h;
    fill_hdr(t, &h, magic, n);
    put(&m, &h, sizeof h);
    int rc = BG_OK;
    for (int i = 0; i < n && rc == BG_OK; i++) {
        char name[NAME_LEN] = {0};
        snprintf(name, sizeof name, "%s", r[i].name);
        put(&m, name, NAME_LEN);
        put(&m, &r[i].a, 4);
        put(&m, &r[i].b, 4);
        for (int k = 0; k < r[i].nbuf && rc == BG_OK; k++) {
            rc = bg_cbuf_read(t->c, r[i].buf[k], 0, m.b + m.pos, 4 * r[i].floats, err);
            m.pos += 4 * r[i].floats;
        }
    }
    uint32_t crc = crc32_update(0, m.b, m.pos);
    put(&m, &crc, 4);
    FILE *f = rc == BG_OK ? fopen(path, "wb") : NULL;
    if (rc == BG_OK && !f)
        rc = bg_err_set(err, BG_EIO, "%s %s: cannot create: %s", what, path, strerror(errno));
    if (f) {
        int bad = fwrite(m.b, 1, m.len, f) != m.len;
        bad |= fclose(f) != 0;
        if (bad)
            rc = bg_err_set(err, BG_EIO, "%s %s: write failed: %s", what, path, strerror(errno));
    }
    free(m.b);
    return rc;
}

/* Reads the whole file (its length is checked against the expected one by
 * check_hdr, after the header says what the file claims to be). */
static int slurp(const char *path, const char *what, img *m, bg_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return bg_err_set(err, BG_EIO, "%s %s: cannot open: %s", what, path, strerror(errno));
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    rewind(f);
    int rc = BG_OK;
    if (len < 0)
        rc = bg_err_set(err, BG_EIO, "%s %s: cannot size the file", what, path);
    else if ((size_t)len < sizeof(hdr) + 4)
        rc = bg_err_set(err, BG_EINVAL, "%s %s: %ld bytes is too short for the header", what, path,
                        len);
    if (rc == BG_OK) {
        m->len = (size_t)len;
        m->pos = 0;
        m->b = malloc(m->len);
        if (!m->b)
            rc = bg_err_set(err, BG_ENOMEM, "%s %s: out of memory", what, path);
        else if (fread(m->b, 1, m->len, f) != m->len)
            rc = bg_err_set(err, BG_EIO, "%s %s: read failed", what, path);
    }
    fclose(f);
    return rc;
}

static const char *const FIELD[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                     "n_kv_heads", "vocab_size", "seq_len"};

/* The file's kind (magic) and format version. */
static int check_kind(const hdr *h, const char *path, const char *what, const char magic[8],
                      bg_err *err)
{
    if (memcmp(h->magic, magic, 8) != 0)
        return bg_err_set(err, BG_EINVAL, "%s %s: not a %s file (bad magic)", what, path, what);
    if (h->version != FILE_VERSION)
        return bg_err_set(err, BG_EINVAL, "%s %s: version %u; this build reads version %u", what,
                          path, h->version, FILE_VERSION);
    return BG_OK;
}

static int check_hdr(const bg_nn_trainer *t, const img *m, const char *path, const char *what,
                     const char magic[8], int count, size_t want, bg_err *err)
{
    hdr h, mine;
    memcpy(&h, m->b, sizeof h);
    fill_hdr(t, &mine, magic, count);
    int rc = check_kind(&h, path, what, magic, err);
    if (rc != BG_OK)
        return rc;
    for (int i = 0; i < 7; i++)
        if (h.model[i] != mine.model[i])
            return bg_err_set(err, BG_EINVAL,
                              "%s %s: written for a model with %s %d; this model has %d", what,
                              path, FIELD[i], h.model[i], mine.model[i]);
    if (h.rank != mine.rank)
        return bg_err_set(err, BG_EINVAL, "%s %s: written with LoRA rank %d; this trainer has %d",
                          what, path, h.rank, mine.rank);
    if (!(h.alpha > 0.0f && h.alpha < 1e6f) || h.step < 0)
        return bg_err_set(err, BG_EINVAL,
                          "%s %s: alpha %g or step %d out of range; expected alpha in (0, 1e6), "
                          "step >= 0",
                          what, path, (double)h.alpha, h.step);
    if (h.count != count || m->len != want)
        return bg_err_set(err, BG_EINVAL,
                          "%s %s: %d tensors in %zu bytes; expected %d tensors in %zu bytes "
                          "(truncated, or another trainer shape)",
                          what, path, h.count, m->len, count, want);
    uint32_t crc;
    memcpy(&crc, m->b + m->len - 4, 4);
    uint32_t got = crc32_update(0, m->b, m->len - 4);
    if (crc != got)
        return bg_err_set(err, BG_EINVAL,
                          "%s %s: CRC mismatch (stored %08x, computed %08x); the file is corrupt",
                          what, path, crc, got);
    return BG_OK;
}

static int load(bg_nn_trainer *t, const char *path, const char *what, const char magic[8],
                const rec *r, int n, hdr *h_out, bg_err *err)
{
    size_t want = image_len(r, n);
    img m = {0};
    int rc = slurp(path, what, &m, err);
    if (rc == BG_OK)
        rc = check_hdr(t, &m, path, what, magic, n, want, err);
    if (rc == BG_OK) {
        get(&m, h_out, sizeof *h_out);
        /* every record's name and shape before any device write */
        size_t pos = m.pos;
        for (int i = 0; i < n && rc == BG_OK; i++) {
            char name[NAME_LEN];
            uint32_t a, b;
            get(&m, name, NAME_LEN);
            get(&m, &a, 4);
            get(&m, &b, 4);
            name[NAME_LEN - 1] = 0;
            if (strcmp(name, r[i].name) != 0 || a != r[i].a || b != r[i].b)
                rc = bg_err_set(err, BG_EINVAL,
                                "%s %s: tensor %d is %s [%u, %u]; expected %s [%u, %u]", what, path,
                                i, name, a, b, r[i].name, r[i].a, r[i].b);
            for (size_t j = 0; rc == BG_OK && j < r[i].floats * (size_t)r[i].nbuf; j++) {
                float v;
                memcpy(&v, m.b + m.pos + 4 * j, 4);
                if (!isfinite(v))
                    rc = bg_err_set(err, BG_EINVAL, "%s %s: tensor %s holds a non-finite value",
                                    what, path, r[i].name);
            }
            m.pos += 4 * r[i].floats * (size_t)r[i].nbuf;
        }
        m.pos = pos;
        for (int i = 0; i < n && rc == BG_OK; i++) {
            m.pos += NAME_LEN + 8;
            for (int k = 0; k < r[i].nbuf && rc == BG_OK; k++) {
                rc = bg_cbuf_write(t->c, r[i].buf[k], 0, m.b + m.pos, 4 * r[i].floats, err);
                m.pos += 4 * r[i].floats;
            }
        }
    }
    free(m.b);
    return rc;
}

/* load(), then a one-token forward that must stay finite: a file of finite
 * but huge values passes the value checks and still overflows the forward
 * (inf - inf in attention: NaN logits). When it does, every buffer and the
 * LoRA scale are put back as they were and the file is refused. set_lscale:
 * the file's alpha sets the LoRA scale (adapters). */
static int load_checked(bg_nn_trainer *t, const char *path, const char *what, const char magic[8],
                        const rec *r, int n, hdr *h, int set_lscale, bg_err *err)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += r[i].floats * (size_t)r[i].nbuf;
    float *old = malloc(4 * (total ? total : 1));
    float *logits = malloc(4 * (size_t)t->cfg.vocab_size);
    int rc = old && logits ? BG_OK : bg_err_set(err, BG_ENOMEM, "%s: out of memory", what);
    size_t at = 0;
    for (int i = 0; i < n && rc == BG_OK; i++)
        for (int k = 0; k < r[i].nbuf && rc == BG_OK; k++, at += r[i].floats)
            rc = bg_cbuf_read(t->c, r[i].buf[k], 0, old + at, 4 * r[i].floats, err);
    float old_lscale = t->lscale;
    if (rc == BG_OK)
        rc = load(t, path, what, magic, r, n, h, err);
    if (rc != BG_OK) {
        free(old);
        free(logits);
        return rc; /* load() writes nothing before every check has passed */
    }
    if (set_lscale)
        t->lscale = h->alpha / (float)t->rank;
    int32_t probe = t->cfg.vocab_size > 1 ? 1 : 0;
    bg_err perr;
    bg_err_clear(&perr);
    int ok = bg_nn_train_logits(t, &probe, 1, logits, &perr) == BG_OK;
    for (int v = 0; ok && v < t->cfg.vocab_size; v++)
        ok = isfinite(logits[v]);
    if (!ok) {
        t->lscale = old_lscale;
        size_t o = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < r[i].nbuf; k++) {
                bg_err ignore;
                (void)bg_cbuf_write(t->c, r[i].buf[k], 0, old + o, 4 * r[i].floats, &ignore);
                o += r[i].floats;
            }
        rc = bg_err_set(err, BG_EINVAL,
                        "%s %s: its values overflow the model's forward (non-finite logits); "
                        "the model is unchanged",
                        what, path);
    }
    free(old);
    free(logits);
    return rc;
}

int bg_nn_train_save_state(bg_nn_trainer *t, const char *path, bg_err *err)
{
    rec *r;
    int n = opt_recs(t, &r);
    if (n < 0)
        return bg_err_set(err, BG_ENOMEM, "optimizer state: out of memory");
    int rc = save(t, path, "optimizer state", OPT_MAGIC, r, n, err);
    free(r);
    return rc;
}

int bg_nn_train_load_state(bg_nn_trainer *t, const char *path, bg_err *err)
{
    rec *r;
    int n = opt_recs(t, &r);
    if (n < 0)
        return bg_err_set(err, BG_ENOMEM, "optimizer state: out of memory");
    hdr h;
    int rc = load_checked(t, path, "optimizer state", OPT_MAGIC, r, n, &h, 0, err);
    if (rc == BG_OK)
        t->step = h.step;
    free(r);
    return rc;
}

int bg_nn_lora_file_info(const char *path, int *rank, float *alpha, bg_err *err)
{
    hdr h;
    FILE *f = fopen(path, "rb");
    if (!f)
        return bg_err_set(err, errno == ENOENT ? BG_ENOTFOUND : BG_EIO,
                          "adapters %s: cannot open: %s", path, strerror(errno));
    size_t got = fread(&h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h)
        return bg_err_set(err, BG_EINVAL, "adapters %s: %zu bytes is too short for the header",
                          path, got);
    int rc = check_kind(&h, path, "adapters", LORA_MAGIC, err);
    if (rc != BG_OK)
        return rc;
    if (h.rank < 1 || h.rank > 65536 || !(h.alpha > 0.0f && h.alpha < 1e6f))
        return bg_err_set(err, BG_EINVAL,
                          "adapters %s: rank %d or alpha %g out of range; expected rank 1..65536, "
                          "alpha in (0, 1e6)",
                          path, h.rank, (double)h.alpha);
    *rank = h.rank;
    *alpha = h.alpha;
    return BG_OK;
}

int bg_nn_lora_save(bg_nn_trainer *t, const char *path, bg_err *err)
{
    if (t->rank == 0)
        return bg_err_set(err, BG_EINVAL, "adapters %s: this trainer has no LoRA adapters", path);
    rec *r;
    int n = lora_recs(t, &r);
    if (n < 0)
        return bg_err_set(err, BG_ENOMEM, "adapters: out of memory");
    int rc = save(t, path, "adapters", LORA_MAGIC, r, n, err);
    free(r);
    return rc;
}

int bg_nn_lora_load(bg_nn_trainer *t, const char *path, bg_err *err)
{
    if (t->rank == 0)
        return bg_err_set(err, BG_EINVAL,
                          "adapters %s: this trainer has no LoRA adapters; create it with the "
                          "file's rank",
                          path);
    rec *r;
    int n = lora_recs(t, &r);
    if (n < 0)
        return bg_err_set(err, BG_ENOMEM, "adapters: out of memory");
    hdr h;
    int rc = load_checked(t, path, "adapters", LORA_MAGIC, r, n, &h, 1, err);
    free(r);
    return rc;
}

/* ---- merged checkpoint -------------------------------------------------------- */

static int read_buf(bg_nn_trainer *t, bg_cbuf *b, float *dst, size_t n, bg_err *err)
{
    return bg_cbuf_read(t->c, b, 0, dst, 4 * n, err);
}

/* W[out, in] += scale * B[out, r] . A[r, in], summed in double */
static void fold(float *w, const float *a, const float *b, int in, int out, int r, float scale)
{
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double s = 0.0;
            for (int k = 0; k < r; k++)
                s += (double)b[(long)o * r + k] * a[(long)k * in + i];
            w[(long)o * in + i] += (float)(scale * s);
        }
}

/* Writes one tensor kind of every layer (tensor p, or a norm when p < 0). */
static int write_layers(bg_nn_trainer *t, FILE *f, int p, int ffn_norm, float *buf, float *a,
                        float *b, bg_err *err)
{
    const bg_nn_config *c = &t->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        bg__tlayer *y = &t->layers[l];
        int in = c->dim, out = 1, rc;
        if (p >= 0)
            bg__nn_proj_dims(c, p, &in, &out);
        size_t n = (size_t)in * out;
        bg_cbuf *src = p >= 0 ? y->w[p] : ffn_norm ? y->rms_ffn : y->rms_att;
        rc = read_buf(t, src, buf, n, err);
        if (rc == BG_OK && p >= 0 && t->rank > 0 && t->adapters_on) {
            rc = read_buf(t, y->la[p], a, (size_t)t->rank * in, err);
            if (rc == BG_OK)
                rc = read_buf(t, y->lb[p], b, (size_t)out * t->rank, err);
            if (rc == BG_OK)
                fold(buf, a, b, in, out, t->rank, t->lscale);
        }
        if (rc != BG_OK)
            return rc;
        if (fwrite(buf, 4, n, f) != n)
            return bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    }
    return BG_OK;
}

int bg_nn_train_save_checkpoint(bg_nn_trainer *t, const char *path, bg_err *err)
{
    const bg_nn_config *c = &t->cfg;
    size_t d = (size_t)c->dim, V = (size_t)c->vocab_size, hd = (size_t)c->hidden_dim;
    size_t big = V * d > hd * d ? V * d : hd * d;
    size_t rope = (size_t)c->seq_len * (size_t)bg_nn_head_size(c);
    big = big > rope ? big : rope;
    size_t wide = hd > d ? hd : d, r = (size_t)(t->rank ? t->rank : 1);
    float *buf = calloc(big, 4), *a = malloc(4 * r * wide), *b = malloc(4 * r * wide);
    FILE *f = fopen(path, "wb");
    int rc = BG_OK;
    if (!buf || !a || !b)
        rc = bg_err_set(err, BG_ENOMEM, "checkpoint %s: out of memory", path);
    else if (!f)
        rc = bg_err_set(err, BG_EIO, "checkpoint %s: cannot create: %s", path, strerror(errno));
    int32_t h[7];
    model_fields(c, h);
    if (rc == BG_OK && fwrite(h, sizeof h, 1, f) != 1)
        rc = bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    if (rc == BG_OK)
        rc = read_buf(t, t->tok_emb, buf, V * d, err);
    if (rc == BG_OK && fwrite(buf, 4, V * d, f) != V * d)
        rc = bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    /* llama2.c order: rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 */
    int order[9][2] = {{-1, 0}, {BG__PJ_Q, 0}, {BG__PJ_K, 0}, {BG__PJ_V, 0}, {BG__PJ_O, 0},
                       {-1, 1}, {BG__PJ_1, 0}, {BG__PJ_2, 0}, {BG__PJ_3, 0}};
    for (int i = 0; i < 9 && rc == BG_OK; i++)
        rc = write_layers(t, f, order[i][0], order[i][1], buf, a, b, err);
    if (rc == BG_OK)
        rc = read_buf(t, t->rms_final, buf, d, err);
    if (rc == BG_OK && fwrite(buf, 4, d, f) != d)
        rc = bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    if (rc == BG_OK) { /* the two unused RoPE tables */
        memset(buf, 0, 4 * rope);
        if (fwrite(buf, 4, rope, f) != rope)
            rc = bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    }
    if (rc == BG_OK && !c->shared_classifier) {
        rc = read_buf(t, t->wcls, buf, V * d, err);
        if (rc == BG_OK && fwrite(buf, 4, V * d, f) != V * d)
            rc = bg_err_set(err, BG_EIO, "write failed: %s", strerror(errno));
    }
    if (f && fclose(f) != 0 && rc == BG_OK)
        rc = bg_err_set(err, BG_EIO, "checkpoint %s: close failed: %s", path, strerror(errno));
    if (rc != BG_OK && f)
        bg_err_prefix(err, "checkpoint: ");
    free(buf);
    free(a);
    free(b);
    return rc;
}
