/*
 * test_nn_model.c — the transformer on the CPU backend against the plain
 * scalar forward (nn_ref.c) on synthetic checkpoints with odd sizes (dim 36,
 * hidden 100, 6 heads over 2 or 3 KV heads, a separate classifier, a
 * context longer than one prefill chunk) and, when present, the real
 * stories260K checkpoint.
 *
 * Checked per model:
 *   1. decode logits at every step vs the reference: |d| <= 2e-4 + 2e-4|ref|
 *   2. greedy generation: the same token ids as a greedy reference loop
 *   3. prefill of T tokens: same last logits as T single-token decodes
 *      (same tolerance; different summation order only)
 *   4. bg_nn_score == sum of per-token log-softmax from reference decode,
 *      |d| <= 1e-3 * (1 + |ref|) per continuation
 * Threads: 1 and 2 (the split paths). Seeds fixed.
 */
#include <math.h>
#include <unistd.h>

#include "compute/compute_ref.h"
#include "nn_test.h"

#define TOL 2e-4

static double max_rel_err(const float *got, const float *want, int n)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (TOL + TOL * fabs(want[i]));
        worst = e > worst || isnan(got[i]) ? (isnan(got[i]) ? INFINITY : e) : worst;
    }
    return worst;
}

static int32_t tok(uint32_t *s, int vocab)
{
    *s = *s * 1664525u + 1013904223u;
    return (int32_t)((*s >> 8) % (uint32_t)vocab);
}

static void check_model(const char *path, const char *label, int threads, int n_steps)
{
    bg_err err;
    bg_nn_ckpt ck;
    if (bg_nn_ckpt_open(&ck, path, &err) != BG_OK) {
        CHECK(0, "%s: open: %s", label, err.msg);
        return;
    }
    const bg_nn_config *c = &ck.cfg;
    bg_compute_opts co = {BG_BACKEND_CPU, threads, 0, -1};
    bg_nn_model *m = NULL;
    bg_nn_ref *ref = NULL;
    if (bg_nn_model_create(&ck, &co, &m, &err) != BG_OK || bg_nn_ref_create(&ck, &ref, &err)) {
        CHECK(0, "%s: create: %s", label, err.msg);
        bg_nn_model_destroy(m);
        bg_nn_ckpt_close(&ck);
        return;
    }
    int V = c->vocab_size;
    int steps = n_steps < c->seq_len ? n_steps : c->seq_len;
    float *logits = malloc(sizeof(float) * V), *lp_ref = malloc(sizeof(float) * steps);
    int32_t *seq = malloc(sizeof(int32_t) * steps);
    uint32_t s = 12345;
    for (int i = 0; i < steps; i++)
        seq[i] = tok(&s, V);

    /* 1. decode step by step vs reference; keep ref log p(seq[i+1]) for 4. */
    double worst = 0;
    for (int pos = 0; pos < steps; pos++) {
        const float *want = bg_nn_ref_forward(ref, seq[pos], pos);
        if (bg_nn_forward(m, &seq[pos], 1, pos, logits, &err) != BG_OK) {
            CHECK(0, "%s: forward: %s", label, err.msg);
            break;
        }
        double e = max_rel_err(logits, want, V);
        worst = e > worst ? e : worst;
        if (pos + 1 < steps)
            bg_ref_logsoftmax_gather(&lp_ref[pos], want, &seq[pos + 1], 1, V);
    }
    printf("%s (%d threads): decode %d steps, worst error %.3f of tolerance %g+%g|ref|\n", label,
           threads, steps, worst, TOL, TOL);
    CHECK(worst <= 1.0, "%s: decode logits differ from the reference (%.2fx tolerance)", label,
          worst);

    /* 3. prefill of all steps (chunked when > 128) vs decode's last logits */
    const float *want_last = bg_nn_ref_forward(ref, seq[steps - 1], steps - 1);
    float *pre = malloc(sizeof(float) * V);
    memcpy(logits, want_last, sizeof(float) * V);
    CHECK(bg_nn_forward(m, seq, steps, 0, pre, &err) == BG_OK, "%s: prefill: %s", label, err.msg);
    worst = max_rel_err(pre, logits, V);
    printf("%s: prefill of %d tokens vs decode: worst error %.3f of tolerance\n", label, steps,
           worst);
    CHECK(worst <= 1.0, "%s: prefill logits differ (%.2fx tolerance)", label, worst);

    /* 4. score: prefix seq[0..3), continuations = slices of seq */
    int np = 3;
    const int32_t *conts[3] = {seq + np, seq + np, seq + np};
    int lens[3] = {1, 5, steps - np};
    double got[3];
    CHECK(bg_nn_score(m, seq, np, conts, lens, 3, got, &err) == BG_OK, "%s: score: %s", label,
          err.msg);
    for (int i = 0; i < 3; i++) {
        double want = 0;
        for (int t = 0; t < lens[i]; t++)
            want += lp_ref[np - 1 + t];
        printf("%s: score continuation %d (%d tokens): %.6f, reference %.6f\n", label, i, lens[i],
               got[i], want);
        CHECK(fabs(got[i] - want) <= 1e-3 * (1 + fabs(want)), "%s: score %d: %f vs %f", label, i,
              got[i], want);
    }

    /* 2. greedy generation vs a greedy reference loop */
    int gen = 40 < c->seq_len - 1 ? 40 : c->seq_len - 1;
    int32_t prompt = 1 % V, *out = malloc(sizeof(int32_t) * gen);
    int n_out = 0;
    bg_nn_sampler smp;
    CHECK(bg_nn_sampler_init(&smp, V, 0.0f, 1.0f, 7, &err) == BG_OK, "sampler");
    CHECK(bg_nn_generate(m, &prompt, 1, gen, &smp, out, &n_out, &err) == BG_OK, "%s: generate: %s",
          label, err.msg);
    CHECK(n_out == gen, "%s: generated %d of %d", label, n_out, gen);
    int32_t cur = prompt, same = 1;
    for (int i = 0; i < n_out; i++) {
        const float *l = bg_nn_ref_forward(ref, cur, i);
        int best = 0;
        for (int j = 1; j < V; j++)
            best = l[j] > l[best] ? j : best;
        if (best != out[i]) {
            same = 0;
            printf("%s: greedy step %d: model %d, reference %d\n", label, i, out[i], best);
            break;
        }
        cur = best;
    }
    CHECK(same, "%s: greedy generation differs from the reference", label);
    printf("%s: greedy generation of %d tokens identical\n", label, n_out);

    /* generation stops at the context: a prompt of seq_len - 2 tokens
     * leaves room for 3 new ids (the last predicted from a full context) */
    if (c->seq_len >= 3 && c->seq_len - 2 <= steps) {
        int32_t more[8];
        n_out = 0;
        CHECK(bg_nn_generate(m, seq, c->seq_len - 2, 8, &smp, more, &n_out, &err) == BG_OK &&
                  n_out == 3,
              "%s: generate at the end of the context gave %d ids (want 3): %s", label, n_out,
              err.msg);
    }

    /* errors: token out of range, position past the context */
    int32_t bad = V;
    CHECK(bg_nn_forward(m, &bad, 1, 0, logits, &err) == BG_EINVAL &&
              strstr(err.msg, "out of range"),
          "%s: bad token accepted: %s", label, err.msg);
    CHECK(bg_nn_forward(m, seq, 2, c->seq_len - 1, logits, &err) == BG_EINVAL,
          "%s: position past the context accepted", label);

    bg_nn_sampler_close(&smp);
    free(out);
    free(pre);
    free(seq);
    free(logits);
    free(lp_ref);
    bg_nn_ref_destroy(ref);
    bg_nn_model_destroy(m);
    bg_nn_ckpt_close(&ck);
}

