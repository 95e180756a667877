/*
 * nn_ckpt.c — llama2.c legacy checkpoints: header decode, validation, loading.
 *
 * Checkpoints are untrusted input, so every field is checked before any
 * size is computed from it: positive, below a sanity limit (so products
 * cannot overflow 64 bits), heads dividing the width, an even head size
 * (RoPE rotates pairs), and the file length equal to what the header
 * implies (shorter = truncated, longer = a header that does not describe
 * the file). Messages name the file and the field, with what was expected.
 * A weight tensor holding a NaN or an infinity is refused, naming it.
 *
 * Layout (all little-endian int32 / float32, as written by llama2.c's
 * export): header {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative = separate classifier), seq_len}; token embedding;
 * rms_att; wq; wk; wv; wo; rms_ffn; w1; w2; w3; rms_final; two unused RoPE
 * tables of seq_len*head_size/2 floats; classifier when not shared.
 * Why read() and not mmap: a mapped file that is truncated or replaced in
 * place while in use turns into SIGBUS; a private copy cannot. The header
 * is validated against the file size before anything is allocated.
 * Ownership: ckpt_open reads the file into memory the ckpt owns; close
 * frees it. Any thread (no shared state).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/nn.h"

#define HEADER_BYTES 28

/* Sanity limits: far above any model this daemon would run on a sidecar,
 * low enough that every size product fits in 64 bits. */
#define MAX_DIM 65536
#define MAX_HIDDEN (1 << 20)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 22)
#define MAX_SEQ (1 << 20)

static int field_range(const char *name, const char *field, long v, long max, bg_err *err)
{
    if (v <= 0 || v > max)
        return bg_err_set(err, BG_EINVAL, "checkpoint %s: header field %s = %ld; expected 1..%ld",
                          name, field, v, max);
    return BG_OK;
}

int bg_nn_config_check(const bg_nn_config *c, const char *name, bg_err *err)
{
    struct {
        const char *f;
        long v, max;
    } fields[] = {
        {"dim", c->dim, MAX_DIM},
        {"hidden_dim", c->hidden_dim, MAX_HIDDEN},
        {"n_layers", c->n_layers, MAX_LAYERS},
        {"n_heads", c->n_heads, MAX_DIM},
        {"n_kv_heads", c->n_kv_heads, MAX_DIM},
        {"vocab_size", c->vocab_size, MAX_VOCAB},
        {"seq_len", c->seq_len, MAX_SEQ},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int rc = field_range(name, fields[i].f, fields[i].v, fields[i].max, err);
        if (rc != BG_OK)
            return rc;
    }
    if (c->dim % c->n_heads != 0)
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: header field n_heads = %d does not divide dim = %d", name,
                          c->n_heads, c->dim);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: header field n_kv_heads = %d; expected a divisor of "
                          "n_heads = %d",
                          name, c->n_kv_heads, c->n_heads);
    if ((c->dim / c->n_heads) % 2 != 0)
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: head size dim/n_heads = %d is odd; RoPE rotates pairs, "
                          "expected an even head size",
                          name, c->dim / c->n_heads);
    return BG_OK;
}

/* Floats of each tensor group, in file order. */
static uint64_t tensor_floats(const bg_nn_config *c, uint64_t *before_cls)
{
    uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    uint64_t kv = (uint64_t)bg_nn_kv_dim(c), V = (uint64_t)c->vocab_size;
    uint64_t hs = (uint64_t)bg_nn_head_size(c);
    uint64_t n = V * d;              /* token embedding */
    n += L * d;                      /* rms_att */
    n += L * d * d + 2 * L * kv * d; /* wq, wk, wv */
    n += L * d * d;                  /* wo */
    n += L * d;                      /* rms_ffn */
    n += 3 * L * h * d;              /* w1, w2, w3 */
    n += d;                          /* rms_final */
    n += (uint64_t)c->seq_len * hs;  /* two RoPE tables of seq_len*hs/2 */
    *before_cls = n;
    if (!c->shared_classifier)
        n += V * d;
    return n;
}

uint64_t bg_nn_ckpt_bytes(const bg_nn_config *cfg)
{
    if (bg_nn_config_check(cfg, "", NULL) != BG_OK)
        return 0;
    uint64_t before;
    return HEADER_BYTES + 4 * tensor_floats(cfg, &before);
}

/* Decodes and checks the header h against a file of len bytes. */
static int check_header(const int32_t h[7], size_t len, const char *name, bg_nn_config *out,
                        uint64_t *before_cls, bg_err *err)
{
    bg_nn_config c = {h[0], h[1], h[2], h[3], h[4], h[5], h[6], 1};
    if (h[5] < 0) {
        c.shared_classifier = 0;
        c.vocab_size = h[5] == INT32_MIN ? 0 : -h[5];
    }
    int rc = bg_nn_config_check(&c, name, err);
    if (rc != BG_OK)
        return rc;
    uint64_t need = HEADER_BYTES + 4 * tensor_floats(&c, before_cls);
    if ((uint64_t)len < need)
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: truncated: the header (dim %d, hidden_dim %d, n_layers "
                          "%d, vocab_size %d%s) needs %llu bytes, the file has %zu",
                          name, c.dim, c.hidden_dim, c.n_layers, c.vocab_size,
                          c.shared_classifier ? "" : ", separate classifier",
                          (unsigned long long)need, len);
    if ((uint64_t)len > need)
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: file has %zu bytes but the header describes %llu; "
                          "not a llama2.c legacy checkpoint or a wrong header",
                          name, len, (unsigned long long)need);
    *out = c;
    return BG_OK;
}

