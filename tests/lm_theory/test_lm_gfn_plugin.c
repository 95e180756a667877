/*
 * test_lm_gfn_plugin.c — the sampler plugin `lm_gfn` loaded through the
 * plugin host (the daemon's dlopen path) on a token-sequence space (ABI
 * 1.4) over the tiny synthetic model of tests/lmgfn: 3 symbols (tokens 3,
 * 4, 5), max_len 3, so 39 theories, and a versioned table reward.
 *   1. what it samples is a distribution: every id is a sequence of the
 *      space, the log q it reports for an id is the same at every draw,
 *      Σ_h exp(log q(h)) over the 39 ids is 1 (1e-4), and the frequencies
 *      of 20,000 draws match exp(log q) (each within 5 binomial σ + 1e-3);
 *   2. it learns: TV(q, R/Z) after 300 steps is below 0.1 and below the
 *      untrained sampler's (printed; measured 0.030 vs 0.86; bar 0.1);
 *   3. the reward cache: at one version each id is asked of the reward at
 *      most once; a train() at the same version with 0 steps calls nothing;
 *      at a new version the replay buffer is re-scored (calls > 0);
 *   4. save → a new instance → load: the same draws, ids and log q;
 *   5. config errors: a bit-set space, min_len over max_len, a symbol that
 *      is the stop token, a symbol outside the vocabulary.
 * Skips (77) when bg_lm_gfn.so is not in BG_PLUGIN_DIR.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bg_test.h"
#include "cfg/cfg.h"
#include "nn/nn.h"
#include "plugin/plugin_host.h"

#define W 2
#define L 3
#define NS 3
#define NT 39 /* 3 + 9 + 27 */

static const int32_t tokens[NS] = {3, 4, 5};
static const char *const texts[NS] = {"a", "b", "c"};
static const int32_t prompt[2] = {1, 6};

typedef struct table {
    uint64_t ids[NT];
    double logr[NT];
    double version;
    long calls, asked;
    int seen[NT]; /* times each id was asked at the current version */
} table;

static int index_of(const table *t, uint64_t h)
{
    for (int i = 0; i < NT; i++)
        if (t->ids[i] == h)
            return i;
    return -1;
}

static int table_reward(void *ctx, const uint64_t *h, size_t n, double *out)
{
    table *t = ctx;
    if (!h && n == 0) {
        out[0] = t->version;
        return BG_PLUGIN_OK;
    }
    t->calls++;
    t->asked += (long)n;
    for (size_t i = 0; i < n; i++) {
        int k = index_of(t, h[i]);
        if (k < 0)
            return BG_PLUGIN_EINVAL;
        t->seen[k]++;
        out[i] = t->logr[k];
    }
    return BG_PLUGIN_OK;
}

static void table_init(table *t)
{
    memset(t, 0, sizeof *t);
    int k = 0;
    uint32_t s[L];
    for (int n = 1; n <= L; n++)
        for (int c = 0; c < (n == 1 ? 3 : n == 2 ? 9 : 27); c++) {
            int x = c;
            for (int i = 0; i < n; i++, x /= 3)
                s[i] = (uint32_t)(x % 3) + 1;
            t->ids[k] = bg_seq_encode(s, (uint32_t)n, W);
            /* a peaked reward: sequences rich in symbol 1 and short */
            int ones = 0;
            for (int i = 0; i < n; i++)
                ones += s[i] == 1;
            t->logr[k++] = 1.5 * ones - 0.7 * n + 0.3 * (double)(c % 4);
        }
    t->version = 1;
}

typedef struct made {
    bg_cfg_doc *doc;
    bg_plugin_services *svc;
    void *inst;
    int rc;
} made;

static made make(bg_plugin_host *h, bg_plugin *p, const char *text, const bg_space *space)
{
    made m = {0};
    bg_err err;
    CHECK(bg_cfg_parse_string(text, strlen(text), "lm_gfn.yaml", &m.doc, &err) == BG_OK, "%s",
          err.msg);
    CHECK(bg_plugin_services_create(h, p, &m.svc, &err) == BG_OK, "%s", err.msg);
    m.rc = p->desc->vt.sampler->create(bg_plugin_services_host(m.svc), bg_cfg_doc_root(m.doc, 0),
                                       space, &m.inst);
    return m;
}

