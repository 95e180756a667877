/*
 * vk_device.c — instance, device choice, capability probe (vk_device.h).
 *
 * Errors name the remedy: no loader -> install libvulkan1; no ICD manifest
 * -> install a driver or point VK_DRIVER_FILES at its JSON (NVIDIA in
 * containers: the graphics driver capability provides nvidia_icd.json); only
 * CPU devices -> set BG_VK_ALLOW_CPU=1 if lavapipe is really wanted.
 * Thread: the owner of the bg_vk_dev.
 */
#include "compute/vk_device.h"
#include "compute/vk_pipeline.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_log.h"

#define BG_VK_MAX_DEVICES 16

const char *bg__vk_type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return "CPU";
    default:
        return "other";
    }
}

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
        return 1;
    default:
        return 0;
    }
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* Is a file of the ':'-separated list readable? */
static int any_readable(const char *list)
{
    char path[4096];
    while (*list) {
        size_t n = strcspn(list, ":");
        if (n > 0 && n < sizeof(path)) {
            memcpy(path, list, n);
            path[n] = '\0';
            if (access(path, R_OK) == 0)
                return 1;
        }
        list += n + (list[n] == ':');
    }
    return 0;
}

/* Does any ICD manifest exist where the loader looks? Used to sharpen the
 * message when no device shows up. */
static int icd_manifest_present(void)
{
    const char *files = getenv("VK_DRIVER_FILES");
    if (!files || !*files)
        files = getenv("VK_ICD_FILENAMES");
    if (files && *files)
        return any_readable(files);
    static const char *const dirs[] = {"/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d",
                                       "/usr/local/share/vulkan/icd.d"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        struct dirent *e;
        int found = 0;
        while (!found && (e = readdir(d)) != NULL)
            found = strstr(e->d_name, ".json") != NULL;
        closedir(d);
        if (found)
            return 1;
    }
    return 0;
}

static const char *no_driver_hint(void)
{
    return icd_manifest_present()
               ? "a driver manifest exists but no device answered; check VK_DRIVER_FILES and "
                 "that the GPU is visible (/dev/dri, /dev/nvidia*)"
               : "no Vulkan driver (ICD manifest) found in VK_DRIVER_FILES, "
                 "/usr/share/vulkan/icd.d or /etc/vulkan/icd.d; install one (mesa-vulkan-drivers; "
                 "NVIDIA: the driver's "
                 "nvidia_icd.json, in containers NVIDIA_DRIVER_CAPABILITIES must include "
                 "graphics) or set VK_DRIVER_FILES=/path/to/icd.json";
}

static int create_instance(bg_vk_dev *d, bg_err *err)
{
    uint32_t ver = VK_API_VERSION_1_0;
    if (d->fn.vkEnumerateInstanceVersion)
        d->fn.vkEnumerateInstanceVersion(&ver);
    if (ver < VK_API_VERSION_1_1)
        return bg_err_set(err, BG_EUNAVAIL,
                          "vulkan: the loader supports Vulkan %u.%u; expected >= 1.1 "
                          "(update libvulkan1)",
                          VK_API_VERSION_MAJOR(ver), VK_API_VERSION_MINOR(ver));
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "bayesguard",
        .pEngineName = "bayesguard-compute",
        .apiVersion = VK_API_VERSION_1_1,
    };
    VkInstanceCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    VkResult r = d->fn.vkCreateInstance(&ici, NULL, &d->instance);
    if (r != VK_SUCCESS) {
        d->instance = VK_NULL_HANDLE;
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: vkCreateInstance failed (%s); %s",
                          bg__vk_result_str(r), no_driver_hint());
    }
    return bg__vk_loader_instance(&d->fn, d->instance, err);
}

/* The first queue family with compute; UINT32_MAX when none. */
static uint32_t compute_family(bg_vk_dev *d, VkPhysicalDevice pd, uint32_t *ts_bits)
{
    VkQueueFamilyProperties qf[16];
    uint32_t n = 16;
    d->fn.vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qf);
    for (uint32_t i = 0; i < n; i++) {
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            *ts_bits = qf[i].timestampValidBits;
            return i;
        }
    }
    return UINT32_MAX;
}

/* A device limit v, lowered to the bytes in environment variable var where
 * that is >= 4096 and below v (0, an unknown limit, counts as none): the
 * testing hooks BG_VK_MAX_RANGE and BG_VK_MAX_ALLOC, which only lower. */
static uint64_t env_lowered(const char *var, uint64_t v)
{
    const char *e = getenv(var);
    unsigned long long x = e ? strtoull(e, NULL, 10) : 0;
    return x >= 4096 && (v == 0 || x < v) ? (uint64_t)x : v;
}

