/*
 * cli_test.c — `bayesguard test DIR [--plugins DIR] [--json] [-v]`: run
 * the policy unit tests (DIR/NAME_test.yaml, cli_test.h) against the
 * policies of DIR, in-process.
 *
 *   1. read every test file (cli_test_file.c); any error: print all of
 *      them as file:line:col: message, exit 2 — nothing runs;
 *   2. load DIR's policies with a fresh plugin host, as a reload would
 *      (bg_policy_set_load); invalid: the errors, exit 2; a file's
 *      `policy` that DIR does not define: file:line:col, exit 2;
 *   3. each case on a fresh engine (memory only, default limits): each
 *      step picks its policy as the daemon does (match by tool, else the
 *      built-in default-deny), computes the features and the session key
 *      the policy says, then observes (`repeat` times) or evaluates and
 *      checks the verdict. The first failing step ends its case (later
 *      steps build on it) and is reported with every check it failed and
 *      the actual verdict;
 *   4. PASS/FAIL per case, then the counts (or one JSON document with
 *      --json); exit 0 when every case passed, 1 when one failed.
 *
 * A step fails when its policy is not the one it expects (the file's, or
 * the step's `policy`), when the daemon would refuse it (bad arguments for
 * spec.features, a peer-keyed policy with no peer, an engine error — with
 * the daemon's message), or when a check fails. `error: TEXT` inverts
 * that: the step passes only when it is refused with a message containing
 * TEXT. Under `on_error: allow` an engine failure is ALLOW, as in the
 * daemon. A policy with a sampler is refused (the trainer is not run
 * here). Main thread only.
 */
#include "cli/cli_test.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_log.h"
#include "common/bg_time.h"
#include "plugin/plugin_host.h"
#include "policy/policy.h"

#define EXIT_PASS 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

typedef struct opts {
    const char *dir, *plugins;
    int json, verbose;
} opts;

/* What one step produced, and why it failed. */
typedef struct outcome {
    int has_verdict;
    bg_verdict v;
    const char *policy; /* the policy that decided */
    char error[1536];   /* the refusal, "" when none */
    char failed[2048];  /* "; "-joined failed checks, "" when the step passed */
} outcome;

