/*
 * fuzz_obs_segment.c — the observation log's file parsers offline
 * (engine/obs_scan.c through engine/store_tool.h): segment and snapshot
 * headers, record framing, the torn-tail rule, the resync that verify and
 * repair use to find the next record after damage, and repair's rewrite.
 *
 * Input: byte 0 holds flags, the rest is one file. Bit 0: the file is a
 * snapshot (snapshot-...5.bgsnap, followed by an empty segment 5) instead
 * of the only segment; bit 1: write the rest as is (else each whole
 * record's CRC is rewritten to match its payload, so mutations reach the
 * decoder and the resync); bit 2: the file is segment 1 of two (segment 2
 * empty), so a torn tail is corruption there.
 *
 * Checks beyond the sanitizers: verify's counts add up; after repair,
 * verify finds no corruption and counts exactly the records repair kept;
 * bg_store_scan then reads them all.
 */
#include <dirent.h>
#include <sys/stat.h>

#include "common/bg_assert.h"
#include "engine/obs_store.h"
#include "engine/store_tool.h"
#include "fuzz_util.h"

static char ddir[600];

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void clear_dir(void)
{
    DIR *d = opendir(ddir);
    if (!d)
        return;
    struct dirent *de;
    char p[900];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", ddir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static int count(void *ctx, const char *guard, const char *session, const bg_observation *obs,
                 uint64_t segment, uint64_t offset, bg_err *err)
{
    (void)guard, (void)session, (void)obs, (void)segment, (void)offset, (void)err;
    (*(uint64_t *)ctx)++;
    return BG_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ddir[0] == '\0') {
        fz_quiet_logs();
        snprintf(ddir, sizeof ddir, "%s/data", fz_tmpdir("obsseg"));
        if (mkdir(ddir, 0700) != 0)
            fz_die("mkdir %s: %s", ddir, strerror(errno));
    }
    if (size < 1)
        return 0;
    int snap = data[0] & 1, raw = data[0] & 2, two = data[0] & 4;
    const char *magic = snap ? BG_OBS_SNAP_MAGIC : BG_OBS_STORE_MAGIC;
    size_t n = size - 1;
    uint8_t *file = malloc(8 + n + 1);
    if (file == NULL)
        return 0;
    memcpy(file, magic, 8);
    memcpy(file + 8, data + 1, n);
    for (size_t at = 8; !raw && 8 + n - at >= 8;) {
        uint32_t len = le32(file + at);
        if (len > 8 + n - at - 8)
            break;
        uint32_t crc = bg__crc32(file + at + 8, len);
        for (int i = 0; i < 4; i++)
            file[at + 4 + i] = (uint8_t)(crc >> (8 * i));
        at += 8 + (size_t)len;
    }
    char name[64];
    if (snap)
        snprintf(name, sizeof name, BG_OBS_SNAPSHOT_FMT, (uint64_t)5);
    else
        snprintf(name, sizeof name, BG_OBS_SEGMENT_FMT, (uint64_t)1);
    if (fz_write(ddir, name, file, 8 + n) != 0)
        fz_die("cannot write %s/%s: %s", ddir, name, strerror(errno));
    free(file);
    if (snap || two) {
        snprintf(name, sizeof name, BG_OBS_SEGMENT_FMT, (uint64_t)(snap ? 5 : 2));
        if (fz_write(ddir, name, BG_OBS_STORE_MAGIC, 8) != 0)
            fz_die("cannot write %s/%s: %s", ddir, name, strerror(errno));
    }

    bg_store_report v, r, v2;
    bg_err err;
    bg_err_clear(&err);
    if (bg_store_verify(ddir, NULL, NULL, &v, &err) == BG_OK) {
        BG_ASSERT(v.corrupt <= v.problems, "verify: more corrupt regions than problems");
        BG_ASSERT(v.files == (snap || two ? 2u : 1u), "verify: %llu files",
                  (unsigned long long)v.files);
        bg_err_clear(&err);
        BG_ASSERT(bg_store_repair(ddir, NULL, NULL, &r, &err) == BG_OK, "repair: %s", err.msg);
        BG_ASSERT(r.records == v.records, "repair kept %llu records, verify saw %llu",
                  (unsigned long long)r.records, (unsigned long long)v.records);
        bg_err_clear(&err);
        BG_ASSERT(bg_store_verify(ddir, NULL, NULL, &v2, &err) == BG_OK, "%s", err.msg);
        BG_ASSERT(v2.corrupt == 0, "corruption left after repair");
        BG_ASSERT(v2.records == r.records, "verify after repair: %llu records, repair kept %llu",
                  (unsigned long long)v2.records, (unsigned long long)r.records);
        uint64_t seen = 0;
        bg_err_clear(&err);
        BG_ASSERT(bg_store_scan(ddir, 0, 0, count, &seen, &err) == BG_OK, "scan: %s", err.msg);
        BG_ASSERT(seen == v2.records, "scan read %llu of %llu records", (unsigned long long)seen,
                  (unsigned long long)v2.records);
    } else {
        BG_ASSERT(err.msg[0] != '\0', "a failed verify without a message");
    }
    clear_dir();
    return 0;
}
