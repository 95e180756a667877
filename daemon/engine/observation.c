/*
 * observation.c — owned observation copies and the record encoding.
 * Format and ownership: observation.h.
 */
#include "engine/observation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

size_t bg__obs_size(const bg_observation *o)
{
    const bg_action *a = &o->action;
    size_t sz =
        sizeof(bg_observation) + a->n_features * sizeof(double) + a->n_attributes * sizeof(bg_attr);
    sz += slen(a->id) + slen(a->tool) + slen(a->arguments_json) + 3;
    for (size_t i = 0; i < a->n_attributes; i++)
        sz += slen(a->attributes[i].key) + slen(a->attributes[i].value) + 2;
    return sz;
}

static char *put_str(char **cur, const char *s)
{
    size_t n = slen(s);
    char *d = *cur;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    *cur += n + 1;
    return d;
}

bg_observation *bg__obs_dup(const bg_observation *o)
{
    const bg_action *a = &o->action;
    size_t sz = bg__obs_size(o);
    /* Layout: header, doubles, attrs, then chars (alignment kept by order). */
    char *blk = malloc(sz);
    if (!blk)
        return NULL;
    bg_observation *c = (bg_observation *)blk;
    *c = *o;
    char *cur = blk + sizeof *c;
    double *f = (double *)cur;
    if (a->n_features)
        memcpy(f, a->features, a->n_features * sizeof *f);
    c->action.features = a->n_features ? f : NULL;
    cur += a->n_features * sizeof *f;
    bg_attr *at = (bg_attr *)cur;
    cur += a->n_attributes * sizeof *at;
    c->action.attributes = a->n_attributes ? at : NULL;
    c->action.id = put_str(&cur, a->id);
    c->action.tool = put_str(&cur, a->tool);
    c->action.arguments_json = put_str(&cur, a->arguments_json);
    for (size_t i = 0; i < a->n_attributes; i++) {
        at[i].key = put_str(&cur, a->attributes[i].key);
        at[i].value = put_str(&cur, a->attributes[i].value);
    }
    return c;
}

int bg__action_validate(const bg_action *a, const char *what, bg_err *err)
{
    if (!a->tool || !a->tool[0])
        return bg_err_set(err, BG_EINVAL, "%s: tool name is empty; expected the tool's name", what);
    if (a->n_features && !a->features)
        return bg_err_set(err, BG_EINVAL, "%s: %zu features but no feature array", what,
                          a->n_features);
    for (size_t i = 0; i < a->n_features; i++)
        if (!isfinite(a->features[i]))
            return bg_err_set(err, BG_EINVAL, "%s: feature %zu is %g; expected a finite number",
                              what, i, a->features[i]);
    if (a->n_attributes && !a->attributes)
        return bg_err_set(err, BG_EINVAL, "%s: %zu attributes but no attribute array", what,
                          a->n_attributes);
    for (size_t i = 0; i < a->n_attributes; i++)
        if (!a->attributes[i].key || !a->attributes[i].value)
            return bg_err_set(err, BG_EINVAL, "%s: attribute %zu has no key or value", what, i);
    return BG_OK;
}

/* ---------------------------------------------------------------- encode */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

