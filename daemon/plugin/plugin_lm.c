/*
 * plugin_lm.c — the host's language-model service (plugin.h, ABI 1.3:
 * host->lm_open, lm_close, lm_info, lm_encode, lm_score, lm_next): models
 * loaded once per file set and shared, and a batching queue per model.
 *
 * Registry. One process-wide list of loaded models under `reg_mu`. A model
 * is keyed by its checkpoint, tokenizer and adapter paths, the backend, and
 * each file's identity (device, inode, size, mtime): two policies naming
 * the same files share one model (a reference each); a reload after a file
 * changed opens a new model beside the old one, and the old one is freed
 * when the last instance using it (the old snapshot's) closes it. A file
 * that is missing or fails validation (bg_nn_ckpt_open, the tokenizer
 * (bg_nn_tok_load, and its size against the vocabulary), bg_nn_lora_load)
 * is a config error at the policy's node: the
 * policy fails to load, the store keeps the last good snapshot. Nothing
 * falls back to another backend or file. So is a file that someone other
 * than root and the daemon's user could write (lib/common/bg_trust.h, the
 * rule the policy files and plugins pass): the weights decide the scores,
 * and so the verdicts.
 *
 * Adapter: a LoRA file (bg_nn_lora_save) is folded into the base weights
 * once at open (a CPU trainer of the file's rank loads it and writes a
 * merged checkpoint to a private temporary file, which is loaded on the
 * chosen backend and unlinked), so scoring costs what the base model costs.
 *
 * Queue. A bg_nn_model is used by one thread at a time (nn.h), so each
 * model has one worker thread; lm_score and lm_next validate their items on
 * the caller's thread, append one request to the model's queue and wait on
 * it. The worker takes every queued request at once (a batch of concurrent
 * callers). All the score requests of a batch become ONE
 * bg_nn_score_batch call (nn.h): the items' token sequences form a trie
 * whose nodes run once each, every weight as one GEMM over all of them
 * (the prompt's head once, each theory's text once for its harm and safe
 * items, the items of concurrent Evaluates in the same pass), and the head
 * all items share stays in the KV cache for the next batch (lib/nn
 * remembers the tokens its cache holds). If that call fails, each request
 * is run alone, so a failure is reported to the request that causes it.
 * lm_next requests then run one prefix at a time: the worker remembers
 * which tokens its KV cache holds after its own prefills and runs only a
 * prefix's part past their longest common prefix. The queue holds at
 * most BG_LM_QUEUE_ITEMS items: a call that would pass it fails at once
 * with BG_PLUGIN_ELIMIT and a message saying so (the decision fails closed
 * as INTERNAL; nothing waits unboundedly), and one call may carry at most
 * BG_LM_CALL_ITEMS items.
 *
 * Score cache (plugin_lm_cache.h). lm_score first answers, on the caller's
 * thread, every item the model's cache holds (exact token sequences,
 * bounded LRU); only the rest go to the queue, and their answers into the
 * cache. So the Observe of an action — lm_theory's likelihood of the
 * outcome is the same items as its Evaluate's harm — and a repeated
 * Evaluate cost lookups. The cache is the model's: a reload that changes a
 * file makes a new model with an empty cache. BG_LM_SCORE_CACHE=N sets its
 * entries (0: off, which bench/rpc/bench_lm_theory.sh uses to time the
 * forward itself).
 *
 * Invariants: (1) a model in the registry has refs >= 1; (2) `queued` is
 * the sum of the n of the requests in the queue; (3) a request is answered
 * (done = 1) exactly once, by the worker, and its caller frees nothing
 * until then; (4) the worker stops only at refs == 0, when no caller can be
 * waiting.
 *
 * Threads: open/close on the policy loader's thread (under reg_mu);
 * info/encode from any thread (immutable after open); score/next from any
 * thread (the queue's mutex); the model's compute only on its worker.
 * Ownership: a bg_lm is shared (refs); the items and outputs of a call are
 * borrowed by the worker until the call returns.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bg_assert.h"
#include "common/bg_log.h"
#include "common/bg_trust.h"
#include "cfg/cfg.h"
#include "nn/nn.h"
#include "nn/nn_tok.h"
#include "plugin/plugin_lm_cache.h"
#include "plugin/plugin_priv.h"

#define BG_LM_QUEUE_ITEMS 16384 /* items waiting in one model's queue */
#define BG_LM_CALL_ITEMS 4096   /* items one call may carry */
/* What a writer of a model file could do (bg_trust.h's `stake`). */
#define MODEL_STAKE "can change the language model's scores, and so every verdict that uses them"

