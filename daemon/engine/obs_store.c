/*
 * obs_store.c — append-only, CRC-checked, fsync'd observation log.
 * Format, crash semantics and threads: obs_store.h.
 */
#include "engine/obs_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/bg_io.h"
#include "common/bg_log.h"
#include "engine/observation.h"

struct bg__obs_store {
    int fd;
    char *path;
    pthread_mutex_t mu;
    /* Written under mu, read without it (Status, /metrics: a reader must
     * not wait for an append's fdatasync). */
    atomic_int broken;            /* a failed append could not be cut: refuse more (restart) */
    atomic_uint_fast64_t refused; /* appends that failed (not stored) */
};

/* CRC-32 (IEEE 802.3, zlib's): the record checksum of the log format. */
uint32_t bg__crc32(const void *buf, size_t len)
{
    return (uint32_t)crc32_z(0, buf, len);
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void put_le32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

/* Read the whole file into a new buffer (free()). */
static int read_file(int fd, const char *path, uint8_t **out, size_t *len, bg_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return bg_err_set(err, BG_EIO, "%s: stat: %s", path, strerror(errno));
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return bg_err_set(err, BG_EIO, "%s: read: %s", path, r < 0 ? strerror(errno) : "EOF");
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    return BG_OK;
}

/* Replay records from buf; *good = offset after the last good record. */
static int replay(const char *path, const uint8_t *buf, size_t len, bg__obs_replay_cb cb,
                  void *ctx, size_t *good, uint64_t *records, bg_err *err)
{
    size_t off = sizeof BG_OBS_STORE_MAGIC - 1;
    *records = 0;
    while (len - off >= 8) {
        uint32_t n = le32(buf + off), crc = le32(buf + off + 4);
        if (n > BG_OBS_RECORD_MAX || n > len - off - 8 || bg__crc32(buf + off + 8, n) != crc)
            break;
        char *guard, *session;
        bg_observation *obs;
        bg_obs_receipt receipt;
        int has_receipt = 0;
        int rc = bg__obs_decode_receipt(buf + off + 8, n, &guard, &session, &obs, &receipt,
                                        &has_receipt, err);
        if (rc != BG_OK)
            return bg_err_prefix(err, "%s: record at offset %zu: ", path, off);
        rc = cb ? cb(ctx, guard, session, obs, has_receipt ? &receipt : NULL, err) : BG_OK;
        free(guard);
        free(session);
        free(obs);
        if (rc != BG_OK)
            return rc;
        off += 8 + (size_t)n;
        (*records)++;
    }
    *good = off;
    return BG_OK;
}

int bg__obs_store_open(const char *dir, bg__obs_replay_cb cb, void *ctx, bg__obs_store **out,
                       bg__obs_replay_stats *stats, bg_err *err)
{
    *out = NULL;
    size_t plen = strlen(dir) + sizeof BG_OBS_STORE_FILE + 2;
    char *path = malloc(plen);
    if (!path)
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
    snprintf(path, plen, "%s/%s", dir, BG_OBS_STORE_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    uint8_t *buf = NULL;
    size_t len = 0, good = 0;
    uint64_t records = 0;
    const size_t mlen = sizeof BG_OBS_STORE_MAGIC - 1;
    int rc = BG_OK;
    if (fd < 0) {
        rc = bg_err_set(err, BG_EIO, "%s: open: %s; expected a writable data_dir", path,
                        strerror(errno));
        goto fail;
    }
    if ((rc = read_file(fd, path, &buf, &len, err)) != BG_OK)
        goto fail;
    if (len < mlen) {
        /* New file (or a header torn at creation): write the header. */
        if (ftruncate(fd, 0) != 0 || pwrite(fd, BG_OBS_STORE_MAGIC, mlen, 0) != (ssize_t)mlen ||
            fdatasync(fd) != 0) {
            rc = bg_err_set(err, BG_EIO, "%s: writing header: %s", path, strerror(errno));
            goto fail;
        }
        good = mlen;
    } else if (memcmp(buf, BG_OBS_STORE_MAGIC, mlen) != 0) {
        rc = bg_err_set(err, BG_EIO, "%s: not an observation log (bad magic); expected %s", path,
                        "\"BGOBS01\"");
        goto fail;
    } else {
        if ((rc = replay(path, buf, len, cb, ctx, &good, &records, err)) != BG_OK)
            goto fail;
        if (good < len) {
            BG_WARN("engine", "%s: dropped a torn record: %zu bytes after offset %zu", path,
                    len - good, good);
            if (ftruncate(fd, (off_t)good) != 0 || fdatasync(fd) != 0) {
                rc = bg_err_set(err, BG_EIO, "%s: truncating torn tail: %s", path,
                                strerror(errno));
                goto fail;
            }
        }
    }
    if (lseek(fd, 0, SEEK_END) < 0) {
        rc = bg_err_set(err, BG_EIO, "%s: seek: %s", path, strerror(errno));
        goto fail;
    }
    bg__obs_store *s = calloc(1, sizeof *s);
    if (!s) {
        rc = bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
        goto fail;
    }
    s->fd = fd;
    s->path = path;
    pthread_mutex_init(&s->mu, NULL);
    if (stats) {
        stats->records = records;
        stats->dropped_bytes = len > good ? len - good : 0;
    }
    free(buf);
    *out = s;
    return BG_OK;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

int bg__obs_store_append(bg__obs_store *s, const char *guard, const char *session,
                         const bg_observation *obs, const bg_obs_receipt *receipt, bg_err *err)
{
    uint8_t *payload = NULL;
    size_t n = bg__obs_encode_receipt(guard, session, obs, receipt, &payload);
    if (n == 0)
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory encoding an observation");
    if (n > BG_OBS_RECORD_MAX) {
        free(payload);
        return bg_err_set(err, BG_ELIMIT, "obs_store: observation of %zu bytes; limit %u", n,
                          BG_OBS_RECORD_MAX);
    }
    uint8_t *rec = malloc(n + 8);
    if (!rec) {
        free(payload);
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
    }
    put_le32(rec, (uint32_t)n);
    put_le32(rec + 4, bg__crc32(payload, n));
    memcpy(rec + 8, payload, n);
    free(payload);
    int rc = BG_OK;
    pthread_mutex_lock(&s->mu);
    off_t at = lseek(s->fd, 0, SEEK_END);
    if (atomic_load(&s->broken)) {
        /* a record after the half one would be lost at the next start */
        rc = bg_err_set(err, BG_EIO,
                        "%s: a failed append could not be cut off; the observation is not "
                        "stored: restart bayesguardd (the start cuts the torn record)",
                        s->path);
    } else if (bg_write_all(s->fd, rec, n + 8) != 0 || fdatasync(s->fd) != 0) {
        rc = bg_err_set(err, BG_EIO,
                        "%s: append: %s; the observation is not stored and the posterior is "
                        "unchanged: retry once the data directory accepts writes",
                        s->path, strerror(errno));
        /* Leave no half record behind for the next append to follow. */
        if (at < 0 || ftruncate(s->fd, at) != 0) {
            BG_ERROR("engine",
                     "%s: could not cut a failed append: %s; refusing further "
                     "observations until a restart",
                     s->path, strerror(errno));
            atomic_store(&s->broken, 1);
        }
    }
    if (rc != BG_OK)
        atomic_fetch_add(&s->refused, 1);
    pthread_mutex_unlock(&s->mu);
    free(rec);
    return rc;
}

void bg__obs_store_health(bg__obs_store *s, uint64_t *refused, int *broken)
{
    *refused = atomic_load(&s->refused);
    *broken = atomic_load(&s->broken);
}

void bg__obs_store_close(bg__obs_store *s)
{
    if (!s)
        return;
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}
