/*
 * decision_log.c — JSON-lines decision log with one writer thread (see
 * decision_log.h for the contract).
 *
 * Writer states, all under `mu`:
 *   idle      pending empty, waiting on `cv`      -> the first append signals
 *   lingering pending not empty, waiting until LINGER_NS after its first
 *             line, for more lines to share one write(2)
 *                                                 -> BATCH_BYTES pending, a
 *                                                    flush, stop or reopen
 *                                                    end it early
 *   writing   a batch swapped out, mu released for write -> idle again,
 *             `done` broadcast so flush() can return
 *   stopping  `stop` set: drain what is pending, then set `exited` and
 *             exit the thread. close waits for `exited` while batches
 *             complete; after close_timeout_ms without one (a write that
 *             never returns) it sets `abandoned` and returns,
 *             and the writer frees the log once its write returns. Both
 *             flags are under mu, so exactly one of them frees it.
 * A reopen request is served before the next batch is written.
 * Invariants (assert_state, under mu, at every transition):
 *   1. taken_seq - batch_seq is 1 while a batch is out (writing > 0), else 0;
 *   2. pending.len + writing <= max_queued (append refuses what would not fit).
 * Why linger: waking the writer for every line costs a futex wake and a
 * write(2) per decision, measured at +8-12 µs of server CPU per Evaluate at
 * 64 callers (docs/PERFORMANCE.md, "Decision log"); batches of up to
 * 10 ms cost one of each per batch.
 */
#include "audit/decision_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/bg_assert.h"
#include "common/bg_io.h"
#include "common/bg_log.h"
#include "common/bg_strbuf.h"
#include "common/bg_time.h"

#define LINGER_NS (10u * 1000u * 1000u) /* a line waits at most this long for company */
#define BATCH_BYTES (64u << 10)         /* ... or until this much is pending */

struct bg_decision_log {
    char *path;
    int fd; /* writer thread's after open */
    int is_stdout;
    size_t max_queued;
    size_t writing;    /* under mu: bytes of the batch being written */
    unsigned close_ms; /* how long close waits for the writer */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* writer waits for work */
    pthread_cond_t done;      /* flush waits for the writer */
    bg_strbuf pending;        /* under mu */
    uint64_t pending_lines;   /* under mu */
    uint64_t batch_seq;       /* under mu: batches written (or lost) so far */
    uint64_t taken_seq;       /* under mu: batches taken by the writer */
    int writer_waiting;       /* under mu */
    int urgent;               /* under mu: a flush waits, write what is pending now */
    uint64_t first_ns;        /* under mu: bg_now_ns() of the oldest pending line */
    int stop, reopen;         /* under mu */
    int exited, abandoned;    /* under mu: the writer is done / close gave up on it */
    int failing;              /* writer only: the last write failed (warn once) */
    bg_decision_log_stats st; /* under mu */
};

