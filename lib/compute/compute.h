/*
 * compute.h — the one op interface behind which the CPU and Vulkan backends
 * sit (spec/compute.md). The transformer (lib/nn) is written once against
 * it.
 *
 * Model
 *   A backend instance (bg_compute) owns device buffers (bg_cbuf). Tensors are
 *   float32, row-major, addressed as (buffer, element offset) views; token and
 *   target ids are int32 stored in buffers the same way. Ops are *recorded*
 *   between bg_compute_begin() and bg_compute_submit(): the CPU backend runs
 *   each op at once (threads + SIMD), the Vulkan backend appends a dispatch to
 *   one command buffer and runs it at submit. The caller inserts
 *   bg_compute_barrier() between dependent ops (a write followed by a read of
 *   the same data) and omits it between independent ones (Q, K, V
 *   projections; W1 and W3). Buffer reads and writes from the host are only
 *   valid outside begin/submit.
 *
 * Shapes (all sizes in elements)
 *   matmul       out[M,N] = x[M,K] · w[N,K]^T   (w is [out,in], llama2.c layout;
 *                M == 1 is the matvec of one token; backends pick the kernel)
 *   rmsnorm      out[T,n] = x[T,n] / sqrt(mean(x^2) + eps) * w[n]
 *   rope         in place on q[T, n_heads*hs] and k[T, n_kv_heads*hs], token t at
 *                position pos0+t; adjacent pairs (2i, 2i+1) within each head rotate
 *                by angle pos * 10000^(-2i/hs)  (llama2.c semantics)
 *   softmax      in place over each row of x[rows, n]
 *   attention    out[T, n_heads*hs]: query t (position pos0+t) attends causally
 *                to cache rows 0..pos0+t of kcache/vcache[seq_len, n_kv_heads*hs];
 *                head h reads kv head h / (n_heads / n_kv_heads); scale 1/sqrt(hs)
 *   swiglu       in place h[i] = silu(h[i]) * g[i] over n elements
 *   add          in place x[i] += y[i] over n elements
 *   copy         dst[0..n) = src[0..n) (e.g. K/V rows into the cache)
 *   embed        out[T, dim] = table[tokens[t], :]
 *   logsoftmax_gather  out[t] = log_softmax(logits[t, :])[targets[t]] over V columns
 *
 * Training (the backward half; shapes and conventions in the block above
 * the training ops below, math in docs/TRAINING.md)
 *   fill, axpy, embed_backward, rmsnorm_backward, matmul_backward_x,
 *   matmul_backward_w, rope_backward, attention_train, attention_backward,
 *   swiglu_backward, xent, sumsq, adamw. The residual add needs no backward
 *   op: its gradient passes through unchanged to both inputs (the caller
 *   adds it where both paths meet, with bg_op_add or an accumulating
 *   backward). The CPU and Vulkan backends implement every op; a backend
 *   whose table lacks one (a new backend, built op by op) fails it with
 *   "compute op X: the <backend> backend has no kernel for it" (the
 *   recording is poisoned; submit returns BG_EUNAVAIL), never silently.
 *
 * Ownership and threads
 *   A bg_compute and its buffers are used by one thread at a time (the caller
 *   serialises). bg_compute_destroy frees every buffer it still owns.
 *
 * Errors
 *   Functions returning int return BG_OK or a BG_E* code with err filled;
 *   a failed op leaves the recording poisoned: submit then returns the error.
 */
#ifndef BG_COMPUTE_H
#define BG_COMPUTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

typedef struct bg_compute bg_compute;
typedef struct bg_cbuf bg_cbuf;

/* A view: buffer plus offset in 4-byte elements. */
typedef struct bg_tview {
    bg_cbuf *buf;
    size_t off;
} bg_tview;

typedef enum bg_backend_kind {
    BG_BACKEND_CPU = 0,
    BG_BACKEND_VULKAN = 1,
    BG_BACKEND_AUTO = 2, /* Vulkan when a usable non-CPU device exists, else CPU */
} bg_backend_kind;

