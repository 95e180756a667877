/*
 * obs_scan.c — list the log's files and read them record by record.
 * Contract: obs_scan.h; the format: obs_store.h.
 */
#include "engine/obs_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/obs_store.h"
#include "engine/observation.h"

/* ------------------------------------------------------------- the files */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *bg__obs_segment_path(const char *dir, uint64_t seq)
{
    char name[64];
    if (seq == 0)
        snprintf(name, sizeof name, "%s", BG_OBS_STORE_FILE);
    else
        snprintf(name, sizeof name, BG_OBS_SEGMENT_FMT, seq);
    return join(dir, name);
}

char *bg__obs_snapshot_path(const char *dir, uint64_t covers_below)
{
    char name[64];
    snprintf(name, sizeof name, BG_OBS_SNAPSHOT_FMT, covers_below);
    return join(dir, name);
}

/* seq of a name of the form PREFIX<20 digits>SUFFIX, else -1. */
static int parse_seq(const char *name, const char *prefix, const char *suffix, uint64_t *seq)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);
    if (nl != pl + 20 + sl || strncmp(name, prefix, pl) != 0 || strcmp(name + pl + 20, suffix))
        return -1;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 0;
}

static int push(bg__obs_file **v, size_t *n, const char *dir, const char *name, uint64_t seq,
                int snap)
{
    bg__obs_file *nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return -1;
    *v = nv;
    bg__obs_file *f = &nv[*n];
    f->path = join(dir, name);
    f->name = strdup(name);
    f->seq = seq;
    f->snapshot = snap;
    if (!f->path || !f->name) {
        free(f->path);
        free(f->name);
        return -1;
    }
    (*n)++;
    return 0;
}

static int by_seq(const void *a, const void *b)
{
    const bg__obs_file *x = a, *y = b;
    if (x->snapshot != y->snapshot)
        return y->snapshot - x->snapshot; /* snapshots first */
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void bg__obs_files_free(bg__obs_files *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].path);
        free(f->v[i].name);
    }
    for (size_t i = 0; i < f->n_stale; i++) {
        free(f->stale[i].path);
        free(f->stale[i].name);
    }
    free(f->v);
    free(f->stale);
    memset(f, 0, sizeof *f);
}

int bg__obs_files_list(const char *dir, bg__obs_files *out, bg_err *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return bg_err_set(err, BG_EIO, "%s: %s; expected a writable data directory", dir,
                          strerror(errno));
    bg__obs_file *all = NULL;
    size_t n = 0;
    int rc = BG_OK;
    struct dirent *de;
    while (rc == BG_OK && (de = readdir(d)) != NULL) {
        uint64_t seq;
        int r = 0;
        size_t nl = strlen(de->d_name);
        if (strcmp(de->d_name, BG_OBS_STORE_FILE) == 0)
            r = push(&all, &n, dir, de->d_name, 0, 0);
        else if (parse_seq(de->d_name, BG_OBS_SEGMENT_PREFIX, BG_OBS_SEGMENT_SUFFIX, &seq) == 0)
            r = push(&all, &n, dir, de->d_name, seq, 0);
        else if (parse_seq(de->d_name, BG_OBS_SNAPSHOT_PREFIX, BG_OBS_SNAPSHOT_SUFFIX, &seq) == 0)
            r = push(&all, &n, dir, de->d_name, seq, 1);
        else if (nl > 4 && strcmp(de->d_name + nl - 4, ".tmp") == 0 &&
                 (strncmp(de->d_name, BG_OBS_SNAPSHOT_PREFIX, strlen(BG_OBS_SNAPSHOT_PREFIX)) ==
                      0 ||
                  strncmp(de->d_name, BG_OBS_SEGMENT_PREFIX, strlen(BG_OBS_SEGMENT_PREFIX)) == 0))
            r = push(&out->stale, &out->n_stale, dir, de->d_name, 0, 0);
        if (r != 0)
            rc = bg_err_set(err, BG_ENOMEM, "%s: out of memory listing the log", dir);
    }
    closedir(d);
    if (rc == BG_OK && n > 1)
        qsort(all, n, sizeof *all, by_seq);
    /* The newest snapshot covers segments below its seq and older
     * snapshots; those are stale (a compaction that crashed before its
     * deletes). */
    uint64_t cover = 0;
    int have_snap = n > 0 && all[0].snapshot;
    for (size_t i = 0; rc == BG_OK && i < n; i++)
        if (all[i].snapshot && all[i].seq > cover)
            cover = all[i].seq;
    for (size_t i = 0; rc == BG_OK && i < n; i++) {
        bg__obs_file *f = &all[i];
        int keep = f->snapshot ? f->seq == cover : !have_snap || f->seq >= cover;
        bg__obs_file **dst = keep ? &out->v : &out->stale;
        size_t *dn = keep ? &out->n : &out->n_stale;
        bg__obs_file *nv = realloc(*dst, (*dn + 1) * sizeof *nv);
        if (!nv) {
            rc = bg_err_set(err, BG_ENOMEM, "%s: out of memory listing the log", dir);
            break;
        }
        *dst = nv;
        nv[(*dn)++] = *f;
        f->path = f->name = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        free(all[i].path);
        free(all[i].name);
    }
    free(all);
    if (rc != BG_OK)
        bg__obs_files_free(out);
    return rc;
}

