/*
 * cfg.c — YAML documents as trees of positioned nodes (see cfg.h).
 *
 * Why shaped so: libyaml's loader (yaml_parser_load) gives one document at
 * a time as a flat node array with marks; we convert each document into our
 * own tree so that (a) maps keep key order and can be searched by key,
 * (b) every node carries file/line/column for messages, (c) aliases are
 * resolved by copying (bounded by BG_CFG_MAX_NODES, so an alias bomb is an
 * error, not an OOM), and (d) duplicate keys are refused with the position
 * of the second occurrence. All memory of a doc lives in one arena freed at
 * once by bg_cfg_doc_destroy.
 *
 * Invariants: after parse a doc is immutable; every node's `file` points at
 * the doc's copy of the name; a MAP's keys are scalars (a complex key is a
 * parse error); a plain scalar spelled null/Null/NULL/~ or empty is a NULL
 * node (it has no scalar text).
 *
 * Threads: parse on any thread; a parsed doc may be read from any thread.
 * Ownership: the doc owns every node and string; node pointers are valid
 * until bg_cfg_doc_destroy.
 */
#include "cfg/cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define BG_CFG_MAX_NODES 1000000u /* aliases are copied: bound the expansion */
#define BG_CFG_MAX_DEPTH 256u

struct bg_cfg_node {
    bg_cfg_type type;
    int line, col;
    const char *file;
    const char *scalar;         /* SCALAR: text; else NULL */
    int plain;                  /* SCALAR: 1 when unquoted */
    size_t n;                   /* SEQ items / MAP pairs */
    const bg_cfg_node **items;  /* SEQ: [n]; MAP: values [n] */
    const char **keys;          /* MAP: [n] */
    const bg_cfg_node **knodes; /* MAP: [n] the key scalars (positions) */
};

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

struct bg_cfg_doc {
    arena_block *blocks;
    char *name;
    size_t n_docs;
    const bg_cfg_node **roots;
    size_t n_nodes;
};

static void *arena_alloc(bg_cfg_doc *d, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_block *b = d->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 16384 ? size : 16384;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = d->blocks;
        b->used = 0;
        b->cap = cap;
        d->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

static const char *arena_strndup(bg_cfg_doc *d, const char *s, size_t len)
{
    char *p = arena_alloc(d, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

void bg_cfg_doc_destroy(bg_cfg_doc *d)
{
    if (!d)
        return;
    arena_block *b = d->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(d->roots);
    free(d->name);
    free(d);
}

/* ------------------------------------------------------------- convert */

typedef struct conv {
    bg_cfg_doc *d;
    yaml_document_t *yd;
    bg_err *err;
    unsigned depth;
} conv;

static int is_null_plain(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

static int conv_node(conv *c, int index, const bg_cfg_node **out);

static int conv_fail(conv *c, const yaml_node_t *yn, const char *what)
{
    return bg_err_set(c->err, BG_ECONFIG, "%s:%zu:%zu: %s", c->d->name, yn->start_mark.line + 1,
                      yn->start_mark.column + 1, what);
}

static int conv_map(conv *c, const yaml_node_t *yn, bg_cfg_node *n)
{
    size_t cnt = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
    n->type = BG_CFG_MAP;
    n->n = cnt;
    n->items = arena_alloc(c->d, (cnt ? cnt : 1) * sizeof *n->items);
    n->keys = arena_alloc(c->d, (cnt ? cnt : 1) * sizeof *n->keys);
    n->knodes = arena_alloc(c->d, (cnt ? cnt : 1) * sizeof *n->knodes);
    if (!n->items || !n->keys || !n->knodes)
        return bg_err_set(c->err, BG_ENOMEM, "%s: out of memory", c->d->name);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *p = &yn->data.mapping.pairs.start[i];
        const yaml_node_t *kn = yaml_document_get_node(c->yd, p->key);
        if (!kn || kn->type != YAML_SCALAR_NODE)
            return conv_fail(c, kn ? kn : yn, "map key must be a plain string");
        const char *k =
            arena_strndup(c->d, (const char *)kn->data.scalar.value, kn->data.scalar.length);
        if (!k)
            return bg_err_set(c->err, BG_ENOMEM, "%s: out of memory", c->d->name);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(n->keys[j], k) == 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "duplicate key '%.120s' (first at line %d)", k,
                         bg_cfg_line(n->items[j]));
                return conv_fail(c, kn, msg);
            }
        }
        n->keys[i] = k;
        int rc = conv_node(c, p->key, &n->knodes[i]);
        if (rc)
            return rc;
        rc = conv_node(c, p->value, &n->items[i]);
        if (rc)
            return rc;
    }
    return BG_OK;
}

