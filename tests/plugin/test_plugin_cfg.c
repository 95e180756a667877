/*
 * test_plugin_cfg.c — YAML trees (cfg.c) and the typed config map
 * (host->cfg_apply): positions, multi-document streams, aliases, duplicate
 * keys, null handling, the model_key hash, and every cfg_apply error with
 * its exact message and file:line:column; open range bounds (ABI 1.1) at
 * both ends, for numbers, integers and lists, with the interval printed as
 * it is checked; and bg_cfg_entry_describe, what `bayesguard check` shows.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"

#define FIX BG_FIXTURE_DIR

static bg_cfg_doc *parse(const char *text, const char *name)
{
    bg_cfg_doc *d = NULL;
    bg_err err;
    bg_err_clear(&err);
    int rc = bg_cfg_parse_string(text, strlen(text), name, &d, &err);
    if (rc)
        fprintf(stderr, "parse: %s\n", err.msg);
    CHECK_INT(rc, BG_OK);
    return d;
}

static void expect_parse_error(const char *text, const char *want)
{
    bg_cfg_doc *d = (bg_cfg_doc *)1;
    bg_err err;
    CHECK_INT(bg_cfg_parse_string(text, strlen(text), "e.yaml", &d, &err), BG_ECONFIG);
    CHECK(d == NULL);
    CHECK_STR(err.msg, want);
}

static void test_tree(void)
{
    bg_cfg_doc *d = parse("a: 1\nb:\n  - x\n  - 'y'\n---\nc: {k: ~, j: \"\"}\n", "t.yaml");
    if (!d)
        return;
    CHECK_INT(bg_cfg_doc_count(d), 2);
    const bg_cfg_node *r0 = bg_cfg_doc_root(d, 0), *r1 = bg_cfg_doc_root(d, 1);
    CHECK_INT(bg_cfg_type_of(r0), BG_CFG_MAP);
    CHECK_INT(bg_cfg_len(r0), 2);
    CHECK_STR(bg_cfg_key(r0, 1), "b");
    CHECK_STR(bg_cfg_scalar(bg_cfg_get(r0, "a")), "1");
    const bg_cfg_node *b = bg_cfg_get(r0, "b");
    CHECK_INT(bg_cfg_type_of(b), BG_CFG_SEQ);
    CHECK_INT(bg_cfg_len(b), 2);
    CHECK_INT(bg_cfg_line(bg_cfg_item(b, 1)), 4);
    CHECK_INT(bg_cfg_column(bg_cfg_item(b, 1)), 5);
    CHECK_STR(bg_cfg_file(bg_cfg_item(b, 1)), "t.yaml");
    CHECK_STR(bg_cfg_scalar(bg_cfg_item(b, 1)), "y");
    CHECK(bg_cfg_plain(bg_cfg_item(b, 0)) && !bg_cfg_plain(bg_cfg_item(b, 1)));
    CHECK_INT(bg_cfg_line(bg_cfg_key_node(r0, 1)), 2);
    const bg_cfg_node *c = bg_cfg_get(r1, "c");
    CHECK_INT(bg_cfg_line(c), 6);
    CHECK_INT(bg_cfg_type_of(bg_cfg_get(c, "k")), BG_CFG_NULL); /* ~ is null */
    CHECK_STR(bg_cfg_scalar(bg_cfg_get(c, "j")), "");           /* "" is a string */
    CHECK(bg_cfg_get(c, "missing") == NULL);
    CHECK(bg_cfg_scalar(c) == NULL);
    CHECK(bg_cfg_doc_root(d, 2) == NULL);
    bg_cfg_doc_destroy(d);

    d = parse("base: &b {k: 1, m: [2]}\nuse: *b\n", "a.yaml");
    if (d) {
        const bg_cfg_node *u = bg_cfg_get(bg_cfg_doc_root(d, 0), "use");
        CHECK_STR(bg_cfg_scalar(bg_cfg_get(u, "k")), "1");
        CHECK_STR(bg_cfg_scalar(bg_cfg_item(bg_cfg_get(u, "m"), 0)), "2");
        bg_cfg_doc_destroy(d);
    }
    d = parse("", "empty.yaml");
    CHECK_INT(bg_cfg_doc_count(d), 0);
    bg_cfg_doc_destroy(d);

    expect_parse_error("a: 1\nb: 2\na: 3\n", "e.yaml:3:1: duplicate key 'a' (first at line 1)");
    expect_parse_error("a: [1, 2\nb: 3\n",
                       "e.yaml:2:2: invalid YAML: did not find expected ',' or ']' while "
                       "parsing a flow sequence");
    expect_parse_error("[1]: x\n", "e.yaml:1:1: map key must be a plain string");
}

