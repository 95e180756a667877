/*
 * compute.c — the public face of compute.h: argument checks, the poisoned-
 * recording state, backend choice, and dispatch through the backend vtable.
 *
 * Why here: both backends get the same validation for free, and a bad shape
 * becomes one clear error at submit instead of a crash inside a kernel.
 * Shape checks live here (sizes positive, heads dividing, positions inside
 * the cache); whether a view lies inside its buffer is checked by the
 * backend, which alone knows its buffers' sizes.
 *
 * Recording state (per bg_compute; one thread at a time, see compute.h):
 *   idle --begin--> recording --op ok--> recording
 *   recording --op fails--> recording+poisoned (later ops are skipped)
 *   recording[+poisoned] --submit--> idle (submit reports the poison error)
 * An op outside begin/submit is a programming error: it is logged and
 * dropped.
 */
#include "compute/compute.h"

#include <stdint.h>
#include <string.h>

#include "common/bg_log.h"
#include "compute/compute_backend.h"

int bg_backend_kind_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "cpu") == 0)
        return BG_BACKEND_CPU;
    if (strcmp(s, "vulkan") == 0)
        return BG_BACKEND_VULKAN;
    if (strcmp(s, "auto") == 0)
        return BG_BACKEND_AUTO;
    return -1;
}

int bg_precision_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "fp32") == 0)
        return BG_PRECISION_FP32;
    if (strcmp(s, "bf16") == 0)
        return BG_PRECISION_BF16;
    return -1;
}

static int vulkan_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err)
{
#ifdef BG_HAVE_VULKAN
    return bg__compute_vulkan_create(opts, out, err);
#else
    (void)opts;
    (void)out;
    return bg_err_set(err, BG_EUNAVAIL,
                      "vulkan backend: built without Vulkan support; use --backend cpu");
#endif
}

int bg_compute_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err)
{
    if (!opts || !out)
        return bg_err_set(err, BG_EINVAL, "bg_compute_create: NULL argument");
    *out = NULL;
    if (opts->threads < 0 || opts->threads > 1024)
        return bg_err_set(err, BG_EINVAL, "compute: threads %d out of range; expected 0..1024",
                          opts->threads);
    switch (opts->kind) {
    case BG_BACKEND_CPU:
        return bg__compute_cpu_create(opts, out, err);
    case BG_BACKEND_VULKAN:
        return vulkan_create(opts, out, err);
    case BG_BACKEND_AUTO: {
        bg_compute_opts vo = *opts;
        vo.kind = BG_BACKEND_VULKAN;
        vo.allow_cpu_device = 0; /* a CPU-type Vulkan device is slower than the CPU backend */
        bg_err verr;
        bg_err_clear(&verr);
        if (vulkan_create(&vo, out, &verr) == BG_OK) {
            BG_INFO("compute", "auto backend: %s", (*out)->desc);
            return BG_OK;
        }
        bg_compute_opts co = *opts;
        co.kind = BG_BACKEND_CPU;
        int rc = bg__compute_cpu_create(&co, out, err);
        if (rc == BG_OK)
            BG_INFO("compute", "auto backend: %s (vulkan not used: %s)", (*out)->desc, verr.msg);
        return rc;
    }
    }
    return bg_err_set(err, BG_EINVAL, "compute: unknown backend kind %d; expected cpu|vulkan|auto",
                      (int)opts->kind);
}

void bg_compute_destroy(bg_compute *c)
{
    if (c)
        c->vt->destroy(c);
}

int bg_compute_set_precision(bg_compute *c, bg_precision p, bg_err *err)
{
    if (p != BG_PRECISION_FP32 && p != BG_PRECISION_BF16)
        return bg_err_set(err, BG_EINVAL, "compute: unknown precision %d; expected fp32 or bf16",
                          (int)p);
    if (!c->vt->set_precision) {
        if (p == BG_PRECISION_FP32)
            return BG_OK;
        return bg_err_set(err, BG_EINVAL,
                          "%s: precision bf16 is a CPU backend option; use the cpu backend or "
                          "precision fp32",
                          c->desc);
    }
    return c->vt->set_precision(c, p, err);
}

