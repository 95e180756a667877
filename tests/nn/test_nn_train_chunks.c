/*
 * test_nn_train_chunks.c — the trainer's logits as one chunk of rows reused
 * chunk after chunk (issue 13 item 5, "a stated budget"; nn_train.c's
 * logit_rows and classifier_loss). Each case runs a trainer whose logits
 * fit one chunk (the default budget) against one forced by the logits
 * budget (bg_nn_train_opts.logit_budget, 24 rows of V floats) into
 * ceil(128 / 24) = 6 chunks of 22 rows, the last of 18 (a short tail), on
 * the backend BG_TEST_BACKEND names (cpu by default; vulkan on lavapipe as
 * test_vk_backend_nn_train_chunks), for:
 *   - stories260K (vocab 512, shared classifier), full fine-tuning;
 *   - stories260K, LoRA r = 4 (classifier frozen: no weight gradient, dx
 *     still needed), with recompute on the chunked side;
 *   - a synthetic model with a separate classifier, full fine-tuning, with
 *     a logit bias set on both.
 * Checked:
 *   1. the loss of a gradient run, and every row's log-prob of an eval, are
 *      BIT-EQUAL: each row's logits, log-prob and dL/dlogits come from the
 *      same kernels over the same row;
 *   2. every gradient but the classifier weight's (wcls, or tok_emb when
 *      shared) is bit-equal: the classifier's input gradient is row by row
 *      and all below it follows from it; the classifier weight's gradient
 *      sums the chunks' partials in row order, another float order of the
 *      same 128 products per element: |chunked - single| <= 1e-5 * max|g|
 *      (a reordered 128-term float sum moves by a few ulp of its largest
 *      partial, ~1e-6 relative; one chunk's backward skipped or run twice
 *      moves it by ~1/6). Measured values are printed;
 *   3. five AdamW steps (lr 3e-3) where the classifier trains: losses
 *      within 1e-5 relative (they differ only through that gradient's
 *      rounding), going down; with it frozen every gradient is bit-equal,
 *      so the steps are too (one runs before the gradient check);
 *   4. an eval (forward only) after a gradient run leaves every gradient
 *      bit-unchanged: no classifier backward runs in it;
 *   5. bg_nn_train_logits (one row) is bit-equal, and
 *      bg_nn_train_logits_batch of more sequences than the chunk holds
 *      (several recordings) agrees with the single-chunk trainer's;
 *   6. the accounted memory: scratch is smaller by exactly
 *      (128 - 22) rows x V x 4 bytes (by 2x that with the logit bias: its
 *      buffer is one chunk too), the peak by at least that, and
 *      logit_rows reports 128 and 22;
 *   7. a budget below one row is refused at create, naming the budget.
 * Threads: one; the CPU backend runs 2 workers.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bg_test.h"
#include "nn/nn.h"
#include "nn_test.h"

#define B 4
#define T 32
#define R (B * T)
#define CHUNK_ROWS 24 /* the forced budget, in rows: 6 chunks of 22 rows */
#define WTOL 1e-5
#define LTOL 1e-5
#define STEPS 5

static bg_compute_opts copts = {.kind = BG_BACKEND_CPU, .threads = 2, .device_index = -1};

static void ids(int32_t *v, int n, int V, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (int32_t)((seed >> 33) % (uint64_t)V);
    }
}

static bg_nn_trainer *make(const bg_nn_ckpt *ck, int rank, int recompute, size_t budget,
                           const float *bias)
{
    bg_err err;
    bg_nn_train_opts o = nt_train_opts(B, T, rank);
    o.adamw.lr = 3e-3f; /* nt_story_opts' (1e-2 makes full fine-tuning's loss climb at first,
                           and rounding differences grow with it) */
    o.recompute = recompute;
    o.logit_budget = budget;
    bg_nn_trainer *t = NULL;
    CHECK(bg_nn_train_create(ck, &copts, &o, &t, &err) == BG_OK, "%s", err.msg);
    if (bias)
        CHECK(bg_nn_train_set_logit_bias(t, bias, &err) == BG_OK, "%s", err.msg);
    return t;
}

