/*
 * obs_store.c — segmented, CRC-checked observation log with group commit
 * and snapshots. Format, invariants and threads: obs_store.h; reading the
 * files: obs_scan.c.
 *
 * Group commit (invariant 1): an appender writes its record under mu and
 * takes ticket = ++written. If no leader is syncing it becomes the leader:
 * it notes target = written, drops mu, fdatasyncs, retakes mu and sets
 * durable = target (or, when the sync failed, cuts the file back to the
 * last durable offset and fails every ticket above durable). Others wait
 * on cv until durable >= ticket or their ticket failed. So one fdatasync
 * covers every record written before it began.
 *
 * Compaction (invariant 4): seal the current segment (rotate with nothing
 * pending), then stream the newest snapshot and every sealed segment into
 * snapshot-<K>.tmp, fdatasync, rename to snapshot-<K>.bgsnap, fsync the
 * directory, unlink the covered files, fsync the directory. Memory: one
 * record at a time plus obs_scan's 1 MiB window.
 */
#include "engine/obs_store.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_assert.h"
#include "common/bg_io.h"
#include "common/bg_log.h"
#include "common/bg_siphash.h"
#include "engine/obs_scan.h"
#include "engine/observation.h"

struct bg__obs_store {
    char *dir;
    bg__obs_store_opts o;
    uint8_t key[2][BG_SIPHASH_KEY_BYTES];
    bg__obs_files files; /* as listed at open (replay reads them) */

    pthread_mutex_t mu; /* the fields below, the fd's end */
    pthread_cond_t cv;
    int fd;               /* the current segment */
    char *path;           /* its path */
    uint64_t seq;         /* its seq */
    uint64_t end;         /* its size (records written) */
    uint64_t durable_end; /* its size at the last successful fdatasync */
    uint64_t written;     /* tickets handed out */
    uint64_t durable;     /* every ticket <= durable is durable */
    uint64_t failed_hi;   /* tickets above durable and <= it failed (then broken) */
    int leader;           /* a leader is in fdatasync */
    int closing;
    uint64_t sealed_bytes; /* bytes in segments sealed since the last snapshot */
    uint64_t snap_cover;   /* segments below it are in the snapshot (0: none) */

    pthread_mutex_t compact_mu; /* one compaction at a time */
    pthread_t compactor;
    int have_compactor;
    int compact_wanted;

    int qfd; /* quarantine.bglog, opened on first use */

    atomic_int broken;
    atomic_uint_fast64_t refused, quarantined, syncs, appends, snapshots, compact_failed;
};

/* ------------------------------------------------------------ key, hash */

static int load_key(bg__obs_store *s, bg_err *err)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", s->dir, BG_OBS_KEY_FILE) >= sizeof path)
        return bg_err_set(err, BG_EINVAL, "%s: data directory path too long", s->dir);
    uint8_t k[2 * BG_SIPHASH_KEY_BYTES];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, k, sizeof k);
        close(fd);
        if (n != (ssize_t)sizeof k)
            return bg_err_set(err, BG_EIO,
                              "%s: expected %zu bytes (the key of the arguments' hash); "
                              "restore it from a backup",
                              path, sizeof k);
    } else if (errno == ENOENT) {
        if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k)
            return bg_err_set(err, BG_EIO, "%s: getrandom: %s", path, strerror(errno));
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || bg_write_all(fd, k, sizeof k) != 0 || fdatasync(fd) != 0 ||
            rename(tmp, path) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return bg_err_set(err, BG_EIO, "%s: %s; expected a writable data directory", path,
                              strerror(e));
        }
        close(fd);
        int rc = bg__obs_dir_sync(s->dir, err);
        if (rc != BG_OK)
            return rc;
    } else {
        return bg_err_set(err, BG_EIO, "%s: %s", path, strerror(errno));
    }
    memcpy(s->key[0], k, BG_SIPHASH_KEY_BYTES);
    memcpy(s->key[1], k + BG_SIPHASH_KEY_BYTES, BG_SIPHASH_KEY_BYTES);
    return BG_OK;
}