int bg_compute_lanes(const bg_compute *c)
{
    return c && c->vt->lanes ? c->vt->lanes(c) : 0;
}

int bg_compute_run_lanes(bg_compute *c, int n, bg_compute_lane_fn fn, void *ctx, bg_err *err)
{
    if (!c || !fn)
        return bg_err_set(err, BG_EINVAL, "bg_compute_run_lanes: NULL compute or function");
    if (bg_compute_lanes(c) == 0)
        return bg_err_set(err, BG_EUNAVAIL, "%s: the backend has no lanes", c->desc);
    if (n < 1 || n > BG_COMPUTE_MAX_LANES)
        return bg_err_set(err, BG_EINVAL, "bg_compute_run_lanes: %d lanes; expected 1..%d", n,
                          BG_COMPUTE_MAX_LANES);
    if (c->recording)
        return bg_err_set(err, BG_EINVAL, "bg_compute_run_lanes: called while recording");
    return c->vt->run_lanes(c, n, fn, ctx, err);
}

const char *bg_compute_describe(const bg_compute *c)
{
    return c->desc;
}

bg_backend_kind bg_compute_kind(const bg_compute *c)
{
    return c->kind;
}

size_t bg_compute_max_view(const bg_compute *c)
{
    return c->max_view ? c->max_view : SIZE_MAX;
}

size_t bg_compute_max_alloc(const bg_compute *c)
{
    return c->max_alloc ? c->max_alloc : SIZE_MAX;
}

void bg_compute_gemm_scratch(const bg_compute *c, long M, long N, long K, size_t floats[2])
{
    if (c && c->vt->gemm_scratch && M > 0 && N > 0 && K > 0)
        c->vt->gemm_scratch(c, M, N, K, floats);
}

int bg_cbuf_create(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err)
{
    if (!c || !out)
        return bg_err_set(err, BG_EINVAL, "bg_cbuf_create: NULL argument");
    *out = NULL;
    if (bytes == 0 || bytes % 4 != 0)
        return bg_err_set(err, BG_EINVAL,
                          "bg_cbuf_create: %zu bytes; expected a positive multiple of 4", bytes);
    return c->vt->buf_create(c, bytes, out, err);
}

void bg_cbuf_destroy(bg_compute *c, bg_cbuf *b)
{
    if (c && b)
        c->vt->buf_destroy(c, b);
}

static int host_io_check(bg_compute *c, bg_cbuf *b, const void *p, const char *what, bg_err *err)
{
    if (!c || !b || !p)
        return bg_err_set(err, BG_EINVAL, "%s: NULL argument", what);
    if (c->recording)
        return bg_err_set(err, BG_EINVAL,
                          "%s: called between begin and submit; host access is "
                          "only valid outside a recording",
                          what);
    return BG_OK;
}

int bg_cbuf_write(bg_compute *c, bg_cbuf *b, size_t byte_off, const void *src, size_t bytes,
                  bg_err *err)
{
    int rc = host_io_check(c, b, src, "bg_cbuf_write", err);
    if (rc != BG_OK)
        return rc;
    return bytes ? c->vt->buf_write(c, b, byte_off, src, bytes, err) : BG_OK;
}

int bg_cbuf_read(bg_compute *c, bg_cbuf *b, size_t byte_off, void *dst, size_t bytes, bg_err *err)
{
    int rc = host_io_check(c, b, dst, "bg_cbuf_read", err);
    if (rc != BG_OK)
        return rc;
    return bytes ? c->vt->buf_read(c, b, byte_off, dst, bytes, err) : BG_OK;
}

