/*
 * test_features.c — daemon/features: each grammar rule evaluates as the
 * grammar in features.h says; each compile error comes with its message
 * and 1-based column; the limits (source size, nodes, depth, strings,
 * path parts, regex back-references) are enforced at compile time; each
 * evaluation error names the field; the fuzz entry survives odd input.
 */
#include <jansson.h>
#include <math.h>

#include "bg_test.h"
#include "common/bg_err.h"
#include "features/features.h"

static const char *ARGS = "{\"amount\": 250, \"payee_is_new\": true, \"cmd\": \"sudo rm -rf /\","
                          " \"payee\": {\"id\": \"p-1\", \"tags\": [\"a\", \"b\"]},"
                          " \"items\": [{\"price\": 2.5}, {\"price\": -4}], \"none\": null,"
                          " \"x-id\": 7, \"zero\": 0, \"s\": \"3\"}";

static json_t *args(void)
{
    json_t *j = NULL;
    char msg[256];
    CHECK_INT(bg_features_parse_args(ARGS, strlen(ARGS), &j, msg, sizeof msg), BG_OK);
    return j;
}

/* expr evaluates to want over ARGS. */
static void ok(const char *expr, double want)
{
    bg_feature_expr *e = NULL;
    int col = 0;
    char msg[512];
    int rc = bg_feature_compile(expr, strlen(expr), &e, &col, msg, sizeof msg);
    CHECK(rc == BG_OK, "%s: compile: col %d: %s", expr, col, msg);
    CHECK_STR(bg_feature_source(e), expr);
    json_t *a = args();
    double got = NAN;
    rc = bg_feature_eval(e, a, &got, msg, sizeof msg);
    CHECK(rc == BG_OK, "%s: eval: %s", expr, msg);
    CHECK(fabs(got - want) <= 1e-12, "%s = %.17g, want %.17g", expr, got, want);
    json_decref(a);
    bg_feature_destroy(e);
}

