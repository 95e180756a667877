/*
 * bandit_bench.c — bench/bandit's main: flags, worker threads, progress,
 * tables (mean ± 2 SEM), JSON lines, gnuplot PNGs. See bandit.h.
 *
 *   bench_bandit [--figure 1|2|all] [--episodes N] [--steps 25] [--beta 0.5]
 *                [--theta max-arm|fixed] [--seed S] [--threads T]
 *                [--out DIR] [--plugins DIR] [--micro] [--micro-reps N]
 *
 * --out defaults to <build dir>/bench-out/bandit (ignored by git).
 *
 * Figure 1 cells: C ∈ {0.001, 0.01, 0.1} × guardrails none, cheating,
 * posterior, iid, and non-iid with α ∈ {1e-5, 3e-5, 1e-4, 3e-4, 1e-2,
 * 3e-2, 0.1, 0.3, 1}. Figure 2: α ∈ {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3,
 * 1e-2, 3e-2, 0.1, 0.3, 1}. A cell's episodes are split across threads;
 * each thread has its own engine.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bandit.h"
#include "common/bg_log.h"

static const double FIG1_C[] = {0.001, 0.01, 0.1};
static const double FIG1_ALPHA[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-2, 3e-2, 0.1, 0.3, 1};
static const double FIG2_ALPHA[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1};
#define N_C (sizeof FIG1_C / sizeof FIG1_C[0])
#define N_A1 (sizeof FIG1_ALPHA / sizeof FIG1_ALPHA[0])
#define N_A2 (sizeof FIG2_ALPHA / sizeof FIG2_ALPHA[0])
#define N_CELLS1 (N_C * (4 + N_A1))

typedef struct opts {
    int figure; /* 0 = all */
    long episodes;
    int steps;
    double beta;
    bb_theta_mode theta;
    uint64_t seed;
    int threads;
    const char *out;
    const char *plugins;
    int micro;
    int micro_reps;
} opts;

typedef struct cell1 {
    double C;
    bb_guardrail gr;
    double alpha; /* non-iid only */
    bb_episode1 *ep;
} cell1;

typedef struct job {
    const opts *o;
    bg_plugin_host *host;
    double fixed_theta;
    cell1 *cells; /* figure 1 */
    size_t n_cells;
    double *over;     /* figure 2: [episodes × N_A2] */
    bb_dvec *half;    /* [threads × N_A2] */
    atomic_long next; /* next work item */
    atomic_long done;
    long total;
    atomic_int failed;
    char fail_msg[BG_ERR_MSG_MAX];
    pthread_mutex_t mu;
} job;

typedef struct worker {
    job *j;
    int index;
    int fig;
} worker;

static void fail(job *j, const bg_err *err)
{
    pthread_mutex_lock(&j->mu);
    if (!atomic_exchange(&j->failed, 1))
        snprintf(j->fail_msg, sizeof j->fail_msg, "%s", err->msg);
    pthread_mutex_unlock(&j->mu);
}

static void *work(void *arg)
{
    worker *w = arg;
    job *j = w->j;
    bg_err err;
    bb_ctx c = {.host = j->host, .steps = j->o->steps, .beta = j->o->beta};
    if (bg_engine_create(NULL, &c.engine, &err) != BG_OK) {
        fail(j, &err);
        return NULL;
    }
    long item;
    while (!atomic_load(&j->failed) && (item = atomic_fetch_add(&j->next, 1)) < j->total) {
        long e = item % j->o->episodes;
        bb_env env;
        bb_env_make(&env, j->o->seed, (uint64_t)e, j->o->theta, j->fixed_theta);
        int rc;
        if (w->fig == 1) {
            size_t ci = (size_t)(item / j->o->episodes);
            cell1 *cl = &j->cells[ci];
            rc = bb_run_fig1(&c, &env, cl->gr, cl->C, cl->alpha, j->o->seed, ci, (uint64_t)e,
                             &cl->ep[e], &err);
        } else {
            rc = bb_run_fig2(&c, &env, FIG2_ALPHA, N_A2, j->o->seed, (uint64_t)e,
                             &j->over[(size_t)e * N_A2], &j->half[(size_t)w->index * N_A2], &err);
        }
        if (rc != BG_OK)
            fail(j, &err);
        atomic_fetch_add(&j->done, 1);
    }
    bg_engine_destroy(c.engine);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_pool(job *j, int fig)
{
    int nt = j->o->threads;
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    worker *ws = calloc((size_t)nt, sizeof *ws);
    double t0 = now_s();
    for (int i = 0; i < nt; i++) {
        ws[i] = (worker){j, i, fig};
        pthread_create(&th[i], NULL, work, &ws[i]);
    }
    long last = -1;
    for (;;) {
        long d = atomic_load(&j->done);
        if (d != last) {
            double el = now_s() - t0;
            double eta = d > 0 ? el * (double)(j->total - d) / (double)d : 0;
            fprintf(stderr, "\rfigure %d: %ld/%ld episodes (%.0f%%), %.0f s elapsed, ~%.0f s left ",
                    fig, d, j->total, 100.0 * (double)d / (double)j->total, el, eta);
            last = d;
        }
        if (d >= j->total || atomic_load(&j->failed))
            break;
        usleep(250000);
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "\n");
    free(th);
    free(ws);
    if (atomic_load(&j->failed)) {
        fprintf(stderr, "bench_bandit: %s\n", j->fail_msg);
        return 1;
    }
    return 0;
}

static void mean_2sem(const double *v, size_t n, size_t stride, double *mean, double *e2)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i * stride];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (v[i * stride] - *mean) * (v[i * stride] - *mean);
    *e2 = n > 1 ? 2.0 * sqrt(ss / (double)(n - 1)) / sqrt((double)n) : 0;
}