int bg__obs_dir_sync(const char *dir, bg_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return bg_err_set(err, BG_EIO, "%s: fsync of the directory: %s", dir, strerror(e));
    }
    close(fd);
    return BG_OK;
}

/* ----------------------------------------------------------- the reader */

/* CRC-32 (IEEE 802.3, zlib's): the record checksum of the log format. */
uint32_t bg__crc32(const void *buf, size_t len)
{
    return (uint32_t)crc32_z(0, buf, len);
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void bg__obs_frame(uint8_t hdr[8], const uint8_t *p, size_t n)
{
    uint32_t crc = bg__crc32(p, n);
    for (int i = 0; i < 4; i++) {
        hdr[i] = (uint8_t)((uint32_t)n >> (8 * i));
        hdr[4 + i] = (uint8_t)(crc >> (8 * i));
    }
}

/* A window [at, at + len) of the file, refilled by pread. */
typedef struct reader {
    int fd;
    const char *path;
    uint64_t size;
    uint8_t *buf;
    size_t cap, len;
    uint64_t at;
} reader;

/* Pointer to bytes [off, off + n) (n <= size - off), or NULL (err set). */
static const uint8_t *rd_get(reader *r, uint64_t off, size_t n, bg_err *err)
{
    if (off >= r->at && off + n <= r->at + r->len)
        return r->buf + (off - r->at);
    size_t want = n > BG_OBS_SCAN_WINDOW ? n : BG_OBS_SCAN_WINDOW;
    if (want > r->size - off)
        want = (size_t)(r->size - off);
    if (want > r->cap) {
        uint8_t *nb = realloc(r->buf, want);
        if (!nb) {
            bg_err_set(err, BG_ENOMEM, "%s: out of memory reading %zu bytes", r->path, want);
            return NULL;
        }
        r->buf = nb;
        r->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            bg_err_set(err, BG_EIO, "%s: read at offset %" PRIu64 ": %s", r->path, off + got,
                       k < 0 ? strerror(errno) : "unexpected end of file");
            return NULL;
        }
        got += (size_t)k;
    }
    r->at = off;
    r->len = want;
    return r->buf;
}

/* The record at off is whole, CRC-valid and decodes: its payload length
 * in *n. 0: yes; 1: no (why in what); -1: read error (err). */
static int record_at(reader *r, uint64_t off, uint32_t *n, const uint8_t **payload, char *what,
                     size_t wlen, bg_err *err)
{
    uint64_t rem = r->size - off;
    if (rem < 8) {
        snprintf(what, wlen, "record header cut short (%" PRIu64 " of 8 bytes)", rem);
        return 1;
    }
    const uint8_t *h = rd_get(r, off, 8, err);
    if (!h)
        return -1;
    uint32_t len = le32(h), crc = le32(h + 4);
    if (len > BG_OBS_RECORD_MAX) {
        snprintf(what, wlen, "impossible record length %u (limit %u)", len, BG_OBS_RECORD_MAX);
        return 1;
    }
    if (len > rem - 8) {
        snprintf(what, wlen, "record of %u bytes runs past the end of the file", len);
        return 1;
    }
    const uint8_t *p = rd_get(r, off + 8, len, err);
    if (!p)
        return -1;
    if (bg__crc32(p, len) != crc) {
        snprintf(what, wlen, "CRC mismatch in a record of %u bytes", len);
        return 1;
    }
    char *g, *s;
    bg_observation *obs;
    bg_err derr;
    bg_err_clear(&derr);
    if (bg__obs_decode_receipt(p, len, &g, &s, &obs, NULL, NULL, &derr) != BG_OK) {
        snprintf(what, wlen, "record does not decode: %s", derr.msg);
        return 1;
    }
    free(g);
    free(s);
    free(obs);
    *n = len;
    *payload = p;
    return 0;
}

/* Every byte from off to EOF is zero. */
static int zeros_to_end(reader *r, uint64_t off, bg_err *err, int *yes)
{
    *yes = 1;
    while (off < r->size) {
        size_t n = r->size - off > BG_OBS_SCAN_WINDOW ? BG_OBS_SCAN_WINDOW : r->size - off;
        const uint8_t *p = rd_get(r, off, n, err);
        if (!p)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (p[i]) {
                *yes = 0;
                return 0;
            }
        off += n;
    }
    return 0;
}

