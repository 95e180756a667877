/*
 * test_vk_runtime.c — the Vulkan runtime beyond single kernels. One program,
 * one mode per ctest (each mode creates its backend under its own
 * environment):
 *
 *   chain       1100 dependent dispatches in one recording (many descriptor
 *               pools) equal the host's additions bit for bit; and
 *               a transformer block recorded as ONE command buffer (embed,
 *               rmsnorm, Q/K/V matmuls without barriers between them, rope,
 *               KV-cache copies, attention, Wo, residual, SwiGLU FFN,
 *               classifier, log-softmax+gather, softmax) equals the scalar
 *               reference chain; a view outside its buffer poisons the
 *               recording with a message naming op and view; on lavapipe
 *               (maxStorageBufferRange 128 MiB) a 128 MiB+ view is rejected
 *               with BG_ELIMIT naming the limit, while matmul and embed over
 *               a 128 MiB+ weight are split and still exact; a new buffer
 *               cut from a freed one's memory reads as zeros.
 *   staging     the same chain and a 9 MiB upload/readback with
 *               BG_VK_FORCE_STAGING=1 (device-local memory behind a staging
 *               buffer, as on discrete GPUs without ReBAR); new buffers
 *               zeroed there too (a device-side fill).
 *   readback    the same with BG_VK_FORCE_STAGING=read: memory mapped but
 *               taken as uncached (a discrete GPU's BAR), so writes are a
 *               memcpy and reads over 1 KiB go through the staging buffer;
 *               small reads (direct) and partial reads at odd offsets too;
 *               the debug log shows which reads were staged.
 *   timestamps  BG_VK_TIMESTAMPS=1 logs a per-op table at submit.
 *   smallrange  BG_VK_MAX_RANGE=65536: matmul (tiled and matvec) and embed
 *               split small weights into many views and stay exact; the
 *               chain still passes.
 *   unavail     no loader, no driver, a device index that does not exist,
 *               and lavapipe without the CPU-device permission: each a clear
 *               BG_EUNAVAIL / BG_EINVAL, never a crash; `auto` then picks the
 *               CPU backend.
 *
 * Tolerance of the chain: |vk - ref| <= 1e-4 + 1e-4*|ref| (sums in another
 * order through ~10 ops; kernels alone are within 1e-5, see test_vk_ops).
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_log.h"
#include "compute/compute_ref.h"
#include "vk_test_util.h"

static bg_compute *C;

/* ---- chain ---------------------------------------------------------- */

enum { DIM = 40, HID = 100, NH = 4, NKV = 2, HS = 10, T = 5, POS0 = 3, SEQ = 16, VOC = 70 };
#define KVD (NKV * HS)

typedef struct chain {
    float *table, *rms1, *wq, *wk, *wv, *wo, *rms2, *w1, *w2, *w3, *wcls, *kc, *vcache;
    int32_t tok[T], tgt[T];
} chain;

static float *rv(size_t n, float scale)
{
    float *v = vt_rand_vec(n);
    for (size_t i = 0; i < n; i++)
        v[i] *= scale;
    return v;
}

static void chain_init(chain *m)
{
    m->table = rv(VOC * DIM, 1.0f);
    m->rms1 = rv(DIM, 1.0f);
    m->rms2 = rv(DIM, 1.0f);
    m->wq = rv(DIM * DIM, 0.3f);
    m->wk = rv(KVD * DIM, 0.3f);
    m->wv = rv(KVD * DIM, 0.3f);
    m->wo = rv(DIM * DIM, 0.3f);
    m->w1 = rv(HID * DIM, 0.3f);
    m->w3 = rv(HID * DIM, 0.3f);
    m->w2 = rv(DIM * HID, 0.2f);
    m->wcls = rv(VOC * DIM, 0.3f);
    m->kc = rv(SEQ * KVD, 1.0f); /* rows < POS0 are "earlier tokens" */
    m->vcache = rv(SEQ * KVD, 1.0f);
    for (int t = 0; t < T; t++) {
        m->tok[t] = vt_irand(0, VOC - 1);
        m->tgt[t] = vt_irand(0, VOC - 1);
    }
}