int bg_compute_begin(bg_compute *c, bg_err *err)
{
    if (!c)
        return bg_err_set(err, BG_EINVAL, "bg_compute_begin: NULL compute");
    if (c->recording)
        return bg_err_set(err, BG_EINVAL, "bg_compute_begin: already recording; submit first");
    c->poisoned = 0;
    bg_err_clear(&c->poison_err);
    int rc = c->vt->begin(c, err);
    if (rc == BG_OK)
        c->recording = 1;
    return rc;
}

void bg_compute_barrier(bg_compute *c)
{
    if (c && c->recording && !c->poisoned)
        c->vt->barrier(c);
}

int bg_compute_submit(bg_compute *c, bg_err *err)
{
    if (!c)
        return bg_err_set(err, BG_EINVAL, "bg_compute_submit: NULL compute");
    if (!c->recording)
        return bg_err_set(err, BG_EINVAL, "bg_compute_submit: not recording; call begin first");
    int rc = c->vt->submit(c, err);
    c->recording = 0;
    if (c->poisoned) {
        if (err) {
            *err = c->poison_err;
        }
        return c->poison_err.code;
    }
    return rc;
}

/* Common gate of every op: returns 1 when the op may be forwarded to the
 * backend: recording, not yet poisoned, every view has a buffer and the
 * op's shape condition holds. Otherwise poisons the recording with a message
 * naming the op (outside a recording: logged and dropped). */
static int admit(bg_compute *c, const char *op, const bg_tview *vs, int nv, int shape_ok,
                 const char *expected)
{
    if (!c)
        return 0;
    if (!c->recording) {
        BG_ERROR("compute", "op %s called outside begin/submit; dropped", op);
        return 0;
    }
    if (c->poisoned)
        return 0;
    const char *why = expected;
    for (int i = 0; i < nv; i++)
        if (!vs[i].buf)
            why = "a view has a NULL buffer";
    if (why == expected && shape_ok)
        return 1;
    c->poisoned = 1;
    bg_err_set(&c->poison_err, BG_EINVAL, "compute op %s: %s", op, why);
    return 0;
}

/* A backend op that fails may set c->poisoned and c->poison_err itself (to
 * name the bad view or token id); after() only fills a generic message when
 * it did not. */
static void after(bg_compute *c, const char *op, int rc)
{
    if (rc != BG_OK && !c->poisoned) {
        c->poisoned = 1;
        bg_err_set(&c->poison_err, rc, "compute op %s failed in the %s backend", op, c->desc);
    }
}

#define NV(a) ((int)(sizeof(a) / sizeof((a)[0])))

void bg_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K)
{
    bg_tview vs[] = {out, x, w};
    if (admit(c, "matmul", vs, NV(vs), M > 0 && N > 0 && K > 0, "M, N, K must be positive"))
        after(c, "matmul", c->vt->matmul(c, out, x, w, M, N, K));
}

void bg_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps)
{
    bg_tview vs[] = {out, x, w};
    if (admit(c, "rmsnorm", vs, NV(vs), T > 0 && n > 0 && eps >= 0.0f,
              "T and n must be positive and eps >= 0"))
        after(c, "rmsnorm", c->vt->rmsnorm(c, out, x, w, T, n, eps));
}

static int heads_ok(int nh, int nkv, int hs)
{
    return nh > 0 && nkv > 0 && hs > 0 && nkv <= nh && nh % nkv == 0;
}

void bg_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int n_heads, int n_kv_heads,
                int head_size)
{
    bg_tview vs[] = {q, k};
    if (admit(c, "rope", vs, NV(vs),
              T > 0 && pos0 >= 0 && heads_ok(n_heads, n_kv_heads, head_size) && head_size % 2 == 0,
              "need T > 0, pos0 >= 0, even head_size, n_kv_heads dividing n_heads"))
        after(c, "rope", c->vt->rope(c, q, k, T, pos0, n_heads, n_kv_heads, head_size));
}

void bg_op_softmax(bg_compute *c, bg_tview x, int rows, int n)
{
    bg_tview vs[] = {x};
    if (admit(c, "softmax", vs, NV(vs), rows > 0 && n > 0, "rows and n must be positive"))
        after(c, "softmax", c->vt->softmax(c, x, rows, n));
}

