/*
 * cli_test_file.c — read a policy unit test file (cli_test.h) into a
 * bg_test_file: every key checked, unknown keys refused with the allowed
 * ones listed, every error "file:line:col: what is wrong, what is
 * expected" at the offending node.
 *
 *   policy: NAME                 the policy this file tests (required)
 *   peer: {uid: N} | {identity: S} | anonymous   default caller of every step
 *   cases:                        (required, at least one)
 *     - name: TEXT                (required, unique in the file)
 *       peer: ...                 the case's caller
 *       steps:                    (required, at least one)
 *         - observe: {tool, arguments | arguments_json, features,
 *                     attributes, session, agent, peer, policy,
 *                     harmed (required), value, repeat, error}
 *         - expect:  {tool, arguments | arguments_json, features,
 *                     attributes, session, agent, peer, policy, decision,
 *                     harm_bound, posterior_predictive, cautious: {id,
 *                     label, posterior, harm}, bound_kind,
 *                     plausible_set_size, observations, shadow, error}
 *
 * Bounds: at most MAX_ITEMS cases in a file, features and attributes in a
 * step (the unique-name check is quadratic in the cases).
 *
 * `arguments` is any YAML value, sent as JSON: plain scalars that read as
 * numbers, true/false or null become those, everything else (and every
 * quoted scalar) a string. A bound (harm_bound, ...) is a number (equal)
 * or a map of ge/gt/le/lt. Main thread only; the document is kept (the
 * steps borrow its strings) until bg_test_file_free.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_test.h"

#define MAX_REPEAT 1000000L
#define MAX_ITEMS 4096

static int at(bg_err *err, const bg_cfg_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int at(bg_err *err, const bg_cfg_node *n, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bg_err_set(err, BG_ECONFIG, "%s:%d:%d: %s", bg_cfg_file(n), bg_cfg_line(n),
                      bg_cfg_column(n), msg);
}

static const char *type_name(const bg_cfg_node *n)
{
    switch (bg_cfg_type_of(n)) {
    case BG_CFG_SCALAR:
        return "a scalar";
    case BG_CFG_SEQ:
        return "a list";
    case BG_CFG_MAP:
        return "a map";
    default:
        return "nothing";
    }
}

/* Every key of map n is one of `allowed` (NULL-terminated). */
static int keys_in(const bg_cfg_node *n, const char *what, const char *const *allowed, bg_err *err)
{
    for (size_t i = 0; i < bg_cfg_len(n); i++) {
        const char *k = bg_cfg_key(n, i);
        size_t j = 0;
        while (allowed[j] && strcmp(allowed[j], k) != 0)
            j++;
        if (allowed[j])
            continue;
        char list[512];
        size_t used = 0;
        list[0] = '\0';
        for (j = 0; allowed[j] && used < sizeof list; j++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "",
                                     allowed[j]);
        return at(err, bg_cfg_key_node(n, i), "unknown key '%.60s' in %s; allowed: %s", k, what,
                  list);
    }
    return BG_OK;
}

static int want(const bg_cfg_node *n, bg_cfg_type t, const char *what, bg_err *err)
{
    if (bg_cfg_type_of(n) == t)
        return BG_OK;
    const char *exp = t == BG_CFG_MAP ? "a map" : t == BG_CFG_SEQ ? "a list" : "a scalar";
    return at(err, n, "%s: expected %s, got %s", what, exp, type_name(n));
}

static int get_string(const bg_cfg_node *n, const char *what, const char **out, bg_err *err)
{
    if (want(n, BG_CFG_SCALAR, what, err) != BG_OK)
        return BG_ECONFIG;
    *out = bg_cfg_scalar(n);
    return BG_OK;
}

static int get_double(const bg_cfg_node *n, const char *what, double *out, bg_err *err)
{
    if (want(n, BG_CFG_SCALAR, what, err) != BG_OK)
        return BG_ECONFIG;
    const char *s = bg_cfg_scalar(n);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return at(err, n, "%s: expected a finite number, got '%.60s'", what, s);
    *out = v;
    return BG_OK;
}

