/*
 * compute_vulkan.c — the Vulkan backend of compute.h: lifecycle, buffers,
 * recording (begin / barrier / dispatch / submit) and per-op timestamps.
 * The ops themselves (shapes -> dispatches) are in compute_vulkan_ops.c;
 * device, memory and pipelines in vk_device.c, vk_mem.c, vk_pipeline.c.
 *
 * Why shaped so (spec/compute.md, after llama.cpp's ggml-vulkan): one
 * descriptor-set layout and pipeline layout for all kernels; descriptor
 * ranges explicit and within maxStorageBufferRange (a view's offset is
 * aligned down to minStorageBufferOffsetAlignment and the remainder passed
 * in push constants, so any element offset works); barriers only where the
 * caller says ops depend on each other; one fence wait per submit.
 *
 * Environment: BG_VK_ALLOW_CPU=1 / BG_VK_DEVICE=<i> (device choice, see
 * vk_device.h), BG_VK_TIMESTAMPS=1 (log a per-op GPU time table at each
 * submit); for tests and tuning: BG_VK_FORCE_STAGING=1 (vk_mem.h),
 * BG_VK_MAX_RANGE=<bytes> (lower maxStorageBufferRange, >= 4096),
 * BG_VK_MAX_ALLOC=<bytes> (lower maxMemoryAllocationSize, >= 4096),
 * BG_VK_SUBMIT_EVERY=<n> (dispatches per submit of a long recording, default
 * 1024, 0 = one submit whatever the length),
 * BG_VK_ZERO_AT_CREATE=1 (fill every new buffer at create, as before
 * zero-on-request: the baseline of bench_vk_upload),
 * BG_VK_MV_WG, BG_VK_MV_LANES, BG_VK_MV_SUBGROUP, BG_VK_MM_TILE, and for the
 * training GEMMs BG_VK_GEMM_TILE, BG_VK_GEMM_BIG, BG_VK_GEMM_GROUPS,
 * BG_VK_GEMM_SPLIT_K (choose_variants below).
 *
 * Thread: one caller at a time (compute.h). Ownership: see vk_backend.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "compute/vk_backend.h"

#define BG_VK_SETS_PER_POOL 256
#define BG_VK_TS_OPS 1024
#define BG_VK_SPLIT_EVERY 1024 /* dispatches per submit in a long recording */
#define BG_VK_SUBMIT_TIMEOUT_NS (120ull * 1000 * 1000 * 1000)

static bg_vk_compute *VC(bg_compute *c)
{
    return (bg_vk_compute *)c;
}

int bg__vk_fail(bg_vk_compute *vc, int code, const char *fmt, ...)
{
    if (!vc->base.poisoned) {
        va_list ap;
        va_start(ap, fmt);
        bg_err_vset(&vc->base.poison_err, code, fmt, ap);
        va_end(ap);
        vc->base.poisoned = 1;
    }
    return code;
}

/* ---- buffers ---------------------------------------------------------- */

static int buf_create(bg_compute *c, size_t bytes, bg_cbuf **out, bg_err *err)
{
    bg_vk_compute *vc = VC(c);
    bg_vk_buf *b = calloc(1, sizeof(*b));
    if (!b)
        return bg_err_set(err, BG_ENOMEM, "vulkan: out of host memory");
    int rc = bg__vk_mem_alloc(&vc->mem, bytes, 0, &b->a, err);
    if (rc != BG_OK) {
        free(b);
        return rc;
    }
    b->bytes = bytes;
    b->unzeroed = 1; /* zeroed on request: bg__vk_buf_ready */
    if (vc->zero_at_create && (rc = bg__vk_buf_ready(vc, b, err)) != BG_OK) {
        bg__vk_mem_free(&vc->mem, &b->a);
        free(b);
        return rc;
    }
    b->next = vc->bufs;
    if (vc->bufs)
        vc->bufs->prev = b;
    vc->bufs = b;
    *out = (bg_cbuf *)b;
    return BG_OK;
}

static void buf_destroy(bg_compute *c, bg_cbuf *cb)
{
    bg_vk_compute *vc = VC(c);
    bg_vk_buf *b = (bg_vk_buf *)cb;
    if (b->prev)
        b->prev->next = b->next;
    else
        vc->bufs = b->next;
    if (b->next)
        b->next->prev = b->prev;
    bg__vk_mem_free(&vc->mem, &b->a);
    free(b);
}

static int io_check(bg_vk_buf *b, size_t off, size_t n, const char *what, bg_err *err)
{
    if (off > b->bytes || n > b->bytes - off)
        return bg_err_set(err, BG_EINVAL,
                          "vulkan %s: bytes [%zu, %zu+%zu) outside the buffer of %zu bytes", what,
                          off, off, n, b->bytes);
    return BG_OK;
}