static int conv_seq(conv *c, const yaml_node_t *yn, bg_cfg_node *n)
{
    size_t cnt = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
    n->type = BG_CFG_SEQ;
    n->n = cnt;
    n->items = arena_alloc(c->d, (cnt ? cnt : 1) * sizeof *n->items);
    if (!n->items)
        return bg_err_set(c->err, BG_ENOMEM, "%s: out of memory", c->d->name);
    for (size_t i = 0; i < cnt; i++) {
        int rc = conv_node(c, yn->data.sequence.items.start[i], &n->items[i]);
        if (rc)
            return rc;
    }
    return BG_OK;
}

static int conv_node(conv *c, int index, const bg_cfg_node **out)
{
    const yaml_node_t *yn = yaml_document_get_node(c->yd, index);
    if (!yn)
        return bg_err_set(c->err, BG_EINTERNAL, "%s: dangling YAML node", c->d->name);
    if (++c->d->n_nodes > BG_CFG_MAX_NODES)
        return conv_fail(c, yn, "document too large (aliases expand past 1000000 nodes)");
    if (c->depth >= BG_CFG_MAX_DEPTH)
        return conv_fail(c, yn, "document nested too deeply (more than 256 levels)");
    bg_cfg_node *n = arena_alloc(c->d, sizeof *n);
    if (!n)
        return bg_err_set(c->err, BG_ENOMEM, "%s: out of memory", c->d->name);
    memset(n, 0, sizeof *n);
    n->file = c->d->name;
    n->line = (int)yn->start_mark.line + 1;
    n->col = (int)yn->start_mark.column + 1;
    *out = n;
    int rc = BG_OK;
    c->depth++;
    switch (yn->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)yn->data.scalar.value;
        size_t len = yn->data.scalar.length;
        n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (n->plain && is_null_plain(s, len)) {
            n->type = BG_CFG_NULL;
        } else {
            n->type = BG_CFG_SCALAR;
            n->scalar = arena_strndup(c->d, s, len);
            if (!n->scalar)
                rc = bg_err_set(c->err, BG_ENOMEM, "%s: out of memory", c->d->name);
        }
        break;
    }
    case YAML_SEQUENCE_NODE:
        rc = conv_seq(c, yn, n);
        break;
    case YAML_MAPPING_NODE:
        rc = conv_map(c, yn, n);
        break;
    default:
        rc = conv_fail(c, yn, "empty YAML node");
    }
    c->depth--;
    return rc;
}

/* --------------------------------------------------------------- parse */

static int add_root(bg_cfg_doc *d, const bg_cfg_node *root, bg_err *err)
{
    const bg_cfg_node **r = realloc(d->roots, (d->n_docs + 1) * sizeof *r);
    if (!r)
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", d->name);
    d->roots = r;
    d->roots[d->n_docs++] = root;
    return BG_OK;
}

static int parse_parser(yaml_parser_t *p, bg_cfg_doc *d, bg_err *err)
{
    for (;;) {
        yaml_document_t yd;
        if (!yaml_parser_load(p, &yd)) {
            const char *ctx = p->context ? p->context : "";
            return bg_err_set(err, BG_ECONFIG, "%s:%zu:%zu: invalid YAML: %s%s%s", d->name,
                              p->problem_mark.line + 1, p->problem_mark.column + 1,
                              p->problem ? p->problem : "syntax error", *ctx ? " " : "", ctx);
        }
        if (!yaml_document_get_root_node(&yd)) { /* end of stream */
            yaml_document_delete(&yd);
            return BG_OK;
        }
        conv c = {.d = d, .yd = &yd, .err = err, .depth = 0};
        const bg_cfg_node *root = NULL;
        int rc = conv_node(&c, 1, &root);
        yaml_document_delete(&yd);
        if (rc == BG_OK)
            rc = add_root(d, root, err);
        if (rc)
            return rc;
    }
}

int bg_cfg_parse_string(const char *text, size_t len, const char *name, bg_cfg_doc **out,
                        bg_err *err)
{
    *out = NULL;
    bg_cfg_doc *d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(name ? name : "<string>"))) {
        free(d);
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", name ? name : "<string>");
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        bg_cfg_doc_destroy(d);
        return bg_err_set(err, BG_ENOMEM, "%s: cannot initialise the YAML parser", name);
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = parse_parser(&p, d, err);
    yaml_parser_delete(&p);
    if (rc) {
        bg_cfg_doc_destroy(d);
        return rc;
    }
    *out = d;
    return BG_OK;
}

