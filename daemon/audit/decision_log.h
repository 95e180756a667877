/*
 * decision_log.h — the decision log: one JSON line per Evaluate outcome
 * and one per settled escalation (a resolution line, see
 * docs/ESCALATIONS.md),
 * the audit trail of what the guardrail allowed, denied or escalated, why
 * (bound, threshold, the cautious hypothesis) and for whom (tool, session,
 * agent, trace id). Evaluations that failed are logged too, with the gRPC
 * code and message, so a refused or broken call leaves a trace.
 *
 * Shape: the request thread formats its line on its own stack and copies
 * it into a pending buffer under a mutex (no I/O, no allocation in the
 * common case); one writer thread swaps the buffer out and writes it with
 * write(2). So a slow or full disk never delays a decision. The pending
 * buffer and the batch being written are bounded together
 * (max_queued_bytes): past it, lines are dropped and counted, never
 * blocked on.
 *
 * Invariants:
 *   1. appended == written + dropped + lost + (lines still pending).
 *   2. Every line in the file is whole: a write that fails half way is cut
 *      back (ftruncate) to the length before the batch, where the file is
 *      a regular file; its lines count as lost.
 *   3. The action's arguments_json is never logged (it may hold secrets);
 *      the action id and trace id link a line to the agent's own records.
 *   4. A line's size does not depend on the client: each string the request
 *      chose (tool, action id, session, agent, trace id, session key) is cut
 *      at BG_DECISION_LOG_MAX_FIELD bytes, on a UTF-8 boundary, and ends in
 *      "...(N bytes)" with its full length. Otherwise a megabyte of control
 *      bytes (6 MB escaped) in one field would have its line dropped — an
 *      outcome without a trace — or fill the queue that other lines need.
 *
 * Threads: append and stats from any thread; reopen from any thread (the
 * writer reopens before its next write — logrotate's "move, then HUP");
 * open/close on one thread. Ownership: the log owns its file descriptor
 * and a copy of the path; records are borrowed for the call.
 */
#ifndef BG_DECISION_LOG_H
#define BG_DECISION_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/bg_err.h"

#define BG_DECISION_LOG_DEFAULT_QUEUE (16u << 20)
#define BG_DECISION_LOG_DEFAULT_CLOSE_MS 5000u
/* Bytes of one request-chosen string written before it is cut. */
#define BG_DECISION_LOG_MAX_FIELD 1024

typedef struct bg_decision_log bg_decision_log;

typedef struct bg_decision_log_opts {
    const char *path;          /* a file (appended to, created 0640), or "-" for stdout */
    size_t max_queued_bytes;   /* 0 = BG_DECISION_LOG_DEFAULT_QUEUE */
    unsigned close_timeout_ms; /* 0 = BG_DECISION_LOG_DEFAULT_CLOSE_MS (see close) */
} bg_decision_log_opts;

/* One Evaluate outcome. Strings are borrowed and may be NULL (written as
 * ""). A decision has `decision` set ("ALLOW", "DENY", "ESCALATE"); a
 * failed evaluation has `error_code` (the gRPC code name) and `error`
 * instead, and only the fields known when it failed. */
typedef struct bg_decision_record {
    const char *decision_id;
    const char *decision;
    const char *error_code;
    const char *error;
    const char *policy, *revision, *model, *estimator;
    const char *tool, *action_id, *session, *agent, *trace_id; /* as the request says */
    const char *peer;        /* who called, as the listener tells it (bg_peer); "" unknown */
    int resolved;            /* a policy was found: the fields below are meaningful */
    const char *session_key; /* whose posterior: the policy's spec.session of the request */
    double harm_bound, threshold, posterior_predictive;
    const char *over_threshold; /* what enforce mode decides above the threshold */
    int sampled;
    uint64_t samples, plausible_set_size, observations;
    /* sampled: the sampler's health (the Verdict's SamplerHealth) */
    struct {
        int healthy;
        double tb_residual, log_weight_spread, ess;
        uint64_t train_steps, version_lag;
        const char *reason; /* "" or NULL when healthy */
        /* the search archive among the candidates (guard.proto 8-11);
         * written only when archive_size > 0, as the CLI prints them */
        uint64_t archive_size, archive_version_lag, search_evaluations, search_cpu_us;
        /* this action's remembered context (guard.proto 12-14); written
         * only when the context is remembered (any of them > 0), as the
         * CLI prints them */
        uint64_t context_kept, context_rounds, context_version_lag;
    } sampler;
    int has_cautious;
    uint64_t cautious_id;
    const char *cautious_label;
    double cautious_posterior, cautious_harm;
    int shadow;           /* mode: shadow (decision forced to ALLOW) */
    int on_error_allowed; /* the engine failed and on_error: allow let it through */
    uint64_t eval_us;
    /* A resolution line (daemon/escalation: an ESCALATE settled), joined
     * to the ESCALATE line by decision_id; `decision` is then the final
     * one (ALLOW or DENY), and only the bound fields of the verdict are
     * repeated. */
    int resolution;
    /* resolution: "APPROVED" | "REJECTED" | "EXPIRED"; an Evaluate line of
     * an ESCALATE: "PENDING" (opened), or "REFUSED" (not opened, so the
     * decision is DENY; reason says why). NULL: none. */
    const char *escalation;
    const char *approver, *approver_peer, *reason;
    uint64_t waited_ms; /* resolution: from the ESCALATE to the settlement */
} bg_decision_record;

typedef struct bg_decision_log_stats {
    uint64_t appended;     /* lines offered */
    uint64_t written;      /* lines the file took */
    uint64_t dropped;      /* refused: the pending buffer was full */
    uint64_t lost;         /* their write failed (disk full, I/O error) */
    uint64_t write_errors; /* failed write batches */
    uint64_t reopens;      /* successful reopens */
} bg_decision_log_stats;

/* new: close. Opens the file now, so a bad path is an error at startup:
 * "decision log /x/y: No such file or directory". */
int bg_decision_log_open(const bg_decision_log_opts *opts, bg_decision_log **out, bg_err *err);

/* Format r as one line and queue it. l == NULL does nothing. Never blocks
 * on I/O. */
void bg_decision_log_append(bg_decision_log *l, const bg_decision_record *r);

/* Open the path again before the next write (after log rotation). A
 * failure is logged and the old file kept. No effect for stdout. */
void bg_decision_log_reopen(bg_decision_log *l);

/* Wait until everything appended so far has been written (or lost). */
void bg_decision_log_flush(bg_decision_log *l);

void bg_decision_log_stats_get(bg_decision_log *l, bg_decision_log_stats *st);
const char *bg_decision_log_path(const bg_decision_log *l);

/* Writes what is pending, stops the writer, closes the file. NULL is fine.
 * Waits while batches keep being written, but returns once none was for
 * close_timeout_ms (a stdout reader that stalled, a hung mount): then the
 * lines still queued are given up (logged as an error with their count),
 * and the blocked writer thread frees the log if its write ever returns. */
void bg_decision_log_close(bg_decision_log *l);

#endif
