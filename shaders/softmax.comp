#version 450
/*
 * softmax.comp — in place softmax over each row of x[rows, n]. One workgroup
 * per row: max reduction, exp and sum reduction, scale. Each invocation
 * rescales exactly the elements it exponentiated, so no barrier is needed
 * between the last two passes.
 * Bindings: 0 x. Push: i0 rows, i1 n. Grid: x = rows.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } xs;

void main()
{
    uint n = uint(pc.i1);
    uint t = gl_LocalInvocationID.x;
    uint b = pc.o0 + gl_WorkGroupID.x * n;
    float m = -1.0 / 0.0;
    for (uint i = t; i < n; i += WG)
        m = max(m, xs.d[b + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = t; i < n; i += WG) {
        float e = exp(xs.d[b + i] - m);
        xs.d[b + i] = e;
        s += e;
    }
    s = wg_sum(s);
    float inv = 1.0 / s;
    for (uint i = t; i < n; i += WG)
        xs.d[b + i] *= inv;
}
