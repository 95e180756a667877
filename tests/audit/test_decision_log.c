/*
 * test_decision_log.c — daemon/audit/decision_log.c and the JSON text
 * helpers it is built on (common/bg_strbuf.c), checked on the bytes they
 * leave on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/decision_log.h"
#include "bg_test.h"
#include "common/bg_strbuf.h"

static char dir[256];

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    bg_strbuf b;
    bg_strbuf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        bg_strbuf_put(&b, chunk, n);
    fclose(f);
    if (b.p == NULL)
        bg_strbuf_put(&b, "", 0);
    *len = b.len;
    return b.p; /* on the heap: the caller frees */
}

static size_t count_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

/* Every line starts with {"time":" and ends with }. */
static int lines_whole(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        if (strncmp(s + start, "{\"time\":\"", 9) != 0 || i == start || s[i - 1] != '}')
            return 0;
        start = i + 1;
    }
    return start == n;
}

static void test_json_text(void)
{
    char mem[8];
    bg_strbuf b;
    bg_strbuf_init_on(&b, mem, sizeof mem);
    /* quote, backslash, newline, tab, a control byte, valid 2- and 4-byte
     * UTF-8, then a lone 0xff, an overlong NUL, a UTF-16 surrogate and a
     * truncated 3-byte sequence at the end. */
    const char in[] =
        "a\"b\\c\nd\te\x01 \xc3\xa9 \xf0\x9f\x98\x80 \xff \xc0\x80 \xed\xa0\x80 \xe2\x82";
    bg_strbuf_json_string(&b, in, sizeof in - 1);
    CHECK(b.heap && !b.failed);
    CHECK_STR(b.p, "\"a\\\"b\\\\c\\nd\\te\\u0001 \xc3\xa9 \xf0\x9f\x98\x80 \\ufffd \\ufffd\\ufffd "
                   "\\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\"");
    bg_strbuf_reset(&b);
    bg_strbuf_json_double(&b, 0.1);
    bg_strbuf_putc(&b, ' ');
    bg_strbuf_json_double(&b, 0.0 / 0.0);
    bg_strbuf_putc(&b, ' ');
    bg_strbuf_json_cstr(&b, NULL);
    CHECK_STR(b.p, "0.10000000000000001 null \"\"");
    /* printf past its 256-byte fast path */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bg_strbuf_reset(&b);
    bg_strbuf_printf(&b, "<%s>", big);
    CHECK_INT(b.len, sizeof big + 1);
    CHECK(b.p[0] == '<' && b.p[b.len - 1] == '>' && b.p[b.len] == '\0');
    bg_strbuf_close(&b);
}

static bg_decision_record sample_record(void)
{
    bg_decision_record r;
    memset(&r, 0, sizeof r);
    r.decision_id = "00000000000000aa-0000000000000001";
    r.decision = "DENY";
    r.policy = "payments";
    r.revision = "abc123";
    r.model = "logistic";
    r.estimator = "noniid";
    r.tool = "transfer_funds";
    r.action_id = "call_7";
    r.session = "s1";
    r.agent = "agent-\"x\"";
    r.trace_id = "tr-9";
    r.resolved = 1;
    r.session_key = "s1";
    r.harm_bound = 0.25;
    r.threshold = 0.01;
    r.over_threshold = "DENY";
    r.posterior_predictive = 0.125;
    r.plausible_set_size = 17;
    r.observations = 3;
    r.has_cautious = 1;
    r.cautious_id = 42;
    r.cautious_label = "w=[1,-2]";
    r.cautious_posterior = 0.5;
    r.cautious_harm = 0.75;
    r.eval_us = 99;
    return r;
}

static const char *log_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

/* Open o, which must succeed; NULL (and a failed check) when it does not. */
static bg_decision_log *open_ok(const bg_decision_log_opts *o)
{
    bg_decision_log *l = NULL;
    bg_err err;
    CHECK_INT(bg_decision_log_open(o, &l, &err), BG_OK);
    return l;
}

/* Write what was appended, read the counters, close. */
static bg_decision_log_stats finish(bg_decision_log *l)
{
    bg_decision_log_stats st;
    bg_decision_log_flush(l);
    bg_decision_log_stats_get(l, &st);
    bg_decision_log_close(l);
    return st;
}

