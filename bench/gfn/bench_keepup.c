/*
 * bench_keepup.c — does a session's sampler keep up with a posterior that
 * moves with every observation? (issue 16, item 2). Not a test: run by
 * hand, results and commands in docs/GFLOWNET.md ("Training schedule").
 *
 *   bench_keepup [--d N] [--seeds a,b,..] [--steps S] [--obs N] [--k K]
 *                [--every E] [--refine B] [--search B] [--sampler 'YAML map']
 *                [--label TEXT]
 *
 * Through the engine and the real plugins (bandit, iid, noniid, gfn), the
 * way tests/gfn/test_gfn_fresh.c does it: a d-bit exploding bandit (d ≤ 20,
 * so the exact bound is known) whose sampled twin has `enumerate: false`;
 * N observations (default 40) arrive one at a time, r ~ N(x·w*, 1) on one
 * of 10 random arms, θ = the largest true arm mean; after each the sampler
 * trains S optimiser steps inline (deterministic). Every E observations
 * (and after the last) the bar is checked over 64 contexts (the 10 arms
 * and 54 random x): the sampled iid and non-iid (α = 0.01) bounds ≥ the
 * exact ones − 1e-9 in ≥ 97 % of them (at most 1 of 64 below), and the
 * sampled cautious hypothesis's exact posterior within a factor 10 of the
 * exact cautious one's in every context.
 *
 * Each checkpoint scores the same draw three times: the candidates alone
 * (refine=0), with the harm-directed refinement of
 * daemon/engine/sampled_refine.c scoring at most B hypotheses per Evaluate
 * (default BG_SAMPLED_REFINE_DEFAULT), and with the posterior search
 * archive (daemon/engine/sampled_archive.c, --search reward evaluations
 * after each observation's training, default BG_SAMPLED_SEARCH_DEFAULT;
 * 0: none) added before the refinement — the daemon's way — a paired
 * comparison on one trained sampler (the search does not touch the
 * sampler). Three lines per seed: the counts at the end, how many checkpoints
 * held the bar (with --every 1: after how many observations it is missed),
 * the training time per observation and the mean sampled Evaluate time
 * (wall, this machine; the first Evaluate of a checkpoint draws). The
 * `--sampler` text is the gfn plugin's config (default: the plugin's own
 * defaults); `--label` names the row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bg_test.h"
#include "cfg/cfg.h"
#include "engine/engine.h"
#include "engine/sampled.h"
#include "gfn/gfn.h"
#include "gfn_bandit_twin.h"

#define N_ARMS TWIN_ARMS
#define N_CTX 64
#define MAX_D 20
#define NV 3 /* draw alone, refined, archive + refined */

typedef struct opts {
    int d, steps, n_obs, k, every, refine, search;
    const char *sampler, *label;
    uint64_t seeds[32];
    int n_seeds;
} opts;

typedef struct bar {
    int below_iid, below_non, far;
    double worst_ratio;
    double eval_us;      /* mean wall time of one sampled Evaluate (iid and non-iid) */
    double eval_cpu_p50; /* median thread CPU time of one, µs: robust to a loaded machine */
} bar;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The bar over the 64 contexts (ctx[c] masks), for session "s", with the
 * refinement budget `refine` (0: the draw alone). */
