/*
 * nn_test.h — small helpers shared by the tests in tests/nn (header-only,
 * static functions): a temp directory, a CPU model. Checks are bg_test.h's.
 */
#ifndef BG_NN_TEST_H
#define BG_NN_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bg_test.h"
#include "nn/nn.h"

/* Runs "exe args" through the shell (in dir when dir is not NULL), stdout
 * into out[out_cap], stderr through the file err_path into err[err_cap];
 * returns the exit code, -1 when it did not exit. */
static inline int nt_run(const char *dir, const char *exe, const char *args, const char *err_path,
                         char *out, size_t out_cap, char *err, size_t err_cap)
{
    char cmd[8192];
    if (dir)
        snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>'%s'", dir, exe, args, err_path);
    else
        snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", exe, args, err_path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        perror("popen");
        exit(1);
    }
    size_t n = fread(out, 1, out_cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    FILE *e = fopen(err_path, "r");
    n = e ? fread(err, 1, err_cap - 1, e) : 0;
    err[n] = 0;
    if (e)
        fclose(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A fresh directory under $TMPDIR (or /tmp); the caller removes its files. */
static inline const char *nt_tmpdir(void)
{
    static char dir[512];
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, sizeof dir - 7, "%s/bg_nn_test_", base && *base ? base : "/tmp");
    if (n < 0 || n > (int)sizeof dir - 7)
        n = (int)strlen(dir); /* truncated: keep what fit */
    memset(dir + n, 'X', 6);  /* the mkdtemp template */
    dir[n + 6] = 0;
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

#endif
