/*
 * escalation.c — the pending-escalation table (escalation.h): open,
 * resolve, expire, the events, the statistics.
 *
 * Shape: the pending records in an array in creation order (at most
 * max_pending: a lookup by id is a scan of at most max_pending +
 * max_settled records, microseconds, under a lock no decision path holds
 * for anything else), the settled ones in a ring, newest last. Every
 * change is appended to the file (escalation_file.c) before it is made in
 * memory, so a refused write changes nothing (invariant 4); then the
 * event is emitted, still under the lock (invariant 5). The per-identity
 * quota (invariant 1a) is a count of the pending records with the
 * caller's peer, made by the same scan as the id lookup: no second index
 * to keep in step.
 *
 * Threads: one mutex over everything (escalation.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "escalation/escalation_priv.h"

struct bg_escalation {
    pthread_mutex_t mu;
    bg_escalation_rec **pend; /* [max_pending], creation order */
    size_t n_pend, max_pending, max_per_identity, reserve;
    bg_escalation_rec **done; /* ring [max_settled]: done_head is the oldest */
    size_t n_done, done_head, max_settled;
    bg__esc_file file;
    bg_escalation_event_fn fn;
    void *fn_arg;
    bg_escalation_stats st;
};

static const int64_t wait_bounds_s[] = {
#define BG_ESC_BOUND(b) b,
    BG_ESC_WAIT_BUCKETS(BG_ESC_BOUND)
#undef BG_ESC_BOUND
};

static bg_escalation_rec *settled_at(const bg_escalation *t, size_t i) /* 0 = oldest */
{
    return t->done[(t->done_head + i) % t->max_settled];
}

/* Keep r (taken) among the settled, dropping the oldest when full. */
static void keep_settled(bg_escalation *t, bg_escalation_rec *r)
{
    if (t->n_done == t->max_settled) {
        bg_escalation_rec_free(t->done[t->done_head]);
        t->done[t->done_head] = r;
        t->done_head = (t->done_head + 1) % t->max_settled;
        return;
    }
    t->done[(t->done_head + t->n_done) % t->max_settled] = r;
    t->n_done++;
}

static long find_pending(const bg_escalation *t, const char *id)
{
    for (size_t i = 0; i < t->n_pend; i++)
        if (strcmp(t->pend[i]->id, id) == 0)
            return (long)i;
    return -1;
}

/* Pending records whose peer is `peer` ("" for NULL). */
static size_t pending_of(const bg_escalation *t, const char *peer)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_pend; i++)
        n += strcmp(t->pend[i]->peer ? t->pend[i]->peer : "", peer ? peer : "") == 0;
    return n;
}

const char *bg_esc_refusal_label(int why)
{
    static const char *const labels[] = {
#define BG_ESC_REFUSAL_LABEL(name, label) label,
        BG_ESC_REFUSALS(BG_ESC_REFUSAL_LABEL)
#undef BG_ESC_REFUSAL_LABEL
    };
    return why >= 0 && why < BG_ESC_N_REFUSALS ? labels[why] : "?";
}

static bg_escalation_rec *find(const bg_escalation *t, const char *id)
{
    long i = find_pending(t, id);
    if (i >= 0)
        return t->pend[i];
    for (size_t k = 0; k < t->n_done; k++)
        if (strcmp(settled_at(t, k)->id, id) == 0)
            return settled_at(t, k);
    return NULL;
}

static void assert_state(const bg_escalation *t)
{
    BG_ASSERT(t->n_pend <= t->max_pending && t->n_done <= t->max_settled,
              "escalations: %zu pending (max %zu), %zu settled (max %zu)", t->n_pend,
              t->max_pending, t->n_done, t->max_settled);
    BG_ASSERT(t->st.pending == t->n_pend, "escalations: pending gauge %llu but %zu held",
              (unsigned long long)t->st.pending, t->n_pend);
}

/* Replay: the last record of an id wins. Pending ones past the cap (a
 * smaller max_pending than the file was written with) are kept anyway:
 * a promise made is not dropped; new ones are refused until they settle. */
