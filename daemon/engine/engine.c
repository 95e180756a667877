/*
 * engine.c — the decision path: session posterior -> plugins -> verdict.
 *
 * Contract: engine.h. Posterior arithmetic: posterior.c. Sessions, locking
 * and the states of a posterior: session.h. Durable log: obs_store.h.
 * Models with count() == 0, and guards with sampler_always: the sampled path
 * (sampled.h), called directly.
 *
 * evaluate, top to bottom:
 *   1. check the action (engine rules, then the model's check_action)
 *   2. find the session; take its lock shared; if the guard's posterior is
 *      missing, behind the observations, or its order does not cover the
 *      estimator's need, retake the lock exclusive and bring it up to date
 *   3. harm for every candidate, batched in chunks, checked in [0,1]
 *   4. the estimator -> bound, cautious hypothesis, plausible-set size
 *   5. decision: bound > threshold -> over_threshold; a sampled verdict
 *      whose sampler is outside the limits -> on_unhealthy (deny /
 *      escalate; unavailable was refused in the sampled path); shadow ->
 *      ALLOW
 * observe:
 *   1. check; 2. session exclusive; bring the posterior up to date;
 *   3. log-likelihood of the new observation for every candidate into the
 *      posterior's scratch, normalised and checked (nothing changed yet);
 *   4. append to the in-memory history (memory bound checked), then to the
 *      durable log (fsync) — the acknowledgement point; a failed store
 *      undoes the in-memory append;
 *   5. swap the posterior in, recompute the order the estimator needs
 *      (once per observation).
 *
 * Threads: any; see engine.h. Ownership: the engine owns sessions and the
 * log; guards and their plugin instances are borrowed per call.
 */
#include "engine/engine.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "common/bg_time.h"
#include "engine/obs_store.h"
#include "common/bg_siphash.h"
#include "engine/observation.h"
#include "engine/plugin_code.h"
#include "engine/quota.h"
#include "engine/receipt_used.h"
#include "engine/sampled_priv.h"
#include "engine/session.h"

struct bg_engine {
    bg_engine_opts opts;
    bg__session_table *table;
    bg__quota *quota;       /* per-identity sessions and observation rate */
    bg__obs_store *store;   /* NULL: memory only */
    bg__receipt_used *used; /* receipt ids accepted (bg_engine_observe_receipt) */
    int quarantining;       /* replay: a record did not fit; the rest go aside */
    atomic_uint_fast64_t evaluations;
    atomic_uint_fast64_t use_clock;
    /* Fleet hooks (engine.h): append_mu keeps record numbers in log order. */
    pthread_mutex_t append_mu;
    uint64_t next_lsn; /* under append_mu (replay: the opening thread) */
};

const char *bg_decision_name(bg_decision d)
{
    switch (d) {
#define BG_DECISION_CASE(name, value, text)                                                        \
    case name:                                                                                     \
        return text;
        BG_DECISIONS(BG_DECISION_CASE)
#undef BG_DECISION_CASE
    }
    return "?";
}

/* ------------------------------------------------------------ lifecycle */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_fleet(const bg_obs_receipt *rc)
{
    return rc && (rc->flags & BG_OBS_RECEIPT_FLEET);
}

/* The stored hook for record lsn (append_mu held, or the replay). */
static int fleet_stored(bg_engine *e, uint64_t lsn, const char *guard, const char *session,
                        const bg_observation *obs, const bg_obs_receipt *rc, int replayed,
                        bg_err *err)
{
    const bg_engine_fleet_hooks *h = e->opts.fleet;
    if (!h)
        return BG_OK;
    uint8_t *rec = NULL;
    size_t len = bg__obs_encode_receipt(guard, session, obs, rc, &rec);
    if (len == 0)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory encoding an observation");
    h->stored(h->ctx, lsn, guard, session, rec, len, rc, replayed);
    free(rec);
    return BG_OK;
}

/* Replay goes through the limits live traffic meets (max_bytes, the
 * session table, max_obs_per_session). From the first record that does
 * not fit, every later one is quarantined (obs_store.h), so each session's
 * history in memory stays a prefix of its log, never one with a gap. */
