/*
 * fuzz_obs_log.c — the observation log as the engine reads it at start:
 * the input becomes data_dir/observations.bglog, bg_engine_create replays
 * it (obs_store.c: magic, record lengths, CRCs, the torn-tail truncation;
 * observation.c: the record decoder; the session table), then every policy
 * of fuzz_guards.h evaluates an action for session "s" and summarises it,
 * which replays that session's stored observations into the model.
 *
 * Input: byte 0 holds flags, the rest is the file after its 8-byte magic.
 * Bit 0: write the rest as is (else each whole record's CRC is rewritten
 * to match its payload, so mutations reach the decoder); bit 1: write the
 * input without the magic line (a file that is not a log).
 *
 * Checks beyond the sanitizers: a failed evaluation or summary says why,
 * and an opened log still starts with its magic.
 */
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "engine/engine.h"
#include "engine/obs_store.h"
#include "fuzz_guards.h"
#include "fuzz_util.h"

static bg_policy_store *store;
static char ddir[600], path[700];

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL) {
        fz_quiet_logs();
        const char *dir = fz_tmpdir("obslog");
        store = fz_guards(dir);
        snprintf(ddir, sizeof ddir, "%s/data", dir);
        snprintf(path, sizeof path, "%s/%s", ddir, BG_OBS_STORE_FILE);
        if (mkdir(ddir, 0700) != 0)
            fz_die("mkdir %s: %s", ddir, strerror(errno));
    }
    if (size < 1)
        return 0;
    const size_t mlen = sizeof BG_OBS_STORE_MAGIC - 1;
    size_t n = size - 1, off = (data[0] & 2) ? 0 : mlen;
    uint8_t *file = malloc(off + n + 1);
    if (file == NULL)
        return 0;
    memcpy(file, BG_OBS_STORE_MAGIC, off);
    memcpy(file + off, data + 1, n);
    for (size_t at = off; !(data[0] & 1) && off + n - at >= 8;) {
        uint32_t len = le32(file + at);
        if (len > off + n - at - 8)
            break;
        uint32_t crc = bg__crc32(file + at + 8, len);
        for (int i = 0; i < 4; i++)
            file[at + 4 + i] = (uint8_t)(crc >> (8 * i));
        at += 8 + (size_t)len;
    }
    if (fz_write(ddir, BG_OBS_STORE_FILE, file, off + n) != 0)
        fz_die("cannot write %s: %s", path, strerror(errno));
    free(file);

    bg_engine_opts eo = {.max_sessions = 64, .max_obs_per_session = 1000, .data_dir = ddir};
    bg_engine *e = NULL;
    bg_err err;
    bg_err_clear(&err);
    if (bg_engine_create(&eo, &e, &err) == BG_OK) {
        struct stat st;
        BG_ASSERT(stat(path, &st) == 0 && (size_t)st.st_size >= mlen,
                  "an opened log is shorter than its magic");
        bg_policy_set *set = bg_policy_store_acquire(store);
        static double feats[3] = {1, 0, 1};
        static const bg_attr user = {"user", "s"};
        for (size_t i = 0; i < bg_policy_set_count(set); i++) {
            const bg_policy *p = bg_policy_set_at(set, i);
            size_t nf = strcmp(p->name, "payments") == 0 ? 2 : strcmp(p->name, "arms") == 0 ? 3 : 0;
            bg_action a = {.tool = p->tools[0],
                           .features = feats,
                           .n_features = nf,
                           .attributes = &user,
                           .n_attributes = 1};
            bg_verdict v;
            bg_posterior_summary sum;
            bg_err_clear(&err);
            if (bg_engine_evaluate(e, &p->guard, "s", &a, &v, &err) != BG_OK)
                BG_ASSERT(err.msg[0] != '\0', "policy %s: a failed evaluation without a message",
                          p->name);
            bg_err_clear(&err);
            if (bg_engine_summary(e, &p->guard, "s", &sum, &err) != BG_OK)
                BG_ASSERT(err.msg[0] != '\0', "policy %s: a failed summary without a message",
                          p->name);
        }
        bg_policy_set_unref(set);
        bg_engine_destroy(e);
    }
    unlink(path);
    return 0;
}
