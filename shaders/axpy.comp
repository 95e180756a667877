#version 450
/*
 * axpy.comp — y[i] += alpha * x[i] over n elements (LoRA's scaled path,
 * gradient sums). `precise`: one multiply and one add, as the CPU does them
 * (no fused multiply-add), so both backends give the same bits.
 * Grid-stride loop. Bindings: 0 y, 1 x. Push: i0 n, f[0] alpha.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } ys;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;

void main()
{
    uint n = uint(pc.i0);
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        precise float p = pc.f[0] * xs.d[pc.o1 + i];
        ys.d[pc.o0 + i] = ys.d[pc.o0 + i] + p;
    }
}
