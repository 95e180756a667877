/*
 * test_policy_load.c — loading a policy directory: several documents per
 * file and several files; hidden files, ConfigMap ..data dirs and other
 * extensions skipped; schema defaults; every bg_guard field; overlapping
 * matches resolved by priority; revision = SHA-256 of names + contents;
 * model_key stable for an unchanged model config and different when it
 * changes; estimator keys reach the estimator plugin; `check` output and
 * exit codes.
 */
#include <math.h>

#include "engine/sampled.h"
#include "policy_test.h"

static bg_plugin_host *host;

static bg_policy_set *load_ok(const char *dir)
{
    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    int rc = bg_policy_set_load(dir, host, &s, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
    CHECK_INT(rc, BG_OK);
    bg_policy_errors_free(&errs);
    return s;
}

static void test_dir_layout(void)
{
    char dir[128], p[2048], q[2048], sub[256];
    pt_mkdtemp(dir, sizeof dir, "load");
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8, rate: 0.2}", NULL);
    pt_policy(q, sizeof q, "refunds", "[refund, \"refund_?\"]", "{n: 3}", NULL);
    char both[4200];
    snprintf(both, sizeof both, "# two documents\n%s---\n%s---\n", p, q);
    CHECK_INT(pt_write(dir, "a.yaml", both), 0);
    pt_policy(p, sizeof p, "shell", "[shell, \"exec_*\"]", "{}",
              "  priority: 5\n  mode: shadow\n  over_threshold: escalate\n  on_error: allow\n"
              "  session: attributes.user\n");
    CHECK_INT(pt_write(dir, "b.yml", p), 0);
    /* Not policies: hidden, other extension, ConfigMap internals. */
    CHECK_INT(pt_write(dir, ".hidden.yaml", "not: [valid"), 0);
    CHECK_INT(pt_write(dir, "notes.txt", "not: [valid"), 0);
    snprintf(sub, sizeof sub, "%s/..2026_11_26", dir);
    mkdir(sub, 0700);
    CHECK_INT(pt_write(sub, "a.yaml", "not: [valid"), 0);
    bg_policy_set *s = load_ok(dir);
    if (!s) {
        pt_rmtree(dir);
        return;
    }
    CHECK_INT(bg_policy_set_count(s), 3);
    CHECK_INT(strlen(bg_policy_set_revision(s)), 64);
    const bg_policy *pay = bg_policy_set_find(s, "payments");
    const bg_policy *sh = bg_policy_set_find(s, "shell");
    CHECK(pay && sh && bg_policy_set_find(s, "refunds"));
    CHECK(bg_policy_set_find(s, "nope") == NULL);
    if (pay && sh) {
        /* Defaults. */
        CHECK_INT(pay->line, 2);
        CHECK(strstr(pay->file, "/a.yaml") != NULL);
        CHECK_INT(pay->on_error_allow, 0);
        CHECK_INT(pay->session_key, BG_SESSION_CONTEXT_SESSION);
        CHECK_INT(pay->priority, 0);
        CHECK_INT(pay->guard.over_threshold, BG_DECISION_DENY);
        CHECK_INT(pay->guard.shadow, 0);
        CHECK_NEAR(pay->guard.threshold, 0.05, 0);
        CHECK_STR(pay->guard.name, "payments");
        CHECK_STR(pay->guard.revision, bg_policy_set_revision(s));
        CHECK_STR(pay->guard.model_name, "fx_model");
        CHECK_STR(pay->guard.estimator_name, "fx_est");
        CHECK(pay->guard.sampler == NULL);
        CHECK(pay->guard.sampled == NULL && pay->guard.session_sampler.create == NULL);
        CHECK_INT(pay->guard.train, BG_TRAIN_UNSET);
        CHECK_INT(pay->guard.model->count(pay->guard.model_inst), 8);
        /* delta 0.1 * prior_floor 0.01 reached the estimator. */
        CHECK_NEAR(pay->guard.estimator->order_needed(pay->guard.estimator_inst), 1e-3, 1e-15);
        /* Everything set. */
        CHECK_INT(sh->priority, 5);
        CHECK_INT(sh->guard.shadow, 1);
        CHECK_INT(sh->guard.over_threshold, BG_DECISION_ESCALATE);
        CHECK_INT(sh->on_error_allow, 1);
        CHECK_INT(sh->session_key, BG_SESSION_ATTRIBUTE);
        CHECK_STR(sh->session_attr, "user");
        CHECK_INT(sh->guard.model->count(sh->guard.model_inst), 4);
    }
    const bg_policy *m = bg_policy_set_match(s, "transfer_funds");
    CHECK(m && strcmp(m->name, "payments") == 0);
    m = bg_policy_set_match(s, "refund_x");
    CHECK(m && strcmp(m->name, "refunds") == 0);
    m = bg_policy_set_match(s, "exec_rm");
    CHECK(m && strcmp(m->name, "shell") == 0);
    CHECK(bg_policy_set_match(s, "refund_xy") == NULL);
    CHECK(bg_policy_set_match(s, "read_file") == NULL);

    /* Same content -> same revision and model keys; the hidden file does
     * not count; a trailing slash changes nothing (not even messages). */
    CHECK_INT(pt_write(dir, ".hidden.yaml", "changed"), 0);
    char slashed[160];
    snprintf(slashed, sizeof slashed, "%s//", dir);
    bg_policy_set *s2 = load_ok(slashed);
    if (s2)
        CHECK(strstr(bg_policy_set_find(s2, "payments")->file, "//") == NULL);
    if (s2) {
        CHECK_STR(bg_policy_set_revision(s2), bg_policy_set_revision(s));
        CHECK(bg_policy_set_find(s2, "payments")->guard.model_key == pay->guard.model_key);
        bg_policy_set_unref(s2);
    }
    /* A threshold and estimator change: new revision, same model_key
     * (posteriors kept). */
    snprintf(p, sizeof p,
             "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: shell}\n"
             "spec:\n  match: {tools: [shell, \"exec_*\"]}\n"
             "  model: {plugin: fx_model, config: {}}\n"
             "  estimator: {plugin: fx_est, alpha: 0.2}\n  threshold: 0.2\n");
    CHECK_INT(pt_write(dir, "b.yml", p), 0);
    s2 = load_ok(dir);
    if (s2 && sh) {
        const bg_policy *sh2 = bg_policy_set_find(s2, "shell");
        CHECK(strcmp(bg_policy_set_revision(s2), bg_policy_set_revision(s)) != 0);
        CHECK(sh2->guard.model_key == sh->guard.model_key);
        CHECK_NEAR(sh2->guard.threshold, 0.2, 0);
        CHECK_NEAR(sh2->guard.estimator->order_needed(sh2->guard.estimator_inst), 0.2, 0);
        CHECK(bg_policy_set_find(s2, "payments")->guard.model_key == pay->guard.model_key);
    }
    bg_policy_set_unref(s2);
    /* A model config change: new model_key. */
    snprintf(p, sizeof p,
             "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: shell}\n"
             "spec:\n  match: {tools: [shell, \"exec_*\"]}\n"
             "  model: {plugin: fx_model, config: {rate: 0.3}}\n"
             "  estimator: {plugin: fx_est, alpha: 0.2}\n  threshold: 0.2\n");
    CHECK_INT(pt_write(dir, "b.yml", p), 0);
    s2 = load_ok(dir);
    if (s2 && sh)
        CHECK(bg_policy_set_find(s2, "shell")->guard.model_key != sh->guard.model_key);
    bg_policy_set_unref(s2);
    bg_policy_set_unref(s);
    pt_rmtree(dir);
}

