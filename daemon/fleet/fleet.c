/*
 * fleet.c — fleet mode on a Redis stream: the outbox shipper, the stream
 * reader, the snapshot, the persisted positions.
 *
 * Contract: fleet.h; design: docs/FLEET.md.
 *
 * State (f->mu): the outbox queue (own records to XADD, in lsn order), the
 * outbox position `shipped` (every own record below it is in the stream),
 * the last stream id read. fleet.state is rewritten (temp file + rename)
 * after every shipped batch and every applied batch; it is a hint that
 * only saves work: re-shipping is deduplicated by id, and the reader
 * re-reads the retained stream at start anyway.
 *
 * The applied set (fleet_ids.c: a high-water mark per node): filled by the
 * engine's stored hook (at replay and at apply), so "applied" and "stored"
 * are one atomic fact. The outbox keeps log order (a record that cannot be
 * queued stops the queue until a restart), which that set relies on.
 *
 * Threads: shipper and reader (one Redis connection each, hiredis's
 * blocking API with timeouts); the stored hook on the storing thread;
 * lag_get anywhere (atomics).
 */
#include "fleet/fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_log.h"
#include "common/bg_siphash.h"
#include "fleet/fleet_priv.h"
#include "metrics/metrics.h"

#define NODE_FILE "fleet.node"
#define STATE_FILE "fleet.state"
#define READ_COUNT 256
#define READ_BLOCK_MS 200
#define SHIP_BATCH 256
/* Redis's proto-max-bulk-len default: a larger value cannot be stored. */
#define BG_FLEET_SNAPSHOT_MAX ((size_t)512 * 1024 * 1024 - 4096)

typedef struct outbox_item {
    struct outbox_item *next;
    uint64_t lsn;
    char *policy, *session;
    uint8_t *rec;
    size_t len;
} outbox_item;

struct bg_fleet {
    char host[256];
    int port;
    int tls_url;        /* rediss:// */
    bg__fleet_tls *tls; /* rediss://: the CA, client certificate; else NULL */
    char key[256];
    char user[128];
    char password[512]; /* "" : no AUTH */
    char dir[4096];
    char node[17];
    uint64_t maxlen, snapshot_every;
    bg__fleet_order *order; /* fleet.order: the settle journal (fleet_order.c) */
    char snap_key[300];     /* <key>:snapshot */
    bg_engine_fleet_hooks hooks;
    bg_engine *engine;      /* borrowed */
    bg_policy_store *store; /* borrowed */
    bg_metrics *metrics;    /* borrowed; NULL: no collector */

    pthread_mutex_t mu; /* queue, positions, stop */
    pthread_cond_t cv;
    outbox_item *head, *tail;
    uint64_t shipped; /* outbox position */
    char last_id[64];
    int stop;

    bg__fleet_ids *ids;  /* the applied set (fleet_ids.c) */
    uint64_t stored_lsn; /* the record number of the last peer observation stored */
    int outbox_stopped;  /* a record could not be queued: queue none after it */

    pthread_t ship_th, read_th;
    int started;

    atomic_uint_fast64_t pending_out, pending_in, shipped_n, applied_n, dup_n, refused_n,
        mismatch_n, reconnects_n;
    atomic_int ship_up, read_up, in_sync;
    _Atomic int64_t caught_up_ms;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- the URL */

static int parse_url(bg_fleet *f, const char *url, bg_err *err)
{
    const char *hint = "expected redis://[USER@]HOST:PORT/KEY or rediss://... for TLS "
                       "(docs/FLEET.md)";
    f->tls_url = strncmp(url, "rediss://", 9) == 0;
    if (!f->tls_url && strncmp(url, "redis://", 8) != 0)
        return bg_err_set(err, BG_EINVAL, "--fleet %s: not a redis:// URL; %s", url, hint);
    const char *p = url + (f->tls_url ? 9 : 8);
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at && (!slash || at < slash)) {
        if (memchr(p, ':', (size_t)(at - p)))
            return bg_err_set(err, BG_EINVAL,
                              "--fleet: a password in the URL would show in ps and logs; put "
                              "it in --fleet-password-file and give only USER@ in the URL");
        if ((size_t)(at - p) >= sizeof f->user || at == p)
            return bg_err_set(err, BG_EINVAL, "--fleet: bad user before '@'; %s", hint);
        memcpy(f->user, p, (size_t)(at - p));
        p = at + 1;
    }
    const char *colon = strchr(p, ':');
    if (!slash || !colon || colon > slash || colon == p)
        return bg_err_set(err, BG_EINVAL, "--fleet %s: no HOST:PORT/KEY; %s", url, hint);
    if ((size_t)(colon - p) >= sizeof f->host)
        return bg_err_set(err, BG_EINVAL, "--fleet: host name too long");
    memcpy(f->host, p, (size_t)(colon - p));
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end != slash || port < 1 || port > 65535)
        return bg_err_set(err, BG_EINVAL, "--fleet %s: port is not 1..65535; %s", url, hint);
    f->port = (int)port;
    const char *key = slash + 1;
    if (!*key || strlen(key) >= sizeof f->key)
        return bg_err_set(err, BG_EINVAL, "--fleet %s: no stream KEY after the port; %s", url,
                          hint);
    snprintf(f->key, sizeof f->key, "%s", key);
    return BG_OK;
}

