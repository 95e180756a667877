/*
 * fleet_order.c — <data-dir>/fleet.order, the settle journal: the stream
 * order of every session's settled observations, so that a restart
 * restores it even when Redis no longer holds those entries (restarted
 * empty, or trimmed). docs/FLEET.md, "Order" and "Bounded state".
 *
 * Format (integers little-endian):
 *   [compacted]  "BGFORD2\n" | u64 section bytes | section
 *                section: groups of  u32 len | policy | u32 len | session |
 *                u32 n | n varints (zigzag delta of the record number from
 *                the previous one of the group, the first from 0)
 *   then records appended since, one per settle:
 *                u64 lsn | u32 len | policy | u32 len | session
 * A file without the magic is records only (what versions before the
 * compaction wrote). A cut-short last record (a crash in a write) is
 * ignored at replay.
 *
 * Why it stays small: appends cost ~20 bytes per settle; once the file is
 * past twice its last compacted size plus BG_FLEET_ORDER_SLACK, the reader
 * rewrites it from the engine's settled prefixes (bg_engine_fleet_export:
 * one entry per observation held, in stream order), where a record number
 * costs a byte or two (deltas within a session). So the file is at most
 * 2 x (compacted size) + 64 KiB: about 2 to 6 bytes per observation held
 * plus 64 KiB, where it grew by ~20 bytes per settle before.
 *
 * Writes: appends are one write(2) each, no fsync (a tail lost in an OS
 * crash is re-settled from the stream, or left in local order: order, not
 * data); a compaction is temp file, fdatasync, rename, directory fsync.
 * Threads: the reader thread appends and compacts; replay and open run at
 * start before it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bg_io.h"
#include "common/bg_log.h"
#include "fleet/fleet_priv.h"

#define ORDER_FILE "fleet.order"
#define ORDER_MAGIC "BGFORD2\n"

struct bg__fleet_order {
    char path[4200];
    char dir[4096];
    int fd;                /* O_APPEND */
    _Atomic uint64_t size; /* bytes in the file (read by lag_get on any thread) */
    uint64_t compact_size; /* bytes after the last compaction (0: never) */
};

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Reads a u32-length string into buf (cap bytes with the NUL); -1 at EOF
 * or when it does not fit. */
static int read_str(FILE *fp, char *buf, size_t cap)
{
    uint8_t l4[4];
    if (fread(l4, 1, 4, fp) != 4)
        return -1;
    size_t n = (size_t)le(l4, 4);
    if (n >= cap || fread(buf, 1, n, fp) != n)
        return -1;
    buf[n] = 0;
    return 0;
}

