/*
 * metrics.c — the metrics registry: per-policy entries, collectors, and the
 * Prometheus text exposition (format 0.0.4). The contract, and why entries
 * are keyed by name and cached in the policy, are in metrics.h.
 *
 * Layout of an entry: plain relaxed atomic counters; the histogram keeps one
 * non-cumulative count per bucket (one add per observation) and is made
 * cumulative when rendered; the sum is kept in integer nanoseconds, so it is
 * exact and needs no compare-and-swap loop on a double.
 *
 * API (what to update when extending it):
 *   - a new registry family: a row in BG_METRICS_FAMILIES, its samples in
 *     render_* below, a line in docs/CONFIG.md `## Metrics`;
 *   - a new per-policy counter: a field in bg_metrics_policy, its recording
 *     function in metrics.h, its rendering in render_policies;
 *   - another module's families: a collector (bg_metrics_add_collector),
 *     nothing here.
 *
 * Threads and ownership: see metrics.h. `mu` guards the entry list (append
 * only), the collectors and rendering.
 */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* X(id, name, type, help) — the families the registry renders itself. */
#define BG_METRICS_FAMILIES(X)                                                                     \
    X(BG_MF_BUILD_INFO, "bayesguard_build_info", BG_METRIC_GAUGE,                                  \
      "The daemon's version, as a label; the value is always 1.")                                  \
    X(BG_MF_START_TIME, "bayesguard_start_time_seconds", BG_METRIC_GAUGE,                          \
      "When the daemon started, in seconds since the Unix epoch.")                                 \
    X(BG_MF_REVISION, "bayesguard_policy_revision_info", BG_METRIC_GAUGE,                          \
      "The live policy set's revision (content hash), as a label; the value is always 1.")         \
    X(BG_MF_POLICIES, "bayesguard_policies", BG_METRIC_GAUGE, "Policies in the live policy set.")  \
    X(BG_MF_RELOADS, "bayesguard_reloads_total", BG_METRIC_COUNTER,                                \
      "Policy reloads (SIGHUP, directory watch, Reload RPC) by result: ok (the new set is "        \
      "live) or refused (invalid; the previous set keeps serving).")                               \
    X(BG_MF_LAST_RELOAD, "bayesguard_last_reload_success_timestamp_seconds", BG_METRIC_GAUGE,      \
      "When the live policy set was loaded (at start or by a reload), in seconds since the "       \
      "Unix epoch.")                                                                               \
    X(BG_MF_EVALUATIONS, "bayesguard_evaluations_total", BG_METRIC_COUNTER,                        \
      "Decisions sent by Guard.Evaluate, by policy and decision (calls that ended in an error "    \
      "are in bayesguard_grpc_handled_total).")                                                    \
    X(BG_MF_SHADOW, "bayesguard_shadow_allowed_total", BG_METRIC_COUNTER,                          \
      "Actions a shadow-mode policy allowed that enforce mode would have denied or escalated.")    \
    X(BG_MF_ON_ERROR, "bayesguard_on_error_allowed_total", BG_METRIC_COUNTER,                      \
      "Actions allowed because the evaluation failed and the policy says on_error: allow.")        \
    X(BG_MF_DURATION, "bayesguard_evaluation_duration_seconds", BG_METRIC_HISTOGRAM,               \
      "Time from an Evaluate call's arrival to its verdict, by policy.")                           \
    X(BG_MF_OBSERVATIONS, "bayesguard_observations_total", BG_METRIC_COUNTER,                      \
      "Observations stored (Observe, ObserveStream), by policy and outcome.")                      \
    X(BG_MF_SESSIONS, "bayesguard_sessions", BG_METRIC_GAUGE,                                      \
      "Session posteriors held in memory.")                                                        \
    X(BG_MF_STORED_OBS, "bayesguard_stored_observations", BG_METRIC_GAUGE,                         \
      "Observations held by the engine (replayed from --data-dir at start, plus those stored "     \
      "since).")                                                                                   \
    X(BG_MF_ENGINE_BYTES, "bayesguard_engine_bytes", BG_METRIC_GAUGE,                              \
      "Memory the engine accounts for session posteriors and observations, in bytes.")             \
    X(BG_MF_OBS_REFUSED, "bayesguard_observations_refused_total", BG_METRIC_COUNTER,               \
      "Observations the data directory refused (disk full, I/O error): answered UNAVAILABLE, "     \
      "not stored.")                                                                               \
    X(BG_MF_OBS_BROKEN, "bayesguard_observation_log_broken", BG_METRIC_GAUGE,                      \
      "1 when a refused write could not be cut off the observation log, so every Observe is "      \
      "refused until bayesguardd restarts; else 0.")                                               \
    X(BG_MF_OBS_QUARANTINED, "bayesguard_observations_quarantined", BG_METRIC_GAUGE,               \
      "Observations replay could not fit in the memory limits at start (kept in "                  \
      "quarantine.bglog, in no posterior).")                                                       \
    X(BG_MF_OBS_SYNCS, "bayesguard_observation_log_syncs_total", BG_METRIC_COUNTER,                \
      "fdatasync calls of the observation log's appends (group commit: one per batch).")           \
    X(BG_MF_OBS_SNAPSHOTS, "bayesguard_observation_log_snapshots_total", BG_METRIC_COUNTER,        \
      "Snapshots written by compaction of the observation log.")                                   \
    X(BG_MF_SEARCH_RUNS, "bayesguard_sampler_search_runs_total", BG_METRIC_COUNTER,                \
      "Posterior searches run after a sampler's training round (all session samplers; "            \
      "docs/GFLOWNET.md, \"Posterior search archive\").")                                          \
    X(BG_MF_SEARCH_EVALS, "bayesguard_sampler_search_evaluations_total", BG_METRIC_COUNTER,        \
      "Reward evaluations (log prior + log likelihood of one hypothesis) of the posterior "        \
      "searches; spec.sampler.search bounds them per round.")                                      \
    X(BG_MF_SEARCH_CPU, "bayesguard_sampler_search_cpu_seconds_total", BG_METRIC_COUNTER,          \
      "Thread CPU time of the posterior searches (on the trainer thread, or inside Observe for "   \
      "inline training).")                                                                         \
    X(BG_MF_SEARCH_ARCHIVE, "bayesguard_sampler_search_archive_size", BG_METRIC_GAUGE,             \
      "Hypotheses in the archive the newest posterior search made (at most 1024; 0 before the "    \
      "first search).")                                                                            \
    X(BG_MF_CTX_ROUNDS, "bayesguard_sampler_context_search_rounds_total", BG_METRIC_COUNTER,       \
      "Per-context search rounds: one after a session sampler's training round that had "          \
      "remembered contexts (all session samplers; docs/GFLOWNET.md, \"A search per remembered "    \
      "context\").")                                                                               \
    X(BG_MF_CTX_CONTEXTS, "bayesguard_sampler_context_search_contexts_total", BG_METRIC_COUNTER,   \
      "Contexts searched by the per-context search rounds (each round searches every context "     \
      "its sampler remembers; spec.sampler.contexts caps them per sampler).")                      \
    X(BG_MF_CTX_LOOKED, "bayesguard_sampler_context_search_hypotheses_total", BG_METRIC_COUNTER,   \
      "Hypotheses the per-context searches looked at; spec.sampler.context_search bounds them "    \
      "per context and round.")                                                                    \
    X(BG_MF_CTX_EVALS, "bayesguard_sampler_context_search_evaluations_total", BG_METRIC_COUNTER,   \
      "Reward evaluations (log prior + log likelihood of one hypothesis) of the per-context "      \
      "searches; log R is shared between a round's contexts, so at most the hypotheses looked "    \
      "at.")                                                                                       \
    X(BG_MF_CTX_CPU, "bayesguard_sampler_context_search_cpu_seconds_total", BG_METRIC_COUNTER,     \
      "Thread CPU time of the per-context searches (on the trainer thread, or inside Observe "     \
      "for inline training).")                                                                     \
    X(BG_MF_CTX_REMEMBERED, "bayesguard_sampler_contexts_remembered", BG_METRIC_GAUGE,             \
      "Contexts (actions less their call id) remembered now by the live policies' samplers, "      \
      "the per-context search's work list; at most spec.sampler.contexts per session sampler "     \
      "(docs/GFLOWNET.md, \"A search per remembered context\").")

