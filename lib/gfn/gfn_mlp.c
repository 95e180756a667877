/*
 * gfn_mlp.c — the GFlowNet policy network: a multi-layer perceptron with
 * GELU hidden layers, forward and backward written out by hand, and the
 * Adam optimiser over the instance's parameter vector.
 *
 * Why by hand: the daemon has no autodiff and the plugin may link nothing
 * but libc/libm. The network is small (a few hidden layers of ~100 units),
 * so plain row-major loops whose inner loop is contiguous (a dot product in
 * forward, an axpy in backward) are fast enough and easy to check: the
 * tests compare every gradient with central finite differences. The
 * forward's dot products run in tiles of several rows and outputs (affine:
 * the same sums in the same order, bit for bit, ~4× faster; they were half
 * of a training round's CPU).
 *
 * Shapes: x [rows × size[0]]; layer l maps [rows × size[l]] to
 * [rows × size[l+1]] with W_l [size[l+1] × size[l]] and b_l [size[l+1]].
 * The cache holds, for every hidden layer, the pre-activation z_l and the
 * activation a_l = gelu(z_l), each a block of rows × size[l+1] doubles.
 *
 * Threads: pure functions of their arguments; safe to call concurrently
 * on distinct output buffers.
 */
#include <math.h>
#include <string.h>

#include "gfn_priv.h"

#define GELU_C 0.7978845608028654 /* sqrt(2/pi) */
#define GELU_A 0.044715

static double gelu(double x)
{
    double u = GELU_C * (x + GELU_A * x * x * x);
    return 0.5 * x * (1.0 + tanh(u));
}

static double gelu_grad(double x)
{
    double u = GELU_C * (x + GELU_A * x * x * x);
    double t = tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
}

void bg__gfn_mlp_init(bg__gfn_mlp *m, uint32_t n_in, uint32_t hidden, uint32_t n_hidden,
                      uint32_t n_out)
{
    memset(m, 0, sizeof *m);
    m->n_layers = n_hidden + 1;
    m->size[0] = n_in;
    for (uint32_t l = 1; l <= n_hidden; l++)
        m->size[l] = hidden;
    m->size[m->n_layers] = n_out;
    size_t off = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        m->w_off[l] = off;
        off += (size_t)m->size[l + 1] * m->size[l];
        m->b_off[l] = off;
        off += m->size[l + 1];
        if (l + 1 < m->n_layers)
            m->cache_per_row += 2 * (size_t)m->size[l + 1];
    }
    m->n_params = off;
}

size_t bg__gfn_mlp_max_width(const bg__gfn_mlp *m)
{
    size_t w = 0;
    for (uint32_t l = 0; l <= m->n_layers; l++)
        if (m->size[l] > w)
            w = m->size[l];
    return w;
}

void bg__gfn_mlp_init_params(const bg__gfn_mlp *m, double *params, bg_rng *rng)
{
    for (uint32_t l = 0; l < m->n_layers; l++) {
        size_t n_w = (size_t)m->size[l + 1] * m->size[l];
        double scale = sqrt(3.0 / m->size[l]); /* variance 1/fan_in */
        if (l + 1 == m->n_layers)
            scale *= 0.1; /* near-uniform first policy */
        for (size_t i = 0; i < n_w; i++)
            params[m->w_off[l] + i] = scale * (2.0 * bg_gfn_rng_uniform(rng) - 1.0);
        memset(params + m->b_off[l], 0, m->size[l + 1] * sizeof(double));
    }
}

/* Offset (in doubles) of hidden layer l's z block in a cache of `rows` rows;
 * its a block follows at + rows * size[l+1]. */
static size_t cache_off(const bg__gfn_mlp *m, size_t rows, uint32_t l)
{
    size_t off = 0;
    for (uint32_t k = 0; k < l; k++)
        off += 2 * rows * m->size[k + 1];
    return off;
}