/* The input precision of the matmuls (forward and both backward GEMMs):
 * FP32, or BF16 operands (rounded to nearest even when packed) multiplied
 * with fp32 accumulation (avx512_bf16's vdpbf16ps). Everything else — the
 * other ops, the weights and gradients in buffers, the optimizer — stays
 * fp32. BF16 is an opt-in for training (bg_compute_set_precision); CPU
 * backend only, and only on a CPU with AVX512_BF16. */
typedef enum bg_precision {
    BG_PRECISION_FP32 = 0,
    BG_PRECISION_BF16 = 1,
} bg_precision;

typedef struct bg_compute_opts {
    bg_backend_kind kind;
    int threads;          /* CPU backend: threads, 0 = the CPUs this process may use (affinity,
                             capped by a cgroup v2 CPU quota) */
    int allow_cpu_device; /* Vulkan: accept a CPU-type device (lavapipe) */
    int device_index;     /* Vulkan: -1 = choose; else this physical device */
} bg_compute_opts;

/* Parse "cpu" | "vulkan" | "auto"; -1 when unknown. */
int bg_backend_kind_parse(const char *s);
/* Parse "fp32" | "bf16"; -1 when unknown. */
int bg_precision_parse(const char *s);

/* new: caller destroys. */
int bg_compute_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);
void bg_compute_destroy(bg_compute *c);
/* Sets the matmul input precision for the ops recorded from now on (a new
 * backend starts at FP32). BG_EINVAL, the backend unchanged, when it cannot:
 * BF16 on a backend other than the CPU, or on a CPU without AVX512_BF16 (or
 * with BG_CPU_KERNEL forcing a kernel below avx512). Call outside a
 * recording. The description (bg_compute_describe) names a BF16 setting. */
int bg_compute_set_precision(bg_compute *c, bg_precision p, bg_err *err);
/* Borrowed string, valid until destroy: "cpu (2 threads)", "vulkan: NVIDIA H100 ..." */
const char *bg_compute_describe(const bg_compute *c);
bg_backend_kind bg_compute_kind(const bg_compute *c);
/* The most bytes one op's view may span wherever it starts (Vulkan:
 * maxStorageBufferRange less the offset alignment; SIZE_MAX where there is
 * no limit). Callers with a larger tensor split it into views below this
 * (the trainer's logits, by rows). */
size_t bg_compute_max_view(const bg_compute *c);
/* The most bytes one buffer may take (Vulkan: maxMemoryAllocationSize,
 * rounded down to the allocator's alignment, since a request is rounded up
 * to it; SIZE_MAX where there is no limit or the device does not say).
 * Callers size their largest buffers below this (the trainer's logits). */
size_t bg_compute_max_alloc(const bg_compute *c);
/* Host scratch one matrix product out[M,N] = x[M,K] . w[N,K]^T (or either
 * gradient's, as the same (M, N, K) triple) packs into on this backend, in
 * floats per slot (packed rows of x, packed rows of w), as the next such
 * call would size it at the current precision and kernel: each floats[i]
 * is raised to it (so a caller takes the maximum over a step's products).
 * The CPU backend keeps its two slots between calls, grown to the largest
 * request (up to 12 MiB), so the maximum over a step is what it holds; a
 * backend without host scratch (Vulkan) leaves floats unchanged. lib/nn's
 * training memory bound uses it instead of copying the GEMM's blocking. */
void bg_compute_gemm_scratch(const bg_compute *c, long M, long N, long K, size_t floats[2]);

/* Buffers: bytes must be a multiple of 4; a new buffer reads as zeros on
 * every backend (lib/nn relies on it for gradients, moments, LoRA B). new:
 * destroy with bg_cbuf_destroy or with the backend. */
