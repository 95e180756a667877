/*
 * rpc_server_metrics.c — what the gRPC server exports to the metrics
 * registry (daemon/metrics/metrics.h) through a collector: finished calls
 * by method and status code, calls in flight, and whether it is draining.
 *
 * Why a collector and not registry code: the method list (BG_RPC_METHODS)
 * and the status codes (BG_RPC_CODES) belong to this module; the registry
 * stays ignorant of gRPC. The counts are a fixed array of relaxed atomics in
 * the server (srv->handled[method][code]), one add per finished call, so
 * counting costs the data plane no lock and no lookup.
 *
 * Families (docs/CONFIG.md `## Metrics`):
 *   bayesguard_grpc_handled_total{method,code}  counter (every method has
 *     its code="OK" series from the start; other codes once they occur;
 *     unregistered paths are method="unknown", which keeps the label set
 *     bounded whatever clients send)
 *   bayesguard_in_flight_calls                  gauge (as Status reports it)
 *   bayesguard_draining                         gauge (1 from SIGTERM on)
 *   bayesguard_decision_log_lines_total{result} counter, with --decision-log:
 *     written | dropped (the writer fell behind) | lost (the write failed)
 *   bayesguard_decision_log_write_errors_total  counter, with --decision-log
 *   bayesguard_escalations_pending              gauge   } the escalation table
 *   bayesguard_escalations_refused_total{reason} counter} (daemon/escalation;
 *   bayesguard_escalation_resolutions_total{result}     } docs/ESCALATIONS.md)
 *   bayesguard_escalation_wait_seconds          histogram, ESCALATE -> settled
 *
 * Threads: bg__rpc_count_handled on any thread that finishes or recycles a
 * call; the collector on the scraping thread; start/stop on the loop thread.
 */
#include "rpc/rpc_priv.h"

void bg__rpc_count_handled(bg__rpc_call *c, grpc_status_code code)
{
    if (c->handled)
        return;
    c->handled = 1;
    int k = (int)code;
    if (k < 0 || k >= (int)BG_RPC_N_CODES)
        k = GRPC_STATUS_UNKNOWN;
    atomic_fetch_add_explicit(&c->srv->handled[c->method][k], 1, memory_order_relaxed);
}

/* The escalation table's families (daemon/escalation), when there is one. */
static void collect_escalations(bg_rpc_server *s, bg_metrics_writer *w)
{
    if (s->opts.escalations == NULL)
        return;
    bg_escalation_stats es;
    bg_escalation_stats_get(s->opts.escalations, &es);
    bg_metrics_write_family(w, "bayesguard_escalations_pending", BG_METRIC_GAUGE,
                            "Escalations waiting for a person (ESCALATE verdicts not yet "
                            "approved, rejected or expired).");
    bg_metrics_write_sample(w, "bayesguard_escalations_pending", NULL, 0, (double)es.pending);
    bg_metrics_write_family(w, "bayesguard_escalations_refused_total", BG_METRIC_COUNTER,
                            "ESCALATE verdicts turned into DENY by reason: table_full "
                            "(--max-escalations), identity_quota "
                            "(--max-escalations-per-identity), reserved (the caller holds one "
                            "and the free slots are kept for identities with none), "
                            "write_failed (--data-dir).");
    for (int k = 0; k < BG_ESC_N_REFUSALS; k++) {
        bg_metrics_label l = {"reason", bg_esc_refusal_label(k)};
        bg_metrics_write_sample(w, "bayesguard_escalations_refused_total", &l, 1,
                                (double)es.refused[k]);
    }
    bg_metrics_write_family(w, "bayesguard_escalation_resolutions_total", BG_METRIC_COUNTER,
                            "Settled escalations by result: approved, rejected (by a person) "
                            "or expired (nobody answered in the policy's timeout).");
    const struct {
        const char *result;
        int state;
    } res[] = {
        {"approved", BG_ESC_APPROVED}, {"rejected", BG_ESC_REJECTED}, {"expired", BG_ESC_EXPIRED}};
    for (size_t i = 0; i < sizeof res / sizeof res[0]; i++) {
        bg_metrics_label l = {"result", res[i].result};
        bg_metrics_write_sample(w, "bayesguard_escalation_resolutions_total", &l, 1,
                                (double)es.resolved[res[i].state]);
    }
    bg_metrics_write_family(w, "bayesguard_escalation_wait_seconds", BG_METRIC_HISTOGRAM,
                            "Time from an ESCALATE verdict to its settlement (approve, reject "
                            "or expiry).");
    static const char *const le[] = {
#define BG_ESC_LE(b) #b,
        BG_ESC_WAIT_BUCKETS(BG_ESC_LE)
#undef BG_ESC_LE
            "+Inf"};
    for (size_t b = 0; b <= BG_ESC_N_BUCKETS; b++) {
        bg_metrics_label l = {"le", le[b]};
        bg_metrics_write_sample(w, "bayesguard_escalation_wait_seconds_bucket", &l, 1,
                                (double)es.wait_le[b]);
    }
    bg_metrics_write_sample(w, "bayesguard_escalation_wait_seconds_sum", NULL, 0, es.wait_sum_s);
    bg_metrics_write_sample(w, "bayesguard_escalation_wait_seconds_count", NULL, 0,
                            (double)es.wait_count);
}