static void chain_free(chain *m)
{
    float **all[] = {&m->table, &m->rms1, &m->wq, &m->wk,   &m->wv, &m->wo,    &m->rms2,
                     &m->w1,    &m->w2,   &m->w3, &m->wcls, &m->kc, &m->vcache};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        free(*all[i]);
}

/* The reference: x (T*DIM), logits softmaxed (T*VOC), lp (T). */
static void chain_ref(const chain *m, float *x, float *probs, float *lp)
{
    static float h[T * DIM], q[T * DIM], k[T * KVD], v[T * KVD], att[T * DIM], o[T * DIM];
    static float a[T * HID], b[T * HID], kc[SEQ * KVD], vc[SEQ * KVD];
    memcpy(kc, m->kc, sizeof(kc));
    memcpy(vc, m->vcache, sizeof(vc));
    bg_ref_embed(x, m->table, m->tok, T, DIM);
    bg_ref_rmsnorm(h, x, m->rms1, T, DIM, 1e-5f);
    bg_ref_matmul(q, h, m->wq, T, DIM, DIM);
    bg_ref_matmul(k, h, m->wk, T, KVD, DIM);
    bg_ref_matmul(v, h, m->wv, T, KVD, DIM);
    bg_ref_rope(q, k, T, POS0, NH, NKV, HS);
    bg_ref_copy(kc + POS0 * KVD, k, T * KVD);
    bg_ref_copy(vc + POS0 * KVD, v, T * KVD);
    bg_ref_attention(att, q, kc, vc, T, POS0, NH, NKV, HS, SEQ);
    bg_ref_matmul(o, att, m->wo, T, DIM, DIM);
    bg_ref_add(x, o, T * DIM);
    bg_ref_rmsnorm(h, x, m->rms2, T, DIM, 1e-5f);
    bg_ref_matmul(a, h, m->w1, T, HID, DIM);
    bg_ref_matmul(b, h, m->w3, T, HID, DIM);
    bg_ref_swiglu(a, b, T * HID);
    bg_ref_matmul(o, a, m->w2, T, DIM, HID);
    bg_ref_add(x, o, T * DIM);
    bg_ref_matmul(probs, x, m->wcls, T, VOC, DIM);
    bg_ref_logsoftmax_gather(lp, probs, m->tgt, T, VOC);
    bg_ref_softmax(probs, T, VOC);
}

static bg_tview up(const void *p, size_t n)
{
    return vt_upload(C, p, (size_t)vt_irand(0, 3), n, 1);
}

static void submit_ok(const char *what)
{
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(C, &err);
    if (rc != BG_OK) {
        fprintf(stderr, "%s: submit: %s\n", what, err.msg);
        bg_test_failures++;
    }
}

static void begin_ok(void)
{
    bg_err err;
    if (bg_compute_begin(C, &err) != BG_OK) {
        fprintf(stderr, "begin: %s\n", err.msg);
        exit(1);
    }
}

