/*
 * policy_test.h — helpers for the policy tests: temp dirs, writing files,
 * copying fixture plugins, a plugin host over the fixture plugins.
 * Header-only (static functions) so each test stays one program.
 */
#ifndef BG_POLICY_TEST_H
#define BG_POLICY_TEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

#define FIX BG_FIXTURE_DIR

/* mkstemp/mkdtemp's six placeholder characters. */
static const char pt_six_x[] = {'X', 'X', 'X', 'X', 'X', 'X', '\0'};

/* A fresh temp dir; path written to buf (size >= 64). */
static inline int pt_mkdtemp(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/bg-%s-%s", tag, pt_six_x);
    return mkdtemp(buf) ? 0 : -1;
}

/* Write text to dir/name atomically (temp + rename), as an editor or a
 * deploy would. */
static inline int pt_write(const char *dir, const char *name, const char *text)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static inline char *pt_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static inline int pt_copy(const char *src, const char *dir, const char *name)
{
    char *text = NULL;
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *o = fopen(tmp, "wb");
    if (!o) {
        fclose(f);
        return -1;
    }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, o);
    fclose(f);
    fclose(o);
    free(text);
    return rename(tmp, path);
}

/* rm -r of a temp dir this test made (one level of subdirs). */
static inline void pt_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%.3800s/%.255s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            pt_rmtree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The threshold of the first policy of the store's current set. */
static inline double pt_threshold(bg_policy_store *st)
{
    bg_policy_set *s = bg_policy_store_acquire(st);
    double t = bg_policy_set_at(s, 0)->guard.threshold;
    bg_policy_set_unref(s);
    return t;
}

/* A policy using the fixture plugins; fill name, tools, extra spec lines. */
static inline void pt_policy(char *buf, size_t len, const char *name, const char *tools,
                             const char *model_cfg, const char *extra)
{
    snprintf(buf, len,
             "apiVersion: bayesguard/v1\n"
             "kind: GuardPolicy\n"
             "metadata: {name: %s}\n"
             "spec:\n"
             "  match: {tools: %s}\n"
             "  model: {plugin: fx_model, config: %s}\n"
             "  estimator: {plugin: fx_est, delta: 0.1, prior_floor: 0.01}\n"
             "  threshold: 0.05\n"
             "%s",
             name, tools, model_cfg, extra ? extra : "");
}

#endif
