/*
 * cli_lm_gfn.c — `bayesguard lm gfn rng`: the random-integer task of Hu et
 * al. §2 on a small model (lib/lmgfn/lmgfn_rng.c), one table row per
 * method.
 *
 *   lm gfn rng [--model CKPT] [--backend cpu|vulkan] [--out DIR] [--seed N]
 *              [--samples N] [--steps N] [--threads N]
 *
 * --model: a base checkpoint with the task's 16 character tokens (default:
 * train one from scratch, written to DIR/base.bin when --out is given);
 * --out: where base.bin, sft.lora and gflownet.lora are written; --samples:
 * samples per method for valid and kl (default 100000); --steps: GFlowNet
 * and SFT steps (same budget). Progress on stderr; the table on stdout.
 * Exit codes as in cli_lm.h. Main thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_lm.h"
#include "compute/compute.h"
#include "lmgfn/lmgfn.h"

static int gfn_usage(FILE *f)
{
    fprintf(f, "usage: bayesguard lm gfn rng [--model CKPT] [--backend cpu|vulkan] [--out DIR]\n"
               "                             [--seed N] [--samples N] [--steps N] [--threads N]\n");
    return f == stdout ? 0 : 2;
}

static int num(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "bayesguard lm gfn: %s '%s': expected an integer in %ld..%ld\n", flag, v,
                lo, hi);
        return 2;
    }
    *out = x;
    return 0;
}

int bg_cli_lm_gfn_main(int argc, char **argv)
{
    if (argc < 2)
        return gfn_usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return gfn_usage(stdout);
    if (strcmp(argv[1], "rng") != 0) {
        fprintf(stderr, "bayesguard lm gfn: unknown task '%s' (known: rng)\n", argv[1]);
        return gfn_usage(stderr);
    }
    bg_lmgfn_rng_opts o;
    bg_lmgfn_rng_defaults(&o);
    const char *backend = "cpu";
    long threads = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i], *eq = strchr(f, '='), *v;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0)
            return gfn_usage(stdout);
        char name[32];
        size_t nl = eq ? (size_t)(eq - f) : strlen(f);
        if (strncmp(f, "--", 2) != 0 || nl >= sizeof name) {
            fprintf(stderr, "bayesguard lm gfn: unexpected argument '%s'\n", f);
            return gfn_usage(stderr);
        }
        memcpy(name, f, nl);
        name[nl] = 0;
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "bayesguard lm gfn: %s needs a value\n", name);
            return 2;
        }
        long x;
        int rc = 0;
        if (strcmp(name, "--model") == 0)
            o.model = v;
        else if (strcmp(name, "--out") == 0)
            o.out_dir = v;
        else if (strcmp(name, "--backend") == 0)
            backend = v;
        else if (strcmp(name, "--seed") == 0 && !(rc = num(name, v, 0, 1L << 30, &x)))
            o.seed = (uint64_t)x;
        else if (strcmp(name, "--samples") == 0 && !(rc = num(name, v, 1, 100000000, &x)))
            o.samples = x;
        else if (strcmp(name, "--steps") == 0 && !(rc = num(name, v, 1, 1000000, &x)))
            o.steps = (int)x;
        else if (strcmp(name, "--threads") == 0 && !(rc = num(name, v, 0, 1024, &x)))
            threads = x;
        else if (!rc) {
            fprintf(stderr, "bayesguard lm gfn: unknown flag '%s'\n", name);
            return gfn_usage(stderr);
        }
        if (rc)
            return rc;
    }
    int kind = bg_backend_kind_parse(backend);
    if (kind < 0 || kind == BG_BACKEND_AUTO) {
        fprintf(stderr, "bayesguard lm gfn: --backend '%s': expected cpu or vulkan\n", backend);
        return 2;
    }
    o.copts = (bg_compute_opts){(bg_backend_kind)kind, (int)threads, 1, -1};
    bg_lmgfn_rng_row rows[4];
    bg_err err;
    if (bg_lmgfn_rng_run(&o, rows, &err) != BG_OK) {
        fprintf(stderr, "bayesguard lm gfn rng: %s\n", err.msg);
        return 1;
    }
    printf("%-12s %8s %10s %9s %9s\n", "method", "valid", "kl", "seconds", "samples");
    for (int i = 0; i < 4; i++)
        printf("%-12s %7.2f%% %10.3g %9.1f %9ld\n", rows[i].method, 100.0 * rows[i].valid,
               rows[i].kl, rows[i].seconds, rows[i].samples);
    return 0;
}
