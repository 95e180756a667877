/*
 * settings.c — flags, the --config file, defaults and --help, all read off
 * BG_DAEMON_SETTINGS (settings.h).
 *
 * One path for a value: set_value() parses and range-checks the text of a
 * flag, a file scalar or a default the same way, so a limit can never
 * hold for one source and not another. A value from the file is checked
 * even when a flag overrides it (a broken file is an error either way).
 * A default that fails its own range is a bug in the table and panics.
 *
 * Threads: main thread at start (getopt keeps global state).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"
#include "common/bg_assert.h"
#include "common/bg_strbuf.h"
#include "settings/settings.h"

#define BG__SETTING_COUNT_OFF_STR(name) 0
#define BG__SETTING_COUNT_OFF_INT(name) 0
#define BG__SETTING_COUNT_OFF_LIST(name) offsetof(bg_settings, n_##name)
#define BG__SETTING_COUNT_OFF_SWITCH(name) 0
#define BG__SETTING_COUNT_OFF_EXIT(name) 0

#define ROW(name, flag, key, type, arg, def, absent, min, max, help)                               \
    {#name,                                                                                        \
     flag,                                                                                         \
     key,                                                                                          \
     BG_SETTING_TYPE_##type,                                                                       \
     arg,                                                                                          \
     def,                                                                                          \
     absent,                                                                                       \
     min,                                                                                          \
     max,                                                                                          \
     help,                                                                                         \
     offsetof(bg_settings, name),                                                                  \
     BG__SETTING_COUNT_OFF_##type(name)},
const bg_setting bg_settings_table[BG_SETTING_COUNT] = {BG_DAEMON_SETTINGS(ROW)};
#undef ROW

/* getopt_long's table: val = 1000 + the setting's index. */
#define OPT_BASE 1000
#define HAS_ARG_STR required_argument
#define HAS_ARG_INT required_argument
#define HAS_ARG_LIST required_argument
#define HAS_ARG_SWITCH no_argument
#define HAS_ARG_EXIT no_argument
#define LONG_OPT(name, flag, key, type, ...)                                                       \
    {flag, HAS_ARG_##type, NULL, OPT_BASE + BG_SETTING_##name},
static const struct option long_opts[] = {BG_DAEMON_SETTINGS(LONG_OPT){NULL, 0, NULL, 0}};
#undef LONG_OPT

static void *field(bg_settings *s, const bg_setting *e)
{
    return (char *)s + e->offset;
}

static int is_required(const bg_setting *e)
{
    return e->absent != NULL && strcmp(e->absent, "required") == 0;
}

/* "listen, policies, ...": every config key, in table order. */
static void put_keys(bg_strbuf *b)
{
    const char *sep = "";
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        if (bg_settings_table[i].key == NULL)
            continue;
        bg_strbuf_printf(b, "%s%s", sep, bg_settings_table[i].key);
        sep = ", ";
    }
}

static int parse_int(const bg_setting *e, const char *where, const char *text, long *out,
                     bg_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < e->min || v > e->max)
        return bg_err_set(err, BG_EINVAL, "%s %s: expected an integer in [%ld, %ld]", where, text,
                          e->min, e->max);
    *out = v;
    return BG_OK;
}

/* Parse `text` for setting e and, when `store`, write it. `where` names the
 * source in messages: "--cq-threads", "bg.yaml:3:1: cq_threads:". */
static int set_value(bg_settings *s, const bg_setting *e, const char *where, const char *text,
                     int store, bg_err *err)
{
    switch (e->type) {
    case BG_SETTING_TYPE_STR:
        if (store)
            *(const char **)field(s, e) = text;
        return BG_OK;
    case BG_SETTING_TYPE_INT: {
        long v = 0;
        if (parse_int(e, where, text, &v, err) != BG_OK)
            return BG_EINVAL;
        if (store)
            *(long *)field(s, e) = v;
        return BG_OK;
    }
    case BG_SETTING_TYPE_LIST: {
        size_t *n = (size_t *)((char *)s + e->count_offset);
        if (!store) /* the file's list when flags gave it: load_key counts */
            return BG_OK;
        if (*n >= (size_t)e->max)
            return bg_err_set(err, BG_EINVAL, "%s %s: at most %ld values", where, text, e->max);
        ((const char **)field(s, e))[(*n)++] = text;
        return BG_OK;
    }
    case BG_SETTING_TYPE_SWITCH:
    case BG_SETTING_TYPE_EXIT:
        if (store)
            *(int *)field(s, e) = 1;
        return BG_OK;
    }
    BG_PANIC("setting %s: type %d", e->name, (int)e->type);
}

