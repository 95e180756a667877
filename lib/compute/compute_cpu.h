/*
 * compute_cpu.h — internals shared by the CPU backend's files
 * (compute_cpu.c: buffers, vtable, elementwise/row ops; compute_cpu_train.c:
 * the training ops; compute_cpu_pool.c: the thread pool;
 * compute_cpu_gemm.c: matmul blocking, kernel choice, the AVX2 matvec and
 * vector helpers; compute_cpu_avx2.c / compute_cpu_avx512.c: the AVX2 /
 * AVX-512 GEMM kernels and packers; compute_cpu_attend.c: the attention
 * kernel; compute_cpu_attend_bwd.c: its backward;
 * compute_cpu_attend_prefix.c: attention over a shared prefix and a tail).
 *
 * The backend struct, the view check (bg__cpu_span) and the task split are
 * static inline here so the op files share them without calling each other.
 *
 * Threads: a bg__pool is driven by one caller thread at a time (the thread
 * that owns the bg_compute); bg__pool_run returns after every task ran, so
 * the caller's stack data passed as ctx stays valid for the whole run.
 */
#ifndef BG_COMPUTE_CPU_H
#define BG_COMPUTE_CPU_H

#include <stdint.h>

#include "common/bg_err.h"
#include "compute/compute_backend.h"

typedef struct bg__pool bg__pool;
/* One task of a parallel loop: task in [0, ntasks). */
typedef void (*bg__pool_fn)(void *ctx, int task);

/* nthreads >= 1 counts the caller: nthreads - 1 workers are started.
 * new: destroy with bg__pool_destroy. */
int bg__pool_create(int nthreads, bg__pool **out, bg_err *err);
void bg__pool_destroy(bg__pool *p);
int bg__pool_threads(const bg__pool *p);
/* Runs fn(ctx, 0..ntasks-1) spread over the workers and the caller; waits. */
void bg__pool_run(bg__pool *p, bg__pool_fn fn, void *ctx, int ntasks);
/* Pool-owned scratch for the driving thread's ops (the GEMM's packed panels):
 * slot in [0, BG__POOL_SCRATCH_SLOTS), at least `bytes`, 64-byte aligned,
 * contents undefined; borrowed until the next call for that slot, a trim or
 * destroy. NULL when out of memory. Kept between calls (no page faults per
 * GEMM); bg__pool_scratch_trim frees every slot larger than `keep` bytes. */
#define BG__POOL_SCRATCH_SLOTS 2
void *bg__pool_scratch(bg__pool *p, int slot, size_t bytes);
void bg__pool_scratch_trim(bg__pool *p, size_t keep);

struct bg_cbuf {
    float *data; /* 64-byte aligned, `bytes` long */
    size_t bytes;
    struct bg_cbuf *prev, *next;
};

typedef struct bg__cpu_backend {
    bg_compute base;
    bg__pool *pool;
    bg_cbuf *bufs;
    int nthreads;
    int bf16; /* matmuls take bf16 inputs (bg_compute_set_precision) */
    /* Lanes (bg_compute_run_lanes): [BG_COMPUTE_MAX_LANES] single-threaded
     * backends that share this one's buffers, each made at the first run
     * that needs it; NULL until then (and in a lane). Owned: destroyed with
     * the backend. */
    struct bg__cpu_backend **lane;
    int is_lane; /* 1 in a lane: it has no lanes of its own */
} bg__cpu_backend;

static inline bg__cpu_backend *bg__cpu(bg_compute *c)
{
    return (bg__cpu_backend *)c;
}

/* Pointer to a view of n elements, or NULL (recording poisoned, naming the
 * op and the view) when it does not fit its buffer. */
static inline float *bg__cpu_span(bg_compute *c, const char *op, const char *name, bg_tview v,
                                  size_t n)
{
    size_t elems = v.buf->bytes / 4;
    if (v.off > elems || n > elems - v.off) {
        if (!c->poisoned) {
            c->poisoned = 1;
            bg_err_set(&c->poison_err, BG_EINVAL,
                       "compute op %s: view %s [%zu, %zu) exceeds its buffer of %zu elements", op,
                       name, v.off, v.off + n, elems);
        }
        return NULL;
    }
    return v.buf->data + v.off;
}

