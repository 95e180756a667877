/*
 * compute_vulkan_train.c — the training ops of compute.h (backward passes,
 * the fused loss, the gradient norm, AdamW) as Vulkan dispatches: which
 * views bind to which slots, push constants, grids. Semantics are
 * compute.h's "training ops"; the kernels are shaders/<name>.comp, whose
 * headers give the math and the push-constant slots. rope_backward and
 * attention_train reuse the forward kernels (compute_vulkan_ops.c).
 *
 * Why shaped so: every reduction (over rows, positions, heads of a KV
 * group, the embedding's repeated tokens, the norm's elements) runs in a
 * fixed order inside one invocation or one workgroup — no float atomics
 * (VK_EXT_shader_atomic_float is not on every GPU, and atomic order would
 * make gradients differ run to run). Ops that need an intermediate result
 * (rmsnorm's 1/rms per row, attention's D per query, sumsq's partials) take
 * it from the backend's per-recording scratch (bg__vk_scratch) and record
 * their own barrier between their two dispatches; the caller's barriers
 * between ops are unchanged.
 *
 * Limits: views must fit maxStorageBufferRange (128 MiB on lavapipe) except
 * the embedding table's gradient, which is split by rows like the forward's
 * table; a larger view poisons the recording with BG_ELIMIT naming the op.
 * The trainer keeps its logits as one chunk of rows within bg_compute_max_view
 * and bg_compute_max_alloc (nn_train.c, logit_rows), so the classifier's ops
 * never see a view over the limit.
 * Ids: token and target ids are checked at record time, as compute.h
 * promises (bg__vk_ids_ok, shared with the forward embed), by reading them
 * from their buffer (a memcpy from mapped memory,
 * else a staged copy): ids come from the host, no op writes them, so what
 * the buffer holds when the op is recorded is what the kernel reads. A bad
 * id poisons the recording before anything runs (the CPU backend's message:
 * op, id, row, range). The kernels still ignore an id outside the table
 * (embed_backward) or give lp = NaN and a zero row (xent), never reading out
 * of bounds.
 *
 * Thread: the backend's caller (compute.h). Shapes were validated by
 * compute.c; views are bounds-checked in bg__vk_dispatch.
 */
#include <math.h>
#include <stdlib.h>

#include "compute/vk_backend.h"

static bg_vk_compute *VC(bg_compute *c)
{
    return (bg_vk_compute *)c;
}

static bg_vk_bind bind(bg_tview v, size_t n)
{
    return bg__vk_bind(v, n);
}

/* A grid-stride kernel over n elements whose only spec constant is WG. */
static int stride(bg_vk_compute *vc, const char *op, const bg_vk_bind *b, int nb, bg_vk_pc *pc,
                  size_t n)
{
    uint32_t spec[1] = {vc->wg};
    return bg__vk_dispatch(vc, op, op, spec, 1, b, nb, pc, bg__vk_stride_groups(vc, n), 1, 1);
}

int bg__vk_op_fill(bg_compute *c, bg_tview x, float value, int n)
{
    bg_vk_bind b[1] = {bind(x, (size_t)n)};
    bg_vk_pc pc = {.i = {n}, .f = {value}};
    return stride(VC(c), "fill", b, 1, &pc, (size_t)n);
}

int bg__vk_op_axpy(bg_compute *c, bg_tview y, bg_tview x, float alpha, int n)
{
    bg_vk_bind b[2] = {bind(y, (size_t)n), bind(x, (size_t)n)};
    bg_vk_pc pc = {.i = {n}, .f = {alpha}};
    return stride(VC(c), "axpy", b, 2, &pc, (size_t)n);
}

