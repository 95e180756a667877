/*
 * nn_test.h — small helpers shared by the tests in tests/nn, and by
 * tests/vulkan/test_vk_nn_train.c (header-only, static functions): a temp
 * directory, a process runner, a synthetic checkpoint, and the training
 * setup both training tests use (the options, stories260K's path, the
 * fine-tune's corpus and its batches), so the Vulkan test runs exactly
 * test_nn_train's recipe. Checks are bg_test.h's.
 */
#ifndef BG_NN_TEST_H
#define BG_NN_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bg_test.h"
#include "nn/nn.h"

/* Runs "exe args" through the shell (in dir when dir is not NULL), stdout
 * into out[out_cap], stderr through the file err_path into err[err_cap];
 * returns the exit code, -1 when it did not exit. */
static inline int nt_run(const char *dir, const char *exe, const char *args, const char *err_path,
                         char *out, size_t out_cap, char *err, size_t err_cap)
{
    char cmd[8192];
    if (dir)
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>'%s'", dir, exe, args, err_path);
    else
        snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", exe, args, err_path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        perror("popen");
        exit(1);
    }
    size_t n = fread(out, 1, out_cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    FILE *e = fopen(err_path, "r");
    n = e ? fread(err, 1, err_cap - 1, e) : 0;
    err[n] = 0;
    if (e)
        fclose(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A fresh directory under $TMPDIR (or /tmp); the caller removes its files. */
static inline const char *nt_tmpdir(void)
{
    static char dir[512];
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, sizeof dir - 7, "%s/bg_nn_test_", base && *base ? base : "/tmp");
    if (n < 0 || n > (int)sizeof dir - 7)
        n = (int)strlen(dir); /* truncated: keep what fit */
    memset(dir + n, 'X', 6);  /* the mkdtemp template */
    dir[n + 6] = 0;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

/* Write a synthetic checkpoint of config c (seed 7) as dir/name, open it
 * into ck, remove the file (the checkpoint keeps its mapping). */
static inline void nt_synth_open(const char *dir, const char *name, const bg_nn_config *c,
                                 bg_nn_ckpt *ck)
{
    char path[600];
    bg_err err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(bg_nn_synth_write(path, c, 7, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_ckpt_open(ck, path, &err) == BG_OK, "%s", err.msg);
    unlink(path);
}

/* The training options of the tests: batch B of sequences of T, LoRA rank
 * (0: full fine-tuning), seed 5, AdamW lr 1e-2, betas 0.9/0.99, weight
 * decay 0.01, gradient clip 1. */
static inline bg_nn_train_opts nt_train_opts(int B, int T, int rank)
{
    bg_nn_train_opts o = {.batch = B, .seq = T, .lora_rank = rank, .seed = 5};
    o.adamw = (bg_adamw_params){.lr = 1e-2f,
                                .beta1 = 0.9f,
                                .beta2 = 0.99f,
                                .eps = 1e-8f,
                                .weight_decay = 0.01f,
                                .max_norm = 1.0f};
    return o;
}

/* Gradient i of trainers a and b: 1 when bit-equal, else 0; *diff the
 * largest |b - a| (a NaN in b counts as infinite), *mx the largest |a|. */
static inline int nt_grad_cmp(bg_nn_trainer *a, bg_nn_trainer *b, int i, double *diff, double *mx)
{
    bg_err err;
    size_t sz = bg_nn_train_param_size(a, i);
    float *ga = malloc(4 * sz), *gb = malloc(4 * sz);
    CHECK(ga && gb);
    CHECK(bg_nn_train_grad_read(a, i, ga, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_grad_read(b, i, gb, &err) == BG_OK, "%s", err.msg);
    double m = 0.0, d = 0.0;
    for (size_t j = 0; j < sz; j++) {
        m = fabs(ga[j]) > m ? fabs(ga[j]) : m;
        double e = isnan(gb[j]) ? INFINITY : fabs((double)gb[j] - ga[j]);
        d = e > d ? e : d;
    }
    int same = memcmp(ga, gb, 4 * sz) == 0;
    free(ga), free(gb);
    *diff = d;
    *mx = m;
    return same;
}

/* stories260K's path ($BG_SHARED_DIR/models/, else ../shared/models/) into
 * buf; 1 when it is readable. */
static inline int nt_stories_path(char *buf, size_t len)
{
    const char *shared = getenv("BG_SHARED_DIR");
    snprintf(buf, len, "%s/models/stories260K.bin", shared ? shared : "../shared");
    return access(buf, R_OK) == 0;
}

/* The stories260K fine-tune: LoRA rank 4, batches of NT_STORY_B windows
 * of NT_STORY_T + 1 tokens of a fixed 40-token "story" repeated, AdamW lr
 * 3e-3 without weight decay. */
enum { NT_STORY_B = 4, NT_STORY_T = 32, NT_STORY_LEN = 200 };

static inline bg_nn_train_opts nt_story_opts(void)
{
    bg_nn_train_opts o = nt_train_opts(NT_STORY_B, NT_STORY_T, 4);
    o.adamw.lr = 3e-3f;
    o.adamw.weight_decay = 0.0f;
    return o;
}

/* corpus[NT_STORY_LEN]: 40 ids in [1, V) from a fixed LCG, repeated. */
static inline void nt_story_corpus(int32_t *corpus, int V)
{
    uint64_t s = 99;
    for (int i = 0; i < 40; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        corpus[i] = (int32_t)(1 + (s >> 33) % (uint64_t)(V - 1));
    }
    for (int i = 40; i < NT_STORY_LEN; i++)
        corpus[i] = corpus[i % 40];
}

/* Step st's batch: tok[B*T] and tgt[B*T] (tgt shifted by one) from the
 * corpus windows at (st * 7 + b * 13) % 120. */
static inline void nt_story_batch(const int32_t *corpus, int st, int32_t *tok, int32_t *tgt)
{
    for (int b = 0; b < NT_STORY_B; b++) {
        int off = (st * 7 + b * 13) % 120;
        memcpy(tok + b * NT_STORY_T, corpus + off, 4 * (size_t)NT_STORY_T);
        memcpy(tgt + b * NT_STORY_T, corpus + off + 1, 4 * (size_t)NT_STORY_T);
    }
}

#endif
