/*
 * test_lmgfn_loss.c — the LM GFlowNet's objectives (lib/lmgfn/lmgfn_loss.c)
 * against their formulas written out literally (docs/GFLOWNET.md, "LM
 * GFlowNet"), and their gradients against central finite differences.
 *
 * Modified SubTB is written here as the paper's double sum over windows
 * i < j of the explicit per-window residual
 *   log R(s_i⊤) + Σ_{k=i}^{j-1} log q(z_{k+1}|s_k) + log q(⊤|s_j)
 *     - log R(s_j⊤) - log q(⊤|s_i),
 * with s_0 anchored by log Z when it may not terminate; TB as its one
 * residual. Random batches (fixed seed) with min_len 0 and 2, λ 1 and 0.7.
 * Tolerance: 1e-9 relative on the loss (double arithmetic, different
 * order), 1e-6 absolute on gradients (central differences, h = 1e-5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bg_test.h"
#include "lmgfn/lmgfn.h"

#define NT 5
#define MAXN 6
#define S (MAXN + 1)

static uint64_t rs = 42;
static double rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

/* the literal SubTB: windows between endpoints (terminable, or s_0 with log Z) */
static double subtb_literal(int nt, const int *len, const double *la, const double *ls,
                            const double *lr, const unsigned char *term, double lambda, double logz)
{
    double num = 0, den = 0;
    for (int k = 0; k < nt; k++) {
        const double *a = la + k * S, *st = ls + k * S, *r = lr + k * S;
        const unsigned char *tm = term + k * S;
        for (int i = 0; i <= len[k]; i++)
            for (int j = i + 1; j <= len[k]; j++) {
                int ei = tm[i] || i == 0, ej = tm[j];
                if (!ei || !ej)
                    continue;
                double res = 0;
                for (int u = i; u < j; u++)
                    res += a[u];
                res += st[j] - r[j];
                res += tm[i] ? r[i] - st[i] : logz; /* F_0 = log Z */
                num += pow(lambda, j - i - 1) * res * res;
                den += pow(lambda, j - i - 1);
            }
    }
    return den > 0 ? num / den : 0;
}

static double tb_literal(int nt, const int *len, const double *la, const double *ls,
                         const double *lr, double logz)
{
    double L = 0;
    for (int k = 0; k < nt; k++) {
        double res = logz + ls[k * S + len[k]] - lr[k * S + len[k]];
        for (int u = 0; u < len[k]; u++)
            res += la[k * S + u];
        L += res * res / nt;
    }
    return L;
}

static void check_case(int min_len, double lambda, int tb)
{
    int len[NT], off[NT];
    double la[NT * S], ls[NT * S], lr[NT * S], ga[NT * S], gs[NT * S], gz;
    unsigned char term[NT * S];
    double logz = 0.3;
    for (int k = 0; k < NT; k++) {
        len[k] = min_len + (int)(rnd() * (MAXN - min_len + 1));
        if (len[k] > MAXN)
            len[k] = MAXN;
        off[k] = k * S;
        for (int i = 0; i < S; i++) {
            la[k * S + i] = -3 * rnd();
            ls[k * S + i] = -2 * rnd();
            lr[k * S + i] = -5 * rnd();
            term[k * S + i] = i >= min_len;
        }
    }
    bg_lmgfn_batch b = {.n_traj = NT,
                        .len = len,
                        .off = off,
                        .lq_add = la,
                        .lq_stop = ls,
                        .logr = lr,
                        .term = term};
    double L = tb ? bg_lmgfn_loss_tb(&b, logz, ga, gs, &gz)
                  : bg_lmgfn_loss_subtb(&b, lambda, logz, ga, gs, &gz);
    double Lref = tb ? tb_literal(NT, len, la, ls, lr, logz)
                     : subtb_literal(NT, len, la, ls, lr, term, lambda, logz);
    printf("%s min_len %d lambda %.1f: loss %.12f literal %.12f\n", tb ? "TB" : "SubTB", min_len,
           lambda, L, Lref);
    CHECK(fabs(L - Lref) <= 1e-9 * fabs(Lref) + 1e-12, "loss %.15g vs literal %.15g", L, Lref);
    const double h = 1e-5;
    double maxerr = 0;
    for (int k = 0; k < NT; k++)
        for (int i = 0; i <= len[k]; i++)
            for (int which = 0; which < 2; which++) {
                if (which == 0 && i == len[k])
                    continue;
                double *x = which ? &ls[k * S + i] : &la[k * S + i], x0 = *x;
                *x = x0 + h;
                double lp = tb ? tb_literal(NT, len, la, ls, lr, logz)
                               : subtb_literal(NT, len, la, ls, lr, term, lambda, logz);
                *x = x0 - h;
                double lm = tb ? tb_literal(NT, len, la, ls, lr, logz)
                               : subtb_literal(NT, len, la, ls, lr, term, lambda, logz);
                *x = x0;
                double fd = (lp - lm) / (2 * h), an = which ? gs[k * S + i] : ga[k * S + i];
                if (fabs(fd - an) > maxerr)
                    maxerr = fabs(fd - an);
                CHECK(fabs(fd - an) < 1e-6, "traj %d %s[%d]: analytic %.9g, fd %.9g", k,
                      which ? "lq_stop" : "lq_add", i, an, fd);
            }
    double lzp = tb ? tb_literal(NT, len, la, ls, lr, logz + h)
                    : subtb_literal(NT, len, la, ls, lr, term, lambda, logz + h);
    double lzm = tb ? tb_literal(NT, len, la, ls, lr, logz - h)
                    : subtb_literal(NT, len, la, ls, lr, term, lambda, logz - h);
    CHECK(fabs((lzp - lzm) / (2 * h) - gz) < 1e-6, "d/d log Z: analytic %.9g, fd %.9g", gz,
          (lzp - lzm) / (2 * h));
    printf("  max |analytic - fd| over log q: %.2e (tolerance 1e-6)\n", maxerr);
}

int main(void)
{
    check_case(0, 1.0, 0);
    check_case(0, 0.7, 0);
    check_case(2, 1.0, 0);
    check_case(2, 0.7, 0);
    check_case(0, 1.0, 1);
    check_case(2, 1.0, 1);

    /* a policy built to balance the rewards exactly has zero SubTB loss:
     * q(⊤|s_i) = R_i / F_i with F_i = R_i + Σ_children F (one chain here),
     * q(z_{i+1}|s_i) = F_{i+1} / F_i for a single path */
    int len[1] = {4}, off[1] = {0};
    double R[S] = {0.5, 1.0, 0.2, 2.0, 0.7}, F[S], la[S] = {0}, ls[S] = {0}, lr[S];
    double ga[S], gs[S], gz;
    unsigned char term[S] = {1, 1, 1, 1, 1};
    F[4] = R[4];
    for (int i = 3; i >= 0; i--)
        F[i] = R[i] + F[i + 1];
    for (int i = 0; i <= 4; i++) {
        lr[i] = log(R[i]);
        ls[i] = log(R[i] / F[i]);
        if (i < 4)
            la[i] = log(F[i + 1] / F[i]);
    }
    bg_lmgfn_batch b = {
        .n_traj = 1, .len = len, .off = off, .lq_add = la, .lq_stop = ls, .logr = lr, .term = term};
    double L = bg_lmgfn_loss_subtb(&b, 1.0, 0.0, ga, gs, &gz);
    CHECK(L < 1e-20, "balanced chain: SubTB loss %.3g, expected 0", L);
    CHECK_DONE("test_lmgfn_loss");
}
