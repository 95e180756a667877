/*
 * vk_device.h — Vulkan instance, physical-device choice, capability probe and
 * the logical device with one compute queue.
 *
 * Choice: env BG_VK_DEVICE=<index> (or opts->device_index >= 0) names a
 * device outright; otherwise the best-ranked usable device wins: discrete >
 * integrated > virtual > CPU-type. A CPU-type device (Mesa lavapipe) is only
 * eligible when opts->allow_cpu_device or env BG_VK_ALLOW_CPU=1: it is a
 * correctness oracle, far slower than the CPU backend. Usable means Vulkan
 * >= 1.1 and a queue family with compute.
 *
 * Lifetime: bg__vk_dev_open fills caller storage; bg__vk_dev_close destroys
 * the device, the instance and drops the loader, in that order. One thread.
 */
#ifndef BG_VK_DEVICE_H
#define BG_VK_DEVICE_H

#include <stdint.h>

#include "compute/compute.h"
#include "compute/vk_loader.h"

/* What the kernels and the allocator adapt to; logged at create. */
typedef struct bg_vk_caps {
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    VkPhysicalDeviceType type;
    uint32_t api_version;
    uint32_t vendor_id;
    uint32_t subgroup_size;
    int subgroup_arith;          /* subgroupAdd & co. in compute shaders */
    uint32_t shared_mem_bytes;   /* maxComputeSharedMemorySize */
    uint32_t max_wg_invocations; /* maxComputeWorkGroupInvocations */
    uint32_t max_wg_size[3];     /* maxComputeWorkGroupSize */
    uint32_t max_wg_count[3];    /* maxComputeWorkGroupCount */
    uint64_t max_storage_range;  /* maxStorageBufferRange, bytes */
    uint64_t storage_align;      /* minStorageBufferOffsetAlignment, bytes */
    uint32_t max_push_bytes;     /* maxPushConstantsSize */
    uint32_t max_stage_buffers;  /* maxPerStageDescriptorStorageBuffers */
    uint64_t max_alloc_bytes;    /* maxMemoryAllocationSize (1.1), 0 = unknown */
    int fp16;                    /* shaderFloat16 (Vulkan 1.2 devices) */
    int timestamps;              /* the compute queue can write timestamps */
    float timestamp_period_ns;   /* ns per timestamp tick */
} bg_vk_caps;

typedef struct bg_vk_dev {
    bg_vk_fns fn;
    VkInstance instance;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    int index; /* physical-device index (BG_VK_DEVICE numbering) */
    bg_vk_caps caps;
    VkPhysicalDeviceMemoryProperties mem_props;
} bg_vk_dev;

/* BG_EUNAVAIL with what to install or set when there is no loader, no
 * driver or no eligible device. On failure d is left closed. */
int bg__vk_dev_open(bg_vk_dev *d, const bg_compute_opts *opts, bg_err *err);
void bg__vk_dev_close(bg_vk_dev *d);

/* "discrete GPU", "integrated GPU", "virtual GPU", "CPU", "other". */
const char *bg__vk_type_name(VkPhysicalDeviceType t);

#endif
