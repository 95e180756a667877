#version 450
/*
 * rmsnorm_bw_w.comp — RMSNorm's weight gradient, dw[i] += sum over t of
 * dy[t, i] x[t, i] r[t], with r[t] from rmsnorm_bw.comp. One invocation per
 * column (grid-stride), summing rows in increasing t: coalesced reads, a
 * fixed order, no atomics.
 * Bindings: 0 dw, 1 dy, 2 x, 3 rs [T]. Push: i0 T, i1 n.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } dw;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } dy;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } xs;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } rs;

void main()
{
    uint T = uint(pc.i0), n = uint(pc.i1);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        float a = 0.0;
        for (uint t = 0; t < T; t++)
            a += dy.d[pc.o1 + t * n + i] * (xs.d[pc.o2 + t * n + i] * rs.d[pc.o3 + t]);
        dw.d[pc.o0 + i] = dw.d[pc.o0 + i] + a;
    }
}