typedef struct lm_req {
    int next_tokens; /* 0: score (out_score), 1: next-token log-probs (out_next) */
    const bg_lm_item *items;
    size_t n;
    double *out_score;
    float *out_next;
    int rc;
    char msg[256];
    int done;
    struct lm_req *link;
} lm_req;

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

struct bg_lm {
    bg_lm *reg_next; /* registry list, under reg_mu */
    int refs;        /* under reg_mu */
    char *ckpt, *tok_path, *adapter;
    int backend;
    file_id fid[3]; /* checkpoint, tokenizer, adapter */
    bg_nn_model *model;
    bg_nn_tok *tok;
    bg_nn_config cfg;
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    lm_req *head, *tail;
    size_t queued; /* invariant 2 */
    int stop;
    /* The worker's own (no lock): */
    float *logits;  /* [vocab] scratch */
    float *base;    /* [vocab] the logits after the current prefix */
    int32_t *cache; /* [seq_len] the tokens the KV cache holds at 0..n_cache */
    int n_cache;
    bg__lm_cache *scores; /* lm_score's answers by exact item (any thread) */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static bg_lm *reg_head;

static int stat_id(const char *what, const char *path, file_id *id, bg_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return bg_err_set(err, BG_ENOTFOUND, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return bg_err_set(err, BG_EINVAL, "%s %s: not a regular file", what, path);
    *id = (file_id){st.st_dev, st.st_ino, st.st_size, st.st_mtim};
    return BG_OK;
}

static int same_id(const file_id *a, const file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* A relative path is relative to the directory of the policy file that
 * names it (the node's file), so a policy and its model travel together. */
static const char *resolve(const bg_cfg_node *at, const char *path, char *buf, size_t len)
{
    const char *file = at ? bg_cfg_file(at) : NULL;
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (!path || path[0] == '/' || !slash)
        return path;
    snprintf(buf, len, "%.*s/%s", (int)(slash - file), file, path);
    return buf;
}

static int same_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* ---- the worker ------------------------------------------------------------ */

/* Makes the KV cache hold p[0..n) and leaves the logits after it in
 * m->base: only the part past the longest common prefix with what the
 * cache holds is run (the KV reuse of the header comment). */
static int prefill(bg_lm *m, const int32_t *p, int n, bg_err *err)
{
    int l = 0;
    while (l < m->n_cache && l < n - 1 && m->cache[l] == p[l])
        l++;
    m->n_cache = 0; /* invalid while the forward runs */
    int rc = bg_nn_forward(m->model, p + l, n - l, l, m->base, err);
    if (rc == BG_OK) {
        memcpy(m->cache, p, (size_t)n * sizeof *p);
        m->n_cache = n;
    }
    return rc;
}

/* Every score request of a batch in one bg_nn_score_batch call (the items
 * of concurrent Evaluates share its trie and its GEMMs). Should that call
 * fail, each request is run alone so that only a request that fails itself
 * gets the error. */
static int score_some(bg_lm *m, lm_req *const *rs, size_t nr, bg_err *err)
{
    size_t total = 0;
    for (size_t k = 0; k < nr; k++)
        total += rs[k]->n;
    bg_nn_item *it =
        calloc(total ? total : 1, sizeof *it); /* zeroed: gcc reads a const array as used */
    double *out = malloc(total * sizeof *out);
    int rc = it && out ? BG_OK : bg_err_set(err, BG_ENOMEM, "out of memory for %zu items", total);
    size_t j = 0;
    for (size_t k = 0; rc == BG_OK && k < nr; k++)
        for (size_t i = 0; i < rs[k]->n; i++, j++) {
            const bg_lm_item *a = &rs[k]->items[i]; /* lengths checked by submit */
            it[j] = (bg_nn_item){a->prefix, (int)a->n_prefix, a->cont, (int)a->n_cont};
        }
    m->n_cache = 0; /* the batch moves the KV cache (prefill's record is void) */
    if (rc == BG_OK)
        rc = bg_nn_score_batch(m->model, it, (int)total, out, err);
    j = 0;
    for (size_t k = 0; rc == BG_OK && k < nr; k++)
        for (size_t i = 0; i < rs[k]->n; i++, j++)
            rs[k]->out_score[i] = out[j];
    free(it);
    free(out);
    return rc;
}

static void run_scores(bg_lm *m, lm_req *batch)
{
    size_t nr = 0;
    for (lm_req *r = batch; r; r = r->link)
        nr += !r->next_tokens;
    lm_req **rs = malloc((nr ? nr : 1) * sizeof *rs);
    bg_err err = {0};
    if (!rs) {
        bg_err_set(&err, BG_ENOMEM, "out of memory for %zu requests", nr);
    } else {
        nr = 0;
        for (lm_req *r = batch; r; r = r->link)
            if (!r->next_tokens)
                rs[nr++] = r;
        if (nr == 0 || score_some(m, rs, nr, &err) == BG_OK) {
            free(rs);
            return;
        }
    }
    for (lm_req *r = batch; r; r = r->link) { /* alone, so one failure is one's */
        if (r->next_tokens)
            continue;
        if (nr > 1 && score_some(m, &r, 1, &err) == BG_OK)
            continue;
        r->rc = BG_PLUGIN_EINTERNAL;
        snprintf(r->msg, sizeof r->msg, "language model %s: %s", m->ckpt, err.msg);
    }
    free(rs);
}

static void run_next(bg_lm *m, lm_req *r)
{
    int V = m->cfg.vocab_size;
    for (size_t i = 0; r->rc == BG_PLUGIN_OK && i < r->n; i++) {
        bg_err err = {0};
        if (prefill(m, r->items[i].prefix, (int)r->items[i].n_prefix, &err) != BG_OK) {
            r->rc = BG_PLUGIN_EINTERNAL;
            snprintf(r->msg, sizeof r->msg, "language model %s: %s", m->ckpt, err.msg);
            break;
        }
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++)
            mx = m->base[v] > mx ? m->base[v] : mx;
        for (int v = 0; v < V; v++)
            s += exp((double)m->base[v] - mx);
        double lse = mx + log(s);
        float *o = r->out_next + i * (size_t)V;
        for (int v = 0; v < V; v++)
            o[v] = (float)((double)m->base[v] - lse);
    }
}

static void *worker_main(void *arg)
{
    bg_lm *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->head && !m->stop)
            pthread_cond_wait(&m->work_cv, &m->mu);
        if (!m->head && m->stop)
            break;
        lm_req *batch = m->head; /* every caller queued so far: one batch */
        m->head = m->tail = NULL;
        pthread_mutex_unlock(&m->mu);
        size_t done_items = 0;
        run_scores(m, batch);
        for (lm_req *r = batch; r; r = r->link) {
            if (r->next_tokens)
                run_next(m, r);
            done_items += r->n;
        }
        pthread_mutex_lock(&m->mu);
        for (lm_req *r = batch, *nx; r; r = nx) {
            nx = r->link; /* r belongs to its caller once done is set */
            r->done = 1;
        }
        m->queued -= done_items;
        pthread_cond_broadcast(&m->done_cv);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- open / close ---------------------------------------------------------- */

static void model_free(bg_lm *m)
{
    if (!m)
        return;
    free(m->logits);
    free(m->base);
    free(m->cache);
    bg__lm_cache_destroy(m->scores);
    bg_nn_tok_destroy(m->tok);
    bg_nn_model_destroy(m->model);
    free(m->ckpt);
    free(m->tok_path);
    free(m->adapter);
    free(m);
}

/* The checkpoint with the adapter folded in, loaded on copts (see the
 * header comment, "Adapter"). */
static int load_adapted(bg_lm *m, const bg_compute_opts *copts, bg_err *err)
{
    FILE *f = fopen(m->adapter, "rb");
    int32_t rank = 0;
    if (!f)
        return bg_err_set(err, BG_ENOTFOUND, "adapter %s: %s", m->adapter, strerror(errno));
    int ok = fseek(f, 40, SEEK_SET) == 0 && fread(&rank, 4, 1, f) == 1; /* hdr.rank */
    fclose(f);
    if (!ok || rank < 1 || rank > 4096)
        return bg_err_set(err, BG_EINVAL,
                          "adapter %s: no LoRA rank in 1..4096 at its header: not a bayesguard "
                          "adapter file (bg_nn_lora_save)",
                          m->adapter);
    bg_nn_ckpt ck;
    int rc = bg_nn_ckpt_open(&ck, m->ckpt, err);
    if (rc != BG_OK)
        return rc;
    bg_nn_train_opts o = {.batch = 1, .seq = 1, .lora_rank = rank};
    bg_compute_opts cpu = {.kind = BG_BACKEND_CPU, .threads = 1};
    bg_nn_trainer *t = NULL;
    rc = bg_nn_train_create(&ck, &cpu, &o, &t, err);
    bg_nn_ckpt_close(&ck);
    if (rc == BG_OK)
        rc = bg_nn_lora_load(t, m->adapter, err);
    const char *dir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/bayesguard-lm-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = rc == BG_OK ? mkstemp(tmp) : -1;
    if (rc == BG_OK && fd < 0)
        rc = bg_err_set(err, BG_EIO, "adapter %s: cannot create a temporary file %s: %s",
                        m->adapter, tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (rc == BG_OK)
        rc = bg_nn_train_save_checkpoint(t, tmp, err);
    bg_nn_train_destroy(t);
    if (rc == BG_OK)
        rc = bg_nn_model_load(tmp, copts, &m->model, err);
    if (fd >= 0)
        unlink(tmp);
    return rc;
}

/* Entries of each model's score cache: BG_LM_SCORE_CACHE (0 turns it off:
 * the benchmark of the forward itself), else BG__LM_CACHE_ITEMS. */
static size_t score_cache_items(void)
{
    const char *e = getenv("BG_LM_SCORE_CACHE");
    if (!e || !*e)
        return BG__LM_CACHE_ITEMS;
    char *end = NULL;
    long v = strtol(e, &end, 10);
    if (*end || v < 0 || v > (1L << 24)) {
        bg_log(BG_LOG_WARN, "plugin",
               "BG_LM_SCORE_CACHE=%s ignored: expected a number of entries 0..16777216", e);
        return BG__LM_CACHE_ITEMS;
    }
    return (size_t)v;
}

static int model_load(bg_lm *m, bg_err *err)
{
    bg_compute_opts copts = {.kind = (bg_backend_kind)m->backend,
                             .allow_cpu_device = m->backend == BG_BACKEND_VULKAN,
                             .device_index = -1};
    int rc = m->adapter ? load_adapted(m, &copts, err)
                        : bg_nn_model_load(m->ckpt, &copts, &m->model, err);
    if (rc != BG_OK)
        return rc;
    m->cfg = *bg_nn_model_config(m->model);
    rc = bg_nn_tok_load(m->tok_path, &m->tok, err);
    if (rc == BG_OK && bg_nn_tok_size(m->tok) != m->cfg.vocab_size)
        rc = bg_err_set(err, BG_EINVAL,
                        "tokenizer %s has %d tokens; checkpoint %s has a vocabulary of %d: "
                        "give the tokenizer the model was trained with",
                        m->tok_path, bg_nn_tok_size(m->tok), m->ckpt, m->cfg.vocab_size);
    if (rc == BG_OK && (!(m->logits = malloc((size_t)m->cfg.vocab_size * sizeof *m->logits)) ||
                        !(m->base = malloc((size_t)m->cfg.vocab_size * sizeof *m->base)) ||
                        !(m->cache = malloc((size_t)m->cfg.seq_len * sizeof *m->cache))))
        rc = bg_err_set(err, BG_ENOMEM, "language model %s: out of memory", m->ckpt);
    if (rc == BG_OK)
        rc = bg__lm_cache_create(score_cache_items(), &m->scores, err);
    return rc;
}

/* The identity the instance's key takes from m (plugin_priv.h). */
static uint64_t model_identity(const bg_lm *m)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 3; i++) {
        const file_id *f = &m->fid[i];
        uint64_t v[5] = {(uint64_t)f->dev, (uint64_t)f->ino, (uint64_t)f->size,
                         (uint64_t)f->mtime.tv_sec, (uint64_t)f->mtime.tv_nsec};
        for (int k = 0; k < 5; k++)
            h = (h ^ v[k]) * 0x100000001b3ULL;
    }
    return (h ^ (uint64_t)m->backend) * 0x100000001b3ULL;
}

int bg__lm_open(void *host_ctx, const bg_cfg_node *at, const bg_lm_spec *spec, bg_lm **out)
{
    *out = NULL;
    if (!spec || spec->size < sizeof(bg_lm_spec) || !spec->checkpoint || !*spec->checkpoint ||
        !spec->tokenizer || !*spec->tokenizer)
        return bg__services_cfg_error(host_ctx, at,
                                      "a language model needs `checkpoint` and `tokenizer` "
                                      "(llama2.c files)");
    const char *bk = spec->backend ? spec->backend : "auto";
    int kind = bg_backend_kind_parse(bk);
    if (kind < 0)
        return bg__services_cfg_error(host_ctx, at,
                                      "backend `%s` is unknown; expected cpu, "
                                      "vulkan or auto",
                                      bk);
    char pb[3][4096];
    bg_lm_spec rs = *spec; /* the paths resolved */
    rs.checkpoint = resolve(at, spec->checkpoint, pb[0], sizeof pb[0]);
    rs.tokenizer = resolve(at, spec->tokenizer, pb[1], sizeof pb[1]);
    rs.adapter =
        spec->adapter && *spec->adapter ? resolve(at, spec->adapter, pb[2], sizeof pb[2]) : NULL;
    spec = &rs;
    const char *adapter = spec->adapter;
    file_id fid[3] = {{0}};
    bg_err err = {0};
    if (stat_id("checkpoint", spec->checkpoint, &fid[0], &err) != BG_OK ||
        stat_id("tokenizer", spec->tokenizer, &fid[1], &err) != BG_OK ||
        (adapter && stat_id("adapter", adapter, &fid[2], &err) != BG_OK))
        return bg__services_cfg_error(host_ctx, at, "%s", err.msg);
    /* The files are the model's weights: whoever can write one sets every
     * score, so they pass the policy's own rule (bg_trust.h). */
    const char *files[3][2] = {{spec->checkpoint, "model checkpoint"},
                               {spec->tokenizer, "model tokenizer"},
                               {adapter, "LoRA adapter"}};
    for (int k = 0; k < 3; k++) {
        char why[1024];
        if (files[k][0] && !bg_path_trusted(files[k][0], files[k][1], MODEL_STAKE, why, sizeof why))
            return bg__services_cfg_error(host_ctx, at, "%s", why);
    }

    pthread_mutex_lock(&reg_mu);
    for (bg_lm *m = reg_head; m; m = m->reg_next)
        if (same_str(m->ckpt, spec->checkpoint) && same_str(m->tok_path, spec->tokenizer) &&
            same_str(m->adapter, adapter) && m->backend == kind && same_id(&m->fid[0], &fid[0]) &&
            same_id(&m->fid[1], &fid[1]) && (!adapter || same_id(&m->fid[2], &fid[2]))) {
            m->refs++;
            pthread_mutex_unlock(&reg_mu);
            bg__services_add_identity(host_ctx, model_identity(m));
            *out = m;
            return BG_PLUGIN_OK;
        }
    bg_lm *m = calloc(1, sizeof *m);
    int rc = m ? BG_OK : BG_ENOMEM;
    if (m) {
        m->backend = kind;
        memcpy(m->fid, fid, sizeof fid);
        m->ckpt = strdup(spec->checkpoint);
        m->tok_path = strdup(spec->tokenizer);
        m->adapter = adapter ? strdup(adapter) : NULL;
        if (!m->ckpt || !m->tok_path || (adapter && !m->adapter))
            rc = BG_ENOMEM;
    }
    if (rc == BG_OK)
        rc = model_load(m, &err);
    else
        bg_err_set(&err, BG_ENOMEM, "language model %s: out of memory", spec->checkpoint);
    if (rc == BG_OK) {
        pthread_mutex_init(&m->mu, NULL);
        pthread_cond_init(&m->work_cv, NULL);
        pthread_cond_init(&m->done_cv, NULL);
        if (pthread_create(&m->worker, NULL, worker_main, m) != 0) {
            pthread_cond_destroy(&m->done_cv);
            pthread_cond_destroy(&m->work_cv);
            pthread_mutex_destroy(&m->mu);
            rc = bg_err_set(&err, BG_EINTERNAL, "language model %s: cannot start its thread",
                            spec->checkpoint);
        }
    }
    if (rc != BG_OK) {
        pthread_mutex_unlock(&reg_mu);
        model_free(m);
        return bg__services_cfg_error(host_ctx, at, "%s", err.msg);
    }
    m->refs = 1;
    m->reg_next = reg_head;
    reg_head = m;
    pthread_mutex_unlock(&reg_mu);
    bg_log(BG_LOG_INFO, "plugin", "%s: language model %s on %s", bg__services_plugin_name(host_ctx),
           m->ckpt, bg_nn_model_backend(m->model));
    bg__services_add_identity(host_ctx, model_identity(m));
    *out = m;
    return BG_PLUGIN_OK;
}

void bg__lm_close(void *host_ctx, bg_lm *m)
{
    (void)host_ctx;
    if (!m)
        return;
    pthread_mutex_lock(&reg_mu);
    BG_ASSERT(m->refs >= 1, "language model %s closed more often than opened", m->ckpt);
    if (--m->refs > 0) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (bg_lm **p = &reg_head; *p; p = &(*p)->reg_next)
        if (*p == m) {
            *p = m->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(&m->mu);
    BG_ASSERT(!m->head && m->queued == 0, "language model %s: %zu items queued at its last close",
              m->ckpt, m->queued);
    m->stop = 1;
    pthread_cond_signal(&m->work_cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->worker, NULL);
    pthread_cond_destroy(&m->done_cv);
    pthread_cond_destroy(&m->work_cv);
    pthread_mutex_destroy(&m->mu);
    model_free(m);
}

void bg__lm_info(const bg_lm *m, bg_lm_info *out)
{
    *out = (bg_lm_info){.vocab_size = m->cfg.vocab_size,
                        .seq_len = m->cfg.seq_len,
                        .bos = 1,
                        .backend = bg_nn_model_backend(m->model)};
}

int bg__lm_encode(const bg_lm *m, const char *text, int32_t *out, size_t cap, size_t *n_out)
{
    size_t len = strlen(text);
    *n_out = 0;
    if (len > BG_NN_TOK_MAX_TEXT)
        return BG_PLUGIN_ELIMIT;
    if (cap < len + 3) /* what bg_nn_tok_encode may yield */
        return BG_PLUGIN_EINVAL;
    bg_err err = {0};
    int n = 0;
    int rc = bg_nn_tok_encode(m->tok, text, len, 0, out, cap > INT32_MAX ? INT32_MAX : (int)cap, &n,
                              &err);
    *n_out = (size_t)n;
    return rc == BG_OK ? BG_PLUGIN_OK : rc == BG_ENOMEM ? BG_PLUGIN_ENOMEM : BG_PLUGIN_EINVAL;
}

/* ---- the calls ------------------------------------------------------------- */

static int check_ids(const bg_lm *m, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return 0;
    return 1;
}

/* The call's limits and each item's lengths and ids, on the caller's
 * thread: BG_PLUGIN_OK or an error with msg filled. */
static int check_req(const bg_lm *m, const lm_req *r, char *msg, size_t msg_len)
{
    if (r->n > BG_LM_CALL_ITEMS) {
        snprintf(msg, msg_len, "language model %s: %zu items in one call; at most %d", m->ckpt,
                 r->n, BG_LM_CALL_ITEMS);
        return BG_PLUGIN_ELIMIT;
    }
    for (size_t i = 0; i < r->n; i++) {
        const bg_lm_item *it = &r->items[i];
        size_t nc = r->next_tokens ? 0 : it->n_cont;
        if (it->n_prefix < 1 || (!r->next_tokens && nc < 1) ||
            it->n_prefix + nc > (size_t)m->cfg.seq_len) {
            snprintf(msg, msg_len,
                     "language model %s: item %zu has %zu prefix + %zu continuation tokens; "
                     "expected >= 1 each and at most %d in all (the model's seq_len)",
                     m->ckpt, i, it->n_prefix, nc, m->cfg.seq_len);
            return BG_PLUGIN_EINVAL;
        }
        if (!check_ids(m, it->prefix, it->n_prefix) || !check_ids(m, it->cont, nc)) {
            snprintf(msg, msg_len, "language model %s: item %zu has a token id outside 0..%d",
                     m->ckpt, i, m->cfg.vocab_size - 1);
            return BG_PLUGIN_EINVAL;
        }
    }
    return BG_PLUGIN_OK;
}

/* Queues r (checked) and waits for the worker's answer. */
static int submit(bg_lm *m, lm_req *r, char *msg, size_t msg_len)
{
    pthread_mutex_lock(&m->mu);
    if (m->queued + r->n > BG_LM_QUEUE_ITEMS) {
        size_t q = m->queued;
        pthread_mutex_unlock(&m->mu);
        snprintf(msg, msg_len,
                 "language model %s: queue full (%zu items waiting, limit %d): the model is "
                 "slower than the request rate; retry later",
                 m->ckpt, q, BG_LM_QUEUE_ITEMS);
        return BG_PLUGIN_ELIMIT;
    }
    m->queued += r->n;
    if (m->tail)
        m->tail->link = r;
    else
        m->head = r;
    m->tail = r;
    pthread_cond_signal(&m->work_cv);
    while (!r->done)
        pthread_cond_wait(&m->done_cv, &m->mu);
    pthread_mutex_unlock(&m->mu);
    if (r->rc != BG_PLUGIN_OK)
        snprintf(msg, msg_len, "%s", r->msg);
    return r->rc;
}

/* Answers from the score cache what it holds; the rest (in their order)
 * go to the worker as one request, and their answers into the cache. */
int bg__lm_score(bg_lm *m, const bg_lm_item *items, size_t n, double *out, char *msg,
                 size_t msg_len)
{
    char none[1];
    if (!msg || !msg_len) {
        msg = none;
        msg_len = sizeof none;
    }
    if (n == 0)
        return BG_PLUGIN_OK;
    lm_req r = {.items = items, .n = n, .out_score = out};
    int rc = check_req(m, &r, msg, msg_len);
    if (rc != BG_PLUGIN_OK)
        return rc;
    size_t *miss = malloc(n * sizeof *miss), nm = 0;
    if (!miss) {
        snprintf(msg, msg_len, "language model %s: out of memory for %zu items", m->ckpt, n);
        return BG_PLUGIN_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (!bg__lm_cache_get(m->scores, items[i].prefix, items[i].n_prefix, items[i].cont,
                              items[i].n_cont, &out[i]))
            miss[nm++] = i;
    bg_lm_item *sub = nm && nm < n ? malloc(nm * sizeof *sub) : NULL;
    double *sout = nm && nm < n ? malloc(nm * sizeof *sout) : NULL;
    if (nm && nm < n && (!sub || !sout)) {
        rc = BG_PLUGIN_ENOMEM;
        snprintf(msg, msg_len, "language model %s: out of memory for %zu items", m->ckpt, nm);
    } else if (nm) {
        for (size_t k = 0; sub && k < nm; k++)
            sub[k] = items[miss[k]];
        r = (lm_req){.items = sub ? sub : items, .n = nm, .out_score = sout ? sout : out};
        rc = submit(m, &r, msg, msg_len);
        for (size_t k = 0; rc == BG_PLUGIN_OK && k < nm; k++) {
            const bg_lm_item *it = &items[miss[k]];
            if (sout)
                out[miss[k]] = sout[k];
            bg__lm_cache_put(m->scores, it->prefix, it->n_prefix, it->cont, it->n_cont,
                             out[miss[k]]);
        }
    }
    free(sout);
    free(sub);
    free(miss);
    return rc;
}

int bg__lm_next(bg_lm *m, const bg_lm_item *items, size_t n, float *out, char *msg, size_t msg_len)
{
    char none[1];
    if (!msg || !msg_len) {
        msg = none;
        msg_len = sizeof none;
    }
    if (n == 0)
        return BG_PLUGIN_OK;
    lm_req r = {.next_tokens = 1, .items = items, .n = n, .out_next = out};
    int rc = check_req(m, &r, msg, msg_len);
    return rc == BG_PLUGIN_OK ? submit(m, &r, msg, msg_len) : rc;
}