/* Every gradient of a and b: bit-equal but the classifier weight's (cls),
 * that one within WTOL of its largest entry. Returns its relative diff. */
static double compare_grads(bg_nn_trainer *a, bg_nn_trainer *b, const char *cls)
{
    double wrel = 0.0;
    int np = bg_nn_train_nparams(a), equal = 0;
    CHECK(np == bg_nn_train_nparams(b));
    for (int i = 0; i < np; i++) {
        const char *name = bg_nn_train_param_name(a, i);
        double d, mx;
        int same = nt_grad_cmp(a, b, i, &d, &mx);
        equal += same;
        if (cls && strcmp(name, cls) == 0) {
            CHECK(mx > 1e-6, "%s gradient is zero: the test would prove nothing", name);
            wrel = d / mx;
            CHECK(wrel <= WTOL, "%s gradient differs: %.3g of max %.3g", name, d, mx);
        } else {
            CHECK(same, "gradient of %s is not bit-equal (max diff %.3g of %.3g)", name, d, mx);
        }
    }
    printf("    %d of %d gradients bit-equal (all but %s required)", equal, np, cls ? cls : "none");
    return wrel;
}

static float *grads_copy(bg_nn_trainer *t, size_t *total)
{
    bg_err err;
    size_t n = 0;
    for (int i = 0; i < bg_nn_train_nparams(t); i++)
        n += bg_nn_train_param_size(t, i);
    float *g = malloc(4 * n), *p = g;
    CHECK(g != NULL);
    for (int i = 0; i < bg_nn_train_nparams(t); i++) {
        CHECK(bg_nn_train_grad_read(t, i, p, &err) == BG_OK, "%s", err.msg);
        p += bg_nn_train_param_size(t, i);
    }
    *total = n;
    return g;
}

/* rank: LoRA rank (0 full); cls: the classifier weight's tensor name, NULL
 * when it is frozen; bias: a logit bias for both, or NULL. */