int bg__vk_buf_ready(bg_vk_compute *vc, bg_vk_buf *b, bg_err *err)
{
    if (!b->unzeroed)
        return BG_OK;
    int rc = bg__vk_mem_zero(&vc->mem, &b->a, err);
    if (rc == BG_OK)
        b->unzeroed = 0;
    return rc;
}

/* A write of all the bytes of a buffer never zeroed: no fill, only the
 * allocation's rounding tail past b->bytes (which a vec4 read of the last
 * elements may reach). Anything less zeroes the whole buffer first. */
static int buf_write(bg_compute *c, bg_cbuf *cb, size_t off, const void *src, size_t n, bg_err *err)
{
    bg_vk_compute *vc = VC(c);
    bg_vk_buf *b = (bg_vk_buf *)cb;
    int rc = io_check(b, off, n, "buffer write", err);
    int whole = b->unzeroed && off == 0 && n == b->bytes;
    if (rc == BG_OK && !whole)
        rc = bg__vk_buf_ready(vc, b, err);
    if (rc == BG_OK)
        rc = bg__vk_mem_write(&vc->mem, &b->a, off, src, n, err);
    if (rc == BG_OK && whole) {
        rc = bg__vk_mem_zero_range(&vc->mem, &b->a, b->bytes, b->a.size - b->bytes, err);
        if (rc == BG_OK)
            b->unzeroed = 0;
    }
    return rc;
}

static int buf_read(bg_compute *c, bg_cbuf *cb, size_t off, void *dst, size_t n, bg_err *err)
{
    bg_vk_buf *b = (bg_vk_buf *)cb;
    int rc = io_check(b, off, n, "buffer read", err);
    if (rc == BG_OK)
        rc = bg__vk_buf_ready(VC(c), b, err);
    return rc != BG_OK ? rc : bg__vk_mem_read(&VC(c)->mem, &b->a, off, dst, n, err);
}

/* ---- descriptor sets ---------------------------------------------------- */

static int dpool_add(bg_vk_compute *vc)
{
    if (vc->ndpools == vc->capdpools) {
        int cap = vc->capdpools ? 2 * vc->capdpools : 4;
        VkDescriptorPool *np = realloc(vc->dpools, (size_t)cap * sizeof(*np));
        if (!np)
            return BG_ENOMEM;
        vc->dpools = np;
        vc->capdpools = cap;
    }
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = BG_VK_SETS_PER_POOL * BG_VK_BINDINGS};
    VkDescriptorPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = BG_VK_SETS_PER_POOL,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps};
    VkResult r =
        vc->dev.fn.vkCreateDescriptorPool(vc->dev.dev, &pci, NULL, &vc->dpools[vc->ndpools]);
    if (r != VK_SUCCESS)
        return BG_ENOMEM;
    vc->ndpools++;
    return BG_OK;
}

static int alloc_set(bg_vk_compute *vc, VkDescriptorSet *set)
{
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &vc->pipes.dsl};
    for (;;) {
        if (vc->cur_dpool == vc->ndpools && dpool_add(vc) != BG_OK)
            return bg__vk_fail(vc, BG_ENOMEM, "vulkan: cannot create a descriptor pool");
        ai.descriptorPool = vc->dpools[vc->cur_dpool];
        VkResult r = vc->dev.fn.vkAllocateDescriptorSets(vc->dev.dev, &ai, set);
        if (r == VK_SUCCESS)
            return BG_OK;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
            return bg__vk_fail(vc, BG_ENOMEM, "vulkan: vkAllocateDescriptorSets: %s",
                               bg__vk_result_str(r));
        vc->cur_dpool++;
    }
}

/* ---- recording ---------------------------------------------------------- */

/* (Re)start vc->cmd: its pool reset, recording begun, timestamps reset. */
static int cb_start(bg_vk_compute *vc, bg_err *err)
{
    bg_vk_fns *f = &vc->dev.fn;
    f->vkResetCommandPool(vc->dev.dev, vc->cpool, 0);
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = f->vkBeginCommandBuffer(vc->cmd, &bi);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: vkBeginCommandBuffer: %s", bg__vk_result_str(r));
    if (vc->ts_on)
        f->vkCmdResetQueryPool(vc->cmd, vc->qpool, 0, vc->qcap);
    vc->nq = 0;
    vc->cb_dispatches = 0;
    return BG_OK;
}

