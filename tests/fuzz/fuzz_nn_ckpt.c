/*
 * fuzz_nn_ckpt.c — the llama2.c checkpoint loader (lib/nn/nn_ckpt.c): the
 * input is a checkpoint file, parsed from memory (bg_nn_ckpt_parse) and
 * loaded from a file (bg_nn_ckpt_open). A checkpoint that loads runs
 * through the scalar reference forward (nn_ref.c) for its first and last
 * token at positions 0 and 1, and greedy sampling picks a token.
 * (The project has no tokenizer loader: models score token ids.)
 *
 * Checks beyond the sanitizers: both loaders agree (same status, same
 * config); a loaded checkpoint is exactly bg_nn_ckpt_bytes(config) long;
 * the sampled token is within the vocabulary.
 */
#include "common/bg_assert.h"
#include "fuzz_util.h"
#include "nn/nn.h"

static const char *dir;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir == NULL) {
        fz_quiet_logs();
        dir = fz_tmpdir("ckpt");
    }
    /* A private, aligned copy: a file's bytes as nn_ckpt_open holds them. */
    void *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    bg_nn_ckpt mem, file;
    bg_err err, ferr;
    bg_err_clear(&err);
    bg_err_clear(&ferr);
    int rc = bg_nn_ckpt_parse(&mem, copy, size, "fuzz.bin", &err);
    char path[600];
    snprintf(path, sizeof path, "%s/fuzz.bin", dir);
    if (fz_write(dir, "fuzz.bin", data, size) != 0)
        fz_die("cannot write %s: %s", path, strerror(errno));
    int frc = bg_nn_ckpt_open(&file, path, &ferr);
    BG_ASSERT(rc == frc, "parse says %d (%s), open says %d (%s)", rc, err.msg, frc, ferr.msg);
    if (rc == BG_OK) {
        BG_ASSERT(memcmp(&mem.cfg, &file.cfg, sizeof mem.cfg) == 0,
                  "parse and open decode different configs");
        BG_ASSERT(bg_nn_ckpt_bytes(&mem.cfg) == size, "a %zu-byte checkpoint loaded, expected %llu",
                  size, (unsigned long long)bg_nn_ckpt_bytes(&mem.cfg));
        bg_nn_ref *ref = NULL;
        if (bg_nn_ref_create(&mem, &ref, &err) == BG_OK) {
            int V = mem.cfg.vocab_size;
            bg_nn_ref_forward(ref, 0, 0);
            const float *logits = bg_nn_ref_forward(ref, V - 1, mem.cfg.seq_len > 1 ? 1 : 0);
            bg_nn_sampler s;
            if (bg_nn_sampler_init(&s, V, 0.0f, 1.0f, 1, &err) == BG_OK) {
                float *l = malloc((size_t)V * sizeof *l);
                if (l != NULL) {
                    memcpy(l, logits, (size_t)V * sizeof *l);
                    int tok = bg_nn_sample(&s, l);
                    BG_ASSERT(tok >= 0 && tok < V, "sampled token %d of a vocabulary of %d", tok,
                              V);
                    free(l);
                }
                bg_nn_sampler_close(&s);
            }
            bg_nn_ref_destroy(ref);
        }
        bg_nn_ckpt_close(&file);
    } else {
        BG_ASSERT(err.msg[0] != '\0' && ferr.msg[0] != '\0',
                  "a refused checkpoint without a message");
    }
    free(copy);
    return 0;
}
