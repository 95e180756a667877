/*
 * store_tool.c — verify, repair and scan the observation log offline.
 * Contract: store_tool.h; reading: obs_scan.h.
 */
#include "engine/store_tool.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bg_io.h"
#include "engine/obs_scan.h"
#include "engine/obs_store.h"
#include "engine/observation.h"

typedef struct tool_ctx {
    bg_store_problem_cb cb;
    void *ctx;
    bg_store_report *rep;
    int fd; /* repair: the replacement file, else -1 */
    const char *tmp;
} tool_ctx;

static int on_problem(void *ctx, const bg__obs_problem *p, bg_err *err)
{
    (void)err;
    tool_ctx *t = ctx;
    t->rep->problems++;
    if (!p->torn_tail) {
        t->rep->corrupt++;
        t->rep->dropped_bytes += p->bytes;
    }
    bg_store_problem sp = {p->path, p->offset, p->bytes, p->torn_tail, p->what};
    if (t->cb)
        t->cb(t->ctx, &sp);
    return BG_OK;
}

static int on_record(void *ctx, const uint8_t *p, size_t n, uint64_t off, bg_err *err)
{
    (void)off;
    tool_ctx *t = ctx;
    t->rep->records++;
    if (t->fd < 0)
        return BG_OK;
    uint8_t hdr[8];
    bg__obs_frame(hdr, p, n);
    if (bg_write_all(t->fd, hdr, 8) != 0 || bg_write_all(t->fd, p, n) != 0)
        return bg_err_set(err, BG_EIO, "%s: write: %s", t->tmp, strerror(errno));
    return BG_OK;
}

/* Replace f by its readable records; the original stays as f.corrupt. */
static int repair_file(const char *dir, const bg__obs_file *f, const bg__obs_scan_opts *so,
                       tool_ctx *t, bg_err *err)
{
    char tmp[PATH_MAX + 16], bad[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", f->path);
    snprintf(bad, sizeof bad, "%s.corrupt", f->path);
    const char *magic = f->snapshot ? BG_OBS_SNAP_MAGIC : BG_OBS_STORE_MAGIC;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || bg_write_all(fd, magic, 8) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return bg_err_set(err, BG_EIO, "%s: %s", tmp, strerror(e));
    }
    /* Count the problems once: this second scan writes, the report was
     * made by the first. */
    bg_store_report scratch = {0};
    tool_ctx w = {NULL, NULL, &scratch, fd, tmp};
    bg__obs_scan_result res;
    int rc = bg__obs_scan(f, so, on_record, on_problem, &w, &res, err);
    if (rc == BG_OK && fdatasync(fd) != 0)
        rc = bg_err_set(err, BG_EIO, "%s: fdatasync: %s", tmp, strerror(errno));
    close(fd);
    (void)unlink(bad);
    if (rc == BG_OK && link(f->path, bad) != 0)
        rc = bg_err_set(err, BG_EIO, "%s: keeping the damaged file: %s", bad, strerror(errno));
    if (rc == BG_OK && (rc = bg__obs_dir_sync(dir, err)) == BG_OK && rename(tmp, f->path) != 0)
        rc = bg_err_set(err, BG_EIO, "%s: %s", f->path, strerror(errno));
    if (rc == BG_OK)
        rc = bg__obs_dir_sync(dir, err);
    if (rc != BG_OK)
        unlink(tmp);
    else
        t->rep->files_repaired++;
    return rc;
}

static int run(const char *dir, int repair, bg_store_problem_cb cb, void *ctx, bg_store_report *out,
               bg_err *err)
{
    memset(out, 0, sizeof *out);
    bg__obs_files files;
    int rc = bg__obs_files_list(dir, &files, err);
    if (rc != BG_OK)
        return rc;
    tool_ctx t = {cb, ctx, out, -1, NULL};
    for (size_t i = 0; rc == BG_OK && i < files.n; i++) {
        const bg__obs_file *f = &files.v[i];
        bg__obs_scan_opts so = {.last = i + 1 == files.n && !f->snapshot, .resync = 1};
        bg__obs_scan_result res;
        out->files++;
        rc = bg__obs_scan(f, &so, on_record, on_problem, &t, &res, err);
        if (rc == BG_OK && repair && res.corrupt)
            rc = repair_file(dir, f, &so, &t, err);
    }
    bg__obs_files_free(&files);
    return rc;
}

int bg_store_verify(const char *dir, bg_store_problem_cb cb, void *ctx, bg_store_report *out,
                    bg_err *err)
{
    return run(dir, 0, cb, ctx, out, err);
}