/* One-sided (1 - gamma) exact Clopper–Pearson upper bound on a rate after
 * f events in n trials: the p with P(Binomial(n, p) <= f) = gamma. For
 * f = 0 it is 1 - gamma^(1/n): 0 deaths in 10,000 episodes -> 2.995e-4 at
 * 95 % (the 3.7e-4 of the two-sided 95 % interval is gamma = 0.025). */
static double cp_upper(long f, long n, double gamma)
{
    if (f >= n)
        return 1.0;
    if (f == 0)
        return -expm1(log(gamma) / (double)n);
    double lo = (double)f / (double)n, hi = 1.0;
    for (int it = 0; it < 100; it++) {
        double p = 0.5 * (lo + hi), cdf = 0;
        for (long k = 0; k <= f; k++)
            cdf += exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma((double)(n - k) + 1.0) +
                       (double)k * log(p) + (double)(n - k) * log1p(-p));
        if (cdf > gamma)
            lo = p;
        else
            hi = p;
    }
    return hi;
}

static const char *theta_name(bb_theta_mode m)
{
    return m == BB_THETA_FIXED ? "fixed" : "max-arm";
}

/* The figure's JSON-lines and gnuplot data files; 1 (reported) on error. */
static int open_outputs(const opts *o, int fig, FILE **jf, FILE **df)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fig%d_%s.jsonl", o->out, fig, theta_name(o->theta));
    *jf = fopen(path, "w");
    if (*jf) {
        snprintf(path, sizeof path, "%s/fig%d_%s.dat", o->out, fig, theta_name(o->theta));
        *df = fopen(path, "w");
    }
    if (*jf && *df)
        return 0;
    fprintf(stderr, "bench_bandit: cannot write %s: %s\n", path, strerror(errno));
    if (*jf)
        fclose(*jf);
    *jf = *df = NULL;
    return 1;
}

/* ------------------------------------------------------------ figure 1 */

