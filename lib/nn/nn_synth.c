/*
 * nn_synth.c — deterministic synthetic llama2.c checkpoints.
 *
 * Tests and the benchmark need models of shapes no real checkpoint has (odd
 * widths, grouped heads, a separate classifier, the 15M shape) without
 * shipping files. Weights come from one xorshift64* stream seeded by the
 * caller, in file order, so a (config, seed) pair always gives the same
 * bytes. Scales keep activations O(1): matrices uniform in
 * ±1/sqrt(fan_in), norms near 1, embeddings in ±0.5; the RoPE tables are
 * zeros (unused by llama2.c and by us).
 * bg_nn_init_write is the other use: the starting weights of a model
 * trained from scratch (`lm train --init`), the standard small init of
 * GPT-2 / llama2.c's train.py: every matrix and the embedding N(0, 0.02),
 * the two projections that add into the residual stream (wo, w2) N(0,
 * 0.02 / sqrt(2 * layers)) so the stream's variance does not grow with
 * depth, norms exactly 1. (The synthetic scales above make large logits
 * at step 0: the recipe started at a held-out loss of 11.3 nats with a
 * vocabulary of 512, ln 512 = 6.2.) Any thread.
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
    int normal; /* put() draws N(0, 1) instead of U(-1, 1) */
} wr;

static float next_uniform(wr *w)
{
    w->s ^= w->s >> 12;
    w->s ^= w->s << 25;
    w->s ^= w->s >> 27;
    uint64_t r = w->s * 0x2545F4914F6CDD1Dull;
    return (float)((double)(r >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f; /* [-1, 1) */
}

/* N(0, 1) by Box-Muller from two uniforms (one value per pair: simple, and
 * the init is written once). */
static float next_normal(wr *w)
{
    double u1 = 0.5 * ((double)next_uniform(w) + 1.0), u2 = 0.5 * ((double)next_uniform(w) + 1.0);
    if (u1 < 1e-12)
        u1 = 1e-12;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* n floats: center + scale * U(-1, 1), or center + scale * N(0, 1) when
 * w->normal (scale 0 writes `center`). */
static void put(wr *w, uint64_t n, float center, float scale)
{
    float buf[1024];
    while (n > 0 && !w->failed) {
        size_t k = n < 1024 ? (size_t)n : 1024;
        for (size_t i = 0; i < k; i++)
            buf[i] = scale == 0.0f ? center
                     : w->normal   ? center + scale * next_normal(w)
                                   : center + scale * next_uniform(w);
        if (fwrite(buf, sizeof(float), k, w->f) != k)
            w->failed = 1;
        n -= k;
    }
}

/* Scales of one writer (see the header): sd for the matrices, sres for
 * wo and w2, sh for w2 when not sres-scaled, semb for the embedding, snorm
 * the spread of the norms around 1, scls for a separate classifier. */
typedef struct scales {
    float semb, snorm, sd, sres_o, sres_2, scls;
} scales;

static int write_ckpt(const char *path, const bg_nn_config *cfg, uint64_t seed, int normal,
                      const scales *sc, bg_err *err)
{
    int rc = bg_nn_config_check(cfg, path, err);
    if (rc != BG_OK)
        return rc;
    wr w = {fopen(path, "wb"), seed ? seed : 0x853C49E6748FEA9Bull, 0, normal};
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
    put(&w, V * d, 0.0f, sc->semb);        /* token embedding */
    put(&w, L * d, 1.0f, sc->snorm);       /* rms_att */
    put(&w, L * d * d, 0.0f, sc->sd);      /* wq */
    put(&w, L * kv * d, 0.0f, sc->sd);     /* wk */
    put(&w, L * kv * d, 0.0f, sc->sd);     /* wv */
    put(&w, L * d * d, 0.0f, sc->sres_o);  /* wo */
    put(&w, L * d, 1.0f, sc->snorm);       /* rms_ffn */
    put(&w, L * hd * d, 0.0f, sc->sd);     /* w1 */
    put(&w, L * d * hd, 0.0f, sc->sres_2); /* w2 */
    put(&w, L * hd * d, 0.0f, sc->sd);     /* w3 */
    put(&w, d, 1.0f, sc->snorm);           /* rms_final */
    put(&w, (uint64_t)cfg->seq_len * (uint64_t)bg_nn_head_size(cfg), 0.0f, 0.0f); /* RoPE */
    if (!cfg->shared_classifier)
        put(&w, V * d, 0.0f, sc->scls); /* classifier */
    if (fclose(w.f) != 0)
        w.failed = 1;
    if (w.failed)
        return bg_err_set(err, BG_EIO, "synthetic checkpoint %s: write failed: %s", path,
                          strerror(errno));
    return BG_OK;
}

int bg_nn_synth_write(const char *path, const bg_nn_config *cfg, uint64_t seed, bg_err *err)
{
    float sd = 1.0f / sqrtf((float)cfg->dim), sh = 1.0f / sqrtf((float)cfg->hidden_dim);
    scales sc = {0.5f, 0.1f, sd, sd, sh, sd};
    return write_ckpt(path, cfg, seed, 0, &sc, err);
}

int bg_nn_init_write(const char *path, const bg_nn_config *cfg, uint64_t seed, bg_err *err)
{
    float res = 0.02f / sqrtf(2.0f * (float)(cfg->n_layers > 0 ? cfg->n_layers : 1));
    scales sc = {0.02f, 0.0f, 0.02f, res, res, 0.02f};
    return write_ckpt(path, cfg, seed, 1, &sc, err);
}