static int is_hashed(const char *a)
{
    if (strlen(a) != BG_OBS_ARGS_HASH_LEN || strncmp(a, BG_OBS_ARGS_HASH_PREFIX, 5) != 0)
        return 0;
    for (const char *c = a + 5; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

void bg__obs_store_hash_args(const bg__obs_store *s, const char *args, char *out)
{
    if (!args || !args[0] || is_hashed(args)) {
        snprintf(out, BG_OBS_ARGS_HASH_LEN + 1, "%s", args ? args : "");
        return;
    }
    size_t n = strlen(args);
    uint64_t h0 = bg_siphash24(s->key[0], args, n), h1 = bg_siphash24(s->key[1], args, n);
    snprintf(out, BG_OBS_ARGS_HASH_LEN + 1, BG_OBS_ARGS_HASH_PREFIX "%016llx%016llx",
             (unsigned long long)h0, (unsigned long long)h1);
}

/* A stored record decoded, its arguments in stored form (hashed: old
 * records carry them in plain text). *out borrows *obs and h. */
typedef struct decoded {
    char *guard, *session;
    bg_observation *obs; /* as read */
    bg_observation out;  /* arguments hashed */
    bg_obs_receipt receipt;
    int has_receipt;
    char h[BG_OBS_ARGS_HASH_LEN + 1];
} decoded;

static int decode_hashed(const bg__obs_store *s, const uint8_t *p, size_t n, decoded *d,
                         bg_err *err)
{
    d->has_receipt = 0;
    int rc = bg__obs_decode_receipt(p, n, &d->guard, &d->session, &d->obs, &d->receipt,
                                    &d->has_receipt, err);
    if (rc != BG_OK)
        return rc;
    bg__obs_store_hash_args(s, d->obs->action.arguments_json, d->h);
    d->out = *d->obs;
    d->out.action.arguments_json = d->h;
    return BG_OK;
}

static void decoded_free(decoded *d)
{
    free(d->guard);
    free(d->session);
    free(d->obs);
}

/* ------------------------------------------------------------- segments */

/* Create segment seq with its header, durable, directory synced. */
static int segment_create(const char *dir, uint64_t seq, int *fd_out, char **path_out, bg_err *err)
{
    char *path = bg__obs_segment_path(dir, seq);
    if (!path)
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
    const size_t mlen = sizeof BG_OBS_STORE_MAGIC - 1;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || bg_write_all(fd, BG_OBS_STORE_MAGIC, mlen) != 0 || fdatasync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        int rc = bg_err_set(err, BG_EIO, "%s: creating a log segment: %s", path, strerror(e));
        free(path);
        return rc;
    }
    int rc = bg__obs_dir_sync(dir, err);
    if (rc != BG_OK) {
        close(fd);
        free(path);
        return rc;
    }
    *fd_out = fd;
    *path_out = path;
    return BG_OK;
}

/* Start segment seq + 1 (mu held, nothing pending: invariant 2). */
static int rotate(bg__obs_store *s, bg_err *err)
{
    BG_ASSERT(!s->leader && s->durable == s->written && s->durable_end == s->end,
              "rotation with records not yet durable");
    int fd;
    char *path;
    int rc = segment_create(s->dir, s->seq + 1, &fd, &path, err);
    if (rc != BG_OK)
        return rc;
    close(s->fd);
    free(s->path);
    s->sealed_bytes += s->end;
    s->fd = fd;
    s->path = path;
    s->seq++;
    s->end = s->durable_end = sizeof BG_OBS_STORE_MAGIC - 1;
    if (s->o.snapshot_bytes && s->sealed_bytes >= s->o.snapshot_bytes && s->have_compactor) {
        s->compact_wanted = 1;
        pthread_cond_broadcast(&s->cv);
    }
    return BG_OK;
}

/* ------------------------------------------------------------ compaction */

typedef struct snap_writer {
    bg__obs_store *s;
    int fd;
    const char *path;
    int64_t now_ms;
    uint64_t records;
    uint8_t *buf;
    size_t len, cap;
} snap_writer;

static int snap_flush(snap_writer *w, bg_err *err)
{
    if (w->len && bg_write_all(w->fd, w->buf, w->len) != 0)
        return bg_err_set(err, BG_EIO, "%s: write: %s", w->path, strerror(errno));
    w->len = 0;
    return BG_OK;
}

static int snap_put(snap_writer *w, const uint8_t *p, size_t n, bg_err *err)
{
    if (w->len + n + 8 > w->cap && snap_flush(w, err) != BG_OK)
        return BG_EIO;
    if (n + 8 > w->cap) {
        uint8_t hdr[8];
        bg__obs_frame(hdr, p, n);
        if (bg_write_all(w->fd, hdr, 8) != 0 || bg_write_all(w->fd, p, n) != 0)
            return bg_err_set(err, BG_EIO, "%s: write: %s", w->path, strerror(errno));
        return BG_OK;
    }
    bg__obs_frame(w->buf + w->len, p, n);
    memcpy(w->buf + w->len + 8, p, n);
    w->len += n + 8;
    return BG_OK;
}

/* One record into the snapshot: arguments hashed, an expired receipt
 * dropped (its id can no longer be presented). Never the record itself,
 * and never a fleet id (a receipt with BG_OBS_RECEIPT_FLEET: the fleet's
 * applied-once set is rebuilt from it, whatever its expiry): invariant 6. */
static int snap_record(void *ctx, const uint8_t *payload, size_t len, uint64_t off, bg_err *err)
{
    (void)off;
    snap_writer *w = ctx;
    decoded d;
    int rc = decode_hashed(w->s, payload, len, &d, err);
    if (rc != BG_OK)
        return rc;
    uint8_t *p = NULL;
    int keep = d.has_receipt &&
               ((d.receipt.flags & BG_OBS_RECEIPT_FLEET) || d.receipt.expiry_unix_ms > w->now_ms);
    size_t n = bg__obs_encode_receipt(d.guard, d.session, &d.out, keep ? &d.receipt : NULL, &p);
    decoded_free(&d);
    if (n == 0)
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", w->path);
    rc = snap_put(w, p, n, err);
    free(p);
    w->records++;
    return rc;
}

static int unlink_synced(const char *dir, const bg__obs_file *v, size_t n, uint64_t below,
                         bg_err *err)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].snapshot && v[i].seq >= below)
            continue;
        if (unlink(v[i].path) != 0 && errno != ENOENT)
            BG_WARN("engine", "%s: unlink: %s (superseded; delete it by hand)", v[i].path,
                    strerror(errno));
        any = 1;
    }
    return any ? bg__obs_dir_sync(dir, err) : BG_OK;
}

