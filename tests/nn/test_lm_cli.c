/*
 * test_lm_cli.c — `lm generate|logits|score` output format and exit codes
 * (and `lm gfn`'s usage errors; the task itself: tests/lmgfn),
 * run as a separate process: the test driver (lm_cli_driver) always, and
 * the built `bayesguard` binary too when it exists. Outputs are compared
 * with the same computation done in-process through nn.h (printed values
 * have 6 decimals: tolerance 1e-5 + 1e-6|x|).
 */
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn_test.h"

static char g_err_path[600];
static char g_out[1 << 20];
static char g_errbuf[8192];

/* Runs "exe args" and returns the exit code; stdout in g_out, stderr in g_errbuf. */
static int run(const char *exe, const char *args)
{
    return nt_run(NULL, exe, args, g_err_path, g_out, sizeof g_out, g_errbuf, sizeof g_errbuf);
}

/* Parses whitespace-separated numbers of one line; checks %.6f shape when
 * six_decimals. Returns the count, -1 on a malformed token. */
static int parse_line(const char *s, double *vals, int cap, int six_decimals)
{
    int n = 0;
    const char *p = s;
    while (*p && *p != '\n') {
        while (*p == ' ')
            p++;
        if (!*p || *p == '\n')
            break;
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ' ' && *end != '\n'))
            return -1;
        if (six_decimals) {
            const char *dot = memchr(p, '.', (size_t)(end - p));
            if (!dot || end - dot - 1 != 6)
                return -1;
        }
        if (n < cap)
            vals[n] = v;
        n++;
        p = end;
    }
    return n;
}

static int close_to(double got, double want)
{
    return fabs(got - want) <= 1e-5 + 1e-6 * fabs(want);
}