int bg_cbuf_create(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err);
void bg_cbuf_destroy(bg_compute *c, bg_cbuf *b);
int bg_cbuf_write(bg_compute *c, bg_cbuf *b, size_t byte_off, const void *src, size_t bytes,
                  bg_err *err);
int bg_cbuf_read(bg_compute *c, bg_cbuf *b, size_t byte_off, void *dst, size_t bytes, bg_err *err);

/* Recording. */
int bg_compute_begin(bg_compute *c, bg_err *err);
void bg_compute_barrier(bg_compute *c);
int bg_compute_submit(bg_compute *c, bg_err *err); /* runs and waits */

/* Lanes: independent recorders that run at the same time on the backend's
 * threads, for work made of many small independent parts (the branches of
 * a batched scoring pass), where waking the threads around every small op
 * costs more than the op. bg_compute_run_lanes calls fn(lane, ctx, i) for i
 * in [0, n), each on its own lane, spread over the backend's threads, and
 * returns when every call has returned. A lane is a bg_compute that shares
 * c's buffers (views of c's buffers are valid on it), is idle when fn
 * starts (fn calls begin ... submit on it, as often as it likes) and runs
 * each op on the calling thread alone; it has its own recording and poison
 * state. Ops of different lanes may run at the same time: they must not
 * write what another lane reads or writes. The lanes belong to c (borrowed
 * by fn for its call only). bg_compute_lanes: how many lanes run at once
 * (the CPU backend: its threads); 0 when the backend has none (Vulkan: one
 * queue, nothing to gain). n may exceed it: the calls are claimed one at a
 * time by whichever thread is free (the caller's too), so on a busy host a
 * thread the scheduler has paused holds back only the call it runs, and
 * several small calls per thread even the load out. run_lanes: n in
 * [1, BG_COMPUTE_MAX_LANES], outside a recording of c; BG_EINVAL/
 * BG_EUNAVAIL (fn never called) otherwise, BG_ENOMEM when a lane cannot be
 * made. Threads: c's thread. */
#define BG_COMPUTE_MAX_LANES 256
typedef void (*bg_compute_lane_fn)(bg_compute *lane, void *ctx, int i);
int bg_compute_lanes(const bg_compute *c);
int bg_compute_run_lanes(bg_compute *c, int n, bg_compute_lane_fn fn, void *ctx, bg_err *err);

void bg_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K);
void bg_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps);
void bg_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int n_heads, int n_kv_heads,
                int head_size);
void bg_op_softmax(bg_compute *c, bg_tview x, int rows, int n);
void bg_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kcache, bg_tview vcache,
                     int T, int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len);
/* Attention over a shared prefix and a causal tail (batched scoring: the
 * head every branch shares, then each branch's own rows). out[T,
 * n_heads*hs]: query t attends to all P rows of kprefix/vprefix [P,
 * n_kv_heads*hs] and to rows 0..pos0+t of ktail/vtail [seq_len,
 * n_kv_heads*hs]; heads and scale as attention. It equals bg_op_attention
 * over one cache holding the prefix rows then the tail rows, query t at
 * position P+pos0+t, up to float summation order, and a query's result
 * does not depend on the other queries of the call. P >= 0. Optional: a
 * backend without it (Vulkan today) poisons the recording with
 * BG_EUNAVAIL, as a missing training op does;
 * bg_compute_has_attention_prefix says which. */
void bg_op_attention_prefix(bg_compute *c, bg_tview out, bg_tview q, bg_tview kprefix,
                            bg_tview vprefix, int P, bg_tview ktail, bg_tview vtail, int T,
                            int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len);