static int read_password(bg_fleet *f, const char *file, bg_err *err)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return bg_err_set(err, BG_EIO, "--fleet-password-file %s: %s", file, strerror(e));
    }
    if (st.st_mode & 077) {
        close(fd);
        return bg_err_set(err, BG_EINVAL,
                          "--fleet-password-file %s: readable by group or others (mode %03o); "
                          "chmod 600 it",
                          file, (unsigned)(st.st_mode & 0777));
    }
    ssize_t n = read(fd, f->password, sizeof f->password - 1);
    close(fd);
    if (n <= 0)
        return bg_err_set(err, BG_EINVAL, "--fleet-password-file %s: empty", file);
    f->password[n] = 0;
    f->password[strcspn(f->password, "\r\n")] = 0;
    if (!f->password[0])
        return bg_err_set(err, BG_EINVAL, "--fleet-password-file %s: empty first line", file);
    return BG_OK;
}

/* ------------------------------------------------- node id and state */

static int load_node(bg_fleet *f, bg_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", f->dir, NODE_FILE);
    FILE *fp = fopen(path, "r");
    if (fp) {
        int ok = fscanf(fp, "%16[0-9a-f]", f->node) == 1 && strlen(f->node) == 16;
        fclose(fp);
        if (!ok)
            return bg_err_set(err, BG_EIO,
                              "%s: not 16 hex digits; remove it to give this sidecar a new id",
                              path);
        return BG_OK;
    }
    uint8_t raw[BG_SIPHASH_KEY_BYTES];
    if (bg_siphash_key_random(raw) != BG_OK)
        return bg_err_set(err, BG_EIO, "fleet: getrandom failed for the node id");
    for (int i = 0; i < 8; i++)
        snprintf(f->node + 2 * i, 3, "%02x", raw[i]);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fp = fopen(tmp, "w");
    if (!fp || fprintf(fp, "%s\n", f->node) < 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0 ||
        fclose(fp) != 0 || rename(tmp, path) != 0)
        return bg_err_set(err, BG_EIO, "fleet: writing %s: %s", path, strerror(errno));
    return BG_OK;
}

static void load_state(bg_fleet *f)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", f->dir, STATE_FILE);
    FILE *fp = fopen(path, "r");
    snprintf(f->last_id, sizeof f->last_id, "0-0");
    if (!fp)
        return;
    char line[128];
    while (fgets(line, sizeof line, fp)) {
        unsigned long long v;
        char id[64];
        if (sscanf(line, "shipped %llu", &v) == 1)
            f->shipped = v;
        else if (sscanf(line, "last %63[0-9-]", id) == 1)
            snprintf(f->last_id, sizeof f->last_id, "%s", id);
    }
    fclose(fp);
}

/* Caller holds f->mu. A failure is logged: the state is a hint (header). */
static void save_state(bg_fleet *f)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", f->dir, STATE_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp || fprintf(fp, "shipped %" PRIu64 "\nlast %s\n", f->shipped, f->last_id) < 0 ||
        fclose(fp) != 0 || rename(tmp, path) != 0)
        BG_WARN("fleet", "writing %s: %s (positions are re-derived at start)", path,
                strerror(errno));
}

/* ------------------------------------------------------------ the hook */

