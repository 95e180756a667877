/*
 * bench_gemm.h — bg_bench_lm's own tables: the GEMM against OpenBLAS
 * (bench_gemm.c) and training tokens/s against the plain scalar step
 * (bench_train.c).
 */
#ifndef BG_BENCH_GEMM_H
#define BG_BENCH_GEMM_H

#include <stdio.h>

/* Seconds by the clock (monotonic), and CPU seconds of the whole process
 * (every thread): the CPU figure counts the time the work ran, not the time
 * it waited for a core, so a loaded machine disturbs it less. */
double bg_bench_wall(void);
double bg_bench_cpu(void);

/* The parent: runs the two child configurations and prints the table.
 * core_override: OpenBLAS core to force (NULL: chosen from cpuid). */
int bg_bench_gemm(int quick, const char *core_override, FILE *out);
/* The training tables (bench_train.c): the CPU backend's full fine-tuning
 * forward+backward against the plain scalar one, 1 and `threads` threads,
 * for the synthetic 15M shape, then stories260K from model_path (NULL:
 * that table is left out, saying so). */
int bg_bench_train(int quick, const char *tmp_dir, int threads, const char *model_path, FILE *out);
/* `--gemm-child`: measures under the inherited environment, prints lines. */
int bg_bench_gemm_child(int quick);

#endif
