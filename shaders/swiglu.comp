#version 450
/*
 * swiglu.comp — in place h[i] = silu(h[i]) * g[i], silu(x) = x / (1 + e^-x).
 * Grid-stride loop: any n with a bounded dispatch.
 * Bindings: 0 h, 1 g. Push: i0 n.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } hs;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } gs;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        float v = hs.d[pc.o0 + i];
        v = v * (1.0 / (1.0 + exp(-v)));
        hs.d[pc.o0 + i] = v * gs.d[pc.o1 + i];
    }
}
