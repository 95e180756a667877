/*
 * bench_sampled.h — what bench_rpc needs to measure a sampled policy
 * (bench_sampled.c): blocking unary calls on a channel of their own, the
 * observations that give each bench session a posterior to sample, the
 * wait until the sampler has trained on them (the verdict's SamplerHealth
 * says so), and a thread that keeps the daemon's trainer busy while
 * Evaluate is measured.
 *
 * Threads: bs_prime and bs_wait_trained run on the caller's thread; the
 * load runs on its own thread between bs_load_start and bs_load_stop, with
 * its own client.
 */
#ifndef BENCH_SAMPLED_H
#define BENCH_SAMPLED_H

#include <stdint.h>

typedef struct bs_opts {
    const char *addr;      /* plain TCP (the CLI's client) */
    const char *tool;      /* the sampled policy's tool */
    unsigned features;     /* its model's d */
    unsigned observations; /* per bench session, before measuring */
    unsigned n_sessions;   /* bench-0 .. bench-(n-1) */
    uint64_t seed;         /* w* and the arms */
    int load_same;         /* the load observes the bench sessions themselves */
    unsigned load_ms;      /* between the load's Observe calls */
} bs_opts;

/* Send opts->observations Observe calls to every bench session, one at a
 * time. 0, or -1 with a message on stderr. */
int bs_prime(const bs_opts *o);

/* Poll a sampled Evaluate of every bench session until its verdict says
 * version_lag 0 and train_steps >= min_steps, the same over three polls
 * 0.3 s apart (its trainer is idle: timeout_s at most); print session 0's
 * health. 0, or -1 with a message. */
int bs_wait_trained(const bs_opts *o, unsigned min_steps, double timeout_s);

/* The training load: an Observe every load_ms on sessions of its own
 * (bench-load-k, 40 observations each), or with load_same round-robin on
 * the bench sessions themselves (their samplers train, and each
 * observation makes the next Evaluate draw again). */
typedef struct bs_load bs_load;
bs_load *bs_load_start(const bs_opts *o);
/* Stop and join; returns the Observe calls it made. */
uint64_t bs_load_stop(bs_load *l);

#endif
