#version 450
/*
 * adamw.comp — one AdamW step (decoupled weight decay, bias correction,
 * optional global-norm clipping), elementwise over n parameters:
 *   g  = grad * c,  c = min(1, max_norm / (norm + 1e-6))  (when clipping)
 *   norm = sqrt(sum of the n_gsq sumsq slots, in order)
 *   m  = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   p -= lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t computed on the host. The norm is
 * read from the device (sumsq.comp's output), so a training step needs no
 * read-back between backward and update. `precise` keeps the driver from
 * fusing multiply-adds, so the arithmetic is the CPU's operation for
 * operation.
 * Bindings: 0 p, 1 grad, 2 m, 3 v, 4 gsq [n_gsq]. Push: i0 n, i1 n_gsq (0: no
 * clipping),
 * f[0] lr, f[1] b1, f[2] b2, f[3] eps, f[4] wd, f[5] bc1, f[6] bc2,
 * f[7] max_norm.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } ps;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } gs;
layout(std430, binding = 2) buffer B2 { float d[]; } ms;
layout(std430, binding = 3) buffer B3 { float d[]; } vs;
layout(std430, binding = 4) readonly buffer B4 { float d[]; } nrm;

void main()
{
    uint n = uint(pc.i0);
    precise float c = 1.0;
    if (pc.i1 > 0) {
        precise float ss = 0.0;
        for (int j = 0; j < pc.i1; j++)
            ss += nrm.d[pc.o4 + uint(j)];
        c = min(1.0, pc.f[7] / (sqrt(ss) + 1e-6));
    }
    float lr = pc.f[0], b1 = pc.f[1], b2 = pc.f[2], eps = pc.f[3], wd = pc.f[4];
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        precise float g = gs.d[pc.o1 + i] * c;
        precise float m = b1 * ms.d[pc.o2 + i] + (1.0 - b1) * g;
        precise float v = b2 * vs.d[pc.o3 + i] + (1.0 - b2) * g * g;
        precise float mh = m / pc.f[5];
        precise float vh = v / pc.f[6];
        precise float p = ps.d[pc.o0 + i];
        p = p - lr * (mh / (sqrt(vh) + eps) + wd * p);
        ms.d[pc.o2 + i] = m;
        vs.d[pc.o3 + i] = v;
        ps.d[pc.o0 + i] = p;
    }
}
