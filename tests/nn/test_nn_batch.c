/*
 * test_nn_batch.c — bg_nn_score_batch (lib/nn/nn_batch.c) against the
 * one-sequence-at-a-time bg_nn_score, item by item, on a synthetic
 * checkpoint with odd sizes (dim 36, 6 heads over 2 KV heads, a separate
 * classifier, a context longer than one prefill chunk) and, when present,
 * stories260K.
 *
 * Checked per model and backend (BG_TEST_BACKEND=vulkan: lavapipe admitted;
 * default cpu with 1, 2 and 3 threads: with 2 and 3 a pass runs as
 * groups on compute lanes, so each item is checked against the
 * one-at-a-time path whatever the lane count; ctest runs it again with
 * BG_CPU_KERNEL=avx2, whose shared-head attention sums differently,
 * skipping where the CPU lacks it):
 *   1. the lm_theory shape: a shared head, n theories of different lengths
 *      (some sharing their first tokens: a branching trie), each with two
 *      continuations sharing their first token, one longer continuation and
 *      a duplicate item: |batch - score| <= 1e-4 nats per item
 *   2. the same call again (the head held in the KV cache) gives the same
 *      bits; after bg_nn_score on another prefix has overwritten the
 *      cache, again within 1e-4; the items of the first k theories alone
 *      give the same bits as in the whole batch (CPU; k = 1 too, where the
 *      theory's whole prefix is the held head)
 *   3. items with no shared head (prefix = BOS only, mixed prefixes)
 *   4. more rows than one pass holds (several passes), within 1e-4
 *   5. bad items (no continuation, an id out of range, longer than the
 *      context) are EINVAL naming the item, and the next call still works
 *   6. the lanes themselves (bg_compute_run_lanes, compute.h): as many
 *      run at once as the CPU backend has threads, more are claimed in
 *      turn; each lane's ops on its own part of a shared buffer; 0 or more
 *      than BG_COMPUTE_MAX_LANES lanes, or a call while recording, refused
 *      (EINVAL) without running anything
 * Every batch value is checked against bg_nn_score of its item, computed
 * once per item and reused by parts 1, 2 and 3 (2026-12-07: it was
 * computed again for each, three times the same forwards, most of the
 * time on lavapipe): bg_nn_score runs its whole prefix from position 0
 * on every call (nn_model.c), so a second call gives the same bits.
 * Prints the largest error and the time of one 16-theory call both ways
 * (informational: timings are not asserted). Seeds fixed.
 */
#include <math.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_assert.h"
#include "nn_test.h"

#define TOL 1e-4 /* nats: float summation order only */

static uint32_t rng = 12345;

static int32_t tok(int vocab)
{
    rng = rng * 1664525u + 1013904223u;
    return (int32_t)(2 + (rng >> 8) % (uint32_t)(vocab - 2));
}

static double now_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A set of items over token storage it owns. */
typedef struct set {
    bg_nn_item it[512];
    int32_t store[65536];
    int n, used;
} set;

static int32_t *take(set *s, int n)
{
    BG_ASSERT(s->used + n <= (int)(sizeof s->store / sizeof s->store[0]), "test storage");
    int32_t *p = s->store + s->used;
    s->used += n;
    return p;
}

/* head tokens, then n_th theories of 3..max_rest tokens (every third shares
 * its first 2 tokens with the one before), each followed by [a, x], [a, y]
 * and one 5-token continuation; item 1 is repeated at the end. */
static void theory_set(set *s, int V, int head, int n_th, int max_rest)
{
    s->n = s->used = 0;
    int32_t *h = take(s, head);
    h[0] = 1;
    for (int i = 1; i < head; i++)
        h[i] = tok(V);
    int32_t *x = take(s, 2), *y = take(s, 2), *lng = take(s, 5);
    x[0] = y[0] = tok(V);
    x[1] = tok(V);
    y[1] = tok(V);
    for (int i = 0; i < 5; i++)
        lng[i] = tok(V);
    const int32_t *prev = NULL;
    for (int t = 0; t < n_th; t++) {
        int r = 3 + (int)(tok(V) % (max_rest - 2));
        int32_t *p = take(s, head + r);
        memcpy(p, h, sizeof *p * (size_t)head);
        for (int i = 0; i < r; i++)
            p[head + i] = tok(V);
        if (prev && t % 3 == 2)
            memcpy(p + head, prev + head, 2 * sizeof *p);
        prev = p;
        s->it[s->n++] = (bg_nn_item){p, head + r, x, 2};
        s->it[s->n++] = (bg_nn_item){p, head + r, y, 2};
        s->it[s->n++] = (bg_nn_item){p, head + r, lng, 5};
    }
    s->it[s->n] = s->it[1];
    s->n++;
}