static void test_chain(void)
{
    chain m;
    chain_init(&m);
    static float x[T * DIM], probs[T * VOC], lp[T], gx[T * DIM], gp[T * VOC], glp[T];
    chain_ref(&m, x, probs, lp);

    bg_tview table = up(m.table, VOC * DIM), rms1 = up(m.rms1, DIM), rms2 = up(m.rms2, DIM);
    bg_tview wq = up(m.wq, DIM * DIM), wk = up(m.wk, KVD * DIM), wv = up(m.wv, KVD * DIM);
    bg_tview wo = up(m.wo, DIM * DIM), w1 = up(m.w1, HID * DIM), w2 = up(m.w2, DIM * HID);
    bg_tview w3 = up(m.w3, HID * DIM), wcls = up(m.wcls, VOC * DIM);
    bg_tview kc = up(m.kc, SEQ * KVD), vc = up(m.vcache, SEQ * KVD);
    bg_tview tok = up(m.tok, T), tgt = up(m.tgt, T);
    bg_tview vx = up(NULL, T * DIM), h = up(NULL, T * DIM), q = up(NULL, T * DIM);
    bg_tview k = up(NULL, T * KVD), v = up(NULL, T * KVD), att = up(NULL, T * DIM);
    bg_tview o = up(NULL, T * DIM), a = up(NULL, T * HID), b = up(NULL, T * HID);
    bg_tview logits = up(NULL, T * VOC), vlp = up(NULL, T);
    bg_tview kdst = kc, vdst = vc;
    kdst.off += POS0 * KVD;
    vdst.off += POS0 * KVD;

    begin_ok();
    bg_op_embed(C, vx, table, tok, T, DIM);
    bg_compute_barrier(C);
    bg_op_rmsnorm(C, h, vx, rms1, T, DIM, 1e-5f);
    bg_compute_barrier(C);
    bg_op_matmul(C, q, h, wq, T, DIM, DIM); /* Q, K, V: independent, no barrier */
    bg_op_matmul(C, k, h, wk, T, KVD, DIM);
    bg_op_matmul(C, v, h, wv, T, KVD, DIM);
    bg_compute_barrier(C);
    bg_op_rope(C, q, k, T, POS0, NH, NKV, HS);
    bg_compute_barrier(C);
    bg_op_copy(C, kdst, k, T * KVD);
    bg_op_copy(C, vdst, v, T * KVD);
    bg_compute_barrier(C);
    bg_op_attention(C, att, q, kc, vc, T, POS0, NH, NKV, HS, SEQ);
    bg_compute_barrier(C);
    bg_op_matmul(C, o, att, wo, T, DIM, DIM);
    bg_compute_barrier(C);
    bg_op_add(C, vx, o, T * DIM);
    bg_compute_barrier(C);
    bg_op_rmsnorm(C, h, vx, rms2, T, DIM, 1e-5f);
    bg_compute_barrier(C);
    bg_op_matmul(C, a, h, w1, T, HID, DIM); /* W1, W3: independent */
    bg_op_matmul(C, b, h, w3, T, HID, DIM);
    bg_compute_barrier(C);
    bg_op_swiglu(C, a, b, T * HID);
    bg_compute_barrier(C);
    bg_op_matmul(C, o, a, w2, T, DIM, HID);
    bg_compute_barrier(C);
    bg_op_add(C, vx, o, T * DIM);
    bg_compute_barrier(C);
    bg_op_matmul(C, logits, vx, wcls, T, VOC, DIM);
    bg_compute_barrier(C);
    bg_op_logsoftmax_gather(C, vlp, logits, tgt, T, VOC);
    bg_compute_barrier(C); /* softmax overwrites what logsoftmax_gather reads */
    bg_op_softmax(C, logits, T, VOC);
    submit_ok("chain");

    vt_download(C, vx, gx, T * DIM);
    vt_download(C, logits, gp, T * VOC);
    vt_download(C, vlp, glp, T);
    vt_check_close("chain: residual stream x", gx, x, T * DIM, 1e-4, 1e-4);
    vt_check_close("chain: softmax(logits)", gp, probs, T * VOC, 1e-4, 1e-4);
    vt_check_close("chain: log p(target)", glp, lp, T, 1e-4, 1e-4);
    chain_free(&m);
}

/* 1100 dependent dispatches in one recording (several descriptor pools of
 * 256 sets, more ops than timestamp slots): x += y, barrier, repeated; the
 * same IEEE additions in the same order on the host give identical bits. */