static int figure1(const opts *o, bg_plugin_host *host, double fixed_theta)
{
    job j = {.o = o, .host = host, .fixed_theta = fixed_theta};
    pthread_mutex_init(&j.mu, NULL);
    cell1 cells[N_CELLS1];
    size_t nc = 0;
    for (size_t ci = 0; ci < N_C; ci++) {
        for (int g = BB_NONE; g < BB_NONIID; g++)
            cells[nc++] = (cell1){FIG1_C[ci], (bb_guardrail)g, 0, NULL};
        for (size_t a = 0; a < N_A1; a++)
            cells[nc++] = (cell1){FIG1_C[ci], BB_NONIID, FIG1_ALPHA[a], NULL};
    }
    for (size_t i = 0; i < nc; i++)
        cells[i].ep = calloc((size_t)o->episodes, sizeof(bb_episode1));
    j.cells = cells;
    j.n_cells = nc;
    j.total = (long)nc * o->episodes;
    int rc = run_pool(&j, 1);
    FILE *jf = NULL, *df = NULL;
    if (rc == 0)
        rc = open_outputs(o, 1, &jf, &df);
    if (rc == 0) {
        printf("\nFigure 1 — Boltzmann agent (beta=%g), %ld episodes x %d steps, theta=%s, "
               "seed %llu\n",
               o->beta, o->episodes, o->steps, theta_name(o->theta), (unsigned long long)o->seed);
        printf("%-7s %-10s %-8s %-18s %-18s %-13s %s\n", "C", "guardrail", "alpha",
               "reward (±2SEM)", "deaths (±2SEM)", "all-rejected", "rejections/ep");
        fprintf(df, "# C guardrail alpha reward reward_2sem deaths deaths_2sem all_rejected\n");
    }
    double *tmp = malloc((size_t)o->episodes * 3 * sizeof *tmp);
    for (size_t i = 0; rc == 0 && i < nc; i++) {
        cell1 *cl = &cells[i];
        double rw, rw2, de, de2, ar, ar2, rj, rj2;
        for (long e = 0; e < o->episodes; e++) {
            tmp[3 * e] = cl->ep[e].reward;
            tmp[3 * e + 1] = cl->ep[e].death;
            tmp[3 * e + 2] = cl->ep[e].all_rejected;
        }
        mean_2sem(tmp, (size_t)o->episodes, 3, &rw, &rw2);
        mean_2sem(tmp + 1, (size_t)o->episodes, 3, &de, &de2);
        mean_2sem(tmp + 2, (size_t)o->episodes, 3, &ar, &ar2);
        for (long e = 0; e < o->episodes; e++)
            tmp[e] = cl->ep[e].rejections;
        mean_2sem(tmp, (size_t)o->episodes, 1, &rj, &rj2);
        char al[16] = "-";
        if (cl->gr == BB_NONIID)
            snprintf(al, sizeof al, "%g", cl->alpha);
        /* a rate of 0/n has no spread to report: its one-sided 95 % upper
         * bound says what the n episodes rule out */
        long deaths = 0;
        for (long e = 0; e < o->episodes; e++)
            deaths += cl->ep[e].death;
        double de_up = cp_upper(deaths, o->episodes, 0.05);
        char dcol[32];
        if (deaths == 0)
            snprintf(dcol, sizeof dcol, "0 (<= %.1e)", de_up);
        else
            snprintf(dcol, sizeof dcol, "%6.4f ± %.4f", de, de2);
        printf("%-7g %-10s %-8s %7.2f ± %-7.2f %-17s %-13.4f %.2f\n", cl->C,
               bb_guardrail_name(cl->gr), al, rw, rw2, dcol, ar, rj);
        fprintf(jf,
                "{\"figure\": 1, \"theta\": \"%s\", \"C\": %g, \"guardrail\": \"%s\", "
                "\"alpha\": %s, \"episodes\": %ld, \"reward_mean\": %.6f, \"reward_2sem\": %.6f, "
                "\"death_rate\": %.6f, \"death_2sem\": %.6f, \"deaths\": %ld, "
                "\"death_upper95\": %.6g, \"all_rejected\": %.6f, \"rejections_mean\": %.4f}\n",
                theta_name(o->theta), cl->C, bb_guardrail_name(cl->gr),
                cl->gr == BB_NONIID ? al : "null", o->episodes, rw, rw2, de, de2, deaths, de_up, ar,
                rj);
        fprintf(df, "%g %s %g %.6f %.6f %.6f %.6f %.6f\n", cl->C, bb_guardrail_name(cl->gr),
                cl->gr == BB_NONIID ? cl->alpha : 0.0, rw, rw2, de, de2, ar);
    }
    free(tmp);
    if (jf)
        fclose(jf);
    if (df)
        fclose(df);
    for (size_t i = 0; i < nc; i++)
        free(cells[i].ep);
    pthread_mutex_destroy(&j.mu);
    return rc;
}

/* ------------------------------------------------------------ figure 2 */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    return i + 1 < n ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

