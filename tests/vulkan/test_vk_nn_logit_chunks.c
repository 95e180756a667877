/*
 * test_vk_nn_logit_chunks.c — the trainer's classifier and fused loss split
 * by rows where the [rows, vocab] logits exceed one view of the device
 * (issue 13: "on any Vulkan GPU"; lavapipe's maxStorageBufferRange is
 * 128 MiB, many GPUs' 128 MiB-1 GiB). A synthetic model whose logits are
 * the only tensor over a lowered BG_VK_MAX_RANGE (48 KiB, read at device
 * open) is run on lavapipe twice: unsplit (the device's real limit) and
 * split (the lowered one, >= 3 chunks, checked from bg_compute_max_view):
 *   1. the loss is BIT-EQUAL: each row's logits, log-prob and dL/dlogits
 *      come from the same kernels over the same row, and the host sums the
 *      rows' log-probs in the same order;
 *   2. every gradient but the classifier weight's is bit-equal too (the
 *      classifier's input gradient is row by row, and everything below it
 *      follows from it); the classifier weight's gradient adds the chunks'
 *      partial sums in row order, a different float summation order of the
 *      same R = 64 products per element: |split - unsplit| <= 1e-5 *
 *      max|g| (reordering a 64-term float sum moves it by at most ~64 ulp
 *      of the largest partial, ~4e-6 relative; a chunk lost or added twice
 *      moves it by ~1/3); measured values printed;
 *   3. three AdamW steps split and unsplit: the losses within 1e-5
 *      relative (they differ only through the classifier gradient's
 *      rounding), and the split run's loss goes down. Before the split the
 *      split trainer's first step failed with BG_ELIMIT naming the op;
 *   4. bayesguard lm train --backend vulkan of that shape from scratch under
 *      the lowered limit (it failed before: "vulkan op matmul: view 0
 *      spans 131072 bytes") prints the same per-step losses as without it;
 *   5. a device whose view is below one row of logits (vocab 2048: 8 KiB a
 *      row, under BG_VK_MAX_RANGE=4096) is refused at create with
 *      BG_ELIMIT naming the row, not at the first step;
 *   6. the same split driven by the allocation limit instead of the view
 *      (BG_VK_MAX_ALLOC=49152, maxStorageBufferRange untouched: a GPU whose
 *      maxMemoryAllocationSize is below its view limit): the trainer's
 *      rows come from bg_compute_max_alloc, its loss is bit-equal to the
 *      unsplit one and its steps' losses within 1e-5; a trainer that
 *      ignored the allocation limit is refused at create (the allocator
 *      refuses the [64, 512] logits), and a row over the limit is refused
 *      at create.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_log.h"
#include "nn/nn.h"
#include "nn_test.h" /* tests/nn: the synthetic checkpoint and training options */
#include "vk_test_util.h"

#define B 4
#define T 16
#define LIMIT "49152"
#define WTOL 1e-5
#define LTOL 1e-5

static bg_compute_opts vko = {.kind = BG_BACKEND_VULKAN, .allow_cpu_device = 1, .device_index = -1};

static void ids(int32_t *v, int n, int V, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (int32_t)((seed >> 33) % (uint64_t)V);
    }
}

/* The limit the split tests lower: the view (tests 1-5) or the allocation
 * (test 6, which sets it before running the split tests again). */
static const char *g_var = "BG_VK_MAX_RANGE";

/* A trainer on lavapipe; limit: the bytes of g_var for its device, or NULL. */
static bg_nn_trainer *make(const bg_nn_ckpt *ck, const char *limit)
{
    bg_err err;
    if (limit)
        setenv(g_var, limit, 1);
    else
        unsetenv(g_var);
    bg_nn_train_opts o = nt_train_opts(B, T, 0);
    bg_nn_trainer *t = NULL;
    CHECK(bg_nn_train_create(ck, &vko, &o, &t, &err) == BG_OK, "%s", err.msg);
    unsetenv(g_var);
    return t;
}