static int begin(bg_compute *c, bg_err *err)
{
    bg_vk_compute *vc = VC(c);
    for (int i = 0; i < vc->ndpools; i++)
        vc->dev.fn.vkResetDescriptorPool(vc->dev.dev, vc->dpools[i], 0);
    vc->cur_dpool = 0;
    vc->unbarriered = 0;
    vc->ndispatch = 0;
    vc->nbarrier = 0;
    for (int i = 0; i < vc->nscratch; i++)
        vc->scratch[i].used = 0; /* the last recording's work has completed */
    return cb_start(vc, err);
}

#define BG_VK_SCRATCH_MIN ((size_t)1 << 20) /* elements per chunk at least (4 MiB) */
#define BG_VK_SCRATCH_MAX ((size_t)1 << 28) /* ... and at most, unless one view needs more */

int bg__vk_scratch(bg_vk_compute *vc, size_t n, const char *op, bg_tview *out)
{
    /* 64-element (256-byte) granules keep every view's descriptor offset
     * aligned on any device */
    size_t need = (n + 63) / 64 * 64;
    for (int i = 0; i < vc->nscratch; i++) {
        if (vc->scratch[i].cap - vc->scratch[i].used >= need) {
            *out = (bg_tview){(bg_cbuf *)vc->scratch[i].buf, vc->scratch[i].used};
            vc->scratch[i].used += need;
            return BG_OK;
        }
    }
    int max = (int)(sizeof(vc->scratch) / sizeof(vc->scratch[0]));
    if (vc->nscratch == max)
        return bg__vk_fail(vc, BG_ELIMIT,
                           "vulkan op %s: scratch memory exhausted (%d chunks in one recording); "
                           "submit the recording in smaller parts",
                           op, max);
    /* each new chunk at least as large as all before it: a recording that
     * needs a lot (split-K partials of every weight gradient of a step)
     * takes few chunks */
    size_t total = 0;
    for (int i = 0; i < vc->nscratch; i++)
        total += vc->scratch[i].cap;
    size_t cap = need > BG_VK_SCRATCH_MIN ? need : BG_VK_SCRATCH_MIN;
    cap = cap > total ? cap : total;
    if (cap > BG_VK_SCRATCH_MAX)
        cap = need > BG_VK_SCRATCH_MAX ? need : BG_VK_SCRATCH_MAX;
    /* never a chunk over the device's allocation limit where the request
     * fits it (the allocator refuses what is over, whatever the reason) */
    size_t lim = vc->base.max_alloc / 4 / 64 * 64;
    if (lim && cap > lim)
        cap = need > lim ? need : lim;
    bg_cbuf *b = NULL;
    bg_err err;
    int rc = buf_create(&vc->base, cap * 4, &b, &err);
    if (rc != BG_OK)
        return bg__vk_fail(vc, rc, "vulkan op %s: scratch of %zu floats: %s", op, cap, err.msg);
    vc->scratch[vc->nscratch].buf = (bg_vk_buf *)b;
    vc->scratch[vc->nscratch].cap = cap;
    vc->scratch[vc->nscratch++].used = need;
    *out = (bg_tview){b, 0};
    return BG_OK;
}

static void mem_barrier(bg_vk_compute *vc, VkPipelineStageFlags dst_stage, VkAccessFlags dst)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = dst};
    vc->dev.fn.vkCmdPipelineBarrier(vc->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, dst_stage, 0, 1,
                                    &mb, 0, NULL, 0, NULL);
}

static void barrier(bg_compute *c)
{
    bg__vk_barrier(VC(c));
}