static void unmake(const bg_plugin *p, made *m)
{
    if (m->rc == BG_PLUGIN_OK)
        p->desc->vt.sampler->destroy(m->inst);
    bg_plugin_services_destroy(m->svc);
    bg_cfg_doc_destroy(m->doc);
}

static bg_space_seq seq_space(const char *ckpt, const int32_t *toks)
{
    bg_space_seq s;
    memset(&s, 0, sizeof s);
    s.space = bg_space_sequence(W, L);
    s.symbols = (bg_space_symbols){.size = sizeof s.symbols,
                                   .n_symbols = NS,
                                   .tokens = toks,
                                   .texts = texts,
                                   .prompt = prompt,
                                   .n_prompt = 2,
                                   .lm = {.size = sizeof(bg_lm_spec), .checkpoint = ckpt}};
    return s;
}

static void refused(bg_plugin_host *h, bg_plugin *p, const char *text, const bg_space *space,
                    const char *needle)
{
    made m = make(h, p, text, space);
    const char *errs = bg_plugin_services_errors(m.svc);
    CHECK(m.rc == BG_PLUGIN_ECONFIG, "config \"%s\" must be refused (rc %d)", text, m.rc);
    CHECK(strstr(errs, needle) != NULL, "errors \"%s\" lack \"%s\"", errs, needle);
    printf("refused: %s\n", errs);
    unmake(p, &m);
}

/* q over the 39 ids from N draws (the reported log q), and checks 1. */
static double draw_tv(const bg_sampler_vtbl *vt, void *inst, const table *t, uint64_t seed)
{
    enum { N = 20000 };
    static uint64_t ids[N];
    static double lq[N];
    double q[NT], cnt[NT] = {0}, z = 0, p[NT], tv = 0;
    for (int k = 0; k < NT; k++)
        q[k] = NAN;
    bg_rng r;
    bg_rng_init(&r, seed);
    CHECK(vt->sample(inst, &r, N, ids, lq) == BG_PLUGIN_OK, "sample");
    for (int i = 0; i < N; i++) {
        int k = index_of(t, ids[i]);
        CHECK(k >= 0, "draw %d: id %llu is not a sequence of the space", i,
              (unsigned long long)ids[i]);
        CHECK(isnan(q[k]) || q[k] == lq[i], "id %llu: log q %.17g then %.17g",
              (unsigned long long)ids[i], q[k], lq[i]);
        q[k] = lq[i];
        cnt[k]++;
    }
    double sum = 0, worst = 0;
    int undrawn = 0;
    for (int k = 0; k < NT; k++) {
        if (isnan(q[k])) { /* q(h) < 8/N but for a chance of e^-8 */
            undrawn++;
            q[k] = -INFINITY;
            continue;
        }
        double e = exp(q[k]), sd = sqrt(e * (1 - e) / N);
        sum += e;
        worst = fmax(worst, fabs(cnt[k] / N - e) / (sd + 1e-9));
        CHECK(fabs(cnt[k] / N - e) <= 5 * sd + 1e-3, "id %llu: frequency %.4f, q %.4f",
              (unsigned long long)t->ids[k], cnt[k] / N, e);
        z += exp(t->logr[k]);
    }
    CHECK(sum < 1 + 1e-4 && sum > 1 - 1e-4 - undrawn * 8.0 / N,
          "sum of q over the %d drawn ids %.6f (%d never drawn)", NT - undrawn, sum, undrawn);
    for (int k = 0; k < NT; k++) {
        p[k] = exp(t->logr[k]) / z;
        tv += 0.5 * fabs(exp(q[k]) - p[k]);
    }
    printf("  %d draws: sum q %.6f over %d drawn ids, worst frequency deviation %.2f sigma, "
           "TV(q, R/Z) %.4f\n",
           N, sum, NT - undrawn, worst, tv);
    return tv;
}

