/*
 * vk_mem.h — device memory for the Vulkan backend: large blocks, each one
 * VkDeviceMemory bound to one VkBuffer, sub-allocated first-fit.
 *
 * Why blocks: drivers limit the number of allocations (often 4096) and each
 * one costs; tensors of a model are many and small. A sub-allocation is
 * (block, offset, size) and is bound to descriptors as a range of the block's
 * VkBuffer. Offsets are multiples of minStorageBufferOffsetAlignment.
 *
 * Memory type: DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT when the device has it
 * (integrated GPUs, ReBAR, lavapipe): uploads and readbacks are a memcpy into
 * the persistent mapping. Otherwise, or when that heap is full, or with env
 * BG_VK_FORCE_STAGING=1 (tests the path on any device), DEVICE_LOCAL memory
 * reached through a host-visible staging buffer and vkCmdCopyBuffer.
 * Mapped memory that is not HOST_CACHED (a discrete GPU's BAR) is written
 * with a memcpy but read back through the staging buffer (host-cached when
 * the device offers it) beyond 1 KiB: CPU loads from it cross the bus one by
 * one (128 KiB of logits took ~4 ms on an H200). BG_VK_FORCE_STAGING=read
 * treats every mapping as uncached (tests that path on any device).
 *
 * Zeroed: an allocation made with zeroed = 1 reads as zeros (a memset of
 * the mapping, or a fenced vkCmdFillBuffer when the block is not mapped):
 * its range may have held a freed allocation's data, and vkAllocateMemory
 * promises nothing. With zeroed = 0 it holds that stale data until the
 * caller writes all of it or zeroes it (bg__vk_mem_zero) — the backend's
 * buffers do so on request (compute_vulkan.c: a buffer uploaded whole
 * before any use skips the fill).
 *
 * Invariants: free ranges of a block are sorted, disjoint, non-adjacent;
 * a block with no live allocation is released at once. Thread: the owner of
 * the backend; reads and writes only outside a recording, except the
 * training ops' id checks (compute_vulkan_train.c), which read host-written
 * ids while recording (a staged read uses its own command buffer and fence,
 * submitted before the recording is).
 */
#ifndef BG_VK_MEM_H
#define BG_VK_MEM_H

#include <stddef.h>

#include "compute/vk_device.h"

typedef struct bg_vk_range {
    VkDeviceSize off, size;
} bg_vk_range;

typedef struct bg_vk_block {
    VkDeviceMemory mem;
    VkBuffer buf; /* covers the whole block */
    VkDeviceSize size;
    unsigned char *map; /* persistent mapping, NULL when not host-visible */
    int cached;         /* the mapping is HOST_CACHED: reads are a memcpy */
    bg_vk_range *free;
    size_t nfree, capfree;
    size_t live;
    struct bg_vk_block *next;
} bg_vk_block;

typedef struct bg_vk_alloc {
    bg_vk_block *block;
    VkDeviceSize off;  /* in block->buf */
    VkDeviceSize size; /* bytes reserved (rounded up) */
} bg_vk_alloc;

typedef struct bg_vk_mem {
    bg_vk_dev *d; /* borrowed, outlives the allocator */
    VkDeviceSize block_size;
    VkDeviceSize align;
    int force_staging; /* BG_VK_FORCE_STAGING=1: nothing mapped */
    int read_staging;  /* BG_VK_FORCE_STAGING=read: reads staged */
    bg_vk_block *blocks;
    /* staging (lazily created) */
    VkBuffer st_buf;
    VkDeviceMemory st_mem;
    unsigned char *st_map;
    VkDeviceSize st_size;
    VkCommandPool st_pool;
    VkCommandBuffer st_cmd;
    VkFence st_fence;
} bg_vk_mem;

void bg__vk_mem_init(bg_vk_mem *m, bg_vk_dev *d);
void bg__vk_mem_close(bg_vk_mem *m);
int bg__vk_mem_alloc(bg_vk_mem *m, VkDeviceSize bytes, int zeroed, bg_vk_alloc *out, bg_err *err);
/* Zero all of a, or bytes [off, off + n) of it (multiples of 4); fenced
 * when staged: done when this returns. */
int bg__vk_mem_zero(bg_vk_mem *m, const bg_vk_alloc *a, bg_err *err);
int bg__vk_mem_zero_range(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, VkDeviceSize n,
                          bg_err *err);
void bg__vk_mem_free(bg_vk_mem *m, bg_vk_alloc *a);
/* Host <-> allocation copies at byte offset off (bounds checked by the caller). */
int bg__vk_mem_write(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, const void *src,
                     size_t n, bg_err *err);
int bg__vk_mem_read(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, void *dst, size_t n,
                    bg_err *err);

#endif
