/*
 * vk_mem.c — block sub-allocator and host transfers (vk_mem.h).
 *
 * Allocation: round the request up to the alignment, take the first free
 * range that fits in any block, else create a block of max(block_size,
 * request) bytes (bounded by maxMemoryAllocationSize). Staging transfers go
 * through one 8 MiB host-visible buffer in chunks, each chunk a one-off
 * command buffer waited on with a fence; barriers make the copy visible to
 * later compute work (and compute writes visible to the copy).
 */
#include "compute/vk_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"

#define BG_VK_BLOCK_SIZE ((VkDeviceSize)64 << 20)
#define BG_VK_STAGING_SIZE ((VkDeviceSize)8 << 20)
#define BG_VK_FENCE_TIMEOUT_NS (60ull * 1000 * 1000 * 1000)
/* Reads of uncached mapped memory up to this size stay a memcpy: a staged
 * read costs a submit and a fence wait (tens of microseconds on a GPU) */
#define BG_VK_DIRECT_READ_MAX 1024

static const VkMemoryPropertyFlags FAST = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                          VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                          VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
static const VkMemoryPropertyFlags HOSTC =
    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;

void bg__vk_mem_init(bg_vk_mem *m, bg_vk_dev *d)
{
    memset(m, 0, sizeof(*m));
    m->d = d;
    m->block_size = BG_VK_BLOCK_SIZE;
    if (d->caps.max_alloc_bytes && m->block_size > d->caps.max_alloc_bytes)
        m->block_size = d->caps.max_alloc_bytes;
    m->align = d->caps.storage_align < 16 ? 16 : d->caps.storage_align;
    const char *fs = getenv("BG_VK_FORCE_STAGING");
    m->read_staging = fs && strcmp(fs, "read") == 0;
    m->force_staging = fs && *fs && strcmp(fs, "0") != 0 && !m->read_staging;
}

static uint32_t find_type(const bg_vk_dev *d, uint32_t bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < d->mem_props.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (d->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return i;
    return UINT32_MAX;
}

/* A buffer of size bytes with its own memory of the first type in prefs[]
 * that allocates. *map is set when the type is host-visible and want_map. */
static int make_buffer(bg_vk_dev *d, VkDeviceSize size, const VkMemoryPropertyFlags *prefs,
                       int nprefs, int want_map, VkBuffer *buf, VkDeviceMemory *mem,
                       unsigned char **map, int *cached, bg_err *err)
{
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = d->fn.vkCreateBuffer(d->dev, &bci, NULL, buf);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_ENOMEM, "vulkan: vkCreateBuffer(%llu bytes) failed (%s)",
                          (unsigned long long)size, bg__vk_result_str(r));
    VkMemoryRequirements req;
    d->fn.vkGetBufferMemoryRequirements(d->dev, *buf, &req);
    r = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    VkMemoryPropertyFlags got = 0;
    for (int i = 0; i < nprefs && r != VK_SUCCESS; i++) {
        uint32_t type = find_type(d, req.memoryTypeBits, prefs[i]);
        if (type == UINT32_MAX)
            continue;
        VkMemoryAllocateInfo mai = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            .allocationSize = req.size,
            .memoryTypeIndex = type,
        };
        r = d->fn.vkAllocateMemory(d->dev, &mai, NULL, mem);
        got = d->mem_props.memoryTypes[type].propertyFlags;
    }
    if (r != VK_SUCCESS) {
        d->fn.vkDestroyBuffer(d->dev, *buf, NULL);
        return bg_err_set(err, BG_ENOMEM, "vulkan: cannot allocate %llu bytes of memory (%s)",
                          (unsigned long long)req.size, bg__vk_result_str(r));
    }
    *map = NULL;
    if (cached)
        *cached = (got & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) != 0;
    r = d->fn.vkBindBufferMemory(d->dev, *buf, *mem, 0);
    if (r == VK_SUCCESS && want_map && (got & HOSTC) == HOSTC)
        r = d->fn.vkMapMemory(d->dev, *mem, 0, VK_WHOLE_SIZE, 0, (void **)map);
    if (r != VK_SUCCESS) {
        d->fn.vkDestroyBuffer(d->dev, *buf, NULL);
        d->fn.vkFreeMemory(d->dev, *mem, NULL);
        return bg_err_set(err, BG_ENOMEM, "vulkan: bind/map of %llu bytes failed (%s)",
                          (unsigned long long)req.size, bg__vk_result_str(r));
    }
    return BG_OK;
}

