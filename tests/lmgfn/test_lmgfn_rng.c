/*
 * test_lmgfn_rng.c — the random-integer task (lib/lmgfn/lmgfn_rng.c) in a
 * small budget, fixed seed, CPU: a base model trained from scratch on the
 * skewed corpus, then the four methods. The trained GFlowNet sampler must
 * be >= 95% valid with a KL (valid samples vs uniform over 0..100) below
 * the base model's; the base must really be imperfect (< 80% valid, KL >
 * 0.5), so the check is not passed by the base itself.
 *
 * Power: N samples per method (20,000; 4,000 under ASan). The GFlowNet's
 * valid share is ~0.9995 here; its binomial standard error at N = 4,000
 * is < 0.001, so 0.95 is > 40 standard errors away. The empirical KL of a
 * uniform sampler has a bias of about (101 - 1) / (2 N) = 0.0125 at
 * N = 4,000 and a standard deviation of the same order, against the
 * base's ~1.3: a sampler that had not moved from the base would fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bg_test.h"
#include "lmgfn/lmgfn.h"

int main(void)
{
    bg_lmgfn_rng_opts o;
    bg_lmgfn_rng_defaults(&o);
#ifdef BG_SANITIZE
    o.samples = 4000;
#else
    o.samples = 20000;
#endif
    o.base_steps = 300;
    o.steps = 150;
    o.seed = 1;
    o.quiet = 1;
    o.copts = (bg_compute_opts){BG_BACKEND_CPU, 1, 0, -1}; /* tiny ops: one thread is fastest */
    bg_lmgfn_rng_row rows[4];
    bg_err err;
    CHECK(bg_lmgfn_rng_run(&o, rows, &err) == BG_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        printf("%-10s valid %6.2f%%  kl %.4f  %.1f s  (%ld samples)\n", rows[i].method,
               100 * rows[i].valid, rows[i].kl, rows[i].seconds, rows[i].samples);
    CHECK_STR(rows[0].method, "base");
    CHECK(strncmp(rows[1].method, "base T=", 7) == 0, "row 1 is '%s'", rows[1].method);
    CHECK_STR(rows[2].method, "sft");
    CHECK_STR(rows[3].method, "gflownet");
    CHECK(rows[0].valid < 0.80 && rows[0].kl > 0.5,
          "the base model should be far from the target: valid %.3f, kl %.3f", rows[0].valid,
          rows[0].kl);
    CHECK(rows[3].valid >= 0.95, "gflownet valid %.4f < 0.95", rows[3].valid);
    CHECK(rows[3].kl < rows[0].kl / 10, "gflownet kl %.4f not well below the base's %.4f",
          rows[3].kl, rows[0].kl);
    CHECK(rows[3].samples == o.samples);

    /* a checkpoint with another vocabulary is refused, naming the file */
    bg_nn_config c = {.dim = 16,
                      .hidden_dim = 32,
                      .n_layers = 1,
                      .n_heads = 2,
                      .n_kv_heads = 2,
                      .vocab_size = 32,
                      .seq_len = 8,
                      .shared_classifier = 1};
    char path[] = "/tmp/bg-test-lmgfn-rng-XXXXXX.bin";
    int fd = mkstemps(path, 4);
    CHECK(fd >= 0);
    close(fd);
    CHECK(bg_nn_synth_write(path, &c, 3, &err) == BG_OK, "%s", err.msg);
    o.model = path;
    CHECK(bg_lmgfn_rng_run(&o, rows, &err) == BG_EINVAL);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "vocabulary of 32"), "message: %s", err.msg);
    unlink(path);
    CHECK_DONE("test_lmgfn_rng");
}
