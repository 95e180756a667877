/*
 * bg_check.h — tiny assertion helpers for the plugin and policy tests:
 * each failed check prints file:line and what differed, and the test's
 * main returns bg_check_failures != 0. Header-only (static) so each test
 * program stays one file.
 */
#ifndef BG_TEST_CHECK_H
#define BG_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int bg_check_failures;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
            bg_check_failures++;                                                                 \
        }                                                                                        \
    } while (0)

#define CHECK_INT(got, want)                                                                     \
    do {                                                                                         \
        long long g_ = (long long)(got), w_ = (long long)(want);                                 \
        if (g_ != w_) {                                                                          \
            fprintf(stderr, "%s:%d: %s = %lld, expected %lld\n", __FILE__, __LINE__, #got, g_,   \
                    w_);                                                                         \
            bg_check_failures++;                                                                 \
        }                                                                                        \
    } while (0)

#define CHECK_STR(got, want)                                                                     \
    do {                                                                                         \
        const char *g_ = (got), *w_ = (want);                                                    \
        if (!g_ || strcmp(g_, w_) != 0) {                                                        \
            fprintf(stderr, "%s:%d: %s\n  got:      %s\n  expected: %s\n", __FILE__, __LINE__,   \
                    #got, g_ ? g_ : "(null)", w_);                                               \
            bg_check_failures++;                                                                 \
        }                                                                                        \
    } while (0)

#define CHECK_NEAR(got, want, tol)                                                               \
    do {                                                                                         \
        double g_ = (got), w_ = (want), t_ = (tol);                                              \
        if (!(g_ >= w_ - t_ && g_ <= w_ + t_)) {                                                 \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g +- %.3g\n", __FILE__, __LINE__,     \
                    #got, g_, w_, t_);                                                           \
            bg_check_failures++;                                                                 \
        }                                                                                        \
    } while (0)

#define CHECK_DONE(name)                                                                         \
    do {                                                                                         \
        if (bg_check_failures)                                                                   \
            fprintf(stderr, "%s: %d check(s) failed\n", name, bg_check_failures);                \
        else                                                                                     \
            printf("%s: all checks passed\n", name);                                             \
        return bg_check_failures ? 1 : 0;                                                        \
    } while (0)

#endif
