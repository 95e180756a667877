/*
 * fuzz_fleet_snapshot.c — the fleet snapshot (<KEY>:snapshot's data, magic
 * BGFSNAP1, docs/FLEET.md bootstrap): bg__fleet_snap_walk (fleet_wire.c),
 * then bg__fleet_snapshot_load on a fleet attached to a real engine
 * (fuzz_fleet.h), which applies each observation by the inbox rules.
 *
 * Input: the snapshot's bytes as Redis would return them.
 *
 * Checks beyond the sanitizers: a snapshot the walk accepts re-encodes
 * (bg__fleet_buf_put of every item's strings after the magic) to the input
 * byte for byte, and a refused one says why; the load hands over as many
 * observations as the walk (or fails where the walk does); loading it a
 * second time applies nothing more (exactly once).
 */
#include "fuzz_fleet.h"

typedef struct reenc {
    bg__fleet_buf b;
} reenc;

static int reenc_one(void *ctx, const char *fid, const char *policy, const char *session,
                     const uint8_t *rec, size_t len)
{
    reenc *r = ctx;
    BG_ASSERT(bg__fleet_buf_put(&r->b, fid, strlen(fid)) == BG_OK &&
                  bg__fleet_buf_put(&r->b, policy, strlen(policy)) == BG_OK &&
                  bg__fleet_buf_put(&r->b, session, strlen(session)) == BG_OK &&
                  bg__fleet_buf_put(&r->b, rec, len) == BG_OK,
              "out of memory re-encoding");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ff_setup("fleet-snap");
    reenc r = {{0}};
    size_t n;
    const char *why;
    BG_ASSERT(bg__fleet_buf_put(&r.b, BG_FLEET_SNAP_MAGIC, 8) == BG_OK, "out of memory");
    int rc = bg__fleet_snap_walk(data, size, reenc_one, &r, &n, &why);
    if (rc == 0)
        BG_ASSERT(r.b.len == size && memcmp(r.b.p, data, size) == 0,
                  "an accepted snapshot of %zu bytes re-encodes to %zu other bytes", size, r.b.len);
    else
        BG_ASSERT(rc == -1 && why != NULL && why[0], "a refused snapshot without a reason");
    free(r.b.p);

    ff_wipe();
    ff_open();
    long got = bg__fleet_snapshot_load(ff.fleet, data, size, "fuzz:snapshot@0-1");
    BG_ASSERT(rc == 0 ? got == (long)n : got == -1, "the walk gave %d (%zu items), the load %ld",
              rc, n, got);
    uint64_t applied = ff_applied();
    BG_ASSERT(applied <= n, "%llu applied from %zu items", (unsigned long long)applied, n);
    (void)bg__fleet_snapshot_load(ff.fleet, data, size, "fuzz:snapshot@0-1");
    BG_ASSERT(ff_applied() == applied, "loading the snapshot again applied %llu more",
              (unsigned long long)(ff_applied() - applied));
    ff_close();
    return 0;
}
