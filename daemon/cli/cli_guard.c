/*
 * cli_guard.c — eval, observe, status, health, reload (see cli_guard.h).
 *
 * Every command parses its flags with getopt_long into one `common` struct
 * (address, timeout, --json and the action/context fields eval and observe
 * share), opens a bg_client, makes one call and prints the reply: a few
 * human lines, or with --json the whole message (cli_json.h). RPC errors
 * print "error: CODE: message" on stderr and exit 3.
 */
#include "cli/cli_guard.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "receipt/receipt.h"

#define MAX_ITEMS 256

typedef struct common {
    const char *addr;
    long timeout_ms;
    int json;
    /* eval / observe */
    const char *tool, *args, *id, *policy, *session, *agent, *trace, *decision_id, *receipt;
    double features[MAX_ITEMS];
    size_t n_features;
    Bayesguard__V1__Action__AttributesEntry attr_store[MAX_ITEMS];
    Bayesguard__V1__Action__AttributesEntry *attrs[MAX_ITEMS];
    size_t n_attrs;
    int harmed; /* -1 unset */
    int has_value;
    double value;
    const char *service;
} common;

enum {
    O_ADDR = 1000,
    O_TIMEOUT,
    O_JSON,
    O_TOOL,
    O_ARGS,
    O_ID,
    O_POLICY,
    O_SESSION,
    O_AGENT,
    O_TRACE,
    O_FEATURE,
    O_FEATURES,
    O_ATTR,
    O_HARMED,
    O_VALUE,
    O_DECISION,
    O_RECEIPT,
    O_SERVICE,
    O_HELP
};

/* Which flags each command takes. */
#define F_BASE (1u << 0)
#define F_ACTION (1u << 1)
#define F_OBSERVE (1u << 2)
#define F_SERVICE (1u << 3)

typedef struct flag {
    struct option opt;
    unsigned mask;
    const char *arg; /* the value's name in --help, "" for none */
    const char *help;
} flag;

static const flag flags[] = {
    {{"addr", required_argument, NULL, O_ADDR},
     F_BASE,
     "ADDR",
     "daemon address, host:port or unix:/path (default: $" BG_CLIENT_ADDR_ENV
     ", else " BG_CLIENT_DEFAULT_ADDR ")"},
    {{"timeout-ms", required_argument, NULL, O_TIMEOUT}, F_BASE, "N", "deadline (default 10000)"},
    {{"json", no_argument, NULL, O_JSON}, F_BASE, "", "print the reply as JSON"},
    {{"help", no_argument, NULL, O_HELP}, F_BASE, "", "this help"},
    {{"tool", required_argument, NULL, O_TOOL}, F_ACTION, "NAME", "tool name (required)"},
    {{"args", required_argument, NULL, O_ARGS}, F_ACTION, "JSON", "tool arguments"},
    {{"id", required_argument, NULL, O_ID}, F_ACTION, "ID", "tool-call id"},
    {{"policy", required_argument, NULL, O_POLICY},
     F_ACTION,
     "NAME",
     "policy (default: the one matching --tool)"},
    {{"session", required_argument, NULL, O_SESSION}, F_ACTION, "S", "context.session"},
    {{"agent", required_argument, NULL, O_AGENT}, F_ACTION, "A", "context.agent"},
    {{"trace-id", required_argument, NULL, O_TRACE}, F_ACTION, "T", "context.trace_id"},
    {{"feature", required_argument, NULL, O_FEATURE},
     F_ACTION,
     "X",
     "append one feature (repeatable)"},
    {{"features", required_argument, NULL, O_FEATURES},
     F_ACTION,
     "X,Y,..",
     "all features, comma-separated"},
    {{"attr", required_argument, NULL, O_ATTR}, F_ACTION, "K=V", "attribute (repeatable)"},
    {{"harmed", required_argument, NULL, O_HARMED},
     F_OBSERVE,
     "yes|no",
     "the observed outcome (required)"},
    {{"value", required_argument, NULL, O_VALUE}, F_OBSERVE, "X", "measured outcome"},
    {{"decision-id", required_argument, NULL, O_DECISION},
     F_OBSERVE,
     "ID",
     "the verdict's decision_id"},
    {{"receipt", required_argument, NULL, O_RECEIPT},
     F_OBSERVE,
     "BASE64",
     "the verdict's receipt as eval prints it (needed under outcomes: receipts)"},
    {{"service", required_argument, NULL, O_SERVICE},
     F_SERVICE,
     "NAME",
     "\"\" (default) or bayesguard.v1.Guard"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static void usage(FILE *f, const char *cmd, unsigned mask)
{
    fprintf(f, "usage: bayesguard %s [flags]\n", cmd);
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].mask & mask)
            fprintf(f, "  --%-12s %-8s %s\n", flags[i].opt.name, flags[i].arg, flags[i].help);
    if (strcmp(cmd, "eval") == 0)
        fprintf(f, "exit: 0 ALLOW, 1 DENY, 4 ESCALATE, 2 usage, 3 RPC error\n");
    else
        fprintf(f, "exit: 0 ok, 1 negative answer, 2 usage, 3 RPC error\n");
}

