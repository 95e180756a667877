#version 450
/*
 * embed.comp — out[t, :] = table[tokens[t], :] (embedding gather).
 *
 * The table may exceed maxStorageBufferRange, so the runtime binds it in
 * chunks of i5 rows starting at row i6 and dispatches once per chunk (with a
 * barrier between): a dispatch writes the rows whose token falls in its
 * chunk. An id outside [0, i4) never reaches the kernel: the runtime checks
 * the ids at record time and fails the op (BG_EINVAL, as the CPU backend
 * does). The first dispatch (i7 = 1) still zeroes such rows rather than
 * read out of bounds, should the buffer change after recording.
 * Bindings: 0 out, 1 table chunk, 2 tokens (int32).
 * Push: i0 T, i1 dim, i4 table rows, i5 chunk rows, i6 chunk first row, i7 first.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } tab;
layout(std430, binding = 2) readonly buffer B2 { int d[]; } tok;

void main()
{
    uint T = uint(pc.i0), dim = uint(pc.i1);
    uint n = T * dim;
    for (uint i = gl_GlobalInvocationID.x; i < n; i += gl_NumWorkGroups.x * WG) {
        uint t = i / dim, d = i % dim;
        int id = tok.d[pc.o2 + t];
        int r = id - pc.i6;
        if (r >= 0 && r < pc.i5)
            o.d[pc.o0 + i] = tab.d[pc.o1 + uint(r) * dim + d];
        else if (pc.i7 != 0 && (id < 0 || id >= pc.i4))
            o.d[pc.o0 + i] = 0.0;
    }
}
