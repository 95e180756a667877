/*
 * test_plugin_lm.c — the host's language-model service (plugin.h ABI 1.3,
 * daemon/plugin/plugin_lm.c) through the bg_host table a plugin gets, on
 * ../shared/models/stories260K.bin with a byte tokenizer written here:
 *
 *   - lm_score from 8 threads at once (one model, one worker) equals
 *     bg_nn_score on a model loaded by the test, item by item, within 2e-4
 *     nats (the service decodes short continuations token by token from a
 *     KV cache it reuses; bg_nn_score prefills them: float32 rounding);
 *   - lm_next: log-probabilities that normalise and match lm_score of each
 *     single token;
 *   - the same files give the same shared handle; a rewritten checkpoint
 *     (new mtime) gives a new one while the old stays usable;
 *   - a call over the per-call limit, a sequence over seq_len and a token
 *     outside the vocabulary fail with their code and a message, and the
 *     model keeps serving; a missing file is a config error naming it.
 * Skips (77) without the shared model.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "nn/nn.h"
#include "plugin/plugin_host.h"

#define FIX BG_FIXTURE_DIR
#define NT 8  /* threads */
#define NI 24 /* items per thread */

static char ckpt[1024], tok[1024];
static const bg_host *H;
static bg_lm *LM;
static bg_nn_model *REF;

static void write_tok(const char *path, int vocab)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    int32_t max = 8;
    fwrite(&max, 4, 1, f);
    for (int i = 0; i < vocab; i++) {
        char p[16];
        int32_t len;
        float sc = 0;
        if (i < 3)
            len = snprintf(p, sizeof p, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            p[0] = (char)(i - 3), len = 1;
        else
            len = snprintf(p, sizeof p, "<x%03d>", i), sc = -1e10f;
        fwrite(&sc, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(p, 1, (size_t)len, f);
    }
    fclose(f);
}

typedef struct job {
    int id;
    int32_t pre[NI][12], cont[NI][3];
    bg_lm_item items[NI];
    double out[NI];
    int rc;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    char msg[256];
    j->rc = H->lm_score(LM, j->items, NI, j->out, msg, sizeof msg);
    return NULL;
}

static void make_job(job *j, int id)
{
    j->id = id;
    for (int i = 0; i < NI; i++) {
        int np = 2 + (i % 10), nc = 1 + (i % 3);
        j->pre[i][0] = 1;
        for (int t = 1; t < np; t++) /* items share heads: KV reuse is exercised */
            j->pre[i][t] = 3 + ((t * 7 + (t > np / 2 ? i + id : 0)) % 250);
        for (int t = 0; t < nc; t++)
            j->cont[i][t] = 3 + ((i * 13 + t * 5 + id) % 500);
        j->items[i] = (bg_lm_item){j->pre[i], (size_t)np, j->cont[i], (size_t)nc};
    }
}

static void test_concurrent_scores(void)
{
    static job jobs[NT];
    pthread_t th[NT];
    for (int k = 0; k < NT; k++)
        make_job(&jobs[k], k);
    for (int k = 0; k < NT; k++)
        CHECK_INT(pthread_create(&th[k], NULL, worker, &jobs[k]), 0);
    for (int k = 0; k < NT; k++)
        pthread_join(th[k], NULL);
    double worst = 0;
    for (int k = 0; k < NT; k++) {
        CHECK_INT(jobs[k].rc, BG_PLUGIN_OK);
        for (int i = 0; i < NI; i++) {
            const bg_lm_item *it = &jobs[k].items[i];
            const int32_t *c = it->cont;
            int len = (int)it->n_cont;
            double want;
            bg_err err;
            CHECK_INT(bg_nn_score(REF, it->prefix, (int)it->n_prefix, &c, &len, 1, &want, &err),
                      BG_OK);
            double d = fabs(jobs[k].out[i] - want);
            worst = d > worst ? d : worst;
            CHECK(d < 2e-4, "thread %d item %d: service %.6f, bg_nn_score %.6f", k, i,
                  jobs[k].out[i], want);
        }
    }
    printf("  %d threads x %d items: worst |service - bg_nn_score| = %.2e nats (tol 2e-4)\n", NT,
           NI, worst);
}

static void test_next(void)
{
    bg_lm_info info;
    H->lm_info(LM, &info);
    CHECK_INT(info.vocab_size, 512);
    int32_t pre[3] = {1, 50, 60};
    bg_lm_item it = {pre, 3, NULL, 0};
    float *lp = malloc(512 * sizeof *lp);
    char msg[256];
    CHECK_INT(H->lm_next(LM, &it, 1, lp, msg, sizeof msg), BG_PLUGIN_OK);
    double z = 0;
    for (int v = 0; v < 512; v++)
        z += exp((double)lp[v]);
    CHECK_NEAR(z, 1.0, 1e-4);
    int32_t tk[2] = {7, 300};
    for (int k = 0; k < 2; k++) {
        bg_lm_item s = {pre, 3, &tk[k], 1};
        double o;
        CHECK_INT(H->lm_score(LM, &s, 1, &o, msg, sizeof msg), BG_PLUGIN_OK);
        CHECK_NEAR(o, (double)lp[tk[k]], 1e-4);
    }
    free(lp);
}

static void test_errors(void)
{
    char msg[256] = "";
    int32_t pre[2] = {1, 5}, bad = 512, good = 9;
    double o[1];
    bg_lm_item it = {pre, 2, &bad, 1};
    CHECK_INT(H->lm_score(LM, &it, 1, o, msg, sizeof msg), BG_PLUGIN_EINVAL);
    CHECK(strstr(msg, "outside 0..511") != NULL, "%s", msg);
    bg_lm_info info;
    H->lm_info(LM, &info);
    int32_t *longp = calloc((size_t)info.seq_len, sizeof *longp);
    bg_lm_item lit = {longp, (size_t)info.seq_len, &good, 1};
    CHECK_INT(H->lm_score(LM, &lit, 1, o, msg, sizeof msg), BG_PLUGIN_EINVAL);
    CHECK(strstr(msg, "seq_len") != NULL, "%s", msg);
    free(longp);
    size_t many = 4097;
    bg_lm_item *items = calloc(many, sizeof *items);
    double *out = calloc(many, sizeof *out);
    for (size_t i = 0; i < many; i++)
        items[i] = (bg_lm_item){pre, 2, &good, 1};
    CHECK_INT(H->lm_score(LM, items, many, out, msg, sizeof msg), BG_PLUGIN_ELIMIT);
    CHECK(strstr(msg, "at most 4096") != NULL, "%s", msg);
    CHECK_INT(H->lm_score(LM, items, 4096, out, msg, sizeof msg), BG_PLUGIN_OK);
    CHECK_NEAR(out[0], out[4095], 1e-6);
    free(items);
    free(out);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    CHECK(a && b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        CHECK(fwrite(buf, 1, n, b) == n);
    fclose(a);
    fclose(b);
}

static void test_sharing(const char *dir)
{
    char mine[1200];
    snprintf(mine, sizeof mine, "%s/copy.bin", dir);
    copy_file(ckpt, mine);
    bg_lm_spec spec = {sizeof spec, 0, mine, tok, "cpu", NULL};
    bg_lm *a = NULL, *b = NULL, *c = NULL;
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &spec, &a), BG_PLUGIN_OK);
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &spec, &b), BG_PLUGIN_OK);
    CHECK(a == b, "the same files must give the same model");
    /* Rewritten with a new mtime: a new model beside the old. */
    struct timespec t[2] = {{0, UTIME_NOW}, {12345, 0}};
    CHECK_INT(utimensat(AT_FDCWD, mine, t, 0), 0);
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &spec, &c), BG_PLUGIN_OK);
    CHECK(c != a, "a changed file must load a new model");
    int32_t pre[2] = {1, 40}, x = 41;
    bg_lm_item it = {pre, 2, &x, 1};
    double oa, oc;
    char msg[256];
    H->lm_close(H->host_ctx, b);
    CHECK_INT(H->lm_score(a, &it, 1, &oa, msg, sizeof msg), BG_PLUGIN_OK);
    CHECK_INT(H->lm_score(c, &it, 1, &oc, msg, sizeof msg), BG_PLUGIN_OK);
    CHECK_NEAR(oa, oc, 1e-6);
    H->lm_close(H->host_ctx, a);
    H->lm_close(H->host_ctx, c);
    unlink(mine);

    bg_lm *d = NULL;
    bg_lm_spec missing = {sizeof spec, 0, "/nonexistent/m.bin", tok, "cpu", NULL};
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &missing, &d), BG_PLUGIN_ECONFIG);
    CHECK(d == NULL);
    bg_lm_spec badbk = {sizeof spec, 0, ckpt, tok, "tpu", NULL};
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &badbk, &d), BG_PLUGIN_ECONFIG);
}

