/*
 * test_lm_train.c — `lm corpus`, `lm tokenizer train`, `lm train` and
 * `lm generate --prompt`, run as separate processes: the test driver
 * (lm_cli_driver) always, and the built `bayesguard` binary too when it
 * exists. A tiny version of the docs/TRAINING.md recipe (corpus of 300
 * lines, a 300-token BPE vocabulary, a 2-layer dim-32 model from scratch,
 * 60 steps of batch 4 x 16, about 0.3 s) must drive its loss down (mean of
 * the last five steps below 0.75x the first five and below 0.7 ln 300;
 * observed 5.39 -> 3.75, and a model that learns nothing stays near
 * ln 300 = 5.7) and print the held-out loss at steps 0, 20, 40, 60, the
 * last below 0.75x the first and 0.7 ln 300 (observed 5.70 -> 3.72). Every
 * bad input is exit 2 with a message naming it, before any step runs and
 * before --out is created (a NaN in a checkpoint's weights included).
 * resume_merge: --save-every and --resume give the uninterrupted run's
 * loss lines and files (LoRA and full); lm merge gives the adapted
 * model's held-out loss; a model whose forward overflows stops at the
 * first non-finite loss (exit 1, nothing written).
 *
 * The memory flags on that model (memory_flags): --logit-budget 12000
 * bytes (10 rows of V = 300) runs the classifier in 7 chunks of 10 rows —
 * the printed rows say so, and the first loss is the one-chunk run's to
 * the printed digit (the forward does not depend on the chunking; later
 * steps within 1e-5 relative: the tied classifier's gradient is summed by
 * chunks); --recompute prints fewer bytes of activations and the same
 * three losses (the same gradient bits); an --act-budget between the two
 * refuses the plain run (exit 2, naming --recompute, no --out left) and
 * accepts it with --recompute; a logits budget below one row and
 * malformed sizes are exit 2.
 */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn/nn_tok.h"
#include "nn_test.h"

static char g_dir[512], g_err_path[600];
static char g_out[1 << 18];
static char g_errbuf[8192];

static int run(const char *exe, const char *args)
{
    return nt_run(g_dir, exe, args, g_err_path, g_out, sizeof g_out, g_errbuf, sizeof g_errbuf);
}

static void write_file(const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", path);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *name)
{
    char path[700];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return stat(path, &st) == 0;
}

/* The alpha an adapter file stores (nn_train_io.c: magic[8] | u32 version |
 * i32 model[7] | i32 rank | f32 alpha ...), or -1. */
static float lora_alpha(const char *name)
{
    char path[700];
    unsigned char h[48];
    float alpha = -1.0f;
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "rb");
    if (f && fread(h, 1, sizeof h, f) == sizeof h)
        memcpy(&alpha, h + 44, sizeof alpha);
    if (f)
        fclose(f);
    return alpha;
}

/* Losses of "step N loss X" lines (N = 1, 2, ... in order) and held-out ones. */
static int parse_losses(double *loss, int cap, double *held, int *held_step, int *n_held)
{
    int n = 0;
    *n_held = 0;
    for (char *l = g_out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        int s;
        double x;
        if (sscanf(l, "step %d loss %lf", &s, &x) == 2) {
            CHECK(s == n + 1, "step %d after %d", s, n);
            if (n < cap)
                loss[n] = x;
            n++;
        } else if (sscanf(l, "eval step %d held-out loss %lf", &s, &x) == 2 && *n_held < 8) {
            held_step[*n_held] = s;
            held[(*n_held)++] = x;
        }
    }
    return n;
}