/* Flags, left to right. Returns BG_OK, or BG_EINVAL / BG_ENOTFOUND. */
static int parse_flags(bg_settings *s, int argc, char **argv, bg_err *err)
{
    int c;
    opterr = 0;
    optind = 0; /* glibc: start over (tests parse more than once) */
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c < OPT_BASE || c >= OPT_BASE + BG_SETTING_COUNT)
            return bg_err_set(err, BG_ENOTFOUND, "unknown or incomplete option '%s'",
                              argv[optind - 1]);
        const bg_setting *e = &bg_settings_table[c - OPT_BASE];
        char where[96];
        snprintf(where, sizeof where, "--%s", e->flag);
        if (set_value(s, e, where, optarg, 1, err) != BG_OK)
            return BG_EINVAL;
        s->from[c - OPT_BASE] = BG_SETTING_FROM_FLAG;
        /* an EXIT flag (--help, --version) does not end the parse: a bad
         * option after it is a usage error like one before it */
    }
    if (optind < argc)
        return bg_err_set(err, BG_EINVAL,
                          "unexpected argument '%s': every setting is a --flag (see --help)",
                          argv[optind]);
    return BG_OK;
}

static const bg_setting *find_key(const char *key)
{
    for (size_t i = 0; i < BG_SETTING_COUNT; i++)
        if (bg_settings_table[i].key != NULL && strcmp(bg_settings_table[i].key, key) == 0)
            return &bg_settings_table[i];
    return NULL;
}

static const char *kind_of(const bg_cfg_node *v)
{
    switch (bg_cfg_type_of(v)) {
    case BG_CFG_MAP:
        return "a map";
    case BG_CFG_SEQ:
        return "a list";
    default:
        return "a scalar";
    }
}

/* A map entry of a LIST key ("spiffe://x": [agent, health]) as the flag's
 * form "spiffe://x=agent,health", owned by s (freed at close). */
static int map_entry(bg_settings *s, const bg_setting *e, const bg_cfg_node *map, size_t k,
                     const char **out, bg_err *err)
{
    const bg_cfg_node *v = bg_cfg_value(map, k);
    const bg_cfg_node *kn = bg_cfg_key_node(map, k);
    bg_strbuf b;
    bg_strbuf_init(&b);
    bg_strbuf_printf(&b, "%s=", bg_cfg_key(map, k));
    size_t n = bg_cfg_type_of(v) == BG_CFG_SEQ ? bg_cfg_len(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const bg_cfg_node *it = bg_cfg_type_of(v) == BG_CFG_SEQ ? bg_cfg_item(v, i) : v;
        if (bg_cfg_type_of(it) != BG_CFG_SCALAR) {
            bg_strbuf_close(&b);
            return bg_err_set(err, BG_EINVAL,
                              "%s:%d:%d: %s: %s: expected a string or a list of strings, got %s",
                              bg_cfg_file(it), bg_cfg_line(it), bg_cfg_column(it), e->key,
                              bg_cfg_key(map, k), kind_of(it));
        }
        bg_strbuf_printf(&b, "%s%s", i ? "," : "", bg_cfg_scalar(it));
    }
    char **m = realloc(s->made, (s->n_made + 1) * sizeof(*m));
    char *str = b.failed || b.p == NULL ? NULL : strdup(b.p);
    bg_strbuf_close(&b);
    if (m == NULL || str == NULL) {
        free(str);
        if (m != NULL)
            s->made = m;
        return bg_err_set(err, BG_ENOMEM, "%s:%d:%d: %s: out of memory", bg_cfg_file(kn),
                          bg_cfg_line(kn), bg_cfg_column(kn), e->key);
    }
    s->made = m;
    s->made[s->n_made++] = str;
    *out = str;
    return BG_OK;
}

