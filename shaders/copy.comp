#version 450
/*
 * copy.comp — dst[0..n) = src[0..n) (K/V rows into the cache). A shader
 * rather than vkCmdCopyBuffer so that it orders with the same compute-to-
 * compute barrier as every other op. Grid-stride loop.
 * Bindings: 0 dst, 1 src. Push: i0 n.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } dst;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } src;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG)
        dst.d[pc.o0 + i] = src.d[pc.o1 + i];
}
