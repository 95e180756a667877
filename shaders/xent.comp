#version 450
/*
 * xent.comp — fused log-softmax + cross-entropy, forward and backward, one
 * workgroup per row t of logits[T, V]:
 *   lp[t]        = log_softmax(logits[t, :])[y_t]          (the token log-prob)
 *   dlogits[t,i] = w_t (softmax(logits[t, :])_i - [i == y_t])
 * i.e. the gradient of loss = -sum_t w_t lp[t] (per-position weights: 0 masks
 * a position, 1/T gives the mean). A target outside [0, V) gives NaN in
 * lp[t] and a zero gradient row (the caller validates ids). dlogits may
 * alias logits: each invocation overwrites only the elements it read.
 * Bindings: 0 dlogits, 1 lp [T], 2 logits, 3 targets (int32), 4 weights [T].
 * Push: i0 T, i1 V. Grid: x = T.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#define BG_REDUCE 1
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } dl;
layout(std430, binding = 1) writeonly buffer B1 { float d[]; } lp;
layout(std430, binding = 2) buffer B2 { float d[]; } ls;
layout(std430, binding = 3) readonly buffer B3 { int d[]; } ts;
layout(std430, binding = 4) readonly buffer B4 { float d[]; } wt;

void main()
{
    uint V = uint(pc.i1);
    uint row = gl_WorkGroupID.x;
    uint t = gl_LocalInvocationID.x;
    uint b = pc.o2 + row * V;
    float m = -1.0 / 0.0;
    for (uint i = t; i < V; i += WG)
        m = max(m, ls.d[b + i]);
    m = wg_max(m);
    float s = 0.0;
    for (uint i = t; i < V; i += WG)
        s += exp(ls.d[b + i] - m);
    int y = ts.d[pc.o3 + row];
    bool ok = y >= 0 && uint(y) < V;
    /* read before the barriers of wg_sum: dlogits may alias logits, and
     * another invocation overwrites element y below */
    float ly = ok ? ls.d[b + uint(y)] : 0.0;
    float w = ok ? wt.d[pc.o4 + row] : 0.0;
    s = wg_sum(s);
    float lse = m + log(s);
    for (uint i = t; i < V; i += WG) {
        float p = exp(ls.d[b + i] - lse);
        dl.d[pc.o0 + row * V + i] = w * (p - (int(i) == y ? 1.0 : 0.0));
    }
    if (t == 0)
        lp.d[pc.o1 + row] = ok ? ly - lse : uintBitsToFloat(0x7fc00000u);
}