static int get_long(const bg_cfg_node *n, const char *what, long lo, long hi, long *out,
                    bg_err *err)
{
    if (want(n, BG_CFG_SCALAR, what, err) != BG_OK)
        return BG_ECONFIG;
    const char *s = bg_cfg_scalar(n);
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return at(err, n, "%s: expected an integer from %ld to %ld, got '%.60s'", what, lo, hi, s);
    *out = v;
    return BG_OK;
}

static int get_bool(const bg_cfg_node *n, const char *what, int *out, bg_err *err)
{
    if (want(n, BG_CFG_SCALAR, what, err) != BG_OK)
        return BG_ECONFIG;
    const char *s = bg_cfg_scalar(n);
    if (!strcmp(s, "true") || !strcmp(s, "false")) {
        *out = s[0] == 't';
        return BG_OK;
    }
    return at(err, n, "%s: expected true or false, got '%.60s'", what, s);
}

/* A bound: a number (==) or {ge, gt, le, lt}. */
static int get_range(const bg_cfg_node *n, const char *what, bg_test_range *r, bg_err *err)
{
    memset(r, 0, sizeof *r);
    r->set = 1;
    if (bg_cfg_type_of(n) == BG_CFG_SCALAR) {
        r->has_ge = r->has_le = 1;
        if (get_double(n, what, &r->ge, err) != BG_OK)
            return BG_ECONFIG;
        r->le = r->ge;
        return BG_OK;
    }
    if (bg_cfg_type_of(n) != BG_CFG_MAP || bg_cfg_len(n) == 0)
        return at(err, n,
                  "%s: expected a number or a map of ge, gt, le, lt (e.g. {ge: 0.3, le: "
                  "0.5}), got %s",
                  what, type_name(n));
    static const char *const keys[] = {"ge", "gt", "le", "lt", NULL};
    if (keys_in(n, what, keys, err) != BG_OK)
        return BG_ECONFIG;
    const bg_cfg_node *v;
    if ((v = bg_cfg_get(n, "ge")) && (r->has_ge = 1, get_double(v, "ge", &r->ge, err) != BG_OK))
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "gt")) && (r->has_gt = 1, get_double(v, "gt", &r->gt, err) != BG_OK))
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "le")) && (r->has_le = 1, get_double(v, "le", &r->le, err) != BG_OK))
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "lt")) && (r->has_lt = 1, get_double(v, "lt", &r->lt, err) != BG_OK))
        return BG_ECONFIG;
    return BG_OK;
}

static int get_peer(const bg_cfg_node *n, bg_test_peer *p, bg_err *err)
{
    static const char *const keys[] = {"uid", "identity", NULL};
    if (bg_cfg_type_of(n) == BG_CFG_SCALAR && !strcmp(bg_cfg_scalar(n), "anonymous")) {
        memset(p, 0, sizeof *p); /* a listener that cannot tell who calls */
        p->set = 1;
        return BG_OK;
    }
    if (bg_cfg_type_of(n) != BG_CFG_MAP)
        return at(err, n, "peer: expected {uid: N}, {identity: S} or anonymous, got %s",
                  type_name(n));
    if (want(n, BG_CFG_MAP, "peer", err) != BG_OK || keys_in(n, "peer", keys, err) != BG_OK)
        return BG_ECONFIG;
    const bg_cfg_node *u = bg_cfg_get(n, "uid"), *id = bg_cfg_get(n, "identity");
    if (!!u == !!id)
        return at(err, n,
                  "peer: give exactly one of uid (a unix-socket caller) or identity (an mTLS "
                  "caller's SPIFFE ID or SAN)");
    memset(p, 0, sizeof *p);
    p->set = 1;
    if (u) {
        long uid;
        if (get_long(u, "peer.uid", 0, 4294967294L, &uid, err) != BG_OK)
            return BG_ECONFIG;
        p->has_uid = 1;
        p->uid = (uint32_t)uid;
        snprintf(p->identity, sizeof p->identity, "uid:%lu", (unsigned long)uid);
        return BG_OK;
    }
    const char *s;
    if (get_string(id, "peer.identity", &s, err) != BG_OK)
        return BG_ECONFIG;
    if (!*s || strlen(s) >= sizeof p->identity)
        return at(err, id, "peer.identity: expected 1 to %zu bytes", sizeof p->identity - 1);
    snprintf(p->identity, sizeof p->identity, "%s", s);
    return BG_OK;
}

