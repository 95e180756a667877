#version 450
/*
 * gemm.comp — out[M,N] (+)= A[M,K] · B[N,K]^T with either operand stored
 * transposed: the matmul of the backward pass. With W [N,K] (llama2.c
 * [out,in]) and dy [M,N]:
 *   dx[M,K] (+)= dy · W        A = dy (TA 0), B = W read as [K,N] (TB 1)
 *   dW[N,K] (+)= dy^T · x      A = dy read as [K,M] (TA 1), B = x as [K,N] (TB 1)
 * Tiling as matmul.comp (TX x TY invocations, RM x RN outputs each, K step
 * BK; spec constants 0..4); TA (5) and TB (6) pick the storage order of A
 * and B, and the tile loads walk memory contiguously in either order. Any M,
 * N, K: tiles zero-fill past the edges. The sum over K runs in one fixed
 * order, so results are reproducible run to run.
 * Split-K (i5 = S > 1 slices, grid z = S): slice z sums k in
 * [z*i6, min(K, (z+1)*i6)) and stores its tile in part[z, M, N] (binding 3);
 * gemm_reduce.comp then adds the S slices in order into out. This keeps a
 * GPU busy when M x N has few tiles and K is long (dW = dy^T x sums over all
 * B*T tokens of a batch).
 * Bindings: 0 out, 1 A, 2 B, 3 part (split-K). Push: i0 M, i1 N, i2 K,
 * i3 accumulate (out +=), i5 slices, i6 K per slice.
 */
#extension GL_GOOGLE_include_directive : require
layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 0) const uint TX = 16;
layout(constant_id = 1) const uint TY = 16;
layout(constant_id = 2) const uint BK = 16;
layout(constant_id = 3) const uint RM = 4;
layout(constant_id = 4) const uint RN = 4;
layout(constant_id = 5) const uint TA = 0; /* 1: A stored [K,M] */
layout(constant_id = 6) const uint TB = 0; /* 1: B stored [K,N] */
#include "bg_common.glsl"

layout(std430, binding = 0) buffer B0 { float d[]; } o;
layout(std430, binding = 1) readonly buffer B1 { float d[]; } as;
layout(std430, binding = 2) readonly buffer B2 { float d[]; } bs;
layout(std430, binding = 3) writeonly buffer B3 { float d[]; } part;

const uint BM = TY * RM;
const uint BN = TX * RN;
const uint LA = BM + 1; /* padded rows: see matmul.comp */
const uint LB = BN + 1;
shared float As[BK * LA];
shared float Bs[BK * LB];

void main()
{
    uint M = uint(pc.i0), N = uint(pc.i1), K = uint(pc.i2);
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * TX + tx;
    uint nthr = TX * TY;
    uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
    bool split = pc.i5 > 1;
    uint kb = split ? gl_WorkGroupID.z * uint(pc.i6) : 0;
    uint ke = split ? min(K, kb + uint(pc.i6)) : K;
    float acc[RM * RN];
    for (uint i = 0; i < RM * RN; i++)
        acc[i] = 0.0;

    for (uint k0 = kb; k0 < ke; k0 += BK) {
        for (uint e = tid; e < BM * BK; e += nthr) {
            /* consecutive e walk the operand's contiguous dimension */
            uint i = TA == 0 ? e / BK : e % BM, kk = TA == 0 ? e % BK : e / BM;
            uint m = m0 + i, k = k0 + kk;
            float v = 0.0;
            if (m < M && k < ke)
                v = as.d[pc.o1 + (TA == 0 ? m * K + k : k * M + m)];
            As[kk * LA + i] = v;
        }
        for (uint e = tid; e < BN * BK; e += nthr) {
            uint j = TB == 0 ? e / BK : e % BN, kk = TB == 0 ? e % BK : e / BN;
            uint n = n0 + j, k = k0 + kk;
            float v = 0.0;
            if (n < N && k < ke)
                v = bs.d[pc.o2 + (TB == 0 ? n * K + k : k * N + n)];
            Bs[kk * LB + j] = v;
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
            if (n >= N)
                continue;
            if (split) {
                part.d[pc.o3 + (gl_WorkGroupID.z * M + m) * N + n] = acc[r * RN + c];
            } else {
                uint i = pc.o0 + m * N + n;
                o.d[i] = pc.i3 != 0 ? o.d[i] + acc[r * RN + c] : acc[r * RN + c];
            }
        }
    }
}