int bg_store_repair(const char *dir, bg_store_problem_cb cb, void *ctx, bg_store_report *out,
                    bg_err *err)
{
    return run(dir, 1, cb, ctx, out, err);
}

/* The fleet's files in a data dir (daemon/fleet/fleet.c names them). */
static const char *const fleet_files[] = {"fleet.node", "fleet.order", "fleet.state"};

int bg_store_is_fleet(const char *dir)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof fleet_files / sizeof fleet_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, fleet_files[i]);
        if (access(path, F_OK) == 0)
            return 1;
    }
    return 0;
}

/* What a fleet reset sets aside: the log's files, the fleet's, receipt.key. */
static int reset_moves(const char *name)
{
    size_t n = strlen(name);
#define ENDS(s) (n >= sizeof(s) - 1 && strcmp(name + n - (sizeof(s) - 1), s) == 0)
    int log = (strncmp(name, "obs-", 4) == 0 || strncmp(name, "snapshot-", 9) == 0 ||
               strcmp(name, BG_OBS_STORE_FILE) == 0 || strcmp(name, "quarantine.bglog") == 0) &&
              (ENDS(".bglog") || ENDS(".bgsnap") || ENDS(".corrupt") || ENDS(".tmp"));
#undef ENDS
    if (log || strcmp(name, "receipt.key") == 0)
        return 1;
    for (size_t i = 0; i < sizeof fleet_files / sizeof fleet_files[0]; i++)
        if (strncmp(name, fleet_files[i], strlen(fleet_files[i])) == 0)
            return 1; /* with its .tmp */
    return 0;
}

int bg_store_fleet_reset(const char *dir, char *moved_to, size_t moved_len, bg_err *err)
{
    char aside[PATH_MAX], name[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(name, sizeof name, "fleet-reset-%Y%m%dT%H%M%SZ", &tm);
    snprintf(aside, sizeof aside, "%s/%s", dir, name);
    if (mkdir(aside, 0700) != 0)
        return bg_err_set(err, BG_EIO, "%s: %s", aside, strerror(errno));
    DIR *d = opendir(dir);
    if (!d)
        return bg_err_set(err, BG_EIO, "%s: %s", dir, strerror(errno));
    int rc = BG_OK;
    struct dirent *de;
    while (rc == BG_OK && (de = readdir(d)) != NULL) {
        if (!reset_moves(de->d_name))
            continue;
        char from[PATH_MAX], to[PATH_MAX + 64];
        snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
        snprintf(to, sizeof to, "%s/%s", aside, de->d_name);
        if (rename(from, to) != 0)
            rc = bg_err_set(err, BG_EIO, "moving %s into %s: %s", from, aside, strerror(errno));
    }
    closedir(d);
    if (rc == BG_OK && (rc = bg__obs_dir_sync(aside, err)) == BG_OK)
        rc = bg__obs_dir_sync(dir, err);
    snprintf(moved_to, moved_len, "%s", aside);
    return rc;
}

typedef struct scan_ctx {
    bg_store_record_cb cb;
    void *ctx;
    uint64_t seq, from;
    const char *path;
} scan_ctx;

static int scan_record(void *ctx, const uint8_t *p, size_t n, uint64_t off, bg_err *err)
{
    scan_ctx *c = ctx;
    if (off < c->from)
        return BG_OK;
    char *g, *s;
    bg_observation *obs;
    int rc = bg__obs_decode_receipt(p, n, &g, &s, &obs, NULL, NULL, err);
    if (rc != BG_OK)
        return bg_err_prefix(err, "%s: offset %llu: ", c->path, (unsigned long long)off);
    rc = c->cb(c->ctx, g, s, obs, c->seq, off, err);
    free(g);
    free(s);
    free(obs);
    return rc;
}

int bg_store_scan(const char *dir, uint64_t segment, uint64_t offset, bg_store_record_cb cb,
                  void *ctx, bg_err *err)
{
    bg__obs_files files;
    int rc = bg__obs_files_list(dir, &files, err);
    for (size_t i = 0; rc == BG_OK && i < files.n; i++) {
        const bg__obs_file *f = &files.v[i];
        uint64_t seq = f->snapshot ? 0 : f->seq;
        if (seq < segment || (f->snapshot && segment > 0))
            continue;
        scan_ctx c = {cb, ctx, seq, seq == segment ? offset : 0, f->path};
        bg__obs_scan_opts so = {.last = i + 1 == files.n && !f->snapshot};
        bg__obs_scan_result res;
        rc = bg__obs_scan(f, &so, scan_record, NULL, &c, &res, err);
    }
    bg__obs_files_free(&files);
    return rc;
}