int bg_compute_has_attention_prefix(const bg_compute *c);
/* Weights packed once (an inference model's, which never change after
 * load). bg_compute_pack stacks nw in [1, BG_COMPUTE_PACK_MAX] weights
 * w[i] [n[i], K] (row-major views) and packs them into the backend's GEMM
 * layout; bg_op_matmul_packed then computes out[i][M, n[i]] = x[M, K] .
 * w[i]^T for every i in one product: bit for bit the values of nw
 * bg_op_matmul calls over the weights as they were when packed (a later
 * write to them is not seen: pack only what never changes). Memory: sum
 * n[i] rounded up to the tile's width, times K floats, at most
 * BG_COMPUTE_PACK_MAX_FLOATS per call. Optional: BG_EUNAVAIL (nothing
 * made) where the backend has none (Vulkan), where K exceeds one K block
 * of its kernel or the copy would exceed the bound; the caller then keeps
 * bg_op_matmul. new: the caller destroys it with bg_cpacked_destroy,
 * before the backend. Threads: c's thread packs; c's lanes may read a
 * packed weight at the same time (it is immutable). */
#define BG_COMPUTE_PACK_MAX 4
#define BG_COMPUTE_PACK_MAX_FLOATS (16L << 20)
typedef struct bg_cpacked bg_cpacked;
int bg_compute_pack(bg_compute *c, const bg_tview *w, const int *n, int nw, int K, bg_cpacked **out,
                    bg_err *err);
void bg_cpacked_destroy(bg_compute *c, bg_cpacked *p);
/* out[i] for each of w's nw weights (see bg_compute_pack); M > 0. The
 * _add form adds the product to out[i] (the forward's residual): bit for
 * bit bg_op_matmul into a scratch, then bg_op_add into out[i]. out must
 * not overlap x. */
void bg_op_matmul_packed(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                         int M);
void bg_op_matmul_packed_add(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                             int M);
/* The Q/K/V product with RoPE in its write-back: bg_op_matmul_packed, then
 * out[0] (q, n_heads heads) and out[1] (k, n_kv_heads heads) of row m
 * rotated as bg_op_rope rotates a token at position pos[m] (pos: int32
 * [M], each >= 0; rows need not be consecutive positions: the rows of
 * many branches). The same bits as bg_op_matmul_packed then bg_op_rope
 * per run of positions. w's first two weights must have n_heads * hs and
 * n_kv_heads * hs rows; hs even. */
void bg_op_matmul_packed_rope(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                              int M, bg_tview pos, int n_heads, int n_kv_heads, int head_size);
void bg_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n);
void bg_op_add(bg_compute *c, bg_tview x, bg_tview y, int n);
void bg_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n);
void bg_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim);
void bg_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets, int T,
                             int V);

/* ---- training ops -------------------------------------------------------------
 *
 * Conventions common to every training op
 *   - "+=" means the op ACCUMULATES into its output (the caller zeroes it with
 *     bg_op_fill once per step); "=" means it OVERWRITES. Weight gradients always
 *     accumulate (so micro-batches and shared tensors — a shared classifier is
 *     also the embedding — add up); activation gradients say which per op.
 *   - Outputs never alias inputs unless the op says so.
 *   - A batch is B sequences of T tokens laid out row after row: row r = b*T + t
 *     of a [B*T, width] activation is token t of sequence b, at position t.
 *   - Reductions over rows or positions use at least float accumulators in a
 *     fixed order per output element, so a backend's result does not depend
 *     on its thread count; the CPU backend is deterministic run to run.
 *   - Every backward reads the SAVED inputs of its forward (named below); the
 *     training forward must keep them (lib/nn/nn_train.c documents which).
 */

/* x[0..n) = value (zeroing gradients, the optimizer's moments). */
void bg_op_fill(bg_compute *c, bg_tview x, float value, int n);
/* y[i] += alpha * x[i] over n elements (LoRA's scaled path, gradient sums).
 * y and x must not overlap. */
void bg_op_axpy(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n);

/* Embedding backward: dtable[tokens[t], :] += dout[t, :] for t in [0, T).
 * dtable [rows, dim] (rows = whatever the buffer holds past the offset, as in
 * bg_op_embed); dout [T, dim]; tokens int32 [T], checked in range. Repeated
 * tokens add up (in order of t for each element: deterministic). */