int bg__vk_op_embed_backward(bg_compute *c, bg_tview dtable, bg_tview dout, bg_tview tokens, int T,
                             int dim)
{
    bg_vk_compute *vc = VC(c);
    size_t rows, room;
    int rc = bg__vk_table_rows(vc, "embed_backward", dtable, dim, &rows, &room);
    if (rc == BG_OK)
        rc = bg__vk_ids_ok(vc, "embed_backward", tokens, T, rows);
    if (rc != BG_OK)
        return rc;
    uint32_t spec[2] = {vc->wg, bg__vk_ceil_div((size_t)dim, vc->wg)};
    /* one dispatch per chunk of table rows; chunks touch disjoint rows */
    for (size_t r0 = 0; r0 < rows; r0 += room) {
        size_t nr = rows - r0 < room ? rows - r0 : (size_t)room;
        bg_vk_bind b[3] = {bind(bg__vk_at(dtable, r0 * dim), nr * dim), bind(dout, (size_t)T * dim),
                           bind(tokens, (size_t)T)};
        bg_vk_pc pc = {.i = {T, dim, (int32_t)nr, 0, 0, 0, (int32_t)r0}};
        uint32_t groups = T > (int)BG_VK_MAX_GROUPS ? BG_VK_MAX_GROUPS : (uint32_t)T;
        rc = bg__vk_dispatch(vc, "embed_backward", "embed_bw", spec, 2, b, 3, &pc, groups, 1, 1);
        if (rc != BG_OK)
            return rc;
    }
    return BG_OK;
}

int bg__vk_op_rmsnorm_backward(bg_compute *c, bg_tview dx, bg_tview dw, bg_tview dout, bg_tview x,
                               bg_tview w, int T, int n, float eps)
{
    bg_vk_compute *vc = VC(c);
    bg_tview rs;
    int rc = bg__vk_scratch(vc, (size_t)T, "rmsnorm_backward", &rs);
    if (rc != BG_OK)
        return rc;
    size_t tn = (size_t)T * n;
    bg_vk_bind b[5] = {bind(dx, tn), bind(dout, tn), bind(x, tn), bind(w, (size_t)n),
                       bind(rs, (size_t)T)};
    bg_vk_pc pc = {.i = {T, n}, .f = {eps}};
    rc = bg__vk_per_row(vc, "rmsnorm_bw", b, 5, &pc, T);
    if (rc != BG_OK)
        return rc;
    bg__vk_barrier(vc); /* rs[] is read below */
    bg_vk_bind bw[4] = {bind(dw, (size_t)n), bind(dout, tn), bind(x, tn), bind(rs, (size_t)T)};
    bg_vk_pc pw = {.i = {T, n}};
    return stride(vc, "rmsnorm_bw_w", bw, 4, &pw, (size_t)n);
}

#define BG_VK_SPLIT_MAX 64

/* out[M,N] (+)= A[M,K] · B[N,K]^T, A stored [K,M] when ta, B stored [K,N]
 * when tb (shaders/gemm.comp): the big-GEMM tile from vc->gemm_big outputs
 * on when it still gives vc->gemm_groups workgroups, else the matmul tile;
 * split into S slices of K (summed in order by gemm_reduce.comp) when the
 * grid would have fewer than vc->gemm_groups workgroups and K is long
 * enough. */
