/*
 * lmgfn_test.h — what the lmgfn tests share: the tiny synthetic model
 * (2 layers, width 16, 16 tokens, context 8) they train on.
 */
#ifndef BG_LMGFN_TEST_H
#define BG_LMGFN_TEST_H

#include <stdlib.h>
#include <unistd.h>

#include "bg_test.h"
#include "lmgfn/lmgfn.h"

/* Writes the tiny model to a new temporary file; path is the mkstemp
 * template ("...XXXXXX"), rewritten in place. The caller unlinks it. */
static inline int lt_tiny_model(char *path)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp %s", path);
    close(fd);
    bg_err err;
    bg_nn_config cfg = {.dim = 16,
                        .hidden_dim = 32,
                        .n_layers = 2,
                        .n_heads = 2,
                        .n_kv_heads = 2,
                        .vocab_size = 16,
                        .seq_len = 8,
                        .shared_classifier = 1};
    CHECK(bg_nn_synth_write(path, &cfg, 5, &err) == BG_OK, "%s", err.msg);
    return 0;
}

#endif