static void test_long_recording(void)
{
    enum { N = 333, REPS = 1100 };
    float *x = vt_rand_vec(N), *y = vt_rand_vec(N), got[N];
    bg_tview vx = up(x, N), vy = up(y, N);
    begin_ok();
    for (int r = 0; r < REPS; r++) {
        bg_op_add(C, vx, vy, N);
        bg_compute_barrier(C);
        bg_ref_add(x, y, N);
    }
    submit_ok("long recording");
    vt_download(C, vx, got, N);
    vt_check_close("1100 dependent adds in one recording (exact)", got, x, N, 0, 0);
    bg_cbuf_destroy(C, vx.buf);
    bg_cbuf_destroy(C, vy.buf);
    free(x), free(y);
}

/* An op whose view leaves its buffer poisons the recording. */
static void test_bounds(void)
{
    bg_tview x = vt_upload(C, NULL, 0, 12, 0);
    bg_tview y = x;
    x.off = 10;
    begin_ok();
    bg_op_add(C, x, y, 5); /* x covers [10, 15) of 12 elements */
    bg_op_copy(C, y, y, 1);
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(C, &err);
    printf("  out-of-buffer view: %s: %s\n", bg_err_name(rc), err.msg);
    CHECK(rc == BG_EINVAL);
    CHECK(strstr(err.msg, "add") != NULL && strstr(err.msg, "exceeds its buffer") != NULL);
    begin_ok(); /* the next recording starts clean */
    bg_op_copy(C, y, y, 1);
    submit_ok("after poison");
}

static int on_lavapipe(void)
{
    return strstr(bg_compute_describe(C), "llvmpipe") != NULL;
}

/* out = x · w^T through the device weight view vw (host copy w) vs the
 * reference, for a random x of M rows. */
static void check_matmul_w(bg_tview vw, const float *w, int M, int N, int K, double atol,
                           const char *what)
{
    float *x = vt_rand_vec((size_t)M * K), *want = malloc((size_t)M * N * 4);
    float *got = malloc((size_t)M * N * 4);
    bg_ref_matmul(want, x, w, M, N, K);
    bg_tview vx = up(x, (size_t)M * K), vo = up(NULL, (size_t)M * N);
    begin_ok();
    bg_op_matmul(C, vo, vx, vw, M, N, K);
    submit_ok(what);
    vt_download(C, vo, got, (size_t)M * N);
    vt_check_close(what, got, want, (size_t)M * N, atol, 1e-4);
    bg_cbuf_destroy(C, vx.buf);
    bg_cbuf_destroy(C, vo.buf);
    free(x), free(want), free(got);
}

/* The rows tok[0..n) of the table view (host copy w, rows of K): exact. */
static void check_embed_w(bg_tview table, const float *w, const int32_t *tok, int n, int K,
                          const char *what)
{
    float *want = malloc((size_t)n * K * 4), *got = malloc((size_t)n * K * 4);
    bg_ref_embed(want, w, tok, n, K);
    bg_tview vt = up(tok, (size_t)n), vo = up(NULL, (size_t)n * K);
    begin_ok();
    bg_op_embed(C, vo, table, vt, n, K);
    submit_ok(what);
    vt_download(C, vo, got, (size_t)n * K);
    vt_check_close(what, got, want, (size_t)n * K, 0, 0);
    bg_cbuf_destroy(C, vt.buf);
    bg_cbuf_destroy(C, vo.buf);
    free(want), free(got);
}

/* maxStorageBufferRange (128 MiB on lavapipe): reject, or split where the op
 * can (matmul by rows of w, embed by rows of the table). */
