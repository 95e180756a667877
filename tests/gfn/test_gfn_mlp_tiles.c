/*
 * test_gfn_mlp_tiles.c — the MLP's tiled loops (gfn_mlp.c) give bit for
 * bit the plain loops' results, so the tiled schedule changes no sampler's
 * training, draw or verdict:
 *   - forward (affine: tiles of 4 rows × 2 outputs, then 1 × 4 and 1 × 1
 *     tails): for every layer l and row r, z_l[r][o] == b[o] +
 *     w[o][0]·in[r][0] + w[o][1]·in[r][1] + ... summed in that order (in =
 *     x for the first layer, the cache's activation of the layer below for
 *     the others, the logits for the output layer);
 *   - backward (grad_w, grad_in: 4 rows at a time, a tile with a zero dz
 *     row by row): the gradient equals the plain loop's (below, the code
 *     before the tiles) — every weight's and bias's sum over rows in row
 *     order, every input gradient's over outputs in output order, zero dz
 *     skipped — starting from a gradient that holds -0.0, +0.0 and
 *     values, with a quarter of dout exactly 0.
 *
 * Shapes: rows 1..9, 16 and 33, inputs 1, 3, 8 and 67, hidden widths 1, 2,
 * 3, 5 and 9, outputs 1..6, one or two hidden layers: every tile and tail
 * combination. Values: inputs and weights of magnitudes 2^-20..2^20 with
 * both signs, some inputs exactly 0 or 1 (the state encoding's), so that a
 * change of summation order changes low bits (checked once each: summing
 * the inputs of a forward tile backwards, one accumulator starting from
 * the wrong bias, adding a zero dz's term in grad_w instead of skipping it
 * (a -0.0 gradient becomes +0.0), and swapping two rows' order in a
 * grad_in tile each made this fail). Compared with memcmp, no tolerance.
 * Under a second.
 */
#include <string.h>

#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"

/* A double of random sign and magnitude 2^-20..2^20; exactly 0 or 1 a
 * sixth of the time each when enc. */
static double value(bg_rng *r, int enc)
{
    uint64_t u = bg_gfn_rng_u64(r);
    if (enc && u % 6 == 0)
        return 0.0;
    if (enc && u % 6 == 1)
        return 1.0;
    double m = 1.0 + bg_gfn_rng_uniform(r);
    int e = (int)((u >> 8) % 41) - 20;
    return ((u >> 60) & 1 ? -1.0 : 1.0) * ldexp(m, e);
}

/* The plain loop: y[r][o] = b[o] + Σ_i w[o][i]·in[r][i], i ascending. */
static void ref_affine(size_t rows, uint32_t n_in, uint32_t n_out, const double *w, const double *b,
                       const double *in, double *y)
{
    for (size_t r = 0; r < rows; r++)
        for (uint32_t o = 0; o < n_out; o++) {
            double s = b[o];
            for (uint32_t i = 0; i < n_in; i++)
                s += w[(size_t)o * n_in + i] * in[r * n_in + i];
            y[r * n_out + o] = s;
        }
}

/* The backward as it was before the tiles (gfn_mlp.c, 2026-12-06), with
 * the same gelu'. */