/* One key of the file: its value (a scalar, or a list or map for a LIST). */
static int load_key(bg_settings *s, const bg_setting *e, const bg_cfg_node *v, bg_err *err)
{
    char where[1200];
    snprintf(where, sizeof where, "%s:%d:%d: %s:", bg_cfg_file(v), bg_cfg_line(v), bg_cfg_column(v),
             e->key);
    size_t id = (size_t)(e - bg_settings_table);
    int store = s->from[id] != BG_SETTING_FROM_FLAG;
    if (e->type == BG_SETTING_TYPE_LIST && bg_cfg_type_of(v) == BG_CFG_SEQ) {
        for (size_t k = 0; k < bg_cfg_len(v); k++) {
            const bg_cfg_node *it = bg_cfg_item(v, k);
            if (bg_cfg_type_of(it) != BG_CFG_SCALAR)
                return bg_err_set(
                    err, BG_EINVAL, "%s:%d:%d: %s: expected a list of strings, got %s in it",
                    bg_cfg_file(it), bg_cfg_line(it), bg_cfg_column(it), e->key, kind_of(it));
            if (k >= (size_t)e->max)
                return bg_err_set(err, BG_EINVAL, "%s expected at most %ld values, got %zu", where,
                                  e->max, bg_cfg_len(v));
            if (set_value(s, e, where, bg_cfg_scalar(it), store, err) != BG_OK)
                return BG_EINVAL;
        }
    } else if (e->type == BG_SETTING_TYPE_LIST && bg_cfg_type_of(v) == BG_CFG_MAP) {
        for (size_t k = 0; k < bg_cfg_len(v); k++) {
            const char *text = NULL;
            if (k >= (size_t)e->max)
                return bg_err_set(err, BG_EINVAL, "%s expected at most %ld entries, got %zu", where,
                                  e->max, bg_cfg_len(v));
            if (map_entry(s, e, v, k, &text, err) != BG_OK ||
                set_value(s, e, where, text, store, err) != BG_OK)
                return BG_EINVAL;
        }
    } else if (bg_cfg_type_of(v) != BG_CFG_SCALAR) {
        return bg_err_set(err, BG_EINVAL, "%s expected %s, got %s", where,
                          e->type == BG_SETTING_TYPE_INT    ? "an integer"
                          : e->type == BG_SETTING_TYPE_LIST ? "a string or a list of strings"
                                                            : "a string",
                          kind_of(v));
    } else if (set_value(s, e, where, bg_cfg_scalar(v), store, err) != BG_OK) {
        return BG_EINVAL;
    }
    if (store)
        s->from[id] = BG_SETTING_FROM_FILE;
    return BG_OK;
}

/* The --config file: a map of config keys. */
static int load_file(bg_settings *s, const char *path, bg_err *err)
{
    if (bg_cfg_parse_file(path, &s->doc, err) != BG_OK)
        return BG_EINVAL;
    if (bg_cfg_doc_count(s->doc) == 0)
        return BG_OK;
    const bg_cfg_node *root = bg_cfg_doc_root(s->doc, 0);
    char keys[1024];
    bg_strbuf b;
    bg_strbuf_init_on(&b, keys, sizeof keys);
    put_keys(&b);
    int rc = BG_OK;
    if (bg_cfg_type_of(root) != BG_CFG_MAP)
        rc = bg_err_set(err, BG_EINVAL, "%s:%d:%d: expected a map of settings (keys: %s)",
                        bg_cfg_file(root), bg_cfg_line(root), bg_cfg_column(root), b.p);
    for (size_t i = 0; rc == BG_OK && i < bg_cfg_len(root); i++) {
        const char *key = bg_cfg_key(root, i);
        const bg_cfg_node *v = bg_cfg_value(root, i);
        const bg_setting *e = find_key(key);
        if (e == NULL) {
            const bg_cfg_node *kn = bg_cfg_key_node(root, i);
            rc = bg_err_set(err, BG_EINVAL, "%s:%d:%d: unknown setting '%s': expected one of %s",
                            bg_cfg_file(kn), bg_cfg_line(kn), bg_cfg_column(kn), key, b.p);
        } else {
            rc = load_key(s, e, v, err);
        }
    }
    bg_strbuf_close(&b);
    return rc;
}

/* Defaults for what neither flag nor file gave; then the required ones. */
static int finish(bg_settings *s, bg_err *err)
{
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        if (s->from[i] != BG_SETTING_UNSET || e->def == NULL)
            continue;
        char where[96];
        snprintf(where, sizeof where, "the default of --%s", e->flag);
        bg_err derr;
        bg_err_clear(&derr);
        BG_ASSERT(set_value(s, e, where, e->def, 1, &derr) == BG_OK, "settings table: %s",
                  derr.msg);
        s->from[i] = BG_SETTING_FROM_DEFAULT;
    }
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        if (is_required(e) && s->from[i] == BG_SETTING_UNSET)
            return bg_err_set(err, BG_EINVAL,
                              "--%s %s is required (config key '%s'): %s; see --help", e->flag,
                              e->arg, e->key ? e->key : "none", e->help);
    }
    return BG_OK;
}

