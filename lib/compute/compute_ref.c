/*
 * compute_ref.c — scalar reference of every op (see compute_ref.h).
 *
 * Shaped like llama2.c's run.c on purpose: float accumulators, loops in the
 * natural order, no threads, no SIMD, no allocation. Attention recomputes
 * the scores in three passes (max, sum, weighted sum) instead of keeping a
 * scratch row, so the function needs no memory of its own. Any thread.
 *
 * The training ops (second half) accumulate in double wherever they sum
 * (rows, positions, the inner dimension), so they serve as the oracle of the
 * float backends; attention's backward recomputes P from the saved lse, as
 * the backends do, and needs no memory either.
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

/* sign +1: the forward rotation; -1: its transpose (the backward) */
static void rope_rows(float *v, int T, int pos0, int heads, int hs, float sign)
{
    for (int t = 0; t < T; t++) {
        float *row = v + (long)t * heads * hs;
        int pos = pos0 + t;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i + 1 < hs; i += 2) {
                float freq = 1.0f / powf(10000.0f, (float)i / (float)hs);
                float ang = (float)pos * freq;
                float fcr = cosf(ang), fci = sign * sinf(ang);
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
    rope_rows(q, T, pos0, n_heads, head_size, 1.0f);
    rope_rows(k, T, pos0, n_kv_heads, head_size, 1.0f);
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

/* Row p of the concatenation [prefix (P rows); tail]. */
static const float *cat_row(const float *pre, const float *tail, int P, int p, long kv_dim)
{
    return p < P ? pre + (long)p * kv_dim : tail + (long)(p - P) * kv_dim;
}

void bg_ref_attention_prefix(float *out, const float *q, const float *kprefix, const float *vprefix,
                             int P, const float *ktail, const float *vtail, int T, int pos0,
                             int n_heads, int n_kv_heads, int head_size)
{
    long kv_dim = (long)n_kv_heads * head_size;
    int group = n_heads / n_kv_heads;
    float scale = 1.0f / sqrtf((float)head_size);
    for (int t = 0; t < T; t++) {
        int n = P + pos0 + t + 1; /* keys: the prefix, then tail rows 0..pos0+t */
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + ((long)t * n_heads + h) * head_size;
            long koff = (long)(h / group) * head_size;
            float *o = out + ((long)t * n_heads + h) * head_size;
            float mx = -INFINITY, sum = 0.0f;
            for (int p = 0; p < n; p++) {
                float s = dot(qh, cat_row(kprefix, ktail, P, p, kv_dim) + koff, head_size) * scale;
                mx = s > mx ? s : mx;
            }
            for (int p = 0; p < n; p++)
                sum += expf(
                    dot(qh, cat_row(kprefix, ktail, P, p, kv_dim) + koff, head_size) * scale - mx);
            for (int i = 0; i < head_size; i++)
                o[i] = 0.0f;
            for (int p = 0; p < n; p++) {
                float a =
                    expf(dot(qh, cat_row(kprefix, ktail, P, p, kv_dim) + koff, head_size) * scale -
                         mx) /
                    sum;
                const float *v = cat_row(vprefix, vtail, P, p, kv_dim) + koff;
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

/* ---- training ops ------------------------------------------------------- */

void bg_ref_fill(float *x, float value, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = value;
}

void bg_ref_axpy(float *y, const float *x, float alpha, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

void bg_ref_embed_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int dim)
{
    for (int t = 0; t < T; t++)
        bg_ref_axpy(dtable + (long)tokens[t] * dim, dout + (long)t * dim, 1.0f, dim);
}

void bg_ref_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                             const float *w, int T, int n, float eps)
{
    for (int t = 0; t < T; t++) {
        const float *xr = x + (long)t * n, *dr = dout + (long)t * n;
        double ss = 0.0, dot_dwx = 0.0;
        for (int i = 0; i < n; i++) {
            ss += (double)xr[i] * xr[i];
            dot_dwx += (double)dr[i] * w[i] * xr[i];
        }
        double r = 1.0 / sqrt(ss / n + eps);
        double c = r * r * r * dot_dwx / n;
        for (int i = 0; i < n; i++) {
            dx[(long)t * n + i] += (float)(r * w[i] * dr[i] - c * xr[i]);
            dw[i] += (float)((double)dr[i] * xr[i] * r);
        }
    }
}

void bg_ref_matmul_backward_x(float *dx, const float *dy, const float *w, int M, int N, int K,
                              int accumulate)
{
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = 0.0;
            for (int n = 0; n < N; n++)
                s += (double)dy[(long)m * N + n] * w[(long)n * K + k];
            float *o = dx + (long)m * K + k;
            *o = accumulate ? *o + (float)s : (float)s;
        }
}

void bg_ref_matmul_backward_w(float *dw, const float *dy, const float *x, int M, int N, int K)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0.0;
            for (int m = 0; m < M; m++)
                s += (double)dy[(long)m * N + n] * x[(long)m * K + k];
            dw[(long)n * K + k] += (float)s;
        }
}

void bg_ref_rope_backward(float *dq, float *dk, int T, int pos0, int n_heads, int n_kv_heads,
                          int head_size)
{
    rope_rows(dq, T, pos0, n_heads, head_size, -1.0f);
    rope_rows(dk, T, pos0, n_kv_heads, head_size, -1.0f);
}

static double ddot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

void bg_ref_attention_train(float *out, float *lse, const float *q, const float *k, const float *v,
                            int B, int T, int n_heads, int n_kv_heads, int head_size)
{
    int qd = n_heads * head_size, kvd = n_kv_heads * head_size, group = n_heads / n_kv_heads;
    double scale = 1.0 / sqrt((double)head_size);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < n_heads; h++) {
                long row = (long)b * T + t;
                const float *qh = q + row * qd + h * head_size;
                long koff = (long)(h / group) * head_size;
                double mx = -INFINITY;
                for (int p = 0; p <= t; p++) {
                    double s = ddot(qh, k + ((long)b * T + p) * kvd + koff, head_size) * scale;
                    mx = s > mx ? s : mx;
                }
                double sum = 0.0;
                for (int p = 0; p <= t; p++)
                    sum +=
                        exp(ddot(qh, k + ((long)b * T + p) * kvd + koff, head_size) * scale - mx);
                double l = mx + log(sum);
                lse[row * n_heads + h] = (float)l;
                for (int i = 0; i < head_size; i++) {
                    double o = 0.0;
                    for (int p = 0; p <= t; p++) {
                        long kr = ((long)b * T + p) * kvd + koff;
                        o += exp(ddot(qh, k + kr, head_size) * scale - l) * v[kr + i];
                    }
                    out[row * qd + h * head_size + i] = (float)o;
                }
            }
}