static void probe_caps(bg_vk_dev *d, uint32_t ts_bits)
{
    bg_vk_caps *c = &d->caps;
    VkPhysicalDeviceSubgroupProperties sub = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &sub};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &m3};
    d->fn.vkGetPhysicalDeviceProperties2(d->phys, &p2);
    const VkPhysicalDeviceLimits *l = &p2.properties.limits;
    snprintf(c->name, sizeof(c->name), "%s", p2.properties.deviceName);
    c->type = p2.properties.deviceType;
    c->api_version = p2.properties.apiVersion;
    c->vendor_id = p2.properties.vendorID;
    c->subgroup_size = sub.subgroupSize;
    c->subgroup_arith = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                        (sub.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    c->shared_mem_bytes = l->maxComputeSharedMemorySize;
    c->max_wg_invocations = l->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        c->max_wg_size[i] = l->maxComputeWorkGroupSize[i];
        c->max_wg_count[i] = l->maxComputeWorkGroupCount[i];
    }
    /* testing hooks: smaller limits exercise the split paths on small data */
    c->max_storage_range = env_lowered("BG_VK_MAX_RANGE", l->maxStorageBufferRange);
    c->storage_align = l->minStorageBufferOffsetAlignment ? l->minStorageBufferOffsetAlignment : 4;
    c->max_push_bytes = l->maxPushConstantsSize;
    c->max_stage_buffers = l->maxPerStageDescriptorStorageBuffers;
    c->max_alloc_bytes = env_lowered("BG_VK_MAX_ALLOC", m3.maxMemoryAllocationSize);
    c->timestamps = ts_bits > 0 && l->timestampPeriod > 0.0f;
    c->timestamp_period_ns = l->timestampPeriod;
    c->fp16 = 0;
    if (c->api_version >= VK_API_VERSION_1_2) {
        VkPhysicalDeviceShaderFloat16Int8Features f16 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
        VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                        .pNext = &f16};
        d->fn.vkGetPhysicalDeviceFeatures2(d->phys, &f2);
        c->fp16 = f16.shaderFloat16 != 0;
    }
    d->fn.vkGetPhysicalDeviceMemoryProperties(d->phys, &d->mem_props);
}

/* Pick d->phys / d->index / d->queue_family. */
static int choose_device(bg_vk_dev *d, const bg_compute_opts *opts, bg_err *err)
{
    VkPhysicalDevice pds[BG_VK_MAX_DEVICES];
    uint32_t n = BG_VK_MAX_DEVICES;
    VkResult r = d->fn.vkEnumeratePhysicalDevices(d->instance, &n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: vkEnumeratePhysicalDevices failed (%s); %s",
                          bg__vk_result_str(r), no_driver_hint());
    if (n == 0)
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: no Vulkan device; %s", no_driver_hint());

    int want = opts ? opts->device_index : -1;
    const char *env = getenv("BG_VK_DEVICE");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (*end != '\0' || v < 0)
            return bg_err_set(err, BG_EINVAL,
                              "vulkan: BG_VK_DEVICE=%s; expected a device index 0..%u", env, n - 1);
        want = (int)v;
    }
    int allow_cpu = (opts && opts->allow_cpu_device) || env_flag("BG_VK_ALLOW_CPU");

    char seen[512] = "";
    size_t used = 0;
    int best = -1, best_rank = -1;
    uint32_t best_family = 0;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        d->fn.vkGetPhysicalDeviceProperties(pds[i], &p);
        uint32_t ts = 0;
        uint32_t fam = compute_family(d, pds[i], &ts);
        int usable = fam != UINT32_MAX && p.apiVersion >= VK_API_VERSION_1_1;
        if (used < sizeof(seen))
            used += (size_t)snprintf(seen + used, sizeof(seen) - used, "%s[%u] %s (%s%s)",
                                     i ? ", " : "", i, p.deviceName, bg__vk_type_name(p.deviceType),
                                     usable ? "" : ", unusable: needs Vulkan 1.1 + compute queue");
        if (want >= 0) {
            if ((uint32_t)want != i)
                continue;
            if (!usable)
                return bg_err_set(err, BG_EUNAVAIL,
                                  "vulkan: device %d (%s) lacks Vulkan 1.1 or a compute queue",
                                  want, p.deviceName);
            best = (int)i;
            best_family = fam;
            break;
        }
        int rank = type_rank(p.deviceType);
        if (!usable || (p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && !allow_cpu))
            continue;
        if (rank > best_rank) {
            best = (int)i;
            best_rank = rank;
            best_family = fam;
        }
    }
    if (want >= 0 && best < 0)
        return bg_err_set(err, BG_EINVAL, "vulkan: device index %d does not exist; devices: %s",
                          want, seen);
    if (best < 0)
        return bg_err_set(err, BG_EUNAVAIL,
                          "vulkan: no eligible GPU; devices: %s. CPU-type devices (lavapipe) are "
                          "used only when asked for: set BG_VK_ALLOW_CPU=1 (or "
                          "opts.allow_cpu_device), or pick one with BG_VK_DEVICE=<index>",
                          seen);
    d->phys = pds[best];
    d->index = best;
    d->queue_family = best_family;
    return BG_OK;
}