static void stored_hook(void *ctx, uint64_t lsn, const char *guard, const char *session,
                        const uint8_t *rec, size_t len, const bg_obs_receipt *rc, int replayed)
{
    bg_fleet *f = ctx;
    if (rc && (rc->flags & BG_OBS_RECEIPT_FLEET)) {
        uint64_t node, plsn;
        int r = bg__fleet_id_parse(rc->id, &node, &plsn);
        if (r == 0)
            r = bg__fleet_ids_add(f->ids, node, plsn, lsn, replayed);
        if (r != 0)
            BG_WARN("fleet", "record %" PRIu64 ": fleet id %.64s not remembered (%s)", lsn, rc->id,
                    r == -2   ? "more nodes than BG_FLEET_NODES_MAX"
                    : r == -1 ? "out of memory"
                              : "not <node>-<lsn>");
        f->stored_lsn = lsn;
        return;
    }
    pthread_mutex_lock(&f->mu);
    if ((replayed && lsn < f->shipped) || f->outbox_stopped) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    outbox_item *it = calloc(1, sizeof *it);
    if (it) {
        it->lsn = lsn;
        it->policy = strdup(guard);
        it->session = strdup(session);
        it->rec = malloc(len);
        it->len = len;
    }
    if (!it || !it->policy || !it->session || !it->rec) {
        if (it) {
            free(it->policy);
            free(it->session);
            free(it->rec);
            free(it);
        }
        /* Skipping it would ship later records first, and peers take a
         * node's ids in order (fleet_ids.c): queue nothing more; the
         * replay of a restart queues from the outbox position on. */
        f->outbox_stopped = 1;
        pthread_mutex_unlock(&f->mu);
        BG_ERROR("fleet",
                 "out of memory queueing record %" PRIu64
                 ": shipping stops at it until a restart (the log keeps every record)",
                 lsn);
        return;
    }
    memcpy(it->rec, rec, len);
    if (f->tail)
        f->tail->next = it;
    else
        f->head = it;
    f->tail = it;
    atomic_fetch_add(&f->pending_out, 1);
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------------- Redis */

/* Waits ms on f->cv unless stopping; returns f->stop. */
static int nap(bg_fleet *f, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&f->mu);
    if (!f->stop)
        pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    int stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

static int stopping(bg_fleet *f)
{
    pthread_mutex_lock(&f->mu);
    int s = f->stop;
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* A connected, authenticated link, or NULL (logged once per outage). */
static bg__fleet_link *connect_redis(bg_fleet *f, const char *who, int *warned)
{
    char why[300];
    const char *scheme = f->tls ? "rediss" : "redis";
    /* TLS: TCP, the handshake and a PING within the time (a loaded node's
     * RSA handshake can take a few hundred ms) */
    bg__fleet_link *l =
        bg__fleet_link_open(f->host, f->port, f->tls, f->tls ? 3000 : 1000, why, sizeof why);
    if (l) {
        redisContext *c = bg__fleet_link_ctx(l);
        if (f->password[0]) {
            redisReply *r = f->user[0] ? redisCommand(c, "AUTH %s %s", f->user, f->password)
                                       : redisCommand(c, "AUTH %s", f->password);
            int ok = r && r->type != REDIS_REPLY_ERROR;
            if (!*warned && !ok)
                BG_WARN("fleet", "%s: %s://%s:%d refused AUTH: %s", who, scheme, f->host, f->port,
                        r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            if (!ok) {
                bg__fleet_link_close(l);
                *warned = 1;
                return NULL;
            }
        }
        if (*warned)
            BG_INFO("fleet", "%s: connected to %s://%s:%d", who, scheme, f->host, f->port);
        *warned = 0;
        return l;
    }
    if (!*warned)
        BG_WARN("fleet", "%s: %s://%s:%d: %s (retrying with backoff; observations are kept)", who,
                scheme, f->host, f->port, why);
    *warned = 1;
    return NULL;
}

/* Why a command on l failed: the TLS pump's reason when it stopped, else
 * hiredis's. */
static const char *link_why(bg__fleet_link *l)
{
    const char *w = bg__fleet_link_error(l);
    redisContext *c = bg__fleet_link_ctx(l);
    return w[0] ? w : c->errstr[0] ? c->errstr : "connection lost";
}

/* ------------------------------------------------------------ shipper */

/* The model identity of policy `name` now, as hex ("0": no such policy). */
static void policy_revision(bg_fleet *f, const char *name, char *buf, size_t len)
{
    bg_policy_set *set = bg_policy_store_acquire(f->store);
    const bg_policy *p = bg_policy_set_find(set, name);
    snprintf(buf, len, "%016" PRIx64, p ? p->guard.model_key : 0);
    bg_policy_set_unref(set);
}

/* XADD a batch (pipelined). Returns how many were acknowledged in order. */
static size_t ship_batch(bg_fleet *f, redisContext *c, outbox_item **items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        outbox_item *it = items[i];
        char fid[64], rev[32];
        snprintf(fid, sizeof fid, "%s-%" PRIu64, f->node, it->lsn);
        policy_revision(f, it->policy, rev, sizeof rev);
        char maxlen[32];
        snprintf(maxlen, sizeof maxlen, "%" PRIu64, f->maxlen);
        /* XADD KEY [MAXLEN ~ N] * id .. policy .. revision .. session .. obs .. origin .. */
        const char *argv[18] = {"XADD", f->key};
        size_t argl[18];
        int k = 2;
        if (f->maxlen) {
            argv[k++] = "MAXLEN";
            argv[k++] = "~";
            argv[k++] = maxlen;
        }
        const char *rest[] = {"*",
                              "id",
                              fid,
                              "policy",
                              it->policy,
                              "revision",
                              rev,
                              "session",
                              it->session,
                              "obs",
                              (const char *)it->rec,
                              "origin",
                              f->node};
        for (size_t j = 0; j < sizeof rest / sizeof rest[0]; j++)
            argv[k++] = rest[j];
        for (int j = 0; j < k; j++)
            argl[j] = argv[j] == (const char *)it->rec ? it->len : strlen(argv[j]);
        if (redisAppendCommandArgv(c, k, argv, argl) != REDIS_OK)
            return 0;
    }
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        void *rp = NULL;
        if (redisGetReply(c, &rp) != REDIS_OK)
            break;
        redisReply *r = rp;
        int good = r->type == REDIS_REPLY_STRING;
        if (!good)
            BG_WARN("fleet", "XADD %s: %s", f->key, r->type == REDIS_REPLY_ERROR ? r->str : "?");
        freeReplyObject(r);
        if (!good)
            break;
        if (ok == i)
            ok++;
    }
    return ok;
}

static void *ship_main(void *arg)
{
    bg_fleet *f = arg;
    bg__fleet_link *l = NULL;
    int warned = 0;
    int64_t backoff = 50;
    outbox_item *batch[SHIP_BATCH];
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (!f->stop && !f->head)
            pthread_cond_wait(&f->cv, &f->mu);
        int stop = f->stop;
        size_t n = 0;
        for (outbox_item *it = f->head; it && n < SHIP_BATCH; it = it->next)
            batch[n++] = it;
        pthread_mutex_unlock(&f->mu);
        if (stop)
            break;
        if (!l && !(l = connect_redis(f, "shipper", &warned))) {
            atomic_store(&f->ship_up, 0);
            if (nap(f, backoff))
                break;
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            continue;
        }
        atomic_store(&f->ship_up, 1);
        backoff = 50;
        size_t ok = ship_batch(f, bg__fleet_link_ctx(l), batch, n);
        if (ok < n) {
            BG_DEBUG("fleet", "shipper: %s", link_why(l));
            bg__fleet_link_close(l);
            l = NULL;
            atomic_store(&f->ship_up, 0);
            atomic_fetch_add(&f->reconnects_n, 1);
        }
        if (ok == 0)
            continue;
        /* Only the shipper pops, so batch[0..ok) are still the head. */
        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < ok; i++) {
            outbox_item *it = f->head;
            f->head = it->next;
            if (!f->head)
                f->tail = NULL;
            f->shipped = it->lsn + 1;
            free(it->policy);
            free(it->session);
            free(it->rec);
            free(it);
        }
        save_state(f);
        pthread_mutex_unlock(&f->mu);
        atomic_fetch_sub(&f->pending_out, ok);
        atomic_fetch_add(&f->shipped_n, ok);
    }
    bg__fleet_link_close(l);
    return NULL;
}

