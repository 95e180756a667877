/*
 * test_plugin_load.c — the plugin host: every load failure is refused with
 * the documented message naming the file and both versions; a refusal does
 * not stop the other plugins of the directory; the registry finds by name
 * and kind and lists what exists; a failing create reports through
 * cfg_error with the section's position; a .so replaced on disk takes
 * effect after rescan while the old code stays usable until its last
 * reference drops.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bg_test.h"
#include "plugin/plugin_host.h"
#include "cfg/cfg.h"

#define FIX BG_FIXTURE_DIR

static const char six_x[] = {'X', 'X', 'X', 'X', 'X', 'X', '\0'}; /* mkdtemp template */

static void expect_refused(bg_plugin_host *h, const char *file, const char *want_fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void expect_refused(bg_plugin_host *h, const char *file, const char *want_fmt, ...)
{
    char path[1024], want[2048], fmt2[2048];
    snprintf(path, sizeof path, "%s/bad/%s", FIX, file);
    snprintf(fmt2, sizeof fmt2, "%s: %s", path, want_fmt);
    va_list ap;
    va_start(ap, want_fmt);
    vsnprintf(want, sizeof want, fmt2, ap);
    va_end(ap);
    bg_err err;
    bg_err_clear(&err);
    bg_plugin *p = (bg_plugin *)1;
    int rc = bg_plugin_host_load_file(h, path, &p, &err);
    CHECK_INT(rc, BG_EABI);
    CHECK(p == NULL);
    CHECK_STR(err.msg, want);
    /* The directory scan lists the same message. */
    CHECK(strstr(bg_plugin_host_errors(h), want) != NULL);
}

static void test_refusals(void)
{
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/bad", &h, &err), BG_OK);
    if (!h)
        return;
    const int M = BG_PLUGIN_ABI_MINOR; /* this host: 1.M */
    expect_refused(h, "wrong_major.so",
                   "plugin ABI 2.%d is not supported by this bayesguard (ABI 1.%d): rebuild the "
                   "plugin against include/bayesguard/plugin.h 1.x",
                   M, M);
    /* A plugin from a newer header that uses only older features still
     * declares the newer minor: refused, with the way out. */
    expect_refused(h, "newer_minor.so",
                   "plugin ABI 1.%d is newer than this bayesguard (ABI 1.%d): upgrade "
                   "bayesguard, or if the plugin uses nothing newer than 1.%d, declare it with "
                   "BG_PLUGIN_DESC_HEAD_MINOR(%d) (or rebuild it against "
                   "include/bayesguard/plugin.h 1.%d)",
                   M + 1, M, M, M, M);
    expect_refused(h, "short_desc.so",
                   "plugin ABI 1.%d descriptor is 40 bytes, this bayesguard (ABI 1.%d) needs at "
                   "least %zu: rebuild the plugin against include/bayesguard/plugin.h 1.%d",
                   M, M, sizeof(bg_plugin_desc), M);
    expect_refused(h, "no_entry.so",
                   "no symbol bg_plugin_entry: not a bayesguard plugin (export `const "
                   "bg_plugin_desc *bg_plugin_entry(void)` with BG_PLUGIN_EXPORT)");
    expect_refused(h, "null_vtable.so",
                   "plugin fx_nullvt (hypothesis): vtable entry 'label' is NULL: every ABI 1.%d "
                   "hypothesis plugin must implement it",
                   M);
    expect_refused(h, "null_harm.so",
                   "plugin fx_noharm (hypothesis): vtable entry 'harm' is NULL: every ABI 1.%d "
                   "hypothesis plugin must implement it",
                   M);
    expect_refused(h, "desc_spare.so",
                   "plugin fx_dspare: desc.spare[0] is not NULL: spare slots are reserved for "
                   "later ABI minors and must be left zero in an ABI 1.%d plugin",
                   M);
    expect_refused(h, "vtable_spare.so",
                   "plugin fx_vspare (estimator): vtable spare[0] is not NULL: spare slots are "
                   "reserved for later ABI minors and must be left zero in an ABI 1.%d plugin",
                   M);
    /* Declaring 1.0 while using a 1.1 flag: a 1.0 host would misread the
     * table, so this host refuses the declaration. */
    expect_refused(h, "open_bound_1_0.so",
                   "plugin fx_open0: config key 'rate' uses BG_CFGV_MIN_OPEN/MAX_OPEN (ABI 1.1) "
                   "but the plugin declares ABI 1.0: declare 1.1 or later (BG_PLUGIN_DESC_HEAD)");
    /* Declaring 1.3 while filling the 1.4 entry `symbols`: a 1.3 host
     * would take it for a spare. */
    expect_refused(h, "symbols_1_3.so",
                   "plugin fx_symbols3 (hypothesis): vtable entry 'symbols' (spare[0] before ABI "
                   "1.4) is set in an ABI 1.3 plugin: declare minor 4 (BG_PLUGIN_DESC_HEAD) to "
                   "use it");
    /* Ten failures, one per line. */
    const char *e = bg_plugin_host_errors(h);
    int lines = *e ? 1 : 0;
    for (; *e; e++)
        lines += *e == '\n';
    CHECK_INT(lines, 10);
    /* An unchanged bad file is not retried but still listed after rescan. */
    CHECK_INT(bg_plugin_host_rescan(h, &err), BG_OK);
    e = bg_plugin_host_errors(h);
    lines = *e ? 1 : 0;
    for (; *e; e++)
        lines += *e == '\n';
    CHECK_INT(lines, 10);
    char copy[8192], small[16];
    CHECK_INT(bg_plugin_host_errors_copy(h, copy, sizeof copy), strlen(bg_plugin_host_errors(h)));
    CHECK_STR(copy, bg_plugin_host_errors(h));
    CHECK_INT(bg_plugin_host_errors_copy(h, small, sizeof small), strlen(copy));
    CHECK_INT(strlen(small), sizeof small - 1); /* truncated, terminated */
    /* Nothing loaded from the bad dir. */
    bg_plugin *x = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_nullvt", BG_PLUGIN_KIND_HYPOTHESIS, &x, &err),
              BG_ENOTFOUND);
    CHECK_STR(err.msg, "no hypothesis plugin named 'fx_nullvt' in " FIX "/bad; available: (none)");
    bg_plugin_host_destroy(h);
}

