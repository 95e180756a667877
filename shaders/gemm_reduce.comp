#version 450
/*
 * gemm_reduce.comp — the second half of a split-K GEMM (gemm.comp):
 * out[i] (+)= sum over z = 0..S-1 of part[z * n + i], slices in order, so the
 * result does not depend on the schedule. Grid-stride over n = M*N outputs.
 * Bindings: 0 out, 1 part. Push: i0 n, i3 accumulate, i5 S.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } part;

void main()
{
    uint n = uint(pc.i0), S = uint(pc.i5);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        float s = part.d[pc.o1 + i];
        for (uint z = 1; z < S; z++)
            s += part.d[pc.o1 + z * n + i];
        o.d[pc.o0 + i] = pc.i3 != 0 ? o.d[pc.o0 + i] + s : s;
    }
}
