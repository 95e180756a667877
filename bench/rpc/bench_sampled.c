/*
 * bench_sampled.c — bench_rpc's sampled policy (bench_sampled.h): prime
 * the bench sessions with observations of a bandit (r = x·w* + N(0, 1),
 * x uniform in {0,1}^d), wait until each session's sampler has trained on
 * them, and a training load for the "while it trains" rows.
 *
 * Calls here are blocking, through the CLI's client (daemon/cli/
 * cli_client.h: its own channel and pluck queue, plain TCP), so they never
 * mix with the measuring client's queue.
 */
#include "bench_sampled.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bayesguard/v1/guard.pb-c.h"
#include "cli/cli_client.h"
#include "common/bg_time.h"

#define BS_MAX_D 64

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double gauss(uint64_t *s)
{
    double u = ((double)(mix(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(mix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* One observation of session `sess`: a random arm of the bandit with w*
 * (from o->seed) and its reward. */
static int observe(bg_client *cl, const bs_opts *o, const char *sess, uint64_t *rng, bg_err *err)
{
    uint64_t ws = o->seed;
    double x[BS_MAX_D], mean = 0;
    unsigned d = o->features < BS_MAX_D ? o->features : BS_MAX_D;
    uint64_t wbits = mix(&ws), xbits = mix(rng);
    for (unsigned k = 0; k < d; k++) {
        x[k] = (double)(xbits >> k & 1);
        mean += x[k] * (double)(wbits >> k & 1);
    }
    Bayesguard__V1__ObserveRequest req = BAYESGUARD__V1__OBSERVE_REQUEST__INIT;
    Bayesguard__V1__Action a = BAYESGUARD__V1__ACTION__INIT;
    Bayesguard__V1__Context c = BAYESGUARD__V1__CONTEXT__INIT;
    a.tool = (char *)o->tool;
    a.features = x;
    a.n_features = d;
    c.session = (char *)sess;
    req.action = &a;
    req.context = &c;
    req.measured_case = BAYESGUARD__V1__OBSERVE_REQUEST__MEASURED_VALUE;
    req.value = mean + gauss(rng);
    req.harmed = req.value > 0.5 * d;
    Bayesguard__V1__ObserveResponse *resp = NULL;
    int rc = bg_client_observe(cl, &req, &resp, NULL, err);
    bg_client_free(resp);
    return rc;
}

/* A client of o->addr, or NULL with a message. */
static bg_client *client(const bs_opts *o)
{
    bg_client *cl;
    bg_err err;
    if (bg_client_create(o->addr, 30000, &cl, &err) != BG_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return NULL;
    }
    return cl;
}

int bs_prime(const bs_opts *o)
{
    bg_client *cl = client(o);
    if (!cl)
        return -1;
    uint64_t rng = o->seed ^ 0x5eed;
    bg_err err;
    for (unsigned s = 0; s < o->n_sessions; s++) {
        char sess[32];
        snprintf(sess, sizeof sess, "bench-%u", s);
        for (unsigned i = 0; i < o->observations; i++)
            if (observe(cl, o, sess, &rng, &err) != BG_OK) {
                fprintf(stderr, "bench: Observe %s (tool %s): %s\n", sess, o->tool, err.msg);
                bg_client_destroy(cl);
                return -1;
            }
    }
    bg_client_destroy(cl);
    return 0;
}

int bs_wait_trained(const bs_opts *o, unsigned min_steps, double timeout_s)
{
    bg_client *cl = client(o);
    if (!cl)
        return -1;
    uint64_t t_end = bg_now_ns() + (uint64_t)(timeout_s * 1e9);
    double x[BS_MAX_D];
    unsigned d = o->features < BS_MAX_D ? o->features : BS_MAX_D;
    for (unsigned k = 0; k < d; k++)
        x[k] = 0.5;
    int rc = 0;
    for (unsigned s = 0; s < o->n_sessions && rc == 0; s++) {
        char sess[32];
        snprintf(sess, sizeof sess, "bench-%u", s);
        Bayesguard__V1__EvaluateRequest req = BAYESGUARD__V1__EVALUATE_REQUEST__INIT;
        Bayesguard__V1__Action a = BAYESGUARD__V1__ACTION__INIT;
        Bayesguard__V1__Context c = BAYESGUARD__V1__CONTEXT__INIT;
        a.tool = (char *)o->tool;
        a.features = x;
        a.n_features = d;
        c.session = sess;
        req.action = &a;
        req.context = &c;
        uint64_t last = UINT64_MAX;
        int stable = 0;
        for (;;) {
            Bayesguard__V1__Verdict *v = NULL;
            bg_err err;
            int erc = bg_client_evaluate(cl, &req, &v, NULL, &err);
            /* caught up: no lag, and no more training (the same steps
             * over three polls 0.3 s apart: each round ends in a new draw) */
            int up = v && v->sampler && v->sampler->version_lag == 0 &&
                     v->sampler->train_steps >= min_steps;
            stable = up && v->sampler->train_steps == last ? stable + 1 : 0;
            last = up ? v->sampler->train_steps : UINT64_MAX;
            int done = stable >= 3;
            if (done && s == 0)
                printf("bench_rpc: sampled %s: %u observations, sampler health: healthy %d, "
                       "tb_residual %.3g, ess %.1f of %llu, spread %.3g, train_steps %llu%s%s\n",
                       o->tool, o->observations, v->sampler->healthy, v->sampler->tb_residual,
                       v->sampler->ess, (unsigned long long)v->samples,
                       v->sampler->log_weight_spread, (unsigned long long)v->sampler->train_steps,
                       v->sampler->reason[0] ? ", " : "", v->sampler->reason);
            bg_client_free(v);
            if (done)
                break;
            if (erc != BG_OK && erc != BG_EUNAVAIL) {
                fprintf(stderr, "bench: sampled Evaluate: %s\n", err.msg);
                rc = -1;
                break;
            }
            if (bg_now_ns() > t_end) {
                fprintf(stderr, "bench: the sampler of %s did not catch up in %.0f s\n", sess,
                        timeout_s);
                rc = -1;
                break;
            }
            sleep_ms(up ? 300 : 5);
        }
    }
    bg_client_destroy(cl);
    return rc;
}

struct bs_load {
    bs_opts o;
    pthread_t th;
    atomic_int stop;
    uint64_t calls;
};

static void *load_main(void *arg)
{
    bs_load *l = arg;
    bg_client *cl = client(&l->o);
    uint64_t rng = l->o.seed ^ 0x10ad;
    char sess[32];
    bg_err err;
    for (unsigned k = 0; !atomic_load(&l->stop); k++) {
        /* a fresh session every 40 observations: the history (and the
         * reward's cost) stays as long as the measured sessions' */
        if (l->o.load_same)
            snprintf(sess, sizeof sess, "bench-%u", k % l->o.n_sessions);
        else
            snprintf(sess, sizeof sess, "bench-load-%u", k / 40);
        if (cl && observe(cl, &l->o, sess, &rng, &err) == BG_OK)
            l->calls++;
        sleep_ms(l->o.load_ms);
    }
    if (cl)
        bg_client_destroy(cl);
    return NULL;
}

bs_load *bs_load_start(const bs_opts *o)
{
    bs_load *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->o = *o;
    atomic_init(&l->stop, 0);
    if (pthread_create(&l->th, NULL, load_main, l) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

uint64_t bs_load_stop(bs_load *l)
{
    if (!l)
        return 0;
    atomic_store(&l->stop, 1);
    pthread_join(l->th, NULL);
    uint64_t n = l->calls;
    free(l);
    return n;
}
