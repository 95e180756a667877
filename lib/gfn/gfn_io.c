/*
 * gfn_io.c — saving and loading the full trained state of a GFlowNet
 * sampler: config, network parameters and log Z, Adam moments, the
 * training generator, counters and the replay buffer — enough that
 * training resumes exactly where it stopped and sampling is identical.
 *
 * File layout (native byte order, checked by an order mark):
 *   magic    8 bytes  "BGGFN\r\n\x1a" (catches text-mode mangling)
 *   version  u32      BG__GFN_FILE_VERSION
 *   order    u32      0x01020304
 *   config   fields one by one (u32 / u64 / f64), see put_config
 *   n_params u64      must equal what the config implies
 *   params, adam_m, adam_v   n_params f64 each
 *   rng      4 × u64
 *   stats    see put_stats
 *   replay   u32 n, then n × (u64 id, (d+1) f64 prefix log-rewards)
 * and nothing after. No reward version is kept: the data a reward was
 * bound to may have moved since, so loaded replay entries are stale
 * (BG__GFN_VERSION_UNKNOWN) and the next training call re-scores them. Load names the first thing
 * that is wrong (magic, version, byte order, a config value, the size, truncation, trailing bytes).
 * Save writes a temp file and renames it over the target.
 *
 * Threads: save reads the instance (concurrent with sampling is fine);
 * load_into mutates it (the caller serialises).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gfn_priv.h"

#define BG__GFN_FILE_VERSION 2u /* 2: lr_restart, sched_start, restarts */
#define BG__GFN_ORDER_MARK 0x01020304u
static const char gfn_magic[8] = {'B', 'G', 'G', 'F', 'N', '\r', '\n', '\x1a'};

/* ---- writing ---------------------------------------------------------- */

typedef struct wr {
    FILE *f;
    int failed;
} wr;

static void put(wr *w, const void *p, size_t n)
{
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n)
        w->failed = 1;
}
static void put_u32(wr *w, uint32_t v)
{
    put(w, &v, sizeof v);
}
static void put_u64(wr *w, uint64_t v)
{
    put(w, &v, sizeof v);
}
static void put_f64(wr *w, double v)
{
    put(w, &v, sizeof v);
}

/* The config, field by field. One table drives both directions. (One entry
 * per line by hand: clang-format 14 does not settle on a layout for it.) */
// clang-format off
#define GFN_CONFIG_FIELDS(U32, U64, F64) \
    U32(n_bits)                          \
    U32(min_len)                         \
    U32(max_len)                         \
    U32(hidden)                          \
    U32(n_hidden)                        \
    U32(loss)                            \
    F64(lambda)                          \
    F64(lr)                              \
    F64(lr_logz)                         \
    F64(lr_end)                          \
    U32(lr_horizon)                      \
    F64(beta1)                           \
    F64(beta2)                           \
    F64(adam_eps)                        \
    F64(grad_clip)                       \
    U32(batch)                           \
    F64(p_replay)                        \
    F64(p_tempered)                      \
    F64(temp_lo)                         \
    F64(temp_hi)                         \
    F64(epsilon)                         \
    U32(replay_capacity)                 \
    F64(reward_temp_start)               \
    F64(reward_temp_end)                 \
    U32(reward_temp_horizon)             \
    F64(init_logz)                       \
    U32(logz_from_batch)                 \
    U64(seed)                            \
    U32(lr_restart)

#define GFN_STATS_FIELDS(U32, U64, F64) \
    U64(steps)                          \
    U64(trajectories)                   \
    U64(reward_evals)                   \
    F64(last_loss)                      \
    F64(log_z)                          \
    F64(last_var)                       \
    F64(reward_temp)                    \
    U64(sched_start)                    \
    U64(restarts)
// clang-format on

