/*
 * compute_backend.h — what a backend implements (internal to lib/compute).
 *
 * compute.c owns the public functions of compute.h: it validates arguments,
 * keeps the poisoned-recording state and forwards to the backend's vtable.
 * Each backend (compute_cpu.c, compute_vulkan.c) defines a struct that
 * starts with `bg_compute base;` and a create function below. The ops in the
 * vtable mirror compute.h one to one and never see invalid shapes. The
 * inference ops are mandatory; a training op left NULL is reported as not
 * implemented by that backend (compute.c), so a backend can grow op by op.
 */
#ifndef BG_COMPUTE_BACKEND_H
#define BG_COMPUTE_BACKEND_H

#include "compute/compute.h"

typedef struct bg_compute_vtbl {
    void (*destroy)(bg_compute *c);
    int (*buf_create)(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err);
    void (*buf_destroy)(bg_compute *c, bg_cbuf *b);
    int (*buf_write)(bg_compute *c, bg_cbuf *b, size_t off, const void *src, size_t n, bg_err *err);
    int (*buf_read)(bg_compute *c, bg_cbuf *b, size_t off, void *dst, size_t n, bg_err *err);
    int (*begin)(bg_compute *c, bg_err *err);
    void (*barrier)(bg_compute *c);
    int (*submit)(bg_compute *c, bg_err *err);

    int (*matmul)(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K);
    int (*rmsnorm)(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps);
    int (*rope)(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int nh, int nkv, int hs);
    int (*softmax)(bg_compute *c, bg_tview x, int rows, int n);
    int (*attention)(bg_compute *c, bg_tview out, bg_tview q, bg_tview kc, bg_tview vc, int T,
                     int pos0, int nh, int nkv, int hs, int seq_len);
    int (*swiglu)(bg_compute *c, bg_tview h, bg_tview g, int n);
    int (*add)(bg_compute *c, bg_tview x, bg_tview y, int n);
    int (*copy)(bg_compute *c, bg_tview dst, bg_tview src, int n);
    int (*embed)(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim);
    int (*logsoftmax_gather)(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets, int T,
                             int V);

    /* Training ops (compute.h, "training ops"). NULL: the backend does not
     * implement the op yet; compute.c then poisons the recording with
     * BG_EUNAVAIL naming the op and the backend. */
    int (*fill)(bg_compute *c, bg_tview x, float value, int n);
    int (*axpy)(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n);
    int (*embed_backward)(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                          int dim);
    int (*rmsnorm_backward)(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                            bg_tview w, int T, int n, float eps);
    int (*matmul_backward_x)(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                             int K, int accumulate);
    int (*matmul_backward_w)(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                             int K);
    int (*rope_backward)(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int nh, int nkv,
                         int hs);
    int (*attention_train)(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                           bg_tview v, int B, int T, int nh, int nkv, int hs);
    int (*attention_backward)(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv, bg_tview dout,
                              bg_tview q, bg_tview k, bg_tview v, bg_tview out, bg_tview lse, int B,
                              int T, int nh, int nkv, int hs);
    int (*swiglu_backward)(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                           bg_tview g, int n);
    int (*xent)(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                bg_tview weights, int T, int V);
    int (*sumsq)(bg_compute *c, bg_tview out, bg_tview x, int n);
    int (*adamw)(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                 int n_gsq, int n, const bg_adamw_params *hp);
    /* optional (NULL: FP32 only); see bg_compute_set_precision */
    int (*set_precision)(bg_compute *c, bg_precision p, bg_err *err);
    /* optional (NULL: no lanes); see bg_compute_run_lanes. lanes() > 0 and
     * n in [1, lanes()] checked by compute.c; c is not recording. */
    int (*lanes)(const bg_compute *c);
    int (*run_lanes)(bg_compute *c, int n, bg_compute_lane_fn fn, void *ctx, bg_err *err);
    /* optional (NULL: not available); see bg_op_attention_prefix */
    int (*attention_prefix)(bg_compute *c, bg_tview out, bg_tview q, bg_tview kp, bg_tview vp,
                            int P, bg_tview kt, bg_tview vt, int T, int pos0, int nh, int nkv,
                            int hs, int seq_len);
    /* optional (all three or none); see bg_compute_pack. pack gets
     * 1 <= nw <= BG_COMPUTE_PACK_MAX, positive n[i] and K, views with buffers. */
    int (*pack)(bg_compute *c, const bg_tview *w, const int *n, int nw, int K, bg_cpacked **out,
                bg_err *err);
    void (*packed_destroy)(bg_compute *c, bg_cpacked *p);
    /* add: out += product; rope.buf != NULL: RoPE of out[0] and out[1]
     * (bg_op_matmul_packed_rope; nh, nkv, hs checked by compute.c) */
    int (*matmul_packed)(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w, int M,
                         int add, bg_tview rope, int nh, int nkv, int hs);
    /* optional (NULL: no host scratch); see bg_compute_gemm_scratch */
    void (*gemm_scratch)(const bg_compute *c, long M, long N, long K, size_t floats[2]);
} bg_compute_vtbl;

struct bg_compute {
    const bg_compute_vtbl *vt;
    bg_backend_kind kind;
    char desc[256]; /* bg_compute_describe() */
    int recording;  /* between begin and submit */
    int poisoned;   /* an op failed since begin: submit reports poison_err */
    bg_err poison_err;
    size_t max_view;  /* bytes one view may span at any offset; 0 = no limit */
    size_t max_alloc; /* bytes one buffer may take; 0 = no limit */
};

/* Backends. new: destroyed through vt->destroy. */
int bg__compute_cpu_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);
/* Returns BG_EUNAVAIL with a clear message when no loader / no device. */
int bg__compute_vulkan_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);

#endif
