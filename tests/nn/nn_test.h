/*
 * nn_test.h — small helpers shared by the tests in tests/nn (header-only,
 * static functions): a temp directory, a CPU model. Checks are bg_test.h's.
 */
#ifndef BG_NN_TEST_H
#define BG_NN_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "nn/nn.h"

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


#endif
