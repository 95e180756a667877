/*
 * compute_backend.h — what a backend implements (internal to lib/compute).
 *
 * compute.c owns the public functions of compute.h: it validates arguments,
 * keeps the poisoned-recording state and forwards to the backend's vtable.
 * Each backend (compute_cpu.c, compute_vulkan.c) defines a struct that
 * starts with `bg_compute base;` and a create function below. The ops in the
 * vtable mirror compute.h one to one and never see invalid shapes.
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
} bg_compute_vtbl;

struct bg_compute {
    const bg_compute_vtbl *vt;
    bg_backend_kind kind;
    char desc[256];   /* bg_compute_describe() */
    int recording;    /* between begin and submit */
    int poisoned;     /* an op failed since begin: submit reports poison_err */
    bg_err poison_err;
};

/* Backends. new: destroyed through vt->destroy. */
int bg__compute_cpu_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);
/* Returns BG_EUNAVAIL with a clear message when no loader / no device. */
int bg__compute_vulkan_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err);

#endif