static void test_hash(void)
{
    bg_cfg_doc *a = parse("m: {n: 4, rate: 0.1}\n", "a.yaml");
    bg_cfg_doc *b = parse("# moved\n\nm:\n  n: 4\n  rate: 0.1\n", "b.yaml");
    bg_cfg_doc *c = parse("m: {n: 4, rate: 0.2}\n", "c.yaml");
    bg_cfg_doc *e = parse("m: {n: 4, rate: [0.1]}\n", "e.yaml");
    if (a && b && c && e) {
        uint64_t ha = bg_cfg_hash(bg_cfg_get(bg_cfg_doc_root(a, 0), "m"), 7);
        uint64_t hb = bg_cfg_hash(bg_cfg_get(bg_cfg_doc_root(b, 0), "m"), 7);
        uint64_t hc = bg_cfg_hash(bg_cfg_get(bg_cfg_doc_root(c, 0), "m"), 7);
        uint64_t he = bg_cfg_hash(bg_cfg_get(bg_cfg_doc_root(e, 0), "m"), 7);
        CHECK(ha == hb); /* positions and layout do not matter */
        CHECK(ha != hc); /* values do */
        CHECK(ha != he); /* structure does */
        CHECK(ha != bg_cfg_hash(bg_cfg_get(bg_cfg_doc_root(a, 0), "m"), 8)); /* seed does */
    }
    bg_cfg_doc_destroy(a);
    bg_cfg_doc_destroy(b);
    bg_cfg_doc_destroy(c);
    bg_cfg_doc_destroy(e);
}

/* Create fx_model with the `config:` of the YAML text; returns create's rc,
 * copies the recorded errors into errs and the instance's count into *n. */
static int create_model(bg_plugin_host *h, bg_plugin *m, const char *yaml, char *errs, size_t len,
                        uint64_t *n)
{
    bg_cfg_doc *d = parse(yaml, "c.yaml");
    if (!d)
        return -100;
    const bg_cfg_node *model = bg_cfg_get(bg_cfg_doc_root(d, 0), "model");
    bg_plugin_services *s = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_services_create(h, m, &s, &err), BG_OK);
    bg_plugin_services_set_section(s, model);
    void *inst = NULL;
    int rc = m->desc->vt.hypothesis->create(bg_plugin_services_host(s), bg_cfg_get(model, "config"),
                                            &inst);
    snprintf(errs, len, "%s", bg_plugin_services_errors(s));
    if (rc == BG_PLUGIN_OK) {
        *n = m->desc->vt.hypothesis->count(inst);
        double harm;
        uint64_t last = *n - 1;
        bg_action act = {.tool = "t"};
        m->desc->vt.hypothesis->harm(inst, &act, NULL, 0, &last, 1, &harm);
        *n = *n * 1000 + (uint64_t)(harm * 100 + 0.5); /* count and rate in one */
        m->desc->vt.hypothesis->destroy(inst);
    }
    bg_plugin_services_destroy(s);
    bg_cfg_doc_destroy(d);
    return rc;
}