static int report(const bg__obs_problem *p, bg__obs_problem_cb pcb, void *ctx, bg_err *err)
{
    if (pcb)
        return pcb(ctx, p, err);
    if (p->torn_tail)
        return BG_OK;
    return bg_err_set(err, BG_EIO,
                      "%s: offset %" PRIu64 ": %s; the log is corrupt: run `bayesguard store "
                      "verify DIR` to list the damage and `bayesguard store repair DIR` to set "
                      "it aside",
                      p->path, p->offset, p->what);
}

int bg__obs_scan(const bg__obs_file *f, const bg__obs_scan_opts *o, bg__obs_record_cb rcb,
                 bg__obs_problem_cb pcb, void *ctx, bg__obs_scan_result *res, bg_err *err)
{
    memset(res, 0, sizeof *res);
    reader r = {.fd = open(f->path, O_RDONLY | O_CLOEXEC), .path = f->path};
    struct stat st;
    if (r.fd < 0 || fstat(r.fd, &st) != 0) {
        int e = errno;
        if (r.fd >= 0)
            close(r.fd);
        return bg_err_set(err, BG_EIO, "%s: open: %s", f->path, strerror(e));
    }
    r.size = (uint64_t)st.st_size;
    res->size = r.size;
    const char *magic = f->snapshot ? BG_OBS_SNAP_MAGIC : BG_OBS_STORE_MAGIC;
    const size_t mlen = 8;
    int rc = BG_OK;
    bg__obs_problem pb = {.path = f->path};
    if (r.size < mlen) {
        /* a header torn at creation: only the last segment can have one */
        pb.bytes = r.size;
        pb.torn_tail = o->last && !f->snapshot;
        snprintf(pb.what, sizeof pb.what, "file of %" PRIu64 " bytes, shorter than its header",
                 r.size);
        res->problems = 1;
        res->corrupt = !pb.torn_tail;
        rc = report(&pb, pcb, ctx, err);
        close(r.fd);
        free(r.buf);
        return rc;
    }
    const uint8_t *m = rd_get(&r, 0, mlen, err);
    if (!m) {
        close(r.fd);
        free(r.buf);
        return BG_EIO;
    }
    if (memcmp(m, magic, mlen) != 0) {
        close(r.fd);
        free(r.buf);
        return bg_err_set(err, BG_EIO, "%s: not a %s (bad magic); expected \"%.7s\"", f->path,
                          f->snapshot ? "snapshot" : "log segment", magic);
    }
    uint64_t off = mlen;
    res->good_end = off;
    int first_problem = 1;
    char what[sizeof pb.what];
    while (rc == BG_OK && off < r.size) {
        uint32_t n;
        const uint8_t *p;
        int k = record_at(&r, off, &n, &p, what, sizeof what, err);
        if (k < 0) {
            rc = BG_EIO;
            break;
        }
        if (k == 0) {
            if (rcb && (rc = rcb(ctx, p, n, off, err)) != BG_OK)
                break;
            res->records++;
            off += 8 + (uint64_t)n;
            if (first_problem)
                res->good_end = off;
            continue;
        }
        /* A problem at off: torn tail, or corruption. */
        int zeros = 0;
        if (o->last && !f->snapshot && zeros_to_end(&r, off, err, &zeros) != 0) {
            rc = BG_EIO;
            break;
        }
        uint32_t len = 0;
        if (r.size - off >= 8) {
            const uint8_t *h = rd_get(&r, off, 8, err);
            if (!h) {
                rc = BG_EIO;
                break;
            }
            len = le32(h);
        }
        int reaches_end = r.size - off < 8 || (uint64_t)len + 8 >= r.size - off;
        pb.offset = off;
        pb.torn_tail = o->last && !f->snapshot && (zeros || reaches_end) &&
                       (zeros || len <= BG_OBS_RECORD_MAX || r.size - off < 8);
        snprintf(pb.what, sizeof pb.what, "%s", what);
        /* Where the next readable record starts (resync), else EOF. */
        uint64_t next = r.size;
        if (o->resync && !pb.torn_tail) {
            for (uint64_t at = off + 1; at + 8 <= r.size; at++) {
                uint32_t n2;
                const uint8_t *p2;
                char w2[sizeof what];
                int k2 = record_at(&r, at, &n2, &p2, w2, sizeof w2, err);
                if (k2 < 0) {
                    rc = BG_EIO;
                    break;
                }
                if (k2 == 0) {
                    next = at;
                    break;
                }
            }
            if (rc != BG_OK)
                break;
        }
        pb.bytes = next - off;
        res->problems++;
        res->corrupt += !pb.torn_tail;
        first_problem = 0;
        if ((rc = report(&pb, pcb, ctx, err)) != BG_OK)
            break;
        if (!o->resync || pb.torn_tail)
            break;
        off = next;
    }
    close(r.fd);
    free(r.buf);
    return rc;
}