enum {
#define BG_MF_ENUM(id, name, type, help) id,
    BG_METRICS_FAMILIES(BG_MF_ENUM)
#undef BG_MF_ENUM
};

static const struct family {
    const char *name;
    bg_metric_type type;
    const char *help;
} families[] = {
#define BG_MF_ROW(id, name, type, help) [id] = {name, type, help},
    BG_METRICS_FAMILIES(BG_MF_ROW)
#undef BG_MF_ROW
};

/* X(decision, label) — the decisions of bayesguard_evaluations_total. */
#define BG_METRICS_DECISIONS(X)                                                                    \
    X(BG_DECISION_ALLOW, "allow")                                                                  \
    X(BG_DECISION_DENY, "deny")                                                                    \
    X(BG_DECISION_ESCALATE, "escalate")

enum {
#define BG_MD_ENUM(d, label) BG_MD_##d,
    BG_METRICS_DECISIONS(BG_MD_ENUM)
#undef BG_MD_ENUM
        BG_MD__COUNT
};

/* X(upper bound in ns, le label) — evaluation duration buckets, 25 µs to
 * 100 ms (a cheap decision takes tens of µs; a sampled or LM-scored one,
 * milliseconds). The le labels are spelled as Go's client libraries spell
 * them, so dashboards written for those match. */
