/*
 * sampled_score.c — the scoring half of the sampled path (sampled_priv.h):
 * the session reward a sampler trains on and its version, and the verdict
 * over sampled candidates. No state; any thread.
 *
 * The reward's version (ABI 1.2) is what lets a sampler keep stored
 * rewards honest: the reward moves with every observation, and a sampler
 * that asks (bg_reward_version) re-scores what it stored at another
 * version. It is a digest of the history, not a counter, so a sampler
 * that serves several sessions (a guard without per_session) or a session
 * forgotten and observed again never mistakes one history for another.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_fnv.h"
#include "engine/plugin_code.h"
#include "engine/sampled_priv.h"

/* The string and its NUL, so that ("ab", "c") and ("a", "bc") differ. */
static uint64_t fnv_str(uint64_t h, const char *s)
{
    return bg_fnv64(h, s ? s : "", strlen(s ? s : "") + 1);
}

uint64_t bg__history_version(const bg_guard *g, const bg_observation *hist, size_t n_hist)
{
    uint64_t h = BG_FNV64_OFFSET;
    uint64_t n = n_hist;
    h = bg_fnv64(h, &g->model_key, sizeof g->model_key);
    h = bg_fnv64(h, &n, sizeof n);
    for (size_t i = 0; i < n_hist; i++) {
        const bg_observation *o = &hist[i];
        const bg_action *a = &o->action;
        int32_t flags[2] = {o->harmed, o->has_value};
        h = bg_fnv64(h, flags, sizeof flags);
        h = bg_fnv64(h, &o->value, sizeof o->value);
        h = fnv_str(fnv_str(fnv_str(h, a->id), a->tool), a->arguments_json);
        if (a->n_features)
            h = bg_fnv64(h, a->features, a->n_features * sizeof *a->features);
        for (size_t k = 0; k < a->n_attributes; k++)
            h = fnv_str(fnv_str(h, a->attributes[k].key), a->attributes[k].value);
    }
    return h & ((1ULL << 53) - 1); /* exact as a double */
}

bg__reward_ctx bg__reward_ctx_make(const bg_guard *g, const bg_observation *hist, size_t n_hist)
{
    return (bg__reward_ctx){g, hist, n_hist, bg__history_version(g, hist, n_hist), NULL, 0};
}

int bg__session_log_r(void *vctx, const uint64_t *h, size_t n, double *out)
{
    bg__reward_ctx *r = vctx;
    if (n == 0) { /* ABI 1.2: h == NULL asks for the version */
        if (!h && out)
            out[0] = (double)r->version;
        return BG_PLUGIN_OK;
    }
    if (n > r->cap) {
        double *t = realloc(r->tmp, n * sizeof *t);
        if (!t)
            return BG_PLUGIN_ENOMEM;
        r->tmp = t;
        r->cap = n;
    }
    int rc = r->g->model->log_prior(r->g->model_inst, h, n, out);
    for (size_t i = 0; i < r->n_hist && rc == BG_PLUGIN_OK; i++) {
        rc = r->g->model->log_lik(r->g->model_inst, &r->hist[i], r->hist, i, h, n, r->tmp);
        for (size_t k = 0; k < n && rc == BG_PLUGIN_OK; k++)
            out[k] += r->tmp[k];
    }
    return rc;
}

int bg__radix_order(const uint64_t *key, size_t n, uint32_t *order)
{
    uint64_t *k = malloc((n ? n : 1) * 2 * sizeof *k);
    uint32_t *o2 = malloc((n ? n : 1) * sizeof *o2);
    if (!k || !o2) {
        free(k);
        free(o2);
        return BG_ENOMEM;
    }
    uint64_t *ka = k, *kb = k + n;
    uint32_t *oa = order, *ob = o2;
    uint64_t all_or = 0, all_and = ~0ULL;
    for (size_t i = 0; i < n; i++) {
        ka[i] = key[i];
        oa[i] = (uint32_t)i;
        all_or |= key[i];
        all_and &= key[i];
    }
    for (unsigned sh = 0; sh < 64; sh += 8) {
        if (!(((all_or ^ all_and) >> sh) & 0xff))
            continue; /* every key has this byte: the pass would not move one */
        size_t cnt[256] = {0};
        for (size_t i = 0; i < n; i++)
            cnt[(ka[i] >> sh) & 0xff]++;
        size_t pos = 0;
        for (unsigned v = 0; v < 256; v++) {
            size_t c = cnt[v];
            cnt[v] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++) {
            size_t d = cnt[(ka[i] >> sh) & 0xff]++;
            kb[d] = ka[i];
            ob[d] = oa[i];
        }
        uint64_t *tk = ka;
        ka = kb;
        kb = tk;
        uint32_t *to = oa;
        oa = ob;
        ob = to;
    }
    if (oa != order)
        memcpy(order, oa, n * sizeof *order);
    free(k);
    free(o2);
    return BG_OK;
}