/* The invariants of the header comment; l->mu held. */
static void assert_state(const bg_decision_log *l)
{
    BG_ASSERT(l->taken_seq - l->batch_seq == (l->writing > 0 ? 1u : 0u),
              "decision log %s: %llu batches taken, %llu done, %zu bytes being written", l->path,
              (unsigned long long)l->taken_seq, (unsigned long long)l->batch_seq, l->writing);
    BG_ASSERT(l->pending.len + l->writing <= l->max_queued,
              "decision log %s: %zu bytes pending + %zu being written over the cap %zu", l->path,
              l->pending.len, l->writing, l->max_queued);
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void do_reopen(bg_decision_log *l)
{
    int fd = open_path(l->path);
    if (fd < 0) {
        BG_WARN("decision-log", "reopen %s: %s; still writing to the old file", l->path,
                strerror(errno));
        return;
    }
    close(l->fd);
    l->fd = fd;
    pthread_mutex_lock(&l->mu);
    l->st.reopens++;
    pthread_mutex_unlock(&l->mu);
    BG_INFO("decision-log", "reopened %s", l->path);
}

/* Write one batch; returns 0 when the file took all of it. A failed batch
 * is cut back off a regular file so no half line stays behind. */
static int write_batch(bg_decision_log *l, const bg_strbuf *b)
{
    struct stat sb;
    off_t before = -1;
    if (!l->is_stdout && fstat(l->fd, &sb) == 0 && S_ISREG(sb.st_mode))
        before = sb.st_size;
    if (bg_write_all(l->fd, b->p, b->len) == 0) {
        if (l->failing)
            BG_INFO("decision-log", "%s: writing again", l->path);
        l->failing = 0;
        return 0;
    }
    int e = errno;
    if (before >= 0 && ftruncate(l->fd, before) != 0)
        BG_ERROR("decision-log", "%s: cannot cut a half-written batch back (%s)", l->path,
                 strerror(errno));
    if (!l->failing)
        BG_ERROR("decision-log",
                 "%s: write failed (%s); decisions are still made, their log "
                 "lines are lost until writes succeed",
                 l->path, strerror(e));
    l->failing = 1;
    return -1;
}

/* Everything but the thread: close the file, free the log. */
static void destroy(bg_decision_log *l)
{
    if (!l->is_stdout)
        close(l->fd);
    bg_strbuf_close(&l->pending);
    pthread_cond_destroy(&l->done);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l->path);
    free(l);
}

static void *writer_main(void *arg)
{
    bg_decision_log *l = arg;
    bg_strbuf batch;
    bg_strbuf_init(&batch);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->pending.len == 0 && !l->stop && !l->reopen) {
            l->writer_waiting = 1;
            pthread_cond_wait(&l->cv, &l->mu);
            l->writer_waiting = 0;
        }
        uint64_t due = l->first_ns + LINGER_NS;
        if (l->pending.len > 0 && l->pending.len < BATCH_BYTES && !l->urgent && !l->stop &&
            !l->reopen && bg_now_ns() < due) {
            struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                                  .tv_nsec = (long)(due % 1000000000u)};
            l->writer_waiting = 1;
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
            l->writer_waiting = 0;
            continue;
        }
        if (l->reopen) {
            l->reopen = 0;
            pthread_mutex_unlock(&l->mu);
            if (!l->is_stdout)
                do_reopen(l);
            pthread_mutex_lock(&l->mu);
            continue;
        }
        if (l->pending.len == 0) /* stop, and nothing left */
            break;
        bg_strbuf t = batch; /* swap: the pending text goes out, an empty buffer comes in */
        batch = l->pending;
        l->pending = t;
        bg_strbuf_reset(&l->pending);
        uint64_t lines = l->pending_lines;
        l->pending_lines = 0;
        l->urgent = 0;
        l->taken_seq++;
        l->writing = batch.len;
        assert_state(l);
        pthread_mutex_unlock(&l->mu);
        int rc = write_batch(l, &batch);
        bg_strbuf_reset(&batch);
        pthread_mutex_lock(&l->mu);
        l->writing = 0;
        if (rc == 0) {
            l->st.written += lines;
        } else {
            l->st.lost += lines;
            l->st.write_errors++;
        }
        l->batch_seq++;
        assert_state(l);
        pthread_cond_broadcast(&l->done);
    }
    l->exited = 1;
    pthread_cond_broadcast(&l->done);
    int abandoned = l->abandoned;
    pthread_mutex_unlock(&l->mu);
    bg_strbuf_close(&batch);
    if (abandoned)
        destroy(l);
    return NULL;
}

