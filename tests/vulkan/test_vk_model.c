/*
 * test_vk_model.c — the transformer (lib/nn) on the Vulkan backend against
 * the same model on the CPU backend: the real stories260K checkpoint
 * ($BG_SHARED_DIR/models/stories260K.bin, skipped with a note when absent)
 * and a deterministic synthetic checkpoint with odd sizes (dim 60 — not a
 * multiple of 8 or 16 —, hidden 97, 6 heads over 2 KV heads, head size 10,
 * vocab 77, separate classifier).
 *
 * Checked per model:
 *   1. decode logits at every step: |vk - cpu| <= 2e-4 + 2e-4*|cpu|
 *   2. prefill of T tokens: the last logits, same tolerance
 *   3. greedy generation of 48 tokens: identical ids
 *   4. bg_nn_score of 3 continuations: |vk - cpu| <= 1e-3 * (1 + |cpu|)
 *   5. backend auto, per model: the odd model (under 16 MiB) stays on the
 *      CPU backend; with BG_NN_AUTO_GPU_MIN_MB=0 it goes to the Vulkan
 *      device (lavapipe admitted through BG_VK_ALLOW_CPU=1 here); a
 *      malformed value is ignored (the 16 MiB line holds).
 * Both sides sum in other orders (tiles, SIMD lanes, tree reductions), so
 * equality is within the tolerance, not bitwise; greedy ids must agree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/nn.h"
#include "vk_test_util.h"

#define TOL 2e-4

static bg_nn_model *load(const char *path, bg_backend_kind kind)
{
    bg_compute_opts o = {.kind = kind, .threads = 2, .allow_cpu_device = 1, .device_index = -1};
    bg_nn_model *m = NULL;
    bg_err err;
    int rc = bg_nn_model_load(path, &o, &m, &err);
    if (rc == BG_EUNAVAIL && kind == BG_BACKEND_VULKAN) {
        printf("test_vk_model: SKIP: %s\n", err.msg);
        exit(77);
    }
    if (rc != BG_OK) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        exit(1);
    }
    return m;
}

/* Greedy choice through the sampler at temperature 0 (logits overwritten). */
static int32_t greedy(float *logits, int V)
{
    bg_nn_sampler s;
    bg_err err;
    if (bg_nn_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) != BG_OK) {
        fprintf(stderr, "sampler: %s\n", err.msg);
        exit(1);
    }
    int32_t t = (int32_t)bg_nn_sample(&s, logits);
    bg_nn_sampler_close(&s);
    return t;
}

static void forward(bg_nn_model *m, const int32_t *tok, int T, int pos, float *logits)
{
    bg_err err;
    if (bg_nn_forward(m, tok, T, pos, logits, &err) != BG_OK) {
        fprintf(stderr, "forward (%s): %s\n", bg_nn_model_backend(m), err.msg);
        exit(1);
    }
}