static int compact(bg__obs_store *s, int seal_now, bg_err *err)
{
    pthread_mutex_lock(&s->compact_mu);
    pthread_mutex_lock(&s->mu);
    int rc = BG_OK;
    if (seal_now) {
        while ((s->leader || s->durable != s->written) && !atomic_load(&s->broken))
            pthread_cond_wait(&s->cv, &s->mu);
        if (atomic_load(&s->broken))
            rc = bg_err_set(err, BG_EIO,
                            "%s: the log is broken (a failed append); restart "
                            "bayesguardd before compacting",
                            s->path);
        else if (s->end > sizeof BG_OBS_STORE_MAGIC - 1)
            rc = rotate(s, err);
    }
    uint64_t below = s->seq;            /* every segment below the current one is sealed */
    uint64_t covered = s->sealed_bytes; /* segments sealed later count on */
    s->compact_wanted = 0;
    pthread_mutex_unlock(&s->mu);
    bg__obs_files f = {0};
    if (rc == BG_OK)
        rc = bg__obs_files_list(s->dir, &f, err);
    if (rc != BG_OK || below <= s->snap_cover || f.n == 0) {
        bg__obs_files_free(&f);
        pthread_mutex_unlock(&s->compact_mu);
        return rc;
    }
    char *path = bg__obs_snapshot_path(s->dir, below);
    size_t tl = path ? strlen(path) + 5 : 0;
    char *tmp = path ? malloc(tl) : NULL;
    snap_writer w = {.s = s, .cap = BG_OBS_SCAN_WINDOW};
    w.buf = malloc(w.cap);
    if (!path || !tmp || !w.buf) {
        rc = bg_err_set(err, BG_ENOMEM, "obs_store: out of memory compacting");
        goto out;
    }
    snprintf(tmp, tl, "%s.tmp", path);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    w.now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    w.path = tmp;
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w.fd < 0 || bg_write_all(w.fd, BG_OBS_SNAP_MAGIC, 8) != 0) {
        rc = bg_err_set(err, BG_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    bg__obs_scan_opts so = {0};
    uint64_t read = 0; /* records of the files covered */
    for (size_t i = 0; rc == BG_OK && i < f.n; i++) {
        if (!f.v[i].snapshot && f.v[i].seq >= below)
            break;
        bg__obs_scan_result res;
        rc = bg__obs_scan(&f.v[i], &so, snap_record, NULL, &w, &res, err);
        if (rc == BG_OK && res.corrupt)
            rc = bg_err_set(err, BG_EIO, "%s: corrupt; not compacted", f.v[i].path);
        read += rc == BG_OK ? res.records : 0;
    }
    if (rc == BG_OK)
        BG_ASSERT(w.records == read,
                  "compaction of %s wrote %llu records for %llu read: record "
                  "numbers (fleet ids) would shift",
                  tmp, (unsigned long long)w.records, (unsigned long long)read);
    if (rc == BG_OK)
        rc = snap_flush(&w, err);
    if (rc == BG_OK && (fdatasync(w.fd) != 0 || rename(tmp, path) != 0))
        rc = bg_err_set(err, BG_EIO, "%s: %s", path, strerror(errno));
    if (rc == BG_OK)
        rc = bg__obs_dir_sync(s->dir, err);
    /* The snapshot is in place: what it covers can go (invariant 4). */
    if (rc == BG_OK) {
        s->snap_cover = below;
        rc = unlink_synced(s->dir, f.v, f.n, below, err);
        pthread_mutex_lock(&s->mu);
        s->sealed_bytes -= covered < s->sealed_bytes ? covered : s->sealed_bytes;
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->snapshots, 1);
        BG_INFO("engine", "%s: snapshot of %llu observations (segments below %llu)", path,
                (unsigned long long)w.records, (unsigned long long)below);
    }
out:
    if (w.fd > 0)
        close(w.fd);
    if (rc != BG_OK && tmp) {
        unlink(tmp);
        atomic_fetch_add(&s->compact_failed, 1);
    }
    free(w.buf);
    free(tmp);
    free(path);
    bg__obs_files_free(&f);
    pthread_mutex_unlock(&s->compact_mu);
    return rc;
}

