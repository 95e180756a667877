/*
 * fuzz_escalation_log.c — the escalations file as the daemon reads it at
 * start: the input becomes data_dir/escalations.log and
 * bg_escalation_create replays it (escalation_file.c: lengths, CRCs, the
 * torn-tail cut; escalation_rec.c: the JSON record decoder), then the table
 * is listed, one record resolved, everything expired, and the table closed
 * and opened again from the file it rewrote.
 *
 * Input: byte 0 holds flags, the rest is the file. Bit 0: write the rest
 * as is (else each whole record's CRC is rewritten to match its payload, so
 * mutations reach the JSON decoder).
 *
 * Checks beyond the sanitizers: a refused file names the file; after the
 * resolve and the expiry, the table's file opens again with as many
 * records as the table held.
 */
#include <sys/stat.h>
#include <zlib.h>

#include "common/bg_assert.h"
#include "escalation/escalation.h"
#include "fuzz_util.h"

static char ddir[600];
static size_t held;
static char first_id[64];

static void count(void *arg, const bg_escalation_rec *r)
{
    (void)arg;
    if (held++ == 0)
        snprintf(first_id, sizeof first_id, "%s", r->id);
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ddir[0] == '\0') {
        fz_quiet_logs();
        snprintf(ddir, sizeof ddir, "%s", fz_tmpdir("esclog"));
    }
    if (size < 1)
        return 0;
    size_t n = size - 1;
    uint8_t *file = malloc(n + 1);
    if (file == NULL)
        return 0;
    memcpy(file, data + 1, n);
    for (size_t at = 0; !(data[0] & 1) && n - at >= 8;) {
        uint32_t len = le32(file + at);
        if (len > n - at - 8)
            break;
        uint32_t crc = (uint32_t)crc32(0L, file + at + 8, len);
        for (int i = 0; i < 4; i++)
            file[at + 4 + i] = (uint8_t)(crc >> (8 * i));
        at += 8 + (size_t)len;
    }
    if (fz_write(ddir, BG_ESC_FILE, file, n) != 0)
        fz_die("cannot write %s/%s: %s", ddir, BG_ESC_FILE, strerror(errno));
    free(file);

    bg_escalation_opts o = {.data_dir = ddir, .max_pending = 8, .max_settled = 8};
    bg_escalation *t = NULL;
    bg_err err;
    bg_err_clear(&err);
    if (bg_escalation_create(&o, &t, &err) != BG_OK) {
        BG_ASSERT(strstr(err.msg, BG_ESC_FILE) != NULL, "a refusal names no file: %s", err.msg);
        return 0;
    }
    held = 0;
    bg_escalation_each(t, 1, count, NULL, NULL);
    if (held > 0)
        bg_escalation_resolve(t, first_id, 1, "fuzz", "uid:0", "", 1, NULL, &err);
    bg_escalation_expire(t, INT64_MAX);
    held = 0;
    bg_escalation_each(t, 1, count, NULL, NULL);
    size_t before = held;
    bg_escalation_close(t);
    BG_ASSERT(bg_escalation_create(&o, &t, &err) == BG_OK, "the rewritten file is refused: %s",
              err.msg);
    held = 0;
    bg_escalation_each(t, 1, count, NULL, NULL);
    BG_ASSERT(held == before, "%zu records held, %zu before the rewrite", held, before);
    bg_escalation_close(t);
    return 0;
}