static void recipe(const char *exe)
{
    /* corpus: deterministic by seed */
    CHECK(run(exe, "lm corpus --lines 300 --seed 7 --out corpus.txt") == 0, "%s", g_errbuf);
    CHECK(run(exe, "lm corpus --lines 300 --seed 7") == 0);
    char path[700];
    snprintf(path, sizeof path, "%s/corpus.txt", g_dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    static char file[1 << 16];
    size_t n = fread(file, 1, sizeof file - 1, f);
    file[n] = 0;
    fclose(f);
    CHECK(strcmp(file, g_out) == 0, "--out and stdout differ for the same seed");
    CHECK(run(exe, "lm corpus --lines 300 --seed 8") == 0 && strcmp(file, g_out) != 0,
          "another seed, the same corpus");
    int lines = 0;
    for (char *p = file; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 300);
    CHECK(strstr(file, " was harmful.\n") && strstr(file, "send_email"), "grammar: '%.200s'", file);

    /* tokenizer */
    CHECK(run(exe, "lm tokenizer train --data corpus.txt --vocab 300 --out tok.bin") == 0 &&
              strstr(g_out, "300 tokens"),
          "tokenizer train: %s %s", g_out, g_errbuf);
    bg_nn_tok *tok = NULL;
    bg_err err;
    snprintf(path, sizeof path, "%s/tok.bin", g_dir);
    CHECK(bg_nn_tok_load(path, &tok, &err) == BG_OK && bg_nn_tok_size(tok) == 300, "%s", err.msg);
    bg_nn_tok_destroy(tok);

    /* train from scratch */
    int rc = run(exe, "lm train --init 32,2,2,2,64,300,24 --tokenizer tok.bin --data corpus.txt "
                      "--steps 60 --batch 4 --seq 16 --lr 1e-2 --eval-every 20 --holdout 0.1 "
                      "--seed 3 --out run --threads 1");
    double loss[64], held[8];
    int hs[8], nh;
    int steps = parse_losses(loss, 64, held, hs, &nh);
    CHECK(rc == 0 && steps == 60, "train: rc %d, %d steps, stderr '%s'", rc, steps, g_errbuf);
    double first = 0, last = 0;
    for (int i = 0; i < 5; i++) {
        first += loss[i] / 5;
        last += loss[55 + i] / 5;
    }
    printf("tiny recipe: mean loss steps 1-5 %.4f, steps 56-60 %.4f; held-out", first, last);
    for (int i = 0; i < nh; i++)
        printf(" [%d] %.4f", hs[i], held[i]);
    printf("\n");
    /* --init starts near the uniform guess (ln 300 = 5.70 nats: N(0, 0.02)
     * weights); 60 tiny steps must go well below it */
    CHECK(last < 0.75 * first && last < 0.7 * log(300.0),
          "the loss did not go down: %.4f -> %.4f (ln 300 = %.4f)", first, last, log(300.0));
    CHECK(nh == 4 && hs[0] == 0 && hs[1] == 20 && hs[2] == 40 && hs[3] == 60, "held-out lines: %d",
          nh);
    CHECK(held[3] < 0.75 * held[0] && held[3] < 0.7 * log(300.0), "held-out loss %.4f -> %.4f",
          held[0], held[3]);
    CHECK(exists("run/model.bin") && exists("run/tokenizer.bin") && !exists("run/.init.bin"));

    /* generate: text after the prompt, the tokenizer found beside the model */
    rc = run(exe, "lm generate --model run/model.bin --prompt 'shell_exec' --steps 12 "
                  "--temperature 0");
    CHECK(rc == 0 && strncmp(g_out, "shell_exec", 10) == 0 && strlen(g_out) > 11,
          "generate: rc %d '%s' '%s'", rc, g_out, g_errbuf);
    printf("generate --prompt 'shell_exec': %s", g_out);
    /* the id mode is unchanged */
    rc = run(exe, "lm generate --model run/model.bin --tokens 1 --steps 3");
    int a, b, c;
    CHECK(rc == 0 && sscanf(g_out, "%d %d %d", &a, &b, &c) == 3, "id mode: '%s'", g_out);

    /* fine-tune the result with LoRA on ids: an adapter file */
    char ids[4096];
    size_t o = 0;
    for (int i = 0; i < 400; i++)
        o += (size_t)snprintf(ids + o, sizeof ids - o, "%d%c", 3 + (i * 7) % 290,
                              i % 20 == 19 ? '\n' : ' ');
    write_file("ids.txt", ids);
    rc = run(exe, "lm train --model run/model.bin --ids --data ids.txt --steps 3 --batch 2 --seq 8 "
                  "--lora 2 --out lora --holdout 0");
    CHECK(rc == 0 && exists("lora/adapter.lora") && !exists("lora/model.bin") &&
              !strstr(g_out, "eval step"),
          "lora: rc %d '%s' '%s'", rc, g_out, g_errbuf);
    CHECK(strstr(g_out, "training: LoRA rank 2 alpha 2,") != NULL, "'%s'", g_out);
    CHECK(lora_alpha("lora/adapter.lora") == 2.0f, "default alpha = rank");
    /* --lora-alpha sets the scale alpha / rank; the adapter file keeps alpha */
    rc = run(exe, "lm train --model run/model.bin --ids --data ids.txt --steps 2 --batch 2 --seq 8 "
                  "--lora 2 --lora-alpha 8 --out lora8 --holdout 0");
    CHECK(rc == 0 && strstr(g_out, "training: LoRA rank 2 alpha 8,") &&
              lora_alpha("lora8/adapter.lora") == 8.0f,
          "--lora-alpha 8: rc %d '%s' '%s'", rc, g_out, g_errbuf);
    /* without --lora it is a usage error, nothing written */
    rc = run(exe, "lm train --model run/model.bin --ids --data ids.txt --steps 2 --lora-alpha 8 "
                  "--out lora9");
    CHECK(rc == 2 && strstr(g_errbuf, "--lora-alpha") && strstr(g_errbuf, "needs --lora") &&
              !exists("lora9"),
          "--lora-alpha alone: rc %d '%s'", rc, g_errbuf);
    rc = run(exe, "lm train --model run/model.bin --ids --data ids.txt --lora 2 --lora-alpha -1 "
                  "--out lora9");
    CHECK(rc == 2 && strstr(g_errbuf, "--lora-alpha '-1'") && !exists("lora9"), "'%s'", g_errbuf);
}

/* The number before " KiB" or " MiB" after `key` in g_out, in KiB; -1 if absent. */
static double kib_after(const char *key)
{
    const char *p = strstr(g_out, key);
    double x;
    char unit[4];
    if (!p || sscanf(p + strlen(key), "%lf %3s", &x, unit) != 2)
        return -1;
    return strncmp(unit, "MiB", 3) == 0 ? x * 1024 : strncmp(unit, "KiB", 3) == 0 ? x : -1;
}

static void memory_flags(const char *exe)
{
    static const char base[] = "lm train --model run/model.bin --data corpus.txt --steps 3 "
                               "--batch 4 --seq 16 --holdout 0 --threads 1 --seed 5";
    char args[1024];
    double plain[4], l[4], held[8];
    int hs[8], nh, rows;
    /* one chunk: 64 rows of 300 logits fit the default 64 MiB */
    snprintf(args, sizeof args, "%s --out mem", base);
    CHECK(run(exe, args) == 0 && parse_losses(plain, 4, held, hs, &nh) == 3, "%s", g_errbuf);
    const char *r = strstr(g_out, "logits by ");
    CHECK(r && sscanf(r, "logits by %d rows", &rows) == 1 && rows == 64, "%s", g_out);
    double act = kib_after("activations ");
    CHECK(act > 0 && !strstr(g_out, "with recompute"), "%s", g_out);
    /* the step's peak is printed and holds at least the activations */
    double peak = kib_after("peak memory ");
    CHECK(peak >= act, "peak memory %.2f KiB, activations %.2f KiB: %s", peak, act, g_out);

    /* 12000 bytes: 10 rows; 64 rows in ceil(64/10) = 7 even chunks of 10 */
    snprintf(args, sizeof args, "%s --logit-budget 12000 --out mem", base);
    CHECK(run(exe, args) == 0 && parse_losses(l, 4, held, hs, &nh) == 3, "%s", g_errbuf);
    r = strstr(g_out, "logits by ");
    CHECK(r && sscanf(r, "logits by %d rows", &rows) == 1 && rows == 10, "%s", g_out);
    CHECK(l[0] == plain[0], "chunked first loss %.6f, one chunk %.6f", l[0], plain[0]);
    for (int i = 1; i < 3; i++)
        CHECK(fabs(l[i] - plain[i]) <= 1e-5 * plain[i], "step %d: %.6f vs %.6f", i + 1, l[i],
              plain[i]);
    /* the same budget in other units: 11.71875 KiB = 12000 bytes */
    snprintf(args, sizeof args, "%s --logit-budget=11.71875KiB --out mem", base);
    CHECK(run(exe, args) == 0 && strstr(g_out, "logits by 10 rows"), "%s", g_errbuf);

    /* recompute: fewer bytes kept, the same losses */
    snprintf(args, sizeof args, "%s --recompute --out mem", base);
    CHECK(run(exe, args) == 0 && parse_losses(l, 4, held, hs, &nh) == 3, "%s", g_errbuf);
    double lean = kib_after("activations ");
    CHECK(lean > 0 && lean < act && strstr(g_out, "with recompute"), "%.2f vs %.2f KiB", lean, act);
    for (int i = 0; i < 3; i++)
        CHECK(l[i] == plain[i], "recompute step %d: %.6f vs %.6f", i + 1, l[i], plain[i]);
    printf("memory flags: activations %.2f KiB, %.2f KiB with recompute; logits by 10 rows: "
           "losses %.6f %.6f %.6f\n",
           act, lean, l[0], l[1], l[2]);

    /* an activation budget between the two */
    char dir[700];
    snprintf(dir, sizeof dir, "rm -rf '%s/mem'", g_dir);
    CHECK(system(dir) == 0);
    snprintf(args, sizeof args, "%s --act-budget %.0f --out mem", base, (act + lean) / 2 * 1024);
    CHECK(run(exe, args) == 2 && strstr(g_errbuf, "turn on recompute") &&
              strstr(g_errbuf, "(lm train: --recompute, --act-budget, --batch, --seq)") &&
              !strstr(g_out, "step 1 loss") && !exists("mem"),
          "'%s': '%s'", args, g_errbuf);
    snprintf(args, sizeof args, "%s --act-budget %.0f --recompute --out mem", base,
             (act + lean) / 2 * 1024);
    CHECK(run(exe, args) == 0 && parse_losses(l, 4, held, hs, &nh) == 3 && l[2] == plain[2],
          "'%s': '%s'", args, g_errbuf);
    /* below the lean set too: a smaller batch or sequence is the way out */
    snprintf(args, sizeof args, "%s --act-budget %.0f --recompute --out mem2", base,
             lean / 2 * 1024);
    CHECK(run(exe, args) == 2 && strstr(g_errbuf, "lower the batch") && !exists("mem2"), "'%s'",
          g_errbuf);

    /* sizes that are not */
    static const struct {
        const char *flags, *needle;
    } bad_sizes[] = {
        {"--logit-budget 1000",
         "below one row of logits (vocab 300 x 4 = 1200 bytes) (lm train: --logit-budget)"},
        {"--logit-budget 0", "--logit-budget '0': expected a size"},
        {"--act-budget 12XB", "--act-budget '12XB': expected a size"},
        {"--act-budget MiB", "--act-budget 'MiB': expected a size"},
        {"--logit-budget -5MiB", "--logit-budget '-5MiB': expected a size"},
        {"--logit-budget 1e300GiB", "expected a size"},
    };
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        snprintf(args, sizeof args, "%s %s --out mem3", base, bad_sizes[i].flags);
        CHECK(run(exe, args) == 2 && strstr(g_errbuf, bad_sizes[i].needle) && !exists("mem3"),
              "'%s': '%s' (want '%s')", args, g_errbuf, bad_sizes[i].needle);
    }
}