/* y [rows × n_out] = in [rows × n_in] · Wᵀ + b.
 *
 * Each y[r][o] is b[o] + w[o][0]·x[r][0] + w[o][1]·x[r][1] + ... summed in
 * that order, one rounding per product and per add — the plain dot
 * product's arithmetic, so the results are bit for bit the plain loop's
 * (tests/gfn/test_gfn_mlp_tiles.c). What changes is the schedule: the
 * plain loop is one chain of dependent adds per output (an add waits for
 * the previous one: ~3 cycles per term on Zen 3, most of a training step's
 * CPU, docs/GFLOWNET.md "Training cost per observation"); here a tile of 4
 * rows × 2 outputs keeps 8 independent chains in flight, each weight and
 * input loaded once per tile instead of once per chain. Tails: rows past
 * the last full tile by 1 row × 4 outputs, then 1 × 1. */
static void affine(size_t rows, uint32_t n_in, uint32_t n_out, const double *w, const double *b,
                   const double *in, double *y)
{
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const double *x0 = in + r * n_in, *x1 = x0 + n_in, *x2 = x1 + n_in, *x3 = x2 + n_in;
        double *y0 = y + r * n_out, *y1 = y0 + n_out, *y2 = y1 + n_out, *y3 = y2 + n_out;
        uint32_t o = 0;
        for (; o + 2 <= n_out; o += 2) {
            const double *wa = w + (size_t)o * n_in, *wb = wa + n_in;
            double a0 = b[o], a1 = b[o], a2 = b[o], a3 = b[o];
            double c0 = b[o + 1], c1 = b[o + 1], c2 = b[o + 1], c3 = b[o + 1];
            for (uint32_t i = 0; i < n_in; i++) {
                double u = wa[i], v = wb[i];
                a0 += u * x0[i];
                a1 += u * x1[i];
                a2 += u * x2[i];
                a3 += u * x3[i];
                c0 += v * x0[i];
                c1 += v * x1[i];
                c2 += v * x2[i];
                c3 += v * x3[i];
            }
            y0[o] = a0, y1[o] = a1, y2[o] = a2, y3[o] = a3;
            y0[o + 1] = c0, y1[o + 1] = c1, y2[o + 1] = c2, y3[o + 1] = c3;
        }
        for (; o < n_out; o++) {
            const double *wo = w + (size_t)o * n_in;
            double a0 = b[o], a1 = b[o], a2 = b[o], a3 = b[o];
            for (uint32_t i = 0; i < n_in; i++) {
                double u = wo[i];
                a0 += u * x0[i];
                a1 += u * x1[i];
                a2 += u * x2[i];
                a3 += u * x3[i];
            }
            y0[o] = a0, y1[o] = a1, y2[o] = a2, y3[o] = a3;
        }
    }
    for (; r < rows; r++) {
        const double *xr = in + r * n_in;
        double *yr = y + r * n_out;
        uint32_t o = 0;
        for (; o + 4 <= n_out; o += 4) {
            const double *w0 = w + (size_t)o * n_in, *w1 = w0 + n_in, *w2 = w1 + n_in,
                         *w3 = w2 + n_in;
            double a0 = b[o], a1 = b[o + 1], a2 = b[o + 2], a3 = b[o + 3];
            for (uint32_t i = 0; i < n_in; i++) {
                double x = xr[i];
                a0 += w0[i] * x;
                a1 += w1[i] * x;
                a2 += w2[i] * x;
                a3 += w3[i] * x;
            }
            yr[o] = a0, yr[o + 1] = a1, yr[o + 2] = a2, yr[o + 3] = a3;
        }
        for (; o < n_out; o++) {
            const double *wo = w + (size_t)o * n_in;
            double s = b[o];
            for (uint32_t i = 0; i < n_in; i++)
                s += wo[i] * xr[i];
            yr[o] = s;
        }
    }
}