int bg_decision_log_open(const bg_decision_log_opts *opts, bg_decision_log **out, bg_err *err)
{
    *out = NULL;
    if (opts->path == NULL || opts->path[0] == '\0')
        return bg_err_set(err, BG_EINVAL,
                          "decision log: empty path; give a file or '-' for "
                          "stdout");
    bg_decision_log *l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = strdup(opts->path)) == NULL) {
        free(l);
        return bg_err_set(err, BG_ENOMEM, "decision log: out of memory");
    }
    l->max_queued = opts->max_queued_bytes ? opts->max_queued_bytes : BG_DECISION_LOG_DEFAULT_QUEUE;
    l->close_ms =
        opts->close_timeout_ms ? opts->close_timeout_ms : BG_DECISION_LOG_DEFAULT_CLOSE_MS;
    l->is_stdout = strcmp(opts->path, "-") == 0;
    l->fd = l->is_stdout ? STDOUT_FILENO : open_path(opts->path);
    if (l->fd < 0) {
        int rc = bg_err_set(err, BG_EIO, "decision log %s: %s", opts->path, strerror(errno));
        free(l->path);
        free(l);
        return rc;
    }
    bg_strbuf_init(&l->pending);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca; /* the linger deadline is on bg_now_ns()'s clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_cond_init(&l->done, &ca); /* close's deadline too */
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&l->thread, NULL, writer_main, l);
    if (e != 0) {
        destroy(l);
        return bg_err_set(err, BG_ENOMEM, "decision log %s: cannot start its writer thread (%s)",
                          opts->path, strerror(e));
    }
    *out = l;
    return BG_OK;
}

/* "2026-11-26T13:28:17.429123Z" */
static void put_time(bg_strbuf *b)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* by hand: printf's format parsing was most of a line's cost */
    char t[] = "\"YYYY-MM-DDTHH:MM:SS.uuuuuuZ\"";
    const struct {
        int at, width;
        long v;
    } f[] = {{1, 4, tm.tm_year + 1900L}, {6, 2, tm.tm_mon + 1L}, {9, 2, tm.tm_mday},
             {12, 2, tm.tm_hour},        {15, 2, tm.tm_min},     {18, 2, tm.tm_sec},
             {21, 6, ts.tv_nsec / 1000}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        long v = f[i].v;
        for (int k = f[i].width - 1; k >= 0; k--, v /= 10)
            t[f[i].at + k] = (char)('0' + v % 10);
    }
    bg_strbuf_put(b, t, sizeof t - 1);
}

/* ,"key": */
static void put_key(bg_strbuf *b, const char *key)
{
    bg_strbuf_put(b, ",\"", 2);
    bg_strbuf_puts(b, key);
    bg_strbuf_put(b, "\":", 2);
}

static void key_str(bg_strbuf *b, const char *key, const char *v)
{
    put_key(b, key);
    bg_strbuf_json_cstr(b, v);
}

/* A string the request chose: at most BG_DECISION_LOG_MAX_FIELD bytes of
 * it, cut before a UTF-8 sequence that would not fit, then its length
 * (invariant 4 in decision_log.h). */
static void key_req(bg_strbuf *b, const char *key, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n <= BG_DECISION_LOG_MAX_FIELD) {
        key_str(b, key, v);
        return;
    }
    size_t cut = BG_DECISION_LOG_MAX_FIELD;
    /* back off continuation bytes to the start of the sequence at the cut */
    while (cut > BG_DECISION_LOG_MAX_FIELD - 4 && ((unsigned char)v[cut] & 0xC0) == 0x80)
        cut--;
    put_key(b, key);
    bg_strbuf_putc(b, '"');
    bg_strbuf_json_chars(b, v, cut);
    bg_strbuf_printf(b, "...(%zu bytes)\"", n);
}

static void key_num(bg_strbuf *b, const char *key, double v)
{
    put_key(b, key);
    bg_strbuf_json_double(b, v);
}

static void key_u64(bg_strbuf *b, const char *key, uint64_t v)
{
    put_key(b, key);
    bg_strbuf_put_u64(b, v);
}

static void key_bool(bg_strbuf *b, const char *key, int v)
{
    put_key(b, key);
    bg_strbuf_puts(b, v ? "true" : "false");
}