#define BG_METRICS_BUCKETS(X)                                                                      \
    X(25000, "2.5e-05")                                                                            \
    X(50000, "5e-05")                                                                              \
    X(100000, "0.0001")                                                                            \
    X(250000, "0.00025")                                                                           \
    X(500000, "0.0005")                                                                            \
    X(1000000, "0.001")                                                                            \
    X(2500000, "0.0025")                                                                           \
    X(5000000, "0.005")                                                                            \
    X(10000000, "0.01")                                                                            \
    X(25000000, "0.025")                                                                           \
    X(50000000, "0.05")                                                                            \
    X(100000000, "0.1")

static const uint64_t bucket_ns[] = {
#define BG_MB_NS(ns, le) ns,
    BG_METRICS_BUCKETS(BG_MB_NS)
#undef BG_MB_NS
};
static const char *const bucket_le[] = {
#define BG_MB_LE(ns, le) le,
    BG_METRICS_BUCKETS(BG_MB_LE)
#undef BG_MB_LE
};
#define N_BUCKETS (sizeof bucket_ns / sizeof bucket_ns[0])

/* Distinct policy names beyond this share the fallback entry. Names come
 * from the operator's policy files, so this only bounds a runaway reload
 * loop that renames policies. */
#define BG_METRICS_MAX_POLICIES 4096
#define BG_METRICS_FALLBACK "(unaccounted)"

struct bg_metrics_policy {
    struct bg_metrics_policy *next; /* creation order; under mu */
    char *name;                     /* owned */
    atomic_uint_fast64_t evaluations[BG_MD__COUNT];
    atomic_uint_fast64_t shadow_allowed;
    atomic_uint_fast64_t on_error_allowed;
    atomic_uint_fast64_t observations[2];        /* [harmed] */
    atomic_uint_fast64_t buckets[N_BUCKETS + 1]; /* non-cumulative; last: over 0.1 s */
    atomic_uint_fast64_t sum_ns;
};

typedef struct collector {
    struct collector *next;
    bg_metrics_collect_fn fn;
    void *arg;
} collector;

struct bg_metrics {
    bg_metrics_opts opts;
    char *version;     /* owned copy */
    double start_time; /* Unix seconds */
    pthread_mutex_t mu;
    bg_metrics_policy *head, *tail; /* under mu */
    size_t n_policies;              /* under mu */
    bg_metrics_policy fallback;     /* never in the list until used */
    int fallback_listed;            /* under mu */
    collector *collectors;          /* under mu */
};