/* 1 when every id is in [0, limit); else poisons the recording. */
static inline int bg__cpu_ids_ok(bg_compute *c, const char *op, const int32_t *ids, int n,
                                 long limit)
{
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= limit) {
            if (!c->poisoned) {
                c->poisoned = 1;
                bg_err_set(&c->poison_err, BG_EINVAL,
                           "compute op %s: id %d at row %d out of range; expected 0..%ld", op,
                           (int)ids[i], i, limit - 1);
            }
            return 0;
        }
    }
    return 1;
}

/* Tasks for a loop of `rows` items of `cost` flops each: 1 (inline) when the
 * whole loop is small, else up to 4 per thread. */
static inline int bg__cpu_ntasks(bg_compute *c, long rows, long cost)
{
    int nt = bg__pool_threads(bg__cpu(c)->pool);
    if (nt == 1 || rows * cost < 131072 || rows < 2)
        return 1;
    long t = (long)nt * 4;
    return (int)(t < rows ? t : rows);
}

/* Row range [r0, r1) of task t out of ntasks over rows. */
static inline void bg__cpu_task_range(int t, int ntasks, long rows, long *r0, long *r1)
{
    *r0 = rows * t / ntasks;
    *r1 = rows * (t + 1) / ntasks;
}

/* out[M,N] = x[M,K] · w[N,K]^T on host arrays, using the pool. Chooses the
 * matvec kernel for M <= 2 and a packed, blocked kernel otherwise; the
 * kernel is bg__cpu_kernel()'s (AVX-512F, AVX2+FMA or portable C). Results
 * do not depend on the pool's thread count (bit for bit, per kernel). */
void bg__cpu_matmul(bg__pool *p, float *out, const float *x, const float *w, int M, int N, int K,
                    int bf16);
/* The backward GEMMs on the same packed kernel (operands packed through
 * strides, so no transpose is materialised):
 *   dx[M,K] (= or += when accumulate) dy[M,N] . w[N,K]
 *   dw[N,K] += dy[M,N]^T . x[M,K]
 * These three entry points are where faster kernels (AVX-512, AMX) plug in.
 * bf16 != 0 (only when bg__cpu_has_bf16()): the packed GEMM rounds both
 * operands to bf16 and accumulates in fp32 (vdpbf16ps); M <= 2 stays fp32. */
void bg__cpu_matmul_dx(bg__pool *p, float *dx, const float *dy, const float *w, int M, int N, int K,
                       int accumulate, int bf16);
void bg__cpu_matmul_dw(bg__pool *p, float *dw, const float *dy, const float *x, int M, int N, int K,
                       int bf16);
/* Floats of the two pool scratch slots gemm(M, N, K) asks for with the
 * current kernel and bf16 setting: floats[i] raised to them (bg_compute_gemm_scratch). */
void bg__cpu_gemm_scratch(long M, long N, long K, int bf16, size_t floats[2]);
/* Vector helpers with the same run-time SIMD choice. Any thread.
 *   dot: sum a[i]*b[i];  softmax: in place over v[0..n)
 *   attend: one query head over npos cache rows (row p of K at kc + p*stride,
 *   of V at vc + p*stride): out[hs] = sum_p softmax(scale * q.k_p)_p v_p;
 *   sc is caller scratch of npos floats. */
float bg__cpu_dot(const float *a, const float *b, int n);
void bg__cpu_softmax(float *v, int n);
/* softmax in place; returns log sum_i exp(v_in[i]) (max-shifted) */
float bg__cpu_softmax_lse(float *v, int n);
/* lse != NULL receives the log-sum-exp of the scaled scores (training);
 * out is bit-identical either way. sc: bg__cpu_attend_scratch(npos, hs)
 * floats. (compute_cpu_attend.c, as the rest of this block on attention.) */
void bg__cpu_attend(float *out, const float *q, const float *kc, const float *vc, long stride,
                    int npos, int hs, float scale, float *sc, float *lse);
/* nq causal queries of one head: query j (q + j*qstride) attends K/V rows
 * 0..n0+j-1 (row p at kc/vc + p*kvstride) and writes out + j*ostride (hs
 * floats) and, when lse != NULL, lse[j*lstride]. The K/V rows are packed
 * once per call and shared by its queries; query j's result is the same
 * bits as bg__cpu_attend's with npos = n0 + j. n0 >= 1. */