/* One line, in a fixed key order so lines diff and grep well. */
static void format_record(bg_strbuf *b, const bg_decision_record *r)
{
    bg_strbuf_puts(b, "{\"time\":");
    put_time(b);
    if (r->decision) {
        key_str(b, "decision_id", r->decision_id);
        key_str(b, "decision", r->decision);
        if (r->escalation)
            key_str(b, "escalation", r->escalation);
        if (r->resolution) {
            key_req(b, "approver", r->approver);
            key_req(b, "approver_peer", r->approver_peer);
            key_req(b, "reason", r->reason);
            key_u64(b, "waited_ms", r->waited_ms);
        } else if (r->reason) {
            key_req(b, "reason", r->reason);
        }
    } else {
        key_str(b, "error_code", r->error_code);
        key_str(b, "error", r->error);
    }
    key_req(b, "tool", r->tool);
    key_req(b, "action_id", r->action_id);
    key_req(b, "session", r->session);
    key_req(b, "agent", r->agent);
    key_req(b, "trace_id", r->trace_id);
    key_req(b, "peer", r->peer);
    if (r->resolved) {
        key_str(b, "policy", r->policy);
        key_str(b, "revision", r->revision);
        key_str(b, "model", r->model);
        key_str(b, "estimator", r->estimator);
        key_req(b, "session_key", r->session_key);
        key_bool(b, "shadow", r->shadow);
    }
    if (r->decision && r->on_error_allowed) {
        key_bool(b, "on_error_allowed", 1);
        key_str(b, "error", r->error);
    } else if (r->decision && r->resolution) {
        key_num(b, "harm_bound", r->harm_bound);
        key_num(b, "threshold", r->threshold);
    } else if (r->decision) {
        key_num(b, "harm_bound", r->harm_bound);
        key_num(b, "threshold", r->threshold);
        /* In shadow mode the decision is ALLOW; this is what enforce says. */
        if (r->shadow)
            key_str(b, "enforce_decision",
                    r->harm_bound <= r->threshold ? "ALLOW" : r->over_threshold);
        key_num(b, "posterior_predictive", r->posterior_predictive);
        key_str(b, "bound_kind", r->sampled ? "sampled" : "exact");
        if (r->sampled) {
            key_u64(b, "samples", r->samples);
            bg_strbuf_puts(b, ",\"sampler\":{");
            bg_strbuf_puts(b, "\"healthy\":");
            bg_strbuf_puts(b, r->sampler.healthy ? "true" : "false");
            key_num(b, "tb_residual", r->sampler.tb_residual);
            key_num(b, "log_weight_spread", r->sampler.log_weight_spread);
            key_num(b, "ess", r->sampler.ess);
            key_u64(b, "train_steps", r->sampler.train_steps);
            key_u64(b, "version_lag", r->sampler.version_lag);
            key_str(b, "reason", r->sampler.reason ? r->sampler.reason : "");
            if (r->sampler.archive_size) { /* a search archive (none: no keys, as the CLI) */
                key_u64(b, "archive_size", r->sampler.archive_size);
                key_u64(b, "archive_version_lag", r->sampler.archive_version_lag);
                key_u64(b, "search_evaluations", r->sampler.search_evaluations);
                key_u64(b, "search_cpu_us", r->sampler.search_cpu_us);
            }
            if (r->sampler.context_kept || r->sampler.context_rounds ||
                r->sampler.context_version_lag) { /* a remembered context (none: no keys) */
                key_u64(b, "context_kept", r->sampler.context_kept);
                key_u64(b, "context_rounds", r->sampler.context_rounds);
                key_u64(b, "context_version_lag", r->sampler.context_version_lag);
            }
            bg_strbuf_putc(b, '}');
        }
        key_u64(b, "plausible_set_size", r->plausible_set_size);
        key_u64(b, "observations", r->observations);
        if (r->has_cautious) {
            bg_strbuf_puts(b, ",\"cautious\":{\"id\":");
            bg_strbuf_put_u64(b, r->cautious_id);
            key_str(b, "label", r->cautious_label);
            key_num(b, "posterior", r->cautious_posterior);
            key_num(b, "harm", r->cautious_harm);
            bg_strbuf_putc(b, '}');
        }
    }
    key_u64(b, "eval_us", r->eval_us);
    bg_strbuf_puts(b, "}\n");
}

