/*
 * cli_replay.c — `bayesguard replay`: logged outcomes -> Guard/Observe.
 *
 * Each non-empty line of the file ("-" = stdin) is one JSON object, one
 * observation, sent in file order (the posterior of a non-iid model may
 * depend on it):
 *
 *   {"tool": "transfer_funds",          required
 *    "features": [3.2, 1],              optional numbers
 *    "attributes": {"user": "alice"},   optional string -> string
 *    "harmed": false,                   optional (default false)
 *    "value": 2.7,                      optional measured outcome (bandit reward)
 *    "id": "call-17",                   optional tool-call id
 *    "arguments": {...} | "arguments_json": "...",   optional
 *    "session": "s", "policy": "p"}     optional per-line overrides
 *
 * Unknown and repeated keys are refused (a typo must not silently drop
 * data). The first refused line stops the replay: "FILE:LINE:COLUMN: what
 * is wrong" for text that is not JSON (jansson's message and position),
 * "FILE:LINE: "key": expected ..., got ..." for a field of the wrong type,
 * and the count stored so far; lines before it are stored (the daemon
 * acknowledged them). Last, the posterior summary of the final response
 * is printed (with --json: one JSON document, print_json).
 *
 * JSON is read with jansson, the project's JSON library. `arguments` (any
 * JSON value) is forwarded as arguments_json in jansson's compact encoding:
 * the same value, not necessarily the same spelling (spaces dropped, reals
 * written with 17 significant digits). Single-threaded; everything a line
 * allocates is freed before the next.
 */
#include "cli/cli_replay.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "common/bg_err.h"

/* ------------------------------------------------------------ one line */

typedef struct line {
    char *tool, *id, *args, *session, *policy;
    double *features;
    size_t n_features;
    char **keys, **vals;
    size_t n_attr;
    int harmed, has_value;
    double value;
} line;

/* Why a line was refused: the message, and the 1-based column of the JSON
 * syntax error (0 when the text is JSON but a field is wrong). */
typedef struct line_err {
    char msg[512];
    int column;
} line_err;

static void line_free(line *l)
{
    free(l->tool);
    free(l->id);
    free(l->args);
    free(l->session);
    free(l->policy);
    free(l->features);
    for (size_t i = 0; i < l->n_attr; i++) {
        free(l->keys[i]);
        free(l->vals[i]);
    }
    free(l->keys);
    free(l->vals);
    memset(l, 0, sizeof *l);
}