static void failf(outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failf(outcome *o, const char *fmt, ...)
{
    size_t used = strlen(o->failed);
    if (used && used + 2 < sizeof o->failed) {
        memcpy(o->failed + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->failed + used, sizeof o->failed - used, fmt, ap);
    va_end(ap);
}

static void range_text(const bg_test_range *r, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    if (r->has_ge && r->has_le && r->ge == r->le) {
        snprintf(buf, len, "== %.6g", r->ge);
        return;
    }
#define PART(flag, op, val)                                                                        \
    if (r->flag && used < len)                                                                     \
        used += (size_t)snprintf(buf + used, len - used, "%s" op " %.6g", used ? " and " : "", val);
    PART(has_ge, ">=", r->ge)
    PART(has_gt, ">", r->gt)
    PART(has_le, "<=", r->le)
    PART(has_lt, "<", r->lt)
#undef PART
}

static void check_range(outcome *o, const char *what, const bg_test_range *r, double x)
{
    if (!r->set)
        return;
    int ok = !isnan(x) && (!r->has_ge || x >= r->ge) && (!r->has_gt || x > r->gt) &&
             (!r->has_le || x <= r->le) && (!r->has_lt || x < r->lt);
    if (!ok) {
        char t[160];
        range_text(r, t, sizeof t);
        failf(o, "%s: expected %s, got %.6g", what, t, x);
    }
}

static void check_verdict(const bg_test_step *s, outcome *o)
{
    const bg_verdict *v = &o->v;
    if (s->has_decision && v->decision != s->decision)
        failf(o, "decision: expected %s, got %s", bg_decision_name(s->decision),
              bg_decision_name(v->decision));
    check_range(o, "harm_bound", &s->harm_bound, v->harm_bound);
    check_range(o, "posterior_predictive", &s->posterior_predictive, v->posterior_predictive);
    check_range(o, "plausible_set_size", &s->plausible_set_size, (double)v->plausible_set_size);
    check_range(o, "observations", &s->observations, (double)v->observations);
    if (s->has_cautious_id && v->cautious_id != s->cautious_id)
        failf(o, "cautious.id: expected %llu, got %llu", (unsigned long long)s->cautious_id,
              (unsigned long long)v->cautious_id);
    if (s->cautious_label && strcmp(s->cautious_label, v->cautious_label) != 0)
        failf(o, "cautious.label: expected '%s', got '%s'", s->cautious_label, v->cautious_label);
    check_range(o, "cautious.posterior", &s->cautious_posterior, v->cautious_posterior);
    check_range(o, "cautious.harm", &s->cautious_harm, v->cautious_harm);
    if (s->has_bound_kind && !!v->sampled != s->sampled)
        failf(o, "bound_kind: expected %s, got %s", s->sampled ? "SAMPLED" : "EXACT",
              v->sampled ? "SAMPLED" : "EXACT");
    if (s->has_shadow && !!v->shadow != s->shadow)
        failf(o, "shadow: expected %s, got %s", s->shadow ? "true" : "false",
              v->shadow ? "true" : "false");
}

/* Run one step the way Guard.Evaluate / Guard.Observe would; a refusal
 * goes to o->error with the daemon's message. */
static void run_step(bg_engine *e, const bg_policy_set *set, const bg_test_file *f,
                     const bg_test_step *s, outcome *o)
{
    bg_action act = {.id = "", .tool = s->tool, .arguments_json = s->args ? s->args : ""};
    act.features = s->features;
    act.n_features = s->n_features;
    act.attributes = s->attrs;
    act.n_attributes = s->n_attrs;
    const bg_policy *p = bg_policy_set_match(set, s->tool);
    if (!p)
        p = bg_policy_set_catch_all(set);
    o->policy = p->name;
    const char *want = s->policy ? s->policy : f->policy;
    if (strcmp(p->name, want) != 0) {
        failf(o, "policy: tool '%s' is decided by policy %s (spec.match.tools), not %s", s->tool,
              p->name, want);
        return;
    }
    const char *what = s->kind == BG_TEST_OBSERVE ? "ObserveRequest" : "EvaluateRequest";
    if (s->kind == BG_TEST_OBSERVE && p->builtin) {
        snprintf(o->error, sizeof o->error,
                 "no policy matches tool '%s', so the built-in %s policy denies it and keeps no "
                 "observations: add the tool to a policy's spec.match.tools",
                 s->tool, BG_POLICY_DEFAULT_DENY);
        return;
    }
    double feats[64];
    const char *key = "", *parent = NULL;
    char keybuf[1024];
    bg_err err;
    bg_err_clear(&err);
    if (!p->builtin) {
        if (!p->features_from_request && s->n_features == 0 && p->n_features > 64) {
            snprintf(o->error, sizeof o->error, "policy %s: more than 64 spec.features", p->name);
            return;
        }
        if (bg_policy_action_features(p, what, &act, feats, o->error, sizeof o->error) != BG_OK)
            return;
        bg_session_who who = {
            .session = s->session ? s->session : "",
            .agent = s->agent ? s->agent : "",
            .attributes = act.attributes,
            .n_attributes = act.n_attributes,
            .identity = s->peer.set ? s->peer.identity : "",
            .has_uid = s->peer.has_uid,
            .uid = s->peer.uid,
        };
        if (bg_policy_session_keys(p, &who, keybuf, sizeof keybuf, &key, &parent, &err) != BG_OK) {
            snprintf(o->error, sizeof o->error, "%s", err.msg);
            return;
        }
    }
    if (s->kind == BG_TEST_OBSERVE) {
        bg_observation obs = {
            .action = act, .harmed = s->harmed, .has_value = s->has_value, .value = s->value};
        bg_posterior_summary sum;
        for (long i = 0; i < s->repeat; i++) {
            if (bg_policy_observe(e, p, key, parent, &obs, NULL, s->peer.identity, &sum, &err) !=
                BG_OK) {
                snprintf(o->error, sizeof o->error, "observation %ld of %ld: %s", i + 1, s->repeat,
                         err.msg);
                return;
            }
        }
        return;
    }
    memset(&o->v, 0, sizeof o->v);
    int rc = bg_policy_evaluate(e, p, &key, parent, &act, &o->v, &err);
    /* As the daemon: bad input, limits and retry keep their errors; any
     * other failure is no decision, or ALLOW under on_error: allow. */
    int known = rc == BG_EINVAL || rc == BG_ELIMIT || rc == BG_ENOMEM || rc == BG_EUNAVAIL;
    if (rc != BG_OK && (known || !p->on_error_allow)) {
        snprintf(o->error, sizeof o->error, "policy %s: %s", p->name, err.msg);
        return;
    }
    if (rc != BG_OK) {
        memset(&o->v, 0, sizeof o->v);
        o->v.decision = BG_DECISION_ALLOW;
    }
    o->has_verdict = 1;
}

/* The step's result: o->failed is "" when it passed. */
static void judge(const bg_test_step *s, outcome *o)
{
    if (o->failed[0])
        return; /* the wrong policy */
    if (s->error) {
        if (!o->error[0])
            failf(o, "error: expected the step to be refused with '%s', but it %s", s->error,
                  o->has_verdict ? "got a verdict" : "was stored");
        else if (!strstr(o->error, s->error))
            failf(o, "error: expected a message containing '%s', got: %s", s->error, o->error);
        return;
    }
    if (o->error[0]) {
        failf(o, "refused: %s", o->error);
        return;
    }
    if (o->has_verdict)
        check_verdict(s, o);
}

/* ------------------------------------------------------------ output */

static void print_verdict(FILE *out, const char *indent, const outcome *o)
{
    const bg_verdict *v = &o->v;
    fprintf(out,
            "%sactual: %s%s harm_bound=%.6g posterior_predictive=%.6g policy=%s cautious=%llu "
            "'%s' (posterior %.6g, harm %.6g) plausible_set_size=%llu observations=%llu "
            "bound_kind=%s\n",
            indent, bg_decision_name(v->decision), v->shadow ? " (shadow)" : "", v->harm_bound,
            v->posterior_predictive, o->policy ? o->policy : "?",
            (unsigned long long)v->cautious_id, v->cautious_label, v->cautious_posterior,
            v->cautious_harm, (unsigned long long)v->plausible_set_size,
            (unsigned long long)v->observations, v->sampled ? "SAMPLED" : "EXACT");
}

/* A number, or null when it is not finite (JSON has no NaN). */
static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *verdict_json(const outcome *o)
{
    const bg_verdict *v = &o->v;
    json_t *c = json_object(), *j = json_object();
    json_object_set_new(c, "id", json_integer((json_int_t)v->cautious_id));
    json_object_set_new(c, "label", json_string(v->cautious_label));
    json_object_set_new(c, "posterior", num(v->cautious_posterior));
    json_object_set_new(c, "harm", num(v->cautious_harm));
    json_object_set_new(j, "decision", json_string(bg_decision_name(v->decision)));
    json_object_set_new(j, "policy", json_string(o->policy ? o->policy : ""));
    json_object_set_new(j, "harm_bound", num(v->harm_bound));
    json_object_set_new(j, "posterior_predictive", num(v->posterior_predictive));
    json_object_set_new(j, "cautious", c);
    json_object_set_new(j, "plausible_set_size", json_integer((json_int_t)v->plausible_set_size));
    json_object_set_new(j, "observations", json_integer((json_int_t)v->observations));
    json_object_set_new(j, "bound_kind", json_string(v->sampled ? "SAMPLED" : "EXACT"));
    json_object_set_new(j, "shadow", json_boolean(v->shadow != 0));
    return j;
}

/* Run case c of f; prints its lines (text) or appends it to cases (JSON).
 * Returns 1 when it passed. */
static int run_case(const opts *op, const bg_policy_set *set, const bg_test_file *f,
                    const bg_test_case *c, json_t *cases)
{
    bg_engine *e = NULL;
    bg_engine_opts eo = {0};
    bg_err err;
    outcome o;
    memset(&o, 0, sizeof o);
    size_t failed_at = 0, i;
    uint64_t t0 = bg_now_ns();
    json_t *steps = op->json && op->verbose ? json_array() : NULL;
    if (bg_engine_create(&eo, &e, &err) != BG_OK) {
        failf(&o, "engine: %s", err.msg);
        failed_at = 1;
    }
    for (i = 0; e && i < c->n_steps; i++) {
        memset(&o, 0, sizeof o);
        run_step(e, set, f, &c->steps[i], &o);
        judge(&c->steps[i], &o);
        if (steps)
            json_array_append_new(
                steps, json_pack("{s:I, s:s, s:o}", "line", (json_int_t)c->steps[i].line, "kind",
                                 c->steps[i].kind == BG_TEST_OBSERVE ? "observe" : "expect",
                                 "actual", o.has_verdict ? verdict_json(&o) : json_null()));
        if (!op->json && op->verbose && !o.failed[0]) {
            fprintf(stdout, "      step %zu (%s:%d): %s ok\n", i + 1, f->path, c->steps[i].line,
                    c->steps[i].kind == BG_TEST_OBSERVE ? "observe" : "expect");
            if (o.has_verdict)
                print_verdict(stdout, "        ", &o);
        }
        if (o.failed[0]) {
            failed_at = i + 1;
            break;
        }
    }
    bg_engine_destroy(e);
    double ms = (double)(bg_now_ns() - t0) / 1e6;
    int pass = failed_at == 0;
    if (op->json) {
        json_t *jc = json_pack("{s:s, s:I, s:s, s:s, s:s, s:f}", "file", f->path, "line",
                               (json_int_t)c->line, "policy", f->policy, "name", c->name, "result",
                               pass ? "PASS" : "FAIL", "duration_ms", ms);
        if (!pass) {
            const bg_test_step *s = &c->steps[failed_at - 1];
            json_object_set_new(
                jc, "failure",
                json_pack("{s:I, s:I, s:I, s:s, s:s, s:o}", "step", (json_int_t)failed_at, "line",
                          (json_int_t)s->line, "column", (json_int_t)s->column, "kind",
                          s->kind == BG_TEST_OBSERVE ? "observe" : "expect", "message", o.failed,
                          "actual", o.has_verdict ? verdict_json(&o) : json_null()));
        } else {
            json_object_set_new(jc, "failure", json_null());
        }
        if (steps)
            json_object_set_new(jc, "steps", steps);
        json_array_append_new(cases, jc);
        return pass;
    }
    printf("%s  %s:%d  %s: %s (%.1f ms)\n", pass ? "PASS" : "FAIL", f->path, c->line, f->policy,
           c->name, ms);
    if (!pass) {
        const bg_test_step *s = &c->steps[failed_at - 1];
        printf("      step %zu (%s at %s:%d:%d): %s\n", failed_at,
               s->kind == BG_TEST_OBSERVE ? "observe" : "expect", f->path, s->line, s->column,
               o.failed);
        if (o.has_verdict)
            print_verdict(stdout, "      ", &o);
    }
    return pass;
}

/* ------------------------------------------------------------ loading */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The test files of dir, sorted: new array of new strings in *names. */
static int list_tests(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return -1;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!bg_policy_is_test_file(de->d_name))
            continue;
        char **nn = realloc(*names, (*n + 1) * sizeof *nn);
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        char *p = nn ? malloc(len) : NULL;
        if (!p) {
            free(nn ? nn : *names);
            *names = NULL;
            closedir(dp);
            errno = ENOMEM;
            return -1;
        }
        snprintf(p, len, "%s/%s", dir, de->d_name);
        *names = nn;
        nn[(*n)++] = p;
    }
    closedir(dp);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

/* A load error: a line on stderr, or an entry of the JSON document. */
static void load_error(const opts *op, json_t *errs, const char *msg)
{
    if (op->json)
        json_array_append_new(errs, json_string(msg));
    else
        fprintf(stderr, "%s\n", msg);
}

static int usage(FILE *f)
{
    fprintf(f, "usage: bayesguard test DIR [--plugins DIR] [--json] [-v]\n"
               "  Run the policy unit tests DIR/*_test.yaml against the policies of DIR,\n"
               "  offline: the daemon's loader, plugins and decision path in-process, a fresh\n"
               "  engine per case (format: docs/CLI.md). Prints PASS/FAIL per case with the\n"
               "  failing check and the actual verdict, then the counts.\n"
               "  --plugins DIR  plugin dir (default: $BG_PLUGIN_DIR, else the built-in one)\n"
               "  --json         one JSON document on stdout instead\n"
               "  -v, --verbose  every step and its verdict\n"
               "  Exit 0 every case passed, 1 a case failed, 2 usage, or a test file or the\n"
               "  policies could not be loaded (file:line:col: message).\n");
    return EXIT_USAGE;
}

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->plugins = getenv("BG_PLUGIN_DIR");
#ifdef BG_DEFAULT_PLUGIN_DIR
    if (!o->plugins)
        o->plugins = BG_DEFAULT_PLUGIN_DIR;
#endif
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--plugins") && i + 1 < argc)
            o->plugins = argv[++i];
        else if (!strncmp(a, "--plugins=", 10))
            o->plugins = a + 10;
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose"))
            o->verbose = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return usage(stdout), EXIT_PASS;
        else if (a[0] == '-' || o->dir) {
            fprintf(stderr, "bayesguard test: unexpected argument '%s'\n", a);
            return usage(stderr);
        } else
            o->dir = a;
    }
    if (!o->dir)
        return usage(stderr);
    if (!o->plugins) {
        fprintf(stderr, "bayesguard test: no plugin directory: pass --plugins DIR\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* Steps 1 and 2: the files and the policies; EXIT_PASS when both load. */
static int load(const opts *op, json_t *errs, bg_test_file **files, size_t *n_files,
                bg_plugin_host **host, bg_policy_set **set)
{
    char **names = NULL, msg[2048];
    size_t n = 0;
    if (list_tests(op->dir, &names, &n) != 0) {
        snprintf(msg, sizeof msg, "%s: cannot read the directory: %s", op->dir, strerror(errno));
        load_error(op, errs, msg);
        return EXIT_USAGE;
    }
    if (n == 0) {
        snprintf(msg, sizeof msg,
                 "%s: no policy tests (NAME_test.yaml or NAME_test.yml) in the directory", op->dir);
        load_error(op, errs, msg);
        return EXIT_USAGE;
    }
    int rc = EXIT_PASS;
    bg_err err;
    *files = calloc(n, sizeof **files);
    for (size_t i = 0; *files && i < n; i++) {
        *n_files = i + 1;
        if (bg_test_file_parse(names[i], &(*files)[i], &err) != BG_OK) {
            load_error(op, errs, err.msg);
            rc = EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!*files) {
        load_error(op, errs, "out of memory");
        return EXIT_USAGE;
    }
    if (rc != EXIT_PASS)
        return rc;
    if (bg_plugin_host_create(op->plugins, host, &err) != BG_OK) {
        load_error(op, errs, err.msg);
        return EXIT_USAGE;
    }
    bg_policy_errors perrs = {0};
    if (bg_policy_set_load(op->dir, *host, set, &perrs) != BG_OK) {
        for (size_t i = 0; i < perrs.n; i++)
            load_error(op, errs, perrs.msgs[i]);
        snprintf(msg, sizeof msg, "%s: the policies are invalid (%zu error(s)): no test ran",
                 op->dir, perrs.n);
        load_error(op, errs, msg);
        bg_policy_errors_free(&perrs);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < *n_files; i++) {
        const bg_test_file *f = &(*files)[i];
        if (!bg_policy_set_find(*set, f->policy)) {
            snprintf(msg, sizeof msg, "%s:%d:%d: policy '%s' is not defined in %s", f->path,
                     f->line, f->column, f->policy, op->dir);
            load_error(op, errs, msg);
            rc = EXIT_USAGE;
        }
    }
    return rc;
}

int bg_cli_test_main(int argc, char **argv)
{
    opts op;
    int rc = parse_args(argc, argv, &op);
    if (rc >= 0)
        return rc;
    bg_log_set_level(BG_LOG_WARN); /* not the plugin host's "loaded ..." lines */
    json_t *doc = json_object(), *errs = json_array(), *cases = json_array();
    bg_test_file *files = NULL;
    size_t n_files = 0, passed = 0, total = 0;
    bg_plugin_host *host = NULL;
    bg_policy_set *set = NULL;
    rc = load(&op, errs, &files, &n_files, &host, &set);
    if (rc == EXIT_PASS) {
        for (size_t i = 0; i < n_files; i++)
            for (size_t j = 0; j < files[i].n_cases; j++, total++)
                passed += (size_t)run_case(&op, set, &files[i], &files[i].cases[j], cases);
        rc = passed == total ? EXIT_PASS : EXIT_FAIL;
    }
    if (op.json) {
        json_object_set_new(doc, "dir", json_string(op.dir));
        json_object_set_new(doc, "revision", json_string(set ? bg_policy_set_revision(set) : ""));
        json_object_set_new(doc, "passed", json_integer((json_int_t)passed));
        json_object_set_new(doc, "failed", json_integer((json_int_t)(total - passed)));
        json_object_set_new(doc, "total", json_integer((json_int_t)total));
        json_object_set_new(doc, "errors", errs);
        json_object_set_new(doc, "cases", cases);
        errs = cases = NULL;
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    } else if (rc != EXIT_USAGE) {
        printf(
            "--------------------------------------------------------------------------------\n");
        printf("PASS: %zu/%zu\n", passed, total);
        if (passed != total)
            printf("FAIL: %zu/%zu\n", total - passed, total);
    }
    json_decref(doc);
    json_decref(errs);
    json_decref(cases);
    for (size_t i = 0; i < n_files; i++)
        bg_test_file_free(&files[i]);
    free(files);
    if (set)
        bg_policy_set_unref(set);
    bg_plugin_host_destroy(host);
    return rc;
}