/* ------------------------------------------------------------- reader */

static void refuse(bg_fleet *f, const char *sid, const char *what)
{
    atomic_fetch_add(&f->refused_n, 1);
    BG_WARN("fleet", "stream entry %s: %s (not applied; counted in fleet refused)", sid, what);
}

static void order_settle(void *ctx, const char *policy, const char *session, uint64_t lsn)
{
    bg_fleet *f = ctx;
    (void)bg_engine_fleet_settle(f->engine, policy, session, lsn);
}

/* Settle every journaled observation in its order (start, before the
 * reader runs). */
static void order_replay(bg_fleet *f)
{
    uint64_t n = bg__fleet_order_replay(f->order, order_settle, f);
    BG_INFO("fleet", "stream order restored for %" PRIu64 " observations from %s/fleet.order", n,
            f->dir);
}

/* One observation of the stream (or of the snapshot), by the rules of
 * fleet.h's inbox. revision may be NULL (the snapshot carries none). */
static void apply_one(bg_fleet *f, const bg__fleet_entry *en)
{
    uint64_t node, plsn, lsn;
    if (bg__fleet_id_parse(en->id, &node, &plsn) != 0) {
        refuse(f, en->sid, "id is not <16 hex digits>-<record number>");
        return;
    }
    /* Our own. */
    if (strncmp(en->id, f->node, 16) == 0) {
        if (bg_engine_fleet_settle(f->engine, en->policy, en->session, plsn) == BG_OK)
            bg__fleet_order_append(f->order, plsn, en->policy, en->session);
        return;
    }
    if (bg__fleet_ids_applied(f->ids, node, plsn)) {
        atomic_fetch_add(&f->dup_n, 1);
        /* settled at apply, or by fleet.order at start; else now */
        if (bg__fleet_ids_unsettled_take(f->ids, node, plsn, &lsn) &&
            bg_engine_fleet_settle(f->engine, en->policy, en->session, lsn) == BG_OK)
            bg__fleet_order_append(f->order, lsn, en->policy, en->session);
        return;
    }
    if (!bg__fleet_ids_room(f->ids, node)) {
        refuse(f, en->sid, "from a node past BG_FLEET_NODES_MAX nodes");
        return;
    }
    if (en->obs_len > BG_FLEET_RECORD_MAX) {
        refuse(f, en->sid, "observation larger than BG_FLEET_RECORD_MAX");
        return;
    }
    bg_policy_set *set = bg_policy_store_acquire(f->store);
    const bg_policy *p = bg_policy_set_find(set, en->policy);
    char msg[600];
    if (!p || p->builtin) {
        snprintf(msg, sizeof msg, "no policy \"%.200s\" here (roll policies out to every sidecar)",
                 en->policy);
        refuse(f, en->sid, msg);
    } else {
        char rev[32];
        snprintf(rev, sizeof rev, "%016" PRIx64, p->guard.model_key);
        if (en->revision && strcmp(en->revision, rev) != 0)
            atomic_fetch_add(&f->mismatch_n, 1);
        bg_err err;
        bg_err_clear(&err);
        if (bg_engine_fleet_apply(f->engine, &p->guard, en->id, (const uint8_t *)en->obs,
                                  en->obs_len, &err) == BG_OK) {
            atomic_fetch_add(&f->applied_n, 1);
            /* the stored hook ran on this thread, inside the apply */
            bg__fleet_order_append(f->order, f->stored_lsn, en->policy, en->session);
        } else
            refuse(f, en->sid, err.msg);
    }
    bg_policy_set_unref(set);
}

