/*
 * test_lmgfn_theory_cli.c — `bayesguard lm gfn theory` as a process: the
 * table on a tiny synthetic model (token ids for X, Y and the legal list:
 * five rows, the exact row at tv 0, the space's size), its usage errors
 * (exit 2, a message naming the flag), a model that cannot hold X Z Y
 * (exit 1, naming the file), and `lm --help` listing `generate` once and
 * `gfn theory`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lmgfn_test.h"

static char g_out[1 << 16];

/* Runs "exe args 2>&1" into g_out; the exit code. */
static int run(const char *exe, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", exe, args);
    FILE *f = popen(cmd, "r");
    CHECK(f, "popen %s", cmd);
    size_t n = fread(g_out, 1, sizeof g_out - 1, f);
    g_out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        c++;
    return c;
}

int main(void)
{
    const char *build = getenv("BG_BUILD_DIR");
    if (!build) {
        printf("BG_BUILD_DIR not set (run through ctest); skipped\n");
        return 77;
    }
    char exe[1024], args[2048];
    snprintf(exe, sizeof exe, "%s/daemon/bayesguard", build);
    if (access(exe, X_OK) != 0) {
        printf("bayesguard not built at %s; skipped\n", exe);
        return 77;
    }
    char model[] = "/tmp/bg-test-lmgfn-theory-cli-XXXXXX";
    lt_tiny_model(model);

    /* the table: X = 0 5, Y = 1 7, legal 3 4 9, lengths 1..3 (39 theories) */
    snprintf(args, sizeof args,
             "lm gfn theory --model '%s' --x '0 5' --y '1,7' --legal '3 4 9' --max-len 3 "
             "--steps 20 --batch 4 --samples 2000 --seed 2 --threads 1",
             model);
    int rc = run(exe, args);
    printf("%s", g_out);
    CHECK(rc == 0, "theory run: rc %d", rc);
    CHECK(strstr(g_out, "theory space: 39 theories (3 legal tokens, lengths 1..3)"), "no space");
    CHECK(strstr(g_out, "method") && strstr(g_out, "tv_emp") && strstr(g_out, "recall@5") &&
              strstr(g_out, "recall@10") && strstr(g_out, "evals"),
          "header missing");
    CHECK(strstr(g_out, "\nexact         0.0000"), "exact row");
    CHECK(strstr(g_out, "\nbase   ") && strstr(g_out, "\nbase T=") && strstr(g_out, "\nmh   ") &&
              strstr(g_out, "\ngflownet "),
          "rows missing");
    CHECK(strstr(g_out, "likeliest theories") && strstr(g_out, "   1  p "), "theories missing");

    static const struct {
        const char *args; /* %s = model */
        int code;
        const char *needle;
    } errs[] = {
        {"lm gfn theory --model '%s' --x '0 5'", 2, "--x and --y go together"},
        {"lm gfn theory --model '%s' --x '0 5' --y 'a'", 2, "--y 'a'"},
        {"lm gfn theory --model '%s' --max-len 0", 2, "--max-len '0'"},
        {"lm gfn theory --model '%s' --lr 2", 2, "--lr '2'"},
        {"lm gfn theory --model '%s' --bogus 1", 2, "unknown flag '--bogus'"},
        {"lm gfn theory --model '%s' --seed 1 --seed 2", 2, "--seed given twice"},
        {"lm gfn rng --model '%s' --legal 3", 2, "unknown flag '--legal'"},
        {"lm gfn theory --model '%s' --x '0 5' --y '1 7' --legal '3 1'", 1, "termination"},
        {"lm gfn theory --model '%s' --x '0 5 6 7 8 9' --y '1 7' --max-len 3", 1, "context"},
        {"lm gfn theory --model '%s.missing'", 1, "cannot open"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        snprintf(args, sizeof args, errs[i].args, model);
        rc = run(exe, args);
        CHECK(rc == errs[i].code && strstr(g_out, errs[i].needle),
              "'%s': rc %d (want %d), output '%s' (want '%s')", args, rc, errs[i].code, g_out,
              errs[i].needle);
    }
    rc = run(exe, "lm --help");
    CHECK(rc == 0 && count(g_out, "  generate ") == 1 && strstr(g_out, "gfn theory"),
          "lm --help: rc %d, 'generate' listed %d times: %s", rc, count(g_out, "  generate "),
          g_out);
    rc = run(exe, "lm gfn --help");
    CHECK(rc == 0 && strstr(g_out, "gfn theory") && strstr(g_out, "--legal"), "lm gfn --help");
    unlink(model);
    CHECK_DONE("test_lmgfn_theory_cli");
}