static void test_line_format(void)
{
    char path[512];
    bg_decision_log_opts o = {.path = log_path("format.jsonl", path, sizeof path)};
    bg_decision_log *l = open_ok(&o);
    bg_decision_record r = sample_record();
    bg_decision_log_append(l, &r);
    /* shadow: ALLOW, and what enforce would have said */
    r.decision = "ALLOW";
    r.shadow = 1;
    r.has_cautious = 0;
    bg_decision_log_append(l, &r);
    /* a failed evaluation: the code and message, no numbers */
    bg_decision_record e;
    memset(&e, 0, sizeof e);
    e.error_code = "NOT_FOUND";
    e.error = "no policy matches tool 'x'";
    e.tool = "x";
    e.eval_us = 5;
    bg_decision_log_append(l, &e);
    bg_decision_log_stats st = finish(l);
    CHECK_INT(st.appended, 3);
    CHECK_INT(st.written, 3);

    size_t n;
    char *text = slurp(path, &n);
    CHECK(text != NULL && lines_whole(text, n) && count_lines(text, n) == 3);
    if (text == NULL)
        return;
    const char *want[3] = {
        "\"decision_id\":\"00000000000000aa-0000000000000001\",\"decision\":\"DENY\","
        "\"tool\":\"transfer_funds\",\"action_id\":\"call_7\",\"session\":\"s1\","
        "\"agent\":\"agent-\\\"x\\\"\",\"trace_id\":\"tr-9\",\"peer\":\"\","
        "\"policy\":\"payments\","
        "\"revision\":\"abc123\",\"model\":\"logistic\",\"estimator\":\"noniid\","
        "\"session_key\":\"s1\",\"shadow\":false,\"harm_bound\":0.25,\"threshold\":0.01,"
        "\"posterior_predictive\":0.125,\"bound_kind\":\"exact\",\"plausible_set_size\":17,"
        "\"observations\":3,\"cautious\":{\"id\":42,\"label\":\"w=[1,-2]\",\"posterior\":0.5,"
        "\"harm\":0.75},\"eval_us\":99}",
        "\"decision_id\":\"00000000000000aa-0000000000000001\",\"decision\":\"ALLOW\","
        "\"tool\":\"transfer_funds\",\"action_id\":\"call_7\",\"session\":\"s1\","
        "\"agent\":\"agent-\\\"x\\\"\",\"trace_id\":\"tr-9\",\"peer\":\"\","
        "\"policy\":\"payments\","
        "\"revision\":\"abc123\",\"model\":\"logistic\",\"estimator\":\"noniid\","
        "\"session_key\":\"s1\",\"shadow\":true,\"harm_bound\":0.25,\"threshold\":0.01,"
        "\"enforce_decision\":\"DENY\",\"posterior_predictive\":0.125,\"bound_kind\":\"exact\","
        "\"plausible_set_size\":17,\"observations\":3,\"eval_us\":99}",
        /* one element in two literals: the parentheses say so to clang */
        ("\"error_code\":\"NOT_FOUND\",\"error\":\"no policy matches tool 'x'\",\"tool\":\"x\","
         "\"action_id\":\"\",\"session\":\"\",\"agent\":\"\",\"trace_id\":\"\",\"peer\":\"\","
         "\"eval_us\":5}"),
    };
    char *line = text;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        /* {"time":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ", then the fixed rest */
        CHECK(strlen(line) > 38 && line[19] == 'T' && line[35] == 'Z' && line[36] == '"');
        CHECK_STR(line + 38, want[i]);
        line = nl + 1;
    }
    free(text);
}

/* A sampled verdict's sampler object: the search archive's four fields
 * (guard.proto SamplerHealth 8-11) after the health, only when the
 * verdict's candidates held an archive (archive_size > 0, as the CLI
 * prints its archive line); without one, none of the four keys. Then the
 * remembered context's three (12-14), only when any is > 0 (a context
 * remembered; its first Evaluate has a lag and nothing else). */
