/*
 * bench_vk_upload.c — what zero-on-request saves when weights are uploaded
 * (lib/compute/vk_backend.h): a model's tensors (stories15M's shapes: dim
 * 288, hidden 768, 6 layers, vocab 32000; 15.2M floats, 61 MB, 57
 * buffers) created and written whole on the Vulkan backend, against the
 * same with BG_VK_ZERO_AT_CREATE=1 (every buffer filled at create, as
 * before), in the same run, interleaved, mapped memory and
 * BG_VK_FORCE_STAGING=1. Prints the median of --reps uploads per row and
 * the ratio. Not a test; run by hand (lavapipe on a GPU-less host:
 * VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json):
 *   BG_VK_ALLOW_CPU=1 build/bench/vulkan/bench_vk_upload [--reps N] [--keep-blocks]
 * Without --keep-blocks every upload gets fresh memory blocks (the
 * allocator frees a block with nothing live: a first load); with it a live
 * buffer keeps them, so uploads reuse memory that held freed tensors (a
 * reload, or a model beside others).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/compute.h"

#define NT 57
#define MAXREPS 64

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* stories15M's tensors, in floats */
static int shapes(size_t *n)
{
    int k = 0, d = 288, h = 768, L = 6, V = 32000;
    n[k++] = (size_t)V * d; /* tok_emb (shared classifier) */
    for (int l = 0; l < L; l++) {
        n[k++] = d;                 /* attention norm */
        for (int p = 0; p < 4; p++) /* wq wk wv wo */
            n[k++] = (size_t)d * d;
        n[k++] = d;                 /* ffn norm */
        for (int p = 0; p < 3; p++) /* w1 w2 w3 */
            n[k++] = (size_t)d * h;
    }
    n[k++] = d; /* final norm */
    return k;
}

static bg_compute *make(int zero_at_create, int staging)
{
    setenv("BG_VK_ZERO_AT_CREATE", zero_at_create ? "1" : "0", 1);
    if (staging)
        setenv("BG_VK_FORCE_STAGING", "1", 1);
    else
        unsetenv("BG_VK_FORCE_STAGING");
    bg_compute_opts o = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};
    bg_compute *c = NULL;
    bg_err err;
    if (bg_compute_create(&o, &c, &err) != BG_OK) {
        fprintf(stderr, "bench_vk_upload: no Vulkan backend: %s\n", err.msg);
        exit(77);
    }
    return c;
}

/* One upload of every tensor (create + write whole), then a free: ms. */
static double upload(bg_compute *c, const size_t *n, int k, const float *src)
{
    bg_cbuf *b[NT];
    bg_err err;
    double t0 = now_ms();
    for (int i = 0; i < k; i++)
        if (bg_cbuf_create(c, n[i] * 4, &b[i], &err) != BG_OK ||
            bg_cbuf_write(c, b[i], 0, src, n[i] * 4, &err) != BG_OK) {
            fprintf(stderr, "bench_vk_upload: %s\n", err.msg);
            exit(1);
        }
    double t = now_ms() - t0;
    for (int i = 0; i < k; i++)
        bg_cbuf_destroy(c, b[i]);
    return t;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int reps = 7, keep = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--keep-blocks") == 0)
            keep = 1;
    if (reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "usage: bench_vk_upload [--reps 1..%d] [--keep-blocks]\n", MAXREPS);
        return 2;
    }
    size_t n[NT], total = 0, big = 0;
    int k = shapes(n);
    for (int i = 0; i < k; i++) {
        total += n[i];
        big = n[i] > big ? n[i] : big;
    }
    float *src = malloc(big * 4);
    if (!src)
        return 1;
    for (size_t i = 0; i < big; i++)
        src[i] = (float)(i % 1000) * 1e-3f;
    printf("%d tensors, %.1f MB; median of %d uploads each, interleaved; blocks %s\n\n", k,
           (double)total * 4 / 1e6, reps, keep ? "kept" : "fresh");
    printf("| memory | zero on request ms | zero at create ms | ratio |\n|---|---|---|---|\n");
    for (int staging = 0; staging < 2; staging++) {
        bg_compute *on = make(0, staging), *at = make(1, staging);
        bg_cbuf *keep_on = NULL, *keep_at = NULL; /* with --keep-blocks: a live buffer */
        bg_err err;
        if (keep && (bg_cbuf_create(on, 16, &keep_on, &err) != BG_OK ||
                     bg_cbuf_create(at, 16, &keep_at, &err) != BG_OK))
            return 1;
        printf("<!-- device: %s -->\n", bg_compute_describe(on));
        upload(on, n, k, src); /* warm: the blocks exist */
        upload(at, n, k, src);
        double a[MAXREPS], z[MAXREPS];
        for (int r = 0; r < reps; r++) {
            a[r] = upload(on, n, k, src);
            z[r] = upload(at, n, k, src);
        }
        qsort(a, (size_t)reps, sizeof *a, cmp_d);
        qsort(z, (size_t)reps, sizeof *z, cmp_d);
        printf("| %s | %.1f | %.1f | %.2f |\n",
               staging ? "staged (BG_VK_FORCE_STAGING=1)" : "mapped", a[reps / 2], z[reps / 2],
               z[reps / 2] / a[reps / 2]);
        if (keep) {
            bg_cbuf_destroy(on, keep_on);
            bg_cbuf_destroy(at, keep_at);
        }
        bg_compute_destroy(on);
        bg_compute_destroy(at);
    }
    free(src);
    return 0;
}