int bg__obs_store_compact(bg__obs_store *s, bg_err *err)
{
    return compact(s, 1, err);
}

static void *compactor_main(void *arg)
{
    bg__obs_store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->compact_wanted && !s->closing)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->closing)
            break;
        pthread_mutex_unlock(&s->mu);
        bg_err err;
        bg_err_clear(&err);
        if (compact(s, 0, &err) != BG_OK)
            BG_WARN("engine",
                    "compaction failed: %s (the segments stay; retried at the next "
                    "rotation)",
                    err.msg);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

int bg__obs_store_open(const char *dir, const bg__obs_store_opts *o, bg__obs_store **out,
                       bg_err *err)
{
    *out = NULL;
    bg__obs_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
    }
    if (o)
        s->o = *o;
    if (!s->o.segment_bytes)
        s->o.segment_bytes = BG_OBS_SEGMENT_BYTES_DEFAULT;
    s->fd = s->qfd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->compact_mu, NULL);
    int rc = load_key(s, err);
    if (rc == BG_OK)
        rc = bg__obs_files_list(dir, &s->files, err);
    if (rc == BG_OK && s->files.n_stale) {
        for (size_t i = 0; i < s->files.n_stale; i++)
            BG_INFO("engine", "%s: superseded by a snapshot (or a compaction's leftover): deleted",
                    s->files.stale[i].path);
        rc = unlink_synced(dir, s->files.stale, s->files.n_stale, UINT64_MAX, err);
    }
    if (rc == BG_OK && s->files.n && s->files.v[0].snapshot)
        s->snap_cover = s->files.v[0].seq;
    if (rc != BG_OK) {
        bg__obs_store_close(s);
        return rc;
    }
    *out = s;
    return BG_OK;
}