static bar check_bar(const twin *t, int refine, const uint64_t *ctx)
{
    bg_engine *e = t->e;
    const bg_guard *gs = &t->gs, *gsn = &t->gs_non, *gx = t->gx, *gxn = &t->gx_non;
    int d = t->d;
    bg_sampled_trainer_refine(t->tr, refine);
    bg_err err;
    double *post = malloc(sizeof(double) << d);
    CHECK(post != NULL);
    CHECK(bg_engine_posterior(e, gx, "s", post, (size_t)1 << d, &err) == BG_OK, "%s", err.msg);
    bar b = {0, 0, 0, 1, 0, 0};
    double f[MAX_D], t_eval = 0, cpu[2 * N_CTX];
    for (int c = 0; c < N_CTX; c++) {
        twin_features(d, ctx[c], f);
        bg_action a = {
            .id = "", .tool = "pull", .arguments_json = "", .features = f, .n_features = d};
        bg_verdict vs, vsn, vx, vxn;
        double t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        CHECK(bg_engine_evaluate(e, gs, "s", &a, &vs, &err) == BG_OK, "%s", err.msg);
        double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        CHECK(bg_engine_evaluate(e, gsn, "s", &a, &vsn, &err) == BG_OK, "%s", err.msg);
        t_eval += now_s() - t0;
        cpu[2 * c] = 1e6 * (c1 - c0);
        cpu[2 * c + 1] = 1e6 * (clock_s(CLOCK_THREAD_CPUTIME_ID) - c1);
        CHECK(bg_engine_evaluate(e, gx, "s", &a, &vx, &err) == BG_OK, "%s", err.msg);
        CHECK(bg_engine_evaluate(e, gxn, "s", &a, &vxn, &err) == BG_OK, "%s", err.msg);
        b.below_iid += vs.harm_bound < vx.harm_bound - 1e-9;
        b.below_non += vsn.harm_bound < vxn.harm_bound - 1e-9;
        double ratio = post[vs.cautious_id] / post[vx.cautious_id];
        b.far += !(ratio >= 0.1 && ratio <= 10);
        if (fabs(log(ratio)) > fabs(log(b.worst_ratio)))
            b.worst_ratio = ratio;
    }
    free(post);
    b.eval_us = 1e6 * t_eval / (2 * N_CTX);
    qsort(cpu, 2 * N_CTX, sizeof *cpu, by_value);
    b.eval_cpu_p50 = 0.5 * (cpu[N_CTX - 1] + cpu[N_CTX]);
    return b;
}

static int bar_holds(const bar *b)
{
    return (N_CTX - b->below_iid) * 100 >= 97 * N_CTX &&
           (N_CTX - b->below_non) * 100 >= 97 * N_CTX && b->far == 0;
}

static int run_seed(bg_plugin_host *h, const opts *o, uint64_t seed)
{
    bg_err err;
    int d = o->d;
    uint64_t mask = ((uint64_t)1 << d) - 1, ctx[N_CTX];
    bg_rng r;
    bg_gfn_rng_seed(&r, seed);
    twin t;
    twin_open(&t, h, "keep", d, &r, o->sampler, (uint32_t)o->k, (uint32_t)o->steps);
    bg_sampled_trainer_search(t.tr, o->search);
    const uint64_t *arms = t.arms;
    bg_engine *e = t.e;
    for (int c = 0; c < N_CTX; c++)
        ctx[c] = c < N_ARMS ? arms[c] : bg_gfn_rng_u64(&r) & mask;

    double f[MAX_D], train_s = 0;
    int checks = 0, held[NV] = {0}, budget[NV] = {0, o->refine, o->refine};
    bar b[NV] = {{0, 0, 0, 1, 0, 0}, {0, 0, 0, 1, 0, 0}, {0, 0, 0, 1, 0, 0}};
    for (int i = 0; i < o->n_obs; i++) {
        uint64_t m = arms[bg_gfn_rng_u64(&r) % N_ARMS];
        bg_observation ob = twin_pull(&t, m, f, &r);
        double t0 = now_s();
        CHECK(bg_engine_observe(e, &t.gs, "s", &ob, NULL, &err) == BG_OK, "observe: %s", err.msg);
        train_s += now_s() - t0;
        CHECK(bg_engine_observe(e, t.gx, "s", &ob, NULL, &err) == BG_OK, "observe: %s", err.msg);
        if ((i + 1) % o->every == 0 || i + 1 == o->n_obs) {
            checks++;
            for (int v = 0; v < NV; v++) { /* the same draw: alone, refined, + archive */
                bg_sampled_trainer_use_archive(t.tr, v == 2);
                b[v] = check_bar(&t, budget[v], ctx);
                held[v] += bar_holds(&b[v]);
            }
        }
    }
    uint64_t n_search, s_evals, s_ns;
    bg_sampled_trainer_search_stats(t.tr, &n_search, &s_evals, &s_ns);
    for (int v = 0; v < NV; v++)
        printf("%-24s d=%-2d seed=%-5llu steps/obs=%-3d refine=%-4d archive=%d below iid %2d "
               "non-iid %2d "
               "far %2d (worst ratio %8.3g) %s; bar held at %d/%d checkpoints; "
               "train %.1f ms/obs (search %.0f evals, %.1f ms CPU); evaluate %.0f us wall mean, "
               "%.0f us CPU p50\n",
               o->label, d, (unsigned long long)seed, o->steps, budget[v], v == 2, b[v].below_iid,
               b[v].below_non, b[v].far, b[v].worst_ratio, bar_holds(&b[v]) ? "PASS" : "fail",
               held[v], checks, 1e3 * train_s / o->n_obs, (double)s_evals / o->n_obs,
               1e-6 * (double)s_ns / o->n_obs, b[v].eval_us, b[v].eval_cpu_p50);
    fflush(stdout);

    twin_close(&t);
    return bar_holds(&b[0]) | bar_holds(&b[1]) << 1 | bar_holds(&b[2]) << 2;
}

