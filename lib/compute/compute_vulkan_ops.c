/*
 * compute_vulkan_ops.c — each op of compute.h as Vulkan dispatches: which
 * views bind to which slots (and how many elements each may touch), the push
 * constants and the grid. Semantics are compute.h's; the kernels are
 * shaders/<op>.comp (their headers document the push-constant slots).
 *
 * Tensors larger than maxStorageBufferRange (128 MiB on lavapipe) are split
 * where the op allows it cheaply: matmul by rows of w (columns of out),
 * embed by rows of the table. Other ops reject such a view with BG_ELIMIT
 * (activations of that size do not occur in the models we run).
 *
 * Ids (embed's tokens, and the training ops' through bg__vk_ids_ok) are
 * checked at record time against the table, as the CPU backend checks
 * them: a bad id poisons the recording with the CPU's message.
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

/* Columns [n0, n0+nc) of out = x · w^T: w rows n0.., out row stride N. */
static int matmul_part(bg_vk_compute *vc, bg_tview out, bg_tview x, bg_tview w, int M, int n0,
                       int nc, int N, int K)
{
    bg_vk_bind b[3] = {bg__vk_bind(bg__vk_at(out, (size_t)n0), (size_t)(M - 1) * N + nc),
                       bg__vk_bind(x, (size_t)M * K),
                       bg__vk_bind(bg__vk_at(w, (size_t)n0 * K), (size_t)nc * K)};
    bg_vk_pc pc = {.i = {M, nc, K, 0, N}};
    if (M == 1) { /* one token: memory-bound matvec */
        /* vec4 loads when K and both views' offsets are multiples of 4 */
        uint32_t vec4 = K % 4 == 0 && x.off % 4 == 0 && w.off % 4 == 0;
        if (vc->mv_subgroup) { /* a subgroup per row, grid-stride over rows */
            uint32_t sgs = vc->dev.caps.subgroup_size ? vc->dev.caps.subgroup_size : 32;
            uint32_t per = vc->mv_wg > sgs ? vc->mv_wg / sgs : 1;
            uint32_t groups = bg__vk_ceil_div((size_t)nc, per);
            pc.i[3] = (int32_t)(groups > BG_VK_MAX_GROUPS ? BG_VK_MAX_GROUPS : groups);
            uint32_t spec[2] = {vc->mv_wg, vec4};
            return bg__vk_dispatch(vc, "matvec_sg", "matvec_sg", spec, 2, b, 3, &pc,
                                   (uint32_t)pc.i[3], 1, 1);
        }
        /* lanes per row: the most (up to mv_lanes) that still read >= 2 each */
        uint32_t kv = vec4 ? (uint32_t)K / 4 : (uint32_t)K, lpr = vc->mv_lanes;
        while (lpr > 4 && lpr * 2 > kv)
            lpr /= 2;
        uint32_t spec[3] = {vc->mv_wg, vc->mv_wg / lpr, vec4};
        uint32_t groups = bg__vk_ceil_div((size_t)nc, spec[1]), gx = groups, gz = 1;
        if (gx > BG_VK_MAX_GROUPS) {
            gx = BG_VK_MAX_GROUPS;
            gz = bg__vk_ceil_div(groups, gx);
        }
        pc.i[3] = (int32_t)gx;
        return bg__vk_dispatch(vc, "matvec", "matvec", spec, 3, b, 3, &pc, gx, 1, gz);
    }
    uint32_t spec[5] = {vc->mm_tx, vc->mm_ty, vc->mm_bk, vc->mm_rm, vc->mm_rn};
    uint32_t bm = vc->mm_rm * vc->mm_ty, bn = vc->mm_rn * vc->mm_tx;
    uint32_t gy = bg__vk_ceil_div((size_t)M, bm);
    if (gy > vc->dev.caps.max_wg_count[1])
        return bg__vk_fail(vc, BG_ELIMIT, "vulkan op matmul: M=%d needs %u row tiles; at most %u",
                           M, gy, vc->dev.caps.max_wg_count[1]);
    return bg__vk_dispatch(vc, "matmul", "matmul", spec, 5, b, 3, &pc,
                           bg__vk_ceil_div((size_t)nc, bn), gy, 1);
}

int bg__vk_op_matmul(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int M, int N, int K)
{
    bg_vk_compute *vc = VC(c);
    const bg_vk_caps *caps = &vc->dev.caps;
    /* Rows of w per dispatch so that its view (plus alignment slack) fits one
     * descriptor range; a multiple of the matmul tile when it can be. */
    uint64_t room = (caps->max_storage_range - caps->storage_align) / ((uint64_t)K * 4);
    if (room == 0)
        return bg__vk_fail(vc, BG_ELIMIT,
                           "vulkan op matmul: one row of w (K=%d floats) exceeds "
                           "maxStorageBufferRange %llu bytes",
                           K, (unsigned long long)caps->max_storage_range);
    uint64_t tile = (uint64_t)vc->mm_rn * vc->mm_tx;
    if (room > tile)
        room -= room % tile;
    int chunk = room < (uint64_t)N ? (int)room : N;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int nc = N - n0 < chunk ? N - n0 : chunk;
        int rc = matmul_part(vc, out, x, w, M, n0, nc, N, K);
        if (rc != BG_OK)
            return rc;
    }
    return BG_OK;
}