typedef struct bg__attend_args {
    float *out, *lse;
    const float *q, *kc, *vc;
    long qstride, ostride, lstride, kvstride;
    int n0, nq, hs;
    float scale;
} bg__attend_args;
/* scratch: bg__cpu_attend_scratch(n0 + nq - 1, hs) floats */
void bg__cpu_attend_causal(const bg__attend_args *a, float *scratch);
/* Floats of scratch one call over npos keys of a head of hs needs. */
long bg__cpu_attend_scratch(int npos, int hs);
/* KT[b][i][0..w) = K[b*w + k][i] for keys < n, zero past n (VT the same from
 * V): the K/V rows packed transposed in blocks of w keys, as the SIMD
 * attention kernels read them (forward and backward). */
void bg__cpu_attend_pack(float *kt, float *vt, const float *kc, const float *vc, long stride, int n,
                         int hs, int w);
/* The attention backward of one (sequence, KV head) (compute_cpu_attend_bwd.c):
 * the `group` query heads that read that KV head, T causal queries each.
 * Query head j (0 <= j < group), token t: q, out, dout and dq at
 * ptr + t*qstride + j*hs; lse at lse + t*lstride + j; K/V rows (and dk/dv)
 * at ptr + p*kvstride. Writes (=) dq of the group's heads and dk, dv of the
 * KV head (compute.h's bg_op_attention_backward formulas); P is recomputed
 * from lse. The result depends only on the arguments and the kernel, never
 * on the thread. scratch: bg__cpu_attend_bwd_scratch(T, hs) floats. */
typedef struct bg__attend_bwd_args {
    float *dq, *dk, *dv;
    const float *q, *k, *v, *out, *dout, *lse;
    long qstride, kvstride, lstride;
    int T, group, hs;
    float scale;
} bg__attend_bwd_args;
void bg__cpu_attend_bwd(const bg__attend_bwd_args *a, float *scratch);
long bg__cpu_attend_bwd_scratch(int T, int hs);
/* The same, one key at a time (the scalar kernel's path; the baseline of
 * bench/lm/bench_attend): a dot for the score and one for dP per key, expf,
 * axpys through the vector helpers. scratch: T floats. */
void bg__cpu_attend_bwd_keys(const bg__attend_bwd_args *a, float *scratch);
/* y[i] = exp(x[i]) with the attention kernel's vector exp (the test of its
 * error; scalar expf when the kernel is scalar). */
void bg__cpu_expv(float *y, const float *x, int n);
/* Attention over a shared prefix and a causal tail (compute_cpu_attend_prefix.c):
 * nq queries of one head; query j (q + j*qstride) attends every prefix row
 * 0..np-1 (row p at kp/vp + p*kvstride) and tail rows 0..n0+j-1 (kt/vt +
 * p*kvstride), and writes out + j*ostride (hs floats): one softmax over
 * both sets. W queries per vector, each key broadcast from its row (no
 * packing), the causal triangle masked per lane; a query's result does not
 * depend on the other queries of the call. np >= 0, n0 >= 1. */
typedef struct bg__attend_prefix_args {
    float *out;
    const float *q, *kp, *vp, *kt, *vt;
    long qstride, ostride, kvstride;
    int np, n0, nq, hs;
    float scale;
    /* g query heads (0 or 1: one) that read these K/V rows, head i's q and
     * out at q + i*hstride, out + i*hstride: the SIMD kernels put the g
     * heads of a query in adjacent lanes of one vector (grouped-query
     * attention: the heads of a KV head share every key broadcast) */
    int g;
    long hstride;
} bg__attend_prefix_args;
/* scratch: bg__cpu_attend_prefix_scratch(np, n0 + nq - 1, hs) floats */
void bg__cpu_attend_prefix(const bg__attend_prefix_args *a, float *scratch);
long bg__cpu_attend_prefix_scratch(int np, int ntail, int hs);
/* The op bg_op_attention_prefix (compute.h) on the pool. */
int bg__cpu_attention_prefix(bg_compute *c, bg_tview out, bg_tview q, bg_tview kprefix,
                             bg_tview vprefix, int P, bg_tview ktail, bg_tview vtail, int T,
                             int pos0, int nh, int nkv, int hs, int seq_len);
