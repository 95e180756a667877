/*
 * escalation_file.c — the escalation table's durable file
 * (<data_dir>/escalations.log): replay at start, one appended record per
 * change, and the rewrite that keeps it as small as the table.
 *
 * Record: u32 length (LE) | u32 CRC-32 of the payload (LE) | payload (one
 * JSON object, bg__esc_rec_to_json). Replay reads records in order; where
 * the file ends inside a record (its header or its payload: a crash in the
 * middle of an append) the tail is torn and is cut off with a warning.
 * Anything else that is wrong — a CRC that does not match, a length over
 * BG_ESC_RECORD_MAX, a payload that is not a record — is corruption, and
 * the open fails with the file's name and the record's byte offset: a
 * pending escalation must not disappear silently. A bad CRC on the very
 * last record, ending exactly at the end of the file, is also taken as a
 * torn append (the length went out, the payload did not finish).
 *
 * Threads: the caller (escalation.c) serialises every call under its lock.
 * Ownership: the file owns its fd and path copies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/bg_io.h"
#include "common/bg_log.h"
#include "escalation/escalation_priv.h"

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* The whole file into memory (it is bounded by the rewrite). */
static int slurp(int fd, unsigned char **buf, size_t *len)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    *len = (size_t)sb.st_size;
    *buf = malloc(*len ? *len : 1);
    if (*buf == NULL)
        return -1;
    size_t got = 0;
    while (got < *len) {
        ssize_t n = pread(fd, *buf + got, *len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int replay(bg__esc_file *f, void (*take)(void *, bg_escalation_rec *), void *arg,
                  bg_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (slurp(f->fd, &buf, &len) != 0) {
        free(buf);
        return bg_err_set(err, BG_EIO, "escalations file %s: cannot read it: %s", f->path,
                          strerror(errno));
    }
    size_t off = 0;
    int rc = BG_OK;
    while (off < len) {
        if (len - off < 8)
            break; /* torn header */
        uint32_t n = rd32(buf + off), crc = rd32(buf + off + 4);
        if (n == 0 || n > BG_ESC_RECORD_MAX) {
            rc = bg_err_set(err, BG_EIO,
                            "escalations file %s: corrupt record at byte offset %zu (length %u, "
                            "expected 1..%u): move the file away to start without its "
                            "escalations",
                            f->path, off, n, BG_ESC_RECORD_MAX);
            break;
        }
        if (len - off - 8 < n)
            break; /* torn payload */
        if ((uint32_t)crc32(0L, buf + off + 8, n) != crc) {
            if (off + 8 + n == len)
                break; /* the last record, unfinished */
            rc = bg_err_set(err, BG_EIO,
                            "escalations file %s: corrupt record at byte offset %zu (CRC "
                            "mismatch): move the file away to start without its escalations",
                            f->path, off);
            break;
        }
        json_error_t je;
        json_t *o = json_loadb((const char *)buf + off + 8, n, 0, &je);
        bg_err e2;
        bg_err_clear(&e2);
        bg_escalation_rec *r = o ? bg__esc_rec_from_json(o, &e2) : NULL;
        json_decref(o);
        if (r == NULL) {
            rc = bg_err_set(err, BG_EIO,
                            "escalations file %s: record at byte offset %zu is not an "
                            "escalation (%s): move the file away to start without its "
                            "escalations",
                            f->path, off, o ? e2.msg : je.text);
            break;
        }
        take(arg, r);
        off += 8 + n;
    }
    free(buf);
    if (rc == BG_OK && off < len) {
        BG_WARN("escalation",
                "escalations file %s: a torn record at byte offset %zu (%zu bytes, a crash "
                "during an append) cut off",
                f->path, off, len - off);
        if (ftruncate(f->fd, (off_t)off) != 0 || fdatasync(f->fd) != 0)
            return bg_err_set(err, BG_EIO, "escalations file %s: cannot cut its torn tail: %s",
                              f->path, strerror(errno));
    }
    return rc;
}

int bg__esc_file_open(const char *dir, bg__esc_file *f,
                      void (*take)(void *arg, bg_escalation_rec *rec), void *arg, bg_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t n = strlen(dir) + sizeof(BG_ESC_FILE) + 2;
    f->path = malloc(n);
    f->dir = strdup(dir);
    if (f->path == NULL || f->dir == NULL) {
        bg__esc_file_close(f);
        return bg_err_set(err, BG_ENOMEM, "escalations: out of memory");
    }
    snprintf(f->path, n, "%s/%s", dir, BG_ESC_FILE);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        int rc = bg_err_set(err, BG_EIO, "escalations file %s: %s: check --data-dir", f->path,
                            strerror(errno));
        bg__esc_file_close(f);
        return rc;
    }
    int rc = replay(f, take, arg, err);
    if (rc != BG_OK)
        bg__esc_file_close(f);
    return rc;
}

/* The framed record of r into *out (malloc'd); its size in *n. */
static int frame(const bg_escalation_rec *r, unsigned char **out, size_t *n, bg_err *err)
{
    json_t *o = bg__esc_rec_to_json(r);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return bg_err_set(err, BG_ENOMEM, "escalation %s: out of memory writing it", r->id);
    size_t len = strlen(text);
    if (len > BG_ESC_RECORD_MAX) {
        free(text);
        return bg_err_set(err, BG_ELIMIT, "escalation %s: its record is %zu bytes, over %u", r->id,
                          len, BG_ESC_RECORD_MAX);
    }
    *out = malloc(len + 8);
    if (*out == NULL) {
        free(text);
        return bg_err_set(err, BG_ENOMEM, "escalation %s: out of memory writing it", r->id);
    }
    wr32(*out, (uint32_t)len);
    wr32(*out + 4, (uint32_t)crc32(0L, (const unsigned char *)text, (uInt)len));
    memcpy(*out + 8, text, len);
    free(text);
    *n = len + 8;
    return BG_OK;
}

int bg__esc_file_append(bg__esc_file *f, const bg_escalation_rec *r, bg_err *err)
{
    if (f->fd < 0)
        return BG_OK;
    unsigned char *rec;
    size_t n;
    int rc = frame(r, &rec, &n, err);
    if (rc != BG_OK)
        return rc;
    struct stat sb;
    off_t before = fstat(f->fd, &sb) == 0 ? sb.st_size : -1;
    if (bg_write_all(f->fd, rec, n) != 0 || fdatasync(f->fd) != 0) {
        int e = errno;
        if (before >= 0 && ftruncate(f->fd, before) != 0)
            BG_ERROR("escalation", "%s: cannot cut a failed append back: %s", f->path,
                     strerror(errno));
        free(rec);
        return bg_err_set(err, BG_EIO, "escalations file %s: write failed: %s", f->path,
                          strerror(e));
    }
    free(rec);
    f->appends++;
    return BG_OK;
}

int bg__esc_file_rewrite(bg__esc_file *f, bg_escalation_rec *const *recs, size_t n, bg_err *err)
{
    if (f->fd < 0)
        return BG_OK;
    size_t tn = strlen(f->path) + 8;
    char *tmp = malloc(tn);
    if (tmp == NULL)
        return bg_err_set(err, BG_ENOMEM, "escalations: out of memory");
    snprintf(tmp, tn, "%s.tmp", f->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc =
        fd < 0 ? bg_err_set(err, BG_EIO, "escalations file %s: %s", tmp, strerror(errno)) : BG_OK;
    for (size_t i = 0; rc == BG_OK && i < n; i++) {
        unsigned char *rec;
        size_t rn;
        if ((rc = frame(recs[i], &rec, &rn, err)) != BG_OK)
            break;
        if (bg_write_all(fd, rec, rn) != 0)
            rc = bg_err_set(err, BG_EIO, "escalations file %s: write failed: %s", tmp,
                            strerror(errno));
        free(rec);
    }
    if (rc == BG_OK && fdatasync(fd) != 0)
        rc = bg_err_set(err, BG_EIO, "escalations file %s: fdatasync: %s", tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (rc == BG_OK && rename(tmp, f->path) != 0)
        rc = bg_err_set(err, BG_EIO, "escalations file %s: rename: %s", f->path, strerror(errno));
    if (rc != BG_OK) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            BG_WARN("escalation", "fsync of %s: %s", f->dir, strerror(errno));
        close(dfd);
    }
    int nfd = open(f->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (nfd < 0)
        return bg_err_set(err, BG_EIO, "escalations file %s: reopen: %s", f->path, strerror(errno));
    close(f->fd);
    f->fd = nfd;
    f->appends = 0;
    return BG_OK;
}

void bg__esc_file_close(bg__esc_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    free(f->path);
    free(f->dir);
    f->path = f->dir = NULL;
}
