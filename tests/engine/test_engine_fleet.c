/*
 * test_engine_fleet.c — the engine's fleet hooks (engine.h): the stored
 * hook sees every durable record with its number, in log order, at replay
 * too, and a peer's observation carries its fleet id; fleet_apply inserts a
 * peer's observation at the settled position and fleet_settle moves a local
 * one there, so two engines that saw the same observations in different
 * local orders hold bit-identical posteriors once both follow one order;
 * export yields the settled histories in that order; a compaction keeps
 * every record number and fleet id (obs_store.h invariant 6). Real plugins
 * (bernoulli + noniid) from BG_PLUGIN_DIR, real data directories.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bg_test.h"
#include "eng_fixture.h"
#include "engine/engine.h"

#define MAXREC 16

typedef struct rec {
    uint64_t lsn;
    uint8_t bytes[512];
    size_t len;
    int fleet, replayed;
    char fid[64];
} rec;

typedef struct sink {
    rec r[MAXREC];
    size_t n;
} sink;

static void stored(void *ctx, uint64_t lsn, const char *guard, const char *session,
                   const uint8_t *bytes, size_t len, const bg_obs_receipt *rc, int replayed)
{
    (void)guard;
    (void)session;
    sink *s = ctx;
    CHECK(s->n < MAXREC && len <= sizeof s->r[0].bytes, "record %zu of %zu bytes", s->n, len);
    rec *r = &s->r[s->n++];
    r->lsn = lsn;
    memcpy(r->bytes, bytes, len);
    r->len = len;
    r->replayed = replayed;
    r->fleet = rc && (rc->flags & BG_OBS_RECEIPT_FLEET);
    snprintf(r->fid, sizeof r->fid, "%s", r->fleet ? rc->id : "");
}

static bg_engine *open_engine(const char *dir, bg_engine_fleet_hooks *hk)
{
    bg_engine_opts o = {.data_dir = dir, .fleet = hk};
    bg_engine *e;
    bg_err err;
    CHECK_INT(bg_engine_create(&o, &e, &err), BG_OK);
    return e;
}

static void observe(bg_engine *e, const bg_guard *g, int harmed)
{
    bg_observation o;
    memset(&o, 0, sizeof o);
    o.action.tool = "t";
    o.action.id = "";
    o.action.arguments_json = "";
    o.harmed = harmed;
    bg_err err;
    CHECK_INT(bg_engine_observe(e, g, "s", &o, NULL, &err), BG_OK);
}

typedef struct order {
    uint64_t lsn[MAXREC];
    size_t n;
} order;

static int exported(void *ctx, uint64_t lsn, const char *guard, const char *session,
                    const uint8_t *r, size_t len)
{
    (void)guard;
    (void)session;
    (void)r;
    (void)len;
    order *o = ctx;
    o->lsn[o->n++] = lsn;
    return BG_OK;
}

int main(void)
{
    bg_plugin_host *h = fx_host();
    bg_guard_build *gb = fx_guard(h, "fl", "bernoulli", "{grid_size: 64}", "noniid",
                                  "delta: 0.05\nprior_floor: 0.001", 0.5);
    const bg_guard *g = bg_guard_build_guard(gb);
    char da[] = "/tmp/bgfleetA-XXXXXX", db[] = "/tmp/bgfleetB-XXXXXX";
    CHECK(mkdtemp(da) && mkdtemp(db));
    sink sa = {0}, sb = {0};
    bg_engine_fleet_hooks ha = {&sa, stored}, hb = {&sb, stored};
    bg_engine *a = open_engine(da, &ha), *b = open_engine(db, &hb);
    bg_err err;

    /* a: o1 (harm), o2 (no harm); b: o3 (harm) — each stored, hooked in order */
    observe(a, g, 1);
    observe(a, g, 0);
    observe(b, g, 1);
    CHECK_INT((int)sa.n, 2);
    CHECK_INT((int)sb.n, 1);
    CHECK(sa.r[0].lsn == 0 && sa.r[1].lsn == 1 && sb.r[0].lsn == 0);
    CHECK(!sa.r[0].fleet && !sa.r[0].replayed);

    /* the stream's order: o3, o1, o2 */
    CHECK_INT(bg_engine_fleet_apply(a, g, "b-0", sb.r[0].bytes, sb.r[0].len, &err), BG_OK);
    CHECK_INT(bg_engine_fleet_settle(a, "fl", "s", 0), BG_OK);
    CHECK_INT(bg_engine_fleet_settle(a, "fl", "s", 1), BG_OK);
    CHECK_INT(bg_engine_fleet_settle(a, "fl", "s", 1), BG_EEXIST);
    CHECK_INT(bg_engine_fleet_settle(a, "fl", "s", 99), BG_ENOTFOUND);
    CHECK_INT(bg_engine_fleet_settle(a, "fl", "nope", 0), BG_ENOTFOUND);
    CHECK_INT((int)sa.n, 3);
    CHECK(sa.r[2].fleet && strcmp(sa.r[2].fid, "b-0") == 0 && sa.r[2].lsn == 2);

    CHECK_INT(bg_engine_fleet_settle(b, "fl", "s", 0), BG_OK);
    CHECK_INT(bg_engine_fleet_apply(b, g, "a-0", sa.r[0].bytes, sa.r[0].len, &err), BG_OK);
    CHECK_INT(bg_engine_fleet_apply(b, g, "a-1", sa.r[1].bytes, sa.r[1].len, &err), BG_OK);

    /* a peer's record for another policy is refused, nothing stored */
    bg_guard other = *g;
    other.name = "other";
    CHECK_INT(bg_engine_fleet_apply(b, &other, "a-9", sa.r[0].bytes, sa.r[0].len, &err), BG_EINVAL);
    CHECK(strstr(err.msg, "of policy \"fl\""), "%s", err.msg);
    CHECK_INT((int)sb.n, 3);

    /* one order, one posterior: bit for bit */
    double pa[64], pb[64];
    CHECK_INT(bg_engine_posterior(a, g, "s", pa, 64, &err), BG_OK);
    CHECK_INT(bg_engine_posterior(b, g, "s", pb, 64, &err), BG_OK);
    CHECK(memcmp(pa, pb, sizeof pa) == 0, "posteriors differ");
    bg_action act = {.tool = "t", .id = "", .arguments_json = ""};
    bg_verdict va, vb;
    CHECK_INT(bg_engine_evaluate(a, g, "s", &act, &va, &err), BG_OK);
    CHECK_INT(bg_engine_evaluate(b, g, "s", &act, &vb, &err), BG_OK);
    CHECK(va.harm_bound == vb.harm_bound && va.observations == 3, "%.17g vs %.17g", va.harm_bound,
          vb.harm_bound);

    /* export: the settled history in stream order (a's record numbers) */
    order oa = {{0}, 0};
    CHECK_INT(bg_engine_fleet_export(a, exported, &oa), BG_OK);
    CHECK(oa.n == 3 && oa.lsn[0] == 2 && oa.lsn[1] == 0 && oa.lsn[2] == 1);

    /* a restart hands every record back, peers' with their fleet ids */
    bg_engine_destroy(b);
    sb.n = 0;
    b = open_engine(db, &hb);
    CHECK_INT((int)sb.n, 3);
    CHECK(sb.r[0].replayed && !sb.r[0].fleet);
    CHECK(sb.r[1].fleet && strcmp(sb.r[1].fid, "a-0") == 0 && sb.r[1].lsn == 1);
    CHECK(sb.r[2].fleet && strcmp(sb.r[2].fid, "a-1") == 0 && sb.r[2].lsn == 2);

    /* compaction (obs_store.h invariant 6): the segments folded into a
     * snapshot and deleted, a restart still hands back every record with
     * its number and fleet id, and the next local record is number 3 (a
     * number reused would be a fleet id its peers already hold) */
    CHECK_INT(bg_engine_compact(b, &err), BG_OK);
    bg_engine_destroy(b);
    char seg0[160];
    snprintf(seg0, sizeof seg0, "%s/obs-00000000000000000000.bglog", db);
    CHECK(access(seg0, F_OK) != 0, "%s still there after compaction", seg0);
    sb.n = 0;
    b = open_engine(db, &hb);
    CHECK_INT((int)sb.n, 3);
    CHECK(sb.r[0].replayed && !sb.r[0].fleet && sb.r[0].lsn == 0);
    CHECK(sb.r[1].fleet && strcmp(sb.r[1].fid, "a-0") == 0 && sb.r[1].lsn == 1);
    CHECK(sb.r[2].fleet && strcmp(sb.r[2].fid, "a-1") == 0 && sb.r[2].lsn == 2);
    observe(b, g, 0);
    CHECK(sb.n == 4 && sb.r[3].lsn == 3 && !sb.r[3].replayed, "new record numbered %llu",
          (unsigned long long)sb.r[3].lsn);
    CHECK_INT(bg_engine_fleet_settle(b, "fl", "s", 3), BG_OK);

    bg_engine_destroy(a);
    bg_engine_destroy(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", da, db);
    CHECK_INT(system(cmd), 0);
    bg_guard_build_destroy(gb);
    bg_plugin_host_destroy(h);
    CHECK_DONE("test_engine_fleet");
}