typedef struct metric_seen {
    int n;
    double created, odd;
} metric_seen;

static void on_metric(void *ctx, const char *name, double value)
{
    metric_seen *m = ctx;
    m->n++;
    if (strcmp(name, "bayesguard_plugin_fx_est_created") == 0)
        m->created = value;
    if (strcmp(name, "bayesguard_plugin_fx_est_odd_name_") == 0)
        m->odd = value;
}

static void test_registry(void)
{
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &h, &err), BG_OK);
    if (!h)
        return;
    CHECK_STR(bg_plugin_host_errors(h), "");
    bg_plugin *m = NULL, *e = NULL, *x = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_model", BG_PLUGIN_KIND_HYPOTHESIS, &m, &err), BG_OK);
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &e, &err), BG_OK);
    CHECK(m && strcmp(m->desc->name, "fx_model") == 0);
    CHECK(e && strcmp(e->desc->version, "1") == 0);
    /* Right name, wrong kind: not found, listing what that kind has. */
    CHECK_INT(bg_plugin_host_find(h, "fx_model", BG_PLUGIN_KIND_ESTIMATOR, &x, &err), BG_ENOTFOUND);
    CHECK(x == NULL);
    CHECK_STR(err.msg,
              "no estimator plugin named 'fx_model' in " FIX "/good; available: fx_est, fx_fail");
    CHECK_INT(bg_plugin_host_find(h, "nope", BG_PLUGIN_KIND_SAMPLER, &x, &err), BG_ENOTFOUND);
    CHECK_STR(err.msg, "no sampler plugin named 'nope' in " FIX "/good; available: fx_sampler");

    /* A failing create reports through cfg_error at the section. */
    bg_plugin *f = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_fail", BG_PLUGIN_KIND_ESTIMATOR, &f, &err), BG_OK);
    if (f) {
        bg_cfg_doc *doc = NULL;
        const char *y = "spec:\n  estimator: {plugin: fx_fail}\n";
        CHECK_INT(bg_cfg_parse_string(y, strlen(y), "p.yaml", &doc, &err), BG_OK);
        const bg_cfg_node *sec =
            bg_cfg_get(bg_cfg_get(bg_cfg_doc_root(doc, 0), "spec"), "estimator");
        bg_plugin_services *s = NULL;
        CHECK_INT(bg_plugin_services_create(h, f, &s, &err), BG_OK);
        const bg_host *host = bg_plugin_services_host(s);
        void *inst = NULL;
        CHECK_INT(f->desc->vt.estimator->create(host, NULL, &inst), BG_PLUGIN_ECONFIG);
        CHECK_STR(bg_plugin_services_errors(s),
                  "plugin fx_fail: refusing to start: fixture fails on purpose");
        bg_plugin_services_destroy(s);
        CHECK_INT(bg_plugin_services_create(h, f, &s, &err), BG_OK);
        bg_plugin_services_set_section(s, sec);
        host = bg_plugin_services_host(s);
        CHECK_INT(f->desc->vt.estimator->create(host, NULL, &inst), BG_PLUGIN_ECONFIG);
        CHECK_STR(bg_plugin_services_errors(s),
                  "p.yaml:2:14: plugin fx_fail: refusing to start: fixture fails on purpose");
        bg_plugin_services_destroy(s);
        bg_cfg_doc_destroy(doc);
    }
    /* A good create adds to the plugin's metric. */
    if (e) {
        bg_plugin_services *s = NULL;
        CHECK_INT(bg_plugin_services_create(h, e, &s, &err), BG_OK);
        void *inst = NULL;
        CHECK_INT(e->desc->vt.estimator->create(bg_plugin_services_host(s), NULL, &inst),
                  BG_PLUGIN_OK);
        CHECK_NEAR(e->desc->vt.estimator->order_needed(inst), 0.05 * 1e-4, 1e-15);
        e->desc->vt.estimator->destroy(inst);
        /* A second add to the same counter, with a name to sanitise. */
        const bg_host *host = bg_plugin_services_host(s);
        host->metric_add(host->host_ctx, "created", 2);
        host->metric_add(host->host_ctx, "odd name!", 0.5);
        bg_plugin_services_destroy(s);
        metric_seen seen = {0};
        bg_plugin_host_metrics(h, on_metric, &seen);
        CHECK_INT(seen.n, 2);
        CHECK_NEAR(seen.created, 3, 0);
        CHECK_NEAR(seen.odd, 0.5, 0);
    }
    bg_plugin_unref(f);
    bg_plugin_unref(m);
    bg_plugin_unref(e);
    bg_plugin_host_destroy(h);
}