void bg_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kcache, bg_tview vcache,
                     int T, int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len)
{
    bg_tview vs[] = {out, q, kcache, vcache};
    if (admit(c, "attention", vs, NV(vs),
              T > 0 && pos0 >= 0 && heads_ok(n_heads, n_kv_heads, head_size) && seq_len > 0 &&
                  pos0 <= seq_len - T,
              "need T > 0, 0 <= pos0, pos0 + T <= seq_len, n_kv_heads dividing n_heads"))
        after(c, "attention",
              c->vt->attention(c, out, q, kcache, vcache, T, pos0, n_heads, n_kv_heads, head_size,
                               seq_len));
}

void bg_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n)
{
    bg_tview vs[] = {h, g};
    if (admit(c, "swiglu", vs, NV(vs), n > 0, "n must be positive"))
        after(c, "swiglu", c->vt->swiglu(c, h, g, n));
}

void bg_op_add(bg_compute *c, bg_tview x, bg_tview y, int n)
{
    bg_tview vs[] = {x, y};
    if (admit(c, "add", vs, NV(vs), n > 0, "n must be positive"))
        after(c, "add", c->vt->add(c, x, y, n));
}

void bg_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n)
{
    bg_tview vs[] = {dst, src};
    if (admit(c, "copy", vs, NV(vs), n > 0, "n must be positive"))
        after(c, "copy", c->vt->copy(c, dst, src, n));
}

void bg_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim)
{
    bg_tview vs[] = {out, table, tokens};
    if (admit(c, "embed", vs, NV(vs), T > 0 && dim > 0, "T and dim must be positive"))
        after(c, "embed", c->vt->embed(c, out, table, tokens, T, dim));
}

void bg_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets, int T,
                             int V)
{
    bg_tview vs[] = {out, logits, targets};
    if (admit(c, "logsoftmax_gather", vs, NV(vs), T > 0 && V > 0, "T and V must be positive"))
        after(c, "logsoftmax_gather", c->vt->logsoftmax_gather(c, out, logits, targets, T, V));
}

/* ---- training ops --------------------------------------------------------- */

/* 1 when the backend implements the op; else poisons the recording with
 * BG_EUNAVAIL naming the op and the backend (never a silent no-op). */
static int have(bg_compute *c, const char *op, const void *fn)
{
    if (fn)
        return 1;
    c->poisoned = 1;
    bg_err_set(&c->poison_err, BG_EUNAVAIL,
               "compute op %s: the %s backend has no kernel for it; use --backend cpu", op,
               c->desc);
    return 0;
}

