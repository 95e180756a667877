/*
 * test_gfn_mlp_affine.c — the MLP forward's affine layers (gfn_mlp.c
 * affine: tiles of 4 rows × 2 outputs, then 1 × 4 and 1 × 1 tails) give
 * bit for bit the plain dot product's results: for every layer l and row r,
 * z_l[r][o] == b[o] + w[o][0]·in[r][0] + w[o][1]·in[r][1] + ... summed in
 * that order (in = x for the first layer, the cache's activation of the
 * layer below for the others, the logits for the output layer). So the
 * tiled schedule changes no sampler's training, draw or verdict.
 *
 * Shapes: rows 1..9, 16 and 33, inputs 1, 3, 8 and 67, hidden widths 1, 2,
 * 3, 5 and 9, outputs 1..6, one or two hidden layers: every tile and tail
 * combination. Values: inputs and weights of magnitudes 2^-20..2^20 with
 * both signs, some inputs exactly 0 or 1 (the state encoding's), so that a
 * change of summation order changes low bits (checked once: summing the
 * inputs of a 4-row tile backwards made this fail). Compared with memcmp,
 * no tolerance. Under a second.
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

static size_t g_checked;

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
    printf("test_gfn_mlp_affine: %zu outputs bit-equal to the plain loop\n", g_checked);
    return 0;
}
