/*
 * bench_logit_chunks.c — what the trainer's logits chunks cost a training
 * step on the CPU backend: trainers of one model at three logits budgets
 * (1 GiB: one chunk; 128 MiB; 64 MiB, the default) in one process, the
 * steps alternated A B C / C B A round by round, so a loaded machine
 * disturbs all alike. Not a test (docs/PERFORMANCE.md, "Training on the
 * CPU"; docs/TRAINING.md, "Memory").
 *
 *   bench_logit_chunks [ROUNDS] [BATCH]     (defaults 7, 8; seq 256)
 *
 * The model: a synthetic checkpoint of the 15M shape (dim 288, hidden 768,
 * 6 layers, 6/6 heads, vocab 32000, shared classifier; bg_nn_synth_write
 * seed 15) written under $TMPDIR (removed); tokens from an LCG (seed 1),
 * targets the next token; full fine-tuning, AdamW lr 1e-3, 2 threads. A
 * warm-up step per trainer (it grows the GEMM's packing slots), then ROUNDS
 * timed steps each: process CPU time and wall time per step, median and
 * minimum. Also prints each trainer's logits rows and printed peak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "nn/nn.h"

enum { NB = 3, MAXR = 64 };

static double clk(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 7, B = argc > 2 ? atoi(argv[2]) : 8, T = 256;
    if (rounds < 1 || rounds > MAXR || B < 1 || B > 64) {
        fprintf(stderr, "usage: bench_logit_chunks [ROUNDS 1..%d] [BATCH 1..64]\n", MAXR);
        return 2;
    }
    int R = B * T;
    bg_nn_config c = {288, 768, 6, 6, 6, 32000, 256, 1};
    bg_err err;
    char path[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/bench_logit_chunks.%ld.bin", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    bg_nn_ckpt ck;
    if (bg_nn_synth_write(path, &c, 15, &err) != BG_OK ||
        bg_nn_ckpt_open(&ck, path, &err) != BG_OK) {
        fprintf(stderr, "bench_logit_chunks: %s\n", err.msg);
        remove(path);
        return 1;
    }
    remove(path); /* the checkpoint keeps its mapping */
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(R + 1));
    if (!tok)
        return 1;
    uint64_t s = 1;
    for (int i = 0; i <= R; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % 32000);
    }
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 2, .device_index = -1};
    size_t budgets[NB] = {(size_t)1 << 30, (size_t)128 << 20, BG_NN_LOGIT_BUDGET};
    bg_nn_trainer *t[NB];
    static double cs[NB][MAXR], ws[NB][MAXR];
    double loss;
    for (int k = 0; k < NB; k++) {
        bg_nn_train_opts o = {.batch = B, .seq = T, .seed = 5};
        o.adamw = (bg_adamw_params){
            .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .max_norm = 1.0f};
        o.logit_budget = budgets[k];
        if (bg_nn_train_create(&ck, &co, &o, &t[k], &err) != BG_OK ||
            bg_nn_train_step(t[k], tok, tok + 1, NULL, &loss, &err) != BG_OK) {
            fprintf(stderr, "bench_logit_chunks: %s\n", err.msg);
            return 1;
        }
    }
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < NB; j++) {
            int k = r % 2 ? NB - 1 - j : j; /* A B C, then C B A */
            double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
            if (bg_nn_train_step(t[k], tok, tok + 1, NULL, &loss, &err) != BG_OK) {
                fprintf(stderr, "bench_logit_chunks: %s\n", err.msg);
                return 1;
            }
            cs[k][r] = clk(CLOCK_PROCESS_CPUTIME_ID) - c0;
            ws[k][r] = clk(CLOCK_MONOTONIC) - w0;
        }
    printf("15M shape, batch %d x seq %d, cpu backend 2 threads, %d rounds\n", B, T, rounds);
    printf("| logits budget | logits rows | peak printed | step CPU-s median (min) | step wall "
           "median |\n|---|---|---|---|---|\n");
    for (int k = 0; k < NB; k++) {
        bg_nn_train_mem m;
        bg_nn_train_memory(t[k], &m);
        qsort(cs[k], (size_t)rounds, sizeof(double), cmp);
        qsort(ws[k], (size_t)rounds, sizeof(double), cmp);
        printf("| %zu MiB | %d | %.2f MiB | %.3f (%.3f) | %.3f s |\n", budgets[k] >> 20,
               m.logit_rows, m.peak / 1048576.0, cs[k][rounds / 2], cs[k][0], ws[k][rounds / 2]);
        bg_nn_train_destroy(t[k]);
    }
    bg_nn_ckpt_close(&ck);
    free(tok);
    return 0;
}
