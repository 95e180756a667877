/*
 * features.h — feature expressions: a policy computes its model's features
 * from the action's JSON arguments on the server, so the agent being
 * guarded no longer chooses its own risk inputs.
 *
 * A policy lists one expression per feature (spec.features); each is
 * compiled once, when the policy loads (tokenizer + recursive-descent
 * parser to a flat node array; regexes compiled with regcomp), and
 * evaluated per request against the arguments parsed with jansson.
 *
 * Grammar (lowest precedence first; docs/POLICIES.md copies it):
 *
 *   expr     := or
 *   or       := and ( "||" and )*
 *   and      := eq ( "&&" eq )*
 *   eq       := rel ( ( "==" | "!=" ) rel )*
 *   rel      := add ( ( "<" | "<=" | ">" | ">=" ) add )*
 *   add      := mul ( ( "+" | "-" ) mul )*
 *   mul      := unary ( ( "*" | "/" ) unary )*
 *   unary    := ( "!" | "-" ) unary | primary
 *   primary  := NUMBER | STRING | "true" | "false" | "null"
 *             | NAME "(" [ expr ( "," expr )* ] ")"      a function call
 *             | path | "(" expr ")"
 *   path     := ( NAME | "[" STRING "]" )
 *               ( "." NAME | "[" INTEGER "]" | "[" STRING "]" )*
 *   NAME     := [A-Za-z_][A-Za-z0-9_]*
 *   NUMBER   := digits [ "." digits ] [ ("e"|"E") ["+"|"-"] digits ]
 *   STRING   := '"' ( any byte but '"' and '\' | '\' ( '"' | '\' | 'n' | 't' ) )* '"'
 *
 * A path names a field of the arguments object: `amount`, `payee.id`,
 * `items[0].price`, `headers["x-id"]`, `["x-id"]`. Functions: log10(x), ln(x),
 * abs(x), min(x, y, ...), max(x, y, ...) on numbers; len(s) of a string
 * (bytes), array or object; matches(s, "ERE") — POSIX extended regex, the
 * pattern a string literal compiled at load; contains(s, "sub") (substring)
 * or contains(array, value).
 *
 * Types: number, string, boolean, null, and arrays/objects (only as
 * arguments of len and contains). No implicit conversions: `&&`, `||`
 * and `!` take booleans; arithmetic and `<`… take numbers; `==` and `!=`
 * take two values of the same type (or null on either side). A feature's
 * value is its number, or 1/0 for a boolean; it must be finite.
 *
 * Limits (compile errors beyond them): source BG_FEATURES_MAX_SRC bytes,
 * BG_FEATURES_MAX_NODES nodes, nesting BG_FEATURES_MAX_DEPTH, string
 * literals BG_FEATURES_MAX_STR bytes; regexes without back-references or
 * intervals ({n,m}), with at most 16 repetition operators (* + ?), at
 * most 8 of them `+`, none applied straight to another (regcomp's memory
 * stays small: glibc copies the operand of `+`).
 * Evaluation is bounded by the node count (no loops) and by the size of
 * the arguments; matches() refuses inputs over BG_FEATURES_MAX_MATCH bytes
 * and strings with a NUL byte.
 *
 * Errors: compile errors carry the 1-based column of the offending token
 * in the expression (the policy layer turns it into file:line:col);
 * evaluation errors name the field ("arguments.amount is missing", "...is a
 * string, expected a number") and are the caller's INVALID_ARGUMENT, never
 * a decision.
 *
 * Ownership and threads: a compiled bg_feature_expr is immutable; any
 * number of threads evaluate it at once. Evaluation allocates nothing.
 */
#ifndef BG_FEATURES_H
#define BG_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#define BG_FEATURES_MAX_SRC 1024
#define BG_FEATURES_MAX_NODES 256
#define BG_FEATURES_MAX_DEPTH 32
#define BG_FEATURES_MAX_STR 256
#define BG_FEATURES_MAX_MATCH 65536
#define BG_FEATURES_MAX_COUNT 64 /* expressions per policy */

typedef struct bg_feature_expr bg_feature_expr;

/* A json_t from jansson; declared here so users need not include it. */
struct json_t;

/* Compile src[0..len). On success returns BG_OK and *out (new: destroy
 * it). On failure returns BG_ECONFIG (BG_ENOMEM when out of memory),
 * *out is NULL, *col is the 1-based column in src of the error and msg
 * says what is wrong and what was expected. */
int bg_feature_compile(const char *src, size_t len, bg_feature_expr **out, int *col, char *msg,
                       size_t msg_len);
void bg_feature_destroy(bg_feature_expr *e);

/* The source text, as compiled. */
const char *bg_feature_source(const bg_feature_expr *e);

/* Evaluate e against args (a JSON object; borrowed). BG_OK with *out
 * finite, or BG_EINVAL with msg naming the field (paths are written
 * "arguments.<path>") or the reason. */
int bg_feature_eval(const bg_feature_expr *e, const struct json_t *args, double *out, char *msg,
                    size_t msg_len);

/* Parse arguments_json (len bytes, need not be NUL-terminated) as one JSON
 * object with jansson (duplicate keys rejected). BG_OK with *out (new:
 * json_decref it), else BG_EINVAL with msg saying where the JSON is bad. */
int bg_features_parse_args(const char *json, size_t len, struct json_t **out, char *msg,
                           size_t msg_len);

/* libFuzzer entry (tests/fuzz): data is "<expression>\n<JSON arguments>";
 * compiles the expression, and when it compiles and the JSON parses,
 * evaluates it. Always returns 0; a crash or sanitizer report is the bug. */
int bg_features_fuzz_one(const uint8_t *data, size_t n);

#endif
