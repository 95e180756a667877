/*
 * settings_test.h — helpers of the tests/settings programs: a scratch
 * directory, whole-file read and write, and running bayesguardd with its
 * output captured. Header-only (static), like bg_test.h.
 */
#ifndef BG_SETTINGS_TEST_H
#define BG_SETTINGS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bg_test.h"

/* A new directory under $TMPDIR or /tmp; the path is static storage. */
static inline const char *st_tmpdir(void)
{
    static char dir[512];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/bg-settings-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
    return dir;
}

static inline void st_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    fputs(text, f);
    CHECK(fclose(f) == 0, "cannot write %s", path);
}

/* The whole file, NUL-terminated; new (free it). */
static inline char *st_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    size_t cap = 4096, len = 0, n;
    char *p = malloc(cap);
    while (p && (n = fread(p + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2048)
            p = realloc(p, cap *= 2);
    }
    CHECK(p != NULL, "out of memory reading %s", path);
    fclose(f);
    p[len] = '\0';
    return p;
}

#endif
