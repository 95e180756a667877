/*
 * bandit_env.c — the exploding-bandit environment and the bench's random
 * numbers (see bandit.h). The environment is the paper's: 10 arms with
 * uniform {0,1}^10 features, uniform w* ∈ {0,1}^10, reward ~ N(x·w*, 1),
 * θ = the largest true arm mean (`max-arm`) or the fixed rounded average
 * of that maximum (`fixed`, 4.0 for these sizes).
 */
#include <math.h>
#include <stdio.h>

#include "bandit.h"

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bb_rng_seed(bb_rng *r, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = a;
    x = splitmix(&x) ^ b;
    x = splitmix(&x) ^ c;
    r->s = splitmix(&x);
}

double bb_uniform(bb_rng *r)
{
    return (double)(splitmix(&r->s) >> 11) * (1.0 / 9007199254740992.0);
}

double bb_normal(bb_rng *r)
{
    double u = bb_uniform(r), v = bb_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

static void draw(bb_env *env, bb_rng *r)
{
    env->truth = 0;
    int w[BB_D];
    for (int k = 0; k < BB_D; k++) {
        w[k] = bb_uniform(r) < 0.5;
        env->truth |= (unsigned)w[k] << (BB_D - 1 - k);
    }
    for (int a = 0; a < BB_ARMS; a++) {
        env->mean[a] = 0;
        for (int k = 0; k < BB_D; k++) {
            env->x[a][k] = bb_uniform(r) < 0.5 ? 1.0 : 0.0;
            env->mean[a] += env->x[a][k] * w[k];
        }
    }
}

double bb_fixed_theta(uint64_t seed)
{
    bb_env env;
    bb_rng r;
    bb_rng_seed(&r, seed, 0xf1edull, 0);
    double s = 0;
    for (int i = 0; i < 100; i++) {
        draw(&env, &r);
        double m = env.mean[0];
        for (int a = 1; a < BB_ARMS; a++)
            if (env.mean[a] > m)
                m = env.mean[a];
        s += m;
    }
    return round(s / 100.0);
}

void bb_env_make(bb_env *env, uint64_t seed, uint64_t episode, bb_theta_mode mode,
                 double fixed_theta)
{
    bb_rng r;
    bb_rng_seed(&r, seed, 0xe4u, episode);
    draw(env, &r);
    if (mode == BB_THETA_FIXED) {
        env->theta = fixed_theta;
    } else {
        env->theta = env->mean[0];
        for (int a = 1; a < BB_ARMS; a++)
            if (env->mean[a] > env->theta)
                env->theta = env->mean[a];
    }
    snprintf(env->model_cfg, sizeof env->model_cfg, "{features: %d, sigma: %g, theta: %.17g}", BB_D,
             BB_SIGMA, env->theta);
}

double bb_true_harm(const bb_env *env, int a)
{
    return 0.5 * erfc((env->theta - env->mean[a]) / (BB_SIGMA * M_SQRT2));
}