void bg_decision_log_append(bg_decision_log *l, const bg_decision_record *r)
{
    if (l == NULL)
        return;
    char mem[2048];
    bg_strbuf line;
    bg_strbuf_init_on(&line, mem, sizeof mem);
    format_record(&line, r);
    pthread_mutex_lock(&l->mu);
    l->st.appended++;
    /* the bound covers the batch being written too: memory stays within
     * max_queued however slow the file is */
    if (line.failed || l->pending.len + l->writing + line.len > l->max_queued) {
        l->st.dropped++;
    } else {
        bg_strbuf_put(&l->pending, line.p, line.len);
        if (l->pending.failed) { /* out of memory: this line did not go in */
            l->pending.failed = 0;
            l->st.dropped++;
        } else {
            if (l->pending_lines++ == 0)
                l->first_ns = bg_now_ns();
            /* Wake the writer for the first line (it starts lingering) and
             * when a batch is full; lines in between only queue. */
            if (l->writer_waiting && (l->pending_lines == 1 || l->pending.len >= BATCH_BYTES))
                pthread_cond_signal(&l->cv);
        }
    }
    assert_state(l);
    pthread_mutex_unlock(&l->mu);
    bg_strbuf_close(&line);
}

/* Set one of the writer's request flags and wake it. */
static void tell_writer(bg_decision_log *l, int *flag)
{
    pthread_mutex_lock(&l->mu);
    *flag = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void bg_decision_log_reopen(bg_decision_log *l)
{
    if (l != NULL)
        tell_writer(l, &l->reopen);
}

void bg_decision_log_flush(bg_decision_log *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    /* Everything pending now goes out in the batch after the one being
     * written (if any): wait until that batch is done. */
    uint64_t want = l->taken_seq + (l->pending.len ? 1 : 0);
    if (l->pending.len) {
        l->urgent = 1;
        pthread_cond_signal(&l->cv);
    }
    while (l->batch_seq < want)
        pthread_cond_wait(&l->done, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

void bg_decision_log_stats_get(bg_decision_log *l, bg_decision_log_stats *st)
{
    memset(st, 0, sizeof *st);
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    *st = l->st;
    pthread_mutex_unlock(&l->mu);
}

const char *bg_decision_log_path(const bg_decision_log *l)
{
    return l ? l->path : "";
}

void bg_decision_log_close(bg_decision_log *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->cv);
    /* Wait while batches keep completing; give up after close_ms without one. */
    uint64_t seen = l->batch_seq, due = bg_now_ns() + (uint64_t)l->close_ms * 1000000u;
    while (!l->exited) {
        if (l->batch_seq != seen) {
            seen = l->batch_seq;
            due = bg_now_ns() + (uint64_t)l->close_ms * 1000000u;
        }
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
                              .tv_nsec = (long)(due % 1000000000u)};
        if (pthread_cond_timedwait(&l->done, &l->mu, &ts) == ETIMEDOUT && l->batch_seq == seen)
            break;
    }
    if (!l->exited) {
        /* The writer is stuck in write(2): leave it the log to free (from
         * the unlock on, l may be gone: keep the thread id). */
        pthread_t writer = l->thread;
        l->abandoned = 1;
        BG_ERROR("decision-log",
                 "%s: no batch written for %u ms at shutdown: giving up %llu queued lines "
                 "(and the batch being written)",
                 l->path, l->close_ms, (unsigned long long)l->pending_lines);
        pthread_mutex_unlock(&l->mu);
        pthread_detach(writer);
        return;
    }
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    destroy(l);
}
