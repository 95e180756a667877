/*
 * test_plugin_rng.c — the RNG service: same seed -> same stream, different
 * seeds differ, uniform in [0,1) with mean 1/2, normal with mean 0 and
 * variance 1. Fixed seed, N = 200000; tolerances are 5 standard errors
 * (uniform mean: 5*sqrt(1/12/N) = 0.0032; normal mean: 5/sqrt(N) = 0.0112;
 * normal variance: 5*sqrt(2/N) = 0.0158).
 */
#include <math.h>
#include <stdio.h>

#include "bg_test.h"
#include "plugin/plugin_host.h"

int main(void)
{
    bg_rng a, b, c;
    bg_rng_seed(&a, 42);
    bg_rng_seed(&b, 42);
    bg_rng_seed(&c, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = bg_rng_u64(&a), y = bg_rng_u64(&b), z = bg_rng_u64(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same);
    CHECK_INT(differ, 100);
    bg_rng z0;
    bg_rng_seed(&z0, 0); /* seed 0 must not give the all-zero state */
    CHECK(z0.s[0] | z0.s[1] | z0.s[2] | z0.s[3]);

    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0, umin = 1, umax = 0;
    bg_rng_seed(&a, 12345);
    for (int i = 0; i < n; i++) {
        double u = bg_rng_uniform(&a);
        su += u;
        umin = u < umin ? u : umin;
        umax = u > umax ? u : umax;
        double g = bg_rng_normal(&a);
        sn += g;
        sn2 += g * g;
    }
    CHECK(umin >= 0.0 && umax < 1.0);
    double mean_n = sn / n;
    printf("uniform mean %.5f (tol 0.0032), normal mean %.5f (tol 0.0112), var %.5f (tol "
           "0.0158)\n",
           su / n, mean_n, sn2 / n - mean_n * mean_n);
    CHECK_NEAR(su / n, 0.5, 5 * sqrt(1.0 / 12 / n));
    CHECK_NEAR(mean_n, 0.0, 5 / sqrt((double)n));
    CHECK_NEAR(sn2 / n - mean_n * mean_n, 1.0, 5 * sqrt(2.0 / n));
    CHECK_DONE("test_plugin_rng");
}
