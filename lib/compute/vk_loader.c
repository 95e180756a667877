/*
 * vk_loader.c — dlopen libvulkan.so.1 and resolve entry points (vk_loader.h).
 *
 * Invariant: after bg__vk_loader_device succeeds every field of bg_vk_fns is
 * non-NULL except vkEnumerateInstanceVersion (absent on 1.0 loaders). A
 * missing function is reported by name; nothing is called through a NULL
 * pointer. Thread: whoever owns the bg_vk_fns.
 */
#include "compute/vk_loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bg__vk_loader_open(bg_vk_fns *f, bg_err *err)
{
    memset(f, 0, sizeof(*f));
    const char *name = getenv("BG_VK_LOADER");
    if (!name || !*name)
        name = "libvulkan.so.1";
    f->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!f->lib)
        return bg_err_set(err, BG_EUNAVAIL,
                          "vulkan: cannot load the Vulkan loader %s (%s); install it "
                          "(Debian: apt-get install libvulkan1) plus a driver (ICD): "
                          "mesa-vulkan-drivers, or the GPU vendor's; in containers on NVIDIA, "
                          "enable the driver's graphics capability "
                          "(NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics)",
                          name, dlerror());
    /* POSIX lets dlsym's void * convert to a function pointer; C11 needs the detour. */
    void *sym = dlsym(f->lib, "vkGetInstanceProcAddr");
    if (!sym) {
        bg__vk_loader_close(f);
        return bg_err_set(err, BG_EUNAVAIL,
                          "vulkan: %s has no vkGetInstanceProcAddr; expected a Vulkan loader",
                          name);
    }
    memcpy(&f->vkGetInstanceProcAddr, &sym, sizeof(sym));
    f->vkCreateInstance =
        (PFN_vkCreateInstance)f->vkGetInstanceProcAddr(VK_NULL_HANDLE, "vkCreateInstance");
    f->vkEnumerateInstanceVersion = (PFN_vkEnumerateInstanceVersion)f->vkGetInstanceProcAddr(
        VK_NULL_HANDLE, "vkEnumerateInstanceVersion");
    if (!f->vkCreateInstance) {
        bg__vk_loader_close(f);
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: %s: vkCreateInstance not resolvable", name);
    }
    return BG_OK;
}

/* f->fn = get(handle, "fn"), or a BG_EUNAVAIL naming the missing function. */
#define BG_VK_RESOLVE(get, handle, level, fn)                                                      \
    f->fn = (PFN_##fn)f->get(handle, #fn);                                                         \
    if (!f->fn)                                                                                    \
        return bg_err_set(err, BG_EUNAVAIL,                                                        \
                          "vulkan: %s function %s missing; expected Vulkan >= 1.1", level, #fn);

int bg__vk_loader_instance(bg_vk_fns *f, VkInstance inst, bg_err *err)
{
#define BG_VK_RESOLVE_I(fn) BG_VK_RESOLVE(vkGetInstanceProcAddr, inst, "instance", fn)
    BG_VK_INSTANCE_FNS(BG_VK_RESOLVE_I)
#undef BG_VK_RESOLVE_I
    return BG_OK;
}

int bg__vk_loader_device(bg_vk_fns *f, VkDevice dev, bg_err *err)
{
#define BG_VK_RESOLVE_D(fn) BG_VK_RESOLVE(vkGetDeviceProcAddr, dev, "device", fn)
    BG_VK_DEVICE_FNS(BG_VK_RESOLVE_D)
#undef BG_VK_RESOLVE_D
    return BG_OK;
}

void bg__vk_loader_close(bg_vk_fns *f)
{
    if (f->lib)
        dlclose(f->lib);
    memset(f, 0, sizeof(*f));
}

const char *bg__vk_result_str(VkResult r)
{
    switch (r) {
#define BG_VK_RES(name)                                                                            \
    case name:                                                                                     \
        return #name;
        BG_VK_RES(VK_SUCCESS)
        BG_VK_RES(VK_NOT_READY)
        BG_VK_RES(VK_TIMEOUT)
        BG_VK_RES(VK_INCOMPLETE)
        BG_VK_RES(VK_ERROR_OUT_OF_HOST_MEMORY)
        BG_VK_RES(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        BG_VK_RES(VK_ERROR_INITIALIZATION_FAILED)
        BG_VK_RES(VK_ERROR_DEVICE_LOST)
        BG_VK_RES(VK_ERROR_MEMORY_MAP_FAILED)
        BG_VK_RES(VK_ERROR_LAYER_NOT_PRESENT)
        BG_VK_RES(VK_ERROR_EXTENSION_NOT_PRESENT)
        BG_VK_RES(VK_ERROR_FEATURE_NOT_PRESENT)
        BG_VK_RES(VK_ERROR_INCOMPATIBLE_DRIVER)
        BG_VK_RES(VK_ERROR_TOO_MANY_OBJECTS)
        BG_VK_RES(VK_ERROR_FORMAT_NOT_SUPPORTED)
        BG_VK_RES(VK_ERROR_FRAGMENTED_POOL)
        BG_VK_RES(VK_ERROR_OUT_OF_POOL_MEMORY)
        BG_VK_RES(VK_ERROR_INVALID_SHADER_NV)
#undef BG_VK_RES
    default:
        break;
    }
    static _Thread_local char buf[32];
    snprintf(buf, sizeof(buf), "VkResult %d", (int)r);
    return buf;
}