/* ------------------------------------------------------ YAML -> JSON */

static json_t *scalar_json(const bg_cfg_node *n)
{
    const char *s = bg_cfg_scalar(n);
    if (!bg_cfg_plain(n))
        return json_string(s);
    if (!strcmp(s, "true"))
        return json_true();
    if (!strcmp(s, "false"))
        return json_false();
    if (!strcmp(s, "null") || !strcmp(s, "~") || !*s)
        return json_null();
    char *end = NULL;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0)
        return json_integer(i);
    errno = 0;
    double d = strtod(s, &end);
    if (*end == '\0' && errno == 0 && isfinite(d))
        return json_real(d);
    return json_string(s);
}

static json_t *to_json(const bg_cfg_node *n)
{
    json_t *out = NULL;
    switch (bg_cfg_type_of(n)) {
    case BG_CFG_SCALAR:
        return scalar_json(n);
    case BG_CFG_SEQ:
        out = json_array();
        for (size_t i = 0; out && i < bg_cfg_len(n); i++) {
            json_t *x = to_json(bg_cfg_item(n, i));
            if (!x || json_array_append_new(out, x) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    case BG_CFG_MAP:
        out = json_object();
        for (size_t i = 0; out && i < bg_cfg_len(n); i++) {
            json_t *x = to_json(bg_cfg_value(n, i));
            if (!x || json_object_set_new(out, bg_cfg_key(n, i), x) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    default:
        return json_null();
    }
}

/* ------------------------------------------------------------ steps */

static const char *const OBSERVE_KEYS[] = {
    "tool", "arguments", "arguments_json", "features", "attributes", "session", "agent",
    "peer", "policy",    "harmed",         "value",    "repeat",     "error",   NULL};
static const char *const EXPECT_KEYS[] = {"tool",
                                          "arguments",
                                          "arguments_json",
                                          "features",
                                          "attributes",
                                          "session",
                                          "agent",
                                          "peer",
                                          "policy",
                                          "decision",
                                          "harm_bound",
                                          "posterior_predictive",
                                          "cautious",
                                          "bound_kind",
                                          "plausible_set_size",
                                          "observations",
                                          "shadow",
                                          "error",
                                          NULL};

/* The action and caller fields both kinds share. */
static int action_fields(const bg_cfg_node *n, bg_test_step *s, bg_err *err)
{
    const bg_cfg_node *v;
    if (!(v = bg_cfg_get(n, "tool")))
        return at(err, n, "missing 'tool' (the tool name selects the policy, as in Evaluate)");
    if (get_string(v, "tool", &s->tool, err) != BG_OK)
        return BG_ECONFIG;
    if (!*s->tool)
        return at(err, v, "tool: expected a tool name, got an empty string");
    const bg_cfg_node *a = bg_cfg_get(n, "arguments"), *aj = bg_cfg_get(n, "arguments_json");
    if (a && aj)
        return at(err, aj, "give arguments (YAML) or arguments_json (text), not both");
    if (a) {
        json_t *j = to_json(a);
        s->args = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(j);
        if (!s->args)
            return at(err, a, "arguments: out of memory");
    } else if (aj) {
        const char *t;
        if (get_string(aj, "arguments_json", &t, err) != BG_OK)
            return BG_ECONFIG;
        if (!(s->args = strdup(t)))
            return at(err, aj, "arguments_json: out of memory");
    }
    if ((v = bg_cfg_get(n, "features"))) {
        if (want(v, BG_CFG_SEQ, "features", err) != BG_OK)
            return BG_ECONFIG;
        size_t k = bg_cfg_len(v);
        if (k > MAX_ITEMS)
            return at(err, v, "features: at most %d", MAX_ITEMS);
        if (k && !(s->features = calloc(k, sizeof *s->features)))
            return at(err, v, "features: out of memory");
        for (size_t i = 0; i < k; i++, s->n_features++)
            if (get_double(bg_cfg_item(v, i), "features[]", &s->features[i], err) != BG_OK)
                return BG_ECONFIG;
    }
    if ((v = bg_cfg_get(n, "attributes"))) {
        if (want(v, BG_CFG_MAP, "attributes", err) != BG_OK)
            return BG_ECONFIG;
        size_t k = bg_cfg_len(v);
        if (k > MAX_ITEMS)
            return at(err, v, "attributes: at most %d", MAX_ITEMS);
        if (k && !(s->attrs = calloc(k, sizeof *s->attrs)))
            return at(err, v, "attributes: out of memory");
        for (size_t i = 0; i < k; i++, s->n_attrs++) {
            s->attrs[i].key = bg_cfg_key(v, i);
            if (get_string(bg_cfg_value(v, i), "attributes value", &s->attrs[i].value, err) !=
                BG_OK)
                return BG_ECONFIG;
        }
    }
    if ((v = bg_cfg_get(n, "session")) && get_string(v, "session", &s->session, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "agent")) && get_string(v, "agent", &s->agent, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "policy")) && get_string(v, "policy", &s->policy, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "peer")) && get_peer(v, &s->peer, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "error"))) {
        if (get_string(v, "error", &s->error, err) != BG_OK)
            return BG_ECONFIG;
        if (!*s->error)
            return at(err, v, "error: expected the text the step's refusal must contain");
    }
    return BG_OK;
}