static int short_file(size_t len, const char *name, bg_err *err)
{
    return bg_err_set(err, BG_EINVAL,
                      "checkpoint %s: file is %zu bytes, shorter than the %d-byte header", name,
                      len, HEADER_BYTES);
}

/* A tensor with a NaN or an infinity is refused: its forward would give
 * non-finite logits, scores and losses downstream, and a NaN compares false
 * with every threshold (the RoPE tables, which nothing reads, are not
 * checked). Per-layer tensors (layers > 1) are named with their layer. */
static int finite_or_err(const float *t, uint64_t n, uint64_t layers, const char *what,
                         const char *name, bg_err *err)
{
    uint64_t i = 0;
    while (i < n && isfinite(t[i]))
        i++;
    if (i == n)
        return BG_OK;
    if (layers > 1) {
        uint64_t per = n / layers;
        return bg_err_set(err, BG_EINVAL,
                          "checkpoint %s: tensor %s of layer %llu holds a non-finite value (%g) "
                          "at float %llu of %llu",
                          name, what, (unsigned long long)(i / per), (double)t[i],
                          (unsigned long long)(i % per), (unsigned long long)per);
    }
    return bg_err_set(
        err, BG_EINVAL,
        "checkpoint %s: tensor %s holds a non-finite value (%g) at float %llu of %llu", name, what,
        (double)t[i], (unsigned long long)i, (unsigned long long)n);
}

int bg_nn_ckpt_parse(bg_nn_ckpt *ck, const void *data, size_t len, const char *name, bg_err *err)
{
    memset(ck, 0, sizeof *ck);
    if (len < HEADER_BYTES)
        return short_file(len, name, err);
    int32_t h[7];
    memcpy(h, data, sizeof h);
    bg_nn_config c;
    uint64_t before_cls;
    int rc = check_header(h, len, name, &c, &before_cls, err);
    if (rc != BG_OK)
        return rc;
    const float *p = (const float *)((const char *)data + HEADER_BYTES);
    uint64_t d = (uint64_t)c.dim, L = (uint64_t)c.n_layers, hd = (uint64_t)c.hidden_dim;
    uint64_t kv = (uint64_t)bg_nn_kv_dim(&c);
    bg_nn_weights *w = &ck->w;
    struct {
        const float **dst;
        uint64_t n;
        const char *what;
        uint64_t layers;
    } order[] = {
        {&w->tok_emb, (uint64_t)c.vocab_size * d, "token embedding", 1},
        {&w->rms_att, L * d, "rms_att", L},
        {&w->wq, L * d * d, "wq", L},
        {&w->wk, L * kv * d, "wk", L},
        {&w->wv, L * kv * d, "wv", L},
        {&w->wo, L * d * d, "wo", L},
        {&w->rms_ffn, L * d, "rms_ffn", L},
        {&w->w1, L * hd * d, "w1", L},
        {&w->w2, L * hd * d, "w2", L},
        {&w->w3, L * hd * d, "w3", L},
        {&w->rms_final, d, "rms_final", 1},
    };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        *order[i].dst = p;
        if ((rc = finite_or_err(p, order[i].n, order[i].layers, order[i].what, name, err)) != BG_OK)
            return rc;
        p += order[i].n;
    }
    w->wcls = c.shared_classifier ? w->tok_emb
                                  : (const float *)((const char *)data + HEADER_BYTES) + before_cls;
    if (!c.shared_classifier && (rc = finite_or_err(w->wcls, (uint64_t)c.vocab_size * d, 1,
                                                    "classifier", name, err)) != BG_OK)
        return rc;
    ck->cfg = c;
    return BG_OK;
}

/* Reads exactly n bytes at the current offset; 0 on success. */
static int read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int bg_nn_ckpt_open(bg_nn_ckpt *ck, const char *path, bg_err *err)
{
    memset(ck, 0, sizeof *ck);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bg_err_set(err, errno == ENOENT ? BG_ENOTFOUND : BG_EIO,
                          "checkpoint %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int32_t h[7];
    bg_nn_config c;
    uint64_t before_cls;
    size_t len = 0;
    char *data = NULL;
    int rc;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = bg_err_set(err, BG_EIO, "checkpoint %s: not a regular file", path);
        goto out;
    }
    len = (size_t)st.st_size;
    if (len < HEADER_BYTES) {
        rc = short_file(len, path, err);
        goto out;
    }
    /* the header is checked against the file size before the tensors are
     * read, so a lying header never makes us allocate */
    if (read_all(fd, h, sizeof h) != 0) {
        rc = bg_err_set(err, BG_EIO, "checkpoint %s: read failed: %s", path, strerror(errno));
        goto out;
    }
    rc = check_header(h, len, path, &c, &before_cls, err);
    if (rc != BG_OK)
        goto out;
    data = malloc(len);
    if (!data) {
        rc = bg_err_set(err, BG_ENOMEM, "checkpoint %s: cannot allocate %zu bytes", path, len);
        goto out;
    }
    memcpy(data, h, sizeof h);
    if (read_all(fd, data + sizeof h, len - sizeof h) != 0) {
        rc = bg_err_set(err, BG_EIO,
                        "checkpoint %s: the file changed or could not be read while "
                        "loading: %s",
                        path, errno ? strerror(errno) : "short read");
        goto out;
    }
    rc = bg_nn_ckpt_parse(ck, data, len, path, err);
out:
    close(fd);
    if (rc != BG_OK) {
        free(data);
        memset(ck, 0, sizeof *ck);
        return rc;
    }
    ck->data = data;
    return BG_OK;
}

void bg_nn_ckpt_close(bg_nn_ckpt *ck)
{
    if (ck) {
        free(ck->data);
        memset(ck, 0, sizeof *ck);
    }
}
