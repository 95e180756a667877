/*
 * vk_backend.h — the Vulkan backend's state, shared by its two files:
 * compute_vulkan.c (lifecycle, buffers, recording, timestamps) and
 * compute_vulkan_ops.c (one function per op: shapes -> bindings, push
 * constants and a grid).
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
    VkDescriptorPool *dpools;
    int ndpools, capdpools, cur_dpool;
    bg_vk_buf *bufs;  /* live buffers */
    bg_vk_buf *dummy; /* bound to unused bindings */
    int unbarriered;  /* dispatches recorded since the last barrier */
    int ndispatch, nbarrier; /* since begin */
    int cb_dispatches;       /* in the command buffer being recorded */
    int split_every, nsplit; /* long recordings: submit every split_every dispatches */
    /* kernel variants chosen from the capabilities */
    uint32_t wg;             /* reductions and elementwise */
    uint32_t mv_wg;          /* matvec: invocations per workgroup */
    uint32_t mv_lanes;       /* matvec: at most this many invocations per row */
    int mv_subgroup;         /* matvec: one subgroup per row (matvec_sg.comp) */
    uint32_t mm_tx, mm_ty, mm_bk, mm_rm, mm_rn; /* matmul tile (rm*ty) x (rn*tx), K step bk */
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
int bg__vk_dispatch(bg_vk_compute *vc, const char *op, const char *shader, const uint32_t *spec,
                    int nspec, const bg_vk_bind *b, int nb, bg_vk_pc *pc, uint32_t gx,
                    uint32_t gy, uint32_t gz);
/* Poison the recording with a formatted message; returns code. */
int bg__vk_fail(bg_vk_compute *vc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The op table entries (compute_vulkan_ops.c). */
int bg__vk_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K);
int bg__vk_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n,
                      float eps);
int bg__vk_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int nh, int nkv,
                   int hs);
int bg__vk_op_softmax(bg_compute *c, bg_tview x, int rows, int n);
int bg__vk_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kc, bg_tview vc, int T,
                        int pos0, int nh, int nkv, int hs, int seq_len);
int bg__vk_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n);
int bg__vk_op_add(bg_compute *c, bg_tview x, bg_tview y, int n);
int bg__vk_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n);
int bg__vk_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim);
int bg__vk_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets,
                                int T, int V);

#endif