static int bad(const char *cmd, const char *fmt, const char *what)
{
    fprintf(stderr, "bayesguard %s: ", cmd);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(see bayesguard %s --help)\n", cmd);
    return BG_CLI_EXIT_USAGE;
}

static int parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int add_feature(common *c, const char *cmd, const char *s)
{
    if (c->n_features >= MAX_ITEMS)
        return bad(cmd, "too many features (max 256) at '%s'", s);
    if (parse_double(s, &c->features[c->n_features]) != 0)
        return bad(cmd, "feature '%s' is not a number", s);
    c->n_features++;
    return 0;
}

/* Returns -1 to go on, or an exit code. */
static int parse(int argc, char **argv, unsigned mask, common *c)
{
    const char *cmd = argv[0];
    struct option opts[N_FLAGS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].mask & mask)
            opts[n++] = flags[i].opt;
    memset(&opts[n], 0, sizeof(opts[n]));
    memset(c, 0, sizeof(*c));
    c->harmed = -1;
    c->timeout_ms = 10000;
    c->service = "";
    optind = 1;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case O_ADDR:
            c->addr = optarg;
            break;
        case O_JSON:
            c->json = 1;
            break;
        case O_TOOL:
            c->tool = optarg;
            break;
        case O_ARGS:
            c->args = optarg;
            break;
        case O_ID:
            c->id = optarg;
            break;
        case O_POLICY:
            c->policy = optarg;
            break;
        case O_SESSION:
            c->session = optarg;
            break;
        case O_AGENT:
            c->agent = optarg;
            break;
        case O_TRACE:
            c->trace = optarg;
            break;
        case O_DECISION:
            c->decision_id = optarg;
            break;
        case O_RECEIPT:
            c->receipt = optarg;
            break;
        case O_SERVICE:
            c->service = optarg;
            break;
        case O_HELP:
            usage(stdout, cmd, mask);
            return BG_CLI_EXIT_OK;
        case O_TIMEOUT: {
            char *end = NULL;
            c->timeout_ms = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || c->timeout_ms <= 0)
                return bad(cmd, "--timeout-ms '%s': expected a positive integer", optarg);
            break;
        }
        case O_FEATURE:
            rc = add_feature(c, cmd, optarg);
            break;
        case O_FEATURES: {
            char buf[8192];
            snprintf(buf, sizeof(buf), "%s", optarg);
            for (char *tok = strtok(buf, ","); tok && rc == 0; tok = strtok(NULL, ","))
                rc = add_feature(c, cmd, tok);
            break;
        }
        case O_ATTR: {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg)
                return bad(cmd, "--attr '%s': expected KEY=VALUE", optarg);
            if (c->n_attrs >= MAX_ITEMS)
                return bad(cmd, "too many attributes (max 256) at '%s'", optarg);
            Bayesguard__V1__Action__AttributesEntry *e = &c->attr_store[c->n_attrs];
            bayesguard__v1__action__attributes_entry__init(e);
            e->key = strndup(optarg, (size_t)(eq - optarg));
            e->value = (char *)eq + 1;
            c->attrs[c->n_attrs++] = e;
            break;
        }
        case O_HARMED:
            if (strcmp(optarg, "yes") == 0 || strcmp(optarg, "true") == 0 ||
                strcmp(optarg, "1") == 0)
                c->harmed = 1;
            else if (strcmp(optarg, "no") == 0 || strcmp(optarg, "false") == 0 ||
                     strcmp(optarg, "0") == 0)
                c->harmed = 0;
            else
                return bad(cmd, "--harmed '%s': expected yes or no", optarg);
            break;
        case O_VALUE:
            if (parse_double(optarg, &c->value) != 0 || !isfinite(c->value))
                return bad(cmd, "--value '%s': expected a finite number", optarg);
            c->has_value = 1;
            break;
        default:
            return bad(cmd, "unknown or incomplete flag '%s'", argv[optind - 1]);
        }
        if (rc != 0)
            return rc;
    }
    if (optind < argc)
        return bad(cmd, "unexpected argument '%s'", argv[optind]);
    if ((mask & F_ACTION) && c->tool == NULL)
        return bad(cmd, "%s is required", "--tool NAME");
    if ((mask & F_OBSERVE) && c->harmed < 0)
        return bad(cmd, "%s is required", "--harmed yes|no");
    return -1;
}