int bg_settings_parse(bg_settings *s, int argc, char **argv, bg_err *err)
{
    memset(s, 0, sizeof(*s));
    int rc = parse_flags(s, argc, argv, err);
    if (rc != BG_OK || s->help || s->version)
        return rc;
    if (s->config != NULL && load_file(s, s->config, err) != BG_OK)
        return BG_EINVAL;
    return finish(s, err);
}

void bg_settings_close(bg_settings *s)
{
    if (s->doc != NULL)
        bg_cfg_doc_destroy(s->doc);
    s->doc = NULL;
    for (size_t i = 0; i < s->n_made; i++)
        free(s->made[i]);
    free(s->made);
    s->made = NULL;
    s->n_made = 0;
}

/* ---------------------------------------------------------------- --help */

/* `text` wrapped at 79 columns, each line indented by `indent`. */
static void put_wrapped(FILE *f, const char *text, int indent)
{
    const int width = 79;
    int col = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (w == 0)
            break;
        if (col > 0 && col + 1 + (int)w > width) {
            fputc('\n', f);
            col = 0;
        }
        if (col == 0)
            col = fprintf(f, "%*s", indent, "");
        else
            col += fprintf(f, " ");
        col += fprintf(f, "%.*s", (int)w, p);
        p += w;
    }
    if (col > 0)
        fputc('\n', f);
}

/* "--cq-threads N" */
static void put_flag(bg_strbuf *b, const bg_setting *e)
{
    bg_strbuf_printf(b, "--%s", e->flag);
    if (e->arg != NULL)
        bg_strbuf_printf(b, " %s", e->arg);
}

/* "config: cq_threads; integer in [1, 256]; default: usable CPUs" */
static void put_facts(bg_strbuf *b, const bg_setting *e)
{
    if (e->key != NULL)
        bg_strbuf_printf(b, "config: %s; ", e->key);
    else
        bg_strbuf_puts(b, "flag only; ");
    switch (e->type) {
    case BG_SETTING_TYPE_STR:
        bg_strbuf_puts(b, "string");
        break;
    case BG_SETTING_TYPE_INT:
        bg_strbuf_printf(b, "integer in [%ld, %ld]", e->min, e->max);
        break;
    case BG_SETTING_TYPE_LIST:
        bg_strbuf_printf(
            b, "string, repeatable (at most %ld; in the file a string, a list or a map)", e->max);
        break;
    case BG_SETTING_TYPE_SWITCH:
        bg_strbuf_puts(b, "switch (no value)");
        break;
    case BG_SETTING_TYPE_EXIT:
        bg_strbuf_puts(b, "prints and exits 0");
        break;
    }
    if (e->def != NULL)
        bg_strbuf_printf(b, "; default: %s", e->def);
    else if (is_required(e))
        bg_strbuf_puts(b, "; required");
    else if (e->absent[0] != '\0')
        bg_strbuf_printf(b, "; default: %s", e->absent);
}

void bg_settings_usage(FILE *f)
{
    fprintf(f, "usage: bayesguardd --policies DIR --plugins DIR [--listen ADDR ...] [SETTING ...]\n"
               "       bayesguardd --check --policies DIR --plugins DIR\n"
               "       bayesguardd --config FILE [SETTING ...]\n"
               "\n"
               "Settings: the flag, then its --config file key, type and default.\n\n");
    char mem[512];
    bg_strbuf b;
    bg_strbuf_init_on(&b, mem, sizeof mem);
    for (size_t i = 0; i < BG_SETTING_COUNT; i++) {
        const bg_setting *e = &bg_settings_table[i];
        bg_strbuf_reset(&b);
        put_flag(&b, e);
        fprintf(f, "  %s\n", b.p);
        bg_strbuf_reset(&b);
        put_facts(&b, e);
        put_wrapped(f, b.p, 6);
        put_wrapped(f, e->help, 6);
    }
    bg_strbuf_close(&b);
    fprintf(f, "\n"
               "Signals: SIGTERM/SIGINT drain and exit 0 (a second one cancels what is still in\n"
               "flight); SIGHUP reloads the policies and reopens the decision log.\n"
               "See docs/CONFIG.md.\n");
}