static void test_range(void)
{
    if (!on_lavapipe()) {
        printf("  range tests: skipped (limits known only for lavapipe)\n");
        return;
    }
    const int K = 1024, N = 32800; /* w = 134.3 MB > 128 MiB */
    size_t nw = (size_t)N * K;
    bg_tview big = vt_upload(C, NULL, 0, nw, 0);
    begin_ok();
    bg_op_add(C, big, big, (int)nw);
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_submit(C, &err);
    printf("  add over %zu bytes: %s: %s\n", nw * 4, bg_err_name(rc), err.msg);
    CHECK(rc == BG_ELIMIT && strstr(err.msg, "maxStorageBufferRange") != NULL);

    float *w = vt_rand_vec(nw);
    bg_cbuf_write(C, big.buf, 0, w, nw * 4, &err);
    /* K = 1024 terms of ~0.3: float rounding of the sum reaches ~1e-5. Tiled
     * M > 1 over split views: mode smallrange (lavapipe runs it 20x faster). */
    check_matmul_w(big, w, 1, N, K, 1e-4, "matvec over a 134 MB w (split)");
    /* the same buffer as an embedding table of N rows of K: rows in both views */
    int32_t tok[4] = {5, 32740, N - 1, 32767};
    check_embed_w(big, w, tok, 4, K, "embed from a 134 MB table (split, exact)");
    bg_cbuf_destroy(C, big.buf);
    free(w);
}

/* With BG_VK_MAX_RANGE=65536: matmul (tiled and matvec; out row stride N
 * across views) and embed split their weights into many views. */
static void test_split(void)
{
    const int N = 300, K = 100; /* w: 120000 bytes: views of 128 rows (64 KiB / 400 B, tiled) */
    float *w = vt_rand_vec((size_t)N * K);
    bg_tview vw = vt_upload(C, w, 3, (size_t)N * K, 0);
    check_matmul_w(vw, w, 1, N, K, 1e-5, "matvec N=300 K=100, w in 64 KiB views");
    check_matmul_w(vw, w, 37, N, K, 1e-5, "matmul M=37 N=300 K=100, w in 64 KiB views");
    int32_t tok[5] = {0, 299, 150, 163, 164};
    check_embed_w(vw, w, tok, 5, K, "embed, table in 64 KiB views (exact)");
    bg_cbuf_destroy(C, vw.buf);
    free(w);
}

/* ---- staging ---------------------------------------------------------- */

static void test_roundtrip(size_t n)
{
    float *src = vt_rand_vec(n), *dst = malloc(n * 4);
    bg_tview v = vt_upload(C, src, 0, n, 0);
    vt_download(C, v, dst, n);
    printf("  upload/readback of %zu bytes: %s\n", n * 4,
           memcmp(src, dst, n * 4) == 0 ? "identical" : "DIFFERENT");
    CHECK(memcmp(src, dst, n * 4) == 0);
    /* a partial read at an unaligned offset */
    bg_err err;
    CHECK(bg_cbuf_read(C, v.buf, 4 * 12345, dst, 4 * 1000, &err) == BG_OK);
    CHECK(memcmp(src + 12345, dst, 4 * 1000) == 0);
    /* small reads stay a memcpy even from uncached memory: 1 KiB and 1 B */
    CHECK(bg_cbuf_read(C, v.buf, 4 * 777 + 1, dst, 1024, &err) == BG_OK);
    CHECK(memcmp((unsigned char *)src + 4 * 777 + 1, dst, 1024) == 0);
    CHECK(bg_cbuf_read(C, v.buf, 4 * n - 1, dst, 1, &err) == BG_OK);
    CHECK(memcmp((unsigned char *)src + 4 * n - 1, dst, 1) == 0);
    /* just over the direct limit, at an odd byte offset */
    CHECK(bg_cbuf_read(C, v.buf, 3, dst, 1025, &err) == BG_OK);
    CHECK(memcmp((unsigned char *)src + 3, dst, 1025) == 0);
    bg_cbuf_destroy(C, v.buf);
    free(src), free(dst);
}

/* ---- timestamps --------------------------------------------------------- */

/* Runs fn with stderr (the log) going to buf (NUL-terminated); bytes read. */
static ssize_t capture_log(void (*fn)(void), char *buf, size_t len)
{
    char path[64];
    vt_tmp_template(path, sizeof(path), "bg_vk_log");
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, len - 1, 0);
    close(fd);
    unlink(path);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