/* One workgroup per row: rmsnorm, softmax, logsoftmax_gather, xent. */
int bg__vk_per_row(bg_vk_compute *vc, const char *op, const bg_vk_bind *b, int nb, bg_vk_pc *pc,
                   int rows)
{
    uint32_t spec[1] = {vc->wg};
    if ((uint32_t)rows > vc->dev.caps.max_wg_count[0])
        return bg__vk_fail(vc, BG_ELIMIT, "vulkan op %s: %d rows; at most %u per dispatch", op,
                           rows, vc->dev.caps.max_wg_count[0]);
    return bg__vk_dispatch(vc, op, op, spec, 1, b, nb, pc, (uint32_t)rows, 1, 1);
}

int bg__vk_op_rmsnorm(bg_compute *c, bg_tview out, bg_tview x, bg_tview w, int T, int n, float eps)
{
    size_t tn = (size_t)T * n;
    bg_vk_bind b[3] = {bg__vk_bind(out, tn), bg__vk_bind(x, tn), bg__vk_bind(w, (size_t)n)};
    bg_vk_pc pc = {.i = {T, n}, .f = {eps}};
    return bg__vk_per_row(VC(c), "rmsnorm", b, 3, &pc, T);
}

int bg__vk_op_softmax(bg_compute *c, bg_tview x, int rows, int n)
{
    bg_vk_bind b[1] = {bg__vk_bind(x, (size_t)rows * n)};
    bg_vk_pc pc = {.i = {rows, n}};
    return bg__vk_per_row(VC(c), "softmax", b, 1, &pc, rows);
}

int bg__vk_op_logsoftmax_gather(bg_compute *c, bg_tview out, bg_tview logits, bg_tview targets,
                                int T, int V)
{
    int rc = bg__vk_ids_ok(VC(c), "logsoftmax_gather", targets, T, (size_t)V);
    if (rc != BG_OK)
        return rc;
    bg_vk_bind b[3] = {bg__vk_bind(out, (size_t)T), bg__vk_bind(logits, (size_t)T * V),
                       bg__vk_bind(targets, (size_t)T)};
    bg_vk_pc pc = {.i = {T, V}};
    return bg__vk_per_row(VC(c), "logsoftmax_gather", b, 3, &pc, T);
}

/* The table freq[i] = 1 / 10000^(2i/hs), i < hs/2, computed as llama2.c does
 * so that GPU angles equal the CPU's bit for bit; cached per head size. */
static int rope_table(bg_vk_compute *vc, int hs, bg_tview *out)
{
    for (int i = 0; i < vc->nrope; i++) {
        if (vc->rope[i].hs == hs) {
            *out = (bg_tview){(bg_cbuf *)vc->rope[i].buf, 0};
            return BG_OK;
        }
    }
    if (vc->nrope == (int)(sizeof(vc->rope) / sizeof(vc->rope[0])))
        return bg__vk_fail(vc, BG_ELIMIT, "vulkan op rope: more than %d head sizes in use",
                           vc->nrope);
    float *f = malloc((size_t)hs / 2 * sizeof(*f));
    if (!f)
        return bg__vk_fail(vc, BG_ENOMEM, "vulkan op rope: out of host memory");
    for (int i = 0; i < hs; i += 2)
        f[i / 2] = 1.0f / powf(10000.0f, (float)i / (float)hs);
    bg_cbuf *b = NULL;
    bg_err err;
    int rc = vc->base.vt->buf_create(&vc->base, (size_t)hs / 2 * sizeof(*f), &b, &err);
    /* our own buffer, not yet read by any recorded work: writable now */
    if (rc == BG_OK)
        rc = vc->base.vt->buf_write(&vc->base, b, 0, f, (size_t)hs / 2 * sizeof(*f), &err);
    free(f);
    if (rc != BG_OK)
        return bg__vk_fail(vc, rc, "vulkan op rope: frequency table: %s", err.msg);
    vc->rope[vc->nrope].hs = hs;
    vc->rope[vc->nrope++].buf = (bg_vk_buf *)b;
    *out = (bg_tview){b, 0};
    return BG_OK;
}