static int replay_one(void *ctx, const char *guard, const char *session, const bg_observation *obs,
                      const bg_obs_receipt *receipt, bg_err *err)
{
    bg_engine *e = ctx;
    bg__session *s;
    uint64_t lsn = e->next_lsn++;
    /* A receipt used before the restart stays used (until it expires). A
     * fleet id is the fleet's to remember (stored hook), not a receipt. */
    if (receipt && !is_fleet(receipt) &&
        bg__receipt_used_claim(e->used, receipt->id, receipt->expiry_unix_ms, wall_ms()) ==
            BG_ENOMEM)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory replaying receipts");
    bg_err lerr;
    bg_err_clear(&lerr);
    int rc = BG_ELIMIT;
    if (!e->quarantining) {
        rc = bg__table_get(e->table, guard, session, 1, NULL, &s, &lerr);
        if (rc == BG_OK) {
            pthread_rwlock_wrlock(&s->lock);
            if (s->n_obs >= e->opts.max_obs_per_session)
                rc = bg_err_set(&lerr, BG_ELIMIT, "max_obs_per_session=%zu reached",
                                e->opts.max_obs_per_session);
            else
                rc = bg__session_append(e->table, s, obs, lsn, 0, &lerr);
            int appended = rc == BG_OK;
            if (appended)
                rc = fleet_stored(e, lsn, guard, session, obs, receipt, 1, err);
            pthread_rwlock_unlock(&s->lock);
            bg__table_release(e->table, s);
            if (appended)
                return rc;
        }
        if (rc != BG_OK && rc != BG_ELIMIT && rc != BG_ENOMEM) {
            if (lerr.msg[0])
                *err = lerr;
            return rc;
        }
    }
    if (!e->quarantining)
        BG_WARN("engine",
                "replay: %s: this and every later observation of the log are quarantined "
                "(kept on disk, not in memory): raise the engine's memory limit (max_bytes) or "
                "max_obs_per_session",
                lerr.msg);
    e->quarantining = 1;
    /* A quarantined record keeps its record number (lsn was counted) and
     * still goes to the fleet: it is in the log, so its fleet id is taken
     * and, if it is local and not yet shipped, it is still the fleet's to
     * ship (docs/FLEET.md). */
    if ((rc = fleet_stored(e, lsn, guard, session, obs, receipt, 1, err)) != BG_OK)
        return rc;
    return bg__obs_store_quarantine(e->store, guard, session, obs, receipt,
                                    lerr.msg[0] ? lerr.msg : "over the memory limits", err);
}

int bg_engine_create(const bg_engine_opts *opts, bg_engine **out, bg_err *err)
{
    *out = NULL;
    bg_engine *e = calloc(1, sizeof *e);
    if (!e)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory");
    if (opts)
        e->opts = *opts;
    pthread_mutex_init(&e->append_mu, NULL);
    if (e->opts.fleet && !e->opts.data_dir) {
        free(e);
        return bg_err_set(err, BG_EINVAL,
                          "engine: fleet mode needs --data-dir (the local log is the fleet's "
                          "outbox)");
    }
    if (!e->opts.max_sessions)
        e->opts.max_sessions = 10000;
    if (!e->opts.max_bytes)
        e->opts.max_bytes = (size_t)1 << 30;
    if (!e->opts.max_obs_per_session)
        e->opts.max_obs_per_session = 1000000;
    bg__quota_limits ql = {.max_sessions = e->opts.max_sessions_per_identity,
                           .rate = e->opts.max_observe_rate,
                           .burst = e->opts.observe_burst};
    uint8_t qkey[BG_SIPHASH_KEY_BYTES];
    int rc = bg_siphash_key_random(qkey) == BG_OK
                 ? bg__quota_create(&ql, qkey, &e->quota, err)
                 : bg_err_set(err, BG_EIO, "engine: getrandom failed for the quota table's key");
    bg__table_limits lim = {e->opts.max_sessions, e->opts.max_bytes, e->quota};
    if (rc == BG_OK)
        rc = bg__table_create(&lim, &e->table, err);
    if (rc == BG_OK && bg__receipt_used_create(&e->used) != BG_OK)
        rc = bg_err_set(err, BG_ENOMEM, "engine: out of memory");
    if (rc == BG_OK && e->opts.data_dir) {
        bg__obs_replay_stats st = {0};
        bg__obs_store_opts so = {.segment_bytes = e->opts.segment_bytes,
                                 .snapshot_bytes = e->opts.snapshot_bytes,
                                 .per_record_sync = e->opts.per_record_sync,
                                 .on_durable = e->opts.on_durable,
                                 .durable_ctx = e->opts.durable_ctx};
        rc = bg__obs_store_open(e->opts.data_dir, &so, &e->store, err);
        if (rc == BG_OK)
            rc = bg__obs_store_replay(e->store, replay_one, e, &st, err);
        if (rc == BG_OK) {
            bg__table_stats ts;
            bg__table_stats_get(e->table, &ts);
            BG_INFO("engine", "%s: replayed %llu observations into %llu sessions (%llu files)",
                    e->opts.data_dir, (unsigned long long)st.records,
                    (unsigned long long)ts.sessions, (unsigned long long)st.files);
            bg_engine_stats es;
            bg_engine_stats_get(e, &es);
            if (es.store_quarantined)
                BG_WARN("engine",
                        "%llu observations did not fit the memory limits at replay and are "
                        "quarantined in %s/%s (counted in Status and "
                        "bayesguard_observations_quarantined)",
                        (unsigned long long)es.store_quarantined, e->opts.data_dir,
                        BG_OBS_QUARANTINE_FILE);
        }
    }
    if (rc != BG_OK) {
        bg_engine_destroy(e);
        return rc;
    }
    *out = e;
    return BG_OK;
}

void bg_engine_destroy(bg_engine *e)
{
    if (!e)
        return;
    bg__table_destroy(e->table);
    bg__quota_destroy(e->quota);
    bg__obs_store_close(e->store);
    bg__receipt_used_destroy(e->used);
    pthread_mutex_destroy(&e->append_mu);
    free(e);
}

/* ---------------------------------------------------------------- checks */