static void test_priority(void)
{
    char dir[128], p[2048], q[2048];
    pt_mkdtemp(dir, sizeof dir, "prio");
    pt_policy(p, sizeof p, "low", "[\"transfer_*\"]", "{}", NULL);
    pt_policy(q, sizeof q, "high", "[transfer_big, \"wire_*\"]", "{}", "  priority: 10\n");
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    CHECK_INT(pt_write(dir, "b.yaml", q), 0);
    bg_policy_set *s = load_ok(dir);
    if (s) {
        CHECK_STR(bg_policy_set_match(s, "transfer_big")->name, "high");
        CHECK_STR(bg_policy_set_match(s, "transfer_small")->name, "low");
        CHECK_STR(bg_policy_set_match(s, "wire_x")->name, "high");
        bg_policy_set_unref(s);
    }
    /* Equal priority: refused, pointing at both patterns. */
    pt_policy(q, sizeof q, "high", "[transfer_big, \"wire_*\"]", "{}", NULL);
    CHECK_INT(pt_write(dir, "b.yaml", q), 0);
    bg_policy_errors errs = {0};
    s = (bg_policy_set *)1;
    CHECK_INT(bg_policy_set_load(dir, host, &s, &errs), BG_ECONFIG);
    CHECK(s == NULL);
    CHECK_INT(errs.n, 1);
    if (errs.n == 1) {
        char want[1024];
        snprintf(want, sizeof want,
                 "%s/b.yaml:5:19: policy 'high': match pattern 'transfer_big' overlaps pattern "
                 "'transfer_*' of policy 'low' (%s/a.yaml:5:19) at equal priority 0: give one "
                 "a higher spec.priority or narrow the patterns",
                 dir, dir);
        CHECK_STR(errs.msgs[0], want);
    }
    bg_policy_errors_free(&errs);
    pt_rmtree(dir);
}

