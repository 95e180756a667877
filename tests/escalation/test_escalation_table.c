/*
 * test_escalation_table.c — the pending-escalation table without a daemon
 * (daemon/escalation/escalation.h): open / resolve / expire and their
 * events, the cap (invariant 1), the per-identity quota (1a: one peer
 * cannot fill the table; replayed records over it are kept), the settled
 * ring (invariant 2), replay of the file with the last record per id
 * winning, a torn tail cut off, and corruption refused with the file and
 * the offset.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "escalation/escalation.h"

static int events[3];
static char last_id[64];

static void on_event(void *arg, bg_esc_event ev, const bg_escalation_rec *r)
{
    (void)arg;
    events[ev]++;
    snprintf(last_id, sizeof last_id, "%s", r->id);
}

static bg_escalation_rec rec(const char *id, int64_t created, int64_t expires)
{
    static uint8_t receipt[3] = {1, 2, 0xfe};
    bg_escalation_rec r;
    memset(&r, 0, sizeof r);
    r.id = (char *)id;
    r.policy = "p";
    r.revision = "rev";
    r.tool = "danger_x";
    r.arguments = "sha256:00 (0 bytes)";
    r.harm_bound = 0.5;
    r.threshold = 0.05;
    r.has_cautious = 1;
    r.cautious_label = "p=0.9";
    r.session = "s";
    r.agent = "a";
    r.peer = "uid:0";
    r.created_ms = created;
    r.expires_ms = expires;
    r.receipt = receipt;
    r.receipt_len = sizeof receipt;
    return r;
}

static int count_each;
static void count(void *arg, const bg_escalation_rec *r)
{
    (void)arg;
    (void)r;
    count_each++;
}

static int held_state(bg_escalation *t, const char *id);
static int state_of(void *arg, const bg_escalation_rec *r)
{
    (void)arg;
    return r ? r->state : 0;
}
static int held_state(bg_escalation *t, const char *id)
{
    return bg_escalation_with(t, id, state_of, NULL);
}

static bg_escalation_rec rec_of(const char *id, const char *peer)
{
    bg_escalation_rec r = rec(id, 1000, 99999);
    r.peer = (char *)peer;
    return r;
}

/* Invariant 1a: one identity holds at most max_per_identity pending ones;
 * the others still open theirs; replayed ones over the quota are kept. */
static void identity_quota(void)
{
    char dir[] = "/tmp/bgt-escq-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    bg_err err;
    bg_err_clear(&err);
    bg_escalation *t;
    bg_escalation_opts o = {.data_dir = dir, .max_pending = 6, .max_per_identity = 2};
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    bg_escalation_rec r1 = rec_of("q1", "uid:5"), r2 = rec_of("q2", "uid:5");
    bg_escalation_rec r3 = rec_of("q3", "uid:5"), r4 = rec_of("q4", "uid:6");
    bg_escalation_rec r5 = rec_of("q5", ""), r6 = rec_of("q6", ""), r7 = rec_of("q7", "");
    CHECK_INT(bg_escalation_open_one(t, &r1, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &r2, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &r3, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "identity uid:5 has 2 pending") != NULL &&
              strstr(err.msg, "--max-escalations-per-identity 2") != NULL &&
              strstr(err.msg, "settle") != NULL,
          "%s", err.msg);
    CHECK_INT(bg_escalation_open_one(t, &r4, &err), BG_OK); /* another identity */
    /* "" (no authenticated identity) is one identity too */
    CHECK_INT(bg_escalation_open_one(t, &r5, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &r6, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &r7, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "plain-TCP") != NULL, "%s", err.msg);
    bg_escalation_stats st;
    bg_escalation_stats_get(t, &st);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_IDENTITY], 2);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_FULL], 0);
    CHECK_INT((int)st.max_per_identity, 2);
    /* a settlement makes room for that identity */
    CHECK_INT(bg_escalation_resolve(t, "q1", 0, "al", "uid:0", "no", 2000, NULL, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &r3, &err), BG_OK);
    bg_escalation_close(t);
    /* replay under a smaller quota: nothing pending is dropped, new ones wait */
    o.max_per_identity = 1;
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    CHECK_INT(held_state(t, "q2"), BG_ESC_PENDING);
    CHECK_INT(held_state(t, "q3"), BG_ESC_PENDING);
    bg_escalation_rec r8 = rec_of("q8", "uid:5"), r9 = rec_of("q9", "uid:9");
    CHECK_INT(bg_escalation_open_one(t, &r8, &err), BG_ELIMIT);
    CHECK_INT(bg_escalation_open_one(t, &r9, &err), BG_OK);
    bg_escalation_close(t);
    /* the default: a quarter of max_pending, at least 1; at most max_pending */
    bg_escalation_opts d8 = {.max_pending = 8}, d2 = {.max_pending = 2};
    bg_escalation_opts big = {.max_pending = 3, .max_per_identity = 50};
    const bg_escalation_opts *os[3] = {&d8, &d2, &big};
    const int want[3] = {2, 1, 3};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(bg_escalation_create(os[i], &t, &err), BG_OK);
        bg_escalation_stats_get(t, &st);
        CHECK_INT((int)st.max_per_identity, want[i]);
        bg_escalation_close(t);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, BG_ESC_FILE);
    unlink(path);
    rmdir(dir);
}