static void free_attrs(common *c)
{
    for (size_t i = 0; i < c->n_attrs; i++)
        free(c->attr_store[i].key);
}

static int open_client(const common *c, const char *cmd, bg_client **out)
{
    bg_err err;
    bg_err_clear(&err);
    if (bg_client_create(c->addr, (unsigned)c->timeout_ms, out, &err) != BG_OK) {
        fprintf(stderr, "bayesguard %s: %s\n", cmd, err.msg);
        return BG_CLI_EXIT_USAGE;
    }
    return -1;
}

static int rpc_error(const char *cmd, const bg_rpc_result *st, const bg_err *err)
{
    if (st->code != 0)
        fprintf(stderr, "bayesguard %s: error: %s: %s\n", cmd, st->name, st->message);
    else
        fprintf(stderr, "bayesguard %s: error: %s\n", cmd, err->msg);
    return BG_CLI_EXIT_RPC;
}

/* Fill the action/context both eval and observe send. */
static void fill_action(common *c, Bayesguard__V1__Action *a, Bayesguard__V1__Context *ctx)
{
    bayesguard__v1__action__init(a);
    bayesguard__v1__context__init(ctx);
    a->tool = (char *)c->tool;
    if (c->args)
        a->arguments_json = (char *)c->args;
    if (c->id)
        a->id = (char *)c->id;
    a->features = c->features;
    a->n_features = c->n_features;
    a->attributes = c->attrs;
    a->n_attributes = c->n_attrs;
    if (c->session)
        ctx->session = (char *)c->session;
    if (c->agent)
        ctx->agent = (char *)c->agent;
    if (c->trace)
        ctx->trace_id = (char *)c->trace;
}

/* What eval and observe share: flags, client, the action and context. */
typedef struct action_cmd {
    common c;
    bg_client *cl;
    Bayesguard__V1__Action a;
    Bayesguard__V1__Context ctx;
    bg_rpc_result st;
    bg_err err;
} action_cmd;

/* Returns -1 to go on (then action_end must run), or an exit code. */
static int action_begin(int argc, char **argv, unsigned mask, action_cmd *x)
{
    x->cl = NULL;
    memset(&x->st, 0, sizeof(x->st));
    bg_err_clear(&x->err);
    int rc = parse(argc, argv, mask, &x->c);
    if (rc >= 0 || (rc = open_client(&x->c, argv[0], &x->cl)) >= 0) {
        free_attrs(&x->c);
        return rc;
    }
    fill_action(&x->c, &x->a, &x->ctx);
    return -1;
}

static void action_end(action_cmd *x, void *reply)
{
    bg_client_free(reply);
    bg_client_destroy(x->cl);
    free_attrs(&x->c);
}