/* The "step N loss X lr Y" part of every step line with N > after, one per
 * line (the timing dropped), into dst. */
static void step_lines(int after, char *dst, size_t cap)
{
    size_t o = 0;
    dst[0] = 0;
    for (char *l = g_out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        int s;
        if (sscanf(l, "step %d loss", &s) != 1 || s <= after)
            continue;
        const char *end = strstr(l, " (");
        CHECK(end != NULL, "step line without timing: '%.80s'", l);
        o += (size_t)snprintf(dst + o, cap - o, "%.*s\n", (int)(end - l), l);
        CHECK(o < cap);
    }
}

/* Bytes of two files in g_dir equal (and both non-empty). */
static int same_file(const char *a, const char *b)
{
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", g_dir, a);
    snprintf(pb, sizeof pb, "%s/%s", g_dir, b);
    FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
    int same = fa && fb;
    long n = 0;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
        n++;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same && n > 0;
}

/* A copy of run/model.bin named `name` with rms_final (dim 32 floats)
 * set to v: 3e38 is finite, so the file loads, but the forward overflows. */
static void patched_model(const char *name, float v)
{
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/run/model.bin", g_dir);
    snprintf(dst, sizeof dst, "%s/%s", g_dir, name);
    FILE *in = fopen(src, "rb");
    CHECK(in != NULL);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    /* the recipe's model: dim 32, hidden 64, 2 layers, kv dim 32, vocab 300 */
    long d = 32, hd = 64, L = 2, V = 300;
    long rms_final = V * d + L * d + 4 * L * d * d + L * d + 3 * L * hd * d;
    CHECK((size_t)(28 + 4 * (rms_final + d)) <= n);
    for (long i = 0; i < d; i++)
        memcpy(buf + 28 + 4 * (rms_final + i), &v, 4);
    FILE *out = fopen(dst, "wb");
    CHECK(out && fwrite(buf, 1, n, out) == n);
    fclose(out);
}

