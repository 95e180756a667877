/*
 * gfn_space.c — the GFlowNet state space over sets of d ≤ 64 features:
 * what a state is, which actions are valid in it, how it is fed to the
 * policy network, and the masked log-softmax over its actions.
 *
 * The space is a tree: features are added in strictly increasing index
 * order, so the set alone determines the path (its t-th state is the set
 * of its t smallest features). Actions at a state with largest index j:
 * "add k" (action k) for j < k < d, and ⊤ (action d).
 *
 * Length masks: ⊤ is invalid while len < min_len; at len == max_len only ⊤
 * is valid; "add k" is also invalid when too few indices above k remain to
 * reach min_len — so every reachable state has a valid action and every
 * trajectory ends at a hypothesis the masks allow.
 *
 * Threads: pure functions.
 */
#include <math.h>
#include <string.h>

#include "gfn_priv.h"

uint32_t bg__gfn_n_in(uint32_t d)
{
    return d + (d + 1) + 1;
}

void bg__gfn_encode(uint32_t d, const bg__gfn_state *s, double *x)
{
    memset(x, 0, bg__gfn_n_in(d) * sizeof(double));
    for (uint32_t k = 0; k < d; k++)
        if (s->bits >> k & 1)
            x[k] = 1.0;
    x[d + (uint32_t)(s->last + 1)] = 1.0;
    x[2 * d + 1] = (double)s->len / d;
}

uint32_t bg__gfn_valid(const bg_gfn_config *c, const bg__gfn_state *s, unsigned char *valid)
{
    uint32_t d = c->n_bits, n = 0;
    for (uint32_t k = 0; k < d; k++) {
        int ok = (int32_t)k > s->last && s->len + 1 <= c->max_len &&
                 s->len + 1 + (d - 1 - k) >= c->min_len;
        valid[k] = (unsigned char)ok;
        n += (uint32_t)ok;
    }
    valid[d] = (unsigned char)(s->len >= c->min_len);
    return n + valid[d];
}

void bg__gfn_log_softmax(uint32_t n, const double *z, const unsigned char *valid, double *logp)
{
    double mx = -INFINITY;
    for (uint32_t i = 0; i < n; i++)
        if (valid[i] && z[i] > mx)
            mx = z[i];
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        if (valid[i])
            s += exp(z[i] - mx);
    double lse = mx + log(s);
    for (uint32_t i = 0; i < n; i++)
        logp[i] = valid[i] ? z[i] - lse : -INFINITY;
}

bg__gfn_state bg__gfn_prefix(uint64_t id, uint32_t t)
{
    bg__gfn_state s = {0, -1, 0};
    while (s.len < t && id) {
        int k = __builtin_ctzll(id);
        s.bits |= 1ULL << k;
        s.last = k;
        s.len++;
        id &= id - 1;
    }
    return s;
}

int bg__gfn_id_ok(const bg_gfn_config *c, uint64_t id)
{
    if (c->n_bits < 64 && id >> c->n_bits)
        return 0;
    uint32_t len = (uint32_t)__builtin_popcountll(id);
    return len >= c->min_len && len <= c->max_len;
}