int bg_cli_eval_main(int argc, char **argv)
{
    static action_cmd x;
    int rc = action_begin(argc, argv, F_BASE | F_ACTION, &x);
    if (rc >= 0)
        return rc;
    Bayesguard__V1__EvaluateRequest req = BAYESGUARD__V1__EVALUATE_REQUEST__INIT;
    req.action = &x.a;
    req.context = &x.ctx;
    if (x.c.policy)
        req.policy = (char *)x.c.policy;
    Bayesguard__V1__Verdict *v = NULL;
    if (bg_client_evaluate(x.cl, &req, &v, &x.st, &x.err) != BG_OK) {
        rc = rpc_error(argv[0], &x.st, &x.err);
    } else {
        const ProtobufCEnumValue *dv = protobuf_c_enum_descriptor_get_value(
            &bayesguard__v1__decision__descriptor, (int)v->decision);
        if (x.c.json) {
            bg_cli_json_print(stdout, &v->base);
        } else {
            printf("%s%s  harm_bound=%.6g threshold=%.6g policy=%s revision=%.12s\n",
                   dv ? dv->name : "?", v->shadow ? " (shadow)" : "", v->harm_bound, v->threshold,
                   v->policy, v->revision);
            if (v->cautious)
                printf("  cautious hypothesis %llu '%s' posterior=%.6g harm=%.6g\n",
                       (unsigned long long)v->cautious->id, v->cautious->label,
                       v->cautious->posterior, v->cautious->harm);
            printf("  posterior_predictive=%.6g plausible_set=%llu estimator=%s model=%s "
                   "bound=%s%s\n",
                   v->posterior_predictive, (unsigned long long)v->plausible_set_size, v->estimator,
                   v->model,
                   v->bound_kind == BAYESGUARD__V1__BOUND_KIND__SAMPLED ? "sampled" : "exact",
                   v->on_error_allowed ? " (engine error; on_error: allow)" : "");
            printf("  decision_id=%s eval_us=%llu observations=%llu\n", v->decision_id,
                   (unsigned long long)v->eval_us, (unsigned long long)v->observations);
            if (v->sampler) { /* a sampled verdict: its sampler's health */
                printf("  sampler %s tb_residual=%.4g ess=%.4g of %llu spread=%.4g "
                       "train_steps=%llu version_lag=%llu%s%s\n",
                       v->sampler->healthy ? "healthy" : "UNHEALTHY", v->sampler->tb_residual,
                       v->sampler->ess, (unsigned long long)v->samples,
                       v->sampler->log_weight_spread, (unsigned long long)v->sampler->train_steps,
                       (unsigned long long)v->sampler->version_lag,
                       v->sampler->reason[0] ? ": " : "", v->sampler->reason);
                if (v->sampler->archive_size) /* a posterior search archive (none: no line) */
                    printf("  archive size=%llu version_lag=%llu search_evaluations=%llu "
                           "search_cpu_us=%llu\n",
                           (unsigned long long)v->sampler->archive_size,
                           (unsigned long long)v->sampler->archive_version_lag,
                           (unsigned long long)v->sampler->search_evaluations,
                           (unsigned long long)v->sampler->search_cpu_us);
                if (v->sampler->context_kept || v->sampler->context_rounds ||
                    v->sampler->context_version_lag) /* a remembered context (none: no line) */
                    printf("  context kept=%llu rounds=%llu version_lag=%llu\n",
                           (unsigned long long)v->sampler->context_kept,
                           (unsigned long long)v->sampler->context_rounds,
                           (unsigned long long)v->sampler->context_version_lag);
            }
            if (v->receipt.len > 0) { /* for observe --receipt */
                printf("  receipt=");
                bg_cli_base64_write(stdout, &v->receipt);
                printf("\n");
            }
        }
        rc = v->decision == BAYESGUARD__V1__DECISION__ALLOW      ? BG_CLI_EXIT_OK
             : v->decision == BAYESGUARD__V1__DECISION__ESCALATE ? BG_CLI_EXIT_ESCALATE
                                                                 : BG_CLI_EXIT_NO;
    }
    action_end(&x, v);
    return rc;
}

