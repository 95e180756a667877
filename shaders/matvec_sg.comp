#version 450
/*
 * matvec_sg.comp — out[m, n] = dot(x[m, :], w[n, :]) (M == 1 decode), one
 * subgroup per output row: the subgroup's lanes read the row coalesced
 * (vec4 when VEC4, four loads in flight per lane) and subgroupAdd reduces it, so there is no shared memory
 * and no barrier. Used instead of matvec.comp when the device supports
 * subgroup arithmetic in compute shaders (a separate file: the capability
 * must not appear in the SPIR-V other devices get).
 * A workgroup of WG invocations (spec constant 0) holds WG / subgroup size
 * subgroups, each taking rows n = group * NSG + subgroup, stepping by the
 * grid size until N. VEC4: spec constant 1.
 * Bindings: 0 out, 1 x, 2 w (also aliased as vec4). Push: i0 M, i1 N, i2 K,
 * i3 groups along x, i4 out row stride. Grid: x = groups, y = M.
 */
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint VEC4 = 0;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;
layout(std430, binding = 1) readonly buffer B1V { vec4 d[]; } xv;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } ws;
layout(std430, binding = 2) readonly buffer B2V { vec4 d[]; } wv;

void main()
{
    uint N = uint(pc.i1), K = uint(pc.i2);
    uint m = gl_WorkGroupID.y;
    uint lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
    uint rows_per_step = gl_NumWorkGroups.x * gl_NumSubgroups;
    for (uint n = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID; n < N;
         n += rows_per_step) {
        float s = 0.0;
        uint xb = pc.o1 + m * K, wb = pc.o2 + n * K;
        if (VEC4 != 0) {
            /* four independent loads in flight per lane before any use:
             * the bandwidth of a memory-bound kernel is its loads in flight */
            uint xb4 = xb / 4, wb4 = wb / 4, K4 = K / 4, k = lane;
            float s1 = 0.0, s2 = 0.0, s3 = 0.0;
            for (; k + 3 * S < K4; k += 4 * S) {
                vec4 w0 = wv.d[wb4 + k], w1 = wv.d[wb4 + k + S];
                vec4 w2 = wv.d[wb4 + k + 2 * S], w3 = wv.d[wb4 + k + 3 * S];
                s += dot(xv.d[xb4 + k], w0);
                s1 += dot(xv.d[xb4 + k + S], w1);
                s2 += dot(xv.d[xb4 + k + 2 * S], w2);
                s3 += dot(xv.d[xb4 + k + 3 * S], w3);
            }
            for (; k < K4; k += S)
                s += dot(xv.d[xb4 + k], wv.d[wb4 + k]);
            s += (s1 + s2) + s3;
        } else {
            for (uint k = lane; k < K; k += S)
                s = fma(xs.d[xb + k], ws.d[wb + k], s);
        }
        s = subgroupAdd(s);
        if (subgroupElect())
            o.d[pc.o0 + m * uint(pc.i4) + n] = s;
    }
}
