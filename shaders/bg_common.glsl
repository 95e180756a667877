/*
 * bg_common.glsl — declarations shared by every compute shader (included).
 *
 * The Vulkan runtime (lib/compute/vk_pipeline.c) uses ONE pipeline layout
 * for all kernels: a descriptor set of BG_VK_BINDINGS (8) storage buffers and
 * a 96-byte push-constant block. Its layout (struct bg_vk_pc in
 * lib/compute/vk_pipeline.h) is mirrored here and must stay identical:
 *   o0..o7  element offset of each binding's view inside the bound range
 *           (descriptor offsets are aligned down to
 *           minStorageBufferOffsetAlignment; the remainder travels here)
 *   i0..i7  op-specific integer arguments (documented per shader)
 *   f[0..7] op-specific float arguments
 * Workgroup size: specialization constant 0 (WG), a power of two chosen by
 * the runtime from the device's capabilities.
 */
layout(push_constant) uniform PC {
    uint o0, o1, o2, o3;
    uint o4, o5, o6, o7;
    int i0, i1, i2, i3, i4, i5, i6, i7;
    float f[8];
} pc;

#ifdef BG_REDUCE
/* Workgroup-wide reductions over WG lanes (WG a power of two). Call from
 * uniform control flow: every invocation of the workgroup must reach it. */
shared float bg_red[WG];

float bg_add(float a, float b)
{
    return a + b;
}

/* float NAME(float v): COMBINE over the workgroup, result in every lane. */
#define BG_WG_REDUCE(NAME, COMBINE)                                                  \
    float NAME(float v)                                                              \
    {                                                                                \
        uint t = gl_LocalInvocationID.x;                                             \
        bg_red[t] = v;                                                               \
        barrier();                                                                   \
        for (uint s = WG / 2; s > 0; s >>= 1) {                                      \
            if (t < s)                                                               \
                bg_red[t] = COMBINE(bg_red[t], bg_red[t + s]);                       \
            barrier();                                                               \
        }                                                                            \
        float r = bg_red[0];                                                         \
        barrier();                                                                   \
        return r;                                                                    \
    }

BG_WG_REDUCE(wg_sum, bg_add)
BG_WG_REDUCE(wg_max, max)
#endif
