#version 450
/*
 * rmsnorm.comp — out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w[:].
 * One workgroup per row t; the sum of squares is a shared-memory reduction.
 * Same order of operations as llama2.c: ss = 1/sqrt(ss/n + eps); o = w*(ss*x).
 * Bindings: 0 out, 1 x, 2 w. Push: i0 T, i1 n, f[0] eps. Grid: x = T.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } ws;

void main()
{
    uint n = uint(pc.i1);
    uint row = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint xb = pc.o1 + row * n;
    float s = 0.0;
    for (uint i = t; i < n; i += WG) {
        float v = xs.d[xb + i];
        s = fma(v, v, s);
    }
    s = wg_sum(s);
    float scale = 1.0 / sqrt(s / float(n) + pc.f[0]);
    for (uint i = t; i < n; i += WG)
        o.d[pc.o0 + row * n + i] = ws.d[pc.o2 + i] * (scale * xs.d[xb + i]);
}