static void run_case(const char *label, const bg_nn_ckpt *ck, int rank, const char *cls,
                     int with_bias)
{
    bg_err err;
    int V = ck->cfg.vocab_size;
    size_t row = 4 * (size_t)V;
    float *bias = NULL;
    if (with_bias) {
        bias = malloc(row);
        for (int j = 0; j < V; j++)
            bias[j] = 0.01f * (float)(j % 13) - 0.05f;
    }
    printf("  %s:\n", label);
    bg_nn_trainer *ts = make(ck, rank, 0, 0, bias);
    bg_nn_trainer *tc = make(ck, rank, rank > 0, CHUNK_ROWS * row, bias);

    /* 6. the accounting */
    bg_nn_train_mem ms, mc;
    bg_nn_train_memory(ts, &ms);
    bg_nn_train_memory(tc, &mc);
    size_t saved = (size_t)(R - 22) * row * (with_bias ? 2 : 1);
    printf("    logits by %d rows / by %d rows; scratch %zu -> %zu bytes (-%zu, expected -%zu); "
           "peak %.3f -> %.3f MiB\n",
           ms.logit_rows, mc.logit_rows, ms.scratch, mc.scratch, ms.scratch - mc.scratch, saved,
           ms.peak / 1048576.0, mc.peak / 1048576.0);
    CHECK(ms.logit_rows == R && mc.logit_rows == 22, "logit rows %d and %d; expected %d and 22",
          ms.logit_rows, mc.logit_rows, R);
    CHECK(ms.scratch - mc.scratch == saved, "scratch shrank by %zu bytes; expected %zu",
          ms.scratch - mc.scratch, saved);
    if (rank == 0) /* (LoRA's chunked side also turns recompute on) */
        CHECK(ms.activations == mc.activations);
    CHECK(ms.peak >= mc.peak + saved, "the peak shrank by %zu bytes; expected >= %zu",
          ms.peak - mc.peak, saved);

    int32_t tok[R], tgt[R], tok2[R], tgt2[R];
    ids(tok, R, V, 21);
    ids(tgt, R, V, 22);
    ids(tok2, R, V, 23);
    ids(tgt2, R, V, 24);
    if (rank) { /* B starts at zero (A's gradient would be 0): one step first on both */
        double l;
        CHECK(bg_nn_train_step(ts, tok2, tgt2, NULL, &l, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_step(tc, tok2, tgt2, NULL, &l, &err) == BG_OK, "%s", err.msg);
    }

    /* 1, 2: the loss bit-equal; the gradients */
    double ls, lc;
    CHECK(bg_nn_train_grad(ts, tok, tgt, NULL, &ls, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_grad(tc, tok, tgt, NULL, &lc, &err) == BG_OK, "chunked: %s", err.msg);
    printf("    loss single %.9f chunked %.9f (bit-equal required)\n", ls, lc);
    CHECK(memcmp(&ls, &lc, sizeof ls) == 0, "losses differ: %.9g vs %.9g", ls, lc);
    double wrel = compare_grads(ts, tc, cls);
    if (cls)
        printf("; %s: max|chunked - single| / max|g| = %.2e (tol %.0e)", cls, wrel, WTOL);
    printf("\n");

    /* 4. an eval leaves the gradients as they are; its log-probs bit-equal */
    size_t n0, n1;
    float *g0 = grads_copy(tc, &n0);
    float lps[R], lpc[R];
    CHECK(bg_nn_train_eval(ts, tok2, tgt2, NULL, NULL, lps, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_eval(tc, tok2, tgt2, NULL, NULL, lpc, &err) == BG_OK, "%s", err.msg);
    float *g1 = grads_copy(tc, &n1);
    CHECK(n0 == n1 && memcmp(g0, g1, 4 * n0) == 0, "an eval changed the gradients");
    CHECK(memcmp(lps, lpc, sizeof lps) == 0, "eval log-probs differ");
    free(g0), free(g1);

    /* 5. logits: one row bit-equal; a batch of 40 one-token sequences (two
     * recordings of <= 22 on the chunked trainer, one on the single) */
    float *a = malloc(40 * row), *b = malloc(40 * row);
    CHECK(a && b);
    CHECK(bg_nn_train_logits(ts, tok, 9, a, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits(tc, tok, 9, b, &err) == BG_OK, "%s", err.msg);
    CHECK(memcmp(a, b, row) == 0, "bg_nn_train_logits differs");
    CHECK(bg_nn_train_logits_batch(ts, tok, 40, 1, a, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_nn_train_logits_batch(tc, tok, 40, 1, b, &err) == BG_OK, "%s", err.msg);
    double mx = 0.0, dd = 0.0;
    for (size_t j = 0; j < 40 * (size_t)V; j++) {
        double e = fabs((double)a[j] - b[j]);
        dd = e > dd ? e : dd;
        mx = fabs(a[j]) > mx ? fabs(a[j]) : mx;
    }
    printf("    logits batch of 40: max|chunked - single| / max = %.2e (tol 1e-6)%s\n", dd / mx,
           memcmp(a, b, 40 * row) == 0 ? ", bit-equal" : "");
    CHECK(dd <= 1e-6 * mx, "bg_nn_train_logits_batch differs by %.3g of %.3g", dd, mx);
    free(a), free(b);

    /* 3. five AdamW steps (not with the classifier frozen: every gradient
     * is bit-equal there, so are the steps; the first step above ran) */
    double first = 0.0, last = 0.0;
    if (!cls) {
        bg_nn_train_destroy(ts);
        bg_nn_train_destroy(tc);
        free(bias);
        return;
    }
    printf("    steps (single / chunked, rel):");
    for (int s = 0; s < STEPS; s++) {
        double lu;
        CHECK(bg_nn_train_step(ts, tok, tgt, NULL, &lu, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_nn_train_step(tc, tok, tgt, NULL, &last, &err) == BG_OK, "%s", err.msg);
        double rel = fabs(last - lu) / fabs(lu);
        printf(" %.7f/%.7f/%.1e", lu, last, rel);
        CHECK(rel <= LTOL, "step %d: losses %.9g and %.9g differ by %.2g relative", s, lu, last,
              rel);
        if (s == 0)
            first = last;
    }
    printf(" (tol %.0e)\n", LTOL);
    CHECK(last < first, "the chunked run's loss did not go down: %.6f -> %.6f", first, last);
    bg_nn_train_destroy(ts);
    bg_nn_train_destroy(tc);
    free(bias);
}

int main(void)
{
    const char *be = getenv("BG_TEST_BACKEND");
    if (be) {
        int kind = bg_backend_kind_parse(be);
        CHECK(kind >= 0, "BG_TEST_BACKEND=%s: expected cpu|vulkan", be);
        copts.kind = (bg_backend_kind)kind;
        copts.allow_cpu_device = 1;
    }
    bg_compute *probe;
    bg_err err;
    if (bg_compute_create(&copts, &probe, &err) != BG_OK) {
        printf("SKIP: no %s backend: %s\n", be ? be : "cpu", err.msg);
        return BG_TEST_SKIP;
    }
    printf("backend: %s; chunks of 22 rows of %d (budget %d rows)\n", bg_compute_describe(probe), R,
           CHUNK_ROWS);
    bg_compute_destroy(probe);
    const char *dir = nt_tmpdir();

    /* 7. a budget below one row */
    bg_nn_config sc = {32, 64, 2, 4, 2, 300, T, 0};
    bg_nn_ckpt ck;
    nt_synth_open(dir, "c.bin", &sc, &ck);
    bg_nn_train_opts o = nt_train_opts(B, T, 0);
    o.logit_budget = 4 * 300 - 1;
    bg_nn_trainer *t = NULL;
    CHECK(bg_nn_train_create(&ck, &copts, &o, &t, &err) == BG_EINVAL && t == NULL);
    CHECK(strstr(err.msg, "logits budget of 1199 bytes") != NULL, "message: %s", err.msg);
    CHECK(err.field && !strcmp(err.field, "logit_budget"), "field %s",
          err.field ? err.field : "(none)");
    o.logit_budget = 4 * 300; /* one row: 128 chunks of 1 */
    CHECK(bg_nn_train_create(&ck, &copts, &o, &t, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_mem m;
    bg_nn_train_memory(t, &m);
    CHECK(m.logit_rows == 1, "one row's budget gave %d rows", m.logit_rows);
    double l1;
    int32_t tok[R], tgt[R];
    ids(tok, R, 300, 5);
    ids(tgt, R, 300, 6);
    CHECK(bg_nn_train_grad(t, tok, tgt, NULL, &l1, &err) == BG_OK, "%s", err.msg);
    bg_nn_train_destroy(t);

    run_case("synthetic, separate classifier (vocab 300), full, logit bias", &ck, 0, "wcls", 1);
    bg_nn_ckpt_close(&ck);

    char mpath[600];
    if (!nt_stories_path(mpath, sizeof mpath)) {
        printf("SKIP stories260K parts: %s not readable\n", mpath);
    } else {
        CHECK(bg_nn_ckpt_open(&ck, mpath, &err) == BG_OK, "%s", err.msg);
        CHECK(ck.cfg.shared_classifier, "stories260K's classifier is the embedding");
        run_case("stories260K, full fine-tuning", &ck, 0, "tok_emb", 0);
        run_case("stories260K, LoRA r=4 (recompute on the chunked side)", &ck, 4, NULL, 0);
        bg_nn_ckpt_close(&ck);
    }
    rmdir(dir);
    CHECK_DONE("test_nn_train_chunks");
}
