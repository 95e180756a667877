/*
 * compute_ref.h — the scalar reference of every op in compute.h.
 *
 * What: plain single-threaded C on host float arrays, one function per op,
 * written to be obviously right rather than fast (llama2.c style: float
 * accumulators, straight loops). It is the test oracle for BOTH backends
 * (CPU and Vulkan) and the "plain forward pass" floor of the benchmark.
 *
 * Contract: shapes and semantics are exactly those of compute.h (read its
 * "Shapes" block); arrays are row-major, sizes in elements; the caller
 * passes valid shapes (no checking here) and owns every array. Nothing is
 * allocated, nothing is kept: every function is pure apart from writing its
 * output (or its in-place argument), so any thread may call any function.
 * Token/target ids are int32 and must lie in range.
 *
 * These signatures are stable: the Vulkan tests call them.
 */
#ifndef BG_COMPUTE_REF_H
#define BG_COMPUTE_REF_H

#include <stdint.h>

/* out[M,N] = x[M,K] · w[N,K]^T */
void bg_ref_matmul(float *out, const float *x, const float *w, int M, int N, int K);
/* out[T,n] = x[T,n] / sqrt(mean(x^2) + eps) * w[n]; out may equal x */
void bg_ref_rmsnorm(float *out, const float *x, const float *w, int T, int n, float eps);
/* in place on q[T, n_heads*hs] and k[T, n_kv_heads*hs]; row t at position pos0+t */
void bg_ref_rope(float *q, float *k, int T, int pos0, int n_heads, int n_kv_heads, int head_size);
/* in place over each row of x[rows, n] */
void bg_ref_softmax(float *x, int rows, int n);
/* out[T, n_heads*hs]; kcache/vcache[seq_len, n_kv_heads*hs]; query t sees rows 0..pos0+t */
void bg_ref_attention(float *out, const float *q, const float *kcache, const float *vcache, int T,
                      int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len);
/* out[T, n_heads*hs]: query t sees all P rows of kprefix/vprefix [P, n_kv_heads*hs],
 * then rows 0..pos0+t of ktail/vtail [.., n_kv_heads*hs] (bg_op_attention_prefix):
 * bg_ref_attention over the concatenation, written out */
void bg_ref_attention_prefix(float *out, const float *q, const float *kprefix, const float *vprefix,
                             int P, const float *ktail, const float *vtail, int T, int pos0,
                             int n_heads, int n_kv_heads, int head_size);
/* in place h[i] = silu(h[i]) * g[i] */
void bg_ref_swiglu(float *h, const float *g, int n);
/* in place x[i] += y[i] */
void bg_ref_add(float *x, const float *y, int n);
/* dst[0..n) = src[0..n) */
void bg_ref_copy(float *dst, const float *src, int n);
/* out[T, dim] = table[tokens[t], :] */
void bg_ref_embed(float *out, const float *table, const int32_t *tokens, int T, int dim);
/* out[t] = log_softmax(logits[t, :])[targets[t]] over V columns */
void bg_ref_logsoftmax_gather(float *out, const float *logits, const int32_t *targets, int T,
                              int V);

/* ---- training ops (compute.h "training ops"; same shapes and "+=" / "="
 * conventions). Sums over rows, positions and the inner dimension use double
 * accumulators, so these are the oracle for float backends. ---- */

/* x[0..n) = value */
void bg_ref_fill(float *x, float value, int n);
/* y[i] += alpha * x[i] */
void bg_ref_axpy(float *y, const float *x, float alpha, int n);
/* dtable[tokens[t], :] += dout[t, :] */
void bg_ref_embed_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int dim);
/* dx[T,n] += ..., dw[n] += ... (see compute.h) */
void bg_ref_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                             const float *w, int T, int n, float eps);
/* dx[M,K] (=, or += when accumulate) dy[M,N] · w[N,K] */
void bg_ref_matmul_backward_x(float *dx, const float *dy, const float *w, int M, int N, int K,
                              int accumulate);
/* dw[N,K] += dy[M,N]^T · x[M,K] */
void bg_ref_matmul_backward_w(float *dw, const float *dy, const float *x, int M, int N, int K);
/* in place: the transposed rotation of bg_ref_rope */
void bg_ref_rope_backward(float *dq, float *dk, int T, int pos0, int n_heads, int n_kv_heads,
                          int head_size);
/* out[B*T, nh*hs], lse[B*T, nh] from q[B*T, nh*hs], k, v[B*T, nkv*hs] */
void bg_ref_attention_train(float *out, float *lse, const float *q, const float *k, const float *v,
                            int B, int T, int n_heads, int n_kv_heads, int head_size);
/* dq[B*T, nh*hs], dk, dv[B*T, nkv*hs] (=) */
void bg_ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *out, const float *lse,
                               int B, int T, int n_heads, int n_kv_heads, int head_size);
/* dh, dg (=); dh may alias h, dg may alias g */
void bg_ref_swiglu_backward(float *dh, float *dg, const float *dout, const float *h, const float *g,
                            int n);
/* lp[T] (=), dlogits[T,V] (=, may alias logits) */
void bg_ref_xent(float *lp, float *dlogits, const float *logits, const int32_t *targets,
                 const float *weights, int T, int V);
/* out[0] = sum x^2 */
void bg_ref_sumsq(float *out, const float *x, int n);
/* One AdamW step (bg_adamw_params fields passed one by one, so this header
 * does not depend on compute.h). */
void bg_ref_adamw(float *p, const float *g, float *m, float *v, const float *gsq, int n_gsq, int n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm,
                  int step);

#endif
