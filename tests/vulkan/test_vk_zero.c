/*
 * test_vk_zero.c — zero-on-request of the Vulkan backend's buffers
 * (vk_backend.h, bg__vk_buf_ready): a buffer is not filled at create; it
 * reads as zeros wherever nothing wrote it, and a buffer uploaded whole
 * reads exactly the uploaded bytes. Each new buffer below is cut from the
 * memory of a freed one that held a 0xA5 pattern (an anchor keeps the
 * block alive, so first-fit hands the same range out again), so stale data
 * would show:
 *   1. scratch: a new buffer read back is all zeros;
 *   2. upload: a new buffer written whole reads exactly those bytes (and
 *      its size is not a multiple of 16: the allocation's rounding tail);
 *   3. partial write: the written bytes, zeros around them;
 *   4. a kernel's input: a new buffer never written, as x of x += y, gives
 *      y exactly (the dispatch zeroes it before the recording runs);
 *   5. an op's output only: y copied into a new buffer reads y.
 * Run twice by ctest: mapped memory (lavapipe's, a memset) and with
 * BG_VK_FORCE_STAGING=1 (device-local memory, a vkCmdFillBuffer).
 * Skipped (77) with the reason when no Vulkan device exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_test_util.h"

#define N 4099 /* floats: not a multiple of 4 */

/* A new buffer of n floats in the range a freed one filled with 0xA5. */
static bg_cbuf *stale_buf(bg_compute *c, size_t n)
{
    bg_err err;
    bg_cbuf *old, *b;
    unsigned char *pat = malloc(n * 4);
    CHECK(pat != NULL);
    memset(pat, 0xA5, n * 4);
    CHECK(bg_cbuf_create(c, n * 4, &old, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_write(c, old, 0, pat, n * 4, &err) == BG_OK, "%s", err.msg);
    bg_cbuf_destroy(c, old);
    free(pat);
    CHECK(bg_cbuf_create(c, n * 4, &b, &err) == BG_OK, "%s", err.msg);
    return b;
}

static int all_zero(const float *v, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (v[i] != 0.0f || memcmp(&v[i], &(float){0.0f}, 4) != 0)
            return 0;
    return 1;
}

int main(void)
{
    bg_compute *c = vt_create_or_skip("test_vk_zero");
    bg_err err;
    bg_cbuf *anchor;
    CHECK(bg_cbuf_create(c, 64, &anchor, &err) == BG_OK, "%s", err.msg);
    float *got = malloc(N * 4), *src = malloc(N * 4);
    CHECK(got && src);
    vt_seed(11);
    for (size_t i = 0; i < N; i++)
        src[i] = vt_frand();

    bg_cbuf *s = stale_buf(c, N); /* 1 */
    CHECK(bg_cbuf_read(c, s, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(all_zero(got, 0, N), "a new scratch buffer is not all zeros (got[0] %g)", got[0]);
    bg_cbuf_destroy(c, s);

    bg_cbuf *u = stale_buf(c, N); /* 2 */
    CHECK(bg_cbuf_write(c, u, 0, src, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(c, u, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(got, src, N * 4) == 0, "an uploaded buffer does not read its bytes");
    bg_cbuf_destroy(c, u);

    bg_cbuf *p = stale_buf(c, N); /* 3 */
    CHECK(bg_cbuf_write(c, p, 400, src, 800, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(c, p, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(all_zero(got, 0, 100) && all_zero(got, 300, N), "a partly written buffer: stale bytes");
    CHECK(memcmp(got + 100, src, 800) == 0, "a partly written buffer: wrong bytes");
    bg_cbuf_destroy(c, p);

    bg_cbuf *y, *x = stale_buf(c, N); /* 4 */
    CHECK(bg_cbuf_create(c, N * 4, &y, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_write(c, y, 0, src, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_add(c, (bg_tview){x, 0}, (bg_tview){y, 0}, N);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(c, x, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(got, src, N * 4) == 0, "x += y on a new x is not y (got[0] %g, y[0] %g)", got[0],
          src[0]);
    bg_cbuf_destroy(c, x);

    bg_cbuf *o = stale_buf(c, N); /* 5 */
    CHECK(bg_compute_begin(c, &err) == BG_OK, "%s", err.msg);
    bg_op_copy(c, (bg_tview){o, 0}, (bg_tview){y, 0}, N);
    CHECK(bg_compute_submit(c, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(c, o, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(got, src, N * 4) == 0, "copy into a new buffer is not y");
    bg_cbuf_destroy(c, o);
    bg_cbuf_destroy(c, y);

    bg_cbuf_destroy(c, anchor);
    free(got);
    free(src);
    bg_compute_destroy(c);
    CHECK_DONE("test_vk_zero");
}