int bg_metrics_create(const bg_metrics_opts *opts, bg_metrics **out, bg_err *err)
{
    *out = NULL;
    bg_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return bg_err_set(err, BG_ENOMEM, "metrics: out of memory");
    m->opts = *opts;
    m->version = strdup(opts->version ? opts->version : "");
    m->fallback.name = strdup(BG_METRICS_FALLBACK);
    if (m->version == NULL || m->fallback.name == NULL) {
        free(m->version);
        free(m->fallback.name);
        free(m);
        return bg_err_set(err, BG_ENOMEM, "metrics: out of memory");
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return BG_OK;
}

void bg_metrics_destroy(bg_metrics *m)
{
    if (m == NULL)
        return;
    for (bg_metrics_policy *e = m->head, *n; e != NULL; e = n) {
        n = e->next;
        if (e != &m->fallback) {
            free(e->name);
            free(e);
        }
    }
    while (m->collectors != NULL) {
        collector *n = m->collectors->next;
        free(m->collectors);
        m->collectors = n;
    }
    free(m->fallback.name);
    free(m->version);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---------------------------------------------------------- hot path */

static void list_append(bg_metrics *m, bg_metrics_policy *e)
{
    e->next = NULL;
    if (m->tail != NULL)
        m->tail->next = e;
    else
        m->head = e;
    m->tail = e;
}

/* Under mu: the entry named `name`, created when absent. */
static bg_metrics_policy *get_or_create(bg_metrics *m, const char *name)
{
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    bg_metrics_policy *e = NULL;
    if (m->n_policies < BG_METRICS_MAX_POLICIES && (e = calloc(1, sizeof *e)) != NULL &&
        (e->name = strdup(name)) != NULL) {
        m->n_policies++;
        list_append(m, e);
        return e;
    }
    free(e);
    if (!m->fallback_listed) {
        m->fallback_listed = 1;
        list_append(m, &m->fallback);
    }
    return &m->fallback;
}

bg_metrics_policy *bg_metrics_policy_of(bg_metrics *m, const bg_policy *p)
{
    /* The cache slot is the one field of a published policy that changes;
     * the set allocated it writable. */
    bg_policy *mp = (bg_policy *)p;
    bg_metrics_policy *e = atomic_load_explicit(&mp->metrics, memory_order_acquire);
    if (e != NULL)
        return e;
    pthread_mutex_lock(&m->mu);
    e = get_or_create(m, p->name);
    pthread_mutex_unlock(&m->mu);
    atomic_store_explicit(&mp->metrics, e, memory_order_release);
    return e;
}

static void bump(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void bg_metrics_evaluation(bg_metrics_policy *e, bg_decision d, int shadow_allowed,
                           int on_error_allowed, uint64_t elapsed_ns)
{
    switch (d) {
#define BG_MD_COUNT(dec, label)                                                                    \
    case dec:                                                                                      \
        bump(&e->evaluations[BG_MD_##dec], 1);                                                     \
        break;
        BG_METRICS_DECISIONS(BG_MD_COUNT)
#undef BG_MD_COUNT
    }
    if (shadow_allowed)
        bump(&e->shadow_allowed, 1);
    if (on_error_allowed)
        bump(&e->on_error_allowed, 1);
    size_t b = 0;
    while (b < N_BUCKETS && elapsed_ns > bucket_ns[b])
        b++;
    bump(&e->buckets[b], 1);
    bump(&e->sum_ns, elapsed_ns);
}

void bg_metrics_observation(bg_metrics_policy *e, int harmed)
{
    bump(&e->observations[harmed ? 1 : 0], 1);
}

/* ---------------------------------------------------------- collectors */

int bg_metrics_add_collector(bg_metrics *m, bg_metrics_collect_fn fn, void *arg)
{
    collector *c = calloc(1, sizeof *c);
    if (c == NULL)
        return BG_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&m->mu);
    collector **pp = &m->collectors;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = c; /* scraped in registration order */
    pthread_mutex_unlock(&m->mu);
    return BG_OK;
}

void bg_metrics_remove_collector(bg_metrics *m, bg_metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&m->mu);
    for (collector **pp = &m->collectors; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->fn == fn && (*pp)->arg == arg) {
            collector *c = *pp;
            *pp = c->next;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---------------------------------------------------------- writer */

struct bg_metrics_writer {
    char *buf;
    size_t len, cap;
    int oom;
};

static void put(bg_metrics_writer *w, const char *s, size_t n)
{
    if (w->oom)
        return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (w->len + n + 1 > cap)
            cap *= 2;
        char *b = realloc(w->buf, cap);
        if (b == NULL) {
            w->oom = 1;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(bg_metrics_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* s with '\\' and '\n' escaped, and '"' too when in a label value. */
static void put_escaped(bg_metrics_writer *w, const char *s, int label)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : *s == '"' && label ? "\\\""
                                               : 0;
        if (esc == NULL)
            continue;
        put(w, run, (size_t)(s - run));
        puts_(w, esc);
        run = s + 1;
    }
    put(w, run, (size_t)(s - run));
}

static const char *type_name(bg_metric_type t)
{
    switch (t) {
#define BG_METRIC_TYPE_CASE(id, text)                                                              \
    case id:                                                                                       \
        return text;
        BG_METRIC_TYPES(BG_METRIC_TYPE_CASE)
#undef BG_METRIC_TYPE_CASE
    }
    return "untyped";
}

int bg_metrics_name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == ':'))
            return 0;
    return 1;
}

void bg_metrics_write_family(bg_metrics_writer *w, const char *name, bg_metric_type type,
                             const char *help)
{
    puts_(w, "# HELP ");
    puts_(w, name);
    puts_(w, " ");
    put_escaped(w, help, 0);
    puts_(w, "\n# TYPE ");
    puts_(w, name);
    puts_(w, " ");
    puts_(w, type_name(type));
    puts_(w, "\n");
}

void bg_metrics_write_sample(bg_metrics_writer *w, const char *name, const bg_metrics_label *labels,
                             size_t n_labels, double value)
{
    puts_(w, name);
    for (size_t i = 0; i < n_labels; i++) {
        puts_(w, i == 0 ? "{" : ",");
        puts_(w, labels[i].name);
        puts_(w, "=\"");
        put_escaped(w, labels[i].value ? labels[i].value : "", 1);
        puts_(w, "\"");
    }
    char num[64];
    if (isnan(value))
        snprintf(num, sizeof num, "NaN");
    else if (isinf(value))
        snprintf(num, sizeof num, value > 0 ? "+Inf" : "-Inf");
    else if (value == floor(value) && fabs(value) < 9007199254740992.0)
        snprintf(num, sizeof num, "%.0f", value);
    else /* the shortest text that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++)
            if (snprintf(num, sizeof num, "%.*g", prec, value) > 0 && strtod(num, NULL) == value)
                break;
    puts_(w, n_labels > 0 ? "} " : " ");
    puts_(w, num);
    puts_(w, "\n");
}

/* ---------------------------------------------------------- rendering */

static void family(bg_metrics_writer *w, int id)
{
    bg_metrics_write_family(w, families[id].name, families[id].type, families[id].help);
}

static void sample1(bg_metrics_writer *w, int id, const char *label, const char *value, double v)
{
    bg_metrics_label l = {label, value};
    bg_metrics_write_sample(w, families[id].name, &l, label ? 1 : 0, v);
}

static double load(atomic_uint_fast64_t *c)
{
    return (double)atomic_load_explicit(c, memory_order_relaxed);
}

static void render_store(bg_metrics *m, bg_metrics_writer *w)
{
    if (m->opts.store == NULL)
        return;
    bg_policy_status *st = malloc(sizeof *st);
    if (st == NULL) {
        w->oom = 1;
        return;
    }
    bg_policy_store_status(m->opts.store, st);
    family(w, BG_MF_REVISION);
    sample1(w, BG_MF_REVISION, "revision", st->revision, 1);
    family(w, BG_MF_POLICIES);
    sample1(w, BG_MF_POLICIES, NULL, NULL, (double)st->policies);
    family(w, BG_MF_RELOADS);
    sample1(w, BG_MF_RELOADS, "result", "ok", (double)st->reloads_ok);
    sample1(w, BG_MF_RELOADS, "result", "refused", (double)st->reloads_failed);
    family(w, BG_MF_LAST_RELOAD);
    sample1(w, BG_MF_LAST_RELOAD, NULL, NULL, (double)st->last_success_unix_ms / 1e3);
    free(st);
}

/* Under mu. One family at a time over every entry (the format wants a
 * family's samples together). */
static void render_policies(bg_metrics *m, bg_metrics_writer *w)
{
    static const char *const decisions[] = {
#define BG_MD_LABEL(d, label) label,
        BG_METRICS_DECISIONS(BG_MD_LABEL)
#undef BG_MD_LABEL
    };
    family(w, BG_MF_EVALUATIONS);
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next) {
        for (int d = 0; d < BG_MD__COUNT; d++) {
            bg_metrics_label l[2] = {{"policy", e->name}, {"decision", decisions[d]}};
            bg_metrics_write_sample(w, families[BG_MF_EVALUATIONS].name, l, 2,
                                    load(&e->evaluations[d]));
        }
    }
    family(w, BG_MF_SHADOW);
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next)
        sample1(w, BG_MF_SHADOW, "policy", e->name, load(&e->shadow_allowed));
    family(w, BG_MF_ON_ERROR);
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next)
        sample1(w, BG_MF_ON_ERROR, "policy", e->name, load(&e->on_error_allowed));
    family(w, BG_MF_DURATION);
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load_explicit(&e->buckets[b], memory_order_relaxed);
            bg_metrics_label l[2] = {{"policy", e->name},
                                     {"le", b < N_BUCKETS ? bucket_le[b] : "+Inf"}};
            bg_metrics_write_sample(w, "bayesguard_evaluation_duration_seconds_bucket", l, 2,
                                    (double)cum);
        }
        bg_metrics_label l = {"policy", e->name};
        bg_metrics_write_sample(w, "bayesguard_evaluation_duration_seconds_sum", &l, 1,
                                load(&e->sum_ns) / 1e9);
        bg_metrics_write_sample(w, "bayesguard_evaluation_duration_seconds_count", &l, 1,
                                (double)cum);
    }
    family(w, BG_MF_OBSERVATIONS);
    for (bg_metrics_policy *e = m->head; e != NULL; e = e->next) {
        for (int h = 0; h < 2; h++) {
            bg_metrics_label l[2] = {{"policy", e->name}, {"harmed", h ? "true" : "false"}};
            bg_metrics_write_sample(w, families[BG_MF_OBSERVATIONS].name, l, 2,
                                    load(&e->observations[h]));
        }
    }
}

