/*
 * fuzz_fleet_entry.c — stream entries as XREAD returns them, through the
 * fleet's inbox: bg__fleet_read_reply (daemon/fleet/fleet.c) on a fleet
 * attached to a real engine (fuzz_fleet.h): bg__fleet_entry_parse
 * (fleet_wire.c), own / applied / new, the policy lookup, and
 * bg_engine_fleet_apply (decode, checks, store with the fleet id, settle).
 *
 * Input: entries, each: a string (the stream id), one byte k (k % 8 field
 * pairs), then 2k strings (field, value); a string is u16 LE length +
 * bytes. The harness writes them as the RESP of an XREAD reply
 * ([[key, [[sid, [f, v, ...]], ...]]]) and has hiredis's reader parse it,
 * as a connection would.
 *
 * Checks beyond the sanitizers: exactly once — the same reply read again
 * applies nothing more, and neither does a third read after the engine and
 * the fleet are made again from the data directory (the applied ids are
 * rebuilt from the log); the reply's entry count is what was written.
 */
#include <hiredis/hiredis.h>

#include "fuzz_fleet.h"

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
} rd;

static int rd_str(rd *r, const uint8_t **s, size_t *len)
{
    if (r->n - r->off < 2)
        return -1;
    size_t l = (size_t)r->p[r->off] | (size_t)r->p[r->off + 1] << 8;
    r->off += 2;
    if (r->n - r->off < l)
        return -1;
    *s = r->p + r->off;
    *len = l;
    r->off += l;
    return 0;
}

typedef bg__fleet_buf out;

static void put(out *o, const void *d, size_t n)
{
    if (bg__fleet_buf_raw(o, d, n) != BG_OK)
        fz_die("out of memory");
}

static void put_hdr(out *o, char kind, size_t n)
{
    char h[32];
    int k = snprintf(h, sizeof h, "%c%zu\r\n", kind, n);
    put(o, h, (size_t)k);
}

static void put_bulk(out *o, const uint8_t *s, size_t n)
{
    put_hdr(o, '$', n);
    put(o, s, n);
    put(o, "\r\n", 2);
}

/* The RESP of the XREAD reply; *n_entries: how many entries it holds. */
static void build(const uint8_t *data, size_t size, out *o, size_t *n_entries)
{
    out body = {0};
    rd r = {data, size, 0};
    *n_entries = 0;
    for (;;) {
        const uint8_t *sid;
        size_t sl;
        if (rd_str(&r, &sid, &sl) != 0 || r.off >= r.n)
            break;
        size_t k = r.p[r.off++] % 8;
        const uint8_t *fs[16];
        size_t fl[16], got = 0;
        while (got < 2 * k && rd_str(&r, &fs[got], &fl[got]) == 0)
            got++;
        put_hdr(&body, '*', 2);
        put_bulk(&body, sid, sl);
        put_hdr(&body, '*', got);
        for (size_t i = 0; i < got; i++)
            put_bulk(&body, fs[i], fl[i]);
        (*n_entries)++;
        if (got < 2 * k)
            break;
    }
    put_hdr(o, '*', 1);
    put_hdr(o, '*', 2);
    put_bulk(o, (const uint8_t *)"fuzz", 4);
    put_hdr(o, '*', *n_entries);
    if (body.len)
        put(o, body.p, body.len);
    free(body.p);
}

static size_t read_once(const out *o)
{
    redisReader *rr = redisReaderCreate();
    if (!rr)
        fz_die("redisReaderCreate");
    void *reply = NULL;
    BG_ASSERT(redisReaderFeed(rr, (const char *)o->p, o->len) == REDIS_OK &&
                  redisReaderGetReply(rr, &reply) == REDIS_OK && reply != NULL,
              "hiredis did not parse the RESP the harness wrote");
    char from[64] = "0-0";
    size_t n = bg__fleet_read_reply(ff.fleet, reply, from, sizeof from);
    freeReplyObject(reply);
    redisReaderFree(rr);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ff_setup("fleet-entry");
    out o = {0};
    size_t want;
    build(data, size, &o, &want);
    ff_wipe();
    ff_open();
    size_t n = read_once(&o);
    BG_ASSERT(n == want, "the reply held %zu entries, the inbox saw %zu", want, n);
    uint64_t applied = ff_applied();
    BG_ASSERT(applied <= want, "%llu applied from %zu entries", (unsigned long long)applied, want);
    (void)read_once(&o);
    BG_ASSERT(ff_applied() == applied, "the same entries read again applied %llu more",
              (unsigned long long)(ff_applied() - applied));
    ff_close();
    ff_open(); /* the applied ids come back from the log */
    (void)read_once(&o);
    BG_ASSERT(ff_applied() == 0, "after a restart the same entries applied %llu again",
              (unsigned long long)ff_applied());
    ff_close();
    free(o.p);
    return 0;
}
