/*
 * nn_test.h — small helpers shared by the tests in tests/nn (header-only,
 * static functions): failure counting, a temp directory, a CPU model.
 */
#ifndef BG_NN_TEST_H
#define BG_NN_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

static int nt_failures;

#define NT_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            nt_failures++;                                                                         \
        }                                                                                          \
    } while (0)

/* A fresh directory under $TMPDIR (or /tmp); the caller removes its files. */
static inline const char *nt_tmpdir(void)
{
    static char dir[512];
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, sizeof dir - 7, "%s/bg_nn_test_", base && *base ? base : "/tmp");
    if (n < 0 || n > (int)sizeof dir - 7)
        n = (int)strlen(dir); /* truncated: keep what fit */
    memset(dir + n, 'X', 6); /* the mkdtemp template */
    dir[n + 6] = 0;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

static inline int nt_finish(void)
{
    printf("%s: %d failure(s)\n", nt_failures ? "FAIL" : "PASS", nt_failures);
    return nt_failures ? 1 : 0;
}

#endif