/* y[0..n) += a * x[0..n) (AVX2 when available) */
void bg__cpu_axpy(float *y, float a, const float *x, int n);
/* The training ops (compute_cpu_train.c), entries of the CPU vtable. */
int bg__cpu_fill(bg_compute *c, bg_tview x, float value, int n);
int bg__cpu_axpy_op(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n);
int bg__cpu_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                           int dim);
int bg__cpu_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                             bg_tview w, int T, int n, float eps);
int bg__cpu_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                              int K, int accumulate);
int bg__cpu_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                              int K);
int bg__cpu_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                            bg_tview v, int B, int T, int nh, int nkv, int hs);
int bg__cpu_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv, bg_tview dout,
                               bg_tview q, bg_tview k, bg_tview v, bg_tview out, bg_tview lse,
                               int B, int T, int nh, int nkv, int hs);
int bg__cpu_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                            bg_tview g, int n);
int bg__cpu_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                 bg_tview weights, int T, int V);
int bg__cpu_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n);
int bg__cpu_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                  int n_gsq, int n, const bg_adamw_params *hp);

/* The matmul kernel in use, chosen once per process: the best the CPU and
 * its OS support (AVX-512F needs the zmm state enabled in XCR0, AVX2 the
 * ymm state), unless BG_CPU_KERNEL=scalar|avx2|avx512 (or auto) forces one
 * for tests and benchmarks; BG_CPU_NO_SIMD=1 is the same as scalar. A forced
 * kernel the machine lacks, or an unknown name, falls back to the best one
 * here and is reported by bg__cpu_kernel_check. Any thread. */
enum { BG__KERN_SCALAR = 0, BG__KERN_AVX2 = 1, BG__KERN_AVX512 = 2 };
int bg__cpu_kernel(void);
/* "scalar", "avx2+fma", "avx512f" */
const char *bg__cpu_kernel_name(int kernel);
/* BG_OK, or BG_EINVAL naming BG_CPU_KERNEL's value and what to set instead
 * (called when a CPU backend is created, so a wrong value fails loudly). */
int bg__cpu_kernel_check(bg_err *err);
/* 1 when the SIMD helpers (dot, axpy, attend) use AVX2+FMA: any kernel but
 * scalar. */
int bg__cpu_has_avx2(void);
/* 1 when the bf16 matmuls can run: the avx512f kernel is in use and cpuid
 * reports AVX512_BF16 (vdpbf16ps). Any thread. */
int bg__cpu_has_bf16(void);

/* compute_cpu_avx512.c (x86-64 only; run only when bg__cpu_kernel() says
 * avx512). The register tile: out[MR][NR] (row stride ldc) = (first ? 0 :
 * out) + a-panel [kc][MR] . b-panel [kc][NR] (b 64-byte aligned). */
#define BG__AVX512_MR 12
#define BG__AVX512_NR 32
void bg__cpu_kern_avx512(const float *a, const float *b, int kc, float *out, long ldc, int first);
/* The tile with A read in place from a row-major operand: a(r, k) =
 * a[r*lda + k] for the 12 rows (no A panel packed); b as above. */
void bg__cpu_kern_avx512_rows(const float *a, long lda, const float *b, int kc, float *out,
                              long ldc, int first);
/* Packs npanels consecutive panels of `width` (<= 32) operand rows for the
 * tile: panel p at dst + p*width*kcb holds dst[k*width + r] = src[(row) *
 * rs + (k0 + k) * cs] for row = first + p*width + r, k < kcb; zero for rows
 * >= end. Returns npanels, or 0 (nothing written) unless rs == 1 or cs == 1,
 * the layouts it has SIMD paths for. */
int bg__cpu_pack_avx512(float *dst, const float *src, long rs, long cs, int first, int end, int k0,
                        int kcb, int width, int npanels);
/* The copies of the GEMM's one-pass packer (compute_cpu_gemm.c, packk),
 * for an operand whose rows are adjacent at every k (the backward's
 * transposed operands): kn rows k of npanels panels of `width` (<= 32)
 * columns: dst[p*pstride + k*width + r] = src[k*cs + p*width + r] where
 * p*width + r < span, else 0. */
void bg__cpu_copyk_avx512(float *dst, long pstride, const float *src, long cs, int kn, int width,
                          int npanels, int span);
