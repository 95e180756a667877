/*
 * fuzz_util.h — what the libFuzzer harnesses of tests/fuzz share: a private
 * temporary directory per process, writing a file into it, and quiet logs.
 *
 * Each harness defines LLVMFuzzerTestOneInput (libFuzzer's entry point,
 * declared here so -Wmissing-prototypes is content) and sets itself up
 * once, on its first input. Setup failures stop the process with a message
 * (a harness that cannot set up finds nothing). Header-only, static
 * functions: one translation unit per harness.
 *
 * Built only in a BG_FUZZ tree (clang, -fsanitize=fuzzer); see
 * docs/FUZZING.md.
 */
#ifndef BG_FUZZ_UTIL_H
#define BG_FUZZ_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stop: setup failed (not a finding). */
__attribute__((noreturn, format(printf, 1, 2))) static void fz_die(const char *fmt, ...);
static void fz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz harness setup: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* The daemon's logs are off unless BG_FUZZ_LOG names a level ("debug"):
 * the fuzzer's own output stays readable. */
static inline void fz_quiet_logs(void)
{
    const char *l = getenv("BG_FUZZ_LOG");
    int level = l ? bg_log_level_parse(l) : -1;
    bg_log_set_level(level >= 0 ? level : BG_LOG_ERROR + 1);
}

/* A new directory under $TMPDIR (or /tmp) for this process, removed at
 * exit by fz_rm_tree registered with atexit. Returns a static buffer. */
static char fz_tmp_path[512];

static inline void fz_rm_tree(void)
{
    if (fz_tmp_path[0] == '\0')
        return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_tmp_path);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz harness: could not remove %s\n", fz_tmp_path);
}

static inline const char *fz_tmpdir(const char *tag)
{
    if (fz_tmp_path[0] != '\0')
        return fz_tmp_path;
    const char *base = getenv("TMPDIR");
    snprintf(fz_tmp_path, sizeof fz_tmp_path, "%s/bg-fuzz-%s-XXXXXX",
             base && base[0] ? base : "/tmp", tag);
    if (mkdtemp(fz_tmp_path) == NULL)
        fz_die("mkdtemp %s: %s", fz_tmp_path, strerror(errno));
    atexit(fz_rm_tree);
    return fz_tmp_path;
}

/* Write data[0..n) to dir/name (replacing it); 0 on success. */
static inline int fz_write(const char *dir, const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return close(fd);
}

#endif
