/*
 * features.c — the feature-expression language of features.h: tokenizer,
 * recursive-descent parser to a flat node array, evaluator over jansson
 * values.
 *
 * Why shaped so: an expression is compiled once per policy load and run
 * per request on many threads, so the compiled form is an immutable array
 * of nodes (children by index, regexes compiled at load) and evaluation is
 * a recursion over it that allocates nothing; its depth is the parser's
 * bounded nesting. Every node keeps its source span, so an error names the
 * column (compile) or quotes the sub-expression and the field (evaluate).
 *
 * Invariants: nodes[root] is the whole expression; a child's index is
 * below its parent's; a matches() call's regex is compiled (re != NULL);
 * n_nodes <= BG_FEATURES_MAX_NODES.
 */
#include "features/features.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bg_err.h"

#define BG__STR2(x) #x
#define BG__STR(x) BG__STR2(x)

/* ------------------------------------------------------------ nodes */

typedef enum {
    N_NUM,
    N_STR,
    N_BOOL,
    N_NULL,
    N_PATH, /* a: first segment */
    N_SEG,  /* s: field name, or idx >= 0; next: the following segment */
    N_NOT,  /* a */
    N_NEG,  /* a */
    N_BIN,  /* op, a, b */
    N_CALL, /* fn, a: first argument (chained by next), nargs */
} kind;

typedef enum { F_LOG10, F_LN, F_ABS, F_LEN, F_MATCHES, F_CONTAINS, F_MIN, F_MAX } fn_id;

#define BG__FEATURE_MAX_ARGS 16 /* eval_call's argument array; no function takes more */
static const struct {
    const char *name;
    int min_args, max_args;
} fns[] = {
    [F_LOG10] = {"log10", 1, 1},
    [F_LN] = {"ln", 1, 1},
    [F_ABS] = {"abs", 1, 1},
    [F_LEN] = {"len", 1, 1},
    [F_MATCHES] = {"matches", 2, 2},
    [F_CONTAINS] = {"contains", 2, 2},
    [F_MIN] = {"min", 1, BG__FEATURE_MAX_ARGS},
    [F_MAX] = {"max", 1, BG__FEATURE_MAX_ARGS},
};
#define N_FNS (sizeof(fns) / sizeof(fns[0]))

/* Token kinds; the binary operators double as N_BIN ops. */
typedef enum {
    T_EOF,
    T_NUM,
    T_STR,
    T_NAME,
    T_LP,
    T_RP,
    T_LB,
    T_RB,
    T_DOT,
    T_COMMA,
    T_NOT,
    T_OR,
    T_AND,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
} tok_kind;

static const char *const op_text[] = {
    [T_OR] = "||", [T_AND] = "&&", [T_EQ] = "==",  [T_NE] = "!=",   [T_LT] = "<",   [T_LE] = "<=",
    [T_GT] = ">",  [T_GE] = ">=",  [T_PLUS] = "+", [T_MINUS] = "-", [T_STAR] = "*", [T_SLASH] = "/",
};

typedef struct node {
    kind k;
    int op;    /* N_BIN: a tok_kind; N_CALL: an fn_id */
    int a, b;  /* children (-1 none) */
    int next;  /* N_SEG / call arguments: the following one (-1 none) */
    int nargs; /* N_CALL */
    int start; /* source span [start, end), 0-based */
    int end;
    double num;  /* N_NUM; N_BOOL: 0/1 */
    char *s;     /* owned: N_STR text, N_SEG name (NULL for an index) */
    size_t slen; /* N_STR */
    long idx;    /* N_SEG index, -1 for a name */
    char *shown; /* owned: N_SEG, the path up to here (".a.b[0]") */
    regex_t *re; /* owned: N_CALL matches */
} node;

struct bg_feature_expr {
    char *src;
    node *nodes;
    int n_nodes;
    int root;
};

/* ------------------------------------------------------------ lexer */

typedef struct tok {
    tok_kind k;
    int start, end;
    double num;
    int integral; /* NUMBER without '.' or exponent */
    char str[BG_FEATURES_MAX_STR + 1];
    size_t slen;
} tok;

typedef struct parser {
    const char *src;
    int len, pos;
    int last_end; /* the end of the token before p->t */
    tok t;
    bg_feature_expr *e;
    int depth;
    int failed;
    int err_col;
    char *msg;
    size_t msg_len;
    int nomem;
} parser;

static int fail(parser *p, int at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, int at, const char *fmt, ...)
{
    if (!p->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->msg, p->msg_len, fmt, ap);
        va_end(ap);
        p->failed = 1;
        p->err_col = at + 1;
    }
    return -1;
}