static int observe_fields(const bg_cfg_node *n, bg_test_step *s, bg_err *err)
{
    const bg_cfg_node *v;
    if (!(v = bg_cfg_get(n, "harmed")))
        return at(err, n, "observe: missing 'harmed' (true or false: the outcome observed)");
    if (get_bool(v, "harmed", &s->harmed, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "value"))) {
        s->has_value = 1;
        if (get_double(v, "value", &s->value, err) != BG_OK)
            return BG_ECONFIG;
    }
    s->repeat = 1;
    if ((v = bg_cfg_get(n, "repeat")) &&
        get_long(v, "repeat", 1, MAX_REPEAT, &s->repeat, err) != BG_OK)
        return BG_ECONFIG;
    return BG_OK;
}

static int cautious_fields(const bg_cfg_node *n, bg_test_step *s, bg_err *err)
{
    static const char *const keys[] = {"id", "label", "posterior", "harm", NULL};
    if (want(n, BG_CFG_MAP, "cautious", err) != BG_OK || keys_in(n, "cautious", keys, err) != BG_OK)
        return BG_ECONFIG;
    const bg_cfg_node *v;
    if ((v = bg_cfg_get(n, "id"))) {
        long id;
        if (get_long(v, "cautious.id", 0, 0x7fffffffL, &id, err) != BG_OK)
            return BG_ECONFIG;
        s->has_cautious_id = 1;
        s->cautious_id = (uint64_t)id;
    }
    if ((v = bg_cfg_get(n, "label")) &&
        get_string(v, "cautious.label", &s->cautious_label, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "posterior")) &&
        get_range(v, "cautious.posterior", &s->cautious_posterior, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "harm")) &&
        get_range(v, "cautious.harm", &s->cautious_harm, err) != BG_OK)
        return BG_ECONFIG;
    return BG_OK;
}