static int read_varint(FILE *fp, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        int c = fgetc(fp);
        if (c == EOF)
            return -1;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

typedef void (*settle_fn)(void *ctx, const char *policy, const char *session, uint64_t lsn);

/* Walks the file: settle per observation (NULL: none); *max_lsn one past
 * the largest record number. Returns how many. */
static uint64_t walk(const char *path, settle_fn settle, void *ctx, uint64_t *end_lsn)
{
    *end_lsn = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    char pol[BG_FLEET_POLICY_MAX + 1], ses[BG_FLEET_SESSION_MAX + 1];
    uint64_t n = 0;
    uint8_t hdr[12];
    if (fread(hdr, 1, 8, fp) == 8 && memcmp(hdr, ORDER_MAGIC, 8) == 0 &&
        fread(hdr, 1, 8, fp) == 8) {
        long end = ftell(fp) + (long)le(hdr, 8);
        while (ftell(fp) < end) {
            uint8_t c4[4];
            if (read_str(fp, pol, sizeof pol) || read_str(fp, ses, sizeof ses) ||
                fread(c4, 1, 4, fp) != 4)
                break;
            uint64_t cnt = le(c4, 4), lsn = 0, z;
            for (uint64_t i = 0; i < cnt && read_varint(fp, &z) == 0; i++) {
                lsn += (z >> 1) ^ (0 - (z & 1));
                if (settle)
                    settle(ctx, pol, ses, lsn);
                if (lsn + 1 > *end_lsn)
                    *end_lsn = lsn + 1;
                n++;
            }
        }
        fseek(fp, end, SEEK_SET);
    } else
        rewind(fp);
    while (fread(hdr, 1, 12, fp) == 12) {
        uint64_t lsn = le(hdr, 8);
        size_t pl = (size_t)le(hdr + 8, 4), sl;
        uint8_t l4[4];
        if (pl >= sizeof pol || fread(pol, 1, pl, fp) != pl || fread(l4, 1, 4, fp) != 4 ||
            (sl = (size_t)le(l4, 4)) >= sizeof ses || fread(ses, 1, sl, fp) != sl)
            break;
        pol[pl] = 0;
        ses[sl] = 0;
        if (settle)
            settle(ctx, pol, ses, lsn);
        if (lsn + 1 > *end_lsn)
            *end_lsn = lsn + 1;
        n++;
    }
    fclose(fp);
    return n;
}

int bg__fleet_order_open(const char *dir, bg__fleet_order **out, uint64_t *journaled_below,
                         bg_err *err)
{
    *out = NULL;
    bg__fleet_order *o = calloc(1, sizeof *o);
    if (!o)
        return bg_err_set(err, BG_ENOMEM, "fleet: out of memory");
    snprintf(o->dir, sizeof o->dir, "%s", dir);
    snprintf(o->path, sizeof o->path, "%s/%s", dir, ORDER_FILE);
    o->fd = open(o->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (o->fd < 0 || fstat(o->fd, &st) != 0) {
        int e = errno;
        bg__fleet_order_close(o);
        return bg_err_set(err, BG_EIO, "fleet: %s/%s: %s", dir, ORDER_FILE, strerror(e));
    }
    atomic_store(&o->size, (uint64_t)st.st_size);
    o->compact_size = (uint64_t)st.st_size; /* as if just compacted: the next one at 2x + slack */
    (void)walk(o->path, NULL, NULL, journaled_below);
    *out = o;
    return BG_OK;
}

void bg__fleet_order_close(bg__fleet_order *o)
{
    if (!o)
        return;
    if (o->fd >= 0)
        close(o->fd);
    free(o);
}

uint64_t bg__fleet_order_bytes(bg__fleet_order *o)
{
    return o ? atomic_load(&o->size) : 0;
}

void bg__fleet_order_append(bg__fleet_order *o, uint64_t lsn, const char *policy,
                            const char *session)
{
    size_t pl = strlen(policy), sl = strlen(session);
    uint8_t *b = malloc(16 + pl + sl);
    if (!b)
        return;
    size_t k = 0;
    for (int i = 0; i < 8; i++)
        b[k++] = (uint8_t)(lsn >> (8 * i));
    for (int i = 0; i < 4; i++)
        b[k++] = (uint8_t)((uint32_t)pl >> (8 * i));
    memcpy(b + k, policy, pl);
    k += pl;
    for (int i = 0; i < 4; i++)
        b[k++] = (uint8_t)((uint32_t)sl >> (8 * i));
    memcpy(b + k, session, sl);
    k += sl;
    if (write(o->fd, b, k) == (ssize_t)k)
        atomic_fetch_add(&o->size, k);
    else
        BG_WARN("fleet", "%s: %s (the order is restored from the stream at restart)", o->path,
                strerror(errno));
    free(b);
}

uint64_t bg__fleet_order_replay(bg__fleet_order *o, settle_fn settle, void *ctx)
{
    uint64_t end;
    return walk(o->path, settle, ctx, &end);
}

/* ---------------------------------------------------------- compaction */

typedef struct cw {
    bg__fleet_buf sec;   /* the section being built */
    bg__fleet_buf group; /* the current group's varints */
    char pol[BG_FLEET_POLICY_MAX + 1], ses[BG_FLEET_SESSION_MAX + 1];
    uint32_t count;
    uint64_t prev;
    int open, failed;
} cw;

static int flush_group(cw *w)
{
    if (!w->open)
        return 0;
    uint8_t c4[4];
    for (int i = 0; i < 4; i++)
        c4[i] = (uint8_t)(w->count >> (8 * i));
    int rc = bg__fleet_buf_put(&w->sec, w->pol, strlen(w->pol)) ||
             bg__fleet_buf_put(&w->sec, w->ses, strlen(w->ses)) ||
             bg__fleet_buf_raw(&w->sec, c4, 4) ||
             bg__fleet_buf_raw(&w->sec, w->group.p, w->group.len);
    w->group.len = 0;
    w->open = 0;
    return rc ? -1 : 0;
}

static int on_settled(void *ctx, uint64_t lsn, const char *guard, const char *session,
                      const uint8_t *rec, size_t len)
{
    (void)rec;
    (void)len;
    cw *w = ctx;
    if (strlen(guard) > BG_FLEET_POLICY_MAX || strlen(session) > BG_FLEET_SESSION_MAX)
        return 0; /* never journaled either (apply refuses such names) */
    if (!w->open || w->count == UINT32_MAX || strcmp(w->pol, guard) || strcmp(w->ses, session)) {
        if (flush_group(w) != 0)
            return BG_ENOMEM;
        snprintf(w->pol, sizeof w->pol, "%s", guard);
        snprintf(w->ses, sizeof w->ses, "%s", session);
        w->open = 1;
        w->count = 0;
        w->prev = 0;
    }
    int64_t d = (int64_t)(lsn - w->prev);
    uint64_t z = ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
    uint8_t v[10];
    size_t k = 0;
    do {
        v[k++] = (uint8_t)((z & 0x7f) | (z > 0x7f ? 0x80 : 0));
        z >>= 7;
    } while (z);
    if (bg__fleet_buf_raw(&w->group, v, k) != 0)
        return BG_ENOMEM;
    w->prev = lsn;
    w->count++;
    return 0;
}

static int dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

void bg__fleet_order_maybe_compact(bg__fleet_order *o, bg_engine *e)
{
    if (o->size <= 2 * o->compact_size + BG_FLEET_ORDER_SLACK)
        return;
    cw w = {0};
    int rc = bg_engine_fleet_export(e, on_settled, &w);
    if (rc == BG_OK)
        rc = flush_group(&w) ? BG_ENOMEM : BG_OK;
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->path);
    uint64_t total = 16 + w.sec.len;
    if (rc == BG_OK) {
        uint8_t hdr[16];
        memcpy(hdr, ORDER_MAGIC, 8);
        for (int i = 0; i < 8; i++)
            hdr[8 + i] = (uint8_t)((uint64_t)w.sec.len >> (8 * i));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || bg_write_all(fd, hdr, 16) || bg_write_all(fd, w.sec.p, w.sec.len) ||
            fdatasync(fd) != 0)
            rc = BG_EIO;
        if (fd >= 0)
            close(fd);
        if (rc == BG_OK && rename(tmp, o->path) != 0)
            rc = BG_EIO;
        if (rc == BG_OK) { /* the old fd now appends to an unlinked file */
            int nfd = open(o->path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (nfd >= 0) {
                close(o->fd);
                o->fd = nfd;
            } else
                rc = BG_EIO;
            if (dir_sync(o->dir) != 0)
                rc = BG_EIO;
        }
    }
    if (rc == BG_OK) {
        BG_INFO("fleet", "%s compacted: %" PRIu64 " -> %" PRIu64 " bytes", o->path,
                atomic_load(&o->size), total);
        atomic_store(&o->size, total);
        o->compact_size = total;
    } else {
        unlink(tmp);
        /* Try again only after as much growth again: no retry storm. */
        o->compact_size = atomic_load(&o->size);
        BG_WARN("fleet", "%s: compaction failed (%s); appending on", o->path,
                rc == BG_ENOMEM ? "out of memory" : strerror(errno));
    }
    free(w.sec.p);
    free(w.group.p);
}