void bg__vk_barrier(bg_vk_compute *vc)
{
    if (!vc->unbarriered)
        return; /* nothing written since the last barrier */
    mem_barrier(vc, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    vc->unbarriered = 0;
    vc->nbarrier++;
}

/* Bind b->v for b->n elements into *info and set *o, the view's element
 * offset inside the bound range: the descriptor offset is aligned down to
 * max(minStorageBufferOffsetAlignment, 16). */
static int bind_view(bg_vk_compute *vc, const char *op, int slot, const bg_vk_bind *b,
                     VkDescriptorBufferInfo *info, uint32_t *o)
{
    const bg_vk_caps *caps = &vc->dev.caps;
    bg_vk_buf *buf = (bg_vk_buf *)b->v.buf;
    size_t elems = buf->bytes / 4;
    if (b->v.off > elems || b->n > elems - b->v.off)
        return bg__vk_fail(vc, BG_EINVAL,
                           "vulkan op %s: view %d [%zu, %zu+%zu) elements exceeds its "
                           "buffer of %zu elements",
                           op, slot, b->v.off, b->v.off, b->n, elems);
    /* 16 bytes at least, so that kernels may read a view as vec4 when its
     * element offset is a multiple of 4 (allocations are 16-aligned too) */
    VkDeviceSize align = caps->storage_align < 16 ? 16 : caps->storage_align;
    VkDeviceSize start = buf->a.off + (VkDeviceSize)b->v.off * 4;
    VkDeviceSize base = start / align * align;
    VkDeviceSize rem = start - base;
    VkDeviceSize range = rem + (VkDeviceSize)b->n * 4;
    if (range > caps->max_storage_range)
        return bg__vk_fail(vc, BG_ELIMIT,
                           "vulkan op %s: view %d spans %llu bytes, over the device's "
                           "maxStorageBufferRange of %llu bytes (%s); split the tensor into "
                           "smaller views",
                           op, slot, (unsigned long long)range,
                           (unsigned long long)caps->max_storage_range, caps->name);
    if (buf->unzeroed && b->n > 0) { /* first use: zero it now (before the recording runs) */
        bg_err zerr;
        bg_err_clear(&zerr);
        int zrc = bg__vk_buf_ready(vc, buf, &zerr);
        if (zrc != BG_OK)
            return bg__vk_fail(vc, zrc, "vulkan op %s: view %d: %s", op, slot, zerr.msg);
    }
    if (b->n == 0) { /* nothing to touch (an empty table chunk): bind the dummy */
        *info = (VkDescriptorBufferInfo){
            .buffer = vc->dummy->a.block->buf, .offset = vc->dummy->a.off, .range = 16};
        *o = 0;
        return BG_OK;
    }
    *info = (VkDescriptorBufferInfo){.buffer = buf->a.block->buf, .offset = base, .range = range};
    *o = (uint32_t)(rem / 4);
    return BG_OK;
}

static void ts_write(bg_vk_compute *vc, VkPipelineStageFlagBits stage)
{
    vc->dev.fn.vkCmdWriteTimestamp(vc->cmd, stage, vc->qpool, vc->nq++);
}

/* Log a per-op table (count, total, mean, share) of the timed dispatches.
 * Each op is timed from top of pipe before it to bottom of pipe after it:
 * independent dispatches that overlap on the device both count the overlap,
 * so shares are indicative when a recording has few barriers. */
static void ts_report(bg_vk_compute *vc)
{
    if (!vc->ts_on || vc->nq == 0)
        return;
    uint64_t *q = malloc((size_t)vc->nq * sizeof(*q));
    if (!q)
        return;
    VkResult r = vc->dev.fn.vkGetQueryPoolResults(
        vc->dev.dev, vc->qpool, 0, vc->nq, (size_t)vc->nq * sizeof(*q), q, sizeof(*q),
        VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    enum { MAXN = 32 };
    const char *names[MAXN];
    double total_us[MAXN];
    int count[MAXN], nn = 0;
    double all = 0.0;
    for (uint32_t i = 0; r == VK_SUCCESS && i + 1 < vc->nq; i += 2) {
        double us = (double)(q[i + 1] - q[i]) * vc->dev.caps.timestamp_period_ns / 1000.0;
        const char *name = vc->qnames[i / 2];
        int k = 0;
        while (k < nn && strcmp(names[k], name) != 0)
            k++;
        if (k == nn && nn < MAXN) {
            names[nn] = name;
            total_us[nn] = 0.0;
            count[nn++] = 0;
        }
        if (k < nn) {
            total_us[k] += us;
            count[k]++;
        }
        all += us;
    }
    free(q);
    if (r != VK_SUCCESS) {
        BG_WARN("vulkan", "timestamps unavailable: %s", bg__vk_result_str(r));
        return;
    }
    BG_INFO("vulkan",
            "per-op GPU time, %u of %d dispatches timed, %d barriers, %.1f us in ops:", vc->nq / 2,
            vc->cb_dispatches, vc->nbarrier, all);
    BG_INFO("vulkan", "  %-18s %6s %12s %10s %6s", "op", "count", "total us", "mean us", "%");
    for (int k = 0; k < nn; k++)
        BG_INFO("vulkan", "  %-18s %6d %12.1f %10.2f %5.1f%%", names[k], count[k], total_us[k],
                total_us[k] / count[k], all > 0 ? 100.0 * total_us[k] / all : 0.0);
}

/* End vc->cmd, submit it with the fence, wait, log its timestamps. */
static int cb_run(bg_vk_compute *vc, bg_err *err)
{
    bg_vk_fns *f = &vc->dev.fn;
    VkResult r = f->vkEndCommandBuffer(vc->cmd);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: vkEndCommandBuffer: %s", bg__vk_result_str(r));
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &vc->cmd};
    r = f->vkResetFences(vc->dev.dev, 1, &vc->fence);
    if (r == VK_SUCCESS)
        r = f->vkQueueSubmit(vc->dev.queue, 1, &si, vc->fence);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: vkQueueSubmit (%d dispatches): %s",
                          vc->cb_dispatches, bg__vk_result_str(r));
    r = f->vkWaitForFences(vc->dev.dev, 1, &vc->fence, VK_TRUE, BG_VK_SUBMIT_TIMEOUT_NS);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: waiting for %d dispatches on %s: %s",
                          vc->cb_dispatches, vc->dev.caps.name, bg__vk_result_str(r));
    ts_report(vc);
    return BG_OK;
}