/* The rotation (back = 0) or its transpose, the backward (back = 1). */
static int rope_dir(bg_compute *c, const char *op, bg_tview q, bg_tview k, int T, int pos0, int nh,
                    int nkv, int hs, int back)
{
    bg_vk_compute *vc = VC(c);
    bg_tview freq = {NULL, 0};
    int rc = rope_table(vc, hs, &freq);
    if (rc != BG_OK)
        return rc;
    bg_vk_bind b[3] = {bg__vk_bind(q, (size_t)T * nh * hs), bg__vk_bind(k, (size_t)T * nkv * hs),
                       bg__vk_bind(freq, (size_t)hs / 2)};
    bg_vk_pc pc = {.i = {T, pos0, nh, nkv, hs, back}};
    uint32_t spec[1] = {vc->wg};
    size_t pairs = (size_t)T * (size_t)(nh + nkv) * (size_t)hs / 2;
    return bg__vk_dispatch(vc, op, "rope", spec, 1, b, 3, &pc, bg__vk_stride_groups(vc, pairs), 1,
                           1);
}

int bg__vk_op_rope(bg_compute *c, bg_tview q, bg_tview k, int T, int pos0, int nh, int nkv, int hs)
{
    return rope_dir(c, "rope", q, k, T, pos0, nh, nkv, hs, 0);
}

int bg__vk_op_rope_backward(bg_compute *c, bg_tview dq, bg_tview dk, int T, int pos0, int nh,
                            int nkv, int hs)
{
    return rope_dir(c, "rope_backward", dq, dk, T, pos0, nh, nkv, hs, 1);
}

uint32_t bg__vk_attention_rd(bg_vk_compute *vc, const char *op, int hs, uint32_t per_rd,
                             uint32_t fixed)
{
    uint32_t rd = bg__vk_ceil_div((size_t)hs, vc->attn_wg);
    uint64_t need = 4ull * (rd * per_rd + fixed) * vc->attn_wg;
    if (need > vc->dev.caps.shared_mem_bytes) {
        bg__vk_fail(vc, BG_EUNSUPPORTED,
                    "vulkan op %s: head_size %d needs %llu bytes of shared memory; the device "
                    "has %u",
                    op, hs, (unsigned long long)need, vc->dev.caps.shared_mem_bytes);
        return 0;
    }
    return rd;
}

int bg__vk_op_attention(bg_compute *c, bg_tview out, bg_tview q, bg_tview kc, bg_tview vcache,
                        int T, int pos0, int nh, int nkv, int hs, int seq_len)
{
    bg_vk_compute *vc = VC(c);
    (void)seq_len; /* compute.c checked pos0 + T <= seq_len; only rows < pos0+T are read */
    uint32_t rd = bg__vk_attention_rd(vc, "attention", hs, 1, 2);
    if (!rd)
        return vc->base.poison_err.code;
    size_t qn = (size_t)T * nh * hs, kvn = (size_t)(pos0 + T) * nkv * hs;
    bg_vk_bind b[4] = {bg__vk_bind(out, qn), bg__vk_bind(q, qn), bg__vk_bind(kc, kvn),
                       bg__vk_bind(vcache, kvn)};
    bg_vk_pc pc = {.i = {T, pos0, nh, nkv, hs}};
    uint32_t spec[2] = {vc->attn_wg, rd};
    return bg__vk_dispatch(vc, "attention", "attention", spec, 2, b, 4, &pc, (uint32_t)nh,
                           (uint32_t)T, 1);
}

int bg__vk_op_attention_train(bg_compute *c, bg_tview out, bg_tview lse, bg_tview q, bg_tview k,
                              bg_tview v, int B, int T, int nh, int nkv, int hs)
{
    bg_vk_compute *vc = VC(c);
    uint32_t rd = bg__vk_attention_rd(vc, "attention_train", hs, 1, 2);
    if (!rd)
        return vc->base.poison_err.code;
    size_t rows = (size_t)B * T;
    bg_vk_bind b[5] = {bg__vk_bind(out, rows * nh * hs), bg__vk_bind(q, rows * nh * hs),
                       bg__vk_bind(k, rows * nkv * hs), bg__vk_bind(v, rows * nkv * hs),
                       bg__vk_bind(lse, rows * nh)};
    bg_vk_pc pc = {.i = {T, 0, nh, nkv, hs, 1}};
    uint32_t spec[2] = {vc->attn_wg, rd};
    return bg__vk_dispatch(vc, "attention_train", "attention", spec, 2, b, 5, &pc, (uint32_t)nh,
                           (uint32_t)T, (uint32_t)B);
}

/* dst-op-src over n elements with a grid-stride kernel: swiglu, add, copy. */
static int elementwise(bg_compute *c, const char *op, bg_tview dst, bg_tview src, int n)
{
    bg_vk_compute *vc = VC(c);
    bg_vk_bind b[2] = {bg__vk_bind(dst, (size_t)n), bg__vk_bind(src, (size_t)n)};
    bg_vk_pc pc = {.i = {n}};
    uint32_t spec[1] = {vc->wg};
    return bg__vk_dispatch(vc, op, op, spec, 1, b, 2, &pc, bg__vk_stride_groups(vc, (size_t)n), 1,
                           1);
}