static int check_action(const bg_guard *g, const bg_action *a, const char *what, bg_err *err)
{
    char where[256];
    snprintf(where, sizeof where, "policy %s: %s", g->name, what);
    int rc = bg__action_validate(a, where, err);
    if (rc != BG_OK)
        return rc;
    if (g->model->check_action) {
        char msg[512] = "";
        if (g->model->check_action(g->model_inst, a, msg, sizeof msg) != BG_PLUGIN_OK)
            return bg_err_set(err, BG_EINVAL, "%s: model %s: %s", where, g->model_name,
                              msg[0] ? msg : "action rejected");
    }
    return BG_OK;
}

/* BG_OK with *n > 0 for an enumerable model; *n == 0 for the sampled path
 * (after checking it is usable). */
static int model_count(bg_engine *e, const bg_guard *g, size_t *n, bg_err *err)
{
    *n = 0; /* written on every path (gcc -O2 cannot tell) */
    uint64_t c = g->model->count(g->model_inst);
    if (g->sampler && g->sampler_always)
        c = 0; /* spec.sampler.always: sampled although enumerable */
    if (c > UINT32_MAX)
        return bg_err_set(err, BG_ELIMIT,
                          "policy %s: model %s has %llu hypotheses; the engine enumerates at "
                          "most %u — use a sampler (count() == 0) for larger spaces",
                          g->name, g->model_name, (unsigned long long)c, (unsigned)UINT32_MAX);
    *n = (size_t)c;
    if (c == 0 && !g->sampler)
        return bg_err_set(err, BG_EINVAL, "policy %s: model %s needs a sampler", g->name,
                          g->model_name);
    if (c == 0 && !e->opts.trainer)
        return bg_err_set(err, BG_EUNSUPPORTED,
                          "policy %s: model %s has no enumerable hypothesis space and needs the "
                          "sampled path, which this engine was not given",
                          g->name, g->model_name);
    return BG_OK;
}

static double order_need(const bg_guard *g)
{
    return g->estimator->order_needed ? g->estimator->order_needed(g->estimator_inst) : 0.0;
}

/* ------------------------------------------------------ posterior states */

static bg__pstate *find_state(bg__session *s, uint64_t key)
{
    for (bg__pstate *st = s->states; st; st = st->next)
        if (st->model_key == key)
            return st;
    return NULL;
}

static int plugin_fail(const bg_guard *g, const char *fn, int prc, bg_err *err)
{
    const char *why = prc == BG_PLUGIN_EINVAL ? ": the model rejected the data (see its log)"
                      : prc == BG_PLUGIN_ELIMIT
                          ? ": the model is at a limit (see its log); retry later"
                          : "";
    return bg_err_set(err, bg__plugin_code(prc), "policy %s: model %s: %s failed (%d)%s", g->name,
                      g->model_name, fn, prc, why);
}

/* Stage observation i of the session (against hist[0..i)) into scratch. */
static int stage_obs(const bg_guard *g, bg__session *s, bg__pstate *st, size_t i, double *ll,
                     bg_err *err)
{
    bg__posterior *p = &st->post;
    for (size_t off = 0; off < p->n; off += BG_POSTERIOR_CHUNK) {
        size_t len = p->n - off < BG_POSTERIOR_CHUNK ? p->n - off : BG_POSTERIOR_CHUNK;
        int prc = g->model->log_lik(g->model_inst, &s->hist[i], s->hist, i, p->ids + off, len, ll);
        if (prc != BG_PLUGIN_OK)
            return plugin_fail(g, "log_lik", prc, err);
        bg__posterior_stage(p, off, ll, len);
    }
    return BG_OK;
}

/* New state at the prior (lock exclusive). */
static int state_build(bg_engine *e, const bg_guard *g, bg__session *s, size_t n, bg__pstate **out,
                       bg_err *err)
{
    /* Keep at most BG_SESSION_MAX_STATES: drop the least recently used. */
    size_t k = 0;
    bg__pstate *lru = NULL;
    for (bg__pstate *x = s->states; x; x = x->next, k++)
        if (!lru || atomic_load_explicit(&x->last_use, memory_order_relaxed) <
                        atomic_load_explicit(&lru->last_use, memory_order_relaxed))
            lru = x;
    if (k >= BG_SESSION_MAX_STATES)
        bg__session_drop_state(e->table, s, lru);
    size_t bytes = bg__posterior_bytes(n) + sizeof(bg__pstate);
    int rc = bg__table_state_reserve(e->table, s, bytes, err);
    if (rc != BG_OK)
        return rc;
    bg__pstate *st = calloc(1, sizeof *st);
    if (!st || bg__posterior_init(&st->post, n, err) != BG_OK) {
        free(st);
        bg__table_state_unreserve(e->table, s, bytes);
        return bg_err_set(err, BG_ENOMEM,
                          "policy %s: out of memory for a posterior over %zu "
                          "hypotheses",
                          g->name, n);
    }
    bg__posterior *p = &st->post;
    for (size_t i = 0; i < n; i++)
        p->ids[i] = i;
    for (size_t off = 0; off < n && rc == BG_OK; off += BG_POSTERIOR_CHUNK) {
        size_t len = n - off < BG_POSTERIOR_CHUNK ? n - off : BG_POSTERIOR_CHUNK;
        int prc = g->model->log_prior(g->model_inst, p->ids + off, len, p->log_post + off);
        if (prc != BG_PLUGIN_OK)
            rc = plugin_fail(g, "log_prior", prc, err);
    }
    if (rc == BG_OK && (rc = bg__posterior_normalise(p, err)) != BG_OK)
        bg_err_prefix(err, "policy %s: model %s: prior: ", g->name, g->model_name);
    if (rc != BG_OK) {
        bg__posterior_close(p);
        free(st);
        bg__table_state_unreserve(e->table, s, bytes);
        return rc;
    }
    st->model_key = g->model_key;
    st->next = s->states;
    s->states = st;
    *out = st;
    return BG_OK;
}

