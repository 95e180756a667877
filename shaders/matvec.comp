#version 450
/*
 * matvec.comp — out[m, n] = dot(x[m, :], w[n, :]) for one token (M == 1;
 * more rows of x work, one grid row each). Memory-bound: every weight is
 * read once, so the kernel is shaped for bandwidth.
 *
 * A workgroup of WG invocations (spec constant 0) computes ROWS outputs
 * (spec constant 1): LPR = WG / ROWS consecutive invocations share a row,
 * read it coalesced (consecutive lanes, consecutive addresses) and reduce
 * their partial sums in shared memory within their segment. Short rows
 * (small K) use several rows per workgroup so lanes are not idle. With VEC4
 * (spec constant 2; the runtime sets it when K and both view offsets are
 * multiples of 4) the row is read as vec4: a quarter of the load
 * instructions.
 * Bindings: 0 out, 1 x, 2 w (also aliased as vec4). Push: i0 M, i1 N, i2 K,
 * i3 groups along x (grid split into x,z beyond 65535 groups), i4 out row
 * stride. Grid: x*z = ceil(N / ROWS), y = M.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint ROWS = 1;
layout(constant_id = 2) const uint VEC4 = 0;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;
layout(std430, binding = 1) readonly buffer B1V { vec4 d[]; } xv;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } ws;
layout(std430, binding = 2) readonly buffer B2V { vec4 d[]; } wv;

const uint LPR = WG / ROWS;
shared float red[WG];

void main()
{
    uint N = uint(pc.i1), K = uint(pc.i2);
    uint t = gl_LocalInvocationID.x;
    uint seg = t / LPR, lane = t % LPR;
    uint n = (gl_WorkGroupID.z * uint(pc.i3) + gl_WorkGroupID.x) * ROWS + seg;
    uint m = gl_WorkGroupID.y;
    float s = 0.0;
    if (n < N) {
        uint xb = pc.o1 + m * K, wb = pc.o2 + n * K;
        if (VEC4 != 0) {
            uint xb4 = xb / 4, wb4 = wb / 4;
            for (uint k = lane; k < K / 4; k += LPR) {
                vec4 a = xv.d[xb4 + k], b = wv.d[wb4 + k];
                s += dot(a, b);
            }
        } else {
            for (uint k = lane; k < K; k += LPR)
                s = fma(xs.d[xb + k], ws.d[wb + k], s);
        }
    }
    red[t] = s;
    barrier();
    for (uint h = LPR / 2; h > 0; h >>= 1) {
        if (lane < h)
            red[t] += red[t + h];
        barrier();
    }
    if (lane == 0 && n < N)
        o.d[pc.o0 + m * uint(pc.i4) + n] = red[t];
}
