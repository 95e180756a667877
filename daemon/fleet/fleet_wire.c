/*
 * fleet_wire.c — the bytes Redis hands the fleet, decoded without I/O:
 * one stream entry's fields (as XREAD returns them) and the BGFSNAP1
 * snapshot (docs/FLEET.md, bootstrap).
 *
 * Redis is a trust boundary (docs/FLEET.md, Security): whoever can write
 * the stream or the snapshot key writes these bytes. So every length is
 * checked against what is left before it is used, a string that will be
 * used as a C string must not hold a NUL (it would name another policy or
 * session than the bytes say), and nothing here allocates more than the
 * input's size. tests/fuzz/fuzz_fleet_entry.c and fuzz_fleet_snapshot.c
 * feed these functions.
 *
 * Threads: pure functions; any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "common/bg_err.h"
#include "fleet/fleet_priv.h"

/* A whole string reply without a NUL inside. */
static int cstr(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING && v->str && strlen(v->str) == v->len;
}

int bg__fleet_entry_parse(const redisReply *e, bg__fleet_entry *out)
{
    memset(out, 0, sizeof *out);
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !cstr(e->element[0]) ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    out->sid = e->element[0]->str;
    const redisReply *kv = e->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        const char **slot = !strcmp(k->str, "id")         ? &out->id
                            : !strcmp(k->str, "policy")   ? &out->policy
                            : !strcmp(k->str, "revision") ? &out->revision
                            : !strcmp(k->str, "session")  ? &out->session
                            : !strcmp(k->str, "origin")   ? &out->origin
                                                          : NULL;
        if (slot) {
            if (!cstr(v))
                return -1;
            *slot = v->str;
        } else if (!strcmp(k->str, "obs")) {
            out->obs = v->str;
            out->obs_len = v->len;
        }
    }
    return out->id && out->policy && out->session && out->obs && out->origin ? 0 : -1;
}

int bg__fleet_buf_raw(bg__fleet_buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return BG_ENOMEM;
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
    return BG_OK;
}

int bg__fleet_buf_put(bg__fleet_buf *b, const void *d, size_t n)
{
    if (n > UINT32_MAX)
        return BG_EINVAL;
    uint8_t l4[4];
    for (int i = 0; i < 4; i++)
        l4[i] = (uint8_t)((uint32_t)n >> (8 * i));
    int rc = bg__fleet_buf_raw(b, l4, 4);
    return rc == BG_OK ? bg__fleet_buf_raw(b, d, n) : rc;
}

/* The next string of p[*off..len): 0, or -1 when cut short. */
static int get_str(const uint8_t *p, size_t len, size_t *off, const uint8_t **s, size_t *n)
{
    if (len - *off < 4)
        return -1;
    uint32_t l = (uint32_t)p[*off] | (uint32_t)p[*off + 1] << 8 | (uint32_t)p[*off + 2] << 16 |
                 (uint32_t)p[*off + 3] << 24;
    *off += 4;
    if (len - *off < l)
        return -1;
    *s = p + *off;
    *n = l;
    *off += l;
    return 0;
}

/* A NUL-terminated copy of s[0..n) into buf[cap], refused when it does
 * not fit or holds a NUL. */
static int copy_str(char *buf, size_t cap, const uint8_t *s, size_t n)
{
    if (n >= cap || memchr(s, 0, n))
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return 0;
}

int bg__fleet_snap_walk(const uint8_t *data, size_t len, bg__fleet_snap_cb cb, void *ctx, size_t *n,
                        const char **why)
{
    *n = 0;
    *why = NULL;
    size_t off = 0;
    const uint8_t *m;
    size_t ml;
    if (get_str(data, len, &off, &m, &ml) != 0 || ml != 8 || memcmp(m, BG_FLEET_SNAP_MAGIC, 8)) {
        *why = "not a bayesguard fleet snapshot (magic " BG_FLEET_SNAP_MAGIC ")";
        return -1;
    }
    char fid[BG_FLEET_FID_MAX + 1], pol[BG_FLEET_POLICY_MAX + 1], ses[BG_FLEET_SESSION_MAX + 1];
    while (off < len) {
        const uint8_t *a, *b, *c, *d;
        size_t al, bl, cl, dl;
        if (get_str(data, len, &off, &a, &al) || get_str(data, len, &off, &b, &bl) ||
            get_str(data, len, &off, &c, &cl) || get_str(data, len, &off, &d, &dl)) {
            *why = "snapshot cut short inside an observation";
            return -1;
        }
        if (copy_str(fid, sizeof fid, a, al) || copy_str(pol, sizeof pol, b, bl) ||
            copy_str(ses, sizeof ses, c, cl)) {
            *why = "a snapshot id, policy or session too long or holding a NUL";
            return -1;
        }
        int rc = cb(ctx, fid, pol, ses, d, dl);
        if (rc != 0)
            return rc;
        (*n)++;
    }
    return 0;
}