/* Checks got[] against bg_nn_score of each item, computed once per item
 * and reused by every check of the same items (want[i] valid for i <
 * *n_want; see the header). Returns the largest |batch - score|. */
static double worst_vs_score(bg_nn_model *m, const set *s, const double *got, double *want,
                             int *n_want, const char *what)
{
    double worst = 0;
    for (int i = 0; i < s->n; i++) {
        const bg_nn_item *it = &s->it[i];
        if (i >= *n_want) {
            bg_err err;
            const int32_t *c = it->cont;
            int rc = bg_nn_score(m, it->prefix, it->n_prefix, &c, &it->n_cont, 1, &want[i], &err);
            CHECK(rc == BG_OK, "%s: score item %d: %s", what, i, err.msg);
            *n_want = i + 1;
        }
        double e = fabs(got[i] - want[i]);
        CHECK(e <= TOL, "%s: item %d: batch %.8f, score %.8f, |d| %.3g > %.0e", what, i, got[i],
              want[i], e, TOL);
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* quick (lavapipe, where each op costs ~100 us): parts 1, 2, 3, 5 only. */
static void check_model(const char *path, const char *label, const bg_compute_opts *co, int quick)
{
    bg_err err;
    bg_nn_model *m = NULL;
    if (bg_nn_model_load(path, co, &m, &err) != BG_OK) {
        CHECK(0, "%s: load: %s", label, err.msg);
        return;
    }
    const bg_nn_config *c = bg_nn_model_config(m);
    int V = c->vocab_size;
    static set s, s2;
    static double got[512], again[512], want[512];
    int n_want = 0; /* want[0..n_want): bg_nn_score of s's items, then s2's */
    char what[160];

    /* 1, 2: the lm_theory shape, then again with the head held */
    int head = c->seq_len >= 256 ? 40 : 20, rest = c->seq_len >= 256 ? 50 : 30;
    theory_set(&s, V, head, 16, rest);
    snprintf(what, sizeof what, "%s %s theories", label, bg_nn_model_backend(m));
    CHECK(bg_nn_score_batch(m, s.it, s.n, got, &err) == BG_OK, "%s: %s", what, err.msg);
    CHECK(bg_nn_score_batch(m, s.it, s.n, again, &err) == BG_OK, "%s: %s", what, err.msg);
    for (int i = 0; i < s.n; i++)
        CHECK(got[i] == again[i], "%s: item %d: %.9g then %.9g with the head held", what, i, got[i],
              again[i]);
    /* scores every item: leaves another prefix in the cache */
    double w1 = worst_vs_score(m, &s, got, want, &n_want, what);
    CHECK(bg_nn_score_batch(m, s.it, s.n, again, &err) == BG_OK, "%s: %s", what, err.msg);
    double w2 = worst_vs_score(m, &s, again, want, &n_want, what);
    printf("%s: %d items, max |batch - score| %.2e then %.2e nats (tolerance %.0e)\n", what, s.n,
           w1, w2, TOL);

    /* 2b: an item's score does not depend on what else is in its batch
     * (the sampled path scores subsets of the listed theories, and
     * test_lm_gfn holds the two verdicts to 1e-9): the items of the first
     * k theories alone, bit for bit (k = 1: one theory alone makes its
     * whole prefix the shared head, run by bg__nn_hold: the same bits only
     * because the hold attends with the batch's op) */
    for (int k = 1; !quick && k < 16; k += 3) {
        CHECK(bg_nn_score_batch(m, s.it, 3 * k, got, &err) == BG_OK, "%s: %s", what, err.msg);
        for (int i = 0; i < 3 * k; i++)
            CHECK(got[i] == again[i], "%s: item %d among the first %d theories: %.9g, %.9g in all",
                  what, i, k, got[i], again[i]);
    }

    /* 2c: the weights packed once (bg_compute_pack, nn_model.c) change no
     * bit: the same model loaded with BG_NN_NO_PACK (every product packs
     * per call), the same items, bit for bit */
    if (!quick) {
        bg_nn_model *u = NULL;
        setenv("BG_NN_NO_PACK", "1", 1);
        int lrc = bg_nn_model_load(path, co, &u, &err);
        unsetenv("BG_NN_NO_PACK");
        CHECK(lrc == BG_OK, "%s: load unpacked: %s", what, err.msg);
        static double unp[512];
        CHECK(bg_nn_score_batch(u, s.it, s.n, unp, &err) == BG_OK, "%s: %s", what, err.msg);
        for (int i = 0; i < s.n; i++)
            CHECK(unp[i] == again[i], "%s: item %d: %.9g packed, %.9g unpacked", what, i, again[i],
                  unp[i]);
        const int32_t *cs[1] = {s.it[0].cont};
        int lens[1] = {s.it[0].n_cont};
        double a1, a2;
        CHECK(bg_nn_score(m, s.it[0].prefix, s.it[0].n_prefix, cs, lens, 1, &a1, &err) == BG_OK &&
                  bg_nn_score(u, s.it[0].prefix, s.it[0].n_prefix, cs, lens, 1, &a2, &err) == BG_OK,
              "%s: score: %s", what, err.msg);
        CHECK(a1 == a2, "%s: bg_nn_score %.9g packed, %.9g unpacked", what, a1, a2);
        bg_nn_model_destroy(u);
    }

    /* 3: no shared head: BOS-only prefixes beside the theories */
    s2 = s;
    int32_t *bos = take(&s2, 1), *c1 = take(&s2, 3);
    bos[0] = 1;
    for (int i = 0; i < 3; i++)
        c1[i] = tok(V);
    s2.it[s2.n++] = (bg_nn_item){bos, 1, c1, 3};
    s2.it[s2.n++] = (bg_nn_item){bos, 1, c1, 1};
    s2.it[s2.n++] = (bg_nn_item){c1, 2, c1 + 2, 1}; /* starts without BOS */
    snprintf(what, sizeof what, "%s %s mixed heads", label, bg_nn_model_backend(m));
    CHECK(bg_nn_score_batch(m, s2.it, s2.n, got, &err) == BG_OK, "%s: %s", what, err.msg);
    /* s2's first s.n items are s's: their scores are want[0..s.n) */
    printf("%s: max |d| %.2e\n", what, worst_vs_score(m, &s2, got, want, &n_want, what));

    /* 4: several passes (more than 1024 trie rows) */
    if (!quick) {
        int nth = 1100 / (c->seq_len / 3) + 2;
        theory_set(&s2, V, 8, nth * 3 > 160 ? 160 : nth * 3, c->seq_len - 16);
        snprintf(what, sizeof what, "%s %s many rows", label, bg_nn_model_backend(m));
        CHECK(bg_nn_score_batch(m, s2.it, s2.n, got, &err) == BG_OK, "%s: %s", what, err.msg);
        n_want = 0; /* new items */
        printf("%s: %d items, max |d| %.2e\n", what, s2.n,
               worst_vs_score(m, &s2, got, want, &n_want, what));
    }

    /* 5: bad items, then a good call */
    bg_nn_item bad[3] = {s.it[0], s.it[1], s.it[2]};
    bad[1].n_cont = 0;
    CHECK(bg_nn_score_batch(m, bad, 3, got, &err) == BG_EINVAL && strstr(err.msg, "item 1"),
          "no continuation: %s", err.msg);
    int32_t oob[2] = {V, 0};
    bad[1] = s.it[1];
    bad[2].cont = oob;
    bad[2].n_cont = 1;
    CHECK(bg_nn_score_batch(m, bad, 3, got, &err) == BG_EINVAL && strstr(err.msg, "item 2"),
          "id out of range: %s", err.msg);
    bad[2] = s.it[2];
    bad[0].n_cont = c->seq_len;
    CHECK(bg_nn_score_batch(m, bad, 3, got, &err) == BG_EINVAL && strstr(err.msg, "item 0"),
          "past the context: %s", err.msg);
    CHECK(bg_nn_score_batch(m, s.it, 3, again, &err) == BG_OK, "after errors: %s", err.msg);

    if (quick) {
        bg_nn_model_destroy(m);
        return;
    }
    /* timing of the lm_theory shape, informational */
    theory_set(&s, V, head, 16, 2 * rest - 10);
    double t0 = now_s(CLOCK_MONOTONIC), u0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    CHECK(bg_nn_score_batch(m, s.it, s.n - 1, got, &err) == BG_OK, "%s", err.msg);
    double t1 = now_s(CLOCK_MONOTONIC), u1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < s.n - 1; i += 3) {
        const int32_t *cs[3] = {s.it[i].cont, s.it[i + 1].cont, s.it[i + 2].cont};
        int lens[3] = {2, 2, 5};
        CHECK(bg_nn_score(m, s.it[i].prefix, s.it[i].n_prefix, cs, lens, 3, again + i, &err) ==
                  BG_OK,
              "%s", err.msg);
    }
    double t2 = now_s(CLOCK_MONOTONIC), u2 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    printf("%s %s: 16 theories, %d items: batch %.2f ms (cpu %.2f ms), bg_nn_score per theory "
           "%.2f ms (cpu %.2f ms)\n",
           label, bg_nn_model_backend(m), s.n - 1, 1e3 * (t1 - t0), 1e3 * (u1 - u0),
           1e3 * (t2 - t1), 1e3 * (u2 - u1));
    bg_nn_model_destroy(m);
}

typedef struct lanes_t {
    bg_cbuf *buf;
    int ran[5];
} lanes_t;

/* Lane i fills floats [8i, 8i+8) of the buffer with i + 1 through ops. */
static void lane_fill(bg_compute *lane, void *ctx, int i)
{
    lanes_t *t = ctx;
    bg_err err;
    t->ran[i]++;
    CHECK(bg_compute_begin(lane, &err) == BG_OK, "lane %d: %s", i, err.msg);
    bg_op_fill(lane, (bg_tview){t->buf, (size_t)8 * i}, (float)(i + 1), 8);
    CHECK(bg_compute_submit(lane, &err) == BG_OK, "lane %d: %s", i, err.msg);
}

static void check_lanes(void)
{
    bg_compute_opts o = {BG_BACKEND_CPU, 3, 0, -1};
    bg_compute *c = NULL;
    bg_err err;
    CHECK(bg_compute_create(&o, &c, &err) == BG_OK, "%s", err.msg);
    CHECK_INT(bg_compute_lanes(c), 3);
    lanes_t t = {0};
    CHECK(bg_cbuf_create(c, 32 * sizeof(float), &t.buf, &err) == BG_OK, "%s", err.msg);
    CHECK(bg_compute_run_lanes(c, BG_COMPUTE_MAX_LANES + 1, lane_fill, &t, &err) == BG_EINVAL);
    printf("lanes: too many refused: %s\n", err.msg);
    CHECK(bg_compute_run_lanes(c, 0, lane_fill, &t, &err) == BG_EINVAL);
    CHECK(bg_compute_begin(c, &err) == BG_OK);
    CHECK(bg_compute_run_lanes(c, 2, lane_fill, &t, &err) == BG_EINVAL);
    CHECK(bg_compute_submit(c, &err) == BG_OK);
    CHECK(t.ran[0] + t.ran[1] + t.ran[2] == 0, "a refused run_lanes called its function");
    for (int rep = 0; rep < 2; rep++) /* the lanes are made once, then reused */
        CHECK(bg_compute_run_lanes(c, 4, lane_fill, &t, &err) == BG_OK, "%s", err.msg);
    float got[32];
    CHECK(bg_cbuf_read(c, t.buf, 0, got, sizeof got, &err) == BG_OK);
    for (int i = 0; i < 32; i++)
        CHECK(got[i] == (float)(i / 8 + 1), "float %d: %g", i, got[i]);
    CHECK(t.ran[0] == 2 && t.ran[1] == 2 && t.ran[2] == 2 && t.ran[3] == 2 && t.ran[4] == 0);
    bg_compute_destroy(c);
}

int main(void)
{
    const char *be = getenv("BG_TEST_BACKEND");
    bg_compute_opts co[3] = {
        {BG_BACKEND_CPU, 1, 0, -1}, {BG_BACKEND_CPU, 2, 0, -1}, {BG_BACKEND_CPU, 3, 0, -1}};
    int nco = 3;
    if (!be && getenv("BG_CPU_KERNEL")) { /* a forced kernel this CPU lacks: skip */
        bg_compute *probe = NULL;
        bg_err perr;
        if (bg_compute_create(&co[0], &probe, &perr) != BG_OK) {
            printf("SKIP: BG_CPU_KERNEL=%s: %s\n", getenv("BG_CPU_KERNEL"), perr.msg);
            return BG_TEST_SKIP;
        }
        bg_compute_destroy(probe);
    }
    if (!be)
        check_lanes();
    if (be) {
        int kind = bg_backend_kind_parse(be);
        CHECK(kind >= 0, "BG_TEST_BACKEND=%s: expected cpu|vulkan", be);
        co[0] = (bg_compute_opts){(bg_backend_kind)kind, 0, 1, -1};
        nco = 1;
        bg_compute *probe = NULL;
        bg_err perr;
        if (bg_compute_create(&co[0], &probe, &perr) != BG_OK) {
            printf("SKIP: backend %s: %s\n", be, perr.msg);
            return BG_TEST_SKIP;
        }
        bg_compute_destroy(probe);
    }
    const char *dir = nt_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/synth.bin", dir);
    bg_nn_config cfg = {36, 100, 2, 6, 2, 97, 140, 0};
    bg_err err;
    CHECK(bg_nn_synth_write(path, &cfg, 7, &err) == BG_OK, "synth write: %s", err.msg);
    for (int i = 0; i < nco; i++)
        check_model(path, "synthetic dim36 6/2 heads", &co[i], be != NULL);
    unlink(path);
    rmdir(dir);

    const char *shared = getenv("BG_SHARED_DIR");
    snprintf(path, sizeof path, "%s/models/stories260K.bin", shared ? shared : "../shared");
    if (access(path, R_OK) == 0)
        for (int i = 0; i < nco; i++)
            check_model(path, "stories260K", &co[i], be != NULL);
    else
        printf("stories260K: not found at %s (BG_SHARED_DIR); that part is skipped\n", path);
    CHECK_DONE("test_nn_batch");
}