static void put_state(wr *w, const bg_gfn *g)
{
    const bg_gfn_config *c = &g->cfg;
    const bg_gfn_stats *s = &g->stats;
#define W32(f) put_u32(w, (uint32_t)c->f);
#define W64(f) put_u64(w, (uint64_t)c->f);
#define WF(f) put_f64(w, c->f);
    GFN_CONFIG_FIELDS(W32, W64, WF)
#undef W32
#undef W64
#undef WF
    put_u64(w, g->n_params);
    put(w, g->params, g->n_params * sizeof(double));
    put(w, g->adam_m, g->n_params * sizeof(double));
    put(w, g->adam_v, g->n_params * sizeof(double));
    for (int i = 0; i < 4; i++)
        put_u64(w, g->rng.s[i]);
#define S32(f) put_u32(w, (uint32_t)s->f);
#define S64(f) put_u64(w, (uint64_t)s->f);
#define SF(f) put_f64(w, s->f);
    GFN_STATS_FIELDS(S32, S64, SF)
#undef S32
#undef S64
#undef SF
    put_u32(w, g->replay.n);
    for (uint32_t i = 0; i < g->replay.n; i++) {
        put_u64(w, g->replay.ids[i]);
        put(w, g->replay.logr + (size_t)i * (c->n_bits + 1), (c->n_bits + 1) * sizeof(double));
    }
}

static int io_err(char *errbuf, size_t errlen, int code, const char *path, const char *what)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "gfn state %s: %s", path, what);
    return code;
}

int bg_gfn_save(const bg_gfn *g, const char *path, char *errbuf, size_t errlen)
{
    size_t tlen = strlen(path) + 8;
    char *tmp = malloc(tlen);
    if (!tmp)
        return io_err(errbuf, errlen, BG_PLUGIN_ENOMEM, path, "out of memory");
    snprintf(tmp, tlen, "%s.tmp", path);
    wr w = {fopen(tmp, "wb"), 0};
    if (!w.f) {
        int e = errno;
        free(tmp);
        return io_err(errbuf, errlen, BG_PLUGIN_EIO, path, strerror(e));
    }
    put(&w, gfn_magic, sizeof gfn_magic);
    put_u32(&w, BG__GFN_FILE_VERSION);
    put_u32(&w, BG__GFN_ORDER_MARK);
    put_state(&w, g);
    int failed = w.failed;
    if (fclose(w.f) != 0)
        failed = 1;
    if (failed || rename(tmp, path) != 0) {
        remove(tmp);
        free(tmp);
        return io_err(errbuf, errlen, BG_PLUGIN_EIO, path, "write failed (disk full?)");
    }
    free(tmp);
    return BG_PLUGIN_OK;
}

/* ---- reading ---------------------------------------------------------- */

typedef struct rd {
    const unsigned char *p;
    size_t len, pos;
    const char *what; /* first field that did not fit, NULL when none */
} rd;

/* Reads n bytes into out; after the first field that does not fit, every
 * read (that one included) yields zeros, so out is always written. */