int bg__vk_op_swiglu(bg_compute *c, bg_tview h, bg_tview g, int n)
{
    return elementwise(c, "swiglu", h, g, n);
}

int bg__vk_op_add(bg_compute *c, bg_tview x, bg_tview y, int n)
{
    return elementwise(c, "add", x, y, n);
}

int bg__vk_op_copy(bg_compute *c, bg_tview dst, bg_tview src, int n)
{
    return elementwise(c, "copy", dst, src, n);
}

int bg__vk_table_rows(bg_vk_compute *vc, const char *op, bg_tview table, int dim, size_t *rows,
                      size_t *room)
{
    const bg_vk_caps *caps = &vc->dev.caps;
    const bg_vk_buf *tb = (const bg_vk_buf *)table.buf;
    size_t elems = tb->bytes / 4;
    size_t r = table.off < elems ? (elems - table.off) / (size_t)dim : 0;
    uint64_t fit = (caps->max_storage_range - caps->storage_align) / ((uint64_t)dim * 4);
    if (fit == 0)
        return bg__vk_fail(vc, BG_ELIMIT,
                           "vulkan op %s: a row of %d floats exceeds maxStorageBufferRange", op,
                           dim);
    *rows = r > INT32_MAX ? INT32_MAX : r;
    *room = fit > INT32_MAX ? INT32_MAX : (size_t)fit;
    return BG_OK;
}

/* vk_backend.h. The view's bounds are checked here (bg__vk_dispatch checks
 * them again when binding). */
int bg__vk_ids_ok(bg_vk_compute *vc, const char *op, bg_tview ids, int n, size_t limit)
{
    bg_vk_buf *b = (bg_vk_buf *)ids.buf;
    if (ids.off > b->bytes / 4 || (size_t)n > b->bytes / 4 - ids.off)
        return bg__vk_fail(vc, BG_EINVAL,
                           "vulkan op %s: ids [%zu, %zu+%d) exceed their buffer of %zu "
                           "elements",
                           op, ids.off, ids.off, n, b->bytes / 4);
    int32_t *v = malloc((size_t)n * sizeof(*v));
    if (!v)
        return bg__vk_fail(vc, BG_ENOMEM, "vulkan op %s: out of host memory", op);
    bg_err err;
    int rc = bg__vk_buf_ready(vc, b, &err); /* never written: zeros, not stale data */
    if (rc == BG_OK)
        rc = bg__vk_mem_read(&vc->mem, &b->a, (VkDeviceSize)ids.off * 4, v, (size_t)n * 4, &err);
    if (rc != BG_OK) {
        free(v);
        return bg__vk_fail(vc, rc, "vulkan op %s: reading the ids: %s", op, err.msg);
    }
    for (int i = 0; i < n && rc == BG_OK; i++)
        if (v[i] < 0 || (size_t)v[i] >= limit)
            rc = bg__vk_fail(vc, BG_EINVAL,
                             "compute op %s: id %d at row %d out of range; expected 0..%zu", op,
                             (int)v[i], i, limit - 1);
    free(v);
    return rc;
}

int bg__vk_op_embed(bg_compute *c, bg_tview out, bg_tview table, bg_tview tokens, int T, int dim)
{
    bg_vk_compute *vc = VC(c);
    size_t rows, room;
    int rc = bg__vk_table_rows(vc, "embed", table, dim, &rows, &room);
    if (rc == BG_OK) /* a bad id is the caller's error, as on the CPU: never a row of zeros */
        rc = bg__vk_ids_ok(vc, "embed", tokens, T, rows);
    if (rc != BG_OK)
        return rc;
    uint32_t spec[1] = {vc->wg};
    size_t r0 = 0;
    do { /* one dispatch per table chunk; chunks write disjoint output rows */
        size_t nr = rows - r0 < room ? rows - r0 : (size_t)room;
        bg_vk_bind b[3] = {bg__vk_bind(out, (size_t)T * dim),
                           bg__vk_bind(bg__vk_at(table, r0 * dim), nr * dim),
                           bg__vk_bind(tokens, (size_t)T)};
        bg_vk_pc pc = {.i = {T, dim, 0, 0, (int32_t)rows, (int32_t)nr, (int32_t)r0, r0 == 0}};
        rc = bg__vk_dispatch(vc, "embed", "embed", spec, 1, b, 3, &pc,
                             bg__vk_stride_groups(vc, (size_t)T * dim), 1, 1);
        if (rc != BG_OK)
            return rc;
        r0 += nr;
    } while (r0 < rows);
    return BG_OK;
}
