#version 450
/*
 * rope.comp — rotary embedding in place on q[T, nh*hs] and k[T, nkv*hs],
 * llama2.c semantics: adjacent pairs (2i, 2i+1) of each head rotate by
 * angle pos * 10000^(-2i/hs), pos = pos0 + t. One invocation per pair;
 * pairs of q come first, then pairs of k (grid-stride loop).
 * The frequencies 10000^(-2i/hs) come from a table the runtime computes on
 * the host exactly as llama2.c does (powf): a GPU pow() is only accurate to
 * a few ulp, which at position 500 would already move the angle by ~1e-3.
 * Backward (i5 = 1): the gradient of a rotation is the rotation by the
 * opposite angle, so the same kernel with sin negated maps dq, dk in place.
 * Bindings: 0 q, 1 k, 2 freq[hs/2]. Push: i0 T, i1 pos0, i2 nh, i3 nkv, i4 hs,
 * i5 backward.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } qs;
layout(std430, binding = 1) buffer B1 { float d[]; } ks;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } fr;

vec2 rot(vec2 v, uint t, uint e)
{
    float freq = fr.d[pc.o2 + (e % uint(pc.i4)) / 2];
    float val = float(uint(pc.i1) + t) * freq;
    /* Vulkan bounds sin/cos error (2^-11) only on [-pi, pi]: reduce first,
     * Cody-Waite style (k * C1 is exact; C1 + C2 = 2 pi). */
    float k = round(val * 0.15915494309189535);
    val = (val - k * 6.28125) - k * 0.0019353071795864769;
    float c = cos(val), s = pc.i5 != 0 ? -sin(val) : sin(val);
    return vec2(v.x * c - v.y * s, v.x * s + v.y * c);
}

void main()
{
    uint T = uint(pc.i0), hs = uint(pc.i4);
    uint qrow = uint(pc.i2) * hs / 2, krow = uint(pc.i3) * hs / 2; /* pairs per row */
    uint nq = T * qrow, total = nq + T * krow;
    for (uint p = gl_GlobalInvocationID.x; p < total; p += gl_NumWorkGroups.x * WG) {
        if (p < nq) {
            uint t = p / qrow, e = 2 * (p % qrow);
            uint i = pc.o0 + t * 2 * qrow + e;
            vec2 r = rot(vec2(qs.d[i], qs.d[i + 1]), t, e);
            qs.d[i] = r.x;
            qs.d[i + 1] = r.y;
        } else {
            uint pk = p - nq;
            uint t = pk / krow, e = 2 * (pk % krow);
            uint i = pc.o1 + t * 2 * krow + e;
            vec2 r = rot(vec2(ks.d[i], ks.d[i + 1]), t, e);
            ks.d[i] = r.x;
            ks.d[i + 1] = r.y;
        }
    }
}