static void test_sampler_archive(void)
{
    char path[512];
    bg_decision_log_opts o = {.path = log_path("sampler.jsonl", path, sizeof path)};
    bg_decision_log *l = open_ok(&o);
    bg_decision_record r = sample_record();
    r.has_cautious = 0;
    r.sampled = 1;
    r.samples = 256;
    r.sampler.healthy = 1;
    r.sampler.tb_residual = 0.5;
    r.sampler.log_weight_spread = 2;
    r.sampler.ess = 64;
    r.sampler.train_steps = 120;
    r.sampler.version_lag = 1;
    r.sampler.reason = "";
    r.sampler.archive_size = 1024;
    r.sampler.archive_version_lag = 2;
    r.sampler.search_evaluations = 2047;
    r.sampler.search_cpu_us = 18446744073709551615ull; /* the full range of a uint64 */
    r.sampler.context_kept = 32;
    r.sampler.context_rounds = 7;
    r.sampler.context_version_lag = 0;
    bg_decision_log_append(l, &r);
    r.sampler.archive_size = 0; /* no archive: the other three are not written either */
    /* a context remembered and never searched: its first Evaluate */
    r.sampler.context_kept = r.sampler.context_rounds = 0;
    r.sampler.context_version_lag = 5;
    bg_decision_log_append(l, &r);
    r.sampler.context_version_lag = 0; /* not remembered: no context keys */
    bg_decision_log_append(l, &r);
    finish(l);
    size_t n;
    char *text = slurp(path, &n);
    CHECK(text != NULL && lines_whole(text, n) && count_lines(text, n) == 3);
    const char *health = "\"bound_kind\":\"sampled\",\"samples\":256,\"sampler\":{\"healthy\":true,"
                         "\"tb_residual\":0.5,\"log_weight_spread\":2,\"ess\":64,"
                         "\"train_steps\":120,\"version_lag\":1,\"reason\":\"\"";
    /* each element parenthesised: clang's -Wstring-concatenation */
    const char *want[3] = {(",\"archive_size\":1024,\"archive_version_lag\":2,"
                            "\"search_evaluations\":2047,"
                            "\"search_cpu_us\":18446744073709551615,\"context_kept\":32,"
                            "\"context_rounds\":7,\"context_version_lag\":0},"
                            "\"plausible_set_size\":17,"),
                           (",\"context_kept\":0,\"context_rounds\":0,\"context_version_lag\":5},"
                            "\"plausible_set_size\":17,"),
                           "},\"plausible_set_size\":17,"};
    char *line = text;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        const char *h = strstr(line, health);
        CHECK(h != NULL, "line %d lacks the sampler's health: %s", i, line);
        CHECK(strncmp(h + strlen(health), want[i], strlen(want[i])) == 0,
              "line %d: after the health want %s, got %s", i, want[i], h + strlen(health));
        CHECK(i == 0 || strstr(line, "archive") == NULL, "line %d: %s", i, line);
        CHECK(i < 2 || strstr(line, "context_") == NULL, "line %d: %s", i, line);
        line = nl + 1;
    }
    free(text);
}

enum { THREADS = 4, PER_THREAD = 5000 };

static void *append_many(void *arg)
{
    bg_decision_log *l = ((void **)arg)[0];
    int t = (int)(intptr_t)((void **)arg)[1];
    for (int i = 0; i < PER_THREAD; i++) {
        char id[64];
        snprintf(id, sizeof id, "t%d-%06d", t, i);
        bg_decision_record r = sample_record();
        r.decision_id = id;
        bg_decision_log_append(l, &r);
    }
    return NULL;
}

/* Many threads at once: every line whole, none lost, each thread's lines in
 * its own order. */