/* A new buffer reads as zeros (compute.h), also where its memory held
 * another buffer's data: lib/nn takes new gradient, moment and LoRA B
 * buffers as zeroed. The dirty buffer is destroyed while a neighbour keeps
 * its block alive, so the new one is cut from the same (first-fit) range;
 * memory from the driver is not zero either (under ASan, malloc fills it).
 * Fails without the zeroing in vk_mem.c: the old NaNs come back. */
static void test_zeroed(void)
{
    enum { N = 100000 };
    float *dirty = malloc(N * 4), *got = malloc(N * 4);
    memset(dirty, 0xff, N * 4); /* NaN */
    bg_err err;
    bg_cbuf *keep = NULL, *a = NULL, *b = NULL;
    CHECK(bg_cbuf_create(C, 64, &keep, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_create(C, N * 4, &a, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_write(C, a, 0, dirty, N * 4, &err) == BG_OK, "%s", err.msg);
    bg_cbuf_destroy(C, a);
    CHECK(bg_cbuf_create(C, N * 4, &b, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_cbuf_read(C, b, 0, got, N * 4, &err) == BG_OK, "%s", err.msg);
    size_t nonzero = 0;
    for (size_t i = 0; i < N; i++)
        nonzero += got[i] != 0.0f || signbit(got[i]);
    printf("  new buffer over a freed dirty one: %zu of %d floats not +0\n", nonzero, N);
    CHECK(nonzero == 0, "%zu floats of a new buffer are not zero", nonzero);
    bg_cbuf_destroy(C, b);
    bg_cbuf_destroy(C, keep);
    free(dirty), free(got);
}

static void roundtrip_9mib(void)
{
    test_roundtrip((size_t)9 << 18); /* 9 MiB: two staging chunks */
}

/* readback mode: exactly the reads over 1 KiB went through staging */
static void test_readback(void)
{
    char buf[8192];
    bg_log_set_level(BG_LOG_DEBUG);
    capture_log(roundtrip_9mib, buf, sizeof buf);
    bg_log_set_level(BG_LOG_INFO);
    printf("  staging log:\n%s", buf);
    CHECK(strstr(buf, "read of 9437184 bytes staged") != NULL);
    CHECK(strstr(buf, "read of 4000 bytes staged") != NULL);
    CHECK(strstr(buf, "read of 1025 bytes staged") != NULL);
    CHECK(strstr(buf, "read of 1024 bytes staged") == NULL); /* direct */
    CHECK(strstr(buf, "read of 1 bytes staged") == NULL);
}

static void test_timestamps(void)
{
    char buf[8192];
    ssize_t n = capture_log(test_chain, buf, sizeof buf);
    printf("  timestamp log (%zd bytes):\n%s", n, buf);
    CHECK(strstr(buf, "per-op GPU time") != NULL);
    CHECK(strstr(buf, "matmul") != NULL && strstr(buf, "attention") != NULL);
}

/* ---- unavailable ---------------------------------------------------------- */

static void expect_create(const char *what, int want_rc, const char *want_text, int allow_cpu)
{
    bg_compute_opts o = {
        .kind = BG_BACKEND_VULKAN, .allow_cpu_device = allow_cpu, .device_index = -1};
    bg_compute *c = NULL;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_create(&o, &c, &err);
    printf("  %s: %s: %s\n", what, bg_err_name(rc), err.msg);
    CHECK(rc == want_rc && c == NULL);
    CHECK(strstr(err.msg, want_text) != NULL);
    if (c)
        bg_compute_destroy(c);
}

static int test_unavail(void)
{
    if (vt_native()) {
        printf("test_vk_runtime unavail: SKIP: needs the lavapipe-only setup\n");
        return 77;
    }
    unsetenv("BG_VK_ALLOW_CPU");
    unsetenv("BG_VK_DEVICE");
    setenv("BG_VK_LOADER", "/nonexistent/libvulkan.so.1", 1);
    expect_create("no loader", BG_EUNAVAIL, "libvulkan1", 1);
    unsetenv("BG_VK_LOADER");
    bg_compute *c = NULL;
    bg_compute_opts o = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};
    bg_err err;
    if (access(VT_LVP_ICD, R_OK) != 0 || bg_compute_create(&o, &c, &err) != BG_OK) {
        printf("test_vk_runtime unavail: SKIP: no loader or lavapipe here\n");
        return vt_failures + bg_test_failures ? 1 : 77;
    }
    bg_compute_destroy(c);
    setenv("VK_DRIVER_FILES", "/nonexistent/icd.json", 1);
    expect_create("no driver", BG_EUNAVAIL, "no Vulkan driver", 1);
    setenv("VK_DRIVER_FILES", VT_LVP_ICD, 1);
    expect_create("lavapipe only, CPU devices not allowed", BG_EUNAVAIL, "BG_VK_ALLOW_CPU=1", 0);
    /* auto on a host whose only Vulkan device is a CPU: the CPU backend */
    CHECK(bg_compute_create(
              &(bg_compute_opts){.kind = BG_BACKEND_AUTO, .threads = 1, .device_index = -1}, &c,
              &err) == BG_OK);
    if (c) {
        printf("  auto with lavapipe only: %s\n", bg_compute_describe(c));
        CHECK(bg_compute_kind(c) == BG_BACKEND_CPU);
        bg_compute_destroy(c);
    }
    setenv("BG_VK_DEVICE", "7", 1);
    expect_create("BG_VK_DEVICE=7", BG_EINVAL, "does not exist", 1);
    setenv("BG_VK_DEVICE", "0", 1); /* an explicit index is a request: allowed */
    CHECK(bg_compute_create(&(bg_compute_opts){.kind = BG_BACKEND_VULKAN, .device_index = -1}, &c,
                            &err) == BG_OK);
    if (c)
        bg_compute_destroy(c);
    return vt_failures + bg_test_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "chain";
    vt_seed(7);
    if (strcmp(mode, "unavail") == 0) {
        vt_env_setup();
        int rc = test_unavail();
        printf("test_vk_runtime unavail: %s\n", rc == 0 ? "PASS" : rc == 77 ? "SKIP" : "FAIL");
        return rc;
    }
    if (strcmp(mode, "timestamps") == 0)
        setenv("BG_VK_TIMESTAMPS", "1", 1);
    if (strcmp(mode, "smallrange") == 0)
        setenv("BG_VK_MAX_RANGE", "65536", 1);
    if (strcmp(mode, "readback") == 0)
        setenv("BG_VK_FORCE_STAGING", "read", 1);
    C = vt_create_or_skip(mode);
    if (strcmp(mode, "chain") == 0) {
        test_zeroed();
        test_chain();
        test_long_recording();
        test_bounds();
        test_range();
    } else if (strcmp(mode, "staging") == 0) {
        test_zeroed(); /* vkCmdFillBuffer: nothing is mapped */
        roundtrip_9mib();
        test_chain();
    } else if (strcmp(mode, "readback") == 0) {
        test_readback();
        test_chain();
    } else if (strcmp(mode, "timestamps") == 0) {
        test_timestamps();
        test_long_recording(); /* more dispatches than timestamp slots */
    } else if (strcmp(mode, "smallrange") == 0) {
        test_split();
        test_chain();
    } else {
        fprintf(stderr,
                "unknown mode %s; expected chain|staging|readback|timestamps|smallrange|unavail\n",
                mode);
        return 2;
    }
    bg_compute_destroy(C);
    bg_test_failures += vt_failures;
    printf("test_vk_runtime %s:\n", mode);
    CHECK_DONE("test_vk_runtime");
}
