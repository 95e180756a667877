/*
 * test_gfn_io.c — save and load of the full trained state.
 *   1. train, save, load: the loaded sampler draws exactly the same ids and
 *      log q with the same generator, and training both further gives
 *      bit-identical parameters (Adam moments, generator, replay and
 *      counters came back too);
 *   2. load_into replaces an instance's state; a file for another d is
 *      refused and leaves the instance as it was;
 *   3. bad files are refused with a message naming the problem: missing
 *      file, bad magic, unsupported version, truncated, trailing bytes,
 *      a parameter count that does not match the config.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gfn/gfn_priv.h"
#include "gfn_test_util.h"

#define D 6

static double log_r[1u << D];
static char dir[] = "/tmp/bg_gfn_io_______"; /* suffix set to the mkdtemp template at run time */

static bg_gfn *make(uint32_t d, uint64_t seed)
{
    bg_gfn_config c = small_config(d, 24, seed);
    c.epsilon = 0.05;
    bg_gfn *g = gfn_new(&c);
    return g;
}

static void train(bg_gfn *g, uint32_t steps)
{
    table_reward tr = {log_r, 0};
    train_on(g, &tr, steps);
}

static void same_samples(const bg_gfn *a, const bg_gfn *b)
{
    uint64_t ia[200], ib[200];
    double qa[200], qb[200];
    bg_rng ra, rb;
    bg_gfn_rng_seed(&ra, 31);
    bg_gfn_rng_seed(&rb, 31);
    bg_gfn_sample(a, &ra, 200, ia, qa);
    bg_gfn_sample(b, &rb, 200, ib, qb);
    CHECK(memcmp(ia, ib, sizeof ia) == 0 && memcmp(qa, qb, sizeof qa) == 0,
          "samples differ after load");
}

static void write_bytes(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

static void expect_refused(const char *path, const char *needle)
{
    bg_gfn *g = NULL;
    char err[512] = "";
    int rc = bg_gfn_load(path, &g, err, sizeof err);
    CHECK(rc != BG_PLUGIN_OK && g == NULL, "%s must be refused", path);
    CHECK(strstr(err, needle) != NULL, "message \"%s\" lacks \"%s\"", err, needle);
    printf("refused (%d): %s\n", rc, err);
}

int main(void)
{
    memset(dir + sizeof dir - 7, 'X', 6);
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    bg_rng rng;
    bg_gfn_rng_seed(&rng, 1);
    for (uint32_t h = 0; h < (1u << D); h++)
        log_r[h] = 3 * bg_gfn_rng_uniform(&rng);
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/state.gfn", dir);
    snprintf(bad, sizeof bad, "%s/bad.gfn", dir);

    /* 1 */
    bg_gfn *a = make(D, 5);
    train(a, 80);
    char err[512];
    CHECK(bg_gfn_save(a, path, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn *b;
    CHECK(bg_gfn_load(path, &b, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    same_samples(a, b);
    bg_gfn_stats sa, sb;
    bg_gfn_get_stats(a, &sa);
    bg_gfn_get_stats(b, &sb);
    CHECK(sa.steps == sb.steps && sa.reward_evals == sb.reward_evals &&
              sa.replay_size == sb.replay_size && sa.replay_size > 0,
          "counters/replay differ: steps %llu/%llu replay %u/%u", (unsigned long long)sa.steps,
          (unsigned long long)sb.steps, sa.replay_size, sb.replay_size);
    train(a, 40);
    train(b, 40);
    CHECK(memcmp(a->params, b->params, a->n_params * sizeof(double)) == 0,
          "resumed training differs");
    printf("save -> load: identical samples; 40 more steps give identical parameters\n");

    /* 2 */
    bg_gfn *c = make(D, 99);
    CHECK(bg_gfn_load_into(c, path, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    bg_gfn *fresh;
    CHECK(bg_gfn_load(path, &fresh, err, sizeof err) == BG_PLUGIN_OK, "%s", err);
    same_samples(c, fresh);
    bg_gfn *other = make(D + 1, 3);
    double before = other->params[0];
    CHECK(bg_gfn_load_into(other, path, err, sizeof err) == BG_PLUGIN_EINVAL, "d mismatch");
    CHECK(strstr(err, "d=6") && strstr(err, "d=7") && other->params[0] == before, "%s", err);
    printf("load_into: replaced; other d refused: %s\n", err);

    /* 3 */
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "reopen");
    unsigned char *bytes = malloc(1 << 20);
    size_t n = fread(bytes, 1, 1 << 20, f);
    fclose(f);
    CHECK(n > 100 && n < (1 << 20), "file size %zu", n);
    snprintf(bad, sizeof bad, "%s/missing.gfn", dir);
    expect_refused(bad, "No such file");
    snprintf(bad, sizeof bad, "%s/bad.gfn", dir);
    unsigned char save = bytes[0];
    bytes[0] = 'X';
    write_bytes(bad, bytes, n);
    expect_refused(bad, "bad magic");
    bytes[0] = save;
    unsigned char version = bytes[8];
    bytes[8] = 7; /* version */
    write_bytes(bad, bytes, n);
    expect_refused(bad, "version 7");
    bytes[8] = version;
    write_bytes(bad, bytes, n - 9);
    expect_refused(bad, "truncated");
    write_bytes(bad, bytes, 40);
    expect_refused(bad, "truncated in the config");
    bytes[n] = 0;
    write_bytes(bad, bytes, n + 1);
    expect_refused(bad, "1 unexpected bytes");
    /* hidden width (config field 4, after n_bits/min/max) changed: sizes disagree */
    uint32_t hid;
    memcpy(&hid, bytes + 16 + 12, 4);
    CHECK(hid == 24, "hidden field at the expected offset (%u)", hid);
    hid = 25;
    memcpy(bytes + 16 + 12, &hid, 4);
    write_bytes(bad, bytes, n);
    expect_refused(bad, "parameters but its config");

    free(bytes);
    unlink(path);
    unlink(bad);
    rmdir(dir);
    bg_gfn_destroy(a);
    bg_gfn_destroy(b);
    bg_gfn_destroy(c);
    bg_gfn_destroy(fresh);
    bg_gfn_destroy(other);
    printf("ok\n");
    return 0;
}