int bg_cfg_parse_file(const char *path, bg_cfg_doc **out, bg_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return bg_err_set(err, BG_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return bg_err_set(err, BG_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return bg_err_set(err, BG_EIO, "%s: read error", path);
    }
    int rc = bg_cfg_parse_string(buf, len, path, out, err);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------- accessors */

size_t bg_cfg_doc_count(const bg_cfg_doc *d)
{
    return d ? d->n_docs : 0;
}

const bg_cfg_node *bg_cfg_doc_root(const bg_cfg_doc *d, size_t i)
{
    return d && i < d->n_docs ? d->roots[i] : NULL;
}

bg_cfg_type bg_cfg_type_of(const bg_cfg_node *n)
{
    return n ? n->type : BG_CFG_NULL;
}

const bg_cfg_node *bg_cfg_get(const bg_cfg_node *map, const char *key)
{
    if (!map || map->type != BG_CFG_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

size_t bg_cfg_len(const bg_cfg_node *n)
{
    return n && (n->type == BG_CFG_SEQ || n->type == BG_CFG_MAP) ? n->n : 0;
}

const bg_cfg_node *bg_cfg_item(const bg_cfg_node *seq, size_t i)
{
    return seq && seq->type == BG_CFG_SEQ && i < seq->n ? seq->items[i] : NULL;
}

const char *bg_cfg_key(const bg_cfg_node *map, size_t i)
{
    return map && map->type == BG_CFG_MAP && i < map->n ? map->keys[i] : NULL;
}

const bg_cfg_node *bg_cfg_value(const bg_cfg_node *map, size_t i)
{
    return map && map->type == BG_CFG_MAP && i < map->n ? map->items[i] : NULL;
}

const bg_cfg_node *bg_cfg_key_node(const bg_cfg_node *map, size_t i)
{
    return map && map->type == BG_CFG_MAP && i < map->n ? map->knodes[i] : NULL;
}

int bg_cfg_plain(const bg_cfg_node *n)
{
    return n && n->type == BG_CFG_SCALAR && n->plain;
}

const char *bg_cfg_scalar(const bg_cfg_node *n)
{
    return n && n->type == BG_CFG_SCALAR ? n->scalar : NULL;
}

const char *bg_cfg_file(const bg_cfg_node *n)
{
    return n ? n->file : "";
}

int bg_cfg_line(const bg_cfg_node *n)
{
    return n ? n->line : 0;
}

int bg_cfg_column(const bg_cfg_node *n)
{
    return n ? n->col : 0;
}

/* ---------------------------------------------------------------- hash */

#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Length-prefixed strings so ("ab","c") and ("a","bc") differ. */
static uint64_t fnv_str(uint64_t h, const char *s)
{
    uint64_t len = strlen(s);
    h = fnv_bytes(h, &len, sizeof len);
    return fnv_bytes(h, s, (size_t)len);
}

uint64_t bg_cfg_hash(const bg_cfg_node *n, uint64_t seed)
{
    uint64_t h = seed ^ 0xcbf29ce484222325ULL;
    unsigned char tag = (unsigned char)bg_cfg_type_of(n);
    h = fnv_bytes(h, &tag, 1);
    if (!n)
        return h;
    switch (n->type) {
    case BG_CFG_SCALAR:
        h = fnv_str(h, n->scalar);
        break;
    case BG_CFG_SEQ:
    case BG_CFG_MAP: {
        uint64_t cnt = n->n;
        h = fnv_bytes(h, &cnt, sizeof cnt);
        for (size_t i = 0; i < n->n; i++) {
            if (n->type == BG_CFG_MAP)
                h = fnv_str(h, n->keys[i]);
            uint64_t sub = bg_cfg_hash(n->items[i], 0);
            h = fnv_bytes(h, &sub, sizeof sub);
        }
        break;
    }
    case BG_CFG_NULL:
        break;
    }
    return h;
}

/* ------------------------------------------------------------- derived */

const bg_cfg_node *bg_cfg_map_without(bg_cfg_doc *d, const bg_cfg_node *map, const char *drop)
{
    if (!map || map->type != BG_CFG_MAP)
        return NULL;
    bg_cfg_node *n = arena_alloc(d, sizeof *n);
    if (!n)
        return NULL;
    *n = *map;
    n->n = 0;
    n->items = arena_alloc(d, (map->n ? map->n : 1) * sizeof *n->items);
    n->keys = arena_alloc(d, (map->n ? map->n : 1) * sizeof *n->keys);
    n->knodes = arena_alloc(d, (map->n ? map->n : 1) * sizeof *n->knodes);
    if (!n->items || !n->keys || !n->knodes)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], drop) == 0)
            continue;
        n->items[n->n] = map->items[i];
        n->keys[n->n] = map->keys[i];
        n->knodes[n->n] = map->knodes[i];
        n->n++;
    }
    return n;
}