static void block_destroy(bg_vk_mem *m, bg_vk_block *b)
{
    bg_vk_dev *d = m->d;
    d->fn.vkDestroyBuffer(d->dev, b->buf, NULL);
    d->fn.vkFreeMemory(d->dev, b->mem, NULL);
    free(b->free);
    free(b);
}

static int block_create(bg_vk_mem *m, VkDeviceSize size, bg_vk_block **out, bg_err *err)
{
    bg_vk_block *b = calloc(1, sizeof(*b));
    if (!b || !(b->free = malloc(4 * sizeof(*b->free)))) {
        free(b);
        return bg_err_set(err, BG_ENOMEM, "vulkan: out of host memory for a block");
    }
    b->capfree = 4;
    VkMemoryPropertyFlags prefs[2] = {FAST, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT};
    int rc = BG_ENOMEM;
    if (m->force_staging) /* device-local, never mapped: every transfer stages */
        rc = make_buffer(m->d, size, prefs + 1, 1, 0, &b->buf, &b->mem, &b->map, NULL, err);
    else
        rc = make_buffer(m->d, size, prefs, 2, 1, &b->buf, &b->mem, &b->map, &b->cached, err);
    if (rc != BG_OK && !m->force_staging) /* no device-local memory at all */
        rc = make_buffer(m->d, size, &HOSTC, 1, 1, &b->buf, &b->mem, &b->map, &b->cached, err);
    if (m->read_staging)
        b->cached = 0;
    if (rc != BG_OK) {
        free(b->free);
        free(b);
        return rc;
    }
    b->size = size;
    b->free[0] = (bg_vk_range){0, size};
    b->nfree = 1;
    b->next = m->blocks;
    m->blocks = b;
    BG_DEBUG("vulkan", "new memory block %llu bytes, %s", (unsigned long long)size,
             !b->map     ? "device-local via staging"
             : b->cached ? "host-visible, cached"
                         : "host-visible, uncached (reads staged)");
    *out = b;
    return BG_OK;
}

static int take(bg_vk_block *b, VkDeviceSize size, VkDeviceSize *off)
{
    for (size_t i = 0; i < b->nfree; i++) {
        if (b->free[i].size < size)
            continue;
        *off = b->free[i].off;
        b->free[i].off += size;
        b->free[i].size -= size;
        if (b->free[i].size == 0) {
            memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof(*b->free));
            b->nfree--;
        }
        return 1;
    }
    return 0;
}

int bg__vk_mem_alloc(bg_vk_mem *m, VkDeviceSize bytes, int zeroed, bg_vk_alloc *out, bg_err *err)
{
    VkDeviceSize size = (bytes + m->align - 1) / m->align * m->align;
    if (size == 0)
        size = m->align;
    const bg_vk_caps *c = &m->d->caps;
    if (c->max_alloc_bytes && size > c->max_alloc_bytes)
        return bg_err_set(err, BG_ELIMIT,
                          "vulkan: buffer of %llu bytes exceeds the device's "
                          "maxMemoryAllocationSize %llu; split the tensor",
                          (unsigned long long)bytes, (unsigned long long)c->max_alloc_bytes);
    VkDeviceSize off = 0;
    bg_vk_block *b;
    for (b = m->blocks; b; b = b->next)
        if (take(b, size, &off))
            break;
    if (!b) {
        int rc = block_create(m, size > m->block_size ? size : m->block_size, &b, err);
        if (rc != BG_OK)
            return rc;
        take(b, size, &off);
    }
    b->live++;
    *out = (bg_vk_alloc){b, off, size};
    /* a range handed out before, or fresh from vkAllocateMemory, holds
     * whatever was there: zero it, as the CPU backend's buffers are,
     * unless the caller zeroes it on request (bg__vk_mem_zero) */
    int rc = zeroed ? bg__vk_mem_zero(m, out, err) : BG_OK;
    if (rc != BG_OK)
        bg__vk_mem_free(m, out);
    return rc;
}

static int give_back(bg_vk_block *b, VkDeviceSize off, VkDeviceSize size)
{
    size_t i = 0;
    while (i < b->nfree && b->free[i].off < off)
        i++;
    int joins_prev = i > 0 && b->free[i - 1].off + b->free[i - 1].size == off;
    int joins_next = i < b->nfree && off + size == b->free[i].off;
    if (joins_prev && joins_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof(*b->free));
        b->nfree--;
    } else if (joins_prev) {
        b->free[i - 1].size += size;
    } else if (joins_next) {
        b->free[i].off = off;
        b->free[i].size += size;
    } else {
        if (b->nfree == b->capfree) {
            bg_vk_range *nf = realloc(b->free, 2 * b->capfree * sizeof(*nf));
            if (!nf)
                return 0; /* the range leaks until the block dies: never corrupts */
            b->free = nf;
            b->capfree *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], (b->nfree - i) * sizeof(*b->free));
        b->free[i] = (bg_vk_range){off, size};
        b->nfree++;
    }
    return 1;
}