static void test_sampler(void)
{
    char dir[128], p[2048];
    pt_mkdtemp(dir, sizeof dir, "sampler");
    snprintf(p, sizeof p,
             "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: bits}\n"
             "spec:\n  match: {tools: [\"*\"]}\n"
             "  model: {plugin: fx_bits, config: {n: 12}}\n"
             "  estimator: {plugin: fx_est}\n  threshold: 0.5\n"
             "  sampler: {plugin: fx_sampler, samples: 64, config: {temperature: 0.5}}\n");
    CHECK_INT(pt_write(dir, "bits.yaml", p), 0);
    bg_policy_set *s = load_ok(dir);
    if (s) {
        const bg_guard *g = &bg_policy_set_at(s, 0)->guard;
        bg_err err;
        CHECK_STR(g->sampler_name, "fx_sampler");
        CHECK_INT(g->sampler_samples, 64);
        CHECK_INT(g->model->count(g->model_inst), 0);
        uint64_t ids[4];
        double lq[4];
        bg_rng r;
        bg_rng_seed(&r, 1);
        CHECK_INT(g->sampler->sample(g->sampler_inst, &r, 4, ids, lq), 0);
        CHECK_INT(ids[3], 3);
        CHECK_NEAR(lq[0], -12 * log(2.0), 1e-12); /* the sampler got the model's 12-bit space */
        /* the sampled path's per-instance state, owned with the instance,
         * background training kept alive by the set, and more instances of
         * the same sampler for sessions */
        CHECK(g->sampled != NULL && bg_sampled_samplers(g->sampled) == 0);
        CHECK_INT(g->train, BG_TRAIN_BACKGROUND);
        CHECK(g->owner.ref != NULL && g->owner.unref != NULL);
        CHECK_INT(bg_guard_check(g, &err), BG_OK);
        void *more = NULL, *keep = NULL;
        CHECK(g->per_session && g->session_sampler.create && g->session_sampler.destroy);
        CHECK_INT(g->session_sampler.create(g->session_sampler.ctx, &more, &keep), BG_OK);
        uint64_t id2[4];
        double lq2[4];
        bg_rng_seed(&r, 1);
        CHECK_INT(g->sampler->sample(more, &r, 4, id2, lq2), 0);
        CHECK_NEAR(lq2[0], -12 * log(2.0), 1e-12); /* same space */
        CHECK_STR(bg_policy_set_match(s, "anything")->name, "bits");
        /* the instance may outlive its set (a table shared across reloads):
         * it keeps its plugin loaded and its host services */
        const bg_sampler_vtbl *vt = g->sampler;
        void (*drop)(void *, void *) = g->session_sampler.destroy;
        bg_policy_set_unref(s);
        CHECK_INT(vt->sample(more, &r, 4, id2, lq2), 0);
        drop(more, keep);
    }
    pt_rmtree(dir);
}

/* spec.sampler.refine, .search, .contexts and .context_search: absent = the daemon's
 * budget on a bit-set space (0 in the guard), 0 = none (-1), N = N
 * hypotheses per Evaluate / reward evaluations per training round. */