/* Fold every stored observation the state has not seen yet, and order it
 * for `need` (lock exclusive). */
static int state_catch_up(const bg_guard *g, bg__session *s, bg__pstate *st, double need,
                          bg_err *err)
{
    bg__posterior *p = &st->post;
    if (p->n_obs < s->n_obs) {
        double *ll = malloc(BG_POSTERIOR_CHUNK * sizeof *ll);
        if (!ll)
            return bg_err_set(err, BG_ENOMEM, "engine: out of memory");
        int rc = BG_OK;
        while (rc == BG_OK && p->n_obs < s->n_obs) {
            double m;
            size_t i = (size_t)p->n_obs;
            rc = stage_obs(g, s, st, i, ll, err);
            if (rc == BG_OK && (rc = bg__posterior_prepare(p, &m, err)) == BG_OK) {
                bg__posterior_swap(p, m);
            } else {
                bg_err_prefix(err,
                              "policy %s: session \"%s\": replaying observation %zu: ", g->name,
                              s->id, i);
                /* stored data the model refuses now (it changed since): the
                 * daemon's failure, not the request's — never INVALID_ARGUMENT */
                if (rc == BG_EINVAL) {
                    rc = BG_EINTERNAL;
                    if (err)
                        err->code = rc;
                }
            }
        }
        free(ll);
        if (rc != BG_OK)
            return rc;
    }
    if (!bg__posterior_order_covers(p, need))
        return bg__posterior_order(p, need, err);
    return BG_OK;
}

static int state_ready(const bg__session *s, const bg__pstate *st, double need)
{
    return st && st->post.n_obs == s->n_obs && bg__posterior_order_covers(&st->post, need);
}

/* Lock s (shared when the state is ready, else exclusive after bringing it
 * up to date). *locked_excl tells which; *out the state. */
static int lock_state(bg_engine *e, const bg_guard *g, bg__session *s, size_t n, double need,
                      bg__pstate **out, bg_err *err)
{
    pthread_rwlock_rdlock(&s->lock);
    bg__pstate *st = find_state(s, g->model_key);
    if (state_ready(s, st, need)) {
        atomic_store_explicit(&st->last_use, atomic_fetch_add(&e->use_clock, 1),
                              memory_order_relaxed);
        *out = st;
        return BG_OK;
    }
    pthread_rwlock_unlock(&s->lock);
    pthread_rwlock_wrlock(&s->lock);
    st = find_state(s, g->model_key);
    int rc = BG_OK;
    if (st && st->post.n != n)
        return bg_err_set(err, BG_EINTERNAL,
                          "policy %s: model %s: %zu hypotheses, but its posterior (same "
                          "model_key) has %zu",
                          g->name, g->model_name, n, st->post.n);
    if (!st)
        rc = state_build(e, g, s, n, &st, err);
    if (rc == BG_OK)
        rc = state_catch_up(g, s, st, need, err);
    if (rc == BG_OK) {
        atomic_store_explicit(&st->last_use, atomic_fetch_add(&e->use_clock, 1),
                              memory_order_relaxed);
        *out = st;
    }
    return rc; /* locked (exclusive) either way */
}

/* ------------------------------------------------------------- evaluate */

/* Readers of a session that has no observation yet share one prior-only
 * session per policy instead of creating theirs: evaluating with fresh
 * session ids costs no memory and cannot exhaust max_sessions. The id
 * starts with a byte no client session id carries. */
#define PRIOR_SESSION "\x01prior"

static int get_for_reading(bg_engine *e, const bg_guard *g, const char *session, bg__session **out,
                           bg_err *err)
{
    int rc = bg__table_get(e->table, g->name, session, 0, NULL, out, NULL);
    if (rc == BG_ENOTFOUND)
        rc = bg__table_get(e->table, g->name, PRIOR_SESSION, 1, NULL, out, err);
    else if (rc != BG_OK)
        rc = bg_err_set(err, rc, "policy %s: session \"%s\": lookup failed", g->name, session);
    return rc;
}

static int compute_harm(const bg_guard *g, const bg__session *s, const bg__posterior *p,
                        const bg_action *a, double *harm, bg_err *err)
{
    for (size_t off = 0; off < p->n; off += BG_POSTERIOR_CHUNK) {
        size_t len = p->n - off < BG_POSTERIOR_CHUNK ? p->n - off : BG_POSTERIOR_CHUNK;
        int prc =
            g->model->harm(g->model_inst, a, s->hist, s->n_obs, p->ids + off, len, harm + off);
        if (prc != BG_PLUGIN_OK)
            return plugin_fail(g, "harm", prc, err);
    }
    for (size_t i = 0; i < p->n; i++)
        if (!(harm[i] >= 0.0 && harm[i] <= 1.0))
            return bg_err_set(err, BG_EINTERNAL,
                              "policy %s: model %s: harm of hypothesis %llu is %g; expected a "
                              "probability in [0, 1]",
                              g->name, g->model_name, (unsigned long long)p->ids[i], harm[i]);
    return BG_OK;
}