#define TRAIN_OP(name, vs, shape_ok, expected, call)                                               \
    do {                                                                                           \
        if (admit(c, #name, vs, NV(vs), shape_ok, expected) && have(c, #name, c->vt->name))        \
            after(c, #name, c->vt->call);                                                          \
    } while (0)

void bg_op_attention_prefix(bg_compute *c, bg_tview out, bg_tview q, bg_tview kprefix,
                            bg_tview vprefix, int P, bg_tview ktail, bg_tview vtail, int T,
                            int pos0, int n_heads, int n_kv_heads, int head_size, int seq_len)
{
    bg_tview vs[] = {out, q, kprefix, vprefix, ktail, vtail};
    TRAIN_OP(attention_prefix, vs,
             T > 0 && P >= 0 && pos0 >= 0 && heads_ok(n_heads, n_kv_heads, head_size) &&
                 seq_len > 0 && pos0 <= seq_len - T,
             "need T > 0, P >= 0, 0 <= pos0, pos0 + T <= seq_len, n_kv_heads dividing n_heads",
             attention_prefix(c, out, q, kprefix, vprefix, P, ktail, vtail, T, pos0, n_heads,
                              n_kv_heads, head_size, seq_len));
}

int bg_compute_has_attention_prefix(const bg_compute *c)
{
    return c && c->vt->attention_prefix != NULL;
}

int bg_compute_pack(bg_compute *c, const bg_tview *w, const int *n, int nw, int K, bg_cpacked **out,
                    bg_err *err)
{
    if (!c || !w || !n || !out || nw < 1 || nw > BG_COMPUTE_PACK_MAX || K < 1)
        return bg_err_set(err, BG_EINVAL,
                          "bg_compute_pack: NULL argument, or %d weights (expected 1..%d) of "
                          "K = %d (expected > 0)",
                          nw, BG_COMPUTE_PACK_MAX, K);
    for (int i = 0; i < nw; i++)
        if (!w[i].buf || n[i] < 1)
            return bg_err_set(err, BG_EINVAL,
                              "bg_compute_pack: weight %d has no buffer or %d rows (expected > 0)",
                              i, n[i]);
    if (c->recording)
        return bg_err_set(err, BG_EINVAL, "bg_compute_pack: called while recording; submit first");
    if (!c->vt->pack)
        return bg_err_set(err, BG_EUNAVAIL, "bg_compute_pack: the %s backend packs no weights",
                          c->desc);
    return c->vt->pack(c, w, n, nw, K, out, err);
}

void bg_cpacked_destroy(bg_compute *c, bg_cpacked *p)
{
    if (c && p && c->vt->packed_destroy)
        c->vt->packed_destroy(c, p);
}

void bg_op_matmul_packed(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w, int M)
{
    bg_tview vs[] = {x};
    TRAIN_OP(matmul_packed, vs, M > 0 && out && w, "M must be positive, out and w non-NULL",
             matmul_packed(c, out, x, w, M, 0, (bg_tview){0}, 0, 0, 0));
}

void bg_op_matmul_packed_add(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                             int M)
{
    bg_tview vs[] = {x};
    TRAIN_OP(matmul_packed, vs, M > 0 && out && w, "M must be positive, out and w non-NULL",
             matmul_packed(c, out, x, w, M, 1, (bg_tview){0}, 0, 0, 0));
}

void bg_op_matmul_packed_rope(bg_compute *c, const bg_tview *out, bg_tview x, const bg_cpacked *w,
                              int M, bg_tview pos, int n_heads, int n_kv_heads, int head_size)
{
    bg_tview vs[] = {x, pos};
    TRAIN_OP(matmul_packed, vs,
             M > 0 && out && w && heads_ok(n_heads, n_kv_heads, head_size) && head_size % 2 == 0,
             "M must be positive, out and w non-NULL, n_kv_heads dividing n_heads, head_size even",
             matmul_packed(c, out, x, w, M, 0, pos, n_heads, n_kv_heads, head_size));
}

void bg_op_fill(bg_compute *c, bg_tview x, float value, int n)
{
    bg_tview vs[] = {x};
    TRAIN_OP(fill, vs, n > 0, "n must be positive", fill(c, x, value, n));
}

void bg_op_axpy(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n)
{
    bg_tview vs[] = {y, x};
    TRAIN_OP(axpy, vs, n > 0, "n must be positive", axpy(c, y, x, alpha, n));
}

void bg_op_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                          int dim)
{
    bg_tview vs[] = {dtable, dout, tokens};
    TRAIN_OP(embed_backward, vs, T > 0 && dim > 0, "T and dim must be positive",
             embed_backward(c, dtable, dout, tokens, T, dim));
}

void bg_op_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                            bg_tview w, int T, int n, float eps)
{
    bg_tview vs[] = {dx, dw, dout, x, w};
    TRAIN_OP(rmsnorm_backward, vs, T > 0 && n > 0 && eps >= 0.0f,
             "T and n must be positive and eps >= 0",
             rmsnorm_backward(c, dx, dw, dout, x, w, T, n, eps));
}

void bg_op_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                             int K, int accumulate)
{
    bg_tview vs[] = {dx, dy, w};
    TRAIN_OP(matmul_backward_x, vs, M > 0 && N > 0 && K > 0, "M, N, K must be positive",
             matmul_backward_x(c, dx, dy, w, M, N, K, accumulate != 0));
}