static void collect(void *arg, bg_metrics_writer *w)
{
    bg_rpc_server *s = arg;
    bg_metrics_write_family(w, "bayesguard_grpc_handled_total", BG_METRIC_COUNTER,
                            "gRPC calls finished, by full method name and status code "
                            "(method=\"unknown\": a method this server does not serve).");
    for (int m = 0; m < BG_M__COUNT; m++) {
        for (int k = 0; k < BG_RPC_N_CODES; k++) {
            uint64_t n = atomic_load_explicit(&s->handled[m][k], memory_order_relaxed);
            if (n == 0 && k != GRPC_STATUS_OK)
                continue;
            const char *path = bg__rpc_method_name(m);
            bg_metrics_label l[2] = {{"method", path ? path : "unknown"},
                                     {"code", bg_rpc_code_name(k)}};
            bg_metrics_write_sample(w, "bayesguard_grpc_handled_total", l, 2, (double)n);
        }
    }
    bg_metrics_write_family(w, "bayesguard_in_flight_calls", BG_METRIC_GAUGE,
                            "gRPC calls between their arrival and their last batch (as "
                            "Guard.Status reports in_flight).");
    bg_metrics_write_sample(w, "bayesguard_in_flight_calls", NULL, 0, (double)bg__rpc_in_flight(s));
    bg_metrics_write_family(w, "bayesguard_draining", BG_METRIC_GAUGE,
                            "1 once a SIGTERM/SIGINT started the drain (new calls get "
                            "UNAVAILABLE, health is NOT_SERVING), else 0.");
    bg_metrics_write_sample(w, "bayesguard_draining", NULL, 0,
                            atomic_load(&s->draining) ? 1.0 : 0.0);
    collect_escalations(s, w);
    if (s->opts.decisions == NULL)
        return;
    bg_decision_log_stats ds;
    bg_decision_log_stats_get(s->opts.decisions, &ds);
    bg_metrics_write_family(w, "bayesguard_decision_log_lines_total", BG_METRIC_COUNTER,
                            "Decision log lines by result: written, dropped (the writer fell "
                            "behind; not written) or lost (the file refused the write).");
    const struct {
        const char *result;
        uint64_t n;
    } lines[] = {{"written", ds.written}, {"dropped", ds.dropped}, {"lost", ds.lost}};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        bg_metrics_label l = {"result", lines[i].result};
        bg_metrics_write_sample(w, "bayesguard_decision_log_lines_total", &l, 1,
                                (double)lines[i].n);
    }
    bg_metrics_write_family(w, "bayesguard_decision_log_write_errors_total", BG_METRIC_COUNTER,
                            "Writes of a batch of decision log lines that the file refused.");
    bg_metrics_write_sample(w, "bayesguard_decision_log_write_errors_total", NULL, 0,
                            (double)ds.write_errors);
}

int bg__rpc_metrics_start(bg_rpc_server *s, bg_err *err)
{
    if (s->opts.metrics == NULL)
        return BG_OK;
    if (bg_metrics_add_collector(s->opts.metrics, collect, s) != BG_OK)
        return bg_err_set(err, BG_ENOMEM, "rpc: out of memory registering its metrics");
    return BG_OK;
}

void bg__rpc_metrics_stop(bg_rpc_server *s)
{
    if (s->opts.metrics != NULL)
        bg_metrics_remove_collector(s->opts.metrics, collect, s);
}
