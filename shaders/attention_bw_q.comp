#version 450
/*
 * attention_bw_q.comp — training attention's backward, part 1: the query
 * gradient. B sequences of T rows (sequence b = workgroup z, rows b*T..);
 * query t saw keys 0..t of its sequence, kv head h / (nh/nkv), scale
 * 1/sqrt(hs). From the forward's saved out and lse (FlashAttention's
 * convention: no [T, T] matrix is kept), one workgroup per (h, t, b):
 *   D = dout·out,  P_j = exp(scale q·k_j - lse),  dS_j = P_j (dout·v_j - D)
 *   dq = scale sum_j dS_j k_j                                   (overwritten)
 * and D is stored for part 2 (attention_bw_kv.comp, after a barrier). Keys
 * are taken in chunks of WG (each invocation scores one key of a chunk), so
 * any T works with O(WG + hs) shared memory; invocation i owns dims i,
 * i+WG, ... (RD of them, spec constant 1). Fixed summation order.
 * Bindings: 0 dq, 1 dout, 2 q, 3 k, 4 v, 5 out, 6 lse [B*T, nh], 7 D [B*T, nh]
 * (written). Push: i0 T, i2 nh, i3 nkv, i4 hs. Grid: x = nh, y = T, z = B.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RD = 1;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } dq;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } dout;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } qs;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } kc;
layout(std430, binding = 4) readonly buffer B4 { float d[]; } vc;
layout(std430, binding = 5) readonly buffer B5 { float d[]; } os;
layout(std430, binding = 6) readonly buffer B6 { float d[]; } ls;
layout(std430, binding = 7) writeonly buffer B7 { float d[]; } Ds;

shared float qsh[RD * WG];
shared float dsh[RD * WG];
shared float S[WG];

void main()
{
    uint T = uint(pc.i0), nh = uint(pc.i2), nkv = uint(pc.i3), hs = uint(pc.i4);
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.z * T; /* first row of the sequence */
    uint L = t + 1;
    uint kvdim = nkv * hs;
    uint kvoff = row * kvdim + (h / (nh / nkv)) * hs;
    uint qoff = (row + t) * nh * hs + h * hs;
    uint si = (row + t) * nh + h;
    float scale = 1.0 / sqrt(float(hs));

    float part = 0.0;
    for (uint d = tid; d < hs; d += WG) {
        qsh[d] = qs.d[pc.o2 + qoff + d];
        float g = dout.d[pc.o1 + qoff + d];
        dsh[d] = g;
        part = fma(g, os.d[pc.o5 + qoff + d], part);
    }
    float D = wg_sum(part); /* its barriers also publish qsh[], dsh[] */
    float lse = ls.d[pc.o6 + si];

    float acc[RD];
    for (uint r = 0; r < RD; r++)
        acc[r] = 0.0;
    for (uint c0 = 0; c0 < L; c0 += WG) {
        uint j = c0 + tid;
        float ds = 0.0;
        if (j < L) {
            uint kb = pc.o3 + j * kvdim + kvoff, vb = pc.o4 + j * kvdim + kvoff;
            float s = 0.0, dp = 0.0;
            for (uint d = 0; d < hs; d++) {
                s = fma(qsh[d], kc.d[kb + d], s);
                dp = fma(dsh[d], vc.d[vb + d], dp);
            }
            ds = exp(s * scale - lse) * (dp - D);
        }
        S[tid] = ds;
        barrier();
        uint cn = min(WG, L - c0);
        for (uint r = 0; r < RD; r++) {
            uint d = tid + r * WG;
            if (d >= hs)
                break;
            float a = acc[r];
            uint kb = pc.o3 + c0 * kvdim + kvoff + d;
            for (uint jj = 0; jj < cn; jj++)
                a = fma(S[jj], kc.d[kb + jj * kvdim], a);
            acc[r] = a;
        }
        barrier(); /* S[] is rewritten by the next chunk */
    }
    for (uint r = 0; r < RD; r++) {
        uint d = tid + r * WG;
        if (d < hs)
            dq.d[pc.o0 + qoff + d] = acc[r] * scale;
    }
    if (tid == 0)
        Ds.d[pc.o7 + si] = D;
}
