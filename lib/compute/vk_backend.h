/*
 * vk_backend.h — the Vulkan backend's state, shared by its three files:
 * compute_vulkan.c (lifecycle, buffers, recording, scratch, timestamps),
 * compute_vulkan_ops.c (one function per inference op: shapes -> bindings,
 * push constants and a grid; plus rope_backward and attention_train, which
 * reuse those kernels) and compute_vulkan_train.c (the other training ops).
 *
 * Recording (between begin and submit) appends to ONE command buffer:
 * per dispatch a descriptor set from the per-recording pools (reset at
 * begin), pipeline bind, push constants, dispatch. bg_compute_barrier records
 * one global compute->compute memory barrier, and only when a dispatch was
 * recorded since the last one. Submit ends the buffer with a compute->host
 * barrier, submits with a fence and waits. A recording longer than
 * split_every dispatches runs as several fenced submits of the same command
 * buffer (each later part opens with a barrier); the caller sees one.
 *
 * Ownership: bg_vk_compute owns the device, every buffer (list `bufs`),
 * pools and pipelines; destroy releases all of them. Thread: one caller at a
 * time (compute.h).
 */
#ifndef BG_VK_BACKEND_H
#define BG_VK_BACKEND_H

#include <stddef.h>

#include "compute/compute_backend.h"
#include "compute/vk_device.h"
#include "compute/vk_mem.h"
#include "compute/vk_pipeline.h"

/* A bg_cbuf of this backend (bg_cbuf * is cast to and from bg_vk_buf *). */
typedef struct bg_vk_buf {
    bg_vk_alloc a;
    size_t bytes; /* as requested */
    int unzeroed; /* 1 from create until written whole or zeroed (bg__vk_buf_ready) */
    struct bg_vk_buf *prev, *next;
} bg_vk_buf;

/* One binding of a dispatch: a view and how many elements the kernel may
 * touch from its offset (the bound range; 0 binds a dummy). */
typedef struct bg_vk_bind {
    bg_tview v;
    size_t n;
} bg_vk_bind;

typedef struct bg_vk_compute {
    bg_compute base; /* first: bg_compute * casts to bg_vk_compute * */
    bg_vk_dev dev;
    bg_vk_mem mem;
    bg_vk_pipes pipes;
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    VkFence fence;
    int zero_at_create; /* BG_VK_ZERO_AT_CREATE=1: no zero-on-request (a bench's baseline) */
    VkDescriptorPool *dpools;
    int ndpools, capdpools, cur_dpool;
    bg_vk_buf *bufs;         /* live buffers */
    bg_vk_buf *dummy;        /* bound to unused bindings */
    int unbarriered;         /* dispatches recorded since the last barrier */
    int ndispatch, nbarrier; /* since begin */
    int cb_dispatches;       /* in the command buffer being recorded */
    int split_every, nsplit; /* long recordings: submit every split_every dispatches */
    /* kernel variants chosen from the capabilities */
    uint32_t wg;                                /* reductions and elementwise */
    uint32_t attn_wg;                           /* attention forward and backward */
    uint32_t mv_wg;                             /* matvec: invocations per workgroup */
    uint32_t mv_lanes;                          /* matvec: at most this many invocations per row */
    int mv_subgroup;                            /* matvec: one subgroup per row (matvec_sg.comp) */
    uint32_t mm_tx, mm_ty, mm_bk, mm_rm, mm_rn; /* matmul tile (rm*ty) x (rn*tx), K step bk */
    /* training GEMMs (gemm.comp): the tile of large outputs (TX, TY, BK, RM,
     * RN), from gemm_big outputs on; split-K when fewer than gemm_groups
     * tiles would run (0: never) */
    uint32_t gb_tile[5];
    size_t gemm_big;
    uint32_t gemm_groups;
    uint32_t gemm_split_k; /* k values per split-K slice, at least */
    /* scratch: device memory for an op's intermediate results (rmsnorm's
     * 1/rms per row, attention's D, sumsq's partials), bump-allocated from
     * chunks that live as long as the backend; begin resets every chunk's
     * use, so one recording never hands out the same bytes twice */
    struct {
        bg_vk_buf *buf;
        size_t cap, used; /* elements */
    } scratch[16];
    int nscratch;
    /* rope frequency tables, one per head size, made on first use */
    struct {
        int hs;
        bg_vk_buf *buf;
    } rope[8];
    int nrope;
    /* per-op timestamps (env BG_VK_TIMESTAMPS=1) */
    int ts_on;
    VkQueryPool qpool;
    uint32_t qcap, nq;
    const char **qnames; /* qcap / 2 op names */
} bg_vk_compute;

/* Record one dispatch of shader with spec constants and push constants pc
 * (offsets pc->o filled here from the bindings) over grid gx*gy*gz. On
 * failure the recording is poisoned with a message naming op and view. */
/* Zero-on-request: a new buffer is not filled at create; before its first
 * read — a host read, a partial write, a dispatch that binds it, an id
 * check — it is zeroed here (a no-op once done), and a host write of all
 * its bytes makes the fill unneeded (compute_vulkan.c). So weights
 * uploaded whole are written once, and every buffer still reads as zeros
 * where nothing wrote it (compute.h). */
