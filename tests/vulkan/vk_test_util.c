/*
 * vk_test_util.c — helpers of the Vulkan tests (vk_test_util.h).
 */
#include "vk_test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vt_failures;
static uint64_t vt_state = 0x2545F4914F6CDD1Dull;

int vt_native(void)
{
    const char *v = getenv("BG_VK_TEST_NATIVE");
    return v && strcmp(v, "1") == 0;
}

void vt_env_setup(void)
{
    if (vt_native())
        return;
    if (access(VT_LVP_ICD, R_OK) == 0)
        setenv("VK_DRIVER_FILES", VT_LVP_ICD, 1);
    setenv("BG_VK_ALLOW_CPU", "1", 1);
}

bg_compute *vt_create_or_skip(const char *test)
{
    vt_env_setup();
    bg_compute_opts o = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};
    bg_compute *c = NULL;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_compute_create(&o, &c, &err);
    if (rc == BG_EUNAVAIL) {
        printf("%s: SKIP: no Vulkan device: %s\n", test, err.msg);
        exit(77);
    }
    if (rc != BG_OK) {
        fprintf(stderr, "%s: vulkan create failed: %s (%s)\n", test, err.msg, bg_err_name(rc));
        exit(1);
    }
    printf("%s: device %s\n", test, bg_compute_describe(c));
    return c;
}

void vt_seed(uint64_t s)
{
    vt_state = s ? s : 1;
}

static uint64_t next(void)
{
    /* splitmix64: every seed gives a good stream */
    uint64_t z = (vt_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void vt_tmp_template(char *buf, size_t len, const char *prefix)
{
    char six[7];
    memset(six, 'X', 6);
    six[6] = '\0';
    snprintf(buf, len, "/tmp/%s-%s", prefix, six);
}

float vt_frand(void)
{
    return (float)((double)(next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int vt_irand(int lo, int hi)
{
    return lo + (int)(next() % (uint64_t)(hi - lo + 1));
}

float *vt_rand_vec(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = vt_frand();
    return v;
}

int vt_check_close(const char *what, const float *got, const float *want, size_t n, double atol,
                   double rtol)
{
    double worst = 0.0, worst_d = 0.0;
    size_t at = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double ratio = d / (atol + rtol * fabs((double)want[i]));
        if (isnan(got[i]) != isnan(want[i]))
            ratio = INFINITY;
        if (ratio > worst || (ratio == worst && ratio == INFINITY && !bad)) {
            worst = ratio;
            worst_d = d;
            at = i;
        }
        if (ratio > 1.0)
            bad = 1;
    }
    printf("  %-44s n=%-7zu max|err| %.3g (%.2f of tol atol %.0e rtol %.0e) %s\n", what, n, worst_d,
           worst, atol, rtol, bad ? "FAIL" : "ok");
    if (bad) {
        fprintf(stderr, "  %s: element %zu got %.9g want %.9g\n", what, at, (double)got[at],
                (double)want[at]);
        vt_failures++;
    }
    return !bad;
}

bg_tview vt_upload(bg_compute *c, const void *host, size_t off, size_t n, size_t pad)
{
    bg_cbuf *b = NULL;
    bg_err err;
    size_t elems = off + n + pad;
    if (bg_cbuf_create(c, elems * 4, &b, &err) != BG_OK) {
        fprintf(stderr, "bg_cbuf_create(%zu): %s\n", elems * 4, err.msg);
        exit(1);
    }
    /* poison the padding so a kernel reading outside its view shows up */
    float *fill = malloc(elems * 4);
    for (size_t i = 0; i < elems; i++)
        fill[i] = NAN;
    if (host)
        memcpy(fill + off, host, n * 4);
    if (bg_cbuf_write(c, b, 0, fill, elems * 4, &err) != BG_OK) {
        fprintf(stderr, "bg_cbuf_write: %s\n", err.msg);
        exit(1);
    }
    free(fill);
    return (bg_tview){b, off};
}

void vt_download(bg_compute *c, bg_tview v, void *host, size_t n)
{
    bg_err err;
    if (bg_cbuf_read(c, v.buf, v.off * 4, host, n * 4, &err) != BG_OK) {
        fprintf(stderr, "bg_cbuf_read: %s\n", err.msg);
        exit(1);
    }
}