static void wput(wbuf *w, const void *src, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *np = realloc(w->p, cap);
        if (!np) {
            w->oom = 1;
            return;
        }
        w->p = np;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void wu32(wbuf *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wput(w, b, 4);
}

static void wf64(wbuf *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    wu32(w, (uint32_t)v);
    wu32(w, (uint32_t)(v >> 32));
}

static void wstr(wbuf *w, const char *s)
{
    size_t n = slen(s);
    wu32(w, (uint32_t)n);
    wput(w, s ? s : "", n);
}

size_t bg__obs_encode(const char *guard, const char *session, const bg_observation *o,
                      uint8_t **out)
{
    return bg__obs_encode_receipt(guard, session, o, NULL, out);
}

size_t bg__obs_encode_receipt(const char *guard, const char *session, const bg_observation *o,
                              const bg_obs_receipt *rc, uint8_t **out)
{
    wbuf w = {0};
    const bg_action *a = &o->action;
    uint8_t ver = rc ? 2 : 1;
    wput(&w, &ver, 1);
    wstr(&w, guard);
    wstr(&w, session);
    wstr(&w, a->tool);
    wstr(&w, a->id);
    wstr(&w, a->arguments_json);
    wu32(&w, (uint32_t)a->n_features);
    for (size_t i = 0; i < a->n_features; i++)
        wf64(&w, a->features[i]);
    wu32(&w, (uint32_t)a->n_attributes);
    for (size_t i = 0; i < a->n_attributes; i++) {
        wstr(&w, a->attributes[i].key);
        wstr(&w, a->attributes[i].value);
    }
    uint8_t flags[2] = {(uint8_t)(o->harmed != 0), (uint8_t)(o->has_value != 0)};
    wput(&w, flags, 2);
    wf64(&w, o->value);
    if (rc) {
        uint64_t exp = (uint64_t)rc->expiry_unix_ms;
        uint8_t rflags = (uint8_t)rc->flags;
        wstr(&w, rc->id);
        wu32(&w, (uint32_t)exp);
        wu32(&w, (uint32_t)(exp >> 32));
        wput(&w, &rflags, 1);
    }
    if (w.oom) {
        free(w.p);
        *out = NULL;
        return 0;
    }
    *out = w.p;
    return w.len;
}

/* ---------------------------------------------------------------- decode */

typedef struct rbuf {
    const uint8_t *p;
    size_t len, off;
    int bad;
} rbuf;

static const uint8_t *rget(rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint32_t ru32(rbuf *r)
{
    const uint8_t *b = rget(r, 4);
    if (!b)
        return 0;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static double rf64(rbuf *r)
{
    uint64_t lo = ru32(r), hi = ru32(r);
    uint64_t v = lo | hi << 32;
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* new string (free()), NULL when truncated or out of memory. */
static char *rstr(rbuf *r)
{
    uint32_t n = ru32(r);
    const uint8_t *b = rget(r, n);
    if (!b)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

int bg__obs_decode(const uint8_t *buf, size_t len, char **guard, char **session,
                   bg_observation **obs, bg_err *err)
{
    return bg__obs_decode_receipt(buf, len, guard, session, obs, NULL, NULL, err);
}

/* The version-2 trailer: the receipt the observation was accepted with. */
static void read_receipt(rbuf *r, bg_obs_receipt *rc)
{
    uint32_t n = ru32(r);
    const uint8_t *id = rget(r, n);
    uint64_t lo = ru32(r), hi = ru32(r);
    const uint8_t *flags = rget(r, 1);
    if (!id || !flags || n >= sizeof rc->id) {
        r->bad = 1;
        return;
    }
    memcpy(rc->id, id, n);
    rc->id[n] = '\0';
    rc->expiry_unix_ms = (int64_t)(lo | hi << 32);
    rc->flags = *flags;
}

int bg__obs_decode_receipt(const uint8_t *buf, size_t len, char **guard, char **session,
                           bg_observation **obs, bg_obs_receipt *rc_out, int *has_rc, bg_err *err)
{
    rbuf r = {buf, len, 0, 0};
    char *tool = NULL, *id = NULL, *args = NULL;
    double *feat = NULL;
    bg_attr *attrs = NULL;
    uint32_t nf = 0, na = 0;
    *guard = *session = NULL;
    *obs = NULL;
    const uint8_t *ver = rget(&r, 1);
    if (!ver || (*ver != 1 && *ver != 2))
        return bg_err_set(err, BG_EIO, "observation record: version %d; expected 1 or 2",
                          ver ? *ver : -1);
    bg_obs_receipt rcpt;
    memset(&rcpt, 0, sizeof rcpt);
    *guard = rstr(&r);
    *session = rstr(&r);
    tool = rstr(&r);
    id = rstr(&r);
    args = rstr(&r);
    nf = ru32(&r);
    if (!r.bad && (size_t)nf * 8 <= len - r.off) {
        feat = malloc(((size_t)nf + 1) * sizeof *feat);
        for (uint32_t i = 0; feat && i < nf; i++)
            feat[i] = rf64(&r);
    } else {
        r.bad = 1;
    }
    na = ru32(&r);
    if (!r.bad && (size_t)na * 8 <= len - r.off) {
        attrs = calloc((size_t)na + 1, sizeof *attrs);
        for (uint32_t i = 0; attrs && i < na; i++) {
            attrs[i].key = rstr(&r);
            attrs[i].value = rstr(&r);
        }
    } else {
        r.bad = 1;
    }
    const uint8_t *flags = rget(&r, 2);
    double value = rf64(&r);
    if (*ver == 2)
        read_receipt(&r, &rcpt);
    if (has_rc)
        *has_rc = *ver == 2 && !r.bad;
    if (rc_out)
        *rc_out = rcpt;
    int rc = BG_OK;
    if (r.bad || !feat || !attrs || !flags || r.off != len) {
        rc = bg_err_set(err, BG_EIO, "observation record: truncated or malformed (%zu bytes)", len);
    } else {
        bg_observation o = {
            .action = {.id = id,
                       .tool = tool,
                       .arguments_json = args,
                       .features = feat,
                       .n_features = nf,
                       .attributes = attrs,
                       .n_attributes = na},
            .harmed = flags[0],
            .has_value = flags[1],
            .value = value,
        };
        *obs = bg__obs_dup(&o);
        if (!*obs)
            rc = bg_err_set(err, BG_ENOMEM, "observation record: out of memory");
    }
    for (uint32_t i = 0; attrs && i < na; i++) {
        free((char *)attrs[i].key);
        free((char *)attrs[i].value);
    }
    free(attrs);
    free(feat);
    free(tool);
    free(id);
    free(args);
    if (rc != BG_OK) {
        free(*guard);
        free(*session);
        *guard = *session = NULL;
    }
    return rc;
}