static void take(void *arg, bg_escalation_rec *r)
{
    bg_escalation *t = arg;
    long i = find_pending(t, r->id);
    if (i >= 0) {
        bg_escalation_rec_free(t->pend[i]);
        memmove(t->pend + i, t->pend + i + 1, (t->n_pend - (size_t)i - 1) * sizeof *t->pend);
        t->n_pend--;
    }
    if (r->state == BG_ESC_PENDING) {
        if (t->n_pend == t->max_pending) {
            bg_escalation_rec **p = realloc(t->pend, (t->max_pending + 1) * sizeof *p);
            if (p == NULL) {
                BG_ERROR("escalation", "out of memory replaying %s: dropped", r->id);
                bg_escalation_rec_free(r);
                return;
            }
            t->pend = p;
            t->max_pending++;
        }
        t->pend[t->n_pend++] = r;
    } else {
        keep_settled(t, r);
    }
}

/* Every record held, pending first, for a rewrite (borrowed pointers). */
static int rewrite(bg_escalation *t, bg_err *err)
{
    size_t n = t->n_pend + t->n_done;
    bg_escalation_rec **all = malloc((n ? n : 1) * sizeof *all);
    if (all == NULL)
        return bg_err_set(err, BG_ENOMEM, "escalations: out of memory");
    for (size_t i = 0; i < t->n_pend; i++)
        all[i] = t->pend[i];
    for (size_t i = 0; i < t->n_done; i++)
        all[t->n_pend + i] = settled_at(t, i);
    int rc = bg__esc_file_rewrite(&t->file, all, n, err);
    free(all);
    return rc;
}

int bg_escalation_create(const bg_escalation_opts *opts, bg_escalation **out, bg_err *err)
{
    *out = NULL;
    bg_escalation *t = calloc(1, sizeof *t);
    if (t == NULL)
        return bg_err_set(err, BG_ENOMEM, "escalations: out of memory");
    t->max_pending = opts->max_pending ? opts->max_pending : BG_ESC_DEFAULT_MAX_PENDING;
    t->max_settled = opts->max_settled ? opts->max_settled : BG_ESC_DEFAULT_MAX_SETTLED;
    t->max_per_identity = opts->max_per_identity ? opts->max_per_identity
                                                 : t->max_pending / BG_ESC_DEFAULT_IDENTITY_SHARE;
    if (t->max_per_identity == 0)
        t->max_per_identity = 1;
    if (t->max_per_identity > t->max_pending)
        t->max_per_identity = t->max_pending;
    t->reserve = t->max_pending / BG_ESC_DEFAULT_RESERVE_SHARE;
    t->pend = calloc(t->max_pending, sizeof *t->pend);
    t->done = calloc(t->max_settled, sizeof *t->done);
    t->file.fd = -1;
    pthread_mutex_init(&t->mu, NULL);
    if (t->pend == NULL || t->done == NULL) {
        bg_escalation_close(t);
        return bg_err_set(err, BG_ENOMEM, "escalations: out of memory");
    }
    if (opts->data_dir != NULL) {
        int rc = bg__esc_file_open(opts->data_dir, &t->file, take, t, err);
        if (rc == BG_OK)
            rc = rewrite(t, err);
        if (rc != BG_OK) {
            bg_escalation_close(t);
            return rc;
        }
        if (t->n_pend > 0)
            BG_INFO("escalation", "%s: %zu pending escalation(s) restored", t->file.path,
                    t->n_pend);
    }
    t->st.pending = t->n_pend;
    *out = t;
    return BG_OK;
}

void bg_escalation_close(bg_escalation *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_pend; i++)
        bg_escalation_rec_free(t->pend[i]);
    for (size_t i = 0; i < t->n_done; i++)
        bg_escalation_rec_free(settled_at(t, i));
    free(t->pend);
    free(t->done);
    bg__esc_file_close(&t->file);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void bg_escalation_listen(bg_escalation *t, bg_escalation_event_fn fn, void *arg)
{
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->fn_arg = arg;
    pthread_mutex_unlock(&t->mu);
}

static void emit(bg_escalation *t, bg_esc_event ev, const bg_escalation_rec *r)
{
    if (t->fn != NULL)
        t->fn(t->fn_arg, ev, r);
}

/* After an append: rewrite when the file has grown to 4 x the table. */
static void maybe_rewrite(bg_escalation *t)
{
    if (t->file.fd < 0 || t->file.appends < 4 * (t->max_pending + t->max_settled))
        return;
    bg_err err;
    bg_err_clear(&err);
    if (rewrite(t, &err) != BG_OK)
        BG_WARN("escalation", "cannot compact the escalations file (appends go on): %s", err.msg);
}