static void decide(const bg_guard *g, bg_verdict *v)
{
    v->shadow = g->shadow != 0;
    /* Fails closed: a bound that is not a number compares false with
     * everything, so it is over the threshold here, never under it. */
    if (!(v->harm_bound <= g->threshold) && !g->shadow)
        v->decision = g->over_threshold;
    else
        v->decision = BG_DECISION_ALLOW;
    /* A sampler outside the policy's limits (on_unhealthy: deny or
     * escalate; unavailable never gets here) only makes it stricter:
     * DENY over ESCALATE over ALLOW. */
    if (v->sampled && !v->health.healthy && !g->shadow) {
        bg_decision d = g->sampler_limits.on_unhealthy == BG_UNHEALTHY_ESCALATE
                            ? BG_DECISION_ESCALATE
                            : BG_DECISION_DENY;
        if (v->decision == BG_DECISION_ALLOW || d == BG_DECISION_DENY)
            v->decision = d;
    }
}

static int estimate(const bg_guard *g, const bg__session *s, const bg__posterior *p,
                    const bg_action *a, bg_verdict *v, bg_err *err)
{
    double *harm = malloc(p->n * sizeof *harm);
    if (!harm)
        return bg_err_set(err, BG_ENOMEM, "engine: out of memory for %zu harm values", p->n);
    int rc = compute_harm(g, s, p, a, harm, err);
    bg_estimate_out eo = {0};
    if (rc == BG_OK) {
        bg_estimate_in in = {
            .n = p->n,
            .ids = p->ids,
            .log_post = p->log_post,
            .harm = harm,
            .order = p->order,
            .n_order = p->n_order,
            .order_complete = p->n_order == p->n,
            .post = p->prob,
        };
        bg_estimate_out_init(&eo);
        int prc = g->estimator->estimate(g->estimator_inst, &in, &eo);
        if (prc != BG_PLUGIN_OK)
            rc = bg_err_set(err, BG_EINTERNAL, "policy %s: estimator %s: estimate failed (%d)",
                            g->name, g->estimator_name, prc);
        else
            rc = bg_estimate_out_check(g, &eo, p->n, err);
    }
    if (rc == BG_OK) {
        v->harm_bound = eo.bound;
        v->posterior_predictive = eo.posterior_predictive;
        v->cautious_id = p->ids[eo.cautious];
        v->cautious_posterior = exp(p->log_post[eo.cautious]);
        v->cautious_harm = harm[eo.cautious];
        v->plausible_set_size = eo.plausible;
        bg_hypothesis_label(g, v->cautious_id, v->cautious_label, sizeof v->cautious_label);
    }
    free(harm);
    return rc;
}

int bg_engine_evaluate(bg_engine *e, const bg_guard *g, const char *session,
                       const bg_action *action, bg_verdict *out, bg_err *err)
{
    uint64_t t0 = bg_now_ns();
    size_t n;
    int rc = check_action(g, action, "action", err);
    if (rc == BG_OK)
        rc = model_count(e, g, &n, err);
    if (rc != BG_OK)
        return rc;
    bg__session *s;
    if ((rc = get_for_reading(e, g, session, &s, err)) != BG_OK)
        return rc;
    bg_verdict v;
    memset(&v, 0, sizeof v);
    if (n == 0) {
        pthread_rwlock_rdlock(&s->lock);
        rc = bg__sampled_evaluate(e->opts.trainer, g, session, s->hist, s->n_obs, action, &v, err);
    } else {
        bg__pstate *st = NULL;
        rc = lock_state(e, g, s, n, order_need(g), &st, err);
        if (rc == BG_OK)
            rc = estimate(g, s, &st->post, action, &v, err);
    }
    v.observations = s->n_obs;
    pthread_rwlock_unlock(&s->lock);
    bg__table_release(e->table, s);
    if (rc != BG_OK)
        return rc;
    decide(g, &v);
    atomic_fetch_add(&e->evaluations, 1);
    v.eval_us = (bg_now_ns() - t0) / 1000u;
    *out = v;
    return BG_OK;
}

/* -------------------------------------------------------------- observe */

static void fill_summary(const bg_guard *g, const bg__session *s, const bg__posterior *p,
                         bg_posterior_summary *out)
{
    memset(out, 0, sizeof *out);
    out->hypotheses = p->n;
    out->observations = s->n_obs;
    size_t m = bg__posterior_map(p);
    out->map_id = p->ids[m];
    out->map_posterior = exp(p->log_post[m]);
    out->entropy_nats = bg__posterior_entropy(p);
    bg_hypothesis_label(g, out->map_id, out->map_label, sizeof out->map_label);
}

/* The durable append and the stored hook under append_mu, so record
 * numbers follow the log's order (lock exclusive on s). */