static void apply_entry(bg_fleet *f, const redisReply *raw)
{
    bg__fleet_entry en;
    if (bg__fleet_entry_parse(raw, &en) != 0) {
        refuse(f,
               raw->type == REDIS_REPLY_ARRAY && raw->elements > 0 &&
                       raw->element[0]->type == REDIS_REPLY_STRING
                   ? raw->element[0]->str
                   : "?",
               "not a bayesguard observation (fields id, policy, session, obs, origin)");
        return;
    }
    apply_one(f, &en);
}

/* ------------------------------------------------------------ snapshot */

typedef struct snap_buf {
    bg_fleet *f;
    bg__fleet_buf out;
} snap_buf;

static int snap_obs(void *ctx, uint64_t lsn, const char *guard, const char *session,
                    const uint8_t *rec, size_t len)
{
    snap_buf *b = ctx;
    char fid[64];
    if (!bg__fleet_ids_fid_of(b->f->ids, lsn, fid, sizeof fid)) /* a peer's, or our own */
        snprintf(fid, sizeof fid, "%s-%" PRIu64, b->f->node, lsn);
    int rc = bg__fleet_buf_put(&b->out, fid, strlen(fid));
    if (rc == BG_OK)
        rc = bg__fleet_buf_put(&b->out, guard, strlen(guard));
    if (rc == BG_OK)
        rc = bg__fleet_buf_put(&b->out, session, strlen(session));
    if (rc == BG_OK)
        rc = bg__fleet_buf_put(&b->out, rec, len);
    return rc;
}

/* Replace KEYS[1] with (id, data) only when id is newer than its own. */
static const char SNAP_SET_LUA[] =
    "local cur = redis.call('HGET', KEYS[1], 'id')\n"
    "if cur then\n"
    "  local a1, a2 = string.match(cur, '(%d+)-(%d+)')\n"
    "  local b1, b2 = string.match(ARGV[1], '(%d+)-(%d+)')\n"
    "  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)\n"
    "  if b1 < a1 or (b1 == a1 and b2 <= a2) then return 0 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'data', ARGV[2])\n"
    "return 1\n";

/* Publish what is settled now as the snapshot covering stream id `id`
 * (reader thread, between batches: nothing settles meanwhile). */
static void snapshot_publish(bg_fleet *f, redisContext *c, const char *id)
{
    snap_buf b = {.f = f};
    int rc = bg__fleet_buf_put(&b.out, BG_FLEET_SNAP_MAGIC, 8);
    if (rc == BG_OK)
        rc = bg_engine_fleet_export(f->engine, snap_obs, &b);
    if (rc == BG_OK && b.out.len > BG_FLEET_SNAPSHOT_MAX) {
        BG_WARN("fleet",
                "snapshot at %s: %zu bytes, past Redis's 512 MiB value limit: not published "
                "(new sidecars need the stream: keep --fleet-maxlen 0)",
                id, b.out.len);
        rc = BG_EINVAL;
    } else if (rc == BG_OK) {
        const char *argv[] = {"EVAL", SNAP_SET_LUA, "1", f->snap_key, id, (const char *)b.out.p};
        size_t argl[] = {4, strlen(SNAP_SET_LUA), 1, strlen(f->snap_key), strlen(id), b.out.len};
        redisReply *r = redisCommandArgv(c, 6, argv, argl);
        if (!r || r->type == REDIS_REPLY_ERROR)
            BG_WARN("fleet", "publishing the snapshot at %s: %s", id,
                    r ? r->str : "connection lost");
        else
            BG_INFO("fleet", "snapshot at %s: %zu bytes%s", id, b.out.len,
                    r->type == REDIS_REPLY_INTEGER && r->integer == 0 ? " (a newer one is there)"
                                                                      : "");
        if (r)
            freeReplyObject(r);
    } else if (rc != BG_EINVAL)
        BG_WARN("fleet", "snapshot at %s: out of memory (not published)", id);
    free(b.out.p);
}

typedef struct snap_apply_ctx {
    bg_fleet *f;
    const char *sid;
    uint64_t (*seen)[2]; /* the snapshot's ids so far: open addressing, {0, 0} empty */
    size_t n_seen, cap_seen;
    int oom;
} snap_apply_ctx;