/* bf16 (x86-64 with AVX512_BF16 only). The tile of bf16 pairs: a-panel
 * [ceil(kc/2)][MR] and b-panel [ceil(kc/2)][NR] of 32-bit words, each word
 * (low half: k even, high half: k + 1) as made by bg__cpu_panel_bf16; same
 * out/ldc/first contract, fp32 accumulation. The pointers are float * so
 * the tile fits the fp32 tiles' table; they are read as 32-bit words. */
void bg__cpu_kern_avx512_bf16(const float *a, const float *b, int kc, float *out, long ldc,
                              int first);
/* Rewrites a packed fp32 panel [kcb][width] in place as [ceil(kcb/2)][width]
 * words of two bf16 (rows k, k+1; round to nearest even; a missing k + 1
 * is zero). width <= 32. */
void bg__cpu_panel_bf16(float *panel, int width, int kcb);
/* out[n] = w[n, 0..K) . x for n in [n0, n1) */
void bg__cpu_matvec_rows_avx512(float *out, const float *x, const float *w, int n0, int n1, int K);

/* compute_cpu_avx2.c (x86-64 only; run only when bg__cpu_kernel() is avx2):
 * the same three entries for the 6x16 AVX2+FMA tile. The packer packs only
 * the leading panels that are full (no row >= end) and returns how many
 * (0: none, or a layout it has no SIMD path for: neither rs nor cs is 1, or
 * cs == 1 with a width not a multiple of 8); the caller packs the rest.
 * width: 6 or a multiple of 8. */
#define BG__AVX2_MR 6
#define BG__AVX2_NR 16
void bg__cpu_kern_avx2(const float *a, const float *b, int kc, float *out, long ldc, int first);
void bg__cpu_kern_avx2_rows(const float *a, long lda, const float *b, int kc, float *out, long ldc,
                            int first);
int bg__cpu_pack_avx2(float *dst, const float *src, long rs, long cs, int first, int end, int k0,
                      int kcb, int width, int npanels);
/* bg__cpu_copyk_avx512's contract with AVX2 (width 6 or a multiple of 8). */
void bg__cpu_copyk_avx2(float *dst, long pstride, const float *src, long cs, int kn, int width,
                        int npanels, int span);

/* RoPE's inverse frequencies: freq[i / 2] = 10000^(-i / hs) for even i with
 * i + 1 < hs (hs / 2 floats). One formula for bg_op_rope (compute_cpu.c)
 * and the packed Q/K/V product's write-back, so that both rotate with the
 * same bits. */
void bg__cpu_rope_freq(float *freq, int hs);

/* ---- the pre-packed GEMM (compute_cpu_gemm_packed.c) -------------------------
 * Weights that do not change (an inference model's) packed once into the
 * GEMM's B panels, and products that read them (bg_compute_pack,
 * bg_op_matmul_packed). The panel layout, the tile and its K block are the
 * GEMM's (compute_cpu_gemm.c), taken through two hooks so that the packed
 * copy always matches the kernel in use. */
typedef struct bg__gemm_tile {
    void (*fn)(const float *a, const float *b, int kc, float *out, long ldc, int first);
    /* NULL: A is always packed */
    void (*rows_fn)(const float *a, long lda, const float *b, int kc, float *out, long ldc,
                    int first);
    int mr, nr, kc; /* tile, and the largest K of one K block */
} bg__gemm_tile;
/* The fp32 tile of `kernel` (BG__KERN_*). */
void bg__cpu_gemm_tile(int kernel, bg__gemm_tile *t);
/* npanels panels of `width` rows of a row-major operand (row stride rs),
 * rows first.., zero from row `end` on, k in [0, kcb), as the GEMM packs
 * them for `kernel` (panel p at dst + p*width*kcb). */
void bg__cpu_gemm_pack(int kernel, float *dst, const float *src, long rs, int first, int end,
                       int kcb, int width, int npanels);
/* The CPU backend's entries (compute_backend.h's pack, packed_destroy,
 * matmul_packed). */
int bg__cpu_pack(bg_compute *c, const bg_tview *w, const int *n, int nw, int K, bg_cpacked **out,
                 bg_err *err);
void bg__cpu_packed_destroy(bg_compute *c, bg_cpacked *p);
int bg__cpu_matmul_packed(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                          int M, int add, bg_tview rope, int nh, int nkv, int hs);

#endif