static void test_threads(void)
{
    char path[512];
    bg_decision_log_opts o = {.path = log_path("threads.jsonl", path, sizeof path)};
    bg_decision_log *l = open_ok(&o);
    pthread_t th[THREADS];
    void *args[THREADS][2];
    for (int t = 0; t < THREADS; t++) {
        args[t][0] = l;
        args[t][1] = (void *)(intptr_t)t;
        pthread_create(&th[t], NULL, append_many, args[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    bg_decision_log_close(l); /* writes what is pending */
    size_t n;
    char *text = slurp(path, &n);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    CHECK(lines_whole(text, n));
    CHECK_INT(count_lines(text, n), THREADS * PER_THREAD);
    int next[THREADS] = {0};
    int in_order = 1;
    static const char key[] = "\"decision_id\":\"t";
    /* Line by line with lengths: strstr and sscanf on the 13 MB text
     * measure all the rest of it at every call (ASan's interceptors do),
     * which took minutes. */
    for (char *line = text, *nl; line < text + n; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(text + n - line));
        if (nl == NULL)
            break;
        char *p = memmem(line, (size_t)(nl - line), key, sizeof key - 1);
        if (p == NULL) {
            in_order = 0;
            continue;
        }
        char *end;
        long t = strtol(p + sizeof key - 1, &end, 10);
        long i = *end == '-' ? strtol(end + 1, &end, 10) : -1;
        if (t < 0 || t >= THREADS || i != next[t]++)
            in_order = 0;
    }
    CHECK(in_order);
    for (int t = 0; t < THREADS; t++)
        CHECK_INT(next[t], PER_THREAD);
    free(text);
}

static void *drain_fifo(void *arg)
{
    int fd = *(int *)arg;
    bg_strbuf *b = malloc(sizeof *b);
    bg_strbuf_init(b);
    char chunk[8192];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0)
            bg_strbuf_put(b, chunk, (size_t)r);
        else if (r == 0 || errno != EINTR)
            break;
    }
    return b;
}

/* A reader that stalls: the writer blocks on a full pipe, appends keep
 * returning at once, and the lines past the queue cap are dropped and
 * counted; what was not dropped arrives whole. */
static void test_backpressure(void)
{
    char path[512];
    log_path("stalled.fifo", path, sizeof path);
    CHECK(mkfifo(path, 0600) == 0);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    CHECK(rfd >= 0);
    bg_decision_log_opts o = {.path = path, .max_queued_bytes = 16384};
    bg_decision_log *l = open_ok(&o);
    if (l == NULL)
        return;
    fcntl(rfd, F_SETFL, 0); /* blocking reads from here on */
    enum { N = 3000 };      /* ~1.2 MB of lines against a 64 KiB pipe + 16 KiB queue */
    for (int i = 0; i < N; i++) {
        bg_decision_record r = sample_record();
        bg_decision_log_append(l, &r);
    }
    bg_decision_log_stats st;
    bg_decision_log_stats_get(l, &st);
    CHECK_INT(st.appended, N);
    CHECK(st.dropped > 0);
    pthread_t th;
    pthread_create(&th, NULL, drain_fifo, &rfd);
    bg_decision_log_flush(l);
    bg_decision_log_stats_get(l, &st);
    bg_decision_log_close(l); /* the reader sees end of file */
    void *res;
    pthread_join(th, &res);
    bg_strbuf *got = res;
    close(rfd);
    printf("backpressure: %llu appended, %llu written, %llu dropped\n",
           (unsigned long long)st.appended, (unsigned long long)st.written,
           (unsigned long long)st.dropped);
    CHECK_INT(st.written + st.dropped, N);
    CHECK_INT(st.lost, 0);
    CHECK(lines_whole(got->p, got->len));
    CHECK_INT(count_lines(got->p, got->len), st.written);
    bg_strbuf_close(got);
    free(got);
}

/* A file-size limit refuses writes: lines are lost and counted, the file
 * keeps only whole lines, and writing resumes once the limit is lifted. */
static void test_write_refused(void)
{
    char path[512];
    bg_decision_log_opts o = {.path = log_path("limited.jsonl", path, sizeof path)};
    bg_decision_log *l = open_ok(&o);
    if (l == NULL)
        return;
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 5000; /* room for ~10 lines: a write stops half way through one */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    enum { N = 40 };
    for (int i = 0; i < N; i++) {
        bg_decision_record r = sample_record();
        bg_decision_log_append(l, &r);
        bg_decision_log_flush(l); /* one line per batch */
    }
    bg_decision_log_stats st;
    bg_decision_log_stats_get(l, &st);
    CHECK(st.written > 0 && st.lost > 0);
    CHECK_INT(st.written + st.lost, N);
    CHECK_INT(st.write_errors, st.lost);
    setrlimit(RLIMIT_FSIZE, &old);
    bg_decision_record r = sample_record();
    bg_decision_log_append(l, &r);
    bg_decision_log_flush(l);
    bg_decision_log_stats st2;
    bg_decision_log_stats_get(l, &st2);
    CHECK_INT(st2.written, st.written + 1);
    bg_decision_log_close(l);
    size_t n;
    char *text = slurp(path, &n);
    CHECK(text != NULL && lines_whole(text, n));
    CHECK_INT(count_lines(text, n), st.written + 1);
    free(text);
}