/* A long recording is cut into several fenced submits of at most
 * split_every dispatches (GPU watchdogs kill long command buffers on
 * display GPUs): run what is recorded, start over, and open the new part
 * with a barrier so that it sees every write of the earlier parts. */
static int split(bg_vk_compute *vc)
{
    bg_err err;
    int rc = cb_run(vc, &err);
    if (rc == BG_OK)
        rc = cb_start(vc, &err);
    if (rc != BG_OK)
        return bg__vk_fail(vc, rc, "vulkan: intermediate submit: %s", err.msg);
    mem_barrier(vc, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    vc->unbarriered = 0;
    vc->nsplit++;
    return BG_OK;
}

int bg__vk_dispatch(bg_vk_compute *vc, const char *op, const char *shader, const uint32_t *spec,
                    int nspec, const bg_vk_bind *b, int nb, bg_vk_pc *pc, uint32_t gx, uint32_t gy,
                    uint32_t gz)
{
    const bg_vk_caps *caps = &vc->dev.caps;
    if (gx > caps->max_wg_count[0] || gy > caps->max_wg_count[1] || gz > caps->max_wg_count[2])
        return bg__vk_fail(vc, BG_ELIMIT,
                           "vulkan op %s: grid %ux%ux%u exceeds maxComputeWorkGroupCount "
                           "%ux%ux%u",
                           op, gx, gy, gz, caps->max_wg_count[0], caps->max_wg_count[1],
                           caps->max_wg_count[2]);
    VkDescriptorBufferInfo info[BG_VK_BINDINGS];
    VkWriteDescriptorSet w[BG_VK_BINDINGS];
    for (int i = 0; i < BG_VK_BINDINGS; i++) {
        bg_vk_bind dummy = {.v = {(bg_cbuf *)vc->dummy, 0}, .n = 1};
        int rc = bind_view(vc, op, i, i < nb ? &b[i] : &dummy, &info[i], &pc->o[i]);
        if (rc != BG_OK)
            return rc;
    }
    if (vc->split_every && vc->cb_dispatches >= vc->split_every && split(vc) != BG_OK)
        return vc->base.poison_err.code;
    bg_err err;
    VkPipeline pl;
    if (bg__vk_pipes_get(&vc->pipes, shader, spec, nspec, &pl, &err) != BG_OK)
        return bg__vk_fail(vc, err.code, "vulkan op %s: %s", op, err.msg);
    VkDescriptorSet set;
    int rc = alloc_set(vc, &set);
    if (rc != BG_OK)
        return rc;
    for (int i = 0; i < BG_VK_BINDINGS; i++)
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &info[i]};
    bg_vk_fns *f = &vc->dev.fn;
    f->vkUpdateDescriptorSets(vc->dev.dev, BG_VK_BINDINGS, w, 0, NULL);
    int timed = vc->ts_on && vc->nq + 2 <= vc->qcap;
    if (timed) {
        vc->qnames[vc->nq / 2] = op;
        ts_write(vc, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT);
    }
    f->vkCmdBindPipeline(vc->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pl);
    f->vkCmdBindDescriptorSets(vc->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vc->pipes.layout, 0, 1,
                               &set, 0, NULL);
    f->vkCmdPushConstants(vc->cmd, vc->pipes.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(*pc),
                          pc);
    if (gx && gy && gz)
        f->vkCmdDispatch(vc->cmd, gx, gy, gz);
    if (timed)
        ts_write(vc, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT);
    vc->unbarriered = 1;
    vc->ndispatch++;
    vc->cb_dispatches++;
    return BG_OK;
}

