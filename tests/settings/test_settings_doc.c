/*
 * test_settings_doc.c — docs/CONFIG.md against the settings table.
 *
 * The "Flags and config keys" table must have one row per setting, in the
 * form | `--flag ARG` … | `key` … or — | default | range | meaning |, with
 * the table's flag and argument name, config key, default (`def`, or the
 * text of `absent`) and range; and the doc must name no setting the table
 * lacks: no extra row, no `--flag` before the CLI section that the daemon
 * does not have, no key in the example --config file that it would refuse.
 * Reads the real table (bg_settings_table), so the doc cannot drift from
 * the binary.
 */
#include <ctype.h>

#include "settings/settings.h"
#include "settings_test.h"

#define MAX_ROWS 64

typedef struct row {
    int line;
    char cell[4][512]; /* flag, key, default, range; trimmed */
} row;

static void trim_into(char *dst, size_t cap, const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    snprintf(dst, cap, "%.*s", (int)n, s);
}

/* The first `code` span of a cell ("" if none). */
static void first_code(const char *cell, char *out, size_t cap)
{
    const char *a = strchr(cell, '`');
    const char *b = a ? strchr(a + 1, '`') : NULL;
    snprintf(out, cap, "%.*s", a && b ? (int)(b - a - 1) : 0, a && b ? a + 1 : "");
}

/* Rows of the table under "## Flags and config keys" that start with a flag. */
static int read_rows(const char *doc, row *rows)
{
    const char *p = strstr(doc, "\n## Flags and config keys\n");
    CHECK(p != NULL, "%s", "CONFIG.md has no '## Flags and config keys' section");
    const char *end = strstr(p + 1, "\n## ");
    const char *hdr = strstr(p, "\n| flag | config key | default | range | meaning |\n");
    CHECK(hdr != NULL && (end == NULL || hdr < end), "%s",
          "the settings table's header must be | flag | config key | default | range | meaning |");
    int n = 0, line = 2; /* the heading line, after the newline at p */
    for (const char *q = doc; q < p; q++)
        line += *q == '\n';
    for (const char *l = p + 1; *l && (end == NULL || l < end); line++) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > 4 && strncmp(l, "| `--", 5) == 0) {
            CHECK(n < MAX_ROWS, "%s", "too many rows");
            row *r = &rows[n++];
            r->line = line;
            const char *c = l + 1;
            for (int k = 0; k < 4; k++) {
                const char *bar = memchr(c, '|', len - (size_t)(c - l));
                CHECK(bar != NULL, "CONFIG.md:%d: expected 5 cells: %.*s", line, (int)len, l);
                trim_into(r->cell[k], sizeof r->cell[k], c, (size_t)(bar - c));
                c = bar + 1;
            }
        }
        if (!nl)
            break;
        l = nl + 1;
    }
    return n;
}

static const bg_setting *by_flag(const char *flag)
{
    for (size_t i = 0; i < BG_SETTING_COUNT; i++)
        if (strcmp(bg_settings_table[i].flag, flag) == 0)
            return &bg_settings_table[i];
    return NULL;
}

static void check_row(const row *r, const bg_setting *e)
{
    char want[256], got[256];
    /* flag and argument name */
    snprintf(want, sizeof want, "--%s%s%s", e->flag, e->arg ? " " : "", e->arg ? e->arg : "");
    first_code(r->cell[0], got, sizeof got);
    CHECK(strcmp(got, want) == 0, "CONFIG.md:%d: flag cell `%s`, the daemon has `%s`", r->line, got,
          want);
    CHECK((strstr(r->cell[0], "repeatable") != NULL) == (e->type == BG_SETTING_TYPE_LIST),
          "CONFIG.md:%d: --%s: say (repeatable) exactly for a repeatable setting", r->line,
          e->flag);
    /* config key */
    if (e->key == NULL) {
        CHECK(strcmp(r->cell[1], "—") == 0,
              "CONFIG.md:%d: --%s is a flag only: key cell '—', not '%s'", r->line, e->flag,
              r->cell[1]);
    } else {
        first_code(r->cell[1], got, sizeof got);
        CHECK(strcmp(got, e->key) == 0,
              "CONFIG.md:%d: --%s: config key `%s`, the daemon reads `%s`", r->line, e->flag, got,
              e->key);
    }
    /* default */
    if (e->def != NULL) {
        snprintf(want, sizeof want, "`%s`", e->def);
        CHECK(strcmp(r->cell[2], want) == 0, "CONFIG.md:%d: --%s: default '%s', the daemon's is %s",
              r->line, e->flag, r->cell[2], want);
    } else {
        CHECK(strncmp(r->cell[2], e->absent, strlen(e->absent)) == 0 &&
                  (e->absent[0] != '\0' || r->cell[2][0] == '\0'),
              "CONFIG.md:%d: --%s: default '%s', the daemon's is '%s'", r->line, e->flag,
              r->cell[2], e->absent);
    }
    /* range */
    if (e->type == BG_SETTING_TYPE_INT)
        snprintf(want, sizeof want, "[%ld, %ld]", e->min, e->max);
    else if (e->type == BG_SETTING_TYPE_LIST)
        snprintf(want, sizeof want, "at most %ld", e->max);
    else
        want[0] = '\0';
    CHECK(strcmp(r->cell[3], want) == 0, "CONFIG.md:%d: --%s: range '%s', the daemon's is '%s'",
          r->line, e->flag, r->cell[3], want);
}