static int lex_string(parser *p, tok *t)
{
    int i = p->pos + 1;
    t->slen = 0;
    for (;;) {
        if (i >= p->len)
            return fail(p, t->start, "unterminated string: add the closing '\"'");
        char c = p->src[i];
        if (c == '"')
            break;
        if (c == '\\') {
            char n = i + 1 < p->len ? p->src[i + 1] : '\0';
            if (n == 'n')
                c = '\n';
            else if (n == 't')
                c = '\t';
            else if (n == '"' || n == '\\')
                c = n;
            else
                return fail(p, i, "unknown escape in a string: use \\\", \\\\, \\n or \\t");
            i++;
        } else if (c == '\0') {
            return fail(p, i, "a NUL byte in a string");
        }
        if (t->slen >= BG_FEATURES_MAX_STR)
            return fail(p, t->start, "string longer than %d bytes", BG_FEATURES_MAX_STR);
        t->str[t->slen++] = c;
        i++;
    }
    t->str[t->slen] = '\0';
    p->pos = i + 1;
    t->k = T_STR;
    return 0;
}

static int lex_number(parser *p, tok *t)
{
    int i = p->pos;
    const char *s = p->src;
    t->integral = 1;
    while (i < p->len && isdigit((unsigned char)s[i]))
        i++;
    if (i < p->len && s[i] == '.') {
        t->integral = 0;
        if (++i >= p->len || !isdigit((unsigned char)s[i]))
            return fail(p, i, "expected a digit after '.' in a number");
        while (i < p->len && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        t->integral = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= p->len || !isdigit((unsigned char)s[i]))
            return fail(p, i, "expected the exponent's digits in a number");
        while (i < p->len && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < p->len && (isalpha((unsigned char)s[i]) || s[i] == '_'))
        return fail(p, i, "unexpected '%c' after a number", s[i]);
    char buf[64];
    if (i - p->pos >= (int)sizeof buf)
        return fail(p, p->pos, "number longer than %zu characters", sizeof buf - 1);
    memcpy(buf, s + p->pos, (size_t)(i - p->pos));
    buf[i - p->pos] = '\0';
    t->num = strtod(buf, NULL);
    if (!isfinite(t->num))
        return fail(p, p->pos, "number %s is out of range", buf);
    p->pos = i;
    t->k = T_NUM;
    return 0;
}

/* Read the next token into p->t; -1 on a lexical error. */
static int next(parser *p)
{
    const char *s = p->src;
    while (p->pos < p->len &&
           (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\n' || s[p->pos] == '\r'))
        p->pos++;
    tok *t = &p->t;
    p->last_end = t->end;
    t->start = p->pos;
    if (p->pos >= p->len) {
        t->k = T_EOF;
        t->end = p->pos;
        return 0;
    }
    char c = s[p->pos], d = p->pos + 1 < p->len ? s[p->pos + 1] : '\0';
    int rc = 0, two = 0;
    if (c == '"') {
        rc = lex_string(p, t);
    } else if (isdigit((unsigned char)c)) {
        rc = lex_number(p, t);
    } else if (isalpha((unsigned char)c) || c == '_') {
        int i = p->pos;
        while (i < p->len && (isalnum((unsigned char)s[i]) || s[i] == '_'))
            i++;
        if (i - p->pos > BG_FEATURES_MAX_STR)
            return fail(p, p->pos, "name longer than %d bytes", BG_FEATURES_MAX_STR);
        t->slen = (size_t)(i - p->pos);
        memcpy(t->str, s + p->pos, t->slen);
        t->str[t->slen] = '\0';
        t->k = T_NAME;
        p->pos = i;
    } else {
        switch (c) {
        case '(':
            t->k = T_LP;
            break;
        case ')':
            t->k = T_RP;
            break;
        case '[':
            t->k = T_LB;
            break;
        case ']':
            t->k = T_RB;
            break;
        case '.':
            t->k = T_DOT;
            break;
        case ',':
            t->k = T_COMMA;
            break;
        case '+':
            t->k = T_PLUS;
            break;
        case '-':
            t->k = T_MINUS;
            break;
        case '*':
            t->k = T_STAR;
            break;
        case '/':
            t->k = T_SLASH;
            break;
        case '!':
            t->k = d == '=' ? T_NE : T_NOT;
            two = d == '=';
            break;
        case '<':
            t->k = d == '=' ? T_LE : T_LT;
            two = d == '=';
            break;
        case '>':
            t->k = d == '=' ? T_GE : T_GT;
            two = d == '=';
            break;
        case '=':
            if (d != '=')
                return fail(p, p->pos, "unexpected '=': compare with '=='");
            t->k = T_EQ;
            two = 1;
            break;
        case '&':
            if (d != '&')
                return fail(p, p->pos, "unexpected '&': 'and' is '&&'");
            t->k = T_AND;
            two = 1;
            break;
        case '|':
            if (d != '|')
                return fail(p, p->pos, "unexpected '|': 'or' is '||'");
            t->k = T_OR;
            two = 1;
            break;
        default:
            if (isprint((unsigned char)c))
                return fail(p, p->pos, "unexpected character '%c'", c);
            return fail(p, p->pos, "unexpected byte 0x%02x", (unsigned char)c);
        }
        p->pos += 1 + two;
    }
    t->end = p->pos;
    return rc;
}

/* ----------------------------------------------------------- parser */

static int add_node(parser *p, kind k, int start)
{
    bg_feature_expr *e = p->e;
    if (e->n_nodes >= BG_FEATURES_MAX_NODES)
        return fail(p, start, "expression too large: more than %d nodes", BG_FEATURES_MAX_NODES);
    node *n = &e->nodes[e->n_nodes];
    memset(n, 0, sizeof *n);
    n->k = k;
    n->a = n->b = n->next = -1;
    n->idx = -1;
    n->start = start;
    n->end = start;
    return e->n_nodes++;
}

static char *dup_n(parser *p, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) {
        p->nomem = 1;
        fail(p, 0, "out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static const char *tok_name(const tok *t)
{
    static const char *const names[] = {
        [T_EOF] = "the end", [T_NUM] = "a number", [T_STR] = "a string", [T_NAME] = "a name",
        [T_LP] = "'('",      [T_RP] = "')'",       [T_LB] = "'['",       [T_RB] = "']'",
        [T_DOT] = "'.'",     [T_COMMA] = "','",    [T_NOT] = "'!'",
    };
    if (t->k < (int)(sizeof names / sizeof names[0]) && names[t->k])
        return names[t->k];
    return op_text[t->k];
}

static int expect(parser *p, tok_kind k, const char *what)
{
    if (p->t.k != k)
        return fail(p, p->t.start, "expected %s, found %s", what, tok_name(&p->t));
    return next(p);
}

static int parse_expr(parser *p);

static int parse_path(parser *p)
{
    int start = p->t.start;
    int path = add_node(p, N_PATH, start);
    if (path < 0)
        return -1;
    char shown[BG_FEATURES_MAX_SRC + 64];
    size_t used = 0;
    int prev = -1, segs = 0;
    for (int first = 1;; first = 0) {
        int seg_start = p->t.start;
        long idx = -1;
        char name[BG_FEATURES_MAX_STR + 1];
        size_t nlen = 0;
        if (first && p->t.k == T_NAME) {
            memcpy(name, p->t.str, p->t.slen + 1);
            nlen = p->t.slen;
            if (next(p))
                return -1;
        } else if (p->t.k == T_DOT) {
            if (next(p))
                return -1;
            if (p->t.k != T_NAME)
                return fail(p, p->t.start, "expected a field name after '.', found %s",
                            tok_name(&p->t));
            memcpy(name, p->t.str, p->t.slen + 1);
            nlen = p->t.slen;
            if (next(p))
                return -1;
        } else if (p->t.k == T_LB) {
            if (next(p))
                return -1;
            if (p->t.k == T_NUM) {
                if (!p->t.integral || p->t.num > 1e6)
                    return fail(p, p->t.start, "an array index must be an integer 0..1000000");
                idx = (long)p->t.num;
            } else if (p->t.k == T_STR) {
                memcpy(name, p->t.str, p->t.slen + 1);
                nlen = p->t.slen;
                if (memchr(name, '\0', nlen))
                    return fail(p, p->t.start, "a field name may not contain a NUL byte");
            } else {
                return fail(p, p->t.start,
                            "expected an index or a quoted field name after '[', "
                            "found %s",
                            tok_name(&p->t));
            }
            if (next(p) || expect(p, T_RB, "']'"))
                return -1;
        } else {
            break;
        }
        if (++segs > 16)
            return fail(p, seg_start, "a path may have at most 16 parts");
        int sg = add_node(p, N_SEG, seg_start);
        if (sg < 0)
            return -1;
        node *s = &p->e->nodes[sg];
        s->idx = idx;
        int w;
        if (idx >= 0)
            w = snprintf(shown + used, sizeof shown - used, "[%ld]", idx);
        else if (seg_start < p->len && p->src[seg_start] == '[')
            w = snprintf(shown + used, sizeof shown - used, "[\"%s\"]", name);
        else
            w = snprintf(shown + used, sizeof shown - used, ".%s", name);
        used += (w > 0 && (size_t)w < sizeof shown - used) ? (size_t)w : 0;
        if (idx < 0 && !(s->s = dup_n(p, name, nlen)))
            return -1;
        if (!(s->shown = dup_n(p, shown, used)))
            return -1;
        s->end = p->last_end;
        if (prev < 0)
            p->e->nodes[path].a = sg;
        else
            p->e->nodes[prev].next = sg;
        prev = sg;
    }
    p->e->nodes[path].end = p->e->nodes[prev].end;
    return path;
}

/* Bounds on a matches() pattern, so regcomp's memory and regexec's time
 * stay small whatever the policy says (glibc copies the operand of `+` and
 * of an interval, so nested ones multiply): no back-references, no
 * intervals ({n,m}: write a literal brace as \\{ or [{]), at most
 * BG_FEATURES_MAX_REPEAT repetition operators (* + ?) of which at most
 * BG_FEATURES_MAX_PLUS are `+` (so at most 2^8 copies of any part), none
 * applied straight to another. Bracket expressions are skipped whole.
 * Returns the offending byte's offset, or -1. */
#define BG_FEATURES_MAX_REPEAT 16
#define BG_FEATURES_MAX_PLUS 8
static int regex_unbounded(const char *pat, size_t n, const char **why)
{
    int reps = 0, plus = 0, after_rep = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = pat[i];
        if (ch == '\\' && i + 1 < n) {
            if (isdigit((unsigned char)pat[i + 1])) {
                *why = "back-references are not allowed";
                return (int)i;
            }
            i++;
            after_rep = 0;
            continue;
        }
        if (ch == '[') { /* to the closing ']' (a leading ']' or '^]' is literal) */
            size_t j = i + 1;
            if (j < n && pat[j] == '^')
                j++;
            if (j < n && pat[j] == ']')
                j++;
            while (j < n && pat[j] != ']') {
                if (pat[j] == '[' && j + 1 < n && strchr(":.=", pat[j + 1])) {
                    const char *end = strstr(pat + j + 2, pat[j + 1] == ':'   ? ":]"
                                                          : pat[j + 1] == '.' ? ".]"
                                                                              : "=]");
                    j = end ? (size_t)(end - pat) + 1 : n;
                }
                j++;
            }
            i = j;
            after_rep = 0;
            continue;
        }
        if (ch == '{') {
            *why = "intervals ({n,m}) are not allowed: use * + ? (a literal brace is \\\\{)";
            return (int)i;
        }
        if (ch == '*' || ch == '+' || ch == '?') {
            if (after_rep) {
                *why = "a repetition of a repetition (like a+* or a?+) is not allowed";
                return (int)i;
            }
            if (++reps > BG_FEATURES_MAX_REPEAT) {
                *why = "more than 16 repetition operators (* + ?)";
                return (int)i;
            }
            if (ch == '+' && ++plus > BG_FEATURES_MAX_PLUS) {
                *why = "more than 8 '+' operators";
                return (int)i;
            }
            after_rep = 1;
            continue;
        }
        after_rep = 0;
    }
    return -1;
}

/* A regex for matches(): ERE within the bounds above, compiled now. */
static int compile_regex(parser *p, int call, const node *pat)
{
    const char *why = NULL;
    if (regex_unbounded(pat->s, pat->slen, &why) >= 0)
        return fail(p, pat->start, "matches(): %s in \"%s\"", why, pat->s);
    regex_t *re = malloc(sizeof *re);
    if (!re) {
        p->nomem = 1;
        return fail(p, pat->start, "out of memory");
    }
    int rc = regcomp(re, pat->s, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char text[128];
        regerror(rc, re, text, sizeof text);
        free(re);
        return fail(p, pat->start, "matches(): invalid regular expression \"%s\": %s", pat->s,
                    text);
    }
    p->e->nodes[call].re = re;
    return 0;
}

static int parse_call(parser *p)
{
    int start = p->t.start;
    int f = -1;
    for (size_t i = 0; i < N_FNS; i++)
        if (strcmp(fns[i].name, p->t.str) == 0)
            f = (int)i;
    if (f < 0)
        return fail(p, start,
                    "unknown function '%s': functions are log10, ln, abs, len, "
                    "matches, contains, min, max",
                    p->t.str);
    int c = add_node(p, N_CALL, start);
    if (c < 0 || next(p) || next(p)) /* the name, then '(' */
        return -1;
    p->e->nodes[c].op = f;
    int prev = -1, n = 0;
    if (p->t.k != T_RP) {
        for (;;) {
            int a = parse_expr(p);
            if (a < 0)
                return -1;
            if (prev < 0)
                p->e->nodes[c].a = a;
            else
                p->e->nodes[prev].next = a;
            prev = a;
            n++;
            if (p->t.k != T_COMMA)
                break;
            if (next(p))
                return -1;
        }
    }
    p->e->nodes[c].end = p->t.end;
    if (expect(p, T_RP, "',' or ')'"))
        return -1;
    node *cn = &p->e->nodes[c];
    cn->nargs = n;
    if (n < fns[f].min_args || n > fns[f].max_args) {
        if (fns[f].min_args == fns[f].max_args)
            return fail(p, start, "%s() takes %d argument%s, got %d", fns[f].name, fns[f].min_args,
                        fns[f].min_args == 1 ? "" : "s", n);
        return fail(p, start, "%s() takes %d to %d arguments, got %d", fns[f].name, fns[f].min_args,
                    fns[f].max_args, n);
    }
    if (f == F_MATCHES) {
        const node *pat = &p->e->nodes[p->e->nodes[cn->a].next];
        if (pat->k != N_STR)
            return fail(p, pat->start,
                        "matches(): the pattern must be a string literal (it "
                        "is compiled when the policy loads)");
        if (compile_regex(p, c, pat))
            return -1;
    }
    return c;
}

static int parse_primary(parser *p)
{
    tok *t = &p->t;
    int start = t->start;
    int n;
    switch (t->k) {
    case T_NUM:
        if ((n = add_node(p, N_NUM, start)) < 0)
            return -1;
        p->e->nodes[n].num = t->num;
        break;
    case T_STR:
        if ((n = add_node(p, N_STR, start)) < 0)
            return -1;
        if (!(p->e->nodes[n].s = dup_n(p, t->str, t->slen)))
            return -1;
        p->e->nodes[n].slen = t->slen;
        break;
    case T_LP:
        if (next(p))
            return -1;
        if ((n = parse_expr(p)) < 0)
            return -1;
        p->e->nodes[n].start = start; /* the span includes the parentheses */
        p->e->nodes[n].end = t->end;
        return expect(p, T_RP, "')'") ? -1 : n;
    case T_LB: /* a path whose first field is not a NAME: ["x-id"] */
        return parse_path(p);
    case T_NAME: {
        int save = p->pos;
        tok name = *t;
        if (next(p))
            return -1;
        int call = t->k == T_LP;
        /* back up to the name: parse_call / parse_path start there */
        p->pos = save;
        *t = name;
        if (call) {
            p->pos = name.start;
            if (next(p))
                return -1;
            return parse_call(p);
        }
        if (strcmp(name.str, "true") == 0 || strcmp(name.str, "false") == 0) {
            if ((n = add_node(p, N_BOOL, start)) < 0)
                return -1;
            p->e->nodes[n].num = name.str[0] == 't';
            break;
        }
        if (strcmp(name.str, "null") == 0) {
            if ((n = add_node(p, N_NULL, start)) < 0)
                return -1;
            break;
        }
        return parse_path(p);
    }
    default:
        return fail(p, start,
                    "expected a value (a number, a string, true, false, null, a "
                    "field or a function call), found %s",
                    tok_name(t));
    }
    p->e->nodes[n].end = t->end;
    return next(p) ? -1 : n;
}

static int parse_unary(parser *p)
{
    if (p->t.k != T_NOT && p->t.k != T_MINUS)
        return parse_primary(p);
    int start = p->t.start;
    kind k = p->t.k == T_NOT ? N_NOT : N_NEG;
    if (++p->depth > BG_FEATURES_MAX_DEPTH)
        return fail(p, start, "expression nested deeper than %d", BG_FEATURES_MAX_DEPTH);
    if (next(p))
        return -1;
    int a = parse_unary(p);
    p->depth--;
    if (a < 0)
        return -1;
    int n = add_node(p, k, start);
    if (n < 0)
        return -1;
    p->e->nodes[n].a = a;
    p->e->nodes[n].end = p->e->nodes[a].end;
    return n;
}

/* One left-associative level of binary operators: ops[] ends with T_EOF. */
static int parse_level(parser *p, int level);

static const tok_kind levels[][5] = {
    {T_OR, T_EOF},
    {T_AND, T_EOF},
    {T_EQ, T_NE, T_EOF},
    {T_LT, T_LE, T_GT, T_GE, T_EOF},
    {T_PLUS, T_MINUS, T_EOF},
    {T_STAR, T_SLASH, T_EOF},
};
#define N_LEVELS ((int)(sizeof levels / sizeof levels[0]))

static int at_level(const parser *p, int level)
{
    for (const tok_kind *o = levels[level]; *o != T_EOF; o++)
        if (p->t.k == *o)
            return 1;
    return 0;
}

static int parse_level(parser *p, int level)
{
    if (level == N_LEVELS)
        return parse_unary(p);
    int l = parse_level(p, level + 1);
    while (l >= 0 && at_level(p, level)) {
        int op = p->t.k, at = p->t.start;
        if (next(p))
            return -1;
        int r = parse_level(p, level + 1);
        if (r < 0)
            return -1;
        int n = add_node(p, N_BIN, at);
        if (n < 0)
            return -1;
        node *b = &p->e->nodes[n];
        b->op = op;
        b->a = l;
        b->b = r;
        b->start = p->e->nodes[l].start;
        b->end = p->e->nodes[r].end;
        l = n;
    }
    return l;
}

static int parse_expr(parser *p)
{
    if (++p->depth > BG_FEATURES_MAX_DEPTH)
        return fail(p, p->t.start, "expression nested deeper than %d", BG_FEATURES_MAX_DEPTH);
    int n = parse_level(p, 0);
    p->depth--;
    return n;
}

void bg_feature_destroy(bg_feature_expr *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_nodes; i++) {
        free(e->nodes[i].s);
        free(e->nodes[i].shown);
        if (e->nodes[i].re) {
            regfree(e->nodes[i].re);
            free(e->nodes[i].re);
        }
    }
    free(e->nodes);
    free(e->src);
    free(e);
}

int bg_feature_compile(const char *src, size_t len, bg_feature_expr **out, int *col, char *msg,
                       size_t msg_len)
{
    *out = NULL;
    *col = 1;
    if (msg_len)
        msg[0] = '\0';
    if (len > BG_FEATURES_MAX_SRC) {
        snprintf(msg, msg_len, "expression longer than %d bytes", BG_FEATURES_MAX_SRC);
        return BG_ECONFIG;
    }
    bg_feature_expr *e = calloc(1, sizeof *e);
    if (e)
        e->nodes = calloc(BG_FEATURES_MAX_NODES, sizeof *e->nodes);
    if (e)
        e->src = malloc(len + 1);
    if (!e || !e->nodes || !e->src) {
        bg_feature_destroy(e);
        snprintf(msg, msg_len, "out of memory");
        return BG_ENOMEM;
    }
    memcpy(e->src, src, len);
    e->src[len] = '\0';
    parser p = {.src = e->src, .len = (int)len, .e = e, .msg = msg, .msg_len = msg_len};
    if (memchr(src, '\0', len))
        fail(&p, (int)((const char *)memchr(src, '\0', len) - src), "a NUL byte in the expression");
    else if (next(&p) == 0 && p.t.k == T_EOF)
        fail(&p, 0, "empty expression: write one, e.g. log10(amount)");
    else if (!p.failed && (e->root = parse_expr(&p)) >= 0 && p.t.k != T_EOF)
        fail(&p, p.t.start, "unexpected %s after the end of the expression", tok_name(&p.t));
    if (p.failed) {
        *col = p.err_col;
        int nomem = p.nomem;
        bg_feature_destroy(e);
        return nomem ? BG_ENOMEM : BG_ECONFIG;
    }
    *out = e;
    return BG_OK;
}

const char *bg_feature_source(const bg_feature_expr *e)
{
    return e->src;
}

/* --------------------------------------------------------- evaluator */

typedef enum { V_NUM, V_STR, V_BOOL, V_NULL, V_ARR, V_OBJ } vtype;

typedef struct val {
    vtype t;
    double n; /* V_NUM; V_BOOL 0/1 */
    const char *s;
    size_t slen;
    const json_t *j;  /* V_ARR, V_OBJ */
    const node *from; /* the path's last segment it was read from, or NULL */
} val;

typedef struct evalctx {
    const bg_feature_expr *e;
    const json_t *args;
    char *msg;
    size_t msg_len;
} evalctx;

static const char *type_name(vtype t)
{
    static const char *const names[] = {"a number", "a string", "a boolean",
                                        "null",     "an array", "an object"};
    return names[t];
}

static int err(evalctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int err(evalctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, c->msg_len, fmt, ap);
    va_end(ap);
    return BG_EINVAL;
}

/* Name what v came from: "arguments.amount", or "`a / b` (column 3)". */
static void describe(const evalctx *c, const node *n, const val *v, char *buf, size_t len)
{
    if (v->from)
        snprintf(buf, len, "arguments%s", v->from->shown);
    else
        snprintf(buf, len, "`%.*s` (column %d)", n->end - n->start, c->e->src + n->start,
                 n->start + 1);
}

/* "<what v is> is <its type><tail>": out of line, so the recursion's frames
 * stay small. */
__attribute__((noinline)) static int bad(evalctx *c, const node *n, const val *v, const char *tail)
{
    char what[BG_FEATURES_MAX_SRC + 64];
    describe(c, n, v, what, sizeof what);
    return err(c, "%s is %s%s", what, type_name(v->t), tail);
}

static int want(evalctx *c, const node *n, const val *v, vtype t)
{
    static const char *const tails[] = {", expected a number",  ", expected a string",
                                        ", expected a boolean", ", expected null",
                                        ", expected an array",  ", expected an object"};
    return v->t == t ? BG_OK : bad(c, n, v, tails[t]);
}

static int finite_num(evalctx *c, const node *n, val *v, double x)
{
    if (!isfinite(x))
        return err(c, "`%.*s` (column %d) is not a finite number for these arguments",
                   n->end - n->start, c->e->src + n->start, n->start + 1);
    v->t = V_NUM;
    v->n = x;
    v->from = NULL;
    return BG_OK;
}

static void from_json(const json_t *j, const node *seg, val *v)
{
    memset(v, 0, sizeof *v);
    v->from = seg;
    if (json_is_number(j)) {
        v->t = V_NUM;
        v->n = json_number_value(j);
    } else if (json_is_string(j)) {
        v->t = V_STR;
        v->s = json_string_value(j);
        v->slen = json_string_length(j);
    } else if (json_is_boolean(j)) {
        v->t = V_BOOL;
        v->n = json_is_true(j);
    } else if (json_is_array(j)) {
        v->t = V_ARR;
        v->j = j;
    } else if (json_is_object(j)) {
        v->t = V_OBJ;
        v->j = j;
    } else {
        v->t = V_NULL;
    }
}

static int eval_path(evalctx *c, const node *n, val *v)
{
    const json_t *j = c->args;
    const node *prev = NULL;
    for (int i = n->a; i >= 0; i = c->e->nodes[i].next) {
        const node *s = &c->e->nodes[i];
        const json_t *next_j;
        if (s->idx >= 0) {
            if (!json_is_array(j))
                return err(c, "arguments%s is not an array (it is indexed by [%ld])",
                           prev ? prev->shown : "", s->idx);
            next_j = json_array_get(j, (size_t)s->idx);
            if (!next_j)
                return err(c, "arguments%s is missing (the array has %zu elements)", s->shown,
                           json_array_size(j));
        } else {
            if (!json_is_object(j))
                return err(c, "arguments%s is not an object (field '%s' is read from it)",
                           prev ? prev->shown : "", s->s);
            next_j = json_object_get(j, s->s);
            if (!next_j)
                return err(c, "arguments%s is missing", s->shown);
        }
        j = next_j;
        prev = s;
    }
    from_json(j, prev, v);
    return BG_OK;
}

static int eval(evalctx *c, int idx, val *v);

static int values_equal(evalctx *c, const node *n, const val *a, const val *b, int *eq)
{
    if (a->t == V_NULL || b->t == V_NULL) {
        *eq = a->t == b->t;
        return BG_OK;
    }
    if (a->t != b->t) {
        const node *na = &c->e->nodes[n->a], *nb = &c->e->nodes[n->b];
        /* blame the side read from the arguments */
        return b->from && !a->from ? want(c, nb, b, a->t) : want(c, na, a, b->t);
    }
    switch (a->t) {
    case V_NUM:
    case V_BOOL:
        *eq = a->n == b->n;
        return BG_OK;
    case V_STR:
        *eq = a->slen == b->slen && memcmp(a->s, b->s, a->slen) == 0;
        return BG_OK;
    default:
        return err(c,
                   "`%.*s` (column %d): == and != compare numbers, strings, booleans and null, "
                   "not %s",
                   n->end - n->start, c->e->src + n->start, n->start + 1, type_name(a->t));
    }
}

static int eval_bin(evalctx *c, const node *n, val *v)
{
    const node *na = &c->e->nodes[n->a], *nb = &c->e->nodes[n->b];
    val a, b;
    int rc = eval(c, n->a, &a);
    if (rc)
        return rc;
    if (n->op == T_OR || n->op == T_AND) {
        if ((rc = want(c, na, &a, V_BOOL)))
            return rc;
        if ((n->op == T_OR) == (a.n != 0)) { /* short circuit */
            *v = (val){.t = V_BOOL, .n = a.n};
            return BG_OK;
        }
        if ((rc = eval(c, n->b, &b)) || (rc = want(c, nb, &b, V_BOOL)))
            return rc;
        *v = (val){.t = V_BOOL, .n = b.n};
        return BG_OK;
    }
    if ((rc = eval(c, n->b, &b)))
        return rc;
    if (n->op == T_EQ || n->op == T_NE) {
        int eq = 0;
        if ((rc = values_equal(c, n, &a, &b, &eq)))
            return rc;
        *v = (val){.t = V_BOOL, .n = (n->op == T_EQ) == eq};
        return BG_OK;
    }
    if ((rc = want(c, na, &a, V_NUM)) || (rc = want(c, nb, &b, V_NUM)))
        return rc;
    double x = a.n, y = b.n;
    switch (n->op) {
    case T_LT:
        *v = (val){.t = V_BOOL, .n = x < y};
        return BG_OK;
    case T_LE:
        *v = (val){.t = V_BOOL, .n = x <= y};
        return BG_OK;
    case T_GT:
        *v = (val){.t = V_BOOL, .n = x > y};
        return BG_OK;
    case T_GE:
        *v = (val){.t = V_BOOL, .n = x >= y};
        return BG_OK;
    case T_PLUS:
        return finite_num(c, n, v, x + y);
    case T_MINUS:
        return finite_num(c, n, v, x - y);
    case T_STAR:
        return finite_num(c, n, v, x * y);
    default:
        return finite_num(c, n, v, x / y);
    }
}

static int contains(evalctx *c, const node *n, const val *a, const val *b, int *found)
{
    *found = 0;
    if (a->t == V_STR) {
        int rc = want(c, &c->e->nodes[c->e->nodes[n->a].next], b, V_STR);
        if (rc)
            return rc;
        /* glibc's memmem is linear in |a| + |b| (two-way); both strings may
         * be megabytes of the caller's arguments. An empty b is found. */
        *found = memmem(a->s, a->slen, b->s, b->slen) != NULL;
        return BG_OK;
    }
    if (a->t != V_ARR)
        return bad(c, &c->e->nodes[n->a], a, ", expected a string or an array (contains)");
    for (size_t i = 0; !*found && i < json_array_size(a->j); i++) {
        val x;
        from_json(json_array_get(a->j, i), NULL, &x);
        if (x.t == b->t && x.t != V_ARR && x.t != V_OBJ)
            *found =
                x.t == V_NULL ||
                (x.t == V_STR ? x.slen == b->slen && memcmp(x.s, b->s, x.slen) == 0 : x.n == b->n);
    }
    return BG_OK;
}

static int eval_call(evalctx *c, const node *n, val *v)
{
    val args[BG__FEATURE_MAX_ARGS]; /* the parser refuses a call over fns[].max_args */
    int ai = 0, rc;
    for (int i = n->a; i >= 0; i = c->e->nodes[i].next, ai++)
        if ((rc = eval(c, i, &args[ai])))
            return rc;
    const node *a0 = &c->e->nodes[n->a];
    switch (n->op) {
    case F_LOG10:
    case F_LN:
    case F_ABS:
        if ((rc = want(c, a0, &args[0], V_NUM)))
            return rc;
        return finite_num(c, n, v,
                          n->op == F_LOG10 ? log10(args[0].n)
                          : n->op == F_LN  ? log(args[0].n)
                                           : fabs(args[0].n));
    case F_MIN:
    case F_MAX: {
        double r = 0;
        int k = 0;
        for (int i = n->a; i >= 0; i = c->e->nodes[i].next, k++) {
            if ((rc = want(c, &c->e->nodes[i], &args[k], V_NUM)))
                return rc;
            if (k == 0 || (n->op == F_MIN ? args[k].n < r : args[k].n > r))
                r = args[k].n;
        }
        return finite_num(c, n, v, r);
    }
    case F_LEN:
        if (args[0].t == V_STR)
            return finite_num(c, n, v, (double)args[0].slen);
        if (args[0].t == V_ARR)
            return finite_num(c, n, v, (double)json_array_size(args[0].j));
        if (args[0].t == V_OBJ)
            return finite_num(c, n, v, (double)json_object_size(args[0].j));
        return bad(c, a0, &args[0], ", expected a string, an array or an object (len)");
    case F_MATCHES:
        if ((rc = want(c, a0, &args[0], V_STR)))
            return rc;
        if (args[0].slen > BG_FEATURES_MAX_MATCH)
            return bad(
                c, a0, &args[0],
                " longer than " BG__STR(BG_FEATURES_MAX_MATCH) " bytes, the most matches() reads");
        if (memchr(args[0].s, '\0', args[0].slen))
            return bad(c, a0, &args[0], " with a NUL byte, which matches() cannot read");
        *v = (val){.t = V_BOOL, .n = regexec(n->re, args[0].s, 0, NULL, 0) == 0};
        return BG_OK;
    default: { /* F_CONTAINS */
        int found;
        if ((rc = contains(c, n, &args[0], &args[1], &found)))
            return rc;
        *v = (val){.t = V_BOOL, .n = found};
        return BG_OK;
    }
    }
}

static int eval(evalctx *c, int idx, val *v)
{
    const node *n = &c->e->nodes[idx];
    int rc;
    memset(v, 0, sizeof *v);
    switch (n->k) {
    case N_NUM:
        v->t = V_NUM;
        v->n = n->num;
        return BG_OK;
    case N_STR:
        v->t = V_STR;
        v->s = n->s;
        v->slen = n->slen;
        return BG_OK;
    case N_BOOL:
        v->t = V_BOOL;
        v->n = n->num;
        return BG_OK;
    case N_NULL:
        v->t = V_NULL;
        return BG_OK;
    case N_PATH:
        return eval_path(c, n, v);
    case N_NOT:
        if ((rc = eval(c, n->a, v)) || (rc = want(c, &c->e->nodes[n->a], v, V_BOOL)))
            return rc;
        *v = (val){.t = V_BOOL, .n = !v->n};
        return BG_OK;
    case N_NEG:
        if ((rc = eval(c, n->a, v)) || (rc = want(c, &c->e->nodes[n->a], v, V_NUM)))
            return rc;
        return finite_num(c, n, v, -v->n);
    case N_BIN:
        return eval_bin(c, n, v);
    case N_CALL:
        return eval_call(c, n, v);
    default:
        return err(c, "internal: node kind %d", (int)n->k);
    }
}

int bg_feature_eval(const bg_feature_expr *e, const json_t *args, double *out, char *msg,
                    size_t msg_len)
{
    evalctx c = {.e = e, .args = args, .msg = msg, .msg_len = msg_len};
    val v;
    int rc = eval(&c, e->root, &v);
    if (rc)
        return rc;
    if (v.t == V_BOOL) {
        *out = v.n != 0 ? 1.0 : 0.0;
        return BG_OK;
    }
    if (v.t != V_NUM)
        return bad(&c, &e->nodes[e->root], &v, ": a feature must be a number or a boolean");
    *out = v.n;
    return BG_OK;
}

int bg_features_parse_args(const char *json, size_t len, json_t **out, char *msg, size_t msg_len)
{
    *out = NULL;
    if (len == 0) {
        snprintf(msg, msg_len,
                 "action.arguments_json is empty: send the tool's arguments as a "
                 "JSON object");
        return BG_EINVAL;
    }
    json_error_t je;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(msg, msg_len, "action.arguments_json is not valid JSON: %s (line %d, column %d)",
                 je.text, je.line, je.column);
        return BG_EINVAL;
    }
    if (!json_is_object(j)) {
        val v;
        from_json(j, NULL, &v);
        snprintf(msg, msg_len,
                 "action.arguments_json is %s: send the tool's arguments as a JSON "
                 "object ({\"name\": value, ...})",
                 type_name(v.t));
        json_decref(j);
        return BG_EINVAL;
    }
    *out = j;
    return BG_OK;
}

int bg_features_fuzz_one(const uint8_t *data, size_t n)
{
    const uint8_t *nl = memchr(data, '\n', n);
    size_t elen = nl ? (size_t)(nl - data) : n;
    bg_feature_expr *e = NULL;
    int col;
    char msg[512];
    if (bg_feature_compile((const char *)data, elen, &e, &col, msg, sizeof msg) != BG_OK)
        return 0;
    json_t *args = NULL;
    if (nl && bg_features_parse_args((const char *)nl + 1, n - elen - 1, &args, msg, sizeof msg) ==
                  BG_OK) {
        double x;
        if (bg_feature_eval(e, args, &x, msg, sizeof msg) == BG_OK && !isfinite(x))
            abort(); /* the evaluator promises a finite value */
        json_decref(args);
    }
    bg_feature_destroy(e);
    return 0;
}
