#version 450
/*
 * sumsq.comp — a deterministic two-stage sum (of squares) for the gradient's
 * global norm. Stage 1 (i2 = 1): G workgroups sum x[i]^2 over a grid-stride
 * of n elements and write one partial each, part[wg]. Stage 2 (i2 = 0, one
 * workgroup, after a barrier): sums the G partials into out[0]. G depends
 * only on n and WG, so the order of every addition is fixed: the same sum
 * run to run.
 * Bindings: 0 out, 1 x. Push: i0 n, i2 square.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;

void main()
{
    uint n = uint(pc.i0);
    float s = 0.0;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        float v = xs.d[pc.o1 + i];
        s = pc.i2 != 0 ? fma(v, v, s) : s + v;
    }
    s = wg_sum(s);
    if (gl_LocalInvocationID.x == 0)
        o.d[pc.o0 + gl_WorkGroupID.x] = s;
}