/* logrotate: move the file, ask for a reopen, and new lines go to a new
 * file at the old path while the moved one keeps the old lines. */
static void test_reopen(void)
{
    char path[512], moved[512];
    bg_decision_log_opts o = {.path = log_path("rot.jsonl", path, sizeof path)};
    log_path("rot.jsonl.1", moved, sizeof moved);
    bg_decision_log *l = open_ok(&o);
    bg_decision_record r = sample_record();
    bg_decision_log_append(l, &r);
    bg_decision_log_append(l, &r);
    bg_decision_log_flush(l);
    CHECK(rename(path, moved) == 0);
    bg_decision_log_reopen(l);
    bg_decision_log_append(l, &r);
    bg_decision_log_close(l);
    size_t n1, n2;
    char *a = slurp(moved, &n1), *b = slurp(path, &n2);
    CHECK(a && b);
    if (a && b) {
        CHECK_INT(count_lines(a, n1), 2);
        CHECK_INT(count_lines(b, n2), 1);
    }
    free(a);
    free(b);
}

/* What the request says is the client's to choose, up to the gRPC message
 * limit: a megabyte of control bytes in one field must neither drop the line
 * (an ALLOW that leaves no trace) nor take the queue from other lines. Each
 * such field is cut at BG_DECISION_LOG_MAX_FIELD bytes, on a UTF-8 boundary,
 * and says how long it was. */
static void test_huge_fields(void)
{
    char path[512];
    bg_decision_log_opts o = {.path = log_path("huge.jsonl", path, sizeof path),
                              .max_queued_bytes = 1 << 20};
    bg_decision_log *l = open_ok(&o);
    if (l == NULL)
        return;
    enum { BIG = 1 << 20 };
    char *ctl = malloc(BIG + 1), *tool = malloc(BIG + 1);
    memset(ctl, 0x01, BIG);
    ctl[BIG] = '\0';
    /* 'a' up to one byte before the cap, then a 2-byte character across it */
    memset(tool, 'a', BIG);
    memcpy(tool + BG_DECISION_LOG_MAX_FIELD - 1, "\xc3\xa9", 2);
    tool[BIG] = '\0';
    bg_decision_record r = sample_record();
    r.session = r.agent = r.trace_id = r.action_id = r.session_key = ctl;
    r.tool = tool;
    bg_decision_log_append(l, &r);
    bg_decision_log_append(l, &r);
    bg_decision_log_stats st = finish(l);
    CHECK_INT(st.written, 2);
    CHECK_INT(st.dropped, 0);
    size_t n;
    char *text = slurp(path, &n);
    CHECK(text != NULL && lines_whole(text, n) && count_lines(text, n) == 2);
    if (text != NULL) {
        printf("huge fields: %zu bytes for 2 lines\n", n);
        CHECK(n < 2 * 6 * 8 * BG_DECISION_LOG_MAX_FIELD);
        char want[64];
        CHECK(strstr(text, "\"tool\":\"aaaa") != NULL);
        CHECK(strstr(text, "\\u0001\"...(") == NULL); /* the marker is inside the string */
        snprintf(want, sizeof want, "a...(%d bytes)\"", BIG);
        CHECK(strstr(text, want) != NULL); /* cut before the 2-byte character */
        CHECK(strstr(text, "\\ufffd") == NULL);
        snprintf(want, sizeof want, "\\u0001...(%d bytes)\"", BIG);
        CHECK(strstr(text, want) != NULL);
    }
    free(text);
    free(ctl);
    free(tool);
}

struct closer {
    bg_decision_log *l;
    int done; /* under closer_mu */
};
static pthread_mutex_t closer_mu = PTHREAD_MUTEX_INITIALIZER;

static void *close_log(void *arg)
{
    struct closer *c = arg;
    bg_decision_log_close(c->l);
    pthread_mutex_lock(&closer_mu);
    c->done = 1;
    pthread_mutex_unlock(&closer_mu);
    return NULL;
}

/* A reader that never reads (a stalled `--decision-log -` consumer, a hung
 * mount): the writer blocks in write(2) for good. Close must still return
 * within close_timeout_ms, leaving what is pending, so SIGTERM ends the
 * daemon instead of hanging it. */
