#version 450
/*
 * fill.comp — x[0..n) = value (zeroing gradients and optimizer moments).
 * Grid-stride loop. Bindings: 0 x. Push: i0 n, f[0] value.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } xs;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG)
        xs.d[pc.o0 + i] = pc.f[0];
}