static int gemm(bg_vk_compute *vc, const char *op, bg_tview out, bg_tview a, bg_tview b, int M,
                int N, int K, int ta, int tb, int accumulate)
{
    const uint32_t mm[5] = {vc->mm_tx, vc->mm_ty, vc->mm_bk, vc->mm_rm, vc->mm_rn};
    const uint32_t *g = vc->gb_tile;
    /* the big tile when the output is large and its grid alone still fills
     * the device (8192 x 288 outputs make 192 tiles of 128 x 128 but 640 of
     * 64 x 64) */
    uint64_t big_tiles =
        (uint64_t)bg__vk_ceil_div((size_t)N, g[4] * g[0]) * bg__vk_ceil_div((size_t)M, g[3] * g[1]);
    int big = (size_t)M * N >= vc->gemm_big && big_tiles >= vc->gemm_groups;
    const uint32_t *t = big ? g : mm;
    uint32_t bm = t[3] * t[1], bn = t[4] * t[0];
    uint32_t gx = bg__vk_ceil_div((size_t)N, bn), gy = bg__vk_ceil_div((size_t)M, bm);
    uint32_t spec[7] = {t[0], t[1], t[2], t[3], t[4], (uint32_t)ta, (uint32_t)tb};
    size_t mn = (size_t)M * N;
    uint64_t tiles = (uint64_t)gx * gy;
    uint32_t S = 1;
    if (vc->gemm_groups && tiles < vc->gemm_groups) {
        S = (uint32_t)((vc->gemm_groups + tiles - 1) / tiles);
        uint32_t most = (uint32_t)K / vc->gemm_split_k;
        S = S < most ? S : most;
        S = S < BG_VK_SPLIT_MAX ? S : BG_VK_SPLIT_MAX;
        while (S > 1 && (uint64_t)S * mn * 4 > vc->dev.caps.max_storage_range / 2)
            S--;
        S = S ? S : 1;
    }
    uint32_t kc = (uint32_t)K;
    if (S > 1) { /* slices of whole BK steps */
        kc = bg__vk_ceil_div(bg__vk_ceil_div((size_t)K, S), t[2]) * t[2];
        S = bg__vk_ceil_div((size_t)K, kc);
    }
    bg_vk_bind bd[4] = {bind(out, mn), bind(a, (size_t)M * K), bind(b, (size_t)N * K),
                        bind(out, 0)};
    bg_vk_pc pc = {.i = {M, N, K, accumulate, 0, (int32_t)S, (int32_t)kc}};
    if (S == 1)
        return bg__vk_dispatch(vc, op, "gemm", spec, 7, bd, 4, &pc, gx, gy, 1);
    bg_tview part;
    int rc = bg__vk_scratch(vc, S * mn, op, &part);
    if (rc != BG_OK)
        return rc;
    bd[3] = bind(part, S * mn);
    rc = bg__vk_dispatch(vc, op, "gemm", spec, 7, bd, 4, &pc, gx, gy, S);
    if (rc != BG_OK)
        return rc;
    bg__vk_barrier(vc); /* the slices are read below */
    bg_vk_bind br[2] = {bind(out, mn), bind(part, S * mn)};
    bg_vk_pc pr = {.i = {(int32_t)mn, 0, 0, accumulate, 0, (int32_t)S}};
    uint32_t rspec[1] = {vc->wg};
    return bg__vk_dispatch(vc, op, "gemm_reduce", rspec, 1, br, 2, &pr,
                           bg__vk_stride_groups(vc, mn), 1, 1);
}

int bg__vk_op_matmul_backward_x(bg_compute *c, bg_tview dx, bg_tview dy, bg_tview w, int M, int N,
                                int K, int accumulate)
{
    /* dx[M,K] = dy[M,N] · w[N,K]: A = dy, B = w read as [N(reduced), K] */
    return gemm(VC(c), "matmul_backward_x", dx, dy, w, M, K, N, 0, 1, accumulate);
}

int bg__vk_op_matmul_backward_w(bg_compute *c, bg_tview dw, bg_tview dy, bg_tview x, int M, int N,
                                int K)
{
    /* dw[N,K] += dy^T · x: A = dy read as [M(reduced), N], B = x as [M, K] */
    return gemm(VC(c), "matmul_backward_w", dw, dy, x, N, K, M, 1, 1, 1);
}

int bg__vk_op_attention_backward(bg_compute *c, bg_tview dq, bg_tview dk, bg_tview dv,
                                 bg_tview dout, bg_tview q, bg_tview k, bg_tview v, bg_tview out,
                                 bg_tview lse, int B, int T, int nh, int nkv, int hs)
{
    bg_vk_compute *vc = VC(c);
    /* shared floats per invocation: q and dout rows + S + the reduction;
     * k and v rows + P + S */
    uint32_t rd = bg__vk_attention_rd(vc, "attention_backward", hs, 2, 2);
    if (!rd)
        return vc->base.poison_err.code;
    size_t rows = (size_t)B * T, qn = rows * nh * hs, kvn = rows * nkv * hs;
    bg_tview D;
    int rc = bg__vk_scratch(vc, rows * nh, "attention_backward", &D);
    if (rc != BG_OK)
        return rc;
    uint32_t spec[2] = {vc->attn_wg, rd};
    bg_vk_pc pc = {.i = {T, 0, nh, nkv, hs}};
    bg_vk_bind bq[8] = {bind(dq, qn), bind(dout, qn), bind(q, qn),          bind(k, kvn),
                        bind(v, kvn), bind(out, qn),  bind(lse, rows * nh), bind(D, rows * nh)};
    rc = bg__vk_dispatch(vc, "attention_backward", "attention_bw_q", spec, 2, bq, 8, &pc,
                         (uint32_t)nh, (uint32_t)T, (uint32_t)B);
    if (rc != BG_OK)
        return rc;
    bg__vk_barrier(vc); /* D is read below */
    bg_vk_bind bk[8] = {bind(dk, kvn), bind(dv, kvn), bind(dout, qn),       bind(q, qn),
                        bind(k, kvn),  bind(v, kvn),  bind(lse, rows * nh), bind(D, rows * nh)};
    return bg__vk_dispatch(vc, "attention_backward", "attention_bw_kv", spec, 2, bk, 8, &pc,
                           (uint32_t)nkv, (uint32_t)T, (uint32_t)B);
}