/* 1 when (node, plsn) came earlier in this snapshot; else remembers it. */
static int snap_seen(snap_apply_ctx *a, uint64_t node, uint64_t plsn)
{
    uint64_t k0 = node, k1 = plsn + 1; /* + 1: {0, 0} is the empty slot */
    if ((a->n_seen + 1) * 2 > a->cap_seen) {
        size_t cap = a->cap_seen ? a->cap_seen * 2 : 1024;
        uint64_t(*nw)[2] = calloc(cap, sizeof *nw), (*old)[2] = a->seen;
        if (!nw) {
            a->oom = 1;
            return 0;
        }
        size_t oc = a->cap_seen;
        a->seen = nw;
        a->cap_seen = cap;
        a->n_seen = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i][0] || old[i][1])
                (void)snap_seen(a, old[i][0], old[i][1] - 1);
        free(old);
    }
    size_t mask = a->cap_seen - 1;
    uint64_t h = (k0 ^ (k1 * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    for (size_t i = (size_t)(h >> 20) & mask;; i = (i + 1) & mask) {
        if (!a->seen[i][0] && !a->seen[i][1]) {
            a->seen[i][0] = k0;
            a->seen[i][1] = k1;
            a->n_seen++;
            return 0;
        }
        if (a->seen[i][0] == k0 && a->seen[i][1] == k1)
            return 1;
    }
}

static int snap_apply_one(void *ctx, const char *fid, const char *policy, const char *session,
                          const uint8_t *rec, size_t len)
{
    snap_apply_ctx *a = ctx;
    uint64_t node, plsn;
    if (bg__fleet_id_parse(fid, &node, &plsn) == 0 && snap_seen(a, node, plsn)) {
        atomic_fetch_add(&a->f->dup_n, 1);
        return 0;
    }
    bg__fleet_entry en = {.sid = a->sid,
                          .id = fid,
                          .policy = policy,
                          .session = session,
                          .obs = (const char *)rec,
                          .obs_len = len};
    apply_one(a->f, &en);
    return 0;
}

long bg__fleet_snapshot_load(bg_fleet *f, const uint8_t *data, size_t len, const char *sid)
{
    snap_apply_ctx a = {.f = f, .sid = sid};
    size_t n;
    const char *why;
    bg__fleet_ids_freeze(f->ids, 1);
    int rc = bg__fleet_snap_walk(data, len, snap_apply_one, &a, &n, &why);
    bg__fleet_ids_freeze(f->ids, 0);
    free(a.seen);
    if (a.oom)
        BG_WARN("fleet", "bootstrap: out of memory checking the snapshot %s for copies", sid);
    if (rc != 0) {
        refuse(f, sid, why);
        BG_WARN("fleet",
                "bootstrap: the snapshot %s is malformed after %zu observations (those "
                "were applied; the rest comes from the stream)",
                sid, n);
        return -1;
    }
    BG_INFO("fleet", "bootstrap: applied the snapshot %s (%zu observations)", sid, n);
    return (long)n;
}

/* Apply the published snapshot, if any (reader thread, before its first
 * XREAD). Returns how many observations it held; -1 on a malformed one. */
static long snapshot_apply(bg_fleet *f, redisContext *c)
{
    redisReply *r = redisCommand(c, "HMGET %s id data", f->snap_key);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return 0;
    }
    char sid[300];
    snprintf(sid, sizeof sid, "%s@%.40s", f->snap_key,
             r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "?");
    long n =
        bg__fleet_snapshot_load(f, (const uint8_t *)r->element[1]->str, r->element[1]->len, sid);
    freeReplyObject(r);
    return n;
}

size_t bg__fleet_read_reply(bg_fleet *f, const redisReply *r, char *from, size_t from_len)
{
    size_t n = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        const redisReply *es = r->element[0]->element[1];
        n = es->type == REDIS_REPLY_ARRAY ? es->elements : 0;
        if (n == READ_COUNT)
            atomic_store(&f->in_sync, 0);
        atomic_store(&f->pending_in, n);
        for (size_t i = 0; i < n; i++) {
            apply_entry(f, es->element[i]);
            atomic_fetch_sub(&f->pending_in, 1);
            const redisReply *e0 = es->element[i];
            if (e0->type == REDIS_REPLY_ARRAY && e0->elements >= 1 &&
                e0->element[0]->type == REDIS_REPLY_STRING && e0->element[0]->len < from_len &&
                strlen(e0->element[0]->str) == e0->element[0]->len)
                snprintf(from, from_len, "%s", e0->element[0]->str);
        }
        pthread_mutex_lock(&f->mu);
        snprintf(f->last_id, sizeof f->last_id, "%s", from);
        save_state(f);
        pthread_mutex_unlock(&f->mu);
    }
    return n;
}

