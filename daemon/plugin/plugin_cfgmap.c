/*
 * plugin_cfgmap.c — host->cfg_apply: fill a plugin's config struct from a
 * map node by a typed table (bg_cfg_entry, plugin.h), Fluent Bit style.
 *
 * Rules, in order: the config must be a map (or absent = all defaults);
 * every key must be in the table (else "unknown key 'k'; allowed keys: …");
 * a key absent or null takes the entry's default, parsed as YAML text like
 * a value would be; a required key (def == NULL) that is absent is an
 * error at the map (or the section the policy named); values are parsed by
 * type and range-checked (a bound is closed unless the entry's type carries
 * BG_CFGV_MIN_OPEN / BG_CFGV_MAX_OPEN, and messages print the interval
 * the same way: "(0, 1]"). Every problem is recorded through cfg_error with
 * the offending node's position, and ALL problems are reported, not just
 * the first. Nothing is written to a field whose value is invalid.
 *
 * The same engine checks the policy schema (policy_parse.c) through
 * bg_cfg_apply_table with its own error sink, key prefix and the keys that
 * are sub-sections (handled by the caller, so not "unknown").
 *
 * Threads: only during a plugin's create (config nodes live until then).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin_priv.h"
#include "cfg/cfg.h"

typedef struct apply_ctx {
    bg_cfg_sink sink;
    void *sink_ctx;
    const bg_cfg_entry *e;
    const char *what; /* "key 'k'" or "default of key 'k'" */
} apply_ctx;

#define FAIL(a, node, ...) (a)->sink((a)->sink_ctx, (node), __VA_ARGS__)

static uint32_t vtype(const bg_cfg_entry *e)
{
    return e->type & BG_CFGV_TYPE_MASK;
}

static int range_checked(const bg_cfg_entry *e)
{
    return !(e->min > e->max);
}

static int in_range(const bg_cfg_entry *e, double v)
{
    if (!range_checked(e))
        return 1;
    int lo = (e->type & BG_CFGV_MIN_OPEN) ? v > e->min : v >= e->min;
    int hi = (e->type & BG_CFGV_MAX_OPEN) ? v < e->max : v <= e->max;
    return lo && hi;
}

/* The entry's range as an interval: "[0, 1]", "(0, 1]"; integers without
 * decimals. */
static void range_text(const bg_cfg_entry *e, char *buf, size_t len)
{
    char lo = (e->type & BG_CFGV_MIN_OPEN) ? '(' : '[';
    char hi = (e->type & BG_CFGV_MAX_OPEN) ? ')' : ']';
    if (vtype(e) == BG_CFGV_INT)
        snprintf(buf, len, "%c%.0f, %.0f%c", lo, e->min, e->max, hi);
    else
        snprintf(buf, len, "%c%g, %g%c", lo, e->min, e->max, hi);
}

static int parse_double(const apply_ctx *a, const bg_cfg_node *n, double *out)
{
    const char *s = bg_cfg_scalar(n);
    if (!s)
        return FAIL(a, n, "%s: expected a number, got a %s", a->what,
                    bg_cfg_type_of(n) == BG_CFG_MAP ? "map" : "list");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return FAIL(a, n, "%s: expected a finite number, got '%s'", a->what, s);
    if (!in_range(a->e, v)) {
        char r[80];
        range_text(a->e, r, sizeof r);
        return FAIL(a, n, "%s: %g is out of range %s", a->what, v, r);
    }
    *out = v;
    return BG_PLUGIN_OK;
}

static int parse_int(const apply_ctx *a, const bg_cfg_node *n, int64_t *out)
{
    const char *s = bg_cfg_scalar(n);
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || *end || errno == ERANGE)
        return FAIL(a, n, "%s: expected an integer, got %s%s%s", a->what, s ? "'" : "a ",
                    s ? s : (bg_cfg_type_of(n) == BG_CFG_MAP ? "map" : "list"), s ? "'" : "");
    if (!in_range(a->e, (double)v)) {
        char r[80];
        range_text(a->e, r, sizeof r);
        return FAIL(a, n, "%s: %lld is out of range %s", a->what, v, r);
    }
    *out = (int64_t)v;
    return BG_PLUGIN_OK;
}

static int parse_bool(const apply_ctx *a, const bg_cfg_node *n, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    const char *s = bg_cfg_scalar(n);
    for (int i = 0; s && i < 3; i++) {
        if (strcmp(s, yes[i]) == 0)
            return *out = 1, BG_PLUGIN_OK;
        if (strcmp(s, no[i]) == 0)
            return *out = 0, BG_PLUGIN_OK;
    }
    return FAIL(a, n, "%s: expected true or false, got '%s'", a->what, s ? s : "a collection");
}

static int parse_string(const apply_ctx *a, const bg_cfg_node *n, char *out)
{
    const char *s = bg_cfg_scalar(n);
    if (!s)
        return FAIL(a, n, "%s: expected a string, got a %s", a->what,
                    bg_cfg_type_of(n) == BG_CFG_MAP ? "map" : "list");
    if (strlen(s) >= a->e->size)
        return FAIL(a, n, "%s: string is %zu bytes, at most %zu allowed", a->what, strlen(s),
                    a->e->size ? a->e->size - 1 : 0);
    memcpy(out, s, strlen(s) + 1);
    return BG_PLUGIN_OK;
}