int main(void)
{
    const char *dir = nt_tmpdir();
    static const struct {
        const char *name;
        bg_nn_config cfg;
        int steps;
    } synth[] = {
        {"synthetic dim36 h100 6/2 heads shared", {36, 100, 2, 6, 2, 97, 40, 1}, 40},
        {"synthetic dim36 h100 6/3 heads separate cls, 2 chunks",
         {36, 100, 2, 6, 3, 53, 140, 0},
         140},
        {"synthetic dim24 h52 4/4 heads separate cls", {24, 52, 3, 4, 4, 31, 12, 0}, 12},
    };
    char path[600];
    for (size_t i = 0; i < sizeof synth / sizeof synth[0]; i++) {
        bg_err err;
        snprintf(path, sizeof path, "%s/synth%zu.bin", dir, i);
        if (bg_nn_synth_write(path, &synth[i].cfg, 100 + i, &err) != BG_OK) {
            CHECK(0, "synth write: %s", err.msg);
            continue;
        }
        check_model(path, synth[i].name, 1, synth[i].steps);
        check_model(path, synth[i].name, 2, synth[i].steps);
        unlink(path);
    }
    rmdir(dir);

    const char *shared = getenv("BG_SHARED_DIR");
    snprintf(path, sizeof path, "%s/models/stories260K.bin", shared ? shared : "../shared");
    if (access(path, R_OK) == 0)
        check_model(path, "stories260K", 2, 64);
    else
        printf("stories260K: not found at %s (BG_SHARED_DIR); that part is skipped\n", path);
    CHECK_DONE("test_nn_model");
}
