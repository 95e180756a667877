/*
 * fuzz_nn_train_files.c — the trainer's adapter and optimizer-state loaders
 * (lib/nn/nn_train_io.c). Input: a selector byte, then the file. Selector
 * bit 0: 0 = bg_nn_lora_load, 1 = bg_nn_train_load_state; bit 1: the
 * harness rewrites the file's trailing CRC-32 first, so the fuzzer reaches
 * the checks behind the CRC (shapes, names, values). One trainer (a tiny
 * synthetic model, LoRA rank 2, made once) serves every input; its files
 * are tests/fuzz/corpus/nn_train_files (make_seeds.py writes them).
 *
 * Checks beyond the sanitizers: a refused file has a message and changes
 * nothing (the logits after equal the logits before, bit for bit); a file
 * that loads leaves finite logits.
 */
#include <math.h>

#include "common/bg_assert.h"
#include "fuzz_util.h"
#include "nn/nn.h"

static bg_nn_trainer *g_t;
static const char *g_dir;
static const int32_t PROMPT[3] = {1, 4, 2};

/* CRC-32 (IEEE), as nn_train_io.c writes it */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void setup(void)
{
    fz_quiet_logs();
    g_dir = fz_tmpdir("train");
    /* the model make_seeds.py's files are written for */
    bg_nn_config c = {8, 12, 1, 2, 1, 7, 4, 1};
    char path[600];
    snprintf(path, sizeof path, "%s/m.bin", g_dir);
    bg_err err;
    bg_nn_ckpt ck;
    if (bg_nn_synth_write(path, &c, 3, &err) != BG_OK || bg_nn_ckpt_open(&ck, path, &err) != BG_OK)
        fz_die("%s", err.msg);
    bg_nn_train_opts o = {.batch = 1, .seq = 4, .lora_rank = 2, .seed = 1};
    o.adamw = (bg_adamw_params){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f};
    bg_compute_opts co = {.kind = BG_BACKEND_CPU, .threads = 1, .device_index = -1};
    if (bg_nn_train_create(&ck, &co, &o, &g_t, &err) != BG_OK)
        fz_die("%s", err.msg);
    bg_nn_ckpt_close(&ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_t)
        setup();
    if (size < 1)
        return 0;
    int state = data[0] & 1, fix_crc = data[0] & 2;
    uint8_t *file = malloc(size);
    if (!file)
        return 0;
    size_t n = size - 1;
    memcpy(file, data + 1, n);
    if (fix_crc && n >= 4) {
        uint32_t crc = crc32_of(file, n - 4);
        memcpy(file + n - 4, &crc, 4);
    }
    if (fz_write(g_dir, "f.bin", file, n) != 0)
        fz_die("cannot write %s/f.bin: %s", g_dir, strerror(errno));
    char path[600];
    snprintf(path, sizeof path, "%s/f.bin", g_dir);
    float before[7], after[7];
    bg_err err;
    bg_err_clear(&err);
    BG_ASSERT(bg_nn_train_logits(g_t, PROMPT, 3, before, &err) == BG_OK, "%s", err.msg);
    int rc = state ? bg_nn_train_load_state(g_t, path, &err) : bg_nn_lora_load(g_t, path, &err);
    bg_err e2;
    BG_ASSERT(bg_nn_train_logits(g_t, PROMPT, 3, after, &e2) == BG_OK, "%s", e2.msg);
    if (rc != BG_OK) {
        BG_ASSERT(err.msg[0] != '\0', "a refused file without a message");
        BG_ASSERT(memcmp(before, after, sizeof before) == 0, "a refused file changed the model: %s",
                  err.msg);
    } else {
        for (int i = 0; i < 7; i++)
            BG_ASSERT(isfinite(after[i]), "a loaded file left logit %d = %g", i, (double)after[i]);
    }
    free(file);
    return 0;
}
