/*
 * nn_sample.c — picking the next token (greedy, temperature, top-p) with a
 * seeded RNG, and the generate loop built on bg_nn_forward.
 *
 * Same semantics as llama2.c's sampler: temperature 0 is argmax; otherwise
 * logits/temperature → softmax → if topp < 1 the smallest set of tokens
 * whose probability reaches topp (sorted descending) is renormalised and
 * sampled. The RNG is xorshift64*, so a seed reproduces a run exactly.
 * Ownership: the sampler owns its candidate scratch (close frees it).
 * One thread at a time per sampler.
 */
#include <math.h>
#include <stdlib.h>

#include "compute/compute_ref.h"
#include "nn/nn.h"

typedef struct cand {
    float p;
    int id;
} cand;

int bg_nn_sampler_init(bg_nn_sampler *s, int vocab, float temperature, float topp, uint64_t seed,
                       bg_err *err)
{
    s->scratch = NULL;
    if (vocab <= 0 || !(temperature >= 0.0f) || !(topp > 0.0f && topp <= 1.0f))
        return bg_err_set(err, BG_EINVAL,
                          "sampler: temperature %g, top-p %g; expected temperature >= 0 and "
                          "0 < top-p <= 1",
                          (double)temperature, (double)topp);
    s->temperature = temperature;
    s->topp = topp;
    s->rng = seed ? seed : 0x2545F4914F6CDD1Dull;
    s->vocab = vocab;
    s->scratch = malloc(sizeof(cand) * (size_t)vocab);
    if (!s->scratch)
        return bg_err_set(err, BG_ENOMEM, "sampler: out of memory");
    return BG_OK;
}

void bg_nn_sampler_close(bg_nn_sampler *s)
{
    free(s->scratch);
    s->scratch = NULL;
}

static float next_f01(bg_nn_sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static int cmp_desc(const void *a, const void *b)
{
    float pa = ((const cand *)a)->p, pb = ((const cand *)b)->p;
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

int bg_nn_sample(bg_nn_sampler *s, float *logits)
{
    int n = s->vocab;
    if (s->temperature == 0.0f)
        return argmax(logits, n);
    for (int i = 0; i < n; i++)
        logits[i] /= s->temperature;
    bg_ref_softmax(logits, 1, n);
    float coin = next_f01(s);
    if (s->topp >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (coin < cdf)
                return i;
        }
        return n - 1;
    }
    /* top-p: drop tokens that cannot be in the nucleus before sorting */
    cand *c = s->scratch;
    int m = 0;
    float cutoff = (1.0f - s->topp) / (float)(n > 1 ? n - 1 : 1);
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff)
            c[m++] = (cand){logits[i], i};
    qsort(c, (size_t)m, sizeof *c, cmp_desc);
    float cum = 0.0f;
    int last = m - 1;
    for (int i = 0; i < m; i++) {
        cum += c[i].p;
        if (cum > s->topp) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += c[i].p;
        if (r < cdf)
            return c[i].id;
    }
    return c[last].id;
}

int bg_nn_generate(bg_nn_model *m, const int32_t *prompt, int n_prompt, int steps, bg_nn_sampler *s,
                   int32_t *out, int *n_out, bg_err *err)
{
    const bg_nn_config *c = bg_nn_model_config(m);
    *n_out = 0;
    if (n_prompt < 1 || n_prompt > c->seq_len || steps < 0)
        return bg_err_set(err, BG_EINVAL,
                          "generate: prompt of %d tokens, %d steps; expected 1..%d prompt tokens "
                          "and steps >= 0",
                          n_prompt, steps, c->seq_len);
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
    if (!logits)
        return bg_err_set(err, BG_ENOMEM, "generate: out of memory");
    int rc = steps > 0 ? bg_nn_forward(m, prompt, n_prompt, 0, logits, err) : BG_OK;
    int pos = n_prompt;
    for (int i = 0; rc == BG_OK && i < steps; i++) {
        int32_t next = (int32_t)bg_nn_sample(s, logits);
        out[(*n_out)++] = next;
        if (i + 1 == steps || pos >= c->seq_len)
            break;
        rc = bg_nn_forward(m, &next, 1, pos++, logits, err);
    }
    free(logits);
    return rc;
}
