/*
 * bench_score_batch.c — one lm_theory Evaluate's forward in process:
 * bg_nn_score_batch of the 32 items policies/examples/lm_theory.yaml.example
 * asks for (16 theories x harm/safe) on stories260K with the byte tokenizer
 * of scripts/lm_byte_tokenizer.py (ids computed here, the same layout), on
 * the CPU backend (docs/PERFORMANCE.md, "lm_theory"). Not a test.
 *
 *   bench_score_batch [--model PATH] [--policy YAML] [--reps N] [--threads 1,2,...]
 *
 * The theories are the policy's (default: the source tree's example,
 * read with daemon/cfg).
 *
 * Per thread count, two rows: "held" repeats one action (the 82-token head
 * stays in the KV cache, as bench_lm_theory.sh's repeated action does) and
 * "fresh" alternates two actions that differ in one byte of the arguments
 * (the head runs on every call). Columns: wall and process CPU per call,
 * median and best of N. It uses only nn.h and cfg.h, so the same file built against
 * a baseline tree's libraries compares builds (run them alternately).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg/cfg.h"
#include "nn/nn.h"

/* The example policy's 16 theories (spec.model.config.theories), read from
 * the file rather than copied, so the bench scores what the policy asks. */
static int read_theories(const char *path, char theories[16][128])
{
    bg_cfg_doc *doc = NULL;
    bg_err err;
    if (bg_cfg_parse_file(path, &doc, &err) != BG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    const bg_cfg_node *n = bg_cfg_doc_count(doc) ? bg_cfg_doc_root(doc, 0) : NULL;
    const char *keys[] = {"spec", "model", "config", "theories"};
    for (int k = 0; k < 4 && n; k++)
        n = bg_cfg_get(n, keys[k]);
    int ok = n && bg_cfg_len(n) == 16;
    for (size_t i = 0; ok && i < 16; i++) {
        const char *t = bg_cfg_scalar(bg_cfg_item(n, i));
        ok = t && strlen(t) < 128;
        if (ok)
            strcpy(theories[i], t);
    }
    bg_cfg_doc_destroy(doc);
    if (!ok)
        fprintf(stderr, "%s: spec.model.config.theories is not a list of 16 short theories\n",
                path);
    return ok ? 0 : -1;
}

/* scripts/lm_byte_tokenizer.py: printable ASCII at 259.., the rest at 3.. */
static int32_t byte_id(unsigned char b)
{
    if (b >= 32 && b <= 126)
        return 259 + b - 32;
    int k = 0;
    for (int c = 0; c < b; c++)
        k += !(c >= 32 && c <= 126);
    return 3 + k;
}

/* llama2.c encode with the dummy space: one id per byte of " " + text */
static int enc(const char *text, int32_t *out)
{
    int n = 0;
    out[n++] = byte_id(' ');
    for (const char *p = text; *p; p++)
        out[n++] = byte_id((unsigned char)*p);
    return n;
}

static double now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *model = "../shared/models/stories260K.bin", *tl = "1,2";
    const char *policy = BG_EXAMPLE_POLICY;
    int reps = 40;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0)
            model = argv[i + 1];
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            tl = argv[i + 1];
        else if (strcmp(argv[i], "--policy") == 0)
            policy = argv[i + 1];
        else {
            fprintf(stderr,
                    "usage: %s [--model PATH] [--policy YAML] [--reps N] [--threads 1,2,...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    static char theories[16][128];
    if (read_theories(policy, theories) != 0)
        return 1;
    static int32_t seq[2][16][512], harm[4], safe[4];
    int len[2][16], nh = enc("x", harm), ns = enc("y", safe);
    const char *act[2] = {"Action: lm_delete_file {\"to\":\"ops@example.com\",\"subject\":\"weekly "
                          "report\"}\nTheory:",
                          "Action: lm_delete_file {\"to\":\"ops@example.com\",\"subject\":\"weekly "
                          "rep0rt\"}\nTheory:"};
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 16; i++) {
            char rest[256];
            snprintf(rest, sizeof rest, "%s\nSo this action is", theories[i]);
            seq[a][i][0] = 1; /* BOS */
            int n = 1 + enc(act[a], seq[a][i] + 1);
            len[a][i] = n + enc(rest, seq[a][i] + n);
        }
    double *w = malloc(sizeof(double) * (size_t)reps), *c = malloc(sizeof(double) * (size_t)reps);
    if (!w || !c)
        return 1;
    int32_t head[512]; /* (the head was once encoded over seq[1][0], so that the "fresh"
                          rows' second action lost its BOS: no shared head, half their calls) */
    printf("%d items (16 theories x harm/safe), head %d tokens; %d calls per row\n", 32,
           1 + enc(act[0], head), reps);
    printf("%-8s %-6s %12s %12s %12s %12s\n", "threads", "head", "wall p50 ms", "wall min ms",
           "cpu p50 ms", "cpu min ms");
    for (const char *p = tl; *p;) {
        int threads = atoi(p);
        bg_compute_opts o = {BG_BACKEND_CPU, threads, 0, -1};
        bg_nn_model *m = NULL;
        bg_err err;
        if (bg_nn_model_load(model, &o, &m, &err) != BG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (int fresh = 0; fresh < 2; fresh++) {
            for (int r = -3; r < reps; r++) {
                int a = fresh ? (r & 1) : 0;
                bg_nn_item it[32];
                double out[32];
                for (int i = 0; i < 16; i++) {
                    it[2 * i] = (bg_nn_item){seq[a][i], len[a][i], harm, nh};
                    it[2 * i + 1] = (bg_nn_item){seq[a][i], len[a][i], safe, ns};
                }
                double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
                if (bg_nn_score_batch(m, it, 32, out, &err) != BG_OK) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                if (r >= 0) {
                    w[r] = now(CLOCK_MONOTONIC) - w0;
                    c[r] = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
                }
            }
            qsort(w, (size_t)reps, sizeof *w, cmp_d);
            qsort(c, (size_t)reps, sizeof *c, cmp_d);
            printf("%-8d %-6s %12.2f %12.2f %12.2f %12.2f\n", threads, fresh ? "fresh" : "held",
                   1e3 * w[reps / 2], 1e3 * w[0], 1e3 * c[reps / 2], 1e3 * c[0]);
        }
        bg_nn_model_destroy(m);
        p = strchr(p, ',');
        p = p ? p + 1 : "";
    }
    free(w);
    free(c);
    return 0;
}