static double ref_gelu_grad(double x)
{
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    double t = tanh(u);
    return 0.5 * (1.0 + t) +
           0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

static size_t ref_cache_off(const bg__gfn_mlp *m, size_t rows, uint32_t l)
{
    size_t off = 0;
    for (uint32_t k = 0; k < l; k++)
        off += 2 * rows * m->size[k + 1];
    return off;
}

static void ref_backward(const bg__gfn_mlp *m, const double *params, size_t rows, const double *x,
                         const double *cache, const double *dout, double *grad, double *scratch)
{
    size_t width = bg__gfn_mlp_max_width(m);
    double *dz_buf[2] = {scratch, scratch + rows * width};
    const double *dz = dout;
    for (uint32_t l = m->n_layers; l-- > 0;) {
        uint32_t n_in = m->size[l], n_out = m->size[l + 1];
        const double *w = params + m->w_off[l];
        double *gw = grad + m->w_off[l], *gb = grad + m->b_off[l];
        const double *in = l == 0 ? x : cache + ref_cache_off(m, rows, l - 1) + rows * n_in;
        for (size_t r = 0; r < rows; r++) {
            const double *dzr = dz + r * n_out, *inr = in + r * n_in;
            for (uint32_t o = 0; o < n_out; o++) {
                double c = dzr[o];
                if (c == 0.0)
                    continue;
                double *gwo = gw + (size_t)o * n_in;
                for (uint32_t i = 0; i < n_in; i++)
                    gwo[i] += c * inr[i];
                gb[o] += c;
            }
        }
        if (l == 0)
            break;
        double *din = dz_buf[l & 1];
        const double *z_prev = cache + ref_cache_off(m, rows, l - 1);
        memset(din, 0, rows * n_in * sizeof(double));
        for (size_t r = 0; r < rows; r++) {
            const double *dzr = dz + r * n_out;
            double *dr = din + r * n_in;
            for (uint32_t o = 0; o < n_out; o++) {
                double c = dzr[o];
                if (c == 0.0)
                    continue;
                const double *wo = w + (size_t)o * n_in;
                for (uint32_t i = 0; i < n_in; i++)
                    dr[i] += c * wo[i];
            }
            const double *zr = z_prev + r * n_in;
            for (uint32_t i = 0; i < n_in; i++)
                dr[i] *= ref_gelu_grad(zr[i]);
        }
        dz = din;
    }
}

static size_t g_checked, g_grads;

static void check_shape(bg_rng *rng, size_t rows, uint32_t n_in, uint32_t hidden, uint32_t n_hidden,
                        uint32_t n_out)
{
    bg__gfn_mlp m;
    bg__gfn_mlp_init(&m, n_in, hidden, n_hidden, n_out);
    double *p = malloc(m.n_params * sizeof *p);
    double *x = malloc(rows * n_in * sizeof *x);
    double *cache = malloc(rows * m.cache_per_row * sizeof *cache);
    double *out = malloc(rows * n_out * sizeof *out);
    size_t wmax = bg__gfn_mlp_max_width(&m);
    double *ref = malloc(rows * wmax * sizeof *ref);
    CHECK(p && x && cache && out && ref, "out of memory");
    for (size_t i = 0; i < m.n_params; i++)
        p[i] = value(rng, 0);
    for (size_t i = 0; i < rows * n_in; i++)
        x[i] = value(rng, 1);
    bg__gfn_mlp_forward(&m, p, rows, x, cache, out);
    const double *in = x;
    size_t off = 0;
    for (uint32_t l = 0; l < m.n_layers; l++) {
        uint32_t ni = m.size[l], no = m.size[l + 1];
        ref_affine(rows, ni, no, p + m.w_off[l], p + m.b_off[l], in, ref);
        const double *got = l + 1 == m.n_layers ? out : cache + off;
        for (size_t k = 0; k < rows * no; k++)
            CHECK(!memcmp(&got[k], &ref[k], sizeof(double)),
                  "rows %zu, in %u, hidden %u x %u, out %u: layer %u, row %zu, output %zu: "
                  "%.17g, the plain loop %.17g",
                  rows, n_in, n_hidden, hidden, n_out, l, k / no, k % no, got[k], ref[k]);
        g_checked += rows * no;
        in = cache + off + rows * no; /* the activation of this layer */
        off += 2 * rows * no;
    }
    /* backward from dout (a quarter exactly 0) into a gradient holding
     * -0.0, +0.0 and values */
    double *dout = malloc(rows * n_out * sizeof *dout);
    double *g1 = malloc(m.n_params * sizeof *g1), *g2 = malloc(m.n_params * sizeof *g2);
    double *s1 = malloc(2 * rows * wmax * sizeof *s1), *s2 = malloc(2 * rows * wmax * sizeof *s2);
    CHECK(dout && g1 && g2 && s1 && s2, "out of memory");
    for (size_t i = 0; i < rows * n_out; i++)
        dout[i] = bg_gfn_rng_u64(rng) % 4 == 0 ? 0.0 : value(rng, 0);
    for (size_t i = 0; i < m.n_params; i++) {
        uint64_t u = bg_gfn_rng_u64(rng) % 3;
        g1[i] = u == 0 ? -0.0 : u == 1 ? 0.0 : value(rng, 0);
        g2[i] = g1[i];
    }
    bg__gfn_mlp_backward(&m, p, rows, x, cache, dout, g1, s1);
    ref_backward(&m, p, rows, x, cache, dout, g2, s2);
    for (size_t i = 0; i < m.n_params; i++)
        CHECK(!memcmp(&g1[i], &g2[i], sizeof(double)),
              "rows %zu, in %u, hidden %u x %u, out %u: gradient %zu: %.17g, the plain loop %.17g",
              rows, n_in, n_hidden, hidden, n_out, i, g1[i], g2[i]);
    g_grads += m.n_params;
    free(dout);
    free(g1);
    free(g2);
    free(s1);
    free(s2);
    free(p);
    free(x);
    free(cache);
    free(out);
    free(ref);
}

int main(void)
{
    static const size_t rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 33};
    static const uint32_t ins[] = {1, 3, 8, 67};
    static const uint32_t hid[] = {1, 2, 3, 5, 9};
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 20261207);
    for (size_t a = 0; a < sizeof rows / sizeof *rows; a++)
        for (size_t b = 0; b < sizeof ins / sizeof *ins; b++)
            for (size_t c = 0; c < sizeof hid / sizeof *hid; c++)
                for (uint32_t n_out = 1; n_out <= 6; n_out++)
                    check_shape(&rng, rows[a], ins[b], hid[c], 1 + (n_out & 1), n_out);
    /* the plugin's shape at d = 32: 66 inputs, 2 × 128 hidden, 33 outputs, 16 × 33 rows */
    check_shape(&rng, 16 * 33, 2 * 32 + 2, 128, 2, 33);
    printf("test_gfn_mlp_tiles: %zu outputs and %zu gradients bit-equal to the plain loops\n",
           g_checked, g_grads);
    return 0;
}