void bg_ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *out, const float *lse,
                               int B, int T, int n_heads, int n_kv_heads, int head_size)
{
    int qd = n_heads * head_size, kvd = n_kv_heads * head_size, group = n_heads / n_kv_heads;
    double scale = 1.0 / sqrt((double)head_size);
    bg_ref_fill(dk, 0.0f, B * T * kvd);
    bg_ref_fill(dv, 0.0f, B * T * kvd);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < n_heads; h++) {
                long row = (long)b * T + t;
                const float *qh = q + row * qd + h * head_size;
                const float *doh = dout + row * qd + h * head_size;
                long koff = (long)(h / group) * head_size;
                double D = ddot(doh, out + row * qd + h * head_size, head_size);
                double l = lse[row * n_heads + h];
                float *dqh = dq + row * qd + h * head_size;
                for (int i = 0; i < head_size; i++)
                    dqh[i] = 0.0f;
                for (int p = 0; p <= t; p++) {
                    long kr = ((long)b * T + p) * kvd + koff;
                    double P = exp(ddot(qh, k + kr, head_size) * scale - l);
                    double dP = ddot(doh, v + kr, head_size);
                    double dS = P * (dP - D);
                    for (int i = 0; i < head_size; i++) {
                        dqh[i] += (float)(scale * dS * k[kr + i]);
                        dk[kr + i] += (float)(scale * dS * qh[i]);
                        dv[kr + i] += (float)(P * doh[i]);
                    }
                }
            }
}

void bg_ref_swiglu_backward(float *dh, float *dg, const float *dout, const float *h, const float *g,
                            int n)
{
    for (int i = 0; i < n; i++) {
        double x = h[i], gi = g[i], d = dout[i];
        double s = 1.0 / (1.0 + exp(-x));
        dh[i] = (float)(d * gi * s * (1.0 + x * (1.0 - s)));
        dg[i] = (float)(d * x * s);
    }
}

void bg_ref_xent(float *lp, float *dlogits, const float *logits, const int32_t *targets,
                 const float *weights, int T, int V)
{
    for (int t = 0; t < T; t++) {
        const float *l = logits + (long)t * V;
        float *d = dlogits + (long)t * V;
        double mx = l[0];
        for (int i = 1; i < V; i++)
            mx = l[i] > mx ? l[i] : mx;
        double sum = 0.0;
        for (int i = 0; i < V; i++)
            sum += exp(l[i] - mx);
        double lse = mx + log(sum), w = weights[t];
        lp[t] = (float)(l[targets[t]] - lse);
        for (int i = 0; i < V; i++) /* reads l[i] before writing d[i]: in place is fine */
            d[i] = (float)(w * (exp(l[i] - lse) - (i == targets[t] ? 1.0 : 0.0)));
    }
}

void bg_ref_sumsq(float *out, const float *x, int n)
{
    out[0] = (float)ddot(x, x, n);
}

void bg_ref_adamw(float *p, const float *g, float *m, float *v, const float *gsq, int n_gsq, int n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                  int step)
{
    double scale = 1.0;
    if (max_norm > 0.0f) {
        double ss = 0.0;
        for (int j = 0; j < n_gsq; j++)
            ss += gsq[j];
        double norm = sqrt(ss);
        scale = max_norm / (norm + 1e-6);
        scale = scale < 1.0 ? scale : 1.0;
    }
    double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    for (int i = 0; i < n; i++) {
        double gi = scale * g[i];
        double mi = beta1 * (double)m[i] + (1.0 - beta1) * gi;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(p[i] - lr * ((mi / bc1) / (sqrt(vi / bc2) + eps) + weight_decay * p[i]));
    }
}