/* Invariant 1b: the last max_pending / 8 free slots go only to an identity
 * with none pending, so identities at their quota cannot fill the table
 * (review 2026-12-06: four at a quarter each did). */
static void reserve(void)
{
    bg_err err;
    bg_err_clear(&err);
    bg_escalation *t;
    bg_escalation_opts o = {.max_pending = 16, .max_per_identity = 8};
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    char id[16];
    bg_escalation_rec r;
    for (int k = 0; k < 14; k++) { /* uid:1 at its quota, uid:2 up to the reserve */
        snprintf(id, sizeof id, "r%d", k);
        r = rec_of(id, k < 8 ? "uid:1" : "uid:2");
        CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_OK);
    }
    r = rec_of("r14", "uid:2"); /* holds 6: the 2 free slots are the reserve */
    CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "identity uid:2 has 6 pending") != NULL &&
              strstr(err.msg, "2 free slots") != NULL &&
              strstr(err.msg, "reserved for identities with none pending") != NULL,
          "%s", err.msg);
    r = rec_of("r15", "uid:3"); /* none pending: takes a reserved slot */
    CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_OK);
    r = rec_of("r16", "uid:3"); /* now holds one */
    CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "has 1 pending escalation,") != NULL, "%s", err.msg);
    r = rec_of("r17", "");
    CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_OK);
    r = rec_of("r18", "uid:4"); /* the table is full: that comes first */
    CHECK_INT(bg_escalation_open_one(t, &r, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "full") != NULL, "%s", err.msg);
    bg_escalation_stats st;
    bg_escalation_stats_get(t, &st);
    CHECK_INT((int)st.reserve, 2);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_RESERVED], 2);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_FULL], 1);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_IDENTITY], 0);
    CHECK_STR(bg_esc_refusal_label(BG_ESC_REFUSED_RESERVED), "reserved");
    bg_escalation_close(t);
    /* a table of fewer than 8 slots reserves none */
    bg_escalation_opts small = {.max_pending = 7};
    CHECK_INT(bg_escalation_create(&small, &t, &err), BG_OK);
    bg_escalation_stats_get(t, &st);
    CHECK_INT((int)st.reserve, 0);
    bg_escalation_close(t);
}