static int parse_enum(const apply_ctx *a, const bg_cfg_node *n, int *out)
{
    const char *s = bg_cfg_scalar(n);
    const char *c = a->e->choices ? a->e->choices : "";
    for (int idx = 0; s && *c; idx++) {
        size_t len = strcspn(c, "|");
        if (strlen(s) == len && strncmp(s, c, len) == 0)
            return *out = idx, BG_PLUGIN_OK;
        c += len;
        if (*c == '|')
            c++;
    }
    return FAIL(a, n, "%s: expected one of %s, got '%s'", a->what,
                a->e->choices ? a->e->choices : "(none)", s ? s : "a collection");
}

static int parse_doubles(const apply_ctx *a, const bg_cfg_node *n, double *out, size_t *count)
{
    if (bg_cfg_type_of(n) != BG_CFG_SEQ)
        return FAIL(a, n, "%s: expected a list of numbers like [0.1, 0.2]", a->what);
    size_t len = bg_cfg_len(n);
    if (len > a->e->size)
        return FAIL(a, n, "%s: %zu values, at most %zu allowed", a->what, len, a->e->size);
    int rc = BG_PLUGIN_OK;
    for (size_t i = 0; i < len; i++) {
        double v = 0;
        if (parse_double(a, bg_cfg_item(n, i), &v) != BG_PLUGIN_OK)
            rc = BG_PLUGIN_ECONFIG;
        else
            out[i] = v;
    }
    if (rc == BG_PLUGIN_OK)
        *count = len;
    return rc;
}

/* Convert node n for entry e into target. */
static int apply_value(const apply_ctx *a, const bg_cfg_node *n, void *target)
{
    const bg_cfg_entry *e = a->e;
    char *field = (char *)target + e->offset;
    switch (vtype(e)) {
    case BG_CFGV_DOUBLE: {
        double v = 0;
        int rc = parse_double(a, n, &v);
        if (rc == BG_PLUGIN_OK)
            memcpy(field, &v, sizeof v);
        return rc;
    }
    case BG_CFGV_INT: {
        int64_t v = 0;
        int rc = parse_int(a, n, &v);
        if (rc == BG_PLUGIN_OK)
            memcpy(field, &v, sizeof v);
        return rc;
    }
    case BG_CFGV_BOOL:
    case BG_CFGV_ENUM: {
        int v = 0;
        int rc = vtype(e) == BG_CFGV_BOOL ? parse_bool(a, n, &v) : parse_enum(a, n, &v);
        if (rc == BG_PLUGIN_OK)
            memcpy(field, &v, sizeof v);
        return rc;
    }
    case BG_CFGV_STRING:
        return parse_string(a, n, field);
    case BG_CFGV_DOUBLES: {
        size_t cnt = 0;
        int rc = parse_doubles(a, n, (double *)(void *)field, &cnt);
        if (rc == BG_PLUGIN_OK)
            memcpy((char *)target + e->count_offset, &cnt, sizeof cnt);
        return rc;
    }
    }
    return FAIL(a, n, "%s: the plugin's config table has an unknown type %u", a->what, e->type);
}

static void list_allowed(const bg_cfg_entry *table, size_t n, const char *const *extra, char *buf,
                         size_t len)
{
    size_t used = 0, k = 0;
    buf[0] = '\0';
    for (size_t i = 0; extra && extra[i]; i++, k++) {
        int w = snprintf(buf + used, len - used, "%s%s", k ? ", " : "", extra[i]);
        if (w < 0 || (size_t)w >= len - used)
            return;
        used += (size_t)w;
    }
    for (size_t i = 0; i < n; i++, k++) {
        int w = snprintf(buf + used, len - used, "%s%s", k ? ", " : "", table[i].key);
        if (w < 0 || (size_t)w >= len - used)
            return;
        used += (size_t)w;
    }
    if (!k)
        snprintf(buf, len, "(none: this plugin takes no config)");
}

static int is_extra(const char *const *extra, const char *k)
{
    for (size_t i = 0; extra && extra[i]; i++)
        if (strcmp(extra[i], k) == 0)
            return 1;
    return 0;
}