static int fail(line_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(line_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* "a string", "an array", ... for "expected X, got Y". */
static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown JSON value";
}

static int take_string(const char *key, const json_t *v, char **out, line_err *e)
{
    if (!json_is_string(v))
        return fail(e, "\"%s\": expected a string, got %s", key, kind_of(v));
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? 0 : fail(e, "out of memory");
}

static int take_features(const json_t *v, line *l, line_err *e)
{
    if (!json_is_array(v))
        return fail(e, "\"features\": expected an array of numbers, got %s", kind_of(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    if (!(l->features = calloc(n, sizeof *l->features)))
        return fail(e, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(v, i);
        if (!json_is_number(x))
            return fail(e, "\"features\"[%zu]: expected a number, got %s", i, kind_of(x));
        l->features[l->n_features++] = json_number_value(x);
    }
    return 0;
}

static int take_attributes(json_t *v, line *l, line_err *e)
{
    if (!json_is_object(v))
        return fail(e, "\"attributes\": expected an object of strings, got %s", kind_of(v));
    size_t n = json_object_size(v);
    if (n == 0)
        return 0;
    l->keys = calloc(n, sizeof *l->keys);
    l->vals = calloc(n, sizeof *l->vals);
    if (!l->keys || !l->vals)
        return fail(e, "out of memory");
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        const char *k = json_object_iter_key(it);
        const json_t *x = json_object_iter_value(it);
        if (!json_is_string(x))
            return fail(e, "\"attributes\".\"%.60s\": expected a string, got %s", k, kind_of(x));
        l->keys[l->n_attr] = strdup(k);
        l->vals[l->n_attr++] = strdup(json_string_value(x));
        if (!l->keys[l->n_attr - 1] || !l->vals[l->n_attr - 1])
            return fail(e, "out of memory");
    }
    return 0;
}

static int take_key(const char *k, json_t *v, line *l, line_err *e)
{
    if (!strcmp(k, "tool"))
        return take_string(k, v, &l->tool, e);
    if (!strcmp(k, "id"))
        return take_string(k, v, &l->id, e);
    if (!strcmp(k, "session"))
        return take_string(k, v, &l->session, e);
    if (!strcmp(k, "policy"))
        return take_string(k, v, &l->policy, e);
    if (!strcmp(k, "arguments_json"))
        return take_string(k, v, &l->args, e);
    if (!strcmp(k, "features"))
        return take_features(v, l, e);
    if (!strcmp(k, "attributes"))
        return take_attributes(v, l, e);
    if (!strcmp(k, "harmed")) {
        if (!json_is_boolean(v))
            return fail(e, "\"harmed\": expected true or false, got %s", kind_of(v));
        l->harmed = json_is_true(v);
        return 0;
    }
    if (!strcmp(k, "value")) {
        if (!json_is_number(v))
            return fail(e, "\"value\": expected a number, got %s", kind_of(v));
        l->has_value = 1;
        l->value = json_number_value(v);
        return 0;
    }
    if (!strcmp(k, "arguments")) {
        free(l->args);
        l->args = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        return l->args ? 0 : fail(e, "out of memory");
    }
    return fail(e,
                "unknown key \"%.60s\"; allowed: tool, features, attributes, harmed, value, id, "
                "arguments, arguments_json, session, policy",
                k);
}

static int parse_line(const char *text, size_t len, line *l, line_err *e)
{
    memset(l, 0, sizeof *l);
    e->column = 0;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    int rc = 0;
    if (!root) {
        e->column = je.column > 0 ? je.column : 1;
        rc = fail(e, "%s", je.text);
    } else if (!json_is_object(root)) {
        rc = fail(e, "expected a JSON object, got %s", kind_of(root));
    } else {
        /* In file order (jansson keeps insertion order), so the last of
         * "arguments" / "arguments_json" wins, as before. */
        for (void *it = json_object_iter(root); it && rc == 0; it = json_object_iter_next(root, it))
            rc = take_key(json_object_iter_key(it), json_object_iter_value(it), l, e);
    }
    if (rc == 0 && (!l->tool || !l->tool[0]))
        rc = fail(e, "missing \"tool\" (the tool name selects the policy)");
    json_decref(root);
    if (rc != 0)
        line_free(l);
    return rc;
}

/* ------------------------------------------------------------ command */

typedef struct replay_opts {
    const char *file, *session, *policy, *addr;
    unsigned timeout_ms;
    int json;
} replay_opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: bayesguard replay FILE.jsonl --session S [--policy P] [--addr HOST:PORT|"
            "unix:/path]\n"
            "                         [--timeout-ms N] [--json]\n"
            "  sends every line (one observation as JSON) with Guard/Observe, in order,\n"
            "  then prints the session's posterior summary. FILE \"-\" reads stdin.\n"
            "  --json: one JSON document on stdout (docs/CLI.md).\n"
            "  exit: 0 every line stored, 1 a line refused or the daemon failed, 2 usage\n");
}

static int parse_args(int argc, char **argv, replay_opts *o)
{
    *o = (replay_opts){.addr = NULL,
                       .timeout_ms = 10000}; /* NULL: $BAYESGUARD_ADDR or the default */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || !strcmp(a, "-")) {
            if (o->file)
                return -1;
            o->file = a;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (!strcmp(a, "--session"))
            o->session = v;
        else if (!strcmp(a, "--policy"))
            o->policy = v;
        else if (!strcmp(a, "--addr"))
            o->addr = v;
        else if (!strcmp(a, "--timeout-ms"))
            o->timeout_ms = (unsigned)strtoul(v, NULL, 10);
        else
            return -1;
    }
    return o->file && o->session ? 0 : -1;
}