static int store_append(bg_engine *e, const bg_guard *g, bg__session *s, const bg_observation *obs,
                        const bg_obs_receipt *receipt, bg_err *err)
{
    pthread_mutex_lock(&e->append_mu);
    int rc = bg__obs_store_append(e->store, g->name, s->id, obs, receipt, err);
    if (rc == BG_OK) {
        uint64_t lsn = e->next_lsn++;
        BG_ASSERT(s->n_obs > 0 && s->lsn[s->n_obs - 1] == UINT64_MAX,
                  "session invariant 6: record %llu given to an observation already numbered",
                  (unsigned long long)lsn);
        s->lsn[s->n_obs - 1] = lsn;
        bg_err herr;
        bg_err_clear(&herr);
        /* Stored: a hook failure (out of memory) must not fail the Observe. */
        if (fleet_stored(e, lsn, g->name, s->id, obs, receipt, 0, &herr) != BG_OK)
            BG_WARN("engine", "%s (record %llu is stored; the fleet ships it after a restart)",
                    herr.msg, (unsigned long long)lsn);
    }
    pthread_mutex_unlock(&e->append_mu);
    return rc;
}

/* Fleet order: observation i joins the settled prefix, moved there when it
 * is not next; a moved history drops the posteriors, which fold the old
 * order (the next call rebuilds them, bit-identical to an incremental
 * fold of the new order). Lock exclusive. */
static void settle_at(bg_engine *e, bg__session *s, size_t i)
{
    BG_ASSERT(i < s->n_obs && s->settled <= s->n_obs,
              "session invariant 6: settling %zu of %zu (settled %zu)", i, s->n_obs, s->settled);
    if (i < s->settled)
        return;
    if (i != s->settled) {
        bg__session_move(s, i, s->settled);
        while (s->states)
            bg__session_drop_state(e->table, s, s->states);
    }
    s->settled++;
}

static int observe_locked(bg_engine *e, const bg_guard *g, bg__session *s, size_t n,
                          const bg_observation *obs, const bg_obs_receipt *receipt,
                          bg_posterior_summary *out, bg_err *err)
{
    if (s->n_obs >= e->opts.max_obs_per_session)
        return bg_err_set(err, BG_ELIMIT,
                          "engine: observation limit reached (max_obs_per_session=%zu) for "
                          "policy %s session \"%s\"",
                          e->opts.max_obs_per_session, g->name, s->id);
    bg__pstate *st = NULL;
    double m = 0.0;
    int rc = BG_OK;
    if (n > 0) {
        /* Up to date with the stored observations before adding one. */
        st = find_state(s, g->model_key);
        if (!st)
            rc = state_build(e, g, s, n, &st, err);
        if (rc == BG_OK)
            rc = state_catch_up(g, s, st, 2.0, err);
        double *ll = rc == BG_OK ? malloc(BG_POSTERIOR_CHUNK * sizeof *ll) : NULL;
        if (rc == BG_OK && !ll)
            rc = bg_err_set(err, BG_ENOMEM, "engine: out of memory");
        /* Stage against the history without it: hist[0..n_obs). */
        if (rc == BG_OK) {
            bg__posterior *p = &st->post;
            for (size_t off = 0; off < p->n && rc == BG_OK; off += BG_POSTERIOR_CHUNK) {
                size_t len = p->n - off < BG_POSTERIOR_CHUNK ? p->n - off : BG_POSTERIOR_CHUNK;
                int prc =
                    g->model->log_lik(g->model_inst, obs, s->hist, s->n_obs, p->ids + off, len, ll);
                if (prc != BG_PLUGIN_OK)
                    rc = plugin_fail(g, "log_lik", prc, err);
                else
                    bg__posterior_stage(p, off, ll, len);
            }
        }
        free(ll);
        if (rc == BG_OK && (rc = bg__posterior_prepare(&st->post, &m, err)) != BG_OK)
            bg_err_prefix(err, "policy %s: observation rejected: ", g->name);
        if (rc != BG_OK)
            return rc;
    }
    /* Memory first (it may hit max_bytes), then the acknowledgement point:
     * durable before the posterior changes; a failed store undoes the
     * in-memory append, so memory never holds what the log does not. */
    /* Memory and the log hold the arguments' keyed hash, never the
     * arguments (obs_store.h): a replayed history equals the live one, and
     * the fleet ships the stored form (the stream never sees arguments). */
    bg_observation stored = *obs;
    char args_hash[BG_OBS_ARGS_HASH_LEN + 1];
    if (e->store) {
        bg__obs_store_hash_args(e->store, obs->action.arguments_json, args_hash);
        stored.action.arguments_json = args_hash;
    }
    if ((rc = bg__session_append(e->table, s, &stored, UINT64_MAX, 0, err)) != BG_OK)
        return rc;
    if (e->store && (rc = store_append(e, g, s, &stored, receipt, err)) != BG_OK) {
        bg__session_pop(e->table, s);
        return rc;
    }

    if (n == 0) {
        /* The observation is stored: a training failure is logged, never
         * reported as a failed Observe (a retry would count it twice). */
        bg_err terr;
        bg_err_clear(&terr);
        if (bg__sampled_observe(e->opts.trainer, g, s->id, s->hist, s->n_obs, &terr) != BG_OK)
            BG_WARN("engine", "%s (the observation is stored)", terr.msg);
        memset(out, 0, sizeof *out);
        out->observations = s->n_obs;
        return BG_OK;
    }
    bg__posterior_swap(&st->post, m);
    atomic_store_explicit(&st->last_use, atomic_fetch_add(&e->use_clock, 1), memory_order_relaxed);
    /* The order every Evaluate until the next observation reuses. The
     * observation is stored by now, so a failure here (out of memory) is
     * logged, not returned: a failed Observe invites a retry that would
     * store it twice. A failed order leaves none (n_order 0), which the
     * next Evaluate computes again (lock_state) or fails closed on. */
    bg_err oerr;
    bg_err_clear(&oerr);
    if (bg__posterior_order(&st->post, order_need(g), &oerr) != BG_OK)
        BG_WARN("engine",
                "policy %s session \"%s\": %s (the observation is stored; the next "
                "evaluation orders the posterior again)",
                g->name, s->id, oerr.msg);
    fill_summary(g, s, &st->post, out);
    return BG_OK;
}

