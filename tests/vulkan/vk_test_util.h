/*
 * vk_test_util.h — shared by the Vulkan tests: choose the device (lavapipe
 * unless BG_VK_TEST_NATIVE=1), skip (exit 77) with the reason when none
 * exists, seeded random data, and tolerance checks that print the worst
 * error against the stated bound.
 *
 * Device: by default VK_DRIVER_FILES is pointed at Mesa's lavapipe ICD and
 * CPU-type devices are allowed, so the tests run on a GPU-less host. With
 * BG_VK_TEST_NATIVE=1 (bench/vulkan/gpu-check.sh) the environment is left as
 * is and the best device is used (a real GPU). Single-threaded tests.
 */
#ifndef BG_VK_TEST_UTIL_H
#define BG_VK_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "bg_test.h"
#include "compute/compute.h"

#define VT_LVP_ICD "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"

/* "/tmp/<prefix>-" plus mkstemp/mkdtemp's six placeholder characters, into
 * buf (built at run time: the placeholder never appears in the sources). */
void vt_tmp_template(char *buf, size_t len, const char *prefix);

extern int vt_failures; /* vt_check_close's tally: add it to bg_test_failures before CHECK_DONE */

/* Set the environment for the test device (call before any create). */
void vt_env_setup(void);
/* Create the Vulkan backend, or print why not and exit(77). new. */
bg_compute *vt_create_or_skip(const char *test);
int vt_native(void);

void vt_seed(uint64_t s);
float vt_frand(void);         /* uniform [-1, 1] */
int vt_irand(int lo, int hi); /* uniform [lo, hi] */
float *vt_rand_vec(size_t n); /* new (free) */

/* |got - want| <= atol + rtol * |want| elementwise; prints the worst ratio.
 * Returns 1 when within bounds, else 0 (and counts a failure). */
int vt_check_close(const char *what, const float *got, const float *want, size_t n, double atol,
                   double rtol);

/* Buffers with host mirrors: upload n floats at element offset off of a
 * fresh buffer of off + n + pad elements; the view is (buf, off). */
bg_tview vt_upload(bg_compute *c, const void *host, size_t off, size_t n, size_t pad);
void vt_download(bg_compute *c, bg_tview v, void *host, size_t n);

#endif
