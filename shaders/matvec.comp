#version 450
/*
 * matvec.comp — out[m, n] = dot(x[m, :], w[n, :]) for small M (one token).
 *
 * One workgroup of WG invocations per output element (n, m): the K-long dot
 * is read coalesced (consecutive invocations read consecutive weights) and
 * reduced in shared memory. Memory-bound by design: each weight is read once
 * per token, which is what decode costs.
 * Bindings: 0 out, 1 x, 2 w. Push: i0 M, i1 N, i2 K, i4 row stride of out.
 * Grid: x = N (split into x,z when N exceeds the dispatch limit: i3 = groups
 * along x), y = M.
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
    uint N = uint(pc.i1), K = uint(pc.i2);
    uint n = gl_WorkGroupID.z * uint(pc.i3) + gl_WorkGroupID.x;
    uint m = gl_WorkGroupID.y;
    uint t = gl_LocalInvocationID.x;
    float s = 0.0;
    if (n < N) {
        uint xb = pc.o1 + m * K, wb = pc.o2 + n * K;
        for (uint k = t; k < K; k += WG)
            s = fma(xs.d[xb + k], ws.d[wb + k], s);
    }
    s = wg_sum(s);
    if (t == 0 && n < N)
        o.d[pc.o0 + m * uint(pc.i4) + n] = s;
}