typedef struct replay_ctx {
    bg__obs_store *s;
    bg__obs_replay_cb cb;
    void *ctx;
    const char *path;
} replay_ctx;

static int replay_record(void *ctx, const uint8_t *p, size_t n, uint64_t off, bg_err *err)
{
    replay_ctx *r = ctx;
    decoded d;
    int rc = decode_hashed(r->s, p, n, &d, err);
    if (rc != BG_OK)
        return bg_err_prefix(err, "%s: record at offset %llu: ", r->path, (unsigned long long)off);
    /* memory holds the hash, like a live Observe's */
    rc = r->cb ? r->cb(r->ctx, d.guard, d.session, &d.out, d.has_receipt ? &d.receipt : NULL, err)
               : BG_OK;
    decoded_free(&d);
    return rc;
}

int bg__obs_store_replay(bg__obs_store *s, bg__obs_replay_cb cb, void *ctx,
                         bg__obs_replay_stats *stats, bg_err *err)
{
    replay_ctx r = {s, cb, ctx, NULL};
    bg__obs_replay_stats st = {0};
    int rc = BG_OK;
    uint64_t last_end = 0;
    const bg__obs_file *last = NULL;
    for (size_t i = 0; rc == BG_OK && i < s->files.n; i++) {
        const bg__obs_file *f = &s->files.v[i];
        bg__obs_scan_opts so = {.last = i + 1 == s->files.n && !f->snapshot};
        bg__obs_scan_result res;
        r.path = f->path;
        rc = bg__obs_scan(f, &so, replay_record, NULL, &r, &res, err);
        if (rc != BG_OK)
            break;
        st.records += res.records;
        st.files++;
        if (so.last) {
            last = f;
            last_end = res.good_end;
            st.dropped_bytes = res.size - res.good_end;
        } else if (!f->snapshot) {
            s->sealed_bytes += res.size;
        }
    }
    if (rc != BG_OK)
        return rc;
    /* Append after the last segment (cut back to its last good record), or
     * start segment 1. */
    if (last) {
        s->fd = open(last->path, O_RDWR | O_CLOEXEC);
        s->path = strdup(last->path);
        s->seq = last->seq;
        const uint64_t mlen = sizeof BG_OBS_STORE_MAGIC - 1;
        if (s->fd < 0 || !s->path)
            return bg_err_set(err, BG_EIO, "%s: open: %s", last->path, strerror(errno));
        if (last_end < mlen) {
            if (ftruncate(s->fd, 0) != 0 ||
                pwrite(s->fd, BG_OBS_STORE_MAGIC, mlen, 0) != (ssize_t)mlen ||
                fdatasync(s->fd) != 0)
                return bg_err_set(err, BG_EIO, "%s: writing header: %s", last->path,
                                  strerror(errno));
            last_end = mlen;
        } else if (st.dropped_bytes) {
            BG_WARN("engine", "%s: dropped a torn record: %llu bytes after offset %llu", last->path,
                    (unsigned long long)st.dropped_bytes, (unsigned long long)last_end);
            if (ftruncate(s->fd, (off_t)last_end) != 0 || fdatasync(s->fd) != 0)
                return bg_err_set(err, BG_EIO, "%s: truncating torn tail: %s", last->path,
                                  strerror(errno));
        }
        if (lseek(s->fd, (off_t)last_end, SEEK_SET) < 0)
            return bg_err_set(err, BG_EIO, "%s: seek: %s", last->path, strerror(errno));
        s->end = s->durable_end = last_end;
    } else {
        /* after a snapshot the next segment is the one it does not cover */
        uint64_t seq = s->snap_cover ? s->snap_cover : 1;
        if ((rc = segment_create(s->dir, seq, &s->fd, &s->path, err)) != BG_OK)
            return rc;
        s->seq = seq;
        s->end = s->durable_end = sizeof BG_OBS_STORE_MAGIC - 1;
    }
    if (s->qfd >= 0 && fdatasync(s->qfd) != 0)
        return bg_err_set(err, BG_EIO, "%s/%s: fdatasync: %s", s->dir, BG_OBS_QUARANTINE_FILE,
                          strerror(errno));
    if (s->o.snapshot_bytes) {
        if (pthread_create(&s->compactor, NULL, compactor_main, s) != 0)
            return bg_err_set(err, BG_EIO, "obs_store: cannot start the compaction thread");
        s->have_compactor = 1;
        if (s->sealed_bytes >= s->o.snapshot_bytes) {
            pthread_mutex_lock(&s->mu);
            s->compact_wanted = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (stats)
        *stats = st;
    return BG_OK;
}

int bg__obs_store_quarantine(bg__obs_store *s, const char *guard, const char *session,
                             const bg_observation *obs, const bg_obs_receipt *receipt,
                             const char *why, bg_err *err)
{
    if (s->qfd < 0) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", s->dir, BG_OBS_QUARANTINE_FILE) >=
            sizeof path)
            return bg_err_set(err, BG_EINVAL, "%s: data directory path too long", s->dir);
        s->qfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        struct stat st;
        if (s->qfd < 0 || fstat(s->qfd, &st) != 0)
            return bg_err_set(err, BG_EIO, "%s: %s", path, strerror(errno));
        if (st.st_size == 0 && bg_write_all(s->qfd, BG_OBS_STORE_MAGIC, 8) != 0)
            return bg_err_set(err, BG_EIO, "%s: %s", path, strerror(errno));
        int rc = bg__obs_dir_sync(s->dir, err);
        if (rc != BG_OK)
            return rc;
    }
    uint8_t *p = NULL;
    size_t n = bg__obs_encode_receipt(guard, session, obs, receipt, &p);
    if (n == 0)
        return bg_err_set(err, BG_ENOMEM, "obs_store: out of memory");
    uint8_t hdr[8];
    bg__obs_frame(hdr, p, n);
    int ok = bg_write_all(s->qfd, hdr, 8) == 0 && bg_write_all(s->qfd, p, n) == 0;
    free(p);
    if (!ok)
        return bg_err_set(err, BG_EIO, "%s/%s: write: %s", s->dir, BG_OBS_QUARANTINE_FILE,
                          strerror(errno));
    uint64_t k = atomic_fetch_add(&s->quarantined, 1) + 1;
    if (k <= 10 || (k & (k - 1)) == 0)
        BG_WARN("engine",
                "policy %s session \"%s\": observation quarantined at replay (%s): kept in "
                "%s/%s, not in memory (%llu so far); raise the memory limits and move it back "
                "to replay it",
                guard, session, why, s->dir, BG_OBS_QUARANTINE_FILE, (unsigned long long)k);
    return BG_OK;
}

