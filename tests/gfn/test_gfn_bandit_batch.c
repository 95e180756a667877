/*
 * test_gfn_bandit_batch.c — the bandit's batched log_lik and harm give the
 * same values, bit for bit, whatever the batch: a call of n ids computes
 * f(x·w) through a table of the (popcount(x) + 1) values x·w can take
 * when x is binary, each entry when an id of the call first reads it
 * (since 2026-12-07 at every width: until then a call of more ids than
 * popcount(x) computed the whole table; the per-context search's calls,
 * once per observation of the history, are most of the context search's
 * reward time, docs/GFLOWNET.md "A search per remembered context",
 * "Cost"). The sampled path scores the same hypothesis in calls of
 * different widths (a draw's, a refinement's, a context search's), so a
 * value that depended on the batch would change verdicts.
 *
 * For d = 12 and 64 and contexts x of popcount 0, 1, a few, d/2 and d
 * (binary) and one non-binary x: 300 ids (0, all ones, the single bits,
 * random) scored in one call and again in chunks of 1, 2, 3, 8 and 64
 * ids (each chunk's table computed afresh, its entries in another order),
 * log_lik at two rewards and harm, memcmp-equal.
 * The chunks put 0 and all ones side by side (x·w = 0 and = d: the two
 * ends of the table's bit mask). Checked once that it fails when a lazy
 * entry is computed for the wrong x·w, and when x·w = 64 shares the
 * "computed" bit of x·w = 0. Under a second. Skips (77) without the plugins.
 */
#include <string.h>

#include "gfn_bandit_twin.h"

#define N_IDS 300

static size_t g_checked;

/* out[0..n) from one call per chunk of width w. Before each chunk a call
 * for `all` alone at another reward: it leaves that reward's table entry
 * for x·w = popcount(x) on the stack where the chunk's call keeps its
 * table, so a chunk that read an entry it did not compute reads a wrong
 * value, not the right one left by a neighbour. */
static void by_chunks(const bg_guard *g, const bg_observation *ob, const bg_action *a,
                      const uint64_t *ids, size_t n, size_t w, uint64_t all, double *out)
{
    bg_observation poison = {.action = *a, .has_value = 1, .value = 9.5};
    for (size_t i = 0; i < n; i += w) {
        size_t m = n - i < w ? n - i : w;
        double p;
        CHECK_INT(g->model->log_lik(g->model_inst, &poison, NULL, 0, &all, 1, &p), BG_PLUGIN_OK);
        if (ob)
            CHECK_INT(g->model->log_lik(g->model_inst, ob, NULL, 0, ids + i, m, out + i),
                      BG_PLUGIN_OK);
        else
            CHECK_INT(g->model->harm(g->model_inst, a, NULL, 0, ids + i, m, out + i), BG_PLUGIN_OK);
    }
}

static void check_context(const bg_guard *g, int d, const double *x, const uint64_t *ids,
                          uint64_t all)
{
    bg_action a = {.id = "", .tool = "pull", .features = x, .n_features = (size_t)d};
    static const double rewards[2] = {0.7, 3.25};
    static const size_t widths[] = {1, 2, 3, 8, 64};
    enum { W = sizeof widths / sizeof *widths };
    double whole[N_IDS], part[W][N_IDS];
    for (int what = 0; what < 3; what++) { /* log_lik at two rewards, harm */
        bg_observation ob = {.action = a, .has_value = 1, .value = rewards[what & 1]};
        const bg_observation *o = what < 2 ? &ob : NULL;
        /* the chunks first: a lazy table must not find the entries of a
         * whole-table call of the same x left on the stack */
        for (size_t k = 0; k < W; k++)
            by_chunks(g, o, &a, ids, N_IDS, widths[k], all, part[k]);
        by_chunks(g, o, &a, ids, N_IDS, N_IDS, all, whole);
        for (size_t k = 0; k < W; k++) {
            for (size_t i = 0; i < N_IDS; i++)
                CHECK(!memcmp(&whole[i], &part[k][i], sizeof(double)),
                      "d = %d, %s, chunks of %zu: id %zu (%#llx): %.17g, one call %.17g", d,
                      what < 2 ? "log_lik" : "harm", widths[k], i, (unsigned long long)ids[i],
                      part[k][i], whole[i]);
            g_checked += N_IDS;
        }
    }
}

static void check_d(bg_plugin_host *h, int d)
{
    char cfg[96];
    snprintf(cfg, sizeof cfg, "{features: %d, sigma: 1.3, theta: 2.5, enumerate: false}", d);
    bg_guard_build *b;
    const bg_guard *g = twin_build(h, "batch", cfg, "iid", "", &b);
    uint64_t all = d == 64 ? ~0ULL : (1ULL << d) - 1;
    bg_rng r;
    bg_gfn_rng_seed(&r, 1207 + (uint64_t)d);
    uint64_t ids[N_IDS];
    size_t n = 0;
    for (int rep = 0; rep < 4; rep++) { /* 0 and all ones side by side in every chunk width */
        ids[n++] = 0;
        ids[n++] = all;
    }
    for (int k = 0; k < d; k++)
        ids[n++] = 1ULL << k;
    while (n < N_IDS)
        ids[n++] = bg_gfn_rng_u64(&r) & all;
    double x[64];
    const int pops[] = {0, 1, 3, d / 2, d};
    for (size_t p = 0; p < sizeof pops / sizeof *pops; p++) {
        memset(x, 0, sizeof x);
        for (int set = 0; set < pops[p];) { /* pops[p] distinct random features */
            int k = (int)(bg_gfn_rng_u64(&r) % (uint64_t)d);
            if (x[k] == 0.0) {
                x[k] = 1.0;
                set++;
            }
        }
        check_context(g, d, x, ids, all);
    }
    for (int k = 0; k < d; k++) /* not binary: the dot product path */
        x[k] = k % 3 == 0 ? 0.5 : (double)(k % 2);
    check_context(g, d, x, ids, all);
    bg_guard_build_destroy(b);
}

int main(void)
{
    const char *const need[] = {"bg_bandit.so", "bg_iid.so"};
    const char *dir = bg_test_plugin_dir(need, 2);
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    check_d(h, 12);
    check_d(h, 64);
    bg_plugin_host_destroy(h);
    printf("test_gfn_bandit_batch: %zu values equal in every chunking\n", g_checked);
    CHECK_DONE("test_gfn_bandit_batch");
}