int bg_cli_observe_main(int argc, char **argv)
{
    static action_cmd x;
    int rc = action_begin(argc, argv, F_BASE | F_ACTION | F_OBSERVE, &x);
    if (rc >= 0)
        return rc;
    Bayesguard__V1__ObserveRequest req = BAYESGUARD__V1__OBSERVE_REQUEST__INIT;
    req.action = &x.a;
    req.context = &x.ctx;
    if (x.c.policy)
        req.policy = (char *)x.c.policy;
    req.harmed = x.c.harmed;
    if (x.c.has_value) {
        req.measured_case = BAYESGUARD__V1__OBSERVE_REQUEST__MEASURED_VALUE;
        req.value = x.c.value;
    }
    if (x.c.decision_id)
        req.id = (char *)x.c.decision_id;
    uint8_t receipt[BG_RECEIPT_MAX]; /* the longest token the daemon mints */
    if (x.c.receipt) {
        if (bg_cli_base64_decode(x.c.receipt, receipt, sizeof(receipt), &req.receipt.len) != 0) {
            action_end(&x, NULL);
            return bad(argv[0], "--receipt '%s': expected the base64 receipt eval printed",
                       x.c.receipt);
        }
        req.receipt.data = receipt;
    }
    Bayesguard__V1__ObserveResponse *r = NULL;
    if (bg_client_observe(x.cl, &req, &r, &x.st, &x.err) != BG_OK) {
        rc = rpc_error(argv[0], &x.st, &x.err);
    } else {
        if (x.c.json) {
            bg_cli_json_print(stdout, &r->base);
        } else {
            printf("stored: policy=%s session='%s' observations=%llu revision=%.12s\n", r->policy,
                   r->session, (unsigned long long)r->observations, r->revision);
            if (r->posterior && r->posterior->hypotheses == 0)
                printf("  posterior not enumerated (a sampled policy): eval names its cautious "
                       "hypothesis\n");
            else if (r->posterior)
                printf("  most probable hypothesis %llu '%s' posterior=%.6g entropy=%.4g nats "
                       "(%llu hypotheses)\n",
                       (unsigned long long)r->posterior->map_id, r->posterior->map_label,
                       r->posterior->map_posterior, r->posterior->entropy_nats,
                       (unsigned long long)r->posterior->hypotheses);
        }
        rc = BG_CLI_EXIT_OK;
    }
    action_end(&x, r);
    return rc;
}

static void print_status(const Bayesguard__V1__StatusResponse *s)
{
    printf("bayesguardd %s  revision %s  uptime %.1f s%s\n", s->version, s->revision, s->uptime_s,
           s->draining ? "  DRAINING" : "");
    for (size_t i = 0; i < s->n_listen; i++)
        printf("  listening on %s\n", s->listen[i]);
    printf("  sessions=%llu observations=%llu evaluations=%llu in_flight=%llu\n",
           (unsigned long long)s->sessions, (unsigned long long)s->observations,
           (unsigned long long)s->evaluations, (unsigned long long)s->in_flight);
    printf("policies (%zu):\n", s->n_policies);
    for (size_t i = 0; i < s->n_policies; i++) {
        const Bayesguard__V1__PolicyInfo *p = s->policies[i];
        printf("  %-20s model=%s estimator=%s threshold=%g over=%s on_error=%s mode=%s "
               "session=%s outcomes=%s\n",
               p->name, p->model, p->estimator, p->threshold, p->over_threshold, p->on_error,
               p->mode, p->session, p->outcomes);
        printf("  %-20s tools:", "");
        for (size_t t = 0; t < p->n_tools; t++)
            printf(" %s", p->tools[t]);
        printf("\n");
    }
    if (s->reload) {
        const Bayesguard__V1__ReloadStatus *r = s->reload;
        printf("reloads: ok=%llu failed=%llu last=%s last_success_ms=%lld last_attempt_ms=%lld\n",
               (unsigned long long)r->reloads_ok, (unsigned long long)r->reloads_failed,
               r->last_trigger, (long long)r->last_success_unix_ms,
               (long long)r->last_attempt_unix_ms);
        for (size_t i = 0; i < r->n_last_errors; i++)
            printf("  error: %s\n", r->last_errors[i]);
    }
    if (s->observations_refused || s->observation_log_broken)
        printf("  observation log: %llu observations refused%s\n",
               (unsigned long long)s->observations_refused,
               s->observation_log_broken ? "; BROKEN: Observe is refused until a restart" : "");
    if (s->observations_quarantined)
        printf("  observation log: %llu observations quarantined at replay (over the memory "
               "limits; see quarantine.bglog in the data directory)\n",
               (unsigned long long)s->observations_quarantined);
    if (s->decision_log) {
        const Bayesguard__V1__DecisionLogStatus *d = s->decision_log;
        printf("decision log %s: appended=%llu written=%llu dropped=%llu lost=%llu "
               "write_errors=%llu reopens=%llu\n",
               d->path, (unsigned long long)d->appended, (unsigned long long)d->written,
               (unsigned long long)d->dropped, (unsigned long long)d->lost,
               (unsigned long long)d->write_errors, (unsigned long long)d->reopens);
    }
    for (size_t i = 0; i < s->n_plugins; i++)
        printf("plugin %s (%s)\n", s->plugins[i]->name, s->plugins[i]->kind);
    for (size_t i = 0; i < s->n_plugin_errors; i++)
        printf("plugin load error: %s\n", s->plugin_errors[i]);
}

