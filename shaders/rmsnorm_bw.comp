#version 450
/*
 * rmsnorm_bw.comp — RMSNorm's backward for the input, one workgroup per
 * row t. With y = w ⊙ x r, r = 1/sqrt(mean(x^2) + eps):
 *   dx = r (w ⊙ dy) - (r^3 / n) (sum_i w_i dy_i x_i) x
 * r is recomputed as the forward computes it and stored in rs[t] for the
 * weight gradient (rmsnorm_bw_w.comp), which runs after a barrier.
 * dx accumulates (+=): in the model x is the residual stream, whose
 * gradient already holds the skip path's share.
 * Bindings: 0 dx, 1 dy, 2 x, 3 w, 4 rs [T] (out). Push: i0 T, i1 n,
 * f[0] eps. Grid: x = T.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } dx;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } dy;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } xs;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } ws;
layout(std430, binding = 4) writeonly buffer B4 { float d[]; } rs;

void main()
{
    uint n = uint(pc.i1);
    uint row = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint xb = pc.o2 + row * n, yb = pc.o1 + row * n;
    float s = 0.0, c = 0.0;
    for (uint i = t; i < n; i += WG) {
        float v = xs.d[xb + i];
        s = fma(v, v, s);
        c = fma(ws.d[pc.o3 + i] * dy.d[yb + i], v, c);
    }
    s = wg_sum(s);
    c = wg_sum(c);
    float r = 1.0 / sqrt(s / float(n) + pc.f[0]);
    float k = r * r * r * c / float(n);
    for (uint i = t; i < n; i += WG) {
        uint j = pc.o0 + row * n + i;
        float g = r * (ws.d[pc.o3 + i] * dy.d[yb + i]) - k * xs.d[xb + i];
        dx.d[j] = dx.d[j] + g;
    }
    if (t == 0)
        rs.d[pc.o4 + row] = r;
}
