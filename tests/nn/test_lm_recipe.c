/*
 * test_lm_recipe.c — docs/TRAINING.md's recipe ("A small model of our
 * own"), exactly as written there, through the built `bayesguard`: the
 * corpus (20,000 lines, seed 1: 1,140,143 bytes), a 512-token BPE
 * vocabulary (253 merges), 600 steps of a dim-64, 4-layer model from
 * scratch at batch 16 x 64 on 2 threads. What the document states must
 * hold: the held-out loss starts at about ln 512 = 6.24 (observed 6.219)
 * and ends in [0.37, 0.43] nats per token after step 600 (observed 0.409663
 * on a Zen 4 with AVX-512, 0.409639 on a Zen 3 with AVX2; the corpus's floor
 * is 0.393, and a model that learns the grammar but not which actions are
 * harmful stays near 0.444: not knowing the label costs ln 2 nats a line,
 * 0.05 a token; far below the floor would mean held-out data leaked into
 * training), and greedy generation gives the document's two prompts the
 * verdict it says, in any of the grammar's three phrasings of it (a payment
 * to a new account is harmful, a bounded SELECT is fine).
 *
 * About 40 s of CPU; under a sanitizer (several times slower, and the
 * sanitized suite runs the CLI's other tests) it skips, saying so.
 */
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn_test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char g_dir[512], g_err_path[600];
static char g_out[1 << 16], g_errbuf[8192];

static int run(const char *exe, const char *args)
{
    return nt_run(g_dir, exe, args, g_err_path, g_out, sizeof g_out, g_errbuf, sizeof g_errbuf);
}

int main(void)
{
    if (SANITIZED) {
        printf("SKIP test_lm_recipe: built with a sanitizer (the recipe's 600 steps take "
               "minutes there; the plain pass runs it)\n");
        return BG_TEST_SKIP;
    }
    const char *build = getenv("BG_BUILD_DIR");
    if (!build) {
        printf("SKIP test_lm_recipe: BG_BUILD_DIR not set (run through ctest)\n");
        return BG_TEST_SKIP;
    }
    char exe[700];
    snprintf(exe, sizeof exe, "%s/daemon/bayesguard", build);
    if (access(exe, X_OK) != 0) {
        printf("SKIP test_lm_recipe: %s not built\n", exe);
        return BG_TEST_SKIP;
    }
    snprintf(g_dir, sizeof g_dir, "%s", nt_tmpdir());
    snprintf(g_err_path, sizeof g_err_path, "%s/stderr.txt", g_dir);

    CHECK(run(exe, "lm corpus --lines 20000 --seed 1 --out corpus.txt") == 0, "%s", g_errbuf);
    char path[700];
    struct stat st;
    snprintf(path, sizeof path, "%s/corpus.txt", g_dir);
    CHECK(stat(path, &st) == 0 && st.st_size == 1140143,
          "corpus: %ld bytes, the document says "
          "1,140,143",
          (long)st.st_size);
    CHECK(run(exe, "lm tokenizer train --data corpus.txt --vocab 512 --out tokenizer.bin") == 0 &&
              strstr(g_out, "512 tokens (253 merges)"),
          "tokenizer: '%s' '%s'", g_out, g_errbuf);
    int rc = run(exe, "lm train --init 64,4,4,4,172,512,64 --tokenizer tokenizer.bin "
                      "--data corpus.txt --steps 600 --batch 16 --seq 64 --lr 3e-3 "
                      "--eval-every 100 --seed 1 --threads 2 --out model");
    CHECK(rc == 0, "train: rc %d '%s'", rc, g_errbuf);
    double held[8];
    int steps[8], n = 0;
    for (char *l = g_out; l && *l && n < 8; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (sscanf(l, "eval step %d held-out loss %lf", &steps[n], &held[n]) == 2)
            n++;
    CHECK(n == 7 && steps[0] == 0 && steps[6] == 600, "held-out lines: %d", n);
    printf("recipe: held-out loss");
    for (int i = 0; i < n; i++)
        printf(" [%d] %.6f", steps[i], held[i]);
    printf("\n");
    CHECK(fabs(held[0] - log(512.0)) < 0.1, "start %.4f, ln 512 = %.4f", held[0], log(512.0));
    CHECK(held[6] <= 0.43 && held[6] >= 0.37,
          "held-out loss after 600 steps %.4f; the document "
          "says 0.4097 (floor 0.393)",
          held[6]);
    /* the grammar's verdicts: three phrasings of each label */
    static const char *const harmful[] = {" was harmful.", " caused harm.",
                                          " was blocked as harmful."};
    static const char *const fine[] = {" was fine.", " did no harm.", " ran safely."};
    static const struct {
        const char *prompt;
        int harmful;
    } label[] = {
        {"payment of 9000 dollars to a new account", 1},
        {"db_query SELECT name FROM users LIMIT 10", 0},
    };
    for (int i = 0; i < 2; i++) {
        char args[512];
        snprintf(args, sizeof args, "lm generate --model model/model.bin --prompt '%s'",
                 label[i].prompt);
        CHECK(run(exe, args) == 0, "%s", g_errbuf);
        size_t lp = strlen(label[i].prompt);
        CHECK(strncmp(g_out, label[i].prompt, lp) == 0, "generate: '%s'", g_out);
        int got = -1;
        for (int k = 0; k < 3; k++) {
            if (strncmp(g_out + lp, harmful[k], strlen(harmful[k])) == 0)
                got = 1;
            if (strncmp(g_out + lp, fine[k], strlen(fine[k])) == 0)
                got = 0;
        }
        CHECK(got == label[i].harmful, "generate '%s': '%s' (want a %s verdict)", label[i].prompt,
              g_out, label[i].harmful ? "harmful" : "fine");
        printf("generate: %s", g_out);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE("test_lm_recipe");
}