static void test_apply_plugin(void)
{
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &h, &err), BG_OK);
    if (!h)
        return;
    bg_plugin *m = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_model", BG_PLUGIN_KIND_HYPOTHESIS, &m, &err), BG_OK);
    if (!m) {
        bg_plugin_host_destroy(h);
        return;
    }
    char errs[4096];
    uint64_t n = 0;
    /* Defaults: n = 4, rate = 0.1 -> harm(last) = 0.1. */
    CHECK_INT(create_model(h, m, "model: {plugin: fx_model}\n", errs, sizeof errs, &n), 0);
    CHECK_INT(n, 4 * 1000 + 10);
    CHECK_INT(create_model(h, m, "model:\n  config: {n: 10, rate: 0.5, mode: slow}\n", errs,
                           sizeof errs, &n),
              0);
    CHECK_INT(n, 10 * 1000 + 50);
    CHECK_STR(errs, "");
    /* Every error, with positions, in one pass. */
    const char *bad = "model:\n"
                      "  config:\n"
                      "    n: abc\n"
                      "    rate: 2\n"
                      "    mode: medium\n"
                      "    flag: maybe\n"
                      "    tag: this-tag-is-far-too-long\n"
                      "    weights: [1, x, 30]\n"
                      "    extra: 1\n";
    CHECK_INT(create_model(h, m, bad, errs, sizeof errs, &n), BG_PLUGIN_ECONFIG);
    CHECK_STR(errs,
              "c.yaml:9:5: plugin fx_model: unknown key 'extra'; allowed keys: n, rate, mode, "
              "flag, tag, weights\n"
              "c.yaml:3:8: plugin fx_model: key 'n': expected an integer, got 'abc'\n"
              "c.yaml:4:11: plugin fx_model: key 'rate': 2 is out of range [0, 1]\n"
              "c.yaml:5:11: plugin fx_model: key 'mode': expected one of fast|slow, got "
              "'medium'\n"
              "c.yaml:6:11: plugin fx_model: key 'flag': expected true or false, got 'maybe'\n"
              "c.yaml:7:10: plugin fx_model: key 'tag': string is 24 bytes, at most 15 "
              "allowed\n"
              "c.yaml:8:18: plugin fx_model: key 'weights': expected a finite number, got 'x'\n"
              "c.yaml:8:21: plugin fx_model: key 'weights': 30 is out of range [-10, 10]");
    /* The plugin's own cross-key check, positioned at the key's value. */
    CHECK_INT(create_model(h, m, "model:\n  config: {n: 200, mode: slow}\n", errs, sizeof errs, &n),
              BG_PLUGIN_ECONFIG);
    CHECK_STR(errs, "c.yaml:2:15: plugin fx_model: n must be at most 100 in slow mode, got 200");
    CHECK_INT(create_model(h, m, "model:\n  config: [1, 2]\n", errs, sizeof errs, &n),
              BG_PLUGIN_ECONFIG);
    CHECK_STR(errs, "c.yaml:2:11: plugin fx_model: config must be a map of keys, got a list; "
                    "allowed keys: n, rate, mode, flag, tag, weights");
    CHECK_INT(create_model(h, m, "model:\n  config: {weights: 3, n: 1.5}\n", errs, sizeof errs, &n),
              BG_PLUGIN_ECONFIG);
    CHECK_STR(errs, "c.yaml:2:27: plugin fx_model: key 'n': expected an integer, got '1.5'\n"
                    "c.yaml:2:21: plugin fx_model: key 'weights': expected a list of numbers "
                    "like [0.1, 0.2]");
    bg_plugin_unref(m);
    bg_plugin_host_destroy(h);
}

/* A table of the test's own, for the values written and required keys. */
typedef struct own_cfg {
    double d;
    int64_t i;
    int b;
    char s[8];
    double v[4];
    size_t nv;
    int e;
} own_cfg;

static const bg_cfg_entry own_table[] = {
    {.key = "d",
     .type = BG_CFGV_DOUBLE,
     .def = NULL,
     .offset = offsetof(own_cfg, d),
     .min = 1,
     .max = 0,
     .desc = "a required number"},
    {.key = "i",
     .type = BG_CFGV_INT,
     .def = "-3",
     .offset = offsetof(own_cfg, i),
     .min = 1,
     .max = 0},
    {.key = "b", .type = BG_CFGV_BOOL, .def = "true", .offset = offsetof(own_cfg, b)},
    {.key = "s", .type = BG_CFGV_STRING, .def = "abc", .offset = offsetof(own_cfg, s), .size = 8},
    {.key = "v",
     .type = BG_CFGV_DOUBLES,
     .def = "[0.5, 1e-3]",
     .offset = offsetof(own_cfg, v),
     .size = 4,
     .count_offset = offsetof(own_cfg, nv),
     .min = 1,
     .max = 0},
    {.key = "e",
     .type = BG_CFGV_ENUM,
     .def = "z",
     .offset = offsetof(own_cfg, e),
     .choices = "x|y|z"},
};