int bg_escalation_open_one(bg_escalation *t, const bg_escalation_rec *r, bg_err *err)
{
    /* The caller's strings are the request's (tool, agent, session key):
     * cut, so a record's size does not depend on the client. */
    bg_escalation_rec *c = bg__esc_rec_copy_cut(r, BG_ESC_FIELD_MAX);
    if (c == NULL)
        return bg_err_set(err, BG_ENOMEM, "escalation %s: out of memory", r->id);
    c->state = BG_ESC_PENDING;
    c->resolved_ms = 0;
    free(c->approver);
    free(c->approver_peer);
    free(c->reason);
    c->approver = strdup("");
    c->approver_peer = strdup("");
    c->reason = strdup("");
    int rc = BG_OK;
    size_t mine = 0;
    pthread_mutex_lock(&t->mu);
    if (c->approver == NULL || c->approver_peer == NULL || c->reason == NULL)
        rc = bg_err_set(err, BG_ENOMEM, "escalation %s: out of memory", r->id);
    else if (t->n_pend >= t->max_pending) {
        t->st.refused[BG_ESC_REFUSED_FULL]++;
        rc = bg_err_set(err, BG_ELIMIT,
                        "the escalation table is full (%zu pending, the most it holds): "
                        "settle pending escalations (bayesguard escalations list)",
                        t->n_pend);
    } else if ((mine = pending_of(t, c->peer)) >= t->max_per_identity) {
        t->st.refused[BG_ESC_REFUSED_IDENTITY]++;
        rc = bg_err_set(err, BG_ELIMIT,
                        "identity %s%s has %zu pending escalations, the most one identity may "
                        "hold (--max-escalations-per-identity %zu): settle them (bayesguard "
                        "escalations list) or let them expire before escalating again",
                        c->peer[0] ? c->peer : "''",
                        c->peer[0] ? "" : " (every plain-TCP caller, together)", mine,
                        t->max_per_identity);
    } else if (mine > 0 && t->n_pend >= t->max_pending - t->reserve) {
        t->st.refused[BG_ESC_REFUSED_RESERVED]++;
        rc = bg_err_set(err, BG_ELIMIT,
                        "identity %s%s has %zu pending escalation%s, and the %zu free slots of "
                        "the table are reserved for identities with none pending: settle its "
                        "pending escalations (bayesguard escalations list) or let them expire "
                        "before escalating again",
                        c->peer[0] ? c->peer : "''",
                        c->peer[0] ? "" : " (every plain-TCP caller, together)", mine,
                        mine == 1 ? "" : "s", t->max_pending - t->n_pend);
    } else if (find(t, c->id) != NULL)
        rc = bg_err_set(err, BG_EEXIST, "escalation %s exists already", c->id);
    else if ((rc = bg__esc_file_append(&t->file, c, err)) != BG_OK)
        t->st.refused[BG_ESC_REFUSED_WRITE]++;
    if (rc == BG_OK) {
        t->pend[t->n_pend++] = c;
        t->st.pending++;
        t->st.opened++;
        assert_state(t);
        emit(t, BG_ESC_EVENT_OPENED, c);
        maybe_rewrite(t);
    }
    pthread_mutex_unlock(&t->mu);
    if (rc != BG_OK)
        bg_escalation_rec_free(c);
    return rc;
}

/* Settle pend[i] as `state` (under the lock): append, move, count, emit.
 * The strings are taken on success; freed by the caller otherwise. */
static int settle(bg_escalation *t, size_t i, int state, char **approver, char **approver_peer,
                  char **reason, int64_t now_ms, bg_err *err)
{
    bg_escalation_rec *r = t->pend[i];
    BG_ASSERT(r->state == BG_ESC_PENDING, "escalation %s: settling a %s one", r->id,
              bg_esc_state_name(r->state));
    bg_escalation_rec next = *r; /* the settled view, written before it is made */
    next.state = state;
    next.approver = *approver;
    next.approver_peer = *approver_peer;
    next.reason = *reason;
    next.resolved_ms = now_ms;
    int rc = bg__esc_file_append(&t->file, &next, err);
    if (rc != BG_OK)
        return rc;
    free(r->approver);
    free(r->approver_peer);
    free(r->reason);
    *r = next;
    *approver = *approver_peer = *reason = NULL;
    memmove(t->pend + i, t->pend + i + 1, (t->n_pend - i - 1) * sizeof *t->pend);
    t->n_pend--;
    t->st.pending--;
    keep_settled(t, r);
    t->st.resolved[state]++;
    double wait_s = ((double)now_ms - (double)r->created_ms) / 1000.0; /* no int overflow */
    if (wait_s < 0)
        wait_s = 0;
    for (size_t b = 0; b < BG_ESC_N_BUCKETS; b++)
        if (wait_s <= (double)wait_bounds_s[b])
            t->st.wait_le[b]++;
    t->st.wait_le[BG_ESC_N_BUCKETS]++;
    t->st.wait_sum_s += wait_s;
    t->st.wait_count++;
    assert_state(t);
    emit(t, BG_ESC_EVENT_SETTLED, r);
    maybe_rewrite(t);
    return BG_OK;
}