void bg__gfn_mlp_forward(const bg__gfn_mlp *m, const double *params, size_t rows, const double *x,
                         double *cache, double *out)
{
    const double *in = x;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        uint32_t n_in = m->size[l], n_out = m->size[l + 1];
        const double *w = params + m->w_off[l], *b = params + m->b_off[l];
        if (l + 1 == m->n_layers) {
            /* output layer: logits, no activation */
            affine(rows, n_in, n_out, w, b, in, out);
            break;
        }
        /* hidden layer: z = in·Wᵀ + b, a = gelu(z) */
        double *z = cache + cache_off(m, rows, l);
        double *a = z + rows * n_out;
        affine(rows, n_in, n_out, w, b, in, z);
        for (size_t i = 0; i < rows * n_out; i++)
            a[i] = gelu(z[i]);
        in = a;
    }
}

/* y[·] += c·x[·]: one row of either gradient, as the plain loop adds it. */
static inline void axpy(double *y, double c, const double *x, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        y[i] += c * x[i];
}

/* gw[o][·] += Σ_r dz[r][o]·in[r][·] and gb[o] += Σ_r dz[r][o], rows
 * ascending, a zero dz[r][o] skipped (adding its +0·in could turn a -0.0
 * sum into +0.0, or add a NaN where in is infinite): the plain loop's
 * arithmetic, bit for bit. Scheduled 4 rows at a time per output, so that
 * each gw row is loaded and stored once per 4 rows instead of once per
 * row (gw is a [n_out × n_in] block that does not fit in L1: the plain
 * loop streamed it through once per row). A tile with a zero dz falls
 * back to the rows one by one, in order. */
static void grad_w(size_t rows, uint32_t n_in, uint32_t n_out, const double *dz, const double *in,
                   double *gw, double *gb)
{
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const double *in0 = in + r * n_in, *in1 = in0 + n_in, *in2 = in1 + n_in, *in3 = in2 + n_in;
        const double *dz0 = dz + r * n_out;
        for (uint32_t o = 0; o < n_out; o++) {
            double c[4] = {dz0[o], dz0[n_out + o], dz0[2 * (size_t)n_out + o],
                           dz0[3 * (size_t)n_out + o]};
            double *gwo = gw + (size_t)o * n_in;
            if (c[0] != 0.0 && c[1] != 0.0 && c[2] != 0.0 && c[3] != 0.0) {
                for (uint32_t i = 0; i < n_in; i++) {
                    double g = gwo[i];
                    g += c[0] * in0[i];
                    g += c[1] * in1[i];
                    g += c[2] * in2[i];
                    g += c[3] * in3[i];
                    gwo[i] = g;
                }
                gb[o] += c[0];
                gb[o] += c[1];
                gb[o] += c[2];
                gb[o] += c[3];
                continue;
            }
            for (int k = 0; k < 4; k++) {
                if (c[k] == 0.0)
                    continue;
                axpy(gwo, c[k], in0 + (size_t)k * n_in, n_in);
                gb[o] += c[k];
            }
        }
    }
    for (; r < rows; r++) {
        const double *dzr = dz + r * n_out, *inr = in + r * n_in;
        for (uint32_t o = 0; o < n_out; o++) {
            double c = dzr[o];
            if (c == 0.0)
                continue;
            axpy(gw + (size_t)o * n_in, c, inr, n_in);
            gb[o] += c;
        }
    }
}

/* din[r][·] = Σ_o dz[r][o]·w[o][·] (o ascending, a zero dz[r][o]
 * skipped, as in grad_w), each row then times gelu'(z_prev[r][·]): the
 * plain loop's arithmetic, bit for bit, 4 rows at a time so that each w
 * row is loaded once per 4 rows. */