static int submit(bg_compute *c, bg_err *err)
{
    bg_vk_compute *vc = VC(c);
    if (c->poisoned) { /* compute.c reports the poison; nothing runs */
        vc->dev.fn.vkEndCommandBuffer(vc->cmd);
        return BG_OK;
    }
    /* Shader writes become visible to host reads after the fence wait. */
    mem_barrier(vc, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    if (vc->nsplit)
        BG_DEBUG("vulkan", "recording of %d dispatches ran as %d submits", vc->ndispatch,
                 vc->nsplit + 1);
    return cb_run(vc, err);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void destroy(bg_compute *c)
{
    bg_vk_compute *vc = VC(c);
    bg_vk_fns *f = &vc->dev.fn;
    if (vc->dev.dev)
        f->vkDeviceWaitIdle(vc->dev.dev);
    while (vc->bufs)
        buf_destroy(c, (bg_cbuf *)vc->bufs);
    for (int i = 0; i < vc->ndpools; i++)
        f->vkDestroyDescriptorPool(vc->dev.dev, vc->dpools[i], NULL);
    free(vc->dpools);
    if (vc->qpool)
        f->vkDestroyQueryPool(vc->dev.dev, vc->qpool, NULL);
    free(vc->qnames);
    if (vc->fence)
        f->vkDestroyFence(vc->dev.dev, vc->fence, NULL);
    if (vc->cpool)
        f->vkDestroyCommandPool(vc->dev.dev, vc->cpool, NULL);
    bg__vk_pipes_close(&vc->pipes);
    bg__vk_mem_close(&vc->mem);
    bg__vk_dev_close(&vc->dev);
    free(vc);
}

static const bg_compute_vtbl VK_VTBL = {
    .destroy = destroy,
    .buf_create = buf_create,
    .buf_destroy = buf_destroy,
    .buf_write = buf_write,
    .buf_read = buf_read,
    .begin = begin,
    .barrier = barrier,
    .submit = submit,
    .matmul = bg__vk_op_matmul,
    .rmsnorm = bg__vk_op_rmsnorm,
    .rope = bg__vk_op_rope,
    .softmax = bg__vk_op_softmax,
    .attention = bg__vk_op_attention,
    .swiglu = bg__vk_op_swiglu,
    .add = bg__vk_op_add,
    .copy = bg__vk_op_copy,
    .embed = bg__vk_op_embed,
    .logsoftmax_gather = bg__vk_op_logsoftmax_gather,
    .fill = bg__vk_op_fill,
    .axpy = bg__vk_op_axpy,
    .embed_backward = bg__vk_op_embed_backward,
    .rmsnorm_backward = bg__vk_op_rmsnorm_backward,
    .matmul_backward_x = bg__vk_op_matmul_backward_x,
    .matmul_backward_w = bg__vk_op_matmul_backward_w,
    .rope_backward = bg__vk_op_rope_backward,
    .attention_train = bg__vk_op_attention_train,
    .attention_backward = bg__vk_op_attention_backward,
    .swiglu_backward = bg__vk_op_swiglu_backward,
    .xent = bg__vk_op_xent,
    .sumsq = bg__vk_op_sumsq,
    .adamw = bg__vk_op_adamw,
};

/* A tile TXxTYxBK[xRMxRN] from the environment variable var into m, when
 * set and within the device's workgroup and shared-memory limits (1);
 * otherwise 0, with a warning when it was set. */
static int parse_tile(const bg_vk_caps *c, const char *var, uint32_t m[5])
{
    const char *t = getenv(var);
    if (!t || !*t)
        return 0;
    unsigned v[5] = {0, 0, 0, 4, 4};
    int n = sscanf(t, "%ux%ux%ux%ux%u", &v[0], &v[1], &v[2], &v[3], &v[4]);
    uint64_t shared = 4ull * v[2] * (v[3] * v[1] + 1 + v[4] * v[0] + 1); /* padded tiles */
    if ((n == 3 || n == 5) && v[0] && v[1] && v[2] && v[3] && v[4] && v[3] * v[4] <= 64 &&
        v[0] * v[1] <= c->max_wg_invocations && v[1] <= c->max_wg_size[1] &&
        shared <= c->shared_mem_bytes) {
        for (int i = 0; i < 5; i++)
            m[i] = v[i];
        return 1;
    }
    BG_WARN("vulkan",
            "%s=%s ignored: expected TXxTYxBK[xRMxRN] within the device's workgroup and "
            "shared-memory limits",
            var, t);
    return 0;
}

/* Kernel variants from the capabilities (and the tuning variables): the
 * workgroup size of reductions, the matvec split, the matmul tiles. */
static void choose_variants(bg_vk_compute *vc)
{
    const bg_vk_caps *c = &vc->dev.caps;
    int cpu = c->type == VK_PHYSICAL_DEVICE_TYPE_CPU;
    vc->wg = 128;
    while (vc->wg > c->max_wg_invocations || vc->wg > c->max_wg_size[0])
        vc->wg /= 2;
    /* attention (forward, training, backward): a workgroup per row and
     * head whose reductions each take log2(WG) + 2 barriers. lavapipe runs
     * a workgroup as WG / subgroup batches of SIMD lanes and switches
     * between them at every barrier: with heads of a few dims (stories260K:
     * 8) a workgroup of 128 spends its time switching, one subgroup wide
     * (8 lanes on AVX2) runs straight through (docs/TESTING.md,
     * 2026-12-07). GPUs keep the wide workgroup. BG_VK_ATTN_WG: a power of
     * 2 (tuning, A/B). */
    vc->attn_wg = vc->wg;
    if (cpu && c->subgroup_size >= 2 && c->subgroup_size < vc->wg &&
        (c->subgroup_size & (c->subgroup_size - 1)) == 0)
        vc->attn_wg = c->subgroup_size;
    const char *aw = getenv("BG_VK_ATTN_WG");
    unsigned av = aw ? (unsigned)atoi(aw) : 0;
    if (av >= 2 && av <= c->max_wg_invocations && av <= c->max_wg_size[0] && (av & (av - 1)) == 0)
        vc->attn_wg = av;
    /* matvec: GPUs split a row over up to 128 lanes (coalesced reads);
     * lavapipe pays per workgroup and per barrier, so one row per lane */
    vc->mv_wg = cpu ? 64 : 128;
    vc->mv_lanes = cpu ? 1 : 128;
    /* tuning knobs for new devices (bench/vulkan): BG_VK_MV_WG and
     * BG_VK_MV_LANES (powers of 2), BG_VK_MM_TILE=TXxTYxBK[xRMxRN] (a tile
     * of RM*TY x RN*TX outputs, RM x RN per invocation, default 4x4) */
    const char *mv = getenv("BG_VK_MV_WG");
    unsigned v = mv ? (unsigned)atoi(mv) : 0;
    if (v >= 2 && v <= c->max_wg_invocations && (v & (v - 1)) == 0)
        vc->mv_wg = v;
    const char *ml = getenv("BG_VK_MV_LANES");
    v = ml ? (unsigned)atoi(ml) : 0;
    if (v >= 1 && (v & (v - 1)) == 0)
        vc->mv_lanes = v;
    if (vc->mv_lanes > vc->mv_wg)
        vc->mv_lanes = vc->mv_wg;
    /* GPUs with subgroup arithmetic: a subgroup per row, no shared memory */
    vc->mv_subgroup = c->subgroup_arith && !cpu;
    const char *sg = getenv("BG_VK_MV_SUBGROUP");
    if (sg && *sg)
        vc->mv_subgroup = c->subgroup_arith && strcmp(sg, "0") != 0;
    vc->mm_tx = vc->mm_ty = 16;
    vc->mm_bk = 16;
    vc->mm_rm = vc->mm_rn = 4;
    uint32_t m[5];
    if (parse_tile(c, "BG_VK_MM_TILE", m)) {
        vc->mm_tx = m[0];
        vc->mm_ty = m[1];
        vc->mm_bk = m[2];
        vc->mm_rm = m[3];
        vc->mm_rn = m[4];
    }
    while (vc->mm_tx * vc->mm_ty > c->max_wg_invocations || vc->mm_ty > c->max_wg_size[1])
        vc->mm_ty /= 2;
    /* training GEMMs: 8x8 per invocation (128x128 tiles) wins from ~2048^2
     * outputs on the H200 (docs/PERFORMANCE.md); lavapipe keeps the matmul
     * tile. Split-K below 512 tiles on GPUs (dW = dy^T x of a batch has few
     * outputs and a long K). Tuning: BG_VK_GEMM_TILE, BG_VK_GEMM_BIG
     * (outputs), BG_VK_GEMM_GROUPS (0 = no split-K), BG_VK_GEMM_SPLIT_K (k
     * per slice at least, 256). */
    uint32_t big[5] = {16, 16, 16, 8, 8};
    uint64_t big_shared = 4ull * big[2] * (big[3] * big[1] + 1 + big[4] * big[0] + 1);
    int big_ok = !cpu && big[0] * big[1] <= c->max_wg_invocations && big[1] <= c->max_wg_size[1] &&
                 big_shared <= c->shared_mem_bytes;
    uint32_t mine[5] = {vc->mm_tx, vc->mm_ty, vc->mm_bk, vc->mm_rm, vc->mm_rn};
    memcpy(vc->gb_tile, big_ok ? big : mine, sizeof(vc->gb_tile));
    if (parse_tile(c, "BG_VK_GEMM_TILE", m))
        memcpy(vc->gb_tile, m, sizeof(vc->gb_tile));
    vc->gemm_big = (size_t)1 << 21;
    vc->gemm_groups = cpu ? 0 : 512;
    const char *gb = getenv("BG_VK_GEMM_BIG");
    if (gb && *gb)
        vc->gemm_big = (size_t)strtoull(gb, NULL, 10);
    const char *gg = getenv("BG_VK_GEMM_GROUPS");
    if (gg && *gg)
        vc->gemm_groups = (uint32_t)strtoul(gg, NULL, 10);
    vc->gemm_split_k = 256;
    const char *gk = getenv("BG_VK_GEMM_SPLIT_K");
    if (gk && atoi(gk) >= 1)
        vc->gemm_split_k = (uint32_t)atoi(gk);
}

static int setup(bg_vk_compute *vc, bg_err *err)
{
    bg_vk_dev *d = &vc->dev;
    bg_vk_fns *f = &d->fn;
    bg__vk_mem_init(&vc->mem, d);
    int rc = bg__vk_pipes_init(&vc->pipes, d, err);
    if (rc != BG_OK)
        return rc;
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                   .queueFamilyIndex = d->queue_family};
    VkResult r = f->vkCreateCommandPool(d->dev, &pci, NULL, &vc->cpool);
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = vc->cpool,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1};
    if (r == VK_SUCCESS)
        r = f->vkAllocateCommandBuffers(d->dev, &cai, &vc->cmd);
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (r == VK_SUCCESS)
        r = f->vkCreateFence(d->dev, &fci, NULL, &vc->fence);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: command pool / fence: %s",
                          bg__vk_result_str(r));
    const char *ts = getenv("BG_VK_TIMESTAMPS");
    if (ts && *ts && strcmp(ts, "0") != 0) {
        if (!d->caps.timestamps) {
            BG_WARN("vulkan", "BG_VK_TIMESTAMPS set but %s cannot time its compute queue",
                    d->caps.name);
        } else {
            VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                         .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                         .queryCount = 2 * BG_VK_TS_OPS};
            vc->qnames = calloc(BG_VK_TS_OPS, sizeof(*vc->qnames));
            if (vc->qnames && f->vkCreateQueryPool(d->dev, &qci, NULL, &vc->qpool) == VK_SUCCESS) {
                vc->ts_on = 1;
                vc->qcap = 2 * BG_VK_TS_OPS;
            }
        }
    }
    const char *zc = getenv("BG_VK_ZERO_AT_CREATE");
    vc->zero_at_create = zc && strcmp(zc, "1") == 0;
    vc->split_every = BG_VK_SPLIT_EVERY;
    const char *se = getenv("BG_VK_SUBMIT_EVERY");
    if (se && *se)
        vc->split_every = atoi(se) > 0 ? atoi(se) : 0;
    bg_cbuf *dummy = NULL;
    rc = buf_create(&vc->base, 16, &dummy, err);
    if (rc != BG_OK)
        return rc;
    vc->dummy = (bg_vk_buf *)dummy;
    choose_variants(vc);
    return BG_OK;
}