void bg__vk_mem_free(bg_vk_mem *m, bg_vk_alloc *a)
{
    bg_vk_block *b = a->block;
    if (!b)
        return;
    give_back(b, a->off, a->size);
    a->block = NULL;
    if (--b->live > 0)
        return;
    for (bg_vk_block **pp = &m->blocks; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    block_destroy(m, b);
}

static void staging_destroy(bg_vk_mem *m)
{
    bg_vk_dev *d = m->d;
    if (m->st_fence)
        d->fn.vkDestroyFence(d->dev, m->st_fence, NULL);
    if (m->st_pool)
        d->fn.vkDestroyCommandPool(d->dev, m->st_pool, NULL);
    if (m->st_buf) {
        d->fn.vkDestroyBuffer(d->dev, m->st_buf, NULL);
        d->fn.vkFreeMemory(d->dev, m->st_mem, NULL);
    }
    m->st_fence = VK_NULL_HANDLE;
    m->st_pool = VK_NULL_HANDLE;
    m->st_buf = VK_NULL_HANDLE;
}

void bg__vk_mem_close(bg_vk_mem *m)
{
    if (!m->d)
        return;
    while (m->blocks) {
        bg_vk_block *b = m->blocks;
        m->blocks = b->next;
        block_destroy(m, b);
    }
    staging_destroy(m);
    m->d = NULL;
}

static int staging_ready(bg_vk_mem *m, bg_err *err)
{
    if (m->st_buf)
        return BG_OK;
    bg_vk_dev *d = m->d;
    /* host-cached when the device has it: the CPU reads readbacks from here */
    const VkMemoryPropertyFlags prefs[2] = {HOSTC | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, HOSTC};
    int rc = make_buffer(d, BG_VK_STAGING_SIZE, prefs, 2, 1, &m->st_buf, &m->st_mem, &m->st_map,
                         NULL, err);
    if (rc != BG_OK)
        return bg_err_prefix(err, "staging buffer: ");
    m->st_size = BG_VK_STAGING_SIZE;
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                   .queueFamilyIndex = d->queue_family};
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1};
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkResult r = d->fn.vkCreateCommandPool(d->dev, &pci, NULL, &m->st_pool);
    if (r == VK_SUCCESS) {
        cai.commandPool = m->st_pool;
        r = d->fn.vkAllocateCommandBuffers(d->dev, &cai, &m->st_cmd);
    }
    if (r == VK_SUCCESS)
        r = d->fn.vkCreateFence(d->dev, &fci, NULL, &m->st_fence);
    if (r != VK_SUCCESS) {
        staging_destroy(m);
        return bg_err_set(err, BG_ENOMEM, "vulkan: staging command objects: %s",
                          bg__vk_result_str(r));
    }
    return BG_OK;
}

static void mem_barrier(bg_vk_dev *d, VkCommandBuffer cb, VkPipelineStageFlags src,
                        VkAccessFlags sa, VkPipelineStageFlags dst, VkAccessFlags da)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = sa, .dstAccessMask = da};
    d->fn.vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Start the staging command buffer (its pool reset). */
static VkResult st_begin(bg_vk_mem *m)
{
    bg_vk_dev *d = m->d;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    d->fn.vkResetCommandPool(d->dev, m->st_pool, 0);
    return d->fn.vkBeginCommandBuffer(m->st_cmd, &bi);
}

/* End the staging command buffer (r: how recording went), submit it with
 * the staging fence and wait; what and n name the work in the error. */
static int st_run(bg_vk_mem *m, VkResult r, const char *what, VkDeviceSize n, bg_err *err)
{
    bg_vk_dev *d = m->d;
    if (r == VK_SUCCESS)
        r = d->fn.vkEndCommandBuffer(m->st_cmd);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &m->st_cmd};
    if (r == VK_SUCCESS)
        r = d->fn.vkResetFences(d->dev, 1, &m->st_fence);
    if (r == VK_SUCCESS)
        r = d->fn.vkQueueSubmit(d->queue, 1, &si, m->st_fence);
    if (r == VK_SUCCESS)
        r = d->fn.vkWaitForFences(d->dev, 1, &m->st_fence, VK_TRUE, BG_VK_FENCE_TIMEOUT_NS);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: %s of %llu bytes failed (%s)", what,
                          (unsigned long long)n, bg__vk_result_str(r));
    return BG_OK;
}