static void check_exe(const char *exe, const char *model)
{
    printf("--- %s\n", exe);
    bg_err err;
    bg_nn_model *m = NULL;
    bg_compute_opts co = {BG_BACKEND_CPU, 1, 0, -1};
    if (bg_nn_model_load(model, &co, &m, &err) != BG_OK) {
        CHECK(0, "load %s: %s", model, err.msg);
        return;
    }
    int V = bg_nn_model_config(m)->vocab_size;
    char args[2048];
    double vals[600];

    /* generate: 6 greedy ids on one line == in-process greedy */
    snprintf(args, sizeof args,
             "lm generate --model '%s' --tokens \"1\" --steps 6 --temperature 0 --backend cpu",
             model);
    int rc = run(exe, args);
    int n = parse_line(g_out, vals, 600, 0);
    int32_t prompt = 1, want[6];
    int n_want = 0;
    bg_nn_sampler s;
    bg_nn_sampler_init(&s, V, 0.0f, 1.0f, 1, &err);
    bg_nn_generate(m, &prompt, 1, 6, &s, want, &n_want, &err);
    bg_nn_sampler_close(&s);
    CHECK(rc == 0 && n == 6 && strchr(g_out, '\n') == g_out + strlen(g_out) - 1,
          "generate: rc %d, %d ids, output '%s' stderr '%s'", rc, n, g_out, g_errbuf);
    for (int i = 0; i < 6 && n == 6; i++)
        CHECK(vals[i] == want[i], "generate id %d: %g vs %d", i, vals[i], (int)want[i]);
    printf("generate: %s", g_out);

    /* sampling: a seed reproduces the ids; top-p and temperature accepted */
    snprintf(args, sizeof args,
             "lm generate --model '%s' --steps 12 --temperature 0.9 --top-p 0.9 --seed 5", model);
    rc = run(exe, args);
    char first[512];
    snprintf(first, sizeof first, "%s", g_out);
    int rc2 = run(exe, args);
    CHECK(rc == 0 && rc2 == 0 && parse_line(first, vals, 600, 0) == 12 && strcmp(first, g_out) == 0,
          "seeded generate: rc %d/%d, '%s' vs '%s'", rc, rc2, first, g_out);
    printf("seeded sampling (seed 5, T 0.9, top-p 0.9): %s", first);

    /* logits: V values, %.6f, equal to the in-process forward */
    snprintf(args, sizeof args, "lm logits --model '%s' --tokens \"1 5,7\" --backend cpu", model);
    rc = run(exe, args);
    n = parse_line(g_out, vals, 600, 1);
    float *lw = malloc(sizeof(float) * V);
    int32_t toks[3] = {1, 5, 7};
    bg_nn_forward(m, toks, 3, 0, lw, &err);
    CHECK(rc == 0 && n == V, "logits: rc %d, %d values (want %d), stderr '%s'", rc, n, V, g_errbuf);
    int bad = 0;
    for (int i = 0; i < V && n == V; i++)
        bad += !close_to(vals[i], lw[i]);
    CHECK(bad == 0, "logits: %d values differ from the in-process forward", bad);
    printf("logits: %d values, first %.6f\n", n, n > 0 ? vals[0] : 0.0);
    free(lw);

    /* score: one line per continuation */
    snprintf(args, sizeof args,
             "lm score --model '%s' --prefix \"1 2\" --continuation \"3 4 5\" --continuation=6",
             model);
    rc = run(exe, args);
    double got[2] = {0, 0};
    char *second = strchr(g_out, '\n');
    int n1 = parse_line(g_out, got, 1, 1);
    int n2 = second ? parse_line(second + 1, got + 1, 1, 1) : 0;
    int32_t pre[2] = {1, 2}, c1[3] = {3, 4, 5}, c2[1] = {6};
    const int32_t *cs[2] = {c1, c2};
    int lens[2] = {3, 1};
    double ws[2];
    bg_nn_score(m, pre, 2, cs, lens, 2, ws, &err);
    CHECK(rc == 0 && n1 == 1 && n2 == 1 && close_to(got[0], ws[0]) && close_to(got[1], ws[1]),
          "score: rc %d output '%s' want %.6f %.6f, stderr '%s'", rc, g_out, ws[0], ws[1],
          g_errbuf);
    printf("score: %.6f %.6f\n", got[0], got[1]);

    /* errors */
    static const struct {
        const char *args; /* %s = model */
        int code;
        const char *needle;
    } errs[] = {
        {"lm logits --model '%s' --tokens \"1 99999\"", 2, "token id 99999 out of range"},
        {"lm generate --model '%s' --steps abc", 2, "--steps 'abc'"},
        {"lm generate --model '%s' --bogus 1", 2, "unknown flag '--bogus'"},
        {"lm logits --model '%s' --tokens \"1 x\"", 2, "expected token ids"},
        {"lm logits --model '%s' --backend gpu --tokens 1", 2, "--backend 'gpu'"},
        {"lm score --model '%s' --prefix 1", 2, "--continuation"},
        {"lm generate --tokens 1 --steps 1%s", 2, "--model is required"},
        {"lm frobnicate --model '%s'", 2, "unknown subcommand"},
        {"lm logits --model '%s.missing' --tokens 1", 1, "cannot open"},
        {"lm gfn rng --model '%s'", 1, "vocabulary of 97"},
        {"lm gfn rng --samples 0%s", 2, "--samples '0'"},
        {"lm gfn rng --bogus 1%s", 2, "unknown flag '--bogus'"},
        {"lm gfn rng --backend gpu%s", 2, "--backend 'gpu'"},
        {"lm gfn frobnicate%s", 2, "unknown task 'frobnicate'"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        snprintf(args, sizeof args, errs[i].args, strstr(errs[i].args, "--model") ? model : "");
        rc = run(exe, args);
        CHECK(rc == errs[i].code && strstr(g_errbuf, errs[i].needle),
              "'%s': rc %d (want %d), stderr '%s' (want '%s')", args, rc, errs[i].code, g_errbuf,
              errs[i].needle);
    }
    /* vulkan: works (a GPU) or fails with exit 1 and a message about Vulkan */
    snprintf(args, sizeof args, "lm logits --model '%s' --tokens 1 --backend vulkan", model);
    rc = run(exe, args);
    CHECK(rc == 0 || (rc == 1 && strstr(g_errbuf, "ulkan")), "vulkan: rc %d stderr '%s'", rc,
          g_errbuf);
    printf("vulkan backend: %s", rc == 0 ? "available\n" : g_errbuf);
    rc = run(exe, "lm --help");
    CHECK(rc == 0 && strstr(g_out, "generate"), "--help: rc %d", rc);
    bg_nn_model_destroy(m);
}

int main(void)
{
    const char *build = getenv("BG_BUILD_DIR");
    if (!build) {
        printf("BG_BUILD_DIR not set (run through ctest); skipped\n");
        return 77;
    }
    const char *dir = nt_tmpdir();
    snprintf(g_err_path, sizeof g_err_path, "%s/stderr.txt", dir);
    char model[600], exe[700];
    snprintf(model, sizeof model, "%s/cli_model.bin", dir);
    bg_nn_config cfg = {36, 100, 2, 6, 2, 97, 32, 0};
    bg_err err;
    if (bg_nn_synth_write(model, &cfg, 11, &err) != BG_OK) {
        printf("synth: %s\n", err.msg);
        return 1;
    }
    snprintf(exe, sizeof exe, "%s/tests/nn/lm_cli_driver", build);
    check_exe(exe, model);
    snprintf(exe, sizeof exe, "%s/daemon/bayesguard", build);
    if (access(exe, X_OK) == 0)
        check_exe(exe, model);
    else
        printf("bayesguard binary not built at %s; tested through lm_cli_driver only\n", exe);
    unlink(model);
    unlink(g_err_path);
    rmdir(dir);
    CHECK_DONE("test_lm_cli");
}