static void test_apply_table(void)
{
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &h, &err), BG_OK);
    bg_plugin *m = NULL;
    if (h)
        bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &m, &err);
    if (!m) {
        bg_plugin_host_destroy(h);
        CHECK(0);
        return;
    }
    bg_cfg_doc *d = parse("x: {d: 2.5e3}\ny: {i: 7, b: false, s: hello, v: [], e: y}\n"
                          "z: {i: 9999999999999999999999}\n",
                          "o.yaml");
    const bg_cfg_node *r = bg_cfg_doc_root(d, 0);
    size_t nt = sizeof own_table / sizeof own_table[0];
    bg_plugin_services *s = NULL;
    CHECK_INT(bg_plugin_services_create(h, m, &s, &err), BG_OK);
    const bg_host *host = bg_plugin_services_host(s);
    own_cfg o;
    memset(&o, 0, sizeof o);
    CHECK_INT(host->cfg_apply(host->host_ctx, bg_cfg_get(r, "x"), own_table, nt, &o), 0);
    CHECK_NEAR(o.d, 2500, 0);
    CHECK_INT(o.i, -3);
    CHECK_INT(o.b, 1);
    CHECK_STR(o.s, "abc");
    CHECK_INT(o.nv, 2);
    CHECK_NEAR(o.v[1], 1e-3, 0);
    CHECK_INT(o.e, 2);
    CHECK_INT(host->cfg_apply(host->host_ctx, bg_cfg_get(r, "y"), own_table, nt, &o),
              BG_PLUGIN_ECONFIG);
    CHECK_INT(o.i, 7);
    CHECK_INT(o.b, 0);
    CHECK_STR(o.s, "hello");
    CHECK_INT(o.nv, 0);
    CHECK_INT(o.e, 1);
    CHECK_STR(bg_plugin_services_errors(s),
              "o.yaml:2:4: plugin fx_est: missing required key 'd' (a required number)");
    bg_plugin_services_destroy(s);
    CHECK_INT(bg_plugin_services_create(h, m, &s, &err), BG_OK);
    host = bg_plugin_services_host(s);
    CHECK_INT(host->cfg_apply(host->host_ctx, bg_cfg_get(r, "z"), own_table, nt, &o),
              BG_PLUGIN_ECONFIG);
    CHECK_STR(bg_plugin_services_errors(s),
              "o.yaml:3:4: plugin fx_est: missing required key 'd' (a required number)\n"
              "o.yaml:3:8: plugin fx_est: key 'i': expected an integer, got "
              "'9999999999999999999999'");
    bg_plugin_services_destroy(s);
    bg_cfg_doc_destroy(d);
    bg_plugin_unref(m);
    bg_plugin_host_destroy(h);
}

/* A sink that keeps the last message. */
static char last_msg[512];
static int n_msgs;