int main(int argc, char **argv)
{
    opts o = {.d = 10,
              .steps = 20,
              .n_obs = 40,
              .k = 256,
              .every = 5,
              .refine = BG_SAMPLED_REFINE_DEFAULT,
              .search = BG_SAMPLED_SEARCH_DEFAULT,
              .sampler = "{}"};
    o.label = "plugin defaults";
    const char *seeds = "1,3,5,7,11,99";
    for (int i = 1; i < argc; i += 2) { /* --flag value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_keepup: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--d"))
            o.d = atoi(v);
        else if (!strcmp(a, "--steps"))
            o.steps = atoi(v);
        else if (!strcmp(a, "--obs"))
            o.n_obs = atoi(v);
        else if (!strcmp(a, "--k"))
            o.k = atoi(v);
        else if (!strcmp(a, "--refine"))
            o.refine = atoi(v);
        else if (!strcmp(a, "--search"))
            o.search = atoi(v);
        else if (!strcmp(a, "--every"))
            o.every = atoi(v);
        else if (!strcmp(a, "--sampler"))
            o.sampler = v;
        else if (!strcmp(a, "--label"))
            o.label = v;
        else if (!strcmp(a, "--seeds"))
            seeds = v;
        else {
            fprintf(stderr, "bench_keepup: unknown option %s\n", a);
            return 2;
        }
    }
    if (o.d < 1 || o.d > MAX_D || o.steps < 1 || o.n_obs < 1 || o.k < 1 || o.every < 1) {
        fprintf(stderr, "bench_keepup: --d 1..%d, --steps, --obs, --k, --every >= 1\n", MAX_D);
        return 2;
    }
    for (const char *p = seeds; *p && o.n_seeds < 32;) {
        o.seeds[o.n_seeds++] = strtoull(p, NULL, 10);
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    const char *dir = getenv("BG_PLUGIN_DIR") ? getenv("BG_PLUGIN_DIR") : BG_DEFAULT_PLUGIN_DIR;
    bg_err err;
    bg_plugin_host *h;
    CHECK(bg_plugin_host_create(dir, &h, &err) == BG_OK, "%s", err.msg);
    int pass[NV] = {0};
    for (int s = 0; s < o.n_seeds; s++) {
        int p = run_seed(h, &o, o.seeds[s]);
        for (int v = 0; v < NV; v++)
            pass[v] += p >> v & 1;
    }
    printf("%-24s d=%-2d steps/obs=%-3d: bar held at the end for %d of %d seeds (draw alone), "
           "%d of %d (refine %d), %d of %d (archive, search %d, + refine)\n",
           o.label, o.d, o.steps, pass[0], o.n_seeds, pass[1], o.n_seeds, o.refine, pass[2],
           o.n_seeds, o.search);
    bg_plugin_host_destroy(h);
    return 0;
}