static int send_line(bg_client *c, const replay_opts *o, line *l,
                     Bayesguard__V1__ObserveResponse **last, bg_err *err)
{
    Bayesguard__V1__Action act = BAYESGUARD__V1__ACTION__INIT;
    Bayesguard__V1__Context ctx = BAYESGUARD__V1__CONTEXT__INIT;
    Bayesguard__V1__ObserveRequest req = BAYESGUARD__V1__OBSERVE_REQUEST__INIT;
    Bayesguard__V1__Action__AttributesEntry *ents = NULL, **entp = NULL;
    act.tool = l->tool;
    act.id = l->id ? l->id : "";
    act.arguments_json = l->args ? l->args : "";
    act.n_features = l->n_features;
    act.features = l->features;
    if (l->n_attr) {
        ents = calloc(l->n_attr, sizeof *ents);
        entp = calloc(l->n_attr, sizeof *entp);
        if (!ents || !entp) {
            free(ents);
            free(entp);
            return bg_err_set(err, BG_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < l->n_attr; i++) {
            bayesguard__v1__action__attributes_entry__init(&ents[i]);
            ents[i].key = l->keys[i];
            ents[i].value = l->vals[i];
            entp[i] = &ents[i];
        }
        act.n_attributes = l->n_attr;
        act.attributes = entp;
    }
    ctx.session = l->session ? l->session : (char *)o->session;
    req.action = &act;
    req.context = &ctx;
    req.policy = l->policy ? l->policy : (char *)(o->policy ? o->policy : "");
    req.harmed = l->harmed != 0;
    if (l->has_value) {
        req.measured_case = BAYESGUARD__V1__OBSERVE_REQUEST__MEASURED_VALUE;
        req.value = l->value;
    }
    Bayesguard__V1__ObserveResponse *resp = NULL;
    int rc = bg_client_observe(c, &req, &resp, NULL, err);
    free(ents);
    free(entp);
    if (rc == BG_OK) {
        bg_client_free(*last);
        *last = resp;
    }
    return rc;
}

/* --json: {"file", "sent", "stopped": null | {"line", "column" (null
 * unless the text is not JSON), "message"}, "last": the final
 * ObserveResponse (cli_json.h) | null}. */
static void print_json(const replay_opts *o, const Bayesguard__V1__ObserveResponse *r, size_t sent,
                       long stop_line, int stop_col, const char *stop_msg)
{
    json_t *doc = json_pack("{s:s, s:I}", "file", o->file, "sent", (json_int_t)sent);
    json_t *stopped =
        stop_line ? json_pack("{s:I, s:o, s:s}", "line", (json_int_t)stop_line, "column",
                              stop_col ? json_integer(stop_col) : json_null(), "message", stop_msg)
                  : json_null();
    json_object_set_new(doc, "stopped", stopped ? stopped : json_null());
    char *head = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!head) {
        printf("{\"error\": \"out of memory\"}\n");
        return;
    }
    head[strlen(head) - 1] = '\0'; /* drop the closing brace: "last" follows */
    printf("%s,\"last\":", head);
    free(head);
    if (r)
        bg_cli_json_print(stdout, &r->base); /* ends with a newline */
    else
        printf("null");
    printf("}\n");
}

static void print_summary(const Bayesguard__V1__ObserveResponse *r, size_t sent)
{
    printf("replayed %zu observations\n", sent);
    if (!r)
        return;
    printf("policy        %s (revision %.12s)\n", r->policy, r->revision);
    printf("session       %s\n", r->session);
    printf("observations  %llu\n", (unsigned long long)r->observations);
    if (r->posterior) {
        const Bayesguard__V1__PosteriorSummary *p = r->posterior;
        printf("hypotheses    %llu\n", (unsigned long long)p->hypotheses);
        printf("MAP           %s (id %llu), posterior %.6g\n", p->map_label,
               (unsigned long long)p->map_id, p->map_posterior);
        printf("entropy       %.6g nats\n", p->entropy_nats);
    }
}

int bg_cli_replay_main(int argc, char **argv)
{
    replay_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    FILE *f = strcmp(o.file, "-") ? fopen(o.file, "r") : stdin;
    if (!f) {
        fprintf(stderr, "bayesguard replay: %s: %s\n", o.file, strerror(errno));
        return 1;
    }
    bg_client *c;
    bg_err err;
    if (bg_client_create(o.addr, o.timeout_ms, &c, &err) != BG_OK) {
        fprintf(stderr, "bayesguard replay: %s\n", err.msg);
        if (f != stdin)
            fclose(f);
        return 1;
    }
    char *buf = NULL;
    size_t cap = 0, sent = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    Bayesguard__V1__ObserveResponse *last = NULL;
    line_err le = {.column = 0};
    while ((n = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        size_t k = 0;
        while (k < len && (buf[k] == ' ' || buf[k] == '\t'))
            k++;
        if (k == len)
            continue;
        line l;
        if (parse_line(buf, len, &l, &le) != 0) {
            if (le.column)
                fprintf(stderr, "%s:%ld:%d: %s\n", o.file, lineno, le.column, le.msg);
            else
                fprintf(stderr, "%s:%ld: %s\n", o.file, lineno, le.msg);
            rc = 1;
            break;
        }
        int src = send_line(c, &o, &l, &last, &err);
        line_free(&l);
        if (src != BG_OK) {
            fprintf(stderr, "%s:%ld: %s\n", o.file, lineno, err.msg);
            snprintf(le.msg, sizeof le.msg, "%s", err.msg);
            le.column = 0;
            rc = 1;
            break;
        }
        sent++;
    }
    if (rc != 0)
        fprintf(stderr,
                "bayesguard replay: stopped; %zu observations before line %ld were "
                "stored\n",
                sent, lineno);
    if (o.json)
        print_json(&o, last, sent, rc ? lineno : 0, le.column, le.msg);
    else
        print_summary(last, sent);
    bg_client_free(last);
    free(buf);
    if (f != stdin)
        fclose(f);
    bg_client_destroy(c);
    return rc;
}