static int expect_fields(const bg_cfg_node *n, bg_test_step *s, bg_err *err)
{
    const bg_cfg_node *v;
    if ((v = bg_cfg_get(n, "decision"))) {
        const char *d;
        if (get_string(v, "decision", &d, err) != BG_OK)
            return BG_ECONFIG;
        s->has_decision = 1;
        if (!strcmp(d, "ALLOW"))
            s->decision = BG_DECISION_ALLOW;
        else if (!strcmp(d, "DENY"))
            s->decision = BG_DECISION_DENY;
        else if (!strcmp(d, "ESCALATE"))
            s->decision = BG_DECISION_ESCALATE;
        else
            return at(err, v, "decision: expected ALLOW, DENY or ESCALATE, got '%.60s'", d);
    }
    struct {
        const char *key;
        bg_test_range *r;
    } ranges[] = {{"harm_bound", &s->harm_bound},
                  {"posterior_predictive", &s->posterior_predictive},
                  {"plausible_set_size", &s->plausible_set_size},
                  {"observations", &s->observations}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if ((v = bg_cfg_get(n, ranges[i].key)) &&
            get_range(v, ranges[i].key, ranges[i].r, err) != BG_OK)
            return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "cautious")) && cautious_fields(v, s, err) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "bound_kind"))) {
        const char *k;
        if (get_string(v, "bound_kind", &k, err) != BG_OK)
            return BG_ECONFIG;
        if (strcmp(k, "EXACT") && strcmp(k, "SAMPLED"))
            return at(err, v, "bound_kind: expected EXACT or SAMPLED, got '%.60s'", k);
        s->has_bound_kind = 1;
        s->sampled = k[0] == 'S';
    }
    if ((v = bg_cfg_get(n, "shadow")) &&
        (s->has_shadow = 1, get_bool(v, "shadow", &s->shadow, err)) != BG_OK)
        return BG_ECONFIG;
    if ((v = bg_cfg_get(n, "error"))) {
        if (s->has_decision || s->harm_bound.set || s->posterior_predictive.set ||
            s->plausible_set_size.set || s->observations.set || s->has_cautious_id ||
            s->cautious_label || s->cautious_posterior.set || s->cautious_harm.set ||
            s->has_bound_kind || s->has_shadow)
            return at(err, v,
                      "error: a step that expects an error has no verdict to check; "
                      "drop the verdict keys or the error");
    }
    return BG_OK;
}

static int parse_step(const bg_cfg_node *n, bg_test_step *s, bg_err *err)
{
    if (want(n, BG_CFG_MAP, "step", err) != BG_OK)
        return BG_ECONFIG;
    if (bg_cfg_len(n) != 1 ||
        (strcmp(bg_cfg_key(n, 0), "observe") && strcmp(bg_cfg_key(n, 0), "expect")))
        return at(err, n, "a step is one key, observe: {...} or expect: {...}");
    const bg_cfg_node *body = bg_cfg_value(n, 0);
    s->kind = bg_cfg_key(n, 0)[0] == 'o' ? BG_TEST_OBSERVE : BG_TEST_EXPECT;
    s->line = bg_cfg_line(n);
    s->column = bg_cfg_column(n);
    const char *what = s->kind == BG_TEST_OBSERVE ? "observe" : "expect";
    if (want(body, BG_CFG_MAP, what, err) != BG_OK ||
        keys_in(body, what, s->kind == BG_TEST_OBSERVE ? OBSERVE_KEYS : EXPECT_KEYS, err) !=
            BG_OK ||
        action_fields(body, s, err) != BG_OK)
        return BG_ECONFIG;
    return s->kind == BG_TEST_OBSERVE ? observe_fields(body, s, err) : expect_fields(body, s, err);
}

/* ------------------------------------------------------------ cases */

static int parse_case(const bg_cfg_node *n, const bg_test_peer *file_peer, bg_test_case *c,
                      bg_err *err)
{
    static const char *const keys[] = {"name", "peer", "steps", NULL};
    if (want(n, BG_CFG_MAP, "case", err) != BG_OK || keys_in(n, "a case", keys, err) != BG_OK)
        return BG_ECONFIG;
    c->line = bg_cfg_line(n);
    c->column = bg_cfg_column(n);
    const bg_cfg_node *v = bg_cfg_get(n, "name");
    if (!v)
        return at(err, n, "case: missing 'name' (what the case shows, printed with PASS/FAIL)");
    if (get_string(v, "name", &c->name, err) != BG_OK)
        return BG_ECONFIG;
    bg_test_peer peer = *file_peer;
    if ((v = bg_cfg_get(n, "peer")) && get_peer(v, &peer, err) != BG_OK)
        return BG_ECONFIG;
    v = bg_cfg_get(n, "steps");
    if (!v)
        return at(err, n, "case '%.80s': missing 'steps' (a list of observe/expect)", c->name);
    if (want(v, BG_CFG_SEQ, "steps", err) != BG_OK)
        return BG_ECONFIG;
    size_t k = bg_cfg_len(v);
    if (k == 0)
        return at(err, v, "case '%.80s': steps is empty", c->name);
    if (!(c->steps = calloc(k, sizeof *c->steps)))
        return at(err, v, "out of memory");
    for (size_t i = 0; i < k; i++) {
        c->n_steps = i + 1; /* counted first: a step that fails half-read is freed too */
        if (parse_step(bg_cfg_item(v, i), &c->steps[i], err) != BG_OK)
            return BG_ECONFIG;
        if (!c->steps[i].peer.set)
            c->steps[i].peer = peer;
    }
    return BG_OK;
}

