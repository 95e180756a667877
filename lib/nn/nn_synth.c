/*
 * nn_synth.c — deterministic synthetic llama2.c checkpoints.
 *
 * Tests and the benchmark need models of shapes no real checkpoint has (odd
 * widths, grouped heads, a separate classifier, the 15M shape) without
 * shipping files. Weights come from one xorshift64* stream seeded by the
 * caller, in file order, so a (config, seed) pair always gives the same
 * bytes. Scales keep activations O(1): matrices uniform in
 * ±1/sqrt(fan_in), norms near 1, embeddings in ±0.5; the RoPE tables are
 * zeros (unused by llama2.c and by us). Any thread.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn.h"

typedef struct wr {
    FILE *f;
    uint64_t s;
    int failed;
} wr;

static float next_uniform(wr *w)
{
    w->s ^= w->s >> 12;
    w->s ^= w->s << 25;
    w->s ^= w->s >> 27;
    uint64_t r = w->s * 0x2545F4914F6CDD1Dull;
    return (float)((double)(r >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f; /* [-1, 1) */
}

/* n floats: center + scale * U(-1, 1) (scale 0 writes `center`). */
static void put(wr *w, uint64_t n, float center, float scale)
{
    float buf[1024];
    while (n > 0 && !w->failed) {
        size_t k = n < 1024 ? (size_t)n : 1024;
        for (size_t i = 0; i < k; i++)
            buf[i] = scale != 0.0f ? center + scale * next_uniform(w) : center;
        if (fwrite(buf, sizeof(float), k, w->f) != k)
            w->failed = 1;
        n -= k;
    }
}

int bg_nn_synth_write(const char *path, const bg_nn_config *cfg, uint64_t seed, bg_err *err)
{
    int rc = bg_nn_config_check(cfg, path, err);
    if (rc != BG_OK)
        return rc;
    wr w = {fopen(path, "wb"), seed ? seed : 0x853C49E6748FEA9Bull, 0};
    if (!w.f)
        return bg_err_set(err, BG_EIO, "synthetic checkpoint %s: cannot create: %s", path,
                          strerror(errno));
    int32_t h[7] = {cfg->dim,        cfg->hidden_dim,
                    cfg->n_layers,   cfg->n_heads,
                    cfg->n_kv_heads, cfg->shared_classifier ? cfg->vocab_size : -cfg->vocab_size,
                    cfg->seq_len};
    if (fwrite(h, sizeof h, 1, w.f) != 1)
        w.failed = 1;
    uint64_t d = (uint64_t)cfg->dim, hd = (uint64_t)cfg->hidden_dim, L = (uint64_t)cfg->n_layers;
    uint64_t kv = (uint64_t)bg_nn_kv_dim(cfg), V = (uint64_t)cfg->vocab_size;
    float sd = 1.0f / sqrtf((float)d), sh = 1.0f / sqrtf((float)hd);
    put(&w, V * d, 0.0f, 0.5f);    /* token embedding */
    put(&w, L * d, 1.0f, 0.1f);    /* rms_att */
    put(&w, L * d * d, 0.0f, sd);  /* wq */
    put(&w, L * kv * d, 0.0f, sd); /* wk */
    put(&w, L * kv * d, 0.0f, sd); /* wv */
    put(&w, L * d * d, 0.0f, sd);  /* wo */
    put(&w, L * d, 1.0f, 0.1f);    /* rms_ffn */
    put(&w, L * hd * d, 0.0f, sd); /* w1 */
    put(&w, L * d * hd, 0.0f, sh); /* w2 */
    put(&w, L * hd * d, 0.0f, sd); /* w3 */
    put(&w, d, 1.0f, 0.1f);        /* rms_final */
    put(&w, (uint64_t)cfg->seq_len * (uint64_t)bg_nn_head_size(cfg), 0.0f, 0.0f); /* RoPE */
    if (!cfg->shared_classifier)
        put(&w, V * d, 0.0f, sd); /* classifier */
    if (fclose(w.f) != 0)
        w.failed = 1;
    if (w.failed)
        return bg_err_set(err, BG_EIO, "synthetic checkpoint %s: write failed: %s", path,
                          strerror(errno));
    return BG_OK;
}
