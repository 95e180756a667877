/*
 * test_gfn_plugin.c — the sampler plugin `gfn` loaded through the plugin
 * host (the daemon's dlopen path), checked against the engine linked in
 * process:
 *   1. the descriptor: kind sampler, name "gfn", a config map;
 *   2. created from a YAML config on a d = 6 space and trained on a table
 *      reward, it draws exactly the samples (ids and log q) an in-process
 *      bg_gfn with the same settings draws — one source of truth, same
 *      seed, same numbers; and the log q it reports equals bg_gfn_log_q;
 *   3. save through the plugin → bg_gfn_load in process → identical
 *      samples; load back into the plugin works, a file for another d is
 *      refused;
 *   4. config errors: an unknown key, a bad enum value, and a 0-bit space
 *      are refused with a message naming the key / the cause.
 * Skips (77) when bg_gfn.so is not in BG_PLUGIN_DIR.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gfn/gfn.h"
#include "gfn_test_util.h"
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"

#define D 6

static const char *yaml = "loss: tb\nhidden: 32\nlayers: 2\nbatch: 16\nlr: 0.003\n"
                          "lr_end: 0.0001\nlr_horizon: 300\nseed: 3\n";

static bg_gfn *in_process(uint32_t d)
{
    bg_gfn_config c = small_config(d, 32, 3);
    c.loss = BG_GFN_LOSS_TB;
    c.n_hidden = 2;
    c.batch = 16;
    c.lr = 0.003;
    c.lr_end = 0.0001;
    c.lr_horizon = 300;
    bg_gfn *g = gfn_new(&c);
    return g;
}

typedef struct made {
    bg_cfg_doc *doc;
    bg_plugin_services *svc;
    void *inst;
    int rc;
} made;

static made make(bg_plugin_host *h, bg_plugin *p, const char *text, uint32_t bits)
{
    made m = {0};
    bg_err err;
    CHECK(bg_cfg_parse_string(text, strlen(text), "gfn.yaml", &m.doc, &err) == BG_OK, "%s",
          err.msg);
    CHECK(bg_plugin_services_create(h, p, &m.svc, &err) == BG_OK, "%s", err.msg);
    bg_space space = {bits, 0};
    m.rc = p->desc->vt.sampler->create(bg_plugin_services_host(m.svc), bg_cfg_doc_root(m.doc, 0),
                                       &space, &m.inst);
    return m;
}

static void unmake(const bg_plugin *p, made *m)
{
    if (m->rc == BG_PLUGIN_OK)
        p->desc->vt.sampler->destroy(m->inst);
    bg_plugin_services_destroy(m->svc);
    bg_cfg_doc_destroy(m->doc);
}

static void expect_config_error(bg_plugin_host *h, bg_plugin *p, const char *text, uint32_t bits,
                                const char *needle)
{
    made m = make(h, p, text, bits);
    const char *errs = bg_plugin_services_errors(m.svc);
    CHECK(m.rc == BG_PLUGIN_ECONFIG, "config \"%s\" must be refused (rc %d)", text, m.rc);
    CHECK(strstr(errs, needle) != NULL, "errors \"%s\" lack \"%s\"", errs, needle);
    printf("refused: %s", errs);
    if (!*errs || errs[strlen(errs) - 1] != '\n')
        printf("\n");
    unmake(p, &m);
}

int main(void)
{
    const char *const need[] = {"bg_gfn.so"};
    const char *dir = bg_test_plugin_dir(need, 1);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    bg_plugin *p;
    CHECK(bg_plugin_host_find(h, "gfn", BG_PLUGIN_KIND_SAMPLER, &p, &err) == BG_OK, "%s", err.msg);
    /* 1 */
    CHECK(p->desc->kind == BG_PLUGIN_KIND_SAMPLER && strcmp(p->desc->name, "gfn") == 0 &&
              p->desc->config_map_len > 10,
          "descriptor");
    const bg_sampler_vtbl *vt = p->desc->vt.sampler;

    /* 2 */
    double log_r[1u << D];
    bg_rng r;
    bg_gfn_rng_seed(&r, 17);
    for (uint32_t i = 0; i < (1u << D); i++)
        log_r[i] = 2 * bg_gfn_rng_uniform(&r);
    made m = make(h, p, yaml, D);
    CHECK(m.rc == BG_PLUGIN_OK, "create: %s", bg_plugin_services_errors(m.svc));
    bg_gfn *ref = in_process(D);
    table_reward t1 = {log_r, 0}, t2 = {log_r, 0};
    CHECK(vt->train(m.inst, table_reward_fn, &t1, 200) == BG_PLUGIN_OK, "plugin train");
    char msg[512];
    train_on(ref, &t2, 200);
    CHECK(t1.calls == t2.calls && t1.calls > 0, "reward calls %llu vs %llu",
          (unsigned long long)t1.calls, (unsigned long long)t2.calls);
    enum { N = 500 };
    uint64_t a[N], b[N];
    double qa[N], qb[N], qx[N];
    bg_rng ra, rb;
    bg_gfn_rng_seed(&ra, 8);
    bg_gfn_rng_seed(&rb, 8);
    CHECK(vt->sample(m.inst, &ra, N, a, qa) == BG_PLUGIN_OK, "plugin sample");
    bg_gfn_sample(ref, &rb, N, b, qb);
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(qa, qb, sizeof qa) == 0,
          "plugin and in-process engine must sample identically");
    bg_gfn_log_q(ref, a, N, qx);
    for (int i = 0; i < N; i++)
        CHECK(fabs(qa[i] - qx[i]) <= 1e-12, "log q %g vs exact %g", qa[i], qx[i]);
    printf("plugin via host: 200 steps, %d samples identical to the in-process engine\n", N);

    /* 3 */
    char path[] = "/tmp/bg_gfn_plugin_______";
    memset(path + sizeof path - 7, 'X', 6); /* mkstemp template suffix */
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    CHECK(vt->save(m.inst, path) == BG_PLUGIN_OK, "plugin save");
    bg_gfn *loaded;
    CHECK(bg_gfn_load(path, &loaded, msg, sizeof msg) == BG_PLUGIN_OK, "%s", msg);
    bg_gfn_rng_seed(&rb, 8);
    bg_gfn_sample(loaded, &rb, N, b, qb);
    CHECK(memcmp(a, b, sizeof a) == 0, "saved state samples differently");
    CHECK(vt->load(m.inst, path) == BG_PLUGIN_OK, "plugin load");
    made m7 = make(h, p, yaml, D + 1);
    CHECK(m7.rc == BG_PLUGIN_OK, "create d=7");
    CHECK(vt->load(m7.inst, path) == BG_PLUGIN_EINVAL, "a d=6 file must not load into d=7");
    unmake(p, &m7);
    unlink(path);
    printf("save/load through the plugin: identical samples; other d refused\n");

    /* 4 */
    expect_config_error(h, p, "hiden: 32\n", D, "hiden");
    expect_config_error(h, p, "loss: xb\n", D, "loss");
    expect_config_error(h, p, "seed: 1\n", 0, "bits");

    bg_gfn_destroy(ref);
    bg_gfn_destroy(loaded);
    unmake(p, &m);
    bg_plugin_unref(p);
    bg_plugin_host_destroy(h);
    printf("ok\n");
    return 0;
}