int bg_test_file_parse(const char *path, bg_test_file *f, bg_err *err)
{
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path)))
        return bg_err_set(err, BG_ENOMEM, "%s: out of memory", path);
    if (bg_cfg_parse_file(path, &f->doc, err) != BG_OK) {
        err->code = BG_ECONFIG;
        return BG_ECONFIG;
    }
    if (bg_cfg_doc_count(f->doc) != 1)
        return bg_err_set(err, BG_ECONFIG, "%s: expected one YAML document, found %zu", path,
                          bg_cfg_doc_count(f->doc));
    const bg_cfg_node *root = bg_cfg_doc_root(f->doc, 0);
    static const char *const keys[] = {"policy", "peer", "cases", NULL};
    if (want(root, BG_CFG_MAP, "a test file", err) != BG_OK ||
        keys_in(root, "a test file", keys, err) != BG_OK)
        return BG_ECONFIG;
    const bg_cfg_node *v = bg_cfg_get(root, "policy");
    if (!v)
        return at(err, root, "missing 'policy' (the name of the policy this file tests)");
    if (get_string(v, "policy", &f->policy, err) != BG_OK)
        return BG_ECONFIG;
    f->line = bg_cfg_line(v);
    f->column = bg_cfg_column(v);
    bg_test_peer peer = {0};
    if ((v = bg_cfg_get(root, "peer")) && get_peer(v, &peer, err) != BG_OK)
        return BG_ECONFIG;
    v = bg_cfg_get(root, "cases");
    if (!v)
        return at(err, root, "missing 'cases' (a list of {name, steps})");
    if (want(v, BG_CFG_SEQ, "cases", err) != BG_OK)
        return BG_ECONFIG;
    size_t k = bg_cfg_len(v);
    if (k == 0)
        return at(err, v, "cases is empty");
    if (k > MAX_ITEMS) /* the unique-name check below is quadratic */
        return at(err, v,
                  "cases: at most %d in one file (this one has %zu); split them over more "
                  "NAME_test.yaml files",
                  MAX_ITEMS, k);
    if (!(f->cases = calloc(k, sizeof *f->cases)))
        return at(err, v, "out of memory");
    for (size_t i = 0; i < k; i++) {
        f->n_cases = i + 1; /* counted first: a case that fails half-read is freed too */
        if (parse_case(bg_cfg_item(v, i), &peer, &f->cases[i], err) != BG_OK)
            return BG_ECONFIG;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(f->cases[j].name, f->cases[i].name))
                return at(err, bg_cfg_get(bg_cfg_item(v, i), "name"),
                          "case name '%.80s' is used twice (first at line %d)", f->cases[i].name,
                          f->cases[j].line);
    }
    return BG_OK;
}

void bg_test_file_free(bg_test_file *f)
{
    for (size_t i = 0; i < f->n_cases; i++) {
        bg_test_case *c = &f->cases[i];
        for (size_t j = 0; j < c->n_steps; j++) {
            free(c->steps[j].args);
            free(c->steps[j].features);
            free(c->steps[j].attrs);
        }
        free(c->steps);
    }
    free(f->cases);
    bg_cfg_doc_destroy(f->doc);
    free(f->path);
    memset(f, 0, sizeof *f);
}