uint64_t bg__desc_key(double x)
{
    uint64_t u;
    x = x == 0 ? 0.0 : x;
    memcpy(&u, &x, sizeof u);
    u = (u >> 63) ? ~u : u | (1ULL << 63); /* ascending */
    return ~u;
}

uint64_t bg__sampled_seed(uint64_t seed, const char *session, size_t n_hist)
{
    uint64_t h = bg_fnv64_cstr(BG_FNV64_OFFSET ^ seed, session);
    return h ^ (n_hist * 0x9e3779b97f4a7c15ULL);
}

void bg__lpcache_init(bg__lpcache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
}

void bg__lpcache_close(bg__lpcache *c)
{
    free(c->keys);
    free(c->vals);
    pthread_mutex_destroy(&c->mu);
}

/* The slot of id in c: its entry, or the empty slot where it would go. */
static size_t lpc_slot(const bg__lpcache *c, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ULL;
    size_t i = (size_t)(h >> 40) & (BG__LPC_SLOTS - 1);
    while (c->keys[i] && c->keys[i] != id + 1)
        i = (i + 1) & (BG__LPC_SLOTS - 1);
    return i;
}

/* lp[i] for the ids c holds at version; miss[] gets the indices of the
 * others. Returns how many missed. */
static size_t lpc_get(bg__lpcache *c, uint64_t version, const uint64_t *ids, size_t n, double *lp,
                      uint32_t *miss)
{
    size_t m = 0;
    pthread_mutex_lock(&c->mu);
    if (c->valid && c->version != version) {
        memset(c->keys, 0, BG__LPC_SLOTS * sizeof *c->keys);
        c->n = 0;
        c->version = version;
    }
    if (!c->keys) {
        c->keys = calloc(BG__LPC_SLOTS, sizeof *c->keys);
        c->vals = malloc(BG__LPC_SLOTS * sizeof *c->vals);
        if (!c->keys || !c->vals) { /* no cache: every id misses */
            free(c->keys);
            free(c->vals);
            c->keys = NULL;
            c->vals = NULL;
        }
        c->version = version;
        c->valid = c->keys != NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t s = c->keys ? lpc_slot(c, ids[i]) : 0;
        if (c->keys && c->keys[s])
            lp[i] = c->vals[s];
        else
            miss[m++] = (uint32_t)i;
    }
    pthread_mutex_unlock(&c->mu);
    return m;
}

