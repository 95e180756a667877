/*
 * mcp_io.c — the MCP proxy's plumbing (mcp_priv.h): line writers that never
 * interleave two messages, a line reader whose buffer never grows past the
 * message limit, the table of requests still owed an answer, and the
 * queue of outcomes to report.
 *
 * Bounds: a reader holds at most max + one read(2) chunk; the table at
 * most `max` entries; the queue at most `max` jobs (more are dropped and
 * counted, never block the pipes). Thread-safe where mcp_priv.h says so:
 * writers, table and queue lock; a reader belongs to one thread.
 */
#include "mcp/mcp_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ writers */

void bg__mcp_out_init(bg__mcp_out *o, int fd)
{
    pthread_mutex_init(&o->mu, NULL);
    o->fd = fd;
    o->broken = 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int bg__mcp_out_line(bg__mcp_out *o, const char *line, size_t len)
{
    pthread_mutex_lock(&o->mu);
    int rc = BG_EIO;
    if (o->fd >= 0 && !o->broken) {
        if (write_all(o->fd, line, len) == 0 && write_all(o->fd, "\n", 1) == 0)
            rc = BG_OK;
        else
            o->broken = 1;
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

int bg__mcp_out_json(bg__mcp_out *o, json_t *msg)
{
    if (msg == NULL)
        return BG_ENOMEM;
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (s == NULL)
        return BG_ENOMEM;
    int rc = bg__mcp_out_line(o, s, strlen(s));
    free(s);
    return rc;
}

void bg__mcp_out_close(bg__mcp_out *o)
{
    pthread_mutex_lock(&o->mu);
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    pthread_mutex_unlock(&o->mu);
}

/* ------------------------------------------------------------ reader */

#define CHUNK 65536

void bg__mcp_in_init(bg__mcp_in *r, int fd, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->max = max;
}

void bg__mcp_in_close(bg__mcp_in *r)
{
    free(r->buf);
    r->buf = NULL;
}

int bg__mcp_in_next(bg__mcp_in *r, int wake_fd, const char **line, size_t *len)
{
    for (;;) {
        /* A complete line already buffered? */
        char *nl = r->len > r->start ? memchr(r->buf + r->start, '\n', r->len - r->start) : NULL;
        if (nl != NULL) {
            size_t b = r->start, e = (size_t)(nl - r->buf);
            r->start = e + 1;
            if (r->skipping) {
                r->skipping = 0;
                return BG__MCP_IN_OVERSIZED;
            }
            if (e - b > r->max)
                return BG__MCP_IN_OVERSIZED;
            *line = r->buf + b;
            *len = e - b;
            return BG__MCP_IN_LINE;
        }
        /* Compact, and drop what an oversized line has shown so far. */
        if (r->skipping || r->len - r->start > r->max) {
            r->skipping = 1;
            r->len = r->start = 0;
        } else if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->len - r->start);
            r->len -= r->start;
            r->start = 0;
        }
        if (r->cap - r->len < CHUNK) {
            size_t cap = r->len + CHUNK + 1;
            char *nb = realloc(r->buf, cap);
            if (nb == NULL)
                return -1;
            r->buf = nb;
            r->cap = cap;
        }
        if (wake_fd >= 0) {
            struct pollfd pf[2] = {{.fd = r->fd, .events = POLLIN},
                                   {.fd = wake_fd, .events = POLLIN}};
            int n = poll(pf, 2, -1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return -1;
            if (pf[1].revents)
                return BG__MCP_IN_WOKEN;
        }
        ssize_t got = read(r->fd, r->buf + r->len, CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0) {
            /* EOF: a last line without its newline still counts. */
            if (r->len > r->start && !r->skipping) {
                size_t b = r->start;
                r->start = r->len;
                if (r->len - b > r->max)
                    return BG__MCP_IN_OVERSIZED;
                *line = r->buf + b;
                *len = r->len - b;
                return BG__MCP_IN_LINE;
            }
            if (r->skipping) {
                r->skipping = 0;
                r->len = r->start = 0;
                return BG__MCP_IN_OVERSIZED;
            }
            return BG__MCP_IN_EOF;
        }
        r->len += (size_t)got;
    }
}

/* ------------------------------------------------------------ reports */

void bg__mcp_report_free(bg__mcp_report *r)
{
    if (r == NULL)
        return;
    free(r->tool);
    free(r->args);
    free(r->session);
    free(r->agent);
    free(r->policy);
    free(r->decision_id);
    free(r->receipt);
    free(r);
}

void bg__mcp_action_fill(Bayesguard__V1__Action *a, Bayesguard__V1__Context *ctx, char *tool,
                         char *args, char *session, char *agent)
{
    bayesguard__v1__action__init(a);
    bayesguard__v1__context__init(ctx);
    a->tool = tool;
    a->arguments_json = args;
    ctx->session = session;
    ctx->agent = agent;
}

/* ------------------------------------------------------------ pending */

void bg__mcp_table_init(bg__mcp_table *t, size_t max)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->max = max;
}

void bg__mcp_entry_free(bg__mcp_entry *e)
{
    if (e == NULL)
        return;
    free(e->key);
    json_decref(e->id);
    json_decref(e->answer);
    bg__mcp_report_free(e->report);
    free(e);
}

void bg__mcp_table_close(bg__mcp_table *t)
{
    bg__mcp_entry *e = bg__mcp_table_take_all(t);
    while (e != NULL) {
        bg__mcp_entry *n = e->next;
        bg__mcp_entry_free(e);
        e = n;
    }
    pthread_mutex_destroy(&t->mu);
}

/* Under t->mu. */
static bg__mcp_entry **find(bg__mcp_table *t, const char *key, unsigned long seq)
{
    for (bg__mcp_entry **pp = &t->head; *pp != NULL; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0 && (seq == 0 || (*pp)->seq == seq))
            return pp;
    return NULL;
}

int bg__mcp_table_add(bg__mcp_table *t, char *key, json_t *id, int state, unsigned long *seq)
{
    pthread_mutex_lock(&t->mu);
    int rc = BG_OK;
    if (find(t, key, 0) != NULL) {
        rc = BG_EEXIST;
    } else if (t->n >= t->max) {
        rc = BG_ELIMIT;
    } else {
        bg__mcp_entry *e = calloc(1, sizeof(*e));
        if (e == NULL) {
            rc = BG_ENOMEM;
        } else {
            e->key = key;
            key = NULL;
            e->id = json_incref(id);
            e->state = state;
            e->seq = *seq = ++t->seq;
            e->next = t->head;
            t->head = e;
            t->n++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    free(key);
    return rc;
}

bg__mcp_entry *bg__mcp_table_take(bg__mcp_table *t, const char *key, unsigned long seq)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry **pp = find(t, key, seq), *e = NULL;
    if (pp != NULL) {
        e = *pp;
        *pp = e->next;
        e->next = NULL;
        t->n--;
    }
    pthread_mutex_unlock(&t->mu);
    return e;
}

int bg__mcp_table_forward(bg__mcp_table *t, const char *key, unsigned long seq,
                          bg__mcp_report *report)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry **pp = find(t, key, seq);
    if (pp != NULL) {
        (*pp)->state = BG__MCP_FORWARDED;
        (*pp)->report = report;
        report = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    bg__mcp_report_free(report);
    return pp != NULL;
}

int bg__mcp_table_state(bg__mcp_table *t, const char *key, unsigned long seq)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry **pp = find(t, key, seq);
    int st = pp ? (*pp)->state : -1;
    pthread_mutex_unlock(&t->mu);
    return st;
}

int bg__mcp_table_answer(bg__mcp_table *t, const char *key, json_t *answer)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry **pp = find(t, key, 0);
    if (pp != NULL && (*pp)->answer == NULL) {
        (*pp)->answer = answer;
        answer = NULL;
    }
    pthread_mutex_unlock(&t->mu);
    int found = answer == NULL;
    json_decref(answer);
    return found;
}