static void render_engine(bg_metrics *m, bg_metrics_writer *w)
{
    if (m->opts.engine == NULL)
        return;
    bg_engine_stats es;
    memset(&es, 0, sizeof es);
    bg_engine_stats_get(m->opts.engine, &es);
    family(w, BG_MF_SESSIONS);
    sample1(w, BG_MF_SESSIONS, NULL, NULL, (double)es.sessions);
    family(w, BG_MF_STORED_OBS);
    sample1(w, BG_MF_STORED_OBS, NULL, NULL, (double)es.observations);
    family(w, BG_MF_ENGINE_BYTES);
    sample1(w, BG_MF_ENGINE_BYTES, NULL, NULL, (double)es.bytes);
    family(w, BG_MF_OBS_REFUSED);
    sample1(w, BG_MF_OBS_REFUSED, NULL, NULL, (double)es.store_refused);
    family(w, BG_MF_OBS_BROKEN);
    sample1(w, BG_MF_OBS_BROKEN, NULL, NULL, es.store_broken ? 1.0 : 0.0);
    family(w, BG_MF_OBS_QUARANTINED);
    sample1(w, BG_MF_OBS_QUARANTINED, NULL, NULL, (double)es.store_quarantined);
    family(w, BG_MF_OBS_SYNCS);
    sample1(w, BG_MF_OBS_SYNCS, NULL, NULL, (double)es.store_syncs);
    family(w, BG_MF_OBS_SNAPSHOTS);
    sample1(w, BG_MF_OBS_SNAPSHOTS, NULL, NULL, (double)es.store_snapshots);
}