static void lpc_put(bg__lpcache *c, uint64_t version, const uint64_t *ids, const double *lp,
                    const uint32_t *idx, size_t m)
{
    pthread_mutex_lock(&c->mu);
    for (size_t k = 0; k < m && c->keys && c->version == version; k++) {
        if (c->n >= BG__LPC_SLOTS / 4 * 3)
            break; /* full: what is not cached is scored again */
        size_t s = lpc_slot(c, ids[idx[k]]);
        if (!c->keys[s]) {
            c->keys[s] = ids[idx[k]] + 1;
            c->vals[s] = lp[idx[k]];
            c->n++;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* log R of ids[miss[0..m)] into lp at those indices. */
static int score_missing(bg__reward_ctx *r, const uint64_t *ids, const uint32_t *miss, size_t m,
                         double *lp)
{
    uint64_t *sub = malloc(m * sizeof *sub);
    double *out = malloc(m * sizeof *out);
    int rc = sub && out ? BG_PLUGIN_OK : BG_PLUGIN_ENOMEM;
    for (size_t k = 0; k < m && rc == BG_PLUGIN_OK; k++)
        sub[k] = ids[miss[k]];
    if (rc == BG_PLUGIN_OK)
        rc = bg__session_log_r(r, sub, m, out);
    for (size_t k = 0; k < m && rc == BG_PLUGIN_OK; k++)
        lp[miss[k]] = out[k];
    free(sub);
    free(out);
    return rc;
}

/* Steps 3–4 over n candidate ids: validated log R and harm. */
int bg__score(const bg_guard *g, const bg_observation *hist, size_t n_hist, const bg_action *action,
              const uint64_t *ids, size_t n, double *lp, double *harm, bg__lpcache *lpc,
              uint64_t version, int soft, bg_err *err)
{
    bg__reward_ctx r = {g, hist, n_hist, 0, NULL, 0}; /* scoring: no version asked */
    int rc = BG_OK, prc;
    uint32_t *miss = NULL;
    size_t m = n;
    if (lpc) {
        if (!(miss = malloc(n * sizeof *miss)))
            return bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu samples", g->name,
                              n);
        /* the history's version names the model by its key; the vtable
         * and instance too, so a guard whose model differs behind the same
         * key (a test's misbehaving copy) never reads another's scores */
        version = bg_fnv64(version, &g->model, sizeof g->model);
        version = bg_fnv64(version, &g->model_inst, sizeof g->model_inst);
        m = lpc_get(lpc, version, ids, n, lp, miss);
        prc = m ? score_missing(&r, ids, miss, m, lp) : BG_PLUGIN_OK;
    } else {
        prc = bg__session_log_r(&r, ids, n, lp);
    }
    if (prc == BG_PLUGIN_OK)
        prc = g->model->harm(g->model_inst, action, hist, n_hist, ids, n, harm);
    if (prc != BG_PLUGIN_OK) { /* a limit stays a limit (plugin_code.h) */
        rc = bg_err_set(err, bg__plugin_code(prc),
                        "policy %s: model %s failed (%d) on sampled hypotheses", g->name,
                        g->model_name ? g->model_name : "?", prc);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (soft && (!(harm[i] >= 0.0 && harm[i] <= 1.0) || isnan(lp[i]) || lp[i] == INFINITY)) {
            lp[i] = -INFINITY; /* never a candidate */
            harm[i] = 0;
            continue;
        }
        if (!(harm[i] >= 0.0 && harm[i] <= 1.0)) {
            rc = bg_err_set(err, BG_EINTERNAL,
                            "policy %s: model %s: harm of sampled hypothesis %llu is %g; "
                            "expected a probability in [0, 1]",
                            g->name, g->model_name ? g->model_name : "?",
                            (unsigned long long)ids[i], harm[i]);
            goto done;
        }
        /* as the enumerated path's normalisation: a NaN would make every
         * candidate's posterior NaN, and the estimator's choice arbitrary */
        if (isnan(lp[i]) || lp[i] == INFINITY) {
            rc = bg_err_set(err, BG_EINTERNAL,
                            "policy %s: model %s: log-prior + log-likelihood of sampled "
                            "hypothesis %llu is %g; the model returned a NaN or +inf "
                            "log-probability",
                            g->name, g->model_name ? g->model_name : "?",
                            (unsigned long long)ids[i], lp[i]);
            goto done;
        }
    }
    if (lpc && m)
        lpc_put(lpc, version, ids, lp, miss, m);
done:
    free(r.tmp);
    free(miss);
    return rc;
}

/* Steps 5–6: normalise lp over the n candidates (in place), order, estimate. */
int bg__estimate_over(const bg_guard *g, const uint64_t *ids, size_t n, double *lp,
                      const double *harm, bg_verdict *out, bg_err *err)
{
    double *post = malloc(n * sizeof *post);
    uint32_t *order = malloc(n * sizeof *order);
    uint64_t *key = malloc(n * sizeof *key);
    int rc = BG_OK;
    if (!post || !order || !key) {
        rc = bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu samples", g->name, n);
        goto done;
    }
    double mx = -INFINITY, z = 0;
    for (size_t i = 0; i < n; i++)
        mx = lp[i] > mx ? lp[i] : mx;
    if (!isfinite(mx)) {
        rc = bg_err_set(err, BG_EINTERNAL,
                        "policy %s: none of the %zu sampled hypotheses has a finite "
                        "posterior score (sampler %s not trained on these data yet?)",
                        g->name, n, g->sampler_name ? g->sampler_name : "?");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        z += exp(lp[i] - mx);
    double lse = mx + log(z);
    /* an estimator that needs no order (order_needed > 1, plugin.h: iid,
     * posterior, cheating) gets none, as on the enumerated path
     * (bg__posterior_order): the sort was a third of the estimate */
    double need = g->estimator->order_needed(g->estimator_inst);
    int ordered = need <= 1.0; /* also NaN: none */
    for (size_t i = 0; i < n; i++) {
        lp[i] -= lse;
        post[i] = exp(lp[i]);
        if (ordered)
            key[i] = bg__desc_key(lp[i]);
    }
    /* the stable descending order of lp (ties: ascending index, so
     * ascending id, as the enumerated path's) */
    if (ordered && bg__radix_order(key, n, order) != BG_OK) {
        rc = bg_err_set(err, BG_ENOMEM, "policy %s: out of memory for %zu samples", g->name, n);
        goto done;
    }
    bg_estimate_in in = {.n = n,
                         .ids = ids,
                         .log_post = lp,
                         .harm = harm,
                         .order = order,
                         .n_order = ordered ? n : 0,
                         .order_complete = ordered || n == 0,
                         .post = post};
    bg_estimate_out eo;
    bg_estimate_out_init(&eo);
    int prc = g->estimator->estimate(g->estimator_inst, &in, &eo);
    if (prc != BG_PLUGIN_OK) {
        rc = bg_err_set(err, BG_EINTERNAL, "policy %s: estimator %s failed (%d) on %zu samples",
                        g->name, g->estimator_name ? g->estimator_name : "?", prc, n);
        goto done;
    }
    if ((rc = bg_estimate_out_check(g, &eo, n, err)) != BG_OK)
        goto done;
    out->harm_bound = eo.bound;
    out->posterior_predictive = eo.posterior_predictive;
    out->cautious_id = ids[eo.cautious];
    out->cautious_posterior = post[eo.cautious];
    out->cautious_harm = harm[eo.cautious];
    out->plausible_set_size = eo.plausible;
    bg_hypothesis_label(g, out->cautious_id, out->cautious_label, sizeof out->cautious_label);
done:
    free(post);
    free(order);
    free(key);
    return rc;
}