int bg_engine_observe(bg_engine *e, const bg_guard *g, const char *session,
                      const bg_observation *obs, bg_posterior_summary *out, bg_err *err)
{
    return bg_engine_observe_owned(e, g, session, obs, NULL, NULL, out, err);
}

static int observe_checked(bg_engine *e, const bg_guard *g, const char *session,
                           const bg_observation *obs, const bg_obs_receipt *receipt,
                           const char *owner, bg_posterior_summary *out, bg_err *err);

int bg_engine_observe_receipt(bg_engine *e, const bg_guard *g, const char *session,
                              const bg_observation *obs, const bg_obs_receipt *receipt,
                              bg_posterior_summary *out, bg_err *err)
{
    return bg_engine_observe_owned(e, g, session, obs, receipt, NULL, out, err);
}

int bg_engine_admit(bg_engine *e, const char *owner, bg_err *err)
{
    return bg__quota_take(e->quota, owner, bg_now_ns(), err);
}

int bg_engine_observe_owned(bg_engine *e, const bg_guard *g, const char *session,
                            const bg_observation *obs, const bg_obs_receipt *receipt,
                            const char *owner, bg_posterior_summary *out, bg_err *err)
{
    if (receipt == NULL)
        return observe_checked(e, g, session, obs, NULL, owner, out, err);
    /* Claimed first, so a second Observe with this receipt racing this
     * one finds it used; released when nothing was stored. */
    int rc = bg__receipt_used_claim(e->used, receipt->id, receipt->expiry_unix_ms, wall_ms());
    if (rc == BG_EEXIST)
        return bg_err_set(err, BG_EEXIST,
                          "policy %s: the receipt of decision %s was already used: each "
                          "receipt reports one outcome (this one is not stored again)",
                          g->name, receipt->id);
    if (rc != BG_OK)
        return bg_err_set(err, rc, "engine: out of memory");
    rc = observe_checked(e, g, session, obs, receipt, owner, out, err);
    if (rc != BG_OK)
        bg__receipt_used_release(e->used, receipt->id);
    return rc;
}

static int observe_checked(bg_engine *e, const bg_guard *g, const char *session,
                           const bg_observation *obs, const bg_obs_receipt *receipt,
                           const char *owner, bg_posterior_summary *out, bg_err *err)
{
    size_t n;
    int rc = check_action(g, &obs->action, "observation", err);
    /* The shared prior-only session is read by every session without data:
     * an observation stored there would move all of their posteriors. */
    if (rc == BG_OK && session[0] == PRIOR_SESSION[0])
        rc = bg_err_set(err, BG_EINVAL,
                        "policy %s: observation: the session id starts with "
                        "the byte 0x01, which the engine reserves for its shared prior; send "
                        "a session id without it",
                        g->name);
    if (rc == BG_OK && obs->has_value && !isfinite(obs->value))
        rc = bg_err_set(err, BG_EINVAL,
                        "policy %s: observation: value is %g; expected a finite "
                        "number",
                        g->name, obs->value);
    if (rc == BG_OK)
        rc = model_count(e, g, &n, err);
    if (rc != BG_OK)
        return rc;
    bg__session *s;
    if ((rc = bg__table_get(e->table, g->name, session, 1, owner, &s, err)) != BG_OK)
        return rc;
    bg_posterior_summary sum;
    pthread_rwlock_wrlock(&s->lock);
    rc = observe_locked(e, g, s, n, obs, receipt, &sum, err);
    if (rc == BG_OK && is_fleet(receipt))
        settle_at(e, s, s->n_obs - 1); /* a peer's: at the stream's position */
    pthread_rwlock_unlock(&s->lock);
    bg__table_release(e->table, s);
    if (rc == BG_OK && out)
        *out = sum;
    return rc;
}

/* ---------------------------------------------------------------- fleet */

int bg_engine_fleet_apply(bg_engine *e, const bg_guard *g, const char *fid, const uint8_t *rec,
                          size_t len, bg_err *err)
{
    char *guard = NULL, *session = NULL;
    bg_observation *obs = NULL;
    bg_obs_receipt frc = {.expiry_unix_ms = INT64_MAX, .flags = BG_OBS_RECEIPT_FLEET};
    size_t flen = strlen(fid);
    if (flen == 0 || flen >= sizeof frc.id)
        return bg_err_set(err, BG_EINVAL, "fleet: observation id of %zu bytes; expected 1..%zu",
                          flen, sizeof frc.id - 1);
    memcpy(frc.id, fid, flen + 1);
    int rc = bg__obs_decode_receipt(rec, len, &guard, &session, &obs, NULL, NULL, err);
    if (rc == BG_OK && strcmp(guard, g->name) != 0)
        rc = bg_err_set(err, BG_EINVAL,
                        "fleet: observation %s is of policy \"%.64s\" but was sent for \"%s\"", fid,
                        guard, g->name);
    if (rc == BG_OK)
        rc = observe_checked(e, g, session, obs, &frc, NULL, NULL, err);
    free(guard);
    free(session);
    free(obs);
    return rc;
}