int bg_escalation_resolve(bg_escalation *t, const char *id, int approve, const char *approver,
                          const char *approver_peer, const char *reason, int64_t now_ms,
                          bg_escalation_rec **out, bg_err *err)
{
    if (out != NULL)
        *out = NULL;
    char *a = bg__esc_strndup(approver, BG_ESC_FIELD_MAX);
    char *ap = bg__esc_strndup(approver_peer, BG_ESC_FIELD_MAX);
    char *why = bg__esc_strndup(reason, BG_ESC_REASON_MAX);
    int rc;
    pthread_mutex_lock(&t->mu);
    long i = find_pending(t, id);
    const bg_escalation_rec *held = i < 0 ? find(t, id) : NULL;
    if (a == NULL || ap == NULL || why == NULL)
        rc = bg_err_set(err, BG_ENOMEM, "escalation %s: out of memory", id);
    else if (held != NULL)
        rc = bg_err_set(err, BG_EEXIST,
                        "escalation %s is %s already (by '%s'%s%s): a settled escalation "
                        "does not change",
                        id, bg_esc_state_name(held->state),
                        held->approver[0] ? held->approver : "its timeout",
                        held->reason[0] ? ": " : "", held->reason);
    else if (i < 0)
        rc = bg_err_set(err, BG_ENOTFOUND,
                        "no escalation %s: list them with ListEscalations (settled ones are "
                        "kept only for a while)",
                        id);
    else
        rc = settle(t, (size_t)i, approve ? BG_ESC_APPROVED : BG_ESC_REJECTED, &a, &ap, &why,
                    now_ms, err);
    if (rc == BG_OK && out != NULL) {
        bg_escalation_rec *r = find(t, id);
        *out = r ? bg_escalation_rec_copy(r) : NULL;
    }
    pthread_mutex_unlock(&t->mu);
    free(a);
    free(ap);
    free(why);
    return rc;
}

size_t bg_escalation_expire(bg_escalation *t, int64_t now_ms)
{
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n_pend;) {
        if (t->pend[i]->expires_ms > now_ms) {
            i++;
            continue;
        }
        char *a = strdup(""), *ap = strdup("");
        char *why =
            strdup(t->pend[i]->on_timeout_allow ? "nobody settled it in time: on_timeout: allow"
                                                : "nobody settled it in time: on_timeout: deny");
        bg_err err;
        bg_err_clear(&err);
        if (a != NULL && ap != NULL && why != NULL &&
            settle(t, i, BG_ESC_EXPIRED, &a, &ap, &why, now_ms, &err) == BG_OK) {
            n++; /* pend[i] is now the next one */
        } else {
            BG_WARN("escalation", "%s: cannot expire it now (%s); retried", t->pend[i]->id,
                    err.msg[0] ? err.msg : "out of memory");
            i++;
        }
        free(a);
        free(ap);
        free(why);
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

int bg_escalation_with(bg_escalation *t, const char *id,
                       int (*fn)(void *arg, const bg_escalation_rec *r), void *arg)
{
    pthread_mutex_lock(&t->mu);
    int rc = fn(arg, find(t, id));
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void bg_escalation_each(bg_escalation *t, int include_settled,
                        void (*fn)(void *arg, const bg_escalation_rec *r), void (*last)(void *arg),
                        void *arg)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; fn != NULL && i < t->n_pend; i++)
        fn(arg, t->pend[i]);
    for (size_t i = t->n_done; fn != NULL && include_settled && i > 0; i--)
        fn(arg, settled_at(t, i - 1));
    if (last != NULL)
        last(arg);
    pthread_mutex_unlock(&t->mu);
}

void bg_escalation_stats_get(bg_escalation *t, bg_escalation_stats *st)
{
    pthread_mutex_lock(&t->mu);
    *st = t->st;
    st->settled_held = t->n_done;
    st->max_pending = t->max_pending;
    st->max_per_identity = t->max_per_identity;
    st->reserve = t->reserve;
    pthread_mutex_unlock(&t->mu);
}
