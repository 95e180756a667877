/*
 * bg_test.h — the one check macro of the C tests, and their helpers.
 *
 *   CHECK(cond)                 fail the test: file:line and the condition
 *   CHECK(cond, fmt, ...)       the same, with a message saying what was seen
 *   CHECK_INT(got, want)        integers, both printed
 *   CHECK_STR(got, want)        strings (NULL fails), both printed
 *   CHECK_NEAR(got, want, tol)  doubles within tol, all three printed
 *   CHECK_DONE(name)            return from main: 0 and "name: all checks
 *                               passed", or 1 when a failure was tallied
 *
 * A failed check prints one line and exits 1 at once, so later steps never
 * run on a state the test already knows is wrong. Sweeps that should show
 * every element out of tolerance before failing (a numerical kernel over
 * many shapes) tally instead: bg_test_tally() prints the same line, counts
 * it in bg_test_failures and returns, and CHECK_DONE fails the test. A test
 * that cannot run here says why and exits 77 (BG_TEST_SKIP), which ctest
 * reports as skipped. Header-only (static) so each test program stays one
 * file; a helper library shared by several tests (tests/vulkan) keeps its
 * own tally and hands it to CHECK_DONE's caller.
 */
#ifndef BG_TEST_H
#define BG_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BG_TEST_SKIP 77

/* CHECK(cond) passes "" as the message's format; that is on purpose. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

static int bg_test_failures __attribute__((unused)); /* tallied (bg_test_tally) */

static inline void bg_test_vreport(const char *file, int line, const char *what, const char *fmt,
                                   va_list ap)
{
    fflush(stdout);
    fprintf(stderr, "%s:%d: check failed: %s", file, line, what);
    if (fmt && fmt[0]) {
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
    }
    fputc('\n', stderr);
}

static inline void bg_test_fail(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
static inline void bg_test_fail(const char *file, int line, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_test_vreport(file, line, what, fmt, ap);
    va_end(ap);
    exit(1);
}

/* A failure that does not stop the test: reported, counted, CHECK_DONE
 * fails. Use from sweeps; everything else CHECKs. */
static inline void bg_test_tally(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void bg_test_tally(const char *file, int line, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bg_test_vreport(file, line, what, fmt, ap);
    va_end(ap);
    bg_test_failures++;
}

/* CHECK(cond) or CHECK(cond, "fmt", args...): the "" makes the message
 * optional (an empty format when none is given). */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            bg_test_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                               \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_)                                                                              \
            bg_test_fail(__FILE__, __LINE__, #got " == " #want, "got %lld, expected %lld", g_,     \
                         w_);                                                                      \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!g_ || strcmp(g_, w_) != 0)                                                            \
            bg_test_fail(__FILE__, __LINE__, #got, "\n  got:      %s\n  expected: %s",             \
                         g_ ? g_ : "(null)", w_);                                                  \
    } while (0)

#define CHECK_NEAR(got, want, tol)                                                                 \
    do {                                                                                           \
        double g_ = (got), w_ = (want), t_ = (tol);                                                \
        if (!(g_ >= w_ - t_ && g_ <= w_ + t_))                                                     \
            bg_test_fail(__FILE__, __LINE__, #got, "%.9g, expected %.9g +- %.3g", g_, w_, t_);     \
    } while (0)

#define CHECK_DONE(name)                                                                           \
    do {                                                                                           \
        if (bg_test_failures) {                                                                    \
            fprintf(stderr, "%s: %d check(s) failed\n", name, bg_test_failures);                   \
            return 1;                                                                              \
        }                                                                                          \
        printf("%s: all checks passed\n", name);                                                   \
        return 0;                                                                                  \
    } while (0)

/* The built plugins' folder (BG_PLUGIN_DIR), or skip (exit 77) when one of
 * the n plugin files named is not there. */
static inline const char *bg_test_plugin_dir(const char *const *files, int n)
{
    const char *dir = getenv("BG_PLUGIN_DIR");
    for (int i = 0; i < n; i++) {
        char so[1024];
        snprintf(so, sizeof so, "%s/%s", dir ? dir : ".", files[i]);
        if (!dir || access(so, R_OK) != 0) {
            printf("skip: %s not built\n", so);
            exit(BG_TEST_SKIP);
        }
    }
    return dir;
}

#endif