int bg__compute_vulkan_create(const bg_compute_opts *opts, bg_compute **out, bg_err *err)
{
    bg_vk_compute *vc = calloc(1, sizeof(*vc));
    if (!vc)
        return bg_err_set(err, BG_ENOMEM, "vulkan: out of host memory");
    vc->base.vt = &VK_VTBL;
    vc->base.kind = BG_BACKEND_VULKAN;
    int rc = bg__vk_dev_open(&vc->dev, opts, err);
    if (rc != BG_OK) {
        free(vc);
        return rc;
    }
    rc = setup(vc, err);
    if (rc != BG_OK) {
        destroy(&vc->base);
        return rc;
    }
    { /* bg__vk_bind's check: the offset's remainder below the alignment counts */
        uint64_t al = vc->dev.caps.storage_align < 16 ? 16 : vc->dev.caps.storage_align;
        uint64_t mr = vc->dev.caps.max_storage_range;
        vc->base.max_view = mr > al ? (size_t)(mr - al) : 4;
        /* bg__vk_mem_alloc rounds a request up to its alignment (al) and
         * refuses one over maxMemoryAllocationSize: the largest that passes */
        uint64_t ma = vc->dev.caps.max_alloc_bytes / al * al;
        vc->base.max_alloc = (size_t)ma;
    }
    snprintf(vc->base.desc, sizeof(vc->base.desc), "vulkan: %.200s (%s, device %d)",
             vc->dev.caps.name, bg__vk_type_name(vc->dev.caps.type), vc->dev.index);
    *out = &vc->base;
    return BG_OK;
}