void bg_op_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                             int K)
{
    bg_tview vs[] = {dw, dy, x};
    TRAIN_OP(matmul_backward_w, vs, M > 0 && N > 0 && K > 0, "M, N, K must be positive",
             matmul_backward_w(c, dw, dy, x, M, N, K));
}

void bg_op_rope_backward(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int n_heads,
                         int n_kv_heads, int head_size)
{
    bg_tview vs[] = {dq, dk};
    TRAIN_OP(rope_backward, vs,
             T > 0 && pos0 >= 0 && heads_ok(n_heads, n_kv_heads, head_size) && head_size % 2 == 0,
             "need T > 0, pos0 >= 0, even head_size, n_kv_heads dividing n_heads",
             rope_backward(c, dq, dk, T, pos0, n_heads, n_kv_heads, head_size));
}

void bg_op_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                           bg_tview v, int B, int T, int n_heads, int n_kv_heads, int head_size)
{
    bg_tview vs[] = {out, lse, q, k, v};
    TRAIN_OP(attention_train, vs, B > 0 && T > 0 && heads_ok(n_heads, n_kv_heads, head_size),
             "need B > 0, T > 0, n_kv_heads dividing n_heads",
             attention_train(c, out, lse, q, k, v, B, T, n_heads, n_kv_heads, head_size));
}

void bg_op_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv, bg_tview dout,
                              bg_tview q, bg_tview k, bg_tview v, bg_tview out, bg_tview lse, int B,
                              int T, int n_heads, int n_kv_heads, int head_size)
{
    bg_tview vs[] = {dq, dk, dv, dout, q, k, v, out, lse};
    TRAIN_OP(attention_backward, vs, B > 0 && T > 0 && heads_ok(n_heads, n_kv_heads, head_size),
             "need B > 0, T > 0, n_kv_heads dividing n_heads",
             attention_backward(c, dq, dk, dv, dout, q, k, v, out, lse, B, T, n_heads, n_kv_heads,
                                head_size));
}

void bg_op_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                           bg_tview g, int n)
{
    bg_tview vs[] = {dh, dg, dout, h, g};
    TRAIN_OP(swiglu_backward, vs, n > 0, "n must be positive",
             swiglu_backward(c, dh, dg, dout, h, g, n));
}

void bg_op_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                bg_tview weights, int T, int V)
{
    bg_tview vs[] = {lp, dlogits, logits, targets, weights};
    TRAIN_OP(xent, vs, T > 0 && V > 0, "T and V must be positive",
             xent(c, lp, dlogits, logits, targets, weights, T, V));
}

void bg_op_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n)
{
    bg_tview vs[] = {out, x};
    TRAIN_OP(sumsq, vs, n > 0, "n must be positive", sumsq(c, out, x, n));
}

void bg_op_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                 int n_gsq, int n, const bg_adamw_params *hp)
{
    int clip = hp && hp->max_norm > 0.0f;
    bg_tview vs[] = {p, g, m, v, gsq};
    int nv = clip ? NV(vs) : NV(vs) - 1; /* gsq is only read when clipping */
    int ok = hp && n > 0 && hp->step >= 1 && hp->lr >= 0.0f && hp->beta1 >= 0.0f &&
             hp->beta1 < 1.0f && hp->beta2 >= 0.0f && hp->beta2 < 1.0f && hp->eps > 0.0f &&
             hp->weight_decay >= 0.0f && hp->max_norm >= 0.0f && (!clip || n_gsq > 0);
    if (admit(c, "adamw", vs, nv, ok,
              "need n > 0, step >= 1, lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0, "
              "max_norm >= 0 and n_gsq > 0 when clipping") &&
        have(c, "adamw", c->vt->adamw))
        after(c, "adamw", c->vt->adamw(c, p, g, m, v, gsq, clip ? n_gsq : 0, n, hp));
}