int bg_engine_fleet_settle(bg_engine *e, const char *guard_name, const char *session, uint64_t lsn)
{
    bg__session *s;
    if (bg__table_get(e->table, guard_name, session, 0, NULL, &s, NULL) != BG_OK)
        return BG_ENOTFOUND;
    int rc = BG_ENOTFOUND;
    pthread_rwlock_wrlock(&s->lock);
    for (size_t i = 0; i < s->n_obs; i++)
        if (s->lsn[i] == lsn) {
            rc = i < s->settled ? BG_EEXIST : BG_OK;
            settle_at(e, s, i);
            break;
        }
    pthread_rwlock_unlock(&s->lock);
    bg__table_release(e->table, s);
    return rc;
}

typedef struct export_ctx {
    bg_engine_export_cb cb;
    void *ctx;
} export_ctx;

static int export_session(void *arg, bg__session *s)
{
    export_ctx *x = arg;
    int rc = BG_OK;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->settled && rc == BG_OK; i++) {
        uint8_t *rec = NULL;
        size_t len = bg__obs_encode(s->guard, s->id, &s->hist[i], &rec);
        rc = len ? x->cb(x->ctx, s->lsn[i], s->guard, s->id, rec, len) : BG_ENOMEM;
        free(rec);
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int bg_engine_fleet_export(bg_engine *e, bg_engine_export_cb cb, void *ctx)
{
    export_ctx x = {cb, ctx};
    return bg__table_each(e->table, export_session, &x);
}

/* -------------------------------------------------------------- reading */

int bg_engine_summary(bg_engine *e, const bg_guard *g, const char *session,
                      bg_posterior_summary *out, bg_err *err)
{
    size_t n;
    int rc = model_count(e, g, &n, err);
    if (rc != BG_OK)
        return rc;
    bg__session *s;
    if ((rc = get_for_reading(e, g, session, &s, err)) != BG_OK)
        return rc;
    if (n == 0) {
        pthread_rwlock_rdlock(&s->lock);
        memset(out, 0, sizeof *out);
        out->observations = s->n_obs;
    } else {
        bg__pstate *st = NULL;
        rc = lock_state(e, g, s, n, 2.0, &st, err);
        if (rc == BG_OK)
            fill_summary(g, s, &st->post, out);
    }
    pthread_rwlock_unlock(&s->lock);
    bg__table_release(e->table, s);
    return rc;
}

int bg_engine_posterior(bg_engine *e, const bg_guard *g, const char *session, double *post,
                        size_t n, bg_err *err)
{
    size_t count = 0; /* gcc -O3 cannot see model_count sets it on BG_OK */
    int rc = model_count(e, g, &count, err);
    if (rc != BG_OK)
        return rc;
    if (count == 0 || count != n)
        return bg_err_set(err, BG_EINVAL,
                          "policy %s: posterior copy of %zu values; the model "
                          "has %zu enumerable hypotheses",
                          g->name, n, count);
    bg__session *s;
    if ((rc = get_for_reading(e, g, session, &s, err)) != BG_OK)
        return rc;
    bg__pstate *st = NULL;
    rc = lock_state(e, g, s, n, 2.0, &st, err);
    if (rc == BG_OK)
        for (size_t i = 0; i < n; i++)
            post[st->post.ids[i]] = exp(st->post.log_post[i]);
    pthread_rwlock_unlock(&s->lock);
    bg__table_release(e->table, s);
    return rc;
}

int bg_engine_forget(bg_engine *e, const char *guard_name, const char *session)
{
    return bg__table_remove(e->table, guard_name, session);
}

void bg_engine_stats_get(bg_engine *e, bg_engine_stats *out)
{
    bg__table_stats ts;
    bg__table_stats_get(e->table, &ts);
    out->sessions = ts.sessions;
    out->observations = ts.observations;
    out->bytes = ts.bytes;
    out->resident_sessions = ts.resident;
    out->evictions = ts.evictions;
    out->evaluations = atomic_load(&e->evaluations);
    out->store_refused = 0;
    out->store_broken = 0;
    out->receipts_used = bg__receipt_used_count(e->used);
    out->store_quarantined = out->store_syncs = out->store_appends = out->store_snapshots = 0;
    if (e->store) {
        bg__obs_store_health_t h;
        bg__obs_store_health(e->store, &h);
        out->store_refused = h.refused;
        out->store_broken = h.broken;
        out->store_quarantined = h.quarantined;
        out->store_syncs = h.syncs;
        out->store_appends = h.appends;
        out->store_snapshots = h.snapshots;
    }
}

int bg_engine_compact(bg_engine *e, bg_err *err)
{
    return e->store ? bg__obs_store_compact(e->store, err) : BG_OK;
}