/* The sampled path's posterior search and per-context search
 * (engine/sampled.h): process-wide counters of the trainer, read with
 * atomic loads; `held`: the contexts the live set's samplers remember
 * (bg_sampled_contexts: short mutexes, none the trainer holds for a
 * round), summed by the caller. */
static void render_search(bg_metrics *m, bg_metrics_writer *w, size_t held)
{
    if (m->opts.sampled == NULL)
        return;
    uint64_t runs, evals, ns;
    bg_sampled_trainer_search_stats(m->opts.sampled, &runs, &evals, &ns);
    family(w, BG_MF_SEARCH_RUNS);
    sample1(w, BG_MF_SEARCH_RUNS, NULL, NULL, (double)runs);
    family(w, BG_MF_SEARCH_EVALS);
    sample1(w, BG_MF_SEARCH_EVALS, NULL, NULL, (double)evals);
    family(w, BG_MF_SEARCH_CPU);
    sample1(w, BG_MF_SEARCH_CPU, NULL, NULL, (double)ns / 1e9);
    family(w, BG_MF_SEARCH_ARCHIVE);
    sample1(w, BG_MF_SEARCH_ARCHIVE, NULL, NULL,
            (double)bg_sampled_trainer_search_size(m->opts.sampled));
    /* the per-context search (engine/sampled_context.c) */
    uint64_t rounds, contexts, looked;
    bg_sampled_trainer_context_stats(m->opts.sampled, &rounds, &contexts, &looked, &evals, &ns);
    family(w, BG_MF_CTX_ROUNDS);
    sample1(w, BG_MF_CTX_ROUNDS, NULL, NULL, (double)rounds);
    family(w, BG_MF_CTX_CONTEXTS);
    sample1(w, BG_MF_CTX_CONTEXTS, NULL, NULL, (double)contexts);
    family(w, BG_MF_CTX_LOOKED);
    sample1(w, BG_MF_CTX_LOOKED, NULL, NULL, (double)looked);
    family(w, BG_MF_CTX_EVALS);
    sample1(w, BG_MF_CTX_EVALS, NULL, NULL, (double)evals);
    family(w, BG_MF_CTX_CPU);
    sample1(w, BG_MF_CTX_CPU, NULL, NULL, (double)ns / 1e9);
    family(w, BG_MF_CTX_REMEMBERED);
    sample1(w, BG_MF_CTX_REMEMBERED, NULL, NULL, (double)held);
}

