#version 450
/*
 * embed_bw.comp — the embedding's backward, a scatter-add made a gather:
 * dtable[v, :] += sum over t with tokens[t] == v of dout[t, :].
 *
 * Deterministic without float atomics (VK_EXT_shader_atomic_float is not on
 * every GPU, and atomic order would change the sums run to run): one
 * workgroup per table row (grid-stride over rows), which scans the token ids
 * in chunks of WG through shared memory and adds the matching rows of dout
 * in increasing t — the order of the scalar reference, so the result equals
 * it bit for bit. Invocation i owns dims i, i+WG, ... (RD of them, spec
 * constant 1). A table larger than maxStorageBufferRange is bound in chunks
 * of i2 rows starting at row i6 (one dispatch each, disjoint rows); ids
 * outside the table match no row and are ignored.
 * Bindings: 0 dtable chunk [i2, dim], 1 dout [T, dim], 2 tokens [T] (int32).
 * Push: i0 T, i1 dim, i2 chunk rows, i6 chunk first row.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RD = 1;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } dt;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } dy;
layout(std430, binding = 2) readonly buffer B2 { int d[]; } tok;

shared int ids[WG];

void main()
{
    uint T = uint(pc.i0), dim = uint(pc.i1), V = uint(pc.i2);
    uint tid = gl_LocalInvocationID.x;
    for (uint v = gl_WorkGroupID.x; v < V; v += gl_NumWorkGroups.x) {
        float acc[RD];
        for (uint r = 0; r < RD; r++) {
            uint d = tid + r * WG;
            acc[r] = d < dim ? dt.d[pc.o0 + v * dim + d] : 0.0;
        }
        for (uint c0 = 0; c0 < T; c0 += WG) {
            ids[tid] = c0 + tid < T ? tok.d[pc.o2 + c0 + tid] : -1;
            barrier();
            uint cn = min(WG, T - c0);
            for (uint j = 0; j < cn; j++) {
                if (ids[j] != int(v) + pc.i6)
                    continue;
                for (uint r = 0; r < RD; r++) {
                    uint d = tid + r * WG;
                    if (d < dim)
                        acc[r] += dy.d[pc.o1 + (c0 + j) * dim + d];
                }
            }
            barrier(); /* ids[] is rewritten by the next chunk */
        }
        for (uint r = 0; r < RD; r++) {
            uint d = tid + r * WG;
            if (d < dim)
                dt.d[pc.o0 + v * dim + d] = acc[r];
        }
    }
}