/* ---------------------------------------------------------------- append */

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
    bg__obs_frame(rec, payload, n);
    memcpy(rec + 8, payload, n);
    free(payload);
    int rc = BG_OK;
    pthread_mutex_lock(&s->mu);
    /* A full segment is sealed once nothing in it is pending (inv. 2). */
    while (s->end >= s->o.segment_bytes && (s->leader || s->durable != s->written) &&
           !atomic_load(&s->broken))
        pthread_cond_wait(&s->cv, &s->mu);
    if (atomic_load(&s->broken)) {
        /* a record after the half one would be lost at the next start */
        rc = bg_err_set(err, BG_EIO,
                        "%s: a failed append could not be cut off; the observation is not "
                        "stored: restart bayesguardd (the start cuts the torn record)",
                        s->path);
    } else if (s->end >= s->o.segment_bytes && (rc = rotate(s, err)) != BG_OK) {
        bg_err_prefix(err, "the observation is not stored: ");
    }
    uint64_t ticket = 0, seq = s->seq, at = s->end;
    if (rc == BG_OK) {
        if (bg_write_all(s->fd, rec, n + 8) != 0) {
            rc = bg_err_set(err, BG_EIO,
                            "%s: append: %s; the observation is not stored and the posterior "
                            "is unchanged: retry once the data directory accepts writes",
                            s->path, strerror(errno));
            /* Leave no half record behind for the next append to follow. */
            if (ftruncate(s->fd, (off_t)at) != 0 || lseek(s->fd, (off_t)at, SEEK_SET) < 0) {
                BG_ERROR("engine",
                         "%s: could not cut a failed append: %s; refusing further "
                         "observations until a restart",
                         s->path, strerror(errno));
                atomic_store(&s->broken, 1);
            }
        } else {
            s->end += n + 8;
            ticket = ++s->written;
        }
    }
    /* Wait until durable: lead one fdatasync, or follow one. A failed
     * fdatasync fails every ticket not yet durable and breaks the store:
     * after it the kernel may have dropped the dirty pages, so nothing
     * later can be trusted on top of them (refused until a restart, which
     * re-reads the file). */
    while (rc == BG_OK && s->durable < ticket) {
        if (ticket <= s->failed_hi) {
            rc = bg_err_set(err, BG_EIO,
                            "%s: fdatasync failed; the observation is not stored and the "
                            "posterior is unchanged: restart bayesguardd once the data "
                            "directory accepts writes",
                            s->path);
            break;
        }
        if (s->leader) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        s->leader = 1;
        uint64_t target = s->written, target_end = s->end;
        int fd = s->fd;
        /* the baseline of the benchmark syncs each record under the lock */
        if (!s->o.per_record_sync)
            pthread_mutex_unlock(&s->mu);
        int ok = fdatasync(fd) == 0;
        int e = errno;
        if (!s->o.per_record_sync)
            pthread_mutex_lock(&s->mu);
        atomic_fetch_add(&s->syncs, 1);
        s->leader = 0;
        if (ok) {
            s->durable = target;
            s->durable_end = target_end;
        } else {
            BG_ERROR("engine",
                     "%s: fdatasync: %s; refusing further observations until a "
                     "restart",
                     s->path, strerror(e));
            s->failed_hi = s->written;
            atomic_store(&s->broken, 1);
            if (ftruncate(s->fd, (off_t)s->durable_end) == 0)
                s->end = s->durable_end;
        }
        pthread_cond_broadcast(&s->cv);
    }
    if (rc == BG_OK)
        BG_ASSERT(s->durable >= ticket && ticket > 0, "append acknowledged before durable");
    pthread_mutex_unlock(&s->mu);
    if (rc == BG_OK) {
        atomic_fetch_add(&s->appends, 1);
        if (s->o.on_durable)
            s->o.on_durable(s->o.durable_ctx, guard, session, obs, seq, at);
    } else {
        atomic_fetch_add(&s->refused, 1);
    }
    free(rec);
    return rc;
}

void bg__obs_store_health(bg__obs_store *s, bg__obs_store_health_t *out)
{
    out->refused = atomic_load(&s->refused);
    out->broken = atomic_load(&s->broken);
    out->quarantined = atomic_load(&s->quarantined);
    out->syncs = atomic_load(&s->syncs);
    out->appends = atomic_load(&s->appends);
    out->snapshots = atomic_load(&s->snapshots);
    out->compact_failed = atomic_load(&s->compact_failed);
}

void bg__obs_store_close(bg__obs_store *s)
{
    if (!s)
        return;
    if (s->have_compactor) {
        pthread_mutex_lock(&s->mu);
        s->closing = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->compactor, NULL);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->qfd >= 0)
        close(s->qfd);
    bg__obs_files_free(&s->files);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->compact_mu);
    free(s->path);
    free(s->dir);
    free(s);
}
