/*
 * vk_loader.h — the Vulkan entry points this runtime uses, resolved at run
 * time from libvulkan.so.1 (dlopen) instead of linking -lvulkan.
 *
 * Why: the daemon must start, and the CPU backend must work, on a host with
 * no Vulkan loader at all. VK_NO_PROTOTYPES keeps the headers from declaring
 * the global functions; every call goes through a bg_vk_fns table filled in
 * three steps (global, instance, device), each from the previous level's
 * vkGet*ProcAddr, so device-level calls skip the loader's trampolines.
 *
 * The function lists are X-macro tables: adding a call means adding one line.
 * Ownership: bg_vk_fns owns the dlopen handle; bg__vk_loader_close drops it
 * after the instance and device are destroyed. The loader is opened with
 * RTLD_NODELETE: it stays mapped for the process (a second backend reuses
 * it, and leak checkers still see memory its globals hold). One thread at a
 * time.
 */
#ifndef BG_VK_LOADER_H
#define BG_VK_LOADER_H

#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

#include "common/bg_err.h"

/* Resolved with vkGetInstanceProcAddr(inst, …). */
#define BG_VK_INSTANCE_FNS(X)                                                                      \
    X(vkDestroyInstance)                                                                           \
    X(vkEnumeratePhysicalDevices)                                                                  \
    X(vkGetPhysicalDeviceProperties)                                                               \
    X(vkGetPhysicalDeviceProperties2)                                                              \
    X(vkGetPhysicalDeviceFeatures2)                                                                \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                    \
    X(vkGetPhysicalDeviceMemoryProperties)                                                         \
    X(vkCreateDevice)                                                                              \
    X(vkGetDeviceProcAddr)

/* Resolved with vkGetDeviceProcAddr(dev, …). */
#define BG_VK_DEVICE_FNS(X)                                                                        \
    X(vkDestroyDevice)                                                                             \
    X(vkGetDeviceQueue)                                                                            \
    X(vkDeviceWaitIdle)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkUnmapMemory)                                                                               \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkResetDescriptorPool)                                                                       \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)                                                                      \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkResetCommandPool)                                                                          \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkCmdFillBuffer)                                                                             \
    X(vkCmdResetQueryPool)                                                                         \
    X(vkCmdWriteTimestamp)                                                                         \
    X(vkCreateQueryPool)                                                                           \
    X(vkDestroyQueryPool)                                                                          \
    X(vkGetQueryPoolResults)                                                                       \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkResetFences)                                                                               \
    X(vkWaitForFences)                                                                             \
    X(vkQueueSubmit)

typedef struct bg_vk_fns {
    void *lib; /* dlopen handle of libvulkan.so.1 */
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    PFN_vkCreateInstance vkCreateInstance;
    PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion; /* NULL on a 1.0 loader */
#define BG_VK_FN_FIELD(name) PFN_##name name;
    BG_VK_INSTANCE_FNS(BG_VK_FN_FIELD)
    BG_VK_DEVICE_FNS(BG_VK_FN_FIELD)
#undef BG_VK_FN_FIELD
} bg_vk_fns;

/* dlopen the loader (env BG_VK_LOADER overrides the library name) and resolve
 * the global functions. BG_EUNAVAIL, with what to install, when absent. */
int bg__vk_loader_open(bg_vk_fns *f, bg_err *err);
int bg__vk_loader_instance(bg_vk_fns *f, VkInstance inst, bg_err *err);
int bg__vk_loader_device(bg_vk_fns *f, VkDevice dev, bg_err *err);
void bg__vk_loader_close(bg_vk_fns *f);

/* "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc.; "VkResult -N" for others (thread-local buffer). */
const char *bg__vk_result_str(VkResult r);

#endif
