/*
 * nn_train_logits.c — bg_nn_train_logits_batch: the next-token logits of
 * many sequences of one length through the trainer (adapters as set), in
 * few recordings (nn.h).
 *
 * Why: a sampler that walks a prefix tree level by level (the lm_gfn
 * plugin's draws of K theories) needs the logits after every distinct
 * prefix of a level. bg_nn_train_logits runs one sequence per recording,
 * so a model as small as stories260K is bound by per-op cost (and on
 * Vulkan by one submit per prefix); here up to o.batch * o.seq / n
 * sequences are one recording whose weights multiply all their rows as
 * one GEMM (attention stays per sequence, as in training).
 *
 * The plan, per chunk of nb sequences: the recording's shape is B = nb,
 * T = n (R = nb * n <= the buffers' rows); the layers' forward over all
 * rows (bg__nn_train_forward); the final norm of each sequence's last row
 * into row j of xf; one classifier matmul of nb rows (M = nb: the same
 * kernel as bg_nn_train_logits only when nb == 1, so logits may differ
 * from it in the last float bits); the logit bias on those rows; one read.
 *
 * A recording holds at most t->lrows sequences: the logits buffer is one
 * chunk of lrows rows (nn_train.c's logit_rows), so at large vocabularies
 * short sequences take more recordings than o.batch * o.seq / n.
 *
 * Invariants: ids are checked on the host before a recording starts; R
 * never exceeds o.batch * o.seq; nb never exceeds t->lrows. Threads: one caller at a time (nn.h).
 * Ownership: the caller's arrays are borrowed for the call.
 */
#include "nn/nn_priv.h"

static bg_tview at(bg_cbuf *b, size_t off)
{
    bg_tview v = {b, off};
    return v;
}

int bg_nn_train_logits_batch(bg_nn_trainer *t, const int32_t *tokens, int nseq, int n,
                             float *logits, bg_err *err)
{
    if (!t || !tokens || !logits)
        return bg_err_set(err, BG_EINVAL, "trainer logits batch: NULL argument");
    if (n < 1 || n > t->o.seq || nseq < 0)
        return bg_err_set(err, BG_EINVAL,
                          "trainer logits batch: %d sequences of %d tokens; expected 1..%d tokens",
                          nseq, n, t->o.seq);
    int rc = bg__nn_train_check_ids(t, tokens, nseq * n, "token", err);
    const bg_nn_config *p = &t->cfg;
    int per = t->o.batch * t->o.seq / n;   /* sequences whose rows fit the buffers */
    per = per < t->lrows ? per : t->lrows; /* ... whose logits fit the buffer's rows */
    for (int s0 = 0; rc == BG_OK && s0 < nseq; s0 += per) {
        int nb = nseq - s0 < per ? nseq - s0 : per;
        rc = bg_cbuf_write(t->c, t->tokens, 0, tokens + (size_t)s0 * n, 4 * (size_t)nb * n, err);
        if (rc == BG_OK)
            rc = bg_compute_begin(t->c, err);
        if (rc != BG_OK)
            break;
        t->B = nb;
        t->T = n;
        t->R = nb * n;
        bg__nn_train_forward(t);
        for (int j = 0; j < nb; j++) /* each sequence's last row */
            bg_op_rmsnorm(t->c, at(t->xf, (size_t)j * p->dim),
                          at(t->X[p->n_layers], ((size_t)j * n + (size_t)(n - 1)) * p->dim),
                          at(t->rms_final, 0), 1, p->dim, BG_NN_RMS_EPS);
        bg_compute_barrier(t->c);
        bg_op_matmul(t->c, at(t->logits, 0), at(t->xf, 0), at(t->wcls, 0), nb, p->vocab_size,
                     p->dim);
        if (t->lbias) {
            bg_compute_barrier(t->c);
            bg_op_add(t->c, at(t->logits, 0), at(t->lbias, 0), nb * p->vocab_size);
        }
        rc = bg_compute_submit(t->c, err);
        if (rc == BG_OK)
            rc = bg_cbuf_read(t->c, t->logits, 0, logits + (size_t)s0 * p->vocab_size,
                              4 * (size_t)nb * p->vocab_size, err);
    }
    return rc;
}