/* ids of text through tok.bin in g_dir ("1 2 3"), BOS first when bos; n out. */
static void ids_of(const bg_nn_tok *tok, const char *text, int bos, int32_t *ids, int *n,
                   char *list, size_t cap)
{
    bg_err err;
    CHECK(bg_nn_tok_encode(tok, text, strlen(text), bos ? BG_NN_TOK_ADD_BOS : 0, ids,
                           (int)strlen(text) + 3, n, &err) == BG_OK,
          "%s", err.msg);
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; i < *n; i++)
        o += (size_t)snprintf(list + o, cap - o, "%s%d", i ? " " : "", (int)ids[i]);
}

/* lm logits and lm score with text: the same output as the ids the
 * tokenizer gives (the continuation's ids are those that prompt + it adds
 * after the prompt's); a continuation that merges into the prompt's last
 * token is refused. */
static void text_modes(const char *exe)
{
    bg_nn_tok *tok = NULL;
    bg_err err;
    char path[700], args[2048], ids_out[1 << 14];
    snprintf(path, sizeof path, "%s/run/tokenizer.bin", g_dir);
    CHECK(bg_nn_tok_load(path, &tok, &err) == BG_OK, "%s", err.msg);
    static const char prompt[] = "the agent ran send_email";
    static const char cont[] = " and it was fine.";
    int32_t p[256], j[256];
    int np, nj;
    char plist[2048], jlist[2048], clist[2048];
    ids_of(tok, prompt, 1, p, &np, plist, sizeof plist);
    char joined[256];
    snprintf(joined, sizeof joined, "%s%s", prompt, cont);
    ids_of(tok, joined, 1, j, &nj, jlist, sizeof jlist);
    CHECK(nj > np && memcmp(j, p, sizeof *p * (size_t)np) == 0, "the boundary at a space merged");
    size_t o = 0;
    for (int i = np; i < nj; i++)
        o += (size_t)snprintf(clist + o, sizeof clist - o, "%s%d", i > np ? " " : "", (int)j[i]);
    /* logits */
    snprintf(args, sizeof args, "lm logits --model run/model.bin --tokens '%s'", plist);
    CHECK(run(exe, args) == 0, "%s", g_errbuf);
    snprintf(ids_out, sizeof ids_out, "%s", g_out);
    snprintf(args, sizeof args, "lm logits --model run/model.bin --prompt '%s'", prompt);
    CHECK(run(exe, args) == 0 && strcmp(g_out, ids_out) == 0 && strlen(g_out) > 300,
          "logits, text vs ids: %d '%s'", (int)strlen(g_out), g_errbuf);
    /* score */
    snprintf(args, sizeof args,
             "lm score --model run/model.bin --prefix '%s' --continuation '%s' --continuation 3",
             plist, clist);
    CHECK(run(exe, args) == 0, "%s", g_errbuf);
    snprintf(ids_out, sizeof ids_out, "%s", g_out);
    /* id 3 is the byte 0x00's token: text cannot say it, so the second
     * continuation compares the first's value only */
    snprintf(args, sizeof args,
             "lm score --model run/model.bin --prompt '%s' --continuation '%s' --continuation "
             "' and it was harmful.'",
             prompt, cont);
    CHECK(run(exe, args) == 0, "score text: %s", g_errbuf);
    double t1, t2, i1;
    CHECK(sscanf(g_out, "%lf %lf", &t1, &t2) == 2 && sscanf(ids_out, "%lf", &i1) == 1 && t1 == i1 &&
              t1 < 0 && t2 < 0 && t1 != t2,
          "score: text '%s' ids '%s'", g_out, ids_out);
    printf("score, text: %s", g_out);
    /* a continuation whose first bytes merge into the prompt's last token:
     * found by the tokenizer itself among the corpus's words */
    static const char *words[] = {"the",      "agent", "send_email", "harmful",
                                  "password", "fine",  "shell_exec", "report"};
    int found = 0;
    for (size_t w = 0; w < sizeof words / sizeof words[0] && !found; w++)
        for (size_t k = 1; k < strlen(words[w]) && !found; k++) {
            char pre[64];
            snprintf(pre, sizeof pre, "ran %.*s", (int)k, words[w]);
            snprintf(joined, sizeof joined, "ran %s", words[w]);
            ids_of(tok, pre, 1, p, &np, plist, sizeof plist);
            ids_of(tok, joined, 1, j, &nj, jlist, sizeof jlist);
            if (nj >= np && memcmp(j, p, sizeof *p * (size_t)np) == 0)
                continue;
            found = 1;
            snprintf(args, sizeof args,
                     "lm score --model run/model.bin --prompt '%s' --continuation '%s'", pre,
                     words[w] + k);
            int rc = run(exe, args);
            CHECK(rc == 2 && strstr(g_errbuf, "merge with the end of --prompt"), "'%s': rc %d '%s'",
                  args, rc, g_errbuf);
            printf("refused: %s", g_errbuf);
        }
    CHECK(found, "no word of the corpus merges across a split: the refusal is untested");
    /* bad input of the text modes */
    CHECK(run(exe, "lm logits --model run/model.bin --prompt x --tokens 1") == 2 &&
          strstr(g_errbuf, "exclude each other"));
    CHECK(run(exe, "lm logits --model run/model.bin") == 2 && strstr(g_errbuf, "--prompt TEXT"));
    CHECK(run(exe, "lm score --model run/model.bin --prompt x --prefix 1 --continuation 2") == 2 &&
          strstr(g_errbuf, "exclude each other"));
    CHECK(run(exe, "lm score --model run/model.bin --prompt x --continuation ''") == 2 &&
              strstr(g_errbuf, "no tokens"),
          "%s", g_errbuf);
    CHECK(run(exe, "lm logits --model run/model.bin --prompt x --tokenizer cut.bin") == 2 &&
              strstr(g_errbuf, "tokenizer"),
          "%s", g_errbuf);
    bg_nn_tok_destroy(tok);
}

