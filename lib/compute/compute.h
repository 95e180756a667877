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

typedef struct bg_compute_opts {
    bg_backend_kind kind;
    int threads;         /* CPU backend: threads, 0 = the CPUs this process may use (affinity,
                            capped by a cgroup v2 CPU quota) */
    int allow_cpu_device; /* Vulkan: accept a CPU-type device (lavapipe) */
    int device_index;    /* Vulkan: -1 = choose; else this physical device */
} bg_compute_opts;

/* Parse "cpu" | "vulkan" | "auto"; -1 when unknown. */
int bg_backend_kind_parse(const char *s);

/* new: caller destroys. */
int bg_compute_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);
void bg_compute_destroy(bg_compute *c);
/* Borrowed string, valid until destroy: "cpu (2 threads)", "vulkan: NVIDIA H100 ..." */
const char *bg_compute_describe(const bg_compute *c);
bg_backend_kind bg_compute_kind(const bg_compute *c);

/* Buffers: bytes must be a multiple of 4. new: destroy with bg_cbuf_destroy or
 * with the backend. */
int bg_cbuf_create(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err);
void bg_cbuf_destroy(bg_compute *c, bg_cbuf *b);
int bg_cbuf_write(bg_compute *c, bg_cbuf *b, size_t byte_off, const void *src, size_t bytes,
                  bg_err *err);
int bg_cbuf_read(bg_compute *c, bg_cbuf *b, size_t byte_off, void *dst, size_t bytes, bg_err *err);

/* Recording. */
int bg_compute_begin(bg_compute *c, bg_err *err);
void bg_compute_barrier(bg_compute *c);
int bg_compute_submit(bg_compute *c, bg_err *err); /* runs and waits */

void bg_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K);
void bg_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps);
void bg_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int n_heads,
                int n_kv_heads, int head_size);
void bg_op_softmax(bg_compute *c, bg_tview x, int rows, int n);
void bg_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kcache, bg_tview vcache,
                     int T, int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len);
void bg_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n);
void bg_op_add(bg_compute *c, bg_tview x, bg_tview y, int n);
void bg_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n);
void bg_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim);
void bg_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets, int T,
                             int V);

#endif