static int keep_msg(void *ctx, const bg_cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int keep_msg(void *ctx, const bg_cfg_node *n, const char *fmt, ...)
{
    (void)ctx;
    (void)n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    n_msgs++;
    return BG_PLUGIN_ECONFIG;
}

typedef struct open_cfg {
    double p;
    int64_t k;
    double v[2];
    size_t nv;
    double untouched; /* not in the table: cfg_apply never writes it */
} open_cfg;

static const bg_cfg_entry open_table[] = {
    {.key = "p",
     .type = BG_CFGV_DOUBLE | BG_CFGV_MIN_OPEN,
     .def = "1",
     .offset = offsetof(open_cfg, p),
     .min = 0,
     .max = 1,
     .desc = "a probability above 0"},
    {.key = "k",
     .type = BG_CFGV_INT | BG_CFGV_MIN_OPEN | BG_CFGV_MAX_OPEN,
     .def = "5",
     .offset = offsetof(open_cfg, k),
     .min = 0,
     .max = 10,
     .desc = "strictly between"},
    {.key = "v",
     .type = BG_CFGV_DOUBLES | BG_CFGV_MAX_OPEN,
     .def = "[]",
     .offset = offsetof(open_cfg, v),
     .size = 2,
     .count_offset = offsetof(open_cfg, nv),
     .min = 0,
     .max = 1,
     .desc = "below 1"},
};

/* Apply "{yaml}" to open_table: the status, the last message in last_msg. */
static int apply_open(const char *yaml, open_cfg *o)
{
    bg_cfg_doc *d = parse(yaml, "open.yaml");
    last_msg[0] = '\0';
    n_msgs = 0;
    int rc = bg_cfg_apply_table(keep_msg, NULL, bg_cfg_doc_root(d, 0), open_table,
                                sizeof open_table / sizeof open_table[0], "", NULL, o);
    bg_cfg_doc_destroy(d);
    return rc;
}

static void test_open_bounds(void)
{
    open_cfg o;
    memset(&o, 0, sizeof o);
    o.untouched = 42;
    /* Inside, and each closed end included. */
    CHECK_INT(apply_open("{p: 1, k: 9, v: [0, 0.999]}", &o), BG_PLUGIN_OK);
    CHECK_NEAR(o.untouched, 42, 0); /* cfg_apply does not zero its target */
    CHECK_NEAR(o.p, 1, 0);
    CHECK_INT(o.k, 9);
    CHECK_INT(o.nv, 2);
    CHECK_INT(apply_open("{p: 1e-300}", &o), BG_PLUGIN_OK); /* just above the open end */
    CHECK(o.p > 0);
    /* Each open end excluded, and printed as such. */
    CHECK_INT(apply_open("{p: 0}", &o), BG_PLUGIN_ECONFIG);
    CHECK_STR(last_msg, "key 'p': 0 is out of range (0, 1]");
    CHECK(o.p > 0 && o.p < 1e-299); /* an invalid value is not written */
    CHECK_INT(o.k, 5);              /* the valid ones (here a default) are */
    CHECK_INT(apply_open("{p: 1.5}", &o), BG_PLUGIN_ECONFIG);
    CHECK_STR(last_msg, "key 'p': 1.5 is out of range (0, 1]");
    CHECK_INT(apply_open("{k: 0}", &o), BG_PLUGIN_ECONFIG);
    CHECK_STR(last_msg, "key 'k': 0 is out of range (0, 10)");
    CHECK_INT(apply_open("{k: 10}", &o), BG_PLUGIN_ECONFIG);
    CHECK_STR(last_msg, "key 'k': 10 is out of range (0, 10)");
    CHECK_INT(apply_open("{v: [0.5, 1]}", &o), BG_PLUGIN_ECONFIG);
    CHECK_STR(last_msg, "key 'v': 1 is out of range [0, 1)");
    CHECK_INT(n_msgs, 1);
    /* What `check` prints for each entry. */
    char line[256];
    bg_cfg_entry_describe(&open_table[0], line, sizeof line);
    CHECK_STR(line, "number in (0, 1], default 1");
    bg_cfg_entry_describe(&open_table[1], line, sizeof line);
    CHECK_STR(line, "integer in (0, 10), default 5");
    bg_cfg_entry_describe(&open_table[2], line, sizeof line);
    CHECK_STR(line, "list of at most 2 numbers in [0, 1), default []");
    bg_cfg_entry_describe(&own_table[0], line, sizeof line);
    CHECK_STR(line, "number, required");
    bg_cfg_entry_describe(&own_table[3], line, sizeof line);
    CHECK_STR(line, "string of at most 7 bytes, default abc");
    bg_cfg_entry_describe(&own_table[5], line, sizeof line);
    CHECK_STR(line, "one of x|y|z, default z");
    bg_cfg_entry_describe(&own_table[2], line, sizeof line);
    CHECK_STR(line, "true|false, default true");
}

int main(void)
{
    test_tree();
    test_hash();
    test_apply_plugin();
    test_apply_table();
    test_open_bounds();
    CHECK_DONE("test_plugin_cfg");
}