static int apply_default(apply_ctx *a, const bg_cfg_node *blame, void *target)
{
    char what[200];
    snprintf(what, sizeof what, "default '%s' of key '%s' (a bug in the key table)", a->e->def,
             a->e->key);
    a->what = what;
    bg_cfg_doc *doc = NULL;
    bg_err err;
    if (bg_cfg_parse_string(a->e->def, strlen(a->e->def), "<default>", &doc, &err) != BG_OK)
        return FAIL(a, blame, "%s: %s", what, err.msg);
    const bg_cfg_node *n = bg_cfg_doc_root(doc, 0);
    int rc;
    if (vtype(a->e) == BG_CFGV_DOUBLES && bg_cfg_type_of(n) == BG_CFG_NULL) {
        size_t zero = 0; /* "" or "~" = empty list */
        memcpy((char *)target + a->e->count_offset, &zero, sizeof zero);
        rc = BG_PLUGIN_OK;
    } else if (vtype(a->e) == BG_CFGV_STRING && bg_cfg_type_of(n) == BG_CFG_NULL) {
        ((char *)target)[a->e->offset] = '\0';
        rc = a->e->size ? BG_PLUGIN_OK : FAIL(a, blame, "%s: no room", what);
    } else {
        rc = n ? apply_value(a, n, target) : FAIL(a, blame, "%s: empty", what);
    }
    bg_cfg_doc_destroy(doc);
    return rc;
}

int bg_cfg_apply_table(bg_cfg_sink sink, void *sink_ctx, const bg_cfg_node *cfg,
                       const bg_cfg_entry *table, size_t n_entries, const char *key_prefix,
                       const char *const *extra_keys, void *target)
{
    char allowed[768];
    list_allowed(table, n_entries, extra_keys, allowed, sizeof allowed);
    if (!key_prefix)
        key_prefix = "";
    bg_cfg_type t = bg_cfg_type_of(cfg);
    if (t != BG_CFG_MAP && t != BG_CFG_NULL) {
        size_t pl = strlen(key_prefix);
        int sl = pl ? (int)pl - 1 : 6; /* "spec." -> "spec", "" -> "config" */
        return sink(sink_ctx, cfg, "%.*s must be a map of keys, got a %s; allowed keys: %s", sl,
                    pl ? key_prefix : "config", t == BG_CFG_SEQ ? "list" : "scalar", allowed);
    }
    int rc = BG_PLUGIN_OK;
    for (size_t i = 0; i < bg_cfg_len(cfg); i++) {
        const char *k = bg_cfg_key(cfg, i);
        size_t j = 0;
        while (j < n_entries && strcmp(table[j].key, k) != 0)
            j++;
        if (j == n_entries && !is_extra(extra_keys, k))
            rc = sink(sink_ctx, bg_cfg_key_node(cfg, i), "unknown key '%s%s'; allowed keys: %s",
                      key_prefix, k, allowed);
    }
    for (size_t j = 0; j < n_entries; j++) {
        char what[160];
        snprintf(what, sizeof what, "key '%s%s'", key_prefix, table[j].key);
        apply_ctx a = {.sink = sink, .sink_ctx = sink_ctx, .e = &table[j], .what = what};
        const bg_cfg_node *n = bg_cfg_get(cfg, table[j].key);
        int r;
        if (n && bg_cfg_type_of(n) != BG_CFG_NULL)
            r = apply_value(&a, n, target);
        else if (table[j].def)
            r = apply_default(&a, cfg, target);
        else
            r = sink(sink_ctx, cfg, "missing required key '%s%s' (%s)", key_prefix, table[j].key,
                     table[j].desc ? table[j].desc : "");
        if (r != BG_PLUGIN_OK)
            rc = BG_PLUGIN_ECONFIG;
    }
    return rc == BG_PLUGIN_OK ? BG_PLUGIN_OK : BG_PLUGIN_ECONFIG;
}

int bg__cfg_apply(void *host_ctx, const bg_cfg_node *cfg, const bg_cfg_entry *table,
                  size_t n_entries, void *target)
{
    return bg_cfg_apply_table(bg__services_cfg_error, host_ctx, cfg, table, n_entries, "", NULL,
                              target);
}

void bg_cfg_entry_describe(const bg_cfg_entry *e, char *buf, size_t len)
{
    char what[160] = "", range[80] = "";
    uint32_t t = vtype(e);
    switch (t) {
    case BG_CFGV_DOUBLE:
        snprintf(what, sizeof what, "number");
        break;
    case BG_CFGV_INT:
        snprintf(what, sizeof what, "integer");
        break;
    case BG_CFGV_BOOL:
        snprintf(what, sizeof what, "true|false");
        break;
    case BG_CFGV_STRING:
        snprintf(what, sizeof what, "string of at most %zu bytes", e->size ? e->size - 1 : 0);
        break;
    case BG_CFGV_DOUBLES:
        snprintf(what, sizeof what, "list of at most %zu numbers", e->size);
        break;
    case BG_CFGV_ENUM:
        snprintf(what, sizeof what, "one of %.140s", e->choices ? e->choices : "(none)");
        break;
    default:
        snprintf(what, sizeof what, "unknown type %u", e->type);
    }
    if ((t == BG_CFGV_DOUBLE || t == BG_CFGV_INT || t == BG_CFGV_DOUBLES) && range_checked(e)) {
        char r[80];
        range_text(e, r, sizeof r);
        snprintf(range, sizeof range, " in %s", r);
    }
    if (!e->def)
        snprintf(buf, len, "%s%s, required", what, range);
    else
        snprintf(buf, len, "%s%s, default %s", what, range, e->def[0] ? e->def : "(empty)");
}