static void *read_main(void *arg)
{
    bg_fleet *f = arg;
    bg__fleet_link *l = NULL;
    redisContext *c = NULL;
    int warned = 0;
    int64_t backoff = 50;
    /* From the beginning of what is retained: restores every session's
     * stream order (fleet.h, inbox); applied ids are only settled. */
    char from[64] = "0-0";
    int booted = 0;
    uint64_t since_snap = 0;
    while (!stopping(f)) {
        if (!l && !(l = connect_redis(f, "reader", &warned))) {
            atomic_store(&f->read_up, 0);
            atomic_store(&f->in_sync, 0);
            if (nap(f, backoff))
                break;
            backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
            continue;
        }
        c = bg__fleet_link_ctx(l);
        atomic_store(&f->read_up, 1);
        backoff = 50;
        if (!booted) {
            (void)snapshot_apply(f, c);
            booted = 1;
        }
        redisReply *r = redisCommand(c, "XREAD COUNT %d BLOCK %d STREAMS %s %s", READ_COUNT,
                                     READ_BLOCK_MS, f->key, from);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            if (r) {
                BG_WARN("fleet", "XREAD %s: %s", f->key, r->str);
                freeReplyObject(r);
            } else
                BG_DEBUG("fleet", "reader: %s", link_why(l));
            bg__fleet_link_close(l);
            l = NULL;
            atomic_store(&f->read_up, 0);
            atomic_store(&f->in_sync, 0);
            atomic_fetch_add(&f->reconnects_n, 1);
            continue;
        }
        size_t n = bg__fleet_read_reply(f, r, from, sizeof from);
        freeReplyObject(r);
        since_snap += n;
        bg__fleet_order_maybe_compact(f->order, f->engine);
        if (since_snap >= f->snapshot_every) {
            snapshot_publish(f, c, from);
            since_snap = 0;
        }
        if (n < READ_COUNT) {
            atomic_store(&f->caught_up_ms, mono_ms());
            atomic_store(&f->in_sync, 1);
        }
    }
    bg__fleet_link_close(l);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

int bg_fleet_create(const bg_fleet_opts *opts, bg_fleet **out, bg_err *err)
{
    *out = NULL;
    if (!opts->data_dir)
        return bg_err_set(err, BG_EINVAL,
                          "--fleet needs --data-dir: the local log is the fleet's outbox");
    bg_fleet *f = calloc(1, sizeof *f);
    if (!f)
        return bg_err_set(err, BG_ENOMEM, "fleet: out of memory");
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    snprintf(f->dir, sizeof f->dir, "%s", opts->data_dir);
    f->maxlen = opts->maxlen;
    f->snapshot_every = opts->snapshot_every ? opts->snapshot_every : 10000;
    int rc = parse_url(f, opts->url, err);
    snprintf(f->snap_key, sizeof f->snap_key, "%s:snapshot", f->key);
    if (rc == BG_OK && opts->password_file)
        rc = read_password(f, opts->password_file, err);
    if (rc == BG_OK && f->tls_url)
        rc = bg__fleet_tls_create(opts->ca_file, opts->cert_file, opts->key_file, &f->tls, err);
    else if (rc == BG_OK && (opts->ca_file || opts->cert_file || opts->key_file))
        rc = bg_err_set(err, BG_EINVAL,
                        "--fleet-ca, --fleet-cert and --fleet-key are for TLS: use a rediss:// "
                        "URL in --fleet, or drop them");
    if (rc == BG_OK)
        rc = load_node(f, err);
    uint64_t journaled_below = 0;
    if (rc == BG_OK)
        rc = bg__fleet_order_open(f->dir, &f->order, &journaled_below, err);
    if (rc == BG_OK && !(f->ids = bg__fleet_ids_create(journaled_below)))
        rc = bg_err_set(err, BG_ENOMEM, "fleet: out of memory");
    if (rc != BG_OK) {
        bg_fleet_destroy(f);
        return rc;
    }
    load_state(f);
    atomic_store(&f->caught_up_ms, mono_ms());
    f->hooks.ctx = f;
    f->hooks.stored = stored_hook;
    BG_INFO("fleet", "node %s, stream %s on %s://%s:%d, outbox position %" PRIu64, f->node, f->key,
            f->tls ? "rediss" : "redis", f->host, f->port, f->shipped);
    *out = f;
    return BG_OK;
}

const bg_engine_fleet_hooks *bg_fleet_hooks(bg_fleet *f)
{
    return &f->hooks;
}

