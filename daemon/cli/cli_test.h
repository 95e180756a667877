/*
 * cli_test.h — `bayesguard test DIR`: policy unit tests, offline.
 *
 * A test file sits beside the policies as NAME_test.yaml (or _test.yml;
 * the policy loader and the directory watch skip such files,
 * bg_policy_is_test_file). It names the policy it tests and a list of
 * cases; a case is a sequence of steps run on a fresh engine (no daemon,
 * no data dir): `observe` stores outcomes, `expect` evaluates an action and
 * checks the verdict. The policies of DIR are loaded by the daemon's
 * loader with the real plugins, and every step decides through the
 * daemon's own path (bg_policy_set_match, bg_policy_action_features,
 * bg_policy_session_keys, bg_policy_evaluate / bg_policy_observe). Format
 * and examples: docs/CLI.md.
 *
 * The test file is parsed into a bg_test_file (cli_test_file.c) and run by
 * cli_test.c. Main thread only.
 */
#ifndef BG_CLI_TEST_H
#define BG_CLI_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "cfg/cfg.h"
#include "engine/engine.h"

/* argv[0] = "test"; returns the exit code: 0 every case passed, 1 a case
 * failed, 2 usage, a test file or the policies could not be loaded. */
int bg_cli_test_main(int argc, char **argv);

/* ---------------------------------------------------- the parsed file */

/* A bound on a number: any of >=, >, <=, < (a scalar in the file is ==). */
typedef struct bg_test_range {
    int set;
    int has_ge, has_gt, has_le, has_lt;
    double ge, gt, le, lt;
} bg_test_range;

/* Who calls, as the listener would say: peer: {uid: N} is a unix-socket
 * caller (identity "uid:N", kernel uid N); peer: {identity: S} an mTLS
 * caller; `anonymous` or no peer: a listener that cannot tell (TCP
 * without mTLS). */
typedef struct bg_test_peer {
    int set;
    int has_uid;
    uint32_t uid;
    char identity[256];
} bg_test_peer;

typedef enum bg_test_step_kind { BG_TEST_OBSERVE = 1, BG_TEST_EXPECT = 2 } bg_test_step_kind;

/* One step. Strings are borrowed from the file's YAML document, except
 * args (owned: the arguments as compact JSON) and attrs/features (owned
 * arrays). */
typedef struct bg_test_step {
    bg_test_step_kind kind;
    int line, column;                            /* of the step's map */
    const char *tool, *session, *agent, *policy; /* policy: the one expected to decide */
    char *args;
    double *features;
    size_t n_features;
    bg_attr *attrs;
    size_t n_attrs;
    bg_test_peer peer;
    /* observe */
    int harmed, has_value;
    double value;
    long repeat;
    /* expect */
    int has_decision;
    bg_decision decision;
    bg_test_range harm_bound, posterior_predictive, plausible_set_size, observations;
    bg_test_range cautious_posterior, cautious_harm;
    int has_cautious_id;
    uint64_t cautious_id;
    const char *cautious_label;
    int has_bound_kind, sampled; /* bound_kind: EXACT (0) or SAMPLED (1) */
    int has_shadow, shadow;
    const char *error; /* the step must fail with a message containing it */
} bg_test_step;

typedef struct bg_test_case {
    const char *name;
    int line, column;
    bg_test_step *steps;
    size_t n_steps;
} bg_test_case;

typedef struct bg_test_file {
    char *path;
    bg_cfg_doc *doc;
    const char *policy; /* the policy the file tests */
    int line, column;   /* of `policy` */
    bg_test_case *cases;
    size_t n_cases;
} bg_test_file;

/* Parse path into f. BG_OK, or BG_ECONFIG with err = "path:line:col: what
 * is wrong and what is expected" (the first error). f is freed either way
 * by bg_test_file_free. */
int bg_test_file_parse(const char *path, bg_test_file *f, bg_err *err);
void bg_test_file_free(bg_test_file *f);

#endif
