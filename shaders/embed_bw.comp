#version 450
/*
 * embed_bw.comp — the embedding's backward, a scatter-add made a gather:
 * dtable[v, :] += sum over t with tokens[t] == v of dout[t, :].
 *
 * Deterministic without float atomics (VK_EXT_shader_atomic_float is not on
 * every GPU, and atomic order would change the sums run to run): one
 * workgroup per position t (grid-stride). It first checks, WG earlier ids at
 * a time, whether t is the FIRST occurrence of its token v; only that
 * "leader" then adds the dout rows of every occurrence of v, in increasing
 * t — the order of the scalar reference, so the result equals it bit for
 * bit — scanning the later ids in chunks of WG through shared memory. The
 * cost is O(T^2 / WG) id comparisons and no [V]-sized pass, so a 32000-token
 * vocabulary costs nothing for the rows no token of the batch uses.
 * Invocation i owns dims i, i+WG, ... (RD of them, spec constant 1). A table
 * larger than maxStorageBufferRange is bound in chunks of i2 rows starting
 * at row i6 (one dispatch each, disjoint rows); ids outside the chunk are
 * left to the dispatch that holds them, ids outside the table are ignored.
 * Bindings: 0 dtable chunk [i2, dim], 1 dout [T, dim], 2 tokens [T] (int32).
 * Push: i0 T, i1 dim, i2 chunk rows, i6 chunk first row.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RD = 1;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } dt;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } dy;
layout(std430, binding = 2) readonly buffer B2 { int d[]; } tok;

shared int ids[WG];

void main()
{
    uint T = uint(pc.i0), dim = uint(pc.i1);
    uint tid = gl_LocalInvocationID.x;
    for (uint t = gl_WorkGroupID.x; t < T; t += gl_NumWorkGroups.x) {
        int v = tok.d[pc.o2 + t];
        int row = v - pc.i6;
        if (row < 0 || row >= pc.i2)
            continue; /* uniform: another chunk's row, or no row at all */
        /* is t the first occurrence of v? */
        bool first = true;
        for (uint c0 = 0; c0 < t && first; c0 += WG) {
            uint j = c0 + tid;
            float hit = (j < t && tok.d[pc.o2 + j] == v) ? 1.0 : 0.0;
            first = wg_max(hit) == 0.0;
        }
        if (!first)
            continue;
        float acc[RD];
        uint base = pc.o0 + uint(row) * dim;
        for (uint r = 0; r < RD; r++) {
            uint d = tid + r * WG;
            acc[r] = d < dim ? dt.d[base + d] : 0.0;
        }
        for (uint c0 = t; c0 < T; c0 += WG) {
            ids[tid] = c0 + tid < T ? tok.d[pc.o2 + c0 + tid] : -1;
            barrier();
            uint cn = min(WG, T - c0);
            for (uint j = 0; j < cn; j++) {
                if (ids[j] != v)
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
                dt.d[base + d] = acc[r];
        }
    }
}