static void test_close_stuck(void)
{
    char path[512];
    log_path("stuck.fifo", path, sizeof path);
    CHECK(mkfifo(path, 0600) == 0);
    int rfd = open(path, O_RDONLY | O_NONBLOCK); /* open, never read */
    CHECK(rfd >= 0);
    bg_decision_log_opts o = {.path = path, .close_timeout_ms = 200};
    bg_decision_log *l = open_ok(&o);
    if (l == NULL)
        return;
    for (int i = 0; i < 1000; i++) { /* ~400 KB against a 64 KiB pipe */
        bg_decision_record r = sample_record();
        bg_decision_log_append(l, &r);
    }
    struct closer c = {l, 0};
    pthread_t th;
    pthread_create(&th, NULL, close_log, &c);
    int done = 0;
    for (int ms = 0; ms < 10000 && !done; ms += 10) {
        usleep(10000);
        pthread_mutex_lock(&closer_mu);
        done = c.done;
        pthread_mutex_unlock(&closer_mu);
    }
    CHECK(done);
    if (!done) {
        printf("close_stuck: bg_decision_log_close still blocked after 10 s\n");
        return; /* the closer thread is stuck: leave it */
    }
    pthread_join(th, NULL);
    close(rfd); /* the abandoned writer's write fails (EPIPE); it cleans up */
}

/* "-" on a stdout that is a non-blocking pipe (inherited that way): a
 * full pipe makes write(2) say EAGAIN; the writer waits for room instead
 * of counting the lines lost. */
static void test_nonblocking_stdout(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(p[1], STDOUT_FILENO);
    close(p[1]);
    bg_decision_log_opts o = {.path = "-"};
    bg_decision_log *l = open_ok(&o);
    enum { N = 1000 }; /* ~650 KB against a 64 KiB pipe nobody reads yet */
    for (int i = 0; i < N; i++) {
        bg_decision_record r = sample_record();
        bg_decision_log_append(l, &r);
    }
    usleep(50000); /* the writer meets the full pipe (EAGAIN) meanwhile */
    pthread_t th;
    pthread_create(&th, NULL, drain_fifo, &p[0]);
    bg_decision_log_stats st = finish(l);
    dup2(saved, STDOUT_FILENO); /* the reader sees end of file */
    close(saved);
    void *res;
    pthread_join(th, &res);
    close(p[0]);
    bg_strbuf *got = res;
    CHECK_INT(st.lost, 0);
    CHECK_INT(st.write_errors, 0);
    CHECK_INT(st.written + st.dropped, N);
    CHECK(st.written > 0);
    CHECK(lines_whole(got->p, got->len));
    CHECK_INT(count_lines(got->p, got->len), st.written);
    bg_strbuf_close(got);
    free(got);
}

static void test_open_errors(void)
{
    bg_decision_log *l = (bg_decision_log *)&l;
    bg_err err;
    bg_decision_log_opts o = {.path = "/nonexistent-dir/decisions.jsonl"};
    CHECK_INT(bg_decision_log_open(&o, &l, &err), BG_EIO);
    CHECK(l == NULL);
    CHECK(strstr(err.msg, "/nonexistent-dir/decisions.jsonl") != NULL);
    CHECK(strstr(err.msg, "No such file or directory") != NULL);
    o.path = "";
    CHECK_INT(bg_decision_log_open(&o, &l, &err), BG_EINVAL);
    /* NULL log: every call is a no-op */
    bg_decision_record r = sample_record();
    bg_decision_log_append(NULL, &r);
    bg_decision_log_reopen(NULL);
    bg_decision_log_flush(NULL);
    bg_decision_log_close(NULL);
}

int main(void)
{
    signal(SIGXFSZ, SIG_IGN); /* as bayesguardd does: EFBIG instead of death */
    signal(SIGPIPE, SIG_IGN); /* ... and EPIPE */
    snprintf(dir, sizeof dir, "/tmp/bg-declog-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_json_text();
    test_line_format();
    test_sampler_archive();
    test_threads();
    test_backpressure();
    test_write_refused();
    test_reopen();
    test_huge_fields();
    test_close_stuck();
    test_nonblocking_stdout();
    test_open_errors();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    CHECK_DONE("test_decision_log");
}
