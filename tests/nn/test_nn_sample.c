/*
 * test_nn_sample.c — the sampler: greedy is argmax; a seed reproduces a
 * run; temperature-1 frequencies match the softmax (20000 draws, each
 * |freq - p| <= 0.015, about 5 standard deviations); top-p never returns a
 * token outside the nucleus; invalid settings are rejected.
 */
#include <math.h>

#include "nn_test.h"

int main(void)
{
    bg_err err;
    bg_nn_sampler s;
    float logits[5] = {0.1f, 2.0f, -1.0f, 1.0f, 0.5f};
    float tmp[5];

    CHECK(bg_nn_sampler_init(&s, 5, 0.0f, 1.0f, 1, &err) == BG_OK, "init");
    memcpy(tmp, logits, sizeof tmp);
    CHECK(bg_nn_sample(&s, tmp) == 1, "greedy is not argmax");
    bg_nn_sampler_close(&s);

    /* softmax of logits */
    double p[5], z = 0;
    for (int i = 0; i < 5; i++)
        z += p[i] = exp(logits[i]);
    for (int i = 0; i < 5; i++)
        p[i] /= z;

    int counts[5] = {0}, n = 20000;
    CHECK(bg_nn_sampler_init(&s, 5, 1.0f, 1.0f, 42, &err) == BG_OK, "init");
    int first[10];
    for (int i = 0; i < n; i++) {
        memcpy(tmp, logits, sizeof tmp);
        int t = bg_nn_sample(&s, tmp);
        counts[t]++;
        if (i < 10)
            first[i] = t;
    }
    bg_nn_sampler_close(&s);
    for (int i = 0; i < 5; i++) {
        double f = (double)counts[i] / n;
        printf("token %d: frequency %.4f, softmax %.4f (tolerance 0.015)\n", i, f, p[i]);
        CHECK(fabs(f - p[i]) <= 0.015, "token %d frequency %.4f vs %.4f", i, f, p[i]);
    }
    /* same seed, same first draws */
    CHECK(bg_nn_sampler_init(&s, 5, 1.0f, 1.0f, 42, &err) == BG_OK, "init");
    for (int i = 0; i < 10; i++) {
        memcpy(tmp, logits, sizeof tmp);
        CHECK(bg_nn_sample(&s, tmp) == first[i], "seed does not reproduce draw %d", i);
    }
    bg_nn_sampler_close(&s);

    /* top-p 0.6: nucleus = {1 (p .56), 3 (.21)}: cumulative .76 passes .6 */
    CHECK(bg_nn_sampler_init(&s, 5, 1.0f, 0.6f, 9, &err) == BG_OK, "init");
    int seen[5] = {0};
    for (int i = 0; i < 5000; i++) {
        memcpy(tmp, logits, sizeof tmp);
        seen[bg_nn_sample(&s, tmp)]++;
    }
    bg_nn_sampler_close(&s);
    printf("top-p 0.6 counts: %d %d %d %d %d\n", seen[0], seen[1], seen[2], seen[3], seen[4]);
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0 && seen[1] > 0 && seen[3] > 0,
          "top-p drew outside the nucleus {1, 3}");

    CHECK(bg_nn_sampler_init(&s, 5, -1.0f, 1.0f, 1, &err) == BG_EINVAL, "negative temperature");
    CHECK(bg_nn_sampler_init(&s, 5, 1.0f, 0.0f, 1, &err) == BG_EINVAL, "top-p 0");
    CHECK(bg_nn_sampler_init(&s, 5, 1.0f, 1.5f, 1, &err) == BG_EINVAL, "top-p 1.5");
    CHECK_DONE("test_nn_sample");
}
