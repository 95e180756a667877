/*
 * test_gfn_wide.c — the engine at the widths that cannot be enumerated:
 * d = 64 (every bit of the id used) and d = 33. A reward that prefers ids
 * close to a target (log R = −2·Hamming distance) trains for a few steps
 * with TB and SubTB; then every sample is a valid id of the space, the
 * log q sample() reports equals bg_gfn_log_q of the same id (≤ 1e-9),
 * log q of an id outside a d = 33 space is −inf, training moved the
 * sampler toward the target (mean distance of 512 samples below the
 * untrained sampler's), and save → load keeps the samples.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gfn_test_util.h"

typedef struct hamming {
    uint64_t target, mask;
} hamming;

static int hamming_fn(void *ctx, const uint64_t *h, size_t n, double *out)
{
    const hamming *t = ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = -2.0 * __builtin_popcountll((h[i] ^ t->target) & t->mask);
    return BG_PLUGIN_OK;
}

static double mean_distance(const bg_gfn *g, const hamming *t, uint32_t d)
{
    enum { N = 512 };
    uint64_t ids[N];
    double lq[N], lq2[N], s = 0;
    bg_rng r;
    bg_gfn_rng_seed(&r, 4);
    CHECK(bg_gfn_sample(g, &r, N, ids, lq) == BG_PLUGIN_OK, "sample");
    CHECK(bg_gfn_log_q(g, ids, N, lq2) == BG_PLUGIN_OK, "log_q");
    for (int i = 0; i < N; i++) {
        CHECK(d == 64 || ids[i] >> d == 0, "id 0x%llx outside d=%u", (unsigned long long)ids[i], d);
        CHECK(isfinite(lq[i]) && fabs(lq[i] - lq2[i]) <= 1e-9, "log q %g vs %g", lq[i], lq2[i]);
        s += __builtin_popcountll((ids[i] ^ t->target) & t->mask);
    }
    return s / N;
}

static void run(uint32_t d, bg_gfn_loss loss)
{
    hamming t = {0x9e3779b97f4a7c15ULL, d == 64 ? ~0ULL : (1ULL << d) - 1};
    t.target &= t.mask;
    bg_gfn_config c = small_config(d, 32, 21);
    c.loss = loss;
    c.lr = 1e-2;
    bg_gfn *g = gfn_new(&c);
    double before = mean_distance(g, &t, d);
    char err[256];
    CHECK(bg_gfn_train(g, hamming_fn, &t, 60, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    double after = mean_distance(g, &t, d);
    printf("d=%u %-5s: mean Hamming distance to the target %.2f -> %.2f after 60 steps\n", d,
           bg_gfn_loss_name(loss), before, after);
    CHECK(after < before - 1.0, "training did not move toward the target");
    if (d < 64) {
        uint64_t out_of_space = 1ULL << d;
        double lq;
        bg_gfn_log_q(g, &out_of_space, 1, &lq);
        CHECK(lq == -INFINITY, "id outside the space: log q %g", lq);
    }
    char path[] = "/tmp/bg_gfn_wide_______";
    memset(path + sizeof path - 7, 'X', 6); /* mkstemp template suffix */
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    CHECK(bg_gfn_save(g, path, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn *l;
    CHECK(bg_gfn_load(path, &l, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    unlink(path);
    CHECK(fabs(mean_distance(l, &t, d) - after) == 0.0, "loaded sampler samples differently");
    bg_gfn_destroy(l);
    bg_gfn_destroy(g);
}

int main(void)
{
    run(64, BG_GFN_LOSS_TB);
    run(64, BG_GFN_LOSS_SUBTB);
    run(33, BG_GFN_LOSS_DB);
    printf("ok\n");
    return 0;
}