/* Plugin counters (host->metric_add): the plugin ABI names each one
 * bayesguard_plugin_<plugin>_<name> and calls it a counter, so each is its
 * own counter family under that name. */
static void plugin_metric(void *ctx, const char *name, double value)
{
    bg_metrics_writer *w = ctx;
    if (!bg_metrics_name_ok(name))
        return;
    bg_metrics_write_family(
        w, name, BG_METRIC_COUNTER,
        "A plugin's counter (host->metric_add in include/bayesguard/plugin.h).");
    bg_metrics_write_sample(w, name, NULL, 0, value);
}

int bg_metrics_render(bg_metrics *m, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    bg_metrics_writer w = {0};
    /* Every policy of the live set has its series from the start (a rate
     * over a series that appears with its first count misses that count). */
    /* ... and the contexts the live set's samplers remember now (a
     * reload's successor shares its predecessor's session samplers, so each
     * is counted once), read here: the last reference to an old set may be
     * dropped here, and what that destroys must not run under mu */
    size_t held = 0;
    if (m->opts.store != NULL) {
        bg_policy_set *set = bg_policy_store_acquire(m->opts.store);
        for (size_t i = 0; i < bg_policy_set_count(set); i++) {
            const bg_policy *p = bg_policy_set_at(set, i);
            bg_metrics_policy_of(m, p);
            if (p->guard.sampled != NULL)
                held += bg_sampled_contexts(p->guard.sampled);
        }
        bg_policy_set_unref(set);
    }
    family(&w, BG_MF_BUILD_INFO);
    sample1(&w, BG_MF_BUILD_INFO, "version", m->version, 1);
    family(&w, BG_MF_START_TIME);
    sample1(&w, BG_MF_START_TIME, NULL, NULL, m->start_time);
    render_store(m, &w);
    pthread_mutex_lock(&m->mu);
    render_policies(m, &w);
    render_engine(m, &w);
    render_search(m, &w, held);
    if (m->opts.plugins != NULL)
        bg_plugin_host_metrics(m->opts.plugins, plugin_metric, &w);
    for (collector *c = m->collectors; c != NULL; c = c->next)
        c->fn(c->arg, &w);
    pthread_mutex_unlock(&m->mu);
    if (w.oom || w.buf == NULL) {
        free(w.buf);
        return BG_ENOMEM;
    }
    *text = w.buf;
    *len = w.len;
    return BG_OK;
}