static void collect(void *arg, bg_metrics_writer *w)
{
    bg_fleet_lag l;
    bg_fleet_lag_get(arg, &l);
    bg_metrics_write_family(w, "bayesguard_fleet_pending", BG_METRIC_GAUGE,
                            "Fleet observations pending: in (read from the stream, not yet "
                            "applied) and out (stored here, not yet in the stream).");
    bg_metrics_label in = {"direction", "in"}, out = {"direction", "out"};
    bg_metrics_write_sample(w, "bayesguard_fleet_pending", &in, 1, (double)l.pending_in);
    bg_metrics_write_sample(w, "bayesguard_fleet_pending", &out, 1, (double)l.pending_out);
    bg_metrics_write_family(w, "bayesguard_fleet_lag_seconds", BG_METRIC_GAUGE,
                            "0 while in sync with the fleet's stream, else the time since "
                            "this sidecar last was (spec.fleet.max_lag compares with it).");
    bg_metrics_write_sample(w, "bayesguard_fleet_lag_seconds", NULL, 0, (double)l.lag_ms / 1e3);
    bg_metrics_write_family(w, "bayesguard_fleet_connected", BG_METRIC_GAUGE,
                            "1 while the fleet's Redis is reachable, else 0.");
    bg_metrics_write_sample(w, "bayesguard_fleet_connected", NULL, 0, l.connected ? 1.0 : 0.0);
    bg_metrics_write_family(w, "bayesguard_fleet_entries_total", BG_METRIC_COUNTER,
                            "Fleet stream entries since start, by result: shipped (added by "
                            "this sidecar), applied (a peer's), duplicate (already applied), "
                            "refused (not applied), revision_mismatch (applied; the peer's "
                            "model differs).");
    const struct {
        const char *result;
        uint64_t n;
    } r[] = {{"shipped", l.shipped},
             {"applied", l.applied},
             {"duplicate", l.duplicates},
             {"refused", l.refused},
             {"revision_mismatch", l.revision_mismatch}};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        bg_metrics_label lb = {"result", r[i].result};
        bg_metrics_write_sample(w, "bayesguard_fleet_entries_total", &lb, 1, (double)r[i].n);
    }
    bg_metrics_write_family(w, "bayesguard_fleet_state_bytes", BG_METRIC_GAUGE,
                            "Bytes of the fleet's own state: applied_ids (a high-water mark "
                            "per node), id_index (the snapshot's ids of peers' observations), "
                            "order_file (fleet.order on disk).");
    const struct {
        const char *part;
        uint64_t n;
    } b[] = {{"applied_ids", l.applied_ids_bytes},
             {"id_index", l.id_index_bytes},
             {"order_file", l.order_bytes}};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        bg_metrics_label lb = {"part", b[i].part};
        bg_metrics_write_sample(w, "bayesguard_fleet_state_bytes", &lb, 1, (double)b[i].n);
    }
}

void bg__fleet_attach(bg_fleet *f, bg_engine *e, bg_policy_store *store)
{
    f->engine = e;
    f->store = store;
    order_replay(f);
}

int bg_fleet_start(bg_fleet *f, bg_engine *e, bg_policy_store *store, bg_metrics *m, bg_err *err)
{
    bg__fleet_attach(f, e, store);
    if (m && bg_metrics_add_collector(m, collect, f) != BG_OK)
        return bg_err_set(err, BG_ENOMEM, "fleet: out of memory registering its metrics");
    f->metrics = m;
    if (pthread_create(&f->ship_th, NULL, ship_main, f) != 0)
        return bg_err_set(err, BG_EIO, "fleet: cannot start the shipper thread");
    if (pthread_create(&f->read_th, NULL, read_main, f) != 0) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->ship_th, NULL);
        f->stop = 0;
        return bg_err_set(err, BG_EIO, "fleet: cannot start the reader thread");
    }
    f->started = 1;
    return BG_OK;
}

void bg_fleet_destroy(bg_fleet *f)
{
    if (!f)
        return;
    if (f->metrics)
        bg_metrics_remove_collector(f->metrics, collect, f);
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->ship_th, NULL);
        pthread_join(f->read_th, NULL);
    }
    for (outbox_item *it = f->head, *nx; it; it = nx) {
        nx = it->next;
        free(it->policy);
        free(it->session);
        free(it->rec);
        free(it);
    }
    bg__fleet_order_close(f->order);
    bg__fleet_ids_destroy(f->ids);
    bg__fleet_tls_destroy(f->tls);
    memset(f->password, 0, sizeof f->password);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void bg_fleet_lag_get(bg_fleet *f, bg_fleet_lag *out)
{
    memset(out, 0, sizeof *out);
    if (!f)
        return;
    out->pending_out = atomic_load(&f->pending_out);
    out->pending_in = atomic_load(&f->pending_in);
    out->connected =
        atomic_load(&f->read_up) && (atomic_load(&f->ship_up) || out->pending_out == 0);
    if (!atomic_load(&f->in_sync)) {
        int64_t d = mono_ms() - atomic_load(&f->caught_up_ms);
        out->lag_ms = d > 0 ? (uint64_t)d : 0;
    }
    out->shipped = atomic_load(&f->shipped_n);
    out->applied = atomic_load(&f->applied_n);
    out->duplicates = atomic_load(&f->dup_n);
    out->refused = atomic_load(&f->refused_n);
    out->revision_mismatch = atomic_load(&f->mismatch_n);
    out->reconnects = atomic_load(&f->reconnects_n);
    if (f->ids)
        bg__fleet_ids_bytes(f->ids, &out->applied_ids_bytes, &out->id_index_bytes);
    out->order_bytes = bg__fleet_order_bytes(f->order);
}
