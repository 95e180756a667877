/*
 * compute_ref.c — scalar reference of every op (see compute_ref.h).
 *
 * Shaped like llama2.c's run.c on purpose: float accumulators, loops in the
 * natural order, no threads, no SIMD, no allocation. Attention recomputes
 * the scores in three passes (max, sum, weighted sum) instead of keeping a
 * scratch row, so the function needs no memory of its own. Any thread.
 */
#include "compute/compute_ref.h"

#include <math.h>

void bg_ref_matmul(float *out, const float *x, const float *w, int M, int N, int K)
{
    for (int m = 0; m < M; m++) {
        const float *xr = x + (long)m * K;
        for (int n = 0; n < N; n++) {
            const float *wr = w + (long)n * K;
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += xr[k] * wr[k];
            out[(long)m * N + n] = s;
        }
    }
}

void bg_ref_rmsnorm(float *out, const float *x, const float *w, int T, int n, float eps)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (long)t * n;
        float *o = out + (long)t * n;
        float ss = 0.0f;
        for (int i = 0; i < n; i++)
            ss += xr[i] * xr[i];
        ss = 1.0f / sqrtf(ss / (float)n + eps);
        for (int i = 0; i < n; i++)
            o[i] = w[i] * (ss * xr[i]);
    }
}

static void rope_rows(float *v, int T, int pos0, int heads, int hs)
{
    for (int t = 0; t < T; t++) {
        float *row = v + (long)t * heads * hs;
        int pos = pos0 + t;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i + 1 < hs; i += 2) {
                float freq = 1.0f / powf(10000.0f, (float)i / (float)hs);
                float ang = (float)pos * freq;
                float fcr = cosf(ang), fci = sinf(ang);
                float *p = row + h * hs + i;
                float a = p[0], b = p[1];
                p[0] = a * fcr - b * fci;
                p[1] = a * fci + b * fcr;
            }
        }
    }
}

void bg_ref_rope(float *q, float *k, int T, int pos0, int n_heads, int n_kv_heads, int head_size)
{
    rope_rows(q, T, pos0, n_heads, head_size);
    rope_rows(k, T, pos0, n_kv_heads, head_size);
}

void bg_ref_softmax(float *x, int rows, int n)
{
    for (int r = 0; r < rows; r++) {
        float *v = x + (long)r * n;
        float mx = v[0];
        for (int i = 1; i < n; i++)
            if (v[i] > mx)
                mx = v[i];
        float sum = 0.0f;
        for (int i = 0; i < n; i++) {
            v[i] = expf(v[i] - mx);
            sum += v[i];
        }
        for (int i = 0; i < n; i++)
            v[i] /= sum;
    }
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void bg_ref_attention(float *out, const float *q, const float *kcache, const float *vcache, int T,
                      int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len)
{
    (void)seq_len; /* rows read are 0..pos0+T-1 < seq_len */
    int kv_dim = n_kv_heads * head_size;
    int group = n_heads / n_kv_heads;
    float scale = 1.0f / sqrtf((float)head_size);
    for (int t = 0; t < T; t++) {
        int last = pos0 + t;
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + ((long)t * n_heads + h) * head_size;
            long koff = (long)(h / group) * head_size;
            float *o = out + ((long)t * n_heads + h) * head_size;
            float mx = -INFINITY;
            for (int p = 0; p <= last; p++) {
                float s = dot(qh, kcache + (long)p * kv_dim + koff, head_size) * scale;
                if (s > mx)
                    mx = s;
            }
            float sum = 0.0f;
            for (int p = 0; p <= last; p++)
                sum += expf(dot(qh, kcache + (long)p * kv_dim + koff, head_size) * scale - mx);
            for (int i = 0; i < head_size; i++)
                o[i] = 0.0f;
            for (int p = 0; p <= last; p++) {
                float a =
                    expf(dot(qh, kcache + (long)p * kv_dim + koff, head_size) * scale - mx) / sum;
                const float *v = vcache + (long)p * kv_dim + koff;
                for (int i = 0; i < head_size; i++)
                    o[i] += a * v[i];
            }
        }
    }
}

void bg_ref_swiglu(float *h, const float *g, int n)
{
    for (int i = 0; i < n; i++) {
        float v = h[i];
        v *= 1.0f / (1.0f + expf(-v));
        h[i] = v * g[i];
    }
}

void bg_ref_add(float *x, const float *y, int n)
{
    for (int i = 0; i < n; i++)
        x[i] += y[i];
}

void bg_ref_copy(float *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = src[i];
}

void bg_ref_embed(float *out, const float *table, const int32_t *tokens, int T, int dim)
{
    for (int t = 0; t < T; t++)
        bg_ref_copy(out + (long)t * dim, table + (long)tokens[t] * dim, dim);
}

void bg_ref_logsoftmax_gather(float *out, const float *logits, const int32_t *targets, int T, int V)
{
    for (int t = 0; t < T; t++) {
        const float *l = logits + (long)t * V;
        float mx = l[0];
        for (int i = 1; i < V; i++)
            if (l[i] > mx)
                mx = l[i];
        float sum = 0.0f;
        for (int i = 0; i < V; i++)
            sum += expf(l[i] - mx);
        out[t] = l[targets[t]] - mx - logf(sum);
    }
}
