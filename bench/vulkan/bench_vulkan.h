/*
 * bench_vulkan.h — shared by the two files of bench_vulkan: the inference
 * workloads (bench_vulkan.c, main) and the training ops (bench_vulkan_train.c).
 */
#ifndef BG_BENCH_VULKAN_H
#define BG_BENCH_VULKAN_H

#include <stddef.h>

#include "compute/compute.h"

/* Print "bench_vulkan: what: message" and exit(1). */
void bench_die(const char *what, const bg_err *err);
/* A buffer of elems floats filled with values in [-1, 1); new, the backend's. */
bg_cbuf *bench_buf(bg_compute *c, size_t elems);
/* The training-op table (see bench_vulkan_train.c); cpu unused when no_cpu. */
void bench_train(bg_compute *cpu, bg_compute *vk, int big, int no_cpu, double peak_tflops);

#endif
