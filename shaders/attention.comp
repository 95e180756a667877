#version 450
/*
 * attention.comp — causal attention of T queries over the KV cache with
 * grouped K/V heads. Query t (position pos0+t), head h, attends to cache rows
 * 0..pos0+t of kcache/vcache[seq_len, nkv*hs], reading kv head
 * h / (nh / nkv); scores are scaled by 1/sqrt(hs).
 *
 * One workgroup per (h, t). Keys are processed in chunks of WG: each
 * invocation scores one key of the chunk, the chunk's max and exp-sum are
 * workgroup reductions, and an online (running max) softmax rescales the
 * accumulated output, so any context length works with O(WG + hs) shared
 * memory. Invocation i accumulates output dims i, i+WG, ..., up to RD of
 * them (spec constant 1: the runtime sets RD = ceil(hs / WG)).
 * Training (i5 = 1, bg_op_attention_train): B sequences of T rows each,
 * sequence b = workgroup z; its queries and keys are rows b*T.. of q/out
 * and k/v, pos0 = 0, and lse[(b*T + t) nh + h] = max + log(sum) is written
 * for the backward (attention_bw_*.comp). Per row, the arithmetic is the
 * inference path's, so both give the same output bit for bit.
 * Bindings: 0 out, 1 q, 2 kcache, 3 vcache, 4 lse (training).
 * Push: i0 T, i1 pos0, i2 nh, i3 nkv, i4 hs, i5 training.
 * Grid: x = nh, y = T, z = B (1 for inference).
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RD = 1; /* output dims per invocation */
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } qs;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } kc;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } vc;
layout(std430, binding = 4) writeonly buffer B4 { float d[]; } lse;

shared float qsh[RD * WG];
shared float p[WG];

void main()
{
    uint nh = uint(pc.i2), nkv = uint(pc.i3), hs = uint(pc.i4);
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x;
    uint L = uint(pc.i1) + t + 1; /* keys 0..L-1 */
    uint kvdim = nkv * hs;
    uint row = gl_WorkGroupID.z * uint(pc.i0); /* first row of the sequence */
    uint kvoff = row * kvdim + (h / (nh / nkv)) * hs;
    uint qoff = (row + t) * nh * hs + h * hs;
    float scale = 1.0 / sqrt(float(hs));

    for (uint d = tid; d < hs; d += WG)
        qsh[d] = qs.d[pc.o1 + qoff + d];
    barrier();

    float acc[RD];
    for (uint r = 0; r < RD; r++)
        acc[r] = 0.0;
    float m = -1.0 / 0.0, l = 0.0;
    for (uint c0 = 0; c0 < L; c0 += WG) {
        uint j = c0 + tid;
        float s = -1.0 / 0.0;
        if (j < L) {
            uint kb = pc.o2 + j * kvdim + kvoff;
            float dot = 0.0;
            for (uint d = 0; d < hs; d++)
                dot = fma(qsh[d], kc.d[kb + d], dot);
            s = dot * scale;
        }
        float mn = max(m, wg_max(s));
        float e = (j < L) ? exp(s - mn) : 0.0;
        p[tid] = e;
        float cs = wg_sum(e); /* its barriers also publish p[] */
        float corr = exp(m - mn);
        l = l * corr + cs;
        uint cn = min(WG, L - c0);
        for (uint r = 0; r < RD; r++) {
            uint d = tid + r * WG;
            if (d >= hs)
                break;
            float a = acc[r] * corr;
            uint vb = pc.o3 + c0 * kvdim + kvoff + d;
            for (uint jj = 0; jj < cn; jj++)
                a = fma(p[jj], vc.d[vb + jj * kvdim], a);
            acc[r] = a;
        }
        m = mn;
        barrier(); /* p[] is rewritten by the next chunk */
    }
    for (uint r = 0; r < RD; r++) {
        uint d = tid + r * WG;
        if (d < hs)
            o.d[pc.o0 + qoff + d] = acc[r] / l;
    }
    if (pc.i5 != 0 && tid == 0)
        lse.d[pc.o4 + (row + t) * nh + h] = m + log(l);
}
