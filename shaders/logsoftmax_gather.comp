#version 450
/*
 * logsoftmax_gather.comp — out[t] = log_softmax(logits[t, :])[targets[t]]
 * = logits[t, y] - max - log(sum exp(logits[t, :] - max)). One workgroup per
 * row. A target outside [0, V) gives NaN (the caller validates ids).
 * Bindings: 0 out, 1 logits, 2 targets (int32). Push: i0 T, i1 V. Grid: x = T.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } ls;
layout(std430, binding = 2) readonly buffer B2 { int d[]; } ts;

void main()
{
    uint V = uint(pc.i1);
    uint row = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint b = pc.o1 + row * V;
    float m = -1.0 / 0.0;
    for (uint i = t; i < V; i += WG)
        m = max(m, ls.d[b + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = t; i < V; i += WG)
        s += exp(ls.d[b + i] - m);
    s = wg_sum(s);
    if (t == 0) {
        int y = ts.d[pc.o2 + row];
        float nan = uintBitsToFloat(0x7fc00000u);
        o.d[pc.o0 + row] = (y >= 0 && uint(y) < V) ? ls.d[b + uint(y)] - m - log(s) : nan;
    }
}
