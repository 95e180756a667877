/*
 * policy_glob.c — do two fnmatch patterns share a matching tool name?
 *
 * Overlapping `match.tools` between policies of equal priority is a
 * configuration error (POLICIES.md), so the check must find overlaps like
 * "transfer_*" vs "*_money", not only a pattern matching the other's text.
 * Patterns are tokenised (literal, '?', '*', '[...]' class, '\' escape) and
 * the intersection of the two languages is searched by dynamic programming
 * over (position in a, position in b) — O(|a|·|b|). Classes are treated
 * as "any one character" unless compared with a literal (then fnmatch
 * decides), so the answer may say "overlap" for two disjoint classes:
 * conservative, never missing a real overlap.
 * Threads: any (pure).
 */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_priv.h"

typedef struct tok {
    char kind;       /* 'c' literal, '?', '*', '[' class */
    char c;          /* literal */
    const char *cls; /* class text "[...]" */
    size_t cls_len;
} tok;

static size_t tokenize(const char *p, tok *t)
{
    size_t n = 0;
    while (*p) {
        tok *k = &t[n++];
        memset(k, 0, sizeof *k);
        if (*p == '*' || *p == '?') {
            k->kind = *p++;
        } else if (*p == '[' && strchr(p + 1, ']')) {
            const char *end = strchr(p + (p[1] == ']' ? 2 : 1), ']');
            if (!end)
                end = strchr(p + 1, ']');
            k->kind = '[';
            k->cls = p;
            k->cls_len = (size_t)(end - p + 1);
            p = end + 1;
        } else {
            if (*p == '\\' && p[1])
                p++;
            k->kind = 'c';
            k->c = *p++;
        }
    }
    return n;
}

static int class_has(const tok *cls, char c)
{
    char pat[256], s[2] = {c, 0};
    if (cls->cls_len >= sizeof pat)
        return 1;
    memcpy(pat, cls->cls, cls->cls_len);
    pat[cls->cls_len] = '\0';
    return fnmatch(pat, s, 0) == 0;
}

static int one_compatible(const tok *x, const tok *y)
{
    if (x->kind == 'c' && y->kind == 'c')
        return x->c == y->c;
    if (x->kind == 'c' && y->kind == '[')
        return class_has(y, x->c);
    if (x->kind == '[' && y->kind == 'c')
        return class_has(x, y->c);
    return 1; /* '?' or two classes */
}

int bg__glob_overlap(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    tok *ta = calloc(la + 1, sizeof *ta), *tb = calloc(lb + 1, sizeof *tb);
    /* ok[i][j]: a[i..] and b[j..] share a string; filled from the ends. */
    unsigned char *ok = NULL;
    int result = 1; /* on ENOMEM say "overlap": the safe answer */
    if (!ta || !tb)
        goto out;
    size_t na = tokenize(a, ta), nb = tokenize(b, tb);
    ok = calloc((na + 1) * (nb + 1), 1);
    if (!ok)
        goto out;
#define OK(i, j) ok[(i) * (nb + 1) + (j)]
    for (size_t i = na + 1; i-- > 0;) {
        for (size_t j = nb + 1; j-- > 0;) {
            int v;
            if (i == na && j == nb)
                v = 1;
            else if (i < na && ta[i].kind == '*')
                v = OK(i + 1, j) || (j < nb && OK(i, j + 1));
            else if (j < nb && tb[j].kind == '*')
                v = OK(i, j + 1) || (i < na && OK(i + 1, j));
            else if (i < na && j < nb)
                v = one_compatible(&ta[i], &tb[j]) && OK(i + 1, j + 1);
            else
                v = 0;
            OK(i, j) = (unsigned char)v;
        }
    }
    result = OK(0, 0);
#undef OK
out:
    free(ta);
    free(tb);
    free(ok);
    return result;
}