static int copy_to(const char *src, const char *dst)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    return rename(tmp, dst); /* atomic replace, as a deploy would */
}

static double bound_of(bg_plugin_host *h, bg_plugin *p)
{
    bg_err err;
    bg_plugin_services *s = NULL;
    if (bg_plugin_services_create(h, p, &s, &err) != BG_OK)
        return -1;
    void *inst = NULL;
    double b = -1;
    if (p->desc->vt.estimator->create(bg_plugin_services_host(s), NULL, &inst) == BG_PLUGIN_OK) {
        double lp = 0, hm = 0.1;
        uint64_t id = 0;
        bg_estimate_in in = {.n = 1, .ids = &id, .log_post = &lp, .harm = &hm};
        bg_estimate_out out;
        if (p->desc->vt.estimator->estimate(inst, &in, &out) == BG_PLUGIN_OK)
            b = out.bound;
        p->desc->vt.estimator->destroy(inst);
    }
    bg_plugin_services_destroy(s);
    return b;
}

static void test_replace(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/bg-test-plugin-%s", six_x);
    CHECK(mkdtemp(dir) != NULL);
    char so[1024];
    snprintf(so, sizeof so, "%s/fx_est.so", dir);
    CHECK_INT(copy_to(FIX "/good/fx_est.so", so), 0);
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(dir, &h, &err), BG_OK);
    if (!h)
        return;
    bg_plugin *v1 = NULL, *v2 = NULL;
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &v1, &err), BG_OK);
    if (!v1)
        return;
    CHECK_STR(v1->desc->version, "1");
    CHECK_NEAR(bound_of(h, v1), 0.25, 0);
    CHECK_INT(copy_to(FIX "/v2/fx_est.so", so), 0);
    /* Before the rescan the registry still gives v1. */
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &v2, &err), BG_OK);
    CHECK(v2 == v1);
    bg_plugin_unref(v2);
    CHECK_INT(bg_plugin_host_rescan(h, &err), BG_OK);
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &v2, &err), BG_OK);
    if (v2) {
        CHECK(v2 != v1);
        CHECK_STR(v2->desc->version, "2");
        CHECK_NEAR(bound_of(h, v2), 0.5, 0);
        CHECK(bg_plugin_identity(v1) != bg_plugin_identity(v2));
    }
    /* The old code is still mapped while referenced. */
    CHECK_STR(v1->desc->version, "1");
    CHECK_NEAR(bound_of(h, v1), 0.25, 0);
    bg_plugin_unref(v1);
    bg_plugin_unref(v2);
    /* Removing the file drops it from the registry. */
    unlink(so);
    CHECK_INT(bg_plugin_host_rescan(h, &err), BG_OK);
    CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &v2, &err), BG_ENOTFOUND);
    bg_plugin_host_destroy(h);
    rmdir(dir);
}

