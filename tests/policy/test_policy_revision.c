/*
 * test_policy_revision.c — the policy-set revision is SHA-256 over, per
 * file in name order, the file name with its NUL, its length as a native
 * u64 and its bytes. Checked two ways, so the hash backend can change
 * (hand-written before, libcrypto now) without a revision changing:
 *   1. against `sha256sum` of that byte stream, written out by this test;
 *   2. against a known answer for a fixed two-file set, recorded with the
 *      hand-written SHA-256 before it was replaced: replicas of both
 *      builds report the same revision for the same policies.
 */
#include "policy_test.h"

/* The revision of the set written by write_set(), from the hand-written
 * implementation (daemon/policy/sha256.c, before libcrypto) and `sha256sum`. */
#define KNOWN_REVISION "22431b523ebb5f847793bbf10b6012bd466190e02f716752dee99dfedb1a894d"

static const char *const names[] = {"a.yaml", "b.yml"}; /* name order */

static void write_set(const char *dir, char texts[2][2048])
{
    pt_policy(texts[0], sizeof texts[0], "payments", "[\"transfer_*\"]", "{n: 8, rate: 0.2}", NULL);
    pt_policy(texts[1], sizeof texts[1], "shell", "[shell, \"exec_*\"]", "{}",
              "  priority: 5\n  mode: shadow\n");
    for (int i = 0; i < 2; i++)
        CHECK_INT(pt_write(dir, names[i], texts[i]), 0);
}

/* sha256sum's hex digest of the revision's byte stream (written to path). */
static int sha256sum_of_stream(const char *path, char texts[2][2048], char out[65])
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    for (int i = 0; i < 2; i++) {
        uint64_t len = strlen(texts[i]);
        fwrite(names[i], 1, strlen(names[i]) + 1, f);
        fwrite(&len, sizeof len, 1, f);
        fwrite(texts[i], 1, len, f);
    }
    if (fclose(f) != 0)
        return -1;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int ok = fgets(out, 65, p) != NULL && strlen(out) == 64;
    return pclose(p) == 0 && ok ? 0 : -1;
}

int main(void)
{
    bg_err err;
    bg_plugin_host *host = NULL;
    CHECK_INT(bg_plugin_host_create(FIX "/good", &host, &err), BG_OK);
    if (!host)
        CHECK_DONE("test_policy_revision");
    char dir[128], stream[160], texts[2][2048], want[65] = "";
    CHECK_INT(pt_mkdtemp(dir, sizeof dir, "rev"), 0);
    write_set(dir, texts);
    snprintf(stream, sizeof stream, "%s.stream", dir);
    CHECK_INT(sha256sum_of_stream(stream, texts, want), 0);

    bg_policy_set *s = NULL;
    bg_policy_errors errs = {0};
    CHECK_INT(bg_policy_set_load(dir, host, &s, &errs), BG_OK);
    bg_policy_errors_free(&errs);
    CHECK(s != NULL);
    if (s) {
        printf("revision %s, sha256sum %s\n", bg_policy_set_revision(s), want);
        CHECK_STR(bg_policy_set_revision(s), want);
        CHECK_STR(bg_policy_set_revision(s), KNOWN_REVISION);
        bg_policy_set_unref(s);
    }
    unlink(stream);
    pt_rmtree(dir);
    bg_plugin_host_destroy(host);
    CHECK_DONE("test_policy_revision");
}
