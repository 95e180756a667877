#version 450
/*
 * matmul.comp — out[M,N] = x[M,K] · w[N,K]^T (w in llama2.c [out,in] layout).
 *
 * Shared-memory tiled with an RM x RN register block per invocation (spec
 * constants 3 and 4, default 4x4). Workgroup TX x TY invocations (spec
 * constants 0 and 1) computes a BM x BN tile with BM = RM*TY, BN = RN*TX,
 * stepping K by BK (spec constant 2). Tiles load with
 * bounds checks (zero fill), so any M, N, K is correct, multiples or not.
 * Invocation (tx, ty) owns rows ty + r*TY and columns tx + c*TX of the tile:
 * strided ownership keeps shared reads conflict-free and writes coalesced.
 * Bindings: 0 out, 1 x, 2 w. Push: i0 M, i1 N, i2 K, i4 row stride of out
 * (N, or more when the runtime splits w by rows to fit maxStorageBufferRange).
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 0) const uint TX = 16;
layout(constant_id = 1) const uint TY = 16;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint RM = 4;
layout(constant_id = 4) const uint RN = 4;
#include "bg_common.glsl"

layout(std430, binding = 0) writeonly buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } xs;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } ws;

const uint BM = TY * RM;
const uint BN = TX * RN;
/* Rows of the shared tiles are padded by one word: the loads write them
 * k-major (consecutive invocations, consecutive k), and a stride of BM or
 * BN words (multiples of 32) would put a whole warp on one memory bank. */
const uint LA = BM + 1;
const uint LB = BN + 1;
shared float As[BK * LA];
shared float Bs[BK * LB];

void main()
{
    uint M = uint(pc.i0), N = uint(pc.i1), K = uint(pc.i2), ldo = uint(pc.i4);
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * TX + tx;
    uint nthr = TX * TY;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    float acc[RM * RN];
    for (uint i = 0; i < RM * RN; i++)
        acc[i] = 0.0;

    for (uint k0 = 0; k0 < K; k0 += BK) {
        for (uint e = tid; e < BM * BK; e += nthr) {
            uint i = e / BK, kk = e % BK;
            uint m = m0 + i, k = k0 + kk;
            As[kk * LA + i] = (m < M && k < K) ? xs.d[pc.o1 + m * K + k] : 0.0;
        }
        for (uint e = tid; e < BN * BK; e += nthr) {
            uint j = e / BK, kk = e % BK;
            uint n = n0 + j, k = k0 + kk;
            Bs[kk * LB + j] = (n < N && k < K) ? ws.d[pc.o2 + n * K + k] : 0.0;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float a[RM], b[RN];
            for (uint r = 0; r < RM; r++)
                a[r] = As[kk * LA + ty + r * TY];
            for (uint c = 0; c < RN; c++)
                b[c] = Bs[kk * LB + tx + c * TX];
            for (uint r = 0; r < RM; r++)
                for (uint c = 0; c < RN; c++)
                    acc[r * RN + c] = fma(a[r], b[c], acc[r * RN + c]);
        }
        barrier();
    }
    for (uint r = 0; r < RM; r++) {
        uint m = m0 + ty + r * TY;
        if (m >= M)
            continue;
        for (uint c = 0; c < RN; c++) {
            uint n = n0 + tx + c * TX;
            if (n < N)
                o.d[pc.o0 + m * ldo + n] = acc[r * RN + c];
        }
    }
}
