/*
 * mcp_priv.h — the MCP proxy's insides, shared by its files and nothing
 * outside daemon/mcp/.
 *
 * Files, bottom up (no file calls one above it):
 *   mcp_msg.c    classify / build messages (mcp.h)
 *   mcp_io.c     locked line writers, the bounded line reader, the pending
 *                table, the report queue
 *   mcp_call.c   one held tools/call: guard, escalation, elicitation, then
 *                forward or refuse
 *   mcp_proxy.c  bg_mcp_run: the server, the readers, routing, shutdown
 *
 * Who answers a client request: whoever takes its entry out of the pending
 * table (bg__mcp_table_take): the server reader on the server's response,
 * a worker when it refuses, the shutdown when the server died. An entry
 * taken is answered exactly once; one not found is not answered again.
 */
#ifndef BG_MCP_PRIV_H
#define BG_MCP_PRIV_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcp/mcp.h"

/* ------------------------------------------------------------ writers */

/* One pipe written a whole line at a time under mu. fd -1: closed. */
typedef struct bg__mcp_out {
    pthread_mutex_t mu;
    int fd;
    int broken; /* a write failed (EPIPE): later writes are dropped */
} bg__mcp_out;

void bg__mcp_out_init(bg__mcp_out *o, int fd);
/* line + '\n'; BG_OK or BG_EIO (closed or broken). */
int bg__mcp_out_line(bg__mcp_out *o, const char *line, size_t len);
/* Takes msg (decref'd here); compact encoding, one line. */
int bg__mcp_out_json(bg__mcp_out *o, json_t *msg);
void bg__mcp_out_close(bg__mcp_out *o);

/* ------------------------------------------------------------ reader */

typedef struct bg__mcp_in {
    int fd;
    char *buf;
    size_t len, cap, max;
    size_t start; /* first byte of the next line */
    int skipping; /* inside an oversized line: drop up to its newline */
} bg__mcp_in;

enum { BG__MCP_IN_EOF = 0, BG__MCP_IN_LINE = 1, BG__MCP_IN_OVERSIZED = 2, BG__MCP_IN_WOKEN = 3 };

void bg__mcp_in_init(bg__mcp_in *r, int fd, size_t max);
void bg__mcp_in_close(bg__mcp_in *r);
/* The next line (without '\n', a trailing '\r' kept), valid until the next
 * call. wake_fd >= 0: return WOKEN when it becomes readable. <0: error. */
int bg__mcp_in_next(bg__mcp_in *r, int wake_fd, const char **line, size_t *len);

/* ------------------------------------------------------------ outcome */

/* What Observe needs to report an allowed call's outcome. */
typedef struct bg__mcp_report {
    char *tool, *args, *session, *agent, *policy, *decision_id;
    uint8_t *receipt;
    size_t receipt_len;
} bg__mcp_report;

void bg__mcp_report_free(bg__mcp_report *r);

/* The action and context of an Evaluate or Observe (pointers borrowed). */
void bg__mcp_action_fill(Bayesguard__V1__Action *a, Bayesguard__V1__Context *ctx, char *tool,
                         char *args, char *session, char *agent);

/* ------------------------------------------------------------ pending */

enum { BG__MCP_FORWARDED = 0, BG__MCP_GUARDING = 1, BG__MCP_OWN = 2 };

typedef struct bg__mcp_entry {
    char *key;  /* bg_mcp_id_key of id */
    json_t *id; /* a reference */
    unsigned long seq;
    int state;
    bg__mcp_report *report; /* FORWARDED after an ALLOW with reporting on */
    json_t *answer;         /* OWN: the client's reply, once it came */
    struct bg__mcp_entry *next;
} bg__mcp_entry;

typedef struct bg__mcp_table {
    pthread_mutex_t mu;
    bg__mcp_entry *head;
    size_t n, max;
    unsigned long seq;
} bg__mcp_table;

void bg__mcp_table_init(bg__mcp_table *t, size_t max);
void bg__mcp_table_close(bg__mcp_table *t);
/* Takes key. BG_OK (*seq set), BG_EEXIST (that id is pending), BG_ELIMIT. */
int bg__mcp_table_add(bg__mcp_table *t, char *key, json_t *id, int state, unsigned long *seq);
/* Remove and return the entry (the caller answers it and frees it);
 * seq 0 matches any. NULL when absent. */
bg__mcp_entry *bg__mcp_table_take(bg__mcp_table *t, const char *key, unsigned long seq);
/* A GUARDING entry becomes FORWARDED with report (taken, may be NULL).
 * 1 when it was still there, 0 when not (report freed). */
int bg__mcp_table_forward(bg__mcp_table *t, const char *key, unsigned long seq,
                          bg__mcp_report *report);
/* The state of the entry, -1 when it is gone. */
int bg__mcp_table_state(bg__mcp_table *t, const char *key, unsigned long seq);
/* OWN entries: store the reply (taken: kept, or released when there is no
 * such entry or it has one already); 1 when kept. */
int bg__mcp_table_answer(bg__mcp_table *t, const char *key, json_t *answer);
/* OWN entries: the reply once it came (new ref), else NULL. */
json_t *bg__mcp_table_answer_get(bg__mcp_table *t, const char *key, unsigned long seq);
/* Every entry, removed (a list through next). */
bg__mcp_entry *bg__mcp_table_take_all(bg__mcp_table *t);
void bg__mcp_entry_free(bg__mcp_entry *e);

/* ------------------------------------------------------------ reports */

typedef struct bg__mcp_job {
    bg__mcp_report *report;
    int harmed;
    struct bg__mcp_job *next;
} bg__mcp_job;

/* A bounded queue drained by one reporter thread. */
typedef struct bg__mcp_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bg__mcp_job *head, *tail;
    size_t n, max;
    int closing;
    unsigned long dropped;
} bg__mcp_queue;

void bg__mcp_queue_init(bg__mcp_queue *q, size_t max);
/* Takes report. 0 queued, -1 full or closing (report freed, counted). */
int bg__mcp_queue_push(bg__mcp_queue *q, bg__mcp_report *report, int harmed);
/* Blocks; NULL once closing and empty. */
bg__mcp_job *bg__mcp_queue_pop(bg__mcp_queue *q);
void bg__mcp_queue_shut(bg__mcp_queue *q);
void bg__mcp_queue_close(bg__mcp_queue *q);

/* ------------------------------------------------------------ the proxy */

typedef struct bg__mcp {
    const bg_mcp_config *cfg;
    bg__mcp_out client;    /* our stdout */
    bg__mcp_out server;    /* the server's stdin */
    bg__mcp_table pending; /* client requests the server or the guard owes */
    bg__mcp_table own;     /* our requests to the client (elicitation/create) */
    bg__mcp_queue reports;
    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cv;
    char client_name[256]; /* initialize params.clientInfo.name */
    int elicitation;       /* the client declared capabilities.elicitation */
    unsigned workers;      /* held tools/call threads alive */
    int stopping;          /* the proxy is shutting down: workers give up */
    unsigned long own_seq;
} bg__mcp;

/* Hold one tools/call (m: the classified request, borrowed; the entry
 * keyed by key/seq is already GUARDING) and decide it on a worker thread.
 * line/len: the bytes to forward unchanged on ALLOW (copied). BG_OK, or
 * BG_ELIMIT / BG_ENOMEM (then the caller answers the entry). */
int bg__mcp_call_start(bg__mcp *p, bg_mcp_msg *m, const char *key, unsigned long seq,
                       const char *line, size_t len);

#endif
