/*
 * eng_fixture.h — shared set-up for the engine tests that load plugins: the
 * plugin host over $BG_PLUGIN_DIR (exit 77 = skip when it is not set) and
 *  guards built from plugin names + YAML config text (tests/support/guard_build.h).
 * Header-only (static) so each test stays one program.
 */
#ifndef BG_ENG_FIXTURE_H
#define BG_ENG_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_build.h"
#include "plugin/plugin_host.h"

static bg_plugin_host *fx_host(void)
{
    const char *dir = getenv("BG_PLUGIN_DIR");
    if (!dir) {
        printf("SKIP: BG_PLUGIN_DIR is not set (run through ctest)\n");
        exit(77);
    }
    bg_plugin_host *h;
    bg_err err;
    if (bg_plugin_host_create(dir, &h, &err) != BG_OK) {
        fprintf(stderr, "plugin host over %s: %s\n", dir, err.msg);
        exit(1);
    }
    return h;
}

/* The tests' own small generator (xorshift64), seeded by each test. */
static uint64_t fx_rng_state = 1;

static inline double fx_urand(void)
{
    fx_rng_state ^= fx_rng_state << 13;
    fx_rng_state ^= fx_rng_state >> 7;
    fx_rng_state ^= fx_rng_state << 17;
    return (double)(fx_rng_state >> 11) / 9007199254740992.0;
}

/* Standard normal (Box–Muller). */
static inline double fx_nrand(void)
{
    double u = fx_urand() + 1e-300, v = fx_urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* Build a guard or fail the test program (config must be valid here). */
static bg_guard_build *fx_guard(bg_plugin_host *h, const char *name, const char *model,
                                const char *model_cfg, const char *est, const char *est_cfg,
                                double threshold)
{
    bg_guard_spec spec = {.name = name,
                          .model = model,
                          .model_cfg = model_cfg,
                          .estimator = est,
                          .estimator_cfg = est_cfg,
                          .threshold = threshold};
    bg_guard_build *b;
    bg_err err;
    if (bg_guard_build_create(h, &spec, &b, &err) != BG_OK) {
        fprintf(stderr, "guard %s (%s + %s): %s\n", name, model, est, err.msg);
        exit(1);
    }
    return b;
}

/* A bandit pull with d features x (borrowed) and reward r, as the bandit
 * model reads it: tool "pull", no id, no arguments. */
static inline bg_observation fx_pull(double *x, size_t d, double r)
{
    bg_observation o;
    memset(&o, 0, sizeof o);
    o.action.tool = "pull";
    o.action.id = "";
    o.action.arguments_json = "";
    o.action.features = x;
    o.action.n_features = d;
    o.has_value = 1;
    o.value = r;
    return o;
}

/* Pieces of a fake model too large to enumerate (count 0, a 2-bit space)
 * and a deterministic sampler drawing ids 0, 1, 2, 3, 0, 1, ... with
 * log q = -log 4: the sampled path without training noise. */
static inline uint64_t fx_count0(const void *self)
{
    (void)self;
    return 0;
}

static inline int fx_space2(const void *self, bg_space *out)
{
    (void)self;
    out->n_bits = 2;
    out->flags = 0;
    return BG_PLUGIN_OK;
}

static inline int fx_cycle_sample(const void *self, bg_rng *rng, size_t n, uint64_t *ids,
                                  double *log_q)
{
    (void)self, (void)rng;
    for (size_t i = 0; i < n; i++) {
        ids[i] = i % 4;
        if (log_q)
            log_q[i] = -log(4.0);
    }
    return BG_PLUGIN_OK;
}

#endif