int bg__vk_buf_ready(bg_vk_compute *vc, bg_vk_buf *b, bg_err *err);
int bg__vk_dispatch(bg_vk_compute *vc, const char *op, const char *shader, const uint32_t *spec,
                    int nspec, const bg_vk_bind *b, int nb, bg_vk_pc *pc, uint32_t gx, uint32_t gy,
                    uint32_t gz);
/* Record a global compute->compute barrier now (inside an op made of
 * dependent dispatches), as bg_compute_barrier does. */
void bg__vk_barrier(bg_vk_compute *vc);
/* A view of n elements of scratch memory valid until the next begin; on
 * failure the recording is poisoned and the code returned. */
int bg__vk_scratch(bg_vk_compute *vc, size_t n, const char *op, bg_tview *out);
/* One workgroup per row (rows <= maxComputeWorkGroupCount[0]) of a
 * reduction kernel whose only spec constant is WG. */
int bg__vk_per_row(bg_vk_compute *vc, const char *op, const bg_vk_bind *b, int nb, bg_vk_pc *pc,
                   int rows);

/* The rows of an embedding table (those of its buffer past the view's
 * offset, as compute.h says) and how many fit one descriptor range; a row
 * too long for any range poisons the recording. */
int bg__vk_table_rows(bg_vk_compute *vc, const char *op, bg_tview table, int dim, size_t *rows,
                      size_t *room);

/* Every id of ids[0..n) in [0, limit), read from its buffer now (ids
 * come from the host and no op writes them, so this is what the kernel
 * will read); otherwise the recording is poisoned with BG_EINVAL and the
 * CPU backend's message: "compute op OP: id ID at row ROW out of range;
 * expected 0..LIMIT-1". */
int bg__vk_ids_ok(bg_vk_compute *vc, const char *op, bg_tview ids, int n, size_t limit);

/* Output dims per invocation (RD) of an attention kernel for head size hs,
 * whose shared memory is RD * per_rd + fixed floats per invocation; 0
 * (recording poisoned) when the device has less shared memory. */
uint32_t bg__vk_attention_rd(bg_vk_compute *vc, const char *op, int hs, uint32_t per_rd,
                             uint32_t fixed);

#define BG_VK_MAX_GROUPS 65535u /* every device supports this grid size */

static inline uint32_t bg__vk_ceil_div(size_t a, size_t b)
{
    return (uint32_t)((a + b - 1) / b);
}

/* Grid of a grid-stride kernel over n items. */
static inline uint32_t bg__vk_stride_groups(const bg_vk_compute *vc, size_t n)
{
    uint32_t g = bg__vk_ceil_div(n, vc->wg);
    return g > BG_VK_MAX_GROUPS ? BG_VK_MAX_GROUPS : (g ? g : 1);
}

static inline bg_vk_bind bg__vk_bind(bg_tview v, size_t n)
{
    return (bg_vk_bind){.v = v, .n = n};
}

static inline bg_tview bg__vk_at(bg_tview v, size_t elems)
{
    v.off += elems;
    return v;
}

/* Poison the recording with a formatted message; returns code. */
int bg__vk_fail(bg_vk_compute *vc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The op table entries (compute_vulkan_ops.c). */
int bg__vk_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K);
int bg__vk_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps);
int bg__vk_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int nh, int nkv, int hs);
int bg__vk_op_softmax(bg_compute *c, bg_tview x, int rows, int n);
int bg__vk_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kc, bg_tview vc, int T,
                        int pos0, int nh, int nkv, int hs, int seq_len);
int bg__vk_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n);
int bg__vk_op_add(bg_compute *c, bg_tview x, bg_tview y, int n);
int bg__vk_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n);
int bg__vk_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim);
int bg__vk_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets,
                                int T, int V);

/* Training ops: rope_backward and attention_train in compute_vulkan_ops.c
 * (they share the forward kernels), the rest in compute_vulkan_train.c. */
int bg__vk_op_rope_backward(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int nh,
                            int nkv, int hs);
int bg__vk_op_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                              bg_tview v, int B, int T, int nh, int nkv, int hs);
int bg__vk_op_fill(bg_compute *c, bg_tview x, float value, int n);
int bg__vk_op_axpy(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n);
int bg__vk_op_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                             int dim);
int bg__vk_op_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                               bg_tview w, int T, int n, float eps);
int bg__vk_op_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                                int K, int accumulate);
int bg__vk_op_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                                int K);
int bg__vk_op_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv,
                                 bg_tview dout, bg_tview q, bg_tview k, bg_tview v, bg_tview out,
                                 bg_tview lse, int B, int T, int nh, int nkv, int hs);
int bg__vk_op_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                              bg_tview g, int n);
int bg__vk_op_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                   bg_tview weights, int T, int V);
int bg__vk_op_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n);
int bg__vk_op_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                    int n_gsq, int n, const bg_adamw_params *hp);

#endif
