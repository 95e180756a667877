#version 450
/*
 * attention_bw_kv.comp — training attention's backward, part 2: key and
 * value gradients, after attention_bw_q.comp (which stored D) and a
 * barrier. One workgroup per (kv head g, key row j, sequence b); row j is
 * seen by queries t >= j of each head h of group g. With
 * P_tj = exp(scale q_t·k_j - lse_t) and dS_tj = P_tj (dout_t·v_j - D_t):
 *   dk_j = scale sum_{h,t} dS_tj q_t,   dv_j = sum_{h,t} P_tj dout_t   (overwritten)
 * Queries are taken in chunks of WG (each invocation one query of a chunk),
 * heads of the group in order: a fixed summation order and no atomics, so
 * GQA's several heads per kv head need no scatter. Invocation i owns dims
 * i, i+WG, ... (RD of them).
 * Bindings: 0 dk, 1 dv, 2 dout, 3 q, 4 k, 5 v, 6 lse, 7 D.
 * Push: i0 T, i2 nh, i3 nkv, i4 hs. Grid: x = nkv, y = T, z = B.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint RD = 1;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } dk;
layout(std430, binding = 1) writeonly buffer B1 { float d[]; } dv;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } dout;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } qs;
layout(std430, binding = 4) readonly buffer B4 { float d[]; } kc;
layout(std430, binding = 5) readonly buffer B5 { float d[]; } vc;
layout(std430, binding = 6) readonly buffer B6 { float d[]; } ls;
layout(std430, binding = 7) readonly buffer B7 { float d[]; } Ds;

shared float ksh[RD * WG];
shared float vsh[RD * WG];
shared float P[WG];
shared float S[WG];

void main()
{
    uint T = uint(pc.i0), nh = uint(pc.i2), nkv = uint(pc.i3), hs = uint(pc.i4);
    uint g = gl_WorkGroupID.x, j = gl_WorkGroupID.y;
    uint tid = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.z * T;
    uint kvdim = nkv * hs, qdim = nh * hs, grp = nh / nkv;
    uint krow = (row + j) * kvdim + g * hs;
    float scale = 1.0 / sqrt(float(hs));

    for (uint d = tid; d < hs; d += WG) {
        ksh[d] = kc.d[pc.o4 + krow + d];
        vsh[d] = vc.d[pc.o5 + krow + d];
    }
    barrier();

    float ak[RD], av[RD];
    for (uint r = 0; r < RD; r++) {
        ak[r] = 0.0;
        av[r] = 0.0;
    }
    for (uint hh = 0; hh < grp; hh++) {
        uint h = g * grp + hh;
        for (uint c0 = j; c0 < T; c0 += WG) {
            uint t = c0 + tid;
            float p = 0.0, ds = 0.0;
            if (t < T) {
                uint qb = (row + t) * qdim + h * hs;
                float s = 0.0, dp = 0.0;
                for (uint d = 0; d < hs; d++) {
                    s = fma(qs.d[pc.o3 + qb + d], ksh[d], s);
                    dp = fma(dout.d[pc.o2 + qb + d], vsh[d], dp);
                }
                uint si = (row + t) * nh + h;
                p = exp(s * scale - ls.d[pc.o6 + si]);
                ds = p * (dp - Ds.d[pc.o7 + si]);
            }
            P[tid] = p;
            S[tid] = ds;
            barrier();
            uint cn = min(WG, T - c0);
            for (uint r = 0; r < RD; r++) {
                uint d = tid + r * WG;
                if (d >= hs)
                    break;
                float a = ak[r], b = av[r];
                uint qb = (row + c0) * qdim + h * hs + d;
                for (uint tt = 0; tt < cn; tt++) {
                    a = fma(S[tt], qs.d[pc.o3 + qb + tt * qdim], a);
                    b = fma(P[tt], dout.d[pc.o2 + qb + tt * qdim], b);
                }
                ak[r] = a;
                av[r] = b;
            }
            barrier(); /* P[], S[] are rewritten by the next chunk */
        }
    }
    for (uint r = 0; r < RD; r++) {
        uint d = tid + r * WG;
        if (d < hs) {
            dk.d[pc.o0 + krow + d] = ak[r] * scale;
            dv.d[pc.o1 + krow + d] = av[r];
        }
    }
}