static void grad_in(size_t rows, uint32_t n_in, uint32_t n_out, const double *dz, const double *w,
                    const double *z_prev, double *din)
{
    memset(din, 0, rows * n_in * sizeof(double));
    size_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        double *d0 = din + r * n_in, *d1 = d0 + n_in, *d2 = d1 + n_in, *d3 = d2 + n_in;
        const double *dz0 = dz + r * n_out;
        for (uint32_t o = 0; o < n_out; o++) {
            double c[4] = {dz0[o], dz0[n_out + o], dz0[2 * (size_t)n_out + o],
                           dz0[3 * (size_t)n_out + o]};
            const double *wo = w + (size_t)o * n_in;
            if (c[0] != 0.0 && c[1] != 0.0 && c[2] != 0.0 && c[3] != 0.0) {
                for (uint32_t i = 0; i < n_in; i++) {
                    double v = wo[i];
                    d0[i] += c[0] * v;
                    d1[i] += c[1] * v;
                    d2[i] += c[2] * v;
                    d3[i] += c[3] * v;
                }
                continue;
            }
            for (int k = 0; k < 4; k++)
                if (c[k] != 0.0)
                    axpy(d0 + (size_t)k * n_in, c[k], wo, n_in);
        }
    }
    for (; r < rows; r++) {
        const double *dzr = dz + r * n_out;
        double *dr = din + r * n_in;
        for (uint32_t o = 0; o < n_out; o++) {
            if (dzr[o] != 0.0)
                axpy(dr, dzr[o], w + (size_t)o * n_in, n_in);
        }
    }
    for (size_t k = 0; k < rows * n_in; k++)
        din[k] *= gelu_grad(z_prev[k]);
}

void bg__gfn_mlp_backward(const bg__gfn_mlp *m, const double *params, size_t rows, const double *x,
                          const double *cache, const double *dout, double *grad, double *scratch)
{
    size_t width = bg__gfn_mlp_max_width(m);
    double *dz_buf[2] = {scratch, scratch + rows * width};
    const double *dz = dout;
    for (uint32_t l = m->n_layers; l-- > 0;) {
        uint32_t n_in = m->size[l], n_out = m->size[l + 1];
        const double *w = params + m->w_off[l];
        double *gw = grad + m->w_off[l], *gb = grad + m->b_off[l];
        const double *in = l == 0 ? x : cache + cache_off(m, rows, l - 1) + rows * n_in;
        /* dW += dzᵀ · in ; db += Σ_rows dz */
        grad_w(rows, n_in, n_out, dz, in, gw, gb);
        if (l == 0)
            break;
        /* d in = dz · W, then through the GELU of the layer below */
        double *din = dz_buf[l & 1];
        grad_in(rows, n_in, n_out, dz, w, cache + cache_off(m, rows, l - 1), din);
        dz = din;
    }
}

void bg__gfn_adam_step(bg_gfn *g, double *grad, uint64_t t)
{
    const bg_gfn_config *c = &g->cfg;
    size_t n = g->n_params;
    if (c->grad_clip > 0) {
        double ss = 0;
        for (size_t i = 0; i < n; i++)
            ss += grad[i] * grad[i];
        double norm = sqrt(ss);
        if (norm > c->grad_clip) {
            double s = c->grad_clip / norm;
            for (size_t i = 0; i < n; i++)
                grad[i] *= s;
        }
    }
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    double f = 1.0;
    if (c->lr_horizon > 0) {
        /* steps into the current schedule (restarted by bg_gfn_train_at) */
        uint64_t u = t - 1 - g->stats.sched_start;
        double x = u < c->lr_horizon ? (double)u / c->lr_horizon : 1.0;
        f = 1.0 + (c->lr_end / c->lr - 1.0) * x;
    }
    for (size_t i = 0; i < n; i++) {
        double lr = f * (i + 1 == n ? c->lr_logz : c->lr);
        g->adam_m[i] = c->beta1 * g->adam_m[i] + (1.0 - c->beta1) * grad[i];
        g->adam_v[i] = c->beta2 * g->adam_v[i] + (1.0 - c->beta2) * grad[i] * grad[i];
        double mh = g->adam_m[i] / bc1, vh = g->adam_v[i] / bc2;
        g->params[i] -= lr * mh / (sqrt(vh) + c->adam_eps);
    }
}