static void test_duplicate_name(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/bg-test-dup-%s", six_x);
    CHECK(mkdtemp(dir) != NULL);
    char a[1024], b[1024], want[4096];
    snprintf(a, sizeof a, "%s/a_est.so", dir);
    snprintf(b, sizeof b, "%s/b_est.so", dir);
    CHECK_INT(copy_to(FIX "/good/fx_est.so", a), 0);
    CHECK_INT(copy_to(FIX "/v2/fx_est.so", b), 0);
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(dir, &h, &err), BG_OK);
    if (h) {
        snprintf(want, sizeof want,
                 "%s: plugin name 'fx_est' (estimator) is already provided by %s: rename one", b,
                 a);
        CHECK_STR(bg_plugin_host_errors(h), want);
        bg_plugin *p = NULL;
        CHECK_INT(bg_plugin_host_find(h, "fx_est", BG_PLUGIN_KIND_ESTIMATOR, &p, &err), BG_OK);
        CHECK(p && strcmp(p->desc->version, "1") == 0); /* the first by file name wins */
        bg_plugin_unref(p);
        bg_plugin_host_destroy(h);
    }
    unlink(a);
    unlink(b);
    rmdir(dir);
}

/* The private copies leave nothing behind: $TMPDIR is empty while the
 * plugins are loaded and mapped. */
static void test_no_litter(void)
{
    char base[64];
    snprintf(base, sizeof base, "/tmp/bg-test-tmpdir-%s", six_x);
    CHECK(mkdtemp(base) != NULL);
    const char *old = getenv("TMPDIR");
    char saved[1024] = "";
    if (old)
        snprintf(saved, sizeof saved, "%s", old);
    setenv("TMPDIR", base, 1);
    bg_plugin_host *h = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &h, &err), BG_OK);
    bg_plugin *m = NULL;
    if (h)
        CHECK_INT(bg_plugin_host_find(h, "fx_model", BG_PLUGIN_KIND_HYPOTHESIS, &m, &err), BG_OK);
    CHECK(m && strcmp(m->desc->name, "fx_model") == 0); /* mapped and usable */
    DIR *d = opendir(base);
    int entries = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    CHECK_INT(entries, 0);
    bg_plugin_unref(m);
    bg_plugin_host_destroy(h);
    if (*saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    CHECK_INT(rmdir(base), 0);
}

static void test_bad_dir(void)
{
    bg_plugin_host *h = (bg_plugin_host *)1;
    bg_err err;
    CHECK_INT(bg_plugin_host_create("/nonexistent/plugins", &h, &err), BG_EINVAL);
    CHECK(h == NULL);
    CHECK_STR(err.msg, "plugin dir /nonexistent/plugins: not a directory: pass --plugins DIR");
}

int main(void)
{
    test_refusals();
    test_registry();
    test_replace();
    test_duplicate_name();
    test_no_litter();
    test_bad_dir();
    CHECK_DONE("test_plugin_load");
}