static const VkAccessFlags SHADER_RW = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;

/* One chunk: to_device copies staging -> block, else block -> staging. */
static int staging_copy(bg_vk_mem *m, VkBuffer dev_buf, VkDeviceSize dev_off, VkDeviceSize n,
                        int to_device, bg_err *err)
{
    bg_vk_dev *d = m->d;
    VkCommandBuffer cb = m->st_cmd;
    VkResult r = st_begin(m);
    if (r != VK_SUCCESS)
        return bg_err_set(err, BG_EIO, "vulkan: staging begin: %s", bg__vk_result_str(r));
    VkBufferCopy region = {
        .srcOffset = to_device ? 0 : dev_off, .dstOffset = to_device ? dev_off : 0, .size = n};
    if (to_device) {
        mem_barrier(d, cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW,
                    VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        d->fn.vkCmdCopyBuffer(cb, m->st_buf, dev_buf, 1, &region);
        mem_barrier(d, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW);
    } else {
        mem_barrier(d, cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                    VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
        d->fn.vkCmdCopyBuffer(cb, dev_buf, m->st_buf, 1, &region);
        mem_barrier(d, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    }
    return st_run(m, VK_SUCCESS, "staging copy", n, err);
}

/* Zero bytes [off, off + n) of the allocation a: a memset of the mapping,
 * or (a block not mapped) a vkCmdFillBuffer on the staging command buffer,
 * fenced, ordered after earlier compute work on the range and before
 * later. */
int bg__vk_mem_zero_range(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, VkDeviceSize n,
                          bg_err *err)
{
    bg_vk_block *b = a->block;
    if (n == 0)
        return BG_OK;
    if (b->map) {
        memset(b->map + a->off + off, 0, (size_t)n);
        return BG_OK;
    }
    int rc = staging_ready(m, err);
    if (rc != BG_OK)
        return rc;
    bg_vk_dev *d = m->d;
    VkCommandBuffer cb = m->st_cmd;
    VkResult r = st_begin(m);
    if (r == VK_SUCCESS) {
        mem_barrier(d, cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW,
                    VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
        d->fn.vkCmdFillBuffer(cb, b->buf, a->off + off, n, 0); /* off, n: multiples of 4 */
        mem_barrier(d, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_RW);
    }
    return st_run(m, r, "zeroing a buffer", n, err);
}

int bg__vk_mem_zero(bg_vk_mem *m, const bg_vk_alloc *a, bg_err *err)
{
    return bg__vk_mem_zero_range(m, a, 0, a->size, err);
}

static int transfer(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, unsigned char *host,
                    size_t n, int to_device, bg_err *err)
{
    bg_vk_block *b = a->block;
    /* uncached mapped memory (a discrete GPU's BAR) is fast to write through
     * write-combining but slow to read with the CPU (each load crosses the
     * bus): larger reads go through the host-cached staging buffer */
    if (b->map && (to_device || b->cached || n <= BG_VK_DIRECT_READ_MAX)) {
        if (to_device)
            memcpy(b->map + a->off + off, host, n);
        else
            memcpy(host, b->map + a->off + off, n);
        return BG_OK;
    }
    if (!to_device && b->map)
        BG_DEBUG("vulkan", "read of %zu bytes staged (uncached mapping)", n);
    int rc = staging_ready(m, err);
    for (size_t done = 0; rc == BG_OK && done < n;) {
        size_t chunk = n - done < m->st_size ? n - done : (size_t)m->st_size;
        if (to_device)
            memcpy(m->st_map, host + done, chunk);
        rc = staging_copy(m, b->buf, a->off + off + done, chunk, to_device, err);
        if (rc == BG_OK && !to_device)
            memcpy(host + done, m->st_map, chunk);
        done += chunk;
    }
    return rc;
}

int bg__vk_mem_write(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, const void *src,
                     size_t n, bg_err *err)
{
    return transfer(m, a, off, (unsigned char *)(uintptr_t)src, n, 1, err);
}

int bg__vk_mem_read(bg_vk_mem *m, const bg_vk_alloc *a, VkDeviceSize off, void *dst, size_t n,
                    bg_err *err)
{
    return transfer(m, a, off, dst, n, 0, err);
}
