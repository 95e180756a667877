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
 * Unknown keys are refused (a typo must not silently drop data). The first
 * refused line stops the replay: "FILE:LINE: what is wrong" and the count
 * stored so far; lines before it are stored (the daemon acknowledged
 * them). Last, the posterior summary of the final response is printed.
 *
 * The JSON reader below is deliberately small: objects, arrays, strings
 * (escapes incl. \u plus four hex digits, surrogate pairs -> UTF-8), numbers,
 * true/false/null; it records the raw text of `arguments` to forward as
 * arguments_json. Single-threaded; everything it allocates is freed per
 * line.
 */
#include "cli/cli_replay.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_client.h"
#include "common/bg_err.h"

/* ------------------------------------------------------------ JSON reader */

typedef struct jr {
    const char *p, *end;
    char err[256];
} jr;

static int jfail(jr *j, const char *what)
{
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "%s", what);
    return -1;
}

static void jws(jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
        j->p++;
}

static int jlit(jr *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jfail(j, "invalid literal");
    j->p += n;
    return 0;
}

static void put_utf8(char **o, unsigned cp)
{
    char *d = *o;
    if (cp < 0x80) {
        *d++ = (char)cp;
    } else if (cp < 0x800) {
        *d++ = (char)(0xc0 | (cp >> 6));
        *d++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *d++ = (char)(0xe0 | (cp >> 12));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *d++ = (char)(0xf0 | (cp >> 18));
        *d++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *d++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *d++ = (char)(0x80 | (cp & 0x3f));
    }
    *o = d;
}

static int hex4(jr *j, unsigned *out)
{
    if (j->end - j->p < 4)
        return jfail(j, "short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return jfail(j, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

/* New string (free()) from a JSON string at j->p. */
static int jstring(jr *j, char **out)
{
    if (j->p >= j->end || *j->p != '"')
        return jfail(j, "expected a string");
    j->p++;
    char *buf = malloc((size_t)(j->end - j->p) + 1), *o = buf;
    if (!buf)
        return jfail(j, "out of memory");
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) {
            free(buf);
            return jfail(j, "control character in a string");
        }
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        if (j->p >= j->end)
            break;
        char e = *j->p++;
        unsigned cp, lo;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            if (hex4(j, &cp) != 0) {
                free(buf);
                return -1;
            }
            if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                j->p += 2;
                if (hex4(j, &lo) != 0) {
                    free(buf);
                    return -1;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(&o, cp);
            break;
        default:
            free(buf);
            return jfail(j, "unknown escape in a string");
        }
    }
    if (j->p >= j->end) {
        free(buf);
        return jfail(j, "unterminated string");
    }
    j->p++;
    *o = '\0';
    *out = buf;
    return 0;
}

static int jnumber(jr *j, double *out)
{
    char tmp[64];
    size_t n = 0;
    while (j->p + n < j->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", j->p[n]))
        n++;
    memcpy(tmp, j->p, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (n == 0 || *end || errno == ERANGE || !isfinite(v))
        return jfail(j, "expected a finite number");
    j->p += n;
    *out = v;
    return 0;
}

/* Skip any value (used for `arguments`, whose raw text is kept). */
static int jskip(jr *j, int depth)
{
    jws(j);
    if (j->p >= j->end)
        return jfail(j, "unexpected end of line");
    if (depth > 64)
        return jfail(j, "nested too deeply");
    char c = *j->p;
    if (c == '"') {
        char *s;
        if (jstring(j, &s) != 0)
            return -1;
        free(s);
        return 0;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                char *k;
                jws(j);
                if (jstring(j, &k) != 0)
                    return -1;
                free(k);
                jws(j);
                if (j->p >= j->end || *j->p++ != ':')
                    return jfail(j, "expected ':'");
            }
            if (jskip(j, depth + 1) != 0)
                return -1;
            jws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return 0;
            }
            return jfail(j, "expected ',' or a closing bracket");
        }
    }
    if (c == 't')
        return jlit(j, "true");
    if (c == 'f')
        return jlit(j, "false");
    if (c == 'n')
        return jlit(j, "null");
    double d;
    return jnumber(j, &d);
}

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

static int parse_features(jr *j, line *l)
{
    if (j->p >= j->end || *j->p != '[')
        return jfail(j, "\"features\": expected an array of numbers");
    j->p++;
    size_t cap = 0;
    jws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        double v;
        jws(j);
        if (jnumber(j, &v) != 0)
            return jfail(j, "\"features\": expected numbers");
        if (l->n_features == cap) {
            cap = cap ? cap * 2 : 8;
            double *f = realloc(l->features, cap * sizeof *f);
            if (!f)
                return jfail(j, "out of memory");
            l->features = f;
        }
        l->features[l->n_features++] = v;
        jws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        return jfail(j, "\"features\": expected ',' or ']'");
    }
}