void bg_op_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                          int dim);

/* RMSNorm backward of out = x * r * w with r = 1/sqrt(mean(x^2) + eps), per row.
 * Reads the SAVED forward input x [T, n] and w [n]; r is recomputed from x.
 *   dx[t, i] += r * (w[i]*dout[t,i] - x[t,i] * r^2 * mean_j(dout[t,j]*w[j]*x[t,j]))
 *   dw[i]    += sum_t dout[t,i] * x[t,i] * r_t
 * dx ACCUMULATES: in the model x is the residual stream, whose gradient already
 * holds the skip path's share. dx [T, n], dw [n]; dout [T, n]. */
void bg_op_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                            bg_tview w, int T, int n, float eps);

/* Matmul backward, for the forward out[M,N] = x[M,K] · w[N,K]^T (w is [out, in]):
 *   backward_x:  dx[M,K]  = dy[M,N] · w[N,K]      (accumulate == 0: overwrite)
 *                dx[M,K] += dy[M,N] · w[N,K]      (accumulate != 0)
 *   backward_w:  dw[N,K] += dy[M,N]^T · x[M,K]    (always accumulates)
 * x is the SAVED forward input. Accumulating dx serves inputs that feed several
 * matmuls (xb feeds wq, wk, wv; w1 and w3; a base weight and its LoRA A). */
void bg_op_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                             int K, int accumulate);
void bg_op_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                             int K);

/* RoPE backward, in place on dq[T, n_heads*hs] and dk[T, n_kv_heads*hs]: the
 * forward rotates each adjacent pair (2i, 2i+1) of each head of row t by
 * angle (pos0+t) * 10000^(-2i/hs) (llama2.c, bg_op_rope); the backward applies
 * the transposed rotation (angle negated): (a, b) -> (a*cos + b*sin,
 * -a*sin + b*cos). Same arguments and shape checks as bg_op_rope; a batch of
 * B sequences is B calls with pos0 = 0 on rows b*T.. of the views. */
void bg_op_rope_backward(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int n_heads,
                         int n_kv_heads, int head_size);

/* Training attention forward over whole sequences (no KV cache): B sequences
 * of T tokens; q [B*T, n_heads*hs], k and v [B*T, n_kv_heads*hs] (q and k after
 * RoPE); query t of sequence b attends causally to keys 0..t of the same
 * sequence; head h reads kv head h / (n_heads / n_kv_heads); scale 1/sqrt(hs).
 *   out [B*T, n_heads*hs] = softmax(scale * q·k^T) · v      (overwritten)
 *   lse [B*T, n_heads]    = log sum_p exp(scale * q·k_p)     (overwritten)
 * lse (natural log, max-shifted internally) is all the backward keeps of the
 * softmax: it recomputes P[t,p] = exp(scale * q_t·k_p - lse[t]) (the
 * FlashAttention convention; no [T, T] probability matrix is stored). On a
 * row, out has the same bits as bg_op_attention with the same rows in its cache
 * (lib/nn's adapters-off guarantee rests on it; test_nn_train checks it). */
void bg_op_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                           bg_tview v, int B, int T, int n_heads, int n_kv_heads, int head_size);

/* Training attention backward. Reads the SAVED q, k, v, out and lse of
 * bg_op_attention_train and dout [B*T, n_heads*hs]; with P recomputed from lse:
 *   D[t]    = sum_i dout[t,i] * out[t,i]                   (per query head)
 *   dP[t,p] = dout[t] · v_p ;  dS[t,p] = P[t,p] * (dP[t,p] - D[t])   (softmax backward)
 *   dq[t]   = scale * sum_p dS[t,p] k_p
 *   dk[p]   = scale * sum_t dS[t,p] q_t   summed over the heads of p's group
 *   dv[p]   = sum_t P[t,p] dout[t]        summed over the heads of p's group
 * dq [B*T, n_heads*hs], dk and dv [B*T, n_kv_heads*hs] are OVERWRITTEN (before
 * RoPE backward on dq, dk). */