/* status / health / reload: no request fields beyond --service. */
typedef int (*simple_call)(bg_client *cl, const common *c, ProtobufCMessage **out,
                           bg_rpc_result *st, bg_err *err);
typedef int (*simple_print)(const common *c, const ProtobufCMessage *m);

static int run_simple(int argc, char **argv, unsigned mask, simple_call call, simple_print pr)
{
    common c;
    bg_client *cl = NULL;
    int rc = parse(argc, argv, mask, &c);
    if (rc >= 0 || (rc = open_client(&c, argv[0], &cl)) >= 0)
        return rc;
    ProtobufCMessage *m = NULL;
    bg_rpc_result st;
    bg_err err;
    memset(&st, 0, sizeof(st));
    bg_err_clear(&err);
    if (call(cl, &c, &m, &st, &err) != BG_OK) {
        rc = rpc_error(argv[0], &st, &err);
    } else {
        if (c.json)
            bg_cli_json_print(stdout, m);
        rc = pr(&c, m);
    }
    bg_client_free(m);
    bg_client_destroy(cl);
    return rc;
}

static int call_status(bg_client *cl, const common *c, ProtobufCMessage **out, bg_rpc_result *st,
                       bg_err *err)
{
    (void)c;
    return bg_client_status(cl, (Bayesguard__V1__StatusResponse **)out, st, err);
}

static int print_status_reply(const common *c, const ProtobufCMessage *m)
{
    if (!c->json)
        print_status((const Bayesguard__V1__StatusResponse *)m);
    return BG_CLI_EXIT_OK;
}

int bg_cli_status_main(int argc, char **argv)
{
    return run_simple(argc, argv, F_BASE, call_status, print_status_reply);
}

static int call_health(bg_client *cl, const common *c, ProtobufCMessage **out, bg_rpc_result *st,
                       bg_err *err)
{
    return bg_client_health(cl, c->service, (Grpc__Health__V1__HealthCheckResponse **)out, st, err);
}

static int print_health_reply(const common *c, const ProtobufCMessage *m)
{
    const Grpc__Health__V1__HealthCheckResponse *h =
        (const Grpc__Health__V1__HealthCheckResponse *)m;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, (int)h->status);
    if (!c->json)
        printf("%s\n", ev ? ev->name : "?");
    return h->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               ? BG_CLI_EXIT_OK
               : BG_CLI_EXIT_NO;
}

int bg_cli_health_main(int argc, char **argv)
{
    return run_simple(argc, argv, F_BASE | F_SERVICE, call_health, print_health_reply);
}

static int call_reload(bg_client *cl, const common *c, ProtobufCMessage **out, bg_rpc_result *st,
                       bg_err *err)
{
    (void)c;
    return bg_client_reload(cl, (Bayesguard__V1__ReloadResponse **)out, st, err);
}

static int print_reload_reply(const common *c, const ProtobufCMessage *m)
{
    const Bayesguard__V1__ReloadResponse *r = (const Bayesguard__V1__ReloadResponse *)m;
    if (!c->json) {
        printf("%s: revision %s\n",
               r->ok ? "reloaded"
                     : "refused (the previous policies keep "
                       "serving)",
               r->revision);
        for (size_t i = 0; i < r->n_errors; i++)
            printf("  %s\n", r->errors[i]);
    }
    return r->ok ? BG_CLI_EXIT_OK : BG_CLI_EXIT_NO;
}

int bg_cli_reload_main(int argc, char **argv)
{
    return run_simple(argc, argv, F_BASE, call_reload, print_reload_reply);
}