int main(void)
{
    const char *const need[] = {"bg_lm_gfn.so"};
    const char *dir = bg_test_plugin_dir(need, 1);
    bg_err err;
    char ckpt[] = "/tmp/bg-test-lm-gfn-XXXXXX", saved[] = "/tmp/bg-test-lm-gfn-lora-XXXXXX";
    int fd = mkstemp(ckpt);
    CHECK(fd >= 0);
    close(fd);
    bg_nn_config cfg = {.dim = 16,
                        .hidden_dim = 32,
                        .n_layers = 2,
                        .n_heads = 2,
                        .n_kv_heads = 2,
                        .vocab_size = 16,
                        .seq_len = 8,
                        .shared_classifier = 1};
    CHECK(bg_nn_synth_write(ckpt, &cfg, 5, &err) == BG_OK, "%s", err.msg);
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_plugin *p;
    CHECK(bg_plugin_host_find(h, "lm_gfn", BG_PLUGIN_KIND_SAMPLER, &p, &err) == BG_OK, "%s",
          err.msg);
    CHECK(p->desc->abi_minor >= 4);
    const bg_sampler_vtbl *vt = p->desc->vt.sampler;
    const char *yaml = "batch: 16\nlora_rank: 4\nlr: 0.01\nseed: 3\n";
    bg_space_seq sp = seq_space(ckpt, tokens);
    table t;
    table_init(&t);

    /* 1, 2 */
    made m = make(h, p, yaml, &sp.space);
    CHECK(m.rc == BG_PLUGIN_OK, "create: %s", bg_plugin_services_errors(m.svc));
    printf("untrained:\n");
    double tv0 = draw_tv(vt, m.inst, &t, 11);
    CHECK(vt->train(m.inst, table_reward, &t, 300) == BG_PLUGIN_OK, "train");
    printf("after 300 steps (%ld reward calls, %ld ids asked):\n", t.calls, t.asked);
    double tv1 = draw_tv(vt, m.inst, &t, 12);
    CHECK(tv1 < 0.1 && tv1 < tv0, "TV %.4f after training (untrained %.4f), bar 0.1", tv1, tv0);

    /* 3 */
    for (int k = 0; k < NT; k++)
        CHECK(t.seen[k] <= 1, "id %llu asked %d times at one version", (unsigned long long)t.ids[k],
              t.seen[k]);
    long calls = t.calls;
    CHECK(vt->train(m.inst, table_reward, &t, 0) == BG_PLUGIN_OK);
    CHECK(t.calls == calls, "a train() at the same version called the reward");
    t.version = 2;
    for (int k = 0; k < NT; k++)
        t.logr[k] = -t.logr[k];
    CHECK(vt->train(m.inst, table_reward, &t, 0) == BG_PLUGIN_OK);
    CHECK(t.calls > calls, "a new version re-scored nothing");
    printf("new version: %ld re-scoring calls\n", t.calls - calls);

    /* 4 */
    fd = mkstemp(saved);
    CHECK(fd >= 0);
    close(fd);
    CHECK(vt->save(m.inst, saved) == BG_PLUGIN_OK, "save");
    made m2 = make(h, p, yaml, &sp.space);
    CHECK(m2.rc == BG_PLUGIN_OK);
    CHECK(vt->load(m2.inst, saved) == BG_PLUGIN_OK, "load");
    enum { N = 300 };
    uint64_t a[N], b[N];
    double qa[N], qb[N];
    bg_rng ra, rb;
    bg_rng_init(&ra, 5);
    bg_rng_init(&rb, 5);
    CHECK(vt->sample(m.inst, &ra, N, a, qa) == BG_PLUGIN_OK);
    CHECK(vt->sample(m2.inst, &rb, N, b, qb) == BG_PLUGIN_OK);
    for (int i = 0; i < N; i++)
        CHECK(a[i] == b[i] && fabs(qa[i] - qb[i]) < 1e-6, "draw %d: %llu %.6f vs %llu %.6f", i,
              (unsigned long long)a[i], qa[i], (unsigned long long)b[i], qb[i]);
    printf("save/load: %d draws identical\n", N);
    unmake(p, &m2);
    unmake(p, &m);

    /* 5 */
    bg_space bits = {8, 0};
    refused(h, p, yaml, &bits, "lm_gfn samples token sequences");
    refused(h, p, "min_len: 4\n", &sp.space, "min_len 4 is above the space's max_len 3");
    int32_t stop[NS] = {3, 2, 5}, out[NS] = {3, 4, 16};
    bg_space_seq s2 = seq_space(ckpt, stop), s3 = seq_space(ckpt, out);
    refused(h, p, yaml, &s2.space, "is token 2: expected a token of the checkpoint's vocabulary");
    refused(h, p, yaml, &s3.space, "is token 16: expected a token of the checkpoint's vocabulary");
    bg_plugin_unref(p);
    bg_plugin_host_destroy(h);
    unlink(ckpt);
    unlink(saved);
    CHECK_DONE("test_lm_gfn_plugin");
}