int main(void)
{
    identity_quota();
    reserve();
    char dir[] = "/tmp/bgt-esc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    bg_err err;
    bg_err_clear(&err);
    bg_escalation *t;
    bg_escalation_opts o = {
        .data_dir = dir, .max_pending = 2, .max_settled = 2, .max_per_identity = 2};
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    bg_escalation_listen(t, on_event, NULL);
    bg_escalation_rec a = rec("a", 1000, 5000), b = rec("b", 1000, 9000), c = rec("c", 1, 2);
    CHECK_INT(bg_escalation_open_one(t, &a, &err), BG_OK);
    CHECK_INT(bg_escalation_open_one(t, &a, &err), BG_EEXIST);
    CHECK_INT(bg_escalation_open_one(t, &b, &err), BG_OK);
    /* invariant 1: full -> BG_ELIMIT, counted */
    CHECK_INT(bg_escalation_open_one(t, &c, &err), BG_ELIMIT);
    CHECK(strstr(err.msg, "full") != NULL, "%s", err.msg);
    CHECK_INT(events[BG_ESC_EVENT_OPENED], 2);
    /* resolve: unknown, ok, settled again */
    bg_escalation_rec *out = NULL;
    CHECK_INT(bg_escalation_resolve(t, "zz", 1, "al", "uid:0", "", 2000, &out, &err), BG_ENOTFOUND);
    CHECK_INT(bg_escalation_resolve(t, "b", 0, "al", "uid:0", "no", 3000, &out, &err), BG_OK);
    CHECK(out != NULL && out->state == BG_ESC_REJECTED && strcmp(out->reason, "no") == 0);
    CHECK_INT(out->receipt_len, 3);
    CHECK_INT(bg_escalation_allows(out), 0);
    bg_escalation_rec_free(out);
    CHECK_INT(bg_escalation_resolve(t, "b", 1, "al", "uid:0", "", 3000, NULL, &err), BG_EEXIST);
    CHECK(strstr(err.msg, "REJECTED") != NULL, "%s", err.msg);
    CHECK_STR(last_id, "b");
    /* expiry: a at 5000 */
    CHECK_INT((int)bg_escalation_expire(t, 4999), 0);
    CHECK_INT((int)bg_escalation_expire(t, 5000), 1);
    CHECK_INT(held_state(t, "a"), BG_ESC_EXPIRED);
    CHECK_INT(events[BG_ESC_EVENT_SETTLED], 2);
    bg_escalation_stats st;
    bg_escalation_stats_get(t, &st);
    CHECK_INT((int)st.pending, 0);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_FULL], 1);
    CHECK_INT((int)st.refused[BG_ESC_REFUSED_IDENTITY], 0);
    CHECK_INT((int)st.resolved[BG_ESC_REJECTED], 1);
    CHECK_INT((int)st.resolved[BG_ESC_EXPIRED], 1);
    CHECK_INT((int)st.wait_count, 2);
    CHECK_INT((int)st.wait_le[0], 0); /* 2 s and 4 s: over the 1 s bucket */
    CHECK_INT((int)st.wait_le[1], 2); /* both within 5 s */
    /* invariant 2: the settled ring drops the oldest */
    CHECK_INT(bg_escalation_open_one(t, &c, &err), BG_OK);
    CHECK_INT(bg_escalation_resolve(t, "c", 1, "al", "uid:0", "", 3000, NULL, &err), BG_OK);
    CHECK_INT(held_state(t, "b"), 0);
    CHECK_INT(held_state(t, "c"), BG_ESC_APPROVED);
    bg_escalation_rec d = rec("d", 1000, 99999);
    CHECK_INT(bg_escalation_open_one(t, &d, &err), BG_OK);
    bg_escalation_close(t);

    /* replay: d pending, a and c settled */
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    CHECK_INT(held_state(t, "d"), BG_ESC_PENDING);
    CHECK_INT(held_state(t, "a"), BG_ESC_EXPIRED);
    CHECK_INT(held_state(t, "c"), BG_ESC_APPROVED);
    count_each = 0;
    bg_escalation_each(t, 1, count, NULL, NULL);
    CHECK_INT(count_each, 3);
    bg_escalation_close(t);

    /* a torn tail is cut off */
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, BG_ESC_FILE);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    off_t good = sb.st_size;
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "\x20\0\0\0\0\0\0\0{\"i", 11) == 11);
    close(fd);
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_OK);
    CHECK_INT(held_state(t, "d"), BG_ESC_PENDING);
    bg_escalation_close(t);
    CHECK(stat(path, &sb) == 0 && sb.st_size == good, "size %lld, want %lld", (long long)sb.st_size,
          (long long)good);

    /* corruption before the last record: refused, naming file and offset */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, "#", 1, 12) == 1);
    close(fd);
    CHECK_INT(bg_escalation_create(&o, &t, &err), BG_EIO);
    CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, "offset 0") != NULL, "%s", err.msg);
    unlink(path);
    rmdir(dir);
    CHECK_DONE("test_escalation_table");
}