void bg_op_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv, bg_tview dout,
                              bg_tview q, bg_tview k, bg_tview v, bg_tview out, bg_tview lse, int B,
                              int T, int n_heads, int n_kv_heads, int head_size);

/* SwiGLU backward of y = silu(h) * g with silu(h) = h * s(h), s = sigmoid.
 * Reads the SAVED pre-activation h and gate g (the training forward keeps h
 * by running bg_op_swiglu on a copy) and dout, n elements each:
 *   dh[i] = dout[i] * g[i] * s(h[i]) * (1 + h[i] * (1 - s(h[i])))   (=)
 *   dg[i] = dout[i] * silu(h[i])                                     (=)
 * dh may alias h and dg may alias g (each element is read before written). */
void bg_op_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                           bg_tview g, int n);

/* Fused log-softmax + weighted token log-prob / cross-entropy, forward and
 * backward in one pass over logits [T, V] (one row per position):
 *   lp[t]         = log_softmax(logits[t])[targets[t]]            (nats, =)
 *   dlogits[t, j] = weights[t] * (softmax(logits[t])[j] - [j == targets[t]])  (=)
 * i.e. dlogits is the gradient of L = -sum_t weights[t] * lp[t]. weights [T]
 * are any finite floats: 1/count for mean cross-entropy, 0 to mask a position,
 * a per-token GFlowNet coefficient (negative: ascend). lp is unweighted; the
 * caller forms L from lp and weights on the host (T floats). targets int32 [T],
 * checked in range even where the weight is 0. dlogits may alias logits
 * (in place: the [T, V] logits are not needed afterwards). */
void bg_op_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                bg_tview weights, int T, int V);

/* Sum of squares for gradient-norm clipping: out[0] = sum_i x[i]^2 (=),
 * accumulated in double (CPU) or float pairwise (GPU). One slot per gradient
 * tensor, so the sumsq ops of a step are independent of each other (no
 * barrier between them); bg_op_adamw adds the slots up. */
void bg_op_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n);

/* AdamW hyper-parameters of one step (host values, recorded by value). */
typedef struct bg_adamw_params {
    float lr;           /* learning rate of this step (schedule applied by the caller) */
    float beta1, beta2; /* e.g. 0.9, 0.999 */
    float eps;          /* e.g. 1e-8, added to sqrt(v_hat) */
    float weight_decay; /* decoupled: p -= lr * wd * p; 0 for norms */
    float max_norm;     /* > 0: clip the global gradient norm to this; 0: no clipping */
    int step;           /* 1-based step count t, for the bias corrections */
} bg_adamw_params;

/* One AdamW step on n parameters, in place on p, m, v (all [n]; g read-only):
 *   norm   = sqrt(sum_j gsq[j]) over j in [0, n_gsq)   (the bg_op_sumsq slots of
 *            EVERY trainable tensor: the global norm, same on every call of a step)
 *   scale  = max_norm > 0 ? min(1, max_norm / (norm + 1e-6)) : 1
 *   gi     = scale * g[i]
 *   m[i]   = beta1 * m[i] + (1 - beta1) * gi
 *   v[i]   = beta2 * v[i] + (1 - beta2) * gi^2
 *   p[i]  -= lr * ( (m[i] / (1 - beta1^t)) / (sqrt(v[i] / (1 - beta2^t)) + eps)
 *                   + weight_decay * p[i] )            (p[i] before the update)
 * Bias corrections are computed in double from hp->step. When max_norm == 0,
 * gsq may have a NULL buffer and n_gsq 0. The gradient is not zeroed. */
void bg_op_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                 int n_gsq, int n, const bg_adamw_params *hp);

#endif
