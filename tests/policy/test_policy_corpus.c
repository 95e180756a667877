/*
 * test_policy_corpus.c — every broken policy in tests/policy/bad/NAME.yaml
 * is refused with exactly the messages in NAME.expect (one per line,
 * file:line:column: what is wrong). Each file is loaded alone from a temp
 * dir with the fixture plugins; in messages the temp dir prefix is removed
 * and the fixture dir reads FIXTURES, so the expectations are portable.
 * BG_UPDATE_EXPECT=1 rewrites the .expect files (review the diff!).
 */
#include "policy_test.h"

static void replace_all(char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    char *p = s;
    while ((p = strstr(p, from))) {
        memmove(p + tl, p + fl, strlen(p + fl) + 1);
        memcpy(p, to, tl);
        p += tl;
    }
}

static int check_one(bg_plugin_host *host, const char *src, const char *name)
{
    char tmp[128], path[4096];
    pt_mkdtemp(tmp, sizeof tmp, "corpus");
    snprintf(path, sizeof path, "%s/tests/policy/bad/%s.yaml", src, name);
    CHECK_INT(pt_copy(path, tmp, strstr(path, "/bad/") + 5), 0);
    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    int rc = bg_policy_set_load(tmp, host, &s, &errs);
    CHECK_INT(rc, BG_ECONFIG);
    CHECK(s == NULL);
    char got[16384] = "";
    for (size_t i = 0; i < errs.n; i++) {
        strncat(got, errs.msgs[i], sizeof got - strlen(got) - 2);
        strcat(got, "\n");
    }
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s/", tmp);
    replace_all(got, prefix, "");
    replace_all(got, FIX, "FIXTURES");
    replace_all(got, tmp, "TMPDIR");
    snprintf(path, sizeof path, "%s/tests/policy/bad/%s.expect", src, name);
    if (getenv("BG_UPDATE_EXPECT")) {
        FILE *f = fopen(path, "w");
        if (f) {
            fputs(got, f);
            fclose(f);
        }
    }
    char *want = pt_read(path);
    /* every case is compared and reported before the test fails */
    int same = want && strcmp(got, want) == 0;
    if (!want)
        bg_test_tally(__FILE__, __LINE__, name, "%s is missing; got:\n%s", path, got);
    else if (!same)
        bg_test_tally(__FILE__, __LINE__, name, "messages differ\n  got:      %s\n  expected: %s",
                      got, want);
    free(want);
    bg_policy_errors_free(&errs);
    pt_rmtree(tmp);
    return same;
}

int main(void)
{
    const char *src = getenv("BG_SOURCE_DIR");
    if (!src) {
        printf("BG_SOURCE_DIR not set: run through ctest\n");
        return 77;
    }
    bg_plugin_host *host = NULL;
    bg_err err;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &host, &err), BG_OK);
    if (!host)
        CHECK_DONE("test_policy_corpus");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/policy/bad", src);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0, ok = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
        n++;
        ok += check_one(host, src, name);
    }
    if (d)
        closedir(d);
    printf("corpus: %d of %d broken policies refused with the expected messages\n", ok, n);
    CHECK(n >= 30);
    bg_plugin_host_destroy(host);
    CHECK_DONE("test_policy_corpus");
}