int bg__vk_op_swiglu_backward(bg_compute *c, bg_tview dh, bg_tview dg, bg_tview dout, bg_tview h,
                              bg_tview g, int n)
{
    size_t nn = (size_t)n;
    bg_vk_bind b[5] = {bind(dh, nn), bind(dg, nn), bind(dout, nn), bind(h, nn), bind(g, nn)};
    bg_vk_pc pc = {.i = {n}};
    return stride(VC(c), "swiglu_bw", b, 5, &pc, nn);
}

int bg__vk_op_xent(bg_compute *c, bg_tview lp, bg_tview dlogits, bg_tview logits, bg_tview targets,
                   bg_tview weights, int T, int V)
{
    bg_vk_compute *vc = VC(c);
    int rc = bg__vk_ids_ok(vc, "xent", targets, T, (size_t)V);
    if (rc != BG_OK)
        return rc;
    size_t tv = (size_t)T * V;
    bg_vk_bind b[5] = {bind(dlogits, tv), bind(lp, (size_t)T), bind(logits, tv),
                       bind(targets, (size_t)T), bind(weights, (size_t)T)};
    bg_vk_pc pc = {.i = {T, V}};
    return bg__vk_per_row(vc, "xent", b, 5, &pc, T);
}

#define BG_VK_SUMSQ_GROUPS 256u /* partials of stage 1, at most */

int bg__vk_op_sumsq(bg_compute *c, bg_tview out, bg_tview x, int n)
{
    bg_vk_compute *vc = VC(c);
    uint32_t groups = bg__vk_ceil_div((size_t)n, vc->wg);
    if (groups > BG_VK_SUMSQ_GROUPS)
        groups = BG_VK_SUMSQ_GROUPS;
    bg_tview part;
    int rc = bg__vk_scratch(vc, groups, "sumsq", &part);
    if (rc != BG_OK)
        return rc;
    uint32_t spec[1] = {vc->wg};
    bg_vk_bind b1[2] = {bind(part, groups), bind(x, (size_t)n)};
    bg_vk_pc p1 = {.i = {n, 0, 1}};
    rc = bg__vk_dispatch(vc, "sumsq", "sumsq", spec, 1, b1, 2, &p1, groups, 1, 1);
    if (rc != BG_OK)
        return rc;
    bg__vk_barrier(vc); /* the partials are read below */
    bg_vk_bind b2[2] = {bind(out, 1), bind(part, groups)};
    bg_vk_pc p2 = {.i = {(int32_t)groups, 0, 0}};
    return bg__vk_dispatch(vc, "sumsq", "sumsq", spec, 1, b2, 2, &p2, 1, 1, 1);
}

int bg__vk_op_adamw(bg_compute *c, bg_tview p, bg_tview g, bg_tview m, bg_tview v, bg_tview gsq,
                    int n_gsq, int n, const bg_adamw_params *hp)
{
    bg_vk_compute *vc = VC(c);
    size_t nn = (size_t)n;
    /* bias corrections in double on the host, as the reference computes them */
    double bc1 = 1.0 - pow(hp->beta1, hp->step), bc2 = 1.0 - pow(hp->beta2, hp->step);
    int clip = hp->max_norm > 0.0f && n_gsq > 0;
    bg_vk_bind b[5] = {bind(p, nn), bind(g, nn), bind(m, nn), bind(v, nn),
                       clip ? bind(gsq, (size_t)n_gsq) : bind(p, 0)};
    bg_vk_pc pc = {.i = {n, clip ? n_gsq : 0},
                   .f = {hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay, (float)bc1,
                         (float)bc2, hp->max_norm}};
    return stride(vc, "adamw", b, 5, &pc, nn);
}