/* expr fails to compile at column col with a message containing want. */
static void bad(const char *expr, int want_col, const char *want)
{
    bg_feature_expr *e = (bg_feature_expr *)1;
    int col = 0;
    char msg[512];
    int rc = bg_feature_compile(expr, strlen(expr), &e, &col, msg, sizeof msg);
    CHECK(rc == BG_ECONFIG, "%s: compiled (rc %d), expected an error", expr, rc);
    CHECK(e == NULL);
    CHECK(col == want_col, "%s: column %d, want %d (%s)", expr, col, want_col, msg);
    CHECK(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", expr, msg, want);
}

/* expr compiles, and fails to evaluate over json with a message containing want. */
static void fails(const char *expr, const char *json, const char *want)
{
    bg_feature_expr *e = NULL;
    int col = 0;
    char msg[512];
    CHECK(bg_feature_compile(expr, strlen(expr), &e, &col, msg, sizeof msg) == BG_OK, "%s: %s",
          expr, msg);
    json_t *a = NULL;
    if (json)
        CHECK_INT(bg_features_parse_args(json, strlen(json), &a, msg, sizeof msg), BG_OK);
    else
        a = args();
    double got = 0;
    msg[0] = '\0';
    CHECK_INT(bg_feature_eval(e, a, &got, msg, sizeof msg), BG_EINVAL);
    CHECK(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", expr, msg, want);
    json_decref(a);
    bg_feature_destroy(e);
}

static void grammar(void)
{
    /* literals */
    ok("42", 42);
    ok("2.5e2", 250);
    ok("1E-1", 0.1);
    ok("true", 1);
    ok("false", 0);
    ok("\"a\\\"b\\\\\\n\\t\" == \"a\\\"b\\\\\\n\\t\"", 1);
    ok("null == null", 1);
    /* paths */
    ok("amount", 250);
    ok("payee_is_new", 1);
    ok("items[1].price", -4);
    ok("items[0][\"price\"]", 2.5);
    ok("payee[\"id\"] == \"p-1\"", 1);
    ok("[\"x-id\"]", 7);
    ok("[\"payee\"].tags[1] == \"b\"", 1);
    ok("none == null", 1);
    ok("amount == null", 0);
    ok("amount != null", 1);
    /* comparison, logic, arithmetic and precedence */
    ok("amount > 100", 1);
    ok("amount >= 250", 1);
    ok("amount < 250", 0);
    ok("amount <= 250", 1);
    ok("amount == 250", 1);
    ok("amount != 250", 0);
    ok("cmd == \"sudo rm -rf /\"", 1);
    ok("payee_is_new == true", 1);
    ok("payee_is_new && amount > 1000", 0);
    ok("payee_is_new || amount > 1000", 1);
    ok("!payee_is_new", 0);
    ok("!!payee_is_new", 1);
    ok("1 + 2 * 3", 7);
    ok("(1 + 2) * 3", 9);
    ok("10 - 4 - 3", 3);
    ok("12 / 3 / 2", 2);
    ok("-amount", -250);
    ok("- -2", 2);
    ok("1 < 2 == true", 1);
    ok("false || true && false", 0);
    ok("1 + 1 == 2 && 3 > 2", 1);
    /* short circuit: the right side is not evaluated */
    ok("true || nosuchfield", 1);
    ok("false && nosuchfield", 0);
    /* functions */
    ok("log10(amount)", log10(250));
    ok("ln(amount)", log(250));
    ok("abs(items[1].price)", 4);
    ok("len(cmd)", 13);
    ok("len(payee.tags)", 2);
    ok("len(payee)", 2);
    ok("len(\"\")", 0);
    ok("matches(cmd, \"rm -rf|mkfs|dd if=\")", 1);
    ok("matches(cmd, \"^rm\")", 0);
    ok("matches(cmd, \"[{*+?]|r[[:alpha:]]?m\")", 1); /* inside brackets: literal */
    ok("matches(cmd, \"\\\\{\")", 0);                 /* an escaped brace */
    ok("matches(cmd, \"(s(u(d(o)+)+)+)+\")", 1);
    ok("contains(cmd, \"rm\")", 1);
    ok("contains(cmd, \"\")", 1);
    ok("contains(cmd, \"mkfs\")", 0);
    ok("contains(payee.tags, \"b\")", 1);
    ok("contains(payee.tags, \"c\")", 0);
    ok("contains(payee.tags, 1)", 0);
    ok("min(3, amount, -1)", -1);
    ok("max(3, amount, -1)", 250);
    ok("min(5)", 5);
    ok("max(log10(max(amount, 1)), 0) * 0 + 1", 1);
    /* whitespace */
    ok(" \t amount\n>\r1 ", 1);
}

static void compile_errors(void)
{
    bad("", 1, "empty expression");
    bad("   ", 1, "empty expression");
    bad("amount >", 9, "expected a value");
    bad("amount = 1", 8, "compare with '=='");
    bad("a & b", 3, "'and' is '&&'");
    bad("a | b", 3, "'or' is '||'");
    bad("a # b", 3, "unexpected character '#'");
    bad("a \x01", 3, "unexpected byte 0x01");
    bad("\"abc", 1, "unterminated string");
    bad("\"a\\qb\"", 3, "unknown escape");
    bad("1.", 3, "digit after '.'");
    bad("1e", 3, "exponent");
    bad("12abc", 3, "after a number");
    bad("1e999", 1, "out of range");
    bad("(1 + 2", 7, "expected ')'");
    bad("1 2", 3, "unexpected a number after the end");
    bad("amount )", 8, "after the end");
    bad("a.", 3, "expected a field name after '.'");
    bad("a[", 3, "expected an index or a quoted field name");
    bad("a[1.5]", 3, "integer");
    bad("a[2000000]", 3, "integer");
    bad("a[0", 4, "expected ']'");
    bad("nosuch(1)", 1, "unknown function 'nosuch'");
    bad("log10()", 1, "log10() takes 1 argument, got 0");
    bad("len(a, b)", 1, "len() takes 1 argument, got 2");
    bad("matches(cmd)", 1, "matches() takes 2 arguments, got 1");
    bad("min()", 1, "min() takes 1 to 16 arguments, got 0");
    bad("log10(1, 2", 11, "expected ',' or ')'");
    bad("matches(cmd, pat)", 14, "pattern must be a string literal");
    bad("matches(cmd, \"(\")", 14, "invalid regular expression");
    bad("matches(cmd, \"(a)\\\\1\")", 14, "back-references");
    bad("matches(cmd, \"a{2}\")", 14, "intervals ({n,m}) are not allowed");
    bad("matches(cmd, \"a+*\")", 14, "a repetition of a repetition");
    bad("matches(cmd, \"a*?\")", 14, "a repetition of a repetition");
    bad("matches(cmd, \"a+b+c+d+e+f+g+h+i+\")", 14, "more than 8 '+' operators");
    bad("matches(cmd, \"a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*\")", 14,
        "more than 16 repetition operators");
    bad("!", 2, "expected a value");
    bad(",", 1, "expected a value");
}

/* contains() over strings the caller sends: a = 2 MiB of 'a', b = 1 MiB
 * of 'a' then 'b' (absent) and then b = the last MiB of a (present). A
 * naive search compares b at every offset of a: ~1e12 byte compares, far
 * past the test's timeout; a linear one takes milliseconds. */
static void contains_is_linear(void)
{
    size_t na = 2u << 20, nb = 1u << 20;
    char *json = malloc(na + nb + 64);
    CHECK(json != NULL);
    for (int present = 0; present < 2; present++) {
        size_t k = (size_t)sprintf(json, "{\"a\": \"");
        memset(json + k, 'a', na);
        k += na;
        k += (size_t)sprintf(json + k, "\", \"b\": \"");
        memset(json + k, 'a', nb);
        k += nb;
        if (!present)
            json[k - 1] = 'b';
        k += (size_t)sprintf(json + k, "\"}");
        json_t *j = NULL;
        char msg[512];
        CHECK_INT(bg_features_parse_args(json, k, &j, msg, sizeof msg), BG_OK);
        bg_feature_expr *e = NULL;
        int col = 0;
        const char *expr = "contains(a, b)";
        CHECK_INT(bg_feature_compile(expr, strlen(expr), &e, &col, msg, sizeof msg), BG_OK);
        double got = -1;
        CHECK_INT(bg_feature_eval(e, j, &got, msg, sizeof msg), BG_OK);
        CHECK(got == present, "contains over %zu and %zu bytes = %g, want %d", na, nb, got,
              present);
        bg_feature_destroy(e);
        json_decref(j);
    }
    free(json);
}

static void limits(void)
{
    char buf[4096];
    /* source size */
    memset(buf, '1', BG_FEATURES_MAX_SRC + 1);
    buf[BG_FEATURES_MAX_SRC + 1] = '\0';
    bad(buf, 1, "longer than 1024 bytes");
    /* nesting: 33 parentheses */
    size_t n = 0;
    for (int i = 0; i < BG_FEATURES_MAX_DEPTH + 1; i++)
        buf[n++] = '(';
    buf[n++] = '1';
    for (int i = 0; i < BG_FEATURES_MAX_DEPTH + 1; i++)
        buf[n++] = ')';
    buf[n] = '\0';
    bad(buf, 33, "nested deeper than 32");
    /* 31 is fine (the whole expression is depth 1) */
    n = 0;
    for (int i = 0; i < BG_FEATURES_MAX_DEPTH - 1; i++)
        buf[n++] = '(';
    buf[n++] = '1';
    for (int i = 0; i < BG_FEATURES_MAX_DEPTH - 1; i++)
        buf[n++] = ')';
    buf[n] = '\0';
    ok(buf, 1);
    /* unary nesting counts too */
    memset(buf, '!', 40);
    strcpy(buf + 40, "true");
    bad(buf, 32, "nested deeper than 32");
    /* nodes: 1+1+...: 128 ones and 127 pluses fit in 256 nodes, 129 do not */
    n = 0;
    for (int i = 0; i < 128; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s1", i ? "+" : "");
    ok(buf, 128);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "+1");
    bad(buf, 256, "more than 256 nodes");
    /* string literal size */
    buf[0] = '"';
    memset(buf + 1, 'x', BG_FEATURES_MAX_STR + 1);
    strcpy(buf + BG_FEATURES_MAX_STR + 2, "\"");
    bad(buf, 1, "string longer than 256 bytes");
    /* path parts */
    strcpy(buf, "a");
    for (int i = 0; i < 16; i++)
        strcat(buf, ".b");
    bad(buf, 32, "at most 16 parts");
    /* a NUL byte inside the source */
    bg_feature_expr *e = NULL;
    int col = 0;
    char msg[256];
    CHECK_INT(bg_feature_compile("1\0+1", 4, &e, &col, msg, sizeof msg), BG_ECONFIG);
    CHECK_INT(col, 2);
    CHECK(strstr(msg, "NUL") != NULL, "%s", msg);
}

static void eval_errors(void)
{
    fails("nosuch", NULL, "arguments.nosuch is missing");
    fails("payee.nosuch == 1", NULL, "arguments.payee.nosuch is missing");
    fails("items[5].price", NULL, "arguments.items[5] is missing (the array has 2 elements)");
    fails("amount.x", NULL, "arguments.amount is not an object");
    fails("payee[0]", NULL, "arguments.payee is not an array");
    fails("payee_is_new == 1", NULL, "arguments.payee_is_new is a boolean, expected a number");
    fails("1 == payee_is_new", NULL, "arguments.payee_is_new is a boolean, expected a number");
    fails("amount == \"x\"", NULL, "arguments.amount is a number, expected a string");
    fails("s > 1", NULL, "arguments.s is a string, expected a number");
    fails("log10(s)", NULL, "arguments.s is a string, expected a number");
    fails("log10(zero)", NULL, "`log10(zero)` (column 1) is not a finite number");
    fails("1 / zero", NULL, "`1 / zero` (column 1) is not a finite number");
    fails("amount && true", NULL, "arguments.amount is a number, expected a boolean");
    fails("!amount", NULL, "arguments.amount is a number, expected a boolean");
    fails("-cmd", NULL, "arguments.cmd is a string, expected a number");
    fails("(1 + 1) || true", NULL, "`(1 + 1)` (column 1) is a number, expected a boolean");
    fails("cmd", NULL, "arguments.cmd is a string: a feature must be a number or a boolean");
    fails("none", NULL, "arguments.none is null: a feature must be a number");
    fails("payee", NULL, "arguments.payee is an object: a feature must be");
    fails("len(amount)", NULL, "arguments.amount is a number, expected a string, an array");
    fails("matches(amount, \"x\")", NULL, "arguments.amount is a number, expected a string");
    fails("contains(amount, \"x\")", NULL, "expected a string or an array (contains)");
    fails("contains(cmd, 1)", NULL, "`1` (column 15) is a number, expected a string");
    fails("payee.tags == payee.tags", NULL, "compare numbers, strings, booleans and null");
    fails("min(1, cmd)", NULL, "arguments.cmd is a string, expected a number");
    fails("amount", "{\"amount\": \"12\"}", "arguments.amount is a string: a feature must be");

    /* the arguments themselves */
    json_t *j = NULL;
    char msg[512];
    CHECK_INT(bg_features_parse_args("", 0, &j, msg, sizeof msg), BG_EINVAL);
    CHECK(strstr(msg, "action.arguments_json is empty") != NULL, "%s", msg);
    CHECK_INT(bg_features_parse_args("{\"a\": ", 6, &j, msg, sizeof msg), BG_EINVAL);
    CHECK(strstr(msg, "action.arguments_json is not valid JSON") != NULL, "%s", msg);
    CHECK_INT(bg_features_parse_args("[1]", 3, &j, msg, sizeof msg), BG_EINVAL);
    CHECK(strstr(msg, "action.arguments_json is an array") != NULL, "%s", msg);
    const char *dup = "{\"a\": 1, \"a\": 2}";
    CHECK_INT(bg_features_parse_args(dup, strlen(dup), &j, msg, sizeof msg), BG_EINVAL);
    CHECK(strstr(msg, "duplicate") != NULL, "%s", msg);
    const char *nul = "{\"cmd\": \"ls\\u0000rm -rf /\"}";
    CHECK_INT(bg_features_parse_args(nul, strlen(nul), &j, msg, sizeof msg), BG_EINVAL);
    CHECK(j == NULL);
    /* not NUL-terminated: only len bytes are read */
    CHECK_INT(bg_features_parse_args("{}garbage", 2, &j, msg, sizeof msg), BG_OK);
    json_decref(j);
}

static void fuzz_entry(void)
{
    static const char *const inputs[] = {
        "",
        "\n",
        "amount\n{\"amount\": 1}",
        "log10(amount)\n{\"amount\": 0}",
        "matches(cmd, \"a*\")\n{\"cmd\": \"aaa\"}",
        "((((\n{}",
        "a.b.c[1]\n[1, 2]",
        "\"\\\n\"",
        "1/0\n{}",
        "max(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16)\n{}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        CHECK_INT(bg_features_fuzz_one((const uint8_t *)inputs[i], strlen(inputs[i])), 0);
}

int main(void)
{
    grammar();
    compile_errors();
    limits();
    contains_is_linear();
    eval_errors();
    fuzz_entry();
    CHECK_DONE("test_features");
}