static void check_model(const char *path, const char *label)
{
    bg_nn_model *cpu = load(path, BG_BACKEND_CPU), *vk = load(path, BG_BACKEND_VULKAN);
    const bg_nn_config *c = bg_nn_model_config(cpu);
    int V = c->vocab_size, steps = c->seq_len < 40 ? c->seq_len : 40;
    printf("%s: %s vs %s\n", label, bg_nn_model_backend(vk), bg_nn_model_backend(cpu));
    float *lc = malloc((size_t)V * 4), *lv = malloc((size_t)V * 4);
    int32_t *seq = malloc((size_t)steps * 4);
    for (int i = 0; i < steps; i++)
        seq[i] = (int32_t)((i * 7919 + 1) % V);

    /* 1. decode, step by step (all steps' logits compared at once) */
    float *dc = malloc((size_t)steps * V * 4), *dv = malloc((size_t)steps * V * 4);
    for (int pos = 0; pos < steps; pos++) {
        forward(cpu, &seq[pos], 1, pos, dc + (size_t)pos * V);
        forward(vk, &seq[pos], 1, pos, dv + (size_t)pos * V);
    }
    char what[96];
    snprintf(what, sizeof(what), "%s decode logits, %d steps", label, steps);
    vt_check_close(what, dv, dc, (size_t)steps * V, TOL, TOL);
    free(dc), free(dv);

    /* 2. prefill of all steps at once */
    forward(cpu, seq, steps, 0, lc);
    forward(vk, seq, steps, 0, lv);
    snprintf(what, sizeof(what), "%s prefill %d tokens, last logits", label, steps);
    vt_check_close(what, lv, lc, (size_t)V, TOL, TOL);

    /* 3. greedy generation */
    enum { GEN = 48 };
    int32_t gc[GEN + 1] = {1}, gv[GEN + 1] = {1};
    int n = GEN < c->seq_len - 1 ? GEN : c->seq_len - 1, same = 1;
    for (int pos = 0; pos < n; pos++) {
        forward(cpu, &gc[pos], 1, pos, lc);
        forward(vk, &gv[pos], 1, pos, lv);
        gc[pos + 1] = greedy(lc, V);
        gv[pos + 1] = greedy(lv, V);
        same = same && gc[pos + 1] == gv[pos + 1];
    }
    printf("  %-44s %d tokens: %s\n", "greedy generation", n, same ? "identical" : "DIFFERENT");
    if (!same) {
        for (int i = 0; i <= n; i++)
            fprintf(stderr, "%d/%d ", gc[i], gv[i]);
        fprintf(stderr, "\n");
    }
    CHECK(same);

    /* 4. scoring: one prefix, three continuations */
    int32_t prefix[3] = {1, seq[3], seq[5]}, c1[4] = {seq[1], seq[2], seq[4], seq[7]};
    int32_t c2[1] = {seq[9]}, c3[6] = {0, 1, 2, 3, 4, 5};
    const int32_t *conts[3] = {c1, c2, c3};
    int lens[3] = {4, 1, 6};
    double sc[3], sv[3];
    bg_err err;
    CHECK(bg_nn_score(cpu, prefix, 3, conts, lens, 3, sc, &err) == BG_OK);
    CHECK(bg_nn_score(vk, prefix, 3, conts, lens, 3, sv, &err) == BG_OK);
    for (int i = 0; i < 3; i++) {
        int good = fabs(sv[i] - sc[i]) <= 1e-3 * (1.0 + fabs(sc[i]));
        printf("  score continuation %d: cpu %.6f vulkan %.6f %s (tol 1e-3*(1+|cpu|))\n", i, sc[i],
               sv[i], good ? "ok" : "FAIL");
        CHECK(good);
    }
    bg_nn_model_destroy(vk);
    bg_nn_model_destroy(cpu);
    free(lc), free(lv), free(seq);
}

/* 5. which backend `auto` gives the model at path under BG_NN_AUTO_GPU_MIN_MB=v */
static void check_auto(const char *path, const char *v, const char *want)
{
    if (v)
        setenv("BG_NN_AUTO_GPU_MIN_MB", v, 1);
    else
        unsetenv("BG_NN_AUTO_GPU_MIN_MB");
    setenv("BG_VK_ALLOW_CPU", "1", 1);
    bg_compute_opts o = {.kind = BG_BACKEND_AUTO, .threads = 1, .device_index = -1};
    bg_nn_model *m = NULL;
    bg_err err;
    if (bg_nn_model_load(path, &o, &m, &err) != BG_OK) {
        CHECK(!"auto load");
        fprintf(stderr, "auto load: %s\n", err.msg);
    } else {
        const char *got = bg_nn_model_backend(m);
        printf("  backend auto, BG_NN_AUTO_GPU_MIN_MB=%s: %s\n", v ? v : "(unset)", got);
        CHECK(strncmp(got, want, strlen(want)) == 0);
        bg_nn_model_destroy(m);
    }
    unsetenv("BG_NN_AUTO_GPU_MIN_MB");
    unsetenv("BG_VK_ALLOW_CPU");
}

int main(void)
{
    vt_env_setup();
    const char *shared = getenv("BG_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/stories260K.bin", shared ? shared : "../shared");
    if (access(path, R_OK) == 0)
        check_model(path, "stories260K");
    else
        printf("stories260K: not found at %s (set BG_SHARED_DIR); synthetic model only\n", path);

    char dir[64];
    vt_tmp_template(dir, sizeof(dir), "bg_vk_model");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char synth[sizeof(dir) + 32];
    snprintf(synth, sizeof(synth), "%s/odd.bin", dir);
    bg_nn_config cfg = {.dim = 60,
                        .hidden_dim = 97,
                        .n_layers = 2,
                        .n_heads = 6,
                        .n_kv_heads = 2,
                        .vocab_size = 77,
                        .seq_len = 64,
                        .shared_classifier = 0};
    bg_err err;
    if (bg_nn_synth_write(synth, &cfg, 4242, &err) != BG_OK) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return 1;
    }
    check_model(synth, "synthetic dim60/h97/6:2 heads");
    check_auto(synth, NULL, "cpu");
    check_auto(synth, "1", "cpu");
    check_auto(synth, "0", "vulkan");
    check_auto(synth, "-3", "cpu");
    check_auto(synth, "lots", "cpu");
    unlink(synth);
    rmdir(dir);
    bg_test_failures += vt_failures;
    CHECK_DONE("test_vk_model");
}
