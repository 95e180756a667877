#version 450
/*
 * add.comp — in place x[i] += y[i] over n elements (residual connection).
 * Grid-stride loop. Bindings: 0 x, 1 y. Push: i0 n.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } xs;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } ys;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG)
        xs.d[pc.o0 + i] += ys.d[pc.o1 + i];
}