static int figure2(const opts *o, bg_plugin_host *host, double fixed_theta)
{
    job j = {.o = o, .host = host, .fixed_theta = fixed_theta};
    pthread_mutex_init(&j.mu, NULL);
    j.over = calloc((size_t)o->episodes * N_A2, sizeof *j.over);
    j.half = calloc((size_t)o->threads * N_A2, sizeof *j.half);
    j.total = o->episodes;
    int rc = run_pool(&j, 2);
    FILE *jf = NULL, *df = NULL;
    if (rc == 0)
        rc = open_outputs(o, 2, &jf, &df);
    if (rc == 0) {
        printf("\nFigure 2 — uniform agent, no deaths, %ld episodes x %d steps, theta=%s, "
               "seed %llu\n",
               o->episodes, o->steps, theta_name(o->theta), (unsigned long long)o->seed);
        printf("%-8s %-20s %-9s | estimate for arms of true harm 0.5:\n", "alpha",
               "overestimate (±2SEM)", "1-1024a");
        printf("%-8s %-20s %-9s | %-7s %-7s %-7s %-7s %-7s %s\n", "", "", "", "n", "min", "q1",
               "median", "q3", "max");
        fprintf(df, "# alpha over over_2sem bound n min q1 median q3 max\n");
    }
    for (size_t i = 0; rc == 0 && i < N_A2; i++) {
        double m, e2;
        mean_2sem(j.over + i, (size_t)o->episodes, N_A2, &m, &e2);
        bb_dvec all = {0};
        for (int t = 0; t < o->threads; t++)
            for (size_t k = 0; k < j.half[(size_t)t * N_A2 + i].n; k++)
                bb_dvec_push(&all, j.half[(size_t)t * N_A2 + i].v[k]);
        qsort(all.v, all.n, sizeof *all.v, cmp_double);
        double lb = 1.0 - 1024.0 * FIG2_ALPHA[i];
        if (lb < 0)
            lb = 0;
        double qs[5] = {quantile(all.v, all.n, 0), quantile(all.v, all.n, 0.25),
                        quantile(all.v, all.n, 0.5), quantile(all.v, all.n, 0.75),
                        quantile(all.v, all.n, 1)};
        printf("%-8g %7.4f ± %-10.4f %-9.4f | %-7zu %-7.4f %-7.4f %-7.4f %-7.4f %.4f\n",
               FIG2_ALPHA[i], m, e2, lb, all.n, qs[0], qs[1], qs[2], qs[3], qs[4]);
        fprintf(jf,
                "{\"figure\": 2, \"theta\": \"%s\", \"alpha\": %g, \"episodes\": %ld, "
                "\"overestimate_mean\": %.6f, \"overestimate_2sem\": %.6f, "
                "\"theory_lower_bound\": %.6f, \"half_harm_n\": %zu, \"half_harm_min\": %.6f, "
                "\"half_harm_q1\": %.6f, \"half_harm_median\": %.6f, \"half_harm_q3\": %.6f, "
                "\"half_harm_max\": %.6f}\n",
                theta_name(o->theta), FIG2_ALPHA[i], o->episodes, m, e2, lb, all.n, qs[0], qs[1],
                qs[2], qs[3], qs[4]);
        fprintf(df, "%g %.6f %.6f %.6f %zu %.6f %.6f %.6f %.6f %.6f\n", FIG2_ALPHA[i], m, e2, lb,
                all.n, qs[0], qs[1], qs[2], qs[3], qs[4]);
        free(all.v);
    }
    if (jf)
        fclose(jf);
    if (df)
        fclose(df);
    for (int t = 0; t < o->threads * (int)N_A2; t++)
        free(j.half[t].v);
    free(j.half);
    free(j.over);
    pthread_mutex_destroy(&j.mu);
    return rc;
}

/* --------------------------------------------------------------- plots */

static void plot(const opts *o, int fig)
{
    const char *th = theta_name(o->theta);
    char script[4096];
    if (fig == 1)
        snprintf(script, sizeof script,
                 "set terminal pngcairo size 1500,800 noenhanced\n"
                 "set output '%1$s/fig1_%2$s.png'\n"
                 "set multiplot layout 2,3 title 'Figure 1 (theta=%2$s): non-iid vs alpha; "
                 "baselines (no alpha) as horizontal lines'\n"
                 "set logscale x; set format x '%%.0e'; set key bottom right font ',8'; set grid\n"
                 "set xrange [1e-5:1]\n"
                 "f='%1$s/fig1_%2$s.dat'\n"
                 "gs='none cheating posterior iid'\n"
                 "array B[4]\n"
                 "do for [col in '4 6'] {\n"
                 "do for [ci in '0.001 0.01 0.1'] {\n"
                 " c=col+0\n"
                 " do for [k=1:4] { stats f u ($1==ci+0 && strcol(2) eq word(gs,k) ? column(c) "
                 ": 1/0) nooutput; B[k]=STATS_max }\n"
                 " set title (c==4 ? 'reward, C=' : 'deaths, C=').ci; set xlabel 'alpha'\n"
                 " set ylabel (c==4 ? 'episode reward' : 'death rate')\n"
                 " plot f u ($1==ci+0 && strcol(2) eq 'non-iid' ? $3 : 1/0):(column(c)):"
                 "(column(c+1)) w yerrorlines lw 2 t 'non-iid', "
                 "for [k=1:4] B[k] w l dt k+1 lw 1.5 t word(gs,k)\n}\n}\n"
                 "unset multiplot\n",
                 o->out, th);
    else
        snprintf(script, sizeof script,
                 "set terminal pngcairo size 1200,500 noenhanced\n"
                 "set output '%1$s/fig2_%2$s.png'\n"
                 "set multiplot layout 1,2 title 'Figure 2 (theta=%2$s): tightness of the "
                 "non-iid bound'\n"
                 "set logscale x; set format x '%%.0e'; set grid; set key bottom left\n"
                 "f='%1$s/fig2_%2$s.dat'\n"
                 "set title 'overestimation frequency'; set xlabel 'alpha'; set yrange [0:1.05]\n"
                 "plot f u 1:2:3 w yerrorlines t 'measured', f u 1:4 w l dt 2 t 'max(0, "
                 "1-1024 alpha)'\n"
                 "set title 'estimate for arms with true harm 0.5'; set yrange [0:1.05]\n"
                 "plot f u 1:7:6:10:9 w candlesticks t 'min/q1/q3/max' whiskerbars, "
                 "f u 1:8:8:8:8 w candlesticks t 'median', 0.5 w l dt 2 t 'true harm'\n"
                 "unset multiplot\n",
                 o->out, th);
    char spath[512];
    snprintf(spath, sizeof spath, "%s/fig%d_%s.gp", o->out, fig, th);
    FILE *f = fopen(spath, "w");
    if (!f)
        return;
    fputs(script, f);
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>&1", spath);
    int rc = system(cmd);
    printf("plot: %s/fig%d_%s.png%s\n", o->out, fig, th, rc == 0 ? "" : " (gnuplot failed)");
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr, "usage: bench_bandit [--figure 1|2|all] [--episodes N] [--steps N] [--beta B]\n"
                    "                    [--theta max-arm|fixed] [--seed S] [--threads T]\n"
                    "                    [--out DIR] [--plugins DIR] [--micro] [--micro-reps N]\n");
}