int main(void)
{
    const char *shared = getenv("BG_SHARED_DIR");
    snprintf(ckpt, sizeof ckpt, "%s/models/stories260K.bin", shared ? shared : "../shared");
    if (access(ckpt, R_OK) != 0) {
        printf("skip: %s not found (the shared models/ folder)\n", ckpt);
        return 77;
    }
    char dir[] = "/tmp/bg-test-lm-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(tok, sizeof tok, "%s/bytes.tok", dir);
    write_tok(tok, 512);

    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK(bg_plugin_host_create(FIX "/good", &h, &err) == BG_OK, "%s", err.msg);
    bg_plugin *p = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_model", BG_PLUGIN_KIND_HYPOTHESIS, &p, &err), BG_OK);
    bg_plugin_services *s = NULL;
    CHECK_INT(bg_plugin_services_create(h, p, &s, &err), BG_OK);
    H = bg_plugin_services_host(s);
    CHECK(H->abi_minor >= 3 && H->lm_open && H->lm_close && H->lm_info && H->lm_encode &&
          H->lm_score && H->lm_next);
    bg_lm_spec spec = {sizeof spec, 0, ckpt, tok, "cpu", NULL};
    CHECK_INT(H->lm_open(H->host_ctx, NULL, &spec, &LM), BG_PLUGIN_OK);
    bg_compute_opts cpu = {.kind = BG_BACKEND_CPU};
    CHECK(bg_nn_model_load(ckpt, &cpu, &REF, &err) == BG_OK, "%s", err.msg);

    test_concurrent_scores();
    test_next();
    test_errors();
    test_sharing(dir);
    CHECK(strstr(bg_plugin_services_errors(s), "/nonexistent/m.bin") != NULL, "%s",
          bg_plugin_services_errors(s));
    CHECK(strstr(bg_plugin_services_errors(s), "backend `tpu` is unknown") != NULL);

    bg_nn_model_destroy(REF);
    H->lm_close(H->host_ctx, LM);
    bg_plugin_services_destroy(s);
    bg_plugin_unref(p);
    bg_plugin_host_destroy(h);
    unlink(tok);
    rmdir(dir);
    CHECK_DONE("test_plugin_lm");
}