static void get(rd *r, void *out, size_t n, const char *what)
{
    if (r->what || r->len - r->pos < n) {
        if (!r->what)
            r->what = what;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
}
static uint32_t get_u32(rd *r, const char *what)
{
    uint32_t v;
    get(r, &v, sizeof v, what);
    return v;
}
static uint64_t get_u64(rd *r, const char *what)
{
    uint64_t v;
    get(r, &v, sizeof v, what);
    return v;
}
static double get_f64(rd *r, const char *what)
{
    double v;
    get(r, &v, sizeof v, what);
    return v;
}

static int read_file(const char *path, unsigned char **data, size_t *len, char *errbuf,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return io_err(errbuf, errlen, BG_PLUGIN_EIO, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return io_err(errbuf, errlen, BG_PLUGIN_ENOMEM, path, "out of memory reading");
    if (err) {
        free(buf);
        return io_err(errbuf, errlen, BG_PLUGIN_EIO, path, "read error");
    }
    *data = buf;
    *len = n;
    return BG_PLUGIN_OK;
}

/* Parse everything after the header into a new instance. */
static int parse_state(rd *r, const char *path, bg_gfn **out, char *errbuf, size_t errlen)
{
    bg_gfn_config c;
    memset(&c, 0, sizeof c);
#define R32(f) c.f = get_u32(r, "config");
#define R64(f) c.f = get_u64(r, "config");
#define RF(f) c.f = get_f64(r, "config");
    GFN_CONFIG_FIELDS(R32, R64, RF)
#undef R32
#undef R64
#undef RF
    if (r->what)
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, "truncated in the config");
    char msg[256];
    if (bg_gfn_config_check(&c, msg, sizeof msg) != BG_PLUGIN_OK)
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    bg_gfn *g;
    int rc = bg_gfn_create(&c, &g, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    uint64_t n_params = get_u64(r, "n_params");
    if (!r->what && n_params != g->n_params) {
        snprintf(msg, sizeof msg,
                 "holds %llu parameters but its config (d=%u, %u×%u hidden) needs %zu",
                 (unsigned long long)n_params, c.n_bits, c.n_hidden, c.hidden, g->n_params);
        bg_gfn_destroy(g);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    }
    get(r, g->params, g->n_params * sizeof(double), "parameters");
    get(r, g->adam_m, g->n_params * sizeof(double), "Adam moments");
    get(r, g->adam_v, g->n_params * sizeof(double), "Adam moments");
    for (int i = 0; i < 4; i++)
        g->rng.s[i] = get_u64(r, "generator");
    bg_gfn_stats *s = &g->stats;
#define S32(f) s->f = get_u32(r, "counters");
#define S64(f) s->f = get_u64(r, "counters");
#define SF(f) s->f = get_f64(r, "counters");
    GFN_STATS_FIELDS(S32, S64, SF)
#undef S32
#undef S64
#undef SF
    if (!r->what && s->sched_start > s->steps) {
        bg_gfn_destroy(g);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path,
                      "the learning-rate schedule starts after the last step (corrupt counters)");
    }
    uint32_t n_replay = get_u32(r, "replay buffer");
    if (!r->what && n_replay > c.replay_capacity) {
        bg_gfn_destroy(g);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path,
                      "replay buffer larger than its capacity");
    }
    double logr[BG_GFN_MAX_BITS + 1];
    for (uint32_t i = 0; i < n_replay && !r->what; i++) {
        uint64_t id = get_u64(r, "replay buffer");
        get(r, logr, (c.n_bits + 1) * sizeof(double), "replay buffer");
        if (!r->what)
            bg__gfn_replay_add(&g->replay, id, logr, BG__GFN_VERSION_UNKNOWN);
    }
    if (r->what) {
        snprintf(msg, sizeof msg, "truncated in the %s (file has %zu bytes)", r->what, r->len);
        bg_gfn_destroy(g);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    }
    if (r->pos != r->len) {
        snprintf(msg, sizeof msg, "%zu unexpected bytes after the end of the state",
                 r->len - r->pos);
        bg_gfn_destroy(g);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    }
    *out = g;
    return BG_PLUGIN_OK;
}

int bg_gfn_load(const char *path, bg_gfn **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = read_file(path, &data, &len, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    rd r = {data, len, 0, NULL};
    char magic[8];
    get(&r, magic, sizeof magic, "magic");
    uint32_t version = get_u32(&r, "version"), order = get_u32(&r, "byte order");
    char msg[160];
    if (r.what || memcmp(magic, gfn_magic, sizeof magic) != 0) {
        rc = io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path,
                    "not a GFlowNet state file (bad magic; expected \"BGGFN\\r\\n\\x1a\")");
    } else if (version != BG__GFN_FILE_VERSION) {
        snprintf(msg, sizeof msg, "format version %u is not supported (this build reads %u)",
                 version, BG__GFN_FILE_VERSION);
        rc = io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    } else if (order != BG__GFN_ORDER_MARK) {
        rc = io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path,
                    "written on a machine of another byte order");
    } else {
        rc = parse_state(&r, path, out, errbuf, errlen);
    }
    free(data);
    return rc;
}

int bg_gfn_load_into(bg_gfn *g, const char *path, char *errbuf, size_t errlen)
{
    bg_gfn *n;
    int rc = bg_gfn_load(path, &n, errbuf, errlen);
    if (rc != BG_PLUGIN_OK)
        return rc;
    if (n->cfg.n_bits != g->cfg.n_bits) {
        char msg[128];
        snprintf(msg, sizeof msg, "is for d=%u features but this sampler has d=%u", n->cfg.n_bits,
                 g->cfg.n_bits);
        bg_gfn_destroy(n);
        return io_err(errbuf, errlen, BG_PLUGIN_EINVAL, path, msg);
    }
    bg_gfn old = *g;
    *g = *n;
    *n = old;
    bg_gfn_destroy(n);
    return BG_PLUGIN_OK;
}
