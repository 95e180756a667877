#version 450
/*
 * swiglu_bw.comp — the backward of out = silu(h) ⊙ g, elementwise:
 *   dh = dout ⊙ g ⊙ silu'(h),  silu'(h) = s (1 + h (1 - s)),  s = 1/(1+e^-h)
 *   dg = dout ⊙ silu(h)
 * h and g are the forward's inputs (before the in-place forward).
 * Grid-stride loop. Bindings: 0 dh, 1 dg, 2 dout, 3 h, 4 g. Push: i0 n.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } dh;
layout(std430, binding = 1) writeonly buffer B1 { float d[]; } dg;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } dy;
layout(std430, binding = 3) readonly buffer B3 { float d[]; } hs;
layout(std430, binding = 4) readonly buffer B4 { float d[]; } gs;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        float h = hs.d[pc.o3 + i], g = gs.d[pc.o4 + i], d = dy.d[pc.o2 + i];
        float s = 1.0 / (1.0 + exp(-h));
        dh.d[pc.o0 + i] = d * g * (s * (1.0 + h * (1.0 - s)));
        dg.d[pc.o1 + i] = d * (h * s);
    }
}