static void test_grads(const bg_nn_ckpt *ck, const int32_t *tok, const int32_t *tgt)
{
    bg_err err;
    bg_nn_trainer *tu = make(ck, NULL), *ts = make(ck, LIMIT);
    double lu, ls;
    CHECK(bg_nn_train_grad(tu, tok, tgt, NULL, &lu, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_grad(ts, tok, tgt, NULL, &ls, &err) == BG_OK, "split: %s", err.msg);
    printf("  loss unsplit %.9f split %.9f (bit-equal required)\n", lu, ls);
    CHECK(memcmp(&lu, &ls, sizeof lu) == 0, "losses differ: %.9g vs %.9g", lu, ls);
    int equal = 0, np = bg_nn_train_nparams(tu);
    for (int i = 0; i < np; i++) {
        const char *name = bg_nn_train_param_name(tu, i);
        double d, mx;
        int same = nt_grad_cmp(tu, ts, i, &d, &mx);
        mx = mx > 1e-30 ? mx : 1e-30;
        equal += same;
        if (strcmp(name, "wcls") == 0) {
            printf("  wcls gradient: max|split - unsplit| / max|g| = %.2e (tol %.0e)\n", d / mx,
                   WTOL);
            CHECK(mx > 1e-6, "wcls gradient is zero: the test would prove nothing");
            CHECK(d / mx <= WTOL, "wcls gradient differs: %.3g of max %.3g", d, mx);
        } else {
            CHECK(same, "gradient of %s is not bit-equal (max diff %.3g of %.3g)", name, d, mx);
        }
    }
    printf("  %d of %d gradients bit-equal (all but wcls required)\n", equal, np);
    bg_nn_train_destroy(tu);
    bg_nn_train_destroy(ts);
}

static void test_steps(const bg_nn_ckpt *ck, const int32_t *tok, const int32_t *tgt)
{
    bg_err err;
    bg_nn_trainer *tu = make(ck, NULL), *ts = make(ck, LIMIT);
    double first = 0.0, ls = 0.0;
    for (int s = 0; s < 3; s++) {
        double lu;
        CHECK(bg_nn_train_step(tu, tok, tgt, NULL, &lu, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_step(ts, tok, tgt, NULL, &ls, &err) == BG_OK, "split step %d: %s", s,
              err.msg);
        double rel = fabs(ls - lu) / fabs(lu);
        printf("  step %d: loss unsplit %.7f split %.7f (rel %.1e, tol %.0e)\n", s, lu, ls, rel,
               LTOL);
        CHECK(rel <= LTOL, "step %d: losses differ", s);
        if (s == 0)
            first = ls;
    }
    CHECK(ls < first, "the split run's loss did not go down: %.6f -> %.6f", first, ls);
    bg_nn_train_destroy(tu);
    bg_nn_train_destroy(ts);
}

/* The CLI under the lowered limit and without: exit 0, the same step losses
 * (printed with 6 decimals; the steps' losses agree to ~1e-8 relative, so
 * only the print's rounding may part them: 2e-6). */
static void test_cli(const char *dir)
{
    char path[600], args[1024], out[2][8192], errb[8192], errp[700];
    snprintf(path, sizeof path, "%s/ids.txt", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    uint64_t s = 31;
    for (int i = 0; i < 2000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        fprintf(f, "%d ", (int)((s >> 33) % 512));
    }
    fclose(f);
    snprintf(errp, sizeof errp, "%s/err.txt", dir);
    setenv("BG_VK_ALLOW_CPU", "1", 1);
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args,
                 "lm train --init 16,2,4,2,40,512,%d --data ids.txt --ids --steps 3 --batch %d "
                 "--seq %d --backend vulkan --seed 3 --out out%d",
                 T, B, T, k);
        if (k)
            setenv("BG_VK_MAX_RANGE", LIMIT, 1);
        int rc = nt_run(dir, BG_CLI, args, errp, out[k], sizeof out[k], errb, sizeof errb);
        unsetenv("BG_VK_MAX_RANGE");
        CHECK(rc == 0, "lm train (%s): rc %d: %s", k ? "split" : "unsplit", rc, errb);
    }
    /* compare the "step N loss X" lines (the timings differ) */
    for (int n = 1; n <= 3; n++) {
        char key[32];
        double a = NAN, b = NAN;
        snprintf(key, sizeof key, "step %d loss ", n);
        const char *pa = strstr(out[0], key), *pb = strstr(out[1], key);
        CHECK(pa && pb, "no '%s' line: '%s' / '%s'", key, out[0], out[1]);
        CHECK(sscanf(pa + strlen(key), "%lf", &a) == 1 && sscanf(pb + strlen(key), "%lf", &b) == 1);
        printf(
            "  lm train step %d: loss %.6f unsplit, %.6f split (tol 2e-6: the print's rounding)\n",
            n, a, b);
        CHECK(fabs(a - b) <= 2e-6, "lm train step %d: losses %.6f and %.6f differ", n, a, b);
    }
    char rm[800];
    snprintf(rm, sizeof rm, "rm -rf '%s/out0' '%s/out1' '%s/ids.txt' '%s/err.txt'", dir, dir, dir,
             dir);
    CHECK(system(rm) == 0);
}

static void test_row_over_limit(const char *dir)
{
    bg_nn_config c = {16, 40, 1, 4, 2, 2048, T, 0};
    bg_nn_ckpt ck;
    bg_err err;
    nt_synth_open(dir, "w.bin", &c, &ck);
    setenv(g_var, "4096", 1);
    bg_nn_train_opts o = nt_train_opts(B, T, 0);
    bg_nn_trainer *t = NULL;
    int rc = bg_nn_train_create(&ck, &vko, &o, &t, &err);
    unsetenv(g_var);
    printf("  vocab 2048 under a 4096-byte %s: rc %d: %s\n", g_var, rc, rc ? err.msg : "");
    CHECK(rc == BG_ELIMIT && t == NULL, "create gave %d", rc);
    CHECK(strstr(err.msg, "one row of logits (vocab 2048 x 4 = 8192 bytes)") != NULL, "message: %s",
          err.msg);
    bg_nn_train_destroy(t);
    bg_nn_ckpt_close(&ck);
}

int main(void)
{
    bg_compute *probe = vt_create_or_skip("test_vk_nn_logit_chunks"); /* sets the device env */
    bg_compute_destroy(probe);
    char dir[64];
    vt_tmp_template(dir, sizeof dir, "bg_vk_logit_chunks");
    CHECK(mkdtemp(dir) != NULL);
    /* dim 16 (4 heads of 4, 2 KV), hidden 40, 2 layers, vocab 512, separate
     * classifier: logits 64 x 512 x 4 = 128 KiB; the largest other view is
     * the classifier's 512 x 16 x 4 = 32 KiB, under the 48 KiB limit */
    bg_nn_config c = {16, 40, 2, 4, 2, 512, T, 0};
    bg_nn_ckpt ck;
    nt_synth_open(dir, "s.bin", &c, &ck);

    bg_err err;
    bg_compute *lc = NULL;
    setenv("BG_VK_MAX_RANGE", LIMIT, 1);
    CHECK(bg_compute_create(&vko, &lc, &err) == BG_OK, "%s", err.msg);
    unsetenv("BG_VK_MAX_RANGE");
    size_t rows = bg_compute_max_view(lc) / (4 * (size_t)c.vocab_size);
    size_t chunks = (B * T + rows - 1) / rows;
    printf("  limit %s bytes: max view %zu, %zu rows per chunk, %zu chunks of %d rows\n", LIMIT,
           bg_compute_max_view(lc), rows, chunks, B * T);
    CHECK(chunks >= 3, "the test needs >= 3 chunks, got %zu", chunks);
    bg_compute_destroy(lc);

    int32_t tok[B * T], tgt[B * T];
    ids(tok, B * T, c.vocab_size, 21);
    ids(tgt, B * T, c.vocab_size, 22);
    test_grads(&ck, tok, tgt);
    test_steps(&ck, tok, tgt);
    test_cli(dir);
    test_row_over_limit(dir);

    /* 6. the allocation limit alone */
    g_var = "BG_VK_MAX_ALLOC";
    setenv(g_var, LIMIT, 1);
    CHECK(bg_compute_create(&vko, &lc, &err) == BG_OK, "%s", err.msg);
    unsetenv(g_var);
    size_t arows = bg_compute_max_alloc(lc) / (4 * (size_t)c.vocab_size);
    printf("  allocation limit %s bytes: max alloc %zu, max view %zu; %zu rows per chunk\n", LIMIT,
           bg_compute_max_alloc(lc), bg_compute_max_view(lc), arows);
    CHECK(bg_compute_max_alloc(lc) <= 49152 && bg_compute_max_view(lc) > 4 * (size_t)B * T * 512,
          "the view must hold all the logits, only the allocation limit may split them");
    CHECK((B * T + arows - 1) / arows >= 3, "%zu rows: the test needs >= 3 chunks", arows);
    bg_compute_destroy(lc);
    bg_nn_trainer *ta = make(&ck, LIMIT);
    bg_nn_train_mem mem;
    bg_nn_train_memory(ta, &mem);
    CHECK((size_t)mem.logit_rows <= arows && mem.logit_rows < B * T, "logit rows %d",
          mem.logit_rows);
    bg_nn_train_destroy(ta);
    test_grads(&ck, tok, tgt);
    test_steps(&ck, tok, tgt);
    test_row_over_limit(dir);
    bg_nn_ckpt_close(&ck);
    rmdir(dir);
    bg_test_failures += vt_failures;
    CHECK_DONE("test_vk_nn_logit_chunks");
}