static int parse(int argc, char **argv, opts *o)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (opts){.figure = 0,
                .episodes = 10000,
                .steps = 25,
                .beta = 0.5,
                .theta = BB_THETA_MAX_ARM,
                .seed = 1,
                .threads = nproc > 0 ? (int)nproc : 1,
                .out = BG_DEFAULT_OUT_DIR,
                .plugins = getenv("BG_PLUGIN_DIR"),
                .micro_reps = 2000};
    if (!o->plugins)
        o->plugins = BG_DEFAULT_PLUGIN_DIR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--micro")) {
            o->micro = 1;
            continue;
        }
        if (!v) {
            usage();
            return -1;
        }
        i++;
        if (!strcmp(a, "--figure"))
            o->figure = !strcmp(v, "all") ? 0 : atoi(v);
        else if (!strcmp(a, "--episodes"))
            o->episodes = atol(v);
        else if (!strcmp(a, "--steps"))
            o->steps = atoi(v);
        else if (!strcmp(a, "--beta"))
            o->beta = atof(v);
        else if (!strcmp(a, "--theta") && (!strcmp(v, "max-arm") || !strcmp(v, "fixed")))
            o->theta = !strcmp(v, "fixed") ? BB_THETA_FIXED : BB_THETA_MAX_ARM;
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--plugins"))
            o->plugins = v;
        else if (!strcmp(a, "--micro-reps"))
            o->micro_reps = atoi(v);
        else {
            usage();
            return -1;
        }
    }
    if (o->episodes < 2 || o->steps < 1 || o->threads < 1 || o->figure < 0 || o->figure > 2) {
        usage();
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o) != 0)
        return 2;
    bg_log_set_level(BG_LOG_WARN);
    bg_plugin_host *host;
    bg_err err;
    if (bg_plugin_host_create(o.plugins, &host, &err) != BG_OK) {
        fprintf(stderr, "bench_bandit: plugins: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (o.micro) {
        rc = bb_micro(host, o.seed, o.micro_reps);
        bg_plugin_host_destroy(host);
        return rc;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", o.out);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_bandit: cannot create %s\n", o.out);
        return 1;
    }
    double fixed = bb_fixed_theta(o.seed);
    printf("bench_bandit: %ld episodes, %d steps, beta %g, theta %s%s%g, seed %llu, %d threads; "
           "engine + plugins from %s\n",
           o.episodes, o.steps, o.beta, theta_name(o.theta),
           o.theta == BB_THETA_FIXED ? " = " : " (fixed variant would be ", fixed,
           (unsigned long long)o.seed, o.threads, o.plugins);
    double t0 = now_s();
    if (o.figure != 2 && (rc = figure1(&o, host, fixed)) == 0)
        plot(&o, 1);
    if (rc == 0 && o.figure != 1 && (rc = figure2(&o, host, fixed)) == 0)
        plot(&o, 2);
    printf("total %.1f s\n", now_s() - t0);
    bg_plugin_host_destroy(host);
    return rc;
}