static void test_sampler_refine(void)
{
    static const char *const val[9] = {"",
                                       ", refine: 0",
                                       ", refine: 500",
                                       ", search: 0",
                                       ", search: 20000",
                                       ", search: 262144",
                                       ", contexts: 0",
                                       ", contexts: 32, context_search: 500",
                                       ", context_search: 0"};
    static const int32_t want[9][4] = {{0, 0, 0, 0},  {-1, 0, 0, 0},    {500, 0, 0, 0},
                                       {0, -1, 0, 0}, {0, 20000, 0, 0}, {0, 262144, 0, 0},
                                       {0, 0, -1, 0}, {0, 0, 32, 500},  {0, 0, 0, -1}};
    for (int k = 0; k < 9; k++) {
        char dir[128], p[2048];
        pt_mkdtemp(dir, sizeof dir, "refine");
        snprintf(p, sizeof p,
                 "apiVersion: bayesguard/v1\nkind: GuardPolicy\nmetadata: {name: bits}\n"
                 "spec:\n  match: {tools: [\"*\"]}\n"
                 "  model: {plugin: fx_bits, config: {n: 12}}\n"
                 "  estimator: {plugin: fx_est}\n  threshold: 0.5\n"
                 "  sampler: {plugin: fx_sampler%s}\n",
                 val[k]);
        CHECK_INT(pt_write(dir, "bits.yaml", p), 0);
        bg_policy_set *s = load_ok(dir);
        if (s) {
            CHECK_INT(bg_policy_set_at(s, 0)->guard.sampler_refine, want[k][0]);
            CHECK_INT(bg_policy_set_at(s, 0)->guard.sampler_search, want[k][1]);
            CHECK_INT(bg_policy_set_at(s, 0)->guard.sampler_contexts, want[k][2]);
            CHECK_INT(bg_policy_set_at(s, 0)->guard.sampler_context_search, want[k][3]);
            bg_policy_set_unref(s);
        }
        pt_rmtree(dir);
    }
}

static void test_check(void)
{
    char dir[128], p[2048], outp[256];
    pt_mkdtemp(dir, sizeof dir, "check");
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 8}", NULL);
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    snprintf(outp, sizeof outp, "%s.out", dir);
    FILE *out = fopen(outp, "w+");
    CHECK_INT(bg_policy_check_dir(dir, FIX "/good", out), 0);
    fclose(out);
    char *text = pt_read(outp);
    CHECK(text && strstr(text, ": ok, 1 policies, revision "));
    CHECK(text && strstr(text, "payments"));
    free(text);
    /* Two errors in two files: both listed, exit 1. */
    pt_policy(p, sizeof p, "payments", "[\"transfer_*\"]", "{n: 0}", NULL);
    CHECK_INT(pt_write(dir, "a.yaml", p), 0);
    pt_policy(p, sizeof p, "other", "[other]", "{}", "  mode: loud\n");
    CHECK_INT(pt_write(dir, "b.yaml", p), 0);
    out = fopen(outp, "w+");
    CHECK_INT(bg_policy_check_dir(dir, FIX "/good", out), 1);
    fclose(out);
    text = pt_read(outp);
    char want[2048];
    snprintf(want, sizeof want,
             "%s/b.yaml:9:9: key 'spec.mode': expected one of enforce|shadow, got 'loud'\n"
             "%s/a.yaml:6:41: plugin fx_model: key 'n': 0 is out of range [1, 1000]\n"
             "%s: 2 error(s); a reload would be refused\n",
             dir, dir, dir);
    CHECK_STR(text, want);
    free(text);
    out = fopen(outp, "w+");
    CHECK_INT(bg_policy_check_dir(dir, "/nonexistent", out), 2);
    fclose(out);
    unlink(outp);
    pt_rmtree(dir);
}

int main(void)
{
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &host, &err), BG_OK);
    if (!host)
        CHECK_DONE("test_policy_load");
    test_dir_layout();
    test_priority();
    test_sampler();
    test_sampler_refine();
    test_check();
    bg_plugin_host_destroy(host);
    CHECK_DONE("test_policy_load");
}