/* Every `--flag` between the top and the CLI section is a daemon flag. */
static void flags_named(const char *doc)
{
    const char *end = strstr(doc, "\n## The `bayesguard` CLI");
    CHECK(end != NULL, "%s", "CONFIG.md has no '## The `bayesguard` CLI' section");
    int seen = 0;
    for (const char *p = doc; (p = strstr(p, "`--")) != NULL && p < end; p++) {
        char flag[64];
        size_t n = strspn(p + 3, "abcdefghijklmnopqrstuvwxyz-");
        snprintf(flag, sizeof flag, "%.*s", (int)n, p + 3);
        CHECK(by_flag(flag) != NULL, "CONFIG.md names `--%s`, which bayesguardd does not have",
              flag);
        seen++;
    }
    printf("  %d `--flag` spans above the CLI section, all daemon flags\n", seen);
}

/* Each key of the example --config file is a config key. */
static void example_keys(const char *doc)
{
    const char *p = strstr(doc, "Example `--config` file:");
    CHECK(p != NULL, "%s", "CONFIG.md has no 'Example `--config` file:'");
    p = strstr(p, "```yaml\n");
    const char *end = p ? strstr(p + 8, "```") : NULL;
    CHECK(p != NULL && end != NULL, "%s", "the example --config file is not a ```yaml block");
    int n = 0;
    for (const char *l = p + 8; l < end; l = strchr(l, '\n') + 1) {
        size_t k = strspn(l, "abcdefghijklmnopqrstuvwxyz_");
        CHECK(k > 0 && l[k] == ':', "example --config line: %.40s", l);
        int found = 0;
        for (size_t i = 0; i < BG_SETTING_COUNT; i++)
            found |= bg_settings_table[i].key && strlen(bg_settings_table[i].key) == k &&
                     strncmp(bg_settings_table[i].key, l, k) == 0;
        CHECK(found, "the example --config file sets '%.*s', which bayesguardd refuses", (int)k, l);
        n++;
    }
    printf("  %d keys in the example --config file, all config keys\n", n);
}

int main(void)
{
    const char *src = getenv("BG_SOURCE_DIR");
    if (src == NULL) {
        printf("BG_SOURCE_DIR not set (run through ctest); skipped\n");
        return BG_TEST_SKIP;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/CONFIG.md", src);
    char *doc = st_read(path);
    static row rows[MAX_ROWS];
    int n = read_rows(doc, rows);
    int seen[BG_SETTING_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        char flag[256];
        first_code(rows[i].cell[0], flag, sizeof flag);
        flag[strcspn(flag, " ")] = '\0';
        const bg_setting *e = by_flag(flag + 2);
        CHECK(e != NULL, "CONFIG.md:%d: a row for `%s`, which bayesguardd does not have",
              rows[i].line, flag);
        size_t id = (size_t)(e - bg_settings_table);
        CHECK(!seen[id], "CONFIG.md:%d: a second row for --%s", rows[i].line, e->flag);
        seen[id] = 1;
        check_row(&rows[i], e);
    }
    for (size_t i = 0; i < BG_SETTING_COUNT; i++)
        CHECK(seen[i], "CONFIG.md documents no --%s (config key %s): add its row",
              bg_settings_table[i].flag, bg_settings_table[i].key ? bg_settings_table[i].key : "—");
    printf("  %d settings, one row each, flag, key, default and range as the daemon has them\n", n);
    flags_named(doc);
    example_keys(doc);
    free(doc);
    CHECK_DONE("test_settings_doc");
}