static int parse_attributes(jr *j, line *l)
{
    if (j->p >= j->end || *j->p != '{')
        return jfail(j, "\"attributes\": expected an object of strings");
    j->p++;
    jws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char *k = NULL, *v = NULL;
        jws(j);
        if (jstring(j, &k) != 0)
            return -1;
        jws(j);
        if (j->p >= j->end || *j->p++ != ':' || (jws(j), jstring(j, &v)) != 0) {
            free(k);
            return jfail(j, "\"attributes\": values must be strings");
        }
        char **nk = realloc(l->keys, (l->n_attr + 1) * sizeof *nk);
        if (nk)
            l->keys = nk;
        char **nv = nk ? realloc(l->vals, (l->n_attr + 1) * sizeof *nv) : NULL;
        if (nv)
            l->vals = nv;
        if (!nk || !nv) {
            free(k);
            free(v);
            return jfail(j, "out of memory");
        }
        l->keys[l->n_attr] = k;
        l->vals[l->n_attr++] = v;
        jws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 0;
        }
        return jfail(j, "\"attributes\": expected ',' or '}'");
    }
}

static int parse_bool(jr *j, int *out)
{
    if (j->p < j->end && *j->p == 't') {
        *out = 1;
        return jlit(j, "true");
    }
    *out = 0;
    return jlit(j, "false");
}

static int parse_key(jr *j, const char *k, line *l)
{
    jws(j);
    if (!strcmp(k, "tool"))
        return jstring(j, &l->tool);
    if (!strcmp(k, "id"))
        return jstring(j, &l->id);
    if (!strcmp(k, "session"))
        return jstring(j, &l->session);
    if (!strcmp(k, "policy"))
        return jstring(j, &l->policy);
    if (!strcmp(k, "arguments_json"))
        return jstring(j, &l->args);
    if (!strcmp(k, "features"))
        return parse_features(j, l);
    if (!strcmp(k, "attributes"))
        return parse_attributes(j, l);
    if (!strcmp(k, "harmed"))
        return parse_bool(j, &l->harmed);
    if (!strcmp(k, "value")) {
        l->has_value = 1;
        return jnumber(j, &l->value);
    }
    if (!strcmp(k, "arguments")) {
        const char *start = j->p;
        if (jskip(j, 0) != 0)
            return -1;
        size_t n = (size_t)(j->p - start);
        free(l->args);
        if (!(l->args = malloc(n + 1)))
            return jfail(j, "out of memory");
        memcpy(l->args, start, n);
        l->args[n] = '\0';
        return 0;
    }
    snprintf(j->err, sizeof j->err,
             "unknown key \"%.60s\"; allowed: tool, features, attributes, harmed, value, id, "
             "arguments, arguments_json, session, policy",
             k);
    return -1;
}

static int parse_line(const char *text, size_t len, line *l, char *msg, size_t msg_len)
{
    jr j = {.p = text, .end = text + len};
    memset(l, 0, sizeof *l);
    int rc = 0;
    jws(&j);
    if (j.p >= j.end || *j.p != '{')
        rc = jfail(&j, "expected a JSON object");
    else
        j.p++;
    jws(&j);
    if (rc == 0 && j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        while (rc == 0) {
            char *k = NULL;
            jws(&j);
            if ((rc = jstring(&j, &k)) != 0)
                break;
            jws(&j);
            if (j.p >= j.end || *j.p++ != ':')
                rc = jfail(&j, "expected ':' after a key");
            if (rc == 0)
                rc = parse_key(&j, k, l);
            free(k);
            jws(&j);
            if (rc == 0 && j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (rc == 0 && j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            if (rc == 0)
                rc = jfail(&j, "expected ',' or '}'");
        }
    }
    jws(&j);
    if (rc == 0 && j.p != j.end)
        rc = jfail(&j, "text after the object");
    if (rc == 0 && (!l->tool || !l->tool[0]))
        rc = jfail(&j, "missing \"tool\" (the tool name selects the policy)");
    if (rc != 0) {
        snprintf(msg, msg_len, "%s (at column %ld)", j.err, (long)(j.p - text) + 1);
        line_free(l);
    }
    return rc;
}

/* ------------------------------------------------------------ command */

typedef struct replay_opts {
    const char *file, *session, *policy, *addr;
    unsigned timeout_ms;
} replay_opts;

static void usage(void)
{
    fprintf(stderr,
            "usage: bayesguard replay FILE.jsonl --session S [--policy P] [--addr HOST:PORT|"
            "unix:/path]\n"
            "                         [--timeout-ms N]\n"
            "  sends every line (one observation as JSON) with Guard/Observe, in order,\n"
            "  then prints the session's posterior summary. FILE \"-\" reads stdin.\n");
}

static int parse_args(int argc, char **argv, replay_opts *o)
{
    *o = (replay_opts){.addr = BG_CLIENT_DEFAULT_ADDR, .timeout_ms = 10000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || !strcmp(a, "-")) {
            if (o->file)
                return -1;
            o->file = a;
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
        char msg[512];
        if (parse_line(buf, len, &l, msg, sizeof msg) != 0) {
            fprintf(stderr, "%s:%ld: %s\n", o.file, lineno, msg);
            rc = 1;
            break;
        }
        int src = send_line(c, &o, &l, &last, &err);
        line_free(&l);
        if (src != BG_OK) {
            fprintf(stderr, "%s:%ld: %s\n", o.file, lineno, err.msg);
            rc = 1;
            break;
        }
        sent++;
    }
    if (rc != 0)
        fprintf(stderr, "bayesguard replay: stopped; %zu observations before line %ld were "
                "stored\n", sent, lineno);
    print_summary(last, sent);
    bg_client_free(last);
    free(buf);
    if (f != stdin)
        fclose(f);
    bg_client_destroy(c);
    return rc;
}