json_t *bg__mcp_table_answer_get(bg__mcp_table *t, const char *key, unsigned long seq)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry **pp = find(t, key, seq);
    json_t *a = pp && (*pp)->answer ? json_incref((*pp)->answer) : NULL;
    pthread_mutex_unlock(&t->mu);
    return a;
}

bg__mcp_entry *bg__mcp_table_take_all(bg__mcp_table *t)
{
    pthread_mutex_lock(&t->mu);
    bg__mcp_entry *e = t->head;
    t->head = NULL;
    t->n = 0;
    pthread_mutex_unlock(&t->mu);
    return e;
}

/* ------------------------------------------------------------ queue */

void bg__mcp_queue_init(bg__mcp_queue *q, size_t max)
{
    memset(q, 0, sizeof(*q));
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max = max;
}

int bg__mcp_queue_push(bg__mcp_queue *q, bg__mcp_report *report, int harmed)
{
    bg__mcp_job *j = calloc(1, sizeof(*j));
    pthread_mutex_lock(&q->mu);
    int ok = j != NULL && !q->closing && q->n < q->max;
    if (ok) {
        j->report = report;
        j->harmed = harmed;
        if (q->tail)
            q->tail->next = j;
        else
            q->head = j;
        q->tail = j;
        q->n++;
        pthread_cond_signal(&q->cv);
    } else {
        q->dropped++;
    }
    pthread_mutex_unlock(&q->mu);
    if (!ok) {
        free(j);
        bg__mcp_report_free(report);
        return -1;
    }
    return 0;
}

bg__mcp_job *bg__mcp_queue_pop(bg__mcp_queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->head == NULL && !q->closing)
        pthread_cond_wait(&q->cv, &q->mu);
    bg__mcp_job *j = q->head;
    if (j != NULL) {
        q->head = j->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->n--;
    }
    pthread_mutex_unlock(&q->mu);
    return j;
}

void bg__mcp_queue_shut(bg__mcp_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void bg__mcp_queue_close(bg__mcp_queue *q)
{
    for (bg__mcp_job *j = q->head, *n; j != NULL; j = n) {
        n = j->next;
        bg__mcp_report_free(j->report);
        free(j);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}
