/*
 * bg_bench_lm.c — the lm benchmark with OpenBLAS as the matmul baseline.
 *
 * The benchmark itself lives in lib/nn/nn_bench.c (so `bayesguard lm
 * bench` runs the same code); this program only adds the BLAS hooks, which
 * keeps OpenBLAS out of the daemon. Usage:
 *   bg_bench_lm [--model stories260K.bin] [--threads N] [--quick] [--tmp DIR]
 * (without --model: $BG_SHARED_DIR/models/stories260K.bin, else the shared/
 * folder beside the checkout, fixed at configure time).
 * Prints markdown tables to stdout (docs/PERFORMANCE.md has a run).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_gemm.h"
#include "nn/nn.h"

char *openblas_get_corename(void);

/* out[M,N] = x[M,K] · w[N,K]^T */
static void blas_sgemm(float *out, const float *x, const float *w, int M, int N, int K)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, out, N);
}

static void blas_threads(int n)
{
    openblas_set_num_threads(n);
}

int main(int argc, char **argv)
{
    char def[1024];
    bg_nn_bench_blas blas = {"OpenBLAS", blas_sgemm, blas_threads};
    bg_nn_bench_opts o = {NULL, NULL, 0, 0, &blas, stdout};
    int gemm_only = 0, child = 0, train_only = 0;
    const char *core = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            o.quick = 1;
        else if (strcmp(argv[i], "--gemm") == 0)
            gemm_only = 1;
        else if (strcmp(argv[i], "--train") == 0)
            train_only = 1;
        else if (strcmp(argv[i], "--gemm-child") == 0)
            child = 1;
        else if (strcmp(argv[i], "--blas-core") == 0 && i + 1 < argc)
            core = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            o.model_path = argv[++i];
        else if (strcmp(argv[i], "--tmp") == 0 && i + 1 < argc)
            o.tmp_dir = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bg_bench_lm [--model M] [--threads N] [--quick] [--tmp DIR] "
                            "[--gemm | --train] [--blas-core NAME]\n");
            return 2;
        }
    }
    if (child)
        return bg_bench_gemm_child(o.quick);
    printf("OpenBLAS core (as detected%s): %s\n", getenv("OPENBLAS_CORETYPE") ? ", forced" : "",
           openblas_get_corename());
    if (!o.model_path) {
        const char *shared = getenv("BG_SHARED_DIR");
        snprintf(def, sizeof def, "%s/models/stories260K.bin",
                 shared ? shared : BG_BENCH_SHARED_DIR);
        o.model_path = access(def, R_OK) == 0 ? def : NULL;
    }
    if (train_only)
        return bg_bench_train(o.quick, o.tmp_dir, o.threads, o.model_path, stdout) == 0 ? 0 : 1;
    if (gemm_only) {
        if (bg_bench_gemm(o.quick, core, stdout) != 0) {
            fprintf(stderr, "bg_bench_lm: the GEMM children failed\n");
            return 1;
        }
        return 0;
    }
    bg_err err;
    if (bg_nn_bench_run(&o, &err) != BG_OK) {
        fprintf(stderr, "bg_bench_lm: %s\n", err.msg);
        return 1;
    }
    if (bg_bench_gemm(o.quick, core, stdout) != 0) {
        fprintf(stderr, "bg_bench_lm: the GEMM children failed\n");
        return 1;
    }
    return bg_bench_train(o.quick, o.tmp_dir, o.threads, o.model_path, stdout) == 0 ? 0 : 1;
}