static int create_device(bg_vk_dev *d, bg_err *err)
{
    /* the one descriptor-set layout (vk_pipeline.h) binds BG_VK_BINDINGS
     * storage buffers and pushes sizeof(bg_vk_pc) bytes to every kernel */
    if (d->caps.max_stage_buffers < BG_VK_BINDINGS || d->caps.max_push_bytes < sizeof(bg_vk_pc))
        return bg_err_set(err, BG_EUNAVAIL,
                          "vulkan: %s offers %u storage buffers and %u push-constant bytes per "
                          "shader; the kernels need %d and %zu; use --backend cpu",
                          d->caps.name, d->caps.max_stage_buffers, d->caps.max_push_bytes,
                          BG_VK_BINDINGS, sizeof(bg_vk_pc));
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = d->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
    };
    VkResult r = d->fn.vkCreateDevice(d->phys, &dci, NULL, &d->dev);
    if (r != VK_SUCCESS) {
        d->dev = VK_NULL_HANDLE;
        return bg_err_set(err, BG_EUNAVAIL, "vulkan: vkCreateDevice on %s failed (%s)",
                          d->caps.name, bg__vk_result_str(r));
    }
    int rc = bg__vk_loader_device(&d->fn, d->dev, err);
    if (rc != BG_OK)
        return rc;
    d->fn.vkGetDeviceQueue(d->dev, d->queue_family, 0, &d->queue);
    return BG_OK;
}

static void log_caps(const bg_vk_dev *d)
{
    const bg_vk_caps *c = &d->caps;
    BG_INFO("vulkan",
            "device %d: %s (%s, Vulkan %u.%u.%u, vendor 0x%04x): subgroup %u%s, shared %u B, "
            "workgroup <= %u invocations (%u,%u,%u), maxStorageBufferRange %llu B, storage "
            "align %llu B, push %u B, max alloc %llu B, fp16 %s, timestamps %s (%.3f ns/tick)",
            d->index, c->name, bg__vk_type_name(c->type), VK_API_VERSION_MAJOR(c->api_version),
            VK_API_VERSION_MINOR(c->api_version), VK_API_VERSION_PATCH(c->api_version),
            c->vendor_id, c->subgroup_size, c->subgroup_arith ? " (arithmetic)" : "",
            c->shared_mem_bytes, c->max_wg_invocations, c->max_wg_size[0], c->max_wg_size[1],
            c->max_wg_size[2], (unsigned long long)c->max_storage_range,
            (unsigned long long)c->storage_align, c->max_push_bytes,
            (unsigned long long)c->max_alloc_bytes, c->fp16 ? "yes" : "no",
            c->timestamps ? "yes" : "no", (double)c->timestamp_period_ns);
}

/* Mesa's lavapipe keeps process-wide caches in its globals and frees them
 * only at exit. When the loader unloads the ICD at vkDestroyInstance those
 * pointers are lost (LeakSanitizer reports them as leaks of an "<unknown
 * module>"), and the next instance loads it afresh. Once the loader has
 * loaded it (instance creation, device enumeration), keep it resident:
 * RTLD_NOLOAD only marks an already loaded library RTLD_NODELETE, so a host
 * without lavapipe is unaffected. */
static void keep_software_icd_resident(void)
{
    void *icd = dlopen("libvulkan_lvp.so", RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE);
    if (icd)
        dlclose(icd);
}

int bg__vk_dev_open(bg_vk_dev *d, const bg_compute_opts *opts, bg_err *err)
{
    memset(d, 0, sizeof(*d));
    int rc = bg__vk_loader_open(&d->fn, err);
    if (rc != BG_OK)
        return rc;
    rc = create_instance(d, err);
    if (rc == BG_OK)
        rc = choose_device(d, opts, err);
    keep_software_icd_resident();
    if (rc == BG_OK) {
        uint32_t ts = 0;
        compute_family(d, d->phys, &ts);
        probe_caps(d, ts);
        rc = create_device(d, err);
    }
    if (rc != BG_OK) {
        bg__vk_dev_close(d);
        return rc;
    }
    log_caps(d);
    return BG_OK;
}

void bg__vk_dev_close(bg_vk_dev *d)
{
    if (d->dev && d->fn.vkDestroyDevice)
        d->fn.vkDestroyDevice(d->dev, NULL);
    if (d->instance && d->fn.vkDestroyInstance)
        d->fn.vkDestroyInstance(d->instance, NULL);
    bg__vk_loader_close(&d->fn);
    memset(d, 0, sizeof(*d));
}