/* --save-every, --resume, lm merge, and a run whose loss is not finite. */
static void resume_merge(const char *exe)
{
    static char a_lines[8192], b_lines[8192];
    char args[1024];
    double held[8], loss[16];
    int hs[8], nh;
    /* LoRA: 12 steps in one run, saving at 6 and 12; then 7..12 again from
     * step-6: the same loss lines to the last digit, the same adapter bytes */
    static const char lora[] = "lm train --model run/model.bin --data corpus.txt --lora 4 "
                               "--lora-alpha 8 --lr 0.01 --steps 12 --batch 2 --seq 8 "
                               "--threads 1 --eval-every 6";
    snprintf(args, sizeof args, "%s --save-every 6 --out la", lora);
    int rc = run(exe, args);
    CHECK(rc == 0 && parse_losses(loss, 16, held, hs, &nh) == 12 && nh == 3 && hs[2] == 12,
          "lora run: rc %d '%s'", rc, g_errbuf);
    double base_held = held[0], lora_held = held[2];
    step_lines(6, a_lines, sizeof a_lines);
    CHECK(exists("la/step-6/adapter.lora") && exists("la/step-6/optimizer.state") &&
              exists("la/step-6/tokenizer.bin") && exists("la/step-12/adapter.lora") &&
              exists("la/optimizer.state") && !exists("la/step-6/.adapter.lora.tmp"),
          "--save-every 6: files");
    CHECK(same_file("la/step-12/adapter.lora", "la/adapter.lora"), "step-12 and the end differ");
    snprintf(args, sizeof args, "%s --resume la/step-6 --out lb", lora);
    rc = run(exe, args);
    step_lines(0, b_lines, sizeof b_lines);
    CHECK(rc == 0 && strstr(g_out, "resumed from la/step-6/optimizer.state at step 6") &&
              !strstr(g_out, "step 6 loss") && strncmp(b_lines, "step 7 loss", 11) == 0,
          "resume: rc %d '%s' '%s'", rc, g_out, g_errbuf);
    CHECK(strcmp(a_lines, b_lines) == 0, "resumed steps differ:\n%s--- vs ---\n%s", a_lines,
          b_lines);
    CHECK(same_file("la/adapter.lora", "lb/adapter.lora") &&
              same_file("la/optimizer.state", "lb/optimizer.state"),
          "resumed adapters or state differ");
    printf("resume (LoRA) from step 6: steps 7-12 and the adapter file identical\n");

    /* full fine-tuning: the state holds every tensor */
    static const char full[] = "lm train --model run/model.bin --data corpus.txt --lr 3e-3 "
                               "--steps 6 --batch 2 --seq 8 --threads 1 --holdout 0";
    snprintf(args, sizeof args, "%s --save-every 3 --out fa", full);
    CHECK(run(exe, args) == 0, "%s", g_errbuf);
    step_lines(3, a_lines, sizeof a_lines);
    snprintf(args, sizeof args, "%s --resume fa/step-3 --out fb", full);
    CHECK(run(exe, args) == 0, "%s", g_errbuf);
    step_lines(0, b_lines, sizeof b_lines);
    CHECK(strncmp(b_lines, "step 4 loss", 11) == 0 && strcmp(a_lines, b_lines) == 0,
          "full resume:\n%s--- vs ---\n%s", a_lines, b_lines);
    CHECK(same_file("fa/model.bin", "fb/model.bin") &&
              same_file("fa/optimizer.state", "fb/optimizer.state"),
          "full resume: model or state differ");

    /* --keep-saves 2: the last two step-N folders stay */
    snprintf(args, sizeof args, "%s --steps 8 --save-every 2 --keep-saves 2 --out fk", full);
    /* full has --steps 6; the later flag would repeat it, so swap it */
    char *st = strstr(args, "--steps 6 ");
    CHECK(st != NULL);
    memmove(st, st + 10, strlen(st + 10) + 1);
    rc = run(exe, args);
    CHECK(rc == 0 && exists("fk/step-6/model.bin") && exists("fk/step-8/optimizer.state") &&
              !exists("fk/step-2") && !exists("fk/step-4") && strstr(g_out, "removed fk/step-4"),
          "--keep-saves: rc %d '%s' '%s'", rc, g_out, g_errbuf);

    /* --resume refused before any step, --out not created */
    static const struct {
        const char *args, *needle;
    } refuse[] = {
        {"--lora 2 --resume la/step-6 --steps 12", "written with LoRA rank 4; this trainer has 2"},
        {"--resume fa/step-3 --steps 12 --lora 4", "written with LoRA rank 0; this trainer has 4"},
        {"--lora 4 --lora-alpha 8 --resume la --steps 12", "the state is at step 12; --steps 12"},
        {"--resume nowhere --steps 3", "no readable optimizer.state"},
        {"--adapter la/adapter.lora --steps 3", "belong to other lm subcommands"},
        {"--keep-saves 2 --steps 3", "it needs --save-every"},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++) {
        snprintf(args, sizeof args,
                 "lm train --model run/model.bin --data corpus.txt --batch 2 --seq 8 %s --out rz",
                 refuse[i].args);
        rc = run(exe, args);
        CHECK(rc == 2 && strstr(g_errbuf, refuse[i].needle) && !strstr(g_out, " loss ") &&
                  !exists("rz"),
              "'%s': rc %d '%s' (want '%s')", args, rc, g_errbuf, refuse[i].needle);
        printf("refused: %s", g_errbuf);
    }

    /* merge: the merged checkpoint's held-out loss is the adapted model's
     * (alpha / r = 2 folded in); the base's differs by far more than the
     * tolerance, so a merge at the wrong scale (or none) fails */
    rc = run(exe, "lm merge --model run/model.bin --adapter la/adapter.lora --out merged.bin");
    CHECK(rc == 0 && strstr(g_out, "wrote merged.bin") && strstr(g_out, "rank 4, alpha 8"),
          "merge: rc %d '%s' '%s'", rc, g_out, g_errbuf);
    rc = run(exe, "lm train --model merged.bin --tokenizer run/tokenizer.bin --data corpus.txt "
                  "--steps 0 --batch 2 --seq 8 --out m0");
    CHECK(rc == 0 && parse_losses(loss, 16, held, hs, &nh) == 0 && nh == 1, "%s", g_errbuf);
    double tol = 1e-4 * lora_held;
    printf("held-out: base %.6f, LoRA %.6f, merged %.6f\n", base_held, lora_held, held[0]);
    CHECK(fabs(held[0] - lora_held) <= tol, "merged %.6f vs adapted %.6f", held[0], lora_held);
    CHECK(fabs(base_held - lora_held) > 20 * tol, "the adapters moved the loss by only %.2e",
          fabs(base_held - lora_held));
    /* merge's bad input: exit 2, nothing written */
    char bad_hdr[700];
    snprintf(bad_hdr, sizeof bad_hdr, "%s/la/adapter.lora", g_dir);
    static char buf[1 << 20];
    FILE *f = fopen(bad_hdr, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    int32_t hidden = 40; /* header: magic[8] | version | dim | hidden_dim ... */
    memcpy(buf + 16, &hidden, 4);
    snprintf(bad_hdr, sizeof bad_hdr, "%s/other.lora", g_dir);
    f = fopen(bad_hdr, "wb");
    CHECK(f && n > 64 && fwrite(buf, 1, n, f) == n);
    fclose(f);
    static const struct {
        const char *args, *needle;
    } mbad[] = {
        {"--model run/model.bin --adapter la/optimizer.state --out x.bin", "bad magic"},
        {"--model run/model.bin --adapter other.lora --out x.bin",
         "written for a model with hidden_dim 40; this model has 64"},
        {"--model run/model.bin --adapter absent.lora --out x.bin", "cannot open"},
        {"--model cut.bin --adapter la/adapter.lora --out x.bin", "--model: checkpoint"},
        {"--model run/model.bin --out x.bin", "are required"},
        {"--model run/model.bin --adapter la/adapter.lora --out x.bin --data corpus.txt",
         "takes --model, --adapter"},
    };
    for (size_t i = 0; i < sizeof mbad / sizeof mbad[0]; i++) {
        snprintf(args, sizeof args, "lm merge %s", mbad[i].args);
        rc = run(exe, args);
        CHECK(rc == 2 && strstr(g_errbuf, mbad[i].needle) && !exists("x.bin"),
              "'%s': rc %d '%s' (want '%s')", args, rc, g_errbuf, mbad[i].needle);
    }
    rc = run(exe, "lm merge --model run/model.bin --adapter la/adapter.lora --out nodir/x.bin");
    CHECK(rc == 1 && strstr(g_errbuf, "nodir/x.bin"), "merge into a missing folder: rc %d '%s'", rc,
          g_errbuf);

    /* a model whose forward overflows (finite weights of 3e38): exit 1 at
     * the first held-out loss, or at step 1 without one; nothing written */
    patched_model("huge.bin", 3e38f);
    rc = run(exe, "lm train --model huge.bin --tokenizer run/tokenizer.bin --data corpus.txt "
                  "--steps 3 --batch 2 --seq 8 --out h1");
    CHECK(rc == 1 && strstr(g_errbuf, "eval step 0: the held-out loss is") &&
              strstr(g_errbuf, "not finite") && !strstr(g_out, "step 1 loss") &&
              !exists("h1/model.bin"),
          "overflow, held-out: rc %d '%s'", rc, g_errbuf);
    rc = run(exe, "lm train --model huge.bin --tokenizer run/tokenizer.bin --data corpus.txt "
                  "--steps 3 --batch 2 --seq 8 --holdout 0 --out h2");
    CHECK(rc == 1 && strstr(g_errbuf, "step 1: the loss is") && strstr(g_errbuf, "not finite") &&
              !exists("h2/model.bin"),
          "overflow, step 1: rc %d '%s'", rc, g_errbuf);
}

static void bad_inputs(const char *exe)
{
    write_file("empty.txt", "");
    write_file("blank.txt", "\n\n\n");
    write_file("oov.txt", "1 2 3\n4 299 300 5\n");
    write_file("notint.txt", "1 2 x3\n");
    write_file("short.txt", "shell_exec ls was fine.\n");
    /* a corrupt checkpoint: a valid one cut short */
    char src[700], dst[700];
    snprintf(src, sizeof src, "%s/run/model.bin", g_dir);
    snprintf(dst, sizeof dst, "%s/cut.bin", g_dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    CHECK(in && out);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n - 100, out);
    fclose(in);
    fclose(out);
    /* a checkpoint of the right size with a NaN in its embedding */
    snprintf(dst, sizeof dst, "%s/nan.bin", g_dir);
    out = fopen(dst, "wb");
    CHECK(out != NULL);
    float nan = NAN;
    memcpy(buf + 28 + 4 * 100, &nan, 4);
    fwrite(buf, 1, n, out);
    fclose(out);
    static const struct {
        const char *args;
        const char *needle;
    } cases[] = {
        {"--model cut.bin --ids --data oov.txt", "--model: checkpoint"},
        {"--model nan.bin --data corpus.txt --tokenizer run/tokenizer.bin",
         "tensor token embedding holds a non-finite value (nan) at float 100"},
        {"--model run/model.bin --ids --data oov.txt", "token 300 (token 6 of the file)"},
        {"--model run/model.bin --ids --data notint.txt", "'x3' is not a token id"},
        {"--model run/model.bin --data corpus.txt --seq 25", "--seq 25 is longer than the model's "
                                                             "context (24"},
        {"--model run/model.bin --data empty.txt", "no tokens"},
        {"--model run/model.bin --data blank.txt", "no tokens"},
        {"--model run/model.bin --ids --data empty.txt", "no tokens"},
        {"--model run/model.bin --data missing.txt", "cannot open"},
        {"--model run/model.bin --data short.txt --seq 16", "the training split has"},
        {"--model run/model.bin --data corpus.txt --holdout 0.001 --seq 24", "held-out split has"},
        {"--init 16,1,2,2,32,200,24 --tokenizer tok.bin --data corpus.txt",
         "would be out of the vocabulary"},
        {"--init 16,1,2,2,32,300,24 --data corpus.txt", "needs --tokenizer"},
        {"--init 16,1,2 --ids --data oov.txt", "expected seven positive integers"},
        {"--init 16,1,3,3,32,300,24 --ids --data oov.txt", "--init"},
        {"--model run/model.bin --init 16,1,2,2,32,300,24 --data corpus.txt", "exactly one"},
        {"--model run/model.bin --ids --tokenizer tok.bin --data oov.txt", "exclude each other"},
        {"--model run/model.bin --data corpus.txt --backend gpu", "--backend 'gpu'"},
        {"--model run/model.bin --data corpus.txt --lr abc", "--lr 'abc'"},
        {"--data corpus.txt --model run/model.bin --tokenizer cut.bin", "--tokenizer: tokenizer"},
    };
    char args[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "lm train %s --out badout --steps 2", cases[i].args);
        int rc = run(exe, args);
        CHECK(rc == 2 && strstr(g_errbuf, cases[i].needle) && !strstr(g_out, "step 1 loss") &&
                  !exists("badout"),
              "'%s': rc %d, stderr '%s' (want '%s')", args, rc, g_errbuf, cases[i].needle);
        printf("refused: %s", g_errbuf);
    }
    CHECK(run(exe, "lm train --help") == 0 && strstr(g_out, "--eval-every N") &&
          strstr(g_out, "[--recompute] [--act-budget SIZE] [--logit-budget SIZE]") &&
          strstr(g_out, "tokenizer train --data FILE --vocab N"));
    CHECK(run(exe, "lm train --model run/model.bin --data corpus.txt") == 2 &&
          strstr(g_errbuf, "--out DIR is required"));
    /* the tokenizer trainer's bad input */
    CHECK(run(exe, "lm tokenizer train --data corpus.txt --out t.bin") == 2 &&
          strstr(g_errbuf, "--vocab N"));
    CHECK(run(exe, "lm tokenizer train --data corpus.txt --vocab 100 --out t.bin") == 2 &&
          strstr(g_errbuf, "--vocab '100'"));
    CHECK(run(exe, "lm tokenizer train --data empty.txt --vocab 300 --out t.bin") == 2 &&
          strstr(g_errbuf, "empty"));
    CHECK(run(exe, "lm tokenizer frobnicate") == 2 && strstr(g_errbuf, "lm tokenizer train"));
    CHECK(!exists("t.bin"));
    /* generate: a prompt the context cannot hold; text and ids together */
    CHECK(run(exe, "lm generate --model run/model.bin --prompt 'a b c d e f g h i j k l m n o p "
                   "q r s t u v w x y z'") == 2 &&
              strstr(g_errbuf, "context is 24"),
          "%s", g_errbuf);
    CHECK(run(exe, "lm generate --model run/model.bin --prompt x --tokens 1") == 2 &&
          strstr(g_errbuf, "exclude each other"));
    /* vulkan: trains (a GPU) or fails with exit 1 and a message */
    int rc = run(exe, "lm train --model run/model.bin --data corpus.txt --steps 1 --batch 2 --seq "
                      "8 --backend vulkan --out vk");
    CHECK(rc == 0 || (rc == 1 && g_errbuf[0]), "vulkan: rc %d '%s'", rc, g_errbuf);
    printf("vulkan training: %s", rc == 0 ? "ran\n" : g_errbuf);
}

int main(void)
{
    const char *build = getenv("BG_BUILD_DIR");
    if (!build) {
        printf("BG_BUILD_DIR not set (run through ctest); skipped\n");
        return BG_TEST_SKIP;
    }
    const char *exes[2] = {"tests/nn/lm_cli_driver", "daemon/bayesguard"};
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        char exe[700];
        snprintf(exe, sizeof exe, "%s/%s", build, exes[i]);
        if (access(exe, X_OK) != 0) {
            printf("%s not built; skipped for it\n", exe);
            continue;
        }
        snprintf(g_dir, sizeof g_dir, "%s", nt_tmpdir());
        snprintf(g_err_path, sizeof g_err_path, "%s/stderr.txt", g_dir);
        printf("--- %s in %s\n", exe, g_dir);
        recipe(exe);
        memory_flags(exe);
        bad_inputs(exe);
        resume_merge(exe);
        text_modes(exe);
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        CHECK(system(cmd) == 0);
        ran++;
    }
    CHECK(ran > 0);
    CHECK_DONE("test_lm_train");
}
